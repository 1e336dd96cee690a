/* Server internals shared by server.c (lifecycle, accepting calls), call.c
 * (one call's operations) and health.c. */
#ifndef BT_RPC_SERVER_INT_H
#define BT_RPC_SERVER_INT_H

#include "rpc_int.h"
#include "server.h"

#include "base/list.h"
#include "base/ring.h"

typedef enum {
    BT_RPC_KIND_UNARY,
    BT_RPC_KIND_STREAM,
    BT_RPC_KIND_BIDI,
    BT_RPC_KIND_GENERIC,   /* any method not registered: UNIMPLEMENTED */
} bt_rpc_kind_t;

typedef struct bt_rpc_method {
    struct bt_rpc_method             *next;
    bt_rpc_server_t                  *srv;
    char                             *path;
    bt_rpc_kind_t                     kind;
    const ProtobufCMessageDescriptor *desc;
    bt_rpc_handler_cb                 handler;
    bt_rpc_recv_cb                    recv;
    void                             *arg;
    void                             *handle;  /* grpc_server_register_method */
    size_t                            max_message; /* 0: the server's */
} bt_rpc_method_t;


typedef struct {
    grpc_byte_buffer *bb;       /* NULL: the status entry (always last) */
    bt_rpc_sent_cb    cb;
    void             *arg;
} bt_rpc_sendq_entry_t;

typedef struct bt_rpc_md_copy {
    struct bt_rpc_md_copy *next;
    char                  *key;
    char                  *value;
} bt_rpc_md_copy_t;

struct bt_rpc_call {
    bt_rpc_server_t        *srv;       /* NULL once detached by destroy */
    bt_rpc_method_t        *method;
    bt_list_t               link;      /* srv->calls once accepted */
    grpc_call              *call;
    gpr_timespec            deadline;
    grpc_metadata_array     md;
    grpc_call_details       details;   /* generic calls only */
    grpc_byte_buffer       *payload;   /* unary and stream request */
    ProtobufCMessage       *req;
    bt_rpc_tag_t            tag_new;
    bt_rpc_tag_t            tag_close;
    bt_rpc_tag_t            tag_send;
    bt_rpc_tag_t            tag_recv;
    int                     ops;       /* batches in flight + callbacks running */
    int                     close_cancelled;
    bool                    accepted;
    bool                    ended;     /* the handler gave the call back */
    bool                    status_queued;
    bool                    cancelled;
    bool                    broken;    /* a send failed: the client is gone */
    bool                    md_sent;
    bool                    send_busy;
    bool                    recv_busy;
    bool                    failed;    /* ended with a status other than OK */
    bool                    no_message; /* answered for a request without one */
    unsigned                roles;     /* granted by its credentials (auth.h) */
    bt_ring_t               q;         /* the send queue: sendq entries */
    uint32_t                q_msgs;    /* its entries that carry a message */
    /* the batch in flight */
    bt_rpc_sendq_entry_t    inflight;
    bool                    inflight_status;
    grpc_status_code        status_code;
    grpc_slice              status_details;
    bool                    has_details;
    /* bidi */
    grpc_byte_buffer       *recv_bb;
    bt_rpc_cancel_cb        cancel_cb;
    void                   *cancel_arg;
    void                   *ctx;
    bt_rpc_md_copy_t       *md_copies;
    char                   *path_copy;  /* generic calls: method path */
};

struct bt_rpc_server {
    struct event_base      *base;
    grpc_server            *server;
    bt_rpc_bridge_t         bridge;
    bt_rpc_method_t        *methods;
    bt_rpc_method_t         generic;
    bt_rpc_health_t        *health;
    uint32_t                max_message;
    uint32_t                send_queue_max;
    uint32_t                accept_slots;
    bool                    started;
    bool                    shutdown_started;
    bool                    shutdown_notified;
    bool                    done_called;
    bool                    destroying;
    int                     ops;         /* everything handed to gRPC */
    bt_rpc_tag_t            tag_shutdown;
    struct event           *grace_timer;
    struct event           *done_event;
    bt_rpc_server_done_cb   done_cb;
    void                   *done_arg;
    bt_list_t               calls;       /* accepted, not yet freed */
    bt_rpc_server_stats_t   stats;
    const bt_rpc_auth_t    *auth;        /* cluster tokens (borrowed) */
    bool                    cert_roles;  /* roles from client certificates */
    bt_rpc_refusal_cb       refusal_cb;  /* each refusal, for metrics */
    void                   *refusal_arg;
};

/* call.c */
bt_rpc_call_t *bt_rpc_call_new(bt_rpc_server_t *srv, bt_rpc_method_t *method);
void bt_rpc_call_free(bt_rpc_call_t *call);
/* An accepted call: start RECV_CLOSE and hand it to its handler. */
void bt_rpc_call_begin(bt_rpc_call_t *call);
/* Frees the call when the handler gave it back and nothing is in flight. */
void bt_rpc_call_maybe_free(bt_rpc_call_t *call);

/* call_auth.c: false when the call was refused (and ended). */
bool bt_rpc_call_admit(bt_rpc_call_t *call);

/* server.c */
void bt_rpc_server_call_gone(bt_rpc_server_t *srv, bt_rpc_call_t *call);

/* The receive limit of calls to `m`. */
static inline size_t bt_rpc_method_max(const bt_rpc_method_t *m,
                                       const bt_rpc_server_t *srv)
{
    return m->max_message != 0 && m->max_message < srv->max_message
           ? m->max_message : srv->max_message;
}

#endif
