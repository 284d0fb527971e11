/* fuzz_trace_file.c — the .ppxt reader (src/trace_store.h) on arbitrary
 * files, with resynchronisation after damage.  The input's first byte
 * chooses whether a valid version 2 or version 1 header goes first (so that
 * most inputs reach the records); every record read is written again with
 * trace_writer and must read back the same. */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "trace_store.h"

static void fd_path(int fd, char *buf, size_t len)
{
    snprintf(buf, len, "/proc/self/fd/%d", fd);
}

static void header(uint8_t h[32], uint32_t version)
{
    memset(h, 0, 32);
    memcpy(h, "PPXTRACE", 8);
    h[8] = (uint8_t)version;
    h[12] = 32;
}

static int same_array(const trace_array *a, const trace_array *b)
{
    return a->len == b->len && a->ndim == b->ndim && fuzz_same_doubles(a->data, b->data, a->len) &&
           (a->ndim == 0 || memcmp(a->shape, b->shape, a->ndim * sizeof *a->shape) == 0);
}

static void check_same(const trace *a, const trace *b)
{
    FUZZ_CHECK(a->id == b->id && a->n_entries == b->n_entries);
    FUZZ_CHECK(memcmp(&a->log_weight, &b->log_weight, sizeof(double)) == 0);
    FUZZ_CHECK(same_array(&a->result, &b->result));
    for (size_t i = 0; i < a->n_entries; i++) {
        const trace_entry *x = &a->entries[i], *y = &b->entries[i];
        FUZZ_CHECK(x->kind == y->kind && x->dist == y->dist && x->instance == y->instance);
        FUZZ_CHECK(x->control == y->control && x->observed == y->observed && x->k == y->k);
        FUZZ_CHECK(strcmp(x->address, y->address) == 0 && strcmp(x->name, y->name) == 0);
        FUZZ_CHECK(strcmp(x->base_address, y->base_address) == 0);
        FUZZ_CHECK(same_array(&x->value, &y->value) && same_array(&x->param[0], &y->param[0]) &&
                   same_array(&x->param[1], &y->param[1]));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int in = memfd_create("fuzz-in", MFD_CLOEXEC), out = memfd_create("fuzz-out", MFD_CLOEXEC);
    FUZZ_CHECK(in >= 0 && out >= 0);
    uint8_t h[32];
    int mode = data[0] % 3;
    if (mode) {
        header(h, mode == 1 ? 2 : 1);
        FUZZ_CHECK(write(in, h, 32) == 32);
    }
    if (size > 1) FUZZ_CHECK(write(in, data + 1, size - 1) == (ssize_t)(size - 1));
    char pin[64], pout[64], err[256];
    fd_path(in, pin, sizeof pin);
    fd_path(out, pout, sizeof pout);
    trace_reader *r = trace_reader_open(pin, err, sizeof err);
    if (r) {
        trace_writer *w = trace_writer_open(pout, 0, 4096, TRACE_FSYNC_NEVER, err, sizeof err);
        FUZZ_CHECK(w != NULL);
        trace *t = trace_new();
        int rc;
        uint64_t n = 0;
        while ((rc = trace_reader_next(r, t)) == 1) {
            n++;
            for (size_t i = 0; i < t->n_entries; i++) fuzz_touch(t->entries[i].address, strlen(t->entries[i].address));
            FUZZ_CHECK(trace_writer_append(w, t) == 0);
        }
        FUZZ_CHECK(rc == 0);
        trace_reader_stats st = trace_reader_get_stats(r);
        FUZZ_CHECK(st.records == n);
        FUZZ_CHECK(trace_writer_close(&w) == 0);
        /* read both again, side by side */
        trace_reader *r1 = trace_reader_open(pin, err, sizeof err), *r2 = trace_reader_open(pout, err, sizeof err);
        FUZZ_CHECK(r1 && r2);
        trace *t2 = trace_new();
        for (uint64_t i = 0; i < n; i++) {
            FUZZ_CHECK(trace_reader_next(r1, t) == 1);
            FUZZ_CHECK(trace_reader_next(r2, t2) == 1);
            check_same(t, t2);
        }
        FUZZ_CHECK(trace_reader_next(r2, t2) == 0);
        trace_reader_stats st2 = trace_reader_get_stats(r2);
        FUZZ_CHECK(st2.records == n && !st2.truncated && !st2.damaged_regions);
        trace_destroy(&t2);
        trace_destroy(&t);
        trace_reader_close(&r1);
        trace_reader_close(&r2);
        trace_reader_close(&r);
    }
    close(in);
    close(out);
    return 0;
}
