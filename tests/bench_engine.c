/* bench_engine — ppxd driving simulators: traces/s, wall time and engine CPU
 * per PPX message for the Gaussian example (4 round trips per trace) and the
 * HMM (34) with 1 and 2 simulators, next to a raw ZeroMQ REQ/REP ping-pong of
 * the same run; then the peak RSS of a long prior run (memory must stay
 * bounded by the work in flight, not the work done).
 * Goals (issue 3): engine CPU <= 10 us/message; wall time per message <=
 * 1.3x the raw ping-pong; peak RSS < 64 MiB for 10^6 traces.
 * PPXD_BENCH_LONG_TRACES overrides the long run's length (default 10^6). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testkit.h"

typedef struct run_result {
    double wall;        /* seconds */
    double us_per_msg;  /* engine CPU */
    double messages;
    long max_rss_kib;
    int ok;
} run_result;

/* Run ppxd simulate and parse its counters from stderr. */
static run_result run_ppxd(const char *example, int sims, long n)
{
    run_result r = {0};
    char *ppxd = tk_build_path("ppxd"), *sim = tk_build_path(example);
    char cmd[1024], log[] = "/tmp/ppxd-bench-XXXXXX", out[64];
    int fd = mkstemp(log);
    if (fd < 0) return r;
    close(fd);
    snprintf(out, sizeof out, "%s.ppxt", log);
    snprintf(cmd, sizeof cmd, "%s {endpoint}", sim);
    char nbuf[32], jbuf[16];
    snprintf(nbuf, sizeof nbuf, "%ld", n);
    snprintf(jbuf, sizeof jbuf, "%d", sims);
    double t0 = tk_now();
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execl(ppxd, ppxd, "simulate", "--sim-cmd", cmd, "-j", jbuf, "-n", nbuf, "-o", out, "--fsync", "never",
              "--quiet", (char *)NULL);
        _exit(127);
    }
    int st;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    r.wall = tk_now() - t0;
    r.max_rss_kib = ru.ru_maxrss;
    FILE *f = fopen(log, "r");
    char line[512];
    double cpu = 0;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "messages %lf", &r.messages);
        char *p = strstr(line, "engine CPU ");
        if (p) sscanf(p, "engine CPU %lf s, %lf us/message", &cpu, &r.us_per_msg);
    }
    if (f) fclose(f);
    r.ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && r.messages > 0;
    unlink(log);
    unlink(out);
    free(ppxd);
    free(sim);
    return r;
}

int main(void)
{
    /* A Sample is ~170 bytes, a SampleResult ~80.  Baselines: one raw pair,
     * and two pairs at once (what two simulators on 2 cores can get). */
    double raw[3];
    raw[1] = tk_raw_pingpong_pairs("bench-engine-raw", 1, 80, 176, 20000, 3);
    raw[2] = tk_raw_pingpong_pairs("bench-engine-raw2", 2, 80, 176, 20000, 3);
    printf("ppxd engine: prior sampling through PPX (ppxd simulate, traces to a file)\n");
    printf("raw ZeroMQ REQ/REP ping-pong (ipc, same run): %.2f us per round trip; %.2f us with 2 pairs at once\n\n",
           raw[1] * 1e6, raw[2] * 1e6);
    printf("%-10s %4s %8s %10s %12s %14s %10s %8s\n", "model", "sims", "traces", "traces/s", "wall us/rt",
           "wall/raw", "CPU us/msg", "goal");
    struct {
        const char *example, *label;
        long n;
    } models[2] = {{"examples/gaussian", "gaussian", 40000}, {"examples/hmm", "hmm", 5000}};
    for (int m = 0; m < 2; m++) {
        for (int sims = 1; sims <= 2; sims++) {
            run_result r = run_ppxd(models[m].example, sims, models[m].n);
            if (!r.ok) {
                printf("%-10s %4d  FAILED\n", models[m].label, sims);
                continue;
            }
            /* Lockstep: each simulator's messages come in request/reply pairs;
             * per-message wall time as one simulator sees it. */
            double rt = r.wall * sims / (r.messages / 2);
            printf("%-10s %4d %8ld %10.0f %12.2f %13.2fx %10.2f %8s\n", models[m].label, sims, models[m].n,
                   models[m].n / r.wall, rt * 1e6, rt / raw[sims], r.us_per_msg,
                   r.us_per_msg <= 10 && rt / raw[sims] <= 1.3 ? "ok" : "MISSED");
        }
    }
    long long_n = 1000000;
    const char *env = getenv("PPXD_BENCH_LONG_TRACES");
    if (env) long_n = atol(env);
    if (long_n > 0) {
        run_result r = run_ppxd("examples/gaussian", 2, long_n);
        printf("\nlong prior run: %ld Gaussian traces with 2 simulators in %.1f s: peak RSS of ppxd %.1f MiB "
               "(goal < 64 MiB) %s\n",
               long_n, r.wall, r.max_rss_kib / 1024.0, r.ok ? "" : "FAILED");
    }
    return 0;
}
