/* trace.c — execution traces: one arena per trace, a growing entries array
 * and a per-trace address-instance counter.
 *
 * Memory.  Strings and arrays live in an arena of chunks; a chunk is never
 * moved or freed before trace_destroy(), so pointers into it stay valid, and
 * trace_reset() only rewinds the chunks so the next trace reuses them.  The
 * entries array is a separate malloc'd block (it must be contiguous for
 * t->entries[i]) that doubles when full and is also kept across resets.
 *
 * Addresses.  Each entry's address is "A__Kind__n" where n is 1 + the number of
 * earlier entries with the same "A__Kind" prefix.  A small open-addressing
 * hash table maps the prefix to its count; its keys point at the prefixes of
 * the address strings already in the arena, so the table allocates nothing
 * per entry and is simply cleared on reset.
 */
#include "trace.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first chunk holds a typical small trace; later chunks double up to a
 * cap so a huge trace wastes at most one partly filled chunk's worth. */
enum { ARENA_FIRST_CHUNK = 16 * 1024, ARENA_MAX_CHUNK = 1024 * 1024 };
enum { ENTRIES_FIRST_CAP = 16, COUNTER_FIRST_CAP = 64 };
/* Longest kind string: "Categorical(len_probs:" + 20 digits + ")". */
enum { KIND_BUF = 64 };
/* "__" + up to 10 digits of a uint32 instance + NUL. */
enum { SUFFIX_MAX = 2 + 10 + 1 };

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size; /* usable bytes in data */
    size_t used;
    unsigned char data[];
} arena_chunk;

/* Allocations are 8-byte aligned because data starts 8-aligned (malloc gives
 * at least that) and every size is rounded up to a multiple of 8. */
_Static_assert(offsetof(arena_chunk, data) % 8 == 0, "arena chunk data must be 8-aligned");

typedef struct counter_slot {
    const char *key; /* the "A__Kind" prefix of an address in the arena; NULL = empty */
    size_t key_len;
    uint64_t hash;
    uint32_t count;
} counter_slot;

typedef struct trace_impl {
    arena_chunk *head;
    arena_chunk *cur;  /* chunks after cur are unused (used == 0) */
    arena_chunk *tail;
    counter_slot *slots;
    size_t n_slots;    /* power of two, or 0 before the first append */
    size_t n_used;
} trace_impl;

/* ---- arena ---------------------------------------------------------------- */

static void *arena_alloc(trace_impl *im, size_t n)
{
    if (n > SIZE_MAX - 64)
        return NULL;
    n = (n + 7) & ~(size_t)7;
    arena_chunk *c = im->cur;
    /* Move forward to a chunk with room; chunks skipped here stay unused for
     * this trace, a small waste that keeps allocation O(1) amortised. */
    while (c && c->size - c->used < n)
        c = c->next;
    if (!c) {
        size_t size = ARENA_FIRST_CHUNK;
        if (im->tail) {
            size = im->tail->size * 2;
            if (size > ARENA_MAX_CHUNK)
                size = ARENA_MAX_CHUNK;
        }
        if (size < n)
            size = n;
        if (size > SIZE_MAX - sizeof(arena_chunk))
            return NULL;
        c = malloc(sizeof(arena_chunk) + size);
        if (!c)
            return NULL;
        c->next = NULL;
        c->size = size;
        c->used = 0;
        if (im->tail)
            im->tail->next = c;
        else
            im->head = c;
        im->tail = c;
    }
    im->cur = c;
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_reset(trace_impl *im)
{
    for (arena_chunk *c = im->head; c; c = c->next)
        c->used = 0;
    im->cur = im->head;
}

static char *arena_strdup(trace_impl *im, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = arena_alloc(im, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* ---- address counters ------------------------------------------------------ */

/* FNV-1a: short keys, no adversary (addresses come from the simulator we run). */
static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static counter_slot *counter_find(counter_slot *slots, size_t n_slots, const char *key,
                                  size_t key_len, uint64_t hash)
{
    size_t mask = n_slots - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        counter_slot *s = &slots[i];
        if (!s->key)
            return s;
        if (s->hash == hash && s->key_len == key_len && memcmp(s->key, key, key_len) == 0)
            return s;
    }
}

/* Make room for one more key (load factor <= 1/2) before anything else of an
 * append is committed, so a failure here leaves the table untouched. */
static int counter_reserve(trace_impl *im)
{
    if (im->n_slots && (im->n_used + 1) * 2 <= im->n_slots)
        return 0;
    size_t n = im->n_slots ? im->n_slots * 2 : COUNTER_FIRST_CAP;
    if (n > SIZE_MAX / sizeof(counter_slot))
        return -1;
    counter_slot *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < im->n_slots; i++) {
        counter_slot *old = &im->slots[i];
        if (old->key)
            *counter_find(slots, n, old->key, old->key_len, old->hash) = *old;
    }
    free(im->slots);
    im->slots = slots;
    im->n_slots = n;
    return 0;
}

/* Count one more occurrence of key (which must stay valid until reset) and
 * return the new count.  counter_reserve() must have succeeded first. */
static uint32_t counter_bump(trace_impl *im, const char *key, size_t key_len)
{
    uint64_t hash = hash_bytes(key, key_len);
    counter_slot *s = counter_find(im->slots, im->n_slots, key, key_len, hash);
    if (!s->key) {
        s->key = key;
        s->key_len = key_len;
        s->hash = hash;
        s->count = 0;
        im->n_used++;
    }
    return ++s->count;
}

/* ---- public ----------------------------------------------------------------- */

trace *trace_new(void)
{
    trace *t = calloc(1, sizeof *t);
    trace_impl *im = calloc(1, sizeof *im);
    if (!t || !im) {
        free(t);
        free(im);
        return NULL;
    }
    t->impl_ = im;
    return t;
}

void trace_destroy(trace **tp)
{
    if (!tp || !*tp)
        return;
    trace *t = *tp;
    trace_impl *im = t->impl_;
    arena_chunk *c = im->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(im->slots);
    free(im);
    free(t->entries);
    free(t);
    *tp = NULL;
}

void trace_reset(trace *t)
{
    trace_impl *im = t->impl_;
    arena_reset(im);
    if (im->n_slots)
        memset(im->slots, 0, im->n_slots * sizeof *im->slots);
    im->n_used = 0;
    t->n_entries = 0;
    memset(&t->result, 0, sizeof t->result);
    t->log_prior = 0;
    t->log_likelihood = 0;
    t->log_proposal = 0;
    t->log_weight = 0;
    t->id = 0;
}

int trace_array_copy(trace *t, trace_array *dst, const double *data, size_t len,
                     const int32_t *shape, size_t ndim)
{
    trace_impl *im = t->impl_;
    assert(data || len == 0);
    assert(shape || ndim <= 1);
    if (len > SIZE_MAX / sizeof(double) || ndim > SIZE_MAX / sizeof(int32_t))
        return -1;
    double *d = NULL;
    int32_t *s = NULL;
    if (len) {
        d = arena_alloc(im, len * sizeof *d);
        if (!d)
            return -1;
        memcpy(d, data, len * sizeof *d);
    }
    if (ndim) {
        s = arena_alloc(im, ndim * sizeof *s);
        if (!s)
            return -1;
        if (shape)
            memcpy(s, shape, ndim * sizeof *s);
        else
            s[0] = (int32_t)len; /* ndim 1 without a shape: [len] */
    }
    dst->data = d;
    dst->len = len;
    dst->shape = s;
    dst->ndim = ndim;
    return 0;
}

void trace_address_kind(const trace_entry *e, char *buf, size_t len)
{
    if (!len)
        return;
    if (e->kind == TRACE_TAG)
        snprintf(buf, len, "Tag");
    else if (e->dist == DIST_CATEGORICAL)
        snprintf(buf, len, "Categorical(len_probs:%zu)", e->k);
    else
        /* dist_kind_name gives "None" for DIST_NONE and out-of-range kinds. */
        snprintf(buf, len, "%s", dist_kind_name(e->dist));
}

static int entries_reserve(trace *t, size_t n)
{
    if (n <= t->cap_entries)
        return 0;
    size_t cap = t->cap_entries ? t->cap_entries : ENTRIES_FIRST_CAP;
    while (cap < n) {
        if (cap > SIZE_MAX / 2 / sizeof(trace_entry))
            return -1;
        cap *= 2;
    }
    trace_entry *p = realloc(t->entries, cap * sizeof *p);
    if (!p)
        return -1;
    t->entries = p;
    t->cap_entries = cap;
    return 0;
}

static int copy_array(trace *t, trace_array *dst, const trace_array *src)
{
    return trace_array_copy(t, dst, src->data, src->len, src->shape, src->ndim);
}

/* A deep copy of a tangent into the arena, or NULL on allocation failure. */
static const trace_tangent *copy_tangent(trace_impl *im, const trace_tangent *src)
{
    trace_tangent *tg = arena_alloc(im, sizeof *tg);
    if (!tg)
        return NULL;
    memset(tg, 0, sizeof *tg);
    tg->n_theta = src->n_theta;
    if (src->n_theta) {
        const char **names = arena_alloc(im, src->n_theta * sizeof *names);
        if (!names)
            return NULL;
        for (size_t i = 0; i < src->n_theta; i++)
            if (!(names[i] = arena_strdup(im, src->theta[i])))
                return NULL;
        tg->theta = names;
    }
    for (int j = 0; j < 2; j++) {
        tg->len[j] = src->len[j];
        if (!src->len[j])
            continue;
        double *d = arena_alloc(im, src->len[j] * sizeof *d);
        if (!d)
            return NULL;
        memcpy(d, src->d[j], src->len[j] * sizeof *d);
        tg->d[j] = d;
    }
    return tg;
}

trace_entry *trace_append(trace *t, const trace_entry *e)
{
    trace_impl *im = t->impl_;
    assert(e->kind == TRACE_SAMPLE || e->kind == TRACE_OBSERVE || e->kind == TRACE_TAG);
    /* Everything that can fail happens before the counter is bumped and
     * n_entries grows, so a failed append leaves the trace as it was (apart
     * from unreachable arena bytes, reclaimed at reset). */
    if (entries_reserve(t, t->n_entries + 1) < 0 || counter_reserve(im) < 0)
        return NULL;

    const char *base = e->base_address ? e->base_address : "";
    const char *name = e->name ? e->name : "";
    char kind[KIND_BUF];
    trace_address_kind(e, kind, sizeof kind);
    size_t base_len = strlen(base), kind_len = strlen(kind);
    size_t prefix_len = base_len + 2 + kind_len;
    if (base_len > SIZE_MAX - 2 - kind_len - SUFFIX_MAX)
        return NULL;
    char *address = arena_alloc(im, prefix_len + SUFFIX_MAX);
    if (!address)
        return NULL;
    memcpy(address, base, base_len);
    memcpy(address + base_len, "__", 2);
    memcpy(address + base_len + 2, kind, kind_len);
    address[prefix_len] = '\0';

    trace_entry out = *e;
    out.base_address = arena_strdup(im, base);
    out.name = arena_strdup(im, name);
    if (!out.base_address || !out.name || copy_array(t, &out.param[0], &e->param[0]) < 0 ||
        copy_array(t, &out.param[1], &e->param[1]) < 0 || copy_array(t, &out.value, &e->value) < 0)
        return NULL;
    if (e->tangent && !(out.tangent = copy_tangent(im, e->tangent)))
        return NULL;

    out.instance = counter_bump(im, address, prefix_len);
    snprintf(address + prefix_len, SUFFIX_MAX, "__%" PRIu32, out.instance);
    out.address = address;
    trace_entry *slot = &t->entries[t->n_entries++];
    *slot = out;
    return slot;
}

void trace_finish(trace *t)
{
    double prior = 0, likelihood = 0;
    for (size_t i = 0; i < t->n_entries; i++) {
        const trace_entry *e = &t->entries[i];
        if (e->kind == TRACE_TAG)
            continue;
        if (e->observed == TRACE_CONDITIONED)
            likelihood += e->log_prob;
        else if (e->observed == TRACE_LATENT && e->kind == TRACE_SAMPLE)
            prior += e->log_prob;
        /* A drawn Observe (TRACE_DRAWN: simulated data, e.g. for training) is
         * neither prior nor likelihood. */
    }
    t->log_prior = prior;
    t->log_likelihood = likelihood;
    t->log_weight = prior + likelihood - t->log_proposal;
}

const trace_entry *trace_find_name(const trace *t, const char *name)
{
    /* "" marks an unnamed entry, so it never names one. */
    if (!name || !name[0])
        return NULL;
    for (size_t i = t->n_entries; i-- > 0;)
        if (strcmp(t->entries[i].name, name) == 0)
            return &t->entries[i];
    return NULL;
}

const trace_entry *trace_find_address(const trace *t, const char *address)
{
    if (!address)
        return NULL;
    for (size_t i = 0; i < t->n_entries; i++)
        if (strcmp(t->entries[i].address, address) == 0)
            return &t->entries[i];
    return NULL;
}

int trace_copy(trace *dst, const trace *src)
{
    if (dst == src)
        return 0;
    trace_reset(dst);
    if (entries_reserve(dst, src->n_entries) < 0)
        goto fail;
    for (size_t i = 0; i < src->n_entries; i++) {
        const trace_entry *se = &src->entries[i];
        /* Appending recomputes the address and rebuilds dst's counters, so
         * later appends to the copy continue the numbering. */
        trace_entry *de = trace_append(dst, se);
        if (!de)
            goto fail;
        /* A producer may have edited an entry after appending it: the copy
         * keeps what src holds. */
        if (strcmp(de->address, se->address) != 0) {
            de->address = arena_strdup(dst->impl_, se->address);
            if (!de->address)
                goto fail;
        }
        de->instance = se->instance;
    }
    if (copy_array(dst, &dst->result, &src->result) < 0)
        goto fail;
    dst->log_prior = src->log_prior;
    dst->log_likelihood = src->log_likelihood;
    dst->log_proposal = src->log_proposal;
    dst->log_weight = src->log_weight;
    dst->id = src->id;
    return 0;
fail:
    trace_reset(dst);
    return -1;
}

void trace_swap(trace *a, trace *b)
{
    trace tmp = *a;
    *a = *b;
    *b = tmp;
}
