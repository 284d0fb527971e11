/* prior.c — product priors of independent 1-D distributions (see prior.h). */
#include "prior.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    for (int j = 0; j < dim; j++) p->d[j] = (prior_dim){DIST_NORMAL, 0.0, 1.0};
    return p;
}

void prior_destroy(prior **pp)
{
    if (!pp || !*pp) return;
    free((*pp)->d);
    free(*pp);
    *pp = NULL;
}

prior *prior_copy(const prior *p)
{
    if (!p) return NULL;
    prior *c = prior_new(p->dim);
    if (c) memcpy(c->d, p->d, (size_t)p->dim * sizeof *p->d);
    return c;
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
    if (!prior_kind_ok(kind)) {
        snprintf(err, err_len, "theta dimension %d: %s is not a continuous distribution (the prior must be a "
                 "density over R^D: normal, uniform, beta, exponential, gamma, lognormal or weibull)",
                 j, dist_kind_name(kind));
        return -1;
    }
    prior_dim pd = {kind, p0, dist_nparams(kind) == 2 ? p1 : 0.0};
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
    for (long i = 0; i < rep; i++) nd[*n + i] = (prior_dim){kind, par[0], par[1]};
    *n += (int)rep;
    return 0;
}

prior *prior_parse(const char *const *specs, size_t n_specs, char *err, size_t err_len)
{
    prior_dim *dims = NULL;
    int n = 0;
    for (size_t i = 0; i < n_specs; i++) {
        const char *s = specs[i];
        while (*s) {
            size_t len = strcspn(s, ",");
            while (len && isspace((unsigned char)*s)) s++, len--;
            size_t tl = len;
            while (tl && isspace((unsigned char)s[tl - 1])) tl--;
            if (tl == 0) {
                snprintf(err, err_len, "prior '%s': empty item", specs[i]);
                goto fail;
            }
            if (parse_one(s, tl, &dims, &n, err, err_len) < 0) goto fail;
            s += len;
            if (*s == ',') s++;
        }
    }
    if (n == 0) {
        snprintf(err, err_len, "prior: no dimensions given");
        goto fail;
    }
    prior *p = prior_new(n);
    if (!p) {
        snprintf(err, err_len, "prior: out of memory");
        goto fail;
    }
    for (int j = 0; j < n; j++) {
        if (prior_set(p, j, dims[j].kind, dims[j].p0, dims[j].p1, err, err_len) < 0) {
            prior_destroy(&p);
            goto fail;
        }
    }
    free(dims);
    return p;
fail:
    free(dims);
    return NULL;
}

int prior_format_dim(const prior *p, int j, char *buf, size_t len)
{
    const prior_dim *d = &p->d[j];
    const char *name = prior_kind_ok(d->kind) ? prior_names[d->kind] : "?";
    if (dist_nparams(d->kind) == 2) return snprintf(buf, len, "%s:%.17g:%.17g", name, d->p0, d->p1);
    return snprintf(buf, len, "%s:%.17g", name, d->p0);
}

int prior_format(const prior *p, char *buf, size_t len)
{
    size_t used = 0;
    if (len) buf[0] = 0;
    for (int j = 0; j < p->dim;) {
        int run = 1;
        while (j + run < p->dim && memcmp(&p->d[j + run], &p->d[j], sizeof p->d[j]) == 0) run++;
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
    if (a->dim != b->dim) return 0;
    for (int j = 0; j < a->dim; j++)
        if (a->d[j].kind != b->d[j].kind || memcmp(&a->d[j].p0, &b->d[j].p0, sizeof(double)) != 0 ||
            memcmp(&a->d[j].p1, &b->d[j].p1, sizeof(double)) != 0)
            return 0;
    return 1;
}

double prior_log_prob(const prior *p, const double *theta)
{
    double s = 0.0;
    for (int j = 0; j < p->dim; j++) {
        dist d = prior_dist(&p->d[j]);
        double lp = dist_log_prob(&d, &theta[j]);
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
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < p->dim; j++) {
            dist d = prior_dist(&p->d[j]);
            dist_sample(&d, r, &out[i * (size_t)p->dim + (size_t)j]);
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
