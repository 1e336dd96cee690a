/* A peer's region mapped here for direct copies is faulted in ahead of
 * the writes, by a thread of the context's own, at low priority. The
 * first write into each 4 KiB page of a fresh mapping otherwise takes a
 * fault on the loop thread: on the VMs these figures come from (shadow
 * page tables), 5-7 us per page even where the kernel's page table
 * already has it, 11-25 ms per 8 MiB of KV against 0.5 ms for the copy
 * itself, taken from the prefill it shares the cores with
 * (docs/internals/xfer.md "Prefaulting"). MADV_POPULATE_WRITE (Linux
 * 5.14) maps every page writable without changing a byte; one load per
 * page then makes this process's first access, which the hypervisor's
 * tables need. A load only: the peer may be writing those bytes. Where
 * the kernel lacks the advice the loads alone do what they can.
 *
 * Not on the loop: done there, 2 MiB per pass, the passes (3-4 ms each
 * here) lengthened a decode node's steps while it faulted in the
 * kvstore's region. The thread touches a mapping only between marking
 * its remote busy and clearing that, and bt_xfer_prefault_stop waits
 * for that before the mapping can go. */
#include "xfer_int.h"

#include "base/log.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Faults in [lo, hi) of this process's address space; false where the
 * advice failed for another reason than the kernel lacking it. */
static bool fault_in(bt_xfer_ctx_t *ctx, uintptr_t lo, uintptr_t hi,
                     uintptr_t page)
{
    if (!ctx->pf_no_advice &&
        madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) != 0) {
        if (errno != EINVAL) {
            return false;
        }
        ctx->pf_no_advice = true;   /* kernel < 5.14: loads only */
    }
    for (uintptr_t p = lo; p < hi; p += page) {
        (void)__atomic_load_n((const uint8_t *)p, __ATOMIC_RELAXED);
    }
    return true;
}

static void *prefault_main(void *arg)
{
    bt_xfer_ctx_t *ctx = arg;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

    /* below the node's compute threads: this only saves later faults */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&ctx->pf_mu);
    while (!ctx->pf_quit) {
        if (bt_list_empty(&ctx->prefault)) {
            pthread_cond_wait(&ctx->pf_cv, &ctx->pf_mu);
            continue;
        }
        bt_xfer_remote_t *rm = BT_CONTAINER_OF(ctx->prefault.next,
                                               bt_xfer_remote_t, pf_link);
        /* whole pages inside the mapping: the first holds its first byte */
        uintptr_t lo = ((uintptr_t)rm->map + rm->pf_done) & ~(page - 1);
        uintptr_t end = ((uintptr_t)rm->map + rm->desc.length) & ~(page - 1);
        uintptr_t hi = lo + BT_XFER_PREFAULT_STEP < end
                       ? lo + BT_XFER_PREFAULT_STEP : end;
        bool ok = true;

        rm->pf_busy = true;
        pthread_mutex_unlock(&ctx->pf_mu);
        if (hi > lo) {
            ok = fault_in(ctx, lo, hi, page);
        }
        pthread_mutex_lock(&ctx->pf_mu);
        rm->pf_busy = false;
        pthread_cond_broadcast(&ctx->pf_cv);
        if (ok) {
            rm->pf_done = hi >= end ? rm->desc.length
                                    : (uint64_t)(hi - (uintptr_t)rm->map);
        }
        if (!ok || rm->pf_done >= rm->desc.length) {
            /* a failed advice: the writes fault the rest */
            bt_list_del(&rm->pf_link);
            rm->pf_on = false;
        }
    }
    pthread_mutex_unlock(&ctx->pf_mu);
    return NULL;
}

void bt_xfer_prefault_init(bt_xfer_ctx_t *ctx)
{
    bt_list_init(&ctx->prefault);
    pthread_mutex_init(&ctx->pf_mu, NULL);
    pthread_cond_init(&ctx->pf_cv, NULL);
}

void bt_xfer_prefault_fini(bt_xfer_ctx_t *ctx)
{
    pthread_mutex_lock(&ctx->pf_mu);
    ctx->pf_quit = true;
    pthread_cond_broadcast(&ctx->pf_cv);
    pthread_mutex_unlock(&ctx->pf_mu);
    if (ctx->pf_thread_on) {
        pthread_join(ctx->pf_thread, NULL);
        ctx->pf_thread_on = false;
    }
    pthread_cond_destroy(&ctx->pf_cv);
    pthread_mutex_destroy(&ctx->pf_mu);
}

void bt_xfer_prefault_start(bt_xfer_remote_t *rm)
{
    bt_xfer_ctx_t *ctx = rm->ctx;

    bt_xfer_prefault_stop(rm);
    if (rm->map == NULL) {
        return;
    }
    pthread_mutex_lock(&ctx->pf_mu);
    if (!ctx->pf_thread_on) {
        if (pthread_create(&ctx->pf_thread, NULL, prefault_main, ctx) != 0) {
            pthread_mutex_unlock(&ctx->pf_mu);
            bt_debug("xfer: no thread to fault mappings in; direct copies "
                     "fault their pages");
            return;
        }
        pthread_setname_np(ctx->pf_thread, "bt-prefault");
        ctx->pf_thread_on = true;
    }
    rm->pf_on = true;   /* pf_done is 0: stopped above */
    bt_list_add_tail(&ctx->prefault, &rm->pf_link);
    pthread_cond_broadcast(&ctx->pf_cv);
    pthread_mutex_unlock(&ctx->pf_mu);
}

void bt_xfer_prefault_stop(bt_xfer_remote_t *rm)
{
    bt_xfer_ctx_t *ctx = rm->ctx;

    pthread_mutex_lock(&ctx->pf_mu);
    while (rm->pf_busy) {   /* at most one step */
        pthread_cond_wait(&ctx->pf_cv, &ctx->pf_mu);
    }
    if (rm->pf_on) {
        bt_list_del(&rm->pf_link);
        rm->pf_on = false;
    }
    rm->pf_done = 0;
    pthread_mutex_unlock(&ctx->pf_mu);
}

uint64_t bt_xfer_remote_prefaulted(const bt_xfer_remote_t *rm)
{
    bt_xfer_ctx_t *ctx = rm->ctx;
    uint64_t done;

    pthread_mutex_lock(&ctx->pf_mu);
    done = rm->map != NULL ? rm->pf_done : 0;
    pthread_mutex_unlock(&ctx->pf_mu);
    return done;
}
