# ppxd — one hand-written Makefile.
#   make          build everything (daemon, libraries, examples, tests, benches)
#   make test     build and run every test (installs missing packages first)
#   make asan     build with AddressSanitizer + UBSan into build/asan and run the tests
#   make bench    build and run the benchmarks (prints figures, not a test)
#   make demo     build, start ppxd with an example simulator, run inference
#   make clean    remove build/
# Missing Debian packages are installed by scripts/install-deps.sh (as root).

BUILD    ?= build
CC       ?= gcc
CXX      ?= g++
SAN      ?=
PKGS     := libzmq openblas criterion flatbuffers

# Also the Python client's modules, from Debian's python3 (not a pyenv one).
DEPS_OK := $(shell pkg-config --exists $(PKGS) 2>/dev/null && command -v flatc >/dev/null 2>&1 && \
             command -v gfortran >/dev/null 2>&1 && \
             /usr/bin/python3 -c 'import zmq, flatbuffers, numpy, matplotlib' >/dev/null 2>&1 && echo yes)

.PHONY: all test asan bench demo clean deps
.DEFAULT_GOAL := all

ifneq ($(DEPS_OK),yes)
# Something is missing: install it, then run the same goal again in a fresh make
# (so that pkg-config flags are computed with the packages present).
all test asan bench demo:
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

$(BUILD)/examples/%: clients/examples/%.f90 $(LIBPPX)
	@mkdir -p $(@D) $(BUILD)/obj/f90
	gfortran -std=f2008 -Wall -Werror $(OPT) -J$(BUILD)/obj/f90 $< $(LIBPPX) -o $@ $(LDLIBS)

$(BUILD)/testsims/%: $(BUILD)/obj/tests/sims/%.o $(LIBPPX)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TESTLIB_OBJ) $(LINK_ALL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(TESTLIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/tests/%.o $(TESTLIB_OBJ) $(LINK_ALL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

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

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
endif
.SECONDARY:
