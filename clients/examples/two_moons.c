/* two_moons — the sbibm "two_moons" task (Greenberg et al. 2019; Lueckmann
 * et al. 2021) as a PPX simulator, for training amortized posteriors:
 *     theta_0, theta_1 ~ Uniform(-1, 1)
 *     a ~ Uniform(-pi/2, pi/2),  r ~ Normal(0.1, 0.01)      (latent)
 *     p = (r cos a + 0.25, r sin a)
 *     x = p + (-|theta_0 + theta_1| / sqrt 2, (-theta_0 + theta_1) / sqrt 2)
 * x_0 and x_1 are Observe statements without values (the engine draws them in
 * training mode).  PPX observes need a distribution, and x is a
 * deterministic function of (theta, a, r) whose density has no closed form
 * as a product of PPX distributions, so each x_j is observed as
 * Normal(x_j, TM_OBS_SD): the engine's draw adds noise of sd 1e-6, four
 * orders of magnitude below the posterior's width (~0.01-0.1) and below
 * what a float32 network resolves after z-scoring.  The posterior is bimodal
 * (two crescents). */
#include <math.h>
#include "ppx_sim.h"

#define TM_OBS_SD 1e-6

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double theta[2];
    theta[0] = ppx_sample_uniform(sim, -1.0, 1.0, "theta_0", "theta_0");
    theta[1] = ppx_sample_uniform(sim, -1.0, 1.0, "theta_1", "theta_1");
    const double half_pi = 1.57079632679489661923;
    double a = ppx_sample_uniform(sim, -half_pi, half_pi, "a", "a");
    double r = ppx_sample_normal(sim, 0.1, 0.01, "r", "r");
    double p0 = r * cos(a) + 0.25, p1 = r * sin(a);
    double x0 = p0 - fabs(theta[0] + theta[1]) / sqrt(2.0);
    double x1 = p1 + (-theta[0] + theta[1]) / sqrt(2.0);
    ppx_observe_scalar(sim, DIST_NORMAL, x0, TM_OBS_SD, NULL, "x_0", "x_0");
    ppx_observe_scalar(sim, DIST_NORMAL, x1, TM_OBS_SD, NULL, "x_1", "x_1");
    ppx_set_result(sim, theta, 2);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("sbibm two_moons", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
