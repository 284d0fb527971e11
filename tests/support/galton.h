/* galton.h — test set-up for the Galton board (clients/examples/galton),
 * shared by the gold-mining, gold-estimator and diagnose tests: the exact
 * oracle and mining through the launched example.
 *
 * Oracle: a dynamic programme over (row, position) carrying p(pos | theta)
 * and d p / d theta, so p(x | theta), log r(x | theta0, theta1) and the
 * score t(x | theta) = d log p(x | theta) / d theta are exact.  The board
 * has TK_GALTON_NPOS end positions x = 0..30; theta ~ U(-1, 1). */
#ifndef PPX_TESTKIT_GALTON_H
#define PPX_TESTKIT_GALTON_H

#include <stdint.h>
#include "gold/gold_data.h"
#include "mine.h"

#define TK_GALTON_NPOS 31

/* p [NPOS] = p(x | theta), dp [NPOS] = d p(x | theta) / d theta. */
void tk_galton_exact(double theta, double p[TK_GALTON_NPOS], double dp[TK_GALTON_NPOS]);

/* Mine n rows of "theta" -> "x" from 2 launched galton simulators (seed 5;
 * score: with the joint score): mode MINE_THETA_GRID puts theta0 on 101 points in
 * [-1, 0], MINE_THETA_FIXED at th0, MINE_THETA_PRIOR draws it from the
 * simulator's prior; with_th1: reference theta1 = -0.6 and rows alternating
 * y = 0, 1.  0, or -1 (reason on stderr); free g with gold_data_free. */
int tk_galton_mine(mine_theta_mode mode, double th0, int with_th1, int score, uint64_t n, gold_data *g);

#endif
