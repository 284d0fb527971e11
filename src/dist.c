/* dist.c — the 11 PPX distributions (see dist.h for shapes and
 * parameterisations).
 *
 * Conventions used throughout:
 *   - A NaN value gives a NaN log-density (and NaN gradients): it signals a
 *     bug upstream and must not silently become a zero weight.
 *   - ±inf values have density 0 for every kind (log-density -inf).
 *   - Densities with a boundary at 0 (Beta at 0 and 1, Gamma and Weibull at
 *     0) include the boundary, with the limiting value of the density there
 *     (possibly +inf for concentrations < 1).  The samplers can return an
 *     exact 0 when a tiny variate underflows, and such a draw must not be
 *     "impossible" under its own distribution.
 */
#include "dist.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define LN_SQRT_2PI 0.91893853320467274178 /* log(sqrt(2*pi)) */
#define LN_2 0.69314718055994530942

/* ---- kinds ---------------------------------------------------------------- */

static const char *const kind_names[DIST_KIND_COUNT] = {
    "None",   "Normal",      "Uniform", "Categorical", "Poisson",  "Bernoulli",
    "Beta",   "Exponential", "Gamma",   "LogNormal",   "Binomial", "Weibull",
};

/* Parameter names as in the PPX schema (slot 0, slot 1). */
static const char *const param_names[DIST_KIND_COUNT][2] = {
    [DIST_NORMAL] = {"mean", "stddev"},
    [DIST_UNIFORM] = {"low", "high"},
    [DIST_CATEGORICAL] = {"probs", NULL},
    [DIST_POISSON] = {"rate", NULL},
    [DIST_BERNOULLI] = {"probs", NULL},
    [DIST_BETA] = {"concentration1", "concentration0"},
    [DIST_EXPONENTIAL] = {"rate", NULL},
    [DIST_GAMMA] = {"concentration", "rate"},
    [DIST_LOGNORMAL] = {"loc", "scale"},
    [DIST_BINOMIAL] = {"total_count", "probs"},
    [DIST_WEIBULL] = {"scale", "concentration"},
};

static int kind_valid(dist_kind kind)
{
    return (int)kind > (int)DIST_NONE && (int)kind < (int)DIST_KIND_COUNT;
}

int dist_nparams(dist_kind kind)
{
    if (!kind_valid(kind))
        return 0;
    return param_names[kind][1] != NULL ? 2 : 1;
}

const char *dist_kind_name(dist_kind kind)
{
    return kind_valid(kind) ? kind_names[kind] : kind_names[DIST_NONE];
}

int dist_is_discrete(dist_kind kind)
{
    return kind == DIST_CATEGORICAL || kind == DIST_POISSON ||
           kind == DIST_BERNOULLI || kind == DIST_BINOMIAL;
}

/* ---- small helpers ------------------------------------------------------- */

/* Write a reason (if the caller wants one) and return -1. */
static int fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Shortest of %.6g/%.15g/%.17g that reads back as v, so a reason never says
 * "probs[0] = 1 must be in [0, 1]" about 1.0000000000000002. */
static const char *fmt_value(double v, char *buf, size_t len)
{
    static const int precisions[] = {6, 15, 17};
    for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++) {
        snprintf(buf, len, "%.*g", precisions[i], v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

/* Parameter value for element i: a length-1 parameter is broadcast. */
static inline double at(const double *p, size_t np, size_t i)
{
    return p[np == 1 ? 0 : i];
}

/* c * log(y), with 0 * log(0) = 0 (the limit that densities need). */
static double xlogy(double c, double y)
{
    return c == 0.0 ? 0.0 : c * log(y);
}

/* c * log1p(y), with 0 * log1p(-1) = 0. */
static double xlog1py(double c, double y)
{
    return c == 0.0 ? 0.0 : c * log1p(y);
}

/* lgamma_r rather than lgamma: lgamma writes the global signgam, a data race
 * when several threads evaluate densities at once. */
static double log_gamma(double x)
{
    int sign;
    return lgamma_r(x, &sign);
}

static double log_beta(double a, double b)
{
    return log_gamma(a) + log_gamma(b) - log_gamma(a + b);
}

/* Digamma for x > 0: the recurrence psi(x) = psi(x+1) - 1/x up to x >= 6,
 * then the asymptotic series through x^-14, whose first omitted term is below
 * 2e-13 at x = 6 (about 1e-13 relative; psi(6) = 1.706). */
static double digamma(double x)
{
    assert(x > 0.0);
    double acc = 0.0;
    while (x < 6.0) {
        acc -= 1.0 / x;
        x += 1.0;
    }
    const double inv = 1.0 / x, inv2 = inv * inv;
    /* sum B_2n / (2n x^2n) for n = 1..7, in Horner form */
    const double series =
        inv2 * (1.0 / 12 -
                inv2 * (1.0 / 120 -
                        inv2 * (1.0 / 252 -
                                inv2 * (1.0 / 240 -
                                        inv2 * (1.0 / 132 -
                                                inv2 * (691.0 / 32760 -
                                                        inv2 / 12))))));
    return acc + log(x) - 0.5 * inv - series;
}

/* log(high - low) that survives high - low overflowing (e.g. ±1e308). */
static double uniform_log_width(double low, double high)
{
    const double w = high - low;
    if (isfinite(w))
        return log(w);
    return log(0.5 * high - 0.5 * low) + LN_2;
}

static int is_count(double x)
{
    return isfinite(x) && x >= 0.0 && x == floor(x);
}

/* ---- init and validation ------------------------------------------------- */

int dist_init(dist *d, dist_kind kind, const double *p0, size_t n0,
              const double *p1, size_t n1, size_t k, char *why, size_t why_len)
{
    assert(d != NULL);
    *d = (dist){.kind = DIST_NONE};
    const int np = dist_nparams(kind);
    if (np == 0)
        return fail(why, why_len, "unknown distribution kind %d", (int)kind);
    const char *name = kind_names[kind];
    const char *const *pn = param_names[kind];
    if (n0 == 0 || p0 == NULL)
        return fail(why, why_len, "%s: %s is empty", name, pn[0]);

    size_t n;
    if (kind == DIST_CATEGORICAL) {
        if (k == 0)
            return fail(why, why_len, "Categorical: probs has 0 categories");
        if (n0 % k != 0)
            return fail(why, why_len,
                        "Categorical: probs has %zu values, not a multiple of "
                        "the %zu categories",
                        n0, k);
        n = n0 / k;
    } else if (np == 1) {
        n = n0; /* p1 is documented as unused */
        p1 = NULL;
        n1 = 0;
    } else {
        if (n1 == 0 || p1 == NULL)
            return fail(why, why_len, "%s: %s is empty", name, pn[1]);
        if (n0 == n1 || n1 == 1)
            n = n0;
        else if (n0 == 1)
            n = n1;
        else
            return fail(why, why_len,
                        "%s: %s has %zu values and %s has %zu; the lengths "
                        "neither match nor broadcast",
                        name, pn[0], n0, pn[1], n1);
    }
    d->kind = kind;
    d->n = n;
    d->k = kind == DIST_CATEGORICAL ? k : 0;
    d->p0 = p0;
    d->n0 = n0;
    d->p1 = p1;
    d->n1 = n1;
    return 0;
}

typedef enum constraint {
    C_REAL,     /* any finite value */
    C_POSITIVE, /* > 0 */
    C_NONNEG,   /* >= 0 */
    C_UNIT,     /* in [0, 1] */
    C_COUNT,    /* non-negative integer */
} constraint;

static int check_param(const char *kname, const char *pname, const double *p,
                       size_t np, constraint c, char *why, size_t why_len)
{
    char buf[32];
    for (size_t j = 0; j < np; j++) {
        const double v = p[j];
        if (isnan(v))
            return fail(why, why_len, "%s: %s[%zu] is NaN", kname, pname, j);
        if (!isfinite(v))
            return fail(why, why_len, "%s: %s[%zu] = %s is not finite", kname,
                        pname, j, fmt_value(v, buf, sizeof buf));
        const char *need = NULL;
        switch (c) {
        case C_REAL:
            break;
        case C_POSITIVE:
            if (!(v > 0.0))
                need = "must be > 0";
            break;
        case C_NONNEG:
            if (!(v >= 0.0))
                need = "must be >= 0";
            break;
        case C_UNIT:
            if (!(v >= 0.0 && v <= 1.0))
                need = "must be in [0, 1]";
            break;
        case C_COUNT:
            if (!(v >= 0.0 && v == floor(v)))
                need = "must be a non-negative integer";
            break;
        }
        if (need != NULL)
            return fail(why, why_len, "%s: %s[%zu] = %s %s", kname, pname, j,
                        fmt_value(v, buf, sizeof buf), need);
    }
    return 0;
}

static int check_categorical(const dist *d, char *why, size_t why_len)
{
    char buf[32];
    const size_t k = d->k;
    for (size_t i = 0; i < d->n; i++) {
        const double *w = d->p0 + i * k;
        double sum = 0.0;
        for (size_t j = 0; j < k; j++) {
            const size_t flat = i * k + j;
            if (isnan(w[j]))
                return fail(why, why_len,
                            "Categorical: probs[%zu] (row %zu, category %zu) "
                            "is NaN",
                            flat, i, j);
            if (!isfinite(w[j]) || w[j] < 0.0)
                return fail(why, why_len,
                            "Categorical: probs[%zu] (row %zu, category %zu) = "
                            "%s must be finite and >= 0",
                            flat, i, j, fmt_value(w[j], buf, sizeof buf));
            sum += w[j];
        }
        if (!(sum > 0.0))
            return fail(why, why_len,
                        "Categorical: probs row %zu sums to 0; a row needs a "
                        "positive weight",
                        i);
        if (!isfinite(sum))
            return fail(why, why_len,
                        "Categorical: probs row %zu sum overflows to inf", i);
    }
    return 0;
}

int dist_validate(const dist *d, char *why, size_t why_len)
{
    assert(d != NULL);
    if (dist_nparams(d->kind) == 0)
        return fail(why, why_len, "unknown distribution kind %d", (int)d->kind);
    const char *name = kind_names[d->kind];
    const char *const *pn = param_names[d->kind];
    assert(d->p0 != NULL && d->n0 > 0);
    assert(dist_nparams(d->kind) == 1 || (d->p1 != NULL && d->n1 > 0));

    constraint c0 = C_REAL, c1 = C_REAL;
    switch (d->kind) {
    case DIST_NORMAL:
    case DIST_LOGNORMAL:
        c1 = C_POSITIVE;
        break;
    case DIST_UNIFORM:
        break;
    case DIST_CATEGORICAL:
        return check_categorical(d, why, why_len);
    case DIST_POISSON:
        c0 = C_NONNEG;
        break;
    case DIST_BERNOULLI:
        c0 = C_UNIT;
        break;
    case DIST_BETA:
    case DIST_GAMMA:
    case DIST_WEIBULL:
        c0 = c1 = C_POSITIVE;
        break;
    case DIST_EXPONENTIAL:
        c0 = C_POSITIVE;
        break;
    case DIST_BINOMIAL:
        c0 = C_COUNT;
        c1 = C_UNIT;
        break;
    default:
        assert(0 && "kind checked above");
        break;
    }
    if (check_param(name, pn[0], d->p0, d->n0, c0, why, why_len) != 0)
        return -1;
    if (pn[1] != NULL &&
        check_param(name, pn[1], d->p1, d->n1, c1, why, why_len) != 0)
        return -1;

    if (d->kind == DIST_UNIFORM) {
        char lb[32], hb[32];
        for (size_t i = 0; i < d->n; i++) {
            const size_t i0 = d->n0 == 1 ? 0 : i, i1 = d->n1 == 1 ? 0 : i;
            const double lo = d->p0[i0], hi = d->p1[i1];
            if (!(lo < hi))
                return fail(why, why_len,
                            "Uniform: low[%zu] = %s must be < high[%zu] = %s",
                            i0, fmt_value(lo, lb, sizeof lb), i1,
                            fmt_value(hi, hb, sizeof hb));
        }
    }
    return 0;
}

/* ---- sampling ------------------------------------------------------------ */

static double sample_uniform(rng *r, double low, double high)
{
    const double w = high - low;
    for (;;) {
        const double u = rng_uniform(r);
        /* Halve first when the width overflows. */
        const double x = isfinite(w) ? low + w * u
                                     : 2.0 * (0.5 * low + (0.5 * high - 0.5 * low) * u);
        /* low + w*u can round up to high, which is outside [low, high). */
        if (x < high)
            return x;
    }
}

static double sample_categorical(rng *r, const double *w, size_t k)
{
    double sum = 0.0;
    size_t last = 0;
    for (size_t j = 0; j < k; j++) {
        sum += w[j];
        if (w[j] > 0.0)
            last = j;
    }
    const double target = rng_uniform(r) * sum;
    double acc = 0.0;
    for (size_t j = 0; j < k; j++) {
        if (w[j] > 0.0) { /* zero-weight categories are never drawn */
            acc += w[j];
            if (target < acc)
                return (double)j;
        }
    }
    /* target rounded up to the full sum: the last possible category. */
    return (double)last;
}

void dist_sample(const dist *d, rng *r, double *out)
{
    assert(d != NULL && r != NULL && out != NULL);
    const double *p0 = d->p0, *p1 = d->p1;
    const size_t n0 = d->n0, n1 = d->n1;
    for (size_t i = 0; i < d->n; i++) {
        const double a = d->kind == DIST_CATEGORICAL ? 0.0 : at(p0, n0, i);
        const double b = p1 != NULL ? at(p1, n1, i) : 0.0;
        double x;
        switch (d->kind) {
        case DIST_NORMAL:
            x = a + b * rng_normal(r);
            break;
        case DIST_UNIFORM:
            x = sample_uniform(r, a, b);
            break;
        case DIST_CATEGORICAL:
            x = sample_categorical(r, p0 + i * d->k, d->k);
            break;
        case DIST_POISSON:
            x = rng_poisson(r, a);
            break;
        case DIST_BERNOULLI:
            x = rng_uniform(r) < a ? 1.0 : 0.0;
            break;
        case DIST_BETA:
            x = rng_beta(r, a, b);
            break;
        case DIST_EXPONENTIAL:
            x = rng_exponential(r) / a;
            break;
        case DIST_GAMMA:
            x = rng_gamma(r, a) / b;
            break;
        case DIST_LOGNORMAL:
            x = exp(a + b * rng_normal(r));
            break;
        case DIST_BINOMIAL:
            x = rng_binomial(r, a, b);
            break;
        case DIST_WEIBULL:
            /* inverse CDF: scale * (-log U)^(1/concentration) */
            x = a * pow(rng_exponential(r), 1.0 / b);
            break;
        default:
            assert(0 && "dist_sample on an unvalidated dist");
            x = NAN;
            break;
        }
        out[i] = x;
    }
}

/* ---- log-density --------------------------------------------------------- */

static double categorical_log_prob(const double *w, size_t k, double x)
{
    if (!(x >= 0.0 && x < (double)k && x == floor(x)))
        return -INFINITY;
    double sum = 0.0;
    for (size_t j = 0; j < k; j++)
        sum += w[j];
    return log(w[(size_t)x]) - log(sum);
}

static double log_prob_elem(const dist *d, size_t i, double x)
{
    if (isnan(x))
        return NAN;
    if (isinf(x))
        return -INFINITY;
    const double a = d->kind == DIST_CATEGORICAL ? 0.0 : at(d->p0, d->n0, i);
    const double b = d->p1 != NULL ? at(d->p1, d->n1, i) : 0.0;
    switch (d->kind) {
    case DIST_NORMAL: {
        const double z = (x - a) / b;
        return -0.5 * z * z - log(b) - LN_SQRT_2PI;
    }
    case DIST_UNIFORM:
        return x >= a && x < b ? -uniform_log_width(a, b) : -INFINITY;
    case DIST_CATEGORICAL:
        return categorical_log_prob(d->p0 + i * d->k, d->k, x);
    case DIST_POISSON:
        if (!is_count(x))
            return -INFINITY;
        if (a == 0.0)
            return x == 0.0 ? 0.0 : -INFINITY;
        return x * log(a) - a - log_gamma(x + 1.0);
    case DIST_BERNOULLI:
        if (x == 1.0)
            return log(a);
        if (x == 0.0)
            return log1p(-a);
        return -INFINITY;
    case DIST_BETA:
        if (!(x >= 0.0 && x <= 1.0))
            return -INFINITY;
        return xlogy(a - 1.0, x) + xlog1py(b - 1.0, -x) - log_beta(a, b);
    case DIST_EXPONENTIAL:
        return x >= 0.0 ? log(a) - a * x : -INFINITY;
    case DIST_GAMMA:
        if (!(x >= 0.0))
            return -INFINITY;
        return a * log(b) + xlogy(a - 1.0, x) - b * x - log_gamma(a);
    case DIST_LOGNORMAL: {
        if (!(x > 0.0))
            return -INFINITY;
        const double lx = log(x);
        const double z = (lx - a) / b;
        return -0.5 * z * z - lx - log(b) - LN_SQRT_2PI;
    }
    case DIST_BINOMIAL:
        if (!is_count(x) || x > a)
            return -INFINITY;
        return log_gamma(a + 1.0) - log_gamma(x + 1.0) - log_gamma(a - x + 1.0) +
               xlogy(x, b) + xlog1py(a - x, -b);
    case DIST_WEIBULL: {
        /* scale a, concentration b:
         * log(b/a) + (b-1) log(x/a) - (x/a)^b */
        if (!(x >= 0.0))
            return -INFINITY;
        const double t = x / a;
        return log(b / a) + xlogy(b - 1.0, t) - pow(t, b);
    }
    default:
        assert(0 && "log_prob on an unvalidated dist");
        return NAN;
    }
}

double dist_log_prob(const dist *d, const double *x)
{
    assert(d != NULL && x != NULL);
    double sum = 0.0;
    for (size_t i = 0; i < d->n; i++)
        sum += log_prob_elem(d, i, x[i]);
    return sum;
}

void dist_log_prob_each(const dist *d, const double *x, double *out)
{
    assert(d != NULL && x != NULL && out != NULL);
    for (size_t i = 0; i < d->n; i++)
        out[i] = log_prob_elem(d, i, x[i]);
}

/* ---- moments ------------------------------------------------------------- */

static void categorical_moments(const double *w, size_t k, double *mean,
                                double *var)
{
    double sum = 0.0, m = 0.0;
    for (size_t j = 0; j < k; j++) {
        sum += w[j];
        m += (double)j * w[j];
    }
    m /= sum;
    /* centred second moment: no cancellation between E[j^2] and m^2 */
    double v = 0.0;
    for (size_t j = 0; j < k; j++)
        v += ((double)j - m) * ((double)j - m) * w[j];
    *mean = m;
    *var = v / sum;
}

/* G(1+2e) - G(1+e)^2 for e = 1/concentration, formed as
 * G(1+e)^2 * expm1(D) with D = lgamma(1+2e) - 2 lgamma(1+e) so that nothing
 * cancels.  For small e the lgamma route would still lose digits (1 + e is
 * rounded, an absolute error of 1e-16 against D ~ 1.6 e^2), so D comes from
 * its Taylor series: D = sum_n (-1)^n zeta(n) (2^n - 2) / n  e^n, n >= 2. */
static double weibull_var_ratio(double e)
{
    double d;
    if (e <= 1e-3) { /* terms shrink by ~2e: through e^8 is below 1e-16 */
        static const double c[] = {
            1.6449340668482264 * 2 / 2,   -1.2020569031595943 * 6 / 3,
            1.0823232337111382 * 14 / 4,  -1.0369277551433699 * 30 / 5,
            1.0173430619844491 * 62 / 6,  -1.0083492773819228 * 126 / 7,
            1.0040773561979443 * 254 / 8,
        };
        double poly = 0.0;
        for (int i = (int)(sizeof c / sizeof c[0]) - 1; i >= 0; i--)
            poly = c[i] + e * poly;
        d = e * e * poly;
    } else {
        d = log_gamma(1.0 + 2.0 * e) - 2.0 * log_gamma(1.0 + e);
    }
    return exp(2.0 * log_gamma(1.0 + e)) * expm1(d);
}

static void moments_elem(const dist *d, size_t i, double *mean, double *var)
{
    const double a = d->kind == DIST_CATEGORICAL ? 0.0 : at(d->p0, d->n0, i);
    const double b = d->p1 != NULL ? at(d->p1, d->n1, i) : 0.0;
    switch (d->kind) {
    case DIST_NORMAL:
        *mean = a;
        *var = b * b;
        break;
    case DIST_UNIFORM: {
        *mean = 0.5 * a + 0.5 * b;
        const double w = b - a;
        *var = w * w / 12.0;
        break;
    }
    case DIST_CATEGORICAL:
        categorical_moments(d->p0 + i * d->k, d->k, mean, var);
        break;
    case DIST_POISSON:
        *mean = a;
        *var = a;
        break;
    case DIST_BERNOULLI:
        *mean = a;
        *var = a * (1.0 - a);
        break;
    case DIST_BETA: {
        const double s = a + b;
        *mean = a / s;
        *var = a * b / (s * s * (s + 1.0));
        break;
    }
    case DIST_EXPONENTIAL:
        *mean = 1.0 / a;
        *var = 1.0 / (a * a);
        break;
    case DIST_GAMMA:
        *mean = a / b;
        *var = a / (b * b);
        break;
    case DIST_LOGNORMAL: {
        const double s2 = b * b;
        *mean = exp(a + 0.5 * s2);
        *var = expm1(s2) * exp(2.0 * a + s2);
        break;
    }
    case DIST_BINOMIAL:
        *mean = a * b;
        *var = a * b * (1.0 - b);
        break;
    case DIST_WEIBULL: {
        /* mean = scale G(1+1/k); var = scale^2 (G(1+2/k) - G(1+1/k)^2), whose
         * difference cancels for large k; see weibull_var_ratio. */
        *mean = a * tgamma(1.0 + 1.0 / b);
        *var = a * a * weibull_var_ratio(1.0 / b);
        break;
    }
    default:
        assert(0 && "moments of an unvalidated dist");
        *mean = *var = NAN;
        break;
    }
}

void dist_mean(const dist *d, double *out)
{
    assert(d != NULL && out != NULL);
    double v;
    for (size_t i = 0; i < d->n; i++)
        moments_elem(d, i, &out[i], &v);
}

void dist_variance(const dist *d, double *out)
{
    assert(d != NULL && out != NULL);
    double m;
    for (size_t i = 0; i < d->n; i++)
        moments_elem(d, i, &m, &out[i]);
}

/* ---- gradients ----------------------------------------------------------- */

static void categorical_grad(const double *w, size_t k, double x, double *g)
{
    for (size_t j = 0; j < k; j++)
        g[j] = 0.0;
    if (!(x >= 0.0 && x < (double)k && x == floor(x)))
        return;
    const size_t ix = (size_t)x;
    if (!(w[ix] > 0.0)) /* probability 0: outside the support */
        return;
    double sum = 0.0;
    for (size_t j = 0; j < k; j++)
        sum += w[j];
    /* d/dw_j log(w_x / sum w) = [j == x] / w_x - 1 / sum w */
    for (size_t j = 0; j < k; j++)
        g[j] = -1.0 / sum;
    g[ix] += 1.0 / w[ix];
}

/* Gradient of log p(x) for element i; *g1 is untouched for one-parameter
 * kinds.  Returns with zeros when x is outside the support. */
static void grad_elem(const dist *d, size_t i, double x, double *g0, double *g1)
{
    const double a = at(d->p0, d->n0, i);
    const double b = d->p1 != NULL ? at(d->p1, d->n1, i) : 0.0;
    *g0 = 0.0;
    if (g1 != NULL)
        *g1 = 0.0;
    if (isnan(x)) {
        *g0 = NAN;
        if (g1 != NULL)
            *g1 = NAN;
        return;
    }
    if (isinf(x) || log_prob_elem(d, i, x) == -INFINITY)
        return;
    switch (d->kind) {
    case DIST_NORMAL: {
        const double z = (x - a) / b;
        *g0 = z / b;
        *g1 = (z * z - 1.0) / b;
        break;
    }
    case DIST_UNIFORM: {
        /* log p = -log(high - low) */
        const double w = b - a;
        *g0 = 1.0 / w;
        *g1 = -1.0 / w;
        break;
    }
    case DIST_POISSON:
        /* x log r - r: at x = 0 the derivative is -1 even for r = 0 */
        *g0 = x == 0.0 ? -1.0 : x / a - 1.0;
        break;
    case DIST_BERNOULLI:
        *g0 = x == 1.0 ? 1.0 / a : -1.0 / (1.0 - a);
        break;
    case DIST_BETA: {
        const double ps = digamma(a + b);
        *g0 = log(x) - digamma(a) + ps;
        *g1 = log1p(-x) - digamma(b) + ps;
        break;
    }
    case DIST_EXPONENTIAL:
        *g0 = 1.0 / a - x;
        break;
    case DIST_GAMMA:
        *g0 = log(b) + log(x) - digamma(a);
        *g1 = a / b - x;
        break;
    case DIST_LOGNORMAL: {
        const double z = (log(x) - a) / b;
        *g0 = z / b;
        *g1 = (z * z - 1.0) / b;
        break;
    }
    case DIST_BINOMIAL:
        /* total_count is discrete: its gradient stays 0.  The two terms are
         * absent (not 0/0) when x = 0 or x = n. */
        *g1 = (x > 0.0 ? x / b : 0.0) - (a - x > 0.0 ? (a - x) / (1.0 - b) : 0.0);
        break;
    case DIST_WEIBULL: {
        /* log p = log k - k log scale + (k-1) log x - (x/scale)^k */
        const double t = x / a;
        const double lt = log(t);
        const double tk = pow(t, b);
        *g0 = b / a * (tk - 1.0);
        *g1 = 1.0 / b + lt * (1.0 - tk);
        break;
    }
    default:
        assert(0 && "grad of an unvalidated dist");
        break;
    }
}

void dist_grad_log_prob(const dist *d, const double *x, double *g0, double *g1)
{
    assert(d != NULL && x != NULL && g0 != NULL);
    assert(dist_nparams(d->kind) == 1 || g1 != NULL);
    if (d->kind == DIST_CATEGORICAL) {
        for (size_t i = 0; i < d->n; i++) {
            if (isnan(x[i])) {
                for (size_t j = 0; j < d->k; j++)
                    g0[i * d->k + j] = NAN;
                continue;
            }
            categorical_grad(d->p0 + i * d->k, d->k, x[i], g0 + i * d->k);
        }
        return;
    }
    const int two = dist_nparams(d->kind) == 2;
    for (size_t i = 0; i < d->n; i++)
        grad_elem(d, i, x[i], &g0[i], two ? &g1[i] : NULL);
}
