/* traces.c — `ppxd export` (values of a trace file to .npy/.csv) and `ppxd
 * info` (what a trace file holds, and whether it is damaged). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addresses.h"
#include "cli.h"
#include "export.h"
#include "jobs.h"
#include "stats.h"
#include "trace_store.h"

int cmd_export(cli *c)
{
    if (!c->file) return cli_die("export needs a trace file", NULL);
    if (!c->names || !c->out) return cli_die("export needs --names A,B,... and -o OUT.npy|OUT.csv", NULL);
    char *names_buf = strdup(c->names), *save = NULL;
    const char *names[256];
    size_t n_names = 0;
    for (char *tok = strtok_r(names_buf, ",", &save); tok && n_names < 256; tok = strtok_r(NULL, ",", &save))
        names[n_names++] = tok;
    char err[256];
    trace_reader *r = trace_reader_open(c->file, err, sizeof err);
    if (!r) {
        free(names_buf);
        return cli_die("cannot read", err);
    }
    export_table *x = export_table_new(names, n_names);
    trace *t = trace_new();
    int rc = 0, got;
    uint64_t skipped = 0;
    while ((got = trace_reader_next(r, t)) == 1) {
        if (export_table_add(x, t, err, sizeof err) < 0) {
            if (!skipped) fprintf(stderr, "ppxd: skipping traces: %s\n", err);
            skipped++;
        }
    }
    trace_reader_stats st = trace_reader_get_stats(r);
    if (got < 0) rc = 1;
    if (st.damaged_regions)
        fprintf(stderr, "ppxd: %s: %llu bytes of damage skipped in %llu place%s\n", c->file,
                (unsigned long long)st.skipped_bytes, (unsigned long long)st.damaged_regions,
                st.damaged_regions == 1 ? "" : "s");
    if (st.truncated)
        fprintf(stderr, "ppxd: %s: damaged tail of %llu bytes ignored after %llu records\n", c->file,
                (unsigned long long)st.bad_tail_bytes, (unsigned long long)st.records);
    size_t ol = strlen(c->out);
    int csv = ol > 4 && strcmp(c->out + ol - 4, ".csv") == 0;
    if (rc == 0 && (csv ? export_table_write_csv(x, c->out, err, sizeof err)
                        : export_table_write_npy(x, c->out, err, sizeof err)) < 0) {
        fprintf(stderr, "ppxd: %s\n", err);
        rc = 1;
    }
    if (rc == 0)
        fprintf(stderr, "ppxd: wrote %zu rows x %zu columns to %s (%llu traces skipped)\n", export_table_rows(x),
                export_table_cols(x), c->out, (unsigned long long)skipped);
    trace_destroy(&t);
    export_table_destroy(&x);
    trace_reader_close(&r);
    free(names_buf);
    return rc;
}

int cmd_info(cli *c)
{
    if (!c->file) return cli_die("info needs a trace file", NULL);
    char err[256];
    trace_reader *r = trace_reader_open(c->file, err, sizeof err);
    if (!r) return cli_die("cannot read", err);
    trace *t = trace_new();
    address_census *ac = address_census_new();
    int got, rc = 0;
    uint64_t entries = 0;
    while ((got = trace_reader_next(r, t)) == 1) {
        entries += t->n_entries;
        if (rc == 0 && address_census_add(ac, t) < 0) rc = -1;
    }
    trace_reader_stats st = trace_reader_get_stats(r);
    int damaged = st.truncated || st.damaged_regions;
    printf("%s: %llu traces, %llu entries", c->file, (unsigned long long)st.records, (unsigned long long)entries);
    if (st.damaged_regions)
        printf(", %llu bytes of damage skipped in %llu place%s", (unsigned long long)st.skipped_bytes,
               (unsigned long long)st.damaged_regions, st.damaged_regions == 1 ? "" : "s");
    if (st.truncated) printf(", damaged tail of %llu bytes ignored", (unsigned long long)st.bad_tail_bytes);
    printf("%s\n", damaged ? "" : ", no damage");
    if (rc == 0 && address_census_count(ac)) {
        /* What a simulator draws, named or not: the addresses to give --latent
         * or export --names (full address: replace n by the instance). */
        printf("\n");
        address_census_print(ac, stdout, 1000);
    }
    if (rc < 0) fprintf(stderr, "ppxd: out of memory counting addresses\n");
    address_census_destroy(&ac);
    trace_destroy(&t);
    trace_reader_close(&r);
    /* Exit 1 on damage too: scripts checking a file must not take a
     * damaged one for a sound one. */
    if (got < 0) return 1;
    if (damaged) fprintf(stderr, "ppxd: %s is damaged: every valid record was read, the damage skipped\n", c->file);
    return damaged ? 1 : 0;
}

