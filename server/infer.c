/* infer.c — `ppxd simulate` (prior sampling to a trace file) and `ppxd infer`
 * (importance sampling or LMH, with posterior summaries). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "export.h"
#include "jobs.h"
#include "stats.h"
#include "trace_store.h"

static engine *start_engine(cli *c)
{
    engine *e = engine_new(&c->ecfg);
    cli_running = e;
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

static void print_backups(const ordered_job *j)
{
    if (j->backups)
        fprintf(stderr, "ppxd: %llu backup copies of traces held by stalled simulators (same trace, first to finish counts)\n",
                (unsigned long long)j->backups);
}

int cmd_simulate(cli *c)
{
    if (!c->n) return cli_die("simulate needs -n N", NULL);
    if (!c->out) return cli_die("simulate needs -o FILE.ppxt", NULL);
    char err[256];
    trace_writer *w = trace_writer_open(c->out, 0, 0, c->fsync, err, sizeof err);
    if (!w) return cli_die("cannot open output", err);
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
        print_backups(&job);
        ordered_job_free(&job);
    }
    if (trace_writer_close(&w) < 0) rc = 1;
    fprintf(stderr, "ppxd simulate: wrote %llu traces to %s\n", (unsigned long long)engine_get_stats(e)->traces_done,
            c->out);
    engine_print_stats(e, stderr);
    policy_destroy(&p);
    cli_running = NULL;
    engine_destroy(&e);
    return rc;
}

static void print_summary(const is_result *r, const double *w, const char *title)
{
    size_t *scratch = malloc(2 * (r->n ? r->n : 1) * sizeof *scratch);
    if (!scratch) return;
    printf("%s\n", title);
    if (r->n_cols == 0)
        printf("(nothing to summarise: the traces have no named latent and no return value; name addresses with "
               "--latent, ppxd info FILE lists them)\n");
    /* Addresses are long: the first column is as wide as its longest label. */
    int width = 16;
    char name[256];
    for (size_t j = 0; j < r->n_cols; j++) {
        is_result_col_name(r, j, name, sizeof name);
        if ((int)strlen(name) > width) width = (int)strlen(name);
    }
    printf("%-*s %12s %12s %12s %12s %12s\n", width, "latent", "mean", "sd", "q05", "q50", "q95");
    for (size_t j = 0; j < r->n_cols; j++) {
        double mean, sd;
        is_result_col_name(r, j, name, sizeof name);
        stats_weighted_moments(r->vals + j, r->n_cols, w, r->n, &mean, &sd);
        printf("%-*s %12.6g %12.6g %12.6g %12.6g %12.6g\n", width, name, mean, sd,
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.05, scratch),
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.50, scratch),
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.95, scratch));
    }
    if (r->n_more)
        printf("(%zu more controlled addresses not shown: choose columns with --latent ADDRESS or PATTERN; ppxd info "
               "FILE lists the addresses)\n",
               r->n_more);
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

/* --- LMH and RMH ------------------------------------------------------------------------ */

/* -o for MCMC: chains run side by side, so each writes its states to a file
 * of its own, and the output is those files one after another, chain by
 * chain (as --samples-out): the same bytes for the same seed and number of
 * simulators, whatever the scheduling. */
typedef struct chain_files {
    trace_writer **w;
    char **paths;
    size_t n;
} chain_files;

static int chain_file_sample(void *ctx, size_t chain, const trace *t)
{
    chain_files *cf = ctx;
    if (trace_writer_append(cf->w[chain], t) < 0) {
        fprintf(stderr, "ppxd: writing chain %zu: %s\n", chain, trace_writer_error(cf->w[chain]));
        return -1;
    }
    return 0;
}

static void chain_files_free(chain_files *cf)
{
    for (size_t i = 0; i < cf->n; i++) {
        trace_writer_close(&cf->w[i]);
        if (cf->paths[i]) unlink(cf->paths[i]);
        free(cf->paths[i]);
    }
    free(cf->w);
    free(cf->paths);
    memset(cf, 0, sizeof *cf);
}

static int chain_files_open(chain_files *cf, const cli *c, size_t n)
{
    memset(cf, 0, sizeof *cf);
    cf->w = calloc(n, sizeof *cf->w);
    cf->paths = calloc(n, sizeof *cf->paths);
    if (!cf->w || !cf->paths) return -1;
    cf->n = n;
    for (size_t i = 0; i < n; i++) {
        char err[256];
        size_t len = strlen(c->out) + 48;
        if (!(cf->paths[i] = malloc(len))) return -1;
        snprintf(cf->paths[i], len, "%s.chain%zu.tmp", c->out, i);
        if (!(cf->w[i] = trace_writer_open(cf->paths[i], 0, 0, TRACE_FSYNC_NEVER, err, sizeof err))) {
            fprintf(stderr, "ppxd: cannot open %s: %s\n", cf->paths[i], err);
            return -1;
        }
    }
    return 0;
}

/* The chains' files, chain by chain, into c->out; trace ids are the row numbers. */
static int chain_files_join(chain_files *cf, const cli *c)
{
    char err[256];
    trace_writer *out = trace_writer_open(c->out, 0, 0, c->fsync, err, sizeof err);
    if (!out) {
        cli_die("cannot open output", err);
        return -1;
    }
    trace *t = trace_new();
    uint64_t row = 0;
    int rc = t ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < cf->n; i++) {
        if (trace_writer_close(&cf->w[i]) < 0) {
            rc = -1;
            break;
        }
        trace_reader *r = trace_reader_open(cf->paths[i], err, sizeof err);
        if (!r) {
            fprintf(stderr, "ppxd: %s\n", err);
            rc = -1;
            break;
        }
        int got;
        while (rc == 0 && (got = trace_reader_next(r, t)) == 1) {
            t->id = row++;
            if (trace_writer_append(out, t) < 0) {
                fprintf(stderr, "ppxd: writing traces: %s\n", trace_writer_error(out));
                rc = -1;
            }
        }
        if (got < 0) rc = -1;
        trace_reader_close(&r);
    }
    trace_destroy(&t);
    if (trace_writer_close(&out) < 0) rc = -1;
    if (rc == 0) fprintf(stderr, "ppxd: wrote %llu chain traces to %s\n", (unsigned long long)row, c->out);
    return rc;
}

static int run_mcmc(cli *c, engine *e, is_result *res)
{
    size_t chains = engine_slots(e);
    uint64_t per_chain = (c->n + chains - 1) / chains;
    uint64_t burn = c->burn_in >= 0 ? (uint64_t)c->burn_in : per_chain / 10;
    policy *p = policy_replay_new(make_policy(c, chains), chains);
    lmh_job job;
    memset(&job, 0, sizeof job);
    chain_files cf = {0};
    int rc = 1;
    if (!p || lmh_job_init(&job, chains, per_chain + burn, burn, p, (const char *const *)c->latents, c->n_latents,
                           c->seed) < 0)
        goto out;
    job.rmh = c->method == METHOD_RMH;
    if (c->out) {
        if (chain_files_open(&cf, c, chains) < 0) goto out;
        job.on_sample = chain_file_sample;
        job.on_sample_ctx = &cf;
    }
    rc = engine_run(e, p, &lmh_job_ops, &job) == 0 && !job.failed ? 0 : 1;
    if (rc == 0 && lmh_job_collect(&job, res) < 0) rc = 1;
    if (rc == 0 && c->out && chain_files_join(&cf, c) < 0) rc = 1;
    if (rc == 0) {
        uint64_t acc = 0, steps = 0;
        for (size_t k = 0; k < job.n_chains; k++) {
            acc += job.chains[k].accepted;
            steps += job.chains[k].iter;
        }
        double *w = malloc((res->n ? res->n : 1) * sizeof *w);
        if (!w) {
            rc = 1;
            goto out;
        }
        for (uint64_t i = 0; i < res->n; i++) w[i] = 1.0 / (double)res->n;
        char title[200];
        snprintf(title, sizeof title,
                 "%s Metropolis-Hastings: %zu chains x %llu samples (burn-in %llu), acceptance %.3f",
                 job.rmh ? "random-walk" : "lightweight", chains,
                 (unsigned long long)per_chain, (unsigned long long)burn, steps ? (double)acc / (double)steps : 0.0);
        print_summary(res, w, title);
        if (write_samples(c, res, w, 0) < 0) rc = 1;
        free(w);
    }
out:
    chain_files_free(&cf);
    lmh_job_free(&job);
    policy_destroy(&p);
    return rc;
}

int cmd_infer(cli *c)
{
    if (!c->n) return cli_die("infer needs -n N", NULL);
    if (!c->n_obs) fprintf(stderr, "ppxd: note: no --observe given: the posterior is the prior\n");
    engine *e = start_engine(c);
    if (!e) return 1;
    size_t slots = engine_slots(e);
    is_result res;
    int rc = 1;
    if (is_result_init(&res, c->latents, c->n_latents) < 0) goto out_engine;
    if (c->method == METHOD_IS) {
        policy *p = make_policy(c, slots);
        char err[256];
        write_ctx wc = {NULL, &res, 0};
        if (c->out && !(wc.w = trace_writer_open(c->out, 0, 0, c->fsync, err, sizeof err))) {
            cli_die("cannot open output", err);
            policy_destroy(&p);
            goto out_res;
        }
        ordered_job job;
        if (p && ordered_job_init(&job, c->n, 4 * slots + 64, commit_write, &wc) == 0) {
            rc = engine_run(e, p, &ordered_job_ops, &job) == 0 && !job.failed ? 0 : 1;
            print_backups(&job);
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
        rc = run_mcmc(c, e, &res);
    }
    engine_print_stats(e, stderr);
out_res:
    is_result_free(&res);
out_engine:
    cli_running = NULL;
    engine_destroy(&e);
    return rc;
}

