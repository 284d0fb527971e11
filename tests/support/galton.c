/* galton.c — the Galton board's exact oracle and mining (see galton.h). */
#include "galton.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

void tk_galton_exact(double theta, double p[TK_GALTON_NPOS], double dp[TK_GALTON_NPOS])
{
    enum { N = TK_GALTON_NPOS };
    const double pi = 3.14159265358979323846;
    double P[N] = {0}, dP[N] = {0};
    P[15] = 1;
    for (int level = 0; level < 20; level++) {
        double Q[N] = {0}, dQ[N] = {0};
        const double l = level / 19.0, a = sin(pi * l);
        for (int pos = 0; pos < N; pos++) {
            if (P[pos] == 0 && dP[pos] == 0) continue;
            const double n = 2.0 * pos / 30.0 - 1.0, s = 1.0 / (1.0 + exp(-10.0 * theta * n));
            const double pl = (1.0 - a) / 2.0 + a * s, dpl = a * s * (1 - s) * 10.0 * n;
            const int left = level % 2 == 0 ? pos : pos - 1, right = level % 2 == 0 ? pos + 1 : pos;
            assert(left >= 0 && right < N);
            Q[left] += P[pos] * pl;
            dQ[left] += dP[pos] * pl + P[pos] * dpl;
            Q[right] += P[pos] * (1 - pl);
            dQ[right] += dP[pos] * (1 - pl) - P[pos] * dpl;
        }
        memcpy(P, Q, sizeof P);
        memcpy(dP, dQ, sizeof dP);
    }
    memcpy(p, P, sizeof P);
    memcpy(dp, dP, sizeof dP);
}

int tk_galton_mine(mine_theta_mode mode, double th0, int with_th1, int score, uint64_t n, gold_data *g)
{
    char *path = tk_build_path("examples/galton");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s {endpoint}", path);
    free(path);
    mine_opts o;
    memset(&o, 0, sizeof o);
    engine_config_defaults(&o.ecfg);
    o.ecfg.sim_cmd = cmd;
    o.ecfg.n_launch = 2;
    const char *tn[1] = {"theta"}, *xn[1] = {"x"};
    const double th1 = -0.6;
    o.theta_names = tn;
    o.D = 1;
    o.x_names = xn;
    o.n_x = 1;
    const double lo = -1, hi = 0;
    const size_t gn = 101;
    o.mode = mode;
    o.theta0 = &th0;
    o.grid_lo = &lo;
    o.grid_hi = &hi;
    o.grid_n = &gn;
    o.theta1 = with_th1 ? &th1 : NULL;
    o.K = with_th1 ? 1 : 0;
    o.theta1_rows = with_th1;
    o.score = score;
    o.n = n;
    o.seed = 5;
    o.quiet = 1;
    return mine_run(&o, g, NULL);
}
