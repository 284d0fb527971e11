/* gold_io.c — shared byte-level pieces of the gold file formats (see gold_io.h). */
#include "gold/gold_io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trace_store.h"

void gold_put(gold_buf *b, const void *data, size_t len)
{
    if (b->oom) return;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len) cap *= 2;
        unsigned char *n = realloc(b->p, cap);
        if (!n) {
            b->oom = 1;
            return;
        }
        b->p = n;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

void gold_put_u32(gold_buf *b, uint32_t v) { gold_put(b, &v, 4); }
void gold_put_u64(gold_buf *b, uint64_t v) { gold_put(b, &v, 8); }
void gold_put_f64(gold_buf *b, double v) { gold_put(b, &v, 8); }

void gold_set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

int gold_write_atomic(gold_buf *b, const char *path, int sync, char *err, size_t err_len)
{
    if (!b->oom) gold_put_u32(b, trace_crc32c(0, b->p, b->len));
    size_t tl = strlen(path) + 8;
    char *tmp = b->oom ? NULL : malloc(tl);
    if (!tmp) {
        gold_set_err(err, err_len, "out of memory");
        return -1;
    }
    int rc = -1;
    snprintf(tmp, tl, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        gold_set_err(err, err_len, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    int ok = fwrite(b->p, 1, b->len, f) == b->len;
    ok = fflush(f) == 0 && ok;
    if (sync) ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        gold_set_err(err, err_len, "%s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    return rc;
}

int gold_file_has_magic(const char *path, const char magic[8])
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[8];
    int is = fread(m, 1, 8, f) == 8 && memcmp(m, magic, 8) == 0;
    fclose(f);
    return is;
}

uint32_t gold_u32_at(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
