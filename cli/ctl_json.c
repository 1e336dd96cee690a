/* protobuf-c message -> jansson, driven by the message descriptors, so
 * every command's --json output follows the .proto without per-command
 * code. */
#include "ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_JSON_MAX_DEPTH 16   /* admin messages nest 3 deep */

static json_t *ctl_json_msg(const ProtobufCMessage *msg, int depth);

static json_t *ctl_json_u64(uint64_t v)
{
    char text[24];

    if (v <= (uint64_t)INT64_MAX) {
        return json_integer((json_int_t)v);
    }
    snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
    return json_string(text);
}

static json_t *ctl_json_enum(const ProtobufCEnumDescriptor *desc, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(desc, v);

    return ev != NULL ? json_string(ev->name) : json_integer(v);
}

static json_t *ctl_json_bytes(const ProtobufCBinaryData *b)
{
    static const char hex[] = "0123456789abcdef";
    char *text = malloc(b->len * 2 + 1);
    json_t *out;
    size_t i;

    if (text == NULL) {
        return NULL;
    }
    for (i = 0; i < b->len; i++) {
        text[2 * i] = hex[b->data[i] >> 4];
        text[2 * i + 1] = hex[b->data[i] & 15];
    }
    text[2 * b->len] = '\0';
    out = json_string(text);
    free(text);
    return out;
}

/* One value of field `f` stored at `p`. */
static json_t *ctl_json_value(const ProtobufCFieldDescriptor *f, const void *p,
                              int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer((json_int_t)*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return ctl_json_u64(*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM:
        return ctl_json_enum(f->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;

        return json_string(s != NULL ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ctl_json_bytes(p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;

        return m != NULL ? ctl_json_msg(m, depth + 1) : json_null();
    }
    }
    return json_null();
}

static size_t ctl_json_type_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return 4;
    }
}

/* False when the field is absent (a oneof member not chosen, an optional
 * without its has_ flag). */
static bool ctl_json_present(const ProtobufCMessage *msg,
                             const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)msg;

    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
        f->type != PROTOBUF_C_TYPE_STRING) {
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
    }
    return true;
}

static json_t *ctl_json_msg(const ProtobufCMessage *msg, int depth)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *base = (const char *)msg;
    json_t *obj;
    unsigned i;

    if (depth > CTL_JSON_MAX_DEPTH || (obj = json_object()) == NULL) {
        return NULL;
    }
    for (i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        json_t *v;

        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            size_t k, sz = ctl_json_type_size(f->type);

            v = json_array();
            for (k = 0; v != NULL && k < n; k++) {
                json_t *e = ctl_json_value(f, arr + k * sz, depth);

                if (e == NULL || json_array_append_new(v, e) != 0) {
                    json_decref(v);
                    v = NULL;
                }
            }
        } else if (!ctl_json_present(msg, f)) {
            continue;
        } else {
            v = ctl_json_value(f, base + f->offset, depth);
        }
        if (v == NULL || json_object_set_new(obj, f->name, v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

json_t *ctl_json_from_msg(const ProtobufCMessage *msg)
{
    return ctl_json_msg(msg, 0);
}

int ctl_json_print(const json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (text == NULL) {
        fprintf(stderr, "batonctl: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    printf("%s\n", text);
    free(text);
    return CTL_EXIT_OK;
}
