/* diag.h — calibration diagnostics of amortized posteriors: the statistics
 * behind `ppxd diagnose`, computed from posterior samples and densities the
 * caller supplies (so they apply to any model that can sample: NPE, NRE, and
 * later inference compilation or gold-mining estimators).
 *
 * Every check reduces one test round — a true theta* (drawn from the prior),
 * its simulated x, L posterior samples s_1..s_L of q(. | x) — to a rank k in
 * 0..L.  If q is the true posterior, theta* and the s_l are exchangeable, so
 * k is uniform on {0, ..., L}, and the randomised PIT value
 *     u = (k + v) / (L + 1),   v ~ U(0, 1) independent,
 * is exactly U(0, 1).  Ties (equal values, e.g. clipped densities) are broken
 * uniformly at random, which keeps that property.
 *
 *   SBC (Talts et al. 2018): per dimension j, k_j = #{l : s_l,j < theta*_j};
 *     rank histograms are flat; tested by chi-square on binned ranks and by
 *     Kolmogorov–Smirnov on u.
 *   Expected coverage (HPD regions, Hermans et al. 2022): k = #{l : q(s_l|x)
 *     > q(theta*|x)}, so u is the credibility level of the smallest
 *     highest-density region containing theta*; the empirical coverage at
 *     nominal level c is the fraction of rounds with u < c, which is c for a
 *     calibrated posterior, below c when it is overconfident and above c when
 *     it is conservative.  The coverage curve is the empirical CDF of u.
 *   TARP (Lemos et al. 2023): theta, samples and a random reference point
 *     theta_r ~ U(box) are scaled to [0, 1]^D by the test set's range; k =
 *     #{l : |s_l - theta_r| < |theta* - theta_r|}.  The expected coverage
 *     probability ECP(c) is the fraction of rounds with u < c; uniform u is
 *     necessary and sufficient for calibration (so it also catches a
 *     posterior with the right marginals and the wrong joint).
 *   Posterior predictive check: for an observation x_o and M predictive
 *     simulations x_m (x at theta ~ q(. | x_o)), per x dimension the
 *     predictive mean, sd, z = (x_o - mean) / sd and the two-sided tail
 *     probability of x_o's rank among the x_m.
 *
 * Uniformity tests: chi-square (upper tail of chi^2 with bins-1 degrees of
 * freedom) and KS (Kolmogorov distribution with Stephens' small-n
 * correction; accurate to ~1% of p for n >= 20).  Verdicts use a family-wise
 * level alpha (default 0.01) split across the tests of a check (Bonferroni).
 *
 * Ownership: the caller owns every array; a diag_calib owns its per-round
 * results.  Shapes: theta [D], samples [L, D] row-major doubles.  No globals;
 * not thread-safe per object.
 */
#ifndef PPX_DIAG_H
#define PPX_DIAG_H

#include <stddef.h>
#include <stdint.h>
#include "rng.h"

/* ==== distributions and uniformity tests ======================================= */

/* P(X > x) for X ~ chi^2 with k > 0 degrees of freedom (regularised upper
 * incomplete gamma Q(k/2, x/2)); 1 for x <= 0. */
double diag_chi2_sf(double x, double k);
/* P(sqrt(n) D_n > lambda) in the Kolmogorov limit, Q_KS(lambda). */
double diag_kolmogorov_sf(double lambda);
/* KS test of u[0..n) (n >= 1, values in [0, 1], any order) against U(0, 1):
 * the statistic D = sup |F_n - F| into *stat, its p-value into *p.  scratch
 * holds n doubles (the sorted copy).  */
void diag_ks_uniform(const double *u, size_t n, double *scratch, double *stat, double *p);
/* Chi-square test that integer ranks r[i * stride] (values 0..L) are uniform,
 * in `bins` bins of consecutive rank values (bin of r: r * bins / (L + 1);
 * expected counts proportional to the number of values in each bin).  counts
 * (may be NULL) receives the bins' counts.  0, or -1 for bins < 2 or
 * bins > L + 1. */
int diag_rank_chi2(const int *r, size_t stride, size_t n, int L, int bins, size_t *counts, double *stat,
                   double *p);
/* The bin count used by default: min(20, L + 1, max(2, n / 10)) (at least 10
 * expected per bin when n allows). */
int diag_default_bins(size_t n, int L);

/* ==== ranks ====================================================================== */

/* #{l : v[l * stride] < x}, plus a uniform draw from 0..#{v == x} for ties. */
int diag_rank_below(double x, const double *v, size_t stride, size_t L, rng *r);
/* The randomised PIT value (k + v) / (L + 1) of rank k. */
double diag_pit(int k, size_t L, rng *r);

/* ==== per-round accumulation ===================================================== */

typedef struct diag_calib {
    int dim;            /* D */
    size_t L;           /* posterior samples per round */
    size_t cap, n;      /* rounds allocated / added */
    double *lo, *hi;    /* [D] TARP scaling box: theta -> (theta - lo) / (hi - lo) */
    int *ranks;         /* [cap, D] SBC ranks 0..L */
    double *sbc_u;      /* [cap, D] their PIT values */
    double *hpd;        /* [cap] HPD credibility level of theta* (NaN: no densities given) */
    double *tarp;       /* [cap] TARP PIT value */
    int have_hpd;       /* every round so far had densities */
    rng r;              /* ties, PIT jitter, TARP reference points */
    double *scratch;    /* [L] */
} diag_calib;

/* Room for n_rounds rounds of L samples each in dim dimensions; lo/hi [dim]
 * the TARP box (NULL: [0, 1]; hi[j] <= lo[j] is treated as a unit width).
 * NULL on bad sizes or out of memory. */
diag_calib *diag_calib_new(int dim, size_t L, size_t n_rounds, const double *lo, const double *hi, uint64_t seed);
void diag_calib_destroy(diag_calib **c);
/* Add one round: theta [D] the truth, samples [L, D]; logq_true (scalar) and
 * logq [L] the model's log density at theta* and at the samples (NULL, NULL:
 * no HPD coverage for this run; any constant offset is fine, -inf allowed).
 * 0, or -1 when the rounds are full or an input is NaN. */
int diag_calib_add(diag_calib *c, const double *theta, const double *samples, const double *logq_true,
                   const double *logq);

/* ==== summaries ================================================================== */

#define DIAG_MAX_LEVELS 99

typedef enum diag_verdict {
    DIAG_PASS = 0,
    DIAG_OVERCONFIDENT,  /* coverage below nominal (regions too small) */
    DIAG_CONSERVATIVE,   /* coverage above nominal (regions too large) */
    DIAG_MIXED,          /* coverage below nominal at some levels and above at others */
    DIAG_FAIL,           /* non-uniform without a direction (SBC, PPC) */
    DIAG_SKIPPED
} diag_verdict;

const char *diag_verdict_name(diag_verdict v); /* "pass", "overconfident", ... */

/* A coverage curve from PIT values u[0..n): cov[i] = #{u < levels[i]} / n, with
 * the KS test of u against U(0, 1) and the largest shortfall (max of level -
 * coverage, >= 0) and excess (max of coverage - level, >= 0) over the levels.
 * Verdict: pass when the KS p-value is >= alpha.  Otherwise the direction:
 * a level "misses" when its coverage is more than DIAG_LEVEL_Z standard
 * errors off; overconfident when only shortfalls miss, conservative when
 * only excesses do, mixed when both do, and by the larger of the KS
 * deviations of u when none does.  For HPD coverage every level counts.
 * For TARP (upper_only = 1) only levels >= 0.5 do: a too-narrow posterior
 * makes TARP's curve cross the diagonal at 0.5 (truths are either nearer
 * the reference point than all samples or farther than all), above it below
 * 0.5 and below it above 0.5, and the upper half is the one whose sign means
 * what it says. */
#define DIAG_LEVEL_Z 3.0
typedef struct diag_coverage {
    size_t n;
    int n_levels;
    double levels[DIAG_MAX_LEVELS];
    double coverage[DIAG_MAX_LEVELS];
    double std_error[DIAG_MAX_LEVELS]; /* sqrt(c (1 - c) / n) under calibration */
    double max_shortfall, max_excess;
    double ks_stat, ks_p;
    double mean_gap;     /* mean over the levels of (coverage - level): > 0 conservative, < 0 overconfident */
    diag_verdict verdict;
} diag_coverage;

/* levels NULL: 0.05, 0.10, ..., 0.95 (n_levels ignored).  scratch [n].  0 or
 * -1 (n == 0, bad levels). */
int diag_coverage_from_pit(const double *u, size_t n, const double *levels, int n_levels, double alpha,
                           int upper_only, double *scratch, diag_coverage *out);

/* SBC per dimension: chi-square over `bins` bins and KS on the PIT values. */
typedef struct diag_sbc_dim {
    double chi2, chi2_p;
    double ks_stat, ks_p;
    double mean_rank;    /* L / 2 when calibrated; above: the posterior sits below theta* (biased low) */
} diag_sbc_dim;

typedef struct diag_report {
    size_t n_rounds, L;
    int dim, bins;
    diag_sbc_dim *sbc;   /* [dim] (owned) */
    size_t *sbc_counts;  /* [dim, bins] (owned) */
    diag_verdict sbc_verdict; /* fail when some p < alpha / (2 dim) */
    diag_coverage hpd;   /* verdict DIAG_SKIPPED without densities */
    diag_coverage tarp;
    double alpha;
} diag_report;

/* Summaries of the rounds added (at least 2).  bins <= 0: diag_default_bins.
 * levels as diag_coverage_from_pit.  0 or -1 (nothing to summarise, out of
 * memory).  Free with diag_report_free. */
int diag_calib_report(const diag_calib *c, int bins, const double *levels, int n_levels, double alpha,
                      diag_report *rep);
void diag_report_free(diag_report *rep);

/* ==== posterior predictive check ================================================= */

typedef struct diag_ppc_dim {
    double x_o;
    double mean, sd;
    double z;            /* (x_o - mean) / sd (0 when sd = 0 and x_o = mean, +-inf otherwise) */
    double q05, q50, q95;
    double p;            /* two-sided tail probability 2 min(k + 1, M - k + 1) / (M + 2), capped at 1; k = #{x_m < x_o} */
} diag_ppc_dim;

/* x_o [C], x_pred [M, C] (M >= 2; non-finite rows skipped).  out [C].
 * *verdict: pass unless some p < alpha / C.  0 or -1 (no finite row, out of
 * memory). */
int diag_ppc(const double *x_o, const double *x_pred, size_t M, int C, double alpha, diag_ppc_dim *out,
             diag_verdict *verdict);

#endif
