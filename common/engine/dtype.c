#include "dtype.h"

#include <math.h>
#include <strings.h>

const char *bt_dtype_name(bt_dtype_t t)
{
    switch (t) {
    case BT_DTYPE_F32:  return "f32";
    case BT_DTYPE_F16:  return "f16";
    case BT_DTYPE_BF16: return "bf16";
    }
    return "unknown";
}

bool bt_dtype_parse(const char *text, bt_dtype_t *t_p)
{
    static const struct { const char *name; bt_dtype_t t; } names[] = {
        {"f32", BT_DTYPE_F32}, {"float32", BT_DTYPE_F32},
        {"f16", BT_DTYPE_F16}, {"float16", BT_DTYPE_F16},
        {"bf16", BT_DTYPE_BF16}, {"bfloat16", BT_DTYPE_BF16},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *t_p = names[i].t;
            return true;
        }
    }
    return false;
}

float bt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;

    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31) {
        return bt_f32_from_bits(sign | 0x7f800000u | (man << 13));
    }
    return bt_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t bt_f32_to_f16(float f)
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

void bt_dtype_convert_row(const void *src, bt_dtype_t src_t, void *dst,
                          bt_dtype_t dst_t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bt_dtype_store(dst, dst_t, i, bt_dtype_load(src, src_t, i));
    }
}
