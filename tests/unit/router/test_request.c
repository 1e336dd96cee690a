/* router/request.c driven on a real event loop, registry and model (the
 * tiny one from baton-mkmodel), with no node processes: a decode node
 * without a channel fails every request placed on it at once, the path
 * where a placement used to end requests synchronously.
 *
 * - bt_rreq_start never calls the sink: a refusal known at admission is
 *   its status, and on BT_OK the request lives until on_end.
 * - bt_router_queue_kick survives requests ending while it places others:
 *   it used to hold the next queued request across a placement that could
 *   end requests and re-enter the kick; of 8 queued requests 4 never
 *   ended (their clients would wait forever). */
#include "model.h"
#include "request.h"
#include "router.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct {
    int         deltas;
    int         ends;
    bt_status_t status;
    char        msg[256];
} rec_t;

static bool g_in_start;
static int  g_ends_in_start;

static void rec_delta(bt_rreq_t *req, void *arg, const uint32_t *ids, size_t n,
                      const Baton__V1__TokenLogprobs *const *lps,
                      const char *text, size_t text_len)
{
    rec_t *rec = arg;

    (void)req; (void)ids; (void)n; (void)lps; (void)text; (void)text_len;
    rec->deltas++;
}

static void rec_end(bt_rreq_t *req, void *arg, bt_status_t status,
                    const char *message, Baton__V1__FinishReason finish,
                    const Baton__V1__Usage *usage)
{
    rec_t *rec = arg;

    (void)req; (void)finish; (void)usage;
    rec->ends++;
    rec->status = status;
    snprintf(rec->msg, sizeof(rec->msg), "%s", message ? message : "");
    g_ends_in_start += g_in_start;
}

static const bt_rreq_sink_t sink = { rec_delta, rec_end };

typedef struct {
    bt_router_t r;
    char        dir[64];
    bt_node_t  *p;
    bt_node_t  *d;
} fixture_t;

static bt_node_t *add_node(bt_router_t *r, const char *id, bt_node_role_t role)
{
    bt_node_hello_t hello = { id, role, "tiny", "ipv4:127.0.0.1:1", NULL, 0,
                              1000, 16, 8, 512, 3, NULL };
    bt_node_t *node = NULL;
    char err[256];

    assert_int_equal(bt_registry_add(r->registry, &hello, 1000, NULL, &node,
                                     err, sizeof(err)), BT_OK);
    r->node_gen[node->slot] = ++r->next_gen;
    return node;
}

static void set_free(fixture_t *f, uint32_t free_blocks)
{
    bt_node_load_t load = { 0, 0, free_blocks, 0, false, false };

    bt_registry_update_load(f->r.registry, f->d, &load, 2000);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    const char *build = getenv("BATON_BUILD_ROOT");
    bt_router_t *r = &f->r;
    bt_metrics_t *m;
    char cmd[512], err[256];

    assert_non_null(f);
    assert_non_null(build);
    snprintf(f->dir, sizeof(f->dir), "/tmp/bt-rreq-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(cmd, sizeof(cmd), "%s/tools/baton-mkmodel builtin --out %s/tiny "
             ">/dev/null 2>&1", build, f->dir);
    assert_int_equal(system(cmd), 0);

    r->cfg.max_inflight = 100;
    r->cfg.max_queue = 10;
    r->cfg.queue_timeout_ms = 60000;
    r->cfg.prefill_retries = 0;
    r->cfg.decode_failovers = 0;
    r->cfg.request_timeout_ms = 60000;
    r->cfg.default_max_tokens = 16;
    r->cfg.lease_ms = 30000;
    r->weights = (bt_select_weights_t){ 1.0, 1.0, 1.0, 8.0, 0.9 };
    r->base = event_base_new();
    r->metrics = m = bt_metrics_create();
    r->registry = bt_registry_create(1024, 1000000);
    assert_non_null(r->base);
    assert_non_null(m);
    assert_non_null(r->registry);
    r->m.requests_ok = bt_metrics_counter(m, "ok_total", "", NULL);
    r->m.requests_failed = bt_metrics_counter(m, "failed_total", "", NULL);
    r->m.requests_rejected = bt_metrics_counter(m, "rejected_total", "", NULL);
    r->m.prefill_retries = bt_metrics_counter(m, "pr_total", "", NULL);
    r->m.decode_failovers = bt_metrics_counter(m, "df_total", "", NULL);
    r->m.tokens_out = bt_metrics_counter(m, "tok_total", "", NULL);
    r->m.prompt_tokens = bt_metrics_counter(m, "pt_total", "", NULL);
    r->m.cached_tokens = bt_metrics_counter(m, "ct_total", "", NULL);
    r->m.inflight = bt_metrics_gauge(m, "inflight", "", NULL);
    r->m.queued = bt_metrics_gauge(m, "queued", "", NULL);
    r->m.ttft = bt_metrics_histogram(m, "ttft", "", NULL,
                                   bt_metrics_latency_bounds,
                                   bt_metrics_latency_n_bounds);
    r->m.e2e = bt_metrics_histogram(m, "e2e", "", NULL,
                                   bt_metrics_latency_bounds,
                                   bt_metrics_latency_n_bounds);
    r->m.itl = bt_metrics_histogram(m, "itl", "", NULL,
                                   bt_metrics_latency_bounds,
                                   bt_metrics_latency_n_bounds);
    snprintf(cmd, sizeof(cmd), "%s/tiny", f->dir);
    assert_int_equal(bt_router_model_load(r, cmd, NULL, NULL, err, sizeof(err)),
                     BT_OK);
    /* nodes in the registry, but no channels: a request placed on the
     * decode node fails as soon as its decode stream would open */
    f->p = add_node(r, "p0", BT_NODE_ROLE_PREFILL);
    f->d = add_node(r, "d0", BT_NODE_ROLE_DECODE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[128];

    bt_router_model_free(&f->r);
    bt_registry_destroy(f->r.registry);
    bt_metrics_destroy(f->r.metrics);
    event_base_free(f->r.base);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static bt_status_t start(fixture_t *f, rec_t *rec, bt_rreq_t **req_p,
                         char *err, size_t err_size)
{
    static const uint32_t prompt[] = { 4091, 104, 262, 310, 554, 44, 607 };
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    bt_rreq_params_t p;
    bt_status_t s;

    memset(&p, 0, sizeof(p));
    sp.max_tokens = 8;
    p.prompt = prompt;
    p.n_prompt = sizeof(prompt) / sizeof(prompt[0]);
    p.sampling = &sp;
    g_in_start = true;
    s = bt_rreq_start(&f->r, &p, &sink, rec, req_p, err, err_size);
    g_in_start = false;
    return s;
}

static void run_loop(fixture_t *f)
{
    for (int i = 0; i < 10; i++) {
        event_base_loop(f->r.base, EVLOOP_NONBLOCK);
    }
}

/* A refusal is a status, never an on_end inside bt_rreq_start. */
static void test_start_never_ends_inside(void **state)
{
    fixture_t *f = *state;
    rec_t rec[3];
    bt_rreq_t *req = NULL;
    char err[256];

    memset(rec, 0, sizeof(rec));
    g_ends_in_start = 0;
    set_free(f, 0);
    f->r.cfg.max_queue = 0;
    /* no room and no queue: 429 from the call itself */
    assert_int_equal(start(f, &rec[0], &req, err, sizeof(err)), BT_ERR_EXHAUSTED);
    assert_null(req);
    assert_int_equal(rec[0].ends, 0);
    assert_non_null(strstr(err, "queue"));
    assert_int_equal(f->r.n_inflight, 0);

    /* room: placed, yet nothing ends until the loop runs, where the
     * channel-less decode node fails it */
    set_free(f, 1000);
    assert_int_equal(start(f, &rec[1], &req, err, sizeof(err)), BT_OK);
    assert_non_null(req);
    assert_int_equal(rec[1].ends, 0);
    assert_string_equal(bt_rreq_id(req), bt_rreq_id(req)); /* alive */
    run_loop(f);
    assert_int_equal(rec[1].ends, 1);
    assert_int_equal(rec[1].status, BT_ERR_PEER_DIED);
    assert_int_equal(g_ends_in_start, 0);
    assert_int_equal(f->r.n_inflight, 0);

    /* queued, then cancelled: on_end inside the cancel, once */
    set_free(f, 0);
    f->r.cfg.max_queue = 10;
    req = NULL;
    assert_int_equal(start(f, &rec[2], &req, err, sizeof(err)), BT_OK);
    assert_int_equal(f->r.n_queued, 1);
    bt_rreq_cancel(req, "test");
    assert_int_equal(rec[2].ends, 1);
    assert_int_equal(rec[2].status, BT_ERR_CANCELLED);
    assert_int_equal(f->r.n_queued, 0);
    assert_int_equal(g_ends_in_start, 0);
}

/* Requests that end while the kick places others (here all of them). */
static void test_kick_survives_ending_requests(void **state)
{
    fixture_t *f = *state;
    rec_t rec[8];
    bt_rreq_t *req;
    char err[256];
    int i, ended = 0;

    memset(rec, 0, sizeof(rec));
    set_free(f, 0);
    f->r.cfg.max_queue = 10;
    for (i = 0; i < 8; i++) {
        assert_int_equal(start(f, &rec[i], &req, err, sizeof(err)), BT_OK);
    }
    assert_int_equal(f->r.n_queued, 8);
    set_free(f, 1000);
    bt_router_queue_kick(&f->r);
    run_loop(f);
    for (i = 0; i < 8; i++) {
        ended += rec[i].ends;
        assert_int_equal(rec[i].deltas, 0);
    }
    assert_int_equal(ended, 8);
    assert_int_equal(f->r.n_queued, 0);
    assert_int_equal(f->r.n_inflight, 0);
    assert_null(f->r.requests);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_never_ends_inside, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kick_survives_ending_requests,
                                        setup, teardown),
    };

    return cmocka_run_group_tests_name("router_request", tests, NULL, NULL);
}
