/* test_install.c — `make install` into a temporary prefix, then simulators
 * built out of the tree against the installed files only: C with
 * `pkg-config --cflags --libs ppx`, C++ with CMake's find_package(ppx),
 * Fortran with the installed `ppx` module; each is driven by the installed
 * ppxd.  Then `make uninstall` leaves nothing behind, and the Python package
 * imports from the prefix. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>

#include "testkit.h"

static char g_dir[128];
static char g_src[PATH_MAX];

static void setup(void)
{
    cr_assert_eq(tk_tmpdir(g_dir, sizeof g_dir, "install"), 0);
    /* The source tree: the nearest directory above the build directory
     * (build/, or build/asan/) that holds the Makefile and server/. */
    char *b = tk_build_path(".");
    cr_assert_not_null(realpath(b, g_src));
    free(b);
    for (;;) {
        char *slash = strrchr(g_src, '/');
        cr_assert(slash && slash != g_src, "no source tree above the build directory");
        *slash = 0;
        char mk[PATH_MAX + 16], srv[PATH_MAX + 16];
        snprintf(mk, sizeof mk, "%s/Makefile", g_src);
        snprintf(srv, sizeof srv, "%s/server/main.c", g_src);
        if (access(mk, F_OK) == 0 && access(srv, F_OK) == 0) break;
    }
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

/* Run a shell command line; its output to DIR/log.txt.  Returns the exit code. */
static int sh(const char *fmt, ...)
{
    char line[4096], log[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    snprintf(log, sizeof log, "%s/log.txt", g_dir);
    char *argv[] = {"/bin/sh", "-c", line, NULL};
    int rc = tk_run(argv, log, log, 900000);
    if (rc != 0) {
        size_t n;
        char *text = (char *)tk_slurp(log, &n);
        fprintf(stderr, "$ %s\n%s\n", line, text ? text : "");
        free(text);
    }
    return rc;
}

/* The installed ppxd drives `sim`: 50 prior traces of the Gaussian model. */
static void check_drives(const char *prefix, const char *sim)
{
    cr_assert_eq(sh("LD_LIBRARY_PATH='%s/lib' '%s/bin/ppxd' simulate --sim-cmd 'env LD_LIBRARY_PATH=%s/lib %s "
                    "{endpoint}' -n 50 -o '%s/t.ppxt' --quiet && '%s/bin/ppxd' info '%s/t.ppxt' | grep -q '50 traces'",
                    prefix, prefix, prefix, sim, g_dir, prefix, g_dir),
                 0, "the installed ppxd could not drive %s", sim);
}

Test(install, out_of_tree_simulators_build_against_the_installed_files, .init = setup, .fini = teardown,
     .timeout = 1200)
{
    const char *build = getenv("PPXD_BUILD");
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s/prefix", g_dir);
    cr_assert_eq(sh("env -u MAKEFLAGS -u MFLAGS make -s SAN= -C '%s' BUILD='%s' install PREFIX='%s'", g_src, build ? build : "build", prefix), 0,
                 "make install failed");
    const char *want[] = {"bin/ppxd", "bin/ppxctl", "bin/ppx-bridge", "lib/libppx.a", "lib/libppx.so", "lib/libppx.so.0",
                          "lib/pkgconfig/ppx.pc", "lib/cmake/ppx/ppxConfig.cmake", "include/ppx/ppx_sim.h",
                          "include/ppx/ppx.mod", "lib/python3/dist-packages/ppx/__init__.py"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", prefix, want[i]);
        cr_assert_eq(access(p, F_OK), 0, "%s was not installed", want[i]);
    }
    cr_assert_eq(sh("objdump -p '%s/lib/libppx.so' | grep -q 'SONAME *libppx.so.0'", prefix), 0, "no soname");

    /* C, with pkg-config. */
    cr_assert_eq(sh("cp '%s/clients/examples/gaussian.c' '%s/' && cd '%s' && "
                    "PKG_CONFIG_PATH='%s/lib/pkgconfig' cc -std=c11 gaussian.c -o gaussian_c "
                    "$(PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --cflags --libs ppx) -lm",
                    g_src, g_dir, g_dir, prefix, prefix),
                 0, "the C simulator did not build with pkg-config");
    char sim[512];
    snprintf(sim, sizeof sim, "%s/gaussian_c", g_dir);
    check_drives(prefix, sim);

    /* C++, with CMake. */
    cr_assert_eq(sh("mkdir -p '%s/cxx' && cp '%s/clients/examples/gaussian_cpp.cc' '%s/cxx/' && cd '%s/cxx' && "
                    "printf 'cmake_minimum_required(VERSION 3.16)\\nproject(sim CXX)\\nfind_package(ppx 0.1 "
                    "REQUIRED)\\nadd_executable(gaussian_cpp gaussian_cpp.cc)\\ntarget_link_libraries(gaussian_cpp "
                    "PRIVATE ppx::ppx)\\n' > CMakeLists.txt && cmake -S . -B b -DCMAKE_PREFIX_PATH='%s' >/dev/null && "
                    "cmake --build b >/dev/null",
                    g_dir, g_src, g_dir, g_dir, prefix),
                 0, "the C++ simulator did not build with CMake");
    snprintf(sim, sizeof sim, "%s/cxx/b/gaussian_cpp", g_dir);
    check_drives(prefix, sim);

    /* Fortran, with the installed module. */
    cr_assert_eq(sh("cd '%s' && cp '%s/clients/examples/gaussian_fortran.f90' . && gfortran -std=f2008 "
                    "-I'%s/include/ppx' gaussian_fortran.f90 -o gaussian_f -L'%s/lib' -lppx",
                    g_dir, g_src, prefix, prefix),
                 0, "the Fortran simulator did not build with the installed module");
    snprintf(sim, sizeof sim, "%s/gaussian_f", g_dir);
    check_drives(prefix, sim);

    /* The Python package imports from the prefix. */
    cr_assert_eq(sh("cd / && PYTHONPATH='%s/lib/python3/dist-packages' /usr/bin/python3 -c "
                    "'import ppx, sys; sys.exit(0 if ppx.__file__.startswith(\"%s\") else 1)'",
                    prefix, prefix),
                 0, "the installed Python package does not import");

    /* pip installs the package offline from its pyproject.toml (a copy of
     * the source: pip writes build files next to it). */
    cr_assert_eq(sh("cp -r '%s/clients/python' '%s/pysrc' && /usr/bin/python3 -m pip install -q --no-build-isolation "
                    "--no-deps --no-index --target '%s/pyt' '%s/pysrc' && cd / && PYTHONPATH='%s/pyt' /usr/bin/python3 "
                    "-c 'import ppx; ppx.Normal(0, 1)'",
                    g_src, g_dir, g_dir, g_dir, g_dir),
                 0, "pip install of clients/python failed");

    /* DESTDIR stages the same tree; uninstall removes it all. */
    char stage[300];
    snprintf(stage, sizeof stage, "%s/stage", g_dir);
    cr_assert_eq(sh("env -u MAKEFLAGS -u MFLAGS make -s SAN= -C '%s' BUILD='%s' install DESTDIR='%s' PREFIX=/opt/ppx && test -x '%s/opt/ppx/bin/ppxd'",
                    g_src, build ? build : "build", stage, stage),
                 0, "DESTDIR install failed");
    cr_assert_eq(sh("env -u MAKEFLAGS -u MFLAGS make -s SAN= -C '%s' BUILD='%s' uninstall PREFIX='%s' && test -z \"$(find '%s' -type f -o -type l)\"",
                    g_src, build ? build : "build", prefix, prefix),
                 0, "make uninstall left files behind");
}
