/* select.h — which values of a trace a user can name: the columns of
 * `ppxd infer --latent`, `ppxd export --names` and the summaries.
 *
 * A spec is one of:
 *   NAME       the entry with that name; when a trace has several, the last
 *              one (trace_find_name), as a program that reassigns a variable
 *              means;
 *   @result    the trace's RunResult value;
 *   @log_weight, @log_prior, @log_likelihood, @log_proposal
 *              the trace's log-weight sums (trace.h): one number each, so
 *              that an importance-sampling run's traces can be reweighted
 *              outside ppxd;
 *   ADDRESS    a full address with its __Kind__n suffix, e.g.
 *              "forward.c:12:run__Normal__1";
 *   PATTERN    several addresses at once: a glob ('*', '?', '[...]', as
 *              fnmatch) or a plain prefix of full addresses, e.g. the
 *              call-site address as the simulator sent it ("forward.c:12:run"
 *              gives every instance of that draw).
 * A spec that names an entry of the reference trace is a name, even if it
 * also looks like an address.  Most PPX simulators (pyprob_cpp programs)
 * name nothing, so addresses and @result are how their draws are reached.
 *
 * select_expand() turns specs into concrete keys against a reference trace
 * (the first one of a run): a pattern becomes each matching address in the
 * order the reference trace has them.  Keys own their strings.
 */
#ifndef PPX_SELECT_H
#define PPX_SELECT_H

#include <stddef.h>
#include "trace.h"

typedef enum select_kind {
    SELECT_NAME = 0,
    SELECT_ADDRESS,
    SELECT_RESULT,
    SELECT_LOG_WEIGHT,
    SELECT_LOG_PRIOR,
    SELECT_LOG_LIKELIHOOD,
    SELECT_LOG_PROPOSAL
} select_kind;

typedef struct select_key {
    select_kind kind;
    char *key;          /* the name or full address ("@result" for SELECT_RESULT) */
} select_key;

#define SELECT_RESULT_SPEC "@result"

/* Room for a value that is not stored as an array in the trace (the
 * log-weight sums): select_value points into it. */
typedef struct select_scratch {
    double v;
    trace_array a;
} select_scratch;

/* The value a key selects in t, or NULL when t lacks it (or it is empty);
 * valid while t and sc are. */
const trace_array *select_value(const trace *t, const select_key *k, select_scratch *sc);

/* Expand specs against the reference trace t into *keys (malloc'd, n in
 * *n_keys; free with select_keys_free).  0, or -1 with a reason in err (a
 * spec that selects nothing in t, or out of memory); nothing is kept then. */
int select_expand(const char *const *specs, size_t n_specs, const trace *t, select_key **keys, size_t *n_keys,
                  char *err, size_t err_len);

/* The default columns of a summary: every named, unobserved Sample (first
 * appearance order, each name once); when there is none, @result (if the
 * trace has one) and the unobserved controlled Sample addresses, at most
 * max_addresses of them (*n_more says how many were left out).  0 or -1 (out
 * of memory). */
int select_default(const trace *t, size_t max_addresses, select_key **keys, size_t *n_keys, size_t *n_more);

void select_keys_free(select_key **keys, size_t n_keys);

#endif
