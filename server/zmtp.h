/* zmtp.h — ppxd's own ZMTP 3.x client for its simulator connections: REQ
 * semantics over the NULL mechanism on one non-blocking socket, driven by
 * the caller's poll loop (no threads).
 *
 * Why not libzmq here: a libzmq REQ socket moves every message through an
 * I/O thread, so each round trip costs ppxd three thread wake-ups; on a VM
 * those wake-ups are most of the engine's CPU.  With this client a round
 * trip costs one write, one poll and one read.  Simulators are unchanged:
 * any libzmq >= 4 REP (or ROUTER) socket is a valid peer.
 *
 * Wire (RFC 23/ZMTP 3.0, 37/ZMTP 3.1): a 64-byte greeting announcing
 * version 3.1 and the NULL mechanism, then a READY command (Socket-Type REQ,
 * empty Identity) once the peer's greeting has been checked; then each
 * request is an empty delimiter frame followed by one body frame, and each
 * reply must be the same.  PING is answered with PONG; an ERROR command ends
 * the connection with its reason.
 *
 * Connection states:
 *   RETRY --(retry time)--> connect() --> CONNECTING (tcp) --> GREETING
 *   connect refused / path absent --> RETRY (10 ms, doubling to 100 ms), like
 *       a libzmq REQ connect to a peer that has not bound yet
 *   GREETING --(peer greeting valid; READY sent)--> HANDSHAKE
 *   HANDSHAKE --(peer READY valid; queued request sent)--> OPEN
 *   any --(peer closed, peer broke the protocol, local failure)--> FAILED
 * FAILED is final: the caller destroys the connection.
 *
 * Ownership: a zmtp_conn owns its socket and its buffers.  Bodies passed to
 * zmtp_conn_send are copied (or written) before it returns; a reply body
 * returned by zmtp_conn_io points into the connection's buffer, is 8-byte
 * aligned (so the PPX codec reads it in place, without a copy) and stays
 * valid until the next zmtp_conn_io or zmtp_conn_destroy on it.
 * Units: sizes in bytes; times in seconds on CLOCK_MONOTONIC.
 */
#ifndef PPX_ZMTP_H
#define PPX_ZMTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct zmtp_conn zmtp_conn;

/* Why a connection failed (zmtp_conn_failure). */
typedef enum zmtp_failure {
    ZMTP_OK = 0,     /* not failed */
    ZMTP_CLOSED,     /* the peer closed or reset the connection (its process exited) */
    ZMTP_BAD_PEER,   /* the peer broke ZMTP or REQ/REP: bad greeting, mechanism,
                        socket type, frame, oversize or multi-part reply, ERROR */
    ZMTP_LOCAL       /* a local failure: out of memory, socket(), ... */
} zmtp_failure;

/* Poll interest and readiness, as flags (independent of poll.h/zmq.h values). */
enum { ZMTP_READ = 1, ZMTP_WRITE = 2, ZMTP_HANGUP = 4 };

/* Whether endpoint is one zmtp_conn_new can parse: "tcp://HOST:PORT"
 * (hostname, IPv4 or [IPv6]) or "ipc:///path" or "ipc://@name" (Linux
 * abstract namespace, as libzmq binds it).  Syntax only, no name lookup: a
 * command line can be checked before anything else is done, and a host
 * that does not resolve is still reported by zmtp_conn_new.  0, or -1 with
 * the reason in err (which does not repeat the endpoint; err may be NULL
 * with err_len 0). */
int zmtp_endpoint_check(const char *endpoint, char *err, size_t err_len);

/* Connect to endpoint (zmtp_endpoint_check; a hostname is resolved once).
 * Replies whose body exceeds max_msg_bytes are refused (0: no limit).
 * Starts a non-blocking connect and never blocks on the peer.  NULL on a
 * malformed or unresolvable endpoint or a local failure, with the reason in
 * err. */
zmtp_conn *zmtp_conn_new(const char *endpoint, size_t max_msg_bytes, char *err, size_t err_len);
void zmtp_conn_destroy(zmtp_conn **c);

/* What the poll loop needs: the socket (-1 while waiting to retry a
 * connect, or once failed), the ZMTP_READ/ZMTP_WRITE events wanted on it,
 * and the time of the next connect attempt (0 when none is pending). */
int zmtp_conn_fd(const zmtp_conn *c);
int zmtp_conn_events(const zmtp_conn *c);
double zmtp_conn_retry_at(const zmtp_conn *c);

/* Queue one request (an empty delimiter frame, then `body` as one frame) and
 * write it at once when the handshake is done; before that it waits for the
 * handshake.  REQ lockstep: the previous reply must have been received.
 * 0, or -1 when the connection has failed. */
int zmtp_conn_send(zmtp_conn *c, const void *body, size_t len);

/* Make progress after poll: `ready` holds the ZMTP_* flags poll reported
 * (0 when called because the retry time has come).  Connects, handshakes,
 * writes what is queued and reads what has arrived (one read() in the usual
 * case).  Returns 1 with *body, *len set when a complete reply has arrived,
 * 0 when there is nothing for the caller yet, -1 when the connection has
 * failed (zmtp_conn_failure, zmtp_conn_error). */
int zmtp_conn_io(zmtp_conn *c, int ready, const uint8_t **body, size_t *len);

/* Bytes of buffer the connection holds (read, write and queued).  The read
 * buffer grows with the bytes that arrive, not with a frame's announced
 * size, so a peer costs what it sends (bounded by max_msg_bytes). */
size_t zmtp_conn_buffer_bytes(const zmtp_conn *c);

/* 1 once the handshake is complete. */
int zmtp_conn_is_open(const zmtp_conn *c);
zmtp_failure zmtp_conn_failure(const zmtp_conn *c);
/* Why it failed; while still connecting, why the last attempt did not
 * succeed ("" when there is nothing to say). */
const char *zmtp_conn_error(const zmtp_conn *c);

#endif
