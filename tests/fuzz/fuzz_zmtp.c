/* fuzz_zmtp.c — ppxd's ZMTP client (server/zmtp.h) fed the input as the
 * byte stream of its peer, over a real unix socket: greeting, handshake,
 * frames, commands, replies.  The first input byte chooses whether a valid
 * greeting and READY go first (so that most inputs reach the frame parser).
 * Every reply the client hands out is read whole and must be 8-byte
 * aligned. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "zmtp.h"

static int g_listen = -1;
static char g_endpoint[128];

static void setup(void)
{
    char name[96];
    snprintf(name, sizeof name, "ppxd-fuzz-zmtp-%d", (int)getpid());
    snprintf(g_endpoint, sizeof g_endpoint, "ipc://@%s", name);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path + 1, name, strlen(name));
    g_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(g_listen >= 0);
    FUZZ_CHECK(bind(g_listen, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name))) == 0);
    FUZZ_CHECK(listen(g_listen, 8) == 0);
}

/* A valid ZMTP 3.1 NULL greeting, then READY with Socket-Type REP: a
 * command frame of 25 bytes ([5]READY [11]Socket-Type [0 0 0 3]REP). */
static size_t greeting_and_ready(uint8_t *out)
{
    static const uint8_t g[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 1, 'N', 'U', 'L', 'L'};
    static const uint8_t ready[] = {0x04, 25, 5,   'R', 'E', 'A', 'D', 'Y', 11, 'S', 'o', 'c', 'k', 'e',
                                    't',  '-', 'T', 'y', 'p', 'e', 0,   0,   0,  3,   'R', 'E', 'P'};
    memcpy(out, g, 64);
    memcpy(out + 64, ready, sizeof ready);
    return 64 + sizeof ready;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (g_listen < 0) setup();
    char err[320];
    zmtp_conn *c = zmtp_conn_new(g_endpoint, 1 << 20, err, sizeof err);
    FUZZ_CHECK(c != NULL);
    int peer = accept4(g_listen, NULL, NULL, SOCK_CLOEXEC);
    FUZZ_CHECK(peer >= 0);
    uint8_t pre[128];
    size_t npre = data[0] & 1 ? greeting_and_ready(pre) : 0;
    /* The stream: optional valid start, then the input; then end of stream. */
    if (npre) FUZZ_CHECK(write(peer, pre, npre) == (ssize_t)npre);
    if (size > 1) FUZZ_CHECK(write(peer, data + 1, size - 1) == (ssize_t)(size - 1));
    shutdown(peer, SHUT_WR);
    FUZZ_CHECK(zmtp_conn_send(c, "req", 3) == 0 || zmtp_conn_failure(c) != ZMTP_OK);
    for (int step = 0; step < 10000; step++) {
        int fd = zmtp_conn_fd(c);
        int ready = 0;
        if (fd >= 0) {
            int ev = zmtp_conn_events(c);
            struct pollfd p = {fd, (short)((ev & ZMTP_READ ? POLLIN : 0) | (ev & ZMTP_WRITE ? POLLOUT : 0)), 0};
            int n = poll(&p, 1, 1000);
            FUZZ_CHECK(n >= 0 || errno == EINTR);
            if (n == 0) break; /* nothing more will come: the client waits for bytes that are not there */
            ready = (p.revents & POLLIN ? ZMTP_READ : 0) | (p.revents & POLLOUT ? ZMTP_WRITE : 0) |
                    (p.revents & (POLLERR | POLLHUP) ? ZMTP_HANGUP : 0);
        } else if (zmtp_conn_retry_at(c) <= 0) {
            break;
        }
        const uint8_t *body = NULL;
        size_t len = 0;
        int rc = zmtp_conn_io(c, ready, &body, &len);
        if (rc < 0) {
            FUZZ_CHECK(zmtp_conn_failure(c) != ZMTP_OK);
            fuzz_touch(zmtp_conn_error(c), strlen(zmtp_conn_error(c)));
            break;
        }
        if (rc == 1) {
            FUZZ_CHECK(len <= (1u << 20));
            FUZZ_CHECK((uintptr_t)body % 8 == 0);
            fuzz_touch(body, len);
            if (zmtp_conn_send(c, "again", 5) < 0) break;
        }
        /* a peer costs what it sends */
        FUZZ_CHECK(zmtp_conn_buffer_bytes(c) <= 4 * (size + 64 * 1024));
    }
    zmtp_conn_destroy(&c);
    close(peer);
    return 0;
}
