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
    for (uint32_t v = 0; v < 4; v++) {
        if (v == MODEL_FILE_VERSION) continue;
        buf[8] = (unsigned char)v;
        uint32_t crc = trace_crc32c(0, buf, len - 4);
        for (int i = 0; i < 4; i++) buf[len - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
        cr_assert_null(model_file_decode(buf, len, err, sizeof err));
        char want[64];
        snprintf(want, sizeof want, "format version %u", v);
        cr_expect(strstr(err, want) && strstr(err, "reads version 1"), "'%s'", err);
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
