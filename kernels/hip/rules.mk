# SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
#
# kernels/hip: the MoE layer as GPU kernels, one source for hipcc (AMD) and
# nvcc (NVIDIA, through kernels/hip/compat.h), and the GPU test program
# tests/gpu. Included by kernels/rules.mk. Nothing here is part of `make
# all`: the build machines have no GPU and may lack either compiler.
#
#   make kernels-check   compile every kernels/hip/*.hip with hipcc (into
#                        $(BUILD)/hip) and nvcc (into $(BUILD)/cuda),
#                        warnings as errors, and link the GPU test program
#                        with each; one line per step, "ok NAME",
#                        "FAIL NAME: why" or "SKIP NAME: why", then
#                        "kernels: N passed, N failed, N skipped"
#   make hip-plugin      the GPU backend libmoex loads at run time,
#                        $(BUILD)/libmoex-hip.so.0, built with nvcc where
#                        it is, else hipcc (HIP_PLUGIN_CC=hipcc|nvcc
#                        chooses); it exports moek_hip.h's functions only
#   make gpu-check       build and run the GPU test programs (nvcc when
#                        present, else hipcc): the kernels (gpu-moe, also
#                        with MOEK_MMA=0: gemm.hip for the large tile) and
#                        libmoex's backend with the plugin (gpu-backend);
#                        they SKIP without a GPU.
#                        The top Makefile's check-gpu runs it.
#
# hipcc 5.2 must always be given --offload-arch (its detection crashes
# without a GPU). HIP_ARCHS and CUDA_ARCH choose the targets.
# HIPCC_EXTRA_FLAGS go on every hipcc compile (debian/rules: the hardening
# flags of CXXFLAGS and CPPFLAGS, without -O and -g); the hipcc link of the
# plugin takes LDFLAGS, as libmoex's does.

# runtime/rules.mk, which defines LIBMOEX_A, is included after this file:
# rule prerequisites are expanded as they are read, so without this line
# every $(LIBMOEX_A) prerequisite below is empty and a fresh tree's `make
# gpu-bundle` (or gpu-check) links before libmoex.a exists.
LIBMOEX_A := $(BUILD)/libmoex.a

HIPCC ?= hipcc
NVCC ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) \
	$(shell command -v nvcc 2>/dev/null))
HIP_ARCHS ?= gfx90a gfx940
CUDA_ARCH ?= sm_90

HIP_SRCS := $(sort $(wildcard kernels/hip/*.hip))
HIP_NAMES := $(HIP_SRCS:kernels/hip/%.hip=%)
HIP_HDRS := kernels/include/moek.h $(wildcard kernels/hip/*.h)
HIP_INC := -Ikernels/include -Ikernels/hip

# f32 denormals kept (gemv.hip's e4m3 decode relies on them): never fast
# math, and say so to both compilers.
HIPCC_FLAGS := -std=c++17 -O3 -fPIC -Wall -Wextra -Werror \
	-fno-gpu-flush-denormals-to-zero \
	$(HIP_ARCHS:%=--offload-arch=%) $(HIP_INC) $(HIPCC_EXTRA_FLAGS)
NVCC_FLAGS := -std=c++17 -O3 -arch=$(CUDA_ARCH) -ftz=false \
	-Werror all-warnings -Xcompiler -fPIC,-Wall,-Wextra,-Werror $(HIP_INC)

HIP_OBJS := $(HIP_NAMES:%=$(BUILD)/hip/%.o)
CUDA_OBJS := $(HIP_NAMES:%=$(BUILD)/cuda/%.o)

# The plugin: the kernels plus the shape helpers of kernels/ref they call,
# with every symbol but moek_hip_* local (kernels/hip/plugin.map), so that
# its copy of moek_shape_check() never meets libmoex's.
HIP_PLUGIN_SONAME := libmoex-hip.so.0
HIP_PLUGIN_MAP := kernels/hip/plugin.map
HIP_PLUGIN_COMMON := kernels/ref/moek_common.c
HIP_PLUGIN_CUDA := $(BUILD)/cuda/$(HIP_PLUGIN_SONAME)
HIP_PLUGIN_HIP := $(BUILD)/hip/$(HIP_PLUGIN_SONAME)

# libmoex's "hip" backend on the GPU: plain C against libmoex.a, loading
# the plugin through MOEX_HIP_LIB (tests/gpu/test_backend.c).
GPU_BACKEND_TEST := $(BUILD)/tests/gpu/gpu-backend

$(GPU_BACKEND_TEST): tests/gpu/test_backend.c $(LIBMOEX_A) tests/unit/harness.h \
		tests/unit/fakeioctl.h
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -Itests/unit -DSUITE='"gpu-backend"' \
		-o $@ $< $(LIBMOEX_A) $(LIBMOEX_LIBS)

# The GPU test program: C11 against moek_hip.h and libmoex.a's reference.
GPU_TEST_SRC := tests/gpu/test_gpu.c
GPU_TEST_CUDA := $(BUILD)/cuda/gpu-moe
GPU_TEST_HIP := $(BUILD)/hip/gpu-moe
GPU_TEST_CFLAGS := $(MOEX_CFLAGS) $(CFLAGS) -Itests/unit -Ikernels/hip \
	-DSUITE='"gpu"'

.PHONY: kernels-check gpu-check hip-plugin hip-plugin-check

# Which compiler builds $(BUILD)/libmoex-hip.so.0.
HIP_PLUGIN_CC ?= $(if $(NVCC),nvcc,hipcc)
HIP_PLUGIN := $(if $(filter nvcc,$(HIP_PLUGIN_CC)),$(HIP_PLUGIN_CUDA),$(HIP_PLUGIN_HIP))

hip-plugin: $(HIP_PLUGIN)
	ln -sf $(patsubst $(BUILD)/%,%,$(HIP_PLUGIN)) $(BUILD)/$(HIP_PLUGIN_SONAME)

# The plugin exports exactly the functions libmoex resolves (hip.c's
# table), each at the version node the map gives them.
hip-plugin-check: $(HIP_PLUGIN)
	tools/check-plugin $(HIP_PLUGIN) runtime/src/hip.h

$(BUILD)/hip/%.o: kernels/hip/%.hip $(HIP_HDRS)
	@mkdir -p $(@D)
	$(HIPCC) $(HIPCC_FLAGS) -c -o $@ $<

$(BUILD)/cuda/%.o: kernels/hip/%.hip $(HIP_HDRS)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -x cu -c -o $@ $<

$(BUILD)/cuda/moek_common.o $(BUILD)/hip/moek_common.o: $(HIP_PLUGIN_COMMON) \
		kernels/include/moek.h
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -fPIC -c -o $@ $<

$(HIP_PLUGIN_CUDA): $(CUDA_OBJS) $(BUILD)/cuda/moek_common.o $(HIP_PLUGIN_MAP)
	$(NVCC) -arch=$(CUDA_ARCH) -shared -o $@ $(CUDA_OBJS) \
		$(BUILD)/cuda/moek_common.o \
		-Xlinker -soname=$(HIP_PLUGIN_SONAME) \
		-Xlinker --version-script=$(HIP_PLUGIN_MAP) -Xlinker -z,defs

$(HIP_PLUGIN_HIP): $(HIP_OBJS) $(BUILD)/hip/moek_common.o $(HIP_PLUGIN_MAP)
	$(HIPCC) $(HIP_ARCHS:%=--offload-arch=%) $(LDFLAGS) -shared -o $@ \
		$(HIP_OBJS) $(BUILD)/hip/moek_common.o \
		-Wl,-soname,$(HIP_PLUGIN_SONAME) \
		-Wl,--version-script,$(HIP_PLUGIN_MAP)

$(BUILD)/tests/gpu/test_gpu.o: $(GPU_TEST_SRC) kernels/hip/moek_hip.h \
		kernels/include/moek.h tests/unit/harness.h
	@mkdir -p $(@D)
	$(CC) $(GPU_TEST_CFLAGS) -c -o $@ $<

$(GPU_TEST_CUDA): $(BUILD)/tests/gpu/test_gpu.o $(CUDA_OBJS) $(LIBMOEX_A)
	$(NVCC) -arch=$(CUDA_ARCH) -o $@ $(BUILD)/tests/gpu/test_gpu.o \
		$(CUDA_OBJS) $(LIBMOEX_A) $(LIBMOEX_LIBS)

$(GPU_TEST_HIP): $(BUILD)/tests/gpu/test_gpu.o $(HIP_OBJS) $(LIBMOEX_A)
	$(HIPCC) $(HIP_ARCHS:%=--offload-arch=%) -o $@ \
		$(BUILD)/tests/gpu/test_gpu.o $(HIP_OBJS) $(LIBMOEX_A) \
		$(LIBMOEX_LIBS)

# One compile per line; a failure is reported, not fatal, so that every
# file is tried. $(1): name, $(2): the make target, $(3): compiler or "".
define hip_try
	if [ -z "$(3)" ]; then \
		echo "SKIP $(1): $(4) not found"; s=$$((s + 1)); \
	elif $(MAKE) --no-print-directory -s $(2) >$(BUILD)/kcheck.log 2>&1; then \
		echo "ok $(1)"; p=$$((p + 1)); \
	else \
		echo "FAIL $(1): $$(grep -m1 -E 'error|Error' $(BUILD)/kcheck.log || tail -n1 $(BUILD)/kcheck.log)"; \
		sed 's/^/    /' $(BUILD)/kcheck.log | head -n 40; f=$$((f + 1)); \
	fi;
endef

HIPCC_PATH := $(shell command -v $(HIPCC) 2>/dev/null)

kernels-check:
	@mkdir -p $(BUILD); p=0; f=0; s=0; \
	$(foreach n,$(HIP_NAMES),$(call hip_try,hipcc/$(n),$(BUILD)/hip/$(n).o,$(HIPCC_PATH),hipcc)) \
	$(foreach n,$(HIP_NAMES),$(call hip_try,nvcc/$(n),$(BUILD)/cuda/$(n).o,$(NVCC),nvcc)) \
	$(call hip_try,hipcc/link-gpu-moe,$(GPU_TEST_HIP),$(HIPCC_PATH),hipcc) \
	$(call hip_try,nvcc/link-gpu-moe,$(GPU_TEST_CUDA),$(NVCC),nvcc) \
	$(call hip_try,hipcc/plugin,hip-plugin-check HIP_PLUGIN_CC=hipcc,$(HIPCC_PATH),hipcc) \
	$(call hip_try,nvcc/plugin,hip-plugin-check HIP_PLUGIN_CC=nvcc,$(NVCC),nvcc) \
	$(call hip_try,nvcc/gpu-bundle,gpu-bundle,$(NVCC),nvcc) \
	rm -f $(BUILD)/kcheck.log; \
	echo "kernels: $$p passed, $$f failed, $$s skipped"; \
	[ $$f -eq 0 ]

# The GPU test: nvcc's build where nvcc is, else hipcc's, else a SKIP.
GPU_TEST := $(if $(NVCC),$(GPU_TEST_CUDA),$(if $(HIPCC_PATH),$(GPU_TEST_HIP)))

gpu-check: $(GPU_TEST) $(GPU_BACKEND_TEST)
ifeq ($(GPU_TEST),)
	@echo "SKIP gpu: neither nvcc nor hipcc found"
	@echo "gpu: 0 passed, 0 failed, 1 skipped"
	MOEX_HIP_LIB=/nonexistent $(GPU_BACKEND_TEST)
else
	$(MAKE) -s hip-plugin
	$(GPU_TEST); r=$$?; \
	MOEK_MMA=0 $(GPU_TEST) || r=1; \
	MOEX_HIP_LIB=$(abspath $(HIP_PLUGIN)) $(GPU_BACKEND_TEST) || r=1; \
	exit $$r
endif

# ---- a bundle to run on a GPU machine ----
#
# make gpu-bundle: $(BUILD)/gpu-bundle/, everything the GPU tests and the
# GPU benchmark need, built here with nvcc, to copy to a machine that has
# a GPU but not this tree's build dependencies: the plugin, gpu-moe,
# gpu-backend and moex-bench (liburing linked statically; the CUDA runtime
# is static in nvcc's links), torch-moe.py, and `run`, which runs them all
# (tools/gpu-bundle-run). moex-bench finds the plugin beside itself.
GPU_BUNDLE := $(BUILD)/gpu-bundle
comma := ,
GPU_BUNDLE_LIBS := -Wl,-Bstatic -luring -Wl,-Bdynamic -lpthread -lm -ldl
GPU_BUNDLE_FILES := $(addprefix $(GPU_BUNDLE)/,libmoex-hip.so.0 gpu-moe \
	gpu-backend moex-bench torch-moe.py run)

.PHONY: gpu-bundle
gpu-bundle: $(GPU_BUNDLE_FILES)

$(GPU_BUNDLE)/libmoex-hip.so.0: $(HIP_PLUGIN_CUDA)
	@mkdir -p $(@D)
	cp $< $@

$(GPU_BUNDLE)/gpu-moe: $(BUILD)/tests/gpu/test_gpu.o $(CUDA_OBJS) $(LIBMOEX_A)
	@mkdir -p $(@D)
	$(NVCC) -arch=$(CUDA_ARCH) -o $@ $(BUILD)/tests/gpu/test_gpu.o \
		$(CUDA_OBJS) $(LIBMOEX_A) $(subst -Wl$(comma),-Xlinker ,$(GPU_BUNDLE_LIBS))

$(GPU_BUNDLE)/gpu-backend: tests/gpu/test_backend.c $(LIBMOEX_A) \
		tests/unit/harness.h tests/unit/fakeioctl.h
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -Itests/unit -DSUITE='"gpu-backend"' \
		-o $@ $< $(LIBMOEX_A) $(GPU_BUNDLE_LIBS)

$(GPU_BUNDLE)/moex-bench: $(BUILD)/obj/tools/moex-bench.o \
		$(BUILD)/obj/tools/bench-moe.o $(BUILD)/obj/tools/bench-gpu.o \
		$(LIBMOEX_A)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(LIBMOEX_A) $(GPU_BUNDLE_LIBS)

$(GPU_BUNDLE)/torch-moe.py: tools/torch-moe.py
	@mkdir -p $(@D)
	cp $< $@

$(GPU_BUNDLE)/run: tools/gpu-bundle-run
	@mkdir -p $(@D)
	cp $< $@
