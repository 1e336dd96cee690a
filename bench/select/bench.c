/* baton-selectbench: the time of one pair selection (bt_select_pair),
 * on a cluster of dedicated prefill and decode nodes (no local choice to
 * weigh) and on one whose decode nodes are `--role both` (the local or
 * disaggregated choice: the decode node's own prefill score and the
 * rule), as many prefill-capable nodes in each, measured in the same
 * run. Prints ns per selection and the ratio.
 *
 * usage: baton-selectbench [ITERATIONS]   (default 200000) */
#include "select.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NODES_PER_ROLE 8
#define PROMPT_BLOCKS  64

static void chain_hash(uint8_t out[BT_BLOCK_HASH_LEN], uint32_t i)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (i + 1);

    for (int k = 0; k < BT_BLOCK_HASH_LEN; k++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ull;
        out[k] = (uint8_t)(x >> 56);
    }
}

static bt_node_t *add(bt_registry_t *reg, const char *id, bt_node_role_t role)
{
    bt_node_hello_t h = { id, role, "m", "ipv4:127.0.0.1:1",
                          (const uint8_t *)"ucx", 3, 100000, 16, 64, 8192, 3,
                          "cpu/exact/tp1/k1", NULL, NULL };
    bt_node_t *node = NULL;
    char err[256];

    if (bt_registry_add(reg, &h, 1000, NULL, &node, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "selectbench: %s\n", err);
        exit(1);
    }
    return node;
}

/* NODES_PER_ROLE prefill nodes holding prefixes of 0, 8, 16, ... blocks
 * of the prompt, and NODES_PER_ROLE decode nodes (role both: they hold
 * prefixes too) beside as many more prefill nodes holding the same (role
 * decode), so both clusters score as many prefill-capable nodes. */
static bt_registry_t *cluster(bool both, uint8_t (*hashes)[BT_BLOCK_HASH_LEN])
{
    bt_registry_t *reg = bt_registry_create(1 << 16, 3000);
    char id[16];

    for (int i = 0; i < NODES_PER_ROLE; i++) {
        size_t held = (size_t)(NODES_PER_ROLE - 1 - i) * 4;

        snprintf(id, sizeof(id), "p%d", i);
        bt_registry_kv_stored(reg, add(reg, id, BT_NODE_ROLE_PREFILL),
                              &hashes[0][0], (size_t)i * 8);
        snprintf(id, sizeof(id), "d%d", i);
        bt_registry_kv_stored(reg, add(reg, id, both ? BT_NODE_ROLE_BOTH
                                                     : BT_NODE_ROLE_DECODE),
                              &hashes[0][0], both ? held : 0);
        if (!both) {
            snprintf(id, sizeof(id), "q%d", i);
            bt_registry_kv_stored(reg, add(reg, id, BT_NODE_ROLE_PREFILL),
                                  &hashes[0][0], held);
        }
    }
    return reg;
}

static double ns_per_select(bt_registry_t *reg, const bt_select_req_t *req,
                            long n, unsigned *local_p)
{
    const bt_select_weights_t w = { 1.0, 1.0, 1.0, 8.0, 0.9,
                                    { BT_DISAGG_AUTO, 256, 10.0, 2.0, 0, 0 }, NULL, NULL };
    struct timespec a, b;
    bt_select_result_t r;
    char err[256];

    *local_p = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        if (bt_select_pair(reg, &w, req, &r, err, sizeof(err)) != BT_OK) {
            fprintf(stderr, "selectbench: %s\n", err);
            exit(1);
        }
        *local_p += r.prefill == r.decode;
        bt_select_release(r.prefill, r.decode, req->prompt_tokens);
        bt_select_resv_dropped(r.decode, r.decode_blocks);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) /
           (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    static uint8_t hashes[PROMPT_BLOCKS][BT_BLOCK_HASH_LEN];
    bt_select_req_t req;
    bt_registry_t *pd, *both;
    unsigned local_pd, local_both;
    double t_pd, t_both;

    if (n <= 0) {
        fprintf(stderr, "usage: baton-selectbench [ITERATIONS]\n");
        return 2;
    }
    for (uint32_t i = 0; i < PROMPT_BLOCKS; i++) {
        chain_hash(hashes[i], i);
    }
    memset(&req, 0, sizeof(req));
    req.model = "m";
    req.block_hashes = &hashes[0][0];
    req.n_blocks = PROMPT_BLOCKS;
    req.prompt_tokens = PROMPT_BLOCKS * 16;
    req.max_new_tokens = 128;
    pd = cluster(false, hashes);
    both = cluster(true, hashes);
    /* warm, then the two measured in turn */
    ns_per_select(pd, &req, n / 10 + 1, &local_pd);
    ns_per_select(both, &req, n / 10 + 1, &local_both);
    t_pd = ns_per_select(pd, &req, n, &local_pd);
    t_both = ns_per_select(both, &req, n, &local_both);
    printf("selectbench: %d-block prompt, %ld selections each, %d prefill-capable "
           "and %d decode-capable nodes in both clusters\n", PROMPT_BLOCKS, n,
           2 * NODES_PER_ROLE, NODES_PER_ROLE);
    printf("%d prefill + %d decode nodes: %.0f ns/selection (%u local)\n",
           2 * NODES_PER_ROLE, NODES_PER_ROLE, t_pd, local_pd);
    printf("%d prefill + %d both nodes:   %.0f ns/selection (%u local)\n",
           NODES_PER_ROLE, NODES_PER_ROLE, t_both, local_both);
    printf("selectbench: with the local/disagg choice / without %.2f\n", t_both / t_pd);
    bt_registry_destroy(pd);
    bt_registry_destroy(both);
    return 0;
}
