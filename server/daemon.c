/* daemon.c — `ppxd daemon` (see daemon.h). */
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "diagnose.h"
#include "engine.h"
#include "gold/gold_data.h"
#include "gold/gold_est.h"
#include "gold_cmd.h"
#include "mine.h"
#include "model_file.h"
#include "nn/nn.h"
#include "policy.h"
#include "ppxq.h"
#include "serve.h"
#include "train.h"
#include "train_ic.h"

typedef enum job_kind {
    JK_SIMULATE = 0, JK_INFER, JK_TRAIN, JK_TRAIN_IC, JK_MINE, JK_GOLD, JK_DIAGNOSE, JK_COUNT
} job_kind;
static const char *const kind_names[] = {"simulate", "infer", "train", "train-ic", "mine", "train-gold", "diagnose"};

typedef enum job_phase {
    PH_NONE = 0, /* queued, or loaded from disk (no run) */
    PH_SIM,      /* its simulations run on the pool */
    PH_TRAIN,    /* its training thread runs */
    PH_END       /* ended; the run is freed once no trace of it is in flight */
} job_phase;

/* A diagnose job's simulations during the diagnosis (an IC model's first
 * trace, test pairs and importance sampling; the predictive check): its
 * thread asks (SUB_ASKED, diag_sub_run), the loop runs them on the pool as
 * this job's traces (SUB_RUNNING: j->p, ops, job are the sub-job's) and
 * says when they are over (SUB_OVER, once no trace of them is on a
 * session: the thread then frees the policy and job).  Under mu. */
typedef enum sub_state { SUB_NONE = 0, SUB_ASKED, SUB_RUNNING, SUB_OVER } sub_state;

typedef struct djob {
    char id[16];
    char name[72];
    char sim_model[128];
    char **words;              /* the command, as submitted */
    size_t n_words;
    job_kind kind;
    ppxq_job_state state;
    char message[600];
    double submitted, started, finished;
    uint64_t done, total;
    char unit[16];
    double loss, eta;
    char dir[PATH_MAX];
    /* The run: the engine thread's (the training thread's in PH_TRAIN). */
    job_phase phase;
    atomic_int cancel;         /* requested (set under the table lock; read by the engine without it) */
    char **argv;               /* the parsers' copy: "ppxd", words..., NULL */
    size_t argc;
    cli c;
    int have_cli;
    cli_run *run;
    train_job *tj;
    ic_job *ij;
    char model_path[PATH_MAX + 80]; /* infer --method ic: DIR/ic/NAME.ppxm; train GOLD: DIR/datasets/NAME.ppxg */
    mine_cmd *mc;              /* mine: the parsed command, and its run */
    mine_task *mt;
    gold_train_cmd *gc;        /* train carl ... scandal */
    volatile int gold_stop;    /* its stop flag (gold_train_config.stop): set by cancel and stop */
    diag_job *dg;              /* diagnose: live test pairs on the pool (PH_SIM), then the rounds on a thread,
                                  which simulates through sub-jobs (sub_state) */
    policy *p;
    const job_ops *ops;
    void *job;
    size_t inflight;           /* traces of it on sessions */
    double sim_t0, last_log_read;
    /* Engine polls (engine_stats.polls) when a trace of it last came back,
     * and between then and the end of its simulations (-1: none yet): 0
     * when the end is seen on the loop's next turn, without sleeping in
     * between (written to job.txt as end_polls; tests/test_daemon.c). */
    uint64_t last_trace_polls;
    long long end_polls;
    char out_path[PATH_MAX], samples_path[PATH_MAX];
    pthread_t thread;
    int thread_started;
    atomic_int thread_done;
    /* diagnose: a sub-job (sub_state) */
    sub_state sub;
    policy *sub_p;
    const job_ops *sub_ops;
    void *sub_job;
    const observation *sub_obs;
    size_t sub_n_obs;
    int sub_rc;                /* 0: ran to its end; -1: cancelled, stopped */
    char sub_what[80];         /* the status message while it runs ("" none) */
    const observation *run_obs; /* engine thread only: the running sub-job's Observe values */
    size_t run_n_obs;
} djob;

typedef struct wait_entry {
    serve_pending *pending;
    char id[16];
    double deadline;           /* monotonic s */
} wait_entry;

typedef struct daemon_cfg {
    const char *data_dir;
    const char **serve;
    size_t n_serve;
    engine_config ecfg;
    engine_sim_options sims;
    const char *default_model; /* --sim-model: jobs without their own */
    int max_jobs;
    serve_config scfg;
    int quiet;
} daemon_cfg;

typedef struct mux_policy {
    policy base;
    struct ppxdaemon *d;
} mux_policy;

typedef struct ppxdaemon {
    daemon_cfg cfg;
    char data_dir[PATH_MAX];   /* its real path */
    char models_dir[PATH_MAX], jobs_dir[PATH_MAX], ic_dir[PATH_MAX], datasets_dir[PATH_MAX];
    serve_server *serve;
    engine *e;
    int wake_fd;
    pthread_mutex_t mu;        /* the table, waits and pool snapshot */
    pthread_cond_t cv;         /* a job changed, a wait arrived, stopping */
    djob **jobs;
    size_t n_jobs, cap_jobs;
    unsigned next_seq;
    wait_entry *waits;
    size_t n_waits, cap_waits;
    engine_pool pools[64];
    size_t n_pools;
    uint64_t pool_events;
    double pools_at;
    int stopping;              /* under mu */
    pthread_t waiter;
    int waiter_started;
    pthread_mutex_t parse_mu;  /* getopt is not thread-safe */
    /* engine thread only */
    mux_policy mux;
    djob **owner;              /* [slots]: whose trace each session runs */
    size_t n_slots;
    size_t rr;
    policy_request *scratch;
    size_t n_scratch;
    double last_tick;
    int dirty;                 /* a trace of a job that ended or was cancelled came back: tick at once */
    djob *active[256];         /* the jobs in PH_SIM, for mux_next (engine thread only) */
    size_t n_active;
} ppxdaemon;

/* Set wherever the eventfd is written: the next tick looks at every job. */
static atomic_int g_kick;

/* Set from signal handlers. */
static volatile sig_atomic_t g_sig_stop, g_sig_hup;
static int g_wake_fd = -1;

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void wake(int fd)
{
    uint64_t one = 1;
    atomic_store(&g_kick, 1);
    if (fd >= 0 && write(fd, &one, sizeof one) < 0) {
        /* A full eventfd counter still wakes the engine. */
    }
}

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        g_sig_hup = 1;
    else
        g_sig_stop = 1;
    wake(g_wake_fd);
}

static int job_ended(ppxq_job_state s) { return s == PPXQ_JOB_DONE || s == PPXQ_JOB_FAILED || s == PPXQ_JOB_CANCELLED; }

static const char *state_name(ppxq_job_state s)
{
    static const char *const names[] = {"QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED"};
    return (unsigned)s < PPXQ_JOB_STATE_COUNT ? names[s] : "FAILED";
}

/* dst = a "/" b; -1 when it does not fit (the data directory's path is
 * bounded at start, so this does not happen in practice). */
static int pjoin(char *dst, size_t n, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + 1 + lb + 1 > n) {
        if (n) dst[0] = 0;
        return -1;
    }
    memcpy(dst, a, la);
    dst[la] = '/';
    memcpy(dst + la + 1, b, lb + 1);
    return 0;
}

/* ---- persistence ----------------------------------------------------------------------------- */

/* One line of a value: newlines would end the line early. */
static void put_line(FILE *f, const char *key, const char *v)
{
    fprintf(f, "%s = ", key);
    for (const char *p = v; *p; p++) fputc(*p == '\n' || *p == '\r' ? ' ' : *p, f);
    fputc('\n', f);
}

/* Write dir/job.txt atomically (tmp + fsync + rename + fsync of the
 * directory): a crash leaves the old state or the new one.  Under mu. */
static int job_save(const djob *j)
{
    char tmp[PATH_MAX + 16], path[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s/job.txt.tmp", j->dir);
    snprintf(path, sizeof path, "%s/job.txt", j->dir);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "ppxd daemon: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    put_line(f, "id", j->id);
    put_line(f, "name", j->name);
    put_line(f, "kind", kind_names[j->kind]);
    put_line(f, "sim_model", j->sim_model);
    put_line(f, "state", state_name(j->state));
    put_line(f, "message", j->message);
    fprintf(f, "submitted = %.3f\nstarted = %.3f\nfinished = %.3f\n", j->submitted, j->started, j->finished);
    fprintf(f, "done = %llu\ntotal = %llu\n", (unsigned long long)j->done, (unsigned long long)j->total);
    put_line(f, "unit", j->unit);
    if (isfinite(j->loss)) fprintf(f, "loss = %.17g\n", j->loss);
    if (j->end_polls >= 0) fprintf(f, "end_polls = %lld\n", j->end_polls);
    for (size_t i = 0; i < j->n_words; i++) put_line(f, "word", j->words[i]);
    int rc = fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -1;
    if (fclose(f) != 0) rc = -1;
    if (rc == 0 && rename(tmp, path) < 0) rc = -1;
    if (rc == 0) {
        int dfd = open(j->dir, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    } else {
        fprintf(stderr, "ppxd daemon: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

static void free_words(char **w, size_t n)
{
    for (size_t i = 0; w && i < n; i++) free(w[i]);
    free(w);
}

static void job_free_run(djob *j)
{
    cli_run_destroy(&j->run);
    if (j->have_cli) cli_free(&j->c);
    j->have_cli = 0;
    train_job_destroy(&j->tj);
    ic_job_destroy(&j->ij);
    mine_task_destroy(&j->mt);
    mine_cmd_destroy(&j->mc);
    gold_train_cmd_destroy(&j->gc);
    diag_job_destroy(&j->dg);
    j->p = NULL;
    j->ops = NULL;
    j->job = NULL;
    free_words(j->argv, j->argc);
    j->argv = NULL;
    j->argc = 0;
}

static void job_destroy(djob *j)
{
    if (!j) return;
    job_free_run(j);
    free_words(j->words, j->n_words);
    free(j);
}

static int push_word(char ***v, size_t *n, const char *w)
{
    char **nv = realloc(*v, (*n + 2) * sizeof *nv);
    if (!nv) return -1;
    *v = nv;
    if (!(nv[*n] = strdup(w))) return -1;
    (*n)++;
    nv[*n] = NULL;
    return 0;
}

/* A job of an earlier daemon: its state file.  NULL when unreadable. */
static djob *job_load(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/job.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    djob *j = calloc(1, sizeof *j);
    if (!j) {
        fclose(f);
        return NULL;
    }
    j->loss = NAN;
    j->end_polls = -1;
    j->eta = -1;
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    char line[8192];
    int have_state = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *eq = strstr(line, " = ");
        if (!eq) continue;
        *eq = 0;
        const char *k = line, *v = eq + 3;
        if (!strcmp(k, "id")) snprintf(j->id, sizeof j->id, "%s", v);
        else if (!strcmp(k, "name")) snprintf(j->name, sizeof j->name, "%s", v);
        else if (!strcmp(k, "sim_model")) snprintf(j->sim_model, sizeof j->sim_model, "%s", v);
        else if (!strcmp(k, "message")) snprintf(j->message, sizeof j->message, "%s", v);
        else if (!strcmp(k, "unit")) snprintf(j->unit, sizeof j->unit, "%s", v);
        else if (!strcmp(k, "submitted")) j->submitted = strtod(v, NULL);
        else if (!strcmp(k, "started")) j->started = strtod(v, NULL);
        else if (!strcmp(k, "finished")) j->finished = strtod(v, NULL);
        else if (!strcmp(k, "done")) j->done = strtoull(v, NULL, 10);
        else if (!strcmp(k, "total")) j->total = strtoull(v, NULL, 10);
        else if (!strcmp(k, "loss")) j->loss = strtod(v, NULL);
        else if (!strcmp(k, "word")) {
            if (push_word(&j->words, &j->n_words, v) < 0) break;
        } else if (!strcmp(k, "kind")) {
            for (int i = 0; i < JK_COUNT; i++)
                if (!strcmp(v, kind_names[i])) j->kind = (job_kind)i;
        } else if (!strcmp(k, "state")) {
            have_state = 1;
            j->state = PPXQ_JOB_FAILED;
            for (int i = 0; i < PPXQ_JOB_STATE_COUNT; i++)
                if (!strcmp(v, state_name((ppxq_job_state)i))) j->state = (ppxq_job_state)i;
        }
    }
    fclose(f);
    if (!j->id[0] || !have_state) {
        job_destroy(j);
        return NULL;
    }
    j->phase = PH_END;
    return j;
}

/* ---- the job table ------------------------------------------------------------------------------ */

static djob *find_job(ppxdaemon *d, const char *id)
{
    for (size_t i = 0; i < d->n_jobs; i++)
        if (strcmp(d->jobs[i]->id, id) == 0) return d->jobs[i];
    return NULL;
}

static int add_job(ppxdaemon *d, djob *j)
{
    if (d->n_jobs == d->cap_jobs) {
        size_t cap = d->cap_jobs ? 2 * d->cap_jobs : 32;
        djob **nj = realloc(d->jobs, cap * sizeof *nj);
        if (!nj) return -1;
        d->jobs = nj;
        d->cap_jobs = cap;
    }
    d->jobs[d->n_jobs++] = j;
    return 0;
}

static int cmp_jobs(const void *a, const void *b)
{
    const djob *x = *(djob *const *)a, *y = *(djob *const *)b;
    unsigned long nx = strtoul(x->id + 1, NULL, 10), ny = strtoul(y->id + 1, NULL, 10);
    return nx < ny ? -1 : nx > ny;
}

/* The earlier jobs of the data directory; those that were queued or running
 * failed with the daemon that ran them. */
static void load_jobs(ppxdaemon *d)
{
    DIR *dh = opendir(d->jobs_dir);
    if (!dh) return;
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (de->d_name[0] != 'j') continue;
        char dir[PATH_MAX];
        if (pjoin(dir, sizeof dir, d->jobs_dir, de->d_name) < 0) continue;
        unsigned long seq = strtoul(de->d_name + 1, NULL, 10);
        if (seq >= d->next_seq) d->next_seq = (unsigned)seq + 1;
        djob *j = job_load(dir);
        if (!j) continue;
        if (!job_ended(j->state)) {
            j->state = PPXQ_JOB_FAILED;
            snprintf(j->message, sizeof j->message, "daemon restarted");
            if (!j->finished) j->finished = now_unix();
            job_save(j);
        }
        if (add_job(d, j) < 0) job_destroy(j);
    }
    closedir(dh);
    if (d->n_jobs) qsort(d->jobs, d->n_jobs, sizeof *d->jobs, cmp_jobs);
    if (d->n_jobs) fprintf(stderr, "ppxd daemon: %zu earlier jobs in %s\n", d->n_jobs, d->jobs_dir);
}

/* Serve every DIR/models/NAME.ppxm (NPE/NRE) and NAME.ppxr (gold: LogRatio,
 * Score) as NAME (at start and on SIGHUP); serve_load tells them apart by
 * their magic. */
static void load_models(ppxdaemon *d)
{
    DIR *dh = opendir(d->models_dir);
    if (!dh) return;
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(dh))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || de->d_name[0] == '.' ||
            (strcmp(de->d_name + len - 5, ".ppxm") != 0 && strcmp(de->d_name + len - 5, ".ppxr") != 0))
            continue;
        char path[PATH_MAX], name[256], err[300];
        if (pjoin(path, sizeof path, d->models_dir, de->d_name) < 0) continue;
        snprintf(name, sizeof name, "%.*s", (int)(len - 5), de->d_name);
        if (serve_load(d->serve, name, path, err, sizeof err) < 0)
            fprintf(stderr, "ppxd daemon: cannot serve %s: %s\n", path, err);
        else
            n++;
    }
    closedir(dh);
    fprintf(stderr, "ppxd daemon: serving %zu model%s from %s\n", n, n == 1 ? "" : "s", d->models_dir);
}

/* ---- JobInfo ------------------------------------------------------------------------------------- */

#define MAX_OUTPUTS 16
static const char *const outputs_of[JK_COUNT][MAX_OUTPUTS] = {
    {"traces.ppxt", NULL},
    {"summary.txt", "samples.npy"},
    {"model.ppxm", "model.ppxm.log.csv"},
    {"model.ppxm", NULL},
    /* mine: the gold file (also DIR/datasets/NAME.ppxg) and its arrays (ppxd export) */
    {"gold.ppxg", "gold_y.npy", "gold_theta0.npy", "gold_theta1.npy", "gold_x.npy", "gold_log_r.npy", "gold_t.npy"},
    {"model.ppxr", NULL},
    /* diagnose (ppxd diagnose -o DIR's files) */
    {"report.json", "summary.txt", "ranks.npy", "hpd.npy", "tarp.npy", "coverage.csv", "test_theta.npy", "test_x.npy",
     "ppc_theta.npy", "ppc_x.npy", "ppc.csv", "x_o.npy", "ess.npy", "reference.npy", "truth.npy"},
};

/* Outputs that exist now (a running job's may be partial). */
static uint32_t job_outputs(const djob *j, const char **out)
{
    uint32_t n = 0;
    for (int i = 0; i < MAX_OUTPUTS; i++) {
        const char *o = outputs_of[j->kind][i];
        if (!o) continue;
        char path[PATH_MAX + 64];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", j->dir, o);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) out[n++] = o;
    }
    return n;
}

static void read_train_log(djob *j);

/* (A training job's progress is read from its log here: the engine's loop
 * may sleep while a job trains.) */
static void job_progress(djob *j);

static void fill_info(djob *j, ppxq_job_info *ji, const char **outs)
{
    if (j->phase == PH_TRAIN && j->tj) read_train_log(j);
    if (j->phase == PH_TRAIN && j->dg) job_progress(j); /* its rounds (atomics) */
    memset(ji, 0, sizeof *ji);
    ji->id = j->id;
    ji->name = j->name;
    ji->command = (const char *const *)j->words;
    ji->n_command = (uint32_t)j->n_words;
    ji->sim_model = j->sim_model;
    ji->state = j->state;
    ji->message = j->message;
    ji->submitted = j->submitted;
    ji->started = j->started;
    ji->finished = j->finished;
    ji->done = j->done;
    ji->total = j->total;
    ji->unit = j->unit;
    ji->loss = j->loss;
    ji->eta_seconds = j->eta;
    ji->n_outputs = job_outputs(j, outs);
    ji->outputs = outs;
}

/* A JobReply of jobs js[n] (under mu).  NULL with code/msg on failure. */
static const uint8_t *encode_jobs(ppxq_encoder *enc, uint64_t request_id, djob *const *js, size_t n, size_t *len,
                                  ppxq_code *code, char *msg, size_t msg_len)
{
    ppxq_job_info *infos = calloc(n ? n : 1, sizeof *infos);
    const char *(*outs)[MAX_OUTPUTS] = calloc(n ? n : 1, sizeof *outs);
    if (!infos || !outs) {
        free(infos);
        free(outs);
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) fill_info(js[i], &infos[i], outs[i]);
    ppxq_msg rp;
    ppxq_msg_init(&rp);
    rp.type = PPXQ_JOB_REPLY;
    rp.request_id = request_id;
    rp.jobs = infos;
    rp.n_jobs = (uint32_t)n;
    ppxq_error perr;
    const uint8_t *out = ppxq_encode(enc, &rp, len, &perr);
    free(infos);
    free(outs);
    if (!out) {
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "cannot encode the reply: %s", perr.message);
    }
    return out;
}

/* ---- submitting ------------------------------------------------------------------------------------ */

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 1;
}

/* Engine options of a job's command line would be ignored (the pool's are
 * the daemon's): refuse them rather than surprise. */
static int engine_options_changed(const engine_config *c)
{
    return engine_timeouts_changed(c) || c->limits.max_message_bytes != ppx_limits_default().max_message_bytes;
}

/* A job by id, else the latest of that name (under mu). */
static djob *find_job_named(ppxdaemon *d, const char *s)
{
    djob *j = find_job(d, s);
    for (size_t i = d->n_jobs; !j && i-- > 0;)
        if (!strcmp(d->jobs[i]->name, s)) j = d->jobs[i];
    return j;
}

/* A file a job reads, as its client names it, into the real path out:
 *   JOB/OUTPUT  an output of a finished job (its id, or its name: the latest
 *               job of that name), as ppxctl job fetch names it;
 *   NAME        a model (model = 1): DIR/models/NAME.ppxm or NAME.ppxr (the
 *               served models; NAME.ppxm and NAME.ppxr too); any other file:
 *               DIR/datasets/NAME.
 * No paths: both parts are name_ok (no '/', no "..", no leading '.'), and the
 * real path (symbolic links followed) must be a regular file inside the data
 * directory, so that a client reads nothing else of the daemon's host.  0,
 * or -1 with the reason. */
static int resolve_input(ppxdaemon *d, const char *what, const char *arg, int model, char *out, size_t n, int *ic,
                         char *msg, size_t msg_len)
{
    *ic = 0; /* an IC network: of DIR/ic, or a train-ic job's output */
    char path[PATH_MAX + 200], real[PATH_MAX], jname[80];
    const char *slash = strchr(arg, '/');
    struct stat st;
    size_t l = strlen(arg);
    int ext = l > 5 && (!strcmp(arg + l - 5, ".ppxm") || !strcmp(arg + l - 5, ".ppxr"));
    if (slash) {
        size_t jl = (size_t)(slash - arg);
        if (jl >= sizeof jname) goto bad;
        memcpy(jname, arg, jl);
        jname[jl] = 0;
        if (!name_ok(jname) || !name_ok(slash + 1)) goto bad;
        if (model && !ext) {
            snprintf(msg, msg_len, "%s %.80s: not a model file (JOB/model.ppxm or JOB/model.ppxr)", what, arg);
            return -1;
        }
        pthread_mutex_lock(&d->mu);
        djob *j = find_job_named(d, jname);
        int done = j && j->state == PPXQ_JOB_DONE, found = 0;
        *ic = j && j->kind == JK_TRAIN_IC;
        const char *outs[MAX_OUTPUTS];
        uint32_t k = done ? job_outputs(j, outs) : 0;
        for (uint32_t i = 0; i < k && !found; i++) found = !strcmp(outs[i], slash + 1);
        if (found) snprintf(path, sizeof path, "%s/%s", j->dir, slash + 1);
        pthread_mutex_unlock(&d->mu);
        if (!found) {
            snprintf(msg, msg_len, !j ? "%s %.80s: no job '%s' (ppxctl jobs lists them)"
                                   : !done ? "%s %.80s: job '%s' has not finished (DONE)"
                                           : "%s %.80s: job '%s' has no such output (ppxctl job status ID lists them)",
                     what, arg, jname);
            return -1;
        }
    } else {
        if (!name_ok(arg)) goto bad;
        if (!model)
            snprintf(path, sizeof path, "%s/%s", d->datasets_dir, arg);
        else if (ext)
            snprintf(path, sizeof path, "%s/%s", d->models_dir, arg);
        else {
            snprintf(path, sizeof path, "%s/%s.ppxm", d->models_dir, arg);
            if (stat(path, &st) < 0) snprintf(path, sizeof path, "%s/%s.ppxr", d->models_dir, arg);
        }
        /* Not a served model: an IC network of a train-ic job (DIR/ic/NAME.ppxm). */
        if (model && stat(path, &st) < 0) {
            if (!ext || !strcmp(arg + l - 5, ".ppxm"))
                snprintf(path, sizeof path, ext ? "%s/%s" : "%s/%s.ppxm", d->ic_dir, arg);
            *ic = 1;
            if (stat(path, &st) < 0) {
                snprintf(msg, msg_len, "%s %.80s: no such model in the daemon's data directory (ppxctl models lists "
                                       "them; an IC network of DIR/ic; or JOB/model.ppxm of a finished train job)",
                         what, arg);
                return -1;
            }
        }
    }
    size_t rl = strlen(d->data_dir);
    if (!realpath(path, real) || stat(real, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(msg, msg_len, "%s %.80s: no such file in the daemon's data directory (%s)", what, arg,
                 slash ? "a job's output" : model ? "DIR/models" : "DIR/datasets");
        return -1;
    }
    if (strncmp(real, d->data_dir, rl) != 0 || real[rl] != '/') {
        snprintf(msg, msg_len, "%s %.80s: the file is outside the daemon's data directory", what, arg);
        return -1;
    }
    snprintf(out, n, "%s", real);
    return 0;
bad:
    snprintf(msg, msg_len, "%s %.80s: name a file of the daemon's data directory, not a path: %s, or JOB/OUTPUT (an "
                           "output of a finished job)", what, arg, model ? "NAME (DIR/models/NAME.ppxm|.ppxr)"
                                                                        : "NAME (DIR/datasets/NAME)");
    return -1;
}

/* A diagnose job: its options (diag_job_daemon_check) and the files it names,
 * resolved in the data directory.  0, or -1 with the reason. */
static int diag_inputs(ppxdaemon *d, djob *j, char *msg, size_t msg_len)
{
    static const char *const what[DIAG_FILE_COUNT] = {"--model", "--data", "--data", "--obs-file", "--reference",
                                                      "--truth"};
    if (diag_job_daemon_check(j->dg, msg, msg_len) < 0) return -1;
    for (int f = 0; f < DIAG_FILE_COUNT; f++) {
        const char *arg = diag_job_file(j->dg, (diag_file)f);
        char path[PATH_MAX];
        int ic;
        if (!arg) continue;
        if (resolve_input(d, what[f], arg, f == DIAG_FILE_MODEL, path, sizeof path, &ic, msg, msg_len) < 0) return -1;
        if (ic && !diag_job_live(j->dg)) {
            snprintf(msg, msg_len, "--model %.80s is an IC network: its posterior is importance sampling through the "
                                   "pool's simulators, and a daemon job's IC rounds take live test pairs: give -n "
                                   "ROUNDS, not --data", arg);
            return -1;
        }
        if (diag_job_set_file(j->dg, (diag_file)f, path) < 0) {
            snprintf(msg, msg_len, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Parse j->words into the job's run description.  0, or -1 with the reason. */
static int job_parse(ppxdaemon *d, djob *j, char *msg, size_t msg_len)
{
    const char *cmd = j->words[0];
    if (!strcmp(cmd, "simulate")) j->kind = JK_SIMULATE;
    else if (!strcmp(cmd, "infer")) j->kind = JK_INFER;
    else if (!strcmp(cmd, "train") && j->n_words > 1 && (!strcmp(j->words[1], "npe") || !strcmp(j->words[1], "nre")))
        j->kind = JK_TRAIN;
    else if (!strcmp(cmd, "train") && j->n_words > 1 && !strcmp(j->words[1], "ic"))
        j->kind = JK_TRAIN_IC;
    else if (!strcmp(cmd, "train") && j->n_words > 1 && gold_cmd_is_method(j->words[1]))
        j->kind = JK_GOLD;
    else if (!strcmp(cmd, "mine"))
        j->kind = JK_MINE;
    else if (!strcmp(cmd, "diagnose"))
        j->kind = JK_DIAGNOSE;
    else if (!strcmp(cmd, "train") && j->n_words > 1) {
        snprintf(msg, msg_len, "'train %.64s' is not a daemon job (train npe|nre|ic, or a gold method: carl rolr "
                               "rascal cascal alice alices sally nde scandal)", j->words[1]);
        return -1;
    } else {
        snprintf(msg, msg_len, "'%s' is not a job: jobs are simulate, infer, mine, diagnose and train "
                               "npe|nre|ic|GOLD-METHOD", cmd);
        return -1;
    }
    for (size_t i = 0; i < j->n_words; i++)
        if (!strncmp(j->words[i], "--observe-f", 11)) {
            snprintf(msg, msg_len, "--observe-file reads a file on the daemon's host: give --observe NAME=V,...");
            return -1;
        }
    /* The parsers' own argv: they permute it and borrow its strings. */
    if (push_word(&j->argv, &j->argc, "ppxd") < 0) return -1;
    for (size_t i = 0; i < j->n_words; i++)
        if (push_word(&j->argv, &j->argc, j->words[i]) < 0) return -1;
    pthread_mutex_lock(&d->parse_mu);
    cli_capture(msg, msg_len);
    int rc = 0;
    if (j->kind == JK_TRAIN) {
        int prc;
        j->tj = train_job_parse((int)j->argc - 1, j->argv + 1, 1, &prc);
        if (!j->tj) rc = -1;
    } else if (j->kind == JK_TRAIN_IC) {
        int prc;
        j->ij = ic_job_parse((int)j->argc - 2, j->argv + 2, &prc);
        if (!j->ij) rc = -1;
    } else if (j->kind == JK_MINE) {
        if (!(j->mc = mine_cmd_parse((int)j->argc - 1, j->argv + 1))) rc = -1;
    } else if (j->kind == JK_GOLD) {
        if (!(j->gc = gold_train_cmd_parse((int)j->argc - 1, j->argv + 1))) rc = -1;
    } else if (j->kind == JK_DIAGNOSE) {
        int prc;
        if (!(j->dg = diag_job_parse((int)j->argc - 1, j->argv + 1, 1, &prc))) rc = -1;
    } else {
        cli_init(&j->c, j->argv[1]);
        j->have_cli = 1;
        j->c.job = 1;
        if (cli_parse(&j->c, (int)j->argc, j->argv) != 0) rc = -1;
    }
    cli_capture(NULL, 0);
    pthread_mutex_unlock(&d->parse_mu);
    if (rc < 0) {
        if (!msg[0]) snprintf(msg, msg_len, "cannot parse the command");
        return -1;
    }
    if (j->kind == JK_TRAIN) return train_job_daemon_check(j->tj, msg, msg_len);
    if (j->kind == JK_TRAIN_IC) return ic_job_daemon_check(j->ij, msg, msg_len);
    if (j->kind == JK_MINE) return 0;
    if (j->kind == JK_DIAGNOSE) return diag_inputs(d, j, msg, msg_len);
    if (j->kind == JK_GOLD) {
        /* --data NAME: a data set of DIR/datasets (a finished mine job's name). */
        const char *data = gold_train_cmd_data(j->gc);
        struct stat st;
        char file[96];
        snprintf(file, sizeof file, "%.64s.ppxg", data);
        if (!name_ok(data) || pjoin(j->model_path, sizeof j->model_path, d->datasets_dir, file) < 0 ||
            stat(j->model_path, &st) < 0) {
            snprintf(msg, msg_len, "--data %.64s: no such data set (the name of a finished mine job)", data);
            return -1;
        }
        return 0;
    }
    cli *c = &j->c;
    const engine_sim_options *so = &c->sims;
    if (engine_sim_options_given(so)) {
        snprintf(msg, msg_len, ENGINE_JOB_SIM_OPTIONS_REFUSED);
        return -1;
    }
    if (engine_options_changed(&c->ecfg)) {
        snprintf(msg, msg_len, "--timeout-ms, --start-timeout-ms, --max-failures and --max-message-bytes are the "
                               "daemon's options, not a job's");
        return -1;
    }
    if (c->out || c->samples_out) {
        snprintf(msg, msg_len, "-o and --samples-out are not for jobs: outputs go to the job's directory (ppxctl job "
                               "fetch ID)");
        return -1;
    }
    if (c->file || c->names) {
        snprintf(msg, msg_len, "unexpected argument for %s", cmd);
        return -1;
    }
    if (c->method == METHOD_IC) {
        /* --model names a network trained by a `train ic` job: DIR/ic/NAME.ppxm. */
        struct stat st;
        char file[96];
        snprintf(file, sizeof file, "%.64s.ppxm", c->model);
        if (!name_ok(c->model) || pjoin(j->model_path, sizeof j->model_path, d->ic_dir, file) < 0 ||
            stat(j->model_path, &st) < 0) {
            snprintf(msg, msg_len, "infer --method ic --model NAME: no IC network '%.64s' (the name of a finished "
                                   "train ic job)", c->model);
            return -1;
        }
        c->model = j->model_path;
    }
    if (!c->n) {
        snprintf(msg, msg_len, "%s needs -n N", cmd);
        return -1;
    }
    return 0;
}

static const uint8_t *do_submit(ppxdaemon *d, serve_call *call, const ppxq_msg *rq, ppxq_encoder *enc, size_t *len,
                                ppxq_code *code, char *msg, size_t msg_len)
{
    *code = PPXQ_BAD_REQUEST;
    if (!serve_call_admin(call)) {
        *code = PPXQ_NOT_ALLOWED;
        snprintf(msg, msg_len, "submitting a job needs admin rights (a --curve-admin key, or plain ipc)");
        return NULL;
    }
    if (rq->n_command == 0) {
        snprintf(msg, msg_len, "an empty command: give the words after \"ppxd\", e.g. simulate -n 1000");
        return NULL;
    }
    if (rq->n_command > 512) {
        snprintf(msg, msg_len, "a command of %u words: at most 512", rq->n_command);
        return NULL;
    }
    if (rq->name[0] && !name_ok(rq->name)) {
        snprintf(msg, msg_len, "job name '%.80s': use 1 to 64 letters, digits, '_', '-' or '.', not starting with "
                               "'.' or '-'", rq->name);
        return NULL;
    }
    if (strlen(rq->sim_model) >= 128) {
        snprintf(msg, msg_len, "a simulator model name of at most 127 bytes");
        return NULL;
    }
    djob *j = calloc(1, sizeof *j);
    if (!j) {
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "out of memory");
        return NULL;
    }
    j->loss = NAN;
    j->end_polls = -1;
    j->eta = -1;
    for (uint32_t i = 0; i < rq->n_command; i++) {
        if (strchr(rq->command[i], '\n') || strlen(rq->command[i]) > 4096) {
            snprintf(msg, msg_len, "command word %u has a newline or is over 4096 bytes", i + 1);
            job_destroy(j);
            return NULL;
        }
        if (push_word(&j->words, &j->n_words, rq->command[i]) < 0) {
            job_destroy(j);
            *code = PPXQ_INTERNAL;
            snprintf(msg, msg_len, "out of memory");
            return NULL;
        }
    }
    snprintf(j->sim_model, sizeof j->sim_model, "%s", rq->sim_model);
    if (job_parse(d, j, msg, msg_len) < 0) {
        job_destroy(j);
        return NULL;
    }
    pthread_mutex_lock(&d->mu);
    if (d->stopping) {
        pthread_mutex_unlock(&d->mu);
        job_destroy(j);
        snprintf(msg, msg_len, "the daemon is stopping");
        return NULL;
    }
    snprintf(j->id, sizeof j->id, "j%u", d->next_seq++);
    snprintf(j->name, sizeof j->name, "%s", rq->name[0] ? rq->name : j->id);
    pjoin(j->dir, sizeof j->dir, d->jobs_dir, j->id);
    snprintf(j->unit, sizeof j->unit, "%s",
             j->kind == JK_INFER && (j->c.method == METHOD_LMH || j->c.method == METHOD_RMH) ? "steps"
             : j->kind == JK_MINE                                                           ? "rows"
             : j->kind == JK_GOLD                                                           ? "epochs"
             : j->kind == JK_DIAGNOSE && !diag_job_live(j->dg)                              ? "rounds"
                                                                                            : "traces");
    j->submitted = now_unix();
    j->state = PPXQ_JOB_QUEUED;
    const uint8_t *out = NULL;
    if (mkdir(j->dir, 0755) < 0 || job_save(j) < 0) {
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "cannot create %s: %s", j->dir, strerror(errno));
    } else if (add_job(d, j) < 0) {
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "out of memory");
    } else {
        int two = !strcmp(j->words[0], "train") && j->n_words > 1;
        fprintf(stderr, "ppxd daemon: job %s (%s) queued: %s%s%s\n", j->id, j->name, j->words[0], two ? " " : "",
                two ? j->words[1] : "");
        out = encode_jobs(enc, rq->request_id, &j, 1, len, code, msg, msg_len);
        j = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    job_destroy(j);
    wake(d->wake_fd);
    return out;
}

/* ---- the other requests ---------------------------------------------------------------------------- */

static const uint8_t *unknown_job(const char *id, ppxq_code *code, char *msg, size_t msg_len)
{
    *code = PPXQ_UNKNOWN_JOB;
    snprintf(msg, msg_len, "no job '%.64s' (ppxctl jobs lists them)", id);
    return NULL;
}

static const uint8_t *do_fetch(ppxdaemon *d, const ppxq_msg *rq, ppxq_encoder *enc, size_t *len, ppxq_code *code,
                               char *msg, size_t msg_len)
{
    char path[PATH_MAX + 64];
    pthread_mutex_lock(&d->mu);
    djob *j = find_job(d, rq->job_id);
    if (!j) {
        pthread_mutex_unlock(&d->mu);
        return unknown_job(rq->job_id, code, msg, msg_len);
    }
    const char *outs[MAX_OUTPUTS];
    uint32_t n = job_outputs(j, outs), k = 0;
    while (k < n && strcmp(outs[k], rq->output) != 0) k++;
    if (k == n) {
        pthread_mutex_unlock(&d->mu);
        *code = PPXQ_BAD_REQUEST;
        snprintf(msg, msg_len, "job %s has no output '%.80s'%s", rq->job_id, rq->output,
                 n ? " (ppxctl job status ID lists them)" : " (yet)");
        return NULL;
    }
    snprintf(path, sizeof path, "%s/%s", j->dir, outs[k]);
    pthread_mutex_unlock(&d->mu);
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "cannot read the output: %s", strerror(errno));
        return NULL;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (rq->offset > size) {
        close(fd);
        *code = PPXQ_BAD_REQUEST;
        snprintf(msg, msg_len, "offset %llu is past the end (%llu bytes)", (unsigned long long)rq->offset,
                 (unsigned long long)size);
        return NULL;
    }
    size_t chunk = rq->max_bytes ? rq->max_bytes : DAEMON_MAX_CHUNK;
    if (chunk > DAEMON_MAX_CHUNK) chunk = DAEMON_MAX_CHUNK;
    if (d->cfg.scfg.max_reply_bytes && chunk > d->cfg.scfg.max_reply_bytes) chunk = d->cfg.scfg.max_reply_bytes;
    if (chunk > size - rq->offset) chunk = (size_t)(size - rq->offset);
    uint8_t *buf = malloc(chunk ? chunk : 1);
    size_t got = 0;
    while (buf && got < chunk) {
        ssize_t r = pread(fd, buf + got, chunk - got, (off_t)(rq->offset + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf) {
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "out of memory");
        return NULL;
    }
    ppxq_msg rp;
    ppxq_msg_init(&rp);
    rp.type = PPXQ_JOB_FETCH_REPLY;
    rp.request_id = rq->request_id;
    rp.output = rq->output;
    rp.size = size;
    rp.offset = rq->offset;
    rp.data = buf;
    rp.n_data = got;
    ppxq_error perr;
    const uint8_t *out = ppxq_encode(enc, &rp, len, &perr);
    free(buf);
    if (!out) {
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "cannot encode the reply: %s", perr.message);
    }
    return out;
}

static const uint8_t *do_sims(ppxdaemon *d, const ppxq_msg *rq, ppxq_encoder *enc, size_t *len, ppxq_code *code,
                              char *msg, size_t msg_len)
{
    ppxq_sim_pool pools[64];
    pthread_mutex_lock(&d->mu);
    size_t n = d->n_pools;
    for (size_t i = 0; i < n; i++) {
        pools[i].model = d->pools[i].model;
        pools[i].connected = d->pools[i].connected;
        pools[i].busy = d->pools[i].busy;
        pools[i].joined = d->pools[i].joined;
        pools[i].left = d->pools[i].left;
    }
    ppxq_msg rp;
    ppxq_msg_init(&rp);
    rp.type = PPXQ_SIM_LIST_REPLY;
    rp.request_id = rq->request_id;
    rp.pools = pools;
    rp.n_pools = (uint32_t)n;
    ppxq_error perr;
    const uint8_t *out = ppxq_encode(enc, &rp, len, &perr);
    pthread_mutex_unlock(&d->mu);
    if (!out) {
        *code = PPXQ_INTERNAL;
        snprintf(msg, msg_len, "cannot encode the reply: %s", perr.message);
    }
    return out;
}

/* serve_config.on_request: in a serving worker, never for long. */
static const uint8_t *on_request(void *ctx, serve_call *call, const ppxq_msg *rq, ppxq_encoder *enc, size_t *len,
                                 ppxq_code *code, char *msg, size_t msg_len)
{
    ppxdaemon *d = ctx;
    switch (rq->type) {
    case PPXQ_JOB_SUBMIT: return do_submit(d, call, rq, enc, len, code, msg, msg_len);
    case PPXQ_JOB_FETCH: return do_fetch(d, rq, enc, len, code, msg, msg_len);
    case PPXQ_SIM_LIST: return do_sims(d, rq, enc, len, code, msg, msg_len);
    case PPXQ_JOB_LIST: {
        pthread_mutex_lock(&d->mu);
        const uint8_t *out = encode_jobs(enc, rq->request_id, d->jobs, d->n_jobs, len, code, msg, msg_len);
        pthread_mutex_unlock(&d->mu);
        return out;
    }
    case PPXQ_JOB_STATUS:
    case PPXQ_JOB_CANCEL:
    case PPXQ_JOB_WAIT: {
        if (rq->type == PPXQ_JOB_CANCEL && !serve_call_admin(call)) {
            *code = PPXQ_NOT_ALLOWED;
            snprintf(msg, msg_len, "cancelling a job needs admin rights (a --curve-admin key, or plain ipc)");
            return NULL;
        }
        const uint8_t *out = NULL;
        int woke = 0;
        pthread_mutex_lock(&d->mu);
        djob *j = find_job(d, rq->job_id);
        if (!j) {
            pthread_mutex_unlock(&d->mu);
            return unknown_job(rq->job_id, code, msg, msg_len);
        }
        if (rq->type == PPXQ_JOB_CANCEL && !job_ended(j->state)) {
            if (j->phase == PH_NONE) {
                j->state = PPXQ_JOB_CANCELLED;
                j->finished = now_unix();
                snprintf(j->message, sizeof j->message, "cancelled before it started");
                job_save(j);
                pthread_cond_broadcast(&d->cv);
            } else {
                j->cancel = 1;
                if (j->tj) train_job_stop(j->tj);
                if (j->ij) ic_job_stop(j->ij);
                if (j->gc) j->gold_stop = 1;
                if (j->dg) diag_job_stop(j->dg);
                woke = 1;
            }
            fprintf(stderr, "ppxd daemon: job %s: cancel requested\n", j->id);
        }
        double max_s = rq->type == PPXQ_JOB_WAIT ? rq->max_seconds : 0;
        if (rq->type == PPXQ_JOB_WAIT && !job_ended(j->state) && max_s > 0 && !d->stopping) {
            serve_pending *p = NULL;
            if (d->n_waits == d->cap_waits) {
                size_t cap = d->cap_waits ? 2 * d->cap_waits : 16;
                wait_entry *nw = realloc(d->waits, cap * sizeof *nw);
                if (nw) {
                    d->waits = nw;
                    d->cap_waits = cap;
                }
            }
            if (d->n_waits < d->cap_waits && (p = serve_call_defer(call))) {
                wait_entry *w = &d->waits[d->n_waits++];
                w->pending = p;
                snprintf(w->id, sizeof w->id, "%s", j->id);
                w->deadline = now_mono() + (max_s < DAEMON_MAX_WAIT_S ? max_s : DAEMON_MAX_WAIT_S);
                pthread_cond_broadcast(&d->cv);
                pthread_mutex_unlock(&d->mu);
                *code = PPXQ_OK;
                return NULL; /* deferred */
            }
        }
        out = encode_jobs(enc, rq->request_id, &j, 1, len, code, msg, msg_len);
        pthread_mutex_unlock(&d->mu);
        if (woke) wake(d->wake_fd);
        return out;
    }
    default:
        *code = PPXQ_BAD_REQUEST;
        snprintf(msg, msg_len, "%s is not a job request", ppxq_type_name(rq->type));
        return NULL;
    }
}

/* ---- the waiter ------------------------------------------------------------------------------------- */

static void *waiter_main(void *arg)
{
    ppxdaemon *d = arg;
    ppxq_encoder *enc = ppxq_encoder_new();
    pthread_mutex_lock(&d->mu);
    for (;;) {
        double now = now_mono(), next = now + 1.0;
        for (size_t i = 0; i < d->n_waits;) {
            wait_entry *w = &d->waits[i];
            djob *j = find_job(d, w->id);
            if (!j || job_ended(j->state) || now >= w->deadline || d->stopping) {
                size_t len = 0;
                ppxq_code code = PPXQ_OK;
                char msg[200];
                const uint8_t *b = NULL;
                uint64_t rid = serve_pending_request_id(w->pending);
                if (enc && j) b = encode_jobs(enc, rid, &j, 1, &len, &code, msg, sizeof msg);
                if (enc && !b) b = ppxq_encode_error(enc, rid, j ? code : PPXQ_UNKNOWN_JOB, j ? msg : "job gone", &len);
                if (b)
                    serve_pending_reply(d->serve, &w->pending, b, len);
                else
                    serve_pending_free(&w->pending);
                d->waits[i] = d->waits[--d->n_waits];
                continue;
            }
            if (w->deadline < next) next = w->deadline;
            i++;
        }
        if (d->stopping && d->n_waits == 0) break;
        if (d->n_waits == 0) {
            /* Nothing owed: sleep until a wait arrives (or the daemon stops),
             * not in 1 s ticks, so that an idle daemon stays asleep. */
            pthread_cond_wait(&d->cv, &d->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double dt = next - now_mono();
        if (dt < 0.001) dt = 0.001;
        long long ns = (long long)ts.tv_nsec + (long long)(dt * 1e9);
        ts.tv_sec += (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    ppxq_encoder_destroy(&enc);
    return NULL;
}

/* ---- the multiplexing job and policy (engine thread) ---------------------------------------------- */

static const char *wanted_model(const ppxdaemon *d, const djob *j)
{
    if (j->sim_model[0]) return j->sim_model;
    return d->cfg.default_model;
}

static int model_matches(const ppxdaemon *d, const djob *j, const char *model)
{
    const char *want = wanted_model(d, j);
    return !want || !want[0] || strcmp(want, model) == 0;
}

/* Called for every idle simulator on every turn of the loop: it looks only
 * at the running jobs (d->active, the engine thread's own list), no lock. */
static int mux_next(void *vd, size_t slot, uint64_t *index)
{
    ppxdaemon *d = vd;
    const char *model = engine_slot_model(d->e, slot);
    if (!model || !d->n_active) return 0;
    /* Candidates: running jobs of this simulator model, fewest traces in
     * flight first, round robin among equals. */
    djob *cand[64];
    size_t nc = 0;
    for (size_t k = 0; k < d->n_active && nc < 64; k++) {
        djob *j = d->active[(k + d->rr) % d->n_active];
        if (!atomic_load(&j->cancel) && !j->ops->done(j->job) && model_matches(d, j, model)) cand[nc++] = j;
    }
    for (size_t a = 1; a < nc; a++)
        for (size_t b = a; b > 0 && cand[b]->inflight < cand[b - 1]->inflight; b--) {
            djob *t = cand[b];
            cand[b] = cand[b - 1];
            cand[b - 1] = t;
        }
    for (size_t k = 0; k < nc; k++) {
        djob *j = cand[k];
        if (j->ops->next(j->job, slot, index)) {
            d->owner[slot] = j;
            j->inflight++;
            d->rr++;
            return 1;
        }
    }
    return 0;
}

static int mux_complete(void *vd, size_t slot, uint64_t index, trace *t)
{
    ppxdaemon *d = vd;
    djob *j = d->owner[slot];
    d->owner[slot] = NULL;
    if (!j) return 1;
    j->inflight--;
    j->last_trace_polls = engine_get_stats(d->e)->polls;
    pthread_mutex_lock(&d->mu);
    int wanted = (j->phase == PH_SIM || j->sub == SUB_RUNNING) && !j->cancel;
    pthread_mutex_unlock(&d->mu);
    if (!wanted) {
        d->dirty |= j->inflight == 0; /* its run can be freed */
        return 1;                     /* no longer needed */
    }
    return j->ops->complete(j->job, slot, index, t);
}

static void mux_discard(void *vd, size_t slot, uint64_t index, discard_reason why)
{
    ppxdaemon *d = vd;
    djob *j = d->owner[slot];
    d->owner[slot] = NULL;
    if (!j) return;
    j->inflight--;
    j->last_trace_polls = engine_get_stats(d->e)->polls;
    pthread_mutex_lock(&d->mu);
    int wanted = (j->phase == PH_SIM || j->sub == SUB_RUNNING) && !j->cancel;
    pthread_mutex_unlock(&d->mu);
    if (wanted)
        j->ops->discard(j->job, slot, index, why);
    else
        d->dirty |= j->inflight == 0;
}

static void mux_trace_env(void *vd, size_t slot, const observation **obs, size_t *n_obs, uint64_t *seed)
{
    ppxdaemon *d = vd;
    djob *j = d->owner[slot];
    if (!j) return;
    if (j->kind == JK_TRAIN || j->kind == JK_TRAIN_IC || j->kind == JK_DIAGNOSE) {
        *obs = j->run_obs; /* a diagnose job's sub-job: an IC model's observation; else drawn */
        *n_obs = j->run_n_obs;
        *seed = j->tj ? train_job_seed(j->tj) : j->dg ? diag_job_seed(j->dg) : ic_job_seed(j->ij);
    } else if (j->kind == JK_MINE) {
        /* As ppxd mine: Observe draws seeded with --seed. */
        *obs = NULL;
        *n_obs = 0;
        *seed = mine_cmd_opts(j->mc)->seed;
    } else {
        *obs = j->c.obs;
        *n_obs = j->c.n_obs;
        *seed = j->c.seed;
    }
}

static int mux_done(void *vd);

static const job_ops mux_ops = {mux_next, mux_complete, mux_discard, mux_done, mux_trace_env};

static void mp_begin(policy *p, size_t slot, uint64_t idx)
{
    ppxdaemon *d = ((mux_policy *)p)->d;
    djob *j = d->owner[slot];
    if (j) policy_begin(j->p, slot, idx);
}

static void mp_end(policy *p, size_t slot)
{
    ppxdaemon *d = ((mux_policy *)p)->d;
    djob *j = d->owner[slot];
    if (j) policy_end(j->p, slot);
}

/* Each job's requests to its own policy, as one batch per job. */
static void mp_answer(policy *p, policy_request *reqs, size_t n)
{
    ppxdaemon *d = ((mux_policy *)p)->d;
    if (n > d->n_scratch) {
        policy_request *s = realloc(d->scratch, n * sizeof *s);
        if (!s) {
            for (size_t i = 0; i < n; i++) snprintf(reqs[i].reason, sizeof reqs[i].reason, "out of memory");
            return;
        }
        d->scratch = s;
        d->n_scratch = n;
    }
    uint8_t *taken = calloc(n, 1);
    if (!taken) return;
    for (size_t i = 0; i < n; i++) {
        if (taken[i]) continue;
        djob *j = d->owner[reqs[i].slot];
        size_t k = 0;
        for (size_t q = i; q < n; q++)
            if (!taken[q] && d->owner[reqs[q].slot] == j) d->scratch[k++] = reqs[q];
        if (j) policy_answer(j->p, d->scratch, k);
        k = 0;
        for (size_t q = i; q < n; q++)
            if (!taken[q] && d->owner[reqs[q].slot] == j) {
                if (j) reqs[q] = d->scratch[k];
                k++;
                taken[q] = 1;
            }
    }
    free(taken);
}

static const double *mp_observe_value(policy *p, size_t slot, size_t entry_index, const char *base_address, size_t n)
{
    ppxdaemon *d = ((mux_policy *)p)->d;
    djob *j = d->owner[slot];
    if (!j || !j->p->observe_value) return NULL;
    return j->p->observe_value(j->p, slot, entry_index, base_address, n);
}

static void mp_destroy(policy *p) { (void)p; }

static const policy_ops mux_policy_ops = {mp_begin, mp_answer, mp_end, mp_destroy};

/* ---- running jobs (engine thread, under mu) --------------------------------------------------------- */

static void job_end(ppxdaemon *d, djob *j, ppxq_job_state st, const char *fmt, const char *detail)
{
    j->state = st;
    j->phase = PH_END;
    j->finished = now_unix();
    j->eta = job_ended(st) ? 0 : -1;
    snprintf(j->message, sizeof j->message, fmt, detail ? detail : "");
    job_save(j);
    pthread_cond_broadcast(&d->cv);
    fprintf(stderr, "ppxd daemon: job %s (%s) %s%s%s\n", j->id, j->name, state_name(st), j->message[0] ? ": " : "",
            j->message);
}

/* Simulators of model m connected now. */
static size_t pool_size(ppxdaemon *d, const djob *j)
{
    size_t n = 0;
    for (size_t s = 0; s < d->n_slots; s++) {
        const char *m = engine_slot_model(d->e, s);
        if (m && model_matches(d, j, m)) n++;
    }
    return n;
}

/* Last epoch line of the training log: "epoch,train_loss,val_loss,seconds". */
static void read_train_log(djob *j)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/model.ppxm.log.csv", j->dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[256], last[256] = "";
    while (fgets(line, sizeof line, f))
        if (line[0] >= '0' && line[0] <= '9') snprintf(last, sizeof last, "%s", line);
    fclose(f);
    unsigned long ep;
    double tr, va, sec;
    if (sscanf(last, "%lu,%lf,%lf,%lf", &ep, &tr, &va, &sec) == 4) {
        j->done = ep;
        j->loss = va;
        j->eta = j->total && ep ? sec / (double)ep * (double)(j->total > ep ? j->total - ep : 0) : -1;
    }
}

static void *train_main(void *arg);
static void *diag_main(void *arg);
static int diag_sub_run(void *ctx, const char *what, policy *p, const job_ops *ops, void *job, const observation *obs,
                        size_t n_obs);

static void job_progress(djob *j)
{
    if (j->run)
        cli_run_progress(j->run, &j->done, &j->total);
    else if (j->tj)
        train_job_sim_progress(j->tj, &j->done, &j->total);
    else if (j->ij)
        ic_job_progress(j->ij, &j->done, &j->total);
    else if (j->mt)
        mine_task_progress(j->mt, &j->done, &j->total, NULL, NULL);
    else if (j->dg) {
        const char *unit;
        diag_job_progress(j->dg, &j->done, &j->total, &unit);
        snprintf(j->unit, sizeof j->unit, "%s", unit);
    }
}

/* The training thread (train_main), which takes no signals (the engine's
 * thread does).  0, or -1 with the job ended FAILED. */
static int start_thread(ppxdaemon *d, djob *j)
{
    atomic_store(&j->thread_done, 0);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int perr = pthread_create(&j->thread, NULL, j->dg ? diag_main : train_main, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (perr != 0) {
        job_end(d, j, PPXQ_JOB_FAILED, "cannot start the training thread%s", NULL);
        return -1;
    }
    j->thread_started = 1;
    return 0;
}

static void start_job(ppxdaemon *d, djob *j)
{
    char msg[600];
    j->phase = PH_SIM;
    j->state = PPXQ_JOB_RUNNING;
    j->started = now_unix();
    j->sim_t0 = now_mono();
    msg[0] = 0;
    cli_capture(msg, sizeof msg);
    int ok, sb = 0;
    if (j->kind == JK_DIAGNOSE) {
        /* Live test pairs from the prior on the pool first (finish_sims
         * starts the rounds), unless there are none (--data) or an IC
         * model's thread simulates them itself (sb 1); simulations during
         * the diagnosis through diag_sub_run. */
        diag_job_set_runner(j->dg, &(diag_runner){d->n_slots, diag_sub_run, j});
        sb = diag_job_set_out(j->dg, j->dir) < 0 ? -1
             : !diag_job_live(j->dg)             ? 1
                                                 : diag_job_sim_begin(j->dg, d->n_slots, &j->p, &j->ops, &j->job);
    }
    if (j->kind == JK_DIAGNOSE && sb <= 0) {
        ok = sb == 0;
    } else if (j->kind == JK_TRAIN) {
        pjoin(j->out_path, sizeof j->out_path, j->dir, "model.ppxm");
        train_job_set_out(j->tj, j->out_path);
        ok = train_job_sim_begin(j->tj, d->n_slots, &j->p, &j->ops, &j->job) == 0;
    } else if (j->kind == JK_TRAIN_IC) {
        pjoin(j->out_path, sizeof j->out_path, j->dir, "model.ppxm");
        ok = ic_job_set_out(j->ij, j->out_path) == 0 &&
             ic_job_sim_begin(j->ij, d->n_slots, &j->p, &j->ops, &j->job) == 0;
    } else if (j->kind == JK_MINE) {
        /* The mining core on the shared pool: its tasks (originals and
         * replays) are this job's traces in mux_next's fair share. */
        j->mt = mine_task_new(mine_cmd_opts(j->mc), d->n_slots);
        ok = j->mt != NULL;
        if (ok) {
            j->p = mine_task_policy(j->mt);
            j->ops = mine_task_ops(j->mt, &j->job);
        }
    } else if (j->kind == JK_GOLD || j->kind == JK_DIAGNOSE) {
        /* No simulations first: straight to the job's thread. */
        cli_capture(NULL, 0);
        if (j->dg) {
            const char *unit;
            diag_job_progress(j->dg, &j->done, &j->total, &unit);
            snprintf(j->unit, sizeof j->unit, "%s", unit);
        }
        if (j->gc) {
            pjoin(j->out_path, sizeof j->out_path, j->dir, "model.ppxr");
            j->total = (uint64_t)gold_train_cmd_config(j->gc)->epochs; /* --min-steps may add epochs */
        }
        j->phase = PH_TRAIN;
        if (start_thread(d, j) < 0) return;
        job_save(j);
        pthread_cond_broadcast(&d->cv);
        fprintf(stderr, "ppxd daemon: job %s (%s) %s\n", j->id, j->name, j->dg ? "diagnosing" : "training");
        return;
    } else {
        if (j->kind == JK_SIMULATE) {
            pjoin(j->out_path, sizeof j->out_path, j->dir, "traces.ppxt");
            j->c.out = j->out_path;
        } else {
            pjoin(j->samples_path, sizeof j->samples_path, j->dir, "samples.npy");
            j->c.samples_out = j->samples_path;
        }
        /* MCMC: one chain per simulator of the pool now (as the CLI: one per simulator). */
        size_t chains = pool_size(d, j);
        j->run = cli_run_new(&j->c, d->n_slots, chains ? chains : 1);
        ok = j->run != NULL;
        if (ok) {
            j->p = cli_run_policy(j->run);
            j->ops = cli_run_ops(j->run, &j->job);
        }
    }
    cli_capture(NULL, 0);
    if (!ok) {
        job_end(d, j, PPXQ_JOB_FAILED, "%s", msg[0] ? msg : "cannot start (see the daemon's log)");
        return;
    }
    job_save(j);
    pthread_cond_broadcast(&d->cv);
    fprintf(stderr, "ppxd daemon: job %s (%s) running\n", j->id, j->name);
}

/* dst (a job's output) into DIR/SUB as NAME.EXT: a hard link, atomic with
 * rename (an earlier file of that name is replaced).  0 or -1 (logged). */
static int publish_file(const char *src, const char *dir, const char *name, const char *ext, char *dst, size_t n)
{
    char tmp[PATH_MAX + 200];
    snprintf(dst, n, "%s/%s%s", dir, name, ext);
    snprintf(tmp, sizeof tmp, "%s.tmp%d", dst, (int)getpid());
    unlink(tmp);
    if (link(src, tmp) < 0 || rename(tmp, dst) < 0) {
        fprintf(stderr, "ppxd daemon: cannot link %s into %s: %s\n", src, dir, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* A mine job's rows are in: DIR/jobs/ID/gold.ppxg and its .npy arrays, and
 * the data set DIR/datasets/NAME.ppxg for gold training jobs (--data NAME). */
static void finish_mine(ppxdaemon *d, djob *j)
{
    gold_data g;
    char err[300], prefix[PATH_MAX + 16], ds[PATH_MAX + 200];
    uint64_t runs = 0;
    mine_task_progress(j->mt, NULL, NULL, &runs, NULL);
    if (mine_task_finish(j->mt, 0, &g) < 0) {
        job_end(d, j, PPXQ_JOB_FAILED, "mining failed (see the daemon's log: e.g. a --theta or --x name the "
                                       "simulator does not have)%s", NULL);
        return;
    }
    pjoin(j->out_path, sizeof j->out_path, j->dir, "gold.ppxg");
    snprintf(prefix, sizeof prefix, "%s/gold", j->dir);
    if (gold_data_write(&g, j->out_path, err, sizeof err) < 0 || gold_data_export_npy(&g, prefix, err, sizeof err) < 0) {
        gold_data_free(&g);
        job_end(d, j, PPXQ_JOB_FAILED, "%s", err);
        return;
    }
    char msg[sizeof j->message];
    uint64_t bad = gold_data_bad_total(&g);
    int k = snprintf(msg, sizeof msg, "%zu rows mined (%llu simulator runs), %llu dropped", g.n,
                     (unsigned long long)runs, (unsigned long long)bad);
    for (int r = 0; bad && r < GOLD_BAD_COUNT && k > 0 && (size_t)k < sizeof msg; r++)
        if (g.bad[r])
            k += snprintf(msg + k, sizeof msg - (size_t)k, " %s %llu", gold_bad_name((gold_bad)r),
                          (unsigned long long)g.bad[r]);
    gold_data_free(&g);
    if (publish_file(j->out_path, d->datasets_dir, j->name, ".ppxg", ds, sizeof ds) < 0) {
        job_end(d, j, PPXQ_JOB_FAILED, "mined, but cannot add the data set to DIR/datasets (see the daemon's log)%s",
                NULL);
        return;
    }
    if (k > 0 && (size_t)k < sizeof msg)
        snprintf(msg + k, sizeof msg - (size_t)k, "; data set '%s' (train METHOD --data %s)", j->name, j->name);
    job_end(d, j, PPXQ_JOB_DONE, "%s", msg);
}

/* The job's simulations are in: results (simulate/infer) or training. */
static void finish_sims(ppxdaemon *d, djob *j)
{
    job_progress(j);
    if (j->kind == JK_TRAIN || j->kind == JK_TRAIN_IC || j->kind == JK_DIAGNOSE) {
        if (j->tj && train_job_sim_failed(j->tj)) {
            job_end(d, j, PPXQ_JOB_FAILED, "the simulations could not be used (see the daemon's log)%s", NULL);
            return;
        }
        j->phase = PH_TRAIN;
        if (j->tj) {
            snprintf(j->unit, sizeof j->unit, "epochs");
            j->done = 0;
            j->total = (uint64_t)train_job_max_epochs(j->tj); /* early stopping may end it sooner */
        } else if (j->dg) {
            snprintf(j->unit, sizeof j->unit, "rounds");
            j->done = j->total = 0;
        }
        j->eta = -1;
        if (start_thread(d, j) < 0) return;
        job_save(j);
        pthread_cond_broadcast(&d->cv);
        return;
    }
    if (j->kind == JK_MINE) {
        finish_mine(d, j);
        return;
    }
    char path[PATH_MAX + 64], msg[600];
    snprintf(path, sizeof path, "%s/summary.txt", j->dir);
    FILE *f = j->kind == JK_INFER ? fopen(path, "w") : NULL;
    msg[0] = 0;
    int rc = cli_run_finish(j->run, 1, f ? f : stderr, msg, sizeof msg);
    if (f && fclose(f) != 0) rc = -1;
    if (rc == 0)
        job_end(d, j, PPXQ_JOB_DONE, "%s", msg);
    else
        job_end(d, j, PPXQ_JOB_FAILED, "%s", msg[0] ? msg : "failed (see the daemon's log)");
}

/* The training thread's daemon: set before it starts. */
static ppxdaemon *g_daemon;

/* A gold estimator from the job's data set (DIR/datasets/NAME.ppxg) into
 * j->out_path.  0, or 1 with the reason in msg; *loss: the best validation
 * loss, *epoch its epoch. */
static int gold_fit(djob *j, char *msg, size_t len, double *loss, uint64_t *epoch)
{
    gold_data g;
    char err[300];
    if (gold_data_read(&g, j->model_path, err, sizeof err) < 0) {
        snprintf(msg, len, "%s", err);
        return 1;
    }
    gold_train_config *cfg = gold_train_cmd_config(j->gc);
    cfg->stop = &j->gold_stop;
    gold_model *m = gold_train(cfg, &g);
    gold_data_free(&g);
    if (!m) {
        snprintf(msg, len, "%s: training failed (see the daemon's log)", gold_method_name(cfg->method));
        return 1;
    }
    int rc = 0;
    if (gold_model_save(m, j->out_path, err, sizeof err) < 0) {
        snprintf(msg, len, "%s", err);
        rc = 1;
    } else {
        snprintf(msg, len, "%s trained on %llu rows (%llu validation), best validation loss %.6g at epoch %d",
                 gold_model_kind_name(m->method), (unsigned long long)m->n_train, (unsigned long long)m->n_val,
                 m->best_val, m->best_epoch);
        *loss = m->best_val;
        *epoch = (uint64_t)m->best_epoch;
    }
    gold_model_destroy(&m);
    return rc;
}

static void *train_main(void *arg)
{
    djob *j = arg;
    ppxdaemon *d = g_daemon;
    const model_file *m = NULL;
    char msg[600];
    double gold_loss = NAN;
    uint64_t gold_epoch = 0;
    int rc = j->gc   ? gold_fit(j, msg, sizeof msg, &gold_loss, &gold_epoch)
             : j->ij ? ic_job_finish(j->ij, msg, sizeof msg)
                     : train_job_fit(j->tj, &m, msg, sizeof msg);
    char served[PATH_MAX + 200];
    served[0] = 0;
    pthread_mutex_lock(&d->mu);
    int cancel = j->cancel, stopping = d->stopping;
    pthread_mutex_unlock(&d->mu);
    if (rc == 0 && !cancel && !stopping) {
        /* Into DIR/models under the job's name (a link: atomic with rename),
         * then served: an NPE/NRE model from memory, a gold one from its file. */
        char err[300];
        if (publish_file(j->out_path, j->ij ? d->ic_dir : d->models_dir, j->name, j->gc ? ".ppxr" : ".ppxm", served,
                         sizeof served) < 0)
            snprintf(served, sizeof served, "%s", j->out_path);
        if ((m && serve_publish(d->serve, j->name, m, served, err, sizeof err) < 0) ||
            (j->gc && serve_load(d->serve, j->name, served, err, sizeof err) < 0)) {
            rc = 1;
            snprintf(msg, sizeof msg, "trained, but cannot serve it: %s", err);
        }
    }
    pthread_mutex_lock(&d->mu);
    if (j->tj) read_train_log(j);
    if (j->gc && isfinite(gold_loss)) {
        j->loss = gold_loss;
        j->done = gold_epoch; /* the kept (best) epoch */
    }
    if (cancel || j->cancel)
        job_end(d, j, PPXQ_JOB_CANCELLED, "cancelled during training%s", NULL);
    else if (stopping || d->stopping)
        job_end(d, j, PPXQ_JOB_FAILED, "daemon stopped%s", NULL);
    else if (rc == 0) {
        char done[sizeof j->message];
        int k = j->ij ? snprintf(done, sizeof done, "saved as '%s' (infer --method ic --model %s): %s", j->name,
                                 j->name, msg)
                      : snprintf(done, sizeof done, "served as '%s': %s", j->name, msg);
        if (k >= (int)sizeof done) done[sizeof done - 1] = 0;
        job_end(d, j, PPXQ_JOB_DONE, "%s", done);
    } else
        job_end(d, j, PPXQ_JOB_FAILED, "%s", msg);
    atomic_store(&j->thread_done, 1);
    pthread_mutex_unlock(&d->mu);
    wake(d->wake_fd);
    return NULL;
}

/* A diagnose job's thread: the rounds, the checks and the report into its
 * directory; what it simulates goes to the pool through diag_sub_run. */
static void *diag_main(void *arg)
{
    djob *j = arg;
    ppxdaemon *d = g_daemon;
    char msg[600];
    int rc = diag_job_run(j->dg, msg, sizeof msg);
    pthread_mutex_lock(&d->mu);
    job_progress(j);
    if (j->cancel)
        job_end(d, j, PPXQ_JOB_CANCELLED, "cancelled during the diagnosis%s", NULL);
    else if (d->stopping)
        job_end(d, j, PPXQ_JOB_FAILED, "daemon stopped%s", NULL);
    else
        job_end(d, j, rc == 0 ? PPXQ_JOB_DONE : PPXQ_JOB_FAILED, rc == 3 ? "%s (--strict)" : "%s", msg);
    atomic_store(&j->thread_done, 1);
    pthread_mutex_unlock(&d->mu);
    wake(d->wake_fd);
    return NULL;
}

/* A diagnose job's runner (diag_runner, on its thread): the engine job to
 * the loop, which runs it on the pool as this job's traces (follow_sub);
 * blocks until it is over.  0 when it ran to its end, -1 when the job was
 * cancelled or the daemon stops.  Never an engine call here: the engine is
 * the loop's. */
static int diag_sub_run(void *ctx, const char *what, policy *p, const job_ops *ops, void *job, const observation *obs,
                        size_t n_obs)
{
    djob *j = ctx;
    ppxdaemon *d = g_daemon;
    int rc = -1;
    pthread_mutex_lock(&d->mu);
    if (!j->cancel && !d->stopping) {
        j->sub_p = p;
        j->sub_ops = ops;
        j->sub_job = job;
        j->sub_obs = obs;
        j->sub_n_obs = n_obs;
        snprintf(j->sub_what, sizeof j->sub_what, "%s", what ? what : "");
        j->sub = SUB_ASKED;
        wake(d->wake_fd);
        while (j->sub != SUB_OVER) pthread_cond_wait(&d->cv, &d->mu);
        rc = j->sub_rc;
        j->sub = SUB_NONE;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* The sub-job is over (engine thread, under mu; no trace of it on a session). */
static void end_sub(ppxdaemon *d, djob *j, int rc)
{
    j->sub = SUB_OVER;
    j->sub_rc = rc;
    j->p = NULL;
    j->ops = NULL;
    j->job = NULL;
    j->run_obs = NULL;
    j->run_n_obs = 0;
    if (!strncmp(j->message, "waiting for simulators", 22) || (j->sub_what[0] && !strcmp(j->message, j->sub_what)))
        j->message[0] = 0;
    pthread_cond_broadcast(&d->cv);
}

/* A diagnose job's sub-job (engine thread, under mu): started once no trace
 * of its earlier simulations is out (they would be answered by the new
 * policy), ended when done or cancelled and its traces are back; while it
 * waits for simulators, says so as the other jobs do. */
static void follow_sub(ppxdaemon *d, djob *j)
{
    int stop = atomic_load(&j->cancel) || d->stopping;
    if (j->sub == SUB_ASKED) {
        if (stop) {
            end_sub(d, j, -1);
            return;
        }
        if (j->inflight) return;
        j->p = j->sub_p;
        j->ops = j->sub_ops;
        j->job = j->sub_job;
        j->run_obs = j->sub_obs;
        j->run_n_obs = j->sub_n_obs;
        j->sub = SUB_RUNNING;
    }
    if (j->sub != SUB_RUNNING) return;
    if (stop || j->ops->done(j->job)) {
        if (j->inflight == 0) end_sub(d, j, stop ? -1 : 0);
        return;
    }
    const char *want = wanted_model(d, j);
    if (pool_size(d, j) == 0)
        snprintf(j->message, sizeof j->message, "waiting for simulators%s%s%s", want && want[0] ? " of model '" : "",
                 want && want[0] ? want : "", want && want[0] ? "'" : "");
    else if (!j->message[0] || !strncmp(j->message, "waiting for simulators", 22))
        snprintf(j->message, sizeof j->message, "%s", j->sub_what);
}

static uint64_t pool_events(const ppxdaemon *d)
{
    const engine_stats *st = engine_get_stats(d->e);
    return st->joined + st->left + st->dropped + st->restarts;
}

static void refresh_pools(ppxdaemon *d, double now)
{
    uint64_t ev = pool_events(d);
    if (ev == d->pool_events && now - d->pools_at < 0.25) return;
    d->pool_events = ev;
    d->pools_at = now;
    d->n_pools = engine_pools(d->e, d->pools, sizeof d->pools / sizeof *d->pools);
}

/* Called once per turn of the engine loop: start, follow and end jobs. */
static int mux_done(void *vd)
{
    ppxdaemon *d = vd;
    if (g_sig_stop) {
        engine_request_stop(d->e);
        return 1;
    }
    double now = now_mono();
    if (g_sig_hup) {
        g_sig_hup = 0;
        fprintf(stderr, "ppxd daemon: SIGHUP: reloading the models of %s\n", d->models_dir);
        load_models(d);
    }
    /* The whole table at most every 50 ms (a busy loop turns often), and at
     * once after a wake-up (a submit, a cancel, a training's end) or when a
     * running job's simulations are over.  Not waiting for the next tick
     * then matters: the loop may sleep 10 s once no simulator has a trace,
     * and a finished job would wait that long (daemon jobs took up to ~10 s
     * longer than the same commands before); so would `ppxctl sims` after
     * the join or leave that woke it. */
    int due = atomic_exchange(&g_kick, 0) || d->dirty || now - d->last_tick >= 0.05 ||
              pool_events(d) != d->pool_events;
    for (size_t k = 0; k < d->n_active && !due; k++)
        due = atomic_load(&d->active[k]->cancel) || d->active[k]->ops->done(d->active[k]->job);
    if (!due) return 0;
    d->dirty = 0;
    pthread_mutex_lock(&d->mu);
    refresh_pools(d, now);
    /* Follow and end the running jobs first, so that the queued ones start
     * in the same tick in the places of those that just ended. */
    for (size_t i = 0; i < d->n_jobs; i++) {
        djob *j = d->jobs[i];
        if (j->phase == PH_SIM) {
            if (atomic_load(&j->cancel)) {
                job_end(d, j, PPXQ_JOB_CANCELLED, "cancelled%s", NULL);
                continue;
            }
            if (j->ops->done(j->job)) {
                j->end_polls = (long long)(engine_get_stats(d->e)->polls - j->last_trace_polls);
                finish_sims(d, j);
                continue;
            }
            if (now - j->last_log_read >= 0.1) {
                j->last_log_read = now;
                job_progress(j);
                double el = now - j->sim_t0;
                j->eta = j->done ? el * (double)(j->total - j->done) / (double)j->done : -1;
                /* Say why nothing happens when no simulator of its model is there. */
                const char *want = wanted_model(d, j);
                if (pool_size(d, j) == 0)
                    snprintf(j->message, sizeof j->message, "waiting for simulators%s%s%s", want && want[0] ? " of model '" : "",
                             want && want[0] ? want : "", want && want[0] ? "'" : "");
                else if (!strncmp(j->message, "waiting for simulators", 22))
                    j->message[0] = 0;
            }
        } else if (j->phase == PH_TRAIN && j->tj && now - j->last_log_read >= 0.5) {
            j->last_log_read = now;
            read_train_log(j);
        } else if (j->phase == PH_TRAIN && j->sub != SUB_NONE) {
            follow_sub(d, j);
        }
        int has_run = j->run || j->tj || j->ij || j->have_cli || j->mc || j->mt || j->gc || j->dg;
        if (j->phase == PH_END && j->inflight == 0 && has_run) {
            if (j->thread_started) {
                if (!atomic_load(&j->thread_done)) continue;
                pthread_join(j->thread, NULL);
                j->thread_started = 0;
            }
            job_free_run(j);
        }
    }
    size_t running = 0;
    for (size_t i = 0; i < d->n_jobs; i++) running += d->jobs[i]->phase == PH_SIM || d->jobs[i]->phase == PH_TRAIN;
    for (size_t i = 0; i < d->n_jobs && running < (size_t)d->cfg.max_jobs; i++) {
        djob *j = d->jobs[i];
        if (j->phase == PH_NONE && j->state == PPXQ_JOB_QUEUED) {
            start_job(d, j);
            running += j->phase == PH_SIM || j->phase == PH_TRAIN;
            if (j->phase == PH_SIM) { /* status shows "0/N" at once, not "-" until the next tick */
                j->last_log_read = now;
                job_progress(j);
            }
        }
    }
    d->n_active = 0;
    for (size_t i = 0; i < d->n_jobs && d->n_active < sizeof d->active / sizeof *d->active; i++)
        if (d->jobs[i]->phase == PH_SIM || d->jobs[i]->sub == SUB_RUNNING) d->active[d->n_active++] = d->jobs[i];
    pthread_mutex_unlock(&d->mu);
    d->last_tick = now;
    return 0;
}

/* ---- options and the config file -------------------------------------------------------------------- */

static void daemon_usage(FILE *f)
{
    fprintf(f,
            "usage: ppxd daemon [--config FILE] --data-dir DIR --serve ENDPOINT... --sim-listen ENDPOINT...\n"
            "                   [--curve-secret F --curve-allow F --curve-admin F] [--insecure-plain] [options]\n"
            "\n"
            "One long-running ppxd: simulators connect in (--sim-listen) from any host, jobs are submitted\n"
            "over the query endpoint (ppxctl submit ... -- simulate|infer|mine|diagnose|train npe|nre|ic|GOLD ...),\n"
            "trained models are served under their job's name as soon as training ends.\n"
            "\n"
            "  --config FILE               'key = value' lines with the keys of these options (repeatable\n"
            "                              keys add up; '#' comments); command-line flags override or add\n"
            "  --data-dir DIR              models/ (served at start and on SIGHUP), jobs/ID/ (state, outputs)\n"
            "  --serve ENDPOINT            the query endpoint (repeatable), e.g. tcp://*:5560, ipc:///run/ppxd\n"
            "  --sim-listen ENDPOINT       where simulators connect (repeatable), e.g. tcp://*:5556\n"
            "  --sim-cmd CMD, -j N, --connect EP   simulators the daemon launches or connects to, as well\n"
            "  --sim-model NAME            simulators of jobs that name none (default: any)\n"
            "  --sim-max N                 connected-in simulators at once (default 256)\n"
            "  --heartbeat-ms T, --heartbeat-timeout-ms T   heartbeats of connected-in simulators\n"
            "  --timeout-ms T, --start-timeout-ms T, --max-failures K   the engine's (as for simulate)\n"
            "  --max-jobs N                jobs running at once (default 4); the others wait, queued\n"
            "  --serve-threads N, --queue N, --deadline-ms T, --max-n N, --max-reply-bytes B,\n"
            "  --max-request-bytes B       serving, as for ppxd serve\n"
            "  --curve-secret F --curve-allow F --curve-admin F   CURVE; only admin keys may submit/cancel\n"
            "  --insecure-plain            plain tcp on a non-loopback address (no admin over it)\n"
            "  --quiet                     fewer log lines\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop (running and queued jobs end FAILED \"daemon stopped\");\n"
            "SIGHUP re-reads DIR/models.\n");
}

enum {
    D_CONFIG = 1200, D_DATA_DIR, D_SERVE, D_SIM, D_ENGINE, D_MAX_JOBS, D_THREADS, D_QUEUE, D_DEADLINE, D_MAX_N,
    D_MAX_REPLY, D_MAX_REQUEST, D_SECRET, D_ALLOW, D_ADMIN, D_INSECURE, D_QUIET
};

static const struct option daemon_opts[] = {
    {"config", required_argument, 0, D_CONFIG},
    {"data-dir", required_argument, 0, D_DATA_DIR},
    {"serve", required_argument, 0, D_SERVE},
    {"sim-cmd", required_argument, 0, D_SIM},
    {"connect", required_argument, 0, D_SIM},
    ENGINE_SIM_LONG_OPTIONS(D_SIM),
    {"timeout-ms", required_argument, 0, D_ENGINE},
    {"start-timeout-ms", required_argument, 0, D_ENGINE},
    {"max-failures", required_argument, 0, D_ENGINE},
    {"max-jobs", required_argument, 0, D_MAX_JOBS},
    {"serve-threads", required_argument, 0, D_THREADS},
    {"queue", required_argument, 0, D_QUEUE},
    {"deadline-ms", required_argument, 0, D_DEADLINE},
    {"max-n", required_argument, 0, D_MAX_N},
    {"max-reply-bytes", required_argument, 0, D_MAX_REPLY},
    {"max-request-bytes", required_argument, 0, D_MAX_REQUEST},
    {"curve-secret", required_argument, 0, D_SECRET},
    {"curve-allow", required_argument, 0, D_ALLOW},
    {"curve-admin", required_argument, 0, D_ADMIN},
    {"insecure-plain", no_argument, 0, D_INSECURE},
    {"quiet", no_argument, 0, D_QUIET},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

static int ddie(const char *msg, const char *detail)
{
    fprintf(stderr, "ppxd daemon: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    return 2;
}

/* One option by its long name (or "j"). */
static int apply_option(daemon_cfg *c, int ch, const char *name, const char *arg)
{
    uint64_t v;
    char why[160];
    switch (ch) {
    case D_CONFIG: return 0; /* read first */
    case D_DATA_DIR: c->data_dir = arg; return 0;
    case D_SERVE: return args_push(&c->serve, &c->n_serve, arg) < 0 ? 2 : 0;
    case 'j':
    case D_SIM:
        if (engine_sim_option(&c->sims, ch == 'j' ? "j" : name, arg, why, sizeof why) < 0) return ddie(why, arg);
        return 0;
    case D_ENGINE:
        if (engine_config_option(&c->ecfg, name, arg, why, sizeof why) < 0) return ddie(why, arg);
        return 0;
    case D_MAX_JOBS:
        if (args_u64_range(arg, 1, 256, &v) < 0) return ddie("--max-jobs wants a number from 1 to 256", arg);
        c->max_jobs = (int)v;
        return 0;
    case D_THREADS:
        if (args_u64_range(arg, 1, 1024, &v) < 0) return ddie("--serve-threads wants a number from 1 to 1024", arg);
        c->scfg.threads = (int)v;
        return 0;
    case D_QUEUE:
        if (args_u64_range(arg, 1, 1 << 20, &v) < 0) return ddie("--queue wants a positive number", arg);
        c->scfg.queue = (int)v;
        return 0;
    case D_DEADLINE:
        if (args_u64_range(arg, 1, 86400000, &v) < 0) return ddie("--deadline-ms wants a positive number", arg);
        c->scfg.deadline_ms = (int)v;
        return 0;
    case D_MAX_N:
        if (args_u64_range(arg, 1, UINT64_MAX / 2, &v) < 0) return ddie("--max-n wants a positive number", arg);
        c->scfg.max_n = v;
        return 0;
    case D_MAX_REPLY:
    case D_MAX_REQUEST:
        if (args_u64_range(arg, 1024, (uint64_t)1 << 40, &v) < 0) return ddie("wants a number of bytes >= 1024", arg);
        *(ch == D_MAX_REPLY ? &c->scfg.max_reply_bytes : &c->scfg.max_request_bytes) = (size_t)v;
        return 0;
    case D_SECRET: c->scfg.curve_secret = arg; return 0;
    case D_ALLOW: c->scfg.curve_allow = arg; return 0;
    case D_ADMIN: c->scfg.curve_admin = arg; return 0;
    case D_INSECURE: c->scfg.insecure_plain = 1; return 0;
    case D_QUIET: c->quiet = 1; return 0;
    case 'h': daemon_usage(stdout); exit(0);
    default: daemon_usage(stderr); return 2;
    }
}

static int parse_argv(daemon_cfg *c, int argc, char **argv, const char *where)
{
    cli_getopt_reset("j:h");
    optind = 1;
    opterr = 1;
    int ch, idx = 0;
    while ((ch = getopt_long(argc, argv, "j:h", daemon_opts, &idx)) != -1) {
        int rc = apply_option(c, ch, ch == 'j' ? "j" : daemon_opts[idx].name, optarg);
        if (rc) {
            if (where) fprintf(stderr, "ppxd daemon: (in %s)\n", where);
            return rc;
        }
    }
    if (optind < argc) return ddie("unexpected argument", argv[optind]);
    return 0;
}

/* The config file as arguments: "key = value" is --key value; a bare key
 * (or "key = true") is a flag.  Strings are kept in *keep (freed at exit). */
static int read_config(daemon_cfg *c, const char *path, char ***keep, size_t *n_keep)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ppxd daemon: cannot read --config %s: %s\n", path, strerror(errno));
        return 2;
    }
    char **av = NULL;
    size_t ac = 0;
    int rc = push_word(&av, &ac, "ppxd-daemon-config") < 0 ? 2 : 0;
    char line[4096];
    int lineno = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
        if (!*s) continue;
        char *eq = strchr(s, '=');
        char key[128], opt[140];
        const char *val = NULL;
        if (eq) {
            size_t kl = (size_t)(eq - s);
            while (kl && (s[kl - 1] == ' ' || s[kl - 1] == '\t')) kl--;
            snprintf(key, sizeof key, "%.*s", (int)kl, s);
            val = eq + 1;
            while (*val == ' ' || *val == '\t') val++;
            if (strlen(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[strlen(val) - 1] == val[0]) {
                s[strlen(s) - 1] = 0;
                val++;
            }
        } else {
            snprintf(key, sizeof key, "%.*s", (int)(sizeof key - 1), s); /* a longer key is unknown anyway */
        }
        const struct option *o = daemon_opts;
        while (o->name && strcmp(o->name, key) != 0) o++;
        if (!o->name || !strcmp(key, "config") || !strcmp(key, "help")) {
            fprintf(stderr, "ppxd daemon: %s:%d: unknown key '%s'\n", path, lineno, key);
            rc = 2;
            break;
        }
        snprintf(opt, sizeof opt, "--%s", key);
        if (o->has_arg == no_argument) {
            if (val && strcmp(val, "true") && strcmp(val, "yes") && strcmp(val, "1")) {
                if (!strcmp(val, "false") || !strcmp(val, "no") || !strcmp(val, "0")) continue;
                fprintf(stderr, "ppxd daemon: %s:%d: '%s' is a flag: true or false\n", path, lineno, key);
                rc = 2;
                break;
            }
            if (push_word(&av, &ac, opt) < 0) rc = 2;
        } else {
            if (!val || !*val) {
                fprintf(stderr, "ppxd daemon: %s:%d: '%s' needs a value\n", path, lineno, key);
                rc = 2;
                break;
            }
            if (push_word(&av, &ac, opt) < 0 || push_word(&av, &ac, val) < 0) rc = 2;
        }
    }
    fclose(f);
    *keep = av;
    *n_keep = ac;
    if (rc == 0) {
        /* The words are copied again: getopt permutes the vector. */
        char **view = calloc(ac + 1, sizeof *view);
        if (!view) return 2;
        memcpy(view, av, ac * sizeof *view);
        rc = parse_argv(c, (int)ac, view, path);
        free(view);
    }
    return rc;
}

/* ---- main ------------------------------------------------------------------------------------------ */

static int make_dir(const char *p)
{
    if (mkdir(p, 0755) == 0 || errno == EEXIST) return 0;
    fprintf(stderr, "ppxd daemon: cannot create %s: %s\n", p, strerror(errno));
    return -1;
}

static void stop_everything(ppxdaemon *d)
{
    pthread_mutex_lock(&d->mu);
    d->stopping = 1;
    for (size_t i = 0; i < d->n_jobs; i++) {
        djob *j = d->jobs[i];
        if (j->tj) train_job_stop(j->tj);
        if (j->ij) ic_job_stop(j->ij);
        if (j->gc) j->gold_stop = 1;
        if (j->dg) diag_job_stop(j->dg);
        if (j->sub == SUB_ASKED || j->sub == SUB_RUNNING) {
            /* The loop has ended: no trace of it will come back. */
            j->sub = SUB_OVER;
            j->sub_rc = -1;
        }
        if (j->phase == PH_SIM || (j->phase == PH_NONE && j->state == PPXQ_JOB_QUEUED))
            job_end(d, j, PPXQ_JOB_FAILED, "daemon stopped%s", NULL);
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    /* Training threads end after their batch. */
    for (size_t i = 0; i < d->n_jobs; i++) {
        djob *j = d->jobs[i];
        if (j->thread_started) {
            pthread_join(j->thread, NULL);
            j->thread_started = 0;
        }
    }
}

int ppxd_daemon_main(int argc, char **argv)
{
    ppxdaemon *d = calloc(1, sizeof *d);
    if (!d) return 1;
    daemon_cfg *c = &d->cfg;
    engine_config_defaults(&c->ecfg);
    c->scfg = serve_config_defaults();
    c->max_jobs = 4;
    char **conf_words = NULL;
    size_t n_conf = 0;
    int rc = 0;
    /* The config file first, so that flags override it. */
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *cf = NULL;
        if (!strcmp(argv[i], "--config") && i + 1 < argc) cf = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9)) cf = argv[i] + 9;
        if (cf) rc = read_config(c, cf, &conf_words, &n_conf);
    }
    if (rc == 0) rc = parse_argv(c, argc, argv, NULL);
    if (rc == 0 && !c->data_dir) rc = ddie("needs --data-dir DIR (models and jobs live there)", NULL);
    if (rc == 0 && !c->n_serve) rc = ddie("needs --serve ENDPOINT (the query endpoint: ppxctl, Python)", NULL);
    char why[200];
    if (rc == 0 && !engine_sim_options_apply(&c->sims, &c->ecfg, why, sizeof why))
        rc = ddie("needs --sim-listen ENDPOINT (where simulators connect)", NULL);
    if (rc) goto out;
    /* The pool takes every model: each job chooses its own (mux_next). */
    c->default_model = c->ecfg.model;
    c->ecfg.model = NULL;
    c->ecfg.progress = !c->quiet;
    rc = 1;
    char real[PATH_MAX];
    if (make_dir(c->data_dir) < 0 || !realpath(c->data_dir, real)) goto out;
    snprintf(d->data_dir, sizeof d->data_dir, "%s", real);
    pjoin(d->models_dir, sizeof d->models_dir, real, "models");
    pjoin(d->jobs_dir, sizeof d->jobs_dir, real, "jobs");
    pjoin(d->ic_dir, sizeof d->ic_dir, real, "ic");
    pjoin(d->datasets_dir, sizeof d->datasets_dir, real, "datasets");
    if (make_dir(d->models_dir) < 0 || make_dir(d->jobs_dir) < 0 || make_dir(d->ic_dir) < 0 ||
        make_dir(d->datasets_dir) < 0)
        goto out;
    char lock_path[PATH_MAX + 16];
    snprintf(lock_path, sizeof lock_path, "%s/daemon.lock", real);
    int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        fprintf(stderr, "ppxd daemon: %s is in use by another daemon (%s)\n", real, strerror(errno));
        if (lock_fd >= 0) close(lock_fd);
        goto out;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_mutex_init(&d->parse_mu, NULL);
    d->next_seq = 1;
    load_jobs(d);
    d->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->wake_fd < 0) {
        fprintf(stderr, "ppxd daemon: eventfd: %s\n", strerror(errno));
        goto out_lock;
    }
    g_wake_fd = d->wake_fd;
    g_daemon = d;
    c->ecfg.wake_fd = d->wake_fd;
    nn_set_threads(1); /* parallel over requests and jobs, not inside a matmul */
    /* The threads started from here on take no signals: this one does. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    signal(SIGPIPE, SIG_IGN);
    const char *mdirs[1] = {d->models_dir};
    c->scfg.endpoints = c->serve;
    c->scfg.n_endpoints = c->n_serve;
    c->scfg.model_dirs = mdirs;
    c->scfg.n_model_dirs = 1;
    c->scfg.quiet = c->quiet;
    c->scfg.on_request = on_request;
    c->scfg.on_request_ctx = d;
    char err[512];
    d->serve = serve_new(&c->scfg, err, sizeof err);
    if (!d->serve) {
        fprintf(stderr, "ppxd daemon: %s\n", err);
        goto out_sig;
    }
    load_models(d);
    d->e = engine_new(&c->ecfg);
    if (!d->e) goto out_serve;
    d->n_slots = engine_slots(d->e);
    d->owner = calloc(d->n_slots, sizeof *d->owner);
    if (!d->owner) goto out_engine;
    d->mux.d = d;
    d->mux.base.ops = &mux_policy_ops;
    d->mux.base.n_slots = d->n_slots;
    d->mux.base.observe_value = mp_observe_value;
    if (pthread_create(&d->waiter, NULL, waiter_main, d) != 0) goto out_engine;
    d->waiter_started = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    fprintf(stderr, "ppxd daemon: data in %s, queries on %s%s, %zu simulator sessions\n", real, c->serve[0],
            c->n_serve > 1 ? " (and more)" : "", d->n_slots);
    /* Signals only while the engine runs (its poll wakes on the eventfd);
     * it returns when one stops the daemon (or its poll fails). */
    pthread_sigmask(SIG_UNBLOCK, &block, NULL);
    engine_run(d->e, &d->mux.base, &mux_ops, d);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    fprintf(stderr, "ppxd daemon: stopping\n");
    rc = 0;
    stop_everything(d);
    pthread_mutex_lock(&d->mu);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->waiter, NULL);
    d->waiter_started = 0;
out_engine:
    if (d->waiter_started) {
        pthread_mutex_lock(&d->mu);
        d->stopping = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->waiter, NULL);
    }
    engine_destroy(&d->e);
out_serve:
    serve_request_stop(d->serve);
    if (serve_shutdown(d->serve, SERVE_STOP_GRACE_MS) < 0) {
        fprintf(stderr, "ppxd daemon: a request is still running after %d ms: exiting without it\n",
                SERVE_STOP_GRACE_MS);
        fflush(stderr);
        _exit(rc);
    }
    serve_destroy(&d->serve);
out_sig:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(d->wake_fd);
    g_wake_fd = -1;
out_lock:
    close(lock_fd);
    for (size_t i = 0; i < d->n_jobs; i++) job_destroy(d->jobs[i]);
    free(d->jobs);
    free(d->waits);
    free(d->owner);
    free(d->scratch);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->parse_mu);
out:
    engine_sim_options_free(&c->sims);
    free(c->serve);
    free_words(conf_words, n_conf);
    g_daemon = NULL;
    free(d);
    return rc;
}
