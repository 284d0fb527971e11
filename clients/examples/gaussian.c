/* Gaussian with unknown mean: mu ~ Normal(1, sqrt 5); obs0, obs1 ~ Normal(mu, sqrt 2).
 * The observations' values come from the engine (conditioning).  With
 * obs0 = 8, obs1 = 9 the posterior is Normal(7.25, 0.9129). */
#include <math.h>
#include <stdio.h>
#include "ppx_sim.h"

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double mu = ppx_sample_normal(sim, 1.0, sqrt(5.0), "mu", "mu");
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, "obs0", "obs0");
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, "obs1", "obs1");
    ppx_set_result(sim, &mu, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("Gaussian with unknown mean", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
