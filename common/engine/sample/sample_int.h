/* Internals of the sampler shared by sample.c and sample_rng.c. */
#ifndef BT_SAMPLE_INT_H
#define BT_SAMPLE_INT_H

#include <stdint.h>
#include <string.h>

/* ln 2 split so that k * BT_LN2_HI is exact for |k| < 2^11 */
#define BT_LN2_HI 6.93147180369123816490e-01
#define BT_LN2_LO 1.90821492927058770002e-10
#define BT_INV_LN2 1.44269504088896338700e+00

/* 2^k for -1022 <= k <= 1023, exact */
static inline double bt_sample_pow2(int k)
{
    uint64_t u = (uint64_t)(k + 1023) << 52;
    double d;

    memcpy(&d, &u, sizeof(d));
    return d;
}

/* e^x = p * 2^k with p returned and k in *k_p: x = k ln2 + r, |r| <= 0.35,
 * Taylor series of e^r to r^13/13! (Horner, constant coefficients 1/i! in
 * shortest round-trip decimal). IEEE basic operations only, so the same
 * bits on every conforming machine; relative error < 1e-15. */
static inline double bt_sample_exp_reduce(double x, int *k_p)
{
    double t = x * BT_INV_LN2;
    int k = (int)(t >= 0 ? t + 0.5 : t - 0.5); /* round to nearest */
    double r = (x - k * BT_LN2_HI) - k * BT_LN2_LO;
    double p = 1.6059043836821613e-10;

    p = p * r + 2.08767569878681e-09;
    p = p * r + 2.505210838544172e-08;
    p = p * r + 2.755731922398589e-07;
    p = p * r + 2.7557319223985893e-06;
    p = p * r + 2.48015873015873e-05;
    p = p * r + 0.0001984126984126984;
    p = p * r + 0.001388888888888889;
    p = p * r + 0.008333333333333333;
    p = p * r + 0.041666666666666664;
    p = p * r + 0.16666666666666666;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    *k_p = k;
    return p;
}

/* e^x for -700 <= x <= 700 (the sampler's hot loop). */
static inline double bt_sample_exp_core(double x)
{
    int k;
    double p = bt_sample_exp_reduce(x, &k);

    return p * bt_sample_pow2(k);
}

#endif
