/* fuzz_model_file.c — the .ppxm decoder (src/model_file.h): decode, read
 * every field, re-encode; the re-encoding must decode and encode to the
 * same bytes.  The input's first byte chooses whether its trailing CRC-32C
 * is fixed up first, so that mutations reach the parser behind the
 * checksum. */
#include "fuzz_common.h"
#include "model_file.h"
#include "prior.h"
#include "trace_store.h" /* trace_crc32c */

static unsigned touch_model(const model_file *m)
{
    unsigned a = (unsigned)m->kind + (unsigned)m->dim + (unsigned)m->context;
    for (int j = 0; j < m->dim; j++) {
        if (m->theta_names && m->theta_names[j]) a += fuzz_touch(m->theta_names[j], strlen(m->theta_names[j]) + 1);
        a += fuzz_touch(&m->theta_mean[j], sizeof(double)) + fuzz_touch(&m->theta_std[j], sizeof(double));
    }
    for (int j = 0; j < m->context; j++) {
        if (m->x_names && m->x_names[j]) a += fuzz_touch(m->x_names[j], strlen(m->x_names[j]) + 1);
        a += fuzz_touch(&m->x_mean[j], sizeof(double)) + fuzz_touch(&m->x_std[j], sizeof(double));
    }
    char text[512];
    if (m->prior) prior_format(m->prior, text, sizeof text);
    return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int fix_crc = data[0] & 1;
    data++, size--;
    for (int mis = 0; mis < 2; mis++) {
        void *base;
        uint8_t *buf = (uint8_t *)fuzz_copy(data, size, mis, &base);
        if (fix_crc && size >= 4) {
            uint32_t c = trace_crc32c(0, buf, size - 4);
            for (int i = 0; i < 4; i++) buf[size - 4 + i] = (uint8_t)(c >> (8 * i));
        }
        char err[256];
        model_file *m = model_file_decode(buf, size, err, sizeof err);
        if (m) {
            touch_model(m);
            unsigned char *e1 = NULL, *e2 = NULL;
            size_t n1 = 0, n2 = 0;
            FUZZ_CHECK(model_file_encode(m, &e1, &n1, err, sizeof err) == 0);
            model_file *m2 = model_file_decode(e1, n1, err, sizeof err);
            FUZZ_CHECK(m2 != NULL);
            FUZZ_CHECK(m2->kind == m->kind && m2->dim == m->dim && m2->context == m->context);
            FUZZ_CHECK(model_file_encode(m2, &e2, &n2, err, sizeof err) == 0);
            FUZZ_CHECK(n1 == n2 && memcmp(e1, e2, n1) == 0);
            free(e1);
            free(e2);
            model_file_destroy(&m2);
            model_file_destroy(&m);
        }
        free(base);
    }
    return 0;
}
