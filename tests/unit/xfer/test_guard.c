/* The write guard of a directly mapped region (common/xfer/guard.h), with
 * real processes sharing the memory: a writer whose lease ended copies
 * nothing; a writer stopped inside its copy keeps the lease busy until
 * it resumes and leaves the copy (its bytes land then, which is why the
 * receiver must wait); a writer killed inside its copy frees it; slots of
 * dead writers are taken again; a guard read from foreign memory is
 * checked before use, and a writer keeps the shape it checked. */
#include "xfer/guard.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define UNIT    256u
#define UNITS   8u
#define DATA    (UNIT * UNITS * 2u)   /* two layers of 8 blocks */
#define LEASE_A 0x1111u
#define LEASE_B 0x2222u

static uint8_t *region;
static size_t region_len;
static bt_xfer_guard_t *g;

static int setup(void **state)
{
    (void)state;
    region_len = bt_xfer_guard_region_len(DATA, UNITS);
    region = mmap(NULL, region_len, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(region != MAP_FAILED);
    g = bt_xfer_guard_init(region, DATA, UNIT, UNITS);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    munmap(region, region_len);
    return 0;
}

static void test_layout(void **state)
{
    bt_xfer_guard_geom_t geo;

    (void)state;
    assert_ptr_equal(g, region + bt_xfer_guard_offset(DATA));
    assert_true(bt_xfer_guard_offset(DATA) >= DATA);
    assert_true(bt_xfer_guard_region_len(DATA, UNITS) <= region_len);
    assert_true(bt_xfer_guard_geom_read(g, DATA, &geo));
    assert_int_equal(geo.unit_bytes, UNIT);
    assert_int_equal(geo.n_units, UNITS);
    assert_int_equal(geo.data_len, DATA);
    assert_false(bt_xfer_guard_geom_read(g, DATA - 1, &geo));   /* other data */
    g->n_units = (uint64_t)UINT32_MAX + 1;
    assert_false(bt_xfer_guard_geom_read(g, DATA, &geo));
    g->n_units = 0;
    assert_false(bt_xfer_guard_geom_read(g, DATA, &geo));
    g->n_units = UNITS;
    g->unit_bytes = 0;
    assert_false(bt_xfer_guard_geom_read(g, DATA, &geo));
    g->unit_bytes = UNIT;
    g->magic ^= 1;
    assert_false(bt_xfer_guard_geom_read(g, DATA, &geo));
    g->magic ^= 1;
    assert_true(bt_xfer_guard_geom_read(g, DATA, &geo));
}

/* A writer checks with the shape it read when it mapped the guard: the
 * peer changing the header afterwards (a unit of 0, a table far larger
 * than mapped) neither crashes it nor reads past the table. */
static void test_header_changed_under_writer(void **state)
{
    bt_xfer_guard_geom_t geo;

    (void)state;
    assert_true(bt_xfer_guard_geom_read(g, DATA, &geo));
    bt_xfer_guard_set(g, 1, LEASE_A);
    g->unit_bytes = 0;
    g->n_units = UINT64_MAX;
    g->data_len = UINT64_MAX;
    assert_true(bt_xfer_guard_admits_as(g, &geo, UNIT, UNIT, LEASE_A));
    assert_true(bt_xfer_guard_admits_as(g, &geo, 9 * UNIT, 10, LEASE_A));
    assert_false(bt_xfer_guard_admits_as(g, &geo, 2 * UNIT, 1, LEASE_A));
    assert_false(bt_xfer_guard_admits_as(g, &geo, DATA, 1, LEASE_A));
}

static void test_admits(void **state)
{
    (void)state;
    bt_xfer_guard_set(g, 3, LEASE_A);
    bt_xfer_guard_set(g, 4, LEASE_A);
    /* block 3 in both layers: offsets 3*UNIT and (8+3)*UNIT */
    assert_true(bt_xfer_guard_admits(g, 3 * UNIT, UNIT, LEASE_A));
    assert_true(bt_xfer_guard_admits(g, 11 * UNIT + 10, 20, LEASE_A));
    assert_true(bt_xfer_guard_admits(g, 3 * UNIT, 2 * UNIT, LEASE_A));
    assert_false(bt_xfer_guard_admits(g, 3 * UNIT, 2 * UNIT + 1, LEASE_A));
    assert_false(bt_xfer_guard_admits(g, 3 * UNIT, UNIT, LEASE_B));
    assert_false(bt_xfer_guard_admits(g, 2 * UNIT, 1, LEASE_A));
    assert_false(bt_xfer_guard_admits(g, 3 * UNIT, UNIT, 0));
    /* never past the data, where the guard lives */
    bt_xfer_guard_set(g, 7, LEASE_A);
    assert_true(bt_xfer_guard_admits(g, DATA - 1, 1, LEASE_A));
    assert_false(bt_xfer_guard_admits(g, DATA - 1, 2, LEASE_A));
    assert_false(bt_xfer_guard_admits(g, DATA + 1, 0, LEASE_A));
    assert_false(bt_xfer_guard_admits(g, UINT64_MAX, 2, LEASE_A));
    bt_xfer_guard_set(g, UNITS, LEASE_B);   /* out of range: ignored */
    assert_int_equal(bt_xfer_guard_owner(g, UNITS), 0);
    assert_int_equal(bt_xfer_guard_owner(g, 3), LEASE_A);
    assert_int_equal(bt_xfer_guard_owner(g, 5), 0);
    bt_xfer_guard_set(g, 3, 0);
    assert_int_equal(bt_xfer_guard_owner(g, 3), 0);
    assert_false(bt_xfer_guard_admits(g, 3 * UNIT, UNIT, LEASE_A));
}

/* The writer's side of the handshake, as copy_direct runs it: enter,
 * check, copy, leave. Returns whether it copied. */
static bool write_slice(int slot, uint64_t lease, uint64_t off, uint8_t fill,
                        bool stop_inside)
{
    bool ok;

    bt_xfer_guard_enter(g, slot, lease);
    ok = bt_xfer_guard_admits(g, off, UNIT, lease);
    if (ok) {
        if (stop_inside) {
            raise(SIGSTOP);   /* stopped between the check and the copy */
        }
        memset(region + off, fill, UNIT);
    }
    bt_xfer_guard_leave(g, slot);
    return ok;
}

static void test_ended_lease_refused(void **state)
{
    int slot;

    (void)state;
    slot = bt_xfer_guard_claim(g, -1);
    assert_true(slot >= 0);
    assert_int_equal(bt_xfer_guard_claim(g, slot), slot);   /* kept */
    bt_xfer_guard_set(g, 2, LEASE_A);
    memset(region + 2 * UNIT, 0, UNIT);
    assert_true(write_slice(slot, LEASE_A, 2 * UNIT, 0xa1, false));
    assert_int_equal(region[2 * UNIT + 5], 0xa1);
    bt_xfer_guard_set(g, 2, LEASE_B);   /* A ended, B took the block */
    assert_false(write_slice(slot, LEASE_A, 2 * UNIT, 0xee, false));
    assert_int_equal(region[2 * UNIT + 5], 0xa1);   /* nothing landed */
    assert_false(bt_xfer_guard_busy(g, LEASE_A, NULL));
    /* inside a copy, this (live) process keeps the lease busy */
    bt_xfer_guard_enter(g, slot, LEASE_B);
    uint64_t pid = 0;
    assert_true(bt_xfer_guard_busy(g, LEASE_B, &pid));
    assert_int_equal(pid, (uint64_t)getpid());
    assert_false(bt_xfer_guard_busy(g, LEASE_A, NULL));
    bt_xfer_guard_leave(g, slot);
    assert_false(bt_xfer_guard_busy(g, LEASE_B, NULL));
    bt_xfer_guard_release(g, slot);
    bt_xfer_guard_set(g, 2, 0);
}

/* A child writer that stops inside its copy for A. */
static pid_t stopped_writer(uint64_t lease, uint32_t unit, uint8_t fill)
{
    pid_t pid = fork();
    int st;

    assert_true(pid >= 0);
    if (pid == 0) {
        int slot = bt_xfer_guard_claim(g, -1);

        _exit(slot >= 0 && write_slice(slot, lease, unit * UNIT, fill, true)
                  ? 0 : 3);
    }
    assert_int_equal(waitpid(pid, &st, WUNTRACED), pid);
    assert_true(WIFSTOPPED(st));
    return pid;
}

static void test_stopped_writer_holds(void **state)
{
    uint64_t pid = 0;
    pid_t child;
    int st;

    (void)state;
    memset(region + 5 * UNIT, 0, UNIT);
    bt_xfer_guard_set(g, 5, LEASE_A);
    child = stopped_writer(LEASE_A, 5, 0x5a);
    /* the receiver ends A: the child has checked already and is stopped
     * before its copy, so the block must not be reused */
    bt_xfer_guard_set(g, 5, 0);
    assert_true(bt_xfer_guard_busy(g, LEASE_A, &pid));
    assert_int_equal(pid, (uint64_t)child);
    usleep(50 * 1000);
    assert_true(bt_xfer_guard_busy(g, LEASE_A, NULL));   /* still stopped */
    assert_int_equal(region[5 * UNIT], 0);
    kill(child, SIGCONT);
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* its stale copy landed on resuming: what the wait kept off B */
    assert_int_equal(region[5 * UNIT + UNIT - 1], 0x5a);
    assert_false(bt_xfer_guard_busy(g, LEASE_A, NULL));
}

static void test_killed_writer_frees(void **state)
{
    pid_t child;
    int st;

    (void)state;
    bt_xfer_guard_set(g, 6, LEASE_B);
    child = stopped_writer(LEASE_B, 6, 0x66);
    bt_xfer_guard_set(g, 6, 0);
    assert_true(bt_xfer_guard_busy(g, LEASE_B, NULL));
    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, &st, 0), child);
    assert_true(WIFSIGNALED(st));
    assert_false(bt_xfer_guard_busy(g, LEASE_B, NULL));   /* dead: writes no more */
    for (uint32_t i = 0; i < BT_XFER_GUARD_SLOTS; i++) {
        assert_int_not_equal(atomic_load(&g->slots[i].lease), LEASE_B);
    }
}

static void test_dead_slots_reused(void **state)
{
    pid_t child = fork();
    int st, slot;

    (void)state;
    assert_true(child >= 0);
    if (child == 0) {
        _exit(0);
    }
    assert_int_equal(waitpid(child, &st, 0), child);
    /* every slot held by a process that is gone, one of them mid-copy */
    for (uint32_t i = 0; i < BT_XFER_GUARD_SLOTS; i++) {
        atomic_store(&g->slots[i].pid, (uint64_t)child);
        atomic_store(&g->slots[i].start, 1);
        atomic_store(&g->slots[i].lease, i == 9 ? LEASE_A : 0);
    }
    slot = bt_xfer_guard_claim(g, -1);
    assert_true(slot >= 0);
    assert_int_equal(atomic_load(&g->slots[slot].pid), (uint64_t)getpid());
    assert_int_equal(atomic_load(&g->slots[slot].lease), 0);
    bt_xfer_guard_release(g, slot);
    assert_int_equal(atomic_load(&g->slots[slot].pid), 0);
    /* all held by this live process: none to take */
    for (uint32_t i = 0; i < BT_XFER_GUARD_SLOTS; i++) {
        atomic_store(&g->slots[i].pid, (uint64_t)getpid());
        atomic_store(&g->slots[i].start,
                     bt_xfer_guard_proc_start((uint64_t)getpid()));
        atomic_store(&g->slots[i].lease, 0);
    }
    assert_int_equal(bt_xfer_guard_claim(g, -1), -1);
    assert_int_equal(bt_xfer_guard_claim(g, 3), 3);   /* still its own */
    /* a reused pid (another start time) is not the writer that was */
    assert_false(bt_xfer_guard_alive((uint64_t)getpid(), 1));
    assert_true(bt_xfer_guard_alive((uint64_t)getpid(),
                                    bt_xfer_guard_proc_start(getpid())));
    assert_false(bt_xfer_guard_alive((uint64_t)child, 0));
    assert_false(bt_xfer_guard_alive(0, 0));
    memset(g->slots, 0, sizeof(g->slots));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_changed_under_writer,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ended_lease_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stopped_writer_holds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_killed_writer_frees, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_slots_reused, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
