/* serve.c — `ppxd serve`: see serve.h for the design (threads, queue,
 * reference-counted model registry, CURVE, determinism contract). */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "args.h"
#include "gold/gold_est.h"
#include "nn/nn.h"
#include "npe.h"
#include "nre.h"
#include "ppx_query.h"
#include "prior.h"


#define REPLIES_EP "inproc://ppxd-serve-replies"
#define ZAP_EP "inproc://zeromq.zap.01"
#define N_FRONTENDS 2
#define WORKER_CACHE 8
#define MAX_KEYS 4096

/* ---- small utilities ------------------------------------------------------ */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

/* 1 when an endpoint can only be reached from this host: ipc, inproc, or tcp
 * bound to a loopback address. */
static int endpoint_is_local(const char *ep)
{
    if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0) return 1;
    if (strncmp(ep, "tcp://", 6) != 0) return 0;
    const char *h = ep + 6;
    /* "tcp://source;host:port" binds are not used for servers: refuse them. */
    if (strchr(h, ';')) return 0;
    if (h[0] == '[') return strncmp(h, "[::1]:", 6) == 0;
    const char *colon = strrchr(h, ':');
    if (!colon) return 0;
    size_t len = (size_t)(colon - h);
    if (len == 9 && strncmp(h, "localhost", 9) == 0) return 1;
    if (len < 4 || strncmp(h, "127.", 4) != 0) return 0;
    /* 127.a.b.c with digits only */
    int dots = 0;
    for (size_t i = 0; i < len; i++) {
        if (h[i] == '.') dots++;
        else if (h[i] < '0' || h[i] > '9') return 0;
    }
    return dots == 3;
}

/* 1 for ipc:// and inproc:// endpoints (no network involved). */
static int endpoint_is_ipc(const char *ep)
{
    return strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0;
}

/* ---- model registry ------------------------------------------------------- */

typedef struct serve_model {
    atomic_int refs;
    uint64_t serial;          /* unique per entry: the worker cache key */
    char *name, *path;        /* path "" for models published from memory */
    model_file *m;            /* immutable once published; NULL for a gold model */
    uint32_t checksum, generation;
    char prior_text[256];
    /* gold models (ppxd train carl ... scandal, .ppxr): the file's bytes, from
     * which each worker decodes its own instance (networks hold activation
     * buffers), and one decoded instance for the metadata only */
    unsigned char *gold_bytes;
    size_t gold_len;
    gold_model *gold;
} serve_model;

static void model_unref(serve_model **pe)
{
    serve_model *e = *pe;
    *pe = NULL;
    if (!e) return;
    if (atomic_fetch_sub(&e->refs, 1) != 1) return;
    model_file_destroy(&e->m);
    gold_model_destroy(&e->gold);
    free(e->gold_bytes);
    free(e->name);
    free(e->path);
    free(e);
}

/* ---- request queue -------------------------------------------------------- */

typedef struct serve_job {
    int frontend;             /* index of the ROUTER it came from */
    int delim;                /* 1: the client sent an empty delimiter frame (REQ) */
    int admin;                /* may Load/Unload/Reload */
    double t_recv;            /* monotonic seconds at arrival */
    zmq_msg_t identity, payload;
} serve_job;

static void job_free(serve_job *j)
{
    if (!j) return;
    zmq_msg_close(&j->identity);
    zmq_msg_close(&j->payload);
    free(j);
}

struct serve_server {
    serve_config cfg;
    char **endpoints;
    void *ctx;
    void *router[N_FRONTENDS];
    int router_admin[N_FRONTENDS];  /* plain sockets: 1 when every client may administer */
    int curve;
    void *replies;                  /* PULL, frontend thread */
    void *zap;                      /* REP, ZAP thread */
    pthread_t frontend_thread, zap_thread, *workers;
    struct worker **wargs;          /* [n_workers], freed by serve_destroy */
    int n_workers, frontend_started, zap_started;
    atomic_int workers_running;     /* worker threads that have not returned yet */
    atomic_int stop;
    atomic_int stopped;
    int stop_fd;                    /* eventfd, readable once stop is set: the frontend and ZAP
                                       threads sleep on it (no timeout), so an idle server costs
                                       nothing; never drained */

    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    serve_job **q;                  /* ring of qcap */
    size_t qcap, qhead, qlen;
    int qclosed;
    struct help_req *help;          /* big Samples whose flow blocks idle workers may run (under qmu) */

    pthread_mutex_t reg_mu;
    serve_model **models;
    size_t n_models, cap_models;
    uint64_t next_serial;

    atomic_uint_fast64_t requests, errors, busy;
    double t_start;

    uint8_t (*allow)[32];           /* allowed client keys (admins included) */
    size_t n_allow;
    uint8_t (*admin)[32];
    size_t n_admin;

    char **model_dirs;              /* realpaths Load may read under (none: Load refused) */
    size_t n_model_dirs;

    pthread_mutex_t defer_mu;       /* deferred replies (serve_pending_reply), from any thread */
    void *defer_push;               /* PUSH to the frontend, made on first use */
    int defer_closed;
};

/* ---- requests answered by the embedding program (serve_call) --------------- */

struct serve_call {
    serve_job *j;
    uint64_t request_id;
    int deferred;
};

struct serve_pending {
    int frontend, delim;
    uint64_t request_id;
    zmq_msg_t identity;
};

int serve_call_admin(const serve_call *c) { return c->j->admin; }

serve_pending *serve_call_defer(serve_call *c)
{
    serve_pending *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->frontend = c->j->frontend;
    p->delim = c->j->delim;
    p->request_id = c->request_id;
    zmq_msg_init(&p->identity);
    if (zmq_msg_copy(&p->identity, &c->j->identity) < 0) {
        zmq_msg_close(&p->identity);
        free(p);
        return NULL;
    }
    c->deferred = 1;
    return p;
}

uint64_t serve_pending_request_id(const serve_pending *p) { return p->request_id; }

void serve_pending_free(serve_pending **pp)
{
    if (!pp || !*pp) return;
    zmq_msg_close(&(*pp)->identity);
    free(*pp);
    *pp = NULL;
}

int serve_pending_reply(serve_server *s, serve_pending **pp, const void *bytes, size_t len)
{
    serve_pending *p = *pp;
    int rc = -1;
    pthread_mutex_lock(&s->defer_mu);
    if (!s->defer_closed && !atomic_load(&s->stop) && !s->defer_push) {
        s->defer_push = zmq_socket(s->ctx, ZMQ_PUSH);
        int linger = 0, sndtimeo = 2000;
        if (s->defer_push) {
            zmq_setsockopt(s->defer_push, ZMQ_LINGER, &linger, sizeof linger);
            zmq_setsockopt(s->defer_push, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
            if (zmq_connect(s->defer_push, REPLIES_EP) < 0) {
                zmq_close(s->defer_push);
                s->defer_push = NULL;
            }
        }
    }
    if (s->defer_push && !s->defer_closed) {
        unsigned char hdr[2] = {(unsigned char)p->frontend, (unsigned char)p->delim};
        if (zmq_send(s->defer_push, hdr, 2, ZMQ_SNDMORE) == 2 &&
            zmq_msg_send(&p->identity, s->defer_push, ZMQ_SNDMORE) >= 0) {
            zmq_msg_init(&p->identity); /* sent: the message is empty now */
            rc = zmq_send(s->defer_push, bytes, len, 0) < 0 ? -1 : 0;
        }
    }
    pthread_mutex_unlock(&s->defer_mu);
    serve_pending_free(pp);
    return rc;
}

/* Push a job; 0, or -1 when full or closed (the job is not taken). */
static int queue_push(serve_server *s, serve_job *j)
{
    pthread_mutex_lock(&s->qmu);
    if (s->qclosed || s->qlen == s->qcap) {
        pthread_mutex_unlock(&s->qmu);
        return -1;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = j;
    s->qlen++;
    pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
    return 0;
}

static size_t queue_depth(serve_server *s)
{
    pthread_mutex_lock(&s->qmu);
    size_t n = s->qlen;
    pthread_mutex_unlock(&s->qmu);
    return n;
}

/* ---- registry operations -------------------------------------------------- */

/* A referenced entry, or NULL. */
static serve_model *registry_get(serve_server *s, const char *name)
{
    serve_model *e = NULL;
    pthread_mutex_lock(&s->reg_mu);
    for (size_t i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i]->name, name) == 0) {
            e = s->models[i];
            atomic_fetch_add(&e->refs, 1);
            break;
        }
    pthread_mutex_unlock(&s->reg_mu);
    return e;
}

/* Referenced snapshot of every entry (sorted by insertion); *n set.  The
 * caller unrefs each and frees the array.  NULL with *n = 0 when empty or
 * out of memory. */
static serve_model **registry_snapshot(serve_server *s, size_t *n)
{
    pthread_mutex_lock(&s->reg_mu);
    serve_model **v = malloc((s->n_models ? s->n_models : 1) * sizeof *v);
    *n = 0;
    if (v) {
        for (size_t i = 0; i < s->n_models; i++) {
            v[i] = s->models[i];
            atomic_fetch_add(&v[i]->refs, 1);
        }
        *n = s->n_models;
    }
    pthread_mutex_unlock(&s->reg_mu);
    return v;
}

/* Put e (one reference, owned by the registry from now on) under its name:
 * replaces an entry of the same name (generation = old + 1).  A referenced
 * copy of e is returned in *out when out != NULL.  0 or -1 (out of memory). */
static int registry_put(serve_server *s, serve_model *e, serve_model **out)
{
    serve_model *old = NULL;
    pthread_mutex_lock(&s->reg_mu);
    e->serial = ++s->next_serial;
    size_t i;
    for (i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i]->name, e->name) == 0) break;
    if (i < s->n_models) {
        old = s->models[i];
        e->generation = old->generation + 1;
        s->models[i] = e;
    } else {
        if (s->n_models == s->cap_models) {
            size_t cap = s->cap_models ? 2 * s->cap_models : 8;
            serve_model **v = realloc(s->models, cap * sizeof *v);
            if (!v) {
                pthread_mutex_unlock(&s->reg_mu);
                return -1;
            }
            s->models = v;
            s->cap_models = cap;
        }
        e->generation = 1;
        s->models[s->n_models++] = e;
    }
    if (out) {
        atomic_fetch_add(&e->refs, 1);
        *out = e;
    }
    pthread_mutex_unlock(&s->reg_mu);
    model_unref(&old); /* freed here, or by the last in-flight request using it */
    return 0;
}

/* Remove name; 0, or -1 when there is no such model. */
static int registry_remove(serve_server *s, const char *name)
{
    serve_model *old = NULL;
    pthread_mutex_lock(&s->reg_mu);
    for (size_t i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i]->name, name) == 0) {
            old = s->models[i];
            memmove(s->models + i, s->models + i + 1, (s->n_models - i - 1) * sizeof *s->models);
            s->n_models--;
            break;
        }
    pthread_mutex_unlock(&s->reg_mu);
    if (!old) return -1;
    model_unref(&old);
    return 0;
}

/* A new unpublished entry (one reference) owning m.  NULL with a reason;
 * m is destroyed on failure.  The model must build into a posterior (so a
 * bad model fails at Load, not at every query). */
static serve_model *model_entry_new(const char *name, const char *path, model_file *m, uint32_t checksum,
                                    char *err, size_t err_len)
{
    char why[256];
    if (m->kind == MODEL_NRE) {
        nre_posterior *p = nre_posterior_from_model(m, why, sizeof why);
        if (!p) {
            snprintf(err, err_len, "model cannot be used: %s", why);
            model_file_destroy(&m);
            return NULL;
        }
        nre_posterior_destroy(&p);
    } else {
        npe_posterior *p = npe_posterior_from_model(m, why, sizeof why);
        if (!p) {
            snprintf(err, err_len, "model cannot be used: %s", why);
            model_file_destroy(&m);
            return NULL;
        }
        npe_posterior_destroy(&p);
    }
    serve_model *e = calloc(1, sizeof *e);
    if (!e || !(e->name = xstrdup(name)) || !(e->path = xstrdup(path))) {
        if (e) {
            free(e->name);
            free(e);
        }
        model_file_destroy(&m);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    atomic_init(&e->refs, 1);
    e->m = m;
    e->checksum = checksum;
    /* A long prior (a multivariate normal's matrix) is cut, visibly. */
    if ((size_t)prior_format(m->prior, e->prior_text, sizeof e->prior_text) >= sizeof e->prior_text)
        memcpy(e->prior_text + sizeof e->prior_text - 4, "...", 4);
    return e;
}

/* Read a model file's bytes (*len_out of them; checked by the decoder of
 * its kind: model_file_decode or gold_model_decode).  Only a regular file of at most
 * max_bytes is read, and exactly its size: the open never blocks (a FIFO or
 * a device is refused after fstat, not waited on).  open_flags: extra
 * open(2) flags (O_NOFOLLOW for a path already resolved by realpath, so a
 * symlink swapped in since is refused).  Reading stops at the
 * deadline (monotonic seconds, 0: none) or when *stop becomes set.  NULL with
 * a reason. */
static unsigned char *read_file_bytes(const char *path, int open_flags, size_t max_bytes, double deadline,
                                      atomic_int *stop, size_t *len_out, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | open_flags);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)max_bytes) {
        snprintf(err, err_len, "%s: %lld bytes is over the %zu-byte limit (--max-model-bytes)", path,
                 (long long)st.st_size, max_bytes);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, err_len, "%s: out of memory for %zu bytes", path, len);
        close(fd);
        return NULL;
    }
    size_t got = 0;
    while (got < len) {
        if ((stop && atomic_load(stop)) || (deadline > 0 && mono_now() > deadline)) {
            snprintf(err, err_len, "%s: %s after %zu of %zu bytes", path, stop && atomic_load(stop) ? "server stopping"
                     : "deadline passed", got, len);
            break;
        }
        size_t chunk = len - got < ((size_t)8 << 20) ? len - got : ((size_t)8 << 20);
        ssize_t r = read(fd, buf + got, chunk);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) {
            snprintf(err, err_len, "%s: %s after %zu of %zu bytes", path, r < 0 ? strerror(errno) : "file shrank", got,
                     len);
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (got < len) {
        free(buf);
        return NULL;
    }
    *len_out = len;
    return buf;
}

/* The stored CRC-32C of a checked model file: its last four bytes. */
static uint32_t stored_crc(const unsigned char *buf, size_t len)
{
    return len < 4 ? 0 : (uint32_t)buf[len - 4] | (uint32_t)buf[len - 3] << 8 | (uint32_t)buf[len - 2] << 16 |
                         (uint32_t)buf[len - 1] << 24;
}

/* A new unpublished gold-model entry (one reference) taking buf [len] (a
 * .ppxr file's bytes, freed on failure).  NULL with a reason. */
static serve_model *gold_entry_new(const char *name, const char *path, unsigned char *buf, size_t len, char *err,
                                   size_t err_len)
{
    char why[300];
    gold_model *g = gold_model_decode(buf, len, path, why, sizeof why);
    serve_model *e = g ? calloc(1, sizeof *e) : NULL;
    if (!e || !(e->name = xstrdup(name)) || !(e->path = xstrdup(path))) {
        snprintf(err, err_len, "%s", g ? "out of memory" : why);
        if (e) free(e->name);
        free(e);
        gold_model_destroy(&g);
        free(buf);
        return NULL;
    }
    atomic_init(&e->refs, 1);
    e->gold = g;
    e->gold_bytes = buf;
    e->gold_len = len;
    e->checksum = stored_crc(buf, len);
    int ref = !g->sally && isfinite(g->theta1[0]);
    size_t used = (size_t)snprintf(e->prior_text, sizeof e->prior_text, "none (%s%s", gold_model_kind_name(g->method),
                                   ref ? "; reference theta1 = (" : "");
    for (int k = 0; ref && k < g->D && used < sizeof e->prior_text; k++)
        used += (size_t)snprintf(e->prior_text + used, sizeof e->prior_text - used, "%s%g", k ? ", " : "",
                                 g->theta1[k]);
    if (used < sizeof e->prior_text) snprintf(e->prior_text + used, sizeof e->prior_text - used, "%s", ref ? "))" : ")");
    return e;
}

/* The default name of a model file: its base name without extension. */
static void default_name(const char *path, char *dst, size_t len)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(dst, len, "%s", b);
    char *dot = strrchr(dst, '.');
    if (dot && dot != dst) *dot = 0;
}

static int load_entry(serve_server *s, const char *name, const char *path, int open_flags, double deadline,
                      serve_model **out, char *err, size_t err_len)
{
    char nm[256];
    if (!name || !*name) {
        default_name(path, nm, sizeof nm);
        name = nm;
    }
    size_t len = 0;
    unsigned char *buf = read_file_bytes(path, open_flags, s->cfg.max_model_bytes, deadline, &s->stop, &len, err,
                                         err_len);
    if (!buf) return -1;
    serve_model *e;
    if (gold_model_bytes_are(buf, len)) {
        e = gold_entry_new(name, path, buf, len, err, err_len);
    } else {
        char why[256];
        model_file *m = model_file_decode(buf, len, why, sizeof why);
        if (!m) snprintf(err, err_len, "%s: %s", path, why);
        e = m ? model_entry_new(name, path, m, stored_crc(buf, len), err, err_len) : NULL;
        free(buf);
    }
    if (!e) return -1;
    if (registry_put(s, e, out) < 0) {
        model_unref(&e);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return 0;
}

/* Add dir (made absolute by realpath) to the directories Load may read
 * under.  0 or -1 with a reason. */
static int model_dir_add(serve_server *s, const char *dir, char *err, size_t err_len)
{
    char *r = realpath(dir, NULL);
    if (!r) {
        snprintf(err, err_len, "model directory %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(r, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_len, "model directory %s: not a directory", dir);
        free(r);
        return -1;
    }
    for (size_t i = 0; i < s->n_model_dirs; i++)
        if (strcmp(s->model_dirs[i], r) == 0) {
            free(r);
            return 0;
        }
    char **v = realloc(s->model_dirs, (s->n_model_dirs + 1) * sizeof *v);
    if (!v) {
        free(r);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    s->model_dirs = v;
    s->model_dirs[s->n_model_dirs++] = r;
    return 0;
}

/* The directory part of a file path ("." when it has none). */
static void dir_of(const char *path, char *dst, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dst, len, ".");
    else if (slash == path) snprintf(dst, len, "/");
    else snprintf(dst, len, "%.*s", (int)(slash - path), path);
}

/* The absolute, symlink-free path of a remotely requested file, or NULL with
 * a reason when it is not inside a model directory.  A relative path is
 * taken relative to the first model directory.  Caller frees. */
static char *confined_path(serve_server *s, const char *path, char *err, size_t err_len)
{
    if (!s->n_model_dirs) {
        snprintf(err, err_len, "%s: no model directory (start the server with --model-dir DIR, or with --model)", path);
        return NULL;
    }
    char joined[PATH_MAX];
    if (path[0] != '/') {
        if ((size_t)snprintf(joined, sizeof joined, "%s/%s", s->model_dirs[0], path) >= sizeof joined) {
            snprintf(err, err_len, "path too long");
            return NULL;
        }
        path = joined;
    }
    char *r = realpath(path, NULL);
    if (!r) {
        snprintf(err, err_len, "%.400s: %s", path, strerror(errno));
        return NULL;
    }
    for (size_t i = 0; i < s->n_model_dirs; i++) {
        const char *d = s->model_dirs[i];
        size_t n = strlen(d);
        /* d is "/" or a path without a trailing slash */
        if (n == 1 && d[0] == '/') return r;
        if (strncmp(r, d, n) == 0 && r[n] == '/') return r;
    }
    snprintf(err, err_len, "%.300s (%.300s) is outside the model directories (--model-dir)", path, r);
    free(r);
    return NULL;
}

/* A Load or Reload from a client: the path confined to the model
 * directories, read under the request's deadline.  The details of a failure
 * go to the server log only; the client learns nothing about the server's
 * files beyond "cannot load". */
static int remote_load(serve_server *s, const char *name, const char *path, int confine, double deadline,
                       serve_model **out, char *reply, size_t reply_len)
{
    char why[1024];
    char *real = confine ? confined_path(s, path, why, sizeof why) : xstrdup(path);
    int rc = -1;
    if (real) rc = load_entry(s, name, real, confine ? O_NOFOLLOW : 0, deadline, out, why, sizeof why);
    free(real);
    if (rc < 0) {
        if (!s->cfg.quiet) fprintf(stderr, "ppxd serve: refused to load '%s': %s\n", path, why);
        snprintf(reply, reply_len, "cannot load '%.200s' (the server log has the reason)", path);
    }
    return rc;
}

int serve_load(serve_server *s, const char *name, const char *path, char *err, size_t err_len)
{
    return load_entry(s, name, path, 0, 0, NULL, err, err_len);
}

int serve_publish(serve_server *s, const char *name, const model_file *m, const char *path, char *err,
                  size_t err_len)
{
    if (!name || !*name) {
        snprintf(err, err_len, "a published model needs a name");
        return -1;
    }
    model_file *c = model_file_copy(m);
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    serve_model *e = model_entry_new(name, path ? path : "", c, 0, err, err_len);
    if (!e) return -1;
    if (registry_put(s, e, NULL) < 0) {
        model_unref(&e);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- workers -------------------------------------------------------------- */

typedef struct cached_posterior {
    uint64_t serial;          /* 0: empty slot */
    uint64_t last_use;
    npe_posterior *npe;
    nre_posterior *nre;
    gold_model *gold;
} cached_posterior;

struct worker {
    serve_server *s;
    int index;
    void *push;
    ppxq_encoder *enc;
    cached_posterior cache[WORKER_CACHE];
    uint64_t tick;
    char err[512];
};
typedef struct worker worker;

static void cache_slot_clear(cached_posterior *c)
{
    npe_posterior_destroy(&c->npe);
    nre_posterior_destroy(&c->nre);
    gold_model_destroy(&c->gold);
    c->serial = 0;
}

/* The worker's posterior for entry e (built on first use).  0 or -1 with a
 * reason in w->err. */
static cached_posterior *worker_posterior(worker *w, const serve_model *e)
{
    cached_posterior *victim = &w->cache[0];
    w->tick++;
    for (int i = 0; i < WORKER_CACHE; i++) {
        cached_posterior *c = &w->cache[i];
        if (c->serial == e->serial) {
            c->last_use = w->tick;
            return c;
        }
        if (c->serial == 0 || (victim->serial != 0 && c->last_use < victim->last_use)) victim = c;
    }
    cache_slot_clear(victim);
    if (e->gold) victim->gold = gold_model_decode(e->gold_bytes, e->gold_len, e->path, w->err, sizeof w->err);
    else if (e->m->kind == MODEL_NRE) victim->nre = nre_posterior_from_model(e->m, w->err, sizeof w->err);
    else victim->npe = npe_posterior_from_model(e->m, w->err, sizeof w->err);
    if (!victim->nre && !victim->npe && !victim->gold) return NULL;
    victim->serial = e->serial;
    victim->last_use = w->tick;
    return victim;
}

/* ---- helping: one big Sample's flow blocks spread over idle workers ------- */

/* A Sample being helped: its blocks are handed out in order; each runs on
 * the taking worker's own posterior of the same model entry (flows hold
 * per-instance buffers).  Lives on the owner's stack; under qmu. */
typedef struct help_req {
    struct help_req *next;
    const serve_model *e;      /* referenced by the owner for the whole run */
    npe_block_fn fn;
    void *arg;
    int n, taken, finished, failed;
    pthread_cond_t done_cv;    /* signalled when finished reaches n */
} help_req;

/* Record a finished block of h (rc its block function's), under qmu: the
 * last one wakes the owner. */
static void help_block_done(help_req *h, int rc)
{
    if (rc < 0) h->failed++;
    if (++h->finished == h->n) pthread_cond_broadcast(&h->done_cv);
}

/* Run block k of h on w (called without qmu; takes it to record the end). */
static void help_run(worker *w, help_req *h, int k)
{
    cached_posterior *cp = worker_posterior(w, h->e);
    /* A helper that cannot build the posterior leaves the block undone: the
     * sampler reruns undone blocks on the owner's posterior. */
    int rc = cp && cp->npe ? h->fn(h->arg, k, cp->npe) : -1;
    pthread_mutex_lock(&w->s->qmu);
    help_block_done(h, rc);
    pthread_mutex_unlock(&w->s->qmu);
}

/* The next job for w, or NULL once the queue is closed.  While the queue is
 * empty, w helps with other workers' big Samples.  Queued jobs come first:
 * helping only ever uses a worker that would otherwise sleep. */
static serve_job *worker_next(worker *w)
{
    serve_server *s = w->s;
    pthread_mutex_lock(&s->qmu);
    serve_job *j = NULL;
    while (!s->qclosed) {
        if (s->qlen) {
            j = s->q[s->qhead];
            s->qhead = (s->qhead + 1) % s->qcap;
            s->qlen--;
            break;
        }
        help_req *h = s->help;
        while (h && h->taken == h->n) h = h->next;
        if (!h) {
            pthread_cond_wait(&s->qcv, &s->qmu);
            continue;
        }
        int k = h->taken++;
        pthread_mutex_unlock(&s->qmu);
        help_run(w, h, k);
        pthread_mutex_lock(&s->qmu);
    }
    pthread_mutex_unlock(&s->qmu);
    return j;
}

/* npe_team for one Sample on worker w: publish the blocks, run them here
 * too, and wait for the ones other workers took. */
typedef struct worker_team {
    worker *w;
    const serve_model *e;
    npe_posterior *own;
} worker_team;

static int worker_team_run(void *ctx, npe_block_fn fn, void *arg, int n)
{
    worker_team *t = ctx;
    serve_server *s = t->w->s;
    int failed = 0;
    if (n <= 1 || s->n_workers <= 1) {
        for (int k = 0; k < n; k++) failed += fn(arg, k, t->own) < 0;
        return failed ? -1 : 0;
    }
    help_req h;
    memset(&h, 0, sizeof h);
    h.e = t->e;
    h.fn = fn;
    h.arg = arg;
    h.n = n;
    pthread_cond_init(&h.done_cv, NULL);
    pthread_mutex_lock(&s->qmu);
    h.next = s->help;
    s->help = &h;
    pthread_cond_broadcast(&s->qcv);
    while (h.taken < h.n) {
        int k = h.taken++;
        pthread_mutex_unlock(&s->qmu);
        int rc = fn(arg, k, t->own);
        pthread_mutex_lock(&s->qmu);
        help_block_done(&h, rc);
    }
    while (h.finished < h.n) pthread_cond_wait(&h.done_cv, &s->qmu);
    for (help_req **pp = &s->help; *pp; pp = &(*pp)->next)
        if (*pp == &h) {
            *pp = h.next;
            break;
        }
    failed = h.failed;
    pthread_mutex_unlock(&s->qmu);
    pthread_cond_destroy(&h.done_cv);
    return failed ? -1 : 0;
}

/* A request's answer: either an encoded reply (bytes owned by the worker's
 * encoder) or an error. */
typedef struct answer {
    ppxq_code code;
    char message[512];
} answer;

__attribute__((format(printf, 3, 4)))
static int set_error(answer *a, ppxq_code code, const char *fmt, ...)
{
    a->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->message, sizeof a->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* A reply of type t to request rq, to be filled by the caller. */
static void reply_init(ppxq_msg *rp, ppxq_type t, const ppxq_msg *rq)
{
    ppxq_msg_init(rp);
    rp->type = t;
    rp->request_id = rq->request_id;
}

/* rp encoded with w's encoder (bytes owned by it), or NULL with a set. */
static const uint8_t *encode_reply(worker *w, const ppxq_msg *rp, size_t *len, answer *a)
{
    ppxq_error perr;
    const uint8_t *out = ppxq_encode(w->enc, rp, len, &perr);
    if (!out) set_error(a, PPXQ_INTERNAL, "encoding the reply: %s", perr.message);
    return out;
}

static void fill_gold_info(const serve_model *e, ppxq_model_info *mi);

/* The SampleReply of k matrices and their acceptance rates. */
static const uint8_t *sample_reply(worker *w, const ppxq_msg *rq, const ppxq_matrix *mats, const double *acc,
                                   uint32_t k, size_t *len, answer *a)
{
    ppxq_msg rp;
    reply_init(&rp, PPXQ_SAMPLE_REPLY, rq);
    rp.samples = mats;
    rp.n_samples = k;
    rp.acceptance = acc;
    rp.n_acceptance = k;
    return encode_reply(w, &rp, len, a);
}

static void fill_info(const serve_model *e, ppxq_model_info *mi)
{
    memset(mi, 0, sizeof *mi);
    if (e->gold) {
        fill_gold_info(e, mi);
        return;
    }
    const model_file *m = e->m;
    mi->name = e->name;
    mi->kind = model_kind_name(m->kind);
    mi->theta_names = (const char *const *)m->theta_names;
    mi->n_theta_names = (uint32_t)m->dim;
    mi->theta_dim = (uint32_t)m->dim;
    mi->x_names = (const char *const *)m->x_names;
    mi->n_x_names = (uint32_t)m->context;
    mi->x_dim = (uint32_t)m->context;
    mi->created = m->prov.created;
    mi->n_simulations = m->prov.n_simulations;
    mi->best_val_loss = m->prov.best_val_loss;
    mi->checksum = e->checksum;
    mi->path = e->path;
    mi->generation = e->generation;
    mi->prior = e->prior_text;
}

/* "unknown model 'x' (served: a, b)" */
static int unknown_model(serve_server *s, answer *a, const char *name)
{
    char list[300] = "";
    size_t n = 0, used = 0;
    serve_model **v = registry_snapshot(s, &n);
    for (size_t i = 0; i < n; i++) {
        if (used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", v[i]->name);
        model_unref(&v[i]);
    }
    free(v);
    return set_error(a, PPXQ_UNKNOWN_MODEL, "unknown model '%s' (served: %s)", name, n ? list : "none");
}

/* Seconds left of a request's time budget. */
static double remaining(const serve_server *s, const serve_job *j, double budget)
{
    (void)s;
    return budget - (mono_now() - j->t_recv);
}

static int check_finite(const double *v, uint32_t rows, uint32_t cols, const char *what, answer *a)
{
    for (uint32_t i = 0; i < rows; i++)
        for (uint32_t c = 0; c < cols; c++)
            if (!isfinite(v[(size_t)i * cols + c]))
                return set_error(a, PPXQ_NAN_INPUT, "%s row %u column %u is %s", what, i, c,
                                 isnan(v[(size_t)i * cols + c]) ? "NaN" : "infinite");
    return 0;
}

/* Request budget in seconds: the server deadline, or the request's own
 * max_seconds when positive and smaller. */
static double budget_of(const serve_server *s, double max_seconds)
{
    double b = s->cfg.deadline_ms / 1000.0;
    if (isfinite(max_seconds) && max_seconds > 0 && max_seconds < b) b = max_seconds;
    return b;
}

/* ---- gold models (LogRatio, Score; Sample/LogProb of NDE/SCANDAL) --------- */

/* Rows of t for m requests: 1 row (repeated) or m rows of D values, as a
 * new [m, D] array in *out.  0, or -1 with a set. */
static int gold_rows(const ppxq_matrix *t, uint32_t m, int D, const char *what, double **out, answer *a)
{
    *out = NULL;
    if ((t->rows != 1 && t->rows != m) || t->cols != (uint32_t)D)
        return set_error(a, PPXQ_BAD_SHAPE, "%s must be 1 x %d or %u x %d (one row per x), got %u x %u", what, D, m, D,
                         t->rows, t->cols);
    if (check_finite(t->data, t->rows, t->cols, what, a) < 0) return -1;
    double *v = malloc(((size_t)m * D + 1) * sizeof *v);
    if (!v) return set_error(a, PPXQ_INTERNAL, "out of memory");
    for (uint32_t i = 0; i < m; i++) memcpy(v + (size_t)i * D, t->data + (t->rows == 1 ? 0 : (size_t)i * D), D * sizeof *v);
    *out = v;
    return 0;
}

/* Common checks of a gold request's x [m, C]: 0, or -1 with a set. */
static int gold_check_x(const serve_server *s, const serve_model *e, const ppxq_matrix *x, const char *what, answer *a)
{
    const gold_model *g = e->gold;
    if (x->rows == 0 || x->cols != (uint32_t)g->C)
        return set_error(a, PPXQ_BAD_SHAPE, "model '%s' (%s) takes %s of %d values (m x %d, m >= 1), got %u x %u",
                         e->name, gold_model_kind_name(g->method), what, g->C, g->C, x->rows, x->cols);
    if (x->rows > s->cfg.max_n)
        return set_error(a, PPXQ_N_TOO_LARGE, "%u rows is over this server's limit of %llu (--max-n)", x->rows,
                         (unsigned long long)s->cfg.max_n);
    if (8.0 * x->rows * (g->D + 1) + 1024.0 > (double)s->cfg.max_reply_bytes)
        return set_error(a, PPXQ_N_TOO_LARGE, "%u rows is over this server's reply limit of %zu bytes "
                         "(--max-reply-bytes)", x->rows, s->cfg.max_reply_bytes);
    return check_finite(x->data, x->rows, x->cols, what, a);
}

static void fill_gold_info(const serve_model *e, ppxq_model_info *mi)
{
    const gold_model *g = e->gold;
    mi->name = e->name;
    mi->kind = gold_model_kind_name(g->method);
    mi->theta_names = (const char *const *)g->theta_names;
    mi->n_theta_names = (uint32_t)g->D;
    mi->theta_dim = (uint32_t)g->D;
    mi->x_names = (const char *const *)g->x_names;
    mi->n_x_names = (uint32_t)g->C;
    mi->x_dim = (uint32_t)g->C;
    mi->n_simulations = g->n_train + g->n_val;
    mi->best_val_loss = g->best_val;
    mi->checksum = e->checksum;
    mi->path = e->path;
    mi->generation = e->generation;
    mi->prior = e->prior_text;
}

/* The worker's instance of gold entry e, or NULL with a set. */
static gold_model *gold_instance(worker *w, const serve_model *e, answer *a)
{
    cached_posterior *cp = worker_posterior(w, e);
    if (!cp || !cp->gold) {
        set_error(a, PPXQ_INTERNAL, "cannot build the model '%s': %s", e->name, w->err);
        return NULL;
    }
    return cp->gold;
}

/* LogRatio and Score. */
static const uint8_t *do_gold(worker *w, const ppxq_msg *rq, size_t *len, answer *a)
{
    serve_server *s = w->s;
    const int is_ratio = rq->type == PPXQ_LOG_RATIO;
    serve_model *e = registry_get(s, rq->model);
    if (!e) {
        unknown_model(s, a, rq->model);
        return NULL;
    }
    const uint8_t *out = NULL;
    double *th0 = NULL, *th1 = NULL, *res = NULL;
    if (!e->gold) {
        set_error(a, PPXQ_BAD_REQUEST, "model '%s' is %s, not a gold model: %s needs one (ppxd train carl ... scandal)",
                  e->name, model_kind_name(e->m->kind), ppxq_type_name(rq->type));
        goto done;
    }
    const gold_method meth = e->gold->method;
    const int D = e->gold->D;
    if (is_ratio && meth == GOLD_SALLY) {
        set_error(a, PPXQ_BAD_REQUEST, "model '%s' (gold-SALLY) estimates the score t^(x), not log r: ask Score",
                  e->name);
        goto done;
    }
    if (!is_ratio && !gold_method_has_score(meth)) {
        set_error(a, PPXQ_BAD_REQUEST, "model '%s' (%s) has no score: it was not trained on one (scores come from "
                  "rascal, cascal, alices, sally, nde and scandal models)", e->name, gold_model_kind_name(meth));
        goto done;
    }
    const uint32_t m = rq->observations.rows;
    if (gold_check_x(s, e, &rq->observations, "x", a) < 0) goto done;
    if (meth == GOLD_SALLY) {
        /* t^(x) at the training reference: theta is optional (0 rows) and unused */
        if (rq->thetas.rows && gold_rows(&rq->thetas, m, D, "theta", &th0, a) < 0) goto done;
    } else if (gold_rows(&rq->thetas, m, D, is_ratio ? "theta0" : "theta", &th0, a) < 0) {
        goto done;
    }
    if (is_ratio && rq->thetas1.rows) {
        if (gold_rows(&rq->thetas1, m, D, "theta1", &th1, a) < 0) goto done;
    } else if (is_ratio && !isfinite(e->gold->theta1[0])) {
        set_error(a, PPXQ_BAD_SHAPE, "model '%s' has no reference theta1 (trained without one): give theta1", e->name);
        goto done;
    }
    gold_model *g = gold_instance(w, e, a);
    if (!g) goto done;
    res = malloc((size_t)m * (is_ratio ? 1 : D) * sizeof *res);
    if (!res) {
        set_error(a, PPXQ_INTERNAL, "out of memory");
        goto done;
    }
    if ((is_ratio ? gold_model_log_ratio(g, rq->observations.data, th0, th1, m, res)
                  : gold_model_score(g, rq->observations.data, th0, m, res)) < 0) {
        set_error(a, PPXQ_INTERNAL, "evaluating '%s' failed (the server log has the reason)", e->name);
        goto done;
    }
    ppxq_msg rp;
    reply_init(&rp, is_ratio ? PPXQ_LOG_RATIO_REPLY : PPXQ_SCORE_REPLY, rq);
    if (is_ratio) {
        rp.log_prob = res;
        rp.n_log_prob = m;
    } else {
        rp.score.rows = m;
        rp.score.cols = (uint32_t)D;
        rp.score.data = res;
    }
    out = encode_reply(w, &rp, len, a);
done:
    free(th0);
    free(th1);
    free(res);
    model_unref(&e);
    return out;
}

static int gold_density_only(const serve_model *e, const char *what, answer *a)
{
    if (gold_method_is_density(e->gold->method)) return 0;
    return set_error(a, PPXQ_BAD_REQUEST, "model '%s' (%s) is not a density: %s needs an nde or scandal model "
                     "(ratio models answer LogRatio, score models Score)", e->name,
                     gold_model_kind_name(e->gold->method), what);
}

/* Sample of a density model: observations = k rows of theta; n draws of x
 * per row, row i from rng_seed(&r, seed, i), i.e. exactly
 *   rng_seed(&r, S, i); gold_model_sample(m, theta_i repeated n times, n, &r, out)
 * in-process. */
static const uint8_t *gold_sample(worker *w, const ppxq_msg *rq, const serve_model *e, size_t *len, answer *a)
{
    serve_server *s = w->s;
    if (gold_density_only(e, "Sample", a) < 0) return NULL;
    const int C = e->gold->C, D = e->gold->D;
    const uint32_t k = rq->observations.rows;
    if (k == 0 || rq->observations.cols != (uint32_t)D) {
        set_error(a, PPXQ_BAD_SHAPE, "model '%s' (%s) samples x given theta: the observations are k x %d theta rows, "
                  "got %u x %u", e->name, gold_model_kind_name(e->gold->method), D, k, rq->observations.cols);
        return NULL;
    }
    if (rq->n == 0) {
        set_error(a, PPXQ_BAD_SHAPE, "n is 0: ask for at least one sample");
        return NULL;
    }
    if ((uint64_t)rq->n * k > s->cfg.max_n || 8.0 * rq->n * k * (C + D) + 64.0 * k + 1024.0 > (double)s->cfg.max_reply_bytes) {
        set_error(a, PPXQ_N_TOO_LARGE, "%u samples x %u theta rows is over this server's limit (--max-n %llu, "
                  "--max-reply-bytes %zu)", rq->n, k, (unsigned long long)s->cfg.max_n, s->cfg.max_reply_bytes);
        return NULL;
    }
    if (check_finite(rq->observations.data, k, rq->observations.cols, "theta", a) < 0) return NULL;
    gold_model *g = gold_instance(w, e, a);
    if (!g) return NULL;
    const size_t per = (size_t)rq->n * C;
    double *buf = malloc((size_t)k * per * sizeof *buf), *th = malloc((size_t)rq->n * D * sizeof *th);
    double *acc = malloc((size_t)k * sizeof *acc);
    ppxq_matrix *mats = malloc((size_t)k * sizeof *mats);
    const uint8_t *out = NULL;
    if (!buf || !th || !acc || !mats) {
        set_error(a, PPXQ_INTERNAL, "out of memory for %u x %u samples", k, rq->n);
        goto done;
    }
    for (uint32_t i = 0; i < k; i++) {
        for (uint32_t j = 0; j < rq->n; j++) memcpy(th + (size_t)j * D, rq->observations.data + (size_t)i * D, D * sizeof *th);
        rng r;
        rng_seed(&r, rq->seed, i);
        if (gold_model_sample(g, th, rq->n, &r, buf + i * per) < 0) {
            set_error(a, PPXQ_SAMPLING_FAILED, "theta row %u: sampling failed", i);
            goto done;
        }
        acc[i] = 1;
        mats[i].rows = rq->n;
        mats[i].cols = (uint32_t)C;
        mats[i].data = buf + i * per;
    }
    out = sample_reply(w, rq, mats, acc, k, len, a);
done:
    free(buf);
    free(th);
    free(acc);
    free(mats);
    return out;
}

/* LogProb of a density model: observation = 1 x D theta, thetas = m x C rows
 * of x; log p^(x_i | theta) (gold_model_log_prob; normalise is ignored: the
 * density is normalised). */
static const uint8_t *gold_log_prob(worker *w, const ppxq_msg *rq, const serve_model *e, size_t *len, answer *a)
{
    serve_server *s = w->s;
    if (gold_density_only(e, "LogProb", a) < 0) return NULL;
    const int D = e->gold->D;
    if (rq->observations.rows != 1 || rq->observations.cols != (uint32_t)D) {
        set_error(a, PPXQ_BAD_SHAPE, "model '%s' (%s) gives log p(x | theta): the observation is the 1 x %d theta, "
                  "got %u x %u", e->name, gold_model_kind_name(e->gold->method), D, rq->observations.rows,
                  rq->observations.cols);
        return NULL;
    }
    if (check_finite(rq->observations.data, 1, D, "theta", a) < 0) return NULL;
    if (gold_check_x(s, e, &rq->thetas, "thetas (the x rows)", a) < 0) return NULL;
    double *th = NULL, *lp = NULL;
    const uint8_t *out = NULL;
    ppxq_matrix one = {1, (uint32_t)D, rq->observations.data};
    if (gold_rows(&one, rq->thetas.rows, D, "theta", &th, a) < 0) return NULL;
    gold_model *g = gold_instance(w, e, a);
    lp = malloc((size_t)rq->thetas.rows * sizeof *lp);
    if (g && !lp) set_error(a, PPXQ_INTERNAL, "out of memory");
    if (g && lp) {
        if (gold_model_log_prob(g, rq->thetas.data, th, rq->thetas.rows, lp) < 0) {
            set_error(a, PPXQ_INTERNAL, "evaluating '%s' failed", e->name);
        } else {
            ppxq_msg rp;
            reply_init(&rp, PPXQ_LOG_PROB_REPLY, rq);
            rp.log_prob = lp;
            rp.n_log_prob = rq->thetas.rows;
            out = encode_reply(w, &rp, len, a);
        }
    }
    free(th);
    free(lp);
    return out;
}

static const uint8_t *do_sample(worker *w, const serve_job *j, const ppxq_msg *rq, size_t *len, answer *a)
{
    serve_server *s = w->s;
    serve_model *e = registry_get(s, rq->model);
    if (!e) {
        unknown_model(s, a, rq->model);
        return NULL;
    }
    if (e->gold) {
        const uint8_t *g = gold_sample(w, rq, e, len, a);
        model_unref(&e);
        return g;
    }
    const uint8_t *out = NULL;
    double *buf = NULL, *acc = NULL;
    ppxq_matrix *mats = NULL;
    const model_file *m = e->m;
    uint32_t k = rq->observations.rows, D = (uint32_t)m->dim;
    double budget = budget_of(s, rq->max_seconds);
    if (k == 0) {
        set_error(a, PPXQ_BAD_SHAPE, "no observations: give a k x %d matrix", m->context);
        goto done;
    }
    if (rq->observations.cols != (uint32_t)m->context) {
        set_error(a, PPXQ_BAD_SHAPE, "model '%s' takes observations of %d values, got %u", e->name, m->context,
                  rq->observations.cols);
        goto done;
    }
    if (rq->n == 0) {
        set_error(a, PPXQ_BAD_SHAPE, "n is 0: ask for at least one sample");
        goto done;
    }
    if ((uint64_t)rq->n * k > s->cfg.max_n) {
        set_error(a, PPXQ_N_TOO_LARGE, "%u samples x %u observations is over this server's limit of %llu samples "
                  "per request (--max-n)", rq->n, k, (unsigned long long)s->cfg.max_n);
        goto done;
    }
    /* The reply holds n x k x D doubles plus one acceptance rate and a
     * matrix header per observation: bound its bytes, not only its rows. */
    double reply_bytes = 8.0 * rq->n * k * D + 64.0 * k + 1024.0;
    if (reply_bytes > (double)s->cfg.max_reply_bytes) {
        set_error(a, PPXQ_N_TOO_LARGE, "%u samples x %u observations x %u parameters is a %.0f-byte reply, over this "
                  "server's limit of %zu bytes (--max-reply-bytes)", rq->n, k, D, reply_bytes,
                  s->cfg.max_reply_bytes);
        goto done;
    }
    if (check_finite(rq->observations.data, k, rq->observations.cols, "observation", a) < 0) goto done;
    cached_posterior *cp = worker_posterior(w, e);
    if (!cp) {
        set_error(a, PPXQ_INTERNAL, "cannot build the posterior of '%s': %s", e->name, w->err);
        goto done;
    }
    size_t per = (size_t)rq->n * D;
    buf = malloc((size_t)k * per * sizeof *buf);
    acc = malloc((size_t)k * sizeof *acc);
    mats = malloc((size_t)k * sizeof *mats);
    if (!buf || !acc || !mats) {
        set_error(a, PPXQ_INTERNAL, "out of memory for %u x %u samples", k, rq->n);
        goto done;
    }
    for (uint32_t i = 0; i < k; i++) {
        double left = remaining(s, j, budget);
        if (left <= 0) {
            set_error(a, PPXQ_DEADLINE, "deadline of %.3g s passed after %u of %u observations", budget, i, k);
            goto done;
        }
        rng r;
        rng_seed(&r, rq->seed, i);
        const double *x = rq->observations.data + (size_t)i * m->context;
        int rc, hopeless = 0;
        if (cp->npe) {
            npe_sample_report rep;
            worker_team wt = {w, e, cp->npe};
            npe_team team = {worker_team_run, &wt};
            rc = npe_sample_team(cp->npe, &team, x, rq->n, &r, left, buf + i * per, &rep, w->err, sizeof w->err);
            acc[i] = rep.acceptance;
            /* Out of time with almost nothing accepted: the estimate has ~no
             * mass inside the prior's support, more time would not help. */
            hopeless = rc < 0 && rep.drawn >= 1000 && rep.acceptance < 0.01;
        } else {
            nre_sample_config sc = nre_sample_defaults();
            sc.max_seconds = left;
            nre_sample_report rep;
            memset(&rep, 0, sizeof rep);
            rc = nre_sample(cp->nre, x, rq->n, &r, &sc, buf + i * per, &rep, w->err, sizeof w->err);
            acc[i] = rep.acceptance;
        }
        if (rc < 0) {
            if (remaining(s, j, budget) <= 0 && !hopeless)
                set_error(a, PPXQ_DEADLINE, "observation %u: time budget of %.3g s used up: %s", i, budget, w->err);
            else set_error(a, PPXQ_SAMPLING_FAILED, "observation %u: %s", i, w->err);
            goto done;
        }
        mats[i].rows = rq->n;
        mats[i].cols = D;
        mats[i].data = buf + i * per;
    }
    out = sample_reply(w, rq, mats, acc, k, len, a);
done:
    free(buf);
    free(acc);
    free(mats);
    model_unref(&e);
    return out;
}

static const uint8_t *do_log_prob(worker *w, const serve_job *j, const ppxq_msg *rq, size_t *len, answer *a)
{
    serve_server *s = w->s;
    serve_model *e = registry_get(s, rq->model);
    if (!e) {
        unknown_model(s, a, rq->model);
        return NULL;
    }
    if (e->gold) {
        const uint8_t *g = gold_log_prob(w, rq, e, len, a);
        model_unref(&e);
        return g;
    }
    const uint8_t *out = NULL;
    double *lp = NULL;
    const model_file *m = e->m;
    uint32_t rows = rq->thetas.rows;
    uint32_t n_draws = rq->n_draws ? rq->n_draws : SERVE_DEFAULT_N_DRAWS;
    double budget = budget_of(s, 0);
    if (rq->observations.rows != 1 || rq->observations.cols != (uint32_t)m->context) {
        set_error(a, PPXQ_BAD_SHAPE, "model '%s' takes one observation of %d values (1 x %d), got %u x %u", e->name,
                  m->context, m->context, rq->observations.rows, rq->observations.cols);
        goto done;
    }
    if (rows > 0 && rq->thetas.cols != (uint32_t)m->dim) {
        set_error(a, PPXQ_BAD_SHAPE, "model '%s' has %d parameters, got thetas of %u columns", e->name, m->dim,
                  rq->thetas.cols);
        goto done;
    }
    /* An explicit n_draws counts against --max-n; the default is the server's own choice. */
    if (rows > s->cfg.max_n || (rq->normalise && rq->n_draws > s->cfg.max_n)) {
        set_error(a, PPXQ_N_TOO_LARGE, "%u theta rows (n_draws %u) is over this server's limit of %llu (--max-n)",
                  rows, n_draws, (unsigned long long)s->cfg.max_n);
        goto done;
    }
    if (8.0 * rows + 1024.0 > (double)s->cfg.max_reply_bytes) {
        set_error(a, PPXQ_N_TOO_LARGE, "%u log densities is over this server's reply limit of %zu bytes "
                  "(--max-reply-bytes)", rows, s->cfg.max_reply_bytes);
        goto done;
    }
    if (check_finite(rq->observations.data, 1, rq->observations.cols, "observation", a) < 0) goto done;
    if (rows && check_finite(rq->thetas.data, rows, rq->thetas.cols, "theta", a) < 0) goto done;
    cached_posterior *cp = worker_posterior(w, e);
    if (!cp) {
        set_error(a, PPXQ_INTERNAL, "cannot build the posterior of '%s': %s", e->name, w->err);
        goto done;
    }
    lp = malloc((rows ? rows : 1) * sizeof *lp);
    if (!lp) {
        set_error(a, PPXQ_INTERNAL, "out of memory");
        goto done;
    }
    double left = remaining(s, j, budget);
    if (left <= 0) {
        set_error(a, PPXQ_DEADLINE, "deadline of %.3g s passed in the queue", budget);
        goto done;
    }
    if (rows > 0) {
        rng r;
        rng_seed(&r, rq->seed, 0);
        const double *x = rq->observations.data, *th = rq->thetas.data;
        int rc;
        if (cp->npe)
            rc = rq->normalise ? npe_log_prob_normalised(cp->npe, th, rows, x, n_draws, &r, left, lp, NULL, w->err,
                                                         sizeof w->err)
                               : npe_log_prob(cp->npe, th, rows, x, 1, lp, w->err, sizeof w->err);
        else
            rc = rq->normalise ? nre_log_prob_normalised(cp->nre, th, rows, x, n_draws, &r, lp, NULL, w->err,
                                                         sizeof w->err)
                               : nre_log_prob(cp->nre, th, rows, x, 1, lp, w->err, sizeof w->err);
        if (rc < 0) {
            set_error(a, PPXQ_SAMPLING_FAILED, "%s", w->err);
            goto done;
        }
    }
    ppxq_msg rp;
    reply_init(&rp, PPXQ_LOG_PROB_REPLY, rq);
    rp.log_prob = lp;
    rp.n_log_prob = rows;
    out = encode_reply(w, &rp, len, a);
done:
    free(lp);
    model_unref(&e);
    return out;
}

static const uint8_t *do_list(worker *w, const ppxq_msg *rq, size_t *len, answer *a)
{
    size_t n = 0;
    serve_model **v = registry_snapshot(w->s, &n);
    ppxq_model_info *infos = calloc(n ? n : 1, sizeof *infos);
    const uint8_t *out = NULL;
    if (!v || !infos) {
        set_error(a, PPXQ_INTERNAL, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) fill_info(v[i], &infos[i]);
        ppxq_msg rp;
        reply_init(&rp, PPXQ_LIST_MODELS_REPLY, rq);
        rp.models = infos;
        rp.n_models = (uint32_t)n;
        out = encode_reply(w, &rp, len, a);
    }
    for (size_t i = 0; i < n; i++) model_unref(&v[i]);
    free(v);
    free(infos);
    return out;
}

static const uint8_t *do_status(worker *w, const ppxq_msg *rq, size_t *len, answer *a)
{
    serve_server *s = w->s;
    size_t n = 0;
    serve_model **v = registry_snapshot(s, &n);
    const char **names = calloc(n ? n : 1, sizeof *names);
    const uint8_t *out = NULL;
    if (!v || !names) {
        set_error(a, PPXQ_INTERNAL, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) names[i] = v[i]->name;
        ppxq_msg rp;
        reply_init(&rp, PPXQ_STATUS_REPLY, rq);
        rp.status.version = SERVE_VERSION;
        rp.status.uptime_seconds = mono_now() - s->t_start;
        rp.status.models = names;
        rp.status.n_models = (uint32_t)n;
        rp.status.workers = (uint32_t)s->n_workers;
        rp.status.queue_depth = (uint32_t)queue_depth(s);
        rp.status.requests = atomic_load(&s->requests);
        rp.status.errors = atomic_load(&s->errors);
        rp.status.busy = atomic_load(&s->busy);
        out = encode_reply(w, &rp, len, a);
    }
    for (size_t i = 0; i < n; i++) model_unref(&v[i]);
    free(v);
    free(names);
    return out;
}

static const uint8_t *admin_reply(worker *w, const ppxq_msg *rq, const char *message, const serve_model *e,
                                  size_t *len, answer *a)
{
    ppxq_model_info info;
    ppxq_msg rp;
    reply_init(&rp, PPXQ_ADMIN_REPLY, rq);
    rp.message = message;
    if (e) {
        fill_info(e, &info);
        rp.models = &info;
        rp.n_models = 1;
    }
    return encode_reply(w, &rp, len, a);
}

static const uint8_t *do_admin(worker *w, const serve_job *j, const ppxq_msg *rq, size_t *len, answer *a)
{
    serve_server *s = w->s;
    if (!j->admin) {
        set_error(a, PPXQ_NOT_ALLOWED, "%s needs admin rights (a --curve-admin key, or a plain ipc endpoint)",
                  ppxq_type_name(rq->type));
        return NULL;
    }
    char msg[600], why[400];
    const uint8_t *out = NULL;
    serve_model *e = NULL;
    double deadline = j->t_recv + s->cfg.deadline_ms / 1000.0;
    switch (rq->type) {
    case PPXQ_LOAD:
        if (!rq->path[0]) {
            set_error(a, PPXQ_MALFORMED, "Load needs a path");
            return NULL;
        }
        if (remote_load(s, rq->name, rq->path, 1, deadline, &e, why, sizeof why) < 0) {
            set_error(a, PPXQ_LOAD_FAILED, "%s", why);
            return NULL;
        }
        snprintf(msg, sizeof msg, "loaded '%s' from %s (generation %u)", e->name, e->path, e->generation);
        break;
    case PPXQ_RELOAD: {
        serve_model *cur = registry_get(s, rq->name);
        if (!cur) {
            unknown_model(s, a, rq->name);
            return NULL;
        }
        char *path = xstrdup(cur->path);
        model_unref(&cur);
        if (!path || !path[0]) {
            free(path);
            set_error(a, PPXQ_LOAD_FAILED, "model '%s' was published from memory: it has no file to reload", rq->name);
            return NULL;
        }
        /* The path is the server's own (from --model or an earlier, confined
         * Load): the client does not choose it. */
        int rc = remote_load(s, rq->name, path, 0, deadline, &e, why, sizeof why);
        free(path);
        if (rc < 0) {
            set_error(a, PPXQ_LOAD_FAILED, "%s (the old version stays served)", why);
            return NULL;
        }
        snprintf(msg, sizeof msg, "reloaded '%s' from %s (generation %u)", e->name, e->path, e->generation);
        break;
    }
    case PPXQ_UNLOAD:
        if (registry_remove(s, rq->name) < 0) {
            unknown_model(s, a, rq->name);
            return NULL;
        }
        snprintf(msg, sizeof msg, "unloaded '%s'", rq->name);
        break;
    default:
        set_error(a, PPXQ_INTERNAL, "not an admin request");
        return NULL;
    }
    if (!s->cfg.quiet) fprintf(stderr, "ppxd serve: %s\n", msg);
    out = admin_reply(w, rq, msg, e, len, a);
    model_unref(&e);
    return out;
}

/* Answer one job: the reply bytes (owned by w->enc) and their length. */
static const uint8_t *handle(worker *w, serve_job *j, size_t *len)
{
    serve_server *s = w->s;
    answer a;
    a.code = PPXQ_OK;
    a.message[0] = 0;
    ppxq_msg rq;
    ppxq_msg_init(&rq);
    ppxq_error perr;
    int verified = 0;
    const uint8_t *out = NULL;
    ppxq_result r = ppxq_decode(zmq_msg_data(&j->payload), zmq_msg_size(&j->payload), s->cfg.max_request_bytes, &rq,
                                &verified, &perr);
    uint64_t id = rq.request_id;
    if (verified && rq.version != PPXQ_PROTOCOL_VERSION) {
        set_error(&a, PPXQ_VERSION_MISMATCH, "this ppxd speaks query protocol version %u, the request has version %u",
                  PPXQ_PROTOCOL_VERSION, rq.version);
    } else if (r != PPXQ_R_OK) {
        set_error(&a, PPXQ_MALFORMED, "%s", perr.message);
    } else if (mono_now() - j->t_recv > s->cfg.deadline_ms / 1000.0) {
        set_error(&a, PPXQ_DEADLINE, "the request waited more than the %d ms deadline in the queue", s->cfg.deadline_ms);
    } else {
        switch (rq.type) {
        case PPXQ_LIST_MODELS: out = do_list(w, &rq, len, &a); break;
        case PPXQ_SAMPLE: out = do_sample(w, j, &rq, len, &a); break;
        case PPXQ_LOG_PROB: out = do_log_prob(w, j, &rq, len, &a); break;
        case PPXQ_STATUS: out = do_status(w, &rq, len, &a); break;
        case PPXQ_LOG_RATIO:
        case PPXQ_SCORE: out = do_gold(w, &rq, len, &a); break;
        case PPXQ_LOAD:
        case PPXQ_UNLOAD:
        case PPXQ_RELOAD: out = do_admin(w, j, &rq, len, &a); break;
        case PPXQ_JOB_SUBMIT:
        case PPXQ_JOB_LIST:
        case PPXQ_JOB_STATUS:
        case PPXQ_JOB_CANCEL:
        case PPXQ_JOB_WAIT:
        case PPXQ_JOB_FETCH:
        case PPXQ_SIM_LIST:
            if (!s->cfg.on_request) {
                set_error(&a, PPXQ_BAD_REQUEST, "%s: this server runs no jobs (they need `ppxd daemon`)",
                          ppxq_type_name(rq.type));
                break;
            }
            {
                serve_call call = {j, id, 0};
                ppxq_code code = PPXQ_OK;
                char msg[sizeof a.message];
                msg[0] = 0;
                out = s->cfg.on_request(s->cfg.on_request_ctx, &call, &rq, w->enc, len, &code, msg, sizeof msg);
                if (!out && call.deferred && code == PPXQ_OK) {
                    ppxq_msg_clear(&rq);
                    *len = 0;
                    return NULL; /* answered later (serve_pending_reply) */
                }
                if (!out) set_error(&a, code == PPXQ_OK ? PPXQ_INTERNAL : code, "%s", msg[0] ? msg : "no reply");
            }
            break;
        default:
            set_error(&a, PPXQ_MALFORMED, "%s is a reply, not a request", ppxq_type_name(rq.type));
            break;
        }
    }
    ppxq_msg_clear(&rq);
    if (!out) {
        if (a.code == PPXQ_OK) set_error(&a, PPXQ_INTERNAL, "no reply");
        atomic_fetch_add(&s->errors, 1);
        out = ppxq_encode_error(w->enc, id, a.code, a.message, len);
    }
    return out;
}

/* Send a reply to the frontend: [frontend, delim][identity][payload]. */
static void send_reply(void *push, serve_job *j, const void *bytes, size_t len)
{
    unsigned char hdr[2] = {(unsigned char)j->frontend, (unsigned char)j->delim};
    if (zmq_send(push, hdr, 2, ZMQ_SNDMORE) < 0) return;
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, &j->identity);
    if (zmq_msg_send(&id, push, ZMQ_SNDMORE) < 0) {
        zmq_msg_close(&id);
        return;
    }
    zmq_send(push, bytes, len, 0);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    serve_server *s = w->s;
    w->push = zmq_socket(s->ctx, ZMQ_PUSH);
    /* (handle() returns NULL, and nothing is sent, for a deferred reply.) */
    int linger = 0, sndtimeo = 2000; /* never block for ever once the frontend has stopped */
    if (w->push) {
        zmq_setsockopt(w->push, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(w->push, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
        if (zmq_connect(w->push, REPLIES_EP) < 0) {
            zmq_close(w->push);
            w->push = NULL;
        }
    }
    w->enc = ppxq_encoder_new();
    serve_job *j;
    while ((j = worker_next(w))) {
        if (w->push && w->enc) {
            size_t len = 0;
            const uint8_t *bytes = handle(w, j, &len);
            if (bytes) send_reply(w->push, j, bytes, len);
        }
        job_free(j);
    }
    for (int i = 0; i < WORKER_CACHE; i++) cache_slot_clear(&w->cache[i]);
    ppxq_encoder_destroy(&w->enc);
    if (w->push) zmq_close(w->push);
    atomic_fetch_sub(&s->workers_running, 1);
    return NULL;
}

/* ---- frontend ------------------------------------------------------------- */

static void frontend_busy(serve_server *s, ppxq_encoder *enc, int fe, serve_job *j)
{
    ppxq_msg rq;
    ppxq_msg_init(&rq);
    int verified = 0;
    ppxq_decode(zmq_msg_data(&j->payload), zmq_msg_size(&j->payload), s->cfg.max_request_bytes, &rq, &verified,
                NULL);
    uint64_t id = rq.request_id;
    ppxq_msg_clear(&rq);
    char msg[128];
    snprintf(msg, sizeof msg, "server busy: %zu requests queued (--queue); try again later", s->qcap);
    size_t len = 0;
    const uint8_t *bytes = ppxq_encode_error(enc, id, PPXQ_BUSY, msg, &len);
    if (!bytes) return;
    if (zmq_msg_send(&j->identity, s->router[fe], ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return;
    if (j->delim) zmq_send(s->router[fe], "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s->router[fe], bytes, len, ZMQ_DONTWAIT);
}

/* Drain the rest of a multipart message. */
static void drain_more(void *sock)
{
    int more = 1;
    size_t sz = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        zmq_msg_close(&m);
        sz = sizeof more;
    }
}

/* Receive one request from router fe (non-blocking).  1 handled, 0 nothing
 * to read, -1 socket error. */
static int frontend_recv(serve_server *s, ppxq_encoder *enc, int fe)
{
    void *sock = s->router[fe];
    serve_job *j = calloc(1, sizeof *j);
    if (!j) return -1;
    zmq_msg_init(&j->identity);
    zmq_msg_init(&j->payload);
    if (zmq_msg_recv(&j->identity, sock, ZMQ_DONTWAIT) < 0) {
        int e = errno;
        job_free(j);
        return e == EAGAIN || e == EINTR ? 0 : -1;
    }
    j->frontend = fe;
    j->t_recv = mono_now();
    if (!zmq_msg_more(&j->identity)) { /* identity only: nothing to answer */
        job_free(j);
        return 1;
    }
    /* Optional empty delimiters (REQ clients), then one payload frame. */
    for (;;) {
        if (zmq_msg_recv(&j->payload, sock, 0) < 0) {
            job_free(j);
            return 1;
        }
        if (zmq_msg_size(&j->payload) == 0 && zmq_msg_more(&j->payload) && !j->delim) {
            j->delim = 1;
            continue;
        }
        break;
    }
    atomic_fetch_add(&s->requests, 1);
    int extra = zmq_msg_more(&j->payload);
    if (s->curve) {
        const char *uid = zmq_msg_gets(&j->payload, "User-Id");
        j->admin = uid && strcmp(uid, "admin") == 0;
    } else {
        j->admin = s->router_admin[fe];
    }
    if (extra) {
        /* Several payload frames: not our protocol.  Answer MALFORMED. */
        drain_more(sock);
        zmq_msg_close(&j->payload);
        zmq_msg_init_size(&j->payload, 0); /* decodes as "empty buffer" -> MALFORMED */
    }
    if (queue_push(s, j) < 0) {
        atomic_fetch_add(&s->busy, 1);
        frontend_busy(s, enc, fe, j);
        job_free(j);
    }
    return 1;
}

/* Forward one reply from the workers (non-blocking).  1, 0 or -1. */
static int frontend_forward(serve_server *s)
{
    unsigned char hdr[2];
    int n = zmq_recv(s->replies, hdr, sizeof hdr, ZMQ_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&id, s->replies, 0) < 0 || zmq_msg_recv(&body, s->replies, 0) < 0) {
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        return 1;
    }
    int fe = hdr[0] < N_FRONTENDS ? hdr[0] : 0;
    void *r = s->router[fe];
    /* A vanished or slow (high-water mark) client loses its reply: never block. */
    if (r && zmq_msg_send(&id, r, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0) {
        if (hdr[1]) zmq_send(r, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        if (zmq_msg_send(&body, r, ZMQ_DONTWAIT) < 0) zmq_msg_close(&body);
    } else {
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return 1;
}

static void *frontend_main(void *arg)
{
    serve_server *s = arg;
    ppxq_encoder *enc = ppxq_encoder_new();
    zmq_pollitem_t items[N_FRONTENDS + 2];
    int map[N_FRONTENDS + 2], n = 0;
    items[n] = (zmq_pollitem_t){s->replies, 0, ZMQ_POLLIN, 0};
    map[n++] = -1;
    for (int i = 0; i < N_FRONTENDS; i++)
        if (s->router[i]) {
            items[n] = (zmq_pollitem_t){s->router[i], 0, ZMQ_POLLIN, 0};
            map[n++] = i;
        }
    /* Last: the stop eventfd.  Nothing else is timed here, so the poll
     * waits without a timeout (a 100 ms tick cost an idle daemon ~20
     * wake-ups a second across this thread and the ZAP one). */
    items[n] = (zmq_pollitem_t){NULL, s->stop_fd, ZMQ_POLLIN, 0};
    const int n_sock = n++;
    while (!atomic_load(&s->stop) && enc) {
        int rc = zmq_poll(items, n, -1);
        if (rc < 0) {
            if (errno == EINTR) continue;
            break;
        }
        /* Replies first (they free memory), then at most a batch of
         * requests per socket so that no socket starves the others. */
        for (int k = 0; k < 4096 && frontend_forward(s) == 1; k++) {
        }
        for (int i = 1; i < n_sock; i++)
            for (int k = 0; k < 256 && frontend_recv(s, enc, map[i]) == 1; k++) {
            }
    }
    ppxq_encoder_destroy(&enc);
    atomic_store(&s->stopped, 1);
    return NULL;
}

/* ---- ZAP (CURVE client authentication) ------------------------------------ */

static int key_listed(uint8_t (*keys)[32], size_t n, const uint8_t *k)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(keys[i], k, 32) == 0) return 1;
    return 0;
}

static void *zap_main(void *arg)
{
    serve_server *s = arg;
    zmq_pollitem_t it[2] = {{s->zap, 0, ZMQ_POLLIN, 0}, {NULL, s->stop_fd, ZMQ_POLLIN, 0}};
    while (!atomic_load(&s->stop)) {
        int rc = zmq_poll(it, 2, -1);
        if (rc <= 0 || !(it[0].revents & ZMQ_POLLIN)) continue;
        /* Request: version, request id, domain, address, identity, mechanism, credentials... */
        zmq_msg_t f[8];
        int nf = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s->zap, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (nf < 8) f[nf++] = m;
            else zmq_msg_close(&m);
        }
        const char *status = "400", *text = "unknown client key", *user = "";
        if (nf >= 6) {
            size_t mlen = zmq_msg_size(&f[5]);
            const char *mech = zmq_msg_data(&f[5]);
            if (mlen == 5 && memcmp(mech, "CURVE", 5) == 0 && nf >= 7 && zmq_msg_size(&f[6]) == 32) {
                const uint8_t *key = zmq_msg_data(&f[6]);
                if (key_listed(s->admin, s->n_admin, key)) {
                    status = "200", text = "OK", user = "admin";
                } else if (key_listed(s->allow, s->n_allow, key)) {
                    status = "200", text = "OK", user = "client";
                }
            } else if (mlen == 4 && memcmp(mech, "NULL", 4) == 0) {
                text = "CURVE required";
            }
        }
        if (nf >= 2) {
            zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
            zmq_send(s->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
            zmq_send(s->zap, status, strlen(status), ZMQ_SNDMORE);
            zmq_send(s->zap, text, strlen(text), ZMQ_SNDMORE);
            zmq_send(s->zap, user, strlen(user), ZMQ_SNDMORE);
            zmq_send(s->zap, "", 0, 0);
        }
        for (int i = 0; i < nf; i++) zmq_msg_close(&f[i]);
    }
    return NULL;
}

/* Read an allow list into *keys (appending).  0 or -1 with a reason. */
static int read_key_list(const char *path, uint8_t (**keys)[32], size_t *n, char *err, size_t err_len)
{
    char (*z85)[41] = NULL;
    size_t cnt = 0;
    if (ppx_query_read_key_list(path, &z85, &cnt, err, err_len) < 0) return -1;
    if (cnt > MAX_KEYS) {
        free(z85);
        snprintf(err, err_len, "%s: more than %d keys", path, MAX_KEYS);
        return -1;
    }
    uint8_t(*v)[32] = realloc(*keys, (*n + cnt + 1) * sizeof *v);
    if (!v) {
        free(z85);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    *keys = v;
    for (size_t i = 0; i < cnt; i++) zmq_z85_decode(v[*n + i], z85[i]);
    *n += cnt;
    free(z85);
    return 0;
}

/* ---- life cycle ------------------------------------------------------------ */

serve_config serve_config_defaults(void)
{
    serve_config c;
    memset(&c, 0, sizeof c);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    c.threads = ncpu > 0 ? (int)ncpu : 1;
    c.max_n = 1000000;
    c.max_request_bytes = (size_t)64 << 20;
    c.max_model_bytes = (size_t)1 << 30;
    c.max_reply_bytes = (size_t)256 << 20;
    c.deadline_ms = 30000;
    c.queue = 1024;
    return c;
}

static void *router_new(serve_server *s, int curve, const char *pub, const char *sec, char *err, size_t err_len)
{
    void *r = zmq_socket(s->ctx, ZMQ_ROUTER);
    if (!r) {
        snprintf(err, err_len, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    int linger = 0, hwm = 10000;
    int64_t maxmsg = (int64_t)(2 * s->cfg.max_request_bytes + ((size_t)1 << 20));
    zmq_setsockopt(r, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(r, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (curve) {
        int one = 1;
        if (zmq_setsockopt(r, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
            zmq_setsockopt(r, ZMQ_CURVE_PUBLICKEY, pub, 41) < 0 ||
            zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, sec, 41) < 0 ||
            zmq_setsockopt(r, ZMQ_ZAP_DOMAIN, "ppxd", 4) < 0) {
            snprintf(err, err_len, "cannot enable CURVE: %s", zmq_strerror(errno));
            zmq_close(r);
            return NULL;
        }
    }
    return r;
}

serve_server *serve_new(const serve_config *cfg, char *err, size_t err_len)
{
    if (!cfg || cfg->n_endpoints == 0) {
        snprintf(err, err_len, "nothing to serve on: give at least one --serve ENDPOINT");
        return NULL;
    }
    if (cfg->threads < 1 || cfg->threads > 1024 || cfg->queue < 1 || cfg->max_n < 1 || cfg->deadline_ms < 1 ||
        cfg->max_request_bytes < 64 || cfg->max_model_bytes < 64 || cfg->max_reply_bytes < 4096) {
        snprintf(err, err_len, "bad limits (threads 1..1024, queue >= 1, max-n >= 1, deadline >= 1 ms, "
                 "max-request-bytes >= 64, max-model-bytes >= 64, max-reply-bytes >= 4096)");
        return NULL;
    }
    int curve = cfg->curve_secret != NULL;
    if (!curve && (cfg->curve_allow || cfg->curve_admin)) {
        snprintf(err, err_len, "--curve-allow/--curve-admin need --curve-secret (the server's key pair)");
        return NULL;
    }
    if (curve && !cfg->curve_allow && !cfg->curve_admin) {
        snprintf(err, err_len, "--curve-secret needs --curve-allow FILE and/or --curve-admin FILE (the client keys "
                 "to accept)");
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_endpoints && !curve; i++)
        if (!endpoint_is_local(cfg->endpoints[i]) && !cfg->insecure_plain) {
            snprintf(err, err_len, "refusing to serve without authentication on %s, which is not a loopback or ipc "
                     "endpoint: give --curve-secret FILE --curve-allow FILE (see ppxctl keygen), or --insecure-plain "
                     "to accept anyone who can reach it", cfg->endpoints[i]);
            return NULL;
        }
    if (curve && !zmq_has("curve")) {
        snprintf(err, err_len, "this libzmq was built without CURVE support");
        return NULL;
    }
    serve_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->curve = curve;
    s->t_start = mono_now();
    s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    pthread_mutex_init(&s->reg_mu, NULL);
    pthread_mutex_init(&s->defer_mu, NULL);
    s->qcap = (size_t)cfg->queue;
    s->q = calloc(s->qcap, sizeof *s->q);
    s->endpoints = calloc(cfg->n_endpoints, sizeof *s->endpoints);
    s->ctx = zmq_ctx_new();
    if (s->stop_fd < 0) {
        snprintf(err, err_len, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if (!s->q || !s->endpoints || !s->ctx) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_endpoints; i++)
        if (!(s->endpoints[i] = xstrdup(cfg->endpoints[i]))) {
            snprintf(err, err_len, "out of memory");
            goto fail;
        }
    s->cfg.endpoints = (const char *const *)s->endpoints;
    s->cfg.curve_secret = s->cfg.curve_allow = s->cfg.curve_admin = NULL; /* not kept */
    s->cfg.models = NULL;
    s->cfg.n_models = 0;
    s->cfg.model_dirs = NULL; /* kept as realpaths in s->model_dirs */
    s->cfg.n_model_dirs = 0;
    char pub[41] = "", sec[41] = "";
    if (curve) {
        if (ppx_query_read_key_pair(cfg->curve_secret, pub, sec, err, err_len) < 0) goto fail;
        if (!sec[0]) {
            snprintf(err, err_len, "%s has no secret-key line: the server needs its key pair", cfg->curve_secret);
            goto fail;
        }
        if (cfg->curve_allow && read_key_list(cfg->curve_allow, &s->allow, &s->n_allow, err, err_len) < 0) goto fail;
        if (cfg->curve_admin && read_key_list(cfg->curve_admin, &s->admin, &s->n_admin, err, err_len) < 0) goto fail;
        /* The ZAP handler must be bound before any CURVE socket binds: without
         * one, libzmq lets every client in. */
        s->zap = zmq_socket(s->ctx, ZMQ_REP);
        int linger = 0;
        if (!s->zap || zmq_setsockopt(s->zap, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
            zmq_bind(s->zap, ZAP_EP) < 0) {
            snprintf(err, err_len, "cannot start the ZAP handler: %s", zmq_strerror(errno));
            goto fail;
        }
        if (pthread_create(&s->zap_thread, NULL, zap_main, s) != 0) {
            snprintf(err, err_len, "cannot start the ZAP thread");
            goto fail;
        }
        s->zap_started = 1;
    }
    for (size_t i = 0; i < cfg->n_models; i++) {
        const char *spec = cfg->models[i], *eq = strchr(spec, '=');
        char name[256] = "", why[512];
        if (eq) snprintf(name, sizeof name, "%.*s", (int)(eq - spec), spec);
        const char *path = eq ? eq + 1 : spec;
        if (load_entry(s, name, path, 0, 0, NULL, why, sizeof why) < 0) {
            snprintf(err, err_len, "--model %s: %s", spec, why);
            goto fail;
        }
        char dir[PATH_MAX];
        dir_of(path, dir, sizeof dir);
        if (!cfg->n_model_dirs && model_dir_add(s, dir, err, err_len) < 0) goto fail;
    }
    for (size_t i = 0; i < cfg->n_model_dirs; i++)
        if (model_dir_add(s, cfg->model_dirs[i], err, err_len) < 0) goto fail;
    /* Routers: [0] authenticated (CURVE) or plain ipc, [1] plain tcp.  Only
     * ipc clients of a plain server may administer: the socket file's
     * permissions say who they are, whereas any local user can reach a
     * loopback port. */
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        int fe = curve || endpoint_is_ipc(cfg->endpoints[i]) ? 0 : 1;
        if (!s->router[fe]) {
            s->router[fe] = router_new(s, curve, pub, sec, err, err_len);
            if (!s->router[fe]) goto fail;
            s->router_admin[fe] = !curve && fe == 0;
        }
        if (zmq_bind(s->router[fe], cfg->endpoints[i]) < 0) {
            snprintf(err, err_len, "cannot bind %s: %s", cfg->endpoints[i], zmq_strerror(errno));
            goto fail;
        }
    }
    memset(sec, 0, sizeof sec);
    s->replies = zmq_socket(s->ctx, ZMQ_PULL);
    if (!s->replies || zmq_bind(s->replies, REPLIES_EP) < 0) {
        snprintf(err, err_len, "cannot bind the reply queue: %s", zmq_strerror(errno));
        goto fail;
    }
    int linger = 0;
    zmq_setsockopt(s->replies, ZMQ_LINGER, &linger, sizeof linger);
    s->workers = calloc((size_t)cfg->threads, sizeof *s->workers);
    worker **ws = s->wargs = calloc((size_t)cfg->threads, sizeof *ws);
    if (!s->workers || !ws) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    for (int i = 0; i < cfg->threads; i++) {
        ws[i] = calloc(1, sizeof **ws);
        if (!ws[i]) break;
        ws[i]->s = s;
        ws[i]->index = i;
        atomic_fetch_add(&s->workers_running, 1);
        if (pthread_create(&s->workers[i], NULL, worker_main, ws[i]) != 0) {
            atomic_fetch_sub(&s->workers_running, 1);
            free(ws[i]);
            break;
        }
        s->n_workers++;
    }
    if (s->n_workers < cfg->threads) {
        snprintf(err, err_len, "cannot start %d worker threads", cfg->threads);
        goto fail;
    }
    if (pthread_create(&s->frontend_thread, NULL, frontend_main, s) != 0) {
        snprintf(err, err_len, "cannot start the frontend thread");
        goto fail;
    }
    s->frontend_started = 1;
    return s;
fail:
    serve_destroy(&s);
    return NULL;
}

/* Set stop and wake the threads that sleep on stop_fd (async-signal-safe:
 * an atomic store and a write). */
static void set_stop(serve_server *s)
{
    atomic_store(&s->stop, 1);
    uint64_t one = 1;
    if (s->stop_fd >= 0 && write(s->stop_fd, &one, sizeof one) < 0) {
        /* Only a full counter fails, and then the fd is readable anyway. */
    }
}

void serve_request_stop(serve_server *s)
{
    if (s) set_stop(s);
}

int serve_stopped(serve_server *s)
{
    return s ? atomic_load(&s->stopped) : 1;
}

/* Stop taking requests: the frontend ends and the queue closes, so idle
 * workers leave at once and busy ones after their request.  Idempotent. */
static void serve_quiesce(serve_server *s)
{
    set_stop(s);
    if (s->frontend_started) {
        pthread_join(s->frontend_thread, NULL);
        s->frontend_started = 0;
    }
    pthread_mutex_lock(&s->qmu);
    s->qclosed = 1;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
}

int serve_shutdown(serve_server *s, int grace_ms)
{
    if (!s) return 0;
    serve_quiesce(s);
    double until = mono_now() + grace_ms / 1000.0;
    while (atomic_load(&s->workers_running) > 0) {
        if (mono_now() >= until) return -1;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int serve_busy_workers(serve_server *s)
{
    return s ? atomic_load(&s->workers_running) : 0;
}

void serve_destroy(serve_server **ps)
{
    if (!ps || !*ps) return;
    serve_server *s = *ps;
    /* Busy workers finish their request (bounded by the deadline) first. */
    serve_quiesce(s);
    for (int i = 0; i < s->n_workers; i++) pthread_join(s->workers[i], NULL);
    if (s->wargs)
        for (int i = 0; i < s->cfg.threads; i++) free(s->wargs[i]);
    free(s->wargs);
    free(s->workers);
    if (s->zap_started) pthread_join(s->zap_thread, NULL);
    for (int i = 0; i < N_FRONTENDS; i++)
        if (s->router[i]) zmq_close(s->router[i]);
    if (s->replies) zmq_close(s->replies);
    if (s->zap) zmq_close(s->zap);
    pthread_mutex_lock(&s->defer_mu);
    s->defer_closed = 1;
    if (s->defer_push) zmq_close(s->defer_push);
    s->defer_push = NULL;
    pthread_mutex_unlock(&s->defer_mu);
    if (s->ctx) zmq_ctx_term(s->ctx);
    if (s->q)
        for (size_t i = 0; i < s->qlen; i++) job_free(s->q[(s->qhead + i) % s->qcap]);
    free(s->q);
    for (size_t i = 0; i < s->n_models; i++) model_unref(&s->models[i]);
    free(s->models);
    if (s->endpoints)
        for (size_t i = 0; i < s->cfg.n_endpoints; i++) free(s->endpoints[i]);
    free(s->endpoints);
    free(s->allow);
    free(s->admin);
    for (size_t i = 0; i < s->n_model_dirs; i++) free(s->model_dirs[i]);
    free(s->model_dirs);
    pthread_mutex_destroy(&s->qmu);
    pthread_cond_destroy(&s->qcv);
    pthread_mutex_destroy(&s->reg_mu);
    pthread_mutex_destroy(&s->defer_mu);
    if (s->stop_fd >= 0) close(s->stop_fd);
    free(s);
    *ps = NULL;
}

/* ---- running until a signal ------------------------------------------------ */

int serve_run(const serve_config *cfg, const char *name, const model_file *m, const char *path)
{
    /* The daemon parallelises over requests, not inside a matmul. */
    nn_set_threads(1);
    signal(SIGPIPE, SIG_IGN);
    /* SIGINT/SIGTERM are taken synchronously by this thread (sigtimedwait):
     * blocked here, before any thread starts, so every thread inherits it. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    char err[1024];
    int rc = 1;
    /* A model published from a file (train --serve) makes its directory the
     * default model directory, as --model does. */
    serve_config c = *cfg;
    char dir[PATH_MAX];
    const char *dirs[1] = {dir};
    if (m && path && *path && !c.n_model_dirs && !c.n_models) {
        dir_of(path, dir, sizeof dir);
        c.model_dirs = dirs;
        c.n_model_dirs = 1;
    }
    serve_server *s = serve_new(&c, err, sizeof err);
    if (!s) {
        fprintf(stderr, "ppxd serve: %s\n", err);
        goto out;
    }
    if (m && serve_publish(s, name, m, path, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd serve: cannot serve '%s': %s\n", name ? name : "", err);
        serve_destroy(&s);
        goto out;
    }
    if (!cfg->quiet) {
        fprintf(stderr, "ppxd serve: %s, %d workers, %s; serving", SERVE_VERSION, cfg->threads,
                cfg->curve_secret ? "CURVE" : "plain");
        size_t n = 0;
        serve_model **v = registry_snapshot(s, &n);
        for (size_t i = 0; i < n; i++) {
            fprintf(stderr, " %s(%s)", v[i]->name,
                    v[i]->gold ? gold_model_kind_name(v[i]->gold->method) : model_kind_name(v[i]->m->kind));
            model_unref(&v[i]);
        }
        free(v);
        fprintf(stderr, "%s on", n ? "" : " no models yet");
        for (size_t i = 0; i < cfg->n_endpoints; i++) fprintf(stderr, " %s", cfg->endpoints[i]);
        fprintf(stderr, "\n");
    }
    struct timespec tick = {0, 200000000};
    while (!serve_stopped(s)) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) break;
    }
    if (!cfg->quiet) fprintf(stderr, "ppxd serve: stopping\n");
    rc = serve_stopped(s) && !atomic_load(&s->stop) ? 1 : 0;
    if (serve_shutdown(s, SERVE_STOP_GRACE_MS) < 0) {
        /* A worker is still inside a request (a long sampling run, a slow
         * file system): shutdown must not wait for it.  Nothing is lost: the
         * server keeps no state that outlives the process. */
        fprintf(stderr, "ppxd serve: %d worker%s still busy %.1f s after the stop request: exiting without them\n",
                serve_busy_workers(s), serve_busy_workers(s) == 1 ? "" : "s", SERVE_STOP_GRACE_MS / 1000.0);
        fflush(NULL);
        _exit(rc);
    }
    serve_destroy(&s);
out:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* ---- command line ---------------------------------------------------------- */

static void serve_usage(FILE *f)
{
    fprintf(f,
            "usage: ppxd serve --serve ENDPOINT [--serve ENDPOINT...] --model NAME=PATH [--model ...] [options]\n"
            "\n"
            "Serve trained posteriors (.ppxm model files) to ppxctl and the query client libraries.\n"
            "\n"
            "  --serve ENDPOINT        bind here (repeatable): tcp://127.0.0.1:5560, ipc:///tmp/ppxd, ipc://@name\n"
            "  --model NAME=PATH       serve PATH as NAME (repeatable; PATH alone: its base name)\n"
            "  --serve-threads N       worker threads (default: number of CPUs)\n"
            "  --max-n N               most samples (n x observations) or theta rows per request (default 1000000)\n"
            "  --max-request-bytes B   largest request (default 64 MiB)\n"
            "  --max-reply-bytes B     largest Sample or LogProb reply (default 256 MiB)\n"
            "  --max-model-bytes B     largest model file read (default 1 GiB)\n"
            "  --model-dir DIR         Load may read model files under DIR only (repeatable; default: the\n"
            "                          directories of the --model files; none: Load is refused)\n"
            "  --deadline-ms T         per-request deadline from arrival, admin requests included (default 30000)\n"
            "  --queue N               requests waiting for a worker before BUSY replies (default 1024)\n"
            "  --curve-secret FILE     the server's CURVE key pair (ppxctl keygen): every endpoint uses CURVE\n"
            "  --curve-allow FILE      client public keys allowed to query, one per line\n"
            "  --curve-admin FILE      client public keys allowed to query and Load/Unload/Reload\n"
            "  --insecure-plain        allow plain (unauthenticated) non-loopback endpoints (query only)\n"
            "  --quiet                 no log lines\n"
            "  -h, --help              this help\n"
            "\n"
            "Plain endpoints must be ipc or loopback tcp unless --insecure-plain. Without CURVE, only ipc clients\n"
            "may administer (the socket file's permissions decide who); tcp admin needs a --curve-admin key.\n"
            "A failed Load answers only \"cannot load\"; the reason is in the server log.\n"
            "Stop with SIGINT or SIGTERM.\n");
}

static int serve_die(const char *msg, const char *detail)
{
    fprintf(stderr, "ppxd serve: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    return 2;
}


enum {
    SOPT_SERVE = 1000, SOPT_MODEL, SOPT_THREADS, SOPT_MAX_N, SOPT_MAX_BYTES, SOPT_DEADLINE, SOPT_QUEUE,
    SOPT_CURVE_SECRET, SOPT_CURVE_ALLOW, SOPT_CURVE_ADMIN, SOPT_INSECURE, SOPT_QUIET, SOPT_MODEL_DIR,
    SOPT_MAX_MODEL_BYTES, SOPT_MAX_REPLY_BYTES
};

int serve_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"serve", required_argument, 0, SOPT_SERVE},
        {"model", required_argument, 0, SOPT_MODEL},
        {"serve-threads", required_argument, 0, SOPT_THREADS},
        {"max-n", required_argument, 0, SOPT_MAX_N},
        {"max-request-bytes", required_argument, 0, SOPT_MAX_BYTES},
        {"deadline-ms", required_argument, 0, SOPT_DEADLINE},
        {"queue", required_argument, 0, SOPT_QUEUE},
        {"curve-secret", required_argument, 0, SOPT_CURVE_SECRET},
        {"curve-allow", required_argument, 0, SOPT_CURVE_ALLOW},
        {"curve-admin", required_argument, 0, SOPT_CURVE_ADMIN},
        {"insecure-plain", no_argument, 0, SOPT_INSECURE},
        {"quiet", no_argument, 0, SOPT_QUIET},
        {"model-dir", required_argument, 0, SOPT_MODEL_DIR},
        {"max-model-bytes", required_argument, 0, SOPT_MAX_MODEL_BYTES},
        {"max-reply-bytes", required_argument, 0, SOPT_MAX_REPLY_BYTES},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    serve_config cfg = serve_config_defaults();
    const char **eps = calloc((size_t)argc + 1, sizeof *eps);
    const char **models = calloc((size_t)argc + 1, sizeof *models);
    const char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
    int rc = 2, ch;
    uint64_t v;
    if (!eps || !models || !dirs) goto out;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case SOPT_SERVE: eps[cfg.n_endpoints++] = optarg; break;
        case SOPT_MODEL: models[cfg.n_models++] = optarg; break;
        case SOPT_MODEL_DIR: dirs[cfg.n_model_dirs++] = optarg; break;
        case SOPT_MAX_MODEL_BYTES:
            if (args_u64_range(optarg, 64, (uint64_t)1 << 40, &v) < 0) {
                rc = serve_die("--max-model-bytes wants a number from 64 to 2^40", optarg);
                goto out;
            }
            cfg.max_model_bytes = (size_t)v;
            break;
        case SOPT_MAX_REPLY_BYTES:
            if (args_u64_range(optarg, 4096, (uint64_t)1 << 40, &v) < 0) {
                rc = serve_die("--max-reply-bytes wants a number from 4096 to 2^40", optarg);
                goto out;
            }
            cfg.max_reply_bytes = (size_t)v;
            break;
        case SOPT_THREADS:
            if (args_u64_range(optarg, 1, 1024, &v) < 0) {
                rc = serve_die("--serve-threads wants a number from 1 to 1024", optarg);
                goto out;
            }
            cfg.threads = (int)v;
            break;
        case SOPT_MAX_N:
            if (args_u64_range(optarg, 1, UINT32_MAX, &v) < 0) {
                rc = serve_die("--max-n wants a positive number", optarg);
                goto out;
            }
            cfg.max_n = v;
            break;
        case SOPT_MAX_BYTES:
            if (args_u64_range(optarg, 64, (uint64_t)1 << 31, &v) < 0) {
                rc = serve_die("--max-request-bytes wants a number from 64 to 2^31", optarg);
                goto out;
            }
            cfg.max_request_bytes = (size_t)v;
            break;
        case SOPT_DEADLINE:
            if (args_u64_range(optarg, 1, 86400000, &v) < 0) {
                rc = serve_die("--deadline-ms wants a positive number of milliseconds", optarg);
                goto out;
            }
            cfg.deadline_ms = (int)v;
            break;
        case SOPT_QUEUE:
            if (args_u64_range(optarg, 1, 1 << 20, &v) < 0) {
                rc = serve_die("--queue wants a number from 1 to 2^20", optarg);
                goto out;
            }
            cfg.queue = (int)v;
            break;
        case SOPT_CURVE_SECRET: cfg.curve_secret = optarg; break;
        case SOPT_CURVE_ALLOW: cfg.curve_allow = optarg; break;
        case SOPT_CURVE_ADMIN: cfg.curve_admin = optarg; break;
        case SOPT_INSECURE: cfg.insecure_plain = 1; break;
        case SOPT_QUIET: cfg.quiet = 1; break;
        case 'h':
            serve_usage(stdout);
            rc = 0;
            goto out;
        default: serve_usage(stderr); goto out;
        }
    }
    if (optind < argc) {
        rc = serve_die("unexpected argument", argv[optind]);
        goto out;
    }
    if (!cfg.n_endpoints) {
        rc = serve_die("give at least one --serve ENDPOINT (e.g. tcp://127.0.0.1:5560)", NULL);
        goto out;
    }
    cfg.endpoints = eps;
    cfg.models = models;
    cfg.model_dirs = dirs;
    rc = serve_run(&cfg, NULL, NULL, NULL);
out:
    free(eps);
    free(models);
    free(dirs);
    return rc;
}
