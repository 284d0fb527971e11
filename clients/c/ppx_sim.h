/* ppx_sim.h — libppx: the simulator side of PPX, for C, C++ and Fortran.
 *
 * A simulator is a forward function that makes its random choices through
 * ppx_sample(), conditions through ppx_observe() and records values through
 * ppx_tag().  ppx_sim_serve() binds a ZeroMQ REP socket at an endpoint and
 * answers an inference engine (ppxd, or any PPX engine) exactly as the C++
 * front end pyprob_cpp does:
 *
 *   engine -> Handshake            sim -> HandshakeResult{system_name, model_name}
 *   engine -> Run                  sim runs forward(); every ppx_sample() sends a
 *                                  Sample and returns the engine's SampleResult,
 *                                  ppx_observe() an Observe, ppx_tag() a Tag;
 *                                  when forward() returns, sim -> RunResult.
 *   anything else while idle       sim -> Reset
 *
 * Without an engine (ppx_sim_run_local(), or after an aborted run) every draw
 * is made locally from a seeded RNG, for all 11 distributions.
 *
 * Addresses identify call sites.  Pass an explicit string, or PPX_HERE(sim),
 * which gives "file.c:LINE:function" (basename only, so the address does not
 * depend on the compiler, build directory or optimisation level, unlike the
 * stack-offset addresses of pyprob_cpp).
 *
 * Ownership: ppx_sim_new() returns a handle owned by the caller, freed with
 * ppx_sim_destroy().  Strings and arrays passed in are copied or only read
 * during the call.  A ppx_sim is used from one thread.
 *
 * Plain C ABI (no structs by value, no varargs) so that Fortran can bind it
 * with iso_c_binding; see clients/examples/gaussian_fortran.f90.
 */
#ifndef PPX_SIM_H
#define PPX_SIM_H

#include <stddef.h>
#include <stdint.h>
#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ppx_sim ppx_sim;

/* The model: one execution per Run.  `user` is the pointer given to ppx_sim_new. */
typedef void (*ppx_forward_fn)(ppx_sim *sim, void *user);

/* NULL on failure (out of memory, bad arguments). */
ppx_sim *ppx_sim_new(const char *model_name, ppx_forward_fn forward, void *user);
void ppx_sim_destroy(ppx_sim **sim);

/* Bind a REP socket at `endpoint` (e.g. "tcp://0.0.0.0:5555", "ipc://@name") and
 * serve the engine until `max_runs` traces have completed (0: forever) or an
 * unrecoverable socket error.  Returns 0, or -1 with the reason on stderr. */
int ppx_sim_serve(ppx_sim *sim, const char *endpoint, uint64_t max_runs);

/* The same with the REP socket connected to `endpoint` (an engine's
 * --sim-listen endpoint, e.g. "tcp://daemon-host:5556") instead of bound:
 * the simulator joins the engine's pool, and libzmq reconnects it if the
 * link drops (a run in progress then finishes locally, as after any engine
 * fault). */
int ppx_sim_connect(ppx_sim *sim, const char *endpoint, uint64_t max_runs);

/* A ready main(): "prog ENDPOINT [MAX_RUNS]" serves an engine,
 * "prog --connect-to ENDPOINT [MAX_RUNS]" connects to one (ppx_sim_connect),
 * "prog --local [N [SEED]]" runs N times locally printing each result.
 * Returns the process exit code (0 ok, 1 error, 2 usage). */
int ppx_sim_main(ppx_sim *sim, int argc, char **argv);

/* Run forward() once with local draws from RNG stream `seed`. */
void ppx_sim_run_local(ppx_sim *sim, uint64_t seed);

/* Number of traces completed by ppx_sim_serve / ppx_sim_run_local. */
uint64_t ppx_sim_runs(const ppx_sim *sim);
/* 1 while the current run has lost its engine (protocol error mid-trace):
 * the rest of the run draws locally and no RunResult is sent. */
int ppx_sim_aborted(const ppx_sim *sim);

/* "file.c:LINE:function" for the call site, in a buffer of `sim` that is
 * overwritten by the next ppx_here(); the ppx_* calls copy it at once. */
const char *ppx_here(ppx_sim *sim, const char *file, int line, const char *func);
#define PPX_HERE(sim) ppx_here((sim), __FILE__, __LINE__, __func__)

/* --- inside forward() ----------------------------------------------------
 * Distributions use the layout of src/dist.h (kind, n elements, parameters
 * p0/p1 of length n or 1, Categorical probs of n*k weights).  Parameters of
 * length 1 travel as 0-d tensors, others as [n] (Categorical: [k] or [n, k]).
 */

/* Draw d->n values into out.  control = 0 asks the engine to draw from the
 * prior and not to learn or weight this choice.  Returns 0 when the engine
 * answered, 1 when the draw was local (no engine / aborted run), -1 on bad
 * arguments (out untouched). */
int ppx_sample(ppx_sim *sim, const dist *d, const char *address, const char *name,
               int control, double *out);

/* Observe d at `value` (d->n values), or with value == NULL let the engine
 * supply the value.  0 answered, 1 local, -1 bad arguments. */
int ppx_observe(ppx_sim *sim, const dist *d, const double *value,
                const char *address, const char *name);

/* Record `len` values under `name` (shape [] when len == 1, else [len]). */
int ppx_tag(ppx_sim *sim, const double *value, size_t len,
            const char *address, const char *name);

/* The run's result (copied), sent as RunResult when forward() returns;
 * len == 1 gives a 0-d tensor.  Not calling it sends an absent result. */
void ppx_set_result(ppx_sim *sim, const double *value, size_t len);

/* --- parameter tangents (ppxd extension; upstream engines ignore them) ----
 * So that `ppxd mine --score analytic|auto` computes the joint score
 * t(x,z|theta) = sum over draws of d log p / d params . d params / d theta
 * without finite-difference replays, a simulator declares the names of its
 * parameters of interest (its theta Samples) and, before each draw whose
 * distribution depends on theta, the derivative of its parameters with the
 * values of earlier draws held fixed.
 *
 * ppx_declare_theta: the D names (copied); others_independent = 1 makes
 * every Sample/Observe sent without a tangent carry an empty one (declared
 * independent of theta; the theta Samples themselves excepted).  Without it
 * such draws carry none, and ppxd counts the row invalid ("no-tangent")
 * under --score analytic, or falls back to finite differences under auto.
 * 0, or -1 (empty or repeated name, out of memory).
 *
 * ppx_set_tangent: the tangent of the NEXT ppx_sample/ppx_observe (or a
 * scalar convenience) call, which consumes it: d0 = d param0 / d theta and
 * d1 = d param1 / d theta (wire slot order), each len 0 (does not depend on
 * theta) or (elements of that parameter) x D values, row-major [elements, D]
 * (element i, theta k at i * D + k; a broadcast scalar parameter has 1
 * element; Categorical probs n * k).  Copied.  A tangent that does not fit
 * the distribution, or is not finite, makes that statement fail as a bad
 * argument (-1, or NaN from the conveniences).  0, or -1 (no theta declared).
 *
 * ppx_set_tangent_scalar: the same for D = 1 and scalar parameters:
 * d param0 / d theta and d param1 / d theta (d1 = 0 for one-parameter kinds). */
int ppx_declare_theta(ppx_sim *sim, const char *const *names, size_t n, int others_independent);
int ppx_set_tangent(ppx_sim *sim, const double *d0, size_t len0, const double *d1, size_t len1);
int ppx_set_tangent_scalar(ppx_sim *sim, double d0, double d1);

/* Scalar conveniences (control = 1).  Two-parameter kinds take (p0, p1) in
 * wire slot order; one-parameter kinds ignore p1.  On bad parameters they
 * return NaN and report on stderr. */
double ppx_sample_scalar(ppx_sim *sim, dist_kind kind, double p0, double p1,
                         const char *address, const char *name);
double ppx_sample_normal(ppx_sim *sim, double mean, double stddev, const char *address, const char *name);
double ppx_sample_uniform(ppx_sim *sim, double low, double high, const char *address, const char *name);
double ppx_sample_categorical(ppx_sim *sim, const double *probs, size_t k, const char *address, const char *name);
double ppx_sample_poisson(ppx_sim *sim, double rate, const char *address, const char *name);
double ppx_sample_bernoulli(ppx_sim *sim, double probs, const char *address, const char *name);
double ppx_sample_beta(ppx_sim *sim, double alpha, double beta, const char *address, const char *name);
double ppx_sample_exponential(ppx_sim *sim, double rate, const char *address, const char *name);
double ppx_sample_gamma(ppx_sim *sim, double concentration, double rate, const char *address, const char *name);
double ppx_sample_lognormal(ppx_sim *sim, double loc, double scale, const char *address, const char *name);
double ppx_sample_binomial(ppx_sim *sim, double total_count, double probs, const char *address, const char *name);
double ppx_sample_weibull(ppx_sim *sim, double scale, double concentration, const char *address, const char *name);

/* Observe a scalar: value == NULL lets the engine supply it. */
int ppx_observe_scalar(ppx_sim *sim, dist_kind kind, double p0, double p1,
                       const double *value, const char *address, const char *name);
int ppx_tag_scalar(ppx_sim *sim, double value, const char *address, const char *name);

#ifdef __cplusplus
}
#endif
#endif
