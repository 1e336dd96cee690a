/* The disk tier's write of a commit: every block file flushed on its own
 * (bt_kvs_file_write: fsync of the file and of its folder) against group
 * commit (bt_kvs_files_write: one flush for the data of the group, one for
 * the names). Alternates the two, several rounds, and prints blocks/s of
 * each and their ratio per round, so a noisy disk shows as spread. */
#include "base/clock.h"
#include "base/sha256.h"
#include "store/disk.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *dir;
    size_t      blocks;     /* per commit */
    size_t      kib;        /* per block */
    int         rounds;
} opts_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: baton-kvsbench [--dir DIR] [--blocks N] [--kib K] "
               "[--rounds R]\n"
               "  --dir     folder on the filesystem to measure (default /tmp)\n"
               "  --blocks  blocks per commit (default 64)\n"
               "  --kib     KiB per block, a multiple of 8 (default 256)\n"
               "  --rounds  alternating rounds of both ways (default 5)\n");
}

static void make_blocks(bt_kvs_file_meta_t *m, uint8_t *data, uint32_t *tok,
                        size_t n, size_t len, uint64_t gen0)
{
    /* 16 tokens of one 64-wide f32 head per layer: 8 KiB a layer */
    uint32_t block = 16, layers = (uint32_t)(len / 8192u);

    for (size_t i = 0; i < n; i++) {
        memset(&m[i], 0, sizeof(m[i]));
        for (uint32_t t = 0; t < block; t++) {
            tok[i * block + t] = (uint32_t)(gen0 + i * block + t);
        }
        memset(data + i * len, (int)(gen0 + i), len);
        m[i].geom = (bt_kv_geom_t){ layers, 1, 64, block, BT_KV_DTYPE_F32 };
        if (i > 0) {
            memcpy(m[i].parent, m[i - 1].hash, BT_KV_HASH_LEN);
        }
        bt_kv_hash_block(m[i].parent, tok + i * block, block, m[i].hash);
        bt_sha256(data + i * len, len, m[i].checksum);
        m[i].data_len = len;
        m[i].gen = gen0 + i;
        m[i].n_tokens = block;
        m[i].tokens = tok + i * block;
    }
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"dir", required_argument, NULL, 'd'},
        {"blocks", required_argument, NULL, 'b'},
        {"kib", required_argument, NULL, 'k'},
        {"rounds", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opts_t o = { "/tmp", 64, 256, 5 };
    char dir[4096], cmd[4200];
    bt_kvs_file_meta_t *m;
    const void **ptr;
    uint8_t *data;
    uint32_t *tok;
    bool *ok;
    size_t len;
    int c;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd': o.dir = optarg; break;
        case 'b': o.blocks = strtoul(optarg, NULL, 10); break;
        case 'k': o.kib = strtoul(optarg, NULL, 10); break;
        case 'r': o.rounds = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (o.blocks == 0 || o.blocks > 4096 || o.kib == 0 || o.kib > 4096 ||
        o.kib % 8 != 0 || o.rounds <= 0) {
        fprintf(stderr, "baton-kvsbench: --blocks 1..4096, --kib a multiple "
                "of 8 up to 4096, --rounds > 0\n");
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s/baton-kvsbench-XXXXXX", o.dir);
    if (mkdtemp(dir) == NULL) {
        perror("baton-kvsbench: mkdtemp");
        return 1;
    }
    len = o.kib * 1024;
    m = calloc(o.blocks, sizeof(*m));
    ptr = calloc(o.blocks, sizeof(*ptr));
    ok = calloc(o.blocks, sizeof(*ok));
    data = malloc(o.blocks * len);
    tok = malloc(o.blocks * 16 * sizeof(*tok));
    if (m == NULL || ptr == NULL || ok == NULL || data == NULL || tok == NULL) {
        fprintf(stderr, "baton-kvsbench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < o.blocks; i++) {
        ptr[i] = data + i * len;
    }
    printf("kvsbench: %s, commits of %zu blocks of %zu KiB\n", o.dir,
           o.blocks, o.kib);
    for (int r = 0; r < o.rounds; r++) {
        double rate[2];

        for (int way = 0; way < 2; way++) {
            uint64_t t0;
            size_t done = 0;

            /* new hashes each time: every write creates its files */
            make_blocks(m, data, tok, o.blocks, len,
                        (uint64_t)(r * 2 + way + 1) << 32);
            t0 = bt_now_ns();
            if (way == 0) {
                for (size_t i = 0; i < o.blocks; i++) {
                    done += bt_kvs_file_write(dir, &m[i], ptr[i]) == BT_OK;
                }
            } else {
                done = bt_kvs_files_write(dir, m, ptr, o.blocks, ok);
            }
            rate[way] = (double)done / ((double)(bt_now_ns() - t0) / 1e9);
            if (done != o.blocks) {
                fprintf(stderr, "baton-kvsbench: %zu of %zu blocks written\n",
                        done, o.blocks);
                return 1;
            }
        }
        printf("round %d: one flush per block %.0f blocks/s, group commit "
               "%.0f blocks/s, ratio %.2f\n", r + 1, rate[0], rate[1],
               rate[1] / rate[0]);
        fflush(stdout);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "baton-kvsbench: could not remove %s\n", dir);
    }
    free(m);
    free(ptr);
    free(ok);
    free(data);
    free(tok);
    return 0;
}
