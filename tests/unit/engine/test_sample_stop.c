/* Stop strings over incremental text: partial matches are held back, the
 * output is cut right before the first stop string, across pieces. */
#include "engine/sample/sample.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct {
    char text[256];
    size_t len;
    bool stopped;
} sink_t;

static void feed(bt_stopstr_t *m, sink_t *k, const char *piece)
{
    const char *out;
    size_t n;
    bool stopped;

    assert_int_equal(bt_stopstr_feed(m, piece, strlen(piece), &out, &n,
                                     &stopped), BT_OK);
    assert_true(k->len + n < sizeof(k->text));
    memcpy(k->text + k->len, out, n);
    k->len += n;
    k->text[k->len] = '\0';
    k->stopped = stopped;
}

static void finish(bt_stopstr_t *m, sink_t *k)
{
    const char *out;
    size_t n;

    bt_stopstr_flush(m, &out, &n);
    memcpy(k->text + k->len, out, n);
    k->len += n;
    k->text[k->len] = '\0';
}

static void test_holds_back_partial(void **state)
{
    const char *stops[] = {"\nUser:", "###"};
    bt_stopstr_t *m;
    sink_t k;

    (void)state;
    memset(&k, 0, sizeof(k));
    assert_int_equal(bt_stopstr_create(stops, 2, &m), BT_OK);
    feed(m, &k, "Hello");
    assert_string_equal(k.text, "Hello");
    feed(m, &k, " world\nUs");
    assert_string_equal(k.text, "Hello world"); /* "\nUs" held back */
    feed(m, &k, "ually #");
    assert_string_equal(k.text, "Hello world\nUsually "); /* "#" held */
    feed(m, &k, "#");
    assert_string_equal(k.text, "Hello world\nUsually ");
    feed(m, &k, "!");
    assert_string_equal(k.text, "Hello world\nUsually ##!");
    assert_false(k.stopped);
    feed(m, &k, " end #");
    finish(m, &k); /* no stop came: the held text is released */
    assert_string_equal(k.text, "Hello world\nUsually ##! end #");
    bt_stopstr_destroy(m);
}

static void test_cut_across_pieces(void **state)
{
    const char *stops[] = {"\nUser:", "###"};
    bt_stopstr_t *m;
    sink_t k;

    (void)state;
    memset(&k, 0, sizeof(k));
    assert_int_equal(bt_stopstr_create(stops, 2, &m), BT_OK);
    feed(m, &k, "Answer: 42\n");
    feed(m, &k, "Use");
    assert_false(k.stopped);
    feed(m, &k, "r: next question");
    assert_true(k.stopped);
    assert_string_equal(k.text, "Answer: 42");
    /* nothing after a stop */
    feed(m, &k, "more");
    assert_true(k.stopped);
    finish(m, &k);
    assert_string_equal(k.text, "Answer: 42");
    bt_stopstr_destroy(m);
}

static void test_earliest_stop_wins(void **state)
{
    const char *stops[] = {"cd", "bcde", "x"};
    bt_stopstr_t *m;
    sink_t k;

    (void)state;
    memset(&k, 0, sizeof(k));
    assert_int_equal(bt_stopstr_create(stops, 3, &m), BT_OK);
    feed(m, &k, "abcdefx");
    assert_true(k.stopped);
    assert_string_equal(k.text, "a"); /* "bcde" starts before "cd" */
    bt_stopstr_destroy(m);

    /* a stop at the very start, and an empty piece */
    memset(&k, 0, sizeof(k));
    assert_int_equal(bt_stopstr_create(stops, 3, &m), BT_OK);
    feed(m, &k, "");
    assert_false(k.stopped);
    feed(m, &k, "xyz");
    assert_true(k.stopped);
    assert_int_equal(k.len, 0);
    bt_stopstr_destroy(m);
}

static void test_no_stops_and_limits(void **state)
{
    const char *empty[] = {""};
    const char *many[BT_STOPSTR_MAX + 1];
    char *big;
    bt_stopstr_t *m = NULL;
    sink_t k;
    int i;

    (void)state;
    memset(&k, 0, sizeof(k));
    assert_int_equal(bt_stopstr_create(NULL, 0, &m), BT_OK);
    feed(m, &k, "plain text");
    assert_string_equal(k.text, "plain text");
    bt_stopstr_destroy(m);
    bt_stopstr_destroy(NULL);
    m = NULL;
    assert_int_equal(bt_stopstr_create(empty, 1, &m), BT_ERR_INVALID_ARG);
    for (i = 0; i <= BT_STOPSTR_MAX; i++) {
        many[i] = "s";
    }
    assert_int_equal(bt_stopstr_create(many, BT_STOPSTR_MAX + 1, &m),
                     BT_ERR_TOO_LARGE);
    big = malloc(BT_STOPSTR_MAX_LEN + 2);
    memset(big, 'a', BT_STOPSTR_MAX_LEN + 1);
    big[BT_STOPSTR_MAX_LEN + 1] = '\0';
    many[0] = big;
    assert_int_equal(bt_stopstr_create(many, 1, &m), BT_ERR_TOO_LARGE);
    assert_null(m);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_holds_back_partial),
        cmocka_unit_test(test_cut_across_pieces),
        cmocka_unit_test(test_earliest_stop_wins),
        cmocka_unit_test(test_no_stops_and_limits),
    };

    return cmocka_run_group_tests_name("sample_stop", tests, NULL, NULL);
}
