# SPDX-License-Identifier: GPL-2.0
#
# tests/vm/debug.mk: moex.ko for the debug kernel (tools/vm/debug-kernel),
# which the VM suites boot with VM_KERNEL=debug (see the top Makefile).
#
# Kbuild writes a module's objects next to its sources, so each kernel's
# moex.ko is built in its own copy of them: $(BUILD)/debug/module for the
# driver as shipped, $(BUILD)/debug/kunit for the driver with its KUnit
# suites (MOEX_KUNIT=1, driver/kunit/). The copies keep their files' times,
# so Kbuild rebuilds only what changed. Included by the top Makefile.

MODULE_SRCS = Kbuild uapi/linux/moex.h $(wildcard driver/*.c driver/*.h \
	driver/*.sh driver/kunit/*.c driver/kunit/*.h)
DEBUG_KDIR = $$(tools/vm/debug-kernel --env | sed -n 's/^KDIR=//p')

# $(call debug_module,DIR,EXTRA MAKE ARGS)
define debug_module
	@mkdir -p $(1)
	@cp -a --parents $(MODULE_SRCS) $(1)/
	@kdir=$(DEBUG_KDIR) && [ -n "$$kdir" ] && \
		$(MAKE) -s -C "$$kdir" M=$(abspath $(1)) $(2) modules
endef

.PHONY: debug-kernel debug-module kunit-module
debug-kernel:
	tools/vm/debug-kernel

debug-module:
	$(call debug_module,$(BUILD)/debug/module)

kunit-module:
	$(call debug_module,$(BUILD)/debug/kunit,MOEX_KUNIT=1)

# The KUnit suites: moex.ko with driver/kunit/ built in, loaded in the debug
# kernel's VM (tests/kunit/run reads the KTAP results).
KUNIT_ROOT := $(BUILD)/vmroot-kunit
.PHONY: kunit-check
kunit-check: kunit-module
	@rm -rf $(KUNIT_ROOT) && mkdir -p $(KUNIT_ROOT)
	@cp $(BUILD)/debug/kunit/moex.ko $(KUNIT_ROOT)/
	tests/kunit/run $(KUNIT_ROOT)
