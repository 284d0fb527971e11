/* model_file.c — versioned, checksummed model files (format in model_file.h). */
#include "model_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "trace_store.h"

#define PREAMBLE 24
/* Sanity bounds for a payload we are asked to trust only after its checksum:
 * they keep a hostile but well-checksummed file from requesting absurd
 * allocations. */
#define MAX_DIM 100000
#define MAX_NAME 4096
#define MAX_SOURCE (1u << 20)
#define MAX_PARAMS ((uint64_t)1 << 31)

const char *model_kind_name(model_kind k)
{
    switch (k) {
    case MODEL_NPE_MAF: return "NPE-MAF";
    case MODEL_NPE_NSF: return "NPE-NSF";
    case MODEL_NRE: return "NRE";
    case MODEL_IC: return "IC";
    }
    return "?";
}

static int kind_valid(uint32_t k)
{
    return k == MODEL_NPE_MAF || k == MODEL_NPE_NSF || k == MODEL_NRE;
}

/* ---- construction ------------------------------------------------------------ */

model_file *model_file_new(model_kind kind, int dim, int context)
{
    if (!kind_valid((uint32_t)kind) || dim < 1 || dim > MAX_DIM || context < 1 || context > MAX_DIM) return NULL;
    model_file *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->kind = kind;
    m->dim = dim;
    m->context = context;
    m->bnre_lambda = 0.0;
    m->theta_mean = calloc((size_t)dim, sizeof(double));
    m->theta_std = calloc((size_t)dim, sizeof(double));
    m->x_mean = calloc((size_t)context, sizeof(double));
    m->x_std = calloc((size_t)context, sizeof(double));
    m->theta_tf = calloc((size_t)dim, sizeof *m->theta_tf); /* TF_NONE is 0 */
    m->x_tf = calloc((size_t)context, sizeof *m->x_tf);
    m->theta_names = calloc((size_t)dim, sizeof(char *));
    m->x_names = calloc((size_t)context, sizeof(char *));
    m->prior = prior_new(dim);
    m->prov.created = (int64_t)time(NULL);
    m->prov.source = strdup("");
    if (!m->theta_mean || !m->theta_std || !m->x_mean || !m->x_std || !m->theta_tf || !m->x_tf || !m->theta_names ||
        !m->x_names ||
        !m->prior || !m->prov.source)
        goto fail;
    for (int j = 0; j < dim; j++) {
        char nm[32];
        m->theta_std[j] = 1.0;
        snprintf(nm, sizeof nm, "theta_%d", j);
        if (!(m->theta_names[j] = strdup(nm))) goto fail;
    }
    for (int j = 0; j < context; j++) {
        char nm[32];
        m->x_std[j] = 1.0;
        snprintf(nm, sizeof nm, "x_%d", j);
        if (!(m->x_names[j] = strdup(nm))) goto fail;
    }
    return m;
fail:
    model_file_destroy(&m);
    return NULL;
}

void model_file_destroy(model_file **pm)
{
    if (!pm || !*pm) return;
    model_file *m = *pm;
    if (m->theta_names)
        for (int j = 0; j < m->dim; j++) free(m->theta_names[j]);
    if (m->x_names)
        for (int j = 0; j < m->context; j++) free(m->x_names[j]);
    free(m->theta_names);
    free(m->x_names);
    free(m->theta_mean);
    free(m->theta_std);
    free(m->x_mean);
    free(m->x_std);
    free(m->theta_tf);
    free(m->x_tf);
    prior_destroy(&m->prior);
    free(m->prov.source);
    free(m->params);
    free(m);
    *pm = NULL;
}

static int set_str(char **dst, const char *s)
{
    char *c = strdup(s ? s : "");
    if (!c) return -1;
    free(*dst);
    *dst = c;
    return 0;
}

int model_file_set_prior(model_file *m, const prior *p)
{
    if (!p || p->dim != m->dim) return -1;
    prior *c = prior_copy(p);
    if (!c) return -1;
    prior_destroy(&m->prior);
    m->prior = c;
    return 0;
}

int model_file_set_theta_name(model_file *m, int j, const char *name)
{
    if (j < 0 || j >= m->dim) return -1;
    return set_str(&m->theta_names[j], name);
}

int model_file_set_x_name(model_file *m, int j, const char *name)
{
    if (j < 0 || j >= m->context) return -1;
    return set_str(&m->x_names[j], name);
}

int model_file_set_source(model_file *m, const char *source)
{
    return set_str(&m->prov.source, source);
}

int model_file_set_params(model_file *m, const float *params, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return -1;
    if (n) memcpy(p, params, n * sizeof *p);
    free(m->params);
    m->params = p;
    m->n_params = n;
    return 0;
}

model_file *model_file_copy(const model_file *m)
{
    model_file *c = model_file_new(m->kind, m->dim, m->context);
    if (!c) return NULL;
    c->flow = m->flow;
    c->net = m->net;
    c->bnre_lambda = m->bnre_lambda;
    memcpy(c->theta_mean, m->theta_mean, (size_t)m->dim * sizeof(double));
    memcpy(c->theta_std, m->theta_std, (size_t)m->dim * sizeof(double));
    memcpy(c->x_mean, m->x_mean, (size_t)m->context * sizeof(double));
    memcpy(c->x_std, m->x_std, (size_t)m->context * sizeof(double));
    memcpy(c->theta_tf, m->theta_tf, (size_t)m->dim * sizeof *m->theta_tf);
    memcpy(c->x_tf, m->x_tf, (size_t)m->context * sizeof *m->x_tf);
    char *src = c->prov.source;
    c->prov = m->prov;
    c->prov.source = src;
    int bad = model_file_set_prior(c, m->prior) < 0 || model_file_set_source(c, m->prov.source) < 0 ||
              model_file_set_params(c, m->params, m->n_params) < 0;
    for (int j = 0; j < m->dim && !bad; j++) bad = model_file_set_theta_name(c, j, m->theta_names[j]) < 0;
    for (int j = 0; j < m->context && !bad; j++) bad = model_file_set_x_name(c, j, m->x_names[j]) < 0;
    if (bad) model_file_destroy(&c);
    return c;
}

/* ---- encoding ------------------------------------------------------------------ */

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    int oom;
} wbuf;

static void w_bytes(wbuf *w, const void *src, size_t n)
{
    if (w->oom) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) cap *= 2;
        unsigned char *np = realloc(w->p, cap);
        if (!np) {
            w->oom = 1;
            return;
        }
        w->p = np;
        w->cap = cap;
    }
    if (n) memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put_le(unsigned char *dst, uint64_t v, int nbytes)
{
    for (int i = 0; i < nbytes; i++) dst[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *src, int nbytes)
{
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++) v |= (uint64_t)src[i] << (8 * i);
    return v;
}

static void w_u32(wbuf *w, uint32_t v)
{
    unsigned char b[4];
    put_le(b, v, 4);
    w_bytes(w, b, 4);
}

static void w_u64(wbuf *w, uint64_t v)
{
    unsigned char b[8];
    put_le(b, v, 8);
    w_bytes(w, b, 8);
}

static void w_f64(wbuf *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    w_u64(w, v);
}

static void w_f32(wbuf *w, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    w_u32(w, v);
}

static void w_str(wbuf *w, const char *s)
{
    size_t n = strlen(s ? s : "");
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n);
}

int model_file_encode(const model_file *m, unsigned char **out, size_t *out_len, char *err, size_t err_len)
{
    if (!m->params && m->n_params) {
        snprintf(err, err_len, "model has no parameters");
        return -1;
    }
    wbuf w = {0};
    unsigned char pre[PREAMBLE] = {0};
    w_bytes(&w, pre, PREAMBLE); /* filled in below */
    w_u32(&w, (uint32_t)m->kind);
    w_u32(&w, (uint32_t)m->dim);
    w_u32(&w, (uint32_t)m->context);
    if (m->kind == MODEL_NRE) {
        w_u32(&w, (uint32_t)m->net.in);
        w_u32(&w, (uint32_t)m->net.hidden);
        w_u32(&w, (uint32_t)m->net.n_blocks);
        w_u32(&w, (uint32_t)m->net.out);
        w_u32(&w, (uint32_t)m->net.act);
        w_f64(&w, m->bnre_lambda);
    } else {
        w_u32(&w, (uint32_t)m->flow.kind);
        w_u32(&w, (uint32_t)m->flow.dim);
        w_u32(&w, (uint32_t)m->flow.context);
        w_u32(&w, (uint32_t)m->flow.n_transforms);
        w_u32(&w, (uint32_t)m->flow.hidden);
        w_u32(&w, (uint32_t)m->flow.n_blocks);
        w_u32(&w, (uint32_t)m->flow.act);
        w_u32(&w, (uint32_t)m->flow.n_bins);
        w_u32(&w, (uint32_t)m->flow.autoregressive);
        w_f32(&w, m->flow.tail_bound);
    }
    for (int j = 0; j < m->dim; j++) w_f64(&w, m->theta_mean[j]);
    for (int j = 0; j < m->dim; j++) w_f64(&w, m->theta_std[j]);
    for (int j = 0; j < m->context; j++) w_f64(&w, m->x_mean[j]);
    for (int j = 0; j < m->context; j++) w_f64(&w, m->x_std[j]);
    for (int j = 0; j < m->dim; j++) {
        w_u32(&w, (uint32_t)m->prior->d[j].kind);
        w_f64(&w, m->prior->d[j].p0);
        w_f64(&w, m->prior->d[j].p1);
    }
    w_u32(&w, (uint32_t)m->prior->n_mvn);
    for (int b = 0; b < m->prior->n_mvn; b++) {
        const prior_mvn *mv = &m->prior->mvn[b];
        w_u32(&w, (uint32_t)mv->j0);
        w_u32(&w, (uint32_t)mv->k);
        for (int i = 0; i < mv->k; i++) w_f64(&w, mv->mean[i]);
        for (int i = 0; i < mv->k * mv->k; i++) w_f64(&w, mv->cov[i]);
    }
    for (int side = 0; side < 2; side++) {
        const tf_dim *t = side ? m->x_tf : m->theta_tf;
        for (int j = 0; j < (side ? m->context : m->dim); j++) {
            w_u32(&w, (uint32_t)t[j].kind);
            w_f64(&w, t[j].lo);
            w_f64(&w, t[j].hi);
        }
    }
    for (int j = 0; j < m->dim; j++) w_str(&w, m->theta_names[j]);
    for (int j = 0; j < m->context; j++) w_str(&w, m->x_names[j]);
    const model_provenance *pv = &m->prov;
    w_u64(&w, (uint64_t)pv->created);
    w_u64(&w, pv->n_simulations);
    w_u64(&w, pv->n_dropped);
    w_u64(&w, pv->n_train);
    w_u64(&w, pv->n_val);
    w_u32(&w, pv->epochs);
    w_u32(&w, pv->best_epoch);
    w_f64(&w, pv->best_val_loss);
    w_f64(&w, pv->train_seconds);
    w_u64(&w, pv->seed);
    w_str(&w, pv->source);
    w_u64(&w, (uint64_t)m->n_params);
    for (size_t i = 0; i < m->n_params; i++) w_f32(&w, m->params[i]);
    w_u32(&w, 0); /* room for the checksum */
    if (w.oom) {
        free(w.p);
        snprintf(err, err_len, "out of memory encoding the model");
        return -1;
    }
    memcpy(w.p, MODEL_FILE_MAGIC, 8);
    put_le(w.p + 8, MODEL_FILE_VERSION, 4);
    put_le(w.p + 12, 0, 4);
    put_le(w.p + 16, (uint64_t)(w.len - PREAMBLE - 4), 8);
    put_le(w.p + w.len - 4, trace_crc32c(0, w.p, w.len - 4), 4);
    *out = w.p;
    *out_len = w.len;
    return 0;
}

/* ---- decoding ------------------------------------------------------------------- */

typedef struct rbuf {
    const unsigned char *p;
    size_t len, pos;
    int bad; /* ran past the end */
} rbuf;

static const unsigned char *r_take(rbuf *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint32_t r_u32(rbuf *r)
{
    const unsigned char *p = r_take(r, 4);
    return p ? (uint32_t)get_le(p, 4) : 0;
}

static uint64_t r_u64(rbuf *r)
{
    const unsigned char *p = r_take(r, 8);
    return p ? get_le(p, 8) : 0;
}

static double r_f64(rbuf *r)
{
    uint64_t v = r_u64(r);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static float r_f32(rbuf *r)
{
    uint32_t v = r_u32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* A string of at most max bytes, malloc'd; NULL (r->bad set) on failure. */
static char *r_str(rbuf *r, uint32_t max)
{
    uint32_t n = r_u32(r);
    if (n > max) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = r_take(r, n);
    if (!p) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) {
        r->bad = 1;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = 0;
    if (strlen(s) != n) { /* embedded NUL: not a name we wrote */
        free(s);
        r->bad = 1;
        return NULL;
    }
    return s;
}

static int positive_finite_all(const double *v, int n)
{
    for (int j = 0; j < n; j++)
        if (!(v[j] > 0.0) || !isfinite(v[j])) return 0;
    return 1;
}

static int finite_all(const double *v, int n)
{
    for (int j = 0; j < n; j++)
        if (!isfinite(v[j])) return 0;
    return 1;
}

model_file *model_file_decode(const unsigned char *buf, size_t len, char *err, size_t err_len)
{
    if (len < 8 || memcmp(buf, MODEL_FILE_MAGIC, 8) != 0) {
        snprintf(err, err_len, "not a ppxd model file (bad magic)");
        return NULL;
    }
    if (len < PREAMBLE + 4) {
        snprintf(err, err_len, "truncated model file: %zu bytes, shorter than the %d-byte header and checksum", len,
                 PREAMBLE + 4);
        return NULL;
    }
    uint32_t version = (uint32_t)get_le(buf + 8, 4);
    uint64_t plen = get_le(buf + 16, 8);
    if (plen > len - PREAMBLE - 4) {
        snprintf(err, err_len, "truncated model file: %zu bytes, the header announces %llu", len,
                 (unsigned long long)plen + PREAMBLE + 4);
        return NULL;
    }
    if (plen < len - PREAMBLE - 4) {
        snprintf(err, err_len, "corrupted model file: %zu bytes, the header announces %llu (trailing garbage or "
                 "a damaged length field)", len, (unsigned long long)plen + PREAMBLE + 4);
        return NULL;
    }
    uint32_t crc = (uint32_t)get_le(buf + len - 4, 4);
    uint32_t want = trace_crc32c(0, buf, len - 4);
    if (crc != want) {
        snprintf(err, err_len, "corrupted model file: checksum mismatch (stored %08x, computed %08x)", crc, want);
        return NULL;
    }
    if (version < MODEL_FILE_MIN_VERSION || version > MODEL_FILE_VERSION) {
        snprintf(err, err_len, "model file format version %u; this ppxd reads versions %u to %u (retrain, or use the "
                 "ppxd that wrote it)", version, MODEL_FILE_MIN_VERSION, MODEL_FILE_VERSION);
        return NULL;
    }
    rbuf r = {buf + PREAMBLE, (size_t)plen, 0, 0};
    const char *what = "header";
    model_file *m = NULL;
    uint32_t kind = r_u32(&r), dim = r_u32(&r), ctx = r_u32(&r);
    if (!r.bad && kind == MODEL_IC) {
        snprintf(err, err_len, "an inference-compilation (IC) model: use it with ppxd infer --method ic --model FILE");
        return NULL;
    }
    if (r.bad || !kind_valid(kind) || dim < 1 || dim > MAX_DIM || ctx < 1 || ctx > MAX_DIM) {
        what = "kind or sizes";
        goto bad;
    }
    m = model_file_new((model_kind)kind, (int)dim, (int)ctx);
    if (!m) {
        snprintf(err, err_len, "out of memory loading the model");
        return NULL;
    }
    what = "network config";
    if (kind == MODEL_NRE) {
        m->net.in = (int)r_u32(&r);
        m->net.hidden = (int)r_u32(&r);
        m->net.n_blocks = (int)r_u32(&r);
        m->net.out = (int)r_u32(&r);
        m->net.act = (nn_act)r_u32(&r);
        m->bnre_lambda = r_f64(&r);
        if (r.bad || m->net.in != (int)(dim + ctx) || m->net.out != 1 || m->net.hidden < 1 || m->net.n_blocks < 0 ||
            (int)m->net.act < 0 || m->net.act >= NN_ACT_COUNT || !(m->bnre_lambda >= 0.0))
            goto bad;
    } else {
        m->flow.kind = (flow_kind)r_u32(&r);
        m->flow.dim = (int)r_u32(&r);
        m->flow.context = (int)r_u32(&r);
        m->flow.n_transforms = (int)r_u32(&r);
        m->flow.hidden = (int)r_u32(&r);
        m->flow.n_blocks = (int)r_u32(&r);
        m->flow.act = (nn_act)r_u32(&r);
        m->flow.n_bins = (int)r_u32(&r);
        m->flow.autoregressive = (int)r_u32(&r);
        m->flow.tail_bound = r_f32(&r);
        int want_kind = kind == MODEL_NPE_MAF ? FLOW_MAF : FLOW_NSF;
        if (r.bad || (int)m->flow.kind != want_kind || m->flow.dim != (int)dim || m->flow.context != (int)ctx ||
            (int)m->flow.act < 0 || m->flow.act >= NN_ACT_COUNT)
            goto bad;
    }
    what = "z-score constants";
    for (uint32_t j = 0; j < dim; j++) m->theta_mean[j] = r_f64(&r);
    for (uint32_t j = 0; j < dim; j++) m->theta_std[j] = r_f64(&r);
    for (uint32_t j = 0; j < ctx; j++) m->x_mean[j] = r_f64(&r);
    for (uint32_t j = 0; j < ctx; j++) m->x_std[j] = r_f64(&r);
    if (r.bad || !finite_all(m->theta_mean, (int)dim) || !finite_all(m->x_mean, (int)ctx) ||
        !positive_finite_all(m->theta_std, (int)dim) || !positive_finite_all(m->x_std, (int)ctx))
        goto bad;
    what = "prior";
    for (uint32_t j = 0; j < dim; j++) {
        uint32_t k = r_u32(&r);
        double p0 = r_f64(&r), p1 = r_f64(&r);
        char why[256];
        if (r.bad || k >= DIST_KIND_COUNT || prior_set(m->prior, (int)j, (dist_kind)k, p0, p1, why, sizeof why) < 0)
            goto bad;
    }
    if (version >= 2) {
        what = "multivariate normal prior";
        uint32_t nb = r_u32(&r);
        if (r.bad || nb > dim) goto bad;
        for (uint32_t b = 0; b < nb; b++) {
            uint32_t j0 = r_u32(&r), k = r_u32(&r);
            if (r.bad || k < 1 || k > PRIOR_MAX_MVN || j0 >= dim || k > dim - j0 ||
                (uint64_t)k * (k + 1) * 8 > r.len - r.pos)
                goto bad;
            double *v = malloc((size_t)k * (k + 1) * sizeof *v);
            if (!v) {
                snprintf(err, err_len, "out of memory loading the model");
                model_file_destroy(&m);
                return NULL;
            }
            for (uint32_t i = 0; i < k * (k + 1); i++) v[i] = r_f64(&r);
            char why[256];
            /* The dimensions were read as their marginals: make them free
             * for the block again. */
            int ok = 1;
            for (uint32_t i = 0; i < k && ok; i++) ok = m->prior->d[j0 + i].kind == DIST_NORMAL && !m->prior->d[j0 + i].block;
            int rc = ok ? prior_set_mvn(m->prior, (int)j0, (int)k, v, v + k, why, sizeof why) : -1;
            free(v);
            if (rc < 0) goto bad;
        }
        what = "transforms";
        for (int side = 0; side < 2; side++) {
            tf_dim *t = side ? m->x_tf : m->theta_tf;
            for (uint32_t j = 0; j < (side ? ctx : dim); j++) {
                uint32_t k = r_u32(&r);
                t[j].lo = r_f64(&r);
                t[j].hi = r_f64(&r);
                t[j].kind = k < TF_KIND_COUNT ? (tf_kind)k : TF_NONE;
                if (r.bad || k >= TF_KIND_COUNT || !tf_valid(&t[j])) goto bad;
            }
        }
    }
    what = "names";
    for (uint32_t j = 0; j < dim; j++) {
        char *s = r_str(&r, MAX_NAME);
        if (!s) goto bad;
        free(m->theta_names[j]);
        m->theta_names[j] = s;
    }
    for (uint32_t j = 0; j < ctx; j++) {
        char *s = r_str(&r, MAX_NAME);
        if (!s) goto bad;
        free(m->x_names[j]);
        m->x_names[j] = s;
    }
    what = "provenance";
    m->prov.created = (int64_t)r_u64(&r);
    m->prov.n_simulations = r_u64(&r);
    m->prov.n_dropped = r_u64(&r);
    m->prov.n_train = r_u64(&r);
    m->prov.n_val = r_u64(&r);
    m->prov.epochs = r_u32(&r);
    m->prov.best_epoch = r_u32(&r);
    m->prov.best_val_loss = r_f64(&r);
    m->prov.train_seconds = r_f64(&r);
    m->prov.seed = r_u64(&r);
    {
        char *s = r_str(&r, MAX_SOURCE);
        if (!s) goto bad;
        free(m->prov.source);
        m->prov.source = s;
    }
    what = "parameters";
    {
        uint64_t np = r_u64(&r);
        if (r.bad || np > MAX_PARAMS || np * 4 != r.len - r.pos) goto bad;
        m->params = malloc((size_t)(np ? np : 1) * sizeof(float));
        if (!m->params) {
            snprintf(err, err_len, "out of memory loading %llu parameters", (unsigned long long)np);
            model_file_destroy(&m);
            return NULL;
        }
        m->n_params = (size_t)np;
        for (uint64_t i = 0; i < np; i++) m->params[i] = r_f32(&r);
        for (uint64_t i = 0; i < np; i++)
            if (!isfinite(m->params[i])) goto bad;
    }
    if (r.bad || r.pos != r.len) goto bad;
    return m;
bad:
    snprintf(err, err_len, "invalid model file: bad %s in a payload with a valid checksum (written by an "
             "incompatible or faulty writer)", what);
    model_file_destroy(&m);
    return NULL;
}

/* ---- files ------------------------------------------------------------------------- */

int model_file_save(const model_file *m, const char *path, char *err, size_t err_len)
{
    unsigned char *buf;
    size_t len;
    if (model_file_encode(m, &buf, &len, err, err_len) < 0) return -1;
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp) {
        free(buf);
        snprintf(err, err_len, "%s: out of memory", path);
        return -1;
    }
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = -1;
    if (!f) {
        snprintf(err, err_len, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    size_t wr = fwrite(buf, 1, len, f);
    int werr = ferror(f);
    /* Flush to disk before the rename, so a crash leaves the old file or the
     * whole new one. */
    int fl = fflush(f);
    int sy = fl == 0 ? fsync(fileno(f)) : -1;
    int cl = fclose(f);
    if (wr != len || werr || fl || sy || cl) {
        snprintf(err, err_len, "%s: write failed: %s", tmp, strerror(errno ? errno : EIO));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) < 0) {
        snprintf(err, err_len, "%s: cannot rename into place: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    free(buf);
    return rc;
}

model_file *model_file_load(const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            unsigned char *nb = realloc(buf, nc);
            if (!nb) {
                snprintf(err, err_len, "%s: out of memory", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        snprintf(err, err_len, "%s: read error: %s", path, strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    char why[400];
    model_file *m = model_file_decode(buf, len, why, sizeof why);
    if (!m) snprintf(err, err_len, "%s: %s", path, why);
    free(buf);
    return m;
}

void model_file_print(const model_file *m, void *file)
{
    FILE *f = file;
    fprintf(f, "kind            %s\n", model_kind_name(m->kind));
    fprintf(f, "theta           %d:", m->dim);
    for (int j = 0; j < m->dim; j++) fprintf(f, " %s", m->theta_names[j]);
    fprintf(f, "\nx               %d:", m->context);
    for (int j = 0; j < m->context; j++) fprintf(f, " %s", m->x_names[j]);
    char pb[1024];
    prior_format(m->prior, pb, sizeof pb);
    fprintf(f, "\nprior           %s%s\n", pb, strlen(pb) >= sizeof pb - 1 ? "..." : "");
    if (m->kind == MODEL_NRE)
        fprintf(f, "network         resmlp in %d, hidden %d, %d blocks, %s; BNRE lambda %g\n", m->net.in,
                m->net.hidden, m->net.n_blocks, nn_act_name(m->net.act), m->bnre_lambda);
    else
        fprintf(f, "flow            %s, %d transforms, hidden %d, %d blocks, %s%s", m->flow.kind == FLOW_MAF ? "MAF" : "NSF",
                m->flow.n_transforms, m->flow.hidden, m->flow.n_blocks, nn_act_name(m->flow.act),
                m->flow.kind == FLOW_NSF ? "" : "\n");
    if (m->kind == MODEL_NPE_NSF)
        fprintf(f, ", %d bins, tail bound %g, %s\n", m->flow.n_bins, (double)m->flow.tail_bound,
                m->flow.autoregressive ? "autoregressive" : "coupling");
    for (int side = 0; side < 2; side++) {
        const tf_dim *t = side ? m->x_tf : m->theta_tf;
        int n = side ? m->context : m->dim;
        fprintf(f, "%s", side ? "x transform     " : "theta transform ");
        if (!tf_any(t, n)) {
            fprintf(f, "none\n");
            continue;
        }
        for (int j = 0; j < n; j++) {
            if (t[j].kind == TF_LOGIT) fprintf(f, "%slogit(%g, %g)", j ? " " : "", t[j].lo, t[j].hi);
            else if (t[j].kind != TF_NONE && t[j].lo != 0) fprintf(f, "%s%s(x - %g)", j ? " " : "", tf_kind_name(t[j].kind), t[j].lo);
            else fprintf(f, "%s%s", j ? " " : "", tf_kind_name(t[j].kind));
        }
        fprintf(f, "\n");
    }
    fprintf(f, "parameters      %zu\n", m->n_params);
    char date[64] = "?";
    time_t t = (time_t)m->prov.created;
    struct tm tmv;
    if (gmtime_r(&t, &tmv)) strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    fprintf(f, "trained         %s, %.1f s, seed %llu\n", date, m->prov.train_seconds,
            (unsigned long long)m->prov.seed);
    fprintf(f, "simulations     %llu (%llu dropped as non-finite; %llu train, %llu validation)\n",
            (unsigned long long)m->prov.n_simulations, (unsigned long long)m->prov.n_dropped,
            (unsigned long long)m->prov.n_train, (unsigned long long)m->prov.n_val);
    fprintf(f, "epochs          %u (best %u, validation loss %.6g)\n", m->prov.epochs, m->prov.best_epoch,
            m->prov.best_val_loss);
    fprintf(f, "source          %s\n", m->prov.source);
}
