/* test_protocol.c — the PPX wire codec (protocol/ppx.h): the spec's captured
 * test vectors, encode/decode round trips of every body and distribution, and
 * rejection of truncated, corrupt, oversized and inconsistent buffers. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ppx.h"

/* ---- test vectors from ../shared/spec/ppx-wire.md ------------------------- */

static const char HEX_RUN[] =
    "0c00000008000c000b000400080000000c000000000000030400040004000000";
static const char HEX_RESET[] =
    "0c00000008000c0007000800080000000000000b080000000400040004000000";
static const char HEX_HANDSHAKE[] =
    "0c00000008000a0009000400080000000c000000000106000800040006000000040000000400000064756d7000000000";
static const char HEX_SAMPLE[] =
    "0c00000008000c00070008000800000000000005100000000c00140008000c00070010000c00000000000001140000000800000024000000"
    "0000000000000000100000005b666f727761726428292b307839365d00000000d4ffffff3000000004000000e0ffffff0c00000004000000"
    "0000000001000000a8f4979b77e301400000000008000c0004000800080000000c000000040000000000000001000000000000000000f03f";
static const char HEX_SAMPLE_RESULT[] =
    "100000000000000008000a0009000400080000000c0000000006060008000400060000000c00000008000c000800040008000000080000000c0000000100000001000000010000000000000000001e40";

/* ---- fixtures written by flatc 2.0.8 (flatc -b) from JSON ----------------
 * With protocol/ppx.fbs modified so that Sample's slot 5 is `replace: bool`
 * (not deprecated), i.e. what an old sender writes:
 *   REPLACE:    {body_type:"Sample", body:{address:"old", name:"x",
 *                distribution_type:"Normal", distribution:{mean:{data:[0.5],shape:[]},
 *                stddev:{data:[2.0],shape:[]}}, replace:true}}      (control absent)
 *   REPLACE_NC: {body_type:"Sample", body:{address:"old", name:"x",
 *                distribution_type:"Poisson", distribution:{rate:{data:[3.0],shape:[]}},
 *                control:false, replace:true}}
 * With absent optional fields:
 *   NOSHAPE:    {body_type:"Observe", body:{distribution_type:"Uniform",
 *                distribution:{low:{data:[1.0,2.0,3.0]}, high:{}}}}
 *   HSR_EMPTY:  {body_type:"HandshakeResult", body:{}}
 *   TAG_NOVAL:  {body_type:"Tag", body:{address:"a"}} */
static const char HEX_REPLACE[] =
    "100000000000000008000c00070008000800000000000005140000001000140008000c0006001000000007001000000000000101640000005800"
    "000004000000d4ffffff3000000004000000e0ffffff0c00000004000000000000000100000000000000000000400000000008000c0004000800"
    "080000000c000000040000000000000001000000000000000000e03f0100000078000000030000006f6c6400";
static const char HEX_REPLACE_NC[] =
    "0c00000008000c00070008000800000000000005140000001000160008000c0005001000060007001000000000040001480000003c0000000c00"
    "00000000060008000400060000000c00000008000c0004000800080000000c00000004000000000000000100000000000000000008400100000078"
    "000000030000006f6c6400";
static const char HEX_NOSHAPE[] =
    "0c00000008000c00070008000800000000000007100000000c000c0000000000070008000c000000000000020c00000008000c00040008000800"
    "0000180000000800000004000600040000000000060008000400060000000400000003000000000000000000f03f000000000000004000000000"
    "00000840";
static const char HEX_HSR_EMPTY[] =
    "0c00000008000c00070008000800000000000002080000000400040004000000";
static const char HEX_TAG_NOVAL[] =
    "0c00000008000e000700080008000000000000090c000000000006000800040006000000040000000100000061000000";

/* ---- helpers --------------------------------------------------------------- */

/* Hex string to a malloc'd buffer of exactly the right size. */
static uint8_t *unhex(const char *hex, size_t *len) {
    size_t n = strlen(hex);
    cr_assert(n % 2 == 0, "odd hex length");
    uint8_t *b = malloc(n / 2 ? n / 2 : 1);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        cr_assert(sscanf(hex + 2 * i, "%2x", &v) == 1);
        b[i] = (uint8_t)v;
    }
    *len = n / 2;
    return b;
}

/* A copy of src[0..len) starting at base+off, where base (to be freed) is an
 * allocation of exactly off+len bytes: ASan sees any read past the end. */
static uint8_t *copy_at(const uint8_t *src, size_t len, size_t off, uint8_t **base) {
    uint8_t *b = malloc(off + len ? off + len : 1);
    cr_assert_not_null(b);
    cr_assert_eq((uintptr_t)b % 8, 0, "malloc not 8-aligned");
    if (len) memcpy(b + off, src, len);
    *base = b;
    return b + off;
}

static int in_buf(const void *p, const uint8_t *buf, size_t len) {
    const uint8_t *q = p;
    return q >= buf && q <= buf + len;
}

static const char *dist_param_name(int kind, int slot) {
    static const char *const names[12][2] = {
        {NULL, NULL},          {"mean", "stddev"},     {"low", "high"},
        {"probs", NULL},       {"rate", NULL},         {"probs", NULL},
        {"concentration1", "concentration0"},          {"rate", NULL},
        {"concentration", "rate"}, {"loc", "scale"},   {"total_count", "probs"},
        {"scale", "concentration"}};
    return names[kind][slot];
}
static int dist_nparams(int kind) { return dist_param_name(kind, 1) ? 2 : 1; }

/* Invariants every successfully decoded tensor must satisfy; reads every
 * element (so that ASan sees any bad view).  Returns a checksum. */
static double check_tensor_invariants(const ppx_tensor *t) {
    double sum = 0;
    if (t->len > 0) cr_assert_not_null(t->data);
    if (t->ndim > 0) cr_assert_not_null(t->shape);
    if (t->ndim == 0) {
        cr_assert_eq(t->len, 1, "0-d tensor with %zu elements", t->len);
    } else {
        uint64_t prod = 1;
        for (size_t i = 0; i < t->ndim; i++) {
            cr_assert_geq(t->shape[i], 0);
            prod *= (uint64_t)t->shape[i];
            if (prod > t->len) prod = t->len + 1; /* keep it bounded */
        }
        cr_assert_eq(prod, t->len, "shape product %llu != len %zu", (unsigned long long)prod,
                     t->len);
    }
    for (size_t i = 0; i < t->len; i++) sum += t->data[i] == t->data[i] ? t->data[i] : 0;
    cr_assert_eq((uintptr_t)t->data % 8, 0, "misaligned data view");
    return sum;
}

/* Touches every field of a decoded message and checks its invariants. */
static double touch_msg(const ppx_msg *m) {
    double sum = 0;
    cr_assert(m->type > PPX_MSG_NONE && m->type < PPX_MSG_TYPE_COUNT);
    cr_assert_not_null(m->system_name);
    cr_assert_not_null(m->model_name);
    cr_assert_not_null(m->address);
    cr_assert_not_null(m->name);
    sum += (double)(strlen(m->system_name) + strlen(m->model_name) + strlen(m->address) +
                    strlen(m->name));
    cr_assert(m->control == 0 || m->control == 1);
    cr_assert(m->dist.type >= PPX_DIST_NONE && m->dist.type < PPX_DIST_TYPE_COUNT);
    sum += check_tensor_invariants(&m->value);
    sum += check_tensor_invariants(&m->dist.param[0]);
    sum += check_tensor_invariants(&m->dist.param[1]);
    const ppx_tangent *tg = &m->tangent;
    cr_assert(tg->present == 0 || tg->present == 1);
    if (!tg->present) cr_assert(tg->n_theta == 0 && tg->len[0] == 0 && tg->len[1] == 0);
    for (size_t i = 0; i < tg->n_theta; i++) sum += (double)strlen(tg->theta[i]);
    for (int j = 0; j < 2; j++) {
        if (tg->len[j]) cr_assert_eq((uintptr_t)tg->d[j] % 8, 0, "misaligned tangent view");
        for (size_t i = 0; i < tg->len[j]; i++) {
            cr_assert(isfinite(tg->d[j][i]));
            sum += tg->d[j][i];
        }
    }
    return sum;
}

static void assert_empty_tensor(const ppx_tensor *t, const char *what) {
    cr_assert_eq(t->len, 0, "%s: len %zu, expected empty", what, t->len);
    cr_assert_eq(t->ndim, 1, "%s: ndim %zu, expected 1 (shape [0])", what, t->ndim);
    cr_assert_eq(t->shape[0], 0, "%s: shape [%d], expected [0]", what, t->shape[0]);
}

/* `want` as the encoder was given it; `got` as decoded. */
static void assert_tensor_same(const ppx_tensor *got, const ppx_tensor *want, const char *what) {
    if (want->len == 0 && (want->ndim == 0 || (want->ndim == 1 && want->shape[0] == 0))) {
        assert_empty_tensor(got, what);
        return;
    }
    cr_assert_eq(got->len, want->len, "%s: len %zu != %zu", what, got->len, want->len);
    cr_assert_eq(got->ndim, want->ndim, "%s: ndim %zu != %zu", what, got->ndim, want->ndim);
    for (size_t i = 0; i < want->ndim; i++)
        cr_assert_eq(got->shape[i], want->shape[i], "%s: shape[%zu]", what, i);
    if (want->len) cr_assert_not_null(got->data);
    for (size_t i = 0; i < want->len; i++)
        cr_assert(memcmp(&got->data[i], &want->data[i], sizeof(double)) == 0,
                  "%s: data[%zu] %.17g != %.17g", what, i, got->data[i], want->data[i]);
}

static const char *orempty(const char *s) { return s ? s : ""; }

static void assert_msg_same(const ppx_msg *got, const ppx_msg *want) {
    cr_assert_eq(got->type, want->type, "type %d != %d", got->type, want->type);
    cr_assert_not_null(got->system_name);
    cr_assert_not_null(got->model_name);
    cr_assert_not_null(got->address);
    cr_assert_not_null(got->name);
    switch (want->type) {
    case PPX_MSG_HANDSHAKE:
        cr_assert_str_eq(got->system_name, orempty(want->system_name));
        break;
    case PPX_MSG_HANDSHAKE_RESULT:
        cr_assert_str_eq(got->system_name, orempty(want->system_name));
        cr_assert_str_eq(got->model_name, orempty(want->model_name));
        break;
    case PPX_MSG_RUN_RESULT:
    case PPX_MSG_SAMPLE_RESULT:
        assert_tensor_same(&got->value, &want->value, "result");
        break;
    case PPX_MSG_SAMPLE:
    case PPX_MSG_OBSERVE:
        cr_assert_str_eq(got->address, orempty(want->address));
        cr_assert_str_eq(got->name, orempty(want->name));
        cr_assert_eq(got->dist.type, want->dist.type);
        if (want->dist.type != PPX_DIST_NONE) {
            assert_tensor_same(&got->dist.param[0], &want->dist.param[0], "param0");
            if (dist_nparams(want->dist.type) == 2)
                assert_tensor_same(&got->dist.param[1], &want->dist.param[1], "param1");
            else
                assert_empty_tensor(&got->dist.param[1], "unused param1");
        } else {
            assert_empty_tensor(&got->dist.param[0], "param0 of no distribution");
            assert_empty_tensor(&got->dist.param[1], "param1 of no distribution");
        }
        if (want->type == PPX_MSG_SAMPLE)
            cr_assert_eq(got->control, want->control ? 1 : 0);
        else
            assert_tensor_same(&got->value, &want->value, "Observe.value");
        cr_assert_eq(got->tangent.present, want->tangent.present ? 1 : 0, "tangent presence");
        if (want->tangent.present) {
            cr_assert_eq(got->tangent.n_theta, want->tangent.n_theta);
            for (size_t i = 0; i < want->tangent.n_theta; i++)
                cr_assert_str_eq(got->tangent.theta[i], want->tangent.theta[i]);
            for (int j = 0; j < 2; j++) {
                cr_assert_eq(got->tangent.len[j], want->tangent.len[j], "tangent param%d length", j);
                if (want->tangent.len[j])
                    cr_assert(memcmp(got->tangent.d[j], want->tangent.d[j], want->tangent.len[j] * 8) == 0,
                              "tangent param%d values", j);
                else
                    cr_assert_null(got->tangent.d[j]);
            }
        }
        break;
    case PPX_MSG_TAG:
        cr_assert_str_eq(got->address, orempty(want->address));
        cr_assert_str_eq(got->name, orempty(want->name));
        assert_tensor_same(&got->value, &want->value, "Tag.value");
        break;
    default:
        break;
    }
    touch_msg(got);
}

/* Encode `in`, decode it from the encoder's (aligned) buffer and from a
 * misaligned copy, and compare both with `in`. */
static void roundtrip(const ppx_msg *in) {
    ppx_encoder *e = ppx_encoder_new();
    cr_assert_not_null(e);
    ppx_error err;
    size_t len = 0;
    const uint8_t *bytes = ppx_encode(e, in, &len, &err);
    cr_assert_not_null(bytes, "encode %s: %s", ppx_msg_type_name(in->type), err.message);
    cr_assert_eq(err.code, PPX_OK);
    cr_assert_gt(len, 0);
    cr_assert_eq(len % 4, 0);
    cr_assert(len < 8 || memcmp(bytes + 4, "PPXF", 4) != 0, "file identifier written");

    ppx_msg out;
    ppx_msg_init(&out);
    cr_assert_eq(ppx_decode(bytes, len, NULL, &out, &err), PPX_OK, "decode %s: %s",
                 ppx_msg_type_name(in->type), err.message);
    /* FlatBufferBuilder aligns its output to the largest scalar it holds: 8
     * when there are doubles; decoding copies only what is not 8-aligned. */
    if ((uintptr_t)bytes % 8 == 0)
        cr_assert_null(out.owned_, "aligned decode must be zero-copy");
    else
        cr_assert_not_null(out.owned_, "unaligned decode must copy");
    assert_msg_same(&out, in);

    uint8_t *base;
    uint8_t *mis = copy_at(bytes, len, 1, &base);
    cr_assert_eq(ppx_decode(mis, len, NULL, &out, &err), PPX_OK, "misaligned decode: %s",
                 err.message);
    cr_assert_not_null(out.owned_, "misaligned decode must copy");
    assert_msg_same(&out, in);
    ppx_msg_clear(&out);
    free(base);
    ppx_encoder_destroy(&e);
    cr_assert_null(e);
}

/* Decode a hex vector at offset `off` (0: aligned, 1: misaligned).  The
 * caller frees *base after the checks (views may point into it). */
static void decode_hex_at(const char *hex, size_t off, ppx_msg *m, uint8_t **base,
                          size_t *len_out) {
    size_t len;
    uint8_t *raw = unhex(hex, &len);
    uint8_t *buf = copy_at(raw, len, off, base);
    free(raw);
    ppx_error err;
    ppx_msg_init(m);
    cr_assert_eq(ppx_decode(buf, len, NULL, m, &err), PPX_OK, "decode: %s", err.message);
    cr_assert_eq(err.code, PPX_OK);
    if (off % 8 == 0) {
        cr_assert_null(m->owned_);
    } else {
        cr_assert_not_null(m->owned_);
    }
    if (len_out) *len_out = len;
}

static void assert_no_fields(const ppx_msg *m) {
    cr_assert_str_eq(m->system_name, "");
    cr_assert_str_eq(m->model_name, "");
    cr_assert_str_eq(m->address, "");
    cr_assert_str_eq(m->name, "");
    cr_assert_eq(m->dist.type, PPX_DIST_NONE);
    cr_assert_eq(m->control, 1);
    assert_empty_tensor(&m->value, "value");
    assert_empty_tensor(&m->dist.param[0], "param0");
    assert_empty_tensor(&m->dist.param[1], "param1");
    cr_assert_eq(m->tangent.present, 0);
    cr_assert_null(m->tangent_names_);
}

/* Position of field `vt` (4, 6, ...) of the table at `t`, or 0 when absent;
 * and following an offset.  For patching encoded buffers in tests. */
static uint32_t rd32(const uint8_t *b, size_t p) { uint32_t v; memcpy(&v, b + p, 4); return v; }
static void wr32(uint8_t *b, size_t p, uint32_t v) { memcpy(b + p, &v, 4); }
static uint16_t rd16(const uint8_t *b, size_t p) { uint16_t v; memcpy(&v, b + p, 2); return v; }
static size_t fb_field(const uint8_t *b, size_t t, unsigned vt) {
    int32_t so;
    memcpy(&so, b + t, 4);
    size_t v = (size_t)((int64_t)t - so);
    if (vt >= rd16(b, v)) return 0;
    uint16_t off = rd16(b, v + vt);
    return off ? t + off : 0;
}
static size_t fb_deref(const uint8_t *b, size_t p) { return p + rd32(b, p); }
static size_t fb_root(const uint8_t *b) { return rd32(b, 0); }
static size_t fb_body(const uint8_t *b) { return fb_deref(b, fb_field(b, fb_root(b), 6)); }

/* ---- message builders --------------------------------------------------------- */

static const double D6[6] = {1.5, -2.25, 3.0, 1e300, -0.0, 4.125};
static const int32_t S23[2] = {2, 3};
static const int32_t S6[1] = {6};
static const int32_t S3[1] = {3};
static const int32_t S204[3] = {2, 0, 4};
static const double PI = 3.141592653589793;
static const double D12[12] = {0.5, -1, 2, 0, 0.25, 3, -4, 1e-300, 7, 8, -0.0, 1e300};

static ppx_tensor T(const double *d, size_t len, const int32_t *shape, size_t ndim) {
    ppx_tensor t = {d, len, shape, ndim};
    return t;
}

static ppx_msg base_msg(ppx_msg_type type) {
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = type;
    return m;
}

/* ---- tests: names, defaults, init ------------------------------------------ */

Test(protocol_api, names) {
    static const char *const msgs[] = {"Handshake", "HandshakeResult", "Run", "RunResult",
                                       "Sample", "SampleResult", "Observe", "ObserveResult",
                                       "Tag", "TagResult", "Reset"};
    static const char *const dists[] = {"Normal", "Uniform", "Categorical", "Poisson",
                                        "Bernoulli", "Beta", "Exponential", "Gamma",
                                        "LogNormal", "Binomial", "Weibull"};
    for (int i = 0; i < 11; i++) {
        cr_assert_str_eq(ppx_msg_type_name((ppx_msg_type)(i + 1)), msgs[i]);
        cr_assert_str_eq(ppx_dist_type_name((ppx_dist_type)(i + 1)), dists[i]);
    }
    cr_assert_str_eq(ppx_msg_type_name(PPX_MSG_TYPE_COUNT), "Unknown");
    cr_assert_str_eq(ppx_msg_type_name((ppx_msg_type)99), "Unknown");
    cr_assert_str_eq(ppx_msg_type_name((ppx_msg_type)-1), "Unknown");
    cr_assert_str_eq(ppx_dist_type_name(PPX_DIST_TYPE_COUNT), "Unknown");
    cr_assert_str_eq(ppx_dist_type_name((ppx_dist_type)-7), "Unknown");
    cr_assert_not_null(ppx_msg_type_name(PPX_MSG_NONE));
    cr_assert_not_null(ppx_dist_type_name(PPX_DIST_NONE));
    for (int s = PPX_OK; s <= PPX_E_TANGENT; s++) {
        const char *n = ppx_status_name((ppx_status)s);
        cr_assert_not_null(n);
        cr_assert_str_neq(n, "Unknown");
        for (int t = PPX_OK; t < s; t++)
            cr_assert_str_neq(n, ppx_status_name((ppx_status)t), "status names must differ");
    }
    cr_assert_str_eq(ppx_status_name((ppx_status)9), "Unknown");
    cr_assert_str_eq(ppx_status_name((ppx_status)-1), "Unknown");
}

Test(protocol_api, limits_default) {
    ppx_limits l = ppx_limits_default();
    cr_assert_eq(l.max_message_bytes, (size_t)64 << 20);
    cr_assert_eq(l.max_tensor_len, (size_t)1 << 24);
    cr_assert_eq(l.max_message_bytes, PPX_DEFAULT_MAX_MESSAGE_BYTES);
    cr_assert_eq(l.max_tensor_len, PPX_DEFAULT_MAX_TENSOR_LEN);
}

Test(protocol_api, msg_init_and_clear) {
    ppx_msg m;
    memset(&m, 0xa5, sizeof m);
    ppx_msg_init(&m);
    cr_assert_eq(m.type, PPX_MSG_NONE);
    assert_no_fields(&m);
    cr_assert_null(m.owned_);
    cr_assert_null(m.value.data);
    ppx_msg_clear(&m);
    cr_assert_eq(m.type, PPX_MSG_NONE);
    assert_no_fields(&m);
    ppx_msg_clear(NULL);
    ppx_msg_init(NULL);
    ppx_encoder_destroy(NULL);
    ppx_encoder *e = NULL;
    ppx_encoder_destroy(&e);
}

/* ---- tests: spec test vectors ----------------------------------------------- */

Test(protocol_vectors, run) {
    for (size_t off = 0; off < 2; off++) {
        ppx_msg m;
        uint8_t *base;
        size_t len;
        decode_hex_at(HEX_RUN, off, &m, &base, &len);
        cr_assert_eq(len, 32);
        cr_assert_eq(m.type, PPX_MSG_RUN);
        assert_no_fields(&m);
        ppx_msg_clear(&m);
        cr_assert_null(m.owned_);
        free(base);
    }
}

Test(protocol_vectors, reset) {
    for (size_t off = 0; off < 2; off++) {
        ppx_msg m;
        uint8_t *base;
        size_t len;
        decode_hex_at(HEX_RESET, off, &m, &base, &len);
        cr_assert_eq(len, 32);
        cr_assert_eq(m.type, PPX_MSG_RESET);
        assert_no_fields(&m);
        ppx_msg_clear(&m);
        free(base);
    }
}

Test(protocol_vectors, handshake) {
    for (size_t off = 0; off < 2; off++) {
        ppx_msg m;
        uint8_t *base;
        size_t len;
        decode_hex_at(HEX_HANDSHAKE, off, &m, &base, &len);
        cr_assert_eq(len, 48);
        cr_assert_eq(m.type, PPX_MSG_HANDSHAKE);
        cr_assert_str_eq(m.system_name, "dump");
        cr_assert_str_eq(m.model_name, "");
        cr_assert_str_eq(m.address, "");
        cr_assert_str_eq(m.name, "");
        if (off == 0) cr_assert(in_buf(m.system_name, base, len), "zero-copy string");
        ppx_msg_clear(&m);
        free(base);
    }
}

Test(protocol_vectors, sample_from_cpp_simulator) {
    for (size_t off = 0; off < 2; off++) {
        ppx_msg m;
        uint8_t *base;
        size_t len;
        decode_hex_at(HEX_SAMPLE, off, &m, &base, &len);
        cr_assert_eq(len, 168);
        cr_assert_eq(m.type, PPX_MSG_SAMPLE);
        cr_assert_str_eq(m.address, "[forward()+0x96]");
        cr_assert_str_eq(m.name, "");
        cr_assert_eq(m.control, 1, "absent control must decode as the default true");
        cr_assert_eq(m.dist.type, PPX_DIST_NORMAL);
        const ppx_tensor *mean = &m.dist.param[0], *sd = &m.dist.param[1];
        cr_assert_eq(mean->len, 1);
        cr_assert_eq(mean->ndim, 0, "shape [] is 0-d");
        cr_assert_eq(mean->data[0], 1.0);
        cr_assert_eq(sd->len, 1);
        cr_assert_eq(sd->ndim, 0);
        cr_assert_float_eq(sd->data[0], sqrt(5.0), 1e-15);
        cr_assert_eq((uintptr_t)mean->data % 8, 0);
        cr_assert_eq((uintptr_t)sd->data % 8, 0);
        if (off == 0) {
            cr_assert(in_buf(mean->data, base, len));
            cr_assert(in_buf(m.address, base, len));
        } else {
            cr_assert(!in_buf(mean->data, base, len + 1), "views must be in the private copy");
        }
        assert_empty_tensor(&m.value, "Sample.value");
        touch_msg(&m);
        ppx_msg_clear(&m);
        free(base);
    }
}

Test(protocol_vectors, sample_result) {
    for (size_t off = 0; off < 2; off++) {
        ppx_msg m;
        uint8_t *base;
        size_t len;
        decode_hex_at(HEX_SAMPLE_RESULT, off, &m, &base, &len);
        cr_assert_eq(len, 80);
        cr_assert_eq(m.type, PPX_MSG_SAMPLE_RESULT);
        cr_assert_eq(m.value.len, 1);
        cr_assert_eq(m.value.ndim, 1);
        cr_assert_eq(m.value.shape[0], 1);
        cr_assert_eq(m.value.data[0], 7.5);
        cr_assert_str_eq(m.address, "");
        ppx_msg_clear(&m);
        free(base);
    }
}

/* Decoding the vectors, re-encoding and decoding again gives the same fields. */
Test(protocol_vectors, reencode) {
    const char *vecs[] = {HEX_RUN, HEX_RESET, HEX_HANDSHAKE, HEX_SAMPLE, HEX_SAMPLE_RESULT,
                          HEX_REPLACE, HEX_REPLACE_NC, HEX_NOSHAPE, HEX_HSR_EMPTY, HEX_TAG_NOVAL};
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        ppx_msg m;
        uint8_t *base;
        decode_hex_at(vecs[i], 1, &m, &base, NULL);
        roundtrip(&m);
        ppx_msg_clear(&m);
        free(base);
    }
}

/* An old sender's Sample with the removed slot-5 `replace` set: ignored. */
Test(protocol_vectors, deprecated_replace_ignored) {
    for (size_t off = 0; off < 2; off++) {
        ppx_msg m;
        uint8_t *base;
        decode_hex_at(HEX_REPLACE, off, &m, &base, NULL);
        cr_assert_eq(m.type, PPX_MSG_SAMPLE);
        cr_assert_str_eq(m.address, "old");
        cr_assert_str_eq(m.name, "x");
        cr_assert_eq(m.control, 1);
        cr_assert_eq(m.dist.type, PPX_DIST_NORMAL);
        cr_assert_eq(m.dist.param[0].data[0], 0.5);
        cr_assert_eq(m.dist.param[0].ndim, 0);
        cr_assert_eq(m.dist.param[1].data[0], 2.0);
        ppx_msg_clear(&m);
        free(base);

        decode_hex_at(HEX_REPLACE_NC, off, &m, &base, NULL);
        cr_assert_eq(m.type, PPX_MSG_SAMPLE);
        cr_assert_eq(m.control, 0);
        cr_assert_eq(m.dist.type, PPX_DIST_POISSON);
        cr_assert_eq(m.dist.param[0].len, 1);
        cr_assert_eq(m.dist.param[0].data[0], 3.0);
        assert_empty_tensor(&m.dist.param[1], "Poisson param1");
        ppx_msg_clear(&m);
        free(base);
    }
}

/* Absent optional fields: strings "", tensor without shape -> shape [len],
 * tensor without anything -> empty, absent Observe.value -> empty. */
Test(protocol_vectors, absent_fields) {
    for (size_t off = 0; off < 2; off++) {
        ppx_msg m;
        uint8_t *base;
        decode_hex_at(HEX_NOSHAPE, off, &m, &base, NULL);
        cr_assert_eq(m.type, PPX_MSG_OBSERVE);
        cr_assert_str_eq(m.address, "");
        cr_assert_str_eq(m.name, "");
        cr_assert_eq(m.dist.type, PPX_DIST_UNIFORM);
        const ppx_tensor *low = &m.dist.param[0];
        cr_assert_eq(low->len, 3);
        cr_assert_eq(low->ndim, 1);
        cr_assert_eq(low->shape[0], 3);
        cr_assert_eq(low->shape, &m.shape_scratch_[1], "absent shape uses the decoder's storage");
        cr_assert_eq(low->data[0], 1.0);
        cr_assert_eq(low->data[1], 2.0);
        cr_assert_eq(low->data[2], 3.0);
        assert_empty_tensor(&m.dist.param[1], "Uniform.high {}");
        cr_assert_null(m.dist.param[1].data);
        assert_empty_tensor(&m.value, "Observe.value (absent)");
        cr_assert_null(m.value.data);
        touch_msg(&m);
        ppx_msg_clear(&m);
        free(base);

        decode_hex_at(HEX_HSR_EMPTY, off, &m, &base, NULL);
        cr_assert_eq(m.type, PPX_MSG_HANDSHAKE_RESULT);
        cr_assert_str_eq(m.system_name, "");
        cr_assert_str_eq(m.model_name, "");
        ppx_msg_clear(&m);
        free(base);

        decode_hex_at(HEX_TAG_NOVAL, off, &m, &base, NULL);
        cr_assert_eq(m.type, PPX_MSG_TAG);
        cr_assert_str_eq(m.address, "a");
        cr_assert_str_eq(m.name, "");
        assert_empty_tensor(&m.value, "Tag.value (absent)");
        ppx_msg_clear(&m);
        free(base);
    }
}

/* ---- tests: round trips -------------------------------------------------------- */

Test(protocol_roundtrip, handshake) {
    ppx_msg m = base_msg(PPX_MSG_HANDSHAKE);
    m.system_name = "pyprob_cpp \xc3\xa9 v1.0 [with spaces]";
    roundtrip(&m);
    m.system_name = NULL; /* written as "" */
    roundtrip(&m);
    char big[5000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    m.system_name = big;
    roundtrip(&m);
}

Test(protocol_roundtrip, handshake_result) {
    ppx_msg m = base_msg(PPX_MSG_HANDSHAKE_RESULT);
    m.system_name = "ppxd";
    m.model_name = "Gaussian with unknown mean";
    roundtrip(&m);
    m.model_name = NULL;
    roundtrip(&m);
}

Test(protocol_roundtrip, no_field_bodies) {
    ppx_msg_type types[] = {PPX_MSG_RUN, PPX_MSG_OBSERVE_RESULT, PPX_MSG_TAG_RESULT,
                            PPX_MSG_RESET};
    for (size_t i = 0; i < 4; i++) {
        ppx_msg m = base_msg(types[i]);
        m.address = "ignored"; /* fields that do not belong to the type are not written */
        roundtrip(&m);
        ppx_encoder *e = ppx_encoder_new();
        size_t len;
        const uint8_t *b = ppx_encode(e, &m, &len, NULL);
        cr_assert_not_null(b);
        ppx_msg out;
        ppx_msg_init(&out);
        cr_assert_eq(ppx_decode(b, len, NULL, &out, NULL), PPX_OK);
        assert_no_fields(&out);
        /* the body table exists even though it has no fields */
        cr_assert_neq(fb_field(b, fb_root(b), 6), 0);
        ppx_msg_clear(&out);
        ppx_encoder_destroy(&e);
    }
}

Test(protocol_roundtrip, result_tensors_of_many_shapes) {
    double x = PI;
    ppx_tensor tensors[] = {
        ppx_tensor_scalar(&x),           /* 0-d scalar */
        T(D6, 6, S6, 1),                 /* 1-D */
        T(D6, 6, S23, 2),                /* 2-D */
        T(NULL, 0, S204, 3),             /* empty with a shape */
        ppx_tensor_empty(),              /* absent */
        T(NULL, 0, NULL, 0),             /* zeroed: absent */
        T(D6, 3, S3, 1),
    };
    ppx_msg_type types[] = {PPX_MSG_RUN_RESULT, PPX_MSG_SAMPLE_RESULT, PPX_MSG_TAG,
                            PPX_MSG_OBSERVE};
    for (size_t t = 0; t < 4; t++) {
        for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
            ppx_msg m = base_msg(types[t]);
            m.address = "addr";
            m.name = "nm";
            m.value = tensors[i];
            if (types[t] == PPX_MSG_OBSERVE) {
                m.dist.type = PPX_DIST_NORMAL;
                m.dist.param[0] = ppx_tensor_scalar(&x);
                m.dist.param[1] = ppx_tensor_scalar(&x);
            }
            roundtrip(&m);
        }
    }
}

Test(protocol_roundtrip, scalar_is_0d) {
    double x = -7.0;
    ppx_msg m = base_msg(PPX_MSG_SAMPLE_RESULT);
    m.value = ppx_tensor_scalar(&x);
    ppx_encoder *e = ppx_encoder_new();
    size_t len;
    const uint8_t *b = ppx_encode(e, &m, &len, NULL);
    cr_assert_not_null(b);
    ppx_msg out;
    ppx_msg_init(&out);
    cr_assert_eq(ppx_decode(b, len, NULL, &out, NULL), PPX_OK);
    cr_assert_eq(out.value.len, 1);
    cr_assert_eq(out.value.ndim, 0);
    cr_assert_not_null(out.value.shape, "shape=[] vector must be written");
    cr_assert(in_buf(out.value.shape, b, len));
    cr_assert_eq(out.value.data[0], -7.0);
    ppx_msg_clear(&out);
    ppx_encoder_destroy(&e);
}

Test(protocol_roundtrip, tag) {
    ppx_msg m = base_msg(PPX_MSG_TAG);
    m.address = "[main()+0x10]";
    m.name = "loss/epoch 3";
    m.value = T(D6, 6, S23, 2);
    roundtrip(&m);
}

/* Sample and Observe with each of the 11 distributions. */
Test(protocol_roundtrip, every_distribution) {
    static const double probs[6] = {1, 2, 7, 0.5, 0.25, 3}; /* unnormalised */
    static const double a[3] = {0.5, 1.5, 2.5}, b[3] = {3.0, 4.0, 5.0};
    double sa = 2.0, sb = 0.75;
    for (int kind = PPX_DIST_NORMAL; kind < PPX_DIST_TYPE_COUNT; kind++) {
        for (int variant = 0; variant < 3; variant++) {
            ppx_msg_type types[2] = {PPX_MSG_SAMPLE, PPX_MSG_OBSERVE};
            for (int ti = 0; ti < 2; ti++) {
                ppx_msg m = base_msg(types[ti]);
                m.address = "[forward()+0x1a2]";
                m.name = variant == 1 ? "obs0" : "";
                m.dist.type = (ppx_dist_type)kind;
                if (kind == PPX_DIST_CATEGORICAL) {
                    m.dist.param[0] = variant == 0 ? T(probs, 3, S3, 1)
                                    : variant == 1 ? T(probs, 6, S23, 2)
                                                   : T(probs, 6, S6, 1);
                } else if (variant == 0) {
                    m.dist.param[0] = ppx_tensor_scalar(&sa);
                    m.dist.param[1] = ppx_tensor_scalar(&sb);
                } else if (variant == 1) {
                    m.dist.param[0] = T(a, 3, S3, 1);
                    m.dist.param[1] = T(b, 3, S3, 1);
                } else {
                    m.dist.param[0] = T(a, 3, S3, 1);
                    m.dist.param[1] = ppx_tensor_scalar(&sb); /* broadcast */
                }
                if (dist_nparams(kind) == 1) {
                    /* a one-parameter kind ignores param[1], even garbage */
                    m.dist.param[1] = T(NULL, 99, NULL, 7);
                }
                if (types[ti] == PPX_MSG_OBSERVE) {
                    m.value = variant == 2 ? ppx_tensor_empty() : T(a, 3, S3, 1);
                }
                m.control = variant != 2;
                roundtrip(&m);
            }
        }
    }
}

Test(protocol_roundtrip, sample_control_false) {
    double mu = 1, sd = 2.2360679774997896;
    ppx_msg m = base_msg(PPX_MSG_SAMPLE);
    m.address = "[forward()+0x96]";
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&mu);
    m.dist.param[1] = ppx_tensor_scalar(&sd);
    m.control = 0;
    roundtrip(&m);
    m.control = 1;
    roundtrip(&m);
    m.control = 42; /* any non-zero is true */
    roundtrip(&m);
}

Test(protocol_roundtrip, observe_without_value_or_distribution) {
    double mu = 8;
    ppx_msg m = base_msg(PPX_MSG_OBSERVE);
    m.address = "[observe()+0x2]";
    m.name = "obs0";
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&mu);
    m.dist.param[1] = ppx_tensor_scalar(&mu);
    m.value = ppx_tensor_empty();
    roundtrip(&m);

    ppx_encoder *e = ppx_encoder_new();
    size_t len;
    const uint8_t *b = ppx_encode(e, &m, &len, NULL);
    ppx_msg out;
    ppx_msg_init(&out);
    cr_assert_eq(ppx_decode(b, len, NULL, &out, NULL), PPX_OK);
    cr_assert_eq(out.value.len, 0, "absent value decodes with len 0");

    /* no distribution at all: allowed for Observe */
    m.dist.type = PPX_DIST_NONE;
    m.value = ppx_tensor_scalar(&mu);
    roundtrip(&m);
    b = ppx_encode(e, &m, &len, NULL);
    cr_assert_not_null(b);
    cr_assert_eq(ppx_decode(b, len, NULL, &out, NULL), PPX_OK);
    cr_assert_eq(out.dist.type, PPX_DIST_NONE);
    cr_assert_eq(out.value.data[0], 8.0);
    ppx_msg_clear(&out);
    ppx_encoder_destroy(&e);
}

/* One encoder reused for many messages; each result valid until the next. */
Test(protocol_roundtrip, encoder_reuse) {
    ppx_encoder *e = ppx_encoder_new();
    ppx_msg out;
    ppx_msg_init(&out);
    for (int i = 0; i < 200; i++) {
        ppx_msg m = base_msg((ppx_msg_type)(1 + i % 11));
        double v[4] = {i, i + 0.5, -i, 1.0 / (i + 1)};
        int32_t shp[1] = {1 + i % 4};
        m.system_name = "s";
        m.model_name = "mm";
        m.address = "aa";
        m.name = i % 2 ? "nn" : NULL;
        m.dist.type = (ppx_dist_type)(1 + i % 11);
        m.dist.param[0] = T(v, (size_t)shp[0], shp, 1);
        m.dist.param[1] = ppx_tensor_scalar(v);
        m.value = T(v, (size_t)shp[0], shp, 1);
        size_t len;
        ppx_error err;
        const uint8_t *b = ppx_encode(e, &m, &len, &err);
        cr_assert_not_null(b, "%s", err.message);
        cr_assert_eq(ppx_decode(b, len, NULL, &out, &err), PPX_OK, "%s", err.message);
        assert_msg_same(&out, &m);
    }
    ppx_msg_clear(&out);
    ppx_encoder_destroy(&e);
}

/* ---- tests: what the encoder writes ------------------------------------------ */

Test(protocol_encode, no_file_identifier) {
    ppx_encoder *e = ppx_encoder_new();
    double x = 1;
    for (int t = 1; t < PPX_MSG_TYPE_COUNT; t++) {
        ppx_msg m = base_msg((ppx_msg_type)t);
        m.dist.type = PPX_DIST_NORMAL;
        m.dist.param[0] = ppx_tensor_scalar(&x);
        m.dist.param[1] = ppx_tensor_scalar(&x);
        size_t len;
        const uint8_t *b = ppx_encode(e, &m, &len, NULL);
        cr_assert_not_null(b);
        cr_assert_geq(len, 8);
        cr_assert(memcmp(b + 4, "PPXF", 4) != 0, "%s has a file identifier",
                  ppx_msg_type_name((ppx_msg_type)t));
        /* the root offset points past the (absent) identifier to the root table */
        cr_assert_lt(fb_root(b), len);
        /* the body union tag is the message type */
        size_t bt = fb_field(b, fb_root(b), 4);
        cr_assert_neq(bt, 0);
        cr_assert_eq(b[bt], t);
    }
    ppx_encoder_destroy(&e);
}

/* A Tensor table at `t` has both vectors; returns the data length. */
static uint32_t assert_full_tensor(const uint8_t *b, size_t len, size_t t, const char *what) {
    size_t df = fb_field(b, t, 4), sf = fb_field(b, t, 6);
    cr_assert_neq(df, 0, "%s: data vector not written", what);
    cr_assert_neq(sf, 0, "%s: shape vector not written", what);
    size_t dv = fb_deref(b, df), sv = fb_deref(b, sf);
    cr_assert_leq(dv + 4, len);
    cr_assert_leq(sv + 4, len);
    return rd32(b, dv);
}

static void assert_string_field(const uint8_t *b, size_t table, unsigned vt, const char *what) {
    size_t f = fb_field(b, table, vt);
    cr_assert_neq(f, 0, "%s not written", what);
    size_t sp = fb_deref(b, f);
    cr_assert_eq(b[sp + 4 + rd32(b, sp)], 0, "%s not NUL-terminated", what);
}

/* Every string field and both vectors of every tensor are present in what the
 * encoder writes, even when empty (upstream peers dereference them). */
Test(protocol_encode, sample_always_has_strings_and_vectors) {
    ppx_encoder *e = ppx_encoder_new();
    ppx_msg m = base_msg(PPX_MSG_SAMPLE);
    m.address = NULL;
    m.name = NULL;
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = T(NULL, 0, NULL, 0);
    m.dist.param[1] = ppx_tensor_empty();
    size_t len;
    const uint8_t *b = ppx_encode(e, &m, &len, NULL);
    cr_assert_not_null(b);

    /* on the wire */
    size_t body = fb_body(b);
    assert_string_field(b, body, 4, "Sample.address");
    assert_string_field(b, body, 6, "Sample.name");
    size_t dt = fb_field(b, body, 8);
    cr_assert_neq(dt, 0);
    cr_assert_eq(b[dt], PPX_DIST_NORMAL);
    size_t dist = fb_deref(b, fb_field(b, body, 10));
    for (unsigned vt = 4; vt <= 6; vt += 2) {
        size_t t = fb_field(b, dist, vt);
        cr_assert_neq(t, 0, "Normal param table not written");
        cr_assert_eq(assert_full_tensor(b, len, fb_deref(b, t), "Normal param"), 0);
        size_t sv = fb_deref(b, fb_field(b, fb_deref(b, t), 6));
        cr_assert_eq(rd32(b, sv), 1, "absent value must be written as shape [0]");
        cr_assert_eq(rd32(b, sv + 4), 0);
    }
    /* control is written explicitly (slot 4, vtable offset 12); no slot 5 */
    size_t ctl = fb_field(b, body, 12);
    cr_assert_neq(ctl, 0, "control not written");
    cr_assert_eq(b[ctl], 1);
    cr_assert_eq(fb_field(b, body, 14), 0);

    /* decoded */
    ppx_msg out;
    ppx_msg_init(&out);
    cr_assert_eq(ppx_decode(b, len, NULL, &out, NULL), PPX_OK);
    cr_assert_not_null(out.address);
    cr_assert_not_null(out.name);
    cr_assert_str_eq(out.address, "");
    cr_assert_str_eq(out.name, "");
    for (int i = 0; i < 2; i++) {
        const ppx_tensor *t = &out.dist.param[i];
        cr_assert_eq(t->len, 0);
        cr_assert_null(t->data, "empty data decodes as NULL");
        cr_assert_not_null(t->shape);
        cr_assert_eq(t->ndim, 1);
        cr_assert_eq(t->shape[0], 0);
        /* the shape came from the wire, not from the decoder's scratch */
        cr_assert(t->shape != &out.shape_scratch_[1 + i]);
    }

    /* Observe, Tag, results, handshakes: the same rule */
    ppx_msg_type types[] = {PPX_MSG_OBSERVE, PPX_MSG_TAG, PPX_MSG_RUN_RESULT,
                            PPX_MSG_SAMPLE_RESULT, PPX_MSG_HANDSHAKE, PPX_MSG_HANDSHAKE_RESULT};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        ppx_msg o = base_msg(types[i]);
        o.address = o.name = o.system_name = o.model_name = NULL;
        b = ppx_encode(e, &o, &len, NULL);
        cr_assert_not_null(b);
        body = fb_body(b);
        switch (types[i]) {
        case PPX_MSG_OBSERVE:
            assert_string_field(b, body, 4, "Observe.address");
            assert_string_field(b, body, 6, "Observe.name");
            cr_assert_neq(fb_field(b, body, 12), 0, "Observe.value not written");
            assert_full_tensor(b, len, fb_deref(b, fb_field(b, body, 12)), "Observe.value");
            break;
        case PPX_MSG_TAG:
            assert_string_field(b, body, 4, "Tag.address");
            assert_string_field(b, body, 6, "Tag.name");
            cr_assert_neq(fb_field(b, body, 8), 0, "Tag.value not written");
            assert_full_tensor(b, len, fb_deref(b, fb_field(b, body, 8)), "Tag.value");
            break;
        case PPX_MSG_RUN_RESULT:
        case PPX_MSG_SAMPLE_RESULT:
            cr_assert_neq(fb_field(b, body, 4), 0, "result not written");
            assert_full_tensor(b, len, fb_deref(b, fb_field(b, body, 4)), "result");
            break;
        case PPX_MSG_HANDSHAKE:
            assert_string_field(b, body, 4, "Handshake.system_name");
            break;
        default:
            assert_string_field(b, body, 4, "HandshakeResult.system_name");
            assert_string_field(b, body, 6, "HandshakeResult.model_name");
            break;
        }
        cr_assert_eq(ppx_decode(b, len, NULL, &out, NULL), PPX_OK);
        touch_msg(&out);
    }
    ppx_msg_clear(&out);
    ppx_encoder_destroy(&e);
}

Test(protocol_encode, rejects_bad_input) {
    ppx_encoder *e = ppx_encoder_new();
    static const double d[6] = {1, 2, 3, 4, 5, 6};
    static const int32_t s23[2] = {2, 3}, sneg[2] = {-2, -3}, s5[1] = {5};
    double x = 1;
    size_t len = 123;
    ppx_error err;
    ppx_msg m;

    /* unknown types */
    int bad_types[] = {PPX_MSG_NONE, PPX_MSG_TYPE_COUNT, 99, -1};
    for (size_t i = 0; i < 4; i++) {
        m = base_msg((ppx_msg_type)bad_types[i]);
        len = 123;
        cr_assert_null(ppx_encode(e, &m, &len, &err));
        cr_assert_eq(err.code, PPX_E_ARG);
        cr_assert_eq(len, 0);
        cr_assert_neq(err.message[0], '\0');
    }

    /* shape product != len */
    m = base_msg(PPX_MSG_SAMPLE_RESULT);
    m.value = T(d, 5, s23, 2);
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    cr_assert_str_eq(err.message, "SampleResult.result: shape [2,3] has 6 elements but data has 5");
    m.value = T(d, 6, s5, 1);
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    /* negative dimensions */
    m.value = T(d, 6, sneg, 2);
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    /* len > 0 with NULL data */
    m.value = T(NULL, 6, s23, 2);
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    /* ndim > 0 with NULL shape */
    m.value = T(d, 6, NULL, 2);
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    /* 0-d with more than one element */
    m.value = T(d, 2, NULL, 0);
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);

    /* distribution parameters are checked too */
    m = base_msg(PPX_MSG_SAMPLE);
    m.dist.type = PPX_DIST_GAMMA;
    m.dist.param[0] = ppx_tensor_scalar(&x);
    m.dist.param[1] = T(d, 5, s23, 2);
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    cr_assert_str_eq(err.message, "Sample.distribution.rate: shape [2,3] has 6 elements but data has 5");
    /* unknown distribution type; Sample without distribution */
    m.dist.param[1] = ppx_tensor_scalar(&x);
    m.dist.type = PPX_DIST_TYPE_COUNT;
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    m.dist.type = (ppx_dist_type)-3;
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    m.dist.type = PPX_DIST_NONE;
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    /* Observe value */
    m = base_msg(PPX_MSG_OBSERVE);
    m.value = T(d, 4, s23, 2);
    cr_assert_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);

    /* NULL arguments; err may be NULL */
    m = base_msg(PPX_MSG_RUN);
    cr_assert_null(ppx_encode(NULL, &m, &len, &err));
    cr_assert_eq(err.code, PPX_E_ARG);
    cr_assert_null(ppx_encode(e, NULL, &len, &err));
    cr_assert_null(ppx_encode(e, &m, NULL, &err));
    m.type = PPX_MSG_NONE;
    cr_assert_null(ppx_encode(e, &m, &len, NULL));

    /* the encoder still works after errors */
    m.type = PPX_MSG_RUN;
    cr_assert_not_null(ppx_encode(e, &m, &len, &err));
    cr_assert_eq(err.code, PPX_OK);
    ppx_encoder_destroy(&e);
}

/* ---- tests: rejection -------------------------------------------------------------- */

/* Encodes `m` into a malloc'd buffer of exactly the right size. */
static uint8_t *encode_copy(const ppx_msg *m, size_t *len) {
    ppx_encoder *e = ppx_encoder_new();
    ppx_error err;
    const uint8_t *b = ppx_encode(e, m, len, &err);
    cr_assert_not_null(b, "%s", err.message);
    uint8_t *c = malloc(*len);
    cr_assert_not_null(c);
    memcpy(c, b, *len);
    ppx_encoder_destroy(&e);
    return c;
}

static ppx_status decode_bytes(const uint8_t *b, size_t len, const ppx_limits *lim,
                               ppx_error *err) {
    ppx_msg m;
    ppx_msg_init(&m);
    ppx_status s = ppx_decode(b, len, lim, &m, err);
    if (s == PPX_OK) {
        touch_msg(&m);
    } else {
        cr_assert_eq(m.type, PPX_MSG_NONE, "error must leave the message empty");
        cr_assert_null(m.owned_);
        assert_no_fields(&m);
        if (err) {
            cr_assert_eq(err->code, s);
            cr_assert_neq(err->message[0], '\0', "error without message");
        }
    }
    ppx_msg_clear(&m);
    return s;
}

/* A set of valid messages for the corruption tests. */
static size_t corpus(uint8_t *bufs[], size_t lens[]) {
    static const double d[6] = {1, 2, 3, 4, 5, 6};
    static const int32_t s23[2] = {2, 3};
    double x = 0.5;
    size_t n = 0;
    bufs[n] = unhex(HEX_SAMPLE, &lens[n]); n++;
    bufs[n] = unhex(HEX_SAMPLE_RESULT, &lens[n]); n++;
    bufs[n] = unhex(HEX_HANDSHAKE, &lens[n]); n++;
    bufs[n] = unhex(HEX_REPLACE, &lens[n]); n++;
    ppx_msg m = base_msg(PPX_MSG_OBSERVE);
    m.address = "[forward()+0x1]";
    m.name = "obs";
    m.dist.type = PPX_DIST_BETA;
    m.dist.param[0] = T(d, 6, s23, 2);
    m.dist.param[1] = ppx_tensor_scalar(&x);
    m.value = T(d, 6, s23, 2);
    bufs[n] = encode_copy(&m, &lens[n]); n++;
    m = base_msg(PPX_MSG_TAG);
    m.address = "t";
    m.value = ppx_tensor_scalar(&x);
    bufs[n] = encode_copy(&m, &lens[n]); n++;
    m = base_msg(PPX_MSG_HANDSHAKE_RESULT);
    m.system_name = "sys";
    m.model_name = "model";
    bufs[n] = encode_copy(&m, &lens[n]); n++;
    m = base_msg(PPX_MSG_SAMPLE);
    m.dist.type = PPX_DIST_CATEGORICAL;
    m.dist.param[0] = T(d, 6, s23, 2);
    bufs[n] = encode_copy(&m, &lens[n]); n++;
    /* with a tangent (ppxd extension) */
    static const char *const th[2] = {"theta_0", "theta_1"};
    m.tangent.present = 1;
    m.tangent.n_theta = 2;
    m.tangent.theta = th;
    m.tangent.d[0] = D12;
    m.tangent.len[0] = 12;
    bufs[n] = encode_copy(&m, &lens[n]); n++;
    return n;
}

Test(protocol_reject, every_truncation) {
    uint8_t *bufs[16];
    size_t lens[16];
    size_t n = corpus(bufs, lens);
    size_t rejected = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t off = 0; off < 2; off++) {
            for (size_t cut = 0; cut < lens[i]; cut++) {
                uint8_t *base;
                uint8_t *b = copy_at(bufs[i], cut, off, &base);
                ppx_error err;
                ppx_status s = decode_bytes(b, cut, NULL, &err);
                rejected += s != PPX_OK;
                total++;
                if (cut < 8) cr_assert_neq(s, PPX_OK, "a %zu-byte prefix decoded", cut);
                free(base);
            }
            uint8_t *base;
            uint8_t *b = copy_at(bufs[i], lens[i], off, &base);
            cr_assert_eq(decode_bytes(b, lens[i], NULL, NULL), PPX_OK);
            free(base);
        }
        free(bufs[i]);
    }
    /* Only cuts into trailing padding (e.g. after "dump\0") can still verify. */
    cr_log_info("truncations: %zu of %zu rejected", rejected, total);
    cr_assert_geq(rejected + 3 * 2 * n, total, "%zu of %zu truncations verified",
                  total - rejected, total);
}

Test(protocol_reject, every_single_bit_flip) {
    uint8_t *bufs[16];
    size_t lens[16];
    size_t n = corpus(bufs, lens);
    size_t ok = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *work = malloc(lens[i]);
        for (size_t bit = 0; bit < lens[i] * 8; bit++) {
            memcpy(work, bufs[i], lens[i]);
            work[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            ppx_status s = decode_bytes(work, lens[i], NULL, NULL);
            ok += s == PPX_OK;
            total++;
            if (bit % 5 == 0) { /* and some from a misaligned copy */
                uint8_t *base;
                uint8_t *b = copy_at(work, lens[i], 3, &base);
                cr_assert_eq(decode_bytes(b, lens[i], NULL, NULL), s);
                free(base);
            }
        }
        free(work);
        free(bufs[i]);
    }
    cr_log_info("bit flips: %zu of %zu still decode", ok, total);
    cr_assert_gt(ok, 0); /* e.g. flips inside double values */
    cr_assert_lt(ok, total);
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random multi-byte garbage and random corruptions: never a crash. */
Test(protocol_reject, random_corruption) {
    uint8_t *bufs[16];
    size_t lens[16];
    size_t n = corpus(bufs, lens);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
#define NEXT() xorshift(&rng)
    for (int iter = 0; iter < 20000; iter++) {
        size_t i = NEXT() % n;
        uint8_t *work = malloc(lens[i]);
        memcpy(work, bufs[i], lens[i]);
        int k = 1 + (int)(NEXT() % 4);
        for (int j = 0; j < k; j++) {
            size_t pos = NEXT() % lens[i];
            work[pos] = (uint8_t)NEXT();
        }
        decode_bytes(work, lens[i], NULL, NULL);
        free(work);
    }
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = 1 + NEXT() % 200;
        uint8_t *work = malloc(len);
        for (size_t j = 0; j < len; j++) work[j] = (uint8_t)NEXT();
        if (len >= 4 && iter % 2) wr32(work, 0, (uint32_t)(NEXT() % len)); /* plausible root */
        decode_bytes(work, len, NULL, NULL);
        free(work);
    }
#undef NEXT
    for (size_t i = 0; i < n; i++) free(bufs[i]);
}

Test(protocol_reject, empty_and_null) {
    ppx_msg m;
    ppx_msg_init(&m);
    ppx_error err;
    uint8_t one[8] = {0};
    cr_assert_neq(ppx_decode(one, 0, NULL, &m, &err), PPX_OK);
    cr_assert_neq(err.message[0], '\0');
    cr_assert_neq(ppx_decode(NULL, 0, NULL, &m, &err), PPX_OK);
    cr_assert_eq(ppx_decode(NULL, 10, NULL, &m, &err), PPX_E_ARG);
    cr_assert_eq(ppx_decode(one, 8, NULL, NULL, &err), PPX_E_ARG);
    cr_assert_neq(ppx_decode(one, 8, NULL, &m, NULL), PPX_OK); /* err may be NULL */
    cr_assert_eq(ppx_decode(one, 1, NULL, &m, &err), PPX_E_VERIFY);
    cr_assert_eq(ppx_decode(one, 8, NULL, &m, &err), PPX_E_VERIFY);
    cr_assert_eq(m.type, PPX_MSG_NONE);
}

Test(protocol_reject, too_large) {
    size_t len;
    uint8_t *b = unhex(HEX_SAMPLE, &len);
    ppx_limits lim = ppx_limits_default();
    ppx_error err;
    lim.max_message_bytes = len - 1;
    cr_assert_eq(decode_bytes(b, len, &lim, &err), PPX_E_TOO_LARGE);
    cr_assert_str_eq(err.message, "buffer of 168 bytes exceeds max_message_bytes 167");
    lim.max_message_bytes = len;
    cr_assert_eq(decode_bytes(b, len, &lim, &err), PPX_OK);
    free(b);

    /* default limit: 64 MiB */
    size_t big = 70000000;
    uint8_t *huge = calloc(big, 1);
    cr_assert_not_null(huge);
    ppx_msg m;
    ppx_msg_init(&m);
    cr_assert_eq(ppx_decode(huge, big, NULL, &m, &err), PPX_E_TOO_LARGE);
    cr_assert_str_eq(err.message, "buffer of 70000000 bytes exceeds max_message_bytes 67108864");
    free(huge);
}

Test(protocol_reject, tensor_over_max_len) {
    static double d[10];
    static const int32_t s10[1] = {10}, s1112[4] = {1, 1, 1, 2};
    ppx_msg m = base_msg(PPX_MSG_SAMPLE_RESULT);
    m.value = T(d, 10, s10, 1);
    size_t len;
    uint8_t *b = encode_copy(&m, &len);
    ppx_limits lim = ppx_limits_default();
    ppx_error err;
    lim.max_tensor_len = 9;
    cr_assert_eq(decode_bytes(b, len, &lim, &err), PPX_E_TENSOR);
    cr_assert_str_eq(err.message, "SampleResult.result: data has 10 elements, over max_tensor_len 9");
    lim.max_tensor_len = 10;
    cr_assert_eq(decode_bytes(b, len, &lim, &err), PPX_OK);
    free(b);

    /* the shape vector counts too */
    m.value = T(d, 2, s1112, 4);
    b = encode_copy(&m, &len);
    lim.max_tensor_len = 3;
    cr_assert_eq(decode_bytes(b, len, &lim, &err), PPX_E_TENSOR);
    lim.max_tensor_len = 4;
    cr_assert_eq(decode_bytes(b, len, &lim, &err), PPX_OK);
    free(b);

    /* distribution parameters too */
    double x = 1;
    m = base_msg(PPX_MSG_OBSERVE);
    m.dist.type = PPX_DIST_UNIFORM;
    m.dist.param[0] = ppx_tensor_scalar(&x);
    m.dist.param[1] = T(d, 10, s10, 1);
    b = encode_copy(&m, &len);
    lim.max_tensor_len = 9;
    cr_assert_eq(decode_bytes(b, len, &lim, &err), PPX_E_TENSOR);
    cr_assert_str_eq(err.message, "Observe.distribution.high: data has 10 elements, over max_tensor_len 9");
    free(b);
}

/* Position of the data and shape vectors of a Tensor table. */
static size_t tensor_data(const uint8_t *b, size_t t) { return fb_deref(b, fb_field(b, t, 4)); }
static size_t tensor_shape(const uint8_t *b, size_t t) { return fb_deref(b, fb_field(b, t, 6)); }

Test(protocol_reject, shape_data_mismatch) {
    static const double d[6] = {1, 2, 3, 4, 5, 6};
    static const int32_t s23[2] = {2, 3}, s2[1] = {2};
    double x = 1;
    ppx_msg m = base_msg(PPX_MSG_SAMPLE);
    m.address = "a";
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&x);
    m.dist.param[1] = T(d, 6, s23, 2);
    size_t len;
    uint8_t *good = encode_copy(&m, &len);
    uint8_t *b = malloc(len);
    ppx_error err;
    size_t dist = fb_deref(good, fb_field(good, fb_body(good), 10));
    size_t sd = fb_deref(good, fb_field(good, dist, 6));
    size_t dv = tensor_data(good, sd), sv = tensor_shape(good, sd);
    cr_assert_eq(rd32(good, dv), 6);
    cr_assert_eq(rd32(good, sv), 2);
    cr_assert_eq(rd32(good, sv + 8), 3);

    /* data vector shortened to 5 */
    memcpy(b, good, len);
    wr32(b, dv, 5);
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TENSOR);
    cr_assert_str_eq(err.message, "Sample.distribution.stddev: shape [2,3] has 6 elements but data has 5");
    /* shape [2,4] */
    memcpy(b, good, len);
    wr32(b, sv + 8, 4);
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TENSOR);
    cr_assert_str_eq(err.message, "Sample.distribution.stddev: shape [2,4] has 8 elements but data has 6");
    /* negative dimension [-2,-3] (product 6) */
    memcpy(b, good, len);
    wr32(b, sv + 4, (uint32_t)-2);
    wr32(b, sv + 8, (uint32_t)-3);
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TENSOR);
    cr_assert(strstr(err.message, "negative") != NULL, "%s", err.message);
    /* product that overflows 32 and 64 bits: [2^31-1, 2^31-1] */
    memcpy(b, good, len);
    wr32(b, sv + 4, 0x7fffffff);
    wr32(b, sv + 8, 0x7fffffff);
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TENSOR);
    /* a zero dimension with data: [0,3] has 0 elements */
    memcpy(b, good, len);
    wr32(b, sv + 4, 0);
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TENSOR);
    cr_assert_str_eq(err.message, "Sample.distribution.stddev: shape [0,3] has 0 elements but data has 6");
    /* shape shortened to [2]: 2 != 6 */
    memcpy(b, good, len);
    wr32(b, sv, 1);
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TENSOR);
    /* shape shortened to []: a 0-d tensor needs exactly 1 element */
    memcpy(b, good, len);
    wr32(b, sv, 0);
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TENSOR);
    /* consistent edits still decode: data 3, shape [1,3] */
    memcpy(b, good, len);
    wr32(b, dv, 3);
    wr32(b, sv + 4, 1);
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_OK, "%s", err.message);
    free(good);

    /* a scalar stays a scalar; data=[] shape=[] is an absent value */
    m = base_msg(PPX_MSG_RUN_RESULT);
    m.value = T(d, 2, s2, 1);
    good = encode_copy(&m, &len);
    size_t rt = fb_deref(good, fb_field(good, fb_body(good), 4));
    dv = tensor_data(good, rt);
    sv = tensor_shape(good, rt);
    memcpy(b, good, len);
    wr32(b, sv, 0); /* shape [] with 2 elements */
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TENSOR);
    cr_assert_str_eq(err.message, "RunResult.result: 0-d (scalar) shape [] needs 1 element but data has 2");
    wr32(b, dv, 1); /* shape [] with 1 element: scalar */
    ppx_msg out;
    ppx_msg_init(&out);
    cr_assert_eq(ppx_decode(b, len, NULL, &out, &err), PPX_OK, "%s", err.message);
    cr_assert_eq(out.value.ndim, 0);
    cr_assert_eq(out.value.len, 1);
    cr_assert_eq(out.value.data[0], 1.0);
    wr32(b, dv, 0); /* shape [] with 0 elements: absent */
    cr_assert_eq(ppx_decode(b, len, NULL, &out, &err), PPX_OK, "%s", err.message);
    assert_empty_tensor(&out.value, "data=[] shape=[]");
    ppx_msg_clear(&out);
    free(good);
    free(b);
}

Test(protocol_reject, unknown_and_missing_body) {
    size_t len;
    uint8_t *b = unhex(HEX_SAMPLE_RESULT, &len);
    size_t bt = fb_field(b, fb_root(b), 4);
    cr_assert_eq(b[bt], PPX_MSG_SAMPLE_RESULT);
    ppx_error err;
    int tags[] = {12, 42, 255};
    for (size_t i = 0; i < 3; i++) {
        b[bt] = (uint8_t)tags[i];
        cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_UNKNOWN_TYPE);
        char want[64];
        snprintf(want, sizeof want, "unknown message body tag %d", tags[i]);
        cr_assert_str_eq(err.message, want);
    }
    b[bt] = 0;
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_MISSING);
    /* a known tag whose table is some other body: still verified, no crash */
    for (int t = 1; t < PPX_MSG_TYPE_COUNT; t++) {
        b[bt] = (uint8_t)t;
        decode_bytes(b, len, NULL, NULL);
    }
    free(b);

    /* Run vector: body tag 42 */
    b = unhex(HEX_RUN, &len);
    bt = fb_field(b, fb_root(b), 4);
    cr_assert_eq(b[bt], PPX_MSG_RUN);
    b[bt] = 42;
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_UNKNOWN_TYPE);
    cr_assert_str_eq(err.message, "unknown message body tag 42");
    free(b);
}

Test(protocol_reject, unknown_and_missing_distribution) {
    size_t len;
    uint8_t *b = unhex(HEX_SAMPLE, &len);
    size_t body = fb_body(b);
    size_t dt = fb_field(b, body, 8);
    cr_assert_eq(b[dt], PPX_DIST_NORMAL);
    ppx_error err;
    b[dt] = 12;
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_UNKNOWN_TYPE);
    cr_assert_str_eq(err.message, "Sample: unknown distribution tag 12");
    b[dt] = 200;
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_UNKNOWN_TYPE);
    b[dt] = 0;
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_MISSING);
    cr_assert_str_eq(err.message, "Sample has no distribution");
    /* other known tags on a Normal table (same layout): decode as that kind */
    for (int t = 1; t < PPX_DIST_TYPE_COUNT; t++) {
        b[dt] = (uint8_t)t;
        cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_OK, "%s", err.message);
    }
    free(b);

    /* Observe: unknown tag rejected; no distribution is allowed */
    double x = 2;
    ppx_msg m = base_msg(PPX_MSG_OBSERVE);
    m.dist.type = PPX_DIST_EXPONENTIAL;
    m.dist.param[0] = ppx_tensor_scalar(&x);
    m.value = ppx_tensor_scalar(&x);
    b = encode_copy(&m, &len);
    dt = fb_field(b, fb_body(b), 8);
    cr_assert_eq(b[dt], PPX_DIST_EXPONENTIAL);
    b[dt] = 99;
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_UNKNOWN_TYPE);
    cr_assert_str_eq(err.message, "Observe: unknown distribution tag 99");
    b[dt] = 0;
    ppx_msg out;
    ppx_msg_init(&out);
    cr_assert_eq(ppx_decode(b, len, NULL, &out, &err), PPX_OK, "%s", err.message);
    cr_assert_eq(out.dist.type, PPX_DIST_NONE);
    cr_assert_eq(out.value.data[0], 2.0);
    ppx_msg_clear(&out);
    free(b);
}

/* A double vector that the Verifier accepts (it only checks the 4-byte
 * alignment of the length) but whose elements are not 8-byte aligned. */
Test(protocol_reject, misaligned_double_vector) {
    static const double d[2] = {1, 2};
    static const int32_t s2[1] = {2};
    ppx_msg m = base_msg(PPX_MSG_SAMPLE_RESULT);
    m.value = T(d, 2, s2, 1);
    size_t len;
    uint8_t *b = encode_copy(&m, &len);
    size_t t = fb_deref(b, fb_field(b, fb_body(b), 4));
    size_t dfield = fb_field(b, t, 4);
    size_t dv = fb_deref(b, dfield);
    cr_assert_eq((dv + 4) % 8, 0);
    /* point the data offset 4 bytes earlier and fake a 1-element vector there */
    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    wr32(c, dfield, rd32(c, dfield) + 4);  /* now at dv + 4: elements at dv+8 (misaligned by 4) */
    wr32(c, dv + 4, 1);
    ppx_error err;
    cr_assert_eq(decode_bytes(c, len, NULL, &err), PPX_E_VERIFY);
    cr_assert(strstr(err.message, "aligned") != NULL, "%s", err.message);
    free(c);
    free(b);
}

/* Decoding into a message that holds a private copy frees it first; errors
 * leave it empty; nothing leaks (checked by LeakSanitizer in the asan build). */
Test(protocol_reject, decode_reuse_does_not_leak) {
    size_t len;
    uint8_t *raw = unhex(HEX_SAMPLE, &len);
    uint8_t *base;
    uint8_t *mis = copy_at(raw, len, 5, &base);
    ppx_msg m;
    ppx_msg_init(&m);
    ppx_error err;
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(ppx_decode(mis, len, NULL, &m, &err), PPX_OK);
        cr_assert_not_null(m.owned_);
    }
    cr_assert_eq(ppx_decode(raw, len, NULL, &m, &err), PPX_OK);
    cr_assert_null(m.owned_);
    cr_assert_eq(ppx_decode(mis, len, NULL, &m, &err), PPX_OK);
    mis[0] ^= 0xff; /* corrupt: error after the copy is made */
    cr_assert_neq(ppx_decode(mis, len, NULL, &m, &err), PPX_OK);
    cr_assert_null(m.owned_);
    cr_assert_eq(m.type, PPX_MSG_NONE);
    mis[0] ^= 0xff;
    cr_assert_eq(ppx_decode(mis, len, NULL, &m, &err), PPX_OK);
    /* the copy is independent of the input */
    memset(mis, 0, len);
    cr_assert_str_eq(m.address, "[forward()+0x96]");
    cr_assert_float_eq(m.dist.param[1].data[0], sqrt(5.0), 1e-15);
    ppx_msg_clear(&m);
    cr_assert_null(m.owned_);
    ppx_msg_clear(&m); /* twice is fine */
    free(base);
    free(raw);
}

/* ---- the parameter tangent (ppxd extension, Tangent table) --------------------- */

static const char *const TH2[2] = {"theta_0", "theta_1"};

static ppx_tangent tangent_of(size_t n_theta, const char *const *names, const double *d0, size_t l0,
                              const double *d1, size_t l1) {
    ppx_tangent t = {1, n_theta, names, {d0, d1}, {l0, l1}};
    return t;
}

Test(protocol_tangent, absent_in_upstream_messages) {
    /* the spec's captured Sample has no tangent */
    ppx_msg m;
    uint8_t *base;
    decode_hex_at(HEX_SAMPLE, 0, &m, &base, NULL);
    cr_assert_eq(m.tangent.present, 0);
    cr_assert_null(m.tangent_names_);
    ppx_msg_clear(&m);
    free(base);
    /* and a message encoded without one has no slot 6 */
    ppx_msg s = base_msg(PPX_MSG_SAMPLE);
    double mu = 1, sd = 2;
    s.dist.type = PPX_DIST_NORMAL;
    s.dist.param[0] = ppx_tensor_scalar(&mu);
    s.dist.param[1] = ppx_tensor_scalar(&sd);
    size_t len;
    uint8_t *b = encode_copy(&s, &len);
    cr_assert_eq(fb_field(b, fb_body(b), 16), 0, "Sample.tangent written without a tangent");
    free(b);
}

Test(protocol_tangent, roundtrip_scalar_params) {
    double mu = 1, sd = 2;
    const double d0[2] = {1.0, -0.5}, d1[2] = {0.0, 0.125};
    ppx_msg m = base_msg(PPX_MSG_SAMPLE);
    m.address = "a";
    m.name = "z";
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&mu);
    m.dist.param[1] = ppx_tensor_scalar(&sd);
    m.tangent = tangent_of(2, TH2, d0, 2, d1, 2);
    roundtrip(&m);
    /* only one parameter depends on theta */
    m.tangent = tangent_of(2, TH2, NULL, 0, d1, 2);
    roundtrip(&m);
    /* control = false draws carry tangents too */
    m.control = 0;
    roundtrip(&m);
}

Test(protocol_tangent, roundtrip_tensor_params_and_broadcast) {
    /* Normal: mean [2,3] (6 elements), stddev scalar (broadcast), D = 2:
     * param0 has 6 x 2 values, param1 1 x 2 */
    double sd = 0.5;
    const double d1[2] = {3, 4};
    ppx_msg m = base_msg(PPX_MSG_SAMPLE);
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = T(D6, 6, S23, 2);
    m.dist.param[1] = ppx_tensor_scalar(&sd);
    m.tangent = tangent_of(2, TH2, D12, 12, d1, 2);
    roundtrip(&m);
    /* Categorical probs [2,3] and one theta: 6 values */
    ppx_msg c = base_msg(PPX_MSG_SAMPLE);
    const double w[6] = {1, 2, 3, 4, 5, 6};
    c.dist.type = PPX_DIST_CATEGORICAL;
    c.dist.param[0] = T(w, 6, S23, 2);
    c.tangent = tangent_of(1, TH2, D6, 6, NULL, 0);
    roundtrip(&c);
    /* one-parameter kind, Poisson [3] */
    ppx_msg p = base_msg(PPX_MSG_SAMPLE);
    const double r[3] = {1, 2, 3};
    p.dist.type = PPX_DIST_POISSON;
    p.dist.param[0] = T(r, 3, S3, 1);
    p.tangent = tangent_of(2, TH2, D6, 6, NULL, 0);
    roundtrip(&p);
}

Test(protocol_tangent, roundtrip_observe_and_declared_independent) {
    double mu = 1, sd = 2, v = 0.25;
    const double d0[1] = {2.5};
    ppx_msg m = base_msg(PPX_MSG_OBSERVE);
    m.address = "o";
    m.name = "obs";
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&mu);
    m.dist.param[1] = ppx_tensor_scalar(&sd);
    m.value = ppx_tensor_scalar(&v);
    m.tangent = tangent_of(1, TH2 + 1, d0, 1, NULL, 0);
    roundtrip(&m);
    /* without value */
    m.value = ppx_tensor_empty();
    roundtrip(&m);
    /* an empty tangent: the draw declared independent of theta */
    m.tangent = tangent_of(0, NULL, NULL, 0, NULL, 0);
    roundtrip(&m);
    ppx_msg s = base_msg(PPX_MSG_SAMPLE);
    s.dist = m.dist;
    s.tangent = m.tangent;
    roundtrip(&s);
    /* theta names but no derivative: zero with respect to those */
    s.tangent = tangent_of(2, TH2, NULL, 0, NULL, 0);
    roundtrip(&s);
    /* the empty tangent is written with all three vectors (peers may
     * dereference them unchecked) */
    size_t len;
    uint8_t *b = encode_copy(&s, &len);
    size_t tf = fb_field(b, fb_body(b), 16);
    cr_assert_neq(tf, 0, "no Sample.tangent");
    size_t t = fb_deref(b, tf);
    for (unsigned vt = 4; vt <= 8; vt += 2) cr_assert_neq(fb_field(b, t, vt), 0, "Tangent field %u absent", vt);
    free(b);
}

Test(protocol_tangent, encoder_refuses_malformed_tangents) {
    double mu = 1, sd = 2, nan = NAN;
    const double d2[2] = {1, 2}, d3[3] = {1, 2, 3};
    const double withnan[2] = {1, NAN}, withinf[2] = {INFINITY, 1};
    const char *const dup[2] = {"a", "a"}, *const empty[2] = {"a", ""}, *const withnull[2] = {"a", NULL};
    (void)nan;
    ppx_msg m = base_msg(PPX_MSG_SAMPLE);
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&mu);
    m.dist.param[1] = ppx_tensor_scalar(&sd);
    const struct {
        ppx_tangent t;
        const char *want;
    } bad[] = {
        {tangent_of(2, TH2, d3, 3, NULL, 0), "expected 0 or 2"},
        {tangent_of(2, TH2, NULL, 0, d3, 1), "expected 0 or 2"},
        {tangent_of(1, TH2, d2, 2, NULL, 0), "expected 0 or 1"},
        {tangent_of(0, NULL, d2, 1, NULL, 0), "expected 0 or 0"},
        {tangent_of(2, TH2, withnan, 2, NULL, 0), "nan"},
        {tangent_of(2, TH2, NULL, 0, withinf, 2), "inf"},
        {tangent_of(2, dup, d2, 2, NULL, 0), "twice"},
        {tangent_of(2, empty, d2, 2, NULL, 0), "empty"},
        {tangent_of(2, withnull, d2, 2, NULL, 0), "NULL"},
        {tangent_of(2, NULL, d2, 2, NULL, 0), "NULL"},
        {tangent_of(2, TH2, NULL, 2, NULL, 0), "NULL"},
    };
    ppx_encoder *e = ppx_encoder_new();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m.tangent = bad[i].t;
        ppx_error err;
        size_t len;
        cr_assert_null(ppx_encode(e, &m, &len, &err), "case %zu encoded", i);
        cr_assert_eq(err.code, PPX_E_TANGENT, "case %zu: %s", i, err.message);
        cr_assert(strstr(err.message, bad[i].want), "case %zu: '%s' lacks '%s'", i, err.message, bad[i].want);
        cr_assert(strstr(err.message, "Sample.tangent"), "case %zu: %s", i, err.message);
    }
    /* a one-parameter kind has no param1 derivative */
    ppx_msg p = base_msg(PPX_MSG_SAMPLE);
    p.dist.type = PPX_DIST_EXPONENTIAL;
    p.dist.param[0] = ppx_tensor_scalar(&mu);
    p.tangent = tangent_of(1, TH2, d2, 1, d2, 1);
    ppx_error err;
    size_t len;
    cr_assert_null(ppx_encode(e, &p, &len, &err));
    cr_assert_eq(err.code, PPX_E_TANGENT, "%s", err.message);
    /* a non-empty tangent on an Observe without distribution */
    ppx_msg o = base_msg(PPX_MSG_OBSERVE);
    o.tangent = tangent_of(1, TH2, NULL, 0, NULL, 0);
    cr_assert_null(ppx_encode(e, &o, &len, &err));
    cr_assert(err.code == PPX_E_TANGENT && strstr(err.message, "needs a distribution"), "%s", err.message);
    o.tangent = tangent_of(0, NULL, NULL, 0, NULL, 0);
    cr_assert_not_null(ppx_encode(e, &o, &len, &err), "%s", err.message);
    ppx_encoder_destroy(&e);
}

/* A valid Sample (Normal, scalar params) with a tangent over TH2, d0 = {1, 2},
 * d1 = {3, 4}, encoded; *tangent gets the Tangent table's position. */
static uint8_t *tangent_sample(size_t *len, size_t *tangent) {
    static double mu = 1, sd = 2;
    static const double d0[2] = {1, 2}, d1[2] = {3, 4};
    ppx_msg m = base_msg(PPX_MSG_SAMPLE);
    m.address = "a";
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&mu);
    m.dist.param[1] = ppx_tensor_scalar(&sd);
    m.tangent = tangent_of(2, TH2, d0, 2, d1, 2);
    uint8_t *b = encode_copy(&m, len);
    size_t f = fb_field(b, fb_body(b), 16);
    cr_assert_neq(f, 0);
    *tangent = fb_deref(b, f);
    cr_assert_eq(decode_bytes(b, *len, NULL, NULL), PPX_OK);
    return b;
}

static void assert_tangent_rejected(const uint8_t *b, size_t len, const char *want, const char *what) {
    ppx_error err;
    for (size_t off = 0; off < 2; off++) {
        uint8_t *base;
        uint8_t *c = copy_at(b, len, off, &base);
        cr_assert_eq(decode_bytes(c, len, NULL, &err), PPX_E_TANGENT, "%s: decoded (%s)", what, err.message);
        cr_assert(strstr(err.message, want), "%s: '%s' lacks '%s'", what, err.message, want);
        cr_assert(strstr(err.message, "Sample.tangent"), "%s: %s", what, err.message);
        free(base);
    }
}

Test(protocol_tangent, decoder_rejects_length_mismatch) {
    size_t len, t;
    uint8_t *b = tangent_sample(&len, &t);
    /* param0 claims 1 value instead of 2 (the verifier accepts a shorter vector) */
    size_t v = fb_deref(b, fb_field(b, t, 6));
    cr_assert_eq(rd32(b, v), 2);
    wr32(b, v, 1);
    assert_tangent_rejected(b, len, "param0 (d mean / d theta) has 1 values, expected 0 or 2", "param0 short");
    wr32(b, v, 2);
    /* param1 likewise */
    v = fb_deref(b, fb_field(b, t, 8));
    wr32(b, v, 1);
    assert_tangent_rejected(b, len, "param1 (d stddev / d theta) has 1 values", "param1 short");
    wr32(b, v, 2);
    /* one theta name fewer: 2 values no longer match 1 x 1 */
    size_t names = fb_deref(b, fb_field(b, t, 4));
    cr_assert_eq(rd32(b, names), 2);
    wr32(b, names, 1);
    assert_tangent_rejected(b, len, "expected 0 or 1", "fewer names");
    wr32(b, names, 2);
    cr_assert_eq(decode_bytes(b, len, NULL, NULL), PPX_OK, "restored buffer must decode");
    free(b);
}

Test(protocol_tangent, decoder_rejects_nonfinite_and_bad_names) {
    size_t len, t;
    uint8_t *b = tangent_sample(&len, &t);
    size_t v = fb_deref(b, fb_field(b, t, 6)) + 4;
    double save, nan = NAN, inf = -INFINITY;
    memcpy(&save, b + v + 8, 8);
    cr_assert_eq(save, 2.0);
    memcpy(b + v + 8, &nan, 8);
    assert_tangent_rejected(b, len, "param0 (d mean / d theta) value 1 is nan", "NaN");
    memcpy(b + v + 8, &inf, 8);
    assert_tangent_rejected(b, len, "value 1 is -inf", "-inf");
    memcpy(b + v + 8, &save, 8);
    /* "theta_1" -> "theta_0": a repeated name */
    size_t names = fb_deref(b, fb_field(b, t, 4));
    size_t s1 = fb_deref(b, names + 8);
    cr_assert_eq(rd32(b, s1), 7);
    cr_assert_eq(memcmp(b + s1 + 4, "theta_1", 7), 0);
    b[s1 + 4 + 6] = '0';
    assert_tangent_rejected(b, len, "appears twice", "duplicate name");
    /* a name that is empty at its first NUL */
    b[s1 + 4] = '\0';
    assert_tangent_rejected(b, len, "theta name 1 is empty", "empty name");
    free(b);
}

Test(protocol_tangent, decoder_rejects_tangent_without_distribution) {
    /* an Observe with a tangent whose distribution tag is patched to NONE */
    double mu = 1, sd = 2;
    const double d0[1] = {1};
    ppx_msg m = base_msg(PPX_MSG_OBSERVE);
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&mu);
    m.dist.param[1] = ppx_tensor_scalar(&sd);
    m.tangent = tangent_of(1, TH2, d0, 1, NULL, 0);
    size_t len;
    uint8_t *b = encode_copy(&m, &len);
    size_t body = fb_body(b), tf = fb_field(b, body, 8);
    cr_assert_neq(fb_field(b, body, 14), 0, "Observe.tangent (slot 5) absent");
    cr_assert_eq(b[tf], PPX_DIST_NORMAL);
    b[tf] = PPX_DIST_NONE;
    ppx_error err;
    cr_assert_eq(decode_bytes(b, len, NULL, &err), PPX_E_TANGENT, "%s", err.message);
    cr_assert(strstr(err.message, "Observe.tangent: a tangent needs a distribution"), "%s", err.message);
    free(b);
}

Test(protocol_tangent, decoder_limits) {
    size_t len, t;
    uint8_t *b = tangent_sample(&len, &t);
    ppx_limits lim = ppx_limits_default();
    lim.max_tensor_len = 1;
    ppx_error err;
    /* the param vectors (2 values) are over a 1-element limit */
    cr_assert_neq(decode_bytes(b, len, &lim, &err), PPX_OK);
    cr_assert(strstr(err.message, "max_tensor_len"), "%s", err.message);
    /* truncations of a tangent-carrying buffer never decode wrongly */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *base;
        uint8_t *c = copy_at(b, cut, 0, &base);
        ppx_status s = decode_bytes(c, cut, NULL, &err);
        if (s == PPX_OK) cr_assert_geq(cut, len - 8, "a %zu-byte prefix of %zu decoded", cut, len);
        free(base);
    }
    free(b);
}
