/* The kvstore service's checks of request fields (kvstore/service.c),
 * apart from the RPC layer so that tests/fuzz/fuzz_grpc_requests runs
 * them on decoded fuzz bytes. Each returns BT_ERR_INVALID_ARG (or
 * BT_ERR_NO_MEMORY) with the precise message in err. */
#ifndef BT_KVSD_REQUEST_CHECK_H
#define BT_KVSD_REQUEST_CHECK_H

#include "base/status.h"
#include "kvstore.pb-c.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

#define BT_KVSD_MAX_NAME 4096

/* A model or node name: at most BT_KVSD_MAX_NAME bytes (NULL is fine). */
bt_status_t bt_kvsd_check_name(const char *s, const char *field, char *err,
                               size_t err_size);

/* Copies `n` hashes (each 32 bytes, n <= BT_KV_MAX_HASHES) into one
 * malloc'ed buffer *out_p. */
bt_status_t bt_kvsd_copy_hashes(const ProtobufCBinaryData *h, size_t n,
                                const char *field, uint8_t **out_p, char *err,
                                size_t err_size);

/* A reservation's fields but the hashes: names, at least one hash, a
 * geometry and a 32-byte parent hash. */
bt_status_t bt_kvsd_check_reserve(const Baton__V1__ReserveRequest *req,
                                  char *err, size_t err_size);

/* A commit's blocks (at most BT_KV_MAX_HASHES; 32-byte hash and checksum,
 * at most BT_KV_MAX_BLOCK_TOKENS ids each) into blocks[0..n_blocks), which
 * borrow the request's token ids. */
bt_status_t bt_kvsd_commit_blocks(const Baton__V1__CommitRequest *req,
                                  bt_kvs_commit_block_t *blocks, char *err,
                                  size_t err_size);

#endif
