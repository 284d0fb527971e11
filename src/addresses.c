/* addresses.c — address census of traces (see addresses.h). */
#include "addresses.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct address_census {
    address_group *g;
    size_t n, cap;
    int32_t *table;      /* group index + 1 by hash of the address; 0 empty */
    size_t table_cap;    /* power of two, > 2n */
    uint64_t traces;     /* traces added (also the id of the current one) */
};

static uint64_t hash_n(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Length of the address without its "__<digits>" instance suffix. */
static size_t base_len(const char *a)
{
    size_t len = strlen(a), i = len;
    while (i > 0 && isdigit((unsigned char)a[i - 1])) i--;
    if (i < len && i >= 2 && a[i - 1] == '_' && a[i - 2] == '_') return i - 2;
    return len;
}

address_census *address_census_new(void) { return calloc(1, sizeof(address_census)); }

void address_census_destroy(address_census **cp)
{
    if (!cp || !*cp) return;
    address_census *c = *cp;
    for (size_t i = 0; i < c->n; i++) {
        free(c->g[i].address);
        free(c->g[i].name);
    }
    free(c->g);
    free(c->table);
    free(c);
    *cp = NULL;
}

static int rehash(address_census *c)
{
    size_t cap = c->table_cap ? c->table_cap : 64;
    while (cap <= 2 * (c->n + 1)) cap <<= 1;
    if (cap == c->table_cap) return 0;
    int32_t *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < c->n; i++) {
        size_t h = hash_n(c->g[i].address, strlen(c->g[i].address)) & (cap - 1);
        while (t[h]) h = (h + 1) & (cap - 1);
        t[h] = (int32_t)i + 1;
    }
    free(c->table);
    c->table = t;
    c->table_cap = cap;
    return 0;
}

static address_group *find_or_add(address_census *c, const trace_entry *e)
{
    size_t len = base_len(e->address);
    if (rehash(c) < 0) return NULL;
    size_t h = hash_n(e->address, len) & (c->table_cap - 1);
    while (c->table[h]) {
        address_group *g = &c->g[c->table[h] - 1];
        if (strlen(g->address) == len && memcmp(g->address, e->address, len) == 0) return g;
        h = (h + 1) & (c->table_cap - 1);
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        address_group *g = realloc(c->g, cap * sizeof *g);
        if (!g) return NULL;
        c->g = g;
        c->cap = cap;
    }
    address_group *g = &c->g[c->n];
    memset(g, 0, sizeof *g);
    g->address = strndup(e->address, len);
    g->name = strdup("");
    if (!g->address || !g->name) {
        free(g->address);
        free(g->name);
        return NULL;
    }
    g->kind = e->kind;
    g->dist = e->dist;
    c->table[h] = (int32_t)++c->n;
    return g;
}

int address_census_add(address_census *c, const trace *t)
{
    c->traces++;
    for (size_t i = 0; i < t->n_entries; i++) {
        const trace_entry *e = &t->entries[i];
        address_group *g = find_or_add(c, e);
        if (!g) return -1;
        if (!g->name[0] && e->name[0]) {
            char *nm = strdup(e->name);
            if (!nm) return -1;
            free(g->name);
            g->name = nm;
        }
        if (e->kind == TRACE_SAMPLE) {
            if (e->control) g->controlled = 1;
            else g->uncontrolled = 1;
        }
        if (e->observed == TRACE_LATENT) g->latent = 1;
        else if (e->observed == TRACE_CONDITIONED) g->conditioned = 1;
        else g->drawn = 1;
        g->entries++;
        if (g->last_trace_ != c->traces) {
            g->last_trace_ = c->traces;
            g->traces++;
        }
        if (e->instance > g->max_instances) g->max_instances = e->instance;
    }
    return 0;
}

size_t address_census_count(const address_census *c) { return c->n; }
const address_group *address_census_group(const address_census *c, size_t i) { return i < c->n ? &c->g[i] : NULL; }

static const char *kind_word(const address_group *g)
{
    if (g->kind == TRACE_TAG) return "tag";
    if (g->kind == TRACE_OBSERVE) return g->conditioned ? (g->drawn ? "observe (given/drawn)" : "observe") : "observe (drawn)";
    if (g->conditioned && !g->latent) return "sample (conditioned)";
    return g->uncontrolled ? (g->controlled ? "sample (control mixed)" : "sample (control=false)") : "sample";
}

void address_census_print(const address_census *c, FILE *f, size_t max_rows)
{
    int width = 7;
    for (size_t i = 0; i < c->n && i < max_rows; i++)
        if ((int)strlen(c->g[i].address) + 4 > width) width = (int)strlen(c->g[i].address) + 4;
    fprintf(f, "%-*s %-22s %-12s %12s %12s  %s\n", width, "address", "statement", "name", "entries", "traces",
            "instances");
    for (size_t i = 0; i < c->n && i < max_rows; i++) {
        const address_group *g = &c->g[i];
        char addr[1024], inst[32];
        snprintf(addr, sizeof addr, "%s__%s", g->address, g->max_instances > 1 ? "n" : "1");
        if (g->max_instances > 1) snprintf(inst, sizeof inst, "1..%u", g->max_instances);
        else snprintf(inst, sizeof inst, "1");
        fprintf(f, "%-*s %-22s %-12s %12llu %12llu  %s\n", width, addr, kind_word(g), g->name[0] ? g->name : "-",
                (unsigned long long)g->entries, (unsigned long long)g->traces, inst);
    }
    if (c->n > max_rows) fprintf(f, "(%zu more addresses not shown)\n", c->n - max_rows);
}
