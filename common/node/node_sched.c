/* The scheduler: at most one forward step at a time on the worker thread.
 * A step is either one prefill chunk or the whole decode batch; when both
 * kinds wait they alternate, so decode never starves behind a long prompt
 * and prefill never behind a full batch. The layer_done hook queues the
 * layer index for the loop thread, which posts that layer's KV while the
 * worker computes the next one. */
#include "node.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One step. There is one at a time (node->busy), so its buffers are the
 * node's, allocated once for --max-batch sequences: a decode step of 64
 * sequences over a 128k vocabulary has 32 MiB of logits. */
typedef struct {
    bt_node_t     *node;
    bool           prefill;
    bt_pjob_t     *job;
    int            n;
    bt_step_seq_t *seqs;       /* [max_batch] */
    int32_t       *toks;       /* [max_batch] */
    bt_dreq_t    **who;        /* [max_batch] */
    float         *logits;     /* [max_batch][vocab] */
    bt_status_t    st;
} bt_step_t;

static bt_step_t bt_node_step;

/* Worker thread: hand the layer to the loop. The queue holds every layer
 * of one step (BT_MODEL_MAX_LAYERS) and is emptied before the next step
 * starts, so it cannot fill; if it ever did, the step fails rather than
 * leave the decode node with a layer missing. */
static void bt_node_layer_hook(void *ctx, int layer)
{
    bt_node_t *node = ctx;

    if (node->test_layer_delay_ms > 0) {
        /* tests: a slow prefill whose writes come late */
        struct timespec ts = { node->test_layer_delay_ms / 1000,
                               (node->test_layer_delay_ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&node->layer_mu);
    if (node->layer_n < BT_NODE_LAYER_Q) {
        node->layer_q[node->layer_n++] = layer;
    } else {
        node->layer_lost = true;
    }
    pthread_mutex_unlock(&node->layer_mu);
    event_active(node->layer_ev, EV_READ, 0);
}

static bt_pjob_t *bt_node_cur_job;

void bt_node_layers_drain(bt_node_t *node)
{
    int q[BT_NODE_LAYER_Q];
    int n;
    bool lost;

    pthread_mutex_lock(&node->layer_mu);
    n = node->layer_n;
    memcpy(q, node->layer_q, (size_t)n * sizeof(int));
    node->layer_n = 0;
    lost = node->layer_lost;
    node->layer_lost = false;
    pthread_mutex_unlock(&node->layer_mu);
    if (lost && bt_node_cur_job != NULL) {
        bt_error("scheduler: the layer queue overflowed: the prefill fails");
        bt_node_prefill_job_fail(node, bt_node_cur_job);
    }
    for (int i = 0; i < n && bt_node_cur_job != NULL; i++) {
        bt_node_prefill_layer(node, bt_node_cur_job, q[i]);
    }
}

static void bt_node_layer_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bt_node_layers_drain(arg);
}

static void bt_node_step_work(void *ctx)
{
    bt_step_t *s = ctx;
    bt_step_hooks_t hooks = { bt_node_layer_hook, s->node };

    s->st = bt_fwd_step(s->node->fwd, &s->node->kv, s->seqs, s->n,
                        s->prefill ? &hooks : NULL);
}

static void bt_step_free(bt_step_t *s)
{
    (void)s;   /* the node's; reused by the next step */
}

static void bt_node_step_done(void *ctx, bt_status_t status)
{
    bt_step_t *s = ctx;
    bt_node_t *node = s->node;

    if (status != BT_OK && s->st == BT_OK) {
        s->st = status;
    }
    /* every layer is posted before the chunk's results are used */
    bt_node_layers_drain(node);
    node->busy = false;
    if (s->prefill) {
        bt_node_cur_job = NULL;
        bt_node_prefill_after(node, s->job, s->logits, s->st);
    } else {
        bt_node_decode_after(node, s->who, s->n, s->logits, s->st);
    }
    bt_step_free(s);
    bt_node_sched_kick(node);
}

static bt_step_t *bt_step_new(bt_node_t *node, int max, bool prefill)
{
    bt_step_t *s = &bt_node_step;

    (void)max;
    if (s->logits == NULL) {
        return NULL;
    }
    s->node = node;
    s->prefill = prefill;
    s->job = NULL;
    s->n = 0;
    s->st = BT_OK;
    memset(s->seqs, 0, (size_t)node->cfg.max_batch * sizeof(*s->seqs));
    return s;
}

void bt_node_sched_kick(bt_node_t *node)
{
    bt_step_t *s;
    const bool want_prefill = node->pq_head != NULL;
    const bool want_decode = node->running > 0;
    bool prefill;

    if (node->busy || (!want_prefill && !want_decode)) {
        return;
    }
    prefill = want_prefill && (!want_decode || !node->last_was_prefill);
    s = bt_step_new(node, prefill ? 1 : (int)node->cfg.max_batch, prefill);
    if (s == NULL) {
        bt_error("scheduler: no step buffers");
        return;
    }
    if (prefill) {
        if (!bt_node_prefill_chunk(node, &s->seqs[0], &s->job)) {
            bt_step_free(s);
            bt_node_sched_kick(node);
            return;
        }
        s->seqs[0].logits = s->logits;
        s->n = 1;
        bt_node_cur_job = s->job;
    } else {
        s->n = bt_node_decode_batch(node, s->seqs, (int)node->cfg.max_batch,
                                    s->toks, s->who);
        if (s->n == 0) {
            bt_step_free(s);
            return;
        }
        for (int i = 0; i < s->n; i++) {
            s->seqs[i].logits = s->logits + (size_t)i * node->vocab;
        }
    }
    node->last_was_prefill = prefill;
    node->busy = true;
    if (bt_tpool_submit(node->worker, bt_node_step_work, bt_node_step_done,
                        s) != BT_OK) {
        /* the queue holds one step at most: this is a broken invariant */
        bt_error("scheduler: cannot submit a step");
        node->busy = false;
        s->st = BT_ERR_INTERNAL;
        bt_node_step_done(s, BT_ERR_INTERNAL);
    }
}

bt_status_t bt_node_sched_init(bt_node_t *node)
{
    const size_t mb = (size_t)node->cfg.max_batch;
    const char *delay = getenv("BATON_TEST_LAYER_DELAY_MS");
    bt_step_t *s = &bt_node_step;

    if (delay != NULL) {
        node->test_layer_delay_ms = atol(delay);
    }
    s->seqs = calloc(mb, sizeof(*s->seqs));
    s->toks = calloc(mb, sizeof(*s->toks));
    s->who = calloc(mb, sizeof(*s->who));
    s->logits = malloc(mb * node->vocab * sizeof(float));
    if (s->seqs == NULL || s->toks == NULL || s->who == NULL ||
        s->logits == NULL) {
        bt_error("scheduler: cannot allocate the step buffers (%zu x %u "
                 "logits)", mb, node->vocab);
        return BT_ERR_NO_MEMORY;
    }
    pthread_mutex_init(&node->layer_mu, NULL);
    node->layer_ev = event_new(node->base, -1, 0, bt_node_layer_ev, node);
    node->worker = bt_tpool_create(node->base, 1, 4);
    if (node->layer_ev == NULL || node->worker == NULL) {
        bt_error("scheduler: cannot create the worker");
        return BT_ERR_NO_MEMORY;
    }
    return BT_OK;
}

void bt_node_sched_cleanup(bt_node_t *node)
{
    bt_step_t *s = &bt_node_step;

    (void)node;
    free(s->seqs);
    free(s->toks);
    free(s->who);
    free(s->logits);
    memset(s, 0, sizeof(*s));
}
