/* Reading the JSON answers (fields by name, one entry of a list by its
 * id, enums shortened, ages) and printing them as -o asks. */
#include "ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

const char *ctl_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s != NULL ? s : "";
}

long long ctl_int(const json_t *obj, const char *key)
{
    return (long long)json_integer_value(json_object_get(obj, key));
}

double ctl_real(const json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

json_t *ctl_find_in(const json_t *resp, const char *list, const char *key,
                    const char *name)
{
    json_t *e;
    size_t i;

    json_array_foreach(json_object_get(resp, list), i, e) {
        if (strcmp(ctl_str(e, key), name) == 0) {
            return e;
        }
    }
    return NULL;
}

const char *ctl_enum(const json_t *obj, const char *key, const char *prefix,
                     char *out, size_t size)
{
    const char *s = ctl_str(obj, key);
    size_t i, plen = strlen(prefix);

    if (strncmp(s, prefix, plen) == 0) {
        s += plen;
    }
    for (i = 0; s[i] != '\0' && i + 1 < size; i++) {
        out[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' : s[i]);
    }
    out[i] = '\0';
    return out;
}

const char *ctl_age(uint64_t now_ms, uint64_t then_ms, char *out, size_t size)
{
    uint64_t s;

    if (then_ms == 0) {
        snprintf(out, size, "-");
        return out;
    }
    /* a clock a little ahead of ours reads as "just now" */
    s = now_ms > then_ms ? (now_ms - then_ms) / 1000 : 0;
    if (s < 120) {
        snprintf(out, size, "%llus", (unsigned long long)s);
    } else if (s < 3600) {
        snprintf(out, size, "%llum%llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
    } else if (s < 86400) {
        snprintf(out, size, "%lluh%llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s % 3600 / 60));
    } else {
        snprintf(out, size, "%llud%lluh", (unsigned long long)(s / 86400),
                 (unsigned long long)(s % 86400 / 3600));
    }
    return out;
}

const char *ctl_time(uint64_t unix_ms, char *out, size_t size)
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;

    if (unix_ms == 0 || gmtime_r(&t, &tm) == NULL ||
        strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, size, "-");
    }
    return out;
}

uint64_t ctl_now_ms(const json_t *resp)
{
    long long router = ctl_int(resp, "now_unix_ms");
    struct timeval tv;

    if (router > 0) {
        return (uint64_t)router;
    }
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static bool ctl_epipe;

bool ctl_stdout_gone(void)
{
    if (fflush(stdout) != 0 && errno == EPIPE) {
        ctl_epipe = true;
    }
    return ctl_epipe;
}

int ctl_emit(const ctl_t *ctl, const json_t *obj)
{
    int rc = CTL_EXIT_OK;

    if (ctl->out == CTL_OUT_YAML) {
        rc = ctl_yaml_write(stdout, obj) == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    } else {
        rc = ctl_json_print(obj);
    }
    /* a reader that stopped early (| head) is not an error */
    return ctl_stdout_gone() ? CTL_EXIT_OK : rc;
}

int ctl_finish(ctl_t *ctl, json_t *resp,
               void (*print)(const ctl_t *ctl, const json_t *resp))
{
    int rc = CTL_EXIT_OK;

    if (ctl->out == CTL_OUT_JSON || ctl->out == CTL_OUT_YAML) {
        rc = ctl_emit(ctl, resp);
    } else {
        print(ctl, resp);
        ctl_stdout_gone();
    }
    json_decref(resp);
    return rc;
}
