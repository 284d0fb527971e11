/* Tests for gold mining (server/mine.c, src/gold/gold_data.c).
 *
 * Galton board (clients/examples/galton): the exact oracle is a dynamic
 * programme over (row, position) carrying p(pos) and dp/dtheta, giving
 * p(x|theta), log r(x|theta0,theta1) and t(x|theta) = d log p(x|theta)/dtheta.
 * The mined joint quantities must satisfy (goldmining.md):
 *   E[t(x,z|theta0)] = 0 over rows simulated at theta0,
 *   E[r(x,z|theta0,theta1)] = 1 over rows simulated at theta1,
 *   E[t(x,z)|x] = t(x) and E[r(x,z)|x] = r(x) in every bin,
 * each checked within Z = 4 standard errors (sample sd / sqrt(count)); bins
 * with fewer than 30 rows are skipped (their sd estimate is poor).
 *
 * Every distribution (tests/sims/sim_dists_theta): one draw of each kind but
 * Uniform, parameters smooth in theta, values tagged as x; the mined log r
 * must equal the sum of dist_log_prob differences to rounding, and the
 * finite-difference score the closed form sum of dist_grad_log_prob x
 * d params / d theta to the FD error (eps = 2.9e-5: truncation ~1e-9,
 * rounding ~1e-10; tolerance 1e-5).
 *
 * Gaussian (clients/examples/gaussian): mu ~ N(1, sqrt 5) named "mu", and two
 * Observes obs0, obs1 ~ N(mu, sqrt 2) whose values ppxd draws.  The joint
 * quantities are closed-form given the observed values:
 *   log r = sum_i [log N(o_i|mu0, s) - log N(o_i|mu1, s)],  t = sum_i (o_i - mu0)/s^2,
 * so the replayed ratio must match to rounding and the FD score to the
 * central-difference error (exact for a quadratic log-density: only
 * rounding, ~1e-16 |log p| / eps).  This also checks that replays reuse the
 * recorded Observe values (the policy hook) rather than drawing new ones.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "export.h"
#include "gold/gold_data.h"
#include "mine.h"
#include "galton.h"
#include "testkit.h"
#include "sims/sim_dists_theta.h"

#define Z 4.0
#define NPOS TK_GALTON_NPOS

TestSuite(mine, .timeout = 240);

/* ---- exact oracle ---------------------------------------------------------- */

Test(mine, galton_oracle_matches_published_values)
{
    double p0[NPOS], d0[NPOS], p1[NPOS], d1[NPOS];
    tk_galton_exact(-0.8, p0, d0);
    tk_galton_exact(-0.6, p1, d1);
    const struct {
        int x;
        double logr, t;
    } want[] = {{5, 0.744, -2.911}, {11, -0.004, 0.125}, {15, -0.309, 1.570}, {20, 0.159, -0.587}, {25, 0.721, -2.770}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const int x = want[i].x;
        const double lr = log(p0[x]) - log(p1[x]), t = d0[x] / p0[x];
        cr_assert(fabs(lr - want[i].logr) < 1e-3, "x %d: log r %.5f, published %.3f", x, lr, want[i].logr);
        cr_assert(fabs(t - want[i].t) < 1e-3, "x %d: t %.5f, published %.3f", x, t, want[i].t);
    }
    /* MSE of log r^ = 0 weighted by p(x|theta1) and the Fisher information */
    double mse = 0, fisher = 0, sum = 0;
    for (int x = 0; x < NPOS; x++) {
        sum += p0[x];
        if (p1[x] > 0) mse += p1[x] * pow(log(p0[x]) - log(p1[x]), 2);
        if (p0[x] > 0) fisher += d0[x] * d0[x] / p0[x];
    }
    cr_assert(fabs(sum - 1) < 1e-12);
    cr_assert(fabs(mse - 0.0632) < 5e-4, "trivial MSE %.5f, published 0.0632", mse);
    cr_assert(fabs(fisher - 1.41) < 0.01, "Fisher information %.4f, published 1.41", fisher);
}

/* ---- mining helpers --------------------------------------------------------- */

/* Mine n rows from `sim` ("rel/path [args]", relative to the build
 * directory) at theta0 = th0 (and theta1 = th1 with has_th1, rows
 * alternating), with the given score method. */
static int mine_sim_m(const char *sim, mine_score_method method, const char *theta_name, const char *x_name,
                      double th0, double th1, int has_th1, uint64_t n, int sims, gold_data *g)
{
    char rel[128];
    snprintf(rel, sizeof rel, "%s", sim);
    char *args = strchr(rel, ' ');
    if (args) *args++ = 0;
    char *path = tk_build_path(rel);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s%s{endpoint}", path, args ? args : "", args ? " " : "");
    free(path);
    mine_opts o;
    memset(&o, 0, sizeof o);
    engine_config_defaults(&o.ecfg);
    o.ecfg.sim_cmd = cmd;
    o.ecfg.n_launch = (size_t)sims;
    const char *tn[1] = {theta_name};
    const char *xn[2] = {x_name, NULL};
    size_t n_x = 1;
    if (strchr(x_name, ',')) { /* "a,b" */
        static char buf[64];
        snprintf(buf, sizeof buf, "%s", x_name);
        char *c = strchr(buf, ',');
        *c = 0;
        xn[0] = buf;
        xn[1] = c + 1;
        n_x = 2;
    }
    o.theta_names = tn;
    o.D = 1;
    o.x_names = xn;
    o.n_x = n_x;
    o.mode = MINE_THETA_FIXED;
    o.theta0 = &th0;
    o.theta1 = has_th1 ? &th1 : NULL;
    o.K = has_th1 ? 1 : 0;
    o.theta1_rows = has_th1;
    o.score = 1;
    o.score_method = method;
    o.n = n;
    o.seed = 7;
    o.quiet = 1;
    mine_stats st;
    return mine_run(&o, g, &st);
}

static int mine_sim(const char *sim, const char *theta_name, const char *x_name, double th0, double th1, int has_th1,
                    uint64_t n, int sims, gold_data *g)
{
    return mine_sim_m(sim, MINE_SCORE_AUTO, theta_name, x_name, th0, th1, has_th1, n, sims, g);
}

typedef struct acc {
    double n, s, s2;
} acc;

static void acc_add(acc *a, double v)
{
    a->n++;
    a->s += v;
    a->s2 += v * v;
}
static double acc_mean(const acc *a) { return a->s / a->n; }
static double acc_se(const acc *a)
{
    double m = acc_mean(a);
    return sqrt(fmax(0, (a->s2 - a->n * m * m) / (a->n - 1)) / a->n);
}

Test(mine, galton_joint_quantities_match_the_exact_oracle)
{
    gold_data g;
    cr_assert_eq(mine_sim("examples/galton", "theta", "x", -0.8, -0.6, 1, 8000, 2, &g), 0);
    cr_assert_eq(g.n, 8000, "rows %zu (dropped %llu)", g.n, (unsigned long long)gold_data_bad_total(&g));
    cr_assert_eq(g.D, 1);
    cr_assert_eq(g.C, 1);
    cr_assert(g.has_score && g.K == 1);
    double p0[NPOS], d0[NPOS], p1[NPOS], d1[NPOS];
    tk_galton_exact(-0.8, p0, d0);
    tk_galton_exact(-0.6, p1, d1);
    acc t_all = {0}, r_all = {0}, t_bin[NPOS] = {{0}}, r_bin[NPOS] = {{0}};
    for (size_t i = 0; i < g.n; i++) {
        cr_assert_eq(g.theta0[i], -0.8);
        cr_assert_eq(g.theta1[i], -0.6);
        const int x = (int)g.x[i];
        cr_assert(x >= 0 && x < NPOS && g.x[i] == x);
        if (g.y[i] == 0) {
            acc_add(&t_all, g.t[i]);
            acc_add(&t_bin[x], g.t[i]);
        } else {
            acc_add(&r_all, exp(g.log_r[i]));
            acc_add(&r_bin[x], exp(g.log_r[i]));
        }
    }
    cr_assert_eq(t_all.n, 4000);
    cr_assert(fabs(acc_mean(&t_all)) < Z * acc_se(&t_all), "E[t] = %.4f +- %.4f", acc_mean(&t_all), acc_se(&t_all));
    cr_assert(fabs(acc_mean(&r_all) - 1) < Z * acc_se(&r_all), "E[r] = %.4f +- %.4f", acc_mean(&r_all),
              acc_se(&r_all));
    /* the joint score's spread (spec: sd ~ 1.53): within 10% */
    const double sd = acc_se(&t_all) * sqrt(t_all.n);
    cr_assert(fabs(sd - 1.53) < 0.15, "sd t = %.3f", sd);
    int bins = 0;
    for (int x = 0; x < NPOS; x++) {
        if (t_bin[x].n >= 30) {
            const double want = d0[x] / p0[x];
            cr_assert(fabs(acc_mean(&t_bin[x]) - want) < Z * acc_se(&t_bin[x]) + 1e-6, "x %d: E[t|x] %.4f +- %.4f, exact %.4f",
                      x, acc_mean(&t_bin[x]), acc_se(&t_bin[x]), want);
            bins++;
        }
        if (r_bin[x].n >= 30) {
            const double want = p0[x] / p1[x];
            cr_assert(fabs(acc_mean(&r_bin[x]) - want) < Z * acc_se(&r_bin[x]) + 1e-6, "x %d: E[r|x] %.4f +- %.4f, exact %.4f",
                      x, acc_mean(&r_bin[x]), acc_se(&r_bin[x]), want);
            bins++;
        }
    }
    cr_assert(bins >= 20, "only %d bins checked", bins);
    gold_data_free(&g);
}

Test(mine, gaussian_observes_replayed_exactly)
{
    gold_data g;
    cr_assert_eq(mine_sim("examples/gaussian", "mu", "obs0,obs1", 1.0, 2.0, 1, 400, 1, &g), 0);
    cr_assert_eq(g.n, 400, "rows %zu (dropped %llu)", g.n, (unsigned long long)gold_data_bad_total(&g));
    cr_assert_eq(g.C, 2);
    const double s2 = 2.0;
    for (size_t i = 0; i < g.n; i++) {
        double lr = 0, t = 0;
        for (int k = 0; k < 2; k++) {
            const double o = g.x[i * 2 + k];
            lr += (-(o - 1.0) * (o - 1.0) + (o - 2.0) * (o - 2.0)) / (2 * s2);
            t += (o - 1.0) / s2;
        }
        cr_assert(fabs(g.log_r[i] - lr) < 1e-9 * (1 + fabs(lr)), "row %zu: log r %.12g, exact %.12g", i, g.log_r[i], lr);
        cr_assert(fabs(g.t[i] - t) < 1e-6 * (1 + fabs(t)), "row %zu: t %.12g, exact %.12g", i, g.t[i], t);
    }
    gold_data_free(&g);
}

Test(mine, theta0_from_the_prior_pairs_rows)
{
    char *path = tk_build_path("examples/galton");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s {endpoint}", path);
    free(path);
    mine_opts o;
    memset(&o, 0, sizeof o);
    engine_config_defaults(&o.ecfg);
    o.ecfg.sim_cmd = cmd;
    o.ecfg.n_launch = 2;
    const char *tn[1] = {"theta"}, *xn[1] = {"x*"};
    const double th1 = -0.6;
    o.theta_names = tn;
    o.D = 1;
    o.x_names = xn;
    o.n_x = 1;
    o.mode = MINE_THETA_PRIOR;
    o.theta1 = &th1;
    o.K = 1;
    o.theta1_rows = 1;
    o.score = 1;
    o.n = 600;
    o.seed = 3;
    o.quiet = 1;
    gold_data g;
    cr_assert_eq(mine_run(&o, &g, NULL), 0);
    cr_assert_eq(g.n, 600);
    cr_assert_str_eq(g.x_names[0], "x");
    double lo = 1, hi = -1;
    for (size_t i = 0; i < g.n; i += 2) {
        /* a pair: y = 0 simulated at its prior draw, y = 1 at theta1 with the same theta0 */
        cr_assert(g.y[i] == 0 && g.y[i + 1] == 1);
        cr_assert_eq(g.theta0[i], g.theta0[i + 1]);
        lo = fmin(lo, g.theta0[i]);
        hi = fmax(hi, g.theta0[i]);
    }
    cr_assert(lo >= -1 && hi <= 1 && lo < -0.9 && hi > 0.9, "theta0 in [%g, %g]", lo, hi);
    /* rows differ between theta0 draws */
    cr_assert_neq(g.theta0[0], g.theta0[2]);
    gold_data_free(&g);
}

/* log p of draw i at theta and, in *score, its derivative from the closed-form
 * d log p / d params (dist_grad_log_prob) and d params / d theta. */
static double gd_log_p(int i, double th, double x, double *score)
{
    double p0, p1, w[3], d0, d1, dw[3];
    dist_kind k = gd_params_d(i, th, &p0, &p1, w, &d0, &d1, &dw[0]);
    dist d;
    char why[100];
    if (k == DIST_CATEGORICAL) cr_assert_eq(dist_init(&d, k, w, 3, NULL, 0, 3, why, sizeof why), 0, "%s", why);
    else cr_assert_eq(dist_init(&d, k, &p0, 1, &p1, dist_nparams(k) == 2 ? 1 : 0, 0, why, sizeof why), 0, "%s", why);
    double g0[3], g1 = 0;
    dist_grad_log_prob(&d, &x, g0, dist_nparams(k) == 2 ? &g1 : NULL);
    *score = k == DIST_CATEGORICAL ? g0[0] * dw[0] + g0[1] * dw[1] + g0[2] * dw[2] : g0[0] * d0 + g1 * d1;
    return dist_log_prob(&d, &x);
}

Test(mine, every_distribution_matches_closed_forms)
{
    gold_data g;
    cr_assert_eq(mine_sim("testsims/sim_dists_theta", "theta", "x_*", 1.0, 1.2, 1, 300, 2, &g), 0);
    cr_assert_eq(g.n, 300, "rows %zu (dropped %llu)", g.n, (unsigned long long)gold_data_bad_total(&g));
    cr_assert_eq(g.C, GD_N);
    for (size_t r = 0; r < g.n; r++) {
        double lr = 0, t = 0, s;
        for (int i = 0; i < GD_N; i++) {
            const double x = g.x[r * GD_N + i];
            lr += gd_log_p(i, 1.0, x, &s);
            t += s;
            lr -= gd_log_p(i, 1.2, x, &s);
        }
        cr_assert(fabs(g.log_r[r] - lr) < 1e-9 * (1 + fabs(lr)), "row %zu (y %g): log r %.12g, closed form %.12g", r,
                  g.y[r], g.log_r[r], lr);
        cr_assert(fabs(g.t[r] - t) < 1e-5 + 1e-6 * fabs(t), "row %zu (y %g): FD score %.12g, closed form %.12g", r,
                  g.y[r], g.t[r], t);
    }
    gold_data_free(&g);
}

Test(mine, explicit_pairs_are_cycled_and_exact)
{
    char *path = tk_build_path("examples/gaussian");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s {endpoint}", path);
    free(path);
    mine_opts o;
    memset(&o, 0, sizeof o);
    engine_config_defaults(&o.ecfg);
    o.ecfg.sim_cmd = cmd;
    o.ecfg.n_launch = 2;
    const char *tn[1] = {"mu"}, *xn[2] = {"obs0", "obs1"};
    const double pairs[3][2] = {{1.0, 2.0}, {-1.0, 0.5}, {3.0, 2.5}};
    o.theta_names = tn;
    o.D = 1;
    o.x_names = xn;
    o.n_x = 2;
    o.mode = MINE_THETA_PAIRS;
    o.pairs = &pairs[0][0];
    o.n_pairs = 3;
    o.theta1_rows = 1;
    o.score = 1;
    o.n = 60;
    o.seed = 9;
    o.quiet = 1;
    gold_data g;
    cr_assert_eq(mine_run(&o, &g, NULL), 0);
    cr_assert_eq(g.n, 60);
    cr_assert_eq(g.K, 1);
    for (size_t i = 0; i < g.n; i++) {
        const double *pr = pairs[(i / 2) % 3];
        cr_assert(g.theta0[i] == pr[0] && g.theta1[i] == pr[1] && g.y[i] == (double)(i % 2), "row %zu", i);
        double lr = 0, t = 0;
        for (int k = 0; k < 2; k++) {
            const double v = g.x[i * 2 + k];
            lr += (-(v - pr[0]) * (v - pr[0]) + (v - pr[1]) * (v - pr[1])) / 4.0;
            t += (v - pr[0]) / 2.0;
        }
        cr_assert(fabs(g.log_r[i] - lr) < 1e-9 * (1 + fabs(lr)), "row %zu: log r %.12g, exact %.12g", i, g.log_r[i], lr);
        cr_assert(fabs(g.t[i] - t) < 1e-6 * (1 + fabs(t)), "row %zu: t %.12g, exact %.12g", i, g.t[i], t);
    }
    gold_data_free(&g);
}

Test(mine, control_flow_change_is_detected)
{
    gold_data g;
    /* theta0 < 0 < theta1: every ratio replay takes the other branch */
    cr_assert_eq(mine_sim("testsims/sim_cflow", "theta", "x", -0.1, 0.1, 1, 100, 1, &g), 0);
    cr_assert_eq(g.n, 0, "%zu rows kept", g.n);
    cr_assert_eq(g.bad[GOLD_BAD_CONTROL_FLOW], 100, "control-flow %llu", (unsigned long long)g.bad[GOLD_BAD_CONTROL_FLOW]);
    gold_data_free(&g);
    /* both on one side: nothing changes, nothing is dropped */
    cr_assert_eq(mine_sim("testsims/sim_cflow", "theta", "x", -0.5, -0.3, 1, 100, 1, &g), 0);
    cr_assert_eq(g.n, 100);
    gold_data_free(&g);
}

Test(mine, theta_dependent_support_is_detected)
{
    gold_data g;
    cr_assert_eq(mine_sim("testsims/sim_support", "theta", "x", 1.0, 0.8, 1, 200, 1, &g), 0);
    cr_assert_eq(g.n, 0, "%zu rows kept", g.n);
    const uint64_t sup = g.bad[GOLD_BAD_SUPPORT], dep = g.bad[GOLD_BAD_THETA_SUPPORT];
    cr_assert_eq(sup + dep, 200, "out-of-support %llu, theta-dependent %llu", (unsigned long long)sup,
                 (unsigned long long)dep);
    /* y = 0 rows at theta 1 replayed at 0.8: z > 0.8 with probability 0.2 */
    cr_assert(sup > 0 && dep > 0);
    gold_data_free(&g);
}

/* ---- analytic scores from parameter tangents ---------------------------------------- */

/* Every distribution but Uniform, with tangents: the analytic score must
 * equal the closed form to rounding (both are sums of dist_grad_log_prob x
 * d params / d theta; only the order of the additions can differ), for
 * y = 0 rows (from the original at theta0) and y = 1 rows (from the ratio
 * replay at theta0), for Samples and for Observes drawn by ppxd; the ratio
 * columns are those of finite-difference mining (the same seed gives the
 * same traces), and the FD score agrees to its truncation error. */
Test(mine, analytic_scores_match_closed_forms_and_finite_differences)
{
    const char *sims[2] = {"testsims/sim_dists_theta --tangents", "testsims/sim_dists_theta --tangents --observe"};
    for (int v = 0; v < 2; v++) {
        gold_data a, f;
        cr_assert_eq(mine_sim_m(sims[v], MINE_SCORE_ANALYTIC, "theta", "x_*", 1.0, 1.2, 1, 200, 2, &a), 0);
        cr_assert_eq(mine_sim_m(sims[v], MINE_SCORE_FD, "theta", "x_*", 1.0, 1.2, 1, 200, 2, &f), 0);
        cr_assert_eq(a.n, 200, "%s: rows %zu (dropped %llu)", sims[v], a.n, (unsigned long long)gold_data_bad_total(&a));
        cr_assert_eq(f.n, 200);
        cr_assert_eq(a.n_analytic, 200, "%s: %llu rows from tangents", sims[v], (unsigned long long)a.n_analytic);
        cr_assert_eq(f.n_analytic, 0);
        for (size_t r = 0; r < a.n; r++) {
            double t = 0, s;
            for (int i = 0; i < GD_N; i++) {
                gd_log_p(i, 1.0, a.x[r * GD_N + i], &s);
                t += s;
                cr_assert_eq(a.x[r * GD_N + i], f.x[r * GD_N + i], "%s row %zu: x differs between the methods", sims[v], r);
            }
            cr_assert_eq(a.log_r[r], f.log_r[r], "%s row %zu: log r differs between the methods", sims[v], r);
            cr_assert(fabs(a.t[r] - t) < 1e-12 * (1 + fabs(t)), "%s row %zu (y %g): analytic %.15g, closed form %.15g",
                      sims[v], r, a.y[r], a.t[r], t);
            cr_assert(fabs(f.t[r] - t) < 1e-5 + 1e-6 * fabs(t), "%s row %zu: FD %.12g, closed form %.12g", sims[v], r,
                      f.t[r], t);
        }
        gold_data_free(&a);
        gold_data_free(&f);
    }
}

/* The Galton board's Bernoulli decisions with tangents (the C example and
 * the Python one): the analytic score equals the FD score to the FD error
 * (eps = 1e-4 x the prior's sd 0.577; the truncation error of a central
 * difference ~ eps^2 |d^3 log p| is below 1e-6 here), and the Python
 * simulator's rows equal the C one's (ppxd answers every draw, so a seed
 * fixes the traces whatever the language). */
Test(mine, galton_analytic_score_agrees_with_finite_differences)
{
    gold_data a, f, py;
    cr_assert_eq(mine_sim_m("examples/galton --tangents", MINE_SCORE_ANALYTIC, "theta", "x", -0.8, -0.6, 1, 600, 2, &a), 0);
    cr_assert_eq(mine_sim_m("examples/galton", MINE_SCORE_FD, "theta", "x", -0.8, -0.6, 1, 600, 2, &f), 0);
    cr_assert_eq(a.n, 600, "rows %zu (dropped %llu)", a.n, (unsigned long long)gold_data_bad_total(&a));
    cr_assert_eq(f.n, 600);
    cr_assert_eq(a.n_analytic, 600);
    for (size_t r = 0; r < a.n; r++) {
        cr_assert(a.x[r] == f.x[r] && a.log_r[r] == f.log_r[r], "row %zu: x/log r differ", r);
        cr_assert(fabs(a.t[r] - f.t[r]) < 1e-6 * (1 + fabs(f.t[r])), "row %zu (y %g): analytic %.12g, FD %.12g", r, a.y[r],
                  a.t[r], f.t[r]);
    }
    /* The Python example, through the real interpreter. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 clients/python/examples/galton.py {endpoint}"); /* from the source tree */
    mine_opts o;
    memset(&o, 0, sizeof o);
    engine_config_defaults(&o.ecfg);
    o.ecfg.sim_cmd = cmd;
    o.ecfg.n_launch = 2;
    const char *tn[1] = {"theta"}, *xn[1] = {"x"};
    const double th0 = -0.8, th1 = -0.6;
    o.theta_names = tn;
    o.D = 1;
    o.x_names = xn;
    o.n_x = 1;
    o.mode = MINE_THETA_FIXED;
    o.theta0 = &th0;
    o.theta1 = &th1;
    o.K = 1;
    o.theta1_rows = 1;
    o.score = 1;
    o.score_method = MINE_SCORE_ANALYTIC;
    o.n = 200;
    o.seed = 7;
    o.quiet = 1;
    cr_assert_eq(mine_run(&o, &py, NULL), 0);
    cr_assert_eq(py.n, 200, "python rows %zu (dropped %llu)", py.n, (unsigned long long)gold_data_bad_total(&py));
    cr_assert_eq(py.n_analytic, 200);
    for (size_t r = 0; r < py.n; r++)
        /* the same draws; P(left) rounded by Python's libm and C's may differ in the last bits */
        cr_assert(py.x[r] == a.x[r] && fabs(py.log_r[r] - a.log_r[r]) < 1e-12 && fabs(py.t[r] - a.t[r]) < 1e-12 * (1 + fabs(a.t[r])),
                  "row %zu: python x %g t %.15g, C x %g t %.15g", r, py.x[r], py.t[r], a.x[r], a.t[r]);
    gold_data_free(&a);
    gold_data_free(&f);
    gold_data_free(&py);
}

/* A draw without a tangent: --score analytic drops every row as
 * no-tangent; auto falls back to finite differences for those rows (the
 * same rows and scores as fd). */
Test(mine, missing_tangents_are_refused_or_fall_back)
{
    gold_data a, au, f;
    const char *sim = "testsims/sim_dists_theta --tangents --skip-tangent 3";
    cr_assert_eq(mine_sim_m(sim, MINE_SCORE_ANALYTIC, "theta", "x_*", 1.0, 1.2, 1, 60, 1, &a), 0);
    cr_assert_eq(a.n, 0, "%zu rows kept", a.n);
    cr_assert_eq(a.bad[GOLD_BAD_NO_TANGENT], 60, "no-tangent %llu", (unsigned long long)a.bad[GOLD_BAD_NO_TANGENT]);
    cr_assert_eq(mine_sim_m(sim, MINE_SCORE_AUTO, "theta", "x_*", 1.0, 1.2, 1, 60, 1, &au), 0);
    cr_assert_eq(mine_sim_m(sim, MINE_SCORE_FD, "theta", "x_*", 1.0, 1.2, 1, 60, 1, &f), 0);
    cr_assert_eq(au.n, 60);
    cr_assert_eq(au.n_analytic, 0);
    cr_assert_eq(f.n, 60);
    for (size_t r = 0; r < au.n; r++) cr_assert_eq(au.t[r], f.t[r], "row %zu", r);
    gold_data_free(&a);
    gold_data_free(&au);
    gold_data_free(&f);
}

/* z ~ Uniform(0, theta) with d high / d theta = 1: analytic mining needs no
 * score replay, yet must see the moving bound (theta-dependent-support) and
 * keep no row. */
Test(mine, analytic_theta_dependent_support_is_detected)
{
    gold_data g;
    cr_assert_eq(mine_sim_m("testsims/sim_support --tangents", MINE_SCORE_ANALYTIC, "theta", "x", 1.0, 0.8, 1, 200, 1, &g),
                 0);
    cr_assert_eq(g.n, 0, "%zu rows kept", g.n);
    cr_assert(g.bad[GOLD_BAD_THETA_SUPPORT] > 0, "theta-dependent %llu", (unsigned long long)g.bad[GOLD_BAD_THETA_SUPPORT]);
    cr_assert_eq(g.bad[GOLD_BAD_SUPPORT] + g.bad[GOLD_BAD_THETA_SUPPORT], 200);
    gold_data_free(&g);
}

Test(mine, gold_file_round_trip_and_damage)
{
    gold_data g;
    const char *tn[2] = {"a", "b"}, *xn[3] = {"x0", "x1", "x2"};
    cr_assert_eq(gold_data_init(&g, 2, 3, 1, 1, tn, xn), 0);
    for (int i = 0; i < 100; i++) {
        double th0[2] = {i, -i}, th1[2] = {0.5, 0.25}, x[3] = {i * 0.1, 1, 2}, lr = i * 0.01, t[2] = {1.0 / (i + 1), 3};
        cr_assert_eq(gold_data_add(&g, i % 2, th0, th1, x, &lr, t), 0);
    }
    g.bad[GOLD_BAD_SUPPORT] = 3;
    g.seed = 42;
    char dir[256], path[300], err[300];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "gold"), 0);
    snprintf(path, sizeof path, "%s/g.ppxg", dir);
    cr_assert_eq(gold_data_write(&g, path, err, sizeof err), 0, "%s", err);
    cr_assert(gold_file_is(path));
    gold_data h;
    cr_assert_eq(gold_data_read(&h, path, err, sizeof err), 0, "%s", err);
    cr_assert(h.n == 100 && h.D == 2 && h.C == 3 && h.K == 1 && h.has_score && h.seed == 42);
    cr_assert_eq(h.bad[GOLD_BAD_SUPPORT], 3);
    cr_assert_str_eq(h.theta_names[1], "b");
    cr_assert_str_eq(h.x_names[2], "x2");
    cr_assert(memcmp(h.theta0, g.theta0, 200 * sizeof(double)) == 0);
    cr_assert(memcmp(h.t, g.t, 200 * sizeof(double)) == 0);
    cr_assert(memcmp(h.x, g.x, 300 * sizeof(double)) == 0);
    cr_assert(memcmp(h.y, g.y, 100 * sizeof(double)) == 0);
    gold_data_free(&h);
    /* one flipped byte: refused with a checksum error */
    size_t size;
    unsigned char *bytes = tk_slurp(path, &size);
    cr_assert(bytes);
    bytes[size / 2] ^= 1;
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, size, f);
    fclose(f);
    cr_assert_eq(gold_data_read(&h, path, err, sizeof err), -1);
    cr_assert(strstr(err, "checksum"), "%s", err);
    /* truncated */
    f = fopen(path, "wb");
    fwrite(bytes, 1, size - 10, f);
    fclose(f);
    cr_assert_eq(gold_data_read(&h, path, err, sizeof err), -1);
    free(bytes);
    /* .npy export */
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s/e", dir);
    cr_assert_eq(gold_data_export_npy(&g, prefix, err, sizeof err), 0, "%s", err);
    snprintf(path, sizeof path, "%s/e_t.npy", dir);
    cr_assert_eq(access(path, R_OK), 0);
    gold_data_free(&g);
    tk_tmpdir_remove(dir);
}

/* ---- the command line ---------------------------------------------------------------------- */

static int run_sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(mine, command_line_mine_info_export_and_usage_errors)
{
    char dir[256], cmd[4096];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "minecli"), 0);
    char *ppxd = tk_build_path("ppxd"), *sim = tk_build_path("examples/galton");
    /* usage errors: exit 2, nothing written */
    const char *bad[] = {
        "--theta theta --x x -n 10 -o %s/g.ppxg",                                            /* no simulators */
        "--sim-cmd '%s {endpoint}' --x x -n 10 -o %s/g.ppxg",                                 /* no theta */
        "--sim-cmd '%s {endpoint}' --theta theta --x x -n 10 -o %s/g.ppxg --theta0 1,2",      /* 2 values, 1 name */
        "--sim-cmd '%s {endpoint}' --theta theta --x x -n 10 -o %s/g.ppxg --no-score",        /* nothing to mine */
        "--sim-cmd '%s {endpoint}' --theta theta --x x -n 10 -o %s/g.ppxg --grid 1:0:5",      /* LO > HI */
        "--sim-cmd '%s {endpoint}' --theta 'th*' --x x -n 10 -o %s/g.ppxg",                   /* pattern theta */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[1024];
        if (i == 0) snprintf(args, sizeof args, bad[i], dir);
        else snprintf(args, sizeof args, bad[i], sim, dir);
        snprintf(cmd, sizeof cmd, "%s mine %s 2>/dev/null", ppxd, args);
        cr_assert_eq(run_sh(cmd), 2, "case %zu: %s", i, cmd);
    }
    snprintf(cmd, sizeof cmd, "%s/g.ppxg", dir);
    cr_assert_neq(access(cmd, F_OK), 0, "a usage error wrote a file");
    /* a real run, then info and export */
    snprintf(cmd, sizeof cmd,
             "%s mine --sim-cmd '%s {endpoint}' -j 2 --theta theta --x x -n 200 --theta0 -0.8 --theta1 -0.6 "
             "-o %s/g.ppxg --npy %s/n --quiet 2>/dev/null",
             ppxd, sim, dir, dir);
    cr_assert_eq(run_sh(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s info %s/g.ppxg > %s/info.txt", ppxd, dir, dir);
    cr_assert_eq(run_sh(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/info.txt", dir);
    size_t size;
    char *txt = (char *)tk_slurp(cmd, &size);
    cr_assert(txt && strstr(txt, "rows 200 (100 at theta0, 100 at theta1)") && strstr(txt, "checksum ok"), "%s",
              txt ? txt : "(none)");
    free(txt);
    snprintf(cmd, sizeof cmd, "%s export %s/g.ppxg -o %s/e 2>/dev/null", ppxd, dir, dir);
    cr_assert_eq(run_sh(cmd), 0);
    const char *parts[] = {"e_y", "e_theta0", "e_theta1", "e_x", "e_log_r", "e_t", "n_t", "n_x"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s.npy", dir, parts[i]);
        cr_assert_eq(access(cmd, R_OK), 0, "%s", cmd);
    }
    /* the exports are the file's arrays */
    double *a, *b;
    size_t r1, c1, r2, c2;
    char err[300];
    snprintf(cmd, sizeof cmd, "%s/e_log_r.npy", dir);
    cr_assert_eq(npy_read(cmd, &a, &r1, &c1, err, sizeof err), 0, "%s", err);
    gold_data g;
    snprintf(cmd, sizeof cmd, "%s/g.ppxg", dir);
    cr_assert_eq(gold_data_read(&g, cmd, err, sizeof err), 0, "%s", err);
    cr_assert(r1 == 200 && c1 == 1 && memcmp(a, g.log_r, 200 * sizeof *a) == 0);
    snprintf(cmd, sizeof cmd, "%s/n_t.npy", dir);
    cr_assert_eq(npy_read(cmd, &b, &r2, &c2, err, sizeof err), 0, "%s", err);
    cr_assert(r2 == 200 && memcmp(b, g.t, 200 * sizeof *b) == 0);
    free(a);
    free(b);
    /* the same seed gives the same file whatever the scheduling (1 simulator this time) */
    snprintf(cmd, sizeof cmd,
             "%s mine --sim-cmd '%s {endpoint}' -j 1 --theta theta --x x -n 200 --theta0 -0.8 --theta1 -0.6 "
             "-o %s/h.ppxg --quiet 2>/dev/null",
             ppxd, sim, dir);
    cr_assert_eq(run_sh(cmd), 0);
    gold_data h;
    snprintf(cmd, sizeof cmd, "%s/h.ppxg", dir);
    cr_assert_eq(gold_data_read(&h, cmd, err, sizeof err), 0, "%s", err);
    cr_assert(h.n == g.n && memcmp(h.x, g.x, g.n * sizeof *g.x) == 0 && memcmp(h.t, g.t, g.n * sizeof *g.t) == 0);
    gold_data_free(&g);
    gold_data_free(&h);
    /* the trainer reads the file; missing files and options are errors */
    snprintf(cmd, sizeof cmd, "%s train carl --gold %s/g.ppxg -o %s/m.ppxr --epochs 2 --quiet 2>/dev/null", ppxd, dir,
             dir);
    cr_assert_eq(run_sh(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s train carl --gold %s/missing.ppxg -o %s/m2.ppxr 2>/dev/null", ppxd, dir, dir);
    cr_assert_eq(run_sh(cmd), 1);
    snprintf(cmd, sizeof cmd, "%s train sally -o %s/m2.ppxr 2>/dev/null", ppxd, dir);
    cr_assert_eq(run_sh(cmd), 2);
    free(ppxd);
    free(sim);
    tk_tmpdir_remove(dir);
}
