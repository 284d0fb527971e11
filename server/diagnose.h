/* diagnose.h — the `ppxd diagnose` sub-command: calibration checks of a
 * trained posterior (.ppxm NPE, NRE or IC; .ppxr gold ratio models: CARL,
 * ROLR, RASCAL, CASCAL, ALICE, ALICES) — simulation-based
 * calibration, expected coverage of highest-density regions, TARP, a
 * posterior predictive check through the simulators and C2ST against
 * reference samples — written as a JSON report, .npy/CSV arrays and a
 * one-screen summary (statistics in src/diag/diag.h).
 *
 * argv[0] is "diagnose" (main.c passes argv + 1).  Returns the exit code: 0
 * when it ran (whatever the verdicts; --strict: 3 when a check failed), 1 on
 * a failure while running, 2 on a usage error (before anything is started
 * or written).
 */
#ifndef PPX_DIAGNOSE_H
#define PPX_DIAGNOSE_H

#include <stddef.h>
#include <stdint.h>

int ppxd_diagnose_main(int argc, char **argv);

/* One diagnosis, in phases, for the command line and for ppxd daemon's
 * diagnose jobs (server/daemon.c), so that both parse, sample and report
 * alike (the same files for the same seed and inputs):
 *   diag_job_parse: `diagnose ...` (argv[0] "diagnose"); job = 1 for a
 *     daemon job: no simulators or -o needed (the pool and the job's
 *     directory are used; test pairs are live unless --data), complaints
 *     with cli_complain (so captured), --quiet implied.  NULL with *rc (2
 *     after a usage complaint, 1 out of memory).
 *   diag_job_daemon_check: -1 with the reason when the options are not for
 *     a job: simulator, engine, -o and --threads options.  (An IC model
 *     with --data is refused when the model is opened: a job's IC rounds
 *     take live test pairs.)
 *   diag_job_set_runner: how the simulations *during* the diagnosis run
 *     (an IC model's first trace, test pairs and importance sampling, the
 *     predictive check): the command line's runner is engine_run on its
 *     own engine; a daemon job's hands the engine job to the daemon's loop
 *     (the shared pool) and blocks until it is over.  run returns 0 when
 *     the job ran to its end (job_ops.done; the job's own failed flag says
 *     whether its traces were usable), -1 when it did not (stopped,
 *     cancelled, no simulators); what says what it is for (a status
 *     message) and obs are the Observe values of its traces (NULL: drawn).
 *     slots: the sessions of the policies given to run.  The job keeps a
 *     copy of the struct; ctx is borrowed.
 *   diag_job_file / diag_job_set_file: the files the command names (model,
 *     --data, --obs-file, --reference, --truth when a file), for the daemon
 *     to resolve in its data directory; diag_job_set_out: the output
 *     directory.  The job keeps its own copies.
 *   diag_job_sim_begin: live test pairs: opens the model and the inputs,
 *     then the policy and job of the simulations from the prior for an
 *     engine of `slots` sessions (owned by dj); trace seeds diag_job_seed.
 *     0, -1 failure, or 1: none to run before diag_job_run (an IC model:
 *     its theta come from a first trace, so diag_job_run simulates the
 *     test pairs itself, through the runner).
 *   diag_job_run: after the simulations (or at once with --data), the
 *     rounds, the checks and the report into the output directory; a
 *     failed simulation (the simulator lacks the model's names) fails here
 *     with its reason
 *     (CPU-heavy: a thread of its own in the daemon).  0, 1 failure (the
 *     reason in msg), 2 usage error, 3 --strict and a check failed; a
 *     one-line result in msg.
 *   diag_job_progress: traces of the live test pairs, then rounds (total 0
 *     until the test pairs are known); *unit "traces" or "rounds";
 *     thread-safe for the rounds.
 *   diag_job_stop: the rounds end (thread-safe: a flag); diag_job_run then
 *     returns 1 without a report. */
typedef struct diag_job diag_job;
struct policy;
struct job_ops;
struct observation;
typedef struct diag_runner {
    size_t slots;
    int (*run)(void *ctx, const char *what, struct policy *p, const struct job_ops *ops, void *job,
               const struct observation *obs, size_t n_obs);
    void *ctx;
} diag_runner;
typedef enum diag_file {
    DIAG_FILE_MODEL = 0,
    DIAG_FILE_DATA_THETA,
    DIAG_FILE_DATA_X,
    DIAG_FILE_OBS,
    DIAG_FILE_REFERENCE,
    DIAG_FILE_TRUTH,
    DIAG_FILE_COUNT
} diag_file;
diag_job *diag_job_parse(int argc, char **argv, int job, int *rc);
int diag_job_daemon_check(const diag_job *dj, char *msg, size_t len);
const char *diag_job_file(const diag_job *dj, diag_file f); /* NULL: not given */
int diag_job_set_file(diag_job *dj, diag_file f, const char *path);
int diag_job_set_out(diag_job *dj, const char *dir);
int diag_job_live(const diag_job *dj);
uint64_t diag_job_seed(const diag_job *dj);
void diag_job_set_runner(diag_job *dj, const diag_runner *r);
int diag_job_sim_begin(diag_job *dj, size_t slots, struct policy **p, const struct job_ops **ops, void **job);
int diag_job_run(diag_job *dj, char *msg, size_t msg_len);
void diag_job_progress(const diag_job *dj, uint64_t *done, uint64_t *total, const char **unit);
void diag_job_stop(diag_job *dj);
void diag_job_destroy(diag_job **dj);

#endif
