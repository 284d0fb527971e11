/* testkit.c — see testkit.h. */
#include "testkit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

char *tk_build_path(const char *rel)
{
    const char *b = getenv("PPXD_BUILD");
    if (!b || !*b) b = "build";
    size_t n = strlen(b) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", b, rel);
    return p;
}

void tk_endpoint(char *buf, size_t len, const char *tag)
{
    /* Criterion runs tests in forked processes: pid + time + counter keeps
     * concurrent tests apart. */
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, len, "ipc://@ppxd-test-%d-%s-%ld-%u", (int)getpid(), tag, (long)(ts.tv_nsec / 1000), counter++);
}

int tk_free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

void tk_child_dies_with_parent(void)
{
    const pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
}

pid_t tk_spawn(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        tk_child_dies_with_parent(); /* a test that fails mid-way leaves no process behind */
        if (!getenv("PPXD_TEST_VERBOSE")) {
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

double tk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int tk_run(char *const argv[], const char *out_path, const char *err_path, int timeout_ms)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        tk_child_dies_with_parent(); /* a test that fails mid-way leaves no process behind */
        int fo = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = tk_wait(pid, timeout_ms);
    if (st == -1) {
        tk_stop(pid, 100);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int tk_wait(pid_t pid, int timeout_ms)
{
    double end = tk_now() + timeout_ms / 1000.0;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0) return -1;
        if (tk_now() > end) return -1;
        usleep(2000);
    }
}

pid_t tk_spawn_err(char *const argv[], const char *err_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        tk_child_dies_with_parent(); /* a test that fails mid-way leaves no process behind */
        int null = open("/dev/null", O_RDWR);
        int fd = err_path ? open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : null;
        dup2(null, 0);
        dup2(null, 1);
        if (!getenv("PPXD_TEST_VERBOSE")) dup2(fd < 0 ? null : fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int tk_exit_code(pid_t pid, int timeout_ms)
{
    int st = tk_wait(pid, timeout_ms);
    if (st == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

long tk_stat_after(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    if (!p) return -1;
    p += strlen(key);
    while (*p == ' ') p++;
    return strtol(p, NULL, 10);
}

unsigned char *tk_export_npy(const char *ppxt, const char *names, size_t *len)
{
    char *ppxd = tk_build_path("ppxd"), *npy = NULL;
    unsigned char *b = NULL;
    if (ppxd && asprintf(&npy, "%s.%s.npy", ppxt, names) > 0) {
        char *argv[] = {ppxd, "export", (char *)ppxt, "--names", (char *)names, "-o", npy, NULL};
        if (tk_run(argv, NULL, NULL, 60000) == 0) b = tk_slurp(npy, len);
    }
    free(ppxd);
    free(npy);
    return b;
}

unsigned char *tk_simulate_npy(const char *sim_rel, int j, const char *n, const char *seed, const char *out,
                               const char *names, size_t *len)
{
    char *ppxd = tk_build_path("ppxd"), *sim = tk_build_path(sim_rel), *cmd = NULL, jj[16];
    unsigned char *b = NULL;
    snprintf(jj, sizeof jj, "%d", j);
    if (ppxd && sim && asprintf(&cmd, "%s {endpoint}", sim) > 0) {
        char *argv[] = {ppxd, "simulate", "--sim-cmd", cmd, "-j", jj, "-n", (char *)n, "--seed", (char *)seed,
                        "-o", (char *)out, "--quiet", NULL};
        if (tk_run(argv, NULL, NULL, 120000) == 0) b = tk_export_npy(out, names, len);
    }
    free(ppxd);
    free(sim);
    free(cmd);
    return b;
}

char *tk_padded_field(const char *text, const char *field)
{
    char key[64];
    snprintf(key, sizeof key, "\n%-12s ", field);
    const char *p = strstr(text, key);
    char *v = strdup(p ? p + strlen(key) : "");
    if (v) v[strcspn(v, "\n")] = 0;
    return v;
}

int tk_stop(pid_t pid, int grace_ms)
{
    if (pid <= 0) return -1;
    kill(pid, SIGTERM);
    int st = tk_wait(pid, grace_ms);
    if (st == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    return st;
}

int tk_engine_open(tk_engine *e, const char *endpoint, int timeout_ms)
{
    memset(e, 0, sizeof *e);
    ppx_msg_init(&e->msg);
    e->ctx = zmq_ctx_new();
    e->sock = e->ctx ? zmq_socket(e->ctx, ZMQ_REQ) : NULL;
    e->enc = ppx_encoder_new();
    e->frame_ = malloc(sizeof(zmq_msg_t));
    if (!e->sock || !e->enc || !e->frame_) return -1;
    zmq_msg_init((zmq_msg_t *)e->frame_);
    int linger = 0;
    zmq_setsockopt(e->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(e->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(e->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    return zmq_connect(e->sock, endpoint);
}

void tk_engine_close(tk_engine *e)
{
    ppx_msg_clear(&e->msg);
    if (e->frame_) {
        zmq_msg_close((zmq_msg_t *)e->frame_);
        free(e->frame_);
    }
    if (e->sock) zmq_close(e->sock);
    if (e->ctx) zmq_ctx_term(e->ctx);
    ppx_encoder_destroy(&e->enc);
    memset(e, 0, sizeof *e);
}

static int engine_recv(tk_engine *e)
{
    zmq_msg_t *f = (zmq_msg_t *)e->frame_;
    ppx_msg_clear(&e->msg);
    zmq_msg_close(f);
    zmq_msg_init(f);
    if (zmq_msg_recv(f, e->sock, 0) < 0) return -1;
    ppx_error err;
    if (ppx_decode(zmq_msg_data(f), zmq_msg_size(f), NULL, &e->msg, &err) != PPX_OK) {
        fprintf(stderr, "tk_engine: undecodable reply: %s\n", err.message);
        return -1;
    }
    return 0;
}

int tk_engine_call_raw(tk_engine *e, const void *bytes, size_t len)
{
    if (zmq_send(e->sock, bytes, len, 0) < 0) return -1;
    return engine_recv(e);
}

int tk_engine_call(tk_engine *e, const ppx_msg *m)
{
    size_t len;
    ppx_error err;
    const uint8_t *b = ppx_encode(e->enc, m, &len, &err);
    if (!b) return -1;
    return tk_engine_call_raw(e, b, len);
}

int tk_engine_call_type(tk_engine *e, ppx_msg_type t)
{
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = t;
    return tk_engine_call(e, &m);
}

int tk_engine_reply_values(tk_engine *e, const double *x, size_t n)
{
    ppx_msg m;
    int32_t shape[1] = {(int32_t)n};
    ppx_msg_init(&m);
    m.type = PPX_MSG_SAMPLE_RESULT;
    m.value.data = x;
    m.value.len = n;
    m.value.shape = n == 1 ? NULL : shape;
    m.value.ndim = n == 1 ? 0 : 1;
    return tk_engine_call(e, &m);
}

typedef struct raw_srv {
    const char *endpoint;
    size_t rep_bytes;
    long count;
} raw_srv;

static void *raw_thread(void *arg)
{
    raw_srv *r = arg;
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_REP);
    zmq_bind(sock, r->endpoint);
    char *buf = calloc(1, r->rep_bytes + 4096);
    for (long i = 0; i < r->count; i++) {
        zmq_recv(sock, buf, 4096, 0);
        zmq_send(sock, buf, r->rep_bytes, 0);
    }
    free(buf);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return NULL;
}

double tk_raw_pingpong(const char *endpoint, size_t req_bytes, size_t rep_bytes, int count, int repeats)
{
    raw_srv r = {endpoint, rep_bytes, (long)count * repeats};
    pthread_t th;
    pthread_create(&th, NULL, raw_thread, &r);
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_REQ);
    zmq_connect(sock, endpoint);
    char *buf = calloc(1, req_bytes + 4096);
    double best = 1e30;
    for (int rep = 0; rep < repeats; rep++) {
        double t0 = tk_now();
        for (int i = 0; i < count; i++) {
            zmq_send(sock, buf, req_bytes, 0);
            zmq_recv(sock, buf, 4096, 0);
        }
        double dt = (tk_now() - t0) / count;
        if (dt < best) best = dt;
    }
    free(buf);
    zmq_close(sock);
    pthread_join(th, NULL);
    zmq_ctx_term(ctx);
    return best;
}

/* What a REQ process of tk_raw_pingpong_procs reports through the pipe
 * (smaller than PIPE_BUF: concurrent writes stay whole). */
typedef struct pp_report {
    double wall, cpu;
} pp_report;

#define PP_WARMUP 200        /* round trips before the timed ones: connect, caches */
#define PP_TIMEOUT_MS 10000  /* a side that stops answering fails the measurement */

static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One side of a pair, in a forked process: REP serves warm-up + count round
 * trips; REQ makes the warm-up ones, waits for `go` to reach end of file
 * (every pair starts together) and reports the timed ones on `report`.
 * Returns the process's exit code. */
static int pp_side(int req, const char *endpoint, size_t out_bytes, int count, int go, int report)
{
    void *ctx = zmq_ctx_new(), *sock = ctx ? zmq_socket(ctx, req ? ZMQ_REQ : ZMQ_REP) : NULL;
    char *buf = calloc(1, out_bytes + 4096);
    int rc = 1, timeout = PP_TIMEOUT_MS, linger = 0;
    if (!sock || !buf) goto out;
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if ((req ? zmq_connect(sock, endpoint) : zmq_bind(sock, endpoint)) < 0) goto out;
    if (!req) {
        for (long i = 0; i < (long)PP_WARMUP + count; i++)
            if (zmq_recv(sock, buf, 4096, 0) < 0 || zmq_send(sock, buf, out_bytes, 0) < 0) goto out;
        rc = 0;
        goto out;
    }
    for (int i = 0; i < PP_WARMUP; i++)
        if (zmq_send(sock, buf, out_bytes, 0) < 0 || zmq_recv(sock, buf, 4096, 0) < 0) goto out;
    char c;
    while (read(go, &c, 1) > 0) {
    }
    double t0 = tk_now(), c0 = process_cpu_s();
    for (int i = 0; i < count; i++)
        if (zmq_send(sock, buf, out_bytes, 0) < 0 || zmq_recv(sock, buf, 4096, 0) < 0) goto out;
    pp_report r = {(tk_now() - t0) / count, (process_cpu_s() - c0) / (2.0 * count)};
    rc = write(report, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1;
out:
    free(buf);
    if (sock) zmq_close(sock);
    if (ctx) zmq_ctx_term(ctx);
    return rc;
}

int tk_raw_pingpong_procs(const char *tag, int pairs, size_t req_bytes, size_t rep_bytes, int count, tk_pingpong *out)
{
    int go[2], rep[2];
    if (pairs < 1 || count < 1 || pipe(go) < 0) return -1;
    if (pipe(rep) < 0) {
        close(go[0]);
        close(go[1]);
        return -1;
    }
    pid_t *pids = calloc(2 * (size_t)pairs, sizeof *pids);
    int started = 0, ok = pids != NULL;
    for (int i = 0; ok && i < pairs; i++) {
        char endpoint[128];
        tk_endpoint(endpoint, sizeof endpoint, tag);
        for (int req = 0; ok && req < 2; req++) {
            pid_t pid = fork();
            if (pid < 0) {
                ok = 0;
                break;
            }
            if (pid == 0) {
                /* Only the parent keeps go's write end: closing it starts every REQ at once. */
                close(go[1]);
                close(rep[0]);
                _exit(pp_side(req, endpoint, req ? req_bytes : rep_bytes, count, go[0], rep[1]));
            }
            pids[started++] = pid;
        }
    }
    close(go[0]);
    close(go[1]);
    close(rep[1]);
    double wall = 0, cpu = 0;
    int got = 0;
    pp_report r;
    while (ok && got < pairs && read(rep[0], &r, sizeof r) == (ssize_t)sizeof r) {
        wall += r.wall;
        cpu += r.cpu;
        got++;
    }
    close(rep[0]);
    for (int i = 0; i < started; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = 0;
    }
    free(pids);
    if (!ok || got < pairs) return -1;
    out->wall = wall / pairs;
    out->cpu = cpu / pairs;
    return 0;
}

int tk_tmpdir(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "/tmp/ppxd-test-%s-XXXXXX", tag);
    return mkdtemp(buf) ? 0 : -1;
}

void tk_tmpdir_remove(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir) return;
    struct dirent *de;
    char p[512];
    while ((de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        unlink(p);
    }
    closedir(dir);
    rmdir(path);
}

unsigned char *tk_slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = 0;
        *size = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}
