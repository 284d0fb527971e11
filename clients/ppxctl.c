/* ppxctl — command-line client of `ppxd serve` (clients/c/ppx_query.h).
 *
 *   ppxctl [global options] COMMAND [command options]
 *   models | sample | logprob | ratio | score | status | load | unload | reload | keygen
 *   submit | jobs | job status|wait|cancel|fetch | sims   (ppxd daemon)
 *
 * Exit codes: 0 success, 1 the server answered with an error, 2 usage error,
 * 3 no answer (connection failure or timeout) or an unusable reply.
 * Results go to stdout, messages to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "export.h"
#include "ppx_query.h"

#define EXIT_SERVER 1
#define EXIT_USAGE 2
#define EXIT_CONN 3
#define EXIT_STILL_RUNNING 4

typedef struct ctl {
    const char *endpoint;
    const char *server_key_file, *client_key_file;
    int timeout_ms;
    const char *cmd;
    const char **args;        /* positional arguments after the command */
    size_t n_args;
    const char *model, *out, *name, *theta_file;
    double *obs;              /* [n_obs_rows, obs_cols] */
    size_t n_obs_rows, obs_cols;
    double *theta;            /* [n_theta_rows, theta_cols] */
    size_t n_theta_rows, theta_cols;
    uint64_t n, seed;
    double max_seconds;
    int no_normalise;
    uint64_t n_draws;
    int help;
    const char *sim_model;    /* submit --sim-model */
    const char *const *words; /* submit: the command after "--" */
    size_t n_words;
    double wait_timeout;      /* job wait --timeout S (0: none) */
    /* ratio / score (gold models) */
    const char *x_file;
    double *x, *theta0, *theta1; /* [rows, cols] each */
    size_t n_x_rows, x_cols, n_theta0_rows, theta0_cols, n_theta1_rows, theta1_cols;
} ctl;

static void usage(FILE *f, const char *cmd)
{
    if (cmd && strcmp(cmd, "sample") == 0) {
        fprintf(f, "usage: ppxctl sample --model NAME --obs X1,X2,... [--obs ...] -n N [--seed S] [--max-seconds T]\n"
                   "                     [-o samples.npy|samples.csv]\n"
                   "  n posterior samples per observation (row i drawn with rng_seed(seed, i)).  Without -o, a\n"
                   "  summary per observation: mean and sd per parameter, and the acceptance rate.  With -o, all\n"
                   "  samples, observation after observation (k*n rows x theta_dim columns).\n");
    } else if (cmd && strcmp(cmd, "logprob") == 0) {
        fprintf(f, "usage: ppxctl logprob --model NAME --obs X1,X2,... (--theta T1,T2,... [--theta ...] | --theta-file t.npy)\n"
                   "                      [--no-normalise] [--seed S] [--n-draws N]\n"
                   "  log q(theta | x) for each theta, one per line (renormalised for leakage outside the prior's\n"
                   "  support unless --no-normalise).\n");
    } else if (cmd && strcmp(cmd, "ratio") == 0) {
        fprintf(f, "usage: ppxctl ratio --model NAME (--x X1,... [--x ...] | --x-file x.npy) --theta0 T1,... [--theta1 T1,...]\n"
                   "                    [-o out.npy]\n"
                   "  log r^(x | theta0, theta1) of a gold model (carl ... alices, nde, scandal), one per x row;\n"
                   "  theta0 and theta1: one row for every x, or one per x row; without --theta1 the model's\n"
                   "  reference point.\n");
    } else if (cmd && strcmp(cmd, "score") == 0) {
        fprintf(f, "usage: ppxctl score --model NAME (--x X1,... [--x ...] | --x-file x.npy) [--theta T1,...] [-o out.npy]\n"
                   "  the estimated score t^(x | theta) of a gold model (rascal, cascal, alices, sally, nde, scandal),\n"
                   "  one row per x; sally needs no --theta (its reference point).\n");
    } else if (cmd && strcmp(cmd, "models") == 0) {
        fprintf(f, "usage: ppxctl models\n  the served models: name, kind, shapes, names, provenance, checksum.\n");
    } else if (cmd && strcmp(cmd, "status") == 0) {
        fprintf(f, "usage: ppxctl status\n  version, uptime, models, workers, queue depth and counters.\n");
    } else if (cmd && strcmp(cmd, "load") == 0) {
        fprintf(f, "usage: ppxctl load FILE [--name NAME]\n  serve a model file (admin; the path is read by the "
                   "server, and must be inside its --model-dir;\n  a relative path is taken from there).\n");
    } else if (cmd && strcmp(cmd, "unload") == 0) {
        fprintf(f, "usage: ppxctl unload NAME\n  stop serving NAME (admin).\n");
    } else if (cmd && strcmp(cmd, "reload") == 0) {
        fprintf(f, "usage: ppxctl reload NAME\n  re-read NAME's file (admin); in-flight queries finish on the old "
                   "version.\n");
    } else if (cmd && strcmp(cmd, "keygen") == 0) {
        fprintf(f, "usage: ppxctl keygen PREFIX\n  a new CURVE key pair: PREFIX.key (public + secret, mode 0600) "
                   "and PREFIX.pub.\n");
    } else if (cmd && strcmp(cmd, "submit") == 0) {
        fprintf(f, "usage: ppxctl submit [--name NAME] [--sim-model MODEL] -- COMMAND ARGS...\n"
                   "  submit a job to ppxd daemon (admin): COMMAND ARGS are the words after \"ppxd\" without\n"
                   "  simulator or output options, e.g. -- simulate -n 1000, -- infer -n 5000 --observe y=8,9,\n"
                   "  -- train npe -n 2000 --theta mu --x y, -- mine ..., -- train alices --data NAME,\n"
                   "  -- diagnose --model NAME -n 1000 [--obs ... --ppc-n M] (test pairs and the predictive\n"
                   "  check simulated on the pool; NAME may be an IC network of DIR/ic) or\n"
                   "  -- diagnose --model NAME --data T.npy X.npy (files of DIR/datasets, or JOB/OUTPUT: a\n"
                   "  finished job's output).  Prints the job id.  A trained model is served under NAME\n"
                   "  (default: the job id).\n");
    } else if (cmd && (strcmp(cmd, "job") == 0 || strcmp(cmd, "jobs") == 0)) {
        fprintf(f, "usage: ppxctl jobs                       every job: id, name, state, progress, command\n"
                   "       ppxctl job status ID              one job in full (outputs, message, times)\n"
                   "       ppxctl job wait ID [--timeout S]  until it ends: a progress bar on a terminal; exit 0\n"
                   "                                         DONE, 1 FAILED/CANCELLED, 4 still running after S\n"
                   "       ppxctl job cancel ID              (admin)\n"
                   "       ppxctl job fetch ID [OUTPUT] -o DIR|FILE   an output (all of them into DIR)\n");
    } else if (cmd && strcmp(cmd, "sims") == 0) {
        fprintf(f, "usage: ppxctl sims\n  the daemon's simulator pool by model: connected, busy, joined, left.\n");
    } else {
        fprintf(f,
                "ppxctl — query a ppxd posterior server\n"
                "\n"
                "usage: ppxctl [global options] COMMAND [options]\n"
                "  models                         list the served models\n"
                "  sample  --model M --obs X -n N posterior samples (summary, or -o FILE.npy|.csv)\n"
                "  logprob --model M --obs X --theta T...|--theta-file F   log posterior densities\n"
                "  ratio   --model M --x X... --theta0 T [--theta1 T]      log r^ of a gold model\n"
                "  score   --model M --x X... [--theta T]                  score t^ of a gold model\n"
                "  status                         server status\n"
                "  load FILE [--name N]           (admin) serve a model file\n"
                "  unload NAME                    (admin) stop serving a model\n"
                "  reload NAME                    (admin) re-read a model's file\n"
                "  keygen PREFIX                  write a CURVE key pair PREFIX.key and PREFIX.pub\n"
                "  submit [--name N] [--sim-model M] -- COMMAND...   (admin) a job for ppxd daemon; prints its id\n"
                "  jobs                           the daemon's jobs\n"
                "  job status|wait|cancel|fetch ID ...   one job (ppxctl job --help)\n"
                "  sims                           the daemon's simulator pool\n"
                "\n"
                "global options:\n"
                "  --endpoint EP                  server endpoint (default tcp://127.0.0.1:5560)\n"
                "  --curve-server-key FILE        the server's public key (.pub or .key file): use CURVE\n"
                "  --curve-client-key FILE        this client's key pair (.key file)\n"
                "  --timeout-ms T                 wait at most T ms for each reply (default 10000)\n"
                "  -h, --help                     help (also after a command)\n"
                "\n"
                "exit codes: 0 ok, 1 server error reply (job wait: the job failed), 2 usage error,\n"
                "            3 connection failure or timeout, 4 job wait --timeout ran out\n");
    }
}

static int usage_error(const char *msg, const char *detail)
{
    fprintf(stderr, "ppxctl: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    return EXIT_USAGE;
}


/* Append one row "a,b,c" to a [rows, *cols] matrix (NaN and inf are kept:
 * the server rejects them with its own error).  0 or -1. */
static int add_row(double **m, size_t *rows, size_t *cols, const char *arg)
{
    double vals[4096];
    size_t n = 0;
    const char *p = arg;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || n == 4096) return -1;
        vals[n++] = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    if (!n || (*rows && n != *cols)) return -1;
    double *nm = realloc(*m, (*rows + 1) * n * sizeof *nm);
    if (!nm) return -1;
    memcpy(nm + *rows * n, vals, n * sizeof *vals);
    *m = nm;
    *cols = n;
    (*rows)++;
    return 0;
}

enum {
    O_ENDPOINT = 1000, O_SERVER_KEY, O_CLIENT_KEY, O_TIMEOUT, O_MODEL, O_OBS, O_THETA, O_THETA_FILE, O_SEED, O_NAME,
    O_NO_NORMALISE, O_N_DRAWS, O_MAX_SECONDS, O_SIM_MODEL, O_WAIT_TIMEOUT, O_X, O_X_FILE, O_THETA0, O_THETA1
};

static int parse(ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"endpoint", required_argument, 0, O_ENDPOINT},
        {"curve-server-key", required_argument, 0, O_SERVER_KEY},
        {"curve-client-key", required_argument, 0, O_CLIENT_KEY},
        {"timeout-ms", required_argument, 0, O_TIMEOUT},
        {"model", required_argument, 0, O_MODEL},
        {"obs", required_argument, 0, O_OBS},
        {"theta", required_argument, 0, O_THETA},
        {"theta-file", required_argument, 0, O_THETA_FILE},
        {"seed", required_argument, 0, O_SEED},
        {"name", required_argument, 0, O_NAME},
        {"no-normalise", no_argument, 0, O_NO_NORMALISE},
        {"n-draws", required_argument, 0, O_N_DRAWS},
        {"max-seconds", required_argument, 0, O_MAX_SECONDS},
        {"sim-model", required_argument, 0, O_SIM_MODEL},
        {"timeout", required_argument, 0, O_WAIT_TIMEOUT},
        {"x", required_argument, 0, O_X},
        {"x-file", required_argument, 0, O_X_FILE},
        {"theta0", required_argument, 0, O_THETA0},
        {"theta1", required_argument, 0, O_THETA1},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    c->args = calloc((size_t)argc + 1, sizeof *c->args);
    if (!c->args) return EXIT_USAGE;
    int ch;
    uint64_t v;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "n:o:h", opts, NULL)) != -1) {
        switch (ch) {
        case O_ENDPOINT: c->endpoint = optarg; break;
        case O_SERVER_KEY: c->server_key_file = optarg; break;
        case O_CLIENT_KEY: c->client_key_file = optarg; break;
        case O_TIMEOUT:
            if (args_u64(optarg, &v) < 0 || v == 0 || v > 86400000) return usage_error("--timeout-ms wants a positive number", optarg);
            c->timeout_ms = (int)v;
            break;
        case O_MODEL: c->model = optarg; break;
        case O_OBS:
            if (add_row(&c->obs, &c->n_obs_rows, &c->obs_cols, optarg) < 0)
                return usage_error("--obs wants comma-separated numbers (the same count each time)", optarg);
            break;
        case O_THETA:
            if (add_row(&c->theta, &c->n_theta_rows, &c->theta_cols, optarg) < 0)
                return usage_error("--theta wants comma-separated numbers (the same count each time)", optarg);
            break;
        case O_THETA_FILE: c->theta_file = optarg; break;
        case O_X:
        case O_THETA0:
        case O_THETA1: {
            double **m = ch == O_X ? &c->x : ch == O_THETA0 ? &c->theta0 : &c->theta1;
            size_t *r = ch == O_X ? &c->n_x_rows : ch == O_THETA0 ? &c->n_theta0_rows : &c->n_theta1_rows;
            size_t *k = ch == O_X ? &c->x_cols : ch == O_THETA0 ? &c->theta0_cols : &c->theta1_cols;
            if (add_row(m, r, k, optarg) < 0)
                return usage_error("wants comma-separated numbers (the same count each time)", optarg);
            break;
        }
        case O_X_FILE: c->x_file = optarg; break;
        case O_SEED:
            if (args_u64(optarg, &c->seed) < 0) return usage_error("--seed wants a non-negative integer", optarg);
            break;
        case O_NAME: c->name = optarg; break;
        case O_NO_NORMALISE: c->no_normalise = 1; break;
        case O_N_DRAWS:
            if (args_u64(optarg, &c->n_draws) < 0 || c->n_draws > UINT32_MAX)
                return usage_error("--n-draws wants a number", optarg);
            break;
        case O_MAX_SECONDS: {
            char *end;
            c->max_seconds = strtod(optarg, &end);
            if (end == optarg || *end || !(c->max_seconds >= 0) || !isfinite(c->max_seconds))
                return usage_error("--max-seconds wants a non-negative number", optarg);
            break;
        }
        case O_SIM_MODEL: c->sim_model = optarg; break;
        case O_WAIT_TIMEOUT: {
            char *end;
            c->wait_timeout = strtod(optarg, &end);
            if (end == optarg || *end || !(c->wait_timeout > 0) || !isfinite(c->wait_timeout))
                return usage_error("--timeout wants a positive number of seconds", optarg);
            break;
        }
        case 'n':
            if (args_u64(optarg, &c->n) < 0 || c->n == 0 || c->n > UINT32_MAX)
                return usage_error("-n wants a positive number", optarg);
            break;
        case 'o': c->out = optarg; break;
        case 'h': c->help = 1; break;
        default:
            return usage_error("unknown option or missing value", optind > 0 && optind <= argc ? argv[optind - 1] : NULL);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (!c->cmd) c->cmd = argv[i];
        else c->args[c->n_args++] = argv[i];
    }
    return 0;
}

static int exit_of(int code)
{
    if (code == PPXQ_OK) return 0;
    return code > 0 ? EXIT_SERVER : EXIT_CONN;
}

static int report(ppx_query *q, int code)
{
    if (code != PPXQ_OK) fprintf(stderr, "ppxctl: %s\n", ppx_query_error(q));
    return exit_of(code);
}

static int connect_server(const ctl *c, ppx_query **out)
{
    ppx_query_options o = ppx_query_options_default();
    o.timeout_ms = c->timeout_ms;
    char spub[41], ssec[41], cpub[41], csec[41], err[512];
    if (c->server_key_file) {
        if (ppx_query_read_key_pair(c->server_key_file, spub, ssec, err, sizeof err) < 0)
            return usage_error("--curve-server-key", err);
        memset(ssec, 0, sizeof ssec);
        o.server_key = spub;
        if (c->client_key_file) {
            if (ppx_query_read_key_pair(c->client_key_file, cpub, csec, err, sizeof err) < 0)
                return usage_error("--curve-client-key", err);
            if (!csec[0]) return usage_error("--curve-client-key needs a key pair file (PREFIX.key)", c->client_key_file);
            o.client_public = cpub;
            o.client_secret = csec;
        }
    } else if (c->client_key_file) {
        return usage_error("--curve-client-key needs --curve-server-key", NULL);
    }
    *out = ppx_query_connect(c->endpoint, &o, err, sizeof err);
    memset(csec, 0, sizeof csec);
    if (!*out) {
        fprintf(stderr, "ppxctl: %s\n", err);
        return EXIT_CONN;
    }
    return 0;
}

static void print_names(const char *const *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) printf("%s%s", i ? "," : "", v[i]);
}

static void print_info(const ppxq_model_info *m)
{
    printf("%s\n", m->name);
    printf("  kind         %s\n", m->kind);
    printf("  theta        %u: ", m->theta_dim);
    print_names(m->theta_names, m->n_theta_names);
    printf("\n  x            %u: ", m->x_dim);
    print_names(m->x_names, m->n_x_names);
    printf("\n  prior        %s\n", m->prior);
    printf("  generation   %u\n", m->generation);
    printf("  checksum     %08x\n", m->checksum);
    printf("  path         %s\n", m->path[0] ? m->path : "(in memory)");
    printf("  created      %lld\n", (long long)m->created);
    printf("  simulations  %llu\n", (unsigned long long)m->n_simulations);
    printf("  val loss     %.6g\n", m->best_val_loss);
}

static int cmd_models(ppx_query *q)
{
    const ppxq_model_info *m;
    uint32_t n;
    int rc = ppx_query_list_models(q, &m, &n);
    if (rc != PPXQ_OK) return report(q, rc);
    if (!n) printf("no models served\n");
    for (uint32_t i = 0; i < n; i++) print_info(&m[i]);
    return 0;
}

static int cmd_status(ppx_query *q)
{
    const ppxq_status_info *s;
    int rc = ppx_query_status(q, &s);
    if (rc != PPXQ_OK) return report(q, rc);
    printf("version      %s\n", s->version);
    printf("uptime       %.1f s\n", s->uptime_seconds);
    printf("models       ");
    print_names(s->models, s->n_models);
    printf("%s\n", s->n_models ? "" : "(none)");
    printf("workers      %u\n", s->workers);
    printf("queue depth  %u\n", s->queue_depth);
    printf("requests     %llu\n", (unsigned long long)s->requests);
    printf("errors       %llu\n", (unsigned long long)s->errors);
    printf("busy         %llu\n", (unsigned long long)s->busy);
    return 0;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* The theta names of a served model (malloc'd copies, *n of them), or NULL. */
static char **theta_names(ppx_query *q, const char *model, uint32_t *n)
{
    const ppxq_model_info *mi;
    uint32_t nm;
    *n = 0;
    if (ppx_query_list_models(q, &mi, &nm) != PPXQ_OK) return NULL;
    for (uint32_t i = 0; i < nm; i++) {
        if (strcmp(mi[i].name, model) != 0) continue;
        char **v = calloc(mi[i].n_theta_names ? mi[i].n_theta_names : 1, sizeof *v);
        if (!v) return NULL;
        for (uint32_t j = 0; j < mi[i].n_theta_names; j++) v[j] = strdup(mi[i].theta_names[j]);
        *n = mi[i].n_theta_names;
        return v;
    }
    return NULL;
}

static void free_names(char **v, uint32_t n)
{
    for (uint32_t j = 0; v && j < n; j++) free(v[j]);
    free(v);
}

static int cmd_sample(ppx_query *q, const ctl *c)
{
    /* The names first: the samples are views into the last reply. */
    uint32_t n_names = 0;
    char **names = theta_names(q, c->model, &n_names);
    const ppxq_matrix *sm;
    const double *acc;
    int rc = ppx_query_sample(q, c->model, c->obs, (uint32_t)c->n_obs_rows, (uint32_t)c->obs_cols, (uint32_t)c->n,
                              c->seed, c->max_seconds, &sm, &acc);
    if (rc != PPXQ_OK) {
        free_names(names, n_names);
        return report(q, rc);
    }
    uint32_t k = (uint32_t)c->n_obs_rows, D = k ? sm[0].cols : 0;
    char fallback[32];
    if (c->out) {
        size_t rows = 0;
        for (uint32_t i = 0; i < k; i++) rows += sm[i].rows;
        double *all = malloc((rows ? rows : 1) * (D ? D : 1) * sizeof *all);
        const char **cols = calloc(D ? D : 1, sizeof *cols);
        char (*gen)[32] = calloc(D ? D : 1, sizeof *gen);
        if (!all || !cols || !gen) {
            free(all);
            free(cols);
            free(gen);
            free_names(names, n_names);
            fprintf(stderr, "ppxctl: out of memory\n");
            return 1;
        }
        size_t r = 0;
        for (uint32_t i = 0; i < k; i++) {
            memcpy(all + r * D, sm[i].data, (size_t)sm[i].rows * D * sizeof *all);
            r += sm[i].rows;
        }
        for (uint32_t j = 0; j < D; j++) {
            snprintf(gen[j], sizeof gen[j], "theta_%u", j);
            cols[j] = names && n_names == D && names[j] ? names[j] : gen[j];
        }
        char err[512];
        int wrc = ends_with(c->out, ".csv") ? csv_write(c->out, cols, all, rows, D, err, sizeof err)
                                             : npy_write(c->out, all, rows, D, err, sizeof err);
        free(all);
        free(cols);
        free(gen);
        free_names(names, n_names);
        if (wrc < 0) {
            fprintf(stderr, "ppxctl: %s\n", err);
            return 1; /* a local failure after a successful query */
        }
        fprintf(stderr, "ppxctl: wrote %zu x %u samples to %s\n", rows, D, c->out);
        return 0;
    }
    for (uint32_t i = 0; i < k; i++) {
        printf("observation %u: %u samples, acceptance %.4g\n", i, sm[i].rows, acc ? acc[i] : 1.0);
        printf("  %-12s %14s %14s\n", "parameter", "mean", "sd");
        for (uint32_t j = 0; j < D; j++) {
            double s = 0, ss = 0;
            uint32_t n = sm[i].rows;
            for (uint32_t r = 0; r < n; r++) s += sm[i].data[(size_t)r * D + j];
            double mean = n ? s / n : NAN;
            for (uint32_t r = 0; r < n; r++) {
                double d = sm[i].data[(size_t)r * D + j] - mean;
                ss += d * d;
            }
            snprintf(fallback, sizeof fallback, "theta_%u", j);
            printf("  %-12s %14.6g %14.6g\n", names && n_names == D ? names[j] : fallback, mean,
                   n > 1 ? sqrt(ss / (n - 1)) : 0.0);
        }
    }
    free_names(names, n_names);
    return 0;
}

static int cmd_logprob(ppx_query *q, ctl *c)
{
    if (c->theta_file) {
        double *d = NULL;
        size_t rows, cols;
        char err[512];
        if (npy_read(c->theta_file, &d, &rows, &cols, err, sizeof err) < 0) {
            fprintf(stderr, "ppxctl: %s\n", err);
            return EXIT_USAGE;
        }
        free(c->theta);
        c->theta = d;
        c->n_theta_rows = rows;
        c->theta_cols = cols;
    }
    const double *lp;
    int rc = ppx_query_log_prob(q, c->model, c->obs, (uint32_t)c->obs_cols, c->theta, (uint32_t)c->n_theta_rows,
                                (uint32_t)c->theta_cols, !c->no_normalise, c->seed, (uint32_t)c->n_draws, &lp);
    if (rc != PPXQ_OK) return report(q, rc);
    for (size_t i = 0; i < c->n_theta_rows; i++) printf("%.17g\n", lp[i]);
    return 0;
}

/* ---- jobs (ppxd daemon) ---------------------------------------------------------------------------- */

static const char *job_state_name(ppxq_job_state s)
{
    static const char *const names[] = {"QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED"};
    return (unsigned)s < PPXQ_JOB_STATE_COUNT ? names[s] : "FAILED";
}

static int job_ended(ppxq_job_state s) { return s == PPXQ_JOB_DONE || s == PPXQ_JOB_FAILED || s == PPXQ_JOB_CANCELLED; }

/* Send a job request; on success *reply is a JobReply with one job at least
 * (or a JobFetchReply / SimListReply when want says so). */
static int job_call(ppx_query *q, ppxq_msg *m, ppxq_type want, const ppxq_msg **reply)
{
    int rc = ppx_query_send_msg(q, m, reply);
    if (rc != PPXQ_OK) return report(q, rc);
    if ((*reply)->type != want) {
        fprintf(stderr, "ppxctl: expected a %s reply, got %s\n", ppxq_type_name(want), ppxq_type_name((*reply)->type));
        return EXIT_CONN;
    }
    if (want == PPXQ_JOB_REPLY && m->type != PPXQ_JOB_LIST && (*reply)->n_jobs < 1) {
        fprintf(stderr, "ppxctl: the reply names no job\n");
        return EXIT_CONN;
    }
    return 0;
}

static void print_time(const char *label, double t)
{
    if (t <= 0) return;
    time_t s = (time_t)t;
    struct tm tm;
    char buf[64];
    localtime_r(&s, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%-12s %s\n", label, buf);
}

static void format_progress(const ppxq_job_info *j, char *buf, size_t len)
{
    if (j->total)
        snprintf(buf, len, "%llu/%llu %s", (unsigned long long)j->done, (unsigned long long)j->total, j->unit);
    else if (j->done)
        snprintf(buf, len, "%llu %s", (unsigned long long)j->done, j->unit);
    else
        snprintf(buf, len, "-");
}

static void print_job(const ppxq_job_info *j)
{
    char prog[96];
    format_progress(j, prog, sizeof prog);
    printf("%-12s %s\n", "id", j->id);
    printf("%-12s %s\n", "name", j->name);
    printf("%-12s %s\n", "state", job_state_name(j->state));
    printf("%-12s", "command");
    for (uint32_t i = 0; i < j->n_command; i++) printf(" %s", j->command[i]);
    printf("\n%-12s %s\n", "simulators", j->sim_model[0] ? j->sim_model : "(the daemon's default)");
    printf("%-12s %s\n", "progress", prog);
    if (isfinite(j->loss)) printf("%-12s %.6g\n", "val loss", j->loss);
    if (j->eta_seconds >= 0 && !job_ended(j->state)) printf("%-12s %.0f s\n", "eta", j->eta_seconds);
    print_time("submitted", j->submitted);
    print_time("started", j->started);
    print_time("finished", j->finished);
    if (j->message[0]) printf("%-12s %s\n", "message", j->message);
    printf("%-12s", "outputs");
    for (uint32_t i = 0; i < j->n_outputs; i++) printf(" %s", j->outputs[i]);
    printf("%s\n", j->n_outputs ? "" : " (none yet)");
}

static int cmd_submit(ppx_query *q, const ctl *c)
{
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_JOB_SUBMIT;
    m.name = c->name;
    m.sim_model = c->sim_model;
    m.command = c->words;
    m.n_command = (uint32_t)c->n_words;
    const ppxq_msg *r;
    int rc = job_call(q, &m, PPXQ_JOB_REPLY, &r);
    if (rc) return rc;
    printf("%s\n", r->jobs[0].id);
    return 0;
}

static int cmd_jobs(ppx_query *q)
{
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_JOB_LIST;
    const ppxq_msg *r;
    int rc = job_call(q, &m, PPXQ_JOB_REPLY, &r);
    if (rc) return rc;
    if (!r->n_jobs) {
        printf("no jobs\n");
        return 0;
    }
    printf("%-8s %-20s %-10s %-24s %s\n", "ID", "NAME", "STATE", "PROGRESS", "COMMAND");
    for (uint32_t i = 0; i < r->n_jobs; i++) {
        const ppxq_job_info *j = &r->jobs[i];
        char prog[96];
        format_progress(j, prog, sizeof prog);
        printf("%-8s %-20s %-10s %-24s", j->id, j->name, job_state_name(j->state), prog);
        for (uint32_t k = 0; k < j->n_command; k++) printf(" %s", j->command[k]);
        printf("\n");
    }
    return 0;
}

static int cmd_job_simple(ppx_query *q, ppxq_type t, const char *id)
{
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = t;
    m.job_id = id;
    const ppxq_msg *r;
    int rc = job_call(q, &m, PPXQ_JOB_REPLY, &r);
    if (rc) return rc;
    if (t == PPXQ_JOB_CANCEL)
        printf("%s %s%s%s\n", r->jobs[0].id, job_state_name(r->jobs[0].state),
               job_ended(r->jobs[0].state) ? "" : " (cancel requested)", "");
    else
        print_job(&r->jobs[0]);
    return 0;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One progress line: a bar on a terminal, plain text otherwise. */
static void show_progress(const ppxq_job_info *j, int tty)
{
    char prog[96], eta[48] = "", loss[48] = "";
    format_progress(j, prog, sizeof prog);
    if (j->eta_seconds >= 0 && !job_ended(j->state)) snprintf(eta, sizeof eta, ", eta %.0f s", j->eta_seconds);
    if (isfinite(j->loss)) snprintf(loss, sizeof loss, ", val loss %.4g", j->loss);
    if (!tty) {
        fprintf(stderr, "ppxctl: %s %s %s%s%s\n", j->id, job_state_name(j->state), prog, loss, eta);
        return;
    }
    char bar[31];
    int w = 30, fill = j->total ? (int)((double)j->done / (double)j->total * w) : 0;
    if (fill > w) fill = w;
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r\033[K%s %-9s [%s] %s%s%s", j->id, job_state_name(j->state), j->total ? bar : "   (no total: in progress)   ",
            prog, loss, eta);
    fflush(stderr);
}

static int cmd_job_wait(ppx_query *q, const ctl *c, const char *id)
{
    int tty = isatty(2);
    double t0 = mono_s(), last_line = -1e9;
    char last[200] = "";
    for (;;) {
        double left = c->wait_timeout > 0 ? c->wait_timeout - (mono_s() - t0) : 1.0;
        double round = left < 1.0 ? left : 1.0;
        if (round < 0) round = 0;
        ppxq_msg m;
        ppxq_msg_init(&m);
        m.type = PPXQ_JOB_WAIT;
        m.job_id = id;
        m.max_seconds = round;
        /* The daemon answers within max_seconds; allow for the network. */
        ppx_query_set_timeout(q, (int)(round * 1000) + c->timeout_ms);
        const ppxq_msg *r;
        int rc = job_call(q, &m, PPXQ_JOB_REPLY, &r);
        if (rc) {
            if (tty) fputc('\n', stderr);
            return rc;
        }
        const ppxq_job_info *j = &r->jobs[0];
        char now[200];
        snprintf(now, sizeof now, "%d %llu %llu %.6g", (int)j->state, (unsigned long long)j->done,
                 (unsigned long long)j->total, j->loss);
        /* Plain lines: on a change, at most every 2 s (and the last). */
        if (tty || job_ended(j->state) || (strcmp(now, last) != 0 && mono_s() - last_line >= 2.0)) {
            show_progress(j, tty);
            last_line = mono_s();
            snprintf(last, sizeof last, "%s", now);
        }
        if (job_ended(j->state)) {
            if (tty) fputc('\n', stderr);
            if (j->message[0]) fprintf(stderr, "ppxctl: %s: %s\n", job_state_name(j->state), j->message);
            printf("%s\n", job_state_name(j->state));
            return j->state == PPXQ_JOB_DONE ? 0 : EXIT_SERVER;
        }
        if (c->wait_timeout > 0 && mono_s() - t0 >= c->wait_timeout) {
            if (tty) fputc('\n', stderr);
            fprintf(stderr, "ppxctl: job %s is still %s after %.0f s\n", id, job_state_name(j->state), c->wait_timeout);
            printf("%s\n", job_state_name(j->state));
            return EXIT_STILL_RUNNING;
        }
    }
}

/* One output of a job into path (via path.part, renamed when complete). */
static int fetch_one(ppx_query *q, const char *id, const char *output, const char *path)
{
    size_t pl = strlen(path) + 8;
    char *part = malloc(pl);
    if (!part) return EXIT_CONN;
    snprintf(part, pl, "%s.part", path);
    FILE *f = fopen(part, "wb");
    if (!f) {
        fprintf(stderr, "ppxctl: cannot write %s: %s\n", part, strerror(errno));
        free(part);
        return EXIT_USAGE;
    }
    uint64_t offset = 0, size = 0;
    int rc = 0;
    do {
        ppxq_msg m;
        ppxq_msg_init(&m);
        m.type = PPXQ_JOB_FETCH;
        m.job_id = id;
        m.output = output;
        m.offset = offset;
        m.max_bytes = 4u << 20;
        const ppxq_msg *r;
        if ((rc = job_call(q, &m, PPXQ_JOB_FETCH_REPLY, &r)) != 0) break;
        if (r->offset != offset || (r->n_data == 0 && offset < r->size)) {
            fprintf(stderr, "ppxctl: the daemon sent bytes from %llu, not %llu\n", (unsigned long long)r->offset,
                    (unsigned long long)offset);
            rc = EXIT_CONN;
            break;
        }
        if (r->n_data && fwrite(r->data, 1, r->n_data, f) != r->n_data) {
            fprintf(stderr, "ppxctl: writing %s: %s\n", part, strerror(errno));
            rc = EXIT_USAGE;
            break;
        }
        offset += r->n_data;
        size = r->size;
    } while (offset < size);
    if (fclose(f) != 0 && !rc) rc = EXIT_USAGE;
    if (!rc && rename(part, path) < 0) {
        fprintf(stderr, "ppxctl: cannot rename %s to %s: %s\n", part, path, strerror(errno));
        rc = EXIT_USAGE;
    }
    if (rc)
        unlink(part);
    else
        fprintf(stderr, "ppxctl: %s: %llu bytes to %s\n", output, (unsigned long long)size, path);
    free(part);
    return rc;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmd_job_fetch(ppx_query *q, const ctl *c, const char *id, const char *output)
{
    if (output) {
        char *path = NULL;
        if (is_dir(c->out)) {
            if (asprintf(&path, "%s/%s", c->out, output) < 0) return EXIT_CONN;
        } else if (!(path = strdup(c->out))) {
            return EXIT_CONN;
        }
        int rc = fetch_one(q, id, output, path);
        free(path);
        return rc;
    }
    /* Every output, into the directory -o. */
    if (!is_dir(c->out) && mkdir(c->out, 0755) < 0) {
        fprintf(stderr, "ppxctl: cannot create the directory %s: %s\n", c->out, strerror(errno));
        return EXIT_USAGE;
    }
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_JOB_STATUS;
    m.job_id = id;
    const ppxq_msg *r;
    int rc = job_call(q, &m, PPXQ_JOB_REPLY, &r);
    if (rc) return rc;
    uint32_t n = r->jobs[0].n_outputs;
    char **names = calloc(n ? n : 1, sizeof *names);
    if (!names) return EXIT_CONN;
    for (uint32_t i = 0; i < n; i++) names[i] = strdup(r->jobs[0].outputs[i]);
    if (!n) fprintf(stderr, "ppxctl: job %s has no outputs (yet)\n", id);
    for (uint32_t i = 0; i < n && !rc; i++) {
        char *path = NULL;
        if (!names[i] || asprintf(&path, "%s/%s", c->out, names[i]) < 0) {
            rc = EXIT_CONN;
            break;
        }
        rc = fetch_one(q, id, names[i], path);
        free(path);
    }
    for (uint32_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc ? rc : n ? 0 : EXIT_SERVER;
}

static int cmd_sims(ppx_query *q)
{
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_SIM_LIST;
    const ppxq_msg *r;
    int rc = job_call(q, &m, PPXQ_SIM_LIST_REPLY, &r);
    if (rc) return rc;
    if (!r->n_pools) {
        printf("no simulators have connected\n");
        return 0;
    }
    printf("%-24s %10s %6s %8s %8s\n", "MODEL", "CONNECTED", "BUSY", "JOINED", "LEFT");
    for (uint32_t i = 0; i < r->n_pools; i++) {
        const ppxq_sim_pool *p = &r->pools[i];
        printf("%-24s %10u %6u %8llu %8llu\n", p->model[0] ? p->model : "(unnamed)", p->connected, p->busy,
               (unsigned long long)p->joined, (unsigned long long)p->left);
    }
    return 0;
}

/* The x rows of ratio/score: --x-file replaces the --x rows.  0 or an exit code. */
static int gold_x(ctl *c)
{
    if (!c->x_file) return 0;
    double *d = NULL;
    size_t rows, cols;
    char err[512];
    if (npy_read(c->x_file, &d, &rows, &cols, err, sizeof err) < 0) {
        fprintf(stderr, "ppxctl: %s\n", err);
        return EXIT_USAGE;
    }
    free(c->x);
    c->x = d;
    c->n_x_rows = rows;
    c->x_cols = cols;
    return 0;
}

/* v [rows, cols] to -o FILE.npy, or one row per line. */
static int gold_output(const ctl *c, const double *v, size_t rows, size_t cols)
{
    if (c->out) {
        char err[512];
        if (npy_write(c->out, v, rows, cols, err, sizeof err) < 0) {
            fprintf(stderr, "ppxctl: %s\n", err);
            return EXIT_USAGE;
        }
        return 0;
    }
    for (size_t i = 0; i < rows; i++)
        for (size_t k = 0; k < cols; k++) printf("%.17g%c", v[i * cols + k], k + 1 < cols ? ' ' : '\n');
    return 0;
}

static int cmd_ratio(ppx_query *q, ctl *c)
{
    int rc = gold_x(c);
    if (rc) return rc;
    if (c->n_theta1_rows && c->theta1_cols != c->theta0_cols)
        return usage_error("--theta0 and --theta1 need the same number of values", NULL);
    const double *lr;
    rc = ppx_query_log_ratio(q, c->model, c->x, (uint32_t)c->n_x_rows, (uint32_t)c->x_cols, c->theta0,
                             (uint32_t)c->n_theta0_rows, c->theta1, (uint32_t)c->n_theta1_rows,
                             (uint32_t)c->theta0_cols, &lr);
    if (rc != PPXQ_OK) return report(q, rc);
    return gold_output(c, lr, c->n_x_rows, 1);
}

static int cmd_score(ppx_query *q, ctl *c)
{
    int rc = gold_x(c);
    if (rc) return rc;
    const ppxq_matrix *t;
    rc = ppx_query_score(q, c->model, c->x, (uint32_t)c->n_x_rows, (uint32_t)c->x_cols, c->theta,
                         (uint32_t)c->n_theta_rows, (uint32_t)c->theta_cols, &t);
    if (rc != PPXQ_OK) return report(q, rc);
    return gold_output(c, t->data, t->rows, t->cols);
}

static int cmd_admin(ppx_query *q, const ctl *c)
{
    const char *msg = NULL;
    const ppxq_model_info *info = NULL;
    int rc;
    if (strcmp(c->cmd, "load") == 0) rc = ppx_query_load(q, c->args[0], c->name, &msg, &info);
    else if (strcmp(c->cmd, "unload") == 0) rc = ppx_query_unload(q, c->args[0], &msg);
    else rc = ppx_query_reload(q, c->args[0], &msg, &info);
    if (rc != PPXQ_OK) return report(q, rc);
    printf("%s\n", msg);
    if (info) print_info(info);
    return 0;
}

int main(int argc, char **argv)
{
    ctl c;
    memset(&c, 0, sizeof c);
    c.endpoint = "tcp://127.0.0.1:5560";
    c.timeout_ms = 10000;
    /* submit -- COMMAND...: the words after "--" are the job's, not ours. */
    int dd = 1;
    while (dd < argc && strcmp(argv[dd], "--") != 0) dd++;
    if (dd < argc) {
        c.words = (const char *const *)argv + dd + 1;
        c.n_words = (size_t)(argc - dd - 1);
    }
    int rc = parse(&c, dd, argv);
    if (rc) goto out;
    static const char *const cmds[] = {"models", "sample", "logprob", "status", "load", "unload", "reload",
                                       "keygen", "submit", "jobs",   "job",     "sims",   "ratio", "score"};
    int known = 0;
    for (size_t i = 0; c.cmd && i < sizeof cmds / sizeof *cmds; i++) known |= strcmp(c.cmd, cmds[i]) == 0;
    if (c.help) {
        usage(stdout, known ? c.cmd : NULL);
        goto out;
    }
    if (!c.cmd) {
        usage(stderr, NULL);
        rc = EXIT_USAGE;
        goto out;
    }
    if (!known) {
        rc = usage_error("unknown command (ppxctl --help)", c.cmd);
        goto out;
    }
    /* Per-command argument checks, before connecting. */
    size_t want_args = 0;
    if (!strcmp(c.cmd, "load") || !strcmp(c.cmd, "unload") || !strcmp(c.cmd, "reload") || !strcmp(c.cmd, "keygen"))
        want_args = 1;
    if (c.words && strcmp(c.cmd, "submit") != 0) {
        rc = usage_error("'--' (a job's command) is for submit", c.cmd);
        goto out;
    }
    if (!strcmp(c.cmd, "submit") && !c.n_words) {
        rc = usage_error("submit needs the job's command after '--', e.g. ppxctl submit -- simulate -n 1000", NULL);
        usage(stderr, c.cmd);
        goto out;
    }
    const char *job_sub = NULL, *job_id = NULL, *job_output = NULL;
    if (!strcmp(c.cmd, "job")) {
        static const char *const subs[] = {"status", "wait", "cancel", "fetch"};
        int ok = 0;
        for (size_t i = 0; c.n_args && i < 4; i++) ok |= !strcmp(c.args[0], subs[i]);
        size_t max_args = c.n_args && !strcmp(c.args[0], "fetch") ? 3 : 2;
        if (!ok || c.n_args < 2 || c.n_args > max_args) {
            rc = usage_error("job wants status|wait|cancel ID, or fetch ID [OUTPUT] -o DIR|FILE", NULL);
            usage(stderr, "job");
            goto out;
        }
        job_sub = c.args[0];
        job_id = c.args[1];
        job_output = c.n_args > 2 ? c.args[2] : NULL;
        if (!strcmp(job_sub, "fetch") && !c.out) {
            rc = usage_error("job fetch needs -o DIR (every output) or -o FILE|DIR (one OUTPUT)", NULL);
            goto out;
        }
        want_args = c.n_args;
    }
    if (c.n_args != want_args) {
        rc = usage_error(want_args ? "this command takes one argument" : "unexpected argument",
                         c.n_args ? c.args[0] : c.cmd);
        usage(stderr, c.cmd);
        goto out;
    }
    if (!strcmp(c.cmd, "keygen")) {
        char err[512];
        if (ppx_query_write_key_pair(c.args[0], err, sizeof err) < 0) {
            fprintf(stderr, "ppxctl: %s\n", err);
            rc = 1;
        } else {
            fprintf(stderr, "ppxctl: wrote %s.key (keep it secret) and %s.pub\n", c.args[0], c.args[0]);
        }
        goto out;
    }
    if (!strcmp(c.cmd, "sample")) {
        if (!c.model || !c.n_obs_rows || !c.n) {
            rc = usage_error("sample needs --model NAME, --obs X1,X2,... and -n N", NULL);
            goto out;
        }
    }
    if (!strcmp(c.cmd, "logprob")) {
        if (!c.model || c.n_obs_rows != 1 || (!c.n_theta_rows && !c.theta_file) || (c.n_theta_rows && c.theta_file)) {
            rc = usage_error("logprob needs --model NAME, one --obs X1,X2,... and --theta T1,... (repeatable) or "
                             "--theta-file FILE.npy", NULL);
            goto out;
        }
    }
    if (!strcmp(c.cmd, "ratio") || !strcmp(c.cmd, "score")) {
        const int ratio = !strcmp(c.cmd, "ratio");
        if (!c.model || (!c.n_x_rows && !c.x_file) || (c.n_x_rows && c.x_file) || (ratio && !c.n_theta0_rows)) {
            rc = usage_error(ratio ? "ratio needs --model NAME, --x X1,... (repeatable) or --x-file FILE.npy, and "
                                     "--theta0 T1,..."
                                   : "score needs --model NAME and --x X1,... (repeatable) or --x-file FILE.npy",
                             NULL);
            goto out;
        }
    }
    ppx_query *q = NULL;
    rc = connect_server(&c, &q);
    if (rc) goto out;
    if (!strcmp(c.cmd, "models")) rc = cmd_models(q);
    else if (!strcmp(c.cmd, "status")) rc = cmd_status(q);
    else if (!strcmp(c.cmd, "sample")) rc = cmd_sample(q, &c);
    else if (!strcmp(c.cmd, "logprob")) rc = cmd_logprob(q, &c);
    else if (!strcmp(c.cmd, "submit")) rc = cmd_submit(q, &c);
    else if (!strcmp(c.cmd, "jobs")) rc = cmd_jobs(q);
    else if (!strcmp(c.cmd, "sims")) rc = cmd_sims(q);
    else if (job_sub && !strcmp(job_sub, "status")) rc = cmd_job_simple(q, PPXQ_JOB_STATUS, job_id);
    else if (job_sub && !strcmp(job_sub, "cancel")) rc = cmd_job_simple(q, PPXQ_JOB_CANCEL, job_id);
    else if (job_sub && !strcmp(job_sub, "wait")) rc = cmd_job_wait(q, &c, job_id);
    else if (job_sub && !strcmp(job_sub, "fetch")) rc = cmd_job_fetch(q, &c, job_id, job_output);
    else if (!strcmp(c.cmd, "ratio")) rc = cmd_ratio(q, &c);
    else if (!strcmp(c.cmd, "score")) rc = cmd_score(q, &c);
    else rc = cmd_admin(q, &c);
    ppx_query_close(&q);
out:
    free(c.args);
    free(c.obs);
    free(c.theta);
    free(c.x);
    free(c.theta0);
    free(c.theta1);
    return rc;
}
