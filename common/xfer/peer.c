/* The endpoint cache: one endpoint per peer worker address, created with
 * peer error handling; the lanes UCX chose; failure and reconnect. */
#include "xfer_int.h"

#include "base/array.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bt_xfer_mode_t bt_xfer_peer_mode(const bt_xfer_peer_t *peer)
{
    if (peer->mode_cfg != BT_XFER_MODE_AUTO) {
        return peer->mode_cfg;
    }
    return peer->has_rma ? BT_XFER_MODE_PUT : BT_XFER_MODE_AM;
}

/* An endpoint set aside failed: closed at the next cleanup. */
static void stale_failed(bt_xfer_peer_t *peer, ucp_ep_h ep)
{
    for (size_t i = 0; i < peer->n_stale; i++) {
        if (peer->stale[i].ep == ep) {
            peer->stale[i].failed = true;
            peer->ctx->peer_failed = true;
            bt_xfer_ctx_kick(peer->ctx);
            return;
        }
    }
}

static void ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    bt_xfer_peer_t *peer = arg;

    if (peer->ep != ep) {
        stale_failed(peer, ep);   /* or an older one already closed */
        return;
    }
    peer->abandon = false;   /* failed anyway: the usual forced close */
    bt_warn("xfer peer %s/%016llx failed: %s", peer->host,
            (unsigned long long)peer->owner_id, ucs_status_string(status));
    bt_xfer_peer_fail(peer, bt_xfer_status_from_ucs(status) == BT_ERR_CANCELLED
                                ? BT_ERR_PEER_DIED
                                : bt_xfer_status_from_ucs(status));
}

void bt_xfer_peer_fail(bt_xfer_peer_t *peer, bt_status_t status)
{
    if (!bt_status_is_peer_err(status)) {
        status = BT_ERR_PEER_DIED;
    }
    peer->failed = true;
    peer->fail_status = status;
    peer->last_error = status;
    peer->ctx->peer_failed = true;
    /* Cleanup runs after the worker returns from progress: UCX must not
     * see its endpoint closed from inside its own callback. */
    bt_xfer_ctx_kick(peer->ctx);
}

void bt_xfer_peer_reset(bt_xfer_peer_t *peer)
{
    peer->n_resets++;
    peer->abandon = true;
    bt_xfer_peer_fail(peer, BT_ERR_PEER_UNREACHABLE);
}

static void close_force(bt_xfer_ctx_t *ctx, ucp_ep_h ep)
{
    ucp_request_param_t p;
    void *req;

    memset(&p, 0, sizeof(p));
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    req = ucp_ep_close_nbx(ep, &p);
    if (UCS_PTR_IS_PTR(req)) {
        bt_xfer_ctx_closing_add(ctx, req);
    }
}

static void ep_close_force(bt_xfer_peer_t *peer)
{
    if (peer->ep != NULL) {
        close_force(peer->ctx, peer->ep);
        peer->ep = NULL;
    }
}

/* The stall reset: what is queued on the endpoint may still go out when
 * the link heals (the receiver's admit check refuses it once the lease
 * is gone); a new endpoint carries what comes next. */
static void ep_set_aside(bt_xfer_peer_t *peer)
{
    if (peer->ep == NULL) {
        return;
    }
    if (BT_ARRAY_RESERVE(peer->stale, peer->cap_stale, peer->n_stale + 1,
                         4) != BT_OK) {
        ep_close_force(peer);
        return;
    }
    peer->stale[peer->n_stale++] = (bt_xfer_stale_ep_t){peer->ep, false};
    peer->refs++;
    peer->ep = NULL;
}

/* Closes the endpoints set aside that UCX reported failed; true when it
 * dropped references (the peer may be gone). */
static bool stale_reap(bt_xfer_peer_t *peer)
{
    size_t j = 0, n_closed = 0;

    for (size_t i = 0; i < peer->n_stale; i++) {
        if (peer->stale[i].failed) {
            close_force(peer->ctx, peer->stale[i].ep);
            n_closed++;
        } else {
            peer->stale[j++] = peer->stale[i];
        }
    }
    peer->n_stale = j;
    for (size_t i = 0; i < n_closed; i++) {
        bt_xfer_peer_unref(peer);
    }
    return n_closed > 0;
}

void bt_xfer_peers_cleanup_failed(bt_xfer_ctx_t *ctx)
{
    bt_list_t *l;

    ctx->peer_failed = false;
restart:
    for (l = ctx->peers.next; l != &ctx->peers; l = l->next) {
        bt_xfer_peer_t *peer = BT_CONTAINER_OF(l, bt_xfer_peer_t, link);

        if (stale_reap(peer)) {
            goto restart;
        }
        if (!peer->failed) {
            continue;
        }
        /* Fail exactly the transfers that involve this peer. A callback
         * may drop the last reference, so hold one meanwhile. */
        peer->refs++;
        while (!bt_list_empty(&peer->ops)) {
            bt_xfer_op_t *op = BT_CONTAINER_OF(peer->ops.next,
                                                 bt_xfer_op_t, link);
            bt_xfer_op_finish(op, peer->fail_status);
        }
        /* A forced close completes the requests reported ops still hold
         * and stops the worker from reporting BUSY forever on a dead shm
         * peer (TOOLCHAIN.md). */
        if (peer->abandon) {
            ep_set_aside(peer);
            peer->abandon = false;
        } else {
            ep_close_force(peer);
        }
        peer->failed = false;      /* the next use reconnects */
        bt_xfer_peer_unref(peer);
        /* Callbacks may have changed the list: scan again. */
        goto restart;
    }
}

/* Reads ucp_ep_print_info: the transport of each lane, and whether a put
 * lane is truly one-sided: UCX 1.13 lists RMA lanes as "put[N]" and
 * leaves them out where it emulates puts with active messages (tcp). */
#define LANES_MAX 16

static void lanes_detect(bt_xfer_peer_t *peer)
{
    char *text = NULL, *line, *save = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    char tl[LANES_MAX][16];

    memset(tl, 0, sizeof(tl));
    peer->has_rma = false;
    peer->lanes[0] = '\0';
    if (f == NULL) {
        return;
    }
    ucp_ep_print_info(peer->ep, f);
    fclose(f);
    if (text == NULL) {
        return;
    }
    bt_debug("xfer endpoint to %s:\n%s", peer->host, text);
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *p;
        unsigned idx;

        if ((p = strstr(line, "lane[")) != NULL &&
            sscanf(p, "lane[%u]:", &idx) == 1 && idx < LANES_MAX) {
            /* "lane[0]:  3:sysv/memory.0 md[2] ..." */
            char *c = strchr(p, ':');
            char *colon = c ? strchr(c + 1, ':') : NULL;
            char *slash = colon ? strchr(colon, '/') : NULL;
            size_t n = slash ? (size_t)(slash - colon - 1) : 0;

            if (n > 0 && n < sizeof(tl[idx])) {
                memcpy(tl[idx], colon + 1, n);
                if (strstr(peer->lanes, tl[idx]) == NULL &&
                    strlen(peer->lanes) + n + 2 < sizeof(peer->lanes)) {
                    if (peer->lanes[0] != '\0') {
                        strcat(peer->lanes, " ");
                    }
                    strcat(peer->lanes, tl[idx]);
                }
            }
        } else if ((p = strstr(line, "put[")) != NULL &&
                   sscanf(p, "put[%u]", &idx) == 1 && idx < LANES_MAX &&
                   tl[idx][0] != '\0' && strcmp(tl[idx], "tcp") != 0 &&
                   strcmp(tl[idx], "self") != 0) {
            peer->has_rma = true;
        }
    }
    free(text);
}

bt_status_t bt_xfer_peer_connect(bt_xfer_peer_t *peer)
{
    bt_xfer_ctx_t *ctx = peer->ctx;
    ucp_ep_params_t ep;
    ucs_status_t st;

    if (peer->ep != NULL) {
        return peer->failed ? peer->fail_status : BT_OK;
    }
    memset(&ep, 0, sizeof(ep));
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                    UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = (const ucp_address_t *)peer->addr;
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = ep_err_cb;
    ep.err_handler.arg = peer;
    st = ucp_ep_create(ctx->worker, &ep, &peer->ep);
    if (st != UCS_OK) {
        peer->ep = NULL;
        peer->last_error = BT_ERR_PEER_UNREACHABLE;
        bt_error("xfer cannot reach peer %s/%016llx: %s", peer->host,
                 (unsigned long long)peer->owner_id, ucs_status_string(st));
        return BT_ERR_PEER_UNREACHABLE;
    }
    peer->gen++;
    peer->ep_ok = false;
    lanes_detect(peer);
    if (ctx->params.log_lanes) {
        bt_info("xfer endpoint to %s/%016llx lanes %s mode %s", peer->host,
                (unsigned long long)peer->owner_id,
                peer->lanes[0] ? peer->lanes : "?",
                bt_xfer_peer_mode(peer) == BT_XFER_MODE_PUT ? "put" : "am");
    }
    if (peer->same_host && strstr(peer->lanes, "posix") == NULL &&
        strstr(peer->lanes, "sysv") == NULL &&
        bt_xfer_tls_may_use(bt_xfer_shm_names)) {
        bt_warn("xfer WARNING: peer %s is on this host but UCX chose lanes "
                "'%s', not shared memory: transfers will be ~50x slower; "
                "check UCX_TLS and UCX_POSIX_ERROR_HANDLING/"
                "UCX_SYSV_ERROR_HANDLING=y", peer->host, peer->lanes);
    }
    return BT_OK;
}

bt_status_t bt_xfer_peer_get(bt_xfer_ctx_t *ctx, const bt_xfer_desc_t *d,
                             bt_xfer_peer_t **peer_p)
{
    bt_xfer_peer_t *peer;
    bt_status_t st;

    for (bt_list_t *l = ctx->peers.next; l != &ctx->peers; l = l->next) {
        peer = BT_CONTAINER_OF(l, bt_xfer_peer_t, link);
        if (peer->addr_len == d->addr_len &&
            memcmp(peer->addr, d->addr, d->addr_len) == 0) {
            st = bt_xfer_peer_connect(peer);
            if (st != BT_OK) {
                return st;
            }
            peer->refs++;
            *peer_p = peer;
            return BT_OK;
        }
    }
    peer = calloc(1, sizeof(*peer));
    if (peer == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    peer->addr = malloc(d->addr_len);
    if (peer->addr == NULL) {
        free(peer);
        return BT_ERR_NO_MEMORY;
    }
    memcpy(peer->addr, d->addr, d->addr_len);
    peer->addr_len = d->addr_len;
    peer->ctx = ctx;
    peer->mode_cfg = ctx->params.mode;
    peer->owner_id = d->owner_id;
    snprintf(peer->host, sizeof(peer->host), "%.*s", (int)d->host_len,
             d->host_len ? d->host : "?");
    peer->same_host = d->host_len == strlen(ctx->host) &&
                      memcmp(d->host, ctx->host, d->host_len) == 0;
    bt_list_init(&peer->ops);
    st = bt_xfer_peer_connect(peer);
    if (st != BT_OK) {
        free(peer->addr);
        free(peer);
        return st;
    }
    peer->refs = 1;
    bt_list_add_tail(&ctx->peers, &peer->link);
    *peer_p = peer;
    return BT_OK;
}

void bt_xfer_peer_destroy(bt_xfer_peer_t *peer)
{
    bt_list_del(&peer->link);
    ep_close_force(peer);
    for (size_t i = 0; i < peer->n_stale; i++) {
        close_force(peer->ctx, peer->stale[i].ep);
    }
    free(peer->stale);
    free(peer->addr);
    free(peer);
}

/* Healthy peers stay cached for reuse; a peer with no user left whose
 * endpoint failed is dropped (a restarted process has a new address). */
void bt_xfer_peer_unref(bt_xfer_peer_t *peer)
{
    if (--peer->refs > 0) {
        return;
    }
    if (peer->ep == NULL) {
        bt_xfer_peer_destroy(peer);
    }
}
