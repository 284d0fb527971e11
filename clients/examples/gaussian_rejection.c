/* Gaussian with unknown mean, mu drawn by a Marsaglia polar rejection loop:
 * a variable number of Uniform draws at one call site (so the engine's
 * address instance counter matters).  mu = 1 + sqrt(5) * u1 * sqrt(-2 ln s / s)
 * with (u1, u2) uniform on the unit disc; same model as gaussian.c. */
#include <math.h>
#include <stdio.h>
#include "ppx_sim.h"

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double u1, u2, s;
    do {
        u1 = ppx_sample_uniform(sim, -1.0, 1.0, PPX_HERE(sim), "");
        u2 = ppx_sample_uniform(sim, -1.0, 1.0, PPX_HERE(sim), "");
        s = u1 * u1 + u2 * u2;
    } while (!(s > 0.0 && s < 1.0));
    double mu = 1.0 + sqrt(5.0) * u1 * sqrt(-2.0 * log(s) / s);
    ppx_tag_scalar(sim, mu, PPX_HERE(sim), "mu");
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, PPX_HERE(sim), "obs0");
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, PPX_HERE(sim), "obs1");
    ppx_set_result(sim, &mu, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("Gaussian with unknown mean (rejection sampling)", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
