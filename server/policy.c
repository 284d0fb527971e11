/* policy.c — prior, fixed and replay answer policies (see policy.h). */
#include "policy.h"
#include "rwmh.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int policy_base_init(policy *p, const policy_ops *ops, size_t n_slots, uint64_t seed)
{
    p->ops = ops;
    p->n_slots = n_slots;
    p->seed = seed;
    p->slot_rng = calloc(n_slots ? n_slots : 1, sizeof *p->slot_rng);
    return p->slot_rng ? 0 : -1;
}

void policy_base_free(policy *p) { free(p->slot_rng); }

void policy_base_begin(policy *p, size_t slot, uint64_t trace_index)
{
    rng_seed(&p->slot_rng[slot], p->seed, trace_index);
}

void policy_destroy(policy **pp)
{
    if (pp && *pp) {
        (*pp)->ops->destroy(*pp);
        *pp = NULL;
    }
}

void policy_draw_prior(policy *p, policy_request *r)
{
    dist_sample(r->d, &p->slot_rng[r->slot], r->value);
    r->log_q = dist_log_prob(r->d, r->value);
    r->observed = 0;
    r->replayed = 0;
    r->flag = POLICY_ANSWERED;
}

/* --- prior ------------------------------------------------------------------ */

static void prior_answer(policy *p, policy_request *reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) policy_draw_prior(p, &reqs[i]);
}

static void prior_destroy(policy *p)
{
    policy_base_free(p);
    free(p);
}

static const policy_ops prior_ops = {policy_base_begin, prior_answer, NULL, prior_destroy};

policy *policy_prior_new(size_t n_slots, uint64_t seed)
{
    policy *p = calloc(1, sizeof *p);
    if (!p || policy_base_init(p, &prior_ops, n_slots, seed) < 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* --- fixed ------------------------------------------------------------------ */

typedef struct fixed_policy {
    policy base;       /* no RNG of its own: unfixed draws use the inner policy's */
    policy *inner;
    fixed_value *vals;
    size_t n_vals;
} fixed_policy;

static void fixed_begin(policy *p, size_t slot, uint64_t idx)
{
    fixed_policy *f = (fixed_policy *)p;
    policy_begin(f->inner, slot, idx);
}

static void fixed_end(policy *p, size_t slot)
{
    fixed_policy *f = (fixed_policy *)p;
    policy_end(f->inner, slot);
}

static const fixed_value *fixed_lookup(const fixed_policy *f, const char *name)
{
    if (!name || !*name) return NULL;
    for (size_t i = 0; i < f->n_vals; i++)
        if (strcmp(f->vals[i].name, name) == 0) return &f->vals[i];
    return NULL;
}

static void fixed_answer(policy *p, policy_request *reqs, size_t n)
{
    fixed_policy *f = (fixed_policy *)p;
    /* Answer the fixed ones here; pass the rest on (as one batch when none
     * was fixed, the common case). */
    size_t n_inner = 0;
    for (size_t i = 0; i < n; i++) {
        const fixed_value *v = fixed_lookup(f, reqs[i].name);
        if (!v) {
            n_inner++;
            continue;
        }
        policy_request *r = &reqs[i];
        if (v->n != r->d->n) {
            r->flag = POLICY_INVALID;
            snprintf(r->reason, sizeof r->reason, "fixed value for '%s' has %zu elements, the draw has %zu", v->name,
                     v->n, r->d->n);
            continue;
        }
        memcpy(r->value, v->values, v->n * sizeof *r->value);
        double lp = dist_log_prob(r->d, r->value);
        r->observed = v->mode == FIXED_CONDITION;
        r->log_q = lp; /* FIXED_SET: cancels against the prior term in the weight */
        r->replayed = 0;
        r->flag = POLICY_ANSWERED;
    }
    if (n_inner == n) {
        policy_answer(f->inner, reqs, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!fixed_lookup(f, reqs[i].name)) policy_answer(f->inner, &reqs[i], 1);
}

static void fixed_destroy(policy *p)
{
    fixed_policy *f = (fixed_policy *)p;
    policy_destroy(&f->inner);
    for (size_t i = 0; i < f->n_vals; i++) {
        free((char *)f->vals[i].name);
        free((double *)f->vals[i].values);
    }
    free(f->vals);
    free(f);
}

static const policy_ops fixed_ops = {fixed_begin, fixed_answer, fixed_end, fixed_destroy};

policy *policy_fixed_new(policy *inner, const fixed_value *vals, size_t n_vals)
{
    if (!inner) return NULL;
    fixed_policy *f = calloc(1, sizeof *f);
    if (!f) {
        policy_destroy(&inner);
        return NULL;
    }
    f->base.ops = &fixed_ops;
    f->base.n_slots = inner->n_slots;
    f->base.seed = inner->seed;
    f->inner = inner;
    f->vals = calloc(n_vals ? n_vals : 1, sizeof *f->vals);
    if (!f->vals) goto fail;
    for (size_t i = 0; i < n_vals; i++) {
        double *copy = malloc((vals[i].n ? vals[i].n : 1) * sizeof *copy);
        char *name = strdup(vals[i].name);
        f->vals[i] = vals[i];
        f->vals[i].name = name;
        f->vals[i].values = copy;
        f->n_vals = i + 1;
        if (!copy || !name) goto fail;
        memcpy(copy, vals[i].values, vals[i].n * sizeof *copy);
    }
    return &f->base;
fail:
    fixed_destroy(&f->base);
    return NULL;
}

/* --- replay ----------------------------------------------------------------- */

/* Per-slot index of a recorded trace: address -> entry, open addressing. */
typedef struct replay_slot {
    const trace *rec;
    int32_t *table;     /* entry index + 1, 0 = empty */
    size_t table_cap;   /* power of two */
    uint8_t *used;      /* per recorded entry: asked for in the current trace */
    size_t used_cap;
    char *resample;     /* address not to reuse */
    int diverged;
    int kernel;         /* RMH: move the resampled site with a random-walk kernel */
    int kernel_used;    /* this trace's site was moved by the kernel */
    double kernel_lr;   /* its log q(old | new) - log q(new | old) */
} replay_slot;

typedef struct replay_policy {
    policy base;
    policy *inner;
    replay_slot *slots;
    uint64_t mismatches;
} replay_policy;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static int replay_index(replay_slot *s)
{
    size_t n = s->rec ? s->rec->n_entries : 0;
    size_t cap = 16;
    while (cap < 2 * n + 1) cap <<= 1;
    if (cap > s->table_cap) {
        int32_t *t = realloc(s->table, cap * sizeof *t);
        if (!t) return -1;
        s->table = t;
        s->table_cap = cap;
    }
    memset(s->table, 0, s->table_cap * sizeof *s->table);
    if (n > s->used_cap) {
        uint8_t *u = realloc(s->used, n);
        if (!u) return -1;
        s->used = u;
        s->used_cap = n;
    }
    if (n) memset(s->used, 0, n);
    for (size_t i = 0; i < n; i++) {
        const trace_entry *e = &s->rec->entries[i];
        if (e->kind != TRACE_SAMPLE) continue;
        size_t h = str_hash(e->address) & (s->table_cap - 1);
        while (s->table[h]) h = (h + 1) & (s->table_cap - 1);
        s->table[h] = (int32_t)i + 1;
    }
    return 0;
}

static const trace_entry *replay_find(replay_slot *s, const char *address, size_t *idx)
{
    if (!s->rec || !s->table_cap) return NULL;
    size_t h = str_hash(address) & (s->table_cap - 1);
    while (s->table[h]) {
        const trace_entry *e = &s->rec->entries[s->table[h] - 1];
        if (strcmp(e->address, address) == 0) {
            *idx = (size_t)(s->table[h] - 1);
            return e;
        }
        h = (h + 1) & (s->table_cap - 1);
    }
    return NULL;
}

static void replay_begin(policy *p, size_t slot, uint64_t idx)
{
    replay_policy *r = (replay_policy *)p;
    replay_slot *s = &r->slots[slot];
    s->diverged = 0;
    s->kernel_used = 0;
    s->kernel_lr = 0;
    rng_seed(&r->base.slot_rng[slot], r->base.seed ^ 0x726d686b65726e6cull, idx);
    if (replay_index(s) < 0) {
        /* Out of memory: replay nothing; every draw counts as diverged. */
        s->rec = NULL;
        s->table_cap = 0;
    }
    policy_begin(r->inner, slot, idx);
}

static void replay_end(policy *p, size_t slot)
{
    replay_policy *r = (replay_policy *)p;
    replay_slot *s = &r->slots[slot];
    if (s->rec)
        for (size_t i = 0; i < s->rec->n_entries; i++)
            if (s->rec->entries[i].kind == TRACE_SAMPLE && !s->used[i] &&
                !(s->resample && strcmp(s->resample, s->rec->entries[i].address) == 0)) {
                r->mismatches++;
                s->diverged = 1;
            }
    policy_end(r->inner, slot);
}

static void replay_answer(policy *p, policy_request *reqs, size_t n)
{
    replay_policy *r = (replay_policy *)p;
    for (size_t i = 0; i < n; i++) {
        policy_request *q = &reqs[i];
        replay_slot *s = &r->slots[q->slot];
        size_t idx = 0;
        const trace_entry *e = NULL;
        int resample = s->resample && strcmp(s->resample, q->address) == 0;
        if (resample && s->kernel && (e = replay_find(s, q->address, &idx)) && e->value.len == q->d->n &&
            e->dist == q->d->kind) {
            /* RMH: move the site near its recorded value. */
            s->kernel_lr = rwmh_propose(q->d, e->value.data, &r->base.slot_rng[q->slot], q->value);
            s->kernel_used = 1;
            q->log_q = dist_log_prob(q->d, q->value);
            q->observed = 0;
            q->replayed = 0;
            q->flag = POLICY_ANSWERED;
            s->used[idx] = 1;
            continue;
        }
        e = NULL;
        if (!resample) e = replay_find(s, q->address, &idx);
        if (e && e->value.len == q->d->n && e->dist == q->d->kind) {
            memcpy(q->value, e->value.data, q->d->n * sizeof *q->value);
            q->log_q = dist_log_prob(q->d, q->value);
            q->observed = e->observed;
            q->replayed = 1;
            q->flag = POLICY_ANSWERED;
            s->used[idx] = 1;
            continue;
        }
        if (!resample) {
            r->mismatches++;
            s->diverged = 1;
        }
        policy_answer(r->inner, q, 1);
    }
}

static void replay_destroy(policy *p)
{
    replay_policy *r = (replay_policy *)p;
    for (size_t i = 0; i < r->base.n_slots; i++) {
        free(r->slots[i].table);
        free(r->slots[i].used);
        free(r->slots[i].resample);
    }
    free(r->slots);
    free(r->base.slot_rng);
    policy_destroy(&r->inner);
    free(r);
}

static const policy_ops replay_ops = {replay_begin, replay_answer, replay_end, replay_destroy};

policy *policy_replay_new(policy *inner, size_t n_slots)
{
    if (!inner) return NULL;
    replay_policy *r = calloc(1, sizeof *r);
    if (!r) {
        policy_destroy(&inner);
        return NULL;
    }
    r->base.ops = &replay_ops;
    r->base.n_slots = n_slots;
    r->base.seed = inner->seed;
    r->inner = inner;
    r->slots = calloc(n_slots ? n_slots : 1, sizeof *r->slots);
    r->base.slot_rng = calloc(n_slots ? n_slots : 1, sizeof *r->base.slot_rng);
    if (!r->slots || !r->base.slot_rng) {
        replay_destroy(&r->base);
        return NULL;
    }
    return &r->base;
}

void policy_replay_set(policy *p, size_t slot, const trace *recorded)
{
    replay_policy *r = (replay_policy *)p;
    r->slots[slot].rec = recorded;
}

void policy_replay_set_resample(policy *p, size_t slot, const char *address)
{
    replay_policy *r = (replay_policy *)p;
    free(r->slots[slot].resample);
    r->slots[slot].resample = address ? strdup(address) : NULL;
}

void policy_replay_set_kernel(policy *p, size_t slot, int on)
{
    ((replay_policy *)p)->slots[slot].kernel = on;
}

int policy_replay_kernel_move(const policy *p, size_t slot, double *log_ratio)
{
    const replay_slot *s = &((const replay_policy *)p)->slots[slot];
    *log_ratio = s->kernel_lr;
    return s->kernel_used;
}

uint64_t policy_replay_mismatches(const policy *p) { return ((const replay_policy *)p)->mismatches; }

int policy_replay_slot_diverged(const policy *p, size_t slot)
{
    return ((const replay_policy *)p)->slots[slot].diverged;
}
