/* Goodput reports for baton-bench and baton-sim (report.h). */
#include "report.h"

#include "base/json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int rep_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return a < b ? -1 : a > b;
}

bt_rep_dist_t bt_rep_dist(double *v, size_t n)
{
    bt_rep_dist_t d = {0, 0, 0, 0, n};
    double sum = 0;

    if (n == 0) {
        return d;
    }
    qsort(v, n, sizeof(*v), rep_cmp);
    for (size_t i = 0; i < n; i++) {
        sum += v[i];
    }
    d.p50 = v[(size_t)ceil(0.50 * (double)n) - 1];
    d.p90 = v[(size_t)ceil(0.90 * (double)n) - 1];
    d.p99 = v[(size_t)ceil(0.99 * (double)n) - 1];
    d.mean = sum / (double)n;
    return d;
}

bool bt_rep_meets_ttft(const bt_rep_rec_t *r, const bt_rep_slo_t *slo)
{
    return r->ok && (slo->slo_ttft_ms <= 0 || r->ttft_ms <= slo->slo_ttft_ms);
}

bool bt_rep_meets_tpot(const bt_rep_rec_t *r, const bt_rep_slo_t *slo)
{
    return r->ok && (slo->slo_tpot_ms <= 0 || r->out_tokens < 2 ||
                     r->tpot_ms <= slo->slo_tpot_ms);
}

/* The values of one field over the successful records (malloc'ed). */
static double *rep_values(const bt_rep_rec_t *recs, size_t n, size_t off,
                          bool need_two, size_t *k_p)
{
    double *v = malloc((n > 0 ? n : 1) * sizeof(*v));
    size_t k = 0;

    for (size_t i = 0; v != NULL && i < n; i++) {
        if (recs[i].ok && (!need_two || recs[i].out_tokens >= 2)) {
            memcpy(&v[k++], (const char *)&recs[i] + off, sizeof(double));
        }
    }
    *k_p = k;
    return v;
}

void bt_rep_compute(const bt_rep_rec_t *recs, size_t n, double wall_s,
                    const bt_rep_slo_t *slo, double *itl, size_t n_itl,
                    bt_rep_t *rep)
{
    size_t m_ttft = 0, m_tpot = 0, m_both = 0, k;
    double *v;

    memset(rep, 0, sizeof(*rep));
    rep->requests = n;
    rep->wall_s = wall_s;
    rep->slo = *slo;
    for (size_t i = 0; i < n; i++) {
        const bt_rep_rec_t *r = &recs[i];
        bool a = bt_rep_meets_ttft(r, slo), b = bt_rep_meets_tpot(r, slo);

        if (!r->ok) {
            continue;
        }
        rep->ok++;
        rep->out_tokens += r->out_tokens;
        rep->prompt_tokens += r->prompt_tokens;
        rep->cached_tokens += r->cached_tokens;
        rep->ideal_cached += r->ideal_cached;
        m_ttft += a;
        m_tpot += b;
        m_both += a && b;
    }
    rep->errors = n - rep->ok;
    if (n > 0) {
        rep->frac_ttft = (double)m_ttft / (double)n;
        rep->frac_tpot = (double)m_tpot / (double)n;
        rep->frac_both = (double)m_both / (double)n;
    }
    if (wall_s > 0) {
        rep->out_tok_s = (double)rep->out_tokens / wall_s;
        rep->req_s = (double)rep->ok / wall_s;
        rep->goodput = (double)m_both / wall_s;
    }
    v = rep_values(recs, n, offsetof(bt_rep_rec_t, ttft_ms), false, &k);
    rep->ttft = v != NULL ? bt_rep_dist(v, k) : rep->ttft;
    free(v);
    v = rep_values(recs, n, offsetof(bt_rep_rec_t, tpot_ms), true, &k);
    rep->tpot = v != NULL ? bt_rep_dist(v, k) : rep->tpot;
    free(v);
    v = rep_values(recs, n, offsetof(bt_rep_rec_t, itl1_ms), true, &k);
    rep->itl1 = v != NULL ? bt_rep_dist(v, k) : rep->itl1;
    free(v);
    v = rep_values(recs, n, offsetof(bt_rep_rec_t, e2e_ms), false, &k);
    rep->e2e = v != NULL ? bt_rep_dist(v, k) : rep->e2e;
    free(v);
    if (itl != NULL) {
        rep->itl = bt_rep_dist(itl, n_itl);
    }
}

static json_t *rep_dist_json(const bt_rep_dist_t *d)
{
    return json_pack("{s:f,s:f,s:f,s:f,s:I}", "p50", d->p50, "p90", d->p90,
                     "p99", d->p99, "mean", d->mean, "n", (json_int_t)d->n);
}

json_t *bt_rep_json(const bt_rep_t *r)
{
    double hit = r->prompt_tokens > 0 ? (double)r->cached_tokens /
                                        (double)r->prompt_tokens : 0;

    return json_pack(
        "{s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:f,s:f,s:f,"
        "s:o,s:o,s:o,s:o,s:o,s:{s:f,s:f},s:f,s:f,s:f,s:f}",
        "requests", (json_int_t)r->requests, "ok", (json_int_t)r->ok,
        "errors", (json_int_t)r->errors, "wall_s", r->wall_s,
        "output_tokens", (json_int_t)r->out_tokens,
        "prompt_tokens_total", (json_int_t)r->prompt_tokens,
        "cached_tokens", (json_int_t)r->cached_tokens,
        "cache_hit_ratio", hit, "output_tok_s", r->out_tok_s,
        "req_s", r->req_s,
        "ttft_ms", rep_dist_json(&r->ttft), "tpot_ms", rep_dist_json(&r->tpot),
        "itl_ms", rep_dist_json(&r->itl),
        "itl_first_ms", rep_dist_json(&r->itl1), "e2e_ms", rep_dist_json(&r->e2e),
        "slo", "ttft_ms", r->slo.slo_ttft_ms, "tpot_ms", r->slo.slo_tpot_ms,
        "slo_ttft_met", r->frac_ttft, "slo_tpot_met", r->frac_tpot,
        "slo_both_met", r->frac_both, "goodput_req_s", r->goodput);
}

static void rep_row(FILE *f, const char *fmt, const char *name,
                    const bt_rep_dist_t *d)
{
    fprintf(f, fmt, name, d->p50, d->p90, d->p99, d->mean);
}

void bt_rep_print_text(FILE *f, const bt_rep_t *r)
{
    const char *fmt = "%-6s %10.2f %10.2f %10.2f %10.2f\n";

    fprintf(f, "requests %zu  ok %zu  errors %zu  wall %.3f s\n", r->requests,
            r->ok, r->errors, r->wall_s);
    fprintf(f, "%-6s %10s %10s %10s %10s\n", "ms", "p50", "p90", "p99", "mean");
    rep_row(f, fmt, "ttft", &r->ttft);
    rep_row(f, fmt, "tpot", &r->tpot);
    if (r->itl.n > 0) {   /* a simulation has no inter-token gaps */
        rep_row(f, fmt, "itl", &r->itl);
    }
    if (r->itl1.n > 0) {
        rep_row(f, fmt, "itl1", &r->itl1);
    }
    rep_row(f, fmt, "e2e", &r->e2e);
    fprintf(f, "throughput %.1f output tok/s  %.2f req/s\n", r->out_tok_s,
            r->req_s);
    fprintf(f, "slo ttft <= %.1f ms: %.1f%%  tpot <= %.1f ms: %.1f%%  both: "
            "%.1f%%  goodput %.2f req/s\n", r->slo.slo_ttft_ms,
            100 * r->frac_ttft, r->slo.slo_tpot_ms, 100 * r->frac_tpot,
            100 * r->frac_both, r->goodput);
}

void bt_rep_print_markdown(FILE *f, const bt_rep_t *r, const char *title)
{
    const char *fmt = "| %s | %.2f | %.2f | %.2f | %.2f |\n";

    fprintf(f, "## %s\n\n", title);
    fprintf(f, "%zu requests, %zu ok, %zu errors, %.3f s.\n\n", r->requests,
            r->ok, r->errors, r->wall_s);
    fprintf(f, "| ms | p50 | p90 | p99 | mean |\n|---|---|---|---|---|\n");
    rep_row(f, fmt, "TTFT", &r->ttft);
    rep_row(f, fmt, "TPOT", &r->tpot);
    if (r->itl.n > 0) {
        rep_row(f, fmt, "ITL", &r->itl);
    }
    if (r->itl1.n > 0) {
        rep_row(f, fmt, "first ITL", &r->itl1);
    }
    rep_row(f, fmt, "E2E", &r->e2e);
    fprintf(f, "\n| output tok/s | req/s | TTFT <= %.1f ms | TPOT <= %.1f ms "
            "| both | goodput req/s |\n|---|---|---|---|---|---|\n",
            r->slo.slo_ttft_ms, r->slo.slo_tpot_ms);
    fprintf(f, "| %.1f | %.2f | %.1f%% | %.1f%% | %.1f%% | %.2f |\n\n",
            r->out_tok_s, r->req_s, 100 * r->frac_ttft, 100 * r->frac_tpot,
            100 * r->frac_both, r->goodput);
}

static int rep_write_cdf(const char *path, const bt_rep_rec_t *recs, size_t n,
                         size_t off, bool need_two)
{
    size_t k;
    double *v = rep_values(recs, n, off, need_two, &k);
    FILE *f;

    if (v == NULL || (f = fopen(path, "w")) == NULL) {
        free(v);
        return -1;
    }
    qsort(v, k, sizeof(*v), rep_cmp);
    fprintf(f, "# ms fraction\n");
    for (size_t i = 0; i < k; i++) {
        fprintf(f, "%.4f %.6f\n", v[i], (double)(i + 1) / (double)k);
    }
    free(v);
    return fclose(f) == 0 ? 0 : -1;
}

int bt_rep_write_dir(const char *dir, const bt_rep_rec_t *recs, size_t n,
                     const bt_rep_t *rep, const char *title, char *err,
                     size_t err_size)
{
    char path[4096];
    json_t *o = bt_rep_json(rep);
    char *text = o != NULL ? bt_json_dump(o) : NULL;
    FILE *f;
    int rc = -1;

    json_decref(o);
    snprintf(path, sizeof(path), "%s/ttft_cdf.dat", dir);
    if (rep_write_cdf(path, recs, n, offsetof(bt_rep_rec_t, ttft_ms), false)) {
        goto err_out;
    }
    snprintf(path, sizeof(path), "%s/tpot_cdf.dat", dir);
    if (rep_write_cdf(path, recs, n, offsetof(bt_rep_rec_t, tpot_ms), true)) {
        goto err_out;
    }
    snprintf(path, sizeof(path), "%s/report.json", dir);
    if (text == NULL || (f = fopen(path, "w")) == NULL) {
        goto err_out;
    }
    fprintf(f, "%s\n", text);
    if (fclose(f) != 0) {
        goto err_out;
    }
    snprintf(path, sizeof(path), "%s/report.md", dir);
    if ((f = fopen(path, "w")) == NULL) {
        goto err_out;
    }
    bt_rep_print_markdown(f, rep, title);
    if (fclose(f) != 0) {
        goto err_out;
    }
    rc = 0;
err_out:
    if (rc != 0) {
        snprintf(err, err_size, "cannot write %s: %s", path, strerror(errno));
    }
    free(text);
    return rc;
}

void bt_rep_progress(FILE *f, size_t done, size_t total, size_t ok,
                     double elapsed_s, const char *what)
{
    fprintf(f, "\r%s: %zu/%zu done (%.0f%%), %zu ok, %.1f s ", what, done,
            total, total > 0 ? 100.0 * (double)done / (double)total : 100.0,
            ok, elapsed_s);
    fflush(f);
}
