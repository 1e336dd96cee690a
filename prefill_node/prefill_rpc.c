/* The Prefill call of the prefill role: validate the request and its
 * reservation, import the decode node's pool (once per descriptor), open
 * the job's xfer stream, take this pool's cached prefix and then the
 * kvstore's, and queue the rest for compute (prefill_step.c). With
 * --role both and the reservation on this node, no stream: the job copies
 * inside the pool and hands its kv-complete to the decode role through
 * the core's hook (node_local.c). */
#include "prefill_int.h"
#include "node_bias.h"
#include "node_kvs.h"
#include "node_lp.h"

#include "base/clock.h"
#include "base/log.h"
#include "kvspec/kv_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bt_prefill_remote_t *bt_prefill_remote_get(bt_prefill_t *pf,
                                                  const char *id,
                                                  const void *desc, size_t len)
{
    bt_node_t *node = pf->node;
    const bt_kv_geom_t *g = bt_kvpool_geom(node->pool);
    bt_prefill_remote_t *rm = NULL;
    bt_list_t *it, *next;

    bt_list_foreach_safe(it, next, &pf->remotes) {
        bt_prefill_remote_t *x = BT_CONTAINER_OF(it, bt_prefill_remote_t, link);

        if (strcmp(x->node_id, id) == 0) {
            rm = x;
            if (rm->desc != NULL && rm->desc_len == len &&
                memcmp(rm->desc, desc, len) == 0) {
                return rm;
            }
            /* the node restarted: import again */
            bt_xfer_remote_destroy(rm->remote);
            free(rm->desc);
            rm->remote = NULL;
            rm->desc = NULL;
            break;
        }
    }
    if (rm == NULL) {
        rm = calloc(1, sizeof(*rm));
        if (rm == NULL) {
            return NULL;
        }
        snprintf(rm->node_id, sizeof(rm->node_id), "%s", id);
        bt_list_add_head(&pf->remotes, &rm->link);
    }
    rm->desc = malloc(len);
    if (rm->desc == NULL ||
        bt_xfer_remote_import(node->xfer, desc, len, &rm->remote) != BT_OK) {
        /* the next request imports again (it must not compare with the
         * descriptor that failed) */
        free(rm->desc);
        rm->desc = NULL;
        rm->desc_len = 0;
        rm->remote = NULL;
        return NULL;
    }
    memcpy(rm->desc, desc, len);
    rm->desc_len = len;
    /* the decode pool fills its region (node_main.c) */
    rm->n_blocks = (uint32_t)(bt_xfer_remote_length(rm->remote) /
                              ((size_t)g->n_layers * bt_kv_slice_bytes(g)));
    return rm;
}

void bt_prefill_remotes_destroy(bt_prefill_t *pf)
{
    while (!bt_list_empty(&pf->remotes)) {
        bt_prefill_remote_t *rm =
            BT_CONTAINER_OF(pf->remotes.next, bt_prefill_remote_t, link);

        bt_list_del(&rm->link);
        bt_xfer_remote_destroy(rm->remote);
        free(rm->desc);
        free(rm);
    }
}

static void bt_pjob_cancel_cb(bt_rpc_call_t *call, void *arg)
{
    (void)call;
    bt_pjob_end(arg, BT_RPC_CANCELLED, "cancelled");
}

/* The prefix is in place (own pool, then kvstore): the rest of the prompt
 * joins the sequence and the job queues for compute. */
static void bt_pjob_start(bt_pjob_t *j, uint32_t matched, uint32_t from_store)
{
    bt_node_t *node = j->node;
    const bt_kv_geom_t *g = bt_kvpool_geom(node->pool);
    const uint32_t bs = g->block_size;

    if (bt_kvseq_append(j->seq, j->u32 + matched * bs,
                        j->n - matched * bs) != BT_OK) {
        bt_pjob_end(j, BT_RPC_RESOURCE_EXHAUSTED,
                    "the prefill node's kv pool is full");
        return;
    }
    j->cached = matched * bs;
    j->store_cached = from_store * bs;
    j->next_tok = j->cached;
    j->xfer_start_us = bt_now_us();
    if (node->cfg.prefix_cache) {
        bt_counter_add(node->c_prefix_queries, (double)j->n);
        bt_counter_add(node->c_prefix_hits, (double)j->cached);
    }
    bt_rpc_call_set_cancel_cb(j->call, bt_pjob_cancel_cb, j);
    /* the cached prefix goes out at once, every layer */
    for (uint32_t l = 0; l < g->n_layers && matched > 0; l++) {
        bt_pjob_post(j, l, 0, matched);
    }
    bt_pjob_to(j, BT_PJOB_QUEUED);
    BT_LOG_REQ(INFO, j->id, "prefill accepted: %u prompt tokens, %u cached "
               "(%u from the kvstore), %u to compute", j->n, j->cached,
               j->store_cached, j->n - j->cached);
    bt_node_metrics_update(node);
    bt_node_sched_kick(node);
}

static void bt_pjob_fetched(void *arg, uint32_t got)
{
    bt_pjob_t *j = arg;
    const uint32_t bs = bt_kvpool_geom(j->node->pool)->block_size;
    uint32_t own = j->cached / bs;

    bt_pjob_start(j, own + got, got);
}


static void bt_prefill(bt_rpc_call_t *call, const ProtobufCMessage *msg,
                       void *arg)
{
    bt_prefill_t *pf = arg;
    bt_node_t *node = pf->node;
    const Baton__V1__PrefillRequest *q = (const Baton__V1__PrefillRequest *)msg;
    const Baton__V1__Reservation *rv = q->reservation;
    const bt_kv_geom_t *g = bt_kvpool_geom(node->pool);
    const uint32_t bs = g->block_size;
    uint32_t need, matched = 0, full;
    bool reuse;
    uint32_t *u32 = NULL;
    bt_pjob_t *j;
    char why[256];

    if (node->draining) {
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_UNAVAILABLE, "the node is draining");
        return;
    }
    bt_node_flex_call(node, BT_NODE_SERVES_PREFILL);
    if (q->n_token_ids == 0 || q->n_token_ids > BT_PJOB_MAX_TOKENS ||
        q->generated_count > q->n_token_ids || q->sampling == NULL ||
        rv == NULL || rv->geometry == NULL || q->tenant == NULL ||
        q->tenant->root_hash.len != BT_KV_HASH_LEN) {
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_INVALID_ARGUMENT,
                            "token_ids, sampling, reservation and a 32-byte "
                            "tenant.root_hash are required");
        return;
    }
    need = ((uint32_t)q->n_token_ids + bs - 1) / bs;
    if (rv->block_size != bs || rv->geometry->block_size != bs ||
        rv->geometry->n_layers != g->n_layers ||
        rv->geometry->n_kv_heads != g->n_kv_heads ||
        rv->geometry->head_dim != g->head_dim ||
        bt_kv_dtype_from_proto(rv->geometry->dtype) != g->dtype ||
        rv->n_block_ids < need) {
        snprintf(why, sizeof(why), "reservation does not fit: %zu blocks for "
                 "%zu tokens, or another kv geometry", rv->n_block_ids,
                 q->n_token_ids);
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_FAILED_PRECONDITION, why);
        return;
    }
    if (!bt_node_tokens_in_vocab(node, q->token_ids, q->n_token_ids)) {
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_INVALID_ARGUMENT,
                            "token id outside the vocabulary");
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->node = node;
    j->call = call;
    j->t_start_us = bt_now_us();
    j->end_ev = evtimer_new(node->base, bt_pjob_end_ev, j);
    if (j->end_ev == NULL) {
        free(j);
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    snprintf(j->id, sizeof(j->id), "%s", q->request_id ? q->request_id : "");
    j->n = (uint32_t)q->n_token_ids;
    j->n_gen = q->generated_count;
    j->lease_id = rv->lease_id;
    bt_node_sampling_from_proto(node, q->sampling, &j->sp);
    if (bt_node_lp_param(q->sampling, &j->sp.logprobs) != BT_OK) {
        event_free(j->end_ev);
        free(j);
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_INVALID_ARGUMENT,
                            "sampling.logprobs must be in [0, 20]");
        return;
    }
    if (bt_node_bias_from_proto(q->sampling, node->vocab, &j->sp, why,
                                sizeof(why)) != BT_OK) {
        event_free(j->end_ev);
        free(j);
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_INVALID_ARGUMENT, why);
        return;
    }
    j->prompt_lp = q->prompt_logprobs;
    if (j->prompt_lp && bt_plp_init(j) != BT_OK) {
        bt_plp_free(j);
        event_free(j->end_ev);
        free(j);
        bt_node_call_refuse(call, "prefill", q->request_id,
                            BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->tokens = malloc(j->n * sizeof(int32_t));
    j->dst = malloc(need * sizeof(uint32_t));
    u32 = malloc(j->n * sizeof(uint32_t));
    if (j->tokens == NULL || j->dst == NULL || u32 == NULL) {
        goto err_nomem;
    }
    for (uint32_t i = 0; i < j->n; i++) {
        j->tokens[i] = (int32_t)q->token_ids[i];
        u32[i] = q->token_ids[i];
    }
    memcpy(j->dst, rv->block_ids, need * sizeof(uint32_t));
    j->n_dst = need;
    bt_ptl_init(&j->tl, j->t_start_us, g->n_layers);
    bt_pjob_enter(pf, j);
    /* the first token is sampled here: under the format, replayed past
     * the tokens already generated */
    if (bt_node_gram_open(node, q->sampling, j->tokens + (j->n - j->n_gen),
                          j->n_gen, &j->gram, why, sizeof(why)) != BT_OK) {
        free(u32);
        bt_pjob_end(j, BT_RPC_INVALID_ARGUMENT, why);
        return;
    }
    if (bt_node_local_is(node, rv->decode_node_id)) {
        j->local = true;
    } else {
        bt_xfer_stream_params_t sp;

        j->rem = node->xfer == NULL ? NULL
                 : bt_prefill_remote_get(pf, rv->decode_node_id ?
                                         rv->decode_node_id : "",
                                         rv->pool_descriptor.data,
                                         rv->pool_descriptor.len);
        if (j->rem == NULL) {
            free(u32);
            bt_pjob_end(j, BT_RPC_UNAVAILABLE,
                        "cannot reach the decode node's kv pool");
            return;
        }
        for (uint32_t i = 0; i < need; i++) {
            if (j->dst[i] >= j->rem->n_blocks) {
                free(u32);
                bt_pjob_end(j, BT_RPC_INVALID_ARGUMENT,
                            "reserved block id outside the decode pool");
                return;
            }
        }
        j->sl = calloc(need > 0 ? need : 1, sizeof(*j->sl));
        if (j->sl == NULL) {
            free(u32);
            bt_pjob_end(j, BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        memset(&sp, 0, sizeof(sp));
        sp.remote = j->rem->remote;
        sp.lease_id = j->lease_id;
        sp.timeout_ms = q->deadline_unix_ms > bt_wall_ms()
                        ? q->deadline_unix_ms - bt_wall_ms() : 0;
        sp.stall_ms = (uint64_t)node->cfg.kv_stall_ms;
        sp.cb = bt_pjob_stream_done;
        sp.landed_cb = bt_pjob_landed;
        sp.arg = j;
        if (bt_xfer_stream_create(node->xfer, &sp, &j->stream) != BT_OK) {
            free(u32);
            bt_pjob_end(j, BT_RPC_UNAVAILABLE, "cannot open the kv stream");
            return;
        }
    }
    j->u32 = u32;
    /* prompt logprobs need every prompt token's logits: no reuse */
    reuse = node->cfg.prefix_cache && !j->prompt_lp;
    if (bt_kvseq_create(node->pool, q->tenant->root_hash.data, &j->seq) != BT_OK ||
        (reuse &&
         bt_kvseq_match_prefix(j->seq, u32, j->n - 1, NULL, &matched) != BT_OK)) {
        bt_pjob_end(j, BT_RPC_RESOURCE_EXHAUSTED,
                    "the prefill node's kv pool is full");
        return;
    }
    /* full blocks the own pool lacks, up to the last prompt token (always
     * computed): ask the kvstore first, then compute what it lacks */
    full = (j->n - 1) / bs;
    if (bt_node_kvs_on(node) && reuse && full > matched &&
        q->reusable_blocks_known && q->reusable_blocks <= matched) {
        /* the router's index: the kvstore holds nothing past our own
         * blocks, so a lookup would only cost its round trip */
        bt_node_kvs_count_avoided(node);
    } else if (bt_node_kvs_on(node) && reuse && full > matched) {
        uint64_t left = q->deadline_unix_ms > bt_wall_ms()
                        ? q->deadline_unix_ms - bt_wall_ms() : 0;
        uint64_t t = (uint64_t)node->cfg.kvstore_timeout_ms;

        j->cached = matched * bs;
        if (bt_node_kvs_fetch(node, j->seq, u32, matched, full,
                              left > 0 && left < t ? left : t,
                              bt_pjob_fetched, j) == BT_OK) {
            return; /* bt_pjob_fetched goes on */
        }
    }
    bt_pjob_start(j, matched, 0);
    return;

err_nomem:
    free(u32);
    bt_plp_free(j);
    free(j->tokens);
    free(j->dst);
    event_free(j->end_ev);
    free(j);
    bt_node_call_refuse(call, "prefill", q->request_id,
                        BT_RPC_RESOURCE_EXHAUSTED, "out of memory");
}

bt_status_t bt_prefill_rpc_register(bt_prefill_t *pf)
{
    return bt_rpc_server_add_unary(pf->node->grpc, "/baton.v1.Prefill/Prefill",
                                   &baton__v1__prefill_request__descriptor,
                                   bt_prefill, pf);
}
