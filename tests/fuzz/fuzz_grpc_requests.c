/* libFuzzer: what gRPC clients and peers send. The first byte picks one
 * of the message types of proto/ (requests of every service, the
 * registry stream's messages both ways, and what nodes answer the
 * router), the rest is its wire bytes, decoded by protobuf-c as the
 * server (common/rpc) does. A message that decodes must encode to bytes
 * that decode again and encode the same (no field lost or invented); its
 * sampling parameters go through the nodes' logprobs check
 * (bt_node_lp_param), its KV geometry through kv-spec's conversion, and
 * the kvstore's requests through the service's field checks
 * (kvstore/request_check.h) and then, as the handlers do, into a real
 * in-memory store (lookup, reserve); expert statistics reports through
 * kvstore/expert_check.h, whose output must stay within its bounds. The type list below is every message
 * protoc-c generates for proto/: a new message type joins it by hand. */
#include "admin.pb-c.h"
#include "common.pb-c.h"
#include "generate.pb-c.h"
#include "kvstore.pb-c.h"
#include "node.pb-c.h"
#include "registry.pb-c.h"

#include "base/log.h"
#include "expert_check.h"
#include "kvspec/kv_proto.h"
#include "node/node_lp.h"
#include "request_check.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const types[] = {
    &baton__v1__node_info__descriptor,
    &baton__v1__list_nodes_request__descriptor,
    &baton__v1__list_nodes_response__descriptor,
    &baton__v1__drain_request__descriptor,
    &baton__v1__drain_response__descriptor,
    &baton__v1__undrain_request__descriptor,
    &baton__v1__undrain_response__descriptor,
    &baton__v1__cache_stats_request__descriptor,
    &baton__v1__node_cache_stats__descriptor,
    &baton__v1__cache_stats_response__descriptor,
    &baton__v1__flush_cache_request__descriptor,
    &baton__v1__flush_cache_response__descriptor,
    &baton__v1__admin_get_placement_request__descriptor,
    &baton__v1__admin_get_placement_response__descriptor,
    &baton__v1__rebalance_request__descriptor,
    &baton__v1__rebalance_response__descriptor,
    &baton__v1__list_requests_request__descriptor,
    &baton__v1__request_info__descriptor,
    &baton__v1__list_requests_response__descriptor,
    &baton__v1__cancel_request_request__descriptor,
    &baton__v1__cancel_request_response__descriptor,
    &baton__v1__get_trace_request__descriptor,
    &baton__v1__trace_event__descriptor,
    &baton__v1__get_trace_response__descriptor,
    &baton__v1__transfer_health_request__descriptor,
    &baton__v1__transfer_pair__descriptor,
    &baton__v1__transfer_health_response__descriptor,
    &baton__v1__get_version_request__descriptor,
    &baton__v1__get_version_response__descriptor,
    &baton__v1__forget_request__descriptor,
    &baton__v1__forget_response__descriptor,
    &baton__v1__sampling_params__descriptor,
    &baton__v1__usage__descriptor,
    &baton__v1__top_logprob__descriptor,
    &baton__v1__token_logprobs__descriptor,
    &baton__v1__kv_geometry__descriptor,
    &baton__v1__placement_plan__descriptor,
    &baton__v1__layer_placement__descriptor,
    &baton__v1__expert_replica__descriptor,
    &baton__v1__chat_message__descriptor,
    &baton__v1__chat_messages__descriptor,
    &baton__v1__token_ids__descriptor,
    &baton__v1__generate_request__descriptor,
    &baton__v1__generate_final__descriptor,
    &baton__v1__generate_response__descriptor,
    &baton__v1__tokenize_request__descriptor,
    &baton__v1__tokenize_response__descriptor,
    &baton__v1__list_models_request__descriptor,
    &baton__v1__model_info__descriptor,
    &baton__v1__list_models_response__descriptor,
    &baton__v1__block_location__descriptor,
    &baton__v1__store_endpoint__descriptor,
    &baton__v1__lookup_request__descriptor,
    &baton__v1__lookup_response__descriptor,
    &baton__v1__reserve_request__descriptor,
    &baton__v1__reserve_response__descriptor,
    &baton__v1__commit_request__descriptor,
    &baton__v1__committed_block__descriptor,
    &baton__v1__commit_response__descriptor,
    &baton__v1__pin_request__descriptor,
    &baton__v1__pin_response__descriptor,
    &baton__v1__unpin_request__descriptor,
    &baton__v1__unpin_response__descriptor,
    &baton__v1__stats_request__descriptor,
    &baton__v1__tier_stats__descriptor,
    &baton__v1__stats_response__descriptor,
    &baton__v1__layer_expert_stats__descriptor,
    &baton__v1__expert_transition__descriptor,
    &baton__v1__expert_stats_report__descriptor,
    &baton__v1__expert_stats_ack__descriptor,
    &baton__v1__get_placement_request__descriptor,
    &baton__v1__tenant_info__descriptor,
    &baton__v1__reservation__descriptor,
    &baton__v1__prefill_request__descriptor,
    &baton__v1__prefill_stats__descriptor,
    &baton__v1__prefill_result__descriptor,
    &baton__v1__decode_request__descriptor,
    &baton__v1__renew_lease_request__descriptor,
    &baton__v1__renew_lease_response__descriptor,
    &baton__v1__decode_tokens__descriptor,
    &baton__v1__decode_final__descriptor,
    &baton__v1__decode_response__descriptor,
    &baton__v1__node_capacity__descriptor,
    &baton__v1__node_hello__descriptor,
    &baton__v1__node_status__descriptor,
    &baton__v1__transfer_peer__descriptor,
    &baton__v1__kv_event__descriptor,
    &baton__v1__kv_events__descriptor,
    &baton__v1__node_message__descriptor,
    &baton__v1__ack__descriptor,
    &baton__v1__router_command__descriptor,
    &baton__v1__router_message__descriptor,
    /* appended, so that the corpus's first bytes keep their types */
    &baton__v1__list_placements_request__descriptor,
    &baton__v1__list_placements_response__descriptor,
    &baton__v1__placement_rebalance_request__descriptor,
};

#define N_TYPES (sizeof(types) / sizeof(types[0]))

static void check_sampling(const Baton__V1__SamplingParams *sp)
{
    int32_t lp = -2;

    if (sp == NULL) {
        return;
    }
    if (bt_node_lp_param(sp, &lp) == BT_OK) {
        if (lp < -1 || lp > BT_SAMPLE_MAX_LOGPROBS ||
            (lp >= 0) != (sp->logprobs > 0 || sp->logprobs_chosen)) {
            abort();
        }
    } else if (sp->logprobs >= 0 && sp->logprobs <= BT_SAMPLE_MAX_LOGPROBS) {
        abort();
    }
}

static void check_geometry(const Baton__V1__KvGeometry *pb)
{
    bt_kv_geom_t g;

    if (pb != NULL) {
        bt_kv_geom_from_proto(pb, &g);
        if (g.n_layers != pb->n_layers || g.block_size != pb->block_size) {
            abort();
        }
    }
}

static struct event_base *base;
static bt_tpool_t *io;
static uint8_t slab[1u << 20];

/* A fresh store per input: the first reservation fixes its geometry. */
static bt_kvs_t *store_new(void)
{
    bt_kvs_config_t cfg;
    bt_kvs_t *s = NULL;

    if (io == NULL) {
        base = event_base_new();
        io = base != NULL ? bt_tpool_create(base, 1, 64) : NULL;
        if (io == NULL) {
            abort();
        }
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.slab = slab;
    cfg.slab_len = sizeof(slab);
    cfg.reserve_ms = 1000;
    cfg.pin_ms = 1000;
    cfg.io = io;
    if (bt_kvs_create(&cfg, &s) != BT_OK) {
        abort();
    }
    return s;
}

/* A failed check must say why. */
static void failed(bt_status_t st, const char *err)
{
    if (st != BT_ERR_INVALID_ARG && st != BT_ERR_NO_MEMORY) {
        abort();
    }
    if (err[0] == '\0') {
        abort();
    }
}

/* After the checks st sums up: the hashes copied as the handlers do. */
static bool kv_hashes(bt_status_t st, const ProtobufCBinaryData *h, size_t n,
                      uint8_t **out_p, char *err, size_t err_size)
{
    if (st == BT_OK) {
        st = bt_kvsd_copy_hashes(h, n, "block_hashes", out_p, err, err_size);
    }
    if (st != BT_OK) {
        failed(st, err);
        return false;
    }
    return true;
}

static void kv_lookup(const Baton__V1__LookupRequest *req)
{
    uint8_t *hashes = NULL;
    char err[256] = "";
    bt_status_t st = bt_kvsd_check_name(req->model, "model", err, sizeof(err));
    size_t matched = SIZE_MAX;
    bt_kvs_t *s;

    if (!kv_hashes(st, req->block_hashes, req->n_block_hashes, &hashes, err,
                   sizeof(err))) {
        return;
    }
    s = store_new();

    if (bt_kvs_lookup(s, hashes, req->n_block_hashes, req->token_ids,
                      req->n_token_ids, NULL, &matched) == BT_OK &&
        matched != 0) {
        abort();   /* an empty store holds nothing */
    }
    bt_kvs_destroy(s);
    free(hashes);
}

static void kv_reserve(const Baton__V1__ReserveRequest *req)
{
    uint8_t *hashes = NULL;
    char err[256] = "";
    bt_status_t st = bt_kvsd_check_reserve(req, err, sizeof(err));
    bt_kvs_slot_t *slots;
    uint64_t id, expiry;
    bt_kv_geom_t g;

    if (!kv_hashes(st, req->block_hashes, req->n_block_hashes, &hashes, err,
                   sizeof(err))) {
        return;
    }
    bt_kv_geom_from_proto(req->geometry, &g);
    slots = calloc(req->n_block_hashes, sizeof(*slots));
    if (slots != NULL) {
        bt_kvs_t *s = store_new();

        st = bt_kvs_reserve(s, &g, req->block_bytes, req->parent_hash.data,
                            hashes, req->n_block_hashes, slots, &id, &expiry);
        if (st == BT_OK) {
            for (size_t i = 0; i < req->n_block_hashes; i++) {
                if (!slots[i].stored &&
                    (slots[i].length != req->block_bytes ||
                     slots[i].offset + slots[i].length > sizeof(slab))) {
                    abort();   /* a slot outside the slab */
                }
            }
            if (bt_kvs_abort(s, id) != BT_OK) {
                abort();
            }
        } else if (bt_kvs_last_error(s)[0] == '\0') {
            abort();
        }
        bt_kvs_destroy(s);
        free(slots);
    }
    free(hashes);
}

static void kv_commit(const Baton__V1__CommitRequest *req)
{
    bt_kvs_commit_block_t *blocks;
    char err[256] = "";
    bt_status_t st;

    if (req->n_blocks > BT_KV_MAX_HASHES) {
        return;   /* the handler refuses it before it allocates */
    }
    blocks = calloc(req->n_blocks + 1, sizeof(*blocks));
    if (blocks == NULL) {
        return;
    }
    st = bt_kvsd_commit_blocks(req, blocks, err, sizeof(err));
    if (st != BT_OK) {
        failed(st, err);
    }
    free(blocks);
}

static void kv_pin(const Baton__V1__PinRequest *req)
{
    uint8_t *hashes = NULL;
    char err[256] = "";
    bt_status_t st = bt_kvsd_check_name(req->model, "model", err, sizeof(err));

    if (st == BT_OK) {
        st = bt_kvsd_check_name(req->node_id, "node_id", err, sizeof(err));
    }
    if (kv_hashes(st, req->block_hashes, req->n_block_hashes, &hashes, err,
                  sizeof(err))) {
        free(hashes);
    }
}

/* An expert statistics report: refused with a reason, or converted into
 * loads within the bounds the plan book relies on. */
static void kv_expert_report(const Baton__V1__ExpertStatsReport *req)
{
    bt_kvsd_expert_report_t out;
    char err[256] = "";
    bt_status_t st = bt_kvsd_expert_report(req, &out, err, sizeof(err));

    if (st != BT_OK) {
        failed(st, err);
        return;
    }
    if (out.r.n_layers < 1 || out.r.n_experts < 1 ||
        (size_t)out.r.n_layers * (size_t)out.r.n_experts > BT_PBOOK_MAX_CELLS ||
        out.r.n_devices < 1 || (int64_t)out.r.n_devices * out.r.slots < out.r.n_experts ||
        out.r.n_trans > BT_PBOOK_MAX_TRANS) {
        abort();
    }
    for (size_t i = 0; i < out.r.n_trans; i++) {
        const bt_pbook_trans_t *t = &out.r.trans[i];

        if (t->layer < 0 || t->layer + 1 >= out.r.n_layers || t->from < 0 ||
            t->from >= out.r.n_experts || t->to < 0 || t->to >= out.r.n_experts) {
            abort();
        }
    }
    bt_kvsd_expert_report_free(&out);
}

/* The checks the handlers run that are callable alone. */
static void check_fields(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    if (d == &baton__v1__generate_request__descriptor) {
        check_sampling(((const Baton__V1__GenerateRequest *)m)->sampling);
    } else if (d == &baton__v1__prefill_request__descriptor) {
        const Baton__V1__PrefillRequest *p = (const void *)m;

        check_sampling(p->sampling);
        if (p->reservation != NULL) {
            check_geometry(p->reservation->geometry);
        }
    } else if (d == &baton__v1__decode_request__descriptor) {
        check_sampling(((const Baton__V1__DecodeRequest *)m)->sampling);
    } else if (d == &baton__v1__reserve_request__descriptor) {
        check_geometry(((const Baton__V1__ReserveRequest *)m)->geometry);
        kv_reserve((const Baton__V1__ReserveRequest *)m);
    } else if (d == &baton__v1__lookup_request__descriptor) {
        kv_lookup((const Baton__V1__LookupRequest *)m);
    } else if (d == &baton__v1__commit_request__descriptor) {
        kv_commit((const Baton__V1__CommitRequest *)m);
    } else if (d == &baton__v1__pin_request__descriptor) {
        kv_pin((const Baton__V1__PinRequest *)m);
    } else if (d == &baton__v1__expert_stats_report__descriptor) {
        kv_expert_report((const Baton__V1__ExpertStatsReport *)m);
    } else if (d == &baton__v1__node_capacity__descriptor) {
        check_geometry(((const Baton__V1__NodeCapacity *)m)->geometry);
    } else if (d == &baton__v1__sampling_params__descriptor) {
        check_sampling((const Baton__V1__SamplingParams *)m);
    } else if (d == &baton__v1__kv_geometry__descriptor) {
        check_geometry((const Baton__V1__KvGeometry *)m);
    }
}

/* An unknown field numbered 0 somewhere in m. protobuf-c 1.4 reads such a
 * tag when its varint is not minimal (80 00) and keeps it as an unknown
 * field, but refuses the canonical 00 it writes back: a library quirk
 * that cannot reach our handlers (none forwards a message it received
 * as is), so the round trip is not required of such a message. */
static bool has_tag0(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        if (m->unknown_fields[i].tag == 0) {
            return true;
        }
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;

        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id) {
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *sub = *(ProtobufCMessage *const *const *)(base + f->offset);

            for (size_t j = 0; j < n; j++) {
                if (has_tag0(sub[j])) {
                    return true;
                }
            }
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(base + f->offset);

            if (sub != NULL && has_tag0(sub)) {
                return true;
            }
        }
    }
    return false;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len_p)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);

    if (buf != NULL && protobuf_c_message_pack(m, buf) != n) {
        abort();
    }
    *len_p = n;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ProtobufCMessageDescriptor *d;
    ProtobufCMessage *m, *again;
    uint8_t *b1, *b2;
    size_t n1, n2;

    if (size < 1 || size > (1u << 20)) {
        return 0;
    }
    if (io == NULL) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
    }
    d = types[data[0] % N_TYPES];
    m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (m == NULL) {
        return 0;
    }
    if (!protobuf_c_message_check(m)) {
        abort();
    }
    check_fields(m);
    b1 = pack(m, &n1);
    if (b1 != NULL) {
        again = protobuf_c_message_unpack(d, NULL, n1, b1);
        if (again == NULL) {
            if (!has_tag0(m)) {
                abort();
            }
        } else {
            b2 = pack(again, &n2);
            if (b2 != NULL && (n2 != n1 || memcmp(b1, b2, n1) != 0)) {
                abort();
            }
            free(b2);
            protobuf_c_message_free_unpacked(again, NULL);
        }
        free(b1);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
