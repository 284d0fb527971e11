/* Generalized Galton board (../shared/spec/goldmining.md): 20 rows, 31 nails,
 * the ball starts at pos 15.  theta ~ Uniform(-1, 1) (named "theta", so an
 * engine can fix it).  On row `level`, P(left) = (1 - sin(pi l))/2 +
 * sin(pi l) * sigmoid(10 theta n) with l = level/19, n = 2 pos/30 - 1; each
 * decision is a Bernoulli draw (left = 1).  Even rows: left -> pos,
 * right -> pos + 1; odd rows: left -> pos - 1, right -> pos.  x = final pos,
 * tagged "x" and returned.
 *
 * usage: galton [--tangents] ENDPOINT [MAX_RUNS] | galton --local [N [SEED]]
 * With --tangents each decision also sends d P(left) / d theta =
 * sin(pi l) s (1 - s) 10 n (s the sigmoid, pos -- the earlier draws -- held
 * fixed) through ppx_set_tangent_scalar, so that `ppxd mine --score
 * analytic` needs no finite-difference replays. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ppx_sim.h"

#define GALTON_ROWS 20

static void forward(ppx_sim *sim, void *user)
{
    const int tangents = *(const int *)user;
    const double pi = 3.14159265358979323846;
    double theta = ppx_sample_uniform(sim, -1.0, 1.0, "theta", "theta");
    int pos = 15;
    for (int level = 0; level < GALTON_ROWS; level++) {
        double l = level / 19.0, n = 2.0 * pos / 30.0 - 1.0;
        double sig = 1.0 / (1.0 + exp(-10.0 * theta * n));
        double p_left = (1.0 - sin(pi * l)) / 2.0 + sin(pi * l) * sig;
        if (tangents) ppx_set_tangent_scalar(sim, sin(pi * l) * sig * (1.0 - sig) * 10.0 * n, 0.0);
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
    int tangents = argc > 1 && strcmp(argv[1], "--tangents") == 0;
    if (tangents) {
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    ppx_sim *sim = ppx_sim_new("Generalized Galton board", forward, &tangents);
    if (!sim) return 1;
    const char *theta[1] = {"theta"};
    if (tangents && ppx_declare_theta(sim, theta, 1, 0) < 0) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
