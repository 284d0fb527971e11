/* fuzz_common.h — shared by the libFuzzer targets of tests/fuzz/.
 *
 * Each target decodes its input twice: from an 8-byte-aligned copy (the
 * codecs' zero-copy path) and from a copy one byte off (their copying
 * path), reads every field it got, and checks that what decodes re-encodes
 * and decodes to the same thing.  A failed check aborts, which libFuzzer
 * reports as a crash with the input that caused it. */
#ifndef PPX_FUZZ_COMMON_H
#define PPX_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* A copy of data at an 8-byte boundary (misalign 0) or one byte past it
 * (misalign 1); *base is what to free. */
static inline const uint8_t *fuzz_copy(const uint8_t *data, size_t size, int misalign, void **base)
{
    uint8_t *b = NULL;
    if (posix_memalign((void **)&b, 16, size + 16) != 0) abort();
    memcpy(b + misalign, data, size);
    *base = b;
    return b + misalign;
}

/* Touch every byte of a region so that ASan sees a bad view. */
static inline unsigned fuzz_touch(const void *p, size_t n)
{
    const volatile uint8_t *b = p;
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++) acc += b[i];
    return acc;
}

static inline int fuzz_same_doubles(const double *a, const double *b, size_t n)
{
    return n == 0 || memcmp(a, b, n * sizeof *a) == 0;
}

#endif
