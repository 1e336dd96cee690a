/* baton-rpcbench: common/rpc over loopback against the floor of loopback.
 *
 * Unary round-trip latency (Tokenize, sequential) beside a plain TCP
 * ping-pong of the same request and response sizes, and server-streaming
 * throughput (Generate) beside a plain TCP stream of the same frames, all
 * measured in this run. Servers run in child processes forked before gRPC
 * starts in the parent.
 *   baton-rpcbench [--calls N] [--stream N] [--tokens K] */
#include "echo_service.h"

#include "base/clock.h"
#include "base/log.h"
#include "base/loop.h"
#include "generate.pb-c.h"
#include "rpc/client.h"

#include <grpc/grpc.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static bool io_full(int fd, void *buf, size_t len, bool wr)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = wr ? write(fd, p, len) : read(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* ---- child: the gRPC echo server ---- */

static void run_grpc_server(int port_fd)
{
    struct event_base *base;
    bt_rpc_server_t *srv;
    bt_echo_t echo;
    int port = 0;

    bt_log_init("rpcbench-server", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    base = bt_loop_create();
    srv = bt_rpc_server_create(base, NULL);
    if (srv == NULL || bt_echo_register(&echo, srv, base, NULL) != BT_OK ||
        bt_rpc_server_listen(srv, "ipv4:127.0.0.1:0", NULL, &port) != BT_OK ||
        bt_rpc_server_start(srv) != BT_OK) {
        _exit(1);
    }
    io_full(port_fd, &port, sizeof(port), true);
    close(port_fd);
    event_base_dispatch(base);   /* until killed */
    _exit(0);
}

/* ---- child: the plain TCP yardstick ----
 * Per connection: a 9-byte header {mode, count u32, size u32}; mode 'p' =
 * ping-pong `count` times (read req_size... the client sends its size in
 * each frame's 4-byte prefix; we answer `size` bytes), mode 's' = write
 * `count` frames of 4-byte length + `size` bytes, one write(2) each. */
static void tcp_serve_conn(int fd)
{
    unsigned char hdr[9];
    uint32_t count, size;
    char *buf;

    if (!io_full(fd, hdr, sizeof(hdr), false)) {
        return;
    }
    memcpy(&count, hdr + 1, 4);
    memcpy(&size, hdr + 5, 4);
    buf = calloc(1, (size_t)size + 4 + 65536);
    if (buf == NULL) {
        return;
    }
    if (hdr[0] == 'p') {
        for (uint32_t i = 0; i < count; i++) {
            uint32_t req_len;

            if (!io_full(fd, &req_len, 4, false) || req_len > 65536 ||
                !io_full(fd, buf, req_len, false)) {
                break;
            }
            memcpy(buf, &size, 4);
            if (!io_full(fd, buf, (size_t)size + 4, true)) {
                break;
            }
        }
    } else {
        /* One write per message, as a server streams tokens as they come. */
        char *out = malloc((size_t)size + 4);

        for (uint32_t i = 0; out != NULL && i < count; i++) {
            memcpy(out, &size, 4);
            memset(out + 4, 'x', size);
            if (!io_full(fd, out, (size_t)size + 4, true)) {
                break;
            }
        }
        free(out);
    }
    free(buf);
}

static void run_tcp_server(int lfd)
{
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        int one = 1;

        if (fd < 0) {
            if (errno == EINTR) {
                continue;
            }
            _exit(1);
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        tcp_serve_conn(fd);
        close(fd);
    }
}

static int tcp_listen(int *port_p)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(fd, 4) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    *port_p = ntohs(a.sin_port);
    return fd;
}

static int tcp_connect(int port, char mode, uint32_t count, uint32_t size)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    unsigned char hdr[9];
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    hdr[0] = (unsigned char)mode;
    memcpy(hdr + 1, &count, 4);
    memcpy(hdr + 5, &size, 4);
    io_full(fd, hdr, sizeof(hdr), true);
    return fd;
}

/* ---- parent: measurements ---- */

typedef struct {
    bool     done;
    int      code;
    uint64_t msgs;
} bench_out_t;

static void unary_done(void *arg, const bt_rpc_result_t *res,
                       const ProtobufCMessage *resp)
{
    bench_out_t *o = arg;

    o->done = true;
    o->code = (int)res->code;
}

static void stream_msg(void *arg, const ProtobufCMessage *msg)
{
    ((bench_out_t *)arg)->msgs++;
}

static void stream_done(void *arg, const bt_rpc_result_t *res)
{
    bench_out_t *o = arg;

    o->done = true;
    o->code = (int)res->code;
}

static void run_loop_until(struct event_base *base, const bool *flag)
{
    while (!*flag) {
        event_base_loop(base, EVLOOP_ONCE);
    }
}

int main(int argc, char **argv)
{
    uint32_t calls = 5000, stream_n = 100000, tokens = 16;
    int pfd[2], grpc_port = 0, tcp_port = 0, lfd;
    pid_t grpc_pid, tcp_pid;
    uint64_t *lat_grpc, *lat_tcp;
    char prompt[256], target[64];
    size_t req_size, resp_size, stream_size;
    struct event_base *base;
    bt_rpc_client_t *cli;
    bt_rpc_channel_t *ch;
    Baton__V1__TokenizeRequest treq = BATON__V1__TOKENIZE_REQUEST__INIT;
    Baton__V1__TokenizeResponse tresp = BATON__V1__TOKENIZE_RESPONSE__INIT;
    Baton__V1__GenerateRequest greq = BATON__V1__GENERATE_REQUEST__INIT;
    Baton__V1__GenerateResponse gmsg = BATON__V1__GENERATE_RESPONSE__INIT;
    Baton__V1__SamplingParams sp = BATON__V1__SAMPLING_PARAMS__INIT;
    uint32_t ids[256], one_id = 12345;
    bench_out_t o;
    uint64_t t0, t1;
    double grpc_rate, tcp_rate;
    int fd;

    for (int i = 1; i + 1 < argc; i += 2) {
        uint32_t v = (uint32_t)strtoul(argv[i + 1], NULL, 10);

        if (strcmp(argv[i], "--calls") == 0 && v > 0) {
            calls = v;
        } else if (strcmp(argv[i], "--stream") == 0 && v > 0) {
            stream_n = v;
        } else if (strcmp(argv[i], "--tokens") == 0 && v > 0 && v < 200) {
            tokens = v;
        } else {
            fprintf(stderr, "usage: %s [--calls N] [--stream N] [--tokens K<200]\n",
                    argv[0]);
            return 2;
        }
    }
    /* Servers first: no gRPC state may exist in a process that forks. */
    if (pipe(pfd) != 0) {
        return 1;
    }
    grpc_pid = fork();
    if (grpc_pid == 0) {
        close(pfd[0]);
        run_grpc_server(pfd[1]);
    }
    close(pfd[1]);
    if (!io_full(pfd[0], &grpc_port, sizeof(grpc_port), false)) {
        fprintf(stderr, "rpcbench: grpc server did not start\n");
        return 1;
    }
    close(pfd[0]);
    lfd = tcp_listen(&tcp_port);
    tcp_pid = fork();
    if (tcp_pid == 0) {
        run_tcp_server(lfd);
    }
    close(lfd);

    /* Messages and their sizes: the TCP yardstick moves the same bytes. */
    for (uint32_t i = 0; i < tokens; i++) {
        prompt[i] = (char)('a' + i % 26);
        ids[i] = (uint32_t)prompt[i];
    }
    prompt[tokens] = '\0';
    treq.model = "echo";
    treq.input_case = BATON__V1__TOKENIZE_REQUEST__INPUT_PROMPT;
    treq.prompt = prompt;
    tresp.n_token_ids = tokens;
    tresp.token_ids = ids;
    req_size = protobuf_c_message_get_packed_size(&treq.base);
    resp_size = protobuf_c_message_get_packed_size(&tresp.base);
    gmsg.n_token_ids = 1;
    gmsg.token_ids = &one_id;
    gmsg.text = "t12345";
    stream_size = protobuf_c_message_get_packed_size(&gmsg.base);

    lat_grpc = calloc(calls, sizeof(uint64_t));
    lat_tcp = calloc(calls, sizeof(uint64_t));
    bt_log_init("rpcbench", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    base = bt_loop_create();
    cli = bt_rpc_client_create(base, NULL);
    snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", grpc_port);
    ch = bt_rpc_channel_create(cli, target, NULL);
    if (lat_grpc == NULL || lat_tcp == NULL || ch == NULL) {
        return 1;
    }

    /* Unary, sequential (after a warm-up that connects). */
    for (uint32_t i = 0; i < calls + 200; i++) {
        memset(&o, 0, sizeof(o));
        t0 = bt_now_ns();
        bt_rpc_client_unary(ch, "/baton.v1.Generate/Tokenize", &treq.base,
                            &baton__v1__tokenize_response__descriptor,
                            &(bt_rpc_call_opts_t){ .timeout_ms = 10000 },
                            unary_done, &o, NULL);
        run_loop_until(base, &o.done);
        if (o.code != 0) {
            fprintf(stderr, "rpcbench: unary failed with %d\n", o.code);
            return 1;
        }
        if (i >= 200) {
            lat_grpc[i - 200] = bt_now_ns() - t0;
        }
    }
    fd = tcp_connect(tcp_port, 'p', calls + 200, (uint32_t)resp_size);
    {
        char buf[65536 + 4];
        uint32_t len = (uint32_t)req_size, rlen;

        memset(buf, 'x', sizeof(buf));
        for (uint32_t i = 0; i < calls + 200; i++) {
            t0 = bt_now_ns();
            memcpy(buf, &len, 4);
            if (!io_full(fd, buf, req_size + 4, true) ||
                !io_full(fd, &rlen, 4, false) ||
                !io_full(fd, buf + 4, rlen, false)) {
                fprintf(stderr, "rpcbench: tcp ping-pong failed\n");
                return 1;
            }
            if (i >= 200) {
                lat_tcp[i - 200] = bt_now_ns() - t0;
            }
        }
    }
    close(fd);
    qsort(lat_grpc, calls, sizeof(uint64_t), cmp_u64);
    qsort(lat_tcp, calls, sizeof(uint64_t), cmp_u64);

    /* Server streaming. */
    memset(&o, 0, sizeof(o));
    greq.input_case = BATON__V1__GENERATE_REQUEST__INPUT_PROMPT;
    greq.prompt = "p";
    sp.max_tokens = (int32_t)stream_n;
    greq.sampling = &sp;
    t0 = bt_now_ns();
    bt_rpc_client_stream(ch, "/baton.v1.Generate/Generate", &greq.base,
                         &baton__v1__generate_response__descriptor,
                         &(bt_rpc_call_opts_t){ .timeout_ms = 600000 },
                         stream_msg, stream_done, &o, NULL);
    run_loop_until(base, &o.done);
    t1 = bt_now_ns();
    if (o.code != 0 || o.msgs != (uint64_t)stream_n + 1) {
        fprintf(stderr, "rpcbench: stream failed (%d, %lu msgs)\n", o.code,
                (unsigned long)o.msgs);
        return 1;
    }
    grpc_rate = (double)stream_n / bt_elapsed_s(t0, t1);
    fd = tcp_connect(tcp_port, 's', stream_n, (uint32_t)stream_size);
    t0 = bt_now_ns();
    {
        char buf[65536];
        size_t have = 0, pos = 0;
        uint32_t got = 0;

        while (got < stream_n) {
            ssize_t n;
            uint32_t len;

            /* Parse whole frames from the buffer, as a client would. */
            while (have - pos >= 4) {
                memcpy(&len, buf + pos, 4);
                if (have - pos < 4 + (size_t)len) {
                    break;
                }
                pos += 4 + len;
                got++;
            }
            memmove(buf, buf + pos, have - pos);
            have -= pos;
            pos = 0;
            if (got >= stream_n) {
                break;
            }
            n = read(fd, buf + have, sizeof(buf) - have);
            if (n <= 0) {
                fprintf(stderr, "rpcbench: tcp stream failed\n");
                return 1;
            }
            have += (size_t)n;
        }
    }
    t1 = bt_now_ns();
    close(fd);
    tcp_rate = (double)stream_n / bt_elapsed_s(t0, t1);

    printf("baton-rpcbench: loopback, common/rpc (gRPC C core %s) vs plain TCP\n",
           grpc_version_string());
    printf("unary Tokenize, %u sequential calls, request %zu B, response %zu B\n",
           calls, req_size, resp_size);
    printf("  %-22s p50 %8.1f us   p99 %8.1f us\n", "common/rpc",
           (double)lat_grpc[calls / 2] / 1e3, (double)lat_grpc[calls * 99 / 100] / 1e3);
    printf("  %-22s p50 %8.1f us   p99 %8.1f us\n", "tcp ping-pong",
           (double)lat_tcp[calls / 2] / 1e3, (double)lat_tcp[calls * 99 / 100] / 1e3);
    printf("  %-22s p50 %8.1fx     p99 %8.1fx\n", "ratio rpc/tcp",
           (double)lat_grpc[calls / 2] / (double)lat_tcp[calls / 2],
           (double)lat_grpc[calls * 99 / 100] / (double)lat_tcp[calls * 99 / 100]);
    printf("server streaming Generate, %u messages of %zu B\n", stream_n,
           stream_size);
    printf("  %-22s %12.0f msg/s\n", "common/rpc", grpc_rate);
    printf("  %-22s %12.0f msg/s\n", "tcp stream", tcp_rate);
    printf("  %-22s %12.3f\n", "ratio rpc/tcp", grpc_rate / tcp_rate);

    bt_rpc_client_destroy(cli);
    event_base_free(base);
    free(lat_grpc);
    free(lat_tcp);
    kill(grpc_pid, SIGKILL);
    kill(tcp_pid, SIGKILL);
    waitpid(grpc_pid, NULL, 0);
    waitpid(tcp_pid, NULL, 0);
    return 0;
}
