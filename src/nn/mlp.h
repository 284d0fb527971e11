/* mlp.h — the two feed-forward networks of ppxd, built on the kernels of nn.h:
 *   mlp     plain multilayer perceptron, optionally with fixed {0,1} weight
 *           masks on every layer (a MADE network: see mlp_enable_masks);
 *   resmlp  residual MLP (nflows/sbi ResidualNet without context).
 *
 * Memory (llm.c style): each network owns
 *   params  ONE contiguous float buffer [n_params] with named float* views
 *           into it (the views below; never free a view);
 *   grads   ONE buffer [n_params] with the same layout as params (views dw/db
 *           at the same offsets);
 *   m, v    Adam moment buffers [n_params], zero at creation;
 *   activation buffers sized once at creation for max_batch rows.
 * So an optimiser or a save/load touches just params/grads/m/v as flat arrays.
 *
 * Parameter layout (both networks): layer by layer in forward order, each
 * layer's weight W [out_features, in_features] (torch.nn.Linear layout)
 * followed by its bias [out_features].
 *
 * Forward/backward contract:
 *   out = x_forward(net, inp, B)   inp [B, in] (copied: the caller may reuse it),
 *                                  out [B, out] owned by the network, valid until
 *                                  the next forward; NULL if B > max_batch or B < 1.
 *   x_backward(net, dout, dinp, B) after a forward with the same B:
 *                                  grads += d loss/d params given dout [B, out];
 *                                  if dinp != NULL, dinp [B, in] += d loss/d inp
 *                                  (for networks whose input is differentiated,
 *                                  e.g. conditional flows).  0, or -1 when B
 *                                  differs from the last forward.
 * Backward ACCUMULATES: zero grads (x_zero_grad) before each fresh pass.
 * A network is not thread-safe (its activation buffers are shared by calls);
 * use one network per thread.
 *
 * Initialisation (x_init, explicit rng, deterministic given its state):
 *   weights of a layer followed by ReLU/ELU/GELU: Kaiming-uniform,
 *     bound sqrt(6 / fan_in);
 *   weights followed by tanh/identity and the output layer: Xavier-uniform,
 *     bound sqrt(6 / (fan_in + fan_out));
 *   biases 0;
 *   resmlp: the input layer (which feeds the residual stream) Xavier; the
 *     first linear layer of a block by the rule above; the second linear
 *     layer of every block Uniform(±1e-3) (weights and bias, as nflows'
 *     zero_initialization) so each block starts as nearly the identity.
 *
 * Save/load: the parameter buffer (only: not grads or moments) to a
 * caller-provided memory blob: a 40-byte header (magic "PPXNN001" (8), network
 * kind int32 (1 mlp, 2 resmlp), the 5 config fields as int32s, n_params as
 * uint64) then n_params float32s, all in the host (little-endian) byte order.
 * Load checks the header against the network's config and fails (-1, reason
 * on stderr) on any mismatch.  MADE masks are not saved: they are structure,
 * rebuilt by whoever creates the network.
 */
#ifndef PPX_MLP_H
#define PPX_MLP_H

#include <stddef.h>
#include <stdint.h>
#include "nn/nn.h"
#include "rng.h"

/* ==== mlp ================================================================== */

typedef struct mlp_config {
    int in;              /* input width (> 0) */
    int hidden;          /* width of every hidden layer (> 0 if n_hidden_layers > 0) */
    int n_hidden_layers; /* >= 0; 0 gives a single linear layer in -> out */
    int out;             /* output width (> 0) */
    nn_act act;          /* activation after every hidden layer (none on the output) */
} mlp_config;

typedef struct mlp {
    mlp_config cfg;
    int max_batch;
    int n_layers;        /* linear layers = n_hidden_layers + 1 */
    int *dims;           /* [n_layers + 1]: in, hidden x n_hidden_layers, out;
                            layer l maps dims[l] -> dims[l+1] */
    size_t n_params;

    float *params;       /* [n_params] */
    float *grads;        /* [n_params], same layout */
    float *m, *v;        /* [n_params] Adam moments */
    long step;           /* Adam steps taken by mlp_adam_step */

    /* Views, l in [0, n_layers): */
    float **w;           /* w[l]  [dims[l+1], dims[l]]  into params */
    float **b;           /* b[l]  [dims[l+1]]           into params */
    float **dw;          /* dw[l] [dims[l+1], dims[l]]  into grads */
    float **db;          /* db[l] [dims[l+1]]           into grads */

    /* Masks (NULL until mlp_enable_masks): one buffer with the weights' part of
     * the params layout; mask[l] [dims[l+1], dims[l]] of 0/1 floats. */
    float *mask_buf;
    float **mask;

    /* Activations, for max_batch rows (internal; read-only for callers): */
    float *x;            /* [max_batch, in]        copy of the last input */
    float **pre;         /* pre[l]  [max_batch, dims[l+1]]  layer l's linear output;
                            pre[n_layers-1] is the network output */
    float **post;        /* post[l] [max_batch, hidden]  act(pre[l]), l < n_layers-1 */
    float *scratch;      /* backward ping-pong [2, max_batch, max width] +
                            masked-linear scratch [max dims[l+1]*dims[l]] */
    int last_b;          /* rows of the last forward, 0 if none */
} mlp;

/* Number of parameters of cfg (0 if cfg is invalid). */
size_t mlp_param_count(const mlp_config *cfg);
/* A network for cfg and batches of up to max_batch rows, parameters zeroed
 * (call mlp_init).  NULL on an invalid config or allocation failure (logged). */
mlp *mlp_new(const mlp_config *cfg, int max_batch);
/* Free *net and set *net = NULL; no-op on NULL or *NULL. */
void mlp_destroy(mlp **net);
/* Initialise params (scheme above); zero grads, m, v and step. */
void mlp_init(mlp *net, rng *r);
/* out [B, cfg.out] (see contract above). */
const float *mlp_forward(mlp *net, const float *inp, int B);
int mlp_backward(mlp *net, const float *dout, float *dinp, int B);
void mlp_zero_grad(mlp *net);
/* One Adam step over the whole parameter buffer with the net's m, v; increments
 * net->step first (so the first step is t = 1). */
void mlp_adam_step(mlp *net, const nn_adam_config *cfg, float lr);
/* Turn on masking (MADE): allocate mask_buf filled with ones; the caller then
 * writes 0/1 into mask[l].  From then on forward/backward use the masked
 * kernels (masked weights get zero gradient).  0, or -1 on allocation failure. */
int mlp_enable_masks(mlp *net);
/* Save/load (format above).  mlp_save_size: bytes needed.  mlp_save: 0, or -1
 * if cap is too small.  mlp_load: 0, or -1 on a size/header/config mismatch
 * (params untouched on failure). */
size_t mlp_save_size(const mlp *net);
int mlp_save(const mlp *net, void *blob, size_t cap);
int mlp_load(mlp *net, const void *blob, size_t len);

/* ==== resmlp ================================================================= */

/* nflows ResidualNet (no context, no batch norm, no dropout):
 *     h0 = inp W_in^T + b_in                       [B, hidden]
 *     h_{k+1} = resblock_k(h_k), k < n_blocks      (pre-activation block, nn.h)
 *     out = h_K W_out^T + b_out                    [B, out]
 * Note: no activation between the last block and the output layer (as nflows). */
typedef struct resmlp_config {
    int in;        /* > 0 */
    int hidden;    /* > 0 */
    int n_blocks;  /* >= 0 */
    int out;       /* > 0 */
    nn_act act;
} resmlp_config;

typedef struct resmlp {
    resmlp_config cfg;
    int max_batch;
    size_t n_params;

    float *params, *grads, *m, *v;  /* [n_params] each, same layout */
    long step;

    /* Views into params (and the same names with a d prefix into grads): */
    float *w_in;   /* [hidden, in] */
    float *b_in;   /* [hidden] */
    float **w1;    /* w1[k] [hidden, hidden], k < n_blocks */
    float **b1;    /* b1[k] [hidden] */
    float **w2;    /* w2[k] [hidden, hidden] */
    float **b2;    /* b2[k] [hidden] */
    float *w_out;  /* [out, hidden] */
    float *b_out;  /* [out] */
    float *dw_in, *db_in, **dw1, **db1, **dw2, **db2, *dw_out, *db_out;

    /* Activations (internal), max_batch rows: */
    float *x;      /* [max_batch, in] */
    float **h;     /* h[k] [max_batch, hidden], k in [0, n_blocks] */
    float **a0, **h1, **a1; /* per block [max_batch, hidden] */
    float *out;    /* [max_batch, out] */
    float *scratch;/* [4, max_batch, hidden]: two dh ping-pong + resblock scratch */
    int last_b;
} resmlp;

size_t resmlp_param_count(const resmlp_config *cfg);
resmlp *resmlp_new(const resmlp_config *cfg, int max_batch);
void resmlp_destroy(resmlp **net);
void resmlp_init(resmlp *net, rng *r);
const float *resmlp_forward(resmlp *net, const float *inp, int B);
int resmlp_backward(resmlp *net, const float *dout, float *dinp, int B);
/* Inference with the last in - n_var inputs the same for every row (a
 * conditional flow's context while sampling), on feature-major activations
 * (nn/simd.h's simd_linear_fm: feature i of row r at a[i * ld + r]).
 * resmlp_fold_inputs writes fold [hidden], the first layer's bias plus the
 * fixed inputs' contribution, once per context; resmlp_forward_folded then
 * runs B rows of the n_var varying inputs, inp [n_var, ld], every layer one
 * simd_linear_fm with its bias, residual add and activation fused, its
 * intermediates in scratch [(3 hidden + out) ld] (which several networks may
 * share) rather than the network's activation buffers.  Returns the output
 * [out, ld] (in scratch), or NULL (logged) unless 1 <= B and
 * round_up(B, SIMD_FM_PAD) <= ld.  Columns up to that round-up are computed
 * from inp's (so those of inp must be finite numbers).  Same output
 * contract as resmlp_forward up to float rounding (fused multiply-adds,
 * associated differently); a backward after it is refused (-1).  fold must
 * be recomputed after the parameters change. */
void resmlp_fold_inputs(const resmlp *net, int n_var, const float *fixed, float *fold);
const float *resmlp_forward_folded(resmlp *net, const float *inp, int n_var, const float *fold,
                                   float *scratch, int B, size_t ld);
void resmlp_zero_grad(resmlp *net);
void resmlp_adam_step(resmlp *net, const nn_adam_config *cfg, float lr);
size_t resmlp_save_size(const resmlp *net);
int resmlp_save(const resmlp *net, void *blob, size_t cap);
int resmlp_load(resmlp *net, const void *blob, size_t len);

#endif
