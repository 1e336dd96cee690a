/* What only kvstore/store/ uses: entries, reservations, pins, the store. */
#ifndef BT_KVS_STORE_INT_H
#define BT_KVS_STORE_INT_H

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct bt_kvs_entry bt_kvs_entry_t;

/* A committed block. It is in the DRAM LRU when it has a slot and in the
 * disk LRU when it has a file, in both cases only while unpinned, not
 * loading and not dead (bt_kvs_entry_relink keeps that true). */
struct bt_kvs_entry {
    uint8_t          hash[BT_KV_HASH_LEN];
    uint8_t          parent[BT_KV_HASH_LEN];
    uint8_t          checksum[BT_KV_HASH_LEN];
    uint32_t        *tokens;        /* block_size ids */
    bt_kvs_entry_t  *hnext;         /* hash bucket chain */
    bt_kvs_entry_t  *dprev, *dnext; /* DRAM LRU (head = most recent) */
    bt_kvs_entry_t  *kprev, *knext; /* disk LRU */
    int64_t          slot;          /* DRAM slot, -1 = disk only */
    uint64_t         gen;           /* generation of its file */
    uint64_t         mtime;         /* file age order at rebuild */
    uint32_t         pins;          /* pin records (and pin ops) holding it */
    bool             on_disk;
    bool             loading;       /* being read from disk into its slot */
    bool             dead;          /* unindexed; freed when unreferenced */
    bool             in_dlru, in_klru;
};

typedef struct bt_kvs_resv {
    uint64_t            id;
    uint64_t            expiry_ms;
    size_t              n;
    uint8_t           (*hashes)[BT_KV_HASH_LEN];
    uint8_t           (*parents)[BT_KV_HASH_LEN];
    int64_t            *slots;      /* -1: already stored, not reserved */
    bool                committing;
    bool                landed;
    struct bt_kvs_resv *next;
} bt_kvs_resv_t;

typedef struct bt_kvs_pin_rec {
    uint64_t               id;
    uint64_t               expiry_ms;
    size_t                 n;
    bt_kvs_entry_t       **e;
    struct bt_kvs_pin_rec *next;
} bt_kvs_pin_rec_t;

typedef struct bt_kvs_pinop bt_kvs_pinop_t;

struct bt_kvs {
    bt_kvs_config_t   cfg;
    char             *disk_dir;
    char              err[512];

    bool              geom_set;
    bt_kv_geom_t      geom;
    uint64_t          block_bytes;
    uint64_t          file_bytes;   /* one block's file */

    /* DRAM slab */
    uint32_t          n_slots;
    uint32_t         *free_slots;   /* a stack */
    uint32_t          n_free;

    /* index */
    bt_kvs_entry_t  **buckets;
    size_t            n_buckets;    /* power of two */
    size_t            n_entries;
    uint64_t          seed;
    bt_kvs_entry_t   *dlru_head, *dlru_tail;
    bt_kvs_entry_t   *klru_head, *klru_tail;
    size_t            n_dlru;
    uint64_t          dram_blocks;  /* entries with a committed slot */
    uint64_t          disk_blocks;
    uint64_t          disk_used;    /* bytes of files, written or being written */

    bt_kvs_resv_t    *resvs;
    uint32_t          n_resvs;
    bt_kvs_pin_rec_t *pins;
    uint32_t          n_pins;
    bt_kvs_pinop_t   *pinops;       /* pins waiting for disk reads */
    uint64_t          next_id;
    uint64_t          next_gen;
    uint32_t          tasks;        /* io tasks whose done has not run */

    bt_kvs_stats_t    st;
    bool              events_on;    /* after the rebuild at create */
    bool              flushing;     /* no REMOVED events during a flush */
};

/* store.c */
/* Reports a change to cfg.event_cb (when set and events are on). */
void bt_kvs_emit(bt_kvs_t *s, bt_kvs_event_type_t type, bt_kvs_tier_t tier,
                 const uint8_t *hash, const uint8_t *parent);
void bt_kvs_set_error(bt_kvs_t *s, const char *fmt, ...);
bt_kvs_entry_t *bt_kvs_find(const bt_kvs_t *s, const uint8_t *hash);
bt_status_t bt_kvs_insert(bt_kvs_t *s, bt_kvs_entry_t *e);
/* Unindexes, frees the slot, deletes the file (when `unlink_file`);
 * frees the entry unless something still references it. */
void bt_kvs_entry_kill(bt_kvs_t *s, bt_kvs_entry_t *e, bool unlink_file);
void bt_kvs_entry_free(bt_kvs_t *s, bt_kvs_entry_t *e);
void bt_kvs_entry_relink(bt_kvs_t *s, bt_kvs_entry_t *e);
void bt_kvs_entry_touch(bt_kvs_t *s, bt_kvs_entry_t *e);
void bt_kvs_entry_unpin(bt_kvs_t *s, bt_kvs_entry_t *e);
void bt_kvs_entry_info(const bt_kvs_t *s, const bt_kvs_entry_t *e,
                       bt_kvs_block_info_t *info);
/* A free slot, evicting the DRAM LRU's oldest if needed; -1 if none. */
int64_t bt_kvs_slot_take(bt_kvs_t *s);
void bt_kvs_slot_put(bt_kvs_t *s, int64_t slot);
void *bt_kvs_slot_ptr(const bt_kvs_t *s, int64_t slot);
/* Makes `bytes` room on disk by evicting its LRU; false if impossible. */
bool bt_kvs_disk_make_room(bt_kvs_t *s, uint64_t bytes);
void bt_kvs_unlink_async(bt_kvs_t *s, const uint8_t *hash, uint64_t gen);
bt_status_t bt_kvs_set_geometry(bt_kvs_t *s, const bt_kv_geom_t *g,
                                uint64_t block_bytes);
bool bt_kvs_check_tokens(bt_kvs_t *s, const bt_kvs_entry_t *e,
                         const uint32_t *tokens, size_t n_tokens, size_t i);
bt_status_t bt_kvs_check_hashes(bt_kvs_t *s, size_t n, size_t n_tokens);

/* store_disk.c */
bt_status_t bt_kvs_rebuild(bt_kvs_t *s);

/* store_put.c */
void bt_kvs_resvs_expire(bt_kvs_t *s, uint64_t now);

/* store_pin.c */
void bt_kvs_pins_destroy(bt_kvs_t *s);

#endif
