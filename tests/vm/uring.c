// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-uring: the uring_cmd interface of moex.ko, in the test VM.
 *
 * Loads the module (--module PATH, default /moex/moex.ko), runs every
 * command over IORING_OP_URING_CMD (struct moex_uring_cmd in a 128-byte
 * SQE), the bad-input table with the ioctls' errnos and unchanged
 * counters, 256 copies in flight, fixed-buffer copies, kill -9 with copies
 * in flight on moex0 and moex1 (edu), and unloads the module.
 *
 * Prints "ok NAME", "FAIL NAME: WHY" or "SKIP NAME: WHY" per test and
 * "vm-uring: N passed, N failed, N skipped"; exits 0 iff nothing failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
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

#include "vmlib.h"

#define PAGE		4096UL

static int passed, failed, skipped;

static void ok(const char *name)
{
	printf("ok %s\n", name);
	passed++;
}

static void fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	failed++;
}

static void skip(const char *name, const char *why)
{
	printf("SKIP %s: %s\n", name, why);
	skipped++;
}

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

static void fill(void *p, size_t len, unsigned int seed)
{
	unsigned char *c = p;
	size_t i;

	for (i = 0; i < len; i++)
		c[i] = (unsigned char)(i * 131 + seed * 7 + (i >> 12));
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

/* Every command's success path on device @dev. */
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
		fail(name, "counters moved wrongly");
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
	struct bad_case cs[64], *c;
	struct io_uring ring;
	struct iovec iov;
	int fd, ha, hr, n = 0, i, bad = 0;
	unsigned int unk = 0x7fffff00;

	fd = dev_open_raw(0);
	if (fd < 0 || !a || !b || !fbuf ||
	    ring_init(&ring, 16, IORING_SETUP_SQE128)) {
		fail(name, "setup: %s", strerror(errno));
		return;
	}
	iov.iov_base = fbuf;
	iov.iov_len = 2 * PAGE;
	ha = upin(&ring, fd, a, len, 0);
	hr = upin(&ring, fd, b, len, MOEX_PIN_READONLY);
	if (ha <= 0 || hr <= 0 || io_uring_register_buffers(&ring, &iov, 1)) {
		fail(name, "setup: pin %d %d", ha, hr);
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
	CASE("nop-out-addr", MOEX_IOCTL_NOP, -EINVAL)->out_addr =
		(uintptr_t)fbuf;
	CASE("nop-fixed", MOEX_IOCTL_NOP, -EINVAL)->fixed = true;
	CASE("pin-trailing-byte", MOEX_IOCTL_REGION_PIN, -EINVAL)->p.raw[5] =
		1ULL << 56;
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
	close(fd);
	munmap(a, len);
	munmap(b, len);
	munmap(fbuf, 2 * PAGE);
}

/*
 * @n copies of @chunk bytes in flight at once on @dev, every other one
 * with IOSQE_ASYNC: copy i goes from source offset i * stride to
 * destination offset (n - 1 - i) * stride + 1. Checks each CQE once,
 * the content and exact counters.
 */
static void test_many(int dev, unsigned int n, size_t chunk)
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

	snprintf(name, sizeof(name), "copy-%u-in-flight-moex%d", n, dev);
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

/* Fixed buffer -> region and region -> fixed buffer on @dev. */
static void test_fixed(int dev)
{
	char name[64];
	size_t len = 8 * PAGE, blen = 6 * PAGE, n = 3 * PAGE + 123;
	unsigned char *reg = alloc_pages(len), *fb = alloc_pages(2 * blen);
	struct io_uring ring;
	struct iovec iov[2];
	struct stats a, b;
	struct moex_copy c;
	int fd, h, ret;

	snprintf(name, sizeof(name), "copy-fixed-moex%d", dev);
	fd = dev_open_raw(dev);
	if (fd < 0 || !reg || !fb ||
	    ring_init(&ring, 8, IORING_SETUP_SQE128)) {
		fail(name, "setup: %s", strerror(errno));
		goto out_nofd;
	}
	iov[0].iov_base = fb;
	iov[0].iov_len = blen;
	iov[1].iov_base = fb + blen;
	iov[1].iov_len = blen;
	memset(reg, 0, len);
	fill(fb, 2 * blen, 9);
	h = upin(&ring, fd, reg, len, 0);
	if (h <= 0 || io_uring_register_buffers(&ring, iov, 2)) {
		fail(name, "setup: pin %d", h);
		goto out;
	}
	read_stats(dev, &a);

	/* buffer 1, from 100 bytes in, to region offset 5000 */
	memset(&c, 0, sizeof(c));
	c.src_offset = (uintptr_t)fb + blen + 100;
	c.dst_handle = h;
	c.dst_offset = 5000;
	c.length = n;
	c.flags = MOEX_COPY_SRC_FIXED;
	ret = run_full(&ring, fd, MOEX_IOCTL_COPY, &c, sizeof(c), 0, true, 1,
		       NULL);
	if (ret || memcmp(reg + 5000, fb + blen + 100, n)) {
		fail(name, "fixed -> region: res %d", ret);
		goto out;
	}

	/* region offset 5000 back to buffer 0 at 7 bytes in */
	memset(fb, 0, blen);
	memset(&c, 0, sizeof(c));
	c.src_handle = h;
	c.src_offset = 5000;
	c.dst_offset = (uintptr_t)fb + 7;
	c.length = n;
	c.flags = MOEX_COPY_DST_FIXED;
	ret = run_full(&ring, fd, MOEX_IOCTL_COPY, &c, sizeof(c), 0, true, 0,
		       NULL);
	if (ret || memcmp(fb + 7, fb + blen + 100, n) || fb[6] ||
	    fb[7 + n]) {
		fail(name, "region -> fixed: res %d", ret);
		goto out;
	}
	read_stats(dev, &b);
	report_copies(name, &a, &b, 2, (long long)(2 * n));
out:
	io_uring_queue_exit(&ring);
out_nofd:
	if (fd >= 0)
		close(fd);
	if (reg)
		munmap(reg, len);
	if (fb)
		munmap(fb, 2 * blen);
}

/*
 * The child of test_kill: pins two regions, submits @n copies of @chunk
 * bytes (with IOSQE_ASYNC if @async), says so on @wfd and waits to die.
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

	snprintf(name, sizeof(name), "kill-9-in-flight-moex%d", dev);
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
		kill_child(dev, p[1], n, chunk, async);
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

/* ---- module ---------------------------------------------------------- */

static int load_module(const char *path)
{
	double t0;
	int ret = mod_load(path);

	if (ret && ret != EEXIST)
		return -ret;
	t0 = now();
	while (!dev_exists(0) && now() - t0 < 10)
		usleep(50000);
	return dev_exists(0) ? 0 : -ENODEV;
}

static int unload_module(void)
{
	double t0 = now();
	int ret;

	/* a dying process's files may take a moment to close */
	do {
		ret = -mod_unload();
		if (!ret)
			return 0;
		usleep(100000);
	} while (ret == -EWOULDBLOCK && now() - t0 < 30);
	return ret;
}

int main(int argc, char **argv)
{
	const char *module = "/moex/moex.ko";
	int i, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--module") && i + 1 < argc) {
			module = argv[++i];
		} else {
			fprintf(stderr, "usage: %s [--module PATH]\n", argv[0]);
			return 2;
		}
	}

	ret = load_module(module);
	if (ret) {
		fail("load-module", "%s: %s", module, strerror(-ret));
		goto out;
	}
	ok("load-module");

	test_sqe64();
	test_success(0);
	test_bad_input();
	test_many(0, 256, 4096);
	test_fixed(0);
	test_kill(0, 16, 32 << 20, true, 50);
	if (dev_exists(1) && dev_is_edu(1)) {
		test_success(1);
		test_many(1, 32, 1000);
		test_fixed(1);
		test_kill(1, 16, 3000, false, 0);
	} else {
		skip("moex1-edu", "no edu device bound");
	}

	ret = unload_module();
	if (ret)
		fail("rmmod", "%s", strerror(-ret));
	else
		ok("rmmod");
out:
	printf("vm-uring: %d passed, %d failed, %d skipped\n", passed, failed,
	       skipped);
	return failed ? 1 : 0;
}
