#include "registry.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bt_registry {
    bt_node_t          nodes[BT_ROUTER_MAX_NODES];
    bt_node_lost_t     lost[BT_REGISTRY_MAX_LOST];   /* oldest first */
    size_t             n_lost;
    bt_prefix_index_t *index;
    uint64_t           heartbeat_timeout_ms;
    uint64_t           last_expire_ms;  /* bt_registry_expire's last call */
    uint64_t           store_mask[BT_PREFIX_WORDS]; /* kvstore slots */
    uint64_t           choices;     /* bt_registry_next_choice's clock */
};

bt_registry_t *bt_registry_create(size_t prefix_index_entries,
                                  uint64_t heartbeat_timeout_ms)
{
    bt_registry_t *reg = calloc(1, sizeof(*reg));
    unsigned i;

    if (reg == NULL) {
        return NULL;
    }
    reg->index = bt_prefix_index_create(prefix_index_entries);
    if (reg->index == NULL) {
        free(reg);
        return NULL;
    }
    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        reg->nodes[i].slot = i;
    }
    reg->heartbeat_timeout_ms = heartbeat_timeout_ms;
    return reg;
}

void bt_registry_destroy(bt_registry_t *reg)
{
    unsigned i;

    if (reg == NULL) {
        return;
    }
    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        free(reg->nodes[i].ucx_address);
        free(reg->nodes[i].xfers);
    }
    bt_prefix_index_destroy(reg->index);
    free(reg);
}

static bool bt_registry_text_ok(const char *s, size_t max, bool allow_empty)
{
    size_t n;

    if (s == NULL) {
        return allow_empty;
    }
    n = strnlen(s, max + 1);
    if (n > max || (n == 0 && !allow_empty)) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return false;
        }
    }
    return true;
}

bt_status_t bt_registry_add(bt_registry_t *reg, const bt_node_hello_t *hello,
                            uint64_t now_ms, void *conn, bt_node_t **node_p,
                            char *err, size_t err_size)
{
    bt_node_t *node, *old;
    unsigned i;

    if (!bt_registry_text_ok(hello->id, BT_NODE_ID_MAX, false)) {
        snprintf(err, err_size, "node id must be 1 to %d printable bytes",
                 BT_NODE_ID_MAX);
        return BT_ERR_INVALID_ARG;
    }
    if (hello->role != BT_NODE_ROLE_PREFILL && hello->role != BT_NODE_ROLE_DECODE &&
        hello->role != BT_NODE_ROLE_BOTH && hello->role != BT_NODE_ROLE_KVSTORE) {
        snprintf(err, err_size, "node %s: unknown role %d", hello->id, (int)hello->role);
        return BT_ERR_INVALID_ARG;
    }
    /* a kvstore keeps blocks of any model (the model is in every hash) */
    if (!bt_registry_text_ok(hello->model, BT_NODE_MODEL_MAX,
                             hello->role == BT_NODE_ROLE_KVSTORE) ||
        !bt_registry_text_ok(hello->grpc_address, BT_NODE_ADDR_MAX, false)) {
        snprintf(err, err_size, "node %s: model and grpc address are required "
                 "(at most %d and %d bytes)", hello->id, BT_NODE_MODEL_MAX,
                 BT_NODE_ADDR_MAX);
        return BT_ERR_INVALID_ARG;
    }
    if (!bt_registry_text_ok(hello->http_address, BT_NODE_ADDR_MAX, true)) {
        snprintf(err, err_size, "node %s: bad http address (at most %d "
                 "printable bytes)", hello->id, BT_NODE_ADDR_MAX);
        return BT_ERR_INVALID_ARG;
    }
    if (hello->ucx_address_len > BT_NODE_UCX_MAX) {
        snprintf(err, err_size, "node %s: ucx address over %d bytes", hello->id,
                 BT_NODE_UCX_MAX);
        return BT_ERR_INVALID_ARG;
    }
    if (hello->role != BT_NODE_ROLE_KVSTORE &&
        (hello->block_size == 0 || hello->total_blocks == 0)) {
        snprintf(err, err_size, "node %s: capacity needs blocks and a block size",
                 hello->id);
        return BT_ERR_INVALID_ARG;
    }

    bt_registry_forget(reg, hello->id);   /* back from LOST */
    old = bt_registry_find(reg, hello->id);
    if (old != NULL) {
        bt_info("node %s registered again: replacing its old entry", hello->id);
        bt_registry_remove(reg, old);
    }
    node = NULL;
    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        if (!reg->nodes[i].live) {
            node = &reg->nodes[i];
            break;
        }
    }
    if (node == NULL) {
        snprintf(err, err_size, "the router holds %d nodes, its maximum",
                 BT_ROUTER_MAX_NODES);
        return BT_ERR_EXHAUSTED;
    }
    memset(node, 0, sizeof(*node));
    node->slot = i;
    if (hello->ucx_address_len > 0) {
        node->ucx_address = malloc(hello->ucx_address_len);
        if (node->ucx_address == NULL) {
            return BT_ERR_NO_MEMORY;
        }
        memcpy(node->ucx_address, hello->ucx_address, hello->ucx_address_len);
        node->ucx_address_len = hello->ucx_address_len;
    }
    node->live = true;
    snprintf(node->id, sizeof(node->id), "%s", hello->id);
    snprintf(node->model, sizeof(node->model), "%s", hello->model);
    snprintf(node->grpc_address, sizeof(node->grpc_address), "%s",
             hello->grpc_address);
    snprintf(node->http_address, sizeof(node->http_address), "%s",
             hello->http_address != NULL ? hello->http_address : "");
    node->role = hello->role;
    node->serving = hello->role;
    node->role_since_ms = now_ms;
    node->total_blocks = hello->total_blocks;
    node->block_size = hello->block_size;
    node->max_batch = hello->max_batch;
    node->max_prefill_tokens = hello->max_prefill_tokens;
    node->kv_dtype = hello->kv_dtype;
    snprintf(node->numerics, sizeof(node->numerics), "%s",
             hello->numerics != NULL ? hello->numerics : "");
    snprintf(node->version, sizeof(node->version), "%s",
             hello->version != NULL ? hello->version : "");
    node->load.free_blocks = hello->total_blocks;
    node->registered_ms = now_ms;
    node->last_seen_ms = now_ms;
    node->grace_ms = 0;
    node->conn = conn;
    if (node->role == BT_NODE_ROLE_KVSTORE) {
        reg->store_mask[i / 64] |= 1ull << (i % 64);
    }
    *node_p = node;
    return BT_OK;
}

void bt_registry_set_role(bt_node_t *node, bt_node_role_t serving,
                          bt_node_role_t moving_to)
{
    node->serving = serving;
    node->moving_to = moving_to;
    node->role = moving_to != 0 ? (bt_node_role_t)(serving & moving_to) : serving;
}

void bt_registry_remove(bt_registry_t *reg, bt_node_t *node)
{
    unsigned slot;

    if (node == NULL || !node->live) {
        return;
    }
    slot = node->slot;
    reg->store_mask[slot / 64] &= ~(1ull << (slot % 64));
    bt_prefix_index_remove_node(reg->index, slot);
    free(node->ucx_address);
    free(node->xfers);
    memset(node, 0, sizeof(*node));
    node->slot = slot;
}

void bt_registry_update_load(bt_registry_t *reg, bt_node_t *node,
                             const bt_node_load_t *load, uint64_t now_ms)
{
    (void)reg;
    node->load = *load;
    node->last_seen_ms = now_ms;
    node->grace_ms = 0;
    /* the report covers what the router had assigned before it */
    node->assigned_prefill_tokens = 0;
    node->resv_unreported_blocks = 0;
    node->refused_blocks = 0;
}

void bt_registry_update_transfers(bt_registry_t *reg, bt_node_t *node,
                                  const bt_node_xfer_t *x, size_t n)
{
    bt_node_xfer_t *copy = NULL;

    (void)reg;
    n = n > BT_NODE_XFER_MAX ? BT_NODE_XFER_MAX : n;
    if (n > 0 && (copy = malloc(n * sizeof(*copy))) == NULL) {
        return; /* keep the previous report */
    }
    if (n > 0) {
        memcpy(copy, x, n * sizeof(*copy));
    }
    free(node->xfers);
    node->xfers = copy;
    node->n_xfers = n;
}

bool bt_registry_kv_events_begin(bt_registry_t *reg, bt_node_t *node,
                                 uint64_t seq)
{
    bool in_order = node->kv_seq == 0 || seq == node->kv_seq + 1;

    if (!in_order) {
        bt_warn("node %s: kv events %llu after %llu: dropping its index entries",
                node->id, (unsigned long long)seq,
                (unsigned long long)node->kv_seq);
        bt_prefix_index_remove_node(reg->index, node->slot);
    }
    node->kv_seq = seq;
    return in_order;
}

void bt_registry_kv_stored(bt_registry_t *reg, bt_node_t *node,
                           const uint8_t *hashes, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        bt_prefix_index_add(reg->index, hashes + i * BT_BLOCK_HASH_LEN,
                            node->slot);
    }
}

void bt_registry_kv_removed(bt_registry_t *reg, bt_node_t *node,
                            const uint8_t *hashes, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        bt_prefix_index_remove(reg->index, hashes + i * BT_BLOCK_HASH_LEN,
                               node->slot);
    }
}

void bt_registry_kv_cleared(bt_registry_t *reg, bt_node_t *node)
{
    bt_prefix_index_remove_node(reg->index, node->slot);
}

static void bt_registry_keep_lost(bt_registry_t *reg, const bt_node_t *node)
{
    bt_node_lost_t *l;

    bt_registry_forget(reg, node->id);
    if (reg->n_lost == BT_REGISTRY_MAX_LOST) {
        memmove(&reg->lost[0], &reg->lost[1], (reg->n_lost - 1) * sizeof(reg->lost[0]));
        reg->n_lost--;
    }
    l = &reg->lost[reg->n_lost++];
    memset(l, 0, sizeof(*l));
    snprintf(l->id, sizeof(l->id), "%s", node->id);
    snprintf(l->model, sizeof(l->model), "%s", node->model);
    snprintf(l->grpc_address, sizeof(l->grpc_address), "%s", node->grpc_address);
    snprintf(l->http_address, sizeof(l->http_address), "%s", node->http_address);
    snprintf(l->version, sizeof(l->version), "%s", node->version);
    l->role = node->serving;
    l->total_blocks = node->total_blocks;
    l->registered_ms = node->registered_ms;
    l->last_seen_ms = node->last_seen_ms;
}

const bt_node_lost_t *bt_registry_lost(const bt_registry_t *reg, size_t i)
{
    return i < reg->n_lost ? &reg->lost[i] : NULL;
}

bool bt_registry_forget(bt_registry_t *reg, const char *id)
{
    for (size_t i = 0; i < reg->n_lost; i++) {
        if (strcmp(reg->lost[i].id, id) == 0) {
            memmove(&reg->lost[i], &reg->lost[i + 1],
                    (reg->n_lost - i - 1) * sizeof(reg->lost[0]));
            reg->n_lost--;
            return true;
        }
    }
    return false;
}

size_t bt_registry_expire(bt_registry_t *reg, uint64_t now_ms,
                          void (*expired)(bt_node_t *node, void *arg),
                          void *arg)
{
    uint64_t half = reg->heartbeat_timeout_ms / 2;
    uint64_t stall = 0;
    size_t n = 0;
    unsigned i;

    if (reg->last_expire_ms != 0 && now_ms > reg->last_expire_ms + half) {
        stall = now_ms - reg->last_expire_ms - half;
        bt_warn("the heartbeat check ran %llu ms late (the router was stopped "
                "or starved): nodes get %llu ms more",
                (unsigned long long)(now_ms - reg->last_expire_ms),
                (unsigned long long)stall);
    }
    reg->last_expire_ms = now_ms;
    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = &reg->nodes[i];

        if (!node->live) {
            continue;
        }
        node->grace_ms += stall;
        if (now_ms < node->last_seen_ms ||
            now_ms - node->last_seen_ms <= reg->heartbeat_timeout_ms + node->grace_ms) {
            continue;
        }
        bt_warn("node %s missed heartbeats for %llu ms: leaving the pool",
                node->id, (unsigned long long)(now_ms - node->last_seen_ms));
        if (expired != NULL) {
            expired(node, arg);
        }
        bt_registry_keep_lost(reg, node);
        bt_registry_remove(reg, node);
        n++;
    }
    return n;
}

bt_node_t *bt_registry_find(bt_registry_t *reg, const char *id)
{
    unsigned i;

    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        if (reg->nodes[i].live && strcmp(reg->nodes[i].id, id) == 0) {
            return &reg->nodes[i];
        }
    }
    return NULL;
}

uint64_t bt_registry_next_choice(bt_registry_t *reg)
{
    return ++reg->choices;
}

bt_node_t *bt_registry_slot(bt_registry_t *reg, unsigned slot)
{
    if (slot >= BT_ROUTER_MAX_NODES || !reg->nodes[slot].live) {
        return NULL;
    }
    return &reg->nodes[slot];
}

size_t bt_registry_count(const bt_registry_t *reg, bt_node_role_t role,
                         const char *model)
{
    size_t n = 0;
    unsigned i;

    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        const bt_node_t *node = &reg->nodes[i];

        if (node->live && (node->role & role) &&
            (model == NULL || strcmp(node->model, model) == 0)) {
            n++;
        }
    }
    return n;
}

const char *bt_node_role_str(bt_node_role_t role)
{
    switch (role) {
    case BT_NODE_ROLE_PREFILL: return "prefill";
    case BT_NODE_ROLE_DECODE:  return "decode";
    case BT_NODE_ROLE_BOTH:    return "prefill+decode";
    case BT_NODE_ROLE_KVSTORE: return "kvstore";
    default:                   return "unknown";
    }
}

size_t bt_registry_count_usable(const bt_registry_t *reg, bt_node_role_t role,
                                const char *model)
{
    size_t n = 0;
    unsigned i;

    for (i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        const bt_node_t *node = &reg->nodes[i];

        if (node->live && (node->role & role) && !node->load.draining &&
            !node->load.drained &&
            (model == NULL || strcmp(node->model, model) == 0)) {
            n++;
        }
    }
    return n;
}

const bt_prefix_index_t *bt_registry_index(const bt_registry_t *reg)
{
    return reg->index;
}

const uint64_t *bt_registry_store_mask(const bt_registry_t *reg)
{
    return reg->store_mask;
}

bool bt_registry_has_store(const bt_registry_t *reg)
{
    for (unsigned i = 0; i < BT_PREFIX_WORDS; i++) {
        if (reg->store_mask[i] != 0) {
            return true;
        }
    }
    return false;
}

size_t bt_registry_numerics(bt_registry_t *reg, const char *model,
                            char (*ids)[BT_KV_NUMERICS_MAX + 1], size_t max)
{
    size_t n = 0;

    for (unsigned i = 0; i < BT_ROUTER_MAX_NODES; i++) {
        bt_node_t *node = bt_registry_slot(reg, i);
        size_t j;

        if (node == NULL || !(node->role & BT_NODE_ROLE_BOTH) ||
            strcmp(node->model, model) != 0) {
            continue;
        }
        for (j = 0; j < n; j++) {
            if (strcmp(ids[j], node->numerics) == 0) {
                break;
            }
        }
        if (j == n && n < max) {
            snprintf(ids[n++], sizeof(ids[0]), "%s", node->numerics);
        }
    }
    return n;
}
