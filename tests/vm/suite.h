/* SPDX-License-Identifier: GPL-2.0 */
/*
 * moex-vm-suite: the in-VM test suite of moex.ko (tests/vm/suite*.c).
 *
 * The suite runs inside the test VM as root, loads the module itself, tests
 * the kernel ABI of uapi/linux/moex.h and unloads the module as its last
 * test. Success paths go through libmoex (moex_open, moex_pin, ...), as an
 * application would; raw ioctls are kept where a test needs exact kernel
 * behaviour libmoex hides (malformed structs, output padding, argument
 * checks libmoex makes itself, descriptors libmoex did not open). This
 * header is its small helper library:
 *
 * - tests: a test is a function returning T_PASS, T_FAIL or T_SKIP; FAIL()
 *   and SKIP() record why; CHECK()/CHECK_ERRNO()/TRY() return from the test
 *   on failure. The runner (suite.c) prints one line per test.
 * - cleanup: every fd, mapping, child and the max_pinned_mb parameter that
 *   a test takes through these helpers is given back after the test,
 *   whatever its outcome, so an early return leaks nothing. The runner then
 *   checks that the test left nothing pinned or open on any device. Not
 *   thread-safe: worker threads use the do_*() and raw_*() wrappers
 *   only.
 * - stats: a snapshot of the ten stats/ files of a device, and checks that
 *   compare two snapshots against the expected changes (every counter not
 *   named must not move).
 * - devices: OPEN_DEV() gives a tracked libmoex handle (struct moex_device),
 *   moex_close()d after the test; mdev_fd() is its descriptor.
 * - command wrappers: do_*() run a command through libmoex, raw_*() and
 *   xioctl() through ioctl(2); all return 0 or the errno, never -1 or a
 *   negative errno.
 */
#ifndef MOEX_VM_SUITE_H
#define MOEX_VM_SUITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/moex.h>

#include "moex.h"
#include "vmlib.h"

#define KIB		1024ULL
#define MIB		(1024ULL * 1024)
#define HPAGE		(2 * MIB)

/* ---- tests ---------------------------------------------------------------- */
enum { T_PASS, T_FAIL, T_SKIP };

struct test {
	const char *name;
	int (*fn)(const struct test *t);
	const void *arg;
	unsigned int flags;
};

#define TF_MODULE	0x1u	/* needs the module loaded */
#define TF_NOLEAK	0x2u	/* no after-test check (load/unload tests) */
#define TF_ALWAYS	0x4u	/* runs even when --filter does not name it */

/* Device argument of per-device tests: moex0, or the edu device. */
#define DEV_CPU		((const void *)(intptr_t)1)
#define DEV_EDU		((const void *)(intptr_t)2)

/* The test tables, in the order the runner runs them; NULL-name ended. */
extern const struct test suite_load_tests[];
extern const struct test suite_basic_tests[];
extern const struct test suite_bad_tests[];
extern const struct test suite_region_tests[];
extern const struct test suite_dmabuf_tests[];
extern const struct test suite_copy_tests[];
extern const struct test suite_kill_tests[];
extern const struct test suite_end_tests[];

int fail_at(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *test_msg(void);
/* A "# ..." line in the output, for figures and context. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define FAIL(...)	fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond, ...)						\
	do {								\
		if (!(cond))						\
			return FAIL(__VA_ARGS__);			\
	} while (0)
/* Return from the test unless @expr (a helper returning T_*) passed. */
#define TRY(expr)							\
	do {								\
		int t_r_ = (expr);					\
		if (t_r_ != T_PASS)					\
			return t_r_;					\
	} while (0)
/* Expect @expr (a wrapper returning an errno) to give @want. */
#define CHECK_ERRNO(expr, want)						\
	do {								\
		int t_e_ = (expr);					\
		if (t_e_ != (want))					\
			return FAIL("%s: expected %s, got %s", #expr,	\
				    errname(want), errname(t_e_));	\
	} while (0)
#define CHECK_OK(expr)	CHECK_ERRNO(expr, 0)

const char *errname(int err);	/* "EINVAL", "success", ... */

/* Resolve a per-device test's argument: T_PASS and *dev, or T_SKIP. */
int test_dev(const struct test *t, int *dev);

/* ---- global state ------------------------------------------------------ */
extern const char *g_module_path;	/* --module */
extern const char *g_module_params;	/* --module-params */
extern const char *g_moexctl;		/* --moexctl, or next to the suite */
extern bool g_loaded;			/* the suite loaded moex and it is in */
extern int g_edu;			/* N of the edu /dev/moexN, or -1 */
extern bool g_edu_pci;			/* the VM has an edu PCI device */
extern size_t g_page;

/* ---- cleanup registry -------------------------------------------------- */
int track_fd(int fd);			/* returns fd; closed after the test */
void xclose(int fd);			/* close now and forget */
void track_pid(pid_t pid);		/* SIGKILLed and reaped after the test */
void untrack_pid(pid_t pid);
void cleanup_all(void);
void cleanup_forget(void);		/* in a forked child */

/* ---- memory ------------------------------------------------------------ */
/* Tracked mmap; NULL (errno set) on failure. */
void *xmap(size_t len, int prot, int flags, int fd, off_t off);
/* Unmap the tracked mapping containing @p now. */
void xunmap(void *p);
/* RW anonymous memory, touched: base pages (MADV_NOHUGEPAGE) ... */
void *buf_4k(size_t len);
/* ... 2 MiB aligned, MADV_HUGEPAGE ... */
void *buf_thp(size_t len);
/* ... or whatever the kernel gives. */
void *buf_any(size_t len);
/* @p = @expr (buf_*(), xmap()), or return a failure naming the errno. */
#define MAP(p, expr)							\
	do {								\
		(p) = (expr);						\
		CHECK(p, "mmap: %s", strerror(errno));			\
	} while (0)
/* A range certainly not mapped. */
void *buf_hole(size_t len);

/* ---- random ------------------------------------------------------------ */
uint64_t rnd(void);
uint64_t rnd_r(uint64_t *state);
uint64_t rnd_range(uint64_t lo, uint64_t hi);	/* [lo, hi] */
void fill_random(void *p, size_t len);
void fill_random_r(void *p, size_t len, uint64_t *state);

/* ---- files and processes ------------------------------------------------ */
long long vmpin_kb(pid_t pid);		/* VmPin of /proc/<pid or self>/status */
/* This process's VmPin is @want kB; @when (" after unpin") is for the message. */
int vmpin_expect_at(const char *file, int line, long long want,
		    const char *when);
#define EXPECT_VMPIN(want, when)					\
	TRY(vmpin_expect_at(__FILE__, __LINE__, want, when))
/*
 * How many pages of the anonymous private range [@p, @p + @len) are pinned
 * (FOLL_PIN) now, by anyone: told by fork(2), which gives a child a copy of
 * a page that may be pinned for DMA at once instead of sharing it (the
 * child's PFN in /proc/self/pagemap differs; root only). Pages not present
 * do not count. -1 with errno on error.
 */
long pinned_pages(const void *p, size_t len);
/* pinned_pages() of the range is @want; @when (" after unpin") for the message. */
int pinned_expect_at(const char *file, int line, const void *p, size_t len,
		     long want, const char *when);
#define EXPECT_PINNED(p, len, want, when)				\
	TRY(pinned_expect_at(__FILE__, __LINE__, p, len, want, when))
char proc_state(pid_t pid);		/* the state letter of /proc/pid/stat */
/* Flush stdout and fork; when fork fails, close both of @fds (errno kept). */
pid_t fork_closing(const int fds[2]);
/* Run @fn in a forked child; its T_* and message become the caller's. */
int child_run(int (*fn)(void *arg), void *arg, int timeout_s);
/* Run a program, output as "# " lines; returns its exit status or -1. */
int run_prog(char *const argv[], int timeout_s, bool echo);

/*
 * Kernel log lines that mean trouble (BUG, WARNING, lockdep, the edu
 * engine's errors...): how many there are now (-1 when the log cannot be
 * read), and in @line the first one after the first @after of them.
 */
int klog_bad_lines(int after, char *line, size_t size);

/* ---- the module and its devices ----------------------------------------- */
void discover_devices(void);		/* sets g_edu */
/* the module's edu_dma_bits parameter (28 unless set), 0 if unreadable */
unsigned int edu_dma_bits(void);
/*
 * Does every streaming DMA bounce through swiotlb (tools/vm/run --swiotlb)?
 * A DMA-mapped segment is then at most 256 KiB (one bounce buffer).
 */
bool swiotlb_forced(void);
int dev_open(int dev);			/* tracked raw fd, or -1 with errno */
/*
 * moex_open() of /dev/moex@dev, tracked (moex_close()d after the test), or
 * NULL with errno set.
 */
struct moex_device *mdev_open(int dev);
/* mdev_open() into *md, or a failure naming the device and the errno. */
int mdev_open_at(const char *file, int line, int dev, struct moex_device **md);
#define OPEN_DEV(dev, mdp)	TRY(mdev_open_at(__FILE__, __LINE__, dev, mdp))
void mdev_close(struct moex_device *md);	/* moex_close() now, forget */
int mdev_fd(const struct moex_device *md);	/* its file descriptor */
int set_max_pinned_mb(unsigned int mb);	/* 0 or errno; restored to 0 */
bool edu_pci_present(void);

/* ---- stats --------------------------------------------------------------- */
/* Expected changes: DELTA([ST_PIN_CALLS] = 1, [ST_PINNED_BYTES] = len). */
#define DELTA(...)	(&(const struct stats){ .v = { __VA_ARGS__ } })
#define NODELTA		DELTA(0)

int stats_read_at(const char *file, int line, int dev, struct stats *s);
int stats_expect_at(const char *file, int line, int dev,
		    const struct stats *before, const struct stats *delta,
		    int timeout_ms);
#define STATS(dev, s)	TRY(stats_read_at(__FILE__, __LINE__, dev, s))
/* Every counter moved by exactly @delta since @before. */
#define EXPECT_STATS(dev, before, delta)				\
	TRY(stats_expect_at(__FILE__, __LINE__, dev, before, delta, 0))
/* The same, polling up to @ms for asynchronous releases. */
#define WAIT_STATS(dev, before, delta, ms)				\
	TRY(stats_expect_at(__FILE__, __LINE__, dev, before, delta, ms))
long long stat_get(int dev, int id);	/* one counter now, -1 on error */

/* ---- libmoex wrappers: 0 or errno ------------------------------------------ */
int do_info(struct moex_device *md, struct moex_device_info *info);
int do_nop(struct moex_device *md);
int do_pin(struct moex_device *md, const void *addr, uint64_t len,
	   uint32_t flags, uint32_t *handle);
int do_unpin(struct moex_device *md, uint32_t handle);
int do_rinfo(struct moex_device *md, uint32_t handle,
	     struct moex_region_desc *rd);
/* The dma-buf fd is tracked. */
int do_export(struct moex_device *md, uint32_t handle, int *dmabuf_fd);
int do_export_raw(struct moex_device *md, uint32_t handle, int *dmabuf_fd);
int do_copy(struct moex_device *md, uint32_t src, uint32_t dst,
	    uint64_t src_off, uint64_t dst_off, uint64_t len);

/* ---- raw ioctl wrappers: 0 or errno ------------------------------------------ */
int xioctl(int fd, unsigned long req, void *arg);
int raw_unpin(int fd, uint32_t handle);
int raw_rinfo(int fd, uint32_t handle, struct moex_region_info *ri);
int raw_copy(int fd, uint32_t src, uint32_t dst, uint64_t src_off,
	     uint64_t dst_off, uint64_t len);

/* INFO on @md works and says pinned_bytes is @want; @when for the message. */
int info_pinned_at(const char *file, int line, struct moex_device *md,
		   long long want, const char *when);
#define EXPECT_INFO_PINNED(md, want, when)				\
	TRY(info_pinned_at(__FILE__, __LINE__, md, want, when))

/* Compare @len bytes; T_PASS or a failure naming the first difference. */
int check_bytes_at(const char *file, int line, const char *what,
		   const void *got, const void *want, size_t len);
#define CHECK_BYTES(what, got, want, len)				\
	TRY(check_bytes_at(__FILE__, __LINE__, what, got, want, len))

#endif /* MOEX_VM_SUITE_H */
