/* bench_diag — the cost of calibration diagnostics (src/diag/diag.h, as
 * `ppxd diagnose` runs them) for an NPE on sbibm's two_moons, one core.
 *
 * Trains ppxd's default NSF on 10^4 simulations, then runs R rounds (default
 * 1000, PPXD_BENCH_ROUNDS) of: L = 1000 posterior samples for a fresh x
 * (npe_sample), the model's log density at the samples and the truth
 * (npe_log_prob, one batch) and the SBC/HPD/TARP bookkeeping
 * (diag_calib_add).  The goal is R = 1000 rounds in <= 30 s on one core.
 * The baseline, measured in the same run, is the same R * L samples drawn
 * in one npe_sample call: the batched sampler's floor, so the ratio shows
 * what one query per round and the densities cost on top.
 * Not a test: prints figures, exits 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diag/diag.h"
#include "nn/nn.h"
#include "npe.h"
#include "prior.h"
#include "rng.h"
#include "testkit.h"
#include "two_moons.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


int main(void)
{
    const char *env = getenv("PPXD_BENCH_ROUNDS");
    size_t R = env && atoi(env) > 1 ? (size_t)atoi(env) : 1000, L = 1000, N = 10000;
    nn_set_threads(1);
    char err[400];
    const char *spec = "uniform:-1:1x2";
    prior *pr = prior_parse(&spec, 1, err, sizeof err);
    rng r;
    rng_seed(&r, 1, 0);
    double *th = malloc(N * 2 * sizeof *th), *x = malloc(N * 2 * sizeof *x);
    prior_sample(pr, &r, N, th);
    for (size_t i = 0; i < N; i++) tk_two_moons(&r, th + 2 * i, x + 2 * i);
    npe_data d;
    if (!pr || npe_data_init(&d, th, x, N, 2, 2, err, sizeof err) < 0) {
        fprintf(stderr, "bench_diag: %s\n", err);
        return 0;
    }
    npe_train_config cfg = npe_train_defaults();
    cfg.progress = 0;
    npe_train_report trep;
    double c0 = cpu_now();
    npe_posterior *p = npe_train(&d, pr, NULL, &cfg, &trep, err, sizeof err);
    npe_data_free(&d);
    if (!p) {
        fprintf(stderr, "bench_diag: training failed: %s\n", err);
        return 0;
    }
    printf("two_moons NSF, 10^4 simulations: trained in %.1f s CPU (%d epochs)\n", cpu_now() - c0, trep.epochs);

    /* Baseline: the R * L samples in one query. */
    double *big = malloc(R * L * 2 * sizeof *big), xo[2] = {0.0, 0.0};
    npe_sample_report srep;
    rng rb;
    rng_seed(&rb, 5, 0);
    c0 = cpu_now();
    if (npe_sample(p, xo, R * L, &rb, 600, big, &srep, err, sizeof err) < 0) fprintf(stderr, "bench_diag: %s\n", err);
    double base = cpu_now() - c0;
    free(big);

    double lo[2] = {-1, -1}, hi[2] = {1, 1};
    diag_calib *c = diag_calib_new(2, L, R, lo, hi, 7);
    double *buf = malloc((L + 1) * 2 * sizeof *buf), *lq = malloc((L + 1) * sizeof *lq);
    double t_sample = 0, t_lp = 0, t_diag = 0;
    rng rt;
    rng_seed(&rt, 99, 0);
    double w0 = tk_now();
    c0 = cpu_now();
    for (size_t i = 0; i < R; i++) {
        double tt[2], xx[2];
        prior_sample(pr, &rt, 1, tt);
        tk_two_moons(&rt, tt, xx);
        double a = cpu_now();
        if (npe_sample(p, xx, L, &rt, 60, buf, &srep, err, sizeof err) < 0) {
            fprintf(stderr, "bench_diag: %s\n", err);
            break;
        }
        double b = cpu_now();
        memcpy(buf + 2 * L, tt, sizeof tt);
        npe_log_prob(p, buf, L + 1, xx, 1, lq, err, sizeof err);
        double e = cpu_now();
        diag_calib_add(c, tt, buf, &lq[L], lq);
        t_sample += b - a;
        t_lp += e - b;
        t_diag += cpu_now() - e;
    }
    double full = cpu_now() - c0, wall = tk_now() - w0;
    printf("%zu SBC/coverage/TARP rounds x %zu samples: %.2f s CPU (%.2f s wall); goal <= 30 s for 1000 rounds: %s\n", R,
           L, full, wall, full * 1000.0 / (double)R <= 30.0 ? "met" : "MISSED");
    printf("  sampling %.2f s, log densities %.2f s, ranks %.2f s\n", t_sample, t_lp, t_diag);
    printf("  baseline: the same %zu samples in one query %.2f s CPU; rounds / baseline %.2fx\n", R * L, base,
           base > 0 ? full / base : NAN);
    diag_calib_destroy(&c);
    npe_posterior_destroy(&p);
    prior_destroy(&pr);
    free(buf);
    free(lq);
    free(th);
    free(x);
    return 0;
}
