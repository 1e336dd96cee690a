/* baton-tokbench: load time of a tokenizer.json and single-core encode and
 * decode throughput on a deterministic mix of English, code and
 * multilingual text. Yardsticks measured in the same run: jansson parsing
 * the same file (load), and the Llama-3 pre-tokenizer regex alone over the
 * same text (encode), so the ratios say what BPE and the tables cost. */
#include "base/buf.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/log.h"
#include "base/opts.h"
#include "engine/tokenizer/tok_int.h"
#include "engine/tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *tokenizer;
    uint64_t    size;
    int64_t     loads;
} bench_cfg_t;

static const bt_opt_t opts[] = {
    {"tokenizer", 0, "BATON_TOKENIZER", NULL,
     "tokenizer folder (default: $BATON_SHARED_DATA/tokenizers/llama3)",
     BT_OPT_STRING, 0, 0, NULL, offsetof(bench_cfg_t, tokenizer)},
    {"size", 0, "-", "12M", "bytes of text to encode", BT_OPT_SIZE, 1024,
     1024.0 * 1024 * 1024, NULL, offsetof(bench_cfg_t, size)},
    {"loads", 0, "-", "3", "loads to time (the best is reported)",
     BT_OPT_INT, 1, 100, NULL, offsetof(bench_cfg_t, loads)},
};

static const bt_opts_spec_t spec = {
    "baton-tokbench", "[OPTIONS]",
    "Times tokenizer.json loading and encode/decode throughput.", opts,
    BT_OPTS_COUNT(opts),
};

static const char *const builtin[] = {
    "The cluster splits prefill and decode across nodes; the KV cache moves "
    "between them over RDMA when the prompt is long enough to be worth it.\n",
    "It's a truth universally acknowledged, that a single man in possession "
    "of a good fortune, must be in want of a wife. ",
    "static int ring_push(ring_t *r, const void *p, size_t n)\n{\n"
    "    if (r->len + n > r->cap)\n        return -1;\n"
    "    memcpy(r->buf + r->len, p, n);\n    r->len += n;\n    return 0;\n}\n",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, "
    "a + b\n    return a\n\nprint([fib(i) for i in range(10)])\n",
    "{\"model\": \"llama-3\", \"messages\": [{\"role\": \"user\", "
    "\"content\": \"Hello!\"}], \"max_tokens\": 128, \"stream\": true}\n",
    "Съешь же ещё этих мягких французских булок, да выпей чаю. ",
    "我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧。",
    "Falsches Üben von Xylophonmusik quält jeden größeren Zwerg. ",
    "Voix ambiguë d'un cœur qui, au zéphyr, préfère les jattes de kiwis. ",
    "いろはにほへと ちりぬるを わかよたれそ つねならむ 🚀✨ ",
    "ألا يا أيها الساقي أدر كأساً وناولها ",
    "  \t  indented   text\n\n\n    with    runs of     spaces\n",
    "2024-11-23 12:34:56.789 INFO req=4f2a tokens=1536 ttft_ms=87.5\n",
};

static void add_expectations(bt_buf_t *pool, const char *root)
{
    static const char *const names[] = {"llama3", "qwen2", "gpt2"};
    char path[1024], line[65536], err[256];

    for (int i = 0; i < 3 && root != NULL; i++) {
        FILE *f;
        snprintf(path, sizeof(path), "%s/tokenizers/expectations/%s.jsonl",
                 root, names[i]);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        while (fgets(line, sizeof(line), f) != NULL) {
            json_t *row;
            if (bt_json_parse(line, strlen(line), sizeof(line), &row, err,
                              sizeof(err)) != BT_OK)
                continue;
            const char *t = json_string_value(json_object_get(row, "text"));
            if (t != NULL && t[0] != 0) {
                bt_buf_append_str(pool, t);
                bt_buf_append_byte(pool, 0);
            }
            json_decref(row);
        }
        fclose(f);
    }
    for (size_t i = 0; i < sizeof(builtin) / sizeof(*builtin); i++) {
        bt_buf_append_str(pool, builtin[i]);
        bt_buf_append_byte(pool, 0);
    }
}

/* Concatenates pool strings in a fixed pseudo-random order up to size. */
static void make_text(const bt_buf_t *pool, size_t size, bt_buf_t *text)
{
    const char *items[4096];
    size_t n = 0;
    uint32_t x = 2463534242u;

    for (size_t off = 0; off < pool->len && n < 4096;) {
        items[n++] = pool->data + off;
        off += strlen(pool->data + off) + 1;
    }
    while (text->len < size) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        /* weight the built-in paragraphs (the last items) more */
        size_t k = (x >> 8) % 4 == 0 ? x % n : n - 1 - x % 13;
        if (bt_buf_append_str(text, items[k]) != BT_OK ||
            bt_buf_append_byte(text, ' ') != BT_OK)
            break;
    }
}

static double secs(uint64_t t0)
{
    return (double)(bt_now_ns() - t0) / 1e9;
}

int main(int argc, char **argv)
{
    bench_cfg_t cfg = {0};
    char dir[1024], path[1200], err[256];
    const char *root = getenv("BATON_SHARED_DATA");
    bt_tok_t *tok = NULL;
    double best_load = 1e9, best_parse = 1e9, t_enc, t_re, t_dec;
    bt_buf_t pool, text, dec;
    bt_tok_ids_t ids;
    uint64_t t0;

    bt_log_init("baton-tokbench", BT_LOG_LEVEL_WARN, BT_LOG_FORMAT_TEXT);
    bt_opts_parse_or_exit(&spec, &cfg, argc, argv);
    if (cfg.tokenizer == NULL) {
        if (root == NULL) {
            fprintf(stderr, "baton-tokbench: give --tokenizer DIR or set "
                    "BATON_SHARED_DATA\n");
            return 2;
        }
        snprintf(dir, sizeof(dir), "%s/tokenizers/llama3", root);
        cfg.tokenizer = dir;
    }
    snprintf(path, sizeof(path), "%s/tokenizer.json", cfg.tokenizer);
    for (int64_t i = 0; i < cfg.loads; i++) {
        json_t *j;
        t0 = bt_now_ns();
        if (bt_json_load_file(path, BT_TOK_MAX_JSON, &j, err, sizeof(err)) !=
            BT_OK) {
            fprintf(stderr, "baton-tokbench: %s\n", err);
            return 1;
        }
        json_decref(j);
        double p = secs(t0);
        best_parse = p < best_parse ? p : best_parse;
        bt_tok_destroy(tok);
        t0 = bt_now_ns();
        if (bt_tok_load_dir(cfg.tokenizer, &tok, err, sizeof(err)) != BT_OK) {
            fprintf(stderr, "baton-tokbench: %s\n", err);
            return 1;
        }
        double l = secs(t0);
        best_load = l < best_load ? l : best_load;
    }
    printf("tokenizer        %s (%d ids)\n", cfg.tokenizer,
           bt_tok_vocab_size(tok));
    printf("load             %.3f s   (jansson parse alone %.3f s, ratio "
           "%.2f; target <= 0.5 s)\n",
           best_load, best_parse, best_load / best_parse);

    bt_buf_init(&pool, 64 << 20);
    bt_buf_init(&text, (size_t)cfg.size + (1 << 20));
    add_expectations(&pool, root);
    make_text(&pool, (size_t)cfg.size, &text);

    bt_tok_ids_init(&ids, text.len + 16);
    t0 = bt_now_ns();
    if (bt_tok_encode(tok, text.data, text.len, 0, &ids, err, sizeof(err)) !=
        BT_OK) {
        fprintf(stderr, "baton-tokbench: encode: %s\n", err);
        return 1;
    }
    t_enc = secs(t0);

    /* yardstick: the Llama-3 split regex alone over the same text */
    {
        tok_regex_t re;
        pcre2_match_data *md;
        size_t pos = 0, ms, me, pieces = 0;
        tok_regex_compile(&re, tok_re_llama3, strlen(tok_re_llama3), false,
                          NULL, 0);
        md = pcre2_match_data_create(32, NULL);
        t0 = bt_now_ns();
        while (tok_regex_next(&re, md, text.data, text.len, pos, &ms, &me) >
               0) {
            pos = me;
            pieces++;
        }
        t_re = secs(t0);
        pcre2_match_data_free(md);
        tok_regex_cleanup(&re);
        (void)pieces;
    }

    bt_buf_init(&dec, 4 * text.len + 1024);
    t0 = bt_now_ns();
    if (bt_tok_decode(tok, ids.ids, ids.n, false, &dec, err, sizeof(err)) !=
        BT_OK) {
        fprintf(stderr, "baton-tokbench: decode: %s\n", err);
        return 1;
    }
    t_dec = secs(t0);

    double mb = (double)text.len / 1e6;
    printf("text             %.1f MB mixed English/code/multilingual\n", mb);
    printf("encode           %.1f MB/s  %.2f M tokens/s  %.2f bytes/token  "
           "(target >= 10 MB/s)\n",
           mb / t_enc, (double)ids.n / t_enc / 1e6,
           (double)text.len / (double)ids.n);
    printf("regex split only %.1f MB/s  (encode / split time ratio %.2f)\n",
           mb / t_re, t_enc / t_re);
    printf("decode           %.1f MB/s  round trip %s\n", mb / t_dec,
           dec.len == text.len && memcmp(dec.data, text.data, text.len) == 0
               ? "exact"
               : "DIFFERS (normalizer)");
    bt_tok_ids_cleanup(&ids);
    bt_buf_cleanup(&pool);
    bt_buf_cleanup(&text);
    bt_buf_cleanup(&dec);
    bt_tok_destroy(tok);
    return 0;
}
