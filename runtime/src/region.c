// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex regions: pin, unpin, describe, export as dma-buf, copy.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static size_t moex_page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (size_t)ps : 4096;
}

int moex_pin(struct moex_device *dev, void *addr, size_t len, unsigned flags,
	     uint32_t *handle)
{
	MOEX_KEEP_ERRNO;
	size_t ps = moex_page_size();
	struct moex_region_pin arg;
	int ret;

	if (!dev || !addr || !handle || !len)
		return -EINVAL;
	/* The ABI's alignment rules; unknown flags are the driver's to refuse. */
	if ((uintptr_t)addr % ps || len % ps)
		return -EINVAL;

	memset(&arg, 0, sizeof(arg));
	arg.addr = (uintptr_t)addr;
	arg.length = len;
	arg.flags = flags;
	ret = moex__ioctl(dev->fd, MOEX_IOCTL_REGION_PIN, &arg);
	if (ret)
		return ret;
	*handle = arg.handle;
	return 0;
}

int moex_unpin(struct moex_device *dev, uint32_t handle)
{
	MOEX_KEEP_ERRNO;
	struct moex_region_unpin arg;

	if (!dev)
		return -EINVAL;
	memset(&arg, 0, sizeof(arg));
	arg.handle = handle;
	return moex__ioctl(dev->fd, MOEX_IOCTL_REGION_UNPIN, &arg);
}

int moex_region_query(struct moex_device *dev, uint32_t handle,
		      struct moex_region_desc *desc)
{
	MOEX_KEEP_ERRNO;
	struct moex_region_info arg;
	int ret;

	if (!dev || !desc || !moex__size_ok(desc->size))
		return -EINVAL;
	memset(&arg, 0, sizeof(arg));
	arg.handle = handle;
	ret = moex__ioctl(dev->fd, MOEX_IOCTL_REGION_INFO, &arg);
	if (ret)
		return ret;

	MOEX_SET(desc, addr, (void *)(uintptr_t)arg.addr);
	MOEX_SET(desc, length, arg.length);
	MOEX_SET(desc, pages, arg.pages);
	MOEX_SET(desc, handle, arg.handle);
	MOEX_SET(desc, flags, arg.region_flags);
	MOEX_SET(desc, sg_segments, arg.sg_segments);
	MOEX_SET(desc, dma_segments, arg.dma_segments);
	return 0;
}

int moex_export(struct moex_device *dev, uint32_t handle, int *fd)
{
	MOEX_KEEP_ERRNO;
	struct moex_region_export arg;
	int ret;

	if (!dev || !fd)
		return -EINVAL;
	memset(&arg, 0, sizeof(arg));
	arg.handle = handle;
	ret = moex__ioctl(dev->fd, MOEX_IOCTL_REGION_EXPORT, &arg);
	if (ret)
		return ret;
	if (arg.fd > INT32_MAX)
		return -EPROTO;
	*fd = (int)arg.fd;
	return 0;
}

int moex_copy(struct moex_device *dev, uint32_t dst_handle, uint64_t dst_off,
	      uint32_t src_handle, uint64_t src_off, uint64_t len)
{
	MOEX_KEEP_ERRNO;
	struct moex_copy arg;

	if (!dev || !len)
		return -EINVAL;
	memset(&arg, 0, sizeof(arg));
	arg.src_handle = src_handle;
	arg.dst_handle = dst_handle;
	arg.src_offset = src_off;
	arg.dst_offset = dst_off;
	arg.length = len;
	return moex__ioctl(dev->fd, MOEX_IOCTL_COPY, &arg);
}

int moex_region_addr(struct moex_device *dev, uint32_t handle, uint64_t off,
		     uint64_t len, void **out)
{
	MOEX_KEEP_ERRNO;
	struct moex_region_desc d = { .size = sizeof(d) };
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	ret = moex_region_query(dev, handle, &d);
	if (ret)
		return ret;
	if (off > d.length || len > d.length - off)
		return -ERANGE;
	*out = (char *)d.addr + off;
	return 0;
}

/* Said once per process when weights are only mlock()ed. */
static atomic_flag moex_mlock_said = ATOMIC_FLAG_INIT;

int moex_lock_weights(struct moex_device *dev, void *addr, size_t len,
		      uint32_t *handle)
{
	MOEX_KEEP_ERRNO;

	if (!addr || !len || !handle)
		return -EINVAL;
	*handle = 0;
	if (dev)
		return moex_pin(dev, addr, len, MOEX_PIN_READONLY, handle);
	/* RLIMIT_MEMLOCK 0 without CAP_IPC_LOCK is EPERM to mlock(2), any
	 * other limit ENOMEM: -ENOMEM for both, as moex_pin() says (and its
	 * hint names the limit; EPERM's is about io_uring) */
	if (mlock(addr, len) < 0)
		return errno == EPERM ? -ENOMEM : moex__neg_errno();
	if (!atomic_flag_test_and_set(&moex_mlock_said))
		fprintf(stderr,
			"libmoex: no moex device: weights are locked with mlock(2), not pinned by moex (load moex.ko for pinned, accounted, DMA-mapped weights)\n");
	return 0;
}

int moex_unlock_weights(struct moex_device *dev, void *addr, size_t len,
			uint32_t handle)
{
	MOEX_KEEP_ERRNO;

	if (handle)
		return moex_unpin(dev, handle);
	if (!addr || !len)
		return -EINVAL;
	return munlock(addr, len) < 0 ? moex__neg_errno() : 0;
}
