/* baton-sim: a discrete-event simulator of a Baton cluster
 * (docs/internals/sim.md).
 *   baton-sim [run] --cost FILE (--colocated N | --prefill P --decode D)
 *             [workload options, as baton-bench's] [--slo-ttft MS]
 *             [--slo-tpot MS] [--kvstore-size S] [--json] [--out DIR]
 *       replays the workload baton-bench would send and prints the same
 *       report (text, JSON, or report.json/report.md/CDFs under --out);
 *   baton-sim plan --workload W --nodes N --slo-ttft MS --slo-tpot MS
 *       the goodput of every P:D split of N nodes and of N colocated ones
 *       (W: a Mooncake trace file, or "synthetic" for --rate and the
 *       length options), with a bar plot under --out; with
 *       --kvstore-size S also what a kvstore of S saves on the workload;
 *   baton-sim fit --url-colocated U --url-disagg U ... --out FILE
 *       runs calibration loads (fit_run.c) and writes the cost file.
 * With no arguments it only points at bench/sim/validate.sh (`make bench`
 * runs every baton-* that way). */
#include "sim_cli.h"

#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const bt_opt_t sim_opts[] = {
    BT_WL_OPTS(sim_cli_t, wl),
    BT_SIM_CLUSTER_OPTS,
    {"workload", 0, "BATON_SIM_WORKLOAD", NULL,
     "plan: a Mooncake trace file, or 'synthetic' (the length and rate options)",
     BT_OPT_STRING, 0, 0, NULL, offsetof(sim_cli_t, workload)},
    {"nodes", 0, "BATON_SIM_NODES", "0", "plan: nodes to split into roles",
     BT_OPT_INT, 0, 1000000, NULL, offsetof(sim_cli_t, nodes)},
    {"max-splits", 0, "BATON_SIM_MAX_SPLITS", "16",
     "plan: at most this many P:D splits, evenly spaced", BT_OPT_INT, 1, 100000,
     NULL, offsetof(sim_cli_t, max_splits)},
};

static void sim_progress(void *arg, size_t done, size_t total)
{
    const sim_cli_t *cli = arg;

    bt_rep_progress(stderr, done, total, done,
                    (double)(bt_now_ns() - cli->t0_ns) / 1e9, "baton-sim");
}

size_t sim_cli_draws(const sim_cli_t *cli)
{
    return bt_sim_draws(&cli->cost, (size_t)cli->noise_draws);
}

int sim_cli_simulate(sim_cli_t *cli, const bt_wl_t *wl, uint32_t n_prefill,
                     uint32_t n_decode, uint32_t n_colocated,
                     uint64_t kvstore_bytes, bt_rep_rec_t *recs, bt_rep_t *rep,
                     bt_sim_stats_t *st)
{
    bt_sim_cfg_t cfg;
    bt_rep_slo_t slo = {cli->slo_ttft_ms, cli->slo_tpot_ms};
    double sim_s;
    char err[256];

    bt_sim_cfg_default(&cfg);
    cfg.cost = &cli->cost;
    cfg.n_prefill = n_prefill;
    cfg.n_decode = n_decode;
    cfg.n_colocated = n_colocated;
    cfg.transport = cli->transport;
    cfg.kvstore_bytes = kvstore_bytes;
    cfg.prefix_cache = cli->prefix_cache;
    cfg.heartbeat_s = (double)cli->heartbeat_ms / 1e3;
    cfg.nodes_per_router = (uint32_t)cli->nodes_per_router;
    cfg.one_host = cli->one_host;
    if (cli->show_progress) {
        cfg.progress = sim_progress;
        cfg.progress_arg = cli;
    }
    /* the report over every draw is the noise's expected effect, not one
     * draw's luck */
    if (bt_sim_run_draws(&cfg, (size_t)cli->noise_draws, wl, recs, st, &sim_s,
                         err, sizeof(err)) != 0) {
        fprintf(stderr, "baton-sim: %s\n", err);
        return -1;
    }
    bt_rep_compute(recs, wl->n * sim_cli_draws(cli), sim_s, &slo, NULL, 0,
                   rep);
    return 0;
}

static int sim_load(sim_cli_t *cli, bt_wl_t *wl)
{
    char err[256];

    if (cli->cost_path == NULL) {
        fprintf(stderr, "baton-sim: --cost FILE is required (bench/sim/costs/ "
                "has some; `baton-sim fit` writes one)\n");
        return -1;
    }
    if (bt_sim_cost_load(cli->cost_path, &cli->cost, err, sizeof(err)) != 0 ||
        bt_wl_build(&cli->wl, wl, err, sizeof(err)) != 0) {
        fprintf(stderr, "baton-sim: %s\n", err);
        return -1;
    }
    return 0;
}

static int sim_cmd_run(sim_cli_t *cli)
{
    bt_wl_t wl;
    bt_rep_rec_t *recs = NULL;
    bt_rep_t rep;
    bt_sim_stats_t st;
    uint64_t t0 = bt_now_ns();
    int rc = 1;

    if (sim_load(cli, &wl) != 0) {
        return 2;
    }
    recs = calloc(wl.n > 0 ? wl.n * sim_cli_draws(cli) : 1, sizeof(*recs));
    if (recs == NULL) {
        fprintf(stderr, "baton-sim: no memory for %zu x %zu request records "
                "(fewer --noise-draws?)\n", wl.n, sim_cli_draws(cli));
        goto err_out;
    }
    if (sim_cli_simulate(cli, &wl, (uint32_t)cli->prefill,
                         (uint32_t)cli->decode, (uint32_t)cli->colocated,
                         cli->kvstore_bytes, recs, &rep, &st) != 0) {
        goto err_out;
    }
    if (cli->show_progress) {
        sim_progress(cli, wl.n, wl.n);
        fputc('\n', stderr);
    }
    rc = sim_cli_report(cli, &wl, recs, &rep, &st,
                        (double)(bt_now_ns() - t0) / 1e9) == 0 ? 0 : 1;
err_out:
    free(recs);
    bt_wl_free(&wl);
    return rc;
}

int main(int argc, char **argv)
{
    static const bt_opts_spec_t spec = {
        "baton-sim", "[run|plan|fit] [OPTIONS]",
        "discrete-event simulator of a baton cluster: the router's real pair "
        "selection and prefix index, the kvstore's real store, nodes timed "
        "by fitted cost functions. run: replay a workload and print the "
        "baton-bench report; plan: goodput of each P:D split; fit: measure "
        "a local cluster and write a cost file.",
        sim_opts, BT_OPTS_COUNT(sim_opts)};
    sim_cli_t cli;
    const char *cmd = "run";
    int first;

    if (argc <= 1) {
        printf("baton-sim: no arguments; bench/sim/validate.sh BUILD_DIR "
               "compares it with a real cluster, bench/sim/scale.sh BUILD_DIR "
               "runs 1,000 nodes (--help for options)\n");
        return 0;
    }
    if (argv[1][0] != '-') {
        cmd = argv[1];
        argv[1] = argv[0];
        argc--;
        argv++;
    }
    memset(&cli, 0, sizeof(cli));
    first = bt_opts_parse_or_exit(&spec, &cli, argc, argv);
    if (first < argc) {
        fprintf(stderr, "baton-sim: unexpected argument '%s'\n", argv[first]);
        return 2;
    }
    /* the linked store's info lines (its geometry, per run) are noise */
    bt_log_set_level(BT_LOG_LEVEL_WARN);
    cli.t0_ns = bt_now_ns();
    cli.show_progress = cli.progress || isatty(STDERR_FILENO);
    if (strcmp(cmd, "run") == 0) {
        return sim_cmd_run(&cli);
    }
    if (strcmp(cmd, "plan") == 0) {
        bt_wl_t wl;
        int rc;

        if (cli.workload != NULL && strcmp(cli.workload, "synthetic") != 0) {
            cli.wl.trace = cli.workload;
        }
        if (cli.workload == NULL || cli.nodes < 1 || sim_load(&cli, &wl) != 0) {
            if (cli.workload == NULL || cli.nodes < 1) {
                fprintf(stderr, "baton-sim plan: needs --workload and --nodes\n");
            }
            return 2;
        }
        rc = sim_cmd_plan(&cli, &wl);
        bt_wl_free(&wl);
        return rc;
    }
    if (strcmp(cmd, "fit") == 0) {
        return sim_cmd_fit(&cli);
    }
    fprintf(stderr, "baton-sim: unknown command '%s' (run, plan, fit)\n", cmd);
    return 2;
}
