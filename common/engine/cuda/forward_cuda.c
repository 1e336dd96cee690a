/* The CUDA device step (engine/model/device.h) in `exact` numerics: the
 * forward pass of forward.c, operation for operation, on the kernels of
 * cuda_kernels.h, with the weights, the activations and a copy of the KV
 * pool in GPU memory. Built into the plugin libbaton-cuda.so.
 *
 * Compute runs on one stream; each layer's new K/V rows go back to the
 * host pool on a copy stream while the next layer computes, and the layer
 * hook (which posts transfers of what the host pool holds) runs once they
 * are there (docs/internals/cuda.md). */
#include "cuda_kernels.h"

#include "base/log.h"
#include "engine/model/device.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BT_CUDA_KERNEL_REV 1
#define LOGIT_ROWS 32   /* rows of LM head output at once, as forward.c */

typedef struct {
    void *data;
    int   dtype, rows, cols;
} dmat_t;

typedef struct {
    dmat_t gate, up, down;
} dffn_t;

typedef struct {
    float  *attn_norm, *ffn_norm, *q_norm, *k_norm, *bq, *bk, *bv;
    dmat_t  wq, wk, wv, wo;
    int     moe;
    dffn_t  ffn;
    dmat_t  router;
    dffn_t *experts;
    dffn_t  shared;
    dmat_t  shared_gate;
} dlayer_t;

typedef struct {
    const bt_model_t *m;
    bool              fast;          /* tensor-core matmuls (`fast`) */
    cudaStream_t      stream;
    dmat_t            embed, lm_head;
    float            *final_norm;
    dlayer_t         *layers;
    float            *rope;          /* [rope_rows][head_dim] cos | sin */
    int               rope_rows;
    /* the KV pool's copy and, per block, the pool generation it holds */
    bt_cuda_kv_t      kv;
    uint32_t         *kv_gen;
    uint8_t          *kv_known;
    /* activations for `cap` tokens */
    int               cap;
    float            *x, *xn, *q, *k, *v, *att, *tmp, *g, *u, *router, *xe,
                     *ye, *slot_out, *sgate, *selw, *scratch;
    size_t            scratch_cap;   /* floats */
    int              *sel, *rows, *lrows;
    float            *logits;        /* [LOGIT_ROWS][vocab] */
    int32_t          *tok, *pos;
    uint32_t         *tables, *toff;
    size_t            tables_cap;
    /* a layer's new K/V rows, double-buffered: layer l in slot l & 1 */
    void             *kv_rows[2];
    cudaStream_t      copy;
    cudaEvent_t       ev_gathered[2], ev_copied[2];
    void             *kv_registered; /* the host pool, pinned for copies */
    /* host side (pinned) */
    int32_t          *h_tok, *h_pos;
    uint32_t         *h_toff, *h_tables;
    int              *h_sel, *h_sel_prev, *h_rows, *h_lrows;
    void             *h_kv_rows[2];
    float            *h_logits;
} cuda_fwd_t;

#define CK(_call) do {                                                      \
        cudaError_t e_ = (_call);                                           \
        if (e_ != cudaSuccess) {                                            \
            bt_error("cuda: %s: %s", #_call, cudaGetErrorString(e_));       \
            return BT_ERR_IO;                                               \
        }                                                                   \
    } while (0)
#define KK(_launch) do {                                                    \
        int e_ = (_launch);                                                 \
        if (e_ != 0) {                                                      \
            bt_error("cuda: %s: %s", #_launch,                              \
                     cudaGetErrorString((cudaError_t)e_));                  \
            return BT_ERR_IO;                                               \
        }                                                                   \
    } while (0)

static size_t esize(int dtype)
{
    return dtype == BT_DTYPE_F32 ? 4 : 2;
}

/* ---- weights -------------------------------------------------------- */

/* A model whose matrices have no data (a benchmark's Llama-3-8B shape,
 * bench/cuda/enginebench.c): its weights are made on the GPU, random in
 * +-1/sqrt(cols), its norms ones. */
static bool synthetic(const bt_model_t *m)
{
    return m->w.embed.data == NULL;
}

static uint32_t up_seed = 1;

static bt_status_t up_vec(const float *v, int n, float **d_p);

static bt_status_t up_mat(const bt_mat_t *w, dmat_t *d)
{
    const size_t bytes = (size_t)w->rows * w->cols * esize(w->dtype);

    d->dtype = (int)w->dtype;
    d->rows = w->rows;
    d->cols = w->cols;
    d->data = NULL;
    if (bytes == 0) {
        return BT_OK;
    }
    if (w->data == NULL) {
        CK(cudaMalloc(&d->data, bytes));
        KK(bt_cuda_fill_random(d->data, (size_t)w->rows * w->cols, (int)w->dtype,
                               up_seed++, 1.0f / sqrtf((float)w->cols), NULL));
        return BT_OK;
    }
    CK(cudaMalloc(&d->data, bytes));
    CK(cudaMemcpy(d->data, w->data, bytes, cudaMemcpyHostToDevice));
    return BT_OK;
}

/* A norm's weights: the model's, or ones for a synthetic model. */
static bt_status_t up_norm(const bt_model_t *m, const float *v, int n, float **d_p)
{
    if (v != NULL || !synthetic(m)) {
        return up_vec(v, n, d_p);
    }
    CK(cudaMalloc((void **)d_p, (size_t)n * sizeof(float)));
    KK(bt_cuda_fill(*d_p, (size_t)n, 1.0f, NULL));
    return BT_OK;
}

static bt_status_t up_vec(const float *v, int n, float **d_p)
{
    *d_p = NULL;
    if (v == NULL) {
        return BT_OK;
    }
    CK(cudaMalloc((void **)d_p, (size_t)n * sizeof(float)));
    CK(cudaMemcpy(*d_p, v, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    return BT_OK;
}

static bt_status_t up_ffn(const bt_ffn_weights_t *w, dffn_t *d)
{
    bt_status_t s = up_mat(&w->gate, &d->gate);

    if (s == BT_OK) {
        s = up_mat(&w->up, &d->up);
    }
    if (s == BT_OK) {
        s = up_mat(&w->down, &d->down);
    }
    return s;
}

static bt_status_t up_layer(const bt_model_t *m, const bt_layer_weights_t *w,
                            dlayer_t *d)
{
    const bt_model_config_t *c = &m->cfg;
    bt_status_t s;

    memset(d, 0, sizeof(*d));
    d->moe = w->moe;
    if ((s = up_norm(m, w->attn_norm, c->hidden, &d->attn_norm)) != BT_OK ||
        (s = up_norm(m, w->ffn_norm, c->hidden, &d->ffn_norm)) != BT_OK ||
        (s = up_vec(w->q_norm, c->head_dim, &d->q_norm)) != BT_OK ||
        (s = up_vec(w->k_norm, c->head_dim, &d->k_norm)) != BT_OK ||
        (s = up_vec(w->bq, w->wq.rows, &d->bq)) != BT_OK ||
        (s = up_vec(w->bk, w->wk.rows, &d->bk)) != BT_OK ||
        (s = up_vec(w->bv, w->wv.rows, &d->bv)) != BT_OK ||
        (s = up_mat(&w->wq, &d->wq)) != BT_OK ||
        (s = up_mat(&w->wk, &d->wk)) != BT_OK ||
        (s = up_mat(&w->wv, &d->wv)) != BT_OK ||
        (s = up_mat(&w->wo, &d->wo)) != BT_OK) {
        return s;
    }
    if (!w->moe) {
        return up_ffn(&w->ffn, &d->ffn);
    }
    d->experts = calloc((size_t)c->n_experts, sizeof(*d->experts));
    if (d->experts == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    if ((s = up_mat(&w->router, &d->router)) != BT_OK) {
        return s;
    }
    for (int e = 0; e < c->n_experts; e++) {
        if ((s = up_ffn(&w->experts[e], &d->experts[e])) != BT_OK) {
            return s;
        }
    }
    if (c->shared_ffn > 0 &&
        ((s = up_ffn(&w->shared, &d->shared)) != BT_OK ||
         (s = up_mat(&w->shared_gate, &d->shared_gate)) != BT_OK)) {
        return s;
    }
    return BT_OK;
}

static void free_ffn(dffn_t *d)
{
    cudaFree(d->gate.data);
    cudaFree(d->up.data);
    cudaFree(d->down.data);
}

static void free_acts(cuda_fwd_t *f)
{
    void *dev[] = {f->x, f->xn, f->q, f->k, f->v, f->att, f->tmp, f->g, f->u,
                   f->router, f->xe, f->ye, f->slot_out, f->sgate, f->selw,
                   f->sel, f->rows, f->lrows, f->logits, f->tok, f->pos,
                   f->toff, f->kv_rows[0], f->kv_rows[1]};
    void *host[] = {f->h_tok, f->h_pos, f->h_toff, f->h_sel, f->h_sel_prev,
                    f->h_rows, f->h_lrows, f->h_kv_rows[0], f->h_kv_rows[1],
                    f->h_logits};

    for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) {
        cudaFree(dev[i]);
    }
    for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++) {
        cudaFreeHost(host[i]);
    }
    f->x = f->xn = f->q = f->k = f->v = f->att = f->tmp = f->g = f->u = NULL;
    f->router = f->xe = f->ye = f->slot_out = f->sgate = f->selw = NULL;
    f->sel = f->rows = f->lrows = NULL;
    f->logits = NULL;
    f->tok = f->pos = NULL;
    f->toff = NULL;
    f->kv_rows[0] = f->kv_rows[1] = NULL;
    f->h_tok = f->h_pos = NULL;
    f->h_toff = NULL;
    f->h_sel = f->h_sel_prev = f->h_rows = f->h_lrows = NULL;
    f->h_kv_rows[0] = f->h_kv_rows[1] = NULL;
    f->h_logits = NULL;
    f->cap = 0;
}

static void cuda_destroy(void *vf)
{
    cuda_fwd_t *f = vf;

    if (f == NULL) {
        return;
    }
    if (f->layers != NULL) {
        for (int l = 0; l < f->m->cfg.n_layers; l++) {
            dlayer_t *d = &f->layers[l];
            void *vecs[] = {d->attn_norm, d->ffn_norm, d->q_norm, d->k_norm,
                            d->bq, d->bk, d->bv, d->wq.data, d->wk.data,
                            d->wv.data, d->wo.data, d->router.data,
                            d->shared_gate.data};

            for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
                cudaFree(vecs[i]);
            }
            free_ffn(&d->ffn);
            free_ffn(&d->shared);
            for (int e = 0; d->experts != NULL && e < f->m->cfg.n_experts; e++) {
                free_ffn(&d->experts[e]);
            }
            free(d->experts);
        }
        free(f->layers);
    }
    if (f->lm_head.data != f->embed.data) {
        cudaFree(f->lm_head.data);
    }
    cudaFree(f->embed.data);
    cudaFree(f->final_norm);
    cudaFree(f->rope);
    cudaFree(f->kv.base);
    cudaFree(f->scratch);
    cudaFree(f->tables);
    cudaFreeHost(f->h_tables);
    free(f->kv_gen);
    free(f->kv_known);
    free_acts(f);
    if (f->kv_registered != NULL) {
        cudaHostUnregister(f->kv_registered);
    }
    for (int i = 0; i < 2; i++) {
        if (f->ev_gathered[i] != NULL) {
            cudaEventDestroy(f->ev_gathered[i]);
        }
        if (f->ev_copied[i] != NULL) {
            cudaEventDestroy(f->ev_copied[i]);
        }
    }
    if (f->copy != NULL) {
        cudaStreamDestroy(f->copy);
    }
    if (f->stream != NULL) {
        cudaStreamDestroy(f->stream);
    }
    free(f);
}

static bt_status_t cuda_create(const bt_model_t *m, bool fast, void **dev_p,
                               char *err, size_t err_size)
{
    const bt_model_config_t *c = &m->cfg;
    cuda_fwd_t *f = calloc(1, sizeof(*f));
    bt_status_t s = BT_ERR_NO_MEMORY;

    if (f == NULL) {
        snprintf(err, err_size, "out of host memory");
        return s;
    }
    f->m = m;
    f->fast = fast;
    if (cudaSetDevice(0) != cudaSuccess ||
        cudaStreamCreateWithFlags(&f->stream, cudaStreamNonBlocking) !=
            cudaSuccess ||
        cudaStreamCreateWithFlags(&f->copy, cudaStreamNonBlocking) !=
            cudaSuccess ||
        cudaEventCreateWithFlags(&f->ev_gathered[0], cudaEventDisableTiming) !=
            cudaSuccess ||
        cudaEventCreateWithFlags(&f->ev_gathered[1], cudaEventDisableTiming) !=
            cudaSuccess ||
        cudaEventCreateWithFlags(&f->ev_copied[0], cudaEventDisableTiming) !=
            cudaSuccess ||
        cudaEventCreateWithFlags(&f->ev_copied[1], cudaEventDisableTiming) !=
            cudaSuccess) {
        snprintf(err, err_size, "--backend cuda: cannot start on GPU 0: %s",
                 cudaGetErrorString(cudaGetLastError()));
        cuda_destroy(f);
        return BT_ERR_UNSUPPORTED;
    }
    f->layers = calloc((size_t)c->n_layers, sizeof(*f->layers));
    if (f->layers == NULL) {
        goto fail;
    }
    if ((s = up_mat(&m->w.embed, &f->embed)) != BT_OK ||
        (s = up_norm(m, m->w.final_norm, c->hidden, &f->final_norm)) != BT_OK) {
        goto fail;
    }
    if (synthetic(m) ? c->tie_embeddings : m->w.lm_head.data == m->w.embed.data) {
        f->lm_head = f->embed;   /* tied */
    } else if ((s = up_mat(&m->w.lm_head, &f->lm_head)) != BT_OK) {
        goto fail;
    }
    for (int l = 0; l < c->n_layers; l++) {
        if ((s = up_layer(m, &m->w.layers[l], &f->layers[l])) != BT_OK) {
            goto fail;
        }
    }
    if (cudaDeviceSynchronize() != cudaSuccess) {
        s = BT_ERR_IO;
        goto fail;
    }
    *dev_p = f;
    return BT_OK;
fail:
    snprintf(err, err_size, "--backend cuda: cannot put the model's %zu MiB of "
             "weights on the GPU (%s)", m->weight_bytes >> 20,
             cudaGetErrorString(cudaGetLastError()));
    cuda_destroy(f);
    return s != BT_OK ? s : BT_ERR_NO_MEMORY;
}

/* ---- per-step room -------------------------------------------------- */

static bt_status_t reserve_acts(cuda_fwd_t *f, int T)
{
    const bt_model_config_t *c = &f->m->cfg;
    const size_t t = (size_t)T, H = (size_t)c->hidden;
    const size_t qd = (size_t)c->n_heads * c->head_dim;
    const size_t kvd = (size_t)c->n_kv_heads * c->head_dim;
    const size_t K = (size_t)(c->n_experts_used > 0 ? c->n_experts_used : 1);
    size_t F = (size_t)c->ffn;

    if (T <= f->cap) {
        return BT_OK;
    }
    free_acts(f);
    if ((size_t)c->moe_ffn > F) {
        F = (size_t)c->moe_ffn;
    }
    if ((size_t)c->shared_ffn > F) {
        F = (size_t)c->shared_ffn;
    }
    CK(cudaMalloc((void **)&f->x, t * H * 4));
    CK(cudaMalloc((void **)&f->xn, t * H * 4));
    CK(cudaMalloc((void **)&f->q, t * qd * 4));
    CK(cudaMalloc((void **)&f->k, t * kvd * 4));
    CK(cudaMalloc((void **)&f->v, t * kvd * 4));
    CK(cudaMalloc((void **)&f->att, t * qd * 4));
    CK(cudaMalloc((void **)&f->tmp, t * H * 4));
    CK(cudaMalloc((void **)&f->g, t * K * F * 4));
    CK(cudaMalloc((void **)&f->u, t * K * F * 4));
    CK(cudaMalloc((void **)&f->tok, t * 4));
    CK(cudaMalloc((void **)&f->pos, t * 4));
    CK(cudaMalloc((void **)&f->toff, t * 4));
    CK(cudaMalloc(&f->kv_rows[0], t * 2 * kvd * 4));
    CK(cudaMalloc(&f->kv_rows[1], t * 2 * kvd * 4));
    CK(cudaMalloc((void **)&f->lrows, t * 4));
    CK(cudaMalloc((void **)&f->logits, (size_t)LOGIT_ROWS * c->vocab * 4));
    CK(cudaMallocHost((void **)&f->h_tok, t * 4));
    CK(cudaMallocHost((void **)&f->h_pos, t * 4));
    CK(cudaMallocHost((void **)&f->h_toff, t * 4));
    CK(cudaMallocHost((void **)&f->h_lrows, t * 4));
    CK(cudaMallocHost(&f->h_kv_rows[0], t * 2 * kvd * 4));
    CK(cudaMallocHost(&f->h_kv_rows[1], t * 2 * kvd * 4));
    CK(cudaMallocHost((void **)&f->h_logits, t * (size_t)c->vocab * 4));
    if (c->n_experts > 0) {
        CK(cudaMalloc((void **)&f->router, t * (size_t)c->n_experts * 4));
        CK(cudaMalloc((void **)&f->xe, t * K * H * 4));
        CK(cudaMalloc((void **)&f->ye, t * K * H * 4));
        CK(cudaMalloc((void **)&f->slot_out, t * K * H * 4));
        CK(cudaMalloc((void **)&f->sgate, t * 4));
        CK(cudaMalloc((void **)&f->selw, t * K * 4));
        CK(cudaMalloc((void **)&f->sel, t * K * 4));
        CK(cudaMalloc((void **)&f->rows, t * K * 4));
        CK(cudaMallocHost((void **)&f->h_sel, t * K * 4));
        CK(cudaMallocHost((void **)&f->h_sel_prev, t * K * 4));
        CK(cudaMallocHost((void **)&f->h_rows, t * K * 4));
    }
    f->cap = T;
    return BT_OK;
}

/* The host's RoPE table rows 0 .. need-1 (forward.c's own function, so
 * the same bits), grown by doubling. */
static bt_status_t reserve_rope(cuda_fwd_t *f, int need)
{
    const int hd = f->m->cfg.head_dim;
    int rows = f->rope_rows > 0 ? f->rope_rows : 4096;
    int32_t *pos;
    float *tab;

    if (need <= f->rope_rows) {
        return BT_OK;
    }
    while (rows < need) {
        rows *= 2;
    }
    pos = malloc((size_t)rows * sizeof(*pos));
    tab = malloc((size_t)rows * hd * sizeof(*tab));
    if (pos == NULL || tab == NULL) {
        free(pos);
        free(tab);
        return BT_ERR_NO_MEMORY;
    }
    for (int i = 0; i < rows; i++) {
        pos[i] = i;
    }
    bt_fwd_rope_tables(f->m, pos, rows, tab);
    free(pos);
    cudaFree(f->rope);
    f->rope = NULL;
    f->rope_rows = 0;
    if (cudaMalloc((void **)&f->rope, (size_t)rows * hd * sizeof(float)) !=
            cudaSuccess ||
        cudaMemcpy(f->rope, tab, (size_t)rows * hd * sizeof(float),
                   cudaMemcpyHostToDevice) != cudaSuccess) {
        free(tab);
        bt_error("cuda: no room for a RoPE table of %d positions", rows);
        return BT_ERR_NO_MEMORY;
    }
    free(tab);
    f->rope_rows = rows;
    return BT_OK;
}

/* The device's pool copy, of the host view's shape. */
static bt_status_t reserve_kv(cuda_fwd_t *f, const bt_kv_view_t *kv)
{
    const size_t bytes = (size_t)kv->n_layers * kv->n_blocks * 2 *
                         kv->block_size * kv->n_kv_heads * kv->head_dim *
                         esize(kv->dtype);

    if (f->kv.base != NULL && f->kv.dtype == (int)kv->dtype &&
        f->kv.n_layers == kv->n_layers && f->kv.n_blocks == kv->n_blocks &&
        f->kv.block_size == kv->block_size &&
        f->kv.n_kv_heads == kv->n_kv_heads && f->kv.head_dim == kv->head_dim) {
        return BT_OK;
    }
    cudaFree(f->kv.base);
    free(f->kv_gen);
    free(f->kv_known);
    f->kv.base = NULL;
    f->kv_gen = calloc((size_t)kv->n_blocks, sizeof(*f->kv_gen));
    f->kv_known = calloc((size_t)kv->n_blocks, 1);
    if (f->kv_gen == NULL || f->kv_known == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    CK(cudaMalloc(&f->kv.base, bytes));
    /* pinned, the block copies and the rows' way back are asynchronous
     * DMA; where the pool cannot be pinned they still work, staged */
    if (f->kv_registered != NULL) {
        cudaHostUnregister(f->kv_registered);
        f->kv_registered = NULL;
    }
    if (cudaHostRegister(kv->base, bytes, cudaHostRegisterPortable) ==
            cudaSuccess) {
        f->kv_registered = kv->base;
    } else {
        (void)cudaGetLastError();
        bt_warn("cuda: the KV pool (%zu MiB) cannot be pinned: its copies "
                "are staged", bytes >> 20);
    }
    f->kv.dtype = (int)kv->dtype;
    f->kv.n_layers = kv->n_layers;
    f->kv.n_blocks = kv->n_blocks;
    f->kv.block_size = kv->block_size;
    f->kv.n_kv_heads = kv->n_kv_heads;
    f->kv.head_dim = kv->head_dim;
    return BT_OK;
}

static bt_status_t reserve_scratch(cuda_fwd_t *f, size_t floats)
{
    if (floats <= f->scratch_cap) {
        return BT_OK;
    }
    cudaFree(f->scratch);
    f->scratch = NULL;
    f->scratch_cap = 0;
    CK(cudaMalloc((void **)&f->scratch, floats * sizeof(float)));
    f->scratch_cap = floats;
    return BT_OK;
}

/* A block's K and V of every layer, host -> device: one 2-D copy (its
 * slices lie n_blocks slices apart). */
static bt_status_t kv_pull_block(cuda_fwd_t *f, const bt_kv_view_t *kv,
                                 uint32_t b)
{
    const size_t slice = (size_t)2 * kv->block_size * kv->n_kv_heads *
                         kv->head_dim * esize(kv->dtype);
    const size_t pitch = slice * (size_t)kv->n_blocks;

    CK(cudaMemcpy2DAsync((char *)f->kv.base + (size_t)b * slice, pitch,
                         (const char *)kv->base + (size_t)b * slice, pitch,
                         slice, (size_t)kv->n_layers, cudaMemcpyHostToDevice,
                         f->stream));
    return BT_OK;
}

/* Token ids, positions and block tables in; every block the step reads
 * brought up to date. */
static bt_status_t step_inputs(cuda_fwd_t *f, const bt_kv_view_t *kv,
                               const bt_step_seq_t *seqs, int n_seqs, int T)
{
    size_t n_tab = 0;
    int t = 0;

    for (int i = 0; i < n_seqs; i++) {
        n_tab += (size_t)(seqs[i].pos + seqs[i].n_tokens + kv->block_size - 1) /
                 (size_t)kv->block_size;
    }
    if (n_tab > f->tables_cap) {
        cudaFree(f->tables);
        cudaFreeHost(f->h_tables);
        f->tables = NULL;
        f->h_tables = NULL;
        f->tables_cap = 0;
        CK(cudaMalloc((void **)&f->tables, n_tab * 4));
        CK(cudaMallocHost((void **)&f->h_tables, n_tab * 4));
        f->tables_cap = n_tab;
    }
    n_tab = 0;
    for (int i = 0; i < n_seqs; i++) {
        const bt_step_seq_t *s = &seqs[i];
        const int nb = (s->pos + s->n_tokens + kv->block_size - 1) /
                       kv->block_size;

        memcpy(f->h_tables + n_tab, s->block_table, (size_t)nb * 4);
        for (int j = 0; j < s->n_tokens; j++, t++) {
            f->h_tok[t] = s->tokens[j];
            f->h_pos[t] = s->pos + j;
            f->h_toff[t] = (uint32_t)n_tab;
        }
        /* the blocks holding positions before this step's tokens */
        for (int b = 0; b < (s->pos + kv->block_size - 1) / kv->block_size; b++) {
            const uint32_t id = s->block_table[b];

            if (kv->gen == NULL || !f->kv_known[id] || f->kv_gen[id] != kv->gen[id]) {
                bt_status_t st = kv_pull_block(f, kv, id);

                if (st != BT_OK) {
                    return st;
                }
                f->kv_known[id] = kv->gen != NULL;
                f->kv_gen[id] = kv->gen != NULL ? kv->gen[id] : 0;
            }
        }
        n_tab += (size_t)nb;
    }
    CK(cudaMemcpyAsync(f->tok, f->h_tok, (size_t)T * 4, cudaMemcpyHostToDevice,
                       f->stream));
    CK(cudaMemcpyAsync(f->pos, f->h_pos, (size_t)T * 4, cudaMemcpyHostToDevice,
                       f->stream));
    CK(cudaMemcpyAsync(f->toff, f->h_toff, (size_t)T * 4, cudaMemcpyHostToDevice,
                       f->stream));
    CK(cudaMemcpyAsync(f->tables, f->h_tables, n_tab * 4, cudaMemcpyHostToDevice,
                       f->stream));
    return BT_OK;
}

/* Layer l's new K/V rows on their way back: gathered on the compute
 * stream, copied to pinned memory on the copy stream (slot l & 1). */
static bt_status_t kv_post_layer(cuda_fwd_t *f, const bt_kv_view_t *kv, int l,
                                 int T)
{
    const size_t row = (size_t)kv->n_kv_heads * kv->head_dim * esize(kv->dtype);
    const int k = l & 1;

    KK(bt_cuda_kv_gather(T, l, f->pos, f->tables, f->toff, &f->kv, f->kv_rows[k],
                         f->stream));
    CK(cudaEventRecord(f->ev_gathered[k], f->stream));
    CK(cudaStreamWaitEvent(f->copy, f->ev_gathered[k], 0));
    CK(cudaMemcpyAsync(f->h_kv_rows[k], f->kv_rows[k], (size_t)T * 2 * row,
                       cudaMemcpyDeviceToHost, f->copy));
    CK(cudaEventRecord(f->ev_copied[k], f->copy));
    return BT_OK;
}

/* Layer l's rows into the host pool once copied, then its hook; the
 * blocks written are the device's copy from here on (their generation
 * recorded). Called while the next layer computes. */
static bt_status_t kv_land_layer(cuda_fwd_t *f, const bt_kv_view_t *kv, int l,
                                 int T, const bt_step_hooks_t *hooks)
{
    const size_t row = (size_t)kv->n_kv_heads * kv->head_dim * esize(kv->dtype);
    const int k = l & 1;

    CK(cudaEventSynchronize(f->ev_copied[k]));
    for (int t = 0; t < T; t++) {
        const int p = f->h_pos[t];
        const uint32_t b = f->h_tables[f->h_toff[t] + (uint32_t)(p / kv->block_size)];
        const char *src = (const char *)f->h_kv_rows[k] + (size_t)t * 2 * row;

        memcpy(bt_kv_view_at(kv, l, b, 0, p % kv->block_size), src, row);
        memcpy(bt_kv_view_at(kv, l, b, 1, p % kv->block_size), src + row, row);
        if (kv->gen != NULL) {
            f->kv_known[b] = 1;
            f->kv_gen[b] = kv->gen[b];
        }
    }
    if (hooks != NULL && hooks->layer_done != NULL) {
        hooks->layer_done(hooks->ctx, l);
    }
    return BT_OK;
}

/* ---- the layers ------------------------------------------------------ */

/* Every matmul of the pass: `exact` in the CPU's order, `fast` on the
 * tensor cores (everything else is the exact kernels in both modes). */
static int mm(cuda_fwd_t *f, const float *x, int n, const dmat_t *w,
              const float *bias, float *y)
{
    return f->fast ? bt_cuda_matmul_fast(x, n, w->data, w->dtype, w->rows,
                                         w->cols, bias, y, f->stream)
                   : bt_cuda_matmul(x, n, w->data, w->dtype, w->rows, w->cols,
                                    bias, y, f->stream);
}

static bt_status_t ffn(cuda_fwd_t *f, const dffn_t *w, const float *in, int n,
                       float *out)
{
    KK(mm(f, in, n, &w->gate, NULL, f->g));
    KK(mm(f, in, n, &w->up, NULL, f->u));
    KK(bt_cuda_swiglu(f->g, f->u, (size_t)n * (size_t)w->gate.rows, f->stream));
    KK(mm(f, f->g, n, &w->down, NULL, out));
    return BT_OK;
}

static bt_status_t attn_block(cuda_fwd_t *f, int l, int T, int max_ctx)
{
    const bt_model_config_t *c = &f->m->cfg;
    const dlayer_t *w = &f->layers[l];
    const int hd = c->head_dim;

    KK(bt_cuda_rmsnorm(f->x, w->attn_norm, T, c->hidden, c->norm_eps, f->xn,
                       f->stream));
    KK(mm(f, f->xn, T, &w->wq, w->bq, f->q));
    KK(mm(f, f->xn, T, &w->wk, w->bk, f->k));
    KK(mm(f, f->xn, T, &w->wv, w->bv, f->v));
    if (w->q_norm != NULL) {
        KK(bt_cuda_rmsnorm(f->q, w->q_norm, T * c->n_heads, hd, c->norm_eps,
                           f->q, f->stream));
        KK(bt_cuda_rmsnorm(f->k, w->k_norm, T * c->n_kv_heads, hd, c->norm_eps,
                           f->k, f->stream));
    }
    KK(bt_cuda_rope(f->q, T, c->n_heads, hd, f->pos, f->rope, f->stream));
    KK(bt_cuda_rope(f->k, T, c->n_kv_heads, hd, f->pos, f->rope, f->stream));
    KK(bt_cuda_kv_store(f->k, f->v, T, l, f->pos, f->tables, f->toff, &f->kv,
                        f->stream));
    KK(bt_cuda_attention(f->q, f->att, T, c->n_heads, c->n_kv_heads, hd, l,
                         c->sliding_window, 1.0f / sqrtf((float)hd), f->pos,
                         f->tables, f->toff, &f->kv, f->scratch, max_ctx,
                         f->stream));
    KK(mm(f, f->att, T, &w->wo, NULL, f->tmp));
    KK(bt_cuda_add(f->x, f->tmp, (size_t)T * c->hidden, f->stream));
    return BT_OK;
}

/* Routing on the device; the rows of each expert gathered, run and put
 * back in slot order on the host's grouping (forward.c experts_run). */
static bt_status_t moe_layer(cuda_fwd_t *f, bt_fwd_t *fwd, int l, int T,
                             bool prev_moe)
{
    const bt_model_config_t *c = &f->m->cfg;
    const dlayer_t *w = &f->layers[l];
    const int E = c->n_experts, K = c->n_experts_used, H = c->hidden;
    int n = 0;

    KK(mm(f, f->xn, T, &w->router, NULL, f->router));
    KK(bt_cuda_moe_route(f->router, T, E, K, c->norm_topk_prob, f->sel, f->selw,
                         f->stream));
    CK(cudaMemcpyAsync(f->h_sel, f->sel, (size_t)T * K * 4,
                       cudaMemcpyDeviceToHost, f->stream));
    CK(cudaStreamSynchronize(f->stream));
    bt_fwd_count_routes(fwd, l, T, f->h_sel, prev_moe ? f->h_sel_prev : NULL);
    /* every expert's rows in expert order, each (token, slot) once */
    for (int e = 0; e < E; e++) {
        for (int i = 0; i < T * K; i++) {
            if (f->h_sel[i] == e) {
                f->h_rows[n++] = i;
            }
        }
    }
    CK(cudaMemcpyAsync(f->rows, f->h_rows, (size_t)n * 4, cudaMemcpyHostToDevice,
                       f->stream));
    KK(bt_cuda_gather_rows(f->xn, f->rows, K, n, H, f->xe, f->stream));
    for (int e = 0, at = 0; e < E; e++) {
        int m = 0;

        while (at + m < n && f->h_sel[f->h_rows[at + m]] == e) {
            m++;
        }
        if (m > 0) {
            bt_status_t s = ffn(f, &w->experts[e], f->xe + (size_t)at * H, m,
                                f->ye + (size_t)at * H);

            if (s != BT_OK) {
                return s;
            }
        }
        at += m;
    }
    KK(bt_cuda_scatter_rows(f->ye, f->rows, n, H, f->slot_out, f->stream));
    if (c->shared_ffn > 0) {
        bt_status_t s;

        KK(mm(f, f->xn, T, &w->shared_gate, NULL, f->sgate));
        /* the shared expert's output in xe: its rows are free again */
        s = ffn(f, &w->shared, f->xn, T, f->xe);
        if (s != BT_OK) {
            return s;
        }
        KK(bt_cuda_moe_combine(f->slot_out, f->selw, T, K, H, f->sgate, f->xe,
                               f->tmp, f->stream));
    } else {
        KK(bt_cuda_moe_combine(f->slot_out, f->selw, T, K, H, NULL, NULL, f->tmp,
                               f->stream));
    }
    {
        int *swap = f->h_sel_prev;

        f->h_sel_prev = f->h_sel;
        f->h_sel = swap;
    }
    return BT_OK;
}

/* The rows that want logits: final norm, LM head, out to each sequence. */
static bt_status_t logits_out(cuda_fwd_t *f, bt_step_seq_t *seqs, int n_seqs)
{
    const bt_model_config_t *c = &f->m->cfg;
    const size_t V = (size_t)c->vocab;
    int n = 0, t0 = 0, r = 0;

    for (int i = 0; i < n_seqs; i++) {
        for (int j = seqs[i].n_tokens - seqs[i].n_logits; j < seqs[i].n_tokens; j++) {
            f->h_lrows[n++] = t0 + j;
        }
        t0 += seqs[i].n_tokens;
    }
    if (n == 0) {
        return BT_OK;
    }
    CK(cudaMemcpyAsync(f->lrows, f->h_lrows, (size_t)n * 4,
                       cudaMemcpyHostToDevice, f->stream));
    KK(bt_cuda_gather_rows(f->x, f->lrows, 1, n, c->hidden, f->xn, f->stream));
    KK(bt_cuda_rmsnorm(f->xn, f->final_norm, n, c->hidden, c->norm_eps, f->xn,
                       f->stream));
    for (int at = 0; at < n; at += LOGIT_ROWS) {
        const int m = n - at < LOGIT_ROWS ? n - at : LOGIT_ROWS;

        KK(mm(f, f->xn + (size_t)at * c->hidden, m, &f->lm_head, NULL,
              f->logits));
        CK(cudaMemcpyAsync(f->h_logits + (size_t)at * V, f->logits,
                           (size_t)m * V * 4, cudaMemcpyDeviceToHost,
                           f->stream));
    }
    CK(cudaStreamSynchronize(f->stream));
    for (int i = 0; i < n_seqs; i++) {
        for (int j = 0; j < seqs[i].n_logits; j++, r++) {
            memcpy(seqs[i].logits + (size_t)j * V, f->h_logits + (size_t)r * V,
                   V * sizeof(float));
        }
    }
    return BT_OK;
}

static bt_status_t cuda_step(void *vf, bt_fwd_t *fwd, const bt_kv_view_t *kv,
                             bt_step_seq_t *seqs, int n_seqs, int T, int max_ctx,
                             const bt_step_hooks_t *hooks)
{
    cuda_fwd_t *f = vf;
    const bt_model_config_t *c = &f->m->cfg;
    bool prev_moe = false;
    bt_status_t s;

    if ((s = reserve_acts(f, T)) != BT_OK ||
        (s = reserve_rope(f, max_ctx)) != BT_OK ||
        (s = reserve_kv(f, kv)) != BT_OK ||
        (s = reserve_scratch(f, (size_t)T * c->n_heads * max_ctx)) != BT_OK ||
        (s = step_inputs(f, kv, seqs, n_seqs, T)) != BT_OK) {
        return s;
    }
    KK(bt_cuda_embed(f->embed.data, f->embed.dtype, c->hidden, f->tok, T, f->x,
                     f->stream));
    for (int l = 0; l < c->n_layers; l++) {
        const dlayer_t *w = &f->layers[l];

        if ((s = attn_block(f, l, T, max_ctx)) != BT_OK ||
            (s = kv_post_layer(f, kv, l, T)) != BT_OK ||
            (l > 0 && (s = kv_land_layer(f, kv, l - 1, T, hooks)) != BT_OK)) {
            return s;
        }
        KK(bt_cuda_rmsnorm(f->x, w->ffn_norm, T, c->hidden, c->norm_eps, f->xn,
                           f->stream));
        s = w->moe ? moe_layer(f, fwd, l, T, prev_moe)
                   : ffn(f, &w->ffn, f->xn, T, f->tmp);
        if (s != BT_OK) {
            return s;
        }
        prev_moe = w->moe;
        KK(bt_cuda_add(f->x, f->tmp, (size_t)T * c->hidden, f->stream));
    }
    s = kv_land_layer(f, kv, c->n_layers - 1, T, hooks);
    return s != BT_OK ? s : logits_out(f, seqs, n_seqs);
}

/* The component name outlives the call (bt_log_init borrows it). */
static void cuda_log_init(const char *component, int level, int format)
{
    static char name[64];

    snprintf(name, sizeof(name), "%s", component);
    bt_log_init(name, (bt_log_level_t)level, (bt_log_format_t)format);
}

static const bt_device_ops_t bt_cuda_device_ops = {
    .abi = BT_DEVICE_ABI,
    .name = "cuda",
    .kernel_rev = BT_CUDA_KERNEL_REV,
    .create = cuda_create,
    .destroy = cuda_destroy,
    .log_init = cuda_log_init,
    .step = cuda_step,
};

const bt_device_ops_t *bt_device_plugin(void);

const bt_device_ops_t *bt_device_plugin(void)
{
    return &bt_cuda_device_ops;
}
