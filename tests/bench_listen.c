/* bench_listen — simulators that connect in (ppxd --sim-listen), issue 14.
 *
 * 1. Prior traces/s for the Gaussian example with 1, 2 and 4 simulators
 *    connected in (examples/gaussian --connect-to an ipc --sim-listen
 *    endpoint) next to the same number launched and connected out (--sim-cmd
 *    -j N), alternating out, in, out, in, ... in the same run; the ratio is
 *    taken per round (each connected-in run against the connected-out run
 *    before it) and its median is compared with the goal: >= 0.95.
 *    Throughput is traces over the engine loop's time (`elapsed`); the
 *    connected-in simulators are started as soon as ppxd says it listens.
 * 2. A ppxd holding 1,000 idle connected-in simulators (`ppxd simulate`
 *    waiting for another model, then `ppxd daemon` with no job): its CPU time per
 *    second of wall time (all its threads, from /proc/PID/task/N/schedstat,
 *    nanoseconds) over a window that includes a heartbeat round, and its RSS
 *    (VmRSS).  The peers are 1,000 libzmq REP sockets in one process of their
 *    own (libzmq answers ppxd's PINGs from its I/O thread, as in a real
 *    simulator); they answer the Handshake with the model "idle", while the
 *    job wants another model (--sim-model), so ppxd holds them and waits.
 *    Goals: < 1 ms of CPU per second, < 200 MiB.
 * 3. How many simulators one ppxd drives: prior sampling with 64 and 256
 *    Gaussian simulators connected in over tcp loopback (each its own
 *    process), next to 4 in the same run as the baseline: messages/s
 *    (ppxd's own count over the engine loop's time, which includes the
 *    joins), engine CPU per message, the time until all had joined, and
 *    ppxd's RSS at the end.  The simulators share the machine's cores
 *    with ppxd, so messages/s is bounded by the machine; the engine CPU
 *    per message is ppxd's cost, and 1e6 / (us per message) the rate one
 *    daemon core could sustain with simulators elsewhere.
 *    And `ppxd simulate` again with the peers over tcp loopback, where
 *    each link has TCP keepalive.
 * Environment: PPXD_BENCH_ROUNDS rounds for part 1 (default 5; 0 skips it);
 * PPXD_BENCH_IDLE_PEERS (default 1000), PPXD_BENCH_IDLE_SECONDS window
 * (default 22: two heartbeats of the default 10 s); PPXD_BENCH_HEARTBEAT_MS
 * ppxd's --heartbeat-ms there (default 10000, its default);
 * PPXD_BENCH_MANY the pool sizes of part 3 (default "64,256"; "0" skips it),
 * PPXD_BENCH_MANY_TRACES traces per run there (default 100000). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "ppx.h"
#include "testkit.h"

#define MAX_ROUNDS 50
#define MAX_SIMS 4

static int env_int(const char *name, long dflt, long lo, long hi)
{
    const char *s = getenv(name);
    long v = s && *s ? atol(s) : dflt;
    return (int)(v < lo ? lo : v > hi ? hi : v);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *x, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* Whether the file holds the string (polled while ppxd starts). */
static int file_has(const char *path, const char *what)
{
    size_t n;
    char *b = (char *)tk_slurp(path, &n);
    int yes = b && strstr(b, what);
    free(b);
    return yes;
}

static int count_in_file(const char *path, const char *what)
{
    size_t n;
    char *b = (char *)tk_slurp(path, &n);
    int k = 0;
    for (char *p = b; p && (p = strstr(p, what)); p += strlen(what)) k++;
    free(b);
    return k;
}

static pid_t spawn_ppxd(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* One ppxd simulate run; connected in (listen) or out.  Traces/s over the
 * engine's elapsed time, or -1. */
static double run_once(int listen, int sims, long n, double *us_per_msg)
{
    char *ppxd = tk_build_path("ppxd"), *gauss = tk_build_path("examples/gaussian");
    char log[] = "/tmp/ppxd-bench-listen-XXXXXX", out[64], ep[128], cmd[600], nb[32], jb[16];
    int fd = mkstemp(log);
    if (fd < 0) return -1;
    close(fd);
    snprintf(out, sizeof out, "%s.ppxt", log);
    snprintf(ep, sizeof ep, "ipc://%s.sock", log);
    snprintf(cmd, sizeof cmd, "%s {endpoint}", gauss);
    snprintf(nb, sizeof nb, "%ld", n);
    snprintf(jb, sizeof jb, "%d", sims);
    char *out_argv[] = {ppxd, "simulate", "--sim-cmd", cmd, "-j", jb, "-n", nb, "-o", out, "--fsync", "never", NULL};
    char *in_argv[] = {ppxd, "simulate", "--sim-listen", ep, "-n", nb, "-o", out, "--fsync", "never", NULL};
    pid_t pid = spawn_ppxd(listen ? in_argv : out_argv, log);
    pid_t sim[MAX_SIMS] = {0};
    if (listen) {
        double t0 = tk_now();
        while (!file_has(log, "simulators may connect") && tk_now() - t0 < 10) usleep(1000);
        for (int i = 0; i < sims; i++) {
            char *a[] = {gauss, "--connect-to", ep, NULL};
            sim[i] = tk_spawn(a);
        }
    }
    int st = tk_wait(pid, 300000);
    for (int i = 0; i < sims; i++)
        if (sim[i] > 0) tk_stop(sim[i], 500);
    double rate = -1;
    size_t len;
    char *b = (char *)tk_slurp(log, &len);
    const char *p = b ? strstr(b, "elapsed ") : NULL;
    if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && p) {
        double el = atof(p + strlen("elapsed "));
        if (el > 0) rate = n / el;
        const char *u = strstr(p, "s, ");
        *us_per_msg = u ? atof(u + 3) : 0;
    }
    if (st == -1) tk_stop(pid, 100);
    free(b);
    unlink(log);
    unlink(out);
    free(ppxd);
    free(gauss);
    return rate;
}

static void bench_throughput(int rounds)
{
    printf("connected in vs out: Gaussian prior traces/s (ppxd simulate), median of %d alternating rounds\n", rounds);
    printf("%4s %8s %10s %10s %-20s %8s %8s   %s\n", "sims", "traces", "out /s", "in /s", "in/out (min-max)",
           "CPU out", "CPU in", "goal in/out >= 0.95");
    printf("%4s %8s %10s %10s %-20s %8s %8s\n", "", "", "", "", "", "us/msg", "us/msg");
    for (int sims = 1; sims <= MAX_SIMS; sims *= 2) {
        long n = 20000; /* long enough (3+ s) for start-up (launch or join, ~10 ms) not to count */
        double in[MAX_ROUNDS], out[MAX_ROUNDS], ratio[MAX_ROUNDS], cin[MAX_ROUNDS], cout[MAX_ROUNDS];
        int ok = 1;
        for (int r = 0; r < rounds && ok; r++) {
            out[r] = run_once(0, sims, n, &cout[r]);
            in[r] = run_once(1, sims, n, &cin[r]);
            ok = out[r] > 0 && in[r] > 0;
            ratio[r] = ok ? in[r] / out[r] : 0;
        }
        if (!ok) {
            printf("%4d  FAILED\n", sims);
            continue;
        }
        double rm = median(ratio, rounds), lo = ratio[0], hi = ratio[0];
        for (int r = 1; r < rounds; r++) {
            lo = fmin(lo, ratio[r]);
            hi = fmax(hi, ratio[r]);
        }
        char rs[48];
        snprintf(rs, sizeof rs, "%.3f (%.2f-%.2f)", rm, lo, hi);
        printf("%4d %8ld %10.0f %10.0f %-20s %8.2f %8.2f   %s\n", sims, n, median(out, rounds), median(in, rounds), rs,
               median(cout, rounds), median(cin, rounds), rm >= 0.95 ? "ok" : "MISSED");
        fflush(stdout);
    }
}

/* --- many simulators ----------------------------------------------------------- */

static long proc_rss_kib(pid_t pid);

typedef struct many_result {
    double msgs_per_s, traces_per_s, us_per_msg, join_s, rss_mib;
    long joined;
} many_result;

/* Value after `key` in ppxd's summary, or -1. */
static double summary_value(const char *log, const char *key)
{
    const char *p = strstr(log, key);
    return p ? atof(p + strlen(key)) : -1;
}

/* One ppxd simulate with `sims` Gaussian simulators connected in over tcp
 * loopback.  0, or -1 when ppxd failed. */
static int run_many(int sims, long n, many_result *r)
{
    char *ppxd = tk_build_path("ppxd"), *gauss = tk_build_path("examples/gaussian");
    char log[] = "/tmp/ppxd-bench-many-XXXXXX", out[64], listen[64], ep[64], nb[32], mx[16];
    int fd = mkstemp(log);
    pid_t *sim = calloc((size_t)sims, sizeof *sim);
    if (fd < 0 || !sim) return -1;
    close(fd);
    int port = tk_free_tcp_port();
    snprintf(out, sizeof out, "%s.ppxt", log);
    snprintf(listen, sizeof listen, "tcp://127.0.0.1:%d", port);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    snprintf(nb, sizeof nb, "%ld", n);
    snprintf(mx, sizeof mx, "%d", sims);
    char *argv[] = {ppxd, "simulate", "--sim-listen", listen, "--sim-max", mx, "-n", nb, "-o", out,
                    "--fsync", "never", NULL};
    pid_t pid = spawn_ppxd(argv, log);
    double t0 = tk_now();
    while (!file_has(log, "simulators may connect") && tk_now() - t0 < 10) usleep(1000);
    t0 = tk_now();
    for (int i = 0; i < sims; i++) {
        char *a[] = {gauss, "--connect-to", ep, NULL};
        sim[i] = tk_spawn(a);
    }
    /* When the last one joined (polled; ppxd logs each join). */
    r->join_s = -1;
    while (kill(pid, 0) == 0 && tk_now() - t0 < 120) {
        if (count_in_file(log, "): joined") >= sims) {
            r->join_s = tk_now() - t0;
            break;
        }
        usleep(20000);
    }
    /* RSS near the end: poll until ppxd exits, keeping the last value. */
    long rss = -1, k;
    int st = -1;
    for (double end = tk_now() + 600; tk_now() < end;) {
        if ((k = proc_rss_kib(pid)) > 0) rss = k;
        if ((st = tk_wait(pid, 200)) != -1) break;
    }
    for (int i = 0; i < sims; i++)
        if (sim[i] > 0) kill(sim[i], SIGTERM);
    for (int i = 0; i < sims; i++)
        if (sim[i] > 0) tk_stop(sim[i], 1000);
    size_t len;
    char *b = (char *)tk_slurp(log, &len);
    int ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && b;
    if (ok) {
        double el = summary_value(b, "elapsed ");
        const char *u = strstr(b, "s/message");
        const char *c = strstr(b, "engine CPU ");
        r->msgs_per_s = el > 0 ? summary_value(b, "messages ") / el : -1;
        r->traces_per_s = el > 0 ? n / el : -1;
        r->us_per_msg = -1;
        if (c && u) { /* "engine CPU 0.793 s, 9.91 us/message" */
            const char *comma = strstr(c, ", ");
            r->us_per_msg = comma ? atof(comma + 2) : -1;
        }
        r->joined = (long)summary_value(b, "connected in ");
        r->rss_mib = rss / 1024.0;
    } else {
        fprintf(stderr, "bench_listen: ppxd with %d simulators failed:\n%s\n", sims, b ? b : "");
        if (st == -1) tk_stop(pid, 100);
    }
    free(b);
    unlink(log);
    unlink(out);
    free(sim);
    free(ppxd);
    free(gauss);
    return ok ? 0 : -1;
}

static void bench_many(const char *sizes, long n)
{
    printf("\nmany simulators connected in (tcp loopback, one process each): Gaussian prior, %ld traces per run\n", n);
    printf("%6s %8s %12s %10s %10s %12s %10s %9s   %s\n", "sims", "joined", "messages/s", "traces/s", "vs 4 sims",
           "CPU us/msg", "all in (s)", "RSS MiB", "1e6/(us/msg): one core's msgs/s");
    many_result base;
    if (run_many(4, n, &base) < 0) {
        printf("%6d  FAILED\n", 4);
        return;
    }
    printf("%6d %8ld %12.0f %10.0f %10s %12.2f %10.2f %9.1f   %.0f\n", 4, base.joined, base.msgs_per_s,
           base.traces_per_s, "1.00", base.us_per_msg, base.join_s, base.rss_mib, 1e6 / base.us_per_msg);
    fflush(stdout);
    char buf[128];
    snprintf(buf, sizeof buf, "%s", sizes);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int sims = atoi(t);
        if (sims < 1 || sims > 4096) continue;
        many_result r;
        if (run_many(sims, n, &r) < 0) {
            printf("%6d  FAILED\n", sims);
            continue;
        }
        char ratio[16];
        snprintf(ratio, sizeof ratio, "%.2f", r.msgs_per_s / base.msgs_per_s);
        printf("%6d %8ld %12.0f %10.0f %10s %12.2f %10.2f %9.1f   %.0f%s\n", sims, r.joined, r.msgs_per_s,
               r.traces_per_s, ratio, r.us_per_msg, r.join_s, r.rss_mib, 1e6 / r.us_per_msg,
               r.joined == sims ? "" : "  (not all joined!)");
        fflush(stdout);
    }
}

/* --- idle peers ---------------------------------------------------------------- */

/* The peers' process: n REP sockets connected to ep, answering Handshake
 * with model "idle" (and anything else with Reset) until killed. */
static void idle_peers(const char *ep, int n)
{
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, n + 64);
    zmq_pollitem_t *items = calloc((size_t)n, sizeof *items);
    ppx_encoder *enc = ppx_encoder_new();
    if (!ctx || !items || !enc) _exit(1);
    for (int i = 0; i < n; i++) {
        void *s = zmq_socket(ctx, ZMQ_REP);
        if (!s || zmq_connect(s, ep) < 0) {
            fprintf(stderr, "bench_listen: peer %d: %s\n", i, zmq_strerror(errno));
            _exit(1);
        }
        items[i].socket = s;
        items[i].events = ZMQ_POLLIN;
    }
    ppx_limits lim = ppx_limits_default();
    for (;;) {
        if (zmq_poll(items, n, -1) < 0) continue;
        for (int i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, items[i].socket, 0) < 0) continue;
            ppx_msg in, outm;
            ppx_error err;
            ppx_msg_init(&in);
            ppx_msg_init(&outm);
            int hs = ppx_decode(zmq_msg_data(&m), zmq_msg_size(&m), &lim, &in, &err) == PPX_OK &&
                     in.type == PPX_MSG_HANDSHAKE;
            ppx_msg_clear(&in);
            zmq_msg_close(&m);
            outm.type = hs ? PPX_MSG_HANDSHAKE_RESULT : PPX_MSG_RESET;
            outm.system_name = "bench";
            outm.model_name = "idle";
            size_t len;
            const uint8_t *b = ppx_encode(enc, &outm, &len, &err);
            if (b) zmq_send(items[i].socket, b, len, 0);
        }
    }
}

/* CPU nanoseconds of every thread of pid so far. */
static double proc_cpu_ns(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d) return -1;
    double sum = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[400];
        snprintf(p, sizeof p, "%s/%s/schedstat", dir, de->d_name);
        FILE *f = fopen(p, "r");
        unsigned long long ns = 0;
        if (f && fscanf(f, "%llu", &ns) == 1) sum += (double)ns;
        if (f) fclose(f);
    }
    closedir(d);
    return sum;
}

static long proc_rss_kib(pid_t pid)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
    if (f) fclose(f);
    return kib;
}

/* daemon = 0: `ppxd simulate` waiting for a model none of the peers has;
 * 1: `ppxd daemon` with no job (its query endpoint bound too).  tcp: the
 * peers connect over tcp loopback (ppxd sets TCP keepalive on each link)
 * rather than ipc. */
static void bench_idle(int peers, int seconds, int daemon, int tcp)
{
    char *ppxd = tk_build_path("ppxd");
    char log[] = "/tmp/ppxd-bench-idle-XXXXXX", out[64], ep[128], mx[16];
    int fd = mkstemp(log);
    if (fd < 0) return;
    close(fd);
    snprintf(out, sizeof out, "%s.ppxt", log);
    if (tcp)
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", tk_free_tcp_port());
    else
        if (tcp)
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", tk_free_tcp_port());
    else
        snprintf(ep, sizeof ep, "ipc://%s.sock", log);
    snprintf(mx, sizeof mx, "%d", peers + 24);
    const char *hb = getenv("PPXD_BENCH_HEARTBEAT_MS");
    char *argv[] = {ppxd, "simulate", "--sim-listen", ep, "--sim-max", mx, "--sim-model", "wanted", "-n", "1",
                    "-o", out, "--heartbeat-ms", (char *)(hb && *hb ? hb : "10000"), NULL};
    char data[96], qep[128];
    snprintf(data, sizeof data, "%s.d", log);
    snprintf(qep, sizeof qep, "ipc://%s.q", log);
    char *dargv[] = {ppxd, "daemon", "--data-dir", data, "--serve", qep, "--sim-listen", ep, "--sim-max", mx,
                     "--heartbeat-ms", (char *)(hb && *hb ? hb : "10000"), NULL};
    pid_t d = spawn_ppxd(daemon ? dargv : argv, log);
    double t0 = tk_now();
    while (!file_has(log, "simulators may connect") && tk_now() - t0 < 10) usleep(1000);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) idle_peers(ep, peers);
    int joined = 0;
    t0 = tk_now();
    while ((joined = count_in_file(log, "joined")) < peers && tk_now() - t0 < 60) usleep(50000);
    if (joined < peers) {
        printf("idle peers: FAILED (%d of %d joined)\n", joined, peers);
    } else {
        sleep(1);
        double c0 = proc_cpu_ns(d), w0 = tk_now();
        sleep((unsigned)seconds);
        double c1 = proc_cpu_ns(d), w1 = tk_now();
        long rss = proc_rss_kib(d);
        double ms_per_s = (c1 - c0) / 1e6 / (w1 - w0);
        int pings = file_has(log, "no reply to heartbeats");
        printf("\n%d idle connected-in simulators over %s, ppxd %s (--heartbeat-ms %s): ppxd CPU %.3f ms/s over %.0f s "
               "(goal < 1), RSS %.1f MiB (goal < 200) %s%s\n",
               peers, tcp ? "tcp" : "ipc", daemon ? "daemon" : "simulate", hb && *hb ? hb : "10000", ms_per_s, w1 - w0,
               rss / 1024.0, ms_per_s < 1.0 && rss < 200 * 1024 ? "ok" : "MISSED",
               pings ? " (some peers missed heartbeats!)" : "");
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    tk_stop(d, 1000);
    unlink(log);
    unlink(out);
    if (daemon) {
        char rm[160];
        snprintf(rm, sizeof rm, "rm -rf '%s'", data);
        if (system(rm) != 0) fprintf(stderr, "bench_listen: could not remove %s\n", data);
    }
    free(ppxd);
}

int main(void)
{
    int rounds = env_int("PPXD_BENCH_ROUNDS", 5, 0, MAX_ROUNDS);
    int peers = env_int("PPXD_BENCH_IDLE_PEERS", 1000, 0, 20000);
    int seconds = env_int("PPXD_BENCH_IDLE_SECONDS", 22, 1, 3600);
    const char *many = getenv("PPXD_BENCH_MANY");
    long many_n = env_int("PPXD_BENCH_MANY_TRACES", 100000, 1000, 100000000);
    signal(SIGPIPE, SIG_IGN);
    if (rounds > 0) bench_throughput(rounds);
    if (!many || strcmp(many, "0") != 0) bench_many(many && *many ? many : "64,256", many_n);
    if (peers > 0) {
        bench_idle(peers, seconds, 0, 0);
        bench_idle(peers, seconds, 1, 0);
        bench_idle(peers, seconds, 0, 1);
    }
    return 0;
}
