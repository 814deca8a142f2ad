// SPDX-License-Identifier: GPL-2.0
/*
 * fakedrv - a user-space stand-in for moex.ko, linked into a test build of
 * moexctl (moexctl-fake) so `moexctl selftest` and `moexctl pin` run
 * without the module.
 *
 * It defines ioctl(): libmoex.a is linked into the same binary, so its
 * commands (type MOEX_IOC_MAGIC) land here, whatever the file (tests use
 * /dev/null); other ioctls go to the kernel. It follows the uapi rules the
 * driver follows (flags and reserved fields zero, page-aligned pins, range
 * and read-only checks on COPY) and copies with memmove(). It offers no
 * dma-buf export (MOEX_FEAT_DMABUF is not reported).
 *
 * io_uring cannot reach a user-space fake, so it also defines
 * io_uring_queue_init_params():
 * every ring setup fails with -ENOSYS, as on a kernel without io_uring,
 * and libmoex queues run synchronously through the ioctl() below
 * (unless MOEX_FAKE_URING is set: then rings are liburing's own, for a
 * program that registers buffers on one and sends the driver nothing).
 *
 * Environment:
 *   MOEX_FAKE_ENGINE=NAME   engine name in INFO (default "cpu")
 *   MOEX_FAKE_PIN_ERRNO=N   REGION_PIN fails with errno N
 *   MOEX_FAKE_CORRUPT=1     COPY flips the last byte it copies
 *   MOEX_FAKE_COPY_ERRNO=N  COPY fails with errno N
 *   MOEX_FAKE_MAX_PINNED=N  INFO's max_pinned_bytes (default 0: no cap);
 *                           its pinned_bytes are the regions' bytes
 * At exit it prints "fakedrv: copies N bytes N max N" on stderr.
 */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>
#include <linux/moex.h>

#define FAKE_REGIONS 64
#define FAKE_PAGE 4096u

static struct fake_region {
	uint64_t addr;
	uint64_t len;
	uint32_t flags;		/* MOEX_REGION_* */
	int used;
} regions[FAKE_REGIONS];

static uint64_t copies, copy_bytes, copy_max;

static void fake_report(void)
{
	fprintf(stderr, "fakedrv: copies %" PRIu64 " bytes %" PRIu64
		" max %" PRIu64 "\n", copies, copy_bytes, copy_max);
}

static int fake_zero(const __u64 *r, size_t n)
{
	while (n--)
		if (*r++)
			return 0;
	return 1;
}

/* 1-based handles; NULL for a handle not in use. */
static struct fake_region *fake_lookup(uint32_t handle)
{
	if (!handle || handle > FAKE_REGIONS || !regions[handle - 1].used)
		return NULL;
	return &regions[handle - 1];
}

static int fake_info(struct moex_info *a)
{
	const char *engine = getenv("MOEX_FAKE_ENGINE");
	const char *max = getenv("MOEX_FAKE_MAX_PINNED");
	unsigned int i;

	if (a->flags || !fake_zero(a->reserved, 2))
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->abi_version = MOEX_ABI_VERSION;
	a->max_pinned_bytes = max ? strtoull(max, NULL, 10) : 0;
	for (i = 0; i < FAKE_REGIONS; i++)
		if (regions[i].used)
			a->pinned_bytes += regions[i].len;
	a->features = MOEX_FEAT_PIN | MOEX_FEAT_PIN_READONLY | MOEX_FEAT_COPY;
	a->engine = MOEX_ENGINE_CPU;
	snprintf((char *)a->engine_name, sizeof(a->engine_name), "%s",
		 engine ? engine : "cpu");
	return 0;
}

static int fake_pin(struct moex_region_pin *a)
{
	const char *fail = getenv("MOEX_FAKE_PIN_ERRNO");
	uint32_t i;

	if ((a->flags & ~MOEX_PIN_FLAGS_ALL) || !fake_zero(a->reserved, 2) ||
	    !a->length || a->addr % FAKE_PAGE || a->length % FAKE_PAGE)
		return -EINVAL;
	if (fail)
		return -atoi(fail);
	for (i = 0; i < FAKE_REGIONS; i++) {
		if (regions[i].used)
			continue;
		regions[i].used = 1;
		regions[i].addr = a->addr;
		regions[i].len = a->length;
		regions[i].flags = a->flags & MOEX_PIN_READONLY ?
				   MOEX_REGION_READONLY : 0;
		a->handle = i + 1;
		return 0;
	}
	return -ENOMEM;
}

static int fake_unpin(const struct moex_region_unpin *a)
{
	struct fake_region *r = fake_lookup(a->handle);

	if (a->flags || !fake_zero(a->reserved, 2))
		return -EINVAL;
	if (!r)
		return -ENOENT;
	r->used = 0;
	return 0;
}

static int fake_region_info(struct moex_region_info *a)
{
	struct fake_region *r = fake_lookup(a->handle);

	if (a->flags || !fake_zero(a->reserved, 2))
		return -EINVAL;
	if (!r)
		return -ENOENT;
	a->addr = r->addr;
	a->length = r->len;
	a->pages = r->len / FAKE_PAGE;
	a->sg_segments = (uint32_t)((r->len + (2u << 20) - 1) >> 21);
	a->dma_segments = 0;
	a->region_flags = r->flags;
	a->pad = 0;
	return 0;
}

static int fake_copy(const struct moex_copy *a)
{
	struct fake_region *src = fake_lookup(a->src_handle);
	struct fake_region *dst = fake_lookup(a->dst_handle);
	const char *fail = getenv("MOEX_FAKE_COPY_ERRNO");
	unsigned char *d;

	if (a->flags || a->pad || !fake_zero(a->reserved, 2) || !a->length)
		return -EINVAL;
	if (fail)
		return -atoi(fail);
	if (!src || !dst)
		return -ENOENT;
	if (a->src_offset > src->len || a->length > src->len - a->src_offset ||
	    a->dst_offset > dst->len || a->length > dst->len - a->dst_offset)
		return -ERANGE;
	if (dst->flags & MOEX_REGION_READONLY)
		return -EACCES;
	if (src == dst && a->src_offset < a->dst_offset + a->length &&
	    a->dst_offset < a->src_offset + a->length)
		return -EINVAL;
	d = (unsigned char *)(uintptr_t)(dst->addr + a->dst_offset);
	memmove(d, (void *)(uintptr_t)(src->addr + a->src_offset), a->length);
	if (getenv("MOEX_FAKE_CORRUPT"))
		d[a->length - 1] ^= 0x40;
	copies++;
	copy_bytes += a->length;
	if (a->length > copy_max)
		copy_max = a->length;
	return 0;
}

static int fake_nop(const struct moex_nop *a)
{
	return a->flags || a->pad || !fake_zero(a->reserved, 2) ? -EINVAL : 0;
}

int io_uring_queue_init_params(unsigned int entries, struct io_uring *ring,
			       struct io_uring_params *p)
{
	int (*real)(unsigned int, struct io_uring *, struct io_uring_params *);

	if (!getenv("MOEX_FAKE_URING"))
		return -ENOSYS;
	*(void **)&real = dlsym(RTLD_NEXT, "io_uring_queue_init_params");
	return real ? real(entries, ring, p) : -ENOSYS;
}

int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	static int reporting;
	void *arg;
	int ret;

	if (!reporting++)
		atexit(fake_report);
	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (_IOC_TYPE(cmd) != MOEX_IOC_MAGIC)
		return (int)syscall(SYS_ioctl, fd, cmd, arg);

	switch (cmd) {
	case MOEX_IOCTL_INFO:
		ret = fake_info(arg);
		break;
	case MOEX_IOCTL_REGION_PIN:
		ret = fake_pin(arg);
		break;
	case MOEX_IOCTL_REGION_UNPIN:
		ret = fake_unpin(arg);
		break;
	case MOEX_IOCTL_REGION_INFO:
		ret = fake_region_info(arg);
		break;
	case MOEX_IOCTL_COPY:
		ret = fake_copy(arg);
		break;
	case MOEX_IOCTL_NOP:
		ret = fake_nop(arg);
		break;
	default:
		ret = -ENOTTY;
		break;
	}
	if (ret) {
		errno = -ret;
		return -1;
	}
	return 0;
}
