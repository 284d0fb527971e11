/* Tests for src/trace.c: per-trace address suffixes, copying of the caller's
 * strings and arrays, the log-weight sums, reuse after reset, deep copies,
 * lookups and growth to many entries.  All data is fixed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

static trace *new_trace(void)
{
    trace *t = trace_new();
    cr_assert_not_null(t);
    return t;
}

/* An entry with a scalar value (0-d, as the wire sends scalars). */
static trace_entry scalar_entry(trace_kind kind, const char *address, const char *name,
                                dist_kind dist, const double *value)
{
    static const double params[2] = {0.0, 1.0}; /* read-only: not mutable state */
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    e.base_address = address;
    e.name = name;
    e.dist = dist;
    e.param[0] = (trace_array){(double *)&params[0], 1, NULL, 0};
    e.param[1] = (trace_array){(double *)&params[1], 1, NULL, 0};
    e.value = (trace_array){(double *)value, 1, NULL, 0};
    e.control = 1;
    e.observed = kind == TRACE_OBSERVE;
    return e;
}

static const trace_entry *append_ok(trace *t, const trace_entry *e)
{
    const trace_entry *s = trace_append(t, e);
    cr_assert_not_null(s, "trace_append failed");
    return s;
}

Test(trace, same_address_twice_counts_up)
{
    trace *t = new_trace();
    double v = 1.0;
    trace_entry e = scalar_entry(TRACE_SAMPLE, "[forward()+0x96]", "", DIST_NORMAL, &v);
    const trace_entry *a = append_ok(t, &e);
    cr_assert_str_eq(a->address, "[forward()+0x96]__Normal__1");
    cr_assert_eq(a->instance, 1);
    a = append_ok(t, &e);
    cr_assert_str_eq(a->address, "[forward()+0x96]__Normal__2");
    cr_assert_eq(a->instance, 2);
    cr_assert_str_eq(t->entries[0].address, "[forward()+0x96]__Normal__1");
    cr_assert_str_eq(t->entries[1].base_address, "[forward()+0x96]");
    cr_assert_eq(t->n_entries, 2);
    trace_destroy(&t);
    cr_assert_null(t);
}

Test(trace, kinds_and_addresses_count_separately)
{
    trace *t = new_trace();
    double v = 0.5;
    trace_entry an = scalar_entry(TRACE_SAMPLE, "A", "", DIST_NORMAL, &v);
    trace_entry au = scalar_entry(TRACE_SAMPLE, "A", "", DIST_UNIFORM, &v);
    trace_entry bn = scalar_entry(TRACE_SAMPLE, "B", "", DIST_NORMAL, &v);
    trace_entry ap = scalar_entry(TRACE_SAMPLE, "A", "", DIST_POISSON, &v);
    cr_assert_str_eq(append_ok(t, &an)->address, "A__Normal__1");
    cr_assert_str_eq(append_ok(t, &au)->address, "A__Uniform__1");
    cr_assert_str_eq(append_ok(t, &an)->address, "A__Normal__2");
    cr_assert_str_eq(append_ok(t, &bn)->address, "B__Normal__1");
    cr_assert_str_eq(append_ok(t, &au)->address, "A__Uniform__2");
    cr_assert_str_eq(append_ok(t, &ap)->address, "A__Poisson__1");
    cr_assert_str_eq(append_ok(t, &an)->address, "A__Normal__3");
    /* A prefix of another address must not share its counter. */
    trace_entry aa = scalar_entry(TRACE_SAMPLE, "A__Normal", "", DIST_NORMAL, &v);
    cr_assert_str_eq(append_ok(t, &aa)->address, "A__Normal__Normal__1");
    trace_destroy(&t);
}

Test(trace, categorical_kind_includes_k)
{
    trace *t = new_trace();
    double probs[6] = {0.1, 0.2, 0.7, 0.3, 0.3, 0.4};
    int32_t shape[2] = {2, 3};
    double v[2] = {2, 0};
    int32_t vshape[1] = {2};
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = TRACE_SAMPLE;
    e.base_address = "cat";
    e.name = "c";
    e.dist = DIST_CATEGORICAL;
    e.k = 3;
    e.param[0] = (trace_array){probs, 6, shape, 2};
    e.value = (trace_array){v, 2, vshape, 1};
    char kind[64];
    trace_address_kind(&e, kind, sizeof kind);
    cr_assert_str_eq(kind, "Categorical(len_probs:3)");
    cr_assert_str_eq(append_ok(t, &e)->address, "cat__Categorical(len_probs:3)__1");
    e.k = 5;
    cr_assert_str_eq(append_ok(t, &e)->address, "cat__Categorical(len_probs:5)__1");
    e.k = 3;
    const trace_entry *s = append_ok(t, &e);
    cr_assert_str_eq(s->address, "cat__Categorical(len_probs:3)__2");
    cr_assert_eq(s->k, 3);
    cr_assert_eq(s->param[0].ndim, 2);
    cr_assert_eq(s->param[0].shape[1], 3);
    cr_assert_eq(s->param[1].len, 0);
    /* A short buffer is truncated, still terminated. */
    char small[8];
    trace_address_kind(&e, small, sizeof small);
    cr_assert_str_eq(small, "Categor");
    trace_destroy(&t);
}

Test(trace, tag_and_observe_without_distribution)
{
    trace *t = new_trace();
    double v = 3.0;
    trace_entry tag = scalar_entry(TRACE_TAG, "site", "x", DIST_NONE, &v);
    tag.param[0] = tag.param[1] = (trace_array){0};
    trace_entry obs = scalar_entry(TRACE_OBSERVE, "site", "y", DIST_NONE, &v);
    obs.param[0] = obs.param[1] = (trace_array){0};
    cr_assert_str_eq(append_ok(t, &tag)->address, "site__Tag__1");
    cr_assert_str_eq(append_ok(t, &obs)->address, "site__None__1");
    /* The kind of a Tag is "Tag" even if a dist is set. */
    tag.dist = DIST_NORMAL;
    cr_assert_str_eq(append_ok(t, &tag)->address, "site__Tag__2");
    /* Unknown dist numbers print as "None" and share its counter. */
    obs.dist = (dist_kind)99;
    cr_assert_str_eq(append_ok(t, &obs)->address, "site__None__2");
    /* NULL strings are taken as "". */
    trace_entry anon = scalar_entry(TRACE_SAMPLE, NULL, NULL, DIST_NORMAL, &v);
    const trace_entry *s = append_ok(t, &anon);
    cr_assert_str_eq(s->address, "__Normal__1");
    cr_assert_str_eq(s->name, "");
    cr_assert_str_eq(s->base_address, "");
    trace_destroy(&t);
}

Test(trace, strings_and_arrays_are_copied)
{
    trace *t = new_trace();
    char address[32] = "addr";
    char name[32] = "theta";
    double value[4] = {1, 2, 3, 4};
    int32_t shape[2] = {2, 2};
    double mean[4] = {0.5, 0.5, 0.5, 0.5};
    double sd[1] = {2.0};
    trace_entry e;
    memset(&e, 0, sizeof e);
    e.kind = TRACE_SAMPLE;
    e.base_address = address;
    e.name = name;
    e.dist = DIST_NORMAL;
    e.param[0] = (trace_array){mean, 4, shape, 2};
    e.param[1] = (trace_array){sd, 1, NULL, 0};
    e.value = (trace_array){value, 4, shape, 2};
    e.log_prob = -3.5;
    e.control = 1;
    append_ok(t, &e);
    append_ok(t, &e);
    cr_assert_eq(trace_array_copy(t, &t->result, value, 4, NULL, 1), 0);

    /* Scribble over every source buffer. */
    strcpy(address, "XXXX");
    strcpy(name, "YYYYY");
    for (int i = 0; i < 4; i++)
        value[i] = mean[i] = -99;
    sd[0] = -99;
    shape[0] = shape[1] = 77;

    for (size_t n = 0; n < 2; n++) {
        const trace_entry *s = &t->entries[n];
        cr_assert_str_eq(s->base_address, "addr");
        cr_assert_str_eq(s->name, "theta");
        cr_assert_eq(s->value.len, 4);
        cr_assert_eq(s->value.ndim, 2);
        cr_assert_eq(s->value.shape[0], 2);
        cr_assert_eq(s->value.shape[1], 2);
        for (int i = 0; i < 4; i++) {
            cr_assert_eq(s->value.data[i], i + 1.0);
            cr_assert_eq(s->param[0].data[i], 0.5);
        }
        cr_assert_eq(s->param[1].data[0], 2.0);
        cr_assert_eq(s->param[1].ndim, 0);
        cr_assert_null(s->param[1].shape);
        cr_assert_eq(s->log_prob, -3.5);
        cr_assert_eq(s->dist, DIST_NORMAL);
    }
    cr_assert_str_eq(t->entries[1].address, "addr__Normal__2");
    cr_assert_eq(t->result.ndim, 1);
    cr_assert_eq(t->result.shape[0], 4, "shape NULL with ndim 1 means [len]");
    cr_assert_eq(t->result.data[3], 4.0);
    cr_assert_eq((uintptr_t)t->result.data % 8, 0, "arena memory is 8-aligned");
    trace_destroy(&t);
}

Test(trace, empty_and_scalar_arrays)
{
    trace *t = new_trace();
    trace_array a;
    int32_t zero[1] = {0};
    cr_assert_eq(trace_array_copy(t, &a, NULL, 0, zero, 1), 0);
    cr_assert_eq(a.len, 0);
    cr_assert_eq(a.ndim, 1);
    cr_assert_eq(a.shape[0], 0);
    double x = 4.25;
    cr_assert_eq(trace_array_copy(t, &a, &x, 1, NULL, 0), 0);
    cr_assert_eq(a.len, 1);
    cr_assert_eq(a.ndim, 0);
    cr_assert_eq(a.data[0], 4.25);
    trace_destroy(&t);
}

Test(trace, finish_sums_by_role)
{
    trace *t = new_trace();
    double v = 0;
    trace_entry s1 = scalar_entry(TRACE_SAMPLE, "a", "", DIST_NORMAL, &v);
    s1.log_prob = -1.5;
    trace_entry fixed = scalar_entry(TRACE_SAMPLE, "b", "mu", DIST_NORMAL, &v);
    fixed.log_prob = -2.0;
    fixed.observed = 1; /* a named sample the user conditions on */
    trace_entry obs = scalar_entry(TRACE_OBSERVE, "c", "obs", DIST_NORMAL, &v);
    obs.log_prob = -0.25;
    trace_entry tag = scalar_entry(TRACE_TAG, "d", "t", DIST_NONE, &v);
    tag.log_prob = 100.0; /* must not count, whatever its flags */
    tag.observed = 1;
    trace_entry s2 = scalar_entry(TRACE_SAMPLE, "a", "", DIST_NORMAL, &v);
    s2.log_prob = -0.5;
    trace_entry gen = scalar_entry(TRACE_OBSERVE, "e", "y", DIST_NORMAL, &v);
    gen.log_prob = -7.0; /* drawn, not conditioned on: neither sum */
    gen.observed = 0;
    const trace_entry *es[] = {&s1, &fixed, &obs, &tag, &s2, &gen};
    for (size_t i = 0; i < sizeof es / sizeof es[0]; i++)
        append_ok(t, es[i]);
    cr_assert_eq(t->log_prior, 0.0, "trace_append must not touch the sums");
    t->log_proposal = -1.0;
    trace_finish(t);
    cr_assert_float_eq(t->log_prior, -2.0, 1e-15);
    cr_assert_float_eq(t->log_likelihood, -2.25, 1e-15);
    cr_assert_float_eq(t->log_proposal, -1.0, 1e-15);
    cr_assert_float_eq(t->log_weight, -2.0 - 2.25 + 1.0, 1e-15);
    /* Prior sampling: proposal = prior, weight = likelihood. */
    t->log_proposal = t->log_prior;
    trace_finish(t);
    cr_assert_float_eq(t->log_weight, -2.25, 1e-15);
    /* Idempotent. */
    trace_finish(t);
    cr_assert_float_eq(t->log_prior, -2.0, 1e-15);
    trace_destroy(&t);
}

Test(trace, finish_of_empty_trace_is_zero)
{
    trace *t = new_trace();
    t->log_proposal = 0.5;
    trace_finish(t);
    cr_assert_eq(t->log_prior, 0.0);
    cr_assert_eq(t->log_likelihood, 0.0);
    cr_assert_eq(t->log_weight, -0.5);
    trace_destroy(&t);
}

Test(trace, reset_reuses_memory_and_counters)
{
    trace *t = new_trace();
    double v = 1;
    trace_entry e = scalar_entry(TRACE_SAMPLE, "A", "x", DIST_NORMAL, &v);
    const trace_entry *first = append_ok(t, &e);
    const char *first_base = first->base_address;
    const double *first_value = first->value.data;
    for (int i = 0; i < 40; i++)
        append_ok(t, &e);
    cr_assert_str_eq(t->entries[40].address, "A__Normal__41");
    const trace_entry *entries = t->entries;
    size_t cap = t->cap_entries;
    cr_assert_eq(trace_array_copy(t, &t->result, &v, 1, NULL, 0), 0);
    t->id = 9;
    t->log_proposal = 3;
    trace_finish(t);

    trace_reset(t);
    cr_assert_eq(t->n_entries, 0);
    cr_assert_eq(t->result.len, 0);
    cr_assert_null(t->result.data);
    cr_assert_eq(t->id, 0);
    cr_assert_eq(t->log_prior, 0.0);
    cr_assert_eq(t->log_proposal, 0.0);
    cr_assert_eq(t->log_weight, 0.0);
    cr_assert_null(trace_find_name(t, "x"));
    cr_assert_eq(t->cap_entries, cap, "the entries array is kept");
    cr_assert_eq(t->entries, entries);

    const trace_entry *again = append_ok(t, &e);
    cr_assert_str_eq(again->address, "A__Normal__1", "counters restart after reset");
    /* The arena is rewound, not freed: the same allocations land in the same place. */
    cr_assert_eq(again->base_address, first_base);
    cr_assert_eq(again->value.data, first_value);
    for (int round = 0; round < 100; round++) {
        trace_reset(t);
        for (int i = 0; i < 41; i++)
            append_ok(t, &e);
        cr_assert_eq(t->entries, entries);
        cr_assert_eq(t->entries[0].base_address, first_base);
    }
    cr_assert_str_eq(t->entries[40].address, "A__Normal__41");
    trace_destroy(&t);
}

Test(trace, copy_is_deep_and_continues_numbering)
{
    trace *src = new_trace(), *dst = new_trace();
    double x[3] = {1.5, -2.5, 3.5};
    int32_t shape[1] = {3};
    trace_entry e = scalar_entry(TRACE_SAMPLE, "A", "theta", DIST_NORMAL, x);
    e.value = (trace_array){x, 3, shape, 1};
    e.log_prob = -4.0;
    append_ok(src, &e);
    append_ok(src, &e);
    trace_entry o = scalar_entry(TRACE_OBSERVE, "B", "obs", DIST_NORMAL, &x[1]);
    o.log_prob = -1.0;
    append_ok(src, &o);
    cr_assert_eq(trace_array_copy(src, &src->result, x, 2, NULL, 1), 0);
    src->id = 42;
    src->log_proposal = -8.0;
    trace_finish(src);

    /* dst had content of its own: it is reset first. */
    append_ok(dst, &o);
    append_ok(dst, &o);
    cr_assert_eq(trace_copy(dst, src), 0);
    cr_assert_eq(trace_copy(dst, dst), 0, "copying onto itself is a no-op");

    trace_reset(src); /* the copy shares nothing with src */
    append_ok(src, &o);
    trace_destroy(&src);

    cr_assert_eq(dst->n_entries, 3);
    cr_assert_eq(dst->id, 42);
    cr_assert_float_eq(dst->log_prior, -8.0, 1e-15);
    cr_assert_float_eq(dst->log_likelihood, -1.0, 1e-15);
    cr_assert_float_eq(dst->log_proposal, -8.0, 1e-15);
    cr_assert_float_eq(dst->log_weight, -1.0, 1e-15);
    cr_assert_eq(dst->result.len, 2);
    cr_assert_eq(dst->result.data[1], -2.5);
    cr_assert_str_eq(dst->entries[0].address, "A__Normal__1");
    cr_assert_str_eq(dst->entries[1].address, "A__Normal__2");
    cr_assert_str_eq(dst->entries[2].address, "B__Normal__1");
    cr_assert_eq(dst->entries[0].instance, 1);
    cr_assert_eq(dst->entries[1].instance, 2);
    cr_assert_eq(dst->entries[2].instance, 1);
    cr_assert_str_eq(dst->entries[1].name, "theta");
    cr_assert_eq(dst->entries[1].value.shape[0], 3);
    cr_assert_eq(dst->entries[1].value.data[2], 3.5);
    cr_assert_eq(dst->entries[2].observed, 1);
    /* Counters were rebuilt, not restarted. */
    cr_assert_str_eq(append_ok(dst, &e)->address, "A__Normal__3");

    /* An entry edited after appending is copied as it is, not recomputed. */
    trace *edited = new_trace();
    cr_assert_eq(trace_copy(edited, dst), 0);
    char custom[16] = "custom";
    edited->entries[3].address = custom;
    edited->entries[3].instance = 9;
    cr_assert_eq(trace_copy(dst, edited), 0);
    strcpy(custom, "changed");
    cr_assert_str_eq(dst->entries[3].address, "custom");
    cr_assert_eq(dst->entries[3].instance, 9);
    cr_assert_str_eq(dst->entries[2].address, "B__Normal__1");
    trace_destroy(&edited);
    trace_destroy(&dst);
}

Test(trace, find_by_name_and_address)
{
    trace *t = new_trace();
    double v1 = 1, v2 = 2, v3 = 3;
    trace_entry a = scalar_entry(TRACE_SAMPLE, "A", "", DIST_NORMAL, &v1);
    trace_entry b = scalar_entry(TRACE_SAMPLE, "B", "x", DIST_NORMAL, &v2);
    trace_entry c = scalar_entry(TRACE_SAMPLE, "C", "x", DIST_NORMAL, &v3);
    append_ok(t, &a);
    append_ok(t, &b);
    append_ok(t, &c);
    const trace_entry *f = trace_find_name(t, "x");
    cr_assert_not_null(f);
    cr_assert_eq(f->value.data[0], 3.0, "the last match wins (a program reassigning x means its last value)");
    cr_assert_null(trace_find_name(t, "y"));
    cr_assert_null(trace_find_name(t, ""), "\"\" means unnamed, not a name");
    cr_assert_null(trace_find_name(t, NULL));
    f = trace_find_address(t, "C__Normal__1");
    cr_assert_not_null(f);
    cr_assert_eq(f->value.data[0], 3.0);
    cr_assert_null(trace_find_address(t, "C__Normal__2"));
    cr_assert_null(trace_find_address(t, "C"));
    trace_destroy(&t);
}

Test(trace, ten_thousand_entries)
{
    trace *t = new_trace();
    enum { N = 10000, SITES = 97 };
    char site[32];
    for (int i = 0; i < N; i++) {
        double v[3] = {i, i + 0.5, -i};
        snprintf(site, sizeof site, "site%d", i % SITES);
        trace_entry e = scalar_entry(TRACE_SAMPLE, site, (i % 1000) ? "" : "m",
                                     (i % 2) ? DIST_NORMAL : DIST_GAMMA, v);
        e.value.len = 3;
        e.log_prob = -1.0;
        append_ok(t, &e);
    }
    cr_assert_eq(t->n_entries, N);
    cr_assert_geq(t->cap_entries, N);
    char want[64];
    for (int i = 0; i < N; i++) {
        const trace_entry *e = &t->entries[i];
        /* Entries with the same site and parity come every 2*SITES steps. */
        int n = i / (2 * SITES) + 1;
        snprintf(want, sizeof want, "site%d__%s__%d", i % SITES, (i % 2) ? "Normal" : "Gamma", n);
        cr_assert_str_eq(e->address, want, "entry %d", i);
        cr_assert_eq(e->instance, (uint32_t)n);
        cr_assert_eq(e->value.data[0], (double)i);
        cr_assert_eq(e->value.data[1], i + 0.5);
        cr_assert_eq(e->value.data[2], (double)-i);
    }
    cr_assert_eq(trace_find_address(t, "site5__Normal__51"), &t->entries[5 + 50 * 194]);
    trace_finish(t);
    cr_assert_float_eq(t->log_prior, -(double)N, 1e-9);
    trace_destroy(&t);
}

Test(trace, large_arrays_beyond_a_chunk)
{
    trace *t = new_trace();
    enum { BIG = 300000 }; /* 2.4 MB: larger than any arena chunk */
    double *x = malloc(BIG * sizeof *x);
    cr_assert_not_null(x);
    for (int i = 0; i < BIG; i++)
        x[i] = i;
    double small = 7;
    trace_entry s = scalar_entry(TRACE_SAMPLE, "s", "", DIST_NORMAL, &small);
    trace_entry b = scalar_entry(TRACE_SAMPLE, "b", "big", DIST_NORMAL, x);
    b.value.len = BIG;
    for (int round = 0; round < 3; round++) {
        trace_reset(t);
        for (int i = 0; i < 3; i++) {
            append_ok(t, &s);
            append_ok(t, &b);
        }
        const trace_entry *e = trace_find_name(t, "big");
        cr_assert_eq(e->value.len, BIG);
        cr_assert_eq(e->value.data[BIG - 1], BIG - 1.0);
        cr_assert_eq(t->entries[4].value.data[0], 7.0);
        cr_assert_eq(t->entries[5].value.data[12345], 12345.0);
    }
    free(x);
    trace_destroy(&t);
}

Test(trace, destroy_null_is_safe)
{
    trace *t = NULL;
    trace_destroy(&t);
    trace_destroy(NULL);
}

Test(trace, swap_exchanges_contents_and_counters)
{
    trace *a = new_trace(), *b = new_trace();
    double x = 1.5, y = -2.0;
    trace_entry e = scalar_entry(TRACE_SAMPLE, "site", "x", DIST_NORMAL, &x);
    append_ok(a, &e);
    append_ok(a, &e);
    e = scalar_entry(TRACE_SAMPLE, "other", "y", DIST_NORMAL, &y);
    append_ok(b, &e);
    trace_swap(a, b);
    cr_assert_eq(a->n_entries, 1);
    cr_assert_eq(b->n_entries, 2);
    cr_assert_str_eq(a->entries[0].address, "other__Normal__1");
    cr_assert_eq(b->entries[1].value.data[0], 1.5);
    /* The address counters moved with the entries. */
    e = scalar_entry(TRACE_SAMPLE, "site", "x", DIST_NORMAL, &x);
    cr_assert_str_eq(append_ok(b, &e)->address, "site__Normal__3");
    cr_assert_str_eq(append_ok(a, &e)->address, "site__Normal__1");
    trace_destroy(&a);
    trace_destroy(&b);
}

Test(trace, tangent_is_copied_deeply_and_kept_by_copies)
{
    trace *t = new_trace(), *c = new_trace();
    double x = 0.5;
    char n0[8] = "mu", n1[8] = "sigma";
    const char *names[2] = {n0, n1};
    double d0[2] = {1.0, -2.0}, d1[2] = {0.25, 4.0};
    trace_tangent tg = {2, names, {d0, d1}, {2, 2}};
    trace_entry e = scalar_entry(TRACE_SAMPLE, "A", "z", DIST_NORMAL, &x);
    e.tangent = &tg;
    append_ok(t, &e);
    /* none sent, and an empty one (declared theta-independent) */
    trace_entry f = scalar_entry(TRACE_OBSERVE, "B", "o", DIST_NORMAL, &x);
    append_ok(t, &f);
    trace_tangent empty = {0, NULL, {NULL, NULL}, {0, 0}};
    f.tangent = &empty;
    append_ok(t, &f);
    /* the caller's arrays and names change afterwards: the trace keeps its copy */
    d0[0] = 99;
    d1[1] = 99;
    strcpy(n0, "x");
    strcpy(n1, "y");
    cr_assert_eq(trace_copy(c, t), 0);
    trace_destroy(&t);
    const trace_tangent *g = c->entries[0].tangent;
    cr_assert_not_null(g);
    cr_assert_neq(g, &tg);
    cr_assert_eq(g->n_theta, 2);
    cr_assert_str_eq(g->theta[0], "mu");
    cr_assert_str_eq(g->theta[1], "sigma");
    cr_assert(g->len[0] == 2 && g->len[1] == 2);
    cr_assert(g->d[0][0] == 1.0 && g->d[0][1] == -2.0 && g->d[1][0] == 0.25 && g->d[1][1] == 4.0);
    cr_assert_null(c->entries[1].tangent);
    const trace_tangent *h = c->entries[2].tangent;
    cr_assert_not_null(h);
    cr_assert(h->n_theta == 0 && h->len[0] == 0 && h->len[1] == 0 && !h->d[0] && !h->d[1]);
    /* reset and reuse: a new entry without tangent has none */
    trace_reset(c);
    f.tangent = NULL;
    cr_assert_null(append_ok(c, &f)->tangent);
    trace_destroy(&c);
}
