// ppx_codec.cc — the PPX wire codec: FlatBuffers (generated from protocol/ppx.fbs
// by flatc 2.0.8) behind the plain C API of protocol/ppx.h.
//
// Decoding never reads a byte of the input before the FlatBuffers Verifier has
// accepted it; every error is reported through a status code and a specific
// message, and no C++ exception crosses the C API.

#include "ppx.h"

#include <flatbuffers/flatbuffers.h>

#include "ppx_generated.h"

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

// The decoder hands out zero-copy views of doubles and int32s in the buffer:
// that is only right on a little-endian host.
static_assert(FLATBUFFERS_LITTLEENDIAN, "ppx codec: zero-copy views need a little-endian host");
static_assert(sizeof(double) == 8 && alignof(double) <= 8, "ppx codec: double must be 8 bytes");

// The C enums are the wire tags.
static_assert(static_cast<int>(PPX_MSG_HANDSHAKE) == ppx::MessageBody_Handshake, "tag");
static_assert(static_cast<int>(PPX_MSG_HANDSHAKE_RESULT) == ppx::MessageBody_HandshakeResult, "tag");
static_assert(static_cast<int>(PPX_MSG_RUN) == ppx::MessageBody_Run, "tag");
static_assert(static_cast<int>(PPX_MSG_RUN_RESULT) == ppx::MessageBody_RunResult, "tag");
static_assert(static_cast<int>(PPX_MSG_SAMPLE) == ppx::MessageBody_Sample, "tag");
static_assert(static_cast<int>(PPX_MSG_SAMPLE_RESULT) == ppx::MessageBody_SampleResult, "tag");
static_assert(static_cast<int>(PPX_MSG_OBSERVE) == ppx::MessageBody_Observe, "tag");
static_assert(static_cast<int>(PPX_MSG_OBSERVE_RESULT) == ppx::MessageBody_ObserveResult, "tag");
static_assert(static_cast<int>(PPX_MSG_TAG) == ppx::MessageBody_Tag, "tag");
static_assert(static_cast<int>(PPX_MSG_TAG_RESULT) == ppx::MessageBody_TagResult, "tag");
static_assert(static_cast<int>(PPX_MSG_RESET) == ppx::MessageBody_Reset, "tag");
static_assert(static_cast<int>(PPX_MSG_TYPE_COUNT) == ppx::MessageBody_MAX + 1, "tag count");
static_assert(static_cast<int>(PPX_DIST_NORMAL) == ppx::Distribution_Normal, "tag");
static_assert(static_cast<int>(PPX_DIST_UNIFORM) == ppx::Distribution_Uniform, "tag");
static_assert(static_cast<int>(PPX_DIST_CATEGORICAL) == ppx::Distribution_Categorical, "tag");
static_assert(static_cast<int>(PPX_DIST_POISSON) == ppx::Distribution_Poisson, "tag");
static_assert(static_cast<int>(PPX_DIST_BERNOULLI) == ppx::Distribution_Bernoulli, "tag");
static_assert(static_cast<int>(PPX_DIST_BETA) == ppx::Distribution_Beta, "tag");
static_assert(static_cast<int>(PPX_DIST_EXPONENTIAL) == ppx::Distribution_Exponential, "tag");
static_assert(static_cast<int>(PPX_DIST_GAMMA) == ppx::Distribution_Gamma, "tag");
static_assert(static_cast<int>(PPX_DIST_LOGNORMAL) == ppx::Distribution_LogNormal, "tag");
static_assert(static_cast<int>(PPX_DIST_BINOMIAL) == ppx::Distribution_Binomial, "tag");
static_assert(static_cast<int>(PPX_DIST_WEIBULL) == ppx::Distribution_Weibull, "tag");
static_assert(static_cast<int>(PPX_DIST_TYPE_COUNT) == ppx::Distribution_MAX + 1, "tag count");

namespace {

const char kEmpty[] = "";

// Verifier limits.  The deepest legal path is Message > Observe > Normal >
// Tensor (4 tables) and the largest message has 7 tables (with a Tangent).
const flatbuffers::uoffset_t kMaxDepth = 16;
const flatbuffers::uoffset_t kMaxTables = 64;

const char *const kMsgNames[PPX_MSG_TYPE_COUNT] = {
    "None", "Handshake", "HandshakeResult", "Run", "RunResult", "Sample",
    "SampleResult", "Observe", "ObserveResult", "Tag", "TagResult", "Reset"};

const char *const kDistNames[PPX_DIST_TYPE_COUNT] = {
    "None", "Normal", "Uniform", "Categorical", "Poisson", "Bernoulli", "Beta",
    "Exponential", "Gamma", "LogNormal", "Binomial", "Weibull"};

// Parameter field names per distribution, slot 0 and slot 1 (NULL: none).
const char *const kParamNames[PPX_DIST_TYPE_COUNT][2] = {
    {nullptr, nullptr},
    {"mean", "stddev"},
    {"low", "high"},
    {"probs", nullptr},
    {"rate", nullptr},
    {"probs", nullptr},
    {"concentration1", "concentration0"},
    {"rate", nullptr},
    {"concentration", "rate"},
    {"loc", "scale"},
    {"total_count", "probs"},
    {"scale", "concentration"}};

const char *const kStatusNames[] = {
    "ok",                  // PPX_OK
    "bad argument",        // PPX_E_ARG
    "message too large",   // PPX_E_TOO_LARGE
    "corrupt message",     // PPX_E_VERIFY
    "unknown union tag",   // PPX_E_UNKNOWN_TYPE
    "bad tensor",          // PPX_E_TENSOR
    "missing field",       // PPX_E_MISSING
    "out of memory",       // PPX_E_NOMEM
    "bad tangent"};        // PPX_E_TANGENT

// Most theta components a tangent may name (the duplicate check is quadratic).
const size_t kMaxTangentTheta = 4096;

// Reads an enum's bits as an int without loading a value of the C++ enum type:
// a C caller may pass any int (e.g. an unknown tag), which would be undefined
// behaviour to load as the enum in C++ (and is trapped by -fsanitize=enum).
template <class E>
int as_int(const E &e) {
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    int i;
    std::memcpy(&i, &e, sizeof i);
    return i;
}

bool dist_known(int t) { return t > PPX_DIST_NONE && t < PPX_DIST_TYPE_COUNT; }
int dist_nparams(int t) { return kParamNames[t][1] ? 2 : 1; }

__attribute__((format(printf, 3, 4)))
ppx_status fail(ppx_error *err, ppx_status code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

// "[2,3]" (at most 8 dims, then "...").
void format_shape(char *dst, size_t cap, const int32_t *shape, size_t ndim) {
    size_t n = 0;
    n += (size_t)snprintf(dst + n, cap - n, "[");
    for (size_t i = 0; i < ndim && n < cap; i++) {
        if (i == 8) {
            n += (size_t)snprintf(dst + n, cap - n, ",...");
            break;
        }
        n += (size_t)snprintf(dst + n, cap - n, i ? ",%d" : "%d", (int)shape[i]);
    }
    if (n < cap) snprintf(dst + n, cap - n, "]");
}

// Checks a shape against its data length.  Returns true when consistent, else
// writes a description of the problem (after "<what>: ") into `why`.
// Dimensions must be >= 0; ndim 0 means one element.  Overflow-safe: the
// product is only grown while it is <= data_len.
bool shape_matches(const int32_t *shape, size_t ndim, size_t data_len, char *why,
                   size_t cap) {
    char shp[64];
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            format_shape(shp, sizeof shp, shape, ndim);
            snprintf(why, cap, "shape %s has negative dimension %d at index %zu", shp,
                     (int)shape[i], i);
            return false;
        }
    }
    if (ndim == 0) {
        if (data_len == 1) return true;
        snprintf(why, cap, "0-d (scalar) shape [] needs 1 element but data has %zu",
                 data_len);
        return false;
    }
    bool has_zero = false;
    for (size_t i = 0; i < ndim; i++) has_zero = has_zero || shape[i] == 0;
    uint64_t prod = has_zero ? 0 : 1;
    bool over = false;
    if (!has_zero) {
        for (size_t i = 0; i < ndim; i++) {
            prod *= (uint64_t)shape[i];  // <= data_len * 2^31: no overflow
            if (prod > data_len) {
                over = i + 1 < ndim;  // the true product may be larger still
                break;
            }
        }
    }
    if (prod == data_len) return true;
    format_shape(shp, sizeof shp, shape, ndim);
    if (over)
        snprintf(why, cap, "shape %s has at least %llu elements but data has %zu", shp,
                 (unsigned long long)prod, data_len);
    else
        snprintf(why, cap, "shape %s has %llu elements but data has %zu", shp,
                 (unsigned long long)prod, data_len);
    return false;
}

// Checks a tangent's contents against the distribution it belongs to (both
// the decoder and the encoder use it).  names[i] must be non-NULL; d[j] may
// be NULL only when len[j] == 0.  Returns true when well formed, else
// writes the problem into `why`.
bool tangent_ok(const char *const *names, size_t n_theta, const double *const d[2], const size_t len[2],
                const ppx_dist &dist, char *why, size_t cap) {
    if (n_theta > kMaxTangentTheta) {
        snprintf(why, cap, "%zu theta names, over the limit of %zu", n_theta, kMaxTangentTheta);
        return false;
    }
    for (size_t i = 0; i < n_theta; i++) {
        if (!names[i][0]) {
            snprintf(why, cap, "theta name %zu is empty", i);
            return false;
        }
        for (size_t k = 0; k < i; k++)
            if (std::strcmp(names[i], names[k]) == 0) {
                snprintf(why, cap, "theta name '%.60s' appears twice (at %zu and %zu)", names[i], k, i);
                return false;
            }
    }
    const int dt = as_int(dist.type);
    if (!dist_known(dt)) {
        if (len[0] || len[1] || n_theta) {
            snprintf(why, cap, "a tangent needs a distribution");
            return false;
        }
        return true;  // an empty tangent on a distribution-less Observe: nothing to declare
    }
    for (int j = 0; j < 2; j++) {
        const char *pn = kParamNames[dt][j] ? kParamNames[dt][j] : "(none)";
        const size_t plen = j < dist_nparams(dt) ? dist.param[j].len : 0;
        if (len[j] != 0 && len[j] != plen * n_theta) {
            snprintf(why, cap, "param%d (d %s / d theta) has %zu values, expected 0 or %zu (%zu elements x %zu theta)",
                     j, pn, len[j], plen * n_theta, plen, n_theta);
            return false;
        }
        for (size_t i = 0; i < len[j]; i++)
            if (!std::isfinite(d[j][i])) {
                snprintf(why, cap, "param%d (d %s / d theta) value %zu is %g", j, pn, i, d[j][i]);
                return false;
            }
    }
    return true;
}

// ---- decoding ---------------------------------------------------------------

struct Decoder {
    const ppx_limits &lim;
    ppx_msg *out;
    ppx_error *err;

    // Decodes a verified Tensor table (or its absence).  `scratch` receives the
    // shape [len] when the shape vector is absent.
    ppx_status tensor(const ppx::Tensor *t, const char *what, int32_t *scratch,
                      ppx_tensor *dst) {
        *dst = ppx_tensor_empty();
        if (!t) return PPX_OK;
        const flatbuffers::Vector<double> *data = t->data();
        const flatbuffers::Vector<int32_t> *shape = t->shape();
        size_t len = data ? data->size() : 0;
        if (len > lim.max_tensor_len)
            return fail(err, PPX_E_TENSOR, "%s: data has %zu elements, over max_tensor_len %zu",
                        what, len, lim.max_tensor_len);
        // The Verifier (2.0.8) checks only the 4-byte alignment of a vector's
        // length, not the alignment of its elements; FlatBufferBuilder does not
        // align empty vectors at all.  Elements are never read (and no pointer
        // to them is formed) unless they are 8-byte aligned; an empty vector's
        // data decodes as NULL.
        if (len > 0 && reinterpret_cast<uintptr_t>(data->Data()) % alignof(double) != 0)
            return fail(err, PPX_E_VERIFY, "%s: data vector is not 8-byte aligned", what);
        const double *elems = len > 0 ? data->data() : nullptr;
        if (!shape) {
            if (len > (size_t)INT32_MAX)
                return fail(err, PPX_E_TENSOR, "%s: data has %zu elements, too many for a shape",
                            what, len);
            *scratch = (int32_t)len;
            dst->data = elems;
            dst->len = len;
            dst->shape = scratch;
            dst->ndim = 1;
            return PPX_OK;
        }
        size_t ndim = shape->size();
        if (ndim > lim.max_tensor_len)
            return fail(err, PPX_E_TENSOR, "%s: shape has %zu dimensions, over max_tensor_len %zu",
                        what, ndim, lim.max_tensor_len);
        if (ndim == 0 && len == 0) return PPX_OK;  // data=[], shape=[]: absent
        char why[160];
        if (!shape_matches(shape->data(), ndim, len, why, sizeof why))
            return fail(err, PPX_E_TENSOR, "%s: %s", what, why);
        dst->data = elems;
        dst->len = len;
        dst->shape = shape->data();
        dst->ndim = ndim;
        return PPX_OK;
    }

    static const char *str(const flatbuffers::String *s) { return s ? s->c_str() : kEmpty; }

    // A verified double vector as a view: NULL for an empty one, an error
    // when misaligned (see tensor()).
    ppx_status doubles(const flatbuffers::Vector<double> *v, const char *what, const double **dst,
                       size_t *n) {
        *dst = nullptr;
        *n = v ? v->size() : 0;
        if (*n > lim.max_tensor_len)
            return fail(err, PPX_E_TANGENT, "%s: %zu values, over max_tensor_len %zu", what, *n,
                        lim.max_tensor_len);
        if (*n > 0 && reinterpret_cast<uintptr_t>(v->Data()) % alignof(double) != 0)
            return fail(err, PPX_E_VERIFY, "%s: vector is not 8-byte aligned", what);
        if (*n > 0) *dst = v->data();
        return PPX_OK;
    }

    // Decodes the optional Tangent of a Sample or Observe (after its
    // distribution, against which its lengths are checked).
    ppx_status tangent(const ppx::Tangent *t, const char *msg) {
        ppx_tangent *tg = &out->tangent;
        if (!t) return PPX_OK;
        const auto *names = t->theta();
        size_t n = names ? names->size() : 0;
        if (n > kMaxTangentTheta)
            return fail(err, PPX_E_TANGENT, "%s.tangent: %zu theta names, over the limit of %zu", msg, n,
                        kMaxTangentTheta);
        if (n > 0) {
            out->tangent_names_ = static_cast<const char **>(std::malloc(n * sizeof(char *)));
            if (!out->tangent_names_)
                return fail(err, PPX_E_NOMEM, "no memory for %zu tangent names", n);
            for (size_t i = 0; i < n; i++) out->tangent_names_[i] = str(names->Get(i));
        }
        char what[96];
        const double *d[2];
        size_t len[2];
        for (int j = 0; j < 2; j++) {
            snprintf(what, sizeof what, "%s.tangent.param%d", msg, j);
            ppx_status s = doubles(j ? t->param1() : t->param0(), what, &d[j], &len[j]);
            if (s != PPX_OK) return s;
        }
        char why[160];
        if (!tangent_ok(out->tangent_names_, n, d, len, out->dist, why, sizeof why))
            return fail(err, PPX_E_TANGENT, "%s.tangent: %s", msg, why);
        tg->present = 1;
        tg->n_theta = n;
        tg->theta = out->tangent_names_;
        for (int j = 0; j < 2; j++) {
            tg->d[j] = d[j];
            tg->len[j] = len[j];
        }
        return PPX_OK;
    }

    // Decodes the distribution union of a Sample or Observe.
    ppx_status dist(const char *msg, uint8_t type, const void *table, bool required) {
        ppx_dist *d = &out->dist;
        d->type = PPX_DIST_NONE;
        d->param[0] = ppx_tensor_empty();
        d->param[1] = ppx_tensor_empty();
        if (type == ppx::Distribution_NONE) {
            if (required) return fail(err, PPX_E_MISSING, "%s has no distribution", msg);
            return PPX_OK;
        }
        if (!dist_known(type))
            return fail(err, PPX_E_UNKNOWN_TYPE, "%s: unknown distribution tag %u", msg,
                        (unsigned)type);
        if (!table)
            return fail(err, PPX_E_MISSING, "%s: distribution tag %u (%s) without its table", msg,
                        (unsigned)type, kDistNames[type]);
        const ppx::Tensor *p0 = nullptr, *p1 = nullptr;
        switch (type) {
#define PPX_DIST2(T, a, b)                                   \
    case ppx::Distribution_##T: {                            \
        auto *x = static_cast<const ppx::T *>(table);        \
        p0 = x->a();                                         \
        p1 = x->b();                                         \
        break;                                               \
    }
#define PPX_DIST1(T, a)                                      \
    case ppx::Distribution_##T: {                            \
        p0 = static_cast<const ppx::T *>(table)->a();        \
        break;                                               \
    }
            PPX_DIST2(Normal, mean, stddev)
            PPX_DIST2(Uniform, low, high)
            PPX_DIST1(Categorical, probs)
            PPX_DIST1(Poisson, rate)
            PPX_DIST1(Bernoulli, probs)
            PPX_DIST2(Beta, concentration1, concentration0)
            PPX_DIST1(Exponential, rate)
            PPX_DIST2(Gamma, concentration, rate)
            PPX_DIST2(LogNormal, loc, scale)
            PPX_DIST2(Binomial, total_count, probs)
            PPX_DIST2(Weibull, scale, concentration)
#undef PPX_DIST1
#undef PPX_DIST2
            default:
                break;
        }
        d->type = static_cast<ppx_dist_type>(type);
        char what[96];
        snprintf(what, sizeof what, "%s.distribution.%s", msg, kParamNames[type][0]);
        ppx_status s = tensor(p0, what, &out->shape_scratch_[1], &d->param[0]);
        if (s != PPX_OK) return s;
        if (dist_nparams(type) == 2) {
            snprintf(what, sizeof what, "%s.distribution.%s", msg, kParamNames[type][1]);
            s = tensor(p1, what, &out->shape_scratch_[2], &d->param[1]);
        }
        return s;
    }

    ppx_status body(const ppx::Message *root) {
        uint8_t tag = root->body_type();
        if (tag == ppx::MessageBody_NONE) return fail(err, PPX_E_MISSING, "message has no body");
        if (tag >= PPX_MSG_TYPE_COUNT)
            return fail(err, PPX_E_UNKNOWN_TYPE, "unknown message body tag %u", (unsigned)tag);
        const void *b = root->body();
        if (!b)
            return fail(err, PPX_E_MISSING, "message body tag %u (%s) without its table",
                        (unsigned)tag, kMsgNames[tag]);
        out->type = static_cast<ppx_msg_type>(tag);
        switch (tag) {
            case ppx::MessageBody_Handshake: {
                auto *x = static_cast<const ppx::Handshake *>(b);
                out->system_name = str(x->system_name());
                return PPX_OK;
            }
            case ppx::MessageBody_HandshakeResult: {
                auto *x = static_cast<const ppx::HandshakeResult *>(b);
                out->system_name = str(x->system_name());
                out->model_name = str(x->model_name());
                return PPX_OK;
            }
            case ppx::MessageBody_RunResult:
                return tensor(static_cast<const ppx::RunResult *>(b)->result(), "RunResult.result",
                              &out->shape_scratch_[0], &out->value);
            case ppx::MessageBody_Sample: {
                auto *x = static_cast<const ppx::Sample *>(b);
                out->address = str(x->address());
                out->name = str(x->name());
                out->control = x->control() ? 1 : 0;  // schema default true when absent
                ppx_status s = dist("Sample", x->distribution_type(), x->distribution(), true);
                if (s != PPX_OK) return s;
                return tangent(x->tangent(), "Sample");
            }
            case ppx::MessageBody_SampleResult:
                return tensor(static_cast<const ppx::SampleResult *>(b)->result(),
                              "SampleResult.result", &out->shape_scratch_[0], &out->value);
            case ppx::MessageBody_Observe: {
                auto *x = static_cast<const ppx::Observe *>(b);
                out->address = str(x->address());
                out->name = str(x->name());
                ppx_status s = dist("Observe", x->distribution_type(), x->distribution(), false);
                if (s != PPX_OK) return s;
                s = tensor(x->value(), "Observe.value", &out->shape_scratch_[0], &out->value);
                if (s != PPX_OK) return s;
                return tangent(x->tangent(), "Observe");
            }
            case ppx::MessageBody_Tag: {
                auto *x = static_cast<const ppx::Tag *>(b);
                out->address = str(x->address());
                out->name = str(x->name());
                return tensor(x->value(), "Tag.value", &out->shape_scratch_[0], &out->value);
            }
            default:  // Run, ObserveResult, TagResult, Reset: no fields
                return PPX_OK;
        }
    }
};

ppx_status decode_impl(const void *buf, size_t len, const ppx_limits &lim, ppx_msg *out,
                       ppx_error *err) {
    if (!buf && len > 0) return fail(err, PPX_E_ARG, "ppx_decode: buf is NULL");
    if (len == 0) return fail(err, PPX_E_VERIFY, "empty buffer (0 bytes)");
    if (len > lim.max_message_bytes)
        return fail(err, PPX_E_TOO_LARGE, "buffer of %zu bytes exceeds max_message_bytes %zu", len,
                    lim.max_message_bytes);
    if (len >= FLATBUFFERS_MAX_BUFFER_SIZE)
        return fail(err, PPX_E_TOO_LARGE, "buffer of %zu bytes exceeds the FlatBuffers limit %zu",
                    len, (size_t)FLATBUFFERS_MAX_BUFFER_SIZE - 1);
    const uint8_t *p = static_cast<const uint8_t *>(buf);
    if (reinterpret_cast<uintptr_t>(p) % 8 != 0) {
        // Unaligned input: decode from an aligned private copy so that the
        // double vectors are aligned in memory (the Verifier checks alignment
        // relative to the buffer start only).
        size_t cap = (len + 7) & ~(size_t)7;
        void *copy = std::aligned_alloc(8, cap);
        if (!copy)
            return fail(err, PPX_E_NOMEM, "no memory for an aligned copy of %zu bytes", len);
        std::memcpy(copy, p, len);
        out->owned_ = copy;
        p = static_cast<const uint8_t *>(copy);
    }
    flatbuffers::Verifier::Options opts;
    opts.max_depth = kMaxDepth;
    opts.max_tables = kMaxTables;
    opts.check_alignment = true;
    opts.check_nested_flatbuffers = false;
    flatbuffers::Verifier verifier(p, len, opts);
    if (!verifier.VerifyBuffer<ppx::Message>(nullptr))
        return fail(err, PPX_E_VERIFY,
                    "buffer of %zu bytes failed FlatBuffers verification (truncated or corrupt)",
                    len);
    Decoder d{lim, out, err};
    return d.body(flatbuffers::GetRoot<ppx::Message>(p));
}

// ---- encoding ---------------------------------------------------------------

// Validates a tensor to be encoded; adds its size estimate to *bytes.
ppx_status check_tensor(const ppx_tensor &t, const char *what, size_t *bytes, ppx_error *err) {
    if (t.len > 0 && !t.data)
        return fail(err, PPX_E_ARG, "%s: len %zu but data is NULL", what, t.len);
    if (t.ndim > 0 && !t.shape)
        return fail(err, PPX_E_ARG, "%s: ndim %zu but shape is NULL", what, t.ndim);
    const size_t lim = (size_t)FLATBUFFERS_MAX_BUFFER_SIZE;
    if (t.len > lim / 8 || t.ndim > lim / 4)
        return fail(err, PPX_E_TOO_LARGE, "%s: tensor of %zu elements, %zu dims is too large",
                    what, t.len, t.ndim);
    if (!(t.ndim == 0 && t.len == 0)) {  // {len 0, ndim 0}: absent, written as data=[], shape=[0]
        char why[160];
        if (!shape_matches(t.shape, t.ndim, t.len, why, sizeof why))
            return fail(err, PPX_E_ARG, "%s: %s", what, why);
    }
    *bytes += 8 * t.len + 4 * t.ndim + 64;
    return PPX_OK;
}

flatbuffers::Offset<ppx::Tensor> put_tensor(flatbuffers::FlatBufferBuilder &fbb,
                                            const ppx_tensor &t) {
    static const int32_t zero_shape[1] = {0};
    const int32_t *shape = t.shape;
    size_t ndim = t.ndim;
    if (t.len == 0 && t.ndim == 0) {  // absent: data=[], shape=[0]
        shape = zero_shape;
        ndim = 1;
    }
    auto data_off = fbb.CreateVector<double>(t.len ? t.data : nullptr, t.len);
    auto shape_off = fbb.CreateVector<int32_t>(ndim ? shape : nullptr, ndim);
    return ppx::CreateTensor(fbb, data_off, shape_off);
}

const char *nz(const char *s) { return s ? s : kEmpty; }

}  // namespace

struct ppx_encoder {
    flatbuffers::FlatBufferBuilder fbb{1024};
};

namespace {

ppx_status check_tangent(const ppx_tangent &t, const ppx_dist &dist, const char *tn, size_t *bytes,
                         ppx_error *err) {
    if (t.n_theta > 0 && !t.theta)
        return fail(err, PPX_E_TANGENT, "%s.tangent: %zu theta names but theta is NULL", tn, t.n_theta);
    for (size_t i = 0; i < t.n_theta && i <= kMaxTangentTheta; i++)
        if (!t.theta[i]) return fail(err, PPX_E_TANGENT, "%s.tangent: theta name %zu is NULL", tn, i);
    for (int j = 0; j < 2; j++)
        if (t.len[j] > 0 && !t.d[j])
            return fail(err, PPX_E_TANGENT, "%s.tangent: param%d has %zu values but is NULL", tn, j, t.len[j]);
    char why[160];
    if (!tangent_ok(t.theta, t.n_theta, t.d, t.len, dist, why, sizeof why))
        return fail(err, PPX_E_TANGENT, "%s.tangent: %s", tn, why);
    *bytes += 8 * (t.len[0] + t.len[1]) + 64;
    for (size_t i = 0; i < t.n_theta; i++) *bytes += std::strlen(t.theta[i]) + 8;
    return PPX_OK;
}

ppx_status validate(const ppx_msg *m, ppx_error *err, size_t *bytes) {
    size_t b = 256;
    ppx_status s = PPX_OK;
    const int type = as_int(m->type);
    const char *tn = (type > PPX_MSG_NONE && type < PPX_MSG_TYPE_COUNT) ? kMsgNames[type] : "?";
    char what[96];
    switch (type) {
        case PPX_MSG_HANDSHAKE:
            b += std::strlen(nz(m->system_name));
            break;
        case PPX_MSG_HANDSHAKE_RESULT:
            b += std::strlen(nz(m->system_name)) + std::strlen(nz(m->model_name));
            break;
        case PPX_MSG_RUN_RESULT:
        case PPX_MSG_SAMPLE_RESULT:
            snprintf(what, sizeof what, "%s.result", tn);
            s = check_tensor(m->value, what, &b, err);
            break;
        case PPX_MSG_SAMPLE:
        case PPX_MSG_OBSERVE: {
            b += std::strlen(nz(m->address)) + std::strlen(nz(m->name));
            const int dt = as_int(m->dist.type);
            if (dt == PPX_DIST_NONE) {
                if (type == PPX_MSG_SAMPLE)
                    return fail(err, PPX_E_ARG, "Sample needs a distribution (dist.type is NONE)");
            } else if (!dist_known(dt)) {
                return fail(err, PPX_E_ARG, "%s: unknown distribution type %d", tn, dt);
            } else {
                for (int i = 0; i < dist_nparams(dt) && s == PPX_OK; i++) {
                    snprintf(what, sizeof what, "%s.distribution.%s", tn, kParamNames[dt][i]);
                    s = check_tensor(m->dist.param[i], what, &b, err);
                }
            }
            if (s == PPX_OK && type == PPX_MSG_OBSERVE)
                s = check_tensor(m->value, "Observe.value", &b, err);
            if (s == PPX_OK && m->tangent.present) s = check_tangent(m->tangent, m->dist, tn, &b, err);
            break;
        }
        case PPX_MSG_TAG:
            b += std::strlen(nz(m->address)) + std::strlen(nz(m->name));
            s = check_tensor(m->value, "Tag.value", &b, err);
            break;
        case PPX_MSG_RUN:
        case PPX_MSG_OBSERVE_RESULT:
        case PPX_MSG_TAG_RESULT:
        case PPX_MSG_RESET:
            break;
        default:
            return fail(err, PPX_E_ARG, "cannot encode unknown message type %d", type);
    }
    if (s != PPX_OK) return s;
    if (b >= (size_t)FLATBUFFERS_MAX_BUFFER_SIZE / 2)
        return fail(err, PPX_E_TOO_LARGE, "%s message of about %zu bytes is too large to encode",
                    tn, b);
    *bytes = b;
    return PPX_OK;
}

flatbuffers::Offset<void> put_dist(flatbuffers::FlatBufferBuilder &fbb, const ppx_dist &d) {
    const ppx_tensor &a = d.param[0];
    const ppx_tensor &b = d.param[1];
    switch (as_int(d.type)) {
#define PPX_PUT2(E, T)                                                                 \
    case E: {                                                                          \
        auto o0 = put_tensor(fbb, a);                                                  \
        auto o1 = put_tensor(fbb, b);                                                  \
        return ppx::Create##T(fbb, o0, o1).Union();                                    \
    }
#define PPX_PUT1(E, T)                                                                 \
    case E: {                                                                          \
        auto o0 = put_tensor(fbb, a);                                                  \
        return ppx::Create##T(fbb, o0).Union();                                        \
    }
        PPX_PUT2(PPX_DIST_NORMAL, Normal)
        PPX_PUT2(PPX_DIST_UNIFORM, Uniform)
        PPX_PUT1(PPX_DIST_CATEGORICAL, Categorical)
        PPX_PUT1(PPX_DIST_POISSON, Poisson)
        PPX_PUT1(PPX_DIST_BERNOULLI, Bernoulli)
        PPX_PUT2(PPX_DIST_BETA, Beta)
        PPX_PUT1(PPX_DIST_EXPONENTIAL, Exponential)
        PPX_PUT2(PPX_DIST_GAMMA, Gamma)
        PPX_PUT2(PPX_DIST_LOGNORMAL, LogNormal)
        PPX_PUT2(PPX_DIST_BINOMIAL, Binomial)
        PPX_PUT2(PPX_DIST_WEIBULL, Weibull)
#undef PPX_PUT1
#undef PPX_PUT2
        default:
            return 0;
    }
}

// The Tangent table when present (every vector written, possibly empty), else 0.
flatbuffers::Offset<ppx::Tangent> put_tangent(flatbuffers::FlatBufferBuilder &fbb, const ppx_tangent &t) {
    if (!t.present) return 0;
    std::vector<flatbuffers::Offset<flatbuffers::String>> names;
    names.reserve(t.n_theta);
    for (size_t i = 0; i < t.n_theta; i++) names.push_back(fbb.CreateString(t.theta[i]));
    auto th = fbb.CreateVector(names);
    auto d0 = fbb.CreateVector<double>(t.len[0] ? t.d[0] : nullptr, t.len[0]);
    auto d1 = fbb.CreateVector<double>(t.len[1] ? t.d[1] : nullptr, t.len[1]);
    return ppx::CreateTangent(fbb, th, d0, d1);
}

flatbuffers::Offset<void> put_body(flatbuffers::FlatBufferBuilder &fbb, const ppx_msg *m) {
    const auto dtype = static_cast<ppx::Distribution>(as_int(m->dist.type));  // validated
    switch (as_int(m->type)) {
        case PPX_MSG_HANDSHAKE: {
            auto sn = fbb.CreateString(nz(m->system_name));
            return ppx::CreateHandshake(fbb, sn).Union();
        }
        case PPX_MSG_HANDSHAKE_RESULT: {
            auto sn = fbb.CreateString(nz(m->system_name));
            auto mn = fbb.CreateString(nz(m->model_name));
            return ppx::CreateHandshakeResult(fbb, sn, mn).Union();
        }
        case PPX_MSG_RUN:
            return ppx::CreateRun(fbb).Union();
        case PPX_MSG_RUN_RESULT: {
            auto r = put_tensor(fbb, m->value);
            return ppx::CreateRunResult(fbb, r).Union();
        }
        case PPX_MSG_SAMPLE: {
            auto ad = fbb.CreateString(nz(m->address));
            auto nm = fbb.CreateString(nz(m->name));
            auto d = put_dist(fbb, m->dist);
            auto tg = put_tangent(fbb, m->tangent);
            // ForceDefaults is on: control is written even when true.  Slot 5
            // (the removed `replace`) is never written.
            return ppx::CreateSample(fbb, ad, nm, dtype, d,
                                     m->control != 0, tg)
                .Union();
        }
        case PPX_MSG_SAMPLE_RESULT: {
            auto r = put_tensor(fbb, m->value);
            return ppx::CreateSampleResult(fbb, r).Union();
        }
        case PPX_MSG_OBSERVE: {
            auto ad = fbb.CreateString(nz(m->address));
            auto nm = fbb.CreateString(nz(m->name));
            auto d = put_dist(fbb, m->dist);
            auto v = put_tensor(fbb, m->value);
            auto tg = put_tangent(fbb, m->tangent);
            return ppx::CreateObserve(fbb, ad, nm, dtype, d,
                                      v, tg)
                .Union();
        }
        case PPX_MSG_OBSERVE_RESULT:
            return ppx::CreateObserveResult(fbb).Union();
        case PPX_MSG_TAG: {
            auto ad = fbb.CreateString(nz(m->address));
            auto nm = fbb.CreateString(nz(m->name));
            auto v = put_tensor(fbb, m->value);
            return ppx::CreateTag(fbb, ad, nm, v).Union();
        }
        case PPX_MSG_TAG_RESULT:
            return ppx::CreateTagResult(fbb).Union();
        case PPX_MSG_RESET:
            return ppx::CreateReset(fbb).Union();
        default:
            return 0;
    }
}

}  // namespace

// ---- C API ------------------------------------------------------------------

extern "C" {

ppx_limits ppx_limits_default(void) {
    ppx_limits l;
    l.max_message_bytes = PPX_DEFAULT_MAX_MESSAGE_BYTES;
    l.max_tensor_len = PPX_DEFAULT_MAX_TENSOR_LEN;
    return l;
}

const char *ppx_msg_type_name(ppx_msg_type t) {
    const int i = as_int(t);
    return (i >= 0 && i < PPX_MSG_TYPE_COUNT) ? kMsgNames[i] : "Unknown";
}

const char *ppx_dist_type_name(ppx_dist_type t) {
    const int i = as_int(t);
    return (i >= 0 && i < PPX_DIST_TYPE_COUNT) ? kDistNames[i] : "Unknown";
}

const char *ppx_status_name(ppx_status s) {
    const int i = as_int(s);
    const int n = static_cast<int>(sizeof kStatusNames / sizeof kStatusNames[0]);
    return (i >= 0 && i < n) ? kStatusNames[i] : "Unknown";
}

void ppx_msg_init(ppx_msg *m) {
    if (!m) return;
    std::memset(static_cast<void *>(m), 0, sizeof *m);
    m->type = PPX_MSG_NONE;
    m->system_name = kEmpty;
    m->model_name = kEmpty;
    m->address = kEmpty;
    m->name = kEmpty;
    m->dist.type = PPX_DIST_NONE;
    m->dist.param[0] = ppx_tensor_empty();
    m->dist.param[1] = ppx_tensor_empty();
    m->control = 1;
    m->value = ppx_tensor_empty();
    m->owned_ = nullptr;
}

void ppx_msg_clear(ppx_msg *m) {
    if (!m) return;
    std::free(m->owned_);
    std::free(static_cast<void *>(m->tangent_names_));
    ppx_msg_init(m);
}

ppx_status ppx_decode(const void *buf, size_t len, const ppx_limits *lim, ppx_msg *out,
                      ppx_error *err) {
    if (err) {
        err->code = PPX_OK;
        err->message[0] = '\0';
    }
    if (!out) return fail(err, PPX_E_ARG, "ppx_decode: out is NULL");
    ppx_msg_clear(out);
    const ppx_limits l = lim ? *lim : ppx_limits_default();
    ppx_status s;
    try {
        s = decode_impl(buf, len, l, out, err);
    } catch (const std::bad_alloc &) {
        s = fail(err, PPX_E_NOMEM, "out of memory while decoding");
    } catch (...) {
        s = fail(err, PPX_E_VERIFY, "unexpected exception while decoding");
    }
    if (s != PPX_OK) ppx_msg_clear(out);
    return s;
}

ppx_encoder *ppx_encoder_new(void) {
    try {
        return new ppx_encoder();
    } catch (...) {
        return nullptr;
    }
}

void ppx_encoder_destroy(ppx_encoder **e) {
    if (!e) return;
    delete *e;
    *e = nullptr;
}

const uint8_t *ppx_encode(ppx_encoder *e, const ppx_msg *m, size_t *len, ppx_error *err) {
    if (err) {
        err->code = PPX_OK;
        err->message[0] = '\0';
    }
    if (len) *len = 0;
    if (!e || !m || !len) {
        fail(err, PPX_E_ARG, "ppx_encode: %s is NULL", !e ? "encoder" : !m ? "message" : "len");
        return nullptr;
    }
    size_t estimate = 0;
    if (validate(m, err, &estimate) != PPX_OK) return nullptr;
    try {
        flatbuffers::FlatBufferBuilder &fbb = e->fbb;
        fbb.Clear();
        fbb.ForceDefaults(true);  // write Sample.control even when it equals the default
        auto body = put_body(fbb, m);
        auto root = ppx::CreateMessage(fbb, static_cast<ppx::MessageBody>(as_int(m->type)), body);
        fbb.Finish(root);  // no file identifier
        *len = fbb.GetSize();
        return fbb.GetBufferPointer();
    } catch (const std::bad_alloc &) {
        e->fbb.Clear();
        fail(err, PPX_E_NOMEM, "out of memory while encoding a %zu-byte %s message", estimate,
             kMsgNames[as_int(m->type)]);
        return nullptr;
    } catch (...) {
        e->fbb.Clear();
        fail(err, PPX_E_NOMEM, "unexpected exception while encoding");
        return nullptr;
    }
}

}  // extern "C"
