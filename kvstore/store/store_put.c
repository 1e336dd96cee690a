/* Puts: reservations (slots invisible to lookups), commits (checksum of
 * what landed in the slot and the hash chain, write-through to disk, then
 * publish), aborts and expiry. */
#include "store_int.h"

#include "base/log.h"
#include "base/sha256.h"
#include "disk.h"

#include <stdlib.h>
#include <string.h>

static bt_kvs_resv_t *bt_kvs_resv_find(const bt_kvs_t *s, uint64_t id)
{
    bt_kvs_resv_t *r = s->resvs;

    while (r != NULL && r->id != id) {
        r = r->next;
    }
    return r;
}

static void bt_kvs_resv_free(bt_kvs_t *s, bt_kvs_resv_t *r, bool free_slots)
{
    bt_kvs_resv_t **pp = &s->resvs;

    while (*pp != NULL && *pp != r) {
        pp = &(*pp)->next;
    }
    if (*pp == r) {
        *pp = r->next;
        s->n_resvs--;
    }
    for (size_t i = 0; free_slots && i < r->n; i++) {
        bt_kvs_slot_put(s, r->slots[i]);
    }
    free(r->hashes);
    free(r->parents);
    free(r->slots);
    free(r);
}

bt_status_t bt_kvs_reserve(bt_kvs_t *s, const bt_kv_geom_t *g,
                           uint64_t block_bytes,
                           const uint8_t parent[BT_KV_HASH_LEN],
                           const uint8_t *hashes, size_t n,
                           bt_kvs_slot_t *slots, uint64_t *id_p,
                           uint64_t *expiry_ms_p)
{
    bt_kvs_entry_t **held = NULL;
    bt_kvs_resv_t *r = NULL;
    size_t need = 0, n_held = 0;
    bt_status_t st;

    s->err[0] = '\0';
    if (n == 0 || n > BT_KV_MAX_HASHES) {
        bt_kvs_set_error(s, "%zu block hashes to reserve (1 to %u)", n,
                         BT_KV_MAX_HASHES);
        return BT_ERR_INVALID_ARG;
    }
    st = bt_kvs_set_geometry(s, g, block_bytes);
    if (st != BT_OK) {
        return st;
    }
    if (block_bytes != s->block_bytes) {
        bt_kvs_set_error(s, "block_bytes %llu differs from the store's slot "
                         "size %llu", (unsigned long long)block_bytes,
                         (unsigned long long)s->block_bytes);
        return BT_ERR_INVALID_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (memcmp((hashes + (i) * BT_KV_HASH_LEN), (hashes + (j) * BT_KV_HASH_LEN), BT_KV_HASH_LEN) == 0) {
                bt_kvs_set_error(s, "block hash %zu repeats hash %zu", i, j);
                return BT_ERR_INVALID_ARG;
            }
        }
    }
    if (s->n_resvs >= BT_KVS_MAX_RESERVATIONS) {
        bt_kvs_set_error(s, "%u reservations open (the limit)", s->n_resvs);
        return BT_ERR_EXHAUSTED;
    }
    r = calloc(1, sizeof(*r));
    held = calloc(n, sizeof(*held));
    if (r == NULL || held == NULL ||
        (r->hashes = malloc(n * BT_KV_HASH_LEN)) == NULL ||
        (r->parents = malloc(n * BT_KV_HASH_LEN)) == NULL ||
        (r->slots = malloc(n * sizeof(*r->slots))) == NULL) {
        bt_kvs_set_error(s, "out of memory");
        st = BT_ERR_NO_MEMORY;
        goto err;
    }
    /* blocks already stored are held while slots are taken, so making
     * room cannot evict what this answer calls stored */
    for (size_t i = 0; i < n; i++) {
        bt_kvs_entry_t *e = bt_kvs_find(s, (hashes + (i) * BT_KV_HASH_LEN));

        if (e != NULL) {
            e->pins++;
            bt_kvs_entry_relink(s, e);
            held[n_held++] = e;
        } else {
            need++;
        }
    }
    if (need > (size_t)s->n_free + s->n_dlru) {
        bt_kvs_set_error(s, "cannot reserve %zu slots: %u free and %zu "
                         "evictable of %u (the rest is pinned or reserved)",
                         need, s->n_free, s->n_dlru, s->n_slots);
        st = BT_ERR_EXHAUSTED;
        goto err;
    }
    for (size_t i = 0; i < n; i++) {
        bool stored = bt_kvs_find(s, (hashes + (i) * BT_KV_HASH_LEN)) != NULL;

        memcpy(r->hashes[i], (hashes + (i) * BT_KV_HASH_LEN), BT_KV_HASH_LEN);
        memcpy(r->parents[i], i == 0 ? parent : (hashes + (i - 1) * BT_KV_HASH_LEN), BT_KV_HASH_LEN);
        r->slots[i] = stored ? -1 : bt_kvs_slot_take(s);
        slots[i].stored = stored;
        slots[i].offset = stored ? 0 : (uint64_t)r->slots[i] * s->block_bytes;
        slots[i].length = stored ? 0 : (uint32_t)s->block_bytes;
    }
    for (size_t i = 0; i < n_held; i++) {
        bt_kvs_entry_unpin(s, held[i]);
    }
    free(held);
    r->n = n;
    r->id = s->next_id++;
    r->expiry_ms = bt_kvs_now_ms(s) + s->cfg.reserve_ms;
    r->next = s->resvs;
    s->resvs = r;
    s->n_resvs++;
    *id_p = r->id;
    *expiry_ms_p = r->expiry_ms;
    return BT_OK;
err:
    for (size_t i = 0; i < n_held; i++) {
        bt_kvs_entry_unpin(s, held[i]);
    }
    free(held);
    if (r != NULL) {
        free(r->hashes);
        free(r->parents);
        free(r->slots);
        free(r);
    }
    return st;
}

bt_status_t bt_kvs_reservation_landed(bt_kvs_t *s, uint64_t id)
{
    bt_kvs_resv_t *r = bt_kvs_resv_find(s, id);

    if (r == NULL) {
        return BT_ERR_NOT_FOUND;
    }
    r->landed = true;
    return BT_OK;
}

bool bt_kvs_reservation_is_landed(const bt_kvs_t *s, uint64_t id)
{
    const bt_kvs_resv_t *r = bt_kvs_resv_find(s, id);

    return r != NULL && r->landed;
}

/* The live reservation `id` not yet being committed, or NULL with the
 * error set and *st_p = NOT_FOUND / EXISTS (abort and commit alike). */
static bt_kvs_resv_t *bt_kvs_resv_idle(bt_kvs_t *s, uint64_t id,
                                       bt_status_t *st_p)
{
    bt_kvs_resv_t *r = bt_kvs_resv_find(s, id);

    s->err[0] = '\0';
    if (r == NULL) {
        bt_kvs_set_error(s, "reservation %llu is unknown or expired",
                         (unsigned long long)id);
        *st_p = BT_ERR_NOT_FOUND;
        return NULL;
    }
    if (r->committing) {
        bt_kvs_set_error(s, "reservation %llu is already being committed",
                         (unsigned long long)id);
        *st_p = BT_ERR_EXISTS;
        return NULL;
    }
    return r;
}

bt_status_t bt_kvs_abort(bt_kvs_t *s, uint64_t id)
{
    bt_status_t st;
    bt_kvs_resv_t *r = bt_kvs_resv_idle(s, id, &st);

    if (r == NULL) {
        return st;
    }
    bt_kvs_resv_free(s, r, true);
    return BT_OK;
}

/* ---- commit ---- */

typedef struct {
    size_t    idx;          /* in the reservation */
    uint32_t *tokens;
    uint8_t   checksum[BT_KV_HASH_LEN];
    uint64_t  gen;
    bool      chain_ok;     /* hash == sha256(parent, tokens) */
    bool      write;        /* disk room was made: write it */
    bool      ok;           /* the slot's bytes match the checksum */
    bool      durable;      /* written and fsync'ed */
} bt_kvs_citem_t;

typedef struct {
    bt_kvs_t        *s;
    bt_kvs_resv_t   *r;
    size_t           n;
    bt_kvs_citem_t  *items;
    uint32_t         pre_stored;  /* listed blocks that were already stored */
    bt_kvs_commit_cb cb;
    void            *arg;
    /* copied for the worker: the store is not touched off the loop */
    const char      *dir;
    uint8_t         *slab;
    uint64_t         block_bytes;
    bt_kv_geom_t    geom;
} bt_kvs_commit_t;

static void bt_kvs_commit_work(void *arg)
{
    bt_kvs_commit_t *c = arg;
    bt_kvs_file_meta_t *m = NULL;
    const void **data = NULL;
    size_t *which = NULL, k = 0;
    bool *ok = NULL;

    if (c->n > 0) {
        m = calloc(c->n, sizeof(*m));
        data = calloc(c->n, sizeof(*data));
        which = calloc(c->n, sizeof(*which));
        ok = calloc(c->n, sizeof(*ok));
    }
    for (size_t i = 0; i < c->n; i++) {
        bt_kvs_citem_t *it = &c->items[i];
        const uint8_t *bytes = c->slab +
                               (uint64_t)c->r->slots[it->idx] * c->block_bytes;
        uint8_t sum[BT_KV_HASH_LEN];

        if (!it->chain_ok || bt_sha256(bytes, c->block_bytes, sum) != BT_OK ||
            memcmp(sum, it->checksum, BT_KV_HASH_LEN) != 0) {
            continue;
        }
        it->ok = true;
        if (!it->write || m == NULL || data == NULL || which == NULL ||
            ok == NULL) {
            continue;   /* out of memory: kept in dram only */
        }
        memcpy(m[k].hash, c->r->hashes[it->idx], BT_KV_HASH_LEN);
        memcpy(m[k].parent, c->r->parents[it->idx], BT_KV_HASH_LEN);
        memcpy(m[k].checksum, it->checksum, BT_KV_HASH_LEN);
        m[k].geom = c->geom;
        m[k].data_len = c->block_bytes;
        m[k].gen = it->gen;
        m[k].n_tokens = c->geom.block_size;
        m[k].tokens = it->tokens;
        data[k] = bytes;
        which[k++] = i;
    }
    /* every block of the commit in one group: two flushes, not two each */
    if (k > 0) {
        bt_kvs_files_write(c->dir, m, data, k, ok);
        for (size_t j = 0; j < k; j++) {
            c->items[which[j]].durable = ok[j];
        }
    }
    free(m);
    free(data);
    free(which);
    free(ok);
}

/* Publishes one verified block; `it->tokens` moves into the entry. */
static bool bt_kvs_publish(bt_kvs_t *s, bt_kvs_resv_t *r, bt_kvs_citem_t *it)
{
    bt_kvs_entry_t *e = bt_kvs_find(s, r->hashes[it->idx]);

    if (e != NULL) {
        /* a concurrent commit of the same hash won: keep that entry, but
         * our rename replaced its file, so adopt the file's generation */
        bt_kvs_slot_put(s, r->slots[it->idx]);
        if (it->durable) {
            if (e->on_disk) {
                s->disk_used -= s->file_bytes;
            } else {
                e->on_disk = true;
                s->disk_blocks++;
            }
            e->gen = it->gen;
            bt_kvs_entry_relink(s, e);
        }
        return true;
    }
    e = calloc(1, sizeof(*e));
    if (e != NULL) {
        memcpy(e->hash, r->hashes[it->idx], BT_KV_HASH_LEN);
    }
    if (e == NULL || bt_kvs_insert(s, e) != BT_OK) {
        bt_error("out of memory publishing a block");
        free(e);
        bt_kvs_slot_put(s, r->slots[it->idx]);
        if (it->durable) {
            s->disk_used -= s->file_bytes;
            bt_kvs_unlink_async(s, r->hashes[it->idx], it->gen);
        }
        return false;
    }
    memcpy(e->parent, r->parents[it->idx], BT_KV_HASH_LEN);
    memcpy(e->checksum, it->checksum, BT_KV_HASH_LEN);
    e->tokens = it->tokens;
    it->tokens = NULL;
    e->slot = r->slots[it->idx];
    e->gen = it->gen;
    e->on_disk = it->durable;
    s->dram_blocks++;
    if (e->on_disk) {
        s->disk_blocks++;
    }
    bt_kvs_entry_relink(s, e);
    bt_kvs_emit(s, BT_KVS_EVENT_STORED, BT_KVS_TIER_DRAM, e->hash, e->parent);
    return true;
}

static void bt_kvs_commit_done(void *arg, bt_status_t status)
{
    bt_kvs_commit_t *c = arg;
    bt_kvs_t *s = c->s;
    bt_kvs_resv_t *r = c->r;
    bt_kvs_commit_result_t res = { c->pre_stored, 0, 0 };

    (void)status;
    s->tasks--;
    for (size_t i = 0; i < c->n; i++) {
        bt_kvs_citem_t *it = &c->items[i];

        if (it->write && !it->durable) {
            s->disk_used -= s->file_bytes;
            if (it->ok) {
                s->st.disk_errors++;
            }
        }
        if (it->ok && bt_kvs_publish(s, r, it)) {
            res.committed++;
            if (it->durable) {
                res.durable++;
            }
            s->st.puts++;
        } else if (!it->ok) {
            bt_kvs_slot_put(s, r->slots[it->idx]);
            res.rejected++;
            s->st.commit_rejected++;
        }
        r->slots[it->idx] = -1;
        free(it->tokens);
    }
    if (res.rejected > 0) {
        bt_warn("reservation %llu: %u of %zu blocks rejected (checksum or "
                "hash chain mismatch)", (unsigned long long)r->id,
                res.rejected, c->n);
    }
    bt_kvs_resv_free(s, r, true);
    c->cb(c->arg, BT_OK, &res);
    free(c->items);
    free(c);
}

bt_status_t bt_kvs_commit(bt_kvs_t *s, uint64_t id,
                          const bt_kvs_commit_block_t *blocks, size_t n,
                          bt_kvs_commit_cb cb, void *arg)
{
    bt_status_t st = BT_ERR_INVALID_ARG;
    bt_kvs_resv_t *r = bt_kvs_resv_idle(s, id, &st);
    bt_kvs_commit_t *c = NULL;
    bool *seen = NULL;
    size_t k = 0;

    if (r == NULL) {
        return st;
    }
    st = BT_ERR_INVALID_ARG;
    if (n > r->n) {
        bt_kvs_set_error(s, "%zu blocks committed, %zu reserved", n, r->n);
        return BT_ERR_INVALID_ARG;
    }
    c = calloc(1, sizeof(*c));
    seen = calloc(r->n, sizeof(*seen));
    if (c == NULL || seen == NULL ||
        (n > 0 && (c->items = calloc(n, sizeof(*c->items))) == NULL)) {
        bt_kvs_set_error(s, "out of memory");
        st = BT_ERR_NO_MEMORY;
        goto err;
    }
    for (size_t i = 0; i < n; i++) {
        const bt_kvs_commit_block_t *b = &blocks[i];
        size_t idx = 0;

        while (idx < r->n && memcmp(r->hashes[idx], b->hash, BT_KV_HASH_LEN) != 0) {
            idx++;
        }
        if (idx == r->n) {
            bt_kvs_set_error(s, "committed block %zu is not in reservation "
                             "%llu", i, (unsigned long long)id);
            goto err;
        }
        if (seen[idx]) {
            bt_kvs_set_error(s, "committed block %zu is listed twice", i);
            goto err;
        }
        seen[idx] = true;
        if (b->n_tokens != s->geom.block_size) {
            bt_kvs_set_error(s, "committed block %zu has %u token ids, the "
                             "block size is %u", i, b->n_tokens,
                             s->geom.block_size);
            goto err;
        }
        if (r->slots[idx] < 0) {
            c->pre_stored++;   /* it was stored at reserve time */
            continue;
        }
        bt_kvs_citem_t *it = &c->items[k++];
        uint8_t h[BT_KV_HASH_LEN];

        it->idx = idx;
        it->tokens = malloc(4u * b->n_tokens);
        if (it->tokens == NULL) {
            st = BT_ERR_NO_MEMORY;
            goto err;
        }
        memcpy(it->tokens, b->tokens, 4u * b->n_tokens);
        memcpy(it->checksum, b->checksum, BT_KV_HASH_LEN);
        it->chain_ok = bt_kv_hash_block(r->parents[idx], b->tokens,
                                        b->n_tokens, h) == BT_OK &&
                       memcmp(h, b->hash, BT_KV_HASH_LEN) == 0;
    }
    c->n = k;
    /* room on disk is made (and counted) before the writes start */
    for (size_t i = 0; s->disk_dir != NULL && i < k; i++) {
        bt_kvs_citem_t *it = &c->items[i];

        if (!it->chain_ok) {
            continue;
        }
        it->gen = s->next_gen++;
        if (bt_kvs_disk_make_room(s, s->file_bytes)) {
            it->write = true;
            s->disk_used += s->file_bytes;
        } else {
            bt_warn("disk tier full of pinned blocks: block kept in dram only");
        }
    }
    c->s = s;
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    c->dir = s->disk_dir;
    c->slab = s->cfg.slab;
    c->block_bytes = s->block_bytes;
    c->geom = s->geom;
    r->committing = true;
    st = bt_tpool_submit(s->cfg.io, bt_kvs_commit_work, bt_kvs_commit_done, c);
    if (st != BT_OK) {
        r->committing = false;
        for (size_t i = 0; i < k; i++) {
            if (c->items[i].write) {
                s->disk_used -= s->file_bytes;
            }
        }
        bt_kvs_set_error(s, "the io queue is full");
        st = BT_ERR_EXHAUSTED;
        goto err;
    }
    s->tasks++;
    free(seen);
    return BT_IN_PROGRESS;
err:
    if (c != NULL) {
        for (size_t i = 0; i < k; i++) {
            free(c->items[i].tokens);
        }
        free(c->items);
    }
    free(c);
    free(seen);
    return st;
}

void bt_kvs_resvs_expire(bt_kvs_t *s, uint64_t now)
{
    bt_kvs_resv_t *r = s->resvs, *next;

    for (; r != NULL; r = next) {
        next = r->next;
        if (!r->committing && r->expiry_ms <= now) {
            bt_debug("reservation %llu expired", (unsigned long long)r->id);
            bt_kvs_resv_free(s, r, true);
        }
    }
}
