/* train_ic.c — `ppxd train ic` (see train_ic.h and the usage text below). */
#include "train_ic.h"

#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "engine.h"
#include "ic/ic.h"
#include "nn/nn.h"
#include "policy.h"
#include "trace.h"
#include "trace_store.h"

/* The command line's SIGINT/SIGTERM handler reaches the running command
 * through these (a ppxd daemon job has its own opts.stop). */
static engine *g_engine;
static volatile sig_atomic_t *g_stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    if (g_stop_flag) *g_stop_flag = 1;
    if (g_engine) engine_request_stop(g_engine);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage:\n"
        "  ppxd train ic SIMULATORS -o MODEL.ppxm [--max-traces N] [--max-seconds S] [options]\n"
        "  ppxd train ic --data TRACES.ppxt -o MODEL.ppxm [--epochs E] [options]\n"
        "\n"
        "Inference compilation: trains a proposal network q(latents | observes) on prior traces (every\n"
        "Observe without a value is drawn by ppxd, so the observes vary).  Use it with\n"
        "  ppxd infer --method ic --model MODEL.ppxm --observe NAME=V ...\n"
        "\n"
        "data, online (simulation and training overlap: the trainer runs on its own thread):\n"
        ENGINE_SIM_OPTIONS_HELP
        "  --max-traces N              training traces to consume (default 50000 unless --max-seconds)\n"
        "  --queue Q                   traces buffered between simulators and trainer (default 1024)\n"
        "  --reuse R (1)               optimiser steps per fresh batch: after each, R-1 steps on batches drawn\n"
        "                              from the last --buffer M (50000) training traces (more steps per\n"
        "                              simulation when the simulator is slower than the trainer)\n"
        "  --finish F (0.25)           the last fraction F of the run (of --max-seconds, or of the optimiser\n"
        "                              steps) trains on the buffer alone, in shuffled passes, with the\n"
        "                              simulators idle: the trainer then has every core, and the last\n"
        "                              steps at a small rate see all the traces, not only the newest; 0: off\n"
        "  --timeout-ms T, --start-timeout-ms T, --max-failures K   as for ppxd simulate\n"
        "data, offline:\n"
        "  --data FILE.ppxt            prior traces (ppxd simulate output)\n"
        "  --epochs E                  passes over the training traces (default 10)\n"
        "\n"
        "network:\n"
        "  --core lstm|ff              LSTM over the controlled draws (default) or feed-forward heads\n"
        "  --hidden H (64)  --mixture K (3)  --obs-hidden H (64)  --obs-emb E (32)  --addr-emb E (16)\n"
        "  --obs-names A,B,...         the observes the network reads (default: every named Observe of the\n"
        "                              first trace, in trace order)\n"
        "training:\n"
        "  --batch B (64)  --lr LR (3e-3)  --clip C (10)\n"
        "  --lr-decay cosine|none      cosine (default): the rate falls from LR to LR/20 over the run\n"
        "                              (by traces of --max-traces/--epochs, or time of --max-seconds,\n"
        "                              whichever is further along); none: LR throughout\n"
        "  --val N (500)               the first N traces are held out for the validation loss (and give\n"
        "                              the observes' z-scores)\n"
        "  --val-every S (100)         optimiser steps between validations; the best network is kept\n"
        "  --max-seconds S             stop training after S seconds\n"
        "  --checkpoint-seconds S (30) write the best network to MODEL.ppxm at most this often\n"
        "  --seed S (1)                reproducible for a given seed (traces are consumed in index order)\n"
        "  --threads T (1)             OpenBLAS threads\n"
        "  --quiet                     no progress lines\n"
        "Ctrl-C stops training; the best network so far is written.\n");
}

typedef struct opts {
    engine_config ecfg;
    engine_sim_options sims;
    int online;
    const char *data;
    const char *out;
    uint64_t max_traces;
    double max_seconds;
    uint64_t seed;
    int batch, val, val_every, epochs, queue, threads, quiet, reuse, buffer;
    double lr, clip, checkpoint_s;
    int lr_cosine;       /* --lr-decay cosine (default) or none */
    double finish;       /* --finish: fraction of an online run spent on the buffer alone */
    ic_config cfg;
    char *obs_names;
    volatile sig_atomic_t stop; /* stop after this step, keeping the best network (SIGINT, a job's cancel) */
    char *out_own;              /* a daemon job's output path (o->out points here) */
} opts;

static int uerr(const char *msg, const char *detail)
{
    if (cli_capturing()) return cli_die(msg, detail);
    fprintf(stderr, "ppxd train ic: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    return 2;
}

static int pos_int(const char *arg, int lo, int hi, int *out)
{
    uint64_t v;
    if (args_u64(arg, &v) < 0 || v < (uint64_t)lo || v > (uint64_t)hi) return -1;
    *out = (int)v;
    return 0;
}

static int pos_double(const char *arg, double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end || !isfinite(v) || v <= 0) return -1;
    *out = v;
    return 0;
}

enum {
    O_SIM = 1000, O_CONNECT, O_DATA, O_MAXT, O_MAXS, O_SEED, O_BATCH, O_LR, O_CLIP, O_VAL, O_VALEVERY, O_EPOCHS,
    O_QUEUE, O_THREADS, O_QUIET, O_CORE, O_HIDDEN, O_MIX, O_OBSH, O_OBSE, O_ADDRE, O_OBSN, O_CKPT, O_TIMEOUT,
    O_START_TIMEOUT, O_MAXF, O_REUSE, O_BUFFER, O_LRDECAY, O_FINISH
};

static int parse(opts *o, int argc, char **argv, int job)
{
    static const struct option lo[] = {
        {"sim-cmd", required_argument, 0, O_SIM}, {"connect", required_argument, 0, O_CONNECT},
        {"data", required_argument, 0, O_DATA}, {"max-traces", required_argument, 0, O_MAXT},
        {"max-seconds", required_argument, 0, O_MAXS}, {"seed", required_argument, 0, O_SEED},
        {"batch", required_argument, 0, O_BATCH}, {"lr", required_argument, 0, O_LR},
        {"lr-decay", required_argument, 0, O_LRDECAY},
        {"clip", required_argument, 0, O_CLIP}, {"val", required_argument, 0, O_VAL},
        {"val-every", required_argument, 0, O_VALEVERY}, {"epochs", required_argument, 0, O_EPOCHS},
        {"queue", required_argument, 0, O_QUEUE}, {"threads", required_argument, 0, O_THREADS},
        {"quiet", no_argument, 0, O_QUIET}, {"core", required_argument, 0, O_CORE},
        {"hidden", required_argument, 0, O_HIDDEN}, {"mixture", required_argument, 0, O_MIX},
        {"obs-hidden", required_argument, 0, O_OBSH}, {"obs-emb", required_argument, 0, O_OBSE},
        {"addr-emb", required_argument, 0, O_ADDRE}, {"obs-names", required_argument, 0, O_OBSN},
        {"checkpoint-seconds", required_argument, 0, O_CKPT}, {"timeout-ms", required_argument, 0, O_TIMEOUT},
        {"start-timeout-ms", required_argument, 0, O_START_TIMEOUT},
        {"max-failures", required_argument, 0, O_MAXF}, {"reuse", required_argument, 0, O_REUSE},
        {"buffer", required_argument, 0, O_BUFFER}, {"finish", required_argument, 0, O_FINISH}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch, idx = 0;
    cli_getopt_reset("j:o:h");
    optind = 1;
    opterr = !cli_capturing();
    while ((ch = getopt_long(argc, argv, "j:o:h", lo, &idx)) != -1) {
        char why[160];
        switch (ch) {
        case O_SIM:
        case O_CONNECT:
        case 'j':
            if (engine_sim_option(&o->sims, ch == 'j' ? "j" : lo[idx].name, optarg, why, sizeof why) < 0)
                return uerr(why, optarg);
            break;
        case O_TIMEOUT:
        case O_START_TIMEOUT:
        case O_MAXF:
            if (engine_config_option(&o->ecfg, lo[idx].name, optarg, why, sizeof why) < 0) return uerr(why, optarg);
            break;
        case 'o': o->out = optarg; break;
        case O_DATA: o->data = optarg; break;
        case O_MAXT:
            if (args_u64(optarg, &o->max_traces) < 0 || !o->max_traces) return uerr("--max-traces wants a positive number", optarg);
            break;
        case O_MAXS:
            if (pos_double(optarg, &o->max_seconds) < 0) return uerr("--max-seconds wants a positive number", optarg);
            break;
        case O_SEED:
            if (args_u64(optarg, &o->seed) < 0) return uerr("--seed wants a non-negative integer", optarg);
            break;
        case O_BATCH:
            if (pos_int(optarg, 1, 1 << 16, &o->batch) < 0) return uerr("--batch wants a number from 1 to 65536", optarg);
            break;
        case O_LR:
            if (pos_double(optarg, &o->lr) < 0) return uerr("--lr wants a positive number", optarg);
            break;
        case O_LRDECAY:
            if (strcmp(optarg, "cosine") == 0) o->lr_cosine = 1;
            else if (strcmp(optarg, "none") == 0) o->lr_cosine = 0;
            else return uerr("--lr-decay wants cosine or none", optarg);
            break;
        case O_CLIP:
            if (pos_double(optarg, &o->clip) < 0) return uerr("--clip wants a positive number", optarg);
            break;
        case O_VAL:
            if (pos_int(optarg, 1, 1 << 20, &o->val) < 0) return uerr("--val wants a number from 1 to 1048576", optarg);
            break;
        case O_VALEVERY:
            if (pos_int(optarg, 1, 1 << 30, &o->val_every) < 0) return uerr("--val-every wants a positive number", optarg);
            break;
        case O_EPOCHS:
            if (pos_int(optarg, 1, 1 << 30, &o->epochs) < 0) return uerr("--epochs wants a positive number", optarg);
            break;
        case O_QUEUE:
            if (pos_int(optarg, 1, 1 << 20, &o->queue) < 0) return uerr("--queue wants a number from 1 to 1048576", optarg);
            break;
        case O_THREADS:
            if (pos_int(optarg, 1, 256, &o->threads) < 0) return uerr("--threads wants a number from 1 to 256", optarg);
            break;
        case O_QUIET: o->quiet = 1; break;
        case O_REUSE:
            if (pos_int(optarg, 1, 1000, &o->reuse) < 0) return uerr("--reuse wants a number from 1 to 1000", optarg);
            break;
        case O_BUFFER:
            if (pos_int(optarg, 1, 1 << 24, &o->buffer) < 0) return uerr("--buffer wants a positive number", optarg);
            break;
        case O_FINISH: {
            char *end;
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v >= 0 && v <= 0.9)) return uerr("--finish wants a fraction from 0 to 0.9", optarg);
            o->finish = v;
            break;
        }
        case O_CORE:
            if (strcmp(optarg, "lstm") == 0) o->cfg.lstm = 1;
            else if (strcmp(optarg, "ff") == 0) o->cfg.lstm = 0;
            else return uerr("--core is lstm or ff", optarg);
            break;
        case O_HIDDEN:
            if (pos_int(optarg, 1, 4096, &o->cfg.hidden) < 0) return uerr("--hidden wants a number from 1 to 4096", optarg);
            break;
        case O_MIX:
            if (pos_int(optarg, 1, 16, &o->cfg.mixture) < 0) return uerr("--mixture wants a number from 1 to 16", optarg);
            break;
        case O_OBSH:
            if (pos_int(optarg, 1, 4096, &o->cfg.obs_hidden) < 0) return uerr("--obs-hidden wants a number from 1 to 4096", optarg);
            break;
        case O_OBSE:
            if (pos_int(optarg, 1, 4096, &o->cfg.obs_emb) < 0) return uerr("--obs-emb wants a number from 1 to 4096", optarg);
            break;
        case O_ADDRE:
            if (pos_int(optarg, 1, 4096, &o->cfg.addr_emb) < 0) return uerr("--addr-emb wants a number from 1 to 4096", optarg);
            break;
        case O_OBSN: o->obs_names = optarg; break;
        case O_CKPT:
            if (pos_double(optarg, &o->checkpoint_s) < 0) return uerr("--checkpoint-seconds wants a positive number", optarg);
            break;
        case 'h':
            if (cli_capturing()) return uerr("--help is not for jobs", NULL);
            usage(stdout);
            exit(0);
        default:
            if (cli_capturing()) return cli_unknown_option(argc, argv);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) return uerr("unexpected argument", argv[optind]);
    if (!o->out && !job) return uerr("needs -o MODEL.ppxm", NULL);
    char why[200];
    /* A daemon job uses the daemon's pool: online unless it gives --data. */
    int have = job ? !o->data : engine_sim_options_apply(&o->sims, &o->ecfg, why, sizeof why);
    if (have && o->data) return uerr("give simulators or --data, not both", NULL);
    if (!have && !o->data) return uerr(why, "or --data FILE.ppxt");
    o->online = have;
    if (o->online && !o->max_traces && !(o->max_seconds > 0)) o->max_traces = 50000;
    o->ecfg.progress = 0;
    o->ecfg.seed = o->seed;
    return 0;
}

/* ---- the trainer --------------------------------------------------------------------------------------- */

typedef struct trainer {
    const opts *o;
    ic_net *net;
    trace **val_traces;
    int n_val_traces;
    ic_item *val;
    ic_item *items;      /* [batch] the batch being filled */
    ic_item **ptr;
    int nb;
    float *best;
    size_t n_best;
    double best_loss, last_val, loss_ema;
    uint64_t consumed, steps, skipped_draws, nonfinite;
    double t0, last_print, last_ckpt;
    uint64_t planned;    /* traces to consume (0: bounded by time only) */
    nn_adam_config adam;
    ic_item *buf;        /* [o->buffer] replay buffer of trained items (--reuse, --finish) */
    size_t buf_n, buf_next;
    rng buf_rng;
    /* --finish (online runs only): the fraction F, and the phase's state */
    double finish;
    int finishing;
    double finish_t0;
    uint64_t finish_steps, finish_done; /* steps the phase takes (0: until --max-seconds), taken */
    int failed;
    char source[256];
} trainer;

static int obs_layout_from(const opts *o, const trace *t, char ***names, int **widths, int *n)
{
    *names = NULL;
    *widths = NULL;
    *n = 0;
    size_t cap = 0;
    if (o->obs_names) {
        char *buf = strdup(o->obs_names), *save = NULL;
        if (!buf) return -1;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            const trace_entry *e = trace_find_name(t, tok);
            if (!e || !e->value.len) {
                fprintf(stderr, "ppxd train ic: the first trace has no value named '%s'\n", tok);
                free(buf);
                return -1;
            }
            if ((size_t)*n == cap) {
                cap = cap ? 2 * cap : 8;
                *names = realloc(*names, cap * sizeof **names);
                *widths = realloc(*widths, cap * sizeof **widths);
                if (!*names || !*widths) {
                    free(buf);
                    return -1;
                }
            }
            (*names)[*n] = strdup(tok);
            (*widths)[(*n)++] = (int)e->value.len;
        }
        free(buf);
        return 0;
    }
    for (size_t i = 0; i < t->n_entries; i++) {
        const trace_entry *e = &t->entries[i];
        if (e->kind != TRACE_OBSERVE || !e->name[0] || !e->value.len) continue;
        int dup = 0;
        for (int j = 0; j < *n; j++) dup |= strcmp((*names)[j], e->name) == 0;
        if (dup) continue;
        if ((size_t)*n == cap) {
            cap = cap ? 2 * cap : 8;
            *names = realloc(*names, cap * sizeof **names);
            *widths = realloc(*widths, cap * sizeof **widths);
            if (!*names || !*widths) return -1;
        }
        (*names)[*n] = strdup(e->name);
        (*widths)[(*n)++] = (int)e->value.len;
    }
    return 0;
}

static int trainer_make_net(trainer *tr, const trace *first)
{
    char **names;
    int *widths, n;
    if (obs_layout_from(tr->o, first, &names, &widths, &n) < 0) return -1;
    ic_config c = tr->o->cfg;
    c.obs_dim = 0;
    for (int i = 0; i < n; i++) c.obs_dim += widths[i];
    if (c.obs_dim == 0) {
        fprintf(stderr, "ppxd train ic: warning: the traces have no named Observe: the proposal cannot depend on "
                        "observations\n");
        c.obs_dim = 1;
    }
    tr->net = ic_net_new(&c, (const char *const *)names, widths, n, tr->o->seed);
    if (tr->net && !tr->o->quiet) {
        fprintf(stderr, "ppxd train ic: observes");
        for (int i = 0; i < n; i++) fprintf(stderr, " %s[%d]", names[i], widths[i]);
        fprintf(stderr, " (%d values), %s core\n", c.obs_dim, c.lstm ? "LSTM" : "feed-forward");
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(widths);
    return tr->net ? 0 : -1;
}

static int trainer_init(trainer *tr, const opts *o)
{
    memset(tr, 0, sizeof *tr);
    tr->o = o;
    tr->val_traces = calloc((size_t)o->val, sizeof *tr->val_traces);
    tr->val = calloc((size_t)o->val, sizeof *tr->val);
    tr->items = calloc((size_t)o->batch, sizeof *tr->items);
    tr->ptr = calloc((size_t)o->batch > (size_t)o->val ? (size_t)o->batch : (size_t)o->val, sizeof *tr->ptr);
    tr->best_loss = INFINITY;
    tr->last_val = NAN;
    tr->loss_ema = NAN;
    tr->adam = nn_adam_defaults();
    tr->t0 = now_s();
    tr->last_ckpt = tr->t0;
    rng_seed(&tr->buf_rng, o->seed, 0x7265757365ull);
    tr->finish = o->online ? o->finish : 0;
    if ((o->reuse > 1 || tr->finish > 0) && !(tr->buf = calloc((size_t)o->buffer, sizeof *tr->buf))) return -1;
    return tr->val_traces && tr->val && tr->items && tr->ptr ? 0 : -1;
}

static void trainer_free(trainer *tr)
{
    for (int i = 0; i < tr->n_val_traces; i++) trace_destroy(&tr->val_traces[i]);
    for (int i = 0; i < tr->o->val; i++) ic_item_free(&tr->val[i]);
    for (int i = 0; i < tr->o->batch; i++) ic_item_free(&tr->items[i]);
    free(tr->val_traces);
    free(tr->val);
    free(tr->items);
    free(tr->ptr);
    free(tr->best);
    if (tr->buf)
        for (int i = 0; i < tr->o->buffer; i++) ic_item_free(&tr->buf[i]);
    free(tr->buf);
    ic_net_destroy(&tr->net);
}

static int save_net(trainer *tr)
{
    char err[512];
    ic_net *n = tr->net;
    n->prov.n_traces = tr->consumed;
    n->prov.n_val = (uint64_t)tr->n_val_traces;
    n->prov.steps = tr->steps;
    n->prov.best_val_loss = tr->best_loss;
    n->prov.train_seconds = now_s() - tr->t0;
    n->prov.seed = tr->o->seed;
    snprintf(n->prov.source, sizeof n->prov.source, "%s", tr->source);
    if (ic_net_save(n, tr->o->out, err, sizeof err) < 0) {
        fprintf(stderr, "ppxd train ic: %s\n", err);
        return -1;
    }
    return 0;
}

static double validation_loss(trainer *tr)
{
    int V = tr->n_val_traces;
    double tot = 0;
    for (int s = 0; s < V; s += 256) {
        int m = V - s < 256 ? V - s : 256;
        for (int i = 0; i < m; i++) tr->ptr[i] = &tr->val[s + i];
        tot += ic_net_loss(tr->net, tr->ptr, m, 0) * m;
    }
    return tot / V;
}

static void validate(trainer *tr)
{
    double v = validation_loss(tr);
    tr->last_val = v;
    if (isfinite(v) && v < tr->best_loss) {
        tr->best_loss = v;
        if (tr->n_best < tr->net->n_params) {
            float *b = realloc(tr->best, tr->net->n_params * sizeof *b);
            if (!b) return;
            tr->best = b;
        }
        tr->n_best = tr->net->n_params;
        memcpy(tr->best, tr->net->params, tr->n_best * sizeof *tr->best);
        if (now_s() - tr->last_ckpt >= tr->o->checkpoint_s) {
            tr->last_ckpt = now_s();
            save_net(tr);
        }
    }
}

static void fmt_eta(double s, char *buf, size_t len)
{
    if (!isfinite(s) || s < 0) snprintf(buf, len, "?");
    else if (s < 60) snprintf(buf, len, "%.0fs", s);
    else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void progress(trainer *tr, int force)
{
    double now = now_s();
    if (tr->o->quiet || (!force && now - tr->last_print < 1.0)) return;
    tr->last_print = now;
    double el = now - tr->t0, rate = el > 0 ? (double)tr->consumed / el : 0;
    double eta = INFINITY;
    if (tr->planned && rate > 0) eta = (double)(tr->planned - (tr->consumed < tr->planned ? tr->consumed : tr->planned)) / rate;
    if (tr->o->max_seconds > 0 && tr->o->max_seconds - el < eta) eta = tr->o->max_seconds - el;
    char e[32];
    fmt_eta(eta, e, sizeof e);
    fprintf(stderr, "ppxd train ic: %llu traces, loss %.4f, val %.4f (best %.4f), %.0f traces/s, %zu addresses, ETA %s\n",
            (unsigned long long)tr->consumed, tr->loss_ema, tr->last_val, tr->best_loss, rate, tr->net->n_addrs, e);
}

/* The learning rate now: with cosine decay, from lr to lr/20 as the run
 * progresses, where progress is the larger of traces consumed / planned and
 * seconds / --max-seconds (a run with neither bound, e.g. stopped by
 * Ctrl-C only, keeps lr).  A rate that ends small lets the last steps
 * settle instead of jumping around the optimum at the initial rate. */
static double run_progress(const trainer *tr)
{
    const opts *o = tr->o;
    double F = tr->finish, f = 0;
    if (tr->finishing) {
        if (tr->finish_steps) f = (double)tr->finish_done / (double)tr->finish_steps;
        if (o->max_seconds > 0) {
            double left = o->max_seconds - (tr->finish_t0 - tr->t0);
            double ft = left > 0 ? (now_s() - tr->finish_t0) / left : 1;
            if (ft > f) f = ft;
        }
        return (1 - F) + F * (f < 1 ? f : 1);
    }
    if (tr->planned) f = (double)tr->consumed / (double)tr->planned;
    if (o->max_seconds > 0) {
        double ft = (now_s() - tr->t0) / (o->max_seconds * (1 - F));
        if (ft > f) f = ft;
    }
    return (1 - F) * (f < 1 ? f : 1);
}

static float current_lr(const trainer *tr)
{
    const opts *o = tr->o;
    if (!o->lr_cosine) return (float)o->lr;
    double f = run_progress(tr);
    double lo = o->lr / 20;
    return (float)(lo + (o->lr - lo) * 0.5 * (1 + cos(M_PI * f)));
}

static double one_step(trainer *tr, int m)
{
    ic_net_zero_grad(tr->net);
    double loss = ic_net_loss(tr->net, tr->ptr, m, 1);
    if (!isfinite(loss)) {
        tr->nonfinite++;
    } else {
        double norm = ic_net_adam_step(tr->net, &tr->adam, current_lr(tr), tr->o->clip);
        if (!isfinite(norm)) tr->nonfinite++;
        tr->loss_ema = isnan(tr->loss_ema) ? loss : 0.95 * tr->loss_ema + 0.05 * loss;
    }
    tr->steps++;
    if (tr->steps % (uint64_t)tr->o->val_every == 0) validate(tr);
    return loss;
}

/* One step on the fresh batch, then (--reuse R) R-1 steps on batches drawn
 * from the replay buffer, which then takes the fresh items (a swap: the
 * buffer's oldest items' memory is reused for the next batch).  The draws
 * come from the trainer's own RNG stream, so this is reproducible. */
static void train_step(trainer *tr)
{
    for (int i = 0; i < tr->nb; i++) tr->ptr[i] = &tr->items[i];
    one_step(tr, tr->nb);
    if (tr->buf) {
        for (int i = 0; i < tr->nb; i++) {
            ic_item tmp = tr->buf[tr->buf_next];
            tr->buf[tr->buf_next] = tr->items[i];
            tr->items[i] = tmp;
            tr->buf_next = (tr->buf_next + 1) % (size_t)tr->o->buffer;
            if (tr->buf_n < (size_t)tr->o->buffer) tr->buf_n++;
        }
        for (int r = 1; r < tr->o->reuse; r++) {
            for (int i = 0; i < tr->o->batch; i++) tr->ptr[i] = &tr->buf[rng_below(&tr->buf_rng, tr->buf_n)];
            one_step(tr, tr->o->batch);
        }
    }
    tr->consumed += (uint64_t)tr->nb;
    tr->nb = 0;
    progress(tr, 0);
}

/* 1 when a stopping condition holds: of the run, or, online with --finish,
 * of the phase in progress (simulation ends (1 - F) into the run). */
static int trainer_done(const trainer *tr)
{
    const opts *o = tr->o;
    if (o->stop || tr->failed) return 1;
    double el = now_s() - tr->t0;
    if (tr->finishing)
        return (tr->finish_steps && tr->finish_done >= tr->finish_steps) || (o->max_seconds > 0 && el >= o->max_seconds);
    if (tr->planned && tr->consumed >= tr->planned) return 1;
    if (o->max_seconds > 0 && el >= o->max_seconds * (1 - tr->finish)) return 1;
    return 0;
}

/* Shuffled passes over items[n] (batches of --batch, the last one short)
 * until trainer_done; perm [n] is workspace, sh the shuffling stream.  Each
 * step adds its batch size to consumed when count is set (offline: the
 * passes are the run's traces) and one to finish_done while finishing. */
static void train_passes(trainer *tr, ic_item *items, size_t n, size_t *perm, rng *sh, int count)
{
    const size_t B = (size_t)tr->o->batch;
    while (!trainer_done(tr)) {
        for (size_t i = 0; i < n; i++) perm[i] = i;
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)rng_below(sh, i);
            size_t tmp = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = tmp;
        }
        for (size_t s = 0; s < n && !trainer_done(tr); s += B) {
            int m = (int)(n - s < B ? n - s : B);
            for (int i = 0; i < m; i++) tr->ptr[i] = &items[perm[s + (size_t)i]];
            one_step(tr, m);
            if (count) tr->consumed += (uint64_t)m;
            if (tr->finishing) tr->finish_done++;
            progress(tr, 0);
        }
    }
}

/* --finish: the simulators have stopped; passes over the buffer until the
 * run's end (--max-seconds), or for F / (1 - F) of the steps taken so far.
 * 0 or -1 (out of memory). */
static int trainer_finish_phase(trainer *tr)
{
    if (tr->finish <= 0 || !tr->buf_n || tr->o->stop || tr->failed || tr->n_val_traces < tr->o->val) return 0;
    if (tr->nb) train_step(tr); /* the last, short fresh batch joins the buffer */
    tr->finishing = 1;
    tr->finish_t0 = now_s();
    tr->finish_done = 0;
    tr->finish_steps = tr->o->max_seconds > 0 ? 0 : (uint64_t)ceil((double)tr->steps * tr->finish / (1 - tr->finish));
    if (!tr->o->max_seconds && !tr->finish_steps) return 0;
    size_t *perm = malloc(tr->buf_n * sizeof *perm);
    if (!perm) return -1;
    if (!tr->o->quiet)
        fprintf(stderr, "ppxd train ic: simulation ended; finishing on the %zu buffered traces\n", tr->buf_n);
    rng sh;
    rng_seed(&sh, tr->o->seed, 0x66696e697368ull);
    train_passes(tr, tr->buf, tr->buf_n, perm, &sh, 0);
    free(perm);
    return 0;
}

/* Validation traces first (copied; their observes give the z-scores), then
 * training items, one step per full batch.  0 or -1. */
static int trainer_add(trainer *tr, const trace *t)
{
    if (!tr->net && trainer_make_net(tr, t) < 0) {
        tr->failed = 1;
        return -1;
    }
    if (tr->n_val_traces < tr->o->val) {
        trace *c = trace_new();
        if (!c || trace_copy(c, t) < 0) {
            trace_destroy(&c);
            tr->failed = 1;
            return -1;
        }
        tr->val_traces[tr->n_val_traces++] = c;
        if (tr->n_val_traces == tr->o->val) {
            ic_net_set_zscore(tr->net, (const trace *const *)tr->val_traces, (size_t)tr->n_val_traces);
            for (int i = 0; i < tr->n_val_traces; i++)
                if (ic_item_from_trace(tr->net, &tr->val[i], tr->val_traces[i], 1) < 0) {
                    tr->failed = 1;
                    return -1;
                }
            tr->t0 = now_s(); /* rates and --max-seconds count training, not the validation set's simulation */
            tr->last_ckpt = tr->t0;
            validate(tr);
        }
        return 0;
    }
    ic_item *it = &tr->items[tr->nb];
    if (ic_item_from_trace(tr->net, it, t, 1) < 0) {
        tr->failed = 1;
        return -1;
    }
    tr->skipped_draws += (uint64_t)it->skipped;
    tr->nb++;
    if (tr->nb == tr->o->batch) train_step(tr);
    return 0;
}

/* Final validation, best weights restored, model written.  0 or -1. */
static int trainer_finish(trainer *tr)
{
    if (!tr->net || tr->n_val_traces < tr->o->val) {
        fprintf(stderr, "ppxd train ic: only %d traces arrived, fewer than the %d validation traces: nothing trained\n",
                tr->n_val_traces, tr->o->val);
        return -1;
    }
    if (tr->nb) train_step(tr);
    validate(tr);
    if (tr->best) memcpy(tr->net->params, tr->best, tr->n_best * sizeof *tr->best);
    progress(tr, 1);
    if (tr->nonfinite)
        fprintf(stderr, "ppxd train ic: %llu steps skipped for a non-finite loss or gradient\n",
                (unsigned long long)tr->nonfinite);
    if (tr->skipped_draws)
        fprintf(stderr, "ppxd train ic: %llu draws could not be given a proposal (too wide) and stay with the prior\n",
                (unsigned long long)tr->skipped_draws);
    if (save_net(tr) < 0) return -1;
    if (!tr->o->quiet)
        fprintf(stderr, "ppxd train ic: wrote %s: %llu training traces, %llu steps, best validation loss %.6g, %.1f s\n",
                tr->o->out, (unsigned long long)tr->consumed, (unsigned long long)tr->steps, tr->best_loss,
                now_s() - tr->t0);
    return 0;
}

/* ---- online: engine -> ring -> trainer thread ------------------------------------------------------------------ */

typedef struct feed {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t Q;
    trace **ring;
    uint8_t *ready;
    uint64_t next_new, consumed, limit;
    uint64_t *retry;
    size_t n_retry, cap_retry;
    int stop;          /* the trainer is done */
    int engine_done;
    trainer *tr;
} feed;

static int feed_next(void *job, size_t slot, uint64_t *index)
{
    (void)slot;
    feed *f = job;
    int got = 0;
    pthread_mutex_lock(&f->mu);
    if (!f->stop) {
        if (f->n_retry) {
            *index = f->retry[--f->n_retry];
            got = 1;
        } else if (f->next_new < f->limit && f->next_new < f->consumed + f->Q) {
            *index = f->next_new++;
            got = 1;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return got;
}

static int feed_complete(void *job, size_t slot, uint64_t index, trace *t)
{
    (void)slot;
    feed *f = job;
    pthread_mutex_lock(&f->mu);
    size_t k = (size_t)(index % f->Q);
    trace_swap(f->ring[k], t);
    f->ready[k] = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static void feed_discard(void *job, size_t slot, uint64_t index, discard_reason why)
{
    (void)slot;
    (void)why;
    feed *f = job;
    pthread_mutex_lock(&f->mu);
    if (f->n_retry == f->cap_retry) {
        size_t cap = f->cap_retry ? 2 * f->cap_retry : 16;
        uint64_t *r = realloc(f->retry, cap * sizeof *r);
        if (r) {
            f->retry = r;
            f->cap_retry = cap;
        }
    }
    if (f->n_retry < f->cap_retry) f->retry[f->n_retry++] = index;
    pthread_mutex_unlock(&f->mu);
}

static int feed_done(void *job)
{
    feed *f = job;
    pthread_mutex_lock(&f->mu);
    int d = f->stop || f->consumed >= f->limit;
    pthread_mutex_unlock(&f->mu);
    return d;
}

static const job_ops feed_ops = {feed_next, feed_complete, feed_discard, feed_done, NULL};

static void *trainer_thread(void *arg)
{
    feed *f = arg;
    trainer *tr = f->tr;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        size_t k = (size_t)(f->consumed % f->Q);
        while (!f->ready[k] && !f->engine_done && !tr->o->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&f->cv, &f->mu, &ts);
        }
        int have = f->ready[k];
        pthread_mutex_unlock(&f->mu);
        if (!have || tr->o->stop) break;
        /* The slot is not reused until consumed moves past it. */
        trainer_add(tr, f->ring[k]);
        pthread_mutex_lock(&f->mu);
        f->ready[k] = 0;
        f->consumed++;
        pthread_mutex_unlock(&f->mu);
        if (tr->n_val_traces == tr->o->val && trainer_done(tr)) break;
    }
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* The ring between the engine and the trainer.  0 or -1 (then feed_close). */
static int feed_open(feed *f, const opts *o, trainer *tr)
{
    memset(f, 0, sizeof *f);
    f->Q = (size_t)o->queue;
    f->tr = tr;
    f->limit = o->max_traces ? (uint64_t)o->val + o->max_traces : UINT64_MAX;
    tr->planned = o->max_traces;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->ring = calloc(f->Q, sizeof *f->ring);
    f->ready = calloc(f->Q, 1);
    if (!f->ring || !f->ready) return -1;
    for (size_t i = 0; i < f->Q; i++)
        if (!(f->ring[i] = trace_new())) return -1;
    return 0;
}

static void feed_close(feed *f)
{
    for (size_t i = 0; f->ring && i < f->Q; i++) trace_destroy(&f->ring[i]);
    free(f->ring);
    free(f->ready);
    free(f->retry);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    memset(f, 0, sizeof *f);
}

/* No more traces: the trainer thread ends (and is joined). */
static void feed_end(feed *f, pthread_t th)
{
    pthread_mutex_lock(&f->mu);
    f->engine_done = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(th, NULL);
}

static int run_online(opts *o, trainer *tr)
{
    feed f;
    if (feed_open(&f, o, tr) < 0) {
        feed_close(&f);
        return -1;
    }
    engine *e = engine_new(&o->ecfg);
    int rc = -1;
    if (e) {
        g_engine = e;
        policy *p = policy_prior_new(engine_slots(e), o->seed);
        pthread_t th;
        if (p && pthread_create(&th, NULL, trainer_thread, &f) == 0) {
            int er = engine_run(e, p, &feed_ops, &f);
            feed_end(&f, th);
            g_engine = NULL;
            const engine_stats *st = engine_get_stats(e);
            snprintf(tr->source, sizeof tr->source, "online: %zu simulator%s%s%s, %llu traces simulated",
                     engine_slots(e), engine_slots(e) == 1 ? "" : "s", o->ecfg.sim_cmd ? ": " : "",
                     o->ecfg.sim_cmd ? o->ecfg.sim_cmd : "", (unsigned long long)st->traces_done);
            if (!o->quiet) engine_print_stats(e, stderr);
            if (er < 0 && !o->stop && !tr->failed && !(f.stop))
                fprintf(stderr, "ppxd train ic: the simulators stopped before training finished\n");
            if (o->stop) fprintf(stderr, "ppxd train ic: interrupted: keeping the best network so far\n");
            rc = tr->failed || trainer_finish_phase(tr) < 0 ? -1 : 0; /* (skipped when interrupted) */
            o->stop = 0;
            if (rc == 0) rc = trainer_finish(tr);
        }
        policy_destroy(&p);
        engine_destroy(&e);
    }
    feed_close(&f);
    return rc;
}

/* ---- offline ------------------------------------------------------------------------------------------------------ */

static int run_offline(opts *o, trainer *tr)
{
    char err[512];
    trace_reader *r = trace_reader_open(o->data, err, sizeof err);
    if (!r) {
        fprintf(stderr, "ppxd train ic: %s\n", err);
        return -1;
    }
    trace *t = trace_new();
    ic_item *train = NULL;
    size_t n_train = 0, cap = 0;
    int got, rc = -1;
    while ((got = trace_reader_next(r, t)) == 1) {
        if (tr->n_val_traces < o->val) {
            if (trainer_add(tr, t) < 0) goto out;
            continue;
        }
        if (n_train == cap) {
            cap = cap ? 2 * cap : 1024;
            ic_item *p = realloc(train, cap * sizeof *p);
            if (!p) goto out;
            memset(p + n_train, 0, (cap - n_train) * sizeof *p);
            train = p;
        }
        if (ic_item_from_trace(tr->net, &train[n_train], t, 1) < 0) goto out;
        tr->skipped_draws += (uint64_t)train[n_train].skipped;
        n_train++;
    }
    trace_reader_stats st = trace_reader_get_stats(r);
    if (got < 0) {
        fprintf(stderr, "ppxd train ic: %s: read error\n", o->data);
        goto out;
    }
    if (st.truncated)
        fprintf(stderr, "ppxd train ic: %s: damaged tail of %llu bytes ignored\n", o->data,
                (unsigned long long)st.bad_tail_bytes);
    if (!n_train) {
        fprintf(stderr, "ppxd train ic: %s: %llu traces, none left for training after %d validation traces\n", o->data,
                (unsigned long long)st.records, o->val);
        goto out;
    }
    snprintf(tr->source, sizeof tr->source, "offline: %s (%llu traces)", o->data, (unsigned long long)st.records);
    if (!o->quiet)
        fprintf(stderr, "ppxd train ic: %zu training and %d validation traces from %s\n", n_train, tr->n_val_traces,
                o->data);
    tr->planned = o->max_traces ? o->max_traces : (uint64_t)o->epochs * n_train;
    size_t *perm = malloc(n_train * sizeof *perm);
    if (!perm) goto out;
    rng sh;
    rng_seed(&sh, o->seed, 0x73687566666c65ull);
    tr->t0 = now_s();
    train_passes(tr, train, n_train, perm, &sh, 1);
    free(perm);
    if (o->stop) fprintf(stderr, "ppxd train ic: interrupted: keeping the best network so far\n");
    o->stop = 0;
    rc = trainer_finish(tr);
out:
    for (size_t i = 0; i < n_train; i++) ic_item_free(&train[i]);
    free(train);
    trace_destroy(&t);
    trace_reader_close(&r);
    return rc;
}

static void opts_defaults(opts *o)
{
    memset(o, 0, sizeof *o);
    engine_config_defaults(&o->ecfg);
    o->cfg = ic_config_defaults(1);
    o->seed = 1;
    o->batch = 64;
    o->lr = 3e-3;
    o->lr_cosine = 1;
    o->clip = 10;
    o->val = 500;
    o->val_every = 100;
    o->epochs = 10;
    o->queue = 1024;
    o->threads = 1;
    o->checkpoint_s = 30;
    o->reuse = 1;
    o->buffer = 50000;
    o->finish = 0.25;
}

int ppxd_train_ic_main(int argc, char **argv)
{
    opts o;
    opts_defaults(&o);
    int rc = parse(&o, argc, argv, 0);
    if (rc) {
        engine_sim_options_free(&o.sims);
        return rc;
    }
    g_stop_flag = &o.stop;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    nn_set_threads(o.threads);
    trainer tr;
    if (trainer_init(&tr, &o) < 0) {
        fprintf(stderr, "ppxd train ic: out of memory\n");
        rc = 1;
    } else {
        rc = (o.online ? run_online(&o, &tr) : run_offline(&o, &tr)) == 0 ? 0 : 1;
    }
    trainer_free(&tr);
    engine_sim_options_free(&o.sims);
    return rc;
}

/* ---- a ppxd daemon job (train_ic.h) --------------------------------------------------------------------------- */

struct ic_job {
    opts o;
    trainer tr;
    int have_tr;
    feed f;
    int have_feed;
    policy *p;
    pthread_t th;
    int th_started;
};

ic_job *ic_job_parse(int argc, char **argv, int *rc)
{
    ic_job *j = calloc(1, sizeof *j);
    *rc = 1;
    if (!j) return NULL;
    opts_defaults(&j->o);
    if ((*rc = parse(&j->o, argc, argv, 1)) != 0) {
        ic_job_destroy(&j);
        return NULL;
    }
    return j;
}

int ic_job_daemon_check(const ic_job *j, char *msg, size_t len)
{
    const opts *o = &j->o;
    const engine_sim_options *so = &o->sims;
    if (engine_sim_options_given(so))
        snprintf(msg, len, ENGINE_JOB_SIM_OPTIONS_REFUSED);
    else if (o->data)
        snprintf(msg, len, "--data reads a file on the daemon's host: not for jobs (train from the pool's simulations)");
    else if (o->out)
        snprintf(msg, len, "-o is not for jobs: the network goes to the job's directory");
    else if (engine_timeouts_changed(&o->ecfg))
        snprintf(msg, len, ENGINE_JOB_TIMEOUTS_REFUSED);
    else
        return 0;
    return -1;
}

int ic_job_set_out(ic_job *j, const char *path)
{
    free(j->o.out_own);
    j->o.out_own = strdup(path);
    j->o.out = j->o.out_own;
    return j->o.out ? 0 : -1;
}

uint64_t ic_job_seed(const ic_job *j) { return j->o.seed; }

int ic_job_sim_begin(ic_job *j, size_t slots, policy **p, const job_ops **ops, void **job)
{
    j->have_tr = 1; /* (trainer_free is safe after a failed trainer_init) */
    if (trainer_init(&j->tr, &j->o) < 0) return -1;
    j->have_feed = 1;
    if (feed_open(&j->f, &j->o, &j->tr) < 0) return -1;
    if (!(j->p = policy_prior_new(slots, j->o.seed))) return -1;
    /* The trainer takes no signals (the engine's thread does). */
    sigset_t block, old;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int perr = pthread_create(&j->th, NULL, trainer_thread, &j->f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (perr != 0) return -1;
    j->th_started = 1;
    *p = j->p;
    *ops = &feed_ops;
    *job = &j->f;
    return 0;
}

void ic_job_progress(ic_job *j, uint64_t *done, uint64_t *total)
{
    pthread_mutex_lock(&j->f.mu);
    *done = j->f.consumed;
    *total = j->f.limit == UINT64_MAX ? 0 : j->f.limit;
    pthread_mutex_unlock(&j->f.mu);
}

void ic_job_stop(ic_job *j) { j->o.stop = 1; }

int ic_job_finish(ic_job *j, char *msg, size_t len)
{
    if (j->th_started) {
        feed_end(&j->f, j->th);
        j->th_started = 0;
    }
    snprintf(j->tr.source, sizeof j->tr.source, "ppxd daemon: %llu traces from its pool",
             (unsigned long long)j->f.consumed);
    if (j->tr.failed || trainer_finish_phase(&j->tr) < 0 || trainer_finish(&j->tr) < 0) {
        snprintf(msg, len, "training failed (see the daemon's log)");
        return 1;
    }
    snprintf(msg, len, "IC network: %llu training traces, %llu steps, best validation loss %.6g",
             (unsigned long long)j->tr.consumed, (unsigned long long)j->tr.steps, j->tr.best_loss);
    return 0;
}

void ic_job_destroy(ic_job **jp)
{
    if (!jp || !*jp) return;
    ic_job *j = *jp;
    if (j->th_started) {
        j->o.stop = 1;
        feed_end(&j->f, j->th);
    }
    policy_destroy(&j->p);
    if (j->have_feed) feed_close(&j->f);
    if (j->have_tr) trainer_free(&j->tr);
    engine_sim_options_free(&j->o.sims);
    free(j->o.out_own);
    free(j);
    *jp = NULL;
}
