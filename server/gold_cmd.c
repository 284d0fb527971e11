/* gold_cmd.c — `ppxd train carl|rolr|rascal|cascal|alice|alices|sally|nde|scandal`
 * (gold estimators from a .ppxg file) and `ppxd evaluate` (log r^ / t^ of a
 * trained gold model).  See gold_cmd.h. */
#include "gold_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "export.h"
#include "gold/gold_data.h"
#include "gold/gold_est.h"
#include "nn/nn.h"

static volatile int g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* On stderr, or the daemon's capture buffer while it parses a job (cli.h). */
static int usage_error(const char *msg, const char *detail)
{
    cli_complain("%s%s%s", msg, detail ? ": " : "", detail ? detail : "");
    return 2;
}

int gold_cmd_is_method(const char *s) { return s && gold_method_from_name(s) >= 0; }

static void train_usage(FILE *f)
{
    fprintf(f,
        "usage:\n"
        "  ppxd train carl|rolr|rascal|cascal|alice|alices|sally|nde|scandal --gold GOLD.ppxg -o MODEL.ppxr [options]\n"
        "\n"
        "Trains a gold estimator on data mined by `ppxd mine`:\n"
        "  carl, rolr, rascal, cascal, alice, alices: a network log r^(x | theta0) of the likelihood ratio\n"
        "    p(x|theta0) / p(x|theta1) against the mined reference theta1 (needs rows at theta0 and theta1:\n"
        "    mine with one --theta1, or --pairs); rascal, cascal and alices add alpha x MSE of the network's\n"
        "    d log r^/d theta0 against the joint score;\n"
        "  sally: a network t^(x) of the score at the mined (fixed) theta0;\n"
        "  nde, scandal: a conditional density p^(x | theta) (an autoregressive mixture of Gaussians, tanh nets)\n"
        "    by maximum likelihood on every row at the theta it was simulated at; scandal adds alpha x MSE of\n"
        "    d log p^/d theta against the joint score.  log r^ = log p^(x|theta0) - log p^(x|theta1).\n"
        "    Whole-number x columns are modelled dequantised (x + U(0,1)) and evaluated as probabilities.\n"
        "options (MadMiner's defaults):\n"
        "  --alpha A (1; scandal 10)  --hidden H (100)  --layers L (2, tanh)  --batch B (128)  --epochs E (50)\n"
        "  --min-steps S (10000, rascal 20000: small sets get more epochs, so that training sees S batches;\n"
        "               not carl; 0: off)\n"
        "  --lr LR (1e-3, decaying exponentially to --lr-end 1e-4)  --val-frac F (0.25)\n"
        "  --patience P (0: all epochs; the best validation epoch is kept)  --clip C (10, rolr/rascal log r)\n"
        "  --max-rows N (all)  --seed S (1)  --threads T (1)  --quiet\n"
        "  nde/scandal: --components K (per x dimension; default NDE 1 per 1000 rows, 1..10, SCANDAL 10)\n"
        "    --dequantize auto|on|off (auto: whole-number columns)\n");
}

static int parse_pos_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || !(v > 0)) return -1;
    *out = v;
    return 0;
}

struct gold_train_cmd {
    gold_train_config cfg;
    char *data;
};

/* The command line; with job != NULL (ppxd daemon), parse only: the data
 * set is named with --data NAME, and -o, --gold and --threads are refused. */
static int train_main(int argc, char **argv, gold_train_cmd **job)
{
    enum { O_GOLD = 3000, O_ALPHA, O_HIDDEN, O_LAYERS, O_BATCH, O_EPOCHS, O_LR, O_LR_END, O_VAL, O_PAT, O_CLIP, O_MAXR,
           O_SEED, O_THREADS, O_QUIET, O_MIN_STEPS, O_COMPONENTS, O_DEQ, O_DATA };
    static const struct option opts[] = {
        {"gold", required_argument, 0, O_GOLD}, {"alpha", required_argument, 0, O_ALPHA},
        {"hidden", required_argument, 0, O_HIDDEN}, {"layers", required_argument, 0, O_LAYERS},
        {"batch", required_argument, 0, O_BATCH}, {"epochs", required_argument, 0, O_EPOCHS},
        {"lr", required_argument, 0, O_LR}, {"lr-end", required_argument, 0, O_LR_END},
        {"val-frac", required_argument, 0, O_VAL}, {"patience", required_argument, 0, O_PAT},
        {"clip", required_argument, 0, O_CLIP}, {"max-rows", required_argument, 0, O_MAXR},
        {"seed", required_argument, 0, O_SEED}, {"threads", required_argument, 0, O_THREADS},
        {"quiet", no_argument, 0, O_QUIET}, {"min-steps", required_argument, 0, O_MIN_STEPS},
        {"components", required_argument, 0, O_COMPONENTS}, {"dequantize", required_argument, 0, O_DEQ},
        {"data", required_argument, 0, O_DATA}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    gold_train_config cfg;
    gold_train_defaults(&cfg);
    cfg.progress = 1;
    const char *gold = NULL, *out = NULL, *kind = NULL, *data = NULL;
    uint64_t u, threads = 1;
    double d;
    int ch, threads_set = 0;
    if (job) cli_getopt_reset("-o:h");
    optind = 1;
    while ((ch = getopt_long(argc, argv, "-o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 1:
            if (kind) return usage_error("unexpected argument", optarg);
            kind = optarg;
            break;
        case 'o': out = optarg; break;
        case O_GOLD: gold = optarg; break;
        case O_DATA: data = optarg; break;
        case O_ALPHA:
            if (parse_pos_double(optarg, &cfg.alpha) < 0) return usage_error("--alpha wants a positive number", optarg);
            break;
        case O_HIDDEN:
        case O_LAYERS:
        case O_BATCH:
        case O_EPOCHS:
        case O_PAT:
        case O_MIN_STEPS:
            if (args_u64_range(optarg, ch == O_PAT || ch == O_MIN_STEPS ? 0 : 1, ch == O_BATCH ? 65536 : 100000, &u) < 0)
                return usage_error("wants a whole number in range", optarg);
            if (ch == O_HIDDEN) cfg.hidden = (int)u;
            else if (ch == O_LAYERS) cfg.layers = (int)u;
            else if (ch == O_BATCH) cfg.batch = (int)u;
            else if (ch == O_EPOCHS) cfg.epochs = (int)u;
            else if (ch == O_MIN_STEPS) cfg.min_steps = (int)u;
            else cfg.patience = (int)u;
            break;
        case O_LR:
        case O_LR_END:
        case O_CLIP:
            if (parse_pos_double(optarg, &d) < 0) return usage_error("wants a positive number", optarg);
            if (ch == O_LR) cfg.lr = d;
            else if (ch == O_LR_END) cfg.lr_end = d;
            else cfg.clip = d;
            break;
        case O_VAL:
            if (parse_pos_double(optarg, &cfg.val_frac) < 0 || cfg.val_frac >= 1)
                return usage_error("--val-frac wants a number in (0, 1)", optarg);
            break;
        case O_MAXR:
            if (args_u64(optarg, &u) < 0 || !u) return usage_error("--max-rows wants a positive number", optarg);
            cfg.max_rows = (size_t)u;
            break;
        case O_SEED:
            if (args_u64(optarg, &cfg.seed) < 0) return usage_error("--seed wants a non-negative integer", optarg);
            break;
        case O_THREADS:
            if (args_u64_range(optarg, 1, 1024, &threads) < 0) return usage_error("--threads wants 1..1024", optarg);
            threads_set = 1;
            break;
        case O_QUIET: cfg.progress = 0; break;
        case O_COMPONENTS:
            if (args_u64_range(optarg, 1, 1000, &u) < 0) return usage_error("--components wants 1..1000", optarg);
            cfg.components = (int)u;
            break;
        case O_DEQ:
            if (strcmp(optarg, "auto") == 0) cfg.dequantize = -1;
            else if (strcmp(optarg, "on") == 0) cfg.dequantize = 1;
            else if (strcmp(optarg, "off") == 0) cfg.dequantize = 0;
            else return usage_error("--dequantize wants auto, on or off", optarg);
            break;
        case 'h':
            if (job) return usage_error("--help is not for jobs", NULL);
            train_usage(stdout);
            return 0;
        default:
            if (job) return cli_unknown_option(argc, argv);
            train_usage(stderr);
            return 2;
        }
    }
    int m = kind ? gold_method_from_name(kind) : -1;
    if (m < 0) return usage_error("unknown gold method (carl rolr rascal cascal alice alices sally nde scandal)", kind);
    if (job) {
        if (gold) return usage_error("--gold reads a file on the daemon's host: give --data NAME (a data set of "
                                     "the daemon: a mine job's name)", NULL);
        if (out) return usage_error("-o is not for jobs: the model is served under the job's name", NULL);
        if (threads_set) return usage_error("--threads is not for jobs: the daemon trains on one thread each", NULL);
        if (!data) return usage_error("a gold training job needs --data NAME (a mine job's name)", NULL);
        gold_train_cmd *c = calloc(1, sizeof *c);
        if (!c || !(c->data = strdup(data))) {
            free(c);
            return usage_error("out of memory", NULL);
        }
        cfg.method = (gold_method)m;
        cfg.progress = 0; /* the epoch lines would only fill the daemon's log */
        c->cfg = cfg;
        *job = c;
        return 0;
    }
    if (data) return usage_error("--data NAME is for ppxd daemon jobs: give the mined file with --gold GOLD.ppxg", NULL);
    if (!gold) return usage_error("gold estimators train from a mined file: --gold GOLD.ppxg (see ppxd mine)", NULL);
    if (!out) return usage_error("train needs -o MODEL.ppxr", NULL);
    cfg.method = (gold_method)m;
    cfg.stop = &g_stop;
    nn_set_threads((int)threads);
    gold_data g;
    char err[300];
    if (gold_data_read(&g, gold, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    gold_model *model = gold_train(&cfg, &g);
    gold_data_free(&g);
    if (!model) return 1;
    int rc = 0;
    if (gold_model_save(model, out, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        rc = 1;
    } else if (cfg.progress) {
        fprintf(stderr, "ppxd: %s trained on %llu rows (%llu validation), best validation loss %.6g at epoch %d; wrote %s\n",
                gold_method_name(cfg.method), (unsigned long long)model->n_train, (unsigned long long)model->n_val,
                model->best_val, model->best_epoch, out);
    }
    gold_model_destroy(&model);
    return rc;
}

int gold_cmd_train_main(int argc, char **argv) { return train_main(argc, argv, NULL); }

gold_train_cmd *gold_train_cmd_parse(int argc, char **argv)
{
    gold_train_cmd *c = NULL;
    if (train_main(argc, argv, &c) != 0) gold_train_cmd_destroy(&c);
    return c;
}

gold_train_config *gold_train_cmd_config(gold_train_cmd *c) { return &c->cfg; }

const char *gold_train_cmd_data(const gold_train_cmd *c) { return c->data; }

void gold_train_cmd_destroy(gold_train_cmd **pc)
{
    if (!*pc) return;
    free((*pc)->data);
    free(*pc);
    *pc = NULL;
}

static void eval_usage(FILE *f)
{
    fprintf(f,
        "usage:\n"
        "  ppxd evaluate --model MODEL.ppxr --x-file X.npy [--theta V,.. | --theta-file T.npy] [--theta1 V,..]\n"
        "                [--score | --log-prob] [-o OUT.npy]\n"
        "\n"
        "log r^(x | theta0, theta1) of a ratio or density model (carl ... alices, nde, scandal) for each row of\n"
        "X [n, C] (default; theta1: the reference of the training file unless --theta1 is given), or with\n"
        "--score the estimated score t^(x | theta0) [n, D] (ratio models: d log r^/d theta0; nde, scandal:\n"
        "d log p^/d theta; sally: t^(x)), or with --log-prob log p^(x | theta0) (nde, scandal; whole-number\n"
        "columns the model dequantised: the log probability of the value).\n"
        "theta0: one point for every row (--theta), or one row per x row (--theta-file).\n"
        "  ppxd evaluate --model MODEL.ppxr --info     the model's method, shapes and training summary\n");
}

/* One point "V,V,.." of D numbers into out [D].  0 or -1. */
static int parse_point(const char *s, int D, double *out)
{
    const char *p = s;
    for (int k = 0; k < D; k++) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (errno || end == p || !isfinite(v) || (k < D - 1 ? *end != ',' : *end != 0)) return -1;
        out[k] = v;
        p = end + 1;
    }
    return 0;
}

int gold_cmd_evaluate_main(int argc, char **argv)
{
    const char *model_path = NULL, *xf = NULL, *tf = NULL, *out = NULL, *theta = NULL, *theta1 = NULL;
    int score = 0, info = 0, log_prob = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--model") == 0 && v) model_path = argv[++i];
        else if (strcmp(a, "--x-file") == 0 && v) xf = argv[++i];
        else if (strcmp(a, "--theta-file") == 0 && v) tf = argv[++i];
        else if (strcmp(a, "--theta") == 0 && v) theta = argv[++i];
        else if (strcmp(a, "-o") == 0 && v) out = argv[++i];
        else if (strcmp(a, "--theta1") == 0 && v) theta1 = argv[++i];
        else if (strcmp(a, "--score") == 0) score = 1;
        else if (strcmp(a, "--log-prob") == 0) log_prob = 1;
        else if (strcmp(a, "--info") == 0) info = 1;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            eval_usage(stdout);
            return 0;
        } else {
            eval_usage(stderr);
            return usage_error("unknown or incomplete option", a);
        }
    }
    if (!model_path) return usage_error("evaluate needs --model MODEL.ppxr", NULL);
    nn_set_threads(1); /* one OpenBLAS thread, as ppxd serve: the same bits for the same rows */
    char err[300];
    gold_model *m = gold_model_load(model_path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "ppxd: %s\n", err);
        return 1;
    }
    int rc = 1;
    double *x = NULL, *th = NULL, *res = NULL, *th1 = NULL;
    if (info) {
        printf("%s: gold %s model, x %d columns, theta %d, %d x %d tanh, alpha %g\n", model_path,
               gold_method_name(m->method), m->C, m->D, m->layers, m->hidden, m->alpha);
        if (m->dens) {
            printf("  density: %d Gaussian components per x dimension; dequantised columns:", m->components);
            int any = 0;
            for (int c = 0; c < m->C; c++)
                if (m->deq[c]) printf(" %s", m->x_names[c]), any = 1;
            printf("%s\n", any ? "" : " none");
        }
        printf("  trained on %llu rows (%llu validation), best validation loss %.6g at epoch %d\n",
               (unsigned long long)m->n_train, (unsigned long long)m->n_val, m->best_val, m->best_epoch);
        for (int k = 0; k < m->D; k++)
            printf("  theta %-12s mean %g sd %g%s%g\n", m->theta_names[k], m->th_mean[k], m->th_std[k],
                   m->method == GOLD_SALLY ? "" : "  theta1 ", m->method == GOLD_SALLY ? NAN : m->theta1[k]);
        rc = 0;
        goto done;
    }
    if (!xf) {
        rc = usage_error("evaluate needs --x-file X.npy", NULL);
        goto done;
    }
    if (m->method == GOLD_SALLY && !score) score = 1;
    if (score + log_prob + !!theta1 > 1) {
        rc = usage_error("--score, --log-prob and --theta1 are different outputs: give one", NULL);
        goto done;
    }
    if (log_prob && !gold_method_is_density(m->method)) {
        rc = usage_error("--log-prob needs a density model (nde, scandal)", gold_method_name(m->method));
        goto done;
    }
    if (theta1 && m->method == GOLD_SALLY) {
        rc = usage_error("a sally model has no log r", NULL);
        goto done;
    }
    size_t n, c;
    if (npy_read(xf, &x, &n, &c, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        goto done;
    }
    if (c != (size_t)m->C) {
        fprintf(stderr, "ppxd: %s has %zu columns; the model's x has %d\n", xf, c, m->C);
        rc = 2;
        goto done;
    }
    th = calloc(n * m->D + 1, sizeof *th);
    if (!th) goto done;
    if (m->method != GOLD_SALLY) {
        if (!!theta == !!tf) {
            rc = usage_error("give theta0 with --theta V,.. or --theta-file T.npy", NULL);
            goto done;
        }
        if (theta) {
            if (parse_point(theta, m->D, th) < 0) {
                rc = usage_error("--theta wants one number per theta dimension", theta);
                goto done;
            }
            for (size_t i = 1; i < n; i++) memcpy(th + i * m->D, th, m->D * sizeof *th);
        } else {
            double *t2;
            size_t n2, d2;
            if (npy_read(tf, &t2, &n2, &d2, err, sizeof err) < 0) {
                fprintf(stderr, "ppxd: %s\n", err);
                goto done;
            }
            if (n2 != n || d2 != (size_t)m->D) {
                fprintf(stderr, "ppxd: %s is %zu x %zu; it must be %zu x %d (one theta0 per x row)\n", tf, n2, d2, n, m->D);
                free(t2);
                rc = 2;
                goto done;
            }
            memcpy(th, t2, n * m->D * sizeof *th);
            free(t2);
        }
    }
    const size_t w = score ? (size_t)m->D : 1;
    res = calloc(n * w + 1, sizeof *res);
    if (!res) goto done;
    if (theta1) {
        if (!(th1 = calloc(n * m->D + m->D, sizeof *th1))) goto done;
        if (parse_point(theta1, m->D, th1) < 0) {
            rc = usage_error("--theta1 wants one number per theta dimension", theta1);
            goto done;
        }
        for (size_t i = 1; i < n; i++) memcpy(th1 + i * m->D, th1, m->D * sizeof *th1);
    }
    if ((score      ? gold_model_score(m, x, th, n, res)
         : log_prob ? gold_model_log_prob(m, x, th, n, res)
                    : gold_model_log_ratio(m, x, th, th1, n, res)) < 0)
        goto done;
    if (out) {
        if (npy_write(out, res, n, w, err, sizeof err) < 0) {
            fprintf(stderr, "ppxd: %s\n", err);
            goto done;
        }
    } else {
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < w; k++) printf("%.10g%c", res[i * w + k], k + 1 < w ? ' ' : '\n');
    }
    rc = 0;
done:
    free(x);
    free(th);
    free(th1);
    free(res);
    gold_model_destroy(&m);
    return rc;
}

/* ---- ppxd fisher ------------------------------------------------------------------------------ */

int gold_fisher(gold_model *m, const gold_data *g, double n_events, double *info)
{
    const size_t D = g->D;
    size_t used = 0;
    double *t = NULL;
    if (m) {
        if ((size_t)m->D != D || (size_t)m->C != g->C) {
            fprintf(stderr, "ppxd: the model (x %d, theta %d) does not fit the gold file (x %zu, theta %zu)\n", m->C,
                    m->D, g->C, D);
            return -1;
        }
        t = malloc((g->n ? g->n : 1) * D * sizeof *t);
        if (!t || gold_model_score(m, g->x, g->theta0, g->n, t) < 0) {
            free(t);
            return -1;
        }
    } else if (!g->has_score) {
        fprintf(stderr, "ppxd: the gold file has no scores (mined with --no-score)\n");
        return -1;
    }
    const double *src = m ? t : g->t;
    memset(info, 0, D * D * sizeof *info);
    for (size_t i = 0; i < g->n; i++) {
        if (g->y[i] != 0) continue; /* x ~ theta0: the point the information is about */
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b < D; b++) info[a * D + b] += src[i * D + a] * src[i * D + b];
        used++;
    }
    free(t);
    if (!used) {
        fprintf(stderr, "ppxd: no rows simulated at theta0 in the gold file\n");
        return -1;
    }
    for (size_t i = 0; i < D * D; i++) info[i] *= n_events / used;
    return (int)used;
}

int gold_cmd_fisher_main(int argc, char **argv)
{
    const char *model_path = NULL, *gold = NULL, *out = NULL;
    double n_events = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--model") == 0 && v) model_path = argv[++i];
        else if (strcmp(a, "--gold") == 0 && v) gold = argv[++i];
        else if (strcmp(a, "-o") == 0 && v) out = argv[++i];
        else if (strcmp(a, "--events") == 0 && v) {
            if (parse_pos_double(argv[++i], &n_events) < 0) return usage_error("--events wants a positive number", v);
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage:\n"
                   "  ppxd fisher --gold GOLD.ppxg [--model SALLY.ppxr] [--events N (1)] [-o INFO.npy]\n"
                   "\n"
                   "The expected Fisher information I_ij = N E[t_i t_j] at the gold file's theta0 (rows simulated\n"
                   "at theta0), with t the score t^(x) of a SALLY (or ratio) model evaluated on the file's x, or\n"
                   "without --model the mined joint scores t(x, z): the information in (x, z), an upper bound on\n"
                   "that in x alone.\n");
            return 0;
        } else {
            return usage_error("unknown or incomplete option (see ppxd fisher --help)", a);
        }
    }
    if (!gold) return usage_error("fisher needs --gold GOLD.ppxg (the x to average over, or the mined scores)", NULL);
    char err[300];
    gold_data g;
    if (gold_data_read(&g, gold, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        return 1;
    }
    gold_model *m = NULL;
    if (model_path && !(m = gold_model_load(model_path, err, sizeof err))) {
        fprintf(stderr, "ppxd: %s\n", err);
        gold_data_free(&g);
        return 1;
    }
    double *info = calloc(g.D * g.D + 1, sizeof *info);
    int rc = 1;
    int used = info ? gold_fisher(m, &g, n_events, info) : -1;
    if (used > 0) {
        printf("Fisher information for %g events at theta0 (%s, %d rows):\n", n_events,
               m ? "model score" : "joint score t(x,z): the (x,z) information", used);
        for (size_t a = 0; a < g.D; a++) {
            printf("  %-12s", g.theta_names[a]);
            for (size_t b = 0; b < g.D; b++) printf(" %12.6g", info[a * g.D + b]);
            printf("\n");
        }
        rc = 0;
        if (out && npy_write(out, info, g.D, g.D, err, sizeof err) < 0) {
            fprintf(stderr, "ppxd: %s\n", err);
            rc = 1;
        }
    }
    free(info);
    gold_model_destroy(&m);
    gold_data_free(&g);
    return rc;
}

/* ---- ppxd limits ------------------------------------------------------------------------------ */

int gold_limits(gold_model *m, const double *x, size_t n_obs, const double *grid, size_t n_grid, double *sum_lr)
{
    const size_t D = (size_t)m->D;
    double *th = malloc((n_obs ? n_obs : 1) * D * sizeof *th), *lr = malloc((n_obs ? n_obs : 1) * sizeof *lr);
    int rc = th && lr ? 0 : -1;
    for (size_t gi = 0; rc == 0 && gi < n_grid; gi++) {
        for (size_t i = 0; i < n_obs; i++) memcpy(th + i * D, grid + gi * D, D * sizeof *th);
        if (gold_model_log_r(m, x, th, n_obs, lr) < 0) {
            rc = -1;
            break;
        }
        double s = 0;
        for (size_t i = 0; i < n_obs; i++) s += lr[i];
        sum_lr[gi] = s;
    }
    free(th);
    free(lr);
    return rc;
}

int gold_cmd_limits_main(int argc, char **argv)
{
    const char *model_path = NULL, *xf = NULL, *out = NULL;
    double lo[64], hi[64];
    size_t gn[64], n_grid_opts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--model") == 0 && v) model_path = argv[++i];
        else if (strcmp(a, "--x-file") == 0 && v) xf = argv[++i];
        else if (strcmp(a, "-o") == 0 && v) out = argv[++i];
        else if (strcmp(a, "--grid") == 0 && v) {
            char *e1, *e2;
            uint64_t n;
            const char *g = argv[++i];
            double a0 = strtod(g, &e1), b0 = *e1 == ':' ? strtod(e1 + 1, &e2) : NAN;
            if (n_grid_opts == 64 || *e1 != ':' || !isfinite(b0) || *e2 != ':' || args_u64(e2 + 1, &n) < 0 || !n ||
                n > 100000 || !isfinite(a0) || (n > 1 && !(b0 > a0)))
                return usage_error("--grid wants LO:HI:N with LO < HI", g);
            lo[n_grid_opts] = a0;
            hi[n_grid_opts] = b0;
            gn[n_grid_opts++] = (size_t)n;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage:\n"
                   "  ppxd limits --model RATIO.ppxr --x-file EVENTS.npy --grid LO:HI:N [--grid ...] [-o OUT.npy|OUT.csv]\n"
                   "\n"
                   "For observed iid events x_1..x_n (rows of EVENTS [n, C]) and every point theta of the grid (one\n"
                   "--grid per theta dimension), the summed estimated log likelihood ratio\n"
                   "  sum_i log r^(x_i | theta, theta1) = log L(theta) - log L(theta1)\n"
                   "and -2 delta log L = 2 (max - sum) (asymptotically chi^2 with D degrees of freedom: 68%% at 2.30\n"
                   "for D = 2, 1.00 for D = 1; 95%% at 5.99 / 3.84), as exclusion contours are drawn.  Prints the\n"
                   "best-fit point; OUT gets rows [theta..., sum log r^, -2 delta log L].\n");
            return 0;
        } else {
            return usage_error("unknown or incomplete option (see ppxd limits --help)", a);
        }
    }
    if (!model_path || !xf || !n_grid_opts) return usage_error("limits needs --model, --x-file and --grid", NULL);
    nn_set_threads(1);
    char err[300];
    gold_model *m = gold_model_load(model_path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "ppxd: %s\n", err);
        return 1;
    }
    int rc = 1;
    double *x = NULL, *grid = NULL, *sum = NULL, *table = NULL;
    size_t n, c;
    if (m->method == GOLD_SALLY) {
        rc = usage_error("limits needs a ratio or density model (carl ... alices, nde, scandal), not sally", NULL);
        goto done;
    }
    if (n_grid_opts != (size_t)m->D) {
        fprintf(stderr, "ppxd: %zu --grid options for a model with %d theta dimensions\n", n_grid_opts, m->D);
        rc = 2;
        goto done;
    }
    if (npy_read(xf, &x, &n, &c, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        goto done;
    }
    if (c != (size_t)m->C) {
        fprintf(stderr, "ppxd: %s has %zu columns; the model's x has %d\n", xf, c, m->C);
        rc = 2;
        goto done;
    }
    size_t G = 1, D = (size_t)m->D;
    for (size_t k = 0; k < D; k++) G *= gn[k];
    grid = malloc(G * D * sizeof *grid);
    sum = malloc(G * sizeof *sum);
    table = malloc(G * (D + 2) * sizeof *table);
    if (!grid || !sum || !table) goto done;
    for (size_t gi = 0; gi < G; gi++) {
        size_t r = gi;
        for (size_t k = D; k-- > 0;) {
            size_t at = r % gn[k];
            r /= gn[k];
            grid[gi * D + k] = gn[k] == 1 ? lo[k] : lo[k] + (hi[k] - lo[k]) * at / (gn[k] - 1);
        }
    }
    if (gold_limits(m, x, n, grid, G, sum) < 0) goto done;
    size_t best = 0;
    for (size_t gi = 1; gi < G; gi++)
        if (sum[gi] > sum[best]) best = gi;
    for (size_t gi = 0; gi < G; gi++) {
        memcpy(table + gi * (D + 2), grid + gi * D, D * sizeof *table);
        table[gi * (D + 2) + D] = sum[gi];
        table[gi * (D + 2) + D + 1] = 2 * (sum[best] - sum[gi]);
    }
    printf("best fit over %zu grid points for %zu events:", G, n);
    for (size_t k = 0; k < D; k++) printf(" %s = %g", m->theta_names[k], grid[best * D + k]);
    printf("  (sum log r^ = %.6g)\n", sum[best]);
    rc = 0;
    if (out) {
        size_t ol = strlen(out);
        int csv = ol > 4 && strcmp(out + ol - 4, ".csv") == 0;
        int w;
        if (csv) {
            const char **names = calloc(D + 2, sizeof *names);
            if (!names) goto done;
            for (size_t k = 0; k < D; k++) names[k] = m->theta_names[k];
            names[D] = "sum_log_r";
            names[D + 1] = "minus2_delta_log_l";
            w = csv_write(out, names, table, G, D + 2, err, sizeof err);
            free(names);
        } else {
            w = npy_write(out, table, G, D + 2, err, sizeof err);
        }
        if (w < 0) {
            fprintf(stderr, "ppxd: %s\n", err);
            rc = 1;
        }
    }
done:
    free(x);
    free(grid);
    free(sum);
    free(table);
    gold_model_destroy(&m);
    return rc;
}
