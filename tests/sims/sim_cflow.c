/* sim_cflow — a simulator whose control flow depends on theta directly:
 * theta ~ Uniform(-1, 1) (named "theta"); when theta > 0 it makes an extra
 * Normal draw at its own address, so a replay at a theta of the other sign
 * reaches a different address sequence.  x ~ Normal(theta, 1), tagged "x".
 * Gold mining must drop such rows as control-flow changes.
 * usage: sim_cflow ENDPOINT */
#include "ppx_sim.h"

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double theta = ppx_sample_uniform(sim, -1.0, 1.0, "theta", "theta");
    double shift = 0.0;
    if (theta > 0) shift = ppx_sample_normal(sim, 0.0, 0.1, "extra", "");
    double x = ppx_sample_normal(sim, theta + shift, 1.0, "x", "");
    ppx_tag_scalar(sim, x, "x", "x");
    ppx_set_result(sim, &x, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("control flow on theta", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
