/* mlp.c — plain and residual MLPs over one contiguous parameter buffer
 * (see mlp.h for layouts and contracts). */
#include "nn/mlp.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/simd.h"

/* ---- shared helpers ---------------------------------------------------------- */

#define BLOB_MAGIC "PPXNN001"
#define BLOB_HEADER 40
#define BLOB_KIND_MLP 1
#define BLOB_KIND_RESMLP 2

static int act_valid(nn_act a)
{
    return (unsigned)a < NN_ACT_COUNT;
}

/* Kaiming-uniform for a weight followed by a rectifier-like activation keeps
 * the forward variance of the activations roughly constant; otherwise the
 * Xavier-uniform bound balances forward and backward variance. */
static float init_bound(int fan_in, int fan_out, int followed_by_rectifier)
{
    if (followed_by_rectifier)
        return (float)sqrt(6.0 / fan_in);
    return (float)sqrt(6.0 / (fan_in + fan_out));
}

static int is_rectifier(nn_act a)
{
    return a == NN_ACT_RELU || a == NN_ACT_ELU || a == NN_ACT_GELU;
}

static void blob_write_header(unsigned char *p, int kind, const int cfg5[5], size_t n_params)
{
    memcpy(p, BLOB_MAGIC, 8);
    const int32_t k = kind;
    memcpy(p + 8, &k, 4);
    for (int i = 0; i < 5; i++) {
        const int32_t c = cfg5[i];
        memcpy(p + 12 + 4 * i, &c, 4);
    }
    const uint64_t n = n_params;
    memcpy(p + 32, &n, 8);
}

static int blob_check(const char *who, const void *blob, size_t len, int kind,
                      const int cfg5[5], size_t n_params)
{
    const unsigned char *p = blob;
    if (!blob || len < BLOB_HEADER) {
        fprintf(stderr, "%s: blob too short (%zu bytes) for the %d-byte header\n",
                who, len, BLOB_HEADER);
        return -1;
    }
    if (memcmp(p, BLOB_MAGIC, 8) != 0) {
        fprintf(stderr, "%s: bad magic (not a ppxd network blob)\n", who);
        return -1;
    }
    int32_t k;
    memcpy(&k, p + 8, 4);
    if (k != kind) {
        fprintf(stderr, "%s: blob holds network kind %d, expected %d\n", who, (int)k, kind);
        return -1;
    }
    static const char *const field[5] = {"in", "hidden", "layers/blocks", "out", "act"};
    for (int i = 0; i < 5; i++) {
        int32_t c;
        memcpy(&c, p + 12 + 4 * i, 4);
        if (c != cfg5[i]) {
            fprintf(stderr, "%s: config mismatch: %s is %d in the blob, %d in the network\n",
                    who, field[i], (int)c, cfg5[i]);
            return -1;
        }
    }
    uint64_t n;
    memcpy(&n, p + 32, 8);
    if (n != n_params || len != BLOB_HEADER + n_params * sizeof(float)) {
        fprintf(stderr, "%s: size mismatch: blob %zu bytes with %llu params, network %zu params\n",
                who, len, (unsigned long long)n, n_params);
        return -1;
    }
    return 0;
}

/* Four equally sized float buffers (params, grads, m, v) in one allocation
 * each, zeroed. */
static int alloc_param_bufs(size_t n, float **p, float **g, float **m, float **v)
{
    *p = calloc(n, sizeof(float));
    *g = calloc(n, sizeof(float));
    *m = calloc(n, sizeof(float));
    *v = calloc(n, sizeof(float));
    return (*p && *g && *m && *v) ? 0 : -1;
}

/* ==== mlp ==================================================================== */

static int mlp_config_valid(const mlp_config *c)
{
    return c && c->in > 0 && c->out > 0 && c->n_hidden_layers >= 0 &&
           (c->n_hidden_layers == 0 || c->hidden > 0) && act_valid(c->act);
}

static int mlp_dim(const mlp_config *c, int l)
{
    if (l == 0)
        return c->in;
    if (l == c->n_hidden_layers + 1)
        return c->out;
    return c->hidden;
}

size_t mlp_param_count(const mlp_config *cfg)
{
    if (!mlp_config_valid(cfg))
        return 0;
    size_t n = 0;
    for (int l = 0; l <= cfg->n_hidden_layers; l++)
        n += (size_t)mlp_dim(cfg, l + 1) * (mlp_dim(cfg, l) + 1);
    return n;
}

mlp *mlp_new(const mlp_config *cfg, int max_batch)
{
    if (!mlp_config_valid(cfg) || max_batch < 1) {
        fprintf(stderr, "mlp_new: invalid config or max_batch %d\n", max_batch);
        return NULL;
    }
    mlp *net = calloc(1, sizeof *net);
    if (!net)
        goto oom;
    net->cfg = *cfg;
    net->max_batch = max_batch;
    const int L = cfg->n_hidden_layers + 1;
    net->n_layers = L;
    net->n_params = mlp_param_count(cfg);
    net->dims = calloc((size_t)L + 1, sizeof *net->dims);
    net->w = calloc((size_t)L, sizeof *net->w);
    net->b = calloc((size_t)L, sizeof *net->b);
    net->dw = calloc((size_t)L, sizeof *net->dw);
    net->db = calloc((size_t)L, sizeof *net->db);
    net->pre = calloc((size_t)L, sizeof *net->pre);
    net->post = calloc((size_t)L, sizeof *net->post);
    if (!net->dims || !net->w || !net->b || !net->dw || !net->db || !net->pre || !net->post)
        goto oom;
    if (alloc_param_bufs(net->n_params, &net->params, &net->grads, &net->m, &net->v) != 0)
        goto oom;

    int max_w = 0;
    size_t max_wsize = 0, n_act = (size_t)max_batch * cfg->in;
    for (int l = 0; l <= L; l++) {
        net->dims[l] = mlp_dim(cfg, l);
        if (net->dims[l] > max_w)
            max_w = net->dims[l];
    }
    size_t off = 0;
    for (int l = 0; l < L; l++) {
        const size_t wn = (size_t)net->dims[l + 1] * net->dims[l];
        net->w[l] = net->params + off;
        net->dw[l] = net->grads + off;
        off += wn;
        net->b[l] = net->params + off;
        net->db[l] = net->grads + off;
        off += (size_t)net->dims[l + 1];
        if (wn > max_wsize)
            max_wsize = wn;
        n_act += (size_t)max_batch * net->dims[l + 1];       /* pre[l] */
        if (l < L - 1)
            n_act += (size_t)max_batch * net->dims[l + 1];   /* post[l] */
    }
    net->x = malloc(n_act * sizeof(float));
    net->scratch = malloc((2 * (size_t)max_batch * max_w + max_wsize) * sizeof(float));
    if (!net->x || !net->scratch)
        goto oom;
    float *a = net->x + (size_t)max_batch * cfg->in;
    for (int l = 0; l < L; l++) {
        net->pre[l] = a;
        a += (size_t)max_batch * net->dims[l + 1];
        if (l < L - 1) {
            net->post[l] = a;
            a += (size_t)max_batch * net->dims[l + 1];
        }
    }
    return net;
oom:
    fprintf(stderr, "mlp_new: out of memory\n");
    mlp_destroy(&net);
    return NULL;
}

void mlp_destroy(mlp **pnet)
{
    if (!pnet || !*pnet)
        return;
    mlp *net = *pnet;
    free(net->dims);
    free(net->w);
    free(net->b);
    free(net->dw);
    free(net->db);
    free(net->pre);
    free(net->post);
    free(net->params);
    free(net->grads);
    free(net->m);
    free(net->v);
    free(net->mask_buf);
    free(net->mask);
    free(net->x);
    free(net->scratch);
    free(net);
    *pnet = NULL;
}

void mlp_init(mlp *net, rng *r)
{
    for (int l = 0; l < net->n_layers; l++) {
        const int fi = net->dims[l], fo = net->dims[l + 1];
        const int rect = l < net->n_layers - 1 && is_rectifier(net->cfg.act);
        nn_init_uniform(net->w[l], (size_t)fo * fi, init_bound(fi, fo, rect), r);
        nn_zero(net->b[l], (size_t)fo);
    }
    nn_zero(net->grads, net->n_params);
    nn_zero(net->m, net->n_params);
    nn_zero(net->v, net->n_params);
    net->step = 0;
}

/* Masked-linear scratch: after the two backward ping-pong buffers. */
static float *mlp_mask_scratch(mlp *net)
{
    int max_w = 0;
    for (int l = 0; l <= net->n_layers; l++)
        if (net->dims[l] > max_w)
            max_w = net->dims[l];
    return net->scratch + 2 * (size_t)net->max_batch * max_w;
}

const float *mlp_forward(mlp *net, const float *inp, int B)
{
    if (B < 1 || B > net->max_batch) {
        fprintf(stderr, "mlp_forward: batch %d outside [1, %d]\n", B, net->max_batch);
        return NULL;
    }
    memcpy(net->x, inp, (size_t)B * net->cfg.in * sizeof(float));
    float *ms = net->mask ? mlp_mask_scratch(net) : NULL;
    const float *cur = net->x;
    for (int l = 0; l < net->n_layers; l++) {
        const int fi = net->dims[l], fo = net->dims[l + 1];
        if (l < net->n_layers - 1) {
            /* Hidden layer: linear and activation in one pass over the output. */
            if (net->mask)
                nn_masked_linear_act_forward(net->pre[l], net->post[l], cur, net->w[l],
                                             net->mask[l], net->b[l], ms, net->cfg.act, B, fi, fo);
            else
                nn_linear_act_forward(net->pre[l], net->post[l], cur, net->w[l], net->b[l],
                                      net->cfg.act, B, fi, fo);
            cur = net->post[l];
        } else if (net->mask) {
            nn_masked_linear_forward(net->pre[l], cur, net->w[l], net->mask[l], net->b[l], ms,
                                     B, fi, fo);
        } else {
            nn_linear_forward(net->pre[l], cur, net->w[l], net->b[l], B, fi, fo);
        }
    }
    net->last_b = B;
    return net->pre[net->n_layers - 1];
}

int mlp_backward(mlp *net, const float *dout, float *dinp, int B)
{
    if (B != net->last_b) {
        fprintf(stderr, "mlp_backward: batch %d but the last forward had %d rows\n",
                B, net->last_b);
        return -1;
    }
    int max_w = 0;
    for (int l = 0; l <= net->n_layers; l++)
        if (net->dims[l] > max_w)
            max_w = net->dims[l];
    /* dpost and dpre alternate between two buffers: a layer's dout (in dpre)
     * is dead once its linear backward has produced dpost. */
    float *dpost = net->scratch, *dpre = net->scratch + (size_t)net->max_batch * max_w;
    float *ms = net->mask ? mlp_mask_scratch(net) : NULL;
    const float *g = dout;
    for (int l = net->n_layers - 1; l >= 0; l--) {
        const int fi = net->dims[l], fo = net->dims[l + 1];
        const float *in_l = l == 0 ? net->x : net->post[l - 1];
        float *d_in = dinp;
        if (l > 0) {
            d_in = dpost;
            nn_zero(dpost, (size_t)B * fi);
        }
        if (net->mask)
            nn_masked_linear_backward(d_in, net->dw[l], net->db[l], g, in_l, net->w[l],
                                      net->mask[l], ms, B, fi, fo);
        else
            nn_linear_backward(d_in, net->dw[l], net->db[l], g, in_l, net->w[l], B, fi, fo);
        if (l > 0) {
            nn_zero(dpre, (size_t)B * fi);
            nn_act_backward(net->cfg.act, dpre, net->pre[l - 1], dpost, (size_t)B * fi);
            g = dpre;
        }
    }
    return 0;
}

void mlp_zero_grad(mlp *net)
{
    nn_zero(net->grads, net->n_params);
}

void mlp_adam_step(mlp *net, const nn_adam_config *cfg, float lr)
{
    net->step++;
    nn_adam_step(net->params, net->grads, net->m, net->v, net->n_params, cfg, lr, net->step);
}

int mlp_enable_masks(mlp *net)
{
    if (net->mask)
        return 0;
    size_t n = 0;
    for (int l = 0; l < net->n_layers; l++)
        n += (size_t)net->dims[l + 1] * net->dims[l];
    float *buf = malloc(n * sizeof(float));
    const size_t nl = net->n_layers > 0 ? (size_t)net->n_layers : 1;
    float **views = calloc(nl, sizeof *views);
    if (!buf || !views) {
        fprintf(stderr, "mlp_enable_masks: out of memory\n");
        free(buf);
        free(views);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = 1.0f;
    size_t off = 0;
    for (int l = 0; l < net->n_layers; l++) {
        views[l] = buf + off;
        off += (size_t)net->dims[l + 1] * net->dims[l];
    }
    net->mask_buf = buf;
    net->mask = views;
    return 0;
}

static void mlp_cfg5(const mlp_config *c, int cfg5[5])
{
    cfg5[0] = c->in;
    cfg5[1] = c->n_hidden_layers > 0 ? c->hidden : 0;
    cfg5[2] = c->n_hidden_layers;
    cfg5[3] = c->out;
    cfg5[4] = (int)c->act;
}

size_t mlp_save_size(const mlp *net)
{
    return BLOB_HEADER + net->n_params * sizeof(float);
}

int mlp_save(const mlp *net, void *blob, size_t cap)
{
    if (!blob || cap < mlp_save_size(net)) {
        fprintf(stderr, "mlp_save: blob of %zu bytes, need %zu\n", cap, mlp_save_size(net));
        return -1;
    }
    int cfg5[5];
    mlp_cfg5(&net->cfg, cfg5);
    blob_write_header(blob, BLOB_KIND_MLP, cfg5, net->n_params);
    memcpy((unsigned char *)blob + BLOB_HEADER, net->params, net->n_params * sizeof(float));
    return 0;
}

int mlp_load(mlp *net, const void *blob, size_t len)
{
    int cfg5[5];
    mlp_cfg5(&net->cfg, cfg5);
    if (blob_check("mlp_load", blob, len, BLOB_KIND_MLP, cfg5, net->n_params) != 0)
        return -1;
    memcpy(net->params, (const unsigned char *)blob + BLOB_HEADER, net->n_params * sizeof(float));
    return 0;
}

/* ==== resmlp ================================================================= */

static int resmlp_config_valid(const resmlp_config *c)
{
    return c && c->in > 0 && c->hidden > 0 && c->n_blocks >= 0 && c->out > 0 &&
           act_valid(c->act);
}

size_t resmlp_param_count(const resmlp_config *cfg)
{
    if (!resmlp_config_valid(cfg))
        return 0;
    const size_t H = (size_t)cfg->hidden;
    return H * (cfg->in + 1) + (size_t)cfg->n_blocks * 2 * H * (H + 1) +
           (size_t)cfg->out * (H + 1);
}

resmlp *resmlp_new(const resmlp_config *cfg, int max_batch)
{
    if (!resmlp_config_valid(cfg) || max_batch < 1) {
        fprintf(stderr, "resmlp_new: invalid config or max_batch %d\n", max_batch);
        return NULL;
    }
    resmlp *net = calloc(1, sizeof *net);
    if (!net)
        goto oom;
    net->cfg = *cfg;
    net->max_batch = max_batch;
    net->n_params = resmlp_param_count(cfg);
    const int K = cfg->n_blocks;
    /* nk >= 1 so that calloc never gets 0 (which may return NULL). */
    const size_t H = (size_t)cfg->hidden, nb = K > 0 ? (size_t)K : 0, nk = nb > 0 ? nb : 1;
    net->w1 = calloc(nk, sizeof(float *));
    net->b1 = calloc(nk, sizeof(float *));
    net->w2 = calloc(nk, sizeof(float *));
    net->b2 = calloc(nk, sizeof(float *));
    net->dw1 = calloc(nk, sizeof(float *));
    net->db1 = calloc(nk, sizeof(float *));
    net->dw2 = calloc(nk, sizeof(float *));
    net->db2 = calloc(nk, sizeof(float *));
    net->h = calloc(nb + 1, sizeof(float *));
    net->a0 = calloc(nk, sizeof(float *));
    net->h1 = calloc(nk, sizeof(float *));
    net->a1 = calloc(nk, sizeof(float *));
    if (!net->w1 || !net->b1 || !net->w2 || !net->b2 || !net->dw1 || !net->db1 ||
        !net->dw2 || !net->db2 || !net->h || !net->a0 || !net->h1 || !net->a1)
        goto oom;
    if (alloc_param_bufs(net->n_params, &net->params, &net->grads, &net->m, &net->v) != 0)
        goto oom;

    size_t off = 0;
#define VIEW(field, dfield, count) \
    do { net->field = net->params + off; net->dfield = net->grads + off; off += (count); } while (0)
    VIEW(w_in, dw_in, H * cfg->in);
    VIEW(b_in, db_in, H);
    for (int k = 0; k < K; k++) {
        VIEW(w1[k], dw1[k], H * H);
        VIEW(b1[k], db1[k], H);
        VIEW(w2[k], dw2[k], H * H);
        VIEW(b2[k], db2[k], H);
    }
    VIEW(w_out, dw_out, (size_t)cfg->out * H);
    VIEW(b_out, db_out, (size_t)cfg->out);
#undef VIEW

    const size_t BH = (size_t)max_batch * H;
    const size_t n_act = (size_t)max_batch * cfg->in + (size_t)(K + 1) * BH + 3 * (size_t)K * BH +
                         (size_t)max_batch * cfg->out;
    net->x = malloc(n_act * sizeof(float));
    net->scratch = malloc(4 * BH * sizeof(float));
    if (!net->x || !net->scratch)
        goto oom;
    float *a = net->x + (size_t)max_batch * cfg->in;
    for (int k = 0; k <= K; k++, a += BH)
        net->h[k] = a;
    for (int k = 0; k < K; k++) {
        net->a0[k] = a;
        a += BH;
        net->h1[k] = a;
        a += BH;
        net->a1[k] = a;
        a += BH;
    }
    net->out = a;
    return net;
oom:
    fprintf(stderr, "resmlp_new: out of memory\n");
    resmlp_destroy(&net);
    return NULL;
}

void resmlp_destroy(resmlp **pnet)
{
    if (!pnet || !*pnet)
        return;
    resmlp *net = *pnet;
    free(net->params);
    free(net->grads);
    free(net->m);
    free(net->v);
    free(net->w1);
    free(net->b1);
    free(net->w2);
    free(net->b2);
    free(net->dw1);
    free(net->db1);
    free(net->dw2);
    free(net->db2);
    free(net->h);
    free(net->a0);
    free(net->h1);
    free(net->a1);
    free(net->x);
    free(net->scratch);
    free(net);
    *pnet = NULL;
}

void resmlp_init(resmlp *net, rng *r)
{
    const int H = net->cfg.hidden, K = net->cfg.n_blocks;
    /* The input layer feeds the residual stream (an identity path to the
     * output), so it gets the Xavier bound whatever the activation. */
    nn_init_uniform(net->w_in, (size_t)H * net->cfg.in, init_bound(net->cfg.in, H, 0), r);
    nn_zero(net->b_in, (size_t)H);
    for (int k = 0; k < K; k++) {
        nn_init_uniform(net->w1[k], (size_t)H * H,
                        init_bound(H, H, is_rectifier(net->cfg.act)), r);
        nn_zero(net->b1[k], (size_t)H);
        /* nflows' zero_initialization: each block starts near the identity. */
        nn_init_uniform(net->w2[k], (size_t)H * H, 1e-3f, r);
        nn_init_uniform(net->b2[k], (size_t)H, 1e-3f, r);
    }
    nn_init_uniform(net->w_out, (size_t)net->cfg.out * H, init_bound(H, net->cfg.out, 0), r);
    nn_zero(net->b_out, (size_t)net->cfg.out);
    nn_zero(net->grads, net->n_params);
    nn_zero(net->m, net->n_params);
    nn_zero(net->v, net->n_params);
    net->step = 0;
}

const float *resmlp_forward(resmlp *net, const float *inp, int B)
{
    if (B < 1 || B > net->max_batch) {
        fprintf(stderr, "resmlp_forward: batch %d outside [1, %d]\n", B, net->max_batch);
        return NULL;
    }
    const int H = net->cfg.hidden, K = net->cfg.n_blocks;
    memcpy(net->x, inp, (size_t)B * net->cfg.in * sizeof(float));
    nn_linear_forward(net->h[0], net->x, net->w_in, net->b_in, B, net->cfg.in, H);
    for (int k = 0; k < K; k++)
        nn_resblock_forward(net->h[k + 1], net->a0[k], net->h1[k], net->a1[k], net->h[k],
                            net->w1[k], net->b1[k], net->w2[k], net->b2[k], net->cfg.act, B, H);
    nn_linear_forward(net->out, net->h[K], net->w_out, net->b_out, B, H, net->cfg.out);
    net->last_b = B;
    return net->out;
}

void resmlp_fold_inputs(const resmlp *net, int n_var, const float *fixed, float *fold)
{
    const int H = net->cfg.hidden, in = net->cfg.in;
    assert(n_var >= 0 && n_var <= in && fold && (fixed || n_var == in));
    for (int j = 0; j < H; j++) {
        const float *w = net->w_in + (size_t)j * in;
        /* Double: the fixed inputs' sum is formed once per call, so its
         * rounding costs nothing and need not copy the sgemm's. */
        double acc = net->b_in[j];
        for (int c = n_var; c < in; c++)
            acc += (double)w[c] * fixed[c - n_var];
        fold[j] = (float)acc;
    }
}

const float *resmlp_forward_folded(resmlp *net, const float *inp, int n_var, const float *fold,
                                   float *scratch, int B, size_t ld)
{
    if (B < 1 || ld < ((size_t)B + SIMD_FM_PAD - 1) / SIMD_FM_PAD * SIMD_FM_PAD) {
        fprintf(stderr, "resmlp_forward_folded: %d rows do not fit a stride of %zu\n", B, ld);
        return NULL;
    }
    const int H = net->cfg.hidden, K = net->cfg.n_blocks, in = net->cfg.in;
    const nn_act act = net->cfg.act;
    const size_t h = (size_t)H;
    /* a: act(h_k), the input of block k; t: the block's hidden layer; r: the
     * residual stream h_k, updated in place (h_{k+1} = h_k + (b2 + W2 t)). */
    float *a = scratch, *t = scratch + h * ld, *r = scratch + 2 * h * ld;
    float *out = scratch + 3 * h * ld;
    net->last_b = 0; /* the network's own activations are not this pass's */
    simd_linear_fm(r, K > 0 ? a : NULL, NULL, inp, net->w_in, (size_t)in, fold, h,
                   (size_t)n_var, (size_t)B, ld, act);
    for (int k = 0; k < K; k++) {
        simd_linear_fm(NULL, t, NULL, a, net->w1[k], h, net->b1[k], h, h, (size_t)B, ld, act);
        simd_linear_fm(r, k + 1 < K ? a : NULL, r, t, net->w2[k], h, net->b2[k], h, h, (size_t)B,
                       ld, act);
    }
    simd_linear_fm(out, NULL, NULL, r, net->w_out, h, net->b_out, (size_t)net->cfg.out, h,
                   (size_t)B, ld, NN_ACT_IDENTITY);
    return out;
}

int resmlp_backward(resmlp *net, const float *dout, float *dinp, int B)
{
    if (B != net->last_b) {
        fprintf(stderr, "resmlp_backward: batch %d but the last forward had %d rows\n",
                B, net->last_b);
        return -1;
    }
    const int H = net->cfg.hidden, K = net->cfg.n_blocks;
    const size_t BH = (size_t)B * H, MBH = (size_t)net->max_batch * H;
    float *dh = net->scratch, *dh_next = net->scratch + MBH, *blk = net->scratch + 2 * MBH;
    nn_zero(dh, BH);
    nn_linear_backward(dh, net->dw_out, net->db_out, dout, net->h[K], net->w_out, B, H,
                       net->cfg.out);
    for (int k = K - 1; k >= 0; k--) {
        nn_zero(dh_next, BH);
        nn_resblock_backward(dh_next, net->dw1[k], net->db1[k], net->dw2[k], net->db2[k], blk,
                             dh, net->h[k], net->a0[k], net->h1[k], net->a1[k], net->w1[k],
                             net->w2[k], net->cfg.act, B, H);
        float *t = dh;
        dh = dh_next;
        dh_next = t;
    }
    nn_linear_backward(dinp, net->dw_in, net->db_in, dh, net->x, net->w_in, B, net->cfg.in, H);
    return 0;
}

void resmlp_zero_grad(resmlp *net)
{
    nn_zero(net->grads, net->n_params);
}

void resmlp_adam_step(resmlp *net, const nn_adam_config *cfg, float lr)
{
    net->step++;
    nn_adam_step(net->params, net->grads, net->m, net->v, net->n_params, cfg, lr, net->step);
}

static void resmlp_cfg5(const resmlp_config *c, int cfg5[5])
{
    cfg5[0] = c->in;
    cfg5[1] = c->hidden;
    cfg5[2] = c->n_blocks;
    cfg5[3] = c->out;
    cfg5[4] = (int)c->act;
}

size_t resmlp_save_size(const resmlp *net)
{
    return BLOB_HEADER + net->n_params * sizeof(float);
}

int resmlp_save(const resmlp *net, void *blob, size_t cap)
{
    if (!blob || cap < resmlp_save_size(net)) {
        fprintf(stderr, "resmlp_save: blob of %zu bytes, need %zu\n", cap,
                resmlp_save_size(net));
        return -1;
    }
    int cfg5[5];
    resmlp_cfg5(&net->cfg, cfg5);
    blob_write_header(blob, BLOB_KIND_RESMLP, cfg5, net->n_params);
    memcpy((unsigned char *)blob + BLOB_HEADER, net->params, net->n_params * sizeof(float));
    return 0;
}

int resmlp_load(resmlp *net, const void *blob, size_t len)
{
    int cfg5[5];
    resmlp_cfg5(&net->cfg, cfg5);
    if (blob_check("resmlp_load", blob, len, BLOB_KIND_RESMLP, cfg5, net->n_params) != 0)
        return -1;
    memcpy(net->params, (const unsigned char *)blob + BLOB_HEADER, net->n_params * sizeof(float));
    return 0;
}
