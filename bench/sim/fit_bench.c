/* baton-sim fit's calibration runs (fit_bench.h). */
#include "fit_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *sim_fit_bench(const sim_cli_t *cli, const char *url, uint32_t n,
                      uint32_t conc, double rate, uint32_t prompt,
                      uint32_t output, uint64_t seed, const char *out)
{
    char cmd[2048], extra[256] = "";
    char *buf = NULL;
    size_t len = 0;
    FILE *p, *m;
    json_t *o = NULL;
    json_error_t jerr;
    char chunk[4096];
    size_t got;

    if (rate > 0) {
        snprintf(extra, sizeof(extra), " --rate %.4f", rate);
    }
    if (out != NULL) {
        snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
                 " --out '%s'", out);
    }
    snprintf(cmd, sizeof(cmd), "'%s' --url '%s' --model '%s' --requests %u "
             "--concurrency %u --prompt-tokens %u --output-tokens %u --seed "
             "%llu --json --timeout 120s --deadline 5m%s", cli->bench, url,
             cli->model, n, conc, prompt, output, (unsigned long long)seed,
             extra);
    if ((p = popen(cmd, "r")) == NULL || (m = open_memstream(&buf, &len)) == NULL) {
        if (p != NULL) {
            pclose(p);
        }
        return NULL;
    }
    while ((got = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        fwrite(chunk, 1, got, m);
    }
    fclose(m);
    if (pclose(p) == 0 && buf != NULL) {
        o = json_loadb(buf, len, 0, &jerr);
    }
    if (o == NULL || json_integer_value(json_object_get(o, "ok")) != (json_int_t)n) {
        fprintf(stderr, "baton-sim fit: a calibration run failed: %s\n", cmd);
        json_decref(o);
        o = NULL;
    }
    free(buf);
    return o;
}

double sim_fit_get(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);

    v = b != NULL ? json_object_get(v, b) : v;
    return json_is_number(v) ? json_number_value(v) : 0;
}

static int fit_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return a < b ? -1 : a > b;
}

double sim_fit_median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), fit_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
