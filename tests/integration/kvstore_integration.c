/* baton-kvstore as a real process on loopback, driven through the client
 * library (common/kvclient) over the transport the environment names
 * (meson runs this over shared memory and over tcp): puts, longest-prefix
 * lookups and gets byte for byte; a restart on the same --disk-dir serves
 * every committed block; a block file corrupted while the store is down is
 * a miss (with the chain after it), not garbage; a store SIGKILLed
 * mid-put fails the put within its deadline and a fresh store serves what
 * was committed before; eviction under a small --dram-bytes never takes a
 * pinned block; hostile requests get precise errors; blocks are served
 * while a MoE placement re-plan runs.
 *
 * Every wait is bounded; the store is killed at the end of each test, also
 * when an assertion fails. */
#include "kvclient/kvc.h"

#include "base/clock.h"
#include "base/loop.h"
#include "base/sha256.h"
#include "kvstore.pb-c.h"
#include "rpc/client.h"
#include "store/disk.h"
#include "xfer/xfer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define BLOCK_TOKENS 16
#define MAX_BLOCKS 64

/* 4 layers, 2 kv heads, head_dim 64, 16 tokens, f16: 32 KiB a block */
static const bt_kv_geom_t geom = { 4, 2, 64, BLOCK_TOKENS, BT_KV_DTYPE_F16 };
static uint64_t block_bytes;

static struct event_base *base;
static bt_xfer_ctx_t *xfer;
static bt_rpc_client_t *rpc;
static bt_xfer_region_t *local;      /* sources and destinations */
static char dir[256];

static pid_t store_pid = -1;
static int store_port;
static bt_kvc_t *kvc;
static bt_rpc_channel_t *raw;       /* for calls the client does not make */

typedef struct {
    uint8_t  root[32];
    uint32_t tokens[MAX_BLOCKS * BLOCK_TOKENS];
    uint8_t  hash[MAX_BLOCKS * 32];
    uint8_t *data;                   /* n blocks in the local region */
    uint8_t *back;                   /* n blocks read back */
    size_t   n;
} chain_t;

static size_t local_used;

static uint8_t *local_take(size_t bytes)
{
    uint8_t *p = (uint8_t *)bt_xfer_region_base(local) + local_used;

    assert_true(local_used + bytes <= bt_xfer_region_length(local));
    local_used += bytes;
    return p;
}

static void chain_init(chain_t *c, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 7;

    assert_true(n <= MAX_BLOCKS);
    memset(c, 0, sizeof(*c));
    c->n = n;
    bt_sha256(&seed, sizeof(seed), c->root);
    c->data = local_take(n * block_bytes);
    c->back = local_take(n * block_bytes);
    for (size_t i = 0; i < n; i++) {
        for (int t = 0; t < BLOCK_TOKENS; t++) {
            x = x * 1103515245u + 12345u;
            c->tokens[i * BLOCK_TOKENS + t] = x >> 12;
        }
        bt_kv_hash_block(i == 0 ? c->root : c->hash + (i - 1) * 32,
                         c->tokens + i * BLOCK_TOKENS, BLOCK_TOKENS,
                          c->hash + i * 32);
    }
    for (size_t b = 0; b < n * block_bytes; b++) {
        x = x * 1103515245u + 12345u;
        c->data[b] = (uint8_t)(x >> 16);
    }
}

/* ---- the store process ---- */

static void run_until(const bool *flag, uint64_t ms)
{
    uint64_t end = bt_now_ms() + ms;

    while (!*flag && bt_now_ms() < end) {
        struct timeval tv = { 0, 5000 };

        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

static void connect_store(void)
{
    char target[64];

    snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", store_port);
    assert_int_equal(bt_kvc_create(base, rpc, xfer, &(bt_kvc_opts_t){
                                       target, "test-model", "test-node", 5000, NULL },
                                   &kvc), BT_OK);
    raw = bt_rpc_channel_create(rpc, target, NULL);
    assert_non_null(raw);
}

static void disconnect_store(void)
{
    bool never = false;

    /* let fire-and-forget unpins and aborts finish */
    run_until(&never, 50);
    bt_kvc_destroy(kvc);
    kvc = NULL;
    bt_rpc_channel_destroy(raw);
    raw = NULL;
}

/* Starts baton-kvstore and reads its port line. */
/* Starts baton-kvstore on `port` (0: any) and reads its port line; with
 * `reconnect`, a new client connects to it (else the old one stays). */
static void start_store_on(const char *dram, bool disk, int port,
                           bool reconnect)
{
    const char *bin = getenv("KVSTORE_BIN");
    int out[2];
    char buf[512];
    size_t len = 0;
    uint64_t end;

    assert_non_null(bin);
    assert_int_equal(pipe(out), 0);
    store_pid = fork();
    assert_true(store_pid >= 0);
    if (store_pid == 0) {
        char dram_arg[64], dir_arg[320], port_arg[32];

        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        snprintf(dram_arg, sizeof(dram_arg), "--dram-bytes=%s", dram);
        snprintf(dir_arg, sizeof(dir_arg), "--disk-dir=%s", dir);
        snprintf(port_arg, sizeof(port_arg), "--grpc-port=%d", port);
        execl(bin, bin, port_arg, "--http-port=0", dram_arg,
              "--disk-bytes=64M", "--log-level=warn", disk ? dir_arg : NULL,
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    end = bt_now_ms() + 15000;
    while (bt_now_ms() < end) {
        struct pollfd pfd = { .fd = out[0], .events = POLLIN };
        char *p;
        ssize_t k;

        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        k = read(out[0], buf + len, sizeof(buf) - 1 - len);
        if (k <= 0) {
            break;
        }
        len += (size_t)k;
        buf[len] = '\0';
        p = strstr(buf, "grpc_port=");
        if (p != NULL && strchr(p, '\n') != NULL) {
            store_port = atoi(p + strlen("grpc_port="));
            break;
        }
    }
    close(out[0]);
    assert_true(store_port > 0);
    if (reconnect) {
        connect_store();
    }
}

static void start_store(const char *dram, bool disk)
{
    start_store_on(dram, disk, 0, true);
}

static int reap(uint64_t ms)
{
    uint64_t end = bt_now_ms() + ms;
    int status = 0;

    while (bt_now_ms() < end) {
        if (waitpid(store_pid, &status, WNOHANG) == store_pid) {
            store_pid = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(5000);
    }
    kill(store_pid, SIGKILL);
    waitpid(store_pid, &status, 0);
    store_pid = -1;
    fail_msg("baton-kvstore did not exit within %llu ms", (unsigned long long)ms);
    return -1;
}

static void stop_store(void)
{
    disconnect_store();
    kill(store_pid, SIGTERM);
    assert_int_equal(reap(10000), 0);
}

static void kill_store(void)
{
    kill(store_pid, SIGKILL);
    reap(5000);   /* UCX sees a dead shm peer only once it is reaped */
}

static int teardown(void **state)
{
    (void)state;
    if (store_pid > 0) {
        kill(store_pid, SIGKILL);
        waitpid(store_pid, NULL, 0);
        store_pid = -1;
    }
    if (kvc != NULL) {
        disconnect_store();
    }
    local_used = 0;
    return 0;
}

/* ---- blocking wrappers ---- */

typedef struct {
    bool                done;
    bt_status_t         status;
    size_t              n;
    bt_kvc_put_result_t put;
} wait_t;

static void lookup_cb(void *arg, bt_status_t st, size_t n)
{
    wait_t *w = arg;

    w->status = st;
    w->n = n;
    w->done = true;
}

static void put_cb(void *arg, bt_status_t st, const bt_kvc_put_result_t *r)
{
    wait_t *w = arg;

    w->status = st;
    if (r != NULL) {
        w->put = *r;
    }
    w->done = true;
}

static size_t lookup(const chain_t *c, size_t n, const uint32_t *tokens)
{
    wait_t w = { 0 };

    assert_int_equal(bt_kvc_lookup(kvc, c->hash, n, tokens,
                                   tokens != NULL ? n * BLOCK_TOKENS : 0, 0,
                                   lookup_cb, &w), BT_OK);
    run_until(&w.done, 10000);
    assert_true(w.done);
    assert_int_equal(w.status, BT_OK);
    return w.n;
}

static wait_t put_async(const chain_t *c, size_t from, size_t n,
                        void (*reserved)(void *), uint64_t timeout_ms)
{
    void *data[MAX_BLOCKS];
    wait_t w = { 0 };
    bt_kvc_put_t p = {
        .geom = geom, .block_bytes = block_bytes,
        .parent = from == 0 ? c->root : c->hash + (from - 1) * 32,
        .hashes = c->hash + from * 32, .tokens = c->tokens + from * BLOCK_TOKENS,
        .data = data, .n = n, .timeout_ms = timeout_ms, .reserved_cb = reserved,
    };

    for (size_t i = 0; i < n; i++) {
        data[i] = c->data + (from + i) * block_bytes;
    }
    assert_int_equal(bt_kvc_put(kvc, &p, put_cb, &w), BT_OK);
    run_until(&w.done, timeout_ms + 5000);
    assert_true(w.done);
    return w;
}

static bt_kvc_put_result_t put(const chain_t *c, size_t from, size_t n)
{
    wait_t w = put_async(c, from, n, NULL, 10000);

    assert_int_equal(w.status, BT_OK);
    return w.put;
}

/* Gets the first n blocks into c->back; the callback's status goes to
 * *status_p; returns how many verified and checks they are
 * byte-identical. */
static size_t get_async(chain_t *c, size_t n, void (*pinned)(void *),
                        uint64_t timeout_ms, bt_status_t *status_p)
{
    void *dst[MAX_BLOCKS];
    wait_t w = { 0 };
    bt_kvc_get_t g = {
        .hashes = c->hash, .tokens = c->tokens, .block_size = BLOCK_TOKENS,
        .block_bytes = block_bytes, .dst = dst, .n = n,
        .timeout_ms = timeout_ms, .pinned_cb = pinned,
    };

    memset(c->back, 0, n * block_bytes);
    for (size_t i = 0; i < n; i++) {
        dst[i] = c->back + i * block_bytes;
    }
    assert_int_equal(bt_kvc_get(kvc, &g, lookup_cb, &w), BT_OK);
    run_until(&w.done, timeout_ms + 5000);
    assert_true(w.done);
    *status_p = w.status;
    if (w.status == BT_OK) {
        assert_memory_equal(c->back, c->data, w.n * block_bytes);
    }
    return w.status == BT_OK ? w.n : 0;
}

static size_t get(chain_t *c, size_t n)
{
    bt_status_t st;
    size_t got = get_async(c, n, NULL, 10000, &st);

    assert_int_equal(st, BT_OK);
    return got;
}

/* A raw unary call; returns the gRPC code. */
typedef struct {
    bool              done;
    bt_rpc_code_t     code;
    char              msg[256];
    uint64_t          pin_id;
    uint32_t          pinned;
    uint64_t          version;    /* GetPlacement's, Rebalance's first */
} raw_t;

static void raw_cb(void *arg, const bt_rpc_result_t *r, const ProtobufCMessage *m)
{
    raw_t *w = arg;

    w->code = r->code;
    snprintf(w->msg, sizeof(w->msg), "%s", r->message);
    if (r->code == BT_RPC_OK && m->descriptor == &baton__v1__pin_response__descriptor) {
        const Baton__V1__PinResponse *p = (const void *)m;

        w->pin_id = p->pin_id;
        w->pinned = p->pinned_blocks;
    }
    if (r->code == BT_RPC_OK && m->descriptor == &baton__v1__placement_plan__descriptor) {
        w->version = ((const Baton__V1__PlacementPlan *)(const void *)m)->version;
    }
    if (r->code == BT_RPC_OK &&
        m->descriptor == &baton__v1__list_placements_response__descriptor) {
        const Baton__V1__ListPlacementsResponse *l = (const void *)m;

        w->version = l->n_plans > 0 ? l->plans[0]->version : 0;
    }
    w->done = true;
}

static raw_t raw_call(const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp)
{
    raw_t w = { 0 };

    assert_int_equal(bt_rpc_client_unary(raw, method, req, resp,
                                         &(bt_rpc_call_opts_t){ .timeout_ms = 5000 },
                                         raw_cb, &w, NULL), BT_OK);
    run_until(&w.done, 10000);
    assert_true(w.done);
    return w;
}

static raw_t raw_pin(const chain_t *c, size_t n)
{
    Baton__V1__PinRequest req = BATON__V1__PIN_REQUEST__INIT;
    ProtobufCBinaryData hb[MAX_BLOCKS];

    for (size_t i = 0; i < n; i++) {
        hb[i].data = (uint8_t *)c->hash + i * 32;
        hb[i].len = 32;
    }
    req.n_block_hashes = n;
    req.block_hashes = hb;
    req.pin_ms = 30000;
    return raw_call("/baton.v1.KvStore/Pin", &req.base,
                    &baton__v1__pin_response__descriptor);
}

static void flip_data_byte(const uint8_t *hash)
{
    char path[BT_KVS_PATH_MAX];
    struct stat st;
    uint8_t b;
    int fd;

    bt_kvs_file_path(dir, hash, path, sizeof(path));
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(pread(fd, &b, 1, st.st_size - 100), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, st.st_size - 100), 1);
    close(fd);
}

static bool block_file_exists(const uint8_t *hash)
{
    char path[BT_KVS_PATH_MAX];

    bt_kvs_file_path(dir, hash, path, sizeof(path));
    return access(path, F_OK) == 0;
}

static void peer_cb(void *arg, const bt_xfer_peer_stats_t *ps)
{
    int *n = arg;
    const char *tls = getenv("UCX_TLS");
    bool tcp = tls != NULL && strstr(tls, "tcp") != NULL;

    if (!ps->alive || ps->ops == 0) {
        return;
    }
    print_message("# peer %s mode %s lanes %s\n", ps->name,
                  ps->mode == BT_XFER_MODE_PUT ? "put" : "am", ps->lanes);
    /* shm: one-sided puts into the slab; tcp: active messages */
    assert_int_equal(ps->mode, tcp ? BT_XFER_MODE_AM : BT_XFER_MODE_PUT);
    assert_true(tcp ? strstr(ps->lanes, "tcp") != NULL
                    : (strstr(ps->lanes, "posix") != NULL ||
                       strstr(ps->lanes, "sysv") != NULL));
    (*n)++;
}

/* ---- tests ---- */

static void test_put_get_restart_corrupt(void **state)
{
    static chain_t x, y;
    uint32_t wrong[MAX_BLOCKS * BLOCK_TOKENS];
    bt_kvc_put_result_t r;

    (void)state;
    chain_init(&x, 28, 1);   /* 24 are put; 4 more extend the chain */
    chain_init(&y, 4, 2);
    start_store("4M", true);
    assert_int_equal(lookup(&x, 28, NULL), 0);
    r = put(&x, 0, 16);
    assert_int_equal(r.written, 16);
    assert_int_equal(r.committed, 16);
    assert_int_equal(r.durable, 16);
    r = put(&x, 16, 8);
    assert_int_equal(r.committed, 8);
    r = put(&y, 0, 4);
    assert_int_equal(r.committed, 4);
    /* a put of what is stored writes nothing */
    r = put(&x, 0, 16);
    assert_int_equal(r.stored, 16);
    assert_int_equal(r.written, 0);
    /* longest prefix; a token mismatch ends it */
    assert_int_equal(lookup(&x, 28, NULL), 24);
    assert_int_equal(lookup(&x, 24, x.tokens), 24);
    memcpy(wrong, x.tokens, sizeof(wrong));
    wrong[5 * BLOCK_TOKENS + 3] ^= 1;
    assert_int_equal(lookup(&x, 24, wrong), 5);
    assert_int_equal(get(&x, 24), 24);
    assert_int_equal(get(&y, 4), 4);
    {
        int n_peers = 0;

        bt_xfer_ctx_peers_foreach(xfer, peer_cb, &n_peers);
        assert_int_equal(n_peers, 1);
    }

    /* restart on the same folder: everything committed is served */
    stop_store();
    start_store("4M", true);
    assert_int_equal(lookup(&x, 28, NULL), 24);
    assert_int_equal(lookup(&y, 4, NULL), 4);
    assert_int_equal(get(&x, 24), 24);

    /* a block file corrupted while the store is down: a miss from there */
    stop_store();
    flip_data_byte(x.hash + 10 * 32);
    start_store("4M", true);
    assert_false(block_file_exists(x.hash + 10 * 32));
    assert_true(block_file_exists(x.hash + 11 * 32));
    assert_int_equal(lookup(&x, 24, NULL), 10);
    assert_int_equal(lookup(&y, 4, NULL), 4);
    assert_int_equal(get(&x, 24), 10);
    assert_int_equal(get(&y, 4), 4);
    stop_store();
}

static void kill_now(void *arg)
{
    (void)arg;
    kill_store();
}

static void test_sigkill_mid_put(void **state)
{
    static chain_t a, b;
    uint64_t t0;
    wait_t w;

    (void)state;
    chain_init(&a, 8, 3);
    chain_init(&b, 32, 4);
    start_store("4M", true);
    assert_int_equal(put(&a, 0, 8).durable, 8);
    /* the store dies between Reserve and the writes + Commit */
    t0 = bt_now_ms();
    w = put_async(&b, 0, 32, kill_now, 3000);
    print_message("# put to a killed store failed in %llu ms: %s\n",
                  (unsigned long long)(bt_now_ms() - t0), bt_status_str(w.status));
    assert_true(w.status < 0);
    assert_true(bt_now_ms() - t0 <= 3000 + 1000);
    disconnect_store();
    /* a fresh store on the same folder serves what was committed */
    start_store("4M", true);
    assert_int_equal(lookup(&a, 8, NULL), 8);
    assert_int_equal(get(&a, 8), 8);
    assert_int_equal(lookup(&b, 32, NULL), 0);
    /* and takes new puts */
    assert_int_equal(put(&b, 0, 32).committed, 32);
    assert_int_equal(get(&b, 32), 32);
    /* killed between Pin and the read: the get ends within its deadline,
     * with an error or with bytes that passed their checksums */
    {
        bt_status_t st;
        size_t got;

        t0 = bt_now_ms();
        got = get_async(&b, 32, kill_now, 3000, &st);
        print_message("# get from a killed store: %s, %zu blocks, %llu ms\n",
                      bt_status_str(st), got,
                      (unsigned long long)(bt_now_ms() - t0));
        assert_true(bt_now_ms() - t0 <= 3000 + 1000);
        disconnect_store();
    }
    start_store("4M", true);
    assert_int_equal(get(&b, 32), 32);
    stop_store();
}

/* A store SIGKILLed and restarted on the same port, the client kept (as a
 * node keeps it): the first put's transfer meets the endpoint of the old process; it
 * starts over once on a fresh one and commits, and the blocks read back. */
static void test_put_after_restart_same_client(void **state)
{
    static chain_t a, b, c;
    wait_t w;
    int port;

    (void)state;
    chain_init(&a, 4, 5);
    chain_init(&b, 4, 6);
    chain_init(&c, 4, 7);
    start_store("4M", true);
    port = store_port;
    assert_int_equal(put(&a, 0, 4).committed, 4);
    kill_store();
    start_store_on("4M", true, port, false);
    assert_int_equal(store_port, port);
    w = put_async(&b, 0, 4, NULL, 5000);
    print_message("# first put after the restart: %s, %u committed, retried %u\n",
                  bt_status_str(w.status), w.put.committed, w.put.retried);
    assert_int_equal(w.status, BT_OK);
    assert_int_equal(w.put.committed, 4);
    /* the next one needs no retry */
    w = put_async(&c, 0, 4, NULL, 5000);
    assert_int_equal(w.status, BT_OK);
    assert_int_equal(w.put.committed, 4);
    assert_int_equal(w.put.retried, 0);
    assert_int_equal(get(&a, 4), 4);
    assert_int_equal(get(&b, 4), 4);
    assert_int_equal(get(&c, 4), 4);
    stop_store();
}

static void test_eviction_keeps_pinned(void **state)
{
    static chain_t a, b, c;
    Baton__V1__UnpinRequest ureq = BATON__V1__UNPIN_REQUEST__INIT;
    raw_t pin;
    wait_t w;

    (void)state;
    chain_init(&a, 4, 5);
    chain_init(&b, 2, 6);
    chain_init(&c, 3, 7);
    /* four slots, DRAM only */
    start_store("128K", false);
    assert_int_equal(put(&a, 0, 4).committed, 4);
    pin = raw_pin(&a, 2);
    assert_int_equal(pin.code, BT_RPC_OK);
    assert_int_equal(pin.pinned, 2);
    /* two new blocks evict the two unpinned ones */
    assert_int_equal(put(&b, 0, 2).committed, 2);
    assert_int_equal(lookup(&a, 4, NULL), 2);
    /* three more cannot fit while two are pinned */
    w = put_async(&c, 0, 3, NULL, 5000);
    assert_true(w.status < 0);
    assert_int_equal(lookup(&a, 4, NULL), 2);
    assert_int_equal(get(&a, 2), 2);
    ureq.pin_id = pin.pin_id;
    assert_int_equal(raw_call("/baton.v1.KvStore/Unpin", &ureq.base,
                              &baton__v1__unpin_response__descriptor).code,
                     BT_RPC_OK);
    assert_int_equal(put(&c, 0, 3).committed, 3);
    assert_int_equal(get(&c, 3), 3);
    stop_store();
}

static void test_hostile_input(void **state)
{
    static uint8_t hashes[1025 * 32];
    static ProtobufCBinaryData hb[1025];
    Baton__V1__LookupRequest lreq = BATON__V1__LOOKUP_REQUEST__INIT;
    Baton__V1__ReserveRequest rreq = BATON__V1__RESERVE_REQUEST__INIT;
    Baton__V1__KvGeometry g = BATON__V1__KV_GEOMETRY__INIT;
    Baton__V1__ExpertStatsReport er = BATON__V1__EXPERT_STATS_REPORT__INIT;
    raw_t w;

    (void)state;
    start_store("1M", false);
    for (int i = 0; i < 1025; i++) {
        hb[i].data = hashes + i * 32;
        hb[i].len = 32;
    }
    lreq.n_block_hashes = 1025;
    lreq.block_hashes = hb;
    w = raw_call("/baton.v1.KvStore/Lookup", &lreq.base,
                 &baton__v1__lookup_response__descriptor);
    assert_int_equal(w.code, BT_RPC_INVALID_ARGUMENT);
    print_message("# %s\n", w.msg);
    lreq.n_block_hashes = 2;
    hb[1].len = 31;
    w = raw_call("/baton.v1.KvStore/Lookup", &lreq.base,
                 &baton__v1__lookup_response__descriptor);
    assert_int_equal(w.code, BT_RPC_INVALID_ARGUMENT);
    assert_non_null(strstr(w.msg, "31 bytes"));
    hb[1].len = 32;
    /* token ids that are not block_size per hash */
    {
        uint32_t t[3] = { 1, 2, 3 };

        lreq.n_token_ids = 3;
        lreq.token_ids = t;
        w = raw_call("/baton.v1.KvStore/Lookup", &lreq.base,
                     &baton__v1__lookup_response__descriptor);
        assert_int_equal(w.code, BT_RPC_INVALID_ARGUMENT);
        lreq.n_token_ids = 0;
    }
    /* reserve: no geometry, insane geometry, block_bytes off by one */
    rreq.n_block_hashes = 1;
    rreq.block_hashes = hb;
    rreq.parent_hash = hb[1];
    w = raw_call("/baton.v1.KvStore/Reserve", &rreq.base,
                 &baton__v1__reserve_response__descriptor);
    assert_int_equal(w.code, BT_RPC_INVALID_ARGUMENT);
    g.n_layers = 1u << 20;
    g.n_kv_heads = 1;
    g.head_dim = 1;
    g.block_size = 16;
    g.dtype = BATON__V1__KV_DTYPE__KV_DTYPE_F16;
    rreq.geometry = &g;
    w = raw_call("/baton.v1.KvStore/Reserve", &rreq.base,
                 &baton__v1__reserve_response__descriptor);
    assert_int_equal(w.code, BT_RPC_INVALID_ARGUMENT);
    print_message("# %s\n", w.msg);
    g.n_layers = geom.n_layers;
    g.n_kv_heads = geom.n_kv_heads;
    g.head_dim = geom.head_dim;
    rreq.block_bytes = (uint32_t)block_bytes + 1;
    w = raw_call("/baton.v1.KvStore/Reserve", &rreq.base,
                 &baton__v1__reserve_response__descriptor);
    assert_int_equal(w.code, BT_RPC_INVALID_ARGUMENT);
    assert_non_null(strstr(w.msg, "block_bytes"));
    /* more blocks than the slab can ever hold */
    rreq.block_bytes = (uint32_t)block_bytes;
    rreq.n_block_hashes = 64;
    for (int i = 0; i < 64; i++) {
        hashes[i * 32] = (uint8_t)i;
    }
    w = raw_call("/baton.v1.KvStore/Reserve", &rreq.base,
                 &baton__v1__reserve_response__descriptor);
    assert_int_equal(w.code, BT_RPC_RESOURCE_EXHAUSTED);
    print_message("# %s\n", w.msg);
    /* an empty expert statistics report: no model, a precise error */
    w = raw_call("/baton.v1.KvStore/ReportExpertStats", &er.base,
                 &baton__v1__expert_stats_ack__descriptor);
    assert_int_equal(w.code, BT_RPC_INVALID_ARGUMENT);
    assert_non_null(strstr(w.msg, "model"));
    stop_store();
}

/* MoE placement re-plans run on the kvstore's planner thread: while one
 * runs (slowed by the test knob to stand in for a DeepSeek-sized plan,
 * 0.2 to 0.4 s that held the loop before), blocks are put and got and
 * GetPlacement answers; Rebalance answers once its plan is published. */
static void test_served_while_planning(void **state)
{
    static chain_t c;
    Baton__V1__ExpertStatsReport rep = BATON__V1__EXPERT_STATS_REPORT__INIT;
    Baton__V1__LayerExpertStats ls[2], *lsp[2];
    Baton__V1__PlacementRebalanceRequest rb = BATON__V1__PLACEMENT_REBALANCE_REQUEST__INIT;
    Baton__V1__GetPlacementRequest gp = BATON__V1__GET_PLACEMENT_REQUEST__INIT;
    uint64_t counts[2][4] = { { 100, 100, 10, 10 }, { 100, 100, 10, 10 } };
    raw_t reb = { 0 }, got;
    uint64_t t0;

    (void)state;
    chain_init(&c, 4, 8);
    setenv("BATON_TEST_PLAN_DELAY_MS", "5000", 1);
    start_store("4M", false);
    unsetenv("BATON_TEST_PLAN_DELAY_MS");
    rep.model = "moe";
    rep.node_id = "d1";
    rep.role = BATON__V1__NODE_ROLE__NODE_ROLE_DECODE;
    rep.tokens = 220;
    rep.n_devices = 2;
    for (int l = 0; l < 2; l++) {
        baton__v1__layer_expert_stats__init(&ls[l]);
        ls[l].layer = (uint32_t)l;
        ls[l].n_counts = 4;
        ls[l].counts = counts[l];
        lsp[l] = &ls[l];
    }
    rep.n_layers = 2;
    rep.layers = lsp;
    got = raw_call("/baton.v1.KvStore/ReportExpertStats", &rep.base,
                   &baton__v1__expert_stats_ack__descriptor);
    assert_int_equal(got.code, BT_RPC_OK);

    rb.model = "moe";
    t0 = bt_now_ms();
    assert_int_equal(bt_rpc_client_unary(raw, "/baton.v1.KvStore/Rebalance", &rb.base,
                                         &baton__v1__list_placements_response__descriptor,
                                         &(bt_rpc_call_opts_t){ .timeout_ms = 60000 },
                                         raw_cb, &reb, NULL), BT_OK);
    /* while it plans: a put, a get and GetPlacement (the version in force) */
    assert_int_equal(put(&c, 0, 4).committed, 4);
    assert_int_equal(get(&c, 4), 4);
    gp.model = "moe";
    gp.role = BATON__V1__NODE_ROLE__NODE_ROLE_DECODE;
    got = raw_call("/baton.v1.KvStore/GetPlacement", &gp.base,
                   &baton__v1__placement_plan__descriptor);
    assert_int_equal(got.code, BT_RPC_OK);
    assert_int_equal(got.version, 0);
    assert_false(reb.done);
    assert_true(bt_now_ms() - t0 < 5000);
    /* then Rebalance answers with the plan it published */
    run_until(&reb.done, 60000);
    assert_true(reb.done);
    assert_int_equal(reb.code, BT_RPC_OK);
    assert_int_equal(reb.version, 1);
    assert_true(bt_now_ms() - t0 >= 5000);
    got = raw_call("/baton.v1.KvStore/GetPlacement", &gp.base,
                   &baton__v1__placement_plan__descriptor);
    assert_int_equal(got.version, 1);
    stop_store();
}

static int setup_all(void **state)
{
    (void)state;
    block_bytes = bt_kv_geom_block_bytes(&geom);
    assert_int_equal(block_bytes, 32768);
    snprintf(dir, sizeof(dir), "/tmp/kvstore-it-XXXXXX");
    assert_non_null(mkdtemp(dir));
    base = bt_loop_create();
    assert_int_equal(bt_xfer_ctx_create(base, NULL, &xfer), BT_OK);
    assert_int_equal(bt_xfer_region_alloc(xfer, 8u << 20, &local), BT_OK);
    rpc = bt_rpc_client_create(base, NULL);
    assert_non_null(rpc);
    return 0;
}

static void rm_rf(const char *d)
{
    DIR *dd = opendir(d);
    struct dirent *de;

    if (dd == NULL) {
        return;
    }
    while ((de = readdir(dd)) != NULL) {
        char p[600];

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        snprintf(p, sizeof(p), "%s/%s", d, de->d_name);
        if (unlink(p) != 0) {
            rm_rf(p);
        }
    }
    closedir(dd);
    rmdir(d);
}

static int teardown_all(void **state)
{
    (void)state;
    bt_rpc_client_destroy(rpc);
    bt_xfer_region_destroy(local);
    bt_xfer_ctx_destroy(xfer);
    event_base_free(base);
    rm_rf(dir);
    return 0;
}

static int fresh_dir(void **state)
{
    (void)state;
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_restart_corrupt, fresh_dir, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_mid_put, fresh_dir, teardown),
        cmocka_unit_test_setup_teardown(test_put_after_restart_same_client, fresh_dir, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_keeps_pinned, fresh_dir, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_input, fresh_dir, teardown),
        cmocka_unit_test_setup_teardown(test_served_while_planning, fresh_dir, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
