/* KV transfer between real processes on one machine, over the transport
 * the environment names (meson runs this once with shared memory and once
 * with tcp): random slice lists verified by checksum on the receiver,
 * three senders into one receiver, a receiver killed mid-transfer (one
 * large slice per write, and KV-shaped batches of 16 KiB slices), a
 * deadline shorter than the transfer, corrupt descriptors, and (tcp) a
 * first connect that meets a partition.
 *
 * Children are xfer_peer processes ($XFER_PEER) talking lines on pipes.
 * Every wait is bounded (scaled by BATON_TEST_TIME_SCALE, tests/test_time.h);
 * every child is killed at the end of its test, also when an assertion
 * fails. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_time.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define MAX_CHILDREN 8
#define BUF_LEN (1 << 20)

typedef struct {
    pid_t  pid;
    int    in;          /* its stdin */
    int    out;         /* its stdout */
    char  *buf;
    size_t len;
    char   line[BUF_LEN];
    int    status;      /* once reaped */
    bool   reaped;
} child_t;

static child_t children[MAX_CHILDREN];
static int n_children;

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static child_t *spawn(const char *a1, const char *a2, const char *a3,
                      const char *a4)
{
    const char *peer = getenv("XFER_PEER");
    int pin[2], pout[2];
    child_t *c;

    assert_non_null(peer);
    assert_true(n_children < MAX_CHILDREN);
    assert_int_equal(pipe(pin), 0);
    assert_int_equal(pipe(pout), 0);
    c = &children[n_children++];
    memset(c, 0, sizeof(*c));
    c->buf = malloc(BUF_LEN);
    assert_non_null(c->buf);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        close(pin[0]);
        close(pin[1]);
        close(pout[0]);
        close(pout[1]);
        execl(peer, peer, a1, a2, a3, a4, (char *)NULL);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    c->in = pin[1];
    c->out = pout[0];
    return c;
}

/* The next line of the child's stdout, or NULL after `ms`. */
static const char *child_line(child_t *c, uint64_t ms)
{
    uint64_t end = now_ms() + ms;

    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);

        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf);

            memcpy(c->line, c->buf, n);
            c->line[n] = '\0';
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return c->line;
        }
        uint64_t t = now_ms();
        if (t >= end || c->len == BUF_LEN) {
            return NULL;
        }
        struct pollfd pfd = {.fd = c->out, .events = POLLIN};
        if (poll(&pfd, 1, (int)(end - t)) <= 0) {
            continue;
        }
        ssize_t k = read(c->out, c->buf + c->len, BUF_LEN - c->len);
        if (k <= 0) {
            return NULL;
        }
        c->len += (size_t)k;
    }
}

/* Skips lines until one starts with `prefix`, for up to `ms` at
 * BATON_TEST_TIME_SCALE (a wait, not a bound on the peer); NULL when the
 * time or the child's output ends first. */
static const char *find_line(child_t *c, const char *prefix, uint64_t ms)
{
    const char *l;
    uint64_t end = now_ms() + bt_test_scaled_ms(ms);

    while (now_ms() < end) {
        l = child_line(c, end - now_ms());
        if (l == NULL) {
            break;
        }
        if (strncmp(l, prefix, strlen(prefix)) == 0) {
            return l;
        }
    }
    return NULL;
}

/* find_line, failing the test when there is no such line. */
static const char *expect_line(child_t *c, const char *prefix, uint64_t ms)
{
    const char *l = find_line(c, prefix, ms);

    if (l == NULL) {
        fail_msg("child %d: no line starting '%s' within %llu ms",
                 (int)c->pid, prefix,
                 (unsigned long long)bt_test_scaled_ms(ms));
    }
    return l;
}

static void child_say(child_t *c, const char *l)
{
    size_t n = strlen(l);

    assert_int_equal(write(c->in, l, n), (ssize_t)n);
    assert_int_equal(write(c->in, "\n", 1), 1);
}

/* The child's exit code, waiting up to `ms` at BATON_TEST_TIME_SCALE. */
static int child_wait(child_t *c, uint64_t ms)
{
    uint64_t end;

    ms = bt_test_scaled_ms(ms);
    end = now_ms() + ms;

    while (!c->reaped) {
        pid_t r = waitpid(c->pid, &c->status, WNOHANG);

        if (r == c->pid) {
            c->reaped = true;
            break;
        }
        if (now_ms() >= end) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &c->status, 0);
            c->reaped = true;
            fail_msg("child %d did not exit within %llu ms", (int)c->pid,
                     (unsigned long long)ms);
        }
        usleep(2000);
    }
    return WIFEXITED(c->status) ? WEXITSTATUS(c->status) : 128;
}

/* Teardown: nothing outlives a test, pass or fail. */
static int kill_all(void **state)
{
    (void)state;
    for (int i = 0; i < n_children; i++) {
        child_t *c = &children[i];

        if (!c->reaped) {
            kill(c->pid, SIGCONT);
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &c->status, 0);
        }
        close(c->in);
        close(c->out);
        free(c->buf);
    }
    n_children = 0;
    return 0;
}

static bool expect_tcp(void)
{
    const char *t = getenv("UCX_TLS");

    return t != NULL && strstr(t, "tcp") != NULL;
}

/* The lanes the sender's endpoint got match the transport under test:
 * shm lanes and one-sided puts, or tcp and active messages. */
static void check_lanes(child_t *c)
{
    const char *l = expect_line(c, "LANES ", 10000);

    print_message("# %s\n", l);
    if (expect_tcp()) {
        assert_non_null(strstr(l, "tcp"));
        assert_non_null(strstr(l, "MODE am"));
    } else {
        assert_true(strstr(l, "posix") != NULL || strstr(l, "sysv") != NULL);
        assert_null(strstr(l, "tcp"));
        assert_non_null(strstr(l, "MODE put"));
    }
}

static void relay_desc(child_t *from, child_t *to)
{
    const char *l = expect_line(from, "DESC ", 10000);

    child_say(to, l);
}

static void relay_peer(child_t *sender, child_t *recv)
{
    char *l = strdup(expect_line(sender, "DESC ", 10000));

    assert_non_null(l);
    memcpy(l, "PEER", 4);
    child_say(recv, l);
    free(l);
    expect_line(recv, "PEERED", 10000);
}

static void recv_result(child_t *r, int want_ok)
{
    const char *l;
    int ok = -1, bad = -1, plain = -1;

    child_say(r, "QUIT");
    l = expect_line(r, "RESULT ", 10000);
    assert_int_equal(sscanf(l, "RESULT ok=%d bad=%d plain=%d", &ok, &bad,
                            &plain), 3);
    print_message("# receiver: %s\n", l);
    assert_int_equal(bad, 0);
    if (want_ok >= 0) {
        assert_int_equal(ok, want_ok);
    }
    assert_int_equal(child_wait(r, 10000), 0);
}

/* 1000 verified transfers take 8-28 s of a plain build on a loaded 2-core
 * machine: a bound, not a speed test (scaled for slower builds) */
#define SENT_WAIT_MS 300000

static void test_random_slices(void **state)
{
    child_t *r = spawn("recv", "64", NULL, NULL);
    child_t *s = spawn("send", "0", "1", "1000");
    uint64_t t0;

    (void)state;
    relay_desc(r, s);
    relay_peer(s, r);
    check_lanes(s);
    t0 = now_ms();
    child_say(s, "GO");
    print_message("# %s\n", expect_line(s, "SENT ", SENT_WAIT_MS));
    assert_int_equal(child_wait(s, 10000), 0);
    print_message("# 1000 verified transfers in %llu ms\n",
                  (unsigned long long)(now_ms() - t0));
    recv_result(r, 1000);
}

static void test_three_senders(void **state)
{
    child_t *r = spawn("recv", "64", NULL, NULL);
    child_t *s[3];
    char part[3][4];

    (void)state;
    for (int i = 0; i < 3; i++) {
        snprintf(part[i], sizeof(part[i]), "%d", i);
        s[i] = spawn("send", part[i], "3", "200");
    }
    const char *d = expect_line(r, "DESC ", 10000);
    char *desc = strdup(d);
    for (int i = 0; i < 3; i++) {
        child_say(s[i], desc);
        relay_peer(s[i], r);
        check_lanes(s[i]);
    }
    free(desc);
    for (int i = 0; i < 3; i++) {
        child_say(s[i], "GO");   /* all three at once */
    }
    for (int i = 0; i < 3; i++) {
        print_message("# sender %d: %s\n", i, expect_line(s[i], "SENT ", SENT_WAIT_MS));
        assert_int_equal(child_wait(s[i], 10000), 0);
    }
    recv_result(r, 600);
}

/* `kb` 0: one 4 MiB slice per write; else 4 MiB as kb-KiB slices. */
/* One run; false when the sender aborted (SIGABRT) before its report:
 * over tcp UCX 1.13 itself does that now and then, by an assertion in
 * its tcp transport while it fails the dead peer's endpoint
 * (docs/internals/xfer.md "Known UCX 1.13 issues"), which no code of
 * ours reaches. */
static bool receiver_killed_once(const char *kb)
{
    child_t *r1 = spawn("recv", "16", NULL, NULL);
    child_t *r2 = spawn("recv", "16", NULL, NULL);
    child_t *b = spawn("blast", "4", kb, NULL);
    const char *l;

    relay_desc(r1, b);
    relay_desc(r2, b);
    check_lanes(b);
    expect_line(b, "STARTED", 15000);
    /* Reap it at once, as a supervisor would: UCX's shm keepalive reads
     * /proc/PID, where an unreaped zombie still looks alive. */
    kill(r1->pid, SIGKILL);
    assert_int_equal(child_wait(r1, 5000), 128);
    child_say(b, "KILLED");
    l = find_line(b, "BLAST ", 30000);
    if (l == NULL && child_wait(b, 10000) == 128 &&
        WIFSIGNALED(b->status) && WTERMSIG(b->status) == SIGABRT) {
        print_message("# the sender aborted inside UCX (its stderr has "
                      "the assertion): the run is done again once\n");
        kill(r2->pid, SIGKILL);
        child_wait(r2, 5000);
        return false;
    }
    if (l == NULL) {
        fail_msg("child %d: no line starting 'BLAST '", (int)b->pid);
    }
    print_message("# %s\n", l);
    assert_int_equal(child_wait(b, 10000), 0);
    recv_result(r2, 0);
    return true;
}

/* A second abort fails: the behaviour checked is ours, and it must show
 * in one of two runs. */
static void receiver_killed(const char *kb)
{
    if (!receiver_killed_once(kb)) {
        assert_true(receiver_killed_once(kb));
    }
}

static void test_receiver_killed(void **state)
{
    (void)state;
    receiver_killed(NULL);
}

/* Not run over tcp (main): there UCX 1.13 itself aborted a process of this test
 * by an assertion in its tcp transport once in three runs, batched and
 * plain alike and with UCX_TCP_PUT_ENABLE=n (docs/internals/xfer.md
 * "Known UCX 1.13 issues"); a test that fails by UCX's dice guards
 * nothing. The batches' own failure handling is covered in AM mode by
 * xfer/batch (test_receiver_gone_mid_batch). */
static void test_receiver_killed_mid_batch(void **state)
{
    (void)state;
    receiver_killed("16");
}

static void test_deadline(void **state)
{
    child_t *r = spawn("recv", "64", NULL, NULL);
    child_t *d = spawn("deadline", NULL, NULL, NULL);

    (void)state;
    relay_desc(r, d);
    expect_line(d, "READY", 10000);
    assert_int_equal(kill(r->pid, SIGSTOP), 0);
    child_say(d, "GO");
    print_message("# %s\n", expect_line(d, "TIMEDOUT", 5000));
    expect_line(d, "RETRYING", 5000);
    usleep(2250 * 1000);   /* between the stall (1.5 s) and a second one */
    assert_int_equal(kill(r->pid, SIGCONT), 0);
    print_message("# %s\n", expect_line(d, "RETRY ", 10000));
    assert_int_equal(kill(r->pid, SIGSTOP), 0);
    child_say(d, "GO2");
    print_message("# %s\n", expect_line(d, "STALLED", 5000));
    print_message("# %s\n", expect_line(d, "RESET", 5000));
    assert_int_equal(kill(r->pid, SIGCONT), 0);
    child_say(d, "CONT");
    expect_line(d, "REUSE ok", 15000);
    assert_int_equal(child_wait(d, 10000), 0);
    recv_result(r, 0);
}

/* Runs `cmd` with sh; true when it exited 0. */
static bool sh_ok(const char *cmd)
{
    int rc = system(cmd);

    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

/* tcp only: a partition met by the first connect. The test moves into a
 * network namespace of its own (lo only, so no other process sees the
 * rule), drops the SYNs there, and the sender's write must fail as a
 * peer error well before the kernel's 127 s; with the rule gone the next
 * write connects. Skipped where namespaces or iptables are refused. */
static void test_connect_blackholed(void **state)
{
    int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    child_t *r, *s;
    const char *l;
    bool ok;

    (void)state;
    /* (cmocka's TAP skip reads as a failure to meson: say it, return) */
    if (home < 0 || unshare(CLONE_NEWNET) != 0) {
        print_message("# skip: no network namespace (%s)\n", strerror(errno));
        if (home >= 0) {
            close(home);
        }
        return;
    }
    ok = sh_ok("ip link set lo up") &&
         sh_ok("iptables -w -A INPUT -p tcp --syn -j DROP 2>/dev/null");
    if (ok) {
        sh_ok("iptables -w -D INPUT -p tcp --syn -j DROP");
    }
    if (!ok) {
        assert_int_equal(setns(home, CLONE_NEWNET), 0);
        close(home);
        print_message("# skip: ip or iptables refused in a namespace\n");
        return;
    }
    r = spawn("recv", "16", NULL, NULL);
    s = spawn("blackhole", NULL, NULL, NULL);
    /* before the descriptor: importing it creates the endpoint */
    assert_true(sh_ok("iptables -w -A INPUT -p tcp --syn -j DROP"));
    relay_desc(r, s);
    expect_line(s, "READY", 10000);
    child_say(s, "GO");
    print_message("# %s\n", expect_line(s, "UNREACHABLE ", 45000));
    assert_true(sh_ok("iptables -w -D INPUT -p tcp --syn -j DROP"));
    child_say(s, "HEALED");
    l = expect_line(s, "HEALED ", 15000);
    print_message("# %s\n", l);
    assert_non_null(strstr(l, "BT_OK"));
    /* then a partition of the connected link with a layer in flight */
    expect_line(s, "CONNECTED", 30000);
    assert_true(sh_ok("iptables -w -A INPUT -p tcp -j DROP"));
    child_say(s, "CUT");
    print_message("# %s\n", expect_line(s, "CUT ", 70000));
    assert_true(sh_ok("iptables -w -D INPUT -p tcp -j DROP"));
    child_say(s, "HEAL");
    expect_line(s, "SURVIVED", 60000);
    assert_int_equal(child_wait(s, 10000), 0);
    recv_result(r, 0);
    /* back home: the children are gone, the namespace goes with them */
    assert_int_equal(setns(home, CLONE_NEWNET), 0);
    close(home);
}

static void test_corrupt_descriptor(void **state)
{
    child_t *r = spawn("recv", "1", NULL, NULL);
    child_t *c = spawn("corrupt", NULL, NULL, NULL);

    (void)state;
    relay_desc(r, c);
    expect_line(c, "CORRUPT ok", 10000);
    assert_int_equal(child_wait(c, 10000), 0);
    recv_result(r, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_random_slices, kill_all),
        cmocka_unit_test_teardown(test_three_senders, kill_all),
        cmocka_unit_test_teardown(test_receiver_killed, kill_all),
        cmocka_unit_test_teardown(test_deadline, kill_all),
        cmocka_unit_test_teardown(test_corrupt_descriptor, kill_all),
        /* last: the transport's own case (tcp: a partition at connect;
         * shm: a batch cut by a killed receiver, left out over tcp, its
         * comment says why) */
        expect_tcp() ? (struct CMUnitTest)cmocka_unit_test_teardown(
                           test_connect_blackholed, kill_all)
                     : (struct CMUnitTest)cmocka_unit_test_teardown(
                           test_receiver_killed_mid_batch, kill_all),
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);

    signal(SIGPIPE, SIG_IGN);
    if (getenv("XFER_TEST") != NULL) {   /* run one test by name pattern */
        cmocka_set_test_filter(getenv("XFER_TEST"));
    }
    return _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
}
