# SPDX-License-Identifier: GPL-2.0
#
# The in-VM test suite: $(BUILD)/moex-vm-suite from tests/vm/suite*.c:
# success paths through libmoex (linked statically, $(LIBMOEX_A)), raw
# ioctls on uapi/linux/moex.h for the bad-input table and what libmoex
# hides, linked with the helpers it shares with moex-vm-uring
# (tests/vm/vmlib.c). It goes
# into the VM's /moex/bin through VM_BINS; `make vm-check` runs it there
# (tools/vm/run), where it loads moex.ko itself and unloads it at the end.
# Included by the top Makefile.

MOEX_VM_SUITE := $(BUILD)/moex-vm-suite
MOEX_VM_SUITE_SRCS := $(sort $(wildcard tests/vm/suite*.c)) tests/vm/vmlib.c
MOEX_VM_SUITE_OBJS := $(patsubst tests/vm/%.c,$(BUILD)/obj/tests/vm/%.o,$(MOEX_VM_SUITE_SRCS))

USER_TARGETS += $(MOEX_VM_SUITE)
VM_BINS += $(MOEX_VM_SUITE)

$(BUILD)/obj/tests/vm/%.o: tests/vm/%.c
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(MOEX_VM_SUITE): $(MOEX_VM_SUITE_OBJS) $(LIBMOEX_A)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(MOEX_VM_SUITE_OBJS) $(LIBMOEX_A) \
		$(LIBMOEX_LIBS) -lpthread

.PHONY: vm-suite
vm-suite: $(MOEX_VM_SUITE)

-include $(MOEX_VM_SUITE_OBJS:.o=.d)
