# SPDX-License-Identifier: GPL-2.0
#
# Tools: $(BUILD)/moexctl, moex-run and moex-bench. moexctl and moex-run
# link libmoex.so with an $ORIGIN rpath, so they run from build/ and from
# any directory they are copied to together with libmoex.so.0 (the test
# VM's /moex/bin). Included by the top Makefile.

MOEXCTL := $(BUILD)/moexctl
MOEX_BENCH := $(BUILD)/moex-bench
MOEX_RUN := $(BUILD)/moex-run
MKMODEL := $(BUILD)/mkmodel

USER_TARGETS += $(MOEXCTL) $(MOEX_BENCH) $(MOEX_RUN) $(MKMODEL)
VM_BINS += $(MOEXCTL) $(MOEX_BENCH) $(MOEX_RUN) $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)

$(BUILD)/obj/tools/%.o: tools/%.c
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# What the tools linked with libmoex.so need, here and for install.mk,
# which links them again without the rpath.
TOOL_LIBS_moexctl := -lmoex
TOOL_LIBS_moex-run := -lmoex -lm

$(MOEXCTL): $(BUILD)/obj/tools/moexctl.o $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD) $(TOOL_LIBS_moexctl) \
		-Wl,-rpath,'$$ORIGIN'

$(MOEX_RUN): $(BUILD)/obj/tools/moex-run.o $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD) $(TOOL_LIBS_moex-run) \
		-Wl,-rpath,'$$ORIGIN'

# mkmodel checks its shapes with the kernels' own rules (libmoex.a).
$(MKMODEL): $(BUILD)/obj/tools/mkmodel.o $(LIBMOEX_A)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBMOEX_A) $(LIBMOEX_LIBS)

# moex-bench links libmoex.a: its moe suite drives the compute kernels
# (kernels/include/moek.h), which libmoex.so does not export.
$(BUILD)/obj/tools/bench-moe.o: CFLAGS += -I$(CURDIR)/kernels/cpu

$(MOEX_BENCH): $(BUILD)/obj/tools/moex-bench.o $(BUILD)/obj/tools/bench-moe.o \
		$(BUILD)/obj/tools/bench-gpu.o $(LIBMOEX_A)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIBMOEX_A) \
		$(LIBMOEX_LIBS)

-include $(BUILD)/obj/tools/moexctl.d $(BUILD)/obj/tools/moex-bench.d \
	$(BUILD)/obj/tools/bench-moe.d $(BUILD)/obj/tools/bench-gpu.d \
	$(BUILD)/obj/tools/moex-run.d \
	$(BUILD)/obj/tools/mkmodel.d
