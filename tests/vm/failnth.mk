# SPDX-License-Identifier: GPL-2.0
#
# tests/vm/failnth.mk: $(BUILD)/moex-vm-failnth, fault injection into every
# moex command (fail-nth with failslab and fail_page_alloc, Documentation/
# moex.rst "Fault injection") in the test VM. It needs a kernel with
# CONFIG_FAULT_INJECTION (the debug kernel: tools/vm/run --debug-kernel, with
# a moex.ko built against that kernel); under a kernel without it (Debian's)
# it reports one SKIP. It runs with moex.ko loaded already (insmod first),
# or loads and unloads it itself with --module PATH.
# Links libmoex ($(LIBMOEX_A)) statically and liburing.

MOEX_VM_FAILNTH := $(BUILD)/moex-vm-failnth

VM_BINS += $(MOEX_VM_FAILNTH)
# also when this file is read after the top Makefile's vm-root rule
vm-root: $(MOEX_VM_FAILNTH)

$(MOEX_VM_FAILNTH): tests/vm/failnth.c tests/vm/vmlib.c tests/vm/vmlib.h \
		tests/vm/report.c tests/vm/report.h \
		uapi/linux/moex.h runtime/include/moex.h $(LIBMOEX_A)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -o $@ tests/vm/failnth.c tests/vm/vmlib.c \
		tests/vm/report.c $(LIBMOEX_A) $(LIBMOEX_LIBS)

# Under the debug kernel (make check runs it so: VM_KERNEL=debug); under
# Debian's kernel it reports one SKIP.
.PHONY: vm-failnth
vm-failnth: vm-root
	$(VM_RUN) --timeout $$((900 * $(VM_SLOW))) -- \
		/moex/bin/moex-vm-failnth --module /moex/moex.ko $(FAILNTH_ARGS)
