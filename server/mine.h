/* mine.h — `ppxd mine`: gold mining from any PPX simulator.
 *
 * For each row a trace is simulated at theta0 (y = 0) or at theta1 (y = 1),
 * every draw recorded; then the simulator is re-run ("replayed") with the
 * parameters of interest (named scalar Samples) answered by other values and
 * every other Sample and unvalued Observe answered with its recorded value
 * (matched by address; Observe by position and call site).  The replays give
 *   log r(x,z|theta0,theta1_k) = sum_i log p_i(z_i|theta0) - log p_i(z_i|theta1_k)
 * and the joint score t(x,z|theta0): by central finite differences of
 * replays at theta0 +/- eps_k e_k, or, when the simulator sends parameter
 * tangents with its draws (protocol/ppx.fbs Tangent), in closed form from the
 * trace at theta0 (src/gold/gold_score.h) without those 2 D replays.  The sums run over every Sample and Observe
 * entry except the theta Samples themselves.
 *
 * A row is dropped, and counted by reason (gold_data.h), when a replay
 * reaches another address sequence or other recorded values, a replayed
 * value leaves the support, a Uniform's bounds or a Binomial's count move
 * with theta (the score is undefined), an x entry changes with theta, or
 * something is not finite.  All tasks (originals and replays) go to every
 * simulator of the pool; a replay waits only for its own original.  Rows
 * are committed in index order and each task draws from RNG stream
 * (seed, task index), so the output depends only on the seed.
 */
#ifndef PPX_MINE_H
#define PPX_MINE_H

#include <stddef.h>
#include <stdint.h>
#include "engine.h"
#include "policy.h"
#include "gold/gold_data.h"

typedef enum mine_theta_mode {
    MINE_THETA_PRIOR = 0,  /* theta0 drawn by the simulator from its prior */
    MINE_THETA_FIXED,      /* theta0 = one given point */
    MINE_THETA_GRID,       /* theta0 runs over a grid (pairs of rows cycle through its points) */
    MINE_THETA_PAIRS       /* (theta0, theta1) rows of a given table, cycled */
} mine_theta_mode;

/* How the joint score is mined (mine_opts.score_method). */
typedef enum mine_score_method {
    MINE_SCORE_AUTO = 0,   /* from parameter tangents when a trace carries them for every draw, else FD */
    MINE_SCORE_FD,         /* central finite differences of replays at theta0 +/- eps e_k (2 D replays) */
    MINE_SCORE_ANALYTIC    /* from parameter tangents only: a row without them is dropped (no-tangent) */
} mine_score_method;

typedef struct mine_opts {
    engine_config ecfg;              /* simulators etc. (engine.h) */
    uint64_t n;                      /* rows to mine (before invalid ones are dropped) */
    const char *const *theta_names;  /* D scalar named Samples */
    size_t D;
    const char *const *x_names;      /* names or 'PREFIX*' patterns (matched on the first trace) */
    size_t n_x;
    mine_theta_mode mode;
    const double *theta0;            /* FIXED: [D] */
    const double *grid_lo, *grid_hi; /* GRID: per dimension */
    const size_t *grid_n;            /* GRID: points per dimension (>= 1) */
    const double *pairs;             /* PAIRS: [n_pairs, 2D] */
    size_t n_pairs;
    const double *theta1;            /* [K, D] reference points (not with PAIRS, which gives K = 1) */
    size_t K;
    int theta1_rows;                 /* 1: rows alternate y = 0, 1 (needs K = 1) */
    int score;                       /* 1: mine t(x,z|theta0) */
    mine_score_method score_method;  /* how (default AUTO) */
    double epsilon;                  /* FD step; 0: 1e-4 x the prior sd of each theta */
    uint64_t seed;
    int max_retries;                 /* per task, faults before the row is dropped (default 5 when 0) */
    int quiet;
} mine_opts;

typedef struct mine_stats {
    uint64_t runs;       /* simulator runs completed (originals + replays) */
    double seconds;
} mine_stats;

/* Mine into out (initialised here; gold_data_free it).  0, or -1 with the
 * reason on stderr.  Stopped early (engine_request_stop, or every simulator
 * given up) after some rows were finished: 0 with those rows. */
int mine_run(const mine_opts *o, gold_data *out, mine_stats *st);

/* The mining core as a job of an engine of n_slots sessions (policy slots):
 * its policy and job_ops, progress, then the rows.  mine_run runs one on an
 * engine of its own; ppxd daemon runs one on its shared pool (each task
 * draws from RNG stream (seed, task index) and rows are committed in index
 * order, so the rows are those of mine_run for the same seed).  The engine
 * must give Observe draws the seed o->seed (engine_config.seed, or
 * job_ops.trace_env).  o and what it points to must outlive the task.
 * mine_task_new: NULL with the reason on stderr. */
typedef struct mine_task mine_task;
mine_task *mine_task_new(const mine_opts *o, size_t n_slots);
policy *mine_task_policy(mine_task *t);
const job_ops *mine_task_ops(mine_task *t, void **job);
/* Rows finished (committed, valid or dropped) of rows asked for, simulator runs, rows dropped. */
void mine_task_progress(const mine_task *t, uint64_t *rows_done, uint64_t *rows_total, uint64_t *runs,
                        uint64_t *dropped);
int mine_task_failed(const mine_task *t);
/* After the engine: the rows into out (initialised here; gold_data_free
 * it).  stopped: the run ended early (stop, no simulator left), so keep the
 * rows finished if there are some.  0, or -1 (reason on stderr). */
int mine_task_finish(mine_task *t, int stopped, gold_data *out);
void mine_task_destroy(mine_task **t);

/* A `mine` command line parsed for ppxd daemon (argv[0] = "mine"): the
 * CLI's parser and messages (cli_complain, so captured), with simulator,
 * engine options, -o, --npy and --pairs refused.  NULL after a complaint. */
typedef struct mine_cmd mine_cmd;
mine_cmd *mine_cmd_parse(int argc, char **argv);
const mine_opts *mine_cmd_opts(const mine_cmd *c);
void mine_cmd_destroy(mine_cmd **c);

/* `ppxd mine ...` (argv[0] = "mine"); exit code 0 / 1 / 2 (usage). */
int ppxd_mine_main(int argc, char **argv);
/* `ppxd info F.ppxg` and `ppxd export F.ppxg -o PREFIX` (argv[0] = "info" or "export"). */
int ppxd_gold_file_main(int argc, char **argv);

#endif
