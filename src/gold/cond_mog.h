/* cond_mog.h — the conditional density estimator of NDE and SCANDAL: an
 * autoregressive mixture of Gaussians p^(x | theta) of x [C] given theta [D]
 * (MadMiner's MADE-MoG, the base density of its MAF-MoG), with the score
 * t^ = grad_theta log p^(x | theta) and the derivative of that score with
 * respect to every weight, so SCANDAL's score term trains without a general
 * autograd.
 *
 *     log p^(x | theta) = sum_i log sum_k pi_ik N(x_i; mu_ik, sigma_ik^2),
 *     (a_i, mu_i, s_i) = net_i(x_<i, theta)   [3K outputs],
 *     pi_i = softmax(a_i), sigma_ik = exp(s_ik), s clipped to [COND_MOG_S_MIN, COND_MOG_S_MAX]
 *     (zero gradient beyond).
 * Each conditional has its own tanh MLP with a tangent forward (ratio_net.h)
 * rather than one masked MADE: the same autoregressive factorisation, and the
 * tangent code needs no masks.  Why a mixture rather than an affine or spline
 * flow: in one dimension (the Galton board) a stack of affine transforms
 * conditioned on theta is one Gaussian, and the spline flow (src/flow) has no
 * tangent forward or second derivatives; the mixture's are closed-form
 * (cond_mog_mix_eval / cond_mog_mix_hvp).
 *
 * Score and its backward.  With g_i = d lp_i / d o_i (o_i the 3K outputs of
 * net_i) and odot_ik = d o_i / d theta_k (the tangent forward),
 *     t^_k = sum_i g_i . odot_ik.
 * For a loss L(lp, t^) with G = dL/dlp and Gt_k = dL/dt^_k:
 *     dL/do_i    = G g_i + sum_k Gt_k H_i odot_ik   (H_i the Hessian of lp_i in o_i)
 *     dL/dodot_ik = Gt_k g_i,
 * fed to ratio_net_backward_jvp_all.
 *
 * Units: x and theta as given (callers z-score them, gold_est.c); lp is the
 * log density in those units, t^ the gradient in theta's units.
 * Memory: owns C ratio_nets (one contiguous parameter buffer each) and
 * batch buffers for max_batch rows.  Backward ACCUMULATES into the grads.
 * Not thread-safe.
 */
#ifndef PPX_GOLD_COND_MOG_H
#define PPX_GOLD_COND_MOG_H

#include <stddef.h>
#include "gold/ratio_net.h"
#include "nn/nn.h"
#include "rng.h"

#define COND_MOG_S_MIN (-9.0)
#define COND_MOG_S_MAX 6.0

typedef struct cond_mog {
    int C, D, K, hidden, layers, max_batch;
    ratio_net **net;    /* [C]: net[i] has inputs [x_<i (i), theta (D)], outputs 3K */
    float *in;          /* [max_batch, C + D] input rows of one net */
    double *x;          /* [max_batch, C] the last forward's x (double) */
    double *lp;         /* [max_batch] log p^ of the last forward */
    double *that;       /* [max_batch, D] its score (when the forward had tangents) */
    double *g;          /* [C, max_batch, 3K] d lp_i / d o_i */
    float *gof, *gtf;   /* backward scratch [max_batch, 3K] and [max_batch, 3K, D] */
    int last_b, last_tangents;
} cond_mog;

/* K >= 1 components, hidden x layers tanh nets.  NULL on failure (logged). */
cond_mog *cond_mog_new(int C, int D, int K, int hidden, int layers, int max_batch);
void cond_mog_destroy(cond_mog **m);
/* mlp_init of every net, then the output biases spread the component means
 * over [-2, 2] and set sigma = 0.5 (a symmetric start has identical components). */
void cond_mog_init(cond_mog *m, rng *r);
size_t cond_mog_n_params(const cond_mog *m);
void cond_mog_get_params(const cond_mog *m, float *dst);
void cond_mog_set_params(cond_mog *m, const float *src);
void cond_mog_get_grads(const cond_mog *m, float *dst);
void cond_mog_zero_grad(cond_mog *m);
void cond_mog_adam_step(cond_mog *m, const nn_adam_config *cfg, float lr);

/* log p^(x_b | theta_b) into m->lp [B] for x [B, C], theta [B, D]; with
 * tangents also the score into m->that [B, D].  0, or -1 (B out of range). */
int cond_mog_forward(cond_mog *m, const double *x, const double *theta, int B, int tangents);
/* After cond_mog_forward (same B; with tangents when gthat != NULL): grads
 * += dL/dparams for G = dL/dlp [B] and Gt = dL/dthat [B, D] (NULL: none). */
int cond_mog_backward(cond_mog *m, const double *glp, const double *gthat, int B);

/* One draw x [C] ~ p^(. | theta) per row of theta [B, D], into x [B, C]. */
int cond_mog_sample(cond_mog *m, const double *theta, int B, rng *r, double *x);

/* One conditional: o [3K] = (a, mu, s), the log density lp at x and g [3K] =
 * d lp / d o (g may be NULL). */
double cond_mog_mix_eval(const float *o, int K, double x, double *g);
/* hv [3K] = H v, H = d^2 lp / d o^2 at x, for a direction v [3K]. */
void cond_mog_mix_hvp(const float *o, int K, double x, const double *v, double *hv);

/* Save/load: the C nets' mlp blobs, each u64 length + bytes (mlp.h format). */
size_t cond_mog_save_size(const cond_mog *m);
int cond_mog_save(const cond_mog *m, void *blob, size_t cap);
int cond_mog_load(cond_mog *m, const void *blob, size_t len);

#endif
