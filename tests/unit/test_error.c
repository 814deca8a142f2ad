// SPDX-License-Identifier: GPL-2.0
/*
 * unit-error: moex_strerror() and moex_error_hint().
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "moex.h"
#include "harness.h"

#define ERRNO_SENTINEL 4242

TEST(strerror_texts)
{
	static const struct {
		int err;
		const char *text;
	} want[] = {
		{ 0, "Success" },
		{ EPERM, "Operation not permitted" },
		{ ENOENT, "No such file or directory" },
		{ EINTR, "Interrupted system call" },
		{ EIO, "Input/output error" },
		{ ENXIO, "No such device or address" },
		{ EBADF, "Bad file descriptor" },
		{ ENOMEM, "Cannot allocate memory" },
		{ EACCES, "Permission denied" },
		{ EFAULT, "Bad address" },
		{ EBUSY, "Device or resource busy" },
		{ ENODEV, "No such device" },
		{ EINVAL, "Invalid argument" },
		{ ENOTTY, "Inappropriate ioctl for device" },
		{ ERANGE, "Numerical result out of range" },
		{ ENAMETOOLONG, "File name too long" },
		{ EPROTO, "Protocol error" },
		{ EOVERFLOW, "Value too large for defined data type" },
		{ EOPNOTSUPP, "Operation not supported" },
		/* glibc's wording, which musl's lacks for these (also
		 * tools/static-check's errno-texts) */
		{ E2BIG, "Argument list too long" },
		{ ETIME, "Timer expired" },
		{ ECANCELED, "Operation canceled" },
	};
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		CHECK_STR(moex_strerror(-want[i].err), want[i].text);
}

TEST(strerror_either_sign)
{
	CHECK_STR(moex_strerror(ENOMEM), moex_strerror(-ENOMEM));
	CHECK_STR(moex_strerror(EACCES), "Permission denied");
}

TEST(strerror_unknown_never_null)
{
	static const int odd[] = { 4095, -4095, 100000, INT_MAX, INT_MIN,
				   -INT_MAX };
	size_t i;

	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		const char *s = moex_strerror(odd[i]);

		CHECK(s != NULL);
		CHECK(*s != '\0');
	}
	CHECK_STR(moex_strerror(INT_MIN), "Unknown error");
}

/*
 * Every errno up to 200 (past the ends of libmoex's tables): glibc's text
 * where glibc has one, and a hint only for the errnos that have one.
 */
TEST(every_errno_past_the_tables)
{
	static const int hinted[] = { EPERM, ENOENT, ENXIO, E2BIG, ENOMEM,
				      EACCES, ENODEV, ENOTTY, EPROTO,
				      EOPNOTSUPP };
	int e;

	for (e = 1; e <= 200; e++) {
		const char *h = moex_error_hint(-e);
		bool want_hint = false;
		size_t i;

		for (i = 0; i < sizeof(hinted) / sizeof(hinted[0]); i++)
			want_hint |= hinted[i] == e;
		CHECK_MSG(want_hint == (*h != '\0'), "errno %d: hint \"%s\"",
			  e, h);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
		if (strerrordesc_np(e))
			CHECK_STR(moex_strerror(-e), strerrordesc_np(e));
#endif
	}
}

TEST(hint_not_loaded)
{
	static const int errs[] = { ENOENT, ENODEV, ENXIO };
	size_t i;

	for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		CHECK_HAS(moex_error_hint(-errs[i]), "modprobe moex");
		CHECK_HAS(moex_error_hint(-errs[i]), "not loaded");
	}
}

TEST(hint_permissions)
{
	const char *h = moex_error_hint(-EACCES);

	CHECK_HAS(h, "/dev/moex");
	CHECK_HAS(h, "group moex");
	/* COPY's read-only destination gives it too */
	CHECK_HAS(h, "read-only");
	/* and an unknown handle gives ENOENT, like a missing module */
	CHECK_HAS(moex_error_hint(-ENOENT), "handle");
}

TEST(hint_memlock)
{
	const char *h = moex_error_hint(-ENOMEM);

	CHECK_HAS(h, "ulimit -l");
	CHECK_HAS(h, "CAP_IPC_LOCK");
	CHECK_HAS(h, "/sys/module/moex/parameters/max_pinned_mb");
}

TEST(hint_io_uring_disabled)
{
	const char *h = moex_error_hint(-EPERM);

	CHECK_HAS(h, "io_uring");
	CHECK_HAS(h, "kernel.io_uring_disabled");
	CHECK_HAS(h, "seccomp");
}

TEST(hint_abi_and_not_moex)
{
	CHECK_HAS(moex_error_hint(-ENOTTY), "not a moex device");
	CHECK_HAS(moex_error_hint(-EPROTO), "ABI");
}

TEST(hint_none)
{
	static const int none[] = { 0, -EINVAL, -ERANGE, -EIO, -100000,
				    INT_MIN, INT_MAX };
	size_t i;

	for (i = 0; i < sizeof(none) / sizeof(none[0]); i++)
		CHECK_STR(moex_error_hint(none[i]), "");
	CHECK_STR(moex_error_hint(ENOMEM), moex_error_hint(-ENOMEM));
}

TEST(error_texts_keep_errno)
{
	errno = ERRNO_SENTINEL;
	(void)moex_strerror(-ENOMEM);
	(void)moex_strerror(12345);
	(void)moex_error_hint(-EACCES);
	CHECK_INT(errno, ERRNO_SENTINEL);
}

RUN_TESTS(
	T(strerror_texts),
	T(strerror_either_sign),
	T(strerror_unknown_never_null),
	T(hint_not_loaded),
	T(hint_permissions),
	T(hint_memlock),
	T(hint_io_uring_disabled),
	T(hint_abi_and_not_moex),
	T(hint_none),
	T(error_texts_keep_errno),
	T(every_errno_past_the_tables),
)
