/* sim_dists_theta.h — the parameters of sim_dists_theta's draws as functions
 * of theta, and their derivatives, shared by the simulator and the test. */
#ifndef PPX_SIM_DISTS_THETA_H
#define PPX_SIM_DISTS_THETA_H

#include "dist.h"

#define GD_N 10

static inline const char *gd_address(int i)
{
    static const char *a[GD_N] = {"normal", "beta", "exponential", "gamma", "lognormal",
                                  "weibull", "poisson", "bernoulli", "binomial", "categorical"};
    return a[i];
}

/* Draw i's kind and parameters at theta (w: Categorical weights [3]);
 * d0, d1, dw (if non-NULL) get d/dtheta of them. */
static inline dist_kind gd_params_d(int i, double th, double *p0, double *p1, double *w, double *d0, double *d1,
                                    double *dw)
{
    double z0 = 0, z1 = 0, zw[3] = {0, 0, 0};
    dist_kind k = DIST_NONE;
    *p1 = 0;
    switch (i) {
    case 0: k = DIST_NORMAL; *p0 = th; *p1 = 1 + th; z0 = 1; z1 = 1; break;
    case 1: k = DIST_BETA; *p0 = 1 + th; *p1 = 2; z0 = 1; break;
    case 2: k = DIST_EXPONENTIAL; *p0 = th; z0 = 1; break;
    case 3: k = DIST_GAMMA; *p0 = th + 1; *p1 = 2 * th; z0 = 1; z1 = 2; break;
    case 4: k = DIST_LOGNORMAL; *p0 = th; *p1 = 0.5 * th; z0 = 1; z1 = 0.5; break;
    case 5: k = DIST_WEIBULL; *p0 = th; *p1 = 1 + th; z0 = 1; z1 = 1; break;
    case 6: k = DIST_POISSON; *p0 = 3 * th; z0 = 3; break;
    case 7: k = DIST_BERNOULLI; *p0 = th / 2; z0 = 0.5; break;
    case 8: k = DIST_BINOMIAL; *p0 = 10; *p1 = th / 2; z1 = 0.5; break;
    default:
        k = DIST_CATEGORICAL;
        w[0] = th; w[1] = 1; w[2] = 2 - th;
        zw[0] = 1; zw[2] = -1;
        *p0 = 0;
        break;
    }
    if (d0) *d0 = z0;
    if (d1) *d1 = z1;
    if (dw) for (int j = 0; j < 3; j++) dw[j] = zw[j];
    return k;
}

static inline dist_kind gd_params(int i, double th, double *p0, double *p1, double *w)
{
    return gd_params_d(i, th, p0, p1, w, NULL, NULL, NULL);
}

#endif
