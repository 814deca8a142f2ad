# SPDX-License-Identifier: GPL-2.0
#
# moex top-level Makefile.
#
#   make            build moex.ko, libmoex and the tools
#   make check      every test: user-space units (plain, ASan+UBSan), the VM
#                   suites, static checks; ends with "N passed, N failed"
#   make demo       the main job (see README.md)
#
# Kernel module: built out of tree by Kbuild (./Kbuild). KDIR defaults to
# the newest installed Debian headers, not `uname -r`: the build machines'
# own kernel has no headers.

KDIR ?= $(lastword $(sort $(wildcard /lib/modules/*-amd64/build)))
BUILD := build

CC ?= cc
CFLAGS ?= -O2 -g
MOEX_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-I$(CURDIR)/uapi -I$(CURDIR)/runtime/include
SAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all

# Fragments append to these.
USER_TARGETS :=
UNIT_TESTS :=
VM_BINS :=

.PHONY: all module user clean check demo deps vm-root vm-check vm-shell \
	static-check bench

all: module user

deps:
	@tools/deps

module:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

include runtime/rules.mk
include tools/rules.mk
include tests/unit/rules.mk
include tests/vm/rules.mk
include tests/vm/uring.mk

user: $(USER_TARGETS)

$(BUILD):
	mkdir -p $@

# ---- the test VM --------------------------------------------------------
# build/vmroot becomes /moex in the VM: the module and VM_BINS in bin/.
VM_ROOT := $(BUILD)/vmroot
VM_RUN := tools/vm/run -q --root $(VM_ROOT)

vm-root: module user $(VM_BINS)
	rm -rf $(VM_ROOT)
	mkdir -p $(VM_ROOT)/bin
	cp moex.ko $(VM_ROOT)/
	cp -P $(VM_BINS) $(VM_ROOT)/bin/

vm-check: vm-root
	$(VM_RUN) --timeout 1500 -- /moex/bin/moex-vm-suite --module /moex/moex.ko

vm-shell: vm-root
	tools/vm/run --root $(VM_ROOT) --shell

static-check:
	tools/static-check

# Benchmarks, in the test VM (figures from an emulated machine: compare
# ratios measured in one run, not absolute numbers across machines).
bench: deps
	$(MAKE) all vm-root
	$(VM_RUN) --timeout 1500 -- 'insmod /moex/moex.ko && \
		moex-bench queue --json; moex-bench pin --json; rmmod moex'

# ---- the README's two commands -------------------------------------------
check: deps
	$(MAKE) all
	tools/run-suites $(BUILD)/check \
		"unit=$(MAKE) -s unit-check" \
		"vm=$(MAKE) -s vm-check" \
		"vm-uring=$(MAKE) -s vm-uring" \
		"static=tools/static-check"

# The main job: until the MoE runtime exists, load the module, run the
# selftest and show the stats; directly where /dev/moex0 exists, else in
# the test VM.
DEMO_CMD := moexctl info && moexctl selftest && moexctl stats
demo: deps
	$(MAKE) all vm-root
	@if [ -c /dev/moex0 ]; then \
		PATH=$(CURDIR)/$(BUILD):$$PATH sh -c '$(DEMO_CMD)'; \
	else \
		echo "demo: no /dev/moex0 here: running in the test VM"; \
		$(VM_RUN) --timeout 900 -- 'insmod /moex/moex.ko && $(DEMO_CMD) && rmmod moex'; \
	fi

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean
	rm -rf $(BUILD)
