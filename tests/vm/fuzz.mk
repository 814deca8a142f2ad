# SPDX-License-Identifier: GPL-2.0
#
# tests/vm/fuzz.mk: $(BUILD)/moex-vm-fuzz, a seeded fuzzer of every moex
# command over ioctl and uring_cmd, and a multi-threaded stress run with
# kill -9 rounds, in the test VM (it loads and unloads the module itself).
# Links libmoex ($(LIBMOEX_A)) statically and liburing.
# `make vm-fuzz` builds and runs it; FUZZ_ARGS passes options, e.g.
# FUZZ_ARGS='--seed 7 --iters 50000 --secs 30'.

MOEX_VM_FUZZ := $(BUILD)/moex-vm-fuzz

VM_BINS += $(MOEX_VM_FUZZ)
# also when this file is read after the top Makefile's vm-root rule
vm-root: $(MOEX_VM_FUZZ)

$(MOEX_VM_FUZZ): tests/vm/fuzz.c tests/vm/vmlib.c tests/vm/vmlib.h \
		tests/vm/report.c tests/vm/report.h uapi/linux/moex.h \
		runtime/include/moex.h $(LIBMOEX_A)
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -o $@ tests/vm/fuzz.c tests/vm/vmlib.c \
		tests/vm/report.c $(LIBMOEX_A) $(LIBMOEX_LIBS)

.PHONY: vm-fuzz
vm-fuzz: vm-root
	$(VM_RUN) --timeout $$((900 * $(VM_SLOW))) -- /moex/bin/moex-vm-fuzz --module /moex/moex.ko $(FUZZ_ARGS)
