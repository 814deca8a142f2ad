# SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
#
# libmoex: $(BUILD)/libmoex.a, $(BUILD)/libmoex.so.$(LIBMOEX_VERSION) (soname libmoex.so.0,
# symbols versioned by runtime/libmoex.map, with the libmoex.so.0 and
# libmoex.so links) and $(BUILD)/moex.pc; plus $(BUILD)/san/libmoex.a built
# with SAN_CFLAGS for the sanitizer unit tests. Included by the top Makefile.

# The version is the header's LIBMOEX_VERSION (one place to bump; debian/
# changelog must follow, debian/rules checks).
LIBMOEX_VERSION := $(shell sed -n 's/^\#define LIBMOEX_VERSION[[:space:]]*"\(.*\)"/\1/p' \
	runtime/include/moex.h)
LIBMOEX_SONAME := libmoex.so.0
# moex.pc's prefix: where libmoex would be installed.
PREFIX ?= /usr/local

# What a program linking libmoex.a needs besides it.
LIBMOEX_LIBS := -luring -lpthread -lm

# The library's own sources and the CPU compute kernels (kernels/rules.mk
# fills KERNELS_SRCS and the per-file instruction-set flags).
LIBMOEX_SRCS := $(sort $(wildcard runtime/src/*.c))
# One set of position-independent objects serves both libraries.
LIBMOEX_OBJS := $(patsubst runtime/src/%.c,$(BUILD)/obj/runtime/%.o,$(LIBMOEX_SRCS)) \
	$(patsubst %.c,$(BUILD)/obj/%.o,$(KERNELS_SRCS))
LIBMOEX_SAN_OBJS := $(patsubst runtime/src/%.c,$(BUILD)/san/obj/runtime/%.o,$(LIBMOEX_SRCS)) \
	$(patsubst %.c,$(BUILD)/san/obj/%.o,$(KERNELS_SRCS))

LIBMOEX_A := $(BUILD)/libmoex.a
LIBMOEX_SO := $(BUILD)/libmoex.so.$(LIBMOEX_VERSION)
LIBMOEX_SO_LINKS := $(BUILD)/$(LIBMOEX_SONAME) $(BUILD)/libmoex.so
LIBMOEX_SAN_A := $(BUILD)/san/libmoex.a
LIBMOEX_PC := $(BUILD)/moex.pc

USER_TARGETS += $(LIBMOEX_A) $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS) $(LIBMOEX_PC)

$(BUILD)/obj/runtime/%.o: runtime/src/%.c
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) -fPIC -MMD -MP -c -o $@ $<

$(BUILD)/san/obj/runtime/%.o: runtime/src/%.c
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(SAN_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/obj/kernels/%.o: kernels/%.c
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(CFLAGS) $(KERNELS_CFLAGS) -fPIC -MMD -MP -c -o $@ $<

$(BUILD)/san/obj/kernels/%.o: kernels/%.c
	@mkdir -p $(@D)
	$(CC) $(MOEX_CFLAGS) $(SAN_CFLAGS) $(KERNELS_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBMOEX_A): $(LIBMOEX_OBJS)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(LIBMOEX_SAN_A): $(LIBMOEX_SAN_OBJS)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(LIBMOEX_SO): $(LIBMOEX_OBJS) runtime/libmoex.map
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(LIBMOEX_SONAME) \
		-Wl,--version-script,runtime/libmoex.map -Wl,-z,defs \
		-o $@ $(LIBMOEX_OBJS) $(LIBMOEX_LIBS)

$(BUILD)/$(LIBMOEX_SONAME): $(LIBMOEX_SO)
	ln -sf $(notdir $<) $@

$(BUILD)/libmoex.so: $(BUILD)/$(LIBMOEX_SONAME)
	ln -sf $(notdir $<) $@

$(LIBMOEX_PC): runtime/moex.pc.in runtime/rules.mk
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(LIBMOEX_VERSION)|g' \
		$< >$@

-include $(LIBMOEX_OBJS:.o=.d) $(LIBMOEX_SAN_OBJS:.o=.d)
