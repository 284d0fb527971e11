/* The all_dists model with observes added: one draw of each of the 11 PPX
 * distributions (as all_dists) and, for each, an observation
 * y_<name> ~ Normal(value, s) named after it, so that every latent has an
 * informative posterior (inference-compilation tests).  The result is the 11
 * values in wire-tag order. */
#include <stdio.h>
#include "ppx_sim.h"

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    static const double probs[4] = {1.0, 2.0, 3.0, 4.0};
    static const char *names[11] = {"y_normal", "y_uniform", "y_categorical", "y_poisson", "y_bernoulli", "y_beta",
                                    "y_exponential", "y_gamma", "y_lognormal", "y_binomial", "y_weibull"};
    /* observation noise: about the prior's standard deviation */
    static const double noise[11] = {2.0, 1.0, 1.0, 1.5, 0.5, 0.15, 0.6, 0.4, 0.5, 1.5, 0.8};
    double v[11];
    v[0] = ppx_sample_normal(sim, 1.0, 2.0, "normal", "normal");
    v[1] = ppx_sample_uniform(sim, -1.0, 3.0, "uniform", "uniform");
    v[2] = ppx_sample_categorical(sim, probs, 4, "categorical", "categorical");
    v[3] = ppx_sample_poisson(sim, 3.5, "poisson", "poisson");
    v[4] = ppx_sample_bernoulli(sim, 0.3, "bernoulli", "bernoulli");
    v[5] = ppx_sample_beta(sim, 2.0, 5.0, "beta", "beta");
    v[6] = ppx_sample_exponential(sim, 1.5, "exponential", "exponential");
    v[7] = ppx_sample_gamma(sim, 2.0, 3.0, "gamma", "gamma");
    v[8] = ppx_sample_lognormal(sim, 0.5, 0.25, "lognormal", "lognormal");
    v[9] = ppx_sample_binomial(sim, 10.0, 0.4, "binomial", "binomial");
    v[10] = ppx_sample_weibull(sim, 2.0, 1.5, "weibull", "weibull");
    for (int i = 0; i < 11; i++) ppx_observe_scalar(sim, DIST_NORMAL, v[i], noise[i], NULL, names[i], names[i]);
    ppx_set_result(sim, v, 11);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("One draw of each distribution, each observed with noise", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
