/* Expert devices: copies of the experts, dispatch of a MoE layer's rows,
 * staging and switching plans (experts.h). */
#include "experts.h"

#include "base/log.h"
#include "ffn.h"
#include "parallel.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One expert's weights on one device. */
typedef struct {
    bt_ffn_weights_t w;
    void            *mem;
} ep_copy_t;

/* A plan and the copies it runs on: copies[(l * E + e) * N + d]. A copy
 * only ever sits at its own index, so two placements share it when they
 * hold the same pointer there. */
typedef struct {
    bt_ep_plan_t plan;
    ep_copy_t  **copies;
} ep_placement_t;

typedef struct {
    void  *be;
    int    cap;          /* rows the scratch holds */
    float *xe, *ye;      /* [cap][hidden] */
    float *g, *u;        /* [cap][moe_ffn] */
    int   *rows;         /* [cap] */
} ep_device_t;

struct bt_ep {
    const bt_model_t       *m;
    const bt_backend_ops_t *ops;
    int                     n, slots;
    ep_device_t             dev[BT_EP_MAX_DEVICES];
    bt_par_t               *par;     /* one thread per device */
    ep_placement_t         *cur;     /* stepping thread */
    /* the layer being run (stepping thread, read by device tasks) */
    int                     l, T, K;
    const int              *sel;
    const float            *xn;
    float                  *slot_out;
    int                    *assign;  /* [rows] device of each row */
    int                    *order;   /* [rows] rows by expert, then row */
    int                    *start;   /* [E + 1] into order */
    uint64_t               *turn;    /* [n_layers][E] rows an expert ran,
                                      * so its replicas take rows in turn
                                      * across steps, not within one only */
    int                     cap;
    /* staging */
    pthread_mutex_t         stage_mu;
    bool                    staging;
    ep_placement_t         *staged;
    /* loads since the last reset: [n_layers][n] rows */
    pthread_mutex_t         load_mu;
    uint64_t               *load;
};

static size_t mat_bytes(const bt_mat_t *m)
{
    return (size_t)m->rows * (size_t)m->cols * bt_dtype_size(m->dtype);
}

static void copy_free(ep_copy_t *c)
{
    if (c != NULL) {
        free(c->mem);
        free(c);
    }
}

/* The one place an expert's bytes are copied to a device: from the
 * model's mapping, the bits every copy shares. */
static ep_copy_t *copy_make(const bt_ffn_weights_t *src)
{
    const size_t g = mat_bytes(&src->gate), u = mat_bytes(&src->up);
    const size_t d = mat_bytes(&src->down);
    ep_copy_t *c = calloc(1, sizeof(*c));

    if (c == NULL || (c->mem = malloc(g + u + d)) == NULL) {
        free(c);
        return NULL;
    }
    c->w = *src;
    memcpy(c->mem, src->gate.data, g);
    memcpy((char *)c->mem + g, src->up.data, u);
    memcpy((char *)c->mem + g + u, src->down.data, d);
    c->w.gate.data = c->mem;
    c->w.up.data = (char *)c->mem + g;
    c->w.down.data = (char *)c->mem + g + u;
    return c;
}

static size_t n_copies(const bt_ep_plan_t *p)
{
    return (size_t)p->n_layers * (size_t)p->n_experts * (size_t)p->n_devices;
}

/* Frees the copies of `p` that `keep` (may be NULL) does not share. */
static void placement_free(ep_placement_t *p, const ep_placement_t *keep)
{
    if (p == NULL) {
        return;
    }
    if (p->copies != NULL) {
        for (size_t i = 0; i < n_copies(&p->plan); i++) {
            if (keep == NULL || keep->copies[i] != p->copies[i]) {
                copy_free(p->copies[i]);
            }
        }
    }
    free(p->copies);
    bt_ep_plan_cleanup(&p->plan);
    free(p);
}

/* A placement for `plan`, sharing the copies `cur` (may be NULL) has at
 * the same index and copying the others. */
static bt_status_t placement_make(const bt_model_t *m,
                                  const bt_ep_plan_t *plan,
                                  const ep_placement_t *cur,
                                  ep_placement_t **p_p, int *moved_p)
{
    const int E = plan->n_experts, N = plan->n_devices;
    ep_placement_t *p = calloc(1, sizeof(*p));
    int moved = 0;

    if (p == NULL || bt_ep_plan_init(&p->plan, plan->n_layers, E, N) != BT_OK ||
        (p->copies = calloc(n_copies(plan), sizeof(ep_copy_t *))) == NULL) {
        goto err;
    }
    memcpy(p->plan.where, plan->where,
           (size_t)plan->n_layers * (size_t)E * sizeof(uint32_t));
    p->plan.version = plan->version;
    for (int l = 0; l < plan->n_layers; l++) {
        for (int e = 0; e < E; e++) {
            const uint32_t w = plan->where[(size_t)l * E + e];

            for (int d = 0; d < N; d++) {
                const size_t i = ((size_t)l * E + e) * N + d;

                if ((w >> d & 1u) == 0) {
                    continue;
                }
                if (cur != NULL && cur->copies[i] != NULL) {
                    p->copies[i] = cur->copies[i];
                    continue;
                }
                p->copies[i] = copy_make(&m->w.layers[l].experts[e]);
                if (p->copies[i] == NULL) {
                    goto err;
                }
                moved++;
            }
        }
    }
    *p_p = p;
    *moved_p = moved;
    return BT_OK;
err:
    placement_free(p, cur);
    return BT_ERR_NO_MEMORY;
}

static void device_free(ep_device_t *d)
{
    free(d->xe); free(d->ye); free(d->g); free(d->u); free(d->rows);
    d->xe = d->ye = d->g = d->u = NULL;
    d->rows = NULL;
    d->cap = 0;
}

void bt_ep_destroy(bt_ep_t *ep)
{
    if (ep == NULL) {
        return;
    }
    bt_par_destroy(ep->par);
    for (int d = 0; d < ep->n; d++) {
        if (ep->dev[d].be != NULL) {
            ep->ops->destroy(ep->dev[d].be);
        }
        device_free(&ep->dev[d]);
    }
    placement_free(ep->staged, ep->cur);
    placement_free(ep->cur, NULL);
    free(ep->assign);
    free(ep->order);
    free(ep->start);
    free(ep->turn);
    free(ep->load);
    pthread_mutex_destroy(&ep->stage_mu);
    pthread_mutex_destroy(&ep->load_mu);
    free(ep);
}

bt_status_t bt_ep_create(const bt_model_t *model, const bt_backend_ops_t *ops,
                         int n_devices, int threads_per_device, int slots,
                         bt_ep_t **ep_p)
{
    const bt_model_config_t *c = &model->cfg;
    bt_ep_t *ep;
    bt_ep_plan_t plan;
    int moved;
    bt_status_t s;

    if (c->n_experts == 0 || n_devices < 1 || n_devices > BT_EP_MAX_DEVICES ||
        threads_per_device < 1) {
        bt_error("experts: %d expert devices of %d threads for a model of %d "
                 "experts", n_devices, threads_per_device, c->n_experts);
        return BT_ERR_INVALID_ARG;
    }
    if ((ep = calloc(1, sizeof(*ep))) == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    ep->m = model;
    ep->ops = ops != NULL ? ops : &bt_backend_cpu;
    ep->n = n_devices;
    ep->slots = slots > 0 ? slots : bt_ep_default_slots(c->n_experts,
                                                        n_devices);
    pthread_mutex_init(&ep->stage_mu, NULL);
    pthread_mutex_init(&ep->load_mu, NULL);
    s = BT_ERR_NO_MEMORY;
    if ((ep->par = bt_par_create(n_devices)) == NULL ||
        (ep->start = calloc((size_t)c->n_experts + 1, sizeof(int))) == NULL ||
        (ep->turn = calloc((size_t)c->n_layers * c->n_experts,
                           sizeof(uint64_t))) == NULL ||
        (ep->load = calloc((size_t)c->n_layers * n_devices,
                           sizeof(uint64_t))) == NULL) {
        goto err;
    }
    for (int d = 0; d < n_devices; d++) {
        s = ep->ops->create(threads_per_device, &ep->dev[d].be);
        if (s != BT_OK) {
            bt_error("experts: backend %s failed to start device %d",
                     ep->ops->name, d);
            goto err;
        }
    }
    s = bt_ep_plan_init(&plan, c->n_layers, c->n_experts, n_devices);
    if (s != BT_OK) {
        goto err;
    }
    bt_ep_plan_round_robin(c, &plan);
    if (ep->slots < bt_ep_default_slots(c->n_experts, n_devices) - 1) {
        bt_error("experts: %d slots per device cannot hold %d experts on %d "
                 "devices", ep->slots, c->n_experts, n_devices);
        s = BT_ERR_INVALID_ARG;
    } else {
        s = placement_make(model, &plan, NULL, &ep->cur, &moved);
    }
    bt_ep_plan_cleanup(&plan);
    if (s != BT_OK) {
        goto err;
    }
    *ep_p = ep;
    return BT_OK;
err:
    bt_ep_destroy(ep);
    return s;
}

int bt_ep_devices(const bt_ep_t *ep)
{
    return ep->n;
}

int bt_ep_slots(const bt_ep_t *ep)
{
    return ep->slots;
}

/* ---- plans ---------------------------------------------------------- */

bt_status_t bt_ep_stage(bt_ep_t *ep, const bt_ep_plan_t *plan, int *moved_p,
                        char *err, size_t err_size)
{
    ep_placement_t *p = NULL;
    int moved = 0;
    bt_status_t s;

    s = bt_ep_plan_check(&ep->m->cfg, ep->n, ep->slots, plan, err, err_size);
    if (s != BT_OK) {
        return s;
    }
    pthread_mutex_lock(&ep->stage_mu);
    if (ep->staging || ep->staged != NULL) {
        pthread_mutex_unlock(&ep->stage_mu);
        snprintf(err, err_size, "another plan is still being applied");
        return BT_ERR_EXISTS;
    }
    ep->staging = true;
    pthread_mutex_unlock(&ep->stage_mu);
    /* ep->cur changes only in bt_ep_commit, which finds nothing staged
     * until this is done: reading its copies here is safe, and the step
     * running meanwhile only reads them too */
    s = placement_make(ep->m, plan, ep->cur, &p, &moved);
    if (s != BT_OK) {
        snprintf(err, err_size, "out of memory copying experts");
    }
    pthread_mutex_lock(&ep->stage_mu);
    ep->staging = false;
    ep->staged = p;
    pthread_mutex_unlock(&ep->stage_mu);
    if (s == BT_OK && moved_p != NULL) {
        *moved_p = moved;
    }
    return s;
}

bool bt_ep_commit(bt_ep_t *ep)
{
    ep_placement_t *old;

    pthread_mutex_lock(&ep->stage_mu);
    if (ep->staged == NULL) {
        pthread_mutex_unlock(&ep->stage_mu);
        return false;
    }
    old = ep->cur;
    ep->cur = ep->staged;
    ep->staged = NULL;
    pthread_mutex_unlock(&ep->stage_mu);
    placement_free(old, ep->cur);
    return true;
}

bool bt_ep_busy(bt_ep_t *ep)
{
    bool b;

    pthread_mutex_lock(&ep->stage_mu);
    b = ep->staging || ep->staged != NULL;
    pthread_mutex_unlock(&ep->stage_mu);
    return b;
}

uint64_t bt_ep_version(bt_ep_t *ep)
{
    uint64_t v;

    pthread_mutex_lock(&ep->stage_mu);
    v = ep->cur->plan.version;
    pthread_mutex_unlock(&ep->stage_mu);
    return v;
}

uint64_t bt_ep_staged_version(bt_ep_t *ep)
{
    uint64_t v;

    pthread_mutex_lock(&ep->stage_mu);
    v = ep->staged != NULL ? ep->staged->plan.version : 0;
    pthread_mutex_unlock(&ep->stage_mu);
    return v;
}

bt_status_t bt_ep_plan_get(bt_ep_t *ep, bt_ep_plan_t *out)
{
    const bt_ep_plan_t *p;
    bt_status_t s;

    pthread_mutex_lock(&ep->stage_mu);
    p = &ep->cur->plan;
    s = bt_ep_plan_init(out, p->n_layers, p->n_experts, p->n_devices);
    if (s == BT_OK) {
        memcpy(out->where, p->where,
               (size_t)p->n_layers * (size_t)p->n_experts * sizeof(uint32_t));
        out->version = p->version;
    }
    pthread_mutex_unlock(&ep->stage_mu);
    return s;
}

/* ---- a layer step --------------------------------------------------- */

bt_status_t bt_ep_reserve(bt_ep_t *ep, int rows)
{
    const bt_model_config_t *c = &ep->m->cfg;
    const size_t H = (size_t)c->hidden, F = (size_t)c->moe_ffn;

    if (rows <= ep->cap) {
        return BT_OK;
    }
    free(ep->assign);
    free(ep->order);
    ep->assign = malloc((size_t)rows * sizeof(int));
    ep->order = malloc((size_t)rows * sizeof(int));
    ep->cap = 0;
    if (ep->assign == NULL || ep->order == NULL) {
        goto err;
    }
    for (int d = 0; d < ep->n; d++) {
        ep_device_t *dv = &ep->dev[d];

        device_free(dv);
        dv->xe = malloc((size_t)rows * H * sizeof(float));
        dv->ye = malloc((size_t)rows * H * sizeof(float));
        dv->g = malloc((size_t)rows * F * sizeof(float));
        dv->u = malloc((size_t)rows * F * sizeof(float));
        dv->rows = malloc((size_t)rows * sizeof(int));
        if (dv->xe == NULL || dv->ye == NULL || dv->g == NULL ||
            dv->u == NULL || dv->rows == NULL) {
            goto err;
        }
        dv->cap = rows;
    }
    ep->cap = rows;
    return BT_OK;
err:
    bt_error("experts: out of memory for %d rows", rows);
    return BT_ERR_NO_MEMORY;
}

/* Device d's share of the layer: its experts in ascending order, each on
 * the rows assigned to d, outputs to the rows' own places. */
static void device_run(void *ctx, int d, int thread)
{
    bt_ep_t *ep = ctx;
    ep_device_t *dv = &ep->dev[d];
    const int E = ep->m->cfg.n_experts, H = ep->m->cfg.hidden;
    const ep_placement_t *p = ep->cur;

    (void)thread;
    for (int e = 0; e < E; e++) {
        const ep_copy_t *cp = p->copies[((size_t)ep->l * E + e) * ep->n + d];
        int n = 0;

        if (cp == NULL) {
            continue;
        }
        for (int i = ep->start[e]; i < ep->start[e + 1]; i++) {
            const int r = ep->order[i];

            if (ep->assign[r] == d) {
                memcpy(dv->xe + (size_t)n * H,
                       ep->xn + (size_t)(r / ep->K) * H,
                       (size_t)H * sizeof(float));
                dv->rows[n++] = r;
            }
        }
        if (n == 0) {
            continue;
        }
        bt_ffn_run(ep->ops, dv->be, &cp->w, dv->xe, n, dv->g, dv->u, dv->ye);
        for (int i = 0; i < n; i++) {
            memcpy(ep->slot_out + (size_t)dv->rows[i] * H,
                   dv->ye + (size_t)i * H, (size_t)H * sizeof(float));
        }
    }
}

void bt_ep_layer(bt_ep_t *ep, int layer, int T, int K, const int *sel,
                 const float *xn, float *slot_out)
{
    const int E = ep->m->cfg.n_experts, R = T * K;
    const uint32_t *where = ep->cur->plan.where + (size_t)layer * E;
    uint64_t rows[BT_EP_MAX_DEVICES] = {0};

    /* rows grouped by expert (a counting sort, rows ascending within) */
    memset(ep->start, 0, ((size_t)E + 1) * sizeof(int));
    for (int r = 0; r < R; r++) {
        ep->start[sel[r] + 1]++;
    }
    for (int e = 0; e < E; e++) {
        ep->start[e + 1] += ep->start[e];
    }
    for (int r = 0; r < R; r++) {
        ep->order[ep->start[sel[r]]++] = r;
    }
    for (int e = E; e > 0; e--) {
        ep->start[e] = ep->start[e - 1];
    }
    ep->start[0] = 0;
    /* replicas split an expert's rows in turn, carried over from step to
     * step: a decode step often gives an expert one row, which would
     * otherwise always land on its first copy */
    for (int e = 0; e < E; e++) {
        uint64_t *turn = ep->turn + (size_t)layer * E + e;
        int devs[BT_EP_MAX_DEVICES], nd = 0;

        for (int d = 0; d < ep->n; d++) {
            if ((where[e] >> d & 1u) != 0) {
                devs[nd++] = d;
            }
        }
        for (int i = ep->start[e]; i < ep->start[e + 1]; i++) {
            const int d = devs[(*turn)++ % (uint64_t)nd];

            ep->assign[ep->order[i]] = d;
            rows[d]++;
        }
    }
    ep->l = layer;
    ep->T = T;
    ep->K = K;
    ep->sel = sel;
    ep->xn = xn;
    ep->slot_out = slot_out;
    bt_par_run(ep->par, ep->n, device_run, ep);
    pthread_mutex_lock(&ep->load_mu);
    for (int d = 0; d < ep->n; d++) {
        ep->load[(size_t)layer * ep->n + d] += rows[d];
    }
    pthread_mutex_unlock(&ep->load_mu);
}

void bt_ep_load(bt_ep_t *ep, bool reset, bt_ep_load_t *out)
{
    const int L = ep->m->cfg.n_layers, N = ep->n;
    double bsum = 0;
    int layers = 0;

    memset(out, 0, sizeof(*out));
    out->n_devices = N;
    pthread_mutex_lock(&ep->load_mu);
    for (int l = 0; l < L; l++) {
        const uint64_t *ld = ep->load + (size_t)l * N;
        uint64_t sum = 0, mx = 0;

        for (int d = 0; d < N; d++) {
            out->rows[d] += ld[d];
            sum += ld[d];
            mx = ld[d] > mx ? ld[d] : mx;
        }
        if (mx > 0) {
            bsum += (double)sum / N / (double)mx;
            layers++;
        }
    }
    if (reset) {
        memset(ep->load, 0, (size_t)L * N * sizeof(uint64_t));
    }
    pthread_mutex_unlock(&ep->load_mu);
    out->balancedness = layers > 0 ? bsum / layers : 1.0;
}
