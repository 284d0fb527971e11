/* gold_data.c — mined gold in memory, the .ppxg file and its .npy export
 * (see gold_data.h for the layout). */
#include "gold/gold_data.h"
#include "gold/gold_io.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export.h"
#include "trace_store.h"

static const char GOLD_MAGIC[8] = {'P', 'P', 'X', 'G', 'O', 'L', 'D', 0};

const char *gold_bad_name(gold_bad why)
{
    static const char *names[GOLD_BAD_COUNT] = {"control-flow", "out-of-support", "theta-dependent-support",
                                                "non-finite", "invalid-params", "missing-name", "failed", "x-depends-on-theta",
                                                "no-tangent"};
    return (unsigned)why < GOLD_BAD_COUNT ? names[why] : "unknown";
}

static char **copy_names(const char *const *names, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!(out[i] = strdup(names[i]))) {
            for (size_t j = 0; j < i; j++) free(out[j]);
            free(out);
            return NULL;
        }
    return out;
}

int gold_data_init(gold_data *g, size_t D, size_t C, size_t K, int has_score, const char *const *theta_names,
                   const char *const *x_names)
{
    memset(g, 0, sizeof *g);
    g->D = D;
    g->C = C;
    g->K = K;
    g->has_score = has_score;
    g->theta_names = copy_names(theta_names, D);
    g->x_names = copy_names(x_names, C);
    if (!g->theta_names || !g->x_names) {
        gold_data_free(g);
        return -1;
    }
    return 0;
}

void gold_data_free(gold_data *g)
{
    if (!g) return;
    for (size_t i = 0; g->theta_names && i < g->D; i++) free(g->theta_names[i]);
    for (size_t i = 0; g->x_names && i < g->C; i++) free(g->x_names[i]);
    free(g->theta_names);
    free(g->x_names);
    free(g->y);
    free(g->theta0);
    free(g->theta1);
    free(g->x);
    free(g->log_r);
    free(g->t);
    memset(g, 0, sizeof *g);
}

static int grow(double **p, size_t cap, size_t width)
{
    if (!width) return 0;
    double *n = realloc(*p, cap * width * sizeof *n);
    if (!n) return -1;
    *p = n;
    return 0;
}

static int reserve(gold_data *g, size_t rows)
{
    if (rows <= g->cap) return 0;
    size_t cap = g->cap ? g->cap : 64;
    while (cap < rows) cap *= 2;
    if (grow(&g->y, cap, 1) < 0 || grow(&g->theta0, cap, g->D) < 0 || grow(&g->theta1, cap, g->K * g->D) < 0 ||
        grow(&g->x, cap, g->C) < 0 || grow(&g->log_r, cap, g->K) < 0 ||
        (g->has_score && grow(&g->t, cap, g->D) < 0))
        return -1;
    g->cap = cap;
    return 0;
}

int gold_data_add(gold_data *g, double y, const double *theta0, const double *theta1, const double *x,
                  const double *log_r, const double *t)
{
    if (reserve(g, g->n + 1) < 0) return -1;
    size_t i = g->n, D = g->D, K = g->K;
    g->y[i] = y;
    if (D) memcpy(g->theta0 + i * D, theta0, D * sizeof(double));
    if (K && D) memcpy(g->theta1 + i * K * D, theta1, K * D * sizeof(double));
    if (g->C) memcpy(g->x + i * g->C, x, g->C * sizeof(double));
    if (K) memcpy(g->log_r + i * K, log_r, K * sizeof(double));
    if (g->has_score && D) memcpy(g->t + i * D, t, D * sizeof(double));
    g->n++;
    return 0;
}

uint64_t gold_data_bad_total(const gold_data *g)
{
    uint64_t s = 0;
    for (int i = 0; i < GOLD_BAD_COUNT; i++) s += g->bad[i];
    return s;
}

/* ---- file ---------------------------------------------------------------- */

static size_t row_width(const gold_data *g)
{
    return 1 + g->D + g->K * g->D + g->C + g->K + (g->has_score ? g->D : 0);
}

int gold_data_write(const gold_data *g, const char *path, char *err, size_t err_len)
{
    gold_buf b = {0};
    gold_put(&b, GOLD_MAGIC, 8);
    gold_put_u32(&b, GOLD_FILE_VERSION);
    gold_put_u32(&b, (uint32_t)g->D);
    gold_put_u32(&b, (uint32_t)g->C);
    gold_put_u32(&b, (uint32_t)g->K);
    gold_put_u32(&b, (uint32_t)(g->has_score != 0));
    gold_put_u32(&b, 0);
    gold_put_u64(&b, g->n);
    gold_put_u64(&b, g->seed);
    gold_put_f64(&b, g->epsilon);
    for (int i = 0; i < GOLD_BAD_COUNT; i++) gold_put_u64(&b, g->bad[i]);
    gold_put_u64(&b, g->n_analytic);
    for (size_t i = 0; i < g->D + g->C; i++) {
        const char *s = i < g->D ? g->theta_names[i] : g->x_names[i - g->D];
        gold_put_u32(&b, (uint32_t)strlen(s));
        gold_put(&b, s, strlen(s));
    }
    for (size_t i = 0; i < g->n; i++) {
        gold_put_f64(&b, g->y[i]);
        gold_put(&b, g->theta0 + i * g->D, g->D * 8);
        gold_put(&b, g->theta1 + i * g->K * g->D, g->K * g->D * 8);
        gold_put(&b, g->x + i * g->C, g->C * 8);
        gold_put(&b, g->log_r + i * g->K, g->K * 8);
        if (g->has_score) gold_put(&b, g->t + i * g->D, g->D * 8);
    }
    int rc = gold_write_atomic(&b, path, 1, err, err_len);
    free(b.p);
    return rc;
}

typedef struct rd {
    const unsigned char *p;
    size_t len, off;
} rd;

static int take(rd *r, void *out, size_t len)
{
    if (r->len - r->off < len) return -1;
    memcpy(out, r->p + r->off, len);
    r->off += len;
    return 0;
}

int gold_file_is(const char *path) { return gold_file_has_magic(path, GOLD_MAGIC); }

int gold_data_read(gold_data *g, const char *path, char *err, size_t err_len)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) {
        gold_set_err(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            unsigned char *n = realloc(data, cap);
            if (!n) {
                fclose(f);
                free(data);
                gold_set_err(err, err_len, "out of memory");
                return -1;
            }
            data = n;
        }
        size_t got = fread(data + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    int rc = -1;
    char **tn = NULL, **xn = NULL;
    uint32_t ver = 0, D = 0, C = 0, K = 0, has_score = 0, reserved = 0;
    uint64_t rows, seed;
    double eps;
    uint64_t bad[GOLD_BAD_COUNT] = {0}, n_analytic = 0;
    rd r = {data, len, 0};
    char magic[8];
    if (take(&r, magic, 8) < 0 || memcmp(magic, GOLD_MAGIC, 8) != 0) {
        gold_set_err(err, err_len, "%s: not a ppxd gold file (bad magic)", path);
        goto out;
    }
    if (take(&r, &ver, 4) < 0 || ver < 1 || ver > GOLD_FILE_VERSION) {
        gold_set_err(err, err_len, "%s: unsupported gold file version %u (this ppxd reads 1 to %d)", path, ver,
                GOLD_FILE_VERSION);
        goto out;
    }
    if (len < 12 || trace_crc32c(0, data, len - 4) != gold_u32_at(data + len - 4)) {
        gold_set_err(err, err_len, "%s: checksum mismatch (damaged or truncated file)", path);
        goto out;
    }
    r.len = len - 4;
    /* Version 1 had the reasons before GOLD_BAD_NO_TANGENT and no analytic count. */
    const size_t n_bad = ver == 1 ? GOLD_BAD_NO_TANGENT : GOLD_BAD_COUNT;
    if (take(&r, &D, 4) < 0 || take(&r, &C, 4) < 0 || take(&r, &K, 4) < 0 || take(&r, &has_score, 4) < 0 ||
        take(&r, &reserved, 4) < 0 || take(&r, &rows, 8) < 0 || take(&r, &seed, 8) < 0 || take(&r, &eps, 8) < 0 ||
        take(&r, bad, n_bad * sizeof *bad) < 0 || (ver >= 2 && take(&r, &n_analytic, 8) < 0) || D > 4096 || C > (1u << 24) || K > 4096) {
        gold_set_err(err, err_len, "%s: bad header", path);
        goto out;
    }
    tn = calloc(D + 1, sizeof *tn);
    xn = calloc(C + 1, sizeof *xn);
    if (!tn || !xn) goto oom;
    for (size_t i = 0; i < (size_t)D + C; i++) {
        uint32_t l;
        if (take(&r, &l, 4) < 0 || r.len - r.off < l) {
            gold_set_err(err, err_len, "%s: bad name table", path);
            goto out;
        }
        char *s = strndup((const char *)r.p + r.off, l);
        if (!s) goto oom;
        r.off += l;
        if (i < D) tn[i] = s;
        else xn[i - D] = s;
    }
    if (gold_data_init(g, D, C, K, (int)has_score, (const char *const *)tn, (const char *const *)xn) < 0) goto oom;
    size_t w = row_width(g);
    if (rows > (r.len - r.off) / 8 / w || (r.len - r.off) != rows * w * 8) {
        gold_set_err(err, err_len, "%s: %llu rows do not fit the file's size", path, (unsigned long long)rows);
        gold_data_free(g);
        goto out;
    }
    if (reserve(g, rows ? rows : 1) < 0) {
        gold_data_free(g);
        goto oom;
    }
    for (uint64_t i = 0; i < rows; i++) {
        take(&r, &g->y[i], 8);
        take(&r, g->theta0 + i * D, (size_t)D * 8);
        take(&r, g->theta1 + i * K * D, (size_t)K * D * 8);
        take(&r, g->x + i * C, (size_t)C * 8);
        take(&r, g->log_r + i * K, (size_t)K * 8);
        if (has_score) take(&r, g->t + i * D, (size_t)D * 8);
    }
    g->n = rows;
    g->seed = seed;
    g->epsilon = eps;
    memcpy(g->bad, bad, sizeof bad);
    g->n_analytic = n_analytic;
    rc = 0;
    goto out;
oom:
    gold_set_err(err, err_len, "out of memory");
out:
    for (size_t i = 0; tn && i < D; i++) free(tn[i]);
    for (size_t i = 0; xn && i < C; i++) free(xn[i]);
    free(tn);
    free(xn);
    free(data);
    return rc;
}

int gold_data_export_npy(const gold_data *g, const char *prefix, char *err, size_t err_len)
{
    const struct {
        const char *suffix;
        const double *data;
        size_t cols;
    } parts[] = {
        {"_y.npy", g->y, 1},
        {"_theta0.npy", g->theta0, g->D},
        {"_theta1.npy", g->theta1, g->K * g->D},
        {"_x.npy", g->x, g->C},
        {"_log_r.npy", g->log_r, g->K},
        {"_t.npy", g->t, g->has_score ? g->D : 0},
    };
    size_t pl = strlen(prefix) + 16;
    char *path = malloc(pl);
    if (!path) {
        gold_set_err(err, err_len, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (!parts[i].cols) continue;
        snprintf(path, pl, "%s%s", prefix, parts[i].suffix);
        if (npy_write(path, parts[i].data, g->n, parts[i].cols, err, err_len) < 0) {
            free(path);
            return -1;
        }
    }
    free(path);
    return 0;
}
