/* trace_store.h — the .ppxt trace file: append-only, crash-safe.
 *
 * Layout (all integers little-endian):
 *   header, 32 bytes: magic "PPXTRACE" (8), format version u32, header size
 *     u32 (32), creation time u64 (unix seconds), reserved u64 (0).
 *   records, each: payload length u32, CRC-32C of the payload u32, payload.
 * A payload is one serialised trace (format in trace_store.c, versioned by
 * the header's format version).  A writer appends whole records; a crash can
 * leave only a truncated last record, which the reader detects (short read or
 * bad checksum), ignores and reports, so every record completely written
 * before the crash is recovered.
 *
 * Writes are batched in a buffer of `batch_bytes`; trace_writer_flush() (also
 * called when the buffer fills and on close) writes it with write(2) and then
 * fsyncs according to the policy.  A reader opened on a file that another
 * process is appending to sees the records flushed so far.
 */
#ifndef PPX_TRACE_STORE_H
#define PPX_TRACE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "trace.h"

#define TRACE_STORE_VERSION 1

typedef enum trace_fsync_policy {
    TRACE_FSYNC_NEVER = 0,  /* leave it to the OS */
    TRACE_FSYNC_FLUSH = 1,  /* fsync after every flush */
    TRACE_FSYNC_CLOSE = 2   /* fsync once, on close */
} trace_fsync_policy;

typedef struct trace_writer trace_writer;

/* Create (truncate) or, with append=1, append to an existing valid file
 * (a truncated tail is cut off first; a missing or empty file is created).
 * batch_bytes 0 means 1 MiB.  The writer holds an exclusive flock(2) on the
 * file, so a second writer on the same file fails to open.
 * NULL on failure, with the reason in err. */
trace_writer *trace_writer_open(const char *path, int append, size_t batch_bytes,
                                trace_fsync_policy policy, char *err, size_t err_len);
/* Append one trace.  0, or -1 with the reason in trace_writer_error(): an
 * I/O error (the writer then refuses all further work), or a trace too large
 * for one record (> 1 GiB; the writer stays usable). */
int trace_writer_append(trace_writer *w, const trace *t);
int trace_writer_flush(trace_writer *w);
/* Records in the file: those already there when opened in append mode plus
 * those appended since (including any still buffered). */
uint64_t trace_writer_count(const trace_writer *w);
/* Flush, fsync per policy, close, free, NULL the pointer.  0 or -1. */
int trace_writer_close(trace_writer **w);
/* The last error's reason ("" if none). */
const char *trace_writer_error(const trace_writer *w);

typedef struct trace_reader trace_reader;

typedef struct trace_reader_stats {
    uint64_t records;         /* complete, valid records read so far */
    uint64_t bad_tail_bytes;  /* bytes after the last valid record (truncated/corrupt tail) */
    int truncated;            /* 1 when a truncated or corrupt tail was found */
} trace_reader_stats;

/* NULL on failure (missing file, bad magic, unsupported version), with the
 * reason in err. */
trace_reader *trace_reader_open(const char *path, char *err, size_t err_len);
/* Read the next record into t (reset first).  1 = got one, 0 = end of the
 * valid records (stats tell whether a damaged tail was skipped), -1 = I/O
 * error.  After 0, a later call reads records appended since; a tail that
 * was merely short (perhaps still being written) is looked at again, while
 * corrupt data (bad length, checksum or payload) ends the file for good. */
int trace_reader_next(trace_reader *r, trace *t);
trace_reader_stats trace_reader_get_stats(const trace_reader *r);
void trace_reader_close(trace_reader **r);

/* CRC-32C (Castagnoli) of a buffer, continuing from crc (start with 0). */
uint32_t trace_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
