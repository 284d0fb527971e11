/* Branching Poisson model: r ~ Poisson(4); if r > 4 then l = 6, else
 * l = 1 + fib(3 r) + s with s ~ Poisson(4); obs ~ Poisson(l) observed.
 * The number of draws depends on r (control flow changes between traces). */
#include <stdio.h>
#include "ppx_sim.h"

static double fib(int n)
{
    double a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        double c = a + b;
        a = b;
        b = c;
    }
    return a;
}

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double r = ppx_sample_poisson(sim, 4.0, "r", "r");
    double l;
    if (r > 4.0) {
        l = 6.0;
    } else {
        double s = ppx_sample_poisson(sim, 4.0, "s", "s");
        l = 1.0 + fib((int)(3.0 * r)) + s;
    }
    ppx_observe_scalar(sim, DIST_POISSON, l, 0.0, NULL, "obs", "obs");
    ppx_set_result(sim, &r, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("Branching Poisson", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
