/* Generalized Galton board (../shared/spec/goldmining.md): 20 rows, 31 nails,
 * the ball starts at pos 15.  theta ~ Uniform(-1, 1) (named "theta", so an
 * engine can fix it).  On row `level`, P(left) = (1 - sin(pi l))/2 +
 * sin(pi l) * sigmoid(10 theta n) with l = level/19, n = 2 pos/30 - 1; each
 * decision is a Bernoulli draw (left = 1).  Even rows: left -> pos,
 * right -> pos + 1; odd rows: left -> pos - 1, right -> pos.  x = final pos,
 * tagged "x" and returned. */
#include <math.h>
#include <stdio.h>
#include "ppx_sim.h"

#define GALTON_ROWS 20

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    const double pi = 3.14159265358979323846;
    double theta = ppx_sample_uniform(sim, -1.0, 1.0, "theta", "theta");
    int pos = 15;
    for (int level = 0; level < GALTON_ROWS; level++) {
        double l = level / 19.0, n = 2.0 * pos / 30.0 - 1.0;
        double sig = 1.0 / (1.0 + exp(-10.0 * theta * n));
        double p_left = (1.0 - sin(pi * l)) / 2.0 + sin(pi * l) * sig;
        if (p_left < 0.0) p_left = 0.0;
        if (p_left > 1.0) p_left = 1.0;
        double left = ppx_sample_bernoulli(sim, p_left, "galton_row", "");
        if (level % 2 == 0)
            pos = left == 1.0 ? pos : pos + 1;
        else
            pos = left == 1.0 ? pos - 1 : pos;
    }
    double x = pos;
    ppx_tag_scalar(sim, x, "x", "x");
    ppx_set_result(sim, &x, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("Generalized Galton board", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
