/* Tests for src/model_file.c (and the prior text form of src/prior.c):
 * save/load round trips of NPE and NRE models give bit-identical log
 * densities and samples; every damaged file (flipped byte anywhere,
 * truncation at any length, another format version, garbage) is refused
 * with a message naming the problem. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model_file.h"
#include "nn/nn.h"
#include "npe.h"
#include "nre.h"
#include "prior.h"
#include "rng.h"
#include "trace_store.h"
#include "export.h"
#include "transform.h"

static void setup(void)
{
    nn_set_threads(1);
}

TestSuite(model_file, .init = setup, .timeout = 60);
TestSuite(prior, .init = setup);

/* ---- helpers ------------------------------------------------------------------- */

static char *tmp_path(const char *name)
{
    static const char *dir = "/tmp";
    char *p = malloc(512);
    cr_assert(p);
    snprintf(p, 512, "%s/ppxd-test-model-%d-%s", dir, (int)getpid(), name);
    return p;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, len, f), len);
    fclose(f);
}

/* 1500 simulations of theta ~ U(-1,1)^2, x = theta + 0.1 N(0, I) + (0, theta_0^2). */
static void make_data(npe_data *d, prior **pr)
{
    enum { N = 1500, D = 2 };
    static double th[N * D], x[N * D];
    rng r;
    rng_seed(&r, 3, 0);
    for (int i = 0; i < N; i++) {
        th[i * 2] = -1 + 2 * rng_uniform(&r);
        th[i * 2 + 1] = -1 + 2 * rng_uniform(&r);
        x[i * 2] = th[i * 2] + 0.1 * rng_normal(&r);
        x[i * 2 + 1] = th[i * 2 + 1] + th[i * 2] * th[i * 2] + 0.1 * rng_normal(&r);
    }
    char err[300];
    cr_assert_eq(npe_data_init(d, th, x, N, D, D, err, sizeof err), 0, "%s", err);
    const char *spec[1] = {"uniform:-1:1x2"};
    *pr = prior_parse(spec, 1, err, sizeof err);
    cr_assert_not_null(*pr, "%s", err);
}

static void expect_same_description(const model_file *a, const model_file *b)
{
    cr_expect_eq(a->kind, b->kind);
    cr_expect_eq(a->dim, b->dim);
    cr_expect_eq(a->context, b->context);
    cr_expect_eq(a->n_params, b->n_params);
    cr_expect_eq(memcmp(a->params, b->params, a->n_params * sizeof(float)), 0, "parameters differ");
    cr_expect_eq(memcmp(a->theta_mean, b->theta_mean, (size_t)a->dim * sizeof(double)), 0);
    cr_expect_eq(memcmp(a->theta_std, b->theta_std, (size_t)a->dim * sizeof(double)), 0);
    cr_expect_eq(memcmp(a->x_mean, b->x_mean, (size_t)a->context * sizeof(double)), 0);
    cr_expect_eq(memcmp(a->x_std, b->x_std, (size_t)a->context * sizeof(double)), 0);
    cr_expect(prior_equal(a->prior, b->prior));
    cr_expect_eq(memcmp(a->theta_tf, b->theta_tf, (size_t)a->dim * sizeof *a->theta_tf), 0, "theta transforms differ");
    cr_expect_eq(memcmp(a->x_tf, b->x_tf, (size_t)a->context * sizeof *a->x_tf), 0, "x transforms differ");
    for (int j = 0; j < a->dim; j++) cr_expect_str_eq(a->theta_names[j], b->theta_names[j]);
    for (int j = 0; j < a->context; j++) cr_expect_str_eq(a->x_names[j], b->x_names[j]);
    cr_expect_eq(a->prov.created, b->prov.created);
    cr_expect_eq(a->prov.n_simulations, b->prov.n_simulations);
    cr_expect_eq(a->prov.n_dropped, b->prov.n_dropped);
    cr_expect_eq(a->prov.epochs, b->prov.epochs);
    cr_expect_eq(a->prov.best_epoch, b->prov.best_epoch);
    cr_expect_eq(a->prov.best_val_loss, b->prov.best_val_loss);
    cr_expect_eq(a->prov.seed, b->prov.seed);
    cr_expect_str_eq(a->prov.source, b->prov.source);
    if (a->kind == MODEL_NRE) {
        cr_expect_eq(memcmp(&a->net, &b->net, sizeof a->net), 0);
        cr_expect_eq(a->bnre_lambda, b->bnre_lambda);
    } else {
        cr_expect_eq(memcmp(&a->flow, &b->flow, sizeof a->flow), 0);
    }
}

/* ---- round trips ------------------------------------------------------------------ */

static void npe_roundtrip(flow_kind kind)
{
    npe_data d;
    prior *pr;
    make_data(&d, &pr);
    npe_train_config cfg = npe_train_defaults();
    cfg.max_epochs = 3;
    flow_config fc = flow_config_default(kind, 2, 2);
    char err[600];
    npe_posterior *p = npe_train(&d, pr, &fc, &cfg, NULL, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    model_file *m = npe_posterior_model(p);
    cr_assert_eq(model_file_set_theta_name(m, 1, "beta"), 0);
    cr_assert_eq(model_file_set_x_name(m, 0, "obs[0]"), 0);
    cr_assert_eq(model_file_set_source(m, "unit test"), 0);
    char *path = tmp_path(kind == FLOW_MAF ? "maf.ppxm" : "nsf.ppxm");
    cr_assert_eq(model_file_save(m, path, err, sizeof err), 0, "%s", err);
    model_file *l = model_file_load(path, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    expect_same_description(m, l);
    npe_posterior *q = npe_posterior_from_model(l, err, sizeof err);
    cr_assert_not_null(q, "%s", err);

    const double x_o[2] = {0.3, -0.2};
    enum { N = 500 };
    double s1[N * 2], s2[N * 2], l1[N], l2[N];
    rng r1, r2;
    rng_seed(&r1, 77, 0);
    rng_seed(&r2, 77, 0);
    cr_assert_eq(npe_sample(p, x_o, N, &r1, 10, s1, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(npe_sample(q, x_o, N, &r2, 10, s2, NULL, err, sizeof err), 0, "%s", err);
    cr_expect_eq(memcmp(s1, s2, sizeof s1), 0, "samples differ after the round trip");
    cr_assert_eq(npe_log_prob(p, s1, N, x_o, 1, l1, err, sizeof err), 0);
    cr_assert_eq(npe_log_prob(q, s1, N, x_o, 1, l2, err, sizeof err), 0);
    cr_expect_eq(memcmp(l1, l2, sizeof l1), 0, "log densities differ after the round trip");
    for (int i = 0; i < N; i++) cr_assert(isfinite(l1[i]));

    unlink(path);
    free(path);
    model_file_destroy(&l);
    npe_posterior_destroy(&p);
    npe_posterior_destroy(&q);
    npe_data_free(&d);
    prior_destroy(&pr);
}

Test(model_file, npe_maf_roundtrip_identical)
{
    npe_roundtrip(FLOW_MAF);
}

Test(model_file, npe_nsf_roundtrip_identical)
{
    npe_roundtrip(FLOW_NSF);
}

Test(model_file, nre_roundtrip_identical)
{
    npe_data d;
    prior *pr;
    make_data(&d, &pr);
    npe_train_config cfg = npe_train_defaults();
    cfg.max_epochs = 3;
    nre_net_config nc = nre_net_defaults();
    nc.bnre_lambda = 10;
    char err[600];
    nre_posterior *p = nre_train(&d, pr, &nc, &cfg, NULL, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    model_file *m = nre_posterior_model(p);
    char *path = tmp_path("nre.ppxm");
    cr_assert_eq(model_file_save(m, path, err, sizeof err), 0, "%s", err);
    model_file *l = model_file_load(path, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    expect_same_description(m, l);
    cr_expect_eq(l->bnre_lambda, 10.0);
    nre_posterior *q = nre_posterior_from_model(l, err, sizeof err);
    cr_assert_not_null(q, "%s", err);
    const double x_o[2] = {0.3, -0.2};
    enum { N = 300 };
    double s1[N * 2], s2[N * 2], l1[N], l2[N];
    for (int meth = 0; meth < 3; meth++) {
        rng r1, r2;
        rng_seed(&r1, 78, 0);
        rng_seed(&r2, 78, 0);
        nre_sample_config sc = nre_sample_defaults();
        sc.method = (nre_sample_method)meth;
        cr_assert_eq(nre_sample(p, x_o, N, &r1, &sc, s1, NULL, err, sizeof err), 0, "%s", err);
        cr_assert_eq(nre_sample(q, x_o, N, &r2, &sc, s2, NULL, err, sizeof err), 0, "%s", err);
        cr_expect_eq(memcmp(s1, s2, sizeof s1), 0, "%s samples differ after the round trip",
                     nre_sample_method_name(sc.method));
    }
    cr_assert_eq(nre_log_prob(p, s1, N, x_o, 1, l1, err, sizeof err), 0);
    cr_assert_eq(nre_log_prob(q, s1, N, x_o, 1, l2, err, sizeof err), 0);
    cr_expect_eq(memcmp(l1, l2, sizeof l1), 0);
    /* An NRE file is not an NPE model and vice versa. */
    cr_expect_null(npe_posterior_from_model(l, err, sizeof err));
    cr_expect(strstr(err, "not an NPE") != NULL, "%s", err);
    unlink(path);
    free(path);
    model_file_destroy(&l);
    nre_posterior_destroy(&p);
    nre_posterior_destroy(&q);
    npe_data_free(&d);
    prior_destroy(&pr);
}

/* ---- damaged files -------------------------------------------------------------------- */

/* An encoded small model (a description with a few parameters: the checks
 * are about bytes, not networks). */
static unsigned char *small_encoded(size_t *len)
{
    model_file *m = model_file_new(MODEL_NPE_MAF, 2, 3);
    cr_assert_not_null(m);
    m->flow = flow_config_default(FLOW_MAF, 2, 3);
    float params[200];
    for (int i = 0; i < 200; i++) params[i] = (float)i * 0.25f - 7.0f;
    cr_assert_eq(model_file_set_params(m, params, 200), 0);
    cr_assert_eq(model_file_set_source(m, "bytes"), 0);
    const char *spec[1] = {"uniform:-1:1,normal:0:2"};
    char err[300];
    prior *p = prior_parse(spec, 1, err, sizeof err);
    cr_assert_eq(model_file_set_prior(m, p), 0);
    prior_destroy(&p);
    unsigned char *buf;
    cr_assert_eq(model_file_encode(m, &buf, len, err, sizeof err), 0, "%s", err);
    model_file *back = model_file_decode(buf, *len, err, sizeof err);
    cr_assert_not_null(back, "%s", err);
    expect_same_description(m, back);
    model_file_destroy(&back);
    model_file_destroy(&m);
    return buf;
}

Test(model_file, every_flipped_byte_is_detected)
{
    size_t len;
    unsigned char *buf = small_encoded(&len);
    char err[400];
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (unsigned char)(1u << bit);
            err[0] = 0;
            model_file *m = model_file_decode(buf, len, err, sizeof err);
            cr_assert_null(m, "flipping bit %d of byte %zu went unnoticed", bit, i);
            cr_assert(strstr(err, "corrupted") || strstr(err, "not a ppxd model file") || strstr(err, "truncated"),
                      "byte %zu: unclear message '%s'", i, err);
            if (i >= 24 && i < len - 4) cr_assert(strstr(err, "checksum"), "byte %zu: '%s'", i, err);
            buf[i] ^= (unsigned char)(1u << bit);
        }
    }
    free(buf);
}

Test(model_file, every_truncation_is_detected)
{
    size_t len;
    unsigned char *buf = small_encoded(&len);
    char err[400];
    for (size_t n = 0; n < len; n++) {
        err[0] = 0;
        cr_assert_null(model_file_decode(buf, n, err, sizeof err), "truncated to %zu of %zu bytes went unnoticed", n,
                       len);
        if (n >= 8) cr_assert(strstr(err, "truncated"), "%zu bytes: '%s'", n, err);
        else cr_assert(strstr(err, "not a ppxd model file"), "%zu bytes: '%s'", n, err);
    }
    free(buf);
}

Test(model_file, damaged_files_on_disk)
{
    size_t len;
    unsigned char *buf = small_encoded(&len);
    char *path = tmp_path("damaged.ppxm"), err[600];
    /* Intact. */
    spit(path, buf, len);
    model_file *m = model_file_load(path, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    model_file_destroy(&m);
    /* One flipped byte in the parameters. */
    buf[len - 20] ^= 0x40;
    spit(path, buf, len);
    cr_expect_null(model_file_load(path, err, sizeof err));
    cr_expect(strstr(err, path) && strstr(err, "corrupted model file: checksum mismatch"), "%s", err);
    buf[len - 20] ^= 0x40;
    /* Truncated. */
    spit(path, buf, len / 2);
    cr_expect_null(model_file_load(path, err, sizeof err));
    cr_expect(strstr(err, "truncated model file"), "%s", err);
    /* Trailing garbage. */
    unsigned char *longer = malloc(len + 3);
    memcpy(longer, buf, len);
    memset(longer + len, 0, 3);
    spit(path, longer, len + 3);
    cr_expect_null(model_file_load(path, err, sizeof err));
    cr_expect(strstr(err, "corrupted"), "%s", err);
    free(longer);
    /* Missing and non-model files. */
    unlink(path);
    cr_expect_null(model_file_load(path, err, sizeof err));
    cr_expect(strstr(err, "cannot open"), "%s", err);
    spit(path, (const unsigned char *)"PPXTRACE some other file", 24);
    cr_expect_null(model_file_load(path, err, sizeof err));
    cr_expect(strstr(err, "not a ppxd model file"), "%s", err);
    unlink(path);
    free(path);
    free(buf);
}

/* A file written by another format version (preamble and checksum intact)
 * is refused by version, whatever its payload. */
Test(model_file, other_version_is_refused)
{
    size_t len;
    unsigned char *buf = small_encoded(&len);
    char err[400];
    for (uint32_t v = 0; v < 5; v++) {
        if (v >= MODEL_FILE_MIN_VERSION && v <= MODEL_FILE_VERSION) continue;
        buf[8] = (unsigned char)v;
        uint32_t crc = trace_crc32c(0, buf, len - 4);
        for (int i = 0; i < 4; i++) buf[len - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
        cr_assert_null(model_file_decode(buf, len, err, sizeof err));
        char want[64];
        snprintf(want, sizeof want, "format version %u", v);
        cr_expect(strstr(err, want) && strstr(err, "reads versions 1 to 2"), "'%s'", err);
    }
    free(buf);
}

/* A payload that is inconsistent but correctly checksummed (a faulty
 * writer) is refused as invalid, not trusted. */
Test(model_file, inconsistent_payload_is_refused)
{
    size_t len;
    unsigned char *buf = small_encoded(&len);
    char err[400];
    /* kind (the first payload word) 7 */
    buf[24] = 7;
    uint32_t crc = trace_crc32c(0, buf, len - 4);
    for (int i = 0; i < 4; i++) buf[len - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
    cr_assert_null(model_file_decode(buf, len, err, sizeof err));
    cr_expect(strstr(err, "invalid model file") && strstr(err, "kind"), "'%s'", err);
    free(buf);
}

/* ---- prior text form -------------------------------------------------------------------- */

Test(prior, parse_and_format)
{
    char err[300], buf[256];
    const char *a[2] = {"uniform:-1:1x2", "Normal:0:0.5, exponential:2,gaussian:1:2x3"};
    prior *p = prior_parse(a, 2, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(p->dim, 7);
    cr_expect_eq(p->d[0].kind, DIST_UNIFORM);
    cr_expect_eq(p->d[1].p1, 1.0);
    cr_expect_eq(p->d[2].kind, DIST_NORMAL);
    cr_expect_eq(p->d[3].kind, DIST_EXPONENTIAL);
    cr_expect_eq(p->d[3].p0, 2.0);
    cr_expect_eq(p->d[6].p1, 2.0);
    prior_format(p, buf, sizeof buf);
    cr_expect_str_eq(buf, "uniform:-1:1x2,normal:0:0.5,exponential:2,normal:1:2x3");
    /* The text form reads back to the same prior. */
    const char *b[1] = {buf};
    prior *q = prior_parse(b, 1, err, sizeof err);
    cr_assert_not_null(q, "%s", err);
    cr_expect(prior_equal(p, q));
    prior_destroy(&q);
    double th[7] = {0.5, -1, 3, 0.1, 0, 0, 0};
    cr_expect(prior_in_support(p, th));
    cr_expect_float_eq(prior_log_prob(p, th) , 2 * log(0.5) + (-0.5 * 36 - log(0.5) - 0.5 * log(2 * M_PI)) +
                       (log(2.0) - 0.2) + 3 * (-0.5 * 0.25 - log(2.0) - 0.5 * log(2 * M_PI)), 1e-12);
    th[1] = 1.0; /* Uniform's support is [low, high) */
    cr_expect(!prior_in_support(p, th));
    cr_expect(isinf(prior_log_prob(p, th)));
    th[1] = 0;
    th[3] = -0.1;
    cr_expect(!prior_in_support(p, th));
    cr_expect(prior_is_bounded(p));
    prior_destroy(&p);
}

Test(prior, bad_specs_are_explained)
{
    static const struct {
        const char *spec, *want;
    } cases[] = {
        {"uniform", "expected KIND:P0"},
        {"cauchy:0:1", "unknown distribution"},
        {"uniform:1:-1", "invalid uniform prior"},
        {"normal:0:-1", "invalid normal prior"},
        {"normal:0", "takes 2 parameters"},
        {"exponential:1:2", "takes 1 parameter"},
        {"poisson:3", "discrete"},
        {"normal:0:1x0", "bad repetition"},
        {"normal:0:1xx", "bad repetition"},
        {"normal:0:0x2a", "bad repetition"},
        {"normal:a:1", "finite decimal"},
        {"normal:0:nan", "finite decimal"},
        {"normal:0:1,,uniform:0:1", "empty item"},
        {"", "no dimensions"},
    };
    char err[300];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s[1] = {cases[i].spec};
        err[0] = 0;
        prior *p = prior_parse(s, 1, err, sizeof err);
        cr_expect_null(p, "'%s' accepted", cases[i].spec);
        cr_expect(strstr(err, cases[i].want) != NULL, "'%s': message '%s' lacks '%s'", cases[i].spec, err,
                  cases[i].want);
        prior_destroy(&p);
    }
}

Test(prior, sampling_stays_in_support)
{
    char err[300];
    const char *s[1] = {"uniform:2:3,beta:0.5:0.5,gamma:2:1,lognormal:0:1,weibull:1:2,normal:0:1"};
    prior *p = prior_parse(s, 1, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    rng r;
    rng_seed(&r, 1, 0);
    double th[6 * 1000];
    prior_sample(p, &r, 1000, th);
    double lp[1000];
    prior_log_prob_batch(p, th, 1000, lp);
    for (int i = 0; i < 1000; i++) {
        cr_assert(prior_in_support(p, th + 6 * i));
        cr_assert(lp[i] > -INFINITY);
    }
    double lo, hi;
    prior_support(p, 0, &lo, &hi);
    cr_expect(lo == 2 && hi == 3);
    prior_support(p, 5, &lo, &hi);
    cr_expect(isinf(lo) && isinf(hi));
    prior_destroy(&p);
}

/* ---- format version 1, multivariate normal priors and transforms ------------------------- */

/* A version-1 file: the version-2 encoding of a model with an independent
 * prior and no transforms, less the two version-2 items (an empty block
 * count, then (dim + context) transforms of 20 bytes), after the prior. */
static unsigned char *as_version1(const unsigned char *v2, size_t len2, const model_file *m, size_t *len1)
{
    cr_assert_eq(m->prior->n_mvn, 0);
    size_t prior_end = 24 + 12 + (m->kind == MODEL_NRE ? 5 * 4 + 8 : 10 * 4) + 16 * (size_t)(m->dim + m->context) +
                       20 * (size_t)m->dim;
    size_t cut = 4 + 20 * (size_t)(m->dim + m->context);
    unsigned char *b = malloc(len2 - cut);
    cr_assert(b);
    memcpy(b, v2, prior_end);
    memcpy(b + prior_end, v2 + prior_end + cut, len2 - prior_end - cut);
    *len1 = len2 - cut;
    b[8] = 1;
    uint64_t plen = *len1 - 24 - 4;
    for (int i = 0; i < 8; i++) b[16 + i] = (unsigned char)(plen >> (8 * i));
    uint32_t crc = trace_crc32c(0, b, *len1 - 4);
    for (int i = 0; i < 4; i++) b[*len1 - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
    return b;
}

/* Files written before transforms and correlated priors (version 1) load,
 * with no transform, and give the same densities as the model they hold. */
Test(model_file, version1_files_still_load)
{
    npe_data d;
    prior *pr;
    make_data(&d, &pr);
    npe_train_config cfg = npe_train_defaults();
    cfg.max_epochs = 2;
    cfg.theta_transform = NPE_TF_NONE; /* a model version 1 could hold */
    flow_config fc = flow_config_default(FLOW_MAF, 2, 2);
    char err[600];
    npe_posterior *p = npe_train(&d, pr, &fc, &cfg, NULL, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    model_file *m = npe_posterior_model(p);
    unsigned char *v2, *v1;
    size_t len2, len1;
    cr_assert_eq(model_file_encode(m, &v2, &len2, err, sizeof err), 0, "%s", err);
    v1 = as_version1(v2, len2, m, &len1);
    model_file *l = model_file_decode(v1, len1, err, sizeof err);
    cr_assert_not_null(l, "version 1 refused: %s", err);
    expect_same_description(m, l);
    cr_expect(!tf_any(l->theta_tf, l->dim) && !tf_any(l->x_tf, l->context));
    npe_posterior *q = npe_posterior_from_model(l, err, sizeof err);
    cr_assert_not_null(q, "%s", err);
    const double th[4] = {0.1, -0.3, 0.7, 0.2}, x_o[2] = {0.2, 0.1};
    double a[2], b[2];
    cr_assert_eq(npe_log_prob(p, th, 2, x_o, 1, a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(npe_log_prob(q, th, 2, x_o, 1, b, err, sizeof err), 0, "%s", err);
    cr_expect(a[0] == b[0] && a[1] == b[1]);
    /* And an NRE model's version-1 file. */
    nre_net_config nc = nre_net_defaults();
    nc.hidden = 8;
    nre_posterior *rp = nre_train(&d, pr, &nc, &cfg, NULL, err, sizeof err);
    cr_assert_not_null(rp, "%s", err);
    model_file *rm = nre_posterior_model(rp);
    free(v2);
    free(v1);
    cr_assert_eq(model_file_encode(rm, &v2, &len2, err, sizeof err), 0, "%s", err);
    v1 = as_version1(v2, len2, rm, &len1);
    model_file *rl = model_file_decode(v1, len1, err, sizeof err);
    cr_assert_not_null(rl, "NRE version 1 refused: %s", err);
    expect_same_description(rm, rl);
    model_file_destroy(&rl);
    nre_posterior_destroy(&rp);
    free(v2);
    free(v1);
    npe_posterior_destroy(&q);
    model_file_destroy(&l);
    npe_posterior_destroy(&p);
    npe_data_free(&d);
    prior_destroy(&pr);
}

static prior *parse1(const char *spec)
{
    char err[600];
    const char *s[1] = {spec};
    prior *p = prior_parse(s, 1, err, sizeof err);
    cr_assert_not_null(p, "'%s': %s", spec, err);
    return p;
}

/* A correlated prior and transforms survive the model file bit for bit, and
 * the text form of the prior parses back to an equal prior. */
Test(model_file, mvn_prior_and_transforms_round_trip)
{
    model_file *m = model_file_new(MODEL_NPE_NSF, 5, 2);
    cr_assert_not_null(m);
    m->flow = flow_config_default(FLOW_NSF, 5, 2);
    float params[10] = {0};
    cr_assert_eq(model_file_set_params(m, params, 10), 0);
    prior *p = parse1("uniform:0:2,mvn:[1,-2,0.5]:[[2,0.3,0.1],[0.3,1,-0.2],[0.1,-0.2,0.5]],gamma:2:3");
    cr_assert_eq(p->dim, 5);
    cr_assert_eq(p->n_mvn, 1);
    cr_assert_eq(model_file_set_prior(m, p), 0);
    tf_for_prior(p, 1, m->theta_tf);
    cr_expect_eq(m->theta_tf[0].kind, TF_LOGIT);
    cr_expect(m->theta_tf[0].lo == 0 && m->theta_tf[0].hi == 2);
    for (int j = 1; j < 4; j++) cr_expect_eq(m->theta_tf[j].kind, TF_NONE);
    cr_expect_eq(m->theta_tf[4].kind, TF_LOG);
    m->x_tf[1] = (tf_dim){TF_LOG1P, 0, 0};
    char err[600];
    unsigned char *buf;
    size_t len;
    cr_assert_eq(model_file_encode(m, &buf, &len, err, sizeof err), 0, "%s", err);
    model_file *l = model_file_decode(buf, len, err, sizeof err);
    cr_assert_not_null(l, "%s", err);
    expect_same_description(m, l);
    cr_expect_eq(l->prior->mvn[0].j0, 1);
    cr_expect_eq(l->prior->mvn[0].k, 3);
    cr_expect_eq(l->x_tf[1].kind, TF_LOG1P);
    /* Same densities. */
    const double th[5] = {0.5, 0.2, -1.5, 0.1, 0.7};
    cr_expect_eq(prior_log_prob(p, th), prior_log_prob(l->prior, th));
    /* Text form round trip, exact. */
    char txt[2048];
    prior_format(p, txt, sizeof txt);
    prior *q = parse1(txt);
    cr_expect(prior_equal(p, q), "'%s' read back differently", txt);
    prior_destroy(&q);
    /* A block's dimension reads as its marginal. */
    double mean, sd;
    prior_moments(p, 2, &mean, &sd);
    cr_expect(mean == -2 && sd == 1);
    free(buf);
    model_file_destroy(&l);
    model_file_destroy(&m);
    prior_destroy(&p);
}

/* log N(theta | mu, Sigma) against the closed form for k = 2:
 * -log(2 pi) - log(s1 s2 sqrt(1 - r^2)) - Q / (2 (1 - r^2)),
 * Q = z1^2 - 2 r z1 z2 + z2^2, z = (theta - mu) / s; the precision form
 * gives the same density; a .npy file form too. */
Test(prior, mvn_log_density_closed_form)
{
    const double s1 = 1.5, s2 = 0.5, r = -0.6, m1 = 1, m2 = -1;
    char spec[2048];
    snprintf(spec, sizeof spec, "mvn:[%.17g,%.17g]:[[%.17g,%.17g],[%.17g,%.17g]]", m1, m2, s1 * s1, r * s1 * s2,
             r * s1 * s2, s2 * s2);
    prior *p = parse1(spec);
    /* The precision: the inverse of [[a, b], [b, c]] is [[c, -b], [-b, a]] / det. */
    double a = s1 * s1, b = r * s1 * s2, c = s2 * s2, det = a * c - b * b;
    snprintf(spec, sizeof spec, "mvnprec:[%.17g,%.17g]:[[%.17g,%.17g],[%.17g,%.17g]]", m1, m2, c / det, -b / det,
             -b / det, a / det);
    prior *q = parse1(spec);
    char dir[] = "/tmp/ppxd-test-mvn-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char mf[600], cf[600], err[600];
    snprintf(mf, sizeof mf, "%s/mean.npy", dir);
    snprintf(cf, sizeof cf, "%s/cov.npy", dir);
    const double mean[2] = {m1, m2}, cov[4] = {a, b, b, c};
    cr_assert_eq(npy_write(mf, mean, 2, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(npy_write(cf, cov, 2, 2, err, sizeof err), 0, "%s", err);
    snprintf(spec, sizeof spec, "normal:0:1,mvn:%s:%s", mf, cf);
    prior *f = parse1(spec);
    cr_assert_eq(f->dim, 3);
    const double pts[3][2] = {{1, -1}, {0.3, 0.2}, {-2.5, 4}};
    for (int i = 0; i < 3; i++) {
        double z1 = (pts[i][0] - m1) / s1, z2 = (pts[i][1] - m2) / s2;
        double want = -log(2 * M_PI) - log(s1 * s2 * sqrt(1 - r * r)) -
                      (z1 * z1 - 2 * r * z1 * z2 + z2 * z2) / (2 * (1 - r * r));
        cr_expect_float_eq(prior_log_prob(p, pts[i]), want, 1e-12, "point %d: %.15g vs %.15g", i,
                           prior_log_prob(p, pts[i]), want);
        cr_expect_float_eq(prior_log_prob(q, pts[i]), want, 1e-10, "precision form, point %d", i);
        const double th3[3] = {0.25, pts[i][0], pts[i][1]};
        cr_expect_float_eq(prior_log_prob(f, th3), want - 0.5 * 0.0625 - 0.5 * log(2 * M_PI), 1e-12, "file form");
    }
    cr_expect(prior_in_support(p, pts[2]));
    cr_expect(!prior_is_bounded(p));
    unlink(mf);
    unlink(cf);
    rmdir(dir);
    prior_destroy(&f);
    prior_destroy(&q);
    prior_destroy(&p);
}

/* Draws of a 3-d normal: sample means within 4 standard errors
 * (sqrt(S_jj / n)) and covariances within 4 standard errors
 * (sqrt((S_ij^2 + S_ii S_jj) / n)) of the given ones; the neighbours in the
 * row (independent dimensions) keep their own law. */
Test(prior, mvn_sampling_moments)
{
    const double mu[3] = {1, -2, 0.5};
    const double S[9] = {2, 0.8, -0.3, 0.8, 1, 0.2, -0.3, 0.2, 0.5};
    prior *p = parse1("uniform:5:6,mvn:[1,-2,0.5]:[[2,0.8,-0.3],[0.8,1,0.2],[-0.3,0.2,0.5]],normal:10:0.1");
    enum { N = 200000, D = 5 };
    double *th = malloc((size_t)N * D * sizeof *th);
    rng r;
    rng_seed(&r, 4, 0);
    prior_sample(p, &r, N, th);
    double m[3] = {0}, c[9] = {0};
    for (size_t i = 0; i < N; i++)
        for (int a = 0; a < 3; a++) m[a] += th[i * D + 1 + a] / N;
    for (size_t i = 0; i < N; i++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                c[a * 3 + b] += (th[i * D + 1 + a] - m[a]) * (th[i * D + 1 + b] - m[b]) / (N - 1);
    for (int a = 0; a < 3; a++) {
        cr_expect_leq(fabs(m[a] - mu[a]), 4 * sqrt(S[a * 4] / N), "mean %d: %g vs %g", a, m[a], mu[a]);
        for (int b = 0; b < 3; b++)
            cr_expect_leq(fabs(c[a * 3 + b] - S[a * 3 + b]), 4 * sqrt((S[a * 3 + b] * S[a * 3 + b] + S[a * 4] * S[b * 4]) / N),
                          "cov %d %d: %g vs %g", a, b, c[a * 3 + b], S[a * 3 + b]);
    }
    double m0 = 0, m4 = 0;
    for (size_t i = 0; i < N; i++) {
        cr_assert(th[i * D] >= 5 && th[i * D] < 6);
        m0 += th[i * D] / N;
        m4 += th[i * D + 4] / N;
    }
    cr_expect_leq(fabs(m0 - 5.5), 4 * sqrt(1.0 / 12 / N));
    cr_expect_leq(fabs(m4 - 10), 4 * 0.1 / sqrt(N));
    free(th);
    prior_destroy(&p);
}

Test(prior, bad_mvn_specs_are_explained)
{
    static const struct {
        const char *spec, *want;
    } cases[] = {
        {"mvn:[0,0]", "expected mvn:MEAN:COVARIANCE"},
        {"mvn:[0,0]:[[1,0],[0,1],[0,0]]", "must be 2 x 2"},
        {"mvn:[0,0]:[[1,0.5],[0.4,1]]", "not symmetric"},
        {"mvn:[0,0]:[[1,2],[2,1]]", "not positive definite"},
        {"mvn:[0,0]:[[1,0],[0]]", "rows of different lengths"},
        {"mvn:[0,a]:[[1,0],[0,1]]", "bad inline vector"},
        {"mvn:[0,0]:[1,0,0,1]", "must be 2 x 2"},
        {"mvn:[0,0]:[[1,0],[0,x]]", "bad inline matrix"},
        {"mvnprec:[0]:[[-1]]", "precision matrix is not symmetric positive definite"},
        {"mvn:/nonexistent/m.npy:[[1]]", "/nonexistent/m.npy"},
    };
    char err[600];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s[1] = {cases[i].spec};
        err[0] = 0;
        prior *p = prior_parse(s, 1, err, sizeof err);
        cr_expect_null(p, "'%s' accepted", cases[i].spec);
        cr_expect(strstr(err, cases[i].want) != NULL, "'%s': message '%s' lacks '%s'", cases[i].spec, err,
                  cases[i].want);
        prior_destroy(&p);
    }
}
