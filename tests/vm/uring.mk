# SPDX-License-Identifier: GPL-2.0
#
# tests/vm/uring.mk: $(BUILD)/moex-vm-uring, the uring_cmd tests of moex.ko
# that run in the test VM (they load and unload the module themselves),
# through the libmoex queue API ($(LIBMOEX_A), linked statically) and raw
# liburing where a test builds what libmoex refuses to.
# Included by the top Makefile; `make vm-uring` builds and runs them.

MOEX_VM_URING := $(BUILD)/moex-vm-uring

VM_BINS += $(MOEX_VM_URING)

$(MOEX_VM_URING): tests/vm/uring.c tests/vm/vmlib.c tests/vm/vmlib.h \
		tests/vm/report.c tests/vm/report.h uapi/linux/moex.h \
		runtime/include/moex.h $(LIBMOEX_A)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -o $@ tests/vm/uring.c tests/vm/vmlib.c \
		tests/vm/report.c $(LIBMOEX_A) $(LIBMOEX_LIBS)

.PHONY: vm-uring
vm-uring: vm-root
	$(VM_RUN) --timeout $$((900 * $(VM_SLOW))) -- /moex/bin/moex-vm-uring --module /moex/moex.ko
