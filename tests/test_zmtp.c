/* Tests of server/zmtp.h, ppxd's own ZMTP 3 REQ client.
 *
 * Against real libzmq REP and ROUTER sockets (each in a thread with its own
 * context, as in another process): handshake and round trips of every frame
 * size class over ipc (abstract and path), tcp IPv4, IPv6 and a hostname;
 * connecting before the peer binds; the size limit; a peer closing
 * mid-request; libzmq heartbeats (PING) answered.
 *
 * Endpoint syntax: zmtp_endpoint_check accepts the well-formed endpoints
 * without a name lookup, and refuses the malformed ones with the same words
 * as zmtp_conn_new.
 *
 * Against a raw-socket fake peer that follows a script: the exact bytes we
 * send (greeting, READY, request frames), then each kind of bad peer (bad
 * signature, ZMTP 1.0 and 2.0, CURVE, PUB socket type, malformed READY,
 * ERROR, garbage flags, a reply without delimiter, a multi-part reply, an
 * oversized frame announced, an unsolicited message, two replies to one
 * request, EOF mid-handshake) is
 * a clear error and no crash; PING before and right after a reply gets
 * PONG with the same context.
 *
 * No timing assertions: every wait is bounded (WAIT_S) only so that a
 * broken build fails instead of hanging.  No Criterion .timeout (see
 * test_engine.c: it leaks under LeakSanitizer with parallel jobs). */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "testkit.h"
#include "zmtp.h"

#define WAIT_S 20.0
#define LIMIT (4u << 20)

/* --- driving a connection ----------------------------------------------------- */

/* Poll and progress c for up to `seconds`: 1 with a reply, -1 when it
 * failed, 0 when the time ran out. */
static int drive(zmtp_conn *c, const uint8_t **body, size_t *len, double seconds)
{
    double end = tk_now() + seconds;
    while (tk_now() < end) {
        int fd = zmtp_conn_fd(c), ready = 0;
        if (fd >= 0) {
            int ev = zmtp_conn_events(c);
            struct pollfd pfd = {fd, (short)((ev & ZMTP_READ ? POLLIN : 0) | (ev & ZMTP_WRITE ? POLLOUT : 0)), 0};
            int n = poll(&pfd, 1, 20);
            if (n < 0 && errno != EINTR) return -1;
            if (n <= 0) continue;
            ready = (pfd.revents & POLLIN ? ZMTP_READ : 0) | (pfd.revents & POLLOUT ? ZMTP_WRITE : 0) |
                    (pfd.revents & (POLLERR | POLLHUP) ? ZMTP_HANGUP : 0);
        } else {
            double at = zmtp_conn_retry_at(c);
            if (at <= 0) return zmtp_conn_io(c, 0, body, len); /* failed */
            double dt = at - tk_now();
            if (dt > 0) usleep((useconds_t)(dt * 1e6) + 100);
        }
        int r = zmtp_conn_io(c, ready, body, len);
        if (r != 0) return r;
    }
    return 0;
}

static int call(zmtp_conn *c, const void *req, size_t n, const uint8_t **body, size_t *len)
{
    if (zmtp_conn_send(c, req, n) < 0) return -1;
    return drive(c, body, len, WAIT_S);
}

static zmtp_conn *conn(const char *endpoint, size_t limit)
{
    char err[320];
    zmtp_conn *c = zmtp_conn_new(endpoint, limit, err, sizeof err);
    cr_assert_not_null(c, "zmtp_conn_new(%s): %s", endpoint, err);
    return c;
}

/* --- a libzmq peer in a thread --------------------------------------------------- */

typedef enum zmode {
    ZM_ECHO,             /* reply with the request */
    ZM_SIZED,            /* reply with reply_size bytes */
    ZM_CLOSE_ON_REQUEST, /* close the socket instead of replying */
    ZM_MULTI             /* (ROUTER) reply with two body frames */
} zmode;

typedef struct zpeer {
    char endpoint[256];
    int type; /* ZMQ_REP or ZMQ_ROUTER */
    int ipv6;
    zmode mode;
    size_t reply_size;
    int heartbeat_ivl_ms, heartbeat_timeout_ms;
    pthread_t thread;
    atomic_int bound; /* 1 bound, -1 bind failed */
    atomic_int stop;
    atomic_long served;
} zpeer;

static void zpeer_init(zpeer *z, const char *endpoint, int type, zmode mode)
{
    memset(z, 0, sizeof *z);
    snprintf(z->endpoint, sizeof z->endpoint, "%s", endpoint);
    z->type = type;
    z->mode = mode;
}

static void *zpeer_main(void *arg)
{
    zpeer *z = arg;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, z->type);
    int linger = 0, rcvto = 20;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &rcvto, sizeof rcvto);
    if (z->ipv6) zmq_setsockopt(s, ZMQ_IPV6, &z->ipv6, sizeof z->ipv6);
    if (z->heartbeat_ivl_ms) {
        zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &z->heartbeat_ivl_ms, sizeof(int));
        zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &z->heartbeat_timeout_ms, sizeof(int));
    }
    if (zmq_bind(s, z->endpoint) != 0) {
        z->bound = -1;
        zmq_close(s);
        zmq_ctx_term(ctx);
        return NULL;
    }
    z->bound = 1;
    while (!z->stop) {
        zmq_msg_t part[4];
        int np = 0, more = 1;
        while (more && np < 4) {
            zmq_msg_init(&part[np]);
            if (zmq_msg_recv(&part[np], s, 0) < 0) {
                zmq_msg_close(&part[np]);
                break;
            }
            more = zmq_msg_more(&part[np]);
            np++;
        }
        if (np == 0) continue; /* receive timeout: look at stop */
        if (z->mode == ZM_CLOSE_ON_REQUEST) {
            for (int i = 0; i < np; i++) zmq_msg_close(&part[i]);
            break;
        }
        zmq_msg_t *body = &part[np - 1];
        if (z->type == ZMQ_ROUTER) { /* identity, empty delimiter */
            zmq_send(s, zmq_msg_data(&part[0]), zmq_msg_size(&part[0]), ZMQ_SNDMORE);
            zmq_send(s, "", 0, ZMQ_SNDMORE);
        }
        if (z->mode == ZM_ECHO) {
            zmq_send(s, zmq_msg_data(body), zmq_msg_size(body), 0);
        } else if (z->mode == ZM_SIZED) {
            char *b = calloc(1, z->reply_size + 1);
            zmq_send(s, b, z->reply_size, 0);
            free(b);
        } else if (z->mode == ZM_MULTI) {
            zmq_send(s, "a", 1, ZMQ_SNDMORE);
            zmq_send(s, "b", 1, 0);
        }
        for (int i = 0; i < np; i++) zmq_msg_close(&part[i]);
        z->served++;
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

static void zpeer_start(zpeer *z)
{
    cr_assert_eq(pthread_create(&z->thread, NULL, zpeer_main, z), 0);
    double end = tk_now() + WAIT_S;
    while (z->bound == 0 && tk_now() < end) usleep(1000);
    cr_assert_eq(z->bound, 1, "libzmq could not bind %s", z->endpoint);
}

static void zpeer_stop(zpeer *z)
{
    z->stop = 1;
    pthread_join(z->thread, NULL);
}

/* --- round trips ---------------------------------------------------------------- */

/* Many round trips with every frame size class: empty, short (1, 255),
 * long (256 and up, 1 MiB), each byte checked; 8-byte aligned replies. */
static void round_trips(zmtp_conn *c, int n)
{
    static const size_t sizes[] = {0, 1, 255, 256, 257, 100, 70000, 1u << 20};
    const size_t n_sizes = sizeof sizes / sizeof sizes[0];
    uint8_t *req = malloc(1u << 20);
    cr_assert_not_null(req);
    for (int i = 0; i < n; i++) {
        size_t len = sizes[i % n_sizes], got;
        for (size_t k = 0; k < len; k++) req[k] = (uint8_t)(k * 31 + i);
        const uint8_t *body;
        int rc = call(c, req, len, &body, &got);
        cr_assert_eq(rc, 1, "round trip %d (%zu bytes): rc %d, %s", i, len, rc, zmtp_conn_error(c));
        cr_assert_eq(got, len, "round trip %d: %zu bytes back for %zu", i, got, len);
        cr_assert(len == 0 || memcmp(body, req, len) == 0, "round trip %d (%zu bytes): bytes differ", i, len);
        cr_assert_eq((uintptr_t)body % 8, 0, "reply body not 8-byte aligned");
    }
    free(req);
    cr_assert(zmtp_conn_is_open(c));
    cr_assert_eq(zmtp_conn_failure(c), ZMTP_OK);
}

static void echo_over(const char *endpoint, int type, int ipv6)
{
    zpeer z;
    zpeer_init(&z, endpoint, type, ZM_ECHO);
    z.ipv6 = ipv6;
    zpeer_start(&z);
    zmtp_conn *c = conn(endpoint, LIMIT);
    round_trips(c, 400);
    zmtp_conn_destroy(&c);
    cr_assert_null(c);
    zpeer_stop(&z);
    cr_assert_eq(z.served, 400);
}

Test(zmtp, round_trips_ipc_abstract)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp");
    echo_over(ep, ZMQ_REP, 0);
}

Test(zmtp, round_trips_ipc_path)
{
    char dir[128], ep[200];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "zmtp"), 0);
    snprintf(ep, sizeof ep, "ipc://%s/sim.sock", dir);
    echo_over(ep, ZMQ_REP, 0);
    tk_tmpdir_remove(dir);
}

Test(zmtp, round_trips_tcp_ipv4)
{
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", tk_free_tcp_port());
    echo_over(ep, ZMQ_REP, 0);
}

/* A hostname, resolved once; localhost may also have ::1, which we try
 * after the IPv4 address that libzmq binds. */
Test(zmtp, round_trips_tcp_hostname)
{
    int port = tk_free_tcp_port();
    char bind_ep[64], ep[64];
    snprintf(bind_ep, sizeof bind_ep, "tcp://127.0.0.1:%d", port);
    snprintf(ep, sizeof ep, "tcp://localhost:%d", port);
    zpeer z;
    zpeer_init(&z, bind_ep, ZMQ_REP, ZM_ECHO);
    zpeer_start(&z);
    zmtp_conn *c = conn(ep, LIMIT);
    round_trips(c, 50);
    zmtp_conn_destroy(&c);
    zpeer_stop(&z);
}

/* A free port on ::1, or -1 when the kernel has no IPv6. */
static int free_ipv6_port(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin6_port);
    close(fd);
    return port;
}

Test(zmtp, round_trips_tcp_ipv6)
{
    int port = free_ipv6_port();
    if (port < 0) cr_skip_test("no IPv6 loopback on this kernel");
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://[::1]:%d", port);
    echo_over(ep, ZMQ_REP, 1);
}

Test(zmtp, round_trips_router_peer)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp-router");
    echo_over(ep, ZMQ_ROUTER, 0);
}

/* --- connecting before the peer binds -------------------------------------------- */

static void connect_first(const char *endpoint, int expect_retry_state)
{
    zmtp_conn *c = conn(endpoint, LIMIT);
    if (expect_retry_state) {
        /* Nothing listens: refused at once, so waiting to retry. */
        cr_assert_eq(zmtp_conn_fd(c), -1);
        cr_assert(zmtp_conn_retry_at(c) > 0);
        cr_assert(strstr(zmtp_conn_error(c), "not connected yet"), "%s", zmtp_conn_error(c));
    }
    /* The request is queued until the handshake. */
    cr_assert_eq(zmtp_conn_send(c, "early", 5), 0);
    const uint8_t *body;
    size_t len;
    cr_assert_eq(drive(c, &body, &len, 0.15), 0, "%s", zmtp_conn_error(c)); /* a few retries, no failure */
    zpeer z;
    zpeer_init(&z, endpoint, ZMQ_REP, ZM_ECHO);
    zpeer_start(&z);
    int rc = drive(c, &body, &len, WAIT_S);
    cr_assert_eq(rc, 1, "rc %d: %s", rc, zmtp_conn_error(c));
    cr_assert_eq(len, 5);
    cr_assert(memcmp(body, "early", 5) == 0);
    round_trips(c, 20);
    zmtp_conn_destroy(&c);
    zpeer_stop(&z);
}

Test(zmtp, connect_before_bind_ipc_abstract)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp-late");
    connect_first(ep, 1);
}

Test(zmtp, connect_before_bind_ipc_path)
{
    char dir[128], ep[200];
    cr_assert_eq(tk_tmpdir(dir, sizeof dir, "zmtp-late"), 0);
    snprintf(ep, sizeof ep, "ipc://%s/sim.sock", dir);
    connect_first(ep, 1);
    tk_tmpdir_remove(dir);
}

Test(zmtp, connect_before_bind_tcp)
{
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", tk_free_tcp_port());
    connect_first(ep, 0); /* tcp may report the refusal later, asynchronously */
}

/* --- libzmq peers that fail ---------------------------------------------------- */

Test(zmtp, oversize_reply_rejected)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp-big");
    zpeer z;
    zpeer_init(&z, ep, ZMQ_REP, ZM_SIZED);
    z.reply_size = 2000;
    zpeer_start(&z);
    zmtp_conn *c = conn(ep, 1000);
    const uint8_t *body;
    size_t len;
    cr_assert_eq(call(c, "x", 1, &body, &len), -1);
    cr_assert_eq(zmtp_conn_failure(c), ZMTP_BAD_PEER);
    cr_assert(strstr(zmtp_conn_error(c), "2000 bytes") && strstr(zmtp_conn_error(c), "1000-byte"), "%s",
              zmtp_conn_error(c));
    /* A failed connection stays failed. */
    cr_assert_eq(zmtp_conn_send(c, "x", 1), -1);
    cr_assert_eq(zmtp_conn_fd(c), -1);
    zmtp_conn_destroy(&c);
    zpeer_stop(&z);
}

Test(zmtp, reply_at_the_limit_accepted)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp-limit");
    zpeer z;
    zpeer_init(&z, ep, ZMQ_REP, ZM_SIZED);
    z.reply_size = 1000;
    zpeer_start(&z);
    zmtp_conn *c = conn(ep, 1000);
    const uint8_t *body;
    size_t len;
    cr_assert_eq(call(c, "x", 1, &body, &len), 1, "%s", zmtp_conn_error(c));
    cr_assert_eq(len, 1000);
    zmtp_conn_destroy(&c);
    zpeer_stop(&z);
}

Test(zmtp, peer_closes_mid_request)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp-close");
    zpeer z;
    zpeer_init(&z, ep, ZMQ_REP, ZM_CLOSE_ON_REQUEST);
    zpeer_start(&z);
    zmtp_conn *c = conn(ep, LIMIT);
    const uint8_t *body;
    size_t len;
    cr_assert_eq(call(c, "run", 3, &body, &len), -1);
    cr_assert_eq(zmtp_conn_failure(c), ZMTP_CLOSED);
    cr_assert(strstr(zmtp_conn_error(c), "connection closed"), "%s", zmtp_conn_error(c));
    zmtp_conn_destroy(&c);
    zpeer_stop(&z);
}

Test(zmtp, router_multi_frame_reply_rejected)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp-multi");
    zpeer z;
    zpeer_init(&z, ep, ZMQ_ROUTER, ZM_MULTI);
    zpeer_start(&z);
    zmtp_conn *c = conn(ep, LIMIT);
    const uint8_t *body;
    size_t len;
    cr_assert_eq(call(c, "x", 1, &body, &len), -1);
    cr_assert_eq(zmtp_conn_failure(c), ZMTP_BAD_PEER);
    cr_assert(strstr(zmtp_conn_error(c), "multi-part"), "%s", zmtp_conn_error(c));
    zmtp_conn_destroy(&c);
    zpeer_stop(&z);
}

/* libzmq with heartbeats PINGs every 20 ms and drops a connection that
 * stays silent for 300 ms after a PING: idle for 1.5 s, we survive only by
 * answering PONG. */
Test(zmtp, libzmq_heartbeats_answered)
{
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp-hb");
    zpeer z;
    zpeer_init(&z, ep, ZMQ_REP, ZM_ECHO);
    z.heartbeat_ivl_ms = 20;
    z.heartbeat_timeout_ms = 300;
    zpeer_start(&z);
    zmtp_conn *c = conn(ep, LIMIT);
    round_trips(c, 3);
    const uint8_t *body;
    size_t len;
    int rc = drive(c, &body, &len, 1.5);
    cr_assert_eq(rc, 0, "idle connection: rc %d, %s", rc, zmtp_conn_error(c));
    round_trips(c, 3);
    zmtp_conn_destroy(&c);
    zpeer_stop(&z);
}

/* Malformed endpoints: zmtp_endpoint_check and zmtp_conn_new refuse the same
 * ones with the same words (the command line relies on the first to refuse
 * what the second would). */
Test(zmtp, bad_endpoints)
{
    char longhost[300] = "tcp://", longpath[200] = "ipc://@";
    memset(longhost + 6, 'h', 256);
    memcpy(longhost + 6 + 256, ":5555", 6);
    memset(longpath + 7, 'x', 150);
    longpath[157] = 0;
    static const struct {
        const char *ep, *why;
    } bad[] = {
        {"bogus", "not a tcp://HOST:PORT or ipc://PATH endpoint"},
        {"", "not a tcp"},
        {"inproc://sim", "not a tcp"},
        {"udp://127.0.0.1:5555", "not a tcp"},
        {"udp://x:1", "not a tcp"},
        {"tcp://127.0.0.1", "want tcp://HOST:PORT"},
        {"tcp://host", "want tcp://HOST:PORT"},
        {"tcp://", "want tcp://HOST:PORT"},
        {"tcp://:5555", "want tcp://HOST:PORT"},
        {"tcp://host:", "port"},
        {"tcp://127.0.0.1:0", "port"},
        {"tcp://127.0.0.1:65536", "port"},
        {"tcp://127.0.0.1:123456", "port"},
        {"tcp://127.0.0.1:55a", "port"},
        {"tcp://127.0.0.1:-1", "port"},
        {"tcp://*:5555", "binding"},
        {"tcp://[::1:5555", "IPv6"},
        {"tcp://[::1]5555", "IPv6"},
        {"tcp://[]:5555", "tcp host empty"},
        {"tcp://10.0.0.1;127.0.0.1:5555", "source"},
        {"ipc://", "want ipc:///path or ipc://@name"},
        {"ipc://@", "want ipc:///path"},
        {"ipc://*", "want ipc:///path"},
    };
    size_t n = sizeof bad / sizeof bad[0];
    for (size_t i = 0; i < n + 2; i++) {
        const char *ep = i < n ? bad[i].ep : i == n ? longhost : longpath;
        const char *why = i < n ? bad[i].why : i == n ? "longer than 255" : "too long";
        char check_err[320] = "", conn_err[320] = "";
        cr_assert_eq(zmtp_endpoint_check(ep, check_err, sizeof check_err), -1, "%s passed the check", ep);
        cr_assert(strstr(check_err, why), "%s: '%s' does not say '%s'", ep, check_err, why);
        cr_assert_null(zmtp_conn_new(ep, LIMIT, conn_err, sizeof conn_err), "%s accepted", ep);
        cr_assert_str_eq(conn_err, check_err, "%s: zmtp_conn_new says otherwise than the check", ep);
    }
    /* The reason is optional. */
    cr_assert_eq(zmtp_endpoint_check("bogus", NULL, 0), -1);
}

/* Well-formed endpoints pass the check without a name lookup: a host that
 * does not resolve is zmtp_conn_new's to report. */
Test(zmtp, good_endpoints_pass_the_check)
{
    static const char *good[] = {
        "tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:65535", "tcp://sim-7.example.org:05555",
        "tcp://no-such-host.invalid:5555", "ipc:///tmp/ppxd-sim.sock", "ipc://relative/sim", "ipc://@ppxd-sim",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char err[320] = "";
        cr_assert_eq(zmtp_endpoint_check(good[i], err, sizeof err), 0, "%s refused: %s", good[i], err);
    }
    char err[320] = "";
    cr_assert_null(zmtp_conn_new("tcp://no-such-host.invalid:5555", LIMIT, err, sizeof err));
    cr_assert(strstr(err, "cannot resolve 'no-such-host.invalid'"), "%s", err);
}

/* --- a raw fake peer ---------------------------------------------------------------- */

typedef enum script {
    SC_ECHO,            /* valid ZMTP 3.0 REP: records our bytes, echoes two requests */
    SC_BAD_SIGNATURE,   /* an HTTP server, say */
    SC_ZMTP1_LONG_ID,   /* ZMTP 1.0 peer with a long identity: 0xFF, length, flags 0 */
    SC_ZMTP2,           /* libzmq 3.x: revision 1 and a socket type byte */
    SC_CURVE,
    SC_PUB,
    SC_NO_SOCKET_TYPE,
    SC_BAD_METADATA,
    SC_ERROR_INSTEAD_OF_READY,
    SC_GARBAGE_FLAGS,
    SC_NO_DELIMITER,
    SC_MULTI_FRAME,
    SC_HUGE_FRAME,
    SC_ANNOUNCE_64M,    /* a long frame announcing 64 MiB, 100 bytes of it sent, then silence */
    SC_UNSOLICITED,
    SC_DOUBLE_REPLY,    /* two replies to one request, in one write */
    SC_EOF_IN_HANDSHAKE,
    SC_PING             /* PING before the reply, and another right after it */
} script;

typedef struct fake {
    script sc;
    int lfd;
    char endpoint[128];
    pthread_t thread;
    uint8_t greeting[64];       /* ours, as received */
    uint8_t ready[256];         /* our READY frame */
    size_t ready_len;
    uint8_t req[2][400];        /* our first two requests (delimiter + body frames) */
    size_t req_len[2];
    uint8_t pong[2][64];        /* our PONG frames */
    size_t pong_len[2];
    atomic_int pongs;
    atomic_int finished;        /* the script ran to its end */
} fake;

static int read_exact(int fd, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* One whole frame (header and body) into buf; its length, or -1. */
static long read_frame(int fd, uint8_t *buf, size_t cap)
{
    if (read_exact(fd, buf, 2) < 0) return -1;
    size_t h = 2, size = buf[1];
    if (buf[0] & 2) {
        if (read_exact(fd, buf + 2, 7) < 0) return -1;
        h = 9;
        size = 0;
        for (int i = 1; i < 9; i++) size = size << 8 | buf[i];
    }
    if (h + size > cap) return -1;
    if (read_exact(fd, buf + h, size) < 0) return -1;
    return (long)(h + size);
}

/* Our next request: delimiter frame then body frame, both recorded. */
static int read_request(int fd, uint8_t *buf, size_t cap, size_t *len)
{
    long a = read_frame(fd, buf, cap);
    if (a < 0) return -1;
    long b = read_frame(fd, buf + a, cap - (size_t)a);
    if (b < 0) return -1;
    *len = (size_t)(a + b);
    return 0;
}

static void greeting(uint8_t g[64], int major, int minor, const char *mech)
{
    memset(g, 0, 64);
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = (uint8_t)major;
    g[11] = (uint8_t)minor;
    memcpy(g + 12, mech, strlen(mech));
    g[32] = 1; /* as-server */
}

/* A command frame: name, then data. */
static size_t command(uint8_t *out, const char *name, const void *data, size_t n)
{
    size_t nl = strlen(name);
    out[0] = 0x04;
    out[1] = (uint8_t)(1 + nl + n);
    out[2] = (uint8_t)nl;
    memcpy(out + 3, name, nl);
    memcpy(out + 3 + nl, data, n);
    return 3 + nl + n;
}

/* READY metadata with a Socket-Type (and an Identity, as libzmq sends). */
static size_t ready_frame(uint8_t *out, const char *type)
{
    uint8_t md[128];
    size_t k = 0, tl = strlen(type);
    md[k++] = 11;
    memcpy(md + k, "Socket-Type", 11);
    k += 11;
    md[k++] = 0, md[k++] = 0, md[k++] = 0, md[k++] = (uint8_t)tl;
    memcpy(md + k, type, tl);
    k += tl;
    md[k++] = 8;
    memcpy(md + k, "Identity", 8);
    k += 8;
    md[k++] = 0, md[k++] = 0, md[k++] = 0, md[k++] = 0;
    return command(out, "READY", md, k);
}

/* Echo a recorded request (delimiter + body frames) as the reply. */
static int echo(int fd, const uint8_t *req, size_t len) { return write_all(fd, req, len); }

static void wait_eof(int fd)
{
    uint8_t b[256];
    while (read(fd, b, sizeof b) > 0) {
    }
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    struct pollfd pfd = {f->lfd, POLLIN, 0};
    if (poll(&pfd, 1, (int)(WAIT_S * 1000)) != 1) return NULL;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    struct timeval tv = {(time_t)WAIT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t g[64], out[512], frame[512];
    size_t n;
    if (read_exact(fd, f->greeting, 64) < 0) goto out;
    switch (f->sc) {
    case SC_BAD_SIGNATURE:
        write_all(fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
        break;
    case SC_ZMTP1_LONG_ID: {
        static const uint8_t z1[10] = {0xff, 0, 0, 0, 0, 0, 0, 1, 0, 0};
        write_all(fd, z1, sizeof z1);
        break;
    }
    case SC_ZMTP2: {
        static const uint8_t z2[12] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 1, 4};
        write_all(fd, z2, sizeof z2);
        break;
    }
    case SC_CURVE:
        greeting(g, 3, 0, "CURVE");
        write_all(fd, g, 64);
        break;
    case SC_EOF_IN_HANDSHAKE:
        greeting(g, 3, 0, "NULL");
        write_all(fd, g, 30);
        close(fd);
        f->finished = 1;
        return NULL;
    default:
        greeting(g, 3, f->sc == SC_PING ? 1 : 0, "NULL");
        if (write_all(fd, g, 64) < 0) goto out;
        long r = read_frame(fd, f->ready, sizeof f->ready);
        if (r < 0) goto out;
        f->ready_len = (size_t)r;
        switch (f->sc) {
        case SC_PUB:
            n = ready_frame(out, "PUB");
            break;
        case SC_NO_SOCKET_TYPE:
            n = command(out, "READY", "\x08Identity\0\0\0\0", 13);
            break;
        case SC_BAD_METADATA:
            n = command(out, "READY", "\x0bSocket-Type\0\0\0\x09REP", 19); /* value overruns */
            break;
        case SC_ERROR_INSTEAD_OF_READY:
            n = command(out, "ERROR", "\x0d" "access denied", 14);
            break;
        default:
            n = ready_frame(out, "REP");
        }
        if (write_all(fd, out, n) < 0) goto out;
        if (f->sc == SC_UNSOLICITED) {
            static const uint8_t msg[4] = {0x01, 0x00, 0x00, 0x00};
            write_all(fd, msg, sizeof msg);
            break;
        }
        if (f->sc == SC_PING) {
            n = command(out, "PING", "\x00\x0a" "ctx-before", 12);
            if (write_all(fd, out, n) < 0) goto out;
            /* The PONG and the request come in either order. */
            int got_req = 0;
            while (!got_req || f->pongs < 1) {
                long fl = read_frame(fd, frame, sizeof frame);
                if (fl < 0) goto out;
                if (frame[0] & 0x04) {
                    memcpy(f->pong[0], frame, (size_t)fl);
                    f->pong_len[0] = (size_t)fl;
                    f->pongs = 1;
                } else {
                    long b = read_frame(fd, frame + fl, sizeof frame - (size_t)fl);
                    if (b < 0) goto out;
                    memcpy(f->req[0], frame, (size_t)(fl + b));
                    f->req_len[0] = (size_t)(fl + b);
                    got_req = 1;
                }
            }
            /* Reply and PING in one write: the PONG must not wait. */
            memcpy(out, f->req[0], f->req_len[0]);
            n = f->req_len[0] + command(out + f->req_len[0], "PING", "\x00\x0a" "ctx-after", 11);
            if (write_all(fd, out, n) < 0) goto out;
            long fl = read_frame(fd, frame, sizeof frame);
            if (fl < 0) goto out;
            memcpy(f->pong[1], frame, (size_t)fl);
            f->pong_len[1] = (size_t)fl;
            f->pongs = 2;
            f->finished = 1;
            break;
        }
        if (read_request(fd, f->req[0], sizeof f->req[0], &f->req_len[0]) < 0) goto out;
        switch (f->sc) {
        case SC_ECHO:
            if (echo(fd, f->req[0], f->req_len[0]) < 0) goto out;
            if (read_request(fd, f->req[1], sizeof f->req[1], &f->req_len[1]) < 0) goto out;
            if (echo(fd, f->req[1], f->req_len[1]) < 0) goto out;
            f->finished = 1;
            break;
        case SC_GARBAGE_FLAGS: {
            static const uint8_t bad[6] = {0xf1, 0x00, 0xde, 0xad, 0xbe, 0xef};
            write_all(fd, bad, sizeof bad);
            break;
        }
        case SC_NO_DELIMITER: {
            static const uint8_t body[4] = {0x00, 0x02, 'h', 'i'};
            write_all(fd, body, sizeof body);
            break;
        }
        case SC_MULTI_FRAME: {
            static const uint8_t multi[8] = {0x01, 0x00, 0x01, 0x01, 'a', 0x00, 0x01, 'b'};
            write_all(fd, multi, sizeof multi);
            break;
        }
        case SC_DOUBLE_REPLY: {
            uint8_t two[800];
            memcpy(two, f->req[0], f->req_len[0]);
            memcpy(two + f->req_len[0], f->req[0], f->req_len[0]);
            write_all(fd, two, 2 * f->req_len[0]);
            break;
        }
        case SC_ANNOUNCE_64M: {
            uint8_t part[2 + 9 + 100];
            memset(part, 'x', sizeof part);
            part[0] = 0x01, part[1] = 0x00;
            part[2] = 0x02;
            const uint64_t sz = (uint64_t)64 << 20;
            for (int i = 0; i < 8; i++) part[3 + i] = (uint8_t)(sz >> (56 - 8 * i));
            write_all(fd, part, sizeof part);
            break;
        }
        case SC_HUGE_FRAME: {
            /* Delimiter, then a long frame announcing 2^40 bytes and none sent. */
            static const uint8_t huge[11] = {0x01, 0x00, 0x02, 0, 0, 0x01, 0, 0, 0, 0, 0};
            write_all(fd, huge, sizeof huge);
            break;
        }
        default:
            break;
        }
    }
out:
    wait_eof(fd); /* close only after the client did: no broken pipe races */
    close(fd);
    return NULL;
}

static void fake_start(fake *f, script sc)
{
    static unsigned counter;
    memset(f, 0, sizeof *f);
    f->sc = sc;
    char name[96];
    snprintf(name, sizeof name, "ppxd-test-fake-%d-%u", (int)getpid(), counter++);
    snprintf(f->endpoint, sizeof f->endpoint, "ipc://@%s", name);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path + 1, name, strlen(name));
    f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(f->lfd >= 0);
    cr_assert_eq(bind(f->lfd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name))), 0,
                 "bind: %s", strerror(errno));
    cr_assert_eq(listen(f->lfd, 4), 0);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_join(fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
}

/* The client against a script that must make it fail: BAD_PEER (or
 * `kind`), with `text` in the reason. */
static void expect_failure(script sc, zmtp_failure kind, const char *text, const char *text2)
{
    fake f;
    fake_start(&f, sc);
    zmtp_conn *c = conn(f.endpoint, LIMIT);
    const uint8_t *body;
    size_t len;
    int rc = call(c, "hello", 5, &body, &len);
    cr_assert_eq(rc, -1, "script %d: rc %d, want a failure", sc, rc);
    cr_assert_eq(zmtp_conn_failure(c), kind, "script %d: failure %d (%s)", sc, zmtp_conn_failure(c),
                 zmtp_conn_error(c));
    cr_assert(strstr(zmtp_conn_error(c), text), "script %d: '%s' does not say '%s'", sc, zmtp_conn_error(c), text);
    if (text2)
        cr_assert(strstr(zmtp_conn_error(c), text2), "script %d: '%s' does not say '%s'", sc, zmtp_conn_error(c),
                  text2);
    cr_log_info("script %d: %s", sc, zmtp_conn_error(c));
    zmtp_conn_destroy(&c);
    fake_join(&f);
}

Test(fake_peer, wire_bytes_we_send)
{
    fake f;
    fake_start(&f, SC_ECHO);
    zmtp_conn *c = conn(f.endpoint, LIMIT);
    const uint8_t *body;
    size_t len;
    cr_assert_eq(call(c, "hello", 5, &body, &len), 1, "%s", zmtp_conn_error(c));
    cr_assert_eq(len, 5);
    cr_assert(memcmp(body, "hello", 5) == 0);
    uint8_t big[256];
    memset(big, 'z', sizeof big);
    cr_assert_eq(call(c, big, sizeof big, &body, &len), 1, "%s", zmtp_conn_error(c));
    cr_assert_eq(len, 256);
    zmtp_conn_destroy(&c);
    fake_join(&f);
    cr_assert(f.finished);

    /* Greeting: signature (0xFF, padding, 0x7F), version 3.1, "NULL"
     * padded to 20 bytes, as-server 0, 31 zero bytes of filler. */
    uint8_t g[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 1, 'N', 'U', 'L', 'L'};
    cr_assert(memcmp(f.greeting, g, 64) == 0, "greeting differs");
    /* READY: command frame, Socket-Type REQ and an empty Identity. */
    static const uint8_t ready[] = {0x04, 38, 5, 'R', 'E', 'A', 'D', 'Y', 11, 'S', 'o', 'c', 'k', 'e', 't', '-',
                                    'T',  'y', 'p', 'e', 0,  0,   0,   3,   'R', 'E', 'Q', 8,   'I', 'd', 'e', 'n',
                                    't',  'i', 't', 'y', 0,  0,   0,   0};
    cr_assert_eq(f.ready_len, sizeof ready);
    cr_assert(memcmp(f.ready, ready, sizeof ready) == 0, "READY differs");
    /* Requests: empty delimiter with MORE, then a short or long body frame. */
    static const uint8_t r0[] = {0x01, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
    cr_assert_eq(f.req_len[0], sizeof r0);
    cr_assert(memcmp(f.req[0], r0, sizeof r0) == 0, "short request frames differ");
    static const uint8_t r1[] = {0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x00};
    cr_assert_eq(f.req_len[1], sizeof r1 + 256);
    cr_assert(memcmp(f.req[1], r1, sizeof r1) == 0, "long request header differs");
    cr_assert(memcmp(f.req[1] + sizeof r1, big, 256) == 0);
}

Test(fake_peer, ping_answered_with_pong)
{
    fake f;
    fake_start(&f, SC_PING);
    zmtp_conn *c = conn(f.endpoint, LIMIT);
    const uint8_t *body;
    size_t len;
    cr_assert_eq(call(c, "req", 3, &body, &len), 1, "%s", zmtp_conn_error(c));
    cr_assert_eq(len, 3);
    cr_assert(memcmp(body, "req", 3) == 0);
    /* The second PING came with the reply: answered in the same call. */
    double end = tk_now() + WAIT_S;
    while (f.pongs < 2 && tk_now() < end) usleep(1000);
    cr_assert_eq(f.pongs, 2, "no PONG to the PING that followed the reply");
    uint8_t want[64];
    size_t n = command(want, "PONG", "ctx-before", 10);
    cr_assert_eq(f.pong_len[0], n);
    cr_assert(memcmp(f.pong[0], want, n) == 0, "PONG does not echo the context");
    n = command(want, "PONG", "ctx-after", 9);
    cr_assert_eq(f.pong_len[1], n);
    cr_assert(memcmp(f.pong[1], want, n) == 0, "PONG does not echo the context");
    cr_assert(zmtp_conn_is_open(c));
    zmtp_conn_destroy(&c);
    fake_join(&f);
    cr_assert(f.finished);
}

Test(fake_peer, bad_signature) { expect_failure(SC_BAD_SIGNATURE, ZMTP_BAD_PEER, "signature", NULL); }
Test(fake_peer, zmtp1_peer) { expect_failure(SC_ZMTP1_LONG_ID, ZMTP_BAD_PEER, "ZMTP 1.0", "libzmq"); }
Test(fake_peer, zmtp2_peer) { expect_failure(SC_ZMTP2, ZMTP_BAD_PEER, "ZMTP 2.0", "libzmq < 4"); }
Test(fake_peer, curve_mechanism) { expect_failure(SC_CURVE, ZMTP_BAD_PEER, "CURVE", "NULL mechanism"); }
Test(fake_peer, pub_socket_type) { expect_failure(SC_PUB, ZMTP_BAD_PEER, "PUB", "REP"); }
Test(fake_peer, ready_without_socket_type) { expect_failure(SC_NO_SOCKET_TYPE, ZMTP_BAD_PEER, "Socket-Type", NULL); }
Test(fake_peer, malformed_ready_metadata) { expect_failure(SC_BAD_METADATA, ZMTP_BAD_PEER, "READY metadata", NULL); }
Test(fake_peer, error_command) { expect_failure(SC_ERROR_INSTEAD_OF_READY, ZMTP_BAD_PEER, "ERROR", "access denied"); }
Test(fake_peer, garbage_frame_flags) { expect_failure(SC_GARBAGE_FLAGS, ZMTP_BAD_PEER, "garbage", NULL); }
Test(fake_peer, reply_without_delimiter) { expect_failure(SC_NO_DELIMITER, ZMTP_BAD_PEER, "delimiter", NULL); }
Test(fake_peer, multi_frame_reply) { expect_failure(SC_MULTI_FRAME, ZMTP_BAD_PEER, "multi-part", NULL); }
Test(fake_peer, huge_frame_refused_before_buffering)
{
    expect_failure(SC_HUGE_FRAME, ZMTP_BAD_PEER, "1099511627776 bytes", "limit");
}
Test(fake_peer, eof_in_handshake) { expect_failure(SC_EOF_IN_HANDSHAKE, ZMTP_CLOSED, "connection closed", "handshake"); }

Test(fake_peer, unsolicited_message)
{
    fake f;
    fake_start(&f, SC_UNSOLICITED);
    zmtp_conn *c = conn(f.endpoint, LIMIT);
    const uint8_t *body;
    size_t len;
    int rc = drive(c, &body, &len, WAIT_S); /* no request sent */
    cr_assert_eq(rc, -1);
    cr_assert_eq(zmtp_conn_failure(c), ZMTP_BAD_PEER);
    cr_assert(strstr(zmtp_conn_error(c), "no request outstanding"), "%s", zmtp_conn_error(c));
    zmtp_conn_destroy(&c);
    fake_join(&f);
}

Test(fake_peer, second_reply_not_taken_for_the_next)
{
    fake f;
    fake_start(&f, SC_DOUBLE_REPLY);
    zmtp_conn *c = conn(f.endpoint, LIMIT);
    const uint8_t *body;
    size_t len;
    cr_assert_eq(call(c, "one", 3, &body, &len), 1, "%s", zmtp_conn_error(c));
    cr_assert_eq(call(c, "two", 3, &body, &len), -1, "the extra reply was taken for the second");
    cr_assert_eq(zmtp_conn_failure(c), ZMTP_BAD_PEER);
    cr_assert(strstr(zmtp_conn_error(c), "no request outstanding"), "%s", zmtp_conn_error(c));
    zmtp_conn_destroy(&c);
    fake_join(&f);
}

/* Issue 11, defect 5: the buffer grows with the bytes that arrive, not with
 * the size a header announces. */
Test(fake_peer, announced_size_is_not_allocated_before_the_bytes_arrive)
{
    fake f;
    fake_start(&f, SC_ANNOUNCE_64M);
    zmtp_conn *c = conn(f.endpoint, (size_t)128 << 20); /* 64 MiB is within the limit */
    const uint8_t *body;
    size_t len;
    cr_assert_eq(zmtp_conn_send(c, "hello", 5), 0);
    cr_assert_eq(drive(c, &body, &len, 0.5), 0, "%s", zmtp_conn_error(c));
    cr_assert_eq(zmtp_conn_failure(c), ZMTP_OK, "%s", zmtp_conn_error(c));
    size_t held = zmtp_conn_buffer_bytes(c);
    cr_assert_lt(held, (size_t)256 << 10, "%zu bytes held for a frame of which 100 bytes arrived", held);
    zmtp_conn_destroy(&c);
    fake_join(&f);
}

/* A large reply arriving in pieces still comes out whole and aligned. */
Test(zmtp, large_reply_assembled_as_it_arrives)
{
    zpeer z;
    char ep[128];
    tk_endpoint(ep, sizeof ep, "zmtp-big");
    zpeer_init(&z, ep, ZMQ_REP, ZM_SIZED);
    z.reply_size = (size_t)3 << 20;
    zpeer_start(&z);
    zmtp_conn *c = conn(ep, (size_t)8 << 20);
    const uint8_t *body;
    size_t len;
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(call(c, "go", 2, &body, &len), 1, "%s", zmtp_conn_error(c));
        cr_assert_eq(len, z.reply_size);
        cr_assert_eq((uintptr_t)body % 8, 0);
    }
    zmtp_conn_destroy(&c);
    zpeer_stop(&z);
}
