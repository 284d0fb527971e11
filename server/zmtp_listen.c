/* zmtp_listen.c — listening sockets for simulators that connect in (see
 * zmtp_listen.h). */
#include "zmtp_listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024 /* a fleet reconnecting at once after a restart */

struct zmtp_listener {
    int fd;
    int is_tcp;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* a filesystem ipc path to unlink, or "" */
    char endpoint[300];
};

typedef struct listen_parts {
    int is_tcp;
    char host[256]; /* "" for any */
    char port[8];
    const char *path;
} listen_parts;

static int split(const char *ep, listen_parts *p, char *err, size_t err_len)
{
    memset(p, 0, sizeof *p);
    if (strncmp(ep, "ipc://", 6) == 0) {
        const char *path = ep + 6;
        size_t n = strlen(path);
        if (n == 0 || strcmp(path, "@") == 0 || strcmp(path, "*") == 0) {
            snprintf(err, err_len, "want ipc:///path or ipc://@name");
            return -1;
        }
        if (n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(err, err_len, "ipc path too long (%zu bytes)", n);
            return -1;
        }
        p->path = path;
        return 0;
    }
    if (strncmp(ep, "tcp://", 6) != 0) {
        snprintf(err, err_len, "not a tcp://HOST:PORT or ipc://PATH endpoint");
        return -1;
    }
    const char *rest = ep + 6, *colon;
    size_t hl;
    if (rest[0] == '[') {
        const char *cb = strchr(rest, ']');
        if (!cb || cb[1] != ':') {
            snprintf(err, err_len, "want tcp://[IPv6]:PORT");
            return -1;
        }
        hl = (size_t)(cb - rest - 1);
        rest++;
        colon = cb + 1;
    } else {
        colon = strrchr(rest, ':');
        if (!colon) {
            snprintf(err, err_len, "want tcp://HOST:PORT (HOST may be *)");
            return -1;
        }
        hl = (size_t)(colon - rest);
    }
    if (hl == 0 || hl >= sizeof p->host) {
        snprintf(err, err_len, "tcp host empty or longer than 255 bytes");
        return -1;
    }
    memcpy(p->host, rest, hl);
    p->host[hl] = 0;
    if (strcmp(p->host, "*") == 0) p->host[0] = 0;
    const char *port = colon + 1;
    size_t pl = strlen(port);
    unsigned long v = 0;
    for (size_t i = 0; i < pl; i++) v = port[i] >= '0' && port[i] <= '9' && v <= 65535 ? v * 10 + (unsigned)(port[i] - '0') : 99999;
    if (pl == 0 || pl > 5 || v > 65535) {
        snprintf(err, err_len, "port must be a number from 0 (any free port) to 65535");
        return -1;
    }
    snprintf(p->port, sizeof p->port, "%lu", v);
    p->is_tcp = 1;
    return 0;
}

int zmtp_listen_check(const char *endpoint, char *err, size_t err_len)
{
    listen_parts p;
    return split(endpoint, &p, err, err_len);
}

static int bind_tcp(zmtp_listener *l, const listen_parts *p, char *err, size_t err_len)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = p->host[0] ? AF_UNSPEC : AF_INET; /* "*": IPv4 any, as libzmq binds it */
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(p->host[0] ? p->host : NULL, p->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "cannot resolve '%s': %s", p->host, gai_strerror(rc));
        return -1;
    }
    int e = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0) {
            l->fd = fd;
            break;
        }
        e = errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (l->fd < 0) {
        snprintf(err, err_len, "cannot bind: %s", strerror(e));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
            port = ntohs(s4->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            port = ntohs(s6->sin6_port);
        }
    }
    if (ss.ss_family == AF_INET6)
        snprintf(l->endpoint, sizeof l->endpoint, "tcp://[%s]:%d", host, port);
    else
        snprintf(l->endpoint, sizeof l->endpoint, "tcp://%s:%d", host, port);
    l->is_tcp = 1;
    return 0;
}

static int bind_ipc(zmtp_listener *l, const char *path, char *err, size_t err_len)
{
    struct sockaddr_un u;
    memset(&u, 0, sizeof u);
    u.sun_family = AF_UNIX;
    size_t n = strlen(path);
    socklen_t len;
    if (path[0] == '@') {
        memcpy(u.sun_path + 1, path + 1, n - 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        memcpy(u.sun_path, path, n + 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        /* A socket file left by an earlier run is replaced (as libzmq
         * does); any other kind of file is not ours to remove. */
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
    }
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&u, len) < 0 || listen(l->fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, err_len, "cannot bind: %s", strerror(errno));
        if (l->fd >= 0) close(l->fd);
        l->fd = -1;
        return -1;
    }
    if (path[0] != '@') snprintf(l->path, sizeof l->path, "%s", path);
    snprintf(l->endpoint, sizeof l->endpoint, "ipc://%s", path);
    return 0;
}

zmtp_listener *zmtp_listener_new(const char *endpoint, char *err, size_t err_len)
{
    listen_parts p;
    if (split(endpoint, &p, err, err_len) < 0) return NULL;
    zmtp_listener *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    l->fd = -1;
    if ((p.is_tcp ? bind_tcp(l, &p, err, err_len) : bind_ipc(l, p.path, err, err_len)) < 0) {
        free(l);
        return NULL;
    }
    return l;
}

void zmtp_listener_destroy(zmtp_listener **lp)
{
    if (!lp || !*lp) return;
    zmtp_listener *l = *lp;
    if (l->fd >= 0) close(l->fd);
    if (l->path[0]) unlink(l->path);
    free(l);
    *lp = NULL;
}

int zmtp_listener_fd(const zmtp_listener *l) { return l->fd; }
const char *zmtp_listener_endpoint(const zmtp_listener *l) { return l->endpoint; }

int zmtp_listener_accept(zmtp_listener *l, int *is_tcp, char *peer, size_t peer_len, char *err, size_t err_len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    err[0] = 0;
    int fd;
    do {
        fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        /* A connection reset before we took it, or none pending: not errors. */
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
            snprintf(err, err_len, "accept: %s", strerror(errno));
        return -1;
    }
    *is_tcp = l->is_tcp;
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        snprintf(peer, peer_len, "%s:%d", host, ntohs(s4->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        snprintf(peer, peer_len, "[%s]:%d", host, ntohs(s6->sin6_port));
    } else {
        snprintf(peer, peer_len, "%s", l->endpoint);
    }
    return fd;
}
