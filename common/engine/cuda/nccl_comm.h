/* NCCL inside a node (issue 20, docs/internals/cuda.md): a communicator
 * whose collectives give the same bits whatever NCCL's algorithm, and that
 * never hangs on a dead or stopped peer.
 *
 * Sums are ordered: a reduction is an all-to-all of equal chunks, each
 * rank adding its chunk of every rank in rank order (0, 1, 2, ...), then
 * an all-gather; NCCL only moves bytes, so its ring or tree choice never
 * changes a result. Every call is asynchronous on the caller's stream;
 * bt_nccl_wait waits for it with a bound: past `timeout_ms`, or on an
 * error NCCL reports, the communicator is aborted (ncclCommAbort) and
 * every later call fails at once, so the node fails its requests instead
 * of hanging. */
#ifndef BT_ENGINE_NCCL_COMM_H
#define BT_ENGINE_NCCL_COMM_H

#include "base/status.h"

#include <stddef.h>
#include <stdint.h>

#define BT_NCCL_ID_BYTES 128   /* sizeof(ncclUniqueId) */

typedef struct bt_nccl bt_nccl_t;

/* Rank 0 makes the id and hands it to the others out of band. */
bt_status_t bt_nccl_unique_id(uint8_t id[BT_NCCL_ID_BYTES], char *err,
                              size_t err_size);

/* Joins the communicator of `nranks` as `rank`, on the current GPU,
 * within timeout_ms (BT_ERR_TIMED_OUT: a peer never came). */
bt_status_t bt_nccl_create(const uint8_t id[BT_NCCL_ID_BYTES], int rank,
                           int nranks, int timeout_ms, bt_nccl_t **comm_p,
                           char *err, size_t err_size);
void bt_nccl_destroy(bt_nccl_t *comm);
int bt_nccl_rank(const bt_nccl_t *comm);
int bt_nccl_nranks(const bt_nccl_t *comm);

/* buf[n] (f32, device) = the sum over ranks of every rank's buf, added in
 * rank order; n a multiple of nranks; scratch holds 2n floats. */
bt_status_t bt_nccl_allreduce_ordered(bt_nccl_t *comm, float *buf, size_t n,
                                      float *scratch, void *stream);

/* recv[r] = rank r's send[this rank], `bytes` per peer. */
bt_status_t bt_nccl_alltoall(bt_nccl_t *comm, const void *send, void *recv,
                             size_t bytes, void *stream);

/* Waits for `stream`: BT_OK, or BT_ERR_TIMED_OUT / BT_ERR_PEER_DIED with
 * the communicator aborted (err says why). */
bt_status_t bt_nccl_wait(bt_nccl_t *comm, void *stream, char *err,
                         size_t err_size);

#endif
