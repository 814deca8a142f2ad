/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fakeioctl.h - a moex device for unit tests without moex.ko: this
 * header's ioctl() replaces libc's for moex commands (INFO, NOP, COPY)
 * and passes the rest on, so moex_open() accepts any file. With /dev/null
 * and a startup probe that trusts it, a queue gets a real io_uring ring.
 * Include it in one test file per binary (it defines ioctl()).
 */
#ifndef MOEX_TEST_FAKEIOCTL_H
#define MOEX_TEST_FAKEIOCTL_H

#include <errno.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "moex.h"
#include "../../runtime/src/internal.h"

/* The fake driver: on, and what it was asked. */
static struct {
	bool on;
	unsigned int nops, copies;
} drv;

int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!drv.on || _IOC_TYPE(cmd) != MOEX_IOC_MAGIC)
		return (int)syscall(SYS_ioctl, fd, cmd, arg);

	switch (cmd) {
	case MOEX_IOCTL_INFO: {
		struct moex_info *info = arg;

		memset(info, 0, sizeof(*info));
		info->abi_version = MOEX_ABI_VERSION;
		strcpy((char *)info->engine_name, "cpu");
		return 0;
	}
	case MOEX_IOCTL_NOP:
		drv.nops++;
		return 0;
	case MOEX_IOCTL_COPY: {
		const struct moex_copy *c = arg;

		if (!c->src_handle || !c->dst_handle) {
			errno = ENOENT;
			return -1;
		}
		drv.copies++;
		return 0;
	}
	default:
		errno = ENOTTY;
		return -1;
	}
}

/* A moex device played by path, with this file's ioctl() as its driver. */
static struct moex_device *fake_device_at(const char *path)
{
	struct moex_device *dev = NULL;

	memset(&drv, 0, sizeof(drv));
	drv.on = true;
	if (moex_open(path, &dev))
		return NULL;
	return dev;
}

static int probe_trusts_anything(struct moex_queue *q)
{
	(void)q;
	return 0;
}

/*
 * An io_uring queue of entries on /dev/null played as a moex device, able
 * to take completions posted from other threads (MSG_RING) when posting:
 * 0, or why not (io_uring or MSG_RING unavailable here), with nothing
 * left open. On 0, *dev must be closed after *q is destroyed.
 */
static int __attribute__((unused))
uring_queue_on_null(unsigned int entries, bool posting,
		    struct moex_device **dev, struct moex_queue **q)
{
	struct moex_queue_opts o = { .size = sizeof(o), .entries = entries };
	int (*probe)(struct moex_queue *q);
	int ret, why = 0;

	*q = NULL;
	*dev = fake_device_at("/dev/null");
	if (!*dev)
		return -ENODEV;
	moex__ring_setup = io_uring_queue_init_params;
	probe = moex__ring_probe;
	moex__ring_probe = probe_trusts_anything;
	ret = moex_queue_create(*dev, &o, q);
	moex__ring_probe = probe;
	if (!ret && moex_queue_mode(*q, NULL, &why) != MOEX_QUEUE_MODE_URING)
		ret = why ? why : -EOPNOTSUPP;
	if (!ret && posting)
		ret = moex__queue_can_post(*q);
	if (ret) {
		moex_queue_destroy(*q);
		moex_close(*dev);
		*q = NULL;
		*dev = NULL;
	}
	return ret;
}

#endif /* MOEX_TEST_FAKEIOCTL_H */
