/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmlib: helpers shared by the in-VM test binaries, moex-vm-suite
 * (suite.h includes this header), moex-vm-uring, moex-vm-fuzz and
 * moex-vm-failnth (tests/vm/uring.c, fuzz.c, failnth.c).
 * They keep no state and know nothing of either binary's test harness:
 * errors come back as values (0 or an errno unless said otherwise).
 */
#ifndef MOEX_VM_VMLIB_H
#define MOEX_VM_VMLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- files and time ------------------------------------------------------ */
int read_file(const char *path, char *buf, size_t size);	/* len or -errno */
int write_file(const char *path, const char *s);		/* 0 or errno */
int read_ll(const char *path, long long *v);	/* "N\n" only; 0 or errno */
bool path_exists(const char *path);
/* AnonHugePages of the mapping holding @p, bytes, or -1. */
long long thp_bytes(const void *p);
uint64_t now_ms(void);
void sleep_ms(int ms);

/* ---- the module and its devices ------------------------------------------ */
/* 0 or errno (finit_module); params as insmod's, "" for none */
int mod_load(const char *path, const char *params);
int mod_unload(void);			/* 0 or errno (delete_module NONBLOCK) */
/* loaded (with @params) and /dev/moex0 up: 0 or -errno */
int mod_load_wait(const char *path, const char *params);
int mod_unload_wait(void);		/* retried while busy for 30 s: 0 or -errno */
bool mod_present(void);
bool dev_present(int dev);		/* /sys/class/moex/moexN exists */
bool dev_is_edu(int dev);		/* its engine is "edu" */
int dev_open_raw(int dev);		/* untracked fd, or -1 with errno */

/* ---- stats --------------------------------------------------------------- */
enum {
	ST_PINNED_BYTES,
	ST_PINNED_REGIONS,
	ST_PIN_CALLS,
	ST_PIN_FAILURES,
	ST_UNPIN_CALLS,
	ST_COPY_CALLS,
	ST_COPY_BYTES,
	ST_COPY_FAILURES,
	ST_DMABUF_EXPORTS,
	ST_OPEN_FILES,
	NSTATS
};
extern const char *const stat_names[NSTATS];

struct stats {
	long long v[NSTATS];
};

/* Snapshot the stats/ files of /dev/moex@dev: 0, or -1 and why in @why. */
int stats_read_raw(int dev, struct stats *s, char *why, size_t n);
/* The first counter that differs between @a and @b, or -1. */
int stats_first_diff(const struct stats *a, const struct stats *b);

#endif /* MOEX_VM_VMLIB_H */
