/* Choosing the (prefill, decode) pair for a request (DESIGN §2, §5).
 *
 * Prefill score  = matched_prefix_tokens * w_hit
 *                + store_prefix_tokens * w_store_hit
 *                - (queued_prefill_tokens + assigned_prefill_tokens) * w_load
 * where matched_prefix_tokens is the prefix the node's own cache holds and
 * store_prefix_tokens how far a kvstore replica extends it (blocks the
 * node fetches instead of computing), so kvstore hits count for every
 * node.
 * Decode score   = free_blocks * w_free - running_sequences * w_batch
 *                - assigned * w_batch
 * where free_blocks is the node's last report less the reservations the
 * report may not show yet (asked and unanswered, or answered since the
 * report: bt_node_t.resv_*), so a burst between two reports spreads over
 * the decode nodes instead of piling onto the one that looked emptiest.
 * A decode node must have room for the whole request (prompt + max new
 * tokens, in blocks). Draining nodes and excluded nodes (ones that already
 * failed this request) are skipped.
 * Local or disaggregated (decide.h): when the decode node D can prefill
 * (role both), the best other prefill node P is weighed against D itself;
 * when D only decodes and the best prefill node also decodes with room,
 * that node does both ("colocated", as --disagg never; --disagg always
 * keeps D); otherwise P → D ("no_local").
 * Ties go to the node chosen least recently, so equal nodes share load.
 * Numerics: with req.numerics set, nodes of another numerics id are not
 * candidates at all (their KV is other arithmetic's: kv-spec v2); they
 * are counted in result.numerics_skipped for the log. */
#ifndef BT_ROUTER_SELECT_H
#define BT_ROUTER_SELECT_H

#include "decide.h"
#include "registry.h"

typedef struct {
    double w_hit;    /* per prefix token already cached on the node */
    double w_load;   /* per prompt token queued on the node */
    double w_free;   /* per free KV block on a decode node */
    double w_batch;  /* per running sequence on a decode node */
    double w_store_hit; /* per prefix token a kvstore replica adds */
    bt_disagg_cfg_t disagg; /* local or disaggregated prefill (decide.h) */
    /* The TPOT guard's stall budget of a node: how many ms of prefill the
     * sequences it decodes (and those placed to decode there) can absorb
     * and still keep their TPOT SLO; INFINITY when it holds none. NULL:
     * no guard. The router's walks its requests (request_queue.c). */
    double (*stall_budget_ms)(void *arg, const bt_node_t *node);
    void   *stall_arg;
} bt_select_weights_t;

typedef struct {
    uint64_t words[BT_ROUTER_MAX_NODES / 64];
} bt_node_set_t;

static inline void bt_node_set_add(bt_node_set_t *s, unsigned slot)
{
    s->words[slot / 64] |= 1ull << (slot % 64);
}

static inline bool bt_node_set_has(const bt_node_set_t *s, unsigned slot)
{
    return (s->words[slot / 64] >> (slot % 64)) & 1u;
}

typedef struct {
    const char    *model;
    const char    *numerics;          /* NULL: any (the caller groups) */
    const uint8_t *block_hashes;      /* n_blocks x 32 bytes, chain order */
    size_t         n_blocks;
    uint32_t       prompt_tokens;
    uint32_t       max_new_tokens;
    bt_node_set_t  exclude_prefill;
    bt_node_set_t  exclude_decode;
} bt_select_req_t;

typedef struct {
    bt_node_t *prefill;
    bt_node_t *decode;
    size_t     matched_blocks;   /* on the prefill node, own + kvstore */
    size_t     store_blocks;     /* of those, the ones only a kvstore has */
    double     prefill_score;
    double     decode_score;
    unsigned   prefill_candidates;
    unsigned   decode_candidates;
    unsigned   numerics_skipped; /* nodes of the model with another id */
    uint32_t   decode_blocks;    /* the reservation asked of the decode node */
    /* local (prefill == decode) or disaggregated, why, and the inputs
     * (decide.h; cost and inputs zero when no choice existed) */
    bt_decide_out_t decide;
    bt_decide_in_t  decide_in;
} bt_select_result_t;

/* BT_ERR_NOT_FOUND: no live node serves the model in that role;
 * BT_ERR_PEER_UNREACHABLE: every node of a role is draining or excluded;
 * BT_ERR_TOO_LARGE: no usable decode node's whole pool holds the request;
 * BT_ERR_EXHAUSTED: usable nodes exist but none has room now (waiting for
 * one helps). On success the choice is recorded (least-recently-chosen
 * order, assigned counts, result.decode_blocks pending on the decode
 * node until bt_select_resv_answered / _dropped / _refused). */
bt_status_t bt_select_pair(bt_registry_t *reg, const bt_select_weights_t *w,
                           const bt_select_req_t *req,
                           bt_select_result_t *result_p, char *err,
                           size_t err_size);

/* The longest prefix, in blocks, that a usable prefill node of the
 * request's model and numerics can reuse (its own cache and the kvstore);
 * records nothing. Ranks the numerics groups of a mixed cluster. */
size_t bt_select_best_match(bt_registry_t *reg, const bt_select_weights_t *w,
                            const bt_select_req_t *req);

/* A prefill node only (a retry keeps its decode node and reservation). */
bt_status_t bt_select_prefill(bt_registry_t *reg, const bt_select_weights_t *w,
                              const bt_select_req_t *req,
                              bt_select_result_t *result_p, char *err,
                              size_t err_size);

/* Undo the assigned counts when the request ends. */
void bt_select_release(bt_node_t *prefill, bt_node_t *decode,
                       uint32_t prefill_tokens);

/* The decode node's free blocks as the router sees them now: its last
 * report less the reservations the report may not show. */
uint32_t bt_select_free_blocks(const bt_node_t *node);

/* What became of a reservation of `blocks` asked of `decode` (NULL: the
 * node left; nothing to do): it came back (the blocks count as reserved
 * until the node's next report), the call ended without one, or the node
 * refused it for lack of room (requests as large skip the node until its
 * next report). */
void bt_select_resv_answered(bt_node_t *decode, uint32_t blocks);
void bt_select_resv_dropped(bt_node_t *decode, uint32_t blocks);
void bt_select_resv_refused(bt_node_t *decode, uint32_t blocks);

#endif
