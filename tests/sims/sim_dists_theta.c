/* sim_dists_theta — one draw of each distribution but Uniform with
 * parameters smooth in theta (theta ~ Uniform(0.5, 1.5), named "theta"), the
 * parameterisation shared with tests/test_mine.c (gold_dists_params), each
 * value tagged x_00 .. x_09 so the test can recompute the joint log ratio
 * and score from closed forms.  Uniform is left out on purpose: its
 * support moves with theta (sim_support covers that).
 * usage: sim_dists_theta ENDPOINT */
#include <stdio.h>
#include "ppx_sim.h"
#include "sim_dists_theta.h"

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    const double theta = ppx_sample_uniform(sim, 0.5, 1.5, "theta", "theta");
    for (int i = 0; i < GD_N; i++) {
        double p0, p1, w[3];
        dist_kind kind = gd_params(i, theta, &p0, &p1, w);
        double v = kind == DIST_CATEGORICAL ? ppx_sample_categorical(sim, w, 3, gd_address(i), "")
                                            : ppx_sample_scalar(sim, kind, p0, p1, gd_address(i), "");
        char name[16];
        snprintf(name, sizeof name, "x_%02d", i);
        ppx_tag_scalar(sim, v, gd_address(i), name);
    }
    ppx_set_result(sim, &theta, 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("every distribution, smooth in theta", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
