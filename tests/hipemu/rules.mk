# SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
#
# tests/hipemu: kernels/hip built by g++ against a CPU emulation of the
# device (hipemu.h says what it emulates), so that the GPU tests run on a
# machine without a GPU. Included by the top Makefile; `make check` runs
# hipemu-check.
#
#   make hipemu-check    for each warp size (32 as on NVIDIA, 64 as on
#                        CDNA): the emulator's own tests (test_hipemu.cpp),
#                        tests/gpu/test_gpu.c on the emulated
#                        kernels, then the emulated plugin through
#                        libmoex's "hip" backend (tests/gpu/test_backend.c,
#                        MOEX_HIP_LIB), after tools/check-plugin has
#                        checked its exports; the backend runs twice,
#                        first with two devices (HIPEMU_DEVICES=2: its
#                        test of threads on MOEX_GPU=1), the second
#                        time with slow host-device copies
#
# Outputs, per warp size W: $(BUILD)/hipemu/wW/{*.o,gpu-moe,gpu-backend,
# libmoex-hip.so.0,test-hipemu}.

HIPEMU_WARPS := 32 64
# libmoex's backend uses two streams: each piece of their work starts up
# to this many microseconds late, at random (hipemu.cpp).
HIPEMU_JITTER_US ?= 300
# The backend's second run, of the tests with an expert cache: copies
# between host and device move this many MB/s (hipemu.cpp), so that a
# cache fill outlasts the next run's kernels. Without the compute stream's
# wait for the fill, 3 or 4 of those 4 tests fail at each warp size (at
# 0.5, none at warp 64: its kernels run slower here).
HIPEMU_COPY_MBPS ?= 0.2
HIPEMU_CACHE_TESTS := cache_bf16_streams_and_fills cache_fp8_streams_and_fills \
	queue_sync queue_uring_completions_from_the_gpu
HIPEMU_CXX ?= g++
# fmaf() is the kernels' inner loop: inline where this machine (which also
# runs the tests) has FMA, rather than a libm call.
HIPEMU_FMA := $(shell grep -qw fma /proc/cpuinfo 2>/dev/null && echo -mfma)
HIPEMU_FLAGS := -std=c++17 -O2 -g -fPIC -Wall -Wextra -Werror \
	-Wno-unknown-pragmas $(HIPEMU_FMA) -DMOEK_HIP_EMU -Itests/hipemu \
	$(HIP_INC)
HIPEMU_HDRS := $(HIP_HDRS) tests/hipemu/hipemu.h

# The same object names as $(BUILD)/cuda and $(BUILD)/hip, plus the
# emulator; the directory's name carries the warp size.
hipemu_objs = $(HIP_NAMES:%=$(BUILD)/hipemu/w$(1)/%.o) \
	$(BUILD)/hipemu/w$(1)/hipemu.o

# One set of rules per warp size $(1): make's pattern rules take one
# stem, and the object's name is that.
define hipemu_rules
$(BUILD)/hipemu/w$(1)/%.o: kernels/hip/%.hip $(HIPEMU_HDRS)
	@mkdir -p $$(@D)
	$(HIPEMU_CXX) $(HIPEMU_FLAGS) -DHIPEMU_WARP=$(1) -x c++ -c -o $$@ $$<

$(BUILD)/hipemu/w$(1)/hipemu.o: tests/hipemu/hipemu.cpp tests/hipemu/hipemu.h
	@mkdir -p $$(@D)
	$(HIPEMU_CXX) $(HIPEMU_FLAGS) -DHIPEMU_WARP=$(1) -c -o $$@ $$<

$(BUILD)/hipemu/w$(1)/test-hipemu: tests/hipemu/test_hipemu.cpp \
		$(BUILD)/hipemu/w$(1)/hipemu.o
	$(HIPEMU_CXX) $(HIPEMU_FLAGS) -DHIPEMU_WARP=$(1) -o $$@ $$^ -lpthread

$(BUILD)/hipemu/w$(1)/test_gpu.o: $(GPU_TEST_SRC) kernels/hip/moek_hip.h \
		kernels/include/moek.h tests/unit/harness.h
	@mkdir -p $$(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -Itests/unit -Ikernels/hip \
		-DSUITE='"hipemu-w$(1)-gpu"' -c -o $$@ $$<

$(BUILD)/hipemu/w$(1)/gpu-moe: $(BUILD)/hipemu/w$(1)/test_gpu.o \
		$(call hipemu_objs,$(1)) $(LIBMOEX_A)
	$(HIPEMU_CXX) -o $$@ $$(filter %.o,$$^) $(LIBMOEX_A) $(LIBMOEX_LIBS)

$(BUILD)/hipemu/w$(1)/moek_common.o: $(HIP_PLUGIN_COMMON) kernels/include/moek.h
	@mkdir -p $$(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -fPIC -c -o $$@ $$<

$(BUILD)/hipemu/w$(1)/$(HIP_PLUGIN_SONAME): $(call hipemu_objs,$(1)) \
		$(BUILD)/hipemu/w$(1)/moek_common.o $(HIP_PLUGIN_MAP)
	$(HIPEMU_CXX) -shared -o $$@ $$(filter %.o,$$^) -lpthread \
		-Wl,-soname,$(HIP_PLUGIN_SONAME) \
		-Wl,--version-script,$(HIP_PLUGIN_MAP) -Wl,-z,defs

$(BUILD)/hipemu/w$(1)/gpu-backend: tests/gpu/test_backend.c $(LIBMOEX_A) \
		tests/unit/harness.h tests/unit/fakeioctl.h
	@mkdir -p $$(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -Itests/unit \
		-DSUITE='"hipemu-w$(1)-backend"' \
		-o $$@ $$< $(LIBMOEX_A) $(LIBMOEX_LIBS)
endef
$(foreach w,$(HIPEMU_WARPS),$(eval $(call hipemu_rules,$(w))))

HIPEMU_BINS := $(foreach w,$(HIPEMU_WARPS),$(addprefix $(BUILD)/hipemu/w$(w)/,\
	test-hipemu gpu-moe gpu-backend $(HIP_PLUGIN_SONAME)))

.PHONY: hipemu-check
# The warp sizes run side by side (each is one host thread at a time);
# each one's output is shown whole when it ends.
hipemu-check: $(HIPEMU_BINS)
	@pids=; for w in $(HIPEMU_WARPS); do \
		d=$(BUILD)/hipemu/w$$w; \
		( r=0; \
		$$d/test-hipemu || r=1; \
		if tools/check-plugin $$d/$(HIP_PLUGIN_SONAME) \
				runtime/src/hip.h; then \
			echo "hipemu-w$$w-plugin: 1 passed, 0 failed"; \
		else \
			echo "hipemu-w$$w-plugin: 0 passed, 1 failed"; r=1; \
		fi; \
		$$d/gpu-moe || r=1; \
		lib=$(abspath $(BUILD))/hipemu/w$$w/$(HIP_PLUGIN_SONAME); \
		HIPEMU_JITTER_US=$(HIPEMU_JITTER_US) MOEX_HIP_LIB=$$lib \
		HIPEMU_DEVICES=2 $$d/gpu-backend || r=1; \
		HIPEMU_JITTER_US=$(HIPEMU_JITTER_US) MOEX_HIP_LIB=$$lib \
		HIPEMU_COPY_MBPS=$(HIPEMU_COPY_MBPS) \
		MOEX_TEST_SUITE=hipemu-w$$w-backend-slowcopy \
			$$d/gpu-backend $(HIPEMU_CACHE_TESTS) || r=1; \
		exit $$r ) >$$d/check.log 2>&1 & \
		pids="$$pids $$!"; \
	done; \
	r=0; for p in $$pids; do wait $$p || r=1; done; \
	for w in $(HIPEMU_WARPS); do cat $(BUILD)/hipemu/w$$w/check.log; done; \
	exit $$r
