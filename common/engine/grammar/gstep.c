/* The automaton: a set of stacks of frames, advanced one byte at a time.
 * A frame is a value being written (its node and where in it); a stack is
 * one way to read the bytes so far; several stacks exist where the schema
 * is ambiguous (anyOf, enum, optional properties) until a byte decides.
 *
 * The output is compact JSON with at most one space after ':' and ',':
 * bounded whitespace keeps every document finite for a sampler that
 * would otherwise pad forever. */
#include "grammar_int.h"

#include <string.h>

typedef struct {
    bt_gframe_t f[BT_GSTACK_MAX_DEPTH];
    int         depth;
} bt_gstack_t;

static void bt_gemit(bt_gstate_t *out, const bt_gstack_t *s)
{
    const size_t bytes = (size_t)s->depth * sizeof(bt_gframe_t);

    for (uint16_t i = 0; i < out->n_stacks; i++) {
        int d = out->start[i + 1] - out->start[i];

        if (d == s->depth && memcmp(&out->f[out->start[i]], s->f, bytes) == 0) {
            return;
        }
    }
    /* past the bounds a reading is dropped: the language shrinks, every
     * remaining reading still completes */
    if (out->n_stacks >= BT_GSTATE_MAX_STACKS ||
        out->n_frames + s->depth > BT_GSTATE_MAX_FRAMES) {
        return;
    }
    memcpy(&out->f[out->n_frames], s->f, bytes);
    out->n_frames += (uint16_t)s->depth;
    out->n_stacks++;
    out->start[out->n_stacks] = out->n_frames;
}

static void bt_gframe_set(bt_gframe_t *f, uint32_t node, uint8_t phase)
{
    memset(f, 0, sizeof(*f));
    f->node = (uint16_t)node;
    f->phase = phase;
}

/* Pushes a value frame; false at the depth bound. */
static bool bt_gpush(bt_gstack_t *s, uint32_t node, uint8_t phase)
{
    if (s->depth >= BT_GSTACK_MAX_DEPTH) {
        return false;
    }
    bt_gframe_set(&s->f[s->depth++], node, phase);
    return true;
}

static void bt_gpop_emit(bt_gstate_t *out, bt_gstack_t *s)
{
    s->depth--;
    bt_gemit(out, s);
}

static bool bt_gcounted(const bt_gnode_t *n)
{
    return n->min > 0 || n->max != UINT32_MAX;
}

static void bt_gfeed(const bt_grammar_t *g, bt_gstack_t *s, uint8_t c,
                     bt_gstate_t *out);

/* Number frames: a digit, '.', or the end of the number. */
static void bt_gnum_digit(const bt_gnode_t *n, bt_gstack_t *s, uint8_t c,
                          bt_gstate_t *out)
{
    bt_gframe_t *t = &s->f[s->depth - 1];
    bt_gframe_t saved = *t;
    uint8_t next;

    if (c >= '0' && c <= '9') {
        switch (t->phase) {
        case BT_GP_START:
        case BT_GP_NUM_SIGN:
            next = c == '0' ? BT_GP_NUM_ZERO : BT_GP_NUM_INT;
            break;
        case BT_GP_NUM_INT:
            next = BT_GP_NUM_INT;
            break;
        case BT_GP_NUM_DOT:
        case BT_GP_NUM_FRAC:
            next = BT_GP_NUM_FRAC;
            t->b++;
            break;
        default:
            return;
        }
        t->v = t->v * 10 + (c - '0');
        t->a++;
    } else if (c == '.' && !n->integer &&
               (t->phase == BT_GP_NUM_ZERO || t->phase == BT_GP_NUM_INT)) {
        next = BT_GP_NUM_DOT;
    } else if (c == '-' && t->phase == BT_GP_START) {
        t->x |= BT_GX_NEG;
        next = BT_GP_NUM_SIGN;
    } else {
        return;
    }
    t->phase = next;
    if (bt_gnum_feasible(n, t, next)) {
        bt_gemit(out, s);
    }
    *t = saved;
}

static bool bt_gnum_done(const bt_gnode_t *n, const bt_gframe_t *t)
{
    return (t->phase == BT_GP_NUM_ZERO || t->phase == BT_GP_NUM_INT ||
            t->phase == BT_GP_NUM_FRAC) && bt_gnum_in_range(n, t);
}

/* UTF-8 in strings: x = pending continuation bytes | range code << 2 for
 * the next one (Unicode's table of well-formed sequences). */
static const uint8_t bt_gutf8_lo[5] = { 0x80, 0xA0, 0x80, 0x90, 0x80 };
static const uint8_t bt_gutf8_hi[5] = { 0xBF, 0xBF, 0x9F, 0xBF, 0x8F };

static bool bt_gutf8_lead(uint8_t c, uint8_t *x_p)
{
    if (c >= 0xC2 && c <= 0xDF) { *x_p = 1; return true; }
    if (c == 0xE0) { *x_p = 2 | 1 << 2; return true; }
    if (c == 0xED) { *x_p = 2 | 2 << 2; return true; }
    if (c >= 0xE1 && c <= 0xEF) { *x_p = 2; return true; }
    if (c == 0xF0) { *x_p = 3 | 3 << 2; return true; }
    if (c == 0xF4) { *x_p = 3 | 4 << 2; return true; }
    if (c >= 0xF1 && c <= 0xF3) { *x_p = 3; return true; }
    return false;
}

static void bt_gstring(const bt_grammar_t *g, const bt_gnode_t *n,
                       bt_gstack_t *s, uint8_t c, bt_gstate_t *out)
{
    bt_gframe_t *t = &s->f[s->depth - 1];
    const bool counted = bt_gcounted(n);
    const bool room = !counted || t->a < n->max;
    uint8_t pending = t->x & 3, range = t->x >> 2, x;

    if (n->regex != 0) {
        /* a patterned string: printable ASCII the pattern can still take */
        const bt_gregex_t *rx = &g->regexes[n->regex - 1];

        if (c == '"') {
            if (bt_gregex_accepts(rx, (uint64_t)t->v)) {
                bt_gpop_emit(out, s);
            }
        } else if (c >= 0x20 && c <= 0x7E && c != '\\') {
            uint64_t next = bt_gregex_step(rx, (uint64_t)t->v, c);

            if (next != 0) {
                t->v = (int64_t)next;
                bt_gemit(out, s);
            }
        }
        return;
    }
    if (t->phase == BT_GP_STR_ESC) {
        if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
            t->phase = BT_GP_STR;
            t->a += counted;
            bt_gemit(out, s);
        }
        return;
    }
    if (pending > 0) {
        if (c >= bt_gutf8_lo[range] && c <= bt_gutf8_hi[range]) {
            t->x = (uint8_t)(pending - 1);
            bt_gemit(out, s);
        }
        return;
    }
    if (c == '"') {
        if (!counted || t->a >= n->min) {
            bt_gpop_emit(out, s);
        }
        return;
    }
    if (c < 0x20 || !room) {
        return;
    }
    if (c == '\\') {
        t->phase = BT_GP_STR_ESC;
        bt_gemit(out, s);
        return;
    }
    if (c >= 0x80) {
        if (!bt_gutf8_lead(c, &x)) {
            return;
        }
        t->x = x;
    }
    t->a += counted;
    bt_gemit(out, s);
}

/* The first byte of a value of node t->node. */
static void bt_gstart(const bt_grammar_t *g, bt_gstack_t *s, uint8_t c,
                      bt_gstate_t *out)
{
    bt_gframe_t *t = &s->f[s->depth - 1];
    const bt_gnode_t *n = &g->nodes[t->node];
    const bool room = s->depth < BT_GSTACK_MAX_DEPTH;
    bt_gframe_t saved = *t;

    switch (n->kind) {
    case BT_GN_ANYOF:
        for (uint32_t i = 0; i < n->n; i++) {
            t->node = (uint16_t)g->alts[n->first + i];
            bt_gstart(g, s, c, out);
            *t = saved;
        }
        return;
    case BT_GN_LITERAL:
        for (uint32_t i = 0; i < n->n; i++) {
            const bt_glit_t *l = &g->lits[n->first + i];

            if (g->bytes[l->off] != c) {
                continue;
            }
            if (l->len == 1) {
                bt_gpop_emit(out, s);
                s->depth++;
            } else {
                t->phase = BT_GP_LIT;
                t->a = i;
                t->v = 1;
                bt_gemit(out, s);
            }
            *t = saved;
        }
        return;
    case BT_GN_STRING:
        if (c == '"') {
            t->phase = BT_GP_STR;
            t->v = n->regex != 0 ? (int64_t)bt_gregex_start() : 0;
            bt_gemit(out, s);
        }
        return;
    case BT_GN_NUMBER:
        bt_gnum_digit(n, s, c, out);
        return;
    case BT_GN_OBJECT:
        if (c == '{' && room) {
            t->phase = BT_GP_OBJ_KEY0;
            bt_gemit(out, s);
        }
        return;
    case BT_GN_OBJECT_ANY:
        if (c == '{' && room) {
            t->phase = BT_GP_OANY_FIRST;
            bt_gemit(out, s);
        }
        return;
    case BT_GN_ARRAY:
        if (c == '[' && room) {
            t->phase = BT_GP_ARR_FIRST;
            bt_gemit(out, s);
        }
        return;
    }
}

static bool bt_grequired_from(const bt_grammar_t *g, const bt_gnode_t *n,
                              uint32_t from)
{
    for (uint32_t i = from; i < n->n; i++) {
        if (g->props[n->first + i].required) {
            return true;
        }
    }
    return false;
}

/* After '{' or ',': the opening quote of one of the properties that may
 * come next (optional ones may be skipped, a required one may not). */
static void bt_gkeys(const bt_grammar_t *g, const bt_gnode_t *n,
                     bt_gstack_t *s, bt_gstate_t *out)
{
    bt_gframe_t *t = &s->f[s->depth - 1];
    bt_gframe_t saved = *t;

    for (uint32_t i = saved.a; i < n->n; i++) {
        t->phase = BT_GP_OBJ_NAME;
        t->a = i;
        t->v = 1;
        bt_gemit(out, s);
        *t = saved;
        if (g->props[n->first + i].required) {
            break;
        }
    }
}

static void bt_gobject(const bt_grammar_t *g, const bt_gnode_t *n,
                       bt_gstack_t *s, uint8_t c, bt_gstate_t *out)
{
    bt_gframe_t *t = &s->f[s->depth - 1];
    const bt_gprop_t *p;

    switch (t->phase) {
    case BT_GP_OBJ_KEY_WS:
        if (c == ' ') {
            t->phase = BT_GP_OBJ_KEY;
            bt_gemit(out, s);
            return;
        }
        /* fall through */
    case BT_GP_OBJ_KEY:
    case BT_GP_OBJ_KEY0:
        if (c == '"') {
            bt_gkeys(g, n, s, out);
        } else if (c == '}' && t->phase == BT_GP_OBJ_KEY0 &&
                   !bt_grequired_from(g, n, 0)) {
            bt_gpop_emit(out, s);
        }
        return;
    case BT_GP_OBJ_NAME:
        p = &g->props[n->first + t->a];
        if (g->bytes[p->key + t->v] == c) {
            if (++t->v == p->key_len) {
                t->phase = BT_GP_OBJ_COLON;
                t->v = 0;
            }
            bt_gemit(out, s);
        }
        return;
    case BT_GP_OBJ_COLON:
        p = &g->props[n->first + t->a];
        if (c == ':') {
            t->phase = BT_GP_OBJ_AFTER;
            t->a++;
            if (bt_gpush(s, p->value, BT_GP_START_WS)) {
                bt_gemit(out, s);
            }
        }
        return;
    case BT_GP_OBJ_AFTER:
        if (c == ',' && t->a < n->n) {
            t->phase = BT_GP_OBJ_KEY_WS;
            bt_gemit(out, s);
        } else if (c == '}' && !bt_grequired_from(g, n, t->a)) {
            bt_gpop_emit(out, s);
        }
        return;
    }
}

static void bt_gobject_any(const bt_gnode_t *n, bt_gstack_t *s, uint8_t c,
                           bt_gstate_t *out)
{
    bt_gframe_t *t = &s->f[s->depth - 1];

    switch (t->phase) {
    case BT_GP_OANY_KEY_WS:
        if (c == ' ') {
            t->phase = BT_GP_OANY_KEY;
            bt_gemit(out, s);
            return;
        }
        /* fall through */
    case BT_GP_OANY_FIRST:
    case BT_GP_OANY_KEY:
        if (c == '"') {
            t->phase = BT_GP_OANY_COLON;
            if (bt_gpush(s, n->first, BT_GP_STR)) {
                bt_gemit(out, s);
            }
        } else if (c == '}' && t->phase == BT_GP_OANY_FIRST) {
            bt_gpop_emit(out, s);
        }
        return;
    case BT_GP_OANY_COLON:
        if (c == ':') {
            t->phase = BT_GP_OANY_AFTER;
            if (bt_gpush(s, n->items, BT_GP_START_WS)) {
                bt_gemit(out, s);
            }
        }
        return;
    case BT_GP_OANY_AFTER:
        if (c == ',') {
            t->phase = BT_GP_OANY_KEY_WS;
            bt_gemit(out, s);
        } else if (c == '}') {
            bt_gpop_emit(out, s);
        }
        return;
    }
}

static void bt_garray(const bt_grammar_t *g, const bt_gnode_t *n,
                      bt_gstack_t *s, uint8_t c, bt_gstate_t *out)
{
    bt_gframe_t *t = &s->f[s->depth - 1];

    if (t->phase == BT_GP_ARR_FIRST) {
        if (c == ']') {
            if (n->min == 0) {
                bt_gpop_emit(out, s);
            }
            return;
        }
        if (n->max == 0) {
            return;
        }
        t->phase = BT_GP_ARR_AFTER;
        t->a = 1;
        if (bt_gpush(s, n->items, BT_GP_START)) {
            bt_gstart(g, s, c, out);
        }
        return;
    }
    if (c == ',' && t->a < n->max) {
        t->a++;
        if (bt_gpush(s, n->items, BT_GP_START_WS)) {
            bt_gemit(out, s);
        }
    } else if (c == ']' && t->a >= n->min) {
        bt_gpop_emit(out, s);
    }
}

/* Feeds c to stack s (modified: callers pass a scratch copy). */
static void bt_gfeed(const bt_grammar_t *g, bt_gstack_t *s, uint8_t c,
                     bt_gstate_t *out)
{
    bt_gframe_t *t;
    const bt_gnode_t *n;

    if (s->depth == 0) {
        return;   /* the document is complete: nothing may follow */
    }
    t = &s->f[s->depth - 1];
    n = &g->nodes[t->node];
    switch (t->phase) {
    case BT_GP_START_WS:
        if (c == ' ') {
            t->phase = BT_GP_START;
            bt_gemit(out, s);
            return;
        }
        t->phase = BT_GP_START;
        /* fall through */
    case BT_GP_START:
        bt_gstart(g, s, c, out);
        return;
    case BT_GP_LIT: {
        const bt_glit_t *l = &g->lits[n->first + t->a];

        if (g->bytes[l->off + t->v] == c) {
            if ((uint32_t)++t->v == l->len) {
                bt_gpop_emit(out, s);
            } else {
                bt_gemit(out, s);
            }
        }
        return;
    }
    case BT_GP_STR:
    case BT_GP_STR_ESC:
        bt_gstring(g, n, s, c, out);
        return;
    case BT_GP_NUM_SIGN:
    case BT_GP_NUM_ZERO:
    case BT_GP_NUM_INT:
    case BT_GP_NUM_DOT:
    case BT_GP_NUM_FRAC:
        bt_gnum_digit(n, s, c, out);
        if (bt_gnum_done(n, t)) {
            /* the number ends here and c belongs to what follows */
            s->depth--;
            bt_gfeed(g, s, c, out);
        }
        return;
    case BT_GP_OANY_FIRST:
    case BT_GP_OANY_KEY_WS:
    case BT_GP_OANY_KEY:
    case BT_GP_OANY_COLON:
    case BT_GP_OANY_AFTER:
        bt_gobject_any(n, s, c, out);
        return;
    case BT_GP_ARR_FIRST:
    case BT_GP_ARR_AFTER:
        bt_garray(g, n, s, c, out);
        return;
    default:
        bt_gobject(g, n, s, c, out);
        return;
    }
}

void bt_gstate_init(const bt_grammar_t *g, bt_gstate_t *s)
{
    bt_gstack_t st;

    s->n_stacks = 0;
    s->n_frames = 0;
    s->start[0] = 0;
    st.depth = 0;
    bt_gpush(&st, g->root, BT_GP_START);
    bt_gemit(s, &st);
}

void bt_gstate_step(const bt_grammar_t *g, const bt_gstate_t *s, uint8_t c,
                    bt_gstate_t *out)
{
    bt_gstack_t st;

    out->n_stacks = 0;
    out->n_frames = 0;
    out->start[0] = 0;
    for (uint16_t i = 0; i < s->n_stacks; i++) {
        st.depth = s->start[i + 1] - s->start[i];
        memcpy(st.f, &s->f[s->start[i]], (size_t)st.depth * sizeof(bt_gframe_t));
        bt_gfeed(g, &st, c, out);
    }
}

bool bt_gstate_string_idle(const bt_grammar_t *g, const bt_gstate_t *s)
{
    const bt_gframe_t *t;

    if (s->n_stacks != 1 || s->n_frames == 0) {
        return false;
    }
    t = &s->f[s->n_frames - 1];
    return t->phase == BT_GP_STR && (t->x & 3) == 0 &&
           !bt_gcounted(&g->nodes[t->node]) && g->nodes[t->node].regex == 0;
}

bool bt_gstate_complete(const bt_grammar_t *g, const bt_gstate_t *s)
{
    for (uint16_t i = 0; i < s->n_stacks; i++) {
        int d = s->start[i + 1] - s->start[i];
        const bt_gframe_t *t = &s->f[s->start[i]];

        if (d == 0 || (d == 1 && g->nodes[t->node].kind == BT_GN_NUMBER &&
                       bt_gnum_done(&g->nodes[t->node], t))) {
            return true;
        }
    }
    return false;
}

/* A counter against its bounds, clamped where one token cannot tell. */
static void bt_gkey_count(uint32_t a, uint32_t lo, uint32_t hi, uint32_t cap,
                          bt_gframe_t *f)
{
    uint32_t need = a >= lo ? 0 : lo - a;
    uint32_t left = hi == UINT32_MAX ? cap : (a >= hi ? 0 : hi - a);

    f->a = need < cap ? need : cap;
    f->pad2 = left < cap ? left : cap;
}

size_t bt_gstate_key(const bt_grammar_t *g, const bt_gstate_t *s,
                     uint32_t tok_max, uint8_t *key, size_t key_cap)
{
    const uint32_t cap = tok_max + 1;
    size_t len = sizeof(s->start[0]) * (s->n_stacks + 1);

    if (len + s->n_frames * sizeof(bt_gframe_t) > key_cap) {
        return 0;
    }
    memcpy(key, s->start, len);
    for (uint16_t i = 0; i < s->n_frames; i++) {
        bt_gframe_t f = s->f[i];
        const bt_gnode_t *n = &g->nodes[f.node];

        if ((f.phase == BT_GP_STR || f.phase == BT_GP_STR_ESC) &&
            bt_gcounted(n)) {
            bt_gkey_count(f.a, n->min, n->max, cap, &f);
        } else if (f.phase == BT_GP_ARR_AFTER) {
            bt_gkey_count(f.a, n->min, n->max, cap, &f);
        } else if (n->kind == BT_GN_NUMBER && !n->has_lo && !n->has_hi) {
            f.v = 0;   /* only the digit count matters */
        }
        memcpy(key + len, &f, sizeof(f));
        len += sizeof(f);
    }
    return len;
}
