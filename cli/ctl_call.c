/* One unary call on a private libevent loop: start it, run the loop until
 * the done callback, then tear everything down. The response is borrowed
 * for the callback only, so it is turned into JSON there. */
#include "ctl.h"

#include "base/loop.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    struct event_base *base;
    bool               done;
    bt_rpc_code_t      code;
    char               message[512];
    json_t            *resp;
} ctl_wait_t;

static void ctl_call_done(void *arg, const bt_rpc_result_t *result,
                          const ProtobufCMessage *resp)
{
    ctl_wait_t *w = arg;

    w->done = true;
    w->code = result->code;
    snprintf(w->message, sizeof(w->message), "%s", result->message);
    if (result->code == BT_RPC_OK && resp != NULL) {
        w->resp = ctl_json_from_msg(resp);
        if (w->resp == NULL) {
            w->code = BT_RPC_INTERNAL;
            snprintf(w->message, sizeof(w->message), "out of memory");
        }
    }
    event_base_loopbreak(w->base);
}

/* Last resort should the done callback never come: gRPC's own deadline
 * fires first, this one a few seconds later. */
static void ctl_call_guard(evutil_socket_t fd, short what, void *arg)
{
    ctl_wait_t *w = arg;

    (void)fd;
    (void)what;
    event_base_loopbreak(w->base);
}

static void ctl_call_report(const ctl_t *ctl, bt_rpc_code_t code,
                            const char *message)
{
    if (code == BT_RPC_UNIMPLEMENTED) {
        fprintf(stderr, "batonctl: %s: UNIMPLEMENTED: the router does not "
                        "support %s yet%s%s%s\n", ctl->cmd, ctl->what,
                message[0] ? " (router: " : "", message, message[0] ? ")" : "");
        return;
    }
    fprintf(stderr, "batonctl: %s: %s: %s\n", ctl->cmd, bt_rpc_code_name(code),
            message[0] ? message : "(no message)");
}

int ctl_exit_for(bt_rpc_code_t code)
{
    /* no answer at all (refused, TLS failed, silent past the deadline) is
     * told apart from an answer that says no: scripts retry only the first */
    return code == BT_RPC_OK ? CTL_EXIT_OK
           : code == BT_RPC_UNAVAILABLE || code == BT_RPC_DEADLINE_EXCEEDED
               ? CTL_EXIT_UNREACHABLE : CTL_EXIT_FAIL;
}

bt_rpc_code_t ctl_call(ctl_t *ctl, const char *method,
                       const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc,
                       json_t **resp_p)
{
    ctl_wait_t w;
    bt_rpc_client_t *cli = NULL;
    bt_rpc_channel_t *ch = NULL;
    struct event *guard = NULL;
    struct timeval tv;
    bt_status_t s;
    char bearer[600];
    bt_rpc_md_t md = { "authorization", NULL };

    memset(&w, 0, sizeof(w));
    w.code = BT_RPC_INTERNAL;
    w.base = bt_loop_create();
    if (w.base == NULL) {
        snprintf(w.message, sizeof(w.message), "cannot create the event loop");
        goto out;
    }
    cli = bt_rpc_client_create(w.base, NULL);
    ch = cli ? bt_rpc_channel_create(cli, ctl->cfg.router,
                                     bt_rpc_tls_cfg_client(&ctl->cfg.tls))
             : NULL;
    guard = evtimer_new(w.base, ctl_call_guard, &w);
    if (ch == NULL || guard == NULL) {
        snprintf(w.message, sizeof(w.message), "cannot create a channel to '%s'",
                 ctl->cfg.router);
        goto out;
    }
    if (ctl->cfg.api_key != NULL && ctl->cfg.api_key[0] != '\0') {
        snprintf(bearer, sizeof(bearer), "Bearer %s", ctl->cfg.api_key);
        md.value = bearer;
    }
    s = bt_rpc_client_unary(ch, method, req, resp_desc,
                            &(bt_rpc_call_opts_t){
                                .timeout_ms = (uint64_t)ctl->call_ms,
                                .md = &md, .n_md = md.value != NULL ? 1 : 0 },
                            ctl_call_done, &w, NULL);
    if (s != BT_OK) {
        snprintf(w.message, sizeof(w.message), "cannot start the call: %s",
                 bt_status_str(s));
        goto out;
    }
    tv.tv_sec = (time_t)(ctl->call_ms / 1000) + 5;
    tv.tv_usec = (suseconds_t)(ctl->call_ms % 1000) * 1000;
    evtimer_add(guard, &tv);
    event_base_dispatch(w.base);
    if (!w.done) {
        w.code = BT_RPC_DEADLINE_EXCEEDED;
        snprintf(w.message, sizeof(w.message), "no answer from %s", ctl->cfg.router);
    }

out:
    if (guard != NULL) {
        event_free(guard);
    }
    /* a call still in flight ends (CANCELLED) inside client_destroy */
    bt_rpc_channel_destroy(ch);
    bt_rpc_client_destroy(cli);
    if (w.base != NULL) {
        event_base_free(w.base);
    }
    if (w.code != BT_RPC_OK) {
        ctl_call_report(ctl, w.code, w.message);
        json_decref(w.resp);
        return w.code;
    }
    *resp_p = w.resp;
    return BT_RPC_OK;
}
