/* trace.h — one execution trace of a simulator, as ppxd records it.
 *
 * A trace is the ordered list of the simulator's Sample, Observe and Tag
 * statements, each with its per-trace address, name, distribution and
 * parameters, value, log-probability and control flag, plus the RunResult and
 * the trace's log-weights.
 *
 * Addresses: the simulator sends a call-site address A; the trace stores
 * "A__<Kind>__<n>" where Kind is the distribution name (Categorical:
 * "Categorical(len_probs:K)", Tag: "Tag", Observe without distribution:
 * "None") and n is 1 + the number of earlier entries of the trace with the
 * same "A__<Kind>" prefix, so the first is 1 (see ../shared/spec/ppx-wire.md).
 * Tag entries use "Tag" whatever their dist field says.
 *
 * Ownership: a trace owns all its memory: strings and arrays in one growing
 * arena, entries in one growing array; trace_reset() empties both for reuse
 * without freeing, so a session recording trace after trace allocates only
 * while its traces grow.
 * Strings and arrays of a trace stay valid until trace_reset() or
 * trace_destroy(); entry pointers (t->entries, trace_append's result) only
 * until the next trace_append(), which may move the entries array.
 */
#ifndef PPX_TRACE_H
#define PPX_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include "dist.h"

typedef enum trace_kind {
    TRACE_SAMPLE = 1,
    TRACE_OBSERVE = 2,
    TRACE_TAG = 3
} trace_kind;

/* A value or parameter array: row-major doubles with an int32 shape
 * (ndim 0 = scalar; len 0 = absent). */
typedef struct trace_array {
    double *data;
    size_t len;
    int32_t *shape;
    size_t ndim;
} trace_array;

/* The parameter tangent a simulator sent with a draw (the Tangent extension
 * of protocol/ppx.fbs): d param_j / d theta with earlier draws held fixed.
 * theta: n_theta names; d[j]: len[j] = 0 (param j does not depend on the
 * named theta) or len(param j) * n_theta values, row-major
 * [len(param j), n_theta] (element i, theta k at i * n_theta + k).
 * n_theta = 0 declares the draw independent of theta. */
typedef struct trace_tangent {
    size_t n_theta;
    const char *const *theta;
    const double *d[2];     /* NULL when len[j] == 0 */
    size_t len[2];
} trace_tangent;

/* trace_entry.observed: how the value came about.
 *   TRACE_LATENT       a Sample answered by a policy (prior, proposal, replay):
 *                      its log_prob joins log_prior;
 *   TRACE_CONDITIONED  conditioned on: an Observe with a given value (in the
 *                      message or by --observe), or a named Sample fixed as an
 *                      observation: its log_prob joins log_likelihood;
 *   TRACE_DRAWN        an Observe without a value, drawn by ppxd from its
 *                      distribution: simulated data, not evidence, so its
 *                      log_prob (recorded) joins neither sum.
 * Any non-zero value means "not a latent" (export, summaries, LMH sites). */
enum { TRACE_LATENT = 0, TRACE_CONDITIONED = 1, TRACE_DRAWN = 2 };

typedef struct trace_entry {
    trace_kind kind;
    const char *address;    /* with the __Kind__n suffix */
    const char *base_address; /* as the simulator sent it */
    const char *name;       /* "" when unnamed */
    dist_kind dist;         /* DIST_NONE for Tag (and Observe without distribution) */
    trace_array param[2];   /* distribution parameters in wire slot order */
    size_t k;               /* Categorical: categories (last dim of probs) */
    trace_array value;
    double log_prob;        /* log p(value | params); 0 for Tag */
    int control;            /* Sample.control (1 for Observe/Tag) */
    int observed;           /* TRACE_LATENT, TRACE_CONDITIONED or TRACE_DRAWN (below) */
    uint32_t instance;      /* the n of the address suffix */
    const trace_tangent *tangent; /* NULL: the simulator sent none (in the trace's arena;
                                     not kept by trace_store files) */
} trace_entry;

typedef struct trace {
    trace_entry *entries;
    size_t n_entries;
    size_t cap_entries;
    trace_array result;     /* RunResult */
    double log_prior;       /* sum of log_prob over unobserved Sample entries */
    double log_likelihood;  /* sum of log_prob over observed entries */
    double log_proposal;    /* sum of log q over proposed entries (= log_prior for prior sampling) */
    double log_weight;      /* log_prior + log_likelihood - log_proposal */
    uint64_t id;            /* sequence number given by the producer */
    void *impl_;            /* arena and address-counter table (trace.c) */
} trace;

trace *trace_new(void);
void trace_destroy(trace **t);
/* Empty the trace, keeping its memory. */
void trace_reset(trace *t);

/* Copy an array into the trace's arena.  `shape` may be NULL with ndim 1,
 * meaning shape [len].  Returns 0, or -1 on allocation failure. */
int trace_array_copy(trace *t, trace_array *dst, const double *data, size_t len,
                     const int32_t *shape, size_t ndim);

/* Append an entry: copies address, name, params and value into the arena,
 * computes the suffixed address and instance number.  `e` supplies kind,
 * base_address (as sent), name, dist, k, param, value, log_prob, control,
 * observed and tangent (deep-copied when non-NULL); its address/instance
 * fields are ignored.  Returns the stored
 * entry, or NULL on allocation failure.  Does not touch the log-weight sums. */
trace_entry *trace_append(trace *t, const trace_entry *e);

/* Recompute log_prior, log_likelihood and log_weight from the entries
 * (log_proposal is left as set by the producer). */
void trace_finish(trace *t);

/* The entry with this name: the LAST one when a trace has several, as a
 * program that reassigns a variable means (NULL if none; "" names no entry).
 * trace_find_address: the entry with this full address (addresses are unique
 * within a trace). */
const trace_entry *trace_find_name(const trace *t, const char *name);
const trace_entry *trace_find_address(const trace *t, const char *address);

/* Deep copy of src into dst (dst is reset first).  0, or -1 on allocation failure. */
int trace_copy(trace *dst, const trace *src);

/* Exchange the whole contents (entries, arena, sums) of a and b: a
 * consumer takes a finished trace without copying it. */
void trace_swap(trace *a, trace *b);

/* Kind string used in addresses: "Normal", ..., "Categorical(len_probs:K)",
 * "Tag", "None".  Writes at most len bytes (NUL-terminated). */
void trace_address_kind(const trace_entry *e, char *buf, size_t len);

#endif
