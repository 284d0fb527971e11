/* fuzz_ppx.c — the PPX message decoder (protocol/ppx.h): verify, decode,
 * read every field, re-encode, decode again, compare. */
#include "fuzz_common.h"
#include "ppx.h"

static ppx_encoder *g_enc;

static unsigned touch_tensor(const ppx_tensor *t)
{
    unsigned a = 0;
    if (t->len) a += fuzz_touch(t->data, t->len * sizeof *t->data);
    if (t->ndim) a += fuzz_touch(t->shape, t->ndim * sizeof *t->shape);
    /* the codec promises shape and data agree */
    size_t prod = 1;
    for (size_t i = 0; i < t->ndim; i++) {
        FUZZ_CHECK(t->shape[i] >= 0);
        prod *= (size_t)t->shape[i];
    }
    if (t->len) FUZZ_CHECK(prod == t->len);
    return a;
}

static unsigned touch_msg(const ppx_msg *m)
{
    unsigned a = 0;
    const char *s[4] = {m->system_name, m->model_name, m->address, m->name};
    for (int i = 0; i < 4; i++) {
        FUZZ_CHECK(s[i] != NULL);
        a += fuzz_touch(s[i], strlen(s[i]) + 1);
    }
    a += touch_tensor(&m->value) + touch_tensor(&m->dist.param[0]) + touch_tensor(&m->dist.param[1]);
    a += (unsigned)m->type + (unsigned)m->dist.type + (unsigned)m->control;
    return a;
}

static int same_tensor(const ppx_tensor *a, const ppx_tensor *b)
{
    return a->len == b->len && fuzz_same_doubles(a->data, b->data, a->len);
}

static void check_round_trip(const ppx_msg *m)
{
    size_t len = 0;
    ppx_error err;
    const uint8_t *bytes = ppx_encode(g_enc, m, &len, &err);
    FUZZ_CHECK(bytes != NULL); /* whatever decodes must encode */
    void *base;
    const uint8_t *copy = fuzz_copy(bytes, len, 0, &base);
    ppx_msg m2;
    ppx_msg_init(&m2);
    FUZZ_CHECK(ppx_decode(copy, len, NULL, &m2, &err) == PPX_OK);
    FUZZ_CHECK(m2.type == m->type);
    FUZZ_CHECK(strcmp(m2.system_name, m->system_name) == 0);
    FUZZ_CHECK(strcmp(m2.model_name, m->model_name) == 0);
    FUZZ_CHECK(strcmp(m2.address, m->address) == 0);
    FUZZ_CHECK(strcmp(m2.name, m->name) == 0);
    FUZZ_CHECK(m2.dist.type == m->dist.type);
    FUZZ_CHECK(same_tensor(&m2.value, &m->value));
    FUZZ_CHECK(same_tensor(&m2.dist.param[0], &m->dist.param[0]));
    FUZZ_CHECK(same_tensor(&m2.dist.param[1], &m->dist.param[1]));
    if (m->type == PPX_MSG_SAMPLE) FUZZ_CHECK(!m2.control == !m->control);
    ppx_msg_clear(&m2);
    free(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_enc) g_enc = ppx_encoder_new();
    ppx_limits lim = ppx_limits_default();
    lim.max_message_bytes = 1 << 20;
    lim.max_tensor_len = 1 << 16;
    ppx_status first = PPX_OK;
    for (int mis = 0; mis < 2; mis++) {
        void *base;
        const uint8_t *buf = fuzz_copy(data, size, mis, &base);
        ppx_msg m;
        ppx_msg_init(&m);
        ppx_error err;
        ppx_status st = ppx_decode(buf, size, &lim, &m, &err);
        /* the alignment of the input never changes the answer */
        if (mis == 0) first = st;
        else FUZZ_CHECK(st == first);
        if (st == PPX_OK) {
            touch_msg(&m);
            check_round_trip(&m);
        } else {
            FUZZ_CHECK(m.type == PPX_MSG_NONE);
            fuzz_touch(err.message, strlen(err.message));
        }
        ppx_msg_clear(&m);
        free(base);
    }
    return 0;
}
