// serve_codec.cc — the posterior query codec: FlatBuffers (generated from
// protocol/serve.fbs by flatc) behind the plain C API of protocol/ppxq.h.
//
// Decoding never reads a byte of the input before the FlatBuffers Verifier has
// accepted it; every error is reported through a result code and a specific
// message, and no C++ exception crosses the C API.

#include "ppxq.h"

#include <flatbuffers/flatbuffers.h>

#include "serve_generated.h"

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

// Zero-copy views of doubles need a little-endian host.
static_assert(FLATBUFFERS_LITTLEENDIAN, "serve codec: zero-copy views need a little-endian host");
static_assert(sizeof(double) == 8, "serve codec: double must be 8 bytes");

// The C enums are the wire tags.
static_assert(static_cast<int>(PPXQ_LIST_MODELS) == ppxq::Body_ListModels, "tag");
static_assert(static_cast<int>(PPXQ_LIST_MODELS_REPLY) == ppxq::Body_ListModelsReply, "tag");
static_assert(static_cast<int>(PPXQ_SAMPLE) == ppxq::Body_Sample, "tag");
static_assert(static_cast<int>(PPXQ_SAMPLE_REPLY) == ppxq::Body_SampleReply, "tag");
static_assert(static_cast<int>(PPXQ_LOG_PROB) == ppxq::Body_LogProb, "tag");
static_assert(static_cast<int>(PPXQ_LOG_PROB_REPLY) == ppxq::Body_LogProbReply, "tag");
static_assert(static_cast<int>(PPXQ_LOAD) == ppxq::Body_Load, "tag");
static_assert(static_cast<int>(PPXQ_UNLOAD) == ppxq::Body_Unload, "tag");
static_assert(static_cast<int>(PPXQ_RELOAD) == ppxq::Body_Reload, "tag");
static_assert(static_cast<int>(PPXQ_ADMIN_REPLY) == ppxq::Body_AdminReply, "tag");
static_assert(static_cast<int>(PPXQ_STATUS) == ppxq::Body_Status, "tag");
static_assert(static_cast<int>(PPXQ_STATUS_REPLY) == ppxq::Body_StatusReply, "tag");
static_assert(static_cast<int>(PPXQ_ERROR) == ppxq::Body_Error, "tag");
static_assert(static_cast<int>(PPXQ_JOB_SUBMIT) == ppxq::Body_JobSubmit, "tag");
static_assert(static_cast<int>(PPXQ_JOB_LIST) == ppxq::Body_JobList, "tag");
static_assert(static_cast<int>(PPXQ_JOB_STATUS) == ppxq::Body_JobStatus, "tag");
static_assert(static_cast<int>(PPXQ_JOB_CANCEL) == ppxq::Body_JobCancel, "tag");
static_assert(static_cast<int>(PPXQ_JOB_WAIT) == ppxq::Body_JobWait, "tag");
static_assert(static_cast<int>(PPXQ_JOB_REPLY) == ppxq::Body_JobReply, "tag");
static_assert(static_cast<int>(PPXQ_JOB_FETCH) == ppxq::Body_JobFetch, "tag");
static_assert(static_cast<int>(PPXQ_JOB_FETCH_REPLY) == ppxq::Body_JobFetchReply, "tag");
static_assert(static_cast<int>(PPXQ_SIM_LIST) == ppxq::Body_SimList, "tag");
static_assert(static_cast<int>(PPXQ_SIM_LIST_REPLY) == ppxq::Body_SimListReply, "tag");
static_assert(static_cast<int>(PPXQ_LOG_RATIO) == ppxq::Body_LogRatio, "tag");
static_assert(static_cast<int>(PPXQ_LOG_RATIO_REPLY) == ppxq::Body_LogRatioReply, "tag");
static_assert(static_cast<int>(PPXQ_SCORE) == ppxq::Body_Score, "tag");
static_assert(static_cast<int>(PPXQ_SCORE_REPLY) == ppxq::Body_ScoreReply, "tag");
static_assert(static_cast<int>(PPXQ_TYPE_COUNT) == ppxq::Body_MAX + 1, "tag count");
static_assert(static_cast<int>(PPXQ_JOB_CANCELLED) == ppxq::JobState_CANCELLED, "job state");
static_assert(static_cast<int>(PPXQ_JOB_STATE_COUNT) == ppxq::JobState_MAX + 1, "job state count");
static_assert(static_cast<int>(PPXQ_INTERNAL) == ppxq::ErrorCode_INTERNAL, "code");
static_assert(static_cast<int>(PPXQ_CODE_COUNT) == ppxq::ErrorCode_MAX + 1, "code count");

namespace {

const char kEmpty[] = "";

// Verifier limits: the deepest path is Envelope > ListModelsReply > ModelInfo
// (> vector of strings); a reply may hold one Matrix per observation, so the
// table count is bounded by the buffer size instead (a table is >= 4 bytes).
const flatbuffers::uoffset_t kMaxDepth = 16;

const char *const kTypeNames[PPXQ_TYPE_COUNT] = {
    "None", "ListModels", "ListModelsReply", "Sample", "SampleReply", "LogProb", "LogProbReply",
    "Load", "Unload", "Reload", "AdminReply", "Status", "StatusReply", "Error",
    "JobSubmit", "JobList", "JobStatus", "JobCancel", "JobWait", "JobReply", "JobFetch", "JobFetchReply",
    "SimList", "SimListReply", "LogRatio", "LogRatioReply", "Score", "ScoreReply"};

const char *const kCodeNames[PPXQ_CODE_COUNT] = {
    "OK", "MALFORMED", "VERSION_MISMATCH", "UNKNOWN_MODEL", "BAD_SHAPE", "N_TOO_LARGE", "NAN_INPUT",
    "BUSY", "DEADLINE", "SAMPLING_FAILED", "NOT_ALLOWED", "LOAD_FAILED", "INTERNAL", "UNKNOWN_JOB",
    "BAD_REQUEST"};

// Reads an enum's bits as an int without loading a value of the C++ enum type
// (a C caller may pass any int; see ppx_codec.cc).
template <class E>
int as_int(const E &e) {
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    int i;
    std::memcpy(&i, &e, sizeof i);
    return i;
}

__attribute__((format(printf, 3, 4)))
ppxq_result fail(ppxq_error *err, ppxq_result code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

// Storage of a decoded message's arrays: freed all at once.
struct Arena {
    std::vector<void *> blocks;
    ~Arena() {
        for (void *b : blocks) std::free(b);
    }
    template <class T>
    T *alloc(size_t n) {
        void *p = std::calloc(n ? n : 1, sizeof(T));
        if (!p) throw std::bad_alloc();
        try {
            blocks.push_back(p);
        } catch (...) {
            std::free(p);
            throw;
        }
        return static_cast<T *>(p);
    }
};

const char *str(const flatbuffers::String *s) { return s ? s->c_str() : kEmpty; }
const char *nz(const char *s) { return s ? s : kEmpty; }

// ---- decoding ---------------------------------------------------------------

struct Decoder {
    ppxq_msg *out;
    ppxq_error *err;
    Arena *arena;

    // A verified double vector: aligned elements, or an error.
    ppxq_result doubles(const flatbuffers::Vector<double> *v, const char *what, const double **data,
                        uint32_t *n) {
        *data = nullptr;
        *n = 0;
        if (!v || v->size() == 0) return PPXQ_R_OK;
        // The Verifier checks the alignment of a vector's length only.
        if (reinterpret_cast<uintptr_t>(v->Data()) % alignof(double) != 0)
            return fail(err, PPXQ_R_VERIFY, "%s: data vector is not 8-byte aligned", what);
        *data = v->data();
        *n = v->size();
        return PPXQ_R_OK;
    }

    ppxq_result matrix(const ppxq::Matrix *m, const char *what, ppxq_matrix *dst) {
        dst->rows = dst->cols = 0;
        dst->data = nullptr;
        if (!m) return PPXQ_R_OK;
        uint32_t n;
        ppxq_result r = doubles(m->data(), what, &dst->data, &n);
        if (r != PPXQ_R_OK) return r;
        if ((uint64_t)m->rows() * (uint64_t)m->cols() != (uint64_t)n)
            return fail(err, PPXQ_R_MISSING, "%s: %u x %u matrix but data has %u elements", what, m->rows(),
                        m->cols(), n);
        dst->rows = m->rows();
        dst->cols = m->cols();
        return PPXQ_R_OK;
    }

    const char *const *strings(const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>> *v,
                               uint32_t *n) {
        *n = v ? v->size() : 0;
        const char **a = arena->alloc<const char *>(*n);
        for (uint32_t i = 0; i < *n; i++) a[i] = str(v->Get(i));
        return a;
    }

    void model_info(const ppxq::ModelInfo *m, ppxq_model_info *d) {
        d->name = str(m->name());
        d->kind = str(m->kind());
        d->theta_names = strings(m->theta_names(), &d->n_theta_names);
        d->theta_dim = m->theta_dim();
        d->x_names = strings(m->x_names(), &d->n_x_names);
        d->x_dim = m->x_dim();
        d->created = m->created();
        d->n_simulations = m->n_simulations();
        d->best_val_loss = m->best_val_loss();
        d->checksum = m->checksum();
        d->path = str(m->path());
        d->generation = m->generation();
        d->prior = str(m->prior());
    }

    void job_info(const ppxq::JobInfo *j, ppxq_job_info *d) {
        d->id = str(j->id());
        d->name = str(j->name());
        d->command = strings(j->command(), &d->n_command);
        d->sim_model = str(j->sim_model());
        int st = static_cast<int>(j->state());
        d->state = (st >= 0 && st < PPXQ_JOB_STATE_COUNT) ? static_cast<ppxq_job_state>(st) : PPXQ_JOB_FAILED;
        d->message = str(j->message());
        d->submitted = j->submitted();
        d->started = j->started();
        d->finished = j->finished();
        d->done = j->done();
        d->total = j->total();
        d->unit = str(j->unit());
        d->loss = j->loss();
        d->eta_seconds = j->eta_seconds();
        d->outputs = strings(j->outputs(), &d->n_outputs);
    }

    ppxq_result body(const ppxq::Envelope *root) {
        uint8_t tag = root->body_type();
        if (tag == ppxq::Body_NONE) return fail(err, PPXQ_R_MISSING, "envelope has no body");
        if (tag >= PPXQ_TYPE_COUNT)
            return fail(err, PPXQ_R_UNKNOWN_TYPE, "unknown body tag %u", (unsigned)tag);
        const void *b = root->body();
        if (!b)
            return fail(err, PPXQ_R_MISSING, "body tag %u (%s) without its table", (unsigned)tag, kTypeNames[tag]);
        out->type = static_cast<ppxq_type>(tag);
        switch (tag) {
            case ppxq::Body_ListModels:
            case ppxq::Body_Status:
                return PPXQ_R_OK;
            case ppxq::Body_ListModelsReply: {
                auto *x = static_cast<const ppxq::ListModelsReply *>(b);
                uint32_t n = x->models() ? x->models()->size() : 0;
                ppxq_model_info *a = arena->alloc<ppxq_model_info>(n);
                for (uint32_t i = 0; i < n; i++) {
                    const ppxq::ModelInfo *mi = x->models()->Get(i);
                    if (!mi) return fail(err, PPXQ_R_MISSING, "ListModelsReply.models[%u] is null", i);
                    model_info(mi, &a[i]);
                }
                out->models = a;
                out->n_models = n;
                return PPXQ_R_OK;
            }
            case ppxq::Body_Sample: {
                auto *x = static_cast<const ppxq::Sample *>(b);
                out->model = str(x->model());
                out->n = x->n();
                out->seed = x->seed();
                out->max_seconds = x->max_seconds();
                return matrix(x->observations(), "Sample.observations", &out->observations);
            }
            case ppxq::Body_SampleReply: {
                auto *x = static_cast<const ppxq::SampleReply *>(b);
                uint32_t n = x->samples() ? x->samples()->size() : 0;
                ppxq_matrix *a = arena->alloc<ppxq_matrix>(n);
                for (uint32_t i = 0; i < n; i++) {
                    ppxq_result r = matrix(x->samples()->Get(i), "SampleReply.samples[]", &a[i]);
                    if (r != PPXQ_R_OK) return r;
                }
                out->samples = a;
                out->n_samples = n;
                return doubles(x->acceptance(), "SampleReply.acceptance", &out->acceptance, &out->n_acceptance);
            }
            case ppxq::Body_LogProb: {
                auto *x = static_cast<const ppxq::LogProb *>(b);
                out->model = str(x->model());
                out->normalise = x->normalise() ? 1 : 0;
                out->seed = x->seed();
                out->n_draws = x->n_draws();
                ppxq_result r = matrix(x->observation(), "LogProb.observation", &out->observations);
                if (r != PPXQ_R_OK) return r;
                return matrix(x->thetas(), "LogProb.thetas", &out->thetas);
            }
            case ppxq::Body_LogProbReply:
                return doubles(static_cast<const ppxq::LogProbReply *>(b)->log_prob(), "LogProbReply.log_prob",
                               &out->log_prob, &out->n_log_prob);
            case ppxq::Body_Load: {
                auto *x = static_cast<const ppxq::Load *>(b);
                out->path = str(x->path());
                out->name = str(x->name());
                return PPXQ_R_OK;
            }
            case ppxq::Body_Unload:
                out->name = str(static_cast<const ppxq::Unload *>(b)->name());
                return PPXQ_R_OK;
            case ppxq::Body_Reload:
                out->name = str(static_cast<const ppxq::Reload *>(b)->name());
                return PPXQ_R_OK;
            case ppxq::Body_AdminReply: {
                auto *x = static_cast<const ppxq::AdminReply *>(b);
                out->message = str(x->message());
                if (x->model()) {
                    ppxq_model_info *a = arena->alloc<ppxq_model_info>(1);
                    model_info(x->model(), a);
                    out->models = a;
                    out->n_models = 1;
                }
                return PPXQ_R_OK;
            }
            case ppxq::Body_StatusReply: {
                auto *x = static_cast<const ppxq::StatusReply *>(b);
                ppxq_status_info *s = &out->status;
                s->version = str(x->version());
                s->uptime_seconds = x->uptime_seconds();
                s->models = strings(x->models(), &s->n_models);
                s->workers = x->workers();
                s->queue_depth = x->queue_depth();
                s->requests = x->requests();
                s->errors = x->errors();
                s->busy = x->busy();
                return PPXQ_R_OK;
            }
            case ppxq::Body_Error: {
                auto *x = static_cast<const ppxq::Error *>(b);
                int c = static_cast<int>(x->code());
                // An unknown code from a newer peer is still an error.
                out->code = (c > 0 && c < PPXQ_CODE_COUNT) ? static_cast<ppxq_code>(c) : PPXQ_INTERNAL;
                out->message = str(x->message());
                return PPXQ_R_OK;
            }
            case ppxq::Body_JobSubmit: {
                auto *x = static_cast<const ppxq::JobSubmit *>(b);
                out->name = str(x->name());
                out->command = strings(x->command(), &out->n_command);
                out->sim_model = str(x->sim_model());
                return PPXQ_R_OK;
            }
            case ppxq::Body_JobList:
            case ppxq::Body_SimList:
                return PPXQ_R_OK;
            case ppxq::Body_JobStatus:
                out->job_id = str(static_cast<const ppxq::JobStatus *>(b)->id());
                return PPXQ_R_OK;
            case ppxq::Body_JobCancel:
                out->job_id = str(static_cast<const ppxq::JobCancel *>(b)->id());
                return PPXQ_R_OK;
            case ppxq::Body_JobWait: {
                auto *x = static_cast<const ppxq::JobWait *>(b);
                out->job_id = str(x->id());
                out->max_seconds = x->max_seconds();
                return PPXQ_R_OK;
            }
            case ppxq::Body_JobReply: {
                auto *x = static_cast<const ppxq::JobReply *>(b);
                uint32_t n = x->jobs() ? x->jobs()->size() : 0;
                ppxq_job_info *a = arena->alloc<ppxq_job_info>(n);
                for (uint32_t i = 0; i < n; i++) {
                    const ppxq::JobInfo *ji = x->jobs()->Get(i);
                    if (!ji) return fail(err, PPXQ_R_MISSING, "JobReply.jobs[%u] is null", i);
                    job_info(ji, &a[i]);
                }
                out->jobs = a;
                out->n_jobs = n;
                return PPXQ_R_OK;
            }
            case ppxq::Body_JobFetch: {
                auto *x = static_cast<const ppxq::JobFetch *>(b);
                out->job_id = str(x->id());
                out->output = str(x->output());
                out->offset = x->offset();
                out->max_bytes = x->max_bytes();
                return PPXQ_R_OK;
            }
            case ppxq::Body_JobFetchReply: {
                auto *x = static_cast<const ppxq::JobFetchReply *>(b);
                out->output = str(x->output());
                out->size = x->size();
                out->offset = x->offset();
                out->data = x->data() && x->data()->size() ? x->data()->data() : nullptr;
                out->n_data = x->data() ? x->data()->size() : 0;
                return PPXQ_R_OK;
            }
            case ppxq::Body_SimListReply: {
                auto *x = static_cast<const ppxq::SimListReply *>(b);
                uint32_t n = x->pools() ? x->pools()->size() : 0;
                ppxq_sim_pool *a = arena->alloc<ppxq_sim_pool>(n);
                for (uint32_t i = 0; i < n; i++) {
                    const ppxq::SimPool *sp = x->pools()->Get(i);
                    if (!sp) return fail(err, PPXQ_R_MISSING, "SimListReply.pools[%u] is null", i);
                    a[i].model = str(sp->model());
                    a[i].connected = sp->connected();
                    a[i].busy = sp->busy();
                    a[i].joined = sp->joined();
                    a[i].left = sp->left();
                }
                out->pools = a;
                out->n_pools = n;
                return PPXQ_R_OK;
            }
            case ppxq::Body_LogRatio: {
                auto *x = static_cast<const ppxq::LogRatio *>(b);
                out->model = str(x->model());
                ppxq_result r = matrix(x->x(), "LogRatio.x", &out->observations);
                if (r == PPXQ_R_OK) r = matrix(x->theta0(), "LogRatio.theta0", &out->thetas);
                if (r == PPXQ_R_OK) r = matrix(x->theta1(), "LogRatio.theta1", &out->thetas1);
                return r;
            }
            case ppxq::Body_LogRatioReply:
                return doubles(static_cast<const ppxq::LogRatioReply *>(b)->log_r(), "LogRatioReply.log_r",
                               &out->log_prob, &out->n_log_prob);
            case ppxq::Body_Score: {
                auto *x = static_cast<const ppxq::Score *>(b);
                out->model = str(x->model());
                ppxq_result r = matrix(x->x(), "Score.x", &out->observations);
                if (r == PPXQ_R_OK) r = matrix(x->theta(), "Score.theta", &out->thetas);
                return r;
            }
            case ppxq::Body_ScoreReply:
                return matrix(static_cast<const ppxq::ScoreReply *>(b)->score(), "ScoreReply.score", &out->score);
            default:
                return fail(err, PPXQ_R_UNKNOWN_TYPE, "unknown body tag %u", (unsigned)tag);
        }
    }
};

ppxq_result decode_impl(const void *buf, size_t len, size_t max_bytes, ppxq_msg *out, int *verified,
                        ppxq_error *err) {
    if (!buf && len > 0) return fail(err, PPXQ_R_ARG, "ppxq_decode: buf is NULL");
    if (len == 0) return fail(err, PPXQ_R_VERIFY, "empty buffer (0 bytes)");
    if (len > max_bytes)
        return fail(err, PPXQ_R_TOO_LARGE, "message of %zu bytes exceeds the limit of %zu bytes", len, max_bytes);
    if (len >= FLATBUFFERS_MAX_BUFFER_SIZE)
        return fail(err, PPXQ_R_TOO_LARGE, "message of %zu bytes exceeds the FlatBuffers limit", len);
    const uint8_t *p = static_cast<const uint8_t *>(buf);
    if (reinterpret_cast<uintptr_t>(p) % 8 != 0) {
        // Decode from an aligned private copy so that double vectors are
        // aligned in memory (the Verifier checks alignment relative to the
        // buffer start only).
        size_t cap = (len + 7) & ~(size_t)7;
        void *copy = std::aligned_alloc(8, cap);
        if (!copy) return fail(err, PPXQ_R_NOMEM, "no memory for an aligned copy of %zu bytes", len);
        std::memcpy(copy, p, len);
        out->owned_ = copy;
        p = static_cast<const uint8_t *>(copy);
    }
    flatbuffers::Verifier::Options opts;
    opts.max_depth = kMaxDepth;
    opts.max_tables = static_cast<flatbuffers::uoffset_t>(len / 4 + 16);
    opts.check_alignment = true;
    opts.check_nested_flatbuffers = false;
    flatbuffers::Verifier verifier(p, len, opts);
    if (!verifier.VerifyBuffer<ppxq::Envelope>(nullptr))
        return fail(err, PPXQ_R_VERIFY, "message of %zu bytes failed FlatBuffers verification (not an Envelope, "
                    "truncated or corrupt)", len);
    const ppxq::Envelope *root = flatbuffers::GetRoot<ppxq::Envelope>(p);
    out->version = root->version();
    out->request_id = root->request_id();
    if (verified) *verified = 1;
    Arena *arena = new Arena();
    out->arena_ = arena;
    Decoder d{out, err, arena};
    return d.body(root);
}

// ---- encoding ---------------------------------------------------------------

using Fbb = flatbuffers::FlatBufferBuilder;
using StrVec = flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>>;

// Rough size of what will be written, for the overall size check.
ppxq_result check_matrix(const ppxq_matrix &m, const char *what, size_t *bytes, ppxq_error *err) {
    uint64_t n = (uint64_t)m.rows * (uint64_t)m.cols;
    if (n > 0 && !m.data) return fail(err, PPXQ_R_ARG, "%s: %u x %u matrix with NULL data", what, m.rows, m.cols);
    if (n > (uint64_t)FLATBUFFERS_MAX_BUFFER_SIZE / 8)
        return fail(err, PPXQ_R_TOO_LARGE, "%s: %u x %u matrix is too large", what, m.rows, m.cols);
    *bytes += (size_t)n * 8 + 64;
    return PPXQ_R_OK;
}

ppxq_result check_strings(const char *const *v, uint32_t n, const char *what, size_t *bytes, ppxq_error *err) {
    if (n > 0 && !v) return fail(err, PPXQ_R_ARG, "%s: %u strings but the array is NULL", what, n);
    for (uint32_t i = 0; i < n; i++) *bytes += std::strlen(nz(v[i])) + 8;
    return PPXQ_R_OK;
}

ppxq_result check_info(const ppxq_model_info &mi, size_t *bytes, ppxq_error *err) {
    *bytes += 256 + std::strlen(nz(mi.name)) + std::strlen(nz(mi.kind)) + std::strlen(nz(mi.path)) +
              std::strlen(nz(mi.prior));
    ppxq_result r = check_strings(mi.theta_names, mi.n_theta_names, "ModelInfo.theta_names", bytes, err);
    if (r != PPXQ_R_OK) return r;
    return check_strings(mi.x_names, mi.n_x_names, "ModelInfo.x_names", bytes, err);
}

ppxq_result validate(const ppxq_msg *m, ppxq_error *err) {
    size_t b = 256;
    ppxq_result r = PPXQ_R_OK;
    switch (as_int(m->type)) {
        case PPXQ_LIST_MODELS:
        case PPXQ_STATUS:
            break;
        case PPXQ_LIST_MODELS_REPLY:
            if (m->n_models > 0 && !m->models) return fail(err, PPXQ_R_ARG, "ListModelsReply: models is NULL");
            for (uint32_t i = 0; i < m->n_models && r == PPXQ_R_OK; i++) r = check_info(m->models[i], &b, err);
            break;
        case PPXQ_SAMPLE:
            b += std::strlen(nz(m->model));
            r = check_matrix(m->observations, "Sample.observations", &b, err);
            break;
        case PPXQ_SAMPLE_REPLY:
            if (m->n_samples > 0 && !m->samples) return fail(err, PPXQ_R_ARG, "SampleReply: samples is NULL");
            if (m->n_acceptance > 0 && !m->acceptance)
                return fail(err, PPXQ_R_ARG, "SampleReply: acceptance is NULL");
            for (uint32_t i = 0; i < m->n_samples && r == PPXQ_R_OK; i++)
                r = check_matrix(m->samples[i], "SampleReply.samples[]", &b, err);
            b += (size_t)m->n_acceptance * 8;
            break;
        case PPXQ_LOG_PROB:
            b += std::strlen(nz(m->model));
            r = check_matrix(m->observations, "LogProb.observation", &b, err);
            if (r == PPXQ_R_OK) r = check_matrix(m->thetas, "LogProb.thetas", &b, err);
            break;
        case PPXQ_LOG_PROB_REPLY:
            if (m->n_log_prob > 0 && !m->log_prob) return fail(err, PPXQ_R_ARG, "LogProbReply: log_prob is NULL");
            b += (size_t)m->n_log_prob * 8;
            break;
        case PPXQ_LOAD:
        case PPXQ_UNLOAD:
        case PPXQ_RELOAD:
            b += std::strlen(nz(m->path)) + std::strlen(nz(m->name));
            break;
        case PPXQ_ADMIN_REPLY:
            b += std::strlen(nz(m->message));
            if (m->n_models > 1) return fail(err, PPXQ_R_ARG, "AdminReply carries at most one model");
            if (m->n_models == 1) {
                if (!m->models) return fail(err, PPXQ_R_ARG, "AdminReply: models is NULL");
                r = check_info(m->models[0], &b, err);
            }
            break;
        case PPXQ_STATUS_REPLY:
            b += std::strlen(nz(m->status.version));
            r = check_strings(m->status.models, m->status.n_models, "StatusReply.models", &b, err);
            break;
        case PPXQ_ERROR:
            b += std::strlen(nz(m->message));
            break;
        case PPXQ_JOB_SUBMIT:
            b += std::strlen(nz(m->name)) + std::strlen(nz(m->sim_model));
            r = check_strings(m->command, m->n_command, "JobSubmit.command", &b, err);
            break;
        case PPXQ_JOB_LIST:
        case PPXQ_SIM_LIST:
            break;
        case PPXQ_JOB_STATUS:
        case PPXQ_JOB_CANCEL:
        case PPXQ_JOB_WAIT:
            b += std::strlen(nz(m->job_id));
            break;
        case PPXQ_JOB_REPLY:
            if (m->n_jobs > 0 && !m->jobs) return fail(err, PPXQ_R_ARG, "JobReply: jobs is NULL");
            for (uint32_t i = 0; i < m->n_jobs && r == PPXQ_R_OK; i++) {
                const ppxq_job_info &j = m->jobs[i];
                b += 256 + std::strlen(nz(j.id)) + std::strlen(nz(j.name)) + std::strlen(nz(j.sim_model)) +
                     std::strlen(nz(j.message)) + std::strlen(nz(j.unit));
                r = check_strings(j.command, j.n_command, "JobInfo.command", &b, err);
                if (r == PPXQ_R_OK) r = check_strings(j.outputs, j.n_outputs, "JobInfo.outputs", &b, err);
            }
            break;
        case PPXQ_JOB_FETCH:
            b += std::strlen(nz(m->job_id)) + std::strlen(nz(m->output));
            break;
        case PPXQ_JOB_FETCH_REPLY:
            if (m->n_data > 0 && !m->data) return fail(err, PPXQ_R_ARG, "JobFetchReply: data is NULL");
            if (m->n_data >= (size_t)FLATBUFFERS_MAX_BUFFER_SIZE)
                return fail(err, PPXQ_R_TOO_LARGE, "JobFetchReply: %zu bytes of data is too large", m->n_data);
            b += std::strlen(nz(m->output)) + m->n_data;
            break;
        case PPXQ_SIM_LIST_REPLY:
            if (m->n_pools > 0 && !m->pools) return fail(err, PPXQ_R_ARG, "SimListReply: pools is NULL");
            for (uint32_t i = 0; i < m->n_pools; i++) b += 64 + std::strlen(nz(m->pools[i].model));
            break;
        case PPXQ_LOG_RATIO:
            b += std::strlen(nz(m->model));
            r = check_matrix(m->observations, "LogRatio.x", &b, err);
            if (r == PPXQ_R_OK) r = check_matrix(m->thetas, "LogRatio.theta0", &b, err);
            if (r == PPXQ_R_OK) r = check_matrix(m->thetas1, "LogRatio.theta1", &b, err);
            break;
        case PPXQ_LOG_RATIO_REPLY:
            if (m->n_log_prob > 0 && !m->log_prob) return fail(err, PPXQ_R_ARG, "LogRatioReply: log_r is NULL");
            b += (size_t)m->n_log_prob * 8;
            break;
        case PPXQ_SCORE:
            b += std::strlen(nz(m->model));
            r = check_matrix(m->observations, "Score.x", &b, err);
            if (r == PPXQ_R_OK) r = check_matrix(m->thetas, "Score.theta", &b, err);
            break;
        case PPXQ_SCORE_REPLY:
            r = check_matrix(m->score, "ScoreReply.score", &b, err);
            break;
        default:
            return fail(err, PPXQ_R_ARG, "cannot encode unknown message type %d", as_int(m->type));
    }
    if (r != PPXQ_R_OK) return r;
    if (b >= (size_t)FLATBUFFERS_MAX_BUFFER_SIZE / 2)
        return fail(err, PPXQ_R_TOO_LARGE, "%s message of about %zu bytes is too large to encode",
                    kTypeNames[as_int(m->type)], b);
    return PPXQ_R_OK;
}

flatbuffers::Offset<ppxq::Matrix> put_matrix(Fbb &fbb, const ppxq_matrix &m) {
    size_t n = (size_t)m.rows * (size_t)m.cols;
    auto data = fbb.CreateVector<double>(n ? m.data : nullptr, n);
    return ppxq::CreateMatrix(fbb, m.rows, m.cols, data);
}

StrVec put_strings(Fbb &fbb, const char *const *v, uint32_t n) {
    std::vector<flatbuffers::Offset<flatbuffers::String>> offs;
    offs.reserve(n);
    for (uint32_t i = 0; i < n; i++) offs.push_back(fbb.CreateString(nz(v[i])));
    return fbb.CreateVector(offs);
}

flatbuffers::Offset<ppxq::ModelInfo> put_info(Fbb &fbb, const ppxq_model_info &mi) {
    auto name = fbb.CreateString(nz(mi.name));
    auto kind = fbb.CreateString(nz(mi.kind));
    auto tn = put_strings(fbb, mi.theta_names, mi.n_theta_names);
    auto xn = put_strings(fbb, mi.x_names, mi.n_x_names);
    auto path = fbb.CreateString(nz(mi.path));
    auto prior = fbb.CreateString(nz(mi.prior));
    return ppxq::CreateModelInfo(fbb, name, kind, tn, mi.theta_dim, xn, mi.x_dim, mi.created, mi.n_simulations,
                                 mi.best_val_loss, mi.checksum, path, mi.generation, prior);
}

flatbuffers::Offset<ppxq::JobInfo> put_job(Fbb &fbb, const ppxq_job_info &j) {
    auto id = fbb.CreateString(nz(j.id));
    auto name = fbb.CreateString(nz(j.name));
    auto cmd = put_strings(fbb, j.command, j.n_command);
    auto sm = fbb.CreateString(nz(j.sim_model));
    auto msg = fbb.CreateString(nz(j.message));
    auto unit = fbb.CreateString(nz(j.unit));
    auto outs = put_strings(fbb, j.outputs, j.n_outputs);
    return ppxq::CreateJobInfo(fbb, id, name, cmd, sm, static_cast<ppxq::JobState>(as_int(j.state)), msg, j.submitted,
                               j.started, j.finished, j.done, j.total, unit, j.loss, j.eta_seconds, outs);
}

flatbuffers::Offset<void> put_body(Fbb &fbb, const ppxq_msg *m) {
    switch (as_int(m->type)) {
        case PPXQ_LIST_MODELS:
            return ppxq::CreateListModels(fbb).Union();
        case PPXQ_LIST_MODELS_REPLY: {
            std::vector<flatbuffers::Offset<ppxq::ModelInfo>> v;
            v.reserve(m->n_models);
            for (uint32_t i = 0; i < m->n_models; i++) v.push_back(put_info(fbb, m->models[i]));
            auto vec = fbb.CreateVector(v);
            return ppxq::CreateListModelsReply(fbb, vec).Union();
        }
        case PPXQ_SAMPLE: {
            auto model = fbb.CreateString(nz(m->model));
            auto obs = put_matrix(fbb, m->observations);
            return ppxq::CreateSample(fbb, model, obs, m->n, m->seed, m->max_seconds).Union();
        }
        case PPXQ_SAMPLE_REPLY: {
            std::vector<flatbuffers::Offset<ppxq::Matrix>> v;
            v.reserve(m->n_samples);
            for (uint32_t i = 0; i < m->n_samples; i++) v.push_back(put_matrix(fbb, m->samples[i]));
            auto vec = fbb.CreateVector(v);
            auto acc = fbb.CreateVector<double>(m->n_acceptance ? m->acceptance : nullptr, m->n_acceptance);
            return ppxq::CreateSampleReply(fbb, vec, acc).Union();
        }
        case PPXQ_LOG_PROB: {
            auto model = fbb.CreateString(nz(m->model));
            auto obs = put_matrix(fbb, m->observations);
            auto th = put_matrix(fbb, m->thetas);
            return ppxq::CreateLogProb(fbb, model, obs, th, m->normalise != 0, m->seed, m->n_draws).Union();
        }
        case PPXQ_LOG_PROB_REPLY: {
            auto lp = fbb.CreateVector<double>(m->n_log_prob ? m->log_prob : nullptr, m->n_log_prob);
            return ppxq::CreateLogProbReply(fbb, lp).Union();
        }
        case PPXQ_LOAD: {
            auto path = fbb.CreateString(nz(m->path));
            auto name = fbb.CreateString(nz(m->name));
            return ppxq::CreateLoad(fbb, path, name).Union();
        }
        case PPXQ_UNLOAD: {
            auto name = fbb.CreateString(nz(m->name));
            return ppxq::CreateUnload(fbb, name).Union();
        }
        case PPXQ_RELOAD: {
            auto name = fbb.CreateString(nz(m->name));
            return ppxq::CreateReload(fbb, name).Union();
        }
        case PPXQ_ADMIN_REPLY: {
            auto msg = fbb.CreateString(nz(m->message));
            flatbuffers::Offset<ppxq::ModelInfo> info = 0;
            if (m->n_models == 1) info = put_info(fbb, m->models[0]);
            return ppxq::CreateAdminReply(fbb, msg, info).Union();
        }
        case PPXQ_STATUS:
            return ppxq::CreateStatus(fbb).Union();
        case PPXQ_STATUS_REPLY: {
            const ppxq_status_info &s = m->status;
            auto ver = fbb.CreateString(nz(s.version));
            auto models = put_strings(fbb, s.models, s.n_models);
            return ppxq::CreateStatusReply(fbb, ver, s.uptime_seconds, models, s.workers, s.queue_depth, s.requests,
                                           s.errors, s.busy)
                .Union();
        }
        case PPXQ_ERROR: {
            auto msg = fbb.CreateString(nz(m->message));
            return ppxq::CreateError(fbb, static_cast<ppxq::ErrorCode>(as_int(m->code)), msg).Union();
        }
        case PPXQ_JOB_SUBMIT: {
            auto name = fbb.CreateString(nz(m->name));
            auto cmd = put_strings(fbb, m->command, m->n_command);
            auto sm = fbb.CreateString(nz(m->sim_model));
            return ppxq::CreateJobSubmit(fbb, name, cmd, sm).Union();
        }
        case PPXQ_JOB_LIST:
            return ppxq::CreateJobList(fbb).Union();
        case PPXQ_JOB_STATUS:
            return ppxq::CreateJobStatus(fbb, fbb.CreateString(nz(m->job_id))).Union();
        case PPXQ_JOB_CANCEL:
            return ppxq::CreateJobCancel(fbb, fbb.CreateString(nz(m->job_id))).Union();
        case PPXQ_JOB_WAIT: {
            auto id = fbb.CreateString(nz(m->job_id));
            return ppxq::CreateJobWait(fbb, id, m->max_seconds).Union();
        }
        case PPXQ_JOB_REPLY: {
            std::vector<flatbuffers::Offset<ppxq::JobInfo>> v;
            v.reserve(m->n_jobs);
            for (uint32_t i = 0; i < m->n_jobs; i++) v.push_back(put_job(fbb, m->jobs[i]));
            auto vec = fbb.CreateVector(v);
            return ppxq::CreateJobReply(fbb, vec).Union();
        }
        case PPXQ_JOB_FETCH: {
            auto id = fbb.CreateString(nz(m->job_id));
            auto out = fbb.CreateString(nz(m->output));
            return ppxq::CreateJobFetch(fbb, id, out, m->offset, m->max_bytes).Union();
        }
        case PPXQ_JOB_FETCH_REPLY: {
            auto out = fbb.CreateString(nz(m->output));
            auto data = fbb.CreateVector<uint8_t>(m->n_data ? m->data : nullptr, m->n_data);
            return ppxq::CreateJobFetchReply(fbb, out, m->size, m->offset, data).Union();
        }
        case PPXQ_SIM_LIST:
            return ppxq::CreateSimList(fbb).Union();
        case PPXQ_SIM_LIST_REPLY: {
            std::vector<flatbuffers::Offset<ppxq::SimPool>> v;
            v.reserve(m->n_pools);
            for (uint32_t i = 0; i < m->n_pools; i++) {
                const ppxq_sim_pool &p = m->pools[i];
                auto model = fbb.CreateString(nz(p.model));
                v.push_back(ppxq::CreateSimPool(fbb, model, p.connected, p.busy, p.joined, p.left));
            }
            auto vec = fbb.CreateVector(v);
            return ppxq::CreateSimListReply(fbb, vec).Union();
        }
        case PPXQ_LOG_RATIO: {
            auto model = fbb.CreateString(nz(m->model));
            auto x = put_matrix(fbb, m->observations);
            auto t0 = put_matrix(fbb, m->thetas);
            auto t1 = put_matrix(fbb, m->thetas1);
            return ppxq::CreateLogRatio(fbb, model, x, t0, t1).Union();
        }
        case PPXQ_LOG_RATIO_REPLY: {
            auto lr = fbb.CreateVector<double>(m->n_log_prob ? m->log_prob : nullptr, m->n_log_prob);
            return ppxq::CreateLogRatioReply(fbb, lr).Union();
        }
        case PPXQ_SCORE: {
            auto model = fbb.CreateString(nz(m->model));
            auto x = put_matrix(fbb, m->observations);
            auto th = put_matrix(fbb, m->thetas);
            return ppxq::CreateScore(fbb, model, x, th).Union();
        }
        case PPXQ_SCORE_REPLY:
            return ppxq::CreateScoreReply(fbb, put_matrix(fbb, m->score)).Union();
        default:
            return 0;
    }
}

}  // namespace

struct ppxq_encoder {
    Fbb fbb{1024};
};

// ---- C API ------------------------------------------------------------------

extern "C" {

const char *ppxq_type_name(ppxq_type t) {
    const int i = as_int(t);
    return (i >= 0 && i < PPXQ_TYPE_COUNT) ? kTypeNames[i] : "Unknown";
}

const char *ppxq_code_name(ppxq_code c) {
    const int i = as_int(c);
    return (i >= 0 && i < PPXQ_CODE_COUNT) ? kCodeNames[i] : "UNKNOWN";
}

void ppxq_msg_init(ppxq_msg *m) {
    if (!m) return;
    std::memset(static_cast<void *>(m), 0, sizeof *m);
    m->type = PPXQ_NONE;
    m->version = PPXQ_PROTOCOL_VERSION;
    m->model = m->path = m->name = m->message = kEmpty;
    m->job_id = m->sim_model = m->output = kEmpty;
    m->status.version = kEmpty;
    m->normalise = 1;
    m->code = PPXQ_OK;
}

void ppxq_msg_clear(ppxq_msg *m) {
    if (!m) return;
    std::free(m->owned_);
    delete static_cast<Arena *>(m->arena_);
    ppxq_msg_init(m);
}

ppxq_result ppxq_decode(const void *buf, size_t len, size_t max_bytes, ppxq_msg *out, int *verified,
                        ppxq_error *err) {
    if (err) {
        err->code = PPXQ_R_OK;
        err->message[0] = '\0';
    }
    if (verified) *verified = 0;
    if (!out) return fail(err, PPXQ_R_ARG, "ppxq_decode: out is NULL");
    ppxq_msg_clear(out);
    out->version = 0;
    ppxq_result r;
    try {
        r = decode_impl(buf, len, max_bytes ? max_bytes : PPXQ_DEFAULT_MAX_BYTES, out, verified, err);
    } catch (const std::bad_alloc &) {
        r = fail(err, PPXQ_R_NOMEM, "out of memory while decoding");
    } catch (...) {
        r = fail(err, PPXQ_R_VERIFY, "unexpected exception while decoding");
    }
    if (r != PPXQ_R_OK) {
        uint32_t v = out->version;
        uint64_t id = out->request_id;
        ppxq_msg_clear(out);
        out->version = v;
        out->request_id = id;
    }
    return r;
}

ppxq_encoder *ppxq_encoder_new(void) {
    try {
        return new ppxq_encoder();
    } catch (...) {
        return nullptr;
    }
}

void ppxq_encoder_destroy(ppxq_encoder **e) {
    if (!e) return;
    delete *e;
    *e = nullptr;
}

const uint8_t *ppxq_encode(ppxq_encoder *e, const ppxq_msg *m, size_t *len, ppxq_error *err) {
    if (err) {
        err->code = PPXQ_R_OK;
        err->message[0] = '\0';
    }
    if (len) *len = 0;
    if (!e || !m || !len) {
        fail(err, PPXQ_R_ARG, "ppxq_encode: %s is NULL", !e ? "encoder" : !m ? "message" : "len");
        return nullptr;
    }
    if (validate(m, err) != PPXQ_R_OK) return nullptr;
    try {
        Fbb &fbb = e->fbb;
        fbb.Clear();
        auto body = put_body(fbb, m);
        auto root = ppxq::CreateEnvelope(fbb, m->version, m->request_id, static_cast<ppxq::Body>(as_int(m->type)),
                                         body);
        fbb.Finish(root, ppxq::EnvelopeIdentifier());
        *len = fbb.GetSize();
        return fbb.GetBufferPointer();
    } catch (const std::bad_alloc &) {
        e->fbb.Clear();
        fail(err, PPXQ_R_NOMEM, "out of memory while encoding a %s message", kTypeNames[as_int(m->type)]);
        return nullptr;
    } catch (...) {
        e->fbb.Clear();
        fail(err, PPXQ_R_NOMEM, "unexpected exception while encoding");
        return nullptr;
    }
}

const uint8_t *ppxq_encode_error(ppxq_encoder *e, uint64_t request_id, ppxq_code code, const char *message,
                                 size_t *len) {
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.type = PPXQ_ERROR;
    m.request_id = request_id;
    m.code = code;
    m.message = message;
    return ppxq_encode(e, &m, len, nullptr);
}

}  // extern "C"
