/* gold_score.h — the joint score from parameter tangents.
 *
 * A simulator may send with each draw the tangent d params / d theta (the
 * Tangent extension of protocol/ppx.fbs, kept in trace_entry.tangent): the
 * derivative of the distribution's parameters with respect to the
 * parameters of interest, every earlier draw held fixed.  Then
 *   t(x,z|theta) = sum_i sum_j d log p_i(z_i | params_i) / d param_ij
 *                              x d param_ij / d theta
 * over every Sample and Observe of the trace except the theta Samples
 * themselves, with d log p / d params in closed form (dist_grad_log_prob).
 * This is the quantity `ppxd mine` otherwise gets by central finite
 * differences of replays, without the 2 D replays and without their
 * truncation error.
 *
 * Ownership: reads the trace only; nothing is kept.
 */
#ifndef PPX_GOLD_SCORE_H
#define PPX_GOLD_SCORE_H

#include <stddef.h>
#include "gold/gold_data.h"
#include "trace.h"

/* score[0..D) = t(x,z|theta) of trace t for the theta Samples named
 * theta[0..D) (matched with the tangents' theta names by name; a tangent may
 * name more).  0, or -1 with *reason and a sentence in why:
 *   GOLD_BAD_NO_TANGENT     a draw came without a tangent, or its tangent
 *                           does not name one of the theta;
 *   GOLD_BAD_THETA_SUPPORT  a Uniform bound or a Binomial count moves with
 *                           theta (the support moves: no score);
 *   GOLD_BAD_SUPPORT        a value outside its support (log p = -inf);
 *   GOLD_BAD_PARAMS         parameters dist_init refuses, or a tangent whose
 *                           length does not fit its parameter;
 *   GOLD_BAD_NONFINITE      a NaN log-probability or a non-finite score. */
int gold_tangent_score(const trace *t, const char *const *theta, size_t D, double *score, gold_bad *reason,
                       char *why, size_t why_len);

/* 1 when e is a Sample named as one of theta[0..D). */
int gold_entry_is_theta(const trace_entry *e, const char *const *theta, size_t D);

/* 1 when e enters the joint sums (the joint log-prob, log r and the score):
 * a Sample or Observe with a distribution that is not a theta Sample.
 * `ppxd mine` (server/mine.c) and gold_tangent_score agree on this set. */
int gold_entry_in_joint(const trace_entry *e, const char *const *theta, size_t D);

/* 1 when every Sample and Observe of t but the theta Samples carries a
 * tangent (so gold_tangent_score is worth trying). */
int gold_trace_has_tangents(const trace *t, const char *const *theta, size_t D);

#endif
