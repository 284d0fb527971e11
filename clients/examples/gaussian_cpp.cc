// The Gaussian-unknown-mean model from C++: libppx is a plain C ABI, so the
// header is used as is (it carries extern "C").
#include <cmath>
#include "ppx_sim.h"

namespace {
struct model {
    double prior_mean = 1.0;
};

void forward(ppx_sim *sim, void *user)
{
    const model *m = static_cast<const model *>(user);
    double mu = ppx_sample_normal(sim, m->prior_mean, std::sqrt(5.0), "mu", "mu");
    ppx_observe_scalar(sim, DIST_NORMAL, mu, std::sqrt(2.0), nullptr, "obs0", "obs0");
    ppx_observe_scalar(sim, DIST_NORMAL, mu, std::sqrt(2.0), nullptr, "obs1", "obs1");
    ppx_set_result(sim, &mu, 1);
}
} // namespace

int main(int argc, char **argv)
{
    model m;
    ppx_sim *sim = ppx_sim_new("Gaussian with unknown mean (C++)", forward, &m);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
