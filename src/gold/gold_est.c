/* gold_est.c — gold losses, training, evaluation and model files (see gold_est.h). */
#include "gold/gold_est.h"
#include "gold/gold_io.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"
#include "trace_store.h"

static const char *const method_names[GOLD_METHOD_COUNT] = {"carl",  "rolr",   "rascal", "cascal", "alice",
                                                            "alices", "sally", "nde",    "scandal"};

const char *gold_method_name(gold_method m)
{
    return (unsigned)m < GOLD_METHOD_COUNT ? method_names[m] : "unknown";
}

const char *gold_model_kind_name(gold_method m)
{
    static const char *const kinds[GOLD_METHOD_COUNT] = {"gold-CARL",   "gold-ROLR",  "gold-RASCAL",
                                                         "gold-CASCAL", "gold-ALICE", "gold-ALICES",
                                                         "gold-SALLY",  "gold-NDE",   "gold-SCANDAL"};
    return (unsigned)m < GOLD_METHOD_COUNT ? kinds[m] : "gold";
}

int gold_method_from_name(const char *s)
{
    for (int i = 0; i < GOLD_METHOD_COUNT; i++)
        if (strcmp(s, method_names[i]) == 0) return i;
    return -1;
}

static int has_score_term(gold_method m) { return m == GOLD_RASCAL || m == GOLD_CASCAL || m == GOLD_ALICES; }

int gold_method_uses_score(gold_method m) { return has_score_term(m) || m == GOLD_SALLY || m == GOLD_SCANDAL; }

int gold_method_is_density(gold_method m) { return m == GOLD_NDE || m == GOLD_SCANDAL; }

double gold_default_alpha(gold_method m) { return m == GOLD_SCANDAL ? 10 : 1; }

int gold_default_components(gold_method m, size_t rows)
{
    if (m != GOLD_NDE) return 10;
    size_t k = rows / 1000;
    return k < 1 ? 1 : k > 10 ? 10 : (int)k;
}

/* RASCAL's validation loss kept falling past 10,000 steps on the Galton
 * board at 10k rows (MSE 0.0023 -> 0.0016 at 20,000), where ROLR's and
 * ALICES's rose (0.0028 -> 0.0034, 0.0006 -> 0.0010): README, Gold mining. */
int gold_default_min_steps(gold_method m) { return m == GOLD_CARL ? 0 : m == GOLD_RASCAL ? 20000 : 10000; }

int gold_method_has_score(gold_method m) { return gold_method_uses_score(m) || m == GOLD_NDE; }

/* ---- losses ---------------------------------------------------------------- */

static double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }
static double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z)); }

double gold_loss(gold_method m, double alpha, double clip, int B, int D, const double *f, const double *that,
                 const double *y, const double *logr, const double *t, double *g, double *gt)
{
    double L = 0;
    if (m == GOLD_SALLY) {
        const double n = (double)B * D;
        for (int i = 0; i < B * D; i++) {
            const double d = that[i] - t[i];
            L += d * d / n;
            if (gt) gt[i] = 2 * d / n;
        }
        for (int b = 0; g && b < B; b++) g[b] = 0;
        return L;
    }
    for (int b = 0; b < B; b++) {
        double l = 0, dl = 0;
        switch (m) {
        case GOLD_CARL:
        case GOLD_CASCAL:
        case GOLD_ALICE:
        case GOLD_ALICES: {
            /* BCE(s^ = sigmoid(-f), s): s = y (CARL) or 1/(1 + r_xz) (ALICE) */
            const double s = m == GOLD_CARL || m == GOLD_CASCAL ? y[b] : sigmoid(-logr[b]);
            l = s * softplus(f[b]) + (1 - s) * softplus(-f[b]);
            dl = s * sigmoid(f[b]) - (1 - s) * sigmoid(-f[b]);
            break;
        }
        case GOLD_ROLR:
        case GOLD_RASCAL: {
            const int inside = f[b] > -clip && f[b] < clip;
            const double fc = fmin(fmax(f[b], -clip), clip), lc = fmin(fmax(logr[b], -clip), clip);
            if (y[b] == 0) {
                const double d = exp(-fc) - exp(-lc);
                l = d * d;
                dl = inside ? -2 * d * exp(-fc) : 0;
            } else {
                const double d = exp(fc) - exp(lc);
                l = d * d;
                dl = inside ? 2 * d * exp(fc) : 0;
            }
            break;
        }
        default: break;
        }
        L += l / B;
        if (g) g[b] = dl / B;
    }
    if (has_score_term(m)) {
        const double n = (double)B * D;
        for (int b = 0; b < B; b++)
            for (int k = 0; k < D; k++) {
                const double w = 1 - y[b], d = w * (that[b * D + k] - t[b * D + k]);
                L += alpha * d * d / n;
                if (gt) gt[b * D + k] = alpha * 2 * w * d / n;
            }
    } else if (gt) {
        for (int i = 0; i < B * D; i++) gt[i] = 0;
    }
    return L;
}

double gold_density_loss(double alpha, int B, int D, const double *lp, const double *that, const double *w,
                         const double *t, double *glp, double *gthat)
{
    double L = 0;
    for (int b = 0; b < B; b++) {
        L -= lp[b] / B;
        if (glp) glp[b] = -1.0 / B;
    }
    const double n = (double)B * D;
    for (int b = 0; that && b < B; b++)
        for (int k = 0; k < D; k++) {
            const double d = w[b] * (that[b * D + k] - t[b * D + k]);
            L += alpha * d * d / n;
            if (gthat) gthat[b * D + k] = alpha * 2 * w[b] * d / n;
        }
    return L;
}

/* ---- model ----------------------------------------------------------------------- */

void gold_train_defaults(gold_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->hidden = 100;
    c->layers = 2;
    c->alpha = 0; /* the method's default: gold_default_alpha */
    c->batch = 128;
    c->epochs = 50;
    c->min_steps = -1; /* the method's default: gold_default_min_steps */
    c->lr = 1e-3;
    c->lr_end = 1e-4;
    c->val_frac = 0.25;
    c->clip = 10;
    c->seed = 1;
    c->components = 0; /* gold_default_components */
    c->dequantize = -1;
}

static char **dup_names(char *const *v, size_t n)
{
    char **o = calloc(n ? n : 1, sizeof *o);
    for (size_t i = 0; o && i < n; i++)
        if (!(o[i] = strdup(v[i]))) return NULL; /* (leaks on OOM only) */
    return o;
}

#define DENS_BLOCK 32

static gold_model *model_new(gold_method method, int C, int D, int hidden, int layers, int components, int max_batch)
{
    gold_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (gold_method_is_density(method) && max_batch < DENS_BLOCK) max_batch = DENS_BLOCK;
    m->method = method;
    m->C = C;
    m->D = D;
    m->hidden = hidden;
    m->layers = layers;
    m->max_batch = max_batch;
    m->components = components;
    m->x_mean = calloc(C + 1, sizeof(double));
    m->x_std = calloc(C + 1, sizeof(double));
    m->th_mean = calloc(D, sizeof(double));
    m->th_std = calloc(D, sizeof(double));
    m->t_scale = calloc(D, sizeof(double));
    m->theta1 = calloc(D, sizeof(double));
    m->in_buf = calloc((size_t)max_batch * (C + D), sizeof(float));
    int ok = m->x_mean && m->x_std && m->th_mean && m->th_std && m->t_scale && m->theta1 && m->in_buf;
    if (ok && gold_method_is_density(method)) {
        ok = (m->deq = calloc(C + 1, 1)) != NULL && (m->dens = cond_mog_new(C, D, components, hidden, layers, max_batch));
    } else if (ok && method == GOLD_SALLY) {
        mlp_config cfg = {.in = C, .hidden = hidden, .n_hidden_layers = layers, .out = D, .act = NN_ACT_TANH};
        ok = (m->sally = mlp_new(&cfg, max_batch)) != NULL;
    } else if (ok) {
        ok = (m->rn = ratio_net_new(C, D, hidden, layers, 1, max_batch)) != NULL;
    }
    if (!ok) gold_model_destroy(&m);
    return m;
}

void gold_model_destroy(gold_model **mp)
{
    if (!mp || !*mp) return;
    gold_model *m = *mp;
    free(m->x_mean);
    free(m->x_std);
    free(m->th_mean);
    free(m->th_std);
    free(m->t_scale);
    free(m->theta1);
    free(m->in_buf);
    for (int i = 0; m->theta_names && i < m->D; i++) free(m->theta_names[i]);
    for (int i = 0; m->x_names && i < m->C; i++) free(m->x_names[i]);
    free(m->theta_names);
    free(m->x_names);
    ratio_net_destroy(&m->rn);
    mlp_destroy(&m->sally);
    cond_mog_destroy(&m->dens);
    free(m->deq);
    free(m);
    *mp = NULL;
}

static mlp *model_net(gold_model *m) { return m->sally ? m->sally : m->rn ? m->rn->net : NULL; }

/* The trainable parameters as one flat array, whichever network holds them. */
static size_t model_n_params(gold_model *m) { return m->dens ? cond_mog_n_params(m->dens) : model_net(m)->n_params; }

static void model_get_params(gold_model *m, float *dst)
{
    if (m->dens) cond_mog_get_params(m->dens, dst);
    else memcpy(dst, model_net(m)->params, model_net(m)->n_params * sizeof *dst);
}

static void model_set_params(gold_model *m, const float *src)
{
    if (m->dens) cond_mog_set_params(m->dens, src);
    else memcpy(model_net(m)->params, src, model_net(m)->n_params * sizeof *src);
}

static void model_zero_grad(gold_model *m)
{
    if (m->dens) cond_mog_zero_grad(m->dens);
    else mlp_zero_grad(model_net(m));
}

static void model_adam_step(gold_model *m, const nn_adam_config *adam, float lr)
{
    if (m->dens) cond_mog_adam_step(m->dens, adam, lr);
    else mlp_adam_step(model_net(m), adam, lr);
}

static void model_init(gold_model *m, rng *r)
{
    if (m->dens) cond_mog_init(m->dens, r);
    else mlp_init(model_net(m), r);
}

/* Network input rows [B, C (+ D)] from physical x, theta0. */
static void fill_input(gold_model *m, const double *x, const double *th, int B)
{
    const int C = m->C, D = m->D, W = m->sally ? C : C + D;
    for (int b = 0; b < B; b++) {
        float *row = m->in_buf + (size_t)b * W;
        for (int c = 0; c < C; c++) row[c] = (float)((x[(size_t)b * C + c] - m->x_mean[c]) / m->x_std[c]);
        for (int k = 0; !m->sally && k < D; k++)
            row[C + k] = (float)((th[(size_t)b * D + k] - m->th_mean[k]) / m->th_std[k]);
    }
}

/* ---- density models: evaluation ------------------------------------------------------ */

/* Evaluations run in blocks of exactly DENS_BLOCK rows (the last padded
 * with copies of its final row), so a value does not depend on how many
 * rows came with it or on the model's batch size: OpenBLAS may round
 * other matrix shapes differently, and served values must equal `ppxd
 * evaluate`'s bit for bit. */

/* Gauss-Legendre nodes and weights on [0, 1] (Newton's method on P_Q). */
static void gauss_legendre01(int Q, double *xs, double *ws)
{
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < Q; i++) {
        double z = cos(pi * (i + 0.75) / (Q + 0.5)), dp = 1;
        for (int it = 0; it < 100; it++) {
            double p0 = 1, p1 = z;
            for (int j = 2; j <= Q; j++) {
                const double p2 = ((2.0 * j - 1) * z * p1 - (j - 1.0) * p0) / j;
                p0 = p1;
                p1 = p2;
            }
            dp = Q * (z * p1 - p0) / (z * z - 1);
            const double dz = p1 / dp;
            z -= dz;
            if (fabs(dz) < 1e-15) break;
        }
        xs[i] = 0.5 * (1 - z);
        ws[i] = 1.0 / ((1 - z * z) * dp * dp); /* 2 / ((1 - z^2) P'^2), times 1/2 for [0, 1] */
    }
}

/* Quadrature nodes per dequantised column: GOLD_DEQ_NODES for one such
 * column, fewer for several (at most 4096 evaluations per row, at least 2 nodes). */
static int deq_nodes(int nd)
{
    if (nd == 0) return 1;
    int Q = GOLD_DEQ_NODES;
    while (Q > 2 && pow(Q, nd) > 4096) Q--;
    return Q;
}

/* log p^(x | th) [n] (physical units, NULL: not wanted) and/or its theta
 * gradient [n, D] (physical units), integrating dequantised columns over
 * their unit cell. */
static int density_eval(gold_model *m, const double *x, const double *th, size_t n, double *lp_out, double *score)
{
    const int C = m->C, D = m->D, Bm = DENS_BLOCK;
    int nd = 0;
    for (int c = 0; c < C; c++) nd += m->deq[c];
    const int Q = deq_nodes(nd);
    size_t NQ = 1;
    for (int j = 0; j < nd; j++) NQ *= (size_t)Q;
    double gx[GOLD_DEQ_NODES], gw[GOLD_DEQ_NODES];
    if (nd) gauss_legendre01(Q, gx, gw);
    const size_t total = n * NQ;
    double *lq = malloc((total ? total : 1) * sizeof *lq);
    double *tq = score ? malloc((total ? total : 1) * D * sizeof *tq) : NULL;
    double *xb = malloc((size_t)Bm * C * sizeof *xb), *tb = malloc((size_t)Bm * D * sizeof *tb);
    int rc = lq && xb && tb && (!score || tq) ? 0 : -1;
    double log_sd = 0;
    for (int c = 0; c < C; c++) log_sd += log(m->x_std[c]);
    for (size_t e0 = 0; rc == 0 && e0 < total; e0 += (size_t)Bm) {
        const int B = (int)(total - e0 < (size_t)Bm ? total - e0 : (size_t)Bm);
        for (int b = 0; b < B; b++) {
            const size_t e = e0 + b, row = e / NQ;
            size_t q = e % NQ;
            double lw = 0;
            for (int c = 0; c < C; c++) {
                double v = x[row * C + c];
                if (m->deq[c]) {
                    const size_t at = q % (size_t)Q;
                    q /= (size_t)Q;
                    v += gx[at];
                    lw += log(gw[at]);
                }
                xb[(size_t)b * C + c] = (v - m->x_mean[c]) / m->x_std[c];
            }
            for (int k = 0; k < D; k++) tb[(size_t)b * D + k] = (th[row * D + k] - m->th_mean[k]) / m->th_std[k];
            lq[e] = lw; /* the log weight; the log density is added below */
        }
        for (int b = B; b < Bm; b++) {
            memcpy(xb + (size_t)b * C, xb + (size_t)(B - 1) * C, C * sizeof *xb);
            memcpy(tb + (size_t)b * D, tb + (size_t)(B - 1) * D, D * sizeof *tb);
        }
        if (cond_mog_forward(m->dens, xb, tb, Bm, score != NULL) < 0) {
            rc = -1;
            break;
        }
        for (int b = 0; b < B; b++) {
            lq[e0 + b] += m->dens->lp[b];
            for (int k = 0; score && k < D; k++) tq[(e0 + b) * D + k] = m->dens->that[(size_t)b * D + k];
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const double *l = lq + i * NQ;
        double mx = -INFINITY, s = 0;
        for (size_t q = 0; q < NQ; q++) mx = fmax(mx, l[q]);
        for (size_t q = 0; q < NQ; q++) s += exp(l[q] - mx);
        if (lp_out) lp_out[i] = mx + log(s) - log_sd;
        for (int k = 0; score && k < D; k++) {
            double a = 0;
            for (size_t q = 0; q < NQ; q++) a += exp(l[q] - mx) * tq[(i * NQ + q) * D + k];
            score[i * D + k] = a / s / m->th_std[k];
        }
    }
    free(lq);
    free(tq);
    free(xb);
    free(tb);
    return rc;
}

int gold_model_log_prob(gold_model *m, const double *x, const double *theta, size_t n, double *out)
{
    if (!m->dens) {
        fprintf(stderr, "gold: a %s model estimates %s, not a density\n", gold_method_name(m->method),
                m->sally ? "the score" : "a ratio");
        return -1;
    }
    return density_eval(m, x, theta, n, out, NULL);
}

int gold_model_sample(gold_model *m, const double *theta, size_t n, rng *r, double *x)
{
    if (!m->dens) {
        fprintf(stderr, "gold: a %s model has no density to sample\n", gold_method_name(m->method));
        return -1;
    }
    const int C = m->C, D = m->D;
    double *tz = malloc((n ? n : 1) * D * sizeof *tz);
    if (!tz) return -1;
    for (size_t i = 0; i < n * D; i++) tz[i] = (theta[i] - m->th_mean[i % D]) / m->th_std[i % D];
    int rc = n > INT32_MAX ? -1 : cond_mog_sample(m->dens, tz, (int)n, r, x);
    free(tz);
    for (size_t i = 0; rc == 0 && i < n * C; i++) {
        const int c = (int)(i % C);
        x[i] = x[i] * m->x_std[c] + m->x_mean[c];
        if (m->deq[c]) x[i] = floor(x[i]);
    }
    return rc;
}

int gold_model_log_ratio(gold_model *m, const double *x, const double *theta0, const double *theta1, size_t n,
                         double *out)
{
    const int D = m->D;
    if (m->sally) {
        fprintf(stderr, "gold: a SALLY model estimates the score, not log r\n");
        return -1;
    }
    double *t1 = NULL, *l1 = malloc((n ? n : 1) * sizeof *l1);
    if (!l1) return -1;
    if (!theta1) {
        for (int k = 0; k < D; k++)
            if (!isfinite(m->theta1[k])) {
                fprintf(stderr, "gold: the model was trained without a reference theta1: give theta1\n");
                free(l1);
                return -1;
            }
        if (!m->dens) { /* the network is log r^ against the reference itself */
            free(l1);
            return gold_model_log_r(m, x, theta0, n, out);
        }
        t1 = malloc((n ? n : 1) * D * sizeof *t1);
        if (!t1) {
            free(l1);
            return -1;
        }
        for (size_t i = 0; i < n; i++) memcpy(t1 + i * D, m->theta1, D * sizeof *t1);
        theta1 = t1;
    }
    int rc;
    if (m->dens) rc = density_eval(m, x, theta0, n, out, NULL) < 0 || density_eval(m, x, theta1, n, l1, NULL) < 0 ? -1 : 0;
    else rc = gold_model_log_r(m, x, theta0, n, out) < 0 || gold_model_log_r(m, x, theta1, n, l1) < 0 ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) out[i] -= l1[i];
    free(t1);
    free(l1);
    return rc;
}

int gold_model_log_r(gold_model *m, const double *x, const double *theta0, size_t n, double *out)
{
    if (m->dens) return gold_model_log_ratio(m, x, theta0, NULL, n, out);
    if (m->sally) {
        fprintf(stderr, "gold: a SALLY model estimates the score, not log r\n");
        return -1;
    }
    for (size_t i = 0; i < n; i += (size_t)m->max_batch) {
        const int B = (int)(n - i < (size_t)m->max_batch ? n - i : (size_t)m->max_batch);
        fill_input(m, x + i * m->C, theta0 + i * m->D, B);
        const float *f = mlp_forward(m->rn->net, m->in_buf, B);
        if (!f) return -1;
        for (int b = 0; b < B; b++) out[i + b] = f[b];
    }
    return 0;
}

int gold_model_score(gold_model *m, const double *x, const double *theta0, size_t n, double *out)
{
    const int D = m->D;
    if (m->dens) return density_eval(m, x, theta0, n, NULL, out);
    for (size_t i = 0; i < n; i += (size_t)m->max_batch) {
        const int B = (int)(n - i < (size_t)m->max_batch ? n - i : (size_t)m->max_batch);
        fill_input(m, x + i * m->C, theta0 ? theta0 + i * D : NULL, B);
        if (m->sally) {
            const float *o = mlp_forward(m->sally, m->in_buf, B);
            if (!o) return -1;
            for (int b = 0; b < B * D; b++) out[i * D + b] = o[b] * m->t_scale[b % D];
        } else {
            if (!ratio_net_forward_jvp(m->rn, m->in_buf, B)) return -1;
            for (int b = 0; b < B * D; b++) out[i * D + b] = m->rn->tdot[b] / m->th_std[b % D];
        }
    }
    return 0;
}

/* ---- training ----------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct batch {
    double *y, *logr, *t, *f, *that, *g, *gt;
    float *gf, *gtf;
    double *xd, *thd, *w;     /* density methods: x, generating theta (z units), score-term weights */
    const double *gen_th;     /* density methods: [rows, D] the theta each row was simulated at */
    rng *noise;               /* training: dequantisation noise; NULL (validation): a fixed value per row */
} batch;

/* A fixed U(0, 1) value for (row, column): validation rows get the same
 * dequantisation every epoch, so their losses compare across epochs. */
static double fixed_uniform(size_t row, int col)
{
    uint64_t z = (uint64_t)row * 0x9e3779b97f4a7c15ull + (uint64_t)col * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static double run_density_batch(gold_model *m, const gold_data *g, const size_t *idx,
                                int B, batch *bt, int train)
{
    const int C = m->C, D = m->D, score = m->method == GOLD_SCANDAL;
    for (int b = 0; b < B; b++) {
        const size_t r = idx[b];
        for (int c = 0; c < C; c++) {
            double v = g->x[r * C + c];
            if (m->deq[c]) v += bt->noise ? rng_uniform(bt->noise) : fixed_uniform(r, c);
            bt->xd[(size_t)b * C + c] = (v - m->x_mean[c]) / m->x_std[c];
        }
        for (int k = 0; k < D; k++) {
            bt->thd[(size_t)b * D + k] = (bt->gen_th[r * D + k] - m->th_mean[k]) / m->th_std[k];
            /* the mined t is the score at theta0: the generating point of the y = 0 rows only */
            bt->t[(size_t)b * D + k] = g->has_score ? g->t[r * D + k] * m->th_std[k] : 0;
        }
        bt->w[b] = g->has_score && g->y[r] == 0;
    }
    if (cond_mog_forward(m->dens, bt->xd, bt->thd, B, score) < 0) return NAN;
    const double L = gold_density_loss(m->alpha, B, D, m->dens->lp, score ? m->dens->that : NULL, bt->w, bt->t,
                                       bt->g, bt->gt);
    if (train && cond_mog_backward(m->dens, bt->g, score ? bt->gt : NULL, B) < 0) return NAN;
    return L;
}

/* Loss of rows idx[0..B) (forward, and backward when train). */
static double run_batch(gold_model *m, const gold_train_config *cfg, const gold_data *g, const size_t *idx, int B,
                        batch *bt, int train)
{
    if (m->dens) return run_density_batch(m, g, idx, B, bt, train);
    const int C = m->C, D = m->D, W = m->sally ? C : C + D;
    const int score = has_score_term(m->method);
    for (int b = 0; b < B; b++) {
        const size_t r = idx[b];
        float *row = m->in_buf + (size_t)b * W;
        for (int c = 0; c < C; c++) row[c] = (float)((g->x[r * C + c] - m->x_mean[c]) / m->x_std[c]);
        for (int k = 0; !m->sally && k < D; k++)
            row[C + k] = (float)((g->theta0[r * D + k] - m->th_mean[k]) / m->th_std[k]);
        bt->y[b] = g->y[r];
        bt->logr[b] = g->K ? g->log_r[r * g->K] : 0;
        for (int k = 0; g->has_score && k < D; k++)
            bt->t[b * D + k] = m->sally ? g->t[r * D + k] / m->t_scale[k] : g->t[r * D + k] * m->th_std[k];
    }
    double L;
    if (m->sally) {
        const float *o = mlp_forward(m->sally, m->in_buf, B);
        for (int i = 0; i < B * D; i++) bt->that[i] = o[i];
        L = gold_loss(m->method, m->alpha, cfg->clip, B, D, NULL, bt->that, bt->y, bt->logr, bt->t, bt->g, bt->gt);
        if (train) {
            for (int i = 0; i < B * D; i++) bt->gtf[i] = (float)bt->gt[i];
            mlp_backward(m->sally, bt->gtf, NULL, B);
        }
        return L;
    }
    const float *f = score ? ratio_net_forward_jvp(m->rn, m->in_buf, B) : mlp_forward(m->rn->net, m->in_buf, B);
    for (int b = 0; b < B; b++) bt->f[b] = f[b];
    for (int i = 0; score && i < B * D; i++) bt->that[i] = m->rn->tdot[i];
    L = gold_loss(m->method, m->alpha, cfg->clip, B, D, bt->f, score ? bt->that : NULL, bt->y, bt->logr, bt->t, bt->g,
                  score ? bt->gt : NULL);
    if (train) {
        for (int b = 0; b < B; b++) bt->gf[b] = (float)bt->g[b];
        if (score) {
            for (int i = 0; i < B * D; i++) bt->gtf[i] = (float)bt->gt[i];
            ratio_net_backward_jvp(m->rn, bt->gf, bt->gtf, B);
        } else {
            mlp_backward(m->rn->net, bt->gf, NULL, B);
        }
    }
    return L;
}

static void col_stats(const double *v, const size_t *idx, size_t n, size_t stride, size_t off, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += v[idx[i] * stride + off];
    const double m = n ? s / n : 0;
    for (size_t i = 0; i < n; i++) s2 += pow(v[idx[i] * stride + off] - m, 2);
    const double d = n > 1 ? sqrt(s2 / (n - 1)) : 0;
    *mean = m;
    *sd = d > 1e-12 * (1 + fabs(m)) && isfinite(d) ? d : 1.0; /* a constant column passes through */
}

gold_model *gold_train(const gold_train_config *cfg, const gold_data *g)
{
    const gold_method meth = cfg->method;
    if ((unsigned)meth >= GOLD_METHOD_COUNT) return NULL;
    if (gold_method_uses_score(meth) && !g->has_score) {
        fprintf(stderr, "gold: %s needs the joint score: mine without --no-score\n", gold_method_name(meth));
        return NULL;
    }
    const int dens = gold_method_is_density(meth);
    if (meth != GOLD_SALLY && !dens && g->K < 1) {
        fprintf(stderr, "gold: %s needs log r: mine with --theta1 (or --pairs)\n", gold_method_name(meth));
        return NULL;
    }
    if (!g->C || !g->D) {
        fprintf(stderr, "gold: the gold data has no x or theta columns\n");
        return NULL;
    }
    /* rows: SALLY uses those simulated at theta0 (its reference point) */
    size_t n_all = cfg->max_rows && cfg->max_rows < g->n ? cfg->max_rows : g->n, n = 0;
    size_t *idx = malloc((n_all ? n_all : 1) * sizeof *idx);
    if (!idx) return NULL;
    for (size_t i = 0; i < n_all; i++)
        if (meth != GOLD_SALLY || g->y[i] == 0) idx[n++] = i;
    size_t n1 = 0;
    for (size_t i = 0; i < n; i++) n1 += g->y[idx[i]] != 0;
    if (meth != GOLD_SALLY && !dens && (n1 == 0 || n1 == n)) {
        fprintf(stderr, "gold: %s needs rows simulated at theta0 and at theta1 (this file has %zu and %zu): mine with "
                "one --theta1 point (or --pairs) and without --no-theta1-rows\n", gold_method_name(meth), n - n1, n1);
        free(idx);
        return NULL;
    }
    if (n < 4) {
        fprintf(stderr, "gold: %zu usable rows: too few to train\n", n);
        free(idx);
        return NULL;
    }
    rng r;
    rng_seed(&r, cfg->seed, 0x676f6c64ull);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rng_below(&r, i + 1), tmp = idx[i];
        idx[i] = idx[j];
        idx[j] = tmp;
    }
    size_t n_val = (size_t)(n * cfg->val_frac);
    if (n_val < 1) n_val = 1;
    const size_t n_tr = n - n_val;
    const int C = (int)g->C, D = (int)g->D, Bmax = cfg->batch;
    const int K = cfg->components > 0 ? cfg->components : gold_default_components(meth, n);
    gold_model *m = model_new(meth, C, D, cfg->hidden, cfg->layers, K, Bmax);
    batch bt = {0};
    float *best = NULL;
    double *gen_th = NULL;
    if (!m) goto fail;
    if (dens) {
        /* the theta each row was simulated at: theta0 (y = 0) or the reference theta1 (y = 1) */
        gen_th = malloc(n_all * D * sizeof *gen_th);
        if (!gen_th) goto fail;
        for (size_t i = 0; i < n_all; i++)
            memcpy(gen_th + i * D, g->y[i] == 0 ? g->theta0 + i * D : g->theta1 + i * g->K * D, D * sizeof *gen_th);
        bt.gen_th = gen_th;
    }
    m->alpha = cfg->alpha > 0 ? cfg->alpha : gold_default_alpha(meth);
    m->theta_names = dup_names(g->theta_names, g->D);
    m->x_names = dup_names(g->x_names, g->C);
    if (!m->theta_names || !m->x_names) goto fail;
    for (int c = 0; c < C; c++) {
        col_stats(g->x, idx, n_tr, g->C, c, &m->x_mean[c], &m->x_std[c]);
        if (!dens) continue;
        int whole = 1;
        for (size_t i = 0; whole && i < n; i++) whole = g->x[idx[i] * C + c] == floor(g->x[idx[i] * C + c]);
        m->deq[c] = cfg->dequantize < 0 ? whole : cfg->dequantize > 0;
        if (m->deq[c]) { /* the moments of x + U(0, 1) */
            m->x_mean[c] += 0.5;
            m->x_std[c] = sqrt(m->x_std[c] * m->x_std[c] + 1.0 / 12);
        }
    }
    for (int k = 0; k < D; k++) {
        col_stats(dens ? gen_th : g->theta0, idx, n_tr, g->D, k, &m->th_mean[k], &m->th_std[k]);
        if (g->has_score) {
            double mu;
            col_stats(g->t, idx, n_tr, g->D, k, &mu, &m->t_scale[k]);
        } else {
            m->t_scale[k] = 1;
        }
        m->theta1[k] = g->K ? g->theta1[idx[0] * g->K * g->D + k] : NAN;
    }
    bt.y = calloc(Bmax, sizeof(double));
    bt.logr = calloc(Bmax, sizeof(double));
    bt.f = calloc(Bmax, sizeof(double));
    bt.g = calloc(Bmax, sizeof(double));
    bt.t = calloc((size_t)Bmax * D, sizeof(double));
    bt.that = calloc((size_t)Bmax * D, sizeof(double));
    bt.gt = calloc((size_t)Bmax * D, sizeof(double));
    bt.gf = calloc(Bmax, sizeof(float));
    bt.gtf = calloc((size_t)Bmax * D, sizeof(float));
    bt.xd = calloc((size_t)Bmax * C, sizeof(double));
    bt.thd = calloc((size_t)Bmax * D, sizeof(double));
    bt.w = calloc(Bmax, sizeof(double));
    const size_t n_params = model_n_params(m);
    best = malloc(n_params * sizeof *best);
    if (!bt.y || !bt.logr || !bt.f || !bt.g || !bt.t || !bt.that || !bt.gt || !bt.gf || !bt.gtf || !best || !bt.xd ||
        !bt.thd || !bt.w)
        goto fail;
    model_init(m, &r);
    const nn_adam_config adam = nn_adam_defaults();
    double best_val = INFINITY;
    int best_epoch = -1, since = 0;
    const double t0 = now_s();
    const size_t per_epoch = (n_tr + (size_t)Bmax - 1) / (size_t)Bmax;
    int epochs = cfg->epochs;
    /* CARL's 0/1 labels carry far less per row than the gold targets: long training overfits it */
    const int min_steps = cfg->min_steps >= 0 ? cfg->min_steps : gold_default_min_steps(meth);
    if (meth != GOLD_CARL && min_steps > 0 && (size_t)epochs * per_epoch < (size_t)min_steps)
        epochs = (int)((min_steps + per_epoch - 1) / per_epoch);
    for (int ep = 0; ep < epochs; ep++) {
        const double lr = epochs > 1 ? cfg->lr * pow(cfg->lr_end / cfg->lr, (double)ep / (epochs - 1)) : cfg->lr;
        /* reshuffle the training rows each epoch */
        for (size_t i = n_tr - 1; i > 0; i--) {
            size_t j = (size_t)rng_below(&r, i + 1), tmp = idx[i];
            idx[i] = idx[j];
            idx[j] = tmp;
        }
        double tr = 0;
        for (size_t i = 0; i < n_tr; i += (size_t)Bmax) {
            const int B = (int)(n_tr - i < (size_t)Bmax ? n_tr - i : (size_t)Bmax);
            model_zero_grad(m);
            bt.noise = &r;
            tr += run_batch(m, cfg, g, idx + i, B, &bt, 1) * B;
            model_adam_step(m, &adam, (float)lr);
        }
        double val = 0;
        for (size_t i = 0; i < n_val; i += (size_t)Bmax) {
            const int B = (int)(n_val - i < (size_t)Bmax ? n_val - i : (size_t)Bmax);
            bt.noise = NULL;
            val += run_batch(m, cfg, g, idx + n_tr + i, B, &bt, 0) * B;
        }
        val /= n_val;
        if (!isfinite(val)) {
            fprintf(stderr, "gold: the validation loss is not finite at epoch %d\n", ep + 1);
            if (best_epoch < 0) goto fail;
            break;
        }
        if (val < best_val) {
            best_val = val;
            best_epoch = ep;
            since = 0;
            model_get_params(m, best);
        } else {
            since++;
        }
        if (cfg->progress)
            fprintf(stderr, "\rgold %s: epoch %d/%d  train %.5g  val %.5g  (best %.5g at %d)  %.1f s   ",
                    gold_method_name(meth), ep + 1, epochs, tr / n_tr, val, best_val, best_epoch + 1,
                    now_s() - t0);
        if ((cfg->patience > 0 && since >= cfg->patience) || (cfg->stop && *cfg->stop)) break;
    }
    if (cfg->progress) fprintf(stderr, "\n");
    model_set_params(m, best);
    m->n_train = n_tr;
    m->n_val = n_val;
    m->best_epoch = best_epoch + 1;
    m->best_val = best_val;
    goto done;
fail:
    gold_model_destroy(&m);
done:
    free(idx);
    free(best);
    free(bt.y);
    free(bt.logr);
    free(bt.f);
    free(bt.g);
    free(bt.t);
    free(bt.that);
    free(bt.gt);
    free(bt.gf);
    free(bt.gtf);
    free(bt.xd);
    free(bt.thd);
    free(bt.w);
    free(gen_th);
    return m;
}

/* ---- files ------------------------------------------------------------------------------ */

static const char MODEL_MAGIC[8] = {'P', 'P', 'X', 'G', 'M', 'D', 'L', 0};


int gold_model_save(const gold_model *m, const char *path, char *err, size_t err_len)
{
    gold_buf b = {0};
    gold_put(&b, MODEL_MAGIC, 8);
    const int dens = m->dens != NULL;
    gold_put_u32(&b, dens ? GOLD_MODEL_VERSION_DENSITY : GOLD_MODEL_VERSION);
    gold_put_u32(&b, (uint32_t)m->method);
    gold_put_u32(&b, (uint32_t)m->C);
    gold_put_u32(&b, (uint32_t)m->D);
    gold_put_u32(&b, (uint32_t)m->hidden);
    gold_put_u32(&b, (uint32_t)m->layers);
    if (dens) gold_put_u32(&b, (uint32_t)m->components);
    gold_put_u64(&b, m->n_train);
    gold_put_u64(&b, m->n_val);
    gold_put_u32(&b, (uint32_t)m->best_epoch);
    gold_put_f64(&b, m->best_val);
    gold_put_f64(&b, m->alpha);
    gold_put(&b, m->x_mean, m->C * 8);
    gold_put(&b, m->x_std, m->C * 8);
    gold_put(&b, m->th_mean, m->D * 8);
    gold_put(&b, m->th_std, m->D * 8);
    gold_put(&b, m->t_scale, m->D * 8);
    gold_put(&b, m->theta1, m->D * 8);
    for (int i = 0; i < m->D + m->C; i++) {
        const char *s = i < m->D ? m->theta_names[i] : m->x_names[i - m->D];
        gold_put_u32(&b, (uint32_t)strlen(s));
        gold_put(&b, s, strlen(s));
    }
    if (dens) gold_put(&b, m->deq, (size_t)m->C);
    const mlp *net = m->sally ? m->sally : m->rn ? m->rn->net : NULL;
    size_t bl = dens ? cond_mog_save_size(m->dens) : mlp_save_size(net);
    void *blob = malloc(bl);
    if (blob && (dens ? cond_mog_save(m->dens, blob, bl) : mlp_save(net, blob, bl)) == 0) {
        gold_put_u64(&b, bl);
        gold_put(&b, blob, bl);
    } else {
        b.oom = 1;
    }
    free(blob);
    int rc = gold_write_atomic(&b, path, 0, err, err_len);
    free(b.p);
    return rc;
}

int gold_model_file_is(const char *path) { return gold_file_has_magic(path, MODEL_MAGIC); }

int gold_model_bytes_are(const void *p, size_t len) { return len >= 8 && memcmp(p, MODEL_MAGIC, 8) == 0; }

typedef struct rbuf {
    const unsigned char *p;
    size_t len, off;
    int bad;
} rbuf;

static void take(rbuf *r, void *out, size_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p + r->off, n);
    r->off += n;
}
static uint32_t take_u32(rbuf *r)
{
    uint32_t v;
    take(r, &v, 4);
    return v;
}

gold_model *gold_model_load(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        gold_set_err(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = sz > 0 ? malloc((size_t)sz) : NULL;
    if (!data || fread(data, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(data);
        gold_set_err(err, err_len, "%s: cannot read", path);
        return NULL;
    }
    fclose(f);
    gold_model *m = gold_model_decode(data, (size_t)sz, path, err, err_len);
    free(data);
    return m;
}

gold_model *gold_model_decode(const unsigned char *data, size_t len, const char *path, char *err, size_t err_len)
{
    gold_model *m = NULL;
    if (len < 16 || memcmp(data, MODEL_MAGIC, 8) != 0) {
        gold_set_err(err, err_len, "%s: not a ppxd gold model (bad magic)", path);
        goto out;
    }
    if (trace_crc32c(0, data, len - 4) != gold_u32_at(data + len - 4)) {
        gold_set_err(err, err_len, "%s: checksum mismatch (damaged or truncated file)", path);
        goto out;
    }
    rbuf r = {data, len - 4, 8, 0};
    uint32_t ver = take_u32(&r);
    if (ver != GOLD_MODEL_VERSION && ver != GOLD_MODEL_VERSION_DENSITY) {
        gold_set_err(err, err_len, "%s: gold model version %u, this ppxd reads %d and %d", path, ver,
                     GOLD_MODEL_VERSION, GOLD_MODEL_VERSION_DENSITY);
        goto out;
    }
    uint32_t meth = take_u32(&r), C = take_u32(&r), D = take_u32(&r), hidden = take_u32(&r), layers = take_u32(&r);
    const int dens = meth < GOLD_METHOD_COUNT && gold_method_is_density((gold_method)meth);
    uint32_t comps = dens ? take_u32(&r) : 0;
    if (meth >= GOLD_METHOD_COUNT || !D || D > 4096 || C > (1u << 20) || !hidden || hidden > 65536 || !layers ||
        layers > 64 || dens != (ver == GOLD_MODEL_VERSION_DENSITY) || (dens && (!C || !comps || comps > 1000))) {
        gold_set_err(err, err_len, "%s: bad model header", path);
        goto out;
    }
    m = model_new((gold_method)meth, (int)C, (int)D, (int)hidden, (int)layers, (int)comps, 256);
    if (!m) {
        gold_set_err(err, err_len, "out of memory");
        goto out;
    }
    take(&r, &m->n_train, 8);
    take(&r, &m->n_val, 8);
    m->best_epoch = (int)take_u32(&r);
    take(&r, &m->best_val, 8);
    take(&r, &m->alpha, 8);
    take(&r, m->x_mean, C * 8);
    take(&r, m->x_std, C * 8);
    take(&r, m->th_mean, D * 8);
    take(&r, m->th_std, D * 8);
    take(&r, m->t_scale, D * 8);
    take(&r, m->theta1, D * 8);
    m->theta_names = calloc(D, sizeof(char *));
    m->x_names = calloc(C + 1, sizeof(char *));
    if (!m->theta_names || !m->x_names) goto bad;
    for (uint32_t i = 0; i < D + C && !r.bad; i++) {
        uint32_t l = take_u32(&r);
        if (r.bad || r.len - r.off < l) goto bad;
        char *s = strndup((const char *)r.p + r.off, l);
        r.off += l;
        if (!s) goto bad;
        if (i < D) m->theta_names[i] = s;
        else m->x_names[i - D] = s;
    }
    if (dens) take(&r, m->deq, C);
    uint64_t bl;
    take(&r, &bl, 8);
    if (r.bad || bl != r.len - r.off ||
        (dens ? cond_mog_load(m->dens, r.p + r.off, (size_t)bl) : mlp_load(model_net(m), r.p + r.off, (size_t)bl)) < 0)
        goto bad;
    goto out;
bad:
    gold_set_err(err, err_len, "%s: the model does not parse (truncated or inconsistent)", path);
    gold_model_destroy(&m);
out:
    return m;
}
