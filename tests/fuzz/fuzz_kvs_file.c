/* libFuzzer: the kvstore's block files (kvstore/store/disk.h), which the
 * store reads back at start and on every pin of a disk-only block. The
 * input is a file's bytes, read twice: as it is, and with its hashes made
 * consistent (chain hash, data sha256, header checksum), so mutations
 * reach every check behind them. A file that reads must have exactly the
 * size its header says and a hash that chains from its tokens. */
#include "kvs_fix.h"

#include "base/log.h"
#include "base/sha256.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One file for every read, on a tmpfs where there is one: a new file per
 * input on a disk made the file system, not the reader, set the rate. */
static char path[64];
static int fd = -1;

static void open_file(void)
{
    static const char *const dirs[] = {"/dev/shm", "/tmp"};

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && fd < 0; i++) {
        snprintf(path, sizeof(path), "%s/baton-fuzz-kvs-XXXXXX", dirs[i]);
        fd = mkstemp(path);
    }
    if (fd < 0) {
        abort();
    }
}

static void remove_file(void)
{
    close(fd);
    unlink(path);
}

static void read_back(const uint8_t *bytes, size_t size)
{
    bt_kvs_file_meta_t m;

    if (ftruncate(fd, 0) != 0 || pwrite(fd, bytes, size, 0) != (ssize_t)size) {
        abort();
    }
    if (bt_kvs_file_read(path, NULL, 0, &m) == BT_OK) {
        uint8_t h[BT_KV_HASH_LEN];

        if (bt_kvs_file_size(m.n_tokens, m.data_len) != size ||
            bt_kv_hash_block(m.parent, m.tokens, m.n_tokens, h) != BT_OK ||
            memcmp(h, m.hash, sizeof(h)) != 0) {
            abort();
        }
        free(m.tokens);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    uint8_t *f;

    if (!quiet) {
        bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
        open_file();
        atexit(remove_file);
        quiet = 1;
    }
    if (size > (4u << 20)) {
        return 0;
    }
    read_back(data, size);
    f = malloc(size ? size : 1);
    if (f == NULL) {
        return 0;
    }
    memcpy(f, data, size);
    if (fuzz_kvs_fix(f, size)) {
        read_back(f, size);
    }
    free(f);
    return 0;
}
