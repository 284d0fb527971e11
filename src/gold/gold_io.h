/* gold_io.h — the byte-level pieces the two gold file formats share (.ppxg
 * mined data, gold_data.c; .ppxr models, gold_est.c): a growing write
 * buffer, the atomic write of a buffer with its trailing CRC-32C, the magic
 * check and the trailing-CRC read.  Little-endian host (as the .npy and
 * .ppxt code assume).  Internal to src/gold/.
 * Ownership: a gold_buf owns its bytes (free(b.p) when done). */
#ifndef PPX_GOLD_IO_H
#define PPX_GOLD_IO_H

#include <stddef.h>
#include <stdint.h>

typedef struct gold_buf {
    unsigned char *p;
    size_t len, cap;
    int oom;             /* an append failed: the buffer is unusable */
} gold_buf;

void gold_put(gold_buf *b, const void *data, size_t len);
void gold_put_u32(gold_buf *b, uint32_t v);
void gold_put_u64(gold_buf *b, uint64_t v);
void gold_put_f64(gold_buf *b, double v);

/* Append the CRC-32C of b's bytes and write them to path through path.tmp
 * and a rename (fsync'd first when sync), so a reader never sees half a
 * file.  0, or -1 with the reason in err ("out of memory" when b->oom). */
int gold_write_atomic(gold_buf *b, const char *path, int sync, char *err, size_t err_len);

/* 1 when the file at path starts with the 8 bytes of magic. */
int gold_file_has_magic(const char *path, const char magic[8]);

/* The u32 at p, wherever it lies (no misaligned load): a trailing CRC. */
uint32_t gold_u32_at(const unsigned char *p);

/* snprintf into err (nothing when err is NULL or err_len 0). */
void gold_set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
