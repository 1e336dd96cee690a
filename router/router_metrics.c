/* The router's metrics: their definitions (names, help, labels) and the
 * gauges computed from the node registry. The request files observe them
 * (request_*.c); docs/operations.md lists each with its vLLM equivalent. */
#include "model.h"
#include "router.h"

#include <stdio.h>

static const char *const bt_role_names[2] = { "prefill", "decode" };
static const char *const bt_state_names[3] = { "ready", "draining", "drained" };

static bt_histogram_t *bt_latency(bt_metrics_t *m, const char *name,
                                  const char *help, const char *labels)
{
    return bt_metrics_histogram(m, name, help, labels, bt_metrics_latency_bounds,
                                bt_metrics_latency_n_bounds);
}

static void bt_router_metrics_node_init(bt_router_t *r, const char *model)
{
    bt_metrics_t *m = r->metrics;
    char labels[512];

    r->m.nodes_prefill = bt_metrics_gauge(m, "baton_router_nodes",
                                          "registered nodes", "role=\"prefill\"");
    r->m.nodes_decode = bt_metrics_gauge(m, "baton_router_nodes",
                                         "registered nodes", "role=\"decode\"");
    for (int role = 0; role < 2; role++) {
        for (int st = 0; st < 3; st++) {
            r->m.node_state[role][st] = bt_metrics_gauge(
                m, "baton_router_nodes_by_state",
                "registered nodes per role and state (ready, draining, drained)",
                bt_metrics_labels(labels, sizeof(labels), "role", bt_role_names[role],
                                  "state", bt_state_names[st], NULL));
        }
        r->m.kv_usage[role] = bt_metrics_gauge(
            m, "baton_router_kv_cache_usage_ratio",
            "KV cache blocks in use over all blocks of the role's nodes, 0..1 "
            "(vllm:kv_cache_usage_perc)",
            bt_metrics_labels(labels, sizeof(labels), "model_name", model,
                              "role", bt_role_names[role], NULL));
    }
    for (int k = 0; k < 4; k++) {
        static const char *const kinds[4] = { "hello", "status", "kv_events", "other" };

        bt_metrics_labels(labels, sizeof(labels), "kind", kinds[k], NULL);
        r->m.node_msgs[k] = bt_metrics_counter(
            m, "baton_router_node_messages_total", "messages nodes sent this "
            "router on their Register streams (heartbeats are status)", labels);
        r->m.node_msg_bytes[k] = bt_metrics_counter(
            m, "baton_router_node_message_bytes_total", "protobuf bytes of "
            "those messages", labels);
    }
    for (int k = 0; k < 3; k++) {
        static const char *const to[3] = { "prefill", "decode", "both" };

        r->m.role_moves[k] = bt_metrics_counter(
            m, "baton_router_role_moves_total", "moves of flexible nodes "
            "finished, by the role they serve now",
            bt_metrics_labels(labels, sizeof(labels), "to", to[k], NULL));
    }
    r->m.nodes_moving = bt_metrics_gauge(m, "baton_router_nodes_moving",
                                         "flexible nodes finishing the work of "
                                         "a role they leave", NULL);
    r->m.node_expiries = bt_metrics_counter(m, "baton_router_node_expiries_total",
                                            "nodes dropped for missed heartbeats", NULL);
    r->m.leases_lost = bt_metrics_counter(m, "baton_router_leases_lost_total",
                                          "decode leases that ended before their "
                                          "prefill (the request failed over)", NULL);
}

/* One series per (decision, reason) that can happen (decide.h). */
static void bt_router_metrics_decisions(bt_router_t *r)
{
    static const struct { bt_decide_t d; bt_decide_reason_t why; } pairs[] = {
        { BT_DECIDE_DISAGG, BT_DECIDE_FORCED },
        { BT_DECIDE_DISAGG, BT_DECIDE_OFFLOAD },
        { BT_DECIDE_DISAGG, BT_DECIDE_NO_LOCAL },
        { BT_DECIDE_DISAGG, BT_DECIDE_TPOT },
        { BT_DECIDE_LOCAL, BT_DECIDE_FORCED },
        { BT_DECIDE_LOCAL, BT_DECIDE_SHORT },
        { BT_DECIDE_LOCAL, BT_DECIDE_CACHED },
        { BT_DECIDE_LOCAL, BT_DECIDE_BUSY },
        { BT_DECIDE_LOCAL, BT_DECIDE_NO_REMOTE },
        { BT_DECIDE_LOCAL, BT_DECIDE_COLOCATED },
    };
    char labels[256];

    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        r->m.disagg_decisions[pairs[i].d][pairs[i].why] = bt_metrics_counter(
            r->metrics, "baton_router_disagg_decisions_total",
            "requests placed, per choice: prefill on another node and move "
            "the KV (disagg) or on the decode node (local), and why",
            bt_metrics_labels(labels, sizeof(labels), "decision",
                              bt_decide_str(pairs[i].d), "reason",
                              bt_decide_reason_str(pairs[i].why), NULL));
    }
}

void bt_router_metrics_init(bt_router_t *r)
{
    bt_metrics_t *m = r->metrics;
    const char *model = bt_router_model_name(r);
    char ml[320], labels[512];

    bt_metrics_labels(ml, sizeof(ml), "model_name", model, NULL);
    r->m.requests_ok = bt_metrics_counter(
        m, "baton_router_requests_total", "requests ended",
        bt_metrics_labels(labels, sizeof(labels), "model_name", model, "result", "ok", NULL));
    r->m.requests_failed = bt_metrics_counter(
        m, "baton_router_requests_total", "requests ended",
        bt_metrics_labels(labels, sizeof(labels), "model_name", model, "result", "error",
                          NULL));
    r->m.success_stop = bt_metrics_counter(
        m, "baton_router_request_success_total",
        "requests finished, per finish reason (vllm:request_success_total)",
        bt_metrics_labels(labels, sizeof(labels), "model_name", model,
                          "finished_reason", "stop", NULL));
    r->m.success_length = bt_metrics_counter(
        m, "baton_router_request_success_total", "",
        bt_metrics_labels(labels, sizeof(labels), "model_name", model,
                          "finished_reason", "length", NULL));
    r->m.success_abort = bt_metrics_counter(
        m, "baton_router_request_success_total", "",
        bt_metrics_labels(labels, sizeof(labels), "model_name", model,
                          "finished_reason", "abort", NULL));
    r->m.requests_rejected = bt_metrics_counter(m, "baton_router_rejected_total",
                                                "requests refused for lack of room", NULL);
    r->m.prefill_retries = bt_metrics_counter(m, "baton_router_prefill_retries_total",
                                              "prefills retried on another node", NULL);
    bt_router_metrics_decisions(r);
    r->m.decode_failovers = bt_metrics_counter(m, "baton_router_decode_failovers_total",
                                               "requests moved to another decode node", NULL);
    r->m.tokens_out = bt_metrics_counter(m, "baton_router_generated_tokens_total",
                                         "tokens streamed to clients "
                                         "(vllm:generation_tokens_total)", ml);
    r->m.prompt_tokens = bt_metrics_counter(m, "baton_router_prompt_tokens_total",
                                            "prompt tokens of finished requests "
                                            "(vllm:prompt_tokens_total)", ml);
    r->m.cached_tokens = bt_metrics_counter(m, "baton_router_cached_prompt_tokens_total",
                                            "prompt tokens of finished requests served "
                                            "from a prefix cache", ml);
    r->m.prefix_queries = bt_metrics_counter(m, "baton_router_prefix_cache_queries_total",
                                             "prompt tokens looked up in the prefix "
                                             "caches (vllm:prefix_cache_queries_total)", ml);
    r->m.prefix_hits = bt_metrics_counter(m, "baton_router_prefix_cache_hits_total",
                                          "prompt tokens found in a prefix cache, the "
                                          "node's or the kvstore's "
                                          "(vllm:prefix_cache_hits_total)", ml);
    r->m.hits_node = bt_metrics_counter(
        m, "baton_router_prefix_cache_hits_by_source_total",
        "prompt tokens found in a prefix cache, per cache: the prefill node's "
        "pool or the kvstore",
        bt_metrics_labels(labels, sizeof(labels), "model_name", model, "source", "node",
                          NULL));
    r->m.hits_kvstore = bt_metrics_counter(
        m, "baton_router_prefix_cache_hits_by_source_total", "",
        bt_metrics_labels(labels, sizeof(labels), "model_name", model, "source",
                          "kvstore", NULL));
    r->m.inflight = bt_metrics_gauge(m, "baton_router_inflight_requests",
                                     "requests in progress", NULL);
    r->m.tokenizing = bt_metrics_gauge(m, "baton_router_prompts_tokenizing",
                                       "prompts waiting for or on the tokenizer "
                                       "threads (--threads)", NULL);
    r->m.detok_jobs = bt_metrics_counter(m, "baton_router_detok_jobs_total",
                                         "jobs of generated tokens detokenized on the "
                                         "worker threads (one per busy loop pass)", NULL);
    r->m.detok_pool_tokens = bt_metrics_counter(m, "baton_router_detok_pool_tokens_total",
                                                "generated tokens detokenized on the "
                                                "worker threads, not the loop", NULL);
    r->m.queued = bt_metrics_gauge(m, "baton_router_queued_requests",
                                   "requests waiting for a node", NULL);
    r->m.running = bt_metrics_gauge(m, "baton_router_requests_running",
                                    "requests on nodes (vllm:num_requests_running)", ml);
    r->m.waiting = bt_metrics_gauge(m, "baton_router_requests_waiting",
                                    "requests waiting for a node "
                                    "(vllm:num_requests_waiting)", ml);
    r->m.ttft = bt_latency(m, "baton_router_ttft_seconds",
                           "time to first token (vllm:time_to_first_token_seconds)", ml);
    r->m.e2e = bt_latency(m, "baton_router_e2e_seconds",
                          "request latency, admission to end "
                          "(vllm:e2e_request_latency_seconds)", ml);
    r->m.itl = bt_latency(m, "baton_router_itl_seconds",
                          "time between tokens (vllm:inter_token_latency_seconds)", ml);
    r->m.queue_time = bt_latency(m, "baton_router_queue_time_seconds",
                                 "admission to first sent to nodes "
                                 "(vllm:request_queue_time_seconds)", ml);
    r->m.prefill_time = bt_latency(m, "baton_router_prefill_time_seconds",
                                   "first sent to nodes to first token "
                                   "(vllm:request_prefill_time_seconds)", ml);
    r->m.decode_time = bt_latency(m, "baton_router_decode_time_seconds",
                                  "first token to last token "
                                  "(vllm:request_decode_time_seconds)", ml);
    bt_router_metrics_node_init(r, model);
}

/* Registered nodes per role and state, and KV usage per role. */
void bt_router_metrics_nodes(bt_router_t *r)
{
    double count[2][3] = { { 0 } }, used[2] = { 0 }, total[2] = { 0 };

    if (r->m.node_state[0][0] == NULL) {
        return;
    }
    for (unsigned slot = 0; slot < BT_ROUTER_MAX_NODES; slot++) {
        const bt_node_t *n = bt_registry_slot(r->registry, slot);
        int st;

        if (n == NULL) {
            continue;
        }
        st = n->load.drained ? 2 : n->load.draining ? 1 : 0;
        for (int role = 0; role < 2; role++) {
            if (!(n->role & (role == 0 ? BT_NODE_ROLE_PREFILL : BT_NODE_ROLE_DECODE))) {
                continue;
            }
            count[role][st]++;
            total[role] += n->total_blocks;
            used[role] += n->load.free_blocks < n->total_blocks
                          ? n->total_blocks - n->load.free_blocks : 0;
        }
    }
    for (int role = 0; role < 2; role++) {
        for (int st = 0; st < 3; st++) {
            bt_gauge_set(r->m.node_state[role][st], count[role][st]);
        }
        bt_gauge_set(r->m.kv_usage[role], total[role] > 0 ? used[role] / total[role] : 0);
    }
}
