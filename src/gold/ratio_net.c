/* ratio_net.c — tanh MLP with a tangent forward and its backward (see ratio_net.h). */
#include "gold/ratio_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int max_width(const mlp *net)
{
    int w = 0;
    for (int l = 0; l <= net->n_layers; l++)
        if (net->dims[l] > w) w = net->dims[l];
    return w;
}

ratio_net *ratio_net_new(int C, int D, int hidden, int n_hidden, int out, int max_batch)
{
    if (C < 0 || D < 1 || hidden < 1 || n_hidden < 1 || out < 1 || max_batch < 1) {
        fprintf(stderr, "ratio_net_new: bad shape (C %d, D %d, hidden %d x %d, out %d)\n", C, D, hidden, n_hidden, out);
        return NULL;
    }
    ratio_net *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    mlp_config cfg = {.in = C + D, .hidden = hidden, .n_hidden_layers = n_hidden, .out = out, .act = NN_ACT_TANH};
    r->net = mlp_new(&cfg, max_batch);
    r->C = C;
    r->D = D;
    r->max_batch = max_batch;
    if (!r->net) goto fail;
    const int L = r->net->n_layers, mw = max_width(r->net);
    size_t per_k = 0;
    for (int l = 0; l < L; l++) per_k += (size_t)max_batch * r->net->dims[l + 1] * (l < L - 1 ? 2 : 1);
    r->tan_buf = calloc(per_k * D, sizeof(float));
    r->adot = calloc(D, sizeof *r->adot);
    r->hdot = calloc(D, sizeof *r->hdot);
    r->tdot = calloc((size_t)max_batch * out * D, sizeof(float));
    r->scratch = calloc((size_t)(2 + 2 * D) * max_batch * mw, sizeof(float));
    if (!r->tan_buf || !r->adot || !r->hdot || !r->tdot || !r->scratch) goto fail;
    float *p = r->tan_buf;
    for (int k = 0; k < D; k++) {
        r->adot[k] = calloc(L, sizeof(float *));
        r->hdot[k] = calloc(L, sizeof(float *));
        if (!r->adot[k] || !r->hdot[k]) goto fail;
        for (int l = 0; l < L; l++) {
            r->adot[k][l] = p;
            p += (size_t)max_batch * r->net->dims[l + 1];
            if (l < L - 1) {
                r->hdot[k][l] = p;
                p += (size_t)max_batch * r->net->dims[l + 1];
            }
        }
    }
    return r;
fail:
    ratio_net_destroy(&r);
    return NULL;
}

void ratio_net_destroy(ratio_net **rp)
{
    if (!rp || !*rp) return;
    ratio_net *r = *rp;
    for (int k = 0; k < r->D; k++) {
        if (r->adot) free(r->adot[k]);
        if (r->hdot) free(r->hdot[k]);
    }
    free(r->adot);
    free(r->hdot);
    free(r->tan_buf);
    free(r->tdot);
    free(r->scratch);
    mlp_destroy(&r->net);
    free(r);
    *rp = NULL;
}

const float *ratio_net_forward_jvp(ratio_net *r, const float *inp, int B)
{
    mlp *net = r->net;
    const float *f = mlp_forward(net, inp, B);
    if (!f) return NULL;
    const int L = net->n_layers, in = net->dims[0], out = net->dims[L];
    for (int k = 0; k < r->D; k++) {
        for (int l = 0; l < L; l++) {
            const int fi = net->dims[l], fo = net->dims[l + 1];
            float *ad = r->adot[k][l];
            if (l == 0) {
                /* the input tangent e_{C+k}: column C+k of W_0, the same in every row */
                for (int j = 0; j < fo; j++) ad[j] = net->w[0][(size_t)j * in + r->C + k];
                for (int b = 1; b < B; b++) memcpy(ad + (size_t)b * fo, ad, fo * sizeof *ad);
            } else {
                nn_linear_forward(ad, r->hdot[k][l - 1], net->w[l], NULL, B, fi, fo);
            }
            if (l < L - 1) {
                const float *h = net->post[l];
                float *hd = r->hdot[k][l];
                for (size_t i = 0; i < (size_t)B * fo; i++) hd[i] = (1.0f - h[i] * h[i]) * ad[i];
            }
        }
        for (int b = 0; b < B; b++)
            for (int j = 0; j < out; j++)
                r->tdot[((size_t)b * out + j) * r->D + k] = r->adot[k][L - 1][(size_t)b * out + j];
    }
    r->last_b = B;
    return f;
}

int ratio_net_backward_jvp(ratio_net *r, const float *g, const float *gt, int B)
{
    if (r->net->dims[r->net->n_layers] != 1) {
        fprintf(stderr, "ratio_net_backward_jvp: %d outputs: use ratio_net_backward_jvp_all\n", r->net->dims[r->net->n_layers]);
        return -1;
    }
    return ratio_net_backward_jvp_all(r, g, gt, B);
}

int ratio_net_backward_jvp_all(ratio_net *r, const float *g, const float *gt, int B)
{
    mlp *net = r->net;
    if (B != r->last_b || B != net->last_b) {
        fprintf(stderr, "ratio_net_backward_jvp_all: batch %d, last forward %d\n", B, r->last_b);
        return -1;
    }
    const int L = net->n_layers, D = r->D, out = net->dims[L];
    const size_t chunk = (size_t)r->max_batch * max_width(net);
    float *da = r->scratch, *dh = da + chunk;
    float *dad = dh + chunk;          /* D chunks: tangent adjoints at the pre-activations */
    float *dhd = dad + D * chunk;     /* D chunks: at the tangent of the post-activations */
    memcpy(da, g, (size_t)B * out * sizeof *da);
    for (int k = 0; k < D; k++) {
        nn_zero(dad + k * chunk, (size_t)B * out);
        for (int b = 0; gt && b < B; b++)
            for (int j = 0; j < out; j++)
                dad[k * chunk + (size_t)b * out + j] = gt[((size_t)b * out + j) * D + k];
    }
    const int in = net->dims[0];
    for (int l = L - 1; l >= 0; l--) {
        const int fi = net->dims[l], fo = net->dims[l + 1];
        const float *in_l = l == 0 ? net->x : net->post[l - 1];
        if (l > 0) nn_zero(dh, (size_t)B * fi);
        nn_linear_backward(l > 0 ? dh : NULL, net->dw[l], net->db[l], da, in_l, net->w[l], B, fi, fo);
        for (int k = 0; gt && k < D; k++) {
            float *dk = dad + k * chunk;
            if (l > 0) {
                nn_zero(dhd + k * chunk, (size_t)B * fi);
                nn_linear_backward(dhd + k * chunk, net->dw[l], NULL, dk, r->hdot[k][l - 1], net->w[l], B, fi, fo);
            } else {
                /* adot_0 = column C+k of W_0 in every row */
                for (int j = 0; j < fo; j++) {
                    float s = 0;
                    for (int b = 0; b < B; b++) s += dk[(size_t)b * fo + j];
                    net->dw[0][(size_t)j * in + r->C + k] += s;
                }
            }
        }
        if (l == 0) break;
        /* through h = tanh(a) of layer l-1 and hdot = (1 - h^2) adot */
        const float *h = net->post[l - 1];
        for (size_t i = 0; i < (size_t)B * fi; i++) {
            const float s = 1.0f - h[i] * h[i];
            float acc = dh[i];
            for (int k = 0; gt && k < D; k++) {
                const float dk = dhd[k * chunk + i];
                acc += dk * (-2.0f * h[i] * r->adot[k][l - 1][i]);
                dad[k * chunk + i] = s * dk;
            }
            da[i] = s * acc;
        }
    }
    return 0;
}
