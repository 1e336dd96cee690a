/* libFuzzer: JSON Schema text -> the grammar compiler; a schema that
 * compiles is then walked: its masks over a byte vocabulary never leave
 * a state with no way out, and what the input's tail feeds stays bounded. */
#include "engine/grammar/grammar.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bt_gvocab_t *vocab;
    char err[BT_GRAMMAR_ERR_SIZE];
    bt_grammar_t *g = NULL;
    bt_gmasker_t *m = NULL;
    bt_gmatcher_t *mt = NULL;
    float logits[257];

    if (vocab == NULL) {
        uint8_t b[256], *p[257];
        uint32_t lens[257];

        for (int i = 0; i < 256; i++) {
            b[i] = (uint8_t)i;
            p[i] = &b[i];
            lens[i] = 1;
        }
        p[256] = NULL;
        lens[256] = 0;
        if (bt_gvocab_create(257, (const uint8_t *const *)p, lens, 256, &vocab) != BT_OK) {
            abort();
        }
    }
    if (bt_grammar_compile(BT_GRAMMAR_JSON_SCHEMA, (const char *)data, size,
                           &g, err, sizeof(err)) != BT_OK) {
        if (err[0] == '\0') {
            abort();   /* every refusal says why */
        }
        return 0;
    }
    if (bt_gmasker_create(g, vocab, 1 << 20, &m) != BT_OK ||
        bt_gmatcher_create(m, &mt) != BT_OK) {
        abort();
    }
    /* a greedy walk: the lowest allowed byte, until EOS or 256 steps */
    for (int step = 0; step < 256; step++) {
        int tok = -1;

        memset(logits, 0, sizeof(logits));
        if (bt_gmatcher_apply(mt, logits, 257) != BT_OK) {
            abort();   /* a dead end */
        }
        for (int i = 0; i < 257 && tok < 0; i++) {
            if (logits[i] == 0) {
                tok = i;
            }
        }
        if (bt_gmatcher_accept(mt, step % 2 && logits[256] == 0 ? 256 : tok) != BT_OK) {
            abort();
        }
        if (bt_gmatcher_complete(mt) && logits[256] == 0) {
            break;
        }
    }
    bt_gmatcher_destroy(mt);
    bt_gmasker_destroy(m);
    bt_grammar_destroy(g);
    return 0;
}
