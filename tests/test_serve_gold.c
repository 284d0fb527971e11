/* Integration tests of serving gold models (`ppxd serve` with .ppxr files
 * from `ppxd train carl ... scandal`): LogRatio, Score, and Sample/LogProb
 * of density models, through the C query client and ppxctl.
 *
 * Models: trained here for a few epochs on a synthetic gold file (the
 * values are meaningless but deterministic: all these tests need).  Served
 * results are compared bit for bit with the same computation in-process on
 * the same file (gold_model_load, one OpenBLAS thread, as the server and
 * `ppxd evaluate` run), and once with `ppxd evaluate -o` itself.  Sample row
 * i of a density model is rng_seed(&r, seed, i); gold_model_sample of theta_i
 * repeated n times.
 *
 * ppxd runs as a subprocess on an abstract ipc endpoint; waits are bounded
 * by the client's timeouts. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "export.h"
#include "gold/gold_data.h"
#include "gold/gold_est.h"
#include "nn/nn.h"
#include "ppx_query.h"
#include "rng.h"
#include "testkit.h"

static pid_t g_pid;
static char g_dir[256], g_ep[160];

static void stop_all(void)
{
    if (g_pid > 0) tk_stop(g_pid, 2000);
    g_pid = 0;
    if (g_dir[0]) tk_tmpdir_remove(g_dir);
    g_dir[0] = 0;
}

TestSuite(serve_gold, .fini = stop_all);

/* A synthetic gold file: theta in [-1, 0], x = 10 + round(8 theta + 3 u) (whole
 * numbers, so density models dequantise), rows alternating y = 0 / 1 with
 * theta1 = -0.6, log r and t smooth functions of (x, theta). */
static void synth(gold_data *g)
{
    const char *tn[1] = {"theta"}, *xn[1] = {"x"};
    cr_assert_eq(gold_data_init(g, 1, 1, 1, 1, tn, xn), 0);
    rng r;
    rng_seed(&r, 3, 0);
    for (int i = 0; i < 400; i++) {
        const double y = i % 2, th1 = -0.6, th0 = -rng_uniform(&r);
        const double th = y ? th1 : th0, x = floor(10 + 8 * th + 3 * rng_normal(&r));
        const double lr = 0.3 * (th0 - th1) * (x - 8), t = 0.3 * (x - 8) + 0.1 * rng_normal(&r);
        cr_assert_eq(gold_data_add(g, y, &th0, &th1, &x, &lr, &t), 0);
    }
}

static void train_save(const gold_data *g, gold_method m, const char *name)
{
    gold_train_config cfg;
    gold_train_defaults(&cfg);
    cfg.method = m;
    cfg.hidden = 12;
    cfg.epochs = 3;
    cfg.min_steps = 0;
    cfg.components = 3;
    gold_model *gm = gold_train(&cfg, g);
    cr_assert_not_null(gm, "%s", name);
    char path[512], err[300];
    snprintf(path, sizeof path, "%s/%s.ppxr", g_dir, name);
    cr_assert_eq(gold_model_save(gm, path, err, sizeof err), 0, "%s", err);
    gold_model_destroy(&gm);
}

static gold_model *load(const char *name)
{
    char path[512], err[300];
    snprintf(path, sizeof path, "%s/%s.ppxr", g_dir, name);
    gold_model *m = gold_model_load(path, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    return m;
}

static ppx_query *start(void)
{
    nn_set_threads(1);
    cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "servegold"), 0);
    gold_data g;
    synth(&g);
    train_save(&g, GOLD_SCANDAL, "scandal");
    train_save(&g, GOLD_RASCAL, "rascal");
    train_save(&g, GOLD_CARL, "carl");
    gold_data_free(&g);
    /* SALLY: the rows at one theta0 */
    const char *tn[1] = {"theta"}, *xn[1] = {"x"};
    gold_data s;
    cr_assert_eq(gold_data_init(&s, 1, 1, 0, 1, tn, xn), 0);
    rng r;
    rng_seed(&r, 4, 0);
    for (int i = 0; i < 200; i++) {
        const double th = -0.8, x = rng_normal(&r), t = 2 * x;
        cr_assert_eq(gold_data_add(&s, 0, &th, NULL, &x, NULL, &t), 0);
    }
    train_save(&s, GOLD_SALLY, "sally");
    gold_data_free(&s);
    tk_endpoint(g_ep, sizeof g_ep, "servegold");
    char *ppxd = tk_build_path("ppxd");
    char m[4][600];
    const char *names[4] = {"scandal", "rascal", "carl", "sally"};
    for (int i = 0; i < 4; i++) snprintf(m[i], sizeof m[i], "%s/%s.ppxr", g_dir, names[i]);
    char *argv[] = {ppxd, "serve", "--serve", g_ep, "--model", m[0], "--model", m[1], "--model", m[2],
                    "--model", m[3], "--serve-threads", "2", "--quiet", NULL};
    g_pid = tk_spawn(argv);
    cr_assert(g_pid > 0);
    free(ppxd);
    char err[256];
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = 300;
    for (int i = 0; i < 60; i++) {
        ppx_query *q = ppx_query_connect(g_ep, &o, err, sizeof err);
        cr_assert_not_null(q, "%s", err);
        if (ppx_query_status(q, NULL) == PPXQ_OK) {
            ppx_query_set_timeout(q, 20000);
            return q;
        }
        ppx_query_close(&q);
        int st;
        cr_assert_eq(waitpid(g_pid, &st, WNOHANG), 0, "ppxd serve exited at start-up");
    }
    cr_assert_fail("ppxd serve did not answer");
    return NULL;
}

static const double g_x[5] = {3, 7, 10, 12, 18};
static const double g_th[5] = {-0.9, -0.7, -0.5, -0.3, -0.1};

Test(serve_gold, log_ratio_and_score_match_in_process_bit_for_bit)
{
    ppx_query *q = start();
    const ppxq_model_info *mi;
    uint32_t nm;
    cr_assert_eq(ppx_query_list_models(q, &mi, &nm), PPXQ_OK);
    cr_assert_eq(nm, 4);
    int seen = 0;
    for (uint32_t i = 0; i < nm; i++) {
        seen += !strcmp(mi[i].name, "scandal") && !strcmp(mi[i].kind, "gold-SCANDAL");
        seen += !strcmp(mi[i].name, "rascal") && !strcmp(mi[i].kind, "gold-RASCAL") && mi[i].theta_dim == 1 &&
                mi[i].x_dim == 1;
    }
    cr_assert_eq(seen, 2);
    const char *ratio_models[] = {"scandal", "rascal", "carl"};
    for (int mi_ = 0; mi_ < 3; mi_++) {
        gold_model *m = load(ratio_models[mi_]);
        double want[5], th1[5];
        const double *got;
        /* one theta0 for every x, reference theta1 */
        double th0[5];
        for (int i = 0; i < 5; i++) th0[i] = -0.8;
        cr_assert_eq(gold_model_log_ratio(m, g_x, th0, NULL, 5, want), 0);
        cr_assert_eq(ppx_query_log_ratio(q, ratio_models[mi_], g_x, 5, 1, th0, 1, NULL, 0, 1, &got), PPXQ_OK,
                     "%s", ppx_query_error(q));
        for (int i = 0; i < 5; i++) cr_assert_eq(got[i], want[i], "%s row %d", ratio_models[mi_], i);
        /* theta0 and theta1 per row */
        for (int i = 0; i < 5; i++) th1[i] = -0.2 - 0.1 * i;
        cr_assert_eq(gold_model_log_ratio(m, g_x, g_th, th1, 5, want), 0);
        cr_assert_eq(ppx_query_log_ratio(q, ratio_models[mi_], g_x, 5, 1, g_th, 5, th1, 5, 1, &got), PPXQ_OK);
        for (int i = 0; i < 5; i++) cr_assert_eq(got[i], want[i], "%s row %d (theta1 given)", ratio_models[mi_], i);
        gold_model_destroy(&m);
    }
    const char *score_models[] = {"scandal", "rascal", "sally"};
    for (int k = 0; k < 3; k++) {
        gold_model *m = load(score_models[k]);
        double want[5];
        const ppxq_matrix *got;
        cr_assert_eq(gold_model_score(m, g_x, g_th, 5, want), 0);
        const int sally = k == 2;
        cr_assert_eq(ppx_query_score(q, score_models[k], g_x, 5, 1, sally ? NULL : g_th, sally ? 0 : 5, 1, &got),
                     PPXQ_OK, "%s", ppx_query_error(q));
        cr_assert(got->rows == 5 && got->cols == 1);
        for (int i = 0; i < 5; i++) cr_assert_eq(got->data[i], want[i], "%s row %d", score_models[k], i);
        gold_model_destroy(&m);
    }
    /* `ppxd evaluate -o` gives the same bits as the server */
    char xf[512], of[512], mf[512];
    snprintf(xf, sizeof xf, "%s/x.npy", g_dir);
    snprintf(of, sizeof of, "%s/lr.npy", g_dir);
    snprintf(mf, sizeof mf, "%s/scandal.ppxr", g_dir);
    char err[300];
    cr_assert_eq(npy_write(xf, g_x, 5, 1, err, sizeof err), 0);
    char *ppxd = tk_build_path("ppxd");
    char *argv[] = {ppxd, "evaluate", "--model", mf, "--x-file", xf, "--theta", "-0.7", "-o", of, NULL};
    cr_assert_eq(tk_run(argv, NULL, NULL, 60000), 0);
    free(ppxd);
    double *ev, th07 = -0.7;
    size_t n, c;
    cr_assert_eq(npy_read(of, &ev, &n, &c, err, sizeof err), 0);
    const double *got;
    cr_assert_eq(ppx_query_log_ratio(q, "scandal", g_x, 5, 1, &th07, 1, NULL, 0, 1, &got), PPXQ_OK);
    for (int i = 0; i < 5; i++) cr_assert_eq(got[i], ev[i], "evaluate row %d", i);
    free(ev);
    ppx_query_close(&q);
}

Test(serve_gold, density_sample_and_log_prob)
{
    ppx_query *q = start();
    gold_model *m = load("scandal");
    /* Sample: observations = theta rows, samples of x */
    const double th[2] = {-0.8, -0.3};
    const ppxq_matrix *s;
    cr_assert_eq(ppx_query_sample(q, "scandal", th, 2, 1, 50, 9, 0, &s, NULL), PPXQ_OK, "%s", ppx_query_error(q));
    for (int i = 0; i < 2; i++) {
        double tt[50], want[50];
        for (int j = 0; j < 50; j++) tt[j] = th[i];
        rng r;
        rng_seed(&r, 9, (uint64_t)i);
        cr_assert_eq(gold_model_sample(m, tt, 50, &r, want), 0);
        cr_assert(s[i].rows == 50 && s[i].cols == 1);
        for (int j = 0; j < 50; j++) {
            cr_assert_eq(s[i].data[j], want[j], "theta row %d sample %d", i, j);
            cr_assert_eq(want[j], floor(want[j]), "dequantised x samples are whole numbers");
        }
    }
    /* LogProb: observation = theta, thetas = x rows */
    const double *lp;
    cr_assert_eq(ppx_query_log_prob(q, "scandal", th, 1, g_x, 5, 1, 1, 0, 0, &lp), PPXQ_OK, "%s",
                 ppx_query_error(q));
    double want[5], tt[5] = {th[0], th[0], th[0], th[0], th[0]};
    cr_assert_eq(gold_model_log_prob(m, g_x, tt, 5, want), 0);
    for (int i = 0; i < 5; i++) cr_assert_eq(lp[i], want[i]);
    gold_model_destroy(&m);
    /* a ratio model has no density */
    cr_assert_eq(ppx_query_sample(q, "rascal", th, 2, 1, 5, 9, 0, &s, NULL), PPXQ_BAD_REQUEST);
    cr_assert(strstr(ppx_query_error(q), "not a density"), "%s", ppx_query_error(q));
    ppx_query_close(&q);
}

Test(serve_gold, errors_for_wrong_shapes_nan_and_missing_heads)
{
    ppx_query *q = start();
    const double *lr;
    const ppxq_matrix *t;
    const double x2[4] = {1, 2, 3, 4}, th = -0.5, nan_th = NAN, th3[3] = {-0.1, -0.2, -0.3};
    /* x of 2 columns for a 1-column model */
    cr_assert_eq(ppx_query_log_ratio(q, "rascal", x2, 2, 2, &th, 1, NULL, 0, 1, &lr), PPXQ_BAD_SHAPE);
    /* 3 theta rows for 5 x rows */
    cr_assert_eq(ppx_query_log_ratio(q, "rascal", g_x, 5, 1, th3, 3, NULL, 0, 1, &lr), PPXQ_BAD_SHAPE);
    cr_assert_eq(ppx_query_score(q, "scandal", g_x, 5, 1, th3, 3, 1, &t), PPXQ_BAD_SHAPE);
    /* no theta0 */
    cr_assert_eq(ppx_query_log_ratio(q, "rascal", g_x, 5, 1, NULL, 0, NULL, 0, 1, &lr), PPXQ_BAD_SHAPE);
    /* NaN */
    cr_assert_eq(ppx_query_log_ratio(q, "scandal", g_x, 5, 1, &nan_th, 1, NULL, 0, 1, &lr), PPXQ_NAN_INPUT);
    double xn[2] = {1, INFINITY};
    cr_assert_eq(ppx_query_score(q, "rascal", xn, 2, 1, &th, 1, 1, &t), PPXQ_NAN_INPUT);
    /* a model without a score head, and SALLY without a ratio */
    cr_assert_eq(ppx_query_score(q, "carl", g_x, 5, 1, &th, 1, 1, &t), PPXQ_BAD_REQUEST);
    cr_assert(strstr(ppx_query_error(q), "has no score"), "%s", ppx_query_error(q));
    cr_assert_eq(ppx_query_log_ratio(q, "sally", g_x, 5, 1, &th, 1, NULL, 0, 1, &lr), PPXQ_BAD_REQUEST);
    cr_assert_eq(ppx_query_log_ratio(q, "nope", g_x, 5, 1, &th, 1, NULL, 0, 1, &lr), PPXQ_UNKNOWN_MODEL);
    /* the server is still fine */
    cr_assert_eq(ppx_query_log_ratio(q, "rascal", g_x, 5, 1, &th, 1, NULL, 0, 1, &lr), PPXQ_OK);
    ppx_query_close(&q);
}

/* ppxctl ratio / score print %.17g: the served doubles exactly. */
Test(serve_gold, ppxctl_ratio_and_score)
{
    ppx_query *q = start();
    const double *lr;
    const double th = -0.8;
    cr_assert_eq(ppx_query_log_ratio(q, "scandal", g_x, 2, 1, &th, 1, NULL, 0, 1, &lr), PPXQ_OK);
    double want[2] = {lr[0], lr[1]};
    const ppxq_matrix *t;
    cr_assert_eq(ppx_query_score(q, "rascal", g_x, 1, 1, &th, 1, 1, &t), PPXQ_OK);
    const double want_t = t->data[0];
    ppx_query_close(&q);
    char *bin = tk_build_path("ppxctl"), out[512], err[512];
    snprintf(out, sizeof out, "%s/ctl.out", g_dir);
    snprintf(err, sizeof err, "%s/ctl.err", g_dir);
    char *a1[] = {bin, "--endpoint", g_ep, "ratio", "--model", "scandal", "--x", "3", "--x", "7", "--theta0", "-0.8",
                  NULL};
    cr_assert_eq(tk_run(a1, out, err, 20000), 0);
    FILE *f = fopen(out, "r");
    double v[2];
    cr_assert(f && fscanf(f, "%lf %lf", &v[0], &v[1]) == 2);
    fclose(f);
    cr_assert(v[0] == want[0] && v[1] == want[1]);
    char *a2[] = {bin, "--endpoint", g_ep, "score", "--model", "rascal", "--x", "3", "--theta", "-0.8", NULL};
    cr_assert_eq(tk_run(a2, out, err, 20000), 0);
    f = fopen(out, "r");
    cr_assert(f && fscanf(f, "%lf", &v[0]) == 1);
    fclose(f);
    cr_assert(v[0] == want_t);
    /* a server error is exit code 1 with the reason on stderr */
    char *a3[] = {bin, "--endpoint", g_ep, "score", "--model", "carl", "--x", "3", "--theta", "-0.8", NULL};
    cr_assert_eq(tk_run(a3, out, err, 20000), 1);
    /* a usage error is 2, before connecting */
    char *a4[] = {bin, "--endpoint", g_ep, "ratio", "--model", "carl", "--x", "3", NULL};
    cr_assert_eq(tk_run(a4, out, err, 20000), 2);
    free(bin);
}

/* The Python client (clients/python/ppx/query.py): Client.log_ratio and
 * Client.score give the C client's doubles (printed with repr: exact). */
Test(serve_gold, python_client_log_ratio_and_score)
{
    cr_assert(access("clients/python/ppx/__init__.py", R_OK) == 0, "run from the repository root (make test does)");
    ppx_query *q = start();
    const double *lr;
    const double th = -0.8;
    cr_assert_eq(ppx_query_log_ratio(q, "scandal", g_x, 3, 1, &th, 1, NULL, 0, 1, &lr), PPXQ_OK);
    double want[3] = {lr[0], lr[1], lr[2]};
    const ppxq_matrix *t;
    cr_assert_eq(ppx_query_score(q, "sally", g_x, 1, 1, NULL, 0, 1, &t), PPXQ_OK);
    const double want_t = t->data[0];
    ppx_query_close(&q);
    char script[1024], out[512];
    snprintf(script, sizeof script,
             "import sys; sys.path.insert(0, 'clients/python')\n"
             "from ppx import Client\n"
             "from ppx.errors import PpxError\n"
             "c = Client('%s', timeout_ms=20000)\n"
             "print(repr([float(v) for v in c.log_ratio('scandal', [[3.0], [7.0], [10.0]], [-0.8])]))\n"
             "print(repr(float(c.score('sally', [3.0])[0])))\n"
             "try:\n"
             "    c.score('carl', [3.0], [-0.8]); print('no error')\n"
             "except PpxError as e:\n"
             "    print('error', e.code)\n",
             g_ep);
    snprintf(out, sizeof out, "%s/py.out", g_dir);
    char *argv[] = {"/usr/bin/python3", "-c", script, NULL};
    cr_assert_eq(tk_run(argv, out, NULL, 60000), 0);
    FILE *f = fopen(out, "r");
    double v[3], s;
    int code = -1;
    cr_assert(f && fscanf(f, " [%lf, %lf, %lf] %lf error %d", &v[0], &v[1], &v[2], &s, &code) == 5);
    fclose(f);
    for (int i = 0; i < 3; i++) cr_assert_eq(v[i], want[i], "row %d", i);
    cr_assert_eq(s, want_t);
    cr_assert_eq(code, PPXQ_BAD_REQUEST);
}
