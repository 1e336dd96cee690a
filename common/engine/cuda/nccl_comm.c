/* The node's NCCL communicator (nccl_comm.h). */
#include "nccl_comm.h"

#include "cuda_kernels.h"

#include <cuda_runtime.h>
/* nccl.h declares a few functions as f() */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <nccl.h>
#pragma GCC diagnostic pop
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bt_nccl {
    ncclComm_t comm;
    int        rank, nranks, timeout_ms;
    bool       aborted;
    char       why[160];
};

static uint64_t bt_nccl_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void bt_nccl_nap(void)
{
    struct timespec ts = { 0, 200000 };   /* 0.2 ms between polls */

    nanosleep(&ts, NULL);
}

static void bt_nccl_abort(bt_nccl_t *c, const char *why)
{
    if (!c->aborted) {
        c->aborted = true;
        snprintf(c->why, sizeof(c->why), "%s", why);
        ncclCommAbort(c->comm);
        c->comm = NULL;
    }
}

bt_status_t bt_nccl_unique_id(uint8_t id[BT_NCCL_ID_BYTES], char *err,
                              size_t err_size)
{
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);

    if (r != ncclSuccess) {
        snprintf(err, err_size, "nccl: no unique id: %s", ncclGetErrorString(r));
        return BT_ERR_IO;
    }
    memcpy(id, &u, BT_NCCL_ID_BYTES);
    return BT_OK;
}

bt_status_t bt_nccl_create(const uint8_t id[BT_NCCL_ID_BYTES], int rank,
                           int nranks, int timeout_ms, bt_nccl_t **comm_p,
                           char *err, size_t err_size)
{
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    bt_nccl_t *c = calloc(1, sizeof(*c));
    ncclUniqueId u;
    ncclResult_t r, state = ncclInProgress;
    const uint64_t deadline = bt_nccl_now_ms() + (uint64_t)timeout_ms;

    if (c == NULL) {
        snprintf(err, err_size, "nccl: out of memory");
        return BT_ERR_NO_MEMORY;
    }
    c->rank = rank;
    c->nranks = nranks;
    c->timeout_ms = timeout_ms;
    memcpy(&u, id, sizeof(u));
    cfg.blocking = 0;   /* calls return at once; waits are ours, bounded */
    r = ncclCommInitRankConfig(&c->comm, nranks, u, rank, &cfg);
    while (r == ncclSuccess || r == ncclInProgress) {
        if (ncclCommGetAsyncError(c->comm, &state) != ncclSuccess ||
            state != ncclInProgress) {
            break;
        }
        if (bt_nccl_now_ms() > deadline) {
            snprintf(err, err_size, "nccl: rank %d of %d: the other ranks did "
                     "not join within %d ms", rank, nranks, timeout_ms);
            ncclCommAbort(c->comm);
            free(c);
            return BT_ERR_TIMED_OUT;
        }
        bt_nccl_nap();
    }
    if ((r != ncclSuccess && r != ncclInProgress) || state != ncclSuccess) {
        snprintf(err, err_size, "nccl: rank %d of %d cannot join: %s", rank,
                 nranks, ncclGetErrorString(r != ncclSuccess &&
                                            r != ncclInProgress ? r : state));
        if (c->comm != NULL) {
            ncclCommAbort(c->comm);
        }
        free(c);
        return BT_ERR_PEER_UNREACHABLE;
    }
    *comm_p = c;
    return BT_OK;
}

void bt_nccl_destroy(bt_nccl_t *c)
{
    if (c == NULL) {
        return;
    }
    if (c->comm != NULL) {
        /* a finalize could wait for a dead peer: abort never does */
        ncclCommAbort(c->comm);
    }
    free(c);
}

int bt_nccl_rank(const bt_nccl_t *c)
{
    return c->rank;
}

int bt_nccl_nranks(const bt_nccl_t *c)
{
    return c->nranks;
}

static bt_status_t bt_nccl_check(bt_nccl_t *c, ncclResult_t r, const char *what)
{
    char why[160];

    if (c->aborted) {
        return BT_ERR_PEER_DIED;
    }
    if (r == ncclSuccess || r == ncclInProgress) {
        return BT_OK;
    }
    snprintf(why, sizeof(why), "%s: %s", what, ncclGetErrorString(r));
    bt_nccl_abort(c, why);
    return BT_ERR_PEER_DIED;
}

bt_status_t bt_nccl_alltoall(bt_nccl_t *c, const void *send, void *recv,
                             size_t bytes, void *stream)
{
    if (c->aborted) {
        return BT_ERR_PEER_DIED;
    }
    return bt_nccl_check(c, ncclAlltoAll(send, recv, bytes, ncclUint8, c->comm,
                                         (cudaStream_t)stream), "alltoall");
}

bt_status_t bt_nccl_allreduce_ordered(bt_nccl_t *c, float *buf, size_t n,
                                      float *scratch, void *stream)
{
    const size_t chunk = n / (size_t)c->nranks;
    float *parts = scratch, *mine = scratch + n;
    bt_status_t s;

    if (c->aborted) {
        return BT_ERR_PEER_DIED;
    }
    if (n % (size_t)c->nranks != 0) {
        return BT_ERR_INVALID_ARG;
    }
    /* parts[r] = rank r's chunk `rank` of buf */
    s = bt_nccl_alltoall(c, buf, parts, chunk * sizeof(float), stream);
    if (s != BT_OK) {
        return s;
    }
    if (bt_cuda_sum_ranks(parts, c->nranks, chunk, mine, stream) != 0) {
        return bt_nccl_check(c, ncclInternalError, "rank-order sum kernel");
    }
    return bt_nccl_check(c, ncclAllGather(mine, buf, chunk, ncclFloat32, c->comm,
                                          (cudaStream_t)stream), "allgather");
}

bt_status_t bt_nccl_wait(bt_nccl_t *c, void *stream, char *err, size_t err_size)
{
    const uint64_t deadline = bt_nccl_now_ms() + (uint64_t)c->timeout_ms;

    for (;;) {
        ncclResult_t state = ncclSuccess;
        cudaError_t q;

        if (c->aborted) {
            snprintf(err, err_size, "nccl: communicator aborted: %s", c->why);
            return BT_ERR_PEER_DIED;
        }
        if (ncclCommGetAsyncError(c->comm, &state) != ncclSuccess ||
            (state != ncclSuccess && state != ncclInProgress)) {
            char why[160];

            snprintf(why, sizeof(why), "a peer failed: %s",
                     ncclGetErrorString(state));
            bt_nccl_abort(c, why);
            continue;
        }
        q = cudaStreamQuery((cudaStream_t)stream);
        if (q == cudaSuccess) {
            return BT_OK;
        }
        if (q != cudaErrorNotReady) {
            char why[160];

            snprintf(why, sizeof(why), "the stream failed: %s",
                     cudaGetErrorString(q));
            bt_nccl_abort(c, why);
            continue;
        }
        if (bt_nccl_now_ms() > deadline) {
            char why[160];

            snprintf(why, sizeof(why), "no answer from a peer within %d ms",
                     c->timeout_ms);
            bt_nccl_abort(c, why);
            snprintf(err, err_size, "nccl: communicator aborted: %s", c->why);
            return BT_ERR_TIMED_OUT;
        }
        bt_nccl_nap();
    }
}
