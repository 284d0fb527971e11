/* Tests for src/trace_store.c: CRC-32C vectors, the exact file and payload
 * bytes, round trips of every field, append mode, recovery from a file cut
 * at every byte of its last records, corrupt bytes and lengths, header
 * validation, a reader following a writer, and a writer killed with SIGKILL
 * mid-stream.  Traces come from a deterministic generator (make_trace), so
 * a record read back is checked against make_trace(its index). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "trace_store.h"
#include "testkit.h"

/* ---- files ------------------------------------------------------------------------ */

typedef struct tmpdir {
    char path[64];
} tmpdir;

static void tmp_make(tmpdir *d)
{
    cr_assert_eq(tk_tmpdir(d->path, sizeof d->path, "store"), 0, "mkdtemp: %s", strerror(errno));
}

static void tmp_remove(tmpdir *d)
{
    tk_tmpdir_remove(d->path);
}

static void tmp_file(const tmpdir *d, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", d->path, name);
}

static unsigned char *slurp(const char *path, size_t *size)
{
    unsigned char *buf = tk_slurp(path, size);
    cr_assert_not_null(buf, "cannot read %s", path);
    return buf;
}

static void spit(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Format version 2 records: marker, length, CRC, payload. */
#define REC_HEAD 12
#define REC_LEN 4 /* offset of the length in a record head */
#define REC_CRC 8
#define REC_MARKER 0x5258509eu

/* Offsets where records end (bounds[0] = 32, the header's end). */
static size_t record_bounds(const unsigned char *buf, size_t size, size_t *bounds, size_t max)
{
    size_t n = 0, off = 32;
    bounds[n++] = off;
    while (off + REC_HEAD <= size && n < max) {
        cr_assert_eq(rd32(buf + off), REC_MARKER, "record marker at %zu", off);
        off += REC_HEAD + rd32(buf + off + REC_LEN);
        cr_assert_leq(off, size);
        bounds[n++] = off;
    }
    cr_assert_eq(off, size, "the test file has whole records only");
    return n;
}

/* ---- deterministic traces ------------------------------------------------------------- */

static trace_entry entry_of(trace_kind kind, const char *addr, const char *name, dist_kind dist)
{
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    e.base_address = addr;
    e.name = name;
    e.dist = dist;
    e.control = 1;
    e.observed = kind == TRACE_OBSERVE;
    return e;
}

/* Trace number i: a mix of kinds, shapes (0-d, 1-d, 2-d, absent), special
 * doubles, non-ASCII names and repeated addresses, varying with i. */
static void make_trace(trace *t, uint64_t i)
{
    trace_reset(t);
    t->id = i;
    double d = (double)i;

    double mean = d, sd = 2.2360679774997898, x0 = 0.25 * d - 1;
    trace_entry e = entry_of(TRACE_SAMPLE, "[forward()+0x96]", "", DIST_NORMAL);
    e.param[0] = (trace_array){&mean, 1, NULL, 0};
    e.param[1] = (trace_array){&sd, 1, NULL, 0};
    e.value = (trace_array){&x0, 1, NULL, 0};
    e.log_prob = -1.25 - d;
    cr_assert_not_null(trace_append(t, &e));

    if (i % 2 == 0) {
        double probs[6] = {0.1, 0.2, 0.7, 3, 3, d};
        int32_t ps[2] = {2, 3};
        double v[2] = {2, 0};
        int32_t vs[1] = {2};
        trace_entry c = entry_of(TRACE_SAMPLE, "cat", "c", DIST_CATEGORICAL);
        c.k = 3;
        c.param[0] = (trace_array){probs, 6, ps, 2};
        c.value = (trace_array){v, 2, vs, 1};
        c.log_prob = -2.5;
        c.control = 0;
        cr_assert_not_null(trace_append(t, &c));
    }
    double obs = 8.0 + d;
    int32_t one[1] = {1};
    trace_entry o = entry_of(TRACE_OBSERVE, "obs_site", "obs0", DIST_NORMAL);
    o.param[0] = (trace_array){&x0, 1, NULL, 0};
    o.param[1] = (trace_array){&sd, 1, NULL, 0};
    o.value = (trace_array){&obs, 1, one, 1};
    o.log_prob = -0.5 * d;
    cr_assert_not_null(trace_append(t, &o));
    if (i % 3 == 0) {
        double tv[4] = {NAN, -0.0, INFINITY, 1e-310};
        int32_t ts[2] = {2, 2};
        trace_entry g = entry_of(TRACE_TAG, "tag", "\xce\xbb-\xc3\xbctf8", DIST_NONE);
        g.value = (trace_array){tv, 4, ts, 2};
        cr_assert_not_null(trace_append(t, &g));
    }
    if (i % 4 == 1) {
        int32_t zero[1] = {0};
        trace_entry n = entry_of(TRACE_OBSERVE, "none", "y", DIST_NONE);
        n.value = (trace_array){NULL, 0, zero, 1};
        cr_assert_not_null(trace_append(t, &n));
    }
    for (uint64_t r = 0; r < i % 3; r++) {
        double rate = 3.5, k = (double)r;
        trace_entry p = entry_of(TRACE_SAMPLE, "[forward()+0x96]", r ? "" : "fixed", DIST_POISSON);
        p.param[0] = (trace_array){&rate, 1, NULL, 0};
        p.value = (trace_array){&k, 1, NULL, 0};
        p.observed = r == 0;
        p.log_prob = -3.0 - (double)r;
        cr_assert_not_null(trace_append(t, &p));
    }
    double res[3] = {d, -d, 0.5};
    size_t rl = i % 4;
    if (rl)
        cr_assert_eq(trace_array_copy(t, &t->result, res, rl > 3 ? 3 : rl, NULL, 1), 0);
    t->log_proposal = -0.125 * d;
    trace_finish(t);
}

static void assert_array_eq(const trace_array *a, const trace_array *b, const char *what, size_t i)
{
    cr_assert_eq(a->len, b->len, "%s len, entry %zu", what, i);
    cr_assert_eq(a->ndim, b->ndim, "%s ndim, entry %zu", what, i);
    if (a->ndim)
        cr_assert_arr_eq(a->shape, b->shape, a->ndim * sizeof(int32_t), "%s shape, entry %zu", what, i);
    if (a->len) /* bitwise, so NaN and -0 count */
        cr_assert_arr_eq(a->data, b->data, a->len * sizeof(double), "%s data, entry %zu", what, i);
}

static void assert_double_bits(double a, double b, const char *what)
{
    cr_assert_eq(memcmp(&a, &b, sizeof a), 0, "%s: %g vs %g", what, a, b);
}

static void assert_trace_eq(const trace *a, const trace *b)
{
    cr_assert_eq(a->id, b->id);
    assert_double_bits(a->log_prior, b->log_prior, "log_prior");
    assert_double_bits(a->log_likelihood, b->log_likelihood, "log_likelihood");
    assert_double_bits(a->log_proposal, b->log_proposal, "log_proposal");
    assert_double_bits(a->log_weight, b->log_weight, "log_weight");
    assert_array_eq(&a->result, &b->result, "result", 0);
    cr_assert_eq(a->n_entries, b->n_entries, "trace %llu", (unsigned long long)a->id);
    for (size_t i = 0; i < a->n_entries; i++) {
        const trace_entry *x = &a->entries[i], *y = &b->entries[i];
        cr_assert_eq(x->kind, y->kind);
        cr_assert_str_eq(x->address, y->address);
        cr_assert_str_eq(x->base_address, y->base_address);
        cr_assert_str_eq(x->name, y->name);
        cr_assert_eq(x->dist, y->dist);
        cr_assert_eq(x->k, y->k);
        for (int p = 0; p < 2; p++)
            assert_array_eq(&x->param[p], &y->param[p], "param", i);
        assert_array_eq(&x->value, &y->value, "value", i);
        assert_double_bits(x->log_prob, y->log_prob, "log_prob");
        cr_assert_eq(x->control, y->control);
        cr_assert_eq(x->observed, y->observed);
        cr_assert_eq(x->instance, y->instance);
    }
}

static void write_traces(const char *path, int append, uint64_t from, uint64_t to, size_t batch,
                         trace_fsync_policy policy)
{
    char err[256];
    trace_writer *w = trace_writer_open(path, append, batch, policy, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    trace *t = trace_new();
    uint64_t before = trace_writer_count(w);
    for (uint64_t i = from; i < to; i++) {
        make_trace(t, i);
        cr_assert_eq(trace_writer_append(w, t), 0, "%s", trace_writer_error(w));
    }
    cr_assert_eq(trace_writer_count(w), before + (to - from));
    cr_assert_str_eq(trace_writer_error(w), "");
    cr_assert_eq(trace_writer_close(&w), 0);
    cr_assert_null(w);
    trace_destroy(&t);
}

/* Read every record, checking record n against make_trace(n). */
static uint64_t read_and_check(const char *path, trace_reader_stats *st)
{
    char err[256];
    trace_reader *r = trace_reader_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    trace *got = trace_new(), *want = trace_new();
    uint64_t n = 0;
    int rc;
    uint64_t last = 0;
    while ((rc = trace_reader_next(r, got)) == 1) {
        /* Damage may skip records: each read one is make_trace(its id), in order. */
        cr_assert(n == 0 || got->id > last, "record %llu after %llu", (unsigned long long)got->id,
                  (unsigned long long)last);
        last = got->id;
        make_trace(want, got->id);
        assert_trace_eq(got, want);
        n++;
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(got->n_entries, 0, "a failed read leaves the trace empty");
    *st = trace_reader_get_stats(r);
    cr_assert_eq(st->records, n);
    /* End stays end. */
    cr_assert_eq(trace_reader_next(r, got), 0);
    trace_reader_close(&r);
    cr_assert_null(r);
    trace_destroy(&got);
    trace_destroy(&want);
    return n;
}

/* ---- CRC ----------------------------------------------------------------------------- */

Test(trace_store, crc32c_known_answers)
{
    cr_assert_eq(trace_crc32c(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(trace_crc32c(0, "", 0), 0u);
    unsigned char buf[32];
    memset(buf, 0, sizeof buf);
    cr_assert_eq(trace_crc32c(0, buf, 32), 0x8A9136AAu); /* RFC 3720 B.4 */
    memset(buf, 0xff, sizeof buf);
    cr_assert_eq(trace_crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    cr_assert_eq(trace_crc32c(0, buf, 32), 0x46DD794Eu);
    /* Continuation equals one pass. */
    cr_assert_eq(trace_crc32c(trace_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

/* ---- exact bytes --------------------------------------------------------------------- */

typedef struct bytes {
    unsigned char b[512];
    size_t n;
} bytes;

static void b_u8(bytes *b, unsigned v)
{
    b->b[b->n++] = (unsigned char)v;
}

static void b_u32(bytes *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b_u8(b, (v >> (8 * i)) & 0xff);
}

static void b_u64(bytes *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b_u8(b, (unsigned)(v >> (8 * i)) & 0xff);
}

static void b_f64(bytes *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    b_u64(b, u);
}

static void b_str(bytes *b, const char *s)
{
    b_u32(b, (uint32_t)strlen(s));
    for (; *s; s++)
        b_u8(b, (unsigned char)*s);
}

Test(trace_store, file_and_payload_bytes_are_as_documented)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "golden.ppxt", path, sizeof path);

    trace *t = trace_new();
    double zero = 0, one = 1, two = 2, three = 3;
    trace_entry e = entry_of(TRACE_SAMPLE, "ab", "n", DIST_NORMAL);
    e.param[0] = (trace_array){&zero, 1, NULL, 0};
    e.param[1] = (trace_array){&one, 1, NULL, 0};
    e.value = (trace_array){&two, 1, NULL, 1}; /* shape [1] */
    e.log_prob = -0.5;
    e.control = 1;
    cr_assert_not_null(trace_append(t, &e));
    cr_assert_eq(trace_array_copy(t, &t->result, &three, 1, NULL, 0), 0);
    t->id = 0x0102030405060708ull;
    t->log_prior = 1.0;
    t->log_likelihood = -2.0;
    t->log_proposal = 0.5;
    t->log_weight = -1.5;

    time_t before = time(NULL);
    char err[256];
    trace_writer *w = trace_writer_open(path, 0, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(trace_writer_append(w, t), 0);
    cr_assert_eq(trace_writer_close(&w), 0);
    time_t after = time(NULL);

    bytes want = {.n = 0};
    b_u64(&want, 0x0102030405060708ull);
    b_f64(&want, 1.0);
    b_f64(&want, -2.0);
    b_f64(&want, 0.5);
    b_f64(&want, -1.5);
    b_u32(&want, 0); /* result: ndim 0 */
    b_u32(&want, 1); /*         len 1 */
    b_f64(&want, 3.0);
    b_u32(&want, 1); /* n_entries */
    b_u8(&want, 1);  /* Sample */
    b_u8(&want, 1);  /* Normal */
    b_u32(&want, 1); /* control */
    b_u32(&want, 0); /* observed */
    b_u32(&want, 1); /* instance */
    b_u64(&want, 0); /* k */
    b_f64(&want, -0.5);
    b_str(&want, "ab__Normal__1");
    b_str(&want, "ab");
    b_str(&want, "n");
    b_u32(&want, 0); /* param 0: scalar */
    b_u32(&want, 1);
    b_f64(&want, 0.0);
    b_u32(&want, 0); /* param 1: scalar */
    b_u32(&want, 1);
    b_f64(&want, 1.0);
    b_u32(&want, 1); /* value: ndim 1, shape [1] */
    b_u32(&want, 1);
    b_u32(&want, 1);
    b_f64(&want, 2.0);

    size_t size;
    unsigned char *f = slurp(path, &size);
    cr_assert_eq(size, 32 + REC_HEAD + want.n);
    cr_assert_eq(memcmp(f, "PPXTRACE", 8), 0);
    cr_assert_eq(rd32(f + 8), 2, "format version");
    cr_assert_eq(rd32(f + 12), 32, "header size");
    uint64_t ctime = rd32(f + 16) | (uint64_t)rd32(f + 20) << 32;
    cr_assert(ctime >= (uint64_t)before && ctime <= (uint64_t)after, "creation time %llu",
              (unsigned long long)ctime);
    cr_assert_eq(rd32(f + 24), 0);
    cr_assert_eq(rd32(f + 28), 0);
    static const unsigned char marker[4] = {0x9e, 'P', 'X', 'R'};
    cr_assert_arr_eq(f + 32, marker, 4, "record marker");
    cr_assert_eq(rd32(f + 36), want.n, "payload length");
    cr_assert_eq(rd32(f + 40), trace_crc32c(0, want.b, want.n), "payload CRC");
    cr_assert_arr_eq(f + 44, want.b, want.n, "payload bytes");
    free(f);
    trace_destroy(&t);
    tmp_remove(&d);
}

/* ---- round trips ---------------------------------------------------------------------- */

Test(trace_store, round_trip_every_field)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "rt.ppxt", path, sizeof path);
    write_traces(path, 0, 0, 24, 0, TRACE_FSYNC_NEVER);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(path, &st), 24);
    cr_assert_eq(st.truncated, 0);
    cr_assert_eq(st.bad_tail_bytes, 0);
    tmp_remove(&d);
}

Test(trace_store, round_trip_tiny_batches_and_fsync_policies)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    trace_reader_stats st;
    tmp_file(&d, "flush.ppxt", path, sizeof path);
    write_traces(path, 0, 0, 10, 1, TRACE_FSYNC_FLUSH); /* every record flushed alone */
    cr_assert_eq(read_and_check(path, &st), 10);
    tmp_file(&d, "close.ppxt", path, sizeof path);
    write_traces(path, 0, 0, 10, 700, TRACE_FSYNC_CLOSE);
    cr_assert_eq(read_and_check(path, &st), 10);
    cr_assert_eq(st.truncated, 0);
    tmp_remove(&d);
}

Test(trace_store, create_truncates_an_existing_file)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "again.ppxt", path, sizeof path);
    write_traces(path, 0, 0, 9, 0, TRACE_FSYNC_NEVER);
    write_traces(path, 0, 0, 3, 0, TRACE_FSYNC_NEVER);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(path, &st), 3);
    cr_assert_eq(st.truncated, 0);
    tmp_remove(&d);
}

Test(trace_store, header_only_file_has_no_records)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "empty.ppxt", path, sizeof path);
    write_traces(path, 0, 0, 0, 0, TRACE_FSYNC_CLOSE);
    size_t size;
    free(slurp(path, &size));
    cr_assert_eq(size, 32);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(path, &st), 0);
    cr_assert_eq(st.truncated, 0);
    cr_assert_eq(st.bad_tail_bytes, 0);
    tmp_remove(&d);
}

Test(trace_store, append_mode_continues_the_file)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "app.ppxt", path, sizeof path);
    write_traces(path, 1, 0, 5, 0, TRACE_FSYNC_NEVER); /* append to a missing file creates it */
    write_traces(path, 1, 5, 8, 0, TRACE_FSYNC_FLUSH);
    write_traces(path, 1, 8, 8, 0, TRACE_FSYNC_NEVER);
    write_traces(path, 1, 8, 11, 64, TRACE_FSYNC_CLOSE);
    char err[256];
    trace_writer *w = trace_writer_open(path, 1, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(trace_writer_count(w), 11, "count includes the records already there");
    cr_assert_eq(trace_writer_close(&w), 0);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(path, &st), 11);
    cr_assert_eq(st.truncated, 0);
    tmp_remove(&d);
}

Test(trace_store, append_mode_cuts_a_damaged_tail)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "cut.ppxt", path, sizeof path);
    write_traces(path, 0, 0, 6, 0, TRACE_FSYNC_NEVER);
    size_t size, bounds[16];
    unsigned char *f = slurp(path, &size);
    size_t nb = record_bounds(f, size, bounds, 16);
    cr_assert_eq(nb, 7);

    /* Truncated in the middle of record 5. */
    cr_assert_eq(truncate(path, (off_t)(bounds[5] + 11)), 0);
    char err[256];
    trace_writer *w = trace_writer_open(path, 1, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(trace_writer_count(w), 5);
    trace *t = trace_new();
    for (uint64_t i = 5; i < 7; i++) {
        make_trace(t, i);
        cr_assert_eq(trace_writer_append(w, t), 0);
    }
    cr_assert_eq(trace_writer_close(&w), 0);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(path, &st), 7);
    cr_assert_eq(st.truncated, 0);

    /* A corrupt byte in the last record: a damaged tail, cut and appended anew. */
    free(f);
    f = slurp(path, &size);
    nb = record_bounds(f, size, bounds, 16);
    cr_assert_eq(nb, 8);
    f[bounds[6] + 20] ^= 0x40;
    spit(path, f, size);
    w = trace_writer_open(path, 1, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(trace_writer_count(w), 6);
    make_trace(t, 6);
    cr_assert_eq(trace_writer_append(w, t), 0);
    cr_assert_eq(trace_writer_close(&w), 0);
    cr_assert_eq(read_and_check(path, &st), 7);
    cr_assert_eq(st.truncated, 0);
    size_t size2;
    free(slurp(path, &size2));
    cr_assert_eq(size2, size, "the damaged tail is gone, not just skipped");

    /* A corrupt byte in record 2 of 7: the records after it are intact, so
     * append mode refuses rather than cut them off, and leaves the file be. */
    f[bounds[6] + 20] ^= 0x40;
    f[bounds[2] + 20] ^= 0x40;
    spit(path, f, size);
    w = trace_writer_open(path, 1, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_null(w, "append to a file damaged in the middle");
    cr_assert(strstr(err, "damaged before its end"), "%s", err);
    unsigned char *after = slurp(path, &size2);
    cr_assert_eq(size2, size);
    cr_assert_eq(memcmp(after, f, size), 0, "the refused append changed the file");
    free(after);
    free(f);
    trace_destroy(&t);
    tmp_remove(&d);
}

/* ---- damage ---------------------------------------------------------------------------- */

static void check_cut(const char *cut_path, const unsigned char *f, size_t cut,
                      const size_t *bounds, size_t nb)
{
    spit(cut_path, f, cut);
    size_t whole = 0;
    while (whole + 1 < nb && bounds[whole + 1] <= cut)
        whole++;
    trace_reader_stats st;
    uint64_t n = read_and_check(cut_path, &st);
    cr_assert_eq(n, whole, "cut at %zu: %llu records, want %zu", cut, (unsigned long long)n, whole);
    int at_boundary = bounds[whole] == cut;
    cr_assert_eq(st.truncated, !at_boundary, "cut at %zu", cut);
    cr_assert_eq(st.bad_tail_bytes, cut - bounds[whole], "cut at %zu", cut);
}

Test(trace_store, cut_at_every_byte_of_the_last_records)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], cut_path[128];
    tmp_file(&d, "full.ppxt", path, sizeof path);
    tmp_file(&d, "cut.ppxt", cut_path, sizeof cut_path);
    write_traces(path, 0, 0, 8, 0, TRACE_FSYNC_NEVER);
    size_t size, bounds[16];
    unsigned char *f = slurp(path, &size);
    size_t nb = record_bounds(f, size, bounds, 16);
    cr_assert_eq(nb, 9);
    /* Every byte of the last two records, and the full file. */
    for (size_t cut = bounds[6]; cut <= size; cut++)
        check_cut(cut_path, f, cut, bounds, nb);
    /* Some cuts in the middle: in a record's head, CRC, payload, at bounds. */
    size_t mids[] = {32, 33, 36, 39, 40, 41, bounds[1], bounds[1] + 7, bounds[2] + 8,
                     (bounds[2] + bounds[3]) / 2, bounds[3] - 1, bounds[4], bounds[5] + 3};
    for (size_t i = 0; i < sizeof mids / sizeof mids[0]; i++)
        check_cut(cut_path, f, mids[i], bounds, nb);
    free(f);
    tmp_remove(&d);
}

Test(trace_store, corrupt_byte_in_a_middle_record_is_skipped)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], bad_path[128];
    tmp_file(&d, "full.ppxt", path, sizeof path);
    tmp_file(&d, "bad.ppxt", bad_path, sizeof bad_path);
    write_traces(path, 0, 0, 6, 0, TRACE_FSYNC_NEVER);
    size_t size, bounds[16];
    unsigned char *f = slurp(path, &size);
    size_t nb = record_bounds(f, size, bounds, 16);
    cr_assert_eq(nb, 7);
    size_t rec = bounds[2], rec_len = bounds[3] - bounds[2];
    /* Marker, length, CRC bytes, first/middle/last payload bytes of record 2:
     * it is skipped, and records 3, 4 and 5 after it are read. */
    size_t offs[] = {0, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, rec_len / 2, rec_len - 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        for (unsigned flip = 0x01; flip <= 0x80; flip <<= 7) {
            f[rec + offs[i]] ^= (unsigned char)flip;
            spit(bad_path, f, size);
            f[rec + offs[i]] ^= (unsigned char)flip;
            trace_reader *r = trace_reader_open(bad_path, NULL, 0);
            cr_assert_not_null(r);
            trace *t = trace_new(), *want = trace_new();
            uint64_t ids[] = {0, 1, 3, 4, 5};
            for (size_t k = 0; k < 5; k++) {
                cr_assert_eq(trace_reader_next(r, t), 1, "flip %#x at record offset %zu: record %zu", flip,
                             offs[i], k);
                make_trace(want, ids[k]);
                assert_trace_eq(t, want);
            }
            cr_assert_eq(trace_reader_next(r, t), 0);
            trace_reader_stats st = trace_reader_get_stats(r);
            cr_assert_eq(st.records, 5);
            cr_assert_eq(st.damaged_regions, 1, "flip %#x at %zu", flip, offs[i]);
            cr_assert_eq(st.skipped_bytes, rec_len, "flip %#x at %zu", flip, offs[i]);
            cr_assert_eq(st.truncated, 0, "mid-file damage is not a damaged tail");
            cr_assert_eq(st.bad_tail_bytes, 0);
            trace_destroy(&t);
            trace_destroy(&want);
            trace_reader_close(&r);
        }
    }
    /* Two damaged records and a torn tail: each counted where it belongs. */
    f[bounds[1] + 30] ^= 0x10;
    f[bounds[3] + REC_LEN] ^= 0x01;
    spit(bad_path, f, bounds[6] - 5);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(bad_path, &st), 3); /* records 0, 2, 4 */
    cr_assert_eq(st.damaged_regions, 2);
    cr_assert_eq(st.skipped_bytes, (bounds[2] - bounds[1]) + (bounds[4] - bounds[3]));
    cr_assert_eq(st.truncated, 1);
    cr_assert_eq(st.bad_tail_bytes, bounds[6] - 5 - bounds[5]);
    /* Zeros over records 1 to 3 (a lost page): 0 and 4.. still read. */
    f[bounds[1] + 30] ^= 0x10;
    f[bounds[3] + REC_LEN] ^= 0x01;
    unsigned char *z = malloc(size);
    memcpy(z, f, size);
    memset(z + bounds[1], 0, bounds[4] - bounds[1]);
    spit(bad_path, z, size);
    cr_assert_eq(read_and_check(bad_path, &st), 3);
    cr_assert_eq(st.damaged_regions, 1);
    cr_assert_eq(st.skipped_bytes, bounds[4] - bounds[1]);
    cr_assert_eq(st.truncated, 0);
    free(z);
    free(f);
    tmp_remove(&d);
}

/* Version 1 files (no record marker) are still read, resynchronised after
 * damage, and appended to in their own format. */
Test(trace_store, version_1_files_stay_readable)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], v1[128], err[256];
    tmp_file(&d, "v2.ppxt", path, sizeof path);
    tmp_file(&d, "v1.ppxt", v1, sizeof v1);
    write_traces(path, 0, 0, 5, 0, TRACE_FSYNC_NEVER);
    size_t size, bounds[8];
    unsigned char *f = slurp(path, &size);
    size_t nb = record_bounds(f, size, bounds, 8);
    cr_assert_eq(nb, 6);
    /* The same records without their markers, under a version 1 header. */
    unsigned char *o = malloc(size);
    memcpy(o, f, 32);
    wr32(o + 8, 1);
    size_t n = 32, v1_bounds[8] = {32};
    for (size_t i = 0; i + 1 < nb; i++) {
        memcpy(o + n, f + bounds[i] + 4, bounds[i + 1] - bounds[i] - 4);
        n += bounds[i + 1] - bounds[i] - 4;
        v1_bounds[i + 1] = n;
    }
    spit(v1, o, n);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(v1, &st), 5);
    cr_assert_eq(st.truncated, 0);
    cr_assert_eq(st.damaged_regions, 0);
    /* damage in record 1: resynchronised at record 2 */
    o[v1_bounds[1] + 3] ^= 0x20; /* the length's top byte */
    spit(v1, o, n);
    trace_reader *r = trace_reader_open(v1, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    trace *t = trace_new(), *want = trace_new();
    uint64_t ids[] = {0, 2, 3, 4};
    for (size_t k = 0; k < 4; k++) {
        cr_assert_eq(trace_reader_next(r, t), 1, "record %zu", k);
        make_trace(want, ids[k]);
        assert_trace_eq(t, want);
    }
    cr_assert_eq(trace_reader_next(r, t), 0);
    st = trace_reader_get_stats(r);
    cr_assert_eq(st.damaged_regions, 1);
    cr_assert_eq(st.skipped_bytes, v1_bounds[2] - v1_bounds[1]);
    trace_reader_close(&r);
    /* appending to an intact version 1 file writes version 1 records */
    o[v1_bounds[1] + 3] ^= 0x20;
    spit(v1, o, n);
    write_traces(v1, 1, 5, 7, 0, TRACE_FSYNC_NEVER);
    size_t size1;
    unsigned char *g = slurp(v1, &size1);
    cr_assert_eq(rd32(g + 8), 1, "still version 1");
    cr_assert_neq(rd32(g + n), REC_MARKER, "a version 2 record appended to a version 1 file");
    cr_assert_leq(n + 8 + rd32(g + n), size1, "the appended record is not a version 1 record");
    cr_assert_eq(read_and_check(v1, &st), 7);
    cr_assert_eq(st.truncated, 0);
    cr_assert_eq(st.damaged_regions, 0);
    free(g);
    trace_destroy(&t);
    trace_destroy(&want);
    free(o);
    free(f);
    tmp_remove(&d);
}

/* A record whose CRC matches but whose payload is not a valid trace. */
static void check_bad_payload(const char *path, const unsigned char *payload, uint32_t len)
{
    char good[128];
    snprintf(good, sizeof good, "%s.good", path);
    write_traces(good, 0, 0, 1, 0, TRACE_FSYNC_NEVER);
    size_t gsize;
    unsigned char *g = slurp(good, &gsize);
    unlink(good);
    unsigned char *buf = malloc(gsize + REC_HEAD + (size_t)len);
    cr_assert_not_null(buf);
    memcpy(buf, g, gsize);
    wr32(buf + gsize, REC_MARKER);
    wr32(buf + gsize + REC_LEN, len);
    wr32(buf + gsize + REC_CRC, trace_crc32c(0, payload, len));
    memcpy(buf + gsize + REC_HEAD, payload, len);
    spit(path, buf, gsize + REC_HEAD + len);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(path, &st), 1);
    cr_assert_eq(st.truncated, 1);
    cr_assert_eq(st.bad_tail_bytes, REC_HEAD + len);
    free(g);
    free(buf);
}

Test(trace_store, payloads_that_fail_to_parse_are_a_bad_tail)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], src[128];
    tmp_file(&d, "p.ppxt", path, sizeof path);
    tmp_file(&d, "src.ppxt", src, sizeof src);

    /* Take a real payload (trace 4) and damage it in ways the CRC cannot see. */
    write_traces(src, 0, 4, 5, 0, TRACE_FSYNC_NEVER);
    size_t size;
    unsigned char *f = slurp(src, &size);
    unsigned char *p = f + 32 + REC_HEAD;
    uint32_t len = rd32(f + 32 + REC_LEN);
    unsigned char *q = malloc(len + 16);

    memcpy(q, p, len); /* trailing garbage */
    q[len] = 0;
    check_bad_payload(path, q, len + 1);
    check_bad_payload(path, p, len - 1); /* one byte short */
    check_bad_payload(path, p, 52); /* an entry count but no entries */

    /* Trace 4 has no result: the entry count is at offset 48. */
    cr_assert_eq(rd32(p + 40), 0, "result ndim");
    cr_assert_eq(rd32(p + 44), 0, "result len");
    memcpy(q, p, len);
    wr32(q + 48, 0xffffffffu); /* absurd entry count: rejected before allocating */
    check_bad_payload(path, q, len);
    memcpy(q, p, len);
    wr32(q + 48, rd32(p + 48) + 1); /* one entry too many */
    check_bad_payload(path, q, len);
    /* First entry at 52: kind, dist, control, observed, instance (62), k, log_prob,
     * then the address string (length at 82, text from 86). */
    memcpy(q, p, len);
    q[52] = 4; /* no such kind */
    check_bad_payload(path, q, len);
    memcpy(q, p, len);
    q[53] = 12; /* no such distribution */
    check_bad_payload(path, q, len);
    memcpy(q, p, len);
    q[86] = 0; /* NUL inside a string */
    check_bad_payload(path, q, len);
    memcpy(q, p, len);
    wr32(q + 82, 0x7fffffffu); /* string longer than the payload */
    check_bad_payload(path, q, len);

    /* Too short to be a trace at all (CRC fine). */
    check_bad_payload(path, (const unsigned char *)"", 0);
    check_bad_payload(path, p, 4);
    free(q);
    free(f);
    tmp_remove(&d);
}

/* An entry edited after appending (address and instance no longer what
 * trace_append computes) is written and read back as it was, like trace_copy
 * keeps it, and the records after it stay readable. */
Test(trace_store, edited_addresses_survive_verbatim)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "edited.ppxt", path, sizeof path);
    trace_writer *w = trace_writer_open(path, 0, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    trace *t = trace_new(), *edited = trace_new(), *got = trace_new();
    make_trace(edited, 4);
    edited->entries[0].address = "my own address";
    edited->entries[1].instance = 7;
    cr_assert_eq(trace_writer_append(w, edited), 0);
    make_trace(t, 5);
    cr_assert_eq(trace_writer_append(w, t), 0);
    cr_assert_eq(trace_writer_close(&w), 0);
    trace_reader *r = trace_reader_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert_eq(trace_reader_next(r, got), 1);
    assert_trace_eq(got, edited);
    cr_assert_str_eq(got->entries[0].address, "my own address");
    cr_assert_eq(got->entries[1].instance, 7);
    /* Its counters are the recomputed ones: appending continues them. */
    trace_entry e = got->entries[0];
    cr_assert_str_eq(trace_append(got, &e)->address, "[forward()+0x96]__Normal__2");
    cr_assert_eq(trace_reader_next(r, got), 1);
    assert_trace_eq(got, t);
    cr_assert_eq(trace_reader_next(r, got), 0);
    cr_assert_eq(trace_reader_get_stats(r).truncated, 0);
    trace_reader_close(&r);
    trace_destroy(&t);
    trace_destroy(&edited);
    trace_destroy(&got);
    tmp_remove(&d);
}

Test(trace_store, absurd_record_lengths)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], bad[128];
    tmp_file(&d, "a.ppxt", path, sizeof path);
    tmp_file(&d, "b.ppxt", bad, sizeof bad);
    write_traces(path, 0, 0, 4, 0, TRACE_FSYNC_NEVER);
    size_t size, bounds[8];
    unsigned char *f = slurp(path, &size);
    record_bounds(f, size, bounds, 8);
    uint32_t lens[] = {0xffffffffu, (1u << 30) + 1, 1u << 30, 0x00ffffffu, 0, 51};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unsigned char save[4];
        memcpy(save, f + bounds[1] + REC_LEN, 4);
        wr32(f + bounds[1] + REC_LEN, lens[i]);
        spit(bad, f, size);
        memcpy(f + bounds[1] + REC_LEN, save, 4);
        trace_reader_stats st;
        /* record 1 is skipped; 0, 2 and 3 are read */
        cr_assert_eq(read_and_check(bad, &st), 3, "length %#x", lens[i]);
        cr_assert_eq(st.truncated, 0);
        cr_assert_eq(st.damaged_regions, 1);
        cr_assert_eq(st.skipped_bytes, bounds[2] - bounds[1]);
        /* in the last record, the same lengths are a damaged tail */
        memcpy(save, f + bounds[3] + REC_LEN, 4);
        wr32(f + bounds[3] + REC_LEN, lens[i]);
        spit(bad, f, size);
        memcpy(f + bounds[3] + REC_LEN, save, 4);
        cr_assert_eq(read_and_check(bad, &st), 3, "length %#x", lens[i]);
        cr_assert_eq(st.truncated, 1);
        cr_assert_eq(st.bad_tail_bytes, size - bounds[3]);
        cr_assert_eq(st.damaged_regions, 0);
    }
    free(f);
    tmp_remove(&d);
}

/* ---- headers --------------------------------------------------------------------------- */

static void header_bytes(unsigned char h[32], const char *magic, uint32_t version, uint32_t hsize)
{
    memset(h, 0, 32);
    memcpy(h, magic, 8);
    wr32(h + 8, version);
    wr32(h + 12, hsize);
}

static void expect_open_error(const char *path, const char *needle)
{
    char err[256] = "";
    trace_reader *r = trace_reader_open(path, err, sizeof err);
    cr_assert_null(r, "opened %s", path);
    cr_assert_not_null(strstr(err, needle), "error \"%s\" lacks \"%s\"", err, needle);
    /* Append mode refuses the same files, for the same reason. */
    char werr[256] = "";
    trace_writer *w = trace_writer_open(path, 1, 0, TRACE_FSYNC_NEVER, werr, sizeof werr);
    cr_assert_null(w);
    cr_assert_not_null(strstr(werr, needle), "writer error \"%s\" lacks \"%s\"", werr, needle);
}

Test(trace_store, headers_are_validated)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "h.ppxt", path, sizeof path);
    unsigned char h[40];

    header_bytes(h, "PPXTRACF", 1, 32);
    spit(path, h, 32);
    expect_open_error(path, "not a ppxd trace file (bad magic)");

    header_bytes(h, "\x93NUMPY\x01\x00", 1, 32);
    spit(path, h, 32);
    expect_open_error(path, "bad magic");

    header_bytes(h, "PPXTRACE", 7, 32);
    spit(path, h, 32);
    expect_open_error(path, "format version 7 not supported (this build reads 1 to 2)");

    header_bytes(h, "PPXTRACE", 0, 32);
    spit(path, h, 32);
    expect_open_error(path, "format version 0 not supported");

    header_bytes(h, "PPXTRACE", 1, 64);
    spit(path, h, 32);
    expect_open_error(path, "header size 64");

    header_bytes(h, "PPXTRACE", 1, 32);
    spit(path, h, 20);
    expect_open_error(path, "truncated header (20 of 32 bytes)");
    spit(path, h, 5);
    expect_open_error(path, "truncated header (5 of 32 bytes)");

    char err[256] = "";
    tmp_file(&d, "missing.ppxt", path, sizeof path);
    cr_assert_null(trace_reader_open(path, err, sizeof err));
    cr_assert_not_null(strstr(err, "cannot open"), "%s", err);
    cr_assert_not_null(strstr(err, "missing.ppxt"), "%s", err);
    tmp_remove(&d);
}

Test(trace_store, second_writer_is_refused)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256] = "";
    tmp_file(&d, "lock.ppxt", path, sizeof path);
    trace_writer *w = trace_writer_open(path, 0, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    trace *t = trace_new();
    make_trace(t, 0);
    cr_assert_eq(trace_writer_append(w, t), 0);
    cr_assert_eq(trace_writer_flush(w), 0);
    cr_assert_null(trace_writer_open(path, 0, 0, TRACE_FSYNC_NEVER, err, sizeof err));
    cr_assert_not_null(strstr(err, "another trace writer"), "%s", err);
    cr_assert_null(trace_writer_open(path, 1, 0, TRACE_FSYNC_NEVER, err, sizeof err));
    /* ... and did not truncate the file. */
    cr_assert_eq(trace_writer_close(&w), 0);
    trace_reader_stats st;
    cr_assert_eq(read_and_check(path, &st), 1);
    trace_destroy(&t);
    tmp_remove(&d);
}

/* ---- concurrent reading ----------------------------------------------------------------- */

Test(trace_store, reader_follows_a_writer)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "live.ppxt", path, sizeof path);
    trace_writer *w = trace_writer_open(path, 0, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    trace *t = trace_new(), *want = trace_new();
    for (uint64_t i = 0; i < 3; i++) {
        make_trace(t, i);
        cr_assert_eq(trace_writer_append(w, t), 0);
    }
    trace_reader *r = trace_reader_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert_eq(trace_reader_next(r, t), 0, "nothing flushed yet");
    cr_assert_eq(trace_writer_flush(w), 0);
    for (uint64_t i = 0; i < 3; i++) {
        cr_assert_eq(trace_reader_next(r, t), 1);
        make_trace(want, i);
        assert_trace_eq(t, want);
    }
    cr_assert_eq(trace_reader_next(r, t), 0);
    cr_assert_eq(trace_reader_get_stats(r).truncated, 0);
    for (uint64_t i = 3; i < 5; i++) {
        make_trace(t, i);
        cr_assert_eq(trace_writer_append(w, t), 0);
    }
    cr_assert_eq(trace_writer_close(&w), 0);
    for (uint64_t i = 3; i < 5; i++) {
        cr_assert_eq(trace_reader_next(r, t), 1, "record %llu written after the reader's end",
                     (unsigned long long)i);
        make_trace(want, i);
        assert_trace_eq(t, want);
    }
    cr_assert_eq(trace_reader_next(r, t), 0);
    cr_assert_eq(trace_reader_get_stats(r).records, 5);
    trace_reader_close(&r);

    /* A half-written record is reported, then read once it is complete. */
    size_t size, bounds[8];
    unsigned char *f = slurp(path, &size);
    record_bounds(f, size, bounds, 8);
    size_t cut = bounds[4] + 9;
    spit(path, f, cut);
    r = trace_reader_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    for (uint64_t i = 0; i < 4; i++)
        cr_assert_eq(trace_reader_next(r, t), 1);
    cr_assert_eq(trace_reader_next(r, t), 0);
    trace_reader_stats st = trace_reader_get_stats(r);
    cr_assert_eq(st.truncated, 1);
    cr_assert_eq(st.bad_tail_bytes, 9);
    FILE *a = fopen(path, "ab");
    cr_assert_not_null(a);
    cr_assert_eq(fwrite(f + cut, 1, size - cut, a), size - cut);
    fclose(a);
    cr_assert_eq(trace_reader_next(r, t), 1);
    make_trace(want, 4);
    assert_trace_eq(t, want);
    st = trace_reader_get_stats(r);
    cr_assert_eq(st.records, 5);
    cr_assert_eq(st.truncated, 0);
    trace_reader_close(&r);
    free(f);
    trace_destroy(&t);
    trace_destroy(&want);
    tmp_remove(&d);
}

Test(trace_store, full_batches_are_written_without_a_flush)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "batch.ppxt", path, sizeof path);
    write_traces(path, 0, 0, 1, 0, TRACE_FSYNC_NEVER);
    size_t rec_size;
    free(slurp(path, &rec_size));
    rec_size -= 32;

    /* Equal-sized records (trace 0 renumbered), a batch of 2.5 records: the
     * batch is written before record 2 and record 4 would overflow it, so
     * after 5 appends records 0-3 are in the file and record 4 is not. */
    trace_writer *w = trace_writer_open(path, 0, rec_size * 5 / 2, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    trace *t = trace_new();
    for (uint64_t i = 0; i < 5; i++) {
        make_trace(t, 0);
        t->id = i;
        cr_assert_eq(trace_writer_append(w, t), 0);
    }
    trace_reader *r = trace_reader_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    uint64_t seen = 0;
    while (trace_reader_next(r, t) == 1)
        cr_assert_eq(t->id, seen++);
    cr_assert_eq(seen, 4);
    cr_assert_eq(trace_reader_get_stats(r).truncated, 0);
    cr_assert_eq(trace_writer_close(&w), 0);
    cr_assert_eq(trace_reader_next(r, t), 1, "the last record arrives on close");
    cr_assert_eq(t->id, 4);
    trace_reader_close(&r);

    /* A batch smaller than one record: every append goes straight out. */
    w = trace_writer_open(path, 0, 1, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    r = trace_reader_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    for (uint64_t i = 0; i < 3; i++) {
        make_trace(t, i);
        cr_assert_eq(trace_writer_append(w, t), 0);
        cr_assert_eq(trace_reader_next(r, t), 1);
        cr_assert_eq(t->id, i);
    }
    cr_assert_eq(trace_writer_close(&w), 0);
    trace_reader_close(&r);
    trace_destroy(&t);
    tmp_remove(&d);
}

/* A write that fails half-way (here: the file size limit) must not leave half
 * a batch in the file, and the writer must refuse further work. */
static int failing_writer_child(const char *path, size_t rec_size)
{
    struct rlimit lim = {32 + rec_size * 9 / 2, 32 + rec_size * 9 / 2};
    signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of being killed */
    if (setrlimit(RLIMIT_FSIZE, &lim) < 0)
        return 10;
    char err[256];
    trace_writer *w = trace_writer_open(path, 0, rec_size * 3, TRACE_FSYNC_NEVER, err, sizeof err);
    trace *t = trace_new();
    if (!w || !t)
        return 11;
    /* A full batch is written at once: records 0-2 when 2 is appended, 3-5
     * when 5 is, and that write stops at the limit in the middle of 4. */
    make_trace(t, 0);
    for (uint64_t i = 0; i < 5; i++) {
        t->id = i;
        if (trace_writer_append(w, t) < 0)
            return 12;
    }
    t->id = 5;
    if (trace_writer_append(w, t) != -1)
        return 13;
    if (!strstr(trace_writer_error(w), "File too large"))
        return 14;
    if (trace_writer_append(w, t) != -1 || trace_writer_flush(w) != -1)
        return 15;
    if (trace_writer_close(&w) != -1 || w)
        return 16;
    trace_destroy(&t);
    return 0;
}

Test(trace_store, failed_write_leaves_whole_records)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "limit.ppxt", path, sizeof path);
    write_traces(path, 0, 0, 1, 0, TRACE_FSYNC_NEVER);
    size_t rec_size;
    free(slurp(path, &rec_size));
    rec_size -= 32;
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        _exit(failing_writer_child(path, rec_size));
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child check %d failed",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    size_t size;
    free(slurp(path, &size));
    cr_assert_eq(size, 32 + 3 * rec_size, "the partial batch was cut off");
    char err[256];
    trace_reader *r = trace_reader_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    trace *t = trace_new();
    for (uint64_t i = 0; i < 3; i++) {
        cr_assert_eq(trace_reader_next(r, t), 1);
        cr_assert_eq(t->id, i);
    }
    cr_assert_eq(trace_reader_next(r, t), 0);
    cr_assert_eq(trace_reader_get_stats(r).truncated, 0);
    trace_reader_close(&r);
    trace_destroy(&t);
    tmp_remove(&d);
}

/* ---- crash ------------------------------------------------------------------------------- */

/* Child: write traces 0.. with a flush every 10 and tell the parent (once)
 * when `signal_at` records are flushed; never returns. */
static void crash_child(const char *path, int fd, uint64_t signal_at, trace_fsync_policy policy)
{
    char err[256];
    trace_writer *w = trace_writer_open(path, 0, 4096, policy, err, sizeof err);
    trace *t = trace_new();
    if (!w || !t)
        _exit(2);
    for (uint64_t i = 0; i < 400000; i++) {
        make_trace(t, i);
        if (trace_writer_append(w, t) < 0)
            _exit(3);
        if (i % 10 == 9) {
            if (trace_writer_flush(w) < 0)
                _exit(4);
            uint64_t n = i + 1;
            if (n == signal_at && write(fd, &n, sizeof n) != sizeof n)
                _exit(5);
        }
    }
    _exit(0);
}

static void crash_round(const tmpdir *d, uint64_t k, int delay_us, trace_fsync_policy policy)
{
    char path[128];
    tmp_file(d, "crash.ppxt", path, sizeof path);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        crash_child(path, fds[1], k, policy);
    }
    close(fds[1]);
    uint64_t n = 0;
    ssize_t got;
    do
        got = read(fds[0], &n, sizeof n);
    while (got < 0 && errno == EINTR);
    close(fds[0]);
    cr_assert_eq(got, (ssize_t)sizeof n, "the writer died before flushing %llu records",
                 (unsigned long long)k);
    cr_assert_eq(n, k);
    if (delay_us)
        usleep((useconds_t)delay_us);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "the writer must be killed mid-stream (status %#x)", status);

    trace_reader_stats st;
    uint64_t recovered = read_and_check(path, &st); /* every record matches make_trace */
    cr_assert_geq(recovered, k, "only %llu of %llu flushed records recovered",
                  (unsigned long long)recovered, (unsigned long long)k);
    cr_assert(!st.truncated || st.bad_tail_bytes > 0);
    /* Append mode picks up exactly there. */
    char err[256];
    trace_writer *w = trace_writer_open(path, 1, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(trace_writer_count(w), recovered);
    cr_assert_eq(trace_writer_close(&w), 0);
    cr_assert_eq(read_and_check(path, &st), recovered);
    cr_assert_eq(st.truncated, 0);
    unlink(path);
}

Test(trace_store, writer_killed_mid_stream_loses_no_flushed_record, .timeout = 120)
{
    tmpdir d;
    tmp_make(&d);
    crash_round(&d, 10, 0, TRACE_FSYNC_NEVER);
    crash_round(&d, 200, 300, TRACE_FSYNC_NEVER);
    crash_round(&d, 1000, 2000, TRACE_FSYNC_NEVER);
    crash_round(&d, 50, 1000, TRACE_FSYNC_FLUSH);
    tmp_remove(&d);
}
