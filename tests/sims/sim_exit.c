/* sim_exit — the Gaussian model (clients/examples/gaussian.c) that dies with
 * _exit(3) in the middle of every 5th trace of the process, right after its
 * Sample was answered: the engine must notice the exit, discard the trace
 * and restart the simulator.  usage: sim_exit ENDPOINT */
#include <math.h>
#include <unistd.h>
#include "ppx_sim.h"

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double mu = ppx_sample_normal(sim, 1.0, sqrt(5.0), "mu", "mu");
    if ((ppx_sim_runs(sim) + 1) % 5 == 0) _exit(3);
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, "obs0", "obs0");
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, "obs1", "obs1");
    ppx_set_result(sim, &mu, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("Gaussian, exits mid-trace every 5th run", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
