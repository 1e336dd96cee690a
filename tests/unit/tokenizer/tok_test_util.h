/* Helpers shared by the tokenizer tests: locating ../shared/data. */
#ifndef BT_TOK_TEST_UTIL_H
#define BT_TOK_TEST_UTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Directory of the shared tokenizers, or NULL (after printing why) when
 * absent; under CI=true absence is a failure (exit 1). */
static inline const char *tok_test_data_dir(char *buf, size_t size)
{
    const char *root = getenv("BATON_SHARED_DATA");
    const char *ci = getenv("CI");
    FILE *f;

    if (root != NULL) {
        snprintf(buf, size, "%s/tokenizers/llama3/tokenizer.json", root);
        f = fopen(buf, "rb");
        if (f != NULL) {
            fclose(f);
            snprintf(buf, size, "%s/tokenizers", root);
            return buf;
        }
    }
    if (ci != NULL && strcmp(ci, "true") == 0) {
        fprintf(stderr, "BATON_SHARED_DATA/tokenizers is required under "
                        "CI=true\n");
        exit(1);
    }
    printf("# skip: BATON_SHARED_DATA/tokenizers not found\n");
    return NULL;
}

#endif
