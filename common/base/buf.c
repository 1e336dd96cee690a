#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bt_buf_init(bt_buf_t *buf, size_t max)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->max = max;
}

void bt_buf_cleanup(bt_buf_t *buf)
{
    if (buf == NULL) {
        return;
    }
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void bt_buf_reset(bt_buf_t *buf)
{
    buf->len = 0;
    if (buf->data != NULL) {
        buf->data[0] = '\0';
    }
}

bt_status_t bt_buf_reserve(bt_buf_t *buf, size_t extra)
{
    size_t want, cap;
    char *p;

    if (extra > buf->max || buf->len > buf->max - extra) {
        return BT_ERR_TOO_LARGE;
    }
    want = buf->len + extra + 1; /* + NUL */
    if (want <= buf->cap) {
        return BT_OK;
    }
    cap = buf->cap ? buf->cap : 64;
    while (cap < want) {
        cap = cap > (size_t)-1 / 2 ? want : cap * 2;
    }
    if (cap > buf->max + 1) {
        cap = buf->max + 1;
    }
    p = realloc(buf->data, cap);
    if (p == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    buf->data = p;
    buf->cap = cap;
    return BT_OK;
}

bt_status_t bt_buf_append(bt_buf_t *buf, const void *data, size_t len)
{
    bt_status_t status = bt_buf_reserve(buf, len);

    if (status != BT_OK) {
        return status;
    }
    if (len > 0) {
        memcpy(buf->data + buf->len, data, len);
    }
    buf->len += len;
    buf->data[buf->len] = '\0';
    return BT_OK;
}

bt_status_t bt_buf_append_str(bt_buf_t *buf, const char *s)
{
    return bt_buf_append(buf, s, strlen(s));
}

bt_status_t bt_buf_append_byte(bt_buf_t *buf, char c)
{
    return bt_buf_append(buf, &c, 1);
}

bt_status_t bt_buf_vprintf(bt_buf_t *buf, const char *fmt, va_list ap)
{
    va_list ap2;
    bt_status_t status;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return BT_ERR_INVALID_ARG;
    }
    status = bt_buf_reserve(buf, (size_t)n);
    if (status != BT_OK) {
        return status;
    }
    vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
    buf->len += (size_t)n;
    return BT_OK;
}

bt_status_t bt_buf_printf(bt_buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    bt_status_t status;

    va_start(ap, fmt);
    status = bt_buf_vprintf(buf, fmt, ap);
    va_end(ap);
    return status;
}

char *bt_buf_steal(bt_buf_t *buf, size_t *len_p)
{
    char *p = buf->data;

    if (len_p != NULL) {
        *len_p = buf->len;
    }
    if (p == NULL) {
        p = calloc(1, 1);
    }
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    return p;
}

void bt_buf_consume(bt_buf_t *buf, size_t n)
{
    if (n >= buf->len) {
        bt_buf_reset(buf);
        return;
    }
    memmove(buf->data, buf->data + n, buf->len - n);
    buf->len -= n;
    buf->data[buf->len] = '\0';
}
