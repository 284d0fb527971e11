# ppxd — one hand-written Makefile.
#   make          build everything (daemon, libraries, examples, tests, benches)
#   make test     build and run every test (installs missing packages first)
#   make asan     build with AddressSanitizer + UBSan into build/asan and run the tests
#   make bench    build and run the benchmarks (prints figures, not a test)
#   make demo     build, start ppxd with an example simulator, run inference
#   make fuzz     libFuzzer targets (clang) for FUZZ_SECONDS (default 60) each
#   make faults   the fault campaign (scripts/faults.sh; FAULTS_SCALE=full|short)
#   make docker-test  images, compose, scaled simulators, jobs, with podman (minutes)
#   make slurm-test   the Slurm job-array example on a one-node Slurm cluster
#   make clean    remove build/
# Missing Debian packages are installed by scripts/install-deps.sh (as root).

BUILD    ?= build
CC       ?= gcc
CXX      ?= g++
SAN      ?=
PKGS     := libzmq openblas criterion flatbuffers

# Also the Python client's modules, from Debian's python3 (not a pyenv one).
DEPS_OK := $(shell pkg-config --exists $(PKGS) 2>/dev/null && command -v flatc >/dev/null 2>&1 && \
             command -v gfortran >/dev/null 2>&1 && command -v cmake >/dev/null 2>&1 && \
             /usr/bin/python3 -c 'import zmq, flatbuffers, numpy, matplotlib, yaml' >/dev/null 2>&1 && echo yes)

.PHONY: all test asan bench demo clean deps install uninstall fuzz fuzz-build fuzz-seeds faults docker-test slurm-test
.DEFAULT_GOAL := all

ifneq ($(DEPS_OK),yes)
# Something is missing: install it, then run the same goal again in a fresh make
# (so that pkg-config flags are computed with the packages present).
all test asan bench demo install fuzz faults docker-test slurm-test:
	sh scripts/install-deps.sh
	$(MAKE) $@
deps:
	sh scripts/install-deps.sh
clean:
	rm -rf build
else

deps:
	@true

OPT      := -O2 -g
ifeq ($(SAN),1)
OPT      := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
# The fuzz build (clang): every object instrumented for libFuzzer's coverage.
ifeq ($(SAN),fuzz)
OPT      := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
endif
INCS     := -Iprotocol -Isrc -Iclients/c -Iserver -Itests/support -I$(BUILD)/gen
CFLAGS   += -std=c11 -Wall -Wextra -Werror $(OPT) -D_GNU_SOURCE -pthread $(INCS) \
            $(shell pkg-config --cflags libzmq openblas)
CXXFLAGS += -std=c++17 -Wall -Wextra -Werror $(OPT) -pthread $(INCS) \
            $(shell pkg-config --cflags flatbuffers)
LDLIBS   := $(shell pkg-config --libs libzmq openblas) -lstdc++ -lm -pthread
TESTLIBS := $(shell pkg-config --libs criterion)
DEPFLAGS  = -MMD -MP

# ---- sources -------------------------------------------------------------
PROTO_SRC  := $(wildcard protocol/*.cc)
CORE_SRC   := $(wildcard src/*.c src/*/*.c)
SIMLIB_SRC := $(wildcard clients/c/*.c)
SERVER_SRC := $(wildcard server/*.c)
EX_SRC     := $(wildcard clients/examples/*.c)
EX_CXX_SRC := $(wildcard clients/examples/*.cc)
EX_F90_SRC := $(wildcard clients/examples/*.f90)
TEST_SRC   := $(wildcard tests/test_*.c)
TESTLIB_SRC:= $(wildcard tests/support/*.c)
BENCH_SRC  := $(wildcard tests/bench_*.c)
TESTSIM_SRC:= $(wildcard tests/sims/*.c)
SCHEMAS    := $(wildcard protocol/*.fbs)
GEN_HDRS   := $(patsubst protocol/%.fbs,$(BUILD)/gen/%_generated.h,$(SCHEMAS))

obj = $(patsubst %,$(BUILD)/obj/%.o,$(basename $(1)))

PROTO_OBJ  := $(call obj,$(PROTO_SRC))
CORE_OBJ   := $(call obj,$(CORE_SRC))
SIMLIB_OBJ := $(call obj,$(SIMLIB_SRC))
SERVER_OBJ := $(call obj,$(SERVER_SRC))
TESTLIB_OBJ:= $(call obj,$(TESTLIB_SRC))
SERVER_MAIN:= $(BUILD)/obj/server/main.o
SERVER_LIB_OBJ := $(filter-out $(SERVER_MAIN),$(SERVER_OBJ))

LIBPROTO := $(BUILD)/libppxproto.a
LIBCORE  := $(BUILD)/libppxcore.a
LIBPPX   := $(BUILD)/libppx.a
LIBSERVER:= $(BUILD)/libppxserver.a
PPXD     := $(BUILD)/ppxd
EXAMPLES := $(patsubst clients/examples/%.c,$(BUILD)/examples/%,$(EX_SRC)) \
            $(patsubst clients/examples/%.cc,$(BUILD)/examples/%,$(EX_CXX_SRC)) \
            $(patsubst clients/examples/%.f90,$(BUILD)/examples/%,$(EX_F90_SRC))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCHES  := $(patsubst tests/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
# Misbehaving simulators for the fault tests.
TESTSIMS := $(patsubst tests/sims/%.c,$(BUILD)/testsims/%,$(TESTSIM_SRC))

all: $(LIBPPX) $(if $(SERVER_SRC),$(PPXD)) $(EXAMPLES) $(TESTSIMS) $(TESTS) $(BENCHES)

# ---- code generation: flatc output is never edited or committed ----------
$(BUILD)/gen/%_generated.h: protocol/%.fbs
	@mkdir -p $(@D)
	flatc --cpp -o $(BUILD)/gen $<

# ---- compilation ---------------------------------------------------------
$(BUILD)/obj/%.o: %.c | $(GEN_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cc $(GEN_HDRS)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(DEPFLAGS) -c $< -o $@

# ---- libraries -----------------------------------------------------------
$(LIBPROTO): $(PROTO_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIBCORE): $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
# libppx: the simulator-side library, self-contained (codec + distributions).
$(LIBPPX): $(SIMLIB_OBJ) $(PROTO_OBJ) $(CORE_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(LIBSERVER): $(SERVER_LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

LINK_ALL := $(if $(SERVER_LIB_OBJ),$(LIBSERVER)) $(LIBPPX)

$(PPXD): $(SERVER_MAIN) $(LINK_ALL)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# ppxctl: command-line client of `ppxd serve` (clients/ppxctl.c on libppx).
all: $(BUILD)/ppxctl
$(BUILD)/ppxctl: $(BUILD)/obj/clients/ppxctl.o $(LIBPPX)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# ppx-bridge: joins a bind-only simulator to a ppxd --sim-listen endpoint.
all: $(BUILD)/ppx-bridge
$(BUILD)/ppx-bridge: $(BUILD)/obj/clients/ppx_bridge.o $(LIBPPX)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/examples/%: $(BUILD)/obj/clients/examples/%.o $(LIBPPX)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# libppx from C++ and Fortran: the same plain C ABI.
$(BUILD)/examples/%: clients/examples/%.cc $(LIBPPX)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $< $(LIBPPX) -o $@ $(LDLIBS)

# The binding module first, then the program that uses it.
$(BUILD)/examples/%: clients/examples/%.f90 clients/fortran/ppx.f90 $(LIBPPX)
	@mkdir -p $(@D) $(BUILD)/obj/f90
	gfortran -std=f2008 -Wall -Werror $(OPT) -J$(BUILD)/obj/f90 clients/fortran/ppx.f90 $< $(LIBPPX) -o $@ $(LDLIBS)

$(BUILD)/testsims/%: $(BUILD)/obj/tests/sims/%.o $(LIBPPX)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TESTLIB_OBJ) $(LINK_ALL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(TESTLIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/tests/%.o $(TESTLIB_OBJ) $(LINK_ALL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# ---- installing like a library ---------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=...]: the programs, libppx (static
# and shared with a soname), its headers, pkg-config and CMake files, the
# Fortran module and the Python package.  make uninstall removes them.
PREFIX   ?= /usr/local
VERSION  := 0.1.0
SOVERSION:= 0
PYDIR    := $(PREFIX)/lib/python3/dist-packages
# The shared library needs position-independent objects of its own.
PIC_OBJ  := $(patsubst %,$(BUILD)/pic/%.o,$(basename $(SIMLIB_SRC) $(PROTO_SRC) $(CORE_SRC)))
LIBPPX_SO:= $(BUILD)/libppx.so.$(VERSION)
PPX_HEADERS := clients/c/ppx_sim.h clients/c/ppx_query.h src/dist.h src/rng.h protocol/ppx.h protocol/ppxq.h
INSTALL_BINS = $(PPXD) $(BUILD)/ppxctl $(BUILD)/ppx-bridge

$(BUILD)/pic/%.o: %.c | $(GEN_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fPIC $(DEPFLAGS) -c $< -o $@
$(BUILD)/pic/%.o: %.cc $(GEN_HDRS)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -fPIC $(DEPFLAGS) -c $< -o $@
$(LIBPPX_SO): $(PIC_OBJ)
	$(CXX) -shared -Wl,-soname,libppx.so.$(SOVERSION) $^ -o $@ $(LDLIBS)
$(BUILD)/f90mod/ppx.mod: clients/fortran/ppx.f90
	@mkdir -p $(@D)
	gfortran -std=f2008 -Wall -Werror $(OPT) -J$(@D) -c $< -o $(@D)/ppx_f90.o

# Only what it installs (not the tests and benchmarks): the images build with it.
install: $(INSTALL_BINS) $(LIBPPX) $(LIBPPX_SO) $(BUILD)/f90mod/ppx.mod
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/ppx $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/lib/cmake/ppx $(DESTDIR)$(PYDIR)/ppx
	install -m 755 $(INSTALL_BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBPPX) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBPPX_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libppx.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libppx.so.$(SOVERSION)
	ln -sf libppx.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libppx.so
	install -m 644 $(PPX_HEADERS) clients/fortran/ppx.f90 $(BUILD)/f90mod/ppx.mod $(DESTDIR)$(PREFIX)/include/ppx/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' clients/ppx.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ppx.pc
	for f in ppxConfig ppxConfigVersion; do \
	    sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@SOVERSION@|$(SOVERSION)|g' \
	        clients/cmake/$$f.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/ppx/$$f.cmake; done
	install -m 644 clients/python/ppx/*.py $(DESTDIR)$(PYDIR)/ppx/
	@echo "installed under $(DESTDIR)$(PREFIX)"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/ppxd $(DESTDIR)$(PREFIX)/bin/ppxctl $(DESTDIR)$(PREFIX)/bin/ppx-bridge
	rm -f $(DESTDIR)$(PREFIX)/lib/libppx.a $(DESTDIR)$(PREFIX)/lib/libppx.so $(DESTDIR)$(PREFIX)/lib/libppx.so.$(SOVERSION) \
	    $(DESTDIR)$(PREFIX)/lib/libppx.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/pkgconfig/ppx.pc
	rm -rf $(DESTDIR)$(PREFIX)/include/ppx $(DESTDIR)$(PREFIX)/lib/cmake/ppx $(DESTDIR)$(PYDIR)/ppx

# ---- goals ---------------------------------------------------------------
# Tests find the binaries they drive through PPXD_BUILD.
test: all
	PPXD_BUILD=$(abspath $(BUILD)) sh scripts/run-tests.sh $(TESTS)

asan:
	$(MAKE) BUILD=build/asan SAN=1 test

bench: all
	PPXD_BUILD=$(abspath $(BUILD)) sh scripts/run-bench.sh $(BENCHES)

demo: all
	PPXD_BUILD=$(abspath $(BUILD)) sh scripts/demo.sh

clean:
	rm -rf build

# ---- fuzzing ---------------------------------------------------------------
# `make fuzz` builds tests/fuzz/fuzz_*.c and every library object with clang
# and -fsanitize=fuzzer,address,undefined into build/fuzz, then runs each
# target for FUZZ_SECONDS from its committed seed corpus (tests/fuzz/corpus).
# clang and its fuzzer runtime are installed only for this goal.  Linked by
# clang++: the C++ codec needs UBSan's C++ runtime.
FUZZ_SECONDS ?= 60
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_OK := $(shell command -v clang >/dev/null 2>&1 && command -v clang++ >/dev/null 2>&1 && \
             ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 && echo yes)

ifeq ($(SAN),fuzz)
fuzz-build: $(FUZZ_BINS) $(BUILD)/fuzz/make_seeds
$(BUILD)/fuzz/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(LINK_ALL)
	@mkdir -p $(@D)
	$(CXX) $(OPT) -pthread -fsanitize=fuzzer $^ -o $@ $(LDLIBS)
$(BUILD)/fuzz/make_seeds: $(BUILD)/obj/tests/fuzz/make_seeds.o $(LINK_ALL)
	@mkdir -p $(@D)
	$(CXX) $(OPT) -pthread $^ -o $@ $(LDLIBS)
endif

fuzz:
ifneq ($(FUZZ_OK),yes)
	sh scripts/install-deps.sh --fuzz
endif
	$(MAKE) BUILD=build/fuzz CC=clang CXX=clang++ SAN=fuzz fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh scripts/run-fuzz.sh build/fuzz/fuzz

# Regenerate the committed seed corpora with the project's encoders.
fuzz-seeds:
ifneq ($(FUZZ_OK),yes)
	sh scripts/install-deps.sh --fuzz
endif
	$(MAKE) BUILD=build/fuzz CC=clang CXX=clang++ SAN=fuzz fuzz-build
	build/fuzz/fuzz/make_seeds tests/fuzz/corpus

# The container deployment, for real, with podman (scripts/docker-test.sh):
# base image, both images, docker/compose.yaml with scaled simulators, jobs,
# a posterior queried through the published port.  Not part of `make test`
# (minutes, and it needs podman: installed here by install-deps.sh --docker).
docker-test: $(BUILD)/ppxctl
	sh scripts/install-deps.sh --docker
	BUILD=$(BUILD) sh scripts/docker-test.sh

# The Slurm job-array example on a private one-node Slurm cluster started on
# this machine (scripts/slurm-test.sh; Debian's slurm-wlm and munge, root).
slurm-test: $(PPXD) $(BUILD)/examples/gaussian
	sh scripts/install-deps.sh --slurm
	BUILD=$(BUILD) sh scripts/slurm-test.sh

# The fault campaign (scripts/faults.sh): FAULTS_SCALE=full (default) or short.
FAULTS_SCALE ?= full
faults: all
	PPXD_BUILD=$(abspath $(BUILD)) sh scripts/faults.sh $(FAULTS_SCALE)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
endif
.SECONDARY:
