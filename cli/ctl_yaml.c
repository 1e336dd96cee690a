/* The JSON tree of an answer as YAML, without a YAML library. Block style
 * throughout; every scalar is written as jansson writes it as JSON: a
 * string double-quoted with JSON's escapes (a valid YAML double-quoted
 * scalar, so "yes", "null", "1e3", ": " or "#" stay strings), numbers,
 * true, false and null plain. Keys are written plain only when they are
 * [A-Za-z0-9_] (the .proto field names), else quoted the same way. */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>

#define CTL_YAML_MAX_DEPTH 32

static int ctl_yaml_scalar(FILE *out, const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    int rc;

    if (text == NULL) {
        return -1;
    }
    rc = fputs(text, out) < 0 ? -1 : 0;
    free(text);
    return rc;
}

static bool ctl_yaml_plain_key(const char *k)
{
    size_t i;

    if (k[0] == '\0') {
        return false;
    }
    for (i = 0; k[i] != '\0'; i++) {
        char c = k[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

static int ctl_yaml_key(FILE *out, const char *k)
{
    json_t *s;
    int rc;

    if (ctl_yaml_plain_key(k)) {
        return fputs(k, out) < 0 ? -1 : 0;
    }
    s = json_string(k);
    rc = s != NULL ? ctl_yaml_scalar(out, s) : -1;
    json_decref(s);
    return rc;
}

static bool ctl_yaml_is_block(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0);
}

static int ctl_yaml_node(FILE *out, const json_t *v, int indent, bool inline_first,
                         int depth);

/* A value after "key:" or "- ": a collection goes on the lines below
 * (a mapping under a "- " starts on the same line). */
static int ctl_yaml_value(FILE *out, const json_t *v, int indent, int depth)
{
    if (!ctl_yaml_is_block(v)) {
        if (fputc(' ', out) == EOF) {
            return -1;
        }
        if (json_is_object(v)) {
            return fputs("{}\n", out) < 0 ? -1 : 0;
        }
        if (json_is_array(v)) {
            return fputs("[]\n", out) < 0 ? -1 : 0;
        }
        if (ctl_yaml_scalar(out, v) != 0) {
            return -1;
        }
        return fputc('\n', out) == EOF ? -1 : 0;
    }
    if (fputc('\n', out) == EOF) {
        return -1;
    }
    return ctl_yaml_node(out, v, indent, false, depth + 1);
}

/* A non-empty collection at `indent`; with `inline_first` its first line
 * continues the current one (after "- "). */
static int ctl_yaml_node(FILE *out, const json_t *v, int indent, bool inline_first,
                         int depth)
{
    bool first = true;

    if (depth > CTL_YAML_MAX_DEPTH) {
        return -1;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *e;

        json_object_foreach((json_t *)v, k, e) {
            if (!(first && inline_first) && fprintf(out, "%*s", indent, "") < 0) {
                return -1;
            }
            first = false;
            if (ctl_yaml_key(out, k) != 0 || fputc(':', out) == EOF ||
                ctl_yaml_value(out, e, indent + 2, depth) != 0) {
                return -1;
            }
        }
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *e;

        json_array_foreach(v, i, e) {
            if (!(first && inline_first) && fprintf(out, "%*s", indent, "") < 0) {
                return -1;
            }
            first = false;
            if (fputc('-', out) == EOF) {
                return -1;
            }
            if (ctl_yaml_is_block(e)) {
                if (fputc(' ', out) == EOF ||
                    ctl_yaml_node(out, e, indent + 2, true, depth + 1) != 0) {
                    return -1;
                }
            } else if (ctl_yaml_value(out, e, indent + 2, depth) != 0) {
                return -1;
            }
        }
        return 0;
    }
    return -1;
}

int ctl_yaml_write(FILE *out, const json_t *v)
{
    if (!ctl_yaml_is_block(v)) {
        /* a scalar or an empty collection: one line */
        if (json_is_object(v)) {
            return fputs("{}\n", out) < 0 ? -1 : 0;
        }
        if (json_is_array(v)) {
            return fputs("[]\n", out) < 0 ? -1 : 0;
        }
        return ctl_yaml_scalar(out, v) == 0 && fputc('\n', out) != EOF ? 0 : -1;
    }
    return ctl_yaml_node(out, v, 0, false, 0);
}
