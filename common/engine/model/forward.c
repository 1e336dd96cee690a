/* The forward pass over a batch of tokens (llama2.c's RunState, grown to
 * batches and paged KV). Elementwise steps (RoPE, SwiGLU, residual adds,
 * K/V stores) run here; matmuls, norms and attention go to the backend. */
#include "forward.h"

#include "base/log.h"
#include "device.h"
#include "cpu_exp.h"
#include "exact_ops.h"
#include "experts.h"
#include "ffn.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LOGIT_ROWS 32   /* rows of lm_head output computed at once */

typedef struct {
    int      cap;                 /* tokens the buffers hold */
    float   *x;                   /* [T][hidden] residual stream */
    float   *xn;                  /* [T][hidden] normed */
    float   *q;                   /* [T][n_heads * head_dim] */
    float   *k;                   /* [T][n_kv * head_dim] */
    float   *v;                   /* [T][n_kv * head_dim] */
    float   *att;                 /* [T][n_heads * head_dim] */
    float   *tmp;                 /* [T][hidden] */
    float   *g;                   /* [T][ffn_max] */
    float   *u;                   /* [T][ffn_max] */
    float   *rope;                /* [T][head_dim] cos | sin halves */
    int32_t *pos;                 /* [T] */
    const uint32_t **tables;      /* [T] */
    /* MoE */
    float   *router;              /* [T][n_experts] */
    int     *sel;                 /* [T][k] experts chosen */
    int     *sel_prev;            /* [T][k] of the previous layer */
    float   *selw;                /* [T][k] their weights */
    int     *rows;                /* [T * k] (token, slot) per expert */
    float   *xe;                  /* [T][hidden] gathered inputs */
    float   *ye;                  /* [T][hidden] expert outputs */
    float   *slot_out;            /* [T][k][hidden] */
    float   *sgate;               /* [T] */
    float   *lh;                  /* [LOGIT_ROWS][hidden] */
    float   *logits;              /* [LOGIT_ROWS][vocab] */
} run_state_t;

struct bt_fwd {
    const bt_model_t       *m;
    const bt_backend_ops_t *ops;
    void                   *be;
    run_state_t             rs;
    pthread_mutex_t         stats_lock;
    uint64_t               *stat_tokens;
    uint64_t               *stat_trans;
    bt_ep_t                *ep;      /* expert devices; NULL: one */
    const bt_device_ops_t  *dev_ops; /* a device step (device.h); NULL: ops */
    void                   *dev;
};

static void rs_free(run_state_t *rs)
{
    free(rs->x); free(rs->xn); free(rs->q); free(rs->k); free(rs->v);
    free(rs->att); free(rs->tmp); free(rs->g); free(rs->u); free(rs->rope);
    free(rs->pos); free(rs->tables); free(rs->router); free(rs->sel);
    free(rs->sel_prev); free(rs->selw); free(rs->rows); free(rs->xe);
    free(rs->ye); free(rs->slot_out); free(rs->sgate); free(rs->lh); free(rs->logits);
    memset(rs, 0, sizeof(*rs));
}

static bt_status_t rs_reserve(bt_fwd_t *f, int T)
{
    const bt_model_config_t *c = &f->m->cfg;
    run_state_t *rs = &f->rs;
    const size_t t = (size_t)T, H = (size_t)c->hidden;
    const size_t qd = (size_t)c->n_heads * c->head_dim;
    const size_t kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t F = (size_t)c->ffn, E = (size_t)c->n_experts;
    size_t K = (size_t)(c->n_experts_used > 0 ? c->n_experts_used : 1);

    if (T <= rs->cap) {
        return BT_OK;
    }
    if ((size_t)c->moe_ffn > F) {
        F = (size_t)c->moe_ffn;
    }
    if ((size_t)c->shared_ffn > F) {
        F = (size_t)c->shared_ffn;
    }
    rs_free(rs);
#define RS_ALLOC(field, n) \
    if ((rs->field = malloc((n) * sizeof(*rs->field))) == NULL) goto err
    RS_ALLOC(x, t * H);
    RS_ALLOC(xn, t * H);
    RS_ALLOC(q, t * qd);
    RS_ALLOC(k, t * kvd);
    RS_ALLOC(v, t * kvd);
    RS_ALLOC(att, t * qd);
    RS_ALLOC(tmp, t * H);
    RS_ALLOC(g, t * F);
    RS_ALLOC(u, t * F);
    RS_ALLOC(rope, t * (size_t)c->head_dim);
    RS_ALLOC(pos, t);
    RS_ALLOC(tables, t);
    RS_ALLOC(lh, (size_t)LOGIT_ROWS * H);
    RS_ALLOC(logits, (size_t)LOGIT_ROWS * (size_t)c->vocab);
    if (E > 0) {
        RS_ALLOC(router, t * E);
        RS_ALLOC(sel, t * K);
        RS_ALLOC(sel_prev, t * K);
        RS_ALLOC(selw, t * K);
        RS_ALLOC(rows, t * K);
        RS_ALLOC(xe, t * H);
        RS_ALLOC(ye, t * H);
        RS_ALLOC(slot_out, t * K * H);
        RS_ALLOC(sgate, t);
    }
#undef RS_ALLOC
    rs->cap = T;
    return BT_OK;
err:
    rs_free(rs);
    bt_error("forward: out of memory for a batch of %d tokens", T);
    return BT_ERR_NO_MEMORY;
}

bt_status_t bt_fwd_create(const bt_model_t *model,
                          const bt_backend_ops_t *ops, int n_threads,
                          bt_fwd_t **fwd_p)
{
    const bt_model_config_t *c = &model->cfg;
    bt_fwd_t *f = calloc(1, sizeof(*f));
    bt_status_t s;

    if (f == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    f->m = model;
    f->ops = ops != NULL ? ops : &bt_backend_cpu;
    pthread_mutex_init(&f->stats_lock, NULL);
    s = f->ops->create(n_threads, &f->be);
    if (s != BT_OK) {
        bt_error("forward: backend %s failed to start", f->ops->name);
        goto err;
    }
    if (c->n_experts > 0) {
        const size_t le = (size_t)c->n_layers * (size_t)c->n_experts;

        f->stat_tokens = calloc(le, sizeof(uint64_t));
        f->stat_trans = calloc(le * (size_t)c->n_experts, sizeof(uint64_t));
        if (f->stat_tokens == NULL || f->stat_trans == NULL) {
            s = BT_ERR_NO_MEMORY;
            goto err;
        }
    }
    s = rs_reserve(f, 1);
    if (s != BT_OK) {
        goto err;
    }
    *fwd_p = f;
    return BT_OK;
err:
    bt_fwd_destroy(f);
    return s;
}

void bt_fwd_destroy(bt_fwd_t *f)
{
    if (f == NULL) {
        return;
    }
    if (f->be != NULL) {
        f->ops->destroy(f->be);
    }
    if (f->dev != NULL) {
        f->dev_ops->destroy(f->dev);
    }
    bt_ep_destroy(f->ep);
    rs_free(&f->rs);
    free(f->stat_tokens);
    free(f->stat_trans);
    pthread_mutex_destroy(&f->stats_lock);
    free(f);
}

bt_status_t bt_fwd_create_device(const bt_model_t *model,
                                 const bt_device_ops_t *ops, void *dev,
                                 bt_fwd_t **fwd_p)
{
    bt_fwd_t *f;
    bt_status_t s;

    /* the CPU context stays for what runs on the host (the statistics) */
    s = bt_fwd_create(model, NULL, 1, &f);
    if (s != BT_OK) {
        ops->destroy(dev);
        return s;
    }
    f->dev_ops = ops;
    f->dev = dev;
    *fwd_p = f;
    return BT_OK;
}

int bt_fwd_threads(const bt_fwd_t *f)
{
    return f->ops->threads(f->be);
}

/* ---- elementwise pieces --------------------------------------------- */

void bt_fwd_rope_tables(const bt_model_t *m, const int32_t *pos, int T,
                        float *rope)
{
    const int hd = m->cfg.head_dim, half = hd / 2;

    for (int t = 0; t < T; t++) {
        float *cs = rope + (size_t)t * hd;

        for (int i = 0; i < half; i++) {
            /* the angle rounded to f32 as PyTorch forms it, then cos/sin
             * evaluated exactly and rounded once */
            const float ang = (float)pos[t] * m->rope_inv_freq[i];

            cs[i] = (float)cos((double)ang);
            cs[half + i] = (float)sin((double)ang);
        }
    }
}

/* HF rotate_half: pairs (i, i + half). */
void bt_fwd_rope_apply(float *x, int n_heads, int hd, const float *cs)
{
    const int half = hd / 2;

    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * hd;

        for (int i = 0; i < half; i++) {
            const float a = v[i], b = v[half + i];
            const float c = cs[i], s = cs[half + i];

            v[i] = a * c + (-b) * s;
            v[half + i] = b * c + a * s;
        }
    }
}

static void add_into(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        x[i] += y[i];
    }
}

/* out[n][hidden] = FFN(in[n][hidden]) */
static void ffn_run(bt_fwd_t *f, const bt_ffn_weights_t *w, const float *in,
                    int n, float *out)
{
    bt_ffn_run(f->ops, f->be, w, in, n, f->rs.g, f->rs.u, out);
}

/* ---- MoE ------------------------------------------------------------ */

void bt_fwd_moe_route(const bt_model_config_t *c, const float *logits,
                      int *sel, float *w)
{
    float p[BT_MODEL_MAX_EXPERTS];

    bt_exact_moe_route(logits, c->n_experts, c->n_experts_used,
                       c->norm_topk_prob, p, sel, w);
}

void bt_fwd_moe_combine(const float *slot_out, const float *selw, int T,
                        int K, int H, float *y)
{
    for (int t = 0; t < T; t++) {
        float *yt = y + (size_t)t * H;

        memset(yt, 0, (size_t)H * sizeof(float));
        for (int j = 0; j < K; j++) {
            const float w = selw[t * K + j];
            const float *o = slot_out + ((size_t)t * K + j) * H;

            for (int i = 0; i < H; i++) {
                yt[i] += w * o[i];
            }
        }
    }
}

void bt_fwd_moe_shared_add(const float *sgate, const float *o, int T, int H,
                           float *y)
{
    for (int t = 0; t < T; t++) {
        const float gs = 1.0f / (1.0f + bt_cpu_expf(-sgate[t]));

        for (int i = 0; i < H; i++) {
            y[(size_t)t * H + i] += gs * o[(size_t)t * H + i];
        }
    }
}

/* The one-device path: every expert here, on the rows routed to it;
 * slot_out[t * K + j] gets expert sel[t * K + j] applied to token t. */
static void experts_run(bt_fwd_t *f, const bt_layer_weights_t *lw, int T)
{
    const bt_model_config_t *c = &f->m->cfg;
    run_state_t *rs = &f->rs;
    const int E = c->n_experts, K = c->n_experts_used, H = c->hidden;

    for (int e = 0; e < E; e++) {
        int n = 0;

        for (int t = 0; t < T; t++) {
            for (int j = 0; j < K; j++) {
                if (rs->sel[t * K + j] == e) {
                    memcpy(rs->xe + (size_t)n * H, rs->xn + (size_t)t * H,
                           (size_t)H * sizeof(float));
                    rs->rows[n++] = t * K + j;
                }
            }
        }
        if (n == 0) {
            continue;
        }
        ffn_run(f, &lw->experts[e], rs->xe, n, rs->ye);
        for (int i = 0; i < n; i++) {
            memcpy(rs->slot_out + (size_t)rs->rows[i] * H,
                   rs->ye + (size_t)i * H, (size_t)H * sizeof(float));
        }
    }
}

void bt_fwd_count_routes(bt_fwd_t *f, int l, int T, const int *sel,
                         const int *sel_prev)
{
    const bt_model_config_t *c = &f->m->cfg;
    const int E = c->n_experts, K = c->n_experts_used;

    pthread_mutex_lock(&f->stats_lock);
    for (int t = 0; t < T; t++) {
        for (int j = 0; j < K; j++) {
            const int e = sel[t * K + j];

            f->stat_tokens[(size_t)l * E + e]++;
            if (sel_prev != NULL) {
                for (int i = 0; i < K; i++) {
                    const int a = sel_prev[t * K + i];

                    f->stat_trans[((size_t)(l - 1) * E + a) * E + e]++;
                }
            }
        }
    }
    pthread_mutex_unlock(&f->stats_lock);
}

static void moe_layer(bt_fwd_t *f, int l, int T, bool prev_moe)
{
    const bt_model_config_t *c = &f->m->cfg;
    const bt_layer_weights_t *lw = &f->m->w.layers[l];
    run_state_t *rs = &f->rs;
    const int E = c->n_experts, K = c->n_experts_used, H = c->hidden;

    f->ops->matmul(f->be, rs->xn, T, &lw->router, NULL, rs->router);
    for (int t = 0; t < T; t++) {
        bt_fwd_moe_route(c, rs->router + (size_t)t * E, rs->sel + (size_t)t * K,
                  rs->selw + (size_t)t * K);
    }
    bt_fwd_count_routes(f, l, T, rs->sel, prev_moe ? rs->sel_prev : NULL);
    /* experts run on the rows routed to them; each row's result does not
     * depend on its companions, so grouping keeps batch invariance */
    if (f->ep != NULL) {
        bt_ep_layer(f->ep, l, T, K, rs->sel, rs->xn, rs->slot_out);
    } else {
        experts_run(f, lw, T);
    }
    bt_fwd_moe_combine(rs->slot_out, rs->selw, T, K, H, rs->tmp);
    if (c->shared_ffn > 0) {
        f->ops->matmul(f->be, rs->xn, T, &lw->shared_gate, NULL, rs->sgate);
        ffn_run(f, &lw->shared, rs->xn, T, rs->ye);
        bt_fwd_moe_shared_add(rs->sgate, rs->ye, T, H, rs->tmp);
    }
    {
        int *swap = rs->sel_prev;

        rs->sel_prev = rs->sel;
        rs->sel = swap;
    }
}

/* ---- the step --------------------------------------------------------- */

static bt_status_t step_check(const bt_fwd_t *f, const bt_kv_view_t *kv,
                              const bt_step_seq_t *seqs, int n_seqs, int *T_p,
                              int *max_ctx_p)
{
    const bt_model_config_t *c = &f->m->cfg;
    long long T = 0;
    int max_ctx = 0;

    if (kv == NULL || kv->base == NULL || kv->n_layers != c->n_layers ||
        kv->n_kv_heads != c->n_kv_heads || kv->head_dim != c->head_dim ||
        kv->block_size <= 0 || kv->n_blocks <= 0) {
        bt_error("step: kv pool shape does not match the model (layers %d "
                 "kv heads %d head dim %d)", c->n_layers, c->n_kv_heads,
                 c->head_dim);
        return BT_ERR_INVALID_ARG;
    }
    if (n_seqs <= 0 || seqs == NULL) {
        bt_error("step: no sequences");
        return BT_ERR_INVALID_ARG;
    }
    for (int i = 0; i < n_seqs; i++) {
        const bt_step_seq_t *s = &seqs[i];
        long long end;

        if (s->n_tokens <= 0 || s->pos < 0 || s->tokens == NULL ||
            s->n_logits < 0 || s->n_logits > s->n_tokens ||
            (s->n_logits > 0 && s->logits == NULL)) {
            bt_error("step: sequence %d: bad token count, position or "
                     "logits request", i);
            return BT_ERR_INVALID_ARG;
        }
        end = (long long)s->pos + s->n_tokens;
        if (end > (long long)s->n_blocks * kv->block_size ||
            s->block_table == NULL || end > (1 << 30)) {
            bt_error("step: sequence %d: block table of %d blocks does not "
                     "cover position %lld", i, s->n_blocks, end - 1);
            return BT_ERR_INVALID_ARG;
        }
        for (int b = 0; b < (int)((end + kv->block_size - 1) /
                                  kv->block_size); b++) {
            if (s->block_table[b] >= (uint32_t)kv->n_blocks) {
                bt_error("step: sequence %d: block %u is not in the pool", i,
                         s->block_table[b]);
                return BT_ERR_INVALID_ARG;
            }
        }
        for (int j = 0; j < s->n_tokens; j++) {
            if (s->tokens[j] < 0 || s->tokens[j] >= c->vocab) {
                bt_error("step: sequence %d: token %d out of the vocabulary "
                         "of %d", i, s->tokens[j], c->vocab);
                return BT_ERR_INVALID_ARG;
            }
        }
        T += s->n_tokens;
        if (end > max_ctx) {
            max_ctx = (int)end;
        }
    }
    if (T > (1 << 20)) {
        bt_error("step: %lld tokens in one step, over the limit", T);
        return BT_ERR_TOO_LARGE;
    }
    *T_p = (int)T;
    *max_ctx_p = max_ctx;
    return BT_OK;
}

static void kv_store(const bt_kv_view_t *kv, int layer, const run_state_t *rs,
                     int T, int kvd)
{
    for (int t = 0; t < T; t++) {
        const int p = rs->pos[t];
        const uint32_t blk = rs->tables[t][p / kv->block_size];

        bt_dtype_convert_row(rs->k + (size_t)t * kvd, BT_DTYPE_F32,
                             bt_kv_view_at(kv, layer, blk, 0,
                                           p % kv->block_size),
                             kv->dtype, (size_t)kvd);
        bt_dtype_convert_row(rs->v + (size_t)t * kvd, BT_DTYPE_F32,
                             bt_kv_view_at(kv, layer, blk, 1,
                                           p % kv->block_size),
                             kv->dtype, (size_t)kvd);
    }
}

static void attn_block(bt_fwd_t *f, const bt_kv_view_t *kv, int l, int T)
{
    const bt_model_config_t *c = &f->m->cfg;
    const bt_layer_weights_t *lw = &f->m->w.layers[l];
    run_state_t *rs = &f->rs;
    const int hd = c->head_dim, qd = c->n_heads * hd;
    const int kvd = c->n_kv_heads * hd;
    bt_attn_args_t a;

    f->ops->rmsnorm(f->be, rs->x, lw->attn_norm, T, c->hidden, c->norm_eps,
                    rs->xn);
    f->ops->matmul(f->be, rs->xn, T, &lw->wq, lw->bq, rs->q);
    f->ops->matmul(f->be, rs->xn, T, &lw->wk, lw->bk, rs->k);
    f->ops->matmul(f->be, rs->xn, T, &lw->wv, lw->bv, rs->v);
    if (lw->q_norm != NULL) {
        f->ops->rmsnorm(f->be, rs->q, lw->q_norm, T * c->n_heads, hd,
                        c->norm_eps, rs->q);
        f->ops->rmsnorm(f->be, rs->k, lw->k_norm, T * c->n_kv_heads, hd,
                        c->norm_eps, rs->k);
    }
    for (int t = 0; t < T; t++) {
        const float *cs = rs->rope + (size_t)t * hd;

        bt_fwd_rope_apply(rs->q + (size_t)t * qd, c->n_heads, hd, cs);
        bt_fwd_rope_apply(rs->k + (size_t)t * kvd, c->n_kv_heads, hd, cs);
    }
    kv_store(kv, l, rs, T, kvd);
    a.n_tokens = T;
    a.n_heads = c->n_heads;
    a.n_kv_heads = c->n_kv_heads;
    a.head_dim = hd;
    a.layer = l;
    a.window = c->sliding_window;
    a.scale = 1.0f / sqrtf((float)hd);
    a.q = rs->q;
    a.out = rs->att;
    a.pos = rs->pos;
    a.tables = rs->tables;
    a.kv = kv;
    f->ops->attention(f->be, &a);
    f->ops->matmul(f->be, rs->att, T, &lw->wo, NULL, rs->tmp);
    add_into(rs->x, rs->tmp, (size_t)T * c->hidden);
}

static void logits_flush(bt_fwd_t *f, int n, float *const *dst)
{
    const bt_model_config_t *c = &f->m->cfg;
    run_state_t *rs = &f->rs;
    const size_t V = (size_t)c->vocab;

    f->ops->rmsnorm(f->be, rs->lh, f->m->w.final_norm, n, c->hidden,
                    c->norm_eps, rs->lh);
    f->ops->matmul(f->be, rs->lh, n, &f->m->w.lm_head, NULL, rs->logits);
    for (int r = 0; r < n; r++) {
        memcpy(dst[r], rs->logits + (size_t)r * V, V * sizeof(float));
    }
}

/* Rows needing logits are gathered LOGIT_ROWS at a time. */
static void logits_out(bt_fwd_t *f, bt_step_seq_t *seqs, int n_seqs)
{
    const bt_model_config_t *c = &f->m->cfg;
    run_state_t *rs = &f->rs;
    const size_t H = (size_t)c->hidden, V = (size_t)c->vocab;
    float *dst[LOGIT_ROWS];
    int n = 0, t0 = 0;

    for (int i = 0; i < n_seqs; i++) {
        const int first = seqs[i].n_tokens - seqs[i].n_logits;

        for (int j = first; j < seqs[i].n_tokens; j++) {
            memcpy(rs->lh + (size_t)n * H, rs->x + (size_t)(t0 + j) * H,
                   H * sizeof(float));
            dst[n++] = seqs[i].logits + (size_t)(j - first) * V;
            if (n == LOGIT_ROWS) {
                logits_flush(f, n, dst);
                n = 0;
            }
        }
        t0 += seqs[i].n_tokens;
    }
    if (n > 0) {
        logits_flush(f, n, dst);
    }
}

bt_status_t bt_fwd_step(bt_fwd_t *f, const bt_kv_view_t *kv,
                        bt_step_seq_t *seqs, int n_seqs,
                        const bt_step_hooks_t *hooks)
{
    const bt_model_t *m = f->m;
    const bt_model_config_t *c = &m->cfg;
    run_state_t *rs = &f->rs;
    const size_t H = (size_t)c->hidden;
    int T, max_ctx, t = 0;
    bool prev_moe = false;
    bt_status_t s;

    s = step_check(f, kv, seqs, n_seqs, &T, &max_ctx);
    if (s != BT_OK) {
        return s;
    }
    if (f->dev != NULL) {
        return f->dev_ops->step(f->dev, f, kv, seqs, n_seqs, T, max_ctx, hooks);
    }
    s = rs_reserve(f, T);
    if (s == BT_OK) {
        s = f->ops->reserve(f->be, max_ctx);
    }
    if (s == BT_OK && f->ep != NULL) {
        /* the step boundary: a staged expert plan takes over here */
        bt_ep_commit(f->ep);
        s = bt_ep_reserve(f->ep, T * c->n_experts_used);
    }
    if (s != BT_OK) {
        return s;
    }
    for (int i = 0; i < n_seqs; i++) {
        for (int j = 0; j < seqs[i].n_tokens; j++, t++) {
            rs->pos[t] = seqs[i].pos + j;
            rs->tables[t] = seqs[i].block_table;
            bt_dtype_convert_row(
                (const char *)m->w.embed.data +
                    (size_t)seqs[i].tokens[j] * H *
                    bt_dtype_size(m->w.embed.dtype),
                m->w.embed.dtype, rs->x + (size_t)t * H, BT_DTYPE_F32, H);
        }
    }
    bt_fwd_rope_tables(m, rs->pos, T, rs->rope);
    for (int l = 0; l < c->n_layers; l++) {
        const bt_layer_weights_t *lw = &m->w.layers[l];

        attn_block(f, kv, l, T);
        if (hooks != NULL && hooks->layer_done != NULL) {
            hooks->layer_done(hooks->ctx, l);
        }
        f->ops->rmsnorm(f->be, rs->x, lw->ffn_norm, T, c->hidden, c->norm_eps,
                        rs->xn);
        if (lw->moe) {
            moe_layer(f, l, T, prev_moe);
        } else {
            ffn_run(f, &lw->ffn, rs->xn, T, rs->tmp);
        }
        prev_moe = lw->moe;
        add_into(rs->x, rs->tmp, (size_t)T * H);
    }
    logits_out(f, seqs, n_seqs);
    return BT_OK;
}

bt_status_t bt_fwd_experts_init(bt_fwd_t *f, int n_devices, int slots)
{
    int per = bt_fwd_threads(f) / (n_devices > 0 ? n_devices : 1);

    if (f->ep != NULL) {
        return BT_ERR_EXISTS;
    }
    if (f->dev != NULL) {
        bt_error("expert devices run on the CPU backend only");
        return BT_ERR_UNSUPPORTED;
    }
    return bt_ep_create(f->m, f->ops, n_devices, per > 0 ? per : 1, slots,
                        &f->ep);
}

bt_ep_t *bt_fwd_experts(bt_fwd_t *f)
{
    return f->ep;
}

bt_status_t bt_fwd_moe_stats(bt_fwd_t *f, bool reset, bt_moe_stats_t *out)
{
    const bt_model_config_t *c = &f->m->cfg;
    const size_t le = (size_t)c->n_layers * (size_t)c->n_experts;

    memset(out, 0, sizeof(*out));
    if (c->n_experts == 0) {
        return BT_ERR_UNSUPPORTED;
    }
    out->tokens = malloc(le * sizeof(uint64_t));
    out->transitions = malloc(le * (size_t)c->n_experts * sizeof(uint64_t));
    if (out->tokens == NULL || out->transitions == NULL) {
        bt_moe_stats_cleanup(out);
        return BT_ERR_NO_MEMORY;
    }
    out->n_layers = c->n_layers;
    out->n_experts = c->n_experts;
    pthread_mutex_lock(&f->stats_lock);
    memcpy(out->tokens, f->stat_tokens, le * sizeof(uint64_t));
    memcpy(out->transitions, f->stat_trans,
           le * (size_t)c->n_experts * sizeof(uint64_t));
    if (reset) {
        memset(f->stat_tokens, 0, le * sizeof(uint64_t));
        memset(f->stat_trans, 0, le * (size_t)c->n_experts * sizeof(uint64_t));
    }
    pthread_mutex_unlock(&f->stats_lock);
    return BT_OK;
}

void bt_moe_stats_cleanup(bt_moe_stats_t *s)
{
    if (s == NULL) {
        return;
    }
    free(s->tokens);
    free(s->transitions);
    memset(s, 0, sizeof(*s));
}
