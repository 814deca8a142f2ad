// SPDX-License-Identifier: GPL-2.0
/*
 * unit-util: moex_parse_size() and the pinnable-memory allocator.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

/* VmSize of this process in kB, read without malloc(); -1 on error. */
static long vm_size_kb(void)
{
	static char buf[8192];
	ssize_t n;
	char *p;
	int fd;

	fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "\nVmSize:");
	return p ? strtol(p + 8, NULL, 10) : -1;
}

/*
 * The allocator maps one alignment unit more and cuts both ends: what
 * stays mapped is exactly the rounded length, and the page after it is
 * not mapped.
 */
TEST(alloc_pinnable_maps_only_what_it_returns)
{
	size_t len = 3 * 4096 + 1;
	unsigned char vec;
	long before, during, after;
	void *mem = NULL;

	before = vm_size_kb();
	if (before < 0)
		SKIP("no VmSize in /proc/self/status");
	CHECK_INT(moex_alloc_pinnable(len, false, &mem), 0);
	during = vm_size_kb();
	CHECK(mincore((char *)mem + MOEX_PINNABLE_ALIGN, 4096, &vec) < 0 &&
	      errno == ENOMEM);
	CHECK_INT(moex_free_pinnable(mem, len), 0);
	after = vm_size_kb();
	CHECK_INT(during - before, (long)(MOEX_PINNABLE_ALIGN >> 10));
	CHECK_INT(after, before);
}

/*
 * The VmFlags of the mapping holding addr in /proc/self/smaps have "hg"
 * (MADV_HUGEPAGE): 1, 0, or -1 when the mapping is not found.
 */
static int has_hugepage_advice(const void *addr)
{
	char line[512];
	bool in = false;
	int ret = -1;
	FILE *f;

	f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		uintptr_t start, end;

		/* a mapping's first line; its fields are "Name: ..." */
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &start,
			   &end) == 2) {
			in = start <= (uintptr_t)addr && (uintptr_t)addr < end;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			ret = strstr(line, " hg") != NULL;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* hugepages asks for transparent huge pages (madvise), and only then. */
TEST(alloc_pinnable_hugepages_advice)
{
	struct stat st;
	void *mem = NULL;
	size_t len = MOEX_PINNABLE_ALIGN;
	int hg;

	if (stat("/sys/kernel/mm/transparent_hugepage", &st))
		SKIP("no transparent huge pages in this kernel");
	CHECK_INT(moex_alloc_pinnable(len, true, &mem), 0);
	hg = has_hugepage_advice(mem);
	CHECK_INT(moex_free_pinnable(mem, len), 0);
	CHECK_INT(hg, 1);
	CHECK_INT(moex_alloc_pinnable(len, false, &mem), 0);
	hg = has_hugepage_advice(mem);
	CHECK_INT(moex_free_pinnable(mem, len), 0);
	CHECK_INT(hg, 0);
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
	T(alloc_pinnable_maps_only_what_it_returns),
	T(alloc_pinnable_hugepages_advice),
	T(alloc_pinnable_bad_args),
)
