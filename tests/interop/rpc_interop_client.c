/* A common/rpc client against a server we did not write (the Python grpcio
 * server of test_rpc_interop.py): unary, server streaming and a deadline.
 * Prints one line per check; exits 0 when all pass.
 *   rpc_interop_client TARGET */
#include "base/clock.h"
#include "base/log.h"
#include "base/loop.h"
#include "generate.pb-c.h"
#include "rpc/client.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    bool          done;
    bt_rpc_code_t code;
    char          message[128];
    uint32_t      ids[16];
    size_t        n_ids;
    int           n_msgs;
    int           n_final;
    uint32_t      final_tokens;
} out_t;

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static bool run_until(struct event_base *base, const bool *flag, uint64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    struct event *t = evtimer_new(base, on_timeout, base);

    evtimer_add(t, &tv);
    while (!*flag && evtimer_pending(t, NULL)) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(t);
    return *flag;
}

static void unary_done(void *arg, const bt_rpc_result_t *res,
                       const ProtobufCMessage *resp)
{
    out_t *o = arg;

    o->done = true;
    o->code = res->code;
    snprintf(o->message, sizeof(o->message), "%s", res->message);
    if (resp != NULL) {
        const Baton__V1__TokenizeResponse *r = (const void *)resp;

        o->n_ids = r->n_token_ids < 16 ? r->n_token_ids : 16;
        for (size_t i = 0; i < o->n_ids; i++) {
            o->ids[i] = r->token_ids[i];
        }
    }
}

static void stream_msg(void *arg, const ProtobufCMessage *msg)
{
    out_t *o = arg;
    const Baton__V1__GenerateResponse *r = (const void *)msg;

    if (r->final != NULL) {
        o->n_final++;
        o->final_tokens = r->final->usage != NULL
                              ? r->final->usage->completion_tokens : 0;
    } else {
        o->n_msgs++;
    }
}

static void stream_done(void *arg, const bt_rpc_result_t *res)
{
    out_t *o = arg;

    o->done = true;
    o->code = res->code;
}

static bool tokenize(bt_rpc_channel_t *ch, struct event_base *base,
                     const char *prompt, uint64_t timeout_ms, out_t *o)
{
    Baton__V1__TokenizeRequest req = BATON__V1__TOKENIZE_REQUEST__INIT;
    const bt_rpc_md_t md[] = { { "authorization", "Bearer interop" } };
    bt_rpc_call_opts_t opts = { timeout_ms, md, 1 };

    memset(o, 0, sizeof(*o));
    req.model = "echo";
    req.input_case = BATON__V1__TOKENIZE_REQUEST__INPUT_PROMPT;
    req.prompt = (char *)prompt;
    return bt_rpc_client_unary(ch, "/baton.v1.Generate/Tokenize", &req.base,
                               &baton__v1__tokenize_response__descriptor,
                               &opts, unary_done, o, NULL) == BT_OK &&
           run_until(base, &o->done, timeout_ms + 5000);
}

int main(int argc, char **argv)
{
    struct event_base *base;
    bt_rpc_client_t *cli;
    bt_rpc_channel_t *ch;
    Baton__V1__GenerateRequest greq = BATON__V1__GENERATE_REQUEST__INIT;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    out_t o;
    uint64_t t0;
    int failed = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s TARGET\n", argv[0]);
        return 2;
    }
    bt_log_init("rpc-interop-client", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    base = bt_loop_create();
    cli = bt_rpc_client_create(base, NULL);
    ch = bt_rpc_channel_create(cli, argv[1], NULL);
    if (ch == NULL) {
        return 1;
    }

    if (!tokenize(ch, base, "hey", 5000, &o) || o.code != BT_RPC_OK ||
        o.n_ids != 3 || o.ids[0] != 'h' || o.ids[2] != 'y') {
        printf("FAIL unary: code %s n_ids %zu\n", bt_rpc_code_name(o.code),
               o.n_ids);
        failed++;
    } else {
        printf("ok unary\n");
    }

    memset(&o, 0, sizeof(o));
    greq.input_case = BATON__V1__GENERATE_REQUEST__INPUT_PROMPT;
    greq.prompt = "p";
    sp.max_tokens = 50;
    greq.sampling = &sp;
    if (bt_rpc_client_stream(ch, "/baton.v1.Generate/Generate", &greq.base,
                             &baton__v1__generate_response__descriptor,
                             &(bt_rpc_call_opts_t){ .timeout_ms = 10000 },
                             stream_msg, stream_done, &o, NULL) != BT_OK ||
        !run_until(base, &o.done, 15000) || o.code != BT_RPC_OK ||
        o.n_msgs != 50 || o.n_final != 1 || o.final_tokens != 50) {
        printf("FAIL stream: code %s msgs %d final %d\n",
               bt_rpc_code_name(o.code), o.n_msgs, o.n_final);
        failed++;
    } else {
        printf("ok stream\n");
    }

    t0 = bt_now_ms();
    if (!tokenize(ch, base, "sleep", 200, &o) ||
        o.code != BT_RPC_DEADLINE_EXCEEDED || bt_now_ms() - t0 > 2000) {
        printf("FAIL deadline: code %s after %lu ms\n", bt_rpc_code_name(o.code),
               (unsigned long)(bt_now_ms() - t0));
        failed++;
    } else {
        printf("ok deadline (%lu ms)\n", (unsigned long)(bt_now_ms() - t0));
    }

    if (!tokenize(ch, base, "fail", 5000, &o) || o.code != BT_RPC_NOT_FOUND ||
        strcmp(o.message, "no such model") != 0) {
        printf("FAIL error status: code %s message '%s'\n",
               bt_rpc_code_name(o.code), o.message);
        failed++;
    } else {
        printf("ok error status\n");
    }

    bt_rpc_client_destroy(cli);
    event_base_free(base);
    return failed == 0 ? 0 : 1;
}
