/* nre.h — neural ratio estimation (NRE-A, Hermans et al. 2020; sbi's
 * NRE_A) with optional balancing (BNRE, Delaunoy et al. 2022).
 *
 * A classifier d(theta, x) = sigmoid(f(z(theta), z(x))), f a residual MLP
 * (resmlp: [theta, x] -> 1 logit, sbi's default 50 hidden, 2 blocks, ReLU),
 * is trained to tell joint pairs (theta_i, x_i) (label 1) from marginal
 * pairs (theta_pi(i), x_i) (label 0, pi a random permutation of the batch)
 * with the binary cross-entropy, averaged over the 2B pairs of a batch.
 * BNRE adds lambda * (mean_b d(joint_b) + mean_b d(marginal_b) - 1)^2.
 * The optimum satisfies logit f = log p(theta | x) / p(theta), so
 *     log p(theta | x) = f(theta, x) + log p(theta) - log Z(x)
 * with Z = 1 for a perfect classifier.  nre_log_prob returns the
 * unnormalised f + log prior; nre_log_prob_normalised estimates log Z(x) =
 * log E_prior[exp f] by Monte Carlo with prior draws.
 *
 * Training: data, split, z-scoring and the epoch loop are NPE's (npe.h:
 * batch 200, Adam 5e-4, clip 5, 10% validation, patience 20, best weights
 * restored).  The validation loss uses one fixed permutation of the
 * validation rows, so it is comparable from epoch to epoch.
 *
 * Sampling from the posterior (always inside the prior's support):
 *   NRE_SAMPLE_SIR    importance resampling from the prior (sbi's default
 *                     for this: per output sample, K = oversample prior
 *                     draws, one picked with probability ~ exp f);
 *   NRE_SAMPLE_SLICE  axis-aligned slice sampling with stepping out
 *                     (Neal 2003) on f + log prior, chains started from SIR
 *                     draws, vectorised over chains (one network batch per
 *                     stepping-out / shrinkage round), bracket width tuned in
 *                     the warm-up;
 *   NRE_SAMPLE_MH     random-walk Metropolis–Hastings with Gaussian steps,
 *                     per-dimension scale tuned in the warm-up towards
 *                     acceptance ~0.3; chains as for slice.
 * MCMC output: n samples taken in turn from the chains, after warmup steps
 * per chain, every thin-th step.  All sampling is bounded by max_seconds
 * (failure with a report rather than hanging).
 *
 * Ownership and threading as npe.h: an nre_posterior owns its network and
 * model_file description; one posterior per thread.  Shapes: theta [n, dim],
 * x [n, context], row-major doubles.
 */
#ifndef PPX_NRE_H
#define PPX_NRE_H

#include <stddef.h>
#include <stdint.h>
#include "model_file.h"
#include "nn/mlp.h"
#include "npe.h"
#include "prior.h"
#include "rng.h"

typedef struct nre_net_config {
    int hidden;         /* 50 */
    int n_blocks;       /* 2 */
    nn_act act;         /* ReLU */
    double bnre_lambda; /* 0: plain NRE; BNRE's suggested value is 100 */
} nre_net_config;

nre_net_config nre_net_defaults(void);

typedef struct nre_posterior nre_posterior;

/* Train on d with prior p (cfg NULL: npe_train_defaults()).  NULL with a
 * reason on failure. */
nre_posterior *nre_train(const npe_data *d, const prior *p, const nre_net_config *net, const npe_train_config *cfg,
                         npe_train_report *rep, char *err, size_t err_len);
nre_posterior *nre_posterior_from_model(const model_file *m, char *err, size_t err_len);
void nre_posterior_destroy(nre_posterior **p);
/* The description, parameters brought up to date (see npe_posterior_model). */
model_file *nre_posterior_model(nre_posterior *p);
int nre_posterior_dim(const nre_posterior *p);
int nre_posterior_context(const nre_posterior *p);

/* The classifier's logit f(theta_i, x_i) = estimated log p(theta|x)/p(theta)
 * into out[n], x [n_x, context] with n_x = 1 or n.  0 or -1. */
int nre_log_ratio(nre_posterior *p, const double *theta, size_t n, const double *x, size_t n_x, double *out,
                  char *err, size_t err_len);
/* Unnormalised log posterior f + log prior (-inf outside the support). */
int nre_log_prob(nre_posterior *p, const double *theta, size_t n, const double *x, size_t n_x, double *out,
                 char *err, size_t err_len);
/* log Z(x_o) = log mean_k exp f(theta_k, x_o) over n_draws prior draws. */
int nre_log_evidence_ratio(nre_posterior *p, const double *x_o, size_t n_draws, rng *r, double *log_z, char *err,
                           size_t err_len);
/* nre_log_prob(x_o) - log Z(x_o); *log_z_out (may be NULL) receives log Z. */
int nre_log_prob_normalised(nre_posterior *p, const double *theta, size_t n, const double *x_o, size_t n_draws,
                            rng *r, double *out, double *log_z_out, char *err, size_t err_len);

typedef enum nre_sample_method {
    NRE_SAMPLE_SIR = 0,
    NRE_SAMPLE_SLICE = 1,
    NRE_SAMPLE_MH = 2
} nre_sample_method;

/* "sir", "slice", "mh" and back (-1 if unknown). */
const char *nre_sample_method_name(nre_sample_method m);
int nre_sample_method_from_name(const char *s);

typedef struct nre_sample_config {
    nre_sample_method method; /* SIR */
    int oversample;           /* SIR: prior draws per output sample, 32 */
    int chains;               /* MCMC: 20 */
    int warmup;               /* MCMC: steps per chain discarded, 200 */
    int thin;                 /* MCMC: keep every thin-th step, 5 */
    double max_seconds;       /* 60 (<= 0: 60) */
} nre_sample_config;

nre_sample_config nre_sample_defaults(void);

typedef struct nre_sample_report {
    double ess;               /* SIR: mean over groups of the effective sample size of the K weights */
    double acceptance;        /* MH: accepted / proposed after warm-up; slice: 1 */
    uint64_t evaluations;     /* network rows evaluated */
    double seconds;
} nre_sample_report;

/* n samples of the posterior for x_o into out [n, dim].  0, or -1 with a
 * reason (time bound passed, all importance weights zero, ...). */
int nre_sample(nre_posterior *p, const double *x_o, size_t n, rng *r, const nre_sample_config *cfg, double *out,
               nre_sample_report *rep, char *err, size_t err_len);

/* The sampler over any ratio estimator (NRE's classifier, the gold-mining
 * ratio networks): ratio(ctx, theta, n, out) writes the estimated log
 * p(x_o | theta_i) / p(x_o | ref) for the observation the caller fixed,
 * theta [n, dim] with n <= NRE_TARGET_MAX_BATCH (a non-finite value gives
 * the row zero weight); the target is exp(ratio) x prior. */
#define NRE_TARGET_MAX_BATCH 1024
typedef void (*nre_ratio_fn)(void *ctx, const double *theta, int n, double *out);
typedef struct nre_ratio_target {
    nre_ratio_fn ratio;
    void *ctx;
    const prior *prior;
    int dim;
} nre_ratio_target;

/* n samples of exp(ratio) x prior into out [n, dim], by cfg's method (as
 * nre_sample).  0, or -1 with a reason. */
int nre_sample_target(const nre_ratio_target *t, size_t n, rng *r, const nre_sample_config *cfg, double *out,
                      nre_sample_report *rep, char *err, size_t err_len);

#endif
