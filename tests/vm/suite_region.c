// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-suite: pinning. REGION_PIN/UNPIN/INFO, scatter lists of huge and
 * base pages, VmPin accounting, RLIMIT_MEMLOCK for root and non-root,
 * max_pinned_mb, the per-open-file handle namespace, and what memory a
 * writable pin takes (not an ordinary file's page cache).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "suite.h"

/*
 * Check a region pinned at @p, @len, @flags on @dev as moex_region_query()
 * describes it, and that the raw REGION_INFO says the same with its flags,
 * pad and reserved fields zero (output padding libmoex does not show).
 */
static int check_rinfo(int dev, struct moex_device *md, uint32_t h,
		       const void *p, uint64_t len, uint32_t rflags,
		       struct moex_region_desc *out)
{
	struct moex_region_desc ri;
	struct moex_region_info raw;
	uint64_t pages = len / g_page;

	CHECK_OK(do_rinfo(md, h, &ri));
	CHECK(ri.handle == h, "REGION_INFO handle %u, expected %u", ri.handle, h);
	CHECK(ri.addr == p, "REGION_INFO addr %p, expected %p", ri.addr, p);
	CHECK(ri.length == len, "REGION_INFO length %llu, expected %llu",
	      (unsigned long long)ri.length, (unsigned long long)len);
	CHECK(ri.pages == pages, "REGION_INFO pages %llu, expected %llu",
	      (unsigned long long)ri.pages, (unsigned long long)pages);
	CHECK(ri.sg_segments >= 1 && ri.sg_segments <= pages,
	      "REGION_INFO sg_segments %u, expected 1..%llu", ri.sg_segments,
	      (unsigned long long)pages);
	if (dev == 0)
		CHECK(ri.dma_segments == 0,
		      "REGION_INFO dma_segments %u on the CPU engine, expected 0",
		      ri.dma_segments);
	else
		CHECK(ri.dma_segments >= 1 && ri.dma_segments <= ri.sg_segments,
		      "REGION_INFO dma_segments %u, expected 1..%u (sg_segments)",
		      ri.dma_segments, ri.sg_segments);
	CHECK(ri.flags == rflags, "REGION_INFO region_flags %#x, expected %#x",
	      ri.flags, rflags);
	/* raw: the output padding, which libmoex does not pass on */
	CHECK_OK(raw_rinfo(mdev_fd(md), h, &raw));
	CHECK(raw.handle == h && raw.addr == (uintptr_t)p &&
	      raw.length == len && raw.pages == pages &&
	      raw.sg_segments == ri.sg_segments &&
	      raw.dma_segments == ri.dma_segments &&
	      raw.region_flags == rflags,
	      "raw REGION_INFO differs from moex_region_query");
	CHECK(raw.flags == 0 && raw.pad == 0 && !raw.reserved[0] &&
	      !raw.reserved[1],
	      "REGION_INFO flags/pad/reserved not zero on output");
	if (out)
		*out = ri;
	return T_PASS;
}

/* Pin, look, unpin: counters, INFO, REGION_INFO and VmPin at each step. */
static int t_pin_basic(const struct test *t)
{
	const uint64_t len = 1 * MIB;
	struct moex_region_desc ri;
	struct stats s0;
	long long vm0;
	uint32_t h;
	void *p;
	struct moex_device *md;
	int dev;

	TRY(test_dev(t, &dev));
	MAP(p, buf_4k(len));
	STATS(dev, &s0);
	vm0 = vmpin_kb(0);
	OPEN_DEV(dev, &md);
	CHECK_OK(do_pin(md, p, len, 0, &h));
	CHECK(h != 0, "REGION_PIN returned handle 0");
	EXPECT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = len,
				     [ST_PINNED_REGIONS] = 1,
				     [ST_PIN_CALLS] = 1, [ST_OPEN_FILES] = 1));
	EXPECT_VMPIN(vm0 + 1024, " after pinning 1 MiB");
	EXPECT_PINNED(p, len, (long)(len / g_page), " after pinning 1 MiB");
	EXPECT_INFO_PINNED(md, s0.v[ST_PINNED_BYTES] + (long long)len, "");
	TRY(check_rinfo(dev, md, h, p, len, 0, &ri));
	note("moex%d: 1 MiB of base pages: %u sg segments, %u dma segments",
	     dev, ri.sg_segments, ri.dma_segments);
	CHECK_OK(do_unpin(md, h));
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1,
				     [ST_OPEN_FILES] = 1));
	EXPECT_VMPIN(vm0, " after unpin");
	EXPECT_PINNED(p, len, 0, " after unpin");
	CHECK_ERRNO(do_rinfo(md, h, &ri), ENOENT);
	CHECK_ERRNO(do_unpin(md, h), ENOENT);
	mdev_close(md);
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1));
	return T_PASS;
}

/* A PROT_READ mapping: EFAULT without READONLY, pinned with it. */
static int t_pin_readonly(const struct test *t)
{
	const uint64_t len = 256 * KIB;
	struct stats s0;
	long long vm0;
	uint32_t h;
	char *p;
	struct moex_device *md;
	int dev;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	MAP(p, buf_4k(len));
	fill_random(p, len);
	CHECK(!mprotect(p, len, PROT_READ), "mprotect: %s", strerror(errno));
	STATS(dev, &s0);
	vm0 = vmpin_kb(0);
	CHECK_ERRNO(do_pin(md, p, len, 0, &h), EFAULT);
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_FAILURES] = 1));
	CHECK(vmpin_kb(0) == vm0, "VmPin moved after a failed pin: %lld kB, was %lld",
	      vmpin_kb(0), vm0);
	CHECK_OK(do_pin(md, p, len, MOEX_PIN_READONLY, &h));
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_FAILURES] = 1, [ST_PIN_CALLS] = 1,
				     [ST_PINNED_BYTES] = len,
				     [ST_PINNED_REGIONS] = 1));
	EXPECT_VMPIN(vm0 + 256, "");
	TRY(check_rinfo(dev, md, h, p, len, MOEX_REGION_READONLY, NULL));
	CHECK_OK(do_unpin(md, h));
	EXPECT_VMPIN(vm0, " after unpin");
	return T_PASS;
}

/* READONLY on a writable mapping is allowed, and says so. */
static int t_pin_readonly_rw_mapping(const struct test *t)
{
	uint32_t h;
	void *p;
	struct moex_device *md;
	int dev;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	MAP(p, buf_4k(64 * KIB));
	CHECK_OK(do_pin(md, p, 64 * KIB, MOEX_PIN_READONLY, &h));
	TRY(check_rinfo(dev, md, h, p, 64 * KIB, MOEX_REGION_READONLY, NULL));
	return T_PASS;
}

/* t_pin_file_mapping()'s checks, with the ramfs mounted on dir. */
static int pin_file_mapping_in(int dev, const char *dir)
{
	const uint64_t len = 64 * KIB;
	struct moex_device *md;
	struct stats s0;
	unsigned char vec[64 * KIB / 4096];
	char path[64];
	long long vm0;
	uint32_t h;
	char *p, *q, *m, *s;
	int fd, sfd, mfd;
	size_t i;

	OPEN_DEV(dev, &md);
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = track_fd(open(path, O_RDWR | O_CREAT, 0600));
	snprintf(path, sizeof(path), "%s/sparse", dir);
	sfd = track_fd(open(path, O_RDWR | O_CREAT, 0600));
	mfd = track_fd(memfd_create("moex-pin", 0));
	CHECK(fd >= 0 && sfd >= 0 && mfd >= 0, "files or memfd: %s",
	      strerror(errno));
	CHECK(!ftruncate(fd, (off_t)len) && !ftruncate(sfd, (off_t)len) &&
	      !ftruncate(mfd, (off_t)len), "ftruncate: %s", strerror(errno));
	MAP(p, xmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
	MAP(s, xmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0));
	MAP(q, xmap(len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
	MAP(m, xmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0));
	memset(p, 0x5a, len);

	STATS(dev, &s0);
	vm0 = vmpin_kb(0);
	CHECK_ERRNO(do_pin(md, p, len, 0, &h), EOPNOTSUPP);
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_FAILURES] = 1));
	/* refused before any fault: a sparse file gets no pages */
	CHECK_ERRNO(do_pin(md, s, len, 0, &h), EOPNOTSUPP);
	CHECK(!mincore(s, len, vec), "mincore: %s", strerror(errno));
	for (i = 0; i < len / g_page; i++)
		CHECK(!(vec[i] & 1), "page %zu of the sparse file faulted in by a refused pin",
		      i);
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_FAILURES] = 2));
	CHECK(vmpin_kb(0) == vm0, "VmPin moved after a refused pin: %lld kB, was %lld",
	      vmpin_kb(0), vm0);
	/* read-only, the same pages pin */
	CHECK_OK(do_pin(md, p, len, MOEX_PIN_READONLY, &h));
	CHECK_OK(do_unpin(md, h));
	/* a private mapping: the write fault gives anonymous copies */
	CHECK_OK(do_pin(md, q, len, 0, &h));
	CHECK_OK(do_unpin(md, h));
	/* a memfd is shmem */
	CHECK_OK(do_pin(md, m, len, 0, &h));
	CHECK_OK(do_unpin(md, h));
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_FAILURES] = 2,
				     [ST_PIN_CALLS] = 3,
				     [ST_UNPIN_CALLS] = 3));
	return T_PASS;
}

/*
 * A shared mapping of an ordinary file (ramfs: page cache, not shmem): a
 * writable pin is refused with EOPNOTSUPP and leaves nothing pinned,
 * charged or faulted in; read-only it pins. A private writable mapping of the same file
 * pins (its pages become anonymous), and so does a memfd (shmem).
 */
static int t_pin_file_mapping(const struct test *t)
{
	const char *dir = "/tmp/moex-ramfs";
	int dev, ret;

	TRY(test_dev(t, &dev));
	CHECK(!mkdir(dir, 0700) || errno == EEXIST, "mkdir %s: %s", dir,
	      strerror(errno));
	CHECK(!mount("none", dir, "ramfs", 0, NULL),
	      "mount ramfs on %s: %s", dir, strerror(errno));
	ret = pin_file_mapping_in(dev, dir);
	/* lazily: the test's mappings and fds go after it returns */
	if (umount2(dir, MNT_DETACH) && ret == T_PASS)
		return FAIL("umount %s: %s", dir, strerror(errno));
	return ret;
}

/*
 * 4 MiB of transparent huge pages: at most one segment per 2 MiB, or per
 * 256 KiB where a DMA-mapped region's segments bounce through swiotlb.
 */
static int t_region_thp(const struct test *t)
{
	const uint64_t len = 4 * MIB;
	struct moex_region_desc ri;
	uint64_t seg = HPAGE;
	long long huge;
	uint32_t h;
	void *p;
	struct moex_device *md;
	int dev;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	MAP(p, buf_thp(len));
	huge = thp_bytes(p);
	if (huge < (long long)len)
		return skip("no transparent huge pages for the buffer (AnonHugePages %lld bytes)",
			    huge);
	if (dev == g_edu && swiotlb_forced())
		seg = 256 * KIB;
	CHECK_OK(do_pin(md, p, len, 0, &h));
	TRY(check_rinfo(dev, md, h, p, len, 0, &ri));
	CHECK(ri.sg_segments <= len / seg,
	      "sg_segments %u for %llu bytes of huge pages, expected at most %llu",
	      ri.sg_segments, (unsigned long long)len,
	      (unsigned long long)(len / seg));
	note("moex%d: 4 MiB of huge pages: %u sg segments, %u dma segments",
	     dev, ri.sg_segments, ri.dma_segments);
	return T_PASS;
}

/* 1 MiB of base pages (MADV_NOHUGEPAGE): 1..pages segments. */
static int t_region_4k(const struct test *t)
{
	const uint64_t len = 1 * MIB;
	struct moex_region_desc ri;
	uint32_t h;
	void *p;
	struct moex_device *md;
	int dev;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	MAP(p, buf_4k(len));
	CHECK(thp_bytes(p) == 0, "MADV_NOHUGEPAGE buffer has %lld bytes of huge pages",
	      thp_bytes(p));
	CHECK_OK(do_pin(md, p, len, 0, &h));
	TRY(check_rinfo(dev, md, h, p, len, 0, &ri));
	return T_PASS;
}

/* 64 MiB: many pin chunks; REGION_INFO and the counters add up. */
static int t_pin_large(const struct test *t)
{
	const uint64_t len = 64 * MIB;
	struct stats s0;
	long long vm0;
	uint32_t h;
	void *p;
	struct moex_device *md;

	(void)t;
	OPEN_DEV(0, &md);
	MAP(p, buf_any(len));
	STATS(0, &s0);
	vm0 = vmpin_kb(0);
	CHECK_OK(do_pin(md, p, len, 0, &h));
	EXPECT_STATS(0, &s0, DELTA([ST_PINNED_BYTES] = len,
				   [ST_PINNED_REGIONS] = 1, [ST_PIN_CALLS] = 1));
	EXPECT_VMPIN(vm0 + 65536, "");
	TRY(check_rinfo(0, md, h, p, len, 0, NULL));
	CHECK_OK(do_unpin(md, h));
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1));
	EXPECT_VMPIN(vm0, " after unpin");
	return T_PASS;
}

/* The same range pinned twice: two regions, two handles. */
static int t_pin_twice(const struct test *t)
{
	struct stats s0;
	uint32_t h1, h2;
	void *p;
	struct moex_device *md;

	(void)t;
	OPEN_DEV(0, &md);
	MAP(p, buf_4k(128 * KIB));
	STATS(0, &s0);
	CHECK_OK(do_pin(md, p, 128 * KIB, 0, &h1));
	CHECK_OK(do_pin(md, p, 128 * KIB, MOEX_PIN_READONLY, &h2));
	CHECK(h1 && h2 && h1 != h2, "handles %u and %u, expected two distinct ones",
	      h1, h2);
	EXPECT_STATS(0, &s0, DELTA([ST_PINNED_BYTES] = 256 * KIB,
				   [ST_PINNED_REGIONS] = 2, [ST_PIN_CALLS] = 2));
	TRY(check_rinfo(0, md, h1, p, 128 * KIB, 0, NULL));
	TRY(check_rinfo(0, md, h2, p, 128 * KIB, MOEX_REGION_READONLY, NULL));
	CHECK_OK(do_unpin(md, h1));
	TRY(check_rinfo(0, md, h2, p, 128 * KIB, MOEX_REGION_READONLY, NULL));
	CHECK_OK(do_unpin(md, h2));
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 2, [ST_UNPIN_CALLS] = 2));
	return T_PASS;
}

/*
 * The counters are 64-bit: 65 pins of one 64 MiB range are 4160 MiB, past
 * 4 GiB, in stats/ and INFO (root: RLIMIT_MEMLOCK does not apply).
 */
static int t_pinned_past_4g(const struct test *t)
{
	const uint64_t len = 64 * MIB;
	const long long all = 65 * (long long)len;
	uint32_t h[65];
	struct stats s0;
	void *p;
	struct moex_device *md;
	int i, n = (int)(sizeof(h) / sizeof(h[0]));

	(void)t;
	OPEN_DEV(0, &md);
	MAP(p, buf_thp(len));
	STATS(0, &s0);
	for (i = 0; i < n; i++)
		CHECK_OK(do_pin(md, p, len, 0, &h[i]));
	EXPECT_STATS(0, &s0, DELTA([ST_PINNED_BYTES] = all,
				   [ST_PINNED_REGIONS] = n, [ST_PIN_CALLS] = n));
	EXPECT_INFO_PINNED(md, s0.v[ST_PINNED_BYTES] + all, "");
	for (i = 0; i < n; i++)
		CHECK_OK(do_unpin(md, h[i]));
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = n, [ST_UNPIN_CALLS] = n));
	return T_PASS;
}

/* A second UNPIN of the same handle: ENOENT, counted once. */
static int t_unpin_twice(const struct test *t)
{
	struct stats s0;
	uint32_t h;
	void *p;
	struct moex_device *md;

	(void)t;
	OPEN_DEV(0, &md);
	MAP(p, buf_4k(64 * KIB));
	STATS(0, &s0);
	CHECK_OK(do_pin(md, p, 64 * KIB, 0, &h));
	CHECK_OK(do_unpin(md, h));
	CHECK_ERRNO(do_unpin(md, h), ENOENT);
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1));
	return T_PASS;
}

/* Closing the file drops its regions without counting unpins. */
static int t_close_releases(const struct test *t)
{
	struct stats s0;
	long long vm0;
	uint32_t h;
	char *p;
	struct moex_device *md;
	int dev, i;

	TRY(test_dev(t, &dev));
	MAP(p, buf_4k(3 * 256 * KIB));
	STATS(dev, &s0);
	vm0 = vmpin_kb(0);
	OPEN_DEV(dev, &md);
	for (i = 0; i < 3; i++)
		CHECK_OK(do_pin(md, p + i * 256 * KIB, 256 * KIB,
				i == 2 ? MOEX_PIN_READONLY : 0, &h));
	EXPECT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = 768 * KIB,
				     [ST_PINNED_REGIONS] = 3, [ST_PIN_CALLS] = 3,
				     [ST_OPEN_FILES] = 1));
	EXPECT_VMPIN(vm0 + 768, "");
	mdev_close(md);
	WAIT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 3), 10000);
	EXPECT_VMPIN(vm0, " after close");
	return T_PASS;
}

/* ---- RLIMIT_MEMLOCK ---------------------------------------------------------- */

static int drop_root(void)
{
	char buf[4096], *s;

	CHECK(setgroups(0, NULL) == 0, "setgroups: %s", strerror(errno));
	CHECK(setgid(65534) == 0, "setgid: %s", strerror(errno));
	CHECK(setuid(65534) == 0, "setuid: %s", strerror(errno));
	CHECK(geteuid() == 65534 && getegid() == 65534, "still uid %d gid %d",
	      (int)geteuid(), (int)getegid());
	CHECK(read_file("/proc/self/status", buf, sizeof(buf)) > 0,
	      "read /proc/self/status");
	s = strstr(buf, "CapEff:");
	CHECK(s && strspn(s + 7, "\t 0") >= 17,
	      "capabilities left after setuid: %.30s", s ? s : "?");
	return T_PASS;
}

static int set_memlock(rlim_t bytes)
{
	struct rlimit rl = { bytes, bytes };

	CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit: %s",
	      strerror(errno));
	return T_PASS;
}

/* nobody with 64 KiB of RLIMIT_MEMLOCK: 1 MiB fails, 32 KiB works. */
static int rlimit_child(void *arg)
{
	struct stats s0;
	uint32_t h;
	void *big, *small;
	struct moex_device *md;

	(void)arg;
	OPEN_DEV(0, &md);	/* opened as root: the node is 0600 */
	MAP(big, buf_any(1 * MIB));
	MAP(small, buf_4k(32 * KIB));
	TRY(drop_root());
	TRY(set_memlock(64 * KIB));
	STATS(0, &s0);
	CHECK(vmpin_kb(0) == 0, "VmPin %lld kB at start", vmpin_kb(0));
	CHECK_ERRNO(do_pin(md, big, 1 * MIB, 0, &h), ENOMEM);
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1));
	EXPECT_VMPIN(0, " after the refused pin");
	CHECK_OK(do_pin(md, small, 32 * KIB, 0, &h));
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1, [ST_PIN_CALLS] = 1,
				   [ST_PINNED_BYTES] = 32 * KIB,
				   [ST_PINNED_REGIONS] = 1));
	EXPECT_VMPIN(32, "");
	return T_PASS;
}

static int t_rlimit_nonroot(const struct test *t)
{
	struct stats s0;

	(void)t;
	STATS(0, &s0);
	TRY(child_run(rlimit_child, NULL, 120));
	WAIT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1, [ST_PIN_CALLS] = 1),
		   10000);
	return T_PASS;
}

/* Exactly the limit is allowed; one page more is not. */
static int rlimit_boundary_child(void *arg)
{
	struct stats s0;
	uint32_t h;
	char *p;
	struct moex_device *md;

	(void)arg;
	OPEN_DEV(0, &md);
	MAP(p, buf_4k(128 * KIB));
	TRY(drop_root());
	TRY(set_memlock(64 * KIB));
	STATS(0, &s0);
	CHECK_OK(do_pin(md, p, 32 * KIB, 0, &h));
	CHECK_OK(do_pin(md, p + 32 * KIB, 32 * KIB, MOEX_PIN_READONLY, &h));
	EXPECT_VMPIN(64, "");
	CHECK_ERRNO(do_pin(md, p + 64 * KIB, g_page, 0, &h), ENOMEM);
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1, [ST_PIN_CALLS] = 2,
				   [ST_PINNED_BYTES] = 64 * KIB,
				   [ST_PINNED_REGIONS] = 2));
	EXPECT_VMPIN(64, " after the refused pin");
	/* unpinning gives the room back */
	CHECK_OK(do_unpin(md, h));
	CHECK_OK(do_pin(md, p + 64 * KIB, 32 * KIB, 0, &h));
	EXPECT_VMPIN(64, "");
	return T_PASS;
}

static int t_rlimit_boundary(const struct test *t)
{
	struct stats s0;

	(void)t;
	STATS(0, &s0);
	TRY(child_run(rlimit_boundary_child, NULL, 120));
	WAIT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1, [ST_PIN_CALLS] = 3,
				 [ST_UNPIN_CALLS] = 1), 10000);
	return T_PASS;
}

/* root (CAP_IPC_LOCK) pins past its RLIMIT_MEMLOCK, and VmPin shows it. */
static int root_rlimit_child(void *arg)
{
	uint32_t h;
	void *p;
	struct moex_device *md;

	(void)arg;
	OPEN_DEV(0, &md);
	MAP(p, buf_any(1 * MIB));
	TRY(set_memlock(64 * KIB));
	CHECK_OK(do_pin(md, p, 1 * MIB, 0, &h));
	EXPECT_VMPIN(1024, "");
	CHECK_OK(do_unpin(md, h));
	EXPECT_VMPIN(0, " after unpin");
	return T_PASS;
}

static int t_rlimit_root(const struct test *t)
{
	struct stats s0;

	(void)t;
	STATS(0, &s0);
	TRY(child_run(root_rlimit_child, NULL, 120));
	WAIT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1),
		   10000);
	return T_PASS;
}

/* ---- max_pinned_mb -------------------------------------------------------------- */

static int total_pinned_zero(void)
{
	int d;

	for (d = 0; d < 64; d++) {
		if (!dev_present(d))
			continue;
		if (stat_get(d, ST_PINNED_BYTES) != 0)
			return skip("moex%d has %lld bytes pinned already", d,
				    stat_get(d, ST_PINNED_BYTES));
	}
	return T_PASS;
}

static int t_max_pinned(const struct test *t)
{
	struct moex_device_info info;
	struct stats s0;
	uint32_t h1, h2, h3;
	long long vm0;
	char *p;
	struct moex_device *md;

	(void)t;
	TRY(total_pinned_zero());
	OPEN_DEV(0, &md);
	MAP(p, buf_any(16 * MIB));
	CHECK_OK(set_max_pinned_mb(8));
	CHECK_OK(do_info(md, &info));
	CHECK(info.max_pinned_bytes == 8 * MIB, "INFO max_pinned_bytes %llu, expected %llu",
	      (unsigned long long)info.max_pinned_bytes, 8 * MIB);
	STATS(0, &s0);
	vm0 = vmpin_kb(0);
	CHECK_ERRNO(do_pin(md, p, 16 * MIB, 0, &h1), ENOMEM);
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1));
	CHECK(vmpin_kb(0) == vm0, "VmPin moved after a refused pin: %lld kB, was %lld",
	      vmpin_kb(0), vm0);
	CHECK_OK(do_pin(md, p, 4 * MIB, 0, &h1));
	CHECK_ERRNO(do_pin(md, p + 4 * MIB, 8 * MIB, 0, &h2), ENOMEM);
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 2, [ST_PIN_CALLS] = 1,
				   [ST_PINNED_BYTES] = 4 * MIB,
				   [ST_PINNED_REGIONS] = 1));
	/* exactly up to the cap */
	CHECK_OK(do_pin(md, p + 4 * MIB, 4 * MIB, 0, &h2));
	CHECK_ERRNO(do_pin(md, p + 8 * MIB, g_page, 0, &h3), ENOMEM);
	CHECK_OK(do_unpin(md, h2));
	CHECK_OK(set_max_pinned_mb(0));
	CHECK_OK(do_pin(md, p + 4 * MIB, 8 * MIB, 0, &h2));
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 3, [ST_PIN_CALLS] = 3,
				   [ST_UNPIN_CALLS] = 1,
				   [ST_PINNED_BYTES] = 12 * MIB,
				   [ST_PINNED_REGIONS] = 2));
	CHECK_OK(do_unpin(md, h1));
	CHECK_OK(do_unpin(md, h2));
	return T_PASS;
}

/* The cap counts every device together. */
static int t_max_pinned_all_devices(const struct test *t)
{
	struct stats s0, s1;
	uint32_t h0, h1, h;
	char *p;
	struct moex_device *md0, *md1;

	(void)t;
	if (g_edu < 0)
		return skip("no edu device: only one moex device");
	TRY(total_pinned_zero());
	OPEN_DEV(0, &md0);
	OPEN_DEV(g_edu, &md1);
	MAP(p, buf_any(10 * MIB));
	CHECK_OK(set_max_pinned_mb(8));
	STATS(0, &s0);
	STATS(g_edu, &s1);
	CHECK_OK(do_pin(md0, p, 4 * MIB, 0, &h0));
	CHECK_OK(do_pin(md1, p + 4 * MIB, 4 * MIB, 0, &h1));
	CHECK_ERRNO(do_pin(md1, p + 8 * MIB, g_page, 0, &h), ENOMEM);
	CHECK_ERRNO(do_pin(md0, p + 8 * MIB, g_page, 0, &h), ENOMEM);
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1, [ST_PIN_CALLS] = 1,
				   [ST_PINNED_BYTES] = 4 * MIB,
				   [ST_PINNED_REGIONS] = 1));
	EXPECT_STATS(g_edu, &s1, DELTA([ST_PIN_FAILURES] = 1, [ST_PIN_CALLS] = 1,
				       [ST_PINNED_BYTES] = 4 * MIB,
				       [ST_PINNED_REGIONS] = 1));
	/* room made on one device is usable on the other */
	CHECK_OK(do_unpin(md0, h0));
	CHECK_OK(do_pin(md1, p + 8 * MIB, 2 * MIB, 0, &h));
	return T_PASS;
}

/* Lowering the cap unpins nothing; only later pins fail. */
static int t_max_pinned_lower(const struct test *t)
{
	struct stats s0;
	uint32_t h1, h2;
	char *p;
	struct moex_device *md;

	(void)t;
	TRY(total_pinned_zero());
	OPEN_DEV(0, &md);
	MAP(p, buf_any(12 * MIB));
	STATS(0, &s0);
	CHECK_OK(do_pin(md, p, 8 * MIB, 0, &h1));
	CHECK_OK(set_max_pinned_mb(4));
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_PINNED_BYTES] = 8 * MIB,
				   [ST_PINNED_REGIONS] = 1));
	TRY(check_rinfo(0, md, h1, p, 8 * MIB, 0, NULL));
	CHECK_ERRNO(do_pin(md, p + 8 * MIB, g_page, 0, &h2), ENOMEM);
	CHECK_OK(do_unpin(md, h1));
	CHECK_OK(do_pin(md, p + 8 * MIB, 4 * MIB, 0, &h2));
	CHECK_ERRNO(do_pin(md, p, g_page, 0, &h1), ENOMEM);
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 2, [ST_PIN_FAILURES] = 2,
				   [ST_UNPIN_CALLS] = 1,
				   [ST_PINNED_BYTES] = 4 * MIB,
				   [ST_PINNED_REGIONS] = 1));
	return T_PASS;
}

/* ---- handles are per open file --------------------------------------------------- */

static int t_handles_per_file(const struct test *t)
{
	struct moex_region_desc ri;
	struct stats s0;
	uint32_t h1, h2;
	struct moex_device *md1, *md2;
	int dev, dfd;
	char *p1, *p2;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md1);
	OPEN_DEV(dev, &md2);
	MAP(p1, buf_4k(64 * KIB));
	MAP(p2, buf_4k(64 * KIB));
	STATS(dev, &s0);
	CHECK_OK(do_pin(md1, p1, 64 * KIB, 0, &h1));
	CHECK_ERRNO(do_rinfo(md2, h1, &ri), ENOENT);
	CHECK_ERRNO(do_unpin(md2, h1), ENOENT);
	CHECK_ERRNO(do_export(md2, h1, &dfd), ENOENT);
	CHECK_ERRNO(do_copy(md2, h1, h1, 0, 8192, 4096), ENOENT);
	/* md2's own handle may have the same number: it names md2's region */
	CHECK_OK(do_pin(md2, p2, 64 * KIB, 0, &h2));
	CHECK_OK(do_rinfo(md2, h2, &ri));
	CHECK(ri.addr == p2, "md2's handle %u names %p, expected %p",
	      h2, ri.addr, (void *)p2);
	if (h2 == h1)
		note("both files' first handle is %u", h1);
	CHECK_OK(do_rinfo(md1, h1, &ri));
	CHECK(ri.addr == p1, "md1's handle %u names %p, expected %p",
	      h1, ri.addr, (void *)p1);
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 2,
				     [ST_PINNED_BYTES] = 128 * KIB,
				     [ST_PINNED_REGIONS] = 2));
	return T_PASS;
}

struct fork_arg {
	int dev;
	struct moex_device *md;
	uint32_t h;
	const void *p;
};

static int handles_fork_child(void *arg)
{
	const struct fork_arg *a = arg;
	struct moex_region_desc ri;
	struct moex_device *md;

	OPEN_DEV(a->dev, &md);
	CHECK_ERRNO(do_rinfo(md, a->h, &ri), ENOENT);
	CHECK_ERRNO(do_unpin(md, a->h), ENOENT);
	/* the inherited descriptor is the same open file: the handle works */
	CHECK_OK(do_rinfo(a->md, a->h, &ri));
	CHECK(ri.addr == a->p, "inherited fd: handle names %p, expected %p",
	      ri.addr, a->p);
	return T_PASS;
}

static int t_handles_fork(const struct test *t)
{
	struct moex_region_desc ri;
	struct fork_arg a;
	struct stats s0;
	void *p;

	TRY(test_dev(t, &a.dev));
	OPEN_DEV(a.dev, &a.md);
	MAP(p, buf_4k(64 * KIB));
	a.p = p;
	STATS(a.dev, &s0);
	CHECK_OK(do_pin(a.md, p, 64 * KIB, 0, &a.h));
	TRY(child_run(handles_fork_child, &a, 60));
	/* the child's exit closed nothing of ours */
	CHECK_OK(do_rinfo(a.md, a.h, &ri));
	EXPECT_STATS(a.dev, &s0, DELTA([ST_PIN_CALLS] = 1,
				       [ST_PINNED_BYTES] = 64 * KIB,
				       [ST_PINNED_REGIONS] = 1));
	return T_PASS;
}

/*
 * The edu device addresses 28 bits: a region bigger than that cannot be
 * DMA-mapped (the IOMMU runs out of addresses; with --swiotlb, the 64 MiB
 * bounce pool runs out). The pin fails after validation with ENOMEM
 * (pin_failures + 1), unwinds completely, and a normal pin works afterwards.
 */
static int t_edu_pin_beyond_dma(const struct test *t)
{
	const uint64_t len = 320 * MIB;
	struct stats s0;
	long long vm0;
	uint32_t h;
	void *p;
	struct moex_device *md;
	int err;

	(void)t;
	if (g_edu < 0)
		return skip("no edu device (/dev/moexN with engine edu)");
	OPEN_DEV(g_edu, &md);
	MAP(p, buf_any(len));
	STATS(g_edu, &s0);
	vm0 = vmpin_kb(0);
	err = do_pin(md, p, len, 0, &h);
	CHECK(err == ENOMEM, "pinning 320 MiB on edu: %s, expected ENOMEM",
	      errname(err));
	EXPECT_STATS(g_edu, &s0, DELTA([ST_PIN_FAILURES] = 1));
	EXPECT_VMPIN(vm0, " after the failed pin");
	EXPECT_PINNED(p, len, 0, " after the failed pin");
	CHECK_OK(do_pin(md, p, 16 * MIB, 0, &h));
	CHECK_OK(do_unpin(md, h));
	return T_PASS;
}

/* A region holds its pages after the process unmaps them. */
static int t_pin_outlives_munmap(const struct test *t)
{
	const size_t len = 256 * KIB;
	unsigned char *a, *b, *want, *m;
	struct stats s0;
	long long vm0;
	uint32_t ha, hb;
	struct moex_device *md;
	int dev, dfd, rc;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	MAP(a, buf_4k(len));
	MAP(b, buf_4k(len));
	MAP(want, buf_4k(len));
	fill_random(a, len);
	fill_random(b, len);
	memcpy(want, a, len);
	STATS(dev, &s0);
	vm0 = vmpin_kb(0);
	CHECK_OK(do_pin(md, a, len, 0, &ha));
	CHECK_OK(do_pin(md, b, len, 0, &hb));
	CHECK_OK(do_export(md, ha, &dfd));
	xunmap(a);
	EXPECT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = 2 * len,
				     [ST_PINNED_REGIONS] = 2, [ST_PIN_CALLS] = 2,
				     [ST_DMABUF_EXPORTS] = 1));
	EXPECT_VMPIN(vm0 + 512, " after munmap");
	CHECK_OK(do_copy(md, hb, ha, 1000, 4000, 3000));
	memcpy(want + 4000, b + 1000, 3000);
	m = xmap(len, PROT_READ, MAP_SHARED, dfd, 0);
	CHECK(m, "mmap of the dma-buf: %s", strerror(errno));
	rc = check_bytes_at(__FILE__, __LINE__, "unmapped region through its dma-buf",
			    m, want, len);
	TRY(rc);
	CHECK_OK(do_unpin(md, ha));
	xunmap(m);
	xclose(dfd);
	WAIT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = len, [ST_PINNED_REGIONS] = 1,
				   [ST_PIN_CALLS] = 2, [ST_UNPIN_CALLS] = 1,
				   [ST_DMABUF_EXPORTS] = 1,
				   [ST_COPY_CALLS] = 1, [ST_COPY_BYTES] = 3000), 10000);
	EXPECT_VMPIN(vm0 + 256, "");
	return T_PASS;
}

#define HUGE_PIN_LEN	(2ULL << 40)	/* 2 TiB: 4 GiB of page pointers */

/*
 * nobody with an unlimited RLIMIT_MEMLOCK (common on inference hosts) asks
 * to pin 2 TiB of PROT_NONE address space: the pin must fail cleanly
 * (ENOMEM or EFAULT, pin_failures + 1) and the kernel must not complain.
 */
static int huge_pin_child(void *arg)
{
	struct stats s0;
	uint32_t h;
	void *p;
	struct moex_device *md;
	int err;

	(void)arg;
	OPEN_DEV(0, &md);
	TRY(set_memlock(RLIM_INFINITY));
	TRY(drop_root());
	p = xmap(HUGE_PIN_LEN, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!p)
		return skip("cannot reserve 2 TiB of address space: %s",
			    strerror(errno));
	STATS(0, &s0);
	err = do_pin(md, p, HUGE_PIN_LEN, 0, &h);
	CHECK(err == ENOMEM || err == EFAULT,
	      "pinning 2 TiB of PROT_NONE space: expected ENOMEM or EFAULT, got %s",
	      errname(err));
	EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1));
	CHECK(vmpin_kb(0) == 0, "VmPin %lld kB after the refused pin", vmpin_kb(0));
	return T_PASS;
}

/* (the runner fails the test if the kernel logs a warning meanwhile) */
static int t_pin_huge_length(const struct test *t)
{
	(void)t;
	return child_run(huge_pin_child, NULL, 120);
}

const struct test suite_region_tests[] = {
	{ "pin_basic_cpu", t_pin_basic, DEV_CPU, TF_MODULE },
	{ "pin_basic_edu", t_pin_basic, DEV_EDU, TF_MODULE },
	{ "pin_readonly_cpu", t_pin_readonly, DEV_CPU, TF_MODULE },
	{ "pin_readonly_edu", t_pin_readonly, DEV_EDU, TF_MODULE },
	{ "pin_readonly_rw_mapping", t_pin_readonly_rw_mapping, DEV_CPU, TF_MODULE },
	{ "region_info_thp_cpu", t_region_thp, DEV_CPU, TF_MODULE },
	{ "region_info_thp_edu", t_region_thp, DEV_EDU, TF_MODULE },
	{ "region_info_4k_cpu", t_region_4k, DEV_CPU, TF_MODULE },
	{ "region_info_4k_edu", t_region_4k, DEV_EDU, TF_MODULE },
	{ "pin_large_64m", t_pin_large, NULL, TF_MODULE },
	{ "pin_same_range_twice", t_pin_twice, NULL, TF_MODULE },
	{ "pinned_bytes_past_4g", t_pinned_past_4g, NULL, TF_MODULE },
	{ "unpin_twice", t_unpin_twice, NULL, TF_MODULE },
	{ "close_releases_regions_cpu", t_close_releases, DEV_CPU, TF_MODULE },
	{ "close_releases_regions_edu", t_close_releases, DEV_EDU, TF_MODULE },
	{ "rlimit_memlock_nonroot", t_rlimit_nonroot, NULL, TF_MODULE },
	{ "rlimit_memlock_boundary", t_rlimit_boundary, NULL, TF_MODULE },
	{ "rlimit_memlock_root", t_rlimit_root, NULL, TF_MODULE },
	{ "max_pinned_mb", t_max_pinned, NULL, TF_MODULE },
	{ "max_pinned_mb_all_devices", t_max_pinned_all_devices, NULL, TF_MODULE },
	{ "max_pinned_mb_lowered", t_max_pinned_lower, NULL, TF_MODULE },
	{ "handles_per_file_cpu", t_handles_per_file, DEV_CPU, TF_MODULE },
	{ "handles_per_file_edu", t_handles_per_file, DEV_EDU, TF_MODULE },
	{ "handles_per_file_fork", t_handles_fork, DEV_CPU, TF_MODULE },
	{ "pin_outlives_munmap_cpu", t_pin_outlives_munmap, DEV_CPU, TF_MODULE },
	{ "pin_outlives_munmap_edu", t_pin_outlives_munmap, DEV_EDU, TF_MODULE },
	{ "pin_huge_length_unprivileged", t_pin_huge_length, NULL, TF_MODULE },
	{ "edu_pin_beyond_dma_mask", t_edu_pin_beyond_dma, NULL, TF_MODULE },
	{ "pin_file_mapping", t_pin_file_mapping, DEV_CPU, TF_MODULE },
	{ NULL, NULL, NULL, 0 }
};
