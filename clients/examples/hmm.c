/* A 3-state hidden Markov model with 16 steps: x0 ~ Categorical(init),
 * x_t ~ Categorical(T[x_{t-1}]), y_t ~ Normal(means[x_t], 1) observed
 * (values from the engine), t = 1..16.  33 statements per trace. */
#include <stdio.h>
#include "ppx_sim.h"

#define HMM_STEPS 16

static const double hmm_init[3] = {1.0, 1.0, 1.0};
static const double hmm_trans[3][3] = {{0.1, 0.5, 0.4}, {0.2, 0.2, 0.6}, {0.15, 0.15, 0.7}};
static const double hmm_means[3] = {-1.0, 1.0, 0.0};

static void forward(ppx_sim *sim, void *user)
{
    (void)user;
    double states[HMM_STEPS + 1];
    char name[16];
    states[0] = ppx_sample_categorical(sim, hmm_init, 3, "x0", "x0");
    for (int t = 1; t <= HMM_STEPS; t++) {
        int prev = (int)states[t - 1];
        if (prev < 0 || prev > 2) prev = 0; /* NaN from a bad engine answer */
        snprintf(name, sizeof name, "x%d", t);
        states[t] = ppx_sample_categorical(sim, hmm_trans[prev], 3, "x", name);
        int st = (int)states[t];
        if (st < 0 || st > 2) st = 0;
        snprintf(name, sizeof name, "y%d", t);
        ppx_observe_scalar(sim, DIST_NORMAL, hmm_means[st], 1.0, NULL, "y", name);
    }
    ppx_set_result(sim, states, HMM_STEPS + 1);
}

int main(int argc, char **argv)
{
    ppx_sim *sim = ppx_sim_new("Hidden Markov model (3 states, 16 steps)", forward, NULL);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
