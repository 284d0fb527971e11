/* Integration: the engine (server/engine.h) in-process through its C API,
 * driving the example simulators of clients/examples/ as child processes,
 * and the ppxd command line as a subprocess.
 *
 * The reference model is the Gaussian with unknown mean of
 * clients/examples/gaussian.c: mu ~ Normal(1, sqrt 5), obs0, obs1 ~
 * Normal(mu, sqrt 2); with obs0 = 8, obs1 = 9 the posterior is
 * Normal(7.25, sqrt(1/1.2) = 0.91287).  Statistical checks allow 3 standard
 * errors, computed from the effective sample size of the run itself; every
 * run uses a fixed seed, so the outcome is deterministic.
 *
 * No Criterion .timeout: with parallel jobs, Criterion 2.4.1 leaks its
 * timeout bookkeeping in the runner, which fails the LeakSanitizer build.
 * Waits are bounded by the engine's own timeouts or explicit deadlines. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "export.h"
#include "jobs.h"
#include "policy.h"
#include "stats.h"
#include "testkit.h"
#include "trace_store.h"
#include "zmtp.h"

#define POST_MEAN 7.25
#define POST_SD 0.91287092917527685 /* sqrt(1/1.2) */

/* --- helpers ------------------------------------------------------------------ */

/* "<abs>/<rel> {endpoint}", malloc'd. */
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
static observation g_gauss_obs[2] = {{"obs0", &g_obs0, 1}, {"obs1", &g_obs1, 1}};

static void config(engine_config *c, const char *cmd, size_t n_launch, const observation *obs, size_t n_obs)
{
    engine_config_defaults(c);
    c->sim_cmd = cmd;
    c->n_launch = n_launch;
    c->obs = obs;
    c->n_obs = n_obs;
    c->progress = 0;
    c->seed = 1;
}

static engine *start(const engine_config *c)
{
    engine *e = engine_new(c);
    cr_assert_not_null(e, "engine_new failed");
    cr_assert_eq(engine_slots(e), c->n_launch + c->n_connect);
    return e;
}

static double normal_logpdf(double x, double m, double s)
{
    return -0.5 * ((x - m) / s) * ((x - m) / s) - log(s) - 0.5 * log(2 * M_PI);
}

/* Importance sampling of the Gaussian's mu with the prior as proposal:
 * n traces on n_launch simulators; the result in *res, counters in *st. */
static void run_gaussian_is(size_t n_launch, uint64_t n, uint64_t seed, is_result *res, engine_stats *st)
{
    char *cmd = sim_cmd("examples/gaussian");
    engine_config c;
    config(&c, cmd, n_launch, g_gauss_obs, 2);
    engine *e = start(&c);
    policy *p = policy_prior_new(engine_slots(e), seed);
    cr_assert_not_null(p);
    const char *names[] = {"mu"};
    cr_assert_eq(is_result_init(res, names, 1), 0);
    ordered_job job;
    cr_assert_eq(ordered_job_init(&job, n, 4 * engine_slots(e) + 64, is_result_commit, res), 0);
    cr_assert_eq(engine_run(e, p, &ordered_job_ops, &job), 0, "engine_run failed");
    cr_assert_eq(job.failed, 0);
    cr_assert_eq(res->n, n, "committed %llu of %llu", (unsigned long long)res->n, (unsigned long long)n);
    cr_assert_eq(res->n_cols, 1);
    if (st) *st = *engine_get_stats(e);
    ordered_job_free(&job);
    policy_destroy(&p);
    engine_destroy(&e);
    free(cmd);
}

/* A job that keeps deep copies of traces 0..n-1 (ordered job underneath). */
typedef struct keep_ctx {
    trace **t;
    uint64_t n;
} keep_ctx;

static int keep_commit(void *ctx, uint64_t index, const trace *t)
{
    keep_ctx *k = ctx;
    if (index >= k->n) return -1;
    if (!k->t[index] && !(k->t[index] = trace_new())) return -1;
    return trace_copy(k->t[index], t);
}

static void keep_init(keep_ctx *k, uint64_t n)
{
    k->n = n;
    k->t = calloc(n, sizeof *k->t);
    cr_assert_not_null(k->t);
}

static void keep_free(keep_ctx *k)
{
    for (uint64_t i = 0; i < k->n; i++) trace_destroy(&k->t[i]);
    free(k->t);
}

/* Run n traces of `example` with policy p (owned by the caller), keeping them. */
static void run_keep(const char *example, size_t n_launch, const observation *obs, size_t n_obs, uint64_t n,
                     uint64_t seed, keep_ctx *k, engine_stats *st)
{
    char rel[64];
    snprintf(rel, sizeof rel, "examples/%s", example);
    char *cmd = sim_cmd(rel);
    engine_config c;
    config(&c, cmd, n_launch, obs, n_obs);
    c.seed = seed;
    engine *e = start(&c);
    policy *p = policy_prior_new(engine_slots(e), seed);
    keep_init(k, n);
    ordered_job job;
    cr_assert_eq(ordered_job_init(&job, n, 64, keep_commit, k), 0);
    cr_assert_eq(engine_run(e, p, &ordered_job_ops, &job), 0);
    cr_assert_eq(job.failed, 0);
    for (uint64_t i = 0; i < n; i++) {
        cr_assert_not_null(k->t[i], "trace %llu missing", (unsigned long long)i);
        cr_assert_eq(k->t[i]->id, i);
    }
    if (st) *st = *engine_get_stats(e);
    ordered_job_free(&job);
    policy_destroy(&p);
    engine_destroy(&e);
    free(cmd);
}

/* Run a command with stdout/stderr to files (NULL: /dev/null); wait up to
 * timeout_ms (failing the test on a timeout).  Returns the exit code. */
static int run_cmd(char *const argv[], const char *out_path, const char *err_path, int timeout_ms)
{
    int rc = tk_run(argv, out_path, err_path, timeout_ms);
    if (rc == -1) cr_assert_fail("%s %s timed out or could not start", argv[0], argv[1]);
    return rc;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

static char g_tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/ppxd-test-engine-XXXXXX");
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

/* --- importance sampling ---------------------------------------------------------- */

Test(engine, gaussian_importance_sampling)
{
    /* With the prior N(1, 5) as proposal the posterior N(7.25, 0.833) lies in
     * its tail: the ESS is only ~0.8% of n (exactly 1/E_q[w^2] = 0.0078 n),
     * so n = 30000 gives an ESS near 230 and SE(mean) near 0.06. */
    const uint64_t n = 30000;
    is_result r;
    engine_stats st;
    run_gaussian_is(4, n, 20240917, &r, &st);
    cr_assert_eq(st.traces_done, n);
    cr_assert_eq(st.discarded_total, 0);
    cr_assert_eq(st.restarts, 0);
    /* Each trace's weight is exactly the likelihood of the two observations. */
    for (uint64_t i = 0; i < n; i++) {
        double mu = r.vals[i];
        cr_assert(isfinite(mu));
        double ll = normal_logpdf(8.0, mu, sqrt(2.0)) + normal_logpdf(9.0, mu, sqrt(2.0));
        cr_assert(fabs(r.lw[i] - ll) <= 1e-9 * (1 + fabs(ll)), "trace %llu: log-weight %.17g, likelihood %.17g",
                  (unsigned long long)i, r.lw[i], ll);
    }
    /* The proposal is the prior: unweighted, mu ~ N(1, sqrt 5). */
    double pm = 0, pv = 0;
    for (uint64_t i = 0; i < n; i++) pm += r.vals[i];
    pm /= n;
    for (uint64_t i = 0; i < n; i++) pv += (r.vals[i] - pm) * (r.vals[i] - pm);
    double psd = sqrt(pv / (n - 1));
    cr_assert(fabs(pm - 1.0) < 3 * sqrt(5.0) / sqrt((double)n), "prior mean %g", pm);
    cr_assert(fabs(psd - sqrt(5.0)) < 3 * sqrt(5.0) / sqrt(2.0 * n), "prior sd %g", psd);

    double *w = malloc(n * sizeof *w);
    stats_normalise(r.lw, n, w);
    double ess = stats_ess(w, n), mean, sd;
    stats_weighted_moments(r.vals, 1, w, n, &mean, &sd);
    double se_mean = sd / sqrt(ess), se_sd = sd / sqrt(2 * ess);
    cr_log_info("IS: n %llu, ESS %.1f, mean %.4f (SE %.4f), sd %.4f (SE %.4f)", (unsigned long long)n, ess, mean,
                se_mean, sd, se_sd);
    cr_assert(ess > 100 && ess < 0.02 * n, "ESS %.1f far from the expected ~0.0078 n", ess);
    cr_assert(fabs(mean - POST_MEAN) < 3 * se_mean, "posterior mean %.4f, want 7.25 +- %.4f", mean, 3 * se_mean);
    cr_assert(fabs(sd - POST_SD) < 3 * se_sd, "posterior sd %.4f, want 0.9129 +- %.4f", sd, 3 * se_sd);
    free(w);
    is_result_free(&r);
}

/* --- LMH -------------------------------------------------------------------------- */

Test(engine, gaussian_lmh)
{
    /* One site (mu) redrawn from the prior at every step: an independence
     * sampler whose acceptance rate is E[min(1, L(mu')/L(mu))] ~ 0.0095
     * here, so chains stick for ~100 steps and the integrated
     * autocorrelation time is ~2/0.0095 ~ 200 steps.  Batch means need
     * batches well beyond that: stats_ess_batch_means uses sqrt(n) batches of
     * sqrt(n), so it is given each chain thinned by THIN: batches then span
     * sqrt(n THIN) ~ 600 steps.  (The thinned chain's ESS is the ESS of a
     * subset of the draws, a conservative figure for the full chain.) */
    const size_t chains = 4;
    const uint64_t steps = 15000, burn = 1000;
    const size_t THIN = 25;
    char *cmd = sim_cmd("examples/gaussian");
    engine_config c;
    config(&c, cmd, chains, g_gauss_obs, 2);
    engine *e = start(&c);
    policy *p = policy_replay_new(policy_prior_new(chains, 77), chains);
    cr_assert_not_null(p);
    const char *names[] = {"mu"};
    lmh_job job;
    cr_assert_eq(lmh_job_init(&job, chains, steps, burn, p, names, 1, 77), 0);
    cr_assert_eq(engine_run(e, p, &lmh_job_ops, &job), 0);
    cr_assert_eq(job.failed, 0);
    const engine_stats *st = engine_get_stats(e);
    cr_assert_eq(st->discarded_total, 0);

    double ess = 0;
    uint64_t accepted = 0;
    double *thin = malloc((steps / THIN + 1) * sizeof *thin);
    for (size_t k = 0; k < chains; k++) {
        is_result *pc = &job.per_chain[k];
        cr_assert_eq(job.chains[k].iter, steps);
        cr_assert_eq(pc->n, steps - burn, "chain %zu kept %llu samples", k, (unsigned long long)pc->n);
        cr_assert(job.chains[k].accepted > 0, "chain %zu never moved", k);
        accepted += job.chains[k].accepted;
        size_t m = 0;
        for (uint64_t i = 0; i < pc->n; i += THIN) thin[m++] = pc->vals[i];
        double ek = stats_ess_batch_means(thin, m);
        cr_log_info("chain %zu: accepted %llu, ESS %.1f (of %zu thinned)", k,
                    (unsigned long long)job.chains[k].accepted, ek, m);
        ess += ek;
    }
    free(thin);
    is_result all;
    cr_assert_eq(is_result_init(&all, NULL, 0), 0);
    cr_assert_eq(lmh_job_collect(&job, &all), 0);
    cr_assert_eq(all.n, chains * (steps - burn));
    double *w = malloc(all.n * sizeof *w);
    for (uint64_t i = 0; i < all.n; i++) w[i] = 1.0 / all.n;
    double mean, sd;
    stats_weighted_moments(all.vals, all.n_cols, w, all.n, &mean, &sd);
    double se_mean = sd / sqrt(ess), se_sd = sd / sqrt(2 * ess);
    cr_log_info("LMH: acceptance %.4f, ESS %.1f, mean %.4f (SE %.4f), sd %.4f (SE %.4f)",
                (double)accepted / (chains * (steps - 1)), ess, mean, se_mean, sd, se_sd);
    cr_assert(fabs(mean - POST_MEAN) < 3 * se_mean, "LMH mean %.4f, want 7.25 +- %.4f", mean, 3 * se_mean);
    cr_assert(fabs(sd - POST_SD) < 3 * se_sd, "LMH sd %.4f, want 0.9129 +- %.4f", sd, 3 * se_sd);
    free(w);
    is_result_free(&all);
    lmh_job_free(&job);
    policy_destroy(&p);
    engine_destroy(&e);
    free(cmd);
}

static void run_lmh_small(size_t chains, uint64_t seed, is_result *out)
{
    char *cmd = sim_cmd("examples/gaussian");
    engine_config c;
    config(&c, cmd, chains, g_gauss_obs, 2);
    engine *e = start(&c);
    policy *p = policy_replay_new(policy_prior_new(chains, seed), chains);
    lmh_job job;
    cr_assert_eq(lmh_job_init(&job, chains, 300, 50, p, NULL, 0, seed), 0);
    cr_assert_eq(engine_run(e, p, &lmh_job_ops, &job), 0);
    cr_assert_eq(is_result_init(out, NULL, 0), 0);
    cr_assert_eq(lmh_job_collect(&job, out), 0);
    cr_assert_eq(out->n, chains * 250);
    lmh_job_free(&job);
    policy_destroy(&p);
    engine_destroy(&e);
    free(cmd);
}

Test(engine, lmh_reproducible)
{
    is_result a, b, c;
    run_lmh_small(2, 5, &a);
    run_lmh_small(2, 5, &b);
    run_lmh_small(2, 6, &c);
    cr_assert_eq(a.n_cols, 1);
    cr_assert_eq(memcmp(a.vals, b.vals, a.n * sizeof *a.vals), 0, "same seed, same chains");
    cr_assert_neq(memcmp(a.vals, c.vals, a.n * sizeof *a.vals), 0, "another seed, other chains");
    is_result_free(&a);
    is_result_free(&b);
    is_result_free(&c);
}

/* --- reproducibility ---------------------------------------------------------------- */

Test(engine, importance_sampling_reproducible)
{
    const uint64_t n = 400;
    is_result a, b, one, three, other;
    run_gaussian_is(2, n, 7, &a, NULL);
    run_gaussian_is(2, n, 7, &b, NULL);
    cr_assert_eq(memcmp(a.lw, b.lw, n * sizeof *a.lw), 0, "same seed and simulators: identical log-weights");
    cr_assert_eq(memcmp(a.vals, b.vals, n * sizeof *a.vals), 0, "same seed and simulators: identical values");
    /* Per-trace RNG streams and in-order commits: the number of simulators does not matter. */
    run_gaussian_is(1, n, 7, &one, NULL);
    run_gaussian_is(3, n, 7, &three, NULL);
    cr_assert_eq(memcmp(a.lw, one.lw, n * sizeof *a.lw), 0, "1 simulator differs from 2");
    cr_assert_eq(memcmp(a.vals, one.vals, n * sizeof *a.vals), 0, "1 simulator differs from 2");
    cr_assert_eq(memcmp(a.lw, three.lw, n * sizeof *a.lw), 0, "3 simulators differ from 2");
    cr_assert_eq(memcmp(a.vals, three.vals, n * sizeof *a.vals), 0, "3 simulators differ from 2");
    /* Another seed: other draws (every one of them, barring a 2^-64 coincidence). */
    run_gaussian_is(2, n, 8, &other, NULL);
    size_t same = 0;
    for (uint64_t i = 0; i < n; i++) same += a.vals[i] == other.vals[i];
    cr_assert_eq(same, 0, "%zu draws coincide across seeds", same);
    is_result_free(&a);
    is_result_free(&b);
    is_result_free(&one);
    is_result_free(&three);
    is_result_free(&other);
}

/* --- the ppxd command line ------------------------------------------------------------ */

/* drawn: the observations were drawn by ppxd (no --observe), else given. */
static void check_gaussian_trace(const trace *t, uint64_t id, int drawn)
{
    cr_assert_eq(t->id, id, "record %llu has id %llu", (unsigned long long)id, (unsigned long long)t->id);
    cr_assert_eq(t->n_entries, 3, "trace %llu: %zu entries", (unsigned long long)id, t->n_entries);
    const trace_entry *mu = &t->entries[0], *o0 = &t->entries[1], *o1 = &t->entries[2];
    cr_assert_eq(mu->kind, TRACE_SAMPLE);
    cr_assert_eq(mu->dist, DIST_NORMAL);
    cr_assert_str_eq(mu->name, "mu");
    cr_assert_str_eq(mu->base_address, "mu");
    cr_assert_str_eq(mu->address, "mu__Normal__1");
    cr_assert_eq(mu->instance, 1);
    cr_assert_eq(mu->control, 1);
    cr_assert_eq(mu->observed, 0);
    cr_assert_eq(mu->value.len, 1);
    cr_assert_eq(mu->param[0].len, 1);
    cr_assert_float_eq(mu->param[0].data[0], 1.0, 0);
    cr_assert_float_eq(mu->param[1].data[0], sqrt(5.0), 0);
    double m = mu->value.data[0];
    cr_assert(isfinite(m) && isfinite(mu->log_prob));
    cr_assert_float_eq(mu->log_prob, normal_logpdf(m, 1.0, sqrt(5.0)), 1e-9);
    const trace_entry *obs[2] = {o0, o1};
    const char *names[2] = {"obs0", "obs1"}, *addrs[2] = {"obs0__Normal__1", "obs1__Normal__1"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(obs[i]->kind, TRACE_OBSERVE);
        cr_assert_eq(obs[i]->dist, DIST_NORMAL);
        cr_assert_str_eq(obs[i]->name, names[i]);
        cr_assert_str_eq(obs[i]->address, addrs[i]);
        cr_assert_eq(obs[i]->observed, drawn ? TRACE_DRAWN : TRACE_CONDITIONED);
        cr_assert_float_eq(obs[i]->param[0].data[0], m, 0);
        cr_assert_eq(obs[i]->value.len, 1);
        cr_assert(isfinite(obs[i]->value.data[0]) && isfinite(obs[i]->log_prob));
        cr_assert_float_eq(obs[i]->log_prob, normal_logpdf(obs[i]->value.data[0], m, sqrt(2.0)), 1e-9);
    }
    cr_assert_eq(t->result.len, 1, "RunResult missing");
    cr_assert_eq(t->result.data[0], m, "RunResult is mu");
    /* Drawn observations are data, not evidence: a prior trace has weight 1. */
    if (drawn) {
        cr_assert_eq(t->log_likelihood, 0.0);
        cr_assert_eq(t->log_weight, 0.0, "trace %llu has log weight %g", (unsigned long long)id, t->log_weight);
    } else {
        cr_assert_float_eq(t->log_likelihood, o0->log_prob + o1->log_prob, 1e-12);
    }
}

Test(cli, simulate_export_info_infer, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char *ppxd = tk_build_path("ppxd");
    char *cmd = sim_cmd("examples/gaussian");
    char *file = tmp_path("prior.ppxt"), *npy = tmp_path("out.npy"), *err = tmp_path("err.txt"),
         *out = tmp_path("out.txt");
    char *sim_argv[] = {ppxd, "simulate", "--sim-cmd", cmd, "-j", "2", "-n", "2000", "-o", file, "--seed", "3",
                        "--quiet", NULL};
    int st = run_cmd(sim_argv, NULL, err, 60000);
    cr_assert_eq(st, 0, "ppxd simulate failed: %s", slurp(err));

    /* The file: 2000 complete Gaussian traces in id order. */
    char why[256];
    trace_reader *r = trace_reader_open(file, why, sizeof why);
    cr_assert_not_null(r, "%s", why);
    trace *t = trace_new();
    const uint64_t n = 2000;
    double *mu = malloc(n * sizeof *mu), *obs0 = malloc(n * sizeof *obs0);
    uint64_t k = 0;
    int got;
    while ((got = trace_reader_next(r, t)) == 1) {
        cr_assert(k < n, "more than %llu records", (unsigned long long)n);
        check_gaussian_trace(t, k, 1);
        mu[k] = t->entries[0].value.data[0];
        obs0[k] = t->entries[1].value.data[0];
        k++;
    }
    cr_assert_eq(got, 0);
    cr_assert_eq(k, n, "%llu records", (unsigned long long)k);
    trace_reader_stats rs = trace_reader_get_stats(r);
    cr_assert_eq(rs.records, n);
    cr_assert_eq(rs.truncated, 0);
    trace_reader_close(&r);
    trace_destroy(&t);
    /* No --observe: mu from the prior N(1, sqrt 5), and the engine draws the
     * observations from their distributions, so obs0 - mu ~ N(0, sqrt 2). */
    double m = 0, d = 0;
    for (uint64_t i = 0; i < n; i++) {
        m += mu[i];
        d += obs0[i] - mu[i];
    }
    m /= n;
    d /= n;
    cr_assert(fabs(m - 1.0) < 3 * sqrt(5.0 / n), "prior mean of mu %g", m);
    cr_assert(fabs(d) < 3 * sqrt(2.0 / n), "mean of obs0 - mu %g", d);

    /* export: columns mu, obs0 equal to the traces'. */
    char *exp_argv[] = {ppxd, "export", file, "--names", "mu,obs0", "-o", npy, NULL};
    st = run_cmd(exp_argv, NULL, err, 30000);
    cr_assert_eq(st, 0, "ppxd export failed: %s", slurp(err));
    double *data;
    size_t rows, cols;
    cr_assert_eq(npy_read(npy, &data, &rows, &cols, why, sizeof why), 0, "%s", why);
    cr_assert_eq(rows, n);
    cr_assert_eq(cols, 2);
    for (uint64_t i = 0; i < n; i++) {
        cr_assert_eq(data[2 * i], mu[i], "row %llu mu", (unsigned long long)i);
        cr_assert_eq(data[2 * i + 1], obs0[i], "row %llu obs0", (unsigned long long)i);
    }
    free(data);

    /* info */
    char *info_argv[] = {ppxd, "info", file, NULL};
    st = run_cmd(info_argv, out, err, 30000);
    cr_assert_eq(st, 0, "ppxd info failed: %s", slurp(err));
    char *info = slurp(out);
    cr_assert(strstr(info, "2000 traces") && strstr(info, "no damage"), "info says: %s", info);
    free(info);
    /* info on a copy damaged in the middle: every other trace is counted,
     * the damage reported, and the exit status says so */
    {
        char *bad = tmp_path("damaged.ppxt");
        FILE *in = fopen(file, "rb"), *o = fopen(bad, "wb");
        cr_assert(in && o);
        fseeko(in, 0, SEEK_END);
        long size = (long)ftello(in);
        fseeko(in, 0, SEEK_SET);
        for (long i = 0; i < size; i++) {
            int ch = fgetc(in);
            fputc(i == size / 2 ? ch ^ 0x04 : ch, o);
        }
        fclose(in);
        fclose(o);
        char *bad_argv[] = {ppxd, "info", bad, NULL};
        st = run_cmd(bad_argv, out, err, 30000);
        cr_assert_eq(st, 1, "ppxd info on a damaged file exited %d", st);
        info = slurp(out);
        cr_assert(strstr(info, "1999 traces") && strstr(info, "damage skipped in 1 place"), "info says: %s", info);
        free(info);
        cr_assert_eq(truncate(bad, size - 3), 0); /* and a torn tail too */
        st = run_cmd(bad_argv, out, err, 30000);
        cr_assert_eq(st, 1);
        info = slurp(out);
        cr_assert(strstr(info, "1998 traces") && strstr(info, "damaged tail"), "info says: %s", info);
        free(info);
        unlink(bad);
        free(bad);
    }

    /* infer: resampled posterior samples, each one of the traces' mu. */
    char *samples = tmp_path("s.npy"), *itraces = tmp_path("infer.ppxt");
    char *inf_argv[] = {ppxd, "infer", "--sim-cmd", cmd, "-j", "2", "-n", "1000", "--observe", "obs0=8",
                        "--observe", "obs1=9", "--samples-out", samples, "--resample", "300", "-o", itraces,
                        "--seed", "4", "--quiet", NULL};
    st = run_cmd(inf_argv, out, err, 60000);
    cr_assert_eq(st, 0, "ppxd infer failed: %s", slurp(err));
    char *summary = slurp(out);
    cr_assert(strstr(summary, "importance sampling") && strstr(summary, "mu"), "infer printed: %s", summary);
    free(summary);
    cr_assert_eq(npy_read(samples, &data, &rows, &cols, why, sizeof why), 0, "%s", why);
    cr_assert_eq(rows, 300);
    cr_assert_eq(cols, 1);
    r = trace_reader_open(itraces, why, sizeof why);
    cr_assert_not_null(r, "%s", why);
    t = trace_new();
    double *imu = malloc(1000 * sizeof *imu);
    k = 0;
    while (trace_reader_next(r, t) == 1) {
        cr_assert(k < 1000);
        check_gaussian_trace(t, k, 0);
        cr_assert_eq(t->entries[1].value.data[0], 8.0, "observed obs0");
        cr_assert_eq(t->entries[2].value.data[0], 9.0, "observed obs1");
        imu[k++] = t->entries[0].value.data[0];
    }
    cr_assert_eq(k, 1000);
    for (size_t i = 0; i < rows; i++) {
        int found = 0;
        for (uint64_t j = 0; j < k && !found; j++) found = imu[j] == data[i];
        cr_assert(found, "resampled value %g is not a trace's mu", data[i]);
    }
    free(imu);
    free(data);
    trace_reader_close(&r);
    trace_destroy(&t);
    /* Without --resample: n rows. */
    char *inf2_argv[] = {ppxd, "infer", "--sim-cmd", cmd, "-j", "2", "-n", "500", "--observe", "obs0=8",
                         "--observe", "obs1=9", "--samples-out", samples, "--quiet", NULL};
    st = run_cmd(inf2_argv, NULL, err, 60000);
    cr_assert_eq(st, 0, "ppxd infer failed: %s", slurp(err));
    cr_assert_eq(npy_read(samples, &data, &rows, &cols, why, sizeof why), 0, "%s", why);
    cr_assert_eq(rows, 500);
    cr_assert_eq(cols, 1);
    free(data);

    free(mu);
    free(obs0);
    free(samples);
    free(itraces);
    free(file);
    free(npy);
    free(err);
    free(out);
    free(cmd);
    free(ppxd);
}

Test(cli, bad_usage_exits_2, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char *ppxd = tk_build_path("ppxd");
    char *cmd = sim_cmd("examples/gaussian");
    char *file = tmp_path("never.ppxt"), *err = tmp_path("err.txt");
    char *cases[][16] = {
        {ppxd, "simulate", "--sim-cmd", cmd, "-n", "10", "-o", file, "--bogus", NULL},
        {ppxd, "simulate", "--sim-cmd", cmd, "-n", "0", "-o", file, NULL},
        {ppxd, "simulate", "--sim-cmd", cmd, "-n", "ten", "-o", file, NULL},
        {ppxd, "infer", "--sim-cmd", cmd, "-n", "10", "--observe", "obs0", NULL},
        {ppxd, "infer", "--sim-cmd", cmd, "-n", "10", "--observe", "obs0=", NULL},
        {ppxd, "infer", "--sim-cmd", cmd, "-n", "10", "--observe", "obs0=nan", NULL},
        {ppxd, "simulate", "-n", "10", "-o", file, NULL},
        {ppxd, "infer", "-n", "10", "--observe", "obs0=8", NULL},
        {ppxd, "simulate", "--sim-cmd", "/bin/true", "-n", "10", "-o", file, NULL},
        {ppxd, "simulate", "--sim-cmd", cmd, "-j", "0", "-n", "10", "-o", file, NULL},
        {ppxd, "infer", "--sim-cmd", cmd, "-n", "10", "--method", "hmc", NULL},
        {ppxd, "frobnicate", NULL},
        {ppxd, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = run_cmd(cases[i], NULL, err, 20000);
        char *msg = slurp(err);
        cr_assert_eq(st, 2, "case %zu (%s %s ...): exit %d, stderr: %s", i, cases[i][1] ? cases[i][1] : "",
                     cases[i][1] && cases[i][2] ? cases[i][2] : "", st, msg);
        cr_assert(strlen(msg) > 0, "case %zu: no message on stderr", i);
        free(msg);
        cr_assert(access(file, F_OK) != 0, "case %zu: the output file was created by a failed command", i);
    }
    free(file);
    free(err);
    free(cmd);
    free(ppxd);
}

/* The simulator options are read by one parser (engine_sim_option) and
 * checked by one function (engine_sim_options_apply) for every command. */
Test(cli, simulator_options_parsed_and_checked_in_one_place)
{
    engine_sim_options o;
    memset(&o, 0, sizeof o);
    char err[160];
    cr_assert_eq(engine_sim_option(&o, "seed", "1", err, sizeof err), 0, "not a simulator option");

    err[0] = 0;
    cr_assert_eq(engine_sim_option(&o, "sim-cmd", "sim", err, sizeof err), -1);
    cr_assert(strstr(err, "must contain {endpoint}"), "%s", err);
    cr_assert_null(o.sim_cmd, "a rejected --sim-cmd is not kept");
    cr_assert_eq(engine_sim_option(&o, "sim-cmd", "sim {endpoint}", err, sizeof err), 1);
    cr_assert_str_eq(o.sim_cmd, "sim {endpoint}");

    static const char *bad_j[] = {"0", "4097", "-1", "+2", "2x", "", " 2", "1e3"};
    for (size_t i = 0; i < sizeof bad_j / sizeof bad_j[0]; i++) {
        err[0] = 0;
        cr_assert_eq(engine_sim_option(&o, "j", bad_j[i], err, sizeof err), -1, "-j '%s' accepted", bad_j[i]);
        cr_assert_str_eq(err, "-j wants a number from 1 to 4096");
        cr_assert_eq(o.n_launch, 0);
    }
    cr_assert_eq(engine_sim_option(&o, "j", "4096", err, sizeof err), 1);
    cr_assert_eq(o.n_launch, 4096);

    static const char *eps[] = {"tcp://127.0.0.1:5555", "ipc://@a", "ipc:///tmp/b"};
    for (size_t i = 0; i < 3; i++) cr_assert_eq(engine_sim_option(&o, "connect", eps[i], err, sizeof err), 1);
    cr_assert_eq(o.n_connect, 3);
    for (size_t i = 0; i < 3; i++) cr_assert_eq(o.connect[i], eps[i], "--connect keeps argv's strings, in order");
    err[0] = 0;
    cr_assert_eq(engine_sim_option(&o, "connect", "tcp://host", err, sizeof err), -1);
    cr_assert_str_eq(err, "--connect: want tcp://HOST:PORT");
    cr_assert_eq(o.n_connect, 3, "a rejected --connect is not kept");

    engine_config c;
    engine_config_defaults(&c);
    cr_assert_eq(engine_sim_options_apply(&o, &c, err, sizeof err), 1);
    cr_assert_str_eq(c.sim_cmd, "sim {endpoint}");
    cr_assert_eq(c.n_launch, 4096);
    cr_assert_eq(c.n_connect, 3);
    cr_assert_eq((const void *)c.connect, (const void *)o.connect);
    engine_sim_options_free(&o);
    cr_assert_null(o.connect);
    cr_assert_eq(o.n_connect, 0);

    /* -j defaults to 1 with --sim-cmd; with --connect alone it launches nothing. */
    engine_sim_options launch = {.sim_cmd = "sim {endpoint}"};
    engine_config_defaults(&c);
    cr_assert_eq(engine_sim_options_apply(&launch, &c, err, sizeof err), 1);
    cr_assert_eq(c.n_launch, 1);
    const char *one[] = {"tcp://127.0.0.1:5555"};
    engine_sim_options conn = {.n_launch = 4, .connect = one, .n_connect = 1};
    engine_config_defaults(&c);
    cr_assert_eq(engine_sim_options_apply(&conn, &c, err, sizeof err), 1);
    cr_assert_eq(c.n_launch, 0);
    cr_assert_eq(c.n_connect, 1);

    /* None given: 0 and the words every command uses; the config untouched. */
    engine_sim_options none = {.n_launch = 3};
    engine_config_defaults(&c);
    c.n_launch = 7;
    cr_assert_eq(engine_sim_options_apply(&none, &c, err, sizeof err), 0);
    cr_assert_str_eq(err, "no simulators: give " ENGINE_SIM_OPTIONS_SHORT);
    cr_assert_eq(c.n_launch, 7);
    cr_assert_null(c.sim_cmd);
}

/* simulate, infer and train reject a bad simulator option alike: exit 2, the
 * same message, before any file is made. */
Test(cli, simulator_options_rejected_alike_by_every_command, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char *ppxd = tk_build_path("ppxd");
    char *file = tmp_path("never.out"), *err = tmp_path("err.txt");
    static const char *bad[][2] = {
        {"--sim-cmd", "sim"}, {"-j", "0"}, {"-j", "4097"}, {"-j", "two"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *first = NULL;
        char *cmds[][16] = {
            {ppxd, "simulate", "--sim-cmd", "sim {endpoint}", (char *)bad[i][0], (char *)bad[i][1], "-n", "10", "-o",
             file, NULL},
            {ppxd, "infer", "--sim-cmd", "sim {endpoint}", (char *)bad[i][0], (char *)bad[i][1], "-n", "10",
             "--observe", "obs0=8", "-o", file, NULL},
            {ppxd, "train", "npe", "--sim-cmd", "sim {endpoint}", (char *)bad[i][0], (char *)bad[i][1], "-n", "10",
             "--theta", "mu", "--x", "obs0", "-o", file, NULL},
        };
        for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
            int st = run_cmd(cmds[k], NULL, err, 20000);
            char *msg = slurp(err);
            cr_assert_eq(st, 2, "%s %s %s: exit %d, stderr: %s", cmds[k][1], bad[i][0], bad[i][1],
                         st, msg);
            cr_assert(access(file, F_OK) != 0, "%s %s %s: the output file was created", cmds[k][1], bad[i][0],
                      bad[i][1]);
            if (!first) {
                cr_assert(strlen(msg) > 0, "%s %s: no message", bad[i][0], bad[i][1]);
                first = msg;
            } else {
                cr_assert_str_eq(msg, first, "%s says otherwise than %s about %s %s", cmds[k][1], cmds[0][1],
                                 bad[i][0], bad[i][1]);
                free(msg);
            }
        }
        free(first);
    }
    /* No simulators at all: simulate and infer say the same; train, which can
     * also read --data, names the same options. */
    char *none[][16] = {
        {ppxd, "simulate", "-j", "2", "-n", "10", "-o", file, NULL},
        {ppxd, "infer", "-j", "2", "-n", "10", "--observe", "obs0=8", "-o", file, NULL},
        {ppxd, "train", "npe", "-j", "2", "-n", "10", "--theta", "mu", "--x", "obs0", "-o", file, NULL},
    };
    for (size_t k = 0; k < sizeof none / sizeof none[0]; k++) {
        int st = run_cmd(none[k], NULL, err, 20000);
        char *msg = slurp(err);
        cr_assert_eq(st, 2, "%s without simulators: exit %d, stderr: %s", none[k][1], st, msg);
        cr_assert(strstr(msg, k < 2 ? "ppxd: no simulators: give " ENGINE_SIM_OPTIONS_SHORT "\n"
                                    : "(" ENGINE_SIM_OPTIONS_SHORT ") or --data"),
                  "%s without simulators: %s", none[k][1], msg);
        cr_assert(access(file, F_OK) != 0);
        free(msg);
    }
    free(file);
    free(err);
    free(ppxd);
}

/* A malformed --connect endpoint is a usage error too: exit 2, the check's
 * words, the same from every command, before any file is made.  (Syntax
 * only: an unresolvable host is the engine's to report when it connects.) */
Test(cli, malformed_connect_endpoint_rejected_alike_by_every_command, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char *ppxd = tk_build_path("ppxd");
    char *file = tmp_path("never.out"), *err = tmp_path("err.txt");
    static const char *bad[] = {"bogus", "tcp://host", "udp://x:1", "ipc://"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char why[160], *want = NULL;
        cr_assert_eq(zmtp_endpoint_check(bad[i], why, sizeof why), -1);
        cr_assert(asprintf(&want, "ppxd: --connect: %s: %s\n", why, bad[i]) > 0);
        char *cmds[][16] = {
            {ppxd, "simulate", "--connect", (char *)bad[i], "-n", "10", "-o", file, NULL},
            {ppxd, "infer", "--connect", (char *)bad[i], "-n", "10", "--observe", "obs0=8", "-o", file, NULL},
            {ppxd, "train", "npe", "--connect", (char *)bad[i], "-n", "10", "--theta", "mu", "--x", "obs0", "-o",
             file, NULL},
        };
        for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
            int st = run_cmd(cmds[k], NULL, err, 20000);
            char *msg = slurp(err);
            cr_assert_eq(st, 2, "%s --connect %s: exit %d, stderr: %s", cmds[k][1], bad[i], st,
                         msg);
            cr_assert_str_eq(msg, want, "%s --connect %s", cmds[k][1], bad[i]);
            cr_assert(access(file, F_OK) != 0, "%s --connect %s: the output file was created", cmds[k][1], bad[i]);
            free(msg);
        }
        free(want);
    }
    free(file);
    free(err);
    free(ppxd);
}

/* --- replay ------------------------------------------------------------------------- */

/* An ordered job whose traces replay recordings: before trace i starts on a
 * slot, the replay policy gets recording i for that slot (and optionally an
 * address to redraw); complete() notes whether the trace diverged. */
typedef struct replay_job {
    ordered_job oj;
    policy *replay;          /* the replay policy (perhaps inside another) */
    trace **rec;
    const char *resample;    /* address left to the inner policy, or NULL */
    uint8_t *diverged;       /* per index */
} replay_job;

static int rj_next(void *job, size_t slot, uint64_t *index)
{
    replay_job *j = job;
    if (!ordered_job_ops.next(&j->oj, slot, index)) return 0;
    policy_replay_set(j->replay, slot, j->rec[*index]);
    policy_replay_set_resample(j->replay, slot, j->resample);
    return 1;
}

static int rj_complete(void *job, size_t slot, uint64_t index, trace *t)
{
    replay_job *j = job;
    if (index < j->oj.n) j->diverged[index] = (uint8_t)policy_replay_slot_diverged(j->replay, slot);
    return ordered_job_ops.complete(&j->oj, slot, index, t);
}

static void rj_discard(void *job, size_t slot, uint64_t index, discard_reason why)
{
    ordered_job_ops.discard(&((replay_job *)job)->oj, slot, index, why);
}

static int rj_done(void *job) { return ordered_job_ops.done(&((replay_job *)job)->oj); }

static const job_ops replay_job_ops = {rj_next, rj_complete, rj_discard, rj_done, NULL};

/* Replay rec[0..n) with policy p (outermost) whose replay layer is `replay`. */
static void run_replay(const char *example, const observation *obs, size_t n_obs, policy *p, policy *replay,
                       trace **rec, uint64_t n, const char *resample, keep_ctx *out, uint8_t *diverged,
                       engine_stats *st)
{
    char rel[64];
    snprintf(rel, sizeof rel, "examples/%s", example);
    char *cmd = sim_cmd(rel);
    engine_config c;
    config(&c, cmd, 2, obs, n_obs);
    engine *e = start(&c);
    keep_init(out, n);
    replay_job j;
    memset(&j, 0, sizeof j);
    cr_assert_eq(ordered_job_init(&j.oj, n, 64, keep_commit, out), 0);
    j.oj.no_backups = 1; /* the replay policy's mismatch count must see each trace once */
    j.replay = replay;
    j.rec = rec;
    j.resample = resample;
    j.diverged = diverged;
    cr_assert_eq(engine_run(e, p, &replay_job_ops, &j), 0);
    cr_assert_eq(j.oj.failed, 0);
    *st = *engine_get_stats(e);
    ordered_job_free(&j.oj);
    engine_destroy(&e);
    free(cmd);
}

Test(replay, galton_same_parameters_identical)
{
    const uint64_t n = 60;
    keep_ctx rec, rep;
    engine_stats st;
    run_keep("galton", 2, NULL, 0, n, 11, &rec, &st);
    /* A different seed underneath: any draw not replayed would differ. */
    policy *p = policy_replay_new(policy_prior_new(2, 999), 2);
    uint8_t *div = calloc(n, 1);
    run_replay("galton", NULL, 0, p, p, rec.t, n, NULL, &rep, div, &st);
    cr_assert_eq(st.discarded_total, 0);
    cr_assert_eq(policy_replay_mismatches(p), 0, "%llu mismatches replaying under the same parameters",
                 (unsigned long long)policy_replay_mismatches(p));
    for (uint64_t i = 0; i < n; i++) {
        const trace *a = rec.t[i], *b = rep.t[i];
        cr_assert_eq(div[i], 0, "trace %llu diverged", (unsigned long long)i);
        cr_assert_eq(a->n_entries, 22, "galton: theta, 20 rows, tag x");
        cr_assert_eq(b->n_entries, a->n_entries);
        for (size_t k = 0; k < a->n_entries; k++) {
            const trace_entry *x = &a->entries[k], *y = &b->entries[k];
            cr_assert_str_eq(x->address, y->address);
            cr_assert_eq(x->kind, y->kind);
            cr_assert_eq(x->value.len, y->value.len);
            cr_assert_eq(memcmp(x->value.data, y->value.data, x->value.len * sizeof(double)), 0,
                         "trace %llu entry %zu (%s): value differs", (unsigned long long)i, k, x->address);
            cr_assert_eq(x->log_prob, y->log_prob, "trace %llu entry %zu: log-prob differs", (unsigned long long)i, k);
        }
        /* The rows share one call site: instances 1..20 of galton_row__Bernoulli. */
        cr_assert_str_eq(a->entries[1].address, "galton_row__Bernoulli__1");
        cr_assert_str_eq(a->entries[20].address, "galton_row__Bernoulli__20");
        cr_assert_str_eq(a->entries[21].address, "x__Tag__1");
        cr_assert_eq(a->log_prior, b->log_prior);
        cr_assert_eq(a->log_weight, b->log_weight);
        cr_assert_eq(a->result.len, 1);
        cr_assert_eq(b->result.data[0], a->result.data[0]);
    }
    free(div);
    policy_destroy(&p);
    keep_free(&rec);
    keep_free(&rep);
}

static double fib(int n)
{
    double a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        double c = a + b;
        a = b;
        b = c;
    }
    return a;
}

static double g_obs_branch = 7.0;
static observation g_branch_obs[1] = {{"obs", &g_obs_branch, 1}};

/* Replay branching traces with r set to fixed_r: the replay layer hands "r"
 * to the fixed policy (resample address) and replays everything else. */
static void branching_fixed_r(double fixed_r)
{
    const uint64_t n = 80;
    keep_ctx rec, rep;
    engine_stats st;
    run_keep("branching", 2, g_branch_obs, 1, n, 21, &rec, &st);
    double rv[1] = {fixed_r};
    fixed_value fv = {"r", rv, 1, FIXED_SET};
    policy *replay = policy_replay_new(policy_fixed_new(policy_prior_new(2, 5), &fv, 1), 2);
    cr_assert_not_null(replay);
    uint8_t *div = calloc(n, 1);
    run_replay("branching", g_branch_obs, 1, replay, replay, rec.t, n, "r__Poisson__1", &rep, div, &st);
    cr_assert_eq(st.discarded_total, 0);
    /* Expected control-flow changes: the recording took the other branch
     * (r <= 4 draws s, r > 4 does not). */
    uint64_t expect = 0;
    for (uint64_t i = 0; i < n; i++) {
        const trace *a = rec.t[i], *b = rep.t[i];
        double r0 = a->entries[0].value.data[0];
        int had_s = r0 <= 4, has_s = fixed_r <= 4;
        cr_assert_eq(a->n_entries, had_s ? 3u : 2u);
        cr_assert_eq(b->n_entries, has_s ? 3u : 2u);
        cr_assert_str_eq(b->entries[0].address, "r__Poisson__1");
        cr_assert_eq(b->entries[0].value.data[0], fixed_r, "r is set");
        cr_assert_eq(b->entries[0].observed, 0, "a set value is not observed");
        uint64_t changes = had_s != has_s;
        expect += changes;
        cr_assert_eq(div[i], changes, "trace %llu: diverged %d, expected %d", (unsigned long long)i, div[i],
                     (int)changes);
        const trace_entry *ob = &b->entries[b->n_entries - 1];
        cr_assert_str_eq(ob->address, "obs__Poisson__1");
        if (has_s) {
            cr_assert_str_eq(b->entries[1].address, "s__Poisson__1");
            double s = b->entries[1].value.data[0];
            if (had_s) cr_assert_eq(s, a->entries[1].value.data[0], "trace %llu: s is replayed", (unsigned long long)i);
            cr_assert_eq(ob->param[0].data[0], 1 + fib((int)(3 * fixed_r)) + s);
        } else {
            cr_assert_eq(ob->param[0].data[0], 6.0);
        }
        cr_assert_eq(ob->value.data[0], 7.0, "observed value");
    }
    cr_log_info("fixed r = %g: %llu of %llu traces changed branch", fixed_r, (unsigned long long)expect,
                (unsigned long long)n);
    cr_assert(expect > 0, "no recording took the other branch: the test proves nothing");
    cr_assert_eq(policy_replay_mismatches(replay), expect, "mismatches %llu, expected %llu",
                 (unsigned long long)policy_replay_mismatches(replay), (unsigned long long)expect);
    free(div);
    policy_destroy(&replay);
    keep_free(&rec);
    keep_free(&rep);
}

Test(replay, branching_fixed_r_small_changes_control_flow) { branching_fixed_r(2.0); }
Test(replay, branching_fixed_r_large_changes_control_flow) { branching_fixed_r(7.0); }

/* --- the other examples through the engine ------------------------------------------------- */

Test(examples_engine, hmm_500_traces)
{
    static const double trans[3][3] = {{0.1, 0.5, 0.4}, {0.2, 0.2, 0.6}, {0.15, 0.15, 0.7}};
    static const double means[3] = {-1.0, 1.0, 0.0};
    const uint64_t n = 500;
    keep_ctx k;
    engine_stats st;
    run_keep("hmm", 3, NULL, 0, n, 31, &k, &st);
    cr_assert_eq(st.discarded_total, 0);
    cr_assert_eq(st.restarts, 0);
    cr_assert_eq(st.traces_done, n);
    uint64_t count0[3] = {0, 0, 0};
    for (uint64_t i = 0; i < n; i++) {
        const trace *t = k.t[i];
        cr_assert_eq(t->n_entries, 33);
        cr_assert_str_eq(t->entries[0].address, "x0__Categorical(len_probs:3)__1");
        int prev = (int)t->entries[0].value.data[0];
        cr_assert(prev >= 0 && prev <= 2);
        count0[prev]++;
        cr_assert_float_eq(t->entries[0].log_prob, log(1.0 / 3), 1e-12, "unnormalised init weights");
        cr_assert_eq(t->result.len, 17);
        cr_assert_eq(t->result.data[0], prev);
        for (int s = 1; s <= 16; s++) {
            const trace_entry *x = &t->entries[2 * s - 1], *y = &t->entries[2 * s];
            char want[64];
            snprintf(want, sizeof want, "x__Categorical(len_probs:3)__%d", s);
            cr_assert_str_eq(x->address, want);
            snprintf(want, sizeof want, "y__Normal__%d", s);
            cr_assert_str_eq(y->address, want);
            cr_assert_eq(x->kind, TRACE_SAMPLE);
            cr_assert_eq(y->kind, TRACE_OBSERVE);
            cr_assert_eq(x->k, 3);
            for (int j = 0; j < 3; j++) cr_assert_eq(x->param[0].data[j], trans[prev][j]);
            int cur = (int)x->value.data[0];
            cr_assert(cur >= 0 && cur <= 2 && x->value.data[0] == cur);
            cr_assert_float_eq(x->log_prob, log(trans[prev][cur]), 1e-12);
            cr_assert_eq(y->param[0].data[0], means[cur]);
            cr_assert(isfinite(y->value.data[0]) && isfinite(y->log_prob));
            cr_assert_eq(t->result.data[s], cur);
            prev = cur;
        }
    }
    /* x0 is uniform over 3 states. */
    for (int j = 0; j < 3; j++) {
        double f = (double)count0[j] / n;
        cr_assert(fabs(f - 1.0 / 3) < 3 * sqrt(2.0 / 9 / n), "P(x0 = %d) = %g", j, f);
    }
    keep_free(&k);
}

Test(examples_engine, branching_500_traces)
{
    const uint64_t n = 500;
    keep_ctx k;
    engine_stats st;
    run_keep("branching", 3, NULL, 0, n, 41, &k, &st);
    cr_assert_eq(st.discarded_total, 0);
    cr_assert_eq(st.restarts, 0);
    cr_assert_eq(st.traces_done, n);
    uint64_t low = 0;
    for (uint64_t i = 0; i < n; i++) {
        const trace *t = k.t[i];
        const trace_entry *r = &t->entries[0];
        cr_assert_str_eq(r->address, "r__Poisson__1");
        cr_assert_eq(r->param[0].data[0], 4.0);
        double rv = r->value.data[0];
        cr_assert(rv >= 0 && rv == floor(rv));
        const trace_entry *ob = &t->entries[t->n_entries - 1];
        cr_assert_str_eq(ob->address, "obs__Poisson__1");
        cr_assert_eq(ob->kind, TRACE_OBSERVE);
        if (rv <= 4) {
            low++;
            cr_assert_eq(t->n_entries, 3);
            cr_assert_str_eq(t->entries[1].address, "s__Poisson__1");
            cr_assert_eq(ob->param[0].data[0], 1 + fib((int)(3 * rv)) + t->entries[1].value.data[0]);
        } else {
            cr_assert_eq(t->n_entries, 2);
            cr_assert_eq(ob->param[0].data[0], 6.0);
        }
        double ov = ob->value.data[0];
        cr_assert(ov >= 0 && ov == floor(ov) && isfinite(ob->log_prob), "obs drawn from its Poisson");
        cr_assert_eq(t->result.data[0], rv);
    }
    /* P(r <= 4) for r ~ Poisson(4) = e^-4 (1 + 4 + 8 + 32/3 + 32/3) = 0.62884. */
    double p = exp(-4.0) * (1 + 4 + 8 + 32.0 / 3 + 32.0 / 3), f = (double)low / n;
    cr_assert(fabs(f - p) < 3 * sqrt(p * (1 - p) / n), "P(r <= 4) = %g, want %g", f, p);
    keep_free(&k);
}
