/* ppxd daemon's diagnose jobs: real processes on ipc.  A files-mode job
 * (--data from DIR/datasets) writes the same arrays and report as `ppxd
 * diagnose` for the same seed and inputs (the report differs only in its
 * timings), shows its rounds as progress and its outputs are fetched; a
 * live job's test pairs come from the daemon's pool (examples/gaussian
 * connecting in) and equal the CLI's with launched simulators, and a files
 * job on that job's outputs (JOB/OUTPUT) ranks alike; so do a live job's
 * predictive check and an IC model's importance sampling, which simulate
 * on the pool during the diagnosis (sub-jobs of the daemon's loop), and
 * cancel there; requests naming models or files that are missing or
 * outside the data directory, or options a job cannot use, are refused
 * with their reason at submit time and the daemon keeps serving; a running
 * diagnosis cancels.
 *
 * No Criterion .timeout (see test_faults.c); waits are bounded explicitly. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "export.h"
#include "rng.h"
#include "testkit.h"

static char g_dir[128];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static void setup(void) { cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "daemon-diag"), 0); }
static void teardown(void) { nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }
TestSuite(daemon_diagnose, .init = setup, .fini = teardown);

static char *path_in(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path_in(const char *fmt, ...)
{
    char rel[512], *p = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    cr_assert(asprintf(&p, "%s/%s", g_dir, rel) > 0);
    return p;
}

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

static char *slurp_text(const char *path)
{
    size_t n;
    char *s = (char *)tk_slurp(path, &n);
    return s ? s : strdup("");
}

typedef struct daemon_proc {
    pid_t pid;
    char ep[256], sims[256];
    char *log;
    pid_t sim[4];
    int n_sim;
} daemon_proc;

/* ppxd daemon on DIR/data with ipc endpoints. */
static void start_daemon(daemon_proc *d)
{
    snprintf(d->ep, sizeof d->ep, "ipc://%s/q.sock", g_dir);
    snprintf(d->sims, sizeof d->sims, "ipc://%s/sims.sock", g_dir);
    char *ppxd = tk_build_path("ppxd"), *data = path_in("data");
    d->log = path_in("daemon.log");
    char *argv[] = {ppxd, "daemon", "--data-dir", data, "--serve", d->ep, "--sim-listen", d->sims, NULL};
    d->pid = tk_spawn_err(argv, d->log);
    cr_assert(d->pid > 0);
    free(ppxd);
    free(data);
}

static void start_sims(daemon_proc *d, int n)
{
    char *bin = tk_build_path("examples/gaussian");
    cr_assert(access(bin, X_OK) == 0, "examples/gaussian not built");
    for (int i = 0; i < n; i++) {
        char *argv[] = {bin, "--connect-to", d->sims, NULL};
        d->sim[d->n_sim++] = tk_spawn(argv);
    }
    free(bin);
}

static void stop_daemon(daemon_proc *d)
{
    int st = d->pid > 0 ? tk_stop(d->pid, 8000) : 0;
    for (int i = 0; i < d->n_sim; i++) tk_stop(d->sim[i], 300);
    d->n_sim = 0;
    char *log = slurp_text(d->log);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the daemon did not stop cleanly (status %d):\n%s", st, log);
    free(log);
    free(d->log);
    d->log = NULL;
    d->pid = 0;
}

/* argv (NULL-terminated, argv[0] a build path) with stdout and stderr
 * captured; the exit code. */
static int run_argv(char **argv, char **out, char **err)
{
    char *o = path_in("run.out"), *e = path_in("run.err");
    int rc = tk_run(argv, o, e, 120000);
    char *so = slurp_text(o), *se = slurp_text(e);
    if (out) *out = so;
    else free(so);
    if (err) *err = se;
    else free(se);
    free(o);
    free(e);
    return rc;
}

/* ppxctl --endpoint EP ARGS... (NULL-terminated). */
static int ctl(const daemon_proc *d, char **out, char **err, ...)
{
    char *argv[48];
    int n = 0;
    argv[n++] = tk_build_path("ppxctl");
    argv[n++] = "--endpoint";
    argv[n++] = (char *)d->ep;
    va_list ap;
    va_start(ap, err);
    char *a;
    while ((a = va_arg(ap, char *)) && n < 47) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    int rc = run_argv(argv, out, err);
    free(argv[0]);
    return rc;
}

/* ppxd ARGS... */
static int run_ppxd(char **err, ...)
{
    char *argv[48];
    int n = 0;
    argv[n++] = tk_build_path("ppxd");
    va_list ap;
    va_start(ap, err);
    char *a;
    while ((a = va_arg(ap, char *)) && n < 47) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    int rc = run_argv(argv, NULL, err);
    free(argv[0]);
    return rc;
}

/* ppxctl submit [--name NAME] -- WORDS...: the exit code; the job id
 * (stdout's first line) or ppxctl's complaint (stderr) into *out. */
static int try_submit(const daemon_proc *d, const char *name, char **out, va_list ap)
{
    char *argv[48];
    int n = 0;
    argv[n++] = tk_build_path("ppxctl");
    argv[n++] = "--endpoint";
    argv[n++] = (char *)d->ep;
    argv[n++] = "submit";
    if (name) {
        argv[n++] = "--name";
        argv[n++] = (char *)name;
    }
    argv[n++] = "--";
    char *a;
    while ((a = va_arg(ap, char *)) && n < 47) argv[n++] = a;
    argv[n] = NULL;
    char *so, *se;
    int rc = run_argv(argv, &so, &se);
    free(argv[0]);
    so[strcspn(so, "\n")] = 0;
    if (rc == 0) {
        *out = so;
        free(se);
    } else {
        *out = se;
        free(so);
    }
    return rc;
}

static char *submit(const daemon_proc *d, const char *name, ...)
{
    va_list ap;
    va_start(ap, name);
    char *out;
    int rc = try_submit(d, name, &out, ap);
    va_end(ap);
    cr_assert_eq(rc, 0, "ppxctl submit failed (%d): %s", rc, out);
    cr_assert(out[0] == 'j', "submit printed '%s'", out);
    return out;
}

/* A submit that must be refused: its complaint must contain want. */
static void refused(const daemon_proc *d, const char *want, ...)
{
    va_list ap;
    va_start(ap, want);
    char *out;
    int rc = try_submit(d, NULL, &out, ap);
    va_end(ap);
    cr_expect_neq(rc, 0, "accepted (%s), expected a refusal with '%s'", out, want);
    cr_expect(strstr(out, "BAD_REQUEST") && strstr(out, want), "refusal '%s' lacks '%s'", out, want);
    free(out);
}

/* ppxctl job wait: its exit code (0 DONE, 1 FAILED/CANCELLED). */
static int wait_job(const daemon_proc *d, const char *id)
{
    return ctl(d, NULL, NULL, "job", "wait", id, "--timeout", "100", NULL);
}

static char *job_field(const daemon_proc *d, const char *id, const char *field)
{
    char *out;
    cr_assert_eq(ctl(d, &out, NULL, "job", "status", id, NULL), 0, "job status %s failed", id);
    char *v = tk_padded_field(out, field);
    cr_assert_not_null(v);
    free(out);
    return v;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = tk_slurp(a, &na), *y = tk_slurp(b, &nb);
    cr_assert(x && y, "cannot read %s or %s", a, b);
    cr_assert_eq(na, nb, "%s has %zu bytes, %s %zu", a, na, b, nb);
    cr_assert(memcmp(x, y, na) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* A report.json without its "test" line (wall and CPU seconds of the run). */
static char *report_sans_timing(const char *path)
{
    char *t = slurp_text(path);
    char *k = strstr(t, "\n  \"test\": {");
    cr_assert_not_null(k, "%s has no test line:\n%s", path, t);
    char *e = strchr(k + 1, '\n');
    cr_assert_not_null(e);
    memmove(k, e, strlen(e) + 1);
    return t;
}

/* theta ~ N(0, 1), x = theta + N(0, 1): rows into DIR/<tf> and DIR/<xf>. */
static void write_pairs(const char *tf, const char *xf, size_t n, uint64_t seed)
{
    double *t = malloc(n * sizeof *t), *x = malloc(n * sizeof *x);
    cr_assert(t && x);
    rng r;
    rng_seed(&r, seed, 0);
    for (size_t i = 0; i < n; i++) {
        t[i] = rng_normal(&r);
        x[i] = t[i] + rng_normal(&r);
    }
    char err[300], *a = path_in("%s", tf), *b = path_in("%s", xf);
    cr_assert_eq(npy_write(a, t, n, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(npy_write(b, x, n, 1, err, sizeof err), 0, "%s", err);
    free(a);
    free(b);
    free(t);
    free(x);
}

/* DIR/data/{models,datasets}: an NPE model m (DIR/data/models/m.ppxm,
 * a few epochs: calibration is not what these tests look at) and test
 * pairs t.npy, x.npy (n rows) in datasets. */
static void make_model_and_pairs(size_t n)
{
    char *data = path_in("data"), *models = path_in("data/models"), *ds = path_in("data/datasets");
    cr_assert(mkdir(data, 0755) == 0 && mkdir(models, 0755) == 0 && mkdir(ds, 0755) == 0);
    write_pairs("train_t.npy", "train_x.npy", 2000, 1);
    write_pairs("data/datasets/t.npy", "data/datasets/x.npy", n, 2);
    char *tt = path_in("train_t.npy"), *tx = path_in("train_x.npy"), *m = path_in("data/models/m.ppxm"), *err;
    int rc = run_ppxd(&err, "train", "npe", "--data", tt, tx, "--prior", "normal:0:1", "--flow", "maf", "--max-epochs",
                      "5", "-o", m, "--quiet", NULL);
    cr_assert_eq(rc, 0, "training failed (%d): %s", rc, err);
    free(err);
    free(tt);
    free(tx);
    free(m);
    free(data);
    free(models);
    free(ds);
}

/* The real path of DIR/rel (what the daemon resolves names to). */
static char *real_in(const char *rel)
{
    char *p = path_in("%s", rel), buf[PATH_MAX];
    cr_assert_not_null(realpath(p, buf), "%s", p);
    free(p);
    return strdup(buf);
}

Test(daemon_diagnose, files_job_equals_the_cli_and_is_fetched)
{
    make_model_and_pairs(300);
    /* A reference sample for C2ST, as a data set too. */
    write_pairs("data/datasets/ref.npy", "unused.npy", 200, 3);
    daemon_proc d = {0};
    start_daemon(&d);
    char *id = submit(&d, "calib", "diagnose", "--model", "m", "--data", "t.npy", "x.npy", "-L", "200", "--seed", "4",
                      "--obs", "0.5", "--reference", "ref.npy", "--truth", "0.3", NULL);
    cr_assert_eq(wait_job(&d, id), 0, "the diagnose job did not end DONE: %s", job_field(&d, id, "message"));
    char *prog = job_field(&d, id, "progress"), *msg = job_field(&d, id, "message"), *outs = job_field(&d, id, "outputs");
    cr_expect_str_eq(prog, "300/300 rounds");
    cr_expect(strstr(msg, "300 rounds x 200 samples (files)") && strstr(msg, "C2ST"), "message: %s", msg);
    const char *want[] = {"report.json", "summary.txt", "ranks.npy", "hpd.npy", "tarp.npy", "coverage.csv",
                          "test_theta.npy", "test_x.npy", "ppc_theta.npy", "reference.npy", "truth.npy"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) cr_expect(strstr(outs, want[i]), "outputs: %s", outs);

    /* Fetched: every output into a directory. */
    char *fdir = path_in("fetched"), *err;
    cr_assert_eq(ctl(&d, NULL, &err, "job", "fetch", id, "-o", fdir, NULL), 0, "%s", err);
    free(err);

    /* The CLI on the same files, seed and options. */
    char *m = real_in("data/models/m.ppxm"), *t = real_in("data/datasets/t.npy"), *x = real_in("data/datasets/x.npy");
    char *ref = real_in("data/datasets/ref.npy"), *cli = path_in("cli");
    int rc = run_ppxd(&err, "diagnose", "--model", m, "--data", t, x, "-L", "200", "--seed", "4", "--obs", "0.5",
                      "--reference", ref, "--truth", "0.3", "-o", cli, "--quiet", NULL);
    cr_assert_eq(rc, 0, "ppxd diagnose failed (%d): %s", rc, err);
    free(err);
    const char *same[] = {"ranks.npy", "hpd.npy", "tarp.npy", "coverage.csv", "test_theta.npy", "test_x.npy",
                          "ppc_theta.npy", "reference.npy", "truth.npy"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        char *a = path_in("cli/%s", same[i]), *b = path_in("fetched/%s", same[i]);
        assert_same_file(a, b);
        free(a);
        free(b);
    }
    char *ja = path_in("cli/report.json"), *jb = path_in("fetched/report.json");
    char *ra = report_sans_timing(ja), *rb = report_sans_timing(jb);
    cr_expect_str_eq(ra, rb, "the reports differ beyond their timings");
    cr_expect(strstr(rb, "\"c2st\": {"), "%s", rb);
    stop_daemon(&d);
    free(ra);
    free(rb);
    free(ja);
    free(jb);
    free(m);
    free(t);
    free(x);
    free(ref);
    free(cli);
    free(fdir);
    free(prog);
    free(msg);
    free(outs);
    free(id);
}

Test(daemon_diagnose, bad_requests_are_refused_and_the_daemon_keeps_serving)
{
    make_model_and_pairs(100);
    /* A symbolic link out of the data directory. */
    char *evil = path_in("data/datasets/evil.npy"), *secret = path_in("secret.npy");
    write_pairs("secret.npy", "secret_x.npy", 10, 9);
    cr_assert_eq(symlink(secret, evil), 0);
    daemon_proc d = {0};
    start_daemon(&d);
    refused(&d, "--model nope: no such model", "diagnose", "--model", "nope", "--data", "t.npy", "x.npy", NULL);
    refused(&d, "not a path", "diagnose", "--model", "m", "--data", "/etc/passwd", "x.npy", NULL);
    refused(&d, "not a path", "diagnose", "--model", "m", "--data", "../secret.npy", "x.npy", NULL);
    refused(&d, "not a path", "diagnose", "--model", "../secret.npy", "--data", "t.npy", "x.npy", NULL);
    refused(&d, "outside the daemon's data directory", "diagnose", "--model", "m", "--data", "evil.npy", "x.npy", NULL);
    refused(&d, "--data nothing.npy: no such file", "diagnose", "--model", "m", "--data", "nothing.npy", "x.npy", NULL);
    refused(&d, "not a model file", "diagnose", "--model", "j1/summary.txt", "--data", "t.npy", "x.npy", NULL);
    refused(&d, "no job 'j99'", "diagnose", "--model", "m", "--data", "j99/test_theta.npy", "x.npy", NULL);
    refused(&d, "--reference /etc/passwd", "diagnose", "--model", "m", "--data", "t.npy", "x.npy", "--obs", "1",
            "--reference", "/etc/passwd", NULL);
    refused(&d, "--ppc-n needs --obs and live test pairs", "diagnose", "--model", "m", "--data", "t.npy", "x.npy",
            "--obs", "1", "--ppc-n", "100", NULL);
    refused(&d, "-o is not for jobs", "diagnose", "--model", "m", "--data", "t.npy", "x.npy", "-o", "/tmp/x", NULL);
    refused(&d, "simulator options are not for jobs", "diagnose", "--model", "m", "-n", "10", "--sim-cmd",
            "x {endpoint}", NULL);
    refused(&d, "live test pairs need -n", "diagnose", "--model", "m", NULL);
    refused(&d, "--bogus", "diagnose", "--model", "m", "--data", "t.npy", "x.npy", "--bogus", NULL);
    /* Accepted, but the test pairs do not fit the model: FAILED with its reason. */
    write_pairs("data/datasets/t2.npy", "data/datasets/x2.npy", 50, 5);
    char *bad = submit(&d, NULL, "diagnose", "--model", "m", "--data", "t.npy", "x2.npy", "-n", "10", NULL);
    cr_assert_eq(wait_job(&d, bad), 1, "a job whose pairs do not match must fail");
    char *st = job_field(&d, bad, "state"), *msg = job_field(&d, bad, "message");
    cr_expect_str_eq(st, "FAILED");
    cr_expect(strstr(msg, "--data: theta is 100 x 1 and x 50 x 1"), "message: %s", msg);
    /* The daemon still runs jobs. */
    char *good = submit(&d, NULL, "diagnose", "--model", "m.ppxm", "--data", "t.npy", "x.npy", "-L", "50", NULL);
    cr_assert_eq(wait_job(&d, good), 0, "%s", job_field(&d, good, "message"));
    stop_daemon(&d);
    free(st);
    free(msg);
    free(bad);
    free(good);
    free(evil);
    free(secret);
}

Test(daemon_diagnose, a_running_diagnosis_cancels)
{
    make_model_and_pairs(10);
    /* Long enough to be running when cancelled: 200000 rounds x 1000 samples
     * (minutes); the test ends it after its first rounds. */
    write_pairs("data/datasets/bt.npy", "data/datasets/bx.npy", 200000, 7);
    daemon_proc d = {0};
    start_daemon(&d);
    char *id = submit(&d, NULL, "diagnose", "--model", "m", "--data", "bt.npy", "bx.npy", "-L", "1000", NULL);
    long done = 0;
    for (int i = 0; i < 300 && done == 0; i++) {
        char *p = job_field(&d, id, "progress");
        done = atol(p);
        cr_assert(!strchr(p, '/') || strstr(p, "200000 rounds") || done == 0, "progress: %s", p);
        free(p);
        if (!done) sleep_ms(100);
    }
    cr_assert_gt(done, 0, "no round was done in 30 s");
    char *err;
    cr_assert_eq(ctl(&d, NULL, &err, "job", "cancel", id, NULL), 0, "%s", err);
    free(err);
    cr_assert_eq(wait_job(&d, id), 1, "a cancelled job: exit 1");
    char *st = job_field(&d, id, "state"), *p = job_field(&d, id, "progress"), *outs = job_field(&d, id, "outputs");
    cr_expect_str_eq(st, "CANCELLED");
    cr_expect_lt(atol(p), 200000, "progress %s", p);
    cr_expect(!strstr(outs, "report.json"), "a cancelled diagnosis writes no report: %s", outs);
    char *next = submit(&d, NULL, "diagnose", "--model", "m", "--data", "t.npy", "x.npy", "-L", "50", NULL);
    cr_assert_eq(wait_job(&d, next), 0, "the next job runs");
    stop_daemon(&d);
    free(st);
    free(p);
    free(outs);
    free(id);
    free(next);
}

/* Live test pairs through the pool (examples/gaussian: mu ~ N(1, 5), two
 * observations): the CLI's with launched simulators for the same seed; a
 * files job on that job's outputs ranks as it did; a model whose names the
 * simulator lacks fails with the reason; a live job cancels while it
 * simulates. */
Test(daemon_diagnose, live_job_on_the_pool_equals_the_cli)
{
    make_model_and_pairs(10); /* m: theta_0 and x_0, which the Gaussian example does not have */
    daemon_proc d = {0};
    start_daemon(&d);
    start_sims(&d, 2);
    char *tr = submit(&d, "gauss", "train", "npe", "-n", "1500", "--theta", "mu", "--x", "obs0,obs1", "--max-epochs",
                      "8", NULL);
    cr_assert_eq(wait_job(&d, tr), 0, "train job: %s", job_field(&d, tr, "message"));
    char *id = submit(&d, "live", "diagnose", "--model", "gauss", "-n", "120", "-L", "100", "--seed", "7", NULL);
    cr_assert_eq(wait_job(&d, id), 0, "diagnose job: %s", job_field(&d, id, "message"));
    char *prog = job_field(&d, id, "progress"), *msg = job_field(&d, id, "message");
    cr_expect_str_eq(prog, "120/120 rounds");
    cr_expect(strstr(msg, "(live, fresh seeds)"), "message: %s", msg);

    char *bin = tk_build_path("examples/gaussian"), *cmd = NULL, *err;
    cr_assert(asprintf(&cmd, "%s {endpoint}", bin) > 0);
    char *m = real_in("data/models/gauss.ppxm"), *cli = path_in("cli");
    int rc = run_ppxd(&err, "diagnose", "--model", m, "--sim-cmd", cmd, "-j", "2", "-n", "120", "-L", "100", "--seed",
                      "7", "-o", cli, "--quiet", NULL);
    cr_assert_eq(rc, 0, "ppxd diagnose failed (%d): %s", rc, err);
    free(err);
    const char *same[] = {"test_theta.npy", "test_x.npy", "ranks.npy", "hpd.npy", "tarp.npy", "coverage.csv"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        char *a = path_in("cli/%s", same[i]), *b = path_in("data/jobs/%s/%s", id, same[i]);
        assert_same_file(a, b);
        free(a);
        free(b);
    }
    char *ja = path_in("cli/report.json"), *jb = path_in("data/jobs/%s/report.json", id);
    char *ra = report_sans_timing(ja), *rb = report_sans_timing(jb);
    cr_expect_str_eq(ra, rb, "the reports differ beyond their timings");

    /* The job's test pairs as a later job's files (by the job's name). */
    char *fj = submit(&d, NULL, "diagnose", "--model", "gauss", "--data", "live/test_theta.npy", "live/test_x.npy",
                      "-L", "100", "--seed", "7", NULL);
    cr_assert_eq(wait_job(&d, fj), 0, "files job: %s", job_field(&d, fj, "message"));
    char *ka = path_in("data/jobs/%s/ranks.npy", id), *kb = path_in("data/jobs/%s/ranks.npy", fj);
    assert_same_file(ka, kb);

    /* The wrong simulator for the model: FAILED, saying why. */
    char *wrong = submit(&d, NULL, "diagnose", "--model", "m", "-n", "20", NULL);
    cr_assert_eq(wait_job(&d, wrong), 1, "diagnosing m on the Gaussian example must fail");
    char *wmsg = job_field(&d, wrong, "message");
    cr_expect(strstr(wmsg, "simulating the test pairs failed: simulation 0:"), "message: %s", wmsg);
    free(wmsg);
    free(wrong);

    /* Cancelled while its test pairs are simulated. */
    char *lng = submit(&d, NULL, "diagnose", "--model", "gauss", "-n", "100000000", NULL);
    for (int i = 0; i < 100; i++) {
        char *p = job_field(&d, lng, "progress");
        int going = atol(p) > 0 && strstr(p, "traces") != NULL;
        free(p);
        if (going) break;
        sleep_ms(50);
    }
    cr_assert_eq(ctl(&d, NULL, &err, "job", "cancel", lng, NULL), 0, "%s", err);
    free(err);
    cr_assert_eq(wait_job(&d, lng), 1);
    char *st = job_field(&d, lng, "state");
    cr_expect_str_eq(st, "CANCELLED");
    stop_daemon(&d);
    free(st);
    free(lng);
    free(ka);
    free(kb);
    free(fj);
    free(ra);
    free(rb);
    free(ja);
    free(jb);
    free(m);
    free(cli);
    free(cmd);
    free(bin);
    free(prog);
    free(msg);
    free(id);
    free(tr);
}

/* cli/NAME and data/jobs/ID/NAME are the same bytes, for each NAME. */
static void same_as_cli(const char *id, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *a = path_in("cli/%s", names[i]), *b = path_in("data/jobs/%s/%s", id, names[i]);
        assert_same_file(a, b);
        free(a);
        free(b);
    }
    char *ja = path_in("cli/report.json"), *jb = path_in("data/jobs/%s/report.json", id);
    char *ra = report_sans_timing(ja), *rb = report_sans_timing(jb);
    cr_expect_str_eq(ra, rb, "the reports differ beyond their timings");
    free(ra);
    free(rb);
    free(ja);
    free(jb);
}

/* Polls the job's status until field contains want (up to ms); 1 when it did. */
static int await_field(const daemon_proc *d, const char *id, const char *field, const char *want, int ms)
{
    for (int t = 0; t < ms; t += 50) {
        char *v = job_field(d, id, field);
        int hit = strstr(v, want) != NULL;
        free(v);
        if (hit) return 1;
        sleep_ms(50);
    }
    return 0;
}

/* A daemon with 2 Gaussian simulators connected in and an NPE trained on
 * them by a job named "gauss" (served as gauss, DIR/models/gauss.ppxm); the
 * train job's id. */
static char *daemon_with_gauss_model(daemon_proc *d)
{
    char *data = path_in("data");
    cr_assert(mkdir(data, 0755) == 0);
    free(data);
    start_daemon(d);
    start_sims(d, 2);
    char *tr = submit(d, "gauss", "train", "npe", "-n", "1000", "--theta", "mu", "--x", "obs0,obs1", "--max-epochs",
                      "5", NULL);
    cr_assert_eq(wait_job(d, tr), 0, "train job: %s", job_field(d, tr, "message"));
    return tr;
}

/* The predictive check of a live job simulates on the pool (its sub-job,
 * run by the daemon's loop while the diagnosis thread waits) and equals
 * the CLI's with launched simulators byte for byte: every trace i draws
 * from RNG streams (seed, i) whichever session runs it, and the commits
 * are in index order, so neither the pool's slot count (the daemon's 256
 * sessions, the CLI's -j 2) nor which simulator ran a trace changes a
 * value.  Then a long predictive check: waiting for simulators when the
 * pool empties under it, cancelled there; and a daemon stopped (SIGTERM)
 * during one exits cleanly. */
Test(daemon_diagnose, predictive_check_on_the_pool_equals_the_cli_and_cancels)
{
    daemon_proc d = {0};
    char *tr = daemon_with_gauss_model(&d);
    char *id = submit(&d, "ppc", "diagnose", "--model", "gauss", "-n", "40", "-L", "50", "--seed", "7", "--obs",
                      "obs0=8", "--obs", "obs1=9", "--ppc-n", "300", "--truth", "7", NULL);
    cr_assert_eq(wait_job(&d, id), 0, "diagnose job: %s", job_field(&d, id, "message"));
    char *prog = job_field(&d, id, "progress"), *outs = job_field(&d, id, "outputs");
    cr_expect_str_eq(prog, "40/40 rounds");
    cr_expect(strstr(outs, "ppc_x.npy") && strstr(outs, "ppc.csv") && strstr(outs, "x_o.npy"), "outputs: %s", outs);

    char *bin = tk_build_path("examples/gaussian"), *cmd = NULL, *err;
    cr_assert(asprintf(&cmd, "%s {endpoint}", bin) > 0);
    char *m = real_in("data/models/gauss.ppxm"), *cli = path_in("cli");
    int rc = run_ppxd(&err, "diagnose", "--model", m, "--sim-cmd", cmd, "-j", "2", "-n", "40", "-L", "50", "--seed",
                      "7", "--obs", "obs0=8", "--obs", "obs1=9", "--ppc-n", "300", "--truth", "7", "-o", cli,
                      "--quiet", NULL);
    cr_assert_eq(rc, 0, "ppxd diagnose failed (%d): %s", rc, err);
    free(err);
    const char *same[] = {"ppc_theta.npy", "ppc_x.npy", "ppc.csv", "x_o.npy", "truth.npy", "test_theta.npy",
                          "test_x.npy", "ranks.npy", "tarp.npy", "summary.txt"};
    /* (summary.txt: its rounds line has the timings) */
    same_as_cli(id, same, sizeof same / sizeof *same - 1);
    char *rp = path_in("data/jobs/%s/report.json", id), *rep = slurp_text(rp);
    cr_expect(strstr(rep, "\"ppc\": {\"verdict\": ") && strstr(rep, "\"simulations\": 300"), "%s", rep);
    free(rep);
    free(rp);

    /* A predictive check of 2 million simulations: its phase shows, it waits
     * when the simulators go, and cancels there. */
    char *lng = submit(&d, NULL, "diagnose", "--model", "gauss", "-n", "2", "-L", "10", "--obs", "obs0=8", "--obs",
                       "obs1=9", "--ppc-n", "2000000", NULL);
    cr_assert(await_field(&d, lng, "message", "the posterior predictive check", 30000), "message: %s",
              job_field(&d, lng, "message"));
    for (int i = 0; i < d.n_sim; i++) tk_stop(d.sim[i], 300);
    d.n_sim = 0;
    cr_assert(await_field(&d, lng, "message", "waiting for simulators", 10000), "message: %s",
              job_field(&d, lng, "message"));
    char *st = job_field(&d, lng, "state");
    cr_expect_str_eq(st, "RUNNING");
    free(st);
    cr_assert_eq(ctl(&d, NULL, &err, "job", "cancel", lng, NULL), 0, "%s", err);
    free(err);
    cr_assert_eq(wait_job(&d, lng), 1);
    st = job_field(&d, lng, "state");
    cr_expect_str_eq(st, "CANCELLED");
    free(st);
    char *lo = job_field(&d, lng, "outputs");
    cr_expect(!strstr(lo, "report.json") && !strstr(lo, "ppc_x.npy"), "a cancelled diagnosis writes no report: %s",
              lo);
    free(lo);

    /* Stopped while a predictive check runs: the daemon exits cleanly. */
    start_sims(&d, 2);
    char *last = submit(&d, NULL, "diagnose", "--model", "gauss", "-n", "2", "-L", "10", "--obs", "obs0=8", "--obs",
                        "obs1=9", "--ppc-n", "2000000", NULL);
    cr_assert(await_field(&d, last, "message", "the posterior predictive check", 30000), "message: %s",
              job_field(&d, last, "message"));
    sleep_ms(200);
    stop_daemon(&d);
    free(last);
    free(lng);
    free(m);
    free(cli);
    free(cmd);
    free(bin);
    free(prog);
    free(outs);
    free(id);
    free(tr);
}

/* An IC network from a train-ic job (DIR/ic) diagnosed as a job: its first
 * trace, test pairs and each round's importance sampling (and the
 * posterior at x_o for the predictive check) are sub-jobs on the pool; the
 * outputs equal the CLI's for the same seed (as above: streams per trace
 * index, commits in order).  With --data it is refused with the reason;
 * cancelled while a round's importance sampling runs, it ends CANCELLED
 * and the daemon goes on. */
Test(daemon_diagnose, ic_model_on_the_pool_equals_the_cli_and_cancels)
{
    char *data = path_in("data"), *ds = path_in("data/datasets");
    cr_assert(mkdir(data, 0755) == 0 && mkdir(ds, 0755) == 0);
    free(data);
    free(ds);
    daemon_proc d = {0};
    start_daemon(&d);
    start_sims(&d, 2);
    char *tr = submit(&d, "gic", "train", "ic", "--max-traces", "1000", "--val", "100", NULL);
    cr_assert_eq(wait_job(&d, tr), 0, "train ic job: %s", job_field(&d, tr, "message"));
    char *id = submit(&d, "icd", "diagnose", "--model", "gic", "-n", "20", "-L", "40", "--traces", "60", "--seed",
                      "4", "--obs", "obs0=8", "--obs", "obs1=9", "--ppc-n", "100", NULL);
    cr_assert_eq(wait_job(&d, id), 0, "diagnose job: %s", job_field(&d, id, "message"));
    char *prog = job_field(&d, id, "progress"), *msg = job_field(&d, id, "message");
    cr_expect_str_eq(prog, "20/20 rounds");
    cr_expect(strstr(msg, "20 rounds x 40 samples (live, fresh seeds)"), "message: %s", msg);

    char *bin = tk_build_path("examples/gaussian"), *cmd = NULL, *err;
    cr_assert(asprintf(&cmd, "%s {endpoint}", bin) > 0);
    char *m = real_in("data/ic/gic.ppxm"), *cli = path_in("cli");
    int rc = run_ppxd(&err, "diagnose", "--model", m, "--sim-cmd", cmd, "-j", "2", "-n", "20", "-L", "40", "--traces",
                      "60", "--seed", "4", "--obs", "obs0=8", "--obs", "obs1=9", "--ppc-n", "100", "-o", cli,
                      "--quiet", NULL);
    cr_assert_eq(rc, 0, "ppxd diagnose failed (%d): %s", rc, err);
    free(err);
    const char *same[] = {"test_theta.npy", "test_x.npy", "ranks.npy", "hpd.npy", "tarp.npy", "ess.npy",
                          "coverage.csv", "ppc_theta.npy", "ppc_x.npy", "ppc.csv"};
    same_as_cli(id, same, sizeof same / sizeof *same);
    /* The model as JOB/OUTPUT too. */
    char *byjob = submit(&d, NULL, "diagnose", "--model", "gic/model.ppxm", "-n", "3", "-L", "10", "--traces", "20",
                         NULL);
    cr_assert_eq(wait_job(&d, byjob), 0, "diagnose job: %s", job_field(&d, byjob, "message"));

    /* With --data: refused, saying why (by name and as JOB/OUTPUT). */
    write_pairs("data/datasets/t.npy", "data/datasets/x.npy", 10, 2);
    refused(&d, "take live test pairs: give -n ROUNDS, not --data", "diagnose", "--model", "gic", "--data", "t.npy",
            "x.npy", NULL);
    refused(&d, "is an IC network", "diagnose", "--model", "gic/model.ppxm", "--data", "t.npy", "x.npy", NULL);

    /* Cancelled during a round (100000 importance-sampling traces each). */
    char *lng = submit(&d, NULL, "diagnose", "--model", "gic", "-n", "5", "-L", "10", "--traces", "100000", NULL);
    cr_assert(await_field(&d, lng, "progress", "/5 rounds", 30000), "progress: %s", job_field(&d, lng, "progress"));
    sleep_ms(300);
    cr_assert_eq(ctl(&d, NULL, &err, "job", "cancel", lng, NULL), 0, "%s", err);
    free(err);
    cr_assert_eq(wait_job(&d, lng), 1);
    char *st = job_field(&d, lng, "state"), *lp = job_field(&d, lng, "progress");
    cr_expect_str_eq(st, "CANCELLED");
    cr_expect_lt(atol(lp), 5, "progress %s", lp);
    char *next = submit(&d, NULL, "diagnose", "--model", "gic", "-n", "3", "-L", "10", "--traces", "20", NULL);
    cr_assert_eq(wait_job(&d, next), 0, "the next job runs: %s", job_field(&d, next, "message"));
    stop_daemon(&d);
    free(st);
    free(lp);
    free(next);
    free(lng);
    free(byjob);
    free(m);
    free(cli);
    free(cmd);
    free(bin);
    free(prog);
    free(msg);
    free(id);
    free(tr);
}

/* Simulators come and go during a predictive check: killed mid-way (the
 * job then waits for simulators), new ones join, and the job finishes with
 * the CLI's bytes (a killed simulator's trace is run again elsewhere, and
 * every trace's values depend only on its index). */
Test(daemon_diagnose, predictive_check_survives_its_simulators_leaving)
{
    daemon_proc d = {0};
    char *tr = daemon_with_gauss_model(&d);
    char *id = submit(&d, "ppc", "diagnose", "--model", "gauss", "-n", "5", "-L", "20", "--seed", "3", "--obs",
                      "obs0=8", "--obs", "obs1=9", "--ppc-n", "30000", NULL);
    cr_assert(await_field(&d, id, "message", "the posterior predictive check", 30000), "message: %s",
              job_field(&d, id, "message"));
    sleep_ms(300);
    for (int i = 0; i < d.n_sim; i++) tk_stop(d.sim[i], 300);
    d.n_sim = 0;
    cr_assert(await_field(&d, id, "message", "waiting for simulators", 10000), "message: %s",
              job_field(&d, id, "message"));
    start_sims(&d, 2);
    cr_assert_eq(wait_job(&d, id), 0, "diagnose job: %s", job_field(&d, id, "message"));

    char *bin = tk_build_path("examples/gaussian"), *cmd = NULL, *err;
    cr_assert(asprintf(&cmd, "%s {endpoint}", bin) > 0);
    char *m = real_in("data/models/gauss.ppxm"), *cli = path_in("cli");
    int rc = run_ppxd(&err, "diagnose", "--model", m, "--sim-cmd", cmd, "-j", "2", "-n", "5", "-L", "20", "--seed",
                      "3", "--obs", "obs0=8", "--obs", "obs1=9", "--ppc-n", "30000", "-o", cli, "--quiet", NULL);
    cr_assert_eq(rc, 0, "ppxd diagnose failed (%d): %s", rc, err);
    free(err);
    const char *same[] = {"ppc_theta.npy", "ppc_x.npy", "ppc.csv", "test_theta.npy", "test_x.npy", "ranks.npy"};
    same_as_cli(id, same, sizeof same / sizeof *same);
    stop_daemon(&d);
    free(m);
    free(cli);
    free(cmd);
    free(bin);
    free(id);
    free(tr);
}
