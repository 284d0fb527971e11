/* nn.h — float32 neural-network layer kernels and the Adam/AdamW optimiser,
 * in the style of llm.c: plain functions over caller-owned arrays.
 *
 * Conventions (every kernel):
 *   - float32, batch-major, row-major: a batch of B vectors of width C is a
 *     float array [B, C] with row b at x + b*C.
 *   - Dimensions are int (they are passed to cblas_sgemm, which takes int);
 *     they must be > 0 unless stated.
 *   - Every _forward writes (overwrites) its outputs.  Every _backward
 *     ACCUMULATES (+=) into its gradient outputs (dinp, dw, db, ...), so
 *     gradients of a shared input or parameter add up naturally; zero the
 *     gradient buffers (nn_zero) before a fresh backward pass.
 *   - A NULL gradient pointer in a _backward means "not wanted": that
 *     gradient is neither computed nor touched (e.g. dinp = NULL for the first
 *     layer of a network whose input is data).
 *   - Outputs must not alias inputs unless stated; gradient outputs must not
 *     alias anything.
 *   - Shapes in comments use I = n_in and O = n_out.  (The parameters are not
 *     called I and O: <complex.h>, which OpenBLAS's cblas.h includes, defines I.)
 *   - Weights follow the torch.nn.Linear layout: W [O, I] (out_features rows,
 *     in_features columns), bias b [O]; out = inp W^T + b.
 * Ownership: callers own every array; nothing is allocated or retained,
 * except where a scratch buffer is explicitly passed in.
 * Misuse (negative sizes, NULL required pointers) is a bug and asserts.
 */
#ifndef PPX_NN_H
#define PPX_NN_H

#include <stddef.h>
#include <stdint.h>
#include "rng.h"

/* ---- threads ------------------------------------------------------------- */

/* Number of OpenBLAS threads used by every sgemm in the process.  OpenBLAS
 * itself starts with one thread per core; ppxd calls this once at start-up
 * (default 1: the daemon parallelises over simulators, not inside a matmul).
 * n <= 0 means 1.  Process-wide (OpenBLAS state), so call it before any
 * training thread starts. */
void nn_set_threads(int n);
/* The current OpenBLAS thread count. */
int nn_get_threads(void);

/* OpenBLAS picks its kernels from the CPU model at load time; on virtual
 * machines that hide the model it falls back to the generic "Prescott"
 * kernels, several times slower.  When that happened and the CPU has AVX-512
 * (or AVX2/FMA), set OPENBLAS_CORETYPE accordingly and re-execute the
 * program (argv as given to main) so the right kernels load.  Call first
 * thing in main(); returns only when nothing was done (already right,
 * OPENBLAS_CORETYPE set by the user, or exec failed). */
void nn_blas_fix_coretype(char **argv);

/* ---- utilities ----------------------------------------------------------- */

/* p[0..n) = 0. */
void nn_zero(float *p, size_t n);
/* p[i] ~ Uniform(-bound, bound), drawn in order from r. */
void nn_init_uniform(float *p, size_t n, float bound, rng *r);

/* ---- linear -------------------------------------------------------------- */

/* out[B,O] = inp[B,I] W[O,I]^T + b[O].  b may be NULL (no bias). */
void nn_linear_forward(float *out, const float *inp, const float *w, const float *b,
                       int B, int n_in, int n_out);
/* Given dout[B,O]:  dinp[B,I] += dout W;  dw[O,I] += dout^T inp;
 * db[O] += sum_b dout[b,:].  Any of dinp, dw, db may be NULL. */
void nn_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int B, int n_in, int n_out);

/* ---- masked linear (MADE) ------------------------------------------------ */

/* out[B,O] = inp[B,I] (W∘M)^T + b, with M[O,I] a fixed {0,1} mask (as floats).
 * scratch [O*I] floats receives W∘M (contents on return unspecified).
 * The stored W may hold any values where M = 0: they never reach the output. */
void nn_masked_linear_forward(float *out, const float *inp, const float *w, const float *mask,
                              const float *b, float *scratch, int B, int n_in, int n_out);
/* dinp[B,I] += dout (W∘M);  dw[O,I] += (dout^T inp)∘M (so masked-out weights
 * get exactly zero gradient);  db[O] += sum_b dout.  scratch [O*I] floats.
 * Any of dinp, dw, db may be NULL. */
void nn_masked_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mask,
                               float *scratch, int B, int n_in, int n_out);

/* ---- elementwise activations --------------------------------------------- */

typedef enum nn_act {
    NN_ACT_RELU = 0,     /* max(x, 0); derivative at 0 taken as 0 */
    NN_ACT_TANH = 1,
    NN_ACT_ELU = 2,      /* x > 0 ? x : exp(x) - 1   (alpha = 1) */
    NN_ACT_GELU = 3,     /* tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))) */
    NN_ACT_IDENTITY = 4  /* no activation */
} nn_act;
#define NN_ACT_COUNT 5

/* "relu", "tanh", "elu", "gelu", "identity"; "?" for an invalid value. */
const char *nn_act_name(nn_act a);
/* The activation named s (as above), or -1 if unknown. */
int nn_act_from_name(const char *s);

/* The elementwise kernels below are vectorised for the CPU's vector unit
 * (src/nn/simd.h) and give the same bits on every x86-64 CPU.  tanh (also in
 * GELU) and ELU's expm1/exp are ppxd's own approximations, within 3 ulp of
 * the exact functions for every float input (tanh is exactly +-1 from
 * |x| >= 9.0109, as tanhf); ReLU is exact, NaN and -0 giving +0.
 * out[n] = f(inp[n]); out may alias inp (in place). */
void nn_relu_forward(float *out, const float *inp, size_t n);
void nn_tanh_forward(float *out, const float *inp, size_t n);
void nn_elu_forward(float *out, const float *inp, size_t n);
void nn_gelu_forward(float *out, const float *inp, size_t n);
/* dinp[n] += f'(inp[n]) * dout[n], where inp is the forward INPUT
 * (pre-activation).  dinp must not alias dout or inp. */
void nn_relu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void nn_tanh_backward(float *dinp, const float *inp, const float *dout, size_t n);
void nn_elu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void nn_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
/* Dispatch on a (identity: copy / dinp += dout). */
void nn_act_forward(nn_act a, float *out, const float *inp, size_t n);
void nn_act_backward(nn_act a, float *dinp, const float *inp, const float *dout, size_t n);

/* A linear layer and the activation after it: pre[B,O] = inp W^T + b (as
 * nn_linear_forward) and post[B,O] = act(pre) (as nn_act_forward), the bias
 * added in the activation's pass over the output instead of a pass of its
 * own.  Its backward is nn_act_backward then nn_linear_backward.  post may
 * be pre (the pre-activations are then not kept). */
void nn_linear_act_forward(float *pre, float *post, const float *inp, const float *w,
                           const float *b, nn_act act, int B, int n_in, int n_out);
/* The same with a masked linear layer (mask and scratch as in
 * nn_masked_linear_forward). */
void nn_masked_linear_act_forward(float *pre, float *post, const float *inp, const float *w,
                                  const float *mask, const float *b, float *scratch, nn_act act,
                                  int B, int n_in, int n_out);

/* ---- layer norm ----------------------------------------------------------- */

#define NN_LAYERNORM_EPS 1e-5f

/* Per row of inp[B,C]: out = (x - mean) * rstd * gamma[C] + beta[C] with
 * rstd = 1/sqrt(var + NN_LAYERNORM_EPS), var the biased (1/C) variance.
 * mean[B] and rstd[B] are written for the backward pass. */
void nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int B, int C);
/* dinp[B,C] += ..., dgamma[C] += ..., dbeta[C] += ...; any may be NULL.
 * inp, mean, rstd as given to / returned by the forward. */
void nn_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean,
                           const float *rstd, int B, int C);

/* ---- residual block ------------------------------------------------------- */

/* The nflows/sbi PRE-ACTIVATION residual block (nflows ResidualBlock without
 * context, batch norm or dropout), width H:
 *     a0 = act(x)                 [B,H]
 *     h1 = a0 W1^T + b1           [B,H]     W1 [H,H], b1 [H]
 *     a1 = act(h1)                [B,H]
 *     out = x + a1 W2^T + b2      [B,H]     W2 [H,H], b2 [H]
 * The forward stores the intermediates a0, h1, a1 (each [B,H], caller-owned)
 * for the backward.  out must not alias inp. */
void nn_resblock_forward(float *out, float *a0, float *h1, float *a1, const float *inp,
                         const float *w1, const float *b1, const float *w2, const float *b2,
                         nn_act act, int B, int H);
/* Accumulates dinp[B,H] (+= dout + the path through the block), dw1, db1,
 * dw2, db2 (any may be NULL).  scratch [2*B*H] floats. */
void nn_resblock_backward(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                          float *scratch, const float *dout, const float *inp,
                          const float *a0, const float *h1, const float *a1,
                          const float *w1, const float *w2, nn_act act, int B, int H);

/* ---- losses ---------------------------------------------------------------- */

/* Softmax cross-entropy over C classes: logits[B,C], targets[B] in [0,C).
 * Writes probs[B,C] (softmax, kept for the backward) and returns the mean
 * over the batch of -log probs[b, targets[b]] (computed in double). */
double nn_softmax_xent_forward(float *probs, const float *logits, const int *targets,
                               int B, int C);
/* dlogits[B,C] += (probs - onehot(targets)) / B  — the gradient of the mean loss. */
void nn_softmax_xent_backward(float *dlogits, const float *probs, const int *targets,
                              int B, int C);

/* Binary cross-entropy with logits: logits[B] (one logit per row), targets[B]
 * in [0,1].  Returns mean_b [softplus(z) - t z] (numerically stable). */
double nn_bce_logits_forward(const float *logits, const float *targets, int B);
/* dlogits[B] += (sigmoid(z) - t) / B. */
void nn_bce_logits_backward(float *dlogits, const float *logits, const float *targets, int B);

/* ---- optimiser --------------------------------------------------------------- */

/* Adam (Kingma & Ba) with bias correction, as torch.optim.Adam/AdamW:
 *     g  = grad (+ weight_decay * p          if !decoupled: classic L2, "Adam")
 *     m  = beta1 m + (1-beta1) g
 *     v  = beta2 v + (1-beta2) g^2
 *     p -= lr * weight_decay * p             if decoupled ("AdamW"), before the step
 *     p -= lr * (m / (1-beta1^t)) / (sqrt(v / (1-beta2^t)) + eps)
 * All of params, grads, m, v are [n] with the same layout (one contiguous
 * parameter buffer); m and v start at zero. */
typedef struct nn_adam_config {
    float beta1;        /* 0.9 */
    float beta2;        /* 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0: none */
    int decoupled;      /* 1: AdamW, 0: L2 added to the gradient */
} nn_adam_config;

/* {0.9, 0.999, 1e-8, 0, 0}: plain Adam. */
nn_adam_config nn_adam_defaults(void);
/* One step number t (1-based: the first step is t = 1) at learning rate lr.
 * grads is only read. */
void nn_adam_step(float *params, const float *grads, float *m, float *v, size_t n,
                  const nn_adam_config *cfg, float lr, long t);

/* sqrt(sum g^2), accumulated in double (16 partial sums, element i into sum
 * i mod 16, added in order: the same bits whatever the vector width). */
double nn_grad_norm(const float *g, size_t n);
/* Global-norm clipping: if the norm of g exceeds max_norm (> 0), scale g by
 * max_norm / norm.  Returns the norm BEFORE clipping.  A non-finite norm
 * leaves g untouched (the caller should skip the step). */
double nn_clip_grad_norm(float *g, size_t n, double max_norm);

/* ---- learning-rate schedules --------------------------------------------------- */

typedef enum nn_lr_kind {
    NN_LR_CONSTANT = 0, /* lr0 */
    NN_LR_EXP = 1,      /* lr0 * gamma^step */
    NN_LR_COSINE = 2    /* lr_min + (lr0-lr_min)(1+cos(pi min(step,total)/total))/2 */
} nn_lr_kind;

typedef struct nn_lr_schedule {
    nn_lr_kind kind;
    float lr0;        /* initial rate */
    float gamma;      /* NN_LR_EXP: multiplicative decay per step, in (0,1] */
    long total_steps; /* NN_LR_COSINE: steps to reach lr_min (> 0) */
    float lr_min;     /* NN_LR_COSINE: floor */
    long warmup_steps;/* any kind: linear ramp lr * (step+1)/warmup for step < warmup; 0 = none */
} nn_lr_schedule;

/* Learning rate for step number `step` (0-based). */
float nn_lr_at(const nn_lr_schedule *s, long step);

#endif
