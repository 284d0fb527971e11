/* Simulators that connect in (ppxd --sim-listen): real processes on
 * loopback.  ppxd runs as a child process; simulators (libppx with
 * --connect-to, the Python package with connect=) connect their REP
 * sockets to it over tcp and ipc, some joining late, one dying mid-trace on
 * a schedule (tests/sims/sim_exit), one killed, one stopped (SIGSTOP: its
 * link stays open but silent, so only heartbeats can find it).  Prior
 * sampling results depend only on (seed, trace index), so every run must
 * give exactly the bytes of the same job driven by launched simulators.
 *
 * No Criterion .timeout (see test_faults.c); waits are bounded explicitly. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "testkit.h"

#define N_TRACES "6000"
#define SEED "11"

static char g_dir[128];

static void setup(void) { cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "listen"), 0); }
static void teardown(void) { tk_tmpdir_remove(g_dir); }
TestSuite(sim_listen, .init = setup, .fini = teardown);

static char *path_in(const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", g_dir, name) > 0);
    return p;
}

/* Exit code of ppxd within timeout_ms (a hang fails the test). */
static int must_exit(pid_t pid, int timeout_ms)
{
    int rc = tk_exit_code(pid, timeout_ms);
    cr_assert_neq(rc, -1, "ppxd did not finish in %d ms", timeout_ms);
    return rc;
}

static unsigned char *must_export_mu(const char *ppxt, size_t *len)
{
    unsigned char *b = tk_export_npy(ppxt, "mu", len);
    cr_assert_not_null(b, "ppxd export %s failed", ppxt);
    return b;
}

/* The reference: the same job with two launched simulators. */
static unsigned char *must_reference_mu(size_t *len)
{
    char *out = path_in("ref.ppxt");
    unsigned char *b = tk_simulate_npy("examples/gaussian", 2, N_TRACES, SEED, out, "mu", len);
    cr_assert_not_null(b, "reference run failed");
    free(out);
    return b;
}


static pid_t start_sim(const char *rel, const char *endpoint)
{
    char *bin = tk_build_path(rel);
    cr_assert(access(bin, X_OK) == 0, "%s not built", rel);
    char *argv[] = {bin, "--connect-to", (char *)endpoint, NULL};
    pid_t pid = tk_spawn(argv);
    free(bin);
    cr_assert(pid > 0);
    return pid;
}

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

static long joined_left(const char *text, long *left)
{
    const char *p = strstr(text, "connected in ");
    cr_assert_not_null(p, "no connected-in stats in:\n%s", text);
    long j = -1;
    cr_assert_eq(sscanf(p, "connected in %ld joined, %ld left", &j, left), 2);
    return j;
}

/* N simulators over tcp and ipc, joining late, one dying mid-trace on its
 * schedule, one killed: every trace whole, the bytes of the launched run. */
Test(sim_listen, joins_and_leaves_give_the_launched_result)
{
    size_t ref_len, got_len;
    unsigned char *ref = must_reference_mu(&ref_len);

    int port = tk_free_tcp_port();
    char tcp[64], ipc[200];
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", port);
    snprintf(ipc, sizeof ipc, "ipc://%s/sims.sock", g_dir);
    char *ppxd = tk_build_path("ppxd"), *out = path_in("in.ppxt"), *err = path_in("in.err");
    char *argv[] = {ppxd, "simulate", "--sim-listen", tcp, "--sim-listen", ipc, "-n", N_TRACES, "--seed", SEED,
                    "-o", out, "--heartbeat-ms", "300", NULL};
    pid_t d = tk_spawn_err(argv, err);
    sleep_ms(300);
    /* Connecting before ppxd listens is fine too: libzmq retries. */
    pid_t a = start_sim("examples/gaussian", tcp);
    sleep_ms(400);
    pid_t b = start_sim("examples/gaussian", ipc);
    pid_t x = start_sim("testsims/sim_exit", tcp); /* dies mid-trace after 4 good traces */
    pid_t k = start_sim("examples/gaussian", ipc);
    sleep_ms(500);
    kill(k, SIGKILL);
    waitpid(k, NULL, 0);
    pid_t c = start_sim("examples/gaussian", tcp); /* a late joiner */
    int rc = must_exit(d, 120000);
    tk_stop(a, 200);
    tk_stop(b, 200);
    tk_stop(c, 200);
    tk_stop(x, 200);
    size_t el;
    char *log = (char *)tk_slurp(err, &el);
    cr_assert_not_null(log);
    cr_assert_eq(rc, 0, "ppxd simulate --sim-listen failed:\n%s", log);
    long left = -1, joined = joined_left(log, &left);
    cr_assert_geq(joined, 5, "joined %ld:\n%s", joined, log);
    cr_assert_geq(left, 2, "left %ld (sim_exit and the killed one):\n%s", left, log);
    cr_assert_geq(tk_stat_after(log, "traces discarded"), 1, "the dying simulator's trace is discarded:\n%s", log);
    cr_assert_eq(tk_stat_after(log, "traces done"), 6000);
    unsigned char *got = must_export_mu(out, &got_len);
    cr_assert_eq(got_len, ref_len);
    cr_assert(memcmp(got, ref, ref_len) == 0, "connected-in run differs from the launched run");
    free(got);
    free(ref);
    free(log);
    free(ppxd);
    free(out);
    free(err);
}

/* A simulator stopped mid-run (SIGSTOP: its connection stays open, nothing
 * answers) is found by heartbeats well before the 60 s message timeout. */
Test(sim_listen, heartbeat_finds_a_silent_simulator)
{
    char ipc[200];
    snprintf(ipc, sizeof ipc, "ipc://%s/hb.sock", g_dir);
    char *ppxd = tk_build_path("ppxd"), *out = path_in("hb.ppxt"), *err = path_in("hb.err");
    /* Long enough (several seconds) for the silence to outlast the 0.4 s timeout. */
    char *argv[] = {ppxd, "simulate", "--sim-listen", ipc, "-n", "30000", "--seed", SEED, "-o", out,
                    "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "400", "--timeout-ms", "60000", NULL};
    pid_t d = tk_spawn_err(argv, err);
    sleep_ms(200);
    pid_t a = start_sim("examples/gaussian", ipc);
    pid_t s = start_sim("examples/gaussian", ipc);
    sleep_ms(400);
    kill(s, SIGSTOP);
    double t0 = tk_now();
    int rc = must_exit(d, 120000);
    double took = tk_now() - t0;
    kill(s, SIGKILL);
    waitpid(s, NULL, 0);
    tk_stop(a, 200);
    size_t el;
    char *log = (char *)tk_slurp(err, &el);
    cr_assert_eq(rc, 0, "%s", log);
    cr_assert_not_null(strstr(log, "no reply to heartbeats"), "the stopped simulator was not found:\n%s", log);
    cr_assert_lt(took, 60.0);
    long left = -1;
    joined_left(log, &left);
    cr_assert_geq(left, 1);
    cr_assert_eq(tk_stat_after(log, "traces done"), 30000);
    free(log);
    free(ppxd);
    free(out);
    free(err);
}

/* --sim-model: a simulator of another model stays connected but gets no
 * trace; the Python package connects in too (connect=). */
Test(sim_listen, model_filter_and_python)
{
    size_t ref_len, got_len;
    unsigned char *ref = must_reference_mu(&ref_len);
    char ipc[200];
    snprintf(ipc, sizeof ipc, "ipc://%s/model.sock", g_dir);
    char *ppxd = tk_build_path("ppxd"), *out = path_in("model.ppxt"), *err = path_in("model.err");
    char *argv[] = {ppxd, "simulate", "--sim-listen", ipc, "--sim-model", "Gaussian with unknown mean", "-n",
                    N_TRACES, "--seed", SEED, "-o", out, NULL};
    pid_t d = tk_spawn_err(argv, err);
    pid_t other = start_sim("examples/branching", ipc);
    /* The Python example, from the source tree next to the build; the C
     * one starts once it has joined, so that it joins whatever the speed of
     * Python's start. */
    char *py = tk_build_path("../clients/python/examples/gaussian.py");
    pid_t p = -1;
    if (access(py, R_OK) == 0) {
        char *pyargv[] = {"/usr/bin/python3", py, "--connect-to", ipc, NULL};
        p = tk_spawn(pyargv);
        double t0 = tk_now();
        for (;;) {
            size_t n;
            char *l = (char *)tk_slurp(err, &n);
            int k = 0;
            for (char *q = l; q && (q = strstr(q, "joined")); q += 6) k++;
            free(l);
            if (k >= 2) break;
            cr_assert_lt(tk_now() - t0, 60.0, "the Python simulator did not join");
            sleep_ms(20);
        }
    }
    pid_t a = start_sim("examples/gaussian", ipc);
    int rc = must_exit(d, 120000);
    tk_stop(other, 200);
    tk_stop(a, 200);
    if (p > 0) tk_stop(p, 500);
    size_t el;
    char *log = (char *)tk_slurp(err, &el);
    cr_assert_eq(rc, 0, "%s", log);
    cr_assert_not_null(strstr(log, "given no traces"), "%s", log);
    long left = -1;
    cr_assert_geq(joined_left(log, &left), p > 0 ? 3 : 2, "%s", log);
    unsigned char *got = must_export_mu(out, &got_len);
    cr_assert_eq(got_len, ref_len);
    cr_assert(memcmp(got, ref, ref_len) == 0);
    free(py);
    free(got);
    free(ref);
    free(log);
    free(ppxd);
    free(out);
    free(err);
}

/* Usage and bind errors are reported, not hung on. */
Test(sim_listen, bad_endpoints)
{
    char *ppxd = tk_build_path("ppxd"), *out = path_in("bad.ppxt");
    char *a1[] = {ppxd, "simulate", "--sim-listen", "udp://x", "-n", "10", "-o", out, NULL};
    cr_assert_eq(tk_run(a1, NULL, NULL, 20000), 2);
    char *a2[] = {ppxd, "simulate", "--sim-listen", "tcp://*:5556", "--heartbeat-ms", "x", "-n", "10", "-o", out, NULL};
    cr_assert_eq(tk_run(a2, NULL, NULL, 20000), 2);
    /* A port already taken: exit 1 with the reason. */
    int port = tk_free_tcp_port();
    char tcp[64];
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", port);
    char *a3[] = {ppxd, "simulate", "--sim-listen", tcp, "-n", "10", "-o", out, NULL};
    pid_t d = tk_spawn_err(a3, NULL);
    sleep_ms(300);
    char *err = path_in("bind.err"), *out2 = path_in("bad2.ppxt");
    a3[7] = out2;
    int rc = tk_run(a3, NULL, err, 20000);
    free(out2);
    kill(d, SIGKILL);
    waitpid(d, NULL, 0);
    size_t el;
    char *log = (char *)tk_slurp(err, &el);
    cr_assert_eq(rc, 1, "%s", log);
    cr_assert_not_null(strstr(log, "cannot bind"), "%s", log);
    free(log);
    free(err);
    free(ppxd);
    free(out);
}

/* The shared simulator options: the same checks for every command. */
Test(sim_listen, options)
{
    engine_sim_options o;
    memset(&o, 0, sizeof o);
    char err[160];
    cr_assert_eq(engine_sim_option(&o, "sim-listen", "tcp://*:0", err, sizeof err), 1);
    cr_assert_eq(engine_sim_option(&o, "sim-listen", "ipc://@fleet", err, sizeof err), 1);
    cr_assert_eq(engine_sim_option(&o, "sim-listen", "tcp://host", err, sizeof err), -1);
    cr_assert_not_null(strstr(err, "--sim-listen"), "%s", err);
    cr_assert_eq(engine_sim_option(&o, "sim-max", "0", err, sizeof err), -1);
    cr_assert_eq(engine_sim_option(&o, "sim-max", "1000", err, sizeof err), 1);
    cr_assert_eq(engine_sim_option(&o, "heartbeat-ms", "0", err, sizeof err), 1);
    cr_assert_eq(engine_sim_option(&o, "heartbeat-timeout-ms", "0", err, sizeof err), -1);
    cr_assert_eq(engine_sim_option(&o, "heartbeat-timeout-ms", "2500", err, sizeof err), 1);
    cr_assert_eq(engine_sim_option(&o, "sim-model", "", err, sizeof err), -1);
    cr_assert_eq(engine_sim_option(&o, "sim-model", "galton", err, sizeof err), 1);
    engine_config c;
    engine_config_defaults(&c);
    cr_assert_eq(c.heartbeat_ms, 10000);
    cr_assert_eq(engine_sim_options_apply(&o, &c, err, sizeof err), 1, "listeners alone are simulators");
    cr_assert_eq(c.n_listen, 2);
    cr_assert_eq(c.listen_max, 1000);
    cr_assert_eq(c.heartbeat_ms, 0, "--heartbeat-ms 0 turns heartbeats off");
    cr_assert_eq(c.heartbeat_timeout_ms, 2500);
    cr_assert_str_eq(c.model, "galton");
    cr_assert_eq(c.n_launch, 0);
    engine_sim_options_free(&o);
    cr_assert_null(o.listen);

    /* infer and train take them too, and refuse bad ones alike (exit 2). */
    char *ppxd = tk_build_path("ppxd");
    char *a1[] = {ppxd, "infer", "--sim-listen", "udp://x", "-n", "10", NULL};
    cr_assert_eq(tk_run(a1, NULL, NULL, 20000), 2);
    char *a2[] = {ppxd, "train", "npe", "--sim-listen", "udp://x", "-n", "10", "--theta", "mu", "--x", "obs0",
                  "-o", "/nonexistent/m.ppxm", NULL};
    cr_assert_eq(tk_run(a2, NULL, NULL, 20000), 2);
    free(ppxd);
}
