/* ic.h — inference compilation (Le, Baydin & Wood 2017): the proposal
 * network q(z | x) that ppxd trains on prior traces and uses to answer each
 * controlled Sample of a simulator during importance sampling.
 *
 * Network (llm.c style, float32, batch-major):
 *   observation embedding  obs [B, D] (the named observes, concatenated and
 *                          z-scored with the constants stored in the net) ->
 *                          e_obs [B, Eo], through a pluggable embedding
 *                          (ic_embed_ops; the built-in one is a 2-layer ReLU
 *                          MLP D -> obs_hidden -> Eo);
 *   core, LSTM (cfg.lstm = 1): stepped once per controlled draw; the input of
 *                          step t is [e_obs, value embedding of draw t-1,
 *                          address embedding of t-1, of t, distribution-type
 *                          embedding of t-1, of t] (width In = Eo + Ev + 2 Ea
 *                          + 2 Et; at t = 0 the "previous" parts are zero and
 *                          the type is the start type 0); hidden width H;
 *   core, feed-forward (cfg.lstm = 0): no recurrence; every head reads e_obs;
 *   per address a: an embedding [Ea], a value embedding Linear [Ev, F_a]
 *                          of the value's features (one-hot for Categorical,
 *                          prior-standardised value otherwise; F_a = n k or
 *                          n) and a proposal head Linear [n P, H or Eo] whose
 *                          outputs feed ic_head.h element by element (P =
 *                          ic_head_width of the prior's kind).
 *
 * Parameters: ONE contiguous float buffer params [n_params] (and grads, Adam
 * m and v with the same layout): first the fixed part (embedding, type
 * embeddings [DIST_KIND_COUNT, Et], LSTM W [4H, In + H] and b [4H]), then one
 * block per address in the order the addresses were first seen.  A new
 * address grows all four buffers in place (realloc): existing parameters,
 * gradients and Adam moments are kept; the new block's moments start at 0.
 * Views are offsets (ic_addr.*) because growing may move the buffers; use
 * IC_P(net, off) / IC_G(net, off).
 *
 * Addresses are the full trace addresses (with the __Kind__n suffix).  An
 * address is bound to its kind, element count n and (Categorical) k when
 * first seen; a later draw at that address with another shape is treated as
 * unseen.
 *
 * Ownership: a net owns its buffers, address table, names and workspace.
 * Not thread-safe: one thread uses a net at a time.
 */
#ifndef PPX_IC_H
#define PPX_IC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dist.h"
#include "nn/nn.h"
#include "rng.h"
#include "trace.h"

typedef struct ic_config {
    int obs_dim;     /* D >= 1: total observed values */
    int obs_hidden;  /* hidden width of the MLP embedding (64) */
    int obs_emb;     /* Eo (32) */
    int addr_emb;    /* Ea (16) */
    int type_emb;    /* Et (8) */
    int val_emb;     /* Ev (16) */
    int hidden;      /* H, LSTM (64) */
    int mixture;     /* K mixture components of the continuous/count heads (3) */
    int lstm;        /* 1: LSTM core, 0: feed-forward */
} ic_config;

/* Defaults above for D observed values. */
ic_config ic_config_defaults(int obs_dim);

typedef struct ic_net ic_net;

/* Observation embedding interface: a module with its own slice of the
 * parameter buffer.  A convolutional embedding implements the same five
 * functions. */
typedef struct ic_embed_ops {
    const char *name;
    size_t (*param_count)(const ic_config *cfg);
    void (*init)(const ic_config *cfg, float *params, rng *r);
    /* floats of saved activations for B rows */
    size_t (*act_size)(const ic_config *cfg, int B);
    /* x [B, D] -> out [B, Eo]; act saved for the backward */
    void (*forward)(const ic_config *cfg, const float *params, const float *x, int B, float *act, float *out);
    /* grads += d/dparams given dout [B, Eo] (dout may be overwritten) */
    void (*backward)(const ic_config *cfg, const float *params, float *grads, const float *x, float *act,
                     float *dout, int B);
} ic_embed_ops;

extern const ic_embed_ops ic_embed_mlp;

typedef struct ic_addr {
    char *name;           /* full address (owned) */
    dist_kind kind;
    int n, k;             /* elements, categories (Categorical) */
    int feat;             /* value-feature width F */
    int per;              /* head outputs per element P */
    int out;              /* n P */
    size_t emb;           /* offsets into params: [Ea] */
    size_t vw, vb;        /* [Ev, F], [Ev] */
    size_t hw, hb;        /* [out, head_in], [out] */
    uint64_t count;       /* training draws seen */
} ic_addr;

typedef struct ic_provenance {
    int64_t created;
    uint64_t n_traces;     /* training traces consumed */
    uint64_t n_val;        /* validation traces */
    uint64_t steps;        /* optimiser steps */
    double best_val_loss;  /* mean -sum log q per validation trace */
    double train_seconds;
    uint64_t seed;
    char source[256];
} ic_provenance;

struct ic_net {
    ic_config cfg;
    const ic_embed_ops *embed;
    int in;               /* LSTM input width In */
    int head_in;          /* H + Eo (LSTM: [h_t, e_obs]) or Eo (feed-forward) */
    size_t n_params, cap_params;
    float *params, *grads, *m, *v;
    long step;            /* Adam steps taken */
    /* fixed part offsets */
    size_t off_embed, off_type, off_lw, off_lb, n_fixed;
    /* addresses */
    ic_addr *addrs;
    size_t n_addrs, cap_addrs;
    int32_t *table;       /* open addressing, index + 1 */
    size_t table_cap;
    /* observations */
    char **obs_names;
    int *obs_width;
    int n_obs_names;
    double *obs_mean, *obs_std; /* [D] */
    rng init_rng;         /* initialises new address blocks */
    ic_provenance prov;
    /* workspace (internal) */
    float *ws;
    size_t ws_cap;
    /* Inference cache (internal, LSTM core): the parts of the gates' input
     * that are the same for every draw at an address, or for every draw of
     * an observation: per address a, W's address and type columns applied
     * to a's embeddings as the current [4H] and as the previous [4H] draw;
     * the previous-draw part of the first step [4H]; b + W's observation
     * columns applied to the last observation embedding [4H] (and that
     * embedding [Eo]).  Built lazily by ic_net_propose/score; dropped when
     * parameters change (ic_net_adam_step, new addresses, loading) or by
     * ic_net_invalidate. */
    float *gc;            /* [cap_gc_addrs, 8H] */
    size_t n_gc_addrs, cap_gc_addrs;
    float *gc_start;      /* [4H] */
    float *gc_obs;        /* [4H + Eo] */
    float *gc_wt;         /* [Ev + H, 4H]: W's value and h columns, transposed (feature-major) */
    int gc_start_ok, gc_obs_ok, gc_wt_ok;
};

#define IC_P(net, off) ((net)->params + (off))
#define IC_G(net, off) ((net)->grads + (off))

/* A net for cfg with the given observation layout (names with their value
 * counts, summing to cfg.obs_dim; copied), parameters initialised from seed.
 * z-scores start at mean 0, std 1.  NULL on a bad config or out of memory. */
ic_net *ic_net_new(const ic_config *cfg, const char *const *obs_names, const int *obs_width, int n_obs_names,
                   uint64_t seed);
void ic_net_destroy(ic_net **net);

/* Index of the address, or -1 if unknown or bound to another (kind, n, k).
 * With create, an unknown address is added (parameters grown); -1 then
 * means the draw cannot be proposed (Categorical too wide, too many
 * elements, out of memory). */
int ic_net_address(ic_net *net, const char *address, dist_kind kind, int n, int k, int create);

/* One training example: a trace's z-scored observation and its controlled
 * draws (ic_item_from_trace). */
typedef struct ic_step {
    int addr;
    size_t p0, p1, x;     /* offsets into the item's arena: p0 [n] (Categorical [n k]), p1 [n], value [n] */
} ic_step;

typedef struct ic_item {
    float *obs;           /* [D] */
    int T;
    ic_step *steps;
    double *arena;
    size_t arena_len;
    size_t cap_steps, cap_arena;
    int skipped;          /* controlled draws the net could not take */
} ic_item;

void ic_item_free(ic_item *it);
/* Fill it (reusing its memory) from a trace: observes by name (missing ones
 * give 0 after z-scoring), one step per controlled, unobserved Sample
 * (create: register unknown addresses).  0 or -1 (out of memory). */
int ic_item_from_trace(ic_net *net, ic_item *it, const trace *t, int create);

/* z-score constants from the observations of n traces (std floored at
 * 1e-6 of the mean's size or 1e-12). */
void ic_net_set_zscore(ic_net *net, const trace *const *traces, size_t n);
/* z-scored observation vector [D] from named values (names not in the
 * layout are ignored; missing ones give 0).  Returns the number of layout
 * names given. */
int ic_net_obs_vector(const ic_net *net, const char *const *names, const double *const *values, const size_t *counts,
                      size_t n, float *out);

/* Mean over the B items of -sum_t log q(x_t); with backward, grads +=
 * gradient of that mean.  Items of the same address sequence are batched
 * together.  Non-finite when some item has zero proposal density. */
double ic_net_loss(ic_net *net, ic_item *const *items, int B, int backward);

void ic_net_zero_grad(ic_net *net);
/* Call after writing net->params directly (outside the functions here), so
 * that inference does not use parts computed from the old values. */
void ic_net_invalidate(ic_net *net);
/* Clip the global gradient norm to clip (> 0; 0: none) and take one Adam
 * step.  Returns the norm before clipping; a non-finite norm skips the step. */
double ic_net_adam_step(ic_net *net, const nn_adam_config *cfg, float lr, double clip);

/* ---- inference ---------------------------------------------------------------------------------- */

/* Per trace: the LSTM state carried from one controlled draw to the next. */
typedef struct ic_state {
    float *h, *c;         /* [H] */
    float *prev_val;      /* [Ev] value embedding of the previous draw */
    int prev_addr;        /* -1 at the start */
} ic_state;

int ic_state_init(const ic_net *net, ic_state *s);
void ic_state_reset(const ic_net *net, ic_state *s);
void ic_state_free(ic_state *s);

/* obs_emb [Eo] from a z-scored observation [D]. */
void ic_net_embed_obs(ic_net *net, const float *obs, float *obs_emb);

typedef struct ic_query {
    ic_state *st;
    int addr;             /* known address index */
    const double *p0, *p1;/* prior parameters expanded to n elements (Categorical p0 [n k]) */
    rng *r;
    double *x;            /* out [n] */
    double logq;          /* out: sum over elements */
} ic_query;

/* Answer R queries (distinct states) as one batch: one LSTM step, each
 * head, sampling; the states advance. */
int ic_net_propose(ic_net *net, const float *obs_emb, ic_query *q, int R);
/* log q of given values for R queries without sampling (for tests: the
 * same network pass as ic_net_propose). */
int ic_net_score(ic_net *net, const float *obs_emb, ic_query *q, int R);

/* ---- files ----------------------------------------------------------------------------------------- */

/* The .ppxm container of model_file.h (magic, version, length, CRC-32C)
 * with model kind 4 (IC).  0 / non-NULL on success; reason in err. */
int ic_net_save(const ic_net *net, const char *path, char *err, size_t err_len);
ic_net *ic_net_load(const char *path, char *err, size_t err_len);
void ic_net_print(const ic_net *net, FILE *f);

/* Expand a trace entry's parameters to n elements: p0 [n] (Categorical:
 * [n k], copied), p1 [n] (zeros for one-parameter kinds). */
void ic_expand_params(dist_kind kind, size_t n, size_t k, const double *p0, size_t n0, const double *p1, size_t n1,
                      double *o0, double *o1);

#endif
