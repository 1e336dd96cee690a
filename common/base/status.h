/* Status codes shared by every Baton module.
 *
 * 0 is success, a positive value means "in progress" (asynchronous work
 * was started and a callback will follow), and negative values are
 * errors grouped by what the caller must tear down:
 *   -1   .. -99   request: fail this request, the node and its peers are fine
 *   -100 .. -199  peer: a remote process is gone or misbehaving; drop the
 *                 endpoint and fail the requests that involve it
 *   -200 .. -299  node: this process cannot go on serving (out of memory,
 *                 broken invariant, shutting down)
 */
#ifndef BT_STATUS_H
#define BT_STATUS_H

#include <stdbool.h>

typedef enum {
    BT_OK                   = 0,
    BT_IN_PROGRESS          = 1,

    /* request */
    BT_ERR_INVALID_ARG      = -1,   /* malformed or out-of-range input */
    BT_ERR_NOT_FOUND        = -2,   /* unknown model, block, request id */
    BT_ERR_TOO_LARGE        = -3,   /* over a configured size limit */
    BT_ERR_TIMED_OUT        = -4,   /* deadline passed */
    BT_ERR_CANCELLED        = -5,   /* caller or client gave up */
    BT_ERR_UNSUPPORTED      = -6,   /* valid but not implemented here */
    BT_ERR_EXHAUSTED        = -7,   /* out of a bounded resource (queue, blocks) */
    BT_ERR_CORRUPT          = -8,   /* data failed a checksum or format check */
    BT_ERR_PERMISSION       = -9,   /* authentication or authorisation failed */
    BT_ERR_EXISTS           = -10,  /* already present */
    BT_ERR_TRUNCATED        = -11,  /* input ended early */

    /* peer */
    BT_ERR_PEER_UNREACHABLE = -100, /* could not connect */
    BT_ERR_PEER_DIED        = -101, /* connection lost mid-operation */
    BT_ERR_PEER_PROTOCOL    = -102, /* peer sent something we cannot parse */
    BT_ERR_PEER_REJECTED    = -103, /* peer answered with an error */

    /* node */
    BT_ERR_NO_MEMORY        = -200,
    BT_ERR_IO               = -201, /* local file or device error */
    BT_ERR_INTERNAL         = -202, /* broken invariant: a bug */
    BT_ERR_SHUTDOWN         = -203, /* the process is draining or stopping */
} bt_status_t;

/* A short, lowercase, static description ("invalid argument"); never NULL,
 * also for codes not in the enum. */
const char *bt_status_str(bt_status_t status);

/* The constant's own name ("BT_ERR_NOT_FOUND"), for logs and wire codes. */
const char *bt_status_name(bt_status_t status);

static inline bool bt_status_is_request_err(bt_status_t s)
{
    return s <= -1 && s >= -99;
}

static inline bool bt_status_is_peer_err(bt_status_t s)
{
    return s <= -100 && s >= -199;
}

static inline bool bt_status_is_node_err(bt_status_t s)
{
    return s <= -200 && s >= -299;
}

#endif
