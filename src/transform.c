/* transform.c — interval-to-real-line bijections (see transform.h). */
#include "transform.h"

#include <math.h>
#include <string.h>

static const char *const names[TF_KIND_COUNT] = {"none", "log", "logit", "log1p"};

const char *tf_kind_name(tf_kind k)
{
    return k >= TF_NONE && k < TF_KIND_COUNT ? names[k] : "?";
}

int tf_kind_from_name(const char *s)
{
    for (int k = 0; k < TF_KIND_COUNT; k++)
        if (strcmp(s, names[k]) == 0) return k;
    return -1;
}

int tf_valid(const tf_dim *t)
{
    if (t->kind < TF_NONE || t->kind >= TF_KIND_COUNT) return 0;
    if (t->kind == TF_NONE) return 1;
    if (!isfinite(t->lo)) return 0;
    return t->kind != TF_LOGIT || (isfinite(t->hi) && t->hi > t->lo);
}

double tf_forward(const tf_dim *t, double v)
{
    switch (t->kind) {
    case TF_LOG: return v >= t->lo ? log(v - t->lo) : NAN;
    case TF_LOG1P: return v >= t->lo - 1 ? log1p(v - t->lo) : NAN;
    case TF_LOGIT: {
        if (!(v >= t->lo && v <= t->hi)) return NAN;
        /* log(v - lo) - log(hi - v): no cancellation in 1 - u near hi. */
        return log(v - t->lo) - log(t->hi - v);
    }
    default: return v;
    }
}

double tf_inverse(const tf_dim *t, double y)
{
    switch (t->kind) {
    case TF_LOG: return t->lo + exp(y);
    case TF_LOG1P: return t->lo + expm1(y);
    case TF_LOGIT: {
        /* lo + (hi - lo) sigmoid(y), the sigmoid in its stable form; from the
         * nearer end so that values near hi keep their precision. */
        double w = t->hi - t->lo;
        if (y >= 0) return t->hi - w / (1.0 + exp(y));
        return t->lo + w / (1.0 + exp(-y));
    }
    default: return y;
    }
}

double tf_log_jac(const tf_dim *t, double v)
{
    switch (t->kind) {
    case TF_LOG: return -log(v - t->lo);
    case TF_LOG1P: return -log1p(v - t->lo);
    case TF_LOGIT: return log(t->hi - t->lo) - log(v - t->lo) - log(t->hi - v);
    default: return 0.0;
    }
}

void tf_for_prior(const prior *p, int uniform, tf_dim *out)
{
    for (int j = 0; j < p->dim; j++) {
        double lo, hi;
        prior_support(p, j, &lo, &hi);
        if (p->d[j].block || (isinf(lo) && isinf(hi)) || (p->d[j].kind == DIST_UNIFORM && !uniform))
            out[j] = (tf_dim){TF_NONE, 0.0, 0.0};
        else if (isinf(hi)) out[j] = (tf_dim){TF_LOG, lo, 0.0};
        else out[j] = (tf_dim){TF_LOGIT, lo, hi};
    }
}

int tf_covers_support(const prior *p, const tf_dim *t)
{
    for (int j = 0; j < p->dim; j++) {
        double lo, hi;
        prior_support(p, j, &lo, &hi);
        if (isinf(lo) && isinf(hi)) continue;
        if (isinf(hi) ? !(t[j].kind == TF_LOG && t[j].lo == lo)
                      : !(t[j].kind == TF_LOGIT && t[j].lo == lo && t[j].hi == hi))
            return 0;
    }
    return 1;
}

int tf_any(const tf_dim *t, int n)
{
    for (int j = 0; j < n; j++)
        if (t[j].kind != TF_NONE) return 1;
    return 0;
}
