/* testkit.h — helpers shared by the integration tests and benchmarks:
 * starting and stopping child processes, unique endpoints, and a minimal
 * PPX engine (a REQ socket with a receive timeout) to drive simulators. */
#ifndef PPX_TESTKIT_H
#define PPX_TESTKIT_H

#include <stddef.h>
#include <sys/types.h>
#include "ppx.h"

/* Absolute path of a built artefact: $PPXD_BUILD/<rel> (PPXD_BUILD is set by
 * the Makefile; defaults to "build").  Returns a static-free malloc'd string. */
char *tk_build_path(const char *rel);
/* A unique abstract-namespace ipc endpoint "ipc://@ppxd-test-<pid>-<tag>-<n>". */
void tk_endpoint(char *buf, size_t len, const char *tag);
/* A free tcp port on 127.0.0.1 (bind to port 0 and read it back). */
int tk_free_tcp_port(void);

/* A fresh directory /tmp/ppxd-test-<tag>-XXXXXX, its path in buf.  0 or -1. */
int tk_tmpdir(char *buf, size_t len, const char *tag);
/* Remove a directory made by tk_tmpdir with the plain files in it. */
void tk_tmpdir_remove(const char *path);
/* A whole file in a malloc'd, NUL-terminated buffer (caller frees); *size
 * gets its length.  NULL when it cannot be read. */
unsigned char *tk_slurp(const char *path, size_t *size);

/* In a forked child before exec: SIGKILL when the test process exits (a
 * failed assertion ends it before its stop calls), so that no daemon or
 * simulator outlives its test. */
void tk_child_dies_with_parent(void);
/* fork + execv(argv[0], argv); stdout/stderr to /dev/null unless verbose
 * (env PPXD_TEST_VERBOSE).  Returns the pid or -1. */
pid_t tk_spawn(char *const argv[]);
/* SIGTERM (then SIGKILL after grace_ms) and reap.  Returns the wait status. */
int tk_stop(pid_t pid, int grace_ms);
/* Wait up to timeout_ms for the child to exit; returns the wait status or -1 on timeout. */
int tk_wait(pid_t pid, int timeout_ms);

/* Run argv to completion with stdout/stderr to files (NULL: /dev/null),
 * waiting up to timeout_ms.  Returns the exit code (128 + signal when
 * killed), or -1 on timeout (the child is then killed) or when it could not
 * be started. */
int tk_run(char *const argv[], const char *out_path, const char *err_path, int timeout_ms);

/* fork + execv with stdin/stdout on /dev/null and stderr to err_path
 * (NULL: /dev/null; kept on the terminal with PPXD_TEST_VERBOSE).  The pid
 * or -1. */
pid_t tk_spawn_err(char *const argv[], const char *err_path);
/* Wait up to timeout_ms; on timeout SIGKILL and reap, and return -1.  Else
 * the exit code (128 + signal when killed). */
int tk_exit_code(pid_t pid, int timeout_ms);
/* The number after key in ppxd's stats text (e.g. "traces done"), or -1. */
long tk_stat_after(const char *text, const char *key);
/* `ppxd export PPXT --names NAMES -o PPXT.<NAMES>.npy`, and that file's
 * bytes (*len), or NULL when ppxd failed. */
unsigned char *tk_export_npy(const char *ppxt, const char *names, size_t *len);
/* `ppxd simulate --sim-cmd '<build>/SIM_REL {endpoint}' -j J -n N --seed SEED
 * -o OUT --quiet`, then tk_export_npy(OUT, names): the reference run that
 * tests of other ways to drive the same simulators compare with.  NULL on
 * failure. */
unsigned char *tk_simulate_npy(const char *sim_rel, int j, const char *n, const char *seed, const char *out,
                               const char *names, size_t *len);

/* The value of a "FIELD       value" line (ppxctl job status's layout: the
 * field padded to 12 columns) in text, malloc'd; "" when absent. */
char *tk_padded_field(const char *text, const char *field);

/* A minimal engine: one REQ socket connected to a simulator. */
typedef struct tk_engine {
    void *ctx;
    void *sock;
    ppx_encoder *enc;
    ppx_msg msg;        /* last received message */
    void *frame_;       /* zmq_msg_t of the last received message */
} tk_engine;

/* Connect with the given receive timeout (ms).  0 or -1. */
int tk_engine_open(tk_engine *e, const char *endpoint, int timeout_ms);
void tk_engine_close(tk_engine *e);
/* Send m, then receive and decode the reply into e->msg.  0, or -1 on
 * timeout / socket error / undecodable reply. */
int tk_engine_call(tk_engine *e, const ppx_msg *m);
/* Convenience: send a message of a field-less type. */
int tk_engine_call_type(tk_engine *e, ppx_msg_type t);
/* Send a SampleResult with n values. */
int tk_engine_reply_values(tk_engine *e, const double *x, size_t n);
/* Send raw bytes and receive the reply (decoded into e->msg). */
int tk_engine_call_raw(tk_engine *e, const void *bytes, size_t len);

double tk_now(void); /* monotonic seconds */

/* Raw ZeroMQ REQ/REP ping-pong between two threads (separate contexts, as
 * between processes' libraries): req_bytes out, rep_bytes back, `count`
 * round trips per repeat.  Returns the best seconds per round trip. */
double tk_raw_pingpong(const char *endpoint, size_t req_bytes, size_t rep_bytes, int count, int repeats);

/* One raw ping-pong measurement between processes (tk_raw_pingpong_procs). */
typedef struct tk_pingpong {
    double wall;  /* seconds per round trip, mean over the pairs */
    double cpu;   /* CPU seconds of the REQ process (its thread and libzmq's
                     I/O thread) per message sent or received, mean over pairs */
} tk_pingpong;
/* `pairs` raw ZeroMQ REQ/REP ping-pongs at once over ipc (endpoints derived
 * from tag), each side in a process of its own, as an engine and its
 * simulators are: the baseline for an engine driving `pairs` simulators on
 * the same cores.  Each pair makes `count` round trips of req_bytes out and
 * rep_bytes back, timed from a common start after a warm-up.  Fork-based:
 * call it from a process without ZeroMQ contexts or other threads.
 * 0, or -1 when a side failed or a reply took over 10 s. */
int tk_raw_pingpong_procs(const char *tag, int pairs, size_t req_bytes, size_t rep_bytes, int count, tk_pingpong *out);

#endif
