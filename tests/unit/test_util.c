// SPDX-License-Identifier: GPL-2.0
/*
 * unit-util: moex_parse_size() and the pinnable-memory allocator.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "moex.h"
#include "harness.h"

#define ERRNO_SENTINEL 4242

/* A good input: parses to want, errno untouched. */
#define CHECK_SIZE(str, want)						\
	do {								\
		uint64_t v_ = 12345;					\
		errno = ERRNO_SENTINEL;					\
		CHECK_INT(moex_parse_size(str, &v_), 0);		\
		CHECK_U64(v_, want);					\
		CHECK_INT(errno, ERRNO_SENTINEL);			\
	} while (0)

/* A bad input: fails with err and leaves *out alone. */
#define CHECK_SIZE_ERR(str, err)					\
	do {								\
		uint64_t v_ = 777;					\
		CHECK_MSG(moex_parse_size(str, &v_) == (err),		\
			  "parse_size(\"%s\") != %s", str, #err);	\
		CHECK_U64(v_, 777);					\
	} while (0)

TEST(parse_size_plain)
{
	CHECK_SIZE("0", 0);
	CHECK_SIZE("1", 1);
	CHECK_SIZE("4096", 4096);
	CHECK_SIZE("007", 7);
	CHECK_SIZE("18446744073709551615", UINT64_MAX);
}

TEST(parse_size_suffixes)
{
	CHECK_SIZE("4k", 4096);
	CHECK_SIZE("4K", 4096);
	CHECK_SIZE("2M", 2u << 20);
	CHECK_SIZE("2m", 2u << 20);
	CHECK_SIZE("1G", 1ull << 30);
	CHECK_SIZE("3T", 3ull << 40);
	CHECK_SIZE("1GiB", 1ull << 30);
	CHECK_SIZE("512MiB", 512ull << 20);
	CHECK_SIZE("8KiB", 8192);
	CHECK_SIZE("8kib", 8192);
	CHECK_SIZE("0M", 0);
}

TEST(parse_size_rejects_junk)
{
	static const char *const bad[] = {
		"", "k", "M", "abc", "12x", "1.5G", " 12", "12 ", "+1", "-1",
		"-0", "0x10", "4KB", "4kB", "4B", "4kiBx", "1GiBB", "1Gi",
		"1e3", "1,000", "4 k", "4\n",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_SIZE_ERR(bad[i], -EINVAL);
}

TEST(parse_size_overflow)
{
	CHECK_SIZE_ERR("18446744073709551616", -ERANGE);
	CHECK_SIZE_ERR("99999999999999999999999999", -ERANGE);
	CHECK_SIZE_ERR("16777216T", -ERANGE);		/* 2^24 * 2^40 */
	CHECK_SIZE_ERR("17179869184G", -ERANGE);	/* 2^34 * 2^30 */
	CHECK_SIZE_ERR("18014398509481984k", -ERANGE);	/* 2^54 * 2^10 */
	CHECK_SIZE("16777215T", 16777215ull << 40);
	CHECK_SIZE("18014398509481983k", 18014398509481983ull << 10);
}

TEST(parse_size_null)
{
	uint64_t v;

	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_parse_size(NULL, &v), -EINVAL);
	CHECK_INT(moex_parse_size("4k", NULL), -EINVAL);
	CHECK_INT(errno, ERRNO_SENTINEL);
}

TEST(alloc_pinnable_aligned_and_usable)
{
	unsigned char *p;
	void *mem = NULL;
	size_t len = 3 * 4096 + 1;

	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_alloc_pinnable(len, false, &mem), 0);
	CHECK_INT(errno, ERRNO_SENTINEL);
	CHECK(mem != NULL);
	CHECK_U64((uintptr_t)mem % MOEX_PINNABLE_ALIGN, 0);
	p = mem;
	memset(p, 0xa5, MOEX_PINNABLE_ALIGN);	/* rounded up: all usable */
	CHECK_INT(p[MOEX_PINNABLE_ALIGN - 1], 0xa5);
	CHECK_INT(moex_free_pinnable(mem, len), 0);
	CHECK_INT(errno, ERRNO_SENTINEL);
}

TEST(alloc_pinnable_hugepages)
{
	unsigned char *p;
	void *mem = NULL;
	size_t len = 2 * MOEX_PINNABLE_ALIGN;

	CHECK_INT(moex_alloc_pinnable(len, true, &mem), 0);
	CHECK_U64((uintptr_t)mem % MOEX_PINNABLE_ALIGN, 0);
	p = mem;
	p[0] = 1;
	p[len - 1] = 2;
	CHECK_INT(p[0] + p[len - 1], 3);
	CHECK_INT(moex_free_pinnable(mem, len), 0);
	/* The whole mapping is gone: mincore() refuses unmapped memory. */
	{
		unsigned char vec;

		CHECK(mincore(mem, 4096, &vec) < 0 && errno == ENOMEM);
	}
}

TEST(alloc_pinnable_bad_args)
{
	void *mem = (void *)1;

	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_alloc_pinnable(0, false, &mem), -EINVAL);
	CHECK(mem == NULL);
	CHECK_INT(moex_alloc_pinnable(4096, false, NULL), -EINVAL);
	CHECK_INT(moex_alloc_pinnable(SIZE_MAX, false, &mem), -ENOMEM);
	CHECK_INT(moex_alloc_pinnable(SIZE_MAX - MOEX_PINNABLE_ALIGN, true,
				      &mem), -ENOMEM);
	CHECK_INT(moex_free_pinnable(NULL, 4096), 0);
	CHECK_INT(moex_free_pinnable((void *)(uintptr_t)4096, 4096), -EINVAL);
	CHECK_INT(errno, ERRNO_SENTINEL);
}

RUN_TESTS(
	T(parse_size_plain),
	T(parse_size_suffixes),
	T(parse_size_rejects_junk),
	T(parse_size_overflow),
	T(parse_size_null),
	T(alloc_pinnable_aligned_and_usable),
	T(alloc_pinnable_hugepages),
	T(alloc_pinnable_bad_args),
)
