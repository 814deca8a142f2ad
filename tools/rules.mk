# SPDX-License-Identifier: GPL-2.0
#
# Tools: $(BUILD)/moexctl, linked against libmoex.so with an $ORIGIN rpath
# so it runs from build/ and from any directory it is copied to together
# with libmoex.so.0 (the test VM's /moex/bin). Included by the top Makefile.

MOEXCTL := $(BUILD)/moexctl

USER_TARGETS += $(MOEXCTL)
VM_BINS += $(MOEXCTL) $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)

$(BUILD)/obj/tools/%.o: tools/%.c
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(MOEXCTL): $(BUILD)/obj/tools/moexctl.o $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD) -lmoex \
		-Wl,-rpath,'$$ORIGIN'

-include $(BUILD)/obj/tools/moexctl.d
