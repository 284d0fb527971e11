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
 * Density models (NDE, SCANDAL) write version 2: the same with components
 * u32 after layers, deq u8 [C] after the names, and the cond_mog.h blob as
 * the network (so a ppxd that reads only version 1 refuses them clearly).
 *
 * NDE and SCANDAL (cond_mog.h) learn p^(x | theta) on every row, theta the
 * point the row was simulated at (theta0, or theta1 for y = 1 rows); SCANDAL's
 * score term uses the y = 0 rows only (the mined t is at theta0).  A column
 * whose values are all whole numbers (the Galton board's x) is modelled
 * dequantised, as x + U(0, 1) (fresh noise every epoch; a fixed draw per
 * validation row), and evaluated as the probability of the value, the
 * density integrated over [x, x + 1) (gold_model_log_prob); the joint score
 * is unchanged by the theta-independent noise.  log r^ = log p^(x|theta0) -
 * log p^(x|theta1).
 */
#ifndef PPX_GOLD_EST_H
#define PPX_GOLD_EST_H

#include <stddef.h>
#include <stdint.h>
#include "rng.h"
#include "gold/gold_data.h"
#include "gold/ratio_net.h"
#include "gold/cond_mog.h"

#define GOLD_MODEL_VERSION 1         /* ratio methods and SALLY */
#define GOLD_MODEL_VERSION_DENSITY 2 /* NDE and SCANDAL (the layout differs: see above) */

typedef enum gold_method {
    GOLD_CARL = 0,
    GOLD_ROLR,
    GOLD_RASCAL,
    GOLD_CASCAL,
    GOLD_ALICE,
    GOLD_ALICES,
    GOLD_SALLY,
    GOLD_NDE,     /* conditional density p^(x | theta) (cond_mog.h) by maximum likelihood */
    GOLD_SCANDAL, /* NDE + alpha MSE(grad_theta log p^(x | theta), t_xz) */
    GOLD_METHOD_COUNT
} gold_method;

const char *gold_method_name(gold_method m);
/* -1 when s names no method. */
int gold_method_from_name(const char *s);
/* 1 when the loss has a score term (RASCAL, CASCAL, ALICES, SCANDAL) or is SALLY. */
int gold_method_uses_score(gold_method m);
/* 1 for the density estimators (NDE, SCANDAL). */
int gold_method_is_density(gold_method m);
/* The score weight alpha when none is given: 1 (MadMiner's), except 10 for
 * SCANDAL, whose NLL term is O(1) per row while its score term compares
 * z-unit scores (t sd_theta, small for a narrow theta range); on the Galton
 * board alpha = 10 gives 2-10x lower log r^ errors than 1 at every budget. */
double gold_default_alpha(gold_method m);
/* Mixture components per x dimension when none is given, for a training
 * file of `rows` usable rows (before the validation split): NDE 1 per
 * 1,000 rows, clamped to 1..10; SCANDAL 10.  Why: NDE learns p^(x | theta)
 * from the rows alone, and 10 components fitted to a few hundred rows
 * overfit (Galton board, bench_gold: MSE 0.42 at 200 rows with 10, against
 * 0.082 published) while 10,000 rows use them; SCANDAL's score term
 * regularises its mixture, and 10 measured best at every budget (README). */
int gold_default_components(gold_method m, size_t rows);

/* The minimum number of optimiser steps (gold_train_config.min_steps < 0):
 * 20000 for RASCAL, 0 for CARL, 10000 for the others. */
int gold_default_min_steps(gold_method m);
/* 1 when the model has a score t^(x | theta): SALLY, and the methods whose
 * log r^ or log p^ is differentiated (every ratio method's network is, but
 * only those trained on the score have a meaningful one: RASCAL, CASCAL,
 * ALICES, SCANDAL; NDE's gradient is served too, as the flow's score). */
int gold_method_has_score(gold_method m);

/* The loss of one batch of B rows (double, for the trainer and tests):
 * f [B] network log r^ (ignored for SALLY); that [B, D] t^ in z units (the
 * network output for SALLY; may be NULL for methods without a score term);
 * y, logr [B]; t [B, D] joint score in z units.  g [B] gets dL/df and gt
 * [B, D] (if non-NULL) dL/dthat.  Returns L. */
double gold_loss(gold_method m, double alpha, double clip, int B, int D, const double *f, const double *that,
                 const double *y, const double *logr, const double *t, double *g, double *gt);

/* NDE / SCANDAL loss of B rows: lp [B] log p^ (z units), that [B, D] its
 * theta gradient (z units; NULL for NDE), w [B] the score term's row
 * weights (1 where the row's joint score is at its generating theta), t [B,
 * D] joint scores in z units:  L = -mean lp + alpha / (B D) sum_b w_b |that_b
 * - t_b|^2.  glp [B] = dL/dlp, gthat [B, D] (if non-NULL) = dL/dthat.
 * Returns L. */
double gold_density_loss(double alpha, int B, int D, const double *lp, const double *that, const double *w,
                         const double *t, double *glp, double *gthat);

typedef struct gold_train_config {
    gold_method method;
    int hidden;           /* 100 */
    int layers;           /* hidden layers, 2 */
    double alpha;         /* score weight; <= 0: gold_default_alpha(method) (the default) */
    int batch;            /* 128 */
    int epochs;           /* 50 */
    int min_steps;        /* -1 (the default): gold_default_min_steps(method); more epochs when 50 give
                             fewer optimiser steps (small data sets); 0: off; never for CARL, whose
                             0/1 labels overfit under long training */
    double lr, lr_end;    /* 1e-3 -> 1e-4 */
    double val_frac;      /* 0.25 */
    int patience;         /* stop after this many epochs without improvement; 0 = run all (default) */
    double clip;          /* 10 */
    uint64_t seed;        /* 1 */
    size_t max_rows;      /* use only the first max_rows rows (0 = all) */
    int components;       /* NDE/SCANDAL: mixture components per x dimension; 0 (the default):
                             gold_default_components(method, rows) */
    int dequantize;       /* NDE/SCANDAL: -1 auto (columns whose training values are all whole numbers),
                             0 never, 1 every column */
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
    cond_mog *dens;       /* NDE/SCANDAL: p^(x_z | theta_z) */
    int components;       /* NDE/SCANDAL mixture components */
    unsigned char *deq;   /* [C] NDE/SCANDAL: 1 = the column is whole numbers, modelled dequantised */
    uint64_t n_train, n_val;
    int best_epoch;
    double best_val;
    float *in_buf;        /* [max_batch, C + D] */
    int max_batch;
} gold_model;

/* Train on g.  NULL with the reason on stderr. */
gold_model *gold_train(const gold_train_config *cfg, const gold_data *g);
void gold_model_destroy(gold_model **m);

/* Ratio and density methods: out[i] = log r^(x_i | theta0_i, theta1) against
 * the reference theta1 of the training file, x [n, C], theta0 [n, D]
 * (density methods: log p^(x|theta0) - log p^(x|theta1); -1 when the model
 * has no reference, i.e. was trained without theta1). */
int gold_model_log_r(gold_model *m, const double *x, const double *theta0, size_t n, double *out);
/* log r^(x_i | theta0_i, theta1_i) for any theta1 [n, D] (NULL: the
 * reference): ratio methods f(x, theta0) - f(x, theta1) (each network is
 * log r^ against the same reference, which cancels), density methods the
 * difference of log p^.  -1 for SALLY. */
int gold_model_log_ratio(gold_model *m, const double *x, const double *theta0, const double *theta1, size_t n,
                         double *out);
/* t^(x_i | theta0_i) [n, D] (ratio methods: d log r^/d theta0; density
 * methods: d log p^/d theta; SALLY: theta0 ignored). */
int gold_model_score(gold_model *m, const double *x, const double *theta0, size_t n, double *out);
/* Density methods: log p^(x_i | theta_i) in x's physical units; dequantised
 * (whole-number) columns get the probability of the value, the integral of
 * the density over [x, x + 1) by Gauss-Legendre quadrature (GOLD_DEQ_NODES
 * nodes per such column, fewer when there are several).  -1 otherwise. */
int gold_model_log_prob(gold_model *m, const double *x, const double *theta, size_t n, double *out);
/* Density methods: one x [C] ~ p^(. | theta_i) per row of theta [n, D]
 * (dequantised columns floored to whole numbers).  -1 otherwise. */
int gold_model_sample(gold_model *m, const double *theta, size_t n, rng *r, double *x);

#define GOLD_DEQ_NODES 8

int gold_model_save(const gold_model *m, const char *path, char *err, size_t err_len);
gold_model *gold_model_load(const char *path, char *err, size_t err_len);
/* The same from the file's bytes in memory (path: for messages only). */
gold_model *gold_model_decode(const unsigned char *data, size_t len, const char *path, char *err, size_t err_len);
/* "gold-RASCAL", "gold-SCANDAL", ...: the serving registry's ModelInfo.kind. */
const char *gold_model_kind_name(gold_method m);
int gold_model_file_is(const char *path);
/* 1 when p [len] starts with the .ppxr magic. */
int gold_model_bytes_are(const void *p, size_t len);

#endif
