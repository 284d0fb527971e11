/* nn.c — layer kernels and optimiser (see nn.h for the conventions). */
#include "nn/nn.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/simd.h"

/* ---- threads ------------------------------------------------------------- */

void nn_set_threads(int n)
{
    openblas_set_num_threads(n > 0 ? n : 1);
}

int nn_get_threads(void)
{
    return openblas_get_num_threads();
}

/* ---- utilities ----------------------------------------------------------- */

void nn_zero(float *p, size_t n)
{
    if (n)
        memset(p, 0, n * sizeof *p);
}

void nn_init_uniform(float *p, size_t n, float bound, rng *r)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
}

/* Column sums of dout[B,O] added into db[O]: the bias gradient. */
static void add_bias_grad(float *db, const float *dout, int B, int n_out)
{
    simd_col_sums_add(db, dout, (size_t)B, (size_t)n_out);
}

/* out[B,O] = inp W^T + b via one sgemm: rows pre-filled with the bias so the
 * product accumulates onto it (beta = 1), saving a second pass. */
static void linear_fwd(float *out, const float *inp, const float *w, const float *b,
                       int B, int n_in, int n_out)
{
    float beta = 0.0f;
    if (b) {
        simd_fill_rows(out, b, (size_t)B, (size_t)n_out);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in,
                1.0f, inp, n_in, w, n_in, beta, out, n_out);
}

/* out[B,O] = inp W^T (bias left to the caller's pass over the output). */
static void linear_nobias(float *out, const float *inp, const float *w, int B, int n_in, int n_out)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in,
                1.0f, inp, n_in, w, n_in, 0.0f, out, n_out);
}

/* pre = inp W^T + b, post = act(pre): the bias added in the activation's
 * pass rather than filled in before the sgemm. */
static void linear_act_fwd(float *pre, float *post, const float *inp, const float *w,
                           const float *b, nn_act act, int B, int n_in, int n_out)
{
    linear_nobias(pre, inp, w, B, n_in, n_out);
    const size_t n = (size_t)B * n_out;
    if (b)
        simd_bias_act(pre, post, b, (size_t)B, (size_t)n_out, act);
    else
        nn_act_forward(act, post, pre, n);
}

/* ---- linear -------------------------------------------------------------- */

void nn_linear_forward(float *out, const float *inp, const float *w, const float *b,
                       int B, int n_in, int n_out)
{
    assert(out && inp && w && B > 0 && n_in > 0 && n_out > 0);
    linear_fwd(out, inp, w, b, B, n_in, n_out);
}

void nn_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int B, int n_in, int n_out)
{
    assert(dout && B > 0 && n_in > 0 && n_out > 0);
    if (dinp) {
        assert(w);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out,
                    1.0f, dout, n_out, w, n_in, 1.0f, dinp, n_in);
    }
    if (dw) {
        assert(inp);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B,
                    1.0f, dout, n_out, inp, n_in, 1.0f, dw, n_in);
    }
    if (db)
        add_bias_grad(db, dout, B, n_out);
}

void nn_linear_act_forward(float *pre, float *post, const float *inp, const float *w,
                           const float *b, nn_act act, int B, int n_in, int n_out)
{
    assert(pre && post && inp && w && B > 0 && n_in > 0 && n_out > 0);
    linear_act_fwd(pre, post, inp, w, b, act, B, n_in, n_out);
}

/* ---- masked linear -------------------------------------------------------- */

static void apply_mask(float *dst, const float *w, const float *mask, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = w[i] * mask[i];
}

void nn_masked_linear_forward(float *out, const float *inp, const float *w, const float *mask,
                              const float *b, float *scratch, int B, int n_in, int n_out)
{
    assert(out && inp && w && mask && scratch && B > 0 && n_in > 0 && n_out > 0);
    apply_mask(scratch, w, mask, (size_t)n_out * n_in);
    linear_fwd(out, inp, scratch, b, B, n_in, n_out);
}

void nn_masked_linear_act_forward(float *pre, float *post, const float *inp, const float *w,
                                  const float *mask, const float *b, float *scratch, nn_act act,
                                  int B, int n_in, int n_out)
{
    assert(pre && post && inp && w && mask && scratch && B > 0 && n_in > 0 && n_out > 0);
    apply_mask(scratch, w, mask, (size_t)n_out * n_in);
    linear_act_fwd(pre, post, inp, scratch, b, act, B, n_in, n_out);
}

void nn_masked_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mask,
                               float *scratch, int B, int n_in, int n_out)
{
    assert(dout && mask && scratch && B > 0 && n_in > 0 && n_out > 0);
    const size_t n = (size_t)n_out * n_in;
    if (dinp) {
        assert(w);
        apply_mask(scratch, w, mask, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out,
                    1.0f, dout, n_out, scratch, n_in, 1.0f, dinp, n_in);
    }
    if (dw) {
        /* The unmasked product goes to scratch first: accumulating it straight
         * into dw would leak gradient into masked-out weights. */
        assert(inp);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B,
                    1.0f, dout, n_out, inp, n_in, 0.0f, scratch, n_in);
        for (size_t i = 0; i < n; i++)
            dw[i] += scratch[i] * mask[i];
    }
    if (db)
        add_bias_grad(db, dout, B, n_out);
}

/* ---- activations ----------------------------------------------------------- */

static const char *const act_names[NN_ACT_COUNT] = {"relu", "tanh", "elu", "gelu", "identity"};

const char *nn_act_name(nn_act a)
{
    return (unsigned)a < NN_ACT_COUNT ? act_names[a] : "?";
}

int nn_act_from_name(const char *s)
{
    for (int i = 0; s && i < NN_ACT_COUNT; i++)
        if (strcmp(s, act_names[i]) == 0)
            return i;
    return -1;
}

/* The elementwise kernels are simd.h's: branch-free, vectorised for the
 * CPU's widest vector unit (ReLU and its derivative are a large share of NSF
 * training time, tanh of MAF training and sampling). */
void nn_relu_forward(float *out, const float *inp, size_t n)
{
    simd_relu(out, inp, n);
}

void nn_relu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    simd_relu_grad(dinp, inp, dout, n);
}

void nn_tanh_forward(float *out, const float *inp, size_t n)
{
    simd_tanh(out, inp, n);
}

void nn_tanh_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    simd_tanh_grad(dinp, inp, dout, n);
}

void nn_elu_forward(float *out, const float *inp, size_t n)
{
    simd_elu(out, inp, n);
}

void nn_elu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    simd_elu_grad(dinp, inp, dout, n);
}

void nn_gelu_forward(float *out, const float *inp, size_t n)
{
    simd_gelu(out, inp, n);
}

void nn_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    simd_gelu_grad(dinp, inp, dout, n);
}

void nn_act_forward(nn_act a, float *out, const float *inp, size_t n)
{
    switch (a) {
    case NN_ACT_RELU: nn_relu_forward(out, inp, n); break;
    case NN_ACT_TANH: nn_tanh_forward(out, inp, n); break;
    case NN_ACT_ELU: nn_elu_forward(out, inp, n); break;
    case NN_ACT_GELU: nn_gelu_forward(out, inp, n); break;
    case NN_ACT_IDENTITY:
        if (out != inp)
            memcpy(out, inp, n * sizeof *out);
        break;
    default: assert(!"invalid nn_act");
    }
}

void nn_act_backward(nn_act a, float *dinp, const float *inp, const float *dout, size_t n)
{
    switch (a) {
    case NN_ACT_RELU: nn_relu_backward(dinp, inp, dout, n); break;
    case NN_ACT_TANH: nn_tanh_backward(dinp, inp, dout, n); break;
    case NN_ACT_ELU: nn_elu_backward(dinp, inp, dout, n); break;
    case NN_ACT_GELU: nn_gelu_backward(dinp, inp, dout, n); break;
    case NN_ACT_IDENTITY: simd_add(dinp, dout, n); break;
    default: assert(!"invalid nn_act");
    }
}

/* ---- layer norm ------------------------------------------------------------ */

void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int B, int C)
{
    assert(out && mean && rstd && inp && gamma && beta && B > 0 && C > 0);
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * C;
        float *y = out + (size_t)b * C;
        /* Two-pass moments in double: one pass (E[x^2] - E[x]^2) cancels
         * catastrophically for rows with a large mean. */
        double m = 0.0;
        for (int i = 0; i < C; i++)
            m += x[i];
        m /= C;
        double var = 0.0;
        for (int i = 0; i < C; i++) {
            const double d = x[i] - m;
            var += d * d;
        }
        var /= C;
        const float s = (float)(1.0 / sqrt(var + NN_LAYERNORM_EPS));
        const float mf = (float)m;
        for (int i = 0; i < C; i++)
            y[i] = (x[i] - mf) * s * gamma[i] + beta[i];
        mean[b] = mf;
        rstd[b] = s;
    }
}

void nn_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int B, int C)
{
    assert(dout && inp && gamma && mean && rstd && B > 0 && C > 0);
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * C;
        const float *dy = dout + (size_t)b * C;
        const float m = mean[b], s = rstd[b];
        /* dx = s (dn - mean(dn) - n mean(dn n)) with n the normalised row and
         * dn = gamma dy: the mean and variance depend on every x[i]. */
        double dn_mean = 0.0, dn_n_mean = 0.0;
        for (int i = 0; i < C; i++) {
            const float nrm = (x[i] - m) * s;
            const float dn = gamma[i] * dy[i];
            dn_mean += dn;
            dn_n_mean += (double)dn * nrm;
        }
        dn_mean /= C;
        dn_n_mean /= C;
        for (int i = 0; i < C; i++) {
            const float nrm = (x[i] - m) * s;
            if (dbeta)
                dbeta[i] += dy[i];
            if (dgamma)
                dgamma[i] += nrm * dy[i];
            if (dinp) {
                const float dn = gamma[i] * dy[i];
                dinp[(size_t)b * C + i] +=
                    (float)((dn - dn_mean - nrm * dn_n_mean) * s);
            }
        }
    }
}

/* ---- residual block -------------------------------------------------------- */

void nn_resblock_forward(float *out, float *a0, float *h1, float *a1, const float *inp,
                         const float *w1, const float *b1, const float *w2, const float *b2,
                         nn_act act, int B, int H)
{
    assert(out && a0 && h1 && a1 && inp && w1 && w2 && out != inp && B > 0 && H > 0);
    const size_t n = (size_t)B * H;
    nn_act_forward(act, a0, inp, n);
    linear_act_fwd(h1, a1, a0, w1, b1, act, B, H, H);
    linear_nobias(out, a1, w2, B, H, H);
    if (b2)
        simd_bias_add(out, inp, b2, (size_t)B, (size_t)H);
    else
        simd_add(out, inp, n);
}

void nn_resblock_backward(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                          float *scratch, const float *dout, const float *inp,
                          const float *a0, const float *h1, const float *a1,
                          const float *w1, const float *w2, nn_act act, int B, int H)
{
    assert(scratch && dout && B > 0 && H > 0);
    const size_t n = (size_t)B * H;
    float *da = scratch, *dh = scratch + n;
    /* Back through out = x + lin2(a1). */
    nn_zero(da, n);
    nn_linear_backward(da, dw2, db2, dout, a1, w2, B, H, H);
    /* a1 = act(h1) */
    nn_zero(dh, n);
    nn_act_backward(act, dh, h1, da, n);
    /* h1 = lin1(a0); da0 is only needed when dinp is wanted. */
    nn_zero(da, n);
    nn_linear_backward(dinp ? da : NULL, dw1, db1, dh, a0, w1, B, H, H);
    if (dinp) {
        nn_act_backward(act, dinp, inp, da, n);
        simd_add(dinp, dout, n);
    }
}

/* ---- losses ---------------------------------------------------------------- */

double nn_softmax_xent_forward(float *probs, const float *logits, const int *targets,
                               int B, int C)
{
    assert(probs && logits && targets && B > 0 && C > 0);
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * C;
        float *p = probs + (size_t)b * C;
        float zmax = z[0];
        for (int c = 1; c < C; c++)
            if (z[c] > zmax)
                zmax = z[c];
        double sum = 0.0;
        for (int c = 0; c < C; c++)
            sum += exp((double)z[c] - zmax);
        for (int c = 0; c < C; c++)
            p[c] = (float)(exp((double)z[c] - zmax) / sum);
        const int t = targets[b];
        assert(t >= 0 && t < C);
        /* -log p_t from the logits, not log(p[t]): p[t] may underflow to 0. */
        loss += log(sum) - ((double)z[t] - zmax);
    }
    return loss / B;
}

void nn_softmax_xent_backward(float *dlogits, const float *probs, const int *targets,
                              int B, int C)
{
    assert(dlogits && probs && targets && B > 0 && C > 0);
    const float inv = 1.0f / (float)B;
    for (int b = 0; b < B; b++) {
        const float *p = probs + (size_t)b * C;
        float *d = dlogits + (size_t)b * C;
        for (int c = 0; c < C; c++)
            d[c] += (p[c] - (c == targets[b] ? 1.0f : 0.0f)) * inv;
    }
}

double nn_bce_logits_forward(const float *logits, const float *targets, int B)
{
    assert(logits && targets && B > 0);
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        const double z = logits[b], t = targets[b];
        /* softplus(z) - t z, with softplus(z) = max(z,0) + log1p(exp(-|z|)). */
        loss += fmax(z, 0.0) + log1p(exp(-fabs(z))) - t * z;
    }
    return loss / B;
}

void nn_bce_logits_backward(float *dlogits, const float *logits, const float *targets, int B)
{
    assert(dlogits && logits && targets && B > 0);
    const double inv = 1.0 / B;
    for (int b = 0; b < B; b++) {
        const double z = logits[b];
        /* Sigmoid written for either sign so exp never overflows. */
        const double s = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
        dlogits[b] += (float)((s - targets[b]) * inv);
    }
}

/* ---- optimiser --------------------------------------------------------------- */

nn_adam_config nn_adam_defaults(void)
{
    return (nn_adam_config){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                            .weight_decay = 0.0f, .decoupled = 0};
}

void nn_adam_step(float *params, const float *grads, float *m, float *v, size_t n,
                  const nn_adam_config *cfg, float lr, long t)
{
    assert(params && grads && m && v && cfg && t >= 1);
    const float b1 = cfg->beta1, b2 = cfg->beta2, eps = cfg->eps, wd = cfg->weight_decay;
    const double bc1 = 1.0 - pow(b1, (double)t);
    const double bc2 = 1.0 - pow(b2, (double)t);
    const simd_adam_coef c = {
        .beta1 = b1,
        .beta2 = b2,
        .eps = eps,
        .l2 = cfg->decoupled ? 0.0f : wd,
        .decay = cfg->decoupled ? 1.0f - lr * wd : 1.0f,
        .step_size = (float)(lr / bc1),
        .inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2)),
    };
    simd_adam(params, grads, m, v, n, &c);
}

double nn_grad_norm(const float *g, size_t n)
{
    return sqrt(simd_sum_squares(g, n));
}

double nn_clip_grad_norm(float *g, size_t n, double max_norm)
{
    assert(max_norm > 0);
    const double norm = nn_grad_norm(g, n);
    if (isfinite(norm) && norm > max_norm)
        simd_scale(g, (float)(max_norm / norm), n);
    return norm;
}

/* ---- learning-rate schedules --------------------------------------------------- */

float nn_lr_at(const nn_lr_schedule *s, long step)
{
    assert(s);
    if (step < 0)
        step = 0;
    double lr = s->lr0;
    switch (s->kind) {
    case NN_LR_CONSTANT: break;
    case NN_LR_EXP: lr = s->lr0 * pow(s->gamma, (double)step); break;
    case NN_LR_COSINE: {
        const long total = s->total_steps > 0 ? s->total_steps : 1;
        const double frac = (double)(step < total ? step : total) / (double)total;
        lr = s->lr_min + (s->lr0 - s->lr_min) * 0.5 * (1.0 + cos(M_PI * frac));
        break;
    }
    default: assert(!"invalid nn_lr_kind");
    }
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        lr *= (double)(step + 1) / (double)s->warmup_steps;
    return (float)lr;
}

void nn_blas_fix_coretype(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) return; /* the user's choice, or we did it already */
    const char *core = openblas_get_corename();
    if (!core || strcmp(core, "Prescott") != 0) return;
    const char *want = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the generic kernels. */
}
