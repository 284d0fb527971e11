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



static pid_t start_bridge(const char *to, const char *how, const char *arg, const char *err)
{
    char *bin = tk_build_path("ppx-bridge");
    cr_assert(access(bin, X_OK) == 0, "ppx-bridge not built");
    char *argv[] = {bin, "--to", (char *)to, (char *)how, (char *)arg, NULL};
    pid_t pid = tk_spawn_err(argv, err);
    free(bin);
    return pid;
}

Test(bridge, restarts_a_dying_simulator_and_relays_to_a_running_one)
{
    size_t ref_len, got_len;
    char *ref_out = path_in("ref.ppxt");
    unsigned char *ref = tk_simulate_npy("examples/gaussian", 2, N_TRACES, SEED, ref_out, "mu", &ref_len);
    cr_assert_not_null(ref, "reference run failed");
    free(ref_out);
    char ipc[200], sim_ep[64];
    snprintf(ipc, sizeof ipc, "ipc://%s/bridge.sock", g_dir);
    tk_endpoint(sim_ep, sizeof sim_ep, "bridged");
    char *ppxd = tk_build_path("ppxd"), *out = path_in("br.ppxt"), *err = path_in("br.err");
    char *e1 = path_in("b1.err"), *e2 = path_in("b2.err");
    char *exit_bin = tk_build_path("testsims/sim_exit"), *gauss = tk_build_path("examples/gaussian"), *cmd = NULL;
    cr_assert(asprintf(&cmd, "%s {endpoint}", exit_bin) > 0);
    char *argv[] = {ppxd, "simulate", "--sim-listen", ipc, "-n", N_TRACES, "--seed", SEED, "-o", out, NULL};
    pid_t d = tk_spawn_err(argv, err);
    /* A legacy simulator bound on its own endpoint, reached through --sim. */
    char *gargv[] = {gauss, sim_ep, NULL};
    pid_t g = tk_spawn(gargv);
    pid_t b1 = start_bridge(ipc, "--sim-cmd", cmd, e1);
    pid_t b2 = start_bridge(ipc, "--sim", sim_ep, e2);
    int rc = tk_exit_code(d, 120000);
    cr_assert_neq(rc, -1, "ppxd did not finish in 120 s");
    tk_stop(b1, 2000);
    tk_stop(b2, 2000);
    tk_stop(g, 200);
    size_t el;
    char *log = (char *)tk_slurp(err, &el), *l1 = (char *)tk_slurp(e1, &el), *l2 = (char *)tk_slurp(e2, &el);
    cr_assert(log && l1 && l2);
    cr_assert_eq(rc, 0, "%s", log);
    cr_assert_eq(tk_stat_after(log, "traces done"), 6000);
    /* sim_exit dies after every 4 good traces: a restart and a Reset each time. */
    const char *p = strstr(l1, "replies relayed, ");
    cr_assert_not_null(p, "bridge 1 said:\n%s", l1);
    long restarts = strtol(p + strlen("replies relayed, "), NULL, 10);
    cr_assert_geq(restarts, 2, "%s", l1);
    cr_assert_not_null(strstr(log, "reset="), "the lost traces are counted as Reset:\n%s", log);
    cr_assert_not_null(strstr(l2, " 0 simulator restarts"), "%s", l2);
    unsigned char *got = tk_export_npy(out, "mu", &got_len);
    cr_assert_not_null(got, "ppxd export %s failed", out);
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
