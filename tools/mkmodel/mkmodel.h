#ifndef BT_MKMODEL_H
#define BT_MKMODEL_H

#include <stddef.h>

/* A deterministic corpus of about `size` bytes (malloc'ed, NUL-ended). */
char *mkmodel_corpus(size_t size, size_t *len_p);

#endif
