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
#include "policy_ic.h"
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
    policy *p = c->method == METHOD_IC ? policy_ic_open(c->model, slots, c->seed, c->obs, c->n_obs)
                                       : policy_prior_new(slots, c->seed);
    c->ic_policy = c->method == METHOD_IC ? p : NULL;
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

static void print_summary(FILE *f, const is_result *r, const double *w, const char *title)
{
    size_t *scratch = malloc(2 * (r->n ? r->n : 1) * sizeof *scratch);
    if (!scratch) return;
    fprintf(f, "%s\n", title);
    if (r->n_cols == 0)
        fprintf(f, "(nothing to summarise: the traces have no named latent and no return value; name addresses with "
               "--latent, ppxd info FILE lists them)\n");
    /* Addresses are long: the first column is as wide as its longest label. */
    int width = 16;
    char name[256];
    for (size_t j = 0; j < r->n_cols; j++) {
        is_result_col_name(r, j, name, sizeof name);
        if ((int)strlen(name) > width) width = (int)strlen(name);
    }
    fprintf(f, "%-*s %12s %12s %12s %12s %12s\n", width, "latent", "mean", "sd", "q05", "q50", "q95");
    for (size_t j = 0; j < r->n_cols; j++) {
        double mean, sd;
        is_result_col_name(r, j, name, sizeof name);
        stats_weighted_moments(r->vals + j, r->n_cols, w, r->n, &mean, &sd);
        fprintf(f, "%-*s %12.6g %12.6g %12.6g %12.6g %12.6g\n", width, name, mean, sd,
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.05, scratch),
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.50, scratch),
               stats_weighted_quantile(r->vals + j, r->n_cols, w, r->n, 0.95, scratch));
    }
    if (r->n_more)
        fprintf(f, "(%zu more controlled addresses not shown: choose columns with --latent ADDRESS or PATTERN; ppxd info "
               "FILE lists the addresses)\n",
               r->n_more);
    fflush(f);
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

/* --- simulate and infer as jobs of an engine (the CLI's and ppxd daemon's) ---------- */

struct cli_run {
    cli *c;
    int simulate, mcmc;
    size_t slots, chains;
    uint64_t per_chain, burn;
    policy *p;
    write_ctx wc;
    is_result res;
    int have_res;
    ordered_job oj;
    int have_oj;
    lmh_job lj;
    int have_lj;
    chain_files cf;
};

cli_run *cli_run_new(cli *c, size_t slots, size_t chains)
{
    int simulate = strcmp(c->cmd, "simulate") == 0;
    if (!c->n) {
        cli_die(simulate ? "simulate needs -n N" : "infer needs -n N", NULL);
        return NULL;
    }
    if (simulate && !c->out) {
        cli_die("simulate needs -o FILE.ppxt", NULL);
        return NULL;
    }
    cli_run *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->c = c;
    r->simulate = simulate;
    r->mcmc = !simulate && (c->method == METHOD_LMH || c->method == METHOD_RMH);
    r->slots = slots;
    r->chains = chains ? chains : slots;
    char err[256];
    if (!simulate) {
        if (!c->n_obs) fprintf(stderr, "ppxd: note: no --observe given: the posterior is the prior\n");
        if (is_result_init(&r->res, c->latents, c->n_latents) < 0) goto fail;
        r->have_res = 1;
    }
    if (r->mcmc) {
        r->per_chain = (c->n + r->chains - 1) / r->chains;
        r->burn = c->burn_in >= 0 ? (uint64_t)c->burn_in : r->per_chain / 10;
        r->p = policy_replay_new(make_policy(c, slots), slots);
        if (!r->p || lmh_job_init(&r->lj, r->chains, r->per_chain + r->burn, r->burn, r->p,
                                  (const char *const *)c->latents, c->n_latents, c->seed) < 0)
            goto fail;
        r->have_lj = 1;
        r->lj.rmh = c->method == METHOD_RMH;
        if (c->out) {
            if (chain_files_open(&r->cf, c, r->chains) < 0) goto fail;
            r->lj.on_sample = chain_file_sample;
            r->lj.on_sample_ctx = &r->cf;
        }
        return r;
    }
    if (c->out && !(r->wc.w = trace_writer_open(c->out, 0, 0, c->fsync, err, sizeof err))) {
        cli_die("cannot open output", err);
        goto fail;
    }
    r->wc.is = simulate ? NULL : &r->res;
    if (!(r->p = make_policy(c, slots))) goto fail;
    if (ordered_job_init(&r->oj, c->n, 4 * slots + 64, commit_write, &r->wc) < 0) goto fail;
    r->have_oj = 1;
    return r;
fail:
    cli_run_destroy(&r);
    return NULL;
}

policy *cli_run_policy(const cli_run *r) { return r->p; }

const job_ops *cli_run_ops(cli_run *r, void **job)
{
    if (r->mcmc) {
        *job = &r->lj;
        return &lmh_job_ops;
    }
    *job = &r->oj;
    return &ordered_job_ops;
}

void cli_run_progress(const cli_run *r, uint64_t *done, uint64_t *total)
{
    if (r->mcmc) {
        uint64_t d = 0;
        for (size_t k = 0; k < r->lj.n_chains; k++) d += r->lj.chains[k].iter;
        *done = d;
        *total = (uint64_t)r->lj.n_chains * r->lj.steps;
    } else {
        *done = r->oj.next_commit;
        *total = r->oj.n;
    }
}

int cli_run_failed(const cli_run *r) { return r->mcmc ? r->lj.failed : r->oj.failed; }

/* MCMC results: the chains' file, the summary, the samples. */
static int finish_mcmc(cli_run *r, FILE *summary, char *msg, size_t msg_len)
{
    cli *c = r->c;
    lmh_job *job = &r->lj;
    if (lmh_job_collect(job, &r->res) < 0) return -1;
    if (c->out && chain_files_join(&r->cf, c) < 0) return -1;
    uint64_t acc = 0, steps = 0;
    for (size_t k = 0; k < job->n_chains; k++) {
        acc += job->chains[k].accepted;
        steps += job->chains[k].iter;
    }
    double *w = malloc((r->res.n ? r->res.n : 1) * sizeof *w);
    if (!w) return -1;
    for (uint64_t i = 0; i < r->res.n; i++) w[i] = 1.0 / (double)r->res.n;
    char title[200];
    snprintf(title, sizeof title, "%s Metropolis-Hastings: %zu chains x %llu samples (burn-in %llu), acceptance %.3f",
             job->rmh ? "random-walk" : "lightweight", r->chains, (unsigned long long)r->per_chain,
             (unsigned long long)r->burn, steps ? (double)acc / (double)steps : 0.0);
    snprintf(msg, msg_len, "%s", title);
    print_summary(summary, &r->res, w, title);
    int rc = write_samples(c, &r->res, w, 0);
    free(w);
    return rc;
}

int cli_run_finish(cli_run *r, int ok, FILE *summary, char *msg, size_t msg_len)
{
    cli *c = r->c;
    int rc = ok && !cli_run_failed(r) ? 0 : -1;
    msg[0] = 0;
    if (r->mcmc) {
        if (rc == 0) rc = finish_mcmc(r, summary, msg, msg_len);
        return rc;
    }
    print_backups(&r->oj);
    if (r->wc.w && trace_writer_close(&r->wc.w) < 0) rc = -1;
    if (r->simulate) {
        snprintf(msg, msg_len, "%llu traces", (unsigned long long)r->oj.next_commit);
        return rc;
    }
    if (c->ic_policy) policy_ic_report(c->ic_policy, stderr);
    if (rc < 0) return rc;
    double *w = malloc((r->res.n ? r->res.n : 1) * sizeof *w);
    if (!w) return -1;
    stats_normalise(r->res.lw, r->res.n, w);
    double logz = stats_logsumexp(r->res.lw, r->res.n) - log((double)r->res.n);
    char title[200];
    snprintf(title, sizeof title, "importance sampling (%s proposal): %llu traces, ESS %.1f, log evidence %.6g",
             c->method == METHOD_IC ? "IC" : "prior", (unsigned long long)r->res.n, stats_ess(w, r->res.n), logz);
    snprintf(msg, msg_len, "%s", title);
    print_summary(summary, &r->res, w, title);
    if (write_samples(c, &r->res, w, 1) < 0) rc = -1;
    free(w);
    return rc;
}

void cli_run_destroy(cli_run **rp)
{
    if (!rp || !*rp) return;
    cli_run *r = *rp;
    if (r->wc.w) trace_writer_close(&r->wc.w);
    chain_files_free(&r->cf);
    if (r->have_oj) ordered_job_free(&r->oj);
    if (r->have_lj) lmh_job_free(&r->lj);
    policy_destroy(&r->p);
    if (r->have_res) is_result_free(&r->res);
    free(r);
    *rp = NULL;
}

/* One command on its own engine. */
static int run_command(cli *c)
{
    /* Usage errors first, before any simulator starts. */
    if (!c->n) return cli_die(strcmp(c->cmd, "simulate") == 0 ? "simulate needs -n N" : "infer needs -n N", NULL);
    if (strcmp(c->cmd, "simulate") == 0 && !c->out) return cli_die("simulate needs -o FILE.ppxt", NULL);
    if (strcmp(c->cmd, "simulate") == 0) {
        /* The output is opened before the simulators start (a bad path is a usage error). */
        char err[256];
        trace_writer *probe = trace_writer_open(c->out, 0, 0, c->fsync, err, sizeof err);
        if (!probe) return cli_die("cannot open output", err);
        trace_writer_close(&probe);
    }
    engine *e = start_engine(c);
    if (!e) return 1;
    int rc = 1;
    cli_run *r = cli_run_new(c, engine_slots(e), 0);
    if (r) {
        void *job;
        const job_ops *ops = cli_run_ops(r, &job);
        int ran = engine_run(e, cli_run_policy(r), ops, job) == 0;
        char msg[256];
        rc = cli_run_finish(r, ran, stdout, msg, sizeof msg) == 0 ? 0 : 1;
        if (strcmp(c->cmd, "simulate") == 0)
            fprintf(stderr, "ppxd simulate: wrote %llu traces to %s\n",
                    (unsigned long long)engine_get_stats(e)->traces_done, c->out);
    }
    engine_print_stats(e, stderr);
    cli_run_destroy(&r);
    cli_running = NULL;
    engine_destroy(&e);
    return rc;
}

int cmd_simulate(cli *c) { return run_command(c); }
int cmd_infer(cli *c) { return run_command(c); }
