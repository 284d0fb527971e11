/* Tests for src/dist.c: initialisation and broadcasting, validation reasons,
 * log-densities against closed forms computed here by other routes (pow,
 * tgamma, explicit sums), supports, moments of the samplers against
 * dist_mean/dist_variance, and gradients against central finite differences
 * of dist_log_prob.
 *
 * Statistical checks use fixed seeds; a sample mean must lie within Z
 * standard errors sqrt(var/N), a sample variance within Z standard errors
 * sqrt((m4 - s^4 (N-3)/(N-1))/N) with m4 the sample's fourth central moment, and a
 * frequency within Z sqrt(p(1-p)/N). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

#define Z 4.5
#define MAXN 12

/* ---- helpers ------------------------------------------------------------- */

static dist make(dist_kind kind, const double *p0, size_t n0, const double *p1,
                 size_t n1, size_t k)
{
    dist d;
    char why[256] = "";
    const int rc = dist_init(&d, kind, p0, n0, p1, n1, k, why, sizeof why);
    cr_assert_eq(rc, 0, "dist_init(%s) failed: %s", dist_kind_name(kind), why);
    const int vr = dist_validate(&d, why, sizeof why);
    cr_assert_eq(vr, 0, "dist_validate(%s) failed: %s", dist_kind_name(kind), why);
    return d;
}

static double at(const double *p, size_t n, size_t i)
{
    return p[n == 1 ? 0 : i];
}

static int close_to(double got, double want, double rel, double abs_tol)
{
    if (isinf(want) || isinf(got))
        return got == want;
    return fabs(got - want) <= abs_tol + rel * fabs(want);
}

/* log(j!) as an explicit sum: independent of lgamma. */
static double log_factorial_sum(double x)
{
    double s = 0.0;
    for (double j = 2.0; j <= x; j += 1.0)
        s += log(j);
    return s;
}

/* log C(n, x) as a sum of logs of the ratio terms. */
static double log_choose_sum(double n, double x)
{
    if (x > n - x)
        x = n - x;
    double s = 0.0;
    for (double j = 1.0; j <= x; j += 1.0)
        s += log((n - x + j) / j);
    return s;
}

/* Reference log-density by a different route than dist.c: the density itself
 * through pow/exp/tgamma, then log. */
static double ref_log_prob(dist_kind kind, double a, double b, double x)
{
    const double pi = 3.14159265358979323846;
    switch (kind) {
    case DIST_NORMAL:
        return log(exp(-(x - a) * (x - a) / (2 * b * b)) / (b * sqrt(2 * pi)));
    case DIST_UNIFORM:
        return x >= a && x < b ? log(1.0 / (b - a)) : -INFINITY;
    case DIST_POISSON:
        return x * log(a) - a - log_factorial_sum(x);
    case DIST_BERNOULLI:
        return log(x == 1.0 ? a : 1.0 - a);
    case DIST_BETA:
        return log(pow(x, a - 1) * pow(1 - x, b - 1) * tgamma(a + b) /
                   (tgamma(a) * tgamma(b)));
    case DIST_EXPONENTIAL:
        return log(a * exp(-a * x));
    case DIST_GAMMA:
        return log(pow(b, a) * pow(x, a - 1) * exp(-b * x) / tgamma(a));
    case DIST_LOGNORMAL:
        return log(exp(-(log(x) - a) * (log(x) - a) / (2 * b * b)) /
                   (x * b * sqrt(2 * pi)));
    case DIST_BINOMIAL:
        return log_choose_sum(a, x) + (x > 0 ? x * log(b) : 0.0) +
               (a - x > 0 ? (a - x) * log(1 - b) : 0.0);
    case DIST_WEIBULL:
        return log(b / a * pow(x / a, b - 1) * exp(-pow(x / a, b)));
    default:
        cr_assert_fail("no reference for kind %d", (int)kind);
        return NAN;
    }
}

static void ref_moments(dist_kind kind, double a, double b, double *mean, double *var)
{
    switch (kind) {
    case DIST_NORMAL: *mean = a; *var = b * b; break;
    case DIST_UNIFORM: *mean = (a + b) / 2; *var = (b - a) * (b - a) / 12; break;
    case DIST_POISSON: *mean = a; *var = a; break;
    case DIST_BERNOULLI: *mean = a; *var = a * (1 - a); break;
    case DIST_BETA:
        *mean = a / (a + b);
        *var = a * b / ((a + b) * (a + b) * (a + b + 1));
        break;
    case DIST_EXPONENTIAL: *mean = 1 / a; *var = 1 / (a * a); break;
    case DIST_GAMMA: *mean = a / b; *var = a / (b * b); break;
    case DIST_LOGNORMAL:
        *mean = exp(a + b * b / 2);
        *var = (exp(b * b) - 1) * exp(2 * a + b * b);
        break;
    case DIST_BINOMIAL: *mean = a * b; *var = a * b * (1 - b); break;
    case DIST_WEIBULL: {
        const double g1 = tgamma(1 + 1 / b), g2 = tgamma(1 + 2 / b);
        *mean = a * g1;
        *var = a * a * (g2 - g1 * g1);
        break;
    }
    default:
        cr_assert_fail("no reference for kind %d", (int)kind);
    }
}

typedef struct tcase {
    dist_kind kind;
    double p0[MAXN];
    size_t n0;
    double p1[MAXN];
    size_t n1;
    size_t k;
    double x[MAXN];
} tcase;

/* ---- kinds, init ---------------------------------------------------------- */

Test(dist, kind_tables)
{
    const char *names[] = {"None", "Normal", "Uniform", "Categorical", "Poisson",
                           "Bernoulli", "Beta", "Exponential", "Gamma",
                           "LogNormal", "Binomial", "Weibull"};
    const int np[] = {0, 2, 2, 1, 1, 1, 2, 1, 2, 2, 2, 2};
    const int disc[] = {0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0};
    for (int k = 0; k < DIST_KIND_COUNT; k++) {
        cr_assert_str_eq(dist_kind_name((dist_kind)k), names[k]);
        cr_assert_eq(dist_nparams((dist_kind)k), np[k], "nparams(%s)", names[k]);
        cr_assert_eq(dist_is_discrete((dist_kind)k), disc[k], "is_discrete(%s)", names[k]);
    }
    cr_assert_str_eq(dist_kind_name(DIST_KIND_COUNT), "None");
    cr_assert_str_eq(dist_kind_name((dist_kind)-1), "None");
    cr_assert_str_eq(dist_kind_name((dist_kind)99), "None");
    cr_assert_eq(dist_nparams(DIST_KIND_COUNT), 0);
    cr_assert_eq(dist_nparams((dist_kind)-3), 0);
}

Test(dist, init_broadcasts)
{
    const double one[] = {2.0}, four[] = {1, 2, 3, 4};
    dist d;
    char why[128];
    cr_assert_eq(dist_init(&d, DIST_NORMAL, one, 1, four, 4, 0, why, sizeof why), 0);
    cr_assert_eq(d.n, 4);
    cr_assert_eq(d.k, 0);
    cr_assert(d.p0 == one && d.n0 == 1 && d.p1 == four && d.n1 == 4);
    cr_assert_eq(dist_init(&d, DIST_GAMMA, four, 4, one, 1, 0, why, sizeof why), 0);
    cr_assert_eq(d.n, 4);
    cr_assert_eq(dist_init(&d, DIST_UNIFORM, four, 4, four, 4, 0, why, sizeof why), 0);
    cr_assert_eq(d.n, 4);
    cr_assert_eq(dist_init(&d, DIST_BETA, one, 1, one, 1, 0, why, sizeof why), 0);
    cr_assert_eq(d.n, 1);
    /* one-parameter kinds: n = n0, any second parameter is ignored */
    cr_assert_eq(dist_init(&d, DIST_POISSON, four, 4, NULL, 0, 0, why, sizeof why), 0);
    cr_assert_eq(d.n, 4);
    cr_assert(d.p1 == NULL && d.n1 == 0);
    cr_assert_eq(dist_init(&d, DIST_EXPONENTIAL, four, 3, one, 1, 0, why, sizeof why), 0);
    cr_assert_eq(d.n, 3);
    cr_assert(d.p1 == NULL && d.n1 == 0);
    /* Categorical: n = n0 / k */
    const double w[6] = {1, 1, 1, 1, 1, 1};
    cr_assert_eq(dist_init(&d, DIST_CATEGORICAL, w, 6, NULL, 0, 3, why, sizeof why), 0);
    cr_assert_eq(d.n, 2);
    cr_assert_eq(d.k, 3);
    cr_assert_eq(dist_init(&d, DIST_CATEGORICAL, w, 6, NULL, 0, 6, why, sizeof why), 0);
    cr_assert_eq(d.n, 1);
    cr_assert_eq(dist_init(&d, DIST_CATEGORICAL, w, 6, NULL, 0, 1, why, sizeof why), 0);
    cr_assert_eq(d.n, 6);
}

Test(dist, init_rejects_bad_shapes)
{
    const double v[4] = {1, 2, 3, 4};
    dist d;
    char why[160];

    cr_assert_eq(dist_init(&d, DIST_NORMAL, v, 3, v, 2, 0, why, sizeof why), -1);
    cr_assert(strstr(why, "mean") && strstr(why, "stddev") && strstr(why, "3") &&
              strstr(why, "2"), "reason: %s", why);
    cr_assert_eq(d.kind, DIST_NONE);

    cr_assert_eq(dist_init(&d, DIST_NORMAL, v, 0, v, 2, 0, why, sizeof why), -1);
    cr_assert(strstr(why, "mean"), "reason: %s", why);
    cr_assert_eq(dist_init(&d, DIST_WEIBULL, v, 2, v, 0, 0, why, sizeof why), -1);
    cr_assert(strstr(why, "concentration"), "reason: %s", why);
    cr_assert_eq(dist_init(&d, DIST_WEIBULL, v, 2, NULL, 2, 0, why, sizeof why), -1);
    cr_assert_eq(dist_init(&d, DIST_POISSON, v, 0, NULL, 0, 0, why, sizeof why), -1);
    cr_assert(strstr(why, "rate"), "reason: %s", why);

    cr_assert_eq(dist_init(&d, DIST_CATEGORICAL, v, 4, NULL, 0, 0, why, sizeof why), -1);
    cr_assert(strstr(why, "Categorical"), "reason: %s", why);
    cr_assert_eq(dist_init(&d, DIST_CATEGORICAL, v, 4, NULL, 0, 3, why, sizeof why), -1);
    cr_assert(strstr(why, "4") && strstr(why, "3"), "reason: %s", why);
    cr_assert_eq(dist_init(&d, DIST_CATEGORICAL, v, 0, NULL, 0, 3, why, sizeof why), -1);

    cr_assert_eq(dist_init(&d, DIST_NONE, v, 1, v, 1, 0, why, sizeof why), -1);
    cr_assert(strstr(why, "kind"), "reason: %s", why);
    cr_assert_eq(dist_init(&d, DIST_KIND_COUNT, v, 1, v, 1, 0, why, sizeof why), -1);
    cr_assert_eq(dist_init(&d, (dist_kind)-1, v, 1, v, 1, 0, NULL, 0), -1);

    /* a reason longer than the buffer is truncated, still terminated */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    cr_assert_eq(dist_init(&d, DIST_NORMAL, v, 3, v, 2, 0, tiny, sizeof tiny), -1);
    cr_assert_eq(strlen(tiny), sizeof tiny - 1);
}

/* ---- validation ------------------------------------------------------------ */

typedef struct vcase {
    dist_kind kind;
    double p0[6];
    size_t n0;
    double p1[6];
    size_t n1;
    size_t k;
    const char *want[3]; /* substrings the reason must contain */
} vcase;

Test(dist, validate_rejects_with_reasons)
{
    const double inf = INFINITY, nan = NAN;
    const vcase cases[] = {
        {DIST_NORMAL, {0, 0, 0}, 3, {1, 1, -1}, 3, 0, {"Normal", "stddev[2] = -1", "> 0"}},
        {DIST_NORMAL, {0}, 1, {0}, 1, 0, {"stddev[0] = 0", "> 0"}},
        {DIST_NORMAL, {nan}, 1, {1}, 1, 0, {"mean[0]", "NaN"}},
        {DIST_NORMAL, {0, inf}, 2, {1}, 1, 0, {"mean[1]", "inf", "finite"}},
        {DIST_NORMAL, {0}, 1, {-inf}, 1, 0, {"stddev[0]", "finite"}},
        {DIST_UNIFORM, {0, 2}, 2, {1, 1}, 2, 0, {"low[1] = 2", "high[1] = 1"}},
        {DIST_UNIFORM, {3}, 1, {4, 3}, 2, 0, {"low[0] = 3", "high[1] = 3"}},
        {DIST_UNIFORM, {nan}, 1, {1}, 1, 0, {"low[0]", "NaN"}},
        {DIST_UNIFORM, {0}, 1, {inf}, 1, 0, {"high[0]", "finite"}},
        {DIST_CATEGORICAL, {0.5, 0.5, 0, 0}, 4, {0}, 0, 2, {"Categorical", "row 1", "sums to 0"}},
        {DIST_CATEGORICAL, {0.5, -0.5, 1, 1}, 4, {0}, 0, 2, {"probs[1]", "-0.5", ">= 0"}},
        {DIST_CATEGORICAL, {1, 1, nan}, 3, {0}, 0, 3, {"probs[2]", "NaN"}},
        {DIST_CATEGORICAL, {1, inf}, 2, {0}, 0, 2, {"probs[1]", "inf"}},
        {DIST_CATEGORICAL, {1.5e308, 1.5e308}, 2, {0}, 0, 2, {"probs", "row 0"}},
        {DIST_POISSON, {1, -1}, 2, {0}, 0, 0, {"Poisson", "rate[1] = -1", ">= 0"}},
        {DIST_POISSON, {nan}, 1, {0}, 0, 0, {"rate[0]", "NaN"}},
        {DIST_POISSON, {inf}, 1, {0}, 0, 0, {"rate[0]", "finite"}},
        {DIST_BERNOULLI, {0.5, 1.5}, 2, {0}, 0, 0, {"Bernoulli", "probs[1] = 1.5", "[0, 1]"}},
        {DIST_BERNOULLI, {-0.1}, 1, {0}, 0, 0, {"probs[0] = -0.1"}},
        {DIST_BERNOULLI, {1.0000000000000002}, 1, {0}, 0, 0, {"probs[0] = 1.0000000000000002"}},
        {DIST_BETA, {0}, 1, {1}, 1, 0, {"Beta", "concentration1[0] = 0"}},
        {DIST_BETA, {1}, 1, {1, -2}, 2, 0, {"concentration0[1] = -2"}},
        {DIST_BETA, {1}, 1, {nan}, 1, 0, {"concentration0[0]", "NaN"}},
        {DIST_EXPONENTIAL, {0}, 1, {0}, 0, 0, {"Exponential", "rate[0] = 0"}},
        {DIST_EXPONENTIAL, {-inf}, 1, {0}, 0, 0, {"rate[0]", "finite"}},
        {DIST_GAMMA, {-1}, 1, {1}, 1, 0, {"Gamma", "concentration[0] = -1"}},
        {DIST_GAMMA, {1}, 1, {0}, 1, 0, {"rate[0] = 0"}},
        {DIST_LOGNORMAL, {0}, 1, {0}, 1, 0, {"LogNormal", "scale[0] = 0"}},
        {DIST_LOGNORMAL, {nan}, 1, {1}, 1, 0, {"loc[0]", "NaN"}},
        {DIST_BINOMIAL, {2.5}, 1, {0.5}, 1, 0, {"Binomial", "total_count[0] = 2.5", "integer"}},
        {DIST_BINOMIAL, {-1}, 1, {0.5}, 1, 0, {"total_count[0] = -1"}},
        {DIST_BINOMIAL, {3}, 1, {0.5, 1.1}, 2, 0, {"probs[1] = 1.1"}},
        {DIST_BINOMIAL, {inf}, 1, {0.5}, 1, 0, {"total_count[0]", "finite"}},
        {DIST_WEIBULL, {0}, 1, {1}, 1, 0, {"Weibull", "scale[0] = 0"}},
        {DIST_WEIBULL, {1}, 1, {-1}, 1, 0, {"concentration[0] = -1"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const vcase *c = &cases[i];
        dist d;
        char why[256] = "";
        cr_assert_eq(dist_init(&d, c->kind, c->p0, c->n0, c->n1 ? c->p1 : NULL, c->n1,
                               c->k, why, sizeof why),
                     0, "case %zu: init: %s", i, why);
        why[0] = '\0';
        cr_assert_eq(dist_validate(&d, why, sizeof why), -1,
                     "case %zu (%s) passed validation", i, dist_kind_name(c->kind));
        for (int j = 0; j < 3 && c->want[j]; j++)
            cr_assert(strstr(why, c->want[j]) != NULL,
                      "case %zu: reason \"%s\" lacks \"%s\"", i, why, c->want[j]);
        /* no buffer: still rejected, nothing written */
        cr_assert_eq(dist_validate(&d, NULL, 0), -1);
    }
}

Test(dist, validate_accepts_valid_parameters)
{
    const vcase cases[] = {
        {DIST_NORMAL, {-1e300, 0, 5}, 3, {1e-300}, 1, 0, {0}},
        {DIST_UNIFORM, {-1, 0}, 2, {1, 1e-300}, 2, 0, {0}},
        {DIST_CATEGORICAL, {0, 1, 0, 0, 0, 3}, 6, {0}, 0, 3, {0}},
        {DIST_POISSON, {0, 3.5, 1e9}, 3, {0}, 0, 0, {0}},
        {DIST_BERNOULLI, {0, 0.5, 1}, 3, {0}, 0, 0, {0}},
        {DIST_BETA, {0.01}, 1, {100, 1}, 2, 0, {0}},
        {DIST_EXPONENTIAL, {1e-10, 5}, 2, {0}, 0, 0, {0}},
        {DIST_GAMMA, {0.1, 100}, 2, {2}, 1, 0, {0}},
        {DIST_LOGNORMAL, {-3}, 1, {0.5}, 1, 0, {0}},
        {DIST_BINOMIAL, {0, 1, 1e6}, 3, {0, 1, 0.5}, 3, 0, {0}},
        {DIST_WEIBULL, {1}, 1, {0.3, 7}, 2, 0, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const vcase *c = &cases[i];
        dist d;
        char why[256] = "";
        cr_assert_eq(dist_init(&d, c->kind, c->p0, c->n0, c->n1 ? c->p1 : NULL, c->n1,
                               c->k, why, sizeof why),
                     0, "case %zu: init: %s", i, why);
        cr_assert_eq(dist_validate(&d, why, sizeof why), 0, "case %zu (%s): %s", i,
                     dist_kind_name(c->kind), why);
    }
}

Test(dist, validate_rejects_unknown_kind)
{
    const double v[1] = {1};
    dist d = {.kind = DIST_NONE, .n = 1, .p0 = v, .n0 = 1};
    char why[64];
    cr_assert_eq(dist_validate(&d, why, sizeof why), -1);
    cr_assert(strstr(why, "kind"), "reason: %s", why);
}

/* ---- log-density ------------------------------------------------------------ */

static void check_log_prob_case(const tcase *c, size_t ci)
{
    const dist d = make(c->kind, c->p0, c->n0, c->n1 ? c->p1 : NULL, c->n1, c->k);
    double each[MAXN];
    dist_log_prob_each(&d, c->x, each);
    double sum = 0.0;
    for (size_t i = 0; i < d.n; i++) {
        double want;
        if (c->kind == DIST_CATEGORICAL) {
            const double *w = c->p0 + i * c->k;
            double s = 0.0;
            for (size_t j = 0; j < c->k; j++)
                s += w[j];
            want = log(w[(size_t)c->x[i]] / s);
        } else {
            want = ref_log_prob(c->kind, at(c->p0, c->n0, i),
                                c->n1 ? at(c->p1, c->n1, i) : 0.0, c->x[i]);
        }
        cr_assert(close_to(each[i], want, 1e-11, 1e-11),
                  "case %zu (%s) element %zu: log_prob %.17g, reference %.17g", ci,
                  dist_kind_name(c->kind), i, each[i], want);
        sum += each[i];
    }
    const double total = dist_log_prob(&d, c->x);
    cr_assert(close_to(total, sum, 1e-14, 1e-14), "case %zu: sum %.17g vs %.17g", ci,
              total, sum);
}

Test(dist, log_prob_matches_closed_forms)
{
    const tcase cases[] = {
        {DIST_NORMAL, {0, 1.5, -3}, 3, {1, 0.2, 10}, 3, 0, {0.3, 1.0, -30}},
        {DIST_NORMAL, {2}, 1, {0.5, 1, 2, 4}, 4, 0, {2, 2.5, -1, 9}},
        {DIST_NORMAL, {-1, 0, 1, 2}, 4, {3}, 1, 0, {0, 0, 0, 0}},
        {DIST_UNIFORM, {-1, 0, 5}, 3, {1, 0.001, 50}, 3, 0, {-1, 0.0009, 49.99}},
        {DIST_UNIFORM, {0}, 1, {1, 2, 4}, 3, 0, {0.5, 1.5, 0}},
        {DIST_CATEGORICAL, {1, 2, 3, 4}, 4, {0}, 0, 4, {2}},
        {DIST_CATEGORICAL, {0.2, 0.3, 0.5, 5, 0, 5}, 6, {0}, 0, 3, {1, 2}},
        {DIST_CATEGORICAL, {3, 1, 7, 7, 1e-3, 2}, 6, {0}, 0, 2, {0, 1, 1}},
        {DIST_POISSON, {0.5, 3, 40, 1000}, 4, {0}, 0, 0, {0, 2, 35, 990}},
        {DIST_POISSON, {7.25}, 1, {0}, 0, 0, {11}},
        {DIST_BERNOULLI, {0.3, 0.3, 0, 1, 0.99}, 5, {0}, 0, 0, {1, 0, 0, 1, 0}},
        {DIST_BETA, {2, 0.5, 10, 1}, 4, {3, 0.5, 1.5, 1}, 4, 0, {0.4, 0.01, 0.999, 0.7}},
        {DIST_BETA, {1}, 1, {2.5}, 1, 0, {0}},
        {DIST_BETA, {3}, 1, {1}, 1, 0, {1}},
        {DIST_EXPONENTIAL, {0.5, 2, 100}, 3, {0}, 0, 0, {3, 0, 0.01}},
        {DIST_GAMMA, {2, 0.5, 30, 1}, 4, {1, 3, 0.5, 2}, 4, 0, {1.5, 0.01, 55, 0}},
        {DIST_GAMMA, {4}, 1, {0.1, 1, 10}, 3, 0, {30, 2, 0.5}},
        {DIST_LOGNORMAL, {0, 1, -2}, 3, {1, 0.3, 2}, 3, 0, {1, 2.5, 1e-3}},
        {DIST_BINOMIAL, {10, 10, 10, 100, 0}, 5, {0.3, 0.3, 0.3, 0.9, 0.5}, 5, 0, {3, 0, 10, 95, 0}},
        {DIST_BINOMIAL, {5}, 1, {0, 1}, 2, 0, {0, 5}},
        {DIST_BINOMIAL, {1000}, 1, {0.25}, 1, 0, {240}},
        {DIST_WEIBULL, {1, 2, 0.5, 3}, 4, {1, 0.5, 5, 1}, 4, 0, {0.5, 3, 0.4, 0}},
        {DIST_WEIBULL, {1.5}, 1, {2.5}, 1, 0, {1.2}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_log_prob_case(&cases[i], i);
}

Test(dist, log_prob_boundary_limits)
{
    /* the density's limit at a boundary of the support */
    const double inf = INFINITY;
    const struct {
        dist_kind kind;
        double a, b, x, want;
    } cases[] = {
        {DIST_BETA, 1, 3, 0, log(3.0)},      /* density b at 0 */
        {DIST_BETA, 2, 1, 1, log(2.0)},      /* density a at 1 */
        {DIST_BETA, 2, 3, 0, -inf},          /* vanishes */
        {DIST_BETA, 0.5, 3, 0, inf},         /* diverges */
        {DIST_BETA, 3, 0.5, 1, inf},
        {DIST_GAMMA, 1, 2.5, 0, log(2.5)},   /* exponential at 0 */
        {DIST_GAMMA, 2, 1, 0, -inf},
        {DIST_GAMMA, 0.5, 1, 0, inf},
        {DIST_WEIBULL, 2, 1, 0, -log(2.0)},  /* exponential, rate 1/2 */
        {DIST_WEIBULL, 1, 2, 0, -inf},
        {DIST_WEIBULL, 1, 0.5, 0, inf},
        {DIST_EXPONENTIAL, 3, 0, 0, log(3.0)},
        {DIST_UNIFORM, -2, 2, -2, -log(4.0)},
        {DIST_POISSON, 0, 0, 0, 0.0},        /* rate 0: all mass at 0 */
        {DIST_BERNOULLI, 0, 0, 0, 0.0},
        {DIST_BERNOULLI, 1, 0, 1, 0.0},
        {DIST_BINOMIAL, 7, 0, 0, 0.0},
        {DIST_BINOMIAL, 7, 1, 7, 0.0},
        {DIST_BINOMIAL, 0, 0.3, 0, 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const double a = cases[i].a, b = cases[i].b;
        const dist d = make(cases[i].kind, &a, 1, &b, 1, 0);
        const double got = dist_log_prob(&d, &cases[i].x);
        cr_assert(close_to(got, cases[i].want, 1e-14, 1e-15),
                  "case %zu (%s): %.17g, want %.17g", i, dist_kind_name(cases[i].kind),
                  got, cases[i].want);
    }
}

Test(dist, log_prob_outside_support_is_minus_inf)
{
    const double inf = INFINITY;
    const struct {
        dist_kind kind;
        double a, b, x;
    } cases[] = {
        {DIST_NORMAL, 0, 1, inf},     {DIST_NORMAL, 0, 1, -inf},
        {DIST_UNIFORM, 0, 1, 1},      {DIST_UNIFORM, 0, 1, -1e-300},
        {DIST_UNIFORM, 0, 1, 7},      {DIST_POISSON, 3, 0, 2.5},
        {DIST_POISSON, 3, 0, -1},     {DIST_POISSON, 0, 0, 1},
        {DIST_POISSON, 3, 0, inf},    {DIST_BERNOULLI, 0.5, 0, 0.5},
        {DIST_BERNOULLI, 0.5, 0, 2},  {DIST_BERNOULLI, 0.5, 0, -1},
        {DIST_BERNOULLI, 0, 0, 1},    {DIST_BERNOULLI, 1, 0, 0},
        {DIST_BETA, 2, 2, -0.1},      {DIST_BETA, 2, 2, 1.1},
        {DIST_EXPONENTIAL, 1, 0, -1e-9}, {DIST_EXPONENTIAL, 1, 0, inf},
        {DIST_GAMMA, 2, 1, -1},       {DIST_GAMMA, 2, 1, inf},
        {DIST_LOGNORMAL, 0, 1, 0},    {DIST_LOGNORMAL, 0, 1, -2},
        {DIST_LOGNORMAL, 0, 1, inf},  {DIST_BINOMIAL, 10, 0.5, 11},
        {DIST_BINOMIAL, 10, 0.5, -1}, {DIST_BINOMIAL, 10, 0.5, 3.5},
        {DIST_BINOMIAL, 10, 0, 1},    {DIST_BINOMIAL, 10, 1, 9},
        {DIST_WEIBULL, 1, 2, -0.5},   {DIST_WEIBULL, 1, 2, inf},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const double a = cases[i].a, b = cases[i].b;
        const dist d = make(cases[i].kind, &a, 1, &b, 1, 0);
        const double got = dist_log_prob(&d, &cases[i].x);
        cr_assert(got == -INFINITY, "case %zu (%s, x = %g): %g", i,
                  dist_kind_name(cases[i].kind), cases[i].x, got);
        /* and the gradient is 0 there */
        double g0 = NAN, g1 = NAN;
        dist_grad_log_prob(&d, &cases[i].x, &g0, &g1);
        cr_assert(g0 == 0.0 && (dist_nparams(d.kind) == 1 || g1 == 0.0),
                  "case %zu: gradient (%g, %g) outside the support", i, g0, g1);
    }

    /* Categorical: index >= k, negative, fractional, zero-weight category */
    const double w[3] = {1, 0, 2};
    const dist c = make(DIST_CATEGORICAL, w, 3, NULL, 0, 3);
    const double xs[] = {3, -1, 0.5, 1, inf};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        cr_assert(dist_log_prob(&c, &xs[i]) == -INFINITY, "categorical x = %g", xs[i]);
        double g[3] = {NAN, NAN, NAN};
        dist_grad_log_prob(&c, &xs[i], g, NULL);
        cr_assert(g[0] == 0.0 && g[1] == 0.0 && g[2] == 0.0, "categorical grad x = %g", xs[i]);
    }

    /* one element outside makes the sum -inf; the others stay finite */
    const double rate1[3] = {1, 1, 1};
    const dist e = make(DIST_EXPONENTIAL, rate1, 3, NULL, 0, 0);
    const double x3[3] = {1, -1, 2};
    double each[3];
    dist_log_prob_each(&e, x3, each);
    cr_assert(dist_log_prob(&e, x3) == -INFINITY);
    cr_assert(each[0] == -1.0 && each[1] == -INFINITY && each[2] == -2.0);
}

Test(dist, log_prob_nan_value_propagates)
{
    const double x = NAN;
    for (int k = 1; k < DIST_KIND_COUNT; k++) {
        const double p0 = k == DIST_BINOMIAL ? 4 : k == DIST_UNIFORM ? 0 : 0.5;
        const double p1 = k == DIST_UNIFORM ? 1 : 0.5;
        const dist d = make((dist_kind)k, &p0, 1, &p1, 1, k == DIST_CATEGORICAL ? 1 : 0);
        cr_assert(isnan(dist_log_prob(&d, &x)), "%s", dist_kind_name(d.kind));
        double g0 = 0, g1 = 0;
        dist_grad_log_prob(&d, &x, &g0, &g1);
        cr_assert(isnan(g0), "%s gradient", dist_kind_name(d.kind));
    }
}

Test(dist, uniform_with_overflowing_width)
{
    const double lo = -1e308, hi = 1.5e308;
    const dist d = make(DIST_UNIFORM, &lo, 1, &hi, 1, 0);
    const double x = 0.0;
    /* width 2.5e308 overflows a double; log of it does not */
    const double want = -(log(2.5) + 308 * log(10.0));
    cr_assert(close_to(dist_log_prob(&d, &x), want, 1e-13, 0), "%.17g vs %.17g",
              dist_log_prob(&d, &x), want);
    rng r;
    rng_seed(&r, 1, 1);
    for (int i = 0; i < 10000; i++) {
        double v;
        dist_sample(&d, &r, &v);
        cr_assert(v >= lo && v < hi && isfinite(v), "%g", v);
    }
    double m;
    dist_mean(&d, &m);
    cr_assert(close_to(m, 0.25e308, 1e-15, 0));
}

Test(dist, uniform_sample_never_hits_high)
{
    /* one ulp wide: low + w*u rounds to high about half the time */
    const double lo = 1.0, hi = nextafter(1.0, 2.0);
    const dist d = make(DIST_UNIFORM, &lo, 1, &hi, 1, 0);
    rng r;
    rng_seed(&r, 5, 0);
    for (int i = 0; i < 10000; i++) {
        double v;
        dist_sample(&d, &r, &v);
        cr_assert(v == lo, "%a", v);
    }
}

/* ---- sampling and moments ------------------------------------------------- */

static void check_sample_moments(const tcase *c, uint64_t seed)
{
    enum { N = 200000 };
    const dist d = make(c->kind, c->p0, c->n0, c->n1 ? c->p1 : NULL, c->n1, c->k);
    const size_t n = d.n;
    double mean[MAXN], var[MAXN];
    dist_mean(&d, mean);
    dist_variance(&d, var);

    /* dist_mean / dist_variance against closed forms computed here */
    for (size_t i = 0; i < n; i++) {
        double rm, rv;
        if (c->kind == DIST_CATEGORICAL) {
            const double *w = c->p0 + i * c->k;
            double s = 0, e1 = 0, e2 = 0;
            for (size_t j = 0; j < c->k; j++) {
                s += w[j];
                e1 += (double)j * w[j];
                e2 += (double)(j * j) * w[j];
            }
            rm = e1 / s;
            rv = e2 / s - rm * rm;
        } else {
            ref_moments(c->kind, at(c->p0, c->n0, i), c->n1 ? at(c->p1, c->n1, i) : 0,
                        &rm, &rv);
        }
        cr_assert(close_to(mean[i], rm, 1e-12, 1e-14), "%s[%zu] mean %.17g vs %.17g",
                  dist_kind_name(c->kind), i, mean[i], rm);
        cr_assert(close_to(var[i], rv, 1e-11, 1e-14), "%s[%zu] variance %.17g vs %.17g",
                  dist_kind_name(c->kind), i, var[i], rv);
    }

    double *xs = malloc(N * n * sizeof *xs);
    cr_assert(xs != NULL);
    rng r;
    rng_seed(&r, seed, 0);
    for (size_t s = 0; s < N; s++) {
        dist_sample(&d, &r, xs + s * n);
        /* every draw is inside the support */
        const double lp = dist_log_prob(&d, xs + s * n);
        if (!(lp > -INFINITY))
            cr_assert_fail("%s: draw %zu has log_prob %g", dist_kind_name(c->kind), s, lp);
    }
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (size_t s = 0; s < N; s++)
            sum += xs[s * n + i];
        const double m = sum / N;
        double m2 = 0.0, m4 = 0.0;
        for (size_t s = 0; s < N; s++) {
            const double dv = xs[s * n + i] - m;
            m2 += dv * dv;
            m4 += dv * dv * dv * dv;
        }
        const double sv = m2 / (N - 1);
        m4 /= N;
        const double se_m = sqrt(var[i] / N);
        cr_assert(fabs(m - mean[i]) <= Z * se_m,
                  "%s[%zu]: sample mean %.8g, mean %.8g (%.2f SE)", dist_kind_name(c->kind),
                  i, m, mean[i], fabs(m - mean[i]) / se_m);
        const double se_v = sqrt(fmax(m4 - sv * sv * (N - 3.0) / (N - 1.0), 0.0) / N);
        cr_assert(fabs(sv - var[i]) <= Z * se_v,
                  "%s[%zu]: sample variance %.8g, variance %.8g (%.2f SE)",
                  dist_kind_name(c->kind), i, sv, var[i], fabs(sv - var[i]) / se_v);
    }
    free(xs);
}

Test(dist, sample_moments_all_kinds)
{
    const tcase cases[] = {
        {DIST_NORMAL, {1, -2}, 2, {2, 0.1}, 2, 0, {0}},
        {DIST_UNIFORM, {-1, 3}, 2, {1, 3.5}, 2, 0, {0}},
        {DIST_CATEGORICAL, {1, 2, 3, 4, 0, 5, 0, 1}, 8, {0}, 0, 4, {0}},
        {DIST_POISSON, {4, 150, 0}, 3, {0}, 0, 0, {0}},
        {DIST_BERNOULLI, {0.3, 0.95}, 2, {0}, 0, 0, {0}},
        {DIST_BETA, {2, 0.4}, 2, {3, 0.6}, 2, 0, {0}},
        {DIST_EXPONENTIAL, {0.5, 8}, 2, {0}, 0, 0, {0}},
        {DIST_GAMMA, {2, 0.3}, 2, {4}, 1, 0, {0}},
        {DIST_LOGNORMAL, {0, 1}, 2, {0.25, 0.5}, 2, 0, {0}},
        {DIST_BINOMIAL, {10, 500, 3}, 3, {0.3, 0.02, 1}, 3, 0, {0}},
        {DIST_WEIBULL, {1, 2}, 2, {1.5, 0.7}, 2, 0, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_sample_moments(&cases[i], 1000 + i);
}

Test(dist, categorical_sample_frequencies)
{
    enum { N = 400000 };
    const double w[8] = {1, 0, 3, 4, /* row 1: */ 0, 0, 2, 0};
    const dist d = make(DIST_CATEGORICAL, w, 8, NULL, 0, 4);
    rng r;
    rng_seed(&r, 77, 3);
    size_t counts[2][4] = {{0}};
    for (size_t s = 0; s < N; s++) {
        double x[2];
        dist_sample(&d, &r, x);
        cr_assert(x[0] >= 0 && x[0] < 4 && x[0] == floor(x[0]));
        counts[0][(size_t)x[0]]++;
        counts[1][(size_t)x[1]]++;
    }
    cr_assert_eq(counts[0][1], 0, "zero-weight category drawn");
    cr_assert_eq(counts[1][2], N, "the only positive category of row 1");
    for (size_t j = 0; j < 4; j++) {
        const double p = w[j] / 8.0;
        const double f = (double)counts[0][j] / N;
        cr_assert(fabs(f - p) <= Z * sqrt(p * (1 - p) / N) + 1e-300,
                  "category %zu: frequency %g, probability %g", j, f, p);
    }
}

Test(dist, degenerate_parameters_sample_exactly)
{
    rng r;
    rng_seed(&r, 3, 3);
    const double p[2] = {0, 1}, rate0 = 0, n[2] = {6, 6};
    const dist bern = make(DIST_BERNOULLI, p, 2, NULL, 0, 0);
    const dist pois = make(DIST_POISSON, &rate0, 1, NULL, 0, 0);
    const dist bin = make(DIST_BINOMIAL, n, 2, p, 2, 0);
    for (int i = 0; i < 1000; i++) {
        double x[2];
        dist_sample(&bern, &r, x);
        cr_assert(x[0] == 0 && x[1] == 1);
        dist_sample(&pois, &r, x);
        cr_assert(x[0] == 0);
        dist_sample(&bin, &r, x);
        cr_assert(x[0] == 0 && x[1] == 6);
    }
}

Test(dist, sample_is_reproducible)
{
    const double a[3] = {1, 2, 3}, b[1] = {0.5};
    const dist d = make(DIST_GAMMA, a, 3, b, 1, 0);
    rng r1, r2;
    rng_seed(&r1, 99, 4);
    rng_seed(&r2, 99, 4);
    for (int i = 0; i < 100; i++) {
        double x1[3], x2[3];
        dist_sample(&d, &r1, x1);
        dist_sample(&d, &r2, x2);
        cr_assert(memcmp(x1, x2, sizeof x1) == 0);
    }
}

Test(dist, weibull_variance_for_large_concentration)
{
    /* k = 1e6: G(1+2/k) - G(1+1/k)^2 ~ 1.6e-12 is the difference of two
     * numbers near 1, so the naive formula keeps only ~4 digits. */
    const double scale = 2.0, k = 1e6;
    const dist d = make(DIST_WEIBULL, &scale, 1, &k, 1, 0);
    double v;
    dist_variance(&d, &v);
    /* lgamma(1+2e) - 2 lgamma(1+e) = zeta(2) e^2 - 2 zeta(3) e^3 + O(e^4) and
     * G(1+e)^2 = 1 - 2 gamma e + O(e^2), so to relative O(e^2) = 1e-12: */
    const double e = 1 / k, z2 = 1.6449340668482264, z3 = 1.2020569031595943;
    const double eg = 0.57721566490153286;
    const double want = scale * scale * (z2 * e * e - 2 * z3 * e * e * e) * (1 - 2 * eg * e);
    cr_assert(close_to(v, want, 1e-9, 0), "%.17g vs %.17g", v, want);
    /* and at a moderate k the series and lgamma routes agree with tgamma */
    const double ks[] = {999.0, 1000.0, 1001.0, 50.0, 3.0};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        const dist w = make(DIST_WEIBULL, &scale, 1, &ks[i], 1, 0);
        double var;
        dist_variance(&w, &var);
        const double g1 = tgamma(1 + 1 / ks[i]), g2 = tgamma(1 + 2 / ks[i]);
        const double ref = scale * scale * (g2 - g1 * g1);
        /* tgamma's difference loses log10(1/(pi^2/6/k^2)) digits */
        cr_assert(close_to(var, ref, 1e-15 * 4 * ks[i] * ks[i], 0),
                  "k = %g: %.17g vs %.17g", ks[i], var, ref);
    }
}

/* ---- gradients -------------------------------------------------------------- */

static double lp1(dist_kind kind, double a, double b, double x)
{
    const dist d = make(kind, &a, 1, &b, 1, 0);
    return dist_log_prob(&d, &x);
}

static double fd_step(double theta)
{
    return 1e-5 * fmax(fabs(theta), 1e-2);
}

/* A probability's step must also be small next to 1 - p, or the third
 * derivative of log(1 - p), 2/(1-p)^3, swamps the central difference. */
static double fd_step_prob(double p)
{
    return 1e-5 * fmin(p, 1.0 - p);
}

static void check_grad_point(dist_kind kind, double a, double b, double x)
{
    const dist d = make(kind, &a, 1, &b, 1, 0);
    double g0 = NAN, g1 = NAN;
    dist_grad_log_prob(&d, &x, &g0, &g1);
    const int two = dist_nparams(kind) == 2;
    const char *name = dist_kind_name(kind);

    if (kind == DIST_BINOMIAL) {
        cr_assert_eq(g0, 0.0, "Binomial total_count gradient %g", g0);
    } else {
        const double h = kind == DIST_BERNOULLI ? fd_step_prob(a) : fd_step(a);
        const double fd = (lp1(kind, a + h, b, x) - lp1(kind, a - h, b, x)) / (2 * h);
        cr_assert(fabs(g0 - fd) <= 1e-6 + 1e-5 * fabs(g0),
                  "%s(%g, %g) at %g: d/dp0 = %.12g, finite difference %.12g", name, a, b,
                  x, g0, fd);
    }
    if (two) {
        const double h = kind == DIST_BINOMIAL ? fd_step_prob(b) : fd_step(b);
        const double fd = (lp1(kind, a, b + h, x) - lp1(kind, a, b - h, x)) / (2 * h);
        cr_assert(fabs(g1 - fd) <= 1e-6 + 1e-5 * fabs(g1),
                  "%s(%g, %g) at %g: d/dp1 = %.12g, finite difference %.12g", name, a, b,
                  x, g1, fd);
    }
}

Test(dist, gradients_match_finite_differences)
{
    const struct {
        dist_kind kind;
        double a, b, x;
    } pts[] = {
        {DIST_NORMAL, 0, 1, 0.3},        {DIST_NORMAL, 2, 0.5, -1},
        {DIST_NORMAL, -3, 7, 10},        {DIST_NORMAL, 1, 1, 1},
        {DIST_UNIFORM, -1, 1, 0},        {DIST_UNIFORM, 2, 2.5, 2.1},
        {DIST_UNIFORM, -10, 30, 29},
        {DIST_POISSON, 3, 0, 0},         {DIST_POISSON, 3, 0, 5},
        {DIST_POISSON, 0.2, 0, 2},       {DIST_POISSON, 500, 0, 480},
        {DIST_BERNOULLI, 0.3, 0, 1},     {DIST_BERNOULLI, 0.3, 0, 0},
        {DIST_BERNOULLI, 0.999, 0, 0},
        {DIST_BETA, 2, 3, 0.4},          {DIST_BETA, 0.5, 0.5, 0.01},
        {DIST_BETA, 10, 1.5, 0.95},      {DIST_BETA, 0.1, 7, 0.2},
        {DIST_BETA, 30, 40, 0.45},
        {DIST_EXPONENTIAL, 0.5, 0, 3},   {DIST_EXPONENTIAL, 20, 0, 0.01},
        {DIST_GAMMA, 2, 1, 1.5},         {DIST_GAMMA, 0.5, 3, 0.01},
        {DIST_GAMMA, 30, 0.5, 55},       {DIST_GAMMA, 0.05, 2, 1e-4},
        {DIST_GAMMA, 7.5, 12, 0.7},
        {DIST_LOGNORMAL, 0, 1, 1},       {DIST_LOGNORMAL, 1, 0.3, 2.5},
        {DIST_LOGNORMAL, -2, 2, 1e-3},
        {DIST_BINOMIAL, 10, 0.3, 3},     {DIST_BINOMIAL, 10, 0.3, 0},
        {DIST_BINOMIAL, 10, 0.3, 10},    {DIST_BINOMIAL, 100, 0.9, 95},
        {DIST_BINOMIAL, 40, 0.995, 39},
        {DIST_WEIBULL, 1, 1, 0.5},       {DIST_WEIBULL, 2, 0.5, 3},
        {DIST_WEIBULL, 0.5, 5, 0.4},     {DIST_WEIBULL, 3, 2.2, 7},
    };
    for (size_t i = 0; i < sizeof pts / sizeof pts[0]; i++)
        check_grad_point(pts[i].kind, pts[i].a, pts[i].b, pts[i].x);
}

Test(dist, categorical_gradient_matches_finite_differences)
{
    /* two rows of k = 3 unnormalised weights */
    double w[6] = {0.2, 1.5, 3.0, 4.0, 0.5, 0.01};
    const double x[2] = {1, 2};
    const dist d = make(DIST_CATEGORICAL, w, 6, NULL, 0, 3);
    double g[6];
    dist_grad_log_prob(&d, x, g, NULL);
    for (size_t j = 0; j < 6; j++) {
        const double keep = w[j], h = fd_step(keep);
        w[j] = keep + h;
        const double up = dist_log_prob(&d, x); /* d borrows w */
        w[j] = keep - h;
        const double down = dist_log_prob(&d, x);
        w[j] = keep;
        const double fd = (up - down) / (2 * h);
        cr_assert(fabs(g[j] - fd) <= 1e-6 + 1e-5 * fabs(g[j]),
                  "weight %zu: gradient %.12g, finite difference %.12g", j, g[j], fd);
        /* and the closed form [j == x]/w_x - 1/sum w */
        const size_t row = j / 3, col = j % 3;
        const double s = w[row * 3] + w[row * 3 + 1] + w[row * 3 + 2];
        const double want = (col == (size_t)x[row] ? 1.0 / w[j] : 0.0) - 1.0 / s;
        cr_assert(close_to(g[j], want, 1e-14, 1e-15), "weight %zu: %.17g vs %.17g", j,
                  g[j], want);
    }
}

Test(dist, gradients_of_vectors_and_broadcasts)
{
    /* element gradients of a broadcast dist equal those of scalar dists */
    const double mean[1] = {0.5}, sd[4] = {0.5, 1, 2, 4}, x[4] = {1, -1, 3, 0};
    const dist d = make(DIST_NORMAL, mean, 1, sd, 4, 0);
    double g0[4], g1[4];
    dist_grad_log_prob(&d, x, g0, g1);
    for (size_t i = 0; i < 4; i++) {
        const dist e = make(DIST_NORMAL, mean, 1, &sd[i], 1, 0);
        double h0, h1;
        dist_grad_log_prob(&e, &x[i], &h0, &h1);
        cr_assert(g0[i] == h0 && g1[i] == h1, "element %zu", i);
        const double z = (x[i] - mean[0]) / sd[i];
        cr_assert(close_to(g0[i], z / sd[i], 1e-15, 0));
        cr_assert(close_to(g1[i], (z * z - 1) / sd[i], 1e-15, 1e-16));
    }
    const double rate[3] = {1, 2, 4}, xe[3] = {0.5, 0.25, 2};
    const dist ex = make(DIST_EXPONENTIAL, rate, 3, NULL, 0, 0);
    double ge[3];
    dist_grad_log_prob(&ex, xe, ge, NULL);
    for (size_t i = 0; i < 3; i++)
        cr_assert(close_to(ge[i], 1 / rate[i] - xe[i], 1e-15, 0), "element %zu", i);
}

Test(dist, gradient_edge_cases)
{
    double g0, g1;
    const double zero = 0.0, x0 = 0.0, n7 = 7, one = 1.0, x7 = 7;
    /* Poisson rate 0 at x = 0: log p = -rate, slope -1 */
    const dist pois = make(DIST_POISSON, &zero, 1, NULL, 0, 0);
    dist_grad_log_prob(&pois, &x0, &g0, NULL);
    cr_assert_eq(g0, -1.0);
    /* Binomial p = 0 at x = 0: log p = n log(1-p), slope -n */
    const dist b0 = make(DIST_BINOMIAL, &n7, 1, &zero, 1, 0);
    dist_grad_log_prob(&b0, &x0, &g0, &g1);
    cr_assert(g0 == 0.0 && g1 == -7.0, "(%g, %g)", g0, g1);
    /* p = 1 at x = n: log p = n log p, slope n */
    const dist b1 = make(DIST_BINOMIAL, &n7, 1, &one, 1, 0);
    dist_grad_log_prob(&b1, &x7, &g0, &g1);
    cr_assert(g0 == 0.0 && g1 == 7.0, "(%g, %g)", g0, g1);
    /* Bernoulli p = 0 at x = 0: log(1-p), slope -1 */
    const dist be = make(DIST_BERNOULLI, &zero, 1, NULL, 0, 0);
    dist_grad_log_prob(&be, &x0, &g0, NULL);
    cr_assert_eq(g0, -1.0);
}

Test(dist, digamma_through_gamma_gradient)
{
    /* Gamma(a, rate 1) at x = 1: d/da log p = -psi(a).  Reference values:
     * psi(n) = -gamma + H_{n-1}, psi(n + 1/2) = -gamma - 2 ln 2 + sum_{j<=n}
     * 2/(2j-1), and Gauss's values at 1/4, 3/4, 1/3. */
    const double eg = 0.57721566490153286061, ln2 = 0.69314718055994530942;
    const double pi = 3.14159265358979323846;
    struct {
        double a, psi;
    } ref[40];
    size_t m = 0;
    const int ns[] = {1, 2, 3, 5, 6, 7, 10, 20, 100, 1001};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        double h = 0.0;
        for (int j = ns[i] - 1; j >= 1; j--)
            h += 1.0 / j;
        ref[m].a = ns[i];
        ref[m++].psi = -eg + h;
    }
    const int hs[] = {0, 1, 2, 5, 6, 12, 40};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        double s = 0.0;
        for (int j = hs[i]; j >= 1; j--)
            s += 2.0 / (2 * j - 1);
        ref[m].a = hs[i] + 0.5;
        ref[m++].psi = -eg - 2 * ln2 + s;
    }
    ref[m].a = 0.25, ref[m++].psi = -eg - pi / 2 - 3 * ln2;
    ref[m].a = 0.75, ref[m++].psi = -eg + pi / 2 - 3 * ln2;
    ref[m].a = 1.0 / 3, ref[m++].psi = -eg - pi / (2 * sqrt(3.0)) - 1.5 * log(3.0);
    /* psi(x) = psi(x + 1) - 1/x at a tiny argument */
    ref[m].a = 1e-3, ref[m++].psi = (-eg + 1.0 / 1000 * (pi * pi / 6)) - 1000.0
        /* psi(1 + e) = -gamma + zeta(2) e - zeta(3) e^2 + ... */
        - 1.2020569031595942 * 1e-6 + 1.0823232337111382 * 1e-9;
    for (size_t i = 0; i < m; i++) {
        const double a = ref[i].a, rate = 1.0, x = 1.0;
        const dist d = make(DIST_GAMMA, &a, 1, &rate, 1, 0);
        double g0, g1;
        dist_grad_log_prob(&d, &x, &g0, &g1);
        cr_assert(close_to(-g0, ref[i].psi, 1e-12, 1e-14),
                  "psi(%.17g) = %.17g, reference %.17g (diff %.3g)", a, -g0, ref[i].psi,
                  -g0 - ref[i].psi);
    }
}
