/* gaussian_linear — the sbibm "gaussian_linear" task (Lueckmann et al. 2021)
 * as a PPX simulator, for training amortized posteriors (ppxd train):
 *     theta_j ~ Normal(0, sqrt(0.1))          j = 0..9   (variance 0.1)
 *     x_j     ~ Normal(theta_j, sqrt(0.1))    observed, value from the engine
 * The exact posterior is Normal(x / 2, sqrt(0.05)) per dimension.
 * Observes carry no value: in training mode ppxd draws x from the
 * distribution, i.e. simulates; at inference time it supplies x_o. */
#include <math.h>
#include <stdio.h>
#include "ppx_sim.h"

#define GL_DIM 10

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    const double sd = sqrt(0.1);
    double theta[GL_DIM];
    char name[32];
    for (int j = 0; j < GL_DIM; j++) {
        snprintf(name, sizeof name, "theta_%d", j);
        theta[j] = ppx_sample_normal(sim, 0.0, sd, name, name);
    }
    for (int j = 0; j < GL_DIM; j++) {
        snprintf(name, sizeof name, "x_%d", j);
        ppx_observe_scalar(sim, DIST_NORMAL, theta[j], sd, NULL, name, name);
    }
    ppx_set_result(sim, theta, GL_DIM);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("sbibm gaussian_linear (D = 10)", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
