/* ppx-bridge — joins a legacy, bind-only PPX simulator (e.g. one built on
 * the upstream C++ front end, unchanged) to a ppxd that listens for
 * simulators (ppxd --sim-listen).
 *
 *   ppxd (REQ, listening) <--tcp/ipc-- REP [ppx-bridge] REQ --ipc--> REP (simulator, bound)
 *
 * The bridge connects a REP socket out to ppxd and a REQ socket to the
 * simulator, and relays each request and its reply unchanged (one body
 * frame each way, lockstep).  With --sim-cmd it starts the simulator on a
 * private abstract ipc endpoint and supervises it: when the simulator dies
 * or hangs (no reply within --timeout-ms) it is killed and restarted, the
 * request in hand is answered with Reset (ppxd then discards only that
 * trace), and the fresh simulator is sent a Handshake of the bridge's own
 * before the next request.  With --sim ENDPOINT it uses a running simulator
 * and reconnects to it instead.
 *
 * One zmq_poll loop, explicit states (IDLE: waiting for ppxd's request;
 * WAIT_SIM: a request is with the simulator), deadline-based timeouts. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "args.h"
#include "ppx.h"

typedef enum bridge_state { B_IDLE = 0, B_WAIT_SIM } bridge_state;

typedef struct bridge {
    const char *to;          /* ppxd's --sim-listen endpoint */
    const char *sim_cmd;     /* template with {endpoint}, or NULL */
    const char *sim_ep_fixed; /* --sim ENDPOINT, or NULL */
    int timeout_ms;
    int start_timeout_ms;
    int quiet;
    void *ctx, *up, *down;   /* up: REP to ppxd; down: REQ to the simulator */
    char sim_ep[128];
    pid_t pid;
    unsigned generation;
    bridge_state state;
    double deadline;
    int need_handshake;      /* the simulator was (re)started under a live ppxd session */
    int own_handshake;       /* the request with the simulator is our Handshake */
    zmq_msg_t pending;       /* ppxd's request, held while our Handshake goes first */
    int has_pending;
    unsigned long relayed, restarts, resets;
} bridge;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void blog(const bridge *b, const char *what, const char *detail)
{
    if (b->quiet) return;
    fprintf(stderr, "ppx-bridge: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ppx-bridge --to ENDPOINT (--sim-cmd 'CMD {endpoint}' | --sim ENDPOINT) [options]\n"
            "\n"
            "Joins a simulator that can only bind a REP socket to a ppxd listening for simulators\n"
            "(ppxd ... --sim-listen ENDPOINT): connects out to ppxd and relays both ways.\n"
            "\n"
            "  --to ENDPOINT          ppxd's --sim-listen endpoint, e.g. tcp://daemon-host:5556\n"
            "  --sim-cmd 'CMD {endpoint}'  start the simulator ({endpoint}: a private ipc endpoint);\n"
            "                         it is restarted when it dies or hangs\n"
            "  --sim ENDPOINT         use a running simulator bound at ENDPOINT instead\n"
            "  --timeout-ms T         a simulator reply later than this is a hang (default 60000)\n"
            "  --start-timeout-ms T   start to first reply (default 30000)\n"
            "  --quiet                no messages but errors\n");
}

/* --- the simulator side -------------------------------------------------------- */

static void stop_sim(bridge *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, NULL, 0);
    }
    b->pid = 0;
}

static int open_down(bridge *b)
{
    if (b->down) zmq_close(b->down);
    b->down = zmq_socket(b->ctx, ZMQ_REQ);
    if (!b->down) return -1;
    int linger = 0;
    zmq_setsockopt(b->down, ZMQ_LINGER, &linger, sizeof linger);
    return zmq_connect(b->down, b->sim_ep);
}

/* (Re)start the simulator (--sim-cmd) or reconnect to it (--sim). */
static int start_sim(bridge *b)
{
    stop_sim(b);
    if (b->sim_cmd) {
        snprintf(b->sim_ep, sizeof b->sim_ep, "ipc://@ppx-bridge-%d-%u", (int)getpid(), b->generation++);
        char *cmd = args_expand_endpoint(b->sim_cmd, b->sim_ep), *sh = NULL;
        if (!cmd || asprintf(&sh, "exec %s", cmd) < 0) {
            free(cmd);
            return -1;
        }
        free(cmd);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
            free(sh);
            return -1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the bridge */
            if (getppid() != parent) _exit(127);
            int fd = open("/dev/null", O_RDWR);
            if (fd >= 0) {
                dup2(fd, 0);
                dup2(fd, 1);
                close(fd);
            }
            execl("/bin/sh", "sh", "-c", sh, (char *)NULL);
            _exit(127);
        }
        free(sh);
        b->pid = pid;
    } else {
        snprintf(b->sim_ep, sizeof b->sim_ep, "%s", b->sim_ep_fixed);
    }
    return open_down(b);
}

/* Send ppxd's request (or our Handshake) to the simulator. */
static int send_down(bridge *b, zmq_msg_t *m, int own, int start)
{
    if (zmq_msg_send(m, b->down, 0) < 0) return -1;
    b->state = B_WAIT_SIM;
    b->own_handshake = own;
    b->deadline = now_s() + (start ? b->start_timeout_ms : b->timeout_ms) / 1000.0;
    return 0;
}

static int send_own_handshake(bridge *b)
{
    ppx_encoder *enc = ppx_encoder_new();
    if (!enc) return -1;
    ppx_msg h;
    ppx_msg_init(&h);
    h.type = PPX_MSG_HANDSHAKE;
    h.system_name = "ppx-bridge";
    size_t len;
    ppx_error err;
    const uint8_t *bytes = ppx_encode(enc, &h, &len, &err);
    int rc = -1;
    zmq_msg_t m;
    if (bytes && zmq_msg_init_size(&m, len) == 0) {
        memcpy(zmq_msg_data(&m), bytes, len);
        rc = send_down(b, &m, 1, 1);
        if (rc < 0) zmq_msg_close(&m);
    }
    ppx_encoder_destroy(&enc);
    return rc;
}

/* The simulator died or hung with ppxd's request in hand: answer that with
 * Reset (ppxd discards just this trace), restart, and greet the new one
 * before relaying more. */
static void sim_failed(bridge *b, const char *why)
{
    blog(b, b->sim_cmd ? "simulator failed, restarting it" : "simulator failed, reconnecting", why);
    int had_request = b->state == B_WAIT_SIM && !b->own_handshake;
    if (b->state == B_WAIT_SIM && b->own_handshake && b->has_pending) had_request = 1;
    if (start_sim(b) < 0) blog(b, "cannot restart the simulator", strerror(errno));
    b->restarts++;
    b->need_handshake = 1;
    b->state = B_IDLE;
    if (had_request) {
        if (b->has_pending) {
            zmq_msg_close(&b->pending);
            b->has_pending = 0;
        }
        ppx_encoder *enc = ppx_encoder_new();
        ppx_msg r;
        ppx_msg_init(&r);
        r.type = PPX_MSG_RESET;
        size_t len;
        ppx_error err;
        const uint8_t *bytes = enc ? ppx_encode(enc, &r, &len, &err) : NULL;
        if (bytes && zmq_send(b->up, bytes, len, 0) >= 0) b->resets++;
        ppx_encoder_destroy(&enc);
    }
}

/* --- the loop ------------------------------------------------------------------- */

static int run(bridge *b)
{
    b->ctx = zmq_ctx_new();
    b->up = zmq_socket(b->ctx, ZMQ_REP);
    if (!b->ctx || !b->up) return -1;
    int linger = 0;
    zmq_setsockopt(b->up, ZMQ_LINGER, &linger, sizeof linger);
    if (start_sim(b) < 0) {
        fprintf(stderr, "ppx-bridge: cannot start the simulator (%s): %s\n", b->sim_ep, zmq_strerror(errno));
        return -1;
    }
    if (zmq_connect(b->up, b->to) < 0) {
        fprintf(stderr, "ppx-bridge: cannot connect to %s: %s\n", b->to, zmq_strerror(errno));
        return -1;
    }
    blog(b, "relaying between", b->to);
    double last_reap = 0;
    while (!g_stop) {
        zmq_pollitem_t items[2] = {{b->up, 0, ZMQ_POLLIN, 0}, {b->down, 0, ZMQ_POLLIN, 0}};
        /* Poll only the side a message is due from. */
        zmq_pollitem_t *it = b->state == B_IDLE ? &items[0] : &items[1];
        long timeout = 100;
        if (b->state == B_WAIT_SIM) {
            long left = (long)((b->deadline - now_s()) * 1000.0) + 1;
            if (left < timeout) timeout = left < 0 ? 0 : left;
        }
        int n = zmq_poll(it, 1, timeout);
        if (n < 0 && errno != EINTR) return -1;
        double now = now_s();
        if (b->sim_cmd && b->pid > 0 && now - last_reap > 0.02) {
            last_reap = now;
            int st;
            if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
                b->pid = 0;
                char why[64];
                snprintf(why, sizeof why, WIFSIGNALED(st) ? "killed by signal %d" : "exit status %d",
                         WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
                sim_failed(b, why);
                continue;
            }
        }
        if (n <= 0) {
            if (b->state == B_WAIT_SIM && now >= b->deadline) sim_failed(b, "no reply in time");
            continue;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (b->state == B_IDLE) {
            if (zmq_msg_recv(&m, b->up, 0) < 0) {
                zmq_msg_close(&m);
                continue;
            }
            if (b->need_handshake) {
                /* A fresh simulator: our own Handshake first, unless ppxd's
                 * request is one. */
                ppx_msg in;
                ppx_msg_init(&in);
                ppx_error err;
                ppx_limits lim = ppx_limits_default();
                int is_hs = ppx_decode(zmq_msg_data(&m), zmq_msg_size(&m), &lim, &in, &err) == PPX_OK &&
                            in.type == PPX_MSG_HANDSHAKE;
                ppx_msg_clear(&in);
                b->need_handshake = 0;
                if (!is_hs) {
                    zmq_msg_init(&b->pending);
                    zmq_msg_move(&b->pending, &m);
                    zmq_msg_close(&m);
                    b->has_pending = 1;
                    if (send_own_handshake(b) < 0) sim_failed(b, "cannot send Handshake");
                    continue;
                }
            }
            if (send_down(b, &m, 0, b->relayed == 0) < 0) {
                zmq_msg_close(&m);
                sim_failed(b, "cannot send to the simulator");
            }
            continue;
        }
        if (zmq_msg_recv(&m, b->down, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        if (b->own_handshake) {
            zmq_msg_close(&m);
            b->state = B_IDLE;
            if (b->has_pending) {
                b->has_pending = 0;
                if (send_down(b, &b->pending, 0, 0) < 0) {
                    zmq_msg_close(&b->pending);
                    sim_failed(b, "cannot send to the simulator");
                }
            }
            continue;
        }
        if (zmq_msg_send(&m, b->up, 0) < 0) zmq_msg_close(&m);
        b->relayed++;
        b->state = B_IDLE;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bridge b;
    memset(&b, 0, sizeof b);
    b.timeout_ms = 60000;
    b.start_timeout_ms = 30000;
    enum { O_TO = 1000, O_SIM_CMD, O_SIM, O_TIMEOUT, O_START_TIMEOUT, O_QUIET };
    static const struct option opts[] = {
        {"to", required_argument, 0, O_TO},
        {"sim-cmd", required_argument, 0, O_SIM_CMD},
        {"sim", required_argument, 0, O_SIM},
        {"timeout-ms", required_argument, 0, O_TIMEOUT},
        {"start-timeout-ms", required_argument, 0, O_START_TIMEOUT},
        {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        long v;
        switch (ch) {
        case O_TO: b.to = optarg; break;
        case O_SIM_CMD: b.sim_cmd = optarg; break;
        case O_SIM: b.sim_ep_fixed = optarg; break;
        case O_TIMEOUT:
        case O_START_TIMEOUT:
            v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > 86400000) {
                fprintf(stderr, "ppx-bridge: --%s wants a positive number of milliseconds\n",
                        ch == O_TIMEOUT ? "timeout-ms" : "start-timeout-ms");
                return 2;
            }
            *(ch == O_TIMEOUT ? &b.timeout_ms : &b.start_timeout_ms) = (int)v;
            break;
        case O_QUIET: b.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !b.to || !b.sim_cmd == !b.sim_ep_fixed) {
        fprintf(stderr, "ppx-bridge: give --to ENDPOINT and one of --sim-cmd or --sim\n");
        usage(stderr);
        return 2;
    }
    if (b.sim_cmd && !strstr(b.sim_cmd, "{endpoint}")) {
        fprintf(stderr, "ppx-bridge: --sim-cmd must contain {endpoint} where the simulator's endpoint goes\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    int rc = run(&b);
    if (!b.quiet)
        fprintf(stderr, "ppx-bridge: %lu replies relayed, %lu simulator restarts, %lu traces given up (Reset)\n",
                b.relayed, b.restarts, b.resets);
    stop_sim(&b);
    if (b.has_pending) zmq_msg_close(&b.pending);
    if (b.down) zmq_close(b.down);
    if (b.up) zmq_close(b.up);
    if (b.ctx) zmq_ctx_term(b.ctx);
    return rc < 0 ? 1 : 0;
}
