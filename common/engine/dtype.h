/* Element types of weights and KV, and exact conversions between them.
 *
 * bf16 and f16 are stored as uint16_t. f32 -> 16-bit rounds to nearest,
 * ties to even (what PyTorch's .to(bfloat16/float16) does); NaN stays NaN.
 * Pure functions with no state, so every backend and tool agrees bit for
 * bit; the inline ones compile as CUDA device code too (the kernels call
 * these very functions). */
#ifndef BT_ENGINE_DTYPE_H
#define BT_ENGINE_DTYPE_H

#include "hd.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    BT_DTYPE_F32 = 0,
    BT_DTYPE_F16,
    BT_DTYPE_BF16,
} bt_dtype_t;

static inline BT_HD size_t bt_dtype_size(bt_dtype_t t)
{
    return t == BT_DTYPE_F32 ? 4 : 2;
}

/* "f32", "f16", "bf16" */
const char *bt_dtype_name(bt_dtype_t t);
/* Accepts f32|f16|bf16 and the safetensors/torch spellings F32, F16, BF16,
 * float32, float16, bfloat16. */
bool bt_dtype_parse(const char *text, bt_dtype_t *t_p);

static inline BT_HD uint32_t bt_f32_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    return u;
}

static inline BT_HD float bt_f32_from_bits(uint32_t u)
{
    float f;

    memcpy(&f, &u, 4);
    return f;
}

static inline BT_HD float bt_bf16_to_f32(uint16_t h)
{
    return bt_f32_from_bits((uint32_t)h << 16);
}

static inline BT_HD uint16_t bt_f32_to_bf16(float f)
{
    uint32_t u = bt_f32_bits(f);

    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline BT_HD float bt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t ex = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;

    if (ex == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    if (ex == 31) {
        return bt_f32_from_bits(sign | 0x7f800000u | (man << 13));
    }
    return bt_f32_from_bits(sign | ((ex + 112u) << 23) | (man << 13));
}

static inline BT_HD uint16_t bt_f32_to_f16(float f)
{
    uint32_t u = bt_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t au = u & 0x7fffffffu;

    if (au > 0x7f800000u) {
        return (uint16_t)(sign | 0x7e00u);
    }
    if (au >= 0x477ff000u) { /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00u);
    }
    if (au < 0x38800000u) {
        /* subnormal or zero in f16: round |f| * 2^24 to an integer, ties
         * to even (nearbyintf in the default rounding mode). */
        float v = bt_f32_from_bits(au) * 0x1p24f;
        return (uint16_t)(sign | (uint16_t)nearbyintf(v));
    }
    {
        uint32_t e = (au >> 23) - 112u;
        uint32_t m = au & 0x7fffffu;
        uint32_t r = (e << 10) | (m >> 13);
        uint32_t rest = m & 0x1fffu;

        if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) {
            r++;
        }
        return (uint16_t)(sign | r);
    }
}


/* Element i of a row of type t, as f32. */
static inline BT_HD float bt_dtype_load(const void *p, bt_dtype_t t, size_t i)
{
    switch (t) {
    case BT_DTYPE_BF16: return bt_bf16_to_f32(((const uint16_t *)p)[i]);
    case BT_DTYPE_F16:  return bt_f16_to_f32(((const uint16_t *)p)[i]);
    default:            return ((const float *)p)[i];
    }
}

static inline BT_HD void bt_dtype_store(void *p, bt_dtype_t t, size_t i, float v)
{
    switch (t) {
    case BT_DTYPE_BF16: ((uint16_t *)p)[i] = bt_f32_to_bf16(v); break;
    case BT_DTYPE_F16:  ((uint16_t *)p)[i] = bt_f32_to_f16(v); break;
    default:            ((float *)p)[i] = v; break;
    }
}

/* Converts n elements; src and dst may not overlap. */
void bt_dtype_convert_row(const void *src, bt_dtype_t src_t, void *dst,
                          bt_dtype_t dst_t, size_t n);

#endif
