/* Fault tests: the engine against misbehaving simulators (tests/sims/), a
 * connected simulator that dies, and ppxd killed mid-run.
 *
 * Each misbehaving simulator runs the Gaussian model of
 * clients/examples/gaussian.c and fails on a fixed schedule per process:
 *   sim_exit     _exit(3) mid-trace on every 5th run (4 good traces, then death)
 *   sim_hang     sleeps forever mid-trace on every 3rd run (2 good, then hang)
 *   sim_garbage  undecodable bytes instead of a Sample on every 4th run (3 good)
 *   sim_nan      invalid distribution parameters on every 3rd run (the process
 *                carries on: 2 good, 1 bad, 2 good, ...)
 * so the counters must fall in ranges that follow from the schedule: with n
 * traces committed and j simulator slots, a process that dies after g good
 * traces gives  ceil(n / g) - j <= deaths <= floor(n / g).
 * Every job writes its traces to a file, which must then hold exactly the n
 * requested, complete traces in id order.
 *
 * No Criterion .timeout: with parallel jobs, Criterion 2.4.1 leaks its
 * timeout bookkeeping in the runner, which fails the LeakSanitizer build.
 * Waits are bounded by the engine's own timeouts or explicit deadlines. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "jobs.h"
#include "policy.h"
#include "testkit.h"
#include "trace_store.h"

/* --- helpers ------------------------------------------------------------------ */

static char *sim_cmd(const char *rel)
{
    char *path = tk_build_path(rel);
    cr_assert(path && access(path, X_OK) == 0, "%s not built (PPXD_BUILD=%s)", rel, getenv("PPXD_BUILD"));
    char *cmd = NULL;
    cr_assert(asprintf(&cmd, "%s {endpoint}", path) > 0);
    free(path);
    return cmd;
}

static double g_obs0 = 8.0, g_obs1 = 9.0;
static observation g_obs[2] = {{"obs0", &g_obs0, 1}, {"obs1", &g_obs1, 1}};

static char g_tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/ppxd-test-faults-XXXXXX");
    cr_assert_not_null(mkdtemp(g_tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmpdir);
}

static char *tmp_path(const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", g_tmpdir, name) > 0);
    return p;
}

static void base_config(engine_config *c)
{
    engine_config_defaults(c);
    c->obs = g_obs;
    c->n_obs = 2;
    c->progress = 0;
    c->seed = 1;
    c->backoff_min_ms = 10;
    c->backoff_max_ms = 100;
    c->max_failures = 1000;
}

static int commit_write(void *ctx, uint64_t index, const trace *t)
{
    (void)index;
    return trace_writer_append(ctx, t);
}

/* Run an ordered job of n prior traces on engine config c, writing them to
 * path; returns the engine's counters. */
static engine_stats run_to_file(const engine_config *c, uint64_t n, const char *path)
{
    char why[256];
    trace_writer *w = trace_writer_open(path, 0, 0, TRACE_FSYNC_NEVER, why, sizeof why);
    cr_assert_not_null(w, "%s", why);
    engine *e = engine_new(c);
    cr_assert_not_null(e);
    policy *p = policy_prior_new(engine_slots(e), 12345);
    ordered_job job;
    cr_assert_eq(ordered_job_init(&job, n, 64, commit_write, w), 0);
    int rc = engine_run(e, p, &ordered_job_ops, &job);
    engine_stats st = *engine_get_stats(e);
    engine_print_stats(e, stderr);
    cr_assert_eq(rc, 0, "the job did not finish");
    cr_assert_eq(job.failed, 0);
    cr_assert_eq(job.next_commit, n);
    cr_assert_eq(trace_writer_close(&w), 0);
    ordered_job_free(&job);
    policy_destroy(&p);
    engine_destroy(&e);
    return st;
}

/* A complete Gaussian trace: mu (Sample), obs0 = 8, obs1 = 9 (Observe), RunResult mu. */
static void check_complete(const trace *t, uint64_t id)
{
    cr_assert_eq(t->id, id, "record %llu has id %llu", (unsigned long long)id, (unsigned long long)t->id);
    cr_assert_eq(t->n_entries, 3, "trace %llu has %zu entries", (unsigned long long)id, t->n_entries);
    static const char *addr[3] = {"mu__Normal__1", "obs0__Normal__1", "obs1__Normal__1"};
    static const char *name[3] = {"mu", "obs0", "obs1"};
    for (int i = 0; i < 3; i++) {
        const trace_entry *e = &t->entries[i];
        cr_assert_eq(e->kind, i == 0 ? TRACE_SAMPLE : TRACE_OBSERVE);
        cr_assert_eq(e->dist, DIST_NORMAL);
        cr_assert_str_eq(e->address, addr[i]);
        cr_assert_str_eq(e->name, name[i]);
        cr_assert_eq(e->value.len, 1);
        cr_assert(isfinite(e->value.data[0]) && isfinite(e->log_prob), "trace %llu entry %d not finite",
                  (unsigned long long)id, i);
    }
    double mu = t->entries[0].value.data[0];
    cr_assert_eq(t->entries[0].param[1].data[0], sqrt(5.0));
    cr_assert_eq(t->entries[1].param[0].data[0], mu);
    cr_assert_eq(t->entries[2].param[0].data[0], mu);
    cr_assert_eq(t->entries[1].value.data[0], 8.0);
    cr_assert_eq(t->entries[2].value.data[0], 9.0);
    cr_assert_eq(t->result.len, 1, "trace %llu has no RunResult", (unsigned long long)id);
    cr_assert_eq(t->result.data[0], mu);
    cr_assert(isfinite(t->log_weight));
}

/* The file holds exactly n complete traces, ids 0..n-1, and nothing else. */
static void check_file(const char *path, uint64_t n)
{
    char why[256];
    trace_reader *r = trace_reader_open(path, why, sizeof why);
    cr_assert_not_null(r, "%s", why);
    trace *t = trace_new();
    uint64_t k = 0;
    int got;
    while ((got = trace_reader_next(r, t)) == 1) {
        cr_assert(k < n, "more than %llu records", (unsigned long long)n);
        check_complete(t, k++);
    }
    cr_assert_eq(got, 0, "read error");
    cr_assert_eq(k, n, "%llu records, want %llu", (unsigned long long)k, (unsigned long long)n);
    trace_reader_stats st = trace_reader_get_stats(r);
    cr_assert_eq(st.truncated, 0);
    cr_assert_eq(st.bad_tail_bytes, 0);
    trace_destroy(&t);
    trace_reader_close(&r);
}

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static uint64_t others(const engine_stats *st, discard_reason why)
{
    return st->discarded_total - st->discarded[why];
}

/* Deaths after `good` good traces per process: within the schedule's range. */
static void check_deaths(const engine_stats *st, discard_reason why, uint64_t n, uint64_t j, uint64_t good,
                         int upper)
{
    uint64_t d = st->discarded[why];
    uint64_t lo = ceil_div(n, good) > j ? ceil_div(n, good) - j : 1;
    cr_log_info("%s: %llu discards (expected %llu..%llu), %llu restarts", discard_reason_name(why),
                (unsigned long long)d, (unsigned long long)lo, (unsigned long long)(n / good),
                (unsigned long long)st->restarts);
    cr_assert_eq(st->traces_done, n, "traces done %llu", (unsigned long long)st->traces_done);
    cr_assert(d >= lo, "%llu %s discards, at least %llu expected", (unsigned long long)d, discard_reason_name(why),
              (unsigned long long)lo);
    if (upper)
        cr_assert(d <= n / good, "%llu %s discards, at most %llu expected", (unsigned long long)d,
                  discard_reason_name(why), (unsigned long long)(n / good));
    /* Every death is followed by a restart, except perhaps the last one of
     * each slot when the job ends. */
    cr_assert(st->restarts > 0);
    cr_assert(st->restarts <= d, "restarts %llu > deaths %llu",
              (unsigned long long)st->restarts, (unsigned long long)d);
    cr_assert(st->restarts + j >= d, "restarts %llu, deaths %llu", (unsigned long long)st->restarts,
              (unsigned long long)d);
    cr_assert_eq(st->dropped, 0);
}

/* --- misbehaving simulators --------------------------------------------------- */

Test(faults, simulator_exits_mid_trace, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const uint64_t n = 120, j = 3;
    char *cmd = sim_cmd("testsims/sim_exit"), *file = tmp_path("exit.ppxt");
    engine_config c;
    base_config(&c);
    c.sim_cmd = cmd;
    c.n_launch = j;
    engine_stats st = run_to_file(&c, n, file);
    check_deaths(&st, DISCARD_EXITED, n, j, 4, 1);
    cr_assert_eq(others(&st, DISCARD_EXITED), 0, "other discards: %llu",
                 (unsigned long long)others(&st, DISCARD_EXITED));
    check_file(file, n);
    free(cmd);
    free(file);
}

Test(faults, simulator_hangs_mid_trace, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const uint64_t n = 40, j = 4;
    char *cmd = sim_cmd("testsims/sim_hang"), *file = tmp_path("hang.ppxt");
    engine_config c;
    base_config(&c);
    c.sim_cmd = cmd;
    c.n_launch = j;
    c.msg_timeout_ms = 300;
    double t0 = tk_now();
    engine_stats st = run_to_file(&c, n, file);
    double dt = tk_now() - t0;
    /* No upper bound: a loaded machine may add a spurious timeout. */
    check_deaths(&st, DISCARD_TIMEOUT, n, j, 2, 0);
    cr_assert_eq(others(&st, DISCARD_TIMEOUT), 0);
    /* Some slot waited out at least ceil(T / j) timeouts of 0.3 s each. */
    double min_t = (double)ceil_div(st.discarded[DISCARD_TIMEOUT], j) * 0.3;
    cr_assert(dt >= 0.99 * min_t, "%.2f s: the timeouts cannot all have elapsed (%.2f s)", dt, min_t);
    check_file(file, n);
    free(cmd);
    free(file);
}

Test(faults, simulator_sends_garbage, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const uint64_t n = 90, j = 3;
    char *cmd = sim_cmd("testsims/sim_garbage"), *file = tmp_path("garbage.ppxt");
    engine_config c;
    base_config(&c);
    c.sim_cmd = cmd;
    c.n_launch = j;
    engine_stats st = run_to_file(&c, n, file);
    check_deaths(&st, DISCARD_GARBAGE, n, j, 3, 1);
    cr_assert_eq(others(&st, DISCARD_GARBAGE), 0);
    check_file(file, n);
    free(cmd);
    free(file);
}

Test(faults, simulator_sends_invalid_parameters, .init = make_tmpdir, .fini = remove_tmpdir)
{
    /* Per process, b bad traces among r runs with b = floor(r / 3) and g = r - b
     * good ones: (g - 2) / 2 <= b <= g / 2; summed: (n - 2j) / 2 <= bad <= n / 2. */
    const uint64_t n = 90, j = 2;
    char *cmd = sim_cmd("testsims/sim_nan"), *file = tmp_path("nan.ppxt");
    engine_config c;
    base_config(&c);
    c.sim_cmd = cmd;
    c.n_launch = j;
    engine_stats st = run_to_file(&c, n, file);
    uint64_t bad = st.discarded[DISCARD_INVALID_PARAMS];
    cr_log_info("invalid-params: %llu discards", (unsigned long long)bad);
    cr_assert_eq(st.traces_done, n);
    cr_assert(bad * 2 >= n - 2 * j && bad * 2 <= n, "%llu invalid-params discards for %llu traces",
              (unsigned long long)bad, (unsigned long long)n);
    cr_assert_eq(others(&st, DISCARD_INVALID_PARAMS), 0);
    cr_assert_eq(st.restarts, 0, "invalid parameters must not cost a restart");
    cr_assert_eq(st.dropped, 0);
    check_file(file, n);
    free(cmd);
    free(file);
}

Test(faults, connected_simulator_dies, .init = make_tmpdir, .fini = remove_tmpdir)
{
    /* One connected sim_exit (dies on its 5th run) next to two launched
     * Gaussian examples: the connected one cannot be restarted, so its
     * closed connection discards its trace (exited) and it is dropped; the
     * launched ones finish the job.  Enough traces that it surely gets its
     * 5 runs even when the machine is loaded: the job is fast. */
    const uint64_t n = 3000;
    char ep[128];
    tk_endpoint(ep, sizeof ep, "conn");
    char *exe = tk_build_path("testsims/sim_exit");
    char *argv[] = {exe, ep, NULL};
    pid_t pid = tk_spawn(argv);
    cr_assert(pid > 0);
    /* Wait until it serves (a Handshake is not a run), so that it is in the
     * race from the start and surely reaches its 5th run. */
    tk_engine te;
    cr_assert_eq(tk_engine_open(&te, ep, 20000), 0);
    ppx_msg hs;
    ppx_msg_init(&hs);
    hs.type = PPX_MSG_HANDSHAKE;
    cr_assert_eq(tk_engine_call(&te, &hs), 0, "the connected simulator does not answer");
    cr_assert_eq(te.msg.type, PPX_MSG_HANDSHAKE_RESULT);
    tk_engine_close(&te);
    char *cmd = sim_cmd("examples/gaussian"), *file = tmp_path("mixed.ppxt");
    const char *connect[] = {ep};
    engine_config c;
    base_config(&c);
    c.sim_cmd = cmd;
    c.n_launch = 2;
    c.connect = connect;
    c.n_connect = 1;
    c.msg_timeout_ms = 1500;
    engine_stats st = run_to_file(&c, n, file);
    cr_assert_eq(st.traces_done, n);
    cr_assert_eq(st.dropped, 1, "the dead connected simulator is dropped");
    /* Its trace in flight is discarded once; on a loaded machine a launched
     * one may time out, and is then restarted, never dropped. */
    cr_assert_eq(st.discarded[DISCARD_EXITED], 1);
    cr_assert_eq(st.discarded_total, st.discarded[DISCARD_EXITED] + st.discarded[DISCARD_TIMEOUT]);
    cr_assert(st.restarts <= st.discarded[DISCARD_TIMEOUT], "restarts %llu: a connected simulator is never restarted",
              (unsigned long long)st.restarts);
    check_file(file, n);
    tk_stop(pid, 200);
    free(exe);
    free(cmd);
    free(file);
}

/* --- crash safety -------------------------------------------------------------- */

/* Children of `parent` (from /proc); up to max pids into out. */
static size_t children_of(pid_t parent, pid_t *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir("/proc");
    cr_assert_not_null(d);
    struct dirent *de;
    while ((de = readdir(d)) && n < max) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        /* pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'. */
        char *rp = strrchr(buf, ')'), state;
        long ppid;
        if (rp && sscanf(rp + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent) out[n++] = (pid_t)pid;
    }
    closedir(d);
    return n;
}

/* 1 while pid exists and is not a zombie. */
static int running(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *rp = strrchr(buf, ')'), state = 0;
    if (!rp || sscanf(rp + 1, " %c", &state) != 1) return 0;
    return state != 'Z' && state != 'X';
}

/* Valid bytes of the first k records of a .ppxt file, walking the record
 * headers (32-byte file header; per record u32 length, u32 CRC, payload). */
static uint64_t valid_bytes(const char *path, uint64_t k)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint64_t off = 32;
    for (uint64_t i = 0; i < k; i++) {
        unsigned char h[4];
        cr_assert_eq(fseeko(f, (off_t)off, SEEK_SET), 0);
        /* format version 2 record: marker, length, CRC, payload */
        cr_assert_eq(fseeko(f, (off_t)off + 4, SEEK_SET), 0);
        cr_assert_eq(fread(h, 1, 4, f), 4);
        uint32_t len = h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        off += 12 + (uint64_t)len;
    }
    fclose(f);
    return off;
}

/* Read a file ppxd was killed writing: ids 0..k-1, every trace complete. */
static uint64_t check_crashed_file(const char *path, trace_reader_stats *out)
{
    char why[256];
    trace_reader *r = trace_reader_open(path, why, sizeof why);
    cr_assert_not_null(r, "%s", why);
    trace *t = trace_new();
    uint64_t k = 0;
    int got;
    while ((got = trace_reader_next(r, t)) == 1) check_complete(t, k++);
    cr_assert_eq(got, 0);
    *out = trace_reader_get_stats(r);
    cr_assert_eq(out->records, k);
    trace_destroy(&t);
    trace_reader_close(&r);
    return k;
}

static uint64_t count_records(const char *path)
{
    char why[256];
    trace_reader *r = trace_reader_open(path, why, sizeof why);
    if (!r) return 0; /* not created yet, or header not written yet */
    trace *t = trace_new();
    while (trace_reader_next(r, t) == 1) {
    }
    uint64_t k = trace_reader_get_stats(r).records;
    trace_destroy(&t);
    trace_reader_close(&r);
    return k;
}

Test(crash, sigkill_ppxd_mid_run, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char *ppxd = tk_build_path("ppxd"), *cmd = sim_cmd("examples/gaussian"), *file = tmp_path("crash.ppxt");
    char *argv[] = {ppxd, "simulate", "--sim-cmd", cmd, "-j", "2", "-n", "1000000", "-o", file, "--fsync", "flush",
                    "--observe", "obs0=8", "--observe", "obs1=9", "--quiet", NULL};
    pid_t pid = tk_spawn(argv);
    cr_assert(pid > 0);
    /* Wait for records on disk (the writer flushes in 1 MiB batches) and
     * for both simulators. */
    pid_t kids[16];
    size_t n_kids = 0;
    uint64_t seen = 0;
    double deadline = tk_now() + 60;
    while ((seen < 10 || n_kids < 2) && tk_now() < deadline) {
        usleep(20000);
        cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "ppxd exited early");
        if (n_kids < 2) n_kids = children_of(pid, kids, 16);
        seen = count_records(file);
    }
    cr_assert(seen >= 10, "no records after 60 s");
    cr_assert_eq(n_kids, 2, "%zu simulator processes found", n_kids);
    usleep(30000); /* land somewhere in the middle of later writes */
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    trace_reader_stats rs;
    uint64_t k = check_crashed_file(file, &rs);
    struct stat sb;
    cr_assert_eq(stat(file, &sb), 0);
    uint64_t good = valid_bytes(file, k), size = (uint64_t)sb.st_size;
    cr_log_info("killed after %llu records; %llu bytes, %llu of them a damaged tail", (unsigned long long)k,
                (unsigned long long)size, (unsigned long long)(size - good));
    cr_assert(k >= seen, "%llu records survived, %llu were seen before the kill", (unsigned long long)k,
              (unsigned long long)seen);
    cr_assert_eq(rs.bad_tail_bytes, size - good, "tail of %llu bytes reported as %llu",
                 (unsigned long long)(size - good), (unsigned long long)rs.bad_tail_bytes);
    cr_assert_eq(rs.truncated, size > good);

    /* A torn last record (as a kill during write(2) leaves it) is reported
     * and skipped: cut the copy inside record k. */
    char *torn = tmp_path("torn.ppxt");
    uint64_t cut = valid_bytes(file, k - 1) + 12 + (good - valid_bytes(file, k - 1) - 12) / 2;
    FILE *in = fopen(file, "rb"), *out = fopen(torn, "wb");
    cr_assert(in && out);
    char *buf = malloc(cut);
    cr_assert_eq(fread(buf, 1, cut, in), cut);
    cr_assert_eq(fwrite(buf, 1, cut, out), cut);
    fclose(in);
    fclose(out);
    free(buf);
    trace_reader_stats ts;
    cr_assert_eq(check_crashed_file(torn, &ts), k - 1);
    cr_assert_eq(ts.truncated, 1);
    cr_assert_eq(ts.bad_tail_bytes, cut - valid_bytes(file, k - 1));

    /* The simulators die with ppxd (PR_SET_PDEATHSIG). */
    deadline = tk_now() + 5;
    size_t alive;
    do {
        alive = 0;
        for (size_t i = 0; i < n_kids; i++) alive += running(kids[i]);
        if (alive) usleep(20000);
    } while (alive && tk_now() < deadline);
    cr_assert_eq(alive, 0, "%zu simulator processes outlived ppxd", alive);
    free(torn);
    free(ppxd);
    free(cmd);
    free(file);
}
