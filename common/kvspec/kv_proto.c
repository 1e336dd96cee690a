/* kv-spec values to and from protobuf messages (kv_proto.h). */
#include "kv_proto.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(BT_KV_DTYPE_UNSPECIFIED ==
               (int)BATON__V1__KV_DTYPE__KV_DTYPE_UNSPECIFIED, "kv dtype ids");
_Static_assert(BT_KV_DTYPE_F32 == (int)BATON__V1__KV_DTYPE__KV_DTYPE_F32,
               "kv dtype ids");
_Static_assert(BT_KV_DTYPE_F16 == (int)BATON__V1__KV_DTYPE__KV_DTYPE_F16,
               "kv dtype ids");
_Static_assert(BT_KV_DTYPE_BF16 == (int)BATON__V1__KV_DTYPE__KV_DTYPE_BF16,
               "kv dtype ids");

Baton__V1__KvDtype bt_kv_dtype_to_proto(bt_kv_dtype_t dtype)
{
    return (Baton__V1__KvDtype)dtype;
}

bt_kv_dtype_t bt_kv_dtype_from_proto(Baton__V1__KvDtype dtype)
{
    return (bt_kv_dtype_t)dtype;
}

void bt_kv_geom_to_proto(const bt_kv_geom_t *g, Baton__V1__KvGeometry *pb)
{
    pb->n_layers = g->n_layers;
    pb->n_kv_heads = g->n_kv_heads;
    pb->head_dim = g->head_dim;
    pb->block_size = g->block_size;
    pb->dtype = bt_kv_dtype_to_proto(g->dtype);
}

void bt_kv_geom_from_proto(const Baton__V1__KvGeometry *pb, bt_kv_geom_t *g)
{
    g->n_layers = pb->n_layers;
    g->n_kv_heads = pb->n_kv_heads;
    g->head_dim = pb->head_dim;
    g->block_size = pb->block_size;
    g->dtype = bt_kv_dtype_from_proto(pb->dtype);
}

Baton__V1__KvEvent *bt_kv_event_msg_new(Baton__V1__KvEvent__Kind kind,
                                        Baton__V1__KvTier tier,
                                        const uint8_t *hash,
                                        const uint8_t *parent)
{
    Baton__V1__KvEvent *m;
    ProtobufCBinaryData *hp;
    uint8_t *bytes;

    m = calloc(1, sizeof(*m) + sizeof(*hp) + 2 * BT_KV_HASH_LEN);
    if (m == NULL) {
        return NULL;
    }
    baton__v1__kv_event__init(m);
    hp = (ProtobufCBinaryData *)(m + 1);
    bytes = (uint8_t *)(hp + 1);
    m->kind = kind;
    m->tier = tier;
    if (hash != NULL) {
        memcpy(bytes, hash, BT_KV_HASH_LEN);
        hp->data = bytes;
        hp->len = BT_KV_HASH_LEN;
        m->block_hashes = hp;
        m->n_block_hashes = 1;
    }
    if (parent != NULL) {
        memcpy(bytes + BT_KV_HASH_LEN, parent, BT_KV_HASH_LEN);
        m->parent_hash.data = bytes + BT_KV_HASH_LEN;
        m->parent_hash.len = BT_KV_HASH_LEN;
    }
    return m;
}
