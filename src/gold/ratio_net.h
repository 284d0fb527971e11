/* ratio_net.h — the parameterised network of the gold estimators: a tanh
 * MLP f(u) (nn/mlp.h) of u = [x (C), theta (D)] (z-scored) with, next to
 * its forward, a tangent (JVP) forward giving the input gradient
 *     tdot[b, j, k] = d f_j(u_b) / d u_{C+k}      (k < D, the theta inputs)
 * and one backward for a loss of both f and tdot, so score terms
 * (RASCAL, CASCAL, ALICES: MSE of d log r^/d theta against the joint
 * score) train without a general autograd.
 *
 * Tangent forward, per direction k, for hidden layers l (h_l = tanh(a_l)):
 *     adot_0 = W_0[:, C+k]          (the input tangent is the unit vector e_{C+k})
 *     hdot_l = (1 - h_l^2) adot_l,   adot_{l+1} = hdot_l W_{l+1}^T,
 *     tdot = adot_{L-1}               (the output layer is linear).
 * Backward, given g = dL/df [B, out] and gt = dL/dtdot [B, out, D]: reverse through
 * both chains; the tangent chain feeds the primal one through
 * d hdot_l / d a_l = -2 h_l (1 - h_l^2) adot_l.
 *
 * Memory: the mlp owns params/grads/Adam moments (one buffer each, llm.c
 * style); the ratio_net owns the tangent activations, for max_batch rows:
 *     adot[k][l] [max_batch, dims[l+1]]   (views into one buffer)
 *     hdot[k][l] [max_batch, dims[l+1]]   (l < L-1)
 * plus backward scratch.  Backward ACCUMULATES into the mlp's grads.
 * Only NN_ACT_TANH hidden activations and unmasked networks.
 */
#ifndef PPX_GOLD_RATIO_NET_H
#define PPX_GOLD_RATIO_NET_H

#include "nn/mlp.h"

typedef struct ratio_net {
    mlp *net;          /* owned */
    int C, D;          /* x inputs, theta inputs (in = C + D) */
    int max_batch;
    float *tan_buf;    /* all adot/hdot views */
    float ***adot;     /* adot[k][l] */
    float ***hdot;     /* hdot[k][l] */
    float *tdot;       /* [max_batch, out, D] output tangents, row-major */
    float *scratch;    /* backward: [2 + 2 D, max_batch, max width] */
    int last_b;        /* rows of the last tangent forward */
} ratio_net;

/* in = C + D inputs, hidden layers of width hidden (n_hidden >= 1), out
 * outputs (1 for ratio networks), tanh.  NULL on failure. */
ratio_net *ratio_net_new(int C, int D, int hidden, int n_hidden, int out, int max_batch);
void ratio_net_destroy(ratio_net **r);
/* Primal forward (mlp_forward) and tangents: returns f [B, out]; the
 * tangents of every output are in r->tdot [B, out, D] (row-major: d f_bj /
 * d theta_k at (b out + j) D + k; [B, D] for the single-output ratio nets). */
const float *ratio_net_forward_jvp(ratio_net *r, const float *inp, int B);
/* After ratio_net_forward_jvp with the same B: grads += dL/dparams for
 * dL/df = g [B] (output 0) and dL/dtdot = gt [B, D] (NULL: no score term). */
int ratio_net_backward_jvp(ratio_net *r, const float *g, const float *gt, int B);
/* The same for any number of outputs: dL/df = g [B, out], dL/dtdot = gt
 * [B, out, D] (NULL: none).  (ratio_net_backward_jvp is this for out = 1.) */
int ratio_net_backward_jvp_all(ratio_net *r, const float *g, const float *gt, int B);

#endif
