/* diag.c — calibration statistics (see diag.h). */
#include "diag/diag.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== distributions ============================================================== */

double diag_chi2_sf(double x, double k)
{
    if (!(k > 0)) return NAN;
    if (!(x > 0)) return 1.0;
    if (isinf(x)) return 0.0;
    double a = 0.5 * k, y = 0.5 * x;
    double log_front = -y + a * log(y) - lgamma(a);
    if (y < a + 1.0) {
        /* Series for the lower P(a, y); Q = 1 - P. */
        double ap = a, term = 1.0 / a, sum = term;
        for (int i = 0; i < 100000; i++) {
            ap += 1.0;
            term *= y / ap;
            sum += term;
            if (fabs(term) < fabs(sum) * 1e-16) break;
        }
        double q = 1.0 - sum * exp(log_front);
        return q < 0 ? 0 : q;
    }
    /* Continued fraction for Q(a, y) (modified Lentz). */
    const double tiny = 1e-300;
    double b = y + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny) d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-16) break;
    }
    double q = exp(log_front) * h;
    return q > 1 ? 1 : q;
}

double diag_kolmogorov_sf(double lambda)
{
    if (!(lambda > 0.18)) return 1.0; /* Q_KS(0.18) = 1 - 3e-15 */
    double sum = 0.0, sign = 1.0;
    for (int k = 1; k <= 200; k++) {
        double term = exp(-2.0 * k * k * lambda * lambda);
        sum += sign * term;
        if (term < 1e-17) break;
        sign = -sign;
    }
    double q = 2.0 * sum;
    return q < 0 ? 0 : q > 1 ? 1 : q;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* D+ = max(F_n - F) and D- = max(F - F_n) of u against U(0, 1). */
static void ks_sides(const double *u, size_t n, double *scratch, double *dplus, double *dminus)
{
    memcpy(scratch, u, n * sizeof *scratch);
    qsort(scratch, n, sizeof *scratch, cmp_double);
    double dp = 0, dm = 0;
    for (size_t i = 0; i < n; i++) {
        double v = scratch[i] < 0 ? 0 : scratch[i] > 1 ? 1 : scratch[i];
        double a = (double)(i + 1) / (double)n - v, b = v - (double)i / (double)n;
        if (a > dp) dp = a;
        if (b > dm) dm = b;
    }
    *dplus = dp;
    *dminus = dm;
}

static double ks_p(double d, size_t n)
{
    double sn = sqrt((double)n);
    return diag_kolmogorov_sf((sn + 0.12 + 0.11 / sn) * d);
}

void diag_ks_uniform(const double *u, size_t n, double *scratch, double *stat, double *p)
{
    double dp, dm;
    ks_sides(u, n, scratch, &dp, &dm);
    *stat = dp > dm ? dp : dm;
    *p = ks_p(*stat, n);
}

int diag_default_bins(size_t n, int L)
{
    size_t b = n / 10;
    if (b < 2) b = 2;
    if (b > 20) b = 20;
    if (b > (size_t)L + 1) b = (size_t)L + 1;
    return (int)b;
}

int diag_rank_chi2(const int *r, size_t stride, size_t n, int L, int bins, size_t *counts, double *stat, double *p)
{
    if (bins < 2 || L < 1 || bins > L + 1 || n == 0) return -1;
    size_t *cnt = calloc((size_t)bins, sizeof *cnt), *width = calloc((size_t)bins, sizeof *width);
    if (!cnt || !width) {
        free(cnt);
        free(width);
        return -1;
    }
    for (int v = 0; v <= L; v++) width[(size_t)v * (size_t)bins / ((size_t)L + 1)]++;
    for (size_t i = 0; i < n; i++) {
        int v = r[i * stride];
        if (v < 0) v = 0;
        if (v > L) v = L;
        cnt[(size_t)v * (size_t)bins / ((size_t)L + 1)]++;
    }
    double x2 = 0;
    for (int b = 0; b < bins; b++) {
        double e = (double)n * (double)width[b] / ((double)L + 1.0);
        double dv = (double)cnt[b] - e;
        x2 += dv * dv / e;
    }
    if (counts) memcpy(counts, cnt, (size_t)bins * sizeof *cnt);
    *stat = x2;
    *p = diag_chi2_sf(x2, bins - 1);
    free(cnt);
    free(width);
    return 0;
}

/* ==== ranks ====================================================================== */

/* k below plus a uniform pick among the ties, so that exchangeable values
 * give a uniform rank even with repeats. */
static int rank_with_ties(size_t below, size_t equal, rng *r)
{
    return (int)(below + (equal ? rng_below(r, (uint64_t)equal + 1) : 0));
}

int diag_rank_below(double x, const double *v, size_t stride, size_t L, rng *r)
{
    size_t below = 0, equal = 0;
    for (size_t l = 0; l < L; l++) {
        double s = v[l * stride];
        below += s < x;
        equal += s == x;
    }
    return rank_with_ties(below, equal, r);
}

double diag_pit(int k, size_t L, rng *r)
{
    return ((double)k + rng_uniform(r)) / ((double)L + 1.0);
}

/* ==== per-round accumulation ===================================================== */

diag_calib *diag_calib_new(int dim, size_t L, size_t n_rounds, const double *lo, const double *hi, uint64_t seed)
{
    if (dim < 1 || L < 1 || n_rounds < 1 || L > (size_t)1 << 30) return NULL;
    diag_calib *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    size_t D = (size_t)dim;
    c->dim = dim;
    c->L = L;
    c->cap = n_rounds;
    c->have_hpd = 1;
    c->lo = malloc(D * sizeof *c->lo);
    c->hi = malloc(D * sizeof *c->hi);
    c->ranks = malloc(n_rounds * D * sizeof *c->ranks);
    c->sbc_u = malloc(n_rounds * D * sizeof *c->sbc_u);
    c->hpd = malloc(n_rounds * sizeof *c->hpd);
    c->tarp = malloc(n_rounds * sizeof *c->tarp);
    c->scratch = malloc(L * sizeof *c->scratch);
    if (!c->lo || !c->hi || !c->ranks || !c->sbc_u || !c->hpd || !c->tarp || !c->scratch) {
        diag_calib_destroy(&c);
        return NULL;
    }
    for (size_t j = 0; j < D; j++) {
        c->lo[j] = lo ? lo[j] : 0.0;
        c->hi[j] = hi ? hi[j] : 1.0;
        if (!(c->hi[j] > c->lo[j]) || !isfinite(c->hi[j] - c->lo[j])) c->hi[j] = c->lo[j] + 1.0;
    }
    rng_seed(&c->r, seed, 0x64696167ull);
    return c;
}

void diag_calib_destroy(diag_calib **pc)
{
    if (!pc || !*pc) return;
    diag_calib *c = *pc;
    free(c->lo);
    free(c->hi);
    free(c->ranks);
    free(c->sbc_u);
    free(c->hpd);
    free(c->tarp);
    free(c->scratch);
    free(c);
    *pc = NULL;
}

int diag_calib_add(diag_calib *c, const double *theta, const double *samples, const double *logq_true,
                   const double *logq)
{
    if (c->n >= c->cap) return -1;
    size_t D = (size_t)c->dim, L = c->L, i = c->n;
    for (size_t j = 0; j < D; j++)
        if (isnan(theta[j])) return -1;
    for (size_t k = 0; k < L * D; k++)
        if (isnan(samples[k])) return -1;
    if ((logq_true == NULL) != (logq == NULL)) return -1;
    if (logq) {
        if (isnan(*logq_true)) return -1;
        for (size_t l = 0; l < L; l++)
            if (isnan(logq[l])) return -1;
    }
    /* SBC: marginal ranks. */
    for (size_t j = 0; j < D; j++) {
        int k = diag_rank_below(theta[j], samples + j, D, L, &c->r);
        c->ranks[i * D + j] = k;
        c->sbc_u[i * D + j] = diag_pit(k, L, &c->r);
    }
    /* HPD: how many samples are denser than the truth. */
    if (logq) {
        size_t above = 0, equal = 0;
        for (size_t l = 0; l < L; l++) {
            above += logq[l] > *logq_true;
            equal += logq[l] == *logq_true;
        }
        c->hpd[i] = diag_pit(rank_with_ties(above, equal, &c->r), L, &c->r);
    } else {
        c->hpd[i] = NAN;
        c->have_hpd = 0;
    }
    /* TARP: distances to a random reference point in the scaled box. */
    double ref[64], *refp = D <= 64 ? ref : malloc(D * sizeof *refp);
    if (!refp) return -1;
    for (size_t j = 0; j < D; j++) refp[j] = rng_uniform(&c->r);
    double dt = 0;
    for (size_t j = 0; j < D; j++) {
        double v = (theta[j] - c->lo[j]) / (c->hi[j] - c->lo[j]) - refp[j];
        dt += v * v;
    }
    for (size_t l = 0; l < L; l++) {
        double ds = 0;
        for (size_t j = 0; j < D; j++) {
            double v = (samples[l * D + j] - c->lo[j]) / (c->hi[j] - c->lo[j]) - refp[j];
            ds += v * v;
        }
        c->scratch[l] = ds;
    }
    c->tarp[i] = diag_pit(diag_rank_below(dt, c->scratch, 1, L, &c->r), L, &c->r);
    if (refp != ref) free(refp);
    c->n++;
    return 0;
}

/* ==== summaries ================================================================== */

const char *diag_verdict_name(diag_verdict v)
{
    switch (v) {
    case DIAG_PASS: return "pass";
    case DIAG_OVERCONFIDENT: return "overconfident";
    case DIAG_CONSERVATIVE: return "conservative";
    case DIAG_MIXED: return "mixed";
    case DIAG_FAIL: return "fail";
    case DIAG_SKIPPED: return "skipped";
    }
    return "?";
}

int diag_coverage_from_pit(const double *u, size_t n, const double *levels, int n_levels, double alpha,
                           int upper_only, double *scratch, diag_coverage *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0) return -1;
    if (!levels) {
        n_levels = 19;
        for (int i = 0; i < n_levels; i++) out->levels[i] = 0.05 * (i + 1);
    } else {
        if (n_levels < 1 || n_levels > DIAG_MAX_LEVELS) return -1;
        for (int i = 0; i < n_levels; i++) {
            if (!(levels[i] > 0 && levels[i] < 1)) return -1;
            out->levels[i] = levels[i];
        }
    }
    out->n = n;
    out->n_levels = n_levels;
    double gap = 0;
    int short_miss = 0, excess_miss = 0;
    for (int i = 0; i < n_levels; i++) {
        double c = out->levels[i];
        size_t in = 0;
        for (size_t k = 0; k < n; k++) in += u[k] < c;
        double cov = (double)in / (double)n;
        out->coverage[i] = cov;
        out->std_error[i] = sqrt(c * (1 - c) / (double)n);
        if (c - cov > out->max_shortfall) out->max_shortfall = c - cov;
        if (cov - c > out->max_excess) out->max_excess = cov - c;
        if (!upper_only || c >= 0.5 - 1e-12) {
            short_miss |= c - cov > DIAG_LEVEL_Z * out->std_error[i];
            excess_miss |= cov - c > DIAG_LEVEL_Z * out->std_error[i];
        }
        gap += cov - c;
    }
    out->mean_gap = gap / n_levels;
    double dp, dm;
    ks_sides(u, n, scratch, &dp, &dm);
    out->ks_stat = dp > dm ? dp : dm;
    out->ks_p = ks_p(out->ks_stat, n);
    /* F_n below the diagonal (D-) means fewer truths inside the regions than
     * the level promises: overconfident. */
    if (out->ks_p >= alpha) out->verdict = DIAG_PASS;
    else if (short_miss && excess_miss) out->verdict = DIAG_MIXED;
    else if (short_miss || excess_miss) out->verdict = short_miss ? DIAG_OVERCONFIDENT : DIAG_CONSERVATIVE;
    else out->verdict = dm > dp ? DIAG_OVERCONFIDENT : DIAG_CONSERVATIVE;
    return 0;
}

void diag_report_free(diag_report *rep)
{
    free(rep->sbc);
    free(rep->sbc_counts);
    rep->sbc = NULL;
    rep->sbc_counts = NULL;
}

int diag_calib_report(const diag_calib *c, int bins, const double *levels, int n_levels, double alpha,
                      diag_report *rep)
{
    memset(rep, 0, sizeof *rep);
    if (c->n < 2) return -1;
    size_t D = (size_t)c->dim, n = c->n;
    if (bins <= 0) bins = diag_default_bins(n, (int)c->L);
    if (bins > (int)c->L + 1) bins = (int)c->L + 1;
    if (bins < 2) bins = 2;
    rep->n_rounds = n;
    rep->L = c->L;
    rep->dim = c->dim;
    rep->bins = bins;
    rep->alpha = alpha;
    rep->sbc = calloc(D, sizeof *rep->sbc);
    rep->sbc_counts = calloc(D * (size_t)bins, sizeof *rep->sbc_counts);
    double *col = malloc(n * sizeof *col), *scratch = malloc(n * sizeof *scratch);
    if (!rep->sbc || !rep->sbc_counts || !col || !scratch) goto fail;
    rep->sbc_verdict = DIAG_PASS;
    for (size_t j = 0; j < D; j++) {
        diag_sbc_dim *s = &rep->sbc[j];
        if (diag_rank_chi2(c->ranks + j, D, n, (int)c->L, bins, rep->sbc_counts + j * (size_t)bins, &s->chi2,
                           &s->chi2_p) < 0)
            goto fail;
        double sum = 0;
        for (size_t i = 0; i < n; i++) {
            col[i] = c->sbc_u[i * D + j];
            sum += c->ranks[i * D + j];
        }
        s->mean_rank = sum / (double)n;
        diag_ks_uniform(col, n, scratch, &s->ks_stat, &s->ks_p);
        double cut = alpha / (2.0 * (double)D);
        if (s->chi2_p < cut || s->ks_p < cut) rep->sbc_verdict = DIAG_FAIL;
    }
    if (c->have_hpd) {
        if (diag_coverage_from_pit(c->hpd, n, levels, n_levels, alpha, 0, scratch, &rep->hpd) < 0) goto fail;
    } else {
        rep->hpd.verdict = DIAG_SKIPPED;
    }
    if (diag_coverage_from_pit(c->tarp, n, levels, n_levels, alpha, 1, scratch, &rep->tarp) < 0) goto fail;
    free(col);
    free(scratch);
    return 0;
fail:
    free(col);
    free(scratch);
    diag_report_free(rep);
    return -1;
}

/* ==== posterior predictive check ================================================= */

static double sorted_quantile(const double *v, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t i = (size_t)floor(pos);
    if (i + 1 >= n) return v[n - 1];
    double f = pos - (double)i;
    return v[i] + f * (v[i + 1] - v[i]);
}

int diag_ppc(const double *x_o, const double *x_pred, size_t M, int C, double alpha, diag_ppc_dim *out,
             diag_verdict *verdict)
{
    if (C < 1 || M < 2) return -1;
    size_t Cz = (size_t)C;
    double *col = malloc(M * sizeof *col);
    if (!col) return -1;
    *verdict = DIAG_PASS;
    size_t m_ok = 0;
    for (int j = 0; j < C; j++) {
        m_ok = 0;
        for (size_t m = 0; m < M; m++) {
            const double *row = x_pred + m * Cz;
            int ok = 1;
            for (size_t k = 0; k < Cz && ok; k++) ok = isfinite(row[k]);
            if (ok) col[m_ok++] = row[j];
        }
        if (m_ok < 2) break;
        diag_ppc_dim *d = &out[j];
        double xo = x_o[j], sum = 0, ss = 0;
        for (size_t m = 0; m < m_ok; m++) sum += col[m];
        d->x_o = xo;
        d->mean = sum / (double)m_ok;
        for (size_t m = 0; m < m_ok; m++) ss += (col[m] - d->mean) * (col[m] - d->mean);
        d->sd = sqrt(ss / (double)(m_ok - 1));
        double dev = xo - d->mean;
        d->z = d->sd > 0 ? dev / d->sd : dev == 0 ? 0 : dev > 0 ? INFINITY : -INFINITY;
        double below = 0;
        for (size_t m = 0; m < m_ok; m++) below += col[m] < xo ? 1.0 : col[m] == xo ? 0.5 : 0.0;
        double above = (double)m_ok - below;
        double tail = (below < above ? below : above) + 1.0;
        d->p = 2.0 * tail / ((double)m_ok + 2.0);
        if (d->p > 1) d->p = 1;
        qsort(col, m_ok, sizeof *col, cmp_double);
        d->q05 = sorted_quantile(col, m_ok, 0.05);
        d->q50 = sorted_quantile(col, m_ok, 0.50);
        d->q95 = sorted_quantile(col, m_ok, 0.95);
        if (d->p < alpha / (double)C) *verdict = DIAG_FAIL;
    }
    free(col);
    return m_ok < 2 ? -1 : 0;
}
