/* model_file.h — trained amortized posteriors on disk (".ppxm" files) and in
 * memory: everything needed to rebuild and use an NPE flow or an NRE
 * classifier, with where it came from.
 *
 * In memory a model_file describes one model: its kind and network config,
 * the z-score constants of theta and x (per dimension; data are fed to the
 * network as (v - mean) / std), the prior, the names of theta's and x's
 * columns, training provenance and the flat float32 parameter array (in the
 * order of flow_get_params / resmlp's params buffer).  It owns every array
 * and string it points to (model_file_destroy frees them all).
 *
 * On disk (format version MODEL_FILE_VERSION; all integers and floats
 * little-endian):
 *   offset 0   magic "PPXMODEL" (8 bytes)
 *          8   format version, uint32
 *         12   reserved uint32 (0)
 *         16   payload length P, uint64
 *         24   payload (P bytes, layout below)
 *     24 + P   CRC-32C (trace_crc32c) of bytes [0, 24 + P), uint32
 * The 24-byte preamble and the trailing checksum stay the same in every
 * future version, so any version can be recognised and refused clearly.
 * Payload of version 2 (version 1, still read, lacks the two items marked
 * [v2]; its models have independent priors and no transforms), in order:
 *   kind u32; dim u32; context u32
 *   NPE: flow config: kind, dim, context, n_transforms, hidden, n_blocks,
 *        act, n_bins, autoregressive as u32, tail_bound as f32
 *   NRE: resmlp config: in, hidden, n_blocks, out, act as u32; bnre_lambda f64
 *   theta_mean[dim], theta_std[dim], x_mean[context], x_std[context]: f64
 *   prior: dim x (kind u32, p0 f64, p1 f64) (a dimension of a
 *        multivariate normal block: Normal(its marginal mean, sd))
 *   [v2] multivariate normal blocks: count u32, then each j0 u32, k u32,
 *        mean [k] f64, covariance [k, k] f64
 *   [v2] transforms: theta dim x, then x context x (kind u32, lo f64, hi f64)
 *        (transform.h; all TF_NONE for a model trained without them)
 *   theta names [dim], x names [context]: each u32 length + bytes (no NUL)
 *   provenance: created (unix seconds) i64, n_simulations, n_dropped,
 *        n_train, n_val u64, epochs, best_epoch u32, best_val_loss,
 *        train_seconds f64, seed u64, source string (u32 length + bytes)
 *   parameters: n_params u64, then n_params f32
 * Loading checks, in this order, and fails with a message saying which:
 * unreadable file, wrong magic ("not a ppxd model file"), short file or
 * payload length disagreeing with the file size ("truncated"), checksum
 * mismatch ("corrupted"), other format version, and finally a payload that
 * does not parse or is inconsistent (sizes, prior, parameter count).
 */
#ifndef PPX_MODEL_FILE_H
#define PPX_MODEL_FILE_H

#include <stddef.h>
#include <stdint.h>
#include "flow/flow.h"
#include "nn/mlp.h"
#include "prior.h"
#include "transform.h"

#define MODEL_FILE_MAGIC "PPXMODEL"
#define MODEL_FILE_VERSION 2u
#define MODEL_FILE_MIN_VERSION 1u /* oldest version read */

typedef enum model_kind {
    MODEL_NPE_MAF = 1,
    MODEL_NPE_NSF = 2,
    MODEL_NRE = 3,
    MODEL_IC = 4        /* inference compilation: its own payload, read by src/ic/ic.h
                           (ic_net_load); model_file_decode refuses it by name */
} model_kind;

/* "NPE-MAF", "NPE-NSF", "NRE", or "?". */
const char *model_kind_name(model_kind k);

typedef struct model_provenance {
    int64_t created;          /* unix seconds (UTC) */
    uint64_t n_simulations;   /* simulations received, including dropped */
    uint64_t n_dropped;       /* non-finite simulations dropped */
    uint64_t n_train, n_val;  /* rows of the two splits */
    uint32_t epochs;          /* epochs trained */
    uint32_t best_epoch;      /* epoch (1-based) whose weights were kept */
    double best_val_loss;     /* validation loss of the kept weights */
    double train_seconds;     /* wall time of the training loop */
    uint64_t seed;
    char *source;             /* free text: how the data were obtained (owned) */
} model_provenance;

typedef struct model_file {
    model_kind kind;
    int dim;                  /* D: theta dimension */
    int context;              /* C: x dimension */
    flow_config flow;         /* NPE kinds */
    resmlp_config net;        /* NRE: classifier on [theta, x] -> 1 logit */
    double bnre_lambda;       /* NRE: balancing penalty used in training (0: none) */
    double *theta_mean, *theta_std; /* [dim] z-scores of T(theta) (of theta without a transform) */
    double *x_mean, *x_std;         /* [context] z-scores of T(x) */
    tf_dim *theta_tf;         /* [dim] transform applied to theta before z-scoring (TF_NONE: none) */
    tf_dim *x_tf;             /* [context] transform applied to x before z-scoring */
    prior *prior;             /* dim dimensions (owned) */
    char **theta_names;       /* [dim] owned strings */
    char **x_names;           /* [context] owned strings */
    model_provenance prov;
    float *params;            /* [n_params] (owned) */
    size_t n_params;
} model_file;

/* An empty description: z-scores mean 0 / std 1, no transforms, names "theta_j"/"x_j",
 * prior N(0,1)^dim, provenance zero with created = now, no parameters.
 * NULL on bad sizes (dim < 1, context < 1) or out of memory. */
model_file *model_file_new(model_kind kind, int dim, int context);
void model_file_destroy(model_file **m);
/* Deep copy; NULL on out of memory. */
model_file *model_file_copy(const model_file *m);

/* Replace the prior (copied), a name, the provenance source, the parameter
 * array (copied; n may differ from before).  0 or -1 (out of memory, or a
 * prior of another dimension). */
int model_file_set_prior(model_file *m, const prior *p);
int model_file_set_theta_name(model_file *m, int j, const char *name);
int model_file_set_x_name(model_file *m, int j, const char *name);
int model_file_set_source(model_file *m, const char *source);
int model_file_set_params(model_file *m, const float *params, size_t n);

/* Serialise to a malloc'd buffer (*len bytes).  0 or -1 (reason in err). */
int model_file_encode(const model_file *m, unsigned char **buf, size_t *len, char *err, size_t err_len);
/* Parse a buffer (checks as listed above).  NULL with the reason in err. */
model_file *model_file_decode(const unsigned char *buf, size_t len, char *err, size_t err_len);

/* Write atomically (temporary file + rename) / read a file.  0 / non-NULL on
 * success; -1 / NULL with the reason (prefixed by the path) in err. */
int model_file_save(const model_file *m, const char *path, char *err, size_t err_len);
model_file *model_file_load(const char *path, char *err, size_t err_len);

/* Human-readable summary (kind, sizes, config, prior, names, provenance) to
 * a FILE*. */
void model_file_print(const model_file *m, void *file);

#endif
