/* ic_lstm.h — one LSTM cell step (forward and backward), batch-major float32,
 * for the inference-compilation core (ic.h).  Conventions as nn.h: caller
 * owns every array; backward ACCUMULATES into its gradient outputs; NULL
 * gradient pointers are "not wanted".
 *
 * Shapes, with In the input width and H the hidden width:
 *   x [B, In], h_prev [B, H], c_prev [B, H]
 *   W [4H, In + H] (torch.nn.LSTM's W_ih and W_hh side by side, gate
 *   order i, f, g, o), b [4H]
 *   saved for the backward: xh [B, In + H] (the concatenated input),
 *   gates [B, 4H] (post-activation: sigmoid i, f, o; tanh g), tc [B, H] = tanh(c)
 *   outputs c [B, H], h [B, H]:
 *     c = f * c_prev + i * g,   h = o * tanh(c)
 */
#ifndef PPX_IC_LSTM_H
#define PPX_IC_LSTM_H

void ic_lstm_forward(float *h, float *c, float *xh, float *gates, float *tc, const float *x, const float *h_prev,
                     const float *c_prev, const float *w, const float *b, int B, int n_in, int H);

/* The cell's second half, on gate pre-activations already in gates [B, 4H]
 * (overwritten with the post-activations): c, tc = tanh(c) and h from
 * c_prev.  sigmoid and tanh through src/nn's vectorised tanh (about 1e-7
 * absolute error).  ic_lstm_forward ends with it; inference (ic.c) calls it on gates
 * summed from cached parts. */
void ic_lstm_activate(float *h, float *c, float *gates, float *tc, const float *c_prev, int B, int H);


/* Given dh [B,H] (total gradient into h) and dc [B,H] (gradient into c from
 * the next step; may be NULL = 0): dx [B,In] +=, dh_prev [B,H] +=,
 * dc_prev [B,H] +=, dw [4H, In+H] +=, db [4H] +=.  scratch [B, 4H + In + H]. */
void ic_lstm_backward(float *dx, float *dh_prev, float *dc_prev, float *dw, float *db, float *scratch,
                      const float *dh, const float *dc, const float *xh, const float *gates, const float *tc,
                      const float *c_prev, const float *w, int B, int n_in, int H);

#endif
