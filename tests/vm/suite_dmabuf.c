// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-suite: REGION_EXPORT. The dma-buf fd's flags, CPU mmap (shared
 * only, read-only for read-only regions), the region's lifetime through
 * the dma-buf (after UNPIN, after close, through a mapping), running out of
 * descriptors, and import by vgem (DRM PRIME) as a real importer that
 * attaches and maps through the DMA API.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <linux/dma-buf.h>

/*
 * The kernel's uapi drm.h: Debian's linux-libc-dev does not ship drm/, so
 * this is the copy libdrm-dev installs (tools/deps).
 */
#include <libdrm/drm.h>

#include "suite.h"

struct exp_region {
	struct moex_device *md;
	uint32_t h;
	char *p;
	size_t len;
	int dfd;
};

/* Open @dev, pin @len bytes of random data (READONLY if @ro) and export. */
static int export_setup(int dev, size_t len, bool ro, struct exp_region *e)
{
	OPEN_DEV(dev, &e->md);
	e->len = len;
	e->p = buf_4k(len);
	CHECK(e->p, "mmap: %s", strerror(errno));
	fill_random(e->p, len);
	CHECK_OK(do_pin(e->md, e->p, len, ro ? MOEX_PIN_READONLY : 0, &e->h));
	CHECK_OK(do_export(e->md, e->h, &e->dfd));
	return T_PASS;
}

/*
 * mmap(@prot, @flags) of @len bytes of the dma-buf @dfd must fail with
 * @want; @what names the attempt in the failure message.
 */
static int mmap_refused_at(int line, int dfd, size_t len, int prot, int flags,
			   int want, const char *what)
{
	void *m = mmap(NULL, len, prot, flags, dfd, 0);
	int err = errno;

	if (m != MAP_FAILED)
		munmap(m, len);
	if (m != MAP_FAILED || err != want)
		return fail_at(__FILE__, line, "%s: expected %s, got %s", what,
			       errname(want),
			       m == MAP_FAILED ? errname(err) : "success");
	return T_PASS;
}
#define EXPECT_MMAP_REFUSED(dfd, len, prot, flags, want, what)		\
	TRY(mmap_refused_at(__LINE__, dfd, len, prot, flags, want, what))

static int t_export_basic(const struct test *t)
{
	struct moex_region_desc ri;
	struct exp_region e;
	struct stats s0;
	char path[64], buf[1024];
	int dev, fl, n;
	off_t end;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &e.md);
	e.p = buf_4k(256 * KIB);
	CHECK(e.p, "mmap: %s", strerror(errno));
	CHECK_OK(do_pin(e.md, e.p, 256 * KIB, 0, &e.h));
	CHECK_OK(do_rinfo(e.md, e.h, &ri));
	CHECK(!(ri.flags & MOEX_REGION_EXPORTED),
	      "region_flags %#x before the export", ri.flags);
	STATS(dev, &s0);
	CHECK_OK(do_export(e.md, e.h, &e.dfd));
	CHECK(e.dfd >= 0, "dma-buf fd %d", e.dfd);
	EXPECT_STATS(dev, &s0, DELTA([ST_DMABUF_EXPORTS] = 1));
	fl = fcntl(e.dfd, F_GETFD);
	CHECK(fl >= 0 && (fl & FD_CLOEXEC), "dma-buf fd flags %#x: no FD_CLOEXEC", fl);
	fl = fcntl(e.dfd, F_GETFL);
	CHECK(fl >= 0 && (fl & O_ACCMODE) == O_RDWR,
	      "dma-buf file flags %#x, expected O_RDWR", fl);
	end = lseek(e.dfd, 0, SEEK_END);
	CHECK(end == 256 * 1024, "lseek(SEEK_END) on the dma-buf: %lld, expected %d",
	      (long long)end, 256 * 1024);
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", e.dfd);
	n = read_file(path, buf, sizeof(buf));
	CHECK(n > 0 && strstr(buf, "exp_name:\tmoex"),
	      "%s does not name the exporter moex: %.200s", path,
	      n > 0 ? buf : "unreadable");
	CHECK_OK(do_rinfo(e.md, e.h, &ri));
	CHECK(ri.flags == MOEX_REGION_EXPORTED,
	      "region_flags %#x after export, expected %#x", ri.flags,
	      (unsigned int)MOEX_REGION_EXPORTED);
	return T_PASS;
}

/* CPU mmap: the region's bytes, both ways, at an offset, not past the end. */
static int t_export_mmap(const struct test *t)
{
	const size_t len = 256 * KIB;
	struct dma_buf_sync sync = { 0 };
	struct exp_region e;
	unsigned char *m, *m2;
	size_t offs[] = { 0, 1, 4095, 4096, 70000, len - 1 };
	size_t i;
	int dev;

	TRY(test_dev(t, &dev));
	TRY(export_setup(dev, len, false, &e));
	m = xmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, e.dfd, 0);
	CHECK(m, "mmap MAP_SHARED of the dma-buf: %s", strerror(errno));
	sync.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW;
	CHECK_OK(xioctl(e.dfd, DMA_BUF_IOCTL_SYNC, &sync));
	CHECK_BYTES("dma-buf mapping", m, e.p, len);
	for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		m[offs[i]] = (unsigned char)(0x11 + i);
		CHECK((unsigned char)e.p[offs[i]] == 0x11 + i,
		      "write through the dma-buf at %zu not seen in the region", offs[i]);
		e.p[offs[i] ^ 1] = (char)(0x77 + i);
		CHECK(m[offs[i] ^ 1] == (unsigned char)(0x77 + i),
		      "write to the region at %zu not seen through the dma-buf",
		      offs[i] ^ 1);
	}
	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	CHECK_OK(xioctl(e.dfd, DMA_BUF_IOCTL_SYNC, &sync));
	m2 = xmap(len - 2 * g_page, PROT_READ, MAP_SHARED, e.dfd, 2 * g_page);
	CHECK(m2, "mmap of the dma-buf at offset %zu: %s", 2 * g_page,
	      strerror(errno));
	CHECK_BYTES("dma-buf mapping at an offset", m2, e.p + 2 * g_page,
		    len - 2 * g_page);
	EXPECT_MMAP_REFUSED(e.dfd, len + g_page, PROT_READ, MAP_SHARED, EINVAL,
			    "mmap past the dma-buf's end");
	return T_PASS;
}

static int t_export_mmap_private(const struct test *t)
{
	struct exp_region e;
	int dev;

	TRY(test_dev(t, &dev));
	TRY(export_setup(dev, 64 * KIB, false, &e));
	EXPECT_MMAP_REFUSED(e.dfd, 64 * KIB, PROT_READ | PROT_WRITE, MAP_PRIVATE, EINVAL,
			    "mmap MAP_PRIVATE of the dma-buf");
	EXPECT_MMAP_REFUSED(e.dfd, 64 * KIB, PROT_READ, MAP_PRIVATE, EINVAL,
			    "mmap MAP_PRIVATE PROT_READ of the dma-buf");
	return T_PASS;
}

/* A READONLY region exports O_RDONLY: no writable mapping. */
static int t_export_readonly(const struct test *t)
{
	const size_t len = 64 * KIB;
	struct moex_region_desc ri;
	struct exp_region e;
	int dev, fl;

	TRY(test_dev(t, &dev));
	TRY(export_setup(dev, len, true, &e));
	fl = fcntl(e.dfd, F_GETFL);
	CHECK(fl >= 0 && (fl & O_ACCMODE) == O_RDONLY,
	      "dma-buf of a READONLY region: file flags %#x, expected O_RDONLY", fl);
	CHECK_OK(do_rinfo(e.md, e.h, &ri));
	CHECK(ri.flags == (MOEX_REGION_READONLY | MOEX_REGION_EXPORTED),
	      "region_flags %#x, expected READONLY|EXPORTED", ri.flags);
	EXPECT_MMAP_REFUSED(e.dfd, len, PROT_READ | PROT_WRITE, MAP_SHARED, EACCES,
			    "mmap PROT_WRITE of a read-only dma-buf");
	return T_PASS;
}

/*
 * ... but a shared read-only mapping works (Documentation/moex.rst: the
 * CPU can mmap it with MAP_SHARED) and cannot be made writable.
 */
static int t_export_readonly_mmap(const struct test *t)
{
	const size_t len = 64 * KIB;
	struct exp_region e;
	void *m;
	int dev;

	TRY(test_dev(t, &dev));
	TRY(export_setup(dev, len, true, &e));
	m = xmap(len, PROT_READ, MAP_SHARED, e.dfd, 0);
	CHECK(m, "mmap(PROT_READ, MAP_SHARED) of a read-only dma-buf: expected success, got %s",
	      errname(errno));
	CHECK_BYTES("read-only dma-buf mapping", m, e.p, len);
	CHECK(mprotect(m, len, PROT_READ | PROT_WRITE) && errno == EACCES,
	      "mprotect PROT_WRITE on a read-only dma-buf mapping: expected EACCES, got %s",
	      errname(errno));
	return T_PASS;
}

/*
 * What the CPU writes into a pinned region stays as written through a
 * dma-buf CPU access (DMA_BUF_IOCTL_SYNC) and the region's release. Where
 * DMA bounces through swiotlb (make vm-swiotlb), the engine's mapping is a
 * copy of the region in the bounce pool: syncing all of it back for the
 * CPU, at a CPU access or at the unmap, would put that older copy over the
 * CPU's writes. (The engine's own copies sync what they read and write.)
 */
static int t_cpu_writes_kept(const struct test *t)
{
	const size_t len = 256 * KIB;
	struct dma_buf_sync sync = { 0 };
	unsigned char *m, *want;
	struct exp_region e;
	struct stats s0;
	int dev;

	TRY(test_dev(t, &dev));
	STATS(dev, &s0);
	MAP(want, buf_4k(len));
	TRY(export_setup(dev, len, false, &e));
	/* written after the pin, as a loader fills pinned memory */
	fill_random(e.p, len);
	memcpy(want, e.p, len);
	m = xmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, e.dfd, 0);
	CHECK(m, "mmap MAP_SHARED of the dma-buf: %s", strerror(errno));
	sync.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW;
	CHECK_OK(xioctl(e.dfd, DMA_BUF_IOCTL_SYNC, &sync));
	CHECK_BYTES("the dma-buf after SYNC_START", m, want, len);
	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	CHECK_OK(xioctl(e.dfd, DMA_BUF_IOCTL_SYNC, &sync));
	CHECK_BYTES("the region after SYNC_END", e.p, want, len);

	/* written again; then the last reference goes and the pages unpin */
	fill_random(e.p, len);
	memcpy(want, e.p, len);
	CHECK_OK(do_unpin(e.md, e.h));
	xunmap(m);
	xclose(e.dfd);
	WAIT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1,
				   [ST_DMABUF_EXPORTS] = 1,
				   [ST_OPEN_FILES] = 1), 10000);
	CHECK_BYTES("the memory after the region's release", e.p, want, len);
	return T_PASS;
}

/* GUP refuses the dma-buf's PFN mapping: pinning it fails after validation. */
static int t_pin_dmabuf_mapping(const struct test *t)
{
	const size_t len = 64 * KIB;
	struct exp_region e;
	struct stats s0;
	uint32_t h;
	void *m;
	int dev;

	TRY(test_dev(t, &dev));
	TRY(export_setup(dev, len, false, &e));
	m = xmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, e.dfd, 0);
	CHECK(m, "mmap of the dma-buf: %s", strerror(errno));
	CHECK_BYTES("dma-buf mapping", m, e.p, len);	/* faulted in */
	STATS(dev, &s0);
	CHECK_ERRNO(do_pin(e.md, m, len, 0, &h), EFAULT);
	CHECK_ERRNO(do_pin(e.md, m, len, MOEX_PIN_READONLY, &h), EFAULT);
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_FAILURES] = 2));
	return T_PASS;
}

/* Two exports of one region: each holds it. */
static int t_export_twice(const struct test *t)
{
	struct exp_region e;
	struct stats s0;
	int dev, dfd2;

	TRY(test_dev(t, &dev));
	STATS(dev, &s0);
	TRY(export_setup(dev, 128 * KIB, false, &e));
	CHECK_OK(do_export(e.md, e.h, &dfd2));
	CHECK(dfd2 != e.dfd, "two exports gave the same fd %d", dfd2);
	EXPECT_STATS(dev, &s0, DELTA([ST_DMABUF_EXPORTS] = 2, [ST_PIN_CALLS] = 1,
				     [ST_PINNED_BYTES] = 128 * KIB,
				     [ST_PINNED_REGIONS] = 1,
				     [ST_OPEN_FILES] = 1));
	CHECK_OK(do_unpin(e.md, e.h));
	mdev_close(e.md);
	xclose(e.dfd);
	EXPECT_STATS(dev, &s0, DELTA([ST_DMABUF_EXPORTS] = 2, [ST_PIN_CALLS] = 1,
				     [ST_UNPIN_CALLS] = 1,
				     [ST_PINNED_BYTES] = 128 * KIB,
				     [ST_PINNED_REGIONS] = 1));
	xclose(dfd2);
	WAIT_STATS(dev, &s0, DELTA([ST_DMABUF_EXPORTS] = 2, [ST_PIN_CALLS] = 1,
				   [ST_UNPIN_CALLS] = 1), 10000);
	return T_PASS;
}

/*
 * The dma-buf keeps the region pinned and accounted after UNPIN and after
 * the moex file is closed, until the last fd and mapping are gone.
 */
static int t_export_lifetime(const struct test *t)
{
	const size_t len = 1 * MIB;
	struct exp_region e;
	struct stats s0;
	long long vm0;
	unsigned char *m;
	int dev;

	TRY(test_dev(t, &dev));
	STATS(dev, &s0);
	vm0 = vmpin_kb(0);
	TRY(export_setup(dev, len, false, &e));
	m = xmap(len, PROT_READ | PROT_WRITE, MAP_SHARED, e.dfd, 0);
	CHECK(m, "mmap of the dma-buf: %s", strerror(errno));
	EXPECT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = len, [ST_PINNED_REGIONS] = 1,
				     [ST_PIN_CALLS] = 1, [ST_DMABUF_EXPORTS] = 1,
				     [ST_OPEN_FILES] = 1));
	EXPECT_VMPIN(vm0 + 1024, "");

	CHECK_OK(do_unpin(e.md, e.h));
	EXPECT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = len, [ST_PINNED_REGIONS] = 1,
				     [ST_PIN_CALLS] = 1, [ST_DMABUF_EXPORTS] = 1,
				     [ST_UNPIN_CALLS] = 1, [ST_OPEN_FILES] = 1));
	EXPECT_VMPIN(vm0 + 1024, " after UNPIN");

	mdev_close(e.md);
	sleep_ms(100);
	EXPECT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = len, [ST_PINNED_REGIONS] = 1,
				     [ST_PIN_CALLS] = 1, [ST_DMABUF_EXPORTS] = 1,
				     [ST_UNPIN_CALLS] = 1));
	CHECK(vmpin_kb(0) == vm0 + 1024,
	      "VmPin %lld kB after closing /dev/moex%d, expected %lld",
	      vmpin_kb(0), dev, vm0 + 1024);

	xclose(e.dfd);
	sleep_ms(100);
	EXPECT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = len, [ST_PINNED_REGIONS] = 1,
				     [ST_PIN_CALLS] = 1, [ST_DMABUF_EXPORTS] = 1,
				     [ST_UNPIN_CALLS] = 1));
	/* the mapping still shows the region, and still writes to it */
	CHECK_BYTES("dma-buf mapping after every fd closed", m, e.p, len);
	m[12345] ^= 0xff;
	CHECK(m[12345] == (unsigned char)e.p[12345],
	      "write through the orphaned mapping not seen in the region");

	xunmap(m);
	WAIT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_DMABUF_EXPORTS] = 1,
				   [ST_UNPIN_CALLS] = 1), 10000);
	EXPECT_VMPIN(vm0, " at the end");
	return T_PASS;
}

/* No descriptor left: EMFILE, nothing exported, nothing counted. */
static int export_emfile_child(void *arg)
{
	struct moex_region_desc ri;
	struct rlimit rl;
	struct stats s0;
	uint32_t h;
	void *p;
	struct moex_device *md;
	int dfd, lowest, err, rinfo_err;

	(void)arg;
	OPEN_DEV(0, &md);
	MAP(p, buf_4k(64 * KIB));
	CHECK_OK(do_pin(md, p, 64 * KIB, 0, &h));
	lowest = dup(mdev_fd(md));
	CHECK(lowest >= 0, "dup: %s", strerror(errno));
	close(lowest);
	STATS(0, &s0);		/* reading stats needs descriptors: before */
	CHECK(!getrlimit(RLIMIT_NOFILE, &rl), "getrlimit: %s", strerror(errno));
	rl.rlim_cur = (rlim_t)lowest;
	CHECK(!setrlimit(RLIMIT_NOFILE, &rl), "setrlimit: %s", strerror(errno));
	err = do_export_raw(md, h, &dfd);
	rinfo_err = do_rinfo(md, h, &ri);
	rl.rlim_cur = (rlim_t)lowest + 8;
	CHECK(!setrlimit(RLIMIT_NOFILE, &rl), "setrlimit: %s", strerror(errno));
	CHECK(err == EMFILE, "REGION_EXPORT with no descriptor left: expected EMFILE, got %s",
	      errname(err));
	EXPECT_STATS(0, &s0, NODELTA);
	CHECK_OK(rinfo_err);
	CHECK(!(ri.flags & MOEX_REGION_EXPORTED),
	      "region_flags %#x after a failed export", ri.flags);
	CHECK_OK(do_export_raw(md, h, &dfd));
	CHECK(dfd == lowest, "dma-buf fd %d, expected %d", dfd, lowest);
	EXPECT_STATS(0, &s0, DELTA([ST_DMABUF_EXPORTS] = 1));
	return T_PASS;
}

static int t_export_emfile(const struct test *t)
{
	(void)t;
	return child_run(export_emfile_child, NULL, 60);
}

/* ---- vgem: a DRM importer ------------------------------------------------------ */

static int vgem_open(int *card)
{
	char *argv[] = { "modprobe", "vgem", NULL };
	int rc, i;

	rc = run_prog(argv, 60, true);
	if (rc != 0)
		return skip("modprobe vgem failed (exit status %d)", rc);
	for (i = 0; i < 16; i++) {
		struct drm_version v;
		char path[32], name[64];
		int fd;

		snprintf(path, sizeof(path), "/dev/dri/card%d", i);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		memset(&v, 0, sizeof(v));
		memset(name, 0, sizeof(name));
		v.name = name;
		v.name_len = sizeof(name) - 1;
		if (!ioctl(fd, DRM_IOCTL_VERSION, &v) && !strcmp(name, "vgem")) {
			*card = track_fd(fd);
			return T_PASS;
		}
		close(fd);
	}
	return skip("vgem loaded but no /dev/dri/card* named vgem");
}

/*
 * The start of the vgem tests: the device of @t, the vgem card, the stats
 * before, and a region of @len bytes (@ro: READONLY) exported.
 */
static int vgem_setup(const struct test *t, size_t len, bool ro, int *dev,
		      int *card, struct stats *s0, struct exp_region *e)
{
	TRY(test_dev(t, dev));
	TRY(vgem_open(card));
	STATS(*dev, s0);
	return export_setup(*dev, len, ro, e);
}

/*
 * The end of the vgem tests: close the card and the dma-buf, unpin, and
 * expect the import gone with them (the moex file stays open).
 */
static int vgem_close_all(int dev, int card, struct exp_region *e,
			  const struct stats *s0)
{
	xclose(card);
	xclose(e->dfd);
	CHECK_OK(do_unpin(e->md, e->h));
	WAIT_STATS(dev, s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1,
				  [ST_DMABUF_EXPORTS] = 1, [ST_OPEN_FILES] = 1),
		   10000);
	return T_PASS;
}

/* DRM_IOCTL_PRIME_FD_TO_HANDLE of @dfd on @card into @ph: 0 or errno. */
static int prime_import(int card, int dfd, struct drm_prime_handle *ph)
{
	memset(ph, 0, sizeof(*ph));
	ph->fd = dfd;
	return xioctl(card, DRM_IOCTL_PRIME_FD_TO_HANDLE, ph);
}

static int t_vgem_import(const struct test *t)
{
	const size_t len = 1 * MIB;
	struct drm_prime_handle ph;
	struct drm_gem_close gc;
	struct exp_region e;
	struct stats s0;
	int dev, card, err;

	TRY(vgem_setup(t, len, false, &dev, &card, &s0, &e));
	err = prime_import(card, e.dfd, &ph);
	CHECK(!err, "DRM_IOCTL_PRIME_FD_TO_HANDLE on vgem: %s", errname(err));
	CHECK(ph.handle != 0, "vgem GEM handle 0");
	xclose(e.dfd);
	CHECK_OK(do_unpin(e.md, e.h));
	mdev_close(e.md);
	sleep_ms(100);
	/* vgem's GEM object holds the dma-buf, which holds the region */
	EXPECT_STATS(dev, &s0, DELTA([ST_PINNED_BYTES] = len, [ST_PINNED_REGIONS] = 1,
				     [ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1,
				     [ST_DMABUF_EXPORTS] = 1));
	memset(&gc, 0, sizeof(gc));
	gc.handle = ph.handle;
	err = xioctl(card, DRM_IOCTL_GEM_CLOSE, &gc);
	CHECK(!err, "DRM_IOCTL_GEM_CLOSE: %s", errname(err));
	xclose(card);
	WAIT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1,
				   [ST_DMABUF_EXPORTS] = 1), 10000);
	return T_PASS;
}

/* Importing one dma-buf twice gives one GEM object; closing the card drops it. */
static int t_vgem_import_twice(const struct test *t)
{
	struct drm_prime_handle ph1, ph2;
	struct exp_region e;
	struct stats s0;
	int dev, card, err;

	TRY(vgem_setup(t, 256 * KIB, false, &dev, &card, &s0, &e));
	err = prime_import(card, e.dfd, &ph1);
	CHECK(!err, "DRM_IOCTL_PRIME_FD_TO_HANDLE: %s", errname(err));
	err = prime_import(card, e.dfd, &ph2);
	CHECK(!err, "second DRM_IOCTL_PRIME_FD_TO_HANDLE: %s", errname(err));
	CHECK(ph1.handle == ph2.handle, "the same dma-buf imported as handles %u and %u",
	      ph1.handle, ph2.handle);
	/* closing the card drops the import without GEM_CLOSE */
	return vgem_close_all(dev, card, &e, &s0);
}

/* vgem maps imports for reading and writing: a READONLY region refuses. */
static int t_vgem_import_readonly(const struct test *t)
{
	struct drm_prime_handle ph;
	struct exp_region e;
	struct stats s0;
	int dev, card, err;

	TRY(vgem_setup(t, 64 * KIB, true, &dev, &card, &s0, &e));
	err = prime_import(card, e.dfd, &ph);
	CHECK(err, "vgem imported a READONLY region's dma-buf (handle %u): it maps "
	      "imports DMA_BIDIRECTIONAL", ph.handle);
	note("vgem import of a read-only dma-buf: %s", errname(err));
	return vgem_close_all(dev, card, &e, &s0);
}

const struct test suite_dmabuf_tests[] = {
	{ "export_basic_cpu", t_export_basic, DEV_CPU, TF_MODULE },
	{ "export_basic_edu", t_export_basic, DEV_EDU, TF_MODULE },
	{ "export_mmap_shared_cpu", t_export_mmap, DEV_CPU, TF_MODULE },
	{ "export_mmap_shared_edu", t_export_mmap, DEV_EDU, TF_MODULE },
	{ "export_mmap_private_einval", t_export_mmap_private, DEV_CPU, TF_MODULE },
	{ "export_readonly", t_export_readonly, DEV_CPU, TF_MODULE },
	{ "export_readonly_mmap_shared_read", t_export_readonly_mmap, DEV_CPU, TF_MODULE },
	{ "cpu_writes_kept_cpu", t_cpu_writes_kept, DEV_CPU, TF_MODULE },
	{ "cpu_writes_kept_edu", t_cpu_writes_kept, DEV_EDU, TF_MODULE },
	{ "pin_of_dmabuf_mapping_cpu", t_pin_dmabuf_mapping, DEV_CPU, TF_MODULE },
	{ "pin_of_dmabuf_mapping_edu", t_pin_dmabuf_mapping, DEV_EDU, TF_MODULE },
	{ "export_twice", t_export_twice, DEV_CPU, TF_MODULE },
	{ "export_lifetime_cpu", t_export_lifetime, DEV_CPU, TF_MODULE },
	{ "export_lifetime_edu", t_export_lifetime, DEV_EDU, TF_MODULE },
	{ "export_emfile", t_export_emfile, NULL, TF_MODULE },
	{ "vgem_import_cpu", t_vgem_import, DEV_CPU, TF_MODULE },
	{ "vgem_import_edu", t_vgem_import, DEV_EDU, TF_MODULE },
	{ "vgem_import_twice", t_vgem_import_twice, DEV_CPU, TF_MODULE },
	{ "vgem_import_readonly_refused", t_vgem_import_readonly, DEV_CPU, TF_MODULE },
	{ NULL, NULL, NULL, 0 }
};
