/* The report of a benchmark run, the same for baton-bench (measured) and
 * baton-sim (simulated): latency percentiles (TTFT, TPOT, ITL, E2E),
 * throughput, the fraction of requests meeting each SLO and both, and
 * goodput (requests per second meeting both; DistServe's measure). Printed
 * as text, JSON or Markdown; the TTFT and TPOT CDFs go to data files that
 * bench/workload/plot.sh draws. */
#ifndef BT_BENCH_REPORT_H
#define BT_BENCH_REPORT_H

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* One request as the client saw it. */
typedef struct {
    bool     ok;
    double   ttft_ms;
    double   tpot_ms;      /* (last - first token) / (tokens - 1); 0 for 1 */
    double   itl1_ms;      /* first to second token (the hand-over to the
                            * decode batch shows here); 0 for 1 */
    double   e2e_ms;
    uint32_t out_tokens;
    uint32_t prompt_tokens;
    uint32_t cached_tokens;
    uint32_t ideal_cached; /* trace: an unbounded cache's */
} bt_rep_rec_t;

typedef struct {
    double p50, p90, p99, mean;
    size_t n;
} bt_rep_dist_t;

typedef struct {
    double slo_ttft_ms;    /* 0: no bound */
    double slo_tpot_ms;
} bt_rep_slo_t;

typedef struct {
    size_t        requests, ok, errors;
    double        wall_s;
    uint64_t      out_tokens, prompt_tokens, cached_tokens, ideal_cached;
    double        out_tok_s, req_s;
    bt_rep_dist_t ttft, tpot, itl, itl1, e2e;
    bt_rep_slo_t  slo;
    double        frac_ttft, frac_tpot, frac_both;  /* of all requests */
    double        goodput;                          /* requests/s, both met */
} bt_rep_t;

/* Sorts v in place; nearest-rank percentiles. */
bt_rep_dist_t bt_rep_dist(double *v, size_t n);

/* Computes the report of n records over wall_s seconds; itl (n_itl
 * inter-token gaps, may be NULL) is sorted in place. A failed request
 * meets no SLO; one output token meets any TPOT bound. */
void bt_rep_compute(const bt_rep_rec_t *recs, size_t n, double wall_s,
                    const bt_rep_slo_t *slo, double *itl, size_t n_itl,
                    bt_rep_t *rep);

/* Whether a record meets the SLOs (ttft, tpot). */
bool bt_rep_meets_ttft(const bt_rep_rec_t *r, const bt_rep_slo_t *slo);
bool bt_rep_meets_tpot(const bt_rep_rec_t *r, const bt_rep_slo_t *slo);

/* The JSON object: every field of the report (new reference). */
json_t *bt_rep_json(const bt_rep_t *rep);
void bt_rep_print_text(FILE *f, const bt_rep_t *rep);
/* A Markdown section: a heading with `title`, a table of the latencies
 * and one of throughput and SLO attainment. */
void bt_rep_print_markdown(FILE *f, const bt_rep_t *rep, const char *title);

/* Writes "DIR/ttft_cdf.dat" and "DIR/tpot_cdf.dat" (value in ms, then the
 * cumulative fraction, one point per successful request), "DIR/report.json"
 * and "DIR/report.md". Returns 0, or -1 with a message in err. */
int bt_rep_write_dir(const char *dir, const bt_rep_rec_t *recs, size_t n,
                     const bt_rep_t *rep, const char *title, char *err,
                     size_t err_size);

/* One progress line on f ("\r" refreshed): done of total, ok, elapsed. */
void bt_rep_progress(FILE *f, size_t done, size_t total, size_t ok,
                     double elapsed_s, const char *what);

#endif
