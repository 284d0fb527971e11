/* stats.c — see stats.h. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>

double stats_logsumexp(const double *lw, size_t n)
{
    double m = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (lw[i] > m) m = lw[i];
    if (!isfinite(m)) return m; /* all -inf (or +inf / NaN present) */
    double s = 0;
    for (size_t i = 0; i < n; i++) s += exp(lw[i] - m);
    return m + log(s);
}

void stats_normalise(const double *lw, size_t n, double *w)
{
    double l = stats_logsumexp(lw, n);
    for (size_t i = 0; i < n; i++) w[i] = isfinite(l) ? exp(lw[i] - l) : 0.0;
}

double stats_ess(const double *w, size_t n)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        s += w[i];
        s2 += w[i] * w[i];
    }
    return s2 > 0 ? s * s / s2 : 0.0;
}

void stats_weighted_moments(const double *x, size_t stride, const double *w, size_t n, double *mean, double *sd)
{
    double sw = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i * stride];
        if (isnan(v) || w[i] == 0) continue;
        sw += w[i];
        m += w[i] * v;
    }
    if (sw <= 0) {
        *mean = *sd = NAN;
        return;
    }
    m /= sw;
    double var = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i * stride];
        if (isnan(v) || w[i] == 0) continue;
        var += w[i] * (v - m) * (v - m);
    }
    *mean = m;
    *sd = sqrt(var / sw);
}

/* qsort has no context argument in C11: sort (value, index) pairs instead. */
typedef struct vi {
    double v;
    size_t i;
} vi;

static int vi_cmp(const void *a, const void *b)
{
    double x = ((const vi *)a)->v, y = ((const vi *)b)->v;
    return (x > y) - (x < y);
}

double stats_weighted_quantile(const double *x, size_t stride, const double *w, size_t n, double q, size_t *scratch)
{
    vi *p = (vi *)scratch; /* 2n size_t = n pairs of (double, size_t) */
    size_t m = 0;
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i * stride];
        if (isnan(v) || w[i] <= 0) continue;
        p[m].v = v;
        p[m].i = i;
        m++;
        total += w[i];
    }
    if (!m) return NAN;
    qsort(p, m, sizeof *p, vi_cmp);
    double acc = 0, target = q * total;
    for (size_t j = 0; j < m; j++) {
        acc += w[p[j].i];
        if (acc >= target) return p[j].v;
    }
    return p[m - 1].v;
}

void stats_resample_systematic(const double *w, size_t n, size_t m, rng *r, size_t *out)
{
    if (!n || !m) return;
    double u = rng_uniform(r) / (double)m, c = w[0];
    size_t i = 0;
    for (size_t j = 0; j < m; j++) {
        double t = u + (double)j / (double)m;
        while (t > c && i + 1 < n) c += w[++i];
        out[j] = i;
    }
}

double stats_ess_batch_means(const double *x, size_t n)
{
    if (n < 4) return (double)n;
    size_t b = (size_t)sqrt((double)n), nb = n / b;
    double mean = 0, var = 0;
    for (size_t i = 0; i < nb * b; i++) mean += x[i];
    mean /= (double)(nb * b);
    for (size_t i = 0; i < nb * b; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)(nb * b - 1);
    double bvar = 0;
    for (size_t k = 0; k < nb; k++) {
        double bm = 0;
        for (size_t i = 0; i < b; i++) bm += x[k * b + i];
        bm /= (double)b;
        bvar += (bm - mean) * (bm - mean);
    }
    bvar /= (double)(nb - 1);
    /* Var(batch mean) = b * var_chain / ESS_per_batch...: ESS = n var / (b bvar). */
    double ess = bvar > 0 ? (double)n * var / ((double)b * bvar) : (double)n;
    return ess > (double)n ? (double)n : ess;
}
