/* Writes a loaded dense Llama-family model as a GGUF v3 file that
 * llama.cpp loads, so that enginebench can time llama-bench on the same
 * weights. Matrices keep their dtype (bf16 stays bf16) and their bytes,
 * except that the rows of q and k are reordered per head from Hugging
 * Face's rotate_half layout to llama.cpp's interleaved rope, as llama.cpp's
 * own converter does. The vocabulary is a stand-in (GPT-2's 256 byte
 * symbols, then "<t ID>" tokens, no merges): enough to load and to time,
 * not to tokenize text. */
#ifndef BT_BENCH_GGUF_EXPORT_H
#define BT_BENCH_GGUF_EXPORT_H

#include "engine/model/model.h"

#include <stddef.h>

/* 0, or -1 with the reason in err */
int bt_gguf_export(const bt_model_t *m, const char *path, char *err,
                   size_t errlen);

#endif
