/* kv-spec values to and from protobuf messages (kv_proto.h). */
#include "kv_proto.h"

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
