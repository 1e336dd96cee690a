/* The write guard of a directly mapped region (guard.h). */
#include "guard.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static size_t align_up(size_t n)
{
    return (n + BT_XFER_GUARD_ALIGN - 1) & ~(size_t)(BT_XFER_GUARD_ALIGN - 1);
}

size_t bt_xfer_guard_offset(size_t data_len)
{
    return align_up(data_len);
}

size_t bt_xfer_guard_region_len(size_t data_len, uint32_t n_units)
{
    return align_up(data_len) + sizeof(bt_xfer_guard_t) +
           (size_t)n_units * sizeof(uint64_t);
}

bt_xfer_guard_t *bt_xfer_guard_init(void *base, size_t data_len,
                                    uint64_t unit_bytes, uint32_t n_units)
{
    bt_xfer_guard_t *g =
        (bt_xfer_guard_t *)((uint8_t *)base + bt_xfer_guard_offset(data_len));

    memset(g, 0, sizeof(*g) + (size_t)n_units * sizeof(uint64_t));
    g->unit_bytes = unit_bytes;
    g->n_units = n_units;
    g->data_len = data_len;
    g->magic = BT_XFER_GUARD_MAGIC;
    atomic_thread_fence(memory_order_seq_cst);
    return g;
}

bool bt_xfer_guard_geom_read(const bt_xfer_guard_t *g, size_t data_len,
                             bt_xfer_guard_geom_t *geo_p)
{
    /* each field read once: the memory is another process's */
    const uint64_t magic = g->magic;
    const bt_xfer_guard_geom_t geo = {g->unit_bytes, g->n_units, g->data_len};

    if (magic != BT_XFER_GUARD_MAGIC || geo.unit_bytes == 0 ||
        geo.n_units == 0 || geo.n_units > UINT32_MAX ||
        geo.data_len != data_len) {
        return false;
    }
    *geo_p = geo;
    return true;
}

void bt_xfer_guard_set(bt_xfer_guard_t *g, uint64_t unit, uint64_t lease)
{
    if (unit < g->n_units) {
        atomic_store(&g->owner[unit], lease);
    }
}

uint64_t bt_xfer_guard_owner(const bt_xfer_guard_t *g, uint64_t unit)
{
    return unit < g->n_units ?
           atomic_load((_Atomic uint64_t *)&g->owner[unit]) : 0;
}

bool bt_xfer_guard_admits_as(const bt_xfer_guard_t *g,
                             const bt_xfer_guard_geom_t *geo, uint64_t off,
                             uint64_t len, uint64_t lease)
{
    uint64_t first, last;

    if (lease == 0 || off > geo->data_len || len > geo->data_len - off) {
        return false;
    }
    if (len == 0) {
        return true;
    }
    first = off / geo->unit_bytes;
    last = (off + len - 1) / geo->unit_bytes;
    for (uint64_t i = first; i <= last; i++) {
        /* seq_cst: the load the writer's enter store must precede */
        if (atomic_load((_Atomic uint64_t *)&g->owner[i % geo->n_units]) !=
            lease) {
            return false;
        }
    }
    return true;
}

bool bt_xfer_guard_admits(const bt_xfer_guard_t *g, uint64_t off,
                          uint64_t len, uint64_t lease)
{
    const bt_xfer_guard_geom_t geo = {g->unit_bytes, g->n_units, g->data_len};

    return bt_xfer_guard_admits_as(g, &geo, off, len, lease);
}

uint64_t bt_xfer_guard_proc_start(uint64_t pid)
{
    char path[64], buf[1024];
    unsigned long long start = 0;
    FILE *f;
    size_t n;
    char *p;

    snprintf(path, sizeof(path), "/proc/%llu/stat", (unsigned long long)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the command name may hold spaces and parentheses: fields count
     * from its last ')'; the start time is field 22 */
    p = strrchr(buf, ')');
    if (p == NULL) {
        return 0;
    }
    p++;
    for (int field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p + 1, ' ');
    }
    if (p == NULL || sscanf(p, " %llu", &start) != 1) {
        return 0;
    }
    return start;
}

bool bt_xfer_guard_alive(uint64_t pid, uint64_t start)
{
    uint64_t now;

    if (pid == 0 || pid > (uint64_t)INT32_MAX) {
        return false;
    }
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        return false;
    }
    now = bt_xfer_guard_proc_start(pid);
    /* /proc unreadable: kill(0) said it exists, so keep waiting for it */
    return now == 0 || start == 0 || now == start;
}

bool bt_xfer_guard_busy(bt_xfer_guard_t *g, uint64_t lease, uint64_t *pid_p)
{
    if (lease == 0) {
        return false;
    }
    for (uint32_t i = 0; i < BT_XFER_GUARD_SLOTS; i++) {
        bt_xfer_guard_slot_t *s = &g->slots[i];
        uint64_t pid;

        /* seq_cst: after the owner stores that ended the lease */
        if (atomic_load(&s->lease) != lease) {
            continue;
        }
        pid = atomic_load(&s->pid);
        if (bt_xfer_guard_alive(pid, atomic_load(&s->start))) {
            if (pid_p != NULL) {
                *pid_p = pid;
            }
            return true;
        }
        /* died inside its copy: it writes nothing more */
        uint64_t expect = lease;
        atomic_compare_exchange_strong(&s->lease, &expect, 0);
    }
    return false;
}

static uint64_t self_pid, self_start;

static void self_id(void)
{
    uint64_t pid = (uint64_t)getpid();

    if (self_pid != pid) {   /* first call, or a forked child */
        self_pid = pid;
        self_start = bt_xfer_guard_proc_start(pid);
    }
}

static bool take(bt_xfer_guard_slot_t *s, uint64_t from)
{
    uint64_t expect = from;

    if (!atomic_compare_exchange_strong(&s->pid, &expect, self_pid)) {
        return false;
    }
    atomic_store(&s->start, self_start);
    atomic_store(&s->lease, 0);
    return true;
}

int bt_xfer_guard_claim(bt_xfer_guard_t *g, int hint)
{
    /* the slot this process holds, checked against the id cached when
     * it was claimed: no getpid() (a system call) per write. A forked
     * child still has its parent's id here, so it must not write through
     * its parent's remotes (nothing forks after creating an xfer
     * context). */
    if (self_pid != 0 && hint >= 0 && hint < (int)BT_XFER_GUARD_SLOTS &&
        atomic_load(&g->slots[hint].pid) == self_pid &&
        atomic_load(&g->slots[hint].start) == self_start) {
        return hint;
    }
    /* a new claim: the id again first (the first claim, or a forked
     * child's), so the hint cannot be ours any more */
    self_id();
    for (uint32_t i = 0; i < BT_XFER_GUARD_SLOTS; i++) {
        if (take(&g->slots[i], 0)) {
            return (int)i;
        }
    }
    for (uint32_t i = 0; i < BT_XFER_GUARD_SLOTS; i++) {
        bt_xfer_guard_slot_t *s = &g->slots[i];
        uint64_t pid = atomic_load(&s->pid);

        /* a dead writer's slot; its lease (if any) is cleared by take */
        if (pid != self_pid && !bt_xfer_guard_alive(pid, atomic_load(&s->start)) &&
            take(s, pid)) {
            return (int)i;
        }
    }
    return -1;
}

void bt_xfer_guard_release(bt_xfer_guard_t *g, int slot)
{
    if (slot < 0 || slot >= (int)BT_XFER_GUARD_SLOTS) {
        return;
    }
    self_id();
    atomic_store(&g->slots[slot].lease, 0);
    uint64_t expect = self_pid;
    atomic_compare_exchange_strong(&g->slots[slot].pid, &expect, 0);
}

void bt_xfer_guard_enter(bt_xfer_guard_t *g, int slot, uint64_t lease)
{
    atomic_store(&g->slots[slot].lease, lease);
}

void bt_xfer_guard_leave(bt_xfer_guard_t *g, int slot)
{
    atomic_store_explicit(&g->slots[slot].lease, 0, memory_order_release);
}
