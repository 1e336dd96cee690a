/* Token sampling: penalties, temperature, top-k/top-p/min-p, logprobs
 * (docs/internals/sampling.md). Deterministic: see sample.h. */
#include "sample.h"
#include "sample_int.h"

#include "base/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct bt_sampler {
    uint32_t n_vocab;
    float *logits;     /* processed logits (penalties, temperature) */
    double *probs;     /* unnormalised exp(l - lmax) */
    uint32_t *order;   /* ids sorted by (logit desc, id asc) */
    uint32_t *tmp;     /* merge sort scratch */
    uint8_t *keep;     /* survives truncation */
    uint32_t *counts;  /* occurrences in generated (zero between calls) */
    uint8_t *seen;     /* bit 0: in prompt or generated (zero between) */
};

void bt_sample_params_default(bt_sample_params_t *params_p)
{
    memset(params_p, 0, sizeof(*params_p));
    params_p->temperature = 1.0f;
    params_p->top_p = 1.0f;
    params_p->repetition_penalty = 1.0f;
    params_p->max_tokens = 16;
    params_p->logprobs = -1;
}

static bool bt_sample_in(float v, float lo, float hi)
{
    return v >= lo && v <= hi; /* false for NaN */
}

bt_status_t bt_sample_params_check(const bt_sample_params_t *p)
{
    const char *bad = NULL;

    if (!bt_sample_in(p->temperature, 0.0f, 1e6f)) {
        bad = "temperature";
    } else if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) {
        bad = "top_p";
    } else if (!bt_sample_in(p->min_p, 0.0f, 1.0f)) {
        bad = "min_p";
    } else if (!(p->repetition_penalty > 0.0f &&
                 p->repetition_penalty <= 1e6f)) {
        bad = "repetition_penalty";
    } else if (!bt_sample_in(p->presence_penalty, -2.0f, 2.0f)) {
        bad = "presence_penalty";
    } else if (!bt_sample_in(p->frequency_penalty, -2.0f, 2.0f)) {
        bad = "frequency_penalty";
    } else if (p->max_tokens <= 0) {
        bad = "max_tokens";
    } else if (p->logprobs > BT_SAMPLE_MAX_LOGPROBS) {
        bad = "logprobs";
    } else if (p->n_stop_ids > BT_SAMPLE_MAX_STOP_IDS) {
        bad = "stop_ids";
    }
    if (bad != NULL) {
        bt_error("sample: parameter %s out of range", bad);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

bt_finish_t bt_sample_finish(const bt_sample_params_t *params, int32_t token,
                             uint32_t n_generated)
{
    uint32_t i;

    for (i = 0; i < params->n_stop_ids && i < BT_SAMPLE_MAX_STOP_IDS; i++) {
        if (params->stop_ids[i] == token) {
            return BT_FINISH_STOP;
        }
    }
    if (params->max_tokens > 0 && n_generated >= (uint32_t)params->max_tokens) {
        return BT_FINISH_LENGTH;
    }
    return BT_FINISH_NONE;
}

bt_status_t bt_sampler_create(uint32_t n_vocab, bt_sampler_t **sampler_p)
{
    bt_sampler_t *s;

    if (n_vocab == 0 || n_vocab > (1u << 24)) {
        bt_error("sample: vocabulary of %u tokens out of range", n_vocab);
        return BT_ERR_INVALID_ARG;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        goto err_nomem;
    }
    s->n_vocab = n_vocab;
    s->logits = malloc(n_vocab * sizeof(*s->logits));
    s->probs = malloc(n_vocab * sizeof(*s->probs));
    s->order = malloc(n_vocab * sizeof(*s->order));
    s->tmp = malloc(n_vocab * sizeof(*s->tmp));
    s->keep = malloc(n_vocab);
    s->counts = calloc(n_vocab, sizeof(*s->counts));
    s->seen = calloc(n_vocab, 1);
    if (s->logits == NULL || s->probs == NULL || s->order == NULL ||
        s->tmp == NULL || s->keep == NULL || s->counts == NULL ||
        s->seen == NULL) {
        bt_sampler_destroy(s);
        goto err_nomem;
    }
    *sampler_p = s;
    return BT_OK;

err_nomem:
    bt_error("sample: out of memory for a vocabulary of %u", n_vocab);
    return BT_ERR_NO_MEMORY;
}

void bt_sampler_destroy(bt_sampler_t *s)
{
    if (s == NULL) {
        return;
    }
    free(s->logits);
    free(s->probs);
    free(s->order);
    free(s->tmp);
    free(s->keep);
    free(s->counts);
    free(s->seen);
    free(s);
}

static void bt_sample_penalties(bt_sampler_t *s, const bt_sample_params_t *p,
                                const bt_sample_seq_t *seq)
{
    const int32_t *lists[2] = {seq->prompt, seq->generated};
    uint32_t lens[2] = {seq->n_prompt, seq->n_generated};
    float rep = p->repetition_penalty;
    int li;
    uint32_t i;

    if (rep == 1.0f && p->presence_penalty == 0.0f &&
        p->frequency_penalty == 0.0f) {
        return;
    }
    for (li = 0; li < 2; li++) {
        for (i = 0; i < lens[li]; i++) {
            int32_t t = lists[li][i];
            if (t < 0 || (uint32_t)t >= s->n_vocab) {
                continue;
            }
            s->seen[t] = 1;
            if (li == 1) {
                s->counts[t]++;
            }
        }
    }
    /* apply once per distinct token, then clear the marks */
    for (li = 0; li < 2; li++) {
        for (i = 0; i < lens[li]; i++) {
            int32_t t = lists[li][i];
            float l;
            if (t < 0 || (uint32_t)t >= s->n_vocab || !s->seen[t]) {
                continue;
            }
            l = s->logits[t];
            if (rep != 1.0f) {
                l = l > 0.0f ? l / rep : l * rep;
            }
            if (s->counts[t] > 0) {
                l -= p->frequency_penalty * (float)s->counts[t] +
                     p->presence_penalty;
            }
            s->logits[t] = l;
            s->seen[t] = 0;
            s->counts[t] = 0;
        }
    }
}

static bool bt_sample_before(const float *l, uint32_t a, uint32_t b);

/* Bottom-up merge sort of ids by (logit desc, id asc). The order is
 * total, so the result does not depend on the algorithm; our own sort
 * keeps the C library out of the decision path. */
static void bt_sample_sort(uint32_t *ids, uint32_t *tmp, uint32_t n,
                           const float *l)
{
    uint32_t *src = ids, *dst = tmp, *t;
    uint32_t width, lo;

    for (width = 1; width < n; width *= 2) {
        for (lo = 0; lo < n; lo += 2 * width) {
            uint32_t mid = lo + width < n ? lo + width : n;
            uint32_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            uint32_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) {
                dst[k++] = bt_sample_before(l, src[b], src[a]) ? src[b++]
                                                               : src[a++];
            }
            while (a < mid) {
                dst[k++] = src[a++];
            }
            while (b < hi) {
                dst[k++] = src[b++];
            }
        }
        t = src;
        src = dst;
        dst = t;
    }
    if (src != ids) {
        memcpy(ids, src, n * sizeof(*ids));
    }
}

static bool bt_sample_before(const float *l, uint32_t a, uint32_t b)
{
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* exp(l - lmax) below this difference counts as 0: e^-80 < 2^-115 of the
 * best token's weight, far below what a 53-bit draw can resolve, and it
 * keeps subnormal arithmetic (slow) out of the loop. */
#define BT_SAMPLE_CUTOFF 80.0

/* probs[i] = exp(l_i - lmax) (0 below the cutoff); returns their sum in
 * id order. */
static double bt_sample_probs(bt_sampler_t *s, float lmax)
{
    double sum = 0.0;
    uint32_t i;

    for (i = 0; i < s->n_vocab; i++) {
        double d = (double)s->logits[i] - lmax;
        s->probs[i] = d >= -BT_SAMPLE_CUTOFF ? bt_sample_exp_core(d) : 0.0;
        sum += s->probs[i];
    }
    return sum;
}

/* Fills result top-n and the chosen token's logprob from s->logits;
 * `sum` is bt_sample_probs' total. */
static void bt_sample_logprobs(bt_sampler_t *s, int32_t n_top, int32_t chosen,
                               float lmax, double sum, bt_sample_result_t *res)
{
    const float *l = s->logits;
    double log_z = bt_sample_log(sum);
    uint32_t top[BT_SAMPLE_MAX_LOGPROBS];
    uint32_t n = 0, i, j;

    res->logprob = (float)(((double)l[chosen] - lmax) - log_z);
    for (i = 0; i < s->n_vocab && n_top > 0; i++) {
        /* insertion into a sorted list of at most n_top ids */
        if (n == (uint32_t)n_top && !bt_sample_before(l, i, top[n - 1])) {
            continue;
        }
        j = n < (uint32_t)n_top ? n++ : n - 1;
        while (j > 0 && bt_sample_before(l, i, top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = i;
    }
    res->n_top = n;
    for (i = 0; i < n; i++) {
        res->top_ids[i] = (int32_t)top[i];
        res->top_logprobs[i] = (float)(((double)l[top[i]] - lmax) - log_z);
    }
}

/* Small k: keep a sorted list of the k best while scanning once, O(V k)
 * worst case but a comparison per token in practice. */
#define BT_SAMPLE_TOPK_INSERT 64

static uint32_t bt_sample_topk_insert(bt_sampler_t *s,
                                      const bt_sample_params_t *p, uint32_t k)
{
    const float *l = s->logits;
    uint32_t *top = s->order;
    uint32_t n = 0, i, j;
    double total = 0.0, cum = 0.0;

    for (i = 0; i < s->n_vocab; i++) {
        if (s->probs[i] == 0.0 ||
            (n == k && !bt_sample_before(l, i, top[n - 1]))) {
            continue;
        }
        j = n < k ? n++ : n - 1;
        while (j > 0 && bt_sample_before(l, i, top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = i;
    }
    if (p->top_p < 1.0f) {
        for (i = 0; i < n; i++) {
            total += s->probs[top[i]];
        }
        for (i = 0; i < n; i++) {
            cum += s->probs[top[i]];
            if (cum >= (double)p->top_p * total) {
                return i + 1;
            }
        }
    }
    return n;
}

/* Top-k and top-p need the best tokens in (logit desc, id asc) order, not
 * all V of them: sort only the tokens within `window` of the best and
 * widen when that is not enough. Every token outside the window ranks
 * after every token inside, so the result equals a full sort's. Returns
 * how many of s->order (sorted) are kept. */
static uint32_t bt_sample_nucleus(bt_sampler_t *s, const bt_sample_params_t *p,
                                  float lmax, double all)
{
    static const double windows[3] = {4.0, 16.0, BT_SAMPLE_CUTOFF};
    uint32_t n_cand = 0, n_keep = 0, i;
    int w;

    if (p->top_k > 0 && p->top_k <= BT_SAMPLE_TOPK_INSERT) {
        return bt_sample_topk_insert(s, p, (uint32_t)p->top_k);
    }
    for (w = 0; w < 3; w++) {
        double total = all, cum = 0.0;
        bool last = w == 2, enough = true;

        n_cand = 0;
        for (i = 0; i < s->n_vocab; i++) {
            if (s->probs[i] > 0.0 &&
                (double)s->logits[i] - lmax >= -windows[w]) {
                s->order[n_cand++] = i;
            }
        }
        bt_sample_sort(s->order, s->tmp, n_cand, s->logits);
        n_keep = n_cand;
        if (p->top_k > 0) {
            if ((uint32_t)p->top_k <= n_cand) {
                n_keep = (uint32_t)p->top_k;
            } else if (!last) {
                continue; /* fewer than k in the window: widen */
            }
            total = 0.0; /* top-p renormalises over the top-k set */
            for (i = 0; i < n_keep; i++) {
                total += s->probs[s->order[i]];
            }
        }
        if (p->top_p < 1.0f) {
            enough = false;
            for (i = 0; i < n_keep; i++) {
                cum += s->probs[s->order[i]];
                if (cum >= (double)p->top_p * total) {
                    n_keep = i + 1;
                    enough = true;
                    break;
                }
            }
        }
        if (enough || last) {
            break;
        }
    }
    return n_keep;
}

/* Marks the kept candidates after top-k, top-p and min-p. */
static void bt_sample_truncate(bt_sampler_t *s, const bt_sample_params_t *p,
                               float lmax, double all)
{
    uint32_t V = s->n_vocab, n_keep, i;

    if (p->top_k > 0 || p->top_p < 1.0f) {
        n_keep = bt_sample_nucleus(s, p, lmax, all);
        memset(s->keep, 0, V);
        for (i = 0; i < n_keep; i++) {
            s->keep[s->order[i]] = 1;
        }
    } else {
        for (i = 0; i < V; i++) {
            s->keep[i] = s->probs[i] > 0.0;
        }
    }
    if (p->min_p > 0.0f) {
        /* the most likely token has exp(0) = 1 and always stays */
        for (i = 0; i < V; i++) {
            if (s->probs[i] < (double)p->min_p) {
                s->keep[i] = 0;
            }
        }
    }
}

bt_status_t bt_sampler_sample(bt_sampler_t *s, const bt_sample_params_t *p,
                              const float *logits, const bt_sample_seq_t *seq,
                              bt_sample_result_t *result_p)
{
    bt_sample_result_t res;
    uint32_t V = s->n_vocab, i, best = 0;
    float lmax = -INFINITY;
    double all = 0.0;
    bt_status_t st;

    st = bt_sample_params_check(p);
    if (st == BT_OK) {
        st = bt_sample_bias_check(p, V, NULL, 0);
    }
    if (st != BT_OK) {
        return st;
    }
    memset(&res, 0, sizeof(res));
    for (i = 0; i < V; i++) {
        s->logits[i] = logits[i] != logits[i] ? -INFINITY : logits[i];
    }
    bt_sample_penalties(s, p, seq);
    bt_sample_bias_apply(p, s->logits, V);
    if (p->temperature > 0.0f) {
        for (i = 0; i < V; i++) {
            s->logits[i] /= p->temperature;
        }
    }
    for (i = 0; i < V; i++) {
        if (s->logits[i] > lmax) { /* strict: the lowest id wins ties */
            lmax = s->logits[i];
            best = i;
        }
    }
    if (lmax == -INFINITY) {
        bt_error("sample: every logit is -inf or nan");
        return BT_ERR_INVALID_ARG;
    }
    if (lmax == INFINITY) {
        /* +inf logits: sample uniformly among them, as their limit */
        for (i = 0; i < V; i++) {
            s->logits[i] = s->logits[i] == INFINITY ? 0.0f : -INFINITY;
        }
        lmax = 0.0f;
    }
    if (p->temperature > 0.0f || p->logprobs >= 0) {
        all = bt_sample_probs(s, lmax);
    }
    if (p->temperature > 0.0f) {
        double total = 0.0, acc = 0.0, target;
        uint32_t last = best;

        bt_sample_truncate(s, p, lmax, all);
        for (i = 0; i < V; i++) {
            if (s->keep[i]) {
                total += s->probs[i];
            }
        }
        /* walk the kept candidates in id order */
        target = bt_sample_uniform(p->seed, seq->position) * total;
        for (i = 0; i < V; i++) {
            if (!s->keep[i]) {
                continue;
            }
            last = i;
            acc += s->probs[i];
            if (target < acc) {
                break;
            }
        }
        best = last;
    }
    res.token = (int32_t)best;
    if (p->logprobs >= 0) {
        bt_sample_logprobs(s, p->logprobs, res.token, lmax, all, &res);
    }
    res.finish = bt_sample_finish(p, res.token, seq->n_generated + 1);
    *result_p = res;
    return BT_OK;
}
