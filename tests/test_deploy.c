/* test_deploy.c — the deployment files (docker/k8s/, docker/compose.yaml,
 * docker/ppxd.conf) through scripts/check-deploy.py: the shipped files pass,
 * and a copy with one reference broken (a Service selecting nothing, a
 * missing claim or secret key, a simulator aimed at the wrong port, a
 * published simulator port, ...) fails with the reason.  The Slurm example
 * must at least parse (bash -n).  No cluster or container engine needed:
 * make docker-test runs the containers for real. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testkit.h"

TestSuite(deploy, .timeout = 120);

static char g_dir[128];     /* a scratch copy of the tree's deployment files */
static char g_src[PATH_MAX]; /* the source tree */

/* The source tree: the nearest directory above the build directory that
 * holds scripts/check-deploy.py. */
static void find_source(void)
{
    char *b = tk_build_path(".");
    cr_assert_not_null(realpath(b, g_src));
    free(b);
    for (;;) {
        char p[PATH_MAX + 40];
        snprintf(p, sizeof p, "%s/scripts/check-deploy.py", g_src);
        if (access(p, R_OK) == 0) return;
        char *slash = strrchr(g_src, '/');
        cr_assert(slash && slash != g_src, "no scripts/check-deploy.py above the build directory");
        *slash = 0;
    }
}

static void setup(void)
{
    find_source();
    cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "deploy"), 0);
    char from[PATH_MAX + 16];
    snprintf(from, sizeof from, "%s/docker", g_src);
    char *argv[] = {"/bin/cp", "-r", from, g_dir, NULL};
    cr_assert_eq(tk_run(argv, NULL, NULL, 30000), 0, "cp -r %s %s", from, g_dir);
}

static void teardown(void)
{
    char *argv[] = {"/bin/rm", "-rf", g_dir, NULL};
    if (tk_run(argv, NULL, NULL, 30000) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

/* Run the checker on root; *out gets its stdout then stderr (caller frees). */
static int check(const char *root, char **out)
{
    char script[PATH_MAX + 40], o[200], e[200];
    snprintf(script, sizeof script, "%s/scripts/check-deploy.py", g_src);
    snprintf(o, sizeof o, "%s/check.out", g_dir);
    snprintf(e, sizeof e, "%s/check.err", g_dir);
    char *argv[] = {"/usr/bin/python3", script, (char *)root, NULL};
    int rc = tk_run(argv, o, e, 60000);
    size_t no, ne;
    char *so = (char *)tk_slurp(o, &no), *se = (char *)tk_slurp(e, &ne);
    cr_assert(so && se);
    *out = malloc(no + ne + 1);
    cr_assert_not_null(*out);
    memcpy(*out, so, no);
    memcpy(*out + no, se, ne + 1);
    free(so);
    free(se);
    return rc;
}

/* Replace the first `old` in the copy's docker/FILE with `new`. */
static void edit(const char *file, const char *old, const char *new)
{
    char path[300];
    snprintf(path, sizeof path, "%s/docker/%s", g_dir, file);
    size_t n;
    char *text = (char *)tk_slurp(path, &n);
    cr_assert_not_null(text, "%s", path);
    char *at = strstr(text, old);
    cr_assert_not_null(at, "%s has no '%s'", file, old);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fwrite(text, 1, (size_t)(at - text), f);
    fputs(new, f);
    fputs(at + strlen(old), f);
    cr_assert_eq(fclose(f), 0);
    free(text);
}

/* The copy, with the edits made, must fail naming `why`. */
static void expect_broken(const char *why)
{
    char *out;
    int rc = check(g_dir, &out);
    cr_expect_eq(rc, 1, "the checker passed a broken file:\n%s", out);
    cr_expect_not_null(strstr(out, why), "wanted '%s' in:\n%s", why, out);
    free(out);
}

Test(deploy, shipped_files_pass, .init = setup, .fini = teardown)
{
    char *out;
    int rc = check(g_src, &out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_not_null(strstr(out, "checks passed"), "%s", out);
    free(out);
    /* the unedited copy passes too: the mutations below are what breaks it */
    rc = check(g_dir, &out);
    cr_expect_eq(rc, 0, "%s", out);
    free(out);
}

Test(deploy, service_selecting_nothing, .init = setup, .fini = teardown)
{
    edit("k8s/services.yaml", "component: daemon", "component: deamon");
    expect_broken("selects 0 Deployments (none), wanted 1");
}

Test(deploy, service_target_port_unknown, .init = setup, .fini = teardown)
{
    edit("k8s/services.yaml", "targetPort: sims", "targetPort: sim");
    expect_broken("targetPort sim is no container port of ppxd");
}

Test(deploy, claim_missing, .init = setup, .fini = teardown)
{
    edit("k8s/daemon.yaml", "claimName: ppxd-data", "claimName: ppxd-dat");
    expect_broken("no PersistentVolumeClaim ppxd-dat");
}

Test(deploy, secret_key_missing, .init = setup, .fini = teardown)
{
    edit("k8s/kustomization.yaml", "      - keys/health.key\n", "");
    expect_broken("Secret ppxd-curve has no key health.key");
}

Test(deploy, secret_not_mounted_where_the_config_reads_it, .init = setup, .fini = teardown)
{
    edit("k8s/daemon.yaml", "path: ppxd_admins.pub", "path: admins.pub");
    expect_broken("/run/secrets/ppxd_admins.pub (read by ppxd.conf or the HEALTHCHECK) is not mounted");
}

Test(deploy, simulators_aimed_at_the_query_port, .init = setup, .fini = teardown)
{
    edit("k8s/sim.yaml", "tcp://ppxd-sims:5556", "tcp://ppxd-sims:5560");
    expect_broken("no Service ppxd-sims with port 5560");
}

Test(deploy, simulators_through_the_wrong_service, .init = setup, .fini = teardown)
{
    edit("k8s/sim.yaml", "tcp://ppxd-sims:5556", "tcp://ppxd:5560");
    expect_broken("leads to port 5560 of ppxd, not the daemon's --sim-listen port");
}

Test(deploy, config_port_not_exposed, .init = setup, .fini = teardown)
{
    edit("ppxd.conf", "sim-listen = tcp://*:5556", "sim-listen = tcp://*:5557");
    expect_broken("ppxd.conf listens on 5557, not a containerPort");
    expect_broken("PPX_DAEMON port 5556, ppxd.conf's --sim-listen is [5557]");
}

Test(deploy, autoscaler_target_missing, .init = setup, .fini = teardown)
{
    edit("k8s/hpa.yaml", "    name: ppxd-sim\n", "    name: ppxd-sims\n");
    expect_broken("is no Deployment here");
}

Test(deploy, network_policy_port_unknown, .init = setup, .fini = teardown)
{
    edit("k8s/networkpolicy.yaml", "- port: 5556", "- port: 5555");
    expect_broken("ingress port 5555 is not a port of the selected pods");
}

Test(deploy, compose_secret_missing, .init = setup, .fini = teardown)
{
    edit("compose.yaml", "      - ppxd_health.key\n", "");
    expect_broken("/run/secrets/ppxd_health.key (read by ppxd.conf or the HEALTHCHECK) is not a secret");
}

Test(deploy, compose_secret_undeclared, .init = setup, .fini = teardown)
{
    edit("compose.yaml", "  ppxd_admins.pub:\n    file:", "  ppxd_admin.pub:\n    file:");
    expect_broken("service ppxd: secret ppxd_admins.pub is not declared");
}

Test(deploy, compose_simulators_not_internal, .init = setup, .fini = teardown)
{
    edit("compose.yaml", "    internal: true", "    internal: false");
    expect_broken("network sims is not internal");
}

Test(deploy, compose_publishes_simulator_port, .init = setup, .fini = teardown)
{
    edit("compose.yaml", "\"${PPXD_PORT:-5560}:5560\"", "\"5556:5556\"");
    expect_broken("publishes the simulators' port 5556");
}

Test(deploy, compose_simulators_wrong_host, .init = setup, .fini = teardown)
{
    edit("compose.yaml", "PPX_DAEMON: tcp://ppxd:5556", "PPX_DAEMON: tcp://daemon:5556");
    expect_broken("PPX_DAEMON host daemon is not the daemon service ppxd");
}

Test(deploy, yaml_syntax_error, .init = setup, .fini = teardown)
{
    edit("k8s/hpa.yaml", "spec:\n", "spec: [\n");
    expect_broken("cannot read the files");
}

Test(deploy, slurm_example_parses, .init = setup, .fini = teardown)
{
    char path[PATH_MAX + 40];
    snprintf(path, sizeof path, "%s/docker/slurm/ppxd-sims.sbatch", g_src);
    char *argv[] = {"/bin/bash", "-n", path, NULL};
    cr_expect_eq(tk_run(argv, NULL, NULL, 10000), 0, "bash -n %s", path);
    /* and it refuses to start without the daemon's address */
    char *run[] = {"/usr/bin/env", "-u", "PPX_DAEMON", "/bin/bash", path, NULL};
    cr_expect_neq(tk_run(run, NULL, NULL, 10000), 0, "%s ran without PPX_DAEMON", path);
}
