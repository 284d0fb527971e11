/* prior.c — product priors of independent 1-D distributions and
 * multivariate normal blocks (see prior.h). */
#include "prior.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "export.h"

/* Text names, lower case, indexed by dist_kind (NULL: not accepted). */
static const char *const prior_names[DIST_KIND_COUNT] = {
    [DIST_NORMAL] = "normal",   [DIST_UNIFORM] = "uniform", [DIST_BETA] = "beta",
    [DIST_EXPONENTIAL] = "exponential", [DIST_GAMMA] = "gamma", [DIST_LOGNORMAL] = "lognormal",
    [DIST_WEIBULL] = "weibull",
};

/* Refuse repetition counts that can only be typos (and keep dim an int). */
#define PRIOR_MAX_DIM 100000

int prior_kind_ok(dist_kind kind)
{
    return kind > DIST_NONE && kind < DIST_KIND_COUNT && prior_names[kind] != NULL;
}

prior *prior_new(int dim)
{
    if (dim < 1 || dim > PRIOR_MAX_DIM) return NULL;
    prior *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->d = calloc((size_t)dim, sizeof *p->d);
    if (!p->d) {
        free(p);
        return NULL;
    }
    p->dim = dim;
    for (int j = 0; j < dim; j++) p->d[j] = (prior_dim){DIST_NORMAL, 0.0, 1.0, 0};
    return p;
}

void prior_destroy(prior **pp)
{
    if (!pp || !*pp) return;
    prior *p = *pp;
    for (int b = 0; b < p->n_mvn; b++) free(p->mvn[b].mean); /* one buffer per block */
    free(p->mvn);
    free(p->d);
    free(p);
    *pp = NULL;
}

prior *prior_copy(const prior *p)
{
    if (!p) return NULL;
    prior *c = prior_new(p->dim);
    if (!c) return NULL;
    memcpy(c->d, p->d, (size_t)p->dim * sizeof *p->d);
    for (int j = 0; j < c->dim; j++) c->d[j].block = 0;
    for (int b = 0; b < p->n_mvn; b++) {
        const prior_mvn *m = &p->mvn[b];
        char err[8];
        if (prior_set_mvn(c, m->j0, m->k, m->mean, m->cov, err, sizeof err) < 0) {
            prior_destroy(&c);
            return NULL;
        }
    }
    return c;
}

/* ---- multivariate normal blocks ------------------------------------------------- */

/* Lower Cholesky factor L of a [k, k] (L L^T = a; L's upper part set to 0).
 * -1 when a is not (numerically) positive definite. */
static int cholesky(const double *a, int k, double *L)
{
    for (int i = 0; i < k * k; i++) L[i] = 0.0;
    for (int j = 0; j < k; j++) {
        double d = a[j * k + j];
        for (int t = 0; t < j; t++) d -= L[j * k + t] * L[j * k + t];
        /* A pivot at rounding level of the diagonal is a singular matrix. */
        if (!(d > 1e-14 * fabs(a[j * k + j])) || !isfinite(d)) return -1;
        double ljj = sqrt(d);
        L[j * k + j] = ljj;
        for (int i = j + 1; i < k; i++) {
            double v = a[i * k + j];
            for (int t = 0; t < j; t++) v -= L[i * k + t] * L[j * k + t];
            L[i * k + j] = v / ljj;
        }
    }
    return 0;
}

int prior_precision_to_cov(const double *prec, int k, double *cov)
{
    /* prec = L L^T, so cov = L^-T L^-1 = M^T M with M = L^-1 (lower). */
    double *L = malloc((size_t)k * (size_t)k * 2 * sizeof *L);
    if (!L) return -1;
    double *M = L + (size_t)k * (size_t)k;
    int rc = -1;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < i; j++)
            if (!(fabs(prec[i * k + j] - prec[j * k + i]) <=
                  1e-9 * sqrt(fabs(prec[i * k + i] * prec[j * k + j])))) goto out;
    if (cholesky(prec, k, L) < 0) goto out;
    for (int c = 0; c < k; c++) /* column c of M: forward substitution of e_c */
        for (int i = 0; i < k; i++) {
            double v = i == c ? 1.0 : 0.0;
            for (int t = c; t < i; t++) v -= L[i * k + t] * M[t * k + c];
            M[i * k + c] = i < c ? 0.0 : v / L[i * k + i];
        }
    for (int i = 0; i < k; i++)
        for (int j = 0; j <= i; j++) {
            double v = 0.0;
            for (int t = i; t < k; t++) v += M[t * k + i] * M[t * k + j];
            cov[i * k + j] = cov[j * k + i] = v;
        }
    rc = 0;
out:
    free(L);
    return rc;
}

int prior_set_mvn(prior *p, int j0, int k, const double *mean, const double *cov, char *err, size_t err_len)
{
    if (k < 1 || k > PRIOR_MAX_MVN || j0 < 0 || j0 + k > p->dim) {
        snprintf(err, err_len, "multivariate normal over dimensions %d..%d: outside the prior's %d dimensions (or "
                 "more than %d)", j0, j0 + k - 1, p->dim, PRIOR_MAX_MVN);
        return -1;
    }
    for (int j = j0; j < j0 + k; j++)
        if (p->d[j].block) {
            snprintf(err, err_len, "theta dimension %d is already in a multivariate normal block", j);
            return -1;
        }
    for (int i = 0; i < k; i++) {
        if (!isfinite(mean[i])) {
            snprintf(err, err_len, "multivariate normal: mean[%d] is not finite", i);
            return -1;
        }
        for (int j = 0; j < k; j++)
            if (!isfinite(cov[i * k + j])) {
                snprintf(err, err_len, "multivariate normal: covariance[%d][%d] is not finite", i, j);
                return -1;
            }
    }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < i; j++)
            if (!(fabs(cov[i * k + j] - cov[j * k + i]) <= 1e-9 * sqrt(fabs(cov[i * k + i] * cov[j * k + j])))) {
                snprintf(err, err_len, "multivariate normal: the covariance is not symmetric ([%d][%d] = %g, [%d][%d] "
                         "= %g)", i, j, cov[i * k + j], j, i, cov[j * k + i]);
                return -1;
            }
    prior_mvn *nm = realloc(p->mvn, (size_t)(p->n_mvn + 1) * sizeof *nm);
    if (!nm) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    p->mvn = nm;
    size_t kk = (size_t)k * (size_t)k;
    double *buf = malloc(((size_t)k + 2 * kk) * sizeof *buf);
    if (!buf) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    prior_mvn m = {j0, k, buf, buf + k, buf + k + kk, 0.0};
    memcpy(m.mean, mean, (size_t)k * sizeof *mean);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) m.cov[i * k + j] = i == j ? cov[i * k + i] : 0.5 * (cov[i * k + j] + cov[j * k + i]);
    if (cholesky(m.cov, k, m.chol) < 0) {
        free(buf);
        snprintf(err, err_len, "multivariate normal: the covariance is not positive definite");
        return -1;
    }
    m.log_norm = -0.5 * k * log(2 * M_PI);
    for (int i = 0; i < k; i++) m.log_norm -= log(m.chol[i * k + i]);
    /* Keep the blocks in order of j0 (formatting walks the dimensions). */
    int at = p->n_mvn;
    while (at > 0 && p->mvn[at - 1].j0 > j0) at--;
    memmove(p->mvn + at + 1, p->mvn + at, (size_t)(p->n_mvn - at) * sizeof *p->mvn);
    p->mvn[at] = m;
    p->n_mvn++;
    for (int j = 0; j < p->dim; j++)
        if (p->d[j].block > at) p->d[j].block++;
    for (int i = 0; i < k; i++)
        p->d[j0 + i] = (prior_dim){DIST_NORMAL, mean[i], sqrt(m.cov[i * k + i]), at + 1};
    return 0;
}

/* log N(theta[j0 .. j0+k) | mean, cov). */
static double mvn_log_prob(const prior_mvn *m, const double *theta)
{
    /* Solve L w = theta - mean: log N = log_norm - |w|^2 / 2. */
    const int k = m->k;
    double w_small[16], *w = k <= 16 ? w_small : malloc((size_t)k * sizeof *w);
    if (!w) return NAN;
    double q = 0.0;
    for (int i = 0; i < k; i++) {
        double v = theta[m->j0 + i] - m->mean[i];
        for (int t = 0; t < i; t++) v -= m->chol[i * k + t] * w[t];
        w[i] = v / m->chol[i * k + i];
        q += w[i] * w[i];
    }
    if (w != w_small) free(w);
    return m->log_norm - 0.5 * q;
}

static dist prior_dist(const prior_dim *pd)
{
    dist d;
    char why[8];
    int rc = dist_init(&d, pd->kind, &pd->p0, 1, dist_nparams(pd->kind) == 2 ? &pd->p1 : NULL,
                       dist_nparams(pd->kind) == 2 ? 1 : 0, 0, why, sizeof why);
    assert(rc == 0);
    (void)rc;
    return d;
}

int prior_set(prior *p, int j, dist_kind kind, double p0, double p1, char *err, size_t err_len)
{
    assert(p && j >= 0 && j < p->dim);
    if (p->d[j].block) {
        snprintf(err, err_len, "theta dimension %d is part of a multivariate normal block", j);
        return -1;
    }
    if (!prior_kind_ok(kind)) {
        snprintf(err, err_len, "theta dimension %d: %s is not a continuous distribution (the prior must be a "
                 "density over R^D: normal, uniform, beta, exponential, gamma, lognormal or weibull)",
                 j, dist_kind_name(kind));
        return -1;
    }
    prior_dim pd = {kind, p0, dist_nparams(kind) == 2 ? p1 : 0.0, 0};
    dist d = prior_dist(&pd);
    char why[200];
    if (dist_validate(&d, why, sizeof why) < 0) {
        snprintf(err, err_len, "theta dimension %d: invalid %s prior: %s", j, prior_names[kind], why);
        return -1;
    }
    p->d[j] = pd;
    return 0;
}

static dist_kind kind_from_name(const char *s, size_t len)
{
    if (len == 8 && strncasecmp(s, "gaussian", 8) == 0) return DIST_NORMAL;
    if (len == 10 && strncasecmp(s, "log_normal", 10) == 0) return DIST_LOGNORMAL;
    for (int k = 0; k < DIST_KIND_COUNT; k++) {
        const char *n = prior_names[k] ? prior_names[k] : dist_kind_name((dist_kind)k);
        if (strlen(n) == len && strncasecmp(s, n, len) == 0) return (dist_kind)k;
    }
    return DIST_NONE;
}

/* A decimal number filling exactly [s, s+len) (no hex: "0x2" would be a
 * repetition typo).  0 or -1. */
static int parse_number(const char *s, size_t len, double *out)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    for (size_t i = 0; i < len; i++)
        if (!(isdigit((unsigned char)buf[i]) || strchr("+-.eE", buf[i]))) return -1;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* One "KIND:P0[:P1][xN]" spec of length len: appends to *dims.  0 or -1. */
static int parse_one(const char *s, size_t len, prior_dim **dims, int *n, char *err, size_t err_len)
{
    const char *colon = memchr(s, ':', len);
    if (!colon) {
        snprintf(err, err_len, "prior '%.*s': expected KIND:P0[:P1][xN], e.g. uniform:-1:1x2 or normal:0:1",
                 (int)len, s);
        return -1;
    }
    dist_kind kind = kind_from_name(s, (size_t)(colon - s));
    if (kind == DIST_NONE) {
        snprintf(err, err_len, "prior '%.*s': unknown distribution '%.*s' (normal, uniform, beta, exponential, "
                 "gamma, lognormal, weibull)", (int)len, s, (int)(colon - s), s);
        return -1;
    }
    /* The repetition suffix is an 'x' after the last ':' (kind names may
     * contain an x: "exponential"). */
    const char *end = s + len, *last = colon;
    for (const char *q = colon; q < end; q++)
        if (*q == ':') last = q;
    long rep = 1;
    const char *xs = memchr(last, 'x', (size_t)(end - last));
    if (xs) {
        char *e;
        errno = 0;
        rep = strtol(xs + 1, &e, 10);
        if (errno || e != end || xs + 1 == end || rep < 1 || rep > PRIOR_MAX_DIM) {
            snprintf(err, err_len, "prior '%.*s': bad repetition '%.*s' (want xN with N >= 1)", (int)len, s,
                     (int)(end - xs), xs);
            return -1;
        }
        end = xs;
    }
    double par[2] = {0, 0};
    int np = 0;
    const char *q = colon + 1;
    for (;;) {
        const char *c = memchr(q, ':', (size_t)(end - q));
        const char *stop = c ? c : end;
        if (np == 2 || parse_number(q, (size_t)(stop - q), &par[np]) < 0) {
            snprintf(err, err_len, "prior '%.*s': parameters must be %d finite decimal number%s", (int)len, s,
                     dist_nparams(kind), dist_nparams(kind) == 2 ? "s" : "");
            return -1;
        }
        np++;
        if (!c) break;
        q = c + 1;
    }
    if (!prior_kind_ok(kind)) {
        snprintf(err, err_len, "prior '%.*s': %s is discrete; the prior must be continuous", (int)len, s,
                 dist_kind_name(kind));
        return -1;
    }
    if (np != dist_nparams(kind)) {
        snprintf(err, err_len, "prior '%.*s': %s takes %d parameter%s, got %d", (int)len, s, prior_names[kind],
                 dist_nparams(kind), dist_nparams(kind) == 2 ? "s" : "", np);
        return -1;
    }
    if (*n + rep > PRIOR_MAX_DIM) {
        snprintf(err, err_len, "prior: more than %d dimensions", PRIOR_MAX_DIM);
        return -1;
    }
    prior_dim *nd = realloc(*dims, (size_t)(*n + rep) * sizeof *nd);
    if (!nd) {
        snprintf(err, err_len, "prior: out of memory");
        return -1;
    }
    *dims = nd;
    for (long i = 0; i < rep; i++) nd[*n + i] = (prior_dim){kind, par[0], par[1], 0};
    *n += (int)rep;
    return 0;
}

/* ---- multivariate normal specs ------------------------------------------------------ */

/* A block parsed from "mvn:MEAN:COV", waiting for the prior to exist. */
typedef struct pending_mvn {
    int j0, k;
    double *mean, *cov; /* malloc'd [k], [k, k] */
} pending_mvn;

static void skip_space(const char **s, const char *end)
{
    while (*s < end && isspace((unsigned char)**s)) (*s)++;
}

/* "[v, v, ...]" from *s (advanced past the ']'), appended to *v (*n values).
 * 0 or -1. */
static int parse_list(const char **s, const char *end, double **v, int *n)
{
    skip_space(s, end);
    if (*s >= end || **s != '[') return -1;
    (*s)++;
    for (;;) {
        skip_space(s, end);
        const char *a = *s;
        while (*s < end && **s != ',' && **s != ']' && !isspace((unsigned char)**s)) (*s)++;
        double x;
        if (parse_number(a, (size_t)(*s - a), &x) < 0) return -1;
        if (*n >= PRIOR_MAX_MVN * PRIOR_MAX_MVN) return -1;
        double *nv = realloc(*v, (size_t)(*n + 1) * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        nv[(*n)++] = x;
        skip_space(s, end);
        if (*s < end && **s == ',') {
            (*s)++;
            continue;
        }
        if (*s < end && **s == ']') {
            (*s)++;
            return 0;
        }
        return -1;
    }
}

/* One operand of an mvn spec: an inline vector (want_rows 0) or matrix
 * ("[[..],[..]]"), or a .npy file.  Values into *v (malloc'd), shape into
 * *rows x *cols (a vector: k x 1).  0, or -1 with a reason. */
static int mvn_operand(const char *s, size_t len, int matrix, double **v, size_t *rows, size_t *cols, const char *spec,
                       size_t spec_len, char *err, size_t err_len)
{
    const char *end = s + len, *q = s;
    *v = NULL;
    skip_space(&q, end);
    if (q < end && *q == '[') {
        int n = 0, r = 0, c = -1;
        const char *t = q + 1;
        skip_space(&t, end);
        if (matrix && t < end && *t == '[') {
            q = t;
            for (;;) {
                int before = n;
                if (parse_list(&q, end, v, &n) < 0) goto syntax;
                if (c >= 0 && n - before != c) {
                    snprintf(err, err_len, "prior '%.*s': matrix rows of different lengths (%d and %d)", (int)spec_len,
                             spec, c, n - before);
                    goto fail;
                }
                c = n - before;
                r++;
                skip_space(&q, end);
                if (q < end && *q == ',') {
                    q++;
                    continue;
                }
                if (q < end && *q == ']') {
                    q++;
                    break;
                }
                goto syntax;
            }
        } else {
            if (parse_list(&q, end, v, &n) < 0) goto syntax;
            r = n;
            c = 1;
        }
        skip_space(&q, end);
        if (q != end) goto syntax;
        *rows = (size_t)r;
        *cols = (size_t)c;
        return 0;
    syntax:
        snprintf(err, err_len, "prior '%.*s': bad inline %s (want %s with finite decimal numbers)", (int)spec_len, spec,
                 matrix ? "matrix" : "vector", matrix ? "[[a,b],[c,d]]" : "[a,b,...]");
        goto fail;
    }
    char path[4096];
    if (len == 0 || len >= sizeof path) {
        snprintf(err, err_len, "prior '%.*s': expected an inline %s or a .npy file", (int)spec_len, spec,
                 matrix ? "matrix [[..],[..]]" : "vector [..]");
        return -1;
    }
    memcpy(path, s, len);
    path[len] = 0;
    char why[400];
    if (npy_read(path, v, rows, cols, why, sizeof why) < 0) {
        snprintf(err, err_len, "prior '%.*s': %s", (int)spec_len, spec, why);
        return -1;
    }
    if (!matrix && *rows == 1 && *cols > 1) { /* a (1, k) mean */
        *rows = *cols;
        *cols = 1;
    }
    return 0;
fail:
    free(*v);
    *v = NULL;
    return -1;
}

/* "mvn:MEAN:COV" or "mvnprec:MEAN:PREC" (prec = 1) after the kind's colon
 * at s + head.  Appends k placeholder dimensions to *dims and the block to
 * *pend.  0 or -1. */
static int parse_mvn(const char *s, size_t len, size_t head, int prec, prior_dim **dims, int *n, pending_mvn **pend,
                     int *n_pend, char *err, size_t err_len)
{
    const char *a = s + head, *end = s + len, *b;
    /* MEAN ends at the ':' after its closing bracket, or at the next ':'. */
    if (a < end && *a == '[') {
        const char *rb = memchr(a, ']', (size_t)(end - a));
        b = rb ? memchr(rb, ':', (size_t)(end - rb)) : NULL;
    } else {
        b = memchr(a, ':', (size_t)(end - a));
    }
    if (!b) {
        snprintf(err, err_len, "prior '%.*s': expected %s:MEAN:%s (inline [..] or .npy files)", (int)len, s,
                 prec ? "mvnprec" : "mvn", prec ? "PRECISION" : "COVARIANCE");
        return -1;
    }
    double *mean = NULL, *mat = NULL;
    size_t mr, mc, cr, cc;
    if (mvn_operand(a, (size_t)(b - a), 0, &mean, &mr, &mc, s, len, err, err_len) < 0) return -1;
    if (mvn_operand(b + 1, (size_t)(end - b - 1), 1, &mat, &cr, &cc, s, len, err, err_len) < 0) {
        free(mean);
        return -1;
    }
    int rc = -1;
    if (mc != 1 || mr < 1 || mr > PRIOR_MAX_MVN) {
        snprintf(err, err_len, "prior '%.*s': the mean must be a vector of 1 to %d values (got %zu x %zu)", (int)len, s,
                 PRIOR_MAX_MVN, mr, mc);
        goto out;
    }
    if (cr != mr || cc != mr) {
        snprintf(err, err_len, "prior '%.*s': the %s must be %zu x %zu for a mean of %zu values (got %zu x %zu)",
                 (int)len, s, prec ? "precision" : "covariance", mr, mr, mr, cr, cc);
        goto out;
    }
    int k = (int)mr;
    if (prec && prior_precision_to_cov(mat, k, mat) < 0) {
        snprintf(err, err_len, "prior '%.*s': the precision matrix is not symmetric positive definite", (int)len, s);
        goto out;
    }
    if (*n + k > PRIOR_MAX_DIM) {
        snprintf(err, err_len, "prior: more than %d dimensions", PRIOR_MAX_DIM);
        goto out;
    }
    prior_dim *nd = realloc(*dims, (size_t)(*n + k) * sizeof *nd);
    pending_mvn *np = nd ? realloc(*pend, (size_t)(*n_pend + 1) * sizeof *np) : NULL;
    if (nd) *dims = nd;
    if (!np) {
        snprintf(err, err_len, "prior: out of memory");
        goto out;
    }
    *pend = np;
    for (int i = 0; i < k; i++) nd[*n + i] = (prior_dim){DIST_NORMAL, 0.0, 1.0, 0};
    np[(*n_pend)++] = (pending_mvn){*n, k, mean, mat};
    *n += k;
    return 0;
out:
    free(mean);
    free(mat);
    return rc;
}

/* The kind of spec at s: 0 a 1-D kind, 1 mvn, 2 mvnprec; *head gets the
 * length of "mvn:" / "mvnprec:". */
static int spec_family(const char *s, size_t len, size_t *head)
{
    if (len > 8 && strncasecmp(s, "mvnprec:", 8) == 0) return *head = 8, 2;
    if (len > 4 && strncasecmp(s, "mvn:", 4) == 0) return *head = 4, 1;
    return 0;
}

/* Length of the next spec at s: up to a ',' outside brackets. */
static size_t spec_len(const char *s)
{
    int depth = 0;
    size_t i = 0;
    for (; s[i]; i++) {
        if (s[i] == '[') depth++;
        else if (s[i] == ']' && depth > 0) depth--;
        else if (s[i] == ',' && depth == 0) break;
    }
    return i;
}

prior *prior_parse(const char *const *specs, size_t n_specs, char *err, size_t err_len)
{
    prior_dim *dims = NULL;
    pending_mvn *pend = NULL;
    int n = 0, n_pend = 0;
    prior *p = NULL;
    for (size_t i = 0; i < n_specs; i++) {
        const char *s = specs[i];
        while (*s) {
            size_t len = spec_len(s);
            while (len && isspace((unsigned char)*s)) s++, len--;
            size_t tl = len;
            while (tl && isspace((unsigned char)s[tl - 1])) tl--;
            if (tl == 0) {
                snprintf(err, err_len, "prior '%s': empty item", specs[i]);
                goto fail;
            }
            size_t head;
            int fam = spec_family(s, tl, &head);
            if (fam ? parse_mvn(s, tl, head, fam == 2, &dims, &n, &pend, &n_pend, err, err_len) < 0
                    : parse_one(s, tl, &dims, &n, err, err_len) < 0)
                goto fail;
            s += len;
            if (*s == ',') s++;
        }
    }
    if (n == 0) {
        snprintf(err, err_len, "prior: no dimensions given");
        goto fail;
    }
    p = prior_new(n);
    if (!p) {
        snprintf(err, err_len, "prior: out of memory");
        goto fail;
    }
    for (int j = 0; j < n; j++) {
        if (prior_set(p, j, dims[j].kind, dims[j].p0, dims[j].p1, err, err_len) < 0) goto fail;
    }
    for (int b = 0; b < n_pend; b++) {
        char why[300];
        if (prior_set_mvn(p, pend[b].j0, pend[b].k, pend[b].mean, pend[b].cov, why, sizeof why) < 0) {
            snprintf(err, err_len, "prior: %s", why);
            goto fail;
        }
    }
    goto done;
fail:
    prior_destroy(&p);
done:
    for (int b = 0; b < n_pend; b++) {
        free(pend[b].mean);
        free(pend[b].cov);
    }
    free(pend);
    free(dims);
    return p;
}

int prior_format_dim(const prior *p, int j, char *buf, size_t len)
{
    const prior_dim *d = &p->d[j];
    const char *name = prior_kind_ok(d->kind) ? prior_names[d->kind] : "?";
    if (dist_nparams(d->kind) == 2) return snprintf(buf, len, "%s:%.17g:%.17g", name, d->p0, d->p1);
    return snprintf(buf, len, "%s:%.17g", name, d->p0);
}

static int same_dim(const prior_dim *a, const prior_dim *b)
{
    return a->kind == b->kind && a->block == b->block && memcmp(&a->p0, &b->p0, sizeof a->p0) == 0 &&
           memcmp(&a->p1, &b->p1, sizeof a->p1) == 0;
}

/* Append text to buf[used..len) (truncating), counting the full length.
 * fmt is a literal, or "%g"-like with a "," prefix or not: v is then
 * written with the fewest digits (up to 17) that read back to v. */
static void put_text(char *buf, size_t len, size_t *used, const char *fmt, double v)
{
    char t[40];
    const char *pct = strchr(fmt, '%');
    if (pct) {
        size_t pre = (size_t)(pct - fmt);
        memcpy(t, fmt, pre);
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(t + pre, sizeof t - pre, "%.*g", digits, v);
            if (strtod(t + pre, NULL) == v) break;
        }
    } else {
        snprintf(t, sizeof t, "%s", fmt);
    }
    if (*used < len) snprintf(buf + *used, len - *used, "%s", t);
    *used += strlen(t);
}

int prior_format(const prior *p, char *buf, size_t len)
{
    size_t used = 0;
    if (len) buf[0] = 0;
    for (int j = 0; j < p->dim;) {
        if (p->d[j].block) {
            const prior_mvn *m = &p->mvn[p->d[j].block - 1];
            put_text(buf, len, &used, j ? ",mvn:[" : "mvn:[", 0);
            for (int i = 0; i < m->k; i++) put_text(buf, len, &used, i ? ",%g" : "%g", m->mean[i]);
            put_text(buf, len, &used, "]:[", 0);
            for (int i = 0; i < m->k; i++) {
                put_text(buf, len, &used, i ? ",[" : "[", 0);
                for (int c = 0; c < m->k; c++) put_text(buf, len, &used, c ? ",%g" : "%g", m->cov[i * m->k + c]);
                put_text(buf, len, &used, "]", 0);
            }
            put_text(buf, len, &used, "]", 0);
            j += m->k;
            continue;
        }
        int run = 1;
        while (j + run < p->dim && same_dim(&p->d[j + run], &p->d[j])) run++;
        char one[128];
        prior_format_dim(p, j, one, sizeof one);
        char item[160];
        if (run > 1) snprintf(item, sizeof item, "%s%sx%d", j ? "," : "", one, run);
        else snprintf(item, sizeof item, "%s%s", j ? "," : "", one);
        size_t il = strlen(item);
        if (used < len) snprintf(buf + used, len - used, "%s", item);
        used += il;
        j += run;
    }
    return (int)used;
}

int prior_equal(const prior *a, const prior *b)
{
    if (a->dim != b->dim || a->n_mvn != b->n_mvn) return 0;
    for (int j = 0; j < a->dim; j++)
        if (!same_dim(&a->d[j], &b->d[j])) return 0;
    for (int i = 0; i < a->n_mvn; i++) {
        const prior_mvn *x = &a->mvn[i], *y = &b->mvn[i];
        if (x->j0 != y->j0 || x->k != y->k || memcmp(x->mean, y->mean, (size_t)x->k * sizeof *x->mean) != 0 ||
            memcmp(x->cov, y->cov, (size_t)x->k * (size_t)x->k * sizeof *x->cov) != 0)
            return 0;
    }
    return 1;
}

double prior_log_prob(const prior *p, const double *theta)
{
    double s = 0.0;
    for (int j = 0; j < p->dim; j++) {
        double lp;
        if (p->d[j].block) {
            const prior_mvn *m = &p->mvn[p->d[j].block - 1];
            for (int i = 0; i < m->k; i++)
                if (!isfinite(theta[j + i])) return -INFINITY;
            lp = mvn_log_prob(m, theta);
            j += m->k - 1;
        } else {
            dist d = prior_dist(&p->d[j]);
            lp = dist_log_prob(&d, &theta[j]);
        }
        if (!(lp > -INFINITY)) return -INFINITY; /* also NaN theta: outside */
        s += lp;
    }
    return s;
}

void prior_log_prob_batch(const prior *p, const double *theta, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++) out[i] = prior_log_prob(p, theta + i * (size_t)p->dim);
}

int prior_in_support(const prior *p, const double *theta)
{
    for (int j = 0; j < p->dim; j++) {
        double lo, hi, t = theta[j];
        prior_support(p, j, &lo, &hi);
        if (!(t >= lo && t <= hi)) return 0;
        /* Open ends that the closed interval above lets through. */
        if (p->d[j].kind == DIST_UNIFORM && t >= hi) return 0;
        if (p->d[j].kind == DIST_LOGNORMAL && t <= 0.0) return 0;
        if (isinf(t)) return 0;
    }
    return 1;
}

void prior_support(const prior *p, int j, double *lo, double *hi)
{
    const prior_dim *d = &p->d[j];
    switch (d->kind) {
    case DIST_UNIFORM: *lo = d->p0; *hi = d->p1; break;
    case DIST_BETA: *lo = 0.0; *hi = 1.0; break;
    case DIST_EXPONENTIAL:
    case DIST_GAMMA:
    case DIST_LOGNORMAL:
    case DIST_WEIBULL: *lo = 0.0; *hi = INFINITY; break;
    default: *lo = -INFINITY; *hi = INFINITY; break;
    }
}

int prior_is_bounded(const prior *p)
{
    for (int j = 0; j < p->dim; j++)
        if (p->d[j].kind != DIST_NORMAL) return 1;
    return 0;
}

void prior_sample(const prior *p, rng *r, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++) {
        double *row = out + i * (size_t)p->dim;
        for (int j = 0; j < p->dim; j++) {
            if (p->d[j].block) {
                /* theta = mean + L z: z into the row first, then L z from the
                 * last row of L up, so each z_t is read before it is
                 * overwritten (row i of L uses z_0 .. z_i). */
                const prior_mvn *m = &p->mvn[p->d[j].block - 1];
                const int k = m->k;
                double *t = row + j;
                for (int c = 0; c < k; c++) t[c] = rng_normal(r);
                for (int a = k - 1; a >= 0; a--) {
                    double v = 0.0;
                    for (int c = 0; c <= a; c++) v += m->chol[a * k + c] * t[c];
                    t[a] = m->mean[a] + v;
                }
                j += k - 1;
                continue;
            }
            dist d = prior_dist(&p->d[j]);
            dist_sample(&d, r, &row[j]);
        }
    }
}

void prior_moments(const prior *p, int j, double *mean, double *sd)
{
    dist d = prior_dist(&p->d[j]);
    double v;
    dist_mean(&d, mean);
    dist_variance(&d, &v);
    *sd = sqrt(v);
}
