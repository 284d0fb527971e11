/* train_ic.h — `ppxd train ic`: trains an inference-compilation network
 * (src/ic/ic.h) on prior traces, online from PPX simulators or offline from
 * a .ppxt trace file, and writes it as a .ppxm model (kind IC).
 *
 * Online, the engine (main thread) runs the simulators in training mode
 * (every Observe without a value is drawn by ppxd) and hands traces to the
 * trainer thread through a bounded ring of traces: simulators wait only if
 * the trainer is a whole ring behind; the trainer never waits for a
 * simulator except when the ring is empty.  Traces are consumed in index
 * order (trace i from RNG stream (seed, i)), so a run is reproducible for a
 * given --seed whatever the number of simulators and their timing
 * (--max-seconds aside, which stops at a time).
 *
 * argv[0] is "ic" (main.c passes argv + 2 of "ppxd train ic ...").  Exit
 * codes: 0 done, 1 failure while running, 2 usage error. */
#ifndef PPX_TRAIN_IC_H
#define PPX_TRAIN_IC_H

int ppxd_train_ic_main(int argc, char **argv);

/* `train ic` as a ppxd daemon job (server/daemon.c), parsed and trained as
 * the command line does, on the daemon's pool:
 *   ic_job_parse: argv[0] "ic"; NULL with *rc (2 after a complaint, cli.h).
 *   ic_job_daemon_check: -1 with the reason for options that are not a job's.
 *   ic_job_sim_begin: the policy and job_ops of the online feed for an
 *     engine of `slots` sessions, and the trainer thread started.
 *   ic_job_progress: traces handed to the trainer, of how many (0: bounded
 *     by time only).  ic_job_stop: the trainer ends (best network kept).
 *   ic_job_finish: once the feed is done (job_ops.done), join the trainer,
 *     restore the best weights and write the network.  0, or 1 with msg. */
#include <stddef.h>
#include <stdint.h>
typedef struct ic_job ic_job;
struct policy;
struct job_ops;
ic_job *ic_job_parse(int argc, char **argv, int *rc);
int ic_job_daemon_check(const ic_job *j, char *msg, size_t len);
int ic_job_set_out(ic_job *j, const char *path);
uint64_t ic_job_seed(const ic_job *j);
int ic_job_sim_begin(ic_job *j, size_t slots, struct policy **p, const struct job_ops **ops, void **job);
void ic_job_progress(ic_job *j, uint64_t *done, uint64_t *total);
void ic_job_stop(ic_job *j);
int ic_job_finish(ic_job *j, char *msg, size_t len);
void ic_job_destroy(ic_job **j);

#endif
