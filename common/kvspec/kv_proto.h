/* kv-spec values to and from their protobuf messages (baton.v1.KvDtype,
 * baton.v1.KvGeometry, baton.v1.KvEvent). Apart from kv_spec.h so that the spec itself
 * stays free of generated code: link kvspec_proto_dep to use these. */
#ifndef BT_KV_PROTO_H
#define BT_KV_PROTO_H

#include "kv_spec.h"

#include "common.pb-c.h"
#include "registry.pb-c.h"

/* The ids are the proto's values; these only change the C type. */
Baton__V1__KvDtype bt_kv_dtype_to_proto(bt_kv_dtype_t dtype);
bt_kv_dtype_t bt_kv_dtype_from_proto(Baton__V1__KvDtype dtype);

/* Fills `pb` (initialised by the caller) from `g`. */
void bt_kv_geom_to_proto(const bt_kv_geom_t *g, Baton__V1__KvGeometry *pb);
/* Copies the fields as they are: check the result (bt_kv_geom_check_block)
 * before trusting it. */
void bt_kv_geom_from_proto(const Baton__V1__KvGeometry *pb, bt_kv_geom_t *g);

/* A KvEvent of one block (or none: `hash` NULL, as CLEARED has) with its
 * parent's hash when `parent` is set: one allocation holding the message,
 * its hash entry and both hashes, so free() releases it. NULL when out of
 * memory. */
Baton__V1__KvEvent *bt_kv_event_msg_new(Baton__V1__KvEvent__Kind kind,
                                        Baton__V1__KvTier tier,
                                        const uint8_t *hash,
                                        const uint8_t *parent);

#endif
