#include "select.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define NUM "cpu/exact/tp1/k1"

static void make_hash(uint8_t out[32], uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    int i;

    for (i = 0; i < 32; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = (uint8_t)x;
    }
}

static void test_prefix_index(void **state)
{
    bt_prefix_index_t *idx = bt_prefix_index_create(4);
    uint8_t h[6][32];
    int i;

    (void)state;
    for (i = 0; i < 6; i++) {
        make_hash(h[i], (uint32_t)i);
    }
    bt_prefix_index_add(idx, h[0], 3);
    bt_prefix_index_add(idx, h[1], 3);
    bt_prefix_index_add(idx, h[2], 200);
    assert_int_equal(bt_prefix_index_match(idx, h[0], 3, 3), 2);
    assert_int_equal(bt_prefix_index_match(idx, h[0], 3, 200), 0); /* not a prefix */
    assert_int_equal(bt_prefix_index_match(idx, h[2], 1, 200), 1);
    /* bounded: the 5th distinct hash is dropped */
    bt_prefix_index_add(idx, h[3], 1);
    bt_prefix_index_add(idx, h[4], 1);
    assert_int_equal(bt_prefix_index_size(idx), 4);
    assert_int_equal(bt_prefix_index_dropped(idx), 1);
    /* removing one node's copy keeps another's */
    bt_prefix_index_add(idx, h[0], 7);
    bt_prefix_index_remove(idx, h[0], 3);
    assert_int_equal(bt_prefix_index_match(idx, h[0], 1, 3), 0);
    assert_int_equal(bt_prefix_index_match(idx, h[0], 1, 7), 1);
    bt_prefix_index_remove_node(idx, 7);
    bt_prefix_index_remove_node(idx, 3);
    assert_int_equal(bt_prefix_index_size(idx), 2);
    bt_prefix_index_destroy(idx);
    bt_prefix_index_destroy(NULL);
}

static void test_prefix_index_churn(void **state)
{
    bt_prefix_index_t *idx = bt_prefix_index_create(64);
    uint8_t h[32];
    uint32_t i;

    (void)state;
    /* many insert/remove cycles must not fill the table with tombstones */
    for (i = 0; i < 100000; i++) {
        make_hash(h, i);
        bt_prefix_index_add(idx, h, i % 5);
        assert_int_equal(bt_prefix_index_match(idx, h, 1, i % 5), 1);
        bt_prefix_index_remove(idx, h, i % 5);
    }
    assert_int_equal(bt_prefix_index_size(idx), 0);
    assert_int_equal(bt_prefix_index_dropped(idx), 0);
    bt_prefix_index_destroy(idx);
}

/* The table grows with its entries: a router configured for a million
 * entries that sees a few thousand holds kilobytes, not 144 MiB. */
static void test_prefix_index_grows_lazily(void **state)
{
    bt_prefix_index_t *idx = bt_prefix_index_create(1000000);
    uint8_t h[32];
    uint32_t i;

    (void)state;
    assert_true(bt_prefix_index_bytes(idx) <= 128 * 1024);
    for (i = 0; i < 20000; i++) {
        make_hash(h, i);
        bt_prefix_index_add(idx, h, i % 7);
    }
    assert_int_equal(bt_prefix_index_size(idx), 20000);
    assert_int_equal(bt_prefix_index_dropped(idx), 0);
    /* at most half full: <= 4 slots per entry after doubling */
    assert_true(bt_prefix_index_bytes(idx) <= 20000 * 4 * 72 + 4096);
    for (i = 0; i < 20000; i++) {
        make_hash(h, i);
        assert_int_equal(bt_prefix_index_match(idx, h, 1, i % 7), 1);
        assert_int_equal(bt_prefix_index_match(idx, h, 1, (i + 1) % 7), 0);
    }
    bt_prefix_index_remove_node(idx, 3);
    make_hash(h, 3);
    assert_int_equal(bt_prefix_index_match(idx, h, 1, 3), 0);
    bt_prefix_index_destroy(idx);

    /* the bound still holds once grown to it */
    idx = bt_prefix_index_create(3000);
    for (i = 0; i < 5000; i++) {
        make_hash(h, i);
        bt_prefix_index_add(idx, h, 1);
    }
    assert_int_equal(bt_prefix_index_size(idx), 3000);
    assert_int_equal(bt_prefix_index_dropped(idx), 2000);
    bt_prefix_index_destroy(idx);
}

static bt_node_t *add_node(bt_registry_t *reg, const char *id, bt_node_role_t role,
                           const char *model, uint32_t blocks)
{
    bt_node_hello_t hello = { id, role, model, "ipv4:127.0.0.1:1", (const uint8_t *)"ucx",
                              3, blocks, 16, 8, 512, 3, NUM, NULL,
                              NULL };
    bt_node_t *node = NULL;
    char err[256];

    assert_int_equal(bt_registry_add(reg, &hello, 1000, NULL, &node, err, sizeof(err)), BT_OK);
    return node;
}

/* A kvstore replica: no model, no capacity. */
static const bt_node_hello_t kvstore_hello = {
    "kv0", BT_NODE_ROLE_KVSTORE, "", "ipv4:127.0.0.1:2", NULL, 0, 0, 0, 0, 0, 0,
    NULL, NULL, NULL };

static void test_registry(void **state)
{
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    bt_node_hello_t bad = { "", BT_NODE_ROLE_PREFILL, "m", "a", NULL, 0, 10, 16, 1, 1, 3, NUM,
                            NULL, NULL };
    bt_node_t *a, *a2, *node;
    char err[256];
    uint8_t h[32];

    (void)state;
    assert_int_equal(bt_registry_add(reg, &bad, 0, NULL, &node, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    bad.id = "n\x01";
    assert_int_equal(bt_registry_add(reg, &bad, 0, NULL, &node, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    bad.id = "ok";
    bad.role = (bt_node_role_t)9;
    assert_int_equal(bt_registry_add(reg, &bad, 0, NULL, &node, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "unknown role"));
    /* the http address is optional (older nodes) but must be text */
    bad.role = BT_NODE_ROLE_PREFILL;
    bad.model = "m";
    bad.grpc_address = "ipv4:127.0.0.1:1";
    bad.http_address = "127.0.0.1:9\n";
    assert_int_equal(bt_registry_add(reg, &bad, 0, NULL, &node, err, sizeof(err)),
                     BT_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "http address"));
    bad.http_address = "127.0.0.1:9100";
    assert_int_equal(bt_registry_add(reg, &bad, 0, NULL, &node, err, sizeof(err)), BT_OK);
    assert_string_equal(node->http_address, "127.0.0.1:9100");
    bt_registry_remove(reg, node);

    a = add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);
    assert_string_equal(a->http_address, "");
    add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 100);
    make_hash(h, 1);
    assert_true(bt_registry_kv_events_begin(reg, a, 1));
    bt_registry_kv_stored(reg, a, h, 1);
    assert_int_equal(bt_prefix_index_match(bt_registry_index(reg), h, 1, a->slot), 1);
    /* a gap in event numbers drops what the index knew of the node */
    assert_false(bt_registry_kv_events_begin(reg, a, 5));
    assert_int_equal(bt_prefix_index_match(bt_registry_index(reg), h, 1, a->slot), 0);

    /* re-registering the same id replaces the entry */
    a2 = add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 50);
    assert_int_equal(bt_registry_count(reg, BT_NODE_ROLE_PREFILL, "m"), 1);
    assert_int_equal(a2->total_blocks, 50);
    assert_ptr_equal(bt_registry_find(reg, "p0"), a2);

    /* heartbeats: d0 reports, p0 does not */
    {
        bt_node_load_t load = { 0, 0, 90, 0, false, false, 0, 0 };

        bt_registry_update_load(reg, bt_registry_find(reg, "d0"), &load, 3500);
    }
    assert_int_equal(bt_registry_expire(reg, 4500, NULL, NULL), 1);
    assert_null(bt_registry_find(reg, "p0"));
    assert_non_null(bt_registry_find(reg, "d0"));
    assert_int_equal(bt_registry_count(reg, BT_NODE_ROLE_BOTH, NULL), 1);
    bt_registry_destroy(reg);
}

/* The router stopped (SIGSTOP, a starved host) for longer than the
 * heartbeat timeout: its first check after that expires nobody, since the
 * nodes' reports of that time wait in its sockets; a node that then stays
 * silent for a whole timeout of the router's running time still goes. */
static void test_registry_router_stall(void **state)
{
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    bt_node_load_t load = { 0, 0, 90, 0, false, false, 0, 0 };

    (void)state;
    add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);   /* seen at 1000 */
    add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 100);
    for (uint64_t t = 1100; t <= 2000; t += 100) {
        assert_int_equal(bt_registry_expire(reg, t, NULL, NULL), 0);
    }
    /* stopped from 2000 to 9000: seven seconds without a check */
    assert_int_equal(bt_registry_expire(reg, 9000, NULL, NULL), 0);
    assert_non_null(bt_registry_find(reg, "p0"));
    /* d0's queued heartbeat is read; p0 has none */
    bt_registry_update_load(reg, bt_registry_find(reg, "d0"), &load, 9010);
    for (uint64_t t = 9100; t <= 9500; t += 100) {
        assert_int_equal(bt_registry_expire(reg, t, NULL, NULL), 0);
    }
    /* p0: a second before the stop, half a timeout of it and 600 ms after */
    assert_int_equal(bt_registry_expire(reg, 9600, NULL, NULL), 1);
    assert_null(bt_registry_find(reg, "p0"));
    assert_non_null(bt_registry_find(reg, "d0"));
    /* d0 silent from 9010: a timeout of running time later it goes too */
    for (uint64_t t = 9700; t <= 12000; t += 100) {
        assert_int_equal(bt_registry_expire(reg, t, NULL, NULL), 0);
    }
    assert_non_null(bt_registry_find(reg, "d0"));
    assert_int_equal(bt_registry_expire(reg, 12100, NULL, NULL), 1);
    assert_null(bt_registry_find(reg, "d0"));
    bt_registry_destroy(reg);
}

/* the rule with no threshold and free transfers (test_select_disagg_choice
 * sets its own) */
static const bt_select_weights_t weights = { 1.0, 1.0, 1.0, 10.0, 0.5,
                                             { BT_DISAGG_AUTO, 0, 0, 0, 0, 0 }, NULL, NULL };

static bt_select_req_t make_req(const uint8_t *hashes, size_t n)
{
    bt_select_req_t req;

    memset(&req, 0, sizeof(req));
    req.model = "m";
    req.block_hashes = hashes;
    req.n_blocks = n;
    req.prompt_tokens = (uint32_t)(n * 16 + 3);
    req.max_new_tokens = 32;
    return req;
}

static void test_select_prefix_and_load(void **state)
{
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    uint8_t hashes[4][32];
    bt_node_t *p0, *p1, *d0, *d1;
    bt_select_result_t r;
    bt_select_req_t req;
    char err[256];
    int i;

    (void)state;
    for (i = 0; i < 4; i++) {
        make_hash(hashes[i], (uint32_t)(100 + i));
    }
    p0 = add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);
    p1 = add_node(reg, "p1", BT_NODE_ROLE_PREFILL, "m", 100);
    d0 = add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 100);
    d1 = add_node(reg, "d1", BT_NODE_ROLE_DECODE, "m", 100);
    add_node(reg, "x0", BT_NODE_ROLE_BOTH, "other-model", 100);

    /* p1 holds the first 3 blocks: it wins on prefix overlap */
    bt_registry_kv_stored(reg, p1, &hashes[0][0], 3);
    req = make_req(&hashes[0][0], 4);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
    assert_ptr_equal(r.prefill, p1);
    assert_int_equal(r.matched_blocks, 3);
    assert_int_equal(r.prefill_candidates, 2);
    bt_select_release(r.prefill, r.decode, 0);
    bt_select_resv_dropped(r.decode, r.decode_blocks);

    /* ... unless its queue outweighs the saved work */
    p1->load.queued_prefill_tokens = 1000;
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
    assert_ptr_equal(r.prefill, p0);
    bt_select_resv_dropped(r.decode, r.decode_blocks);
    p1->load.queued_prefill_tokens = 0;

    /* decode: more free blocks and a smaller batch win */
    d0->load.free_blocks = 20;
    d1->load.free_blocks = 80;
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
    assert_ptr_equal(r.decode, d1);
    bt_select_resv_dropped(r.decode, r.decode_blocks);
    /* room: 4 blocks of prompt + 2 of output > 5 free */
    d1->load.free_blocks = 5;
    d0->load.free_blocks = 5;
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "has room"));
    d0->load.free_blocks = 100;
    d1->load.free_blocks = 100;

    /* draining and excluded nodes are skipped */
    p0->load.draining = true;
    bt_node_set_add(&req.exclude_prefill, p1->slot);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_PEER_UNREACHABLE);
    assert_non_null(strstr(err, "draining or failed"));
    p0->load.draining = false;
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
    assert_ptr_equal(r.prefill, p0);

    /* unknown model */
    req.model = "nope";
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_NOT_FOUND);
    assert_string_equal(err, "no prefill node serves model 'nope'");
    bt_registry_destroy(reg);
}

/* Reservations the last report cannot show yet count against a decode
 * node's room: asked (pending), answered (until the next report), refused
 * (requests as large skip the node until the next report). */
static void test_select_reservations_count(void **state)
{
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    bt_select_req_t req = make_req(NULL, 0);
    bt_node_load_t load = { 0, 0, 20, 0, false, false, 0, 0 };
    bt_select_result_t r;
    bt_node_t *d0;
    char err[256];

    (void)state;
    req.prompt_tokens = 67;   /* + 32 new tokens: 7 blocks */
    add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);
    d0 = add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 100);
    bt_registry_update_load(reg, d0, &load, 1100);
    /* 20 free blocks hold two 7-block requests, not three */
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
    assert_int_equal(r.decode_blocks, 7);
    assert_int_equal(bt_select_free_blocks(d0), 13);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_EXHAUSTED);
    assert_non_null(strstr(err, "has room"));
    /* one answered, one refused: a report clears what it covers */
    bt_select_resv_answered(d0, 7);
    bt_select_resv_refused(d0, 7);
    assert_int_equal(bt_select_free_blocks(d0), 13);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_EXHAUSTED);   /* refused at 7 blocks */
    load.free_blocks = 13;
    bt_registry_update_load(reg, d0, &load, 1200);
    assert_int_equal(bt_select_free_blocks(d0), 13);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
    bt_select_resv_dropped(d0, 7);
    assert_int_equal(bt_select_free_blocks(d0), 13);
    /* more than any decode node holds: waiting cannot help */
    req.max_new_tokens = 2000;
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "largest decode node"));
    bt_registry_destroy(reg);
}

/* A burst between two reports spreads over the decode nodes although one
 * reported more free blocks (issue 15: a 16/0 split with the stale
 * counts): 1024 + 256 tokens = 80 blocks a request, default weights. */
static void test_select_burst_spreads(void **state)
{
    static const bt_select_weights_t defaults = {
        1.0, 1.0, 1.0, 8.0, 0.9, { BT_DISAGG_AUTO, 256, 10.0, 2.0, 0, 0 }, NULL, NULL };
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    bt_select_req_t req = make_req(NULL, 0);
    bt_node_load_t load = { 0, 0, 4096, 0, false, false, 0, 0 };
    bt_select_result_t r;
    bt_node_t *d0, *d1;
    int counts[2] = { 0, 0 };
    char err[256];

    (void)state;
    req.prompt_tokens = 1024;
    req.max_new_tokens = 256;
    add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);
    d0 = add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 4096);
    d1 = add_node(reg, "d1", BT_NODE_ROLE_DECODE, "m", 4096);
    bt_registry_update_load(reg, d0, &load, 1100);
    load.free_blocks = 3800;
    bt_registry_update_load(reg, d1, &load, 1100);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(bt_select_pair(reg, &defaults, &req, &r, err, sizeof(err)),
                         BT_OK);
        counts[r.decode == d1]++;
    }
    assert_true(counts[0] >= 6 && counts[1] >= 6);
    assert_int_equal(bt_select_free_blocks(d0) + bt_select_free_blocks(d1),
                     4096 + 3800 - 16 * 80);
    bt_registry_destroy(reg);
}

static void test_select_ties_rotate_and_colocate(void **state)
{
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    bt_select_result_t r;
    bt_select_req_t req = make_req(NULL, 0);
    bt_node_t *b0, *b1;
    char err[256];
    int counts[2] = { 0, 0 };
    int i;

    (void)state;
    b0 = add_node(reg, "b0", BT_NODE_ROLE_BOTH, "m", 100);
    b1 = add_node(reg, "b1", BT_NODE_ROLE_BOTH, "m", 100);
    for (i = 0; i < 10; i++) {
        assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
        /* a node that does both keeps the KV local */
        assert_ptr_equal(r.prefill, r.decode);
        counts[r.prefill == b0 ? 0 : 1]++;
        bt_select_release(r.prefill, r.decode, req.prompt_tokens);
    }
    /* equal nodes share the load */
    assert_int_equal(counts[0], 5);
    assert_int_equal(counts[1], 5);
    (void)b1;
    bt_registry_destroy(reg);
}

/* Stall budgets as a test sets them, per node (INFINITY: it holds no
 * sequence); the router's own walks its requests (test_request.c). */
static double test_budgets[BT_ROUTER_MAX_NODES];

static double test_budget(void *arg, const bt_node_t *node)
{
    (void)arg;
    return test_budgets[node->slot];
}

static void budgets_reset(void)
{
    for (size_t i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        test_budgets[i] = INFINITY;
    }
}

static void expect_pair(bt_registry_t *reg, const bt_select_weights_t *w,
                        const bt_select_req_t *req, const bt_node_t *p,
                        const bt_node_t *d, bt_decide_reason_t why)
{
    bt_select_result_t r;
    char err[256];

    assert_int_equal(bt_select_pair(reg, w, req, &r, err, sizeof(err)), BT_OK);
    assert_ptr_equal(r.prefill, p);
    assert_ptr_equal(r.decode, d);
    assert_int_equal(r.decide.decision,
                     p == d ? BT_DECIDE_LOCAL : BT_DECIDE_DISAGG);
    assert_string_equal(bt_decide_reason_str(r.decide.reason),
                        bt_decide_reason_str(why));
    bt_select_release(r.prefill, r.decode, req->prompt_tokens);
}

/* A `--role both` node b0 and a prefill node p0: b0 prefills short and
 * cached prompts itself, p0 the long uncached ones, unless the measured
 * transfer costs more; the flag forces either. */
static void test_select_disagg_choice(void **state)
{
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    bt_select_weights_t w = weights;
    bt_node_t *store = NULL;
    char err[256];
    bt_select_req_t req;
    bt_node_xfer_t slow;
    uint8_t hashes[8][32];
    bt_node_t *b0, *p0, *d0;
    int i;

    (void)state;
    w.disagg = (bt_disagg_cfg_t){ BT_DISAGG_AUTO, 32, 10.0, 2.0, 0, 0 };
    for (i = 0; i < 8; i++) {
        make_hash(hashes[i], (uint32_t)(700 + i));
    }
    p0 = add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);
    b0 = add_node(reg, "b0", BT_NODE_ROLE_BOTH, "m", 1000);
    req = make_req(&hashes[0][0], 1);               /* 19 tokens */
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_SHORT);
    req = make_req(&hashes[0][0], 8);               /* 131 tokens, none cached */
    expect_pair(reg, &w, &req, p0, b0, BT_DECIDE_OFFLOAD);
    /* b0 holds 7 of the 8 blocks: 19 tokens left to compute */
    bt_registry_kv_stored(reg, b0, &hashes[0][0], 7);
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_CACHED);
    bt_registry_kv_cleared(reg, b0);
    expect_pair(reg, &w, &req, p0, b0, BT_DECIDE_OFFLOAD);
    /* a kvstore replica holding them serves b0 as well as p0 */
    assert_int_equal(bt_registry_add(reg, &kvstore_hello, 1000, NULL, &store, err,
                                     sizeof(err)), BT_OK);
    bt_registry_kv_stored(reg, store, &hashes[0][0], 7);
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_CACHED);
    bt_registry_remove(reg, store);
    expect_pair(reg, &w, &req, p0, b0, BT_DECIDE_OFFLOAD);
    /* p0 measured 50 ms to b0: 500 tokens' worth, more than b0's 262 */
    memset(&slow, 0, sizeof(slow));
    snprintf(slow.decode_node, sizeof(slow.decode_node), "b0");
    slow.ops = 3;
    slow.latency_p50_ms = 50.0;
    bt_registry_update_transfers(reg, p0, &slow, 1);
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_BUSY);
    /* forced */
    w.disagg.mode = BT_DISAGG_ALWAYS;
    req = make_req(&hashes[0][0], 1);
    expect_pair(reg, &w, &req, p0, b0, BT_DECIDE_FORCED);
    w.disagg.mode = BT_DISAGG_NEVER;
    req = make_req(&hashes[0][0], 8);
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_FORCED);
    /* b0 draining as a decode node leaves it no choice to make */
    b0->load.draining = true;
    d0 = add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 1000);
    w.disagg.mode = BT_DISAGG_AUTO;
    expect_pair(reg, &w, &req, p0, d0, BT_DECIDE_NO_LOCAL);
    bt_registry_destroy(reg);

    /* a decode-only node beside a both node that is the only prefill
     * node: the both node keeps the KV, unless always */
    reg = bt_registry_create(1024, 3000);
    d0 = add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 4000);
    b0 = add_node(reg, "b0", BT_NODE_ROLE_BOTH, "m", 1000);
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_COLOCATED);
    w.disagg.mode = BT_DISAGG_ALWAYS;
    expect_pair(reg, &w, &req, b0, d0, BT_DECIDE_FORCED);

    /* a TPOT SLO: b0 keeps the 131-token prompt (13.1 ms at 10 tokens per
     * ms) while the sequences it decodes can absorb that, not when they
     * have 5 ms left */
    w.disagg.mode = BT_DISAGG_AUTO;
    w.disagg.slo_tpot_ms = 5.0;
    w.stall_budget_ms = test_budget;
    budgets_reset();
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_COLOCATED);
    test_budgets[b0->slot] = 14.0;
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_COLOCATED);
    test_budgets[b0->slot] = 5.0;
    expect_pair(reg, &w, &req, b0, d0, BT_DECIDE_TPOT);
    /* at its measured speed, 40 tokens per ms: 3.3 ms */
    b0->load.prefill_rate = 40.0;
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_COLOCATED);
    b0->load.prefill_rate = 0;
    w.disagg.slo_tpot_ms = 0;                           /* no SLO */
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_COLOCATED);
    w.disagg.slo_tpot_ms = 5.0;
    w.stall_budget_ms = NULL;                           /* no budgets */
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_COLOCATED);
    w.stall_budget_ms = test_budget;
    bt_registry_destroy(reg);

    /* the same for a both node weighed against a prefill node: b0 is
     * D, p0 far behind, so the costs keep it local (busy) */
    reg = bt_registry_create(1024, 3000);
    p0 = add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);
    b0 = add_node(reg, "b0", BT_NODE_ROLE_BOTH, "m", 1000);
    p0->load.queued_prefill_tokens = 6656;
    budgets_reset();
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_BUSY);   /* b0 decodes nothing */
    test_budgets[b0->slot] = 14.0;
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_BUSY);   /* 13.1 ms fit */
    /* what b0 has queued runs first: its sequences wait for that too */
    b0->load.queued_prefill_tokens = 100;
    expect_pair(reg, &w, &req, p0, b0, BT_DECIDE_TPOT);
    b0->load.queued_prefill_tokens = 0;
    /* so does a prefill placed on b0 since its last report */
    {
        bt_select_result_t held;

        req = make_req(&hashes[0][0], 1);               /* short: local */
        assert_int_equal(bt_select_pair(reg, &w, &req, &held, err, sizeof(err)),
                         BT_OK);
        assert_ptr_equal(held.prefill, b0);
        req = make_req(&hashes[0][0], 8);
        expect_pair(reg, &w, &req, p0, b0, BT_DECIDE_TPOT);
        bt_select_release(held.prefill, held.decode, 19);
    }
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_BUSY);
    bt_registry_destroy(reg);

    /* a lone both node: nobody else prefills */
    reg = bt_registry_create(1024, 3000);
    b0 = add_node(reg, "b0", BT_NODE_ROLE_BOTH, "m", 1000);
    expect_pair(reg, &w, &req, b0, b0, BT_DECIDE_NO_REMOTE);
    bt_registry_destroy(reg);
}

/* A kvstore replica registers without a model or capacity, is never picked,
 * and its blocks extend every prefill node's own prefix (at w_store_hit). */
/* Nodes of another numerics id are never candidates: a pair, a prefill
 * alone and the best reusable prefix all stay within the request's id;
 * the registry lists the ids there are. */
static void test_select_numerics(void **state)
{
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    bt_node_hello_t h = { "p2", BT_NODE_ROLE_PREFILL, "m", "ipv4:127.0.0.1:1",
                          (const uint8_t *)"ucx", 3, 100, 16, 8, 512, 3,
                          "cuda/fast/tp1/k1", NULL, NULL };
    char ids[4][BT_KV_NUMERICS_MAX + 1];
    uint8_t hashes[4][32];
    bt_node_t *p0, *d0, *p2, *d2 = NULL;
    bt_select_result_t r;
    bt_select_req_t req;
    char err[256];
    int i;

    (void)state;
    for (i = 0; i < 4; i++) {
        make_hash(hashes[i], (uint32_t)(700 + i));
    }
    p0 = add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);
    d0 = add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 100);
    assert_int_equal(bt_registry_add(reg, &h, 1000, NULL, &p2, err, sizeof(err)),
                     BT_OK);
    h.id = "d2";
    h.role = BT_NODE_ROLE_DECODE;
    h.total_blocks = 1000;   /* the emptier decode node, but of another id */
    assert_int_equal(bt_registry_add(reg, &h, 1000, NULL, &d2, err, sizeof(err)),
                     BT_OK);
    assert_int_equal(bt_registry_numerics(reg, "m", ids, 4), 2);
    assert_string_equal(ids[0], NUM);
    assert_string_equal(ids[1], "cuda/fast/tp1/k1");
    assert_int_equal(bt_registry_numerics(reg, "m", ids, 1), 1);
    assert_int_equal(bt_registry_numerics(reg, "other", ids, 4), 0);

    /* p2 caches the prompt, d2 has the most room: neither is of NUM */
    bt_registry_kv_stored(reg, p2, &hashes[0][0], 4);
    req = make_req(&hashes[0][0], 4);
    req.numerics = NUM;
    assert_int_equal(bt_select_best_match(reg, &weights, &req), 0);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_OK);
    assert_ptr_equal(r.prefill, p0);
    assert_ptr_equal(r.decode, d0);
    assert_int_equal(r.matched_blocks, 0);
    assert_int_equal(r.numerics_skipped, 2);
    assert_int_equal(r.prefill_candidates, 1);
    assert_int_equal(r.decode_candidates, 1);
    bt_select_release(r.prefill, r.decode, 0);
    req.numerics = "cuda/fast/tp1/k1";
    assert_int_equal(bt_select_best_match(reg, &weights, &req), 4);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_OK);
    assert_ptr_equal(r.prefill, p2);
    assert_ptr_equal(r.decode, d2);
    assert_int_equal(r.matched_blocks, 4);
    bt_select_release(r.prefill, r.decode, 0);

    /* its id's decode node failed the request: d2 is not the way out */
    req.numerics = NUM;
    bt_node_set_add(&req.exclude_decode, d0->slot);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_PEER_UNREACHABLE);
    assert_non_null(strstr(err, "of numerics '" NUM "'"));
    /* its id's prefill node gone: no other takes the prefill */
    bt_registry_remove(reg, p0);
    assert_int_equal(bt_select_prefill(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "no prefill node of numerics '" NUM "'"));
    /* an id no node has */
    req.numerics = "cpu/exact/tp1/k9";
    memset(&req.exclude_decode, 0, sizeof(req.exclude_decode));
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_ERR_NOT_FOUND);
    /* any id (NULL): both groups are candidates */
    req.numerics = NULL;
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_OK);
    assert_ptr_equal(r.prefill, p2);
    assert_int_equal(r.numerics_skipped, 0);
    bt_registry_destroy(reg);
}

static void test_select_kvstore_hits(void **state)
{
    bt_registry_t *reg = bt_registry_create(1024, 3000);
    bt_node_hello_t kv = kvstore_hello;
    uint8_t hashes[6][32], other[32];
    bt_node_t *p0, *p1, *store = NULL;
    bt_select_result_t r;
    bt_select_req_t req;
    char err[256];
    int i;

    (void)state;
    for (i = 0; i < 6; i++) {
        make_hash(hashes[i], (uint32_t)(300 + i));
    }
    make_hash(other, 999);
    p0 = add_node(reg, "p0", BT_NODE_ROLE_PREFILL, "m", 100);
    p1 = add_node(reg, "p1", BT_NODE_ROLE_PREFILL, "m", 100);
    add_node(reg, "d0", BT_NODE_ROLE_DECODE, "m", 100);
    assert_int_equal(bt_registry_add(reg, &kvstore_hello, 1000, NULL, &store, err,
                                     sizeof(err)), BT_OK);
    assert_int_equal(bt_registry_count(reg, BT_NODE_ROLE_BOTH, "m"), 3);
    assert_int_equal(bt_registry_count(reg, BT_NODE_ROLE_KVSTORE, NULL), 1);

    /* p0 holds blocks 0-1, the kvstore 0-4 (and a block of another chain):
     * p0 reuses 5 blocks, 2 of its own; p1 the kvstore's 5 */
    bt_registry_kv_stored(reg, p0, &hashes[0][0], 2);
    bt_registry_kv_stored(reg, store, &hashes[0][0], 5);
    bt_registry_kv_stored(reg, store, other, 1);
    req = make_req(&hashes[0][0], 6);
    assert_int_equal(bt_select_pair(reg, &weights, &req, &r, err, sizeof(err)), BT_OK);
    assert_ptr_equal(r.prefill, p0);   /* 2*16 + 3*16*0.5 > 5*16*0.5 */
    assert_int_equal(r.matched_blocks, 5);
    assert_int_equal(r.store_blocks, 3);
    assert_true(r.prefill_score == 2 * 16 * 1.0 + 3 * 16 * 0.5);
    assert_int_equal(r.prefill_candidates, 2);
    assert_int_equal(r.decode_candidates, 1);
    bt_select_release(r.prefill, r.decode, 0);

    /* with p0 busy, p1 wins on the kvstore's blocks alone */
    p0->load.queued_prefill_tokens = 100;
    assert_int_equal(bt_select_prefill(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_OK);
    assert_ptr_equal(r.prefill, p1);
    assert_int_equal(r.matched_blocks, 5);
    assert_int_equal(r.store_blocks, 5);
    bt_select_release(r.prefill, NULL, 0);

    /* the kvstore leaves: its blocks no longer count */
    bt_registry_remove(reg, store);
    assert_int_equal(bt_select_prefill(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_OK);
    assert_ptr_equal(r.prefill, p1);
    assert_int_equal(r.matched_blocks, 0);
    p0->load.queued_prefill_tokens = 0;
    assert_int_equal(bt_select_prefill(reg, &weights, &req, &r, err, sizeof(err)),
                     BT_OK);
    assert_ptr_equal(r.prefill, p0);
    assert_int_equal(r.matched_blocks, 2);
    assert_int_equal(r.store_blocks, 0);

    /* a node (not a kvstore) still needs a model and capacity */
    kv.role = BT_NODE_ROLE_PREFILL;
    kv.id = "p9";
    assert_int_equal(bt_registry_add(reg, &kv, 1000, NULL, &store, err,
                                     sizeof(err)), BT_ERR_INVALID_ARG);
    bt_registry_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_index),
        cmocka_unit_test(test_prefix_index_churn),
        cmocka_unit_test(test_prefix_index_grows_lazily),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_registry_router_stall),
        cmocka_unit_test(test_select_prefix_and_load),
        cmocka_unit_test(test_select_numerics),
        cmocka_unit_test(test_select_kvstore_hits),
        cmocka_unit_test(test_select_ties_rotate_and_colocate),
        cmocka_unit_test(test_select_disagg_choice),
        cmocka_unit_test(test_select_reservations_count),
        cmocka_unit_test(test_select_burst_spreads),
    };

    return cmocka_run_group_tests_name("router_select", tests, NULL, NULL);
}
