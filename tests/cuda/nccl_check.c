/* NCCL inside a node (nccl_comm.h), two ranks on the one GPU the device
 * machines have: NCCL refuses two ranks on one GPU in one host, so each
 * rank is its own process with its own NCCL_HOSTID and they talk over
 * sockets (a functional test, not a speed one). The parent makes the id,
 * starts both ranks and prints TAP:
 *   - the ordered all-reduce gives, on both ranks, the sum in rank order
 *     computed on the host, bit for bit, and all-to-all moves each chunk
 *     to its rank;
 *   - a hung peer (rank 1 stops answering): rank 0's wait ends within its
 *     timeout with the communicator aborted, and later calls fail at once;
 *   - a dead peer (rank 1 exits): the same, never a hang.
 * usage: nccl_check                   (the parent)
 *        nccl_check RANK IDFILE CASE  (a rank, started by the parent) */
#include "engine/cuda/nccl_comm.h"

#include <cuda_runtime.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 4096          /* floats reduced; a multiple of 2 ranks */
#define TIMEOUT_MS 3000

static float value(int rank, int i)
{
    /* values whose rank-order sum rounds: the order is visible */
    return (float)((i * 7919 + rank * 104729) % 1000003) * 1e-3f +
           (rank ? 1e7f : 1e-3f);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A rank: prints "rank R: ..." lines the parent turns into TAP. */
static int rank_main(int rank, const char *idfile, const char *kase)
{
    uint8_t id[BT_NCCL_ID_BYTES];
    float *host = malloc(N * sizeof(float)), *want = malloc(N * sizeof(float));
    float *buf, *scratch;
    unsigned char *a2a_s, *a2a_r;
    cudaStream_t st;
    bt_nccl_t *c = NULL;
    char err[256];
    FILE *f = fopen(idfile, "rb");
    int bad = 0;
    double t0;
    bt_status_t s;

    if (f == NULL || fread(id, 1, sizeof(id), f) != sizeof(id)) {
        printf("rank %d: cannot read the id\n", rank);
        return 1;
    }
    fclose(f);
    if (cudaStreamCreate(&st) != cudaSuccess ||
        cudaMalloc((void **)&buf, N * sizeof(float)) != cudaSuccess ||
        cudaMalloc((void **)&scratch, 2 * N * sizeof(float)) != cudaSuccess ||
        cudaMalloc((void **)&a2a_s, 2 * 64) != cudaSuccess ||
        cudaMalloc((void **)&a2a_r, 2 * 64) != cudaSuccess) {
        printf("rank %d: cuda setup failed\n", rank);
        return 1;
    }
    if (bt_nccl_create(id, rank, 2, TIMEOUT_MS * 4, &c, err, sizeof(err)) != BT_OK) {
        printf("rank %d: %s\n", rank, err);
        return 1;
    }
    if (strcmp(kase, "hung") == 0 && rank == 1) {
        sleep(TIMEOUT_MS / 1000 * 3);   /* never joins the collective */
        return 0;
    }
    if (strcmp(kase, "dead") == 0 && rank == 1) {
        _exit(0);                       /* gone, communicator and all */
    }
    for (int i = 0; i < N; i++) {
        host[i] = value(rank, i);
        want[i] = value(0, i) + value(1, i);   /* rank order: 0 then 1 */
    }
    cudaMemcpy(buf, host, N * sizeof(float), cudaMemcpyHostToDevice);
    t0 = now_s();
    s = bt_nccl_allreduce_ordered(c, buf, N, scratch, st);
    if (s == BT_OK) {
        s = bt_nccl_wait(c, st, err, sizeof(err));
    }
    if (strcmp(kase, "ok") != 0) {
        /* the peer is hung or dead: a bounded failure, then fast ones */
        double took = now_s() - t0, t1;
        bt_status_t again;

        t1 = now_s();
        again = bt_nccl_allreduce_ordered(c, buf, N, scratch, st);
        printf("rank %d: %s peer: first call %s after %.1f s (%s); next call %s "
               "in %.3f s\n", rank, kase, s == BT_OK ? "ok" : "failed", took,
               s == BT_OK ? "-" : err, again == BT_OK ? "ok" : "failed",
               now_s() - t1);
        printf("rank %d: verdict %s\n", rank,
               s != BT_OK && again != BT_OK && took < TIMEOUT_MS / 1000.0 + 5 ?
               "pass" : "fail");
        bt_nccl_destroy(c);
        return 0;
    }
    if (s != BT_OK) {
        printf("rank %d: all-reduce failed: %s\n", rank, err);
        return 1;
    }
    cudaMemcpy(host, buf, N * sizeof(float), cudaMemcpyDeviceToHost);
    for (int i = 0; i < N; i++) {
        bad += memcmp(&host[i], &want[i], 4) != 0;
    }
    printf("rank %d: ordered all-reduce of %d floats: %d differ from the host's "
           "rank-order sum\n", rank, N, bad);
    {
        unsigned char send[128], recv[128];

        for (int p = 0; p < 2; p++) {
            memset(send + p * 64, rank * 16 + p + 1, 64);
        }
        cudaMemcpy(a2a_s, send, sizeof(send), cudaMemcpyHostToDevice);
        s = bt_nccl_alltoall(c, a2a_s, a2a_r, 64, st);
        if (s == BT_OK) {
            s = bt_nccl_wait(c, st, err, sizeof(err));
        }
        cudaMemcpy(recv, a2a_r, sizeof(recv), cudaMemcpyDeviceToHost);
        /* recv[p] is rank p's chunk for this rank */
        printf("rank %d: all-to-all %s\n", rank,
               s == BT_OK && recv[0] == 0 * 16 + rank + 1 &&
               recv[64] == 1 * 16 + rank + 1 ? "moved each chunk to its rank"
                                             : "WRONG");
    }
    bt_nccl_destroy(c);
    return bad != 0;
}

static int n_test, n_failed;

static void tap(int ok, const char *what, const char *detail)
{
    n_test++;
    n_failed += !ok;
    printf("%s %d - %s\n", ok ? "ok" : "not ok", n_test, what);
    if (detail != NULL && detail[0] != '\0') {
        printf("# %s", detail);
    }
}

/* Runs both ranks of one case; their output in out. */
static void run_case(const char *self, const char *kase, char *out, size_t size)
{
    char idfile[] = "/tmp/bt-nccl-id-XXXXXX";
    uint8_t id[BT_NCCL_ID_BYTES];
    char err[256];
    int fd = mkstemp(idfile), pipes[2];
    pid_t pid[2];
    size_t len = 0;
    ssize_t k;

    out[0] = '\0';
    if (fd < 0 || bt_nccl_unique_id(id, err, sizeof(err)) != BT_OK ||
        write(fd, id, sizeof(id)) != (ssize_t)sizeof(id) || pipe(pipes) != 0) {
        snprintf(out, size, "setup failed: %s\n", err);
        return;
    }
    close(fd);
    for (int r = 0; r < 2; r++) {
        pid[r] = fork();
        if (pid[r] == 0) {
            char rank[8], host[32];

            snprintf(rank, sizeof(rank), "%d", r);
            snprintf(host, sizeof(host), "baton-nccl-check-%d", r);
            setenv("NCCL_HOSTID", host, 1);   /* two "hosts": no duplicate GPU */
            setenv("NCCL_SOCKET_IFNAME", "lo", 0);
            dup2(pipes[1], 1);
            close(pipes[0]);
            execl(self, self, rank, idfile, kase, (char *)NULL);
            _exit(127);
        }
    }
    close(pipes[1]);
    while ((k = read(pipes[0], out + len, size - 1 - len)) > 0) {
        len += (size_t)k;
    }
    out[len] = '\0';
    close(pipes[0]);
    for (int r = 0; r < 2; r++) {
        kill(pid[r], SIGKILL);   /* a hung rank 1 sleeps on */
        waitpid(pid[r], NULL, 0);
    }
    unlink(idfile);
}

int main(int argc, char **argv)
{
    static char out[8192];
    int devices = 0;

    if (argc == 4) {
        return rank_main(atoi(argv[1]), argv[2], argv[3]);
    }
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("1..0 # SKIP no CUDA device here: built, not run\n");
        return 0;
    }
    run_case(argv[0], "ok", out, sizeof(out));
    tap(strstr(out, "rank 0: ordered all-reduce of 4096 floats: 0 differ") &&
        strstr(out, "rank 1: ordered all-reduce of 4096 floats: 0 differ"),
        "ordered all-reduce over 2 processes: both ranks hold the rank-order sum",
        out);
    tap(strstr(out, "rank 0: all-to-all moved") && strstr(out, "rank 1: all-to-all moved"),
        "all-to-all moves each chunk to its rank", NULL);
    /* rank 1 lingers past the timeout: the parent reads until rank 0 ends
     * and rank 1's sleep ends; the pipe's end is rank 1's exit */
    run_case(argv[0], "hung", out, sizeof(out));
    tap(strstr(out, "rank 0: verdict pass") != NULL,
        "a hung peer: the wait ends within its timeout, the communicator "
        "aborted, later calls fail at once", out);
    run_case(argv[0], "dead", out, sizeof(out));
    tap(strstr(out, "rank 0: verdict pass") != NULL,
        "a dead peer: the same, never a hang", out);
    printf("1..%d\n", n_test);
    return n_failed > 0;
}
