/* sim_support — a theta-dependent support: theta ~ Uniform(0.5, 1.5)
 * (named "theta"), z ~ Uniform(0, theta), x = z tagged "x".  Replayed at a
 * smaller theta some z leave the support; the score is undefined for every
 * row (the bound moves with theta).  Gold mining must report both.
 * usage: sim_support ENDPOINT */
#include "ppx_sim.h"

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double theta = ppx_sample_uniform(sim, 0.5, 1.5, "theta", "theta");
    double z = ppx_sample_uniform(sim, 0.0, theta, "z", "");
    ppx_tag_scalar(sim, z, "x", "x");
    ppx_set_result(sim, &z, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("theta-dependent support", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
