/* Stop strings over incremental text: emit what can no longer become a
 * stop string, hold back the rest, cut at the first stop string. */
#include "sample.h"

#include "base/log.h"

#include <stdlib.h>
#include <string.h>

#define BT_STOPSTR_MAX_FEED ((size_t)1 << 20)

struct bt_stopstr {
    uint32_t n;
    char *stops[BT_STOPSTR_MAX];
    size_t lens[BT_STOPSTR_MAX];
    char *buf;        /* held back text, then the new text */
    size_t len;       /* bytes in buf */
    size_t emitted;   /* leading bytes handed out by the last call */
    size_t cap;
    bool stopped;
};

bt_status_t bt_stopstr_create(const char *const *stops, uint32_t n,
                              bt_stopstr_t **matcher_p)
{
    bt_stopstr_t *m;
    uint32_t i;

    if (n > BT_STOPSTR_MAX) {
        bt_error("stop strings: %u given, at most %d", n, BT_STOPSTR_MAX);
        return BT_ERR_TOO_LARGE;
    }
    for (i = 0; i < n; i++) {
        size_t len = stops[i] ? strlen(stops[i]) : 0;
        if (len == 0 || len > BT_STOPSTR_MAX_LEN) {
            bt_error("stop strings: string %u has %zu bytes, 1..%d allowed",
                     i, len, BT_STOPSTR_MAX_LEN);
            return len == 0 ? BT_ERR_INVALID_ARG : BT_ERR_TOO_LARGE;
        }
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        goto err_nomem;
    }
    for (i = 0; i < n; i++) {
        m->lens[i] = strlen(stops[i]);
        m->stops[i] = malloc(m->lens[i]);
        if (m->stops[i] == NULL) {
            bt_stopstr_destroy(m);
            goto err_nomem;
        }
        memcpy(m->stops[i], stops[i], m->lens[i]);
        m->n++;
    }
    *matcher_p = m;
    return BT_OK;

err_nomem:
    bt_error("stop strings: out of memory");
    return BT_ERR_NO_MEMORY;
}

void bt_stopstr_destroy(bt_stopstr_t *m)
{
    uint32_t i;

    if (m == NULL) {
        return;
    }
    for (i = 0; i < m->n; i++) {
        free(m->stops[i]);
    }
    free(m->buf);
    free(m);
}

/* Longest k < len(stop) with the last k bytes of buf == the first k of
 * stop. */
static size_t bt_stopstr_partial(const char *buf, size_t len,
                                 const char *stop, size_t stop_len)
{
    size_t k = stop_len - 1 < len ? stop_len - 1 : len;

    for (; k > 0; k--) {
        if (memcmp(buf + len - k, stop, k) == 0) {
            return k;
        }
    }
    return 0;
}

bt_status_t bt_stopstr_feed(bt_stopstr_t *m, const char *text, size_t len,
                            const char **out_p, size_t *out_len_p,
                            bool *stopped_p)
{
    size_t cut = SIZE_MAX, hold = 0;
    uint32_t i;

    if (len > BT_STOPSTR_MAX_FEED) {
        bt_error("stop strings: piece of %zu bytes over the %zu limit", len,
                 BT_STOPSTR_MAX_FEED);
        return BT_ERR_TOO_LARGE;
    }
    /* drop what the previous call handed out */
    if (m->emitted > 0) {
        memmove(m->buf, m->buf + m->emitted, m->len - m->emitted);
        m->len -= m->emitted;
    }
    m->emitted = 0;
    if (m->stopped) {
        *out_p = m->buf != NULL ? m->buf : "";
        *out_len_p = 0;
        *stopped_p = true;
        return BT_OK;
    }
    if (m->len + len > m->cap) {
        size_t cap = m->len + len + 64;
        char *buf = realloc(m->buf, cap);
        if (buf == NULL) {
            bt_error("stop strings: out of memory");
            return BT_ERR_NO_MEMORY;
        }
        m->buf = buf;
        m->cap = cap;
    }
    if (len > 0) {
        memcpy(m->buf + m->len, text, len);
        m->len += len;
    }
    for (i = 0; i < m->n && m->len > 0; i++) {
        const char *at = memmem(m->buf, m->len, m->stops[i], m->lens[i]);
        if (at != NULL && (size_t)(at - m->buf) < cut) {
            cut = (size_t)(at - m->buf);
        }
    }
    if (cut != SIZE_MAX) {
        m->stopped = true;
        m->emitted = m->len; /* everything from the stop string on is dropped */
        *out_p = m->buf != NULL ? m->buf : "";
        *out_len_p = cut;
        *stopped_p = true;
        return BT_OK;
    }
    for (i = 0; i < m->n; i++) {
        size_t k = bt_stopstr_partial(m->buf, m->len, m->stops[i],
                                      m->lens[i]);
        if (k > hold) {
            hold = k;
        }
    }
    m->emitted = m->len - hold;
    *out_p = m->buf != NULL ? m->buf : "";
    *out_len_p = m->emitted;
    *stopped_p = false;
    return BT_OK;
}

void bt_stopstr_flush(bt_stopstr_t *m, const char **out_p, size_t *out_len_p)
{
    if (m->emitted > 0) {
        memmove(m->buf, m->buf + m->emitted, m->len - m->emitted);
        m->len -= m->emitted;
    }
    m->emitted = m->len;
    *out_p = m->buf != NULL ? m->buf : "";
    *out_len_p = m->stopped ? 0 : m->len;
}
