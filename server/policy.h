/* policy.h — how ppxd answers a simulator's Sample requests.
 *
 * A policy is asked for answers in batches: every Sample that arrived in one
 * turn of the event loop, from any number of simulators, goes to one
 * policy_answer() call (a learned proposal evaluates them as one network
 * batch).  Per-trace state lives in "slots": the engine calls
 * policy_begin(slot, trace_index) when a trace starts on a session and
 * policy_end(slot) when it finishes or is discarded; every request names its
 * slot and carries the trace recorded so far.
 *
 * Randomness: each trace draws from its own RNG stream, seeded by
 * (job seed, trace index), so results do not depend on which simulator runs
 * which trace or in what order traces finish.
 *
 * Implemented policies:
 *   prior   — draw from the distribution the simulator sent;
 *   fixed   — named samples get given values, either conditioning on them
 *             (the value is observed: its log-prob joins the likelihood) or
 *             setting them (an intervention, e.g. choosing theta); other
 *             draws go to an inner policy;
 *   replay  — answer every draw with the value recorded at the same address
 *             in a given trace, scoring it under the new parameters; an
 *             address missing from the recording is a control-flow change:
 *             it is counted, the trace marked, and the draw answered by the
 *             inner policy.
 */
#ifndef PPX_POLICY_H
#define PPX_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include "dist.h"
#include "rng.h"
#include "trace.h"

typedef enum policy_flag {
    POLICY_ANSWERED = 0,   /* value/log_q set */
    POLICY_INVALID = 1     /* could not answer (reason set): the trace is discarded */
} policy_flag;

typedef struct policy_request {
    /* in */
    size_t slot;
    const trace *t;            /* the trace so far (entries before this draw) */
    const char *address;       /* full address with __Kind__n suffix */
    const char *name;
    const dist *d;             /* validated distribution */
    int control;
    /* out */
    double *value;             /* d->n values, storage provided by the engine */
    double log_q;              /* log density of the proposal that produced value */
    int observed;              /* 1: the value is conditioned on (joins the likelihood) */
    int replayed;              /* 1: value reused from a recorded trace */
    policy_flag flag;
    char reason[160];
} policy_request;

typedef struct policy policy;
typedef struct policy_ops {
    void (*begin)(policy *p, size_t slot, uint64_t trace_index);
    void (*answer)(policy *p, policy_request *reqs, size_t n);
    void (*end)(policy *p, size_t slot);
    void (*destroy)(policy *p);
} policy_ops;

struct policy {
    const policy_ops *ops;
    rng *slot_rng;       /* per-slot RNG, seeded at begin() from (seed, trace_index) */
    size_t n_slots;
    uint64_t seed;
    /* Optional (NULL for every policy but gold mining's, server/mine.c): the
     * value for an Observe that neither the simulator's message nor
     * --observe gives, the entry_index-th statement of the slot's trace,
     * with base_address as sent and n elements; NULL lets the engine draw it
     * as usual.  A replay answers it with the recorded value. */
    const double *(*observe_value)(policy *p, size_t slot, size_t entry_index, const char *base_address, size_t n);
};

/* Allocate the per-slot state shared by all policies.  0 or -1. */
int policy_base_init(policy *p, const policy_ops *ops, size_t n_slots, uint64_t seed);
void policy_base_free(policy *p);
void policy_base_begin(policy *p, size_t slot, uint64_t trace_index);

static inline void policy_begin(policy *p, size_t slot, uint64_t idx) { p->ops->begin(p, slot, idx); }
static inline void policy_answer(policy *p, policy_request *r, size_t n) { p->ops->answer(p, r, n); }
static inline void policy_end(policy *p, size_t slot) { if (p->ops->end) p->ops->end(p, slot); }
void policy_destroy(policy **p);

/* Answer r from the prior with the slot's RNG (shared by all policies). */
void policy_draw_prior(policy *p, policy_request *r);

policy *policy_prior_new(size_t n_slots, uint64_t seed);

/* fixed: values by name.  mode FIXED_CONDITION or FIXED_SET per value. */
typedef enum fixed_mode { FIXED_CONDITION = 0, FIXED_SET = 1 } fixed_mode;
typedef struct fixed_value {
    const char *name;
    const double *values;
    size_t n;
    fixed_mode mode;
} fixed_value;
/* Takes ownership of `inner`; copies the values. */
policy *policy_fixed_new(policy *inner, const fixed_value *vals, size_t n_vals);

/* replay: per slot, the trace to replay (borrowed; set before policy_begin
 * of that slot, may change between traces).  Takes ownership of `inner`. */
policy *policy_replay_new(policy *inner, size_t n_slots);
void policy_replay_set(policy *p, size_t slot, const trace *recorded);
/* Addresses asked for that the recording lacked (control-flow changes), and
 * recorded addresses that were never asked for, summed over all traces. */
uint64_t policy_replay_mismatches(const policy *p);
/* 1 when the slot's current trace departed from its recording. */
int policy_replay_slot_diverged(const policy *p, size_t slot);
/* For LMH: address whose recorded value must NOT be reused in this slot's
 * next trace (it is redrawn from the inner policy); NULL for none. */
void policy_replay_set_resample(policy *p, size_t slot, const char *address);
/* For RMH: when on, the resample address is moved near its recorded value by
 * the random-walk kernel of its distribution (rwmh.h) instead of redrawn
 * from the inner policy (falling back to that when the recording lacks it
 * or its distribution changed).  After the trace: 1 when the kernel moved
 * it, with log q(old | new) - log q(new | old) in *log_ratio. */
void policy_replay_set_kernel(policy *p, size_t slot, int on);
int policy_replay_kernel_move(const policy *p, size_t slot, double *log_ratio);

#endif
