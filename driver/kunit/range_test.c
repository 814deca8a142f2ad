// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: range and overflow checks of REGION_PIN and COPY arguments
 * (moex_pin_check(), moex_copy_check(), moex_in_range(),
 * moex_copy_check_regions()), and the page array of a region too large
 * for kvmalloc (moex_pages_alloc()).
 */
#include <kunit/test.h>
#include <linux/limits.h>
#include <linux/mm.h>
#include <linux/vmalloc.h>

#include "../moex.h"

/* A user address well inside any task's address space. */
#define UADDR	(16UL << 20)

static int pin(u64 addr, u64 len, u32 flags)
{
	struct moex_region_pin arg = {
		.addr = addr, .length = len, .flags = flags,
	};

	return moex_pin_check(&arg);
}

static void pin_valid(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, pin(UADDR, PAGE_SIZE, 0), 0);
	KUNIT_EXPECT_EQ(test, pin(UADDR, 512 * PAGE_SIZE, 0), 0);
	KUNIT_EXPECT_EQ(test, pin(UADDR, PAGE_SIZE, MOEX_PIN_READONLY), 0);
	/* the last page below the user address limit */
	KUNIT_EXPECT_EQ(test, pin(TASK_SIZE_MAX - PAGE_SIZE, PAGE_SIZE, 0), 0);
}

static void pin_flags_reserved(struct kunit *test)
{
	struct moex_region_pin arg = { .addr = UADDR, .length = PAGE_SIZE };
	unsigned int bit;

	for (bit = 0; bit < 32; bit++) {
		if (BIT(bit) & MOEX_PIN_FLAGS_ALL)
			continue;
		KUNIT_EXPECT_EQ_MSG(test, pin(UADDR, PAGE_SIZE, BIT(bit)),
				    -EINVAL, "flag bit %u", bit);
	}
	arg.reserved[0] = 1;
	KUNIT_EXPECT_EQ(test, moex_pin_check(&arg), -EINVAL);
	arg.reserved[0] = 0;
	arg.reserved[1] = 1ULL << 63;
	KUNIT_EXPECT_EQ(test, moex_pin_check(&arg), -EINVAL);
	/* handle is output only: whatever it holds on input is ignored */
	arg.reserved[1] = 0;
	arg.handle = 42;
	KUNIT_EXPECT_EQ(test, moex_pin_check(&arg), 0);
}

static void pin_length_alignment(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, pin(UADDR, 0, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, pin(UADDR, 1, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, pin(UADDR, PAGE_SIZE - 1, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, pin(UADDR, PAGE_SIZE + 1, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, pin(UADDR + 1, PAGE_SIZE, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, pin(UADDR + PAGE_SIZE / 2, PAGE_SIZE, 0),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, pin(UADDR - 1, PAGE_SIZE, 0), -EINVAL);
	/* zero length is refused before anything about the address */
	KUNIT_EXPECT_EQ(test, pin(U64_MAX & PAGE_MASK, 0, 0), -EINVAL);
}

static void pin_wraparound(struct kunit *test)
{
	u64 top = U64_MAX & PAGE_MASK;	/* the last page of the u64 space */

	/* addr + length wraps past 2^64: -EOVERFLOW, not -EFAULT */
	KUNIT_EXPECT_EQ(test, pin(top, PAGE_SIZE, 0), -EOVERFLOW);
	KUNIT_EXPECT_EQ(test, pin(top, 2 * PAGE_SIZE, 0), -EOVERFLOW);
	KUNIT_EXPECT_EQ(test, pin(UADDR, U64_MAX & PAGE_MASK, 0), -EOVERFLOW);
	KUNIT_EXPECT_EQ(test, pin(PAGE_SIZE, top, 0), -EOVERFLOW);
	/* ends exactly at 2^64 - PAGE_SIZE: no wrap, but not user memory */
	KUNIT_EXPECT_EQ(test, pin(top - PAGE_SIZE, PAGE_SIZE, 0), -EFAULT);
}

static void pin_not_user(struct kunit *test)
{
	/* kernel addresses, and ranges that cross the user limit */
	KUNIT_EXPECT_EQ(test, pin(PAGE_OFFSET, PAGE_SIZE, 0), -EFAULT);
	KUNIT_EXPECT_EQ(test, pin(TASK_SIZE_MAX, PAGE_SIZE, 0), -EFAULT);
	KUNIT_EXPECT_EQ(test, pin(TASK_SIZE_MAX - PAGE_SIZE, 2 * PAGE_SIZE, 0),
			-EFAULT);
	KUNIT_EXPECT_EQ(test, pin(0, TASK_SIZE_MAX + PAGE_SIZE, 0), -EFAULT);
}

/* More pages than the sg table API counts (an unsigned int): -E2BIG. */
static void pin_too_many_pages(struct kunit *test)
{
	u64 most = (u64)UINT_MAX << PAGE_SHIFT;

	if (most + PAGE_SIZE >= TASK_SIZE_MAX - UADDR)
		kunit_skip(test, "user space is smaller than 2^32 pages");
	KUNIT_EXPECT_EQ(test, pin(UADDR, most, 0), 0);
	KUNIT_EXPECT_EQ(test, pin(UADDR, most + PAGE_SIZE, 0), -E2BIG);
	/* a range that leaves user space is -EFAULT first */
	KUNIT_EXPECT_EQ(test, pin(0, TASK_SIZE_MAX + PAGE_SIZE, 0), -EFAULT);
}

/*
 * A page array of more than kv_max bytes comes from vmalloc (kvmalloc
 * refuses more than INT_MAX: a region of 1 TiB), and kvfree() frees it.
 */
static void pages_alloc_past_kv_max(struct kunit *test)
{
	struct page **p;

	p = moex_pages_alloc(1024, 1024 * sizeof(*p));
	KUNIT_ASSERT_NOT_NULL(test, p);
	kvfree(p);
	p = moex_pages_alloc(1025, 1024 * sizeof(*p));
	KUNIT_ASSERT_NOT_NULL(test, p);
	KUNIT_EXPECT_TRUE(test, is_vmalloc_addr(p));
	p[1024] = NULL;		/* all of it is there */
	kvfree(p);
	/* a size that overflows size_t fails, and never wraps */
	KUNIT_EXPECT_NULL(test, moex_pages_alloc(ULONG_MAX, INT_MAX));
}

static struct moex_copy copy_arg(u64 src_off, u64 dst_off, u64 len)
{
	struct moex_copy c = {
		.src_handle = 1, .dst_handle = 2,
		.src_offset = src_off, .dst_offset = dst_off, .length = len,
	};

	return c;
}

static void copy_check_payload(struct kunit *test)
{
	struct moex_copy c = copy_arg(0, 0, 1);

	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, 0), 0);
	/* offsets are checked against the regions later, not here */
	c = copy_arg(U64_MAX, U64_MAX, U64_MAX);
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, 0), 0);

	c = copy_arg(0, 0, 0);
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, MOEX_COPY_FLAGS_ALL),
			-EINVAL);

	c = copy_arg(0, 0, 1);
	c.pad = 1;
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, 0), -EINVAL);
	c.pad = 0;
	c.reserved[1] = 1;
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, 0), -EINVAL);
	c.reserved[1] = 0;
	c.flags = BIT(2);	/* not a MOEX_COPY_* flag */
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, MOEX_COPY_FLAGS_ALL),
			-EINVAL);
}

static void copy_check_fixed_flags(struct kunit *test)
{
	struct moex_copy c = copy_arg(0, 0, 1);

	/* the ioctl (flags 0) refuses the io_uring-only flags */
	c.src_handle = 0;
	c.flags = MOEX_COPY_SRC_FIXED;
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, MOEX_COPY_FLAGS_ALL), 0);
	/* the fixed side's handle must be 0 */
	c.src_handle = 1;
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, MOEX_COPY_FLAGS_ALL),
			-EINVAL);

	c = copy_arg(0, 0, 1);
	c.dst_handle = 0;
	c.flags = MOEX_COPY_DST_FIXED;
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, MOEX_COPY_FLAGS_ALL), 0);
	c.dst_handle = 7;
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, MOEX_COPY_FLAGS_ALL),
			-EINVAL);

	/* at most one fixed side */
	c = copy_arg(0, 0, 1);
	c.src_handle = 0;
	c.dst_handle = 0;
	c.flags = MOEX_COPY_SRC_FIXED | MOEX_COPY_DST_FIXED;
	KUNIT_EXPECT_EQ(test, moex_copy_check(&c, MOEX_COPY_FLAGS_ALL),
			-EINVAL);
}

static void copy_in_range(struct kunit *test)
{
	const u64 size = 3 * PAGE_SIZE;

	KUNIT_EXPECT_TRUE(test, moex_in_range(0, size, size));
	KUNIT_EXPECT_TRUE(test, moex_in_range(size - 1, 1, size));
	KUNIT_EXPECT_TRUE(test, moex_in_range(1, size - 1, size));
	KUNIT_EXPECT_FALSE(test, moex_in_range(0, size + 1, size));
	KUNIT_EXPECT_FALSE(test, moex_in_range(1, size, size));
	KUNIT_EXPECT_FALSE(test, moex_in_range(size, 1, size));
	KUNIT_EXPECT_FALSE(test, moex_in_range(size + 1, 0, size));
	/* off + len wraps to a small number: a naive sum would pass */
	KUNIT_EXPECT_FALSE(test, moex_in_range(U64_MAX, 2, size));
	KUNIT_EXPECT_FALSE(test, moex_in_range(2, U64_MAX, size));
	KUNIT_EXPECT_FALSE(test, moex_in_range(size - 1, U64_MAX, size));
	KUNIT_EXPECT_FALSE(test, moex_in_range(U64_MAX, 1, U64_MAX));
	KUNIT_EXPECT_TRUE(test, moex_in_range(U64_MAX - 1, 1, U64_MAX));
	KUNIT_EXPECT_TRUE(test, moex_in_range(0, U64_MAX, U64_MAX));
}

static void copy_check_regions(struct kunit *test)
{
	struct moex_region src = { .length = 4 * PAGE_SIZE };
	struct moex_region dst = { .length = 2 * PAGE_SIZE };
	struct moex_copy c;

	c = copy_arg(0, 0, 2 * PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &src, &dst), 0);
	/* ends exactly at the end of both regions */
	c = copy_arg(2 * PAGE_SIZE + 7, 7, 2 * PAGE_SIZE - 7);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &src, &dst), 0);
	/* one byte past the end of dst, then of src */
	c = copy_arg(0, 1, 2 * PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &src, &dst),
			-ERANGE);
	c = copy_arg(3 * PAGE_SIZE + 1, 0, PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &src, &dst),
			-ERANGE);
	/* u64 overflow of offset + length */
	c = copy_arg(U64_MAX - 10, 0, 20);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &src, &dst),
			-ERANGE);
	c = copy_arg(0, U64_MAX, 2);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &src, &dst),
			-ERANGE);
	c = copy_arg(16, 16, U64_MAX - 8);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &src, &dst),
			-ERANGE);
}

static void copy_check_readonly(struct kunit *test)
{
	struct moex_region rw = { .length = PAGE_SIZE };
	struct moex_region ro = { .length = PAGE_SIZE };
	struct moex_copy c = copy_arg(0, 0, PAGE_SIZE);

	set_bit(MOEX_REGION_B_READONLY, &ro.flags);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &ro, &rw), 0);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &rw, &ro), -EACCES);
	/* a bad range is reported before a read-only destination */
	c.length = PAGE_SIZE + 1;
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &rw, &ro), -ERANGE);
}

static void copy_check_overlap(struct kunit *test)
{
	struct moex_region r = { .length = 4 * PAGE_SIZE };
	struct moex_copy c;

	/* same region: adjacent ranges are fine, overlapping ones are not */
	c = copy_arg(0, PAGE_SIZE, PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &r, &r), 0);
	c = copy_arg(PAGE_SIZE, 0, PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &r, &r), 0);
	c = copy_arg(0, PAGE_SIZE - 1, PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &r, &r), -EINVAL);
	c = copy_arg(PAGE_SIZE - 1, 0, PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &r, &r), -EINVAL);
	c = copy_arg(100, 100, 1);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &r, &r), -EINVAL);
	/* a range inside the other */
	c = copy_arg(0, 10, 3 * PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, moex_copy_check_regions(&c, &r, &r), -EINVAL);
}

static struct kunit_case moex_range_cases[] = {
	KUNIT_CASE(pin_valid),
	KUNIT_CASE(pin_flags_reserved),
	KUNIT_CASE(pin_length_alignment),
	KUNIT_CASE(pin_wraparound),
	KUNIT_CASE(pin_not_user),
	KUNIT_CASE(pin_too_many_pages),
	KUNIT_CASE(pages_alloc_past_kv_max),
	KUNIT_CASE(copy_check_payload),
	KUNIT_CASE(copy_check_fixed_flags),
	KUNIT_CASE(copy_in_range),
	KUNIT_CASE(copy_check_regions),
	KUNIT_CASE(copy_check_readonly),
	KUNIT_CASE(copy_check_overlap),
	{}
};

static struct kunit_suite moex_range_suite = {
	.name = "moex_range",
	.test_cases = moex_range_cases,
};

kunit_test_suite(moex_range_suite);
