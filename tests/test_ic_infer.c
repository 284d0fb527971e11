/* Integration tests of inference compilation: `ppxd train ic` on live
 * example simulators (and from a trace file), then `ppxd infer --method ic`
 * against prior importance sampling and exact posteriors.
 *
 * Tolerances: an importance-sampling mean has standard error sd/sqrt(ESS);
 * a standard deviation about sd/sqrt(2 ESS) (normal posterior); an MCMC
 * mean, the batch-means standard error (autocorrelation included).  Every
 * comparison allows 4 standard errors; seeds are fixed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "export.h"
#include "testkit.h"

static char g_dir[256];

static void setup(void)
{
    cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "ic"), 0);
}

static void teardown(void) { tk_tmpdir_remove(g_dir); }

TestSuite(ic_infer, .init = setup, .fini = teardown, .timeout = 600);

/* Run a shell command, its stdout and stderr into a malloc'd string. */
static char *run(const char *cmd, int *status)
{
    char full[8192];
    snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "popen %s", cmd);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t got;
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap) out = realloc(out, cap *= 2);
    }
    out[len] = 0;
    *status = pclose(p);
    return out;
}

typedef struct result {
    double ess, logz;
    unsigned long long n;
} result;

static result parse_is(const char *out, const char *kind)
{
    char key[64];
    snprintf(key, sizeof key, "importance sampling (%s proposal): ", kind);
    const char *s = strstr(out, key);
    cr_assert(s, "no summary in output:\n%s", out);
    result r;
    cr_assert_eq(sscanf(s + strlen(key), "%llu traces, ESS %lf, log evidence %lf", &r.n, &r.ess, &r.logz), 3, "%s", s);
    return r;
}

/* mean and sd of a latent from the summary table. */
static void parse_latent(const char *out, const char *kind, const char *name, double *mean, double *sd)
{
    char key[64];
    snprintf(key, sizeof key, "importance sampling (%s proposal): ", kind);
    const char *s = strstr(out, key);
    cr_assert(s);
    char pat[80];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *l = strstr(s, pat);
    cr_assert(l, "no row %s in\n%s", name, s);
    cr_assert_eq(sscanf(l + strlen(pat), "%lf %lf", mean, sd), 2);
}

static char *sim(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "examples/%s", name);
    return tk_build_path(rel);
}

static char *train(const char *model, const char *extra, const char *name)
{
    char *ppxd = tk_build_path("ppxd"), *s = sim(model);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train ic --sim-cmd '%s {endpoint}' -j 2 --seed 1 --quiet %s -o %s/%s", ppxd, s, extra,
             g_dir, name);
    int st;
    char *out = run(cmd, &st);
    cr_assert_eq(st, 0, "%s\n%s", cmd, out);
    free(ppxd);
    free(s);
    return out;
}

static char *infer(const char *model, const char *method, const char *obs, long n, int *status)
{
    char *ppxd = tk_build_path("ppxd"), *s = sim(model);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s infer %s --sim-cmd '%s {endpoint}' -j 2 -n %ld --seed 3 --quiet %s", ppxd, method, s,
             n, obs);
    char *out = run(cmd, status);
    free(ppxd);
    free(s);
    return out;
}

Test(ic_infer, gaussian_posterior_and_ess)
{
    free(train("gaussian", "--max-traces 20000", "g.ppxm"));
    char method[512];
    snprintf(method, sizeof method, "--method ic --model %s/g.ppxm", g_dir);
    int st;
    const char *obs = "--observe obs0=8 --observe obs1=9";
    char *ic = infer("gaussian", method, obs, 10000, &st);
    cr_assert_eq(st, 0, "%s", ic);
    char *pr = infer("gaussian", "", obs, 10000, &st);
    cr_assert_eq(st, 0, "%s", pr);
    result ri = parse_is(ic, "IC"), rp = parse_is(pr, "prior");
    double mean, sd;
    parse_latent(ic, "IC", "mu", &mean, &sd);
    const double m0 = 7.25, s0 = sqrt(1.0 / (1.0 / 5.0 + 2.0 / 2.0)); /* 0.9129 */
    cr_assert(fabs(mean - m0) < 4 * s0 / sqrt(ri.ess), "IC mean %g vs %g (ESS %g)", mean, m0, ri.ess);
    cr_assert(fabs(sd - s0) < 4 * s0 / sqrt(2 * ri.ess), "IC sd %g vs %g (ESS %g)", sd, s0, ri.ess);
    cr_assert(ri.ess >= 10 * rp.ess, "IC ESS %g, prior ESS %g", ri.ess, rp.ess);
    cr_assert(strstr(ic, "0 at 0 unseen addresses"), "%s", ic);
    free(ic);
    free(pr);
}

/* An informative observation within the range of the training data: the
 * states alternate between the two outer means, which the transition
 * matrix makes unlikely a priori, so prior IS is poor (ESS of a few) while
 * the posterior is well defined.  (pyprob's test observation, with y = -5
 * and 6, asks the network to extrapolate far outside its training data; the
 * benchmark reports that one.) */
static const double hmm_y[16] = {2.2, -2.1, 1.8, -1.9, 2.4, 0.1, -2.3, 2.0, -1.8, 2.2, 0.0, -2.2, 1.9, -2.0, 2.1, -1.7};

Test(ic_infer, hmm_ess_ten_times_prior)
{
    free(train("hmm", "--max-traces 20000 --reuse 2", "h.ppxm"));
    char obs[2048] = "", method[512];
    for (int i = 0; i < 16; i++) {
        size_t l = strlen(obs);
        snprintf(obs + l, sizeof obs - l, " --observe y%d=%g", i + 1, hmm_y[i]);
    }
    snprintf(method, sizeof method, "--method ic --model %s/h.ppxm", g_dir);
    int st;
    char *ic = infer("hmm", method, obs, 5000, &st);
    cr_assert_eq(st, 0, "%s", ic);
    char *pr = infer("hmm", "", obs, 5000, &st);
    cr_assert_eq(st, 0, "%s", pr);
    result ri = parse_is(ic, "IC"), rp = parse_is(pr, "prior");
    cr_assert(ri.ess >= 10 * rp.ess, "IC ESS %g, prior ESS %g", ri.ess, rp.ess);
    /* the same log evidence within the IS noise (both estimate log Z) */
    cr_assert(fabs(ri.logz - rp.logz) < 1.0, "log evidence IC %g, prior %g", ri.logz, rp.logz);
    free(ic);
    free(pr);
}

static const char *ad_names[11] = {"normal", "uniform", "categorical", "poisson", "bernoulli", "beta",
                                   "exponential", "gamma", "lognormal", "binomial", "weibull"};
static const double ad_y[11] = {2, 0.5, 2, 4, 1, 0.3, 0.5, 0.6, 1.8, 5, 1.5};

/* The mean of column j of a chain [n, cols] and its standard error by batch
 * means: NB batches of n / NB steps; with batches much longer than the
 * chain's autocorrelation time their means are ~independent, so SE^2 =
 * var(batch means) / NB.  (LMH here redraws one of 11 sites per step with
 * acceptance ~0.5, so a latent's autocorrelation time is some tens of
 * steps; batches of 1,000 steps are long against it.) */
#define NB 30
static void batch_means(const double *v, size_t n, size_t cols, size_t j, double *mean, double *se)
{
    size_t b = n / NB;
    double bm[NB], m = 0;
    for (int k = 0; k < NB; k++) {
        bm[k] = 0;
        for (size_t i = k * b; i < (k + 1) * b; i++) bm[k] += v[i * cols + j] / (double)b;
        m += bm[k] / NB;
    }
    double var = 0;
    for (int k = 0; k < NB; k++) var += (bm[k] - m) * (bm[k] - m) / (NB - 1);
    *mean = m;
    *se = sqrt(var / NB);
}

Test(ic_infer, all_distributions_train_and_infer)
{
    free(train("all_dists_obs", "--max-traces 20000", "ad.ppxm"));
    char obs[2048] = "", method[512], lmh[2048];
    for (int i = 0; i < 11; i++) {
        size_t l = strlen(obs);
        snprintf(obs + l, sizeof obs - l, " --observe y_%s=%g", ad_names[i], ad_y[i]);
    }
    snprintf(method, sizeof method, "--method ic --model %s/ad.ppxm", g_dir);
    int st;
    char *ic = infer("all_dists_obs", method, obs, 10000, &st);
    cr_assert_eq(st, 0, "%s", ic);
    /* reference: a long LMH run, 2 chains (one per simulator) x 30,000 samples after burn-in, the latents in
     * ad_names order */
    int len = snprintf(lmh, sizeof lmh, "--method lmh --samples-out %s/lmh.npy", g_dir);
    for (int i = 0; i < 11; i++) len += snprintf(lmh + len, sizeof lmh - (size_t)len, " --latent %s", ad_names[i]);
    char *mc = infer("all_dists_obs", lmh, obs, 60000, &st);
    cr_assert_eq(st, 0, "%s", mc);
    result ri = parse_is(ic, "IC");
    /* Every draw proposed (a backup copy of a straggling trace proposes its
     * draws again, so at least 11 per trace), none from the prior. */
    const char *rep = strstr(ic, "IC: ");
    unsigned long proposed = 0;
    cr_assert(rep && sscanf(rep, "IC: %lu draws proposed by the network", &proposed) == 1, "%s", ic);
    cr_assert(proposed >= 110000, "every draw proposed:\n%s", ic);
    cr_assert(strstr(ic, "from the prior: 0 uncontrolled, 0 at 0 unseen addresses"), "none from the prior:\n%s", ic);
    cr_assert(ri.ess > 100, "IC ESS %g of 10000", ri.ess);
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/lmh.npy", g_dir);
    double *v;
    size_t rows, cols;
    cr_assert_eq(npy_read(path, &v, &rows, &cols, err, sizeof err), 0, "%s", err);
    cr_assert(rows == 60000 && cols == 11, "%zu x %zu LMH samples", rows, cols);
    for (int i = 0; i < 11; i++) {
        double mi, si;
        parse_latent(ic, "IC", ad_names[i], &mi, &si);
        /* the two chains (rows 0..29999 and 30000..59999), equally long: mean of the means */
        double m0, s0, m1, s1;
        batch_means(v, rows / 2, cols, (size_t)i, &m0, &s0);
        batch_means(v + rows / 2 * cols, rows / 2, cols, (size_t)i, &m1, &s1);
        double mp = 0.5 * (m0 + m1), sp = 0.5 * sqrt(s0 * s0 + s1 * s1);
        double se = sqrt(si * si / ri.ess + sp * sp);
        cr_expect(fabs(mi - mp) < 4 * se, "%s: IC mean %g, LMH %g (se IC %g, LMH %g)", ad_names[i], mi, mp,
                  si / sqrt(ri.ess), sp);
        fprintf(stderr, "all_dists %-11s IC %8.4f (se %.4f)  LMH %8.4f (se %.4f)\n", ad_names[i], mi, si / sqrt(ri.ess),
                mp, sp);
    }
    free(v);
    free(ic);
    free(mc);
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

static double lpois(double x, double l) { return x * log(l) - l - lgamma(x + 1); }

Test(ic_infer, branching_exact_posterior)
{
    free(train("branching", "--max-traces 20000", "b.ppxm"));
    const double y = 6;
    /* exact posterior of r by enumeration */
    double z = 0, m1 = 0, m2 = 0;
    for (int r = 0; r < 60; r++) {
        double like = 0;
        if (r > 4) like = exp(lpois(y, 6));
        else
            for (int s = 0; s < 200; s++) like += exp(lpois(s, 4) + lpois(y, 1 + fib(3 * r) + s));
        double w = exp(lpois(r, 4)) * like;
        z += w;
        m1 += w * r;
        m2 += w * r * r;
    }
    double mean0 = m1 / z, sd0 = sqrt(m2 / z - mean0 * mean0);
    char method[512];
    snprintf(method, sizeof method, "--method ic --model %s/b.ppxm", g_dir);
    int st;
    char *ic = infer("branching", method, "--observe obs=6", 10000, &st);
    cr_assert_eq(st, 0, "%s", ic);
    result ri = parse_is(ic, "IC");
    double mean, sd;
    parse_latent(ic, "IC", "r", &mean, &sd);
    cr_assert(fabs(mean - mean0) < 4 * sd0 / sqrt(ri.ess), "IC mean %g, exact %g (ESS %g)", mean, mean0, ri.ess);
    cr_assert(strstr(ic, "0 at 0 unseen addresses"), "%s", ic);
    free(ic);
}

/* Trained only on traces with r fixed above 4, the network never sees s:
 * at inference, every s draw is unseen, answered from the prior and
 * counted, and the result stays a valid importance sampler. */
Test(ic_infer, branching_unseen_addresses_counted)
{
    char *ppxd = tk_build_path("ppxd"), *s = sim("branching");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s simulate --sim-cmd '%s {endpoint}' -j 2 -n 3000 --fix r=6 --quiet -o %s/r6.ppxt", ppxd, s,
             g_dir);
    int st;
    char *out = run(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s train ic --data %s/r6.ppxt --epochs 2 --quiet -o %s/r6.ppxm", ppxd, g_dir, g_dir);
    out = run(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    char method[512];
    snprintf(method, sizeof method, "--method ic --model %s/r6.ppxm", g_dir);
    char *ic = infer("branching", method, "--observe obs=6", 4000, &st);
    cr_assert_eq(st, 0, "%s", ic);
    unsigned long long proposed, unc, unseen, addrs;
    const char *l = strstr(ic, "ppxd: IC: ");
    cr_assert(l, "%s", ic);
    cr_assert_eq(sscanf(l, "ppxd: IC: %llu draws proposed by the network in %*u batches; from the prior: %llu "
                           "uncontrolled, %llu at %llu unseen addresses",
                        &proposed, &unc, &unseen, &addrs),
                 4, "%s", l);
    cr_assert(proposed >= 4000, "every r is proposed (backup copies of stragglers propose again): %llu", proposed);
    cr_assert(unseen > 100 && unseen < 4000, "s drawn in the traces with r <= 4: %llu", unseen);
    cr_assert_eq(addrs, 1);
    cr_assert(strstr(ic, "unseen address s__Poisson__1"), "%s", ic);
    parse_is(ic, "IC");
    free(ic);
    free(ppxd);
    free(s);
}

Test(ic_infer, usage_errors)
{
    char *ppxd = tk_build_path("ppxd");
    char cmd[1024];
    int st;
    snprintf(cmd, sizeof cmd, "%s infer --method ic --sim-cmd 'x {endpoint}' -n 10", ppxd);
    char *out = run(cmd, &st);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s", out);
    cr_assert(strstr(out, "--model"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s train ic -o %s/x.ppxm", ppxd, g_dir);
    out = run(cmd, &st);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s train ic --data %s/none.ppxt --lr-decay linear -o %s/x.ppxm", ppxd, g_dir, g_dir);
    out = run(cmd, &st);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s", out);
    cr_assert(strstr(out, "--lr-decay wants cosine or none"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s infer --method ic --model /nonexistent.ppxm --sim-cmd '%s/examples/gaussian {endpoint}' -n 10 --quiet",
             ppxd, getenv("PPXD_BUILD") ? getenv("PPXD_BUILD") : "build");
    out = run(cmd, &st);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s", out);
    cr_assert(strstr(out, "nonexistent"), "%s", out);
    free(out);
    free(ppxd);
}

/* SIGINT during online training: the best network so far is written and
 * usable, exit status 0. */
Test(ic_infer, interrupt_keeps_best)
{
    char *ppxd = tk_build_path("ppxd"), *s = sim("gaussian");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s train ic --sim-cmd '%s {endpoint}' -j 2 --max-traces 100000000 --val 100 --val-every 10 "
             "-o %s/int.ppxm & pid=$!; sleep 6; kill -INT $pid; wait $pid",
             ppxd, s, g_dir);
    int st;
    char *out = run(cmd, &st);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", out);
    cr_assert(strstr(out, "interrupted: keeping the best network"), "%s", out);
    cr_assert(strstr(out, "wrote "), "%s", out);
    free(out);
    char method[512];
    snprintf(method, sizeof method, "--method ic --model %s/int.ppxm", g_dir);
    out = infer("gaussian", method, "--observe obs0=8 --observe obs1=9", 2000, &st);
    cr_assert_eq(st, 0, "%s", out);
    parse_is(out, "IC");
    free(out);
    free(ppxd);
    free(s);
}

/* Offline training from a trace file is reproducible for a given seed. */
Test(ic_infer, offline_training_reproducible)
{
    char *ppxd = tk_build_path("ppxd"), *s = sim("gaussian");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s simulate --sim-cmd '%s {endpoint}' -j 2 -n 3000 --quiet -o %s/g.ppxt", ppxd, s, g_dir);
    int st;
    char *out = run(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    free(out);
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "%s train ic --data %s/g.ppxt --epochs 2 --val 200 --seed 5 --quiet -o %s/o%d.ppxm",
                 ppxd, g_dir, g_dir, i);
        out = run(cmd, &st);
        cr_assert_eq(st, 0, "%s", out);
        free(out);
    }
    char p0[512], p1[512];
    snprintf(p0, sizeof p0, "%s/o0.ppxm", g_dir);
    snprintf(p1, sizeof p1, "%s/o1.ppxm", g_dir);
    size_t n0, n1;
    unsigned char *a = tk_slurp(p0, &n0), *b = tk_slurp(p1, &n1);
    cr_assert(a && b && n0 == n1);
    /* the files differ only in the creation time and training seconds: compare the parameters (the tail) */
    size_t tail = n0 / 2;
    cr_assert_eq(memcmp(a + n0 - tail, b + n1 - tail, tail - 4), 0, "parameters differ");
    free(a);
    free(b);
    free(ppxd);
    free(s);
}

/* Online training consumes traces in index order, each from its own RNG
 * stream: the same seed gives the same network with 1 or 2 simulators. */
Test(ic_infer, online_training_reproducible_across_simulator_counts)
{
    char *ppxd = tk_build_path("ppxd"), *s = sim("gaussian");
    char cmd[4096];
    int st;
    for (int j = 1; j <= 2; j++) {
        snprintf(cmd, sizeof cmd,
                 "%s train ic --sim-cmd '%s {endpoint}' -j %d --max-traces 3000 --val 200 --seed 4 --quiet -o %s/j%d.ppxm",
                 ppxd, s, j, g_dir, j);
        char *out = run(cmd, &st);
        cr_assert_eq(st, 0, "%s", out);
        free(out);
    }
    char p0[512], p1[512];
    snprintf(p0, sizeof p0, "%s/j1.ppxm", g_dir);
    snprintf(p1, sizeof p1, "%s/j2.ppxm", g_dir);
    size_t n0, n1;
    unsigned char *a = tk_slurp(p0, &n0), *b = tk_slurp(p1, &n1);
    cr_assert(a && b);
    /* the provenance (source text) differs; the parameters are the tail */
    size_t tail = (n0 < n1 ? n0 : n1) / 2;
    cr_assert_eq(memcmp(a + n0 - tail, b + n1 - tail, tail - 4), 0, "parameters differ between -j 1 and -j 2");
    free(a);
    free(b);
    free(ppxd);
    free(s);
}
