/* gold_est.h — the gold estimators (goldmining.md): likelihood-ratio and
 * score networks trained on mined gold (gold_data.h).
 *
 * Ratio methods learn f(x, theta0) = log r^(x | theta0, theta1) with theta1
 * the fixed reference of the mined rows (y = 0: x ~ theta0, y = 1: x ~
 * theta1); s^ = 1/(1 + r^) = sigmoid(-f); t^ = d f / d theta0 (through the
 * network's tangent forward, ratio_net.h):
 *   CARL    BCE(s^, y)                         = y softplus(f) + (1-y) softplus(-f)
 *   ROLR    (1-y)(1/r^ - 1/r_xz)^2 + y (r^ - r_xz)^2, log r^ and log r_xz clipped to +-clip
 *   RASCAL  ROLR + alpha MSE((1-y) t^, (1-y) t_xz)
 *   CASCAL  CARL + alpha (the same score term)
 *   ALICE   BCE(s^, s_xz), s_xz = 1/(1 + r_xz)
 *   ALICES  ALICE + alpha (the same score term)
 * each averaged over the batch (the score term over batch x D).
 * SALLY learns t^(x) (a network of x only, D outputs) at the reference
 * theta of its rows (y = 0 rows): MSE(t^(x), t_xz).
 *
 * Scaling: x and theta0 are z-scored on the training split (a constant
 * column gets std 1); the score is compared in the same units (t_z = t sd_theta,
 * since d/du = sd d/dtheta); SALLY targets are divided by their sd.
 * Training follows MadMiner's defaults: tanh MLP, Adam, lr 1e-3 -> 1e-4
 * exponential decay, batch 128, 50 epochs, 25% validation, the epoch with
 * the best validation loss kept; except that small data sets get as many
 * epochs as give min_steps optimiser steps (50 epochs of 150 rows are 100
 * steps: far from converged, and the gold methods' advantage at small
 * budgets is lost).
 *
 * Model file (.ppxr): magic "PPXGMDL\0", version u32, method, C, D, hidden,
 * layers u32, n_train, n_val u64, best_epoch u32, best_val f64, alpha f64,
 * x_mean[C], x_std[C], th_mean[D], th_std[D], t_scale[D], theta1[D] f64,
 * names (u32 length + bytes) D theta then C x, the network blob (u64
 * length + nn/mlp.h save format), CRC-32C u32 of all before.
 */
#ifndef PPX_GOLD_EST_H
#define PPX_GOLD_EST_H

#include <stddef.h>
#include <stdint.h>
#include "gold/gold_data.h"
#include "gold/ratio_net.h"

#define GOLD_MODEL_VERSION 1

typedef enum gold_method {
    GOLD_CARL = 0,
    GOLD_ROLR,
    GOLD_RASCAL,
    GOLD_CASCAL,
    GOLD_ALICE,
    GOLD_ALICES,
    GOLD_SALLY,
    GOLD_METHOD_COUNT
} gold_method;

const char *gold_method_name(gold_method m);
/* -1 when s names no method. */
int gold_method_from_name(const char *s);
/* 1 when the loss has a score term (RASCAL, CASCAL, ALICES) or is SALLY. */
int gold_method_uses_score(gold_method m);

/* The loss of one batch of B rows (double, for the trainer and tests):
 * f [B] network log r^ (ignored for SALLY); that [B, D] t^ in z units (the
 * network output for SALLY; may be NULL for methods without a score term);
 * y, logr [B]; t [B, D] joint score in z units.  g [B] gets dL/df and gt
 * [B, D] (if non-NULL) dL/dthat.  Returns L. */
double gold_loss(gold_method m, double alpha, double clip, int B, int D, const double *f, const double *that,
                 const double *y, const double *logr, const double *t, double *g, double *gt);

typedef struct gold_train_config {
    gold_method method;
    int hidden;           /* 100 */
    int layers;           /* hidden layers, 2 */
    double alpha;         /* score weight, 1 */
    int batch;            /* 128 */
    int epochs;           /* 50 */
    int min_steps;        /* 10000: more epochs when 50 give fewer optimiser steps (small data sets);
                             not for CARL, whose 0/1 labels overfit under long training */
    double lr, lr_end;    /* 1e-3 -> 1e-4 */
    double val_frac;      /* 0.25 */
    int patience;         /* stop after this many epochs without improvement; 0 = run all (default) */
    double clip;          /* 10 */
    uint64_t seed;        /* 1 */
    size_t max_rows;      /* use only the first max_rows rows (0 = all) */
    int progress;
    volatile int *stop;   /* set asynchronously: stop after the current epoch (best kept) */
} gold_train_config;

void gold_train_defaults(gold_train_config *c);

typedef struct gold_model {
    gold_method method;
    int C, D, hidden, layers;
    double alpha;
    double *x_mean, *x_std, *th_mean, *th_std, *t_scale, *theta1;
    char **theta_names, **x_names;
    ratio_net *rn;        /* ratio methods: in C + D, out 1 */
    mlp *sally;           /* SALLY: in C, out D */
    uint64_t n_train, n_val;
    int best_epoch;
    double best_val;
    float *in_buf;        /* [max_batch, C + D] */
    int max_batch;
} gold_model;

/* Train on g.  NULL with the reason on stderr. */
gold_model *gold_train(const gold_train_config *cfg, const gold_data *g);
void gold_model_destroy(gold_model **m);

/* Ratio methods: out[i] = log r^(x_i | theta0_i), x [n, C], theta0 [n, D]. */
int gold_model_log_r(gold_model *m, const double *x, const double *theta0, size_t n, double *out);
/* t^(x_i | theta0_i) [n, D] (ratio methods: d log r^/d theta0; SALLY: theta0 ignored). */
int gold_model_score(gold_model *m, const double *x, const double *theta0, size_t n, double *out);

int gold_model_save(const gold_model *m, const char *path, char *err, size_t err_len);
gold_model *gold_model_load(const char *path, char *err, size_t err_len);
int gold_model_file_is(const char *path);

#endif
