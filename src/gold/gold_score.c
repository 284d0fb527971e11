/* gold_score.c — the joint score from parameter tangents (see gold_score.h). */
#include "gold/gold_score.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

int gold_entry_is_theta(const trace_entry *e, const char *const *theta, size_t D)
{
    if (e->kind != TRACE_SAMPLE || !e->name || !e->name[0]) return 0;
    for (size_t k = 0; k < D; k++)
        if (strcmp(e->name, theta[k]) == 0) return 1;
    return 0;
}

int gold_entry_in_joint(const trace_entry *e, const char *const *theta, size_t D)
{
    return e->kind != TRACE_TAG && e->dist != DIST_NONE && !gold_entry_is_theta(e, theta, D);
}

int gold_trace_has_tangents(const trace *t, const char *const *theta, size_t D)
{
    for (size_t i = 0; i < t->n_entries; i++)
        if (gold_entry_in_joint(&t->entries[i], theta, D) && !t->entries[i].tangent) return 0;
    return 1;
}

static int fail(gold_bad *reason, gold_bad r, char *why, size_t why_len, const char *fmt, ...)
{
    *reason = r;
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int any_nonzero(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0) return 1;
    return 0;
}

int gold_tangent_score(const trace *t, const char *const *theta, size_t D, double *score, gold_bad *reason,
                       char *why, size_t why_len)
{
    for (size_t k = 0; k < D; k++) score[k] = 0;
    double *g = NULL; /* [g0 (n0 or n values) | g1 (n values)] */
    size_t g_cap = 0;
    size_t *col = malloc((D ? D : 1) * sizeof *col); /* [D] column of theta k in the entry's tangent */
    if (!col) return fail(reason, GOLD_BAD_FAILED, why, why_len, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < t->n_entries && rc == 0; i++) {
        const trace_entry *e = &t->entries[i];
        if (!gold_entry_in_joint(e, theta, D)) continue;
        const trace_tangent *tg = e->tangent;
        if (!tg) {
            rc = fail(reason, GOLD_BAD_NO_TANGENT, why, why_len, "'%s' came without a parameter tangent", e->address);
            break;
        }
        if (isnan(e->log_prob)) {
            rc = fail(reason, GOLD_BAD_NONFINITE, why, why_len, "'%s': log-probability NaN", e->address);
            break;
        }
        if (e->log_prob == -INFINITY) {
            rc = fail(reason, GOLD_BAD_SUPPORT, why, why_len, "'%s': value outside its support", e->address);
            break;
        }
        if (tg->n_theta == 0) continue; /* declared independent of theta */
        for (size_t k = 0; k < D; k++) {
            size_t c = 0;
            while (c < tg->n_theta && strcmp(tg->theta[c], theta[k]) != 0) c++;
            if (c == tg->n_theta) {
                rc = fail(reason, GOLD_BAD_NO_TANGENT, why, why_len, "the tangent of '%s' does not name theta '%s'",
                          e->address, theta[k]);
                break;
            }
            col[k] = c;
        }
        if (rc) break;
        const int np = dist_nparams(e->dist);
        for (int j = 0; j < 2; j++) {
            const size_t want = j < np ? e->param[j].len * tg->n_theta : 0;
            if (tg->len[j] != 0 && tg->len[j] != want) {
                rc = fail(reason, GOLD_BAD_PARAMS, why, why_len, "the tangent of '%s' param%d has %zu values, not %zu",
                          e->address, j, tg->len[j], want);
                break;
            }
        }
        if (rc) break;
        /* Supports that move with theta: the score does not exist. */
        if ((e->dist == DIST_UNIFORM && ((tg->len[0] && any_nonzero(tg->d[0], tg->len[0])) ||
                                         (tg->len[1] && any_nonzero(tg->d[1], tg->len[1])))) ||
            (e->dist == DIST_BINOMIAL && tg->len[0] && any_nonzero(tg->d[0], tg->len[0]))) {
            rc = fail(reason, GOLD_BAD_THETA_SUPPORT, why, why_len, "the support of '%s' (%s) moves with theta",
                      e->address, dist_kind_name(e->dist));
            break;
        }
        if (!tg->len[0] && !tg->len[1]) continue;
        dist d;
        char dw[120];
        if (dist_init(&d, e->dist, e->param[0].data, e->param[0].len, np == 2 ? e->param[1].data : NULL,
                      np == 2 ? e->param[1].len : 0, e->k, dw, sizeof dw) < 0) {
            rc = fail(reason, GOLD_BAD_PARAMS, why, why_len, "'%s': %s", e->address, dw);
            break;
        }
        if (e->value.len != d.n) {
            rc = fail(reason, GOLD_BAD_PARAMS, why, why_len, "'%s': %zu values for %zu elements", e->address,
                      e->value.len, d.n);
            break;
        }
        const size_t n0 = e->dist == DIST_CATEGORICAL ? d.n0 : d.n, need = n0 + d.n;
        if (need > g_cap) {
            double *ng = realloc(g, need * sizeof *ng);
            if (!ng) goto oom;
            g = ng;
            g_cap = need;
        }
        double *g0 = g, *g1 = g + n0;
        dist_grad_log_prob(&d, e->value.data, g0, np == 2 ? g1 : NULL);
        const size_t T = tg->n_theta;
        if (tg->len[0]) {
            /* Categorical: g0 is per weight, in the weights' layout; else per
             * element, a broadcast (length-1) parameter collecting them all. */
            for (size_t q = 0; q < n0; q++) {
                const size_t pe = e->param[0].len == n0 ? q : 0;
                for (size_t k = 0; k < D; k++) score[k] += g0[q] * tg->d[0][pe * T + col[k]];
            }
        }
        if (np == 2 && tg->len[1]) {
            for (size_t q = 0; q < d.n; q++) {
                const size_t pe = e->param[1].len == d.n ? q : 0;
                for (size_t k = 0; k < D; k++) score[k] += g1[q] * tg->d[1][pe * T + col[k]];
            }
        }
    }
    for (size_t k = 0; rc == 0 && k < D; k++)
        if (!isfinite(score[k]))
            rc = fail(reason, GOLD_BAD_NONFINITE, why, why_len, "the score of theta '%s' is not finite", theta[k]);
    free(g);
    free(col);
    return rc;
oom:
    free(g);
    free(col);
    return fail(reason, GOLD_BAD_FAILED, why, why_len, "out of memory");
}
