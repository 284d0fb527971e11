/* ic_lstm.c — LSTM cell (see ic_lstm.h). */
#include "ic/ic_lstm.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "nn/simd.h"

/* The gates' nonlinearities through simd_tanh (src/nn/simd.h, <= 3 ulp),
 * vectorised over a row: sigmoid(v) = (1 + tanh(v / 2)) / 2, exactly in real
 * arithmetic; in float its error is a few ulps of 1/2, about 1e-7 absolute,
 * which an LSTM's gates do not notice, at a fraction of libm's expf/tanhf. */
void ic_lstm_activate(float *h, float *c, float *gates, float *tc, const float *c_prev, int B, int H)
{
    for (int r = 0; r < B; r++) {
        float *g = gates + (size_t)r * 4 * H;
        float *ig = g, *fg = g + H, *gg = g + 2 * H, *og = g + 3 * H;
        for (int j = 0; j < H; j++) {
            ig[j] *= 0.5f;
            fg[j] *= 0.5f;
            og[j] *= 0.5f;
        }
        simd_tanh(g, g, (size_t)4 * H);
        float *cr = c + (size_t)r * H, *tr = tc + (size_t)r * H, *hr = h + (size_t)r * H;
        const float *cp = c_prev + (size_t)r * H;
        for (int j = 0; j < H; j++) {
            ig[j] = 0.5f * ig[j] + 0.5f;
            fg[j] = 0.5f * fg[j] + 0.5f;
            og[j] = 0.5f * og[j] + 0.5f;
            cr[j] = fg[j] * cp[j] + ig[j] * gg[j];
        }
        simd_tanh(tr, cr, (size_t)H);
        for (int j = 0; j < H; j++) hr[j] = og[j] * tr[j];
    }
}

void ic_lstm_forward(float *h, float *c, float *xh, float *gates, float *tc, const float *x, const float *h_prev,
                     const float *c_prev, const float *w, const float *b, int B, int n_in, int H)
{
    int W = n_in + H;
    for (int r = 0; r < B; r++) {
        memcpy(xh + (size_t)r * W, x + (size_t)r * n_in, (size_t)n_in * sizeof *xh);
        memcpy(xh + (size_t)r * W + n_in, h_prev + (size_t)r * H, (size_t)H * sizeof *xh);
    }
    if (B == 1) {
        /* One row (inference, one simulator's draw): a matrix-vector
         * product, without sgemm's packing overhead. */
        memcpy(gates, b, (size_t)4 * H * sizeof *gates);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, 4 * H, W, 1.0f, w, W, xh, 1, 1.0f, gates, 1);
    } else {
        nn_linear_forward(gates, xh, w, b, B, W, 4 * H);
    }
    ic_lstm_activate(h, c, gates, tc, c_prev, B, H);
}

void ic_lstm_backward(float *dx, float *dh_prev, float *dc_prev, float *dw, float *db, float *scratch,
                      const float *dh, const float *dc, const float *xh, const float *gates, const float *tc,
                      const float *c_prev, const float *w, int B, int n_in, int H)
{
    int W = n_in + H;
    float *dpre = scratch;                     /* [B, 4H] */
    float *dxh = scratch + (size_t)B * 4 * H;  /* [B, W] */
    for (int r = 0; r < B; r++) {
        const float *g = gates + (size_t)r * 4 * H;
        float *d = dpre + (size_t)r * 4 * H;
        for (int j = 0; j < H; j++) {
            size_t q = (size_t)r * H + j;
            float ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j], t = tc[q];
            float dhv = dh[q];
            float dct = (dc ? dc[q] : 0.0f) + dhv * og * (1.0f - t * t);
            d[j] = dct * gg * ig * (1.0f - ig);
            d[H + j] = dct * c_prev[q] * fg * (1.0f - fg);
            d[2 * H + j] = dct * ig * (1.0f - gg * gg);
            d[3 * H + j] = dhv * t * og * (1.0f - og);
            if (dc_prev) dc_prev[q] += dct * fg;
        }
    }
    int want_in = dx || dh_prev;
    if (want_in) memset(dxh, 0, (size_t)B * W * sizeof *dxh);
    nn_linear_backward(want_in ? dxh : NULL, dw, db, dpre, xh, w, B, W, 4 * H);
    if (!want_in) return;
    for (int r = 0; r < B; r++) {
        if (dx)
            for (int j = 0; j < n_in; j++) dx[(size_t)r * n_in + j] += dxh[(size_t)r * W + j];
        if (dh_prev)
            for (int j = 0; j < H; j++) dh_prev[(size_t)r * H + j] += dxh[(size_t)r * W + n_in + j];
    }
}
