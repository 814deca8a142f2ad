// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: the accounting of REGION_PIN (moex_region_alloc(), moex_charge(),
 * moex_uncharge(), moex_cap_bytes()): page counts from byte lengths, the
 * RLIMIT_MEMLOCK check against mm->pinned_vm (waived by CAP_IPC_LOCK),
 * the module-wide max_pinned_mb cap, and that every charge is undone
 * exactly, also when it is refused.
 *
 * KUnit runs each case in a kernel thread, which has no mm: the cases
 * charge a zeroed struct mm_struct of their own (only pinned_vm and
 * mm_count are used; the extra mm_count reference keeps mmdrop() from ever
 * freeing it) and run under credentials with or without CAP_IPC_LOCK.
 * A charge that wrongly succeeds is undone at once, and a region still
 * charged when a case ends is uncharged by the suite's exit, so a failing
 * case leaves the module-wide total as it found it.
 */
#include <kunit/test.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/mm.h>
#include <linux/resource.h>
#include <linux/sched/mm.h>

#include "../moex.h"

#define MAX_REGIONS	8

struct acct_ctx {
	unsigned int old_mb;
	unsigned int n;
	struct moex_region *r[MAX_REGIONS];
};

/* A region from moex_region_alloc(), freed by the suite's exit. */
static struct moex_region *new_region(struct kunit *test, u64 length,
				      u32 flags)
{
	struct moex_region_pin arg = {
		.addr = 1UL << 30, .length = length, .flags = flags,
	};
	struct acct_ctx *ctx = test->priv;
	struct moex_region *r;

	KUNIT_ASSERT_LT(test, ctx->n, (unsigned int)MAX_REGIONS);
	r = moex_region_alloc(&arg);
	KUNIT_ASSERT_NOT_NULL(test, r);
	ctx->r[ctx->n++] = r;
	return r;
}

/* moex_charge(), expecting @want; undo a charge that should have failed. */
static void charge(struct kunit *test, struct moex_region *r,
		   struct mm_struct *mm, unsigned long memlock, int want)
{
	int ret = moex_charge(r, mm, memlock);

	if (!ret && want)
		moex_uncharge(r);
	KUNIT_EXPECT_EQ(test, ret, want);
}

/* moex_uncharge() of a region that was charged. */
static void uncharge(struct kunit *test, struct moex_region *r)
{
	KUNIT_EXPECT_NOT_NULL(test, r->owner_mm);
	if (r->owner_mm)
		moex_uncharge(r);
}

static struct mm_struct *new_mm(struct kunit *test)
{
	struct mm_struct *mm = kunit_kzalloc(test, sizeof(*mm), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, mm);
	atomic_set(&mm->mm_count, 1);	/* the test's own: never dropped */
	return mm;
}

/* Run with CAP_IPC_LOCK raised or lowered; undo with put_creds(). */
static const struct cred *set_ipc_lock(struct kunit *test, bool on,
				       struct cred **newp)
{
	struct cred *new = prepare_creds();

	KUNIT_ASSERT_NOT_NULL(test, new);
	if (on)
		cap_raise(new->cap_effective, CAP_IPC_LOCK);
	else
		cap_lower(new->cap_effective, CAP_IPC_LOCK);
	*newp = new;
	return override_creds(new);
}

static void put_creds(const struct cred *old, struct cred *new)
{
	revert_creds(old);
	put_cred(new);
}

static void region_alloc_pages(struct kunit *test)
{
	struct moex_region *r;

	r = new_region(test, PAGE_SIZE, 0);
	KUNIT_EXPECT_EQ(test, r->npages, 1UL);
	KUNIT_EXPECT_EQ(test, r->length, (u64)PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, r->addr, (u64)1 << 30);
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 1U);
	KUNIT_EXPECT_FALSE(test, test_bit(MOEX_REGION_B_READONLY, &r->flags));
	KUNIT_EXPECT_NULL(test, r->owner_mm);
	KUNIT_EXPECT_NULL(test, r->pages);

	r = new_region(test, SZ_2M, MOEX_PIN_READONLY);
	KUNIT_EXPECT_EQ(test, r->npages, (unsigned long)(SZ_2M / PAGE_SIZE));
	KUNIT_EXPECT_TRUE(test, test_bit(MOEX_REGION_B_READONLY, &r->flags));
	KUNIT_EXPECT_FALSE(test, test_bit(MOEX_REGION_B_EXPORTED, &r->flags));

	/* page counts past 32 bits are not truncated */
	r = new_region(test, 1ULL << 52, 0);
	KUNIT_EXPECT_EQ(test, r->npages, 1UL << (52 - PAGE_SHIFT));
}

static void cap_bytes(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, moex_cap_bytes(0), 0ULL);
	KUNIT_EXPECT_EQ(test, moex_cap_bytes(1), (u64)SZ_1M);
	/* 4096 MiB does not wrap to 0 (no cap) in 32 bits */
	KUNIT_EXPECT_EQ(test, moex_cap_bytes(4096), 4ULL << 30);
	KUNIT_EXPECT_EQ(test, moex_cap_bytes(UINT_MAX), (u64)UINT_MAX << 20);
}

static void charge_uncharge_balance(struct kunit *test)
{
	struct mm_struct *mm = new_mm(test);
	u64 base = moex_pinned_total();
	struct moex_region *a, *b;

	WRITE_ONCE(moex_max_pinned_mb, 0);
	a = new_region(test, 3 * PAGE_SIZE, 0);
	b = new_region(test, 5 * PAGE_SIZE, MOEX_PIN_READONLY);

	charge(test, a, mm, RLIM_INFINITY, 0);
	KUNIT_EXPECT_PTR_EQ(test, a->owner_mm, mm);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 3LL);
	KUNIT_EXPECT_EQ(test, atomic_read(&mm->mm_count), 2);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), base + 3 * PAGE_SIZE);

	/* read-only regions are charged the same */
	charge(test, b, mm, RLIM_INFINITY, 0);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 8LL);
	KUNIT_EXPECT_EQ(test, atomic_read(&mm->mm_count), 3);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), base + 8 * PAGE_SIZE);

	uncharge(test, a);
	KUNIT_EXPECT_NULL(test, a->owner_mm);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 5LL);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), base + 5 * PAGE_SIZE);
	uncharge(test, b);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 0LL);
	KUNIT_EXPECT_EQ(test, atomic_read(&mm->mm_count), 1);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), base);
}

static void charge_memlock_limit(struct kunit *test)
{
	struct mm_struct *mm = new_mm(test);
	u64 base = moex_pinned_total();
	struct moex_region *four, *one;
	const struct cred *old;
	struct cred *new;

	WRITE_ONCE(moex_max_pinned_mb, 0);
	four = new_region(test, 4 * PAGE_SIZE, 0);
	one = new_region(test, PAGE_SIZE, 0);
	old = set_ipc_lock(test, false, &new);

	/* exactly at the limit is allowed, one page more is not */
	charge(test, four, mm, 4 * PAGE_SIZE, 0);
	charge(test, one, mm, 4 * PAGE_SIZE, -ENOMEM);
	/* a refused charge moves nothing */
	KUNIT_EXPECT_NULL(test, one->owner_mm);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 4LL);
	KUNIT_EXPECT_EQ(test, atomic_read(&mm->mm_count), 2);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), base + 4 * PAGE_SIZE);
	/* the limit is rounded down to whole pages */
	charge(test, one, mm, 5 * PAGE_SIZE - 1, -ENOMEM);
	charge(test, one, mm, 5 * PAGE_SIZE, 0);
	uncharge(test, one);
	uncharge(test, four);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 0LL);

	charge(test, one, mm, 0, -ENOMEM);
	charge(test, one, mm, PAGE_SIZE - 1, -ENOMEM);

	/* pages the mm pinned elsewhere (RDMA, io_uring) count as well */
	atomic64_set(&mm->pinned_vm, 10);
	charge(test, four, mm, 12 * PAGE_SIZE, -ENOMEM);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 10LL);
	charge(test, one, mm, 12 * PAGE_SIZE, 0);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 11LL);
	uncharge(test, one);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 10LL);

	put_creds(old, new);
	KUNIT_EXPECT_EQ(test, atomic_read(&mm->mm_count), 1);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), base);
}

static void charge_cap_ipc_lock(struct kunit *test)
{
	struct mm_struct *mm = new_mm(test);
	u64 base = moex_pinned_total();
	const struct cred *old;
	struct moex_region *r;
	struct cred *new;

	WRITE_ONCE(moex_max_pinned_mb, 0);
	r = new_region(test, 3 * PAGE_SIZE, 0);
	old = set_ipc_lock(test, true, &new);
	/* CAP_IPC_LOCK waives the limit, but pinned_vm is still charged */
	charge(test, r, mm, 0, 0);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 3LL);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), base + 3 * PAGE_SIZE);
	uncharge(test, r);
	put_creds(old, new);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 0LL);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), base);
}

static void charge_max_pinned_mb(struct kunit *test)
{
	struct mm_struct *mm = new_mm(test);
	struct moex_region *mib, *page, *big;
	const struct cred *old;
	struct cred *new;

	/* the cap counts every region of every device: none may be left */
	KUNIT_ASSERT_EQ(test, moex_pinned_total(), 0ULL);
	mib = new_region(test, SZ_1M, 0);
	page = new_region(test, PAGE_SIZE, 0);

	WRITE_ONCE(moex_max_pinned_mb, 1);
	charge(test, mib, mm, RLIM_INFINITY, 0);
	charge(test, page, mm, RLIM_INFINITY, -ENOMEM);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), (u64)SZ_1M);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm),
			(s64)(SZ_1M / PAGE_SIZE));
	uncharge(test, mib);
	charge(test, page, mm, RLIM_INFINITY, 0);
	uncharge(test, page);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), 0ULL);

	/* the cap is checked first: CAP_IPC_LOCK does not waive it */
	big = new_region(test, SZ_2M, 0);
	old = set_ipc_lock(test, true, &new);
	charge(test, big, mm, RLIM_INFINITY, -ENOMEM);
	put_creds(old, new);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 0LL);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), 0ULL);

	/* 4096 MiB: a 64-bit cap, exact to the byte */
	WRITE_ONCE(moex_max_pinned_mb, 4096);
	big = new_region(test, 4ULL << 30, 0);
	charge(test, big, mm, RLIM_INFINITY, 0);
	charge(test, page, mm, RLIM_INFINITY, -ENOMEM);
	uncharge(test, big);

	/* 0: no cap, even for 1 TiB */
	WRITE_ONCE(moex_max_pinned_mb, 0);
	big = new_region(test, 1ULL << 40, 0);
	charge(test, big, mm, RLIM_INFINITY, 0);
	KUNIT_EXPECT_EQ(test, moex_pinned_total(), 1ULL << 40);
	uncharge(test, big);

	KUNIT_EXPECT_EQ(test, moex_pinned_total(), 0ULL);
	KUNIT_EXPECT_EQ(test, atomic64_read(&mm->pinned_vm), 0LL);
	KUNIT_EXPECT_EQ(test, atomic_read(&mm->mm_count), 1);
}

static int moex_accounting_init(struct kunit *test)
{
	struct acct_ctx *ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	ctx->old_mb = READ_ONCE(moex_max_pinned_mb);
	test->priv = ctx;
	return 0;
}

/*
 * Give the module its max_pinned_mb back, uncharge what a failed case
 * left charged (its mm is freed only after this) and free the regions.
 */
static void moex_accounting_exit(struct kunit *test)
{
	struct acct_ctx *ctx = test->priv;
	unsigned int i;

	if (!ctx)
		return;
	WRITE_ONCE(moex_max_pinned_mb, ctx->old_mb);
	for (i = 0; i < ctx->n; i++) {
		if (ctx->r[i]->owner_mm)
			moex_uncharge(ctx->r[i]);
		kfree(ctx->r[i]);
	}
}

static struct kunit_case moex_accounting_cases[] = {
	KUNIT_CASE(region_alloc_pages),
	KUNIT_CASE(cap_bytes),
	KUNIT_CASE(charge_uncharge_balance),
	KUNIT_CASE(charge_memlock_limit),
	KUNIT_CASE(charge_cap_ipc_lock),
	KUNIT_CASE(charge_max_pinned_mb),
	{}
};

static struct kunit_suite moex_accounting_suite = {
	.name = "moex_accounting",
	.init = moex_accounting_init,
	.exit = moex_accounting_exit,
	.test_cases = moex_accounting_cases,
};

kunit_test_suite(moex_accounting_suite);
