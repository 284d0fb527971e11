/* select.c — names, addresses, patterns and @result as trace columns (see select.h). */
#include "select.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *spec;
    select_kind kind;
} sums[] = {{"@log_weight", SELECT_LOG_WEIGHT},
            {"@log_prior", SELECT_LOG_PRIOR},
            {"@log_likelihood", SELECT_LOG_LIKELIHOOD},
            {"@log_proposal", SELECT_LOG_PROPOSAL}};

static const trace_array *scalar(select_scratch *sc, double v)
{
    sc->v = v;
    sc->a.data = &sc->v;
    sc->a.len = 1;
    sc->a.shape = NULL;
    sc->a.ndim = 0;
    return &sc->a;
}

const trace_array *select_value(const trace *t, const select_key *k, select_scratch *sc)
{
    const trace_entry *e = NULL;
    switch (k->kind) {
    case SELECT_RESULT: return t->result.len ? &t->result : NULL;
    case SELECT_LOG_WEIGHT: return scalar(sc, t->log_weight);
    case SELECT_LOG_PRIOR: return scalar(sc, t->log_prior);
    case SELECT_LOG_LIKELIHOOD: return scalar(sc, t->log_likelihood);
    case SELECT_LOG_PROPOSAL: return scalar(sc, t->log_proposal);
    case SELECT_NAME: e = trace_find_name(t, k->key); break;
    case SELECT_ADDRESS: e = trace_find_address(t, k->key); break;
    }
    return e && e->value.len ? &e->value : NULL;
}

typedef struct key_list {
    select_key *v;
    size_t n, cap;
} key_list;

static int push(key_list *l, select_kind kind, const char *key)
{
    for (size_t i = 0; i < l->n; i++) /* a column once, however many specs select it */
        if (l->v[i].kind == kind && strcmp(l->v[i].key, key) == 0) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        select_key *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n].key = strdup(key))) return -1;
    l->v[l->n++].kind = kind;
    return 0;
}

static int is_glob(const char *s) { return strpbrk(s, "*?[") != NULL; }

/* Every address of t the pattern selects, pushed in trace order; how many. */
static long push_pattern(key_list *l, const char *spec, const trace *t)
{
    size_t len = strlen(spec);
    int glob = is_glob(spec);
    long n = 0;
    for (size_t i = 0; i < t->n_entries; i++) {
        const trace_entry *e = &t->entries[i];
        if (!e->value.len) continue;
        int hit = glob ? fnmatch(spec, e->address, 0) == 0 : strncmp(e->address, spec, len) == 0;
        if (!hit) continue;
        if (push(l, SELECT_ADDRESS, e->address) < 0) return -1;
        n++;
    }
    return n;
}

int select_expand(const char *const *specs, size_t n_specs, const trace *t, select_key **keys, size_t *n_keys,
                  char *err, size_t err_len)
{
    key_list l = {0};
    for (size_t i = 0; i < n_specs; i++) {
        const char *s = specs[i];
        int rc, sum = -1;
        for (size_t j = 0; j < sizeof sums / sizeof *sums; j++)
            if (strcmp(s, sums[j].spec) == 0) sum = (int)j;
        if (sum >= 0) {
            rc = push(&l, sums[sum].kind, s);
        } else if (strcmp(s, SELECT_RESULT_SPEC) == 0) {
            if (!t->result.len) {
                snprintf(err, err_len, "%s: the trace has no return value (RunResult is empty)", s);
                goto fail;
            }
            rc = push(&l, SELECT_RESULT, s);
        } else if (trace_find_name(t, s)) {
            rc = push(&l, SELECT_NAME, s);
        } else if (trace_find_address(t, s)) {
            rc = push(&l, SELECT_ADDRESS, s);
        } else {
            long got = *s ? push_pattern(&l, s, t) : 0;
            if (got == 0) {
                snprintf(err, err_len,
                         "'%s' matches no name, address or address pattern of the trace (ppxd info FILE lists the addresses)",
                         s);
                goto fail;
            }
            rc = got < 0 ? -1 : 0;
        }
        if (rc < 0) {
            snprintf(err, err_len, "out of memory");
            goto fail;
        }
    }
    *keys = l.v;
    *n_keys = l.n;
    return 0;
fail:
    select_keys_free(&l.v, l.n);
    return -1;
}

int select_default(const trace *t, size_t max_addresses, select_key **keys, size_t *n_keys, size_t *n_more)
{
    key_list l = {0};
    *n_more = 0;
    for (size_t i = 0; i < t->n_entries; i++) {
        const trace_entry *e = &t->entries[i];
        if (e->kind == TRACE_SAMPLE && !e->observed && e->name[0] && push(&l, SELECT_NAME, e->name) < 0) goto fail;
    }
    if (l.n == 0) {
        if (t->result.len && push(&l, SELECT_RESULT, SELECT_RESULT_SPEC) < 0) goto fail;
        size_t shown = 0;
        for (size_t i = 0; i < t->n_entries; i++) {
            const trace_entry *e = &t->entries[i];
            if (e->kind != TRACE_SAMPLE || e->observed || !e->control || !e->value.len) continue;
            if (shown == max_addresses) {
                (*n_more)++;
                continue;
            }
            if (push(&l, SELECT_ADDRESS, e->address) < 0) goto fail;
            shown++;
        }
    }
    *keys = l.v;
    *n_keys = l.n;
    return 0;
fail:
    select_keys_free(&l.v, l.n);
    return -1;
}

void select_keys_free(select_key **keys, size_t n_keys)
{
    if (!keys || !*keys) return;
    for (size_t i = 0; i < n_keys; i++) free((*keys)[i].key);
    free(*keys);
    *keys = NULL;
}
