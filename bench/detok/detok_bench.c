/* baton-detokbench: the loop thread's CPU time (CLOCK_THREAD_CPUTIME_ID)
 * to detokenize generated tokens itself (incremental detokenizer and a
 * stop-string matcher, as router/request_output.c does) against the time
 * it spends handing a job of B tokens to a worker of a bt_tpool and
 * taking the result back (submit, the eventfd wake-up, the completion),
 * as router/request_detok.c does. The ratio says from how many tokens per
 * loop pass a job pays (--detok-inline). */
#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/tpool.h"
#include "engine/sample/sample.h"
#include "engine/tokenizer/tokenizer.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_IDS 4096

static const char *const text =
    "The cluster splits prefill and decode across nodes; the KV cache moves "
    "between them over RDMA when the prompt is long enough to be worth it. "
    "static int ring_push(ring_t *r, const void *p, size_t n) { return 0; } "
    "Voix ambiguë d'un cœur qui, au zéphyr, préfère les jattes de kiwis. ";

typedef struct {
    bt_tok_stream_t *detok;
    bt_stopstr_t    *stops;
    const int32_t   *ids;
    size_t           n;
    bt_buf_t         piece, out;
    bool             done;
} job_t;

static uint64_t cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* one token after another, as the router does */
static void job_run(void *arg)
{
    job_t *j = arg;

    bt_buf_reset(&j->out);
    for (size_t i = 0; i < j->n; i++) {
        const char *o;
        size_t len;
        bool stopped;

        bt_buf_reset(&j->piece);
        bt_tok_stream_feed(j->detok, j->ids[i], &j->piece);
        bt_stopstr_feed(j->stops, j->piece.data ? j->piece.data : "", j->piece.len,
                        &o, &len, &stopped);
        bt_buf_append(&j->out, o, len);
    }
}

static void job_done(void *arg, bt_status_t s)
{
    (void)s;
    ((job_t *)arg)->done = true;
}

int main(int argc, char **argv)
{
    const char *root = getenv("BATON_SHARED_DATA");
    const char *stop[1] = { "<<never>>" };
    static const size_t batches[] = { 1, 2, 4, 8, 16, 64, 256 };
    char dir[1024], err[256];
    bt_tok_t *tok = NULL;
    bt_tok_ids_t ids;
    struct event_base *base;
    bt_tpool_t *pool;
    job_t j;
    double inline_ns;
    uint64_t t0;

    bt_log_init("baton-detokbench", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    snprintf(dir, sizeof(dir), "%s", argc > 1 ? argv[1] : "");
    if (argc <= 1 && root != NULL) {
        snprintf(dir, sizeof(dir), "%s/tokenizers/llama3", root);
    }
    if (dir[0] == '\0' || bt_tok_load_dir(dir, &tok, err, sizeof(err)) != BT_OK) {
        fprintf(stderr, "baton-detokbench [TOKENIZER_DIR] (or BATON_SHARED_DATA): "
                "%s\n", dir[0] ? err : "no tokenizer");
        return 2;
    }
    bt_tok_ids_init(&ids, N_IDS);
    while (ids.n < N_IDS &&
           bt_tok_encode(tok, text, strlen(text), 0, &ids, err, sizeof(err)) == BT_OK) {
    }
    memset(&j, 0, sizeof(j));
    bt_buf_init(&j.piece, 1u << 20);
    bt_buf_init(&j.out, 64u << 20);
    bt_tok_stream_create(tok, true, &j.detok);
    bt_stopstr_create(stop, 1, &j.stops);
    j.ids = ids.ids;

    /* on the loop: every token of the text, 20 times */
    t0 = cpu_ns();
    for (int rep = 0; rep < 20; rep++) {
        j.n = ids.n;
        job_run(&j);
    }
    inline_ns = (double)(cpu_ns() - t0) / (20.0 * (double)ids.n);
    printf("tokenizer %s, %zu tokens of mixed text\n", dir, ids.n);
    printf("detokenize on the loop: %.0f ns of loop CPU per token\n", inline_ns);

    base = event_base_new();
    pool = bt_tpool_create(base, 1, 1024);
    if (base == NULL || pool == NULL) {
        return 1;
    }
    printf("%8s %14s %14s %12s\n", "tokens", "loop ns/job", "loop ns/token",
           "vs inline");
    for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
        const size_t reps = 4000 / batches[b] + 200;
        uint64_t spent = 0;

        for (size_t rep = 0; rep < reps; rep++) {
            j.n = batches[b];
            j.ids = ids.ids + (rep * batches[b]) % (ids.n - batches[b]);
            j.done = false;
            t0 = cpu_ns();
            bt_tpool_submit(pool, job_run, job_done, &j);
            while (!j.done) {
                event_base_loop(base, EVLOOP_ONCE);
            }
            spent += cpu_ns() - t0;
        }
        printf("%8zu %14.0f %14.0f %11.2fx\n", batches[b],
               (double)spent / (double)reps,
               (double)spent / (double)(reps * batches[b]),
               (double)spent / (double)(reps * batches[b]) / inline_ns);
    }
    printf("(vs inline < 1: the job costs the loop less than detokenizing its "
           "tokens there)\n");
    bt_tpool_destroy(pool);
    event_base_free(base);
    bt_tok_stream_destroy(j.detok);
    bt_stopstr_destroy(j.stops);
    bt_buf_cleanup(&j.piece);
    bt_buf_cleanup(&j.out);
    bt_tok_ids_cleanup(&ids);
    bt_tok_destroy(tok);
    return 0;
}
