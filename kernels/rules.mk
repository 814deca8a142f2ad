# SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
#
# The MoE compute kernels. kernels/ref (scalar reference and the helpers
# every backend shares) and kernels/cpu (SIMD + threads) are C and go into
# libmoex; kernels/hip is built by kernels/hip/rules.mk. Included by the top
# Makefile before runtime/rules.mk, which compiles KERNELS_SRCS.
#
# Instruction sets are chosen at run time, so only the files that hold one
# ISA's code are compiled for it, by name: *_avx2.c and *_avx512.c.

KERNELS_SRCS := $(sort $(wildcard kernels/ref/*.c kernels/cpu/*.c))

KERNELS_AVX2_FLAGS := -mavx2 -mfma -mf16c
KERNELS_AVX512_FLAGS := $(KERNELS_AVX2_FLAGS) -mavx512f -mavx512bw \
	-mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni

$(BUILD)/obj/kernels/%_avx2.o $(BUILD)/san/obj/kernels/%_avx2.o: \
	KERNELS_CFLAGS = $(KERNELS_AVX2_FLAGS)
$(BUILD)/obj/kernels/%_avx512.o $(BUILD)/san/obj/kernels/%_avx512.o: \
	KERNELS_CFLAGS = $(KERNELS_AVX512_FLAGS)

-include kernels/hip/rules.mk
