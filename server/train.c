/* train.c — `ppxd train` (NPE / NRE from live PPX simulations or .npy files)
 * and `ppxd posterior` (sample, logprob, info of a trained model file).
 * See train.h for the entry points and usage() texts below for the options. */
#include "train.h"
#include "serve.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "engine.h"
#include "export.h"
#include "gold/gold_est.h"
#include "gold_cmd.h"
#include "jobs.h"
#include "model_file.h"
#include "nn/nn.h"
#include "npe.h"
#include "nre.h"
#include "policy.h"
#include "prior.h"
#include "stats.h"
#include "trace.h"

/* Set by the command line's SIGINT/SIGTERM handler (below): `ppxd posterior`
 * and `ppxd train` stop.  Jobs of ppxd daemon have their own flag. */
static volatile sig_atomic_t g_stop;
static void install_signals(void);

static int usage_error(const char *msg, const char *detail) { return cli_die(msg, detail); }

static void train_usage(FILE *f)
{
    fprintf(f,
        "usage:\n"
        "  ppxd train npe|nre SIMULATORS -n N --theta NAMES --x NAMES -o MODEL.ppxm [options]\n"
        "  ppxd train npe|nre --data THETA.npy X.npy --prior SPEC... -o MODEL.ppxm [options]\n"
        "\n"
        "Trains an amortized posterior q(theta | x): npe = a conditional normalizing flow (neural posterior\n"
        "estimation), nre = a classifier of joint vs marginal (theta, x) pairs (neural ratio estimation).\n"
        "\n"
        "data, live (PPX simulators; every Observe without a value is drawn by ppxd from its distribution):\n"
        ENGINE_SIM_OPTIONS_HELP
        "  -n N                        simulations to run\n"
        "  --theta A,B,...             named Samples forming theta, in order; 'PREFIX*' matches every named\n"
        "                              Sample of the first trace starting with PREFIX (in trace order)\n"
        "  --x A,B,...                 named Observes (or Samples/Tags) forming x; 'PREFIX*' as above\n"
        "                              A name with m values gives m columns.\n"
        "  The prior is read from the first trace (the distribution of each theta Sample); a warning is\n"
        "  printed if it changes in later traces.  --prior overrides it.\n"
        "  --save-data PREFIX          also write PREFIX_theta.npy and PREFIX_x.npy\n"
        "  --timeout-ms T, --start-timeout-ms T, --max-failures K   as for ppxd simulate\n"
        "data, offline:\n"
        "  --data THETA.npy X.npy      theta [N, D] and x [N, C] (float64/32; integer and bool arrays, e.g. counts,\n"
        "                              are converted to float64)\n"
        "  --prior SPEC                the prior, one or more theta dimensions per SPEC, in order (repeatable):\n"
        "                                KIND:P0[:P1][xN]   N independent dimensions (default 1), e.g.\n"
        "                                uniform:-1:1x2     two dimensions Uniform(low -1, high 1)\n"
        "                                normal:0:0.316     Normal(mean 0, standard deviation 0.316)\n"
        "                              kinds: normal(mean,sd) uniform(low,high) beta(a,b) exponential(rate)\n"
        "                              gamma(concentration,rate) lognormal(loc,scale) weibull(scale,concentration);\n"
        "                                mvn:MEAN:COV       a correlated (multivariate) normal over k dimensions:\n"
        "                                                   MEAN and COV inline or .npy files, e.g.\n"
        "                                                   'mvn:[0,1]:[[1,0.5],[0.5,2]]', mvn:mean.npy:cov.npy\n"
        "                                mvnprec:MEAN:PREC  the same with the precision (inverse covariance)\n"
        "                              SPECs may also be joined with commas: 'uniform:-1:1,normal:0:1'\n"
        "  --theta / --x NAMES         column names stored in the model (default theta_0.., x_0..)\n"
        "\n"
        "model:\n"
        "  --flow nsf|maf              npe: neural spline flow (default) or masked autoregressive flow\n"
        "  --transforms N (5)  --hidden H (50)  --blocks K (2)  --bins B (nsf, 10)  --tail-bound T (nsf, 3)\n"
        "  --autoregressive            nsf: autoregressive instead of coupling transforms\n"
        "  --theta-transform auto|all|none   npe: the flow models an unbounded transform of theta, recorded in\n"
        "                              the model file (samples and densities still come back in theta's units):\n"
        "                              auto (default): log for exponential, gamma, lognormal and weibull\n"
        "                              dimensions, logit for beta; all: also logit for uniform; none: theta as it is\n"
        "  --no-theta-transform        the same as --theta-transform none\n"
        "  --x-transform none|log|log1p  npe: feed log(x) (positive data) or log(1 + x) (data >= 0, counts) to\n"
        "                              the flow, every column; observations are transformed the same way\n"
        "  --bnre LAMBDA               nre: balanced NRE penalty (0 = plain NRE, 100 is BNRE's choice)\n"
        "training (sbi's defaults):\n"
        "  --batch B (200)  --lr LR (5e-4)  --clip C (5)  --val-frac F (0.1)  --patience E (20)\n"
        "  --max-epochs E (no limit)  --max-seconds S (no limit)  --seed S (1)\n"
        "  --threads T (1)             OpenBLAS threads for training\n"
        "  -o MODEL.ppxm               output model file (required); the losses of every epoch go to\n"
        "                              MODEL.ppxm.log.csv (epoch,train_loss,val_loss,seconds)\n"
        "  --serve ENDPOINT            then serve the model there (repeatable; as ppxd serve --serve) until\n"
        "                              SIGINT/SIGTERM; --serve-name NAME (default: the file's base name)\n"
        "  --quiet                     no progress output\n"
        "Ctrl-C stops simulating (training then uses what arrived) or training (the best weights are kept).\n");
}

static void posterior_usage(FILE *f)
{
    fprintf(f,
        "usage:\n"
        "  ppxd posterior sample  --model M OBS -n N -o SAMPLES.npy [options]\n"
        "  ppxd posterior logprob --model M OBS --theta-file THETA.npy [-o OUT.npy] [options]\n"
        "  ppxd posterior info    --model M\n"
        "\n"
        "OBS, the observation(s) x_o:\n"
        "  --obs V,V,...               all x values, in the model's x order (see info)\n"
        "  --obs NAME=V[,V...]         by name (repeatable; together they must give every x column)\n"
        "  --obs-file F.npy            m observations [m, C]: sample draws N for each (output rows grouped by\n"
        "                              observation); logprob takes 1 row or one per theta row\n"
        "sample:\n"
        "  -n N                        samples per observation\n"
        "  --max-seconds T (60)        time bound per observation: fail with the acceptance rate rather than hang\n"
        "  --method M                  NPE: rejection (always: draws outside the prior's support are rejected);\n"
        "                              NRE: sir (default, importance resampling from the prior), slice or mh (MCMC)\n"
        "  --oversample K (32)         sir: prior draws per sample\n"
        "  --chains C (20)  --warmup W (200)  --thin K (5)    MCMC\n"
        "logprob:\n"
        "  --theta-file THETA.npy      points [n, D]\n"
        "  --no-renorm                 NPE: skip the leakage correction (log q is not renormalised to the prior's\n"
        "                              support); NRE: print the unnormalised log ratio + log prior\n"
        "  --mass-draws N (10000)      draws estimating the in-support mass (NPE) or log Z (NRE)\n"
        "  -o OUT.npy                  write [n, 1] (default: one value per line on stdout)\n"
        "common:\n"
        "  --seed S (1)  --threads T (1)  -h, --help\n");
}

/* ---- small helpers ------------------------------------------------------------------- */

typedef struct strlist {
    char **v;
    size_t n;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int strlist_add(strlist *l, const char *s, size_t len)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv) return -1;
    l->v = nv;
    if (!(l->v[l->n] = strndup(s, len))) return -1;
    l->n++;
    return 0;
}

/* Comma-separated names appended to l; empty items are an error. */
static int strlist_split(strlist *l, const char *arg)
{
    const char *p = arg;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (len == 0) return -1;
        if (strlist_add(l, p, len) < 0) return -1;
        if (!p[len]) return 0;
        p += len + 1;
    }
}


static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* ==== ppxd train ============================================================================= */

typedef struct train_opts {
    int nre;                    /* 0: npe, 1: nre */
    engine_config ecfg;
    engine_sim_options sims;
    uint64_t n;
    strlist theta, x;           /* names or patterns */
    const char *data_theta, *data_x;
    const char **priors;
    size_t n_priors;
    const char *out, *save_data;
    flow_kind flow;
    int transforms, hidden, blocks, bins, autoregressive;
    double tail_bound, bnre;
    npe_train_config tcfg;
    int quiet;
    int tf_given;               /* --no-theta-transform or --x-transform given */
    const char **serve;         /* --serve: publish the trained model there and keep serving */
    size_t n_serve;
    const char *serve_name;     /* --serve-name (default: the output file's base name) */
} train_opts;

enum {
    T_SIM_CMD = 1000, T_CONNECT, T_THETA, T_X, T_DATA, T_PRIOR, T_SAVE_DATA, T_FLOW, T_TRANSFORMS, T_HIDDEN,
    T_BLOCKS, T_BINS, T_TAIL, T_AUTOREG, T_BNRE, T_BATCH, T_LR, T_CLIP, T_VAL_FRAC, T_PATIENCE, T_MAX_EPOCHS,
    T_MAX_SECONDS, T_SEED, T_THREADS, T_QUIET, T_TIMEOUT, T_START_TIMEOUT, T_MAX_FAILURES, T_SERVE, T_SERVE_NAME,
    T_NO_THETA_TF, T_THETA_TF, T_X_TF
};

static int positive_int(const char *arg, const char *opt, int lo, int hi, int *out)
{
    uint64_t v;
    if (args_u64(arg, &v) < 0 || v < (uint64_t)lo || v > (uint64_t)hi) {
        cli_complain("%s wants a whole number from %d to %d, got '%s'", opt, lo, hi, arg);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_train(train_opts *o, int argc, char **argv, int job)
{
    static const struct option opts[] = {
        {"sim-cmd", required_argument, 0, T_SIM_CMD}, {"connect", required_argument, 0, T_CONNECT},
        ENGINE_SIM_LONG_OPTIONS(T_CONNECT),
        {"theta", required_argument, 0, T_THETA}, {"x", required_argument, 0, T_X},
        {"data", required_argument, 0, T_DATA}, {"prior", required_argument, 0, T_PRIOR},
        {"save-data", required_argument, 0, T_SAVE_DATA}, {"flow", required_argument, 0, T_FLOW},
        {"transforms", required_argument, 0, T_TRANSFORMS}, {"hidden", required_argument, 0, T_HIDDEN},
        {"blocks", required_argument, 0, T_BLOCKS}, {"bins", required_argument, 0, T_BINS},
        {"tail-bound", required_argument, 0, T_TAIL}, {"autoregressive", no_argument, 0, T_AUTOREG},
        {"bnre", required_argument, 0, T_BNRE}, {"batch", required_argument, 0, T_BATCH},
        {"lr", required_argument, 0, T_LR}, {"clip", required_argument, 0, T_CLIP},
        {"val-frac", required_argument, 0, T_VAL_FRAC}, {"patience", required_argument, 0, T_PATIENCE},
        {"max-epochs", required_argument, 0, T_MAX_EPOCHS}, {"max-seconds", required_argument, 0, T_MAX_SECONDS},
        {"seed", required_argument, 0, T_SEED}, {"threads", required_argument, 0, T_THREADS},
        {"quiet", no_argument, 0, T_QUIET}, {"timeout-ms", required_argument, 0, T_TIMEOUT},
        {"start-timeout-ms", required_argument, 0, T_START_TIMEOUT},
        {"max-failures", required_argument, 0, T_MAX_FAILURES}, {"serve", required_argument, 0, T_SERVE},
        {"serve-name", required_argument, 0, T_SERVE_NAME}, {"no-theta-transform", no_argument, 0, T_NO_THETA_TF},
        {"x-transform", required_argument, 0, T_X_TF}, {"theta-transform", required_argument, 0, T_THETA_TF}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int ch;
    double dv;
    const char *kind = NULL;
    cli_getopt_reset("-j:n:o:h");
    optind = 1;
    opterr = !cli_capturing();
    int idx = 0; /* the long option just matched (engine_config_option, engine_sim_option take its name) */
    while ((ch = getopt_long(argc, argv, "-j:n:o:h", opts, &idx)) != -1) {
        switch (ch) {
        case 1: /* a positional argument, in order */
            if (kind) return usage_error("unexpected argument", optarg);
            kind = optarg;
            break;
        case T_SIM_CMD:
        case T_CONNECT:
        case 'j': {
            char why[80];
            if (engine_sim_option(&o->sims, ch == 'j' ? "j" : opts[idx].name, optarg, why, sizeof why) < 0)
                return usage_error(why, optarg);
            break;
        }
        case 'n':
            if (args_u64(optarg, &o->n) < 0 || o->n == 0) return usage_error("-n wants a positive number", optarg);
            break;
        case 'o': o->out = optarg; break;
        case T_THETA:
            if (strlist_split(&o->theta, optarg) < 0) return usage_error("--theta wants NAME[,NAME...]", optarg);
            break;
        case T_X:
            if (strlist_split(&o->x, optarg) < 0) return usage_error("--x wants NAME[,NAME...]", optarg);
            break;
        case T_DATA:
            o->data_theta = optarg;
            /* --data takes two files: the second is the next argument. */
            if (optind >= argc || argv[optind][0] == '-')
                return usage_error("--data wants two files: --data THETA.npy X.npy", NULL);
            o->data_x = argv[optind++];
            break;
        case T_PRIOR:
            if (args_push(&o->priors, &o->n_priors, optarg) < 0) return 2;
            break;
        case T_SAVE_DATA: o->save_data = optarg; break;
        case T_SERVE:
            if (args_push(&o->serve, &o->n_serve, optarg) < 0) return 2;
            break;
        case T_SERVE_NAME: o->serve_name = optarg; break;
        case T_FLOW:
            if (strcmp(optarg, "maf") == 0) o->flow = FLOW_MAF;
            else if (strcmp(optarg, "nsf") == 0) o->flow = FLOW_NSF;
            else return usage_error("--flow is 'nsf' or 'maf'", optarg);
            break;
        case T_TRANSFORMS: if (positive_int(optarg, "--transforms", 1, 64, &o->transforms) < 0) return 2; break;
        case T_HIDDEN: if (positive_int(optarg, "--hidden", 1, 4096, &o->hidden) < 0) return 2; break;
        case T_BLOCKS: if (positive_int(optarg, "--blocks", 0, 64, &o->blocks) < 0) return 2; break;
        case T_BINS: if (positive_int(optarg, "--bins", 1, 512, &o->bins) < 0) return 2; break;
        case T_TAIL:
            if (parse_double(optarg, &o->tail_bound) < 0 || !(o->tail_bound > 0))
                return usage_error("--tail-bound wants a positive number", optarg);
            break;
        case T_AUTOREG: o->autoregressive = 1; break;
        case T_NO_THETA_TF: o->tcfg.theta_transform = NPE_TF_NONE; o->tf_given = 1; break;
        case T_THETA_TF:
            if (strcmp(optarg, "none") == 0) o->tcfg.theta_transform = NPE_TF_NONE;
            else if (strcmp(optarg, "auto") == 0) o->tcfg.theta_transform = NPE_TF_AUTO;
            else if (strcmp(optarg, "all") == 0) o->tcfg.theta_transform = NPE_TF_ALL;
            else return usage_error("--theta-transform is auto, all or none", optarg);
            o->tf_given = 1;
            break;
        case T_X_TF: {
            int k = tf_kind_from_name(optarg);
            if (k != TF_NONE && k != TF_LOG && k != TF_LOG1P)
                return usage_error("--x-transform is none, log (positive data) or log1p (data >= 0, e.g. counts)",
                                   optarg);
            o->tcfg.x_transform = (tf_kind)k;
            o->tf_given = 1;
            break;
        }
        case T_BNRE:
            if (parse_double(optarg, &o->bnre) < 0 || o->bnre < 0)
                return usage_error("--bnre wants a number >= 0", optarg);
            break;
        case T_BATCH: if (positive_int(optarg, "--batch", 2, 1 << 20, &o->tcfg.batch) < 0) return 2; break;
        case T_LR:
            if (parse_double(optarg, &dv) < 0 || !(dv > 0) || dv > 10)
                return usage_error("--lr wants a positive number", optarg);
            o->tcfg.lr = (float)dv;
            break;
        case T_CLIP:
            if (parse_double(optarg, &o->tcfg.clip) < 0) return usage_error("--clip wants a number", optarg);
            break;
        case T_VAL_FRAC:
            if (parse_double(optarg, &o->tcfg.val_frac) < 0 || !(o->tcfg.val_frac > 0 && o->tcfg.val_frac < 1))
                return usage_error("--val-frac wants a number in (0, 1)", optarg);
            break;
        case T_PATIENCE: if (positive_int(optarg, "--patience", 1, 1000000, &o->tcfg.patience) < 0) return 2; break;
        case T_MAX_EPOCHS:
            if (positive_int(optarg, "--max-epochs", 1, 1 << 30, &o->tcfg.max_epochs) < 0) return 2;
            break;
        case T_MAX_SECONDS:
            if (parse_double(optarg, &o->tcfg.max_seconds) < 0 || !(o->tcfg.max_seconds > 0))
                return usage_error("--max-seconds wants a positive number", optarg);
            break;
        case T_SEED:
            if (args_u64(optarg, &o->tcfg.seed) < 0) return usage_error("--seed wants a non-negative integer", optarg);
            break;
        case T_THREADS: if (positive_int(optarg, "--threads", 1, 1024, &o->tcfg.threads) < 0) return 2; break;
        case T_QUIET: o->quiet = 1; break;
        case T_TIMEOUT:
        case T_START_TIMEOUT:
        case T_MAX_FAILURES: {
            char why[80];
            if (engine_config_option(&o->ecfg, opts[idx].name, optarg, why, sizeof why) < 0)
                return usage_error(why, optarg);
            break;
        }
        case 'h':
            if (cli_capturing()) return usage_error("--help is not for jobs", NULL);
            train_usage(stdout);
            exit(0);
        default:
            if (cli_capturing()) return cli_unknown_option(argc, argv);
            train_usage(stderr);
            return 2;
        }
    }
    if (!kind) return usage_error("train needs a model kind: ppxd train npe|nre ... (see ppxd train --help)", NULL);
    if (strcmp(kind, "npe") == 0) o->nre = 0;
    else if (strcmp(kind, "nre") == 0) o->nre = 1;
    else return usage_error("unknown model kind (npe or nre)", kind);
    char why[160];
    /* A job uses the daemon's pool: live unless it gives --data. */
    int live = job ? !o->data_theta : engine_sim_options_apply(&o->sims, &o->ecfg, why, sizeof why);
    if (live && o->data_theta) return usage_error("give either simulators (--sim-cmd/--connect) or --data, not both", NULL);
    if (!live && !o->data_theta)
        return usage_error("no data: give simulators (" ENGINE_SIM_OPTIONS_SHORT ") or --data THETA.npy X.npy", NULL);
    if (live) {
        if (!o->n) return usage_error("live training needs -n N (the number of simulations)", NULL);
        if (!o->theta.n || !o->x.n) return usage_error("live training needs --theta NAMES and --x NAMES", NULL);
    } else {
        if (!o->n_priors) return usage_error("offline training needs the prior: --prior SPEC (see --help)", NULL);
        if (o->n) return usage_error("-n is for live simulation; with --data every row is used", NULL);
    }
    if (!o->out && !job) return usage_error("train needs -o MODEL.ppxm", NULL);
    if (o->nre && (o->flow || o->bins || o->autoregressive || o->tail_bound > 0 || o->transforms))
        return usage_error("--flow, --transforms, --bins, --tail-bound and --autoregressive are NPE options", NULL);
    if (!o->nre && o->bnre > 0) return usage_error("--bnre is an NRE option", NULL);
    if (o->nre && o->tf_given)
        return usage_error("--theta-transform, --no-theta-transform and --x-transform are NPE options", NULL);
    o->ecfg.progress = !o->quiet;
    o->ecfg.seed = o->tcfg.seed;
    o->tcfg.progress = !o->quiet;
    return 0;
}

/* ---- live simulations ------------------------------------------------------------------------- */

typedef struct live_ctx {
    const train_opts *o;
    strlist theta_names, x_names; /* expanded */
    export_table *th, *xt;
    prior *trace_prior;           /* from the first trace */
    trace *first;                 /* copy of the first trace, for prior-change checks */
    uint8_t *warned;              /* per theta name: change already reported */
    uint64_t skipped;             /* traces lacking a name (after the first) */
    uint64_t changed;             /* traces whose theta distributions differ from the first */
} live_ctx;

static int is_pattern(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && s[n - 1] == '*';
}

/* Expand names/patterns against the first trace.  theta: Samples only. */
static int expand_names(const strlist *pats, const trace *t, int theta, strlist *out)
{
    for (size_t i = 0; i < pats->n; i++) {
        const char *p = pats->v[i];
        if (!is_pattern(p)) {
            if (strlist_add(out, p, strlen(p)) < 0) return -1;
            continue;
        }
        size_t pl = strlen(p) - 1, before = out->n;
        for (size_t k = 0; k < t->n_entries; k++) {
            const trace_entry *e = &t->entries[k];
            if (!e->name[0] || strncmp(e->name, p, pl) != 0) continue;
            if (theta && e->kind != TRACE_SAMPLE) continue;
            int dup = 0;
            for (size_t q = 0; q < out->n && !dup; q++) dup = strcmp(out->v[q], e->name) == 0;
            if (!dup && strlist_add(out, e->name, strlen(e->name)) < 0) return -1;
        }
        if (out->n == before) {
            fprintf(stderr, "ppxd: '%s' matches no %s in the first trace\n", p, theta ? "named Sample" : "named entry");
            return -1;
        }
    }
    return 0;
}

static void list_names(const trace *t)
{
    fprintf(stderr, "ppxd: named entries of the first trace:");
    size_t shown = 0;
    for (size_t k = 0; k < t->n_entries && shown < 40; k++) {
        const trace_entry *e = &t->entries[k];
        if (!e->name[0]) continue;
        fprintf(stderr, " %s(%s)", e->name, e->kind == TRACE_SAMPLE ? "Sample" : e->kind == TRACE_OBSERVE ? "Observe" : "Tag");
        shown++;
    }
    fprintf(stderr, shown ? "\n" : " none\n");
}

prior *train_prior_from_trace(const trace *t, const char *const *names, size_t n_names, char *err, size_t err_len)
{
    size_t cols = 0;
    for (size_t i = 0; i < n_names; i++) {
        const trace_entry *e = trace_find_name(t, names[i]);
        if (!e) {
            snprintf(err, err_len, "the trace has no entry named '%s'", names[i]);
            return NULL;
        }
        cols += e->value.len;
    }
    prior *p = prior_new((int)cols);
    if (!p) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    int j = 0;
    for (size_t i = 0; i < n_names; i++) {
        const trace_entry *e = trace_find_name(t, names[i]);
        if (e->kind != TRACE_SAMPLE || e->observed) {
            snprintf(err, err_len, "theta '%s' is %s, not a latent Sample: theta must be drawn by the simulator",
                     names[i], e->kind == TRACE_OBSERVE ? "an Observe" : e->kind == TRACE_TAG ? "a Tag" : "observed");
            prior_destroy(&p);
            return NULL;
        }
        for (size_t k = 0; k < e->value.len; k++, j++) {
            const trace_array *a0 = &e->param[0], *a1 = &e->param[1];
            double p0 = a0->len ? a0->data[a0->len == 1 ? 0 : k] : NAN;
            double p1 = dist_nparams(e->dist) == 2 && a1->len ? a1->data[a1->len == 1 ? 0 : k] : 0.0;
            char why[300];
            if (prior_set(p, j, e->dist, p0, p1, why, sizeof why) < 0) {
                snprintf(err, err_len, "theta '%s': %s", names[i], why);
                prior_destroy(&p);
                return NULL;
            }
        }
    }
    return p;
}

static int same_array(const trace_array *a, const trace_array *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len * sizeof *a->data) == 0);
}

static int live_commit(void *vctx, uint64_t index, const trace *t)
{
    live_ctx *c = vctx;
    char err[512];
    if (!c->first) {
        /* The first trace fixes the names, the columns and the prior. */
        if (expand_names(&c->o->theta, t, 1, &c->theta_names) < 0 || expand_names(&c->o->x, t, 0, &c->x_names) < 0) {
            list_names(t);
            return -1;
        }
        for (int side = 0; side < 2; side++) {
            const strlist *l = side ? &c->x_names : &c->theta_names;
            for (size_t i = 0; i < l->n; i++)
                if (!trace_find_name(t, l->v[i])) {
                    fprintf(stderr, "ppxd: the first trace has no entry named '%s' (given with --%s)\n", l->v[i],
                            side ? "x" : "theta");
                    list_names(t);
                    return -1;
                }
        }
        c->th = export_table_new((const char *const *)c->theta_names.v, c->theta_names.n);
        c->xt = export_table_new((const char *const *)c->x_names.v, c->x_names.n);
        c->first = trace_new();
        c->warned = calloc(c->theta_names.n, 1);
        if (!c->th || !c->xt || !c->first || !c->warned || trace_copy(c->first, t) < 0) {
            fprintf(stderr, "ppxd: out of memory\n");
            return -1;
        }
        if (!(c->trace_prior = train_prior_from_trace(t, (const char *const *)c->theta_names.v, c->theta_names.n, err,
                                                         sizeof err))) {
            if (!c->o->n_priors) {
                fprintf(stderr, "ppxd: cannot take the prior from the simulator: %s\n", err);
                return -1;
            }
        }
    } else {
        for (size_t i = 0; i < c->theta_names.n; i++) {
            const trace_entry *a = trace_find_name(t, c->theta_names.v[i]);
            const trace_entry *b = trace_find_name(c->first, c->theta_names.v[i]);
            if (!a || (a->dist == b->dist && same_array(&a->param[0], &b->param[0]) &&
                       same_array(&a->param[1], &b->param[1])))
                continue;
            c->changed++;
            if (!c->warned[i]) {
                c->warned[i] = 1;
                fprintf(stderr, "ppxd: warning: the distribution of theta '%s' in trace %llu differs from the first "
                        "trace's (%s); the model uses the first trace's prior\n", c->theta_names.v[i],
                        (unsigned long long)index, dist_kind_name(b->dist));
            }
            break;
        }
    }
    /* A trace lacking a name (e.g. another branch of the program) is skipped,
     * checked before adding so the two tables stay row-aligned. */
    for (int side = 0; side < 2; side++) {
        const strlist *l = side ? &c->x_names : &c->theta_names;
        for (size_t i = 0; i < l->n; i++) {
            const trace_entry *e = trace_find_name(t, l->v[i]);
            if (!e || e->value.len == 0) {
                if (!c->skipped)
                    fprintf(stderr, "ppxd: warning: trace %llu has no value named '%s': skipped (and any like it)\n",
                            (unsigned long long)index, l->v[i]);
                c->skipped++;
                return 0;
            }
        }
    }
    if (export_table_add(c->th, t, err, sizeof err) < 0 || export_table_add(c->xt, t, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        return -1;
    }
    return 0;
}

static void live_free(live_ctx *c)
{
    strlist_free(&c->theta_names);
    strlist_free(&c->x_names);
    export_table_destroy(&c->th);
    export_table_destroy(&c->xt);
    prior_destroy(&c->trace_prior);
    trace_destroy(&c->first);
    free(c->warned);
}

/* ---- training ------------------------------------------------------------------------------------ */

static int write_npy_pair(const char *prefix, const double *th, size_t n, size_t d, const double *x, size_t c)
{
    size_t pl = strlen(prefix) + 16;
    char *a = malloc(pl), *b = malloc(pl);
    char err[300];
    int rc = -1;
    if (!a || !b) goto out;
    snprintf(a, pl, "%s_theta.npy", prefix);
    snprintf(b, pl, "%s_x.npy", prefix);
    if (npy_write(a, th, n, d, err, sizeof err) < 0 || npy_write(b, x, n, c, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: --save-data: %s\n", err);
        goto out;
    }
    fprintf(stderr, "ppxd: wrote the simulations to %s and %s\n", a, b);
    rc = 0;
out:
    free(a);
    free(b);
    return rc;
}

/* Names for the model's columns: from a table, or from --theta/--x given
 * offline (must match the column count), or the defaults. */
static int name_columns(model_file *m, const export_table *th, const export_table *xt, const train_opts *o)
{
    for (int side = 0; side < 2; side++) {
        int n = side ? m->context : m->dim;
        const export_table *t = side ? xt : th;
        const strlist *given = side ? &o->x : &o->theta;
        if (!t && given->n && given->n != (size_t)n) {
            fprintf(stderr, "ppxd: --%s gives %zu names for %d columns\n", side ? "x" : "theta", given->n, n);
            return -1;
        }
        for (int j = 0; j < n; j++) {
            const char *nm = t ? export_table_col_name(t, (size_t)j) : given->n ? given->v[j] : NULL;
            if (!nm) continue;
            if ((side ? model_file_set_x_name(m, j, nm) : model_file_set_theta_name(m, j, nm)) < 0) return -1;
        }
    }
    return 0;
}

/* ---- a training run: the CLI's, or a ppxd daemon job's ------------------------------------------- */

struct train_job {
    train_opts o;
    prior *pr;                  /* --prior, or the simulator's (live) */
    live_ctx live;
    ordered_job job;
    int have_job;
    policy *p;
    double *theta, *x;          /* [n x d], [n x cdim] */
    size_t n, d, cdim;
    char *source, *log_path, *out;
    npe_posterior *np;
    nre_posterior *rp;
    model_file *m;              /* the trained model (owned by np or rp) */
    npe_train_report rep;
    volatile sig_atomic_t stop; /* set to stop the simulations' use or the training (SIGINT, cancel) */
};

train_job *train_job_parse(int argc, char **argv, int job, int *rc)
{
    train_job *tj = calloc(1, sizeof *tj);
    *rc = 1;
    if (!tj) return NULL;
    engine_config_defaults(&tj->o.ecfg);
    tj->o.tcfg = npe_train_defaults();
    tj->o.blocks = -1;
    if ((*rc = parse_train(&tj->o, argc, argv, job)) != 0) {
        train_job_destroy(&tj);
        return NULL;
    }
    tj->o.tcfg.stop = &tj->stop;
    char err[600];
    if (tj->o.n_priors && !(tj->pr = prior_parse(tj->o.priors, tj->o.n_priors, err, sizeof err))) {
        *rc = usage_error(err, NULL);
        train_job_destroy(&tj);
        return NULL;
    }
    if (tj->o.out) tj->out = strdup(tj->o.out);
    return tj;
}

int train_job_daemon_check(const train_job *tj, char *msg, size_t len)
{
    const train_opts *o = &tj->o;
    const engine_sim_options *so = &o->sims;
    if (engine_sim_options_given(so))
        snprintf(msg, len, ENGINE_JOB_SIM_OPTIONS_REFUSED);
    else if (o->data_theta)
        snprintf(msg, len, "--data reads files on the daemon's host: not for jobs (train from the pool's simulations)");
    else if (engine_timeouts_changed(&o->ecfg))
        snprintf(msg, len, ENGINE_JOB_TIMEOUTS_REFUSED);
    else if (o->out || o->save_data || o->n_serve || o->serve_name)
        snprintf(msg, len, "-o, --save-data, --serve and --serve-name are not for jobs: the model goes to the job's "
                           "directory and is served under the job's name");
    else
        return 0;
    return -1;
}

void train_job_set_out(train_job *tj, const char *path)
{
    free(tj->out);
    tj->out = strdup(path);
}

uint64_t train_job_seed(const train_job *tj) { return tj->o.tcfg.seed; }
int train_job_max_epochs(const train_job *tj) { return tj->o.tcfg.max_epochs; }
void train_job_stop(train_job *tj) { tj->stop = 1; }

int train_job_sim_begin(train_job *tj, size_t slots, policy **p, const job_ops **ops, void **job)
{
    memset(&tj->live, 0, sizeof tj->live);
    tj->live.o = &tj->o;
    tj->p = policy_prior_new(slots, tj->o.tcfg.seed);
    if (!tj->p || ordered_job_init(&tj->job, tj->o.n, 4 * slots + 64, live_commit, &tj->live) < 0) {
        fprintf(stderr, "ppxd: out of memory\n");
        return -1;
    }
    tj->have_job = 1;
    *p = tj->p;
    *ops = &ordered_job_ops;
    *job = &tj->job;
    return 0;
}

void train_job_sim_progress(const train_job *tj, uint64_t *done, uint64_t *total)
{
    *done = tj->have_job ? tj->job.next_commit : 0;
    *total = tj->o.n;
}

int train_job_sim_failed(const train_job *tj) { return tj->have_job && tj->job.failed; }

/* The simulations into theta/x, the prior settled.  0 or -1. */
static int take_live(train_job *tj)
{
    live_ctx *c = &tj->live;
    if (c->skipped)
        fprintf(stderr, "ppxd: %llu traces skipped for lacking a theta or x name\n", (unsigned long long)c->skipped);
    if (c->changed)
        fprintf(stderr, "ppxd: warning: %llu traces had theta distributions different from the first trace's\n",
                (unsigned long long)c->changed);
    if (!c->th || export_table_rows(c->th) == 0) {
        fprintf(stderr, "ppxd: no usable simulation arrived\n");
        return -1;
    }
    tj->n = export_table_rows(c->th);
    tj->d = export_table_cols(c->th);
    tj->cdim = export_table_cols(c->xt);
    tj->theta = malloc(tj->n * tj->d * sizeof *tj->theta);
    tj->x = malloc(tj->n * tj->cdim * sizeof *tj->x);
    if (!tj->theta || !tj->x) {
        fprintf(stderr, "ppxd: out of memory\n");
        return -1;
    }
    memcpy(tj->theta, export_table_data(c->th), tj->n * tj->d * sizeof *tj->theta);
    memcpy(tj->x, export_table_data(c->xt), tj->n * tj->cdim * sizeof *tj->x);
    if (!tj->pr) {
        tj->pr = c->trace_prior;
        c->trace_prior = NULL;
    } else if (c->trace_prior && !prior_equal(tj->pr, c->trace_prior)) {
        char a[512];
        prior_format(c->trace_prior, a, sizeof a);
        fprintf(stderr, "ppxd: note: --prior replaces the simulator's prior (%s)\n", a);
    }
    const engine_config *ec = &tj->o.ecfg;
    size_t sl = strlen(ec->sim_cmd ? ec->sim_cmd : "") + 256;
    tj->source = malloc(sl);
    if (tj->source) {
        if (ec->sim_cmd)
            snprintf(tj->source, sl, "live: %zu simulations of '%s' (-j %zu)", tj->n, ec->sim_cmd, ec->n_launch);
        else if (ec->n_connect)
            snprintf(tj->source, sl, "live: %zu simulations from %zu connected simulator%s", tj->n, ec->n_connect,
                     ec->n_connect == 1 ? "" : "s");
        else
            snprintf(tj->source, sl, "live: %zu simulations from connected-in simulators", tj->n);
    }
    if (tj->o.save_data && write_npy_pair(tj->o.save_data, tj->theta, tj->n, tj->d, tj->x, tj->cdim) < 0) return -1;
    return 0;
}

/* --data THETA.npy X.npy into theta/x.  0 or -1. */
static int load_data(train_job *tj)
{
    const train_opts *o = &tj->o;
    char err[600];
    size_t n2;
    if (npy_read(o->data_theta, &tj->theta, &tj->n, &tj->d, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: --data: %s\n", err); /* err names the file */
        return -1;
    }
    if (npy_read(o->data_x, &tj->x, &n2, &tj->cdim, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: --data: %s\n", err);
        return -1;
    }
    if (tj->n != n2) {
        fprintf(stderr, "ppxd: %s has %zu rows but %s has %zu: rows must pair up\n", o->data_theta, tj->n, o->data_x,
                n2);
        return -1;
    }
    size_t sl = strlen(o->data_theta) + strlen(o->data_x) + 64;
    tj->source = malloc(sl);
    if (tj->source) snprintf(tj->source, sl, "files: theta %s, x %s", o->data_theta, o->data_x);
    return 0;
}

/* Train on theta/x and save the model to tj->out.  0, 1 (failure) or 2 (a
 * usage error found late: the prior's dimension, offline). */
static int fit(train_job *tj, char *msg, size_t msg_len)
{
    train_opts *o = &tj->o;
    char err[600];
    size_t n = tj->n, d = tj->d, cdim = tj->cdim;
    msg[0] = 0;
    if ((size_t)tj->pr->dim != d) {
        snprintf(msg, msg_len, "the prior has %d dimension%s but theta has %zu column%s", tj->pr->dim,
                 tj->pr->dim == 1 ? "" : "s", d, d == 1 ? "" : "s");
        fprintf(stderr, "ppxd: %s\n", msg);
        return o->data_theta ? 2 : 1;
    }
    npe_data data;
    if (npe_data_init(&data, tj->theta, tj->x, n, (int)d, (int)cdim, err, sizeof err) < 0) {
        snprintf(msg, msg_len, "%s", err);
        fprintf(stderr, "ppxd: %s\n", err);
        return 1;
    }
    if (data.n_dropped)
        fprintf(stderr, "ppxd: dropped %zu of %zu simulations with a NaN or infinite value\n", data.n_dropped, n);
    if (!o->quiet) {
        char pb[512];
        prior_format(tj->pr, pb, sizeof pb);
        fprintf(stderr, "ppxd: training %s on %zu simulations (theta %zu, x %zu), prior %s\n",
                o->nre ? "NRE" : o->flow == FLOW_MAF ? "NPE (MAF)" : "NPE (NSF)", data.n, d, cdim, pb);
    }
    /* The per-epoch log next to the model (for training-curve plots). */
    size_t lpl = strlen(tj->out) + sizeof ".log.csv";
    tj->log_path = malloc(lpl);
    if (tj->log_path) snprintf(tj->log_path, lpl, "%s.log.csv", tj->out);
    o->tcfg.log_path = tj->log_path;
    npe_train_report *rep = &tj->rep;
    if (o->nre) {
        nre_net_config nc = nre_net_defaults();
        if (o->hidden) nc.hidden = o->hidden;
        if (o->blocks >= 0) nc.n_blocks = o->blocks;
        nc.bnre_lambda = o->bnre;
        tj->rp = nre_train(&data, tj->pr, &nc, &o->tcfg, rep, err, sizeof err);
        if (tj->rp) tj->m = nre_posterior_model(tj->rp);
    } else {
        flow_kind fk = o->flow ? o->flow : FLOW_NSF;
        flow_config fc = flow_config_default(fk, (int)d, (int)cdim);
        if (o->transforms) fc.n_transforms = o->transforms;
        if (o->hidden) fc.hidden = o->hidden;
        if (o->blocks >= 0) fc.n_blocks = o->blocks;
        if (o->bins) fc.n_bins = o->bins;
        if (o->tail_bound > 0) fc.tail_bound = (float)o->tail_bound;
        if (o->autoregressive) fc.autoregressive = 1;
        tj->np = npe_train(&data, tj->pr, &fc, &o->tcfg, rep, err, sizeof err);
        if (tj->np) tj->m = npe_posterior_model(tj->np);
        if (tj->np && rep->n_outside)
            fprintf(stderr, "ppxd: warning: dropped %zu simulations whose theta lies outside the prior's support%s "
                    "(they cannot be transformed)\n", rep->n_outside,
                    o->tcfg.x_transform != TF_NONE ? " or whose x is outside the x transform's domain" : "");
    }
    npe_data_free(&data);
    if (!tj->m) {
        snprintf(msg, msg_len, "training failed: %s", err);
        fprintf(stderr, "ppxd: %s\n", msg);
        return 1;
    }
    if (name_columns(tj->m, tj->live.th, tj->live.xt, o) < 0 ||
        model_file_set_source(tj->m, tj->source ? tj->source : "") < 0) {
        snprintf(msg, msg_len, "cannot name the model's columns");
        return 1;
    }
    if (model_file_save(tj->m, tj->out, err, sizeof err) < 0) {
        snprintf(msg, msg_len, "%s", err);
        fprintf(stderr, "ppxd: %s\n", err);
        return 1;
    }
    snprintf(msg, msg_len, "%s, %d epochs (best %d, validation loss %.4f), %.1f s, %zu simulations (%zu dropped)%s",
             model_kind_name(tj->m->kind), rep->epochs, rep->best_epoch, rep->best_val_loss, rep->seconds, n,
             rep->n_dropped, rep->stop == NPE_STOP_REQUESTED ? ", training interrupted" : "");
    fprintf(stderr, "ppxd train: wrote %s: %s\n", tj->out, msg);
    if (tj->log_path) fprintf(stderr, "ppxd train: per-epoch losses in %s\n", tj->log_path);
    return 0;
}

int train_job_fit(train_job *tj, const model_file **m, char *msg, size_t msg_len)
{
    *m = NULL;
    if (take_live(tj) < 0) {
        snprintf(msg, msg_len, "no usable simulation arrived (see the daemon's log)");
        return 1;
    }
    int rc = fit(tj, msg, msg_len);
    if (rc == 0) *m = tj->m;
    return rc;
}

int train_job_stopped(const train_job *tj) { return tj->stop != 0; }

void train_job_destroy(train_job **tjp)
{
    if (!tjp || !*tjp) return;
    train_job *tj = *tjp;
    if (tj->have_job) ordered_job_free(&tj->job);
    policy_destroy(&tj->p);
    npe_posterior_destroy(&tj->np);
    nre_posterior_destroy(&tj->rp);
    free(tj->theta);
    free(tj->x);
    free(tj->source);
    free(tj->log_path);
    free(tj->out);
    prior_destroy(&tj->pr);
    live_free(&tj->live);
    strlist_free(&tj->o.theta);
    strlist_free(&tj->o.x);
    engine_sim_options_free(&tj->o.sims);
    free(tj->o.priors);
    free(tj->o.serve);
    free(tj);
    *tjp = NULL;
}

/* ---- the command line ---------------------------------------------------------------------------- */

/* The CLI's signal handler reaches the running command through these (the
 * daemon's jobs never touch them). */
static engine *g_engine;
static train_job *g_train;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_train) g_train->stop = 1;
    if (g_engine) engine_request_stop(g_engine);
}

static void install_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

/* Run the simulators on an engine of their own.  0 or -1. */
static int run_live(train_job *tj)
{
    engine *e = engine_new(&tj->o.ecfg);
    if (!e) return -1;
    g_engine = e;
    policy *p;
    const job_ops *ops;
    void *job;
    int rc = -1;
    if (train_job_sim_begin(tj, engine_slots(e), &p, &ops, &job) == 0) {
        int er = engine_run(e, p, ops, job);
        rc = er == 0 && !tj->job.failed ? 0 : -1;
        if (rc < 0 && g_stop && !tj->job.failed && tj->live.th && export_table_rows(tj->live.th) > 0) {
            fprintf(stderr, "ppxd: interrupted: training on the %zu simulations received\n",
                    export_table_rows(tj->live.th));
            g_stop = 0;
            tj->stop = 0;
            rc = 0;
        }
    }
    if (!tj->o.quiet) engine_print_stats(e, stderr);
    g_engine = NULL;
    engine_destroy(&e);
    return rc;
}

int ppxd_train_main(int argc, char **argv)
{
    int rc;
    train_job *tj = train_job_parse(argc, argv, 0, &rc);
    if (!tj) return rc;
    g_train = tj;
    install_signals();
    train_opts *o = &tj->o;
    rc = 1;
    char msg[600];
    if (o->data_theta) {
        if (load_data(tj) < 0) goto out;
        rc = fit(tj, msg, sizeof msg);
    } else {
        if (run_live(tj) < 0 || take_live(tj) < 0) goto out;
        rc = fit(tj, msg, sizeof msg);
    }
    if (rc == 0 && o->n_serve) {
        /* The same daemon trains and serves: publish the model just written
         * and serve it until SIGINT/SIGTERM. */
        serve_config sc = serve_config_defaults();
        sc.endpoints = o->serve;
        sc.n_endpoints = o->n_serve;
        sc.quiet = o->quiet;
        char name[256];
        if (o->serve_name) {
            snprintf(name, sizeof name, "%s", o->serve_name);
        } else {
            const char *b = strrchr(o->out, '/');
            snprintf(name, sizeof name, "%s", b ? b + 1 : o->out);
            char *dot = strrchr(name, '.');
            if (dot && dot != name) *dot = 0;
        }
        fprintf(stderr, "ppxd train: serving '%s' on %s%s\n", name, o->serve[0], o->n_serve > 1 ? " (and more)" : "");
        rc = serve_run(&sc, name, tj->m, o->out);
    }
out:
    g_train = NULL;
    train_job_destroy(&tj);
    return rc;
}

/* ==== ppxd posterior ========================================================================== */

typedef struct post_opts {
    const char *action;
    const char *model, *out, *obs_file, *theta_file;
    strlist obs;             /* --obs arguments as given */
    uint64_t n;
    uint64_t seed;
    double max_seconds;
    int method;              /* -1: default */
    int oversample, chains, warmup, thin, threads;
    int no_renorm;
    uint64_t mass_draws;
} post_opts;

enum {
    P_MODEL = 2000, P_OBS, P_OBS_FILE, P_THETA_FILE, P_SEED, P_MAX_SECONDS, P_METHOD, P_OVERSAMPLE, P_CHAINS,
    P_WARMUP, P_THIN, P_THREADS, P_NO_RENORM, P_MASS_DRAWS
};

static int parse_posterior(post_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, P_MODEL}, {"obs", required_argument, 0, P_OBS},
        {"obs-file", required_argument, 0, P_OBS_FILE}, {"theta-file", required_argument, 0, P_THETA_FILE},
        {"seed", required_argument, 0, P_SEED}, {"max-seconds", required_argument, 0, P_MAX_SECONDS},
        {"method", required_argument, 0, P_METHOD}, {"oversample", required_argument, 0, P_OVERSAMPLE},
        {"chains", required_argument, 0, P_CHAINS}, {"warmup", required_argument, 0, P_WARMUP},
        {"thin", required_argument, 0, P_THIN}, {"threads", required_argument, 0, P_THREADS},
        {"no-renorm", no_argument, 0, P_NO_RENORM}, {"mass-draws", required_argument, 0, P_MASS_DRAWS},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int ch;
    optind = 1;
    opterr = 1;
    while ((ch = getopt_long(argc, argv, "-n:o:h", opts, NULL)) != -1) {
        switch (ch) {
        case 1:
            if (o->action) return usage_error("unexpected argument", optarg);
            o->action = optarg;
            break;
        case P_MODEL: o->model = optarg; break;
        case P_OBS:
            if (strlist_add(&o->obs, optarg, strlen(optarg)) < 0) return 2;
            break;
        case P_OBS_FILE: o->obs_file = optarg; break;
        case P_THETA_FILE: o->theta_file = optarg; break;
        case 'n':
            if (args_u64(optarg, &o->n) < 0 || !o->n || o->n > ((uint64_t)1 << 32))
                return usage_error("-n wants a positive number", optarg);
            break;
        case 'o': o->out = optarg; break;
        case P_SEED:
            if (args_u64(optarg, &o->seed) < 0) return usage_error("--seed wants a non-negative integer", optarg);
            break;
        case P_MAX_SECONDS:
            if (parse_double(optarg, &o->max_seconds) < 0 || !(o->max_seconds > 0))
                return usage_error("--max-seconds wants a positive number", optarg);
            break;
        case P_METHOD:
            if (strcmp(optarg, "rejection") == 0) o->method = 100;
            else if ((o->method = nre_sample_method_from_name(optarg)) < 0)
                return usage_error("--method is rejection (NPE), sir, slice or mh (NRE)", optarg);
            break;
        case P_OVERSAMPLE: if (positive_int(optarg, "--oversample", 1, 1 << 20, &o->oversample) < 0) return 2; break;
        case P_CHAINS: if (positive_int(optarg, "--chains", 1, 1 << 20, &o->chains) < 0) return 2; break;
        case P_WARMUP: if (positive_int(optarg, "--warmup", 0, 1 << 30, &o->warmup) < 0) return 2; break;
        case P_THIN: if (positive_int(optarg, "--thin", 1, 1 << 20, &o->thin) < 0) return 2; break;
        case P_THREADS: if (positive_int(optarg, "--threads", 1, 1024, &o->threads) < 0) return 2; break;
        case P_NO_RENORM: o->no_renorm = 1; break;
        case P_MASS_DRAWS:
            if (args_u64(optarg, &o->mass_draws) < 0 || !o->mass_draws || o->mass_draws > ((uint64_t)1 << 32))
                return usage_error("--mass-draws wants a positive number", optarg);
            break;
        case 'h': posterior_usage(stdout); exit(0);
        default: posterior_usage(stderr); return 2;
        }
    }
    if (!o->action) return usage_error("posterior needs an action: sample, logprob or info (see ppxd posterior --help)", NULL);
    if (strcmp(o->action, "sample") && strcmp(o->action, "logprob") && strcmp(o->action, "info"))
        return usage_error("unknown posterior action (sample, logprob, info)", o->action);
    if (!o->model) return usage_error("posterior needs --model MODEL.ppxm", NULL);
    if (strcmp(o->action, "info") == 0) return 0;
    if (!o->obs.n && !o->obs_file) return usage_error("no observation: give --obs V,V,... or --obs-file F.npy", NULL);
    if (o->obs.n && o->obs_file) return usage_error("give --obs or --obs-file, not both", NULL);
    if (strcmp(o->action, "sample") == 0) {
        if (!o->n) return usage_error("posterior sample needs -n N", NULL);
        if (!o->out) return usage_error("posterior sample needs -o SAMPLES.npy", NULL);
        if (o->theta_file) return usage_error("--theta-file is for logprob", NULL);
    } else {
        if (!o->theta_file) return usage_error("posterior logprob needs --theta-file THETA.npy", NULL);
        if (o->n) return usage_error("-n is for sample", NULL);
    }
    return 0;
}

/* The observations as an [m, C] array (malloc'd) from --obs or --obs-file. */
static double *read_observations(const post_opts *o, const model_file *m, size_t *n_obs)
{
    size_t C = (size_t)m->context;
    char err[300];
    if (o->obs_file) {
        double *v;
        size_t rows, cols;
        if (npy_read(o->obs_file, &v, &rows, &cols, err, sizeof err) < 0) {
            fprintf(stderr, "ppxd: --obs-file: %s\n", err); /* err names the file */
            return NULL;
        }
        /* A 1-D file of C values is one observation. */
        if (cols == 1 && rows == C && C > 1) {
            cols = C;
            rows = 1;
        }
        if (cols != C || rows == 0) {
            fprintf(stderr, "ppxd: %s: %zu x %zu values, the model's x has %zu columns\n", o->obs_file, rows, cols, C);
            free(v);
            return NULL;
        }
        *n_obs = rows;
        return v;
    }
    double *x = malloc(C * sizeof *x);
    uint8_t *set = calloc(C, 1);
    if (!x || !set) goto fail;
    for (size_t a = 0; a < o->obs.n; a++) {
        const char *arg = o->obs.v[a], *eq = strchr(arg, '=');
        const char *p = eq ? eq + 1 : arg;
        double vals[4096];
        size_t nv = 0;
        while (*p) {
            char *e;
            double v = strtod(p, &e);
            if (e == p || !isfinite(v) || nv == sizeof vals / sizeof vals[0]) {
                fprintf(stderr, "ppxd: bad --obs '%s': expected V,V,... or NAME=V,... with finite numbers\n", arg);
                goto fail;
            }
            vals[nv++] = v;
            p = e;
            while (*p == ' ') p++;
            if (*p == ',') p++;
        }
        if (!eq) {
            if (o->obs.n != 1 || nv != C) {
                fprintf(stderr, "ppxd: --obs without names must give all %zu x values in order (", C);
                for (size_t j = 0; j < C; j++) fprintf(stderr, "%s%s", j ? "," : "", m->x_names[j]);
                fprintf(stderr, "), got %zu value%s%s\n", nv, nv == 1 ? "" : "s",
                        o->obs.n > 1 ? " in several --obs (use NAME=V to give them separately)" : "");
                goto fail;
            }
            memcpy(x, vals, C * sizeof *x);
            memset(set, 1, C);
            continue;
        }
        size_t nl = (size_t)(eq - arg), used = 0;
        for (size_t j = 0; j < C; j++) {
            const char *xn = m->x_names[j];
            int match = (strlen(xn) == nl && strncmp(xn, arg, nl) == 0) ||
                        (strncmp(xn, arg, nl) == 0 && xn[nl] == '[');
            if (!match) continue;
            if (used >= nv) {
                used++;
                continue;
            }
            if (set[j]) {
                fprintf(stderr, "ppxd: x column %s given twice\n", xn);
                goto fail;
            }
            x[j] = vals[used++];
            set[j] = 1;
        }
        if (used == 0) {
            fprintf(stderr, "ppxd: the model has no x named '%.*s' (x:", (int)nl, arg);
            for (size_t j = 0; j < C; j++) fprintf(stderr, " %s", m->x_names[j]);
            fprintf(stderr, ")\n");
            goto fail;
        }
        if (used != nv) {
            fprintf(stderr, "ppxd: '%.*s' has %zu column%s in the model, --obs gives %zu value%s\n", (int)nl, arg, used,
                    used == 1 ? "" : "s", nv, nv == 1 ? "" : "s");
            goto fail;
        }
    }
    for (size_t j = 0; j < C; j++)
        if (!set[j]) {
            fprintf(stderr, "ppxd: no value given for x column %s\n", m->x_names[j]);
            goto fail;
        }
    free(set);
    *n_obs = 1;
    return x;
fail:
    free(x);
    free(set);
    return NULL;
}

static void print_sample_summary(const model_file *m, const double *s, size_t n)
{
    size_t D = (size_t)m->dim;
    double *w = malloc(n * sizeof *w);
    size_t *scratch = malloc(2 * n * sizeof *scratch);
    if (!w || !scratch) goto out;
    for (size_t i = 0; i < n; i++) w[i] = 1.0 / (double)n;
    printf("%-16s %12s %12s %12s %12s %12s\n", "theta", "mean", "sd", "q05", "q50", "q95");
    for (size_t j = 0; j < D; j++) {
        double mean, sd;
        stats_weighted_moments(s + j, D, w, n, &mean, &sd);
        printf("%-16s %12.6g %12.6g %12.6g %12.6g %12.6g\n", m->theta_names[j], mean, sd,
               stats_weighted_quantile(s + j, D, w, n, 0.05, scratch),
               stats_weighted_quantile(s + j, D, w, n, 0.50, scratch),
               stats_weighted_quantile(s + j, D, w, n, 0.95, scratch));
    }
    fflush(stdout);
out:
    free(w);
    free(scratch);
}

static int posterior_sample(const post_opts *o, model_file *m, npe_posterior *np, nre_posterior *rp,
                            const double *xo, size_t n_obs)
{
    size_t D = (size_t)m->dim, n = (size_t)o->n;
    if (n_obs > SIZE_MAX / n / D / sizeof(double)) {
        fprintf(stderr, "ppxd: too many samples\n");
        return 1;
    }
    double *out = malloc(n_obs * n * D * sizeof *out);
    if (!out) {
        fprintf(stderr, "ppxd: out of memory for %zu x %zu samples\n", n_obs * n, D);
        return 1;
    }
    char err[600];
    int rc = 0;
    for (size_t k = 0; k < n_obs && rc == 0; k++) {
        const double *x = xo + k * (size_t)m->context;
        double *dst = out + k * n * D;
        if (g_stop) {
            fprintf(stderr, "ppxd: interrupted\n");
            rc = 1;
            break;
        }
        /* Observation k draws from RNG stream (seed, k), as `ppxd serve`
         * does for row k of a Sample query: the same seed gives the same
         * samples here, through ppxctl and through the Python client. */
        rng r;
        rng_seed(&r, o->seed, (uint64_t)k);
        if (np) {
            npe_sample_report rep;
            if (npe_sample(np, x, n, &r, o->max_seconds, dst, &rep, err, sizeof err) < 0) {
                fprintf(stderr, "ppxd: observation %zu: %s\n", k, err);
                rc = 1;
                break;
            }
            if (rep.accepted < rep.drawn)
                fprintf(stderr, "ppxd posterior: observation %zu: %zu samples in %.3f s, acceptance rate %.4f (%llu "
                        "draws; the rest fell outside the prior's support)\n", k, n, rep.seconds, rep.acceptance,
                        (unsigned long long)rep.drawn);
            else
                fprintf(stderr, "ppxd posterior: observation %zu: %zu samples in %.3f s, acceptance rate 1 (every draw "
                        "inside the prior's support)\n", k, n, rep.seconds);
        } else {
            nre_sample_config sc = nre_sample_defaults();
            if (o->method >= 0 && o->method != 100) sc.method = (nre_sample_method)o->method;
            if (o->oversample) sc.oversample = o->oversample;
            if (o->chains) sc.chains = o->chains;
            if (o->warmup) sc.warmup = o->warmup;
            if (o->thin) sc.thin = o->thin;
            if (o->max_seconds > 0) sc.max_seconds = o->max_seconds;
            nre_sample_report rep;
            if (nre_sample(rp, x, n, &r, &sc, dst, &rep, err, sizeof err) < 0) {
                fprintf(stderr, "ppxd: observation %zu: %s\n", k, err);
                rc = 1;
                break;
            }
            if (sc.method == NRE_SAMPLE_SIR)
                fprintf(stderr, "ppxd posterior: observation %zu: %zu samples by importance resampling in %.3f s, mean "
                        "ESS per %d prior draws %.1f\n", k, n, rep.seconds, sc.oversample, rep.ess);
            else
                fprintf(stderr, "ppxd posterior: observation %zu: %zu samples by %s MCMC (%d chains) in %.3f s%s%.3f\n",
                        k, n, nre_sample_method_name(sc.method), sc.chains, rep.seconds,
                        sc.method == NRE_SAMPLE_MH ? ", acceptance " : "", sc.method == NRE_SAMPLE_MH ? rep.acceptance : 1.0);
        }
    }
    if (rc == 0) {
        if (npy_write(o->out, out, n_obs * n, D, err, sizeof err) < 0) {
            fprintf(stderr, "ppxd: %s\n", err);
            rc = 1;
        } else {
            fprintf(stderr, "ppxd posterior: wrote %zu x %zu samples to %s\n", n_obs * n, D, o->out);
            if (n_obs == 1) print_sample_summary(m, out, n);
        }
    }
    free(out);
    return rc;
}

static int posterior_logprob(const post_opts *o, model_file *m, npe_posterior *np, nre_posterior *rp,
                             const double *xo, size_t n_obs)
{
    char err[600];
    double *th = NULL, *lp = NULL;
    size_t n, cols;
    int rc = 1;
    if (npy_read(o->theta_file, &th, &n, &cols, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: --theta-file: %s\n", err); /* err names the file */
        return 1;
    }
    if (cols == 1 && n == (size_t)m->dim && m->dim > 1) {
        cols = n;
        n = 1;
    }
    if (cols != (size_t)m->dim) {
        fprintf(stderr, "ppxd: %s has %zu columns, the model's theta has %d\n", o->theta_file, cols, m->dim);
        goto out;
    }
    if (n_obs != 1 && n_obs != n) {
        fprintf(stderr, "ppxd: %zu observations for %zu theta rows: give one, or one per row\n", n_obs, n);
        goto out;
    }
    lp = malloc((n ? n : 1) * sizeof *lp);
    if (!lp) goto out;
    size_t C = (size_t)m->context, draws = o->mass_draws ? (size_t)o->mass_draws : 10000;
    if (np) {
        if (npe_log_prob(np, th, n, xo, n_obs, lp, err, sizeof err) < 0) {
            fprintf(stderr, "ppxd: %s\n", err);
            goto out;
        }
    } else if (nre_log_prob(rp, th, n, xo, n_obs, lp, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        goto out;
    }
    if (!o->no_renorm) {
        /* One correction per distinct observation (consecutive equal rows
         * share it: an obs-file of n rows is usually a few x_o repeated). */
        double corr = 0;
        size_t n_corr = 0;
        for (size_t i = 0; i < n; i++) {
            const double *x = xo + (n_obs == 1 ? 0 : i) * C;
            if (i == 0 || (n_obs > 1 && memcmp(x, x - C, C * sizeof *x) != 0)) {
                /* The correction for observation row k uses RNG stream
                 * (seed, k), as `ppxd serve` does for its one observation
                 * (stream 0). */
                rng r;
                rng_seed(&r, o->seed, n_obs == 1 ? 0 : (uint64_t)i);
                if (np) {
                    double mass;
                    if (npe_support_mass(np, x, draws, &r, o->max_seconds, &mass, err, sizeof err) < 0) {
                        fprintf(stderr, "ppxd: leakage correction: %s (use --no-renorm for the raw density)\n", err);
                        goto out;
                    }
                    corr = log(mass);
                    if (n_corr++ < 3)
                        fprintf(stderr, "ppxd posterior: in-support mass of q(theta | x) %.4f (from %zu draws)%s\n", mass,
                                draws, prior_is_bounded(m->prior) ? "" : " (unbounded prior)");
                } else {
                    double lz;
                    if (nre_log_evidence_ratio(rp, x, draws, &r, &lz, err, sizeof err) < 0) {
                        fprintf(stderr, "ppxd: normalising: %s (use --no-renorm)\n", err);
                        goto out;
                    }
                    corr = lz;
                    if (n_corr++ < 3)
                        fprintf(stderr, "ppxd posterior: log Z(x) = %.4f (from %zu prior draws)\n", lz, draws);
                }
            }
            lp[i] -= corr;
        }
    } else if (rp) {
        fprintf(stderr, "ppxd posterior: unnormalised: log ratio + log prior\n");
    }
    if (o->out) {
        if (npy_write(o->out, lp, n, 1, err, sizeof err) < 0) {
            fprintf(stderr, "ppxd: %s\n", err);
            goto out;
        }
        fprintf(stderr, "ppxd posterior: wrote %zu log densities to %s\n", n, o->out);
    } else {
        for (size_t i = 0; i < n; i++) printf("%.17g\n", lp[i]);
        fflush(stdout);
    }
    rc = 0;
out:
    free(th);
    free(lp);
    return rc;
}

int ppxd_posterior_main(int argc, char **argv)
{
    post_opts o;
    memset(&o, 0, sizeof o);
    o.seed = 1;
    o.method = -1;
    o.max_seconds = 60;
    int rc = parse_posterior(&o, argc, argv);
    if (rc) goto out_opts;
    install_signals();
    nn_set_threads(o.threads ? o.threads : 1);
    char err[600];
    if (gold_model_file_is(o.model)) {
        /* A gold model (.ppxr) estimates a likelihood ratio, a score or p(x | theta), not a posterior:
         * info is its summary; the rest is ppxd evaluate / limits (no prior to sample a posterior from). */
        if (strcmp(o.action, "info") == 0) {
            char *eargv[] = {"evaluate", "--model", (char *)o.model, "--info", NULL};
            rc = gold_cmd_evaluate_main(4, eargv);
        } else {
            fprintf(stderr, "ppxd: %s is a gold model (ppxd train carl ... scandal): it has no posterior to %s.\n"
                    "  log r^ / score / log p(x|theta): ppxd evaluate --model %s --x-file X.npy --theta V [--score|--log-prob]\n"
                    "  summed log r^ over a theta grid (exclusion contours): ppxd limits --model %s --x-file X.npy --grid LO:HI:N\n"
                    "  samples of x given theta (nde, scandal): ppxctl sample against ppxd serve --model %s\n",
                    o.model, o.action, o.model, o.model, o.model);
            rc = 2;
        }
        goto out_opts;
    }
    model_file *m = model_file_load(o.model, err, sizeof err);
    rc = 1;
    if (!m) {
        fprintf(stderr, "ppxd: %s\n", err);
        goto out_opts;
    }
    if (strcmp(o.action, "info") == 0) {
        printf("%s\n", o.model);
        model_file_print(m, stdout);
        rc = 0;
        goto out_model;
    }
    int is_nre = m->kind == MODEL_NRE;
    if (o.method >= 0 && (o.method == 100) == is_nre) {
        rc = usage_error(is_nre ? "an NRE model samples by --method sir, slice or mh"
                                : "an NPE model samples by rejection (--method rejection)", NULL);
        goto out_model;
    }
    npe_posterior *np = NULL;
    nre_posterior *rp = NULL;
    if (is_nre) rp = nre_posterior_from_model(m, err, sizeof err);
    else np = npe_posterior_from_model(m, err, sizeof err);
    if (!np && !rp) {
        fprintf(stderr, "ppxd: %s: %s\n", o.model, err);
        goto out_model;
    }
    size_t n_obs = 0;
    double *xo = read_observations(&o, m, &n_obs);
    if (!xo) {
        rc = 2;
    } else if (strcmp(o.action, "sample") == 0) {
        rc = posterior_sample(&o, m, np, rp, xo, n_obs);
    } else {
        rc = posterior_logprob(&o, m, np, rp, xo, n_obs);
    }
    free(xo);
    npe_posterior_destroy(&np);
    nre_posterior_destroy(&rp);
out_model:
    model_file_destroy(&m);
out_opts:
    strlist_free(&o.obs);
    return rc;
}
