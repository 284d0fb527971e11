/* addresses.h — a census of the addresses in a set of traces, for `ppxd
 * info`: which draws a simulator makes, so that a user of a program that
 * names nothing can find what to pass to --latent / export --names.
 *
 * Entries are grouped by address without the instance number: every
 * "A__Normal__1", "A__Normal__2", ... counts under "A__Normal".  Per group:
 * the statement kind, distribution, a name if any entry had one, the control
 * and observation flags seen, the number of entries, the number of traces
 * that hold at least one, and the most instances in one trace.
 * Ownership: the census owns its strings.
 */
#ifndef PPX_ADDRESSES_H
#define PPX_ADDRESSES_H

#include <stdint.h>
#include <stdio.h>
#include "trace.h"

typedef struct address_group {
    char *address;        /* without the __n instance suffix */
    char *name;           /* first non-empty name seen, or "" */
    trace_kind kind;
    dist_kind dist;
    int controlled, uncontrolled;         /* Sample control flags seen */
    int latent, conditioned, drawn;       /* observation states seen */
    uint64_t entries;
    uint64_t traces;
    uint32_t max_instances;
    uint64_t last_trace_;  /* internal: the trace that last counted */
} address_group;

typedef struct address_census address_census;

address_census *address_census_new(void);
void address_census_destroy(address_census **c);
/* Count the entries of one trace.  0, or -1 out of memory. */
int address_census_add(address_census *c, const trace *t);
/* Groups in order of first appearance. */
size_t address_census_count(const address_census *c);
const address_group *address_census_group(const address_census *c, size_t i);
/* The table for `ppxd info`: one line a group (at most max_rows; a note
 * says how many more). */
void address_census_print(const address_census *c, FILE *f, size_t max_rows);

#endif
