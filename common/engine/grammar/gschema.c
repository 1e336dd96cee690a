/* JSON Schema → the grammar's node graph. Every keyword is either
 * honoured, an annotation (ignored: it cannot change what is valid), or
 * refused with an error naming it: a constraint is never dropped. */
#include "grammar_int.h"

#include "base/array.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_grammar_t *g;
    char         *err;
    size_t        err_size;
    char          path[256];
} bt_gc_t;

static bt_status_t bt_gc_fail(bt_gc_t *c, bt_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bt_status_t bt_gc_fail(bt_gc_t *c, bt_status_t st, const char *fmt, ...)
{
    char msg[BT_GRAMMAR_ERR_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->err_size, "%s at %s", msg,
             c->path[0] ? c->path : "/");
    return st;
}

/* Appends "/seg" to the path; returns the old length to restore. */
static size_t bt_gc_push(bt_gc_t *c, const char *seg, const char *seg2)
{
    size_t n = strlen(c->path);

    snprintf(c->path + n, sizeof(c->path) - n, "/%s%s%.40s", seg,
             seg2 ? "/" : "", seg2 ? seg2 : "");
    return n;
}

static bt_status_t bt_gc_node(bt_gc_t *c, bt_gn_kind_t kind, uint32_t *idx_p)
{
    bt_grammar_t *g = c->g;

    if (g->n_nodes >= BT_GRAMMAR_MAX_NODES) {
        return bt_gc_fail(c, BT_ERR_TOO_LARGE, "schema has more than %d nodes",
                          BT_GRAMMAR_MAX_NODES);
    }
    if (BT_ARRAY_RESERVE(g->nodes, g->cap_nodes, g->n_nodes + 1, 16) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    memset(&g->nodes[g->n_nodes], 0, sizeof(g->nodes[0]));
    g->nodes[g->n_nodes].kind = kind;
    g->nodes[g->n_nodes].max = UINT32_MAX;
    *idx_p = g->n_nodes++;
    return BT_OK;
}

static bt_status_t bt_gc_bytes(bt_gc_t *c, const char *s, size_t len,
                               uint32_t *off_p)
{
    bt_grammar_t *g = c->g;

    if (g->n_bytes + len > BT_GRAMMAR_MAX_LITERAL) {
        return bt_gc_fail(c, BT_ERR_TOO_LARGE,
                          "enum, const and property names exceed %u bytes",
                          BT_GRAMMAR_MAX_LITERAL);
    }
    if (BT_ARRAY_RESERVE(g->bytes, g->cap_bytes, g->n_bytes + len, 256) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    memcpy(g->bytes + g->n_bytes, s, len);
    *off_p = g->n_bytes;
    g->n_bytes += (uint32_t)len;
    return BT_OK;
}

/* A value as compact JSON text, the bytes the output must match. */
static bt_status_t bt_gc_text(bt_gc_t *c, const json_t *v, uint32_t *off_p,
                              uint32_t *len_p)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    bt_status_t st;

    if (s == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    *len_p = (uint32_t)strlen(s);
    st = *len_p == 0 ? bt_gc_fail(c, BT_ERR_INVALID_ARG, "empty value")
                     : bt_gc_bytes(c, s, *len_p, off_p);
    free(s);
    return st;
}

static bt_status_t bt_gc_literals(bt_gc_t *c, const json_t *const *vals,
                                  size_t n, uint32_t *idx_p)
{
    bt_grammar_t *g = c->g;
    uint32_t idx;
    bt_status_t st = bt_gc_node(c, BT_GN_LITERAL, &idx);

    if (st != BT_OK) {
        return st;
    }
    if (BT_ARRAY_RESERVE(g->lits, g->cap_lits, g->n_lits + n, 16) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    g->nodes[idx].first = g->n_lits;
    g->nodes[idx].n = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        bt_glit_t *l = &g->lits[g->n_lits + i];

        st = bt_gc_text(c, vals[i], &l->off, &l->len);
        if (st != BT_OK) {
            return st;
        }
    }
    g->n_lits += (uint32_t)n;
    *idx_p = idx;
    return BT_OK;
}

static bt_status_t bt_gc_anyof(bt_gc_t *c, const uint32_t *alts, size_t n,
                               uint32_t *idx_p)
{
    bt_grammar_t *g = c->g;
    uint32_t idx;
    bt_status_t st = bt_gc_node(c, BT_GN_ANYOF, &idx);

    if (st != BT_OK) {
        return st;
    }
    if (BT_ARRAY_RESERVE(g->alts, g->cap_alts, g->n_alts + n, 16) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    memcpy(g->alts + g->n_alts, alts, n * sizeof(*alts));
    g->nodes[idx].first = g->n_alts;
    g->nodes[idx].n = (uint32_t)n;
    g->n_alts += (uint32_t)n;
    *idx_p = idx;
    return BT_OK;
}

/* The any-value node: object (any keys) | array | string | number |
 * true | false | null, built once; containers refer back to it. */
static bt_status_t bt_gc_any(bt_gc_t *c, uint32_t *idx_p)
{
    bt_grammar_t *g = c->g;
    json_t *lit[3] = { json_true(), json_false(), json_null() };
    uint32_t alts[5], any;
    bt_status_t st;

    if (g->any != UINT32_MAX) {
        *idx_p = g->any;
        return BT_OK;
    }
    /* reserve the anyof node first so the containers can name it */
    st = bt_gc_node(c, BT_GN_ANYOF, &any);
    if (st == BT_OK) st = bt_gc_node(c, BT_GN_OBJECT_ANY, &alts[0]);
    if (st == BT_OK) st = bt_gc_node(c, BT_GN_ARRAY, &alts[1]);
    if (st == BT_OK) st = bt_gc_node(c, BT_GN_STRING, &alts[2]);
    if (st == BT_OK) st = bt_gc_node(c, BT_GN_NUMBER, &alts[3]);
    if (st == BT_OK) st = bt_gc_literals(c, (const json_t *const *)lit, 3, &alts[4]);
    if (st != BT_OK) {
        return st;
    }
    g->nodes[alts[0]].items = any;
    g->nodes[alts[0]].first = alts[2];
    g->nodes[alts[1]].items = any;
    if (BT_ARRAY_RESERVE(g->alts, g->cap_alts, g->n_alts + 5, 16) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    memcpy(g->alts + g->n_alts, alts, sizeof(alts));
    g->nodes[any].first = g->n_alts;
    g->nodes[any].n = 5;
    g->n_alts += 5;
    g->any = any;
    *idx_p = any;
    return BT_OK;
}

static bt_status_t bt_gc_schema(bt_gc_t *c, const json_t *s, int depth,
                                uint32_t *idx_p);

/* A non-negative integer keyword no larger than `max`; absent: *out kept. */
static bt_status_t bt_gc_count(bt_gc_t *c, const json_t *s, const char *key,
                               uint32_t max, uint32_t *out)
{
    const json_t *v = json_object_get(s, key);
    double d;

    if (v == NULL) {
        return BT_OK;
    }
    d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || d != floor(d)) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                          "'%s' must be a non-negative integer", key);
    }
    if (d > max) {
        return bt_gc_fail(c, BT_ERR_TOO_LARGE, "'%s' above %u is not supported",
                          key, max);
    }
    *out = (uint32_t)d;
    return BT_OK;
}

static bt_status_t bt_gc_bound(bt_gc_t *c, const json_t *s, const char *key,
                               bool *has_p, double *val_p)
{
    const json_t *v = json_object_get(s, key);

    if (v == NULL) {
        return BT_OK;
    }
    if (!json_is_number(v)) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG, "'%s' must be a number", key);
    }
    *has_p = true;
    *val_p = json_number_value(v);
    return BT_OK;
}

static bt_status_t bt_gc_number(bt_gc_t *c, const json_t *s, bool integer,
                                uint32_t *idx_p)
{
    bt_gnode_t n;
    bool has_xlo = false, has_xhi = false;
    double xlo = 0, xhi = 0;
    bt_status_t st;
    uint32_t idx;

    memset(&n, 0, sizeof(n));
    n.kind = BT_GN_NUMBER;
    n.integer = integer;
    if ((st = bt_gc_bound(c, s, "minimum", &n.has_lo, &n.lo)) != BT_OK ||
        (st = bt_gc_bound(c, s, "maximum", &n.has_hi, &n.hi)) != BT_OK ||
        (st = bt_gc_bound(c, s, "exclusiveMinimum", &has_xlo, &xlo)) != BT_OK ||
        (st = bt_gc_bound(c, s, "exclusiveMaximum", &has_xhi, &xhi)) != BT_OK) {
        return st;
    }
    /* the tighter of each pair */
    if (has_xlo && (!n.has_lo || xlo >= n.lo)) {
        n.has_lo = n.lo_excl = true;
        n.lo = xlo;
    }
    if (has_xhi && (!n.has_hi || xhi <= n.hi)) {
        n.has_hi = n.hi_excl = true;
        n.hi = xhi;
    }
    if ((n.has_lo && fabs(n.lo) > 1e15) || (n.has_hi && fabs(n.hi) > 1e15)) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                          "number bounds beyond 1e15 are not supported");
    }
    {
        bt_gframe_t f;

        /* some value must exist: the empty prefix is feasible */
        memset(&f, 0, sizeof(f));
        if (!bt_gnum_feasible(&n, &f, BT_GP_START)) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                              "minimum/maximum admit no %s",
                              integer ? "integer" : "number");
        }
    }
    st = bt_gc_node(c, BT_GN_NUMBER, &idx);
    if (st == BT_OK) {
        c->g->nodes[idx] = n;
        *idx_p = idx;
    }
    return st;
}

static bt_status_t bt_gc_string(bt_gc_t *c, const json_t *s, uint32_t *idx_p)
{
    const json_t *pat = json_object_get(s, "pattern");
    uint32_t lo = 0, hi = UINT32_MAX, idx;
    bt_status_t st;

    if ((st = bt_gc_count(c, s, "minLength", BT_GRAMMAR_MAX_LENGTH, &lo)) != BT_OK ||
        (st = bt_gc_count(c, s, "maxLength", BT_GRAMMAR_MAX_LENGTH, &hi)) != BT_OK) {
        return st;
    }
    if (lo > hi) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG, "minLength above maxLength");
    }
    if (pat != NULL) {
        bt_grammar_t *g = c->g;
        const char *why = NULL;

        if (!json_is_string(pat)) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG, "'pattern' must be a string");
        }
        if (lo > 0 || hi != UINT32_MAX) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG, "unsupported schema keyword "
                              "'pattern' beside minLength/maxLength");
        }
        if (g->n_regexes >= 64) {
            return bt_gc_fail(c, BT_ERR_TOO_LARGE, "more than 64 patterns");
        }
        if (BT_ARRAY_RESERVE(g->regexes, g->cap_regexes, g->n_regexes + 1, 4) != BT_OK) {
            return BT_ERR_NO_MEMORY;
        }
        if (bt_gregex_compile(json_string_value(pat), json_string_length(pat),
                              &g->regexes[g->n_regexes], &why) != BT_OK) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG, "unsupported schema keyword "
                              "'pattern': the pattern %s", why);
        }
        g->n_regexes++;
    }
    st = bt_gc_node(c, BT_GN_STRING, &idx);
    if (st == BT_OK) {
        c->g->nodes[idx].min = lo;
        c->g->nodes[idx].max = hi;
        c->g->nodes[idx].regex = pat != NULL ? c->g->n_regexes : 0;
        *idx_p = idx;
    }
    return st;
}

static bt_status_t bt_gc_array(bt_gc_t *c, const json_t *s, int depth,
                               uint32_t *idx_p)
{
    const json_t *items = json_object_get(s, "items");
    uint32_t lo = 0, hi = UINT32_MAX, item, idx;
    bt_status_t st;
    size_t mark;

    if ((st = bt_gc_count(c, s, "minItems", BT_GRAMMAR_MAX_ITEMS, &lo)) != BT_OK ||
        (st = bt_gc_count(c, s, "maxItems", BT_GRAMMAR_MAX_ITEMS, &hi)) != BT_OK) {
        return st;
    }
    if (lo > hi) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG, "minItems above maxItems");
    }
    if (json_is_array(items)) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                          "unsupported schema keyword 'items' as an array "
                          "(tuples)");
    }
    mark = bt_gc_push(c, "items", NULL);
    st = items ? bt_gc_schema(c, items, depth + 1, &item) : bt_gc_any(c, &item);
    c->path[mark] = '\0';
    if (st != BT_OK) {
        return st;
    }
    st = bt_gc_node(c, BT_GN_ARRAY, &idx);
    if (st == BT_OK) {
        c->g->nodes[idx].items = item;
        c->g->nodes[idx].min = lo;
        c->g->nodes[idx].max = hi;
        *idx_p = idx;
    }
    return st;
}

static bool bt_gc_in_required(const json_t *req, const char *name)
{
    size_t i;
    json_t *v;

    json_array_foreach(req, i, v) {
        if (strcmp(json_string_value(v), name) == 0) {
            return true;
        }
    }
    return false;
}

static bt_status_t bt_gc_object(bt_gc_t *c, const json_t *s, int depth,
                                uint32_t *idx_p)
{
    bt_grammar_t *g = c->g;
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *extra = json_object_get(s, "additionalProperties");
    uint32_t first, n, idx, value, key_node;
    const char *key;
    json_t *v;
    size_t i, mark;
    bt_status_t st;

    if (props != NULL && !json_is_object(props)) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG, "'properties' must be an object");
    }
    if (extra != NULL && !json_is_boolean(extra) && !json_is_object(extra)) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                          "'additionalProperties' must be a boolean or a schema");
    }
    if (req != NULL && !json_is_array(req)) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG, "'required' must be an array");
    }
    json_array_foreach(req, i, v) {
        if (!json_is_string(v)) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                              "'required' must list strings");
        }
        if (json_object_get(props, json_string_value(v)) == NULL) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                              "'required' names '%.64s', which is not in "
                              "'properties'", json_string_value(v));
        }
    }
    n = props ? (uint32_t)json_object_size(props) : 0;
    if (n > BT_GRAMMAR_MAX_PROPS) {
        return bt_gc_fail(c, BT_ERR_TOO_LARGE, "more than %d properties",
                          BT_GRAMMAR_MAX_PROPS);
    }
    if (n == 0 && !json_is_false(extra)) {
        /* no declared properties: any keys, values as additionalProperties */
        mark = bt_gc_push(c, "additionalProperties", NULL);
        st = json_is_object(extra) ? bt_gc_schema(c, extra, depth + 1, &value)
                                   : bt_gc_any(c, &value);
        c->path[mark] = '\0';
        if (st == BT_OK) {
            st = bt_gc_node(c, BT_GN_STRING, &key_node);
        }
        if (st == BT_OK) {
            st = bt_gc_node(c, BT_GN_OBJECT_ANY, &idx);
        }
        if (st == BT_OK) {
            g->nodes[idx].items = value;
            g->nodes[idx].first = key_node;
            *idx_p = idx;
        }
        return st;
    }
    /* declared properties, in their order; extra keys are never produced,
     * which every value of additionalProperties allows */
    if (BT_ARRAY_RESERVE(g->props, g->cap_props, g->n_props + n, 16) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    first = g->n_props;
    g->n_props += n;
    i = 0;
    json_object_foreach((json_t *)props, key, v) {
        bt_gprop_t *p = &g->props[first + i];
        json_t *name = json_string(key);

        if (name == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        st = bt_gc_text(c, name, &p->key, &p->key_len);
        json_decref(name);
        if (st != BT_OK) {
            return st;
        }
        mark = bt_gc_push(c, "properties", key);
        st = bt_gc_schema(c, v, depth + 1, &p->value);
        c->path[mark] = '\0';
        if (st != BT_OK) {
            return st;
        }
        p->required = req != NULL && bt_gc_in_required(req, key);
        i++;
    }
    st = bt_gc_node(c, BT_GN_OBJECT, &idx);
    if (st == BT_OK) {
        g->nodes[idx].first = first;
        g->nodes[idx].n = n;
        *idx_p = idx;
    }
    return st;
}

/* Keywords: honoured by a type, or annotations. */
static const char *const bt_gc_known[] = {
    "type", "enum", "const", "anyOf", "properties", "required",
    "additionalProperties", "items", "minItems", "maxItems", "minLength",
    "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum",
    /* annotations */
    "title", "description", "default", "examples", "$schema", "$id",
    "$comment", "deprecated", "readOnly", "writeOnly", NULL,
};

static bool bt_gc_is(const char *key, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(key, list[i]) == 0) {
            return true;
        }
    }
    return false;
}

static bool bt_gc_type_ok(const char *type, const json_t *v)
{
    if (strcmp(type, "string") == 0) return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (strcmp(type, "number") == 0) return json_is_number(v);
    if (strcmp(type, "boolean") == 0) return json_is_boolean(v);
    if (strcmp(type, "null") == 0) return json_is_null(v);
    if (strcmp(type, "object") == 0) return json_is_object(v);
    if (strcmp(type, "array") == 0) return json_is_array(v);
    return false;
}

static bt_status_t bt_gc_typed(bt_gc_t *c, const json_t *s, const char *type,
                               int depth, uint32_t *idx_p)
{
    if (strcmp(type, "string") == 0) return bt_gc_string(c, s, idx_p);
    if (strcmp(type, "integer") == 0) return bt_gc_number(c, s, true, idx_p);
    if (strcmp(type, "number") == 0) return bt_gc_number(c, s, false, idx_p);
    if (strcmp(type, "object") == 0) return bt_gc_object(c, s, depth, idx_p);
    if (strcmp(type, "array") == 0) return bt_gc_array(c, s, depth, idx_p);
    if (strcmp(type, "boolean") == 0) {
        json_t *b[2] = { json_true(), json_false() };

        return bt_gc_literals(c, (const json_t *const *)b, 2, idx_p);
    }
    if (strcmp(type, "null") == 0) {
        json_t *b[1] = { json_null() };

        return bt_gc_literals(c, (const json_t *const *)b, 1, idx_p);
    }
    return bt_gc_fail(c, BT_ERR_INVALID_ARG, "unknown type '%.32s'", type);
}

/* The type a schema without "type" has, from its keywords; NULL: any. */
static const char *bt_gc_infer_type(const json_t *s)
{
    if (json_object_get(s, "properties") || json_object_get(s, "required") ||
        json_object_get(s, "additionalProperties")) return "object";
    if (json_object_get(s, "items") || json_object_get(s, "minItems") ||
        json_object_get(s, "maxItems")) return "array";
    if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") ||
        json_object_get(s, "pattern"))
        return "string";
    if (json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
        json_object_get(s, "exclusiveMinimum") ||
        json_object_get(s, "exclusiveMaximum")) return "number";
    return NULL;
}

static bt_status_t bt_gc_enum(bt_gc_t *c, const json_t *s, uint32_t *idx_p)
{
    static const char *const with_enum[] = {
        "type", "enum", "const", "title", "description", "default",
        "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
        "writeOnly", NULL,
    };
    const json_t *e = json_object_get(s, "enum"), *k = json_object_get(s, "const");
    const json_t *type = json_object_get(s, "type");
    const json_t *vals[BT_GRAMMAR_MAX_ALTS];
    const char *key;
    json_t *v;
    size_t n = 0, i, j;

    json_object_foreach((json_t *)s, key, v) {
        if (!bt_gc_is(key, with_enum)) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                              "unsupported schema keyword '%.64s' beside "
                              "enum/const", key);
        }
    }
    if (e != NULL && k != NULL) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                          "unsupported schema keywords 'enum' with 'const'");
    }
    if (k != NULL) {
        vals[n++] = k;
    } else if (!json_is_array(e) || json_array_size(e) == 0) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                          "'enum' must be a non-empty array");
    } else if (json_array_size(e) > BT_GRAMMAR_MAX_ALTS) {
        return bt_gc_fail(c, BT_ERR_TOO_LARGE, "'enum' of more than %d values",
                          BT_GRAMMAR_MAX_ALTS);
    } else {
        json_array_foreach(e, i, v) {
            vals[n++] = v;
        }
    }
    for (i = 0; type != NULL && i < n; i++) {
        bool ok = false;

        if (json_is_string(type)) {
            ok = bt_gc_type_ok(json_string_value(type), vals[i]);
        }
        json_array_foreach(type, j, v) {
            ok = ok || (json_is_string(v) && bt_gc_type_ok(json_string_value(v), vals[i]));
        }
        if (!ok) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                              "enum/const value %zu does not have the schema's "
                              "type", i);
        }
    }
    return bt_gc_literals(c, vals, n, idx_p);
}

static bt_status_t bt_gc_schema(bt_gc_t *c, const json_t *s, int depth,
                                uint32_t *idx_p)
{
    const json_t *type, *any;
    const char *key, *t;
    json_t *v;
    uint32_t alts[BT_GRAMMAR_MAX_ALTS];
    size_t i, n = 0, mark;
    bt_status_t st;

    if (depth > BT_GRAMMAR_MAX_DEPTH) {
        return bt_gc_fail(c, BT_ERR_TOO_LARGE, "schema nested deeper than %d",
                          BT_GRAMMAR_MAX_DEPTH);
    }
    if (json_is_true(s)) {
        return bt_gc_any(c, idx_p);
    }
    if (!json_is_object(s)) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                          "a schema must be an object or true");
    }
    json_object_foreach((json_t *)s, key, v) {
        if (!bt_gc_is(key, bt_gc_known)) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                              "unsupported schema keyword '%.64s'", key);
        }
    }
    if (json_object_get(s, "enum") || json_object_get(s, "const")) {
        return bt_gc_enum(c, s, idx_p);
    }
    any = json_object_get(s, "anyOf");
    if (any != NULL) {
        /* beside anyOf only annotations (those after "title") */
        for (i = 0; bt_gc_known[i] != NULL && strcmp(bt_gc_known[i], "title") != 0; i++) {
            if (strcmp(bt_gc_known[i], "anyOf") != 0 &&
                json_object_get(s, bt_gc_known[i]) != NULL) {
                return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                                  "unsupported schema keyword '%s' beside anyOf",
                                  bt_gc_known[i]);
            }
        }
        if (!json_is_array(any) || json_array_size(any) == 0) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                              "'anyOf' must be a non-empty array");
        }
        if (json_array_size(any) > BT_GRAMMAR_MAX_ALTS) {
            return bt_gc_fail(c, BT_ERR_TOO_LARGE, "'anyOf' of more than %d "
                              "schemas", BT_GRAMMAR_MAX_ALTS);
        }
        json_array_foreach(any, i, v) {
            char num[24];

            snprintf(num, sizeof(num), "%zu", i);
            mark = bt_gc_push(c, "anyOf", num);
            st = bt_gc_schema(c, v, depth + 1, &alts[n++]);
            c->path[mark] = '\0';
            if (st != BT_OK) {
                return st;
            }
        }
        return n == 1 ? (*idx_p = alts[0], BT_OK) : bt_gc_anyof(c, alts, n, idx_p);
    }
    type = json_object_get(s, "type");
    if (type == NULL) {
        t = bt_gc_infer_type(s);
        return t ? bt_gc_typed(c, s, t, depth, idx_p) : bt_gc_any(c, idx_p);
    }
    if (json_is_string(type)) {
        return bt_gc_typed(c, s, json_string_value(type), depth, idx_p);
    }
    if (!json_is_array(type) || json_array_size(type) == 0 ||
        json_array_size(type) > 7) {
        return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                          "'type' must be a type name or a list of them");
    }
    json_array_foreach(type, i, v) {
        if (!json_is_string(v)) {
            return bt_gc_fail(c, BT_ERR_INVALID_ARG,
                              "'type' must be a type name or a list of them");
        }
        st = bt_gc_typed(c, s, json_string_value(v), depth, &alts[n++]);
        if (st != BT_OK) {
            return st;
        }
    }
    return n == 1 ? (*idx_p = alts[0], BT_OK) : bt_gc_anyof(c, alts, n, idx_p);
}

void bt_grammar_destroy(bt_grammar_t *g)
{
    if (g == NULL) {
        return;
    }
    free(g->nodes);
    free(g->alts);
    free(g->lits);
    free(g->props);
    free(g->bytes);
    free(g->regexes);
    free(g);
}

bt_status_t bt_grammar_compile(bt_grammar_kind_t kind, const char *schema,
                               size_t len, bt_grammar_t **grammar_p,
                               char *err, size_t err_size)
{
    bt_gc_t c;
    json_error_t jerr;
    json_t *root = NULL;
    bt_status_t st;

    memset(&c, 0, sizeof(c));
    c.err = err;
    c.err_size = err_size;
    err[0] = '\0';
    c.g = calloc(1, sizeof(*c.g));
    if (c.g == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    c.g->any = UINT32_MAX;
    if (kind == BT_GRAMMAR_JSON_OBJECT) {
        json_t *obj = json_pack("{s:s}", "type", "object");

        st = obj ? bt_gc_schema(&c, obj, 0, &c.g->root) : BT_ERR_NO_MEMORY;
        json_decref(obj);
    } else if (kind != BT_GRAMMAR_JSON_SCHEMA) {
        st = bt_gc_fail(&c, BT_ERR_INVALID_ARG, "unknown grammar kind");
    } else if (len > BT_GRAMMAR_MAX_SCHEMA) {
        st = bt_gc_fail(&c, BT_ERR_TOO_LARGE, "schema larger than %u bytes",
                        BT_GRAMMAR_MAX_SCHEMA);
    } else if ((root = json_loadb(schema, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        snprintf(err, err_size, "schema is not valid JSON: %s", jerr.text);
        st = BT_ERR_INVALID_ARG;
    } else {
        st = bt_gc_schema(&c, root, 0, &c.g->root);
    }
    json_decref(root);
    if (st != BT_OK) {
        if (st == BT_ERR_NO_MEMORY) {
            snprintf(err, err_size, "out of memory compiling the schema");
        }
        bt_grammar_destroy(c.g);
        return st;
    }
    *grammar_p = c.g;
    return BT_OK;
}
