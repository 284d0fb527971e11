/* The fault campaign (issue 11): ppxd under injected faults, each part
 * checked against a clean run with the same seed.
 *
 *   sims_killed_and_stopped   `ppxd simulate` and `ppxd infer` (-j 4) while
 *                             random simulators get SIGKILL or SIGSTOP: the
 *                             run completes with exactly n whole traces, and
 *                             the trace file (after its header) and the
 *                             inference output are bit-identical to a clean
 *                             run's.
 *   ppxd_killed_while_writing SIGKILL of ppxd at random times during
 *                             `simulate --fsync flush`: every record in the
 *                             file up to the torn tail reads back, no
 *                             mid-file damage, and the records equal the
 *                             clean run's first ones.
 *   bad_zmtp_peers            `simulate --connect` to one good simulator
 *                             and several hostile ZMTP peers (random bytes,
 *                             bad greetings and mechanisms, wrong socket
 *                             types, huge frame headers, silence, garbage
 *                             PPX bodies): exactly n traces, equal to a
 *                             clean run with the good simulator alone.
 *   malformed_concurrent_queries  `ppxd serve` with 1,000 (full) clients at
 *                             once sending valid, mutated, truncated,
 *                             multi-frame and wrong-version requests: every
 *                             request gets exactly one reply, the server's
 *                             peak RSS stays bounded, and it still answers
 *                             and stops cleanly.
 *
 * Scale: PPXD_FAULTS_SCALE=short (default, part of `make test`) or full
 * (`make faults`).  Faults are drawn from a fixed seed (PPXD_FAULTS_SEED
 * overrides it); where they land in a run still depends on timing.  Each part prints a
 * row "FAULTS|part|inputs|faults|lost|notes" on stderr, which
 * scripts/faults.sh gathers into a table.  Loopback and ipc only. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "flow/flow.h"
#include "model_file.h"
#include "ppxq.h"
#include "prior.h"
#include "rng.h"
#include "testkit.h"
#include "trace_store.h"

/* ---- scale and randomness --------------------------------------------------- */

static int full_scale(void)
{
    const char *s = getenv("PPXD_FAULTS_SCALE");
    return s && strcmp(s, "full") == 0;
}

static uint64_t g_rs;

static void rand_init(uint64_t part)
{
    const char *s = getenv("PPXD_FAULTS_SEED");
    g_rs = (s ? strtoull(s, NULL, 10) : 20261203u) * 0x9e3779b97f4a7c15ull + part;
}

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (g_rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }

static void sleep_ms(double ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(((long long)(ms * 1e6)) % 1000000000LL)};
    nanosleep(&ts, NULL);
}

static void row(const char *part, unsigned long long inputs, unsigned long long faults, unsigned long long lost,
                const char *notes)
{
    fprintf(stderr, "FAULTS|%s|%llu|%llu|%llu|%s\n", part, inputs, faults, lost, notes);
}

/* ---- files and processes ------------------------------------------------------ */

static char g_dir[80];
static pid_t g_good_sim; /* a simulator to stop even when a test fails */

static void make_dir(void)
{
    cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "campaign"), 0);
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

static char *path_in(const char *name)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", g_dir, name) > 0);
    return p;
}

/* fork + exec with stdout to out_path (or /dev/null), stderr to /dev/null
 * unless PPXD_TEST_VERBOSE. */
static pid_t spawn_out(char *const argv[], const char *out_path)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        tk_child_dies_with_parent();
        int fo = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0) _exit(126);
        dup2(fo, 1);
        if (!getenv("PPXD_TEST_VERBOSE")) {
            int fe = open("/dev/null", O_WRONLY);
            if (fe >= 0) dup2(fe, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int exit_code(int st) { return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

/* Children of pid (from /proc), up to max. */
static size_t children_of(pid_t pid, pid_t *out, size_t max)
{
    DIR *d = opendir("/proc");
    size_t n = 0;
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max) {
        char *end;
        long p = strtol(de->d_name, &end, 10);
        if (*end || p <= 0) continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", p);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == pid && state != 'Z') out[n++] = (pid_t)p;
    }
    closedir(d);
    return n;
}

static unsigned char *slurp_file(const char *path, size_t *n)
{
    unsigned char *b = tk_slurp(path, n);
    cr_assert_not_null(b, "cannot read %s", path);
    return b;
}

/* Records of a trace file, checked whole: exactly `want` records (or any
 * number when want is UINT64_MAX), no mid-file damage; *tail gets the bad
 * tail's bytes. */
static uint64_t check_trace_file(const char *path, uint64_t want, uint64_t *tail, uint64_t *damaged)
{
    char err[256];
    trace_reader *r = trace_reader_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    trace *t = trace_new();
    uint64_t n = 0;
    int rc;
    while ((rc = trace_reader_next(r, t)) == 1) {
        cr_assert_eq(t->id, n, "%s: record %llu has id %llu", path, (unsigned long long)n, (unsigned long long)t->id);
        n++;
    }
    cr_assert_eq(rc, 0, "%s: read error", path);
    trace_reader_stats st = trace_reader_get_stats(r);
    if (tail) *tail = st.truncated ? st.bad_tail_bytes : 0;
    if (damaged) *damaged = st.skipped_bytes;
    if (want != UINT64_MAX) {
        cr_assert_eq(n, want, "%s: %llu traces, want %llu", path, (unsigned long long)n, (unsigned long long)want);
        cr_assert_eq(st.truncated, 0, "%s: damaged tail", path);
    }
    cr_assert_eq(st.damaged_regions, 0, "%s: %llu bytes of mid-file damage", path,
                 (unsigned long long)st.skipped_bytes);
    trace_destroy(&t);
    trace_reader_close(&r);
    return n;
}

/* Files equal after their 32-byte headers (which hold the creation time). */
static int same_records(const char *a, const char *b, size_t prefix_of_b)
{
    size_t na, nb;
    unsigned char *x = slurp_file(a, &na), *y = slurp_file(b, &nb);
    int same;
    if (prefix_of_b) same = na >= 32 && prefix_of_b <= nb && na == prefix_of_b && memcmp(x + 32, y + 32, na - 32) == 0;
    else same = na == nb && na >= 32 && memcmp(x + 32, y + 32, na - 32) == 0;
    free(x);
    free(y);
    return same;
}

static char *sim_cmd(const char *rel)
{
    char *path = tk_build_path(rel), *cmd = NULL;
    cr_assert(access(path, X_OK) == 0, "%s not built", path);
    cr_assert(asprintf(&cmd, "%s {endpoint}", path) > 0);
    free(path);
    return cmd;
}

/* ---- part 1: simulators killed and stopped -------------------------------------- */

typedef struct fault_count {
    unsigned long long kills, stops;
} fault_count;

/* Run argv (a ppxd simulate/infer) while hitting its simulators with
 * SIGKILL (7 in 10) or SIGSTOP every gap_ms_min..gap_ms_max ms, at most
 * max_faults times; the exit status.  A stopped simulator costs the run a
 * --timeout-ms, a killed one a restart. */
static int run_with_faults(char *const argv[], const char *out, double gap_ms_min, double gap_ms_max,
                           unsigned long long max_faults, fault_count *fc)
{
    pid_t pid = spawn_out(argv, out);
    pid_t stopped[4096];
    size_t n_stopped = 0;
    double t_end = tk_now() + 600;
    int st = -1;
    while (tk_now() < t_end) {
        st = tk_wait(pid, 0);
        if (st != -1) break;
        sleep_ms(gap_ms_min + (double)rnd_below((uint64_t)(gap_ms_max - gap_ms_min + 1)));
        if (fc->kills + fc->stops >= max_faults) continue;
        pid_t kids[64];
        size_t k = children_of(pid, kids, 64);
        if (!k) continue;
        pid_t victim = kids[rnd_below(k)];
        if (rnd_below(10) < 7) {
            if (kill(victim, SIGKILL) == 0) fc->kills++;
        } else if (n_stopped < 4096 && kill(victim, SIGSTOP) == 0) {
            stopped[n_stopped++] = victim;
            fc->stops++;
        }
    }
    if (st == -1) {
        kill(pid, SIGKILL);
        st = tk_wait(pid, 5000);
        cr_assert_fail("ppxd %s did not finish under faults", argv[1]);
    }
    /* Stopped simulators ppxd has given up on: not ours to leave behind. */
    for (size_t i = 0; i < n_stopped; i++) kill(stopped[i], SIGKILL);
    return st;
}

Test(campaign, sims_killed_and_stopped, .init = make_dir, .fini = remove_dir)
{
    rand_init(1);
    const char *n = full_scale() ? "40000" : "3000";
    double gmin = full_scale() ? 10 : 20, gmax = full_scale() ? 40 : 60;
    unsigned long long max_faults = full_scale() ? 400 : 12;
    char *cmd = sim_cmd("examples/gaussian"), *ppxd = tk_build_path("ppxd");
    char *clean = path_in("clean.ppxt"), *faulty = path_in("faulty.ppxt");
    char *common[] = {"--sim-cmd", cmd, "-j", "4", "-n", (char *)n, "--seed", "11", "--timeout-ms", "300",
                      "--start-timeout-ms", "1500", "--max-failures", "100000", "--quiet"};
    enum { NC = sizeof common / sizeof *common };
    char *argv[NC + 16];
    /* simulate */
    int k = 0;
    argv[k++] = ppxd, argv[k++] = "simulate";
    for (int i = 0; i < NC; i++) argv[k++] = common[i];
    argv[k++] = "-o";
    int o_at = k;
    argv[k++] = clean;
    argv[k] = NULL;
    pid_t pid = spawn_out(argv, NULL);
    int st = tk_wait(pid, 300000);
    cr_assert_eq(exit_code(st), 0, "clean simulate: status %d", st);
    argv[o_at] = faulty;
    fault_count fc = {0, 0};
    st = run_with_faults(argv, NULL, gmin, gmax, max_faults, &fc);
    cr_assert_eq(exit_code(st), 0, "simulate under faults: status %d", st);
    uint64_t want = strtoull(n, NULL, 10);
    check_trace_file(faulty, want, NULL, NULL);
    int same = same_records(faulty, clean, 0);
    cr_assert(same, "the trace file under faults differs from the clean run's");
    /* infer: summary and samples */
    char *out_clean = path_in("infer_clean.txt"), *out_faulty = path_in("infer_faulty.txt");
    char *npy_clean = path_in("clean.npy"), *npy_faulty = path_in("faulty.npy");
    k = 0;
    argv[k++] = ppxd, argv[k++] = "infer";
    for (int i = 0; i < NC; i++) argv[k++] = common[i];
    argv[k++] = "--observe", argv[k++] = "obs0=8", argv[k++] = "--observe", argv[k++] = "obs1=9";
    argv[k++] = "--samples-out";
    int s_at = k;
    argv[k++] = npy_clean;
    argv[k] = NULL;
    pid = spawn_out(argv, out_clean);
    st = tk_wait(pid, 300000);
    cr_assert_eq(exit_code(st), 0, "clean infer: status %d", st);
    argv[s_at] = npy_faulty;
    fault_count fi = {0, 0};
    st = run_with_faults(argv, out_faulty, gmin, gmax, max_faults, &fi);
    cr_assert_eq(exit_code(st), 0, "infer under faults: status %d", st);
    size_t a, b;
    unsigned char *x = slurp_file(out_clean, &a), *y = slurp_file(out_faulty, &b);
    cr_assert(a > 0 && a == b && memcmp(x, y, a) == 0, "infer summaries differ:\n%s\n---\n%s", x, y);
    free(x);
    free(y);
    x = slurp_file(npy_clean, &a), y = slurp_file(npy_faulty, &b);
    cr_assert(a > 128 && a == b && memcmp(x, y, a) == 0, "infer samples differ");
    free(x);
    free(y);
    char notes[200];
    snprintf(notes, sizeof notes, "simulate+infer -j 4, n %s each; %llu SIGKILL, %llu SIGSTOP; bit-identical", n,
             fc.kills + fi.kills, fc.stops + fi.stops);
    row("simulators killed/stopped", 2 * want, fc.kills + fc.stops + fi.kills + fi.stops, 0, notes);
    cr_assert_gt(fc.kills + fc.stops, 0, "no fault was injected: the run was too short");
    free(cmd), free(ppxd), free(clean), free(faulty), free(out_clean), free(out_faulty), free(npy_clean),
        free(npy_faulty);
}

/* ---- part 2: ppxd killed while writing ------------------------------------------ */

Test(campaign, ppxd_killed_while_writing, .init = make_dir, .fini = remove_dir)
{
    rand_init(2);
    /* big enough that full batches and the once-a-second flush both happen */
    const char *n = full_scale() ? "100000" : "6000";
    int rounds = full_scale() ? 25 : 2;
    char *cmd = sim_cmd("examples/gaussian"), *ppxd = tk_build_path("ppxd");
    char *clean = path_in("clean.ppxt"), *killed = path_in("killed.ppxt");
    char *argv[] = {ppxd, "simulate", "--sim-cmd", cmd, "-j", "2", "-n", (char *)n, "--seed", "5", "--fsync",
                    "flush", "--quiet", "-o", clean, NULL};
    double t0 = tk_now();
    pid_t pid = spawn_out(argv, NULL);
    int st = tk_wait(pid, 300000);
    cr_assert_eq(exit_code(st), 0, "clean run: status %d", st);
    double dur = tk_now() - t0;
    size_t clean_size;
    free(slurp_file(clean, &clean_size));
    argv[14] = killed;
    unsigned long long records = 0, tails = 0, kills = 0;
    for (int r = 0; r < rounds; r++) {
        unlink(killed);
        pid = spawn_out(argv, NULL);
        /* somewhere in the run, past the start-up */
        sleep_ms(1000 * dur * (0.2 + 0.75 * (double)rnd_below(1000) / 1000.0));
        pid_t kids[16];
        size_t k = children_of(pid, kids, 16);
        if (kill(pid, SIGKILL) == 0) kills++;
        tk_wait(pid, 10000);
        for (size_t i = 0; i < k; i++) kill(kids[i], SIGKILL);
        struct stat sb;
        if (stat(killed, &sb) != 0) continue; /* killed before it opened the file */
        uint64_t tail = 0;
        uint64_t got = check_trace_file(killed, UINT64_MAX, &tail, NULL);
        records += got;
        tails += tail != 0;
        /* the records before the torn tail are the clean run's first ones */
        size_t kn;
        unsigned char *kb = slurp_file(killed, &kn);
        cr_assert_geq(kn, tail);
        size_t valid = kn - tail;
        free(kb);
        if (valid >= 32) {
            size_t cn;
            unsigned char *cb = slurp_file(clean, &cn), *kb2 = slurp_file(killed, &kn);
            cr_assert(valid <= cn && memcmp(cb + 32, kb2 + 32, valid - 32) == 0,
                      "round %d: %llu committed records differ from the clean run's", r, (unsigned long long)got);
            free(cb);
            free(kb2);
        }
    }
    char notes[200];
    snprintf(notes, sizeof notes, "%d kills of `simulate --fsync flush`; %llu records after them, all readable; "
             "%llu torn tails (the record in flight)", rounds, records, tails);
    row("ppxd SIGKILL while writing", records, kills, 0, notes);
    free(cmd), free(ppxd), free(clean), free(killed);
}

/* ---- part 3: hostile ZMTP peers ---------------------------------------------------- */

enum { BP_RANDOM, BP_GREETING_RANDOM, BP_READY_RANDOM_FRAMES, BP_CURVE, BP_PUB, BP_HUGE_FRAME, BP_SILENT,
       BP_GARBAGE_PPX, BP_CLOSE, BP_KINDS };

typedef struct bad_peer {
    char endpoint[128];
    int lfd;
    pthread_t thread;
    atomic_int stop;
    atomic_ulong sessions;
    uint64_t seed;
} bad_peer;

static const uint8_t g_greeting[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 1, 'N', 'U', 'L', 'L'};
static const uint8_t g_ready_rep[] = {0x04, 25, 5,   'R', 'E', 'A', 'D', 'Y', 11, 'S', 'o', 'c', 'k', 'e',
                                      't',  '-', 'T', 'y', 'p', 'e', 0,   0,   0,  3,   'R', 'E', 'P'};

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        b += k, n -= (size_t)k;
    }
}

static void *bad_peer_main(void *arg)
{
    bad_peer *bp = arg;
    uint64_t s = bp->seed;
    while (!atomic_load(&bp->stop)) {
        struct pollfd p = {bp->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(bp->lfd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&bp->sessions, 1);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int kind = (int)((s >> 33) % BP_KINDS);
        uint8_t junk[4096];
        size_t nj = 1 + (size_t)((s >> 13) % sizeof junk);
        for (size_t i = 0; i < nj; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            junk[i] = (uint8_t)(s >> 40);
        }
        uint8_t g[64];
        memcpy(g, g_greeting, 64);
        switch (kind) {
        case BP_RANDOM: send_all(fd, junk, nj); break;
        case BP_GREETING_RANDOM:
            send_all(fd, g, 64);
            send_all(fd, junk, nj);
            break;
        case BP_READY_RANDOM_FRAMES:
            send_all(fd, g, 64);
            send_all(fd, g_ready_rep, sizeof g_ready_rep);
            send_all(fd, junk, nj);
            break;
        case BP_CURVE:
            memcpy(g + 12, "CURVE", 5);
            send_all(fd, g, 64);
            break;
        case BP_PUB: {
            uint8_t r[sizeof g_ready_rep];
            memcpy(r, g_ready_rep, sizeof r);
            memcpy(r + 24, "PUB", 3);
            send_all(fd, g, 64);
            send_all(fd, r, sizeof r);
            break;
        }
        case BP_HUGE_FRAME: {
            static const uint8_t huge[11] = {0x01, 0x00, 0x02, 0, 0, 0, 0x10, 0, 0, 0, 0}; /* 2^44 bytes */
            send_all(fd, g, 64);
            send_all(fd, g_ready_rep, sizeof g_ready_rep);
            send_all(fd, huge, sizeof huge);
            break;
        }
        case BP_GARBAGE_PPX: {
            uint8_t fr[4 + 256];
            size_t bl = nj < 256 ? nj : 256;
            fr[0] = 0x01, fr[1] = 0x00, fr[2] = 0x00, fr[3] = (uint8_t)bl;
            memcpy(fr + 4, junk, bl);
            send_all(fd, g, 64);
            send_all(fd, g_ready_rep, sizeof g_ready_rep);
            send_all(fd, fr, 4 + bl);
            break;
        }
        case BP_CLOSE:
        case BP_SILENT:
        default: break;
        }
        /* Hold the connection a little (silent peers: until ppxd gives up),
         * reading what ppxd sends, then close. */
        double until = tk_now() + (kind == BP_SILENT ? 2.0 : 0.2);
        while (kind != BP_CLOSE && tk_now() < until && !atomic_load(&bp->stop)) {
            struct pollfd q = {fd, POLLIN, 0};
            if (poll(&q, 1, 20) > 0) {
                uint8_t sink[512];
                if (recv(fd, sink, sizeof sink, 0) <= 0) break;
            }
        }
        close(fd);
    }
    return NULL;
}

static void bad_peer_start(bad_peer *bp, int i, uint64_t seed)
{
    memset(bp, 0, sizeof *bp);
    char name[96];
    snprintf(name, sizeof name, "ppxd-campaign-bad-%d-%d", (int)getpid(), i);
    snprintf(bp->endpoint, sizeof bp->endpoint, "ipc://@%s", name);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path + 1, name, strlen(name));
    bp->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(bp->lfd >= 0);
    cr_assert_eq(bind(bp->lfd, (struct sockaddr *)&a,
                      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name))), 0);
    cr_assert_eq(listen(bp->lfd, 16), 0);
    bp->seed = seed;
    cr_assert_eq(pthread_create(&bp->thread, NULL, bad_peer_main, bp), 0);
}

static unsigned long bad_peer_stop(bad_peer *bp)
{
    atomic_store(&bp->stop, 1);
    pthread_join(bp->thread, NULL);
    close(bp->lfd);
    return atomic_load(&bp->sessions);
}

static void stop_good_sim(void)
{
    if (g_good_sim > 0) tk_stop(g_good_sim, 1000);
    g_good_sim = 0;
    remove_dir();
}

Test(campaign, bad_zmtp_peers, .init = make_dir, .fini = stop_good_sim)
{
    rand_init(3);
    int jobs = full_scale() ? 40 : 3, peers = full_scale() ? 16 : 8;
    char *ppxd = tk_build_path("ppxd"), *gauss = tk_build_path("examples/gaussian");
    char *clean = path_in("clean.ppxt"), *bad = path_in("bad.ppxt");
    char good_ep[128];
    tk_endpoint(good_ep, sizeof good_ep, "campaign-good");
    char *sim_argv[] = {gauss, good_ep, NULL};
    pid_t sim = g_good_sim = tk_spawn(sim_argv);
    cr_assert(sim > 0);
    /* Timeouts long enough that the good simulator is never dropped on a
     * loaded machine (a connected simulator is not restarted); silent
     * peers are simply left behind when the job is done. */
    char *argv[64] = {ppxd, "simulate", "--connect", good_ep, "-n", "200", "--seed", "9", "--timeout-ms", "10000",
                      "--start-timeout-ms", "10000", "--quiet", "-o", clean};
    int k = 15;
    argv[k] = NULL;
    pid_t pid = spawn_out(argv, NULL);
    int st = tk_wait(pid, 120000);
    cr_assert_eq(exit_code(st), 0, "clean --connect run: status %d", st);
    unsigned long sessions = 0;
    for (int j = 0; j < jobs; j++) {
        bad_peer bp[16];
        k = 13;
        argv[k++] = "-o";
        argv[k++] = bad;
        for (int i = 0; i < peers; i++) {
            bad_peer_start(&bp[i], i, rnd());
            argv[k++] = "--connect";
            argv[k++] = bp[i].endpoint;
        }
        argv[k] = NULL;
        pid = spawn_out(argv, NULL);
        st = tk_wait(pid, 120000);
        for (int i = 0; i < peers; i++) sessions += bad_peer_stop(&bp[i]);
        cr_assert_eq(exit_code(st), 0, "job %d with hostile peers: status %d", j, st);
        check_trace_file(bad, 200, NULL, NULL);
        cr_assert(same_records(bad, clean, 0), "job %d: traces differ from the good simulator's alone", j);
        unlink(bad);
    }
    tk_stop(sim, 2000);
    g_good_sim = 0;
    char notes[200];
    snprintf(notes, sizeof notes, "%d jobs, 1 good + %d hostile --connect peers each (%d kinds); n 200 each, "
             "bit-identical", jobs, peers, BP_KINDS);
    row("hostile ZMTP peers", sessions, sessions, 0, notes);
    cr_assert_gt(sessions, 0);
    free(ppxd), free(gauss), free(clean), free(bad);
}

/* ---- part 4: malformed and concurrent queries -------------------------------------- */

static void write_model(const char *path)
{
    model_file *m = model_file_new(MODEL_NPE_MAF, 2, 3);
    cr_assert_not_null(m);
    m->flow = flow_config_default(FLOW_MAF, 2, 3);
    m->flow.n_transforms = 2;
    m->flow.hidden = 16;
    flow *f = flow_new(&m->flow, 8);
    rng r;
    rng_seed(&r, 3, 0);
    flow_init(f, &r);
    size_t np = flow_n_params(f);
    float *params = malloc(np * sizeof *params);
    flow_get_params(f, params);
    cr_assert_eq(model_file_set_params(m, params, np), 0);
    free(params);
    flow_destroy(&f);
    char err[256];
    const char *spec[1] = {"normal:0:1x2"};
    prior *p = prior_parse(spec, 1, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(model_file_set_prior(m, p), 0);
    prior_destroy(&p);
    cr_assert_eq(model_file_save(m, path, err, sizeof err), 0, "%s", err);
    model_file_destroy(&m);
}

static long proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

typedef struct query_arg {
    const char *endpoint;
    int clients, per_client;
    uint64_t seed;
    unsigned long sent, answered, malformed_sent, busy, ok;
    int failed;
} query_arg;

/* One request of a random kind into buf (cap bytes); its length and
 * whether it is multi-frame (then buf holds the first frame and a second
 * frame "x" follows). */
static size_t make_request(ppxq_encoder *enc, uint64_t *s, uint8_t *buf, size_t cap, int *multi, int *malformed)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    int kind = (int)((*s >> 33) % 8);
    static const double obs[3] = {0.1, 0.2, 0.3};
    ppxq_msg m;
    ppxq_msg_init(&m);
    m.request_id = *s >> 20;
    m.type = PPXQ_SAMPLE;
    m.model = "m";
    m.observations = (ppxq_matrix){1, 3, obs};
    m.n = 50;
    m.seed = 1;
    if (kind == 1) m.type = PPXQ_STATUS;
    if (kind == 2) m.version = 99;
    if (kind == 3) m.model = "nope";
    if (kind == 4) m.n = 4000000; /* over --max-n */
    size_t len;
    ppxq_error err;
    const uint8_t *b = ppxq_encode(enc, &m, &len, &err);
    cr_assert_not_null(b);
    if (len > cap) len = cap;
    memcpy(buf, b, len);
    *multi = kind == 7;
    *malformed = kind >= 5;
    if (kind == 5) /* flipped bytes */
        for (int i = 0; i < 4; i++) {
            *s = *s * 6364136223846793005ull + 1442695040888963407ull;
            buf[(*s >> 33) % len] ^= (uint8_t)(1 + (*s >> 50) % 255);
        }
    if (kind == 6) len = 1 + (size_t)((*s >> 40) % (len - 1)); /* truncated */
    return len;
}

static void *query_thread(void *p)
{
    query_arg *a = p;
    void *ctx = zmq_ctx_new();
    void **socks = calloc((size_t)a->clients, sizeof *socks);
    int *pending = calloc((size_t)a->clients, sizeof *pending), *left = calloc((size_t)a->clients, sizeof *left);
    zmq_pollitem_t *items = calloc((size_t)a->clients, sizeof *items);
    ppxq_encoder *enc = ppxq_encoder_new();
    uint64_t s = a->seed;
    uint8_t buf[4096];
    for (int i = 0; i < a->clients; i++) {
        socks[i] = zmq_socket(ctx, ZMQ_DEALER);
        int linger = 0;
        zmq_setsockopt(socks[i], ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(socks[i], a->endpoint) != 0) a->failed = 1;
        left[i] = a->per_client;
        items[i] = (zmq_pollitem_t){socks[i], 0, ZMQ_POLLIN, 0};
    }
    double deadline = tk_now() + 120;
    int outstanding = 0;
    /* every client sends its first request at once: maximal concurrency */
    for (;;) {
        for (int i = 0; i < a->clients; i++)
            if (!pending[i] && left[i] > 0) {
                int multi, malformed;
                size_t len = make_request(enc, &s, buf, sizeof buf, &multi, &malformed);
                zmq_send(socks[i], "", 0, ZMQ_SNDMORE);
                zmq_send(socks[i], buf, len, multi ? ZMQ_SNDMORE : 0);
                if (multi) zmq_send(socks[i], "x", 1, 0);
                pending[i] = 1;
                left[i]--;
                outstanding++;
                a->sent++;
                a->malformed_sent += malformed;
            }
        if (!outstanding || tk_now() > deadline) break;
        if (zmq_poll(items, a->clients, 200) <= 0) continue;
        for (int i = 0; i < a->clients; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            zmq_msg_t fr;
            zmq_msg_init(&fr);
            int nfr = 0, more = 1;
            ppxq_msg rp;
            ppxq_msg_init(&rp);
            int decoded = 0;
            while (more) {
                if (zmq_msg_recv(&fr, socks[i], 0) < 0) break;
                more = zmq_msg_more(&fr);
                if (nfr++ == 1)
                    decoded = ppxq_decode(zmq_msg_data(&fr), zmq_msg_size(&fr), 0, &rp, NULL, NULL) == PPXQ_R_OK;
            }
            zmq_msg_close(&fr);
            if (!decoded) a->failed = 1; /* every reply is a valid message */
            else {
                a->busy += rp.type == PPXQ_ERROR && rp.code == PPXQ_BUSY;
                a->ok += rp.type != PPXQ_ERROR;
            }
            ppxq_msg_clear(&rp);
            if (pending[i]) {
                pending[i] = 0;
                outstanding--;
                a->answered++;
            } else {
                a->failed = 1; /* a reply nobody asked for */
            }
        }
    }
    for (int i = 0; i < a->clients; i++) zmq_close(socks[i]);
    zmq_ctx_term(ctx);
    ppxq_encoder_destroy(&enc);
    free(socks), free(pending), free(left), free(items);
    return NULL;
}

Test(campaign, malformed_concurrent_queries, .init = make_dir, .fini = remove_dir)
{
    rand_init(4);
    int clients = full_scale() ? 1000 : 200, per_client = full_scale() ? 5 : 2, threads = 4;
    char *model = path_in("m.ppxm"), *ppxd = tk_build_path("ppxd");
    write_model(model);
    char ep[128], modelarg[200];
    tk_endpoint(ep, sizeof ep, "campaign-serve");
    snprintf(modelarg, sizeof modelarg, "m=%s", model);
    char *argv[] = {ppxd, "serve", "--serve", ep, "--model", modelarg, "--serve-threads", "2", "--max-n", "100000",
                    "--max-request-bytes", "65536", "--queue", "256", "--quiet", NULL};
    pid_t srv = tk_spawn(argv);
    cr_assert(srv > 0);
    /* ready when it answers a Status */
    ppxq_encoder *enc = ppxq_encoder_new();
    {
        void *ctx = zmq_ctx_new();
        int up = 0;
        for (int tries = 0; tries < 100 && !up; tries++) {
            void *s = zmq_socket(ctx, ZMQ_DEALER);
            int linger = 0;
            zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
            zmq_connect(s, ep);
            ppxq_msg m;
            ppxq_msg_init(&m);
            m.type = PPXQ_STATUS;
            size_t len;
            const uint8_t *b = ppxq_encode(enc, &m, &len, NULL);
            zmq_send(s, "", 0, ZMQ_SNDMORE);
            zmq_send(s, b, len, 0);
            zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
            up = zmq_poll(&it, 1, 200) == 1;
            zmq_close(s);
        }
        zmq_ctx_term(ctx);
        cr_assert(up, "ppxd serve did not come up");
    }
    long rss0 = proc_kib(srv, "VmRSS");
    pthread_t th[4];
    query_arg qa[4];
    for (int t = 0; t < threads; t++) {
        memset(&qa[t], 0, sizeof qa[t]);
        qa[t].endpoint = ep;
        qa[t].clients = clients / threads;
        qa[t].per_client = per_client;
        qa[t].seed = rnd();
        pthread_create(&th[t], NULL, query_thread, &qa[t]);
    }
    unsigned long sent = 0, answered = 0, malformed = 0, busy = 0, ok = 0;
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        sent += qa[t].sent, answered += qa[t].answered, malformed += qa[t].malformed_sent, busy += qa[t].busy;
        ok += qa[t].ok;
        failed |= qa[t].failed;
    }
    long hwm = proc_kib(srv, "VmHWM");
    int status_alive = kill(srv, 0) == 0;
    int st = tk_stop(srv, 5000);
    ppxq_encoder_destroy(&enc);
    char notes[240];
    snprintf(notes, sizeof notes, "%d clients at once, %lu requests (%lu malformed), %lu answered (%lu BUSY, %lu "
             "replies); peak RSS %ld MiB (idle %ld MiB)", clients, sent, malformed, answered, busy, ok, hwm / 1024,
             rss0 / 1024);
    row("malformed/concurrent queries", sent, malformed, sent - answered, notes);
    cr_assert(status_alive, "ppxd serve died under the queries");
    cr_assert_eq(exit_code(st), 0, "ppxd serve did not stop cleanly: status %d", st);
    cr_assert_eq(failed, 0, "a client saw an undecodable or unsolicited reply, or could not connect");
    cr_assert_eq(answered, sent, "%lu of %lu requests got no reply", sent - answered, sent);
    cr_assert_gt(ok, 0);
    /* bounded: --queue 256 requests of at most 64 KiB, replies of 50 x 2
     * doubles, 1,000 connections' buffers; far below this */
    cr_assert(hwm > 0 && hwm < 512 * 1024, "peak RSS %ld KiB", hwm);
    free(model), free(ppxd);
}
