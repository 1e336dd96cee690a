/* Structured logging: text or JSON lines, one write(2) per line.
 *
 * Messages are lowercase, `key value` style, formats checked by the
 * compiler; errno text is "%s" with bt_strerror(errno). A line about a request carries its id
 * (BT_LOG_REQ); the level check happens before any argument is evaluated,
 * so a disabled level costs one comparison.
 */
#ifndef BT_LOG_H
#define BT_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    BT_LOG_LEVEL_TRACE = 0,
    BT_LOG_LEVEL_DEBUG,
    BT_LOG_LEVEL_INFO,
    BT_LOG_LEVEL_WARN,
    BT_LOG_LEVEL_ERROR,
    BT_LOG_LEVEL_OFF,
} bt_log_level_t;

typedef enum {
    BT_LOG_FORMAT_TEXT = 0,
    BT_LOG_FORMAT_JSON,
} bt_log_format_t;

/* Current threshold; read without a lock (a torn read only mis-filters one
 * line while the level changes). */
extern bt_log_level_t bt_log_level_current;

/* Process-wide settings; call before threads start logging. `component`
 * (e.g. "router") is borrowed and must outlive the process's logging. */
void bt_log_init(const char *component, bt_log_level_t level,
                 bt_log_format_t format);
void bt_log_set_level(bt_log_level_t level);
void bt_log_set_fd(int fd);
/* The settings of bt_log_init, for a plugin that keeps its own copy of
 * this module (engine/model/device.h) to log as its host does. */
void bt_log_settings(const char **component_p, bt_log_level_t *level_p,
                     bt_log_format_t *format_p);

/* "info" -> BT_LOG_LEVEL_INFO; returns false for an unknown name. */
bool bt_log_level_parse(const char *name, bt_log_level_t *level_p);
const char *bt_log_level_name(bt_log_level_t level);

/* The line is cut at ~4 KiB; `req_id` may be NULL. Formats are checked
 * at compile time: for an errno text write "%s" with bt_strerror(errno)
 * (glibc's %m is not ISO C). Logging leaves errno as it was. */
void bt_log_write(bt_log_level_t level, const char *req_id, const char *file,
                  int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void bt_log_vwrite(bt_log_level_t level, const char *req_id, const char *file,
                   int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* The text of error number `err`, in a buffer of the calling thread that
 * the next call overwrites. */
const char *bt_strerror(int err);

#define BT_LOG_ENABLED(_lvl) ((_lvl) >= bt_log_level_current)

#define BT_LOG_REQ(_lvl, _req, ...) \
    do { \
        if (BT_LOG_ENABLED(BT_LOG_LEVEL_##_lvl)) { \
            bt_log_write(BT_LOG_LEVEL_##_lvl, (_req), __FILE__, __LINE__, \
                         __VA_ARGS__); \
        } \
    } while (0)

#define bt_trace(...) BT_LOG_REQ(TRACE, NULL, __VA_ARGS__)
#define bt_debug(...) BT_LOG_REQ(DEBUG, NULL, __VA_ARGS__)
#define bt_info(...)  BT_LOG_REQ(INFO, NULL, __VA_ARGS__)
#define bt_warn(...)  BT_LOG_REQ(WARN, NULL, __VA_ARGS__)
#define bt_error(...) BT_LOG_REQ(ERROR, NULL, __VA_ARGS__)

#endif
