/* engine.c — the PPX engine event loop (see engine.h). */
#include "engine.h"

#include "args.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "zmtp.h"
#include "zmtp_listen.h"

typedef enum sess_state {
    S_BACKOFF = 0, /* waiting to (re)launch */
    S_HANDSHAKE,   /* Handshake sent */
    S_IDLE,        /* ready for a Run */
    S_IN_TRACE,    /* Run or a result sent; waiting for the simulator's next statement */
    S_ANSWER,      /* a Sample is waiting for this turn's policy batch */
    S_DEAD,        /* given up */
    S_VACANT       /* a connected-in session with no simulator */
} sess_state;

typedef struct session {
    size_t id;
    sess_state state;
    int launched;
    int accepted;          /* a session for simulators that connect in */
    int parked;            /* its model is not the job's: kept connected, given no trace */
    int handshake_resends;
    char model[128];       /* the HandshakeResult model name */
    pid_t pid;
    char endpoint[300];    /* "tcp://" + a host of up to 255 bytes + ":port" fits */
    zmtp_conn *conn;       /* NULL between launches */
    double deadline;
    int failures;          /* consecutive */
    unsigned generation;   /* launches so far, for fresh endpoints */
    trace *t;
    uint64_t index;
    int awaiting_run_reply; /* only Run sent so far in this trace */
    double run_sent_at;    /* when this trace's Run went out: heartbeats count silence from here */
    int run_resends;
    int poisoned;
    discard_reason poison_reason;
    char poison_msg[320];
    ppx_msg msg;           /* the last reply; views into conn's buffer until its next zmtp_conn_io */
    size_t pending_entry;  /* index of the Sample entry awaiting its answer */
    dist pending_dist;
    rng obs_rng;           /* draws of Observe values nobody supplied, per trace */
    const observation *obs; /* the Observe values of the trace in flight (the job's, or cfg's) */
    size_t n_obs;
} session;

struct engine {
    engine_config cfg;
    session *sess;
    size_t n_sess;
    ppx_encoder *enc;
    engine_stats stats;
    volatile int stop;
    zmq_pollitem_t *items;
    size_t *item_sess;
    policy_request *reqs;
    size_t *req_sess;
    double *nan_buf;
    size_t nan_cap;
    char **warned_obs;     /* Observe names already warned about (no value given) */
    size_t n_warned;
    zmtp_listener **listeners;
    size_t n_listeners;
    size_t n_fixed;        /* launched + connected sessions, before the connected-in ones */
    size_t n_scan;         /* sessions the loop looks at: n_fixed + up to the last occupied
                              connected-in one (a vacant tail costs nothing per message) */
    double next_heartbeat;
    double last_refused_log;
    int said_waiting;      /* "waiting for simulators" was printed since the last one left */
    engine_pool *pools;    /* per model: joins and departures of connected-in simulators */
    size_t n_pools, cap_pools;
};

const char *discard_reason_name(discard_reason r)
{
    static const char *names[] = {"timeout", "exited", "garbage", "protocol", "invalid-params", "policy", "reset",
                                  "rejected"};
    return (unsigned)r < DISCARD_REASON_COUNT ? names[r] : "unknown";
}

void engine_config_defaults(engine_config *c)
{
    memset(c, 0, sizeof *c);
    c->msg_timeout_ms = 10000;
    c->start_timeout_ms = 30000;
    c->backoff_min_ms = 100;
    c->backoff_max_ms = 5000;
    c->max_failures = 20;
    c->listen_max = 256;
    c->heartbeat_ms = 10000;
    c->limits = ppx_limits_default();
    c->wake_fd = -1;
}

int engine_config_option(engine_config *c, const char *name, const char *arg, char *err, size_t err_len)
{
    uint64_t v;
    if (strcmp(name, "timeout-ms") == 0 || strcmp(name, "start-timeout-ms") == 0) {
        if (args_u64_range(arg, 1, 86400000, &v) < 0) {
            snprintf(err, err_len, "--%s wants a positive number", name);
            return -1;
        }
        *(name[0] == 't' ? &c->msg_timeout_ms : &c->start_timeout_ms) = (int)v;
        return 1;
    }
    if (strcmp(name, "max-failures") == 0) {
        if (args_u64_range(arg, 0, 1000000, &v) < 0) {
            snprintf(err, err_len, "--max-failures wants a number");
            return -1;
        }
        c->max_failures = (int)v;
        return 1;
    }
    return 0;
}

/* engine_new says the same as the command line when handed no simulators
 * or a template without {endpoint}. */
#define NO_SIMULATORS "no simulators: give " ENGINE_SIM_OPTIONS_SHORT
#define SIM_CMD_NEEDS_ENDPOINT "--sim-cmd must contain {endpoint} where the simulator's endpoint goes"
/* How long a finished job waits for launched simulators still in traces it
 * does not need before stopping them (seconds). */
#define ENGINE_DONE_GRACE_S 0.1

int engine_sim_options_given(const engine_sim_options *o)
{
    return o->sim_cmd || o->n_launch || o->n_connect || o->n_listen || o->model || o->listen_max || o->heartbeat_ms ||
           o->heartbeat_timeout_ms;
}

int engine_timeouts_changed(const engine_config *c)
{
    engine_config def;
    engine_config_defaults(&def);
    return c->msg_timeout_ms != def.msg_timeout_ms || c->start_timeout_ms != def.start_timeout_ms ||
           c->max_failures != def.max_failures;
}

int engine_sim_option(engine_sim_options *o, const char *name, const char *arg, char *err, size_t err_len)
{
    uint64_t v;
    if (strcmp(name, "sim-cmd") == 0) {
        /* Checked here, not at launch: a usage error must stop the command
         * before it touches any file. */
        if (!strstr(arg, "{endpoint}")) {
            snprintf(err, err_len, "%s", SIM_CMD_NEEDS_ENDPOINT);
            return -1;
        }
        o->sim_cmd = arg;
        return 1;
    }
    if (strcmp(name, "j") == 0) {
        if (args_u64_range(arg, 1, 4096, &v) < 0) {
            snprintf(err, err_len, "-j wants a number from 1 to 4096");
            return -1;
        }
        o->n_launch = (size_t)v;
        return 1;
    }
    if (strcmp(name, "sim-listen") == 0) {
        char why[96];
        if (zmtp_listen_check(arg, why, sizeof why) < 0) {
            snprintf(err, err_len, "--sim-listen: %s", why);
            return -1;
        }
        if (args_push(&o->listen, &o->n_listen, arg) < 0) {
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        return 1;
    }
    if (strcmp(name, "sim-model") == 0) {
        if (!arg[0] || strlen(arg) >= 128) {
            snprintf(err, err_len, "--sim-model wants a model name of 1 to 127 bytes");
            return -1;
        }
        o->model = arg;
        return 1;
    }
    if (strcmp(name, "sim-max") == 0) {
        if (args_u64_range(arg, 1, 65536, &v) < 0) {
            snprintf(err, err_len, "--sim-max wants a number from 1 to 65536");
            return -1;
        }
        o->listen_max = (size_t)v;
        return 1;
    }
    if (strcmp(name, "heartbeat-ms") == 0 || strcmp(name, "heartbeat-timeout-ms") == 0) {
        int hb = strcmp(name, "heartbeat-ms") == 0;
        if (args_u64_range(arg, hb ? 0 : 1, 86400000, &v) < 0) {
            snprintf(err, err_len, "--%s wants a %s number of milliseconds", name, hb ? "non-negative" : "positive");
            return -1;
        }
        if (hb)
            o->heartbeat_ms = v ? (int)v : -1;
        else
            o->heartbeat_timeout_ms = (int)v;
        return 1;
    }
    if (strcmp(name, "connect") == 0) {
        /* Syntax only, for the same reason as --sim-cmd; a host name that
         * does not resolve is found when the engine connects. */
        char why[96];
        if (zmtp_endpoint_check(arg, why, sizeof why) < 0) {
            snprintf(err, err_len, "--connect: %s", why);
            return -1;
        }
        if (args_push(&o->connect, &o->n_connect, arg) < 0) {
            snprintf(err, err_len, "out of memory");
            return -1;
        }
        return 1;
    }
    return 0;
}

int engine_sim_options_apply(const engine_sim_options *o, engine_config *c, char *err, size_t err_len)
{
    if (!o->sim_cmd && !o->n_connect && !o->n_listen) {
        snprintf(err, err_len, "%s", NO_SIMULATORS);
        return 0;
    }
    c->sim_cmd = o->sim_cmd;
    /* -j alone (with --connect only) launches nothing, as before: it is
     * accepted and ignored rather than turned into an error. */
    c->n_launch = o->sim_cmd ? (o->n_launch ? o->n_launch : 1) : 0;
    c->connect = o->connect;
    c->n_connect = o->n_connect;
    c->listen = o->listen;
    c->n_listen = o->n_listen;
    if (o->listen_max) c->listen_max = o->listen_max;
    if (o->model) c->model = o->model;
    if (o->heartbeat_ms) c->heartbeat_ms = o->heartbeat_ms < 0 ? 0 : o->heartbeat_ms;
    if (o->heartbeat_timeout_ms) c->heartbeat_timeout_ms = o->heartbeat_timeout_ms;
    return 1;
}

void engine_sim_options_free(engine_sim_options *o)
{
    free(o->connect);
    o->connect = NULL;
    o->n_connect = 0;
    free(o->listen);
    o->listen = NULL;
    o->n_listen = 0;
}

static int heartbeat_timeout_ms(const engine *e)
{
    return e->cfg.heartbeat_timeout_ms ? e->cfg.heartbeat_timeout_ms : 3 * e->cfg.heartbeat_ms;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void elog(const session *s, const char *fmt, const char *detail)
{
    if (s)
        fprintf(stderr, "ppxd: simulator %zu (%s): %s%s%s\n", s->id, s->endpoint, fmt, detail ? ": " : "",
                detail ? detail : "");
    else
        fprintf(stderr, "ppxd: %s%s%s\n", fmt, detail ? ": " : "", detail ? detail : "");
}

/* --- sockets and processes --------------------------------------------------- */

static void close_conn(session *s) { zmtp_conn_destroy(&s->conn); }

static int send_msg(engine *e, session *s, const ppx_msg *m)
{
    size_t len;
    ppx_error err;
    const uint8_t *b = ppx_encode(e->enc, m, &len, &err);
    if (!b) {
        elog(s, "cannot encode reply", err.message);
        return -1;
    }
    /* A failure here is the connection's; the caller's fault reports it. */
    if (zmtp_conn_send(s->conn, b, len) < 0) return -1;
    e->stats.messages++;
    return 0;
}

static int send_type(engine *e, session *s, ppx_msg_type t)
{
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = t;
    return send_msg(e, s, &m);
}

/* Connect (retrying until the simulator has bound, like a libzmq REQ
 * connect); replies over the codec's size limit are refused on arrival. */
static int open_conn(engine *e, session *s)
{
    close_conn(s);
    char err[320];
    s->conn = zmtp_conn_new(s->endpoint, e->cfg.limits.max_message_bytes, err, sizeof err);
    if (!s->conn) {
        elog(s, "cannot connect", err);
        return -1;
    }
    return 0;
}

static pid_t spawn_sim(const char *cmd)
{
    char *sh = NULL;
    if (asprintf(&sh, "exec %s", cmd) < 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        free(sh);
        return -1;
    }
    if (pid == 0) {
        /* Die with ppxd: a simulator outliving its engine is a leak. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1); /* simulator stdout is not ppxd's; stderr stays for its errors */
            close(fd);
        }
        execl("/bin/sh", "sh", "-c", sh, (char *)NULL);
        _exit(127);
    }
    free(sh);
    return pid;
}

static void kill_sim(session *s)
{
    if (s->launched && s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

/* Launch (or connect) and send Handshake. */
static int start_session(engine *e, session *s)
{
    double now = now_s();
    if (s->launched) {
        snprintf(s->endpoint, sizeof s->endpoint, "ipc://@ppxd-%d-%zu-%u", (int)getpid(), s->id, s->generation++);
        char *cmd = args_expand_endpoint(e->cfg.sim_cmd, s->endpoint);
        if (!cmd) return -1;
        s->pid = spawn_sim(cmd);
        free(cmd);
        if (s->pid < 0) {
            elog(s, "cannot start simulator", strerror(errno));
            s->pid = 0;
            return -1;
        }
    }
    if (open_conn(e, s) < 0) return -1;
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = PPX_MSG_HANDSHAKE;
    m.system_name = "ppxd";
    if (send_msg(e, s, &m) < 0) return -1;
    s->state = S_HANDSHAKE;
    s->deadline = now + e->cfg.start_timeout_ms / 1000.0;
    return 0;
}

static void end_trace(engine *e, policy *p, session *s)
{
    if (p) policy_end(p, s->id);
    trace_reset(s->t);
    s->poisoned = 0;
    (void)e;
}

/* The pool entry of a model (created on first use); NULL when out of memory. */
static engine_pool *pool_of(engine *e, const char *model)
{
    for (size_t i = 0; i < e->n_pools; i++)
        if (strcmp(e->pools[i].model, model) == 0) return &e->pools[i];
    if (e->n_pools == e->cap_pools) {
        size_t cap = e->cap_pools ? 2 * e->cap_pools : 8;
        engine_pool *p = realloc(e->pools, cap * sizeof *p);
        if (!p) return NULL;
        e->pools = p;
        e->cap_pools = cap;
    }
    engine_pool *p = &e->pools[e->n_pools++];
    memset(p, 0, sizeof *p);
    snprintf(p->model, sizeof p->model, "%s", model);
    return p;
}

/* A connected-in simulator's session is free again. */
static void vacate(engine *e, session *s)
{
    close_conn(s);
    if (s->state != S_HANDSHAKE && s->state != S_VACANT) {
        engine_pool *pl = pool_of(e, s->model);
        if (pl) pl->left++;
        e->stats.left++;
        if (e->cfg.progress) elog(s, "left", s->model);
    }
    s->state = S_VACANT;
    s->parked = 0;
    s->model[0] = 0;
    s->failures = 0;
    while (e->n_scan > e->n_fixed && e->sess[e->n_scan - 1].state == S_VACANT) e->n_scan--;
}

/* A fault: discard the trace in flight; restart (launched), drop (connected)
 * or vacate (connected in). */
static void fault(engine *e, policy *p, const job_ops *ops, void *job, session *s, discard_reason why,
                  const char *detail)
{
    elog(s, discard_reason_name(why), detail);
    if (s->state == S_IN_TRACE || s->state == S_ANSWER) {
        e->stats.discarded[why]++;
        e->stats.discarded_total++;
        end_trace(e, p, s);
        if (ops) ops->discard(job, s->id, s->index, why);
    }
    close_conn(s);
    kill_sim(s);
    if (s->accepted) {
        /* It may come back on a new connection: a new session then. */
        vacate(e, s);
        return;
    }
    s->failures++;
    if (!s->launched) {
        s->state = S_DEAD;
        e->stats.dropped++;
        elog(s, "dropped (a connected simulator cannot resynchronise)", NULL);
        return;
    }
    if (s->failures > e->cfg.max_failures) {
        s->state = S_DEAD;
        elog(s, "given up after repeated failures", NULL);
        return;
    }
    double backoff = e->cfg.backoff_min_ms / 1000.0;
    for (int i = 1; i < s->failures && backoff < e->cfg.backoff_max_ms / 1000.0; i++) backoff *= 2;
    if (backoff > e->cfg.backoff_max_ms / 1000.0) backoff = e->cfg.backoff_max_ms / 1000.0;
    s->state = S_BACKOFF;
    s->deadline = now_s() + backoff;
}

/* The job is done and a launched simulator is still in a trace nobody needs
 * (a straggler whose trace a backup copy finished): stop it rather than wait
 * out its timeout; it restarts when a later run needs it.  Not a fault. */
static void retire_straggler(engine *e, policy *p, session *s)
{
    end_trace(e, p, s);
    if (s->accepted) {
        /* Closing its link makes a libppx simulator give the run up
         * (finished locally) and connect again. */
        vacate(e, s);
        return;
    }
    close_conn(s);
    kill_sim(s);
    s->state = S_BACKOFF;
    s->deadline = now_s();
}

/* The connection failed while sending or receiving: a closed connection
 * means the simulator exited, broken ZMTP is garbage from it. */
static void conn_fault(engine *e, policy *p, const job_ops *ops, void *job, session *s, const char *what)
{
    discard_reason why = DISCARD_PROTOCOL;
    char detail[400];
    snprintf(detail, sizeof detail, "%s", what);
    zmtp_failure f = s->conn ? zmtp_conn_failure(s->conn) : ZMTP_OK;
    if (f != ZMTP_OK) {
        why = f == ZMTP_CLOSED ? DISCARD_EXITED : f == ZMTP_BAD_PEER ? DISCARD_GARBAGE : DISCARD_PROTOCOL;
        snprintf(detail, sizeof detail, "%s", zmtp_conn_error(s->conn));
    }
    fault(e, p, ops, job, s, why, detail);
}

/* --- construction ------------------------------------------------------------ */

engine *engine_new(const engine_config *cfg)
{
    size_t n_fixed = cfg->n_connect + (cfg->sim_cmd ? cfg->n_launch : 0);
    size_t n_in = cfg->n_listen ? (cfg->listen_max ? cfg->listen_max : 1) : 0;
    size_t n = n_fixed + n_in;
    if (n == 0) {
        elog(NULL, NO_SIMULATORS, NULL);
        return NULL;
    }
    if (cfg->sim_cmd && !strstr(cfg->sim_cmd, "{endpoint}")) {
        elog(NULL, SIM_CMD_NEEDS_ENDPOINT, cfg->sim_cmd);
        return NULL;
    }
    engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->cfg = *cfg;
    e->enc = ppx_encoder_new();
    e->sess = calloc(n, sizeof *e->sess);
    e->items = calloc(n + cfg->n_listen + 1, sizeof *e->items);
    e->item_sess = calloc(n + cfg->n_listen + 1, sizeof *e->item_sess);
    e->listeners = cfg->n_listen ? calloc(cfg->n_listen, sizeof *e->listeners) : NULL;
    e->reqs = calloc(n, sizeof *e->reqs);
    e->req_sess = calloc(n, sizeof *e->req_sess);
    if (!e->enc || !e->sess || !e->items || !e->item_sess || !e->reqs || !e->req_sess ||
        (cfg->n_listen && !e->listeners)) {
        engine_destroy(&e);
        return NULL;
    }
    e->n_sess = n;
    e->n_fixed = n_fixed;
    e->n_scan = n_fixed;
    if (n_in) {
        /* Each connected-in simulator is a descriptor: a fleet needs more
         * than the usual soft limit of 1024. */
        struct rlimit rl;
        rlim_t want = (rlim_t)(n + 256);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    for (size_t i = 0; i < cfg->n_listen; i++) {
        char err[320];
        e->listeners[i] = zmtp_listener_new(cfg->listen[i], err, sizeof err);
        if (!e->listeners[i]) {
            fprintf(stderr, "ppxd: --sim-listen %s: %s\n", cfg->listen[i], err);
            engine_destroy(&e);
            return NULL;
        }
        e->n_listeners++;
        if (cfg->progress)
            fprintf(stderr, "ppxd: simulators may connect to %s\n", zmtp_listener_endpoint(e->listeners[i]));
    }
    e->next_heartbeat = now_s() + cfg->heartbeat_ms / 1000.0;
    for (size_t i = 0; i < n; i++) {
        session *s = &e->sess[i];
        s->id = i;
        ppx_msg_init(&s->msg);
        s->t = trace_new();
        if (!s->t) {
            engine_destroy(&e);
            return NULL;
        }
        if (i >= n_fixed) {
            s->accepted = 1;
            s->state = S_VACANT;
            snprintf(s->endpoint, sizeof s->endpoint, "connected in");
            continue;
        }
        if (i < cfg->n_connect) {
            snprintf(s->endpoint, sizeof s->endpoint, "%s", cfg->connect[i]);
        } else {
            s->launched = 1;
        }
        if (start_session(e, s) < 0) {
            /* Try again after back-off rather than failing the whole engine. */
            s->failures = 1;
            s->state = S_BACKOFF;
            s->deadline = now_s() + cfg->backoff_min_ms / 1000.0;
        }
    }
    return e;
}

void engine_destroy(engine **ep)
{
    if (!ep || !*ep) return;
    engine *e = *ep;
    for (size_t i = 0; e->sess && i < e->n_sess; i++) {
        session *s = &e->sess[i];
        close_conn(s);
        kill_sim(s);
        ppx_msg_clear(&s->msg);
        trace_destroy(&s->t);
    }
    for (size_t i = 0; i < e->n_listeners; i++) zmtp_listener_destroy(&e->listeners[i]);
    free(e->listeners);
    free(e->sess);
    free(e->items);
    free(e->item_sess);
    free(e->reqs);
    free(e->req_sess);
    free(e->nan_buf);
    for (size_t i = 0; i < e->n_warned; i++) free(e->warned_obs[i]);
    free(e->warned_obs);
    free(e->pools);
    ppx_encoder_destroy(&e->enc);
    free(e);
    *ep = NULL;
}

size_t engine_slots(const engine *e) { return e->n_sess; }
const engine_stats *engine_get_stats(const engine *e) { return &e->stats; }
void engine_request_stop(engine *e) { e->stop = 1; }

void engine_set_observations(engine *e, const observation *obs, size_t n_obs)
{
    e->cfg.obs = obs;
    e->cfg.n_obs = n_obs;
}

void engine_set_progress(engine *e, int on) { e->cfg.progress = on; }

static int session_ready(const session *s)
{
    return s->state == S_IDLE || s->state == S_IN_TRACE || s->state == S_ANSWER;
}

const char *engine_slot_model(const engine *e, size_t slot)
{
    if (slot >= e->n_sess || !session_ready(&e->sess[slot])) return NULL;
    return e->sess[slot].model;
}

size_t engine_pools(const engine *e, engine_pool *out, size_t max)
{
    /* Models seen joining, plus those of launched and connected simulators. */
    size_t n = 0;
    for (size_t i = 0; i < e->n_pools && n < max; i++) {
        out[n] = e->pools[i];
        out[n].connected = out[n].busy = 0;
        n++;
    }
    for (size_t i = 0; i < e->n_scan; i++) {
        const session *s = &e->sess[i];
        if (!session_ready(s)) continue;
        size_t k = 0;
        while (k < n && strcmp(out[k].model, s->model) != 0) k++;
        if (k == n) {
            if (n == max) continue;
            memset(&out[n], 0, sizeof out[n]);
            snprintf(out[n].model, sizeof out[n].model, "%s", s->model);
            n++;
        }
        out[k].connected++;
        out[k].busy += s->state != S_IDLE;
    }
    return n;
}

void engine_print_stats(const engine *e, void *file)
{
    FILE *f = file;
    const engine_stats *st = &e->stats;
    fprintf(f, "traces done       %llu\n", (unsigned long long)st->traces_done);
    fprintf(f, "traces discarded  %llu", (unsigned long long)st->discarded_total);
    for (int r = 0; r < DISCARD_REASON_COUNT; r++)
        if (st->discarded[r]) fprintf(f, "  %s=%llu", discard_reason_name(r), (unsigned long long)st->discarded[r]);
    fprintf(f, "\nrestarts          %llu\n", (unsigned long long)st->restarts);
    if (st->duplicates)
        fprintf(f, "duplicates        %llu (traces finished after their backup copy)\n",
                (unsigned long long)st->duplicates);
    if (st->dropped) fprintf(f, "dropped           %llu\n", (unsigned long long)st->dropped);
    if (st->resets) fprintf(f, "reset replies     %llu\n", (unsigned long long)st->resets);
    if (e->n_listeners)
        fprintf(f, "connected in      %llu joined, %llu left, %llu refused (sessions full)\n",
                (unsigned long long)st->joined, (unsigned long long)st->left, (unsigned long long)st->refused);
    fprintf(f, "messages          %llu (%.0f/s)\n", (unsigned long long)st->messages,
            st->elapsed > 0 ? st->messages / st->elapsed : 0.0);
    fprintf(f, "polls             %llu (%.2f per message, %llu without waiting)\n", (unsigned long long)st->polls,
            st->messages ? (double)st->polls / (double)st->messages : 0.0, (unsigned long long)st->polls_nowait);
    fprintf(f, "elapsed           %.3f s (engine CPU %.3f s, %.2f us/message)\n", st->elapsed, st->cpu,
            st->messages ? st->cpu / st->messages * 1e6 : 0.0);
}

/* --- statements ---------------------------------------------------------------- */

/* Build a dist from a wire distribution.  0, or -1 with why set. */
static int wire_to_dist(const ppx_dist *w, dist *d, char *why, size_t why_len)
{
    if (w->type <= PPX_DIST_NONE || w->type >= PPX_DIST_TYPE_COUNT) {
        snprintf(why, why_len, "no distribution");
        return -1;
    }
    size_t k = 0;
    if (w->type == PPX_DIST_CATEGORICAL) {
        const ppx_tensor *t = &w->param[0];
        k = t->ndim ? (size_t)t->shape[t->ndim - 1] : t->len;
    }
    if (dist_init(d, (dist_kind)w->type, w->param[0].data, w->param[0].len, w->param[1].data, w->param[1].len, k,
                  why, why_len) < 0)
        return -1;
    return dist_validate(d, why, why_len);
}

static double *nan_values(engine *e, size_t n)
{
    if (n > e->nan_cap) {
        double *p = realloc(e->nan_buf, n * sizeof *p);
        if (!p) return NULL;
        e->nan_buf = p;
        e->nan_cap = n;
    }
    for (size_t i = 0; i < n; i++) e->nan_buf[i] = NAN;
    return e->nan_buf;
}

/* The shape of a value of d: that of the full-size parameter (Categorical:
 * probs without its last dimension); scalar when n == 1. */
static void value_shape(const ppx_dist *w, const dist *d, const int32_t **shape, size_t *ndim)
{
    *shape = NULL;
    *ndim = 0;
    if (d->n == 1) return;
    if (d->kind == DIST_CATEGORICAL) {
        *shape = w->param[0].shape;
        *ndim = w->param[0].ndim ? w->param[0].ndim - 1 : 0;
        return;
    }
    const ppx_tensor *t = w->param[0].len == d->n ? &w->param[0] : &w->param[1];
    *shape = t->shape;
    *ndim = t->ndim;
}

static void poison(session *s, discard_reason why, const char *msg)
{
    if (s->poisoned) return;
    s->poisoned = 1;
    s->poison_reason = why;
    snprintf(s->poison_msg, sizeof s->poison_msg, "%s", msg);
}

/* Fill a trace entry's common fields from the message; a tangent the
 * simulator sent goes through *tg (views into the message, copied by
 * trace_append). */
static void entry_from_msg(const ppx_msg *m, trace_kind kind, trace_entry *te, trace_tangent *tg)
{
    memset(te, 0, sizeof *te);
    if (kind != TRACE_TAG && m->tangent.present) {
        tg->n_theta = m->tangent.n_theta;
        tg->theta = m->tangent.theta;
        for (int j = 0; j < 2; j++) {
            tg->d[j] = m->tangent.d[j];
            tg->len[j] = m->tangent.len[j];
        }
        te->tangent = tg;
    }
    te->kind = kind;
    te->base_address = m->address;
    te->name = m->name;
    te->dist = kind == TRACE_TAG ? DIST_NONE : (dist_kind)m->dist.type;
    te->control = kind == TRACE_SAMPLE ? m->control : 1;
    for (int i = 0; i < 2 && kind != TRACE_TAG; i++) {
        te->param[i].data = (double *)m->dist.param[i].data;
        te->param[i].len = m->dist.param[i].len;
        te->param[i].shape = (int32_t *)m->dist.param[i].shape;
        te->param[i].ndim = m->dist.param[i].ndim;
    }
}

/* The --observe value for an Observe: by its name, else by its address as
 * sent (upstream programs often name nothing). */
static const observation *find_obs(const session *s, const char *name, const char *address)
{
    for (size_t i = 0; name && *name && i < s->n_obs; i++)
        if (strcmp(s->obs[i].name, name) == 0) return &s->obs[i];
    for (size_t i = 0; address && *address && i < s->n_obs; i++)
        if (strcmp(s->obs[i].name, address) == 0) return &s->obs[i];
    return NULL;
}

static void warn_unobserved(engine *e, const session *s, const char *name, const char *address)
{
    if (!name || !*name) name = address ? address : "";
    for (size_t i = 0; i < e->n_warned; i++)
        if (strcmp(e->warned_obs[i], name) == 0) return;
    char **w = realloc(e->warned_obs, (e->n_warned + 1) * sizeof *w);
    if (!w) return;
    e->warned_obs = w;
    e->warned_obs[e->n_warned++] = strdup(name);
    if (s->n_obs)
        fprintf(stderr,
                "ppxd: note: Observe '%s' has no value (not given with --observe): drawing it from its distribution "
                "(simulated data: it does not weight the trace)\n",
                name);
}

/* Observe: answered at once. */
static int handle_observe(engine *e, policy *p, session *s)
{
    const ppx_msg *m = &s->msg;
    trace_entry te;
    trace_tangent tg;
    entry_from_msg(m, TRACE_OBSERVE, &te, &tg);
    dist d;
    char why[200] = "";
    int has_dist = m->dist.type != PPX_DIST_NONE;
    if (has_dist && wire_to_dist(&m->dist, &d, why, sizeof why) < 0) {
        char msg[260];
        snprintf(msg, sizeof msg, "Observe '%s' at %s: %s", m->name, m->address, why);
        poison(s, DISCARD_INVALID_PARAMS, msg);
        has_dist = 0;
    }
    if (has_dist) te.k = d.k; /* a Categorical's categories, as for Samples (address suffix, log-prob, score) */
    const observation *o = find_obs(s, m->name, m->address);
    double *drawn = NULL;
    if (m->value.len > 0) {
        te.value.data = (double *)m->value.data;
        te.value.len = m->value.len;
        te.value.shape = (int32_t *)m->value.shape;
        te.value.ndim = m->value.ndim;
    } else if (o) {
        te.value.data = o->values;
        te.value.len = o->n;
        te.value.shape = NULL;
        te.value.ndim = o->n == 1 ? 0 : 1;
    } else if (has_dist && !s->poisoned && p && p->observe_value &&
               (te.value.data = (double *)p->observe_value(p, s->id, s->t->n_entries, m->address, d.n))) {
        te.value.len = d.n;
        const int32_t *shape;
        value_shape(&m->dist, &d, &shape, &te.value.ndim);
        te.value.shape = (int32_t *)shape;
    } else if (has_dist && !s->poisoned) {
        warn_unobserved(e, s, m->name, m->address);
        drawn = nan_values(e, d.n);
        if (drawn) {
            dist_sample(&d, &s->obs_rng, drawn);
            te.value.data = drawn;
            te.value.len = d.n;
            const int32_t *shape;
            value_shape(&m->dist, &d, &shape, &te.value.ndim);
            te.value.shape = (int32_t *)shape;
        }
    }
    te.observed = drawn ? TRACE_DRAWN : TRACE_CONDITIONED;
    if (has_dist && !s->poisoned) {
        if (te.value.len != d.n) {
            char msg[260];
            snprintf(msg, sizeof msg, "Observe '%s': value has %zu elements, distribution %zu", m->name, te.value.len, d.n);
            poison(s, DISCARD_INVALID_PARAMS, msg);
        } else {
            te.log_prob = dist_log_prob(&d, te.value.data);
        }
    }
    if (!trace_append(s->t, &te)) poison(s, DISCARD_POLICY, "out of memory recording Observe");
    return send_type(e, s, PPX_MSG_OBSERVE_RESULT);
}

static int handle_tag(engine *e, session *s)
{
    trace_entry te;
    entry_from_msg(&s->msg, TRACE_TAG, &te, NULL);
    te.value.data = (double *)s->msg.value.data;
    te.value.len = s->msg.value.len;
    te.value.shape = (int32_t *)s->msg.value.shape;
    te.value.ndim = s->msg.value.ndim;
    te.observed = 0;
    if (!trace_append(s->t, &te)) poison(s, DISCARD_POLICY, "out of memory recording Tag");
    return send_type(e, s, PPX_MSG_TAG_RESULT);
}

/* Sample: record the entry (value to come) and queue it for the batch.
 * Returns 1 when queued, 0 when answered at once (poisoned), -1 on send error. */
static int handle_sample(engine *e, session *s)
{
    const ppx_msg *m = &s->msg;
    char why[200];
    dist *d = &s->pending_dist;
    int ok = !s->poisoned && wire_to_dist(&m->dist, d, why, sizeof why) == 0;
    if (!ok && !s->poisoned) {
        char msg[300];
        snprintf(msg, sizeof msg, "Sample '%s' at %s: %s", m->name, m->address, why);
        poison(s, DISCARD_INVALID_PARAMS, msg);
    }
    if (!ok) {
        /* Keep the simulator in lockstep with a NaN answer of a plausible
         * size; the trace is discarded when it ends. */
        size_t n = m->dist.param[0].len ? m->dist.param[0].len : 1;
        if (m->dist.type == PPX_DIST_CATEGORICAL) n = 1;
        double *v = nan_values(e, n);
        ppx_msg r;
        ppx_msg_init(&r);
        r.type = PPX_MSG_SAMPLE_RESULT;
        r.value.data = v;
        r.value.len = v ? n : 0;
        r.value.shape = NULL;
        r.value.ndim = n == 1 ? 0 : 1;
        int32_t shp[1] = {(int32_t)n};
        if (n != 1) r.value.shape = shp;
        return send_msg(e, s, &r) < 0 ? -1 : 0;
    }
    trace_entry te;
    trace_tangent tg;
    entry_from_msg(m, TRACE_SAMPLE, &te, &tg);
    te.k = d->k;
    double *v = nan_values(e, d->n);
    if (!v) {
        poison(s, DISCARD_POLICY, "out of memory");
        return -1;
    }
    te.value.data = v;
    te.value.len = d->n;
    const int32_t *shape;
    value_shape(&m->dist, d, &shape, &te.value.ndim);
    te.value.shape = (int32_t *)shape;
    /* The stored entry's params now live in the trace: point the pending
     * dist at them, since the message buffer is released before answering. */
    trace_entry *stored = trace_append(s->t, &te);
    if (!stored) {
        poison(s, DISCARD_POLICY, "out of memory recording Sample");
        return -1;
    }
    d->p0 = stored->param[0].data;
    d->p1 = stored->param[1].data;
    s->pending_entry = s->t->n_entries - 1;
    s->state = S_ANSWER;
    return 1;
}

/* --- the loop ------------------------------------------------------------------ */

static void complete_trace(engine *e, policy *p, const job_ops *ops, void *job, session *s)
{
    const ppx_tensor *r = &s->msg.value;
    if (r->len && trace_array_copy(s->t, &s->t->result, r->data, r->len, r->shape, r->ndim) < 0)
        poison(s, DISCARD_POLICY, "out of memory recording RunResult");
    trace_finish(s->t);
    s->t->id = s->index;
    policy_end(p, s->id);
    s->state = S_IDLE;
    s->failures = 0;
    if (s->poisoned) {
        elog(s, discard_reason_name(s->poison_reason), s->poison_msg);
        e->stats.discarded[s->poison_reason]++;
        e->stats.discarded_total++;
        ops->discard(job, s->id, s->index, s->poison_reason);
    } else {
        int took = ops->complete(job, s->id, s->index, s->t);
        if (took < 0) {
            e->stats.discarded[DISCARD_REJECTED]++;
            e->stats.discarded_total++;
        } else if (took > 0) {
            e->stats.duplicates++;
        } else {
            e->stats.traces_done++;
        }
    }
    trace_reset(s->t);
    s->poisoned = 0;
}

/* Handle one received message of session s (already decoded into s->msg). */
static void handle_message(engine *e, policy *p, const job_ops *ops, void *job, session *s)
{
    ppx_msg_type t = s->msg.type;
    double now = now_s();
    if (s->state == S_HANDSHAKE) {
        if (t == PPX_MSG_RESET && s->accepted && s->handshake_resends < 3) {
            /* A simulator that reconnected while still inside a run of its
             * previous link (libzmq REP keeps waiting for that run's
             * answer) takes our Handshake for it, gives the run up and
             * replies Reset: ask again. */
            s->handshake_resends++;
            ppx_msg m;
            ppx_msg_init(&m);
            m.type = PPX_MSG_HANDSHAKE;
            m.system_name = "ppxd";
            if (send_msg(e, s, &m) < 0) conn_fault(e, p, ops, job, s, "could not send Handshake");
            return;
        }
        if (t != PPX_MSG_HANDSHAKE_RESULT) {
            fault(e, p, ops, job, s, DISCARD_PROTOCOL, "expected HandshakeResult");
            return;
        }
        snprintf(s->model, sizeof s->model, "%s", s->msg.model_name ? s->msg.model_name : "");
        s->state = S_IDLE;
        if (e->cfg.model && strcmp(e->cfg.model, s->model) != 0) {
            /* Another pool's simulator: kept (a later job may want it), idle. */
            s->parked = 1;
            char why[300];
            snprintf(why, sizeof why, "model '%s', not '%s': given no traces", s->model, e->cfg.model);
            elog(s, why, NULL);
        }
        if (s->accepted) {
            engine_pool *pl = pool_of(e, s->model);
            if (pl) pl->joined++;
            e->stats.joined++;
            e->said_waiting = 0;
            if (e->cfg.progress) elog(s, "joined, model", s->model);
        }
        return;
    }
    /* S_IN_TRACE */
    int rc = 0;
    switch (t) {
    case PPX_MSG_RESET:
        if (s->awaiting_run_reply && s->run_resends < 3) {
            /* The simulator was idle and had not taken our Run: send it again. */
            e->stats.resets++;
            s->run_resends++;
            rc = send_type(e, s, PPX_MSG_RUN);
            break;
        }
        e->stats.discarded[DISCARD_RESET]++;
        e->stats.discarded_total++;
        elog(s, "Reset mid-trace: trace discarded", NULL);
        end_trace(e, p, s);
        ops->discard(job, s->id, s->index, DISCARD_RESET);
        s->state = S_IDLE;
        return;
    case PPX_MSG_SAMPLE:
        rc = handle_sample(e, s);
        if (rc > 0) rc = 0;
        break;
    case PPX_MSG_OBSERVE:
        rc = handle_observe(e, p, s);
        break;
    case PPX_MSG_TAG:
        rc = handle_tag(e, s);
        break;
    case PPX_MSG_RUN_RESULT:
        complete_trace(e, p, ops, job, s);
        return;
    default: {
        char why[80];
        snprintf(why, sizeof why, "unexpected %s mid-trace", ppx_msg_type_name(t));
        fault(e, p, ops, job, s, DISCARD_PROTOCOL, why);
        return;
    }
    }
    s->awaiting_run_reply = 0;
    if (rc < 0) {
        conn_fault(e, p, ops, job, s, "could not reply");
        return;
    }
    s->deadline = now + e->cfg.msg_timeout_ms / 1000.0;
}

/* Answer every queued Sample with one policy call. */
static void answer_batch(engine *e, policy *p, const job_ops *ops, void *job)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n_scan; i++) {
        session *s = &e->sess[i];
        if (s->state != S_ANSWER) continue;
        trace_entry *te = &s->t->entries[s->pending_entry];
        policy_request *r = &e->reqs[n];
        memset(r, 0, sizeof *r);
        r->slot = s->id;
        r->t = s->t;
        r->address = te->address;
        r->name = te->name;
        r->d = &s->pending_dist;
        r->control = te->control;
        r->value = te->value.data;
        r->flag = POLICY_INVALID;
        snprintf(r->reason, sizeof r->reason, "policy gave no answer");
        e->req_sess[n++] = i;
    }
    if (!n) return;
    policy_answer(p, e->reqs, n);
    double now = now_s();
    for (size_t i = 0; i < n; i++) {
        policy_request *r = &e->reqs[i];
        session *s = &e->sess[e->req_sess[i]];
        trace_entry *te = &s->t->entries[s->pending_entry];
        if (r->flag != POLICY_ANSWERED) {
            char msg[300];
            snprintf(msg, sizeof msg, "Sample '%s' at %s: %s", te->name, te->address, r->reason);
            poison(s, DISCARD_POLICY, msg);
        } else {
            te->log_prob = dist_log_prob(r->d, te->value.data);
            te->observed = r->observed;
            if (!r->observed) s->t->log_proposal += r->log_q;
        }
        ppx_msg out;
        ppx_msg_init(&out);
        out.type = PPX_MSG_SAMPLE_RESULT;
        out.value.data = te->value.data;
        out.value.len = te->value.len;
        out.value.shape = te->value.shape;
        out.value.ndim = te->value.ndim;
        s->state = S_IN_TRACE;
        if (send_msg(e, s, &out) < 0) {
            conn_fault(e, p, ops, job, s, "could not send SampleResult");
            continue;
        }
        s->deadline = now + e->cfg.msg_timeout_ms / 1000.0;
    }
}

/* Reap only our own simulators (never waitpid(-1): the process embedding the
 * engine may have children of its own). */
static void reap_children(engine *e, policy *p, const job_ops *ops, void *job)
{
    for (size_t i = 0; i < e->n_scan; i++) {
        session *s = &e->sess[i];
        int st;
        if (!s->launched || s->pid <= 0 || waitpid(s->pid, &st, WNOHANG) != s->pid) continue;
        char why[64];
        if (WIFSIGNALED(st))
            snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(st));
        else
            snprintf(why, sizeof why, "exit status %d", WEXITSTATUS(st));
        s->pid = 0; /* reaped */
        fault(e, p, ops, job, s, DISCARD_EXITED, why);
    }
}

/* Progress session s's connection; a complete reply is decoded and handled. */
static void session_io(engine *e, policy *p, const job_ops *ops, void *job, session *s, int ready)
{
    if (!s->conn) return;
    const uint8_t *body;
    size_t len;
    int r = zmtp_conn_io(s->conn, ready, &body, &len);
    if (r == 0) return;
    if (r < 0) {
        conn_fault(e, p, ops, job, s, "connection failed");
        return;
    }
    /* The connection enforces lockstep: a reply answers our request. */
    assert(s->state == S_HANDSHAKE || s->state == S_IN_TRACE);
    e->stats.messages++;
    ppx_msg_clear(&s->msg);
    ppx_error err;
    if (ppx_decode(body, len, &e->cfg.limits, &s->msg, &err) != PPX_OK) {
        fault(e, p, ops, job, s, DISCARD_GARBAGE, err.message);
        return;
    }
    handle_message(e, p, ops, job, s);
}

/* Take the connections waiting on listener l into vacant sessions (a few
 * per turn, so that a reconnecting fleet cannot starve the running job). */
static void accept_new(engine *e, zmtp_listener *l)
{
    for (int k = 0; k < 64; k++) {
        int is_tcp = 0;
        char peer[200], err[200];
        int fd = zmtp_listener_accept(l, &is_tcp, peer, sizeof peer, err, sizeof err);
        if (fd < 0) {
            if (err[0]) elog(NULL, "accepting a simulator", err);
            return;
        }
        session *s = NULL;
        for (size_t i = e->n_fixed; i < e->n_sess && !s; i++)
            if (e->sess[i].state == S_VACANT) s = &e->sess[i];
        double now = now_s();
        if (!s) {
            close(fd);
            e->stats.refused++;
            if (now - e->last_refused_log >= 10.0) {
                e->last_refused_log = now;
                char why[120];
                snprintf(why, sizeof why, "every one of the %zu sessions is taken (raise --sim-max)",
                         e->n_sess - e->n_fixed);
                elog(NULL, "refused a simulator connecting in", why);
            }
            continue;
        }
        s->conn = zmtp_conn_adopt(fd, is_tcp, e->cfg.limits.max_message_bytes, err, sizeof err);
        if (!s->conn) {
            elog(NULL, "cannot take a simulator's connection", err);
            continue;
        }
        if (e->cfg.heartbeat_ms > 0 && zmtp_conn_keepalive(s->conn, e->cfg.heartbeat_ms, heartbeat_timeout_ms(e)) < 0)
            elog(NULL, "no TCP keepalive on a simulator's connection (an idle link that dies is found late)",
                 strerror(errno));
        snprintf(s->endpoint, sizeof s->endpoint, "%s", peer);
        s->handshake_resends = 0;
        s->parked = 0;
        s->model[0] = 0;
        s->failures = 0;
        ppx_msg m;
        ppx_msg_init(&m);
        m.type = PPX_MSG_HANDSHAKE;
        m.system_name = "ppxd";
        if (send_msg(e, s, &m) < 0) {
            elog(s, "cannot send Handshake", zmtp_conn_error(s->conn));
            vacate(e, s);
            continue;
        }
        s->state = S_HANDSHAKE;
        s->deadline = now + e->cfg.start_timeout_ms / 1000.0;
        if (s->id + 1 > e->n_scan) e->n_scan = s->id + 1;
    }
}

/* PING the connected-in simulators running a trace that have been silent
 * for half an interval; end the links silent for longer than the heartbeat
 * timeout (a host that vanished without closing its connections, or a
 * stopped process).  Idle simulators get no PINGs: a PING and its PONG
 * cost ppxd two system calls each, a millisecond per second for a thousand
 * idle simulators, to find what matters only once a trace is given out.
 * An idle link that dies is found by the kernel instead (TCP keepalive,
 * set when it was accepted; an ipc peer that exits always closes), and a
 * stopped idle simulator by the heartbeats of the trace it is given. */
static void heartbeat(engine *e, policy *p, const job_ops *ops, void *job, double now)
{
    double hb = e->cfg.heartbeat_ms / 1000.0;
    double dead = heartbeat_timeout_ms(e) / 1000.0;
    for (size_t i = e->n_fixed; i < e->n_scan; i++) {
        session *s = &e->sess[i];
        if (s->state == S_VACANT || !s->conn || !zmtp_conn_is_open(s->conn)) continue;
        if (s->state != S_IN_TRACE && s->state != S_ANSWER) continue;
        double last = zmtp_conn_last_rx(s->conn);
        if (s->run_sent_at > last) last = s->run_sent_at;
        double quiet = now - last;
        if (quiet > dead) {
            char why[120];
            snprintf(why, sizeof why, "silent for %.1f s (no reply to heartbeats)", quiet);
            fault(e, p, ops, job, s, DISCARD_TIMEOUT, why);
        } else if (quiet >= hb / 2 && zmtp_conn_ping(s->conn) < 0) {
            conn_fault(e, p, ops, job, s, "could not send a heartbeat");
        }
    }
    e->next_heartbeat = now + hb;
}

static int any_in_trace(const engine *e)
{
    for (size_t i = 0; i < e->n_scan; i++)
        if (e->sess[i].state == S_IN_TRACE || e->sess[i].state == S_ANSWER) return 1;
    return 0;
}

int engine_run(engine *e, policy *p, const job_ops *ops, void *job)
{
    double t0 = now_s(), c0 = cpu_s(), last_progress = t0, last_reap = t0, done_at = 0;
    uint64_t done0 = e->stats.traces_done, last_done = done0;
    int rc = 0, idle_woke = 0;
    for (;;) {
        if (e->stop) {
            elog(NULL, "stopped", NULL);
            rc = -1;
            break;
        }
        int job_done = ops->done(job);
        /* Once the job is done, let traces in flight finish so that the
         * simulators stay in lockstep and reusable (bounded by timeouts);
         * launched ones still busy after a grace period are stragglers
         * (a hung simulator whose trace a backup copy finished): stopped. */
        if (job_done && !any_in_trace(e)) break;
        double now = now_s();
        if (job_done && !done_at) done_at = now;
        if (job_done && now - done_at > ENGINE_DONE_GRACE_S)
            for (size_t i = 0; i < e->n_scan; i++) {
                session *s = &e->sess[i];
                if ((s->launched || s->accepted) && (s->state == S_IN_TRACE || s->state == S_ANSWER))
                    retire_straggler(e, p, s);
            }
        size_t alive = 0;
        int busy = 0; /* a session waits for a reply or a restart: keep the loop's short tick */
        for (size_t i = 0; i < e->n_scan; i++) {
            session *s = &e->sess[i];
            if (s->state == S_VACANT) continue;
            if (s->state != S_DEAD && !s->parked) alive++;
            if (s->state == S_BACKOFF && now >= s->deadline) {
                e->stats.restarts += s->generation > 0;
                if (start_session(e, s) < 0) fault(e, p, ops, job, s, DISCARD_EXITED, "restart failed");
            } else if ((s->state == S_HANDSHAKE || s->state == S_IN_TRACE) && now >= s->deadline) {
                char why[400];
                if (s->state == S_IN_TRACE)
                    snprintf(why, sizeof why, "no reply in time");
                else if (s->conn && !zmtp_conn_is_open(s->conn) && *zmtp_conn_error(s->conn))
                    snprintf(why, sizeof why, "no HandshakeResult in time (%s)", zmtp_conn_error(s->conn));
                else
                    snprintf(why, sizeof why, "no HandshakeResult in time");
                fault(e, p, ops, job, s, DISCARD_TIMEOUT, why);
            } else if (s->state == S_IDLE && !job_done && !s->parked) {
                uint64_t idx;
                if (ops->next(job, s->id, &idx)) {
                    s->index = idx;
                    trace_reset(s->t);
                    s->t->log_proposal = 0;
                    s->poisoned = 0;
                    uint64_t seed = e->cfg.seed;
                    s->obs = e->cfg.obs;
                    s->n_obs = e->cfg.n_obs;
                    if (ops->trace_env) ops->trace_env(job, s->id, &s->obs, &s->n_obs, &seed);
                    /* Observe draws get their own stream family, apart from the policy's. */
                    rng_seed(&s->obs_rng, seed ^ 0x6f62736572766564ull, idx);
                    policy_begin(p, s->id, idx);
                    if (send_type(e, s, PPX_MSG_RUN) < 0) {
                        s->state = S_IN_TRACE;
                        conn_fault(e, p, ops, job, s, "could not send Run");
                        continue;
                    }
                    s->state = S_IN_TRACE;
                    s->awaiting_run_reply = 1;
                    s->run_sent_at = now;
                    s->run_resends = 0;
                    s->deadline = now + e->cfg.msg_timeout_ms / 1000.0;
                }
            }
        }
        if (alive == 0 && !e->n_listeners) {
            elog(NULL, e->cfg.model ? "no simulator of the model asked for (--sim-model) left: job not finished"
                                    : "no simulator left: job not finished",
                 NULL);
            rc = -1;
            break;
        }
        if (alive == 0 && !job_done && !e->said_waiting) {
            e->said_waiting = 1;
            if (e->cfg.progress) elog(NULL, "waiting for simulators to connect", e->cfg.model);
        }
        if (e->n_listeners && e->cfg.heartbeat_ms > 0 && now >= e->next_heartbeat) heartbeat(e, p, ops, job, now);
        /* Poll every connection (an idle one too, so that a simulator
         * that exits is seen at once); those waiting to retry a connect
         * bring the timeout forward instead. */
        size_t ni = 0;
        int retrying = 0;
        for (size_t i = 0; i < e->n_scan && !busy; i++) {
            sess_state st = e->sess[i].state;
            busy = !e->sess[i].accepted || st == S_HANDSHAKE || st == S_IN_TRACE || st == S_ANSWER;
        }
        /* Only idle connected-in simulators: nothing can happen but a poll
         * event (a join, a close) or a signal, so wake seldom:
         * a poll over a thousand idle connections costs a few hundred us. */
        double next_deadline = now + (busy || job_done ? 0.1 : 10.0);
        /* (No wake for heartbeats: only simulators in a trace get them, and
         * then the loop is busy, on its short tick.) */
        for (size_t i = 0; i < e->n_scan; i++) {
            session *s = &e->sess[i];
            if ((s->state == S_HANDSHAKE || s->state == S_IN_TRACE || s->state == S_BACKOFF) &&
                s->deadline < next_deadline)
                next_deadline = s->deadline;
            if (!s->conn || s->state == S_BACKOFF || s->state == S_DEAD) continue;
            int fd = zmtp_conn_fd(s->conn);
            if (fd < 0) {
                double at = zmtp_conn_retry_at(s->conn);
                if (at > 0) {
                    retrying = 1;
                    if (at < next_deadline) next_deadline = at;
                }
                continue;
            }
            int ev = zmtp_conn_events(s->conn);
            e->items[ni].socket = NULL;
            e->items[ni].fd = fd;
            e->items[ni].events = (short)((ev & ZMTP_READ ? ZMQ_POLLIN : 0) | (ev & ZMTP_WRITE ? ZMQ_POLLOUT : 0));
            e->items[ni].revents = 0;
            e->item_sess[ni++] = i;
        }
        size_t n_sess_items = ni;
        for (size_t i = 0; i < e->n_listeners; i++) {
            e->items[ni].socket = NULL;
            e->items[ni].fd = zmtp_listener_fd(e->listeners[i]);
            e->items[ni].events = ZMQ_POLLIN;
            e->items[ni].revents = 0;
            e->item_sess[ni++] = i;
        }
        size_t wake_item = ni;
        if (e->cfg.wake_fd > 0) {
            e->items[ni].socket = NULL;
            e->items[ni].fd = e->cfg.wake_fd;
            e->items[ni].events = ZMQ_POLLIN;
            e->items[ni].revents = 0;
            e->item_sess[ni++] = 0;
        }
        /* Round up: waking a moment early would only spin. */
        long timeout_ms = (long)ceil((next_deadline - now) * 1000.0);
        if (timeout_ms < 0) timeout_ms = 0;
        if (idle_woke && !busy && !job_done && timeout_ms > 0) {
            /* Nothing but idle connected-in simulators, and the last poll
             * woke for them (a burst of joins or closes): let a few
             * milliseconds' worth gather (10 ms), so that a thousand of
             * them cost a few turns of this loop rather than hundreds. */
            struct timespec gather = {0, 10000000};
            nanosleep(&gather, NULL);
        }
        e->stats.polls++;
        e->stats.polls_nowait += timeout_ms == 0;
        int nready = zmq_poll(ni ? e->items : NULL, (int)ni, timeout_ms);
        idle_woke = nready > 0 && !busy;
        if (nready < 0 && errno != EINTR) {
            elog(NULL, "zmq_poll failed", zmq_strerror(errno));
            rc = -1;
            break;
        }
        for (size_t k = 0; nready > 0 && k < ni; k++) {
            short rev = e->items[k].revents;
            if (!rev) continue;
            if (e->cfg.wake_fd > 0 && k == wake_item) {
                char drain[64];
                while (read(e->cfg.wake_fd, drain, sizeof drain) > 0) {
                }
                idle_woke = 0; /* new work, not idle chatter */
                continue;
            }
            if (k >= n_sess_items) {
                accept_new(e, e->listeners[e->item_sess[k]]);
                continue;
            }
            int ready = (rev & ZMQ_POLLIN ? ZMTP_READ : 0) | (rev & ZMQ_POLLOUT ? ZMTP_WRITE : 0) |
                        (rev & ZMQ_POLLERR ? ZMTP_HANGUP : 0);
            session_io(e, p, ops, job, &e->sess[e->item_sess[k]], ready);
        }
        if (retrying) {
            double t = now_s();
            for (size_t i = 0; i < e->n_scan; i++) {
                session *s = &e->sess[i];
                if (!s->conn || s->state == S_BACKOFF || s->state == S_DEAD || zmtp_conn_fd(s->conn) >= 0) continue;
                double at = zmtp_conn_retry_at(s->conn);
                if (at > 0 && at <= t) session_io(e, p, ops, job, s, 0);
            }
        }
        answer_batch(e, p, ops, job);
        /* Reaping costs a syscall: a few times a second is enough, since a
         * dead simulator's trace is discarded either way. */
        if (now_s() - last_reap >= 0.02) {
            last_reap = now_s();
            reap_children(e, p, ops, job);
        }
        if (e->cfg.progress && now_s() - last_progress >= 1.0 && e->stats.traces_done != last_done) {
            /* (Nothing new, nothing printed: a daemon idles quietly.) */
            last_progress = now_s();
            last_done = e->stats.traces_done;
            fprintf(stderr, "ppxd: %llu traces (%.0f/s), %llu discarded, %llu restarts\n",
                    (unsigned long long)(e->stats.traces_done - done0),
                    (e->stats.traces_done - done0) / (last_progress - t0),
                    (unsigned long long)e->stats.discarded_total, (unsigned long long)e->stats.restarts);
        }
    }
    e->stats.elapsed += now_s() - t0;
    e->stats.cpu += cpu_s() - c0;
    return rc;
}
