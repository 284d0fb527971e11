/* ppx-bridge (clients/ppx_bridge.c): bind-only simulators joined to a
 * ppxd --sim-listen endpoint through the bridge, real processes on
 * loopback.  One bridge starts tests/sims/sim_exit (which dies mid-trace
 * every 5th run) and must restart it each time, answering the lost trace
 * with Reset; another relays to a simulator that is already running
 * (--sim).  Results must be exactly those of the same job with launched
 * simulators (prior sampling depends only on seed and trace index).
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

#include "testkit.h"

#define N_TRACES "6000"
#define SEED "11"

static char g_dir[128];

static void setup(void) { cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "bridge"), 0); }
static void teardown(void) { tk_tmpdir_remove(g_dir); }
TestSuite(bridge, .init = setup, .fini = teardown);

static char *path_in(const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", g_dir, name) > 0);
    return p;
}

/* fork + exec with stderr to err_path (stdout to /dev/null). */
static pid_t spawn_err(char *const argv[], const char *err_path)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        int fd = err_path ? open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : null;
        dup2(null, 0);
        dup2(null, 1);
        if (!getenv("PPXD_TEST_VERBOSE")) dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* The mu column of a trace file as .npy bytes (ppxd export). */
static unsigned char *export_mu(const char *ppxt, size_t *len)
{
    char *ppxd = tk_build_path("ppxd"), *npy = NULL;
    cr_assert(asprintf(&npy, "%s.mu.npy", ppxt) > 0);
    char *argv[] = {ppxd, "export", (char *)ppxt, "--names", "mu", "-o", npy, NULL};
    cr_assert_eq(tk_run(argv, NULL, NULL, 60000), 0, "ppxd export %s failed", ppxt);
    unsigned char *b = tk_slurp(npy, len);
    cr_assert_not_null(b);
    free(ppxd);
    free(npy);
    return b;
}

/* The reference: the same job with two launched simulators. */
static unsigned char *reference_mu(size_t *len)
{
    char *ppxd = tk_build_path("ppxd"), *gauss = tk_build_path("examples/gaussian"), *cmd = NULL;
    char *out = path_in("ref.ppxt");
    cr_assert(asprintf(&cmd, "%s {endpoint}", gauss) > 0);
    char *argv[] = {ppxd, "simulate", "--sim-cmd", cmd, "-j", "2", "-n", N_TRACES, "--seed", SEED, "-o", out, "--quiet", NULL};
    cr_assert_eq(tk_run(argv, NULL, NULL, 120000), 0, "reference run failed");
    unsigned char *b = export_mu(out, len);
    free(ppxd);
    free(gauss);
    free(cmd);
    free(out);
    return b;
}

/* A counter from ppxd's stats block, e.g. "connected in      4 joined, 1 left". */
static long stat_after(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (!p) return -1;
    p += strlen(key);
    while (*p == ' ') p++;
    return strtol(p, NULL, 10);
}

static int wait_exit(pid_t pid, int timeout_ms)
{
    int st = tk_wait(pid, timeout_ms);
    if (st == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_fail("ppxd did not finish in %d ms", timeout_ms);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}


static pid_t start_bridge(const char *to, const char *how, const char *arg, const char *err)
{
    char *bin = tk_build_path("ppx-bridge");
    cr_assert(access(bin, X_OK) == 0, "ppx-bridge not built");
    char *argv[] = {bin, "--to", (char *)to, (char *)how, (char *)arg, NULL};
    pid_t pid = spawn_err(argv, err);
    free(bin);
    return pid;
}

Test(bridge, restarts_a_dying_simulator_and_relays_to_a_running_one)
{
    size_t ref_len, got_len;
    unsigned char *ref = reference_mu(&ref_len);
    char ipc[200], sim_ep[64];
    snprintf(ipc, sizeof ipc, "ipc://%s/bridge.sock", g_dir);
    tk_endpoint(sim_ep, sizeof sim_ep, "bridged");
    char *ppxd = tk_build_path("ppxd"), *out = path_in("br.ppxt"), *err = path_in("br.err");
    char *e1 = path_in("b1.err"), *e2 = path_in("b2.err");
    char *exit_bin = tk_build_path("testsims/sim_exit"), *gauss = tk_build_path("examples/gaussian"), *cmd = NULL;
    cr_assert(asprintf(&cmd, "%s {endpoint}", exit_bin) > 0);
    char *argv[] = {ppxd, "simulate", "--sim-listen", ipc, "-n", N_TRACES, "--seed", SEED, "-o", out, NULL};
    pid_t d = spawn_err(argv, err);
    /* A legacy simulator bound on its own endpoint, reached through --sim. */
    char *gargv[] = {gauss, sim_ep, NULL};
    pid_t g = tk_spawn(gargv);
    pid_t b1 = start_bridge(ipc, "--sim-cmd", cmd, e1);
    pid_t b2 = start_bridge(ipc, "--sim", sim_ep, e2);
    int rc = wait_exit(d, 120000);
    tk_stop(b1, 2000);
    tk_stop(b2, 2000);
    tk_stop(g, 200);
    size_t el;
    char *log = (char *)tk_slurp(err, &el), *l1 = (char *)tk_slurp(e1, &el), *l2 = (char *)tk_slurp(e2, &el);
    cr_assert(log && l1 && l2);
    cr_assert_eq(rc, 0, "%s", log);
    cr_assert_eq(stat_after(log, "traces done"), 6000);
    /* sim_exit dies after every 4 good traces: a restart and a Reset each time. */
    const char *p = strstr(l1, "replies relayed, ");
    cr_assert_not_null(p, "bridge 1 said:\n%s", l1);
    long restarts = strtol(p + strlen("replies relayed, "), NULL, 10);
    cr_assert_geq(restarts, 2, "%s", l1);
    cr_assert_not_null(strstr(log, "reset="), "the lost traces are counted as Reset:\n%s", log);
    cr_assert_not_null(strstr(l2, " 0 simulator restarts"), "%s", l2);
    unsigned char *got = export_mu(out, &got_len);
    cr_assert_eq(got_len, ref_len);
    cr_assert(memcmp(got, ref, ref_len) == 0, "bridged run differs from the launched run");
    free(got);
    free(ref);
    free(log);
    free(l1);
    free(l2);
    free(ppxd);
    free(out);
    free(err);
    free(e1);
    free(e2);
    free(exit_bin);
    free(gauss);
    free(cmd);
}

Test(bridge, usage_errors)
{
    char *bin = tk_build_path("ppx-bridge");
    char *a1[] = {bin, "--to", "ipc://@x", NULL};
    cr_assert_eq(tk_run(a1, NULL, NULL, 10000), 2);
    char *a2[] = {bin, "--to", "ipc://@x", "--sim-cmd", "sim", NULL};
    cr_assert_eq(tk_run(a2, NULL, NULL, 10000), 2);
    free(bin);
}
