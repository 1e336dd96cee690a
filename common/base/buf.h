/* Growable byte buffer with a mandatory maximum size (curl dynbuf): every
 * buffer that network input can grow is bounded. The content is always
 * NUL-terminated (not counted in len), so text can be used as a C string. */
#ifndef BT_BUF_H
#define BT_BUF_H

#include "status.h"

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char  *data;   /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;    /* len never exceeds this */
} bt_buf_t;

void bt_buf_init(bt_buf_t *buf, size_t max);
void bt_buf_cleanup(bt_buf_t *buf);   /* frees; buf may be reused after init */
void bt_buf_reset(bt_buf_t *buf);     /* len = 0, keeps the memory */

/* BT_ERR_TOO_LARGE past `max` (the buffer is then unchanged),
 * BT_ERR_NO_MEMORY when malloc fails. */
bt_status_t bt_buf_append(bt_buf_t *buf, const void *data, size_t len);
bt_status_t bt_buf_append_str(bt_buf_t *buf, const char *s);
bt_status_t bt_buf_append_byte(bt_buf_t *buf, char c);
bt_status_t bt_buf_printf(bt_buf_t *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bt_status_t bt_buf_vprintf(bt_buf_t *buf, const char *fmt, va_list ap);
bt_status_t bt_buf_reserve(bt_buf_t *buf, size_t extra);

/* Hands the memory to the caller (free() it); the buffer becomes empty. */
char *bt_buf_steal(bt_buf_t *buf, size_t *len_p);

/* Drops the first n bytes. */
void bt_buf_consume(bt_buf_t *buf, size_t n);

#endif
