/* baton-sim's report: baton-bench's (bench/workload/report.h) plus what
 * only a simulation knows (simulated time, events, routers, reuse). */
#include "sim_cli.h"

#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>

int sim_cli_report(const sim_cli_t *cli, const bt_wl_t *wl,
                   const bt_rep_rec_t *recs, const bt_rep_t *rep,
                   const bt_sim_stats_t *st, double run_s)
{
    char err[256];

    if (cli->out != NULL &&
        bt_rep_write_dir(cli->out, recs, wl->n * sim_cli_draws(cli), rep,
                         cli->title, err, sizeof(err)) != 0) {
        fprintf(stderr, "baton-sim: %s\n", err);
        return -1;
    }
    if (cli->json) {
        json_t *o = bt_rep_json(rep);
        char *text;

        if (o != NULL) {
            json_object_set_new(o, "sim", json_pack(
                "{s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:s}",
                "simulated_s", st->sim_s, "events", (json_int_t)st->events,
                "routers", (json_int_t)st->routers,
                "queued", (json_int_t)st->queued,
                "rejected", (json_int_t)st->rejected,
                "kvstore_tokens", (json_int_t)st->store_tokens,
                "kvstore_evictions", (json_int_t)st->kvstore_evictions,
                "run_s", run_s, "cost", cli->cost.name));
        }
        text = o != NULL ? bt_json_dump(o) : NULL;
        printf("%s\n", text != NULL ? text : "{}");
        free(text);
        json_decref(o);
        return 0;
    }
    bt_rep_print_text(stdout, rep);
    printf("prefix reuse: %llu of %llu prompt tokens (%llu from the kvstore)\n",
           (unsigned long long)rep->cached_tokens,
           (unsigned long long)rep->prompt_tokens,
           (unsigned long long)st->store_tokens);
    printf("simulated %.3f s, %llu events, %u router%s, %llu queued, %llu "
           "rejected; ran in %.2f s\n", st->sim_s,
           (unsigned long long)st->events, st->routers,
           st->routers == 1 ? "" : "s", (unsigned long long)st->queued,
           (unsigned long long)st->rejected, run_s);
    return 0;
}
