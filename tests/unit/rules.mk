# SPDX-License-Identifier: GPL-2.0
#
# User-space unit tests (no device needed). Each tests/unit/test_<s>.c is
# the suite unit-<s>, built twice: $(BUILD)/tests/unit/unit-<s> (CFLAGS,
# against libmoex.a) and $(BUILD)/san/tests/unit/unit-<s>-san (SAN_CFLAGS,
# against the sanitizer libmoex.a). unit-moexctl runs moexctl as a
# subprocess: the plain suite $(BUILD)/moexctl, the sanitizer suite
# $(BUILD)/san/moexctl (moexctl built with SAN_CFLAGS, libmoex linked in);
# unit-watch does the same for `moexctl stats --watch`.
#
# `selftest` and `pin` run on moexctl-fake: moexctl linked with
# tests/unit/fakedrv.c, a user-space fake of the driver (plain and san);
# unit-run runs `moex-bench queue` on moex-bench-fake (plain).
#
# `make unit-check` runs every binary in UNIT_TESTS; each prints one line per
# test and "<suite>: N passed, N failed, N skipped"; it fails if any did.

UNIT_SUITES := $(patsubst tests/unit/test_%.c,%,$(sort $(wildcard tests/unit/test_*.c)))
UNIT_PLAIN := $(UNIT_SUITES:%=$(BUILD)/tests/unit/unit-%)
UNIT_SAN := $(UNIT_SUITES:%=$(BUILD)/san/tests/unit/unit-%-san)
MOEXCTL_SAN := $(BUILD)/san/moexctl
MOEXCTL_FAKE := $(BUILD)/tests/unit/moexctl-fake
MOEXCTL_FAKE_SAN := $(BUILD)/san/tests/unit/moexctl-fake
MOEX_BENCH_FAKE := $(BUILD)/tests/unit/moex-bench-fake

UNIT_TESTS += $(UNIT_PLAIN) $(UNIT_SAN)

# The fakes are built without -MMD (two sources, one binary).
UNIT_HDRS := runtime/include/moex.h uapi/linux/moex.h

# $(1): the moexctl, $(2): the moexctl-fake a suite runs.
UNIT_CFLAGS = -Itests/unit -DMOEXCTL='"$(abspath $(1))"' \
	-DMOEXCTL_FAKE='"$(abspath $(2))"' -DMKMODEL='"$(abspath $(MKMODEL))"' \
	-DMOEX_RUN='"$(abspath $(MOEX_RUN))"'

# unit-moe_hip loads the pretend GPU plugin (fakegpu.c, with the scalar
# reference it runs) through MOEX_HIP_LIB; everything but the moek_hip_*
# functions and the fakegpu_* test knobs is hidden.
FAKEGPU_SRCS := tests/unit/fakegpu.c kernels/ref/moe_ref.c kernels/ref/moek_common.c
FAKEGPU := $(BUILD)/tests/unit/libmoex-hip-fake.so
FAKEGPU_SAN := $(BUILD)/san/tests/unit/libmoex-hip-fake.so
FAKEGPU_FLAGS := -shared -fPIC -fvisibility=hidden -pthread

$(FAKEGPU): $(FAKEGPU_SRCS) kernels/hip/moek_hip.h kernels/include/moek.h
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) $(FAKEGPU_FLAGS) -o $@ $(FAKEGPU_SRCS) -lm

$(FAKEGPU_SAN): $(FAKEGPU_SRCS) kernels/hip/moek_hip.h kernels/include/moek.h
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(SAN_CFLAGS) $(FAKEGPU_FLAGS) -o $@ $(FAKEGPU_SRCS) -lm

# The same built as a plugin of ABI 1 (without moek_hip_use()), which
# libmoex must refuse for its ABI.
FAKEGPU_ABI1 := $(BUILD)/tests/unit/libmoex-hip-fake-abi1.so

$(FAKEGPU_ABI1): $(FAKEGPU_SRCS) kernels/hip/moek_hip.h kernels/include/moek.h
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) $(FAKEGPU_FLAGS) -DFAKEGPU_ABI1 -o $@ \
		$(FAKEGPU_SRCS) -lm

# It also runs the plain `moex-bench moe --backend hip --quick` and
# moex-run on the plain fake GPU (a sanitized plugin needs a sanitized
# program).
UNIT_HIP_FLAGS = -DFAKEGPU='"$(abspath $(1))"' \
	-DFAKEGPU_PLAIN='"$(abspath $(FAKEGPU))"' \
	-DFAKEGPU_ABI1='"$(abspath $(FAKEGPU_ABI1))"' \
	-DMOEX_BENCH='"$(abspath $(MOEX_BENCH))"'
$(BUILD)/tests/unit/unit-moe_hip: $(FAKEGPU) $(FAKEGPU_ABI1) $(MOEX_BENCH) \
	$(MKMODEL) $(MOEX_RUN)
$(BUILD)/tests/unit/unit-moe_hip: UNIT_EXTRA = $(call UNIT_HIP_FLAGS,$(FAKEGPU))
$(BUILD)/san/tests/unit/unit-moe_hip-san: $(FAKEGPU_SAN) $(FAKEGPU) \
	$(FAKEGPU_ABI1) $(MOEX_BENCH) \
	$(MKMODEL) $(MOEX_RUN)
$(BUILD)/san/tests/unit/unit-moe_hip-san: UNIT_EXTRA = $(call UNIT_HIP_FLAGS,$(FAKEGPU_SAN))

$(BUILD)/tests/unit/unit-%: tests/unit/test_%.c $(LIBMOEX_A)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) $(call UNIT_CFLAGS,$(MOEXCTL),$(MOEXCTL_FAKE)) $(UNIT_EXTRA) \
		-DSUITE='"unit-$*"' -MMD -MP -o $@ $< $(LIBMOEX_A) $(LIBMOEX_LIBS)

$(BUILD)/san/tests/unit/unit-%-san: tests/unit/test_%.c $(LIBMOEX_SAN_A)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(SAN_CFLAGS) $(call UNIT_CFLAGS,$(MOEXCTL_SAN),$(MOEXCTL_FAKE_SAN)) $(UNIT_EXTRA) \
		-DSUITE='"unit-$*-san"' -MMD -MP -o $@ $< $(LIBMOEX_SAN_A) $(LIBMOEX_LIBS)

# unit-run and unit-mkmodel run the plain tools (both builds of the suite).
$(BUILD)/tests/unit/unit-run $(BUILD)/san/tests/unit/unit-run-san \
$(BUILD)/tests/unit/unit-mkmodel $(BUILD)/san/tests/unit/unit-mkmodel-san: \
	$(MKMODEL) $(MOEX_RUN)
# unit-run also runs moex-bench load, and queue on the fake driver.
$(BUILD)/tests/unit/unit-run $(BUILD)/san/tests/unit/unit-run-san: \
	$(MOEX_BENCH) $(MOEX_BENCH_FAKE)
$(BUILD)/tests/unit/unit-run $(BUILD)/san/tests/unit/unit-run-san: \
	UNIT_EXTRA = -DMOEX_BENCH='"$(abspath $(MOEX_BENCH))"' \
		-DMOEX_BENCH_FAKE='"$(abspath $(MOEX_BENCH_FAKE))"'
$(BUILD)/tests/unit/unit-moexctl: $(MOEXCTL) $(MOEXCTL_FAKE)
$(BUILD)/san/tests/unit/unit-moexctl-san: $(MOEXCTL_SAN) $(MOEXCTL_FAKE_SAN)
# unit-model_load loads mkmodel's models (with model.c built in).
$(BUILD)/tests/unit/unit-model_load $(BUILD)/san/tests/unit/unit-model_load-san: \
	$(MKMODEL)
# unit-watch runs moexctl stats --watch and mkmodel's models.
$(BUILD)/tests/unit/unit-watch: $(MOEXCTL) $(MKMODEL)
$(BUILD)/san/tests/unit/unit-watch-san: $(MOEXCTL_SAN) $(MKMODEL)

$(MOEXCTL_SAN): tools/moexctl.c $(LIBMOEX_SAN_A)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(SAN_CFLAGS) -MMD -MP -o $@ $< $(LIBMOEX_SAN_A) $(LIBMOEX_LIBS)

$(MOEXCTL_FAKE): tools/moexctl.c tests/unit/fakedrv.c $(LIBMOEX_A) $(UNIT_HDRS)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -o $@ $(filter %.c,$^) $(LIBMOEX_A) $(LIBMOEX_LIBS)

$(MOEXCTL_FAKE_SAN): tools/moexctl.c tests/unit/fakedrv.c $(LIBMOEX_SAN_A) $(UNIT_HDRS)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(SAN_CFLAGS) -o $@ $(filter %.c,$^) $(LIBMOEX_SAN_A) $(LIBMOEX_LIBS)

# unit-run runs `moex-bench queue` on the fake driver too: moex-bench's
# objects linked with fakedrv.c (plain only: both builds of the suite run
# the plain tools).
$(MOEX_BENCH_FAKE): $(BUILD)/obj/tools/moex-bench.o \
		$(BUILD)/obj/tools/bench-moe.o $(BUILD)/obj/tools/bench-gpu.o \
		tests/unit/fakedrv.c $(LIBMOEX_A) $(UNIT_HDRS)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -o $@ $(filter %.o %.c,$^) $(LIBMOEX_A) \
		$(LIBMOEX_LIBS)

.PHONY: unit-check
unit-check: $(UNIT_TESTS)
	@fail=0; for t in $(UNIT_TESTS); do $$t || fail=1; done; exit $$fail

-include $(UNIT_TESTS:=.d) $(MOEXCTL_SAN).d
