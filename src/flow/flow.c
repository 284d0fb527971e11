/* flow.c — conditional MAF and NSF (see flow.h for the interface).
 *
 * Direction: every transform maps its input z_t to z_{t+1} in the density
 * direction (theta = z_0 -> ... -> z_T = u), as nflows' Transform.forward, and
 *     log q(theta | x) = log N(u; 0, I) + sum_t log |det dz_{t+1}/dz_t|.
 * Sampling runs the transforms backwards from u ~ N(0, I).
 *
 * Transforms:
 *   affine AR (MAF)   z' = z * scale + shift per dimension, scale =
 *       softplus(a) + 1e-3, logdet = sum log scale; (a, shift) for dimension i
 *       from a MADE on [z, x].  This is what current nflows (and so sbi)
 *       computes: the older sigmoid(a + 2) + 1e-3, still commented out in
 *       nflows, caps the scale at 1.001, so a stack of them can only contract
 *       theta -> u and cannot fit a posterior narrower than the (z-scored)
 *       prior, which is the normal case in NPE.
 *   spline AR         each dimension through the rational-quadratic spline of
 *       spline.h, its 3K-1 parameters from a MADE on [z, x].
 *   spline coupling   dimensions split in two by parity; the "identity" half
 *       passes unchanged and conditions (with x) a resmlp that outputs the
 *       spline parameters of the other half.  The transformed half is the
 *       even dimensions in even-numbered transforms and the odd ones in odd
 *       transforms (nflows create_alternating_binary_mask(D, even = t%2==0)).
 *   As nflows, the unnormalised spline widths and heights are divided by
 *   sqrt(hidden) before the softmax so that the initial spline is close to
 *   uniform bins (nearly the identity).
 *
 * MADE: an mlp with n_blocks + 1 hidden layers and weight masks.  sbi's MAF
 * uses nflows' MADE with use_residual_blocks=False: a masked input layer,
 * n_blocks masked (linear + act) blocks and a masked output layer, i.e.
 * n_blocks + 1 hidden layers each followed by the activation; that is
 * exactly a masked mlp.  The context x is part of the input with degree 0,
 * so it feeds every first-layer hidden unit (nflows adds act(W_c x) to the
 * first hidden layer instead; same connectivity).
 * Degrees: the input theta_i has degree deg(i) in 1..D; hidden unit k has
 * degree m(k); masks: input->hidden m(k) >= deg(i) (x always connected),
 * hidden->hidden m(k') >= m(k), hidden->output deg(i) > m(k) for the outputs
 * of dimension i.  nflows uses m(k) = k mod max(1, D-1) + min(1, D-1), i.e.
 * degrees 1..D-1, which leaves the outputs of the degree-1 dimension with no
 * hidden input at all: with a context they are NOT conditioned on x (only a
 * bias; nflows PR #85).  With C > 0 we use m(k) = k mod D (degrees 0..D-1):
 * degree-0 hidden units see only x and carry it to every output.  With
 * C == 0 the nflows degrees are kept (degree-0 units would be constants).
 * Permutations: sbi reverses/permutes the dimensions between transforms; we
 * give odd-numbered AR transforms the reversed degrees deg(i) = D - i
 * instead of permuting the data, which is the same family of maps.
 *
 * D == 1 with NSF: coupling needs two halves, so a one-dimensional NSF always
 * uses the spline AR transform.  Its MADE then has all hidden degrees 0:
 * the spline parameters are a function of x only (sbi's ContextSplineMap,
 * an MLP of the context), or learned constants when C == 0.
 *
 * Not implemented from sbi's defaults: the LULinear layer sbi inserts after
 * each NSF coupling transform when D > 1 (the alternating masks alone already
 * let every dimension depend on every other one).
 *
 * Precision: networks are float32 (nn kernels); the elementwise transforms,
 * their gradients and the log-density sums are computed in double and
 * stored as float, with the vectorised exp, log and softplus of nn/simd.h
 * (within a few ulp of libm's) over whole batches.  Except sampling's spline
 * inverses, which are float (spline_inverse_ff: the samples are float32,
 * and it is twice the vector lanes); its log-density terms are still summed
 * in double.  Sampling runs the networks on feature-major activations
 * (fused multiply-adds, nn/simd.h's simd_linear_fm): the coupling networks
 * through resmlp_forward_folded, with x folded into their first layers once
 * per call, and the AR passes' compacted networks (ar_forward).  Their
 * outputs differ from a log-density pass's by float rounding only.
 */
#include "flow/flow.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/spline.h"
#include "nn/mlp.h"
#include "nn/simd.h"

#define MAF_MIN_SCALE 1e-3
#define LOG_2PI 1.8378770664093454836

typedef enum tr_kind {
    TR_AFFINE_AR = 1,
    TR_SPLINE_AR = 2,
    TR_SPLINE_COUPLING = 3
} tr_kind;

typedef struct transform {
    tr_kind kind;
    mlp *made;           /* AR kinds */
    resmlp *net;         /* coupling */
    int n_in, n_out;     /* network input and output widths */
    int *deg;            /* AR: [D] degree (1..D) of each dimension */
    int *order;          /* AR: [D] order[k] = the dimension of degree k + 1 */
    int n_id, n_tr;      /* coupling: identity / transformed dimension counts */
    int *id_idx, *tr_idx;/* coupling: their indices */
    const float *out;    /* network output of the last forward (network-owned) */
    float *fold;         /* coupling: [hidden] the network's first-layer bias with the
                            sampling context folded in (resmlp_fold_inputs) */
} transform;

struct flow {
    flow_config cfg;
    int max_batch;
    int np;              /* parameters per transformed scalar: 2 or 3K - 1 */
    double wh_scale;     /* 1/sqrt(hidden) on spline widths and heights */
    transform *tr;       /* [n_transforms] */
    size_t n_params;
    long step;           /* Adam steps, shared by all networks */
    int last_b;          /* rows of the last flow_log_prob, 0 if none/invalidated */
    float *z;            /* [(T+1), max_batch, D]: z_t for every transform */
    float *net_in;       /* [max_batch, D + C] */
    float *dnet_in;      /* [max_batch, D + C] */
    float *g_a, *g_b;    /* [max_batch, D] gradient ping-pong */
    float *dout;         /* [max_batch, max n_out] */
    /* Sampling runs its networks feature-major (nn/simd.h's simd_linear_fm)
     * with row stride fm_ld = max_batch rounded up to SIMD_FM_PAD: */
    size_t fm_ld;
    float *fm_v;         /* [3, fm_ld] spline points (zero-padded), results, log|det|s */
    /* NSF coupling only (NULL otherwise): */
    float *fold_scratch; /* [3 hidden + max n_out, fm_ld] for resmlp_forward_folded,
                            shared by the transforms' networks */
    float *fm_in;        /* [D, fm_ld] the networks' inputs (zeroed: padding stays finite) */
    double *acc;         /* [max_batch] log-density accumulator */
    /* NSF: splines are evaluated sp_cap scalars at a time (spline.h's batch
     * forms), gathered into these (NULL for MAF): */
    int sp_cap;
    int *iota;           /* [D] 0, 1, ..., D-1 */
    double *sp_p, *sp_gp;/* [sp_cap, np] parameters, their gradients */
    double *sp_v, *sp_w, *sp_l, *sp_g; /* [sp_cap] per-scalar values */
    /* AR sampling: one inverse pass's compacted network (ar_compact), NULL
     * for coupling flows.  Layer l maps ar_dims[l] -> ar_dims[l + 1]. */
    int ar_L;            /* layers (the MADE's) */
    int *ar_dims;        /* [ar_L + 1] */
    int *ar_cols;        /* [D]: z columns of its input */
    int *ar_units;       /* [H]: MADE hidden units it keeps */
    float *ar_w, *ar_b;  /* weights and biases of all layers, packed */
    float *ar_in;        /* [D, fm_ld] its input, feature-major (zeroed: padding stays finite) */
    float *ar_h[2];      /* [max(H, np), fm_ld] activations ping-pong, feature-major */
    /* MAF: the affine transforms' scales, their logs and d scale / d a, for
     * max_batch rows of D (vectorised softplus and log; NULL for NSF). */
    double *af_s, *af_ls, *af_sig;
};

/* Scalars per batched spline call: enough to fill the vector unit with
 * exponentials, few enough that the gathered parameters stay in L1/L2. */
#define FLOW_SPLINE_CHUNK 256

/* ---- config -------------------------------------------------------------------- */

flow_config flow_config_default(flow_kind kind, int dim, int context)
{
    flow_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.dim = dim;
    c.context = context;
    c.n_transforms = 5;
    c.hidden = 50;
    c.n_blocks = 2;
    c.act = kind == FLOW_NSF ? NN_ACT_RELU : NN_ACT_TANH;
    c.n_bins = 10;
    c.tail_bound = 3.0f;
    c.autoregressive = 0;
    return c;
}

static int config_valid(const flow_config *c)
{
    const char *why = NULL;
    if (!c)
        why = "no config";
    else if (c->kind != FLOW_MAF && c->kind != FLOW_NSF)
        why = "kind must be FLOW_MAF or FLOW_NSF";
    else if (c->dim < 1)
        why = "dim must be >= 1";
    else if (c->context < 0)
        why = "context must be >= 0";
    else if (c->n_transforms < 1)
        why = "n_transforms must be >= 1";
    else if (c->hidden < 1)
        why = "hidden must be >= 1";
    else if (c->n_blocks < 0)
        why = "n_blocks must be >= 0";
    else if ((unsigned)c->act >= NN_ACT_COUNT)
        why = "invalid activation";
    else if (c->kind == FLOW_NSF && (c->n_bins < 1 || c->n_bins > SPLINE_MAX_BINS))
        why = "n_bins must be in [1, 128]";
    else if (c->kind == FLOW_NSF && !(c->tail_bound > 0.0f && isfinite(c->tail_bound)))
        why = "tail_bound must be finite and > 0";
    else if (c->kind == FLOW_NSF && c->autoregressive != 0 && c->autoregressive != 1)
        why = "autoregressive must be 0 or 1";
    if (why) {
        fprintf(stderr, "flow_new: invalid config: %s\n", why);
        return 0;
    }
    return 1;
}

/* ---- construction ------------------------------------------------------------------ */

/* MADE hidden-unit degree (see the file comment). */
static int hidden_degree(int k, int D, int C)
{
    if (C > 0)
        return k % D;
    const int max_ = D - 1 > 1 ? D - 1 : 1, min_ = D - 1 < 1 ? D - 1 : 1;
    return k % max_ + min_;
}

static mlp *made_new(const flow_config *c, int np, const int *deg, int max_batch)
{
    const int D = c->dim, C = c->context, H = c->hidden, in = D + C;
    const mlp_config mc = {.in = in, .hidden = H, .n_hidden_layers = c->n_blocks + 1,
                           .out = D * np, .act = c->act};
    mlp *m = mlp_new(&mc, max_batch);
    if (!m || mlp_enable_masks(m) != 0) {
        mlp_destroy(&m);
        return NULL;
    }
    const int L = m->n_layers;
    for (int o = 0; o < H; o++)
        for (int i = 0; i < in; i++)
            m->mask[0][(size_t)o * in + i] =
                i >= D || hidden_degree(o, D, C) >= deg[i] ? 1.0f : 0.0f;
    for (int l = 1; l < L - 1; l++)
        for (int o = 0; o < H; o++)
            for (int i = 0; i < H; i++)
                m->mask[l][(size_t)o * H + i] =
                    hidden_degree(o, D, C) >= hidden_degree(i, D, C) ? 1.0f : 0.0f;
    for (int o = 0; o < D * np; o++)
        for (int i = 0; i < H; i++)
            m->mask[L - 1][(size_t)o * H + i] =
                deg[o / np] > hidden_degree(i, D, C) ? 1.0f : 0.0f;
    return m;
}

static int transform_setup(flow *f, int t)
{
    const flow_config *c = &f->cfg;
    const int D = c->dim, C = c->context;
    transform *tr = &f->tr[t];
    if (c->kind == FLOW_NSF && !c->autoregressive && D >= 2) {
        tr->kind = TR_SPLINE_COUPLING;
        tr->id_idx = malloc((size_t)D * sizeof(int));
        tr->tr_idx = malloc((size_t)D * sizeof(int));
        if (!tr->id_idx || !tr->tr_idx)
            return -1;
        for (int i = 0; i < D; i++) {
            if (i % 2 == t % 2)
                tr->tr_idx[tr->n_tr++] = i;
            else
                tr->id_idx[tr->n_id++] = i;
        }
        tr->n_in = tr->n_id + C;
        tr->n_out = tr->n_tr * f->np;
        const resmlp_config rc = {.in = tr->n_in, .hidden = c->hidden, .n_blocks = c->n_blocks,
                                  .out = tr->n_out, .act = c->act};
        tr->net = resmlp_new(&rc, f->max_batch);
        tr->fold = malloc((size_t)c->hidden * sizeof(float));
        return tr->net && tr->fold ? 0 : -1;
    }
    tr->kind = c->kind == FLOW_MAF ? TR_AFFINE_AR : TR_SPLINE_AR;
    tr->deg = malloc((size_t)D * sizeof(int));
    tr->order = malloc((size_t)D * sizeof(int));
    if (!tr->deg || !tr->order)
        return -1;
    for (int i = 0; i < D; i++) {
        tr->deg[i] = t % 2 ? D - i : i + 1;
        tr->order[tr->deg[i] - 1] = i;
    }
    tr->n_in = D + C;
    tr->n_out = D * f->np;
    tr->made = made_new(c, f->np, tr->deg, f->max_batch);
    return tr->made ? 0 : -1;
}

flow *flow_new(const flow_config *cfg, int max_batch)
{
    if (!config_valid(cfg))
        return NULL;
    if (max_batch < 1) {
        fprintf(stderr, "flow_new: max_batch %d < 1\n", max_batch);
        return NULL;
    }
    flow *f = calloc(1, sizeof *f);
    if (!f)
        goto oom;
    f->cfg = *cfg;
    f->np = cfg->kind == FLOW_MAF ? 2 : spline_n_params(cfg->n_bins);
    f->max_batch = max_batch;
    f->wh_scale = 1.0 / sqrt((double)cfg->hidden);
    const int T = cfg->n_transforms, D = cfg->dim, C = cfg->context;
    f->tr = calloc((size_t)T, sizeof *f->tr);
    if (!f->tr)
        goto oom;
    int max_out = 1;
    for (int t = 0; t < T; t++) {
        if (transform_setup(f, t) != 0)
            goto oom;
        const transform *tr = &f->tr[t];
        f->n_params += tr->made ? tr->made->n_params : tr->net->n_params;
        if (tr->n_out > max_out)
            max_out = tr->n_out;
    }
    const size_t mb = (size_t)max_batch;
    /* Feature-major buffers: 64-byte aligned (a cache line, an AVX-512
     * vector) with a stride of 16 floats, so simd_linear_fm's vectors never
     * split a line. */
    f->fm_ld = (mb + SIMD_FM_PAD - 1) / SIMD_FM_PAD * SIMD_FM_PAD;
    const size_t ld_bytes = f->fm_ld * sizeof(float);
    f->z = malloc((size_t)(T + 1) * mb * D * sizeof(float));
    f->net_in = malloc(mb * (D + C) * sizeof(float));
    f->dnet_in = malloc(mb * (D + C) * sizeof(float));
    f->g_a = malloc(mb * D * sizeof(float));
    f->g_b = malloc(mb * D * sizeof(float));
    f->dout = malloc(mb * max_out * sizeof(float));
    f->acc = malloc(mb * sizeof(double));
    f->fm_v = aligned_alloc(64, 3 * ld_bytes);
    if (f->fm_v)
        memset(f->fm_v, 0, 3 * ld_bytes);
    if (!f->z || !f->net_in || !f->dnet_in || !f->g_a || !f->g_b || !f->dout || !f->acc || !f->fm_v)
        goto oom;
    if (cfg->kind == FLOW_NSF && !cfg->autoregressive && D >= 2) {
        f->fold_scratch = aligned_alloc(64, (3 * (size_t)cfg->hidden + max_out) * ld_bytes);
        f->fm_in = aligned_alloc(64, (size_t)D * ld_bytes);
        if (!f->fold_scratch || !f->fm_in)
            goto oom;
        memset(f->fm_in, 0, (size_t)D * ld_bytes);
    }
    if (cfg->kind == FLOW_NSF) {
        /* A row's scalars are never split between calls: room for D at least. */
        const size_t cap = FLOW_SPLINE_CHUNK > D ? FLOW_SPLINE_CHUNK : (size_t)D;
        f->sp_cap = (int)cap;
        f->iota = malloc((size_t)D * sizeof(int));
        f->sp_p = malloc(cap * f->np * sizeof(double));
        f->sp_gp = malloc(cap * f->np * sizeof(double));
        f->sp_v = malloc(cap * sizeof(double));
        f->sp_w = malloc(cap * sizeof(double));
        f->sp_l = malloc(cap * sizeof(double));
        f->sp_g = malloc(cap * sizeof(double));
        if (!f->iota || !f->sp_p || !f->sp_gp || !f->sp_v || !f->sp_w || !f->sp_l || !f->sp_g)
            goto oom;
        for (int i = 0; i < D; i++)
            f->iota[i] = i;
    }
    if (cfg->kind == FLOW_MAF || cfg->autoregressive || D == 1) {
        const int H = cfg->hidden, L = cfg->n_blocks + 2, np = f->np;
        const int wide = H > np ? H : np;
        f->ar_L = L;
        f->ar_dims = malloc((size_t)(L + 1) * sizeof(int));
        f->ar_cols = malloc((size_t)D * sizeof(int));
        f->ar_units = malloc((size_t)H * sizeof(int));
        f->ar_w = malloc(((size_t)H * D + (size_t)(L - 2) * H * H + (size_t)np * H) * sizeof(float));
        f->ar_b = malloc(((size_t)(L - 1) * H + (size_t)np) * sizeof(float));
        f->ar_in = aligned_alloc(64, (size_t)D * ld_bytes);
        f->ar_h[0] = aligned_alloc(64, (size_t)wide * ld_bytes);
        f->ar_h[1] = aligned_alloc(64, (size_t)wide * ld_bytes);
        if (!f->ar_dims || !f->ar_cols || !f->ar_units || !f->ar_w || !f->ar_b || !f->ar_in ||
            !f->ar_h[0] || !f->ar_h[1])
            goto oom;
        memset(f->ar_in, 0, (size_t)D * ld_bytes);
    }
    if (cfg->kind == FLOW_MAF) {
        f->af_s = malloc(mb * D * sizeof(double));
        f->af_ls = malloc(mb * D * sizeof(double));
        f->af_sig = malloc(mb * D * sizeof(double));
        if (!f->af_s || !f->af_ls || !f->af_sig)
            goto oom;
    }
    return f;
oom:
    fprintf(stderr, "flow_new: out of memory\n");
    flow_destroy(&f);
    return NULL;
}

void flow_destroy(flow **pf)
{
    if (!pf || !*pf)
        return;
    flow *f = *pf;
    if (f->tr) {
        for (int t = 0; t < f->cfg.n_transforms; t++) {
            transform *tr = &f->tr[t];
            mlp_destroy(&tr->made);
            resmlp_destroy(&tr->net);
            free(tr->deg);
            free(tr->order);
            free(tr->id_idx);
            free(tr->tr_idx);
            free(tr->fold);
        }
        free(f->tr);
    }
    free(f->z);
    free(f->net_in);
    free(f->dnet_in);
    free(f->g_a);
    free(f->g_b);
    free(f->dout);
    free(f->fold_scratch);
    free(f->fm_in);
    free(f->fm_v);
    free(f->acc);
    free(f->iota);
    free(f->sp_p);
    free(f->sp_gp);
    free(f->sp_v);
    free(f->sp_w);
    free(f->sp_l);
    free(f->sp_g);
    free(f->ar_dims);
    free(f->ar_cols);
    free(f->ar_units);
    free(f->ar_w);
    free(f->ar_b);
    free(f->ar_in);
    free(f->ar_h[0]);
    free(f->ar_h[1]);
    free(f->af_s);
    free(f->af_ls);
    free(f->af_sig);
    free(f);
    *pf = NULL;
}

const flow_config *flow_get_config(const flow *f)
{
    return &f->cfg;
}

size_t flow_n_params(const flow *f)
{
    return f->n_params;
}

/* The flat parameter, gradient and moment buffers of transform t's network. */
typedef struct net_bufs {
    float *params, *grads, *m, *v;
    size_t n;
} net_bufs;

static net_bufs bufs_of(const transform *tr)
{
    if (tr->made)
        return (net_bufs){tr->made->params, tr->made->grads, tr->made->m, tr->made->v,
                          tr->made->n_params};
    return (net_bufs){tr->net->params, tr->net->grads, tr->net->m, tr->net->v,
                      tr->net->n_params};
}

void flow_init(flow *f, rng *r)
{
    for (int t = 0; t < f->cfg.n_transforms; t++) {
        if (f->tr[t].made)
            mlp_init(f->tr[t].made, r);
        else
            resmlp_init(f->tr[t].net, r);
    }
    f->step = 0;
    f->last_b = 0;
}

/* ---- forward (density direction) ------------------------------------------------- */

static float *z_at(const flow *f, int t)
{
    return f->z + (size_t)t * f->max_batch * f->cfg.dim;
}

/* net_in rows: the conditioning part of z (all of z for AR, the identity
 * half for coupling), then x (row stride x_stride: C, or 0 to repeat one x). */
static void fill_net_in(flow *f, const transform *tr, const float *z, const float *x,
                        size_t x_stride, int B)
{
    const int D = f->cfg.dim, C = f->cfg.context, n_in = tr->n_in;
    for (int b = 0; b < B; b++) {
        float *row = f->net_in + (size_t)b * n_in;
        const float *zr = z + (size_t)b * D;
        /* Loops, not memcpy: rows are a few floats, shorter than a call. */
        int off;
        if (tr->kind == TR_SPLINE_COUPLING) {
            for (int j = 0; j < tr->n_id; j++)
                row[j] = zr[tr->id_idx[j]];
            off = tr->n_id;
        } else {
            for (int i = 0; i < D; i++)
                row[i] = zr[i];
            off = D;
        }
        const float *xr = x + (size_t)b * x_stride;
        for (int c = 0; c < C; c++)
            row[off + c] = xr[c];
    }
}

static const float *net_forward(flow *f, transform *tr, int B)
{
    const float *out = tr->made ? mlp_forward(tr->made, f->net_in, B)
                                : resmlp_forward(tr->net, f->net_in, B);
    assert(out); /* B was checked against max_batch by the caller */
    tr->out = out;
    return out;
}

/* Spline parameters of one scalar from the network output (float) into p. */
static void load_spline(const flow *f, const float *src, double *p)
{
    const int K = f->cfg.n_bins;
    for (int j = 0; j < 2 * K; j++)
        p[j] = src[j] * f->wh_scale;
    for (int j = 2 * K; j < f->np; j++)
        p[j] = src[j];
}

/* Affine scales of n parameters a, a[i] at P[i * stride]: af_s[i] = s =
 * softplus(a) + MAF_MIN_SCALE, af_ls[i] = log s (when want_log) and
 * af_sig[i] = ds/da = sigmoid(a) (when want_sig), vectorised. */
static void affine_scales(flow *f, const float *P, size_t stride, int n, int want_log, int want_sig)
{
    for (int i = 0; i < n; i++)
        f->af_s[i] = P[(size_t)i * stride];
    simd_softplus_d(f->af_s, want_sig ? f->af_sig : NULL, f->af_s, (size_t)n);
    for (int i = 0; i < n; i++)
        f->af_s[i] += MAF_MIN_SCALE;
    if (want_log)
        simd_log_d(f->af_ls, f->af_s, (size_t)n);
}

/* Rows [b0, b0 + rows) of a spline transform, n_sc scalars per row: scalar j
 * of row b takes its value from z column cols[j] and its parameters from
 * parameter block blocks[j] of row b of the network output P (row stride
 * p_stride; 0 when every row shares row 0).  Gathers them into f->sp_v and
 * f->sp_p (scalar s = (b - b0) n_sc + j) for the batch forms. */
static void spline_gather(flow *f, const float *P, size_t p_stride, const float *z, int b0,
                          int rows, int n_sc, const int *cols, const int *blocks)
{
    const int D = f->cfg.dim, np = f->np;
    for (int r = 0; r < rows; r++) {
        const int b = b0 + r;
        const float *Pb = P + (size_t)b * p_stride;
        for (int j = 0; j < n_sc; j++) {
            const int s = r * n_sc + j;
            f->sp_v[s] = z[(size_t)b * D + cols[j]];
            load_spline(f, Pb + (size_t)blocks[j] * np, f->sp_p + (size_t)s * np);
        }
    }
}

/* Rows per batch of spline_gather. */
static int spline_rows(const flow *f, int n_sc)
{
    const int r = f->sp_cap / n_sc;
    return r > 0 ? r : 1;
}

static void transform_forward(flow *f, int t, const float *zin, float *zout, const float *x,
                              size_t x_stride, int B)
{
    transform *tr = &f->tr[t];
    const int D = f->cfg.dim, K = f->cfg.n_bins;
    const double tb = f->cfg.tail_bound;
    fill_net_in(f, tr, zin, x, x_stride, B);
    const float *P = net_forward(f, tr, B);
    if (tr->kind == TR_AFFINE_AR) {
        /* n_out = 2D: a_i at column 2i, so the a's of all rows are every
         * other output. */
        affine_scales(f, P, 2, B * D, 1, 0);
        for (int b = 0; b < B; b++) {
            const float *zi = zin + (size_t)b * D;
            float *zo = zout + (size_t)b * D;
            const float *Pb = P + (size_t)b * tr->n_out;
            const double *s = f->af_s + (size_t)b * D, *ls = f->af_ls + (size_t)b * D;
            double ld = 0.0;
            for (int i = 0; i < D; i++) {
                zo[i] = (float)(zi[i] * s[i] + Pb[2 * i + 1]);
                ld += ls[i];
            }
            f->acc[b] += ld;
        }
        return;
    }
    /* Splines: every dimension (AR) or the transformed half (coupling), the
     * identity half copied. */
    const int coupling = tr->kind == TR_SPLINE_COUPLING;
    const int n_sc = coupling ? tr->n_tr : D;
    const int *cols = coupling ? tr->tr_idx : f->iota;
    if (coupling)
        for (int b = 0; b < B; b++)
            for (int j = 0; j < tr->n_id; j++) {
                const size_t o = (size_t)b * D + tr->id_idx[j];
                zout[o] = zin[o];
            }
    const int per = spline_rows(f, n_sc);
    for (int b0 = 0; b0 < B; b0 += per) {
        const int rows = B - b0 < per ? B - b0 : per;
        spline_gather(f, tr->out, (size_t)tr->n_out, zin, b0, rows, n_sc, cols, f->iota);
        spline_forward_n(rows * n_sc, f->sp_v, f->sp_p, K, tb, f->sp_w, f->sp_l);
        for (int r = 0; r < rows; r++) {
            const int b = b0 + r;
            double ld = 0.0;
            for (int j = 0; j < n_sc; j++) {
                zout[(size_t)b * D + cols[j]] = (float)f->sp_w[r * n_sc + j];
                ld += f->sp_l[r * n_sc + j];
            }
            f->acc[b] += ld;
        }
    }
}

/* acc[b] += log N(u_b; 0, I). */
static void add_base_logpdf(flow *f, const float *u, int B)
{
    const int D = f->cfg.dim;
    for (int b = 0; b < B; b++) {
        double ss = 0.0;
        for (int i = 0; i < D; i++) {
            const double v = u[(size_t)b * D + i];
            ss += v * v;
        }
        f->acc[b] += -0.5 * ss - 0.5 * D * LOG_2PI;
    }
}

int flow_log_prob(flow *f, const float *theta, const float *x, int B, float *logq)
{
    if (B < 1 || B > f->max_batch) {
        fprintf(stderr, "flow_log_prob: batch %d outside [1, %d]\n", B, f->max_batch);
        return -1;
    }
    const int T = f->cfg.n_transforms, D = f->cfg.dim;
    assert(theta && logq && (x || f->cfg.context == 0));
    memcpy(z_at(f, 0), theta, (size_t)B * D * sizeof(float));
    for (int b = 0; b < B; b++)
        f->acc[b] = 0.0;
    for (int t = 0; t < T; t++)
        transform_forward(f, t, z_at(f, t), z_at(f, t + 1), x, (size_t)f->cfg.context, B);
    add_base_logpdf(f, z_at(f, T), B);
    for (int b = 0; b < B; b++)
        logq[b] = (float)f->acc[b];
    f->last_b = B;
    return 0;
}

/* ---- backward ---------------------------------------------------------------------- */

/* Given gout = dL/dz_{t+1} [B, D] and dL/dlogdet_t = dlogq[b] per row:
 * network grads +=, gin = dL/dz_t (written, if gin != NULL), dx +=. */
static void transform_backward(flow *f, int t, const float *gout, const float *dlogq,
                               float *gin, float *dx, int B)
{
    transform *tr = &f->tr[t];
    const int D = f->cfg.dim, C = f->cfg.context, K = f->cfg.n_bins, np = f->np;
    const double tb = f->cfg.tail_bound;
    const float *zin = z_at(f, t), *P = tr->out;
    const size_t no = (size_t)tr->n_out;
    if (tr->kind == TR_AFFINE_AR) {
        affine_scales(f, P, 2, B * D, 0, 1);
        for (int b = 0; b < B; b++) {
            const float *zi = zin + (size_t)b * D, *go = gout + (size_t)b * D;
            float *dP = f->dout + b * no;
            float *gi = gin ? gin + (size_t)b * D : NULL;
            const double gl = dlogq[b];
            const double *s = f->af_s + (size_t)b * D, *sig = f->af_sig + (size_t)b * D;
            for (int i = 0; i < D; i++) {
                if (gi)
                    gi[i] = (float)(go[i] * s[i]);
                /* z' = z s + shift, logdet = log s, s = softplus(a) + eps. */
                dP[2 * i] = (float)((go[i] * (double)zi[i] + gl / s[i]) * sig[i]);
                dP[2 * i + 1] = go[i];
            }
        }
    } else {
        const int coupling = tr->kind == TR_SPLINE_COUPLING;
        const int n_sc = coupling ? tr->n_tr : D;
        const int *cols = coupling ? tr->tr_idx : f->iota;
        if (gin && coupling)
            for (int b = 0; b < B; b++)
                for (int j = 0; j < tr->n_id; j++) {
                    const size_t o = (size_t)b * D + tr->id_idx[j];
                    gin[o] = gout[o];
                }
        const int per = spline_rows(f, n_sc);
        for (int b0 = 0; b0 < B; b0 += per) {
            const int rows = B - b0 < per ? B - b0 : per, n = rows * n_sc;
            spline_gather(f, tr->out, (size_t)tr->n_out, zin, b0, rows, n_sc, cols, f->iota);
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < n_sc; j++) {
                    f->sp_g[r * n_sc + j] = gout[(size_t)(b0 + r) * D + cols[j]];
                    f->sp_l[r * n_sc + j] = dlogq[b0 + r];
                    f->sp_w[r * n_sc + j] = 0.0;
                }
            memset(f->sp_gp, 0, (size_t)n * np * sizeof(double));
            spline_backward_n(n, f->sp_v, f->sp_p, K, tb, f->sp_g, f->sp_l, f->sp_w, f->sp_gp);
            for (int r = 0; r < rows; r++) {
                const int b = b0 + r;
                float *dP = f->dout + b * no;
                for (int j = 0; j < n_sc; j++) {
                    const int s = r * n_sc + j;
                    if (gin)
                        gin[(size_t)b * D + cols[j]] = (float)f->sp_w[s];
                    const double *gp = f->sp_gp + (size_t)s * np;
                    for (int q = 0; q < np; q++)
                        dP[(size_t)j * np + q] = (float)(q < 2 * K ? gp[q] * f->wh_scale : gp[q]);
                }
            }
        }
    }
    /* Back through the network; its input gradient feeds z_t's conditioning
     * part and x. */
    const int want_in = gin != NULL || (dx != NULL && C > 0);
    const int n_in = tr->n_in;
    if (want_in)
        nn_zero(f->dnet_in, (size_t)B * n_in);
    float *din = want_in ? f->dnet_in : NULL;
    const int rc = tr->made ? mlp_backward(tr->made, f->dout, din, B)
                            : resmlp_backward(tr->net, f->dout, din, B);
    assert(rc == 0); /* the network's last forward was this flow's, with B rows */
    (void)rc;
    if (!want_in)
        return;
    const int off = tr->kind == TR_SPLINE_COUPLING ? tr->n_id : D;
    for (int b = 0; b < B; b++) {
        const float *dr = f->dnet_in + (size_t)b * n_in;
        if (gin) {
            float *gi = gin + (size_t)b * D;
            if (tr->kind == TR_SPLINE_COUPLING)
                for (int j = 0; j < tr->n_id; j++)
                    gi[tr->id_idx[j]] += dr[j];
            else
                for (int i = 0; i < D; i++)
                    gi[i] += dr[i];
        }
        if (dx)
            for (int c = 0; c < C; c++)
                dx[(size_t)b * C + c] += dr[off + c];
    }
}

int flow_backward(flow *f, const float *dlogq, float *dx, int B)
{
    if (B < 1 || B != f->last_b) {
        fprintf(stderr, "flow_backward: batch %d but the last flow_log_prob had %d rows\n", B,
                f->last_b);
        return -1;
    }
    assert(dlogq);
    const int T = f->cfg.n_transforms, D = f->cfg.dim;
    const float *u = z_at(f, T);
    float *g = f->g_a, *g_next = f->g_b;
    /* d log N(u)/du = -u. */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < D; i++)
            g[(size_t)b * D + i] = -dlogq[b] * u[(size_t)b * D + i];
    for (int t = T - 1; t >= 0; t--) {
        /* dL/dtheta itself is not part of the interface: skip it at t = 0. */
        transform_backward(f, t, g, dlogq, t > 0 ? g_next : NULL, dx, B);
        float *tmp = g;
        g = g_next;
        g_next = tmp;
    }
    return 0;
}

void flow_zero_grad(flow *f)
{
    for (int t = 0; t < f->cfg.n_transforms; t++) {
        const net_bufs nb = bufs_of(&f->tr[t]);
        nn_zero(nb.grads, nb.n);
    }
}

double flow_clip_grad_norm(flow *f, double max_norm)
{
    double ss = 0.0;
    for (int t = 0; t < f->cfg.n_transforms; t++) {
        const net_bufs nb = bufs_of(&f->tr[t]);
        const double n = nn_grad_norm(nb.grads, nb.n);
        ss += n * n;
    }
    const double norm = sqrt(ss);
    if (max_norm > 0.0 && isfinite(norm) && norm > max_norm) {
        const float scale = (float)(max_norm / norm);
        for (int t = 0; t < f->cfg.n_transforms; t++) {
            const net_bufs nb = bufs_of(&f->tr[t]);
            simd_scale(nb.grads, scale, nb.n);
        }
    }
    return norm;
}

void flow_adam_step(flow *f, const nn_adam_config *cfg, float lr)
{
    f->step++;
    for (int t = 0; t < f->cfg.n_transforms; t++) {
        const net_bufs nb = bufs_of(&f->tr[t]);
        nn_adam_step(nb.params, nb.grads, nb.m, nb.v, nb.n, cfg, lr, f->step);
        /* Keep the networks' own counters meaningful for anyone reading them. */
        if (f->tr[t].made)
            f->tr[t].made->step = f->step;
        else
            f->tr[t].net->step = f->step;
    }
}

/* ---- sampling ------------------------------------------------------------------------ */

/* Inverts the spline of column col of B rows (a coupling transform's or an
 * autoregressive pass's): their parameters one row shared by every row
 * (rs == 0, row-major at P; the first AR pass) or feature-major (rs == 1: parameter j of row b at P[j * fm_ld + b]);
 * zin from zout at that column, acc[b] -= its log|det| of the inverse.  In
 * float (spline_inverse_ff*) straight from P: samples and log densities are
 * float32, and this is twice the lanes and no double copy of P. */
static void spline_inverse_col(flow *f, const float *P, size_t rs, const float *zout, float *zin,
                               int B, int col)
{
    const int D = f->cfg.dim;
    const size_t ld = f->fm_ld;
    const float wh = (float)f->wh_scale, tb = (float)f->cfg.tail_bound;
    float *fv = f->fm_v, *fw = f->fm_v + ld, *fl = f->fm_v + 2 * ld;
    for (int b = 0; b < B; b++)
        fv[b] = zout[(size_t)b * D + col];
    if (rs)
        spline_inverse_ff_fm(B, fv, P, ld, wh, f->cfg.n_bins, tb, fw, fl);
    else
        spline_inverse_ff(B, fv, P, 0, wh, f->cfg.n_bins, tb, fw, fl);
    for (int b = 0; b < B; b++) {
        zin[(size_t)b * D + col] = fw[b];
        f->acc[b] -= fl[b];
    }
}

/* The network of inverse pass k >= 1 of AR transform tr for context x,
 * into f->ar_*: the MADE restricted to what the outputs of dimension
 * order[k] (degree k + 1) depend on.  Those outputs see hidden units of
 * degree <= k only; units of degree 0 see only x (inputs of degree >= 1 and
 * units of degree >= 1 are masked out of them), so they are the same for
 * every row, and their contributions fold into the biases of the kept units
 * (degree 1..k).  The kept units see the input dimensions of degree <= k.
 * So the rows go through a network of (for D = 2, the sbi default) half the
 * width, a quarter of the multiplications and half the activations.
 * Reads the MADE's activations of its last forward (pass 0's single row,
 * whose degree-0 units are the shared values). */
static void ar_compact(flow *f, const transform *tr, const float *x, int k)
{
    const mlp *m = tr->made;
    const int D = f->cfg.dim, C = f->cfg.context, H = f->cfg.hidden, np = f->np;
    const int L = f->ar_L, i_out = tr->order[k];
    int n_in = 0, width = 0;
    for (int i = 0; i < D; i++)
        if (tr->deg[i] <= k)
            f->ar_cols[n_in++] = i;
    for (int u = 0; u < H; u++) {
        const int d = hidden_degree(u, D, C);
        if (d >= 1 && d <= k)
            f->ar_units[width++] = u;
    }
    f->ar_dims[0] = n_in;
    for (int l = 1; l < L; l++)
        f->ar_dims[l] = width;
    f->ar_dims[L] = np;
    float *w = f->ar_w, *b = f->ar_b;
    for (int l = 0; l < L; l++) {
        const int fi = m->dims[l], fo = f->ar_dims[l + 1];
        const float *W = m->w[l], *M = m->mask[l];
        for (int a = 0; a < fo; a++) {
            /* Row of the MADE's layer l that becomes row a. */
            const int u = l == L - 1 ? i_out * np + a : f->ar_units[a];
            const size_t row = (size_t)u * fi;
            double bias = m->b[l][u];
            if (l == 0) {
                for (int c = 0; c < n_in; c++)
                    w[(size_t)a * n_in + c] = W[row + f->ar_cols[c]] * M[row + f->ar_cols[c]];
                for (int j = 0; j < C; j++)
                    bias += (double)(W[row + D + j] * M[row + D + j]) * x[j];
            } else {
                for (int c = 0; c < width; c++)
                    w[(size_t)a * width + c] = W[row + f->ar_units[c]] * M[row + f->ar_units[c]];
                for (int v = 0; v < H; v++)
                    if (hidden_degree(v, D, C) == 0)
                        bias += (double)(W[row + v] * M[row + v]) * m->post[l - 1][v];
            }
            b[a] = (float)bias;
        }
        w += (size_t)fo * f->ar_dims[l];
        b += fo;
    }
}

/* The compacted network (ar_compact) on B rows of z, feature-major: its
 * input is the fixed dimensions' columns.  Returns out [np, fm_ld] (in
 * f->ar_h). */
static const float *ar_forward(flow *f, const float *z, int B)
{
    const int D = f->cfg.dim, L = f->ar_L, n_in = f->ar_dims[0];
    const size_t ld = f->fm_ld;
    for (int c = 0; c < n_in; c++)
        for (int b = 0; b < B; b++)
            f->ar_in[(size_t)c * ld + b] = z[(size_t)b * D + f->ar_cols[c]];
    if (f->ar_dims[1] == 0) {
        /* No kept hidden unit (a MADE too narrow to have any of degree
         * 1..k): the outputs are the folded constants, the last biases. */
        for (int j = 0; j < f->np; j++)
            for (size_t b = 0; b < ld; b++)
                f->ar_h[0][(size_t)j * ld + b] = f->ar_b[j];
        return f->ar_h[0];
    }
    const float *w = f->ar_w, *bias = f->ar_b, *cur = f->ar_in;
    float *out = NULL;
    for (int l = 0; l < L; l++) {
        const size_t fi = (size_t)f->ar_dims[l], fo = (size_t)f->ar_dims[l + 1];
        out = f->ar_h[l % 2];
        if (l < L - 1)
            simd_linear_fm(NULL, out, NULL, cur, w, fi, bias, fo, fi, (size_t)B, ld, f->cfg.act);
        else
            simd_linear_fm(out, NULL, NULL, cur, w, fi, bias, fo, fi, (size_t)B, ld,
                           NN_ACT_IDENTITY);
        w += fo * fi;
        bias += fo;
        cur = out;
    }
    return out;
}

/* z_t from z_{t+1} (zout) for B rows sharing one context x; acc[b] += the
 * forward log|det| at the recovered z_t. */
static void transform_inverse(flow *f, int t, const float *zout, float *zin, const float *x,
                              int B)
{
    transform *tr = &f->tr[t];
    const int D = f->cfg.dim;
    if (tr->kind == TR_SPLINE_COUPLING) {
        for (int b = 0; b < B; b++)
            for (int j = 0; j < tr->n_id; j++) {
                const size_t o = (size_t)b * D + tr->id_idx[j];
                zin[o] = zout[o];
            }
        /* Only the identity half varies between rows (x is in tr->fold,
         * sample_rows), feature-major: the network's output P [n_out, ld]
         * has each spline parameter's rows contiguous, as the spline's
         * vector lanes want them. */
        const size_t ld = f->fm_ld;
        for (int j = 0; j < tr->n_id; j++)
            for (int b = 0; b < B; b++)
                f->fm_in[(size_t)j * ld + b] = zin[(size_t)b * D + tr->id_idx[j]];
        const float *P = resmlp_forward_folded(tr->net, f->fm_in, tr->n_id, tr->fold,
                                               f->fold_scratch, B, ld);
        assert(P); /* B <= max_batch <= ld */
        tr->out = NULL; /* not a [B, n_out] output: flow_backward is refused anyway */
        for (int j = 0; j < tr->n_tr; j++)
            spline_inverse_col(f, P + (size_t)j * f->np * ld, 1, zout, zin, B, tr->tr_idx[j]);
        return;
    }
    /* Autoregressive: pass k fixes the dimension of degree k + 1 from the
     * network's outputs for it, which depend on x and on the dimensions fixed
     * before (degree <= k) only.  The first pass's depend on x alone, which
     * every row shares: one network row computes them for all.  Later passes
     * run on rows a network compacted to what those outputs depend on
     * (ar_compact). */
    memset(zin, 0, (size_t)B * D * sizeof(float));
    for (int k = 0; k < D; k++) {
        const int i = tr->order[k];
        /* Parameter j of row b at P[b * rs + j * ps]: one shared row-major
         * row for k = 0 (rs 0), the compacted network's feature-major output
         * after. */
        const float *P;
        size_t rs, ps;
        if (k == 0) {
            fill_net_in(f, tr, zin, x, 0, 1);
            P = net_forward(f, tr, 1) + (size_t)i * f->np; /* dimension i's block */
            rs = 0;
            ps = 1;
        } else {
            ar_compact(f, tr, x, k);
            P = ar_forward(f, zin, B);
            rs = 1;
            ps = f->fm_ld;
        }
        if (tr->kind == TR_SPLINE_AR) {
            spline_inverse_col(f, P, rs, zout, zin, B, i);
            continue;
        }
        /* Scale and its log once per parameter row (a single one for k = 0). */
        affine_scales(f, P, rs, rs ? B : 1, 1, 0);
        for (int b = 0; b < B; b++) {
            const size_t o = (size_t)b * D + i, r = rs ? (size_t)b : 0;
            zin[o] = (float)((zout[o] - (double)P[r + ps]) / f->af_s[r]);
            f->acc[b] += f->af_ls[r];
        }
    }
}

/* Invert the flow for n rows (in chunks of max_batch) whose base draws come
 * from r (u == NULL) or from u [n, D]. */
static int sample_rows(flow *f, const float *x, int n, rng *r, const float *u_in, float *out, float *logq)
{
    if (n < 0) {
        fprintf(stderr, "flow_sample: n = %d < 0\n", n);
        return -1;
    }
    const int T = f->cfg.n_transforms, D = f->cfg.dim;
    assert((r || u_in) && (out || n == 0) && (x || f->cfg.context == 0));
    /* Sampling reuses the networks' activations: a following flow_backward
     * would differentiate the wrong pass, so refuse it until a new log_prob. */
    f->last_b = 0;
    /* Every row shares x: fold its part of each coupling network's first
     * layer into a bias once per call. */
    for (int t = 0; t < T; t++)
        if (f->tr[t].kind == TR_SPLINE_COUPLING)
            resmlp_fold_inputs(f->tr[t].net, f->tr[t].n_id, x, f->tr[t].fold);
    for (int done = 0; done < n;) {
        const int B = n - done < f->max_batch ? n - done : f->max_batch;
        float *u = z_at(f, T);
        if (u_in)
            memcpy(u, u_in + (size_t)done * D, (size_t)B * D * sizeof(float));
        else
            for (size_t i = 0; i < (size_t)B * D; i++)
                u[i] = (float)rng_normal(r);
        for (int b = 0; b < B; b++)
            f->acc[b] = 0.0;
        add_base_logpdf(f, u, B);
        for (int t = T - 1; t >= 0; t--)
            transform_inverse(f, t, z_at(f, t + 1), z_at(f, t), x, B);
        memcpy(out + (size_t)done * D, z_at(f, 0), (size_t)B * D * sizeof(float));
        if (logq)
            for (int b = 0; b < B; b++)
                logq[done + b] = (float)f->acc[b];
        done += B;
    }
    return 0;
}

int flow_sample(flow *f, const float *x, int n, rng *r, float *out, float *logq)
{
    return sample_rows(f, x, n, r, NULL, out, logq);
}

int flow_sample_base(flow *f, const float *x, const float *u, int n, float *out, float *logq)
{
    return sample_rows(f, x, n, NULL, u, out, logq);
}

/* ---- parameters ------------------------------------------------------------------------ */

void flow_get_params(const flow *f, float *dst)
{
    for (int t = 0; t < f->cfg.n_transforms; t++) {
        const net_bufs nb = bufs_of(&f->tr[t]);
        memcpy(dst, nb.params, nb.n * sizeof(float));
        dst += nb.n;
    }
}

void flow_set_params(flow *f, const float *src)
{
    for (int t = 0; t < f->cfg.n_transforms; t++) {
        const net_bufs nb = bufs_of(&f->tr[t]);
        memcpy(nb.params, src, nb.n * sizeof(float));
        src += nb.n;
    }
}

void flow_get_grads(const flow *f, float *dst)
{
    for (int t = 0; t < f->cfg.n_transforms; t++) {
        const net_bufs nb = bufs_of(&f->tr[t]);
        memcpy(dst, nb.grads, nb.n * sizeof(float));
        dst += nb.n;
    }
}
