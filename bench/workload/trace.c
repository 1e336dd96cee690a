/* Mooncake trace reader and scaler (trace.h). */
#include "trace.h"

#include "base/array.h"
#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open-addressing set of the block ids seen so far (ids + 1, 0 = empty). */
typedef struct {
    uint64_t *slot;
    size_t    cap;   /* power of two */
    size_t    n;
} idset_t;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int idset_grow(idset_t *s)
{
    size_t    cap = s->cap == 0 ? 1024 : s->cap * 2;
    uint64_t *slot = calloc(cap, sizeof(*slot));

    if (slot == NULL) {
        return -1;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slot[i] != 0) {
            size_t j = mix64(s->slot[i]) & (cap - 1);

            while (slot[j] != 0) {
                j = (j + 1) & (cap - 1);
            }
            slot[j] = s->slot[i];
        }
    }
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
    return 0;
}

static int idset_has(const idset_t *s, uint64_t id)
{
    if (s->cap == 0) {
        return 0;
    }
    for (size_t j = mix64(id + 1) & (s->cap - 1); s->slot[j] != 0;
         j = (j + 1) & (s->cap - 1)) {
        if (s->slot[j] == id + 1) {
            return 1;
        }
    }
    return 0;
}

static int idset_add(idset_t *s, uint64_t id)
{
    size_t j;

    if (idset_has(s, id)) {
        return 0;
    }
    if ((s->n + 1) * 2 > s->cap && idset_grow(s) != 0) {
        return -1;
    }
    for (j = mix64(id + 1) & (s->cap - 1); s->slot[j] != 0;
         j = (j + 1) & (s->cap - 1)) {
    }
    s->slot[j] = id + 1;
    s->n++;
    return 0;
}

/* Token j of block `id`: the same ids wherever the block appears. */
static int32_t block_token(const bt_trace_opts_t *o, uint64_t id, uint32_t j)
{
    uint64_t z = mix64(o->seed * 0x9e3779b97f4a7c15ULL ^ mix64(id + 1) ^
                       ((uint64_t)j << 1));

    return (int32_t)(o->token_lo + z % (o->token_hi - o->token_lo));
}

static uint32_t scale_up(uint64_t tokens, uint32_t block_tokens)
{
    return (uint32_t)((tokens * block_tokens + BT_TRACE_BLOCK - 1) /
                      BT_TRACE_BLOCK);
}

/* One line into r; the blocks it shares with `seen` give ideal_cached. */
static int trace_line(const bt_trace_opts_t *o, json_t *root, idset_t *seen,
                      bt_trace_t *t, bt_trace_req_t *r, char *err,
                      size_t err_size)
{
    json_t  *ts = json_object_get(root, "timestamp");
    json_t  *in = json_object_get(root, "input_length");
    json_t  *out = json_object_get(root, "output_length");
    json_t  *ids = json_object_get(root, "hash_ids");
    size_t   nb, hit = 0;
    uint64_t input, last_len;
    uint32_t pos = 0, ideal;

    if (!json_is_integer(ts) || json_integer_value(ts) < 0 ||
        !json_is_integer(in) || json_integer_value(in) < 1 ||
        !json_is_integer(out) || json_integer_value(out) < 0 ||
        !json_is_array(ids)) {
        snprintf(err, err_size, "needs integer timestamp >= 0, input_length "
                 ">= 1, output_length >= 0 and an array hash_ids");
        return -1;
    }
    nb = json_array_size(ids);
    input = (uint64_t)json_integer_value(in);
    if (nb == 0 || nb > BT_TRACE_MAX_BLOCKS ||
        input > (uint64_t)nb * BT_TRACE_BLOCK ||
        input <= (uint64_t)(nb - 1) * BT_TRACE_BLOCK) {
        snprintf(err, err_size, "hash_ids must hold 1..%d ids, one per %d "
                 "tokens of input_length", BT_TRACE_MAX_BLOCKS,
                 BT_TRACE_BLOCK);
        return -1;
    }
    last_len = input - (uint64_t)(nb - 1) * BT_TRACE_BLOCK;
    r->t_ms = (uint64_t)json_integer_value(ts);
    r->n_prompt = (uint32_t)(nb - 1) * o->block_tokens +
                  scale_up(last_len, o->block_tokens);
    r->max_tokens = scale_up((uint64_t)json_integer_value(out),
                             o->block_tokens);
    r->max_tokens = r->max_tokens < 1 ? 1 : r->max_tokens;
    r->max_tokens = r->max_tokens > o->max_output ? o->max_output
                                                  : r->max_tokens;
    r->prompt = malloc((size_t)r->n_prompt * sizeof(int32_t));
    if (r->prompt == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    for (size_t b = 0; b < nb; b++) {
        json_t  *v = json_array_get(ids, b);
        uint32_t len = b + 1 < nb ? o->block_tokens : r->n_prompt - pos;

        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            snprintf(err, err_size, "hash_ids[%zu] is not an integer >= 0", b);
            return -1;
        }
        for (uint32_t j = 0; j < len; j++) {
            r->prompt[pos + j] = block_token(o, (uint64_t)json_integer_value(v),
                                             j);
        }
        pos += len;
        if (hit == b && idset_has(seen, (uint64_t)json_integer_value(v))) {
            hit++;
        }
    }
    for (size_t b = 0; b < nb; b++) {
        if (idset_add(seen, (uint64_t)json_integer_value(json_array_get(ids, b)))
            != 0) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
    }
    ideal = hit == nb ? r->n_prompt : (uint32_t)hit * o->block_tokens;
    ideal = ideal >= r->n_prompt ? r->n_prompt - 1 : ideal;
    r->ideal_cached = ideal / o->kv_block * o->kv_block;
    t->prompt_tokens += r->n_prompt;
    t->ideal_cached += r->ideal_cached;
    t->blocks += nb;
    t->hit_blocks += hit;
    return 0;
}

int bt_trace_load(const char *path, const bt_trace_opts_t *opts,
                  bt_trace_t *trace_p, char *err, size_t err_size)
{
    FILE      *f = fopen(path, "r");
    bt_trace_t t = {0};
    idset_t    seen = {0};
    char      *line = malloc(BT_TRACE_MAX_LINE);
    size_t     cap = 0, lineno = 0;
    uint64_t   t_first = 0;
    char       why[160];

    if (f == NULL || line == NULL) {
        snprintf(err, err_size, "%s: %s", path,
                 f == NULL ? "cannot open" : "out of memory");
        goto err_out;
    }
    while ((opts->max_requests == 0 || t.n < opts->max_requests) &&
           fgets(line, BT_TRACE_MAX_LINE, f) != NULL) {
        json_t *root = NULL;
        size_t  len = strlen(line);

        lineno++;
        if (len == BT_TRACE_MAX_LINE - 1 && line[len - 1] != '\n') {
            snprintf(err, err_size, "%s:%zu: line over %d bytes", path,
                     lineno, BT_TRACE_MAX_LINE);
            goto err_out;
        }
        if (strspn(line, " \t\r\n") == len) {
            continue;
        }
        if (BT_ARRAY_RESERVE(t.reqs, cap, t.n + 1, 256) != BT_OK) {
            snprintf(err, err_size, "out of memory");
            goto err_out;
        }
        memset(&t.reqs[t.n], 0, sizeof(t.reqs[t.n]));
        if (bt_json_parse(line, len, BT_TRACE_MAX_LINE, &root, why,
                          sizeof(why)) != 0) {
            snprintf(err, err_size, "%s:%zu: %s", path, lineno, why);
            goto err_out;
        }
        if (trace_line(opts, root, &seen, &t, &t.reqs[t.n], why,
                       sizeof(why)) != 0) {
            json_decref(root);
            free(t.reqs[t.n].prompt);
            snprintf(err, err_size, "%s:%zu: %s", path, lineno, why);
            goto err_out;
        }
        json_decref(root);
        if (t.n == 0) {
            t_first = t.reqs[0].t_ms;
        }
        t.reqs[t.n].t_ms = t.reqs[t.n].t_ms >= t_first
                           ? t.reqs[t.n].t_ms - t_first : 0;
        t.n++;
    }
    if (ferror(f) || t.n == 0) {
        snprintf(err, err_size, "%s: %s", path,
                 ferror(f) ? "read error" : "no requests");
        goto err_out;
    }
    fclose(f);
    free(line);
    free(seen.slot);
    *trace_p = t;
    return 0;
err_out:
    if (f != NULL) {
        fclose(f);
    }
    free(line);
    free(seen.slot);
    bt_trace_free(&t);
    return -1;
}

void bt_trace_free(bt_trace_t *trace)
{
    if (trace == NULL) {
        return;
    }
    for (size_t i = 0; i < trace->n; i++) {
        free(trace->reqs[i].prompt);
    }
    free(trace->reqs);
    memset(trace, 0, sizeof(*trace));
}
