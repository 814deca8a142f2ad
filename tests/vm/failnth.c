// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-failnth: fault injection into every moex command, in the test VM
 * (issue 6, item 3).
 *
 * For each command (every ioctl of uapi/linux/moex.h, each also as an
 * io_uring uring_cmd, plus open, the release of a file holding regions and
 * of a dma-buf holding one, and mmap of an exported dma-buf) it runs a
 * fail-nth loop: for n = 1, 2, ... write n to
 * /proc/self/task/TID/fail-nth, run the command, read fail-nth back. 0 means
 * the n-th fault point (a failslab or fail_page_alloc check) was reached and
 * failed: the command must then return an errno, or, where the failure was
 * absorbed (kmemleak's metadata, a retried page fault), succeed with a
 * correct result. Non-zero means the command ran through fewer than n
 * points: it must succeed, and the loop for that command ends. After each
 * round, with what the command made undone (unpin, close), the device's
 * stats/ must be back at the round's baseline (pinned_bytes,
 * pinned_regions, open_files exactly; the event counters moved by what the
 * round did, a failure counter by at most one) and so must VmPin and VmLck
 * of the process. A result that succeeded is checked: a pinned region is
 * described correctly, copies through it, and unpins; an exported dma-buf
 * maps and shows the region's bytes; a copy copied.
 *
 * io_uring runs REGION_PIN in its io-wq worker (the driver answers -EAGAIN
 * to the non-blocking issue), a thread with its own fail-nth: the
 * *_uring_iowq commands arm the worker's fail-nth instead of the
 * submitter's, with the ring limited to one worker
 * (IORING_REGISTER_IOWQ_MAX_WORKERS), so the driver's pin path is covered
 * on that path too.
 *
 * fail-nth fails one point per round, so an allocation with a fallback or
 * a retry (kvmalloc's vmalloc, the xarray's GFP_KERNEL retry after its
 * GFP_NOWAIT try, the IOVA allocator's retry) never fails for good, and
 * the error paths behind it stay unexercised. A second pass, the
 * NAME_all_after commands, runs the loops of the commands that allocate
 * (has_after()) again with the n-th point and every later one of the
 * armed task failing: make-it-fail set for the armed window only, with
 * task-filter Y, probability 100 and times -1 for both attributes.
 *
 * Before the loops it sets failslab and fail_page_alloc in debugfs so that
 * every allocation can fail and nothing is printed (verbose 0,
 * ignore-gfp-wait N, ignore-gfp-highmem N, min-order 0, task-filter N,
 * probability 0), and puts the old values back at the end. After the last
 * command it makes kmemleak scan and fails if it reports anything.
 *
 * On a kernel without fault injection (no fail-nth file: Debian's stock
 * kernel) it prints one SKIP line and "failnth: 0 passed, 0 failed,
 * 1 skipped". moex.ko is loaded already (insmod before), or loaded and
 * unloaded here with --module PATH.
 *
 * Prints "ok NAME: N fault points, all failed cleanly" (or how many of
 * them succeeded with a checked result), "FAIL NAME: WHY" or
 * "SKIP NAME: WHY" per command, and "failnth: N passed, N failed,
 * N skipped"; exits 0 iff nothing failed. Options: --only NAME[,NAME...],
 * --max N (fault points per command before giving up, default 5000),
 * --module PATH, -v (one line per fault point), --dry-run (one round of
 * each command without fault injection, on any kernel: checks the checks),
 * --no-kmemleak (no kmemleak scan: two scans of a 3 GiB guest under TCG
 * take minutes), --fault-verbose N (the fault attributes' verbose: 2 logs
 * the stack of every injected failure, to see where the points are; the VM
 * harness then reports the run as failed), --no-all-after (no second
 * pass).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/moex.h>

#include "moex.h"
#include "report.h"
#include "vmlib.h"

#define PAGE		4096UL
#define MIB		(1UL << 20)
#define HPAGE		(2 * MIB)

/* 260 base pages: a pages array over one page, an sg table of 3 chunks. */
#define LEN_4K		(260 * PAGE)
#define LEN_THP		(2 * HPAGE)
#define LEN_SMALL	(4 * PAGE)
#define MAXERR		134

static bool verbose, dry, no_kmemleak, no_after;
/* this pass fails the n-th fault point and every later one (make-it-fail) */
static bool after;

static pid_t gettid_(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* ---- fault injection setup (debugfs) ----------------------------------- */

#define DBG		"/sys/kernel/debug/"

struct knob {
	const char *path;
	const char *value;
	char old[32];
	bool saved;
};

/*
 * lib/fault-inject.c checks current->fail_nth before anything else, but
 * failslab and fail_page_alloc filter first: by default they never fail a
 * sleeping allocation (ignore-gfp-wait), a highmem one or one of order 0
 * (fail_page_alloc), and a failure prints a notice and a stack trace
 * (verbose 2), which the VM harness counts as a kernel report. The rest
 * (probability 0, times -1, interval 1, space 0) matters only to the
 * all-after pass (knobs_after()). The probability is set before the task
 * filter and put back after it (knobs_restore()), so that the system as a
 * whole never sees probability 100 without the filter.
 */
static struct knob knobs[] = {
	{ .path = DBG "failslab/verbose", .value = "0" },
	{ .path = DBG "failslab/probability", .value = "0" },
	{ .path = DBG "failslab/ignore-gfp-wait", .value = "N" },
	{ .path = DBG "failslab/cache-filter", .value = "N" },
	{ .path = DBG "failslab/task-filter", .value = "N" },
	{ .path = DBG "failslab/times", .value = "-1" },
	{ .path = DBG "failslab/interval", .value = "1" },
	{ .path = DBG "failslab/space", .value = "0" },
	{ .path = DBG "fail_page_alloc/verbose", .value = "0" },
	{ .path = DBG "fail_page_alloc/probability", .value = "0" },
	{ .path = DBG "fail_page_alloc/ignore-gfp-wait", .value = "N" },
	{ .path = DBG "fail_page_alloc/ignore-gfp-highmem", .value = "N" },
	{ .path = DBG "fail_page_alloc/min-order", .value = "0" },
	{ .path = DBG "fail_page_alloc/task-filter", .value = "N" },
	{ .path = DBG "fail_page_alloc/times", .value = "-1" },
	{ .path = DBG "fail_page_alloc/interval", .value = "1" },
	{ .path = DBG "fail_page_alloc/space", .value = "0" },
};

static int knobs_set(char *why, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		struct knob *k = &knobs[i];
		int len, err;

		if (!strncmp(k->path, DBG "fail_page_alloc/", 24) &&
		    !path_exists(DBG "fail_page_alloc"))
			continue;
		len = read_file(k->path, k->old, sizeof(k->old));
		if (len < 0) {
			snprintf(why, n, "%s: %s", k->path, strerror(-len));
			return -1;
		}
		k->old[strcspn(k->old, "\n")] = '\0';
		k->saved = true;
		err = write_file(k->path, k->value);
		if (err) {
			snprintf(why, n, "write %s to %s: %s", k->value,
				 k->path, strerror(err));
			return -1;
		}
	}
	return 0;
}

/*
 * The "all after" pass: once fail-nth has counted down to 0, should_fail
 * goes on to the attributes' own rules, which then fail every later
 * point of a task with make-it-fail set (task-filter Y, probability 100,
 * times -1): nothing else in the system is touched.
 */
static int knobs_after(bool on)
{
	static const char *const attrs[] = { "failslab", "fail_page_alloc" };
	size_t i;
	int err = 0;

	/*
	 * Order matters: probability 100 without the task filter fails every
	 * allocation of the whole system, this task's next open() included.
	 */
	for (i = 0; i < 2 && !err; i++) {
		char filt[96], prob[96];

		if (!path_exists(i ? DBG "fail_page_alloc" : DBG "failslab"))
			continue;
		snprintf(filt, sizeof(filt), DBG "%s/task-filter", attrs[i]);
		snprintf(prob, sizeof(prob), DBG "%s/probability", attrs[i]);
		if (on) {
			err = write_file(filt, "Y");
			err = err ? err : write_file(prob, "100");
		} else {
			err = write_file(prob, "0");
			err = err ? err : write_file(filt, "N");
		}
	}
	return err;
}

/* In reverse: the task filter goes back on before the probability. */
static void knobs_restore(void)
{
	size_t i;

	for (i = sizeof(knobs) / sizeof(knobs[0]); i-- > 0;)
		if (knobs[i].saved)
			write_file(knobs[i].path, knobs[i].old);
}

/* ---- fail-nth ----------------------------------------------------------- */

/* /proc/self/task/@tid/@name (fail-nth, make-it-fail), open for writing. */
static int task_file(pid_t tid, const char *name)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/%s", (int)tid, name);
	return open(path, O_RDWR | O_CLOEXEC);
}

/* Arm: the n-th fault point from now on fails. 0 or -errno. */
static int fn_arm(int fd, unsigned int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", n);

	return pwrite(fd, buf, len, 0) == len ? 0 : -errno;
}

/*
 * Disarm: *left gets what was left of the count (0: the failure was
 * injected). Keeps errno. 0 or -errno.
 */
static int fn_disarm(int fd, unsigned int *left)
{
	int saved = errno, ret = 0;
	char buf[16];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0) {
		ret = n < 0 ? -errno : -EIO;
	} else {
		buf[n] = '\0';
		*left = (unsigned int)strtoul(buf, NULL, 10);
	}
	if (pwrite(fd, "0", 1, 0) != 1 && !ret)
		ret = -errno;
	errno = saved;
	return ret;
}

/* ---- the world ---------------------------------------------------------- */

static struct {
	int fnfd;		/* our own fail-nth */
	int mifd;		/* our own make-it-fail */
	int fd[2];		/* /dev/moex0, /dev/moex1 (edu) or -1 */
	bool edu;
	bool cpu0;		/* moex0 copies with the CPU engine */
	char eng0[MOEX_ENGINE_NAME_LEN];
	struct io_uring ring;
	bool ring_ok, iowq_ok;
	unsigned char *b4k;	/* LEN_4K, base pages */
	unsigned char *bthp;	/* LEN_THP, 2 MiB aligned, MADV_HUGEPAGE */
	unsigned char *bsmall[2];	/* LEN_SMALL each */
	unsigned char *fixbuf;	/* 2 pages registered on the ring */
	unsigned char *out;	/* a page for out_addr */
	long long thp;		/* AnonHugePages of bthp */
	unsigned int max;
} G = { .fnfd = -1, .mifd = -1, .fd = { -1, -1 } };

static void *anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static long long status_kb(const char *key)
{
	char buf[4096], *p;

	if (read_file("/proc/self/status", buf, sizeof(buf)) < 0)
		return -1;
	p = strstr(buf, key);
	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* ---- one round ---------------------------------------------------------- */

/**
 * struct round - one pass through a command.
 * @n: the fault point to fail, 0 for none (not armed).
 * @armfd: the fail-nth file to arm: ours, or the io-wq worker's.
 * @mifd: the make-it-fail file of the same task (the "all after" pass).
 * @armed: the window was entered (arm succeeded).
 * @injected: fail-nth read back 0: the n-th point failed.
 * @ret: the command's result: >= 0 or -errno.
 * @enter_err: the io_uring_enter error of a uring round whose SQE stayed
 *	in the ring (then @ret is the result of its resubmission, unarmed).
 * @exp: per device, counters the round certainly moved.
 * @may: per device, counters the round may have moved by one more.
 * @why: the reason a check failed.
 */
struct round {
	unsigned int n;
	int armfd, mifd;
	bool armed, injected;
	int ret, enter_err;
	long long exp[2][NSTATS], may[2][NSTATS];
	char why[320];
};

static int rfail(struct round *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int rfail(struct round *r, const char *fmt, ...)
{
	va_list ap;

	if (!r->why[0]) {
		va_start(ap, fmt);
		vsnprintf(r->why, sizeof(r->why), fmt, ap);
		va_end(ap);
	}
	return -1;
}

#define RCHECK(r, cond, ...) \
	do { if (!(cond)) return rfail(r, __VA_ARGS__); } while (0)

static int arm(struct round *r)
{
	int ret;

	if (!r->n)
		return 0;
	ret = fn_arm(r->armfd, r->n);
	if (ret)
		return rfail(r, "arm fail-nth: %s", strerror(-ret));
	r->armed = true;
	if (after && pwrite(r->mifd, "1", 1, 0) != 1)
		return rfail(r, "set make-it-fail: %s", strerror(errno));
	return 0;
}

static int disarm(struct round *r)
{
	unsigned int left = 1;
	int ret;

	if (!r->armed)
		return 0;
	r->armed = false;
	if (after && pwrite(r->mifd, "0", 1, 0) != 1) {
		ret = -errno;
		fn_disarm(r->armfd, &left);
		return rfail(r, "clear make-it-fail: %s", strerror(-ret));
	}
	ret = fn_disarm(r->armfd, &left);
	if (ret)
		return rfail(r, "read fail-nth: %s", strerror(-ret));
	r->injected = left == 0;
	return 0;
}

/* A result as the uapi allows it: >= 0, or a user-visible -errno. */
static int check_res(struct round *r, const char *what, long res)
{
	/* 512..529: ERESTARTSYS, EIOCBQUEUED & co. must not reach user space */
	RCHECK(r, res > -512,
	       "%s returned %ld", what, res);
	return 0;
}

/* An ioctl under fault injection: its result, >= 0 or -errno. */
static int ioctl_armed(struct round *r, int fd, unsigned long nr, void *p)
{
	int ret;

	if (arm(r))
		return -1;
	ret = ioctl(fd, nr, p);
	if (ret < 0)
		ret = -errno;
	if (disarm(r))
		return -1;
	r->ret = ret;
	return check_res(r, "ioctl", ret);
}

/* A plain ioctl (not armed): 0 or -errno. */
static int xioctl(int fd, unsigned long nr, void *p)
{
	return ioctl(fd, nr, p) ? -errno : 0;
}

/*
 * A uring_cmd under fault injection, submitted and waited for in one
 * io_uring_enter(). An enter that failed before it took the SQE leaves it
 * in the ring: that error is the round's (r->enter_err), and the SQE is
 * submitted again unarmed, so that r->ret is always the command's own
 * result (which the caller checks and undoes like any other).
 */
static int uring_armed(struct round *r, int fd, unsigned int op,
		       const void *payload, size_t size, uint64_t out_addr,
		       bool fixed)
{
	struct __kernel_timespec ts = { .tv_sec = 120 };
	struct io_uring_sqe *sqe = io_uring_get_sqe(&G.ring);
	struct moex_uring_cmd area;
	struct io_uring_cqe *cqe;
	int ret;

	if (!sqe)
		return rfail(r, "no free SQE");
	memset(&area, 0, sizeof(area));
	memcpy(area.payload, payload, size);
	area.out_addr = out_addr;
	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	sqe->cmd_op = op;
	sqe->user_data = 0x6d6f6578;
	if (fixed) {
		sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
		sqe->buf_index = 0;
	}
	memcpy(sqe->cmd, &area, sizeof(area));

	if (arm(r))
		return -1;
	ret = io_uring_submit_and_wait(&G.ring, 1);
	if (disarm(r))
		return -1;
	if (ret < 0) {
		r->enter_err = ret;
		if (check_res(r, "io_uring_enter", ret))
			return -1;
		if (io_uring_sq_ready(&G.ring)) {
			ret = io_uring_submit(&G.ring);
			RCHECK(r, ret == 1, "resubmitting after io_uring_enter: %s: %d",
			       strerror(-r->enter_err), ret);
		}
	} else {
		RCHECK(r, ret == 1, "io_uring_submit_and_wait: %d", ret);
	}
	ret = io_uring_wait_cqe_timeout(&G.ring, &cqe, &ts);
	RCHECK(r, !ret, "no CQE: %s", strerror(-ret));
	RCHECK(r, cqe->user_data == 0x6d6f6578, "CQE user_data %llx",
	       (unsigned long long)cqe->user_data);
	RCHECK(r, cqe->big_cqe[0] == 0, "CQE big_cqe[0] %llu",
	       (unsigned long long)cqe->big_cqe[0]);
	r->ret = cqe->res;
	io_uring_cqe_seen(&G.ring, cqe);
	return check_res(r, "CQE res", r->ret);
}

/* A command through ioctl or uring, armed; @p gets the output either way. */
static int cmd_armed(struct round *r, bool uring, int fd, unsigned int nr,
		     void *p, size_t size)
{
	bool out = _IOC_DIR(nr) & _IOC_READ;

	if (!uring)
		return ioctl_armed(r, fd, nr, p);
	memset(G.out, 0xa5, size);
	if (uring_armed(r, fd, nr, p, size, out ? (uintptr_t)G.out : 0, false))
		return -1;
	if (r->ret >= 0 && out)
		memcpy(p, G.out, size);
	return 0;
}

static int dev_of(int fd)
{
	return fd == G.fd[1] ? 1 : 0;
}

/* Pin, not armed: the handle or -errno; counts in @r->exp. */
static int pin_plain(struct round *r, int fd, void *p, size_t len)
{
	struct moex_region_pin a = { .addr = (uintptr_t)p, .length = len };
	int ret = xioctl(fd, MOEX_IOCTL_REGION_PIN, &a);

	if (ret)
		return rfail(r, "setup pin of %zu bytes: %s", len, strerror(-ret));
	r->exp[dev_of(fd)][ST_PIN_CALLS]++;
	return (int)a.handle;
}

static int unpin_plain(struct round *r, int fd, uint32_t h)
{
	struct moex_region_unpin u = { .handle = h };
	int ret = xioctl(fd, MOEX_IOCTL_REGION_UNPIN, &u);

	RCHECK(r, !ret, "unpin of handle %u: %s", h, strerror(-ret));
	r->exp[dev_of(fd)][ST_UNPIN_CALLS]++;
	return 0;
}

static int copy_plain(struct round *r, int fd, uint32_t dst, uint64_t doff,
		      uint32_t src, uint64_t soff, uint64_t len)
{
	struct moex_copy c = { .src_handle = src, .dst_handle = dst,
			       .src_offset = soff, .dst_offset = doff,
			       .length = len };
	int ret = xioctl(fd, MOEX_IOCTL_COPY, &c);

	RCHECK(r, !ret, "copy of %llu bytes: %s", (unsigned long long)len,
	       strerror(-ret));
	r->exp[dev_of(fd)][ST_COPY_CALLS]++;
	r->exp[dev_of(fd)][ST_COPY_BYTES] += len;
	return 0;
}

static void fill(unsigned char *p, size_t len, unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + seed * 13 + (i >> 12));
}

/*
 * A region that REGION_PIN reported as pinned really is: REGION_INFO
 * describes it, a copy inside it through the device's engine lands in
 * the user's memory, and it unpins.
 */
static int check_region(struct round *r, int fd, uint32_t h, unsigned char *p,
			size_t len, bool ro)
{
	struct moex_region_info ri = { .handle = h };
	size_t clen = fd == G.fd[1] ? 64 : PAGE;
	int ret;

	RCHECK(r, h >= 1 && h <= INT32_MAX, "handle %u", h);
	ret = xioctl(fd, MOEX_IOCTL_REGION_INFO, &ri);
	RCHECK(r, !ret, "REGION_INFO of a pinned region: %s", strerror(-ret));
	RCHECK(r, ri.addr == (uintptr_t)p && ri.length == len &&
	       ri.pages == len / PAGE && ri.sg_segments >= 1 &&
	       ri.sg_segments <= ri.pages &&
	       (fd == G.fd[1]) == (ri.dma_segments > 0) &&
	       !!(ri.region_flags & MOEX_REGION_READONLY) == ro,
	       "REGION_INFO: addr %#llx length %llu pages %llu sg %u dma %u flags %#x",
	       (unsigned long long)ri.addr, (unsigned long long)ri.length,
	       (unsigned long long)ri.pages, ri.sg_segments, ri.dma_segments,
	       ri.region_flags);
	if (!ro) {
		fill(p, clen, r->n);
		memset(p + len - clen, 0, clen);
		if (copy_plain(r, fd, h, len - clen, h, 0, clen))
			return -1;
		RCHECK(r, !memcmp(p + len - clen, p, clen),
		       "a copy inside the pinned region did not reach its pages");
	}
	return unpin_plain(r, fd, h);
}

/* The count of the failure counter a failed command may have moved. */
static void may_fail(struct round *r, int fd, int st)
{
	r->may[dev_of(fd)][st] = 1;
}

/* ---- the commands -------------------------------------------------------- */

struct cmd {
	const char *name;
	int (*fn)(const struct cmd *c, struct round *r);
	int dev;		/* 0 or 1 (edu) */
	bool uring;
	bool iowq;		/* arm the io-wq worker, not the submitter */
	int kind;		/* command specific */
};

static int c_info(const struct cmd *c, struct round *r)
{
	struct moex_info in;

	memset(&in, 0, sizeof(in));
	if (cmd_armed(r, c->uring, G.fd[c->dev], MOEX_IOCTL_INFO, &in,
		      sizeof(in)))
		return -1;
	if (r->ret < 0)
		return 0;
	RCHECK(r, r->ret == 0, "INFO returned %d", r->ret);
	RCHECK(r, in.abi_version == MOEX_ABI_VERSION &&
	       in.features & MOEX_FEAT_PIN && in.engine_name[0] &&
	       in.engine >= MOEX_ENGINE_CPU && in.engine <= MOEX_ENGINE_EDU,
	       "INFO: abi %u features %#llx engine %u", in.abi_version,
	       (unsigned long long)in.features, in.engine);
	return 0;
}

static int c_nop(const struct cmd *c, struct round *r)
{
	struct moex_nop nop;

	memset(&nop, 0, sizeof(nop));
	if (cmd_armed(r, c->uring, G.fd[c->dev], MOEX_IOCTL_NOP, &nop,
		      sizeof(nop)))
		return -1;
	RCHECK(r, r->ret <= 0, "NOP returned %d", r->ret);
	return 0;
}

enum { K_4K, K_THP };

static int c_pin(const struct cmd *c, struct round *r)
{
	int fd = G.fd[c->dev];
	unsigned char *p = c->kind == K_THP ? G.bthp : G.b4k;
	size_t len = c->kind == K_THP ? LEN_THP : LEN_4K;
	struct moex_region_pin a = { .addr = (uintptr_t)p, .length = len };
	uint32_t h;

	if (cmd_armed(r, c->uring, fd, MOEX_IOCTL_REGION_PIN, &a, sizeof(a)))
		return -1;
	if (r->ret < 0) {
		may_fail(r, fd, ST_PIN_FAILURES);
		return 0;
	}
	h = a.handle;
	if (c->uring)
		RCHECK(r, (uint32_t)r->ret == h,
		       "CQE res %d, out_addr handle %u", r->ret, h);
	else
		RCHECK(r, r->ret == 0, "ioctl returned %d", r->ret);
	r->exp[c->dev][ST_PIN_CALLS]++;
	return check_region(r, fd, h, p, len, false);
}

static int c_unpin(const struct cmd *c, struct round *r)
{
	int fd = G.fd[c->dev];
	struct moex_region_unpin u = { 0 };
	struct moex_region_info ri = { 0 };
	int h = pin_plain(r, fd, G.bsmall[0], LEN_SMALL), ret;

	if (h < 0)
		return -1;
	u.handle = (uint32_t)h;
	if (cmd_armed(r, c->uring, fd, MOEX_IOCTL_REGION_UNPIN, &u, sizeof(u)))
		return -1;
	ri.handle = (uint32_t)h;
	ret = xioctl(fd, MOEX_IOCTL_REGION_INFO, &ri);
	if (r->ret < 0) {
		/* a failed unpin leaves the handle as it was */
		RCHECK(r, !ret, "REGION_INFO after a failed unpin (%s): %s",
		       strerror(-r->ret), strerror(-ret));
		return unpin_plain(r, fd, (uint32_t)h);
	}
	RCHECK(r, r->ret == 0, "UNPIN returned %d", r->ret);
	RCHECK(r, ret == -ENOENT, "REGION_INFO after unpin: %s, want ENOENT",
	       strerror(-ret));
	r->exp[c->dev][ST_UNPIN_CALLS]++;
	return 0;
}

static int c_rinfo(const struct cmd *c, struct round *r)
{
	int fd = G.fd[c->dev];
	struct moex_region_info ri;
	int h = pin_plain(r, fd, G.bsmall[0], LEN_SMALL);

	if (h < 0)
		return -1;
	memset(&ri, 0, sizeof(ri));
	ri.handle = (uint32_t)h;
	if (cmd_armed(r, c->uring, fd, MOEX_IOCTL_REGION_INFO, &ri,
		      sizeof(ri)))
		return -1;
	if (r->ret >= 0) {
		RCHECK(r, r->ret == 0, "REGION_INFO returned %d", r->ret);
		RCHECK(r, ri.handle == (uint32_t)h &&
		       ri.addr == (uintptr_t)G.bsmall[0] &&
		       ri.length == LEN_SMALL && ri.pages == LEN_SMALL / PAGE &&
		       ri.sg_segments >= 1 && !ri.pad,
		       "REGION_INFO: handle %u addr %#llx length %llu pages %llu sg %u",
		       ri.handle, (unsigned long long)ri.addr,
		       (unsigned long long)ri.length,
		       (unsigned long long)ri.pages, ri.sg_segments);
	}
	return unpin_plain(r, fd, (uint32_t)h);
}

enum { K_REGIONS, K_FIXED };

static int c_copy(const struct cmd *c, struct round *r)
{
	int fd = G.fd[c->dev];
	bool edu = c->dev == 1;
	uint64_t len = edu ? 300 : PAGE + 777, soff = 5, doff = 3003;
	unsigned char *src = c->kind == K_FIXED ? G.fixbuf : G.bsmall[0];
	unsigned char *dst = G.bsmall[1];
	struct moex_copy cp;
	int hs = 0, hd;

	fill(src, soff + len, r->n);
	memset(dst, 0, LEN_SMALL);
	if (c->kind != K_FIXED) {
		hs = pin_plain(r, fd, src, LEN_SMALL);
		if (hs < 0)
			return -1;
	}
	hd = pin_plain(r, fd, dst, LEN_SMALL);
	if (hd < 0)
		return -1;

	memset(&cp, 0, sizeof(cp));
	cp.src_handle = (uint32_t)hs;
	cp.dst_handle = (uint32_t)hd;
	cp.src_offset = soff;
	cp.dst_offset = doff;
	cp.length = len;
	if (c->kind == K_FIXED) {
		cp.flags = MOEX_COPY_SRC_FIXED;
		cp.src_offset = (uintptr_t)src + soff;
		if (uring_armed(r, fd, MOEX_IOCTL_COPY, &cp, sizeof(cp), 0,
				true))
			return -1;
	} else if (cmd_armed(r, c->uring, fd, MOEX_IOCTL_COPY, &cp,
			     sizeof(cp))) {
		return -1;
	}
	if (r->ret < 0) {
		may_fail(r, fd, ST_COPY_FAILURES);
	} else {
		RCHECK(r, r->ret == 0, "COPY returned %d", r->ret);
		RCHECK(r, !memcmp(dst + doff, src + soff, len),
		       "COPY succeeded but the bytes differ");
		r->exp[c->dev][ST_COPY_CALLS]++;
		r->exp[c->dev][ST_COPY_BYTES] += len;
	}
	if (hs && unpin_plain(r, fd, (uint32_t)hs))
		return -1;
	return unpin_plain(r, fd, (uint32_t)hd);
}

/* A dma-buf fd REGION_EXPORT gave: its flags, and its bytes through mmap. */
static int check_dmabuf(struct round *r, int dfd, unsigned char *p, size_t len)
{
	int fdfl = fcntl(dfd, F_GETFD), fl = fcntl(dfd, F_GETFL);
	unsigned char *m;

	RCHECK(r, fdfl >= 0 && (fdfl & FD_CLOEXEC) && fl >= 0 &&
	       (fl & O_ACCMODE) == O_RDWR,
	       "dma-buf fd %d: fd flags %#x, file flags %#x", dfd, fdfl, fl);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
	RCHECK(r, m != MAP_FAILED, "mmap of the dma-buf: %s", strerror(errno));
	fill(p, len, r->n + 1);
	if (memcmp(m, p, len)) {
		munmap(m, len);
		return rfail(r, "the dma-buf's mapping differs from the region");
	}
	m[len - 1] ^= 0xff;
	if (p[len - 1] != m[len - 1]) {
		munmap(m, len);
		return rfail(r, "a write through the dma-buf's mapping did not reach the region");
	}
	munmap(m, len);
	return 0;
}

static int c_export(const struct cmd *c, struct round *r)
{
	int fd = G.fd[c->dev], dfd;
	struct moex_region_export e;
	struct moex_region_info ri = { 0 };
	int h = pin_plain(r, fd, G.bsmall[0], LEN_SMALL), ret;

	if (h < 0)
		return -1;
	memset(&e, 0, sizeof(e));
	e.handle = (uint32_t)h;
	if (cmd_armed(r, c->uring, fd, MOEX_IOCTL_REGION_EXPORT, &e,
		      sizeof(e)))
		return -1;
	ri.handle = (uint32_t)h;
	ret = xioctl(fd, MOEX_IOCTL_REGION_INFO, &ri);
	RCHECK(r, !ret, "REGION_INFO after EXPORT: %s", strerror(-ret));
	if (r->ret < 0) {
		RCHECK(r, !(ri.region_flags & MOEX_REGION_EXPORTED),
		       "a failed EXPORT (%s) marked the region exported",
		       strerror(-r->ret));
		return unpin_plain(r, fd, (uint32_t)h);
	}
	dfd = c->uring ? r->ret : (int)e.fd;
	if (c->uring)
		RCHECK(r, e.fd == (uint32_t)r->ret,
		       "CQE res %d, out_addr fd %u", r->ret, e.fd);
	else
		RCHECK(r, r->ret == 0, "ioctl returned %d", r->ret);
	r->exp[c->dev][ST_DMABUF_EXPORTS]++;
	ret = check_dmabuf(r, dfd, G.bsmall[0], LEN_SMALL);
	close(dfd);
	if (ret)
		return -1;
	RCHECK(r, ri.region_flags & MOEX_REGION_EXPORTED,
	       "EXPORT succeeded, region flags %#x", ri.region_flags);
	return unpin_plain(r, fd, (uint32_t)h);
}

/* mmap of a dma-buf and the first touch of each page, armed. */
static int c_export_mmap(const struct cmd *c, struct round *r)
{
	int fd = G.fd[c->dev];
	struct moex_region_export e = { 0 };
	unsigned char *m;
	volatile unsigned char sum = 0;
	size_t i;
	int h = pin_plain(r, fd, G.bsmall[0], LEN_SMALL), ret;

	if (h < 0)
		return -1;
	e.handle = (uint32_t)h;
	ret = xioctl(fd, MOEX_IOCTL_REGION_EXPORT, &e);
	RCHECK(r, !ret, "EXPORT: %s", strerror(-ret));
	r->exp[c->dev][ST_DMABUF_EXPORTS]++;
	fill(G.bsmall[0], LEN_SMALL, r->n);

	if (arm(r))
		return -1;
	m = mmap(NULL, LEN_SMALL, PROT_READ | PROT_WRITE, MAP_SHARED,
		 (int)e.fd, 0);
	r->ret = m == MAP_FAILED ? -errno : 0;
	if (m != MAP_FAILED)
		for (i = 0; i < LEN_SMALL; i += PAGE)
			sum += m[i];
	if (disarm(r))
		return -1;
	(void)sum;
	if (check_res(r, "mmap", r->ret))
		return -1;
	if (m != MAP_FAILED) {
		ret = memcmp(m, G.bsmall[0], LEN_SMALL);
		munmap(m, LEN_SMALL);
		RCHECK(r, !ret, "the dma-buf's mapping differs from the region");
	}
	close((int)e.fd);
	return unpin_plain(r, fd, (uint32_t)h);
}

static int c_open(const struct cmd *c, struct round *r)
{
	char path[32];
	struct moex_nop nop = { 0 };
	int fd, ret;

	snprintf(path, sizeof(path), "/dev/moex%d", c->dev);
	if (arm(r))
		return -1;
	fd = open(path, O_RDWR | O_CLOEXEC);
	r->ret = fd < 0 ? -errno : 0;
	if (disarm(r) || check_res(r, "open", r->ret))
		return -1;
	if (fd < 0)
		return 0;
	ret = xioctl(fd, MOEX_IOCTL_NOP, &nop);
	close(fd);
	RCHECK(r, !ret, "NOP on a file open returned: %s", strerror(-ret));
	return 0;
}

enum { K_FILE, K_DMABUF };

/*
 * The release of a moex file holding two regions (K_FILE), or of the last
 * reference to a dma-buf holding a region whose handle and file are gone
 * (K_DMABUF), armed: close(2) runs the release in this task before it
 * returns (task work).
 */
static int c_release(const struct cmd *c, struct round *r)
{
	char path[32];
	struct moex_region_export e = { 0 };
	int fd, h1, h2, cfd, ret;

	snprintf(path, sizeof(path), "/dev/moex%d", c->dev);
	fd = open(path, O_RDWR | O_CLOEXEC);
	RCHECK(r, fd >= 0, "open: %s", strerror(errno));
	h1 = pin_plain(r, fd, G.b4k, LEN_4K);
	h2 = h1 < 0 ? -1 : pin_plain(r, fd, G.bthp, LEN_THP);
	if (h2 < 0) {
		close(fd);
		return -1;
	}
	cfd = fd;
	if (c->kind == K_DMABUF) {
		e.handle = (uint32_t)h1;
		ret = xioctl(fd, MOEX_IOCTL_REGION_EXPORT, &e);
		close(fd);
		RCHECK(r, !ret, "EXPORT: %s", strerror(-ret));
		r->exp[c->dev][ST_DMABUF_EXPORTS]++;
		cfd = (int)e.fd;
	}
	if (arm(r))
		return -1;
	ret = close(cfd) ? -errno : 0;
	if (disarm(r))
		return -1;
	r->ret = ret;
	RCHECK(r, !ret, "close: %s", strerror(-ret));
	return 0;
}

/* ---- the loop ------------------------------------------------------------- */

static int snap(struct stats s[2])
{
	char why[256];
	int d;

	for (d = 0; d < (G.edu ? 2 : 1); d++)
		if (stats_read_raw(d, &s[d], why, sizeof(why))) {
			printf("  # %s\n", why);
			return -1;
		}
	return 0;
}

static bool is_state(int st)
{
	return st == ST_PINNED_BYTES || st == ST_PINNED_REGIONS ||
	       st == ST_OPEN_FILES;
}

/*
 * After a round: the state counters at @base, the event counters moved
 * from @before by what the round did (@r->exp, up to @r->may more), VmPin
 * and VmLck as before. The state may take a moment to settle (a dma-buf
 * released by a worker): wait up to 5 s.
 */
static int check_after(struct round *r, const struct stats base[2],
		       const struct stats before[2], long long vmpin,
		       long long vmlck)
{
	struct stats now[2];
	uint64_t t0 = now_ms();
	long long pin = -1, lck = -1;
	int d, st;

	for (;;) {
		bool good = !snap(now);

		pin = status_kb("VmPin:");
		lck = status_kb("VmLck:");
		for (d = 0; good && d < (G.edu ? 2 : 1); d++)
			for (st = 0; st < NSTATS; st++)
				if (is_state(st) &&
				    now[d].v[st] != base[d].v[st])
					good = false;
		if ((good && pin == vmpin && lck == vmlck) ||
		    now_ms() - t0 > 5000)
			break;
		sleep_ms(20);
	}
	RCHECK(r, pin == vmpin && lck == vmlck,
	       "VmPin %lld kB, VmLck %lld kB after the round (were %lld, %lld)",
	       pin, lck, vmpin, vmlck);
	for (d = 0; d < (G.edu ? 2 : 1); d++) {
		for (st = 0; st < NSTATS; st++) {
			long long delta = now[d].v[st] - before[d].v[st];

			if (is_state(st))
				RCHECK(r, now[d].v[st] == base[d].v[st],
				       "moex%d %s %lld after the round, %lld before the loop",
				       d, stat_names[st], now[d].v[st],
				       base[d].v[st]);
			else
				RCHECK(r, delta >= r->exp[d][st] &&
				       delta <= r->exp[d][st] + r->may[d][st],
				       "moex%d %s moved by %lld in the round, expected %lld%s",
				       d, stat_names[st], delta, r->exp[d][st],
				       r->may[d][st] ? " or one more" : "");
		}
	}
	return 0;
}

static const char *ename(int e)
{
	static char buf[24];

	switch (e) {
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	case EAGAIN: return "EAGAIN";
	case ECANCELED: return "ECANCELED";
	case EINTR: return "EINTR";
	case ENFILE: return "ENFILE";
	case EMFILE: return "EMFILE";
	case ENOSPC: return "ENOSPC";
	case EIO: return "EIO";
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case EBUSY: return "EBUSY";
	}
	snprintf(buf, sizeof(buf), "errno%d", e);
	return buf;
}

/* The io-wq worker of our ring: its tid, or 0. */
static pid_t iowq_worker(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	pid_t tid = 0, me = gettid_();

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char path[64], comm[32];
		pid_t t = (pid_t)atoi(de->d_name);

		if (t <= 0 || t == me)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)t);
		if (read_file(path, comm, sizeof(comm)) > 0 &&
		    !strncmp(comm, "iou-wrk-", 8)) {
			tid = t;
			break;
		}
	}
	closedir(d);
	return tid;
}

/*
 * Find the ring's io-wq worker, after a pin through the ring (not armed)
 * that makes sure it exists; open its fail-nth for @r.
 */
static int iowq_prepare(const struct cmd *c, struct round *r)
{
	struct round w;
	pid_t tid;
	int i;

	for (i = 0; i < 3; i++) {
		tid = iowq_worker();
		if (tid) {
			r->armfd = task_file(tid, "fail-nth");
			r->mifd = task_file(tid, "make-it-fail");
			if (r->armfd >= 0 && r->mifd >= 0)
				return 0;
			if (r->armfd >= 0)
				close(r->armfd);
			if (r->mifd >= 0)
				close(r->mifd);
			r->armfd = G.fnfd;
			r->mifd = G.mifd;
		}
		/* a pin goes to io-wq, which makes a worker */
		memset(&w, 0, sizeof(w));
		if (c_pin(c, &w) || w.ret < 0)
			return rfail(r, "a pin through the ring to start the io-wq worker: %s",
				     w.why[0] ? w.why : strerror(-w.ret));
	}
	return rfail(r, "no io-wq worker (iou-wrk-*) in /proc/self/task");
}

/* One command's fail-nth loop. */
static void run_cmd(const struct cmd *c)
{
	struct stats base[2], before[2];
	long long vmpin, vmlck, hist[MAXERR] = { 0 };
	unsigned int n, clean = 0, absorbed = 0, points = 0;
	uint64_t t0 = now_ms();
	char line[512];
	struct round r;
	int e, len;

	/* warm up: one round unarmed, which must succeed */
	memset(&r, 0, sizeof(r));
	r.armfd = G.fnfd;
	r.mifd = G.mifd;
	if (snap(base) || snap(before)) {
		fail(c->name, "cannot read the stats");
		return;
	}
	vmpin = status_kb("VmPin:");
	vmlck = status_kb("VmLck:");
	if (c->fn(c, &r) || check_after(&r, base, before, vmpin, vmlck)) {
		fail(c->name, "the round without fault injection: %s", r.why);
		return;
	}
	if (r.ret < 0) {
		fail(c->name, "the round without fault injection failed: %s",
		     strerror(-r.ret));
		return;
	}
	if (dry) {
		printf("ok %s: one round without fault injection (--dry-run)\n",
		       c->name);
		passed++;
		return;
	}

	for (n = 1;; n++) {
		if (n > G.max) {
			fail(c->name, "more than %u fault points (--max)", G.max);
			return;
		}
		memset(&r, 0, sizeof(r));
		r.n = n;
		r.armfd = G.fnfd;
		r.mifd = G.mifd;
		if (c->iowq && iowq_prepare(c, &r)) {
			fail(c->name, "fault point %u: %s", n, r.why);
			return;
		}
		if (snap(before)) {
			fail(c->name, "cannot read the stats");
			return;
		}
		e = c->fn(c, &r);
		if (r.armed) {	/* a check failed inside the window */
			unsigned int left;

			if (after)
				pwrite(r.mifd, "0", 1, 0);
			fn_disarm(r.armfd, &left);
		}
		if (r.armfd != G.fnfd)
			close(r.armfd);
		if (r.mifd != G.mifd)
			close(r.mifd);
		if (!e)
			e = check_after(&r, base, before, vmpin, vmlck);
		if (verbose)
			printf("  # %s: point %u: %s, %s%s%s\n", c->name, n,
			       r.injected ? "injected" : "not reached",
			       r.enter_err ? ename(-r.enter_err) :
			       r.ret < 0 ? ename(-r.ret) : "success",
			       r.enter_err ? " from io_uring_enter" : "",
			       e ? " (check failed)" : "");
		if (e) {
			fail(c->name, "fault point %u (%s): %s", n,
			     r.injected ? "injected" : "not reached", r.why);
			return;
		}
		if (!r.injected) {
			if (r.ret < 0 || r.enter_err) {
				fail(c->name, "fault point %u was not reached, yet the command failed: %s",
				     n, strerror(r.enter_err ? -r.enter_err :
						 -r.ret));
				return;
			}
			points = n - 1;
			break;
		}
		if (r.enter_err || r.ret < 0) {
			e = r.enter_err ? -r.enter_err : -r.ret;
			hist[e < MAXERR ? e : 0]++;
			clean++;
		} else {
			absorbed++;
		}
	}

	len = 0;
	line[0] = '\0';
	for (e = 0; e < MAXERR; e++)
		if (hist[e])
			len += snprintf(line + len, sizeof(line) - len, " %s=%lld",
					e ? ename(e) : "other", hist[e]);
	printf("  # %s: errnos:%s; %.1f s\n", c->name, len ? line : " none",
	       (now_ms() - t0) / 1e3);
	if (!points)
		printf("ok %s: 0 fault points (no allocation reached), state clean\n",
		       c->name);
	else if (!absorbed)
		printf("ok %s: %u fault points, all failed cleanly\n", c->name,
		       points);
	else
		printf("ok %s: %u fault points, %u failed cleanly, %u absorbed (succeeded, result checked)\n",
		       c->name, points, clean, absorbed);
	passed++;
}

/* ---- kmemleak -------------------------------------------------------------- */

/* Print @s line by line as comments. */
static void print_lines(char *s)
{
	char *line, *save = NULL;

	for (line = strtok_r(s, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		printf("  # %s\n", line);
}

static void check_kmemleak(void)
{
	const char *name = "kmemleak";
	const char *path = DBG "kmemleak";
	static char buf[1 << 20];
	char *p, *next;
	int n, moex = 0, other = 0, err;

	if (!path_exists(path)) {
		skip(name, "no " DBG "kmemleak (CONFIG_DEBUG_KMEMLEAK)");
		return;
	}
	/* objects are reported once unreferenced for 5 s (MSECS_MIN_AGE) */
	sleep_ms(6000);
	err = write_file(path, "scan");
	if (!err) {
		sleep_ms(1000);
		err = write_file(path, "scan");
	}
	if (err) {
		fail(name, "scan: %s", strerror(err));
		return;
	}
	n = read_file(path, buf, sizeof(buf));
	if (n < 0) {
		fail(name, "read: %s", strerror(-n));
		return;
	}
	/* one report per "unreferenced object" paragraph */
	for (p = strstr(buf, "unreferenced object"); p; p = next) {
		next = strstr(p + 1, "unreferenced object");
		if (next)
			next[-1] = '\0';
		if (strstr(p, "moex"))
			moex++;
		else
			other++;
		if (moex + other <= 8)
			print_lines(p);
	}
	if (moex)
		fail(name, "%d objects of moex reported (and %d others)", moex,
		     other);
	else if (other)
		fail(name, "%d objects reported, none allocated by moex (a leak on a kernel error path?)",
		     other);
	else {
		printf("ok %s: no leak reported\n", name);
		passed++;
	}
}

/* ---- main ---------------------------------------------------------------- */

static const struct cmd cmds[] = {
	{ "open", c_open, 0, false, false, 0 },
	{ "release", c_release, 0, false, false, K_FILE },
	{ "release_dmabuf", c_release, 0, false, false, K_DMABUF },
	{ "info", c_info, 0, false, false, 0 },
	{ "info_uring", c_info, 0, true, false, 0 },
	{ "nop", c_nop, 0, false, false, 0 },
	{ "nop_uring", c_nop, 0, true, false, 0 },
	{ "pin_4k", c_pin, 0, false, false, K_4K },
	{ "pin_4k_uring", c_pin, 0, true, false, K_4K },
	{ "pin_4k_uring_iowq", c_pin, 0, true, true, K_4K },
	{ "pin_thp", c_pin, 0, false, false, K_THP },
	{ "pin_thp_uring", c_pin, 0, true, false, K_THP },
	{ "pin_thp_uring_iowq", c_pin, 0, true, true, K_THP },
	{ "unpin", c_unpin, 0, false, false, 0 },
	{ "unpin_uring", c_unpin, 0, true, false, 0 },
	{ "region_info", c_rinfo, 0, false, false, 0 },
	{ "region_info_uring", c_rinfo, 0, true, false, 0 },
	{ "copy_cpu", c_copy, 0, false, false, K_REGIONS },
	{ "copy_cpu_uring", c_copy, 0, true, false, K_REGIONS },
	{ "copy_fixed_uring", c_copy, 0, true, false, K_FIXED },
	{ "export", c_export, 0, false, false, 0 },
	{ "export_uring", c_export, 0, true, false, 0 },
	{ "export_mmap", c_export_mmap, 0, false, false, 0 },
	{ "pin_4k_edu", c_pin, 1, false, false, K_4K },
	{ "pin_4k_edu_uring_iowq", c_pin, 1, true, true, K_4K },
	{ "copy_edu", c_copy, 1, false, false, K_REGIONS },
	{ "copy_edu_uring", c_copy, 1, true, false, K_REGIONS },
};

/*
 * The commands of the all-after pass: those whose fault points have a
 * fallback or a retry a single failure never gets past (kvmalloc's
 * vmalloc, the xarray's GFP_KERNEL retry, the IOVA allocator's retry).
 * Not export_mmap: a user page fault that fails is retried, forever. Not
 * the pins on edu: DMA-API debug's own GFP_ATOMIC allocations (its
 * radix tree of mapped cachelines) fail as well, and it then turns itself
 * off ("DMA-API: cacheline tracking ENOMEM, dma-debug disabled").
 */
static bool has_after(const char *name)
{
	return !strcmp(name, "open") ||
	       (!strncmp(name, "pin_", 4) && !strstr(name, "_edu")) ||
	       (!strncmp(name, "copy_", 5) && strcmp(name, "copy_fixed_uring")) ||
	       !strcmp(name, "export") || !strcmp(name, "export_uring");
}

static bool selected(const char *only, const char *name)
{
	size_t len = strlen(name);
	const char *p = only;

	if (!only)
		return true;
	while ((p = strstr(p, name))) {
		if ((p == only || p[-1] == ',') &&
		    (p[len] == ',' || p[len] == '\0'))
			return true;
		p += len;
	}
	return false;
}

static int setup(char *why, size_t n)
{
	struct io_uring_params prm;
	unsigned int workers[2] = { 1, 1 };
	struct moex_info in = { 0 };
	struct iovec iov;
	uintptr_t a;
	unsigned char *t;
	int ret, i;

	G.fd[0] = dev_open_raw(0);
	if (G.fd[0] < 0) {
		snprintf(why, n, "open /dev/moex0: %s", strerror(errno));
		return -1;
	}
	if (!ioctl(G.fd[0], MOEX_IOCTL_INFO, &in)) {
		memcpy(G.eng0, in.engine_name, sizeof(G.eng0));
		G.eng0[sizeof(G.eng0) - 1] = '\0';
		G.cpu0 = in.engine == MOEX_ENGINE_CPU;
	}
	G.edu = dev_present(1) && dev_is_edu(1);
	if (G.edu) {
		G.fd[1] = dev_open_raw(1);
		if (G.fd[1] < 0) {
			snprintf(why, n, "open /dev/moex1: %s", strerror(errno));
			return -1;
		}
	}

	/* user memory, touched now so that its page faults are not counted */
	G.b4k = anon(LEN_4K);
	t = anon(LEN_THP + 2 * HPAGE);
	G.bsmall[0] = anon(LEN_SMALL);
	G.bsmall[1] = anon(LEN_SMALL);
	G.fixbuf = anon(2 * PAGE);
	G.out = anon(PAGE);
	if (!G.b4k || !t || !G.bsmall[0] || !G.bsmall[1] || !G.fixbuf ||
	    !G.out) {
		snprintf(why, n, "mmap: %s", strerror(errno));
		return -1;
	}
	madvise(G.b4k, LEN_4K, MADV_NOHUGEPAGE);
	memset(G.b4k, 0x4b, LEN_4K);
	a = ((uintptr_t)t + HPAGE - 1) & ~(uintptr_t)(HPAGE - 1);
	G.bthp = (unsigned char *)a;
	madvise(G.bthp, LEN_THP, MADV_HUGEPAGE);
	memset(G.bthp, 0x48, LEN_THP);
	G.thp = thp_bytes(G.bthp);
	for (i = 0; i < 2; i++)
		memset(G.bsmall[i], 0x53, LEN_SMALL);
	memset(G.fixbuf, 0x46, 2 * PAGE);
	memset(G.out, 0, PAGE);

	memset(&prm, 0, sizeof(prm));
	prm.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32;
	ret = io_uring_queue_init_params(8, &G.ring, &prm);
	if (ret) {
		snprintf(why, n, "io_uring_queue_init: %s", strerror(-ret));
		return -1;
	}
	G.ring_ok = true;
	iov.iov_base = G.fixbuf;
	iov.iov_len = 2 * PAGE;
	ret = io_uring_register_buffers(&G.ring, &iov, 1);
	if (ret) {
		snprintf(why, n, "io_uring_register_buffers: %s", strerror(-ret));
		return -1;
	}
	/* one io-wq worker: the *_iowq commands arm that one */
	G.iowq_ok = !io_uring_register_iowq_max_workers(&G.ring, workers);
	return 0;
}

static void teardown(void)
{
	if (G.ring_ok) {
		io_uring_unregister_buffers(&G.ring);
		io_uring_queue_exit(&G.ring);
	}
	if (G.fd[0] >= 0)
		close(G.fd[0]);
	if (G.fd[1] >= 0)
		close(G.fd[1]);
}

int main(int argc, char **argv)
{
	const char *module = NULL, *only = NULL;
	char path[64], why[256];
	bool loaded = false;
	uint64_t t0 = now_ms();
	size_t i;
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	G.max = 5000;
	for (i = 1; i < (size_t)argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < (size_t)argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "-v")) {
			verbose = true;
			continue;
		}
		if (!strcmp(a, "--dry-run")) {
			dry = true;
			continue;
		}
		if (!strcmp(a, "--no-kmemleak")) {
			no_kmemleak = true;
			continue;
		}
		if (!strcmp(a, "--no-all-after")) {
			no_after = true;
			continue;
		}
		if (!v)
			goto usage;
		i++;
		if (!strcmp(a, "--module"))
			module = v;
		else if (!strcmp(a, "--only"))
			only = v;
		else if (!strcmp(a, "--max"))
			G.max = (unsigned int)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--fault-verbose"))
			knobs[0].value = knobs[8].value = v;
		else
			goto usage;
	}

	snprintf(path, sizeof(path), "/proc/self/task/%d/fail-nth",
		 (int)gettid_());
	if (!dry && !path_exists(path)) {
		skip("failnth", "no /proc/self/task/TID/fail-nth: a kernel without fault injection (CONFIG_FAULT_INJECTION)");
		goto out;
	}
	if (!dry && !path_exists(DBG "failslab")) {
		skip("failnth", "no " DBG "failslab (CONFIG_FAILSLAB, CONFIG_FAULT_INJECTION_DEBUG_FS, debugfs mounted)");
		goto out;
	}
	if (!dry && !path_exists(DBG "fail_page_alloc"))
		printf("  # no " DBG "fail_page_alloc: failslab only\n");

	if (!mod_present()) {
		if (!module) {
			fail("load-module", "moex is not loaded (insmod it, or --module PATH)");
			goto out;
		}
		ret = mod_load_wait(module, "");
		if (ret) {
			fail("load-module", "%s: %s", module, strerror(-ret));
			goto out;
		}
		loaded = true;
	}
	if (!dry && knobs_set(why, sizeof(why))) {
		fail("failnth", "fault injection setup: %s", why);
		knobs_restore();
		goto unload;
	}
	G.fnfd = dry ? -1 : task_file(gettid_(), "fail-nth");
	G.mifd = dry ? -1 : task_file(gettid_(), "make-it-fail");
	if (!dry && (G.fnfd < 0 || G.mifd < 0)) {
		fail("failnth", "open %s: %s", path, strerror(errno));
		goto restore;
	}
	if (path_exists(DBG "kmemleak"))
		write_file(DBG "kmemleak", "clear");
	if (setup(why, sizeof(why))) {
		fail("failnth", "setup: %s", why);
		goto restore;
	}
	printf("  # moex0 engine %s%s; THP buffer: %lld of %lu bytes in huge pages\n",
	       G.eng0, G.edu ? ", moex1 edu" : ", no edu device",
	       G.thp, (unsigned long)LEN_THP);

	for (i = 0; i < 2 * sizeof(cmds) / sizeof(cmds[0]); i++) {
		size_t k = i % (sizeof(cmds) / sizeof(cmds[0]));
		struct cmd cc = cmds[k];
		const struct cmd *c = &cc;
		char name[64];

		if (k == 0 && i) {
			/* the second pass: the n-th point and every later one */
			if (no_after || dry)
				break;
			if (knobs_after(true)) {
				fail("failnth", "cannot set up the all-after pass");
				break;
			}
			after = true;
		}
		if (after) {
			if (!has_after(cc.name))
				continue;
			snprintf(name, sizeof(name), "%s_all_after", cc.name);
			cc.name = name;
		}
		if (!selected(only, cmds[k].name) && !selected(only, c->name))
			continue;
		if (c->dev == 1 && !G.edu) {
			skip(c->name, "no edu device bound (moex1)");
			continue;
		}
		if (c->iowq && !G.iowq_ok) {
			skip(c->name, "IORING_REGISTER_IOWQ_MAX_WORKERS refused");
			continue;
		}
		if (!strcmp(c->name, "copy_cpu") && !G.cpu0)
			printf("  # copy_cpu: moex0 copies with %s\n", G.eng0);
		run_cmd(c);
	}
	if (after) {
		after = false;
		knobs_after(false);
	}
	teardown();
	if (no_kmemleak)
		skip("kmemleak", "--no-kmemleak");
	else if (!dry)
		check_kmemleak();
restore:
	if (G.fnfd >= 0)
		close(G.fnfd);
	if (G.mifd >= 0)
		close(G.mifd);
	knobs_restore();
unload:
	if (loaded) {
		ret = mod_unload_wait();
		if (ret)
			fail("rmmod", "%s", strerror(-ret));
	}
out:
	printf("  # failnth: %.1f s in all\n", (now_ms() - t0) / 1e3);
	return report_summary("failnth");
usage:
	fprintf(stderr,
		"usage: %s [--module PATH] [--only NAME[,NAME...]] [--max N] [--dry-run] [--no-kmemleak] [--no-all-after] [--fault-verbose N] [-v]\n",
		argv[0]);
	return 2;
}
