/* Prefaulting a peer's region mapped for direct copies (prefault.c): once
 * the context's thread has faulted the mapping in, a write over the whole
 * region takes no page faults on the writing thread (before, one per 4 KiB
 * page of a fresh mapping); a remote destroyed, or a context destroyed,
 * while its mapping is being faulted in leaves nothing behind and waits
 * for the thread (ASan, TSan), as does a mapping renewed with the rkey. */
#include "xfer/xfer_int.h"

#include "xfer_test_util.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define BLK 16384u

/* Under ASan or TSan the copy's checks fault the sanitizer's own shadow
 * of the region (thousands of pages): the count says nothing there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MAX_FAULTS 1000000L
#else
#define MAX_FAULTS 64L
#endif

/* Whether this kernel has MADV_POPULATE_WRITE (Linux 5.14). */
static bool kernel_populates(void)
{
    size_t len = 1u << 16;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool ok;

    assert_true(p != MAP_FAILED);
    ok = madvise(p, len, MADV_POPULATE_WRITE) == 0 || errno != EINVAL;
    munmap(p, len);
    return ok;
}

static long thread_minflt(void)
{
    struct rusage ru;

    assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_minflt;
}

/* Faults on this thread while every block of the region is written, in
 * a scattered order (odd blocks, then even ones), and checked. */
static long write_region(xt_fx_t *fx)
{
    static bt_xfer_slice_t s[XT_REGION_LEN / BLK];
    uint8_t *src = bt_xfer_region_base(fx->src);
    uint8_t *dst = bt_xfer_region_base(fx->dst);
    size_t n = XT_REGION_LEN / BLK, k = 0;
    bt_xfer_op_t *op;
    long before;

    for (size_t pass = 0; pass < 2; pass++) {
        for (size_t b = 1 - pass; b < n; b += 2) {
            s[k++] = (bt_xfer_slice_t){src + b * BLK, b * BLK, BLK};
        }
    }
    xt_fill(src, XT_REGION_LEN, 5);
    before = thread_minflt();
    assert_int_equal(xt_write(fx, s, n, 10000, NULL, &op), BT_IN_PROGRESS);
    long faults = thread_minflt() - before;

    assert_true(xt_run_until(fx->sbase, &fx->done, 10000));
    assert_int_equal(fx->status, BT_OK);
    assert_memory_equal(dst, src, XT_REGION_LEN);
    return faults;
}

static void run_until_prefaulted(xt_fx_t *fx, bt_xfer_remote_t *rm)
{
    bt_deadline_t end = bt_deadline_in_ms(10000);

    while (bt_xfer_remote_prefaulted(rm) < bt_xfer_remote_length(rm) &&
           !bt_deadline_passed(end)) {
        usleep(1000);
    }
}

static void test_prefaulted_write_takes_no_faults(void **state)
{
    xt_fx_t *fx = xt_fx_new(false, NULL);
    long faults;

    (void)state;
    if (!kernel_populates()) {
        xt_fx_free(fx);
        skip();
    }
    bt_xfer_remote_set_mode(fx->remote, BT_XFER_MODE_PUT);
    assert_int_equal(bt_xfer_remote_prefaulted(fx->remote), 0);
    assert_true(bt_xfer_remote_direct(fx->remote));
    run_until_prefaulted(fx, fx->remote);
    assert_int_equal(bt_xfer_remote_prefaulted(fx->remote), XT_REGION_LEN);
    /* 2048 pages; a few faults of the library's own allocations pass */
    faults = write_region(fx);
    print_message("# faults while writing %u pages: %ld\n",
                  XT_REGION_LEN / 4096u, faults);
    assert_true(faults < MAX_FAULTS);
    /* the bytes still land where they should the second time round */
    assert_true(write_region(fx) < MAX_FAULTS);
    xt_fx_free(fx);
}

/* Torn down mid-way: a second remote of the same region destroyed while
 * its mapping waits to be faulted in, then the context with another one
 * waiting. */
static void test_teardown_while_prefaulting(void **state)
{
    xt_fx_t *fx = xt_fx_new(false, NULL);
    bt_xfer_remote_t *again;
    void *blob;
    size_t len;

    (void)state;
    bt_xfer_remote_set_mode(fx->remote, BT_XFER_MODE_PUT);
    assert_int_equal(bt_xfer_region_export(fx->dst, &blob, &len), BT_OK);
    assert_int_equal(bt_xfer_remote_import(fx->sctx, blob, len, &again),
                     BT_OK);
    free(blob);
    assert_true(bt_xfer_remote_direct(again));
    assert_true(bt_xfer_remote_direct(fx->remote));
    bt_xfer_remote_destroy(again);   /* the thread likely inside it */
    xt_fx_free(fx);   /* destroys fx->remote, perhaps still waiting */
}

/* The peer's endpoint renewed (white box: its generation bumped, as a
 * reconnect does) while a large mapping is being faulted in: the next
 * write unpacks the rkey again, which unmaps the old mapping; the thread
 * must be out of it first, and the new mapping is faulted in anew. */
static void test_rkey_renewed_while_prefaulting(void **state)
{
    xt_fx_t *fx = xt_fx_new(false, NULL);
    const size_t big = 256u << 20;
    bt_xfer_region_t *dst;
    bt_xfer_remote_t *rm;
    void *blob;
    size_t len;

    (void)state;
    assert_int_equal(bt_xfer_region_alloc(fx->rctx, big, &dst), BT_OK);
    assert_int_equal(bt_xfer_region_export(dst, &blob, &len), BT_OK);
    assert_int_equal(bt_xfer_remote_import(fx->sctx, blob, len, &rm), BT_OK);
    free(blob);
    bt_xfer_remote_set_mode(rm, BT_XFER_MODE_PUT);
    for (int i = 0; i < 5; i++) {
        assert_true(bt_xfer_remote_direct(rm));
        usleep(2000);   /* the thread inside the mapping */
        rm->peer->gen++;
    }
    assert_true(bt_xfer_remote_direct(rm));
    run_until_prefaulted(fx, rm);
    assert_int_equal(bt_xfer_remote_prefaulted(rm), big);
    bt_xfer_remote_destroy(rm);
    bt_xfer_region_destroy(dst);
    xt_fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefaulted_write_takes_no_faults),
        cmocka_unit_test(test_teardown_while_prefaulting),
        cmocka_unit_test(test_rkey_renewed_while_prefaulting),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
