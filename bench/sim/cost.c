/* Cost functions, their file and their fit (cost.h). */
#include "cost.h"

#include "base/json.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LSQ_MAX_K 8

double bt_sim_prefill_ms(const bt_sim_cost_t *c, uint32_t n, uint32_t ctx)
{
    return c->p_base_ms + c->p_token_ms * n +
           c->p_ctx_us * (double)n * ((double)ctx + (double)n / 2) / 1000;
}

double bt_sim_noise(const bt_sim_cost_t *c, uint64_t i)
{
    uint64_t z = i + 0x9e3779b97f4a7c15ULL;   /* splitmix64 */

    if (c->n_noise == 0) {
        return 1.0;
    }
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return c->noise[z % c->n_noise];
}

static int cost_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return a < b ? -1 : a > b;
}

void bt_sim_noise_set(bt_sim_cost_t *c, double *v, size_t n)
{
    size_t keep = n < BT_SIM_MAX_NOISE ? n : BT_SIM_MAX_NOISE;

    qsort(v, n, sizeof(*v), cost_cmp);
    c->n_noise = keep;
    for (size_t k = 0; k < keep; k++) {
        /* the k-th of keep quantiles, so a long list keeps its shape */
        c->noise[k] = (float)v[keep == n ? k : (k * (n - 1)) / (keep - 1)];
    }
}

double bt_sim_decode_ms(const bt_sim_cost_t *c, uint32_t batch,
                        uint64_t ctx_tokens)
{
    return c->d_base_ms + c->d_seq_ms * batch +
           c->d_ctx_us * (double)ctx_tokens / 1000;
}

double bt_sim_xfer_ms(const bt_sim_cost_t *c, const char *name, double bytes)
{
    const bt_sim_xfer_cost_t *x = c->n_xfer > 0 ? &c->xfer[0] : NULL;

    for (size_t i = 0; name != NULL && i < c->n_xfer; i++) {
        if (strcmp(c->xfer[i].name, name) == 0) {
            x = &c->xfer[i];
        }
    }
    return x != NULL ? x->base_ms + x->ms_per_mb * bytes / 1048576.0 : 0;
}

double bt_sim_join_ms(const bt_sim_cost_t *c, double bytes)
{
    return c->d_join_ms + c->d_join_ms_mb * bytes / 1048576.0;
}

double bt_sim_kvstore_ms(const bt_sim_cost_t *c, uint32_t blocks)
{
    return blocks > 0 ? c->k_base_ms + c->k_block_ms * blocks : 0;
}

/* A number at obj.key (>= 0), or -1 after setting err. */
static int cost_num(json_t *obj, const char *sect, const char *key,
                    double *v, char *err, size_t err_size)
{
    json_t *x = json_object_get(json_object_get(obj, sect), key);

    if (!json_is_number(x) || json_number_value(x) < 0 ||
        !isfinite(json_number_value(x))) {
        snprintf(err, err_size, "%s.%s must be a number >= 0", sect, key);
        return -1;
    }
    *v = json_number_value(x);
    return 0;
}

/* The same for a key a cost file may leave out (then 0). */
static int cost_num_opt(json_t *obj, const char *sect, const char *key,
                        double *v, char *err, size_t err_size)
{
    if (json_object_get(json_object_get(obj, sect), key) == NULL) {
        *v = 0;
        return 0;
    }
    return cost_num(obj, sect, key, v, err, err_size);
}

static int cost_u32(json_t *obj, const char *key, uint32_t *v, char *err,
                    size_t err_size)
{
    double d;

    if (cost_num(obj, "node", key, &d, err, err_size) != 0 || d < 1 ||
        d > 1e9 || d != floor(d)) {
        snprintf(err, err_size, "node.%s must be an integer from 1 to 1e9",
                 key);
        return -1;
    }
    *v = (uint32_t)d;
    return 0;
}

/* The optional section: noise. */
static int cost_load_extras(json_t *o, bt_sim_cost_t *c, char *why,
                            size_t why_size)
{
    json_t *nz = json_object_get(o, "noise"), *f, *v;
    size_t k;

    if (nz == NULL) {
        return 0;
    }
    f = json_object_get(nz, "ttft_factors");
    if (!json_is_array(f) || json_array_size(f) == 0 ||
        json_array_size(f) > BT_SIM_MAX_NOISE) {
        snprintf(why, why_size, "noise.ttft_factors must list 1 to %d "
                 "numbers", BT_SIM_MAX_NOISE);
        return -1;
    }
    json_array_foreach(f, k, v) {
        double x = json_number_value(v);

        if (!json_is_number(v) || !(x > 0.01 && x < 100) ||
            (k > 0 && (float)x < c->noise[k - 1])) {
            snprintf(why, why_size, "noise.ttft_factors must be ascending "
                     "numbers in (0.01, 100)");
            return -1;
        }
        c->noise[k] = (float)x;
    }
    c->n_noise = json_array_size(f);
    return 0;
}

int bt_sim_cost_load(const char *path, bt_sim_cost_t *c, char *err,
                     size_t err_size)
{
    json_error_t jerr;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    json_t *xf, *v;
    const char *key;
    char why[160] = "";
    int rc = -1;

    memset(c, 0, sizeof(*c));
    if (o == NULL) {
        snprintf(err, err_size, "%s: line %d: %s", path, jerr.line, jerr.text);
        return -1;
    }
    snprintf(c->name, sizeof(c->name), "%s",
             json_is_string(json_object_get(o, "name"))
             ? json_string_value(json_object_get(o, "name")) : path);
    if (cost_u32(o, "block_size", &c->block_size, why, sizeof(why)) ||
        cost_u32(o, "total_blocks", &c->total_blocks, why, sizeof(why)) ||
        cost_u32(o, "max_batch", &c->max_batch, why, sizeof(why)) ||
        cost_u32(o, "max_prefill_tokens", &c->max_prefill_tokens, why,
                 sizeof(why)) ||
        cost_num(o, "node", "kv_bytes_per_token", &c->kv_bytes_per_token,
                 why, sizeof(why)) ||
        cost_num(o, "prefill", "base_ms", &c->p_base_ms, why, sizeof(why)) ||
        cost_num(o, "prefill", "per_token_ms", &c->p_token_ms, why,
                 sizeof(why)) ||
        cost_num(o, "prefill", "per_token_ctx_us", &c->p_ctx_us, why,
                 sizeof(why)) ||
        cost_num(o, "decode", "base_ms", &c->d_base_ms, why, sizeof(why)) ||
        cost_num(o, "decode", "per_seq_ms", &c->d_seq_ms, why, sizeof(why)) ||
        cost_num(o, "decode", "per_ctx_token_us", &c->d_ctx_us, why,
                 sizeof(why)) ||
        cost_num_opt(o, "decode", "join_ms", &c->d_join_ms, why,
                     sizeof(why)) ||
        cost_num_opt(o, "decode", "join_ms_per_mb", &c->d_join_ms_mb, why,
                     sizeof(why)) ||
        cost_num(o, "kvstore", "base_ms", &c->k_base_ms, why, sizeof(why)) ||
        cost_num(o, "kvstore", "per_block_ms", &c->k_block_ms, why,
                 sizeof(why)) ||
        cost_num(o, "overhead", "ttft_ms", &c->ttft_overhead_ms, why,
                 sizeof(why)) ||
        cost_num_opt(o, "overhead", "router_ms", &c->router_ms, why,
                     sizeof(why))) {
        goto err_out;
    }
    /* chunks start on block boundaries, as the node rounds them */
    if (c->max_prefill_tokens >= c->block_size) {
        c->max_prefill_tokens -= c->max_prefill_tokens % c->block_size;
    } else {
        c->max_prefill_tokens = c->block_size;
    }
    xf = json_object_get(o, "transfer");
    if (!json_is_object(xf) || json_object_size(xf) == 0 ||
        json_object_size(xf) > BT_SIM_MAX_XFER) {
        snprintf(why, sizeof(why), "transfer must map 1 to %d transports to "
                 "{base_ms, ms_per_mb}", BT_SIM_MAX_XFER);
        goto err_out;
    }
    json_object_foreach(xf, key, v) {
        bt_sim_xfer_cost_t *x = &c->xfer[c->n_xfer++];
        json_t *wrap = json_pack("{s:O}", "t", v);

        snprintf(x->name, sizeof(x->name), "%s", key);
        if (wrap == NULL ||
            cost_num(wrap, "t", "base_ms", &x->base_ms, why, sizeof(why)) ||
            cost_num(wrap, "t", "ms_per_mb", &x->ms_per_mb, why, sizeof(why))) {
            json_decref(wrap);
            snprintf(why, sizeof(why), "transfer.%s needs base_ms and "
                     "ms_per_mb >= 0", key);
            goto err_out;
        }
        json_decref(wrap);
    }
    if (cost_load_extras(o, c, why, sizeof(why)) != 0) {
        goto err_out;
    }
    rc = 0;
err_out:
    if (rc != 0) {
        snprintf(err, err_size, "%s: %s", path, why);
    }
    json_decref(o);
    return rc;
}

int bt_sim_cost_save(const char *path, const bt_sim_cost_t *c,
                     const char *source, char *err, size_t err_size)
{
    json_t *xf = json_object();
    json_t *o;
    char *text;
    FILE *f;
    int rc = -1;

    for (size_t i = 0; xf != NULL && i < c->n_xfer; i++) {
        json_object_set_new(xf, c->xfer[i].name,
                            json_pack("{s:f,s:f}", "base_ms", c->xfer[i].base_ms,
                                      "ms_per_mb", c->xfer[i].ms_per_mb));
    }
    o = json_pack("{s:s,s:s,s:{s:I,s:I,s:I,s:I,s:f},s:{s:f,s:f,s:f},"
                  "s:{s:f,s:f,s:f,s:f,s:f},s:o,s:{s:f,s:f},s:{s:f,s:f}}",
                  "name", c->name, "source", source != NULL ? source : "",
                  "node", "block_size", (json_int_t)c->block_size,
                  "total_blocks", (json_int_t)c->total_blocks,
                  "max_batch", (json_int_t)c->max_batch,
                  "max_prefill_tokens", (json_int_t)c->max_prefill_tokens,
                  "kv_bytes_per_token", c->kv_bytes_per_token,
                  "prefill", "base_ms", c->p_base_ms, "per_token_ms",
                  c->p_token_ms, "per_token_ctx_us", c->p_ctx_us,
                  "decode", "base_ms", c->d_base_ms, "per_seq_ms", c->d_seq_ms,
                  "per_ctx_token_us", c->d_ctx_us, "join_ms", c->d_join_ms,
                  "join_ms_per_mb", c->d_join_ms_mb,
                  "transfer", xf,
                  "kvstore", "base_ms", c->k_base_ms, "per_block_ms",
                  c->k_block_ms,
                  "overhead", "ttft_ms", c->ttft_overhead_ms, "router_ms",
                  c->router_ms);
    if (o != NULL && c->n_noise > 0) {
        json_t *fac = json_array();

        for (size_t k = 0; fac != NULL && k < c->n_noise; k++) {
            /* four decimals: the file stays readable, the order stays */
            json_array_append_new(fac,
                                  json_real(round(c->noise[k] * 1e4) / 1e4));
        }
        json_object_set_new(o, "noise", json_pack("{s:o}", "ttft_factors",
                                                   fac));
    }
    text = o != NULL ? bt_json_dump(o) : NULL;
    if (text != NULL && (f = fopen(path, "w")) != NULL) {
        fprintf(f, "%s\n", text);
        rc = fclose(f) == 0 ? 0 : -1;
    }
    if (rc != 0) {
        snprintf(err, err_size, "cannot write %s", path);
    }
    free(text);
    json_decref(o);
    return rc;
}

/* Solves a k x k system in place (Gaussian elimination, partial
 * pivoting); false when singular. */
static bool lsq_solve(double a[LSQ_MAX_K][LSQ_MAX_K + 1], size_t k)
{
    for (size_t col = 0; col < k; col++) {
        size_t piv = col;

        for (size_t r = col + 1; r < k; r++) {
            if (fabs(a[r][col]) > fabs(a[piv][col])) {
                piv = r;
            }
        }
        if (fabs(a[piv][col]) < 1e-300) {
            return false;
        }
        for (size_t j = 0; j <= k; j++) {
            double t = a[col][j];

            a[col][j] = a[piv][j];
            a[piv][j] = t;
        }
        for (size_t r = 0; r < k; r++) {
            double f;

            if (r == col) {
                continue;
            }
            f = a[r][col] / a[col][col];
            for (size_t j = col; j <= k; j++) {
                a[r][j] -= f * a[col][j];
            }
        }
    }
    for (size_t r = 0; r < k; r++) {
        a[r][k] /= a[r][r];
    }
    return true;
}

double bt_sim_lsq(const double *x, const double *y, size_t n, size_t k,
                  double *beta)
{
    bool on[LSQ_MAX_K];
    double scale[LSQ_MAX_K];
    double rss = 0;

    if (k == 0 || k > LSQ_MAX_K || n == 0) {
        return -1;
    }
    for (size_t j = 0; j < k; j++) {
        on[j] = true;
        scale[j] = 0;
        for (size_t i = 0; i < n; i++) {
            scale[j] = fmax(scale[j], fabs(x[i * k + j]));
        }
        if (scale[j] == 0) {
            on[j] = false;  /* a feature that is always 0 says nothing */
            scale[j] = 1;
        }
    }
    for (size_t round = 0; round <= k; round++) {
        double a[LSQ_MAX_K][LSQ_MAX_K + 1];
        size_t idx[LSQ_MAX_K], m = 0;
        bool neg = false;

        for (size_t j = 0; j < k; j++) {
            beta[j] = 0;
            if (on[j]) {
                idx[m++] = j;
            }
        }
        if (m == 0) {
            break;
        }
        /* normal equations of the features scaled to [-1, 1] */
        memset(a, 0, sizeof(a));
        for (size_t i = 0; i < n; i++) {
            for (size_t p = 0; p < m; p++) {
                double xp = x[i * k + idx[p]] / scale[idx[p]];

                for (size_t q = 0; q < m; q++) {
                    a[p][q] += xp * x[i * k + idx[q]] / scale[idx[q]];
                }
                a[p][m] += xp * y[i];
            }
        }
        if (!lsq_solve(a, m)) {
            return -1;
        }
        for (size_t p = 0; p < m; p++) {
            beta[idx[p]] = a[p][m] / scale[idx[p]];
        }
        /* drop the most negative coefficient, refit the rest */
        {
            size_t worst = k;

            for (size_t p = 0; p < m; p++) {
                if (beta[idx[p]] < 0 &&
                    (worst == k || beta[idx[p]] * scale[idx[p]] <
                                   beta[worst] * scale[worst])) {
                    worst = idx[p];
                }
            }
            if (worst < k) {
                on[worst] = false;
                neg = true;
            }
        }
        if (!neg) {
            break;
        }
    }
    for (size_t j = 0; j < k; j++) {
        beta[j] = on[j] && beta[j] > 0 ? beta[j] : 0;
    }
    for (size_t i = 0; i < n; i++) {
        double r = y[i];

        for (size_t j = 0; j < k; j++) {
            r -= beta[j] * x[i * k + j];
        }
        rss += r * r;
    }
    return sqrt(rss / (double)n);
}
