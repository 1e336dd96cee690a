/* The engine's exact scalar arithmetic, one definition for the CPU
 * backend and the CUDA `exact` kernels (compiled as host and as device
 * code): the own exp and one token's MoE routing. Sharing the text is
 * what makes the two give the same bits; the CPU's AVX2 exp runs the same
 * operations on the constants below. */
#ifndef BT_ENGINE_EXACT_OPS_H
#define BT_ENGINE_EXACT_OPS_H

#include "engine/hd.h"

#include <math.h>
#include <stdbool.h>

#define BT_EXP_LO (-104.0) /* exp below rounds to 0 in float */
#define BT_EXP_HI 89.0     /* exp above overflows float */
#define BT_EXP_INV_LN2 0x1.71547652b82fep0
#define BT_EXP_LN2_HI 0x1.62e42fefa39efp-1
#define BT_EXP_LN2_LO 0x1.abc9e3b39803fp-56
/* 1 / i!, i = 0..8 (|r| <= ln2 / 2: the next term is under 2.1e-10) */
#define BT_EXP_C0 1.0
#define BT_EXP_C1 1.0
#define BT_EXP_C2 (1.0 / 2.0)
#define BT_EXP_C3 (1.0 / 6.0)
#define BT_EXP_C4 (1.0 / 24.0)
#define BT_EXP_C5 (1.0 / 120.0)
#define BT_EXP_C6 (1.0 / 720.0)
#define BT_EXP_C7 (1.0 / 5040.0)
#define BT_EXP_C8 (1.0 / 40320.0)

/* exp(x) = 2^k p(r), k = round(x / ln 2), r = x - k ln 2 (two fused
 * steps), p the degree-8 Taylor polynomial by Horner with fused
 * multiply-adds, all in double, rounded once to float (cpu_exp.h). rint
 * rounds ties to even in the default mode, as nearbyint does. */
static inline BT_HD float bt_exact_expf(float x)
{
    double xd = x, kd, r, p;

    if (x != x) {
        return x + x;
    }
    xd = xd < BT_EXP_LO ? BT_EXP_LO : xd > BT_EXP_HI ? BT_EXP_HI : xd;
    kd = rint(xd * BT_EXP_INV_LN2);
    r = fma(-kd, BT_EXP_LN2_HI, xd);
    r = fma(-kd, BT_EXP_LN2_LO, r);
    p = fma(BT_EXP_C8, r, BT_EXP_C7);
    p = fma(p, r, BT_EXP_C6);
    p = fma(p, r, BT_EXP_C5);
    p = fma(p, r, BT_EXP_C4);
    p = fma(p, r, BT_EXP_C3);
    p = fma(p, r, BT_EXP_C2);
    p = fma(p, r, BT_EXP_C1);
    p = fma(p, r, BT_EXP_C0);
    return (float)ldexp(p, (int)kd); /* exact: 2^kd is a normal double */
}

/* One token's routing over E experts: softmax of logits (own exp, summed
 * in expert order), the top k by probability (ties to the lower expert),
 * their weights renormalized to sum 1 when `norm`. p holds E floats of
 * scratch. */
static inline BT_HD void bt_exact_moe_route(const float *logits, int E, int k,
                                            bool norm, float *p, int *sel,
                                            float *w)
{
    float mx = -INFINITY, sum = 0.0f, wsum = 0.0f;

    for (int e = 0; e < E; e++) {
        mx = logits[e] > mx ? logits[e] : mx;
    }
    for (int e = 0; e < E; e++) {
        p[e] = bt_exact_expf(logits[e] - mx);
        sum += p[e];
    }
    for (int e = 0; e < E; e++) {
        p[e] /= sum;
    }
    for (int j = 0; j < k; j++) {
        int best = -1;

        for (int e = 0; e < E; e++) {
            bool taken = false;

            for (int i = 0; i < j; i++) {
                taken |= sel[i] == e;
            }
            if (!taken && (best < 0 || p[e] > p[best])) {
                best = e;
            }
        }
        sel[j] = best;
        w[j] = p[best];
        wsum += p[best];
    }
    if (norm) {
        for (int j = 0; j < k; j++) {
            w[j] /= wsum;
        }
    }
}

#endif
