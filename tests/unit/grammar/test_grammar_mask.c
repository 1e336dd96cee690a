/* Token masks: at random states each mask bit equals feeding that token's
 * bytes to the automaton (every vocabulary entry checked), EOS is allowed
 * exactly where the document is complete, and random walks under the mask
 * always yield documents that parse and validate against the schema. */
#include "gtest_util.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

static gt_vocab_t g_gv;
#define g_vocab (g_gv.v)
#define g_eos (g_gv.eos)

static const char *const schemas[] = {
    NULL, /* json_object */
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"score\":{\"type\":\"number\",\"minimum\":-1.5,\"maximum\":99.5},"
    "\"ok\":{\"type\":\"boolean\"},\"tags\":{\"type\":\"array\",\"items\":"
    "{\"enum\":[\"a\",\"b\",\"nul\"]},\"maxItems\":4}},"
    "\"required\":[\"name\",\"age\",\"ok\"],\"additionalProperties\":false}",
    "{\"type\":\"array\",\"minItems\":2,\"maxItems\":5,\"items\":{\"anyOf\":["
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]},"
    "{\"type\":\"object\",\"properties\":{\"ab\":{\"type\":\"null\"}},\"required\":[\"ab\"]},"
    "{\"type\":\"string\",\"minLength\":1,\"maxLength\":3},{\"type\":\"number\"}]}}",
    "{\"type\":\"array\",\"maxItems\":3,\"items\":{\"anyOf\":[{\"type\":\"string\","
    "\"pattern\":\"^[a-f]{2,4}(-\\\\d+)?$\"},{\"type\":\"string\",\"pattern\":\"b[^a-z]\"}]}}",
    "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":[\"integer\",\"null\"]},"
    "\"y\":{\"const\":{\"k\":[1,2]}},\"z\":{\"type\":\"object\",\"additionalProperties\":"
    "{\"type\":\"string\",\"maxLength\":2}}},\"required\":[\"y\",\"z\"]}",
};

static bool mask_bit(const uint64_t *mask, uint32_t id)
{
    return (mask[id / 64] >> (id % 64)) & 1;
}

static bt_grammar_t *compile(const char *schema)
{
    char err[BT_GRAMMAR_ERR_SIZE];
    bt_grammar_t *g = NULL;

    if (bt_grammar_compile(schema ? BT_GRAMMAR_JSON_SCHEMA : BT_GRAMMAR_JSON_OBJECT,
                           schema, schema ? strlen(schema) : 0, &g, err,
                           sizeof(err)) != BT_OK) {
        fail_msg("schema %s: %s", schema, err);
    }
    return g;
}

/* Picks an allowed token: EOS when allowed with probability 1/2, else
 * uniformly among the allowed, with a preference for short tokens that
 * close something, so walks end. */
static int32_t pick(const uint64_t *mask, uint32_t n, uint64_t *rng)
{
    uint32_t count = 0, k;

    if (mask_bit(mask, (uint32_t)g_eos) && gt_rng_next(rng) % 2 == 0) {
        return g_eos;
    }
    for (uint32_t i = 0; i < n; i++) {
        count += mask_bit(mask, i);
    }
    if (count == 0) {
        return -1;
    }
    /* one time in three: a closing byte if allowed */
    if (gt_rng_next(rng) % 3 == 0) {
        static const uint8_t closers[] = { '"', '}', ']', '1' };
        uint8_t c = closers[gt_rng_next(rng) % sizeof(closers)];

        if (mask_bit(mask, c)) {
            return c;
        }
    }
    k = (uint32_t)(gt_rng_next(rng) % count);
    for (uint32_t i = 0; i < n; i++) {
        if (mask_bit(mask, i) && k-- == 0) {
            return (int32_t)i;
        }
    }
    return -1;
}

/* Along random walks, every mask bit against a fresh feed of the token. */
static void test_mask_brute_force(void **state)
{
    const uint32_t n = bt_gvocab_size(g_vocab);
    uint64_t rng = 0x9e3779b97f4a7c15ull;

    (void)state;
    for (size_t s = 0; s < sizeof(schemas) / sizeof(schemas[0]); s++) {
        bt_grammar_t *g = compile(schemas[s]);
        bt_gmasker_t *m = NULL;

        assert_int_equal(bt_gmasker_create(g, g_vocab, 0, &m), BT_OK);
        for (int walk = 0; walk < 6; walk++) {
            bt_gmatcher_t *mt = NULL;

            assert_int_equal(bt_gmatcher_create(m, &mt), BT_OK);
            for (int step = 0; step < 60; step++) {
                const uint64_t *mask = bt_gmatcher_mask(mt);
                int32_t tok;

                assert_non_null(mask);
                for (uint32_t id = 0; id < n; id++) {
                    bt_gmatcher_t *c = NULL;
                    bool ok;

                    assert_int_equal(bt_gmatcher_clone(mt, &c), BT_OK);
                    ok = bt_gmatcher_accept(c, (int32_t)id) == BT_OK;
                    bt_gmatcher_destroy(c);
                    if (ok != mask_bit(mask, id)) {
                        fail_msg("schema %zu walk %d step %d token %u: mask %d, "
                                 "feed %d", s, walk, step, id,
                                 mask_bit(mask, id), ok);
                    }
                }
                assert_int_equal(mask_bit(mask, (uint32_t)g_eos),
                                 bt_gmatcher_complete(mt));
                tok = pick(mask, n, &rng);
                assert_true(tok >= 0);   /* never a dead end */
                if (tok == g_eos) {
                    break;
                }
                assert_int_equal(bt_gmatcher_accept(mt, tok), BT_OK);
            }
            bt_gmatcher_destroy(mt);
        }
        bt_gmasker_destroy(m);
        bt_grammar_destroy(g);
    }
}

/* Walks to the end: documents parse (jansson) and validate. */
static void test_walks_validate(void **state)
{
    const uint32_t n = bt_gvocab_size(g_vocab);
    uint64_t rng = 12345;
    float *logits = malloc(n * sizeof(float));

    (void)state;
    for (size_t s = 0; s < sizeof(schemas) / sizeof(schemas[0]); s++) {
        bt_grammar_t *g = compile(schemas[s]);
        bt_gmasker_t *m = NULL;
        json_t *schema = schemas[s] ? json_loads(schemas[s], 0, NULL)
                                    : json_pack("{s:s}", "type", "object");
        int done = 0;

        assert_int_equal(bt_gmasker_create(g, g_vocab, 1 << 20, &m), BT_OK);
        for (int walk = 0; walk < 200; walk++) {
            bt_gmatcher_t *mt = NULL;
            char doc[8192];
            size_t len = 0;
            bool ended = false;

            assert_int_equal(bt_gmatcher_create(m, &mt), BT_OK);
            for (int step = 0; step < 400 && !ended; step++) {
                const uint64_t *mask;
                int32_t tok;

                for (uint32_t i = 0; i < n; i++) {
                    logits[i] = 0;
                }
                if (bt_gmatcher_apply(mt, logits, n) != BT_OK) {
                    doc[len] = '\0';
                    fail_msg("schema %zu: dead end after '%s'", s, doc);
                }
                mask = bt_gmatcher_mask(mt);
                tok = pick(mask, n, &rng);
                assert_true(tok >= 0);
                assert_true(isfinite(logits[tok]));
                assert_int_equal(bt_gmatcher_accept(mt, tok), BT_OK);
                if (tok == g_eos) {
                    ended = true;
                } else if (len + g_gv.lens[tok] < sizeof(doc)) {
                    memcpy(doc + len, g_gv.bytes[tok], g_gv.lens[tok]);
                    len += g_gv.lens[tok];
                }
            }
            doc[len] = '\0';
            if (ended) {
                json_error_t jerr;
                json_t *v = json_loads(doc, JSON_DECODE_ANY, &jerr);

                if (v == NULL) {
                    fail_msg("schema %zu: '%s' does not parse: %s", s, doc,
                             jerr.text);
                }
                if (!gt_valid(schema, v)) {
                    fail_msg("schema %zu: '%s' does not validate", s, doc);
                }
                json_decref(v);
                done++;
            }
            /* after EOS nothing is allowed */
            if (ended) {
                assert_int_equal(bt_gmatcher_apply(mt, logits, n),
                                 BT_ERR_INVALID_ARG);
            }
            bt_gmatcher_destroy(mt);
        }
        /* most walks end (the closers bias); all that end validate */
        assert_true(done >= 100);
        json_decref(schema);
        bt_gmasker_destroy(m);
        bt_grammar_destroy(g);
    }
    free(logits);
}

/* The cache never changes a mask: a masker with a tiny cache (flushed
 * all the time) gives the same masks as a large one. */
static void test_cache_transparent(void **state)
{
    const uint32_t n = bt_gvocab_size(g_vocab);
    const size_t words = (n + 63) / 64;
    bt_grammar_t *g = compile(schemas[1]);
    bt_gmasker_t *big = NULL, *tiny = NULL;
    bt_gmatcher_t *a = NULL, *b = NULL;
    bt_gmasker_stats_t st;
    uint64_t rng = 7;

    (void)state;
    assert_int_equal(bt_gmasker_create(g, g_vocab, 0, &big), BT_OK);
    assert_int_equal(bt_gmasker_create(g, g_vocab, 1, &tiny), BT_OK);
    for (int walk = 0; walk < 30; walk++) {
        assert_int_equal(bt_gmatcher_create(big, &a), BT_OK);
        assert_int_equal(bt_gmatcher_create(tiny, &b), BT_OK);
        for (int step = 0; step < 200; step++) {
            const uint64_t *ma = bt_gmatcher_mask(a);
            const uint64_t *mb = bt_gmatcher_mask(b);
            int32_t tok;

            assert_memory_equal(ma, mb, words * 8);
            tok = pick(ma, n, &rng);
            if (tok == g_eos) {
                break;
            }
            assert_int_equal(bt_gmatcher_accept(a, tok), BT_OK);
            assert_int_equal(bt_gmatcher_accept(b, tok), BT_OK);
        }
        bt_gmatcher_destroy(a);
        bt_gmatcher_destroy(b);
    }
    bt_gmasker_stats(big, &st);
    assert_true(st.hits > st.misses);   /* states repeat */
    bt_gmasker_stats(tiny, &st);
    assert_true(st.flushes > 0);
    bt_gmasker_destroy(big);
    bt_gmasker_destroy(tiny);
    bt_grammar_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_brute_force),
        cmocka_unit_test(test_walks_validate),
        cmocka_unit_test(test_cache_transparent),
    };
    int rc;

    gt_vocab_init(&g_gv, 1500, 42);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    gt_vocab_cleanup(&g_gv);
    return rc;
}
