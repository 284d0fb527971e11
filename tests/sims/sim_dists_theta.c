/* sim_dists_theta — one draw of each distribution but Uniform with
 * parameters smooth in theta (theta ~ Uniform(0.5, 1.5), named "theta"), the
 * parameterisation shared with tests/test_mine.c (gold_dists_params), each
 * value tagged x_00 .. x_09 so the test can recompute the joint log ratio
 * and score from closed forms.  Uniform is left out on purpose: its
 * support moves with theta (sim_support covers that).
 *   --tangents       each draw also sends its parameter tangent
 *                    (d params / d theta, ppx_set_tangent)
 *   --skip-tangent I but not draw I (so analytic mining must refuse the row)
 *   --observe        the draws are Observes named x_00 .. x_09 without value
 *                    (ppxd draws them) instead of tagged Samples
 * usage: sim_dists_theta [OPTIONS] ENDPOINT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ppx_sim.h"
#include "sim_dists_theta.h"

typedef struct opts {
    int tangents, skip, observe;
} opts;

static void forward(ppx_sim *sim, void *user)
{
    const opts *o = user;
    const double theta = ppx_sample_uniform(sim, 0.5, 1.5, "theta", "theta");
    for (int i = 0; i < GD_N; i++) {
        double p0, p1, w[3], d0, d1, dw[3];
        dist_kind kind = gd_params_d(i, theta, &p0, &p1, w, &d0, &d1, dw);
        char name[16];
        snprintf(name, sizeof name, "x_%02d", i);
        if (o->tangents && i != o->skip) {
            /* D = 1: one derivative per parameter element; a parameter that
             * does not move with theta sends none (len 0). */
            if (kind == DIST_CATEGORICAL) ppx_set_tangent(sim, dw, 3, NULL, 0);
            else ppx_set_tangent(sim, &d0, d0 != 0 ? 1 : 0, &d1, d1 != 0 ? 1 : 0);
        }
        if (o->observe) {
            dist d;
            char why[100];
            if (kind == DIST_CATEGORICAL) dist_init(&d, kind, w, 3, NULL, 0, 3, why, sizeof why);
            else dist_init(&d, kind, &p0, 1, &p1, dist_nparams(kind) == 2 ? 1 : 0, 0, why, sizeof why);
            ppx_observe(sim, &d, NULL, gd_address(i), name);
            continue;
        }
        double v = kind == DIST_CATEGORICAL ? ppx_sample_categorical(sim, w, 3, gd_address(i), "")
                                            : ppx_sample_scalar(sim, kind, p0, p1, gd_address(i), "");
        ppx_tag_scalar(sim, v, gd_address(i), name);
    }
    ppx_set_result(sim, &theta, 1);
}

int main(int argc, char **argv)
{
    opts o = {0, -1, 0};
    char *prog = argv[0];
    while (argc > 1 && strncmp(argv[1], "--", 2) == 0 && strcmp(argv[1], "--local") != 0 &&
           strcmp(argv[1], "--connect-to") != 0) {
        if (strcmp(argv[1], "--tangents") == 0) {
            o.tangents = 1;
        } else if (strcmp(argv[1], "--observe") == 0) {
            o.observe = 1;
        } else if (strcmp(argv[1], "--skip-tangent") == 0 && argc > 2) {
            o.skip = atoi(argv[2]);
            argv++;
            argc--;
        } else {
            fprintf(stderr, "sim_dists_theta: unknown option %s\n", argv[1]);
            return 2;
        }
        argv++;
        argc--;
    }
    argv[0] = prog;
    ppx_sim *sim = ppx_sim_new("every distribution, smooth in theta", forward, &o);
    if (!sim) return 1;
    const char *theta[1] = {"theta"};
    if (o.tangents && ppx_declare_theta(sim, theta, 1, 0) < 0) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
