/* engine.h — ppxd's PPX engine: one zmq_poll event loop driving many
 * simulator sessions in lockstep.
 *
 * Sessions.  Each simulator is one session with its own connection (the
 * REQ side of ZMTP, zmtp.h: a plain non-blocking socket in this loop), an
 * explicit state (below) and a deadline.  Simulators are either launched by
 * the engine (a command template with "{endpoint}", run on fresh ipc
 * endpoints, supervised and restarted with exponential back-off), connected
 * to at given endpoints (dropped on a fault: upstream simulators cannot
 * resynchronise mid-trace), or connected in: they connect their REP socket
 * to a listen endpoint (zmtp_listen.h) at any time, take a vacant session
 * and are driven exactly like the others; one that closes, breaks the
 * protocol or goes silent (no reply to heartbeat PINGs) leaves, losing only
 * the trace it was running, and its session is vacant again.  A session is
 * known by the model name of its HandshakeResult: with cfg.model set, only
 * simulators of that model are given traces (others stay connected, idle).
 *
 *   BACKOFF --(time)--> HANDSHAKE --(HandshakeResult)--> IDLE
 *   IDLE --(job gives a trace: Run)--> IN_TRACE
 *   IN_TRACE --(Sample)--> ANSWER --(policy batch, SampleResult)--> IN_TRACE
 *   IN_TRACE --(Observe/Tag: answered at once)--> IN_TRACE
 *   IN_TRACE --(RunResult)--> IDLE (trace completed)
 *   any --(timeout, exit or closed connection, garbage, protocol error)--> fault:
 *        trace discarded, launched: kill + BACKOFF; connected: DEAD;
 *        connected in: VACANT
 *   VACANT --(a simulator connects in; Handshake sent)--> HANDSHAKE
 *   IN_TRACE --(Reset in reply to Run)--> Run sent again
 *   IN_TRACE --(Reset mid-trace)--> trace discarded, IDLE
 *
 * Invalid distribution parameters poison the trace: the draw is answered
 * with NaN so the simulator stays in lockstep, and the trace is discarded
 * (reason counted) when it ends.
 *
 * Jobs decide which traces to run and consume the completed ones; policies
 * (policy.h) answer the draws.  Ownership: the engine owns sessions, sockets,
 * child processes and the in-flight traces; completed traces are lent to the
 * job's complete() callback for the duration of the call, during which the
 * job may take the contents with trace_swap() (leaving a trace of its own).
 */
#ifndef PPX_ENGINE_H
#define PPX_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include "policy.h"
#include "ppx.h"
#include "trace.h"

typedef enum discard_reason {
    DISCARD_TIMEOUT = 0,     /* no reply within the per-message timeout */
    DISCARD_EXITED,          /* simulator process died */
    DISCARD_GARBAGE,         /* undecodable message */
    DISCARD_PROTOCOL,        /* unexpected message type */
    DISCARD_INVALID_PARAMS,  /* NaN / negative scale / empty Categorical ... */
    DISCARD_POLICY,          /* the policy could not answer */
    DISCARD_RESET,           /* simulator replied Reset mid-trace */
    DISCARD_REJECTED,        /* the job rejected the finished trace (e.g. replay diverged) */
    DISCARD_REASON_COUNT
} discard_reason;

const char *discard_reason_name(discard_reason r);

typedef struct engine_stats {
    uint64_t traces_done;
    uint64_t duplicates;     /* finished traces the job no longer needed (backup copies) */
    uint64_t discarded[DISCARD_REASON_COUNT];
    uint64_t discarded_total;
    uint64_t restarts;       /* simulator processes restarted */
    uint64_t dropped;        /* connected simulators given up */
    uint64_t messages;       /* PPX messages sent + received */
    uint64_t polls;          /* zmq_poll calls of the loop */
    uint64_t polls_nowait;   /* of them with a zero timeout (spinning, if many) */
    uint64_t resets;         /* Reset replies to Run (Run re-sent) */
    uint64_t joined;         /* simulators that connected in and completed the handshake */
    uint64_t left;           /* connected-in simulators that went away (or were sent away) */
    uint64_t refused;        /* connections refused: every connected-in session taken */
    double elapsed;          /* seconds in engine_run */
    double cpu;              /* engine process CPU seconds in engine_run */
} engine_stats;

typedef struct observation {
    char *name;
    double *values;
    size_t n;
} observation;

typedef struct engine_config {
    const char *sim_cmd;          /* launch template containing {endpoint}, or NULL */
    size_t n_launch;              /* number of simulators to launch (-j) */
    const char *const *connect;   /* endpoints of running simulators */
    size_t n_connect;
    const char *const *listen;    /* endpoints simulators connect in to (zmtp_listen.h) */
    size_t n_listen;
    size_t listen_max;            /* sessions for connected-in simulators; default 256 */
    const char *model;            /* only simulators whose HandshakeResult names this model get traces; NULL: any */
    int heartbeat_ms;             /* PING a silent connected-in simulator in a trace this often (idle: TCP keepalive); default 10000, 0: never */
    int heartbeat_timeout_ms;     /* silence that ends a connected-in link; default 3 x heartbeat_ms */
    int msg_timeout_ms;           /* per message; default 10000 */
    int start_timeout_ms;         /* launch to HandshakeResult; default 30000 */
    int backoff_min_ms;           /* default 100 */
    int backoff_max_ms;           /* default 5000 */
    int max_failures;             /* consecutive failures before a simulator is given up; default 20 */
    const observation *obs;       /* values for Observe statements, by name */
    size_t n_obs;
    int progress;                 /* print progress to stderr once a second */
    uint64_t seed;                /* for Observe values drawn by the engine */
    ppx_limits limits;
    int wake_fd;                  /* > 0: a descriptor in the loop's poll set (an eventfd or the read end
                                     of a non-blocking pipe); when readable, the engine drains it and asks
                                     the job again (job_ops.next), so a long-running job (ppxd daemon) can
                                     sleep while idle and wake on new work.  0 or < 0: none */
} engine_config;

void engine_config_defaults(engine_config *c);
/* The engine's tuning options shared by every command that runs simulators:
 * name is "timeout-ms", "start-timeout-ms" or "max-failures" (without
 * dashes), arg its text.  Returns 1 when applied, 0 when name is not one of
 * them, -1 when arg is out of range (the complaint, e.g. "--timeout-ms wants
 * a positive number", in err). */
int engine_config_option(engine_config *c, const char *name, const char *arg, char *err, size_t err_len);

/* The simulator options, shared likewise, so that every such command
 * accepts and rejects the same things with the same words.  As read from the
 * command line: the strings are borrowed (argv); the --connect list is
 * malloc'd (engine_sim_options_free). */
typedef struct engine_sim_options {
    const char *sim_cmd;     /* --sim-cmd, or NULL */
    size_t n_launch;         /* -j; 0 when not given */
    const char **connect;    /* --connect, in the order given */
    size_t n_connect;
    const char **listen;     /* --sim-listen, in the order given (malloc'd list) */
    size_t n_listen;
    size_t listen_max;       /* --sim-max; 0 when not given */
    const char *model;       /* --sim-model, or NULL */
    int heartbeat_ms;        /* --heartbeat-ms; 0 when not given, -1 when given as 0 (off) */
    int heartbeat_timeout_ms; /* --heartbeat-timeout-ms; 0 when not given */
} engine_sim_options;
/* A zeroed struct means "nothing given". */

/* How to give simulators, for messages and help texts. */
#define ENGINE_SIM_OPTIONS_SHORT "--sim-cmd 'CMD {endpoint}' [-j N], --connect ENDPOINT or --sim-listen ENDPOINT"
#define ENGINE_SIM_OPTIONS_HELP                                                                          \
    "  --sim-cmd 'CMD {endpoint}'  launch simulators; {endpoint} is replaced by a fresh ipc endpoint\n" \
    "  -j N                        number of simulators to launch (default 1)\n"                        \
    "  --connect ENDPOINT          use a running simulator (repeatable), e.g. tcp://127.0.0.1:5555\n"   \
    "  --sim-listen ENDPOINT       let simulators connect in (repeatable), e.g. tcp://*:5556,\n"         \
    "                              ipc:///tmp/sims; they may join and leave at any time\n"              \
    "  --sim-model NAME            use only simulators whose handshake names model NAME\n"              \
    "  --sim-max N                 connected-in simulators at once (default 256)\n"                     \
    "  --heartbeat-ms T            heartbeat interval of connected-in simulators (default 10000, 0 off):\n" \
    "                              PINGs while they run a trace, TCP keepalive while idle\n" \
    "  --heartbeat-timeout-ms T    drop a connected-in simulator silent this long (default 3 heartbeats)\n"

/* getopt_long entries (struct option initialisers, 1 = required_argument)
 * for the simulator options beyond --sim-cmd, -j and --connect, all with
 * value v: a command hands every one of them to engine_sim_option. */
#define ENGINE_SIM_LONG_OPTIONS(v)                                                                   \
    {"sim-listen", 1, 0, v}, {"sim-model", 1, 0, v}, {"sim-max", 1, 0, v}, {"heartbeat-ms", 1, 0, v}, \
        {"heartbeat-timeout-ms", 1, 0, v}

/* One simulator option: name is "sim-cmd", "j", "connect", "sim-listen",
 * "sim-model", "sim-max", "heartbeat-ms" or "heartbeat-timeout-ms"
 * (without dashes), arg its text.  Returns 1 when applied, 0 when name is not one of
 * them, -1 when arg is unusable or memory ran out (the complaint, e.g. "-j
 * wants a number from 1 to 4096", in err). */
int engine_sim_option(engine_sim_options *o, const char *name, const char *arg, char *err, size_t err_len);
/* Once the command line is read: the simulators into c (sim_cmd, n_launch,
 * which defaults to 1 with --sim-cmd, and connect, which borrows o's list).
 * Returns 1 when simulators were given; 0 when none were, with "no
 * simulators: give ..." in err (a command with another source of data may
 * go on without them), c untouched. */
int engine_sim_options_apply(const engine_sim_options *o, engine_config *c, char *err, size_t err_len);
void engine_sim_options_free(engine_sim_options *o);

/* Daemon jobs run on the daemon's pool with its engine settings, so a job's
 * command line may set neither: whether it gave any simulator option, and
 * whether it moved the message or start timeout or the failure limit from
 * engine_config_defaults (0/1).  The messages refusing them follow. */
int engine_sim_options_given(const engine_sim_options *o);
int engine_timeouts_changed(const engine_config *c);
#define ENGINE_JOB_SIM_OPTIONS_REFUSED                                                                                 \
    "simulator options are not for jobs: the daemon's pool is used (ppxctl submit --sim-model MODEL chooses the "      \
    "simulators)"
#define ENGINE_JOB_TIMEOUTS_REFUSED                                                                                    \
    "--timeout-ms, --start-timeout-ms and --max-failures are the daemon's options, not a job's"

typedef struct job_ops {
    /* A session is free: return 1 with *index set to start trace `index`, 0 to leave it idle for now. */
    int (*next)(void *job, size_t slot, uint64_t *index);
    /* Trace `index` finished on `slot` (weights computed).  Return 0 to
     * accept it, 1 when it was not needed any more (a duplicate of a trace
     * another session finished first: counted apart), or -1 to reject it
     * (counted as DISCARD_REJECTED; the job re-issues the index itself if it
     * wants it). */
    int (*complete)(void *job, size_t slot, uint64_t index, trace *t);
    /* Trace `index` was discarded (the job should re-issue it). */
    void (*discard)(void *job, size_t slot, uint64_t index, discard_reason why);
    /* 1 when nothing more is needed.  Called once per turn of the loop. */
    int (*done)(void *job);
    /* Optional (NULL: the engine config's obs and seed): the Observe values
     * and the seed of Observe draws for the trace just started on `slot` by
     * next(), for a job that multiplexes several jobs of their own
     * observations (server/daemon.c). */
    void (*trace_env)(void *job, size_t slot, const observation **obs, size_t *n_obs, uint64_t *seed);
} job_ops;

typedef struct engine engine;

/* Start or connect the simulators.  NULL on failure (reason on stderr). */
engine *engine_new(const engine_config *cfg);
void engine_destroy(engine **e);
/* Number of sessions (= policy slots). */
size_t engine_slots(const engine *e);

/* Run until job->done() or no simulator is left.  Returns 0 when the job
 * finished, -1 otherwise (reason on stderr).  Stats accumulate over calls. */
int engine_run(engine *e, policy *p, const job_ops *ops, void *job);
const engine_stats *engine_get_stats(const engine *e);
/* Print the counters (one block) to f. */
void engine_print_stats(const engine *e, void *file);
/* Stop (SIGINT/SIGTERM): engine_run returns -1 at its next turn. */
void engine_request_stop(engine *e);
/* Between runs: replace the Observe values (borrowed until the next call or
 * engine_destroy), e.g. to condition each run on another observation
 * (ppxd diagnose of an IC model). */
void engine_set_observations(engine *e, const observation *obs, size_t n_obs);
/* Between runs: the once-a-second progress lines on or off. */
void engine_set_progress(engine *e, int on);

/* The model name of the simulator on slot (from its HandshakeResult), or
 * NULL when the slot has none ready (vacant, dead, restarting, handshaking). */
const char *engine_slot_model(const engine *e, size_t slot);

/* The pool by model name: simulators connected now (handshake done), of
 * them in a trace, and connected-in joins and departures since engine_new.
 * Writes up to max pools; returns how many there are. */
typedef struct engine_pool {
    char model[128];
    uint32_t connected, busy;
    uint64_t joined, left;
} engine_pool;
size_t engine_pools(const engine *e, engine_pool *out, size_t max);

#endif
