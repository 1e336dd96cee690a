/* Test client for node_faults.py: plays the router's part of one request
 * against a decode node and a prefill node directly, so a test controls
 * what a router would do at its own pace: reserve (DecodeStream), renew
 * the lease while "the prefill is queued", call Prefill with the
 * reservation, collect the stream.
 *
 *   node_pd_client DECODE PREFILL IDS MAX_TOKENS LEASE_MS
 *                  [--wait MS] [--renew MS] [--retry-s S] [--probe]
 *                  [--cancel-prefill]
 *
 * --wait MS      call Prefill MS after the reservation (default 0); not at
 *                all when the decode stream ended before
 * --renew MS     RenewLease every MS (lease_ms = LEASE_MS) until the
 *                prefill answered
 * --retry-s S    a reservation refused RESOURCE_EXHAUSTED is asked again
 *                every 50 ms for up to S seconds
 * --probe        RenewLease with a wrong lease id, with the wrong request
 *                id, at the first token (admitted) and once the stream
 *                ended: prints their codes
 * --cancel-prefill  cancel the Prefill call when the decode stream fails
 *                (what the router does)
 *
 * Prints, as they happen: "reserved: N blocks", "probe: BOGUS WRONG_ID",
 * "renewed: K" (when the prefill starts), "decode-end: CODE MSG", "prefill-end: CODE MSG",
 * "probe-admitted: CODE EXPIRY", "probe-after: CODE", then "renewed-admitted: K" (renewals answered
 * with expiry 0: the KV had arrived) and "tokens: ...". Exit 0 when the stream ended OK
 * with a final message. Greedy, ignore_eos. The calls' deadlines scale with
 * BATON_TEST_TIME_SCALE (tests/test_time.h); LEASE_MS, --wait and --renew
 * do not: they are the behaviour under test. */
#include "base/clock.h"
#include "base/loop.h"
#include "node.pb-c.h"
#include "rpc/client.h"
#include "test_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    struct event_base      *base;
    bt_rpc_channel_t       *dch, *pch;
    bt_rpc_client_call_t   *dcall, *pcall;
    uint32_t                ids[4096];
    size_t                  n_ids;
    uint32_t                max_tokens, lease_ms;
    long                    wait_ms, renew_ms;
    double                  retry_until;
    bool                    probe, cancel_prefill;
    char                    rid[64];
    uint8_t                 root[32];
    Baton__V1__Reservation *resv;        /* unpacked copy */
    struct event           *renew_ev, *prefill_ev, *retry_ev;
    bool                    decode_done, prefill_started, prefill_done;
    bool                    final;
    int                     pending_probes;
    int                     probe_codes[2];
    unsigned                renewed;
    unsigned                renewed_admitted;  /* answered expiry 0 */
    uint32_t                toks[8192];
    size_t                  n_toks;
    int                     code;
} pd_t;

static void pd_maybe_exit(pd_t *pd)
{
    if (pd->decode_done && (!pd->prefill_started || pd->prefill_done) &&
        pd->pending_probes == 0) {
        event_base_loopexit(pd->base, NULL);
    }
}

static void pd_sampling(Baton__V1__SamplingParams *sp, uint32_t max_tokens)
{
    sp->max_tokens = max_tokens;
    sp->ignore_eos = true;
}

static void pd_tenant(pd_t *pd, Baton__V1__TenantInfo *t)
{
    t->root_hash.data = pd->root;
    t->root_hash.len = sizeof(pd->root);
}

/* --- RenewLease ---------------------------------------------------- */

typedef struct {
    pd_t *pd;
    int   slot;        /* probe index, -1: a renewal, 2: after the end */
} renew_ctx_t;

static void pd_renew_done(void *arg, const bt_rpc_result_t *res,
                          const ProtobufCMessage *resp)
{
    renew_ctx_t *c = arg;
    pd_t *pd = c->pd;

    if (c->slot < 0) {
        if (res->code == 0 && resp != NULL &&
            ((const Baton__V1__RenewLeaseResponse *)resp)->expiry_unix_ms == 0) {
            pd->renewed_admitted++;
        } else if (res->code == 0) {
            pd->renewed++;
        } else {
            printf("renew-fail: %d %s\n", (int)res->code, res->message);
            fflush(stdout);
        }
    } else if (c->slot < 2) {
        pd->probe_codes[c->slot] = (int)res->code;
        pd->pending_probes--;
        if (pd->probe_codes[0] >= 0 && pd->probe_codes[1] >= 0) {
            printf("probe: %d %d\n", pd->probe_codes[0], pd->probe_codes[1]);
            fflush(stdout);
        }
    } else if (c->slot == 3) {
        printf("probe-admitted: %d %llu\n", (int)res->code,
               resp != NULL ? (unsigned long long)
               ((const Baton__V1__RenewLeaseResponse *)resp)->expiry_unix_ms
               : 0ull);
        fflush(stdout);
        pd->pending_probes--;
    } else {
        printf("probe-after: %d\n", (int)res->code);
        fflush(stdout);
        pd->pending_probes--;
    }
    free(c);
    pd_maybe_exit(pd);
}

static void pd_renew(pd_t *pd, uint64_t lease, const char *rid, int slot)
{
    Baton__V1__RenewLeaseRequest q = BATON__V1__RENEW_LEASE_REQUEST__INIT;
    bt_rpc_call_opts_t opts = { bt_test_scaled_ms(10000), NULL, 0 };
    renew_ctx_t *c = malloc(sizeof(*c));

    if (c == NULL) {
        return;
    }
    c->pd = pd;
    c->slot = slot;
    q.lease_id = lease;
    q.request_id = (char *)rid;
    q.lease_ms = pd->lease_ms;
    if (slot >= 0 && slot < 2) {
        pd->pending_probes++;
    }
    if (bt_rpc_client_unary(pd->dch, "/baton.v1.Decode/RenewLease", &q.base,
                            &baton__v1__renew_lease_response__descriptor,
                            &opts, pd_renew_done, c, NULL) != BT_OK) {
        free(c);
        if (slot >= 0 && slot < 2) {
            pd->pending_probes--;
        }
    }
}

static void pd_renew_ev(evutil_socket_t fd, short what, void *arg)
{
    pd_t *pd = arg;
    struct timeval tv = { pd->renew_ms / 1000, (pd->renew_ms % 1000) * 1000 };

    (void)fd;
    (void)what;
    if (pd->decode_done || pd->prefill_done) {
        return;
    }
    pd_renew(pd, pd->resv->lease_id, pd->rid, -1);
    evtimer_add(pd->renew_ev, &tv);
}

/* --- Prefill ------------------------------------------------------- */

static void pd_prefill_done(void *arg, const bt_rpc_result_t *res,
                            const ProtobufCMessage *resp)
{
    pd_t *pd = arg;
    const Baton__V1__PrefillResult *r = (const Baton__V1__PrefillResult *)resp;

    pd->pcall = NULL;
    pd->prefill_done = true;
    printf("prefill-end: %d %s first %d\n", (int)res->code, res->message,
           r != NULL ? (int)r->first_token : -1);
    fflush(stdout);
    pd_maybe_exit(pd);
}

static void pd_prefill_ev(evutil_socket_t fd, short what, void *arg)
{
    pd_t *pd = arg;
    Baton__V1__PrefillRequest q = BATON__V1__PREFILL_REQUEST__INIT;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    Baton__V1__TenantInfo t = BATON__V1__TENANT_INFO__INIT;
    bt_rpc_call_opts_t opts = { bt_test_scaled_ms(60000), NULL, 0 };

    (void)fd;
    (void)what;
    if (pd->decode_done) {
        pd_maybe_exit(pd);
        return;   /* a router would not prefill a dead lease */
    }
    printf("renewed: %u\n", pd->renewed);
    fflush(stdout);
    pd_sampling(&sp, pd->max_tokens);
    pd_tenant(pd, &t);
    q.request_id = pd->rid;
    q.token_ids = pd->ids;
    q.n_token_ids = pd->n_ids;
    q.sampling = &sp;
    q.reservation = pd->resv;
    q.tenant = &t;
    q.deadline_unix_ms = bt_wall_ms() + bt_test_scaled_ms(60000);
    pd->prefill_started = true;
    if (bt_rpc_client_unary(pd->pch, "/baton.v1.Prefill/Prefill", &q.base,
                            &baton__v1__prefill_result__descriptor, &opts,
                            pd_prefill_done, pd, &pd->pcall) != BT_OK) {
        fprintf(stderr, "cannot call the prefill node\n");
        pd->prefill_done = true;
    }
}

/* --- DecodeStream -------------------------------------------------- */

static void pd_decode_start(pd_t *pd);

static void pd_decode_msg(void *arg, const ProtobufCMessage *m)
{
    pd_t *pd = arg;
    const Baton__V1__DecodeResponse *r = (const Baton__V1__DecodeResponse *)m;

    if (r->kind_case == BATON__V1__DECODE_RESPONSE__KIND_RESERVATION &&
        pd->resv == NULL) {
        size_t len = baton__v1__reservation__get_packed_size(r->reservation);
        uint8_t *buf = malloc(len ? len : 1);
        struct timeval w = { pd->wait_ms / 1000, (pd->wait_ms % 1000) * 1000 };

        if (buf == NULL) {
            return;
        }
        baton__v1__reservation__pack(r->reservation, buf);
        pd->resv = baton__v1__reservation__unpack(NULL, len, buf);
        free(buf);
        if (pd->resv == NULL) {
            return;
        }
        printf("reserved: %zu blocks\n", pd->resv->n_block_ids);
        fflush(stdout);
        if (pd->probe) {
            pd->probe_codes[0] = pd->probe_codes[1] = -1;
            pd_renew(pd, pd->resv->lease_id ^ 0x5a5aull, pd->rid, 0);
            pd_renew(pd, pd->resv->lease_id, "someone-else", 1);
        }
        if (pd->renew_ms > 0) {
            struct timeval tv = { pd->renew_ms / 1000,
                                  (pd->renew_ms % 1000) * 1000 };

            evtimer_add(pd->renew_ev, &tv);
        }
        evtimer_add(pd->prefill_ev, &w);
        return;
    }
    if (r->kind_case == BATON__V1__DECODE_RESPONSE__KIND_TOKENS &&
        pd->n_toks == 0 && pd->probe && pd->resv != NULL) {
        pd->pending_probes++;   /* admitted: the lease no longer expires */
        pd_renew(pd, pd->resv->lease_id, pd->rid, 3);
    }
    if (r->kind_case == BATON__V1__DECODE_RESPONSE__KIND_TOKENS) {
        for (size_t i = 0; i < r->tokens->n_token_ids && pd->n_toks < 8192; i++) {
            pd->toks[pd->n_toks++] = r->tokens->token_ids[i];
        }
    }
    if (r->kind_case == BATON__V1__DECODE_RESPONSE__KIND_FINAL) {
        pd->final = true;
    }
}

static void pd_retry_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pd_decode_start(arg);
}

static void pd_decode_done(void *arg, const bt_rpc_result_t *res)
{
    pd_t *pd = arg;

    pd->dcall = NULL;
    if (pd->resv == NULL && res->code == BT_RPC_RESOURCE_EXHAUSTED &&
        bt_now_ms() / 1000.0 < pd->retry_until) {
        struct timeval tv = { 0, 50000 };

        evtimer_add(pd->retry_ev, &tv);
        return;
    }
    pd->decode_done = true;
    pd->code = (int)res->code;
    printf("decode-end: %d %s\n", (int)res->code, res->message);
    fflush(stdout);
    if (res->code != 0 && pd->cancel_prefill && pd->pcall != NULL) {
        bt_rpc_client_call_cancel(pd->pcall);
    }
    if (pd->probe && pd->resv != NULL) {
        pd->pending_probes++;
        pd_renew(pd, pd->resv->lease_id, pd->rid, 2);
    }
    pd_maybe_exit(pd);
}

static void pd_decode_start(pd_t *pd)
{
    Baton__V1__DecodeRequest req = BATON__V1__DECODE_REQUEST__INIT;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    Baton__V1__TenantInfo t = BATON__V1__TENANT_INFO__INIT;
    bt_rpc_call_opts_t opts = { bt_test_scaled_ms(120000), NULL, 0 };

    pd_sampling(&sp, pd->max_tokens);
    pd_tenant(pd, &t);
    req.request_id = pd->rid;
    req.token_ids = pd->ids;
    req.n_token_ids = pd->n_ids;
    req.sampling = &sp;
    req.tenant = &t;
    req.lease_ms = pd->lease_ms;
    if (bt_rpc_client_stream(pd->dch, "/baton.v1.Decode/DecodeStream",
                             &req.base, &baton__v1__decode_response__descriptor,
                             &opts, pd_decode_msg, pd_decode_done, pd,
                             &pd->dcall) != BT_OK) {
        fprintf(stderr, "cannot call the decode node\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    pd_t *pd = calloc(1, sizeof(*pd));
    bt_rpc_client_t *cli;
    bt_rpc_auth_t *auth = NULL;
    char aerr[256];
    char *p;

    if (pd == NULL || argc < 6) {
        fprintf(stderr, "usage: %s DECODE PREFILL IDS MAX_TOKENS LEASE_MS "
                "[--wait MS] [--renew MS] [--retry-s S] [--probe] "
                "[--cancel-prefill]\n", argv[0]);
        return 2;
    }
    for (p = argv[3]; *p != '\0' && pd->n_ids < 4096;) {
        pd->ids[pd->n_ids++] = (uint32_t)strtoul(p, &p, 10);
        while (*p == ',' || *p == ' ') {
            p++;
        }
    }
    pd->max_tokens = (uint32_t)atoi(argv[4]);
    pd->lease_ms = (uint32_t)atoi(argv[5]);
    for (int i = 6; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc) {
            pd->wait_ms = atol(argv[++i]);
        } else if (strcmp(argv[i], "--renew") == 0 && i + 1 < argc) {
            pd->renew_ms = atol(argv[++i]);
        } else if (strcmp(argv[i], "--retry-s") == 0 && i + 1 < argc) {
            pd->retry_until = bt_now_ms() / 1000.0 + atof(argv[++i]);
        } else if (strcmp(argv[i], "--probe") == 0) {
            pd->probe = true;
        } else if (strcmp(argv[i], "--cancel-prefill") == 0) {
            pd->cancel_prefill = true;
        } else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    snprintf(pd->rid, sizeof(pd->rid), "pd-%ld", (long)bt_now_ns());
    pd->base = bt_loop_create();
    pd->renew_ev = evtimer_new(pd->base, pd_renew_ev, pd);
    pd->prefill_ev = evtimer_new(pd->base, pd_prefill_ev, pd);
    pd->retry_ev = evtimer_new(pd->base, pd_retry_ev, pd);
    if (bt_rpc_auth_load_env(&auth, aerr, sizeof(aerr)) != BT_OK) {
        fprintf(stderr, "%s\n", aerr);
        return 1;
    }
    cli = bt_rpc_client_create(pd->base, NULL);
    if (cli != NULL) {   /* a cluster with tokens: the router's role */
        bt_rpc_client_set_token(cli, bt_rpc_auth_token(auth));
    }
    pd->dch = cli != NULL ? bt_rpc_channel_create(cli, argv[1], NULL) : NULL;
    pd->pch = cli != NULL ? bt_rpc_channel_create(cli, argv[2], NULL) : NULL;
    if (pd->dch == NULL || pd->pch == NULL) {
        fprintf(stderr, "cannot open channels\n");
        return 1;
    }
    pd_decode_start(pd);
    event_base_dispatch(pd->base);
    printf("renewed-admitted: %u\n", pd->renewed_admitted);
    printf("tokens:");
    for (size_t i = 0; i < pd->n_toks; i++) {
        printf(" %u", pd->toks[i]);
    }
    printf("\n");
    event_free(pd->renew_ev);
    event_free(pd->prefill_ev);
    event_free(pd->retry_ev);
    bt_rpc_client_destroy(cli);
    bt_rpc_auth_destroy(auth);
    event_base_free(pd->base);
    if (pd->resv != NULL) {
        baton__v1__reservation__free_unpacked(pd->resv, NULL);
    }
    {
        const int ok = pd->code == 0 && pd->final;

        free(pd);
        return ok ? 0 : 1;
    }
}
