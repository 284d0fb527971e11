/* ic.c — the inference-compilation network (see ic.h). */
#include "ic/ic.h"

#include <assert.h>
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ic/ic_head.h"
#include "ic/ic_lstm.h"
#include "nn/simd.h"
#include "trace_store.h"

/* Draws with more elements or head outputs than this are left to the prior. */
#define IC_MAX_ELEMENTS 4096
#define IC_MAX_OUT (1 << 20)
#define IC_FILE_KIND 4u       /* model_file.h's MODEL_IC */
#define IC_PAYLOAD_VERSION 1u

ic_config ic_config_defaults(int obs_dim)
{
    ic_config c = {obs_dim, 64, 32, 16, 8, 16, 64, 3, 1};
    return c;
}

/* ---- the MLP observation embedding ------------------------------------------------------------------- */
/* x [B,D] -> pre1 = x W1^T + b1 [B,Hh] -> a1 = relu(pre1) -> pre2 = a1 W2^T + b2 [B,Eo] -> out = relu(pre2).
 * params: W1 [Hh, D], b1 [Hh], W2 [Eo, Hh], b2 [Eo].  act: pre1, a1, pre2. */

static size_t mlp_emb_params(const ic_config *c)
{
    return (size_t)c->obs_hidden * c->obs_dim + c->obs_hidden + (size_t)c->obs_emb * c->obs_hidden + c->obs_emb;
}

static void mlp_emb_init(const ic_config *c, float *p, rng *r)
{
    size_t n1 = (size_t)c->obs_hidden * c->obs_dim, n2 = (size_t)c->obs_emb * c->obs_hidden;
    nn_init_uniform(p, n1, sqrtf(6.0f / (float)c->obs_dim), r);
    nn_zero(p + n1, (size_t)c->obs_hidden);
    nn_init_uniform(p + n1 + c->obs_hidden, n2, sqrtf(6.0f / (float)c->obs_hidden), r);
    nn_zero(p + n1 + c->obs_hidden + n2, (size_t)c->obs_emb);
}

static size_t mlp_emb_act(const ic_config *c, int B) { return (size_t)B * (2 * c->obs_hidden + c->obs_emb); }

static void mlp_emb_forward(const ic_config *c, const float *p, const float *x, int B, float *act, float *out)
{
    int D = c->obs_dim, Hh = c->obs_hidden, E = c->obs_emb;
    const float *w1 = p, *b1 = w1 + (size_t)Hh * D, *w2 = b1 + Hh, *b2 = w2 + (size_t)E * Hh;
    float *pre1 = act, *a1 = pre1 + (size_t)B * Hh, *pre2 = a1 + (size_t)B * Hh;
    nn_linear_act_forward(pre1, a1, x, w1, b1, NN_ACT_RELU, B, D, Hh);
    nn_linear_act_forward(pre2, out, a1, w2, b2, NN_ACT_RELU, B, Hh, E);
}

static void mlp_emb_backward(const ic_config *c, const float *p, float *g, const float *x, float *act, float *dout,
                             int B)
{
    int D = c->obs_dim, Hh = c->obs_hidden, E = c->obs_emb;
    const float *w2 = p + (size_t)Hh * D + Hh;
    float *dw1 = g, *db1 = dw1 + (size_t)Hh * D, *dw2 = db1 + Hh, *db2 = dw2 + (size_t)E * Hh;
    float *pre1 = act, *a1 = pre1 + (size_t)B * Hh, *pre2 = a1 + (size_t)B * Hh;
    /* dout becomes d pre2 in place (the interface lets the backward overwrite it). */
    for (size_t i = 0; i < (size_t)B * E; i++)
        if (!(pre2[i] > 0)) dout[i] = 0;
    float *da1 = malloc((size_t)B * Hh * sizeof *da1);
    assert(da1);
    nn_zero(da1, (size_t)B * Hh);
    nn_linear_backward(da1, dw2, db2, dout, a1, w2, B, Hh, E);
    for (size_t i = 0; i < (size_t)B * Hh; i++)
        if (!(pre1[i] > 0)) da1[i] = 0;
    nn_linear_backward(NULL, dw1, db1, da1, x, p, B, D, Hh);
    free(da1);
}

const ic_embed_ops ic_embed_mlp = {"mlp", mlp_emb_params, mlp_emb_init, mlp_emb_act, mlp_emb_forward,
                                   mlp_emb_backward};

/* ---- construction and growth -------------------------------------------------------------------------- */

static int config_ok(const ic_config *c)
{
    return c->obs_dim >= 1 && c->obs_dim <= 1 << 20 && c->obs_hidden >= 1 && c->obs_emb >= 1 && c->addr_emb >= 1 &&
           c->type_emb >= 1 && c->val_emb >= 1 && c->hidden >= 1 && c->mixture >= 1 &&
           c->mixture <= IC_HEAD_MAX_K && (c->lstm == 0 || c->lstm == 1) && c->obs_hidden <= 4096 &&
           c->obs_emb <= 4096 && c->addr_emb <= 4096 && c->type_emb <= 4096 && c->val_emb <= 4096 &&
           c->hidden <= 4096;
}

/* Make room for n_params floats in all four buffers, zeroing what is new. */
static int reserve_params(ic_net *net, size_t n)
{
    if (n <= net->cap_params) return 0;
    size_t cap = net->cap_params ? net->cap_params : 4096;
    while (cap < n) cap *= 2;
    float **bufs[4] = {&net->params, &net->grads, &net->m, &net->v};
    for (int i = 0; i < 4; i++) {
        float *p = realloc(*bufs[i], cap * sizeof *p);
        if (!p) return -1;
        memset(p + net->cap_params, 0, (cap - net->cap_params) * sizeof *p);
        *bufs[i] = p;
    }
    net->cap_params = cap;
    return 0;
}

ic_net *ic_net_new(const ic_config *cfg, const char *const *obs_names, const int *obs_width, int n_obs_names,
                   uint64_t seed)
{
    if (!config_ok(cfg)) {
        fprintf(stderr, "ic: invalid network configuration\n");
        return NULL;
    }
    int total = 0;
    for (int i = 0; i < n_obs_names; i++) total += obs_width[i];
    if (n_obs_names > 0 && total != cfg->obs_dim) {
        fprintf(stderr, "ic: observation widths sum to %d, the configuration says %d\n", total, cfg->obs_dim);
        return NULL;
    }
    ic_net *net = calloc(1, sizeof *net);
    if (!net) return NULL;
    net->cfg = *cfg;
    net->embed = &ic_embed_mlp;
    net->in = cfg->obs_emb + cfg->val_emb + 2 * cfg->addr_emb + 2 * cfg->type_emb;
    /* LSTM heads read [h_t, e_obs]: h_t is bounded (tanh), the embedding is
     * not, so an observation far outside the training data can still
     * sharpen a proposal through this linear path. */
    net->head_in = cfg->lstm ? cfg->hidden + cfg->obs_emb : cfg->obs_emb;
    int H = cfg->hidden;
    net->off_embed = 0;
    net->off_type = net->embed->param_count(cfg);
    net->off_lw = net->off_type + (size_t)DIST_KIND_COUNT * cfg->type_emb;
    net->off_lb = net->off_lw + (cfg->lstm ? (size_t)4 * H * (net->in + H) : 0);
    net->n_fixed = net->off_lb + (cfg->lstm ? (size_t)4 * H : 0);
    net->n_params = net->n_fixed;
    net->obs_mean = calloc((size_t)cfg->obs_dim, sizeof *net->obs_mean);
    net->obs_std = calloc((size_t)cfg->obs_dim, sizeof *net->obs_std);
    net->obs_names = calloc((size_t)(n_obs_names > 0 ? n_obs_names : 1), sizeof *net->obs_names);
    net->obs_width = calloc((size_t)(n_obs_names > 0 ? n_obs_names : 1), sizeof *net->obs_width);
    if (!net->obs_mean || !net->obs_std || !net->obs_names || !net->obs_width || reserve_params(net, net->n_params) < 0)
        goto fail;
    for (int i = 0; i < cfg->obs_dim; i++) net->obs_std[i] = 1;
    for (int i = 0; i < n_obs_names; i++) {
        if (!(net->obs_names[i] = strdup(obs_names[i]))) goto fail;
        net->obs_width[i] = obs_width[i];
        net->n_obs_names = i + 1;
    }
    rng r;
    rng_seed(&r, seed, 0x69635f6e6574ull);
    net->embed->init(cfg, IC_P(net, net->off_embed), &r);
    nn_init_uniform(IC_P(net, net->off_type), (size_t)DIST_KIND_COUNT * cfg->type_emb, 0.5f, &r);
    if (cfg->lstm) {
        nn_init_uniform(IC_P(net, net->off_lw), (size_t)4 * H * (net->in + H), 1.0f / sqrtf((float)H), &r);
        for (int j = 0; j < H; j++) IC_P(net, net->off_lb)[H + j] = 1.0f; /* forget gate open */
    }
    rng_seed(&net->init_rng, seed, 0x69635f61646472ull);
    net->prov.created = (int64_t)time(NULL);
    net->prov.seed = seed;
    net->prov.best_val_loss = NAN;
    return net;
fail:
    ic_net_destroy(&net);
    return NULL;
}

void ic_net_destroy(ic_net **pp)
{
    if (!pp || !*pp) return;
    ic_net *net = *pp;
    free(net->params);
    free(net->grads);
    free(net->m);
    free(net->v);
    for (size_t i = 0; i < net->n_addrs; i++) free(net->addrs[i].name);
    free(net->addrs);
    free(net->table);
    for (int i = 0; i < net->n_obs_names; i++) free(net->obs_names[i]);
    free(net->obs_names);
    free(net->obs_width);
    free(net->obs_mean);
    free(net->obs_std);
    free(net->ws);
    free(net->gc);
    free(net->gc_start);
    free(net->gc_obs);
    free(net->gc_wt);
    free(net);
    *pp = NULL;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static int table_insert(ic_net *net, size_t idx)
{
    if (2 * (net->n_addrs + 1) > net->table_cap) {
        size_t cap = net->table_cap ? 2 * net->table_cap : 64;
        int32_t *t = calloc(cap, sizeof *t);
        if (!t) return -1;
        for (size_t i = 0; i < net->table_cap; i++)
            if (net->table[i]) {
                size_t h = hash_str(net->addrs[net->table[i] - 1].name) & (cap - 1);
                while (t[h]) h = (h + 1) & (cap - 1);
                t[h] = net->table[i];
            }
        free(net->table);
        net->table = t;
        net->table_cap = cap;
    }
    size_t h = hash_str(net->addrs[idx].name) & (net->table_cap - 1);
    while (net->table[h]) h = (h + 1) & (net->table_cap - 1);
    net->table[h] = (int32_t)idx + 1;
    return 0;
}

static int table_find(const ic_net *net, const char *name)
{
    if (!net->table_cap) return -1;
    size_t h = hash_str(name) & (net->table_cap - 1);
    while (net->table[h]) {
        int i = net->table[h] - 1;
        if (strcmp(net->addrs[i].name, name) == 0) return i;
        h = (h + 1) & (net->table_cap - 1);
    }
    return -1;
}

int ic_net_address(ic_net *net, const char *address, dist_kind kind, int n, int k, int create)
{
    int i = table_find(net, address);
    if (i >= 0) {
        const ic_addr *a = &net->addrs[i];
        return a->kind == kind && a->n == n && a->k == (kind == DIST_CATEGORICAL ? k : 0) ? i : -1;
    }
    if (!create) return -1;
    if (kind <= DIST_NONE || kind >= DIST_KIND_COUNT || n < 1 || n > IC_MAX_ELEMENTS) return -1;
    if (kind == DIST_CATEGORICAL && (k < 1 || k > IC_HEAD_MAX_CATEGORIES)) return -1;
    const ic_config *c = &net->cfg;
    ic_addr a;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.n = n;
    a.k = kind == DIST_CATEGORICAL ? k : 0;
    a.feat = kind == DIST_CATEGORICAL ? n * k : n;
    a.per = ic_head_width(kind, c->mixture, a.k);
    a.out = n * a.per;
    if (a.out > IC_MAX_OUT || (size_t)a.feat * n > (size_t)IC_MAX_OUT * 16) return -1;
    size_t off = net->n_params;
    a.emb = off;
    off += (size_t)c->addr_emb;
    a.vw = off;
    off += (size_t)c->val_emb * a.feat;
    a.vb = off;
    off += (size_t)c->val_emb;
    a.hw = off;
    off += (size_t)a.out * net->head_in;
    a.hb = off;
    off += (size_t)a.out;
    if (net->n_addrs == net->cap_addrs) {
        size_t cap = net->cap_addrs ? 2 * net->cap_addrs : 16;
        ic_addr *p = realloc(net->addrs, cap * sizeof *p);
        if (!p) return -1;
        net->addrs = p;
        net->cap_addrs = cap;
    }
    if (reserve_params(net, off) < 0 || !(a.name = strdup(address))) return -1;
    net->addrs[net->n_addrs] = a;
    if (table_insert(net, net->n_addrs) < 0) {
        free(a.name);
        return -1;
    }
    net->n_params = off;
    /* New block: moments and gradients are zero (reserve_params); the
     * existing parameters and their Adam state are untouched. */
    rng *r = &net->init_rng;
    nn_init_uniform(IC_P(net, a.emb), (size_t)c->addr_emb, 0.5f, r);
    nn_init_uniform(IC_P(net, a.vw), (size_t)c->val_emb * a.feat, sqrtf(6.0f / (float)(a.feat + c->val_emb)), r);
    nn_zero(IC_P(net, a.vb), (size_t)c->val_emb);
    nn_init_uniform(IC_P(net, a.hw), (size_t)a.out * net->head_in,
                    0.1f * sqrtf(6.0f / (float)(net->head_in + a.per)), r);
    for (int e = 0; e < n; e++) ic_head_init_bias(kind, c->mixture, a.k, IC_P(net, a.hb) + (size_t)e * a.per);
    for (size_t j = off - a.emb; j > 0; j--) {
        IC_G(net, a.emb)[j - 1] = 0;
        net->m[a.emb + j - 1] = 0;
        net->v[a.emb + j - 1] = 0;
    }
    return (int)net->n_addrs++;
}

/* ---- items ---------------------------------------------------------------------------------------------- */

void ic_expand_params(dist_kind kind, size_t n, size_t k, const double *p0, size_t n0, const double *p1, size_t n1,
                      double *o0, double *o1)
{
    if (kind == DIST_CATEGORICAL) {
        memcpy(o0, p0, n * k * sizeof *o0);
        memset(o1, 0, n * sizeof *o1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        o0[i] = p0[n0 == 1 ? 0 : i];
        o1[i] = (dist_nparams(kind) == 2 && n1) ? p1[n1 == 1 ? 0 : i] : 0;
    }
}

void ic_item_free(ic_item *it)
{
    free(it->obs);
    free(it->steps);
    free(it->arena);
    memset(it, 0, sizeof *it);
}

static size_t arena_take(ic_item *it, size_t n)
{
    if (it->arena_len + n > it->cap_arena) {
        size_t cap = it->cap_arena ? it->cap_arena : 256;
        while (cap < it->arena_len + n) cap *= 2;
        double *p = realloc(it->arena, cap * sizeof *p);
        if (!p) return (size_t)-1;
        it->arena = p;
        it->cap_arena = cap;
    }
    size_t off = it->arena_len;
    it->arena_len += n;
    return off;
}

static void obs_from_trace(const ic_net *net, const trace *t, double *raw)
{
    int off = 0;
    for (int j = 0; j < net->n_obs_names; j++) {
        const trace_entry *e = trace_find_name(t, net->obs_names[j]);
        int w = net->obs_width[j];
        for (int i = 0; i < w; i++)
            raw[off + i] = (e && e->value.len == (size_t)w && isfinite(e->value.data[i])) ? e->value.data[i] : NAN;
        off += w;
    }
}

int ic_item_from_trace(ic_net *net, ic_item *it, const trace *t, int create)
{
    int D = net->cfg.obs_dim;
    if (!it->obs && !(it->obs = malloc((size_t)D * sizeof *it->obs))) return -1;
    double *raw = malloc((size_t)D * sizeof *raw);
    if (!raw) return -1;
    for (int i = 0; i < D; i++) raw[i] = NAN;
    obs_from_trace(net, t, raw);
    for (int i = 0; i < D; i++) it->obs[i] = isnan(raw[i]) ? 0.0f : (float)((raw[i] - net->obs_mean[i]) / net->obs_std[i]);
    free(raw);
    it->T = 0;
    it->arena_len = 0;
    it->skipped = 0;
    for (size_t e = 0; e < t->n_entries; e++) {
        const trace_entry *te = &t->entries[e];
        if (te->kind != TRACE_SAMPLE || !te->control || te->observed) continue;
        size_t n = te->value.len;
        int a = ic_net_address(net, te->address, te->dist, (int)n, (int)te->k, create);
        if (a < 0) {
            it->skipped++;
            continue;
        }
        if ((size_t)it->T == it->cap_steps) {
            size_t cap = it->cap_steps ? 2 * it->cap_steps : 32;
            ic_step *p = realloc(it->steps, cap * sizeof *p);
            if (!p) return -1;
            it->steps = p;
            it->cap_steps = cap;
        }
        size_t k = te->dist == DIST_CATEGORICAL ? te->k : 1;
        size_t o0 = arena_take(it, n * k), o1 = arena_take(it, n), ox = arena_take(it, n);
        if (o0 == (size_t)-1 || o1 == (size_t)-1 || ox == (size_t)-1) return -1;
        ic_expand_params(te->dist, n, k, te->param[0].data, te->param[0].len, te->param[1].data, te->param[1].len,
                         it->arena + o0, it->arena + o1);
        memcpy(it->arena + ox, te->value.data, n * sizeof(double));
        ic_step *s = &it->steps[it->T++];
        s->addr = a;
        s->p0 = o0;
        s->p1 = o1;
        s->x = ox;
        net->addrs[a].count++;
    }
    return 0;
}

void ic_net_set_zscore(ic_net *net, const trace *const *traces, size_t n)
{
    int D = net->cfg.obs_dim;
    double *raw = malloc((size_t)D * sizeof *raw), *s1 = calloc((size_t)D, sizeof *s1),
           *s2 = calloc((size_t)D, sizeof *s2);
    size_t *cnt = calloc((size_t)D, sizeof *cnt);
    if (!raw || !s1 || !s2 || !cnt) goto out;
    for (size_t j = 0; j < n; j++) {
        obs_from_trace(net, traces[j], raw);
        for (int i = 0; i < D; i++)
            if (!isnan(raw[i])) {
                s1[i] += raw[i];
                s2[i] += raw[i] * raw[i];
                cnt[i]++;
            }
    }
    for (int i = 0; i < D; i++) {
        double m = cnt[i] ? s1[i] / (double)cnt[i] : 0, v = cnt[i] ? s2[i] / (double)cnt[i] - m * m : 1;
        double floor_ = fmax(1e-6 * fabs(m), 1e-12);
        net->obs_mean[i] = m;
        net->obs_std[i] = v > floor_ * floor_ ? sqrt(v) : (cnt[i] ? floor_ : 1);
    }
out:
    free(raw);
    free(s1);
    free(s2);
    free(cnt);
}

int ic_net_obs_vector(const ic_net *net, const char *const *names, const double *const *values, const size_t *counts,
                      size_t n, float *out)
{
    int off = 0, given = 0;
    for (int j = 0; j < net->n_obs_names; j++) {
        int w = net->obs_width[j];
        size_t q = 0;
        while (q < n && strcmp(names[q], net->obs_names[j]) != 0) q++;
        int ok = q < n && counts[q] == (size_t)w;
        given += ok;
        for (int i = 0; i < w; i++)
            out[off + i] = ok ? (float)((values[q][i] - net->obs_mean[off + i]) / net->obs_std[off + i]) : 0.0f;
        off += w;
    }
    return given;
}

/* ---- value features -------------------------------------------------------------------------------------- */

static void value_features(const ic_addr *a, const double *p0, const double *p1, const double *x, float *f)
{
    if (a->kind == DIST_CATEGORICAL) {
        memset(f, 0, (size_t)a->feat * sizeof *f);
        for (int i = 0; i < a->n; i++) {
            double v = x[i];
            if (v >= 0 && v < a->k) f[(size_t)i * a->k + (size_t)v] = 1.0f;
        }
        return;
    }
    for (int i = 0; i < a->n; i++) {
        dist d;
        double m, var;
        int two = dist_nparams(a->kind) == 2;
        if (dist_init(&d, a->kind, &p0[i], 1, two ? &p1[i] : NULL, two ? 1 : 0, 0, NULL, 0) < 0) {
            f[i] = 0;
            continue;
        }
        dist_mean(&d, &m);
        dist_variance(&d, &var);
        double sd = var > 0 && isfinite(var) ? sqrt(var) : 1;
        double z = (x[i] - (isfinite(m) ? m : 0)) / sd;
        f[i] = isfinite(z) ? (float)fmax(-10, fmin(10, z)) : 0.0f;
    }
}

/* ---- training loss ----------------------------------------------------------------------------------------- */

static int ws_reserve(ic_net *net, size_t n)
{
    if (n <= net->ws_cap) return 0;
    float *p = realloc(net->ws, n * sizeof *p);
    if (!p) return -1;
    net->ws = p;
    net->ws_cap = n;
    return 0;
}

static int cmp_items(const void *pa, const void *pb, void *ctx)
{
    ic_item *const *items = ctx;
    const ic_item *a = items[*(const int *)pa], *b = items[*(const int *)pb];
    if (a->T != b->T) return a->T < b->T ? -1 : 1;
    for (int t = 0; t < a->T; t++)
        if (a->steps[t].addr != b->steps[t].addr) return a->steps[t].addr < b->steps[t].addr ? -1 : 1;
    return *(const int *)pa - *(const int *)pb;
}

static int same_seq(const ic_item *a, const ic_item *b)
{
    if (a->T != b->T) return 0;
    for (int t = 0; t < a->T; t++)
        if (a->steps[t].addr != b->steps[t].addr) return 0;
    return 1;
}

/* Write the LSTM input rows of step t for G items (rows) into inp [G, In];
 * the value embedding of step t-1 is given in vemb [G, Ev] (NULL at t = 0). */
static void build_inputs(const ic_net *net, float *inp, const float *eo, const float *vemb, int prev_addr,
                         int cur_addr, int G)
{
    const ic_config *c = &net->cfg;
    int In = net->in;
    const float *tprev = IC_P(net, net->off_type) + (size_t)(prev_addr >= 0 ? net->addrs[prev_addr].kind : 0) * c->type_emb;
    const float *tcur = IC_P(net, net->off_type) + (size_t)net->addrs[cur_addr].kind * c->type_emb;
    for (int r = 0; r < G; r++) {
        float *row = inp + (size_t)r * In;
        memcpy(row, eo + (size_t)r * c->obs_emb, (size_t)c->obs_emb * sizeof *row);
        row += c->obs_emb;
        if (vemb) memcpy(row, vemb + (size_t)r * c->val_emb, (size_t)c->val_emb * sizeof *row);
        else memset(row, 0, (size_t)c->val_emb * sizeof *row);
        row += c->val_emb;
        if (prev_addr >= 0) memcpy(row, IC_P(net, net->addrs[prev_addr].emb), (size_t)c->addr_emb * sizeof *row);
        else memset(row, 0, (size_t)c->addr_emb * sizeof *row);
        row += c->addr_emb;
        memcpy(row, IC_P(net, net->addrs[cur_addr].emb), (size_t)c->addr_emb * sizeof *row);
        row += c->addr_emb;
        memcpy(row, tprev, (size_t)c->type_emb * sizeof *row);
        row += c->type_emb;
        memcpy(row, tcur, (size_t)c->type_emb * sizeof *row);
    }
}

/* One group of G items with the same address sequence.  Returns the sum
 * over items of -sum log q; gradients scaled by gscale (-1/B). */
static double group_loss(ic_net *net, ic_item *const *items, const int *idx, int G, int backward, double gscale)
{
    const ic_config *c = &net->cfg;
    const ic_item *it0 = items[idx[0]];
    int T = it0->T, D = c->obs_dim, Eo = c->obs_emb, Ev = c->val_emb, H = c->hidden, In = net->in;
    int lstm = c->lstm;
    /* sizes */
    size_t fixed = (size_t)G * D + net->embed->act_size(c, G) + 2 * (size_t)G * Eo;
    size_t per_step_total = 0, max_out = 1, max_feat = 1;
    for (int t = 0; t < T; t++) {
        const ic_addr *a = &net->addrs[it0->steps[t].addr];
        per_step_total += (size_t)G * a->out + (size_t)G * a->feat;
        if (lstm) per_step_total += (size_t)G * (In + (In + H) + 4 * H + 3 * H + H + Eo);
        if ((size_t)a->out > max_out) max_out = (size_t)a->out;
        if ((size_t)a->feat > max_feat) max_feat = (size_t)a->feat;
    }
    size_t back = (size_t)G * (4 * H + In + H) + (size_t)G * In + 6 * (size_t)G * H + (size_t)G * (Ev + H + Eo) +
                  (size_t)G * max_out + 64;
    if (ws_reserve(net, fixed + per_step_total + back) < 0) return NAN;
    float *w = net->ws;
    float *xo = w; w += (size_t)G * D;
    float *act = w; w += net->embed->act_size(c, G);
    float *eo = w; w += (size_t)G * Eo;
    float *deo = w; w += (size_t)G * Eo;
    float *scratch = w; w += (size_t)G * (4 * H + In + H);
    float *dinp = w; w += (size_t)G * In;
    float *zeros = w; w += (size_t)G * H;
    float *dh = w; w += (size_t)G * H;
    float *dc = w; w += (size_t)G * H;
    float *dhn = w; w += (size_t)G * H;
    float *dcn = w; w += (size_t)G * H;
    float *vtmp = w; w += (size_t)G * Ev;
    float *dhc = w; w += (size_t)G * (H + Eo);
    float *obuf = w; w += (size_t)G * max_out + 64 + (size_t)G * H;
    /* per-step pointers */
    float **inp = NULL, **xh = NULL, **gates = NULL, **cc = NULL, **tc = NULL, **hh = NULL, **feat = NULL, **dO = NULL,
          **hc = NULL;
    float **blocks = calloc((size_t)9 * (T ? T : 1), sizeof *blocks);
    if (!blocks) return NAN;
    inp = blocks; xh = inp + T; gates = xh + T; cc = gates + T; tc = cc + T; hh = tc + T; feat = hh + T; dO = feat + T;
    hc = dO + T;
    for (int t = 0; t < T; t++) {
        const ic_addr *a = &net->addrs[it0->steps[t].addr];
        if (lstm) {
            inp[t] = w; w += (size_t)G * In;
            xh[t] = w; w += (size_t)G * (In + H);
            gates[t] = w; w += (size_t)G * 4 * H;
            cc[t] = w; w += (size_t)G * H;
            tc[t] = w; w += (size_t)G * H;
            hh[t] = w; w += (size_t)G * H;
            hc[t] = w; w += (size_t)G * (H + Eo);
        }
        feat[t] = w; w += (size_t)G * a->feat;
        dO[t] = w; w += (size_t)G * a->out;
    }
    nn_zero(zeros, (size_t)G * H);
    for (int r = 0; r < G; r++) memcpy(xo + (size_t)r * D, items[idx[r]]->obs, (size_t)D * sizeof *xo);
    net->embed->forward(c, IC_P(net, net->off_embed), xo, G, act, eo);
    double loss = 0;
    /* forward */
    for (int t = 0; t < T; t++) {
        int ai = it0->steps[t].addr;
        const ic_addr *a = &net->addrs[ai];
        const float *hin = eo;
        if (lstm) {
            const float *ve = NULL;
            int prev = t > 0 ? it0->steps[t - 1].addr : -1;
            if (t > 0) {
                const ic_addr *pa = &net->addrs[prev];
                nn_linear_forward(vtmp, feat[t - 1], IC_P(net, pa->vw), IC_P(net, pa->vb), G, pa->feat, Ev);
                ve = vtmp;
            }
            build_inputs(net, inp[t], eo, ve, prev, ai, G);
            ic_lstm_forward(hh[t], cc[t], xh[t], gates[t], tc[t], inp[t], t > 0 ? hh[t - 1] : zeros,
                            t > 0 ? cc[t - 1] : zeros, IC_P(net, net->off_lw), IC_P(net, net->off_lb), G, In, H);
            for (int r = 0; r < G; r++) {
                memcpy(hc[t] + (size_t)r * (H + Eo), hh[t] + (size_t)r * H, (size_t)H * sizeof(float));
                memcpy(hc[t] + (size_t)r * (H + Eo) + H, eo + (size_t)r * Eo, (size_t)Eo * sizeof(float));
            }
            hin = hc[t];
        }
        nn_linear_forward(obuf, hin, IC_P(net, a->hw), IC_P(net, a->hb), G, net->head_in, a->out);
        nn_zero(dO[t], (size_t)G * a->out);
        for (int r = 0; r < G; r++) {
            const ic_item *it = items[idx[r]];
            const ic_step *s = &it->steps[t];
            const double *p0 = it->arena + s->p0, *p1 = it->arena + s->p1, *x = it->arena + s->x;
            int kk = a->kind == DIST_CATEGORICAL ? a->k : 1;
            for (int e = 0; e < a->n; e++) {
                const float *o = obuf + (size_t)r * a->out + (size_t)e * a->per;
                float *d = backward ? dO[t] + (size_t)r * a->out + (size_t)e * a->per : NULL;
                double lq = ic_head_logq(a->kind, c->mixture, a->k, p0[a->kind == DIST_CATEGORICAL ? 0 : e], p1[e],
                                         p0 + (size_t)e * kk, o, x[e], d, gscale);
                loss -= lq;
            }
            value_features(a, p0, p1, x, feat[t] + (size_t)r * a->feat);
        }
    }
    if (!backward) {
        free(blocks);
        return loss;
    }
    /* backward */
    nn_zero(deo, (size_t)G * Eo);
    nn_zero(dhn, (size_t)G * H);
    nn_zero(dcn, (size_t)G * H);
    const ic_config *cf = c;
    for (int t = T - 1; t >= 0; t--) {
        int ai = it0->steps[t].addr;
        const ic_addr *a = &net->addrs[ai];
        if (!lstm) {
            nn_linear_backward(deo, IC_G(net, a->hw), IC_G(net, a->hb), dO[t], eo, IC_P(net, a->hw), G, net->head_in,
                               a->out);
            continue;
        }
        memcpy(dh, dhn, (size_t)G * H * sizeof *dh);
        memcpy(dc, dcn, (size_t)G * H * sizeof *dc);
        nn_zero(dhn, (size_t)G * H);
        nn_zero(dcn, (size_t)G * H);
        nn_zero(dhc, (size_t)G * (H + Eo));
        nn_linear_backward(dhc, IC_G(net, a->hw), IC_G(net, a->hb), dO[t], hc[t], IC_P(net, a->hw), G, H + Eo, a->out);
        for (int r = 0; r < G; r++) {
            for (int j = 0; j < H; j++) dh[(size_t)r * H + j] += dhc[(size_t)r * (H + Eo) + j];
            for (int j = 0; j < Eo; j++) deo[(size_t)r * Eo + j] += dhc[(size_t)r * (H + Eo) + H + j];
        }
        nn_zero(dinp, (size_t)G * In);
        ic_lstm_backward(dinp, t > 0 ? dhn : NULL, t > 0 ? dcn : NULL, IC_G(net, net->off_lw), IC_G(net, net->off_lb),
                         scratch, dh, dc, xh[t], gates[t], tc[t], t > 0 ? cc[t - 1] : zeros, IC_P(net, net->off_lw), G,
                         In, H);
        int prev = t > 0 ? it0->steps[t - 1].addr : -1;
        float *gtp = IC_G(net, net->off_type) + (size_t)(prev >= 0 ? net->addrs[prev].kind : 0) * cf->type_emb;
        float *gtc = IC_G(net, net->off_type) + (size_t)a->kind * cf->type_emb;
        float *gac = IC_G(net, a->emb);
        float *gap = prev >= 0 ? IC_G(net, net->addrs[prev].emb) : NULL;
        for (int r = 0; r < G; r++) {
            const float *row = dinp + (size_t)r * In;
            for (int j = 0; j < Eo; j++) deo[(size_t)r * Eo + j] += row[j];
            row += Eo;
            memcpy(vtmp + (size_t)r * Ev, row, (size_t)Ev * sizeof *vtmp);
            row += Ev;
            if (gap)
                for (int j = 0; j < cf->addr_emb; j++) gap[j] += row[j];
            row += cf->addr_emb;
            for (int j = 0; j < cf->addr_emb; j++) gac[j] += row[j];
            row += cf->addr_emb;
            for (int j = 0; j < cf->type_emb; j++) gtp[j] += row[j];
            row += cf->type_emb;
            for (int j = 0; j < cf->type_emb; j++) gtc[j] += row[j];
        }
        if (prev >= 0) {
            const ic_addr *pa = &net->addrs[prev];
            nn_linear_backward(NULL, IC_G(net, pa->vw), IC_G(net, pa->vb), vtmp, feat[t - 1], IC_P(net, pa->vw), G,
                               pa->feat, Ev);
        }
    }
    net->embed->backward(c, IC_P(net, net->off_embed), IC_G(net, net->off_embed), xo, act, deo, G);
    free(blocks);
    return loss;
}

double ic_net_loss(ic_net *net, ic_item *const *items, int B, int backward)
{
    if (B < 1) return 0;
    int *idx = malloc((size_t)B * sizeof *idx);
    if (!idx) return NAN;
    for (int i = 0; i < B; i++) idx[i] = i;
    qsort_r(idx, (size_t)B, sizeof *idx, cmp_items, (void *)items);
    double total = 0;
    for (int s = 0; s < B;) {
        int e = s + 1;
        while (e < B && same_seq(items[idx[s]], items[idx[e]])) e++;
        if (items[idx[s]]->T > 0) total += group_loss(net, items, idx + s, e - s, backward, -1.0 / B);
        s = e;
    }
    free(idx);
    return total / B;
}

void ic_net_zero_grad(ic_net *net) { nn_zero(net->grads, net->n_params); }

double ic_net_adam_step(ic_net *net, const nn_adam_config *cfg, float lr, double clip)
{
    double norm = clip > 0 ? nn_clip_grad_norm(net->grads, net->n_params, clip) : nn_grad_norm(net->grads, net->n_params);
    if (!isfinite(norm)) return norm;
    net->step++;
    nn_adam_step(net->params, net->grads, net->m, net->v, net->n_params, cfg, lr, net->step);
    ic_net_invalidate(net);
    return norm;
}

/* ---- inference ------------------------------------------------------------------------------------------------ */

int ic_state_init(const ic_net *net, ic_state *s)
{
    int H = net->cfg.hidden, Ev = net->cfg.val_emb;
    s->h = calloc((size_t)H, sizeof *s->h);
    s->c = calloc((size_t)H, sizeof *s->c);
    s->prev_val = calloc((size_t)Ev, sizeof *s->prev_val);
    s->prev_addr = -1;
    if (!s->h || !s->c || !s->prev_val) {
        ic_state_free(s);
        return -1;
    }
    return 0;
}

void ic_state_reset(const ic_net *net, ic_state *s)
{
    nn_zero(s->h, (size_t)net->cfg.hidden);
    nn_zero(s->c, (size_t)net->cfg.hidden);
    nn_zero(s->prev_val, (size_t)net->cfg.val_emb);
    s->prev_addr = -1;
}

void ic_state_free(ic_state *s)
{
    free(s->h);
    free(s->c);
    free(s->prev_val);
    s->h = s->c = s->prev_val = NULL;
}

void ic_net_embed_obs(ic_net *net, const float *obs, float *obs_emb)
{
    size_t na = net->embed->act_size(&net->cfg, 1);
    if (ws_reserve(net, na) < 0) {
        nn_zero(obs_emb, (size_t)net->cfg.obs_emb);
        return;
    }
    net->embed->forward(&net->cfg, IC_P(net, net->off_embed), obs, 1, net->ws, obs_emb);
}

void ic_net_invalidate(ic_net *net)
{
    net->n_gc_addrs = 0;
    net->gc_start_ok = 0;
    net->gc_obs_ok = 0;
    net->gc_wt_ok = 0;
}

/* Columns of the LSTM's W [4H, In + H] for each part of the input (see
 * build_inputs): obs, value, previous address, current address, previous
 * type, current type; then h at In. */
enum { GC_OBS, GC_VAL, GC_PADDR, GC_CADDR, GC_PTYPE, GC_CTYPE };
static size_t gc_col(const ic_net *net, int part)
{
    const ic_config *c = &net->cfg;
    size_t w[6] = {(size_t)c->obs_emb, (size_t)c->val_emb, (size_t)c->addr_emb, (size_t)c->addr_emb,
                   (size_t)c->type_emb, (size_t)c->type_emb};
    size_t off = 0;
    for (int i = 0; i < part; i++) off += w[i];
    return off;
}

/* out [4H] (=, or += with acc) W[:, part's columns] v. */
static void gc_apply(const ic_net *net, int part, int width, const float *v, float *out, int acc)
{
    int H = net->cfg.hidden, ld = net->in + H;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, 4 * H, width, 1.0f, IC_P(net, net->off_lw) + gc_col(net, part), ld, v, 1,
                acc ? 1.0f : 0.0f, out, 1);
}

/* simd_linear_fm computes whole groups of SIMD_FM_PAD outputs. */
static size_t gc_pad(size_t n) { return (n + SIMD_FM_PAD - 1) / SIMD_FM_PAD * SIMD_FM_PAD; }

/* Fill the inference cache for the first n_addrs addresses, the start and
 * the observation embedding eo.  0 or -1 (out of memory). */
static int gc_prepare(ic_net *net, const float *eo)
{
    const ic_config *c = &net->cfg;
    size_t H4 = (size_t)4 * c->hidden;
    const float *types = IC_P(net, net->off_type);
    size_t K = (size_t)c->val_emb + (size_t)c->hidden, Hp = gc_pad(H4);
    if (!net->gc_start) {
        net->gc_start = malloc(H4 * sizeof *net->gc_start);
        net->gc_obs = malloc((H4 + (size_t)c->obs_emb) * sizeof *net->gc_obs);
        net->gc_wt = calloc(K * Hp, sizeof *net->gc_wt);
        if (!net->gc_start || !net->gc_obs || !net->gc_wt) return -1;
    }
    if (!net->gc_wt_ok) {
        const float *w = IC_P(net, net->off_lw);
        size_t ld = (size_t)net->in + (size_t)c->hidden, cv = gc_col(net, GC_VAL);
        for (size_t u = 0; u < H4; u++) {
            for (size_t i = 0; i < (size_t)c->val_emb; i++) net->gc_wt[i * Hp + u] = w[u * ld + cv + i];
            for (size_t i = 0; i < (size_t)c->hidden; i++)
                net->gc_wt[((size_t)c->val_emb + i) * Hp + u] = w[u * ld + (size_t)net->in + i];
        }
        net->gc_wt_ok = 1;
    }
    if (net->cap_gc_addrs < net->n_addrs) {
        size_t cap = net->n_addrs + 16;
        float *p = realloc(net->gc, cap * 2 * H4 * sizeof *p);
        if (!p) return -1;
        net->gc = p;
        net->cap_gc_addrs = cap;
    }
    for (size_t a = net->n_gc_addrs; a < net->n_addrs; a++) {
        const ic_addr *ad = &net->addrs[a];
        float *cur = net->gc + a * 2 * H4, *prev = cur + H4;
        gc_apply(net, GC_CADDR, c->addr_emb, IC_P(net, ad->emb), cur, 0);
        gc_apply(net, GC_CTYPE, c->type_emb, types + (size_t)ad->kind * c->type_emb, cur, 1);
        gc_apply(net, GC_PADDR, c->addr_emb, IC_P(net, ad->emb), prev, 0);
        gc_apply(net, GC_PTYPE, c->type_emb, types + (size_t)ad->kind * c->type_emb, prev, 1);
    }
    net->n_gc_addrs = net->n_addrs;
    if (!net->gc_start_ok) {
        /* the first step: no previous value or address, the start type 0 */
        gc_apply(net, GC_PTYPE, c->type_emb, types, net->gc_start, 0);
        net->gc_start_ok = 1;
    }
    float *seen = net->gc_obs + H4;
    if (!net->gc_obs_ok || memcmp(seen, eo, (size_t)c->obs_emb * sizeof *eo) != 0) {
        memcpy(net->gc_obs, IC_P(net, net->off_lb), H4 * sizeof *net->gc_obs);
        gc_apply(net, GC_OBS, c->obs_emb, eo, net->gc_obs, 1);
        memcpy(seen, eo, (size_t)c->obs_emb * sizeof *eo);
        net->gc_obs_ok = 1;
    }
    return 0;
}

/* One LSTM step for R queries from the cache: gates = [b + W_obs eo] +
 * cur[a] + prev[p] (or start) + W_val v + W_h h, then the activations.  The
 * same sums as ic_lstm_forward's in another order (equal to float rounding). */
static int gc_step(ic_net *net, const float *eo, ic_query *q, int R, float *gates, float *vin, float *hin,
                   float *cprev, float *h, float *cn, float *tc, float *vh)
{
    const ic_config *c = &net->cfg;
    int H = c->hidden, Ev = c->val_emb;
    size_t H4 = (size_t)4 * H;
    if (gc_prepare(net, eo) < 0) return -1;
    for (int r = 0; r < R; r++) {
        const ic_state *s = q[r].st;
        float *g = gates + (size_t)r * H4;
        const float *cur = net->gc + (size_t)q[r].addr * 2 * H4;
        const float *prev = s->prev_addr >= 0 ? net->gc + (size_t)s->prev_addr * 2 * H4 + H4 : net->gc_start;
        for (size_t j = 0; j < H4; j++) g[j] = net->gc_obs[j] + cur[j] + prev[j];
        if (s->prev_addr >= 0) memcpy(vin + (size_t)r * Ev, s->prev_val, (size_t)Ev * sizeof *vin);
        else memset(vin + (size_t)r * Ev, 0, (size_t)Ev * sizeof *vin);
        memcpy(hin + (size_t)r * H, s->h, (size_t)H * sizeof *hin);
        memcpy(cprev + (size_t)r * H, s->c, (size_t)H * sizeof *cprev);
    }
    /* gates_r += [v_r, h_r] . W_{val,h}^T: a 1 x (Ev + H) by (Ev + H) x 4H
     * product on the transposed block, vectorised along the 4H gates. */
    static const float zero = 0.0f;
    size_t K = (size_t)Ev + (size_t)H, Hp = gc_pad(H4);
    float *gp = vh + K; /* [Hp] */
    for (int r = 0; r < R; r++) {
        float *g = gates + (size_t)r * H4;
        memcpy(vh, vin + (size_t)r * Ev, (size_t)Ev * sizeof *vh);
        memcpy(vh + Ev, hin + (size_t)r * H, (size_t)H * sizeof *vh);
        memcpy(gp, g, H4 * sizeof *gp);
        simd_linear_fm(gp, NULL, gp, net->gc_wt, vh, K, &zero, 1, K, H4, Hp, NN_ACT_RELU);
        memcpy(g, gp, H4 * sizeof *g);
    }
    ic_lstm_activate(h, cn, gates, tc, cprev, R, H);
    return 0;
}

static int propose_or_score(ic_net *net, const float *obs_emb, ic_query *q, int R, int sample)
{
    const ic_config *c = &net->cfg;
    int H = c->hidden, Eo = c->obs_emb, Ev = c->val_emb;
    size_t max_out = 1, max_feat = 1;
    for (int r = 0; r < R; r++) {
        const ic_addr *a = &net->addrs[q[r].addr];
        if ((size_t)a->out > max_out) max_out = (size_t)a->out;
        if ((size_t)a->feat > max_feat) max_feat = (size_t)a->feat;
    }
    size_t need = (size_t)R * (4 * H + Ev + 5 * H) + max_out + max_feat + H + Eo + Ev + H + gc_pad((size_t)4 * H);
    if (ws_reserve(net, need) < 0) return -1;
    float *w = net->ws;
    float *gates = w; w += (size_t)R * 4 * H;
    float *vin = w; w += (size_t)R * Ev;
    float *hp = w; w += (size_t)R * H;
    float *cp = w; w += (size_t)R * H;
    float *h = w; w += (size_t)R * H;
    float *cn = w; w += (size_t)R * H;
    float *tc = w; w += (size_t)R * H;
    float *o = w; w += max_out;
    float *hcat = w; w += H + Eo;
    float *vh = w; w += Ev + H;
    float *f = w;
    if (c->lstm && gc_step(net, obs_emb, q, R, gates, vin, hp, cp, h, cn, tc, vh) < 0) return -1;
    for (int r = 0; r < R; r++) {
        ic_query *qq = &q[r];
        const ic_addr *a = &net->addrs[qq->addr];
        const float *hin = obs_emb;
        if (c->lstm) {
            memcpy(hcat, h + (size_t)r * H, (size_t)H * sizeof *hcat);
            memcpy(hcat + H, obs_emb, (size_t)Eo * sizeof *hcat);
            hin = hcat;
        }
        memcpy(o, IC_P(net, a->hb), (size_t)a->out * sizeof *o);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, a->out, net->head_in, 1.0f, IC_P(net, a->hw), net->head_in, hin, 1,
                    1.0f, o, 1);
        int kk = a->kind == DIST_CATEGORICAL ? a->k : 1;
        double lq = 0;
        for (int e = 0; e < a->n; e++) {
            const float *oe = o + (size_t)e * a->per;
            double p0 = qq->p0[a->kind == DIST_CATEGORICAL ? 0 : e], p1 = qq->p1[e];
            if (sample) {
                double l;
                qq->x[e] = ic_head_sample(a->kind, c->mixture, a->k, p0, p1, qq->p0 + (size_t)e * kk, oe, qq->r, &l);
                lq += l;
            } else {
                lq += ic_head_logq(a->kind, c->mixture, a->k, p0, p1, qq->p0 + (size_t)e * kk, oe, qq->x[e], NULL, 0);
            }
        }
        qq->logq = lq;
        if (c->lstm) {
            ic_state *s = qq->st;
            value_features(a, qq->p0, qq->p1, qq->x, f);
            memcpy(s->prev_val, IC_P(net, a->vb), (size_t)Ev * sizeof *s->prev_val);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Ev, a->feat, 1.0f, IC_P(net, a->vw), a->feat, f, 1, 1.0f,
                        s->prev_val, 1);
            memcpy(s->h, h + (size_t)r * H, (size_t)H * sizeof *s->h);
            memcpy(s->c, cn + (size_t)r * H, (size_t)H * sizeof *s->c);
        }
        qq->st->prev_addr = qq->addr;
    }
    return 0;
}

int ic_net_propose(ic_net *net, const float *obs_emb, ic_query *q, int R) { return propose_or_score(net, obs_emb, q, R, 1); }
int ic_net_score(ic_net *net, const float *obs_emb, ic_query *q, int R) { return propose_or_score(net, obs_emb, q, R, 0); }

/* ---- files ------------------------------------------------------------------------------------------------------ */

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    int bad;
} wbuf;

static void w_bytes(wbuf *w, const void *src, size_t n)
{
    if (w->bad) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) cap *= 2;
        unsigned char *p = realloc(w->p, cap);
        if (!p) {
            w->bad = 1;
            return;
        }
        w->p = p;
        w->cap = cap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}
static void w_u32(wbuf *w, uint32_t v) { w_bytes(w, &v, 4); } /* little-endian host (x86-64) */
static void w_u64(wbuf *w, uint64_t v) { w_bytes(w, &v, 8); }
static void w_f64(wbuf *w, double v) { w_bytes(w, &v, 8); }
static void w_str(wbuf *w, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    w_u32(w, n);
    w_bytes(w, s, n);
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, pos;
    int bad;
} rbuf;

static void r_bytes(rbuf *r, void *dst, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p + r->pos, n);
    r->pos += n;
}
static uint32_t r_u32(rbuf *r)
{
    uint32_t v;
    r_bytes(r, &v, 4);
    return v;
}
static uint64_t r_u64(rbuf *r)
{
    uint64_t v;
    r_bytes(r, &v, 8);
    return v;
}
static double r_f64(rbuf *r)
{
    double v;
    r_bytes(r, &v, 8);
    return v;
}
static char *r_str(rbuf *r)
{
    uint32_t n = r_u32(r);
    if (r->bad || n > r->len - r->pos || n > (1u << 20)) {
        r->bad = 1;
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s) {
        r->bad = 1;
        return NULL;
    }
    r_bytes(r, s, n);
    s[n] = 0;
    return s;
}

int ic_net_save(const ic_net *net, const char *path, char *err, size_t err_len)
{
    wbuf w = {0};
    w_bytes(&w, "PPXMODEL", 8);
    w_u32(&w, 1); /* container version (MODEL_FILE_VERSION) */
    w_u32(&w, 0);
    w_u64(&w, 0); /* payload length, patched below */
    size_t p0 = w.len;
    w_u32(&w, IC_FILE_KIND);
    w_u32(&w, IC_PAYLOAD_VERSION);
    const ic_config *c = &net->cfg;
    int cfgv[9] = {c->obs_dim, c->obs_hidden, c->obs_emb, c->addr_emb, c->type_emb, c->val_emb, c->hidden, c->mixture, c->lstm};
    for (int i = 0; i < 9; i++) w_u32(&w, (uint32_t)cfgv[i]);
    w_str(&w, net->embed->name);
    w_u32(&w, (uint32_t)net->n_obs_names);
    for (int i = 0; i < net->n_obs_names; i++) {
        w_str(&w, net->obs_names[i]);
        w_u32(&w, (uint32_t)net->obs_width[i]);
    }
    for (int i = 0; i < c->obs_dim; i++) w_f64(&w, net->obs_mean[i]);
    for (int i = 0; i < c->obs_dim; i++) w_f64(&w, net->obs_std[i]);
    w_u64(&w, net->n_addrs);
    for (size_t i = 0; i < net->n_addrs; i++) {
        const ic_addr *a = &net->addrs[i];
        w_str(&w, a->name);
        w_u32(&w, (uint32_t)a->kind);
        w_u32(&w, (uint32_t)a->n);
        w_u32(&w, (uint32_t)a->k);
        w_u64(&w, a->count);
    }
    const ic_provenance *pv = &net->prov;
    w_u64(&w, (uint64_t)pv->created);
    w_u64(&w, pv->n_traces);
    w_u64(&w, pv->n_val);
    w_u64(&w, pv->steps);
    w_f64(&w, pv->best_val_loss);
    w_f64(&w, pv->train_seconds);
    w_u64(&w, pv->seed);
    w_str(&w, pv->source);
    w_u64(&w, net->n_params);
    w_bytes(&w, net->params, net->n_params * sizeof(float));
    if (w.bad) {
        free(w.p);
        snprintf(err, err_len, "%s: out of memory", path);
        return -1;
    }
    uint64_t plen = w.len - p0;
    memcpy(w.p + 16, &plen, 8);
    uint32_t crc = trace_crc32c(0, w.p, w.len);
    w_u32(&w, crc);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(w.p, 1, w.len, f) == w.len;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        remove(tmp);
    }
    free(w.p);
    return ok ? 0 : -1;
}

ic_net *ic_net_load(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 65536;
            unsigned char *p = realloc(buf, cap);
            if (!p) break;
            buf = p;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    ic_net *net = NULL;
    char **names = NULL;
    int *widths = NULL;
    uint32_t n_names = 0;
    if (!buf || len < 8 || memcmp(buf, "PPXMODEL", 8) != 0) {
        snprintf(err, err_len, "%s: not a ppxd model file", path);
        goto out;
    }
    uint64_t plen;
    uint32_t version;
    if (len < 28) {
        snprintf(err, err_len, "%s: truncated", path);
        goto out;
    }
    memcpy(&version, buf + 8, 4);
    memcpy(&plen, buf + 16, 8);
    if (plen > len - 28 || 24 + plen + 4 != len) {
        snprintf(err, err_len, "%s: truncated (or trailing bytes)", path);
        goto out;
    }
    uint32_t crc;
    memcpy(&crc, buf + 24 + plen, 4);
    if (crc != trace_crc32c(0, buf, 24 + plen)) {
        snprintf(err, err_len, "%s: corrupted (checksum mismatch)", path);
        goto out;
    }
    if (version != 1) {
        snprintf(err, err_len, "%s: model file format version %u, this ppxd reads version 1", path, version);
        goto out;
    }
    rbuf r = {buf + 24, plen, 0, 0};
    uint32_t kind = r_u32(&r), pver = r_u32(&r);
    if (kind != IC_FILE_KIND) {
        snprintf(err, err_len, "%s: not an inference-compilation model (model kind %u; see ppxd posterior info)", path,
                 kind);
        goto out;
    }
    if (pver != IC_PAYLOAD_VERSION) {
        snprintf(err, err_len, "%s: IC model payload version %u, this ppxd reads %u", path, pver, IC_PAYLOAD_VERSION);
        goto out;
    }
    ic_config c;
    uint32_t cv[9];
    for (int i = 0; i < 9; i++) cv[i] = r_u32(&r);
    c.obs_dim = (int)cv[0]; c.obs_hidden = (int)cv[1]; c.obs_emb = (int)cv[2]; c.addr_emb = (int)cv[3];
    c.type_emb = (int)cv[4]; c.val_emb = (int)cv[5]; c.hidden = (int)cv[6]; c.mixture = (int)cv[7]; c.lstm = (int)cv[8];
    char *ename = r_str(&r);
    int emb_ok = ename && strcmp(ename, ic_embed_mlp.name) == 0;
    free(ename);
    n_names = r_u32(&r);
    if (r.bad || !emb_ok || n_names > (uint32_t)c.obs_dim || !config_ok(&c)) {
        snprintf(err, err_len, "%s: bad IC model configuration", path);
        goto out;
    }
    names = calloc(n_names ? n_names : 1, sizeof *names);
    widths = calloc(n_names ? n_names : 1, sizeof *widths);
    if (!names || !widths) goto oom;
    for (uint32_t i = 0; i < n_names; i++) {
        names[i] = r_str(&r);
        widths[i] = (int)r_u32(&r);
    }
    if (r.bad) goto bad;
    net = ic_net_new(&c, (const char *const *)names, widths, (int)n_names, 0);
    if (!net) goto bad;
    for (int i = 0; i < c.obs_dim; i++) net->obs_mean[i] = r_f64(&r);
    for (int i = 0; i < c.obs_dim; i++) net->obs_std[i] = r_f64(&r);
    uint64_t na = r_u64(&r);
    if (r.bad || na > (1u << 24)) goto bad;
    for (uint64_t i = 0; i < na; i++) {
        char *an = r_str(&r);
        uint32_t k = r_u32(&r), n = r_u32(&r), kk = r_u32(&r);
        uint64_t cnt = r_u64(&r);
        int ok = !r.bad && an && table_find(net, an) < 0 &&
                 ic_net_address(net, an, (dist_kind)k, (int)n, (int)kk, 1) == (int)i;
        free(an);
        if (!ok) goto bad;
        net->addrs[i].count = cnt;
    }
    ic_provenance *pv = &net->prov;
    pv->created = (int64_t)r_u64(&r);
    pv->n_traces = r_u64(&r);
    pv->n_val = r_u64(&r);
    pv->steps = r_u64(&r);
    pv->best_val_loss = r_f64(&r);
    pv->train_seconds = r_f64(&r);
    pv->seed = r_u64(&r);
    char *src = r_str(&r);
    if (src) snprintf(pv->source, sizeof pv->source, "%s", src);
    free(src);
    uint64_t np = r_u64(&r);
    if (r.bad || np != net->n_params || r.len - r.pos != np * sizeof(float)) goto bad;
    r_bytes(&r, net->params, np * sizeof(float));
    goto out;
oom:
    snprintf(err, err_len, "%s: out of memory", path);
    goto out;
bad:
    snprintf(err, err_len, "%s: inconsistent IC model payload", path);
    ic_net_destroy(&net);
out:
    if (names)
        for (uint32_t i = 0; i < n_names; i++) free(names[i]);
    free(names);
    free(widths);
    free(buf);
    return net;
}

void ic_net_print(const ic_net *net, FILE *f)
{
    const ic_config *c = &net->cfg;
    fprintf(f, "kind            IC (inference compilation), %s core\n", c->lstm ? "LSTM" : "feed-forward");
    fprintf(f, "network         obs %d -> %s %d -> %d; address emb %d, type emb %d, value emb %d, hidden %d, "
               "mixture %d; %zu parameters\n",
            c->obs_dim, net->embed->name, c->obs_hidden, c->obs_emb, c->addr_emb, c->type_emb, c->val_emb, c->hidden,
            c->mixture, net->n_params);
    fprintf(f, "observes       ");
    for (int i = 0; i < net->n_obs_names; i++) fprintf(f, " %s[%d]", net->obs_names[i], net->obs_width[i]);
    fprintf(f, "\naddresses       %zu\n", net->n_addrs);
    for (size_t i = 0; i < net->n_addrs && i < 40; i++)
        fprintf(f, "  %-50s %-12s n=%d  draws %llu\n", net->addrs[i].name, dist_kind_name(net->addrs[i].kind),
                net->addrs[i].n, (unsigned long long)net->addrs[i].count);
    if (net->n_addrs > 40) fprintf(f, "  ... %zu more\n", net->n_addrs - 40);
    fprintf(f, "training        %llu traces, %llu validation, %llu steps, best validation loss %.6g, %.1f s, seed %llu\n",
            (unsigned long long)net->prov.n_traces, (unsigned long long)net->prov.n_val,
            (unsigned long long)net->prov.steps, net->prov.best_val_loss, net->prov.train_seconds,
            (unsigned long long)net->prov.seed);
    if (net->prov.source[0]) fprintf(f, "source          %s\n", net->prov.source);
}
