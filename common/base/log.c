#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BT_LOG_LINE_MAX 4096

bt_log_level_t bt_log_level_current = BT_LOG_LEVEL_INFO;

static const char *bt_log_component = "baton";
static bt_log_format_t bt_log_fmt = BT_LOG_FORMAT_TEXT;
static int bt_log_fd = 2;

static const char *const bt_log_level_names[] = {
    "trace", "debug", "info", "warn", "error", "off",
};

void bt_log_settings(const char **component_p, bt_log_level_t *level_p,
                     bt_log_format_t *format_p)
{
    *component_p = bt_log_component;
    *level_p = bt_log_level_current;
    *format_p = bt_log_fmt;
}

void bt_log_init(const char *component, bt_log_level_t level,
                 bt_log_format_t format)
{
    if (component != NULL) {
        bt_log_component = component;
    }
    bt_log_level_current = level;
    bt_log_fmt = format;
}

void bt_log_set_level(bt_log_level_t level)
{
    bt_log_level_current = level;
}

void bt_log_set_fd(int fd)
{
    bt_log_fd = fd;
}

bool bt_log_level_parse(const char *name, bt_log_level_t *level_p)
{
    int i;

    for (i = 0; i <= BT_LOG_LEVEL_OFF; i++) {
        if (strcmp(name, bt_log_level_names[i]) == 0) {
            *level_p = (bt_log_level_t)i;
            return true;
        }
    }
    return false;
}

const char *bt_log_level_name(bt_log_level_t level)
{
    if ((int)level < 0 || level > BT_LOG_LEVEL_OFF) {
        return "?";
    }
    return bt_log_level_names[level];
}

const char *bt_strerror(int err)
{
    static _Thread_local char buf[128];

    return strerror_r(err, buf, sizeof(buf));
}

/* Appends `s` JSON-escaped; stops before overflowing `cap`. */
static size_t bt_log_json_escape(char *dst, size_t pos, size_t cap,
                                 const char *s)
{
    static const char hex[] = "0123456789abcdef";

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc = 0;

        switch (c) {
        case '"':  esc = '"';  break;
        case '\\': esc = '\\'; break;
        case '\n': esc = 'n';  break;
        case '\r': esc = 'r';  break;
        case '\t': esc = 't';  break;
        default:   break;
        }
        if (esc != 0) {
            if (pos + 2 >= cap) {
                break;
            }
            dst[pos++] = '\\';
            dst[pos++] = esc;
        } else if (c < 0x20) {
            if (pos + 6 >= cap) {
                break;
            }
            dst[pos++] = '\\';
            dst[pos++] = 'u';
            dst[pos++] = '0';
            dst[pos++] = '0';
            dst[pos++] = hex[c >> 4];
            dst[pos++] = hex[c & 15];
        } else {
            if (pos + 1 >= cap) {
                break;
            }
            dst[pos++] = (char)c;
        }
    }
    return pos;
}

static size_t bt_log_append(char *dst, size_t pos, size_t cap, const char *s)
{
    size_t n = strlen(s);

    if (pos + n >= cap) {
        n = cap - pos - 1;
    }
    memcpy(dst + pos, s, n);
    return pos + n;
}

void bt_log_vwrite(bt_log_level_t level, const char *req_id, const char *file,
                   int line, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    char msg[BT_LOG_LINE_MAX];
    char out[BT_LOG_LINE_MAX + 512];
    char ts[64];
    char where[160];
    struct timespec now;
    struct tm tm;
    size_t pos = 0;
    const char *base;
    ssize_t wr;

    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0) {
        msg[0] = '\0';
    }

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, now.tv_nsec / 1000);
    base = strrchr(file, '/');
    snprintf(where, sizeof(where), "%s:%d", base ? base + 1 : file, line);

    if (bt_log_fmt == BT_LOG_FORMAT_JSON) {
        pos = bt_log_append(out, pos, sizeof(out), "{\"ts\":\"");
        pos = bt_log_append(out, pos, sizeof(out), ts);
        pos = bt_log_append(out, pos, sizeof(out), "\",\"level\":\"");
        pos = bt_log_append(out, pos, sizeof(out), bt_log_level_name(level));
        pos = bt_log_append(out, pos, sizeof(out), "\",\"component\":\"");
        pos = bt_log_json_escape(out, pos, sizeof(out), bt_log_component);
        if (req_id != NULL) {
            pos = bt_log_append(out, pos, sizeof(out), "\",\"req\":\"");
            pos = bt_log_json_escape(out, pos, sizeof(out), req_id);
        }
        pos = bt_log_append(out, pos, sizeof(out), "\",\"src\":\"");
        pos = bt_log_json_escape(out, pos, sizeof(out), where);
        pos = bt_log_append(out, pos, sizeof(out), "\",\"msg\":\"");
        pos = bt_log_json_escape(out, pos, sizeof(out) - 3, msg);
        pos = bt_log_append(out, pos, sizeof(out), "\"}");
    } else {
        char head[128];

        snprintf(head, sizeof(head), "%s %-5s %s ", ts,
                 bt_log_level_name(level), bt_log_component);
        pos = bt_log_append(out, pos, sizeof(out), head);
        if (req_id != NULL) {
            pos = bt_log_append(out, pos, sizeof(out), "req=");
            pos = bt_log_append(out, pos, sizeof(out), req_id);
            pos = bt_log_append(out, pos, sizeof(out), " ");
        }
        pos = bt_log_append(out, pos, sizeof(out) - 1, msg);
        while (pos > 0 && out[pos - 1] == '\n') {
            pos--;
        }
    }
    out[pos++] = '\n';

    wr = write(bt_log_fd, out, pos);
    (void)wr; /* nowhere to report a failed log write */
    errno = saved_errno;
}

void bt_log_write(bt_log_level_t level, const char *req_id, const char *file,
                  int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    bt_log_vwrite(level, req_id, file, line, fmt, ap);
    va_end(ap);
}
