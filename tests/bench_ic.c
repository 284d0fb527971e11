/* bench_ic — inference compilation on the HMM example (16 steps), each
 * figure next to a baseline measured in the same run:
 *   1. training throughput (traces/s consumed by `ppxd train ic`) with 1 and
 *      2 launched simulators, next to prior sampling (`ppxd simulate`) with
 *      the same simulators: the ratio shows how well simulation and
 *      training overlap (1.0 = the trainer costs the simulators nothing);
 *   2. ESS of 5,000 IC importance-sampling traces after PPXD_BENCH_IC_SECONDS
 *      (default 60) s of training with 2 simulators, next to prior IS's ESS
 *      at 5,000 traces (pyprob's HMM observation, with two outliers);
 *   3. IC inference traces/s next to prior-IS traces/s (engine wall time),
 *      and the ratio of their engine CPU (the throughput ratio once the
 *      engine, not the simulators, is the bottleneck).
 * Environment: PPXD_BENCH_IC_SECONDS, PPXD_BENCH_IC_REUSE (default 2: the
 * trainer is faster than two HMM simulators on this machine),
 * PPXD_BENCH_IC_FINISH (default 0.5: the last half trains on the replay
 * buffer alone).
 * Not a test: prints figures, exits 0 unless a command fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testkit.h"

static const double hmm_y[16] = {0.9, 0.8, 0.7, 0.0, -0.025, -5.0, -2.0, -0.1, 0.0, 0.13, 0.45, 6, 0.2, 0.3, -1, -1};

static const double hmm_y_alt[16] = {2.2, -2.1, 1.8, -1.9, 2.4, 0.1, -2.3, 2.0, -1.8, 2.2, 0.0, -2.2, 1.9, -2.0, 2.1, -1.7};
static const double hmm_y_typ[16] = {0.9, 0.8, -0.5, 1.2, 0.1, -1.1, -0.9, 0.3, 1.5, 1.0, 0.2, -0.2, 0.0, 0.8, 1.1, -0.3};

static char *run(const char *cmd, int *status)
{
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, len = 0, got;
    char *out = malloc(cap);
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap) out = realloc(out, cap *= 2);
    }
    out[len] = 0;
    *status = pclose(p);
    return out;
}

static char *must_run(const char *cmd)
{
    int st;
    char *out = run(cmd, &st);
    if (!out || st != 0) {
        fprintf(stderr, "bench_ic: command failed: %s\n%s\n", cmd, out ? out : "");
        exit(1);
    }
    return out;
}

/* The last occurrence of key in out, then sscanf of fmt after it. */
static int last_scan(const char *out, const char *key, const char *fmt, double *a, double *b)
{
    const char *s = NULL, *p = out;
    while ((p = strstr(p, key))) s = p++;
    if (!s) return 0;
    return b ? sscanf(s + strlen(key), fmt, a, b) : sscanf(s + strlen(key), fmt, a);
}

static double elapsed_of(const char *out)
{
    double e = NAN;
    last_scan(out, "elapsed", " %lf", &e, NULL);
    return e;
}

int main(void)
{
    char *ppxd = tk_build_path("ppxd"), *hmm = tk_build_path("examples/hmm");
    char dir[256];
    if (tk_tmpdir(dir, sizeof dir, "bench-ic") < 0) return 1;
    int seconds = getenv("PPXD_BENCH_IC_SECONDS") ? atoi(getenv("PPXD_BENCH_IC_SECONDS")) : 60;
    int reuse = getenv("PPXD_BENCH_IC_REUSE") ? atoi(getenv("PPXD_BENCH_IC_REUSE")) : 2;
    /* --finish: the last fraction of the 60 s trains on the replay buffer with the simulators idle */
    const char *finish = getenv("PPXD_BENCH_IC_FINISH") ? getenv("PPXD_BENCH_IC_FINISH") : "0.5";
    char cmd[8192], obs[2048] = "";
    for (int i = 0; i < 16; i++) {
        size_t l = strlen(obs);
        snprintf(obs + l, sizeof obs - l, " --observe y%d=%g", i + 1, hmm_y[i]);
    }
    printf("bench_ic: HMM example (3 states, 16 steps)\n\n");
    printf("1. training throughput (20 s of training each, --reuse 1 --finish 0), next to prior sampling (10,000 traces)\n");
    printf("%-6s %16s %16s %8s\n", "sims", "train traces/s", "simulate tr/s", "ratio");
    for (int j = 1; j <= 2; j++) {
        snprintf(cmd, sizeof cmd, "%s simulate --sim-cmd '%s {endpoint}' -j %d -n 10000 --quiet --fsync never -o %s/s.ppxt", ppxd, hmm, j,
                 dir);
        char *out = must_run(cmd);
        double sim_rate = 10000 / elapsed_of(out);
        free(out);
        snprintf(cmd, sizeof cmd, "%s train ic --sim-cmd '%s {endpoint}' -j %d --max-seconds 20 --finish 0 --val 200 --queue 64 -o %s/t.ppxm",
                 ppxd, hmm, j, dir);
        out = must_run(cmd);
        double n = NAN, rate = NAN;
        last_scan(out, "ppxd train ic: ", "%lf traces", &n, NULL);
        const char *s = strstr(out, "wrote");
        (void)s;
        /* the last progress line: "..., R traces/s, ..." */
        const char *p = NULL, *q = out;
        while ((q = strstr(q, " traces/s"))) p = q++;
        if (p) {
            const char *b = p;
            while (b > out && b[-1] != ' ') b--;
            rate = atof(b);
        }
        printf("%-6d %16.0f %16.0f %8.2f\n", j, rate, sim_rate, rate / sim_rate);
        fflush(stdout);
        free(out);
    }
    printf("\n2. ESS of 5,000 IC traces after %d s of training (2 simulators, --reuse %d --finish %s), next to prior IS\n",
           seconds, reuse, finish);
    snprintf(cmd, sizeof cmd, "%s train ic --sim-cmd '%s {endpoint}' -j 2 --max-seconds %d --reuse %d --finish %s -o %s/h.ppxm",
             ppxd, hmm, seconds, reuse, finish, dir);
    char *tr = must_run(cmd);
    double ntr = NAN, vloss = NAN;
    last_scan(tr, "wrote ", "%*s %lf training traces", &ntr, NULL);
    last_scan(tr, "best validation loss ", "%lf", &vloss, NULL);
    free(tr);
    snprintf(cmd, sizeof cmd, "%s infer --method ic --model %s/h.ppxm --sim-cmd '%s {endpoint}' -j 2 -n 5000 --seed 3 --quiet %s",
             ppxd, dir, hmm, obs);
    char *ic = must_run(cmd);
    snprintf(cmd, sizeof cmd, "%s infer --sim-cmd '%s {endpoint}' -j 2 -n 5000 --seed 3 --quiet %s", ppxd, hmm, obs);
    char *pr = must_run(cmd);
    printf("training traces %.0f, best validation loss %.4f\n", ntr, vloss);
    printf("%-28s %10s %10s %10s\n", "observation", "prior ESS", "IC ESS", "ratio");
    for (int set = 0; set < 3; set++) {
        const double *y = set == 0 ? hmm_y : set == 1 ? hmm_y_alt : hmm_y_typ;
        char o2[2048] = "";
        for (int i = 0; i < 16; i++) {
            size_t l = strlen(o2);
            snprintf(o2 + l, sizeof o2 - l, " --observe y%d=%g", i + 1, y[i]);
        }
        char *a = ic, *b = pr;
        if (set > 0) {
            snprintf(cmd, sizeof cmd, "%s infer --method ic --model %s/h.ppxm --sim-cmd '%s {endpoint}' -j 2 -n 5000 --seed 3 --quiet %s",
                     ppxd, dir, hmm, o2);
            a = must_run(cmd);
            snprintf(cmd, sizeof cmd, "%s infer --sim-cmd '%s {endpoint}' -j 2 -n 5000 --seed 3 --quiet %s", ppxd, hmm, o2);
            b = must_run(cmd);
        }
        double ess_ic = NAN, ess_pr = NAN;
        last_scan(a, "importance sampling (IC proposal): 5000 traces, ESS", " %lf", &ess_ic, NULL);
        last_scan(b, "importance sampling (prior proposal): 5000 traces, ESS", " %lf", &ess_pr, NULL);
        printf("%-28s %10.1f %10.1f %10.1f\n", set == 0 ? "pyprob's (y6 = -5, y12 = 6)" : set == 1 ? "alternating (test_ic_infer)" : "typical (a prior draw)",
               ess_pr, ess_ic, ess_ic / ess_pr);
        if (set > 0) {
            free(a);
            free(b);
        }
    }
    printf("(goal: IC ESS >= 1500 of 5000; pyprob reached 395 after 6 min 20 s of training)\n");
    printf("\n3. inference speed, 5,000 traces, 2 simulators (engine wall time)\n");
    double e_ic = elapsed_of(ic), e_pr = elapsed_of(pr);
    printf("%-10s %12s\n", "proposal", "traces/s");
    printf("%-10s %12.0f\n", "prior", 5000 / e_pr);
    printf("%-10s %12.0f   IC / prior = %.2f (goal >= 0.80)\n", "IC", 5000 / e_ic, e_pr / e_ic);
    /* CPU is steadier than wall time on a shared machine: the network's
     * cost is the engine CPU IC adds, per proposed draw (17 per trace). */
    double c_ic = NAN, c_pr = NAN;
    last_scan(ic, "engine CPU", " %lf", &c_ic, NULL);
    last_scan(pr, "engine CPU", " %lf", &c_pr, NULL);
    printf("engine CPU: prior %.3f s, IC %.3f s: %.1f us per proposed draw\n", c_pr, c_ic,
           1e6 * (c_ic - c_pr) / (5000.0 * 17));
    /* With enough simulators the engine is the bottleneck, and then its CPU
     * per trace sets the throughput. */
    printf("engine-bound throughput, IC / prior = prior CPU / IC CPU = %.2f (goal >= 0.80)\n", c_pr / c_ic);
    free(ic);
    free(pr);
    tk_tmpdir_remove(dir);
    free(ppxd);
    free(hmm);
    return 0;
}
