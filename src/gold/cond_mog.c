/* cond_mog.c — autoregressive conditional mixture of Gaussians with a score
 * and its second derivative (see cond_mog.h). */
#include "gold/cond_mog.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double HALF_LOG_2PI = 0.91893853320467274178;

cond_mog *cond_mog_new(int C, int D, int K, int hidden, int layers, int max_batch)
{
    if (C < 1 || D < 1 || K < 1 || K > 1000 || hidden < 1 || layers < 1 || max_batch < 1) {
        fprintf(stderr, "cond_mog_new: bad shape (x %d, theta %d, %d components, %d x %d)\n", C, D, K, layers, hidden);
        return NULL;
    }
    cond_mog *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->C = C;
    m->D = D;
    m->K = K;
    m->hidden = hidden;
    m->layers = layers;
    m->max_batch = max_batch;
    const size_t P = 3 * (size_t)K;
    m->net = calloc(C, sizeof *m->net);
    m->in = calloc((size_t)max_batch * (C + D), sizeof(float));
    m->x = calloc((size_t)max_batch * C, sizeof(double));
    m->lp = calloc(max_batch, sizeof(double));
    m->that = calloc((size_t)max_batch * D, sizeof(double));
    m->g = calloc((size_t)C * max_batch * P, sizeof(double));
    m->gof = calloc((size_t)max_batch * P, sizeof(float));
    m->gtf = calloc((size_t)max_batch * P * D, sizeof(float));
    if (!m->net || !m->in || !m->x || !m->lp || !m->that || !m->g || !m->gof || !m->gtf) goto fail;
    for (int i = 0; i < C; i++)
        if (!(m->net[i] = ratio_net_new(i, D, hidden, layers, (int)P, max_batch))) goto fail;
    return m;
fail:
    cond_mog_destroy(&m);
    return NULL;
}

void cond_mog_destroy(cond_mog **mp)
{
    if (!mp || !*mp) return;
    cond_mog *m = *mp;
    for (int i = 0; m->net && i < m->C; i++) ratio_net_destroy(&m->net[i]);
    free(m->net);
    free(m->in);
    free(m->x);
    free(m->lp);
    free(m->that);
    free(m->g);
    free(m->gof);
    free(m->gtf);
    free(m);
    *mp = NULL;
}

void cond_mog_init(cond_mog *m, rng *r)
{
    const int K = m->K;
    for (int i = 0; i < m->C; i++) {
        mlp *net = m->net[i]->net;
        mlp_init(net, r);
        float *b = net->b[net->n_layers - 1];
        for (int k = 0; k < K; k++) {
            b[K + k] = K > 1 ? (float)(-2.0 + 4.0 * k / (K - 1)) : 0.0f;
            b[2 * K + k] = (float)log(0.5);
        }
    }
}

size_t cond_mog_n_params(const cond_mog *m)
{
    size_t n = 0;
    for (int i = 0; i < m->C; i++) n += m->net[i]->net->n_params;
    return n;
}

void cond_mog_get_params(const cond_mog *m, float *dst)
{
    for (int i = 0; i < m->C; i++) {
        const mlp *net = m->net[i]->net;
        memcpy(dst, net->params, net->n_params * sizeof *dst);
        dst += net->n_params;
    }
}

void cond_mog_set_params(cond_mog *m, const float *src)
{
    for (int i = 0; i < m->C; i++) {
        mlp *net = m->net[i]->net;
        memcpy(net->params, src, net->n_params * sizeof *src);
        src += net->n_params;
    }
}

void cond_mog_get_grads(const cond_mog *m, float *dst)
{
    for (int i = 0; i < m->C; i++) {
        const mlp *net = m->net[i]->net;
        memcpy(dst, net->grads, net->n_params * sizeof *dst);
        dst += net->n_params;
    }
}

void cond_mog_zero_grad(cond_mog *m)
{
    for (int i = 0; i < m->C; i++) mlp_zero_grad(m->net[i]->net);
}

void cond_mog_adam_step(cond_mog *m, const nn_adam_config *cfg, float lr)
{
    for (int i = 0; i < m->C; i++) mlp_adam_step(m->net[i]->net, cfg, lr);
}

/* ---- one conditional ------------------------------------------------------------ */

/* The per-component quantities of one conditional at x: pi, the posterior
 * weights w, z = (x - mu) e, e = exp(-s), and which s are clipped; returns lp. */
static double mix_terms(const float *o, int K, double x, double *pi, double *w, double *z, double *e, int *clip)
{
    double amax = -INFINITY;
    for (int k = 0; k < K; k++) amax = fmax(amax, o[k]);
    double sa = 0;
    for (int k = 0; k < K; k++) sa += exp(o[k] - amax);
    const double A = amax + log(sa);
    double lmax = -INFINITY;
    for (int k = 0; k < K; k++) {
        double s = o[2 * K + k];
        clip[k] = !(s > COND_MOG_S_MIN && s < COND_MOG_S_MAX);
        s = fmin(fmax(s, COND_MOG_S_MIN), COND_MOG_S_MAX);
        pi[k] = exp(o[k] - A);
        e[k] = exp(-s);
        z[k] = (x - o[K + k]) * e[k];
        w[k] = o[k] - A - 0.5 * z[k] * z[k] - s - HALF_LOG_2PI; /* l_k, turned into w below */
        lmax = fmax(lmax, w[k]);
    }
    double sl = 0;
    for (int k = 0; k < K; k++) sl += exp(w[k] - lmax);
    const double lp = lmax + log(sl);
    for (int k = 0; k < K; k++) w[k] = exp(w[k] - lp);
    return lp;
}

#define MIX_STACK 64

double cond_mog_mix_eval(const float *o, int K, double x, double *g)
{
    double sbuf[5 * MIX_STACK];
    int cbuf[MIX_STACK];
    double *buf = K <= MIX_STACK ? sbuf : malloc(5 * (size_t)K * sizeof *buf);
    int *clip = K <= MIX_STACK ? cbuf : malloc((size_t)K * sizeof *clip);
    if (!buf || !clip) abort();
    double *pi = buf, *w = pi + K, *z = w + K, *e = z + K;
    const double lp = mix_terms(o, K, x, pi, w, z, e, clip);
    for (int k = 0; g && k < K; k++) {
        g[k] = w[k] - pi[k];
        g[K + k] = w[k] * z[k] * e[k];
        g[2 * K + k] = clip[k] ? 0 : w[k] * (z[k] * z[k] - 1);
    }
    if (buf != sbuf) free(buf);
    if (clip != cbuf) free(clip);
    return lp;
}

void cond_mog_mix_hvp(const float *o, int K, double x, const double *v, double *hv)
{
    double sbuf[5 * MIX_STACK];
    int cbuf[MIX_STACK];
    double *buf = K <= MIX_STACK ? sbuf : malloc(5 * (size_t)K * sizeof *buf);
    int *clip = K <= MIX_STACK ? cbuf : malloc((size_t)K * sizeof *clip);
    if (!buf || !clip) abort();
    double *pi = buf, *w = pi + K, *z = w + K, *e = z + K, *d = e + K;
    mix_terms(o, K, x, pi, w, z, e, clip);
    /* lp = LSE_k l_k: H v = sum_k w_k (hess l_k) v + sum_k w_k (d_k - dbar) grad l_k, d_k = grad l_k . v */
    double piva = 0;
    for (int k = 0; k < K; k++) piva += pi[k] * v[k];
    double dbar = 0;
    for (int k = 0; k < K; k++) {
        const double vs = clip[k] ? 0 : v[2 * K + k];
        d[k] = v[k] - piva + z[k] * e[k] * v[K + k] + (z[k] * z[k] - 1) * vs;
        dbar += w[k] * d[k];
    }
    for (int k = 0; k < K; k++) {
        const double vs = clip[k] ? 0 : v[2 * K + k], dd = d[k] - dbar, ze = z[k] * e[k];
        hv[k] = -pi[k] * v[k] + pi[k] * piva + w[k] * dd;
        hv[K + k] = w[k] * (-e[k] * e[k] * v[K + k] - 2 * ze * vs + dd * ze);
        hv[2 * K + k] = clip[k] ? 0 : w[k] * (-2 * ze * v[K + k] - 2 * z[k] * z[k] * vs + dd * (z[k] * z[k] - 1));
    }
    if (buf != sbuf) free(buf);
    if (clip != cbuf) free(clip);
}

/* ---- the autoregressive model --------------------------------------------------------- */

/* Input rows [x_<i, theta] of net i. */
static void fill_in(cond_mog *m, int i, const double *x, const double *theta, int B)
{
    const int W = i + m->D;
    for (int b = 0; b < B; b++) {
        float *row = m->in + (size_t)b * W;
        for (int c = 0; c < i; c++) row[c] = (float)x[(size_t)b * m->C + c];
        for (int k = 0; k < m->D; k++) row[i + k] = (float)theta[(size_t)b * m->D + k];
    }
}

int cond_mog_forward(cond_mog *m, const double *x, const double *theta, int B, int tangents)
{
    if (B < 1 || B > m->max_batch) return -1;
    const int C = m->C, D = m->D, P = 3 * m->K;
    memcpy(m->x, x, (size_t)B * C * sizeof *x);
    memset(m->lp, 0, (size_t)B * sizeof *m->lp);
    if (tangents) memset(m->that, 0, (size_t)B * D * sizeof *m->that);
    for (int i = 0; i < C; i++) {
        fill_in(m, i, x, theta, B);
        ratio_net *rn = m->net[i];
        const float *o = tangents ? ratio_net_forward_jvp(rn, m->in, B) : mlp_forward(rn->net, m->in, B);
        if (!o) return -1;
        double *g = m->g + (size_t)i * m->max_batch * P;
        for (int b = 0; b < B; b++) {
            double *gb = g + (size_t)b * P;
            m->lp[b] += cond_mog_mix_eval(o + (size_t)b * P, m->K, x[(size_t)b * C + i], gb);
            for (int j = 0; tangents && j < P; j++)
                for (int k = 0; k < D; k++)
                    m->that[(size_t)b * D + k] += gb[j] * rn->tdot[((size_t)b * P + j) * D + k];
        }
    }
    m->last_b = B;
    m->last_tangents = tangents;
    return 0;
}

int cond_mog_backward(cond_mog *m, const double *glp, const double *gthat, int B)
{
    if (B != m->last_b || (gthat && !m->last_tangents)) {
        fprintf(stderr, "cond_mog_backward: batch %d (tangents %d) after a forward of %d (tangents %d)\n", B, !!gthat,
                m->last_b, m->last_tangents);
        return -1;
    }
    const int C = m->C, D = m->D, K = m->K, P = 3 * K;
    double *v = malloc((size_t)P * 2 * sizeof *v), *hv = v + P;
    if (!v) return -1;
    int rc = 0;
    for (int i = 0; i < C && rc == 0; i++) {
        ratio_net *rn = m->net[i];
        const float *o = rn->net->pre[rn->net->n_layers - 1];
        const double *g = m->g + (size_t)i * m->max_batch * P;
        for (int b = 0; b < B; b++) {
            const double *gb = g + (size_t)b * P;
            float *go = m->gof + (size_t)b * P;
            for (int j = 0; j < P; j++) go[j] = (float)(glp[b] * gb[j]);
            for (int k = 0; gthat && k < D; k++) {
                const double gt = gthat[(size_t)b * D + k];
                for (int j = 0; j < P; j++) {
                    v[j] = rn->tdot[((size_t)b * P + j) * D + k];
                    m->gtf[((size_t)b * P + j) * D + k] = (float)(gt * gb[j]);
                }
                if (gt == 0) continue;
                cond_mog_mix_hvp(o + (size_t)b * P, K, m->x[(size_t)b * C + i], v, hv);
                for (int j = 0; j < P; j++) go[j] += (float)(gt * hv[j]);
            }
        }
        /* net i's activations are its own: its forward of this batch is still there */
        rc = m->last_tangents ? ratio_net_backward_jvp_all(rn, m->gof, gthat ? m->gtf : NULL, B)
                              : mlp_backward(rn->net, m->gof, NULL, B);
    }
    free(v);
    return rc;
}

int cond_mog_sample(cond_mog *m, const double *theta, int B, rng *r, double *x)
{
    const int C = m->C, K = m->K, P = 3 * K;
    for (int i0 = 0; i0 < B; i0 += m->max_batch) {
        const int n = B - i0 < m->max_batch ? B - i0 : m->max_batch;
        double *xb = x + (size_t)i0 * C;
        for (int i = 0; i < C; i++) {
            fill_in(m, i, xb, theta + (size_t)i0 * m->D, n);
            const float *o = mlp_forward(m->net[i]->net, m->in, n);
            if (!o) return -1;
            for (int b = 0; b < n; b++) {
                const float *ob = o + (size_t)b * P;
                double amax = -INFINITY, s = 0;
                for (int k = 0; k < K; k++) amax = fmax(amax, ob[k]);
                for (int k = 0; k < K; k++) s += exp(ob[k] - amax);
                double u = rng_uniform(r) * s;
                int k = 0;
                for (; k < K - 1; k++) {
                    u -= exp(ob[k] - amax);
                    if (u < 0) break;
                }
                const double sd = exp(fmin(fmax(ob[2 * K + k], COND_MOG_S_MIN), COND_MOG_S_MAX));
                xb[(size_t)b * C + i] = ob[K + k] + sd * rng_normal(r);
            }
        }
    }
    return 0;
}

/* ---- files ------------------------------------------------------------------------------- */

size_t cond_mog_save_size(const cond_mog *m)
{
    size_t n = 0;
    for (int i = 0; i < m->C; i++) n += 8 + mlp_save_size(m->net[i]->net);
    return n;
}

int cond_mog_save(const cond_mog *m, void *blob, size_t cap)
{
    unsigned char *p = blob;
    if (cap < cond_mog_save_size(m)) return -1;
    for (int i = 0; i < m->C; i++) {
        const uint64_t l = mlp_save_size(m->net[i]->net);
        memcpy(p, &l, 8);
        if (mlp_save(m->net[i]->net, p + 8, (size_t)l) < 0) return -1;
        p += 8 + l;
    }
    return 0;
}

int cond_mog_load(cond_mog *m, const void *blob, size_t len)
{
    const unsigned char *p = blob;
    size_t off = 0;
    for (int i = 0; i < m->C; i++) {
        uint64_t l;
        if (len - off < 8) return -1;
        memcpy(&l, p + off, 8);
        off += 8;
        if (l > len - off || mlp_load(m->net[i]->net, p + off, (size_t)l) < 0) return -1;
        off += (size_t)l;
    }
    return off == len ? 0 : -1;
}
