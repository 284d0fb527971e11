/* sim_support — a theta-dependent support: theta ~ Uniform(0.5, 1.5)
 * (named "theta"), z ~ Uniform(0, theta), x = z tagged "x".  Replayed at a
 * smaller theta some z leave the support; the score is undefined for every
 * row (the bound moves with theta).  Gold mining must report both.
 * With --tangents, z's draw sends d high / d theta = 1 (so analytic mining,
 * which replays nothing for the score, must see the moving bound there).
 * usage: sim_support [--tangents] ENDPOINT */
#include <string.h>
#include "ppx_sim.h"

static void forward(ppx_sim *sim, void *user)
{
    const int tangents = *(const int *)user;
    double theta = ppx_sample_uniform(sim, 0.5, 1.5, "theta", "theta");
    if (tangents) ppx_set_tangent_scalar(sim, 0.0, 1.0);
    double z = ppx_sample_uniform(sim, 0.0, theta, "z", "");
    ppx_tag_scalar(sim, z, "x", "x");
    ppx_set_result(sim, &z, 1);
}

int main(int argc, char **argv)
{
    int tangents = argc > 1 && strcmp(argv[1], "--tangents") == 0;
    if (tangents) {
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    ppx_sim *sim = ppx_sim_new("theta-dependent support", forward, &tangents);
    if (!sim) return 1;
    const char *theta[1] = {"theta"};
    if (tangents && ppx_declare_theta(sim, theta, 1, 0) < 0) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
