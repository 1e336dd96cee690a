/* The write guard of a region that other processes copy into directly
 * (shm: the region is mapped into the writer, ucp_rkey_ptr): which lease
 * may write each unit of the region, and which lease each writer process
 * is copying for right now. It lives in the region's own shared memory,
 * after the data, so both sides see it without a message.
 *
 * Why: a receiver cannot refuse a direct copy the way it refuses a data
 * message, and a writer process stopped inside its copy (SIGSTOP, a
 * stall) finishes that copy whenever it resumes. So the two sides follow
 * a store-then-load handshake, both sequentially consistent:
 *   writer:   slot.lease = L;  check owner[unit] == L for the slice;
 *             copy;  slot.lease = 0
 *   receiver: owner[unit] = 0 (the lease ended);  later, before the
 *             units are reused: a live writer's slot.lease == L -> wait
 * Either the writer sees the owner cleared and copies nothing, or the
 * receiver sees the writer inside its copy and keeps the units until the
 * writer leaves it (or is dead). docs/internals/node.md "Lease fence".
 *
 * Layout inside the registered memory (host words), from data_len
 * rounded up to 64 bytes, past the bytes the descriptor names:
 *   header (64 bytes) | BT_XFER_GUARD_SLOTS slots (32 bytes each) |
 *   n_units owner words (8 bytes each)
 * A writer checks every field against what it has mapped before use:
 * the memory is another process's. */
#ifndef BT_XFER_GUARD_H
#define BT_XFER_GUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BT_XFER_GUARD_MAGIC   0x4452415547585442ull   /* "BTXGUARD" */
#define BT_XFER_GUARD_SLOTS   64u
#define BT_XFER_GUARD_ALIGN   64u

/* A writer process's place: who it is (pid and start time, so a reused
 * pid is not taken for the dead writer) and the lease it copies for. */
typedef struct {
    _Atomic uint64_t pid;      /* 0: free */
    _Atomic uint64_t start;    /* start time in clock ticks after boot */
    _Atomic uint64_t lease;    /* 0: not inside a copy */
    uint64_t         pad;
} bt_xfer_guard_slot_t;

typedef struct {
    uint64_t magic;
    uint64_t unit_bytes;   /* unit of offset o: (o / unit_bytes) % n_units */
    uint64_t n_units;
    uint64_t data_len;     /* slices must end here */
    uint64_t pad[4];
    bt_xfer_guard_slot_t slots[BT_XFER_GUARD_SLOTS];
    _Atomic uint64_t owner[];   /* per unit: the lease that may write it */
} bt_xfer_guard_t;

/* Where the guard of a region of `data_len` data bytes starts. */
size_t bt_xfer_guard_offset(size_t data_len);
/* Bytes a region of `data_len` data bytes needs in all for a guard of
 * `n_units` units (the data, then the guard). */
size_t bt_xfer_guard_region_len(size_t data_len, uint32_t n_units);
/* Lays the guard out after the data at `base` (every unit unowned,
 * every slot free); returns it. */
bt_xfer_guard_t *bt_xfer_guard_init(void *base, size_t data_len,
                                    uint64_t unit_bytes, uint32_t n_units);

/* A guard's shape as a writer read and checked it: the writer keeps
 * this copy, since the header lies in another process's memory and could
 * change under it. */
typedef struct {
    uint64_t unit_bytes;   /* > 0 */
    uint64_t n_units;      /* 1..UINT32_MAX */
    uint64_t data_len;
} bt_xfer_guard_geom_t;

/* Reads the shape of `g`, found after `data_len` data bytes of another
 * process's region, into *geo_p: false when its magic, unit, unit count
 * or data length are not a guard's. The caller then checks that the
 * whole table (bt_xfer_guard_region_len) is mapped. */
bool bt_xfer_guard_geom_read(const bt_xfer_guard_t *g, size_t data_len,
                             bt_xfer_guard_geom_t *geo_p);

/* Receiver: unit `unit` takes writes for `lease` (0: for none). */
void bt_xfer_guard_set(bt_xfer_guard_t *g, uint64_t unit, uint64_t lease);
/* The lease unit `unit` takes writes for (0: none, or past the table). */
uint64_t bt_xfer_guard_owner(const bt_xfer_guard_t *g, uint64_t unit);
/* True when every unit of [off, off + len) takes writes for `lease` (not
 * 0) and the range ends inside the data. The receiver's form, reading
 * the shape from its own guard: */
bool bt_xfer_guard_admits(const bt_xfer_guard_t *g, uint64_t off,
                          uint64_t len, uint64_t lease);
/* the writer's, with the shape it validated when it mapped the guard. */
bool bt_xfer_guard_admits_as(const bt_xfer_guard_t *g,
                             const bt_xfer_guard_geom_t *geo, uint64_t off,
                             uint64_t len, uint64_t lease);
/* Receiver: true while a live writer is inside a copy for `lease`; its
 * pid in *pid_p. Slots of dead writers are cleared on the way. */
bool bt_xfer_guard_busy(bt_xfer_guard_t *g, uint64_t lease, uint64_t *pid_p);

/* Writer: a slot for this process (reusing `hint` when it still is
 * ours, taking a free one, or one of a dead process), or -1 when all
 * are held by live writers. */
int bt_xfer_guard_claim(bt_xfer_guard_t *g, int hint);
void bt_xfer_guard_release(bt_xfer_guard_t *g, int slot);
/* Writer: entering and leaving a copy for `lease` (enter is the
 * handshake's store; check each slice with bt_xfer_guard_admits after
 * it). */
void bt_xfer_guard_enter(bt_xfer_guard_t *g, int slot, uint64_t lease);
void bt_xfer_guard_leave(bt_xfer_guard_t *g, int slot);

/* Whether process `pid` started at `start` still runs (also when it is
 * stopped). */
bool bt_xfer_guard_alive(uint64_t pid, uint64_t start);
/* This process's start time (clock ticks after boot), 0 if unknown. */
uint64_t bt_xfer_guard_proc_start(uint64_t pid);

#endif
