/* The numerics id of kv-spec v2 (kv_spec.h, docs/kv-spec.md). */
#include "kv_spec.h"

#include <stdio.h>
#include <string.h>

static bool bt_kv_numerics_char(char c, bool slash_ok)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || (slash_ok && c == '/');
}

static bool bt_kv_numerics_name(const char *s, bool slash_ok)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!bt_kv_numerics_char(*s, slash_ok)) {
            return false;
        }
    }
    return true;
}

bool bt_kv_numerics_valid(const char *id)
{
    return bt_kv_numerics_name(id, true) && strlen(id) <= BT_KV_NUMERICS_MAX;
}

bool bt_kv_numerics_format(char *buf, size_t size, const char *backend,
                           const char *mode, uint32_t tp, uint32_t rev)
{
    int n;

    if (!bt_kv_numerics_name(backend, false) ||
        !bt_kv_numerics_name(mode, false) || tp == 0 || rev == 0) {
        return false;
    }
    n = snprintf(buf, size, "%s/%s/tp%u/k%u", backend, mode, tp, rev);
    return n > 0 && (size_t)n < size && bt_kv_numerics_valid(buf);
}
