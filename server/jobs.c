/* jobs.c — ordered, importance-sampling and LMH jobs (see jobs.h). */
#include "jobs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- ordered job ------------------------------------------------------------- */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int ordered_job_init(ordered_job *j, uint64_t n, size_t window, commit_fn commit, void *ctx)
{
    memset(j, 0, sizeof *j);
    j->n = n;
    j->window = window ? window : 64;
    j->commit = commit;
    j->ctx = ctx;
    j->ring = calloc(j->window, sizeof *j->ring);
    j->ready = calloc(j->window, 1);
    j->running = calloc(j->window, 1);
    j->backed_up = calloc(j->window, 1);
    j->started = calloc(j->window, sizeof *j->started);
    if (!j->ring || !j->ready || !j->running || !j->backed_up || !j->started) {
        ordered_job_free(j);
        return -1;
    }
    return 0;
}

void ordered_job_free(ordered_job *j)
{
    for (size_t i = 0; j->ring && i < j->window; i++) trace_destroy(&j->ring[i]);
    free(j->ring);
    free(j->ready);
    free(j->running);
    free(j->backed_up);
    free(j->started);
    free(j->retry);
    memset(j, 0, sizeof *j);
}

/* Index still wanted: not committed, not finished. */
static int oj_wanted(const ordered_job *j, uint64_t index)
{
    return index >= j->next_commit && index < j->n && !j->ready[index % j->window];
}

static void oj_start(ordered_job *j, uint64_t index, double now)
{
    size_t k = index % j->window;
    if (j->running[k] == 0) j->started[k] = now;
    if (j->running[k] < UINT8_MAX) j->running[k]++;
}

/* How long the oldest uncommitted trace may run before a backup copy of it
 * is worth an idle session: many times the usual duration, and never under
 * 20 ms, so that ordinary spread does not duplicate work. */
static double oj_straggler_s(const ordered_job *j) { return j->mean_s > 0 ? fmax(0.02, 8.0 * j->mean_s) : 0.5; }

static int oj_next(void *job, size_t slot, uint64_t *index)
{
    (void)slot;
    ordered_job *j = job;
    if (j->failed) return 0;
    double now = mono_s();
    while (j->n_retry) {
        /* Lowest retry first: it is what the commit order waits for. */
        size_t best = 0;
        for (size_t i = 1; i < j->n_retry; i++)
            if (j->retry[i] < j->retry[best]) best = i;
        uint64_t idx = j->retry[best];
        j->retry[best] = j->retry[--j->n_retry];
        if (!oj_wanted(j, idx) || j->running[idx % j->window]) continue; /* a copy finished or runs */
        oj_start(j, idx, now);
        *index = idx;
        return 1;
    }
    if (j->next_new < j->n && j->next_new < j->next_commit + j->window) {
        *index = j->next_new++;
        size_t k = *index % j->window;
        j->running[k] = 0;
        j->backed_up[k] = 0;
        oj_start(j, *index, now);
        return 1;
    }
    /* Nothing new: back up the oldest straggler, if there is one. */
    for (uint64_t idx = j->next_commit; !j->no_backups && idx < j->next_new; idx++) {
        size_t k = idx % j->window;
        if (!oj_wanted(j, idx) || j->backed_up[k] || j->running[k] != 1) continue;
        if (now - j->started[k] < oj_straggler_s(j)) break; /* later ones started later still */
        j->backed_up[k] = 1;
        j->backups++;
        oj_start(j, idx, now);
        *index = idx;
        return 1;
    }
    return 0;
}

static int oj_complete(void *job, size_t slot, uint64_t index, trace *t)
{
    (void)slot;
    ordered_job *j = job;
    if (j->failed || !oj_wanted(j, index)) return 1; /* a duplicate: the other copy counted */
    size_t k = index % j->window;
    if (!j->ring[k] && !(j->ring[k] = trace_new())) {
        j->failed = 1;
        return -1;
    }
    double dur = mono_s() - j->started[k];
    if (!j->backed_up[k]) j->mean_s = j->mean_s > 0 ? 0.95 * j->mean_s + 0.05 * dur : dur;
    trace_swap(j->ring[k], t); /* take it without a copy; the engine resets what it gets back */
    j->ready[k] = 1;
    if (j->running[k]) j->running[k]--;
    while (j->next_commit < j->n && j->ready[j->next_commit % j->window]) {
        size_t c = j->next_commit % j->window;
        if (j->commit && j->commit(j->ctx, j->next_commit, j->ring[c]) < 0) {
            j->failed = 1;
            return 0;
        }
        j->ready[c] = 0;
        trace_reset(j->ring[c]);
        j->next_commit++;
    }
    return 0;
}

static void oj_discard(void *job, size_t slot, uint64_t index, discard_reason why)
{
    (void)slot;
    (void)why;
    ordered_job *j = job;
    if (!oj_wanted(j, index)) return; /* the other copy already finished it */
    size_t k = index % j->window;
    if (j->running[k]) j->running[k]--;
    if (j->running[k]) return; /* the other copy may still finish it */
    if (j->n_retry == j->cap_retry) {
        size_t cap = j->cap_retry ? 2 * j->cap_retry : 16;
        uint64_t *p = realloc(j->retry, cap * sizeof *p);
        if (!p) {
            j->failed = 1;
            return;
        }
        j->retry = p;
        j->cap_retry = cap;
    }
    j->retry[j->n_retry++] = index;
}

static int oj_done(void *job)
{
    ordered_job *j = job;
    return j->failed || j->next_commit >= j->n;
}

const job_ops ordered_job_ops = {oj_next, oj_complete, oj_discard, oj_done, NULL};

/* --- importance-sampling results ----------------------------------------------- */

int is_result_init(is_result *r, const char *const *specs, size_t n_specs)
{
    memset(r, 0, sizeof *r);
    if (n_specs) {
        if (!(r->specs = calloc(n_specs, sizeof *r->specs))) return -1;
        for (size_t i = 0; i < n_specs; i++)
            if (!(r->specs[i] = strdup(specs[i]))) return -1;
        r->n_specs = n_specs;
    }
    return 0;
}

void is_result_free(is_result *r)
{
    for (size_t i = 0; i < r->n_specs; i++) free(r->specs[i]);
    free(r->specs);
    select_keys_free(&r->keys, r->n_keys);
    free(r->widths);
    free(r->lw);
    free(r->vals);
    memset(r, 0, sizeof *r);
}

/* Fix the columns from the first trace. */
static int is_result_columns(is_result *r, const trace *t)
{
    select_scratch sc;
    char err[300];
    int rc = r->n_specs ? select_expand((const char *const *)r->specs, r->n_specs, t, &r->keys, &r->n_keys, err,
                                        sizeof err)
                        : select_default(t, IS_RESULT_MAX_DEFAULT_ADDRESSES, &r->keys, &r->n_keys, &r->n_more);
    if (rc < 0) {
        fprintf(stderr, "ppxd: first trace: %s\n", r->n_specs ? err : "out of memory");
        return -1;
    }
    if (!(r->widths = calloc(r->n_keys ? r->n_keys : 1, sizeof *r->widths))) return -1;
    r->n_cols = 0;
    for (size_t k = 0; k < r->n_keys; k++) {
        const trace_array *v = select_value(t, &r->keys[k], &sc);
        r->widths[k] = v ? v->len : 1;
        r->n_cols += r->widths[k];
    }
    r->have_cols = 1;
    return 0;
}

int is_result_adopt_columns(is_result *dst, const is_result *src)
{
    if (!src->have_cols || dst->have_cols) return dst->have_cols ? 0 : -1;
    dst->keys = calloc(src->n_keys ? src->n_keys : 1, sizeof *dst->keys);
    dst->widths = calloc(src->n_keys ? src->n_keys : 1, sizeof *dst->widths);
    if (!dst->keys || !dst->widths) return -1;
    for (size_t k = 0; k < src->n_keys; k++) {
        dst->keys[k].kind = src->keys[k].kind;
        if (!(dst->keys[k].key = strdup(src->keys[k].key))) return -1;
        dst->n_keys = k + 1;
    }
    memcpy(dst->widths, src->widths, src->n_keys * sizeof *src->widths);
    dst->n_cols = src->n_cols;
    dst->n_more = src->n_more;
    dst->have_cols = 1;
    return 0;
}

int is_result_commit(void *ctx, uint64_t index, const trace *t)
{
    select_scratch sc;
    is_result *r = ctx;
    (void)index;
    if (!r->have_cols && is_result_columns(r, t) < 0) return -1;
    if (r->n == r->cap) {
        uint64_t cap = r->cap ? 2 * r->cap : 1024;
        double *lw = realloc(r->lw, cap * sizeof *lw);
        if (lw) r->lw = lw;
        double *v = realloc(r->vals, cap * (r->n_cols ? r->n_cols : 1) * sizeof *v);
        if (v) r->vals = v;
        if (!lw || !v) return -1;
        r->cap = cap;
    }
    r->lw[r->n] = t->log_weight;
    double *row = r->vals + r->n * r->n_cols;
    size_t c = 0;
    for (size_t k = 0; k < r->n_keys; k++) {
        const trace_array *v = select_value(t, &r->keys[k], &sc);
        for (size_t i = 0; i < r->widths[k]; i++) row[c + i] = v && v->len == r->widths[k] ? v->data[i] : NAN;
        c += r->widths[k];
    }
    r->n++;
    return 0;
}

void is_result_col_name(const is_result *r, size_t j, char *buf, size_t len)
{
    for (size_t k = 0; k < r->n_keys; k++) {
        if (j < r->widths[k]) {
            if (r->widths[k] == 1)
                snprintf(buf, len, "%s", r->keys[k].key);
            else
                snprintf(buf, len, "%s[%zu]", r->keys[k].key, j);
            return;
        }
        j -= r->widths[k];
    }
    snprintf(buf, len, "?");
}

/* --- LMH ---------------------------------------------------------------------- */

static double joint_of(const trace *t) { return t->log_prior + t->log_likelihood; }

/* Every latent Sample is a site LMH may redraw, controlled or not: as in the
 * PPX engines, control=false only keeps a draw out of learned proposals.
 * (A chain that never moved such draws would sample the other latents
 * conditioned on their first values.) */
static int is_site(const trace_entry *e) { return e->kind == TRACE_SAMPLE && !e->observed; }

static size_t count_sites(const trace *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_entries; i++) n += is_site(&t->entries[i]);
    return n;
}

int lmh_job_init(lmh_job *j, size_t n_chains, uint64_t steps, uint64_t burn_in, policy *replay,
                 const char *const *names, size_t n_names, uint64_t seed)
{
    memset(j, 0, sizeof *j);
    j->n_chains = n_chains;
    j->steps = steps;
    j->burn_in = burn_in;
    j->replay = replay;
    j->seed = seed;
    j->chains = calloc(n_chains, sizeof *j->chains);
    j->per_chain = calloc(n_chains, sizeof *j->per_chain);
    if (!j->chains || !j->per_chain) return -1;
    for (size_t c = 0; c < n_chains; c++) {
        if (!(j->chains[c].cur = trace_new())) return -1;
        rng_seed(&j->chains[c].r, seed ^ 0x6c6d68ull, c);
        if (is_result_init(&j->per_chain[c], names, n_names) < 0) return -1;
    }
    return 0;
}

void lmh_job_free(lmh_job *j)
{
    for (size_t c = 0; j->chains && c < j->n_chains; c++) {
        trace_destroy(&j->chains[c].cur);
        free(j->chains[c].site);
        if (j->per_chain) is_result_free(&j->per_chain[c]);
    }
    free(j->chains);
    free(j->per_chain);
    memset(j, 0, sizeof *j);
}

static int lmh_next(void *job, size_t slot, uint64_t *index)
{
    lmh_job *j = job;
    if (j->failed) return 0;
    for (size_t c = 0; c < j->n_chains; c++) {
        lmh_chain *ch = &j->chains[c];
        if (ch->running || ch->iter >= j->steps) continue;
        if (!ch->site && ch->has_cur) {
            /* Choose the site to redraw, uniformly among the current trace's. */
            size_t n = count_sites(ch->cur);
            if (n) {
                size_t pick = (size_t)rng_below(&ch->r, n), k = 0;
                for (size_t i = 0; i < ch->cur->n_entries; i++) {
                    if (!is_site(&ch->cur->entries[i])) continue;
                    if (k++ == pick) {
                        ch->site = strdup(ch->cur->entries[i].address);
                        break;
                    }
                }
            }
        }
        ch->running = 1;
        ch->slot = slot;
        policy_replay_set(j->replay, slot, ch->has_cur ? ch->cur : NULL);
        policy_replay_set_resample(j->replay, slot, ch->site);
        policy_replay_set_kernel(j->replay, slot, j->rmh);
        /* A distinct RNG stream per (chain, step): retries repeat the step exactly. */
        *index = ((uint64_t)c << 40) | ch->iter;
        return 1;
    }
    return 0;
}

static lmh_chain *chain_of(lmh_job *j, uint64_t index) { return &j->chains[index >> 40]; }

/* log acceptance of moving from `old` to `new` having redrawn `site`: from
 * its prior (LMH: its density is a fresh term), or, when `moved`, by a
 * random-walk kernel with proposal term kernel_lr (RMH: the site is neither
 * fresh nor stale; its prior is in the joints). */
static double lmh_log_accept(const trace *old, const trace *nw, const char *site, int moved, double kernel_lr)
{
    double fresh = 0, stale = 0;
    for (size_t i = 0; i < nw->n_entries; i++) {
        const trace_entry *e = &nw->entries[i];
        if (!is_site(e)) continue;
        const trace_entry *o = trace_find_address(old, e->address);
        int is_the_site = site && strcmp(site, e->address) == 0;
        if (!o || (is_the_site && !moved) || o->dist != e->dist) fresh += e->log_prob;
    }
    for (size_t i = 0; i < old->n_entries; i++) {
        const trace_entry *e = &old->entries[i];
        if (!is_site(e)) continue;
        const trace_entry *o = trace_find_address(nw, e->address);
        int is_the_site = site && strcmp(site, e->address) == 0;
        if (!o || (is_the_site && !moved) || o->dist != e->dist) stale += e->log_prob;
    }
    double n_old = (double)count_sites(old), n_new = (double)count_sites(nw);
    if (n_new == 0) n_new = 1;
    if (n_old == 0) n_old = 1;
    return joint_of(nw) - joint_of(old) + log(n_old) - log(n_new) + stale - fresh + (moved ? kernel_lr : 0.0);
}

static int lmh_complete(void *job, size_t slot, uint64_t index, trace *t)
{
    (void)slot;
    lmh_job *j = job;
    lmh_chain *ch = chain_of(j, index);
    if (!ch->running || (index & ((1ull << 40) - 1)) != ch->iter) return 0;
    ch->running = 0;
    double jn = joint_of(t);
    int accept;
    if (!ch->has_cur) {
        accept = isfinite(jn); /* initialise from the prior; retry until it has positive density */
        if (!accept) return 0;
    } else {
        double klr = 0;
        int moved = j->rmh && policy_replay_kernel_move(j->replay, ch->slot, &klr);
        double la = isfinite(jn) ? lmh_log_accept(ch->cur, t, ch->site, moved, klr) : -INFINITY;
        accept = la >= 0 || log(rng_uniform_pos(&ch->r)) < la;
    }
    if (accept) {
        if (trace_copy(ch->cur, t) < 0) {
            j->failed = 1;
            return -1;
        }
        ch->cur_joint = jn;
        if (ch->has_cur) ch->accepted++;
        ch->has_cur = 1;
    }
    free(ch->site);
    ch->site = NULL;
    ch->iter++;
    if (ch->iter > j->burn_in) {
        size_t c = (size_t)(ch - j->chains);
        double saved = ch->cur->log_weight;
        ch->cur->log_weight = 0; /* MCMC samples are equally weighted */
        /* All chains report the same columns: the first chain's, fixed by
         * its first sample (a branching model's chains may start apart). */
        is_result *pc = &j->per_chain[c];
        for (size_t o = 0; !pc->have_cols && o < j->n_chains; o++)
            if (j->per_chain[o].have_cols && is_result_adopt_columns(pc, &j->per_chain[o]) < 0) j->failed = 1;
        int rc = is_result_commit(pc, ch->iter, ch->cur);
        if (rc == 0 && j->on_sample) rc = j->on_sample(j->on_sample_ctx, c, ch->cur);
        ch->cur->log_weight = saved;
        if (rc < 0) j->failed = 1;
    }
    return 0;
}

static void lmh_discard(void *job, size_t slot, uint64_t index, discard_reason why)
{
    (void)slot;
    (void)why;
    lmh_job *j = job;
    lmh_chain *ch = chain_of(j, index);
    ch->running = 0; /* the same step (same site, same RNG stream) runs again */
}

static int lmh_done(void *job)
{
    lmh_job *j = job;
    if (j->failed) return 1;
    for (size_t c = 0; c < j->n_chains; c++)
        if (j->chains[c].iter < j->steps) return 0;
    return 1;
}

const job_ops lmh_job_ops = {lmh_next, lmh_complete, lmh_discard, lmh_done, NULL};

int lmh_job_collect(lmh_job *j, is_result *out)
{
    for (size_t c = 0; c < j->n_chains; c++) {
        is_result *pc = &j->per_chain[c];
        if (!pc->have_cols) continue; /* a chain with no step past burn-in */
        if (!out->have_cols && is_result_adopt_columns(out, pc) < 0) return -1;
        if (pc->n_cols != out->n_cols) return -1;
        uint64_t need = out->n + pc->n;
        if (need > out->cap) {
            double *lw = realloc(out->lw, need * sizeof *lw);
            if (lw) out->lw = lw;
            double *v = realloc(out->vals, need * (out->n_cols ? out->n_cols : 1) * sizeof *v);
            if (v) out->vals = v;
            if (!lw || !v) return -1;
            out->cap = need;
        }
        memcpy(out->lw + out->n, pc->lw, pc->n * sizeof *pc->lw);
        memcpy(out->vals + out->n * out->n_cols, pc->vals, pc->n * pc->n_cols * sizeof *pc->vals);
        out->n = need;
    }
    return 0;
}
