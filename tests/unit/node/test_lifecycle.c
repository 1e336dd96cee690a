/* The lifecycles of the node's request objects (docs/internals/node.md
 * "Lifecycles"): the transition functions of the decode request
 * (bt_dreq_to) and the prefill job (bt_pjob_to) keep the node's counters,
 * give the blocks back once, free the object when nothing can name it
 * any more, and abort on a transition outside their diagram. A real KV
 * pool and event base; no RPC (the paths tested never answer a call). */
#include "decode_int.h"
#include "prefill_int.h"

#include <event2/event.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define POOL_BLOCKS 8

typedef struct {
    bt_node_t   *node;
    bt_decode_t  dec;
    bt_prefill_t pf;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    bt_kvpool_config_t pc;

    assert_non_null(f);
    f->node = calloc(1, sizeof(*f->node));
    assert_non_null(f->node);
    memset(&pc, 0, sizeof(pc));
    pc.geom.n_layers = 2;
    pc.geom.n_kv_heads = 1;
    pc.geom.head_dim = 8;
    pc.geom.block_size = 4;
    pc.geom.dtype = BT_KV_DTYPE_F32;
    pc.n_blocks = POOL_BLOCKS;
    assert_int_equal(bt_kvpool_create(&pc, &f->node->pool), BT_OK);
    f->node->base = event_base_new();
    f->node->metrics = bt_metrics_create();
    assert_non_null(f->node->base);
    assert_non_null(f->node->metrics);
    f->node->g_free = bt_metrics_gauge(f->node->metrics, "f", "f", NULL);
    f->node->g_used = bt_metrics_gauge(f->node->metrics, "u", "u", NULL);
    f->node->g_reserved = bt_metrics_gauge(f->node->metrics, "r", "r", NULL);
    f->node->g_running = bt_metrics_gauge(f->node->metrics, "n", "n", NULL);
    f->node->g_queued = bt_metrics_gauge(f->node->metrics, "q", "q", NULL);
    f->node->g_waiting = bt_metrics_gauge(f->node->metrics, "w", "w", NULL);
    f->node->g_kv_usage = bt_metrics_gauge(f->node->metrics, "k", "k", NULL);
    f->node->g_pf_rate = bt_metrics_gauge(f->node->metrics, "pr", "pr", NULL);
    f->node->g_dec_step = bt_metrics_gauge(f->node->metrics, "ds", "ds", NULL);
    f->node->c_leases_expired = bt_metrics_counter(f->node->metrics, "e", "e",
                                                   NULL);
    f->dec.node = f->node;
    bt_list_init(&f->dec.reqs);
    f->pf.node = f->node;
    bt_list_init(&f->pf.queue);
    bt_list_init(&f->pf.remotes);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    bt_kvpool_destroy(f->node->pool);
    bt_metrics_destroy(f->node->metrics);
    event_base_free(f->node->base);
    free(f->node);
    free(f);
    return 0;
}

static void noop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* A decode request that reserved `n` blocks and joined (NEW). */
static bt_dreq_t *dreq_new(fixture_t *f, uint32_t n)
{
    bt_dreq_t *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    r->node = f->node;
    r->resv = calloc(n, sizeof(*r->resv));
    assert_non_null(r->resv);
    assert_int_equal(bt_kvpool_reserve(f->node->pool, n, r->resv), BT_OK);
    r->n_resv = n;
    r->lease_ev = evtimer_new(f->node->base, noop_cb, NULL);
    assert_non_null(r->lease_ev);
    bt_dreq_enter(&f->dec, r);
    return r;
}

static void test_dreq_runs_and_ends(void **state)
{
    fixture_t *f = *state;
    bt_dreq_t *r = dreq_new(f, 3);

    assert_int_equal(r->state, BT_DREQ_NEW);
    assert_int_equal(f->node->inflight, 1);
    assert_int_equal(bt_kvpool_available(f->node->pool), POOL_BLOCKS - 3);
    bt_dreq_to(r, BT_DREQ_LEASED);
    assert_true(bt_metric_value(f->node->g_waiting) == 1);
    bt_dreq_to(r, BT_DREQ_RUNNING);
    assert_true(bt_metric_value(f->node->g_waiting) == 0);
    assert_int_equal(f->node->running, 1);
    bt_dreq_to(r, BT_DREQ_FINISHING);
    assert_int_equal(f->node->running, 0);
    assert_true(bt_dreq_open(r));
    bt_dreq_to(r, BT_DREQ_ENDED);
    assert_false(bt_dreq_open(r));
    bt_dreq_put(r);   /* released and freed: no sent callback due */
    assert_true(bt_list_empty(&f->dec.reqs));
    assert_int_equal(f->node->inflight, 0);
    assert_int_equal(bt_kvpool_available(f->node->pool), POOL_BLOCKS);
}

static void test_dreq_held_until_fence(void **state)
{
    fixture_t *f = *state;
    bt_dreq_t *r = dreq_new(f, 2);

    bt_dreq_to(r, BT_DREQ_LEASED);
    bt_dreq_to(r, BT_DREQ_HELD);
    bt_dreq_put(r);   /* a hold keeps the blocks */
    assert_false(bt_list_empty(&f->dec.reqs));
    assert_int_equal(bt_kvpool_available(f->node->pool), POOL_BLOCKS - 2);
    assert_int_equal(f->node->inflight, 1);
    bt_dreq_hold_end(r);   /* the writer's fence */
    assert_true(bt_list_empty(&f->dec.reqs));
    assert_int_equal(bt_kvpool_available(f->node->pool), POOL_BLOCKS);
    assert_int_equal(f->node->inflight, 0);
}

static void test_dreq_ended_in_step_waits(void **state)
{
    fixture_t *f = *state;
    bt_dreq_t *r = dreq_new(f, 2);

    bt_dreq_to(r, BT_DREQ_LEASED);
    bt_dreq_to(r, BT_DREQ_RUNNING);
    r->in_step = true;
    bt_dreq_to(r, BT_DREQ_ENDED);   /* cancelled during the step */
    assert_int_equal(f->node->running, 0);
    bt_dreq_put(r);
    assert_int_equal(r->state, BT_DREQ_ENDED);
    assert_int_equal(bt_kvpool_available(f->node->pool), POOL_BLOCKS - 2);
    r->in_step = false;   /* the step is back */
    bt_dreq_put(r);
    assert_true(bt_list_empty(&f->dec.reqs));
    assert_int_equal(bt_kvpool_available(f->node->pool), POOL_BLOCKS);
}

static void test_dreq_memory_waits_for_sends(void **state)
{
    fixture_t *f = *state;
    bt_dreq_t *r = dreq_new(f, 2);

    bt_dreq_to(r, BT_DREQ_LEASED);
    bt_dreq_to(r, BT_DREQ_RUNNING);
    bt_dreq_to(r, BT_DREQ_ENDED);
    r->sends_out = 1;
    bt_dreq_put(r);   /* blocks back, memory kept for the sent callback */
    assert_int_equal(r->state, BT_DREQ_RELEASED);
    assert_int_equal(bt_kvpool_available(f->node->pool), POOL_BLOCKS);
    assert_int_equal(f->node->inflight, 0);
    r->sends_out = 0;
    bt_dreq_put(r);
    assert_true(bt_list_empty(&f->dec.reqs));
}

/* Runs `fn` in a child; true when it died of an assertion (SIGABRT). */
static bool aborts(fixture_t *f, void (*fn)(fixture_t *))
{
    pid_t pid;
    int st;

    fflush(stdout);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const struct rlimit no_core = { 0, 0 };

        setrlimit(RLIMIT_CORE, &no_core);   /* the abort is expected */
        fn(f);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void dreq_new_to_running(fixture_t *f)
{
    bt_dreq_to(dreq_new(f, 1), BT_DREQ_RUNNING);   /* never leased */
}

static void dreq_released_to_running(fixture_t *f)
{
    bt_dreq_t *r = dreq_new(f, 1);

    bt_dreq_to(r, BT_DREQ_ENDED);
    r->sends_out = 1;
    bt_dreq_put(r);
    bt_dreq_to(r, BT_DREQ_RUNNING);
}

static void dreq_finishing_twice(fixture_t *f)
{
    bt_dreq_t *r = dreq_new(f, 1);

    bt_dreq_to(r, BT_DREQ_LEASED);
    bt_dreq_to(r, BT_DREQ_RUNNING);
    bt_dreq_to(r, BT_DREQ_FINISHING);
    bt_dreq_to(r, BT_DREQ_FINISHING);
}

static void dreq_held_to_ended(fixture_t *f)
{
    bt_dreq_t *r = dreq_new(f, 1);

    bt_dreq_to(r, BT_DREQ_LEASED);
    bt_dreq_to(r, BT_DREQ_HELD);
    bt_dreq_to(r, BT_DREQ_ENDED);
}

static void test_dreq_impossible_transitions_abort(void **state)
{
#ifdef NDEBUG
    skip();
#endif
    fixture_t *f = *state;

    assert_true(aborts(f, dreq_new_to_running));
    assert_true(aborts(f, dreq_released_to_running));
    assert_true(aborts(f, dreq_finishing_twice));
    assert_true(aborts(f, dreq_held_to_ended));
}

/* A prefill job of `n` tokens, `cached` of them reused, joined (NEW). */
static bt_pjob_t *pjob_new(fixture_t *f, uint32_t n, uint32_t cached)
{
    bt_pjob_t *j = calloc(1, sizeof(*j));

    assert_non_null(j);
    j->node = f->node;
    j->n = n;
    j->cached = cached;
    j->next_tok = cached;
    bt_pjob_enter(&f->pf, j);
    return j;
}

static void test_pjob_queue_counts_tokens(void **state)
{
    fixture_t *f = *state;
    bt_pjob_t *a = pjob_new(f, 100, 20);
    bt_pjob_t *b = pjob_new(f, 10, 0);

    assert_int_equal(f->node->inflight, 2);
    bt_pjob_to(a, BT_PJOB_QUEUED);
    bt_pjob_to(b, BT_PJOB_QUEUED);
    assert_int_equal(f->node->queued_prefill_tokens, 80 + 10);
    assert_true(bt_metric_value(f->node->g_waiting) == 2);
    assert_ptr_equal(BT_CONTAINER_OF(f->pf.queue.next, bt_pjob_t, link), a);
    a->chunk_a = 20;
    a->chunk_b = 52;
    bt_pjob_advance(a);   /* one chunk computed */
    assert_int_equal(a->next_tok, 52);
    assert_int_equal(f->node->queued_prefill_tokens, 48 + 10);
    bt_pjob_to(a, BT_PJOB_ENDING);   /* cancelled: the rest leaves too */
    assert_int_equal(f->node->queued_prefill_tokens, 10);
    assert_true(bt_metric_value(f->node->g_waiting) == 1);
    assert_ptr_equal(BT_CONTAINER_OF(f->pf.queue.next, bt_pjob_t, link), b);
    bt_pjob_to(a, BT_PJOB_FREED);
    b->chunk_a = 0;
    b->chunk_b = 10;
    bt_pjob_advance(b);
    bt_pjob_to(b, BT_PJOB_SENT);
    assert_true(bt_list_empty(&f->pf.queue));
    assert_int_equal(f->node->queued_prefill_tokens, 0);
    assert_true(bt_metric_value(f->node->g_waiting) == 0);
    bt_pjob_to(b, BT_PJOB_FREED);
    assert_int_equal(f->node->inflight, 0);
}

static void pjob_new_to_sent(fixture_t *f)
{
    bt_pjob_to(pjob_new(f, 8, 0), BT_PJOB_SENT);   /* never computed */
}

static void pjob_advance_unqueued(fixture_t *f)
{
    bt_pjob_t *j = pjob_new(f, 8, 0);

    j->chunk_b = 4;
    bt_pjob_advance(j);
}

static void pjob_fencing_to_queued(fixture_t *f)
{
    bt_pjob_t *j = pjob_new(f, 8, 0);

    bt_pjob_to(j, BT_PJOB_ENDING);
    bt_pjob_to(j, BT_PJOB_FENCING);
    bt_pjob_to(j, BT_PJOB_QUEUED);
}

static void test_pjob_impossible_transitions_abort(void **state)
{
#ifdef NDEBUG
    skip();
#endif
    fixture_t *f = *state;

    assert_true(aborts(f, pjob_new_to_sent));
    assert_true(aborts(f, pjob_advance_unqueued));
    assert_true(aborts(f, pjob_fencing_to_queued));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dreq_runs_and_ends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dreq_held_until_fence, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dreq_ended_in_step_waits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dreq_memory_waits_for_sends,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_dreq_impossible_transitions_abort,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_pjob_queue_counts_tokens, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pjob_impossible_transitions_abort,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
