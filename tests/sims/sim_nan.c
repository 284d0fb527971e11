/* sim_nan — the Gaussian model on a raw REP socket that, on every 3rd Run of
 * the process, sends a Sample with invalid distribution parameters (cycling
 * through Normal stddev NaN, Normal stddev -1, and a Categorical with no
 * probabilities), then carries on with the trace using whatever value the
 * engine answered.  libppx refuses to send such Samples, hence the raw
 * socket.  The engine must keep the simulator in lockstep, discard those
 * traces (invalid parameters) and need no restart.
 * usage: sim_nan ENDPOINT */
#include "rawsim.h"

static void run(rawsim *s)
{
    if (s->runs % 3 != 0) {
        rs_gaussian_trace(s);
        return;
    }
    double mean = 1.0, sd;
    ppx_msg m;
    switch ((s->runs / 3) % 3) {
    case 1:
        sd = NAN;
        rs_sample_msg(&m, &mean, &sd);
        break;
    case 2:
        sd = -1.0;
        rs_sample_msg(&m, &mean, &sd);
        break;
    default:
        sd = 1.0;
        rs_sample_msg(&m, &mean, &sd);
        m.dist.type = PPX_DIST_CATEGORICAL;
        m.dist.param[0] = ppx_tensor_empty();
        m.dist.param[1] = ppx_tensor_empty();
        break;
    }
    rs_exchange(s, &m, PPX_MSG_SAMPLE_RESULT);
    double mu = s->in.value.len ? s->in.value.data[0] : NAN;
    rs_gaussian_rest(s, mu);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ENDPOINT\n", argv[0]);
        return 2;
    }
    rawsim s;
    rs_open(&s, argv[1]);
    return rs_serve(&s, "Gaussian, invalid parameters every 3rd run", run);
}
