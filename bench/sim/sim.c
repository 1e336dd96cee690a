/* The simulated cluster (sim.h): requests, nodes, routers, events. */
#include "sim.h"

#include "base/clock.h"
#include "event.h"
#include "kvspec/kv_hash.h"
#include "lru.h"
#include "registry.h"
#include "sim_kvs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_MODEL "sim"
#define SIM_NUMERICS "cpu/exact/tp1/k1"   /* one group: the sim models one arithmetic */

enum { EV_ARRIVE, EV_PLACE, EV_STEP_DONE, EV_KV_DONE, EV_REPORT,
       EV_QUEUE_TIMEOUT };
enum { RQ_NEW, RQ_QUEUED, RQ_PREFILL, RQ_DECODE, RQ_DONE };
enum { ROLE_P = 0, ROLE_D = 1 };

typedef struct {
    uint32_t  p, d;            /* node indexes */
    uint32_t  d_blocks;
    uint32_t  cached, store;   /* prompt tokens reused: all, from the kvstore */
    uint32_t  pos;             /* prompt tokens done */
    uint32_t  out;             /* tokens generated, the first included */
    uint32_t  n_keys;
    uint8_t   state;
    bool      started;         /* its first chunk ran: reuse settled */
    float     slow;            /* its overhead's and chunks' factor (noise) */
    uint8_t  *keys;            /* n_keys block keys until the prefill ends */
    uint32_t *tokens;          /* the prompt, with a kvstore (its puts) */
    double    t_arrive, t_first, t_second;
} sreq_t;

typedef struct {
    uint32_t *v;
    size_t    head, n, cap;
} ring_t;

/* A running sequence, kept beside its node's others so a decode step
 * walks one array (a million-request run is bound by this loop). */
typedef struct {
    uint32_t i, out, max, prompt;
} run_ent_t;

typedef struct {
    bt_node_t    *rn;          /* the router's entry */
    uint32_t      shard;
    int           roles;       /* bit ROLE_P, bit ROLE_D */
    ring_t        pq;          /* prefill FIFO */
    uint64_t      queued_tokens;
    run_ent_t    *run;         /* decode: running, in admission order */
    size_t        n_run, cap_run;
    uint64_t      ctx_sum;     /* tokens of context of the running ones */
    uint32_t      reserved;    /* blocks */
    bool          busy;
    double        work_s;      /* one_host: the step's dedicated time left */
    double        t_mark;      /* one_host: when work_s was last brought up */
    uint64_t      gen;         /* one_host: the step-done event in force */
    double        join_s;      /* local hand-overs to run before the next step */
    int           last_role, step_role;
    uint32_t      step_n;      /* decode batch, or the prefill chunk */
    bt_sim_lru_t *cache;
} snode_t;

typedef struct {
    bt_registry_t *reg;
    bt_node_t     *store_rn;
    bt_sim_kvs_t  *kvs;
    ring_t         wq;         /* the wait queue */
    double         router_free; /* when its one-at-a-time part is free */
} shard_t;

typedef struct {
    const bt_sim_cfg_t  *cfg;
    const bt_sim_cost_t *c;
    const bt_wl_t       *wl;
    bt_rep_rec_t        *recs;
    bt_sim_stats_t      *st;
    bt_sim_evq_t         q;
    sreq_t              *reqs;
    snode_t             *nodes;
    size_t               n_nodes;
    shard_t             *shards;
    size_t               n_shards;
    size_t               issued, finished;
    uint32_t             n_busy;   /* one_host: nodes computing */
    int32_t             *prompt;   /* scratch, the longest prompt */
    uint8_t              root[BT_KV_HASH_LEN];
    bool                 oom;
    bt_select_weights_t  weights;  /* cfg's, with the stall budget below */
} sim_t;

static bool ring_push(ring_t *r, uint32_t x)
{
    if (r->n == r->cap) {
        size_t cap = r->cap > 0 ? r->cap * 2 : 64;
        uint32_t *v = malloc(cap * sizeof(*v));

        if (v == NULL) {
            return false;
        }
        for (size_t i = 0; i < r->n; i++) {
            v[i] = r->v[(r->head + i) % r->cap];
        }
        free(r->v);
        r->v = v;
        r->cap = cap;
        r->head = 0;
    }
    r->v[(r->head + r->n++) % r->cap] = x;
    return true;
}

static uint32_t ring_front(const ring_t *r)
{
    return r->v[r->head];
}

static void ring_pop(ring_t *r)
{
    r->head = (r->head + 1) % r->cap;
    r->n--;
}

static void sim_push(sim_t *s, double t, int kind, uint32_t a, uint64_t b)
{
    if (!bt_sim_evq_push(&s->q, t, kind, a, b)) {
        s->oom = true;
    }
}

void bt_sim_cfg_default(bt_sim_cfg_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->prefix_cache = true;
    cfg->heartbeat_s = 0.5;
    cfg->max_queue = 256;
    cfg->queue_timeout_s = 10;
    cfg->nodes_per_router = BT_ROUTER_MAX_NODES - 1;
    /* baton-router's defaults, --disagg auto included */
    cfg->weights = (bt_select_weights_t){1.0, 1.0, 1.0, 8.0, 0.9,
                                         {BT_DISAGG_AUTO, 256, 10.0, 2.0, 100.0, 1000.0},
                                         NULL, NULL};
}

/* ---- requests ---- */

static void sim_issue(sim_t *s, size_t i, double t)
{
    sim_push(s, t, EV_ARRIVE, (uint32_t)i, 0);
}

static void sim_finish(sim_t *s, uint32_t i, bool ok)
{
    sreq_t *r = &s->reqs[i];
    bt_rep_rec_t *rec = &s->recs[i];
    const bt_wl_req_t *w = &s->wl->reqs[i];
    double now = s->q.now;

    rec->ok = ok;
    rec->prompt_tokens = w->n_prompt;
    rec->ideal_cached = w->ideal_cached;
    if (ok) {
        rec->out_tokens = r->out;
        rec->cached_tokens = r->cached;
        rec->ttft_ms = (r->t_first - r->t_arrive) * 1e3;
        rec->e2e_ms = (now - r->t_arrive) * 1e3;
        rec->tpot_ms = r->out > 1 ? (now - r->t_first) * 1e3 / (r->out - 1) : 0;
        rec->itl1_ms = r->out > 1 ? (r->t_second - r->t_first) * 1e3 : 0;
        s->st->cached_tokens += r->cached;
        s->st->store_tokens += r->store;
    } else {
        s->st->rejected++;
    }
    free(r->keys);
    free(r->tokens);
    r->keys = NULL;
    r->tokens = NULL;
    r->state = RQ_DONE;
    s->finished++;
    s->st->sim_s = now;
    if (!s->wl->open && s->issued < s->wl->n) {
        sim_issue(s, s->issued++, now);
    }
}

/* The prompt's block keys: kv-spec hashes when a kvstore checks them,
 * else the workload's cheap keys (same sharing, no sha256). */
static bool sim_keys(sim_t *s, uint32_t i)
{
    sreq_t *r = &s->reqs[i];
    const bt_wl_req_t *w = &s->wl->reqs[i];
    const uint32_t bs = s->c->block_size;
    size_t nb = w->n_prompt / bs, got = 0;

    if (!s->cfg->prefix_cache && s->cfg->kvstore_bytes == 0) {
        /* no cache anywhere: keys could never match; the router's index
         * lookups still run, on none */
        r->n_keys = 0;
        return true;
    }
    bt_wl_prompt(s->wl, i, s->prompt);
    r->keys = malloc((nb > 0 ? nb : 1) * BT_SIM_KEY_LEN);
    if (r->keys == NULL) {
        return false;
    }
    if (s->cfg->kvstore_bytes > 0) {
        r->tokens = malloc((size_t)w->n_prompt * sizeof(uint32_t));
        if (r->tokens == NULL) {
            return false;
        }
        memcpy(r->tokens, s->prompt, (size_t)w->n_prompt * sizeof(uint32_t));
        if (nb > 0 && bt_kv_hash_chain(s->root, bs, r->tokens, w->n_prompt,
                                       (uint8_t (*)[BT_KV_HASH_LEN])r->keys,
                                       nb, &got) != BT_OK) {
            return false;
        }
    } else {
        got = bt_wl_block_keys(s->prompt, w->n_prompt, bs, r->keys, nb);
    }
    r->n_keys = (uint32_t)got;
    return true;
}

/* ---- nodes ---- */

static void node_kick(sim_t *s, uint32_t ni);

static bool node_has(const snode_t *n, int role)
{
    return role == ROLE_P ? n->pq.n > 0 : n->n_run > 0;
}

static void node_cache_add(sim_t *s, snode_t *n, const uint8_t *keys,
                           size_t nk)
{
    uint8_t ev[BT_SIM_KEY_LEN];
    bt_registry_t *reg = s->shards[n->shard].reg;

    if (n->cache == NULL) {
        return;
    }
    for (size_t k = 0; k < nk; k++) {
        if (bt_sim_lru_insert(n->cache, keys + k * BT_SIM_KEY_LEN, ev)) {
            bt_registry_kv_removed(reg, n->rn, ev, 1);
        }
    }
    bt_registry_kv_stored(reg, n->rn, keys, nk);
}

/* The head job's next chunk: its reuse is settled at its first chunk,
 * the node's own cache first, then the kvstore. */
static double node_prefill_chunk(sim_t *s, snode_t *n, sreq_t *r,
                                 uint32_t *chunk_p)
{
    const bt_sim_cost_t *c = s->c;
    const uint32_t n_prompt = s->wl->reqs[r - s->reqs].n_prompt;
    double extra = 0;

    if (!r->started) {
        /* the last prompt token is always computed */
        size_t usable = (n_prompt - 1) / c->block_size;
        size_t own = 0, store = 0;

        usable = usable < r->n_keys ? usable : r->n_keys;
        if (n->cache != NULL) {
            own = bt_sim_lru_match(n->cache, r->keys, usable);
        }
        if (s->shards[n->shard].kvs != NULL && own < usable) {
            store = bt_sim_kvs_fetch(s->shards[n->shard].kvs,
                                     r->keys + own * BT_SIM_KEY_LEN,
                                     usable - own);
            extra = bt_sim_kvstore_ms(c, (uint32_t)store) / 1e3;
        }
        r->cached = (uint32_t)((own + store) * c->block_size);
        r->store = (uint32_t)(store * c->block_size);
        r->pos = r->cached;
        n->queued_tokens -= n->queued_tokens >= r->cached ? r->cached
                                                          : n->queued_tokens;
        r->started = true;
    }
    *chunk_p = n_prompt - r->pos < c->max_prefill_tokens
               ? n_prompt - r->pos : c->max_prefill_tokens;
    return extra + r->slow * bt_sim_prefill_ms(c, *chunk_p, r->pos) / 1e3;
}

/* ---- one host: the busy nodes share its cores ---- */

/* Brings every busy node's work left up to now, at the speed they had. */
static void host_advance(sim_t *s)
{
    const double speed = s->n_busy > 0 ? 1.0 / s->n_busy : 1.0;

    for (size_t i = 0; i < s->n_nodes; i++) {
        snode_t *n = &s->nodes[i];

        if (n->busy) {
            n->work_s -= (s->q.now - n->t_mark) * speed;
            n->work_s = n->work_s > 0 ? n->work_s : 0;
            n->t_mark = s->q.now;
        }
    }
}

/* Each busy node's step ends when its work is done at the new speed;
 * the events pushed before carry an older generation and are dropped. */
static void host_repush(sim_t *s)
{
    const double speed = s->n_busy > 0 ? 1.0 / s->n_busy : 1.0;

    for (size_t i = 0; i < s->n_nodes; i++) {
        snode_t *n = &s->nodes[i];

        if (n->busy) {
            sim_push(s, s->q.now + n->work_s / speed, EV_STEP_DONE,
                     (uint32_t)i, ++n->gen);
        }
    }
}

static void node_kick(sim_t *s, uint32_t ni)
{
    snode_t *n = &s->nodes[ni];
    int role = -1;
    double dt;

    if (n->busy) {
        return;
    }
    for (int k = 1; k <= 2; k++) {
        int x = (n->last_role + k) % 2;

        if ((n->roles & (1 << x)) && node_has(n, x)) {
            role = x;
            break;
        }
    }
    if (role < 0) {
        return;
    }
    if (role == ROLE_P) {
        dt = node_prefill_chunk(s, n, &s->reqs[ring_front(&n->pq)], &n->step_n);
    } else {
        n->step_n = n->n_run < s->c->max_batch ? (uint32_t)n->n_run
                                               : s->c->max_batch;
        /* the batch's context: the oldest step_n of the running ones */
        uint64_t ctx = n->ctx_sum;

        if (n->step_n < n->n_run) {
            ctx = 0;
            for (uint32_t k = 0; k < n->step_n; k++) {
                ctx += n->run[k].prompt + n->run[k].out;
            }
        }
        dt = bt_sim_decode_ms(s->c, n->step_n, ctx) / 1e3;
    }
    dt += n->join_s;
    n->join_s = 0;
    n->last_role = n->step_role = role;
    if (s->cfg->one_host) {
        host_advance(s);
        n->busy = true;
        n->work_s = dt;
        n->t_mark = s->q.now;
        s->n_busy++;
        host_repush(s);
        return;
    }
    n->busy = true;
    sim_push(s, s->q.now + dt, EV_STEP_DONE, ni, 0);
}

static void sim_kv_done(sim_t *s, uint32_t i);

static void prefill_done(sim_t *s, snode_t *n, uint32_t i)
{
    sreq_t *r = &s->reqs[i];
    const bt_wl_req_t *w = &s->wl->reqs[i];
    const bt_sim_cost_t *c = s->c;
    shard_t *sh = &s->shards[n->shard];
    double bytes = (double)w->n_prompt * c->kv_bytes_per_token;

    ring_pop(&n->pq);
    /* the first token goes out with the prefill's answer */
    r->t_first = s->q.now;
    node_cache_add(s, n, r->keys, r->n_keys);
    if (sh->kvs != NULL) {
        bt_sim_kvs_put(sh->kvs, s->root, r->keys, r->cached / c->block_size,
                       r->n_keys, r->tokens);
    }
    free(r->keys);
    free(r->tokens);
    r->keys = NULL;
    r->tokens = NULL;
    /* Disaggregated, the sequence joins the decode node's batch after the
     * hand-over: what the layer-wise push could not hide behind the
     * compute and the decode node's admission. On the same node it joins
     * at once, ahead of the node's next step, which the local hand-over
     * lengthens (the node's own loop does it). Either shows in the first
     * gap. */
    if (r->p != r->d) {
        double hop_s = bt_sim_xfer_ms(c, s->cfg->transport, bytes) / 1e3;

        sim_push(s, s->q.now + hop_s, EV_KV_DONE, i, 0);
    } else {
        n->join_s += bt_sim_join_ms(c, bytes) / 1e3;
        sim_kv_done(s, i);
    }
}

static void sim_end_request(sim_t *s, uint32_t i);

static void step_done(sim_t *s, uint32_t ni, uint64_t gen)
{
    snode_t *n = &s->nodes[ni];
    size_t k, keep;

    if (s->cfg->one_host) {
        if (!n->busy || gen != n->gen) {
            return;   /* rescheduled since */
        }
        host_advance(s);
        n->busy = false;
        s->n_busy--;
        host_repush(s);
    }
    n->busy = false;
    if (n->step_role == ROLE_P) {
        uint32_t i = ring_front(&n->pq);
        sreq_t *r = &s->reqs[i];

        r->pos += n->step_n;
        n->queued_tokens -= n->queued_tokens >= n->step_n ? n->step_n
                                                          : n->queued_tokens;
        if (r->pos >= s->wl->reqs[i].n_prompt) {
            prefill_done(s, n, i);
        }
    } else {
        for (k = 0, keep = 0; k < n->n_run; k++) {
            run_ent_t e = n->run[k];

            if (k < n->step_n) {
                e.out++;
                n->ctx_sum++;
                if (e.out == 2) {
                    s->reqs[e.i].t_second = s->q.now;
                }
                if (e.out >= e.max) {
                    n->ctx_sum -= e.prompt + e.out;
                    s->reqs[e.i].out = e.out;
                    sim_end_request(s, e.i);
                    continue;
                }
            }
            n->run[keep++] = e;
        }
        n->n_run = keep;
    }
    node_kick(s, ni);
}

/* ---- the router ---- */

static bool sim_place(sim_t *s, uint32_t i, shard_t *sh, bt_status_t *st_p)
{
    sreq_t *r = &s->reqs[i];
    const bt_wl_req_t *w = &s->wl->reqs[i];
    bt_select_req_t sr;
    bt_select_result_t res;
    snode_t *d;
    char err[256];

    memset(&sr, 0, sizeof(sr));
    sr.model = SIM_MODEL;
    sr.block_hashes = r->keys;
    sr.n_blocks = r->n_keys;
    sr.prompt_tokens = w->n_prompt;
    sr.max_new_tokens = w->max_tokens;
    *st_p = bt_select_pair(sh->reg, &s->weights, &sr, &res, err,
                           sizeof(err));
    if (*st_p != BT_OK) {
        return false;
    }
    r->p = (uint32_t)(uintptr_t)res.prefill->conn;
    r->d = (uint32_t)(uintptr_t)res.decode->conn;
    d = &s->nodes[r->d];
    if (d->rn->total_blocks - d->reserved < res.decode_blocks) {
        /* the node's own check: no room after all */
        bt_select_resv_refused(res.decode, res.decode_blocks);
        bt_select_release(res.prefill, res.decode, w->n_prompt);
        *st_p = BT_ERR_EXHAUSTED;
        return false;
    }
    d->reserved += res.decode_blocks;
    r->d_blocks = res.decode_blocks;
    bt_select_resv_answered(res.decode, res.decode_blocks);
    r->state = RQ_PREFILL;
    if (!ring_push(&s->nodes[r->p].pq, i)) {
        s->oom = true;
    }
    s->nodes[r->p].queued_tokens += w->n_prompt;
    node_kick(s, r->p);
    return true;
}

static void sim_kick_queue(sim_t *s, shard_t *sh)
{
    while (sh->wq.n > 0) {
        uint32_t i = ring_front(&sh->wq);
        bt_status_t st;

        if (s->reqs[i].state != RQ_QUEUED) {
            ring_pop(&sh->wq);     /* timed out meanwhile */
            continue;
        }
        if (!sim_place(s, i, sh, &st)) {
            if (st != BT_ERR_EXHAUSTED) {
                ring_pop(&sh->wq);
                sim_finish(s, i, false);
                continue;
            }
            return;
        }
        ring_pop(&sh->wq);
    }
}

static void sim_arrive(sim_t *s, uint32_t i)
{
    sreq_t *r = &s->reqs[i];
    shard_t *sh = &s->shards[i % s->n_shards];
    double ov, one;

    r->t_arrive = s->q.now;
    r->slow = (float)bt_sim_noise(s->c, (s->cfg->noise_draw << 40) + i);
    if (!sim_keys(s, i)) {
        s->oom = true;
        return;
    }
    /* the path to the router and the nodes (HTTP, tokenizer, RPCs): the
     * router's share one request at a time (a burst queues there), the
     * rest beside it */
    ov = r->slow * s->c->ttft_overhead_ms / 1e3;
    one = r->slow * (s->c->router_ms < s->c->ttft_overhead_ms
                     ? s->c->router_ms : s->c->ttft_overhead_ms) / 1e3;
    sh->router_free = (sh->router_free > s->q.now ? sh->router_free
                                                  : s->q.now) + one;
    sim_push(s, sh->router_free + ov - one, EV_PLACE, i, 0);
    if (s->wl->open && s->issued < s->wl->n) {
        sim_issue(s, s->issued, s->wl->reqs[s->issued].t_s);
        s->issued++;
    }
}

static void sim_place_new(sim_t *s, uint32_t i)
{
    shard_t *sh = &s->shards[i % s->n_shards];
    sreq_t *r = &s->reqs[i];
    bt_status_t st;

    /* first come, first served: behind a waiting request, wait too */
    if (sh->wq.n == 0 && sim_place(s, i, sh, &st)) {
        return;
    }
    if (sh->wq.n > 0) {
        st = BT_ERR_EXHAUSTED;
    }
    if (st != BT_ERR_EXHAUSTED || sh->wq.n >= s->cfg->max_queue) {
        sim_finish(s, i, false);
        return;
    }
    r->state = RQ_QUEUED;
    s->st->queued++;
    if (!ring_push(&sh->wq, i)) {
        s->oom = true;
    }
    sim_push(s, s->q.now + s->cfg->queue_timeout_s, EV_QUEUE_TIMEOUT, i, 0);
}

static void sim_kv_done(sim_t *s, uint32_t i)
{
    sreq_t *r = &s->reqs[i];
    snode_t *d = &s->nodes[r->d];

    r->out = 1;
    if (r->out >= s->wl->reqs[i].max_tokens) {
        sim_end_request(s, i);
        return;
    }
    r->state = RQ_DECODE;
    if (d->n_run == d->cap_run) {
        size_t cap = d->cap_run > 0 ? d->cap_run * 2 : 64;
        run_ent_t *v = realloc(d->run, cap * sizeof(*v));

        if (v == NULL) {
            s->oom = true;
            return;
        }
        d->run = v;
        d->cap_run = cap;
    }
    d->run[d->n_run++] = (run_ent_t){i, 1, s->wl->reqs[i].max_tokens,
                                     s->wl->reqs[i].n_prompt};
    d->ctx_sum += s->wl->reqs[i].n_prompt + 1;
    node_kick(s, r->d);
}

static void sim_end_request(sim_t *s, uint32_t i)
{
    sreq_t *r = &s->reqs[i];
    snode_t *p = &s->nodes[r->p], *d = &s->nodes[r->d];

    d->reserved -= r->d_blocks;
    bt_select_release(p->rn, d->rn, s->wl->reqs[i].n_prompt);
    sim_finish(s, i, true);
    sim_kick_queue(s, &s->shards[d->shard]);
}

/* The router's stall budget (select.h) as the simulator knows it: the
 * node's running sequences (not those placed there whose prefill runs
 * elsewhere), each request's part as the router's (bt_decide_seq_budget). */
static double sim_stall_budget(void *arg, const bt_node_t *rn)
{
    const sim_t *s = arg;
    const snode_t *n = &s->nodes[(uintptr_t)rn->conn];
    double least = INFINITY;

    for (size_t k = 0; k < n->n_run; k++) {
        const run_ent_t *e = &n->run[k];
        const sreq_t *r = &s->reqs[e->i];
        const double b = bt_decide_seq_budget(
            &s->weights.disagg, e->max, e->out, (r->t_first - r->t_arrive) * 1e3,
            (s->q.now - r->t_first) * 1e3, rn->load.decode_step_ms);

        if (b > 0 && b < least) {
            least = b;
        }
    }
    return least;
}

static void sim_report(sim_t *s, uint32_t ni)
{
    snode_t *n = &s->nodes[ni];
    bt_node_load_t load;

    memset(&load, 0, sizeof(load));
    load.queued_prefill_tokens = n->queued_tokens;
    load.running_sequences = (uint32_t)n->n_run;
    load.free_blocks = n->rn->total_blocks - n->reserved;
    load.waiting_requests = (uint32_t)n->pq.n;
    /* what the node measures: a full chunk's speed, its batch's step */
    load.prefill_rate = s->c->max_prefill_tokens /
                        bt_sim_prefill_ms(s->c, s->c->max_prefill_tokens, 0);
    load.decode_step_ms = bt_sim_decode_ms(s->c, n->n_run > 0 ? (uint32_t)n->n_run : 1,
                                           n->ctx_sum);
    bt_registry_update_load(s->shards[n->shard].reg, n->rn, &load,
                            (uint64_t)(s->q.now * 1e3));
    sim_kick_queue(s, &s->shards[n->shard]);
    if (s->finished < s->wl->n) {
        sim_push(s, s->q.now + s->cfg->heartbeat_s, EV_REPORT, ni, 0);
    }
}

/* ---- set-up ---- */

static uint64_t sim_now_ms(void *arg)
{
    const sim_t *s = arg;

    return (uint64_t)(s->q.now * 1e3);
}

static void sim_store_event(void *arg, bool stored, const uint8_t *hash)
{
    shard_t *sh = arg;

    if (stored) {
        bt_registry_kv_stored(sh->reg, sh->store_rn, hash, 1);
    } else {
        bt_registry_kv_removed(sh->reg, sh->store_rn, hash, 1);
    }
}

static int sim_setup(sim_t *s, char *err, size_t err_size)
{
    const bt_sim_cfg_t *cfg = s->cfg;
    const bt_sim_cost_t *c = s->c;
    size_t per = cfg->nodes_per_router;
    uint32_t longest = 1;

    s->n_nodes = (size_t)cfg->n_prefill + cfg->n_decode + cfg->n_colocated;
    if (s->n_nodes == 0 ||
        (cfg->n_colocated == 0 && (cfg->n_prefill == 0 || cfg->n_decode == 0))) {
        snprintf(err, err_size, "a cluster needs colocated nodes, or prefill "
                 "and decode nodes");
        return -1;
    }
    if (per == 0 || per > BT_ROUTER_MAX_NODES - 1) {
        per = BT_ROUTER_MAX_NODES - 1;
    }
    s->n_shards = (s->n_nodes + per - 1) / per;
    /* every router needs both roles */
    if (cfg->n_colocated == 0 &&
        (cfg->n_prefill < s->n_shards || cfg->n_decode < s->n_shards)) {
        s->n_shards = cfg->n_prefill < cfg->n_decode ? cfg->n_prefill
                                                     : cfg->n_decode;
        if ((s->n_nodes + s->n_shards - 1) / s->n_shards > per) {
            snprintf(err, err_size, "too few prefill or decode nodes to spread "
                     "%zu nodes over routers of %zu", s->n_nodes, per);
            return -1;
        }
    }
    s->st->routers = (uint32_t)s->n_shards;
    s->nodes = calloc(s->n_nodes, sizeof(*s->nodes));
    s->shards = calloc(s->n_shards, sizeof(*s->shards));
    s->reqs = calloc(s->wl->n > 0 ? s->wl->n : 1, sizeof(*s->reqs));
    for (size_t i = 0; i < s->wl->n; i++) {
        longest = s->wl->reqs[i].n_prompt > longest ? s->wl->reqs[i].n_prompt
                                                    : longest;
    }
    s->prompt = malloc((size_t)longest * sizeof(int32_t));
    if (s->nodes == NULL || s->shards == NULL || s->reqs == NULL ||
        s->prompt == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    memset(s->root, 0x5a, sizeof(s->root));
    for (size_t k = 0; k < s->n_shards; k++) {
        shard_t *sh = &s->shards[k];

        sh->reg = bt_registry_create(1000000, UINT64_MAX / 2);
        if (sh->reg == NULL) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        if (cfg->kvstore_bytes > 0) {
            bt_node_hello_t h = {"kvstore", BT_NODE_ROLE_KVSTORE, "", "sim",
                                 NULL, 0, 0, 0, 0, 0, BT_KV_DTYPE_F32, NULL,
                                 NULL, NULL};
            double bb = c->kv_bytes_per_token * c->block_size;
            uint64_t blocks = bb > 0 ? (uint64_t)((double)cfg->kvstore_bytes / bb)
                                     : 0;

            sh->kvs = blocks > 0 ? bt_sim_kvs_create(blocks, c->block_size,
                                                     sim_now_ms, s,
                                                     sim_store_event, sh)
                                 : NULL;
            if (sh->kvs == NULL ||
                bt_registry_add(sh->reg, &h, 0, NULL, &sh->store_rn, err,
                                err_size) != BT_OK) {
                snprintf(err, err_size, "cannot set up a kvstore of %llu "
                         "blocks", (unsigned long long)blocks);
                return -1;
            }
        }
    }
    for (size_t j = 0; j < s->n_nodes; j++) {
        snode_t *n = &s->nodes[j];
        bt_node_role_t role;
        char id[32];
        bt_node_hello_t h;

        if (j < cfg->n_colocated) {
            role = BT_NODE_ROLE_BOTH;
        } else if (j < (size_t)cfg->n_colocated + cfg->n_prefill) {
            role = BT_NODE_ROLE_PREFILL;
        } else {
            role = BT_NODE_ROLE_DECODE;
        }
        n->roles = (role & BT_NODE_ROLE_PREFILL ? 1 << ROLE_P : 0) |
                   (role & BT_NODE_ROLE_DECODE ? 1 << ROLE_D : 0);
        n->last_role = ROLE_D;   /* the first turn is prefill's */
        /* by role, round robin: every router gets its share of each */
        n->shard = (uint32_t)(j < cfg->n_colocated ? j
                              : j < (size_t)cfg->n_colocated + cfg->n_prefill
                              ? j - cfg->n_colocated
                              : j - cfg->n_colocated - cfg->n_prefill) %
                   (uint32_t)s->n_shards;
        snprintf(id, sizeof(id), "n%zu", j);
        h = (bt_node_hello_t){id, role, SIM_MODEL, "sim", NULL, 0,
                              c->total_blocks, c->block_size, c->max_batch,
                              c->max_prefill_tokens, BT_KV_DTYPE_F32,
                              SIM_NUMERICS, NULL, NULL};
        if (bt_registry_add(s->shards[n->shard].reg, &h, 0,
                            (void *)(uintptr_t)j, &n->rn, err,
                            err_size) != BT_OK) {
            return -1;
        }
        if (cfg->prefix_cache && (role & BT_NODE_ROLE_PREFILL)) {
            n->cache = bt_sim_lru_create(c->total_blocks);
            if (n->cache == NULL) {
                snprintf(err, err_size, "out of memory (node caches)");
                return -1;
            }
        }
        /* reports spread over the interval, as nodes started apart */
        sim_push(s, cfg->heartbeat_s * (double)(j + 1) / (double)s->n_nodes,
                 EV_REPORT, (uint32_t)j, 0);
    }
    return 0;
}

static void sim_cleanup(sim_t *s)
{
    for (size_t j = 0; s->nodes != NULL && j < s->n_nodes; j++) {
        bt_sim_lru_destroy(s->nodes[j].cache);
        free(s->nodes[j].pq.v);
        free(s->nodes[j].run);
    }
    for (size_t k = 0; s->shards != NULL && k < s->n_shards; k++) {
        if (s->shards[k].kvs != NULL) {
            s->st->kvstore_evictions += bt_sim_kvs_evictions(s->shards[k].kvs);
        }
        bt_sim_kvs_destroy(s->shards[k].kvs);
        bt_registry_destroy(s->shards[k].reg);
        free(s->shards[k].wq.v);
    }
    for (size_t i = 0; s->reqs != NULL && i < s->wl->n; i++) {
        free(s->reqs[i].keys);
        free(s->reqs[i].tokens);
    }
    free(s->nodes);
    free(s->shards);
    free(s->reqs);
    free(s->prompt);
    bt_sim_evq_free(&s->q);
}

int bt_sim_run(const bt_sim_cfg_t *cfg, const bt_wl_t *wl, bt_rep_rec_t *recs,
               bt_sim_stats_t *st, char *err, size_t err_size)
{
    sim_t s;
    bt_sim_ev_t ev;
    uint64_t next_progress = bt_now_ns() + 1000000000ull;
    int rc = -1;

    memset(&s, 0, sizeof(s));
    memset(st, 0, sizeof(*st));
    memset(recs, 0, wl->n * sizeof(*recs));
    s.cfg = cfg;
    s.c = cfg->cost;
    s.wl = wl;
    s.recs = recs;
    s.st = st;
    s.weights = cfg->weights;
    if (s.weights.stall_budget_ms == NULL) {
        s.weights.stall_budget_ms = sim_stall_budget;
        s.weights.stall_arg = &s;
    }
    bt_sim_evq_init(&s.q);
    if (sim_setup(&s, err, err_size) != 0) {
        goto err_out;
    }
    if (wl->open) {
        if (wl->n > 0) {
            sim_issue(&s, 0, wl->reqs[0].t_s);
            s.issued = 1;
        }
    } else {
        for (; s.issued < wl->n && s.issued < wl->concurrency; s.issued++) {
            sim_issue(&s, s.issued, 0);
        }
    }
    while (s.finished < wl->n && !s.oom && bt_sim_evq_pop(&s.q, &ev)) {
        switch (ev.kind) {
        case EV_ARRIVE:
            sim_arrive(&s, ev.a);
            break;
        case EV_PLACE:
            sim_place_new(&s, ev.a);
            break;
        case EV_STEP_DONE:
            step_done(&s, ev.a, ev.b);
            break;
        case EV_KV_DONE:
            sim_kv_done(&s, ev.a);
            break;
        case EV_REPORT:
            sim_report(&s, ev.a);
            break;
        case EV_QUEUE_TIMEOUT:
            if (s.reqs[ev.a].state == RQ_QUEUED) {
                sim_finish(&s, ev.a, false);   /* the router's 429 */
            }
            break;
        default:
            break;
        }
        if (cfg->progress != NULL && (s.q.popped & 0xffff) == 0 &&
            bt_now_ns() >= next_progress) {
            cfg->progress(cfg->progress_arg, s.finished, wl->n);
            next_progress = bt_now_ns() + 1000000000ull;
        }
    }
    st->events = s.q.popped;
    if (s.oom) {
        snprintf(err, err_size, "out of memory");
        goto err_out;
    }
    if (s.finished < wl->n) {
        snprintf(err, err_size, "the simulation stalled with %zu of %zu "
                 "requests finished", s.finished, wl->n);
        goto err_out;
    }
    rc = 0;
err_out:
    sim_cleanup(&s);
    return rc;
}

size_t bt_sim_draws(const bt_sim_cost_t *c, size_t want)
{
    return c->n_noise > 0 && want > 1 ? want : 1;
}

int bt_sim_run_draws(const bt_sim_cfg_t *cfg, size_t want, const bt_wl_t *wl,
                     bt_rep_rec_t *recs, bt_sim_stats_t *st, double *sim_s_p,
                     char *err, size_t err_size)
{
    const size_t draws = bt_sim_draws(cfg->cost, want);
    bt_sim_cfg_t one = *cfg;
    bt_sim_stats_t other;

    *sim_s_p = 0;
    for (size_t k = 0; k < draws; k++) {
        bt_sim_stats_t *sk = k == 0 ? st : &other;

        /* each draw slows the same requests by other factors */
        one.noise_draw = k;
        if (bt_sim_run(&one, wl, recs + k * wl->n, sk, err, err_size) != 0) {
            return -1;
        }
        *sim_s_p += sk->sim_s;
    }
    return 0;
}
