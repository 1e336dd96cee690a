/* A peer's region mapped here for direct copies is faulted in ahead of
 * the writes, a slice of it per loop pass. The first write into each 4
 * KiB page of a fresh mapping otherwise takes a fault on the loop thread:
 * on the VMs these figures come from (shadow page tables), 5-7 us per
 * page even where the kernel's page table already has it, 11-25 ms per
 * 8 MiB of KV against 0.5 ms for the copy itself, taken from the
 * prefill it shares the cores with (docs/internals/xfer.md
 * "Prefaulting"). MADV_POPULATE_WRITE (Linux 5.14) maps every page
 * writable without changing a byte; one load per page then makes this
 * process's first access, which the hypervisor's tables need. A load
 * only: the peer may be writing those bytes. Where the kernel lacks the
 * advice the loads alone do what they can. */
#include "xfer_int.h"

#include "base/log.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void prefault_cb(evutil_socket_t fd, short what, void *arg);

static void prefault_schedule(bt_xfer_ctx_t *ctx)
{
    static const struct timeval now = {0, 0};

    if (ctx->prefault_ev == NULL) {
        ctx->prefault_ev = evtimer_new(ctx->base, prefault_cb, ctx);
        if (ctx->prefault_ev == NULL) {
            return;   /* no memory: the writes fault, nothing else */
        }
    }
    evtimer_add(ctx->prefault_ev, &now);
}

void bt_xfer_prefault_start(bt_xfer_remote_t *rm)
{
    bt_xfer_ctx_t *ctx = rm->ctx;

    bt_xfer_prefault_stop(rm);
    rm->pf_done = 0;
    if (rm->map == NULL) {
        return;
    }
    rm->pf_on = true;
    bt_list_add_tail(&ctx->prefault, &rm->pf_link);
    prefault_schedule(ctx);
}

void bt_xfer_prefault_stop(bt_xfer_remote_t *rm)
{
    if (rm->pf_on) {
        bt_list_del(&rm->pf_link);
        rm->pf_on = false;
    }
}

/* The next slice of the first region waiting; again next pass while any
 * is left. */
static void prefault_cb(evutil_socket_t fd, short what, void *arg)
{
    bt_xfer_ctx_t *ctx = arg;
    bt_xfer_remote_t *rm;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo, hi, end;

    (void)fd;
    (void)what;
    if (bt_list_empty(&ctx->prefault)) {
        return;
    }
    rm = BT_CONTAINER_OF(ctx->prefault.next, bt_xfer_remote_t, pf_link);
    /* whole pages inside the mapping: the first holds its first byte */
    lo = ((uintptr_t)rm->map + rm->pf_done) & ~(page - 1);
    end = ((uintptr_t)rm->map + rm->desc.length) & ~(page - 1);
    hi = lo + BT_XFER_PREFAULT_STEP < end ? lo + BT_XFER_PREFAULT_STEP : end;
    if (hi > lo && !ctx->prefault_no_advice &&
        madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) != 0) {
        if (errno != EINVAL) {
            bt_debug("xfer region %u of %s: populating its mapping stopped "
                     "at %llu of %llu bytes: %s", rm->desc.region_id,
                     rm->peer->host, (unsigned long long)rm->pf_done,
                     (unsigned long long)rm->desc.length, strerror(errno));
            bt_xfer_prefault_stop(rm);   /* the writes fault the rest */
            goto next;
        }
        bt_debug("xfer: this kernel cannot populate mappings "
                 "(MADV_POPULATE_WRITE); loads only");
        ctx->prefault_no_advice = true;
    }
    for (uintptr_t p = lo; p < hi; p += page) {
        (void)__atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
    }
    rm->pf_done = hi >= end ? rm->desc.length
                            : (uint64_t)(hi - (uintptr_t)rm->map);
    if (rm->pf_done >= rm->desc.length) {
        bt_xfer_prefault_stop(rm);
    }
next:
    if (!bt_list_empty(&ctx->prefault)) {
        prefault_schedule(ctx);
    }
}

uint64_t bt_xfer_remote_prefaulted(const bt_xfer_remote_t *rm)
{
    return rm->map != NULL ? rm->pf_done : 0;
}
