/* flow.h — conditional normalizing flows q(theta | x) for amortized
 * posteriors: masked autoregressive flows (MAF) and neural spline flows (NSF),
 * on the kernels and networks of src/nn/.
 *
 * A flow maps theta [D] to a standard-normal base variable u [D] through
 * n_transforms invertible transforms, each conditioned on a context x [C]:
 *     log q(theta | x) = log N(u; 0, I) + sum_t log |det d f_t / d input|.
 * Between transforms the dimensions are permuted (MAF: reversed; NSF
 * coupling: the conditioned half alternates), as in sbi's defaults.
 *
 *   MAF: each transform an affine MADE (a masked MLP with n_blocks + 1
 *        hidden layers on [theta, x], x entering every first-layer hidden
 *        unit: nflows' MADE without residual blocks, as sbi uses it) that
 *        outputs a shift and an unconstrained scale a per dimension:
 *        z' = z * (softplus(a) + 1e-3) + shift, as current nflows (details in
 *        flow.c); sbi defaults: 5 transforms, 50 hidden, 2 blocks, tanh.
 *   NSF: rational-quadratic spline transforms (Durkan et al. 2019) with
 *        n_bins bins on [-tail_bound, tail_bound] and identity (linear) tails,
 *        conditioner a residual MLP (resmlp) on the conditioning half plus x
 *        (coupling) or a MADE (autoregressive); sbi defaults: 5 transforms,
 *        10 bins, tail bound 3, 50 hidden, 2 blocks, relu.
 *        dim == 1 always uses the autoregressive form (there is no half to
 *        condition on): the spline parameters are then a function of x only
 *        (constants when context == 0).  sbi's LULinear layers between the
 *        coupling transforms are not implemented.
 *        Tails: a theta coordinate outside [-tail_bound, tail_bound] passes
 *        every spline unchanged, so q has the N(0,1) base tail there; with
 *        z-scored theta and bound 3, posterior mass beyond 3 prior standard
 *        deviations is not representable (as in sbi).
 * MADE degrees differ from nflows where nflows is wrong: with a context, the
 * first dimension of every MADE is conditioned on x (see flow.c).
 *
 * Data are float32 and already z-scored by the caller (npe.h does that).
 * Memory: a flow owns its sub-networks (each with one contiguous parameter,
 * gradient and Adam-moment buffer, llm.c style) and activation buffers for
 * max_batch rows.  Not thread-safe: one flow per thread.
 */
#ifndef PPX_FLOW_H
#define PPX_FLOW_H

#include <stddef.h>
#include "nn/nn.h"
#include "rng.h"

typedef enum flow_kind { FLOW_MAF = 1, FLOW_NSF = 2 } flow_kind;

typedef struct flow_config {
    flow_kind kind;
    int dim;            /* D = theta dimension, >= 1 */
    int context;        /* C = x dimension, >= 0 (0: unconditional) */
    int n_transforms;   /* 5 */
    int hidden;         /* 50 */
    int n_blocks;       /* 2 */
    nn_act act;         /* MAF: tanh; NSF: relu */
    int n_bins;         /* NSF: 10 */
    float tail_bound;   /* NSF: 3 */
    int autoregressive; /* NSF: 0 = coupling (default), 1 = autoregressive */
} flow_config;

/* sbi's defaults for kind, dim and context. */
flow_config flow_config_default(flow_kind kind, int dim, int context);

typedef struct flow flow;

/* NULL on an invalid config or allocation failure (reason on stderr). */
flow *flow_new(const flow_config *cfg, int max_batch);
void flow_destroy(flow **f);
const flow_config *flow_get_config(const flow *f);
/* Initialise every parameter from r (deterministic given r's state); zero
 * grads and Adam state. */
void flow_init(flow *f, rng *r);
size_t flow_n_params(const flow *f);

/* log q(theta_b | x_b) into logq[b] for theta [B, D], x [B, C] (x ignored,
 * and may be NULL, when C == 0); keeps what flow_backward needs.  0, or -1 if
 * B > max_batch (or B < 1). */
int flow_log_prob(flow *f, const float *theta, const float *x, int B, float *logq);
/* After flow_log_prob with the same B: parameter grads += d(sum_b dlogq[b] *
 * logq[b]) / d params (pass dlogq[b] = -1/B for the mean negative
 * log-likelihood).  If dx != NULL, dx [B, C] += the gradient w.r.t. x.
 * 0 or -1 (B differs from the last flow_log_prob, or a flow_sample or
 * flow_init came in between: sampling reuses the activation buffers). */
int flow_backward(flow *f, const float *dlogq, float *dx, int B);
void flow_zero_grad(flow *f);
/* Global gradient norm over all sub-networks, clipped to max_norm (> 0;
 * <= 0 means no clipping).  Returns the norm before clipping. */
double flow_clip_grad_norm(flow *f, double max_norm);
/* One Adam step of every sub-network (step counter shared). */
void flow_adam_step(flow *f, const nn_adam_config *cfg, float lr);

/* n samples theta ~ q(. | x) for ONE context x [C], into out [n, D]; in
 * chunks of max_batch.  Also writes logq [n] when logq != NULL (splines
 * are inverted in float when sampling, so this logq agrees with
 * flow_log_prob's to ~1e-4 relative, not to the last bit). 0 or -1.
 * The base draws are n*D rng_normal(r) values, row by row, so the samples
 * do not depend on max_batch (up to OpenBLAS choosing other kernels for
 * other matrix sizes: callers that need bit-identical rows use fixed
 * blocks, as npe.c does).  Autoregressive transforms (MAF, NSF with
 * autoregressive = 1) invert with D network passes per transform: the first
 * on a single row (its outputs depend on x only), the others on the MADE
 * cut down to the hidden units the pass's outputs depend on (flow.c). */
int flow_sample(flow *f, const float *x, int n, rng *r, float *out, float *logq);
/* flow_sample with the base draws given: u [n, D] standard-normal values
 * (what flow_sample would have drawn from r), e.g. drawn by a caller that
 * spreads the rows over several flows of the same parameters. */
int flow_sample_base(flow *f, const float *x, const float *u, int n, float *out, float *logq);

/* Parameters (all sub-networks, in a fixed order) to/from a flat float array
 * of flow_n_params() values: used for best-weights snapshots and model files. */
void flow_get_params(const flow *f, float *dst);
void flow_set_params(flow *f, const float *src);
/* The accumulated parameter gradients, in the same order and layout as
 * flow_get_params (for tests, diagnostics and external optimisers). */
void flow_get_grads(const flow *f, float *dst);

#endif
