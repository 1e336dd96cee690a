/* llama-bench as enginebench's yardstick (llama_run.h). */
#include "llama_run.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool quotable(const char *s)
{
    return strchr(s, '\'') == NULL;
}

/* one jsonl line: the test's samples when it is the one asked for */
static bool read_line(const char *line, int n_prompt, int n_gen,
                      bt_llama_ts_t *ts)
{
    json_t *o = json_loads(line, 0, NULL), *s;
    bool ok = false;
    size_t i;

    if (o == NULL) {
        return false;
    }
    s = json_object_get(o, "samples_ts");
    if (json_integer_value(json_object_get(o, "n_prompt")) == n_prompt &&
        json_integer_value(json_object_get(o, "n_gen")) == n_gen &&
        json_is_array(s) && json_array_size(s) > 0) {
        json_t *v;

        ts->best = 0;
        json_array_foreach(s, i, v) {
            if (json_number_value(v) > ts->best) {
                ts->best = json_number_value(v);
            }
        }
        ts->mean = json_number_value(json_object_get(o, "avg_ts"));
        ok = ts->best > 0;
    }
    json_decref(o);
    return ok;
}

int bt_llama_bench(const char *exe, const char *gguf, const char *log,
                   int threads, int n_prompt, int n_gen, int reps,
                   bt_llama_ts_t *ts, char *err, size_t errlen)
{
    char cmd[4096], line[1 << 16];
    bool found = false;
    FILE *p;
    int st;

    if (!quotable(exe) || !quotable(gguf) || !quotable(log)) {
        snprintf(err, errlen, "paths with a single quote are not supported");
        return -1;
    }
    snprintf(cmd, sizeof(cmd),
             "'%s' -m '%s' -t %d -p %d -n %d -r %d -o jsonl 2>>'%s'", exe,
             gguf, threads, n_prompt, n_gen, reps, log);
    p = popen(cmd, "r");
    if (p == NULL) {
        snprintf(err, errlen, "cannot run %s", exe);
        return -1;
    }
    while (fgets(line, sizeof(line), p) != NULL) {
        found = found || read_line(line, n_prompt, n_gen, ts);
    }
    st = pclose(p);
    if (st != 0 || !found) {
        snprintf(err, errlen, "%s %s (exit status %d; its messages are in %s)",
                 exe, found ? "failed" : "printed no result", st, log);
        return -1;
    }
    return 0;
}
