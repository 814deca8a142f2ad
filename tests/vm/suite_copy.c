// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-suite: COPY on every engine (random unaligned offsets and
 * lengths, page and 2 MiB boundaries, within one region, from a READONLY
 * region, seen through a dma-buf), with exact copy_calls/copy_bytes; and
 * concurrency on one file and on several.
 *
 * The edu engine moves at most 4095 bytes per ~200 ms of virtual time, so
 * its copies are few and a few KiB each.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "suite.h"

struct copy_pair {
	struct moex_device *md;
	size_t len;
	unsigned char *a, *b;		/* the regions' memory */
	unsigned char *sa, *sb;		/* what they should hold */
	uint32_t ha, hb;
};

static void free_pair(struct copy_pair *cp)
{
	free(cp->sa);
	free(cp->sb);
	cp->sa = cp->sb = NULL;
}

/*
 * Write fresh bytes into the source range, copy, and check the whole
 * destination against its shadow. The bytes are written after the pin, as
 * a loader fills pinned memory: an engine that read a stale copy of them
 * (a missing DMA sync, where swiotlb bounces: tools/vm/run --swiotlb)
 * fails the check.
 */
static int copy_checked(struct copy_pair *cp, bool a_to_b, uint64_t so,
			uint64_t dof, uint64_t n)
{
	unsigned char *src = a_to_b ? cp->a : cp->b;
	unsigned char *dst = a_to_b ? cp->b : cp->a;
	unsigned char *sdst = a_to_b ? cp->sb : cp->sa;
	unsigned char *ssrc = a_to_b ? cp->sa : cp->sb;
	size_t i;
	int err;

	fill_random(src + so, n);
	memcpy(ssrc + so, src + so, n);
	err = do_copy(cp->md, a_to_b ? cp->ha : cp->hb, a_to_b ? cp->hb : cp->ha,
		      so, dof, n);
	CHECK(!err, "COPY %s %llu bytes from offset %llu to %llu: %s",
	      a_to_b ? "A->B" : "B->A", (unsigned long long)n,
	      (unsigned long long)so, (unsigned long long)dof, errname(err));
	memcpy(sdst + dof, ssrc + so, n);
	if (!memcmp(dst, sdst, cp->len))
		return T_PASS;
	for (i = 0; i < cp->len && dst[i] == sdst[i]; i++)
		;
	return FAIL("COPY %s %llu bytes from %llu to %llu: destination byte %zu "
		    "(%s the copied range) is 0x%02x, expected 0x%02x",
		    a_to_b ? "A->B" : "B->A", (unsigned long long)n,
		    (unsigned long long)so, (unsigned long long)dof, i,
		    i >= dof && i < dof + n ? "inside" : "outside", dst[i],
		    sdst[i]);
}

static int pair_setup(int dev, size_t len, bool thp, struct copy_pair *cp)
{
	memset(cp, 0, sizeof(*cp));
	OPEN_DEV(dev, &cp->md);
	cp->len = len;
	cp->a = thp ? buf_thp(len) : buf_4k(len);
	cp->b = buf_4k(len);
	cp->sa = malloc(len);
	cp->sb = malloc(len);
	CHECK(cp->a && cp->b && cp->sa && cp->sb, "memory: %s", strerror(errno));
	fill_random(cp->a, len);
	fill_random(cp->b, len);
	memcpy(cp->sa, cp->a, len);
	memcpy(cp->sb, cp->b, len);
	CHECK_OK(do_pin(cp->md, cp->a, len, 0, &cp->ha));
	CHECK_OK(do_pin(cp->md, cp->b, len, 0, &cp->hb));
	return T_PASS;
}

static int copy_roundtrip(int dev, struct copy_pair *cp, uint64_t *bytes,
			  int *calls)
{
	const bool edu = dev != 0;
	const size_t len = cp->len;
	int i, n = edu ? 4 : 40;

	for (i = 0; i < n; i++) {
		uint64_t so, dof, cnt;
		bool ab = i % 2 == 0;

		if (edu) {
			/* 1 byte; across a page; two edu chunks; random */
			static const uint64_t lens[] = { 1, 700, 4097, 0 };

			cnt = lens[i] ? lens[i] : rnd_range(1500, 3000);
			so = rnd_range(0, len - cnt);
			dof = i == 1 ? g_page - 350 : rnd_range(0, len - cnt);
			if (i == 3) {
				/* both ranges end at their region's last byte */
				so = len - cnt;
				dof = len - cnt;
			}
		} else {
			switch (i % 5) {
			case 0:		/* tiny */
				cnt = rnd_range(1, 64);
				break;
			case 1:		/* a few pages */
				cnt = rnd_range(65, 5 * g_page);
				break;
			case 2:		/* across a 2 MiB boundary */
				cnt = rnd_range(g_page, 300 * KIB);
				break;
			case 3:		/* several MiB */
				cnt = rnd_range(2 * MIB + 1, len - 3 * g_page);
				break;
			default:
				cnt = rnd_range(1, len);
				break;
			}
			so = rnd_range(0, len - cnt);
			dof = rnd_range(0, len - cnt);
			if (i == 4) {
				/* the whole region */
				cnt = len;
				so = 0;
				dof = 0;
			} else if (i == 5) {
				/* both ranges end at their region's last byte */
				so = len - cnt;
				dof = len - cnt;
			}
			if (i % 5 == 2) {
				/* straddle the first 2 MiB boundary */
				so = HPAGE - rnd_range(1, cnt - 1);
				dof = HPAGE - rnd_range(1, cnt - 1);
			}
		}
		TRY(copy_checked(cp, ab, so, dof, cnt));
		*bytes += cnt;
		(*calls)++;
	}
	return T_PASS;
}

static int t_copy_roundtrip(const struct test *t)
{
	struct stats s0 = { .v = { 0 } };
	struct copy_pair cp;
	uint64_t bytes = 0;
	uint64_t t0;
	int dev, calls = 0, rc;

	TRY(test_dev(t, &dev));
	rc = pair_setup(dev, dev == 0 ? 8 * MIB : 64 * KIB, dev == 0, &cp);
	if (rc == T_PASS) {
		STATS(dev, &s0);
		t0 = now_ms();
		rc = copy_roundtrip(dev, &cp, &bytes, &calls);
		if (rc == T_PASS)
			note("moex%d: %d copies, %llu bytes in %llu ms", dev, calls,
			     (unsigned long long)bytes,
			     (unsigned long long)(now_ms() - t0));
	}
	free_pair(&cp);
	TRY(rc);
	EXPECT_STATS(dev, &s0, DELTA([ST_COPY_CALLS] = calls,
				     [ST_COPY_BYTES] = (long long)bytes));
	return T_PASS;
}

/*
 * A COPY that returned has released its regions: UNPIN right after it
 * unpins at once, with no wait (the edu engine completes in its IRQ
 * handler; the regions used to be released later, from a work item).
 */
static int t_copy_then_unpin(const struct test *t)
{
	const size_t len = 2 * g_page;
	const int rounds = 8;
	struct moex_device *md;
	struct stats s0;
	long long vm0 = vmpin_kb(0);
	unsigned char *a, *b;
	uint32_t ha, hb;
	int dev, i;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	MAP(a, buf_4k(len));
	MAP(b, buf_4k(len));
	fill_random(a, len);
	STATS(dev, &s0);
	for (i = 0; i < rounds; i++) {
		CHECK_OK(do_pin(md, a, len, 0, &ha));
		CHECK_OK(do_pin(md, b, len, 0, &hb));
		CHECK_OK(do_copy(md, ha, hb, 100, g_page - 50, 200));
		CHECK_OK(do_unpin(md, ha));
		CHECK_OK(do_unpin(md, hb));
		EXPECT_INFO_PINNED(md, 0, " right after COPY and UNPIN");
		EXPECT_VMPIN(vm0, " right after COPY and UNPIN");
	}
	CHECK_BYTES("the copied bytes", b + g_page - 50, a + 100, 200);
	EXPECT_STATS(dev, &s0, DELTA([ST_PIN_CALLS] = 2 * rounds,
				     [ST_UNPIN_CALLS] = 2 * rounds,
				     [ST_COPY_CALLS] = rounds,
				     [ST_COPY_BYTES] = 200 * rounds));
	return T_PASS;
}

/* Within one region: disjoint ranges, also touching ones. */
static int t_copy_same_region(const struct test *t)
{
	const size_t len = 256 * KIB;
	struct stats s0 = { .v = { 0 } };
	struct copy_pair cp;
	uint64_t bytes = 0;
	int dev, calls = 0, rc, i, first, last;

	TRY(test_dev(t, &dev));
	rc = pair_setup(dev, len, false, &cp);
	if (rc == T_PASS) {
		STATS(dev, &s0);
		cp.hb = cp.ha;		/* both ends in region A */
		cp.b = cp.a;
		free(cp.sb);
		cp.sb = cp.sa;
		/* edu: only the second touching case (one slow copy) */
		first = dev == 0 ? 0 : 1;
		last = dev == 0 ? 6 : 2;
		for (i = first; i < last && rc == T_PASS; i++) {
			uint64_t n, so, dof;

			if (i == 0 && dev == 0) {
				/* touching: [s, s + n) to [s + n, s + 2n) */
				n = 3 * g_page + 5;
				so = 4095;
				dof = so + n;
			} else if (i <= 1) {
				/* touching the other way: to [s - n, s) */
				n = dev == 0 ? 2 * g_page + 7 : 1000;
				so = 5 * g_page + 1;
				dof = so - n;
			} else {
				n = rnd_range(1, len / 2 - 1);
				so = rnd_range(0, len / 2 - n);
				dof = rnd_range(len / 2, len - n);
				if (i % 2) {
					uint64_t x = so;

					so = dof;
					dof = x;
				}
			}
			rc = copy_checked(&cp, true, so, dof, n);
			bytes += n;
			calls++;
		}
		cp.sb = NULL;
	}
	free_pair(&cp);
	TRY(rc);
	EXPECT_STATS(dev, &s0, DELTA([ST_COPY_CALLS] = calls,
				     [ST_COPY_BYTES] = (long long)bytes));
	return T_PASS;
}

/* A READONLY region is a valid source. */
static int t_copy_from_readonly(const struct test *t)
{
	const size_t len = 64 * KIB;
	unsigned char *src, *dst, *want;
	struct stats s0;
	uint64_t n, so, dof;
	struct moex_device *md;
	uint32_t hs, hd;
	int dev, err;

	TRY(test_dev(t, &dev));
	OPEN_DEV(dev, &md);
	MAP(src, buf_4k(len));
	MAP(dst, buf_4k(len));
	MAP(want, buf_4k(len));
	fill_random(src, len);
	fill_random(dst, len);
	memcpy(want, dst, len);
	CHECK(!mprotect(src, len, PROT_READ), "mprotect: %s", strerror(errno));
	CHECK_OK(do_pin(md, src, len, MOEX_PIN_READONLY, &hs));
	CHECK_OK(do_pin(md, dst, len, 0, &hd));
	n = dev == 0 ? 40000 : 2000;
	so = 777;
	dof = g_page * 3 - 123;
	STATS(dev, &s0);
	err = do_copy(md, hs, hd, so, dof, n);
	CHECK(!err, "COPY from a READONLY region: %s", errname(err));
	memcpy(want + dof, src + so, n);
	CHECK_BYTES("destination", dst, want, len);
	CHECK_ERRNO(do_copy(md, hd, hs, 0, 0, 1), EACCES);
	EXPECT_STATS(dev, &s0, DELTA([ST_COPY_CALLS] = 1, [ST_COPY_BYTES] = (long long)n));
	return T_PASS;
}

/* What a COPY wrote is what the region's dma-buf shows. */
static int t_copy_dmabuf_view(const struct test *t)
{
	const size_t len = 64 * KIB;
	struct copy_pair cp;
	unsigned char *m;
	int dev, dfd, rc;

	TRY(test_dev(t, &dev));
	rc = pair_setup(dev, len, false, &cp);
	if (rc == T_PASS) {
		rc = FAIL("REGION_EXPORT failed");
		if (!do_export(cp.md, cp.hb, &dfd)) {
			m = xmap(len, PROT_READ, MAP_SHARED, dfd, 0);
			rc = m ? copy_checked(&cp, true, 100, 5000, 3000) :
				 FAIL("mmap of the dma-buf: %s", strerror(errno));
			if (rc == T_PASS)
				rc = check_bytes_at(__FILE__, __LINE__,
						    "dma-buf after COPY", m,
						    cp.sb, len);
		}
	}
	free_pair(&cp);
	return rc;
}

/* ---- concurrency ----------------------------------------------------------------- */

#define WORKER_OPS	200
#define WORKER_STACK	8
#define WORKER_LEN	(128 * KIB)

struct worker {
	pthread_t th;
	struct moex_device *md;
	uint64_t rng;
	unsigned char *a, *b;
	uint32_t ha, hb;
	uint32_t stack[WORKER_STACK];
	int depth;
	long pins, unpins, copies;
	uint64_t bytes;
	char err[256];
};

static void werr(struct worker *w, const char *what, int err)
{
	if (!w->err[0])
		snprintf(w->err, sizeof(w->err), "%s: %s", what, errname(err));
}

static void worker_pin(struct worker *w)
{
	uint64_t pages = WORKER_LEN / g_page;
	uint64_t first = rnd_r(&w->rng) % pages;
	uint64_t n = 1 + rnd_r(&w->rng) % (pages - first);
	int err;

	err = do_pin(w->md, w->a + first * g_page, n * g_page,
		     rnd_r(&w->rng) % 2 ? MOEX_PIN_READONLY : 0,
		     &w->stack[w->depth]);
	if (err)
		return werr(w, "REGION_PIN", err);
	w->depth++;
	w->pins++;
}

static void worker_unpin(struct worker *w)
{
	int err = do_unpin(w->md, w->stack[--w->depth]);

	if (err)
		return werr(w, "REGION_UNPIN", err);
	w->unpins++;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct moex_region_desc ri;
	int i, err;

	err = do_pin(w->md, w->a, WORKER_LEN, MOEX_PIN_READONLY, &w->ha);
	if (!err)
		err = do_pin(w->md, w->b, WORKER_LEN, 0, &w->hb);
	if (err) {
		werr(w, "REGION_PIN", err);
		return NULL;
	}
	w->pins += 2;
	for (i = 0; i < WORKER_OPS && !w->err[0]; i++) {
		switch (rnd_r(&w->rng) % 4) {
		case 0:
			if (w->depth < WORKER_STACK)
				worker_pin(w);
			else
				worker_unpin(w);
			break;
		case 1:
			if (w->depth)
				worker_unpin(w);
			else
				worker_pin(w);
			break;
		case 2: {
			uint64_t n = 1 + rnd_r(&w->rng) % (16 * KIB);
			uint64_t so = rnd_r(&w->rng) % (WORKER_LEN - n + 1);
			uint64_t dof = rnd_r(&w->rng) % (WORKER_LEN - n + 1);

			err = do_copy(w->md, w->ha, w->hb, so, dof, n);
			if (err) {
				werr(w, "COPY", err);
				break;
			}
			if (memcmp(w->b + dof, w->a + so, n)) {
				snprintf(w->err, sizeof(w->err),
					 "COPY of %llu bytes from %llu to %llu: wrong bytes",
					 (unsigned long long)n,
					 (unsigned long long)so,
					 (unsigned long long)dof);
				break;
			}
			w->copies++;
			w->bytes += n;
			break;
		}
		default: {
			uint32_t h = w->depth ? w->stack[rnd_r(&w->rng) % w->depth] :
						w->ha;

			err = do_rinfo(w->md, h, &ri);
			if (err)
				werr(w, "REGION_INFO", err);
			else if ((uintptr_t)ri.addr < (uintptr_t)w->a ||
				 (uintptr_t)ri.addr + ri.length >
				 (uintptr_t)w->a + WORKER_LEN)
				snprintf(w->err, sizeof(w->err),
					 "REGION_INFO of handle %u names another thread's region",
					 h);
			break;
		}
		}
	}
	while (w->depth && !w->err[0])
		worker_unpin(w);
	if (!w->err[0]) {
		err = do_unpin(w->md, w->ha);
		if (!err)
			err = do_unpin(w->md, w->hb);
		if (err)
			werr(w, "REGION_UNPIN", err);
		else
			w->unpins += 2;
	}
	return NULL;
}

static int t_concurrency(const struct test *t)
{
	enum { SHARED = 4, OWN = 2, N = SHARED + OWN };
	struct worker w[N];
	long pins = 0, unpins = 0, copies = 0;
	uint64_t bytes = 0;
	struct moex_device *md;
	struct stats s0;
	int i, started = 0;

	(void)t;
	memset(w, 0, sizeof(w));
	STATS(0, &s0);
	OPEN_DEV(0, &md);
	for (i = 0; i < N; i++) {
		if (i < SHARED)
			w[i].md = md;
		else
			OPEN_DEV(0, &w[i].md);
		w[i].a = buf_4k(WORKER_LEN);
		w[i].b = buf_4k(WORKER_LEN);
		CHECK(w[i].a && w[i].b, "mmap: %s", strerror(errno));
		fill_random(w[i].a, WORKER_LEN);
		w[i].rng = rnd() | 1;
	}
	for (i = 0; i < N; i++) {
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]))
			break;
		started++;
	}
	for (i = 0; i < started; i++)
		pthread_join(w[i].th, NULL);
	CHECK(started == N, "pthread_create failed after %d threads", started);
	for (i = 0; i < N; i++) {
		CHECK(!w[i].err[0], "thread %d (%s fd): %s", i,
		      i < SHARED ? "shared" : "own", w[i].err);
		pins += w[i].pins;
		unpins += w[i].unpins;
		copies += w[i].copies;
		bytes += w[i].bytes;
	}
	note("concurrency: %ld pins, %ld unpins, %ld copies (%llu bytes) on %d threads",
	     pins, unpins, copies, (unsigned long long)bytes, N);
	for (i = 0; i < N; i++)
		if (w[i].md != md)
			mdev_close(w[i].md);
	mdev_close(md);
	WAIT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = pins, [ST_UNPIN_CALLS] = unpins,
				 [ST_COPY_CALLS] = copies,
				 [ST_COPY_BYTES] = (long long)bytes), 10000);
	return T_PASS;
}

/*
 * Several threads UNPIN the same handle at once while another copies from
 * it: exactly one UNPIN wins each round, the copy either works or finds no
 * handle, and the counters say exactly that.
 */
#define RACE_ROUNDS	60
#define RACE_UNPINNERS	3

struct race {
	struct moex_device *md;
	uint32_t h, hdst;
	unsigned char *src, *dst;
	pthread_barrier_t start, done;
	int wins[RACE_ROUNDS];
	long copies;
	char err[256];
};

static void *race_unpinner(void *arg)
{
	struct race *r = arg;
	int round, err;

	for (round = 0; round < RACE_ROUNDS; round++) {
		pthread_barrier_wait(&r->start);
		err = do_unpin(r->md, r->h);
		if (!err)
			__atomic_add_fetch(&r->wins[round], 1, __ATOMIC_SEQ_CST);
		else if (err != ENOENT && !r->err[0])
			snprintf(r->err, sizeof(r->err), "UNPIN: %s", errname(err));
		pthread_barrier_wait(&r->done);
	}
	return NULL;
}

static void *race_copier(void *arg)
{
	struct race *r = arg;
	int round, err;

	for (round = 0; round < RACE_ROUNDS; round++) {
		memset(r->dst, 0, 8192);
		pthread_barrier_wait(&r->start);
		err = do_copy(r->md, r->h, r->hdst, 0, 0, 8192);
		if (!err) {
			r->copies++;
			if (memcmp(r->dst, r->src, 8192) && !r->err[0])
				snprintf(r->err, sizeof(r->err),
					 "COPY racing UNPIN wrote wrong bytes");
		} else if (err != ENOENT && !r->err[0]) {
			snprintf(r->err, sizeof(r->err), "COPY: %s", errname(err));
		}
		pthread_barrier_wait(&r->done);
	}
	return NULL;
}

static int t_unpin_race(const struct test *t)
{
	pthread_t th[RACE_UNPINNERS + 1];
	struct race *r;
	struct stats s0;
	int i, round, started = 0, rc = T_PASS;

	(void)t;
	r = calloc(1, sizeof(*r));
	CHECK(r, "calloc");
	r->md = mdev_open(0);
	r->src = buf_4k(64 * KIB);
	r->dst = buf_4k(64 * KIB);
	if (!r->md || !r->src || !r->dst) {
		free(r);
		return FAIL("setup: %s", strerror(errno));
	}
	fill_random(r->src, 64 * KIB);
	STATS(0, &s0);
	i = do_pin(r->md, r->dst, 64 * KIB, 0, &r->hdst);
	if (i) {
		free(r);
		return FAIL("REGION_PIN: %s", errname(i));
	}
	pthread_barrier_init(&r->start, NULL, RACE_UNPINNERS + 2);
	pthread_barrier_init(&r->done, NULL, RACE_UNPINNERS + 2);
	for (i = 0; i < RACE_UNPINNERS + 1; i++) {
		if (pthread_create(&th[i], NULL,
				   i < RACE_UNPINNERS ? race_unpinner : race_copier, r))
			break;
		started++;
	}
	if (started < RACE_UNPINNERS + 1) {
		/* cannot run the rounds: leak the stuck threads' barrier */
		return FAIL("pthread_create failed after %d threads", started);
	}
	for (round = 0; round < RACE_ROUNDS; round++) {
		int err = do_pin(r->md, r->src, 64 * KIB, 0, &r->h);

		if (err && !r->err[0])
			snprintf(r->err, sizeof(r->err), "REGION_PIN: %s",
				 errname(err));
		pthread_barrier_wait(&r->start);
		pthread_barrier_wait(&r->done);
	}
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&r->start);
	pthread_barrier_destroy(&r->done);
	if (r->err[0])
		rc = FAIL("%s", r->err);
	for (round = 0; round < RACE_ROUNDS && rc == T_PASS; round++)
		if (r->wins[round] != 1)
			rc = FAIL("round %d: %d UNPINs of one handle succeeded, expected 1",
				  round, r->wins[round]);
	if (rc == T_PASS) {
		long copies = r->copies;

		note("unpin race: %ld of %d copies ran before the handle went",
		     copies, RACE_ROUNDS);
		rc = stats_expect_at(__FILE__, __LINE__, 0, &s0,
				     DELTA([ST_PIN_CALLS] = RACE_ROUNDS + 1,
					   [ST_UNPIN_CALLS] = RACE_ROUNDS,
					   [ST_COPY_CALLS] = copies,
					   [ST_COPY_BYTES] = copies * 8192,
					   [ST_PINNED_BYTES] = 64 * KIB,
					   [ST_PINNED_REGIONS] = 1),
				     5000);
	}
	free(r);
	return rc;
}

const struct test suite_copy_tests[] = {
	{ "copy_roundtrip_cpu", t_copy_roundtrip, DEV_CPU, TF_MODULE },
	{ "copy_roundtrip_edu", t_copy_roundtrip, DEV_EDU, TF_MODULE },
	{ "copy_then_unpin_cpu", t_copy_then_unpin, DEV_CPU, TF_MODULE },
	{ "copy_then_unpin_edu", t_copy_then_unpin, DEV_EDU, TF_MODULE },
	{ "copy_same_region_cpu", t_copy_same_region, DEV_CPU, TF_MODULE },
	{ "copy_same_region_edu", t_copy_same_region, DEV_EDU, TF_MODULE },
	{ "copy_from_readonly_cpu", t_copy_from_readonly, DEV_CPU, TF_MODULE },
	{ "copy_from_readonly_edu", t_copy_from_readonly, DEV_EDU, TF_MODULE },
	{ "copy_seen_through_dmabuf_cpu", t_copy_dmabuf_view, DEV_CPU, TF_MODULE },
	{ "copy_seen_through_dmabuf_edu", t_copy_dmabuf_view, DEV_EDU, TF_MODULE },
	{ "concurrency_mixed_ops", t_concurrency, NULL, TF_MODULE },
	{ "concurrency_unpin_race", t_unpin_race, NULL, TF_MODULE },
	{ NULL, NULL, NULL, 0 }
};
