/* zmtp_listen.h — the accepting side of ppxd's simulator links: listening
 * sockets that simulators connect to (their REP socket calls zmq_connect
 * instead of zmq_bind), and adopting an accepted socket as a zmtp_conn.
 *
 * ppxd stays the REQ side on an accepted connection: after the greeting and
 * READY exchange (the peer's Socket-Type must be REP or ROUTER) it sends
 * requests and reads replies exactly as on a connection it opened itself
 * (zmtp.h), so the engine drives both the same way.
 *
 * Endpoints: "tcp://HOST:PORT" where HOST is "*" (every IPv4 address), an
 * IPv4 address, "[IPv6]" or a name resolving to one; PORT 0 picks a free
 * port (zmtp_listener_endpoint says which); "ipc:///path" (an existing
 * socket file there is replaced, as libzmq does) or "ipc://@name" (Linux
 * abstract namespace).
 *
 * Ownership: a listener owns its socket (and unlinks its ipc path when
 * destroyed); an adopted connection owns the accepted descriptor.
 */
#ifndef PPX_ZMTP_LISTEN_H
#define PPX_ZMTP_LISTEN_H

#include <stddef.h>
#include "zmtp.h"

typedef struct zmtp_listener zmtp_listener;

/* Whether endpoint is one zmtp_listener_new can bind (syntax only).  0, or
 * -1 with the reason in err. */
int zmtp_listen_check(const char *endpoint, char *err, size_t err_len);
/* Bind and listen, non-blocking.  NULL with the reason in err. */
zmtp_listener *zmtp_listener_new(const char *endpoint, char *err, size_t err_len);
void zmtp_listener_destroy(zmtp_listener **l);
int zmtp_listener_fd(const zmtp_listener *l);
/* The endpoint as bound (the port filled in when 0 was asked for). */
const char *zmtp_listener_endpoint(const zmtp_listener *l);
/* Accept one pending connection: its descriptor (non-blocking, close-on-exec)
 * with *is_tcp set and the peer's address in peer (e.g. "10.0.0.2:40312",
 * "ipc"); -1 when none is pending (or on an error, in err). */
int zmtp_listener_accept(zmtp_listener *l, int *is_tcp, char *peer, size_t peer_len, char *err, size_t err_len);

/* In zmtp.c (they need the connection's internals). */

/* A connection over an accepted socket fd (taken over, closed on failure):
 * greets at once and then behaves like zmtp_conn_new's after its connect.
 * NULL on a local failure, with the reason in err. */
zmtp_conn *zmtp_conn_adopt(int fd, int is_tcp, size_t max_msg_bytes, char *err, size_t err_len);
/* When bytes last arrived from the peer (CLOCK_MONOTONIC seconds; the
 * adoption time before any). */
double zmtp_conn_last_rx(const zmtp_conn *c);
/* Queue a ZMTP PING (TTL 0) once the handshake is done (a no-op before):
 * libzmq answers it with PONG from its I/O thread, even while the simulator
 * is busy, so silence means a dead peer or link.  0, or -1 when failed. */
int zmtp_conn_ping(zmtp_conn *c);
/* Let the kernel watch an idle TCP link: keepalive probes after idle_ms of
 * silence, every idle_ms, and the connection fails (ETIMEDOUT, seen as an
 * error on the next read) once the peer's host has not acknowledged for
 * timeout_ms (TCP_USER_TIMEOUT, which also bounds unacknowledged sends).
 * The probes cost ppxd no system calls, unlike a PING and its PONG.
 * Whole seconds for the probes (rounded up, at least 1).  A no-op on ipc.
 * 0, or -1 when the socket refused an option. */
int zmtp_conn_keepalive(zmtp_conn *c, int idle_ms, int timeout_ms);

#endif
