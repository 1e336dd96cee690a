/* libFuzzer: encode of arbitrary bytes with two tokenizers built at start
 * (a trained byte-level BPE, and a SentencePiece-style one with Metaspace,
 * byte fallback and added tokens with lstrip/rstrip/single_word). Invalid
 * UTF-8 must be refused; valid text must round-trip exactly through the
 * byte-level one, and the stream must equal decode. */
#include "engine/tokenizer/tokenizer.h"

#include "base/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SP "\xe2\x96\x81"

static bt_tok_t *bytelevel, *spm;

static void setup(void)
{
    static const char corpus[] =
        "The quick brown fox jumps over the lazy dog. int main(void) { "
        "return 0; }\n\tСъешь же ещё этих мягких булок. 我能吞下玻璃。 ";
    const char *specials[] = {"<|begin_of_text|>", "<|eot_id|>"};
    bt_buf_t c, json, v;
    char err[256];

    bt_log_init("fuzz", BT_LOG_LEVEL_OFF, BT_LOG_FORMAT_TEXT);
    bt_buf_init(&c, 1 << 20);
    bt_buf_init(&json, 16 << 20);
    for (int i = 0; i < 50; i++)
        bt_buf_append_str(&c, corpus);
    if (bt_tok_train_bytelevel_bpe(c.data, c.len, 300, specials, 2, &json) !=
            BT_OK ||
        bt_tok_load_mem(json.data, json.len, NULL, 0, &bytelevel, err,
                        sizeof(err)) != BT_OK)
        abort();
    bt_buf_init(&v, 1 << 20);
    bt_buf_printf(&v, "{\"added_tokens\": ["
        "{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
        "{\"id\": 1, \"content\": \"<s>\", \"special\": true, \"lstrip\": true},"
        "{\"id\": 2, \"content\": \"ab\", \"single_word\": true, "
        "\"rstrip\": true, \"normalized\": true}],"
        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
        "{\"type\": \"NFC\"}, {\"type\": \"Replace\", \"pattern\": "
        "{\"Regex\": \"\\\\s+\"}, \"content\": \" \"}]},"
        "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"" SP
        "\", \"prepend_scheme\": \"first\", \"split\": true},"
        "\"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
        "{\"type\": \"Replace\", \"pattern\": {\"String\": \"" SP "\"}, "
        "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": "
        "\"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, "
        "\"stop\": 0}]},"
        "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", "
        "\"byte_fallback\": true, \"vocab\": {\"<unk>\": 0, \"<s>\": 1, "
        "\"ab\": 2, \"" SP "\": 3, \"a\": 4, \"b\": 5, \"" SP "a\": 6");
    for (int b = 0; b < 256; b++)
        bt_buf_printf(&v, ", \"<0x%02X>\": %d", b, 7 + b);
    bt_buf_printf(&v, "}, \"merges\": [\"" SP " a\", \"a b\"]}}");
    if (bt_tok_load_mem(v.data, v.len, NULL, 0, &spm, err, sizeof(err)) !=
        BT_OK) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    bt_buf_cleanup(&c);
    bt_buf_cleanup(&json);
    bt_buf_cleanup(&v);
}

static void check(const bt_tok_t *tok, const char *text, size_t len,
                  unsigned flags, int exact)
{
    bt_tok_ids_t ids;
    bt_buf_t dec, st;
    bt_tok_stream_t *s;
    char err[256];

    bt_tok_ids_init(&ids, 1 << 20);
    bt_buf_init(&dec, 1 << 24);
    bt_buf_init(&st, 1 << 24);
    if (bt_tok_encode(tok, text, len, flags, &ids, err, sizeof(err)) !=
        BT_OK)
        goto out;
    if (bt_tok_decode(tok, ids.ids, ids.n, false, &dec, err, sizeof(err)) !=
        BT_OK)
        abort();
    if (exact && (dec.len != len || memcmp(dec.data, text, len) != 0))
        abort();
    if (bt_tok_stream_create(tok, false, &s) != BT_OK)
        abort();
    for (size_t i = 0; i < ids.n; i++)
        if (bt_tok_stream_feed(s, ids.ids[i], &st) != BT_OK)
            abort();
    bt_tok_stream_finish(s, &st);
    bt_tok_stream_destroy(s);
    if (st.len != dec.len || (dec.len && memcmp(st.data, dec.data, dec.len)))
        abort();
out:
    bt_tok_ids_cleanup(&ids);
    bt_buf_cleanup(&dec);
    bt_buf_cleanup(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned flags;

    if (bytelevel == NULL)
        setup();
    if (size == 0)
        return 0;
    flags = data[0] & 3;
    check(bytelevel, (const char *)data + 1, size - 1, flags, 1);
    check(spm, (const char *)data + 1, size - 1, flags, 0);
    return 0;
}
