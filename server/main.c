/* main.c — the ppxd command line.
 *
 *   ppxd simulate  prior sampling to a trace file
 *   ppxd infer     importance sampling (prior proposal) or LMH, posterior summaries
 *   ppxd export    named values of a trace file to .npy / .csv
 *   ppxd info      count and check the records of a trace file
 *   ppxd mine      gold mining (server/mine.c); info/export also read its .ppxg files
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "engine.h"
#include "nn/nn.h"
#include "export.h"
#include "jobs.h"
#include "policy.h"
#include "policy_ic.h"
#include "stats.h"
#include "trace_store.h"
#include "serve.h"
#include "train.h"
#include "train_ic.h"
#include "mine.h"
#include "gold_cmd.h"
#include "diagnose.h"
#include "daemon.h"

/* The signal handler needs to reach the running engine. */
engine *cli_running;

static void on_signal(int sig)
{
    (void)sig;
    if (cli_running) engine_request_stop(cli_running);
}

static void usage(FILE *f)
{
    fprintf(f,
            "ppxd — simulation-based inference engine for PPX simulators\n"
            "\n"
            "usage:\n"
            "  ppxd simulate SIMULATORS -n N -o FILE.ppxt [--seed S] [--fsync never|flush|close]\n"
            "  ppxd infer    SIMULATORS -n N --observe NAME=V[,V...]... [--method is|lmh|rmh|ic] [--model M.ppxm] [--burn-in B]\n"
            "                [--latent NAME]... [--samples-out FILE.npy] [--resample M] [-o FILE.ppxt] [--seed S]\n"
            "  ppxd export   FILE.ppxt --names COLUMN,... -o OUT.npy|OUT.csv\n"
            "  ppxd info     FILE.ppxt\n"
            "  ppxd train    ic (SIMULATORS | --data FILE.ppxt) -o M.ppxm [--max-seconds S]  (ppxd train ic --help)\n"
            "  ppxd train    npe|nre (SIMULATORS -n N --theta A,.. --x B,.. | --data T.npy X.npy --prior SPEC) -o M.ppxm\n"
            "  ppxd posterior sample|logprob|info --model M.ppxm ...  (ppxd train --help, ppxd posterior --help)\n"
            "  ppxd mine     SIMULATORS -n N --theta A,.. --x B,.. [--theta1 V,..] -o GOLD.ppxg  (ppxd mine --help)\n"
            "  ppxd train    carl|rolr|rascal|cascal|alice|alices|sally|nde|scandal --gold GOLD.ppxg -o M.ppxr\n"
            "  ppxd evaluate --model M.ppxr --x-file X.npy --theta V,.. [--score]   log r^ / t^ of a gold model\n"
            "  ppxd fisher   --gold GOLD.ppxg [--model SALLY.ppxr] [--events N]   expected Fisher information\n"
            "  ppxd limits   --model M.ppxr --x-file EVENTS.npy --grid LO:HI:N...   summed log r^ over a theta grid\n"
            "  ppxd info|export GOLD.ppxg [-o PREFIX]   a gold file: summary, or its arrays as PREFIX_*.npy\n"
            "  ppxd diagnose --model M.ppxm|M.ppxr (SIMULATORS -n ROUNDS | --data T.npy X.npy) -o DIR [--obs X_O]  (calibration: NPE, NRE, IC, gold)\n"
            "  ppxd serve    --serve ENDPOINT... --model NAME=PATH... [--curve-secret F --curve-allow F] (ppxd serve --help)\n"
            "  ppxd daemon   --data-dir DIR --serve ENDPOINT... --sim-listen ENDPOINT... [--config FILE]  jobs over the\n"
            "                network, models served as trained (ppxd daemon --help; ppxctl submit|jobs|job|sims)\n"
            "\n"
            "SIMULATORS (at least one of):\n"
            ENGINE_SIM_OPTIONS_HELP
            "\n"
            "options:\n"
            "  -n N                  traces (simulate, infer --method is) or samples (lmh/rmh, all chains)\n"
            "  --observe NAME=V,...  value of an Observe (or named Sample) to condition on (repeatable); an\n"
            "                        Observe without a name is reached by its address as the simulator sends it\n"
            "  --observe-file F      lines NAME=V,... (same as --observe)\n"
            "  --fix NAME=V,...      set a named Sample (intervention, not weighted), e.g. theta\n"
            "  --latent COLUMN       summarise COLUMN (repeatable): a name, a full address (A__Normal__1), an\n"
            "                        address pattern (glob or prefix: 'A*', 'A'), or @result (the return value);\n"
            "                        default: every named Sample, else @result and the controlled addresses\n"
            "  --names COLUMN,...    export: the columns, as for --latent (ppxd info FILE lists the addresses),\n"
            "                        and @log_weight, @log_prior, @log_likelihood, @log_proposal (the trace's sums)\n"
            "  --samples-out F.npy   write resampled (is) or chain (lmh/rmh) samples of the latents\n"
            "  --resample M          number of resampled samples (default n)\n"
            "  --method is|lmh|rmh|ic  importance sampling with the prior (default); MCMC, one chain per\n"
            "                        simulator: LMH (a site redrawn from its prior each step) or RMH (a site\n"
            "                        moved near its value by a random-walk kernel of its distribution); or IC:\n"
            "                        importance sampling with a trained proposal (--model M.ppxm)\n"
            "  --model M.ppxm        the IC network for --method ic (ppxd train ic)\n"
            "  --burn-in B           MCMC steps per chain discarded first (default n/10 per chain)\n"
            "  -o FILE.ppxt          write the traces (simulate: required; infer: optional)\n"
            "  --seed S              reproducible results for a given number of simulators (default 1)\n"
            "  --timeout-ms T        per-message timeout (default 10000)\n"
            "  --start-timeout-ms T  launch-to-handshake timeout (default 30000)\n"
            "  --max-failures K      consecutive failures before a simulator is given up (default 20)\n"
            "  --max-message-bytes B largest PPX message accepted (default 64 MiB)\n"
            "  --fsync never|flush|close   trace-file durability (default flush)\n"
            "  --quiet               no progress output\n"
            "  -h, --help            this help\n");
}

/* "NAME=V1,V2,..." into an observation.  0 or -1. */
static int parse_named_values(const char *arg, observation *o)
{
    const char *eq = strchr(arg, '=');
    o->name = NULL;
    o->n = 0;
    o->values = NULL;
    if (!eq || eq == arg) return -1;
    if (!(o->name = strndup(arg, (size_t)(eq - arg)))) return -1;
    const char *p = eq + 1;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v)) goto fail;
        double *nv = realloc(o->values, (o->n + 1) * sizeof *nv);
        if (!nv) goto fail;
        o->values = nv;
        o->values[o->n++] = v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) goto fail;
    }
    if (o->n) return 0;
fail:
    /* Nothing half-parsed is kept (it would leak: callers only keep successes). */
    free(o->name);
    free(o->values);
    o->name = NULL;
    o->values = NULL;
    o->n = 0;
    return -1;
}

static int add_obs(cli *c, const char *arg)
{
    observation o;
    if (parse_named_values(arg, &o) < 0) {
        cli_complain("bad value '%s': expected NAME=NUMBER[,NUMBER...] with finite numbers", arg);
        return -1;
    }
    observation *p = realloc(c->obs, (c->n_obs + 1) * sizeof *p);
    if (!p) return -1;
    c->obs = p;
    c->obs[c->n_obs++] = o;
    return 0;
}

static int add_obs_file(cli *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_complain("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int rc = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s || *s == '#') continue;
        if (add_obs(c, s) < 0) {
            cli_complain("%s:%d: bad line", path, lineno);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

static int add_fix(cli *c, const char *arg, fixed_mode mode)
{
    observation o;
    if (parse_named_values(arg, &o) < 0) {
        cli_complain("bad value '%s': expected NAME=NUMBER[,NUMBER...]", arg);
        return -1;
    }
    fixed_value *p = realloc(c->fix, (c->n_fix + 1) * sizeof *p);
    if (!p) return -1;
    c->fix = p;
    c->fix[c->n_fix].name = o.name;
    c->fix[c->n_fix].values = o.values;
    c->fix[c->n_fix].n = o.n;
    c->fix[c->n_fix].mode = mode;
    c->n_fix++;
    return 0;
}

void cli_init(cli *c, const char *cmd)
{
    memset(c, 0, sizeof *c);
    engine_config_defaults(&c->ecfg);
    c->ecfg.progress = 1;
    c->seed = 1;
    c->burn_in = -1;
    c->fsync = TRACE_FSYNC_FLUSH;
    c->cmd = cmd;
}

void cli_free(cli *c)
{
    for (size_t i = 0; i < c->n_obs; i++) {
        free(c->obs[i].name);
        free(c->obs[i].values);
    }
    for (size_t i = 0; i < c->n_fix; i++) {
        free((char *)c->fix[i].name);
        free((double *)c->fix[i].values);
    }
    free(c->obs);
    free(c->fix);
    engine_sim_options_free(&c->sims);
    free(c->latents);
    memset(c, 0, sizeof *c);
}

enum {
    OPT_SIM_CMD = 1000, OPT_CONNECT, OPT_SEED, OPT_OBSERVE, OPT_OBSERVE_FILE, OPT_FIX, OPT_LATENT, OPT_SAMPLES_OUT,
    OPT_RESAMPLE, OPT_METHOD, OPT_BURN_IN, OPT_TIMEOUT, OPT_START_TIMEOUT, OPT_MAX_FAILURES, OPT_MAX_MSG, OPT_FSYNC,
    OPT_QUIET, OPT_NAMES, OPT_MODEL
};

int cli_parse(cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"sim-cmd", required_argument, 0, OPT_SIM_CMD},
        {"connect", required_argument, 0, OPT_CONNECT},
        ENGINE_SIM_LONG_OPTIONS(OPT_CONNECT),
        {"seed", required_argument, 0, OPT_SEED},
        {"observe", required_argument, 0, OPT_OBSERVE},
        {"observe-file", required_argument, 0, OPT_OBSERVE_FILE},
        {"fix", required_argument, 0, OPT_FIX},
        {"latent", required_argument, 0, OPT_LATENT},
        {"samples-out", required_argument, 0, OPT_SAMPLES_OUT},
        {"resample", required_argument, 0, OPT_RESAMPLE},
        {"method", required_argument, 0, OPT_METHOD},
        {"burn-in", required_argument, 0, OPT_BURN_IN},
        {"timeout-ms", required_argument, 0, OPT_TIMEOUT},
        {"start-timeout-ms", required_argument, 0, OPT_START_TIMEOUT},
        {"max-failures", required_argument, 0, OPT_MAX_FAILURES},
        {"max-message-bytes", required_argument, 0, OPT_MAX_MSG},
        {"fsync", required_argument, 0, OPT_FSYNC},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"names", required_argument, 0, OPT_NAMES},
        {"model", required_argument, 0, OPT_MODEL},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int ch;
    uint64_t v;
    cli_getopt_reset("j:n:o:h");
    optind = 2; /* argv[1] is the sub-command */
    opterr = !cli_capturing();
    int idx = 0; /* the long option just matched (engine_config_option, engine_sim_option take its name) */
    while ((ch = getopt_long(argc, argv, "j:n:o:h", opts, &idx)) != -1) {
        switch (ch) {
        case OPT_SIM_CMD:
        case OPT_CONNECT:
        case 'j': {
            char why[80];
            if (engine_sim_option(&c->sims, ch == 'j' ? "j" : opts[idx].name, optarg, why, sizeof why) < 0)
                return cli_die(why, optarg);
            break;
        }
        case 'n':
            if (args_u64(optarg, &c->n) < 0 || c->n == 0) return cli_die("-n wants a positive number", optarg);
            break;
        case 'o': c->out = optarg; break;
        case OPT_SEED:
            if (args_u64(optarg, &c->seed) < 0) return cli_die("--seed wants a non-negative integer", optarg);
            break;
        case OPT_OBSERVE:
            if (add_obs(c, optarg) < 0) return 2;
            break;
        case OPT_OBSERVE_FILE:
            if (add_obs_file(c, optarg) < 0) return 2;
            break;
        case OPT_FIX:
            if (add_fix(c, optarg, FIXED_SET) < 0) return 2;
            break;
        case OPT_LATENT:
            if (args_push(&c->latents, &c->n_latents, optarg) < 0) return 2;
            break;
        case OPT_SAMPLES_OUT: c->samples_out = optarg; break;
        case OPT_RESAMPLE:
            if (args_u64(optarg, &c->resample) < 0 || !c->resample) return cli_die("--resample wants a positive number", optarg);
            break;
        case OPT_METHOD:
            if (strcmp(optarg, "is") == 0) c->method = METHOD_IS;
            else if (strcmp(optarg, "lmh") == 0) c->method = METHOD_LMH;
            else if (strcmp(optarg, "rmh") == 0) c->method = METHOD_RMH;
            else if (strcmp(optarg, "ic") == 0) c->method = METHOD_IC;
            else return cli_die("--method is 'is', 'lmh', 'rmh' or 'ic'", optarg);
            break;
        case OPT_BURN_IN:
            if (args_u64(optarg, &v) < 0) return cli_die("--burn-in wants a non-negative number", optarg);
            c->burn_in = (int64_t)v;
            break;
        case OPT_TIMEOUT:
        case OPT_START_TIMEOUT:
        case OPT_MAX_FAILURES: {
            char why[80];
            if (engine_config_option(&c->ecfg, opts[idx].name, optarg, why, sizeof why) < 0) return cli_die(why, optarg);
            break;
        }
        case OPT_MAX_MSG:
            if (args_u64(optarg, &v) < 0 || v < 64) return cli_die("--max-message-bytes wants a number >= 64", optarg);
            c->ecfg.limits.max_message_bytes = v;
            break;
        case OPT_FSYNC:
            if (strcmp(optarg, "never") == 0) c->fsync = TRACE_FSYNC_NEVER;
            else if (strcmp(optarg, "flush") == 0) c->fsync = TRACE_FSYNC_FLUSH;
            else if (strcmp(optarg, "close") == 0) c->fsync = TRACE_FSYNC_CLOSE;
            else return cli_die("--fsync is never, flush or close", optarg);
            break;
        case OPT_QUIET: c->ecfg.progress = 0; break;
        case OPT_NAMES: c->names = optarg; break;
        case OPT_MODEL: c->model = optarg; break;
        case 'h':
            if (cli_capturing()) return cli_die("--help is not for jobs", NULL);
            usage(stdout);
            exit(0);
        default:
            if (cli_capturing()) return cli_unknown_option(argc, argv);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) c->file = argv[optind++];
    if (optind < argc) return cli_die("unexpected argument", argv[optind]);
    if (c->method == METHOD_IC && !c->model) return cli_die("--method ic needs --model M.ppxm (from ppxd train ic)", NULL);
    if (c->model && c->method != METHOD_IC) return cli_die("--model is for --method ic", NULL);
    /* Usage errors of the simulator options: exit 2 before touching any file. */
    if (!c->job && (strcmp(c->cmd, "simulate") == 0 || strcmp(c->cmd, "infer") == 0)) {
        char why[160];
        if (engine_sim_options_apply(&c->sims, &c->ecfg, why, sizeof why) == 0) return cli_die(why, NULL);
    }
    c->ecfg.obs = c->obs;
    c->ecfg.n_obs = c->n_obs;
    c->ecfg.seed = c->seed;
    return 0;
}

int main(int argc, char **argv)
{
    nn_blas_fix_coretype(argv); /* may re-execute with the right OpenBLAS kernels */
    if (argc == 2 && strcmp(argv[1], "blas-core") == 0) {
        /* The OpenBLAS kernels ppxd runs with (the test runner gives the same
         * to every test process, so in-process and served results agree). */
        printf("%s\n", openblas_get_corename());
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "train") == 0 && argc > 2 && strcmp(argv[2], "ic") == 0)
        return ppxd_train_ic_main(argc - 2, argv + 2);
    if (strcmp(argv[1], "train") == 0 && argc > 2 && gold_cmd_is_method(argv[2]))
        return gold_cmd_train_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "evaluate") == 0) return gold_cmd_evaluate_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "fisher") == 0) return gold_cmd_fisher_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "limits") == 0) return gold_cmd_limits_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "train") == 0) return ppxd_train_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "posterior") == 0) return ppxd_posterior_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0) return serve_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "mine") == 0) return ppxd_mine_main(argc - 1, argv + 1);
    if ((strcmp(argv[1], "info") == 0 || strcmp(argv[1], "export") == 0) && argc > 2 && gold_file_is(argv[2]))
        return ppxd_gold_file_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "diagnose") == 0) return ppxd_diagnose_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "daemon") == 0) return ppxd_daemon_main(argc - 1, argv + 1);
    cli c;
    cli_init(&c, argv[1]);
    int rc = cli_parse(&c, argc, argv);
    if (rc == 0) { /* on a usage error, still free what was parsed (leak-checked builds) */
        signal(SIGPIPE, SIG_IGN);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        if (strcmp(c.cmd, "simulate") == 0) rc = cmd_simulate(&c);
        else if (strcmp(c.cmd, "infer") == 0) rc = cmd_infer(&c);
        else if (strcmp(c.cmd, "export") == 0) rc = cmd_export(&c);
        else if (strcmp(c.cmd, "info") == 0) rc = cmd_info(&c);
        else {
            fprintf(stderr, "ppxd: unknown command '%s'\n\n", c.cmd);
            usage(stderr);
            rc = 2;
        }
    }
    cli_free(&c);
    return rc;
}
