/* Counter-based randomness and deterministic exp/log for the sampler.
 *
 * Philox-4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers:
 * as easy as 1, 2, 3", SC'11): a keyed bijection of a 128-bit counter, so
 * the random number of (seed, position) needs no state and no order.
 * exp and log use only IEEE basic operations and exact scaling, so their
 * results are the same on every conforming machine (libm's may differ in
 * the last bit across platforms and versions). */
#include "sample.h"
#include "sample_int.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void bt_philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k[0];
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k[1];

    c[0] = n0;
    c[1] = (uint32_t)p1;
    c[2] = n2;
    c[3] = (uint32_t)p0;
}

void bt_philox4x32(const uint32_t ctr[4], const uint32_t key[2],
                   uint32_t out[4])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    int r;

    for (r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        bt_philox_round(c, k);
    }
    out[0] = c[0];
    out[1] = c[1];
    out[2] = c[2];
    out[3] = c[3];
}

double bt_sample_uniform(uint64_t seed, uint64_t position)
{
    uint32_t ctr[4] = {(uint32_t)position, (uint32_t)(position >> 32), 0, 0};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];

    bt_philox4x32(ctr, key, out);
    /* 27 + 26 = 53 bits: every value is exact in a double */
    return ((double)(out[0] >> 5) * 67108864.0 + (double)(out[1] >> 6)) *
           (1.0 / 9007199254740992.0);
}

double bt_sample_exp(double x)
{
    double p;
    int k;

    if (x != x) {
        return x;
    }
    if (x > 709.78) {
        return HUGE_VAL;
    }
    if (x < -745.2) {
        return 0.0;
    }
    p = bt_sample_exp_reduce(x, &k);
    if (k > 1023) {
        return p * 2.0 * bt_sample_pow2(k - 1);
    }
    if (k < -1022) {
        /* subnormal result: scale in two exact steps, one rounding */
        return p * bt_sample_pow2(k + 200) * bt_sample_pow2(-200);
    }
    return p * bt_sample_pow2(k);
}

double bt_sample_log(double x)
{
    double m, s, s2, term, sum;
    int e, i;

    if (x != x || x < 0) {
        return NAN;
    }
    if (x == 0) {
        return -HUGE_VAL;
    }
    if (isinf(x)) {
        return x;
    }
    m = frexp(x, &e); /* exact: x = m * 2^e, m in [0.5, 1) */
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e--;
    }
    /* log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172 */
    s = (m - 1.0) / (m + 1.0);
    s2 = s * s;
    term = s;
    sum = 0.0;
    for (i = 0; i < 12; i++) {
        sum += term / (2 * i + 1);
        term *= s2;
    }
    return e * BT_LN2_HI + (2.0 * sum + e * BT_LN2_LO);
}
