/* export.c — NumPy .npy writing and reading, CSV writing, tables of named
 * trace values.
 *
 * .npy format (numpy.lib.format): magic "\x93NUMPY", major and minor version
 * bytes, the header length (u16 little-endian in version 1.0, u32 in 2.0),
 * then the header: an ASCII Python dict literal with keys 'descr',
 * 'fortran_order' and 'shape', padded with spaces and ended by '\n' so that
 * magic + version + length field + header is a multiple of 64 bytes (the
 * format's rule, numpy's ARRAY_ALIGN), i.e. the data starts 64-aligned for
 * mmap.  The data follows with no padding.  numpy itself pads a further 64
 * bytes when already aligned and leaves room for growing the first axis; we
 * pad minimally, which every reader accepts.  We write version 1.0 (our 2-D header is far below 64 KiB) and
 * read 1.0 and 2.0; 3.0 differs only in allowing UTF-8 in the header, which a
 * float array never needs, so it is rejected like any unknown version.
 */
#include "export.h"
#include "select.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    NPY_ALIGN = 64,
    NPY_MAGIC_LEN = 6,
    /* Headers of real files are ~128 bytes; this only stops a corrupt
     * version-2.0 length from allocating gigabytes. */
    NPY_MAX_HEADER = 1 << 20,
    NPY_MAX_NDIM = 2,
    IO_CHUNK = 4096 /* values converted per fwrite/fread */
};

static const char npy_magic[NPY_MAGIC_LEN] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || !err_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* fclose, and on any earlier or closing error report it and remove the
 * partial file so that no half-written output is mistaken for a result. */
static int finish_file(FILE *f, const char *path, int failed, char *err, size_t err_len)
{
    int e = failed ? errno : 0;
    if (ferror(f) && !e)
        e = errno ? errno : EIO;
    if (fclose(f) != 0 && !e)
        e = errno ? errno : EIO;
    if (!e && !failed)
        return 0;
    set_err(err, err_len, "cannot write %s: %s", path, strerror(e ? e : EIO));
    unlink(path);
    return -1;
}

/* ---- .npy writing ------------------------------------------------------------------ */

int npy_write(const char *path, const double *data, size_t rows, size_t cols, char *err,
              size_t err_len)
{
    if (cols && rows > SIZE_MAX / sizeof(double) / cols) {
        set_err(err, err_len, "%s: array of %zu x %zu is too large", path, rows, cols);
        return -1;
    }
    size_t n = rows * cols;
    assert(data || n == 0);

    /* numpy's own spelling, so that numpy.load and byte-level tools agree. */
    char dict[128];
    int dlen = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (%zu, %zu), }",
                        rows, cols);
    assert(dlen > 0 && (size_t)dlen < sizeof dict);
    size_t prefix = NPY_MAGIC_LEN + 2 + 2; /* magic, version, u16 header length */
    size_t used = prefix + (size_t)dlen + 1; /* + the final '\n' */
    size_t pad = (NPY_ALIGN - used % NPY_ALIGN) % NPY_ALIGN;
    size_t hlen = (size_t)dlen + pad + 1;

    unsigned char head[sizeof dict + NPY_ALIGN + 16];
    memcpy(head, npy_magic, NPY_MAGIC_LEN);
    head[6] = 1; /* version 1.0 */
    head[7] = 0;
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + prefix, dict, (size_t)dlen);
    memset(head + prefix + dlen, ' ', pad);
    head[prefix + hlen - 1] = '\n';

    FILE *f = fopen(path, "wb");
    if (!f) {
        set_err(err, err_len, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    int failed = fwrite(head, 1, prefix + hlen, f) != prefix + hlen;
    unsigned char chunk[IO_CHUNK * 8];
    for (size_t i = 0; i < n && !failed;) {
        size_t m = n - i < IO_CHUNK ? n - i : IO_CHUNK;
        for (size_t j = 0; j < m; j++) {
            uint64_t bits;
            memcpy(&bits, &data[i + j], sizeof bits);
            for (int b = 0; b < 8; b++)
                chunk[8 * j + (size_t)b] = (unsigned char)(bits >> (8 * b));
        }
        failed = fwrite(chunk, 8, m, f) != m;
        i += m;
    }
    return finish_file(f, path, failed, err, err_len);
}

/* ---- .npy header parsing -------------------------------------------------------------- */

/* A cursor over the header text; a Python dict literal as numpy writes it. */
typedef struct header_parser {
    const char *p, *end;
} header_parser;

static void hp_skip_space(header_parser *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static int hp_accept(header_parser *h, char c)
{
    hp_skip_space(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes ('...' or "..."), into out. */
static int hp_string(header_parser *h, char *out, size_t out_len)
{
    hp_skip_space(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return -1;
    char q = *h->p++;
    const char *s = h->p;
    while (h->p < h->end && *h->p != q && *h->p != '\\')
        h->p++;
    if (h->p >= h->end || *h->p != q || (size_t)(h->p - s) >= out_len)
        return -1;
    memcpy(out, s, (size_t)(h->p - s));
    out[h->p - s] = '\0';
    h->p++;
    return 0;
}

static int hp_word(header_parser *h, const char *w)
{
    hp_skip_space(h);
    size_t n = strlen(w);
    if ((size_t)(h->end - h->p) < n || memcmp(h->p, w, n) != 0)
        return 0;
    h->p += n;
    return 1;
}

/* A non-negative integer; Python 2 wrote longs as "3L". */
static int hp_size(header_parser *h, size_t *v)
{
    hp_skip_space(h);
    if (h->p >= h->end || *h->p < '0' || *h->p > '9')
        return -1;
    size_t x = 0;
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
        size_t d = (size_t)(*h->p - '0');
        if (x > (SIZE_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
        h->p++;
    }
    if (h->p < h->end && *h->p == 'L')
        h->p++;
    *v = x;
    return 0;
}

/* "(a, b)", "(a,)", "()": up to max dims; *ndim may exceed max (then dims
 * beyond max are not stored) so the caller can say how many there were. */
static int hp_shape(header_parser *h, size_t *dims, size_t max, size_t *ndim)
{
    *ndim = 0;
    if (!hp_accept(h, '('))
        return -1;
    if (hp_accept(h, ')'))
        return 0;
    for (;;) {
        size_t v;
        if (hp_size(h, &v) < 0)
            return -1;
        if (*ndim < max)
            dims[*ndim] = v;
        (*ndim)++;
        if (hp_accept(h, ')'))
            return 0;
        if (!hp_accept(h, ','))
            return -1;
        if (hp_accept(h, ')'))
            return 0;
    }
}

/* The element types read: IEEE floats, two's-complement and unsigned
 * integers, and booleans (one byte, 0 or not), all little-endian. */
typedef enum npy_type { NPY_FLOAT, NPY_INT, NPY_UINT, NPY_BOOL } npy_type;

typedef struct npy_header {
    npy_type type;
    size_t item;  /* bytes per element: 8 or 4 (floats), 1, 2, 4 or 8 (integers), 1 (bool) */
    size_t dims[NPY_MAX_NDIM];
    size_t ndim;
    int fortran;  /* column-major (numpy writes a transposed array so): transposed on reading */
} npy_header;

static int parse_npy_header(const char *text, size_t len, npy_header *out, const char *path,
                            char *err, size_t err_len)
{
    header_parser h = {text, text + len};
    char key[32], descr[32];
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    if (!hp_accept(&h, '{'))
        goto syntax;
    while (!hp_accept(&h, '}')) {
        if (hp_string(&h, key, sizeof key) < 0 || !hp_accept(&h, ':'))
            goto syntax;
        if (strcmp(key, "descr") == 0) {
            hp_skip_space(&h);
            if (h.p < h.end && *h.p == '[') {
                set_err(err, err_len, "%s: structured dtypes are not supported (need one number per element)",
                        path);
                return -1;
            }
            if (hp_string(&h, descr, sizeof descr) < 0)
                goto syntax;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (hp_word(&h, "True"))
                fortran = 1;
            else if (!hp_word(&h, "False"))
                goto syntax;
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (hp_shape(&h, out->dims, NPY_MAX_NDIM, &out->ndim) < 0)
                goto syntax;
            have_shape = 1;
        } else {
            set_err(err, err_len, "%s: unexpected key '%s' in the .npy header", path, key);
            return -1;
        }
        if (!hp_accept(&h, ',')) {
            if (!hp_accept(&h, '}'))
                goto syntax;
            break;
        }
    }
    hp_skip_space(&h);
    if (h.p != h.end)
        goto syntax;
    if (!have_descr || !have_order || !have_shape) {
        set_err(err, err_len, "%s: the .npy header lacks '%s'", path,
                !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
        return -1;
    }
    /* descr is byte order ('<' little-endian, '|' not applicable, '='
     * native: little-endian on every machine ppxd builds for), kind and
     * size in bytes. */
    static const struct { const char *code; npy_type type; size_t item; } types[] = {
        {"f8", NPY_FLOAT, 8}, {"f4", NPY_FLOAT, 4}, {"i8", NPY_INT, 8}, {"i4", NPY_INT, 4},
        {"i2", NPY_INT, 2},   {"i1", NPY_INT, 1},   {"u8", NPY_UINT, 8}, {"u4", NPY_UINT, 4},
        {"u2", NPY_UINT, 2},  {"u1", NPY_UINT, 1},  {"b1", NPY_BOOL, 1},
    };
    size_t t = 0, nt = sizeof types / sizeof types[0];
    if (descr[0] == '<' || descr[0] == '|' || descr[0] == '=')
        for (; t < nt; t++)
            if (strcmp(descr + 1, types[t].code) == 0 && (descr[0] != '|' || types[t].item == 1)) break;
    if (descr[0] == '>') {
        set_err(err, err_len, "%s: big-endian data ('%s') is not supported", path, descr);
        return -1;
    }
    if (t == nt) {
        set_err(err, err_len, "%s: unsupported dtype '%s' (need float64/32, a signed or unsigned integer of "
                "1-8 bytes, or bool, little-endian)", path, descr);
        return -1;
    }
    out->type = types[t].type;
    out->item = types[t].item;
    out->fortran = fortran;
    if (out->ndim < 1 || out->ndim > NPY_MAX_NDIM) {
        set_err(err, err_len, "%s: %zu-dimensional arrays are not supported (need 1-D or 2-D)",
                path, out->ndim);
        return -1;
    }
    return 0;
syntax:
    set_err(err, err_len, "%s: malformed .npy header near offset %zu", path, (size_t)(h.p - text));
    return -1;
}

/* ---- .npy reading ----------------------------------------------------------------------- */

int npy_read(const char *path, double **data, size_t *rows, size_t *cols, char *err,
             size_t err_len)
{
    *data = NULL;
    *rows = *cols = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    double *out = NULL;
    unsigned char pre[12];
    size_t got = fread(pre, 1, 8, f);
    if (got < NPY_MAGIC_LEN || memcmp(pre, npy_magic, NPY_MAGIC_LEN) != 0) {
        set_err(err, err_len, "%s: not a .npy file (bad magic)", path);
        goto fail;
    }
    if (got < 8) {
        set_err(err, err_len, "%s: truncated .npy header", path);
        goto fail;
    }
    unsigned major = pre[6], minor = pre[7];
    size_t len_bytes = major == 1 ? 2 : 4;
    if ((major != 1 && major != 2) || minor != 0) {
        set_err(err, err_len, "%s: .npy format version %u.%u is not supported (need 1.0 or 2.0)",
                path, major, minor);
        goto fail;
    }
    if (fread(pre + 8, 1, len_bytes, f) != len_bytes) {
        set_err(err, err_len, "%s: truncated .npy header", path);
        goto fail;
    }
    size_t hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (major == 2)
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    if (hlen > NPY_MAX_HEADER) {
        set_err(err, err_len, "%s: .npy header of %zu bytes is implausibly long", path, hlen);
        goto fail;
    }
    text = malloc(hlen + 1);
    if (!text) {
        set_err(err, err_len, "%s: out of memory", path);
        goto fail;
    }
    if (fread(text, 1, hlen, f) != hlen) {
        set_err(err, err_len, "%s: truncated .npy header", path);
        goto fail;
    }
    npy_header h;
    if (parse_npy_header(text, hlen, &h, path, err, err_len) < 0)
        goto fail;
    size_t r = h.dims[0], c = h.ndim == 2 ? h.dims[1] : 1;
    if (c && r > SIZE_MAX / sizeof(double) / c) {
        set_err(err, err_len, "%s: array of %zu x %zu is too large", path, r, c);
        goto fail;
    }
    size_t n = r * c;
    /* Check the size before allocating, so a corrupt shape cannot ask for
     * more memory than the file could fill. */
    struct stat st;
    uint64_t data_off = 8 + len_bytes + hlen;
    uint64_t have = 0;
    if (fstat(fileno(f), &st) == 0 && (uint64_t)st.st_size > data_off)
        have = (uint64_t)st.st_size - data_off;
    if (have < (uint64_t)n * h.item) {
        set_err(err, err_len, "%s: truncated data: %" PRIu64 " of %zu bytes for shape (%zu, %zu)",
                path, have, n * h.item, r, c);
        goto fail;
    }
    out = malloc(n ? n * sizeof *out : 1);
    if (!out) {
        set_err(err, err_len, "%s: out of memory", path);
        goto fail;
    }
    unsigned char chunk[IO_CHUNK * 8];
    for (size_t i = 0; i < n;) {
        size_t m = n - i < IO_CHUNK ? n - i : IO_CHUNK;
        if (fread(chunk, h.item, m, f) != m) {
            set_err(err, err_len, "%s: truncated data (read error: %s)", path,
                    ferror(f) ? strerror(errno) : "end of file");
            goto fail;
        }
        for (size_t j = 0; j < m; j++) {
            const unsigned char *b = chunk + h.item * j;
            uint64_t bits = 0;
            for (int k = (int)h.item - 1; k >= 0; k--)
                bits = bits << 8 | b[k];
            switch (h.type) {
            case NPY_FLOAT:
                if (h.item == 8) {
                    memcpy(&out[i + j], &bits, sizeof bits);
                } else {
                    uint32_t b32 = (uint32_t)bits;
                    float v;
                    memcpy(&v, &b32, sizeof v);
                    out[i + j] = v;
                }
                break;
            case NPY_INT: {
                /* Two's complement of item bytes, without signed overflow:
                 * a negative value is minus (its complement + 1).  Integers
                 * beyond 2^53 round to the nearest double. */
                uint64_t mask = h.item == 8 ? ~(uint64_t)0 : ((uint64_t)1 << (8 * h.item)) - 1;
                if (bits >> (8 * h.item - 1) & 1) out[i + j] = -(double)((~bits & mask) + 1);
                else out[i + j] = (double)bits;
                break;
            }
            case NPY_UINT: out[i + j] = (double)bits; break;
            case NPY_BOOL: out[i + j] = bits ? 1.0 : 0.0; break;
            }
        }
        i += m;
    }
    if (h.fortran && r > 1 && c > 1) {
        /* Element (i, j) is at j * r + i in the file. */
        double *t = malloc(n * sizeof *t);
        if (!t) {
            set_err(err, err_len, "%s: out of memory", path);
            goto fail;
        }
        for (size_t i = 0; i < r; i++)
            for (size_t j = 0; j < c; j++) t[i * c + j] = out[j * r + i];
        free(out);
        out = t;
    }
    fclose(f);
    free(text);
    *data = out;
    *rows = r;
    *cols = c;
    return 0;
fail:
    fclose(f);
    free(text);
    free(out);
    return -1;
}

/* ---- CSV -------------------------------------------------------------------------------- */

/* RFC 4180 quoting, only where a name needs it. */
static void csv_put_name(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int csv_write(const char *path, const char *const *col_names, const double *data, size_t rows,
              size_t cols, char *err, size_t err_len)
{
    assert(col_names || cols == 0);
    assert(data || rows == 0 || cols == 0);
    FILE *f = fopen(path, "w");
    if (!f) {
        set_err(err, err_len, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    for (size_t j = 0; j < cols; j++) {
        if (j)
            fputc(',', f);
        csv_put_name(f, col_names[j]);
    }
    fputc('\n', f);
    for (size_t i = 0; i < rows && !ferror(f); i++) {
        for (size_t j = 0; j < cols; j++)
            fprintf(f, j ? ",%.17g" : "%.17g", data[i * cols + j]);
        fputc('\n', f);
    }
    return finish_file(f, path, 0, err, err_len);
}

/* ---- tables of named values --------------------------------------------------------------- */

struct export_table {
    char **names;     /* the specs as given (select.h) */
    size_t n_names;
    select_key *keys; /* the columns' sources, expanded against the first row's trace */
    size_t n_keys;
    size_t *widths;   /* per key, fixed by the first row */
    int have_widths;
    char **col_names; /* n_cols, built with the first row */
    size_t n_cols;
    double *data;     /* rows x n_cols, row-major */
    size_t rows;
    size_t cap_rows;
};

export_table *export_table_new(const char *const *names, size_t n_names)
{
    assert(names || n_names == 0);
    export_table *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->n_names = n_names;
    if (n_names) {
        x->names = calloc(n_names, sizeof *x->names);
        if (!x->names)
            goto fail;
        for (size_t i = 0; i < n_names; i++) {
            assert(names[i]);
            if (!(x->names[i] = strdup(names[i])))
                goto fail;
        }
    }
    return x;
fail:
    export_table_destroy(&x);
    return NULL;
}

void export_table_destroy(export_table **xp)
{
    if (!xp || !*xp)
        return;
    export_table *x = *xp;
    for (size_t i = 0; x->names && i < x->n_names; i++)
        free(x->names[i]);
    for (size_t j = 0; x->col_names && j < x->n_cols; j++)
        free(x->col_names[j]);
    free(x->names);
    select_keys_free(&x->keys, x->n_keys);
    free(x->widths);
    free(x->col_names);
    free(x->data);
    free(x);
    *xp = NULL;
}

/* Column names from the widths; 0 or -1 (nothing kept) on allocation failure. */
static int build_col_names(export_table *x, const size_t *widths, size_t n_cols)
{
    char **cn = calloc(n_cols ? n_cols : 1, sizeof *cn);
    if (!cn)
        return -1;
    size_t j = 0;
    for (size_t i = 0; i < x->n_keys; i++) {
        const char *label = x->keys[i].key;
        for (size_t k = 0; k < widths[i]; k++, j++) {
            if (widths[i] == 1) {
                cn[j] = strdup(label);
            } else {
                size_t len = strlen(label) + 24;
                if ((cn[j] = malloc(len)))
                    snprintf(cn[j], len, "%s[%zu]", label, k);
            }
            if (!cn[j]) {
                for (size_t m = 0; m < j; m++)
                    free(cn[m]);
                free(cn);
                return -1;
            }
        }
    }
    x->col_names = cn;
    return 0;
}

int export_table_add(export_table *x, const trace *t, char *err, size_t err_len)
{
    select_scratch sc;
    /* The first row's trace decides what the specs select. */
    select_key *keys = x->keys;
    size_t n_keys = x->n_keys;
    if (!x->have_widths) {
        char why[300];
        if (select_expand((const char *const *)x->names, x->n_names, t, &keys, &n_keys, why, sizeof why) < 0) {
            set_err(err, err_len, "trace %" PRIu64 ": %s", t->id, why);
            return -1;
        }
    }
    /* Check the whole row before changing anything, so a rejected trace
     * leaves the table as it was. */
    size_t n_cols = 0;
    int rc = -1;
    for (size_t i = 0; i < n_keys; i++) {
        const trace_array *v = select_value(t, &keys[i], &sc);
        if (!v) {
            set_err(err, err_len, "'%s' has no value in trace %" PRIu64, keys[i].key, t->id);
            goto out;
        }
        if (x->have_widths && v->len != x->widths[i]) {
            set_err(err, err_len, "'%s' has %zu values in trace %" PRIu64 ", earlier traces had %zu",
                    keys[i].key, v->len, t->id, x->widths[i]);
            goto out;
        }
        n_cols += v->len;
    }
    if (x->rows == x->cap_rows) {
        size_t cap = x->cap_rows ? x->cap_rows * 2 : 64;
        if (n_cols && cap > SIZE_MAX / sizeof(double) / n_cols) {
            set_err(err, err_len, "export table too large");
            goto out;
        }
        double *d = realloc(x->data, (n_cols ? cap * n_cols : 1) * sizeof *d);
        if (!d) {
            set_err(err, err_len, "out of memory");
            goto out;
        }
        x->data = d;
        x->cap_rows = cap;
    }
    if (!x->have_widths) {
        size_t *widths = calloc(n_keys ? n_keys : 1, sizeof *widths);
        if (!widths) {
            set_err(err, err_len, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n_keys; i++)
            widths[i] = select_value(t, &keys[i], &sc)->len;
        x->keys = keys;
        x->n_keys = n_keys;
        if (build_col_names(x, widths, n_cols) < 0) {
            x->keys = NULL;
            x->n_keys = 0;
            free(widths);
            set_err(err, err_len, "out of memory");
            goto out;
        }
        x->widths = widths;
        x->n_cols = n_cols;
        x->have_widths = 1;
    }
    double *row = x->data + x->rows * x->n_cols;
    for (size_t i = 0; i < x->n_keys; i++) {
        const trace_array *v = select_value(t, &x->keys[i], &sc);
        memcpy(row, v->data, v->len * sizeof *row);
        row += v->len;
    }
    x->rows++;
    rc = 0;
out:
    if (keys != x->keys)
        select_keys_free(&keys, n_keys);
    return rc;
}

size_t export_table_rows(const export_table *x)
{
    return x->rows;
}

size_t export_table_cols(const export_table *x)
{
    return x->n_cols;
}

const double *export_table_data(const export_table *x)
{
    return x->data;
}

const char *export_table_col_name(const export_table *x, size_t j)
{
    return j < x->n_cols ? x->col_names[j] : NULL;
}

int export_table_write_npy(const export_table *x, const char *path, char *err, size_t err_len)
{
    return npy_write(path, x->data, x->rows, x->n_cols, err, err_len);
}

int export_table_write_csv(const export_table *x, const char *path, char *err, size_t err_len)
{
    return csv_write(path, (const char *const *)x->col_names, x->data, x->rows, x->n_cols, err,
                     err_len);
}
