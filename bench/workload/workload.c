/* Seeded workloads for baton-bench and baton-sim (workload.h). */
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Independent streams derived from the one seed. */
#define WL_STREAM_ARRIVALS 0x61727269ULL
#define WL_STREAM_LENGTHS  0x6c656e67ULL
#define WL_STREAM_PROMPT   0x70726f6dULL

uint64_t bt_wl_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double bt_wl_rng_unit(uint64_t *s)
{
    return ((double)(bt_wl_rng_next(s) >> 11) + 1.0) / 9007199254740992.0;
}

static uint64_t wl_stream(uint64_t seed, uint64_t stream, uint64_t i)
{
    uint64_t s = seed ^ (stream * 0xd1b54a32d192ed03ULL);

    s ^= bt_wl_rng_next(&s) + i * 0x9e3779b97f4a7c15ULL;
    (void)bt_wl_rng_next(&s);
    return s;
}

static int wl_num(const char *s, uint32_t *v)
{
    char *end;
    unsigned long x = strtoul(s, &end, 10);

    if (end == s || (*end != '\0' && *end != ':') || x < 1 || x > (1u << 24)) {
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

int bt_wl_dist_parse(const char *s, bt_wl_dist_t *d, char *err,
                     size_t err_size)
{
    const char *c;

    memset(d, 0, sizeof(*d));
    if (s == NULL) {
        goto err_bad;
    }
    if (strncmp(s, "uniform:", 8) == 0) {
        d->kind = BT_WL_UNIFORM;
        c = strchr(s + 8, ':');
        if (wl_num(s + 8, &d->a) != 0 || c == NULL || wl_num(c + 1, &d->b) != 0 ||
            strchr(c + 1, ':') != NULL || d->b < d->a) {
            goto err_bad;
        }
        return 0;
    }
    if (strncmp(s, "exp:", 4) == 0) {
        d->kind = BT_WL_EXP;
        c = strchr(s + 4, ':');
        if (wl_num(s + 4, &d->a) != 0) {
            goto err_bad;
        }
        d->b = d->a * 8;
        if (c != NULL && (wl_num(c + 1, &d->b) != 0 ||
                          strchr(c + 1, ':') != NULL || d->b < 1)) {
            goto err_bad;
        }
        return 0;
    }
    d->kind = BT_WL_FIXED;
    if (wl_num(s, &d->a) != 0 || strchr(s, ':') != NULL) {
        goto err_bad;
    }
    d->b = d->a;
    return 0;
err_bad:
    snprintf(err, err_size, "bad length '%s': want N, uniform:LO:HI or "
             "exp:MEAN[:CAP] (1 to 16777216)", s != NULL ? s : "");
    return -1;
}

uint32_t bt_wl_dist_draw(const bt_wl_dist_t *d, uint64_t *rng)
{
    double x;

    switch (d->kind) {
    case BT_WL_UNIFORM:
        return d->a + (uint32_t)(bt_wl_rng_next(rng) % (d->b - d->a + 1));
    case BT_WL_EXP:
        x = ceil(-log(bt_wl_rng_unit(rng)) * (double)d->a);
        x = x < 1 ? 1 : x;
        return x > (double)d->b ? d->b : (uint32_t)x;
    case BT_WL_FIXED:
    default:
        return d->a;
    }
}

static int wl_from_trace(const bt_wl_cfg_t *cfg, bt_wl_t *wl, char *err,
                         size_t err_size)
{
    bt_trace_opts_t to = {
        (uint32_t)cfg->block_tokens, (uint32_t)cfg->kv_block,
        (uint32_t)cfg->max_output, BT_WL_TOKEN_LO, BT_WL_TOKEN_HI,
        (uint64_t)cfg->seed,
        cfg->trace_requests > 0 ? (size_t)cfg->trace_requests
                                : BT_WL_MAX_REQUESTS};

    if (bt_trace_load(cfg->trace, &to, &wl->trace, err, err_size) != 0) {
        return -1;
    }
    wl->has_trace = true;
    wl->n = wl->trace.n;
    wl->reqs = calloc(wl->n > 0 ? wl->n : 1, sizeof(*wl->reqs));
    if (wl->reqs == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    wl->open = cfg->trace_speed > 0;
    for (size_t i = 0; i < wl->n; i++) {
        const bt_trace_req_t *t = &wl->trace.reqs[i];

        wl->reqs[i].t_s = wl->open ? (double)t->t_ms / 1e3 / cfg->trace_speed
                                   : 0;
        wl->reqs[i].n_prompt = t->n_prompt;
        wl->reqs[i].max_tokens = t->max_tokens;
        wl->reqs[i].ideal_cached = t->ideal_cached;
    }
    return 0;
}

int bt_wl_build(const bt_wl_cfg_t *cfg, bt_wl_t *wl, char *err,
                size_t err_size)
{
    bt_wl_dist_t pd, od;
    uint64_t arr, len;
    double t = 0;

    memset(wl, 0, sizeof(*wl));
    wl->seed = (uint64_t)cfg->seed;
    wl->kv_block = (uint32_t)cfg->kv_block;
    wl->concurrency = (size_t)cfg->concurrency;
    if (cfg->trace != NULL) {
        return wl_from_trace(cfg, wl, err, err_size);
    }
    if (bt_wl_dist_parse(cfg->prompt_tokens, &pd, err, err_size) != 0 ||
        bt_wl_dist_parse(cfg->output_tokens, &od, err, err_size) != 0) {
        return -1;
    }
    wl->n = (size_t)cfg->requests;
    wl->open = cfg->rate > 0;
    wl->reqs = calloc(wl->n, sizeof(*wl->reqs));
    if (wl->reqs == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    arr = wl_stream(wl->seed, WL_STREAM_ARRIVALS, 0);
    len = wl_stream(wl->seed, WL_STREAM_LENGTHS, 0);
    for (size_t i = 0; i < wl->n; i++) {
        bt_wl_req_t *r = &wl->reqs[i];

        /* the first request at 0, then exponential gaps */
        if (wl->open && i > 0) {
            t += -log(bt_wl_rng_unit(&arr)) / cfg->rate;
        }
        r->t_s = t;
        r->n_prompt = bt_wl_dist_draw(&pd, &len);
        r->max_tokens = bt_wl_dist_draw(&od, &len);
    }
    return 0;
}

void bt_wl_free(bt_wl_t *wl)
{
    if (wl->has_trace) {
        bt_trace_free(&wl->trace);
    }
    free(wl->reqs);
    memset(wl, 0, sizeof(*wl));
}

void bt_wl_prompt(const bt_wl_t *wl, size_t i, int32_t *out)
{
    const bt_wl_req_t *r = &wl->reqs[i];
    uint64_t s;

    if (wl->has_trace) {
        memcpy(out, wl->trace.reqs[i].prompt, r->n_prompt * sizeof(int32_t));
        return;
    }
    s = wl_stream(wl->seed, WL_STREAM_PROMPT, i);
    for (uint32_t j = 0; j < r->n_prompt; j++) {
        out[j] = (int32_t)(BT_WL_TOKEN_LO +
                           bt_wl_rng_next(&s) % (BT_WL_TOKEN_HI - BT_WL_TOKEN_LO));
    }
}

size_t bt_wl_block_keys(const int32_t *ids, size_t n, uint32_t kv_block,
                        uint8_t *out, size_t max)
{
    uint64_t h = 0x6a09e667f3bcc908ULL;
    size_t nb = kv_block > 0 ? n / kv_block : 0;

    nb = nb > max ? max : nb;
    for (size_t b = 0; b < nb; b++) {
        uint64_t lane[4];

        /* one 64-bit chain over the ids, widened to a 32-byte key per
         * block: collisions among even 10^8 blocks are unlikely (and a
         * collision only makes the simulated cache hit once too often) */
        for (uint32_t j = 0; j < kv_block; j++) {
            uint64_t s = h ^ (uint64_t)(uint32_t)ids[b * kv_block + j];

            h = bt_wl_rng_next(&s);
        }
        for (int l = 0; l < 4; l++) {
            uint64_t s = h + (uint64_t)l;

            lane[l] = bt_wl_rng_next(&s);
        }
        memcpy(out + b * BT_WL_KEY_LEN, lane, BT_WL_KEY_LEN);
    }
    return nb;
}
