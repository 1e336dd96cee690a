/* Small simulations on the router's real selection and prefix index and
 * the kvstore's real store: timings that follow the cost functions
 * exactly, prefix reuse steered by the index, kvstore fetches, the wait
 * queue, routers past 255 nodes, and runs that repeat bit for bit. */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static bt_sim_cost_t cost(void)
{
    bt_sim_cost_t c;

    memset(&c, 0, sizeof(c));
    snprintf(c.name, sizeof(c.name), "unit");
    c.block_size = 16;
    c.total_blocks = 4096;
    c.max_batch = 8;
    c.max_prefill_tokens = 256;
    c.kv_bytes_per_token = 1 << 20;     /* 1 MiB: transfers are visible */
    c.p_base_ms = 1;
    c.p_token_ms = 0.01;
    c.p_ctx_us = 0.5;
    c.d_base_ms = 5;
    c.d_seq_ms = 0.5;
    c.d_ctx_us = 1;
    c.d_join_ms = 0.25;
    c.d_join_ms_mb = 0.5 / 600;     /* 0.75 ms for the 600 MiB below */
    c.n_xfer = 1;
    c.xfer[0] = (bt_sim_xfer_cost_t){"shm", 2, 0.01};
    c.k_base_ms = 0.5;
    c.k_block_ms = 0.1;
    c.ttft_overhead_ms = 3;
    return c;
}

static bt_wl_t synth(size_t n, const char *prompt, const char *out,
                     int64_t conc, double rate)
{
    bt_wl_cfg_t c;
    bt_wl_t w;
    char err[128];

    memset(&c, 0, sizeof(c));
    c.requests = (int64_t)n;
    c.concurrency = conc;
    c.rate = rate;
    c.prompt_tokens = prompt;
    c.output_tokens = out;
    c.seed = 3;
    c.block_tokens = 32;
    c.max_output = 64;
    c.kv_block = 16;
    assert_int_equal(bt_wl_build(&c, &w, err, sizeof(err)), 0);
    return w;
}

static int run(bt_sim_cfg_t *cfg, const bt_wl_t *w, bt_rep_rec_t *recs,
               bt_sim_stats_t *st)
{
    char err[256];
    int rc = bt_sim_run(cfg, w, recs, st, err, sizeof(err));

    if (rc != 0) {
        print_message("sim: %s\n", err);
    }
    return rc;
}

static void test_one_request_colocated(void **state)
{
    bt_sim_cost_t c = cost();
    bt_sim_cfg_t cfg;
    bt_wl_t w = synth(1, "600", "11", 1, 0);
    bt_rep_rec_t rec;
    bt_sim_stats_t st;
    double prefill, step, first;

    (void)state;
    bt_sim_cfg_default(&cfg);
    cfg.cost = &c;
    cfg.n_colocated = 1;
    assert_int_equal(run(&cfg, &w, &rec, &st), 0);
    assert_true(rec.ok);
    /* 600 tokens in chunks of 256, 256, 88 */
    prefill = bt_sim_prefill_ms(&c, 256, 0) + bt_sim_prefill_ms(&c, 256, 256) +
              bt_sim_prefill_ms(&c, 88, 512);
    assert_true(fabs(rec.ttft_ms - (3 + prefill)) < 1e-6);
    /* the local hand-over, then 10 decode steps of one sequence whose
     * context grows 601 .. 610 */
    step = 0;
    for (int k = 0; k < 10; k++) {
        step += bt_sim_decode_ms(&c, 1, 601 + (uint64_t)k);
    }
    first = bt_sim_decode_ms(&c, 1, 601);
    assert_true(fabs(rec.itl1_ms - (0.75 + first)) < 1e-6);
    assert_true(fabs(rec.tpot_ms - (0.75 + step) / 10) < 1e-6);
    assert_int_equal(rec.out_tokens, 11);
    assert_true(fabs(rec.e2e_ms - (3 + prefill + 0.75 + step)) < 1e-6);
    /* disaggregated: the same first token; the hop of 600 MiB lands in
     * the first gap instead of the local hand-over */
    bt_sim_cfg_default(&cfg);
    cfg.cost = &c;
    cfg.n_prefill = 1;
    cfg.n_decode = 1;
    assert_int_equal(run(&cfg, &w, &rec, &st), 0);
    assert_true(fabs(rec.ttft_ms - (3 + prefill)) < 1e-6);
    assert_true(fabs(rec.itl1_ms - (2 + 0.01 * 600 + first)) < 1e-6);
    assert_true(fabs(rec.e2e_ms - (3 + prefill + 2 + 0.01 * 600 + step)) <
                1e-6);
    bt_wl_free(&w);
}

/* One host: two nodes prefilling at once share its cores, each at half
 * speed; on hosts of their own each takes its cost function's time. */
static void test_one_host_shares_cores(void **state)
{
    bt_sim_cost_t c = cost();
    bt_sim_cfg_t cfg;
    bt_wl_t w = synth(2, "600", "1", 2, 0);
    bt_rep_rec_t rec[2];
    bt_sim_stats_t st;
    double prefill = bt_sim_prefill_ms(&c, 256, 0) +
                     bt_sim_prefill_ms(&c, 256, 256) +
                     bt_sim_prefill_ms(&c, 88, 512);

    (void)state;
    for (int one = 0; one < 2; one++) {
        bt_sim_cfg_default(&cfg);
        cfg.cost = &c;
        cfg.n_colocated = 2;
        cfg.one_host = one;
        assert_int_equal(run(&cfg, &w, rec, &st), 0);
        /* both placed at once, on different nodes, in lockstep */
        for (int i = 0; i < 2; i++) {
            assert_true(rec[i].ok);
            assert_true(fabs(rec[i].ttft_ms - (3 + (one ? 2 : 1) * prefill)) <
                        1e-6);
        }
    }
    bt_wl_free(&w);
}

/* Noise slows a request's overhead and chunks by its own factor, the
 * same one every run; another draw picks other factors. */
static void test_noise_slows_requests(void **state)
{
    bt_sim_cost_t c = cost();
    bt_sim_cfg_t cfg;
    bt_wl_t w6 = synth(6, "100", "1", 1, 0);
    bt_rep_rec_t r6[6], again[6];
    bt_sim_stats_t st;

    (void)state;
    bt_sim_cfg_default(&cfg);
    cfg.cost = &c;
    /* closed loop, one at a time (no local hand-over to lengthen the next
     * one's chunk): each TTFT is its factor times the unloaded one */
    c.d_join_ms = c.d_join_ms_mb = 0;
    c.noise[0] = 0.5f;
    c.noise[1] = 1.0f;
    c.noise[2] = 3.0f;
    c.n_noise = 3;
    cfg.n_colocated = 1;
    assert_int_equal(run(&cfg, &w6, r6, &st), 0);
    for (int i = 0; i < 6; i++) {
        double f = bt_sim_noise(&c, (uint64_t)i);

        assert_true(r6[i].ok);
        assert_true(fabs(r6[i].ttft_ms -
                         f * (3 + bt_sim_prefill_ms(&c, 100, 0))) < 1e-6);
    }
    assert_int_equal(run(&cfg, &w6, again, &st), 0);
    for (int i = 0; i < 6; i++) {
        assert_true(again[i].ttft_ms == r6[i].ttft_ms);
    }
    /* another draw slows the same requests by other factors */
    cfg.noise_draw = 1;
    assert_int_equal(run(&cfg, &w6, again, &st), 0);
    for (int i = 0; i < 6; i++) {
        double f = bt_sim_noise(&c, ((uint64_t)1 << 40) + (uint64_t)i);

        assert_true(fabs(again[i].ttft_ms -
                         f * (3 + bt_sim_prefill_ms(&c, 100, 0))) < 1e-6);
    }
    /* the draws one after another: draw k's records are noise_draw k's */
    {
        bt_rep_rec_t both[12];
        bt_sim_stats_t first;
        double sim_s;
        char err[256];

        assert_int_equal(bt_sim_draws(&c, 2), 2);
        assert_int_equal(bt_sim_run_draws(&cfg, 2, &w6, both, &first, &sim_s,
                                          err, sizeof(err)), 0);
        for (int i = 0; i < 6; i++) {
            assert_true(both[i].ttft_ms == r6[i].ttft_ms);
            assert_true(both[6 + i].ttft_ms == again[i].ttft_ms);
        }
        assert_true(fabs(sim_s - (first.sim_s + st.sim_s)) < 1e-12);
        c.n_noise = 0;
        assert_int_equal(bt_sim_draws(&c, 2), 1);
    }
    bt_wl_free(&w6);
}

/* A burst waits at the router for its one-at-a-time part: the k-th of
 * requests arriving together leaves it after k x router_ms, the rest of
 * the overhead beside; without router_ms all leave together. */
static void test_router_serves_one_at_a_time(void **state)
{
    bt_sim_cost_t c = cost();
    bt_sim_cfg_t cfg;
    bt_wl_t w = synth(4, "16", "1", 4, 0);
    bt_rep_rec_t rec[4];
    bt_sim_stats_t st;
    const double chunk = bt_sim_prefill_ms(&c, 16, 0);

    (void)state;
    c.d_join_ms = c.d_join_ms_mb = 0;
    bt_sim_cfg_default(&cfg);
    cfg.cost = &c;
    cfg.n_colocated = 4;     /* a node each: no queue at the nodes */
    assert_int_equal(run(&cfg, &w, rec, &st), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(fabs(rec[i].ttft_ms - (3 + chunk)) < 1e-6);
    }
    c.router_ms = 2;
    assert_int_equal(run(&cfg, &w, rec, &st), 0);
    for (int i = 0; i < 4; i++) {
        /* 2 ms per request ahead of it and its own, then 1 ms beside */
        assert_true(fabs(rec[i].ttft_ms - (2.0 * (i + 1) + 1 + chunk)) < 1e-6);
    }
    /* never more than the whole overhead */
    c.router_ms = 10;
    assert_int_equal(run(&cfg, &w, rec, &st), 0);
    assert_true(fabs(rec[3].ttft_ms - (3.0 * 4 + chunk)) < 1e-6);
    bt_wl_free(&w);
}

/* Two prompts of 4 blocks each repeated: hash ids 1-4 and 5-8. */
static bt_wl_t trace_repeats(char *path, size_t n)
{
    FILE *f;
    bt_wl_cfg_t c;
    bt_wl_t w;
    char err[128];
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    for (size_t i = 0; i < n; i++) {
        int b = i % 2 ? 5 : 1;

        fprintf(f, "{\"timestamp\": %zu, \"input_length\": 2048, "
                "\"output_length\": 64, \"hash_ids\": [%d, %d, %d, %d]}\n",
                i * 1000, b, b + 1, b + 2, b + 3);
    }
    fclose(f);
    memset(&c, 0, sizeof(c));
    c.trace = path;
    c.trace_speed = 1;
    c.concurrency = 1;
    c.seed = 5;
    c.block_tokens = 64;
    c.max_output = 4;
    c.kv_block = 16;
    assert_int_equal(bt_wl_build(&c, &w, err, sizeof(err)), 0);
    unlink(path);
    return w;
}

static void test_prefix_reuse_follows_index(void **state)
{
    bt_sim_cost_t c = cost();
    bt_sim_cfg_t cfg;
    char path[] = "/tmp/test_sim_trace.XXXXXX";
    bt_wl_t w = trace_repeats(path, 10);
    bt_rep_rec_t recs[10];
    bt_sim_stats_t st;

    (void)state;
    bt_sim_cfg_default(&cfg);
    cfg.cost = &c;
    cfg.n_prefill = 2;
    cfg.n_decode = 1;
    assert_int_equal(run(&cfg, &w, recs, &st), 0);
    /* 256 tokens each; after the first of each prompt, the router sends a
     * repeat to the node holding it: 240 tokens (15 blocks) reused */
    for (int i = 0; i < 10; i++) {
        assert_true(recs[i].ok);
        assert_int_equal(recs[i].cached_tokens, i < 2 ? 0 : 240);
        if (i >= 2) {
            assert_true(recs[i].ttft_ms < recs[i % 2].ttft_ms);
        }
    }
    /* without the nodes' caches nothing is reused */
    cfg.prefix_cache = false;
    assert_int_equal(run(&cfg, &w, recs, &st), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(recs[i].cached_tokens, 0);
    }
    /* a kvstore serves the repeats instead, fetched at its cost */
    cfg.kvstore_bytes = 64ull << 30;
    assert_int_equal(run(&cfg, &w, recs, &st), 0);
    for (int i = 2; i < 10; i++) {
        assert_int_equal(recs[i].cached_tokens, 240);
    }
    assert_int_equal(st.store_tokens, 8 * 240);
    /* a kvstore of 20 blocks of 16 MiB holds one prompt of 16: the next evicts */
    cfg.kvstore_bytes = 320ull << 20;
    assert_int_equal(run(&cfg, &w, recs, &st), 0);
    assert_true(st.kvstore_evictions > 0);
    bt_wl_free(&w);
}

static void test_overload_queues_and_repeats(void **state)
{
    bt_sim_cost_t c = cost();
    bt_sim_cfg_t cfg;
    bt_wl_t w = synth(400, "uniform:32:300", "uniform:2:40", 1, 500);
    bt_rep_rec_t *a = calloc(400, sizeof(*a)), *b = calloc(400, sizeof(*b));
    bt_sim_stats_t st;

    (void)state;
    c.total_blocks = 64;     /* a few requests at a time */
    bt_sim_cfg_default(&cfg);
    cfg.cost = &c;
    cfg.n_prefill = 1;
    cfg.n_decode = 2;
    assert_int_equal(run(&cfg, &w, a, &st), 0);
    assert_true(st.queued > 0);
    /* the same run again: bit for bit */
    assert_int_equal(run(&cfg, &w, b, &st), 0);
    assert_memory_equal(a, b, 400 * sizeof(*a));
    /* a queue of 8: more rejected than none */
    cfg.max_queue = 8;
    assert_int_equal(run(&cfg, &w, b, &st), 0);
    assert_true(st.rejected > 0);
    free(a);
    free(b);
    bt_wl_free(&w);
}

static void test_routers_past_255_nodes(void **state)
{
    bt_sim_cost_t c = cost();
    bt_sim_cfg_t cfg;
    bt_wl_t w = synth(3000, "64", "4", 1, 2000);
    bt_rep_rec_t *r = calloc(3000, sizeof(*r));
    bt_sim_stats_t st;
    char err[256];

    (void)state;
    bt_sim_cfg_default(&cfg);
    cfg.cost = &c;
    cfg.n_prefill = 200;
    cfg.n_decode = 400;
    assert_int_equal(run(&cfg, &w, r, &st), 0);
    assert_int_equal(st.routers, 3);
    for (int i = 0; i < 3000; i++) {
        assert_true(r[i].ok);
    }
    /* no decode node: refused with a reason */
    cfg.n_decode = 0;
    assert_int_equal(bt_sim_run(&cfg, &w, r, &st, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "prefill and decode"));
    free(r);
    bt_wl_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_request_colocated),
        cmocka_unit_test(test_one_host_shares_cores),
        cmocka_unit_test(test_noise_slows_requests),
        cmocka_unit_test(test_router_serves_one_at_a_time),
        cmocka_unit_test(test_prefix_reuse_follows_index),
        cmocka_unit_test(test_overload_queues_and_repeats),
        cmocka_unit_test(test_routers_past_255_nodes),
    };

    return cmocka_run_group_tests_name("sim_cluster", tests, NULL, NULL);
}
