/* A peer's region mapped here for direct copies, and an own region asked
 * for (bt_xfer_region_prefault: a node's KV pool), are faulted in ahead
 * of use by a thread of the context's own, at low priority. The first
 * access to each 4 KiB page of a fresh mapping otherwise takes a fault:
 * on the VMs these figures come from (shadow page tables), 5-7 us per
 * page even where the kernel's page table already has it, 11-25 ms per
 * 8 MiB of KV against 0.5 ms for the copy itself, taken on the loop
 * thread from the prefill it shares the cores with; in an own pool, on
 * the compute threads, in the prefill that first writes a block and in
 * the decode step that first reads one a peer wrote (docs/internals/
 * xfer.md "Prefaulting"). MADV_POPULATE_WRITE (Linux 5.14) maps every
 * page writable without changing a byte; one load per page then makes
 * this process's first access, which the hypervisor's tables need. A
 * load only: a peer may be writing those bytes. Where the kernel lacks
 * the advice the loads alone do what they can.
 *
 * Not on the loop: done there, 2 MiB per pass, the passes (3-4 ms each
 * here) lengthened a decode node's steps while it faulted in the
 * kvstore's region. The thread touches a mapping only between marking
 * it busy and clearing that, and bt_xfer_prefault_stop waits for that
 * before the mapping can go. */
#include "xfer_int.h"

#include "base/clock.h"
#include "base/log.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Faults in [lo, hi) of this process's address space; false where the
 * advice failed for another reason than the kernel lacking it (no memory
 * left for the pages: the accesses fault them, or fail, as they would). */
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

/* With pf_mu held: the mapping leaves the list, done or given up. */
static void prefault_end(bt_xfer_pf_t *pf, bool ok, int err)
{
    bt_list_del(&pf->link);
    pf->on = false;
    if (!pf->own) {
        return;
    }
    if (ok) {
        bt_info("xfer: region %u faulted in: %llu MiB in %.2f s",
                pf->region_id, (unsigned long long)(pf->length >> 20),
                (double)(bt_now_ns() - pf->t0_ns) / 1e9);
    } else {
        bt_warn("xfer: region %u faulted in only %llu of %llu MiB (%s): "
                "the rest faults as it is used", pf->region_id,
                (unsigned long long)(pf->done >> 20),
                (unsigned long long)(pf->length >> 20), strerror(err));
    }
}

static void *prefault_main(void *arg)
{
    bt_xfer_ctx_t *ctx = arg;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

    /* below the node's compute threads: this only saves later faults */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&ctx->pf_mu);
    while (!ctx->pf_quit) {
        /* a stop waiting gets the lock before the next step: it waits
         * for one step at most, not for the whole mapping */
        if (bt_list_empty(&ctx->prefault) || ctx->pf_stopping > 0) {
            pthread_cond_wait(&ctx->pf_cv, &ctx->pf_mu);
            continue;
        }
        bt_xfer_pf_t *pf = BT_CONTAINER_OF(ctx->prefault.next, bt_xfer_pf_t,
                                           link);
        /* whole pages inside the mapping: the first holds its first byte */
        uintptr_t lo = ((uintptr_t)pf->base + pf->done) & ~(page - 1);
        uintptr_t end = ((uintptr_t)pf->base + pf->length) & ~(page - 1);
        uintptr_t hi = lo + BT_XFER_PREFAULT_STEP < end
                       ? lo + BT_XFER_PREFAULT_STEP : end;
        bool ok = true;
        int err = 0;

        pf->busy = true;
        pthread_mutex_unlock(&ctx->pf_mu);
        if (hi > lo) {
            ok = fault_in(ctx, lo, hi, page);
            err = errno;
        }
        pthread_mutex_lock(&ctx->pf_mu);
        pf->busy = false;
        pthread_cond_broadcast(&ctx->pf_cv);
        if (ok) {
            pf->done = hi >= end ? pf->length
                                 : (uint64_t)(hi - (uintptr_t)pf->base);
        }
        if (!ok || pf->done >= pf->length) {
            /* a failed advice: the accesses fault the rest */
            prefault_end(pf, ok, err);
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

void bt_xfer_prefault_start(bt_xfer_ctx_t *ctx, bt_xfer_pf_t *pf, void *base,
                            uint64_t length)
{
    bt_xfer_prefault_stop(ctx, pf);
    if (base == NULL || length == 0) {
        return;
    }
    pthread_mutex_lock(&ctx->pf_mu);
    if (!ctx->pf_thread_on) {
        if (pthread_create(&ctx->pf_thread, NULL, prefault_main, ctx) != 0) {
            pthread_mutex_unlock(&ctx->pf_mu);
            bt_debug("xfer: no thread to fault mappings in; their first "
                     "accesses fault their pages");
            return;
        }
        pthread_setname_np(ctx->pf_thread, "bt-prefault");
        ctx->pf_thread_on = true;
    }
    pf->base = base;     /* done is 0: stopped above */
    pf->length = length;
    pf->t0_ns = bt_now_ns();
    pf->on = true;
    bt_list_add_tail(&ctx->prefault, &pf->link);
    pthread_cond_broadcast(&ctx->pf_cv);
    pthread_mutex_unlock(&ctx->pf_mu);
}

void bt_xfer_prefault_stop(bt_xfer_ctx_t *ctx, bt_xfer_pf_t *pf)
{
    pthread_mutex_lock(&ctx->pf_mu);
    ctx->pf_stopping++;
    while (pf->busy) {   /* at most one step */
        pthread_cond_wait(&ctx->pf_cv, &ctx->pf_mu);
    }
    ctx->pf_stopping--;
    pthread_cond_broadcast(&ctx->pf_cv);   /* the thread goes on */
    if (pf->on) {
        bt_list_del(&pf->link);
        pf->on = false;
    }
    pf->done = 0;
    pthread_mutex_unlock(&ctx->pf_mu);
}

uint64_t bt_xfer_prefault_done(bt_xfer_ctx_t *ctx, const bt_xfer_pf_t *pf)
{
    uint64_t done;

    pthread_mutex_lock(&ctx->pf_mu);
    done = pf->done;
    pthread_mutex_unlock(&ctx->pf_mu);
    return done;
}

uint64_t bt_xfer_remote_prefaulted(const bt_xfer_remote_t *rm)
{
    return rm->map != NULL ? bt_xfer_prefault_done(rm->ctx, &rm->pf) : 0;
}

void bt_xfer_region_prefault(bt_xfer_region_t *r)
{
    r->pf.own = true;
    r->pf.region_id = r->id;
    bt_xfer_prefault_start(r->ctx, &r->pf, r->base, r->length);
}

uint64_t bt_xfer_region_prefaulted(const bt_xfer_region_t *r)
{
    return bt_xfer_prefault_done(r->ctx, &r->pf);
}
