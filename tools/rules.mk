# SPDX-License-Identifier: GPL-2.0
#
# Tools: $(BUILD)/moexctl and $(BUILD)/moex-bench, linked against libmoex.so with an $ORIGIN rpath
# so it runs from build/ and from any directory it is copied to together
# with libmoex.so.0 (the test VM's /moex/bin). Included by the top Makefile.

MOEXCTL := $(BUILD)/moexctl
MOEX_BENCH := $(BUILD)/moex-bench

USER_TARGETS += $(MOEXCTL) $(MOEX_BENCH)
VM_BINS += $(MOEXCTL) $(MOEX_BENCH) $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)

$(BUILD)/obj/tools/%.o: tools/%.c
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(MOEXCTL): $(BUILD)/obj/tools/moexctl.o $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD) -lmoex \
		-Wl,-rpath,'$$ORIGIN'

$(MOEX_BENCH): $(BUILD)/obj/tools/moex-bench.o $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD) -lmoex -luring \
		-Wl,-rpath,'$$ORIGIN'

-include $(BUILD)/obj/tools/moexctl.d $(BUILD)/obj/tools/moex-bench.d
