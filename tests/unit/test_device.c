// SPDX-License-Identifier: GPL-2.0
/*
 * unit-device: the device and region calls, against a fake driver.
 *
 * This file defines ioctl() itself. libmoex.a is linked into the test
 * binary, so its ioctl() calls bind to this definition: moex commands
 * (type MOEX_IOC_MAGIC) are answered by the fake driver below while it is
 * on, everything else goes to the kernel. The device file behind the fake
 * is /dev/null, which the real kernel answers with ENOTTY.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "moex.h"
#include "harness.h"

#define ERRNO_SENTINEL 4242
#define FAKE_DEV "/dev/null"

static struct {
	bool on;
	unsigned int calls;		/* moex commands seen */
	unsigned long last_cmd;
	int fail_errno;			/* fail the next commands with this */
	unsigned int fail_count;	/* ... this many times */
	union {
		struct moex_info info;
		struct moex_region_pin pin;
		struct moex_region_unpin unpin;
		struct moex_region_info rinfo;
		struct moex_region_export exp;
		struct moex_copy copy;
		struct moex_nop nop;
	} in;				/* the last payload as it came in */
	struct moex_info info;		/* INFO's answer */
	struct moex_region_info rinfo;	/* REGION_INFO's answer */
	uint32_t next_handle;
	int export_fd;
} fake;

int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!fake.on || _IOC_TYPE(cmd) != MOEX_IOC_MAGIC)
		return (int)syscall(SYS_ioctl, fd, cmd, arg);

	fake.calls++;
	fake.last_cmd = cmd;
	memcpy(&fake.in, arg, _IOC_SIZE(cmd) < sizeof(fake.in) ?
	       _IOC_SIZE(cmd) : sizeof(fake.in));
	if (fake.fail_count) {
		fake.fail_count--;
		errno = fake.fail_errno;
		return -1;
	}
	switch (cmd) {
	case MOEX_IOCTL_INFO:
		memcpy(arg, &fake.info, sizeof(fake.info));
		return 0;
	case MOEX_IOCTL_REGION_PIN:
		((struct moex_region_pin *)arg)->handle = fake.next_handle;
		return 0;
	case MOEX_IOCTL_REGION_INFO:
		memcpy(arg, &fake.rinfo, sizeof(fake.rinfo));
		return 0;
	case MOEX_IOCTL_REGION_EXPORT:
		((struct moex_region_export *)arg)->fd = (uint32_t)fake.export_fd;
		return 0;
	case MOEX_IOCTL_REGION_UNPIN:
	case MOEX_IOCTL_COPY:
	case MOEX_IOCTL_NOP:
		return 0;
	default:
		errno = ENOTTY;
		return -1;
	}
}

static void fake_reset(void)
{
	memset(&fake, 0, sizeof(fake));
	fake.on = true;
	fake.info.abi_version = MOEX_ABI_VERSION;
	fake.info.features = MOEX_FEAT_PIN | MOEX_FEAT_COPY | MOEX_FEAT_DMABUF;
	fake.info.max_pinned_bytes = 1ull << 30;
	fake.info.pinned_bytes = 3 << 20;
	fake.info.engine = MOEX_ENGINE_EDU;
	fake.info.dma_bits = 28;
	memcpy(fake.info.engine_name, "edu", 4);
	fake.rinfo.handle = 9;
	fake.rinfo.addr = 0x7f0000200000ull;
	fake.rinfo.length = 4 << 20;
	fake.rinfo.pages = 1024;
	fake.rinfo.sg_segments = 2;
	fake.rinfo.dma_segments = 1;
	fake.rinfo.region_flags = MOEX_REGION_EXPORTED;
	fake.next_handle = 5;
	fake.export_fd = 77;
}

/* An open fake device, or NULL (the test then fails). */
static struct moex_device *fake_open(void)
{
	struct moex_device *dev = NULL;

	fake_reset();
	if (moex_open(FAKE_DEV, &dev))
		return NULL;
	return dev;
}

static bool reserved_zero(const __u64 *r, size_t n)
{
	while (n--)
		if (*r++)
			return false;
	return true;
}

/* ---- open and close ------------------------------------------------------- */

TEST(open_missing_path_is_enoent)
{
	static char not_null;
	struct moex_device *dev = (struct moex_device *)&not_null;

	fake.on = false;
	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_open("/nonexistent/moex-unit/moex0", &dev), -ENOENT);
	CHECK_INT(errno, ERRNO_SENTINEL);
	CHECK(dev == NULL);
}

TEST(open_default_path)
{
	struct moex_device *dev = NULL;
	struct stat st;

	if (stat(MOEX_DEFAULT_DEVICE, &st) == 0)
		SKIP(MOEX_DEFAULT_DEVICE " exists here");
	fake.on = false;
	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_open(NULL, &dev), -ENOENT);
	CHECK_INT(errno, ERRNO_SENTINEL);
}

TEST(open_not_a_moex_device_is_enotty)
{
	struct moex_device *dev = NULL;
	int fd = next_fd();

	fake.on = false;
	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_open(FAKE_DEV, &dev), -ENOTTY);
	CHECK_INT(errno, ERRNO_SENTINEL);
	CHECK(dev == NULL);
	CHECK_INT(next_fd(), fd);
}

TEST(open_abi_mismatch_is_eproto)
{
	struct moex_device *dev = NULL;
	int fd = next_fd();

	fake_reset();
	fake.info.abi_version = MOEX_ABI_VERSION + 1;
	CHECK_INT(moex_open(FAKE_DEV, &dev), -EPROTO);
	CHECK(dev == NULL);
	CHECK_U64(fake.last_cmd, MOEX_IOCTL_INFO);
	CHECK_INT(next_fd(), fd);	/* the device's was closed */
}

TEST(open_query_close)
{
	struct moex_device *dev;
	int fd;

	errno = ERRNO_SENTINEL;
	dev = fake_open();
	CHECK(dev != NULL);
	CHECK_INT(errno, ERRNO_SENTINEL);
	fd = moex_device_fd(dev);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	CHECK_INT(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_close(dev), 0);
	CHECK_INT(errno, ERRNO_SENTINEL);
	CHECK(fcntl(fd, F_GETFD) < 0 && errno == EBADF);
}

TEST(null_arguments_are_einval)
{
	struct moex_device_info info = { .size = sizeof(info) };
	struct moex_region_desc desc = { .size = sizeof(desc) };
	struct moex_device *dev = fake_open();
	char buf[64];
	uint32_t h;
	int fd;

	CHECK(dev != NULL);
	fake.calls = 0;
	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_open(FAKE_DEV, NULL), -EINVAL);
	CHECK_INT(moex_device_fd(NULL), -EINVAL);
	CHECK_INT(moex_query(NULL, &info), -EINVAL);
	CHECK_INT(moex_query(dev, NULL), -EINVAL);
	CHECK_INT(moex_nop(NULL), -EINVAL);
	CHECK_INT(moex_pin(NULL, buf, 4096, 0, &h), -EINVAL);
	CHECK_INT(moex_pin(dev, NULL, 4096, 0, &h), -EINVAL);
	CHECK_INT(moex_pin(dev, buf, 4096, 0, NULL), -EINVAL);
	CHECK_INT(moex_unpin(NULL, 1), -EINVAL);
	CHECK_INT(moex_region_query(NULL, 1, &desc), -EINVAL);
	CHECK_INT(moex_region_query(dev, 1, NULL), -EINVAL);
	CHECK_INT(moex_export(NULL, 1, &fd), -EINVAL);
	CHECK_INT(moex_export(dev, 1, NULL), -EINVAL);
	CHECK_INT(moex_copy(NULL, 1, 0, 2, 0, 16), -EINVAL);
	CHECK_INT(moex_close(NULL), 0);
	CHECK_INT(errno, ERRNO_SENTINEL);
	CHECK_INT(fake.calls, 0);	/* refused before the driver */
	moex_close(dev);
}

/* ---- the size-carrying struct of moex_query() ---------------------------- */

TEST(query_fills_everything)
{
	struct moex_device_info info;
	struct moex_device *dev = fake_open();

	CHECK(dev != NULL);
	memset(&info, 0xab, sizeof(info));
	info.size = sizeof(info);
	fake.info.pinned_bytes = 12345;	/* fresh, not cached at open */
	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_query(dev, &info), 0);
	CHECK_INT(errno, ERRNO_SENTINEL);
	moex_close(dev);
	CHECK_U64(info.size, sizeof(info));
	CHECK_INT(info.abi_version, MOEX_ABI_VERSION);
	CHECK_U64(info.features, MOEX_FEAT_PIN | MOEX_FEAT_COPY | MOEX_FEAT_DMABUF);
	CHECK_U64(info.max_pinned_bytes, 1ull << 30);
	CHECK_U64(info.pinned_bytes, 12345);
	CHECK_INT(info.engine, MOEX_ENGINE_EDU);
	CHECK_INT(info.dma_bits, 28);
	CHECK_STR(info.engine_name, "edu");
	CHECK(reserved_zero(fake.in.info.reserved, 2) && !fake.in.info.flags);
}

TEST(query_smaller_size_fills_only_its_part)
{
	struct moex_device_info info;
	struct moex_device *dev = fake_open();
	int ret;

	CHECK(dev != NULL);
	memset(&info, 0xab, sizeof(info));
	/* An older caller whose struct ended after max_pinned_bytes. */
	info.size = offsetof(struct moex_device_info, pinned_bytes);
	ret = moex_query(dev, &info);
	moex_close(dev);
	CHECK_INT(ret, 0);
	CHECK_U64(info.size, offsetof(struct moex_device_info, pinned_bytes));
	CHECK_U64(info.features, fake.info.features);
	CHECK_U64(info.max_pinned_bytes, 1ull << 30);
	CHECK_U64(info.pinned_bytes, 0xababababababababull);
	CHECK_U64(info.abi_version, 0xababababu);
	CHECK_INT((unsigned char)info.engine_name[0], 0xab);
}

TEST(query_size_cutting_a_field_leaves_it)
{
	struct moex_device_info info;
	struct moex_device *dev = fake_open();
	int ret;

	CHECK(dev != NULL);
	memset(&info, 0xab, sizeof(info));
	/* Half of features: not filled, not even in part. */
	info.size = offsetof(struct moex_device_info, features) + 4;
	ret = moex_query(dev, &info);
	moex_close(dev);
	CHECK_INT(ret, 0);
	CHECK_U64(info.features, 0xababababababababull);
}

TEST(query_bad_sizes_are_einval)
{
	static const size_t sizes[] = { 0, 1, sizeof(size_t) - 1,
					MOEX_STRUCT_SIZE_MAX + 1, SIZE_MAX };
	struct moex_device_info info;
	struct moex_device *dev = fake_open();
	size_t i;

	CHECK(dev != NULL);
	fake.calls = 0;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(&info, 0xab, sizeof(info));
		info.size = sizes[i];
		errno = ERRNO_SENTINEL;
		CHECK_MSG(moex_query(dev, &info) == -EINVAL, "size %zu accepted",
			  sizes[i]);
		CHECK_INT(errno, ERRNO_SENTINEL);
		CHECK_U64(info.features, 0xababababababababull);
	}
	CHECK_INT(fake.calls, 0);
	moex_close(dev);
}

TEST(query_larger_size_keeps_unknown_tail)
{
	struct {
		struct moex_device_info info;
		uint64_t newer_field;
	} big;
	struct moex_device *dev = fake_open();
	int ret;

	CHECK(dev != NULL);
	memset(&big, 0xab, sizeof(big));
	big.info.size = sizeof(big);
	ret = moex_query(dev, &big.info);
	moex_close(dev);
	CHECK_INT(ret, 0);
	CHECK_U64(big.info.pinned_bytes, 3 << 20);
	CHECK_U64(big.newer_field, 0xababababababababull);
}

TEST(query_terminates_engine_name)
{
	struct moex_device_info info;
	struct moex_device *dev = fake_open();
	int ret;

	CHECK(dev != NULL);
	memset(fake.info.engine_name, 'x', sizeof(fake.info.engine_name));
	memset(&info, 'y', sizeof(info));	/* no NUL of the caller's */
	info.size = sizeof(info);
	ret = moex_query(dev, &info);
	moex_close(dev);
	CHECK_INT(ret, 0);
	CHECK(memchr(info.engine_name, '\0', sizeof(info.engine_name)));
	CHECK_INT(strlen(info.engine_name), MOEX_ENGINE_NAME_LEN - 1);
	CHECK_INT(info.engine_name[0], 'x');
}

/* ---- regions ------------------------------------------------------------ */

TEST(pin_passes_arguments)
{
	struct moex_device *dev = fake_open();
	void *mem = NULL;
	uint32_t h = 0;
	int ret;

	CHECK(dev != NULL);
	CHECK_INT(moex_alloc_pinnable(8192, false, &mem), 0);
	errno = ERRNO_SENTINEL;
	ret = moex_pin(dev, mem, 8192, MOEX_PIN_READONLY, &h);
	moex_close(dev);
	moex_free_pinnable(mem, 8192);
	CHECK_INT(ret, 0);
	CHECK_INT(errno, ERRNO_SENTINEL);
	CHECK_U64(fake.last_cmd, MOEX_IOCTL_REGION_PIN);
	CHECK_U64(fake.in.pin.addr, (uintptr_t)mem);
	CHECK_U64(fake.in.pin.length, 8192);
	CHECK_INT(fake.in.pin.flags, MOEX_PIN_READONLY);
	CHECK(reserved_zero(fake.in.pin.reserved, 2));
	CHECK_INT(h, 5);
}

TEST(pin_checks_alignment)
{
	struct moex_device *dev = fake_open();
	void *mem = NULL;
	uint32_t h = 0;

	CHECK(dev != NULL);
	CHECK_INT(moex_alloc_pinnable(8192, false, &mem), 0);
	fake.calls = 0;
	CHECK_INT(moex_pin(dev, (char *)mem + 1, 4096, 0, &h), -EINVAL);
	CHECK_INT(moex_pin(dev, mem, 4095, 0, &h), -EINVAL);
	CHECK_INT(moex_pin(dev, mem, 0, 0, &h), -EINVAL);
	CHECK_INT(fake.calls, 0);
	moex_free_pinnable(mem, 8192);
	moex_close(dev);
}

TEST(pin_error_comes_back_errno_kept)
{
	struct moex_device *dev = fake_open();
	void *mem = NULL;
	uint32_t h = 1234;
	int ret;

	CHECK(dev != NULL);
	CHECK_INT(moex_alloc_pinnable(4096, false, &mem), 0);
	fake.fail_errno = ENOMEM;
	fake.fail_count = 1;
	errno = ERRNO_SENTINEL;
	ret = moex_pin(dev, mem, 4096, 0, &h);
	CHECK_INT(errno, ERRNO_SENTINEL);
	moex_free_pinnable(mem, 4096);
	moex_close(dev);
	CHECK_INT(ret, -ENOMEM);
	CHECK_INT(h, 1234);	/* untouched on failure */
	CHECK_HAS(moex_error_hint(ret), "ulimit -l");
}

TEST(interrupted_command_is_retried)
{
	struct moex_device *dev = fake_open();
	int ret;

	CHECK(dev != NULL);
	fake.calls = 0;
	fake.fail_errno = EINTR;
	fake.fail_count = 2;
	ret = moex_nop(dev);
	moex_close(dev);
	CHECK_INT(ret, 0);
	CHECK_INT(fake.calls, 3);
	CHECK_U64(fake.last_cmd, MOEX_IOCTL_NOP);
	CHECK(!fake.in.nop.flags && !fake.in.nop.pad);
}

TEST(unpin_passes_handle)
{
	struct moex_device *dev = fake_open();
	int ret;

	CHECK(dev != NULL);
	ret = moex_unpin(dev, 42);
	CHECK_INT(ret, 0);
	CHECK_U64(fake.last_cmd, MOEX_IOCTL_REGION_UNPIN);
	CHECK_INT(fake.in.unpin.handle, 42);
	CHECK_INT(fake.in.unpin.flags, 0);
	fake.fail_errno = ENOENT;
	fake.fail_count = 1;
	ret = moex_unpin(dev, 43);
	moex_close(dev);
	CHECK_INT(ret, -ENOENT);
}

TEST(region_query_fills_and_respects_size)
{
	struct moex_region_desc d;
	struct moex_device *dev = fake_open();
	int ret;

	CHECK(dev != NULL);
	memset(&d, 0xab, sizeof(d));
	d.size = sizeof(d);
	ret = moex_region_query(dev, 9, &d);
	CHECK_INT(ret, 0);
	CHECK_INT(fake.in.rinfo.handle, 9);
	CHECK(d.addr == (void *)(uintptr_t)0x7f0000200000ull);
	CHECK_U64(d.length, 4 << 20);
	CHECK_U64(d.pages, 1024);
	CHECK_INT(d.handle, 9);
	CHECK_INT(d.flags, MOEX_REGION_EXPORTED);
	CHECK_INT(d.sg_segments, 2);
	CHECK_INT(d.dma_segments, 1);

	memset(&d, 0xab, sizeof(d));
	d.size = offsetof(struct moex_region_desc, pages);
	ret = moex_region_query(dev, 9, &d);
	CHECK_INT(ret, 0);
	CHECK_U64(d.length, 4 << 20);
	CHECK_U64(d.pages, 0xababababababababull);
	CHECK_INT(d.sg_segments, 0xababababu);

	d.size = 0;
	CHECK_INT(moex_region_query(dev, 9, &d), -EINVAL);
	d.size = MOEX_STRUCT_SIZE_MAX + 1;
	CHECK_INT(moex_region_query(dev, 9, &d), -EINVAL);
	moex_close(dev);
}

TEST(export_returns_fd)
{
	struct moex_device *dev = fake_open();
	int fd = -1, ret;

	CHECK(dev != NULL);
	ret = moex_export(dev, 6, &fd);
	moex_close(dev);
	CHECK_INT(ret, 0);
	CHECK_U64(fake.last_cmd, MOEX_IOCTL_REGION_EXPORT);
	CHECK_INT(fake.in.exp.handle, 6);
	CHECK_INT(fd, 77);
}

TEST(copy_passes_arguments_in_order)
{
	struct moex_device *dev = fake_open();
	int ret;

	CHECK(dev != NULL);
	ret = moex_copy(dev, 7, 100, 3, 4097, 300);
	CHECK_INT(ret, 0);
	CHECK_U64(fake.last_cmd, MOEX_IOCTL_COPY);
	CHECK_INT(fake.in.copy.dst_handle, 7);
	CHECK_U64(fake.in.copy.dst_offset, 100);
	CHECK_INT(fake.in.copy.src_handle, 3);
	CHECK_U64(fake.in.copy.src_offset, 4097);
	CHECK_U64(fake.in.copy.length, 300);
	CHECK(!fake.in.copy.flags && !fake.in.copy.pad &&
	      reserved_zero(fake.in.copy.reserved, 2));
	fake.calls = 0;
	CHECK_INT(moex_copy(dev, 7, 0, 3, 0, 0), -EINVAL);
	CHECK_INT(fake.calls, 0);
	fake.fail_errno = EACCES;
	fake.fail_count = 1;
	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_copy(dev, 3, 0, 7, 0, 1), -EACCES);
	CHECK_INT(errno, ERRNO_SENTINEL);
	moex_close(dev);
}

/* The fake region: 4 MiB at 0x7f0000200000 (fake_reset()). */
TEST(region_addr_checks_the_range)
{
	struct moex_device *dev = fake_open();
	const uint64_t len = 4 << 20;
	char *base = (char *)(uintptr_t)0x7f0000200000ull;
	void *p = (void *)1;

	CHECK(dev != NULL);
	CHECK_INT(moex_region_addr(dev, 9, 0, len, &p), 0);
	CHECK(p == base);
	CHECK_INT(fake.in.rinfo.handle, 9);
	CHECK_INT(moex_region_addr(dev, 9, 4096, 100, &p), 0);
	CHECK(p == base + 4096);
	/* the empty range at the end is in the region */
	CHECK_INT(moex_region_addr(dev, 9, len, 0, &p), 0);
	CHECK(p == base + len);
	CHECK_INT(moex_region_addr(dev, 9, len - 10, 11, &p), -ERANGE);
	CHECK(p == NULL);
	CHECK_INT(moex_region_addr(dev, 9, len + 1, 0, &p), -ERANGE);
	/* off + len wraps past 2^64 to a small number */
	CHECK_INT(moex_region_addr(dev, 9, UINT64_MAX - 5, 10, &p), -ERANGE);
	CHECK_INT(moex_region_addr(dev, 9, 10, UINT64_MAX - 5, &p), -ERANGE);
	fake.fail_errno = ENOENT;
	fake.fail_count = 1;
	p = (void *)1;
	CHECK_INT(moex_region_addr(dev, 8, 0, 1, &p), -ENOENT);
	CHECK(p == NULL);
	CHECK_INT(moex_region_addr(dev, 9, 0, 1, NULL), -EINVAL);
	moex_close(dev);
}

/* A descriptor number no int holds is the driver's error, not an fd. */
TEST(export_fd_past_int_is_eproto)
{
	struct moex_device *dev = fake_open();
	int fd = -1, ret;

	CHECK(dev != NULL);
	fake.export_fd = -1;	/* 0xffffffff in the u32 */
	ret = moex_export(dev, 6, &fd);
	moex_close(dev);
	CHECK_INT(ret, -EPROTO);
	CHECK_INT(fd, -1);
}

/* Weights on a device are pinned read-only, and unlocked by their handle. */
TEST(lock_weights_pins_read_only)
{
	struct moex_device *dev = fake_open();
	static char mem[8192] __attribute__((aligned(4096)));
	uint32_t h = 0;

	CHECK(dev != NULL);
	CHECK_INT(moex_lock_weights(dev, mem, sizeof(mem), &h), 0);
	CHECK_U64(fake.last_cmd, MOEX_IOCTL_REGION_PIN);
	CHECK_INT(fake.in.pin.flags, MOEX_PIN_READONLY);
	CHECK_U64(fake.in.pin.addr, (uintptr_t)mem);
	CHECK_U64(fake.in.pin.length, sizeof(mem));
	CHECK_INT(h, 5);
	fake.calls = 0;
	CHECK_INT(moex_unlock_weights(dev, mem, sizeof(mem), h), 0);
	CHECK_INT(fake.calls, 1);
	CHECK_U64(fake.last_cmd, MOEX_IOCTL_REGION_UNPIN);
	CHECK_INT(fake.in.unpin.handle, 5);
	fake.fail_errno = EPERM;
	fake.fail_count = 1;
	h = 7;
	CHECK_INT(moex_lock_weights(dev, mem, sizeof(mem), &h), -EPERM);
	CHECK_INT(h, 0);
	moex_close(dev);
}

RUN_TESTS(
	T(open_missing_path_is_enoent),
	T(open_default_path),
	T(open_not_a_moex_device_is_enotty),
	T(open_abi_mismatch_is_eproto),
	T(open_query_close),
	T(null_arguments_are_einval),
	T(query_fills_everything),
	T(query_smaller_size_fills_only_its_part),
	T(query_size_cutting_a_field_leaves_it),
	T(query_bad_sizes_are_einval),
	T(query_larger_size_keeps_unknown_tail),
	T(query_terminates_engine_name),
	T(pin_passes_arguments),
	T(pin_checks_alignment),
	T(pin_error_comes_back_errno_kept),
	T(interrupted_command_is_retried),
	T(unpin_passes_handle),
	T(region_query_fills_and_respects_size),
	T(export_returns_fd),
	T(copy_passes_arguments_in_order),
	T(region_addr_checks_the_range),
	T(export_fd_past_int_is_eproto),
	T(lock_weights_pins_read_only),
)
