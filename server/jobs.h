/* jobs.h — ppxd's inference jobs on top of the engine.
 *
 * ordered_job: traces 0..n-1, each with its own RNG stream, committed to a
 * consumer strictly in index order (so files and results are identical for a
 * given seed whatever the scheduling).  Memory stays bounded by the work in
 * flight: no index beyond next_commit + window is started, and only the
 * window's traces are held.
 *   Stragglers: a hung or slow simulator holding the lowest uncommitted
 * index would make every other simulator wait once the window is full.  So
 * a session with nothing else to do runs a backup copy of the oldest
 * uncommitted trace that has run for much longer than traces usually take
 * (as MapReduce's backup tasks).  Trace i draws from RNG stream (seed, i)
 * wherever it runs, so both copies give the same trace: the first to finish
 * is committed, the other is ignored (complete() returns 1: a duplicate).
 *
 * lmh_job: lightweight Metropolis–Hastings (Wingate et al. 2011), one chain
 * per simulator slot: each step redraws one sampled address from the prior
 * and replays the rest of the current trace by address; acceptance uses the
 * joint densities and the fresh/stale terms.  Every latent Sample is a site,
 * control=false ones too.  With rmh set, the same job is random-walk
 * Metropolis–Hastings: the site moves near its current value by its
 * family's kernel (rwmh.h), whose proposal ratio joins the acceptance.  Chains depend only on (seed,
 * chain number), so results are reproducible for a given number of
 * simulators.
 */
#ifndef PPX_JOBS_H
#define PPX_JOBS_H

#include <stdint.h>
#include "engine.h"
#include "select.h"
#include "trace.h"

typedef int (*commit_fn)(void *ctx, uint64_t index, const trace *t);

typedef struct ordered_job {
    uint64_t n;
    uint64_t next_new;
    uint64_t next_commit;
    uint64_t *retry;
    size_t n_retry, cap_retry;
    size_t window;
    trace **ring;
    uint8_t *ready;
    uint8_t *running;    /* per ring slot: copies of that index in flight */
    uint8_t *backed_up;  /* per ring slot: a backup copy was started */
    double *started;     /* per ring slot: when its first copy started (monotonic s) */
    double mean_s;       /* moving average of a trace's duration (0: none yet) */
    uint64_t backups;    /* backup copies started */
    int no_backups;      /* set to run each index once at a time (e.g. to count per-trace
                            policy statistics, which a backup copy would count twice) */
    commit_fn commit;
    void *ctx;
    int failed;          /* commit returned -1 */
} ordered_job;

extern const job_ops ordered_job_ops;
int ordered_job_init(ordered_job *j, uint64_t n, size_t window, commit_fn commit, void *ctx);
void ordered_job_free(ordered_job *j);

/* Importance-sampling accumulator: per trace the log-weight and the values
 * of the selected columns (NaN where a trace lacks one).  Columns are specs
 * of select.h (names, addresses, patterns, @result), expanded against the
 * first trace; with no spec, select_default's columns. */
typedef struct is_result {
    char **specs;        /* as given (none: the default columns) */
    size_t n_specs;
    select_key *keys;    /* the columns' sources, fixed by the first trace */
    size_t n_keys;
    size_t *widths;      /* values per key */
    size_t n_cols;       /* sum of widths */
    size_t n_more;       /* default address columns left out (summary note) */
    double *lw;          /* [n] log-weights */
    double *vals;        /* [n x n_cols] */
    uint64_t n, cap;
    int have_cols;
} is_result;

/* How many controlled addresses a default summary shows at most. */
#define IS_RESULT_MAX_DEFAULT_ADDRESSES 20

int is_result_init(is_result *r, const char *const *specs, size_t n_specs);
void is_result_free(is_result *r);
/* commit_fn for ordered_job: records weight and columns (and nothing else). */
int is_result_commit(void *r, uint64_t index, const trace *t);
/* Column j's label ("mu", "x[2]", "@result", an address); buf of len bytes. */
void is_result_col_name(const is_result *r, size_t j, char *buf, size_t len);
/* Make dst's columns those of src (dst empty).  0 or -1. */
int is_result_adopt_columns(is_result *dst, const is_result *src);

typedef struct lmh_chain {
    trace *cur;
    double cur_joint;
    int has_cur;
    uint64_t iter;       /* completed steps (accepted or not) */
    uint64_t accepted;
    rng r;               /* site choice and acceptance */
    char *site;          /* address being redrawn in the step in flight */
    int running;
    size_t slot;
} lmh_chain;

typedef struct lmh_job {
    lmh_chain *chains;
    size_t n_chains;
    uint64_t steps;      /* per chain, including burn-in */
    uint64_t burn_in;    /* per chain */
    policy *replay;      /* the replay policy driving the steps */
    is_result *out;      /* samples (log-weight 0) appended after burn-in, chain by chain at the end */
    is_result *per_chain;
    uint64_t seed;
    int failed;
    int rmh;             /* random-walk kernels instead of prior redraws */
    /* Optional: called with each chain's state after each step past burn-in
     * (log_weight 0), e.g. to write the chain's traces. */
    int (*on_sample)(void *ctx, size_t chain, const trace *t);
    void *on_sample_ctx;
} lmh_job;

extern const job_ops lmh_job_ops;
int lmh_job_init(lmh_job *j, size_t n_chains, uint64_t steps, uint64_t burn_in, policy *replay,
                 const char *const *names, size_t n_names, uint64_t seed);
/* Concatenate the chains' samples into out (initialised by the caller with
 * is_result_init). 0 or -1. */
int lmh_job_collect(lmh_job *j, is_result *out);
void lmh_job_free(lmh_job *j);

#endif
