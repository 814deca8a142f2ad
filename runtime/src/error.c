// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex error texts: moex_strerror() and moex_error_hint() (and
 * moex__lock_hint(), its variant for mlock()ed weights).
 *
 * The descriptions of the errors libmoex and moex.ko return are kept here
 * (glibc's wording) so they are static, thread-safe and the same with any
 * libc; anything else falls back to glibc's strerrordesc_np().
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "internal.h"

static const char *const moex_errtext[] = {
	[0] = "Success",
	[EPERM] = "Operation not permitted",
	[ENOENT] = "No such file or directory",
	[EINTR] = "Interrupted system call",
	[E2BIG] = "Argument list too long",
	[EIO] = "Input/output error",
	[ENXIO] = "No such device or address",
	[EBADF] = "Bad file descriptor",
	[EAGAIN] = "Resource temporarily unavailable",
	[ENOMEM] = "Cannot allocate memory",
	[EACCES] = "Permission denied",
	[EFAULT] = "Bad address",
	[EBUSY] = "Device or resource busy",
	[EEXIST] = "File exists",
	[ENODEV] = "No such device",
	[ENOTDIR] = "Not a directory",
	[EINVAL] = "Invalid argument",
	[ENFILE] = "Too many open files in system",
	[EMFILE] = "Too many open files",
	[ENOTTY] = "Inappropriate ioctl for device",
	[ENOSPC] = "No space left on device",
	[ERANGE] = "Numerical result out of range",
	[ETIME] = "Timer expired",
	[ENAMETOOLONG] = "File name too long",
	[ENOSYS] = "Function not implemented",
	[EPROTO] = "Protocol error",
	[EOVERFLOW] = "Value too large for defined data type",
	[EOPNOTSUPP] = "Operation not supported",
	[ETIMEDOUT] = "Connection timed out",
	[ECANCELED] = "Operation canceled",
};

#define MOEX_NOT_LOADED \
	"the moex module is not loaded or the device is gone: run `modprobe moex` (as root) and check `ls /dev/moex*` and dmesg"

#define MOEX_MEMLOCK_FIX \
	"raise the memlock limit (`ulimit -l`, RLIMIT_MEMLOCK in /etc/security/limits.conf or LimitMEMLOCK= in systemd)"

static const char *const moex_errhint[] = {
	[ENOENT] = MOEX_NOT_LOADED "; or no region has this handle (unpinned, or pinned through another open file)",
	[ENODEV] = MOEX_NOT_LOADED,
	[ENXIO] = MOEX_NOT_LOADED,
	[EACCES] = "no permission on /dev/moex*: add the user to group moex (`usermod -aG moex USER`, then log in again) or fix the udev rule that sets the device's group and mode; or a region pinned read-only was to be written (a copy's destination, a writable mapping of its dma-buf)",
	[ENOMEM] = "pinned-memory limit reached: " MOEX_MEMLOCK_FIX ", run with CAP_IPC_LOCK, or raise /sys/module/moex/parameters/max_pinned_mb",
	[EPERM] = "io_uring is disabled for this process: set sysctl kernel.io_uring_disabled=0 (or 1 and add the user to the io_uring group) and allow io_uring_setup/io_uring_enter in the seccomp profile (containers block them by default)",
	[ENOTTY] = "not a moex device: pass a /dev/moexN path, or the driver is too old for this command",
	[EPROTO] = "libmoex and moex.ko speak different ABI versions: install both from the same release",
	[E2BIG] = "one region is at most 2^32 - 1 pages (16 TiB less a page with 4 KiB pages): pin larger memory as several regions",
	[EOPNOTSUPP] = "the driver does not offer this feature (see the features in `moexctl info`); a writable pin of a shared file mapping (other than memfd/tmpfs or hugetlbfs) is refused: pin anonymous, memfd or hugetlbfs memory, or pin it read-only",
};

#define MOEX_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* |err|, or -1 when it has none. */
static int moex_errabs(int err)
{
	if (err == INT_MIN)
		return -1;
	return err < 0 ? -err : err;
}

const char *moex_strerror(int err)
{
	int e = moex_errabs(err);

	if (e >= 0 && (size_t)e < MOEX_ARRAY_SIZE(moex_errtext) &&
	    moex_errtext[e])
		return moex_errtext[e];
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	if (e > 0) {
		const char *s = strerrordesc_np(e);

		if (s)
			return s;
	}
#endif
	return "Unknown error";
}

const char *moex_error_hint(int err)
{
	int e = moex_errabs(err);

	if (e > 0 && (size_t)e < MOEX_ARRAY_SIZE(moex_errhint) &&
	    moex_errhint[e])
		return moex_errhint[e];
	return "";
}

const char *moex__lock_hint(int err)
{
	if (moex_errabs(err) == ENOMEM)
		return "memlock limit reached: " MOEX_MEMLOCK_FIX
		       " or run with CAP_IPC_LOCK";
	return moex_error_hint(err);
}
