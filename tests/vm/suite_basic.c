// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-suite: sysfs files, the module parameter, INFO, NOP and the
 * open_files counter.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "suite.h"

#define PARAM_MAX_PINNED "/sys/module/moex/parameters/max_pinned_mb"
#define FEAT_BASE (MOEX_FEAT_PIN | MOEX_FEAT_PIN_READONLY | MOEX_FEAT_DMABUF | \
		   MOEX_FEAT_COPY)

static int check_mode(const char *path, mode_t want)
{
	struct stat st;

	if (stat(path, &st))
		return FAIL("stat %s: %s", path, strerror(errno));
	if ((st.st_mode & 07777) != want)
		return FAIL("%s: mode %04o, expected %04o", path,
			    (unsigned int)(st.st_mode & 07777),
			    (unsigned int)want);
	return T_PASS;
}

static int check_file_is(const char *path, const char *want)
{
	char buf[128];
	int n = read_file(path, buf, sizeof(buf));

	if (n < 0)
		return FAIL("read %s: %s", path, strerror(-n));
	if (strcmp(buf, want))
		return FAIL("%s reads \"%.*s\", expected \"%.*s\"", path,
			    (int)strcspn(buf, "\n"), buf,
			    (int)strcspn(want, "\n"), want);
	return T_PASS;
}

/* abi_version and engine of every device. */
static int t_sysfs_device_files(const struct test *t)
{
	char path[128];
	int dev;

	(void)t;
	for (dev = 0; dev < 64; dev++) {
		const char *engine;

		if (!dev_present(dev))
			continue;
		engine = dev == 0 ? "cpu\n" : dev == g_edu ? "edu\n" : NULL;
		snprintf(path, sizeof(path), "/sys/class/moex/moex%d/abi_version",
			 dev);
		TRY(check_file_is(path, "1\n"));
		TRY(check_mode(path, 0444));
		snprintf(path, sizeof(path), "/sys/class/moex/moex%d/engine", dev);
		if (engine)
			TRY(check_file_is(path, engine));
		TRY(check_mode(path, 0444));
	}
	return T_PASS;
}

/* The ten stats files: read-only, one decimal line each. */
static int t_sysfs_stats_files(const struct test *t)
{
	char path[128];
	long long v;
	int dev, i, fd, err;

	(void)t;
	for (dev = 0; dev < 64; dev++) {
		if (!dev_present(dev))
			continue;
		for (i = 0; i < NSTATS; i++) {
			snprintf(path, sizeof(path),
				 "/sys/class/moex/moex%d/stats/%s", dev,
				 stat_names[i]);
			TRY(check_mode(path, 0444));
			err = read_ll(path, &v);
			CHECK(!err, "%s: %s", path,
			      err == EPROTO ? "not one decimal line" :
					      strerror(err));
			CHECK(v >= 0, "%s is negative: %lld", path, v);
			fd = open(path, O_WRONLY | O_CLOEXEC);
			if (fd >= 0)
				close(fd);
			CHECK(fd < 0 && errno == EACCES,
			      "open %s for writing: expected EACCES, got %s",
			      path, fd < 0 ? errname(errno) : "success");
		}
	}
	return T_PASS;
}

/* Right after the load every counter of every device is 0. */
static int t_sysfs_stats_initial(const struct test *t)
{
	struct stats s;
	int dev, i;

	(void)t;
	for (dev = 0; dev < 64; dev++) {
		if (!dev_present(dev))
			continue;
		STATS(dev, &s);
		for (i = 0; i < NSTATS; i++)
			CHECK(s.v[i] == 0, "moex%d %s is %lld after the load",
			      dev, stat_names[i], s.v[i]);
	}
	return T_PASS;
}

static int param_nonroot_child(void *arg)
{
	int fd;

	(void)arg;
	CHECK(setgroups(0, NULL) == 0, "setgroups: %s", strerror(errno));
	CHECK(setgid(65534) == 0, "setgid: %s", strerror(errno));
	CHECK(setuid(65534) == 0, "setuid: %s", strerror(errno));
	fd = open(PARAM_MAX_PINNED, O_WRONLY | O_CLOEXEC);
	if (fd >= 0)
		close(fd);
	CHECK(fd < 0 && errno == EACCES,
	      "nobody opening max_pinned_mb for writing: expected EACCES, got %s",
	      fd < 0 ? errname(errno) : "success");
	return T_PASS;
}

/* max_pinned_mb: 0644, default 0, root writes it, nobody cannot. */
static int t_param_max_pinned(const struct test *t)
{
	struct moex_device_info info;
	struct moex_device *md;

	(void)t;
	TRY(check_mode(PARAM_MAX_PINNED, 0644));
	TRY(check_file_is(PARAM_MAX_PINNED, "0\n"));
	OPEN_DEV(0, &md);
	CHECK_OK(set_max_pinned_mb(3));
	TRY(check_file_is(PARAM_MAX_PINNED, "3\n"));
	CHECK_OK(do_info(md, &info));
	CHECK(info.max_pinned_bytes == 3 * MIB,
	      "INFO max_pinned_bytes %llu with max_pinned_mb 3, expected %llu",
	      (unsigned long long)info.max_pinned_bytes, 3 * MIB);
	CHECK_OK(set_max_pinned_mb(0));
	TRY(check_file_is(PARAM_MAX_PINNED, "0\n"));
	CHECK_OK(do_info(md, &info));
	CHECK(info.max_pinned_bytes == 0,
	      "INFO max_pinned_bytes %llu with max_pinned_mb 0",
	      (unsigned long long)info.max_pinned_bytes);
	return child_run(param_nonroot_child, NULL, 60);
}

/*
 * INFO as libmoex reports it, and raw: the raw ioctl checks what libmoex
 * hides (garbage in output fields on input, zero flags, reserved and
 * engine_name padding on output).
 */
static int t_info(const struct test *t)
{
	struct moex_device_info li;
	struct moex_device *md;
	struct moex_info info;
	struct stats s0;
	const char *name;
	uint32_t engine, bits;
	uint64_t feat;
	int dev, fd, i;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	fd = mdev_fd(md);
	STATS(dev, &s0);

	/* output fields hold garbage on input: ignored (raw: libmoex zeroes) */
	memset(&info, 0xa5, sizeof(info));
	info.flags = 0;
	memset(info.reserved, 0, sizeof(info.reserved));
	CHECK_OK(xioctl(fd, MOEX_IOCTL_INFO, &info));

	if (dev == 0) {
		engine = MOEX_ENGINE_CPU;
		name = "cpu";
		bits = 0;
		feat = FEAT_BASE;
	} else {
		engine = MOEX_ENGINE_EDU;
		name = "edu";
		bits = edu_dma_bits();
		CHECK(bits, "/sys/module/moex/parameters/edu_dma_bits unreadable");
		feat = FEAT_BASE | MOEX_FEAT_DMA_MAPPED;
	}
	CHECK(info.abi_version == MOEX_ABI_VERSION, "abi_version %u, expected %u",
	      info.abi_version, MOEX_ABI_VERSION);
	CHECK((info.features & feat) == feat,
	      "features %#llx lack %#llx", (unsigned long long)info.features,
	      (unsigned long long)(feat & ~info.features));
	if (dev == 0)
		CHECK(!(info.features & MOEX_FEAT_DMA_MAPPED),
		      "features %#llx include DMA_MAPPED on the CPU engine",
		      (unsigned long long)info.features);
	CHECK(info.engine == engine, "engine %u, expected %u", info.engine,
	      engine);
	CHECK(!memcmp(info.engine_name, name, strlen(name) + 1),
	      "engine_name \"%.16s\", expected \"%s\"",
	      (const char *)info.engine_name, name);
	for (i = (int)strlen(name); i < MOEX_ENGINE_NAME_LEN; i++)
		CHECK(!info.engine_name[i],
		      "engine_name byte %d is %#x, expected 0 padding", i,
		      info.engine_name[i]);
	CHECK(info.dma_bits == bits, "dma_bits %u, expected %u", info.dma_bits,
	      bits);
	CHECK(info.max_pinned_bytes == 0, "max_pinned_bytes %llu, expected 0",
	      (unsigned long long)info.max_pinned_bytes);
	CHECK((long long)info.pinned_bytes == s0.v[ST_PINNED_BYTES],
	      "pinned_bytes %llu, stats/pinned_bytes %lld",
	      (unsigned long long)info.pinned_bytes, s0.v[ST_PINNED_BYTES]);
	CHECK(info.flags == 0 && !info.reserved[0] && !info.reserved[1],
	      "flags/reserved not zero on output");

	/* moex_query() reports the same */
	CHECK_OK(do_info(md, &li));
	CHECK(li.abi_version == info.abi_version &&
	      li.features == info.features && li.engine == info.engine &&
	      li.dma_bits == info.dma_bits &&
	      li.max_pinned_bytes == info.max_pinned_bytes &&
	      li.pinned_bytes == info.pinned_bytes &&
	      !strcmp(li.engine_name, name),
	      "moex_query differs from INFO: abi %u features %#llx engine %u \"%s\" dma_bits %u",
	      li.abi_version, (unsigned long long)li.features, li.engine,
	      li.engine_name, li.dma_bits);
	EXPECT_STATS(dev, &s0, NODELTA);
	return T_PASS;
}

/* INFO's pinned_bytes follows pins and unpins. */
static int t_info_pinned_bytes(const struct test *t)
{
	struct stats s0;
	struct moex_device *md;
	uint32_t h1, h2;
	void *p;
	int dev;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	MAP(p, buf_4k(3 * 64 * KIB));
	STATS(dev, &s0);
	CHECK_OK(do_pin(md, p, 64 * KIB, 0, &h1));
	CHECK_OK(do_pin(md, (char *)p + 64 * KIB, 128 * KIB, 0, &h2));
	EXPECT_INFO_PINNED(md, s0.v[ST_PINNED_BYTES] + 192 * 1024, "");
	CHECK_OK(do_unpin(md, h1));
	EXPECT_INFO_PINNED(md, s0.v[ST_PINNED_BYTES] + 128 * 1024, " after unpin");
	CHECK_OK(do_unpin(md, h2));
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 2, [ST_UNPIN_CALLS] = 2));
	return T_PASS;
}

static int t_nop(const struct test *t)
{
	struct moex_device *md;
	struct stats s0;
	int i;

	(void)t;
	OPEN_DEV(0, &md);
	STATS(0, &s0);
	for (i = 0; i < 100; i++)
		CHECK_OK(do_nop(md));
	EXPECT_STATS(0, &s0, NODELTA);
	return T_PASS;
}

/*
 * open_files counts open files, not descriptors. Raw open(2): the test
 * dup()s a descriptor, which a libmoex handle does not offer.
 */
static int t_open_files(const struct test *t)
{
	struct stats s0;
	int dev, fd[3], d, i;

	TRY(test_dev(t, &dev));
	STATS(dev, &s0);
	for (i = 0; i < 3; i++) {
		fd[i] = dev_open(dev);
		CHECK(fd[i] >= 0, "open /dev/moex%d: %s", dev, strerror(errno));
	}
	EXPECT_STATS(dev, &s0, DELTA([ST_OPEN_FILES] = 3));
	d = track_fd(dup(fd[0]));
	CHECK(d >= 0, "dup: %s", strerror(errno));
	EXPECT_STATS(dev, &s0, DELTA([ST_OPEN_FILES] = 3));
	xclose(fd[0]);
	EXPECT_STATS(dev, &s0, DELTA([ST_OPEN_FILES] = 3));
	xclose(d);
	EXPECT_STATS(dev, &s0, DELTA([ST_OPEN_FILES] = 2));
	xclose(fd[1]);
	xclose(fd[2]);
	EXPECT_STATS(dev, &s0, NODELTA);
	return T_PASS;
}

const struct test suite_basic_tests[] = {
	{ "sysfs_device_files", t_sysfs_device_files, NULL, TF_MODULE },
	{ "sysfs_stats_files", t_sysfs_stats_files, NULL, TF_MODULE },
	{ "sysfs_stats_initial", t_sysfs_stats_initial, NULL, TF_MODULE },
	{ "param_max_pinned_mb", t_param_max_pinned, NULL, TF_MODULE },
	{ "info_cpu", t_info, DEV_CPU, TF_MODULE },
	{ "info_edu", t_info, DEV_EDU, TF_MODULE },
	{ "info_pinned_bytes_cpu", t_info_pinned_bytes, DEV_CPU, TF_MODULE },
	{ "info_pinned_bytes_edu", t_info_pinned_bytes, DEV_EDU, TF_MODULE },
	{ "nop", t_nop, NULL, TF_MODULE },
	{ "open_files_cpu", t_open_files, DEV_CPU, TF_MODULE },
	{ "open_files_edu", t_open_files, DEV_EDU, TF_MODULE },
	{ NULL, NULL, NULL, 0 }
};
