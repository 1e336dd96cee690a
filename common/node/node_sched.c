/* The scheduler: at most one forward step at a time on the worker thread.
 * A step is what one role's next_step builds (a prefill chunk, the decode
 * batch); the roles with work take turns, so decode never starves behind
 * a long prompt and prefill never behind a full batch. The worker's layer
 * hook queues the layer index for the loop thread, which hands it to the
 * role's layer_done (posting that layer's KV) while the worker computes
 * the next one. The step's buffers are the node's, allocated once for
 * --max-batch sequences: a decode step of 64 sequences over a 128k
 * vocabulary has 32 MiB of logits. */
#include "node.h"
#include "node_experts.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

/* Worker thread: hand the layer to the loop. The queue holds every layer
 * of one step (BT_MODEL_MAX_LAYERS) and is emptied before the next step
 * starts, so it cannot fill; if it ever did, the step fails rather than
 * leave the decode node with a layer missing. */
static void bt_node_layer_hook(void *ctx, int layer)
{
    bt_node_t *node = ctx;

    /* tests: a slow prefill whose writes come late */
    bt_node_test_sleep_ms(node->test_layer_delay_ms);
    pthread_mutex_lock(&node->layer_mu);
    if (node->layer_n < BT_NODE_LAYER_Q) {
        node->layer_q[node->layer_n++] = layer;
    } else {
        node->layer_lost = true;
    }
    pthread_mutex_unlock(&node->layer_mu);
    if (!node->test_layers_at_end) {
        event_active(node->layer_ev, EV_READ, 0);
    }
}

void bt_node_layers_drain(bt_node_t *node)
{
    const bt_node_role_ops_t *ops;
    void *self;
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
    if (!node->step_layers) {
        return;
    }
    ops = node->roles[node->step_role];
    self = node->role_self[node->step_role];
    if (lost && ops->layer_lost != NULL) {
        bt_error("scheduler: the layer queue overflowed: the %s step fails",
                 ops->name);
        ops->layer_lost(self, &node->step);
    }
    for (int i = 0; i < n; i++) {
        ops->layer_done(self, &node->step, q[i]);
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
    bt_node_t *node = ctx;
    bt_step_hooks_t hooks = { bt_node_layer_hook, node };

    node->step_st = bt_fwd_step(node->fwd, &node->kv, node->step.seqs,
                                node->step.n,
                                node->step_layers ? &hooks : NULL);
}

/* A step's time into the node's measured speeds: prefill tokens per ms
 * as decayed sums of tokens and of ms (a long chunk weighs more than a
 * short prompt's, whose time is mostly fixed cost) and the decayed mean
 * of a decode step. Failed steps say nothing about speed. */
#define BT_NODE_SPEED_DECAY 0.75
static void bt_node_step_speed(bt_node_t *node, bool prefill)
{
    double ms = (double)(bt_now_ns() - node->step_t0_ns) / 1e6;

    if (node->step_st != BT_OK) {
        return;
    }
    if (prefill) {
        node->pf_tokens = node->pf_tokens * BT_NODE_SPEED_DECAY +
                          (double)node->step_tokens;
        node->pf_ms = node->pf_ms * BT_NODE_SPEED_DECAY + ms;
    } else {
        node->decode_step_ms = node->decode_step_ms > 0
            ? node->decode_step_ms * BT_NODE_SPEED_DECAY +
              ms * (1.0 - BT_NODE_SPEED_DECAY)
            : ms;
    }
}

static void bt_node_step_done(void *ctx, bt_status_t status)
{
    bt_node_t *node = ctx;
    const int r = node->step_role;

    if (status != BT_OK && node->step_st == BT_OK) {
        node->step_st = status;
    }
    /* a step with a sequence of more than one token computes a prompt
     * (whichever role built it: a decode node also prefills its own) */
    bt_node_step_speed(node, node->step_tokens > (uint64_t)node->step.n);
    /* every layer is handed over before the step's results are used */
    bt_node_layers_drain(node);
    node->busy = false;
    node->step_layers = false;
    node->roles[r]->step_done(node->role_self[r], &node->step,
                              node->step_st);
    bt_node_experts_step_end(node);   /* a window read between steps */
    bt_node_sched_kick(node);
}

/* The next role with work after the last step's, so that they alternate. */
static int bt_node_next_role(bt_node_t *node)
{
    for (int k = 1; k <= node->n_roles; k++) {
        int r = (node->last_role + k) % node->n_roles;

        if (node->roles[r]->has_work(node->role_self[r])) {
            return r;
        }
    }
    return -1;
}

void bt_node_sched_kick(bt_node_t *node)
{
    bt_node_step_t *s = &node->step;
    const bt_node_role_ops_t *ops;
    int r;

    if (node->busy || (r = bt_node_next_role(node)) < 0) {
        return;
    }
    if (s->logits == NULL) {
        bt_error("scheduler: no step buffers");
        return;
    }
    ops = node->roles[r];
    memset(s->seqs, 0, (size_t)node->cfg.max_batch * sizeof(*s->seqs));
    s->n = ops->next_step(node->role_self[r], s, (int)node->cfg.max_batch);
    if (s->n == 0) {
        return;
    }
    for (int i = 0; i < s->n; i++) {
        if (s->seqs[i].logits == NULL) {   /* a role may bring its own */
            s->seqs[i].logits = s->logits + (size_t)i * node->vocab;
        }
    }
    node->step_tokens = 0;
    for (int i = 0; i < s->n; i++) {
        node->step_tokens += (uint64_t)s->seqs[i].n_tokens;
    }
    node->step_t0_ns = bt_now_ns();
    node->last_role = r;
    node->step_role = r;
    node->step_layers = ops->layer_done != NULL;
    node->step_st = BT_OK;
    node->busy = true;
    if (bt_tpool_submit(node->worker, bt_node_step_work, bt_node_step_done,
                        node) != BT_OK) {
        /* the queue holds one step at most: this is a broken invariant */
        bt_error("scheduler: cannot submit a step");
        node->step_st = BT_ERR_INTERNAL;
        bt_node_step_done(node, BT_ERR_INTERNAL);
    }
}

bt_status_t bt_node_sched_init(bt_node_t *node)
{
    const size_t mb = (size_t)node->cfg.max_batch;
    bt_node_step_t *s = &node->step;

    node->test_layer_delay_ms = bt_node_test_env_ms("BATON_TEST_LAYER_DELAY_MS");
    /* tests: a loop thread too busy to take layers until the step ends,
     * so the layer queue holds every layer of a step at once */
    node->test_layers_at_end = getenv("BATON_TEST_LAYERS_AT_STEP_END") != NULL;
    /* the first turn is the first role's (prefill) */
    node->last_role = node->n_roles - 1;
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
    bt_node_step_t *s = &node->step;

    free(s->seqs);
    free(s->toks);
    free(s->who);
    free(s->logits);
    memset(s, 0, sizeof(*s));
}
