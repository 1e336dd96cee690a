/* UTF-8 helpers and the GPT-2 byte <-> code point map. */
#include "tok_int.h"

#include <stdarg.h>
#include <stdio.h>

void tok_err(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || err_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

size_t tok_utf8_char_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        if (len >= 2 && (s[1] & 0xc0) == 0x80)
            return 2;
        return 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
        unsigned char hi = c == 0xed ? 0x9f : 0xbf;
        if (len >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80)
            return 3;
        return 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;
        if (len >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
            (s[3] & 0xc0) == 0x80)
            return 4;
        return 0;
    }
    return 0;
}

size_t tok_utf8_validate(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        n = tok_utf8_char_len(u + i, len - i);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

size_t tok_utf8_decode(const char *s, size_t len, uint32_t *cp_p)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = tok_utf8_char_len(u, len);

    switch (n) {
    case 1: *cp_p = u[0]; break;
    case 2: *cp_p = ((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f); break;
    case 3:
        *cp_p = ((uint32_t)(u[0] & 0x0f) << 12) |
                ((uint32_t)(u[1] & 0x3f) << 6) | (u[2] & 0x3f);
        break;
    case 4:
        *cp_p = ((uint32_t)(u[0] & 0x07) << 18) |
                ((uint32_t)(u[1] & 0x3f) << 12) |
                ((uint32_t)(u[2] & 0x3f) << 6) | (u[3] & 0x3f);
        break;
    default: *cp_p = 0xfffd; n = 1; break;
    }
    return n;
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the maximal subpart of an ill-formed sequence at s: the
 * longest prefix that could still begin a valid character (at least 1). */
static size_t maximal_subpart(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t need, i;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf)
        need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else
        return 1;
    for (i = 1; i < need && i < len; i++) {
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xbf;
        if (s[i] < l || s[i] > h)
            break;
    }
    return i;
}

bt_status_t tok_utf8_append_lossy(bt_buf_t *out, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    bt_status_t st;

    while (i < len) {
        size_t n = u[i] < 0x80 ? 1 : tok_utf8_char_len(u + i, len - i);
        if (n > 0) {
            i += n;
            continue;
        }
        st = bt_buf_append(out, s + run, i - run);
        if (st == BT_OK)
            st = bt_buf_append(out, "\xef\xbf\xbd", 3);
        if (st != BT_OK)
            return st;
        i += maximal_subpart(u + i, len - i);
        run = i;
    }
    return bt_buf_append(out, s + run, len - run);
}

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes map, in
 * order, to U+0100 upwards (GPT-2's bytes_to_unicode). */
#define R4(b) (b), (b) + 1, (b) + 2, (b) + 3
#define R16(b) R4(b), R4((b) + 4), R4((b) + 8), R4((b) + 12)
const uint16_t tok_byte_to_cp[256] = {
    R16(0x100), R16(0x110),                     /* 0x00..0x1f */
    0x120,                                       /* 0x20 space */
    0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c,
    0x2d, 0x2e, 0x2f,
    R16(0x30), R16(0x40), R16(0x50), R16(0x60),  /* 0x30..0x6f */
    R4(0x70), R4(0x74), R4(0x78), 0x7c, 0x7d, 0x7e,
    0x121,                                       /* 0x7f */
    R16(0x122), R16(0x132),                     /* 0x80..0x9f */
    0x142,                                       /* 0xa0 */
    0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac,
    0x143,                                       /* 0xad */
    0xae, 0xaf,
    R16(0xb0), R16(0xc0), R16(0xd0), R16(0xe0), R16(0xf0),
};

int tok_cp_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) ||
        (cp >= 0xae && cp <= 0xff))
        return (int)cp;
    if (cp < 0x100 || cp > 0x143)
        return -1;
    cp -= 0x100;
    if (cp < 33)
        return (int)cp;
    if (cp == 33)
        return 0x7f;
    if (cp < 67)
        return (int)(0x80 + cp - 34);
    return 0xad;
}
