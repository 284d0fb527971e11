/* make_seeds.c — writes the seed corpora of the fuzz targets with the
 * project's own encoders: tests/fuzz/corpus/<target>/<name>.  Run by
 * `make fuzz-seeds`; the output is committed (a few KB).
 * usage: make_seeds DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flow/flow.h"
#include "model_file.h"
#include "ppx.h"
#include "ppxq.h"
#include "prior.h"
#include "rng.h"
#include "trace.h"
#include "trace_store.h"

static const char *g_dir;

static void put(const char *target, const char *name, const void *a, size_t na, const void *b, size_t nb)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", g_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (na && fwrite(a, 1, na, f) != na) || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f) != 0) {
        fprintf(stderr, "make_seeds: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void ppx_seeds(void)
{
    ppx_encoder *e = ppx_encoder_new();
    static const double one = 1.0, two = 2.0, probs[3] = {0.2, 0.3, 0.5}, vec[4] = {1, 2, 3, 4};
    static const int32_t shape22[2] = {2, 2};
    ppx_msg m;
    size_t len;
    ppx_error err;
    const uint8_t *b;
    struct { ppx_msg_type t; const char *name; } simple[] = {
        {PPX_MSG_RUN, "run"}, {PPX_MSG_RESET, "reset"}, {PPX_MSG_OBSERVE_RESULT, "observe_result"},
        {PPX_MSG_TAG_RESULT, "tag_result"}};
    for (size_t i = 0; i < sizeof simple / sizeof *simple; i++) {
        ppx_msg_init(&m);
        m.type = simple[i].t;
        if ((b = ppx_encode(e, &m, &len, &err))) put("ppx", simple[i].name, b, len, NULL, 0);
    }
    ppx_msg_init(&m);
    m.type = PPX_MSG_HANDSHAKE_RESULT;
    m.system_name = "ppxd-fuzz";
    m.model_name = "gaussian";
    if ((b = ppx_encode(e, &m, &len, &err))) put("ppx", "handshake_result", b, len, NULL, 0);
    ppx_msg_init(&m);
    m.type = PPX_MSG_SAMPLE;
    m.address = "forward()+0x10";
    m.name = "mu";
    m.control = 1;
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&one);
    m.dist.param[1] = ppx_tensor_scalar(&two);
    if ((b = ppx_encode(e, &m, &len, &err))) put("ppx", "sample_normal", b, len, NULL, 0);
    m.dist.type = PPX_DIST_CATEGORICAL;
    m.dist.param[0] = (ppx_tensor){probs, 3, NULL, 0};
    m.dist.param[0].shape = (const int32_t[]){3};
    m.dist.param[0].ndim = 1;
    m.dist.param[1] = ppx_tensor_empty();
    if ((b = ppx_encode(e, &m, &len, &err))) put("ppx", "sample_categorical", b, len, NULL, 0);
    ppx_msg_init(&m);
    m.type = PPX_MSG_OBSERVE;
    m.address = "obs";
    m.name = "obs0";
    m.dist.type = PPX_DIST_UNIFORM;
    m.dist.param[0] = ppx_tensor_scalar(&one);
    m.dist.param[1] = ppx_tensor_scalar(&two);
    m.value = (ppx_tensor){vec, 4, shape22, 2};
    if ((b = ppx_encode(e, &m, &len, &err))) put("ppx", "observe_matrix", b, len, NULL, 0);
    ppx_msg_init(&m);
    m.type = PPX_MSG_TAG;
    m.address = "tag";
    m.name = "t";
    m.value = ppx_tensor_scalar(&two);
    if ((b = ppx_encode(e, &m, &len, &err))) put("ppx", "tag", b, len, NULL, 0);
    ppx_msg_init(&m);
    m.type = PPX_MSG_SAMPLE_RESULT;
    m.value = ppx_tensor_scalar(&one);
    if ((b = ppx_encode(e, &m, &len, &err))) put("ppx", "sample_result", b, len, NULL, 0);
    ppx_encoder_destroy(&e);
}

static void query_seeds(void)
{
    ppxq_encoder *e = ppxq_encoder_new();
    static const double obs[6] = {0.1, 0.2, 0.3, 1, 2, 3}, th[4] = {0.5, -0.5, 1, 2}, lp[2] = {-1.5, -2.5};
    ppxq_msg m;
    size_t len;
    ppxq_error err;
    const uint8_t *b;
    ppxq_msg_init(&m);
    m.type = PPXQ_SAMPLE;
    m.request_id = 7;
    m.model = "moons";
    m.observations = (ppxq_matrix){2, 3, obs};
    m.n = 100;
    m.seed = 42;
    if ((b = ppxq_encode(e, &m, &len, &err))) put("query", "sample", b, len, NULL, 0);
    ppxq_msg_init(&m);
    m.type = PPXQ_LOG_PROB;
    m.model = "moons";
    m.observations = (ppxq_matrix){1, 3, obs};
    m.thetas = (ppxq_matrix){2, 2, th};
    m.n_draws = 100;
    if ((b = ppxq_encode(e, &m, &len, &err))) put("query", "log_prob", b, len, NULL, 0);
    ppxq_msg_init(&m);
    m.type = PPXQ_LOAD;
    m.path = "models/m.ppxm";
    m.name = "m";
    if ((b = ppxq_encode(e, &m, &len, &err))) put("query", "load", b, len, NULL, 0);
    ppxq_msg_init(&m);
    m.type = PPXQ_STATUS;
    if ((b = ppxq_encode(e, &m, &len, &err))) put("query", "status", b, len, NULL, 0);
    ppxq_msg_init(&m);
    m.type = PPXQ_SAMPLE_REPLY;
    ppxq_matrix s[1] = {{2, 2, th}};
    m.samples = s;
    m.n_samples = 1;
    m.acceptance = lp;
    m.n_acceptance = 1;
    if ((b = ppxq_encode(e, &m, &len, &err))) put("query", "sample_reply", b, len, NULL, 0);
    ppxq_msg_init(&m);
    m.type = PPXQ_LIST_MODELS_REPLY;
    const char *tn[2] = {"mu", "sigma"}, *xn[1] = {"x"};
    ppxq_model_info mi = {"moons", "NPE-NSF", tn, 2, 2, xn, 1, 1, 1700000000, 10000, -1.25, 0xdeadbeef,
                          "/srv/m.ppxm", 3, "uniform:-1:1x2"};
    m.models = &mi;
    m.n_models = 1;
    if ((b = ppxq_encode(e, &m, &len, &err))) put("query", "list_reply", b, len, NULL, 0);
    ppxq_msg_init(&m);
    m.type = PPXQ_STATUS_REPLY;
    const char *names[1] = {"moons"};
    m.status = (ppxq_status_info){"ppxd", 12.5, names, 1, 2, 0, 10, 1, 0};
    if ((b = ppxq_encode(e, &m, &len, &err))) put("query", "status_reply", b, len, NULL, 0);
    if ((b = ppxq_encode_error(e, 9, PPXQ_BUSY, "server busy", &len))) put("query", "error", b, len, NULL, 0);
    ppxq_encoder_destroy(&e);
}

static void model_seed(void)
{
    model_file *m = model_file_new(MODEL_NPE_MAF, 1, 1);
    m->flow = flow_config_default(FLOW_MAF, 1, 1);
    m->flow.n_transforms = 1;
    m->flow.hidden = 2;
    flow *f = flow_new(&m->flow, 1);
    rng r;
    rng_seed(&r, 1, 0);
    flow_init(f, &r);
    size_t np = flow_n_params(f);
    float *params = malloc(np * sizeof *params);
    flow_get_params(f, params);
    model_file_set_params(m, params, np);
    free(params);
    flow_destroy(&f);
    char err[256];
    const char *spec[1] = {"uniform:-1:1"};
    prior *p = prior_parse(spec, 1, err, sizeof err);
    model_file_set_prior(m, p);
    prior_destroy(&p);
    model_file_set_theta_name(m, 0, "theta");
    model_file_set_x_name(m, 0, "x");
    unsigned char *buf;
    size_t len;
    if (model_file_encode(m, &buf, &len, err, sizeof err) == 0) {
        /* first byte: 1 = fix the CRC up before decoding, 0 = as it is */
        put("model_file", "maf_1x1", "\x00", 1, buf, len);
        put("model_file", "maf_1x1_crc_fixed", "\x01", 1, buf, len);
        free(buf);
    }
    model_file_destroy(&m);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void trace_seeds(void)
{
    char path[] = "/tmp/ppxd-fuzz-seed-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    close(fd);
    char err[256];
    trace_writer *w = trace_writer_open(path, 0, 0, TRACE_FSYNC_NEVER, err, sizeof err);
    trace *t = trace_new();
    for (uint64_t i = 0; i < 3; i++) {
        trace_reset(t);
        t->id = i;
        double v = (double)i, p0 = 0, p1 = 1;
        trace_entry e;
        memset(&e, 0, sizeof e);
        e.kind = TRACE_SAMPLE;
        e.address = "forward()+0x10";
        e.base_address = "forward()+0x10";
        e.name = "mu";
        e.dist = DIST_NORMAL;
        e.param[0] = (trace_array){&p0, 1, NULL, 0};
        e.param[1] = (trace_array){&p1, 1, NULL, 0};
        e.value = (trace_array){&v, 1, NULL, 0};
        e.control = 1;
        e.log_prob = -0.9189 - v * v / 2;
        trace_append(t, &e);
        e.kind = TRACE_OBSERVE;
        e.name = "obs";
        e.observed = 1;
        trace_append(t, &e);
        trace_finish(t);
        trace_writer_append(w, t);
    }
    trace_writer_close(&w);
    trace_destroy(&t);
    size_t n;
    unsigned char *f = slurp(path, &n);
    unlink(path);
    if (!f || n < 32) return;
    /* mode byte 0: the file as it is; 1: records after a version 2 header */
    put("trace_file", "three_records", "\x00", 1, f, n);
    put("trace_file", "three_records_headerless", "\x01", 1, f + 32, n - 32);
    free(f);
}

static void zmtp_seeds(void)
{
    /* mode byte 1: a valid greeting and READY come first; then frames */
    ppx_encoder *e = ppx_encoder_new();
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = PPX_MSG_SAMPLE_RESULT;
    static const double one = 1.0;
    m.value = ppx_tensor_scalar(&one);
    size_t len;
    ppx_error err;
    const uint8_t *b = ppx_encode(e, &m, &len, &err);
    unsigned char s[512];
    size_t k = 0;
    s[k++] = 1;
    s[k++] = 0x01, s[k++] = 0x00;           /* empty delimiter, MORE */
    s[k++] = 0x00, s[k++] = (uint8_t)len;   /* short body frame */
    memcpy(s + k, b, len);
    k += len;
    put("zmtp", "reply", s, k, NULL, 0);
    /* a PING, then the reply in a long frame */
    k = 1;
    static const uint8_t ping[] = {0x04, 7, 4, 'P', 'I', 'N', 'G', 0, 10};
    memcpy(s + k, ping, sizeof ping);
    k += sizeof ping;
    s[k++] = 0x01, s[k++] = 0x00;
    s[k++] = 0x02;
    for (int i = 0; i < 7; i++) s[k++] = 0;
    s[k++] = (uint8_t)len;
    memcpy(s + k, b, len);
    k += len;
    put("zmtp", "ping_long_reply", s, k, NULL, 0);
    /* a greeting only, from the raw start (mode byte 0) */
    static const uint8_t g[65] = {0, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 1, 'N', 'U', 'L', 'L'};
    put("zmtp", "greeting", g, sizeof g, NULL, 0);
    ppx_encoder_destroy(&e);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    g_dir = argv[1];
    mkdir(g_dir, 0755);
    ppx_seeds();
    query_seeds();
    model_seed();
    trace_seeds();
    zmtp_seeds();
    return 0;
}
