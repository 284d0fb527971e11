/* fuzz_query.c — the query decoder (protocol/ppxq.h): decode, read every
 * field, re-encode, decode again, compare. */
#include "fuzz_common.h"
#include "ppxq.h"

static ppxq_encoder *g_enc;

static unsigned touch_str(const char *s)
{
    FUZZ_CHECK(s != NULL);
    return fuzz_touch(s, strlen(s) + 1);
}

static unsigned touch_matrix(const ppxq_matrix *x)
{
    size_t n = (size_t)x->rows * x->cols;
    return n ? fuzz_touch(x->data, n * sizeof(double)) : 0;
}

static unsigned touch_info(const ppxq_model_info *mi)
{
    unsigned a = touch_str(mi->name) + touch_str(mi->kind) + touch_str(mi->path) + touch_str(mi->prior);
    for (uint32_t i = 0; i < mi->n_theta_names; i++) a += touch_str(mi->theta_names[i]);
    for (uint32_t i = 0; i < mi->n_x_names; i++) a += touch_str(mi->x_names[i]);
    return a;
}

static unsigned touch_msg(const ppxq_msg *m)
{
    unsigned a = touch_str(m->model) + touch_str(m->path) + touch_str(m->name) + touch_str(m->message);
    a += touch_matrix(&m->observations) + touch_matrix(&m->thetas);
    for (uint32_t i = 0; i < m->n_models; i++) a += touch_info(&m->models[i]);
    for (uint32_t i = 0; i < m->n_samples; i++) a += touch_matrix(&m->samples[i]);
    if (m->n_acceptance) a += fuzz_touch(m->acceptance, m->n_acceptance * sizeof(double));
    if (m->n_log_prob) a += fuzz_touch(m->log_prob, m->n_log_prob * sizeof(double));
    if (m->type == PPXQ_STATUS_REPLY) {
        a += touch_str(m->status.version);
        for (uint32_t i = 0; i < m->status.n_models; i++) a += touch_str(m->status.models[i]);
    }
    return a;
}

static int same_matrix(const ppxq_matrix *a, const ppxq_matrix *b)
{
    return a->rows == b->rows && a->cols == b->cols &&
           fuzz_same_doubles(a->data, b->data, (size_t)a->rows * a->cols);
}

static void check_round_trip(const ppxq_msg *m)
{
    size_t len = 0;
    ppxq_error err;
    const uint8_t *bytes = ppxq_encode(g_enc, m, &len, &err);
    FUZZ_CHECK(bytes != NULL);
    void *base;
    const uint8_t *copy = fuzz_copy(bytes, len, 0, &base);
    ppxq_msg m2;
    ppxq_msg_init(&m2);
    FUZZ_CHECK(ppxq_decode(copy, len, 0, &m2, NULL, &err) == PPXQ_R_OK);
    FUZZ_CHECK(m2.type == m->type && m2.version == m->version && m2.request_id == m->request_id);
    FUZZ_CHECK(strcmp(m2.model, m->model) == 0 && strcmp(m2.path, m->path) == 0);
    FUZZ_CHECK(strcmp(m2.name, m->name) == 0 && strcmp(m2.message, m->message) == 0);
    FUZZ_CHECK(same_matrix(&m2.observations, &m->observations) && same_matrix(&m2.thetas, &m->thetas));
    FUZZ_CHECK(m2.n == m->n && m2.seed == m->seed && m2.n_draws == m->n_draws && m2.code == m->code);
    FUZZ_CHECK(m2.n_models == m->n_models && m2.n_samples == m->n_samples);
    for (uint32_t i = 0; i < m->n_samples; i++) FUZZ_CHECK(same_matrix(&m2.samples[i], &m->samples[i]));
    for (uint32_t i = 0; i < m->n_models; i++) {
        FUZZ_CHECK(strcmp(m2.models[i].name, m->models[i].name) == 0);
        FUZZ_CHECK(m2.models[i].n_theta_names == m->models[i].n_theta_names);
    }
    FUZZ_CHECK(m2.n_log_prob == m->n_log_prob && fuzz_same_doubles(m2.log_prob, m->log_prob, m->n_log_prob));
    FUZZ_CHECK(m2.n_acceptance == m->n_acceptance &&
               fuzz_same_doubles(m2.acceptance, m->acceptance, m->n_acceptance));
    ppxq_msg_clear(&m2);
    free(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_enc) g_enc = ppxq_encoder_new();
    ppxq_result first = PPXQ_R_OK;
    for (int mis = 0; mis < 2; mis++) {
        void *base;
        const uint8_t *buf = fuzz_copy(data, size, mis, &base);
        ppxq_msg m;
        ppxq_msg_init(&m);
        ppxq_error err;
        int verified = 0;
        ppxq_result r = ppxq_decode(buf, size, 1 << 20, &m, &verified, &err);
        if (mis == 0) first = r;
        else FUZZ_CHECK(r == first);
        if (r == PPXQ_R_OK) {
            touch_msg(&m);
            check_round_trip(&m);
        }
        ppxq_msg_clear(&m);
        free(base);
    }
    return 0;
}
