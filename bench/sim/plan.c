/* baton-sim plan: the goodput of N nodes split every way into prefill and
 * decode nodes, and all colocated, on one workload under the SLOs (as
 * DistServe and Splitwise search placements); with --kvstore-size, what
 * a kvstore of that size changes on the best split. Under --out: plan.dat,
 * plan.md and plan.png (gnuplot, when installed). */
#include "sim_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char     label[32];
    uint32_t p, d, c;
    bt_rep_t rep;
    bool     ok;
} plan_row_t;

static void plan_print_row(FILE *f, const plan_row_t *r, bool md, bool best)
{
    if (!r->ok) {
        fprintf(f, md ? "| %s | failed | | | | |\n" : "%-12s failed\n",
                r->label);
        return;
    }
    fprintf(f, md ? "| %s%s | %.2f | %.1f%% | %.1f | %.1f | %.2f |\n"
                  : "%-12s%-2s %10.2f %9.1f%% %10.1f %10.1f %10.2f\n",
            r->label, best ? (md ? " (best)" : " *") : "", r->rep.goodput,
            100 * r->rep.frac_both, r->rep.ttft.p90, r->rep.tpot.p90,
            r->rep.req_s);
}

static void plan_plot(const sim_cli_t *cli, const plan_row_t *rows, size_t n)
{
    char path[4096];
    FILE *f, *g;

    snprintf(path, sizeof(path), "%s/plan.dat", cli->out);
    if ((f = fopen(path, "w")) == NULL) {
        fprintf(stderr, "baton-sim plan: cannot write %s\n", path);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s %.4f\n", rows[i].label, rows[i].ok ? rows[i].rep.goodput : 0);
    }
    fclose(f);
    g = popen("gnuplot 2>/dev/null", "w");
    if (g == NULL) {
        return;
    }
    fprintf(g, "set terminal pngcairo size 900,480 noenhanced\n"
               "set output '%s/plan.png'\nset grid ytics\n"
               "set title 'goodput by P:D split (%lld nodes, TTFT <= %.0f ms, "
               "TPOT <= %.0f ms)'\nset ylabel 'goodput (requests/s)'\n"
               "set style fill solid 0.6\nset boxwidth 0.6\n"
               "set xtics rotate by -30\nset yrange [0:*]\n"
               "plot '%s' using 0:2:xtic(1) with boxes notitle\n",
            cli->out, (long long)cli->nodes, cli->slo_ttft_ms, cli->slo_tpot_ms,
            path);
    if (pclose(g) != 0) {
        fprintf(stderr, "baton-sim plan: gnuplot failed or is missing: no "
                "plan.png (scripts/deps.sh installs it)\n");
    }
}

static int plan_run(sim_cli_t *cli, const bt_wl_t *wl, bt_rep_rec_t *recs,
                    plan_row_t *r, uint64_t kvstore)
{
    bt_sim_stats_t st;

    r->ok = sim_cli_simulate(cli, wl, r->p, r->d, r->c, kvstore, recs, &r->rep,
                             &st) == 0;
    return r->ok ? 0 : -1;
}

int sim_cmd_plan(sim_cli_t *cli, const bt_wl_t *wl)
{
    const uint32_t n = (uint32_t)cli->nodes;
    size_t splits = n > 1 ? n - 1 : 0, n_rows = 0, best = 0;
    size_t want = (size_t)cli->max_splits;
    plan_row_t *rows = calloc(splits + 1, sizeof(*rows));
    bt_rep_rec_t *recs = calloc(wl->n > 0 ? wl->n * sim_cli_draws(cli) : 1,
                                sizeof(*recs));
    FILE *md = NULL;
    int rc = 1;

    if (rows == NULL || recs == NULL) {
        fprintf(stderr, "baton-sim plan: no memory for %zu x %zu request "
                "records (fewer --noise-draws?)\n", wl->n, sim_cli_draws(cli));
        goto err_out;
    }
    cli->show_progress = false;
    snprintf(rows[0].label, sizeof(rows[0].label), "colocated");
    rows[0].c = n;
    n_rows = 1;
    for (size_t k = 0; k < splits && k < want; k++) {
        /* evenly spaced over 1 .. n-1 prefill nodes */
        uint32_t p = splits <= want ? (uint32_t)(k + 1)
                     : (uint32_t)(1 + (k * (splits - 1)) / (want - 1 > 0 ? want - 1 : 1));
        plan_row_t *r = &rows[n_rows];

        if (n_rows > 1 && rows[n_rows - 1].p == p) {
            continue;
        }
        r->p = p;
        r->d = n - p;
        snprintf(r->label, sizeof(r->label), "%uP:%uD", r->p, r->d);
        n_rows++;
    }
    printf("plan: %u nodes, %zu requests, TTFT <= %.1f ms, TPOT <= %.1f ms, "
           "cost %s\n", n, wl->n, cli->slo_ttft_ms, cli->slo_tpot_ms,
           cli->cost.name);
    printf("%-14s %10s %10s %10s %10s %10s\n", "split", "goodput", "both met",
           "ttft p90", "tpot p90", "req/s");
    for (size_t i = 0; i < n_rows; i++) {
        plan_run(cli, wl, recs, &rows[i], cli->kvstore_bytes);
        if (rows[i].ok && (!rows[best].ok ||
                           rows[i].rep.goodput > rows[best].rep.goodput)) {
            best = i;
        }
        plan_print_row(stdout, &rows[i], false, false);
        fflush(stdout);
    }
    printf("best: %s, goodput %.2f requests/s\n", rows[best].label,
           rows[best].rep.goodput);
    if (cli->kvstore_bytes > 0 && rows[best].ok) {
        /* the same split without the kvstore: what it saves */
        plan_row_t without = rows[best];

        plan_run(cli, wl, recs, &without, 0);
        if (without.ok) {
            const bt_rep_t *a = &rows[best].rep, *b = &without.rep;

            printf("kvstore of %llu bytes on %s: prompt tokens reused %llu vs "
                   "%llu without (%.1f%% vs %.1f%% of %llu); TTFT p50 %.1f vs "
                   "%.1f ms, p90 %.1f vs %.1f ms; goodput %.2f vs %.2f req/s\n",
                   (unsigned long long)cli->kvstore_bytes, rows[best].label,
                   (unsigned long long)a->cached_tokens,
                   (unsigned long long)b->cached_tokens,
                   a->prompt_tokens ? 100.0 * (double)a->cached_tokens /
                                      (double)a->prompt_tokens : 0,
                   b->prompt_tokens ? 100.0 * (double)b->cached_tokens /
                                      (double)b->prompt_tokens : 0,
                   (unsigned long long)a->prompt_tokens, a->ttft.p50,
                   b->ttft.p50, a->ttft.p90, b->ttft.p90, a->goodput,
                   b->goodput);
        }
    }
    if (cli->out != NULL) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/plan.md", cli->out);
        if ((md = fopen(path, "w")) != NULL) {
            fprintf(md, "| split | goodput req/s | both SLOs met | TTFT p90 ms "
                        "| TPOT p90 ms | req/s |\n|---|---|---|---|---|---|\n");
            for (size_t i = 0; i < n_rows; i++) {
                plan_print_row(md, &rows[i], true, i == best);
            }
            fclose(md);
        }
        plan_plot(cli, rows, n_rows);
    }
    rc = rows[best].ok ? 0 : 1;
err_out:
    free(rows);
    free(recs);
    return rc;
}
