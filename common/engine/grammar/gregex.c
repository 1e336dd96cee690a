/* `pattern` for strings: a regular-expression subset compiled to a
 * position (Glushkov) automaton of at most 63 positions, so a string's
 * regex state is one 64-bit set in its frame. Subset: literals, '.',
 * classes [...] / [^...] with ranges, \d \w \s (and \D \W \S), escaped
 * punctuation, groups (...) and (?:...), '|', quantifiers ? * + {n}
 * {n,} {n,m}, '^' at the start and '$' at the end (without them the
 * pattern may match anywhere, as JSON Schema says). Characters are the
 * printable ASCII ones a JSON string holds unescaped (not '"' or '\'):
 * a class is cut to those, so what is generated is a subset of what the
 * pattern allows. Anything else is refused with the reason. */
#include "grammar_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BT_GRX_START (1ull << 63)   /* nothing matched yet */
#define BT_GRX_MAX_AST 512
#define BT_GRX_MAX_REPEAT 32

typedef enum { GRX_CLASS, GRX_CAT, GRX_ALT, GRX_REPEAT, GRX_EMPTY } bt_grx_kind_t;

typedef struct {
    bt_grx_kind_t kind;
    int           a, b;        /* children (CAT, ALT; REPEAT: a) */
    uint32_t      min, max;    /* REPEAT; max UINT32_MAX: unbounded */
    uint8_t       cls[32];     /* CLASS: the byte set */
} bt_grx_ast_t;

typedef struct {
    const char   *p, *end;
    bt_grx_ast_t  ast[BT_GRX_MAX_AST];
    int           n;
    const char   *why;          /* the first error */
    bt_gregex_t  *out;
} bt_grx_parse_t;

static bool bt_grx_ok_byte(int c)
{
    return c >= 0x20 && c <= 0x7E && c != '"' && c != '\\';
}

static void bt_grx_set(uint8_t *cls, int lo, int hi)
{
    for (int c = lo; c <= hi; c++) {
        if (bt_grx_ok_byte(c)) {
            cls[c / 8] |= (uint8_t)(1u << (c % 8));
        }
    }
}

static int bt_grx_node(bt_grx_parse_t *ps, bt_grx_kind_t kind, int a, int b)
{
    bt_grx_ast_t *n;

    if (ps->n >= BT_GRX_MAX_AST) {
        ps->why = "is too long";
        return -1;
    }
    n = &ps->ast[ps->n];
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->a = a;
    n->b = b;
    return ps->n++;
}

/* \d \w \s and their negations, or an escaped punctuation character. */
static bool bt_grx_escape(bt_grx_parse_t *ps, uint8_t *cls)
{
    uint8_t tmp[32] = { 0 };
    int c;

    if (ps->p >= ps->end) {
        ps->why = "ends with a backslash";
        return false;
    }
    c = (unsigned char)*ps->p++;
    switch (c) {
    case 'd': case 'D':
        bt_grx_set(tmp, '0', '9');
        break;
    case 'w': case 'W':
        bt_grx_set(tmp, '0', '9');
        bt_grx_set(tmp, 'a', 'z');
        bt_grx_set(tmp, 'A', 'Z');
        bt_grx_set(tmp, '_', '_');
        break;
    case 's': case 'S':
        bt_grx_set(tmp, ' ', ' ');   /* the one space a JSON string holds raw */
        break;
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9')) {
            ps->why = "uses an escape other than \\d \\w \\s";
            return false;
        }
        bt_grx_set(cls, c, c);
        return true;
    }
    if (c >= 'A' && c <= 'Z') {   /* negated */
        for (int i = 0; i < 32; i++) {
            tmp[i] = (uint8_t)~tmp[i];
        }
        for (int i = 0; i < 256; i++) {
            if (!bt_grx_ok_byte(i)) {
                tmp[i / 8] &= (uint8_t)~(1u << (i % 8));
            }
        }
    }
    for (int i = 0; i < 32; i++) {
        cls[i] |= tmp[i];
    }
    return true;
}

static int bt_grx_class(bt_grx_parse_t *ps)
{
    int idx = bt_grx_node(ps, GRX_CLASS, -1, -1);
    bool neg = false, first = true;
    uint8_t cls[32] = { 0 };

    if (idx < 0) {
        return -1;
    }
    if (ps->p < ps->end && *ps->p == '^') {
        neg = true;
        ps->p++;
    }
    while (ps->p < ps->end && (*ps->p != ']' || first)) {
        int lo = (unsigned char)*ps->p++, hi;

        first = false;
        if (lo == '\\') {
            if (!bt_grx_escape(ps, cls)) {
                return -1;
            }
            continue;
        }
        if (lo == '[') {
            ps->why = "uses a nested class or a POSIX class";
            return -1;
        }
        hi = lo;
        if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
            hi = (unsigned char)ps->p[1];
            ps->p += 2;
            if (hi == '\\' || hi < lo) {
                ps->why = "has a bad range in a class";
                return -1;
            }
        }
        if (lo >= 0x80 || hi >= 0x80) {
            ps->why = "has non-ASCII characters";
            return -1;
        }
        bt_grx_set(cls, lo, hi);
    }
    if (ps->p >= ps->end) {
        ps->why = "has an unclosed class";
        return -1;
    }
    ps->p++;
    if (neg) {
        for (int i = 0; i < 32; i++) {
            cls[i] = (uint8_t)~cls[i];
        }
        for (int i = 0; i < 256; i++) {
            if (!bt_grx_ok_byte(i)) {
                cls[i / 8] &= (uint8_t)~(1u << (i % 8));
            }
        }
    }
    memcpy(ps->ast[idx].cls, cls, 32);
    return idx;
}

static int bt_grx_alt(bt_grx_parse_t *ps, int depth);

static int bt_grx_atom(bt_grx_parse_t *ps, int depth)
{
    int c = (unsigned char)*ps->p, idx;

    if (c == '(') {
        ps->p++;
        if (ps->p < ps->end && *ps->p == '?') {
            if (ps->p + 1 < ps->end && ps->p[1] == ':') {
                ps->p += 2;
            } else {
                ps->why = "uses lookaround or named groups";
                return -1;
            }
        }
        idx = bt_grx_alt(ps, depth + 1);
        if (idx < 0) {
            return -1;
        }
        if (ps->p >= ps->end || *ps->p != ')') {
            ps->why = "has an unclosed group";
            return -1;
        }
        ps->p++;
        return idx;
    }
    if (c == '[') {
        ps->p++;
        return bt_grx_class(ps);
    }
    if (c == '^' || c == '$') {
        ps->why = "has '^' or '$' elsewhere than at its ends";
        return -1;
    }
    if (c == '*' || c == '+' || c == '?' || c == '{' || c == ')' || c == ']' || c == '}') {
        ps->why = "has a misplaced quantifier or bracket";
        return -1;
    }
    idx = bt_grx_node(ps, GRX_CLASS, -1, -1);
    if (idx < 0) {
        return -1;
    }
    ps->p++;
    if (c == '.') {
        bt_grx_set(ps->ast[idx].cls, 0x20, 0x7E);
    } else if (c == '\\') {
        if (!bt_grx_escape(ps, ps->ast[idx].cls)) {
            return -1;
        }
    } else if (c >= 0x80) {
        ps->why = "has non-ASCII characters";
        return -1;
    } else {
        bt_grx_set(ps->ast[idx].cls, c, c);
    }
    return idx;
}

static bool bt_grx_number(bt_grx_parse_t *ps, uint32_t *n_p)
{
    uint32_t n = 0;

    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
        return false;
    }
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        n = n * 10 + (uint32_t)(*ps->p++ - '0');
        if (n > BT_GRX_MAX_REPEAT) {
            ps->why = "repeats more than 32 times";
            return false;
        }
    }
    *n_p = n;
    return true;
}

static int bt_grx_repeat(bt_grx_parse_t *ps, int depth)
{
    int idx = bt_grx_atom(ps, depth);

    while (idx >= 0 && ps->p < ps->end &&
           (*ps->p == '*' || *ps->p == '+' || *ps->p == '?' || *ps->p == '{')) {
        uint32_t lo = 0, hi = UINT32_MAX;
        int r;

        switch (*ps->p++) {
        case '*': break;
        case '+': lo = 1; break;
        case '?': hi = 1; break;
        default:
            if (!bt_grx_number(ps, &lo)) {
                ps->why = ps->why ? ps->why : "has a bad {n,m}";
                return -1;
            }
            hi = lo;
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                hi = UINT32_MAX;
                if (ps->p < ps->end && *ps->p != '}' && !bt_grx_number(ps, &hi)) {
                    ps->why = ps->why ? ps->why : "has a bad {n,m}";
                    return -1;
                }
            }
            if (ps->p >= ps->end || *ps->p != '}' || hi < lo) {
                ps->why = "has a bad {n,m}";
                return -1;
            }
            ps->p++;
        }
        if (ps->p < ps->end && (*ps->p == '?' || *ps->p == '+')) {
            ps->p++;   /* lazy / possessive: the same language */
        }
        r = bt_grx_node(ps, GRX_REPEAT, idx, -1);
        if (r < 0) {
            return -1;
        }
        ps->ast[r].min = lo;
        ps->ast[r].max = hi;
        idx = r;
    }
    return idx;
}

static int bt_grx_concat(bt_grx_parse_t *ps, int depth)
{
    int idx = -2;

    while (ps->p < ps->end && *ps->p != '|' && *ps->p != ')' &&
           !(*ps->p == '$' && ps->p + 1 == ps->end)) {
        int r = bt_grx_repeat(ps, depth);

        if (r < 0) {
            return -1;
        }
        idx = idx == -2 ? r : bt_grx_node(ps, GRX_CAT, idx, r);
        if (idx < 0) {
            return -1;
        }
    }
    return idx == -2 ? bt_grx_node(ps, GRX_EMPTY, -1, -1) : idx;
}

static int bt_grx_alt(bt_grx_parse_t *ps, int depth)
{
    int idx;

    if (depth > 16) {
        ps->why = "nests groups deeper than 16";
        return -1;
    }
    idx = bt_grx_concat(ps, depth);
    while (idx >= 0 && ps->p < ps->end && *ps->p == '|') {
        int r;

        ps->p++;
        r = bt_grx_concat(ps, depth);
        idx = r < 0 ? -1 : bt_grx_node(ps, GRX_ALT, idx, r);
    }
    return idx;
}

/* ---- Glushkov: nullable, first, last and follow, positions emitted as
 * the tree is walked (a repeated subtree gets fresh positions) ---- */

typedef struct {
    bool     nullable;
    uint64_t first, last;
} bt_grx_sets_t;

static bool bt_grx_emit(bt_grx_parse_t *ps, int idx, bt_grx_sets_t *out);

static void bt_grx_seq(bt_gregex_t *rx, bt_grx_sets_t *acc, const bt_grx_sets_t *b)
{
    for (uint32_t i = 0; i < rx->n; i++) {
        if (acc->last & (1ull << i)) {
            rx->follow[i] |= b->first;
        }
    }
    acc->first |= acc->nullable ? b->first : 0;
    acc->last = b->last | (b->nullable ? acc->last : 0);
    acc->nullable = acc->nullable && b->nullable;
}

static bool bt_grx_emit(bt_grx_parse_t *ps, int idx, bt_grx_sets_t *out)
{
    const bt_grx_ast_t *n = &ps->ast[idx];
    bt_gregex_t *rx = ps->out;
    bt_grx_sets_t a, b;

    switch (n->kind) {
    case GRX_EMPTY:
        *out = (bt_grx_sets_t){ true, 0, 0 };
        return true;
    case GRX_CLASS: {
        bool any = false;

        for (int i = 0; i < 32; i++) {
            any = any || n->cls[i] != 0;
        }
        if (!any) {
            ps->why = "has a class that matches no character a JSON string "
                      "holds unescaped";
            return false;
        }
        if (rx->n >= 63) {
            ps->why = "needs more than 63 positions";
            return false;
        }
        memcpy(rx->cls[rx->n], n->cls, 32);
        rx->follow[rx->n] = 0;
        *out = (bt_grx_sets_t){ false, 1ull << rx->n, 1ull << rx->n };
        rx->n++;
        return true;
    }
    case GRX_CAT:
        if (!bt_grx_emit(ps, n->a, &a) || !bt_grx_emit(ps, n->b, &b)) {
            return false;
        }
        bt_grx_seq(rx, &a, &b);
        *out = a;
        return true;
    case GRX_ALT:
        if (!bt_grx_emit(ps, n->a, &a) || !bt_grx_emit(ps, n->b, &b)) {
            return false;
        }
        *out = (bt_grx_sets_t){ a.nullable || b.nullable, a.first | b.first,
                                a.last | b.last };
        return true;
    case GRX_REPEAT: {
        /* x{lo,hi}: lo copies, then hi - lo optional ones (or one starred) */
        bt_grx_sets_t acc = { true, 0, 0 };
        uint32_t copies = n->max == UINT32_MAX ? n->min + 1 : n->max;

        for (uint32_t k = 0; k < copies; k++) {
            if (!bt_grx_emit(ps, n->a, &b)) {
                return false;
            }
            if (k >= n->min) {
                b.nullable = true;
            }
            if (n->max == UINT32_MAX && k == n->min) {
                for (uint32_t i = 0; i < rx->n; i++) {
                    if (b.last & (1ull << i)) {
                        rx->follow[i] |= b.first;   /* the starred copy loops */
                    }
                }
            }
            bt_grx_seq(rx, &acc, &b);
        }
        *out = acc;
        return true;
    }
    }
    return false;
}

bt_status_t bt_gregex_compile(const char *pattern, size_t len,
                              bt_gregex_t *rx, const char **why_p)
{
    bt_grx_parse_t *ps = calloc(1, sizeof(*ps));
    bool head = len > 0 && pattern[0] == '^';
    bool tail = len > (size_t)head && pattern[len - 1] == '$' &&
                (len < 2 || pattern[len - 2] != '\\');
    bt_grx_sets_t s, any;
    int root;

    if (ps == NULL) {
        *why_p = "cannot be compiled (out of memory)";
        return BT_ERR_NO_MEMORY;
    }
    memset(rx, 0, sizeof(*rx));
    ps->p = pattern + head;
    ps->end = pattern + len;
    ps->out = rx;
    root = bt_grx_alt(ps, 0);
    if (root >= 0 && ps->p != ps->end && !(tail && ps->p + 1 == ps->end)) {
        ps->why = "has an unmatched ')'";
        root = -1;
    }
    if (root >= 0) {
        int dot = bt_grx_node(ps, GRX_CLASS, -1, -1), star;

        /* unanchored ends match anything: .* before and after */
        if (dot >= 0) {
            bt_grx_set(ps->ast[dot].cls, 0x20, 0x7E);
        }
        star = dot < 0 ? -1 : bt_grx_node(ps, GRX_REPEAT, dot, -1);
        if (star >= 0) {
            ps->ast[star].min = 0;
            ps->ast[star].max = UINT32_MAX;
        }
        s = (bt_grx_sets_t){ true, 0, 0 };
        if (star < 0 || (!head && !bt_grx_emit(ps, star, &any))) {
            root = -1;
        } else {
            if (!head) {
                bt_grx_seq(rx, &s, &any);
            }
            if (!bt_grx_emit(ps, root, &any)) {
                root = -1;
            } else {
                bt_grx_seq(rx, &s, &any);
                if (!tail) {
                    if (!bt_grx_emit(ps, star, &any)) {
                        root = -1;
                    } else {
                        bt_grx_seq(rx, &s, &any);
                    }
                }
            }
        }
    }
    if (root < 0) {
        *why_p = ps->why ? ps->why : "cannot be compiled";
        free(ps);
        return BT_ERR_INVALID_ARG;
    }
    rx->first = s.first;
    rx->last = s.last;
    rx->nullable = s.nullable;
    free(ps);
    return BT_OK;
}

uint64_t bt_gregex_step(const bt_gregex_t *rx, uint64_t set, uint8_t c)
{
    uint64_t cand = (set & BT_GRX_START) ? rx->first : 0, next = 0;

    for (uint32_t i = 0; i < rx->n; i++) {
        if (set & (1ull << i)) {
            cand |= rx->follow[i];
        }
    }
    for (uint32_t i = 0; i < rx->n; i++) {
        if ((cand & (1ull << i)) && (rx->cls[i][c / 8] >> (c % 8)) & 1) {
            next |= 1ull << i;
        }
    }
    return next;
}

bool bt_gregex_accepts(const bt_gregex_t *rx, uint64_t set)
{
    return ((set & BT_GRX_START) && rx->nullable) || (set & rx->last) != 0;
}

uint64_t bt_gregex_start(void)
{
    return BT_GRX_START;
}
