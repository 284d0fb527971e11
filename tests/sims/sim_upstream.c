/* sim_upstream — a model written the way upstream PPX programs are (the C++
 * front end names nothing and marks some draws control=false):
 *
 *   a ~ Normal(0, 1)        address "a_site", control = false
 *   b ~ Normal(a, 1)        address "b_site"
 *   x ~ Normal(0, 1), then x ~ Normal(10, 1)   two draws that share one name
 *   y ~ Normal(a + b, 0.5)  observed, address "y_site"
 *   result: a + b
 *
 * With PPX_SIM_NAMES=0 in the environment nothing is named at all (as from
 * pyprob_cpp); otherwise a, b and y carry names too.  Given y, (a, b) has a
 * Gaussian posterior in closed form (tests/test_infer.c).
 * usage: sim_upstream ENDPOINT [MAX_RUNS] */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ppx_sim.h"

/* A Normal(mean, sd) draw with an explicit control flag. */
static double normal(ppx_sim *sim, double mean, double sd, const char *address, const char *name, int control)
{
    dist d;
    char why[80];
    double v = 0;
    if (dist_init(&d, DIST_NORMAL, &mean, 1, &sd, 1, 0, why, sizeof why) < 0) return NAN;
    ppx_sample(sim, &d, address, name, control, &v);
    return v;
}

static void forward(ppx_sim *sim, void *user)
{
    int named = *(const int *)user;
    double a = normal(sim, 0.0, 1.0, "a_site", named ? "a" : "", 0);
    double b = normal(sim, a, 1.0, "b_site", named ? "b" : "", 1);
    if (named) {
        normal(sim, 0.0, 1.0, "x_first", "x", 1);
        normal(sim, 10.0, 1.0, "x_second", "x", 1);
    }
    ppx_observe_scalar(sim, DIST_NORMAL, a + b, 0.5, NULL, "y_site", named ? "y" : "");
    double r = a + b;
    ppx_set_result(sim, &r, 1);
}

int main(int argc, char **argv)
{
    const char *env = getenv("PPX_SIM_NAMES");
    int named = !(env && strcmp(env, "0") == 0);
    ppx_sim *sim = ppx_sim_new("upstream-style: control=false, unnamed, repeated names", forward, &named);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
