/* cli.h — what ppxd's engine commands (simulate, infer, export, info) share:
 * the parsed command line and the command entry points, one file each
 * (infer.c: simulate and infer; traces.c: export and info), as git's
 * builtin/ does.  Strings in a cli are borrowed from argv; the arrays are
 * malloc'd and freed by main.c. */
#ifndef PPX_CLI_H
#define PPX_CLI_H

#include <stdint.h>
#include <stdio.h>
#include "engine.h"
#include "policy.h"
#include "trace_store.h"

/* ppxd infer --method. */
typedef enum infer_method {
    METHOD_IS = 0,   /* importance sampling with the prior as proposal */
    METHOD_LMH,      /* lightweight Metropolis-Hastings: sites redrawn from their priors */
    METHOD_RMH,      /* random-walk Metropolis-Hastings: sites moved near their values */
    METHOD_IC        /* importance sampling with a trained IC proposal (--model) */
} infer_method;

typedef struct cli {
    const char *cmd;
    engine_config ecfg;
    engine_sim_options sims;
    uint64_t n;
    const char *out;
    uint64_t seed;
    observation *obs;
    size_t n_obs;
    fixed_value *fix;
    size_t n_fix;
    const char **latents;
    size_t n_latents;
    const char *samples_out;
    uint64_t resample;
    infer_method method;
    const char *model;   /* --model: the IC network for METHOD_IC */
    policy *ic_policy;   /* the IC policy inside the job's policy (for its report) */
    int64_t burn_in;
    trace_fsync_policy fsync;
    const char *names;
    const char *file;
    int job;             /* parsed for ppxd daemon: no simulator options needed (the pool is used) */
} cli;

/* Defaults (seed 1, progress on, ...) for sub-command cmd; cli_free frees
 * what cli_parse allocated. */
void cli_init(cli *c, const char *cmd);
void cli_free(cli *c);
/* The simulate/infer/export/info command line: argv[1] is the sub-command.
 * 0, or 2 after a usage error (complained about with cli_complain). */
int cli_parse(cli *c, int argc, char **argv);

/* A usage error: the message on stderr; returns 2 (the exit code). */
int cli_die(const char *msg, const char *detail);
/* A complaint about the command line: "ppxd: MESSAGE" on stderr, or, while
 * this thread captures (cli_capture), appended to the capture buffer —
 * `ppxd daemon` parses a job's command with the same parsers as the command
 * line and answers the same words as a BAD_REQUEST.  While capturing,
 * --help is refused (it would print and exit) and getopt's own messages are
 * off: cli_unknown_option words them (returns 2).  cli_capture(NULL, 0)
 * ends capturing.  getopt is not thread-safe: callers parsing in threads
 * hold one lock around the parse. */
void cli_complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_capture(char *buf, size_t len);
int cli_capturing(void);
int cli_unknown_option(int argc, char **argv);
/* Before a parse with optstring: forget the previous parser's getopt state. */
void cli_getopt_reset(const char *optstring);

/* The engine being run, for the signal handler (main.c). */
extern engine *cli_running;

/* simulate and infer as a job of an engine of `slots` sessions (policy
 * slots) and, for LMH/RMH, `chains` chains (0: one per slot): the policy
 * and the job_ops to run; progress; then the results (the trace file
 * closed, infer's summary to `summary`, --samples-out written, a one-line
 * result in msg).  cli_run_new opens c->out; NULL after a complaint.  The
 * CLI runs one on its own engine; ppxd daemon runs several on its pool. */
typedef struct cli_run cli_run;
cli_run *cli_run_new(cli *c, size_t slots, size_t chains);
policy *cli_run_policy(const cli_run *r);
const job_ops *cli_run_ops(cli_run *r, void **job);
void cli_run_progress(const cli_run *r, uint64_t *done, uint64_t *total);
int cli_run_failed(const cli_run *r);
int cli_run_finish(cli_run *r, int ok, FILE *summary, char *msg, size_t msg_len);
void cli_run_destroy(cli_run **r);

int cmd_simulate(cli *c);
int cmd_infer(cli *c);
int cmd_export(cli *c);
int cmd_info(cli *c);

#endif
