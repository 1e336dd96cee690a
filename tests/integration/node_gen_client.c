/* Test client for the node integration test: one Generate call on the
 * router's gRPC API with a pre-tokenized prompt; prints the token ids
 * ("tokens: 1 2 3"), the finish reason and the usage on stdout.
 *
 *   node_gen_client TARGET MODEL IDS MAX_TOKENS [TEMPERATURE SEED [LOGPROBS]]
 *   node_gen_client --decode NODE_TARGET IDS MAX_TOKENS LEASE_MS
 *
 * LOGPROBS n >= 0 asks for each token's logprob and n alternatives
 * (logprobs_chosen, logprobs = n) and prints one line per token as
 * baton-run --logprobs does ("logprobs I: ID LP [ID:LP, ...]", 17 digits),
 * after checking that every message has one per token id for that id.
 *
 * The second form opens DecodeStream on a decode node directly and never
 * prefills: it prints "reservation: N blocks" and the call's end code.
 * Exit 0 when the call ended OK with a final message. The call's 30 s
 * deadline scales with BATON_TEST_TIME_SCALE (tests/test_time.h); LEASE_MS
 * does not. */
#include "base/loop.h"
#include "generate.pb-c.h"
#include "node.pb-c.h"
#include "rpc/client.h"
#include "test_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    struct event_base *base;
    uint32_t           toks[4096];
    size_t             n;
    bool               want_lp;
    bool               lp_bad;      /* a message without one per token */
    char              *lp_lines;    /* printed logprobs lines */
    size_t             lp_len, lp_cap;
    int                finish;
    unsigned           prompt_tokens, completion_tokens, cached_tokens;
    long               resv_blocks;
    bool               final;
    int                code;
    char               msg[256];
} gen_t;

static void on_msg(void *arg, const ProtobufCMessage *m)
{
    gen_t *g = arg;
    const Baton__V1__GenerateResponse *r = (const Baton__V1__GenerateResponse *)m;

    if (g->want_lp && r->n_logprobs != r->n_token_ids) {
        g->lp_bad = true;
    }
    for (size_t i = 0; i < r->n_token_ids && g->n < 4096; i++) {
        if (g->want_lp && i < r->n_logprobs) {
            const Baton__V1__TokenLogprobs *lp = r->logprobs[i];
            char line[2048];
            int k;

            if (lp->token_id != r->token_ids[i]) {
                g->lp_bad = true;
            }
            k = snprintf(line, sizeof(line), "logprobs %zu: %u %.17g [", g->n,
                         lp->token_id, (double)lp->logprob);
            for (size_t t = 0; t < lp->n_top && k < (int)sizeof(line) - 64; t++) {
                k += snprintf(line + k, sizeof(line) - (size_t)k,
                              t ? ", %u:%.17g" : "%u:%.17g",
                              lp->top[t]->token_id, (double)lp->top[t]->logprob);
            }
            k += snprintf(line + k, sizeof(line) - (size_t)k, "]\n");
            if (g->lp_len + (size_t)k + 1 > g->lp_cap) {
                size_t cap = (g->lp_len + (size_t)k + 1) * 2;
                char *p = realloc(g->lp_lines, cap);

                if (p == NULL) {
                    g->lp_bad = true;
                    continue;
                }
                g->lp_lines = p;
                g->lp_cap = cap;
            }
            memcpy(g->lp_lines + g->lp_len, line, (size_t)k + 1);
            g->lp_len += (size_t)k;
        }
        g->toks[g->n++] = r->token_ids[i];
    }
    if (r->final != NULL) {
        g->final = true;
        g->finish = (int)r->final->finish_reason;
        if (r->final->usage != NULL) {
            g->prompt_tokens = r->final->usage->prompt_tokens;
            g->completion_tokens = r->final->usage->completion_tokens;
            g->cached_tokens = r->final->usage->cached_tokens;
        }
    }
}

static void on_decode_msg(void *arg, const ProtobufCMessage *m)
{
    gen_t *g = arg;
    const Baton__V1__DecodeResponse *r = (const Baton__V1__DecodeResponse *)m;

    if (r->kind_case == BATON__V1__DECODE_RESPONSE__KIND_RESERVATION) {
        g->resv_blocks = (long)r->reservation->n_block_ids;
    }
}

static void on_done(void *arg, const bt_rpc_result_t *res)
{
    gen_t *g = arg;

    g->code = (int)res->code;
    snprintf(g->msg, sizeof(g->msg), "%s", res->message);
    event_base_loopexit(g->base, NULL);
}

static uint32_t prompt[4096];

static size_t parse_ids(char *p)
{
    size_t n = 0;

    while (*p != '\0' && n < 4096) {
        prompt[n++] = (uint32_t)strtoul(p, &p, 10);
        while (*p == ',' || *p == ' ') {
            p++;
        }
    }
    return n;
}

static int decode_only(char **argv)
{
    Baton__V1__DecodeRequest req = BATON__V1__DECODE_REQUEST__INIT;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    Baton__V1__TenantInfo tenant = BATON__V1__TENANT_INFO__INIT;
    bt_rpc_call_opts_t opts = { bt_test_scaled_ms(30000), NULL, 0 };
    static uint8_t root[32];
    bt_rpc_client_t *cli;
    bt_rpc_auth_t *auth = NULL;
    char aerr[256];
    bt_rpc_channel_t *ch;
    gen_t g;

    memset(&g, 0, sizeof(g));
    g.resv_blocks = -1;
    req.token_ids = prompt;
    req.n_token_ids = parse_ids(argv[3]);
    sp.max_tokens = atoi(argv[4]);
    req.lease_ms = (uint32_t)atoi(argv[5]);
    req.request_id = "decode-only";
    req.sampling = &sp;
    tenant.root_hash.data = root;
    tenant.root_hash.len = sizeof(root);
    req.tenant = &tenant;
    /* the node admits the router's role only: the token of
     * BATON_CLUSTER_TOKEN_FILE when the cluster has tokens */
    if (bt_rpc_auth_load_env(&auth, aerr, sizeof(aerr)) != BT_OK) {
        fprintf(stderr, "%s\n", aerr);
        return 1;
    }
    g.base = bt_loop_create();
    cli = bt_rpc_client_create(g.base, NULL);
    if (cli != NULL) {
        bt_rpc_client_set_token(cli, bt_rpc_auth_token(auth));
    }
    ch = cli != NULL ? bt_rpc_channel_create(cli, argv[2], NULL) : NULL;
    if (ch == NULL ||
        bt_rpc_client_stream(ch, "/baton.v1.Decode/DecodeStream", &req.base,
                             &baton__v1__decode_response__descriptor, &opts,
                             on_decode_msg, on_done, &g, NULL) != BT_OK) {
        fprintf(stderr, "cannot call %s\n", argv[2]);
        return 1;
    }
    event_base_dispatch(g.base);
    printf("reservation: %ld blocks\ncode: %d %s\n", g.resv_blocks, g.code,
           g.msg);
    bt_rpc_channel_destroy(ch);
    bt_rpc_client_destroy(cli);
    bt_rpc_auth_destroy(auth);
    event_base_free(g.base);
    return 0;
}

int main(int argc, char **argv)
{
    Baton__V1__GenerateRequest req = BATON__V1__GENERATE_REQUEST__INIT;
    Baton__V1__TokenIds ids = BATON__V1__TOKEN_IDS__INIT;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    bt_rpc_call_opts_t opts = { bt_test_scaled_ms(30000), NULL, 0 };
    bt_rpc_client_t *cli;
    bt_rpc_channel_t *ch;
    gen_t g;

    if (argc >= 6 && strcmp(argv[1], "--decode") == 0) {
        return decode_only(argv);
    }
    if (argc < 5) {
        fprintf(stderr, "usage: %s TARGET MODEL IDS MAX_TOKENS [TEMP SEED "
                "[LOGPROBS]]\n",
                argv[0]);
        return 2;
    }
    memset(&g, 0, sizeof(g));
    ids.n_ids = parse_ids(argv[3]);
    ids.ids = prompt;
    sp.max_tokens = atoi(argv[4]);
    sp.ignore_eos = true;
    if (argc >= 7) {
        sp.temperature = (float)atof(argv[5]);
        sp.seed_opt_case = BATON__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
        sp.seed = strtoull(argv[6], NULL, 10);
    }
    if (argc >= 8 && atoi(argv[7]) >= 0) {
        g.want_lp = true;
        sp.logprobs_chosen = true;
        sp.logprobs = atoi(argv[7]);
    }
    req.model = argv[2];
    req.input_case = BATON__V1__GENERATE_REQUEST__INPUT_TOKENS;
    req.tokens = &ids;
    req.sampling = &sp;
    g.base = bt_loop_create();
    cli = bt_rpc_client_create(g.base, NULL);
    ch = cli != NULL ? bt_rpc_channel_create(cli, argv[1], NULL) : NULL;
    if (ch == NULL ||
        bt_rpc_client_stream(ch, "/baton.v1.Generate/Generate", &req.base,
                             &baton__v1__generate_response__descriptor, &opts,
                             on_msg, on_done, &g, NULL) != BT_OK) {
        fprintf(stderr, "cannot call %s\n", argv[1]);
        return 1;
    }
    event_base_dispatch(g.base);
    printf("tokens:");
    for (size_t i = 0; i < g.n; i++) {
        printf(" %u", g.toks[i]);
    }
    printf("\nfinish: %d\nusage: %u %u %u\n", g.finish, g.prompt_tokens,
           g.completion_tokens, g.cached_tokens);
    if (g.want_lp) {
        printf("%s", g.lp_lines != NULL ? g.lp_lines : "");
        if (g.lp_bad) {
            printf("error: logprobs missing or not one per token\n");
        }
    }
    free(g.lp_lines);
    if (g.code != 0) {
        printf("error: code %d %s\n", g.code, g.msg);
    }
    bt_rpc_channel_destroy(ch);
    bt_rpc_client_destroy(cli);
    event_base_free(g.base);
    return g.code == 0 && g.final && !g.lp_bad ? 0 : 1;
}
