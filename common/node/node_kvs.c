/* The node side of the kvstore tier (node_kvs.h). */
#include "node_kvs.h"

#include "node.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/spares.h"
#include "kvclient/kvc.h"
#include "kvspec/kv_shard.h"

#include <stdlib.h>
#include <string.h>

/* A replica and its circuit breaker: once an operation finds it
 * unreachable (deadline, refused, connection lost) it is skipped, every
 * read a miss at once and every publish held (bt_kvs_hold), while a
 * background probe (a one-hash Lookup) asks it again after a backoff that
 * doubles on each failed probe (BT_NODE_KVS_BACKOFF_MIN_MS .. _MAX_MS);
 * the probe's answer closes the breaker and sends what was held. So a stopped store costs the requests that
 * met it before it was known down one --kvstore-timeout, and no request
 * after that. */
typedef struct {
    struct bt_node_kvs *k;
    uint32_t   idx;
    char      *target;
    bt_kvc_t  *kvc;
    bool       down;           /* skipped until a probe answers */
    bool       probe_out;      /* a probe is in flight */
    uint64_t   backoff_ms;
    struct event *probe_ev;
    struct bt_kvs_put *held;   /* publishes waiting while down, oldest first */
    struct bt_kvs_put *held_tail;
} bt_kvs_replica_t;

#define BT_NODE_KVS_BACKOFF_MIN_MS 1000u
#define BT_NODE_KVS_BACKOFF_MAX_MS 30000u
/* Publishing is off the request path: a put gets this long, not
 * --kvstore-timeout (a put is three steps: Reserve, the UCX write,
 * Commit, each queued behind the store's other work under load; with the
 * read deadline of 2 s, commits timed out in bursts). The bytes in flight
 * stay bounded by BT_NODE_KVS_MAX_STAGED. */
#define BT_NODE_KVS_PUT_TIMEOUT_MS 15000u
/* At most one warning about lost publishes per this long. */
#define BT_NODE_KVS_WARN_EVERY_MS  10000u

struct bt_node_kvs {
    bt_kvs_replica_t  rep[BT_NODE_KVS_MAX_REPLICAS];
    size_t            n;
    bt_kv_shard_t    *shard;       /* indexes follow the sorted targets */
    bt_kv_geom_t      geom;
    uint64_t          block_bytes;
    uint64_t          staged;      /* bytes of puts in flight or held */
    uint64_t          backlog;     /* blocks of puts in flight or held */
    int64_t           timeout_ms;  /* --kvstore-timeout */
    uint64_t          lost_since;  /* blocks of failed publishes, unlogged */
    uint64_t          lost_warned_ms;
    bt_counter_t     *c_hit, *c_miss, *c_pub, *c_drop, *c_err;
    bt_counter_t     *c_skip, *c_pub_failed, *c_avoided;
    bt_gauge_t       *g_backlog;
    bt_histogram_t   *h_pub;       /* publish call -> the store's answer */
    bt_spares_t       spares;      /* the puts' staging buffers, for reuse */
};

/* One put: a run of consecutive blocks with one owner, everything it
 * needs copied, so that it can wait (held) while its replica is down. */
typedef struct bt_kvs_put {
    bt_node_t *node;
    uint8_t   *buf;      /* n * block_bytes, the blocks' bytes */
    size_t     buf_cap;  /* its size (node_kvs spares) */
    void     **data;     /* n pointers into buf */
    uint8_t   *hashes;   /* n * 32 */
    uint32_t  *tokens;   /* n * block_size */
    uint8_t    parent[BT_KV_HASH_LEN];
    uint64_t   bytes;
    uint32_t   n;
    uint32_t   r;        /* the replica */
    bool       requeued; /* held again once after it met a dead store */
    uint64_t   t0_us;    /* when it was handed over */
    struct bt_kvs_put *next;   /* on its replica's held list */
} bt_kvs_put_t;

static void bt_kvs_put_free(bt_kvs_put_t *p)
{
    if (p != NULL) {
        bt_spares_put(p->node != NULL && p->node->kvs != NULL
                      ? &p->node->kvs->spares : NULL, p->buf, p->buf_cap);
        free(p->data);
        free(p->hashes);
        free(p->tokens);
        free(p);
    }
}

/* ---- circuit breaker ------------------------------------------------ */

/* Whether an operation may go to replica r now (else it is counted). */
static bool bt_kvs_rep_allow(bt_node_kvs_t *k, uint32_t r)
{
    if (!k->rep[r].down) {
        return true;
    }
    bt_counter_inc(k->c_skip);
    return false;
}

static bool bt_kvs_unreachable(bt_status_t st)
{
    return st == BT_ERR_TIMED_OUT || st == BT_ERR_PEER_UNREACHABLE ||
           st == BT_ERR_PEER_DIED;
}

static void bt_kvs_probe_arm(bt_kvs_replica_t *rep)
{
    struct timeval tv = { (time_t)(rep->backoff_ms / 1000),
                          (suseconds_t)((rep->backoff_ms % 1000) * 1000) };

    evtimer_add(rep->probe_ev, &tv);
}

/* An operation on replica r ended with `st`: opens the breaker when it
 * found the replica unreachable. */
static void bt_kvs_rep_result(bt_node_kvs_t *k, uint32_t r, bt_status_t st)
{
    bt_kvs_replica_t *rep = &k->rep[r];

    if (!bt_kvs_unreachable(st) || rep->down) {
        return;
    }
    rep->down = true;
    rep->backoff_ms = BT_NODE_KVS_BACKOFF_MIN_MS;
    bt_kvs_probe_arm(rep);
    bt_warn("kvstore %s: unreachable (%s): skipped until it answers a probe "
            "(first in %llu ms)", rep->target, bt_status_str(st),
            (unsigned long long)rep->backoff_ms);
}

static void bt_kvs_release_held(bt_node_kvs_t *k, uint32_t r);

static void bt_kvs_probe_done(void *arg, bt_status_t st, size_t n_matched)
{
    bt_kvs_replica_t *rep = arg;

    (void)n_matched;
    rep->probe_out = false;
    if (rep->k == NULL) {
        return;   /* shutting down */
    }
    if (!bt_kvs_unreachable(st)) {
        rep->down = false;
        bt_info("kvstore %s: reachable again", rep->target);
        bt_kvs_release_held(rep->k, rep->idx);
        return;
    }
    rep->backoff_ms = rep->backoff_ms * 2 > BT_NODE_KVS_BACKOFF_MAX_MS
                      ? BT_NODE_KVS_BACKOFF_MAX_MS : rep->backoff_ms * 2;
    bt_debug("kvstore %s: probe: %s, next in %llu ms", rep->target,
             bt_status_str(st), (unsigned long long)rep->backoff_ms);
    bt_kvs_probe_arm(rep);
}

static void bt_kvs_probe_ev(evutil_socket_t fd, short what, void *arg)
{
    bt_kvs_replica_t *rep = arg;
    static const uint8_t zero[BT_KV_HASH_LEN];

    (void)fd;
    (void)what;
    if (!rep->down || rep->probe_out) {
        return;
    }
    if (bt_kvc_lookup(rep->kvc, zero, 1, NULL, 0,
                      (uint64_t)rep->k->timeout_ms, bt_kvs_probe_done,
                      rep) == BT_OK) {
        rep->probe_out = true;
    } else {
        bt_kvs_probe_arm(rep);
    }
}

/* Blocks that a publish lost: counted, and one warning per
 * BT_NODE_KVS_WARN_EVERY_MS with how many since the last. */
static void bt_kvs_pub_lost(bt_node_kvs_t *k, uint32_t n, const char *why)
{
    const uint64_t now = bt_now_ms();

    bt_counter_add(k->c_pub_failed, n);
    k->lost_since += n;
    if (now - k->lost_warned_ms >= BT_NODE_KVS_WARN_EVERY_MS) {
        bt_warn("kvstore: %llu blocks not published in the last %llu s "
                "(last: %s)", (unsigned long long)k->lost_since,
                (unsigned long long)(k->lost_warned_ms != 0
                                     ? (now - k->lost_warned_ms) / 1000 : 0),
                why);
        k->lost_since = 0;
        k->lost_warned_ms = now;
    }
}

/* ---- setup ---------------------------------------------------------- */

static bt_status_t bt_kvs_parse(bt_node_t *node, char **targets, size_t *n_p)
{
    const char *s = node->cfg.kvstore;
    size_t n = 0;

    while (s != NULL && *s != '\0') {
        const char *e = strchr(s, ',');
        size_t len = e != NULL ? (size_t)(e - s) : strlen(s);

        if (len == 0 || len > BT_KV_SHARD_MAX_ID ||
            n == BT_NODE_KVS_MAX_REPLICAS) {
            bt_error("--kvstore: expected 1 to %d comma-separated targets of "
                     "at most %d bytes", BT_NODE_KVS_MAX_REPLICAS,
                     BT_KV_SHARD_MAX_ID);
            goto err;
        }
        if ((targets[n] = strndup(s, len)) == NULL) {
            goto err;
        }
        n++;
        /* the same rule as --router: plaintext only on loopback or when
         * asked for (--insecure); with --tls-* the store is called over TLS */
        {
            char why[256];

            if (bt_rpc_tls_cfg_plain_check(&node->cfg.tls, targets[n - 1],
                                           "kvstore", why, sizeof(why)) != BT_OK) {
                bt_error("%s", why);
                goto err;
            }
        }
        s = e != NULL ? e + 1 : s + len;
    }
    *n_p = n;
    return BT_OK;
err:
    while (n > 0) {
        free(targets[--n]);
    }
    return BT_ERR_INVALID_ARG;
}

bt_status_t bt_node_kvs_init(bt_node_t *node)
{
    const bt_kv_geom_t *g = bt_kvpool_geom(node->pool);
    char *targets[BT_NODE_KVS_MAX_REPLICAS];
    bt_node_kvs_t *k;
    size_t n = 0;
    bt_status_t s;

    if ((s = bt_kvs_parse(node, targets, &n)) != BT_OK || n == 0) {
        return s;
    }
    k = calloc(1, sizeof(*k));
    if (k != NULL) {
        bt_spares_init(&k->spares, BT_NODE_KVS_SPARE_BYTES);
    }
    if (k == NULL ||
        bt_kv_shard_create((const char *const *)targets, n, &k->shard) != BT_OK) {
        s = k == NULL ? BT_ERR_NO_MEMORY : BT_ERR_INVALID_ARG;
        goto err;
    }
    k->geom = *g;
    k->block_bytes = bt_kvpool_export_bytes(node->pool, 1);
    k->timeout_ms = node->cfg.kvstore_timeout_ms;
    /* replica i is the shard's i-th (sorted) id */
    for (size_t i = 0; i < n; i++) {
        bt_kvc_opts_t o = { bt_kv_shard_id(k->shard, i), node->model_name,
                            node->node_id,
                            (uint64_t)node->cfg.kvstore_timeout_ms,
                            bt_rpc_tls_cfg_client(&node->cfg.tls) };

        k->rep[i].target = strdup(bt_kv_shard_id(k->shard, i));
        k->rep[i].k = k;
        k->rep[i].idx = (uint32_t)i;
        k->rep[i].backoff_ms = BT_NODE_KVS_BACKOFF_MIN_MS;
        k->rep[i].probe_ev = evtimer_new(node->base, bt_kvs_probe_ev,
                                         &k->rep[i]);
        if (k->rep[i].target == NULL || k->rep[i].probe_ev == NULL ||
            bt_kvc_create(node->base, node->client, node->xfer, &o,
                          &k->rep[i].kvc) != BT_OK) {
            s = BT_ERR_INVALID_ARG;
            k->n = i + 1;
            goto err;
        }
        k->n = i + 1;
    }
    k->c_hit = bt_metrics_counter(node->metrics,
        "baton_node_kvstore_hit_blocks_total",
        "prompt blocks read from the kvstore instead of computed", NULL);
    k->c_miss = bt_metrics_counter(node->metrics,
        "baton_node_kvstore_miss_blocks_total",
        "prompt blocks asked of the kvstore and computed", NULL);
    k->c_pub = bt_metrics_counter(node->metrics,
        "baton_node_kvstore_published_blocks_total",
        "blocks sent to the kvstore", NULL);
    k->c_drop = bt_metrics_counter(node->metrics,
        "baton_node_kvstore_publish_dropped_blocks_total",
        "blocks not published: too many bytes in flight or waiting for "
        "a replica that is down", NULL);
    k->c_err = bt_metrics_counter(node->metrics,
        "baton_node_kvstore_errors_total",
        "kvstore operations that failed (a miss, never a request error)", NULL);
    k->c_skip = bt_metrics_counter(node->metrics,
        "baton_node_kvstore_skipped_total",
        "kvstore operations not tried: the replica was found unreachable "
        "and waits for its backoff", NULL);
    k->c_avoided = bt_metrics_counter(node->metrics,
        "baton_node_kvstore_fetch_avoided_total",
        "prefills that did not ask the kvstore: the router's prefix index "
        "showed it holds nothing past this node's own cache", NULL);
    k->c_pub_failed = bt_metrics_counter(node->metrics,
        "baton_node_kvstore_publish_failed_total",
        "blocks whose publish failed (store error, deadline, unreachable "
        "again after waiting for it)", NULL);
    k->g_backlog = bt_metrics_gauge(node->metrics,
        "baton_node_kvstore_publish_backlog_blocks",
        "blocks handed to a publish and not yet answered by the kvstore "
        "(what a failover now would not find)", NULL);
    k->h_pub = bt_metrics_histogram(node->metrics,
        "baton_node_kvstore_publish_seconds",
        "from a block's publish to the kvstore's commit answer",
        NULL, bt_metrics_latency_bounds, bt_metrics_latency_n_bounds);
    node->kvs = k;
    for (size_t i = 0; i < n; i++) {
        free(targets[i]);
    }
    bt_info("kvstore: %zu replica%s (%s%s), blocks of %llu bytes", k->n,
            k->n == 1 ? "" : "s", k->rep[0].target, k->n > 1 ? ", ..." : "",
            (unsigned long long)k->block_bytes);
    return BT_OK;
err:
    for (size_t i = 0; i < n; i++) {
        free(targets[i]);
    }
    if (k != NULL) {
        node->kvs = k;
        bt_node_kvs_destroy(node);
    }
    bt_error("kvstore: cannot set up the clients of --kvstore %s",
             node->cfg.kvstore);
    return s;
}

void bt_node_kvs_destroy(bt_node_t *node)
{
    bt_node_kvs_t *k = node->kvs;

    if (k == NULL) {
        return;
    }
    for (size_t i = 0; i < k->n; i++) {
        while (k->rep[i].held != NULL) {
            bt_kvs_put_t *h = k->rep[i].held;

            k->rep[i].held = h->next;
            bt_kvs_put_free(h);
        }
        if (k->rep[i].probe_ev != NULL) {
            event_free(k->rep[i].probe_ev);
        }
        /* an operation still in flight keeps its client (exit path only) */
        if (k->rep[i].kvc != NULL && bt_kvc_inflight(k->rep[i].kvc) == 0) {
            bt_kvc_destroy(k->rep[i].kvc);
        }
        free(k->rep[i].target);
        k->rep[i].target = NULL;
    }
    bt_kv_shard_destroy(k->shard);
    bt_spares_clear(&k->spares);
    node->kvs = NULL;
    for (size_t i = 0; i < k->n; i++) {
        if (k->rep[i].probe_out) {
            /* its callback still names the replica (exit path only) */
            for (size_t j = 0; j < k->n; j++) {
                k->rep[j].k = NULL;
            }
            return;
        }
    }
    free(k);
}

const char *bt_node_kvs_target(const bt_node_t *node, size_t i)
{
    return node->kvs != NULL && i < node->kvs->n ? node->kvs->rep[i].target
                                                 : NULL;
}

void bt_node_kvs_count_avoided(bt_node_t *node)
{
    if (node->kvs != NULL) {
        bt_counter_inc(node->kvs->c_avoided);
    }
}

bool bt_node_kvs_on(const bt_node_t *node)
{
    return node->kvs != NULL;
}

/* ---- fetch ---------------------------------------------------------- */

typedef struct {
    bt_node_t           *node;
    bt_kvseq_t          *seq;
    uint32_t             n;          /* blocks asked for */
    uint8_t             *hashes;     /* n * 32 */
    uint32_t            *tokens;     /* n * block_size */
    uint8_t             *buf;        /* n * block_bytes */
    uint32_t            *owner;      /* replica of block i */
    uint32_t            *rank;       /* position of block i in its replica's list */
    /* per replica: its blocks' hashes, tokens and destinations, in order */
    uint8_t             *r_hashes[BT_NODE_KVS_MAX_REPLICAS];
    uint32_t            *r_tokens[BT_NODE_KVS_MAX_REPLICAS];
    void               **r_dst[BT_NODE_KVS_MAX_REPLICAS];
    uint32_t             r_n[BT_NODE_KVS_MAX_REPLICAS];
    size_t               r_got[BT_NODE_KVS_MAX_REPLICAS];
    size_t               pending;
    bt_node_kvs_fetch_cb cb;
    void                *arg;
} bt_kvs_fetch_t;

typedef struct {
    bt_kvs_fetch_t *f;
    uint32_t        r;
} bt_kvs_part_t;

static void bt_kvs_fetch_free(bt_kvs_fetch_t *f)
{
    for (size_t r = 0; r < BT_NODE_KVS_MAX_REPLICAS; r++) {
        free(f->r_hashes[r]);
        free(f->r_tokens[r]);
        free(f->r_dst[r]);
    }
    free(f->hashes);
    free(f->tokens);
    free(f->buf);
    free(f->owner);
    free(f->rank);
    free(f);
}

/* Every replica answered: the run of blocks each owner has, in order,
 * goes into reserved pool blocks and joins the sequence. */
static void bt_kvs_fetch_finish(bt_kvs_fetch_t *f)
{
    bt_node_t *node = f->node;
    bt_node_kvs_t *k = node->kvs;
    const uint32_t bs = k->geom.block_size;
    uint32_t got = 0, *ids = NULL;

    while (got < f->n && f->rank[got] < f->r_got[f->owner[got]]) {
        got++;
    }
    if (got > 0 && ((ids = malloc(got * sizeof(*ids))) == NULL ||
                    bt_kvpool_reserve(node->pool, got, ids) != BT_OK)) {
        bt_warn("kvstore: no room in the pool for %u fetched blocks", got);
        got = 0;
    }
    for (uint32_t i = 0; i < got; i++) {
        if (bt_kvpool_import(node->pool, &ids[i], 1,
                             f->buf + (size_t)i * k->block_bytes,
                             k->block_bytes) != BT_OK) {
            bt_kvpool_reserve_abort(node->pool, ids, got);
            got = 0;
            break;
        }
    }
    if (got > 0 && bt_kvseq_commit_reserved(f->seq, ids, got, f->tokens,
                                            got * bs) != BT_OK) {
        bt_kvpool_reserve_abort(node->pool, ids, got);
        got = 0;
    }
    free(ids);
    bt_counter_add(k->c_hit, got);
    bt_counter_add(k->c_miss, f->n - got);
    f->cb(f->arg, got);
    bt_kvs_fetch_free(f);
}

static void bt_kvs_release_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_kvs_fetch_t *f = arg;

    (void)fd;
    (void)what;
    if (--f->pending == 0) {
        bt_kvs_fetch_finish(f);
    }
}

static void bt_kvs_get_cb(void *arg, bt_status_t status, size_t n_got)
{
    bt_kvs_part_t *p = arg;
    bt_kvs_fetch_t *f = p->f;

    bt_kvs_rep_result(f->node->kvs, p->r, status);
    if (status != BT_OK) {
        bt_counter_inc(f->node->kvs->c_err);
        bt_debug("kvstore: get from %s: %s (a miss)",
                 f->node->kvs->rep[p->r].target, bt_status_str(status));
        n_got = 0;
    }
    f->r_got[p->r] = n_got;
    free(p);
    if (--f->pending == 0) {
        bt_kvs_fetch_finish(f);
    }
}

bt_status_t bt_node_kvs_fetch(bt_node_t *node, bt_kvseq_t *seq,
                              const uint32_t *tokens, uint32_t from,
                              uint32_t to, uint64_t timeout_ms,
                              bt_node_kvs_fetch_cb cb, void *arg)
{
    bt_node_kvs_t *k = node->kvs;
    const uint32_t bs = k != NULL ? k->geom.block_size : 0;
    const uint8_t *parent;
    bt_kvs_fetch_t *f;
    uint32_t n = to > from ? to - from : 0;

    if (k == NULL || n == 0 ||
        (parent = bt_kvseq_parent_hash(seq, from)) == NULL) {
        return BT_ERR_INVALID_ARG;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    f->node = node;
    f->seq = seq;
    f->n = n;
    f->cb = cb;
    f->arg = arg;
    f->hashes = malloc((size_t)n * BT_KV_HASH_LEN);
    f->tokens = malloc((size_t)n * bs * sizeof(uint32_t));
    f->buf = malloc((size_t)n * k->block_bytes);
    f->owner = malloc(n * sizeof(uint32_t));
    f->rank = malloc(n * sizeof(uint32_t));
    if (f->hashes == NULL || f->tokens == NULL || f->buf == NULL ||
        f->owner == NULL || f->rank == NULL) {
        goto err;
    }
    memcpy(f->tokens, tokens + (size_t)from * bs, (size_t)n * bs * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *h = f->hashes + (size_t)i * BT_KV_HASH_LEN;

        if (bt_kv_hash_block(i == 0 ? parent : h - BT_KV_HASH_LEN,
                             f->tokens + (size_t)i * bs, bs, h) != BT_OK) {
            goto err;
        }
        f->owner[i] = (uint32_t)bt_kv_shard_owner(k->shard, h);
        f->rank[i] = f->r_n[f->owner[i]]++;
    }
    for (uint32_t r = 0; r < k->n; r++) {
        if (f->r_n[r] == 0) {
            continue;
        }
        f->r_hashes[r] = malloc((size_t)f->r_n[r] * BT_KV_HASH_LEN);
        f->r_tokens[r] = malloc((size_t)f->r_n[r] * bs * sizeof(uint32_t));
        f->r_dst[r] = malloc(f->r_n[r] * sizeof(void *));
        if (f->r_hashes[r] == NULL || f->r_tokens[r] == NULL ||
            f->r_dst[r] == NULL) {
            goto err;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t r = f->owner[i], q = f->rank[i];

        memcpy(f->r_hashes[r] + (size_t)q * BT_KV_HASH_LEN,
               f->hashes + (size_t)i * BT_KV_HASH_LEN, BT_KV_HASH_LEN);
        memcpy(f->r_tokens[r] + (size_t)q * bs, f->tokens + (size_t)i * bs,
               bs * sizeof(uint32_t));
        f->r_dst[r][q] = f->buf + (size_t)i * k->block_bytes;
    }
    /* one get per replica that owns blocks; each callback counts down,
     * and so does this call's own hold, released from the loop so that
     * `cb` never runs inside the call even when no get could start */
    f->pending = 1;
    for (uint32_t r = 0; r < k->n; r++) {
        bt_kvc_get_t g;
        bt_kvs_part_t *p;

        if (f->r_n[r] == 0) {
            continue;
        }
        if (!bt_kvs_rep_allow(k, r)) {
            f->r_got[r] = 0;   /* a miss, at once */
            continue;
        }
        memset(&g, 0, sizeof(g));
        g.hashes = f->r_hashes[r];
        g.tokens = f->r_tokens[r];
        g.block_size = bs;
        g.block_bytes = k->block_bytes;
        g.dst = f->r_dst[r];
        g.n = f->r_n[r];
        g.timeout_ms = timeout_ms;
        p = malloc(sizeof(*p));
        if (p != NULL) {
            p->f = f;
            p->r = r;
        }
        if (p == NULL || bt_kvc_get(k->rep[r].kvc, &g, bt_kvs_get_cb, p) != BT_OK) {
            free(p);
            bt_counter_inc(k->c_err);
            f->r_got[r] = 0;
            continue;
        }
        f->pending++;
    }
    if (event_base_once(node->base, -1, EV_TIMEOUT, bt_kvs_release_cb, f,
                        &(struct timeval){ 0, 0 }) != 0) {
        f->pending--; /* cannot happen with a live base; the gets finish */
    }
    return BT_OK;
err:
    bt_kvs_fetch_free(f);
    return BT_ERR_NO_MEMORY;
}

/* ---- publish -------------------------------------------------------- */

/* A put leaves the publish path (answered, lost or dropped). */
static void bt_kvs_put_done(bt_node_kvs_t *k, bt_kvs_put_t *p)
{
    k->staged -= p->bytes;
    k->backlog -= p->n;
    bt_gauge_set(k->g_backlog, (double)k->backlog);
    bt_kvs_put_free(p);
}

/* The oldest held put of any replica goes, counted as dropped: the bytes
 * in flight and held stay under BT_NODE_KVS_MAX_STAGED. false: none held. */
static bool bt_kvs_drop_oldest_held(bt_node_kvs_t *k)
{
    bt_kvs_put_t *oldest = NULL;
    bt_kvs_replica_t *from = NULL;

    for (size_t i = 0; i < k->n; i++) {
        bt_kvs_put_t *h = k->rep[i].held;

        if (h != NULL && (oldest == NULL || h->t0_us < oldest->t0_us)) {
            oldest = h;
            from = &k->rep[i];
        }
    }
    if (oldest == NULL) {
        return false;
    }
    from->held = oldest->next;
    if (from->held == NULL) {
        from->held_tail = NULL;
    }
    bt_counter_add(k->c_drop, oldest->n);
    bt_kvs_put_done(k, oldest);
    return true;
}

/* While its replica is down a put waits, in order, until a probe finds
 * the replica back (bt_kvs_release_held): a store that restarts loses
 * none of what the nodes published meanwhile, up to the bound. */
static void bt_kvs_hold(bt_node_kvs_t *k, bt_kvs_put_t *p)
{
    bt_kvs_replica_t *rep = &k->rep[p->r];

    p->next = NULL;
    if (rep->held_tail != NULL) {
        rep->held_tail->next = p;
    } else {
        rep->held = p;
    }
    rep->held_tail = p;
}

static void bt_kvs_put_send(bt_node_kvs_t *k, bt_kvs_put_t *p);

static void bt_kvs_put_cb(void *arg, bt_status_t status,
                          const bt_kvc_put_result_t *r)
{
    bt_kvs_put_t *p = arg;
    bt_node_kvs_t *k = p->node->kvs;

    if (k == NULL) {
        bt_kvs_put_free(p);   /* shutting down */
        return;
    }
    bt_histogram_observe(k->h_pub, (double)(bt_now_us() - p->t0_us) / 1e6);
    bt_kvs_rep_result(k, p->r, status);
    if (status != BT_OK && bt_kvs_unreachable(status) && !p->requeued &&
        k->rep[p->r].down) {
        /* the put that found the store gone waits for it like the rest */
        p->requeued = true;
        bt_kvs_hold(k, p);
        return;
    }
    if (status != BT_OK) {
        bt_counter_inc(k->c_err);
        bt_debug("kvstore: publish to %s failed: %s", k->rep[p->r].target,
                 bt_status_str(status));
        bt_kvs_pub_lost(k, p->n, bt_status_str(status));
    } else if (r != NULL) {
        bt_counter_add(k->c_pub, r->committed);
    }
    bt_kvs_put_done(k, p);
}

/* To its replica now, or held while the replica is down. */
static void bt_kvs_put_send(bt_node_kvs_t *k, bt_kvs_put_t *p)
{
    bt_kvc_put_t put;

    if (k->rep[p->r].down) {
        bt_kvs_hold(k, p);
        return;
    }
    memset(&put, 0, sizeof(put));
    put.geom = k->geom;
    put.block_bytes = k->block_bytes;
    put.parent = p->parent;
    put.hashes = p->hashes;
    put.tokens = p->tokens;
    put.data = p->data;
    put.n = p->n;
    put.timeout_ms = BT_NODE_KVS_PUT_TIMEOUT_MS;
    if (bt_kvc_put(k->rep[p->r].kvc, &put, bt_kvs_put_cb, p) != BT_OK) {
        bt_counter_inc(k->c_err);
        bt_kvs_pub_lost(k, p->n, "the put was refused");
        bt_kvs_put_done(k, p);
    }
}

/* Replica r answers again: what waited for it goes now, oldest first. */
static void bt_kvs_release_held(bt_node_kvs_t *k, uint32_t r)
{
    bt_kvs_replica_t *rep = &k->rep[r];
    bt_kvs_put_t *p = rep->held;
    size_t n = 0;

    rep->held = rep->held_tail = NULL;
    while (p != NULL) {
        bt_kvs_put_t *next = p->next;

        n += p->n;
        bt_kvs_put_send(k, p);
        p = next;
    }
    if (n > 0) {
        bt_info("kvstore %s: %zu held blocks published", rep->target, n);
    }
}

/* One put of the consecutive blocks [i0, i1) of `seq`, all owned by
 * replica r (a put is one hash chain). */
static void bt_kvs_put_run(bt_node_t *node, const bt_kvseq_t *seq,
                           const uint32_t *tokens, uint32_t from, uint32_t i0,
                           uint32_t i1, uint32_t r)
{
    bt_node_kvs_t *k = node->kvs;
    const uint32_t bs = k->geom.block_size, n = i1 - i0;
    const uint32_t *ids = bt_kvseq_blocks(seq);
    const uint64_t bytes = (uint64_t)n * k->block_bytes;
    bt_kvs_put_t *p;

    /* past the bound the oldest held publishes make room, then new ones
     * are dropped */
    while (k->staged + bytes > BT_NODE_KVS_MAX_STAGED &&
           bt_kvs_drop_oldest_held(k)) {
    }
    if (n > 64 || k->staged + bytes > BT_NODE_KVS_MAX_STAGED) {
        bt_counter_add(k->c_drop, n);
        return;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL ||
        (p->buf = bt_spares_get(&k->spares, (size_t)bytes, &p->buf_cap)) ==
            NULL ||
        (p->data = malloc(n * sizeof(void *))) == NULL ||
        (p->hashes = malloc((size_t)n * BT_KV_HASH_LEN)) == NULL ||
        (p->tokens = malloc((size_t)n * bs * sizeof(uint32_t))) == NULL) {
        goto err;
    }
    p->node = node;
    p->bytes = bytes;
    p->n = n;
    p->r = r;
    p->t0_us = bt_now_us();
    memcpy(p->parent, bt_kvseq_parent_hash(seq, i0), BT_KV_HASH_LEN);
    memcpy(p->tokens, tokens + (size_t)(i0 - from) * bs,
           (size_t)n * bs * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++) {
        p->data[i] = p->buf + (size_t)i * k->block_bytes;
        memcpy(p->hashes + (size_t)i * BT_KV_HASH_LEN,
               bt_kvseq_block_hash(seq, i0 + i), BT_KV_HASH_LEN);
        if (bt_kvpool_export(node->pool, &ids[i0 + i], 1, p->data[i],
                             k->block_bytes) != BT_OK) {
            goto err;
        }
    }
    k->staged += bytes;
    k->backlog += n;
    bt_gauge_set(k->g_backlog, (double)k->backlog);
    bt_kvs_put_send(k, p);
    return;
err:
    bt_kvs_put_free(p);
}

void bt_node_kvs_publish(bt_node_t *node, const bt_kvseq_t *seq,
                         const uint32_t *tokens, uint32_t from, uint32_t to)
{
    bt_node_kvs_t *k = node->kvs;
    uint32_t i0 = from, r0 = 0;

    if (k == NULL || to <= from || bt_kvseq_block_hash(seq, to - 1) == NULL ||
        bt_kvseq_parent_hash(seq, from) == NULL) {
        return;
    }
    /* runs of consecutive blocks with one owner, at most 64 per put */
    for (uint32_t i = from; i <= to; i++) {
        uint32_t r = i < to ? (uint32_t)bt_kv_shard_owner(
                                  k->shard, bt_kvseq_block_hash(seq, i))
                            : UINT32_MAX;

        if (i == from) {
            r0 = r;
            continue;
        }
        if (r != r0 || i - i0 == 64) {
            bt_kvs_put_run(node, seq, tokens, from, i0, i, r0);
            i0 = i;
            r0 = r;
        }
    }
}
