/* Tests for src/export.c: .npy bytes and round trips, reading hand-made
 * .npy files (1-D, float32, version 2.0, other spellings of the header),
 * rejection of files we must not read, CSV text, tables of named trace
 * values, and — when /usr/bin/python3 has numpy — numpy reading our files and
 * us reading numpy's. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "export.h"
#include "testkit.h"

/* ---- files ------------------------------------------------------------------------ */

typedef struct tmpdir {
    char path[64];
} tmpdir;

static void tmp_make(tmpdir *d)
{
    cr_assert_eq(tk_tmpdir(d->path, sizeof d->path, "export"), 0, "mkdtemp: %s", strerror(errno));
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

/* A hand-made .npy: version major.minor, the header text padded with
 * spaces and '\n' to a multiple of 64 (pad = 1) or taken as it is, then
 * the data bytes. */
static void make_npy(const char *path, int major, int minor, const char *header, int pad,
                     const void *data, size_t data_len)
{
    size_t prefix = major == 1 ? 10 : 12;
    size_t hl = strlen(header);
    size_t total = hl;
    if (pad) {
        size_t used = prefix + hl + 1;
        total = hl + (64 - used % 64) % 64 + 1;
    }
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite("\x93NUMPY", 1, 6, f);
    fputc(major, f);
    fputc(minor, f);
    for (size_t i = 0; i < prefix - 8; i++)
        fputc((int)((total >> (8 * i)) & 0xff), f);
    fwrite(header, 1, hl, f);
    if (pad) {
        for (size_t i = hl; i + 1 < total; i++)
            fputc(' ', f);
        fputc('\n', f);
    }
    if (data_len)
        fwrite(data, 1, data_len, f);
    cr_assert_eq(fclose(f), 0);
}

/* Little-endian bytes of doubles / floats, whatever the host. */
static void le_f8(unsigned char *out, const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, &x[i], 8);
        for (int b = 0; b < 8; b++)
            out[8 * i + (size_t)b] = (unsigned char)(u >> (8 * b));
    }
}

static void le_f4(unsigned char *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        for (int b = 0; b < 4; b++)
            out[4 * i + (size_t)b] = (unsigned char)(u >> (8 * b));
    }
}

static int same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* ---- .npy writing ----------------------------------------------------------------- */

Test(npy, header_is_byte_exact)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "a.npy", path, sizeof path);
    const double x[6] = {0.5, 1.5, -2.0, 1e300, -0.0, 3.25};
    cr_assert_eq(npy_write(path, x, 3, 2, err, sizeof err), 0, "%s", err);
    size_t size;
    unsigned char *f = slurp(path, &size);
    const char *dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }";
    /* 10 + 59 + 1 = 70 -> padded to 128: header length 118 = 0x76 (as numpy writes it). */
    cr_assert_eq(size, 128 + 48);
    cr_assert_eq(memcmp(f, "\x93NUMPY", 6), 0);
    cr_assert_eq(f[6], 1);
    cr_assert_eq(f[7], 0);
    cr_assert_eq(f[8], 118);
    cr_assert_eq(f[9], 0);
    cr_assert_eq(memcmp(f + 10, dict, strlen(dict)), 0, "dict text: %.60s", (char *)f + 10);
    for (size_t i = 10 + strlen(dict); i < 127; i++)
        cr_assert_eq(f[i], ' ', "padding byte %zu", i);
    cr_assert_eq(f[127], '\n');
    unsigned char want[48];
    le_f8(want, x, 6);
    cr_assert_arr_eq(f + 128, want, 48);
    free(f);

    /* Other shapes: the data always starts at a multiple of 64. */
    size_t shapes[][2] = {{0, 0}, {1, 1}, {1234567, 0}, {0, 98765}, {10, 100}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t r = shapes[s][0], c = shapes[s][1];
        double *buf = calloc(r * c + 1, sizeof *buf);
        cr_assert_eq(npy_write(path, buf, r, c, err, sizeof err), 0, "%s", err);
        free(buf);
        f = slurp(path, &size);
        size_t hlen = f[8] | (size_t)f[9] << 8;
        cr_assert_eq((10 + hlen) % 64, 0, "shape (%zu, %zu)", r, c);
        cr_assert_eq(size, 10 + hlen + 8 * r * c);
        cr_assert_eq(f[10 + hlen - 1], '\n');
        char want_dict[128];
        snprintf(want_dict, sizeof want_dict,
                 "{'descr': '<f8', 'fortran_order': False, 'shape': (%zu, %zu), }", r, c);
        cr_assert_eq(memcmp(f + 10, want_dict, strlen(want_dict)), 0);
        free(f);
    }
    tmp_remove(&d);
}

Test(npy, round_trip_is_bit_exact)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "rt.npy", path, sizeof path);
    size_t shapes[][2] = {{1, 1}, {0, 3}, {3, 0}, {7, 5}, {1000, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t r = shapes[s][0], c = shapes[s][1], n = r * c;
        double *x = malloc((n + 1) * sizeof *x);
        const double specials[] = {NAN, -NAN, INFINITY, -INFINITY, -0.0, 4.9e-324, 1.7976931348623157e308};
        for (size_t i = 0; i < n; i++)
            x[i] = i < 7 ? specials[i] : (double)i / 7.0 - 3;
        cr_assert_eq(npy_write(path, x, r, c, err, sizeof err), 0, "%s", err);
        double *y = NULL;
        size_t rr = 99, cc = 99;
        cr_assert_eq(npy_read(path, &y, &rr, &cc, err, sizeof err), 0, "%s", err);
        cr_assert_eq(rr, r);
        cr_assert_eq(cc, c);
        cr_assert_not_null(y);
        for (size_t i = 0; i < n; i++)
            cr_assert(same_bits(x[i], y[i]), "element %zu of (%zu, %zu)", i, r, c);
        free(x);
        free(y);
    }
    tmp_remove(&d);
}

Test(npy, write_to_an_impossible_path_fails)
{
    char err[256] = "";
    double x = 1;
    cr_assert_eq(npy_write("/nonexistent-dir/x.npy", &x, 1, 1, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "/nonexistent-dir/x.npy"), "%s", err);
}

/* ---- .npy reading of hand-made files ------------------------------------------------ */

Test(npy, reads_1d_as_a_column)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "v.npy", path, sizeof path);
    const double x[4] = {1.25, -7, 0.1, 1e-300};
    unsigned char b[32];
    le_f8(b, x, 4);
    make_npy(path, 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", 1, b, 32);
    double *y;
    size_t r, c;
    cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r, 4);
    cr_assert_eq(c, 1);
    for (int i = 0; i < 4; i++)
        cr_assert(same_bits(y[i], x[i]));
    free(y);
    tmp_remove(&d);
}

Test(npy, reads_float32)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "f.npy", path, sizeof path);
    const float x[6] = {1.5f, -2.25f, 0.1f, 1e30f, -0.0f, 3.0f};
    unsigned char b[24];
    le_f4(b, x, 6);
    make_npy(path, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 1, b, 24);
    double *y;
    size_t r, c;
    cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r, 2);
    cr_assert_eq(c, 3);
    for (int i = 0; i < 6; i++)
        cr_assert(same_bits(y[i], (double)x[i]), "element %d: %.17g", i, y[i]);
    cr_assert_neq(y[2], 0.1, "float32 0.1 is not double 0.1");
    free(y);

    /* 1-D float32 too. */
    make_npy(path, 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", 1, b, 24);
    cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r, 6);
    cr_assert_eq(c, 1);
    cr_assert_eq(y[5], 3.0);
    free(y);
    tmp_remove(&d);
}

Test(npy, reads_version_2_and_other_header_spellings)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "v2.npy", path, sizeof path);
    const double x[4] = {1, 2, 3, 4};
    unsigned char b[32];
    le_f8(b, x, 4);
    const char *headers[] = {
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
        "{\"shape\" : (2L,2L) , 'descr':'<f8','fortran_order':False}", /* Python 2, any key order */
        "{'fortran_order': False, 'shape': (2, 2), 'descr': '<f8'}",
    };
    for (int major = 1; major <= 2; major++) {
        for (size_t h = 0; h < sizeof headers / sizeof headers[0]; h++) {
            for (int pad = 0; pad <= 1; pad++) {
                make_npy(path, major, 0, headers[h], pad, b, 32);
                double *y;
                size_t r, c;
                cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0,
                             "version %d header %zu pad %d: %s", major, h, pad, err);
                cr_assert_eq(r, 2);
                cr_assert_eq(c, 2);
                cr_assert_eq(y[3], 4.0);
                free(y);
            }
        }
    }
    tmp_remove(&d);
}

static void expect_rejected(const char *path, const char *needle)
{
    char err[256] = "";
    double *y = (double *)&err; /* must be reset to NULL */
    size_t r = 5, c = 5;
    cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), -1, "accepted; wanted \"%s\"", needle);
    cr_assert_null(y);
    cr_assert_not_null(strstr(err, needle), "error \"%s\" lacks \"%s\"", err, needle);
}

Test(npy, rejects_what_it_cannot_read)
{
    tmpdir d;
    tmp_make(&d);
    char path[128];
    tmp_file(&d, "bad.npy", path, sizeof path);
    const double x[6] = {1, 2, 3, 4, 5, 6};
    unsigned char b[48];
    le_f8(b, x, 6);
    const char *good = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }";

    struct {
        int major, minor;
        const char *header;
        size_t data;
        const char *needle;
    } cases[] = {
        {1, 0, good, 47, "truncated data: 47 of 48 bytes"},
        {1, 0, good, 0, "truncated data: 0 of 48 bytes"},
        {3, 0, good, 48, ".npy format version 3.0 is not supported"},
        {1, 1, good, 48, "version 1.1 is not supported"},
        {1, 0, "{'descr': '>f8', 'fortran_order': False, 'shape': (3, 2), }", 48, "big-endian"},
        {1, 0, "{'descr': '<c8', 'fortran_order': False, 'shape': (3, 2), }", 48,
         "unsupported dtype '<c8'"},
        {1, 0, "{'descr': '|i2', 'fortran_order': False, 'shape': (3, 2), }", 48,
         "unsupported dtype '|i2'"},
        {1, 0, "{'descr': '>i8', 'fortran_order': False, 'shape': (3, 2), }", 48, "big-endian"},
        {1, 0, "{'descr': '<f2', 'fortran_order': False, 'shape': (3, 2), }", 48,
         "unsupported dtype '<f2'"},
        {1, 0, "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (3,), }", 48,
         "structured"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3, 2), }", 48,
         "3-dimensional arrays are not supported"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 48,
         "0-dimensional arrays are not supported"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, }", 48, "lacks 'shape'"},
        {1, 0, "{'descr': '<f8', 'shape': (3, 2), }", 48, "lacks 'fortran_order'"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), 'x': 1}", 48,
         "unexpected key 'x'"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), ", 48, "malformed"},
        {1, 0, "{'descr': '<f8', 'fortran_order': Maybe, 'shape': (3, 2), }", 48, "malformed"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, -2), }", 48, "malformed"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (3 2), }", 48, "malformed"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), } junk", 48, "malformed"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999, 1), }", 48,
         "malformed"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000, 1000000000), }", 48,
         "truncated data"},
        {1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 48,
         "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_npy(path, cases[i].major, cases[i].minor, cases[i].header, 1, b, cases[i].data);
        expect_rejected(path, cases[i].needle);
    }

    /* Damage before the header text. */
    FILE *f = fopen(path, "wb");
    fclose(f);
    expect_rejected(path, "not a .npy file (bad magic)");
    f = fopen(path, "wb");
    fwrite("\x93NUMPZ\x01\x00\x10\x00", 1, 10, f);
    fclose(f);
    expect_rejected(path, "bad magic");
    f = fopen(path, "wb");
    fwrite("\x93NUMPY\x01", 1, 7, f);
    fclose(f);
    expect_rejected(path, "truncated .npy header");
    f = fopen(path, "wb");
    fwrite("\x93NUMPY\x01\x00\x76", 1, 9, f);
    fclose(f);
    expect_rejected(path, "truncated .npy header");
    f = fopen(path, "wb");
    fwrite("\x93NUMPY\x01\x00\x76\x00{'descr'", 1, 18, f);
    fclose(f);
    expect_rejected(path, "truncated .npy header");
    f = fopen(path, "wb");
    fwrite("\x93NUMPY\x02\x00\xff\xff\xff\x7f{'descr'", 1, 20, f);
    fclose(f);
    expect_rejected(path, "implausibly long");

    tmp_file(&d, "missing.npy", path, sizeof path);
    expect_rejected(path, "cannot open");
    tmp_remove(&d);
}

/* ---- CSV ---------------------------------------------------------------------------- */

Test(csv, content_is_exact)
{
    tmpdir d;
    tmp_make(&d);
    char path[128], err[256];
    tmp_file(&d, "t.csv", path, sizeof path);
    const char *names[3] = {"a", "b,c", "q\"x"};
    const double x[6] = {1, 0.1, -2.5, 1e300, -0.0, 3.5};
    cr_assert_eq(csv_write(path, names, x, 2, 3, err, sizeof err), 0, "%s", err);
    size_t size;
    char *text = (char *)slurp(path, &size);
    cr_assert_str_eq(text, "a,\"b,c\",\"q\"\"x\"\n"
                           "1,0.10000000000000001,-2.5\n"
                           "1.0000000000000001e+300,-0,3.5\n");
    free(text);

    cr_assert_eq(csv_write(path, names, x, 0, 2, err, sizeof err), 0, "%s", err);
    text = (char *)slurp(path, &size);
    cr_assert_str_eq(text, "a,\"b,c\"\n");
    free(text);

    cr_assert_eq(csv_write("/nonexistent-dir/t.csv", names, x, 2, 3, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "/nonexistent-dir/t.csv"), "%s", err);
    tmp_remove(&d);
}

/* ---- tables ---------------------------------------------------------------------------- */

/* A trace with an unnamed sample, an earlier "mu" that must be ignored (of
 * several entries with one name the last counts), theta (3 values) and mu
 * (a 0-d scalar). */
static void fill_trace(trace *t, uint64_t id, double mu, const double theta[3], size_t theta_len)
{
    trace_reset(t);
    t->id = id;
    double other = -1, mu2 = 1e9;
    int32_t shape[1] = {(int32_t)theta_len};
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = TRACE_SAMPLE;
    e.dist = DIST_NORMAL;
    e.base_address = "a";
    e.name = "";
    e.value = (trace_array){&other, 1, NULL, 0};
    cr_assert_not_null(trace_append(t, &e));
    e.name = "mu";
    e.value = (trace_array){&mu2, 1, NULL, 0};
    cr_assert_not_null(trace_append(t, &e));
    if (theta_len) {
        e.name = "theta";
        e.value = (trace_array){(double *)theta, theta_len, shape, 1};
        cr_assert_not_null(trace_append(t, &e));
    }
    e.name = "mu";
    e.value = (trace_array){&mu, 1, NULL, 0};
    cr_assert_not_null(trace_append(t, &e));
}

Test(export_table, scalar_and_vector_columns)
{
    tmpdir d;
    tmp_make(&d);
    char npy[128], csv[128], err[256];
    tmp_file(&d, "t.npy", npy, sizeof npy);
    tmp_file(&d, "t.csv", csv, sizeof csv);
    const char *names[2] = {"mu", "theta"};
    export_table *x = export_table_new(names, 2);
    cr_assert_not_null(x);
    cr_assert_eq(export_table_cols(x), 0, "widths are unknown before the first row");
    trace *t = trace_new();
    for (int i = 0; i < 3; i++) {
        double theta[3] = {i, i + 0.5, -i};
        fill_trace(t, (uint64_t)i, 10.0 + i, theta, 3);
        cr_assert_eq(export_table_add(x, t, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(export_table_rows(x), 3);
    cr_assert_eq(export_table_cols(x), 4);
    const char *want_names[4] = {"mu", "theta[0]", "theta[1]", "theta[2]"};
    for (size_t j = 0; j < 4; j++)
        cr_assert_str_eq(export_table_col_name(x, j), want_names[j]);
    cr_assert_null(export_table_col_name(x, 4));
    const double want[12] = {10, 0, 0.5, 0, 11, 1, 1.5, -1, 12, 2, 2.5, -2};
    cr_assert_arr_eq(export_table_data(x), want, sizeof want);

    cr_assert_eq(export_table_write_npy(x, npy, err, sizeof err), 0, "%s", err);
    double *y;
    size_t r, c;
    cr_assert_eq(npy_read(npy, &y, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r, 3);
    cr_assert_eq(c, 4);
    cr_assert_arr_eq(y, want, sizeof want);
    free(y);

    cr_assert_eq(export_table_write_csv(x, csv, err, sizeof err), 0, "%s", err);
    size_t size;
    char *text = (char *)slurp(csv, &size);
    cr_assert_str_eq(text, "mu,theta[0],theta[1],theta[2]\n"
                           "10,0,0.5,0\n"
                           "11,1,1.5,-1\n"
                           "12,2,2.5,-2\n");
    free(text);
    export_table_destroy(&x);
    cr_assert_null(x);
    trace_destroy(&t);
    tmp_remove(&d);
}

/* The log-weight sums as columns: an IS run's traces reweighted outside ppxd. */
Test(export_table, log_weight_columns)
{
    const char *names[5] = {"mu", "@log_weight", "@log_prior", "@log_likelihood", "@log_proposal"};
    export_table *x = export_table_new(names, 5);
    trace *t = trace_new();
    char err[256];
    double theta[3] = {0, 0, 0};
    for (int i = 0; i < 2; i++) {
        fill_trace(t, (uint64_t)i, i, theta, 0);
        t->log_prior = -1.5 - i;
        t->log_likelihood = -2.25;
        t->log_proposal = i ? -0.5 : 0.0;
        t->log_weight = t->log_prior + t->log_likelihood - t->log_proposal;
        cr_assert_eq(export_table_add(x, t, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(export_table_cols(x), 5);
    cr_assert_str_eq(export_table_col_name(x, 1), "@log_weight");
    cr_assert_str_eq(export_table_col_name(x, 4), "@log_proposal");
    const double want[10] = {0, -3.75, -1.5, -2.25, 0, 1, -4.25, -2.5, -2.25, -0.5};
    cr_assert_arr_eq(export_table_data(x), want, sizeof want);
    export_table_destroy(&x);
    /* A misspelt one is no name of the trace. */
    const char *bad[1] = {"@log_weights"};
    x = export_table_new(bad, 1);
    cr_assert_eq(export_table_add(x, t, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "@log_weights"), "%s", err);
    export_table_destroy(&x);
    trace_destroy(&t);
}

Test(export_table, many_rows_grow)
{
    const char *names[1] = {"mu"};
    export_table *x = export_table_new(names, 1);
    trace *t = trace_new();
    char err[256];
    double theta[3] = {0, 0, 0};
    for (int i = 0; i < 5000; i++) {
        fill_trace(t, (uint64_t)i, i * 0.5, theta, 0);
        cr_assert_eq(export_table_add(x, t, err, sizeof err), 0, "%s", err);
    }
    cr_assert_eq(export_table_rows(x), 5000);
    cr_assert_eq(export_table_cols(x), 1);
    for (int i = 0; i < 5000; i++)
        cr_assert_eq(export_table_data(x)[i], i * 0.5);
    export_table_destroy(&x);
    trace_destroy(&t);
}

Test(export_table, rejects_missing_names_and_width_changes)
{
    tmpdir d;
    tmp_make(&d);
    char csv[128];
    tmp_file(&d, "e.csv", csv, sizeof csv);
    const char *names[2] = {"mu", "theta"};
    export_table *x = export_table_new(names, 2);
    trace *t = trace_new();
    char err[256] = "";
    double theta[3] = {1, 2, 3};

    /* Missing on the first row: nothing is fixed yet. */
    fill_trace(t, 7, 1.0, theta, 0);
    cr_assert_eq(export_table_add(x, t, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "'theta'"), "%s", err);
    cr_assert_not_null(strstr(err, "7"), "the error names the trace: %s", err);
    cr_assert_eq(export_table_rows(x), 0);
    cr_assert_eq(export_table_cols(x), 0);

    fill_trace(t, 8, 2.0, theta, 3);
    cr_assert_eq(export_table_add(x, t, err, sizeof err), 0, "%s", err);
    fill_trace(t, 9, 3.0, theta, 2);
    cr_assert_eq(export_table_add(x, t, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "'theta' has 2 values"), "%s", err);
    fill_trace(t, 10, 4.0, theta, 0);
    cr_assert_eq(export_table_add(x, t, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "'theta' has no value"), "%s", err);
    cr_assert_eq(export_table_rows(x), 1, "rejected rows are not added");
    cr_assert_eq(export_table_cols(x), 4);
    cr_assert_eq(export_table_data(x)[0], 2.0);

    /* An entry whose value is empty has no width. */
    const char *ynames[1] = {"y"};
    export_table *y = export_table_new(ynames, 1);
    trace_reset(t);
    int32_t zero[1] = {0};
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = TRACE_OBSERVE;
    e.base_address = "o";
    e.name = "y";
    e.value = (trace_array){NULL, 0, zero, 1};
    cr_assert_not_null(trace_append(t, &e));
    cr_assert_eq(export_table_add(y, t, err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "'y' has no value"), "%s", err);
    export_table_destroy(&y);

    /* A table with no rows still writes a valid (empty) file. */
    const char *znames[1] = {"z"};
    export_table *z = export_table_new(znames, 1);
    cr_assert_eq(export_table_write_csv(z, csv, err, sizeof err), 0, "%s", err);
    char npy[128];
    tmp_file(&d, "e.npy", npy, sizeof npy);
    cr_assert_eq(export_table_write_npy(z, npy, err, sizeof err), 0, "%s", err);
    double *data;
    size_t r, c;
    cr_assert_eq(npy_read(npy, &data, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r, 0);
    cr_assert_eq(c, 0);
    free(data);
    export_table_destroy(&z);

    export_table_destroy(&x);
    trace_destroy(&t);
    tmp_remove(&d);
}

/* ---- numpy interoperation ----------------------------------------------------------------- */

#define PY "/usr/bin/python3"

static int run_python(const char *script)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, PY " -c '%s'", script);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(npy, numpy_reads_ours_and_we_read_numpys)
{
    if (access(PY, X_OK) != 0 || run_python("import numpy") != 0)
        cr_skip("skipped: " PY " with numpy is not available");
    tmpdir d;
    tmp_make(&d);
    char ours[128], theirs[128], err[256], script[3072];
    tmp_file(&d, "ours.npy", ours, sizeof ours);
    tmp_file(&d, "theirs", theirs, sizeof theirs);

    const double x[6] = {0.1, -0.0, INFINITY, 1e300, 4.9e-324, -7.5};
    cr_assert_eq(npy_write(ours, x, 2, 3, err, sizeof err), 0, "%s", err);
    snprintf(script, sizeof script,
             "import numpy as np, math, sys\n"
             "a = np.load(\"%s\")\n"
             "ok = a.dtype == np.float64 and a.shape == (2, 3) and a.flags.c_contiguous\n"
             "want = [0.1, -0.0, math.inf, 1e300, 5e-324, -7.5]\n"
             "ok = ok and list(a.ravel()) == want and math.copysign(1, a[0, 1]) < 0\n"
             "sys.exit(0 if ok else 1)\n",
             ours);
    cr_assert_eq(run_python(script), 0, "numpy disagrees about %s", ours);

    /* numpy's own files: float64 2-D (with numpy's extra header padding),
     * float32 1-D, format 2.0, a Fortran-order array, integers and bools. */
    snprintf(script, sizeof script,
             "import numpy as np\n"
             "p = \"%s\"\n"
             "np.save(p + \"_f8.npy\", np.arange(12, dtype=np.float64).reshape(4, 3) / 8)\n"
             "np.save(p + \"_f4.npy\", np.array([0.1, 2.5, -3], dtype=np.float32))\n"
             "with open(p + \"_v2.npy\", \"wb\") as f:\n"
             "    np.lib.format.write_array(f, np.array([[1.0, 2.0]]), version=(2, 0))\n"
             "np.save(p + \"_fo.npy\", np.asfortranarray(np.arange(6.0).reshape(2, 3)))\n"
             "np.save(p + \"_be.npy\", np.ones(3, dtype=\">f8\"))\n"
             "np.save(p + \"_i8.npy\", np.array([[3, -2], [0, 2**53], [-2**63, 2**63 - 1]], dtype=np.int64))\n"
             "np.save(p + \"_i4.npy\", np.array([-1, 7, -2**31], dtype=np.int32))\n"
             "np.save(p + \"_i2.npy\", np.array([-300, 300], dtype=np.int16))\n"
             "np.save(p + \"_i1.npy\", np.array([-128, 127], dtype=np.int8))\n"
             "np.save(p + \"_u1.npy\", np.array([0, 255], dtype=np.uint8))\n"
             "np.save(p + \"_u8.npy\", np.array([2**64 - 1], dtype=np.uint64))\n"
             "np.save(p + \"_b1.npy\", np.array([[True, False, True]]))\n",
             theirs);
    cr_assert_eq(run_python(script), 0);
    char path[160];
    double *y;
    size_t r, c;
    snprintf(path, sizeof path, "%s_f8.npy", theirs);
    cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r, 4);
    cr_assert_eq(c, 3);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(y[i], i / 8.0);
    free(y);
    snprintf(path, sizeof path, "%s_f4.npy", theirs);
    cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r, 3);
    cr_assert_eq(c, 1);
    cr_assert_eq(y[0], (double)0.1f);
    cr_assert_eq(y[2], -3.0);
    free(y);
    snprintf(path, sizeof path, "%s_v2.npy", theirs);
    cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r, 1);
    cr_assert_eq(c, 2);
    cr_assert_eq(y[1], 2.0);
    free(y);
    /* Integer and boolean files (counts are int64 in numpy) read as doubles. */
    static const struct {
        const char *suffix;
        size_t rows, cols;
        double want[6];
    } ints[] = {
        {"_i8.npy", 3, 2, {3, -2, 0, 9007199254740992.0, -9223372036854775808.0, 9223372036854775807.0}},
        {"_i4.npy", 3, 1, {-1, 7, -2147483648.0}},
        {"_i2.npy", 2, 1, {-300, 300}},
        {"_i1.npy", 2, 1, {-128, 127}},
        {"_u1.npy", 2, 1, {0, 255}},
        {"_u8.npy", 1, 1, {18446744073709551615.0}},
        {"_b1.npy", 1, 3, {1, 0, 1}},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        snprintf(path, sizeof path, "%s%s", theirs, ints[k].suffix);
        cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0, "%s: %s", ints[k].suffix, err);
        cr_assert(r == ints[k].rows && c == ints[k].cols, "%s: %zu x %zu", ints[k].suffix, r, c);
        for (size_t i = 0; i < r * c; i++)
            cr_assert_eq(y[i], ints[k].want[i], "%s[%zu] = %.17g, want %.17g", ints[k].suffix, i, y[i],
                         ints[k].want[i]);
        free(y);
    }
    /* Fortran order (numpy writes a transposed array so) reads transposed
     * back into row-major. */
    snprintf(path, sizeof path, "%s_fo.npy", theirs);
    cr_assert_eq(npy_read(path, &y, &r, &c, err, sizeof err), 0, "%s", err);
    cr_assert(r == 2 && c == 3);
    for (int i = 0; i < 6; i++) cr_assert_eq(y[i], (double)i, "[%d] = %g", i, y[i]);
    free(y);
    snprintf(path, sizeof path, "%s_be.npy", theirs);
    expect_rejected(path, "big-endian");
    tmp_remove(&d);
}
