/* train.h — the `ppxd train` and `ppxd posterior` sub-commands: amortized
 * posteriors (NPE flows, NRE classifiers) trained from live PPX simulations
 * or from .npy files, then sampled and evaluated.
 *
 * Both take the sub-command's own argument vector: argv[0] is "train" or
 * "posterior" (main.c passes argv + 1), and return the process exit code:
 * 0 success, 1 failure while running (simulators, training, I/O), 2 usage
 * error (reported before anything is started or written).
 * They install their own SIGINT/SIGTERM handlers (an interrupted training
 * keeps its best weights and still writes the model).
 */
#ifndef PPX_TRAIN_H
#define PPX_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "prior.h"
#include "trace.h"

int ppxd_train_main(int argc, char **argv);

/* One NPE/NRE training, in phases, for the command line and for ppxd
 * daemon's jobs (server/daemon.c), so that both parse and train alike:
 *   train_job_parse: `train npe|nre ...` (argv[0] "train"); job = 1 for a
 *     daemon job (no simulators or -o needed).  NULL with *rc (2 after a
 *     usage complaint, cli_complain; 1 out of memory).
 *   train_job_daemon_check: -1 with the reason when the options are not for
 *     a job (simulator options, --data, -o, --save-data, --serve).
 *   train_job_set_out: where the model goes (and MODEL.log.csv, the
 *     per-epoch losses: "epoch,train_loss,val_loss,seconds").
 *   train_job_sim_begin: the policy and job of the live simulations for an
 *     engine of `slots` sessions (owned by tj); progress in traces.
 *   train_job_fit: after the simulations, train and save (CPU-heavy: a
 *     thread of its own in the daemon).  0 with *m the model (owned by tj),
 *     1 failure, 2 usage error; a one-line result or reason in msg.
 *   train_job_stop: the training ends after its current batch (keeping the
 *     best weights); thread-safe (a flag). */
typedef struct train_job train_job;
struct model_file;
struct policy;
struct job_ops;
train_job *train_job_parse(int argc, char **argv, int job, int *rc);
int train_job_daemon_check(const train_job *tj, char *msg, size_t len);
void train_job_set_out(train_job *tj, const char *path);
uint64_t train_job_seed(const train_job *tj);
int train_job_max_epochs(const train_job *tj); /* --max-epochs; 0: no limit */
int train_job_sim_begin(train_job *tj, size_t slots, struct policy **p, const struct job_ops **ops, void **job);
void train_job_sim_progress(const train_job *tj, uint64_t *done, uint64_t *total);
int train_job_sim_failed(const train_job *tj);
int train_job_fit(train_job *tj, const struct model_file **m, char *msg, size_t msg_len);
void train_job_stop(train_job *tj);
int train_job_stopped(const train_job *tj);
void train_job_destroy(train_job **tj);
int ppxd_posterior_main(int argc, char **argv);

/* The prior of the named theta Samples from a trace's entries (their
 * distributions, element by element; also used by ppxd diagnose for gold
 * models, which store no prior).  NULL with the reason in err (a name
 * missing or not a latent Sample, a discrete kind). */
prior *train_prior_from_trace(const trace *t, const char *const *names, size_t n_names, char *err, size_t err_len);

#endif
