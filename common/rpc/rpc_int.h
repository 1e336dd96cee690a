/* What only common/rpc uses: the completion-queue bridge, tags, codec and
 * credentials. */
#ifndef BT_RPC_INT_H
#define BT_RPC_INT_H

#include "rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>

#include <event2/event.h>
#include <pthread.h>

/* Every operation handed to gRPC carries a tag embedded in the object it
 * belongs to; the bridge calls `cb` on the loop thread when it completes. */
typedef struct bt_rpc_tag bt_rpc_tag_t;
typedef void (*bt_rpc_tag_cb)(bt_rpc_tag_t *tag, bool ok);
struct bt_rpc_tag {
    bt_rpc_tag_cb cb;
};

#define BT_RPC_CONTAINER_OF(_ptr, _type, _member) \
    ((_type *)(void *)((char *)(_ptr) - offsetof(_type, _member)))

/* One completion queue, the thread that blocks in
 * grpc_completion_queue_next() on it, and the locked queue + eventfd that
 * bring its tags to the loop. */
typedef struct bt_rpc_event {
    bt_rpc_tag_t *tag;
    bool          ok;
} bt_rpc_event_t;

typedef struct {
    grpc_completion_queue *cq;
    pthread_t              thread;
    bool                   thread_started;
    pthread_mutex_t        lock;
    pthread_cond_t         cond;     /* signalled with every push (sync waits) */
    bt_rpc_event_t        *items;    /* pushed by the cq thread */
    size_t                 n_items;
    size_t                 cap_items;
    bool                   cq_done;  /* GRPC_QUEUE_SHUTDOWN seen */
    int                    efd;
    struct event          *ev;
} bt_rpc_bridge_t;

bt_status_t bt_rpc_bridge_init(bt_rpc_bridge_t *br, struct event_base *base);
/* Shuts the cq down, joins the thread after GRPC_QUEUE_SHUTDOWN, runs the
 * tags still queued, destroys the cq. Only once every operation is back. */
void bt_rpc_bridge_cleanup(bt_rpc_bridge_t *br);
/* Dispatches queued tags on the calling (loop) thread, waiting up to
 * `wait_ms` for at least one; returns how many ran. For synchronous
 * teardown only. */
size_t bt_rpc_bridge_run(bt_rpc_bridge_t *br, uint64_t wait_ms);

/* protobuf-c <-> byte buffer. pack: NULL and *status_p = BT_ERR_TOO_LARGE
 * over `max`. unpack: NULL on a decode error or over `max` (the reason in
 * *status_p). */
grpc_byte_buffer *bt_rpc_pack(const ProtobufCMessage *msg, size_t max,
                              bt_status_t *status_p);
ProtobufCMessage *bt_rpc_unpack(grpc_byte_buffer *bb,
                                const ProtobufCMessageDescriptor *desc,
                                size_t max, bt_status_t *status_p);

/* Deadlines for gRPC. */
gpr_timespec bt_rpc_deadline_from_ms(uint64_t timeout_ms);

/* Credentials from PEM files; NULL on failure (logged). */
grpc_server_credentials *bt_rpc_server_creds_create(const bt_rpc_tls_t *tls);
grpc_channel_credentials *bt_rpc_channel_creds_create(const bt_rpc_tls_t *tls);

/* Health service (health.c), installed by server.c. */
typedef struct bt_rpc_health bt_rpc_health_t;
struct bt_rpc_server;
bt_status_t bt_rpc_health_install(struct bt_rpc_server *srv,
                                  bt_rpc_health_t **health_p);
void bt_rpc_health_set(bt_rpc_health_t *health, const char *service,
                       bool serving);
/* NOT_SERVING everywhere and end every Watch (shutdown). */
void bt_rpc_health_shutdown(bt_rpc_health_t *health);
void bt_rpc_health_destroy(bt_rpc_health_t *health);

#endif
