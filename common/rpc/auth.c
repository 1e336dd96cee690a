/* Cluster token files and the method policy of the control plane
 * (auth.h, docs/security.md). */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BT_RPC_AUTH_FILE_MAX   (64 * 1024)
#define BT_RPC_AUTH_ENTRIES    64
#define BT_RPC_AUTH_TOKEN_MIN  16
#define BT_RPC_AUTH_TOKEN_MAX  256

typedef struct {
    uint8_t  hash[SHA256_DIGEST_LENGTH];
    unsigned roles;
} bt_rpc_auth_entry_t;

struct bt_rpc_auth {
    char               *token;       /* own token, sent on every call */
    unsigned            self_roles;
    bt_rpc_auth_entry_t entries[BT_RPC_AUTH_ENTRIES];
    size_t              n;
};

static const char *const bt_rpc_role_names[] = {
    "router", "prefill", "decode", "kvstore",
};

/* Who may call what: the one table of the control plane's policy. */
static const struct {
    const char *prefix;
    unsigned    roles;
} bt_rpc_auth_policy[] = {
    /* nodes and kvstores register with the router; Register itself checks
     * that the role registered is one the credential grants */
    { "/baton.v1.Registry/", BT_RPC_ROLE_PREFILL | BT_RPC_ROLE_DECODE |
                             BT_RPC_ROLE_KVSTORE },
    /* only the router sends work to nodes */
    { "/baton.v1.Prefill/", BT_RPC_ROLE_ROUTER },
    { "/baton.v1.Decode/", BT_RPC_ROLE_ROUTER },
    /* re-planning MoE placement is the operator's, through the router's
     * Admin (first match wins: before the service's own line) */
    { "/baton.v1.KvStore/Rebalance", BT_RPC_ROLE_ROUTER },
    /* nodes read and publish prefix blocks and report expert statistics;
     * the router may flush and read plans */
    { "/baton.v1.KvStore/", BT_RPC_ROLE_PREFILL | BT_RPC_ROLE_DECODE |
                            BT_RPC_ROLE_ROUTER },
};

unsigned bt_rpc_auth_method_roles(const char *path)
{
    for (size_t i = 0; i < sizeof(bt_rpc_auth_policy) /
                           sizeof(bt_rpc_auth_policy[0]); i++) {
        if (strncmp(path, bt_rpc_auth_policy[i].prefix,
                    strlen(bt_rpc_auth_policy[i].prefix)) == 0) {
            return bt_rpc_auth_policy[i].roles;
        }
    }
    return 0;
}

unsigned bt_rpc_role_parse(const char *name, size_t len)
{
    for (size_t i = 0; i < 4; i++) {
        if (strlen(bt_rpc_role_names[i]) == len &&
            memcmp(bt_rpc_role_names[i], name, len) == 0) {
            return 1u << i;
        }
    }
    return 0;
}

const char *bt_rpc_roles_str(unsigned roles, char *out, size_t size)
{
    size_t used = 0;

    if (size == 0) {
        return out;
    }
    out[0] = '\0';
    for (size_t i = 0; i < 4; i++) {
        if (roles & (1u << i)) {
            int n = snprintf(out + used, size - used, "%s%s",
                             used > 0 ? "," : "", bt_rpc_role_names[i]);

            if (n < 0 || (size_t)n >= size - used) {
                break;
            }
            used += (size_t)n;
        }
    }
    if (used == 0) {
        snprintf(out, size, "none");
    }
    return out;
}

/* "prefill,decode" -> mask; 0 on an unknown or empty name. */
static unsigned bt_rpc_auth_roles_parse(const char *s)
{
    unsigned roles = 0;

    while (*s != '\0') {
        size_t len = strcspn(s, ",");
        unsigned r = bt_rpc_role_parse(s, len);

        if (r == 0) {
            return 0;
        }
        roles |= r;
        s += len;
        if (*s == ',') {
            s++;
            if (*s == '\0') {
                return 0;
            }
        }
    }
    return roles;
}

static bool bt_rpc_auth_token_ok(const char *t)
{
    size_t len = strlen(t);

    if (len < BT_RPC_AUTH_TOKEN_MIN || len > BT_RPC_AUTH_TOKEN_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (t[i] <= ' ' || t[i] > '~') {
            return false;
        }
    }
    return true;
}

static int bt_rpc_auth_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bt_status_t bt_rpc_auth_add(bt_rpc_auth_t *a, unsigned roles,
                                   const char *secret, bool hashed)
{
    bt_rpc_auth_entry_t *e;

    if (a->n == BT_RPC_AUTH_ENTRIES) {
        return BT_ERR_EXHAUSTED;
    }
    e = &a->entries[a->n];
    if (hashed) {
        if (strlen(secret) != 2 * SHA256_DIGEST_LENGTH) {
            return BT_ERR_INVALID_ARG;
        }
        for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
            int hi = bt_rpc_auth_hex(secret[2 * i]);
            int lo = bt_rpc_auth_hex(secret[2 * i + 1]);

            if (hi < 0 || lo < 0) {
                return BT_ERR_INVALID_ARG;
            }
            e->hash[i] = (uint8_t)(hi << 4 | lo);
        }
    } else {
        if (!bt_rpc_auth_token_ok(secret)) {
            return BT_ERR_INVALID_ARG;
        }
        SHA256((const unsigned char *)secret, strlen(secret), e->hash);
    }
    e->roles = roles;
    a->n++;
    return BT_OK;
}

/* One line, split in place into at most 3 words. */
static size_t bt_rpc_auth_words(char *line, char *w[3])
{
    size_t n = 0;
    char *p = line;

    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == '\r') {
            p++;
        }
        if (*p == '\0' || *p == '#') {
            break;
        }
        if (n == 3) {
            return 4;   /* too many */
        }
        w[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r') {
            p++;
        }
        if (*p != '\0') {
            *p++ = '\0';
        }
    }
    return n;
}

static bt_status_t bt_rpc_auth_parse(bt_rpc_auth_t *a, char *text,
                                     const char *path, char *err,
                                     size_t err_size)
{
    size_t lineno = 0, n_lines = 0;
    char *bare = NULL;
    char *line = text;

    while (line != NULL) {
        char *nl = strchr(line, '\n'), *w[3];
        size_t n;
        unsigned roles;

        if (nl != NULL) {
            *nl = '\0';
        }
        lineno++;
        n = bt_rpc_auth_words(line, w);
        if (n == 0) {
            line = nl != NULL ? nl + 1 : NULL;
            continue;
        }
        n_lines++;
        if (n == 1) {
            bare = w[0];
        } else if (n != 3 || (strcmp(w[0], "self") != 0 &&
                              strcmp(w[0], "accept") != 0)) {
            snprintf(err, err_size, "%s:%zu: expected \"self ROLES TOKEN\", "
                     "\"accept ROLES TOKEN|sha256:HEX\" or one bare token",
                     path, lineno);
            return BT_ERR_INVALID_ARG;
        } else if ((roles = bt_rpc_auth_roles_parse(w[1])) == 0) {
            snprintf(err, err_size, "%s:%zu: roles must be a comma list of "
                     "router, prefill, decode, kvstore", path, lineno);
            return BT_ERR_INVALID_ARG;
        } else if (strcmp(w[0], "self") == 0) {
            if (a->token != NULL) {
                snprintf(err, err_size, "%s:%zu: a second \"self\" line", path,
                         lineno);
                return BT_ERR_INVALID_ARG;
            }
            if (bt_rpc_auth_add(a, roles, w[2], false) != BT_OK ||
                (a->token = strdup(w[2])) == NULL) {
                snprintf(err, err_size, "%s:%zu: the token must be %d to %d "
                         "printable bytes without spaces", path, lineno,
                         BT_RPC_AUTH_TOKEN_MIN, BT_RPC_AUTH_TOKEN_MAX);
                return BT_ERR_INVALID_ARG;
            }
            a->self_roles = roles;
        } else {
            bool hashed = strncmp(w[2], "sha256:", 7) == 0;
            bt_status_t s = bt_rpc_auth_add(a, roles, hashed ? w[2] + 7 : w[2],
                                            hashed);

            if (s != BT_OK) {
                snprintf(err, err_size, "%s:%zu: %s", path, lineno,
                         s == BT_ERR_EXHAUSTED ? "more than 64 entries"
                         : hashed ? "sha256: needs 64 hex digits"
                         : "the token must be 16 to 256 printable bytes "
                           "without spaces");
                return BT_ERR_INVALID_ARG;
            }
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (bare != NULL) {
        if (n_lines != 1) {
            snprintf(err, err_size, "%s: a bare token must be alone in the "
                     "file (or use \"self\"/\"accept\" lines)", path);
            return BT_ERR_INVALID_ARG;
        }
        if (bt_rpc_auth_add(a, BT_RPC_ROLES_ALL, bare, false) != BT_OK ||
            (a->token = strdup(bare)) == NULL) {
            snprintf(err, err_size, "%s: the token must be %d to %d printable "
                     "bytes without spaces", path, BT_RPC_AUTH_TOKEN_MIN,
                     BT_RPC_AUTH_TOKEN_MAX);
            return BT_ERR_INVALID_ARG;
        }
        a->self_roles = BT_RPC_ROLES_ALL;
    }
    if (a->n == 0) {
        snprintf(err, err_size, "%s: no token in it", path);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

bt_status_t bt_rpc_auth_load(const char *path, bt_rpc_auth_t **auth_p,
                             char *err, size_t err_size)
{
    bt_rpc_auth_t *a = NULL;
    bt_status_t s = BT_ERR_INVALID_ARG;
    struct stat st;
    char *text = NULL;
    FILE *f;

    if (path == NULL || path[0] == '\0') {
        snprintf(err, err_size, "--cluster-token-file is empty");
        return BT_ERR_INVALID_ARG;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_size, "--cluster-token-file %s: %s", path,
                 strerror(errno));
        return BT_ERR_INVALID_ARG;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size <= 0 || st.st_size > BT_RPC_AUTH_FILE_MAX) {
        snprintf(err, err_size, "--cluster-token-file %s: not a regular file "
                 "of 1 byte to 64 KiB", path);
        goto out;
    }
    if ((st.st_mode & S_IROTH) != 0) {
        snprintf(err, err_size, "--cluster-token-file %s: readable by every "
                 "user (chmod o-r: it holds secrets)", path);
        goto out;
    }
    text = calloc(1, (size_t)st.st_size + 1);
    a = calloc(1, sizeof(*a));
    if (text == NULL || a == NULL) {
        snprintf(err, err_size, "--cluster-token-file %s: out of memory", path);
        s = BT_ERR_NO_MEMORY;
        goto out;
    }
    if (fread(text, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        snprintf(err, err_size, "--cluster-token-file %s: short read", path);
        goto out;
    }
    if (memchr(text, '\0', (size_t)st.st_size) != NULL) {
        snprintf(err, err_size, "--cluster-token-file %s: a NUL byte in it",
                 path);
        goto out;
    }
    s = bt_rpc_auth_parse(a, text, path, err, err_size);
out:
    fclose(f);
    if (text != NULL) {
        OPENSSL_cleanse(text, (size_t)st.st_size);
        free(text);
    }
    if (s != BT_OK) {
        bt_rpc_auth_destroy(a);
        return s;
    }
    *auth_p = a;
    return BT_OK;
}

bt_status_t bt_rpc_auth_load_env(bt_rpc_auth_t **auth_p, char *err,
                                 size_t err_size)
{
    const char *path = getenv("BATON_CLUSTER_TOKEN_FILE");

    *auth_p = NULL;
    if (path == NULL || path[0] == '\0') {
        return BT_OK;
    }
    return bt_rpc_auth_load(path, auth_p, err, err_size);
}

void bt_rpc_auth_destroy(bt_rpc_auth_t *auth)
{
    if (auth == NULL) {
        return;
    }
    if (auth->token != NULL) {
        OPENSSL_cleanse(auth->token, strlen(auth->token));
        free(auth->token);
    }
    OPENSSL_cleanse(auth, sizeof(*auth));
    free(auth);
}

const char *bt_rpc_auth_token(const bt_rpc_auth_t *auth)
{
    return auth != NULL ? auth->token : NULL;
}

unsigned bt_rpc_auth_self_roles(const bt_rpc_auth_t *auth)
{
    return auth != NULL ? auth->self_roles : 0;
}

unsigned bt_rpc_auth_token_roles(const bt_rpc_auth_t *auth, const char *token)
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    unsigned roles = 0;

    if (auth == NULL || token == NULL) {
        return 0;
    }
    SHA256((const unsigned char *)token, strlen(token), h);
    /* every entry compared, no early exit: the time says nothing about
     * which entry (or how much of a digest) matched */
    for (size_t i = 0; i < auth->n; i++) {
        unsigned match = CRYPTO_memcmp(h, auth->entries[i].hash, sizeof(h)) == 0;

        roles |= auth->entries[i].roles & (0u - match);
    }
    OPENSSL_cleanse(h, sizeof(h));
    return roles;
}
