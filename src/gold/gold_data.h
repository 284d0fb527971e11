/* gold_data.h — mined "gold" (joint likelihood ratios and joint scores, see
 * ../shared/spec/goldmining.md) in memory and in the .ppxg training file.
 *
 * One row per simulated trace.  A row's trace was simulated at theta0 (y = 0,
 * the numerator hypothesis) or at theta1 (y = 1, the reference), and carries
 *   theta0 [D], theta1 [K x D] (K reference points, K >= 0),
 *   x [C] (the observation columns),
 *   log_r [K]: log r(x, z | theta0, theta1_k) = log p(x,z|theta0) - log p(x,z|theta1_k),
 *   t [D] (only when has_score): the joint score grad_theta log p(x,z|theta) at theta0.
 * y = 1 rows exist only for K = 1.
 *
 * Ownership: a gold_data owns its arrays and name strings (gold_data_free).
 *
 * File (.ppxg), all integers little-endian, doubles IEEE-754 little-endian:
 *   magic "PPXGOLD\0" (8), version u32 (GOLD_FILE_VERSION), D u32, C u32,
 *   K u32, has_score u32, reserved u32 (0), rows u64, seed u64, epsilon f64
 *   (0 = chosen per dimension from theta's prior scale), invalid counts
 *   u64 [GOLD_BAD_COUNT], rows whose score came from parameter tangents
 *   u64, then D + C names (u32 length + bytes), then the
 *   rows, each [y, theta0, theta1, x, log_r, t] as f64, and last the CRC-32C
 *   (u32) of every byte before it.  Written to a temporary file and renamed,
 *   so a file either is complete or does not exist.
 * Version 1 (before the no-tangent reason and the analytic count) had 8
 * invalid counts and no analytic count; it is still read (its scores are all
 * finite differences).
 */
#ifndef PPX_GOLD_DATA_H
#define PPX_GOLD_DATA_H

#include <stddef.h>
#include <stdint.h>

#define GOLD_FILE_VERSION 2

/* Why a mined sample was dropped (counted, reported, stored in the file). */
typedef enum gold_bad {
    GOLD_BAD_CONTROL_FLOW = 0, /* a replay reached a different address sequence */
    GOLD_BAD_SUPPORT,          /* a replayed value is outside the support at the new theta (log p = -inf) */
    GOLD_BAD_THETA_SUPPORT,    /* a support (Uniform bounds, Binomial count) depends on theta: score undefined */
    GOLD_BAD_NONFINITE,        /* NaN/inf log-probability, value or x */
    GOLD_BAD_PARAMS,           /* the simulator sent invalid distribution parameters at the new theta */
    GOLD_BAD_MISSING,          /* a theta or x name missing from the trace, or a width change */
    GOLD_BAD_FAILED,           /* the simulators failed this trace repeatedly */
    GOLD_BAD_X_DEPENDS,        /* an x entry's value changed under replay: x depends on theta directly */
    GOLD_BAD_NO_TANGENT,       /* analytic score: a draw came without a parameter tangent for some theta */
    GOLD_BAD_COUNT
} gold_bad;

const char *gold_bad_name(gold_bad why);

typedef struct gold_data {
    size_t D, C, K;
    int has_score;
    size_t n, cap;          /* rows, allocated rows */
    double *y;              /* [n] */
    double *theta0;         /* [n, D] */
    double *theta1;         /* [n, K, D] */
    double *x;              /* [n, C] */
    double *log_r;          /* [n, K] */
    double *t;              /* [n, D] when has_score, else NULL */
    char **theta_names;     /* [D] */
    char **x_names;         /* [C] */
    uint64_t seed;
    double epsilon;
    uint64_t bad[GOLD_BAD_COUNT];
    uint64_t n_analytic;    /* rows whose t came from parameter tangents (the rest: finite differences) */
} gold_data;

/* Empty data of the given shape with copies of the names.  0 or -1. */
int gold_data_init(gold_data *g, size_t D, size_t C, size_t K, int has_score, const char *const *theta_names,
                   const char *const *x_names);
void gold_data_free(gold_data *g);
/* Append one row (t may be NULL when !has_score).  0 or -1 (out of memory). */
int gold_data_add(gold_data *g, double y, const double *theta0, const double *theta1, const double *x,
                  const double *log_r, const double *t);
uint64_t gold_data_bad_total(const gold_data *g);

/* Write / read the .ppxg file.  0, or -1 with the reason in err. */
int gold_data_write(const gold_data *g, const char *path, char *err, size_t err_len);
int gold_data_read(gold_data *g, const char *path, char *err, size_t err_len);
/* 1 when the file starts with the .ppxg magic. */
int gold_file_is(const char *path);
/* PREFIX_y.npy, _theta0.npy, _theta1.npy ([n, K*D]), _x.npy, _log_r.npy and
 * (with a score) _t.npy.  0 or -1 with the reason. */
int gold_data_export_npy(const gold_data *g, const char *prefix, char *err, size_t err_len);

#endif
