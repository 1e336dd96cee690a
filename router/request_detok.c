/* Tokens to text on the router's worker pool (--threads): the incremental
 * detokenizer and the stop-string matcher of each request run there, and
 * the text comes back to the loop thread, which gives it to the client.
 *
 * A hand-off costs the loop more than one token's text does, so it is
 * paid once per loop pass, not per token: every token that arrives in a
 * pass (from any request) is queued, and at the end of the pass one pool
 * job takes them all; a pass with at most --detok-inline tokens does them
 * on the loop instead (an idle router gains nothing from the pool). Each
 * request has at most one job out; its tokens that arrive meanwhile wait
 * for the next pass after it came back, so its text keeps its order. The
 * client sees the same calls as with the text made on the loop: one
 * on_delta per token, the stop cutting at the same byte, the end after
 * the last text (request_end.c holds it). */
#include "request_priv.h"

#include "base/array.h"
#include "base/log.h"
#include "base/tpool.h"

#include <stdlib.h>
#include <string.h>

/* worker thread (or the loop for a small pass): the job's tokens to
 * text, as bt_rreq_emit_token makes it, one token after another */
static void bt_rreq_job_run(bt_rreq_job_t *job)
{
    bt_buf_reset(&job->text);
    job->n_done = 0;
    job->stopped = false;
    job->no_memory = false;
    for (size_t i = 0; i < job->n_ids; i++) {
        const char *out;
        size_t out_len;
        bool stopped = false;

        bt_buf_reset(&job->piece);
        if (bt_tok_stream_feed(job->detok, (int32_t)job->ids[i], &job->piece) != BT_OK) {
            bt_buf_reset(&job->piece);
        }
        out = job->piece.data ? job->piece.data : "";
        out_len = job->piece.len;
        if (job->stops != NULL) {
            bt_stopstr_feed(job->stops, out, out_len, &out, &out_len, &stopped);
        }
        if (bt_buf_append(&job->text, out, out_len) != BT_OK) {
            job->no_memory = true;
            return;
        }
        job->ends[i] = job->text.len;
        job->n_done = i + 1;
        if (stopped) {
            job->stopped = true;
            return;
        }
    }
}

static void bt_rreq_batch_work(void *arg)
{
    /* job->req is the loop's: not read here */
    for (bt_rreq_job_t *job = arg; job != NULL; job = job->next) {
        bt_rreq_job_run(job);
    }
}

/* loop thread: the job came back; its request gets its detokenizer and
 * matcher back and the client the text, in order */
static void bt_rreq_job_back(bt_rreq_job_t *job)
{
    bt_rreq_t *req = job->req;
    size_t i;

    if (req == NULL) {
        /* the request was freed meanwhile (its client left) */
        bt_rreq_job_free(job);
        return;
    }
    req->job_out = false;
    req->detok = job->detok;
    req->stops = job->stops;
    job->detok = NULL;
    job->stops = NULL;
    if (req->told_end) {
        bt_rreq_maybe_free(req);  /* the client left: no text */
        return;
    }
    req->delivering = true;  /* the sink may cancel the request inside */
    for (i = 0; i < job->n_done && !req->told_end; i++) {
        const char *text;
        size_t len;

        bt_rreq_job_piece(job, i, &text, &len);
        bt_rreq_give_text(req, text, len);
    }
    req->delivering = false;
    if (req->told_end) {
        bt_rreq_maybe_free(req);
        return;
    }
    if (job->no_memory) {
        bt_rreq_drop_waiting(req, req->n_given);
        req->n_gen = req->n_given;
        if (req->end_held) {
            req->held_status = BT_ERR_NO_MEMORY;
            snprintf(req->held_msg, sizeof(req->held_msg), "out of memory");
            bt_rreq_end_release(req);
        } else {
            bt_rreq_end(req, BT_ERR_NO_MEMORY, "out of memory",
                        BATON__V1__FINISH_REASON__FINISH_REASON_ERROR);
        }
        return;
    }
    if (job->stopped) {
        /* as on the loop: the stop's token is the last the client gets,
         * and the request ends with STOP whatever came after it */
        bt_rreq_drop_waiting(req, req->n_given);
        req->n_gen = req->n_given;
        req->stopped = true;
        if (req->end_held) {
            req->held_status = BT_OK;
            req->held_finish = BATON__V1__FINISH_REASON__FINISH_REASON_STOP;
            req->held_msg[0] = '\0';
            bt_rreq_end_release(req);
        } else {
            bt_rreq_end(req, BT_OK, NULL, BATON__V1__FINISH_REASON__FINISH_REASON_STOP);
        }
        return;
    }
    if (req->n_given < req->n_gen) {
        bt_rreq_detok_queue(req);
    } else if (req->end_held) {
        bt_rreq_end_release(req);
    }
}

static void bt_rreq_batch_done(void *arg, bt_status_t status)
{
    bt_rreq_job_t *job = arg, *next;

    (void)status; /* the pool runs every job it took, also when stopping */
    for (; job != NULL; job = next) {
        next = job->next;
        job->next = NULL;
        bt_rreq_job_back(job);
    }
}

/* loop thread: the request's waiting tokens into its job, its
 * detokenizer and matcher with them; false: out of memory */
static bool bt_rreq_job_fill(bt_rreq_t *req)
{
    bt_rreq_job_t *job = req->job;
    size_t n = req->n_gen - req->n_given;

    if (BT_ARRAY_RESERVE(job->ids, job->cap_ids, n, 16) != BT_OK ||
        BT_ARRAY_RESERVE(job->ends, job->cap_ends, n, 16) != BT_OK) {
        return false;
    }
    memcpy(job->ids, req->gen + req->n_given, n * sizeof(*job->ids));
    job->n_ids = n;
    job->detok = req->detok;
    job->stops = req->stops;
    req->detok = NULL;
    req->stops = NULL;
    req->job_out = true;
    return true;
}

/* The end of a loop pass: every queued request's tokens in one job. */
static void bt_rreq_batch_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_router_t *r = arg;
    bt_rreq_job_t *head = NULL, *job, *next;
    size_t n_tokens = 0;

    (void)fd;
    (void)what;
    for (job = r->detok_ready; job != NULL; job = next) {
        bt_rreq_t *req = job->req;

        next = job->next;
        job->next = NULL;
        if (req == NULL) {
            bt_rreq_job_free(job);  /* its request was freed meanwhile */
            continue;
        }
        req->job_ready = false;
        if (req->told_end) {
            continue;  /* the client left; freed with the request */
        }
        if (!bt_rreq_job_fill(req)) {
            bt_rreq_cancel(req, "out of memory");
            continue;
        }
        n_tokens += job->n_ids;
        job->next = head;
        head = job;
    }
    r->detok_ready = NULL;
    if (head == NULL) {
        return;
    }
    if (r->encode_pool == NULL || n_tokens <= (size_t)r->cfg.detok_inline ||
        bt_tpool_submit(r->encode_pool, bt_rreq_batch_work, bt_rreq_batch_done,
                        head) != BT_OK) {
        bt_rreq_batch_work(head);
        bt_rreq_batch_done(head, BT_OK);
        return;
    }
    bt_counter_inc(r->m.detok_jobs);
    bt_counter_add(r->m.detok_pool_tokens, (double)n_tokens);
}

void bt_rreq_detok_queue(bt_rreq_t *req)
{
    bt_router_t *r = req->r;

    if (req->job_ready || req->job_out || req->n_given >= req->n_gen ||
        req->told_end) {
        return;
    }
    if (r->detok_ev == NULL) {
        r->detok_ev = event_new(r->base, -1, 0, bt_rreq_batch_cb, r);
    }
    if (req->job == NULL) {
        req->job = calloc(1, sizeof(*req->job));
        if (req->job != NULL) {
            bt_buf_init(&req->job->piece, 1u << 20);
            bt_buf_init(&req->job->text, 64u << 20);
        }
    }
    if (r->detok_ev == NULL || req->job == NULL) {
        bt_rreq_cancel(req, "out of memory");
        return;
    }
    req->job->req = req;
    req->job->next = r->detok_ready;
    r->detok_ready = req->job;
    req->job_ready = true;
    event_active(r->detok_ev, EV_TIMEOUT, 1);
}

void bt_router_requests_cleanup(bt_router_t *r)
{
    bt_rreq_job_t *job, *next;

    for (job = r->detok_ready; job != NULL; job = next) {
        next = job->next;
        if (job->req == NULL) {
            bt_rreq_job_free(job);
        }
    }
    r->detok_ready = NULL;
    if (r->detok_ev != NULL) {
        event_free(r->detok_ev);
        r->detok_ev = NULL;
    }
}
