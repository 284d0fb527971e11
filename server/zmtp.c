/* zmtp.c — ZMTP 3.x REQ client over the NULL mechanism (see zmtp.h). */
#include "zmtp.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GREETING_LEN 64
#define FLAG_MORE 0x01
#define FLAG_LONG 0x02
#define FLAG_COMMAND 0x04
#define MAX_ADDRS 8
#define RETRY_MIN_S 0.010      /* launched simulators bind within a few ms */
#define RETRY_MAX_S 0.100      /* libzmq's default reconnect interval */
#define RBUF_INITIAL (32 * 1024)
#define RBUF_KEEP (1024 * 1024) /* a larger read buffer is given back once empty */
#define READ_MIN 4096          /* free space wanted before a read() */
#define COMMAND_MAX (64 * 1024) /* READY metadata, PING, ERROR: small by nature */
#define PING_CONTEXT_MAX 16

typedef enum conn_state {
    C_RETRY = 0,  /* no socket; connect again at retry_at */
    C_CONNECTING, /* non-blocking tcp connect in progress */
    C_GREETING,   /* our greeting sent; reading the peer's */
    C_HANDSHAKE,  /* our READY sent; reading the peer's READY */
    C_OPEN,       /* requests and replies */
    C_FAILED      /* final */
} conn_state;

/* Where the reply to the outstanding request has got to. */
typedef enum reply_part { R_NONE = 0, R_DELIMITER, R_BODY } reply_part;

struct zmtp_conn {
    conn_state state;
    zmtp_failure failure;
    int fd;
    int is_tcp;
    struct sockaddr_storage addr[MAX_ADDRS];
    socklen_t addr_len[MAX_ADDRS];
    size_t n_addr, next_addr; /* tcp: every resolved address is tried in turn */
    double retry_at, retry_delay;
    size_t max_msg;
    reply_part expect;
    int request_pending; /* a request is queued or sent, its reply not yet complete */
    int eof;             /* the peer closed after the bytes still buffered */
    int write_closed;    /* the peer stopped reading: output is dropped */
    int last_long;       /* the last reply body came in a long frame (alignment guess) */
    uint8_t *w;          /* outgoing bytes [w_off, w_off + w_len) */
    size_t w_off, w_len, w_cap;
    uint8_t *q;          /* a framed request waiting for the handshake */
    size_t q_len;
    uint8_t *r;          /* incoming bytes, unparsed in [r_start, r_end) */
    size_t r_start, r_end, r_cap;
    size_t frame_total;  /* header + announced size of the frame at r_start, once known and incomplete (else 0) */
    size_t frame_hdr;    /* its header bytes */
    double last_rx;      /* when bytes last arrived (heartbeats, zmtp_conn_last_rx) */
    char err[320];
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

/* Peer-supplied bytes made safe to print. */
static void printable(char *dst, size_t dst_len, const uint8_t *src, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < dst_len; i++) {
        if (src[i] == 0) break;
        dst[k++] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
    }
    dst[k] = 0;
}

/* The connection is finished: keep the first reason.  The read buffer is
 * kept, since a reply returned by this very call may still point into it.
 * Returns -1 for the caller's convenience. */
static int fail(zmtp_conn *c, zmtp_failure why, const char *fmt, ...)
{
    if (c->state == C_FAILED) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    c->state = C_FAILED;
    c->failure = why;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    return -1;
}

/* A socket error while connected: resets and broken pipes mean the peer's
 * process went away, which the engine tells apart from garbage. */
static int io_failed(zmtp_conn *c, int e)
{
    if (e == ECONNRESET || e == EPIPE || e == ENOTCONN || e == ETIMEDOUT || e == EHOSTUNREACH || e == ENETUNREACH ||
        e == ECONNABORTED)
        return fail(c, ZMTP_CLOSED, "connection closed: %s", strerror(e));
    return fail(c, ZMTP_LOCAL, "socket error: %s", strerror(e));
}

/* --- endpoints ---------------------------------------------------------------- */

#define HOST_MAX 256

/* An endpoint taken apart by split_endpoint, the one syntax check:
 * zmtp_endpoint_check and zmtp_conn_new both go through it, so a command
 * line refuses exactly what a connection would.  Its messages do not repeat
 * the endpoint: every caller prints it next to them.  path and port point
 * into the endpoint string. */
typedef struct endpoint_parts {
    int is_tcp;
    const char *path; /* ipc */
    char host[HOST_MAX];
    const char *port;
} endpoint_parts;

static int split_ipc(const char *path, endpoint_parts *p, char *err, size_t err_len)
{
    struct sockaddr_un u;
    size_t n = strlen(path);
    if (n == 0 || strcmp(path, "*") == 0 || strcmp(path, "@") == 0) {
        snprintf(err, err_len, "want ipc:///path or ipc://@name");
        return -1;
    }
    /* libzmq refuses paths that do not fit with room to spare, so that any
     * endpoint it can bind is one we can reach. */
    if (n >= sizeof u.sun_path) {
        snprintf(err, err_len, "ipc path too long (%zu bytes, at most %zu)", n, sizeof u.sun_path - 1);
        return -1;
    }
    p->is_tcp = 0;
    p->path = path;
    return 0;
}

static int split_tcp(const char *rest, endpoint_parts *p, char *err, size_t err_len)
{
    const char *port;
    if (strchr(rest, ';')) {
        snprintf(err, err_len, "source addresses (tcp://SOURCE;HOST:PORT) are not supported");
        return -1;
    }
    if (rest[0] == '[') {
        const char *close_br = strchr(rest, ']');
        if (!close_br || close_br[1] != ':') {
            snprintf(err, err_len, "want tcp://[IPv6]:PORT");
            return -1;
        }
        size_t hl = (size_t)(close_br - rest - 1);
        if (hl == 0 || hl >= HOST_MAX) {
            snprintf(err, err_len, "tcp host empty or longer than 255 bytes");
            return -1;
        }
        memcpy(p->host, rest + 1, hl);
        p->host[hl] = 0;
        port = close_br + 2;
    } else {
        const char *colon = strrchr(rest, ':');
        size_t hl = colon ? (size_t)(colon - rest) : 0;
        if (!colon || hl == 0) {
            snprintf(err, err_len, "want tcp://HOST:PORT");
            return -1;
        }
        if (hl >= HOST_MAX) {
            snprintf(err, err_len, "tcp host empty or longer than 255 bytes");
            return -1;
        }
        memcpy(p->host, rest, hl);
        p->host[hl] = 0;
        port = colon + 1;
    }
    if (strcmp(p->host, "*") == 0) {
        snprintf(err, err_len, "'*' is for binding; give the simulator's host");
        return -1;
    }
    unsigned long pv = 0;
    size_t pl = strlen(port);
    for (size_t i = 0; i < pl && pv <= 65535; i++) pv = port[i] >= '0' && port[i] <= '9' ? pv * 10 + (unsigned)(port[i] - '0') : 99999;
    if (pl == 0 || pl > 5 || pv == 0 || pv > 65535) {
        snprintf(err, err_len, "port must be a number from 1 to 65535");
        return -1;
    }
    p->is_tcp = 1;
    p->port = port;
    return 0;
}

static int split_endpoint(const char *endpoint, endpoint_parts *p, char *err, size_t err_len)
{
    if (strncmp(endpoint, "ipc://", 6) == 0) return split_ipc(endpoint + 6, p, err, err_len);
    if (strncmp(endpoint, "tcp://", 6) == 0) return split_tcp(endpoint + 6, p, err, err_len);
    snprintf(err, err_len, "not a tcp://HOST:PORT or ipc://PATH endpoint");
    return -1;
}

static void fill_ipc(zmtp_conn *c, const char *path)
{
    struct sockaddr_un *u = (struct sockaddr_un *)&c->addr[0];
    size_t n = strlen(path); /* fits: split_ipc checked */
    memset(u, 0, sizeof *u);
    u->sun_family = AF_UNIX;
    if (path[0] == '@') {
        /* Linux abstract namespace, as libzmq binds it: a leading NUL, then
         * the name, and an address length that counts exactly those bytes
         * (the kernel compares lengths, so no trailing NUL). */
        memcpy(u->sun_path + 1, path + 1, n - 1);
        c->addr_len[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        memcpy(u->sun_path, path, n + 1);
        c->addr_len[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    c->n_addr = 1;
}

static int resolve_tcp(zmtp_conn *c, const endpoint_parts *p, char *err, size_t err_len)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(p->host, p->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "cannot resolve '%s': %s", p->host, gai_strerror(rc));
        return -1;
    }
    /* IPv4 first: a hostname such as localhost resolves to both, and libzmq
     * simulators bind IPv4 unless told otherwise. */
    for (int pass = 0; pass < 2; pass++)
        for (struct addrinfo *a = res; a && c->n_addr < MAX_ADDRS; a = a->ai_next) {
            int want = pass == 0 ? AF_INET : AF_INET6;
            if (a->ai_family != want || a->ai_addrlen > sizeof c->addr[0]) continue;
            memcpy(&c->addr[c->n_addr], a->ai_addr, a->ai_addrlen);
            c->addr_len[c->n_addr++] = a->ai_addrlen;
        }
    freeaddrinfo(res);
    if (c->n_addr == 0) {
        snprintf(err, err_len, "'%s' has no IPv4 or IPv6 address", p->host);
        return -1;
    }
    c->is_tcp = 1;
    return 0;
}

/* --- writing ------------------------------------------------------------------ */

/* A write found the peer gone.  Rather than failing here, drop the output
 * and let the reads report it: they first deliver whatever the peer sent
 * before closing (an ERROR, garbage), which says more than "broken pipe". */
static int write_failed(zmtp_conn *c, int e)
{
    if (e != EPIPE && e != ECONNRESET) return io_failed(c, e);
    c->write_closed = 1;
    c->w_off = c->w_len = 0;
    return 0;
}

static int w_append(zmtp_conn *c, const void *data, size_t n)
{
    if (c->write_closed) return 0;
    if (c->w_off + c->w_len + n > c->w_cap) {
        if (c->w_off) {
            memmove(c->w, c->w + c->w_off, c->w_len);
            c->w_off = 0;
        }
        if (c->w_len + n > c->w_cap) {
            size_t cap = c->w_cap ? c->w_cap : 256;
            while (cap < c->w_len + n) cap *= 2;
            uint8_t *w = realloc(c->w, cap);
            if (!w) return fail(c, ZMTP_LOCAL, "out of memory queueing %zu bytes", n);
            c->w = w;
            c->w_cap = cap;
        }
    }
    memcpy(c->w + c->w_off + c->w_len, data, n);
    c->w_len += n;
    return 0;
}

/* Write what is queued until done or the socket is full. */
static int flush(zmtp_conn *c)
{
    while (c->w_len) {
        ssize_t n = send(c->fd, c->w + c->w_off, c->w_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return write_failed(c, errno);
        }
        c->w_off += (size_t)n;
        c->w_len -= (size_t)n;
    }
    c->w_off = 0;
    return 0;
}

/* Flags and size of a request's body frame, after its empty delimiter frame. */
static size_t request_header(uint8_t *h, size_t len)
{
    h[0] = FLAG_MORE;
    h[1] = 0;
    if (len <= 255) {
        h[2] = 0;
        h[3] = (uint8_t)len;
        return 4;
    }
    h[2] = FLAG_LONG;
    put_be64(h + 3, len);
    return 11;
}

static int queue_command(zmtp_conn *c, const uint8_t *body, size_t n)
{
    assert(n <= 255); /* our commands are short */
    uint8_t h[2] = {FLAG_COMMAND, (uint8_t)n};
    if (w_append(c, h, 2) < 0 || w_append(c, body, n) < 0) return -1;
    return flush(c);
}

static int send_greeting(zmtp_conn *c)
{
    uint8_t g[GREETING_LEN];
    memset(g, 0, sizeof g);
    g[0] = 0xff;
    /* Padding: what libzmq sends (its empty identity's length + 1, for the
     * ZMTP 1.0 peers it used to detect this way). */
    g[8] = 1;
    g[9] = 0x7f;
    g[10] = 3; /* ZMTP 3.1 */
    g[11] = 1;
    memcpy(g + 12, "NULL", 4);
    g[32] = 0; /* as-server: we are the client (unused by NULL) */
    if (w_append(c, g, sizeof g) < 0) return -1;
    return flush(c);
}

static int send_ready(zmtp_conn *c)
{
    /* READY, Socket-Type = REQ, Identity = "" (libzmq's REQ sends both). */
    static const uint8_t ready[] = {5,   'R', 'E', 'A', 'D', 'Y', 11,  'S', 'o', 'c', 'k', 'e', 't',
                                    '-', 'T', 'y', 'p', 'e', 0,   0,   0,   3,   'R', 'E', 'Q', 8,
                                    'I', 'd', 'e', 'n', 't', 'i', 't', 'y', 0,   0,   0,   0};
    return queue_command(c, ready, sizeof ready);
}

/* --- connecting --------------------------------------------------------------- */

static int connect_failed(zmtp_conn *c, int e);

/* Retrying a connect to a local port in the ephemeral range can pick that
 * very port as the source and connect the socket to itself (TCP
 * simultaneous open); we would then read back our own greeting. */
static int connected_to_self(const zmtp_conn *c)
{
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof me, pl = sizeof peer;
    if (!c->is_tcp) return 0;
    if (getsockname(c->fd, (struct sockaddr *)&me, &ml) < 0 || getpeername(c->fd, (struct sockaddr *)&peer, &pl) < 0)
        return 0;
    return ml == pl && memcmp(&me, &peer, ml) == 0;
}

static int connected(zmtp_conn *c)
{
    if (connected_to_self(c)) return connect_failed(c, ECONNREFUSED);
    c->state = C_GREETING;
    c->err[0] = 0;
    c->retry_delay = RETRY_MIN_S;
    return send_greeting(c);
}

/* A connect attempt failed with errno e: try again later when the peer is
 * merely not there yet (like a libzmq REQ connect); fail otherwise. */
static int connect_failed(zmtp_conn *c, int e)
{
    int again = e == ECONNREFUSED || e == ENOENT || e == EAGAIN || e == ETIMEDOUT || e == EHOSTUNREACH ||
                e == ENETUNREACH || e == ENETDOWN || e == ECONNRESET || e == ECONNABORTED || e == EADDRNOTAVAIL;
    if (!again) return fail(c, ZMTP_LOCAL, "cannot connect: %s", strerror(e));
    close(c->fd);
    c->fd = -1;
    snprintf(c->err, sizeof c->err, "not connected yet: %s", strerror(e));
    c->next_addr = (c->next_addr + 1) % c->n_addr;
    c->retry_at = mono_s() + c->retry_delay;
    c->retry_delay = c->retry_delay * 2 < RETRY_MAX_S ? c->retry_delay * 2 : RETRY_MAX_S;
    c->state = C_RETRY;
    return 0;
}

static int start_connect(zmtp_conn *c)
{
    const struct sockaddr_storage *a = &c->addr[c->next_addr];
    c->fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return fail(c, ZMTP_LOCAL, "socket: %s", strerror(errno));
    if (c->is_tcp) {
        /* Lockstep messages must not wait for Nagle (libzmq sets it too). */
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (connect(c->fd, (const struct sockaddr *)a, c->addr_len[c->next_addr]) == 0) return connected(c);
    if (errno == EINPROGRESS || errno == EINTR) {
        c->state = C_CONNECTING;
        return 0;
    }
    return connect_failed(c, errno);
}

/* --- reading -------------------------------------------------------------------- */

/* Room for a whole frame of `total` bytes starting at r_start, contiguous;
 * when data must move anyway, the body (after a `hdr`-byte header) is put
 * on an 8-byte boundary so that the codec can read it in place. */
static int need_room(zmtp_conn *c, size_t total, size_t hdr)
{
    if (c->r_start + total <= c->r_cap) return 0;
    size_t pad = (8 - hdr % 8) % 8, have = c->r_end - c->r_start;
    if (pad + total <= c->r_cap) {
        memmove(c->r + pad, c->r + c->r_start, have);
    } else {
        size_t cap = c->r_cap * 2 > pad + total ? c->r_cap * 2 : pad + total;
        uint8_t *r = malloc(cap);
        if (!r) return fail(c, ZMTP_LOCAL, "out of memory for a %zu-byte frame", total);
        memcpy(r + pad, c->r + c->r_start, have);
        free(c->r);
        c->r = r;
        c->r_cap = cap;
    }
    c->r_start = pad;
    c->r_end = pad + have;
    return 0;
}

/* One recv() into the free space.  1: got bytes (*filled when they filled
 * it), 0: end of stream, 2: nothing there, -1: failed. */
static int read_some(zmtp_conn *c, int *filled)
{
    *filled = 0;
    if (c->r_start == c->r_end) {
        if (c->r_cap > RBUF_KEEP) {
            uint8_t *r = malloc(RBUF_INITIAL);
            if (r) {
                free(c->r);
                c->r = r;
                c->r_cap = RBUF_INITIAL;
            }
        }
        /* Start where the next reply's body will be 8-byte aligned: after a
         * 2-byte delimiter frame and a 2-byte (short) or 9-byte (long)
         * header, guessing from the last reply. */
        c->r_start = c->r_end = c->state == C_OPEN ? (c->last_long ? 5 : 4) : 0;
    } else if (c->r_cap - c->r_end < READ_MIN && !(c->frame_total && c->r_start + c->frame_total <= c->r_cap)) {
        /* Grow with the bytes that have arrived (doubling), never to a
         * frame's announced size at once: a header announcing 64 MiB costs
         * nothing until the peer actually sends them. */
        size_t have = c->r_end - c->r_start;
        size_t want = have + (have > READ_MIN ? have : READ_MIN);
        if (c->frame_total > have && want > c->frame_total) want = c->frame_total;
        if (need_room(c, want, c->frame_total ? c->frame_hdr : 0) < 0) return -1;
    }
    ssize_t n;
    do {
        n = recv(c->fd, c->r + c->r_end, c->r_cap - c->r_end, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        c->r_end += (size_t)n;
        c->last_rx = mono_s();
        *filled = c->r_end == c->r_cap;
        return 1;
    }
    if (n == 0) {
        c->eof = 1;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 2;
    return io_failed(c, errno);
}

/* The peer's greeting, checked as its bytes arrive so that an old or
 * foreign peer, which sends less than 64 bytes, is recognised at once.
 * 1: complete and valid, 0: incomplete, -1: failed. */
static int check_greeting(zmtp_conn *c, const uint8_t *p, size_t n)
{
    if (n >= 1 && p[0] != 0xff)
        return fail(c, ZMTP_BAD_PEER,
                    "bad greeting signature: the peer is not a ZeroMQ socket, or speaks ZMTP 1.0 (libzmq 2)");
    /* libzmq's own test for a ZMTP 1.0 peer: the last signature bit. */
    if (n >= 10 && !(p[9] & 1))
        return fail(c, ZMTP_BAD_PEER, "the peer speaks ZMTP 1.0 (libzmq < 4): ppxd needs ZMTP 3 (libzmq >= 4)");
    if (n >= 11 && p[10] < 3)
        return fail(c, ZMTP_BAD_PEER, "the peer speaks ZMTP %s (libzmq < 4): ppxd needs ZMTP 3 (libzmq >= 4)",
                    p[10] == 1 ? "2.0" : "1.0");
    if (n < GREETING_LEN) return 0;
    static const uint8_t null_mech[20] = {'N', 'U', 'L', 'L'};
    if (memcmp(p + 12, null_mech, sizeof null_mech) != 0) {
        char mech[21];
        printable(mech, sizeof mech, p + 12, 20);
        return fail(c, ZMTP_BAD_PEER,
                    "the peer uses the %s security mechanism: ppxd speaks the NULL mechanism to simulators "
                    "(no CURVE or PLAIN on simulator sockets)",
                    mech[0] ? mech : "(unnamed)");
    }
    return 1;
}

static int on_error_command(zmtp_conn *c, const uint8_t *p, size_t n)
{
    char reason[256] = "(no reason)";
    if (n >= 1 && (size_t)p[0] <= n - 1 && p[0] > 0) printable(reason, sizeof reason, p + 1, p[0]);
    return fail(c, ZMTP_BAD_PEER, "the peer sent ERROR: %s", reason);
}

/* READY metadata: name (1-byte length), value (4-byte big-endian length). */
static int on_ready(zmtp_conn *c, const uint8_t *p, size_t n)
{
    const uint8_t *type = NULL;
    size_t type_len = 0;
    while (n > 0) {
        size_t nl = p[0];
        if (nl == 0 || n < 1 + nl + 4) return fail(c, ZMTP_BAD_PEER, "malformed READY metadata");
        uint32_t vl = get_be32(p + 1 + nl);
        if (vl > n - 1 - nl - 4) return fail(c, ZMTP_BAD_PEER, "malformed READY metadata (value overruns)");
        if (nl == 11 && strncasecmp((const char *)p + 1, "Socket-Type", 11) == 0) {
            type = p + 1 + nl + 4;
            type_len = vl;
        }
        p += 1 + nl + 4 + vl;
        n -= 1 + nl + 4 + vl;
    }
    if (!type) return fail(c, ZMTP_BAD_PEER, "READY without a Socket-Type");
    if (!(type_len == 3 && memcmp(type, "REP", 3) == 0) && !(type_len == 6 && memcmp(type, "ROUTER", 6) == 0)) {
        char t[40];
        printable(t, sizeof t, type, type_len);
        return fail(c, ZMTP_BAD_PEER, "the peer is a %s socket: simulators must bind a REP (or ROUTER) socket", t);
    }
    c->state = C_OPEN;
    if (c->q) {
        int rc = w_append(c, c->q, c->q_len);
        free(c->q);
        c->q = NULL;
        c->q_len = 0;
        if (rc < 0) return -1;
        c->expect = R_DELIMITER;
    }
    return flush(c);
}

static int on_command(zmtp_conn *c, const uint8_t *p, size_t n)
{
    if (n < 1 || p[0] == 0 || p[0] > n - 1) return fail(c, ZMTP_BAD_PEER, "malformed command frame");
    size_t nl = p[0];
    const uint8_t *name = p + 1, *data = p + 1 + nl;
    size_t dl = n - 1 - nl;
#define IS(s) (nl == sizeof(s) - 1 && memcmp(name, s, nl) == 0)
    if (IS("ERROR")) return on_error_command(c, data, dl);
    if (c->state == C_HANDSHAKE) {
        if (IS("READY")) return on_ready(c, data, dl);
        char nm[64];
        printable(nm, sizeof nm, name, nl);
        return fail(c, ZMTP_BAD_PEER, "expected READY from the peer, got %s", nm);
    }
    if (IS("PING")) {
        /* TTL (2 bytes, ignored: we never wait for PINGs) then a context
         * of up to 16 bytes that PONG must echo. */
        if (dl < 2 || dl - 2 > PING_CONTEXT_MAX) return fail(c, ZMTP_BAD_PEER, "malformed PING");
        uint8_t pong[5 + PING_CONTEXT_MAX] = {4, 'P', 'O', 'N', 'G'};
        memcpy(pong + 5, data + 2, dl - 2);
        return queue_command(c, pong, 5 + dl - 2);
    }
    if (IS("READY")) return fail(c, ZMTP_BAD_PEER, "a second READY from the peer");
    /* PONG (we send no PING) and commands of later revisions: ignored. */
    return 0;
#undef IS
}

/* Body of a reply, moved to an 8-byte boundary if it is not on one (with
 * everything after it), so that the codec reads it in place. */
static const uint8_t *aligned_body(zmtp_conn *c, const uint8_t *body)
{
    size_t shift = (uintptr_t)body % 8;
    if (!shift) return body;
    uint8_t *dst = (uint8_t *)body - shift; /* >= c->r, which malloc aligned */
    memmove(dst, body, (size_t)(c->r + c->r_end - body));
    c->r_start -= shift;
    c->r_end -= shift;
    return dst;
}

/* Consume what is buffered.  1: a reply is in *body and *len, 0: need more
 * bytes, -1: failed.  After a reply, only complete command frames that
 * follow it are handled (a PING answered at once); nothing moves in the
 * buffer then, since the reply points into it. */
static int parse(zmtp_conn *c, const uint8_t **body, size_t *len)
{
    int got = 0;
    for (;;) {
        const uint8_t *p = c->r + c->r_start;
        size_t avail = c->r_end - c->r_start;
        if (c->state == C_GREETING) {
            int g = check_greeting(c, p, avail);
            if (g <= 0) return g;
            c->r_start += GREETING_LEN;
            c->state = C_HANDSHAKE;
            if (send_ready(c) < 0) return -1;
            continue;
        }
        if (c->state != C_HANDSHAKE && c->state != C_OPEN) return got ? 1 : -1;
        if (avail < 1 || (avail < 9 && (p[0] & FLAG_LONG)) || avail < 2) return got;
        uint8_t flags = p[0];
        size_t hdr = flags & FLAG_LONG ? 9 : 2;
        uint64_t size = flags & FLAG_LONG ? get_be64(p + 1) : p[1];
        int is_cmd = flags & FLAG_COMMAND;
        if (got && !is_cmd) return 1; /* for the next call */
        if (flags & ~(FLAG_MORE | FLAG_LONG | FLAG_COMMAND)) {
            fail(c, ZMTP_BAD_PEER, "garbage from the peer: frame flags 0x%02x", flags);
            return got ? 1 : -1;
        }
        if (is_cmd) {
            if ((flags & FLAG_MORE) || size > COMMAND_MAX) {
                fail(c, ZMTP_BAD_PEER, "garbage from the peer: %s command frame",
                     size > COMMAND_MAX ? "oversized" : "multi-part");
                return got ? 1 : -1;
            }
        } else if (c->state == C_HANDSHAKE) {
            return fail(c, ZMTP_BAD_PEER, "expected READY from the peer, got a message frame");
        } else if (c->expect == R_NONE) {
            return fail(c, ZMTP_BAD_PEER, "message from the peer with no request outstanding");
        } else if (c->expect == R_DELIMITER && (size != 0 || !(flags & FLAG_MORE))) {
            return fail(c, ZMTP_BAD_PEER,
                        "reply does not start with an empty delimiter frame (the simulator must bind a REP socket)");
        } else if (c->expect == R_BODY && (flags & FLAG_MORE)) {
            return fail(c, ZMTP_BAD_PEER, "multi-part reply: a PPX reply is one frame");
        } else if (c->expect == R_BODY && size > c->max_msg) {
            return fail(c, ZMTP_BAD_PEER, "reply of %llu bytes is over the %zu-byte message limit",
                        (unsigned long long)size, c->max_msg);
        }
        if (avail - hdr < size) {
            if (got) return 1;
            /* Incomplete: read_some makes room as the bytes come. */
            c->frame_total = hdr + (size_t)size;
            c->frame_hdr = hdr;
            return 0;
        }
        const uint8_t *data = p + hdr;
        c->frame_total = c->frame_hdr = 0;
        c->r_start += hdr + (size_t)size;
        if (is_cmd) {
            if (on_command(c, data, (size_t)size) < 0) return got ? 1 : -1;
        } else if (c->expect == R_DELIMITER) {
            c->expect = R_BODY;
        } else {
            c->expect = R_NONE;
            c->request_pending = 0;
            c->last_long = hdr > 2;
            *body = aligned_body(c, data);
            *len = (size_t)size;
            got = 1;
        }
    }
}

static int closed(zmtp_conn *c)
{
    return fail(c, ZMTP_CLOSED, c->state == C_OPEN ? "connection closed" : "connection closed during the ZMTP handshake");
}

/* --- public ----------------------------------------------------------------------- */

size_t zmtp_conn_buffer_bytes(const zmtp_conn *c)
{
    return c ? c->r_cap + c->w_cap + c->q_len : 0;
}

int zmtp_endpoint_check(const char *endpoint, char *err, size_t err_len)
{
    endpoint_parts parts;
    return split_endpoint(endpoint, &parts, err, err_len);
}

zmtp_conn *zmtp_conn_new(const char *endpoint, size_t max_msg_bytes, char *err, size_t err_len)
{
    zmtp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    c->fd = -1;
    /* No limit still leaves sizes that cannot overflow our arithmetic. */
    c->max_msg = max_msg_bytes ? max_msg_bytes : SIZE_MAX / 4;
    if (c->max_msg > SIZE_MAX / 4) c->max_msg = SIZE_MAX / 4;
    c->retry_delay = RETRY_MIN_S;
    endpoint_parts parts;
    int rc = split_endpoint(endpoint, &parts, err, err_len);
    if (rc == 0) {
        if (parts.is_tcp)
            rc = resolve_tcp(c, &parts, err, err_len);
        else
            fill_ipc(c, parts.path);
    }
    if (rc == 0) {
        c->r_cap = RBUF_INITIAL;
        c->r = malloc(c->r_cap);
        if (!c->r) {
            snprintf(err, err_len, "out of memory");
            rc = -1;
        }
    }
    if (rc == 0 && start_connect(c) < 0) {
        snprintf(err, err_len, "%s", c->err);
        rc = -1;
    }
    if (rc < 0) zmtp_conn_destroy(&c);
    return c;
}

void zmtp_conn_destroy(zmtp_conn **cp)
{
    if (!cp || !*cp) return;
    zmtp_conn *c = *cp;
    if (c->fd >= 0) close(c->fd);
    free(c->w);
    free(c->q);
    free(c->r);
    free(c);
    *cp = NULL;
}

int zmtp_conn_fd(const zmtp_conn *c)
{
    return c->state == C_RETRY || c->state == C_FAILED ? -1 : c->fd;
}

int zmtp_conn_events(const zmtp_conn *c)
{
    switch (c->state) {
    case C_CONNECTING:
        return ZMTP_WRITE;
    case C_GREETING:
    case C_HANDSHAKE:
    case C_OPEN:
        return ZMTP_READ | (c->w_len ? ZMTP_WRITE : 0);
    default:
        return 0;
    }
}

double zmtp_conn_retry_at(const zmtp_conn *c) { return c->state == C_RETRY ? c->retry_at : 0.0; }
int zmtp_conn_is_open(const zmtp_conn *c) { return c->state == C_OPEN; }
zmtp_failure zmtp_conn_failure(const zmtp_conn *c) { return c->failure; }
const char *zmtp_conn_error(const zmtp_conn *c) { return c->err; }

int zmtp_conn_send(zmtp_conn *c, const void *body, size_t len)
{
    assert(c && (body || len == 0));
    if (c->state == C_FAILED) return -1;
    assert(!c->request_pending); /* REQ lockstep: the caller's bug otherwise */
    /* Bytes left after the last reply may only be (part of) a command; a
     * message there would pass for the reply to this request. */
    if (c->state == C_OPEN && c->r_end > c->r_start && !(c->r[c->r_start] & FLAG_COMMAND))
        return fail(c, ZMTP_BAD_PEER, "message from the peer with no request outstanding");
    uint8_t h[11];
    size_t hl = request_header(h, len);
    c->request_pending = 1;
    if (c->state != C_OPEN) {
        free(c->q);
        c->q = malloc(hl + len);
        if (!c->q) return fail(c, ZMTP_LOCAL, "out of memory queueing a %zu-byte request", len);
        memcpy(c->q, h, hl);
        if (len) memcpy(c->q + hl, body, len);
        c->q_len = hl + len;
        return 0;
    }
    c->expect = R_DELIMITER;
    if (c->write_closed) return 0;
    if (c->w_len) {
        if (w_append(c, h, hl) < 0 || w_append(c, body, len) < 0) return -1;
        return flush(c);
    }
    /* The usual case: nothing queued, so header and body go out in one
     * system call without being copied; only a remainder is buffered. */
    struct iovec iov[2] = {{h, hl}, {(void *)body, len}};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = len ? 2 : 1;
    ssize_t n;
    do {
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) return write_failed(c, errno);
        n = 0;
    }
    size_t done = (size_t)n;
    if (done == hl + len) return 0;
    if (done < hl && w_append(c, h + done, hl - done) < 0) return -1;
    size_t from = done > hl ? done - hl : 0;
    return w_append(c, (const uint8_t *)body + from, len - from);
}

int zmtp_conn_io(zmtp_conn *c, int ready, const uint8_t **body, size_t *len)
{
    assert(c && body && len);
    *body = NULL;
    *len = 0;
    if (c->state == C_FAILED) return -1;
    if (c->eof) return closed(c);
    if (c->state == C_RETRY) {
        if (mono_s() < c->retry_at) return 0;
        return start_connect(c) < 0 ? -1 : 0;
    }
    if (c->state == C_CONNECTING) {
        if (!ready) return 0;
        int e = 0;
        socklen_t el = sizeof e;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0) e = errno;
        if (e == 0) return connected(c) < 0 ? -1 : 0;
        return connect_failed(c, e) < 0 ? -1 : 0;
    }
    if ((ready & (ZMTP_WRITE | ZMTP_HANGUP)) && c->w_len && flush(c) < 0) return -1;
    if (!(ready & (ZMTP_READ | ZMTP_HANGUP))) return 0;
    for (;;) {
        int filled;
        int r = read_some(c, &filled);
        if (r < 0) return -1;
        int p = parse(c, body, len);
        if (p != 0) return p;
        if (r == 0) return closed(c);
        /* Loop only when the read filled the buffer: more may be waiting. */
        if (r == 2 || !filled) return 0;
    }
}

/* --- the accepting side (zmtp_listen.h) ------------------------------------- */

zmtp_conn *zmtp_conn_adopt(int fd, int is_tcp, size_t max_msg_bytes, char *err, size_t err_len)
{
    zmtp_conn *c = calloc(1, sizeof *c);
    if (c) c->r = malloc(RBUF_INITIAL);
    if (!c || !c->r) {
        if (c) free(c);
        close(fd);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    c->fd = fd;
    c->is_tcp = is_tcp;
    c->r_cap = RBUF_INITIAL;
    c->max_msg = max_msg_bytes ? max_msg_bytes : SIZE_MAX / 4;
    if (c->max_msg > SIZE_MAX / 4) c->max_msg = SIZE_MAX / 4;
    c->retry_delay = RETRY_MIN_S;
    c->last_rx = mono_s();
    if (is_tcp) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    /* From here on exactly an outbound connection that has just connected:
     * the peer (a REP socket that connected to us) greets in parallel. */
    c->state = C_GREETING;
    if (send_greeting(c) < 0) {
        snprintf(err, err_len, "%s", c->err);
        zmtp_conn_destroy(&c);
        return NULL;
    }
    return c;
}

double zmtp_conn_last_rx(const zmtp_conn *c) { return c->last_rx; }

int zmtp_conn_keepalive(zmtp_conn *c, int idle_ms, int timeout_ms)
{
    if (!c->is_tcp || c->fd < 0 || idle_ms <= 0) return 0;
    int one = 1, secs = (idle_ms + 999) / 1000;
    unsigned int user_ms = timeout_ms > 0 ? (unsigned int)timeout_ms : 3u * (unsigned int)idle_ms;
    /* The count matters only if TCP_USER_TIMEOUT is not honoured: then
     * about the same total silence. */
    int cnt = (int)((user_ms + (unsigned)secs * 1000u - 1) / ((unsigned)secs * 1000u));
    if (cnt < 1) cnt = 1;
    if (setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
        setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs) < 0 ||
        setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof secs) < 0 ||
        setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0 ||
        setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof user_ms) < 0)
        return -1;
    return 0;
}

int zmtp_conn_ping(zmtp_conn *c)
{
    if (c->state == C_FAILED) return -1;
    if (c->state != C_OPEN) return 0;
    /* PING with TTL 0 (the peer sets no timer of its own) and no context. */
    static const uint8_t ping[] = {4, 'P', 'I', 'N', 'G', 0, 0};
    return queue_command(c, ping, sizeof ping);
}
