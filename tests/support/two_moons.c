/* two_moons.c — see two_moons.h. */
#include "two_moons.h"

#include <math.h>

void tk_two_moons(rng *r, const double *th, double *x)
{
    const double half_pi = 1.57079632679489661923;
    double a = -half_pi + 2 * half_pi * rng_uniform(r), rad = 0.1 + 0.01 * rng_normal(r);
    x[0] = rad * cos(a) + 0.25 - fabs(th[0] + th[1]) / sqrt(2.0);
    x[1] = rad * sin(a) + (-th[0] + th[1]) / sqrt(2.0);
}
