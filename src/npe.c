/* npe.c — neural posterior estimation: data preparation, the training loop
 * shared with NRE, and the flow posterior (see npe.h). */
#include "npe.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/nn.h"

/* Rows per network call when evaluating or sampling (training uses
 * cfg->batch): large enough that the per-call overhead of the small sgemms
 * is amortised, small enough to stay in cache. */
#define NPE_MAX_BATCH 1024

/* Sampling runs the flow on chunks of base draws (at most NPE_SAMPLE_CHUNK
 * rows, drawn from r row by row) cut into blocks of NPE_SAMPLE_BLOCK rows.
 * The block size is fixed so that every row goes through the same network
 * calls whichever thread, and however many, run the blocks: the samples are
 * bit-identical with and without a team. */
#define NPE_SAMPLE_BLOCK 512
#define NPE_SAMPLE_CHUNK 16384
/* Default time bound of sampling when the caller passes none: sampling must
 * never hang when the acceptance rate is ~0. */
#define NPE_DEFAULT_MAX_SECONDS 60.0

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ==== data ==================================================================== */

static int row_finite(const double *v, int w)
{
    for (int j = 0; j < w; j++)
        if (!isfinite(v[j])) return 0;
    return 1;
}

int npe_data_init(npe_data *d, const double *theta, const double *x, size_t n, int dim, int context, char *err,
                  size_t err_len)
{
    memset(d, 0, sizeof *d);
    if (dim < 1 || context < 1) {
        snprintf(err, err_len, "theta and x need at least one column each (got %d and %d)", dim, context);
        return -1;
    }
    if (n == 0) {
        snprintf(err, err_len, "no simulations");
        return -1;
    }
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        if (row_finite(theta + i * (size_t)dim, dim) && row_finite(x + i * (size_t)context, context)) keep++;
    if (keep == 0) {
        snprintf(err, err_len, "all %zu simulations have a NaN or infinite value in theta or x", n);
        return -1;
    }
    d->theta = malloc(keep * (size_t)dim * sizeof *d->theta);
    d->x = malloc(keep * (size_t)context * sizeof *d->x);
    if (!d->theta || !d->x) {
        npe_data_free(d);
        snprintf(err, err_len, "out of memory for %zu simulations", keep);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const double *t = theta + i * (size_t)dim, *xx = x + i * (size_t)context;
        if (!row_finite(t, dim) || !row_finite(xx, context)) continue;
        memcpy(d->theta + k * (size_t)dim, t, (size_t)dim * sizeof *t);
        memcpy(d->x + k * (size_t)context, xx, (size_t)context * sizeof *xx);
        k++;
    }
    d->n = keep;
    d->dim = dim;
    d->context = context;
    d->n_in = n;
    d->n_dropped = n - keep;
    return 0;
}

void npe_data_free(npe_data *d)
{
    if (!d) return;
    free(d->theta);
    free(d->x);
    memset(d, 0, sizeof *d);
}

int npe_split_make(npe_split *s, size_t n, double val_frac, rng *r)
{
    memset(s, 0, sizeof *s);
    size_t n_val = (size_t)floor(val_frac * (double)n + 0.5);
    if (val_frac > 0.0 && n_val == 0 && n >= 2) n_val = 1;
    if (n_val >= n) return -1;
    size_t *perm = malloc(n * sizeof *perm);
    if (!perm) return -1;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rng_below(r, (uint64_t)i + 1);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    s->val = malloc((n_val ? n_val : 1) * sizeof *s->val);
    s->train = malloc((n - n_val) * sizeof *s->train);
    if (!s->val || !s->train) {
        free(perm);
        npe_split_free(s);
        return -1;
    }
    memcpy(s->val, perm, n_val * sizeof *perm);
    memcpy(s->train, perm + n_val, (n - n_val) * sizeof *perm);
    s->n_val = n_val;
    s->n_train = n - n_val;
    free(perm);
    return 0;
}

void npe_split_free(npe_split *s)
{
    if (!s) return;
    free(s->train);
    free(s->val);
    memset(s, 0, sizeof *s);
}

void npe_zscore_fit(const double *v, int w, const size_t *rows, size_t n_rows, double *mean, double *std)
{
    for (int j = 0; j < w; j++) {
        /* Two passes in double: the spread can be tiny next to the mean. */
        double s = 0.0;
        for (size_t i = 0; i < n_rows; i++) s += v[(rows ? rows[i] : i) * (size_t)w + (size_t)j];
        double m = n_rows ? s / (double)n_rows : 0.0, ss = 0.0;
        for (size_t i = 0; i < n_rows; i++) {
            double dv = v[(rows ? rows[i] : i) * (size_t)w + (size_t)j] - m;
            ss += dv * dv;
        }
        double sd = n_rows > 1 ? sqrt(ss / (double)(n_rows - 1)) : 0.0;
        mean[j] = m;
        std[j] = sd > 1e-12 * (1.0 + fabs(m)) && isfinite(sd) ? sd : 1.0;
    }
}

/* ==== training loop ============================================================ */

npe_train_config npe_train_defaults(void)
{
    npe_train_config c;
    memset(&c, 0, sizeof c);
    c.batch = 200;
    c.lr = 5e-4f;
    c.clip = 5.0;
    c.val_frac = 0.1;
    c.patience = 20;
    c.max_epochs = 0;
    c.max_seconds = 0.0;
    c.seed = 1;
    c.threads = 1;
    c.progress = 0;
    c.stop = NULL;
    return c;
}

static void fmt_duration(double s, char *buf, size_t len)
{
    if (s < 90) snprintf(buf, len, "%.0f s", s);
    else if (s < 5400) snprintf(buf, len, "%.1f min", s / 60);
    else snprintf(buf, len, "%.1f h", s / 3600);
}

int npe_fit(const npe_fit_ops *ops, void *model, const npe_split *s, const npe_train_config *cfg, rng *r,
            const char *tag, npe_train_report *rep, char *err, size_t err_len)
{
    memset(rep, 0, sizeof *rep);
    rep->n_train = s->n_train;
    rep->n_val = s->n_val;
    rep->best_val_loss = INFINITY;
    if (s->n_train == 0 || s->n_val == 0) {
        snprintf(err, err_len, "%s: need at least one training and one validation row (have %zu and %zu)", tag,
                 s->n_train, s->n_val);
        return -1;
    }
    int B = cfg->batch > 0 ? cfg->batch : 200;
    if ((size_t)B > s->n_train) B = (int)s->n_train;
    size_t n_batches = s->n_train / (size_t)B;
    size_t np = ops->n_params(model);
    float *best = malloc((np ? np : 1) * sizeof *best);
    size_t *perm = malloc(s->n_train * sizeof *perm);
    if (!best || !perm) {
        free(best);
        free(perm);
        snprintf(err, err_len, "%s: out of memory", tag);
        return -1;
    }
    memcpy(perm, s->train, s->n_train * sizeof *perm);
    FILE *log = NULL;
    if (cfg->log_path) {
        if (!(log = fopen(cfg->log_path, "w"))) {
            snprintf(err, err_len, "%s: cannot write the training log %s: %s", tag, cfg->log_path, strerror(errno));
            free(best);
            free(perm);
            return -1;
        }
        fprintf(log, "epoch,train_loss,val_loss,seconds\n");
    }
    int patience = cfg->patience > 0 ? cfg->patience : 20;
    double t0 = now_seconds(), last_print = t0;
    int since_best = 0;
    for (int epoch = 1;; epoch++) {
        /* Fisher-Yates reshuffle: each epoch visits the rows in a new order. */
        for (size_t i = s->n_train - 1; i > 0; i--) {
            size_t j = (size_t)rng_below(r, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double sum = 0.0;
        size_t counted = 0;
        int stop_now = 0;
        for (size_t b = 0; b < n_batches; b++) {
            double loss = ops->step(model, perm + b * (size_t)B, B, cfg->clip, cfg->lr);
            if (isfinite(loss)) {
                sum += loss;
                counted++;
            } else {
                rep->skipped_steps++;
            }
            if (cfg->stop && *cfg->stop) {
                stop_now = 1;
                break;
            }
        }
        double val = ops->eval(model, s->val, s->n_val);
        rep->epochs = epoch;
        rep->last_train_loss = counted ? sum / (double)counted : NAN;
        if (isfinite(val) && val < rep->best_val_loss) {
            rep->best_val_loss = val;
            rep->best_epoch = epoch;
            since_best = 0;
            ops->get_params(model, best);
        } else {
            since_best++;
        }
        double t = now_seconds(), elapsed = t - t0;
        if (log) {
            fprintf(log, "%d,%.9g,%.9g,%.6f\n", epoch, rep->last_train_loss, val, elapsed);
            fflush(log);
        }
        if (since_best >= patience) rep->stop = NPE_STOP_CONVERGED;
        else if (cfg->max_epochs > 0 && epoch >= cfg->max_epochs) rep->stop = NPE_STOP_MAX_EPOCHS;
        else if (cfg->max_seconds > 0 && elapsed >= cfg->max_seconds) rep->stop = NPE_STOP_MAX_SECONDS;
        else if (stop_now || (cfg->stop && *cfg->stop)) rep->stop = NPE_STOP_REQUESTED;
        else {
            if (cfg->progress && t - last_print >= 1.0) {
                /* Early stopping makes the end unknowable; what is known is
                 * the minimum: patience minus the epochs since the best. */
                char eta[32];
                fmt_duration((double)(patience - since_best) * elapsed / epoch, eta, sizeof eta);
                fprintf(stderr, "%s: epoch %d  train %.4f  val %.4f  best %.4f (epoch %d)  %.1f s  at least %d epochs "
                        "(~%s) to go\n", tag, epoch, rep->last_train_loss, val, rep->best_val_loss, rep->best_epoch,
                        elapsed, patience - since_best, eta);
                last_print = t;
            }
            continue;
        }
        break;
    }
    rep->seconds = now_seconds() - t0;
    free(perm);
    if (log) fclose(log);
    if (rep->best_epoch == 0) {
        free(best);
        snprintf(err, err_len, "%s: the validation loss was never finite in %d epochs (diverged: check the data "
                 "for extreme values, or lower the learning rate)", tag, rep->epochs);
        return -1;
    }
    ops->set_params(model, best);
    free(best);
    if (cfg->progress) {
        static const char *const why[] = {"converged", "max epochs reached", "time limit reached", "stopped"};
        fprintf(stderr, "%s: %s after %d epochs in %.1f s: best validation loss %.4f at epoch %d%s\n", tag,
                why[rep->stop], rep->epochs, rep->seconds, rep->best_val_loss, rep->best_epoch,
                rep->skipped_steps ? " (some steps skipped: non-finite loss)" : "");
    }
    return 0;
}

/* ==== NPE posterior ============================================================== */

struct npe_posterior {
    model_file *m;     /* description; m->params synced on npe_posterior_model */
    flow *f;
    double log_det;    /* sum_j log theta_std[j]: the z-scoring's Jacobian */
    float *zt, *zx, *lq; /* [NPE_MAX_BATCH * dim], [NPE_MAX_BATCH * context], [NPE_MAX_BATCH] */
    double *th;        /* [NPE_MAX_BATCH * dim] a chunk of samples in original units */
    float *u;          /* [NPE_MAX_BATCH * dim] its base draws */
    unsigned char ok[(NPE_MAX_BATCH + NPE_SAMPLE_BLOCK - 1) / NPE_SAMPLE_BLOCK]; /* its blocks done */
};

void npe_posterior_destroy(npe_posterior **pp)
{
    if (!pp || !*pp) return;
    npe_posterior *p = *pp;
    model_file_destroy(&p->m);
    flow_destroy(&p->f);
    free(p->zt);
    free(p->zx);
    free(p->lq);
    free(p->th);
    free(p->u);
    free(p);
    *pp = NULL;
}

/* A posterior around m (taken over) with a fresh flow of m->flow. */
static npe_posterior *posterior_wrap(model_file *m, char *err, size_t err_len)
{
    npe_posterior *p = calloc(1, sizeof *p);
    if (!p) {
        model_file_destroy(&m);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    p->m = m;
    p->f = flow_new(&m->flow, NPE_MAX_BATCH);
    if (!p->f) {
        snprintf(err, err_len, "cannot create the flow (invalid config or out of memory)");
        npe_posterior_destroy(&p);
        return NULL;
    }
    p->zt = malloc((size_t)NPE_MAX_BATCH * (size_t)m->dim * sizeof *p->zt);
    p->zx = malloc((size_t)NPE_MAX_BATCH * (size_t)m->context * sizeof *p->zx);
    p->lq = malloc((size_t)NPE_MAX_BATCH * sizeof *p->lq);
    p->th = malloc((size_t)NPE_MAX_BATCH * (size_t)m->dim * sizeof *p->th);
    p->u = malloc((size_t)NPE_MAX_BATCH * (size_t)m->dim * sizeof *p->u);
    if (!p->zt || !p->zx || !p->lq || !p->th || !p->u) {
        snprintf(err, err_len, "out of memory");
        npe_posterior_destroy(&p);
        return NULL;
    }
    p->log_det = 0.0;
    for (int j = 0; j < m->dim; j++) p->log_det += log(m->theta_std[j]);
    return p;
}

npe_posterior *npe_posterior_from_model(const model_file *m, char *err, size_t err_len)
{
    if (m->kind != MODEL_NPE_MAF && m->kind != MODEL_NPE_NSF) {
        snprintf(err, err_len, "model is %s, not an NPE flow", model_kind_name(m->kind));
        return NULL;
    }
    model_file *c = model_file_copy(m);
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    npe_posterior *p = posterior_wrap(c, err, err_len);
    if (!p) return NULL;
    if (flow_n_params(p->f) != m->n_params) {
        snprintf(err, err_len, "model has %zu parameters but its flow config needs %zu", m->n_params,
                 flow_n_params(p->f));
        npe_posterior_destroy(&p);
        return NULL;
    }
    flow_set_params(p->f, m->params);
    return p;
}

model_file *npe_posterior_model(npe_posterior *p)
{
    size_t n = flow_n_params(p->f);
    if (p->m->n_params == n && p->m->params) flow_get_params(p->f, p->m->params);
    return p->m;
}

int npe_posterior_dim(const npe_posterior *p)
{
    return p->m->dim;
}

int npe_posterior_context(const npe_posterior *p)
{
    return p->m->context;
}

/* ---- training ----------------------------------------------------------------------- */

typedef struct npe_trainer {
    flow *f;
    const float *zt, *zx; /* whole data set, z-scored: [n, D], [n, C] */
    int D, C;
    float *bt, *bx, *lq, *dl; /* batch buffers [max_batch * D], [max_batch * C], [max_batch] x 2 */
    int max_batch;
    nn_adam_config adam;
} npe_trainer;

static void trainer_gather(npe_trainer *t, const size_t *idx, int B)
{
    for (int b = 0; b < B; b++) {
        memcpy(t->bt + (size_t)b * (size_t)t->D, t->zt + idx[b] * (size_t)t->D, (size_t)t->D * sizeof(float));
        memcpy(t->bx + (size_t)b * (size_t)t->C, t->zx + idx[b] * (size_t)t->C, (size_t)t->C * sizeof(float));
    }
}

static double trainer_step(void *model, const size_t *idx, int B, double clip, float lr)
{
    npe_trainer *t = model;
    trainer_gather(t, idx, B);
    flow_zero_grad(t->f);
    if (flow_log_prob(t->f, t->bt, t->bx, B, t->lq) < 0) return NAN;
    double s = 0.0;
    for (int b = 0; b < B; b++) s += t->lq[b];
    double loss = -s / B;
    if (!isfinite(loss)) return loss;
    for (int b = 0; b < B; b++) t->dl[b] = -1.0f / (float)B;
    if (flow_backward(t->f, t->dl, NULL, B) < 0) return NAN;
    double norm = flow_clip_grad_norm(t->f, clip);
    if (!isfinite(norm)) return NAN;
    flow_adam_step(t->f, &t->adam, lr);
    return loss;
}

static double trainer_eval(void *model, const size_t *idx, size_t n)
{
    npe_trainer *t = model;
    double s = 0.0;
    for (size_t i = 0; i < n; i += (size_t)t->max_batch) {
        int B = (int)(n - i < (size_t)t->max_batch ? n - i : (size_t)t->max_batch);
        trainer_gather(t, idx + i, B);
        if (flow_log_prob(t->f, t->bt, t->bx, B, t->lq) < 0) return NAN;
        for (int b = 0; b < B; b++) s -= t->lq[b];
    }
    return s / (double)n;
}

static size_t trainer_n_params(void *model)
{
    return flow_n_params(((npe_trainer *)model)->f);
}

static void trainer_get(void *model, float *dst)
{
    flow_get_params(((npe_trainer *)model)->f, dst);
}

static void trainer_set(void *model, const float *src)
{
    flow_set_params(((npe_trainer *)model)->f, src);
}

static const npe_fit_ops npe_ops = {trainer_step, trainer_eval, trainer_n_params, trainer_get, trainer_set};

float *npe_zscore_floats(const double *src, size_t n, int w, const double *mean, const double *std)
{
    float *dst = malloc((n ? n : 1) * (size_t)w * sizeof *dst);
    if (!dst) return NULL;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < w; j++)
            dst[i * (size_t)w + (size_t)j] = (float)((src[i * (size_t)w + (size_t)j] - mean[j]) / std[j]);
    return dst;
}

void npe_record_provenance(model_file *m, const npe_data *d, const npe_split *s, npe_train_report *rep,
                           uint64_t seed)
{
    rep->n_dropped = d->n_dropped;
    m->prov.n_simulations = d->n_in;
    m->prov.n_dropped = d->n_dropped;
    m->prov.n_train = s->n_train;
    m->prov.n_val = s->n_val;
    m->prov.epochs = (uint32_t)rep->epochs;
    m->prov.best_epoch = (uint32_t)rep->best_epoch;
    m->prov.best_val_loss = rep->best_val_loss;
    m->prov.train_seconds = rep->seconds;
    m->prov.seed = seed;
}

int npe_train_begin(const npe_data *d, const prior *pr, const npe_train_config *cfg, model_kind kind,
                    size_t min_val, model_file **m, npe_split *s, rng r[3], char *err, size_t err_len)
{
    *m = NULL;
    memset(s, 0, sizeof *s);
    if (!pr || pr->dim != d->dim) {
        snprintf(err, err_len, "the prior has %d dimensions but theta has %d", pr ? pr->dim : 0, d->dim);
        return -1;
    }
    if (cfg->threads > 0) nn_set_threads(cfg->threads);
    *m = model_file_new(kind, d->dim, d->context);
    if (!*m || model_file_set_prior(*m, pr) < 0) {
        model_file_destroy(m);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    for (int i = 0; i < 3; i++) rng_seed(&r[i], cfg->seed, (uint64_t)i);
    if (npe_split_make(s, d->n, cfg->val_frac, &r[1]) < 0 || s->n_val < min_val) {
        npe_split_free(s);
        model_file_destroy(m);
        snprintf(err, err_len, "cannot split %zu simulations into training and validation sets (too few?)", d->n);
        return -1;
    }
    npe_zscore_fit(d->theta, d->dim, s->train, s->n_train, (*m)->theta_mean, (*m)->theta_std);
    npe_zscore_fit(d->x, d->context, s->train, s->n_train, (*m)->x_mean, (*m)->x_std);
    return 0;
}

npe_posterior *npe_train(const npe_data *d, const prior *pr, const flow_config *fcfg, const npe_train_config *cfg,
                         npe_train_report *rep, char *err, size_t err_len)
{
    npe_train_config defaults = npe_train_defaults();
    if (!cfg) cfg = &defaults;
    npe_train_report local_rep;
    if (!rep) rep = &local_rep;
    memset(rep, 0, sizeof *rep);
    if (!(cfg->val_frac > 0.0 && cfg->val_frac < 1.0)) {
        snprintf(err, err_len, "validation fraction must be in (0, 1), got %g", cfg->val_frac);
        return NULL;
    }
    if (!(cfg->lr > 0.0f) || cfg->batch < 1) {
        snprintf(err, err_len, "learning rate and batch size must be positive");
        return NULL;
    }
    flow_config fc = fcfg ? *fcfg : flow_config_default(FLOW_MAF, d->dim, d->context);
    fc.dim = d->dim;
    fc.context = d->context;
    model_file *m;
    npe_split s;
    rng rs[3];
    if (npe_train_begin(d, pr, cfg, fc.kind == FLOW_NSF ? MODEL_NPE_NSF : MODEL_NPE_MAF, 0, &m, &s, rs, err,
                        err_len) < 0)
        return NULL;
    m->flow = fc;
    rng r_init = rs[0], r_batch = rs[2];
    npe_posterior *p = posterior_wrap(m, err, err_len);
    if (!p) {
        npe_split_free(&s);
        return NULL;
    }
    int B = cfg->batch;
    npe_trainer t = {0};
    t.f = p->f;
    t.D = d->dim;
    t.C = d->context;
    t.max_batch = B > NPE_MAX_BATCH ? B : NPE_MAX_BATCH;
    t.adam = nn_adam_defaults();
    float *zt = npe_zscore_floats(d->theta, d->n, d->dim, m->theta_mean, m->theta_std);
    float *zx = npe_zscore_floats(d->x, d->n, d->context, m->x_mean, m->x_std);
    t.zt = zt;
    t.zx = zx;
    t.bt = malloc((size_t)t.max_batch * (size_t)t.D * sizeof(float));
    t.bx = malloc((size_t)t.max_batch * (size_t)t.C * sizeof(float));
    t.lq = malloc((size_t)t.max_batch * sizeof(float));
    t.dl = malloc((size_t)t.max_batch * sizeof(float));
    int rc = -1;
    if (B > NPE_MAX_BATCH) {
        /* The flow's activation buffers must hold a whole training batch. */
        flow_destroy(&p->f);
        p->f = t.f = flow_new(&m->flow, B);
    }
    if (!zt || !zx || !t.bt || !t.bx || !t.lq || !t.dl || !t.f) {
        snprintf(err, err_len, "out of memory for training");
        goto out;
    }
    flow_init(p->f, &r_init);
    if (npe_fit(&npe_ops, &t, &s, cfg, &r_batch, "npe", rep, err, err_len) < 0) goto out;
    npe_record_provenance(m, d, &s, rep, cfg->seed);
    /* Room for the parameter snapshot, filled by npe_posterior_model. */
    float *snap = calloc(flow_n_params(p->f) ? flow_n_params(p->f) : 1, sizeof *snap);
    if (!snap) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    free(m->params);
    m->params = snap;
    m->n_params = flow_n_params(p->f);
    npe_posterior_model(p);
    rc = 0;
out:
    free(zt);
    free(zx);
    free(t.bt);
    free(t.bx);
    free(t.lq);
    free(t.dl);
    npe_split_free(&s);
    if (rc < 0) npe_posterior_destroy(&p);
    return p;
}

/* ---- posterior use ------------------------------------------------------------------- */

/* z(x_o) into p->zx row 0; -1 when x_o has a non-finite value. */
static int set_context_row(npe_posterior *p, const double *x_o, float *dst)
{
    for (int j = 0; j < p->m->context; j++) {
        if (!isfinite(x_o[j])) return -1;
        dst[j] = (float)((x_o[j] - p->m->x_mean[j]) / p->m->x_std[j]);
    }
    return 0;
}

static int accept_row(const npe_posterior *p, const double *th)
{
    return row_finite(th, p->m->dim) && prior_in_support(p->m->prior, th);
}

typedef struct sample_job {
    const float *zx;    /* [context] the z-scored observation (the caller's) */
    const float *u;     /* [m, dim] base draws */
    double *th;         /* [m, dim] out: samples in original units */
    unsigned char *ok;  /* [n_blocks] 1 once block k is done */
    int m;
} sample_job;

static int sample_block(void *arg, int k, npe_posterior *own)
{
    sample_job *j = arg;
    const int D = own->m->dim, r0 = k * NPE_SAMPLE_BLOCK;
    const int B = j->m - r0 < NPE_SAMPLE_BLOCK ? j->m - r0 : NPE_SAMPLE_BLOCK;
    if (flow_sample_base(own->f, j->zx, j->u + (size_t)r0 * D, B, own->zt, NULL) < 0) return -1;
    double *th = j->th + (size_t)r0 * D;
    for (size_t i = 0; i < (size_t)B; i++)
        for (int d = 0; d < D; d++)
            th[i * D + d] = (double)own->zt[i * D + d] * own->m->theta_std[d] + own->m->theta_mean[d];
    j->ok[k] = 1;
    return 0;
}

/* Transform m base draws in u into p->th-like rows th, the blocks on team
 * (NULL: here).  0 or -1. */
static int sample_chunk(npe_posterior *p, const npe_team *team, const float *u, int m, double *th,
                        unsigned char *ok)
{
    sample_job j = {p->zx, u, th, ok, m};
    const int nb = (m + NPE_SAMPLE_BLOCK - 1) / NPE_SAMPLE_BLOCK;
    memset(ok, 0, (size_t)nb);
    if (team && nb > 1) team->run(team->ctx, sample_block, &j, nb);
    /* What the team did not do (or without one: everything) runs here. */
    for (int k = 0; k < nb; k++)
        if (!ok[k] && sample_block(&j, k, p) < 0) return -1;
    return 0;
}

/* n standard-normal base draws from r, in order (row by row), as flow_sample
 * would draw them. */
static void draw_base(float *u, size_t n, rng *r)
{
    for (size_t i = 0; i < n; i++) u[i] = (float)rng_normal(r);
}

/* Draw m (<= NPE_MAX_BATCH) flow samples for the context in p->zx into p->th
 * in original units, on this thread.  0 or -1. */
static int draw_chunk(npe_posterior *p, int m, rng *r)
{
    draw_base(p->u, (size_t)m * (size_t)p->m->dim, r);
    return sample_chunk(p, NULL, p->u, m, p->th, p->ok);
}

int npe_sample_team(npe_posterior *p, const npe_team *team, const double *x_o, size_t n, rng *r,
                    double max_seconds, double *out, npe_sample_report *rep, char *err, size_t err_len)
{
    npe_sample_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    rep->acceptance = 1.0;
    if (set_context_row(p, x_o, p->zx) < 0) {
        snprintf(err, err_len, "the observation has a NaN or infinite value");
        return -1;
    }
    if (max_seconds <= 0) max_seconds = NPE_DEFAULT_MAX_SECONDS;
    const int D = p->m->dim, bounded = prior_is_bounded(p->m->prior);
    const double t0 = now_seconds();
    float *u = NULL;
    double *th = NULL;
    unsigned char *ok = NULL;
    int cap = 0, rc = -1;
    size_t got = 0;
    while (got < n) {
        double el = now_seconds() - t0;
        if (el > max_seconds) {
            rep->seconds = el;
            rep->acceptance = rep->drawn ? (double)rep->accepted / (double)rep->drawn : 0.0;
            snprintf(err, err_len, "sampling stopped after %.1f s (the time bound): %zu of %zu samples, acceptance "
                     "rate %.3g (%llu of %llu draws inside the prior's support); the posterior estimate puts almost "
                     "no mass inside the prior's support for this observation (is x_o far from the simulations?)",
                     el, got, n, rep->acceptance, (unsigned long long)rep->accepted, (unsigned long long)rep->drawn);
            goto out;
        }
        /* Draw about what is still needed given the acceptance so far (+10%
         * and a few spare), not a whole maximal chunk: a 100-sample query
         * should cost ~100 flow samples, not thousands. */
        size_t want = n - got;
        double acc = bounded ? (double)(rep->accepted + 1) / (double)(rep->drawn + 1) : 1.0;
        double need = bounded ? (double)want / acc * 1.1 + 8.0 : (double)want;
        int m = need < (double)NPE_SAMPLE_CHUNK ? (int)need : NPE_SAMPLE_CHUNK;
        if (m < 1) m = 1;
        if (m > cap) {
            float *nu = realloc(u, (size_t)m * D * sizeof *nu);
            if (nu) u = nu;
            double *nth = realloc(th, (size_t)m * D * sizeof *nth);
            if (nth) th = nth;
            unsigned char *nok = realloc(ok, (size_t)(m + NPE_SAMPLE_BLOCK - 1) / NPE_SAMPLE_BLOCK);
            if (nok) ok = nok;
            if (!nu || !nth || !nok) {
                snprintf(err, err_len, "out of memory for %d samples", m);
                goto out;
            }
            cap = m;
        }
        draw_base(u, (size_t)m * D, r);
        if (sample_chunk(p, team, u, m, th, ok) < 0) {
            snprintf(err, err_len, "flow sampling failed");
            goto out;
        }
        rep->drawn += (uint64_t)m;
        for (int i = 0; i < m && got < n; i++) {
            const double *row = th + (size_t)i * D;
            if (!accept_row(p, row)) continue;
            rep->accepted++;
            memcpy(out + got * D, row, (size_t)D * sizeof *row);
            got++;
        }
    }
    rep->seconds = now_seconds() - t0;
    rep->acceptance = rep->drawn ? (double)rep->accepted / (double)rep->drawn : 1.0;
    rc = 0;
out:
    free(u);
    free(th);
    free(ok);
    return rc;
}

int npe_sample(npe_posterior *p, const double *x_o, size_t n, rng *r, double max_seconds, double *out,
               npe_sample_report *rep, char *err, size_t err_len)
{
    return npe_sample_team(p, NULL, x_o, n, r, max_seconds, out, rep, err, err_len);
}

int npe_log_prob(npe_posterior *p, const double *theta, size_t n, const double *x, size_t n_x, double *out,
                 char *err, size_t err_len)
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
    for (size_t i0 = 0; i0 < n; i0 += NPE_MAX_BATCH) {
        int B = (int)(n - i0 < NPE_MAX_BATCH ? n - i0 : NPE_MAX_BATCH);
        for (int b = 0; b < B; b++) {
            const double *th = theta + (i0 + (size_t)b) * (size_t)D;
            for (int j = 0; j < D; j++) {
                /* Out-of-support rows get -inf below; feed them finite
                 * values so the flow never sees NaN or inf. */
                double v = isfinite(th[j]) ? (th[j] - p->m->theta_mean[j]) / p->m->theta_std[j] : 0.0;
                p->zt[(size_t)b * (size_t)D + (size_t)j] = (float)v;
            }
            set_context_row(p, x + (n_x == n ? i0 + (size_t)b : 0) * (size_t)C, p->zx + (size_t)b * (size_t)C);
        }
        if (flow_log_prob(p->f, p->zt, p->zx, B, p->lq) < 0) {
            snprintf(err, err_len, "flow evaluation failed");
            return -1;
        }
        for (int b = 0; b < B; b++) {
            const double *th = theta + (i0 + (size_t)b) * (size_t)D;
            out[i0 + (size_t)b] = accept_row(p, th) ? (double)p->lq[b] - p->log_det : -INFINITY;
        }
    }
    return 0;
}

int npe_support_mass(npe_posterior *p, const double *x_o, size_t n_draws, rng *r, double max_seconds, double *mass,
                     char *err, size_t err_len)
{
    *mass = 1.0;
    if (set_context_row(p, x_o, p->zx) < 0) {
        snprintf(err, err_len, "the observation has a NaN or infinite value");
        return -1;
    }
    if (!prior_is_bounded(p->m->prior)) return 0;
    if (n_draws == 0) n_draws = 10000;
    if (max_seconds <= 0) max_seconds = NPE_DEFAULT_MAX_SECONDS;
    double t0 = now_seconds();
    size_t done = 0, acc = 0;
    int D = p->m->dim;
    while (done < n_draws) {
        if (now_seconds() - t0 > max_seconds) {
            snprintf(err, err_len, "estimating the in-support mass: time bound of %.1f s passed after %zu draws",
                     max_seconds, done);
            return -1;
        }
        int m = n_draws - done < NPE_MAX_BATCH ? (int)(n_draws - done) : NPE_MAX_BATCH;
        if (draw_chunk(p, m, r) < 0) {
            snprintf(err, err_len, "flow sampling failed");
            return -1;
        }
        for (int i = 0; i < m; i++) acc += (size_t)accept_row(p, p->th + (size_t)i * (size_t)D);
        done += (size_t)m;
    }
    if (acc == 0) {
        snprintf(err, err_len, "none of %zu posterior draws falls inside the prior's support: the in-support mass is "
                 "~0 and the renormalised density undefined for this observation", done);
        return -1;
    }
    *mass = (double)acc / (double)done;
    return 0;
}

int npe_log_prob_normalised(npe_posterior *p, const double *theta, size_t n, const double *x_o, size_t n_draws,
                            rng *r, double max_seconds, double *out, double *mass_out, char *err, size_t err_len)
{
    double mass;
    if (npe_support_mass(p, x_o, n_draws, r, max_seconds, &mass, err, err_len) < 0) return -1;
    if (mass_out) *mass_out = mass;
    if (npe_log_prob(p, theta, n, x_o, 1, out, err, err_len) < 0) return -1;
    double lm = log(mass);
    for (size_t i = 0; i < n; i++) out[i] -= lm;
    return 0;
}
