// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-uring: the uring_cmd interface of moex.ko, in the test VM.
 *
 * Loads the module (--module PATH, default /moex/moex.ko, with
 * --module-params as insmod's: edu_dma_bits=32 in make vm-swiotlb), runs every
 * command over IORING_OP_URING_CMD (struct moex_uring_cmd in a 128-byte
 * SQE), the bad-input table with the ioctls' errnos and unchanged
 * counters, 256 copies in flight, fixed-buffer copies, kill -9 with copies
 * in flight on moex0 and moex1 (edu), and unloads the module.
 *
 * NOP, COPY and fixed-buffer COPY go through the libmoex queue API
 * (moex_open, moex_queue_*), as applications submit them, checked through
 * struct moex_cqe; the queue must be in MOEX_QUEUE_MODE_URING here, and a
 * MOEX_QUEUE_SYNC queue must give the same results. Raw liburing stays
 * only where a test builds what libmoex refuses to build: a ring without
 * SQE128 (or with IOPOLL), the malformed-struct bad-input table (reserved
 * fields, unknown flags, stray bytes in the command area, out_addr),
 * IOSQE_ASYNC submissions, and the commands the libmoex queue has no call
 * for (INFO, REGION_PIN/UNPIN/INFO/EXPORT with out_addr).
 *
 * Prints "ok NAME", "FAIL NAME: WHY" or "SKIP NAME: WHY" per test and
 * "vm-uring: N passed, N failed, N skipped"; exits 0 iff nothing failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/moex.h>

#include "moex.h"
#include "report.h"
#include "vmlib.h"
#include "../../runtime/src/internal.h"

#define PAGE		4096UL


/* ---- sysfs stats ---------------------------------------------------- */

static int read_stats(int dev, struct stats *s)
{
	char why[256];

	return stats_read_raw(dev, s, why, sizeof(why)) ? -EIO : 0;
}

/*
 * ok @name if the counters moved from @a to @b by @n copies of @bytes in
 * all and no failed copy, else fail it with the changes.
 */
static void report_copies(const char *name, const struct stats *a,
			  const struct stats *b, long long n, long long bytes)
{
	long long calls = b->v[ST_COPY_CALLS] - a->v[ST_COPY_CALLS];
	long long moved = b->v[ST_COPY_BYTES] - a->v[ST_COPY_BYTES];
	long long failures = b->v[ST_COPY_FAILURES] - a->v[ST_COPY_FAILURES];

	if (calls != n || moved != bytes || failures)
		fail(name, "copy_calls +%lld copy_bytes +%lld failures +%lld",
		     calls, moved, failures);
	else
		ok(name);
}

/*
 * Wait until @dev has @n open files: a ring with a registered file drops
 * it from a kernel worker some time after io_uring_queue_exit().
 */
static void wait_open_files(int dev, long long n)
{
	struct timespec ts = { .tv_nsec = 20 * 1000 * 1000 };
	struct stats s;
	int i;

	for (i = 0; i < 1000; i++) {
		if (read_stats(dev, &s) || s.v[ST_OPEN_FILES] == n)
			return;
		nanosleep(&ts, NULL);
	}
}

static bool dev_exists(int dev)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/moex%d", dev);
	return path_exists(path);
}

static double now(void)
{
	return now_ms() / 1e3;
}

/* ---- commands -------------------------------------------------------- */

static int ring_init(struct io_uring *ring, unsigned int entries,
		     unsigned int flags)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	return io_uring_queue_init_params(entries, ring, &p);
}

/*
 * Fill an SQE: the whole 128 bytes are zeroed first, as the uapi asks.
 * sqe_flags are IOSQE_*, fixed != 0 sets IORING_URING_CMD_FIXED.
 */
static struct io_uring_sqe *prep(struct io_uring *ring, int fd,
				 unsigned int nr, const void *payload,
				 size_t len, uint64_t out_addr, bool fixed,
				 unsigned int buf_index, uint64_t user_data)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct moex_uring_cmd area;

	if (!sqe)
		return NULL;
	memset(sqe, 0, (ring->flags & IORING_SETUP_SQE128) ? 128 : 64);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	sqe->cmd_op = nr;
	if (fixed) {
		sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
		sqe->buf_index = buf_index;
	}
	sqe->user_data = user_data;
	if (ring->flags & IORING_SETUP_SQE128) {
		memset(&area, 0, sizeof(area));
		memcpy(area.payload, payload, len);
		area.out_addr = out_addr;
		memcpy(sqe->cmd, &area, sizeof(area));
	} else {
		/* the 16 bytes a 64-byte SQE has */
		memcpy(sqe->cmd, payload, len < 16 ? len : 16);
	}
	return sqe;
}

/* Submit one command and wait for it: the CQE's res (res2 if asked). */
static int run_full(struct io_uring *ring, int fd, unsigned int nr,
		    const void *payload, size_t len, uint64_t out_addr,
		    bool fixed, unsigned int buf_index, uint64_t *res2)
{
	struct __kernel_timespec ts = { .tv_sec = 120 };
	struct io_uring_cqe *cqe;
	int ret;

	if (!prep(ring, fd, nr, payload, len, out_addr, fixed, buf_index, 7))
		return -ENOSPC;
	ret = io_uring_submit(ring);
	if (ret != 1)
		return ret < 0 ? ret : -EIO;
	/* a command that never completes fails its test, not the suite */
	ret = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	if (ret)
		return ret == -ETIME ? -ETIMEDOUT : ret;
	ret = cqe->res;
	if (res2 && (ring->flags & IORING_SETUP_CQE32))
		*res2 = cqe->big_cqe[0];
	io_uring_cqe_seen(ring, cqe);
	return ret;
}

static int run(struct io_uring *ring, int fd, unsigned int nr,
	       const void *payload, size_t len, uint64_t out_addr)
{
	return run_full(ring, fd, nr, payload, len, out_addr, false, 0, NULL);
}

static void *alloc_pages(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* fill()'s byte @i for @seed */
static unsigned char fill_byte(size_t i, unsigned int seed)
{
	return (unsigned char)(i * 131 + seed * 7 + (i >> 12));
}

static void fill(void *p, size_t len, unsigned int seed)
{
	unsigned char *c = p;
	size_t i;

	for (i = 0; i < len; i++)
		c[i] = fill_byte(i, seed);
}

/* Does @p hold fill()'s bytes (@seed) outside [@off, @off + @n)? */
static bool fill_kept(const unsigned char *p, size_t len, size_t off,
		      size_t n, unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((i < off || i >= off + n) && p[i] != fill_byte(i, seed))
			return false;
	return true;
}

/* Pin over uring_cmd; the handle or a negative errno. */
static int upin(struct io_uring *ring, int fd, void *addr, size_t len,
		unsigned int flags)
{
	struct moex_region_pin pin = {
		.addr = (uintptr_t)addr, .length = len, .flags = flags,
	};

	return run(ring, fd, MOEX_IOCTL_REGION_PIN, &pin, sizeof(pin), 0);
}

static int uunpin(struct io_uring *ring, int fd, unsigned int handle)
{
	struct moex_region_unpin un = { .handle = handle };

	return run(ring, fd, MOEX_IOCTL_REGION_UNPIN, &un, sizeof(un), 0);
}

static int ucopy(struct io_uring *ring, int fd, unsigned int src,
		 uint64_t soff, unsigned int dst, uint64_t doff, uint64_t len)
{
	struct moex_copy c = {
		.src_handle = src, .dst_handle = dst, .src_offset = soff,
		.dst_offset = doff, .length = len,
	};

	return run(ring, fd, MOEX_IOCTL_COPY, &c, sizeof(c), 0);
}

/* ---- libmoex queues -------------------------------------------------- */

/* moex_open() of /dev/moex@dev: 0 or a negative errno. */
static int lib_open(int dev, struct moex_device **md)
{
	char path[32];

	snprintf(path, sizeof(path), "/dev/moex%d", dev);
	return moex_open(path, md);
}

/*
 * A queue of @entries commands on @md, MOEX_QUEUE_SYNC if @sync. Without
 * @sync it must be an io_uring queue: in the VM (Linux 6.1, a moex.ko that
 * answers uring_cmd) nothing should make libmoex fall back. 0, or a
 * negative errno with why in @why.
 */
static int lib_queue(struct moex_device *md, unsigned int entries, bool sync,
		     struct moex_queue **q, char *why, size_t whylen)
{
	struct moex_queue_opts o = {
		.size = sizeof(o), .entries = entries,
		.flags = sync ? MOEX_QUEUE_SYNC : 0,
	};
	unsigned int flags = 0;
	int ret, mode, err = 0;

	ret = moex_queue_create(md, &o, q);
	if (ret) {
		snprintf(why, whylen, "moex_queue_create: %s", strerror(-ret));
		return ret;
	}
	mode = moex_queue_mode(*q, &flags, &err);
	if (mode != (sync ? MOEX_QUEUE_MODE_SYNC : MOEX_QUEUE_MODE_URING)) {
		snprintf(why, whylen,
			 "queue mode %d (fallback errno %d: %s), expected %s",
			 mode, err, strerror(-err), sync ? "sync" : "uring");
		moex_queue_destroy(*q);
		*q = NULL;
		return -ENOTSUP;
	}
	return 0;
}

/*
 * Submit what is queued (@n commands) and reap their @n completions into
 * @cqes, giving up after 120 s: 0 or a negative errno.
 */
static int lib_run(struct moex_queue *q, unsigned int n, struct moex_cqe *cqes)
{
	unsigned int got = 0;
	double t0 = now();
	int ret;

	ret = moex_queue_submit(q);
	if (ret < 0)
		return ret;
	if ((unsigned int)ret != n)
		return -EIO;
	while (got < n) {
		ret = moex_queue_wait(q, cqes + got, n - got, 1, 1000);
		if (ret == -ETIME && now() - t0 < 120)
			continue;
		if (ret < 0)
			return ret == -ETIME ? -ETIMEDOUT : ret;
		got += (unsigned int)ret;
	}
	return 0;
}

/*
 * The result of the command queued with @user_data among @n completions:
 * true and *res when it completed exactly once.
 */
static bool cqe_res(const struct moex_cqe *cqes, unsigned int n,
		    uint64_t user_data, int *res)
{
	unsigned int i, seen = 0;

	for (i = 0; i < n; i++) {
		if (cqes[i].user_data == user_data) {
			*res = cqes[i].res;
			seen++;
		}
	}
	return seen == 1;
}

/*
 * The queue libmoex builds in the VM is an io_uring one: SQE128 and CQE32
 * kept, no fallback errno; a MOEX_QUEUE_SYNC queue says sync, no io_uring
 * flags and no fallback errno either.
 */
static void test_queue_mode(int dev)
{
	const unsigned int opt = IORING_SETUP_COOP_TASKRUN |
				 IORING_SETUP_TASKRUN_FLAG |
				 IORING_SETUP_SINGLE_ISSUER |
				 IORING_SETUP_DEFER_TASKRUN;
	struct moex_queue_opts o = { .size = sizeof(o), .flags = MOEX_QUEUE_SYNC };
	struct moex_device *md = NULL;
	struct moex_queue *q = NULL;
	unsigned int flags = ~0u;
	int ret, mode, err = 1;
	char name[64];

	snprintf(name, sizeof(name), "queue-mode-moex%d", dev);
	ret = lib_open(dev, &md);
	if (!ret)
		ret = moex_queue_create(md, NULL, &q);
	if (ret) {
		fail(name, "setup: %s", strerror(-ret));
		goto out;
	}
	mode = moex_queue_mode(q, &flags, &err);
	printf("  %s: mode %s, setup flags %#x (%s%s%s%s), fallback errno %d\n",
	       name, mode == MOEX_QUEUE_MODE_URING ? "uring" : "sync", flags,
	       flags & IORING_SETUP_COOP_TASKRUN ? "COOP_TASKRUN " : "",
	       flags & IORING_SETUP_TASKRUN_FLAG ? "TASKRUN_FLAG " : "",
	       flags & IORING_SETUP_SINGLE_ISSUER ? "SINGLE_ISSUER " : "",
	       flags & IORING_SETUP_DEFER_TASKRUN ? "DEFER_TASKRUN" : "", err);
	if (mode != MOEX_QUEUE_MODE_URING || err) {
		fail(name, "default queue: mode %d, fallback errno %d (%s)", mode,
		     err, strerror(-err));
		goto out;
	}
	if ((flags & (IORING_SETUP_SQE128 | IORING_SETUP_CQE32)) !=
	    (IORING_SETUP_SQE128 | IORING_SETUP_CQE32) ||
	    (flags & ~(opt | IORING_SETUP_SQE128 | IORING_SETUP_CQE32))) {
		fail(name, "setup flags %#x: SQE128|CQE32 missing or unknown flags",
		     flags);
		goto out;
	}
	/* Linux 6.1 has every optional flag libmoex asks for */
	if ((flags & opt) != opt) {
		fail(name, "setup flags %#x: an optional flag was dropped on 6.1",
		     flags);
		goto out;
	}
	moex_queue_destroy(q);
	q = NULL;

	ret = moex_queue_create(md, &o, &q);
	if (ret) {
		fail(name, "sync queue: %s", strerror(-ret));
		goto out;
	}
	flags = ~0u;
	err = 1;
	mode = moex_queue_mode(q, &flags, &err);
	if (mode != MOEX_QUEUE_MODE_SYNC || flags || err)
		fail(name, "MOEX_QUEUE_SYNC queue: mode %d flags %#x fallback %d",
		     mode, flags, err);
	else
		ok(name);
out:
	moex_queue_destroy(q);
	moex_close(md);
	wait_open_files(dev, 0);
}

/*
 * NOP and COPY through a libmoex queue: a batch of NOPs, a COPY inside a
 * region, one from a read-only region, one into it (-EACCES in its
 * completion); each completion once, with its user_data.
 */
static void test_queue_commands(int dev)
{
	size_t len = 16 * PAGE, n1 = 3 * PAGE + 11, n2 = 100;
	unsigned char *buf = alloc_pages(len), *want = malloc(len);
	struct moex_device *md = NULL;
	struct moex_queue *q = NULL;
	struct moex_cqe cqes[16];
	uint32_t h = 0, hr = 0;
	struct stats a, b;
	char name[64], why[160];
	int ret, res, i;

	snprintf(name, sizeof(name), "queue-commands-moex%d", dev);
	ret = !buf || !want ? -ENOMEM : lib_open(dev, &md);
	if (!ret)
		ret = moex_pin(md, buf, len, 0, &h);
	if (!ret)
		ret = moex_pin(md, buf, PAGE, MOEX_PIN_READONLY, &hr);
	if (ret) {
		fail(name, "setup: %s", strerror(-ret));
		goto out;
	}
	if (lib_queue(md, 16, false, &q, why, sizeof(why))) {
		fail(name, "%s", why);
		goto out;
	}
	fill(buf, len, 5);
	memcpy(want, buf, len);
	memmove(want + 8 * PAGE + 5, want + 3, n1);
	memcpy(want + 12 * PAGE, want, n2);
	read_stats(dev, &a);
	for (i = 0; i < 4; i++)
		ret |= moex_queue_nop(q, 100 + i);
	ret |= moex_queue_copy(q, h, 8 * PAGE + 5, h, 3, n1, 200);
	ret |= moex_queue_copy(q, h, 12 * PAGE, hr, 0, n2, 201);
	ret |= moex_queue_copy(q, hr, 0, h, 4 * PAGE, 64, 202);
	if (ret) {
		fail(name, "queueing: %d", ret);
		goto out;
	}
	ret = lib_run(q, 7, cqes);
	if (ret) {
		fail(name, "submit and wait: %s", strerror(-ret));
		goto out;
	}
	for (i = 0; i < 4; i++) {
		if (!cqe_res(cqes, 7, 100 + i, &res) || res) {
			fail(name, "NOP %d: completion missing or res %d", i, res);
			goto out;
		}
	}
	if (!cqe_res(cqes, 7, 200, &res) || res ||
	    !cqe_res(cqes, 7, 201, &res) || res) {
		fail(name, "COPY: completion missing or res %d", res);
		goto out;
	}
	if (!cqe_res(cqes, 7, 202, &res) || res != -EACCES) {
		fail(name, "COPY into a read-only region: res %d, want %d", res,
		     -EACCES);
		goto out;
	}
	if (memcmp(buf, want, len)) {
		fail(name, "the copies left the wrong bytes");
		goto out;
	}
	read_stats(dev, &b);
	report_copies(name, &a, &b, 2, (long long)(n1 + n2));
out:
	moex_queue_destroy(q);
	moex_close(md);
	free(want);
	if (buf)
		munmap(buf, len);
	wait_open_files(dev, 0);
}

/* One command of test_sync_same(): COPY arguments (len 0: a NOP). */
struct same_cmd {
	int dst, src;		/* 0: region A, 1: read-only R, 2: unknown */
	uint64_t dst_off, src_off, len;
};

/*
 * Run the commands on a fresh pair of regions through a queue (@sync or
 * io_uring): their results in @res, the bytes of A after them in @out,
 * the counters' changes in @delta. 0 or a negative errno, why in @why.
 */
static int same_run(int dev, bool sync, const struct same_cmd *cmds,
		    unsigned int n, int *res, unsigned char *out, size_t len,
		    struct stats *delta, char *why, size_t whylen)
{
	unsigned char *a = alloc_pages(len), *r = alloc_pages(len);
	struct moex_device *md = NULL;
	struct moex_queue *q = NULL;
	struct moex_cqe cqes[32];
	uint32_t h[3] = { 0, 0, 0x7fffff00 };
	struct stats s0, s1;
	unsigned char fb[64];
	struct iovec iov = { .iov_base = fb, .iov_len = sizeof(fb) };
	unsigned int i;
	int ret;

	ret = !a || !r ? -ENOMEM : lib_open(dev, &md);
	if (!ret) {
		fill(a, len, 1);
		fill(r, len, 2);
		ret = moex_pin(md, a, len, 0, &h[0]);
	}
	if (!ret)
		ret = moex_pin(md, r, len, MOEX_PIN_READONLY, &h[1]);
	if (ret) {
		snprintf(why, whylen, "setup: %s", strerror(-ret));
		goto out;
	}
	ret = lib_queue(md, 32, sync, &q, why, whylen);
	if (ret)
		goto out;
	read_stats(dev, &s0);
	for (i = 0; i < n && !ret; i++) {
		const struct same_cmd *c = &cmds[i];

		if (!c->len && !c->dst_off)
			ret = moex_queue_nop(q, i);
		else
			ret = moex_queue_copy(q, h[c->dst], c->dst_off,
					      h[c->src], c->src_off, c->len, i);
	}
	if (!ret)
		ret = lib_run(q, n, cqes);
	if (ret) {
		snprintf(why, whylen, "%s queue: %s", sync ? "sync" : "uring",
			 strerror(-ret));
		goto out;
	}
	read_stats(dev, &s1);
	for (i = 0; i < n; i++) {
		if (!cqe_res(cqes, n, i, &res[i])) {
			snprintf(why, whylen, "%s queue: command %u: no single completion",
				 sync ? "sync" : "uring", i);
			ret = -EIO;
			goto out;
		}
	}
	for (i = 0; i < NSTATS; i++)
		delta->v[i] = s1.v[i] - s0.v[i];
	memcpy(out, a, len);
	if (sync) {
		/* fixed buffers belong to io_uring */
		ret = moex_queue_register_buffers(q, &iov, 1);
		if (ret != -EOPNOTSUPP) {
			snprintf(why, whylen, "register_buffers on a sync queue: %d, want %d",
				 ret, -EOPNOTSUPP);
			ret = -EIO;
			goto out;
		}
		ret = moex_queue_copy_fixed(q, MOEX_COPY_SRC_FIXED, h[0], 0, 0,
					    fb, sizeof(fb), 99);
		if (ret != -EOPNOTSUPP) {
			snprintf(why, whylen, "copy_fixed on a sync queue: %d, want %d",
				 ret, -EOPNOTSUPP);
			ret = -EIO;
			goto out;
		}
		ret = moex_queue_peek(q, cqes, 32);
		if (ret) {
			snprintf(why, whylen, "sync queue: %d completions after a refused copy_fixed",
				 ret);
			ret = -EIO;
			goto out;
		}
	}
	ret = 0;
out:
	moex_queue_destroy(q);
	moex_close(md);
	if (a)
		munmap(a, len);
	if (r)
		munmap(r, len);
	wait_open_files(dev, 0);
	return ret;
}

/*
 * The same commands through an io_uring queue and a MOEX_QUEUE_SYNC queue
 * give the same results, bytes and counters; copy_fixed and
 * register_buffers give -EOPNOTSUPP on the sync queue.
 */
static void test_sync_same(int dev)
{
	static const struct same_cmd cmds[] = {
		{ 0 },						/* NOP */
		{ 0, 0, 8 * PAGE + 1, 5, 3 * PAGE },		/* inside A */
		{ 0, 1, 13 * PAGE + 7, 100, 999 },		/* from R */
		{ 1, 0, 0, 0, 64 },				/* into R: EACCES */
		{ 0, 1, 15 * PAGE, 0, PAGE + 1 },		/* ERANGE */
		{ 0, 2, 0, 0, 64 },				/* ENOENT */
		{ 0, 0, 12 * PAGE, 4 * PAGE, 500 },		/* inside A */
		{ 0, 0, 0, 100, 200 },				/* overlap: EINVAL */
		{ 0, 0, 10 * PAGE, 0, 0 },			/* len 0: EINVAL */
		{ 0 },						/* NOP */
	};
	enum { N = sizeof(cmds) / sizeof(cmds[0]) };
	size_t len = 16 * PAGE;
	unsigned char *ba = malloc(len), *bs = malloc(len);
	struct stats du, ds;
	int ru[N], rs[N];
	char name[64], why[256];
	unsigned int i;

	snprintf(name, sizeof(name), "queue-sync-same-results-moex%d", dev);
	if (!ba || !bs) {
		fail(name, "malloc");
		goto out;
	}
	if (same_run(dev, false, cmds, N, ru, ba, len, &du, why, sizeof(why)) ||
	    same_run(dev, true, cmds, N, rs, bs, len, &ds, why, sizeof(why))) {
		fail(name, "%s", why);
		goto out;
	}
	for (i = 0; i < N; i++) {
		if (ru[i] != rs[i]) {
			fail(name, "command %u: uring res %d, sync res %d", i,
			     ru[i], rs[i]);
			goto out;
		}
	}
	if (ru[3] != -EACCES || ru[4] != -ERANGE || ru[5] != -ENOENT ||
	    ru[7] != -EINVAL || ru[8] != -EINVAL || ru[0] || ru[1] || ru[2] ||
	    ru[6] || ru[9]) {
		fail(name, "results %d %d %d %d %d %d %d %d %d %d", ru[0], ru[1],
		     ru[2], ru[3], ru[4], ru[5], ru[6], ru[7], ru[8], ru[9]);
		goto out;
	}
	if (memcmp(ba, bs, len)) {
		fail(name, "the two queues left different bytes");
		goto out;
	}
	if (stats_first_diff(&du, &ds) >= 0) {
		i = (unsigned int)stats_first_diff(&du, &ds);
		fail(name, "%s moved by %lld (uring) and %lld (sync)",
		     stat_names[i], du.v[i], ds.v[i]);
		goto out;
	}
	ok(name);
out:
	free(ba);
	free(bs);
}

/*
 * @n copies of @chunk bytes in flight at once on @dev through a libmoex
 * queue of @n entries: copy i goes from source offset i * stride to
 * destination offset (n - 1 - i) * stride + 1. Checks each completion
 * once (by user_data), the content and exact counters.
 */
static void test_many(int dev, unsigned int n, size_t chunk)
{
	char name[64], why[160];
	size_t stride = chunk + 3, len = (n * stride + PAGE) & ~(PAGE - 1);
	unsigned char *src = alloc_pages(len), *dst = alloc_pages(len);
	unsigned char *seen = calloc(n, 1);
	struct moex_cqe *cqes = calloc(n, sizeof(*cqes));
	struct moex_device *md = NULL;
	struct moex_queue *q = NULL;
	unsigned int i, got = 0;
	uint32_t hs, hd;
	struct stats a, b;
	int ret = 0, bad = 0;
	double t0;

	snprintf(name, sizeof(name), "copy-%u-in-flight-moex%d", n, dev);
	if (!src || !dst || !seen || !cqes) {
		fail(name, "setup: %s", strerror(errno));
		goto out;
	}
	fill(src, len, 3);
	memset(dst, 0, len);
	ret = lib_open(dev, &md);
	if (!ret)
		ret = moex_pin(md, src, len, MOEX_PIN_READONLY, &hs);
	if (!ret)
		ret = moex_pin(md, dst, len, 0, &hd);
	if (ret) {
		fail(name, "setup: %s", strerror(-ret));
		goto out;
	}
	if (lib_queue(md, n, false, &q, why, sizeof(why))) {
		fail(name, "%s", why);
		goto out;
	}
	read_stats(dev, &a);
	for (i = 0; i < n && !ret; i++)
		ret = moex_queue_copy(q, hd, (n - 1 - i) * stride + 1, hs,
				      i * stride, chunk, i);
	/* the queue is full: one more is refused */
	if (!ret && moex_queue_nop(q, n) != -EBUSY) {
		fail(name, "a command beyond %u entries was queued", n);
		goto out;
	}
	if (ret) {
		fail(name, "queue: %s", strerror(-ret));
		goto out;
	}
	ret = moex_queue_submit(q);
	if (ret != (int)n) {
		fail(name, "submit: %d", ret);
		goto out;
	}
	t0 = now();
	while (got < n && now() - t0 < 300) {
		ret = moex_queue_wait(q, cqes, n, 1, 1000);
		if (ret == -ETIME)
			continue;
		if (ret < 0) {
			fail(name, "wait: %d", ret);
			goto out;
		}
		for (i = 0; i < (unsigned int)ret; i++) {
			if (cqes[i].user_data >= n || seen[cqes[i].user_data]++ ||
			    cqes[i].res) {
				printf("  cqe %llu: res %d\n",
				       (unsigned long long)cqes[i].user_data,
				       cqes[i].res);
				bad++;
			}
		}
		got += (unsigned int)ret;
	}
	if (got < n) {
		fail(name, "%u of %u completions", got, n);
		goto out;
	}
	if (moex_queue_peek(q, cqes, n) != 0) {
		fail(name, "completions after all %u", n);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (memcmp(dst + (n - 1 - i) * stride + 1, src + i * stride,
			   chunk))
			bad++;
	read_stats(dev, &b);
	if (bad)
		fail(name, "%d bad completions or copies", bad);
	else
		report_copies(name, &a, &b, n, (long long)(n * chunk));
out:
	moex_queue_destroy(q);
	moex_close(md);
	free(seen);
	free(cqes);
	if (src)
		munmap(src, len);
	if (dst)
		munmap(dst, len);
	wait_open_files(dev, 0);
}

/*
 * Fixed buffer -> region and region -> fixed buffer on @dev through
 * moex_queue_register_buffers() and moex_queue_copy_fixed(); a buf_index
 * past the registered buffers fails in its completion (-EFAULT) and
 * counts nothing. The region is written after the pin, and a copy into it
 * changes its range only: a sync of the engine's mapping for the CPU
 * would put the bounce pool's older bytes over the rest (make vm-swiotlb).
 */
static void test_fixed(int dev)
{
	char name[64], why[160];
	size_t len = 8 * PAGE, blen = 6 * PAGE, n = 3 * PAGE + 123;
	unsigned char *reg = alloc_pages(len), *fb = alloc_pages(2 * blen);
	struct moex_device *md = NULL;
	struct moex_queue *q = NULL;
	struct moex_cqe cqe = { 0 };
	struct iovec iov[2];
	struct stats a, b, c;
	uint32_t h;
	int ret;

	snprintf(name, sizeof(name), "copy-fixed-moex%d", dev);
	if (!reg || !fb) {
		fail(name, "setup: %s", strerror(errno));
		goto out;
	}
	iov[0].iov_base = fb;
	iov[0].iov_len = blen;
	iov[1].iov_base = fb + blen;
	iov[1].iov_len = blen;
	memset(reg, 0, len);
	fill(fb, 2 * blen, 9);
	ret = lib_open(dev, &md);
	if (!ret)
		ret = moex_pin(md, reg, len, 0, &h);
	if (ret) {
		fail(name, "setup: %s", strerror(-ret));
		goto out;
	}
	fill(reg, len, 4);
	if (lib_queue(md, 8, false, &q, why, sizeof(why))) {
		fail(name, "%s", why);
		goto out;
	}
	ret = moex_queue_register_buffers(q, iov, 2);
	if (ret) {
		fail(name, "register_buffers: %s", strerror(-ret));
		goto out;
	}
	read_stats(dev, &a);

	/* buffer 1, from 100 bytes in, to region offset 5000 */
	ret = moex_queue_copy_fixed(q, MOEX_COPY_SRC_FIXED, h, 5000, 1,
				    fb + blen + 100, n, 1);
	if (!ret)
		ret = lib_run(q, 1, &cqe);
	if (ret || cqe.user_data != 1 || cqe.res ||
	    memcmp(reg + 5000, fb + blen + 100, n)) {
		fail(name, "fixed -> region: %d res %d", ret, cqe.res);
		goto out;
	}
	if (!fill_kept(reg, len, 5000, n, 4)) {
		fail(name, "fixed -> region changed bytes outside its range");
		goto out;
	}

	/* region offset 5000 back to buffer 0 at 7 bytes in */
	memset(fb, 0, blen);
	ret = moex_queue_copy_fixed(q, MOEX_COPY_DST_FIXED, h, 5000, 0, fb + 7,
				    n, 2);
	if (!ret)
		ret = lib_run(q, 1, &cqe);
	if (ret || cqe.user_data != 2 || cqe.res ||
	    memcmp(fb + 7, fb + blen + 100, n) || fb[6] || fb[7 + n]) {
		fail(name, "region -> fixed: %d res %d", ret, cqe.res);
		goto out;
	}
	read_stats(dev, &b);

	/* buf_index 5 of 2 registered: the completion's errno */
	ret = moex_queue_copy_fixed(q, MOEX_COPY_SRC_FIXED, h, 0, 5, fb, 64, 3);
	if (!ret)
		ret = lib_run(q, 1, &cqe);
	read_stats(dev, &c);
	if (ret || cqe.user_data != 3 || cqe.res != -EFAULT) {
		fail(name, "buf_index out of range: %d res %d, want %d", ret,
		     cqe.res, -EFAULT);
		goto out;
	}
	if (stats_first_diff(&b, &c) >= 0) {
		fail(name, "buf_index out of range: %s changed",
		     stat_names[stats_first_diff(&b, &c)]);
		goto out;
	}
	report_copies(name, &a, &b, 2, (long long)(2 * n));
out:
	moex_queue_destroy(q);
	moex_close(md);
	if (reg)
		munmap(reg, len);
	if (fb)
		munmap(fb, 2 * blen);
	wait_open_files(dev, 0);
}

/* ---- tests ----------------------------------------------------------- */

static void test_sqe64(void)
{
	const char *name = "sqe64-ring-refused";
	struct moex_nop nop = { 0 };
	struct stats a, b;
	struct io_uring ring;
	int fd, ret;

	fd = dev_open_raw(0);
	if (fd < 0 || ring_init(&ring, 8, 0)) {
		fail(name, "setup: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	read_stats(0, &a);
	ret = run(&ring, fd, MOEX_IOCTL_NOP, &nop, sizeof(nop), 0);
	read_stats(0, &b);
	if (ret != -EINVAL)
		fail(name, "NOP on a 64-byte SQE ring: res %d, want %d", ret,
		     -EINVAL);
	else if (stats_first_diff(&a, &b) >= 0)
		fail(name, "%s changed", stat_names[stats_first_diff(&a, &b)]);
	else
		ok(name);
	io_uring_queue_exit(&ring);

	/* IOPOLL rings: io_uring itself refuses uring_cmd without iopoll */
	name = "iopoll-ring-refused";
	if (ring_init(&ring, 8, IORING_SETUP_SQE128 | IORING_SETUP_IOPOLL)) {
		fail(name, "setup: %s", strerror(errno));
	} else {
		ret = run(&ring, fd, MOEX_IOCTL_NOP, &nop, sizeof(nop), 0);
		if (ret != -EOPNOTSUPP)
			fail(name, "NOP: res %d, want %d", ret, -EOPNOTSUPP);
		else
			ok(name);
		io_uring_queue_exit(&ring);
	}
	close(fd);
}

/*
 * Every command's success path on device @dev over raw uring_cmd: the
 * libmoex queue has calls for NOP and COPY only (test_queue_commands()),
 * not for INFO, REGION_PIN/UNPIN/INFO/EXPORT nor out_addr, so those are
 * built here by hand.
 */
static void test_success(int dev)
{
	char name[64];
	struct moex_info info, iinfo;
	struct moex_region_pin pin, pout;
	struct moex_region_info rinfo, rout;
	struct moex_region_export exp, eout;
	struct moex_region_unpin un;
	struct moex_nop nop = { 0 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	struct stats a, b;
	uint64_t res2 = 1;
	size_t len = 16 * PAGE;
	unsigned char *buf, *map;
	int fd, ret, h, h2, efd;

	snprintf(name, sizeof(name), "commands-moex%d", dev);
	fd = dev_open_raw(dev);
	buf = alloc_pages(len);
	if (fd < 0 || !buf ||
	    ring_init(&ring, 16, IORING_SETUP_SQE128 | IORING_SETUP_CQE32)) {
		fail(name, "setup: %s", strerror(errno));
		goto out_nofd;
	}
	read_stats(dev, &a);

	ret = run_full(&ring, fd, MOEX_IOCTL_NOP, &nop, sizeof(nop), 0, false,
		       0, &res2);
	if (ret || res2) {
		fail(name, "NOP: res %d res2 %llu", ret,
		     (unsigned long long)res2);
		goto out;
	}
	/* the same through a registered file, as libmoex submits */
	if (io_uring_register_files(&ring, &fd, 1) ||
	    !(sqe = prep(&ring, 0, MOEX_IOCTL_NOP, &nop, sizeof(nop), 0, false,
			 0, 1))) {
		fail(name, "register_files");
		goto out;
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	ret = io_uring_submit_and_wait(&ring, 1);
	if (ret == 1)
		ret = io_uring_peek_cqe(&ring, &cqe);
	else
		ret = -EIO;
	if (ret || cqe->res) {
		fail(name, "NOP on a fixed file: %d", ret ? ret : cqe->res);
		goto out;
	}
	io_uring_cqe_seen(&ring, cqe);

	memset(&info, 0, sizeof(info));
	ret = run(&ring, fd, MOEX_IOCTL_INFO, &info, sizeof(info), 0);
	if (ret) {
		fail(name, "INFO without out_addr: res %d", ret);
		goto out;
	}
	memset(&info, 0xab, sizeof(info));
	memset(&iinfo, 0, sizeof(iinfo));
	ret = run(&ring, fd, MOEX_IOCTL_INFO, &iinfo, sizeof(iinfo),
		  (uintptr_t)&info);
	memset(&iinfo, 0, sizeof(iinfo));
	if (ret || ioctl(fd, MOEX_IOCTL_INFO, &iinfo)) {
		fail(name, "INFO: res %d", ret);
		goto out;
	}
	if (info.abi_version != MOEX_ABI_VERSION ||
	    !(info.features & MOEX_FEAT_URING_CMD) ||
	    !(info.features & MOEX_FEAT_COPY_FIXED) ||
	    info.features != iinfo.features || info.engine != iinfo.engine ||
	    strcmp((char *)info.engine_name, (char *)iinfo.engine_name) ||
	    info.flags || info.reserved[0] || info.reserved[1]) {
		fail(name, "INFO output differs from the ioctl's");
		goto out;
	}

	fill(buf, len, 1);
	memset(&pin, 0, sizeof(pin));
	pin.addr = (uintptr_t)buf;
	pin.length = len;
	memset(&pout, 0xab, sizeof(pout));
	h = run(&ring, fd, MOEX_IOCTL_REGION_PIN, &pin, sizeof(pin),
		(uintptr_t)&pout);
	if (h <= 0 || pout.handle != (unsigned int)h ||
	    pout.addr != pin.addr || pout.length != len) {
		fail(name, "PIN: res %d, out handle %u", h, pout.handle);
		goto out;
	}
	/* a second pin, read-only, without out_addr */
	h2 = upin(&ring, fd, buf, PAGE, MOEX_PIN_READONLY);
	if (h2 <= 0 || h2 == h) {
		fail(name, "second PIN: res %d", h2);
		goto out;
	}

	memset(&rinfo, 0, sizeof(rinfo));
	rinfo.handle = h;
	memset(&rout, 0xab, sizeof(rout));
	ret = run(&ring, fd, MOEX_IOCTL_REGION_INFO, &rinfo, sizeof(rinfo),
		  (uintptr_t)&rout);
	if (ret || rout.handle != (unsigned int)h ||
	    rout.addr != (uintptr_t)buf || rout.length != len ||
	    rout.pages != len / PAGE || !rout.sg_segments ||
	    rout.region_flags || rout.pad) {
		fail(name, "REGION_INFO: res %d", ret);
		goto out;
	}
	rinfo.handle = h2;
	ret = run(&ring, fd, MOEX_IOCTL_REGION_INFO, &rinfo, sizeof(rinfo),
		  (uintptr_t)&rout);
	if (ret || rout.region_flags != MOEX_REGION_READONLY) {
		fail(name, "REGION_INFO read-only: res %d flags %u", ret,
		     rout.region_flags);
		goto out;
	}

	memset(&exp, 0, sizeof(exp));
	exp.handle = h;
	memset(&eout, 0xab, sizeof(eout));
	efd = run(&ring, fd, MOEX_IOCTL_REGION_EXPORT, &exp, sizeof(exp),
		  (uintptr_t)&eout);
	if (efd < 0 || eout.fd != (unsigned int)efd ||
	    !(fcntl(efd, F_GETFD) & FD_CLOEXEC)) {
		fail(name, "EXPORT: res %d out fd %u", efd, eout.fd);
		goto out;
	}
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, efd, 0);
	if (map == MAP_FAILED || memcmp(map, buf, len)) {
		fail(name, "EXPORT: the dma-buf does not show the region");
		goto out;
	}
	munmap(map, len);
	close(efd);

	/* COPY inside region h, then from the read-only region into it */
	ret = ucopy(&ring, fd, h, 3, h, 8 * PAGE + 5, 3 * PAGE + 11);
	if (ret || memcmp(buf + 8 * PAGE + 5, buf + 3, 3 * PAGE + 11)) {
		fail(name, "COPY: res %d", ret);
		goto out;
	}

	memset(&un, 0, sizeof(un));
	un.handle = h2;
	ret = run(&ring, fd, MOEX_IOCTL_REGION_UNPIN, &un, sizeof(un), 0);
	if (ret || uunpin(&ring, fd, h)) {
		fail(name, "UNPIN: res %d", ret);
		goto out;
	}

	read_stats(dev, &b);
	if (b.v[ST_PIN_CALLS] - a.v[ST_PIN_CALLS] != 2 ||
	    b.v[ST_UNPIN_CALLS] - a.v[ST_UNPIN_CALLS] != 2 ||
	    b.v[ST_DMABUF_EXPORTS] - a.v[ST_DMABUF_EXPORTS] != 1 ||
	    b.v[ST_COPY_CALLS] - a.v[ST_COPY_CALLS] != 1 ||
	    b.v[ST_COPY_BYTES] - a.v[ST_COPY_BYTES] != 3 * PAGE + 11 ||
	    b.v[ST_PINNED_BYTES] != a.v[ST_PINNED_BYTES] ||
	    b.v[ST_PIN_FAILURES] != a.v[ST_PIN_FAILURES] ||
	    b.v[ST_COPY_FAILURES] != a.v[ST_COPY_FAILURES]) {
		fail(name, "counters moved wrongly: pin_calls +%lld unpin_calls +%lld dmabuf_exports +%lld copy_calls +%lld copy_bytes +%lld pinned_bytes %lld -> %lld pin_failures +%lld copy_failures +%lld",
		     (long long)(b.v[ST_PIN_CALLS] - a.v[ST_PIN_CALLS]),
		     (long long)(b.v[ST_UNPIN_CALLS] - a.v[ST_UNPIN_CALLS]),
		     (long long)(b.v[ST_DMABUF_EXPORTS] - a.v[ST_DMABUF_EXPORTS]),
		     (long long)(b.v[ST_COPY_CALLS] - a.v[ST_COPY_CALLS]),
		     (long long)(b.v[ST_COPY_BYTES] - a.v[ST_COPY_BYTES]),
		     (long long)a.v[ST_PINNED_BYTES],
		     (long long)b.v[ST_PINNED_BYTES],
		     (long long)(b.v[ST_PIN_FAILURES] - a.v[ST_PIN_FAILURES]),
		     (long long)(b.v[ST_COPY_FAILURES] - a.v[ST_COPY_FAILURES]));
		goto out;
	}
	ok(name);
out:
	io_uring_queue_exit(&ring);
out_nofd:
	if (fd >= 0)
		close(fd);
	if (buf)
		munmap(buf, len);
}

/* One row of the bad-input table. */
struct bad_case {
	const char *name;
	unsigned int nr;
	union {
		struct moex_info info;
		struct moex_region_pin pin;
		struct moex_region_unpin unpin;
		struct moex_region_info rinfo;
		struct moex_region_export exp;
		struct moex_copy copy;
		struct moex_nop nop;
		uint64_t raw[9];
	} p;
	uint64_t out_addr;
	bool fixed;
	unsigned int buf_index;
	int err;
};

static struct bad_case *add_case(struct bad_case *c, const char *name,
				  unsigned int nr, int err)
{
	c->name = name;
	c->nr = nr;
	c->err = err;
	return c;
}

/* A valid copy inside region @h: the cases change one thing. */
static struct moex_copy *copy_case(struct bad_case *c, int h)
{
	c->p.copy.src_handle = h;
	c->p.copy.dst_handle = h;
	c->p.copy.dst_offset = 2 * PAGE;
	c->p.copy.length = PAGE;
	return &c->p.copy;
}

static void test_bad_input(void)
{
	const char *name = "bad-input";
	size_t len = 4 * PAGE;
	unsigned char *a = alloc_pages(len), *b = alloc_pages(len);
	unsigned char *fbuf = alloc_pages(2 * PAGE);
	struct moex_device *md = NULL;
	struct bad_case cs[64], *c;
	struct io_uring ring;
	struct iovec iov;
	uint32_t ha = 0, hr = 0;
	int fd, n = 0, i, bad = 0, ret;
	unsigned int unk = 0x7fffff00;

	/*
	 * The regions through libmoex; the table through a raw ring on the
	 * same file, as its rows are malformed commands libmoex never builds.
	 */
	ret = lib_open(0, &md);
	fd = ret ? -1 : moex_device_fd(md);
	if (fd < 0 || !a || !b || !fbuf ||
	    ring_init(&ring, 16, IORING_SETUP_SQE128)) {
		fail(name, "setup: %s", ret ? strerror(-ret) : strerror(errno));
		moex_close(md);
		return;
	}
	iov.iov_base = fbuf;
	iov.iov_len = 2 * PAGE;
	ret = moex_pin(md, a, len, 0, &ha);
	if (!ret)
		ret = moex_pin(md, b, len, MOEX_PIN_READONLY, &hr);
	if (ret || io_uring_register_buffers(&ring, &iov, 1)) {
		fail(name, "setup: pin %u %u: %s", ha, hr, strerror(-ret));
		goto out;
	}
	memset(cs, 0, sizeof(cs));
	wait_open_files(0, 1);

#define CASE(_name, _nr, _err) (c = add_case(&cs[n++], _name, _nr, _err))
	CASE("unknown-cmd", _IOWR(MOEX_IOC_MAGIC, 0x3f, struct moex_nop),
	     -ENOTTY);
	CASE("unknown-magic", _IOW('x', 6, struct moex_nop), -ENOTTY);
	CASE("info-flags", MOEX_IOCTL_INFO, -EINVAL)->p.info.flags = 1;
	CASE("info-reserved", MOEX_IOCTL_INFO, -EINVAL)->p.info.reserved[1] = 1;
	CASE("info-out-fault", MOEX_IOCTL_INFO, -EFAULT)->out_addr = 8;
	CASE("pin-unaligned-addr", MOEX_IOCTL_REGION_PIN, -EINVAL);
	c->p.pin.addr = (uintptr_t)a + 1;
	c->p.pin.length = PAGE;
	CASE("pin-zero-length", MOEX_IOCTL_REGION_PIN, -EINVAL);
	c->p.pin.addr = (uintptr_t)a;
	CASE("pin-unaligned-length", MOEX_IOCTL_REGION_PIN, -EINVAL);
	c->p.pin.addr = (uintptr_t)a;
	c->p.pin.length = 100;
	CASE("pin-flags", MOEX_IOCTL_REGION_PIN, -EINVAL);
	c->p.pin.addr = (uintptr_t)a;
	c->p.pin.length = PAGE;
	c->p.pin.flags = 0x80;
	CASE("pin-reserved", MOEX_IOCTL_REGION_PIN, -EINVAL);
	c->p.pin.addr = (uintptr_t)a;
	c->p.pin.length = PAGE;
	c->p.pin.reserved[0] = 1;
	CASE("pin-wrap", MOEX_IOCTL_REGION_PIN, -EOVERFLOW);
	c->p.pin.addr = ~0xfffULL;
	c->p.pin.length = 2 * PAGE;
	CASE("pin-kernel-addr", MOEX_IOCTL_REGION_PIN, -EFAULT);
	c->p.pin.addr = 0xffff888000000000ULL;
	c->p.pin.length = PAGE;
	CASE("pin-out-fault", MOEX_IOCTL_REGION_PIN, -EFAULT);
	c->p.pin.addr = (uintptr_t)a;
	c->p.pin.length = PAGE;
	c->out_addr = 8;
	CASE("unpin-unknown", MOEX_IOCTL_REGION_UNPIN, -ENOENT)->p.unpin.handle
		= unk;
	CASE("unpin-flags", MOEX_IOCTL_REGION_UNPIN, -EINVAL);
	c->p.unpin.handle = ha;
	c->p.unpin.flags = 1;
	CASE("unpin-reserved", MOEX_IOCTL_REGION_UNPIN, -EINVAL);
	c->p.unpin.handle = ha;
	c->p.unpin.reserved[1] = 1;
	CASE("unpin-out-addr", MOEX_IOCTL_REGION_UNPIN, -EINVAL);
	c->p.unpin.handle = ha;
	c->out_addr = (uintptr_t)fbuf;
	CASE("rinfo-unknown", MOEX_IOCTL_REGION_INFO, -ENOENT)->p.rinfo.handle
		= unk;
	CASE("rinfo-flags", MOEX_IOCTL_REGION_INFO, -EINVAL);
	c->p.rinfo.handle = ha;
	c->p.rinfo.flags = 1;
	CASE("rinfo-reserved", MOEX_IOCTL_REGION_INFO, -EINVAL);
	c->p.rinfo.handle = ha;
	c->p.rinfo.reserved[0] = 1;
	CASE("export-unknown", MOEX_IOCTL_REGION_EXPORT, -ENOENT)->p.exp.handle
		= unk;
	CASE("export-flags", MOEX_IOCTL_REGION_EXPORT, -EINVAL);
	c->p.exp.handle = ha;
	c->p.exp.flags = 1;
	CASE("export-pad", MOEX_IOCTL_REGION_EXPORT, -EINVAL);
	c->p.exp.handle = ha;
	c->p.exp.pad = 1;
	CASE("export-out-fault", MOEX_IOCTL_REGION_EXPORT, -EFAULT);
	c->p.exp.handle = ha;
	c->out_addr = 8;
#define COPYC(_name, _err) copy_case(CASE(_name, MOEX_IOCTL_COPY, _err), ha)
	COPYC("copy-unknown-src", -ENOENT)->src_handle = unk;
	COPYC("copy-unknown-dst", -ENOENT)->dst_handle = unk;
	COPYC("copy-zero-length", -EINVAL)->length = 0;
	COPYC("copy-flags", -EINVAL)->flags = 0x100;
	COPYC("copy-pad", -EINVAL)->pad = 1;
	COPYC("copy-reserved", -EINVAL)->reserved[1] = 1;
	COPYC("copy-range", -ERANGE)->length = 2 * PAGE + 1;
	COPYC("copy-offset-overflow", -ERANGE)->src_offset = ~0ULL - 10;
	COPYC("copy-readonly-dst", -EACCES)->dst_handle = hr;
	COPYC("copy-overlap", -EINVAL)->dst_offset = PAGE / 2;
	COPYC("copy-out-addr", -EINVAL);
	c->out_addr = (uintptr_t)fbuf;
	COPYC("copy-both-fixed", -EINVAL)->flags = MOEX_COPY_FLAGS_ALL;
	c->fixed = true;
	COPYC("copy-fixed-flag-no-buffer", -EINVAL)->flags =
		MOEX_COPY_SRC_FIXED;
	c->p.copy.src_handle = 0;
	c->p.copy.src_offset = (uintptr_t)fbuf;
	COPYC("copy-buffer-no-fixed-flag", -EINVAL);
	c->fixed = true;
	COPYC("copy-fixed-handle", -EINVAL)->flags = MOEX_COPY_SRC_FIXED;
	c->p.copy.src_offset = (uintptr_t)fbuf;
	c->fixed = true;
	COPYC("copy-fixed-index-range", -EFAULT)->flags = MOEX_COPY_SRC_FIXED;
	c->p.copy.src_handle = 0;
	c->p.copy.src_offset = (uintptr_t)fbuf;
	c->fixed = true;
	c->buf_index = 5;
	COPYC("copy-fixed-outside-buffer", -EFAULT)->flags =
		MOEX_COPY_SRC_FIXED;
	c->p.copy.src_handle = 0;
	c->p.copy.src_offset = (uintptr_t)fbuf + PAGE + 1;
	c->fixed = true;
	COPYC("copy-fixed-dst-readonly", -EACCES)->flags = MOEX_COPY_SRC_FIXED;
	c->p.copy.src_handle = 0;
	c->p.copy.src_offset = (uintptr_t)fbuf;
	c->p.copy.dst_handle = hr;
	c->fixed = true;
	COPYC("copy-fixed-region-range", -ERANGE)->flags = MOEX_COPY_DST_FIXED;
	c->p.copy.dst_handle = 0;
	c->p.copy.dst_offset = (uintptr_t)fbuf;
	c->p.copy.src_offset = 3 * PAGE + 1;
	c->fixed = true;
	CASE("nop-flags", MOEX_IOCTL_NOP, -EINVAL)->p.nop.flags = 1;
	CASE("nop-pad", MOEX_IOCTL_NOP, -EINVAL)->p.nop.pad = 1;
	CASE("nop-reserved", MOEX_IOCTL_NOP, -EINVAL)->p.nop.reserved[0] = 1;
	CASE("nop-trailing-byte", MOEX_IOCTL_NOP, -EINVAL)->p.raw[8] = 1;
	/* the first word after the 24-byte struct */
	CASE("nop-first-trailing-word", MOEX_IOCTL_NOP, -EINVAL)->p.raw[3] = 1;
	CASE("nop-out-addr", MOEX_IOCTL_NOP, -EINVAL)->out_addr =
		(uintptr_t)fbuf;
	CASE("nop-fixed", MOEX_IOCTL_NOP, -EINVAL)->fixed = true;
	/* out_addr is tried before the command's checks (length 0) */
	CASE("pin-out-fault-first", MOEX_IOCTL_REGION_PIN, -EFAULT)->out_addr =
		8;
	/* a valid pin but for the word after its 40-byte struct */
	CASE("pin-trailing-byte", MOEX_IOCTL_REGION_PIN, -EINVAL);
	c->p.pin.addr = (uintptr_t)a;
	c->p.pin.length = PAGE;
	c->p.raw[5] = 1ULL << 56;
#undef COPYC
#undef CASE

	for (i = 0; i < n; i++) {
		struct stats s0, s1;
		int ret, d;

		c = &cs[i];
		read_stats(0, &s0);
		ret = run_full(&ring, fd, c->nr, &c->p, sizeof(c->p.raw),
			       c->out_addr, c->fixed, c->buf_index, NULL);
		read_stats(0, &s1);
		d = stats_first_diff(&s0, &s1);
		if (ret != c->err) {
			printf("  %s: res %d, want %d\n", c->name, ret, c->err);
			bad++;
		} else if (d >= 0) {
			printf("  %s: %s changed\n", c->name, stat_names[d]);
			bad++;
		}
	}
	if (bad)
		fail(name, "%d of %d cases", bad, n);
	else
		ok(name);
out:
	io_uring_queue_exit(&ring);
	moex_close(md);
	munmap(a, len);
	munmap(b, len);
	munmap(fbuf, 2 * PAGE);
}

/*
 * @n copies of @chunk bytes in flight at once on @dev, every other one
 * with IOSQE_ASYNC: copy i goes from source offset i * stride to
 * destination offset (n - 1 - i) * stride + 1. Checks each CQE once,
 * the content and exact counters. Raw liburing: libmoex does not let a
 * caller set IOSQE_ASYNC, which sends a command to io_uring's workers.
 */
static void test_many_async(int dev, unsigned int n, size_t chunk)
{
	char name[64];
	size_t stride = chunk + 3, len = (n * stride + PAGE) & ~(PAGE - 1);
	unsigned char *src = alloc_pages(len), *dst = alloc_pages(len);
	unsigned char *seen = calloc(n, 1);
	struct io_uring ring;
	struct stats a, b;
	unsigned int i, got = 0;
	int fd, hs, hd, ret, bad = 0;
	double t0;

	snprintf(name, sizeof(name), "copy-%u-in-flight-async-moex%d", n, dev);
	fd = dev_open_raw(dev);
	if (fd < 0 || !src || !dst || !seen ||
	    ring_init(&ring, n, IORING_SETUP_SQE128)) {
		fail(name, "setup: %s", strerror(errno));
		goto out_nofd;
	}
	fill(src, len, 3);
	memset(dst, 0, len);
	hs = upin(&ring, fd, src, len, MOEX_PIN_READONLY);
	hd = upin(&ring, fd, dst, len, 0);
	if (hs <= 0 || hd <= 0) {
		fail(name, "pin: %d %d", hs, hd);
		goto out;
	}
	read_stats(dev, &a);
	for (i = 0; i < n; i++) {
		struct moex_copy c = {
			.src_handle = hs, .dst_handle = hd,
			.src_offset = i * stride,
			.dst_offset = (n - 1 - i) * stride + 1,
			.length = chunk,
		};
		struct io_uring_sqe *sqe = prep(&ring, fd, MOEX_IOCTL_COPY, &c,
						sizeof(c), 0, false, 0, i);

		if (sqe && (i & 1))
			sqe->flags |= IOSQE_ASYNC;
	}
	ret = io_uring_submit(&ring);
	if (ret != (int)n) {
		fail(name, "submit: %d", ret);
		goto out;
	}
	t0 = now();
	while (got < n && now() - t0 < 300) {
		struct __kernel_timespec ts = { .tv_sec = 1 };
		struct io_uring_cqe *cqe;

		ret = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
		if (ret == -ETIME)
			continue;
		if (ret) {
			fail(name, "wait: %d", ret);
			goto out;
		}
		if (cqe->user_data >= n || seen[cqe->user_data]++ ||
		    cqe->res) {
			printf("  cqe %llu: res %d\n",
			       (unsigned long long)cqe->user_data, cqe->res);
			bad++;
		}
		io_uring_cqe_seen(&ring, cqe);
		got++;
	}
	if (got < n) {
		fail(name, "%u of %u completions", got, n);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (memcmp(dst + (n - 1 - i) * stride + 1, src + i * stride,
			   chunk))
			bad++;
	read_stats(dev, &b);
	if (bad)
		fail(name, "%d bad completions or copies", bad);
	else
		report_copies(name, &a, &b, n, (long long)(n * chunk));
out:
	io_uring_queue_exit(&ring);
out_nofd:
	if (fd >= 0)
		close(fd);
	free(seen);
	if (src)
		munmap(src, len);
	if (dst)
		munmap(dst, len);
}

/*
 * The child of test_kill through libmoex: pins two regions, queues and
 * submits @n copies of @chunk bytes on a queue, says so on @wfd and waits
 * to die.
 */
static void kill_child_lib(int dev, int wfd, unsigned int n, size_t chunk)
{
	size_t len = (chunk + PAGE - 1) & ~(PAGE - 1);
	unsigned char *src = alloc_pages(len), *dst = alloc_pages(len);
	struct moex_device *md;
	struct moex_queue *q;
	uint32_t hs, hd;
	unsigned int i;
	char r = 'x', why[160];

	if (!src || !dst || lib_open(dev, &md))
		_exit(2);
	if (moex_pin(md, src, len, 0, &hs) || moex_pin(md, dst, len, 0, &hd))
		_exit(3);
	if (lib_queue(md, n, false, &q, why, sizeof(why)))
		_exit(6);
	for (i = 0; i < n; i++)
		if (moex_queue_copy(q, hd, 0, hs, 0, chunk, i))
			_exit(7);
	if (moex_queue_submit(q) != (int)n)
		_exit(4);
	if (write(wfd, &r, 1) != 1)
		_exit(5);
	for (;;)
		pause();
}

/*
 * The raw child of test_kill, for @async: the same with IOSQE_ASYNC on
 * every copy, which libmoex does not let a caller ask for.
 */
static void kill_child(int dev, int wfd, unsigned int n, size_t chunk,
		       bool async)
{
	size_t len = (chunk + PAGE - 1) & ~(PAGE - 1);
	unsigned char *src = alloc_pages(len), *dst = alloc_pages(len);
	struct io_uring ring;
	unsigned int i;
	int fd, hs, hd;
	char r = 'x';

	fd = dev_open_raw(dev);
	if (fd < 0 || !src || !dst || ring_init(&ring, n, IORING_SETUP_SQE128))
		_exit(2);
	hs = upin(&ring, fd, src, len, 0);
	hd = upin(&ring, fd, dst, len, 0);
	if (hs <= 0 || hd <= 0)
		_exit(3);
	for (i = 0; i < n; i++) {
		struct moex_copy c = {
			.src_handle = hs, .dst_handle = hd, .length = chunk,
		};
		struct io_uring_sqe *sqe = prep(&ring, fd, MOEX_IOCTL_COPY, &c,
						sizeof(c), 0, false, 0, i);

		if (sqe && async)
			sqe->flags |= IOSQE_ASYNC;
	}
	if (io_uring_submit(&ring) != (int)n)
		_exit(4);
	if (write(wfd, &r, 1) != 1)
		_exit(5);
	for (;;)
		pause();
}

static void test_kill(int dev, unsigned int n, size_t chunk, bool async,
		      unsigned int delay_ms)
{
	char name[64];
	struct stats a, b;
	int p[2], st, d = -1;
	long long done;
	double t0;
	pid_t pid;
	char r;

	snprintf(name, sizeof(name), "kill-9-%s-moex%d",
		 async ? "async" : "in-flight", dev);
	wait_open_files(dev, 0);
	if (read_stats(dev, &a) || pipe(p)) {
		fail(name, "setup: %s", strerror(errno));
		return;
	}
	pid = fork();
	if (pid < 0) {
		fail(name, "fork: %s", strerror(errno));
		return;
	}
	if (!pid) {
		close(p[0]);
		if (async)
			kill_child(dev, p[1], n, chunk, true);
		kill_child_lib(dev, p[1], n, chunk);
	}
	close(p[1]);
	if (read(p[0], &r, 1) != 1) {
		waitpid(pid, &st, 0);
		fail(name, "child failed before submitting (status %#x)", st);
		close(p[0]);
		return;
	}
	close(p[0]);
	usleep(delay_ms * 1000);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);

	/* the copies finish in the background; the regions go with them */
	t0 = now();
	do {
		usleep(100000);
		read_stats(dev, &b);
		b.v[ST_PIN_CALLS] -= 2;
		b.v[ST_COPY_CALLS] = a.v[ST_COPY_CALLS];
		b.v[ST_COPY_BYTES] = a.v[ST_COPY_BYTES];
		b.v[ST_COPY_FAILURES] = a.v[ST_COPY_FAILURES];
		d = stats_first_diff(&a, &b);
	} while (d >= 0 && now() - t0 < 120);
	read_stats(dev, &b);
	done = b.v[ST_COPY_CALLS] - a.v[ST_COPY_CALLS];
	if (d >= 0)
		fail(name, "%s is %lld, was %lld", stat_names[d], b.v[d],
		     a.v[d]);
	else if (done < 0 || done > n || b.v[ST_COPY_FAILURES] != a.v[ST_COPY_FAILURES] ||
		 b.v[ST_COPY_BYTES] - a.v[ST_COPY_BYTES] != done * (long long)chunk)
		fail(name, "copy counters: calls +%lld bytes +%lld failures +%lld",
		     done, b.v[ST_COPY_BYTES] - a.v[ST_COPY_BYTES],
		     b.v[ST_COPY_FAILURES] - a.v[ST_COPY_FAILURES]);
	else
		ok(name);
	printf("  %s: %lld of %u copies ran\n", name, done, n);
}

/* ---- main ------------------------------------------------------------ */

/* Host work completed later from its own thread, as a GPU callback does. */
struct posted {
	struct moex_queue *q;
	uint64_t user_data;
	pthread_t thread;
	bool started;
	int ret;
};

static void *posted_main(void *arg)
{
	struct posted *p = arg;

	usleep(50000);
	p->ret = moex__queue_post(p->q, p->user_data, -(int)p->user_data);
	return NULL;
}

static int posted_start(void *ctx)
{
	struct posted *p = ctx;

	if (pthread_create(&p->thread, NULL, posted_main, p))
		return -EAGAIN;
	p->started = true;
	return MOEX__QUEUE_LATER;
}

/*
 * Completions posted from other threads (IORING_OP_MSG_RING, how a GPU
 * layer's callback completes) arrive in the same ring as the device's
 * own, on this kernel and with the ring flags libmoex sets up.
 */
static void test_posted(int dev)
{
	struct posted p[4];
	struct moex_device *md = NULL;
	struct moex_queue *q = NULL;
	struct moex_cqe cqes[8];
	unsigned int i;
	char why[160], name[48];
	int ret, res = 0;

	snprintf(name, sizeof(name), "moex%d-posted-completions", dev);
	ret = lib_open(dev, &md);
	if (ret) {
		fail(name, "moex_open: %s", strerror(-ret));
		return;
	}
	ret = lib_queue(md, 16, false, &q, why, sizeof(why));
	if (ret) {
		fail(name, "%s", why);
		moex_close(md);
		return;
	}
	ret = moex__queue_can_post(q);
	if (ret) {
		fail(name, "no poster ring: %s", strerror(-ret));
		goto out;
	}
	for (i = 0; i < 4; i++) {
		p[i] = (struct posted){ .q = q, .user_data = 10 + i };
		ret = moex__queue_host(q, posted_start, &p[i], 10 + i);
		if (!ret && i % 2)
			ret = moex_queue_nop(q, 20 + i);
		if (ret) {
			fail(name, "queue: %s", strerror(-ret));
			goto out;
		}
	}
	ret = lib_run(q, 6, cqes);
	for (i = 0; i < 4; i++)
		if (p[i].started)
			pthread_join(p[i].thread, NULL);
	if (ret) {
		fail(name, "run: %s", strerror(-ret));
		goto out;
	}
	for (i = 0; i < 4; i++) {
		if (p[i].ret || !cqe_res(cqes, 6, 10 + i, &res) ||
		    res != -(int)(10 + i)) {
			fail(name, "completion %u: post %d, res %d", 10 + i,
			     p[i].ret, res);
			goto out;
		}
	}
	if (!cqe_res(cqes, 6, 21, &res) || res || !cqe_res(cqes, 6, 23, &res) ||
	    res) {
		fail(name, "the NOPs' completions");
		goto out;
	}
	if (moex_queue_wait(q, cqes, 8, 1, 0) != -ETIME) {
		fail(name, "a completion too many");
		goto out;
	}
	ok(name);
out:
	moex_queue_destroy(q);
	moex_close(md);
}

int main(int argc, char **argv)
{
	const char *module = "/moex/moex.ko", *params = "";
	int i, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--module") && i + 1 < argc) {
			module = argv[++i];
		} else if (!strcmp(argv[i], "--module-params") && i + 1 < argc) {
			params = argv[++i];
		} else {
			fprintf(stderr,
				"usage: %s [--module PATH] [--module-params P]\n",
				argv[0]);
			return 2;
		}
	}

	ret = mod_load_wait(module, params);
	if (ret) {
		fail("load-module", "%s: %s", module, strerror(-ret));
		goto out;
	}
	ok("load-module");

	test_sqe64();
	test_queue_mode(0);
	test_success(0);
	test_queue_commands(0);
	test_posted(0);
	test_sync_same(0);
	test_bad_input();
	test_many(0, 256, 4096);
	test_many_async(0, 256, 4096);
	test_fixed(0);
	test_kill(0, 16, 32 << 20, false, 50);
	test_kill(0, 16, 32 << 20, true, 50);
	if (dev_exists(1) && dev_is_edu(1)) {
		test_queue_mode(1);
		test_success(1);
		test_queue_commands(1);
		test_sync_same(1);
		test_many(1, 32, 1000);
		test_many_async(1, 32, 1000);
		test_fixed(1);
		test_kill(1, 16, 3000, false, 0);
	} else {
		skip("moex1-edu", "no edu device bound");
	}

	ret = mod_unload_wait();
	if (ret)
		fail("rmmod", "%s", strerror(-ret));
	else
		ok("rmmod");
out:
	return report_summary("vm-uring");
}
