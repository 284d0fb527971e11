/* cli.h — what ppxd's engine commands (simulate, infer, export, info) share:
 * the parsed command line and the command entry points, one file each
 * (infer.c: simulate and infer; traces.c: export and info), as git's
 * builtin/ does.  Strings in a cli are borrowed from argv; the arrays are
 * malloc'd and freed by main.c. */
#ifndef PPX_CLI_H
#define PPX_CLI_H

#include <stdint.h>
#include "engine.h"
#include "policy.h"
#include "trace_store.h"

/* ppxd infer --method. */
typedef enum infer_method {
    METHOD_IS = 0,   /* importance sampling with the prior as proposal */
    METHOD_LMH,      /* lightweight Metropolis-Hastings: sites redrawn from their priors */
    METHOD_RMH       /* random-walk Metropolis-Hastings: sites moved near their values */
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
    int64_t burn_in;
    trace_fsync_policy fsync;
    const char *names;
    const char *file;
} cli;

/* A usage error: the message on stderr; returns 2 (the exit code). */
int cli_die(const char *msg, const char *detail);

/* The engine being run, for the signal handler (main.c). */
extern engine *cli_running;

int cmd_simulate(cli *c);
int cmd_infer(cli *c);
int cmd_export(cli *c);
int cmd_info(cli *c);

#endif
