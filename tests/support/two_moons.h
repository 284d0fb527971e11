/* two_moons.h — sbibm's two_moons simulator, shared by the calibration
 * test and benchmarks (tests/test_diag.c, bench_diag.c, bench_calib.c).
 * theta [2] in the prior's box U(-1, 1)^2; x [2].  Draws two numbers from
 * r (the angle, then the radius), in that order, so that every user sees
 * the same simulations for the same stream. */
#ifndef PPX_TESTKIT_TWO_MOONS_H
#define PPX_TESTKIT_TWO_MOONS_H

#include "rng.h"

void tk_two_moons(rng *r, const double *theta, double *x);

#endif
