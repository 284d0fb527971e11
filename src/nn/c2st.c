/* c2st.c — classifier two-sample test (definition in c2st.h). */
#include "nn/c2st.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/mlp.h"
#include "nn/nn.h"
#include "rng.h"

c2st_config c2st_defaults(void)
{
    return (c2st_config){.n_folds = 5, .hidden_mult = 10, .max_epochs = 10000, .batch = 200,
                         .lr = 1e-3f, .weight_decay = 1e-4f, .tol = 1e-4,
                         .n_iter_no_change = 10, .z_score = 1, .seed = 1};
}

/* Fisher–Yates shuffle of idx[0..n). */
static void shuffle(size_t *idx, size_t n, rng *r)
{
    for (size_t i = n; i > 1; i--) {
        const size_t j = (size_t)rng_below(r, i);
        const size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

/* Work buffers of one c2st call. */
typedef struct c2st_work {
    const float *data;   /* [n, d] standardised features */
    const float *label;  /* [n] 0/1 */
    size_t d;
    size_t *train;       /* indices of the training rows */
    float *xb;           /* [batch, d] gathered minibatch */
    float *yb;           /* [batch] */
    float *dlogit;       /* [batch] */
} c2st_work;

static void gather(const c2st_work *w, const size_t *rows, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        memcpy(w->xb + i * w->d, w->data + rows[i] * w->d, w->d * sizeof(float));
        w->yb[i] = w->label[rows[i]];
    }
}

/* scikit-learn's Glorot-uniform init: weights AND biases ~ U(±sqrt(6/(fi+fo))). */
static void init_sklearn(mlp *net, rng *r)
{
    for (int l = 0; l < net->n_layers; l++) {
        const int fi = net->dims[l], fo = net->dims[l + 1];
        const float bound = (float)sqrt(6.0 / (fi + fo));
        nn_init_uniform(net->w[l], (size_t)fi * fo, bound, r);
        nn_init_uniform(net->b[l], (size_t)fo, bound, r);
    }
    nn_zero(net->grads, net->n_params);
    nn_zero(net->m, net->n_params);
    nn_zero(net->v, net->n_params);
    net->step = 0;
}

/* Train net on w->train[0..n_train); returns epochs run. */
static int train_fold(mlp *net, c2st_work *w, size_t n_train, size_t batch,
                      const c2st_config *cfg, rng *r)
{
    const nn_adam_config adam = nn_adam_defaults(); /* the L2 term is added below */
    double best = INFINITY;
    int no_improve = 0, epoch;
    for (epoch = 0; epoch < cfg->max_epochs; epoch++) {
        shuffle(w->train, n_train, r);
        double epoch_loss = 0.0;
        for (size_t s = 0; s < n_train; s += batch) {
            const size_t m = n_train - s < batch ? n_train - s : batch;
            gather(w, w->train + s, m);
            const float *logit = mlp_forward(net, w->xb, (int)m);
            double loss = nn_bce_logits_forward(logit, w->yb, (int)m);
            mlp_zero_grad(net);
            nn_zero(w->dlogit, m);
            nn_bce_logits_backward(w->dlogit, logit, w->yb, (int)m);
            mlp_backward(net, w->dlogit, NULL, (int)m);
            /* scikit-learn's L2: loss += alpha/2 sum W^2 / m, grad += alpha W / m,
             * on weights only. */
            const float a = cfg->weight_decay / (float)m;
            double sq = 0.0;
            for (int l = 0; l < net->n_layers; l++) {
                const size_t nw = (size_t)net->dims[l] * net->dims[l + 1];
                const float *W = net->w[l];
                float *dW = net->dw[l];
                for (size_t i = 0; i < nw; i++) {
                    sq += (double)W[i] * W[i];
                    dW[i] += a * W[i];
                }
            }
            loss += 0.5 * cfg->weight_decay * sq / (double)m;
            mlp_adam_step(net, &adam, cfg->lr);
            epoch_loss += loss * (double)m;
        }
        epoch_loss /= (double)n_train;
        if (epoch_loss > best - cfg->tol)
            no_improve++;
        else
            no_improve = 0;
        if (epoch_loss < best)
            best = epoch_loss;
        if (no_improve > cfg->n_iter_no_change) {
            epoch++;
            break;
        }
    }
    return epoch;
}

/* Fraction of rows[0..n) classified correctly. */
static double accuracy(mlp *net, c2st_work *w, const size_t *rows, size_t n, size_t batch)
{
    size_t correct = 0;
    for (size_t s = 0; s < n; s += batch) {
        const size_t m = n - s < batch ? n - s : batch;
        gather(w, rows + s, m);
        const float *logit = mlp_forward(net, w->xb, (int)m);
        for (size_t i = 0; i < m; i++)
            correct += (logit[i] > 0.0f) == (w->yb[i] > 0.5f);
    }
    return (double)correct / (double)n;
}

int c2st(const double *x0, size_t n0, const double *x1, size_t n1, size_t d,
         const c2st_config *cfg_in, double *score, double *epochs_out)
{
    const c2st_config cfg = cfg_in ? *cfg_in : c2st_defaults();
    const size_t n = n0 + n1;
    if (!x0 || !x1 || !score || d == 0 || d > 100000 || cfg.n_folds < 2 ||
        n < 2 * (size_t)cfg.n_folds || cfg.batch < 1 || cfg.hidden_mult < 1 ||
        cfg.max_epochs < 1 || n > (size_t)1 << 40) {
        fprintf(stderr, "c2st: invalid arguments (n0 %zu, n1 %zu, d %zu, folds %d)\n",
                n0, n1, d, cfg.n_folds);
        return -1;
    }
    for (size_t i = 0; i < n0 * d; i++)
        if (!isfinite(x0[i])) {
            fprintf(stderr, "c2st: non-finite value in the first sample set\n");
            return -1;
        }
    for (size_t i = 0; i < n1 * d; i++)
        if (!isfinite(x1[i])) {
            fprintf(stderr, "c2st: non-finite value in the second sample set\n");
            return -1;
        }

    int rc = -1;
    float *data = malloc(n * d * sizeof *data);
    float *label = malloc(n * sizeof *label);
    double *mean = calloc(d, sizeof *mean), *sd = calloc(d, sizeof *sd);
    size_t *perm = malloc(n * sizeof *perm), *train = malloc(n * sizeof *train);
    const size_t batch_cap = (size_t)cfg.batch;
    float *xb = malloc(batch_cap * d * sizeof *xb);
    float *yb = malloc(batch_cap * sizeof *yb), *dlogit = malloc(batch_cap * sizeof *dlogit);
    mlp *net = NULL;
    if (!data || !label || !mean || !sd || !perm || !train || !xb || !yb || !dlogit) {
        fprintf(stderr, "c2st: out of memory\n");
        goto done;
    }

    /* Standardise with x0's moments (two-pass, unbiased sd as torch.std). */
    for (size_t j = 0; j < d; j++) {
        mean[j] = 0.0;
        sd[j] = 1.0;
    }
    if (cfg.z_score && n0 > 0) {
        for (size_t i = 0; i < n0; i++)
            for (size_t j = 0; j < d; j++)
                mean[j] += x0[i * d + j];
        for (size_t j = 0; j < d; j++)
            mean[j] /= (double)n0;
        if (n0 > 1) {
            for (size_t j = 0; j < d; j++)
                sd[j] = 0.0;
            for (size_t i = 0; i < n0; i++)
                for (size_t j = 0; j < d; j++) {
                    const double e = x0[i * d + j] - mean[j];
                    sd[j] += e * e;
                }
            for (size_t j = 0; j < d; j++) {
                sd[j] = sqrt(sd[j] / (double)(n0 - 1));
                if (!(sd[j] > 0.0))
                    sd[j] = 1.0;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const double *row = i < n0 ? x0 + i * d : x1 + (i - n0) * d;
        for (size_t j = 0; j < d; j++)
            data[i * d + j] = (float)((row[j] - mean[j]) / sd[j]);
        label[i] = i < n0 ? 0.0f : 1.0f;
    }

    const int hidden = (int)(cfg.hidden_mult * d);
    const mlp_config mc = {.in = (int)d, .hidden = hidden, .n_hidden_layers = 2, .out = 1,
                           .act = NN_ACT_RELU};
    net = mlp_new(&mc, cfg.batch);
    if (!net)
        goto done;

    rng r;
    rng_seed(&r, cfg.seed, 0);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    shuffle(perm, n, &r);

    c2st_work w = {.data = data, .label = label, .d = d, .train = train, .xb = xb,
                   .yb = yb, .dlogit = dlogit};
    const size_t k = (size_t)cfg.n_folds;
    double acc_sum = 0.0, epoch_sum = 0.0;
    size_t start = 0;
    for (size_t f = 0; f < k; f++) {
        /* scikit-learn KFold sizes: the first n % k folds get one extra row. */
        const size_t fold_n = n / k + (f < n % k ? 1 : 0);
        size_t n_train = 0;
        for (size_t i = 0; i < n; i++)
            if (i < start || i >= start + fold_n)
                train[n_train++] = perm[i];
        const size_t batch = n_train < batch_cap ? n_train : batch_cap;
        rng fr;
        rng_seed(&fr, cfg.seed, 1 + f);
        init_sklearn(net, &fr);
        epoch_sum += train_fold(net, &w, n_train, batch, &cfg, &fr);
        acc_sum += accuracy(net, &w, perm + start, fold_n, batch_cap);
        start += fold_n;
    }
    *score = acc_sum / (double)k;
    if (epochs_out)
        *epochs_out = epoch_sum / (double)k;
    rc = 0;
done:
    mlp_destroy(&net);
    free(data);
    free(label);
    free(mean);
    free(sd);
    free(perm);
    free(train);
    free(xb);
    free(yb);
    free(dlogit);
    return rc;
}
