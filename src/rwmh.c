/* rwmh.c — random-walk Metropolis–Hastings kernels (see rwmh.h). */
#include "rwmh.h"

#include <math.h>

/* Element i of d as a one-element distribution (parameters broadcast). */
static dist element(const dist *d, size_t i)
{
    dist e = *d;
    e.n = 1;
    if (d->kind == DIST_CATEGORICAL) {
        e.p0 = d->n0 == d->k ? d->p0 : d->p0 + i * d->k;
        e.n0 = d->k;
        return e;
    }
    e.p0 = d->n0 == 1 ? d->p0 : d->p0 + i;
    e.n0 = 1;
    if (d->p1) {
        e.p1 = d->n1 == 1 ? d->p1 : d->p1 + i;
        e.n1 = 1;
    }
    return e;
}

/* Fold y into [lo, hi] by reflection at both ends. */
static double reflect(double y, double lo, double hi)
{
    double w = hi - lo;
    if (!(w > 0)) return lo;
    double t = fmod(y - lo, 2 * w);
    if (t < 0) t += 2 * w;
    return t <= w ? lo + t : hi - (t - w);
}

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

double rwmh_propose(const dist *d, const double *x, rng *r, double *out)
{
    double log_ratio = 0;
    for (size_t i = 0; i < d->n; i++) {
        dist e = element(d, i);
        double m, v;
        switch (d->kind) {
        case DIST_NORMAL:
            out[i] = x[i] + e.p1[0] * rng_normal(r);
            break;
        case DIST_UNIFORM:
            out[i] = reflect(x[i] + 0.1 * (e.p1[0] - e.p0[0]) * rng_normal(r), e.p0[0], e.p1[0]);
            break;
        case DIST_BETA:
            dist_variance(&e, &v);
            out[i] = reflect(x[i] + sqrt(v) * rng_normal(r), 0.0, 1.0);
            break;
        case DIST_EXPONENTIAL:
        case DIST_GAMMA:
        case DIST_LOGNORMAL:
        case DIST_WEIBULL: {
            double s;
            if (d->kind == DIST_LOGNORMAL) {
                s = clamp(e.p1[0], 0.05, 1.0);
            } else {
                dist_mean(&e, &m);
                dist_variance(&e, &v);
                s = clamp(sqrt(v) / m, 0.05, 1.0);
            }
            /* A walk in log x: q(x'|x) = N(log x'; log x, s) / x'. */
            double lx = log(x[i] > 0 ? x[i] : 1e-300);
            double ly = lx + s * rng_normal(r);
            out[i] = exp(ly);
            log_ratio += ly - lx;
            break;
        }
        case DIST_POISSON:
        case DIST_BINOMIAL: {
            dist_variance(&e, &v);
            uint64_t w = (uint64_t)fmax(1.0, round(sqrt(v) / 2));
            uint64_t u = rng_below(r, 2 * w);
            double step = u < w ? -(double)(u + 1) : (double)(u - w + 1);
            out[i] = x[i] + step;
            break;
        }
        case DIST_BERNOULLI:
            out[i] = x[i] == 0 ? 1.0 : 0.0;
            break;
        case DIST_CATEGORICAL: {
            if (d->k < 2) {
                out[i] = x[i];
                break;
            }
            uint64_t c = rng_below(r, d->k - 1);
            out[i] = (double)(c >= (uint64_t)x[i] ? c + 1 : c);
            break;
        }
        default:
            out[i] = x[i];
            break;
        }
    }
    return log_ratio;
}
