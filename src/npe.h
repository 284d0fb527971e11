/* npe.h — neural posterior estimation (NPE, as sbi's SNPE without rounds):
 * a conditional flow q(theta | x) (flow.h, MAF or NSF) trained by maximum
 * likelihood on simulated pairs (theta_i, x_i), theta_i ~ prior, then used as
 * an amortized posterior: sampled and evaluated for any observation x_o.
 *
 * Also the pieces NRE (nre.h) shares: data cleaning, the train/validation
 * split, per-dimension z-scoring and the training loop (npe_fit).
 *
 * Training (sbi defaults): rows with a NaN or infinite value in theta or x
 * are dropped and counted; a random 10% of the rest is the validation split;
 * theta and x are z-scored per dimension with the mean and (unbiased)
 * standard deviation of the TRAINING split (a dimension with no spread is
 * only centred); Adam at lr 5e-4 on minibatches of 200 training rows
 * (reshuffled each epoch; the last incomplete batch is skipped, as sbi's
 * drop_last), gradient norm clipped at 5; after each epoch the mean
 * validation loss; training stops after 20 epochs without a new best
 * validation loss (or at max_epochs / max_seconds / a stop request) and the
 * best weights are restored.
 *
 * Posterior (theta in the original units):
 *   log q(theta | x) = log q_flow(z(theta) | z(x)) - sum_j log std_theta[j]
 * (the z-scoring is an affine change of variables).  With a bounded prior,
 * q can put mass outside the prior's support ("leakage"):
 *   - sampling rejects draws outside the support, in chunks, until n are
 *     accepted or max_seconds pass (then it fails, reporting the acceptance
 *     rate, instead of hanging when the acceptance is ~0);
 *   - the log density is -inf outside the support, and the renormalised
 *     log density subtracts log(mass inside the support), the mass being
 *     estimated as the acceptance rate of n draws (npe_support_mass).
 *
 * Threads: npe_train sets the OpenBLAS thread count (nn_set_threads) to
 * cfg->threads (default 1) — process-wide, see nn.h.
 * Ownership: an npe_posterior owns its flow and its model_file description
 * (prior, z-score constants, names, provenance, a parameter snapshot);
 * callers own every array they pass.  Not thread-safe: one posterior per
 * thread.  Shapes: theta [n, dim], x [n, context], row-major doubles.
 */
#ifndef PPX_NPE_H
#define PPX_NPE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include "flow/flow.h"
#include "model_file.h"
#include "prior.h"
#include "rng.h"

/* ==== data, split, z-score (shared with NRE) ================================= */

typedef struct npe_data {
    double *theta;     /* [n, dim] finite rows (owned) */
    double *x;         /* [n, context] */
    size_t n;
    int dim, context;
    size_t n_in;       /* rows given */
    size_t n_dropped;  /* rows dropped for a non-finite value */
} npe_data;

/* Copy the rows of theta [n, dim] and x [n, context] whose values are all
 * finite into d; count the others.  0, or -1 with a reason (bad sizes, no
 * finite row, out of memory).  On -1, d holds nothing to free. */
int npe_data_init(npe_data *d, const double *theta, const double *x, size_t n, int dim, int context,
                  char *err, size_t err_len);
void npe_data_free(npe_data *d);

typedef struct npe_split {
    size_t *train, *val; /* row indices (owned) */
    size_t n_train, n_val;
} npe_split;

/* A random permutation of n rows from r: the first round(val_frac * n) rows
 * (at least 1 when val_frac > 0 and n >= 2) are the validation split, the
 * rest the training split.  0, or -1 (out of memory, or no training row). */
int npe_split_make(npe_split *s, size_t n, double val_frac, rng *r);
void npe_split_free(npe_split *s);

/* mean[w] and std[w] of the columns of v [*, w] over rows[0..n_rows) (all
 * rows 0..n_rows-1 when rows is NULL); std is the unbiased standard
 * deviation, replaced by 1 when it is not > 1e-12 * (1 + |mean|) (a constant
 * column is only centred). */
void npe_zscore_fit(const double *v, int w, const size_t *rows, size_t n_rows, double *mean, double *std);
/* Rows z-scored into a new float array (caller frees): dst [n, w] =
 * (src [n, w] - mean[w]) / std[w], for feeding the networks.  NULL on
 * allocation failure. */
float *npe_zscore_floats(const double *src, size_t n, int w, const double *mean, const double *std);

/* ==== training loop (shared with NRE) ========================================= */

typedef struct npe_train_config {
    int batch;             /* 200 */
    float lr;              /* 5e-4 */
    double clip;           /* 5: global gradient-norm clip; <= 0 none */
    double val_frac;       /* 0.1 */
    int patience;          /* 20 epochs without a validation improvement */
    int max_epochs;        /* 0: no limit */
    double max_seconds;    /* 0: no limit (checked after each epoch) */
    uint64_t seed;         /* 1: initialisation, split and batch order */
    int threads;           /* 1: OpenBLAS threads (nn_set_threads); 0 leaves them as they are */
    int progress;          /* 1: a progress line on stderr about once a second */
    const volatile sig_atomic_t *stop; /* NULL, or a flag (e.g. set by SIGINT): stop after this batch */
    const char *log_path;  /* NULL, or a CSV file written during npe_fit, one line per epoch (flushed):
                            * "epoch,train_loss,val_loss,seconds" (seconds since the loop started) */
} npe_train_config;

npe_train_config npe_train_defaults(void);

typedef enum npe_stop_reason {
    NPE_STOP_CONVERGED = 0, /* patience exhausted */
    NPE_STOP_MAX_EPOCHS,
    NPE_STOP_MAX_SECONDS,
    NPE_STOP_REQUESTED
} npe_stop_reason;

typedef struct npe_train_report {
    int epochs;            /* epochs run */
    int best_epoch;        /* 1-based epoch of the kept weights (0: none finite) */
    double best_val_loss;  /* its mean validation loss */
    double last_train_loss;/* mean training loss of the last epoch */
    double seconds;        /* wall time of the loop */
    size_t n_train, n_val, n_dropped;
    uint64_t skipped_steps;/* batches with a non-finite loss or gradient (no update made) */
    npe_stop_reason stop;
} npe_train_report;

/* What npe_fit needs from a model. */
typedef struct npe_fit_ops {
    /* One optimisation step on rows idx[0..B) of the (model's) data: zero
     * grads, mean loss, backward, clip at clip, Adam at lr.  Returns the mean
     * loss (non-finite: no update was made). */
    double (*step)(void *model, const size_t *idx, int B, double clip, float lr);
    /* Mean loss over rows idx[0..n) without touching the parameters. */
    double (*eval)(void *model, const size_t *idx, size_t n);
    size_t (*n_params)(void *model);
    void (*get_params)(void *model, float *dst);
    void (*set_params)(void *model, const float *src);
} npe_fit_ops;

/* The epoch loop described at the top, over split s; tag names the model in
 * progress lines ("npe", "nre").  r shuffles the batches.  The best
 * parameters are restored on return.  0, or -1 (out of memory, or no finite
 * validation loss at all: the reason in err). */
int npe_fit(const npe_fit_ops *ops, void *model, const npe_split *s, const npe_train_config *cfg, rng *r,
            const char *tag, npe_train_report *rep, char *err, size_t err_len);
/* The set-up npe_train and nre_train share, after their own checks of cfg:
 * checks the prior against d, sets the OpenBLAS threads (cfg->threads > 0),
 * makes the model file (*m, of kind, with the prior), seeds r[0..2] (the
 * initialisation, split and batch-order streams 0, 1, 2 of cfg->seed),
 * splits d's rows (*s, at least min_val validation rows) and fits the
 * z-scores on the training rows into *m.  0, or -1 with the reason in err
 * and nothing left to free. */
int npe_train_begin(const npe_data *d, const prior *pr, const npe_train_config *cfg, model_kind kind,
                    size_t min_val, model_file **m, npe_split *s, rng r[3], char *err, size_t err_len);
/* After npe_fit: the training's provenance (simulations, dropped rows, split
 * sizes, epochs, best validation loss, seconds, seed) into m->prov, and the
 * dropped count into rep. */
void npe_record_provenance(model_file *m, const npe_data *d, const npe_split *s, npe_train_report *rep,
                           uint64_t seed);

/* ==== NPE posterior ============================================================ */

typedef struct npe_posterior npe_posterior;

/* Train a flow (fcfg: kind and architecture; dim and context are taken from
 * the data) on d with prior p.  The result's model_file carries the prior,
 * z-scores, default names ("theta_j", "x_j"; set them with
 * model_file_set_*_name on npe_posterior_model) and the provenance of this
 * training.  NULL with a reason on failure. */
npe_posterior *npe_train(const npe_data *d, const prior *p, const flow_config *fcfg, const npe_train_config *cfg,
                         npe_train_report *rep, char *err, size_t err_len);
/* Rebuild from a model description (NPE kinds; copied).  NULL with a reason. */
npe_posterior *npe_posterior_from_model(const model_file *m, char *err, size_t err_len);
void npe_posterior_destroy(npe_posterior **p);
/* The description (owned by p), with the parameter snapshot brought up to
 * date with the flow: save it with model_file_save. */
model_file *npe_posterior_model(npe_posterior *p);
int npe_posterior_dim(const npe_posterior *p);
int npe_posterior_context(const npe_posterior *p);

typedef struct npe_sample_report {
    uint64_t drawn;        /* flow samples drawn */
    uint64_t accepted;     /* inside the prior's support */
    double acceptance;     /* accepted / drawn (1 when the prior is unbounded) */
    double seconds;
} npe_sample_report;

/* n samples of q(. | x_o) restricted to the prior's support, into out
 * [n, dim].  max_seconds > 0 bounds the time: when it passes first, -1 with
 * the acceptance rate in err (and rep filled).  0 or -1. */
int npe_sample(npe_posterior *p, const double *x_o, size_t n, rng *r, double max_seconds, double *out,
               npe_sample_report *rep, char *err, size_t err_len);

/* Parallel sampling.  The flow transforms a chunk of base draws in blocks of
 * rows; a team runs the blocks, possibly on other threads.  fn(arg, k, own)
 * runs block k on `own`, a posterior of the same model that the running
 * thread owns (flows hold per-instance buffers), and returns 0 or -1.
 * run() returns once every block has been attempted (-1 when any failed;
 * the sampler redoes failed blocks itself). */
typedef int (*npe_block_fn)(void *arg, int k, npe_posterior *own);
typedef struct npe_team {
    int (*run)(void *ctx, npe_block_fn fn, void *arg, int n_blocks);
    void *ctx;
} npe_team;

/* npe_sample with the flow's blocks run by team (NULL: by the caller).  The
 * samples are bit-identical to npe_sample's for the same rng state, whatever
 * the team and its number of threads. */
int npe_sample_team(npe_posterior *p, const npe_team *team, const double *x_o, size_t n, rng *r,
                    double max_seconds, double *out, npe_sample_report *rep, char *err, size_t err_len);

/* log q(theta_i | x_i) (NOT renormalised; -inf outside the support) into
 * out[n] for theta [n, dim] and x [n_x, context] with n_x = 1 (the same x for
 * every row) or n_x = n.  Rows are evaluated in network batches.  0 or -1
 * (bad n_x, non-finite x). */
int npe_log_prob(npe_posterior *p, const double *theta, size_t n, const double *x, size_t n_x, double *out,
                 char *err, size_t err_len);

/* Estimate the mass of q(. | x_o) inside the prior's support from n_draws
 * samples (1 exactly when the prior is unbounded).  0, or -1 when the time
 * bound passes or no draw is accepted (mass ~ 0: the correction would be
 * infinite). */
int npe_support_mass(npe_posterior *p, const double *x_o, size_t n_draws, rng *r, double max_seconds,
                     double *mass, char *err, size_t err_len);

/* Renormalised log density for one x_o: npe_log_prob - log(mass) with the
 * mass from npe_support_mass(n_draws).  *mass_out (may be NULL) receives the
 * mass.  0 or -1. */
int npe_log_prob_normalised(npe_posterior *p, const double *theta, size_t n, const double *x_o, size_t n_draws,
                            rng *r, double max_seconds, double *out, double *mass_out, char *err, size_t err_len);

#endif
