/* Gets: pins (a pinned block is never evicted), promotion of disk-only
 * blocks into DRAM slots on a worker thread, unpins and expiry. */
#include "store_int.h"

#include "base/log.h"
#include "disk.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_kvs_entry_t *e;
    uint8_t         hash[BT_KV_HASH_LEN];
    void           *dst;
    bt_status_t     status;
    uint8_t         checksum[BT_KV_HASH_LEN];  /* from the file */
    uint32_t       *tokens;                     /* from the file */
} bt_kvs_load_t;

/* One pin call. It pins its prefix at once (nothing can evict it), reads
 * what is disk-only, and answers once no block of it is still loading
 * (some may be loaded by another call's read). */
struct bt_kvs_pinop {
    bt_kvs_t        *s;
    size_t           n;
    bt_kvs_entry_t **e;
    size_t           n_loads;
    bt_kvs_load_t   *loads;
    bool             task_pending;
    uint64_t         pin_ms;
    bt_kvs_pin_cb    cb;
    void            *arg;
    const char      *dir;
    uint64_t         block_bytes;
    bt_kvs_pinop_t  *next;
};

static void bt_kvs_pinop_free(bt_kvs_pinop_t *op)
{
    for (size_t i = 0; i < op->n_loads; i++) {
        free(op->loads[i].tokens);
    }
    free(op->loads);
    free(op->e);
    free(op);
}

static void bt_kvs_load_work(void *arg)
{
    bt_kvs_pinop_t *op = arg;

    for (size_t i = 0; i < op->n_loads; i++) {
        bt_kvs_load_t *l = &op->loads[i];
        char path[BT_KVS_PATH_MAX];
        bt_kvs_file_meta_t m;

        bt_kvs_file_path(op->dir, l->hash, path, sizeof(path));
        l->status = bt_kvs_file_read(path, l->dst, op->block_bytes, &m);
        if (l->status != BT_OK) {
            continue;
        }
        if (memcmp(m.hash, l->hash, BT_KV_HASH_LEN) != 0) {
            bt_warn("block file %s holds another hash", path);
            l->status = BT_ERR_CORRUPT;
            free(m.tokens);
            continue;
        }
        memcpy(l->checksum, m.checksum, BT_KV_HASH_LEN);
        l->tokens = m.tokens;
    }
}

/* Answers `op` if none of its blocks is loading; true when it did. */
static bool bt_kvs_pinop_try_finish(bt_kvs_t *s, bt_kvs_pinop_t *op)
{
    bt_kvs_pin_result_t res;
    bt_kvs_block_info_t *info = NULL;
    bt_kvs_pin_rec_t *rec = NULL;
    size_t k = 0;

    if (op->task_pending) {
        return false;
    }
    for (size_t i = 0; i < op->n; i++) {
        if (op->e[i]->loading) {
            return false;
        }
    }
    while (k < op->n && !op->e[k]->dead && op->e[k]->slot >= 0) {
        k++;
    }
    if (k > 0) {
        rec = calloc(1, sizeof(*rec));
        info = calloc(k, sizeof(*info));
        if (rec == NULL || info == NULL ||
            (rec->e = malloc(k * sizeof(*rec->e))) == NULL) {
            bt_error("out of memory answering a pin");
            free(rec);
            free(info);
            rec = NULL;
            info = NULL;
            k = 0;
        }
    }
    for (size_t i = k; i < op->n; i++) {
        bt_kvs_entry_unpin(s, op->e[i]);
    }
    memset(&res, 0, sizeof(res));
    if (k > 0) {
        rec->id = s->next_id++;
        rec->n = k;
        rec->expiry_ms = bt_kvs_now_ms(s) + op->pin_ms;
        memcpy(rec->e, op->e, k * sizeof(*rec->e));
        rec->next = s->pins;
        s->pins = rec;
        s->n_pins++;
        for (size_t i = 0; i < k; i++) {
            bt_kvs_entry_info(s, rec->e[i], &info[i]);
        }
        res.pin_id = rec->id;
        res.expiry_ms = rec->expiry_ms;
        s->st.gets += k;
    }
    res.n_pinned = k;
    res.blocks = info;
    op->cb(op->arg, BT_OK, &res);
    free(info);
    return true;
}

static void bt_kvs_pinops_progress(bt_kvs_t *s)
{
    bt_kvs_pinop_t **pp = &s->pinops;

    while (*pp != NULL) {
        bt_kvs_pinop_t *op = *pp;

        if (bt_kvs_pinop_try_finish(s, op)) {
            *pp = op->next;
            bt_kvs_pinop_free(op);
        } else {
            pp = &op->next;
        }
    }
}

static void bt_kvs_load_done(void *arg, bt_status_t status)
{
    bt_kvs_pinop_t *op = arg;
    bt_kvs_t *s = op->s;

    (void)status;
    s->tasks--;
    for (size_t i = 0; i < op->n_loads; i++) {
        bt_kvs_load_t *l = &op->loads[i];
        bt_kvs_entry_t *e = l->e;

        e->loading = false;
        if (l->status == BT_OK &&
            !bt_kv_tokens_match(e->tokens, s->geom.block_size, l->tokens,
                                s->geom.block_size)) {
            bt_warn("block file of a stored hash holds other token ids");
            l->status = BT_ERR_CORRUPT;
        }
        if (l->status == BT_OK && !e->dead) {
            /* the file is the reference now (a concurrent commit of the
             * same hash may have replaced it) */
            memcpy(e->checksum, l->checksum, BT_KV_HASH_LEN);
            s->dram_blocks++;
            continue;
        }
        bt_kvs_slot_put(s, e->slot);
        e->slot = -1;
        if (l->status == BT_ERR_CORRUPT || l->status == BT_ERR_TRUNCATED) {
            s->st.corrupt_files++;
        } else if (l->status != BT_OK) {
            bt_warn("cannot read a block back from disk: %s",
                    bt_status_str(l->status));
        }
        bt_kvs_entry_kill(s, e, true);
    }
    op->task_pending = false;
    bt_kvs_pinops_progress(s);
}

bt_status_t bt_kvs_pin(bt_kvs_t *s, const uint8_t *hashes,
                       size_t n, const uint32_t *tokens, size_t n_tokens,
                       uint64_t pin_ms, bt_kvs_pin_cb cb, void *arg)
{
    bt_kvs_pinop_t *op;
    size_t k = 0;

    s->err[0] = '\0';
    if (bt_kvs_check_hashes(s, n, n_tokens) != BT_OK) {
        return BT_ERR_INVALID_ARG;
    }
    if (s->n_pins >= BT_KVS_MAX_PINS) {
        bt_kvs_set_error(s, "%u pins held (the limit)", s->n_pins);
        return BT_ERR_EXHAUSTED;
    }
    op = calloc(1, sizeof(*op));
    if (op == NULL || (n > 0 && ((op->e = calloc(n, sizeof(*op->e))) == NULL ||
                                 (op->loads = calloc(n, sizeof(*op->loads))) == NULL))) {
        bt_kvs_set_error(s, "out of memory");
        if (op != NULL) {
            bt_kvs_pinop_free(op);
        }
        return BT_ERR_NO_MEMORY;
    }
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    op->dir = s->disk_dir;
    op->block_bytes = s->block_bytes;
    op->pin_ms = pin_ms == 0 ? s->cfg.pin_ms
                 : pin_ms > s->cfg.max_pin_ms ? s->cfg.max_pin_ms : pin_ms;
    /* in chain order: a block in DRAM is pinned as it is; a disk-only one
     * first gets a slot (evicting an unpinned block not in this prefix);
     * where none is left the prefix ends */
    for (; k < n; k++) {
        bt_kvs_entry_t *e = bt_kvs_find(s, hashes + k * BT_KV_HASH_LEN);
        int64_t slot;

        if (e == NULL || !bt_kvs_check_tokens(s, e, tokens, n_tokens, k)) {
            break;
        }
        if (e->slot < 0) {
            slot = bt_kvs_slot_take(s);
            if (slot < 0) {
                break;
            }
            e->slot = slot;
            e->loading = true;
            op->loads[op->n_loads].e = e;
            memcpy(op->loads[op->n_loads].hash, e->hash, BT_KV_HASH_LEN);
            op->loads[op->n_loads].dst = bt_kvs_slot_ptr(s, slot);
            op->n_loads++;
        }
        e->pins++;
        bt_kvs_entry_relink(s, e);
        op->e[k] = e;
    }
    op->n = k;
    op->task_pending = true;
    if (bt_tpool_submit(s->cfg.io, op->n_loads > 0 ? bt_kvs_load_work : NULL,
                        bt_kvs_load_done, op) != BT_OK) {
        for (size_t i = 0; i < op->n_loads; i++) {
            bt_kvs_entry_t *e = op->loads[i].e;

            e->loading = false;
            bt_kvs_slot_put(s, e->slot);
            e->slot = -1;
        }
        for (size_t i = 0; i < op->n; i++) {
            bt_kvs_entry_unpin(s, op->e[i]);
        }
        bt_kvs_pinop_free(op);
        bt_kvs_set_error(s, "the io queue is full");
        return BT_ERR_EXHAUSTED;
    }
    s->tasks++;
    s->st.pins++;
    s->st.pin_hit_dram_blocks += k - op->n_loads;
    s->st.pin_hit_disk_blocks += op->n_loads;
    s->st.pin_miss_blocks += n - k;
    op->next = s->pinops;
    s->pinops = op;
    return BT_IN_PROGRESS;
}

static void bt_kvs_pin_rec_release(bt_kvs_t *s, bt_kvs_pin_rec_t *rec)
{
    for (size_t i = 0; i < rec->n; i++) {
        bt_kvs_entry_unpin(s, rec->e[i]);
    }
    free(rec->e);
    free(rec);
    s->n_pins--;
}

bt_status_t bt_kvs_unpin(bt_kvs_t *s, uint64_t pin_id)
{
    bt_kvs_pin_rec_t **pp = &s->pins;

    s->err[0] = '\0';
    while (*pp != NULL && (*pp)->id != pin_id) {
        pp = &(*pp)->next;
    }
    if (*pp == NULL) {
        bt_kvs_set_error(s, "pin %llu is unknown or expired",
                         (unsigned long long)pin_id);
        return BT_ERR_NOT_FOUND;
    }
    {
        bt_kvs_pin_rec_t *rec = *pp;

        *pp = rec->next;
        bt_kvs_pin_rec_release(s, rec);
    }
    return BT_OK;
}

void bt_kvs_expire(bt_kvs_t *s)
{
    uint64_t now = bt_kvs_now_ms(s);
    bt_kvs_pin_rec_t **pp = &s->pins;

    while (*pp != NULL) {
        bt_kvs_pin_rec_t *rec = *pp;

        if (rec->expiry_ms <= now) {
            *pp = rec->next;
            bt_debug("pin %llu expired", (unsigned long long)rec->id);
            bt_kvs_pin_rec_release(s, rec);
        } else {
            pp = &rec->next;
        }
    }
    bt_kvs_resvs_expire(s, now);
}

void bt_kvs_pins_destroy(bt_kvs_t *s)
{
    while (s->pins != NULL) {
        bt_kvs_pin_rec_t *rec = s->pins;

        s->pins = rec->next;
        bt_kvs_pin_rec_release(s, rec);
    }
    while (s->pinops != NULL) {
        bt_kvs_pinop_t *op = s->pinops;

        s->pinops = op->next;
        for (size_t i = 0; i < op->n; i++) {
            op->e[i]->loading = false;
            bt_kvs_entry_unpin(s, op->e[i]);
        }
        bt_kvs_pinop_free(op);
    }
}
