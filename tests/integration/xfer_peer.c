/* A process at one end of the xfer integration tests (xfer_integration.c
 * starts several). Descriptors travel as "DESC <hex>" lines on stdin and
 * stdout; the driver relays them and sends commands.
 *
 *   xfer_peer recv MB             region of MB MiB; verifies every transfer
 *                                 whose user bytes list its slices and sum,
 *                                 acks it to the sender; "PEER <hex>" lines
 *                                 name senders; "QUIT" prints RESULT
 *   xfer_peer send PART N COUNT   COUNT random slice lists into part PART of
 *                                 N of the receiver's region, each acked
 *   xfer_peer blast MB [KB]       streams MB-MiB writes to two receivers
 *                                 (with KB: each as KB-KiB slices scattered
 *                                 in reverse order, a KV-shaped batch);
 *                                 "KILLED" says the first one was killed
 *   xfer_peer deadline            a write the stopped receiver cannot finish,
 *                                 then a stream stalled past its stall bound
 *                                 times out; after "CONT" memory is reused
 *   xfer_peer corrupt             damaged descriptors are refused
 *   xfer_peer blackhole           a write to a receiver whose SYNs are
 *                                 dropped ("GO") fails as unreachable well
 *                                 before the kernel's own connect timeout;
 *                                 after "HEALED" the next write connects
 *
 * XFER_PLAIN set in the environment: one UCX operation per slice
 * (bt_xfer_ctx_params_t plain_slices), to run the same tests over the
 * path before batching.
 *
 * Exit status 0 when every check held; messages on stderr say why not. */
#include "xfer/xfer.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/loop.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_LEN (1 << 20)
#define MAX_PEERS 8

static struct event_base *base;
static bt_xfer_ctx_t *ctx;
static char line_buf[LINE_MAX_LEN];
static size_t line_len;

static void die(const char *msg)
{
    fprintf(stderr, "xfer_peer %d: FAIL %s\n", (int)getpid(), msg);
    exit(1);
}

/* --- lines on stdin/stdout ------------------------------------------ */

/* Next line from stdin without the newline, waiting up to `ms`; NULL on
 * EOF or timeout. */
static char *read_line(uint64_t ms)
{
    static char out[LINE_MAX_LEN];
    bt_deadline_t end = bt_deadline_in_ms(ms);

    for (;;) {
        char *nl = memchr(line_buf, '\n', line_len);

        if (nl != NULL) {
            size_t n = (size_t)(nl - line_buf);

            memcpy(out, line_buf, n);
            out[n] = '\0';
            memmove(line_buf, nl + 1, line_len - n - 1);
            line_len -= n + 1;
            return out;
        }
        if (line_len == sizeof(line_buf)) {
            return NULL;
        }
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        if (poll(&pfd, 1, ms == 0 ? 0 : 10) <= 0) {
            if (bt_deadline_passed(end)) {
                return NULL;
            }
            continue;
        }
        ssize_t k = read(0, line_buf + line_len, sizeof(line_buf) - line_len);
        if (k <= 0) {
            return NULL;
        }
        line_len += (size_t)k;
    }
}

/* Non-blocking: a complete line if one is there. */
static char *poll_line(void)
{
    return read_line(0);
}

static void print_hex(const char *tag, const void *p, size_t n)
{
    const uint8_t *b = p;

    printf("%s ", tag);
    for (size_t i = 0; i < n; i++) {
        printf("%02x", b[i]);
    }
    printf("\n");
    fflush(stdout);
}

static void *parse_hex(const char *s, size_t *len_p)
{
    size_t n = strlen(s) / 2;
    uint8_t *b = malloc(n ? n : 1);

    for (size_t i = 0; i < n; i++) {
        unsigned v;

        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            free(b);
            return NULL;
        }
        b[i] = (uint8_t)v;
    }
    *len_p = n;
    return b;
}

static bt_xfer_remote_t *import_line(const char *want_tag)
{
    char *l = read_line(10000);
    size_t tl = strlen(want_tag), len;
    bt_xfer_remote_t *rm;
    void *blob;

    if (l == NULL || strncmp(l, want_tag, tl) != 0 || l[tl] != ' ') {
        die("no descriptor line");
    }
    blob = parse_hex(l + tl + 1, &len);
    if (blob == NULL || bt_xfer_remote_import(ctx, blob, len, &rm) != BT_OK) {
        die("cannot import descriptor");
    }
    free(blob);
    return rm;
}

static void export_region(bt_xfer_region_t *r)
{
    void *blob;
    size_t len;

    if (bt_xfer_region_export(r, &blob, &len) != BT_OK) {
        die("export");
    }
    print_hex("DESC", blob, len);
    free(blob);
}

static void lanes_cb(void *arg, const bt_xfer_peer_stats_t *s)
{
    (void)arg;
    printf("LANES %s MODE %s\n", s->lanes,
           s->mode == BT_XFER_MODE_PUT ? "put" : "am");
    fflush(stdout);
}

/* Runs the loop until *flag or `ms` passed; wakes every 5 ms to read
 * commands through `idle` when given. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static bool run_until(const bool *flag, uint64_t ms, void (*idle)(void))
{
    struct timeval tv = {0, 5000};
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    bt_deadline_t end = bt_deadline_in_ms(ms);

    event_add(tick, &tv);
    while (!*flag && !bt_deadline_passed(end)) {
        event_base_loop(base, EVLOOP_ONCE);
        if (idle != NULL) {
            idle();
        }
    }
    event_free(tick);
    return *flag;
}

static uint64_t fnv(uint64_t h, const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h;
}

#define FNV0 0xcbf29ce484222325ull

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* --- recv ------------------------------------------------------------- */

static bt_xfer_region_t *rx_region;
static bt_xfer_remote_t *rx_peers[MAX_PEERS];
static int n_rx_peers, rx_ok, rx_bad, rx_plain;
static bool rx_quit;

static void ack_done_cb(void *arg, bt_status_t st)
{
    (void)arg;
    if (st != BT_OK) {
        fprintf(stderr, "xfer_peer recv: ack failed: %s\n", bt_status_str(st));
    }
}

static void rx_notify_cb(void *arg, const bt_xfer_notify_t *n)
{
    const uint8_t *u = n->user;
    uint8_t *region = bt_xfer_region_base(rx_region);
    uint64_t rlen = bt_xfer_region_length(rx_region), sum, h = FNV0;
    uint32_t cnt;
    bool ok = true;

    (void)arg;
    if (n->user_len < 12) {
        rx_plain++;
        return;
    }
    memcpy(&sum, u, 8);
    memcpy(&cnt, u + 8, 4);
    if (n->user_len != 12 + (size_t)cnt * 16 || n->status != BT_OK) {
        ok = false;
    }
    for (uint32_t i = 0; ok && i < cnt; i++) {
        uint64_t off, len;

        memcpy(&off, u + 12 + i * 16, 8);
        memcpy(&len, u + 12 + i * 16 + 8, 8);
        if (len > rlen || off > rlen - len) {
            ok = false;
            break;
        }
        h = fnv(h, region + off, len);
    }
    ok = ok && h == sum;
    if (ok) {
        rx_ok++;
    } else {
        rx_bad++;
        fprintf(stderr, "xfer_peer recv: transfer %llu from %016llx failed "
                "verification\n", (unsigned long long)n->lease_id,
                (unsigned long long)n->sender_id);
    }
    for (int i = 0; i < n_rx_peers; i++) {
        if (bt_xfer_remote_owner_id(rx_peers[i]) == n->sender_id) {
            uint8_t verdict = ok ? 1 : 0;
            bt_xfer_params_t p = {
                .remote = rx_peers[i], .timeout_ms = 5000, .notify = true,
                .lease_id = n->lease_id, .layer = 0, .user = &verdict,
                .user_len = 1, .cb = ack_done_cb,
            };
            bt_xfer_op_t *op;

            if (bt_xfer_write(ctx, &p, &op) != BT_IN_PROGRESS) {
                fprintf(stderr, "xfer_peer recv: cannot ack\n");
            }
        }
    }
}

static void rx_idle(void)
{
    char *l;

    while ((l = poll_line()) != NULL) {
        if (strncmp(l, "PEER ", 5) == 0 && n_rx_peers < MAX_PEERS) {
            size_t len;
            void *blob = parse_hex(l + 5, &len);

            if (blob == NULL || bt_xfer_remote_import(
                                    ctx, blob, len,
                                    &rx_peers[n_rx_peers]) != BT_OK) {
                die("recv: bad PEER line");
            }
            n_rx_peers++;
            free(blob);
            printf("PEERED\n");
            fflush(stdout);
        } else if (strcmp(l, "QUIT") == 0) {
            rx_quit = true;
        }
    }
}

static int role_recv(size_t mb)
{
    if (bt_xfer_region_alloc(ctx, mb << 20, &rx_region) != BT_OK) {
        die("recv: region");
    }
    memset(bt_xfer_region_base(rx_region), 0, mb << 20);
    bt_xfer_ctx_set_notify_cb(ctx, rx_notify_cb, NULL);
    export_region(rx_region);
    run_until(&rx_quit, 120000, rx_idle);
    printf("RESULT ok=%d bad=%d plain=%d\n", rx_ok, rx_bad, rx_plain);
    fflush(stdout);
    for (int i = 0; i < n_rx_peers; i++) {
        bt_xfer_remote_destroy(rx_peers[i]);
    }
    return rx_quit ? 0 : 1;
}

/* --- send ------------------------------------------------------------- */

typedef struct {
    bool        done;
    bt_status_t status;
    uint64_t    end_ns;
} wait_t;

static void wait_cb(void *arg, bt_status_t st)
{
    wait_t *w = arg;

    w->status = st;
    w->end_ns = bt_now_ns();
    w->done = true;
}

static bool ack_seen;
static uint64_t ack_lease;
static uint8_t ack_verdict;

static void tx_notify_cb(void *arg, const bt_xfer_notify_t *n)
{
    (void)arg;
    if (n->user_len == 1) {
        ack_lease = n->lease_id;
        ack_verdict = *(const uint8_t *)n->user;
        ack_seen = true;
    }
}

#define SRC_LEN (32u << 20)
#define CELLS 32

static int role_send(int part, int nparts, int count)
{
    bt_xfer_region_t *src;
    bt_xfer_remote_t *rm;
    uint8_t *s;
    int ok = 0, bad = 0, failed = 0;

    rng_state = 0x9e3779b97f4a7c15ull ^ ((uint64_t)part << 32) ^
                (uint64_t)getpid();
    if (bt_xfer_region_alloc(ctx, SRC_LEN, &src) != BT_OK) {
        die("send: region");
    }
    s = bt_xfer_region_base(src);
    for (size_t i = 0; i < SRC_LEN; i += 8) {
        uint64_t v = rnd();

        memcpy(s + i, &v, 8);
    }
    bt_xfer_ctx_set_notify_cb(ctx, tx_notify_cb, NULL);
    rm = import_line("DESC");
    export_region(src);
    bt_xfer_ctx_peers_foreach(ctx, lanes_cb, NULL);
    char *l = read_line(10000);
    if (l == NULL || strcmp(l, "GO") != 0) {
        die("send: no GO");
    }
    uint64_t plen = bt_xfer_remote_length(rm) / (uint64_t)nparts;
    uint64_t pbase = plen * (uint64_t)part, cell = plen / CELLS;

    for (int t = 0; t < count; t++) {
        bt_xfer_slice_t sl[2 * CELLS];
        uint8_t user[12 + 2 * CELLS * 16];
        int order[CELLS], n = 0;
        uint64_t h = FNV0;
        uint32_t cnt;

        for (int i = 0; i < CELLS; i++) {
            order[i] = i;
        }
        for (int i = CELLS - 1; i > 0; i--) {
            int j = (int)(rnd() % (uint64_t)(i + 1)), tmp = order[i];

            order[i] = order[j];
            order[j] = tmp;
        }
        int k = 1 + (int)(rnd() % 16);
        for (int i = 0; i < k; i++) {
            uint64_t maxlen = (rnd() % 4 == 0) ? 64 : cell / 2;
            uint64_t len = 1 + rnd() % maxlen;
            uint64_t roff = pbase + (uint64_t)order[i] * cell +
                            rnd() % (cell - len);
            uint64_t loff = rnd() % (SRC_LEN - len);

            if (len >= 2 && rnd() % 4 == 0) {
                /* Two neighbours in both spaces: coalesced on the way. */
                uint64_t a = len / 2;

                sl[n++] = (bt_xfer_slice_t){s + loff, roff, a};
                sl[n++] = (bt_xfer_slice_t){s + loff + a, roff + a, len - a};
            } else {
                sl[n++] = (bt_xfer_slice_t){s + loff, roff, len};
            }
        }
        cnt = (uint32_t)n;
        for (int i = 0; i < n; i++) {
            h = fnv(h, sl[i].local, sl[i].len);
            memcpy(user + 12 + i * 16, &sl[i].remote_off, 8);
            memcpy(user + 12 + i * 16 + 8, &sl[i].len, 8);
        }
        memcpy(user, &h, 8);
        memcpy(user + 8, &cnt, 4);

        wait_t w = {0};
        bt_xfer_params_t p = {
            .remote = rm, .slices = sl, .n_slices = (size_t)n,
            .timeout_ms = 5000, .notify = true, .lease_id = (uint64_t)t,
            .layer = 1, .user = user, .user_len = 12 + (size_t)n * 16,
            .cb = wait_cb, .arg = &w,
        };
        bt_xfer_op_t *op;

        ack_seen = false;
        if (bt_xfer_write(ctx, &p, &op) != BT_IN_PROGRESS) {
            die("send: write refused");
        }
        if (!run_until(&w.done, 10000, NULL) || w.status != BT_OK) {
            fprintf(stderr, "xfer_peer send: transfer %d: %s\n", t,
                    w.done ? bt_status_str(w.status) : "no callback");
            failed++;
            break;
        }
        if (!run_until(&ack_seen, 10000, NULL) || ack_lease != (uint64_t)t) {
            fprintf(stderr, "xfer_peer send: transfer %d: no ack\n", t);
            failed++;
            break;
        }
        if (ack_verdict == 1) {
            ok++;
        } else {
            bad++;
        }
    }
    printf("SENT ok=%d bad=%d failed=%d\n", ok, bad, failed);
    fflush(stdout);
    bt_xfer_remote_destroy(rm);
    return ok == count ? 0 : 1;
}

/* --- blast: a receiver dies mid-transfer -------------------------------- */

#define BLAST_TIMEOUT_MS 2000
#define BLAST_WINDOW 2

typedef struct {
    int         target;
    uint64_t    start_ns;
    bool        in_use;
} blast_op_t;

static bt_xfer_remote_t *bl_rm[2];
static blast_op_t bl_ops[2][BLAST_WINDOW];
static int bl_ok[2], bl_err[2], bl_ok_after_kill[2], bl_ok_after_fail[2];
static int bl_in_flight[2];
static uint64_t bl_kill_ns, bl_first_fail_ns, bl_worst_ms;
static bt_status_t bl_fail_status;
static bool bl_dead_seen, bl_started, bl_finished;
static uint8_t *bl_src;
static size_t bl_len;
static bt_xfer_slice_t *bl_sl[2][BLAST_WINDOW];  /* KV-shaped, or NULL */
static size_t bl_n_sl;

static void blast_post(int t, int slot);

static void blast_cb(void *arg, bt_status_t st)
{
    blast_op_t *b = arg;
    int t = b->target;
    uint64_t ms = (bt_now_ns() - b->start_ns) / 1000000;

    b->in_use = false;
    bl_in_flight[t]--;
    if (st == BT_OK) {
        bl_ok[t]++;
        if (bl_kill_ns) {
            bl_ok_after_kill[t]++;
        }
        if (bl_dead_seen) {
            bl_ok_after_fail[t]++;
        }
    } else {
        bl_err[t]++;
        fprintf(stderr, "xfer_peer blast: op to receiver %d: %s after %llu ms\n",
                t + 1, bt_status_name(st), (unsigned long long)ms);
        if (t == 0 && !bl_dead_seen) {
            bl_dead_seen = true;
            bl_first_fail_ns = bt_now_ns();
            bl_fail_status = st;
        }
        if (ms > bl_worst_ms) {
            bl_worst_ms = ms;
        }
    }
    if (!bl_started && bl_ok[0] >= 2 && bl_ok[1] >= 2) {
        bl_started = true;
        printf("STARTED\n");
        fflush(stdout);
    }
    /* Keep the window full, but stop feeding a receiver seen dead. */
    if (!(t == 0 && bl_dead_seen) && !bl_finished) {
        blast_post(t, (int)(b - bl_ops[t]));
    }
    /* Done once the dead peer's transfers all failed and the live one
     * still completes after that. */
    if (bl_dead_seen && bl_in_flight[0] == 0 && bl_ok_after_fail[1] >= 10) {
        bl_finished = true;
    }
}

static void blast_post(int t, int slot)
{
    blast_op_t *b = &bl_ops[t][slot];
    bt_xfer_slice_t sl = {bl_src, (uint64_t)slot * bl_len, bl_len};
    bt_xfer_params_t p = {
        .remote = bl_rm[t], .slices = bl_n_sl ? bl_sl[t][slot] : &sl,
        .n_slices = bl_n_sl ? bl_n_sl : 1,
        .timeout_ms = BLAST_TIMEOUT_MS, .notify = true, .cb = blast_cb,
        .arg = b,
    };
    bt_xfer_op_t *op;
    bt_status_t st;

    b->target = t;
    b->start_ns = bt_now_ns();
    st = bt_xfer_write(ctx, &p, &op);
    if (st == BT_IN_PROGRESS) {
        b->in_use = true;
        bl_in_flight[t]++;
    } else if (t == 0) {
        bl_err[0]++;   /* refused at once: the peer is known dead */
    } else {
        fprintf(stderr, "xfer_peer blast: write to live peer refused: %s\n",
                bt_status_str(st));
        bl_err[1]++;
    }
}

static void blast_idle(void)
{
    char *l = poll_line();

    if (l != NULL && strcmp(l, "KILLED") == 0) {
        bl_kill_ns = bt_now_ns();
        bl_ok_after_kill[0] = bl_ok_after_kill[1] = 0;
    }
}

static int role_blast(size_t mb, size_t kb)
{
    bt_xfer_region_t *src;
    bool never = false;

    bl_len = mb << 20;
    if (bt_xfer_region_alloc(ctx, bl_len, &src) != BT_OK) {
        die("blast: region");
    }
    bl_src = bt_xfer_region_base(src);
    memset(bl_src, 0x5a, bl_len);
    /* KV-shaped: local slices in order, remote ones reversed in the
     * slot, so none coalesce and every write is one batch of many */
    bl_n_sl = kb > 0 ? bl_len / (kb << 10) : 0;
    for (int t = 0; bl_n_sl > 0 && t < 2; t++) {
        for (int i = 0; i < BLAST_WINDOW; i++) {
            bl_sl[t][i] = calloc(bl_n_sl, sizeof(bt_xfer_slice_t));
            if (bl_sl[t][i] == NULL) {
                die("blast: slices");
            }
            for (size_t k = 0; k < bl_n_sl; k++) {
                bl_sl[t][i][k] = (bt_xfer_slice_t){
                    bl_src + k * (kb << 10),
                    (uint64_t)i * bl_len + (bl_n_sl - 1 - k) * (kb << 10),
                    kb << 10};
            }
        }
    }
    bl_rm[0] = import_line("DESC");
    bl_rm[1] = import_line("DESC");
    bt_xfer_ctx_peers_foreach(ctx, lanes_cb, NULL);
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < BLAST_WINDOW; i++) {
            blast_post(t, i);
        }
    }
    run_until(&bl_finished, 20000, blast_idle);
    /* A new write to the dead peer fails too, within its deadline. */
    wait_t w = {0};
    bt_xfer_slice_t sl = {bl_src, 0, 4096};
    bt_xfer_params_t p = {
        .remote = bl_rm[0], .slices = &sl, .n_slices = 1,
        .timeout_ms = BLAST_TIMEOUT_MS, .cb = wait_cb, .arg = &w,
    };
    bt_xfer_op_t *op;
    uint64_t t0 = bt_now_ns();
    bt_status_t st = bt_xfer_write(ctx, &p, &op);
    if (st == BT_IN_PROGRESS) {
        run_until(&w.done, BLAST_TIMEOUT_MS + 1000, NULL);
        st = w.done ? w.status : BT_ERR_INTERNAL;
    }
    uint64_t probe_ms = (bt_now_ns() - t0) / 1000000;
    /* Let the last writes to the live peer drain before reporting. */
    bl_finished = true;
    while (bl_in_flight[1] > 0) {
        run_until(&never, 10, NULL);
    }
    printf("BLAST dead_fail_after_kill_ms=%llu worst_op_ms=%llu status=%s "
           "r1_ok=%d r1_err=%d r2_ok=%d r2_ok_after_kill=%d "
           "r2_ok_after_fail=%d r2_err=%d probe=%s probe_ms=%llu\n",
           bl_kill_ns && bl_dead_seen && bl_first_fail_ns > bl_kill_ns
               ? (unsigned long long)((bl_first_fail_ns - bl_kill_ns) / 1000000)
               : 0ull,
           (unsigned long long)bl_worst_ms, bt_status_name(bl_fail_status),
           bl_ok[0], bl_err[0], bl_ok[1], bl_ok_after_kill[1],
           bl_ok_after_fail[1], bl_err[1],
           bt_status_name(st), (unsigned long long)probe_ms);
    fflush(stdout);
    bt_xfer_remote_destroy(bl_rm[0]);
    bt_xfer_remote_destroy(bl_rm[1]);
    /* Both halves, on every transport: the dead peer's transfers fail
     * with the peer status within their deadline, and the live peer's
     * all complete, also after the failure was handled. */
    bool live_ok = bl_err[1] == 0 && bl_ok_after_fail[1] >= 10;

    if (!live_ok) {
        fprintf(stderr, "xfer_peer blast: FAIL: transfers to the live peer "
                "did not all complete after the other died\n");
    }
    if (!bl_kill_ns || !bl_dead_seen || !live_ok ||
        bl_fail_status != BT_ERR_PEER_DIED ||
        bl_worst_ms > BLAST_TIMEOUT_MS + 300 ||
        st == BT_OK || probe_ms > BLAST_TIMEOUT_MS + 300) {
        return 1;
    }
    return 0;
}

/* --- deadline ----------------------------------------------------------- */

/* All peers together: endpoints reset because they stalled, and those
 * of them set aside until UCX reports them failed. */
typedef struct {
    uint64_t resets;
    uint64_t stale;
} peer_sums_t;

static void sums_cb(void *arg, const bt_xfer_peer_stats_t *st)
{
    peer_sums_t *s = arg;

    s->resets += st->resets;
    s->stale += st->stale_endpoints;
}

static peer_sums_t peer_sums(void)
{
    peer_sums_t s = {0, 0};

    bt_xfer_ctx_peers_foreach(ctx, sums_cb, &s);
    return s;
}

static uint64_t peer_resets(void)
{
    return peer_sums().resets;
}

/* One layer of `sl` as a stream with a minute's deadline and a stall
 * bound of `stall_ms` (then its final message when `complete`); prints
 * "TAG status ms" once it ended (or 8 s passed) and returns the status. */
static bt_status_t stream_once(bt_xfer_remote_t *rm, const bt_xfer_slice_t *sl,
                               uint64_t stall_ms, bool complete,
                               const char *tag, uint64_t *ms_p)
{
    wait_t ws = {0};
    bt_xfer_stream_params_t sp = {
        .remote = rm, .timeout_ms = 60000, .stall_ms = stall_ms,
        .lease_id = 9, .cb = wait_cb, .arg = &ws,
    };
    bt_xfer_stream_t *stream;
    uint64_t t0 = bt_now_ns();

    if (bt_xfer_stream_create(ctx, &sp, &stream) != BT_OK ||
        bt_xfer_stream_post(stream, 0, sl, 1) != BT_OK ||
        (complete && bt_xfer_stream_complete(stream, NULL, 0) != BT_OK)) {
        die("deadline: stream refused");
    }
    if (complete) {
        printf("RETRYING\n");
        fflush(stdout);
    }
    run_until(&ws.done, 8000, NULL);
    *ms_p = (ws.end_ns - t0) / 1000000;
    printf("%s %s %llu ms\n", tag, ws.done ? bt_status_name(ws.status) : "none",
           (unsigned long long)*ms_p);
    fflush(stdout);
    bt_xfer_stream_destroy(stream);
    return ws.done ? ws.status : BT_ERR_INTERNAL;
}

/* On the stopped receiver, over the endpoint a transfer went through:
 * a layer stalls for 1.5 s and the parent continues the receiver 2.25 s
 * after "RETRYING". Over tcp the stall closes the endpoint and the
 * stream posts the layer again over a new connection and completes;
 * over shm nothing is reset and it fails. Then, the receiver stopped
 * again ("GO2"), a stream whose deadline is a minute away fails once
 * its layer stalled for its 50 ms bound, over tcp after one more reset
 * and a retry whose fresh endpoint (never connected) is not reset. */
static void deadline_stall(bt_xfer_remote_t *rm, const bt_xfer_slice_t *sl)
{
    const char *tls = getenv("UCX_TLS");
    bool tcp = tls != NULL && strstr(tls, "tcp") != NULL;
    uint64_t ms;
    bt_status_t st;

    st = stream_once(rm, sl, 1500, true, "RETRY", &ms);
    if (st != (tcp ? BT_OK : BT_ERR_TIMED_OUT) || (tcp && ms < 1500)) {
        die("deadline: expected the stalled stream to complete over a new "
            "tcp connection (or to fail on shm)");
    }
    if (read_line(15000) == NULL) {
        die("deadline: no GO2");
    }
    st = stream_once(rm, sl, 50, false, "STALLED", &ms);
    if (st != BT_ERR_TIMED_OUT || ms < 45 || ms > 1000) {
        die("deadline: expected the stream to fail BT_ERR_TIMED_OUT after "
            "its 50 ms stall bound");
    }
    printf("RESET resets=%llu\n", (unsigned long long)peer_resets());
    fflush(stdout);
    if (peer_resets() != (tcp ? 2u : 0u)) {
        die("deadline: a stalled connected tcp endpoint was not closed, a "
            "connecting one or a shm one was");
    }
}

static int role_deadline(void)
{
    bt_xfer_region_t *src;
    bt_xfer_remote_t *rm;
    uint8_t *s;
    bt_xfer_op_t *op;
    size_t big = 16u << 20, small = 1u << 20;

    if (bt_xfer_region_alloc(ctx, 2 * big, &src) != BT_OK) {
        die("deadline: region");
    }
    s = bt_xfer_region_base(src);
    rng_state = 12345;
    for (size_t i = 0; i < 2 * big; i++) {
        s[i] = (uint8_t)rnd();
    }
    rm = import_line("DESC");
    {
        /* one transfer while the receiver runs: the endpoint is then
         * known to be connected, which a stall needs to reset it */
        wait_t w0 = {0};
        bt_xfer_slice_t sl0 = {s, 0, 4096};
        bt_xfer_params_t p0 = {
            .remote = rm, .slices = &sl0, .n_slices = 1, .timeout_ms = 10000,
            .cb = wait_cb, .arg = &w0,
        };

        if (bt_xfer_write(ctx, &p0, &op) != BT_IN_PROGRESS ||
            !run_until(&w0.done, 10000, NULL) || w0.status != BT_OK) {
            die("deadline: the first write failed");
        }
    }
    printf("READY\n");
    fflush(stdout);
    if (read_line(10000) == NULL) {
        die("deadline: no GO");
    }
    /* Active messages need the (stopped) receiver: cannot finish. */
    bt_xfer_remote_set_mode(rm, BT_XFER_MODE_AM);
    wait_t w = {0};
    bt_xfer_slice_t sl = {s, 0, big};
    bt_xfer_params_t p = {
        .remote = rm, .slices = &sl, .n_slices = 1, .timeout_ms = 50,
        .notify = true, .cb = wait_cb, .arg = &w,
    };
    uint64_t t0 = bt_now_ns();
    if (bt_xfer_write(ctx, &p, &op) != BT_IN_PROGRESS) {
        die("deadline: write refused");
    }
    run_until(&w.done, 3000, NULL);
    uint64_t ms = (w.end_ns - t0) / 1000000;
    printf("TIMEDOUT %s %llu ms\n", w.done ? bt_status_name(w.status) : "none",
           (unsigned long long)ms);
    fflush(stdout);
    if (!w.done || w.status != BT_ERR_TIMED_OUT || ms < 45 || ms > 1000) {
        die("deadline: expected BT_ERR_TIMED_OUT after ~50 ms");
    }
    if (peer_resets() != 0) {
        die("deadline: a request deadline closed the endpoint");
    }
    deadline_stall(rm, &sl);
    if (read_line(10000) == NULL) {
        die("deadline: no CONT");
    }
    /* Memory still usable: write elsewhere, read it back, compare. */
    bt_xfer_remote_set_mode(rm, BT_XFER_MODE_AUTO);
    memset(&w, 0, sizeof(w));
    sl = (bt_xfer_slice_t){s + big, big, small};
    p.slices = &sl;
    p.timeout_ms = 5000;
    if (bt_xfer_write(ctx, &p, &op) != BT_IN_PROGRESS ||
        !run_until(&w.done, 6000, NULL) || w.status != BT_OK) {
        die("deadline: write after the timeout failed");
    }
    memset(&w, 0, sizeof(w));
    sl = (bt_xfer_slice_t){s + big + small, big, small};
    p.notify = false;
    if (bt_xfer_read(ctx, &p, &op) != BT_IN_PROGRESS ||
        !run_until(&w.done, 6000, NULL) || w.status != BT_OK) {
        die("deadline: read back failed");
    }
    if (memcmp(s + big, s + big + small, small) != 0) {
        die("deadline: read back differs");
    }
    /* The timed-out rendezvous finishes once the receiver runs again. */
    bool never = false;
    for (int i = 0; i < 300 && bt_xfer_ctx_outstanding_reqs(ctx) > 0; i++) {
        run_until(&never, 10, NULL);
    }
    printf("REUSE ok zombie_reqs=%zu\n", bt_xfer_ctx_outstanding_reqs(ctx));
    fflush(stdout);
    bt_xfer_remote_destroy(rm);
    return 0;
}

/* --- blackhole -------------------------------------------------------------- */

/* One 4 KiB write with a minute's deadline; prints "TAG status ms". */
static bt_status_t write_once(bt_xfer_remote_t *rm, uint8_t *src,
                              uint64_t wait_ms, const char *tag)
{
    wait_t w = {0};
    bt_xfer_slice_t sl = {src, 0, 4096};
    bt_xfer_params_t p = {
        .remote = rm, .slices = &sl, .n_slices = 1, .timeout_ms = 60000,
        .cb = wait_cb, .arg = &w,
    };
    bt_xfer_op_t *op;
    uint64_t t0 = bt_now_ns();

    if (bt_xfer_write(ctx, &p, &op) != BT_IN_PROGRESS) {
        die("blackhole: write refused");
    }
    run_until(&w.done, wait_ms, NULL);
    printf("%s %s %llu ms\n", tag, w.done ? bt_status_name(w.status) : "none",
           (unsigned long long)((bt_now_ns() - t0) / 1000000));
    fflush(stdout);
    return w.done ? w.status : BT_ERR_INTERNAL;
}

#define BLACKHOLE_LAYER (8u << 20)

/* Then a partition cuts the connected link ("CUT": the parent drops every
 * tcp packet) while a layer is in flight: it stalls for its 2 s bound, the
 * endpoint is set aside with the layer still queued in it, and the retry,
 * on a connect that cannot finish, stalls too. After "HEAL" the queued bytes may go out; the
 * process must live through that, and write again over a new endpoint.
 * (A forced close of the stalled endpoint here crashed UCX 1.13's tcp
 * progress at healing in the fault matrix.) */
static void blackhole_stall(bt_xfer_remote_t *rm, uint8_t *src)
{
    wait_t ws = {0};
    bt_xfer_slice_t sl = {src, 0, BLACKHOLE_LAYER};
    bt_xfer_stream_params_t sp = {
        .remote = rm, .timeout_ms = 120000, .stall_ms = 2000,
        .lease_id = 11, .cb = wait_cb, .arg = &ws,
    };
    bt_xfer_stream_t *stream;
    uint64_t t0, stale;
    bool never = false;

    printf("CONNECTED resets=%llu\n", (unsigned long long)peer_resets());
    fflush(stdout);
    if (read_line(10000) == NULL) {
        die("blackhole: no CUT");
    }
    t0 = bt_now_ns();
    bt_xfer_remote_set_mode(rm, BT_XFER_MODE_AM);
    if (bt_xfer_stream_create(ctx, &sp, &stream) != BT_OK ||
        bt_xfer_stream_post(stream, 0, &sl, 1) != BT_OK ||
        bt_xfer_stream_complete(stream, NULL, 0) != BT_OK) {
        die("blackhole: stream refused");
    }
    run_until(&ws.done, 60000, NULL);
    stale = peer_sums().stale;
    printf("CUT %s %llu ms resets=%llu stale=%llu\n",
           ws.done ? bt_status_name(ws.status) : "none",
           (unsigned long long)((bt_now_ns() - t0) / 1000000),
           (unsigned long long)peer_resets(), (unsigned long long)stale);
    fflush(stdout);
    bt_xfer_stream_destroy(stream);
    /* the retry's own connect stalls too (not reset: it never connected) */
    if (!ws.done || ws.status != BT_ERR_TIMED_OUT || peer_resets() != 1 ||
        stale != 1) {
        die("blackhole: the cut stream did not time out after one reset "
            "that set its endpoint aside");
    }
    if (read_line(10000) == NULL) {
        die("blackhole: no HEAL");
    }
    /* the set-aside endpoint's bytes drain now; keep the loop turning */
    for (int i = 0; i < 20; i++) {
        char tag[32];

        run_until(&never, 100, NULL);
        snprintf(tag, sizeof(tag), "AFTER%d", i);
        if (write_once(rm, src, 10000, tag) != BT_OK) {
            die("blackhole: a write after the cut healed failed");
        }
    }
    printf("SURVIVED\n");
    fflush(stdout);
}

/* The first connect to the receiver meets a partition (the parent drops
 * its SYNs): the endpoint must fail on its own, through UCX's error path,
 * long before the kernel's ~127 s of SYN retries (xfer defaults:
 * UCX_TCP_SYN_CNT), so that a link that heals is usable at once. */
static int role_blackhole(void)
{
    bt_xfer_region_t *src, *big;
    bt_xfer_remote_t *rm;
    bt_status_t st;

    if (bt_xfer_region_alloc(ctx, 4096, &src) != BT_OK ||
        bt_xfer_region_alloc(ctx, BLACKHOLE_LAYER, &big) != BT_OK) {
        die("blackhole: region");
    }
    memset(bt_xfer_region_base(src), 0x5a, 4096);
    memset(bt_xfer_region_base(big), 0xa5, BLACKHOLE_LAYER);
    rm = import_line("DESC");
    printf("READY\n");
    fflush(stdout);
    if (read_line(10000) == NULL) {
        die("blackhole: no GO");
    }
    st = write_once(rm, bt_xfer_region_base(src), 40000, "UNREACHABLE");
    if (!bt_status_is_peer_err(st)) {
        die("blackhole: the write behind the partition did not fail as a "
            "peer error within 40 s");
    }
    if (read_line(60000) == NULL) {
        die("blackhole: no HEALED");
    }
    st = write_once(rm, bt_xfer_region_base(src), 10000, "HEALED");
    if (st != BT_OK) {
        die("blackhole: the write after healing failed");
    }
    /* the endpoint that replaced the failed one keeps working */
    for (int i = 0; i < 50; i++) {
        char tag[32];

        snprintf(tag, sizeof(tag), "AGAIN%d", i);
        if (write_once(rm, bt_xfer_region_base(big), 10000, tag) != BT_OK) {
            die("blackhole: a later write failed");
        }
    }
    blackhole_stall(rm, bt_xfer_region_base(big));
    bt_xfer_remote_destroy(rm);
    return 0;
}

/* --- corrupt descriptors -------------------------------------------------- */

static int role_corrupt(void)
{
    char *l = read_line(10000);
    bt_xfer_remote_t *rm = NULL;
    uint8_t junk[300];
    size_t len;
    uint8_t *blob;

    if (l == NULL || strncmp(l, "DESC ", 5) != 0) {
        die("corrupt: no DESC");
    }
    blob = parse_hex(l + 5, &len);
    if (blob == NULL) {
        die("corrupt: hex");
    }
    if (bt_xfer_remote_import(ctx, blob, len / 2, &rm) != BT_ERR_TRUNCATED) {
        die("truncated descriptor not refused as truncated");
    }
    blob[len - 20] ^= 0x01;
    if (bt_xfer_remote_import(ctx, blob, len, &rm) != BT_ERR_CORRUPT) {
        die("flipped bit not refused as corrupt");
    }
    blob[len - 20] ^= 0x01;
    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)rnd();
    }
    if (bt_xfer_remote_import(ctx, junk, sizeof(junk), &rm) != BT_ERR_CORRUPT) {
        die("random bytes not refused as corrupt");
    }
    blob[4] = 9;
    if (bt_xfer_remote_import(ctx, blob, len, &rm) != BT_ERR_UNSUPPORTED) {
        die("future version not refused as unsupported");
    }
    if (rm != NULL) {
        die("a remote came out of a bad descriptor");
    }
    free(blob);
    printf("CORRUPT ok\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    bt_xfer_ctx_params_t cp = {.log_lanes = true,
                               .plain_slices = getenv("XFER_PLAIN") != NULL};
    int rc;

    if (argc < 2) {
        fprintf(stderr, "usage: xfer_peer recv|send|blast|deadline|corrupt|blackhole\n");
        return 2;
    }
    bt_log_init("xfer_peer", BT_LOG_LEVEL_INFO, BT_LOG_FORMAT_TEXT);
    rng_state = 0x2545f4914f6cdd1dull ^ (uint64_t)getpid();
    base = bt_loop_create();
    if (bt_xfer_ctx_create(base, &cp, &ctx) != BT_OK) {
        die("context");
    }
    if (strcmp(argv[1], "recv") == 0 && argc == 3) {
        rc = role_recv((size_t)atoi(argv[2]));
    } else if (strcmp(argv[1], "send") == 0 && argc == 5) {
        rc = role_send(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    } else if (strcmp(argv[1], "blast") == 0 && (argc == 3 || argc == 4)) {
        rc = role_blast((size_t)atoi(argv[2]),
                        argc == 4 ? (size_t)atoi(argv[3]) : 0);
    } else if (strcmp(argv[1], "deadline") == 0) {
        rc = role_deadline();
    } else if (strcmp(argv[1], "corrupt") == 0) {
        rc = role_corrupt();
    } else if (strcmp(argv[1], "blackhole") == 0) {
        rc = role_blackhole();
    } else {
        fprintf(stderr, "xfer_peer: bad arguments\n");
        rc = 2;
    }
    bt_xfer_ctx_destroy(ctx);
    event_base_free(base);
    return rc;
}
