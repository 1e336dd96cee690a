/* The store object: geometry, the DRAM slab's slots, the hash index and
 * its two LRU lists, lookups, stats. */
#include "store_int.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/sha256.h"
#include "disk.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/rand.h>

void bt_kvs_set_error(bt_kvs_t *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
}

void bt_kvs_emit(bt_kvs_t *s, bt_kvs_event_type_t type, bt_kvs_tier_t tier,
                 const uint8_t *hash, const uint8_t *parent)
{
    bt_kvs_event_t ev = { type, tier, hash, parent };

    if (s->cfg.event_cb != NULL && s->events_on) {
        s->cfg.event_cb(s->cfg.event_arg, &ev);
    }
}

const char *bt_kvs_last_error(const bt_kvs_t *s)
{
    return s->err;
}

uint64_t bt_kvs_now_ms(const bt_kvs_t *s)
{
    return s->cfg.now_ms != NULL ? s->cfg.now_ms(s->cfg.clock_arg) : bt_now_ms();
}

/* ---- geometry ---- */

bt_status_t bt_kvs_set_geometry(bt_kvs_t *s, const bt_kv_geom_t *g,
                                uint64_t block_bytes)
{
    uint64_t n;

    if (s->geom_set) {
        if (memcmp(&s->geom, g, sizeof(*g)) != 0) {
            bt_kvs_set_error(s, "kv geometry mismatch: this store holds "
                             "n_layers %u n_kv_heads %u head_dim %u block_size "
                             "%u dtype %u, the request has %u %u %u %u %u",
                             s->geom.n_layers, s->geom.n_kv_heads,
                             s->geom.head_dim, s->geom.block_size,
                             (unsigned)s->geom.dtype, g->n_layers,
                             g->n_kv_heads, g->head_dim, g->block_size,
                             (unsigned)g->dtype);
            return BT_ERR_INVALID_ARG;
        }
        return BT_OK;
    }
    if (bt_kv_geom_check_block(g, block_bytes, s->err, sizeof(s->err)) != BT_OK) {
        return BT_ERR_INVALID_ARG;
    }
    n = s->cfg.slab_len / block_bytes;
    if (n > UINT32_MAX) {
        n = UINT32_MAX;
    }
    s->free_slots = malloc(sizeof(*s->free_slots) * (n > 0 ? n : 1));
    if (s->free_slots == NULL) {
        bt_kvs_set_error(s, "out of memory");
        return BT_ERR_NO_MEMORY;
    }
    s->n_slots = (uint32_t)n;
    /* a stack: slot 0 is handed out first */
    for (uint32_t i = 0; i < s->n_slots; i++) {
        s->free_slots[i] = s->n_slots - 1 - i;
    }
    s->n_free = s->n_slots;
    s->geom = *g;
    s->block_bytes = block_bytes;
    s->file_bytes = bt_kvs_file_size(g->block_size, block_bytes);
    s->geom_set = true;
    bt_info("kv geometry: n_layers %u n_kv_heads %u head_dim %u block_size %u "
            "dtype %u, %llu bytes per block, %u dram slots", g->n_layers,
            g->n_kv_heads, g->head_dim, g->block_size, (unsigned)g->dtype,
            (unsigned long long)block_bytes, s->n_slots);
    if (s->n_slots == 0) {
        bt_warn("the dram tier (%zu bytes) holds no block of %llu bytes",
                s->cfg.slab_len, (unsigned long long)block_bytes);
    }
    return BT_OK;
}

bool bt_kvs_geometry(const bt_kvs_t *s, bt_kv_geom_t *g_p,
                     uint64_t *block_bytes_p)
{
    if (!s->geom_set) {
        return false;
    }
    if (g_p != NULL) {
        *g_p = s->geom;
    }
    if (block_bytes_p != NULL) {
        *block_bytes_p = s->block_bytes;
    }
    return true;
}

/* ---- index ---- */

/* Keyed by a random seed: hashes come from clients. */
static size_t bt_kvs_bucket(const bt_kvs_t *s, const uint8_t *hash)
{
    uint64_t h = s->seed;

    for (int i = 0; i < 4; i++) {
        uint64_t w;

        memcpy(&w, hash + 8 * i, 8);
        h ^= w;
        h *= 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return (size_t)(h & (s->n_buckets - 1));
}

bt_kvs_entry_t *bt_kvs_find(const bt_kvs_t *s, const uint8_t *hash)
{
    bt_kvs_entry_t *e = s->buckets[bt_kvs_bucket(s, hash)];

    while (e != NULL && memcmp(e->hash, hash, BT_KV_HASH_LEN) != 0) {
        e = e->hnext;
    }
    return e;
}

static bt_status_t bt_kvs_grow(bt_kvs_t *s)
{
    size_t old_n = s->n_buckets, n = old_n * 2;
    bt_kvs_entry_t **old = s->buckets, **b = calloc(n, sizeof(*b));

    if (b == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    s->buckets = b;
    s->n_buckets = n;
    for (size_t i = 0; i < old_n; i++) {
        bt_kvs_entry_t *e = old[i], *next;

        for (; e != NULL; e = next) {
            size_t k = bt_kvs_bucket(s, e->hash);

            next = e->hnext;
            e->hnext = b[k];
            b[k] = e;
        }
    }
    free(old);
    return BT_OK;
}

bt_status_t bt_kvs_insert(bt_kvs_t *s, bt_kvs_entry_t *e)
{
    size_t k;

    if (s->n_entries + 1 > s->n_buckets - s->n_buckets / 4 &&
        bt_kvs_grow(s) != BT_OK) {
        return BT_ERR_NO_MEMORY;
    }
    k = bt_kvs_bucket(s, e->hash);
    e->hnext = s->buckets[k];
    s->buckets[k] = e;
    s->n_entries++;
    return BT_OK;
}

static void bt_kvs_unindex(bt_kvs_t *s, bt_kvs_entry_t *e)
{
    bt_kvs_entry_t **pp = &s->buckets[bt_kvs_bucket(s, e->hash)];

    while (*pp != NULL && *pp != e) {
        pp = &(*pp)->hnext;
    }
    if (*pp == e) {
        *pp = e->hnext;
        s->n_entries--;
    }
    e->hnext = NULL;
}

/* ---- LRU lists ---- */

static void bt_kvs_dlru_remove(bt_kvs_t *s, bt_kvs_entry_t *e)
{
    if (!e->in_dlru) {
        return;
    }
    if (e->dprev != NULL) {
        e->dprev->dnext = e->dnext;
    } else {
        s->dlru_head = e->dnext;
    }
    if (e->dnext != NULL) {
        e->dnext->dprev = e->dprev;
    } else {
        s->dlru_tail = e->dprev;
    }
    e->dprev = e->dnext = NULL;
    e->in_dlru = false;
    s->n_dlru--;
}

static void bt_kvs_klru_remove(bt_kvs_t *s, bt_kvs_entry_t *e)
{
    if (!e->in_klru) {
        return;
    }
    if (e->kprev != NULL) {
        e->kprev->knext = e->knext;
    } else {
        s->klru_head = e->knext;
    }
    if (e->knext != NULL) {
        e->knext->kprev = e->kprev;
    } else {
        s->klru_tail = e->kprev;
    }
    e->kprev = e->knext = NULL;
    e->in_klru = false;
}

void bt_kvs_entry_relink(bt_kvs_t *s, bt_kvs_entry_t *e)
{
    bool evictable = e->pins == 0 && !e->loading && !e->dead;

    if (evictable && e->slot >= 0) {
        if (!e->in_dlru) {
            e->dprev = NULL;
            e->dnext = s->dlru_head;
            if (s->dlru_head != NULL) {
                s->dlru_head->dprev = e;
            } else {
                s->dlru_tail = e;
            }
            s->dlru_head = e;
            e->in_dlru = true;
            s->n_dlru++;
        }
    } else {
        bt_kvs_dlru_remove(s, e);
    }
    if (evictable && e->on_disk) {
        if (!e->in_klru) {
            e->kprev = NULL;
            e->knext = s->klru_head;
            if (s->klru_head != NULL) {
                s->klru_head->kprev = e;
            } else {
                s->klru_tail = e;
            }
            s->klru_head = e;
            e->in_klru = true;
        }
    } else {
        bt_kvs_klru_remove(s, e);
    }
}

void bt_kvs_entry_touch(bt_kvs_t *s, bt_kvs_entry_t *e)
{
    bt_kvs_dlru_remove(s, e);
    bt_kvs_klru_remove(s, e);
    bt_kvs_entry_relink(s, e);
}

void bt_kvs_entry_unpin(bt_kvs_t *s, bt_kvs_entry_t *e)
{
    if (e->pins > 0) {
        e->pins--;
    }
    if (e->dead) {
        if (e->pins == 0 && !e->loading) {
            bt_kvs_entry_free(s, e);
        }
        return;
    }
    bt_kvs_entry_relink(s, e);
}

/* ---- slots ---- */

void *bt_kvs_slot_ptr(const bt_kvs_t *s, int64_t slot)
{
    return (uint8_t *)s->cfg.slab + (uint64_t)slot * s->block_bytes;
}

void bt_kvs_slot_put(bt_kvs_t *s, int64_t slot)
{
    if (slot >= 0) {
        s->free_slots[s->n_free++] = (uint32_t)slot;
    }
}

/* Takes the oldest unpinned block's slot; a block without a file goes. */
static bool bt_kvs_evict_dram(bt_kvs_t *s)
{
    bt_kvs_entry_t *e = s->dlru_tail;

    if (e == NULL) {
        return false;
    }
    s->st.dram.evictions++;
    if (!e->on_disk) {
        bt_kvs_entry_kill(s, e, false);
        return true;
    }
    bt_kvs_dlru_remove(s, e);
    bt_kvs_slot_put(s, e->slot);
    e->slot = -1;
    s->dram_blocks--;
    return true;
}

int64_t bt_kvs_slot_take(bt_kvs_t *s)
{
    if (s->n_free == 0 && !bt_kvs_evict_dram(s)) {
        return -1;
    }
    return s->free_slots[--s->n_free];
}

/* ---- entries ---- */

void bt_kvs_entry_free(bt_kvs_t *s, bt_kvs_entry_t *e)
{
    (void)s;
    free(e->tokens);
    free(e);
}

void bt_kvs_entry_kill(bt_kvs_t *s, bt_kvs_entry_t *e, bool unlink_file)
{
    if (e->dead) {
        return;
    }
    bt_kvs_dlru_remove(s, e);
    bt_kvs_klru_remove(s, e);
    bt_kvs_unindex(s, e);
    e->dead = true;
    if (!s->flushing) {
        /* neither tier serves it any more */
        bt_kvs_emit(s, BT_KVS_EVENT_REMOVED,
                    e->slot >= 0 && !e->loading ? BT_KVS_TIER_DRAM
                                                : BT_KVS_TIER_DISK,
                    e->hash, e->parent);
    }
    if (e->slot >= 0 && !e->loading) {
        s->dram_blocks--;
    }
    /* a slot being loaded into is freed when the read is back */
    if (!e->loading) {
        bt_kvs_slot_put(s, e->slot);
        e->slot = -1;
    }
    if (e->on_disk) {
        s->disk_blocks--;
        s->disk_used -= s->file_bytes;
        if (unlink_file && s->disk_dir != NULL) {
            bt_kvs_unlink_async(s, e->hash, e->gen);
        }
        e->on_disk = false;
    }
    if (e->pins == 0 && !e->loading) {
        bt_kvs_entry_free(s, e);
    }
}

void bt_kvs_entry_info(const bt_kvs_t *s, const bt_kvs_entry_t *e,
                       bt_kvs_block_info_t *info)
{
    memcpy(info->hash, e->hash, BT_KV_HASH_LEN);
    memcpy(info->parent, e->parent, BT_KV_HASH_LEN);
    memcpy(info->checksum, e->checksum, BT_KV_HASH_LEN);
    if (e->slot >= 0 && !e->loading) {
        info->tier = BT_KVS_TIER_DRAM;
        info->offset = (uint64_t)e->slot * s->block_bytes;
        info->length = (uint32_t)s->block_bytes;
    } else {
        info->tier = BT_KVS_TIER_DISK;
        info->offset = 0;
        info->length = (uint32_t)s->block_bytes;
    }
    info->tokens = e->tokens;
    info->n_tokens = s->geom.block_size;
}

/* ---- disk room ---- */

typedef struct {
    char    *dir;
    uint8_t  hash[BT_KV_HASH_LEN];
    uint64_t gen;
    bt_kvs_t *s;
} bt_kvs_unlink_t;

static void bt_kvs_unlink_work(void *arg)
{
    bt_kvs_unlink_t *u = arg;

    bt_kvs_file_unlink(u->dir, u->hash, u->gen);
}

static void bt_kvs_unlink_done(void *arg, bt_status_t status)
{
    bt_kvs_unlink_t *u = arg;

    (void)status;
    u->s->tasks--;
    free(u);
}

void bt_kvs_unlink_async(bt_kvs_t *s, const uint8_t *hash, uint64_t gen)
{
    bt_kvs_unlink_t *u = malloc(sizeof(*u));

    if (u == NULL) {
        bt_kvs_file_unlink(s->disk_dir, hash, gen);
        return;
    }
    u->dir = s->disk_dir;
    u->s = s;
    memcpy(u->hash, hash, BT_KV_HASH_LEN);
    u->gen = gen;
    if (bt_tpool_submit(s->cfg.io, bt_kvs_unlink_work, bt_kvs_unlink_done,
                        u) != BT_OK) {
        /* the queue is full: a small synchronous delete beats a leak */
        bt_kvs_file_unlink(s->disk_dir, hash, gen);
        free(u);
        return;
    }
    s->tasks++;
}

bool bt_kvs_disk_make_room(bt_kvs_t *s, uint64_t bytes)
{
    while (s->disk_used + bytes > s->cfg.disk_bytes) {
        bt_kvs_entry_t *e = s->klru_tail;

        if (e == NULL) {
            return false;
        }
        s->st.disk.evictions++;
        if (e->slot < 0) {
            bt_kvs_entry_kill(s, e, true);
            continue;
        }
        /* it stays served from DRAM, no longer durable */
        bt_kvs_klru_remove(s, e);
        e->on_disk = false;
        s->disk_blocks--;
        s->disk_used -= s->file_bytes;
        bt_kvs_unlink_async(s, e->hash, e->gen);
    }
    return true;
}

/* ---- input checks shared by lookup and pin ---- */

bt_status_t bt_kvs_check_hashes(bt_kvs_t *s, size_t n, size_t n_tokens)
{
    if (n > BT_KV_MAX_HASHES) {
        bt_kvs_set_error(s, "%zu block hashes in one call (at most %u)", n,
                         BT_KV_MAX_HASHES);
        return BT_ERR_INVALID_ARG;
    }
    if (n_tokens != 0 &&
        (!s->geom_set || n_tokens != n * s->geom.block_size)) {
        bt_kvs_set_error(s, "%zu token ids for %zu blocks of %u tokens",
                         n_tokens, n, s->geom_set ? s->geom.block_size : 0);
        return BT_ERR_INVALID_ARG;
    }
    return BT_OK;
}

bool bt_kvs_check_tokens(bt_kvs_t *s, const bt_kvs_entry_t *e,
                         const uint32_t *tokens, size_t n_tokens, size_t i)
{
    uint32_t b = s->geom.block_size;

    if (n_tokens == 0) {
        return true;
    }
    if (!bt_kv_tokens_match(e->tokens, b, tokens + i * b, b)) {
        s->st.token_mismatches++;
        return false;
    }
    return true;
}

bt_status_t bt_kvs_lookup(bt_kvs_t *s, const uint8_t *hashes,
                          size_t n, const uint32_t *tokens, size_t n_tokens,
                          bt_kvs_block_info_t *info, size_t *n_matched_p)
{
    size_t i;

    s->err[0] = '\0';
    if (bt_kvs_check_hashes(s, n, n_tokens) != BT_OK) {
        return BT_ERR_INVALID_ARG;
    }
    for (i = 0; i < n; i++) {
        bt_kvs_entry_t *e = bt_kvs_find(s, (hashes + (i) * BT_KV_HASH_LEN));

        if (e == NULL || !bt_kvs_check_tokens(s, e, tokens, n_tokens, i)) {
            break;
        }
        if (info != NULL) {
            bt_kvs_entry_info(s, e, &info[i]);
        }
    }
    s->st.lookups++;
    s->st.lookup_hit_blocks += i;
    s->st.lookup_miss_blocks += n - i;
    *n_matched_p = i;
    return BT_OK;
}

/* ---- life ---- */

bt_status_t bt_kvs_create(const bt_kvs_config_t *cfg, bt_kvs_t **store_p)
{
    bt_kvs_t *s;
    bt_status_t st;

    if (cfg->io == NULL || (cfg->slab == NULL && cfg->slab_len > 0) ||
        (cfg->disk_dir != NULL && cfg->disk_bytes == 0) ||
        cfg->reserve_ms == 0 || cfg->pin_ms == 0) {
        bt_error("kvstore: bad config (io pool, slab, disk_bytes, reserve_ms, "
                 "pin_ms are required)");
        return BT_ERR_INVALID_ARG;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return BT_ERR_NO_MEMORY;
    }
    s->cfg = *cfg;
    if (s->cfg.max_pin_ms == 0) {
        s->cfg.max_pin_ms = 600000;
    }
    s->n_buckets = 1024;
    s->buckets = calloc(s->n_buckets, sizeof(*s->buckets));
    if (s->buckets == NULL) {
        st = BT_ERR_NO_MEMORY;
        goto err;
    }
    if (RAND_bytes((unsigned char *)&s->seed, sizeof(s->seed)) != 1) {
        s->seed = bt_now_ns();
    }
    s->next_id = 1;
    s->next_gen = 1;
    if (cfg->disk_dir != NULL) {
        s->disk_dir = strdup(cfg->disk_dir);
        s->cfg.disk_dir = s->disk_dir;
        if (s->disk_dir == NULL) {
            st = BT_ERR_NO_MEMORY;
            goto err;
        }
        if (mkdir(s->disk_dir, 0755) != 0 && errno != EEXIST) {
            bt_error("cannot create the disk tier folder %s: %s", s->disk_dir, bt_strerror(errno));
            st = BT_ERR_IO;
            goto err;
        }
        st = bt_kvs_rebuild(s);
        if (st != BT_OK) {
            goto err;
        }
    }
    /* blocks found on disk are listed by bt_kvs_foreach, not reported */
    s->events_on = true;
    *store_p = s;
    return BT_OK;
err:
    bt_kvs_destroy(s);
    return st;
}

void bt_kvs_destroy(bt_kvs_t *s)
{
    if (s == NULL) {
        return;
    }
    bt_kvs_pins_destroy(s);
    while (s->resvs != NULL) {
        bt_kvs_resv_t *r = s->resvs;

        s->resvs = r->next;
        free(r->hashes);
        free(r->parents);
        free(r->slots);
        free(r);
    }
    for (size_t i = 0; s->buckets != NULL && i < s->n_buckets; i++) {
        bt_kvs_entry_t *e = s->buckets[i], *next;

        for (; e != NULL; e = next) {
            next = e->hnext;
            bt_kvs_entry_free(s, e);
        }
    }
    free(s->buckets);
    free(s->free_slots);
    free(s->disk_dir);
    free(s);
}

size_t bt_kvs_foreach(const bt_kvs_t *s,
                      void (*cb)(void *arg, const bt_kvs_block_info_t *b),
                      void *arg)
{
    bt_kvs_block_info_t info;
    size_t n = 0;

    for (size_t i = 0; i < s->n_buckets; i++) {
        for (const bt_kvs_entry_t *e = s->buckets[i]; e != NULL; e = e->hnext) {
            if (e->dead) {
                continue;
            }
            bt_kvs_entry_info(s, e, &info);
            cb(arg, &info);
            n++;
        }
    }
    return n;
}

size_t bt_kvs_flush(bt_kvs_t *s)
{
    size_t n = 0;

    s->flushing = true;
    for (size_t i = 0; i < s->n_buckets; i++) {
        /* kill unlinks the entry from this bucket (and may free it) */
        while (s->buckets[i] != NULL) {
            bt_kvs_entry_kill(s, s->buckets[i], true);
            n++;
        }
    }
    s->flushing = false;
    bt_kvs_emit(s, BT_KVS_EVENT_CLEARED, BT_KVS_TIER_DRAM, NULL, NULL);
    bt_kvs_emit(s, BT_KVS_EVENT_CLEARED, BT_KVS_TIER_DISK, NULL, NULL);
    bt_info("flushed %zu blocks from both tiers", n);
    return n;
}

void bt_kvs_stats(const bt_kvs_t *s, bt_kvs_stats_t *stats_p)
{
    bt_kvs_stats_t st = s->st;

    st.dram.capacity_bytes = (uint64_t)s->cfg.slab_len;
    st.dram.used_bytes = (uint64_t)(s->n_slots - s->n_free) * s->block_bytes;
    st.dram.blocks = s->dram_blocks;
    st.disk.capacity_bytes = s->disk_dir != NULL ? s->cfg.disk_bytes : 0;
    st.disk.used_bytes = s->disk_used;
    st.disk.blocks = s->disk_blocks;
    st.active_pins = s->n_pins;
    st.active_reservations = s->n_resvs;
    *stats_p = st;
}
