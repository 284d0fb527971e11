/* main.c — the ppxd command line.
 *
 *   ppxd simulate  prior sampling to a trace file
 *   ppxd infer     importance sampling (prior proposal) or LMH, posterior summaries
 *   ppxd export    named values of a trace file to .npy / .csv
 *   ppxd info      count and check the records of a trace file
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "engine.h"
#include "nn/nn.h"
#include "export.h"
#include "jobs.h"
#include "policy.h"
#include "stats.h"
#include "trace_store.h"
#include "serve.h"
#include "train.h"

/* The signal handler needs to reach the running engine. */
static engine *g_running;

static void on_signal(int sig)
{
    (void)sig;
    if (g_running) engine_request_stop(g_running);
}

static void usage(FILE *f)
{
    fprintf(f,
            "ppxd — simulation-based inference engine for PPX simulators\n"
            "\n"
            "usage:\n"
            "  ppxd simulate SIMULATORS -n N -o FILE.ppxt [--seed S] [--fsync never|flush|close]\n"
            "  ppxd infer    SIMULATORS -n N --observe NAME=V[,V...]... [--method is|lmh] [--burn-in B]\n"
            "                [--latent NAME]... [--samples-out FILE.npy] [--resample M] [-o FILE.ppxt] [--seed S]\n"
            "  ppxd export   FILE.ppxt --names A,B,... -o OUT.npy|OUT.csv\n"
            "  ppxd info     FILE.ppxt\n"
            "  ppxd train    npe|nre (SIMULATORS -n N --theta A,.. --x B,.. | --data T.npy X.npy --prior SPEC) -o M.ppxm\n"
            "  ppxd posterior sample|logprob|info --model M.ppxm ...  (ppxd train --help, ppxd posterior --help)\n"
            "  ppxd serve    --serve ENDPOINT... --model NAME=PATH... [--curve-secret F --curve-allow F] (ppxd serve --help)\n"
            "\n"
            "SIMULATORS (at least one of):\n"
            ENGINE_SIM_OPTIONS_HELP
            "\n"
            "options:\n"
            "  -n N                  traces (simulate, infer --method is) or samples (lmh, all chains)\n"
            "  --observe NAME=V,...  value of an Observe (or named Sample) to condition on (repeatable)\n"
            "  --observe-file F      lines NAME=V,... (same as --observe)\n"
            "  --fix NAME=V,...      set a named Sample (intervention, not weighted), e.g. theta\n"
            "  --latent NAME         summarise NAME (repeatable; default: every named Sample)\n"
            "  --samples-out F.npy   write resampled (is) or chain (lmh) samples of the latents\n"
            "  --resample M          number of resampled samples (default n)\n"
            "  --method is|lmh       importance sampling with the prior (default) or LMH, one chain per simulator\n"
            "  --burn-in B           LMH steps per chain discarded first (default n/10 per chain)\n"
            "  -o FILE.ppxt          write the traces (simulate: required; infer: optional)\n"
            "  --seed S              reproducible results for a given number of simulators (default 1)\n"
            "  --timeout-ms T        per-message timeout (default 10000)\n"
            "  --start-timeout-ms T  launch-to-handshake timeout (default 30000)\n"
            "  --max-failures K      consecutive failures before a simulator is given up (default 20)\n"
            "  --max-message-bytes B largest PPX message accepted (default 64 MiB)\n"
            "  --fsync never|flush|close   trace-file durability (default flush)\n"
            "  --quiet               no progress output\n"
            "  -h, --help            this help\n");
}

typedef struct cli {
    const char *cmd;
    engine_config ecfg;
    engine_sim_options sims;
    uint64_t n;
    const char *out;
    uint64_t seed;
    observation *obs;
    size_t n_obs;
    fixed_value *fix;
    size_t n_fix;
    const char **latents;
    size_t n_latents;
    const char *samples_out;
    uint64_t resample;
    int lmh;
    int64_t burn_in;
    trace_fsync_policy fsync;
    const char *names;
    const char *file;
} cli;

static int die(const char *msg, const char *detail)
{
    fprintf(stderr, "ppxd: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    return 2;
}

/* "NAME=V1,V2,..." into an observation.  0 or -1. */
static int parse_named_values(const char *arg, observation *o)
{
    const char *eq = strchr(arg, '=');
    o->name = NULL;
    o->n = 0;
    o->values = NULL;
    if (!eq || eq == arg) return -1;
    if (!(o->name = strndup(arg, (size_t)(eq - arg)))) return -1;
    const char *p = eq + 1;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v)) goto fail;
        double *nv = realloc(o->values, (o->n + 1) * sizeof *nv);
        if (!nv) goto fail;
        o->values = nv;
        o->values[o->n++] = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) goto fail;
    }
    if (o->n) return 0;
fail:
    /* Nothing half-parsed is kept (it would leak: callers only keep successes). */
    free(o->name);
    free(o->values);
    o->name = NULL;
    o->values = NULL;
    o->n = 0;
    return -1;
}

static int add_obs(cli *c, const char *arg)
{
    observation o;
    if (parse_named_values(arg, &o) < 0) {
        fprintf(stderr, "ppxd: bad value '%s': expected NAME=NUMBER[,NUMBER...] with finite numbers\n", arg);
        return -1;
    }
    observation *p = realloc(c->obs, (c->n_obs + 1) * sizeof *p);
    if (!p) return -1;
    c->obs = p;
    c->obs[c->n_obs++] = o;
    return 0;
}

static int add_obs_file(cli *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ppxd: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int rc = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        if (add_obs(c, s) < 0) {
            fprintf(stderr, "ppxd: %s:%d: bad line\n", path, lineno);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

static int add_fix(cli *c, const char *arg, fixed_mode mode)
{
    observation o;
    if (parse_named_values(arg, &o) < 0) {
        fprintf(stderr, "ppxd: bad value '%s': expected NAME=NUMBER[,NUMBER...]\n", arg);
        return -1;
    }
    fixed_value *p = realloc(c->fix, (c->n_fix + 1) * sizeof *p);
    if (!p) return -1;
    c->fix = p;
    c->fix[c->n_fix].name = o.name;
    c->fix[c->n_fix].values = o.values;
    c->fix[c->n_fix].n = o.n;
    c->fix[c->n_fix].mode = mode;
    c->n_fix++;
    return 0;
}

enum {
    OPT_SIM_CMD = 1000, OPT_CONNECT, OPT_SEED, OPT_OBSERVE, OPT_OBSERVE_FILE, OPT_FIX, OPT_LATENT, OPT_SAMPLES_OUT,
    OPT_RESAMPLE, OPT_METHOD, OPT_BURN_IN, OPT_TIMEOUT, OPT_START_TIMEOUT, OPT_MAX_FAILURES, OPT_MAX_MSG, OPT_FSYNC,
    OPT_QUIET, OPT_NAMES
};

static int parse_args(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"sim-cmd", required_argument, 0, OPT_SIM_CMD},
        {"connect", required_argument, 0, OPT_CONNECT},
        {"seed", required_argument, 0, OPT_SEED},
        {"observe", required_argument, 0, OPT_OBSERVE},
        {"observe-file", required_argument, 0, OPT_OBSERVE_FILE},
        {"fix", required_argument, 0, OPT_FIX},
        {"latent", required_argument, 0, OPT_LATENT},
        {"samples-out", required_argument, 0, OPT_SAMPLES_OUT},
        {"resample", required_argument, 0, OPT_RESAMPLE},
        {"method", required_argument, 0, OPT_METHOD},
        {"burn-in", required_argument, 0, OPT_BURN_IN},
        {"timeout-ms", required_argument, 0, OPT_TIMEOUT},
        {"start-timeout-ms", required_argument, 0, OPT_START_TIMEOUT},
        {"max-failures", required_argument, 0, OPT_MAX_FAILURES},
        {"max-message-bytes", required_argument, 0, OPT_MAX_MSG},
        {"fsync", required_argument, 0, OPT_FSYNC},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"names", required_argument, 0, OPT_NAMES},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int ch;
    uint64_t v;
    optind = 2; /* argv[1] is the sub-command */
    int idx = 0; /* the long option just matched (engine_config_option, engine_sim_option take its name) */
    while ((ch = getopt_long(argc, argv, "j:n:o:h", opts, &idx)) != -1) {
        switch (ch) {
        case OPT_SIM_CMD:
        case OPT_CONNECT:
        case 'j': {
            char why[80];
            if (engine_sim_option(&c->sims, ch == 'j' ? "j" : opts[idx].name, optarg, why, sizeof why) < 0)
                return die(why, optarg);
            break;
        }
        case 'n':
            if (args_u64(optarg, &c->n) < 0 || c->n == 0) return die("-n wants a positive number", optarg);
            break;
        case 'o': c->out = optarg; break;
        case OPT_SEED:
            if (args_u64(optarg, &c->seed) < 0) return die("--seed wants a non-negative integer", optarg);
            break;
        case OPT_OBSERVE:
            if (add_obs(c, optarg) < 0) return 2;
            break;
        case OPT_OBSERVE_FILE:
            if (add_obs_file(c, optarg) < 0) return 2;
            break;
        case OPT_FIX:
            if (add_fix(c, optarg, FIXED_SET) < 0) return 2;
            break;
        case OPT_LATENT:
            if (args_push(&c->latents, &c->n_latents, optarg) < 0) return 2;
            break;
        case OPT_SAMPLES_OUT: c->samples_out = optarg; break;
        case OPT_RESAMPLE:
            if (args_u64(optarg, &c->resample) < 0 || !c->resample) return die("--resample wants a positive number", optarg);
            break;
        case OPT_METHOD:
            if (strcmp(optarg, "is") == 0) c->lmh = 0;
            else if (strcmp(optarg, "lmh") == 0) c->lmh = 1;
            else return die("--method is 'is' or 'lmh'", optarg);
            break;
        case OPT_BURN_IN:
            if (args_u64(optarg, &v) < 0) return die("--burn-in wants a non-negative number", optarg);
            c->burn_in = (int64_t)v;
            break;
        case OPT_TIMEOUT:
        case OPT_START_TIMEOUT:
        case OPT_MAX_FAILURES: {
            char why[80];
            if (engine_config_option(&c->ecfg, opts[idx].name, optarg, why, sizeof why) < 0) return die(why, optarg);
            break;
        }
        case OPT_MAX_MSG:
            if (args_u64(optarg, &v) < 0 || v < 64) return die("--max-message-bytes wants a number >= 64", optarg);
            c->ecfg.limits.max_message_bytes = v;
            break;
        case OPT_FSYNC:
            if (strcmp(optarg, "never") == 0) c->fsync = TRACE_FSYNC_NEVER;
            else if (strcmp(optarg, "flush") == 0) c->fsync = TRACE_FSYNC_FLUSH;
            else if (strcmp(optarg, "close") == 0) c->fsync = TRACE_FSYNC_CLOSE;
            else return die("--fsync is never, flush or close", optarg);
            break;
        case OPT_QUIET: c->ecfg.progress = 0; break;
        case OPT_NAMES: c->names = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) c->file = argv[optind++];
    if (optind < argc) return die("unexpected argument", argv[optind]);
    /* Usage errors of the simulator options: exit 2 before touching any file. */
    if (strcmp(c->cmd, "simulate") == 0 || strcmp(c->cmd, "infer") == 0) {
        char why[160];
        if (engine_sim_options_apply(&c->sims, &c->ecfg, why, sizeof why) == 0) return die(why, NULL);
    }
    c->ecfg.obs = c->obs;
    c->ecfg.n_obs = c->n_obs;
    c->ecfg.seed = c->seed;
    return 0;
}

static engine *start_engine(cli *c)
{
    engine *e = engine_new(&c->ecfg);
    g_running = e;
    return e;
}

/* The policy for simulate/infer: prior, with --observe'd named samples
 * conditioned and --fix'ed ones set. */
static policy *make_policy(cli *c, size_t slots)
{
    policy *p = policy_prior_new(slots, c->seed);
    size_t n = c->n_fix + c->n_obs;
    if (!p || n == 0) return p;
    fixed_value *fv = calloc(n, sizeof *fv);
    if (!fv) {
        policy_destroy(&p);
        return NULL;
    }
    for (size_t i = 0; i < c->n_fix; i++) fv[i] = c->fix[i];
    for (size_t i = 0; i < c->n_obs; i++) {
        fv[c->n_fix + i].name = c->obs[i].name;
        fv[c->n_fix + i].values = c->obs[i].values;
        fv[c->n_fix + i].n = c->obs[i].n;
        fv[c->n_fix + i].mode = FIXED_CONDITION;
    }
    policy *f = policy_fixed_new(p, fv, n);
    free(fv);
    return f;
}

typedef struct write_ctx {
    trace_writer *w;
    is_result *is;
    time_t last_flush;
} write_ctx;

static int commit_write(void *ctx, uint64_t index, const trace *t)
{
    write_ctx *wc = ctx;
    if (wc->w && trace_writer_append(wc->w, t) < 0) {
        fprintf(stderr, "ppxd: writing traces: %s\n", trace_writer_error(wc->w));
        return -1;
    }
    /* Besides full batches, flush at least once a second, so a crash loses
     * at most about a second of work. */
    time_t now = time(NULL);
    if (wc->w && now != wc->last_flush) {
        wc->last_flush = now;
        if (trace_writer_flush(wc->w) < 0) {
            fprintf(stderr, "ppxd: writing traces: %s\n", trace_writer_error(wc->w));
            return -1;
        }
    }
    if (wc->is) return is_result_commit(wc->is, index, t);
    return 0;
}

static int cmd_simulate(cli *c)
{
    if (!c->n) return die("simulate needs -n N", NULL);
    if (!c->out) return die("simulate needs -o FILE.ppxt", NULL);
    char err[256];
    trace_writer *w = trace_writer_open(c->out, 0, 0, c->fsync, err, sizeof err);
    if (!w) return die("cannot open output", err);
    engine *e = start_engine(c);
    if (!e) {
        trace_writer_close(&w);
        return 1;
    }
    policy *p = make_policy(c, engine_slots(e));
    write_ctx wc = {w, NULL, 0};
    ordered_job job;
    int rc = 1;
    if (p && ordered_job_init(&job, c->n, 4 * engine_slots(e) + 64, commit_write, &wc) == 0) {
        rc = engine_run(e, p, &ordered_job_ops, &job) == 0 && !job.failed ? 0 : 1;
        ordered_job_free(&job);
    }
    if (trace_writer_close(&w) < 0) rc = 1;
    fprintf(stderr, "ppxd simulate: wrote %llu traces to %s\n", (unsigned long long)engine_get_stats(e)->traces_done,
            c->out);
    engine_print_stats(e, stderr);
    policy_destroy(&p);
    g_running = NULL;
    engine_destroy(&e);
    return rc;
}

static void print_summary(const is_result *r, const double *w, const char *title)
{
    size_t *scratch = malloc(2 * (r->n ? r->n : 1) * sizeof *scratch);
    if (!scratch) return;
    printf("%s\n", title);
    printf("%-16s %12s %12s %12s %12s %12s\n", "latent", "mean", "sd", "q05", "q50", "q95");
    for (size_t j = 0; j < r->n_cols; j++) {
        char name[96];
        double mean, sd;
        is_result_col_name(r, j, name, sizeof name);
        stats_weighted_moments(r->vals + j, r->n_cols, w, r->n, &mean, &sd);
        printf("%-16s %12.6g %12.6g %12.6g %12.6g %12.6g\n", name, mean, sd,
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.05, scratch),
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.50, scratch),
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.95, scratch));
    }
    fflush(stdout);
    free(scratch);
}

static int write_samples(cli *c, const is_result *r, const double *w, int resample)
{
    if (!c->samples_out) return 0;
    size_t m = resample ? (size_t)(c->resample ? c->resample : r->n) : (size_t)r->n;
    double *out = malloc((m ? m : 1) * (r->n_cols ? r->n_cols : 1) * sizeof *out);
    size_t *idx = malloc((m ? m : 1) * sizeof *idx);
    if (!out || !idx) {
        free(out);
        free(idx);
        return -1;
    }
    if (resample) {
        rng rr;
        rng_seed(&rr, c->seed ^ 0x726573616d706c65ull, 0);
        stats_resample_systematic(w, r->n, m, &rr, idx);
    } else {
        for (size_t i = 0; i < m; i++) idx[i] = i;
    }
    for (size_t i = 0; i < m; i++) memcpy(out + i * r->n_cols, r->vals + idx[i] * r->n_cols, r->n_cols * sizeof *out);
    char err[256];
    int rc = npy_write(c->samples_out, out, m, r->n_cols, err, sizeof err);
    if (rc < 0) fprintf(stderr, "ppxd: %s\n", err);
    else fprintf(stderr, "ppxd: wrote %zu x %zu samples to %s\n", m, r->n_cols, c->samples_out);
    free(out);
    free(idx);
    return rc;
}

static int cmd_infer(cli *c)
{
    if (!c->n) return die("infer needs -n N", NULL);
    if (!c->n_obs) fprintf(stderr, "ppxd: note: no --observe given: the posterior is the prior\n");
    engine *e = start_engine(c);
    if (!e) return 1;
    size_t slots = engine_slots(e);
    is_result res;
    int rc = 1;
    if (is_result_init(&res, c->latents, c->n_latents) < 0) goto out_engine;
    if (!c->lmh) {
        policy *p = make_policy(c, slots);
        char err[256];
        write_ctx wc = {NULL, &res, 0};
        if (c->out && !(wc.w = trace_writer_open(c->out, 0, 0, c->fsync, err, sizeof err))) {
            die("cannot open output", err);
            policy_destroy(&p);
            goto out_res;
        }
        ordered_job job;
        if (p && ordered_job_init(&job, c->n, 4 * slots + 64, commit_write, &wc) == 0) {
            rc = engine_run(e, p, &ordered_job_ops, &job) == 0 && !job.failed ? 0 : 1;
            ordered_job_free(&job);
        }
        if (wc.w && trace_writer_close(&wc.w) < 0) rc = 1;
        policy_destroy(&p);
        if (rc == 0) {
            double *w = malloc((res.n ? res.n : 1) * sizeof *w);
            if (!w) goto out_res;
            stats_normalise(res.lw, res.n, w);
            double logz = stats_logsumexp(res.lw, res.n) - log((double)res.n);
            char title[200];
            snprintf(title, sizeof title,
                     "importance sampling (prior proposal): %llu traces, ESS %.1f, log evidence %.6g",
                     (unsigned long long)res.n, stats_ess(w, res.n), logz);
            print_summary(&res, w, title);
            if (write_samples(c, &res, w, 1) < 0) rc = 1;
            free(w);
        }
    } else {
        size_t chains = slots;
        uint64_t per_chain = (c->n + chains - 1) / chains;
        uint64_t burn = c->burn_in >= 0 ? (uint64_t)c->burn_in : per_chain / 10;
        policy *p = policy_replay_new(make_policy(c, slots), slots);
        lmh_job job;
        if (p && lmh_job_init(&job, chains, per_chain + burn, burn, p, c->latents, c->n_latents, c->seed) == 0) {
            rc = engine_run(e, p, &lmh_job_ops, &job) == 0 && !job.failed ? 0 : 1;
            if (rc == 0 && lmh_job_collect(&job, &res) < 0) rc = 1;
            uint64_t acc = 0, steps = 0;
            for (size_t k = 0; k < job.n_chains; k++) {
                acc += job.chains[k].accepted;
                steps += job.chains[k].iter;
            }
            if (rc == 0) {
                double *w = malloc((res.n ? res.n : 1) * sizeof *w);
                if (!w) goto out_res;
                for (uint64_t i = 0; i < res.n; i++) w[i] = 1.0 / (double)res.n;
                char title[200];
                snprintf(title, sizeof title,
                         "lightweight Metropolis-Hastings: %zu chains x %llu samples (burn-in %llu), acceptance %.3f",
                         chains, (unsigned long long)per_chain, (unsigned long long)burn,
                         steps ? (double)acc / (double)steps : 0.0);
                print_summary(&res, w, title);
                if (write_samples(c, &res, w, 0) < 0) rc = 1;
                free(w);
            }
        }
        lmh_job_free(&job);
        policy_destroy(&p);
    }
    engine_print_stats(e, stderr);
out_res:
    is_result_free(&res);
out_engine:
    g_running = NULL;
    engine_destroy(&e);
    return rc;
}

static int cmd_export(cli *c)
{
    if (!c->file) return die("export needs a trace file", NULL);
    if (!c->names || !c->out) return die("export needs --names A,B,... and -o OUT.npy|OUT.csv", NULL);
    char *names_buf = strdup(c->names), *save = NULL;
    const char *names[256];
    size_t n_names = 0;
    for (char *tok = strtok_r(names_buf, ",", &save); tok && n_names < 256; tok = strtok_r(NULL, ",", &save))
        names[n_names++] = tok;
    char err[256];
    trace_reader *r = trace_reader_open(c->file, err, sizeof err);
    if (!r) {
        free(names_buf);
        return die("cannot read", err);
    }
    export_table *x = export_table_new(names, n_names);
    trace *t = trace_new();
    int rc = 0, got;
    uint64_t skipped = 0;
    while ((got = trace_reader_next(r, t)) == 1) {
        if (export_table_add(x, t, err, sizeof err) < 0) {
            if (!skipped) fprintf(stderr, "ppxd: skipping traces: %s\n", err);
            skipped++;
        }
    }
    trace_reader_stats st = trace_reader_get_stats(r);
    if (got < 0) rc = 1;
    if (st.damaged_regions)
        fprintf(stderr, "ppxd: %s: %llu bytes of damage skipped in %llu place%s\n", c->file,
                (unsigned long long)st.skipped_bytes, (unsigned long long)st.damaged_regions,
                st.damaged_regions == 1 ? "" : "s");
    if (st.truncated)
        fprintf(stderr, "ppxd: %s: damaged tail of %llu bytes ignored after %llu records\n", c->file,
                (unsigned long long)st.bad_tail_bytes, (unsigned long long)st.records);
    size_t ol = strlen(c->out);
    int csv = ol > 4 && strcmp(c->out + ol - 4, ".csv") == 0;
    if (rc == 0 && (csv ? export_table_write_csv(x, c->out, err, sizeof err)
                        : export_table_write_npy(x, c->out, err, sizeof err)) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        rc = 1;
    }
    if (rc == 0)
        fprintf(stderr, "ppxd: wrote %zu rows x %zu columns to %s (%llu traces skipped)\n", export_table_rows(x),
                export_table_cols(x), c->out, (unsigned long long)skipped);
    trace_destroy(&t);
    export_table_destroy(&x);
    trace_reader_close(&r);
    free(names_buf);
    return rc;
}

static int cmd_info(cli *c)
{
    if (!c->file) return die("info needs a trace file", NULL);
    char err[256];
    trace_reader *r = trace_reader_open(c->file, err, sizeof err);
    if (!r) return die("cannot read", err);
    trace *t = trace_new();
    int got;
    uint64_t entries = 0;
    while ((got = trace_reader_next(r, t)) == 1) entries += t->n_entries;
    trace_reader_stats st = trace_reader_get_stats(r);
    int damaged = st.truncated || st.damaged_regions;
    printf("%s: %llu traces, %llu entries", c->file, (unsigned long long)st.records, (unsigned long long)entries);
    if (st.damaged_regions)
        printf(", %llu bytes of damage skipped in %llu place%s", (unsigned long long)st.skipped_bytes,
               (unsigned long long)st.damaged_regions, st.damaged_regions == 1 ? "" : "s");
    if (st.truncated) printf(", damaged tail of %llu bytes ignored", (unsigned long long)st.bad_tail_bytes);
    printf("%s\n", damaged ? "" : ", no damage");
    trace_destroy(&t);
    trace_reader_close(&r);
    /* Exit 1 on damage too: scripts checking a file must not take a
     * damaged one for a sound one. */
    if (got < 0) return 1;
    if (damaged) fprintf(stderr, "ppxd: %s is damaged: every valid record was read, the damage skipped\n", c->file);
    return damaged ? 1 : 0;
}

int main(int argc, char **argv)
{
    nn_blas_fix_coretype(argv); /* may re-execute with the right OpenBLAS kernels */
    if (argc == 2 && strcmp(argv[1], "blas-core") == 0) {
        /* The OpenBLAS kernels ppxd runs with (the test runner gives the same
         * to every test process, so in-process and served results agree). */
        printf("%s\n", openblas_get_corename());
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0) return ppxd_train_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "posterior") == 0) return ppxd_posterior_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0) return serve_main(argc - 1, argv + 1);
    cli c;
    memset(&c, 0, sizeof c);
    engine_config_defaults(&c.ecfg);
    c.ecfg.progress = 1;
    c.seed = 1;
    c.burn_in = -1;
    c.fsync = TRACE_FSYNC_FLUSH;
    c.cmd = argv[1];
    int rc = parse_args(&c, argc, argv);
    if (rc == 0) { /* on a usage error, still free what was parsed (leak-checked builds) */
        signal(SIGPIPE, SIG_IGN);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        if (strcmp(c.cmd, "simulate") == 0) rc = cmd_simulate(&c);
        else if (strcmp(c.cmd, "infer") == 0) rc = cmd_infer(&c);
        else if (strcmp(c.cmd, "export") == 0) rc = cmd_export(&c);
        else if (strcmp(c.cmd, "info") == 0) rc = cmd_info(&c);
        else {
            fprintf(stderr, "ppxd: unknown command '%s'\n\n", c.cmd);
            usage(stderr);
            rc = 2;
        }
    }
    for (size_t i = 0; i < c.n_obs; i++) {
        free(c.obs[i].name);
        free(c.obs[i].values);
    }
    for (size_t i = 0; i < c.n_fix; i++) {
        free((char *)c.fix[i].name);
        free((double *)c.fix[i].values);
    }
    free(c.obs);
    free(c.fix);
    engine_sim_options_free(&c.sims);
    free(c.latents);
    return rc;
}
