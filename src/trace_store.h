/* trace_store.h — the .ppxt trace file: append-only, crash-safe.
 *
 * Layout (all integers little-endian):
 *   header, 32 bytes: magic "PPXTRACE" (8), format version u32, header size
 *     u32 (32), creation time u64 (unix seconds), reserved u64 (0).
 *   records, version 2: marker u32 (0x5258509e, bytes 9e 'P' 'X' 'R'),
 *     payload length u32, CRC-32C of the payload u32, payload.
 *   records, version 1 (read, and appended to in kind): payload length u32,
 *     CRC-32C of the payload u32, payload.
 * A payload is one serialised trace (format in trace_store.c).  A writer
 * appends whole records; a crash can leave only a truncated last record.
 *
 * Damage: where a record does not verify (short, bad marker, length,
 * checksum or payload), the reader scans forward for the next record whose
 * marker, length and checksum verify (version 1 files have no marker: every
 * offset is tried) and goes on from there, counting the bytes skipped as
 * mid-file damage.  When nothing valid follows, the rest of the file is the
 * bad tail (a crash's truncated record, or damage at the end).  So every
 * intact record is read, whatever happened around it.
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

#define TRACE_STORE_VERSION 2 /* written; 1 and 2 are read */

typedef enum trace_fsync_policy {
    TRACE_FSYNC_NEVER = 0,  /* leave it to the OS */
    TRACE_FSYNC_FLUSH = 1,  /* fsync after every flush */
    TRACE_FSYNC_CLOSE = 2   /* fsync once, on close */
} trace_fsync_policy;

typedef struct trace_writer trace_writer;

/* Create (truncate) or, with append=1, append to an existing valid file
 * (a truncated tail is cut off first; a missing or empty file is created;
 * a file damaged anywhere before its tail is refused rather than cut, so
 * its valid records stay readable; records are appended in the file's own
 * format version).
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
    uint64_t damaged_regions; /* stretches of mid-file damage skipped to reach a later valid record */
    uint64_t skipped_bytes;   /* their bytes in total */
} trace_reader_stats;

/* NULL on failure (missing file, bad magic, unsupported version), with the
 * reason in err. */
trace_reader *trace_reader_open(const char *path, char *err, size_t err_len);
/* Read the next record into t (reset first).  1 = got one, 0 = end of the
 * valid records (stats tell whether a damaged tail was found), -1 = I/O
 * error.  Mid-file damage is skipped (stats count it) and reading goes on
 * after it.  After 0, a later call reads records appended since; a damaged
 * tail is looked at again from its start (it may be a record still being
 * written, or damage with records appended after it). */
int trace_reader_next(trace_reader *r, trace *t);
trace_reader_stats trace_reader_get_stats(const trace_reader *r);
void trace_reader_close(trace_reader **r);

/* CRC-32C (Castagnoli) of a buffer, continuing from crc (start with 0). */
uint32_t trace_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
