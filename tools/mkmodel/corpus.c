/* The built-in training corpus for baton-mkmodel's tokenizers: a fixed
 * English-like text generated from word lists by a fixed LCG, so every
 * machine trains the same vocabulary. */
#include "mkmodel.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const words[] = {
    "the", "a", "an", "of", "to", "in", "and", "is", "it", "that", "for",
    "on", "with", "as", "was", "be", "by", "at", "this", "from", "or",
    "have", "not", "are", "but", "they", "which", "one", "you", "we", "all",
    "there", "can", "more", "when", "will", "about", "if", "out", "so",
    "what", "up", "into", "time", "only", "new", "some", "could", "two",
    "first", "other", "then", "like", "over", "after", "very", "where",
    "Hello", "Baton", "model", "token", "server", "request", "decode",
    "prefill", "cluster", "cache", "block", "layer", "attention", "weight",
    "river", "mountain", "city", "garden", "window", "morning", "evening",
    "light", "water", "stone", "music", "letter", "story", "winter",
    "summer", "friend", "teacher", "machine", "number", "question",
    "answer", "world", "people", "house", "road", "tree", "bird", "sea",
    "quickly", "slowly", "quietly", "bright", "small", "large", "old",
    "young", "green", "blue", "warm", "cold", "simple", "careful",
    "runs", "walks", "writes", "reads", "builds", "finds", "keeps",
    "sends", "opens", "closes", "learns", "counts", "waits", "starts",
    "1", "2", "3", "10", "42", "100", "2024", "int", "return", "void",
};

static const char *const syllables[] = {
    "ka", "ro", "mi", "te", "su", "lan", "der", "qu", "ix", "ob", "ne",
    "tor", "vel", "an", "is", "pra", "sto", "lu", "mer", "zen", "fa",
    "gri", "hol", "un", "ber", "cy", "dra", "el", "fon", "gu",
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

char *mkmodel_corpus(size_t size, size_t *len_p)
{
    char *s = malloc(size + 64);
    size_t n = 0;
    uint32_t x = 20241123u;
    int in_sentence = 0;

    if (s == NULL) {
        return NULL;
    }
    while (n < size) {
        const char *w;
        char tmp[48];

        x = x * 1103515245u + 12345u;
        if ((x >> 13) % 4 == 0) {
            int k = 2 + (int)((x >> 21) % 3);
            size_t m = 0;

            for (int i = 0; i < k; i++) {
                x = x * 1103515245u + 12345u;
                w = syllables[(x >> 16) % N(syllables)];
                memcpy(tmp + m, w, strlen(w));
                m += strlen(w);
            }
            tmp[m] = '\0';
            w = tmp;
        } else {
            w = words[(x >> 16) % N(words)];
        }
        if (in_sentence) {
            s[n++] = ' ';
        }
        memcpy(s + n, w, strlen(w));
        n += strlen(w);
        in_sentence = 1;
        x = x * 1103515245u + 12345u;
        switch ((x >> 16) % 16) {
        case 0: s[n++] = '.'; s[n++] = '\n'; in_sentence = 0; break;
        case 1: s[n++] = ','; break;
        case 2: s[n++] = '.'; s[n++] = ' '; in_sentence = 0; break;
        default: break;
        }
    }
    s[n] = '\0';
    *len_p = n;
    return s;
}
