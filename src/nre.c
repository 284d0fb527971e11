/* nre.c — neural ratio estimation: classifier training (NRE-A / BNRE) and
 * posterior evaluation and sampling (see nre.h). */
#include "nre.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/nn.h"
#include "stats.h"

/* Rows per network call outside training. */
#define NRE_MAX_BATCH NRE_TARGET_MAX_BATCH
#define NRE_DEFAULT_MAX_SECONDS 60.0
/* Slice sampling: stepping-out steps per side, and shrinkage rounds, before
 * a chain gives up on this update (keeps its state; counted). */
#define SLICE_MAX_STEP_OUT 32
#define SLICE_MAX_SHRINK 64

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

nre_net_config nre_net_defaults(void)
{
    nre_net_config c = {50, 2, NN_ACT_RELU, 0.0};
    return c;
}

nre_sample_config nre_sample_defaults(void)
{
    nre_sample_config c = {NRE_SAMPLE_SIR, 32, 20, 200, 5, NRE_DEFAULT_MAX_SECONDS};
    return c;
}

const char *nre_sample_method_name(nre_sample_method m)
{
    switch (m) {
    case NRE_SAMPLE_SIR: return "sir";
    case NRE_SAMPLE_SLICE: return "slice";
    case NRE_SAMPLE_MH: return "mh";
    }
    return "?";
}

int nre_sample_method_from_name(const char *s)
{
    if (strcmp(s, "sir") == 0) return NRE_SAMPLE_SIR;
    if (strcmp(s, "slice") == 0) return NRE_SAMPLE_SLICE;
    if (strcmp(s, "mh") == 0) return NRE_SAMPLE_MH;
    return -1;
}

static double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* ==== posterior object ========================================================== */

struct nre_posterior {
    model_file *m;
    resmlp *net;
    int W;          /* network input width dim + context */
    float *in;      /* [NRE_MAX_BATCH, W] */
    float *zxo;     /* [context] z(x_o) for the sampler */
};

void nre_posterior_destroy(nre_posterior **pp)
{
    if (!pp || !*pp) return;
    nre_posterior *p = *pp;
    model_file_destroy(&p->m);
    resmlp_destroy(&p->net);
    free(p->in);
    free(p->zxo);
    free(p);
    *pp = NULL;
}

/* Takes m over.  max_batch: rows the network must hold. */
static nre_posterior *posterior_wrap(model_file *m, int max_batch, char *err, size_t err_len)
{
    nre_posterior *p = calloc(1, sizeof *p);
    if (!p) {
        model_file_destroy(&m);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    p->m = m;
    p->W = m->dim + m->context;
    p->net = resmlp_new(&m->net, max_batch > NRE_MAX_BATCH ? max_batch : NRE_MAX_BATCH);
    p->in = malloc((size_t)NRE_MAX_BATCH * (size_t)p->W * sizeof *p->in);
    p->zxo = malloc((size_t)m->context * sizeof *p->zxo);
    if (!p->net || !p->in || !p->zxo) {
        snprintf(err, err_len, "cannot create the classifier (invalid config or out of memory)");
        nre_posterior_destroy(&p);
        return NULL;
    }
    return p;
}

nre_posterior *nre_posterior_from_model(const model_file *m, char *err, size_t err_len)
{
    if (m->kind != MODEL_NRE) {
        snprintf(err, err_len, "model is %s, not an NRE classifier", model_kind_name(m->kind));
        return NULL;
    }
    model_file *c = model_file_copy(m);
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    nre_posterior *p = posterior_wrap(c, NRE_MAX_BATCH, err, err_len);
    if (!p) return NULL;
    if (p->net->n_params != m->n_params) {
        snprintf(err, err_len, "model has %zu parameters but its classifier config needs %zu", m->n_params,
                 p->net->n_params);
        nre_posterior_destroy(&p);
        return NULL;
    }
    memcpy(p->net->params, m->params, m->n_params * sizeof(float));
    return p;
}

model_file *nre_posterior_model(nre_posterior *p)
{
    if (p->m->n_params == p->net->n_params && p->m->params)
        memcpy(p->m->params, p->net->params, p->net->n_params * sizeof(float));
    return p->m;
}

int nre_posterior_dim(const nre_posterior *p)
{
    return p->m->dim;
}

int nre_posterior_context(const nre_posterior *p)
{
    return p->m->context;
}

/* ==== training ====================================================================== */

typedef struct nre_trainer {
    resmlp *net;
    const float *zt, *zx;  /* z-scored data [n, D], [n, C] */
    int D, C, W;
    float *in;             /* [2 * max_rows, W] */
    float *tgt, *dlogit;   /* [2 * max_rows] */
    int *pi;               /* [max(max_rows, n_val)] derangement scratch */
    size_t *partner;       /* [max_rows] marginal partners of a batch */
    int max_rows;          /* pairs per network call (training batch, or eval chunk) */
    size_t *val_partner;   /* [n_val]: fixed marginal partner (an index into the val rows) */
    const size_t *val_rows;
    rng r;                 /* marginal permutations */
    double lambda;
    nn_adam_config adam;
} nre_trainer;

/* Rows [joint_0..joint_B, marginal_0..marginal_B] for pairs (theta_row[b],
 * x_row[b]) and (theta_row[partner[b]], x_row[b]). */
static void build_pairs(nre_trainer *t, const size_t *rows, const size_t *partner_rows, int B)
{
    for (int b = 0; b < B; b++) {
        float *j = t->in + (size_t)b * (size_t)t->W, *m = t->in + (size_t)(B + b) * (size_t)t->W;
        memcpy(j, t->zt + rows[b] * (size_t)t->D, (size_t)t->D * sizeof(float));
        memcpy(j + t->D, t->zx + rows[b] * (size_t)t->C, (size_t)t->C * sizeof(float));
        memcpy(m, t->zt + partner_rows[b] * (size_t)t->D, (size_t)t->D * sizeof(float));
        memcpy(m + t->D, t->zx + rows[b] * (size_t)t->C, (size_t)t->C * sizeof(float));
        t->tgt[b] = 1.0f;
        t->tgt[B + b] = 0.0f;
    }
}

/* A uniformly shuffled permutation of [0, B) with its fixed points swapped
 * away (a theta must not be paired with its own x as a "marginal" pair). */
static void derangement(int *pi, int B, rng *r)
{
    for (int i = 0; i < B; i++) pi[i] = i;
    for (int i = B - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1), t = pi[i];
        pi[i] = pi[j];
        pi[j] = t;
    }
    if (B < 2) return;
    for (int i = 0; i < B; i++)
        if (pi[i] == i) {
            /* pi[k] != i for k != i, so neither position is left fixed. */
            int k = (i + 1) % B, t = pi[i];
            pi[i] = pi[k];
            pi[k] = t;
        }
}

static double nre_step(void *model, const size_t *idx, int B, double clip, float lr)
{
    nre_trainer *t = model;
    derangement(t->pi, B, &t->r);
    for (int b = 0; b < B; b++) t->partner[b] = idx[t->pi[b]];
    build_pairs(t, idx, t->partner, B);
    resmlp_zero_grad(t->net);
    const float *logit = resmlp_forward(t->net, t->in, 2 * B);
    if (!logit) return NAN;
    double loss = nn_bce_logits_forward(logit, t->tgt, 2 * B);
    nn_zero(t->dlogit, (size_t)(2 * B));
    nn_bce_logits_backward(t->dlogit, logit, t->tgt, 2 * B);
    if (t->lambda > 0) {
        double sj = 0, sm = 0;
        for (int b = 0; b < B; b++) {
            sj += sigmoid(logit[b]);
            sm += sigmoid(logit[B + b]);
        }
        double g = sj / B + sm / B - 1.0;
        loss += t->lambda * g * g;
        for (int b = 0; b < 2 * B; b++) {
            double s = sigmoid(logit[b]);
            t->dlogit[b] += (float)(2.0 * t->lambda * g * s * (1.0 - s) / B);
        }
    }
    if (!isfinite(loss)) return loss;
    if (resmlp_backward(t->net, t->dlogit, NULL, 2 * B) < 0) return NAN;
    double norm = nn_clip_grad_norm(t->net->grads, t->net->n_params, clip > 0 ? clip : INFINITY);
    if (!isfinite(norm)) return NAN;
    resmlp_adam_step(t->net, &t->adam, lr);
    return loss;
}

static double nre_eval(void *model, const size_t *idx, size_t n)
{
    nre_trainer *t = model;
    /* npe_fit passes the validation rows, whose partners are fixed. */
    assert(idx == t->val_rows);
    double bce = 0, sj = 0, sm = 0;
    size_t rows[NRE_MAX_BATCH], partner[NRE_MAX_BATCH];
    size_t chunk = (size_t)t->max_rows < NRE_MAX_BATCH ? (size_t)t->max_rows : NRE_MAX_BATCH;
    for (size_t i = 0; i < n; i += chunk) {
        int B = (int)(n - i < chunk ? n - i : chunk);
        for (int b = 0; b < B; b++) {
            rows[b] = idx[i + (size_t)b];
            partner[b] = idx[t->val_partner[i + (size_t)b]];
        }
        build_pairs(t, rows, partner, B);
        const float *logit = resmlp_forward(t->net, t->in, 2 * B);
        if (!logit) return NAN;
        bce += nn_bce_logits_forward(logit, t->tgt, 2 * B) * 2 * B;
        for (int b = 0; b < B; b++) {
            sj += sigmoid(logit[b]);
            sm += sigmoid(logit[B + b]);
        }
    }
    double g = sj / (double)n + sm / (double)n - 1.0;
    return bce / (2.0 * (double)n) + t->lambda * g * g;
}

static size_t nre_n_params(void *model)
{
    return ((nre_trainer *)model)->net->n_params;
}

static void nre_get(void *model, float *dst)
{
    resmlp *net = ((nre_trainer *)model)->net;
    memcpy(dst, net->params, net->n_params * sizeof(float));
}

static void nre_set(void *model, const float *src)
{
    resmlp *net = ((nre_trainer *)model)->net;
    memcpy(net->params, src, net->n_params * sizeof(float));
}

static const npe_fit_ops nre_ops = {nre_step, nre_eval, nre_n_params, nre_get, nre_set};

nre_posterior *nre_train(const npe_data *d, const prior *pr, const nre_net_config *ncfg, const npe_train_config *cfg,
                         npe_train_report *rep, char *err, size_t err_len)
{
    npe_train_config defaults = npe_train_defaults();
    if (!cfg) cfg = &defaults;
    nre_net_config nd = nre_net_defaults();
    if (!ncfg) ncfg = &nd;
    npe_train_report local_rep;
    if (!rep) rep = &local_rep;
    memset(rep, 0, sizeof *rep);
    if (!(cfg->val_frac > 0.0 && cfg->val_frac < 1.0) || !(cfg->lr > 0.0f) || cfg->batch < 2 ||
        !(ncfg->bnre_lambda >= 0.0) || ncfg->hidden < 1 || ncfg->n_blocks < 0) {
        snprintf(err, err_len, "invalid NRE settings (validation fraction in (0,1), learning rate > 0, batch >= 2, "
                 "BNRE lambda >= 0, hidden >= 1)");
        return NULL;
    }
    model_file *m;
    npe_split s;
    rng rs[3];
    /* At least 2 validation rows: each is paired with another (derangement). */
    if (npe_train_begin(d, pr, cfg, MODEL_NRE, 2, &m, &s, rs, err, err_len) < 0) return NULL;
    m->net = (resmlp_config){d->dim + d->context, ncfg->hidden, ncfg->n_blocks, 1, ncfg->act};
    m->bnre_lambda = ncfg->bnre_lambda;
    rng r_init = rs[0], r_batch = rs[2];
    int B = cfg->batch;
    if ((size_t)B > s.n_train) B = (int)s.n_train;
    int max_rows = B > NRE_MAX_BATCH / 2 ? B : NRE_MAX_BATCH / 2;
    nre_posterior *p = posterior_wrap(m, 2 * max_rows, err, err_len);
    if (!p) {
        npe_split_free(&s);
        return NULL;
    }
    nre_trainer t;
    memset(&t, 0, sizeof t);
    t.net = p->net;
    t.D = d->dim;
    t.C = d->context;
    t.W = p->W;
    t.max_rows = max_rows;
    t.lambda = ncfg->bnre_lambda;
    t.adam = nn_adam_defaults();
    rng_seed(&t.r, cfg->seed, 3);
    float *zt = npe_zscore_floats(d->theta, d->n, d->dim, m->theta_mean, m->theta_std);
    float *zx = npe_zscore_floats(d->x, d->n, d->context, m->x_mean, m->x_std);
    t.zt = zt;
    t.zx = zx;
    t.in = malloc((size_t)(2 * max_rows) * (size_t)t.W * sizeof(float));
    t.tgt = malloc((size_t)(2 * max_rows) * sizeof(float));
    t.dlogit = malloc((size_t)(2 * max_rows) * sizeof(float));
    t.pi = malloc((size_t)(s.n_val > (size_t)max_rows ? s.n_val : (size_t)max_rows) * sizeof(int));
    t.val_partner = malloc(s.n_val * sizeof(size_t));
    t.partner = malloc((size_t)max_rows * sizeof(size_t));
    t.val_rows = s.val;
    int rc = -1;
    if (!zt || !zx || !t.in || !t.tgt || !t.dlogit || !t.pi || !t.val_partner || !t.partner) {
        snprintf(err, err_len, "out of memory for training");
        goto out;
    }
    {
        /* One fixed derangement of the validation rows: the validation loss
         * then changes only with the weights. */
        rng rv;
        rng_seed(&rv, cfg->seed, 4);
        derangement(t.pi, (int)s.n_val, &rv);
        for (size_t i = 0; i < s.n_val; i++) t.val_partner[i] = (size_t)t.pi[i];
    }
    resmlp_init(p->net, &r_init);
    npe_train_config c2 = *cfg;
    c2.batch = B;
    if (npe_fit(&nre_ops, &t, &s, &c2, &r_batch, "nre", rep, err, err_len) < 0) goto out;
    npe_record_provenance(m, d, &s, rep, cfg->seed);
    if (model_file_set_params(m, p->net->params, p->net->n_params) < 0) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(zt);
    free(zx);
    free(t.in);
    free(t.tgt);
    free(t.dlogit);
    free(t.pi);
    free(t.val_partner);
    free(t.partner);
    npe_split_free(&s);
    if (rc < 0) nre_posterior_destroy(&p);
    return p;
}

/* ==== evaluation ======================================================================= */

static int row_finite(const double *v, int w)
{
    for (int j = 0; j < w; j++)
        if (!isfinite(v[j])) return 0;
    return 1;
}

static void z_context(const nre_posterior *p, const double *x, float *dst)
{
    for (int j = 0; j < p->m->context; j++) dst[j] = (float)((x[j] - p->m->x_mean[j]) / p->m->x_std[j]);
}

/* Logits for theta [n, D] (n <= NRE_MAX_BATCH) against contexts: zx [C]
 * for every row (zx_per_row 0) or [n, C].  Non-finite theta values are fed
 * as 0 (the caller masks those rows). */
static const float *logits_chunk(nre_posterior *p, const double *theta, int n, const float *zx, int zx_per_row)
{
    int D = p->m->dim, C = p->m->context;
    for (int b = 0; b < n; b++) {
        float *row = p->in + (size_t)b * (size_t)p->W;
        const double *th = theta + (size_t)b * (size_t)D;
        for (int j = 0; j < D; j++)
            row[j] = isfinite(th[j]) ? (float)((th[j] - p->m->theta_mean[j]) / p->m->theta_std[j]) : 0.0f;
        memcpy(row + D, zx + (zx_per_row ? (size_t)b * (size_t)C : 0), (size_t)C * sizeof(float));
    }
    return resmlp_forward(p->net, p->in, n);
}

static int eval_rows(nre_posterior *p, const double *theta, size_t n, const double *x, size_t n_x, double *out,
                     int add_prior, char *err, size_t err_len)
{
    int D = p->m->dim, C = p->m->context;
    if (n_x != 1 && n_x != n) {
        snprintf(err, err_len, "%zu observations for %zu theta rows: give one, or one per row", n_x, n);
        return -1;
    }
    for (size_t i = 0; i < n_x; i++)
        if (!row_finite(x + i * (size_t)C, C)) {
            snprintf(err, err_len, "observation %zu has a NaN or infinite value", i);
            return -1;
        }
    float *zx = malloc((size_t)NRE_MAX_BATCH * (size_t)C * sizeof *zx);
    if (!zx) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (n_x == 1) z_context(p, x, zx);
    for (size_t i0 = 0; i0 < n; i0 += NRE_MAX_BATCH) {
        int B = (int)(n - i0 < NRE_MAX_BATCH ? n - i0 : NRE_MAX_BATCH);
        if (n_x == n)
            for (int b = 0; b < B; b++) z_context(p, x + (i0 + (size_t)b) * (size_t)C, zx + (size_t)b * (size_t)C);
        const float *lg = logits_chunk(p, theta + i0 * (size_t)D, B, zx, n_x == n);
        for (int b = 0; b < B; b++) {
            const double *th = theta + (i0 + (size_t)b) * (size_t)D;
            if (add_prior) {
                double lp = prior_log_prob(p->m->prior, th);
                out[i0 + (size_t)b] = lp > -INFINITY ? (double)lg[b] + lp : -INFINITY;
            } else {
                out[i0 + (size_t)b] = row_finite(th, D) ? (double)lg[b] : NAN;
            }
        }
    }
    free(zx);
    return 0;
}

int nre_log_ratio(nre_posterior *p, const double *theta, size_t n, const double *x, size_t n_x, double *out,
                  char *err, size_t err_len)
{
    return eval_rows(p, theta, n, x, n_x, out, 0, err, err_len);
}

int nre_log_prob(nre_posterior *p, const double *theta, size_t n, const double *x, size_t n_x, double *out,
                 char *err, size_t err_len)
{
    return eval_rows(p, theta, n, x, n_x, out, 1, err, err_len);
}

int nre_log_evidence_ratio(nre_posterior *p, const double *x_o, size_t n_draws, rng *r, double *log_z, char *err,
                           size_t err_len)
{
    if (n_draws == 0) n_draws = 10000;
    int D = p->m->dim;
    double *th = malloc(n_draws * (size_t)D * sizeof *th);
    double *lr = malloc(n_draws * sizeof *lr);
    int rc = -1;
    if (!th || !lr) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    prior_sample(p->m->prior, r, n_draws, th);
    if (nre_log_ratio(p, th, n_draws, x_o, 1, lr, err, err_len) < 0) goto out;
    *log_z = stats_logsumexp(lr, n_draws) - log((double)n_draws);
    if (!isfinite(*log_z)) {
        snprintf(err, err_len, "the estimated normaliser is not finite (log Z = %g)", *log_z);
        goto out;
    }
    rc = 0;
out:
    free(th);
    free(lr);
    return rc;
}

int nre_log_prob_normalised(nre_posterior *p, const double *theta, size_t n, const double *x_o, size_t n_draws,
                            rng *r, double *out, double *log_z_out, char *err, size_t err_len)
{
    double lz;
    if (nre_log_evidence_ratio(p, x_o, n_draws, r, &lz, err, err_len) < 0) return -1;
    if (log_z_out) *log_z_out = lz;
    if (nre_log_prob(p, theta, n, x_o, 1, out, err, err_len) < 0) return -1;
    for (size_t i = 0; i < n; i++) out[i] -= lz;
    return 0;
}

/* ==== sampling ============================================================================ */

/* log target log r + log prior at m points [m, D]; -inf outside the support
 * and where the ratio is not finite. */
static void log_target(const nre_ratio_target *t, const double *pts, int m, double *out, uint64_t *evals)
{
    int D = t->dim;
    for (int i0 = 0; i0 < m; i0 += NRE_MAX_BATCH) {
        int B = m - i0 < NRE_MAX_BATCH ? m - i0 : NRE_MAX_BATCH;
        t->ratio(t->ctx, pts + (size_t)i0 * (size_t)D, B, out + i0);
        for (int b = 0; b < B; b++) {
            double lp = prior_log_prob(t->prior, pts + (size_t)(i0 + b) * (size_t)D);
            out[i0 + b] = lp > -INFINITY && isfinite(out[i0 + b]) ? out[i0 + b] + lp : -INFINITY;
        }
        *evals += (uint64_t)B;
    }
}

static int sample_sir(const nre_ratio_target *p, size_t n, rng *r, int K, double t0, double max_seconds, double *out,
                      nre_sample_report *rep, char *err, size_t err_len)
{
    int D = p->dim;
    if (K < 1) K = 1;
    size_t groups = (size_t)(NRE_MAX_BATCH / K > 0 ? NRE_MAX_BATCH / K : 1);
    size_t cap = groups * (size_t)K;
    double *th = malloc(cap * (size_t)D * sizeof *th);
    double *lw = malloc(cap * sizeof *lw);
    double *w = malloc((size_t)K * sizeof *w);
    int rc = -1;
    if (!th || !lw || !w) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    double ess_sum = 0;
    for (size_t s0 = 0; s0 < n; s0 += groups) {
        if (now_seconds() - t0 > max_seconds) {
            snprintf(err, err_len, "importance resampling stopped by the time bound (%.1f s) after %zu of %zu samples",
                     max_seconds, s0, n);
            goto out;
        }
        size_t G = n - s0 < groups ? n - s0 : groups;
        int m = (int)(G * (size_t)K);
        prior_sample(p->prior, r, (size_t)m, th);
        const double *pts = th;
        /* Proposal = prior, so the weight is the ratio alone; log_target adds
         * the prior, which is subtracted back here. */
        for (int i0 = 0; i0 < m; i0 += NRE_MAX_BATCH) {
            int B = m - i0 < NRE_MAX_BATCH ? m - i0 : NRE_MAX_BATCH;
            p->ratio(p->ctx, pts + (size_t)i0 * (size_t)D, B, lw + i0);
            for (int b = 0; b < B; b++)
                if (!isfinite(lw[i0 + b])) lw[i0 + b] = -INFINITY;
            rep->evaluations += (uint64_t)B;
        }
        for (size_t g = 0; g < G; g++) {
            const double *lwg = lw + g * (size_t)K;
            if (!(stats_logsumexp(lwg, (size_t)K) > -INFINITY)) {
                snprintf(err, err_len, "importance resampling: all %d weights of a group are zero", K);
                goto out;
            }
            stats_normalise(lwg, (size_t)K, w);
            ess_sum += stats_ess(w, (size_t)K);
            double u = rng_uniform(r), c = 0;
            int pick = K - 1;
            for (int k = 0; k < K; k++) {
                c += w[k];
                if (u < c) {
                    pick = k;
                    break;
                }
            }
            memcpy(out + (s0 + g) * (size_t)D, th + (g * (size_t)K + (size_t)pick) * (size_t)D,
                   (size_t)D * sizeof(double));
        }
    }
    rep->ess = n ? ess_sum / (double)n : 0;
    rc = 0;
out:
    free(th);
    free(lw);
    free(w);
    return rc;
}

typedef struct chains {
    int n, D;
    double *x;     /* [n, D] current states */
    double *lp;    /* [n] log target at x */
    double *prop;  /* [n, D] proposals / evaluation points */
    double *lpp;   /* [n] */
    double *scale; /* [D]: MH step sd, or slice bracket width */
    int *idx;      /* [n] active chains */
    double *lo, *hi, *ly; /* slice: bracket ends and log level per chain */
} chains;

static void chains_free(chains *c)
{
    free(c->x);
    free(c->lp);
    free(c->prop);
    free(c->lpp);
    free(c->scale);
    free(c->idx);
    free(c->lo);
    free(c->hi);
    free(c->ly);
}

/* Evaluate the points of the active chains act[0..na): prop rows i are set
 * to x with dimension j replaced by val[i]; results in lpp[i]. */
static void eval_coord(const nre_ratio_target *p, chains *c, int na, int j, const double *val, uint64_t *evals)
{
    for (int i = 0; i < na; i++) {
        memcpy(c->prop + (size_t)i * (size_t)c->D, c->x + (size_t)c->idx[i] * (size_t)c->D,
               (size_t)c->D * sizeof(double));
        c->prop[(size_t)i * (size_t)c->D + (size_t)j] = val[i];
    }
    log_target(p, c->prop, na, c->lpp, evals);
}

/* One sweep of axis-aligned slice updates over all dimensions, every chain. */
static void slice_sweep(const nre_ratio_target *p, chains *c, rng *r, uint64_t *evals, uint64_t *gave_up)
{
    int n = c->n, D = c->D;
    double *val = malloc((size_t)n * sizeof *val);
    int *act = malloc((size_t)n * sizeof *act);
    if (!val || !act) {
        free(val);
        free(act);
        return;
    }
    for (int j = 0; j < D; j++) {
        double w = c->scale[j];
        for (int i = 0; i < n; i++) {
            double x = c->x[(size_t)i * (size_t)D + (size_t)j];
            c->ly[i] = c->lp[i] - rng_exponential(r); /* log(u * p(x)) */
            c->lo[i] = x - w * rng_uniform(r);
            c->hi[i] = c->lo[i] + w;
        }
        /* Step out each end until it leaves the slice. */
        for (int side = 0; side < 2; side++) {
            double *end = side ? c->hi : c->lo;
            int na = n;
            for (int i = 0; i < n; i++) act[i] = i;
            for (int it = 0; it < SLICE_MAX_STEP_OUT && na > 0; it++) {
                for (int i = 0; i < na; i++) {
                    c->idx[i] = act[i];
                    val[i] = end[act[i]];
                }
                eval_coord(p, c, na, j, val, evals);
                int k = 0;
                for (int i = 0; i < na; i++) {
                    int ch = act[i];
                    if (c->lpp[i] > c->ly[ch]) {
                        end[ch] += side ? w : -w;
                        act[k++] = ch;
                    }
                }
                na = k;
            }
        }
        /* Shrink towards the current point until a point in the slice. */
        int na = n;
        for (int i = 0; i < n; i++) act[i] = i;
        for (int it = 0; it < SLICE_MAX_SHRINK && na > 0; it++) {
            for (int i = 0; i < na; i++) {
                int ch = act[i];
                c->idx[i] = ch;
                val[i] = c->lo[ch] + rng_uniform(r) * (c->hi[ch] - c->lo[ch]);
            }
            eval_coord(p, c, na, j, val, evals);
            int k = 0;
            for (int i = 0; i < na; i++) {
                int ch = act[i];
                double x = c->x[(size_t)ch * (size_t)D + (size_t)j];
                if (c->lpp[i] > c->ly[ch]) {
                    c->x[(size_t)ch * (size_t)D + (size_t)j] = val[i];
                    c->lp[ch] = c->lpp[i];
                } else {
                    if (val[i] < x) c->lo[ch] = val[i];
                    else c->hi[ch] = val[i];
                    act[k++] = ch;
                }
            }
            na = k;
        }
        *gave_up += (uint64_t)na;
    }
    free(val);
    free(act);
}

/* One random-walk MH step of every chain; returns the number accepted. */
static int mh_step(const nre_ratio_target *p, chains *c, rng *r, uint64_t *evals)
{
    int n = c->n, D = c->D, acc = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            c->prop[(size_t)i * (size_t)D + (size_t)j] =
                c->x[(size_t)i * (size_t)D + (size_t)j] + c->scale[j] * rng_normal(r);
    log_target(p, c->prop, n, c->lpp, evals);
    for (int i = 0; i < n; i++) {
        double a = c->lpp[i] - c->lp[i];
        if (c->lpp[i] > -INFINITY && (a >= 0 || log(rng_uniform_pos(r)) < a)) {
            memcpy(c->x + (size_t)i * (size_t)D, c->prop + (size_t)i * (size_t)D, (size_t)D * sizeof(double));
            c->lp[i] = c->lpp[i];
            acc++;
        }
    }
    return acc;
}

static int sample_mcmc(const nre_ratio_target *p, size_t n, rng *r, const nre_sample_config *cfg, double t0,
                       double max_seconds, double *out, nre_sample_report *rep, char *err, size_t err_len)
{
    int D = p->dim;
    int nc = cfg->chains > 0 ? cfg->chains : 20;
    if ((size_t)nc > n && n > 0) nc = (int)n;
    int warmup = cfg->warmup >= 0 ? cfg->warmup : 200, thin = cfg->thin > 0 ? cfg->thin : 1;
    chains c;
    memset(&c, 0, sizeof c);
    c.n = nc;
    c.D = D;
    /* Initial states: SIR draws, also used to set the step scale from the
     * posterior's spread (init_n of them). */
    size_t init_n = (size_t)nc > 256 ? (size_t)nc : 256;
    double *init = malloc(init_n * (size_t)D * sizeof *init);
    c.x = malloc((size_t)nc * (size_t)D * sizeof *c.x);
    c.lp = malloc((size_t)nc * sizeof *c.lp);
    c.prop = malloc((size_t)nc * (size_t)D * sizeof *c.prop);
    c.lpp = malloc((size_t)nc * sizeof *c.lpp);
    c.scale = malloc((size_t)D * sizeof *c.scale);
    c.idx = malloc((size_t)nc * sizeof *c.idx);
    c.lo = malloc((size_t)nc * sizeof *c.lo);
    c.hi = malloc((size_t)nc * sizeof *c.hi);
    c.ly = malloc((size_t)nc * sizeof *c.ly);
    int rc = -1;
    if (!init || !c.x || !c.lp || !c.prop || !c.lpp || !c.scale || !c.idx || !c.lo || !c.hi || !c.ly) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    if (sample_sir(p, init_n, r, cfg->oversample > 0 ? cfg->oversample : 32, t0, max_seconds, init, rep, err,
                   err_len) < 0)
        goto out;
    for (int j = 0; j < D; j++) {
        double s = 0, ss = 0;
        for (size_t i = 0; i < init_n; i++) s += init[i * (size_t)D + (size_t)j];
        double mu = s / (double)init_n;
        for (size_t i = 0; i < init_n; i++) {
            double dv = init[i * (size_t)D + (size_t)j] - mu;
            ss += dv * dv;
        }
        double sd = sqrt(ss / (double)(init_n - 1));
        if (!(sd > 0)) {
            double pm;
            prior_moments(p->prior, j, &pm, &sd);
            if (!(sd > 0) || !isfinite(sd)) sd = 1.0;
        }
        /* MH: the 2.38/sqrt(D) rule of thumb (Roberts et al.) for Gaussian
         * targets, tuned below; slice: a bracket of about two posterior sds,
         * which stepping out and shrinkage correct when it is off. */
        c.scale[j] = cfg->method == NRE_SAMPLE_MH ? 2.38 / sqrt((double)D) * sd : 2.0 * sd;
    }
    memcpy(c.x, init, (size_t)nc * (size_t)D * sizeof *c.x);
    log_target(p, c.x, nc, c.lp, &rep->evaluations);
    uint64_t acc = 0, prop = 0, gave_up = 0;
    int acc_window = 0, win_steps = 0;
    size_t got = 0;
    for (long step = 1; got < n; step++) {
        if (now_seconds() - t0 > max_seconds) {
            snprintf(err, err_len, "MCMC (%s) stopped by the time bound (%.1f s) after %zu of %zu samples%s",
                     nre_sample_method_name(cfg->method), max_seconds, got, n,
                     step <= warmup ? " (still in warm-up)" : "");
            goto out;
        }
        if (cfg->method == NRE_SAMPLE_MH) {
            int a = mh_step(p, &c, r, &rep->evaluations);
            if (step > warmup) {
                acc += (uint64_t)a;
                prop += (uint64_t)nc;
            } else {
                /* Warm-up: every 10 steps scale the steps by exp(rate - 0.3)
                 * (a Robbins-Monro-style adaptation towards ~0.3 acceptance);
                 * frozen afterwards so the chain is Markov. */
                acc_window += a;
                if (++win_steps == 10) {
                    double rate = (double)acc_window / (10.0 * nc);
                    for (int j = 0; j < D; j++) c.scale[j] *= exp(rate - 0.3);
                    acc_window = win_steps = 0;
                }
            }
        } else {
            slice_sweep(p, &c, r, &rep->evaluations, &gave_up);
        }
        if (step > warmup && (step - warmup) % thin == 0)
            for (int i = 0; i < nc && got < n; i++, got++)
                memcpy(out + got * (size_t)D, c.x + (size_t)i * (size_t)D, (size_t)D * sizeof(double));
    }
    rep->acceptance = cfg->method == NRE_SAMPLE_MH ? (prop ? (double)acc / (double)prop : 0) : 1.0;
    if (gave_up) fprintf(stderr, "nre: slice sampler: %llu updates found no point in the slice (state kept)\n",
                         (unsigned long long)gave_up);
    rc = 0;
out:
    free(init);
    chains_free(&c);
    return rc;
}

/* The classifier's logits against p->zxo (set by nre_sample). */
static void classifier_ratio(void *ctx, const double *theta, int n, double *out)
{
    nre_posterior *p = ctx;
    const float *lg = logits_chunk(p, theta, n, p->zxo, 0);
    for (int b = 0; b < n; b++) out[b] = (double)lg[b];
}

int nre_sample_target(const nre_ratio_target *t, size_t n, rng *r, const nre_sample_config *cfg, double *out,
                      nre_sample_report *rep, char *err, size_t err_len)
{
    nre_sample_config defaults = nre_sample_defaults();
    if (!cfg) cfg = &defaults;
    nre_sample_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    double t0 = now_seconds();
    double max_s = cfg->max_seconds > 0 ? cfg->max_seconds : NRE_DEFAULT_MAX_SECONDS;
    int rc;
    switch (cfg->method) {
    case NRE_SAMPLE_SIR:
        rc = sample_sir(t, n, r, cfg->oversample > 0 ? cfg->oversample : 32, t0, max_s, out, rep, err, err_len);
        rep->acceptance = 1.0;
        break;
    case NRE_SAMPLE_SLICE:
    case NRE_SAMPLE_MH:
        rc = sample_mcmc(t, n, r, cfg, t0, max_s, out, rep, err, err_len);
        break;
    default:
        snprintf(err, err_len, "unknown sampling method %d", (int)cfg->method);
        rc = -1;
    }
    rep->seconds = now_seconds() - t0;
    return rc;
}

int nre_sample(nre_posterior *p, const double *x_o, size_t n, rng *r, const nre_sample_config *cfg, double *out,
               nre_sample_report *rep, char *err, size_t err_len)
{
    if (!row_finite(x_o, p->m->context)) {
        if (rep) memset(rep, 0, sizeof *rep);
        snprintf(err, err_len, "the observation has a NaN or infinite value");
        return -1;
    }
    z_context(p, x_o, p->zxo);
    nre_ratio_target t = {classifier_ratio, p, p->m->prior, p->m->dim};
    return nre_sample_target(&t, n, r, cfg, out, rep, err, err_len);
}
