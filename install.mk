# SPDX-License-Identifier: GPL-2.0
#
# make install / make uninstall (Documentation/install.rst). Included by the
# top Makefile after runtime/rules.mk and tools/rules.mk.
#
#   make install-build          build what install copies (libmoex, the
#                               tools); never the kernel module: DKMS builds
#                               that from the installed source
#   make install                copy into DESTDIR:
#     /usr/src/moex-$(MOEX_VERSION)/   Kbuild, driver/, uapi/ and dkms.conf
#     $(LIBDIR)/                        libmoex.so.* (+ soname links), libmoex.a,
#                                       pkgconfig/moex.pc (prefix = PREFIX)
#     $(INCLUDEDIR)/                    moex.h, linux/moex.h (the uapi)
#     $(BINDIR)/                        moexctl, moex-run, moex-bench, mkmodel
#     $(UDEVRULESDIR)/60-moex.rules     group moex, mode 0660
#     $(MODPROBEDIR)/moex.conf          every module parameter, commented out
#     $(MANDIR)/manN/                   Documentation/man/*.N, where present
#   make install-hip            the GPU plugin (make hip-plugin: nvcc or
#                               hipcc) into $(LIBDIR)/libmoex-hip.so.0,
#                               where libmoex's "hip" backend finds it
#   make uninstall              remove exactly those files (with DESTDIR
#                               empty, also the DKMS registration of this
#                               version, whose source goes away)
#   make print-version          the version, for debian/rules
#
# Variables: DESTDIR (staging root, default empty), PREFIX (/usr/local; set
# where runtime/rules.mk sets it, since moex.pc uses it too), BINDIR, LIBDIR
# ($(PREFIX)/lib; Debian: /usr/lib/x86_64-linux-gnu), INCLUDEDIR,
# PKGCONFIGDIR, MANDIR, UDEVRULESDIR, MODPROBEDIR, DKMSSRCDIR. udev and
# modprobe read only fixed places, so those two do not follow PREFIX.

# The one version: the library's (runtime/rules.mk), which the DKMS source
# tree, the packages (debian/changelog, checked by debian/rules) share.
MOEX_VERSION := $(LIBMOEX_VERSION)

BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man
UDEVRULESDIR ?= /lib/udev/rules.d
MODPROBEDIR ?= /etc/modprobe.d
DKMSSRCDIR ?= /usr/src

INSTALL ?= install
INSTALL_PROGRAM ?= $(INSTALL) -m 0755
INSTALL_DATA ?= $(INSTALL) -m 0644

# What DKMS needs to build moex.ko from /usr/src/moex-VERSION alone.
DKMS_DEST := $(DESTDIR)$(DKMSSRCDIR)/moex-$(MOEX_VERSION)
# driver/ one level down too: driver/kunit/ (Kbuild's MOEX_KUNIT=1).
DKMS_FILES := Kbuild driver/probe.sh \
	$(sort $(wildcard driver/*.[ch] driver/*/*.[ch] uapi/linux/*.h))
# driver/moex_probe.h is generated per kernel by Kbuild: never ship one.
DKMS_FILES := $(filter-out driver/moex_probe.h,$(DKMS_FILES))

# Man pages, whichever exist: Documentation/man/NAME.SECTION.
MAN_PAGES := $(sort $(wildcard Documentation/man/*.[1-8]))

# moexctl and moex-run are linked for the build tree with an $ORIGIN rpath
# (tools/rules.mk); installed copies are linked again without it, with the
# same objects and TOOL_LIBS_*, so they find libmoex through ld.so.
INSTALL_STAGE := $(BUILD)/install
INSTALL_TOOLS := $(INSTALL_STAGE)/moexctl $(INSTALL_STAGE)/moex-run \
	$(MOEX_BENCH) $(MKMODEL)
INSTALL_BUILD := $(LIBMOEX_A) $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS) $(INSTALL_TOOLS)

.PHONY: install install-build install-hip uninstall print-version

print-version:
	@echo $(MOEX_VERSION)

install-build: $(INSTALL_BUILD)

$(INSTALL_STAGE)/%: $(BUILD)/obj/tools/%.o $(LIBMOEX_SO) $(LIBMOEX_SO_LINKS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(BUILD) $(TOOL_LIBS_$*)

install: install-build
	@# the DKMS source tree
	for f in $(DKMS_FILES); do \
		$(INSTALL_DATA) -D $$f $(DKMS_DEST)/$$f || exit 1; \
	done
	chmod 0755 $(DKMS_DEST)/driver/probe.sh
	sed -e 's|@VERSION@|$(MOEX_VERSION)|g' dkms/dkms.conf.in \
		>$(DKMS_DEST)/dkms.conf
	chmod 0644 $(DKMS_DEST)/dkms.conf
	@# libmoex
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(INCLUDEDIR)/linux
	$(INSTALL_DATA) $(LIBMOEX_SO) $(LIBMOEX_A) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(LIBMOEX_SO)) $(DESTDIR)$(LIBDIR)/$(LIBMOEX_SONAME)
	ln -sf $(LIBMOEX_SONAME) $(DESTDIR)$(LIBDIR)/libmoex.so
	$(INSTALL_DATA) runtime/include/moex.h $(DESTDIR)$(INCLUDEDIR)/moex.h
	$(INSTALL_DATA) uapi/linux/moex.h $(DESTDIR)$(INCLUDEDIR)/linux/moex.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(LIBMOEX_VERSION)|g' \
		-e 's|^libdir=.*|libdir=$(LIBDIR)|' \
		-e 's|^includedir=.*|includedir=$(INCLUDEDIR)|' \
		runtime/moex.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/moex.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/moex.pc
	@# the tools
	$(INSTALL) -d $(DESTDIR)$(BINDIR)
	$(INSTALL_PROGRAM) $(INSTALL_TOOLS) $(DESTDIR)$(BINDIR)/
	@# udev, modprobe.d
	$(INSTALL) -d $(DESTDIR)$(UDEVRULESDIR) $(DESTDIR)$(MODPROBEDIR)
	$(INSTALL_DATA) udev/60-moex.rules $(DESTDIR)$(UDEVRULESDIR)/60-moex.rules
	$(INSTALL_DATA) etc/moex.conf $(DESTDIR)$(MODPROBEDIR)/moex.conf
	@# man pages
	for m in $(MAN_PAGES); do \
		s=$${m##*.}; \
		$(INSTALL) -d $(DESTDIR)$(MANDIR)/man$$s && \
		$(INSTALL_DATA) $$m $(DESTDIR)$(MANDIR)/man$$s/ || exit 1; \
	done
	@if [ -z "$(DESTDIR)" ]; then \
		if [ "$$(id -u)" = 0 ]; then ldconfig; fi; \
		echo "install: now build the module: dkms install moex/$(MOEX_VERSION);" \
			"create the group: groupadd --system moex"; \
	fi

install-hip: hip-plugin
	$(INSTALL) -d $(DESTDIR)$(LIBDIR)
	$(INSTALL_DATA) $(HIP_PLUGIN) $(DESTDIR)$(LIBDIR)/$(HIP_PLUGIN_SONAME)
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

uninstall:
	@if [ -z "$(DESTDIR)" ] && command -v dkms >/dev/null 2>&1 && \
	    [ -n "$$(dkms status moex/$(MOEX_VERSION) 2>/dev/null)" ]; then \
		echo "dkms remove moex/$(MOEX_VERSION) --all"; \
		dkms remove moex/$(MOEX_VERSION) --all; \
	fi
	rm -rf $(DKMS_DEST)
	rm -f $(DESTDIR)$(LIBDIR)/$(notdir $(LIBMOEX_SO)) \
		$(DESTDIR)$(LIBDIR)/$(LIBMOEX_SONAME) \
		$(DESTDIR)$(LIBDIR)/libmoex.so $(DESTDIR)$(LIBDIR)/libmoex.a \
		$(DESTDIR)$(LIBDIR)/$(HIP_PLUGIN_SONAME) \
		$(DESTDIR)$(PKGCONFIGDIR)/moex.pc \
		$(DESTDIR)$(INCLUDEDIR)/moex.h $(DESTDIR)$(INCLUDEDIR)/linux/moex.h
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(INSTALL_TOOLS)))
	rm -f $(DESTDIR)$(UDEVRULESDIR)/60-moex.rules \
		$(DESTDIR)$(MODPROBEDIR)/moex.conf
	for m in $(notdir $(MAN_PAGES)); do \
		rm -f $(DESTDIR)$(MANDIR)/man$${m##*.}/$$m; \
	done
	-rmdir $(DESTDIR)$(INCLUDEDIR)/linux 2>/dev/null
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi
