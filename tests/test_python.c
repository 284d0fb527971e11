/* The Python package clients/python/ppx, from the normal test run:
 *   - each unittest module under clients/python/tests runs as
 *     `/usr/bin/python3 -m unittest tests.<module>` (cwd clients/python,
 *     PYTHONPATH=clients/python, PPXD_BUILD passed on) and must exit 0;
 *   - cross-codec checks with the C codec: ppx_decode reads every message the
 *     Python encoder writes (tests/vectors.py), and the Python decoder reads
 *     messages ppx_encode writes (test_wire.CVectors, PPX_C_VECTORS=FILE).
 * A failing Python run prints its output (the unittest report) on stderr. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ppx.h"
#include "testkit.h"

#define PYTHON "/usr/bin/python3"

/* One suite-wide timeout: per-test .timeout values make libcriterion 2.4
 * leak its timeout records when tests run concurrently (--jobs 2), which
 * fails the ASan build's leak check. */
TestSuite(python, .timeout = 600);

/* --- locating clients/python ------------------------------------------- */

static int is_pkg_root(const char *dir)
{
    char p[PATH_MAX + 64];
    if (snprintf(p, sizeof p, "%s/clients/python/ppx/__init__.py", dir) >= (int)sizeof p) return 0;
    return access(p, R_OK) == 0;
}

/* The repository root: the working directory (make test runs there), else
 * the closest parent of $PPXD_BUILD holding clients/python. */
static void repo_root(char *out, size_t len)
{
    char buf[PATH_MAX];
    if (getcwd(buf, sizeof buf) && is_pkg_root(buf)) {
        snprintf(out, len, "%s", buf);
        return;
    }
    char *b = tk_build_path(".");
    cr_assert(b);
    if (!realpath(b, buf)) snprintf(buf, sizeof buf, "%s", b);
    free(b);
    for (;;) {
        if (is_pkg_root(buf)) {
            snprintf(out, len, "%s", buf);
            return;
        }
        char *slash = strrchr(buf, '/');
        if (!slash || slash == buf) break;
        *slash = 0;
    }
    cr_assert_fail("cannot find clients/python (run from the repository root or set PPXD_BUILD)");
}

/* --- running Python ------------------------------------------------------ */

static void dump_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) fputs(line, stderr);
    fclose(f);
}

/* Run python3 with args[] (NULL-terminated, after the interpreter) in
 * clients/python, with extra_env "NAME=VALUE" (or NULL).  Returns the exit
 * status (-1 if it did not exit normally); the output goes to stderr when
 * the status is not 0 or PPXD_TEST_VERBOSE is set. */
static int run_python(const char *const *args, const char *extra_env)
{
    cr_assert(access(PYTHON, X_OK) == 0, PYTHON " not found (scripts/install-deps.sh installs python3)");
    char root[PATH_MAX], pkg[PATH_MAX + 32], build[PATH_MAX];
    repo_root(root, sizeof root);
    snprintf(pkg, sizeof pkg, "%s/clients/python", root);
    char *b = tk_build_path(".");
    if (!realpath(b, build)) snprintf(build, sizeof build, "%s", b);
    free(b);

    char log[] = "/tmp/ppx-python-test-XXXXXX";
    int fd = mkstemp(log);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));

    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        tk_child_dies_with_parent();
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        if (chdir(pkg) != 0) _exit(126);
        const char *old = getenv("PYTHONPATH");
        char pp[2 * PATH_MAX + 64];
        /* The package is pure Python: no generated code to add. */
        snprintf(pp, sizeof pp, "%s%s%s", pkg, old && *old ? ":" : "", old && *old ? old : "");
        setenv("PYTHONPATH", pp, 1);
        setenv("PPXD_BUILD", build, 1);
        setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
        setenv("MPLBACKEND", "Agg", 1);
        if (extra_env) putenv((char *)extra_env);
        const char *argv[32];
        size_t n = 0;
        argv[n++] = PYTHON;
        for (size_t i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
        argv[n] = NULL;
        execv(PYTHON, (char *const *)argv);
        _exit(127);
    }
    close(fd);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc != 0 || getenv("PPXD_TEST_VERBOSE")) {
        fprintf(stderr, "---- %s", PYTHON);
        for (size_t i = 0; args[i]; i++) fprintf(stderr, " %s", args[i]);
        fprintf(stderr, " (exit %d) ----\n", rc);
        dump_file(log);
        fprintf(stderr, "---- end ----\n");
    }
    unlink(log);
    return rc;
}

static void unittest_module(const char *module)
{
    const char *args[] = {"-m", "unittest", "-v", module, NULL};
    int rc = run_python(args, NULL);
    cr_assert_eq(rc, 0, "python3 -m unittest %s failed (exit %d); its report is above", module, rc);
}

/* --- the Python unittest modules ------------------------------------------ */

Test(python, wire_codec) { unittest_module("tests.test_wire"); }
Test(python, query_codec_and_client_fake_server) { unittest_module("tests.test_query"); }
Test(python, distributions_local_draws) { unittest_module("tests.test_dists"); }
Test(python, simulator_protocol) { unittest_module("tests.test_sim"); }
Test(python, simulator_with_ppxd_engine) { unittest_module("tests.test_engine"); }
Test(python, query_client_with_ppxd_serve) { unittest_module("tests.test_ppxd_serve"); }
Test(python, job_client_with_ppxd_daemon) { unittest_module("tests.test_daemon"); }
Test(python, cli_server_and_clients_agree) { unittest_module("tests.test_cli_agrees"); }
Test(python, plots) { unittest_module("tests.test_plot"); }

/* --- cross-codec: C decodes Python ----------------------------------------- */

/* Scalar parameters of each distribution in tests/vectors.py (DISTS). */
static const struct {
    ppx_dist_type type;
    double p0, p1;
} dist_params[] = {
    {PPX_DIST_NORMAL, 1.0, 2.0},     {PPX_DIST_UNIFORM, -1.0, 3.0},   {PPX_DIST_CATEGORICAL, 0, 0},
    {PPX_DIST_POISSON, 3.5, 0},      {PPX_DIST_BERNOULLI, 0.3, 0},    {PPX_DIST_BETA, 2.0, 5.0},
    {PPX_DIST_EXPONENTIAL, 1.5, 0},  {PPX_DIST_GAMMA, 2.0, 3.0},      {PPX_DIST_LOGNORMAL, 0.5, 0.25},
    {PPX_DIST_BINOMIAL, 10.0, 0.4},  {PPX_DIST_WEIBULL, 2.0, 1.5},
};
static const double cat_probs[4] = {1.0, 2.0, 3.0, 4.0};

static int has_params(ppx_dist_type t)
{
    return (t == PPX_DIST_CATEGORICAL || t == PPX_DIST_POISSON || t == PPX_DIST_BERNOULLI ||
            t == PPX_DIST_EXPONENTIAL) ? 1 : 2;
}

static void expect_scalar(const ppx_tensor *t, double v, const char *what)
{
    cr_assert_eq(t->ndim, 0, "%s: ndim %zu, want 0-d", what, t->ndim);
    cr_assert_eq(t->len, 1, "%s: len %zu", what, t->len);
    cr_assert_eq(t->data[0], v, "%s: %g != %g", what, t->data[0], v);
}

static void expect_tensor(const ppx_tensor *t, const double *v, size_t len, const int32_t *shape, size_t ndim,
                          const char *what)
{
    cr_assert_eq(t->len, len, "%s: len %zu, want %zu", what, t->len, len);
    cr_assert_eq(t->ndim, ndim, "%s: ndim %zu, want %zu", what, t->ndim, ndim);
    for (size_t i = 0; i < ndim; i++) cr_assert_eq(t->shape[i], shape[i], "%s: shape[%zu]", what, i);
    for (size_t i = 0; i < len; i++) cr_assert_eq(t->data[i], v[i], "%s: data[%zu]", what, i);
}

/* Checks one decoded Python vector by name; returns 1 if the name is known. */
static int check_py_vector(const char *name, const ppx_msg *m)
{
    static const double six[6] = {0, 1, 2, 3, 4, 5};
    static const int32_t s23[2] = {2, 3};
    if (strcmp(name, "handshake") == 0) {
        cr_assert_eq(m->type, PPX_MSG_HANDSHAKE);
        cr_assert_str_eq(m->system_name, "ppxd-test");
    } else if (strcmp(name, "handshake_result") == 0) {
        cr_assert_eq(m->type, PPX_MSG_HANDSHAKE_RESULT);
        cr_assert_str_eq(m->system_name, "ppx-python");
        cr_assert_str_eq(m->model_name, "model \xc3\xa9");
    } else if (strcmp(name, "run") == 0) {
        cr_assert_eq(m->type, PPX_MSG_RUN);
    } else if (strcmp(name, "run_result_scalar") == 0) {
        cr_assert_eq(m->type, PPX_MSG_RUN_RESULT);
        expect_scalar(&m->value, 2.5, name);
    } else if (strcmp(name, "run_result_absent") == 0) {
        cr_assert_eq(m->type, PPX_MSG_RUN_RESULT);
        cr_assert_eq(m->value.len, 0);
        cr_assert(m->value.ndim == 1 && m->value.shape[0] == 0, "absent value is data [], shape [0]");
    } else if (strcmp(name, "run_result_matrix") == 0) {
        cr_assert_eq(m->type, PPX_MSG_RUN_RESULT);
        expect_tensor(&m->value, six, 6, s23, 2, name);
    } else if (strncmp(name, "sample_", 7) == 0 && strcmp(name, "sample_result") != 0 &&
               strcmp(name, "sample_vec") != 0 && strcmp(name, "sample_cat2") != 0 &&
               strcmp(name, "sample_control_false") != 0 && strstr(name, "_tangent") == NULL) {
        const char *dn = name + 7;
        size_t i;
        for (i = 0; i < sizeof dist_params / sizeof *dist_params; i++)
            if (strcmp(ppx_dist_type_name(dist_params[i].type), dn) == 0) break;
        cr_assert(i < sizeof dist_params / sizeof *dist_params, "unknown distribution in %s", name);
        cr_assert_eq(m->type, PPX_MSG_SAMPLE);
        cr_assert(strncmp(m->address, "addr_", 5) == 0 && strcmp(m->address + 5, dn) == 0,
                  "%s: address %s", name, m->address);
        cr_assert_str_eq(m->name, dn);
        cr_assert_eq(m->control, 1);
        cr_assert_eq(m->dist.type, dist_params[i].type, "%s: distribution %s", name,
                     ppx_dist_type_name(m->dist.type));
        if (dist_params[i].type == PPX_DIST_CATEGORICAL) {
            static const int32_t s4[1] = {4};
            expect_tensor(&m->dist.param[0], cat_probs, 4, s4, 1, name);
        } else {
            expect_scalar(&m->dist.param[0], dist_params[i].p0, name);
            if (has_params(dist_params[i].type) == 2) expect_scalar(&m->dist.param[1], dist_params[i].p1, name);
        }
    } else if (strcmp(name, "sample_control_false") == 0) {
        cr_assert_eq(m->type, PPX_MSG_SAMPLE);
        cr_assert_eq(m->control, 0);
        cr_assert_str_eq(m->address, "a.py:3:f");
        cr_assert_str_eq(m->name, "");
        cr_assert_eq(m->dist.type, PPX_DIST_NORMAL);
    } else if (strcmp(name, "sample_vec") == 0) {
        static const double v[3] = {0, 1, 2};
        static const int32_t s3[1] = {3};
        cr_assert_eq(m->type, PPX_MSG_SAMPLE);
        expect_tensor(&m->dist.param[0], v, 3, s3, 1, name);
        expect_scalar(&m->dist.param[1], 1.0, name);
    } else if (strcmp(name, "sample_cat2") == 0) {
        static const double v[4] = {1, 1, 1, 3};
        static const int32_t s22[2] = {2, 2};
        cr_assert_eq(m->type, PPX_MSG_SAMPLE);
        cr_assert_eq(m->dist.type, PPX_DIST_CATEGORICAL);
        expect_tensor(&m->dist.param[0], v, 4, s22, 2, name);
    } else if (strcmp(name, "sample_result") == 0) {
        cr_assert_eq(m->type, PPX_MSG_SAMPLE_RESULT);
        expect_scalar(&m->value, 7.5, name);
    } else if (strcmp(name, "observe_novalue") == 0) {
        cr_assert_eq(m->type, PPX_MSG_OBSERVE);
        cr_assert_str_eq(m->address, "o");
        cr_assert_str_eq(m->name, "obs0");
        cr_assert_eq(m->dist.type, PPX_DIST_NORMAL);
        cr_assert_eq(m->value.len, 0);
    } else if (strcmp(name, "observe_value") == 0) {
        static const double p[2] = {1, 2}, v[2] = {3, 4};
        static const int32_t s2[1] = {2};
        cr_assert_eq(m->type, PPX_MSG_OBSERVE);
        cr_assert_eq(m->dist.type, PPX_DIST_POISSON);
        expect_tensor(&m->dist.param[0], p, 2, s2, 1, name);
        expect_tensor(&m->value, v, 2, s2, 1, name);
    } else if (strcmp(name, "observe_result") == 0) {
        cr_assert_eq(m->type, PPX_MSG_OBSERVE_RESULT);
    } else if (strcmp(name, "tag") == 0) {
        cr_assert_eq(m->type, PPX_MSG_TAG);
        cr_assert_str_eq(m->address, "t");
        cr_assert_str_eq(m->name, "tag");
        expect_tensor(&m->value, six, 6, s23, 2, name);
    } else if (strcmp(name, "tag_result") == 0) {
        cr_assert_eq(m->type, PPX_MSG_TAG_RESULT);
    } else if (strcmp(name, "reset") == 0) {
        cr_assert_eq(m->type, PPX_MSG_RESET);
    } else if (strcmp(name, "sample_tangent") == 0) {
        static const double d0[2] = {0.5, -1.0}, d1[2] = {0.25, 2.0};
        cr_assert_eq(m->type, PPX_MSG_SAMPLE);
        cr_assert_eq(m->dist.type, PPX_DIST_NORMAL);
        cr_assert_str_eq(m->address, "g.py:1:f");
        cr_assert(m->tangent.present && m->tangent.n_theta == 2, "%s: tangent", name);
        cr_assert_str_eq(m->tangent.theta[0], "theta_0");
        cr_assert_str_eq(m->tangent.theta[1], "theta_1");
        cr_assert(m->tangent.len[0] == 2 && m->tangent.len[1] == 2);
        for (int i = 0; i < 2; i++)
            cr_assert(m->tangent.d[0][i] == d0[i] && m->tangent.d[1][i] == d1[i], "%s: derivative %d", name, i);
    } else if (strcmp(name, "observe_tangent") == 0) {
        static const double p[2] = {1, 2}, v[2] = {3, 4};
        static const int32_t s2[1] = {2};
        cr_assert_eq(m->type, PPX_MSG_OBSERVE);
        cr_assert_eq(m->dist.type, PPX_DIST_POISSON);
        expect_tensor(&m->dist.param[0], p, 2, s2, 1, name);
        expect_tensor(&m->value, v, 2, s2, 1, name);
        cr_assert(m->tangent.present && m->tangent.n_theta == 1, "%s: tangent", name);
        cr_assert_str_eq(m->tangent.theta[0], "mu");
        cr_assert(m->tangent.len[0] == 2 && m->tangent.len[1] == 0);
        cr_assert(m->tangent.d[0][0] == 1.5 && m->tangent.d[0][1] == -2.5);
    } else if (strcmp(name, "sample_tangent_empty") == 0) {
        cr_assert_eq(m->type, PPX_MSG_SAMPLE);
        cr_assert_eq(m->dist.type, PPX_DIST_BERNOULLI);
        cr_assert(m->tangent.present, "%s: an empty tangent is still present", name);
        cr_assert(m->tangent.n_theta == 0 && m->tangent.len[0] == 0 && m->tangent.len[1] == 0);
    } else {
        return 0;
    }
    if (strstr(name, "_tangent") == NULL) cr_assert_eq(m->tangent.present, 0, "%s: unexpected tangent", name);
    return 1;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The malformed tangents of tests/vectors.py (bad_tangent_vectors) and the
 * message text both decoders give. */
static const struct {
    const char *name, *fragment;
} bad_tangents[] = {
    {"bad_tangent_short", "Sample.tangent: param0 (d mean / d theta) has 1 values, expected 0 or 2"},
    {"bad_tangent_long1", "param1 (d stddev / d theta) has 2 values"},
    {"bad_tangent_nan", "value 1 is nan"},
    {"bad_tangent_dup", "appears twice"},
    {"bad_tangent_empty_name", "theta name 1 is empty"},
    {"bad_tangent_one_param", "param1 (d (none) / d theta) has 1 values"},
    {"bad_tangent_observe", "Observe.tangent"},
};

Test(python, c_decodes_python_encodings)
{
    char path[] = "/tmp/ppx-pyvec-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    const char *args[] = {"-m", "tests.vectors", path, NULL};
    cr_assert_eq(run_python(args, NULL), 0, "tests/vectors.py failed");

    FILE *f = fopen(path, "r");
    cr_assert(f);
    static char line[1 << 16];
    int n = 0;
    size_t n_bad = 0;
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' ');
        cr_assert(sp, "bad line");
        *sp = 0;
        const char *hex = sp + 1;
        size_t hl = strcspn(hex, "\r\n");
        cr_assert(hl % 2 == 0 && hl > 0);
        /* 8-byte aligned storage, as a received ZeroMQ frame is */
        double store[4096];
        uint8_t *bytes = (uint8_t *)store;
        cr_assert(hl / 2 <= sizeof store);
        for (size_t i = 0; i < hl / 2; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            cr_assert(hi >= 0 && lo >= 0);
            bytes[i] = (uint8_t)(hi * 16 + lo);
        }
        ppx_msg m;
        ppx_error err;
        ppx_msg_init(&m);
        ppx_status st = ppx_decode(bytes, hl / 2, NULL, &m, &err);
        if (strncmp(line, "bad_tangent_", 12) == 0) {
            /* malformed tangents (vectors.bad_tangent_vectors): both decoders reject them alike */
            size_t k;
            for (k = 0; k < sizeof bad_tangents / sizeof *bad_tangents; k++)
                if (strcmp(bad_tangents[k].name, line) == 0) break;
            cr_assert(k < sizeof bad_tangents / sizeof *bad_tangents, "unknown vector %s", line);
            cr_assert_eq(st, PPX_E_TANGENT, "%s: status %s (%s)", line, ppx_status_name(st), err.message);
            cr_assert(strstr(err.message, bad_tangents[k].fragment), "%s: '%s' lacks '%s'", line, err.message,
                      bad_tangents[k].fragment);
            n_bad++;
            continue;
        }
        cr_assert_eq(st, PPX_OK, "%s: ppx_decode failed: %s", line, err.message);
        cr_assert(check_py_vector(line, &m), "unknown vector %s", line);
        ppx_msg_clear(&m);
        n++;
    }
    fclose(f);
    unlink(path);
    cr_assert_eq(n, 30, "%d vectors, want 30", n);
    cr_assert_eq(n_bad, sizeof bad_tangents / sizeof *bad_tangents, "%zu malformed-tangent vectors", n_bad);
}

/* --- cross-codec: Python decodes C ----------------------------------------- */

static void put(FILE *f, ppx_encoder *e, const char *name, const ppx_msg *m)
{
    ppx_error err;
    size_t len;
    const uint8_t *b = ppx_encode(e, m, &len, &err);
    cr_assert(b, "%s: ppx_encode failed: %s", name, err.message);
    fprintf(f, "%s ", name);
    for (size_t i = 0; i < len; i++) fprintf(f, "%02x", b[i]);
    fprintf(f, "\n");
}

static ppx_msg msg(ppx_msg_type t)
{
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = t;
    m.control = 1;
    return m;
}

Test(python, python_decodes_c_encodings)
{
    char path[] = "/tmp/ppx-cvec-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    cr_assert(f);
    ppx_encoder *e = ppx_encoder_new();
    cr_assert(e);
    static const double zero = 0.0, one = 1.0, half = 0.5, r125 = 1.25, three = 3.0;
    static const double v123[3] = {1, 2, 3}, v12[2] = {1, 2};
    static const int32_t s3[1] = {3}, s2[1] = {2}, s4[1] = {4};
    ppx_msg m;

    m = msg(PPX_MSG_HANDSHAKE);
    m.system_name = "ppxd";
    put(f, e, "handshake", &m);
    m = msg(PPX_MSG_HANDSHAKE_RESULT);
    m.system_name = "libppx";
    m.model_name = "Gaussian";
    put(f, e, "handshake_result", &m);
    m = msg(PPX_MSG_RUN);
    put(f, e, "run", &m);
    m = msg(PPX_MSG_RUN_RESULT);
    m.value = ppx_tensor_scalar(&r125);
    put(f, e, "run_result", &m);
    m = msg(PPX_MSG_RUN_RESULT);
    m.value = ppx_tensor_empty();
    put(f, e, "run_result_absent", &m);
    m = msg(PPX_MSG_SAMPLE_RESULT);
    m.value = ppx_tensor_scalar(&three);
    put(f, e, "sample_result", &m);
    m = msg(PPX_MSG_SAMPLE_RESULT);
    m.value = (ppx_tensor){v123, 3, s3, 1};
    put(f, e, "sample_result_vec", &m);
    m = msg(PPX_MSG_OBSERVE);
    m.address = "obs.c:1:f";
    m.name = "obs0";
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&zero);
    m.dist.param[1] = ppx_tensor_scalar(&one);
    m.value = ppx_tensor_scalar(&half);
    put(f, e, "observe", &m);
    m.address = NULL;
    m.name = NULL;
    m.value = ppx_tensor_empty();
    put(f, e, "observe_novalue", &m);
    m = msg(PPX_MSG_OBSERVE_RESULT);
    put(f, e, "observe_result", &m);
    m = msg(PPX_MSG_TAG);
    m.address = "tag.c:2:g";
    m.name = "t";
    m.value = (ppx_tensor){v12, 2, s2, 1};
    put(f, e, "tag", &m);
    m = msg(PPX_MSG_TAG_RESULT);
    put(f, e, "tag_result", &m);
    m = msg(PPX_MSG_RESET);
    put(f, e, "reset", &m);
    m = msg(PPX_MSG_SAMPLE);
    m.address = "x";
    m.name = "x";
    m.control = 0;
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = ppx_tensor_scalar(&zero);
    m.dist.param[1] = ppx_tensor_scalar(&one);
    put(f, e, "sample_control_false", &m);
    /* the parameter-tangent extension */
    static const double two = 2.0, d0[2] = {1, 2}, d1[2] = {3, 4}, mean2[2] = {0, 1}, x2[2] = {0.5, 1.5},
                        dmu[2] = {0.5, 0.25};
    static const char *const ab[2] = {"a", "b"}, *const mu[1] = {"mu"};
    m = msg(PPX_MSG_SAMPLE);
    m.address = "galton.c:1:f";
    m.dist.type = PPX_DIST_GAMMA;
    m.dist.param[0] = ppx_tensor_scalar(&two);
    m.dist.param[1] = ppx_tensor_scalar(&three);
    m.tangent = (ppx_tangent){1, 2, ab, {d0, d1}, {2, 2}};
    put(f, e, "sample_tangent", &m);
    m = msg(PPX_MSG_OBSERVE);
    m.address = "o";
    m.name = "obs";
    m.dist.type = PPX_DIST_NORMAL;
    m.dist.param[0] = (ppx_tensor){mean2, 2, s2, 1};
    m.dist.param[1] = ppx_tensor_scalar(&one);
    m.value = (ppx_tensor){x2, 2, s2, 1};
    m.tangent = (ppx_tangent){1, 1, mu, {dmu, NULL}, {2, 0}};
    put(f, e, "observe_tangent", &m);
    m = msg(PPX_MSG_SAMPLE);
    m.address = "b";
    m.name = "b";
    m.dist.type = PPX_DIST_BERNOULLI;
    m.dist.param[0] = ppx_tensor_scalar(&half);
    m.tangent = (ppx_tangent){1, 0, NULL, {NULL, NULL}, {0, 0}};
    put(f, e, "sample_tangent_empty", &m);
    m.tangent.present = 0;
    m.address = "n";
    m.name = "n";
    put(f, e, "sample_no_tangent", &m);
    for (size_t i = 0; i < sizeof dist_params / sizeof *dist_params; i++) {
        char name[64], addr[64];
        const char *dn = ppx_dist_type_name(dist_params[i].type);
        snprintf(name, sizeof name, "sample_%s", dn);
        snprintf(addr, sizeof addr, "addr_%s", dn);
        m = msg(PPX_MSG_SAMPLE);
        m.address = addr;
        m.name = dn;
        m.dist.type = dist_params[i].type;
        if (dist_params[i].type == PPX_DIST_CATEGORICAL) {
            m.dist.param[0] = (ppx_tensor){cat_probs, 4, s4, 1};
        } else {
            m.dist.param[0] = ppx_tensor_scalar(&dist_params[i].p0);
            if (has_params(dist_params[i].type) == 2) m.dist.param[1] = ppx_tensor_scalar(&dist_params[i].p1);
        }
        put(f, e, name, &m);
    }
    ppx_encoder_destroy(&e);
    fclose(f);

    char env[PATH_MAX + 32];
    snprintf(env, sizeof env, "PPX_C_VECTORS=%s", path);
    const char *args[] = {"-m", "unittest", "-v", "tests.test_wire.CVectors", NULL};
    int rc = run_python(args, env);
    unlink(path);
    cr_assert_eq(rc, 0, "tests.test_wire.CVectors failed (exit %d); its report is above", rc);
}
