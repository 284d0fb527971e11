/* mine.c — `ppxd mine` (see mine.h): the mining job, its answer policy and
 * the command line; `ppxd info`/`export` of .ppxg files. */
#include "mine.h"

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
#include "export.h"
#include "gold/gold_score.h"
#include "policy.h"
#include "trace.h"

/* ==== the answer policy =====================================================================
 * Originals: theta Samples get the row's values (or the prior's draw), the
 * rest is drawn from the prior.  Replays: the replay policy over a copy of
 * the original whose theta entries hold the replay's theta, so theta is
 * "replayed" with the new values and everything else with the recorded ones. */

typedef struct mine_slot {
    int replay;             /* 1: replaying rec */
    const double *theta;    /* original: [D] values for the theta Samples, NULL = prior */
    trace *rec;             /* replay: the edited copy of the original */
} mine_slot;

typedef struct mine_policy {
    policy base;
    policy *replay;
    const char *const *theta_names;
    size_t D;
    mine_slot *slots;
} mine_policy;

static int theta_index(const mine_policy *m, const char *name)
{
    if (!name || !*name) return -1;
    for (size_t i = 0; i < m->D; i++)
        if (strcmp(m->theta_names[i], name) == 0) return (int)i;
    return -1;
}

static void mp_begin(policy *p, size_t slot, uint64_t idx)
{
    mine_policy *m = (mine_policy *)p;
    policy_base_begin(p, slot, idx);
    if (m->slots[slot].replay) policy_begin(m->replay, slot, idx);
}

static void mp_end(policy *p, size_t slot)
{
    mine_policy *m = (mine_policy *)p;
    if (m->slots[slot].replay) policy_end(m->replay, slot);
}

static void mp_answer(policy *p, policy_request *reqs, size_t n)
{
    mine_policy *m = (mine_policy *)p;
    for (size_t i = 0; i < n; i++) {
        policy_request *r = &reqs[i];
        mine_slot *s = &m->slots[r->slot];
        if (s->replay) {
            policy_answer(m->replay, r, 1);
            continue;
        }
        int k = s->theta ? theta_index(m, r->name) : -1;
        if (k < 0) {
            policy_draw_prior(p, r);
            continue;
        }
        if (r->d->n != 1) {
            r->flag = POLICY_INVALID;
            snprintf(r->reason, sizeof r->reason, "theta '%s' has %zu elements: mining takes scalar theta Samples",
                     r->name, r->d->n);
            continue;
        }
        r->value[0] = s->theta[k];
        r->log_q = dist_log_prob(r->d, r->value); /* an intervention: cancels in the weight */
        r->observed = 0;
        r->replayed = 0;
        r->flag = POLICY_ANSWERED;
    }
}

static const double *mp_observe_value(policy *p, size_t slot, size_t entry_index, const char *base_address, size_t n)
{
    mine_policy *m = (mine_policy *)p;
    const mine_slot *s = &m->slots[slot];
    if (!s->replay || !s->rec || entry_index >= s->rec->n_entries) return NULL;
    const trace_entry *e = &s->rec->entries[entry_index];
    if (e->kind != TRACE_OBSERVE || e->value.len != n || strcmp(e->base_address, base_address) != 0) return NULL;
    return e->value.data;
}

static void mp_destroy(policy *p)
{
    mine_policy *m = (mine_policy *)p;
    for (size_t i = 0; m->slots && i < p->n_slots; i++) trace_destroy(&m->slots[i].rec);
    free(m->slots);
    policy_destroy(&m->replay);
    policy_base_free(p);
    free(m);
}

static const policy_ops mine_policy_ops = {mp_begin, mp_answer, mp_end, mp_destroy};

static mine_policy *mine_policy_new(size_t n_slots, uint64_t seed, const char *const *theta_names, size_t D)
{
    mine_policy *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (policy_base_init(&m->base, &mine_policy_ops, n_slots, seed) < 0) {
        free(m);
        return NULL;
    }
    m->base.observe_value = mp_observe_value;
    m->theta_names = theta_names;
    m->D = D;
    m->slots = calloc(n_slots, sizeof *m->slots);
    /* Divergent replay draws come from a stream family of their own. */
    m->replay = policy_replay_new(policy_prior_new(n_slots, seed ^ 0x7265706c6179ull), n_slots);
    int ok = m->slots && m->replay;
    for (size_t i = 0; ok && i < n_slots; i++) ok = (m->slots[i].rec = trace_new()) != NULL;
    if (!ok) {
        mp_destroy(&m->base);
        return NULL;
    }
    return m;
}

/* ==== the job ================================================================================ */

typedef struct mine_sample {
    uint64_t i;
    int y;
    int started, orig_done, evals_issued, complete;
    int bad;                /* -1, or a gold_bad */
    int score_src;          /* SCORE_FD, SCORE_TANGENT_PENDING or SCORE_TANGENT (below) */
    int fd_queued;          /* the 2 D finite-difference replays are queued */
    trace *orig;
    double jl_orig;         /* joint log-prob of the original (theta entries excluded) */
    double *th0, *th1, *eps, *jl; /* [D], [K*D], [D], [n_evals] */
    double *t_an;           /* [D] the score from tangents (SCORE_TANGENT) */
    uint8_t *done;          /* [T] per task */
    uint8_t *retries;       /* [T] */
} mine_sample;

typedef struct mine_job {
    const mine_opts *o;
    mine_policy *pol;
    size_t D, K, n_evals, T, W;
    mine_sample *ring;
    uint64_t next_new, next_final;
    uint64_t *queue;        /* ready tasks */
    size_t q_head, q_len, q_cap;
    double *pair_th0;       /* prior mode: [pairs, D] theta0 of each pair (NaN until known) */
    int8_t *pair_bad;       /* prior mode: -1 unknown/ok, else the y = 0 row's reason */
    char **x_names;         /* expanded on the first completed original */
    size_t n_xn, C;
    size_t *x_width;
    uint8_t x_known;
    double *row_x, *row_logr, *row_t;
    gold_data *out;
    int out_init;
    double *theta_tmp;      /* [D] scratch */
    uint64_t runs;
    int failed;
    int warned_tangent;     /* the first no-tangent drop was explained */
    double t_last;
} mine_job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int queue_push(mine_job *j, uint64_t idx)
{
    if (j->q_head + j->q_len == j->q_cap) {
        if (j->q_head > 0) {
            memmove(j->queue, j->queue + j->q_head, j->q_len * sizeof *j->queue);
            j->q_head = 0;
        } else {
            size_t cap = j->q_cap ? 2 * j->q_cap : 256;
            uint64_t *q = realloc(j->queue, cap * sizeof *q);
            if (!q) return -1;
            j->queue = q;
            j->q_cap = cap;
        }
    }
    j->queue[j->q_head + j->q_len++] = idx;
    return 0;
}

static int is_theta(const mine_job *j, const trace_entry *e)
{
    return gold_entry_is_theta(e, j->o->theta_names, j->D);
}

static int is_x(const mine_job *j, const char *name)
{
    for (size_t i = 0; name[0] && i < j->n_xn; i++)
        if (strcmp(j->x_names[i], name) == 0) return 1;
    return 0;
}

/* Joint log-prob over the non-theta Sample/Observe entries; a reason when it
 * cannot be used (-1 = fine). */
static int joint_log_prob(const mine_job *j, const trace *t, double *out)
{
    double s = 0;
    for (size_t i = 0; i < t->n_entries; i++) {
        const trace_entry *e = &t->entries[i];
        if (!gold_entry_in_joint(e, j->o->theta_names, j->D)) continue;
        if (isnan(e->log_prob) || e->log_prob == INFINITY) return GOLD_BAD_NONFINITE;
        if (e->log_prob == -INFINITY) return GOLD_BAD_SUPPORT;
        s += e->log_prob;
    }
    *out = s;
    return -1;
}

static int same_array(const trace_array *a, const trace_array *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len * sizeof *a->data) == 0);
}

/* A replay against its original: -1 when it followed the same path. */
static int compare_replay(const mine_job *j, const trace *orig, const trace *rep)
{
    if (orig->n_entries != rep->n_entries) return GOLD_BAD_CONTROL_FLOW;
    for (size_t i = 0; i < orig->n_entries; i++) {
        const trace_entry *a = &orig->entries[i], *b = &rep->entries[i];
        if (a->kind != b->kind || strcmp(a->address, b->address) != 0) return GOLD_BAD_CONTROL_FLOW;
        if (is_theta(j, a)) continue;
        if (a->kind == TRACE_TAG) {
            if (is_x(j, a->name) && !same_array(&a->value, &b->value)) return GOLD_BAD_X_DEPENDS;
            continue;
        }
        /* A recorded value not reused: the replay policy redrew it (a divergence). */
        if (!same_array(&a->value, &b->value))
            return is_x(j, a->name) && a->kind == TRACE_OBSERVE ? GOLD_BAD_X_DEPENDS : GOLD_BAD_CONTROL_FLOW;
    }
    return -1;
}

/* After compare_replay and the log-probs: a support that moved with theta. */
static int support_moved(const mine_job *j, const trace *orig, const trace *rep)
{
    for (size_t i = 0; i < orig->n_entries; i++) {
        const trace_entry *a = &orig->entries[i], *b = &rep->entries[i];
        if (a->kind == TRACE_TAG || is_theta(j, a)) continue;
        if ((a->dist == DIST_UNIFORM && (!same_array(&a->param[0], &b->param[0]) ||
                                          !same_array(&a->param[1], &b->param[1]))) ||
            (a->dist == DIST_BINOMIAL && !same_array(&a->param[0], &b->param[0])))
            return GOLD_BAD_THETA_SUPPORT;
    }
    return -1;
}

/* Where a row's score comes from.  A y = 0 row's trace is at theta0, so its
 * tangents give the score at once; a y = 1 row's trace is at theta1, and the
 * score at theta0 comes from its ratio replay (task 1, at theta0), so it is
 * pending until that replay is in. */
enum { SCORE_FD = 0, SCORE_TANGENT_PENDING, SCORE_TANGENT };

static mine_sample *sample_of(mine_job *j, uint64_t i) { return &j->ring[i % j->W]; }

static void mark_bad(mine_sample *s, int why)
{
    if (s->bad < 0) s->bad = why;
}

/* The theta of eval e of sample s into th. */
static void eval_theta(const mine_job *j, const mine_sample *s, size_t e, double *th)
{
    const size_t D = j->D;
    if (e < j->K) {
        memcpy(th, s->y ? s->th0 : s->th1 + e * D, D * sizeof *th);
        return;
    }
    size_t q = e - j->K, k = q / 2;
    memcpy(th, s->th0, D * sizeof *th);
    th[k] += (q % 2 ? -1.0 : 1.0) * s->eps[k];
}

static void check_complete(mine_job *j, mine_sample *s)
{
    if (s->complete || !s->orig_done) return;
    size_t done = 0;
    for (size_t t = 1; t < j->T; t++) done += s->done[t];
    if (s->bad >= 0 || done == j->n_evals) s->complete = 1;
}

/* The 2 D finite-difference replays of s (tasks K+1 .. T-1). */
static void queue_fd(mine_job *j, mine_sample *s)
{
    if (s->fd_queued || !j->o->score) return;
    s->fd_queued = 1;
    for (size_t t = 1 + j->K; t < j->T; t++)
        if (queue_push(j, s->i * j->T + t) < 0) j->failed = 1;
}

/* The score of s from the tangents of trace t (at theta0).  In auto mode a
 * trace without them falls back to finite differences. */
static void tangent_score(mine_job *j, mine_sample *s, const trace *t)
{
    gold_bad why;
    char msg[200];
    if (gold_tangent_score(t, j->o->theta_names, j->D, s->t_an, &why, msg, sizeof msg) == 0) {
        s->score_src = SCORE_TANGENT;
        for (size_t q = 1 + j->K; q < j->T; q++) s->done[q] = 1; /* no FD replays needed */
        return;
    }
    if (why == GOLD_BAD_NO_TANGENT && j->o->score_method == MINE_SCORE_AUTO) {
        s->score_src = SCORE_FD;
        if (s->evals_issued) queue_fd(j, s);
        return;
    }
    if (!j->warned_tangent && j->o->score_method == MINE_SCORE_ANALYTIC && !j->o->quiet) {
        j->warned_tangent = 1;
        fprintf(stderr, "ppxd: row %llu dropped: %s (--score analytic; further such rows are only counted)\n",
                (unsigned long long)s->i, msg);
    }
    mark_bad(s, why);
}

/* Once the original is in: where the score will come from. */
static void choose_score(mine_job *j, mine_sample *s)
{
    s->score_src = SCORE_FD;
    if (!j->o->score || j->o->score_method == MINE_SCORE_FD || s->bad >= 0) return;
    if (s->y == 0) {
        tangent_score(j, s, s->orig);
    } else if (j->o->score_method == MINE_SCORE_ANALYTIC ||
               gold_trace_has_tangents(s->orig, j->o->theta_names, j->D)) {
        s->score_src = SCORE_TANGENT_PENDING;
    }
}

/* Issue the replays of s once its original is in and theta0 is known. */
static void issue_evals(mine_job *j, mine_sample *s)
{
    if (s->evals_issued || !s->orig_done || s->bad >= 0) return;
    const mine_opts *o = j->o;
    if (o->mode == MINE_THETA_PRIOR && s->y == 1) {
        uint64_t p = s->i / 2;
        if (j->pair_bad[p] >= 0) {
            mark_bad(s, j->pair_bad[p]);
            check_complete(j, s);
            return;
        }
        if (isnan(j->pair_th0[p * j->D])) return; /* the pair's y = 0 original is not in yet */
        memcpy(s->th0, j->pair_th0 + p * j->D, j->D * sizeof *s->th0);
    }
    s->evals_issued = 1;
    for (size_t t = 1; t <= j->K; t++)
        if (queue_push(j, s->i * j->T + t) < 0) j->failed = 1;
    if (s->score_src == SCORE_FD) queue_fd(j, s);
    check_complete(j, s);
}

/* Add one x name found in t.  0, or -1 (missing: reported; or out of memory). */
static int add_x(mine_job *j, const trace *t, const char *name)
{
    for (size_t q = 0; q < j->n_xn; q++)
        if (strcmp(j->x_names[q], name) == 0) return 0;
    const trace_entry *e = trace_find_name(t, name);
    if (!e) {
        fprintf(stderr, "ppxd: the first trace has no entry named '%s' (given with --x)\n", name);
        return -1;
    }
    char **nv = realloc(j->x_names, (j->n_xn + 1) * sizeof *nv);
    if (!nv) return -1;
    j->x_names = nv;
    size_t *nw = realloc(j->x_width, (j->n_xn + 1) * sizeof *nw);
    if (!nw) return -1;
    j->x_width = nw;
    if (!(j->x_names[j->n_xn] = strdup(name))) return -1;
    j->x_width[j->n_xn++] = e->value.len;
    j->C += e->value.len;
    return 0;
}

/* Expand the x names/patterns on the first completed original. */
static int expand_x(mine_job *j, const trace *t)
{
    const mine_opts *o = j->o;
    for (size_t i = 0; i < o->n_x; i++) {
        const char *p = o->x_names[i];
        size_t pl = strlen(p);
        if (!pl || p[pl - 1] != '*') {
            if (add_x(j, t, p) < 0) return -1;
            continue;
        }
        size_t before = j->n_xn;
        for (size_t k = 0; k < t->n_entries; k++) {
            const trace_entry *e = &t->entries[k];
            if (e->name[0] && strncmp(e->name, p, pl - 1) == 0 && !is_theta(j, e) && add_x(j, t, e->name) < 0)
                return -1;
        }
        if (j->n_xn == before) {
            fprintf(stderr, "ppxd: '%s' matches no named entry in the first trace\n", p);
            return -1;
        }
    }
    if (!j->C) {
        fprintf(stderr, "ppxd: x has no values in the first trace\n");
        return -1;
    }
    j->row_x = calloc(j->C, sizeof *j->row_x);
    j->x_known = 1;
    return j->row_x ? 0 : -1;
}

static void list_names(const trace *t)
{
    fprintf(stderr, "ppxd: named entries of the first trace:");
    size_t shown = 0;
    for (size_t k = 0; k < t->n_entries && shown < 40; k++) {
        const trace_entry *e = &t->entries[k];
        if (!e->name[0]) continue;
        fprintf(stderr, " %s(%s)", e->name,
                e->kind == TRACE_SAMPLE ? "Sample" : e->kind == TRACE_OBSERVE ? "Observe" : "Tag");
        shown++;
    }
    fprintf(stderr, shown ? "\n" : " none\n");
}

/* The original of s is in: theta, eps, joint log-prob; then its replays. */
static void orig_in(mine_job *j, mine_sample *s)
{
    const mine_opts *o = j->o;
    const trace *t = s->orig;
    s->orig_done = 1;
    s->done[0] = 1;
    for (size_t k = 0; k < j->D; k++) {
        const trace_entry *e = trace_find_name(t, o->theta_names[k]);
        if (!e || e->kind != TRACE_SAMPLE || e->value.len != 1) {
            if (!j->x_known) {
                fprintf(stderr, "ppxd: %s: theta '%s' must be a scalar named Sample of the simulator\n",
                        e ? "wrong kind" : "no such entry", o->theta_names[k]);
                list_names(t);
                j->failed = 1;
            }
            mark_bad(s, GOLD_BAD_MISSING);
            break;
        }
        if (o->mode == MINE_THETA_PRIOR && s->y == 0) s->th0[k] = e->value.data[0];
        if (o->epsilon > 0) {
            s->eps[k] = o->epsilon;
        } else {
            dist d;
            double var = NAN;
            char why[8];
            if (dist_init(&d, e->dist, e->param[0].data, e->param[0].len, e->param[1].data, e->param[1].len, e->k,
                          why, sizeof why) == 0)
                dist_variance(&d, &var);
            s->eps[k] = 1e-4 * (isfinite(var) && var > 0 ? sqrt(var) : fmax(1.0, fabs(e->value.data[0])));
        }
    }
    if (!j->x_known && !j->failed && s->bad < 0 && expand_x(j, t) < 0) {
        list_names(t);
        j->failed = 1;
    }
    if (s->bad < 0) {
        int why = joint_log_prob(j, t, &s->jl_orig);
        if (why >= 0) mark_bad(s, why);
    }
    choose_score(j, s);
    if (o->mode == MINE_THETA_PRIOR && s->y == 0 && o->theta1_rows) {
        uint64_t p = s->i / 2;
        if (s->bad >= 0) j->pair_bad[p] = (int8_t)s->bad;
        else memcpy(j->pair_th0 + p * j->D, s->th0, j->D * sizeof *s->th0);
        /* The partner row may be waiting for this theta0. */
        if (s->i + 1 < j->next_new) issue_evals(j, sample_of(j, s->i + 1));
    }
    issue_evals(j, s);
    check_complete(j, s);
}

static int x_of(mine_job *j, const trace *t)
{
    size_t c = 0;
    for (size_t i = 0; i < j->n_xn; i++) {
        const trace_entry *e = trace_find_name(t, j->x_names[i]);
        if (!e || e->value.len != j->x_width[i]) return GOLD_BAD_MISSING;
        for (size_t k = 0; k < e->value.len; k++) {
            if (!isfinite(e->value.data[k])) return GOLD_BAD_NONFINITE;
            j->row_x[c++] = e->value.data[k];
        }
    }
    return -1;
}

static int finalize(mine_job *j, mine_sample *s)
{
    const size_t D = j->D, K = j->K;
    int why = s->bad;
    if (why < 0 && j->x_known) why = x_of(j, s->orig);
    if (why < 0) {
        for (size_t k = 0; k < K; k++) {
            j->row_logr[k] = s->y ? s->jl[0] - s->jl_orig : s->jl_orig - s->jl[k];
            if (!isfinite(j->row_logr[k])) why = GOLD_BAD_NONFINITE;
        }
        for (size_t k = 0; j->o->score && k < D; k++) {
            j->row_t[k] = s->score_src == SCORE_TANGENT ? s->t_an[k]
                                                        : (s->jl[K + 2 * k] - s->jl[K + 2 * k + 1]) / (2 * s->eps[k]);
            if (!isfinite(j->row_t[k])) why = GOLD_BAD_NONFINITE;
        }
    }
    if (!j->out_init && j->x_known) {
        if (gold_data_init(j->out, D, j->C, K, j->o->score, j->o->theta_names, (const char *const *)j->x_names) < 0)
            return -1;
        j->out_init = 1;
    }
    if (why >= 0) {
        j->out->bad[why]++;
        return 0;
    }
    if (j->o->score && s->score_src == SCORE_TANGENT) j->out->n_analytic++;
    return gold_data_add(j->out, (double)s->y, s->th0, s->th1, j->row_x, j->row_logr, j->row_t);
}

static void advance(mine_job *j)
{
    while (j->next_final < j->next_new && sample_of(j, j->next_final)->complete) {
        mine_sample *s = sample_of(j, j->next_final);
        if (finalize(j, s) < 0) {
            fprintf(stderr, "ppxd: out of memory\n");
            j->failed = 1;
            return;
        }
        s->started = 0;
        trace_reset(s->orig);
        j->next_final++;
    }
    if (!j->o->quiet && (now_s() - j->t_last > 1.0 || j->next_final == j->o->n)) {
        j->t_last = now_s();
        fprintf(stderr, "\rppxd: mined %llu/%llu rows (%llu runs, %llu dropped)  ", (unsigned long long)j->next_final,
                (unsigned long long)j->o->n, (unsigned long long)j->runs,
                (unsigned long long)(j->out_init ? gold_data_bad_total(j->out) : 0));
        if (j->next_final == j->o->n) fprintf(stderr, "\n");
    }
}

static void start_sample(mine_job *j, uint64_t i)
{
    const mine_opts *o = j->o;
    mine_sample *s = sample_of(j, i);
    const size_t D = j->D;
    s->i = i;
    s->y = o->theta1_rows ? (int)(i % 2) : 0;
    s->started = 1;
    s->orig_done = s->evals_issued = s->complete = 0;
    s->score_src = SCORE_FD;
    s->fd_queued = 0;
    s->bad = -1;
    memset(s->done, 0, j->T);
    memset(s->retries, 0, j->T);
    uint64_t p = o->theta1_rows ? i / 2 : i;
    if (j->K && o->theta1) memcpy(s->th1, o->theta1, j->K * D * sizeof *s->th1); /* PAIRS: set below */
    switch (o->mode) {
    case MINE_THETA_PRIOR:
        for (size_t k = 0; k < D; k++) s->th0[k] = NAN;
        break;
    case MINE_THETA_FIXED: memcpy(s->th0, o->theta0, D * sizeof *s->th0); break;
    case MINE_THETA_GRID: {
        uint64_t g = p;
        for (size_t k = D; k-- > 0;) {
            size_t n = o->grid_n[k], at = (size_t)(g % n);
            g /= n;
            s->th0[k] = n == 1 ? o->grid_lo[k] : o->grid_lo[k] + (o->grid_hi[k] - o->grid_lo[k]) * at / (n - 1);
        }
        break;
    }
    case MINE_THETA_PAIRS: {
        const double *row = o->pairs + (p % o->n_pairs) * 2 * D;
        memcpy(s->th0, row, D * sizeof *s->th0);
        memcpy(s->th1, row + D, D * sizeof *s->th1);
        break;
    }
    }
}

static int mj_next(void *job, size_t slot, uint64_t *index)
{
    mine_job *j = job;
    if (j->failed) return 0;
    mine_slot *ms = &j->pol->slots[slot];
    while (j->q_len) {
        uint64_t idx = j->queue[j->q_head++];
        j->q_len--;
        mine_sample *s = sample_of(j, idx / j->T);
        size_t t = (size_t)(idx % j->T);
        if (!s->started || s->i != idx / j->T || s->done[t] || s->complete) continue;
        if (t == 0) {
            ms->replay = 0;
            ms->theta = s->y ? s->th1 : (j->o->mode == MINE_THETA_PRIOR ? NULL : s->th0);
        } else {
            eval_theta(j, s, t - 1, j->theta_tmp);
            if (trace_copy(ms->rec, s->orig) < 0) {
                fprintf(stderr, "ppxd: out of memory\n");
                j->failed = 1;
                return 0;
            }
            for (size_t i = 0; i < ms->rec->n_entries; i++) {
                trace_entry *e = &ms->rec->entries[i];
                int k = e->kind == TRACE_SAMPLE ? theta_index(j->pol, e->name) : -1;
                if (k >= 0 && e->value.len == 1) e->value.data[0] = j->theta_tmp[k];
            }
            ms->replay = 1;
            policy_replay_set(j->pol->replay, slot, ms->rec);
        }
        *index = idx;
        return 1;
    }
    if (j->next_new < j->o->n && j->next_new < j->next_final + j->W) {
        uint64_t i = j->next_new++;
        start_sample(j, i);
        if (queue_push(j, i * j->T) < 0) {
            j->failed = 1;
            return 0;
        }
        return mj_next(job, slot, index);
    }
    return 0;
}

static int mj_complete(void *job, size_t slot, uint64_t index, trace *t)
{
    (void)slot;
    mine_job *j = job;
    uint64_t i = index / j->T;
    size_t task = (size_t)(index % j->T);
    if (i < j->next_final || i >= j->next_new) return 0;
    mine_sample *s = sample_of(j, i);
    if (!s->started || s->done[task] || s->complete) return 0; /* late duplicate */
    j->runs++;
    if (task == 0) {
        trace_swap(s->orig, t);
        orig_in(j, s);
    } else {
        s->done[task] = 1;
        if (s->bad < 0) {
            int why = compare_replay(j, s->orig, t);
            if (why < 0) why = joint_log_prob(j, t, &s->jl[task - 1]);
            if (why < 0) why = support_moved(j, s->orig, t);
            if (why >= 0) mark_bad(s, why);
        }
        /* A y = 1 row's score at theta0: from this replay's tangents. */
        if (task == 1 && s->bad < 0 && s->score_src == SCORE_TANGENT_PENDING) tangent_score(j, s, t);
        check_complete(j, s);
    }
    advance(j);
    return 0;
}

static void mj_discard(void *job, size_t slot, uint64_t index, discard_reason why)
{
    (void)slot;
    mine_job *j = job;
    uint64_t i = index / j->T;
    size_t task = (size_t)(index % j->T);
    if (i < j->next_final || i >= j->next_new) return;
    mine_sample *s = sample_of(j, i);
    if (!s->started || s->done[task] || s->complete) return;
    int max = j->o->max_retries > 0 ? j->o->max_retries : 5;
    if (why == DISCARD_INVALID_PARAMS || why == DISCARD_POLICY || ++s->retries[task] > max) {
        /* Deterministic for this task (the same theta, the same recorded values): do not retry. */
        mark_bad(s, why == DISCARD_INVALID_PARAMS ? GOLD_BAD_PARAMS : why == DISCARD_POLICY ? GOLD_BAD_MISSING
                                                                                           : GOLD_BAD_FAILED);
        if (task == 0) {
            s->orig_done = 1;
            s->done[0] = 1;
            if (j->o->mode == MINE_THETA_PRIOR && s->y == 0 && j->o->theta1_rows) {
                j->pair_bad[i / 2] = (int8_t)s->bad;
                if (i + 1 < j->next_new) issue_evals(j, sample_of(j, i + 1));
            }
        } else {
            s->done[task] = 1;
        }
        check_complete(j, s);
        advance(j);
        return;
    }
    if (queue_push(j, index) < 0) j->failed = 1;
}

static int mj_done(void *job)
{
    mine_job *j = job;
    return j->failed || j->next_final >= j->o->n;
}

static const job_ops mine_job_ops = {mj_next, mj_complete, mj_discard, mj_done, NULL};

static void job_free(mine_job *j)
{
    for (size_t w = 0; j->ring && w < j->W; w++) {
        mine_sample *s = &j->ring[w];
        trace_destroy(&s->orig);
        free(s->th0);
        free(s->th1);
        free(s->eps);
        free(s->t_an);
        free(s->jl);
        free(s->done);
        free(s->retries);
    }
    free(j->ring);
    free(j->queue);
    free(j->pair_th0);
    free(j->pair_bad);
    for (size_t i = 0; i < j->n_xn; i++) free(j->x_names[i]);
    free(j->x_names);
    free(j->x_width);
    free(j->row_x);
    free(j->row_logr);
    free(j->row_t);
    free(j->theta_tmp);
}

/* ---- the mining task: the job on any engine (mine_run's own, or ppxd daemon's pool) ---- */

struct mine_task {
    mine_job j;
    mine_opts o2;           /* the options, K fixed for --pairs (j.o points here) */
    gold_data out;
};

static int mine_check(const mine_opts *o, size_t K)
{
    if (!o->D || !o->n || !o->n_x) {
        fprintf(stderr, "ppxd: mining needs theta names, x names and n > 0\n");
        return -1;
    }
    if (!K && !o->score) {
        fprintf(stderr, "ppxd: nothing to mine: give theta1 (log r) or keep the score\n");
        return -1;
    }
    if (o->theta1_rows && K != 1) {
        fprintf(stderr, "ppxd: rows simulated at theta1 need exactly one theta1 point\n");
        return -1;
    }
    return 0;
}

mine_task *mine_task_new(const mine_opts *o, size_t n_slots)
{
    const size_t D = o->D;
    size_t K = o->mode == MINE_THETA_PAIRS ? 1 : o->K;
    if (mine_check(o, K) < 0) return NULL;
    mine_task *t = calloc(1, sizeof *t);
    if (!t) {
        fprintf(stderr, "ppxd: out of memory\n");
        return NULL;
    }
    mine_job *jp = &t->j, j = {0};
    j.o = o;
    j.D = D;
    j.K = K;
    j.n_evals = K + (o->score ? 2 * D : 0);
    j.T = 1 + j.n_evals;
    j.W = 8 * n_slots + 64;
    j.out = &t->out;
    j.t_last = now_s();
    t->o2 = *o;
    t->o2.K = K;
    j.o = &t->o2;
    if (o->mode == MINE_THETA_PAIRS) t->o2.theta1 = NULL;
    j.pol = mine_policy_new(n_slots, o->seed, o->theta_names, D);
    j.ring = calloc(j.W, sizeof *j.ring);
    j.row_logr = calloc(K + 1, sizeof(double));
    j.row_t = calloc(D, sizeof(double));
    j.theta_tmp = calloc(D, sizeof(double));
    int ok = j.pol && j.ring && j.row_logr && j.row_t && j.theta_tmp;
    for (size_t w = 0; ok && w < j.W; w++) {
        mine_sample *s = &j.ring[w];
        s->orig = trace_new();
        s->th0 = calloc(D, sizeof(double));
        s->th1 = calloc(K * D + 1, sizeof(double));
        s->eps = calloc(D, sizeof(double));
        s->t_an = calloc(D, sizeof(double));
        s->jl = calloc(j.n_evals + 1, sizeof(double));
        s->done = calloc(j.T, 1);
        s->retries = calloc(j.T, 1);
        ok = s->orig && s->th0 && s->th1 && s->eps && s->t_an && s->jl && s->done && s->retries;
    }
    if (ok && o->mode == MINE_THETA_PRIOR && o->theta1_rows) {
        uint64_t pairs = (o->n + 1) / 2;
        j.pair_th0 = malloc(pairs * D * sizeof(double));
        j.pair_bad = malloc(pairs);
        ok = j.pair_th0 && j.pair_bad;
        for (uint64_t p = 0; ok && p < pairs * D; p++) j.pair_th0[p] = NAN;
        if (ok) memset(j.pair_bad, 0xff, pairs);
    }
    *jp = j;
    if (!ok) {
        fprintf(stderr, "ppxd: out of memory\n");
        mine_task_destroy(&t);
    }
    return t;
}

policy *mine_task_policy(mine_task *t) { return &t->j.pol->base; }

const job_ops *mine_task_ops(mine_task *t, void **job)
{
    *job = &t->j;
    return &mine_job_ops;
}

void mine_task_progress(const mine_task *t, uint64_t *rows_done, uint64_t *rows_total, uint64_t *runs,
                        uint64_t *dropped)
{
    if (rows_done) *rows_done = t->j.next_final;
    if (rows_total) *rows_total = t->o2.n;
    if (runs) *runs = t->j.runs;
    if (dropped) *dropped = t->j.out_init ? gold_data_bad_total(&t->out) : 0;
}

int mine_task_failed(const mine_task *t) { return t->j.failed; }

int mine_task_finish(mine_task *t, int stopped, gold_data *out)
{
    mine_job *j = &t->j;
    const mine_opts *o = &t->o2;
    memset(out, 0, sizeof *out);
    int rc = !stopped && !j->failed ? 0 : -1;
    if (stopped && !j->failed && j->out_init && t->out.n > 0) {
        /* Interrupted, or no simulator left: keep the rows finished so far. */
        fprintf(stderr, "\nppxd: mining stopped early: keeping the %zu rows finished (of %llu asked for)\n", t->out.n,
                (unsigned long long)o->n);
        rc = 0;
    }
    if (rc == 0 && !j->out_init) {
        /* No row had an x: keep the counts in an empty set. */
        if (gold_data_init(&t->out, o->D, 0, j->K, o->score, o->theta_names, NULL) < 0) rc = -1;
        else j->out_init = 1;
    }
    if (rc == 0) {
        t->out.seed = o->seed;
        t->out.epsilon = o->epsilon;
        *out = t->out; /* the rows move to out */
        memset(&t->out, 0, sizeof t->out);
        j->out_init = 0;
    }
    return rc;
}

void mine_task_destroy(mine_task **pt)
{
    mine_task *t = *pt;
    if (!t) return;
    if (t->j.out_init) gold_data_free(&t->out);
    policy *pp = t->j.pol ? &t->j.pol->base : NULL;
    policy_destroy(&pp);
    job_free(&t->j);
    free(t);
    *pt = NULL;
}

static engine *g_mine_engine;

int mine_run(const mine_opts *o, gold_data *out, mine_stats *st)
{
    memset(out, 0, sizeof *out);
    if (mine_check(o, o->mode == MINE_THETA_PAIRS ? 1 : o->K) < 0) return -1;
    engine *e = engine_new(&o->ecfg);
    if (!e) return -1;
    g_mine_engine = e;
    int rc = -1;
    mine_task *t = mine_task_new(o, engine_slots(e));
    double t0 = now_s();
    if (t) {
        void *job;
        const job_ops *ops = mine_task_ops(t, &job);
        int er = engine_run(e, mine_task_policy(t), ops, job);
        rc = mine_task_finish(t, er != 0, out);
    }
    if (!o->quiet) engine_print_stats(e, stderr);
    if (st) {
        st->runs = t ? t->j.runs : 0;
        st->seconds = now_s() - t0;
    }
    mine_task_destroy(&t);
    g_mine_engine = NULL;
    engine_destroy(&e);
    return rc;
}

/* ==== command line =========================================================================== */

static void on_signal(int sig)
{
    (void)sig;
    if (g_mine_engine) engine_request_stop(g_mine_engine);
}

static void mine_usage(FILE *f)
{
    fprintf(f,
        "usage:\n"
        "  ppxd mine SIMULATORS -n N --theta A[,B...] --x NAMES -o GOLD.ppxg [options]\n"
        "\n"
        "Gold mining: simulates N rows and, by replaying each trace with theta changed and every other draw\n"
        "answered with its recorded value, computes the joint log likelihood ratio log r(x,z|theta0,theta1)\n"
        "and the joint score t(x,z|theta0) (from the simulator's parameter tangents, or by central finite\n"
        "differences of replays).\n"
        "\n"
        ENGINE_SIM_OPTIONS_HELP
        "  -n N                  rows to simulate (rows that fail a check are dropped and counted)\n"
        "  --theta A,B,...       the parameters of interest: scalar named Samples of the simulator\n"
        "  --x A,B,...           named Observes/Tags/Samples forming x; 'PREFIX*' matches the first trace's names\n"
        "theta0 (one of; default: the simulator's prior):\n"
        "  --theta0 prior|V,V..  drawn by the simulator from its prior, or one fixed point\n"
        "  --grid LO:HI:N        a grid, one per theta dimension in order (rows cycle through the points)\n"
        "  --pairs PAIRS.npy     explicit (theta0, theta1) rows [M, 2D], cycled (gives one theta1 per row)\n"
        "theta1:\n"
        "  --theta1 V,V..        a reference point (repeatable: one log r column per point)\n"
        "  --no-theta1-rows      only rows simulated at theta0 (default with one theta1 point: rows alternate\n"
        "                        between theta0 (y = 0) and theta1 (y = 1), as the ratio trainers need)\n"
        "score:\n"
        "  --score auto|analytic|fd|none\n"
        "                        how t(x,z|theta0) is mined (default auto): analytic = from the parameter\n"
        "                        tangents the simulator sends with its draws (ppx_set_tangent, ppx.Simulator\n"
        "                        sample(tangent=); no replays; a row without them is dropped as no-tangent);\n"
        "                        fd = central finite differences of 2 D replays; auto = analytic for rows\n"
        "                        whose draws all carry tangents, fd for the others; none = no score\n"
        "  --no-score            the same as --score none (saves the score's replays)\n"
        "  --epsilon E           finite-difference step (default 1e-4 x each theta's prior sd)\n"
        "other:\n"
        "  -o GOLD.ppxg          output file (versioned, checksummed; ppxd info / ppxd export read it)\n"
        "  --npy PREFIX          also write PREFIX_y.npy, _theta0.npy, _theta1.npy, _x.npy, _log_r.npy, _t.npy\n"
        "  --seed S (1)  --quiet  --timeout-ms T  --start-timeout-ms T  --max-failures K\n"
        "Invalid rows (control flow changed under replay, value outside a theta-dependent support, theta-\n"
        "dependent Uniform bounds, x depending on theta directly, non-finite values, invalid parameters)\n"
        "are counted by reason and reported, never written.  Branches must be Bernoulli/Categorical draws:\n"
        "a Uniform draw compared with a theta-dependent threshold hides theta-dependence (the score is 0).\n");
}

/* On stderr, or the daemon's capture buffer while it parses a job (cli.h). */
static int usage_error(const char *msg, const char *detail)
{
    cli_complain("%s%s%s", msg, detail ? ": " : "", detail ? detail : "");
    return 2;
}

/* "V,V,..." into *v (n values appended).  0 or -1. */
static int parse_values(const char *s, double **v, size_t *n)
{
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno || !isfinite(x)) return -1;
        double *nv = realloc(*v, (*n + 1) * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        (*v)[(*n)++] = x;
        p = end;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return *n ? 0 : -1;
}

static int split_names(const char *arg, char ***v, size_t *n)
{
    const char *p = arg;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (!len) return -1;
        char **nv = realloc(*v, (*n + 1) * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        if (!((*v)[*n] = strndup(p, len))) return -1;
        (*n)++;
        if (!p[len]) return 0;
        p += len + 1;
    }
}

enum {
    M_SIM_CMD = 2000, M_CONNECT, M_THETA, M_X, M_THETA0, M_GRID, M_PAIRS, M_THETA1, M_NO_T1ROWS, M_NO_SCORE,
    M_EPS, M_NPY, M_SEED, M_QUIET, M_TIMEOUT, M_START_TIMEOUT, M_MAX_FAILURES, M_SCORE
};

/* A `mine` job's command line, parsed (mine_cmd_parse): the options and the
 * arrays they point into. */
struct mine_cmd {
    mine_opts o;
    char **theta, **x;
    size_t n_theta, n_x;
    double *th0, *th1, *lo, *hi, *pairs;
    size_t *gn;
};

/* The command line; with job != NULL (ppxd daemon), parse only: simulator,
 * engine and file options are refused, and *job takes the options. */
static int mine_main(int argc, char **argv, mine_cmd **job)
{
    static const struct option opts[] = {
        {"sim-cmd", required_argument, 0, M_SIM_CMD}, {"connect", required_argument, 0, M_CONNECT},
        {"theta", required_argument, 0, M_THETA}, {"x", required_argument, 0, M_X},
        {"theta0", required_argument, 0, M_THETA0}, {"grid", required_argument, 0, M_GRID},
        {"pairs", required_argument, 0, M_PAIRS}, {"theta1", required_argument, 0, M_THETA1},
        {"no-theta1-rows", no_argument, 0, M_NO_T1ROWS}, {"no-score", no_argument, 0, M_NO_SCORE},
        {"score", required_argument, 0, M_SCORE},
        {"epsilon", required_argument, 0, M_EPS}, {"npy", required_argument, 0, M_NPY},
        {"seed", required_argument, 0, M_SEED}, {"quiet", no_argument, 0, M_QUIET},
        {"timeout-ms", required_argument, 0, M_TIMEOUT}, {"start-timeout-ms", required_argument, 0, M_START_TIMEOUT},
        {"max-failures", required_argument, 0, M_MAX_FAILURES}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    mine_opts o;
    memset(&o, 0, sizeof o);
    engine_config_defaults(&o.ecfg);
    engine_sim_options sims;
    memset(&sims, 0, sizeof sims);
    o.seed = 1;
    o.score = 1;
    int no_t1rows = 0;
    char **theta = NULL, **x = NULL;
    size_t n_theta = 0, n_x = 0;
    double *th0 = NULL, *th1 = NULL, *lo = NULL, *hi = NULL, *pairs = NULL;
    size_t n_th0 = 0, n_th1 = 0, n_grid = 0, *gn = NULL;
    const char *out = NULL, *npy = NULL, *pairs_path = NULL;
    int rc = 2, idx = 0, ch, host_opts = 0;
    if (job) cli_getopt_reset("j:n:o:h");
    optind = 1;
    while ((ch = getopt_long(argc, argv, "j:n:o:h", opts, &idx)) != -1) {
        char why[160];
        switch (ch) {
        case M_SIM_CMD:
        case M_CONNECT:
        case 'j':
            host_opts |= 1;
            if (engine_sim_option(&sims, ch == 'j' ? "j" : opts[idx].name, optarg, why, sizeof why) < 0) {
                usage_error(why, optarg);
                goto done;
            }
            break;
        case M_TIMEOUT:
        case M_START_TIMEOUT:
        case M_MAX_FAILURES:
            host_opts |= 2;
            if (engine_config_option(&o.ecfg, opts[idx].name, optarg, why, sizeof why) < 0) {
                usage_error(why, optarg);
                goto done;
            }
            break;
        case 'n':
            if (args_u64(optarg, &o.n) < 0 || !o.n) {
                usage_error("-n wants a positive number", optarg);
                goto done;
            }
            break;
        case 'o': out = optarg; break;
        case M_THETA:
            if (split_names(optarg, &theta, &n_theta) < 0) {
                usage_error("--theta wants NAME[,NAME...]", optarg);
                goto done;
            }
            break;
        case M_X:
            if (split_names(optarg, &x, &n_x) < 0) {
                usage_error("--x wants NAME[,NAME...]", optarg);
                goto done;
            }
            break;
        case M_THETA0:
            if (strcmp(optarg, "prior") == 0) break;
            n_th0 = 0;
            if (parse_values(optarg, &th0, &n_th0) < 0) {
                usage_error("--theta0 wants 'prior' or finite numbers V[,V...]", optarg);
                goto done;
            }
            o.mode = MINE_THETA_FIXED;
            break;
        case M_GRID: {
            double a, b;
            uint64_t n;
            char *end, *end2;
            a = strtod(optarg, &end);
            if (*end != ':' || (b = strtod(end + 1, &end2), *end2 != ':') || args_u64(end2 + 1, &n) < 0 || !n ||
                n > 1000000 || !isfinite(a) || !isfinite(b) || (n > 1 && !(b > a))) {
                usage_error("--grid wants LO:HI:N with LO < HI and N >= 1", optarg);
                goto done;
            }
            double *nl = realloc(lo, (n_grid + 1) * sizeof *nl);
            if (nl) lo = nl;
            double *nh = realloc(hi, (n_grid + 1) * sizeof *nh);
            if (nh) hi = nh;
            size_t *ng = realloc(gn, (n_grid + 1) * sizeof *ng);
            if (ng) gn = ng;
            if (!nl || !nh || !ng) goto oom;
            lo[n_grid] = a;
            hi[n_grid] = b;
            gn[n_grid++] = (size_t)n;
            o.mode = MINE_THETA_GRID;
            break;
        }
        case M_PAIRS: pairs_path = optarg; break;
        case M_THETA1:
            if (parse_values(optarg, &th1, &n_th1) < 0) {
                usage_error("--theta1 wants finite numbers V[,V...]", optarg);
                goto done;
            }
            o.K++;
            break;
        case M_NO_T1ROWS: no_t1rows = 1; break;
        case M_NO_SCORE: o.score = 0; break;
        case M_SCORE:
            if (strcmp(optarg, "none") == 0) {
                o.score = 0;
            } else {
                o.score = 1;
                if (strcmp(optarg, "auto") == 0) o.score_method = MINE_SCORE_AUTO;
                else if (strcmp(optarg, "analytic") == 0) o.score_method = MINE_SCORE_ANALYTIC;
                else if (strcmp(optarg, "fd") == 0) o.score_method = MINE_SCORE_FD;
                else {
                    usage_error("--score wants auto, analytic, fd or none", optarg);
                    goto done;
                }
            }
            break;
        case M_EPS: {
            char *end;
            o.epsilon = strtod(optarg, &end);
            if (*end || !(o.epsilon > 0) || !isfinite(o.epsilon)) {
                usage_error("--epsilon wants a positive number", optarg);
                goto done;
            }
            break;
        }
        case M_NPY: npy = optarg; break;
        case M_SEED:
            if (args_u64(optarg, &o.seed) < 0) {
                usage_error("--seed wants a non-negative integer", optarg);
                goto done;
            }
            break;
        case M_QUIET: o.quiet = 1; break;
        case 'h':
            if (job) {
                usage_error("--help is not for jobs", NULL);
                goto done;
            }
            mine_usage(stdout);
            rc = 0;
            goto done;
        default:
            if (job) cli_unknown_option(argc, argv);
            else mine_usage(stderr);
            goto done;
        }
    }
    if (optind < argc) {
        usage_error("unexpected argument", argv[optind]);
        goto done;
    }
    char why[200];
    if (job && (host_opts || out || npy || pairs_path)) {
        usage_error(host_opts & 1 ? "simulator options are not for jobs: the daemon's pool is used"
                    : host_opts & 2 ? "--timeout-ms, --start-timeout-ms and --max-failures are the daemon's options"
                    : pairs_path ? "--pairs reads a file on the daemon's host: not for jobs"
                                 : "-o and --npy are not for jobs: the gold file goes to the job's directory and "
                                   "DIR/datasets (ppxctl job fetch ID)", NULL);
        goto done;
    }
    if (!job && !engine_sim_options_apply(&sims, &o.ecfg, why, sizeof why)) {
        usage_error(why, NULL);
        goto done;
    }
    if (!o.n || !n_theta || !n_x || (!out && !job)) {
        usage_error(job ? "a mine job needs -n N, --theta NAMES and --x NAMES"
                        : "mine needs -n N, --theta NAMES, --x NAMES and -o GOLD.ppxg (see ppxd mine --help)", NULL);
        goto done;
    }
    for (size_t i = 0; i < n_theta; i++)
        if (strchr(theta[i], '*')) {
            usage_error("--theta takes names, not patterns", theta[i]);
            goto done;
        }
    o.D = n_theta;
    if ((th0 && n_grid) || ((th0 || n_grid) && pairs_path)) {
        usage_error("give one of --theta0 V,.., --grid and --pairs", NULL);
        goto done;
    }
    if (th0 && n_th0 != o.D) {
        cli_complain("--theta0 gives %zu values for %zu theta names", n_th0, o.D);
        goto done;
    }
    if (n_grid && n_grid != o.D) {
        cli_complain("%zu --grid options for %zu theta names (one per dimension)", n_grid, o.D);
        goto done;
    }
    if (n_th1 != o.K * o.D) {
        cli_complain("every --theta1 needs %zu values (one per theta name)", o.D);
        goto done;
    }
    if (pairs_path) {
        size_t rows, cols;
        char err[300];
        if (o.K) {
            usage_error("--pairs gives theta1: do not add --theta1", NULL);
            goto done;
        }
        if (npy_read(pairs_path, &pairs, &rows, &cols, err, sizeof err) < 0) {
            usage_error("cannot read --pairs", err);
            goto done;
        }
        if (cols != 2 * o.D || !rows) {
            fprintf(stderr, "ppxd: --pairs %s has %zu columns; it needs 2 x %zu (theta0 then theta1)\n", pairs_path,
                    cols, o.D);
            goto done;
        }
        for (size_t i = 0; i < rows * cols; i++)
            if (!isfinite(pairs[i])) {
                fprintf(stderr, "ppxd: --pairs %s: row %zu is not finite\n", pairs_path, i / cols);
                goto done;
            }
        o.mode = MINE_THETA_PAIRS;
        o.pairs = pairs;
        o.n_pairs = rows;
    }
    if (!o.K && o.mode != MINE_THETA_PAIRS && !o.score) {
        usage_error("nothing to mine: --no-score and no --theta1", NULL);
        goto done;
    }
    o.theta1_rows = !no_t1rows && (o.K == 1 || o.mode == MINE_THETA_PAIRS);
    o.theta_names = (const char *const *)theta;
    o.x_names = (const char *const *)x;
    o.n_x = n_x;
    o.theta0 = th0;
    o.theta1 = th1;
    o.grid_lo = lo;
    o.grid_hi = hi;
    o.grid_n = gn;
    o.ecfg.progress = 0;
    o.ecfg.seed = o.seed;
    if (job) {
        /* The arrays move into the job's command. */
        mine_cmd *c = calloc(1, sizeof *c);
        if (!c) goto oom;
        o.quiet = 1; /* progress is the job's status, not log lines */
        *c = (mine_cmd){o, theta, x, n_theta, n_x, th0, th1, lo, hi, pairs, gn};
        theta = x = NULL;
        n_theta = n_x = 0;
        th0 = th1 = lo = hi = pairs = NULL;
        gn = NULL;
        *job = c;
        rc = 0;
        goto done;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    gold_data g;
    mine_stats st;
    if (mine_run(&o, &g, &st) < 0) {
        rc = 1;
        goto done;
    }
    rc = 1;
    char err[300];
    fprintf(stderr, "ppxd: %zu rows mined in %.1f s (%llu simulator runs, %.0f runs/s)", g.n, st.seconds,
            (unsigned long long)st.runs, st.seconds > 0 ? st.runs / st.seconds : 0.0);
    uint64_t bad = gold_data_bad_total(&g);
    if (g.has_score)
        fprintf(stderr, "; score of %llu rows from parameter tangents, %llu by finite differences",
                (unsigned long long)g.n_analytic, (unsigned long long)(g.n - g.n_analytic));
    fprintf(stderr, bad ? "; %llu dropped:" : "; none dropped\n", (unsigned long long)bad);
    for (int r = 0; bad && r < GOLD_BAD_COUNT; r++)
        if (g.bad[r]) fprintf(stderr, " %s %llu", gold_bad_name((gold_bad)r), (unsigned long long)g.bad[r]);
    if (bad) fprintf(stderr, "\n");
    if (gold_data_write(&g, out, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
    } else if (npy && gold_data_export_npy(&g, npy, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: --npy: %s\n", err);
    } else {
        fprintf(stderr, "ppxd: wrote %s\n", out);
        rc = 0;
    }
    gold_data_free(&g);
    goto done;
oom:
    fprintf(stderr, "ppxd: out of memory\n");
    rc = 1;
done:
    for (size_t i = 0; i < n_theta; i++) free(theta[i]);
    for (size_t i = 0; i < n_x; i++) free(x[i]);
    free(theta);
    free(x);
    free(th0);
    free(th1);
    free(lo);
    free(hi);
    free(gn);
    free(pairs);
    engine_sim_options_free(&sims);
    return rc;
}

int ppxd_mine_main(int argc, char **argv) { return mine_main(argc, argv, NULL); }

mine_cmd *mine_cmd_parse(int argc, char **argv)
{
    mine_cmd *c = NULL;
    if (mine_main(argc, argv, &c) != 0) mine_cmd_destroy(&c);
    return c;
}

const mine_opts *mine_cmd_opts(const mine_cmd *c) { return &c->o; }

void mine_cmd_destroy(mine_cmd **pc)
{
    mine_cmd *c = *pc;
    if (!c) return;
    for (size_t i = 0; i < c->n_theta; i++) free(c->theta[i]);
    for (size_t i = 0; i < c->n_x; i++) free(c->x[i]);
    free(c->theta);
    free(c->x);
    free(c->th0);
    free(c->th1);
    free(c->lo);
    free(c->hi);
    free(c->gn);
    free(c->pairs);
    free(c);
    *pc = NULL;
}

/* ---- ppxd info / export of a .ppxg ---------------------------------------------------------------- */

static void print_stats(const char *name, const double *v, size_t n, size_t stride, size_t off)
{
    double s = 0, s2 = 0, mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = v[i * stride + off];
        s += x;
        mn = fmin(mn, x);
        mx = fmax(mx, x);
    }
    double m = n ? s / n : NAN;
    for (size_t i = 0; i < n; i++) s2 += (v[i * stride + off] - m) * (v[i * stride + off] - m);
    double sd = n > 1 ? sqrt(s2 / (n - 1)) : NAN;
    printf("  %-20s mean %12.6g  sd %12.6g  min %12.6g  max %12.6g\n", name, m, sd, mn, mx);
}

int ppxd_gold_file_main(int argc, char **argv)
{
    const int info = strcmp(argv[0], "info") == 0;
    const char *file = NULL, *prefix = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) prefix = argv[++i];
        else if (!file) file = argv[i];
        else return usage_error("unexpected argument", argv[i]);
    }
    if (!file) return usage_error("give a gold file", NULL);
    if (!info && !prefix) return usage_error("export of a gold file needs -o PREFIX (writes PREFIX_x.npy, ...)", NULL);
    gold_data g;
    char err[300];
    if (gold_data_read(&g, file, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (info) {
        size_t n1 = 0;
        for (size_t i = 0; i < g.n; i++) n1 += g.y[i] != 0;
        printf("%s: ppxd gold file, checksum ok\n", file);
        printf("  rows %zu (%zu at theta0, %zu at theta1); theta %zu, x %zu columns, %zu theta1 point(s), score %s",
               g.n, g.n - n1, n1, g.D, g.C, g.K, g.has_score ? "yes" : "no");
        if (g.has_score)
            printf(" (%llu rows from parameter tangents, %llu by finite differences)",
                   (unsigned long long)g.n_analytic, (unsigned long long)(g.n - g.n_analytic));
        printf("\n");
        printf("  seed %llu, epsilon %s", (unsigned long long)g.seed, g.epsilon > 0 ? "" : "auto (1e-4 prior sd)\n");
        if (g.epsilon > 0) printf("%g\n", g.epsilon);
        uint64_t bad = gold_data_bad_total(&g);
        printf("  dropped while mining: %llu", (unsigned long long)bad);
        for (int r = 0; r < GOLD_BAD_COUNT; r++)
            if (g.bad[r]) printf(", %s %llu", gold_bad_name((gold_bad)r), (unsigned long long)g.bad[r]);
        printf("\n");
        char name[300];
        for (size_t k = 0; k < g.D; k++) {
            snprintf(name, sizeof name, "theta0 %s", g.theta_names[k]);
            print_stats(name, g.theta0, g.n, g.D, k);
        }
        for (size_t c = 0; c < g.C; c++) print_stats(g.x_names[c], g.x, g.n, g.C, c);
        for (size_t k = 0; k < g.K; k++) {
            snprintf(name, sizeof name, "log_r[%zu]", k);
            print_stats(name, g.log_r, g.n, g.K, k);
        }
        for (size_t k = 0; g.has_score && k < g.D; k++) {
            snprintf(name, sizeof name, "t %s", g.theta_names[k]);
            print_stats(name, g.t, g.n, g.D, k);
        }
    } else if (gold_data_export_npy(&g, prefix, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        rc = 1;
    } else {
        fprintf(stderr, "ppxd: wrote %s_y.npy, _theta0.npy, _theta1.npy, _x.npy, _log_r.npy%s (%zu rows)\n", prefix,
                g.has_score ? ", _t.npy" : "", g.n);
    }
    gold_data_free(&g);
    return rc;
}
