/* What the two front ends (gRPC and OpenAI HTTP) share: authentication,
 * request validation and start. */
#ifndef BT_ROUTER_FRONT_H
#define BT_ROUTER_FRONT_H

#include "request.h"
#include "router.h"

#include "generate.pb-c.h"
#include "openai.h"

#include "base/buf.h"

#define BT_FRONT_TENANT_MAX 64
#define BT_FRONT_SALT_MAX   64

typedef struct {
    char    tenant[BT_FRONT_TENANT_MAX + 1];
    uint8_t salt[BT_FRONT_SALT_MAX];
    size_t  salt_len;
    bool    admin;      /* may call baton.v1.Admin (always, with auth off) */
} bt_front_auth_t;

/* Loads the API keys file (JSON: {"keys": [{"key", "tenant", "salt",
 * "admin"}]}, salt as hex, admin a boolean, default false). Without a
 * file, authentication is off and every request is tenant "default" with
 * an empty salt, and Admin is open. */
bt_status_t bt_front_auth_load(bt_router_t *r, const char *path, char *err,
                               size_t err_size);
void bt_front_auth_free(bt_router_t *r);

/* `authorization`: the header / metadata value ("Bearer KEY") or NULL.
 * BT_ERR_PERMISSION with a message when keys are configured and it does
 * not name one. Keys are compared in constant time and never logged. */
bt_status_t bt_front_authenticate(bt_router_t *r, const char *authorization,
                                  bt_front_auth_t *auth_p, char *err,
                                  size_t err_size);

bt_status_t bt_front_check_sampling(const Baton__V1__SamplingParams *sp,
                                    char *err, size_t err_size);

/* front_bias.c: sp->logit_bias (ids in [0, vocab), distinct, biases in
 * [-100, 100], at most 300); BT_ERR_INVALID_ARG with a message that
 * starts with "logit_bias". */
bt_status_t bt_front_check_bias(const Baton__V1__SamplingParams *sp,
                                uint32_t vocab, char *err, size_t err_size);

/* front_start.c: validates, tokenizes and starts a request on the loop
 * thread (both fronts). */
bt_status_t bt_front_start(bt_router_t *r, const Baton__V1__GenerateRequest *in,
                           const bt_front_auth_t *auth, const bt_rreq_sink_t *sink,
                           void *sink_arg, bt_rreq_t **req_p, char *err,
                           size_t err_size);

/* A start whose prompt is being tokenized on the worker pool. */
typedef struct bt_front_job bt_front_job_t;
/* On the loop thread, once: `s` and `err` as bt_front_start's, `req` the
 * started request (BT_OK), `in` a copy of the request as given (NULL
 * when it could not be made; gone when the callback returns). */
typedef void (*bt_front_started_cb)(void *arg, bt_status_t s, bt_rreq_t *req,
                                    const char *err,
                                    const Baton__V1__GenerateRequest *in);
/* bt_front_start with the tokenizer and the chat template on the router's
 * pool (r->encode_pool): BT_IN_PROGRESS with *job_p set, and `started`
 * comes later from the loop (never inside this call); sink calls come
 * only after it. Any other status is bt_front_start's, done here (token
 * ids in, no pool, a check failed, BT_ERR_EXHAUSTED when the pool's
 * queue is full). `in` and `auth` are copied. */
bt_status_t bt_front_start_async(bt_router_t *r,
                                 const Baton__V1__GenerateRequest *in,
                                 const bt_front_auth_t *auth,
                                 const bt_rreq_sink_t *sink, void *sink_arg,
                                 bt_front_started_cb started, void *started_arg,
                                 bt_front_job_t **job_p, bt_rreq_t **req_p,
                                 char *err, size_t err_size);
/* The client left while its prompt was on the pool: `started` is never
 * called and no request starts; the job frees itself when the worker
 * hands it back. NULL-safe. */
void bt_front_job_cancel(bt_front_job_t *job);

/* front_lp.c: a choice's logprobs object (lp, created when NULL) and
 * where it stands: the JSON's rough size and the next token's
 * text_offset; tok_text is scratch. */
typedef struct {
    json_t   *lp;
    size_t    lp_bytes;
    size_t    text_offset;
    bt_buf_t *tok_text;
} bt_front_lp_t;
/* Appends the tokens' logprobs with their texts. BT_ERR_TOO_LARGE past
 * 64 MiB of JSON, BT_ERR_NO_MEMORY. */
bt_status_t bt_front_lp_add(bt_router_t *r, bt_openai_kind_t kind,
                            bt_front_lp_t *st, size_t n,
                            const Baton__V1__TokenLogprobs *const *lps);

/* front_http.c: an error reply in OpenAI's shape (param NULL or ""
 * for none), with Retry-After on 429 and 503. */
void bt_front_http_fail(bt_http_req_t *http, bt_status_t s,
                        const char *message, const char *param);
/* front_http_choices.c: a parsed request with best_of > 1 (n > 1 or
 * best_of > 1): starts its choices and answers when they end. */
void bt_front_http_choices(bt_router_t *r, bt_http_req_t *http,
                           bt_openai_req_t *oreq, const bt_front_auth_t *auth);

bt_status_t bt_front_grpc_register(bt_router_t *r);
bt_status_t bt_front_http_register(bt_router_t *r);

#endif
