// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex device: open, close, query and no-op on /dev/moexN.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"

/* ioctl() that retries on EINTR; 0 or -errno. */
int moex__ioctl(int fd, unsigned long cmd, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, cmd, arg);
	} while (ret < 0 && errno == EINTR);
	return ret < 0 ? moex__neg_errno() : 0;
}

static int moex_info_get(int fd, struct moex_info *info)
{
	memset(info, 0, sizeof(*info));
	return moex__ioctl(fd, MOEX_IOCTL_INFO, info);
}

int moex_open(const char *path, struct moex_device **out)
{
	MOEX_KEEP_ERRNO;
	struct moex_device *dev;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path)
		path = MOEX_DEFAULT_DEVICE;

	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->fd = open(path, O_RDWR | O_CLOEXEC);
	if (dev->fd < 0) {
		ret = moex__neg_errno();
		goto err_free;
	}
	ret = moex_info_get(dev->fd, &dev->info);
	if (ret)
		goto err_close;
	if (dev->info.abi_version != MOEX_ABI_VERSION) {
		ret = -EPROTO;
		goto err_close;
	}
	*out = dev;
	return 0;

err_close:
	close(dev->fd);
err_free:
	free(dev);
	return ret;
}

int moex_close(struct moex_device *dev)
{
	MOEX_KEEP_ERRNO;
	int ret = 0;

	if (!dev)
		return 0;
	/* Linux releases the descriptor even when close() reports an error. */
	if (close(dev->fd) < 0 && errno != EINTR)
		ret = moex__neg_errno();
	free(dev);
	return ret;
}

int moex_device_fd(const struct moex_device *dev)
{
	return dev ? dev->fd : -EINVAL;
}

int moex_query(struct moex_device *dev, struct moex_device_info *info)
{
	MOEX_KEEP_ERRNO;
	struct moex_info k;
	int ret;

	if (!dev || !info || !moex__size_ok(info->size))
		return -EINVAL;
	ret = moex_info_get(dev->fd, &k);
	if (ret)
		return ret;

	MOEX_SET(info, features, k.features);
	MOEX_SET(info, max_pinned_bytes, k.max_pinned_bytes);
	MOEX_SET(info, pinned_bytes, k.pinned_bytes);
	MOEX_SET(info, abi_version, k.abi_version);
	MOEX_SET(info, engine, k.engine);
	MOEX_SET(info, dma_bits, k.dma_bits);
	if (MOEX_COVERS(info, engine_name)) {
		/* The driver NUL-terminates; do not rely on it. */
		memcpy(info->engine_name, k.engine_name,
		       sizeof(info->engine_name) - 1);
		info->engine_name[sizeof(info->engine_name) - 1] = '\0';
	}
	return 0;
}

int moex_nop(struct moex_device *dev)
{
	MOEX_KEEP_ERRNO;
	struct moex_nop nop;

	if (!dev)
		return -EINVAL;
	memset(&nop, 0, sizeof(nop));
	return moex__ioctl(dev->fd, MOEX_IOCTL_NOP, &nop);
}
