/* sim_hang — the Gaussian model that hangs (sleeps forever) in the middle of
 * every 3rd trace of the process, after its Sample was answered: only the
 * engine's per-message timeout gets it out.  usage: sim_hang ENDPOINT */
#include <math.h>
#include <unistd.h>
#include "ppx_sim.h"

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double mu = ppx_sample_normal(sim, 1.0, sqrt(5.0), "mu", "mu");
    if ((ppx_sim_runs(sim) + 1) % 3 == 0)
        for (;;) sleep(1);
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, "obs0", "obs0");
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, "obs1", "obs1");
    ppx_set_result(sim, &mu, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("Gaussian, hangs mid-trace every 3rd run", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
