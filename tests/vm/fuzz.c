// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-fuzz: a bounded, seeded fuzzer and a stress run of moex.ko, in
 * the test VM (issue 6, items 4 and 5).
 *
 * Loads the module (--module PATH, default /moex/moex.ko), then:
 *
 * - fuzz: --seed S (default 1) and --iters N (default 300000) random
 *   commands, each through ioctl(2) or a raw uring_cmd (SQE128 | CQE32
 *   ring; sometimes a 64-byte SQE ring, which must answer -EINVAL): valid
 *   and malformed structs (reserved/pad/flag bits, edge lengths and
 *   offsets, handles of another open file, stale handles, bogus out_addr,
 *   unknown commands), pins of small buffers (read-only ones, ones
 *   munmapped after pinning), copies, exports, and closes racing with a
 *   second thread. Every result must be success or a documented errno.
 *   Then everything is closed and the stats must be back at baseline and
 *   VmPin 0. Prints the per-command errno histogram.
 * - stress: --threads N (default 4) threads for --secs S (default 15)
 *   pinning, unpinning, copying (ioctl and libmoex queue), exporting and
 *   closing on moex0 (and moex1 if it is the edu device, with few copies),
 *   then --rounds R (default 5) forked children doing the same, each
 *   killed with SIGKILL at a random moment; then stats at baseline.
 * - rmmod.
 *
 * Prints "ok NAME", "FAIL NAME: WHY" or "SKIP NAME: WHY" per test and
 * "vm-fuzz: N passed, N failed, N skipped"; exits 0 iff nothing failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/moex.h>

#include "moex.h"
#include "report.h"
#include "vmlib.h"

#define PAGE		4096UL
#define MAXERR		134


/* ---- PRNG (splitmix64), one state per thread ---------------------------- */

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned int rn(uint64_t *s, unsigned int n)
{
	return n ? (unsigned int)(rnd(s) % n) : 0;
}

static bool chance(uint64_t *s, unsigned int pct)
{
	return rn(s, 100) < pct;
}

/* ---- results --------------------------------------------------------------- */

/* The errnos the documentation names for moex commands. */
static bool errno_allowed(int e)
{
	switch (e) {
	case EINVAL: case ENOENT: case ERANGE: case EACCES: case EFAULT:
	case ENOMEM: case ENOTTY: case EBADF: case EOPNOTSUPP: case EAGAIN:
	case EBUSY: case ENODEV:
	case EOVERFLOW:	/* REGION_PIN of a wrapping range (moex.rst) */
	case E2BIG:	/* REGION_PIN of 2^32 pages or more (moex.rst) */
		return true;
	}
	return false;
}

enum { C_INFO, C_PIN, C_UNPIN, C_RINFO, C_EXPORT, C_COPY, C_NOP, C_UNKNOWN,
       C_SQE64, NCMD };
static const char *const cmd_names[NCMD] = {
	"INFO", "REGION_PIN", "REGION_UNPIN", "REGION_INFO", "REGION_EXPORT",
	"COPY", "NOP", "unknown", "sqe64",
};

/* [cmd][0 ioctl, 1 uring, 2 close race][errno, 0 = success] */
static atomic_long hist[NCMD][3][MAXERR];
static atomic_int bad_results;
static char bad_first[256];
static pthread_mutex_t bad_lock = PTHREAD_MUTEX_INITIALIZER;

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void bad(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&bad_lock);
	if (atomic_fetch_add(&bad_results, 1) < 60) {
		va_start(ap, fmt);
		vsnprintf(bad_first, sizeof(bad_first), fmt, ap);
		va_end(ap);
		printf("  # bad: %s\n", bad_first);
	}
	pthread_mutex_unlock(&bad_lock);
}

/*
 * Record result @e (0 or a positive errno) of command @c on @path; anything
 * outside the documented set is a bad result.
 */
static void note_res(int c, int path, int e, uint64_t iter, const char *what)
{
	const char *how = path == 2 ? "race" : path ? "uring" : "ioctl";

	if (e < 0 || e >= MAXERR) {
		bad("iter %llu %s %s %s: result %d", (unsigned long long)iter,
		    cmd_names[c], how, what, e);
		return;
	}
	if (e && !errno_allowed(e))
		bad("iter %llu %s %s %s: errno %d (%s)",
		    (unsigned long long)iter, cmd_names[c], how, what, e,
		    strerror(e));
	atomic_fetch_add(&hist[c][path][e], 1);
}

static const char *ename(int e)
{
	static const struct { int e; const char *n; } t[] = {
		{ 0, "ok" }, { EINVAL, "EINVAL" }, { ENOENT, "ENOENT" },
		{ ERANGE, "ERANGE" }, { EACCES, "EACCES" }, { EFAULT, "EFAULT" },
		{ ENOMEM, "ENOMEM" }, { ENOTTY, "ENOTTY" }, { EBADF, "EBADF" },
		{ EOPNOTSUPP, "EOPNOTSUPP" }, { EAGAIN, "EAGAIN" },
		{ EBUSY, "EBUSY" }, { ENODEV, "ENODEV" },
		{ EOVERFLOW, "EOVERFLOW" }, { E2BIG, "E2BIG" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].e == e)
			return t[i].n;
	return strerror(e);
}

static void print_hist(void)
{
	int c, p, e;

	for (c = 0; c < NCMD; c++) {
		for (p = 0; p < 3; p++) {
			char line[512];
			int n = 0;

			for (e = 0; e < MAXERR; e++) {
				long v = atomic_load(&hist[c][p][e]);

				if (v && n < (int)sizeof(line) - 40)
					n += snprintf(line + n,
						      sizeof(line) - n,
						      " %s=%ld", ename(e), v);
			}
			if (n)
				printf("  # %-13s %-5s%s\n", cmd_names[c],
				       p == 2 ? "race" : p ? "uring" : "ioctl",
				       line);
		}
	}
}

/* ---- stats ------------------------------------------------------------------ */

static int read_stats(int dev, struct stats *s)
{
	char why[256];

	return stats_read_raw(dev, s, why, sizeof(why)) ? -EIO : 0;
}

/* Wait (up to @secs) until @dev has nothing pinned and @files open files. */
static bool wait_baseline(int dev, long long files, int secs, struct stats *s)
{
	uint64_t t0 = now_ms();

	for (;;) {
		if (!read_stats(dev, s) && !s->v[ST_PINNED_BYTES] &&
		    !s->v[ST_PINNED_REGIONS] && s->v[ST_OPEN_FILES] == files)
			return true;
		if (now_ms() - t0 > (uint64_t)secs * 1000)
			return false;
		sleep_ms(20);
	}
}

static long long vmpin_kb(void)
{
	char buf[4096], *p;

	if (read_file("/proc/self/status", buf, sizeof(buf)) < 0)
		return -1;
	p = strstr(buf, "VmPin:");
	return p ? strtoll(p + 6, NULL, 10) : -1;
}

/* ---- raw uring_cmd ------------------------------------------------------- */

static int ring_init(struct io_uring *ring, unsigned int entries,
		     unsigned int flags)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	return io_uring_queue_init_params(entries, ring, &p);
}

/*
 * One uring_cmd: @area is the whole 80-byte command area (16 bytes on a
 * 64-byte SQE ring). The CQE's res, or -ETIMEDOUT / a submit error, as a
 * negative value; *big gets big_cqe[0] on a CQE32 ring.
 */
static int uring_cmd(struct io_uring *ring, int fd, uint32_t op,
		     const struct moex_uring_cmd *area, bool fixed,
		     unsigned int buf_index, uint64_t *big)
{
	struct __kernel_timespec ts = { .tv_sec = 60 };
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	bool s128 = ring->flags & IORING_SETUP_SQE128;
	int ret;

	if (!sqe)
		return -ENOSPC;
	memset(sqe, 0, s128 ? 128 : 64);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	sqe->cmd_op = op;
	sqe->user_data = 42;
	if (fixed) {
		sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
		sqe->buf_index = buf_index;
	}
	memcpy(sqe->cmd, area, s128 ? sizeof(*area) : 16);
	ret = io_uring_submit(ring);
	if (ret != 1)
		return ret < 0 ? ret : -EIO;
	ret = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	if (ret)
		return ret == -ETIME ? -ETIMEDOUT : ret;
	ret = cqe->res;
	if (big)
		*big = (ring->flags & IORING_SETUP_CQE32) ? cqe->big_cqe[0] : 0;
	io_uring_cqe_seen(ring, cqe);
	return ret;
}

/* ---- fuzz state ------------------------------------------------------------- */

#define NFILES		2
#define MAXH		96
#define NBUF		24
#define MAXEXP		16

struct fbuf {
	unsigned char *p;
	size_t len;
	bool ro;
};

struct ffile {
	int fd;
	uint32_t live[MAXH];	/* handles pinned on this file */
	int nlive;
	uint32_t stale[MAXH];	/* handles unpinned (ring buffer) */
	int nstale;
};

static struct {
	uint64_t seed;
	struct ffile f[NFILES];
	struct fbuf buf[NBUF];
	unsigned char *scratch;	/* 2 pages rw, then a hole of 2 pages */
	unsigned char *hole;	/* PROT_NONE, never mapped */
	unsigned char *rop;	/* a read-only page */
	int exp[MAXEXP];
	int nexp;
	int pipefd[2];
	struct io_uring ring, ring64;
	bool have_ring64;
	unsigned char *fixbuf;	/* registered on ring, 2 pages */
	uint64_t iter;
} F;

static void add_live(struct ffile *f, uint32_t h)
{
	if (f->nlive < MAXH)
		f->live[f->nlive++] = h;
	else
		bad("too many live handles"); /* cannot happen: bounded below */
}

static void make_stale(struct ffile *f, uint32_t h)
{
	int i;

	for (i = 0; i < f->nlive; i++) {
		if (f->live[i] == h) {
			f->live[i] = f->live[--f->nlive];
			break;
		}
	}
	f->stale[f->nstale++ % MAXH] = h;
}

static void add_exp(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0 || !(fl & FD_CLOEXEC))
		bad("iter %llu: exported fd %d not O_CLOEXEC (%d)",
		    (unsigned long long)F.iter, fd, fl);
	if (F.nexp == MAXEXP) {
		close(F.exp[0]);
		F.exp[0] = F.exp[--F.nexp];
	}
	F.exp[F.nexp++] = fd;
}

/* A handle to use: live here, live on another file, stale, or junk. */
static uint32_t pick_handle(struct ffile *f)
{
	uint64_t *s = &F.seed;
	struct ffile *o = &F.f[rn(s, NFILES)];

	switch (rn(s, 10)) {
	case 0: case 1: case 2: case 3: case 4:
		if (f->nlive)
			return f->live[rn(s, f->nlive)];
		return 1;
	case 5:
		return o->nlive ? o->live[rn(s, o->nlive)] : 0;
	case 6:
		return f->nstale ? f->stale[rn(s, f->nstale < MAXH ?
						   f->nstale : MAXH)] : 0;
	case 7:
		return 0;
	case 8: {
		static const uint32_t e[] = { 0x7fffffff, 0x80000000,
					      0xffffffff, 2, 1000 };
		return e[rn(s, 5)];
	}
	default:
		return (uint32_t)rnd(s);
	}
}

/* Edge values for 64-bit lengths and offsets around @len. */
static uint64_t pick_u64(uint64_t len)
{
	uint64_t *s = &F.seed;

	switch (rn(s, 12)) {
	case 0: return 0;
	case 1: return UINT64_MAX;
	case 2: return UINT64_MAX - rn(s, 8192);
	case 3: return len;
	case 4: return len + 1;
	case 5: return len ? len - 1 : 0;
	case 6: return 1ULL << rn(s, 64);
	case 7: return (uint64_t)INT64_MAX + rn(s, 3);
	case 8: return rnd(s);
	default: return len ? rnd(s) % (len + 1) : rn(s, 8192);
	}
}

/* Bogus and good user addresses that cannot hurt this process. */
static uint64_t pick_addr(bool for_output)
{
	uint64_t *s = &F.seed;

	switch (rn(s, 9)) {
	case 0: return 0;
	case 1: return (uintptr_t)F.hole + rn(s, 2 * PAGE);
	case 2: return (uintptr_t)F.scratch + 2 * PAGE - rn(s, 72);
	case 3: return 0xffff888000000000ULL + PAGE * rn(s, 1024);
	case 4: return 0x8000000000000000ULL;	/* non-canonical */
	case 5: return UINT64_MAX - rn(s, 128);
	case 6: return for_output ? (uintptr_t)F.rop : (uintptr_t)F.scratch;
	default: return (uintptr_t)F.scratch + (rn(s, 2) ? 0 : rn(s, PAGE));
	}
}

/* Mutations of a payload struct's tail fields. */
struct mut {
	bool any;	/* something changed on purpose */
	bool only_rsv;	/* only a reserved/pad field or unknown flag bit */
};

static void set_bit_field(void *field, size_t size, struct mut *m, bool rsv)
{
	uint64_t v = 1ULL << rn(&F.seed, size * 8);

	if (size == 4) {
		uint32_t x;

		memcpy(&x, field, 4);
		x |= (uint32_t)v;
		memcpy(field, &x, 4);
	} else {
		uint64_t x;

		memcpy(&x, field, 8);
		x |= v;
		memcpy(field, &x, 8);
	}
	if (!m->any)
		m->only_rsv = rsv;
	else
		m->only_rsv = false;
	m->any = true;
}

/* ---- one fuzz step ----------------------------------------------------------- */

static void pick_buf(struct fbuf **b)
{
	*b = &F.buf[rn(&F.seed, NBUF)];
}

/*
 * Issue @op with @payload (@len bytes, the rest of the area zero unless a
 * mutation puts a stray byte there) on @f by ioctl or uring; records the
 * result and returns it (0 / handle / fd, or a negative errno) and fills
 * @payload with the ioctl's output.
 */
static int issue(int c, struct ffile *f, uint32_t op, void *payload,
		 size_t len, bool has_out, struct mut *m, bool *via_uring)
{
	uint64_t *s = &F.seed;
	struct moex_uring_cmd area;
	bool uring = chance(s, 50), fixed = false;
	unsigned int bi = 0;
	int fd = f->fd, ret, e;
	uint64_t big = 0, arg;
	const char *what = m->any ? "mutated" : "plain";

	/* the file: mostly this one, sometimes a bad or foreign one */
	switch (rn(s, 40)) {
	case 0: fd = -1; break;
	case 1: fd = 1000000; break;
	case 2: fd = F.pipefd[0]; break;
	default: break;
	}
	if (fd != f->fd)
		m->only_rsv = false;
	*via_uring = uring;
	if (!uring) {
		arg = (uintptr_t)payload;
		if (chance(s, 4)) {
			arg = pick_addr(has_out);
			m->only_rsv = false;
			what = "bad-arg";
			/* whatever lands in scratch must not be a valid
			 * command */
			memset(F.scratch, 0xff, 2 * PAGE);
		}
		ret = ioctl(fd, op, (void *)(uintptr_t)arg);
		e = ret < 0 ? errno : 0;
		if (!ret && arg != (uintptr_t)payload && c != C_INFO &&
		    c != C_NOP)
			bad("iter %llu %s ioctl on zeroed/bogus memory %#llx worked",
			    (unsigned long long)F.iter, cmd_names[c],
			    (unsigned long long)arg);
		if (!ret && arg != (uintptr_t)payload)
			return -EPERM;	/* not ours to interpret */
		if (ret > 0)
			bad("iter %llu %s ioctl returned %d",
			    (unsigned long long)F.iter, cmd_names[c], ret);
		note_res(c, 0, e, F.iter, what);
		return ret < 0 ? -e : 0;
	}

	memset(&area, 0, sizeof(area));
	memcpy(area.payload, payload, len);
	if (has_out && chance(s, 60))
		area.out_addr = chance(s, 70) ? (uintptr_t)F.scratch :
						pick_addr(true);
	else if (chance(s, 3))
		area.out_addr = pick_addr(true);
	if (area.out_addr && (!has_out || area.out_addr != (uintptr_t)F.scratch))
		m->only_rsv = false;
	if (chance(s, 3) && len < sizeof(area.payload)) {
		/* a stray byte after the struct */
		((unsigned char *)area.payload)[len + rn(s, sizeof(area.payload) - len)] =
			(unsigned char)(1 + rn(s, 255));
		m->only_rsv = false;
		what = "stray-byte";
	}
	if (c == C_COPY && chance(s, 15)) {
		fixed = true;
		bi = rn(s, 3);
		m->only_rsv = false;
	}
	if (chance(s, 3)) {
		/* a 64-byte SQE ring refuses every command */
		ret = uring_cmd(&F.ring64, fd, op, &area, false, 0, NULL);
		e = ret < 0 ? -ret : 0;
		if (ret != -EINVAL && fd == f->fd) {
			bad("iter %llu %s on a 64-byte SQE ring: %d",
			    (unsigned long long)F.iter, cmd_names[c], ret);
			if (ret > 0 && c == C_PIN)
				add_live(f, (uint32_t)ret);
		}
		note_res(C_SQE64, 1, e, F.iter, what);
		return ret < 0 ? ret : -EIO;
	}
	ret = uring_cmd(&F.ring, fd, op, &area, fixed, bi, &big);
	if (big)
		bad("iter %llu %s: big_cqe[0] %llu", (unsigned long long)F.iter,
		    cmd_names[c], (unsigned long long)big);
	e = ret < 0 ? -ret : 0;
	note_res(c, 1, e, F.iter, what);
	if (ret >= 0 && area.out_addr == (uintptr_t)F.scratch && has_out)
		memcpy(payload, F.scratch, len);
	return ret;
}

static void expect_rsv(int c, const struct mut *m, bool uring, int ret)
{
	if (m->any && m->only_rsv && ret != -EINVAL)
		bad("iter %llu %s %s with a reserved/flag bit set: %d, want %d",
		    (unsigned long long)F.iter, cmd_names[c],
		    uring ? "uring" : "ioctl", ret, -EINVAL);
}

static void fuzz_pin(struct ffile *f)
{
	uint64_t *s = &F.seed;
	struct moex_region_pin p;
	struct mut m = { 0 };
	struct fbuf *b;
	bool uring, unmap_after = false;
	unsigned char *fresh = NULL;
	size_t flen = 0;
	int ret;

	if (f->nlive >= MAXH - 2) {
		/* bounded: unpin the oldest instead */
		struct moex_region_unpin u = { .handle = f->live[0] };

		if (ioctl(f->fd, MOEX_IOCTL_REGION_UNPIN, &u))
			bad("unpin of live handle %u: %s", u.handle,
			    strerror(errno));
		make_stale(f, u.handle);
		return;
	}
	pick_buf(&b);
	memset(&p, 0, sizeof(p));
	p.addr = (uintptr_t)b->p;
	p.length = b->len;
	p.flags = b->ro ? MOEX_PIN_READONLY : (chance(s, 10) ? MOEX_PIN_READONLY : 0);
	if (chance(s, 10)) {
		/* a fresh buffer, munmapped once pinned */
		flen = PAGE * (1 + rn(s, 3));
		fresh = mmap(NULL, flen, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (fresh == MAP_FAILED)
			fresh = NULL;
		if (fresh) {
			p.addr = (uintptr_t)fresh;
			p.length = flen;
			p.flags = 0;
			unmap_after = true;
		}
	}
	if (chance(s, 30)) {
		switch (rn(s, 6)) {
		case 0: set_bit_field(&p.flags, 4, &m, true);
			if (!(p.flags & ~MOEX_PIN_FLAGS_ALL))
				m.any = m.only_rsv = false;
			break;
		case 1: set_bit_field(&p.reserved[rn(s, 2)], 8, &m, true); break;
		case 2: p.addr = pick_addr(false); m.any = true; break;
		case 3: p.length = pick_u64(b->len) & (chance(s, 50) ? ~(PAGE - 1) : ~0ULL);
			m.any = true; break;
		case 4: p.addr += rn(s, PAGE); m.any = true; break;
		default: p.handle = (uint32_t)rnd(s); break; /* out: ignored */
		}
	}
	ret = issue(C_PIN, f, MOEX_IOCTL_REGION_PIN, &p, sizeof(p), true, &m,
		    &uring);
	expect_rsv(C_PIN, &m, uring, ret);
	if (ret >= 0) {
		uint32_t h = uring ? (uint32_t)ret : p.handle;

		if (uring && (ret < 1 || ret > 0x7fffffff))
			bad("iter %llu PIN handle %d", (unsigned long long)F.iter, ret);
		if (!h)
			bad("iter %llu PIN handle 0 (%s ret %d addr %#llx len %#llx flags %#x)",
			    (unsigned long long)F.iter, uring ? "uring" : "ioctl",
			    ret, (unsigned long long)p.addr,
			    (unsigned long long)p.length, p.flags);
		else if (f->fd >= 0)
			add_live(f, h);
	}
	if (unmap_after)
		munmap(fresh, flen);
}

static void fuzz_unpin(struct ffile *f)
{
	struct moex_region_unpin u;
	struct mut m = { 0 };
	bool uring;
	int ret;

	memset(&u, 0, sizeof(u));
	u.handle = pick_handle(f);	/* 0 too: test_unpin_zero's bug */
	if (chance(&F.seed, 20)) {
		if (chance(&F.seed, 50))
			set_bit_field(&u.flags, 4, &m, true);
		else
			set_bit_field(&u.reserved[rn(&F.seed, 2)], 8, &m, true);
	}
	ret = issue(C_UNPIN, f, MOEX_IOCTL_REGION_UNPIN, &u, sizeof(u), false,
		    &m, &uring);
	expect_rsv(C_UNPIN, &m, uring, ret);
	if (ret == 0) {
		int i;
		bool mine = false;

		for (i = 0; i < f->nlive; i++)
			mine |= f->live[i] == u.handle;
		if (!mine)
			bad("iter %llu UNPIN of handle %u not live here worked",
			    (unsigned long long)F.iter, u.handle);
		make_stale(f, u.handle);
	}
}

static void fuzz_rinfo(struct ffile *f)
{
	struct moex_region_info r;
	struct mut m = { 0 };
	bool uring;
	int ret;

	memset(&r, 0, sizeof(r));
	r.handle = pick_handle(f);
	if (chance(&F.seed, 20)) {
		switch (rn(&F.seed, 3)) {
		case 0: set_bit_field(&r.flags, 4, &m, true); break;
		case 1: set_bit_field(&r.reserved[rn(&F.seed, 2)], 8, &m, true); break;
		default: r.pad = 7; r.addr = rnd(&F.seed); break; /* out */
		}
	}
	ret = issue(C_RINFO, f, MOEX_IOCTL_REGION_INFO, &r, sizeof(r), true,
		    &m, &uring);
	expect_rsv(C_RINFO, &m, uring, ret);
}

static void fuzz_export(struct ffile *f)
{
	struct moex_region_export x;
	struct mut m = { 0 };
	bool uring;
	int ret, fd = -1;

	memset(&x, 0, sizeof(x));
	x.handle = pick_handle(f);
	if (chance(&F.seed, 20)) {
		switch (rn(&F.seed, 3)) {
		case 0: set_bit_field(&x.flags, 4, &m, true); break;
		case 1: set_bit_field(&x.pad, 4, &m, true); break;
		default: set_bit_field(&x.reserved[rn(&F.seed, 2)], 8, &m, true); break;
		}
	}
	x.fd = (uint32_t)rnd(&F.seed);	/* out: ignored */
	ret = issue(C_EXPORT, f, MOEX_IOCTL_REGION_EXPORT, &x, sizeof(x), true,
		    &m, &uring);
	expect_rsv(C_EXPORT, &m, uring, ret);
	if (ret >= 0)
		fd = uring ? ret : (int)x.fd;
	if (ret >= 0 && fd < 0)
		bad("iter %llu EXPORT fd %d", (unsigned long long)F.iter, fd);
	else if (fd >= 0) {
		if (chance(&F.seed, 50))
			close(fd);
		else
			add_exp(fd);
	}
}

static void fuzz_copy(struct ffile *f)
{
	uint64_t *s = &F.seed;
	struct moex_copy c;
	struct mut m = { 0 };
	bool uring;
	int ret;

	memset(&c, 0, sizeof(c));
	c.src_handle = pick_handle(f);
	c.dst_handle = pick_handle(f);
	c.length = 1 + rn(s, 3 * PAGE);
	c.src_offset = rn(s, 2 * PAGE);
	c.dst_offset = rn(s, 2 * PAGE);
	if (chance(s, 35)) {
		switch (rn(s, 8)) {
		case 0: c.length = pick_u64(4 * PAGE); break;
		case 1: c.src_offset = pick_u64(4 * PAGE); break;
		case 2: c.dst_offset = pick_u64(4 * PAGE); break;
		case 3: c.src_offset = UINT64_MAX - rn(s, 64);
			c.length = 1 + rn(s, 128); break;
		case 4: set_bit_field(&c.pad, 4, &m, true); break;
		case 5: set_bit_field(&c.reserved[rn(s, 2)], 8, &m, true); break;
		case 6: c.flags = (uint32_t)(1 + rn(s, 3));
			c.src_offset = (uintptr_t)F.fixbuf + rn(s, PAGE);
			if (c.flags & MOEX_COPY_SRC_FIXED)
				c.src_handle = 0;
			else
				c.dst_handle = 0;
			break;
		default: c.dst_handle = c.src_handle; break;
		}
		m.any = true;
	}
	ret = issue(C_COPY, f, MOEX_IOCTL_COPY, &c, sizeof(c), false, &m,
		    &uring);
	expect_rsv(C_COPY, &m, uring, ret);
}

static void fuzz_misc(struct ffile *f, int which)
{
	uint64_t *s = &F.seed;
	struct mut m = { 0 };
	bool uring;
	int ret;

	if (which == 0) {
		struct moex_info in;

		memset(&in, 0, sizeof(in));
		if (chance(s, 20)) {
			if (chance(s, 50))
				set_bit_field(&in.flags, 4, &m, true);
			else
				set_bit_field(&in.reserved[rn(s, 2)], 8, &m, true);
		}
		ret = issue(C_INFO, f, MOEX_IOCTL_INFO, &in, sizeof(in), true,
			    &m, &uring);
		expect_rsv(C_INFO, &m, uring, ret);
	} else if (which == 1) {
		struct moex_nop n;

		memset(&n, 0, sizeof(n));
		if (chance(s, 30)) {
			if (chance(s, 50))
				set_bit_field(&n.flags, 4, &m, true);
			else if (chance(s, 50))
				set_bit_field(&n.pad, 4, &m, true);
			else
				set_bit_field(&n.reserved[rn(s, 2)], 8, &m, true);
		}
		ret = issue(C_NOP, f, MOEX_IOCTL_NOP, &n, sizeof(n), false, &m,
			    &uring);
		expect_rsv(C_NOP, &m, uring, ret);
	} else {
		/* unknown commands: moex magic with another nr, size or dir */
		unsigned char pl[72];
		uint32_t op;

		memset(pl, 0, sizeof(pl));
		switch (rn(s, 4)) {
		case 0: op = _IOWR(MOEX_IOC_MAGIC, 7 + rn(s, 249), struct moex_nop); break;
		case 1: op = _IOC(_IOC_READ | _IOC_WRITE, MOEX_IOC_MAGIC, rn(s, 7),
				  8 * rn(s, 10)); break;
		case 2: op = _IOR(MOEX_IOC_MAGIC, rn(s, 7), struct moex_copy); break;
		default: op = _IOC(rn(s, 4), MOEX_IOC_MAGIC, rn(s, 12), rn(s, 80)); break;
		}
		if (op == MOEX_IOCTL_INFO || op == MOEX_IOCTL_REGION_PIN ||
		    op == MOEX_IOCTL_REGION_UNPIN || op == MOEX_IOCTL_REGION_INFO ||
		    op == MOEX_IOCTL_REGION_EXPORT || op == MOEX_IOCTL_COPY ||
		    op == MOEX_IOCTL_NOP)
			return;
		ret = issue(C_UNKNOWN, f, op, pl, sizeof(pl), false, &m, &uring);
		if (ret == 0 || ret > 0)
			bad("iter %llu unknown cmd %#x succeeded",
			    (unsigned long long)F.iter, op);
	}
}

/* ---- close racing with use ---------------------------------------------- */

struct racer {
	int fd;
	uint32_t h1, h2;
	uint64_t seed;
	atomic_int stop;
	struct io_uring *ring;
	long ops;
};

static void *race_thread(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&r->stop)) {
		struct moex_copy c = {
			.src_handle = r->h1, .dst_handle = r->h2,
			.length = 1 + rn(&r->seed, PAGE),
		};
		struct moex_region_info ri = { .handle = r->h1 };
		struct moex_region_export x = { .handle = r->h2 };
		struct moex_region_unpin u = { .handle = r->h1 };
		struct moex_uring_cmd area;
		int ret, e, k = rn(&r->seed, 5);

		memset(&area, 0, sizeof(area));
		if (k == 4) {
			memcpy(area.payload, &c, sizeof(c));
			ret = uring_cmd(r->ring, r->fd, MOEX_IOCTL_COPY, &area,
					false, 0, NULL);
			note_res(C_COPY, 2, ret < 0 ? -ret : 0, 0, "uring");
		} else {
			static const uint32_t ops[4] = {
				MOEX_IOCTL_COPY, MOEX_IOCTL_REGION_INFO,
				MOEX_IOCTL_REGION_EXPORT, MOEX_IOCTL_REGION_UNPIN,
			};
			static const int cs[4] = { C_COPY, C_RINFO, C_EXPORT,
						   C_UNPIN };
			void *p = k == 0 ? (void *)&c : k == 1 ? (void *)&ri :
				  k == 2 ? (void *)&x : (void *)&u;

			ret = ioctl(r->fd, ops[k], p);
			e = ret < 0 ? errno : 0;
			note_res(cs[k], 2, e, 0, "ioctl");
			if (!ret && k == 2)
				close((int)x.fd);
		}
		r->ops++;
	}
	return NULL;
}

/*
 * Open a file, pin two regions, hammer them from a second thread and close
 * the file under it. The racer's results must stay in the documented set;
 * it only closes the fds it exports, and nothing else opens files here
 * meanwhile, so the closed fd number is not reused under it.
 */
static void fuzz_race(unsigned char *a, unsigned char *b, struct io_uring *rr)
{
	struct racer r = { .seed = rnd(&F.seed), .ring = rr };
	struct moex_region_pin p1 = { .addr = (uintptr_t)a, .length = PAGE * 2 };
	struct moex_region_pin p2 = { .addr = (uintptr_t)b, .length = PAGE * 2 };
	pthread_t t;

	r.fd = dev_open_raw(0);
	if (r.fd < 0) {
		bad("race: open: %s", strerror(errno));
		return;
	}
	if (ioctl(r.fd, MOEX_IOCTL_REGION_PIN, &p1) ||
	    ioctl(r.fd, MOEX_IOCTL_REGION_PIN, &p2)) {
		bad("race: pin: %s", strerror(errno));
		close(r.fd);
		return;
	}
	r.h1 = p1.handle;
	r.h2 = p2.handle;
	if (pthread_create(&t, NULL, race_thread, &r)) {
		close(r.fd);
		return;
	}
	usleep(rn(&F.seed, 3000));
	close(r.fd);
	usleep(rn(&F.seed, 300));
	atomic_store(&r.stop, 1);
	pthread_join(t, NULL);
}

static void test_fuzz(uint64_t seed, uint64_t iters)
{
	const char *name = "fuzz";
	struct stats base, now;
	struct io_uring race_ring;
	unsigned char *ra = NULL, *rb = NULL;
	struct iovec iov;
	uint64_t t0 = now_ms();
	long long pin;
	int i, j, ret;
	long races = 0;

	memset(&F, 0, sizeof(F));
	F.seed = seed;
	if (!wait_baseline(0, 0, 10, &base) || vmpin_kb() != 0) {
		fail(name, "not at baseline before the run (VmPin %lld kB)",
		     vmpin_kb());
		return;
	}
	F.scratch = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	F.rop = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	F.fixbuf = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ra = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (F.scratch == MAP_FAILED || F.rop == MAP_FAILED ||
	    F.fixbuf == MAP_FAILED || ra == MAP_FAILED) {
		fail(name, "mmap: %s", strerror(errno));
		return;
	}
	rb = ra + 2 * PAGE;
	/* a hole nothing else can be mapped into: any access faults */
	F.hole = F.scratch + 2 * PAGE;
	mprotect(F.hole, 2 * PAGE, PROT_NONE);
	for (i = 0; i < NBUF; i++) {
		struct fbuf *b = &F.buf[i];

		b->len = PAGE * (1 + i % 4);
		b->ro = i % 5 == 4;
		b->p = mmap(NULL, b->len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (b->p == MAP_FAILED) {
			fail(name, "mmap: %s", strerror(errno));
			return;
		}
		memset(b->p, i, b->len);
		if (b->ro)
			mprotect(b->p, b->len, PROT_READ);
	}
	if (pipe(F.pipefd) || ring_init(&F.ring, 8, IORING_SETUP_SQE128 |
					IORING_SETUP_CQE32) ||
	    ring_init(&race_ring, 8, IORING_SETUP_SQE128) ||
	    ring_init(&F.ring64, 8, 0)) {
		fail(name, "setup: %s", strerror(errno));
		return;
	}
	iov.iov_base = F.fixbuf;
	iov.iov_len = 2 * PAGE;
	ret = io_uring_register_buffers(&F.ring, &iov, 1);
	if (ret) {
		fail(name, "register_buffers: %s", strerror(-ret));
		return;
	}
	for (i = 0; i < NFILES; i++) {
		F.f[i].fd = dev_open_raw(0);
		if (F.f[i].fd < 0) {
			fail(name, "open: %s", strerror(errno));
			return;
		}
	}

	for (F.iter = 0; F.iter < iters; F.iter++) {
		unsigned int k = rn(&F.seed, 100);
		struct ffile *f = &F.f[rn(&F.seed, NFILES)];

		if (k < 22)
			fuzz_pin(f);
		else if (k < 34)
			fuzz_unpin(f);
		else if (k < 42)
			fuzz_rinfo(f);
		else if (k < 52)
			fuzz_export(f);
		else if (k < 80)
			fuzz_copy(f);
		else if (k < 85)
			fuzz_misc(f, 0);
		else if (k < 90)
			fuzz_misc(f, 1);
		else if (k < 96)
			fuzz_misc(f, 2);
		else if (k < 97 && F.nexp) {
			j = rn(&F.seed, F.nexp);
			close(F.exp[j]);
			F.exp[j] = F.exp[--F.nexp];
		} else if (k < 98) {
			/* close a file with its regions, open it again */
			close(f->fd);
			for (j = 0; j < f->nlive; j++)
				f->stale[f->nstale++ % MAXH] = f->live[j];
			f->nlive = 0;
			f->fd = dev_open_raw(0);
			if (f->fd < 0) {
				fail(name, "reopen: %s", strerror(errno));
				return;
			}
		} else if (k < 99) {
			fuzz_race(ra, rb, &race_ring);
			races++;
		} else {
			/* munmap a pool buffer, map it again */
			struct fbuf *b = &F.buf[rn(&F.seed, NBUF)];

			munmap(b->p, b->len);
			b->p = mmap(NULL, b->len, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
				    -1, 0);
			if (b->p == MAP_FAILED) {
				fail(name, "mmap: %s", strerror(errno));
				return;
			}
			if (b->ro)
				mprotect(b->p, b->len, PROT_READ);
		}
	}

	/* close everything */
	for (i = 0; i < NFILES; i++)
		close(F.f[i].fd);
	for (i = 0; i < F.nexp; i++)
		close(F.exp[i]);
	/* fixed buffers count in VmPin too; unregistering is synchronous */
	io_uring_unregister_buffers(&F.ring);
	io_uring_queue_exit(&F.ring);
	io_uring_queue_exit(&F.ring64);
	io_uring_queue_exit(&race_ring);
	close(F.pipefd[0]);
	close(F.pipefd[1]);
	for (i = 0; i < NBUF; i++)
		munmap(F.buf[i].p, F.buf[i].len);
	munmap(F.scratch, 4 * PAGE);
	munmap(F.rop, PAGE);
	munmap(F.fixbuf, 2 * PAGE);
	munmap(ra, 4 * PAGE);

	printf("  # fuzz: seed %llu, %llu iterations, %ld close races, %.1f s\n",
	       (unsigned long long)seed, (unsigned long long)iters, races,
	       (now_ms() - t0) / 1e3);
	print_hist();
	ret = wait_baseline(0, base.v[ST_OPEN_FILES], 30, &now);
	for (i = 0; i < 100 && (pin = vmpin_kb()) != 0; i++)
		sleep_ms(50);
	if (!ret || pin)
		printf("  # after: pinned_bytes %lld pinned_regions %lld open_files %lld (was %lld), VmPin %lld kB\n",
		       now.v[ST_PINNED_BYTES], now.v[ST_PINNED_REGIONS],
		       now.v[ST_OPEN_FILES], base.v[ST_OPEN_FILES], pin);
	if (atomic_load(&bad_results))
		fail(name, "%d bad results, last: %s",
		     atomic_load(&bad_results), bad_first);
	else if (!ret)
		fail(name, "not back at baseline: pinned_bytes %lld pinned_regions %lld open_files %lld (was %lld)",
		     now.v[ST_PINNED_BYTES], now.v[ST_PINNED_REGIONS],
		     now.v[ST_OPEN_FILES], base.v[ST_OPEN_FILES]);
	else if (pin != 0)
		fail(name, "VmPin %lld kB after closing everything", pin);
	else
		ok(name);
}

/*
 * A driver bug the fuzzer found (fixed in driver/region.c): REGION_UNPIN
 * of handle 0 did xa_erase(&mf->regions, 0) on an XA_FLAGS_ALLOC1 xarray,
 * which marks index 0 free, so the next REGION_PIN was given handle 0, a
 * handle the uapi says cannot exist (1 to INT_MAX), and a zeroed struct
 * then named a region.
 */
static void test_unpin_zero(void)
{
	const char *name = "unpin-handle-0";
	unsigned char *b = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
				-1, 0);
	struct moex_region_pin p1 = { .addr = (uintptr_t)b, .length = PAGE };
	struct moex_region_pin p2 = { .addr = (uintptr_t)b + PAGE,
				      .length = PAGE };
	struct moex_region_unpin u = { .handle = 0 };
	int fd = dev_open_raw(0), r1, r2, r3, e3;

	if (fd < 0 || b == MAP_FAILED) {
		fail(name, "setup: %s", strerror(errno));
		return;
	}
	r1 = ioctl(fd, MOEX_IOCTL_REGION_PIN, &p1);
	r3 = ioctl(fd, MOEX_IOCTL_REGION_UNPIN, &u);
	e3 = errno;
	r2 = ioctl(fd, MOEX_IOCTL_REGION_PIN, &p2);
	if (r1 || r2)
		fail(name, "pin: %s", strerror(errno));
	else if (r3 != -1 || e3 != ENOENT)
		fail(name, "UNPIN of handle 0: %d (%s), want ENOENT", r3,
		     strerror(e3));
	else if (p2.handle == 0)
		fail(name, "driver bug: after UNPIN of handle 0 the next PIN got handle 0 (first pin: %u)",
		     p1.handle);
	else
		ok(name);
	close(fd);
	munmap(b, 2 * PAGE);
}

/* ---- stress ------------------------------------------------------------------ */

#define SBUF		6
#define SMAXH		16

struct worker {
	int dev;
	bool edu;
	uint64_t seed;
	uint64_t deadline;	/* now_ms() value, 0 = forever */
	long ops, copies, qcopies, errors;
	char why[160];
};

static void werr(struct worker *w, const char *what, int ret)
{
	if (!w->errors++)
		snprintf(w->why, sizeof(w->why), "moex%d %s: %s", w->dev, what,
			 strerror(-ret));
}

static void *stress_thread(void *arg)
{
	struct worker *w = arg;
	char path[32];
	unsigned char *buf[SBUF];
	size_t blen[SBUF];
	uint32_t h[SMAXH];
	size_t hlen[SMAXH];
	struct moex_device *md = NULL;
	struct moex_queue *q = NULL;
	struct moex_queue_opts o = { .size = sizeof(o), .entries = 8 };
	int nh = 0, i, ret;

	snprintf(path, sizeof(path), "/dev/moex%d", w->dev);
	for (i = 0; i < SBUF; i++) {
		blen[i] = PAGE * (1 + i % 3);
		buf[i] = mmap(NULL, blen[i], PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (buf[i] == MAP_FAILED) {
			werr(w, "mmap", -errno);
			return NULL;
		}
		memset(buf[i], i, blen[i]);
	}
	while (!w->deadline || now_ms() < w->deadline) {
		unsigned int k = rn(&w->seed, 100);

		w->ops++;
		if (!md) {
			ret = moex_open(path, &md);
			if (ret) {
				werr(w, "moex_open", ret);
				md = NULL;
				break;
			}
			ret = moex_queue_create(md, &o, &q);
			if (ret) {
				werr(w, "moex_queue_create", ret);
				q = NULL;
			}
			nh = 0;
			continue;
		}
		if (k < 30 && nh < SMAXH) {
			i = rn(&w->seed, SBUF);
			ret = moex_pin(md, buf[i], blen[i], 0, &h[nh]);
			if (ret)
				werr(w, "pin", ret);
			else
				hlen[nh++] = blen[i];
		} else if (k < 50 && nh) {
			i = rn(&w->seed, nh);
			ret = moex_unpin(md, h[i]);
			if (ret)
				werr(w, "unpin", ret);
			h[i] = h[--nh];
			hlen[i] = hlen[nh];
		} else if (k < 80 && nh >= 2 &&
			   (!w->edu || chance(&w->seed, 10))) {
			unsigned int a = rn(&w->seed, nh), b = rn(&w->seed, nh);
			uint64_t len = w->edu ? 64 + rn(&w->seed, 960) :
				       1 + rn(&w->seed, PAGE);

			if (a == b)
				continue;
			if (len > hlen[a])
				len = hlen[a];
			if (len > hlen[b])
				len = hlen[b];
			if (q && chance(&w->seed, 50)) {
				struct moex_cqe cqe;

				ret = moex_queue_copy(q, h[b], 0, h[a], 0, len,
						      w->ops);
				if (!ret)
					ret = moex_queue_submit(q);
				if (ret == 1) {
					do {
						ret = moex_queue_wait(q, &cqe, 1, 1,
								      30000);
					} while (ret == 0);
					if (ret == 1)
						ret = cqe.res;
					else if (ret >= 0)
						ret = -EIO;
				} else if (ret >= 0) {
					ret = -EIO;
				}
				w->qcopies++;
			} else {
				ret = moex_copy(md, h[b], 0, h[a], 0, len);
				w->copies++;
			}
			if (ret)
				werr(w, "copy", ret);
		} else if (k < 92 && nh) {
			int fd;

			ret = moex_export(md, h[rn(&w->seed, nh)], &fd);
			if (ret)
				werr(w, "export", ret);
			else if (chance(&w->seed, 50))
				close(fd);
			else {
				/* the dma-buf outlives the handle */
				moex_unpin(md, h[0]);
				h[0] = h[--nh];
				hlen[0] = hlen[nh];
				close(fd);
			}
		} else if (k < 96) {
			if (q)
				moex_queue_destroy(q);
			q = NULL;
			moex_close(md);	/* with its regions */
			md = NULL;
		}
	}
	if (q)
		moex_queue_destroy(q);
	if (md)
		moex_close(md);
	for (i = 0; i < SBUF; i++)
		munmap(buf[i], blen[i]);
	return NULL;
}

/* Run @n workers on moex0 (and one on @edu_dev if >= 0) until @deadline. */
static int run_workers(int n, int edu_dev, uint64_t seed, uint64_t deadline,
		       struct worker *w)
{
	pthread_t t[17];
	int i, nt = 0;

	for (i = 0; i < n + (edu_dev >= 0); i++) {
		w[i].dev = i < n ? 0 : edu_dev;
		w[i].edu = i >= n;
		w[i].seed = seed + 0x1000 * (uint64_t)(i + 1);
		w[i].deadline = deadline;
		if (pthread_create(&t[nt], NULL, stress_thread, &w[i]))
			return -1;
		nt++;
	}
	for (i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	return nt;
}

static void test_stress(int nthreads, int secs, int rounds, uint64_t seed,
			int edu_dev)
{
	struct worker w[17];
	struct stats s0, s1, e0, e1;
	long ops = 0, copies = 0, qcopies = 0, errors = 0;
	const char *why = "";
	uint64_t t0 = now_ms();
	int i, nt, r, st;

	memset(w, 0, sizeof(w));
	if (!wait_baseline(0, 0, 10, &s0) ||
	    (edu_dev >= 0 && !wait_baseline(edu_dev, 0, 10, &e0))) {
		fail("stress", "not at baseline before the run");
		return;
	}
	nt = run_workers(nthreads, edu_dev, seed, now_ms() + secs * 1000ULL, w);
	for (i = 0; i < nt; i++) {
		ops += w[i].ops;
		copies += w[i].copies;
		qcopies += w[i].qcopies;
		if (w[i].errors && !errors)
			why = w[i].why;
		errors += w[i].errors;
	}
	printf("  # stress: %d threads%s, %.1f s, %ld ops, %ld ioctl copies, %ld queue copies\n",
	       nthreads, edu_dev >= 0 ? " + 1 on edu" : "",
	       (now_ms() - t0) / 1e3, ops, copies, qcopies);
	if (nt < 0)
		fail("stress", "pthread_create failed");
	else if (errors)
		fail("stress", "%ld errors, first: %s", errors, why);
	else if (!wait_baseline(0, 0, 30, &s1) ||
		 (edu_dev >= 0 && !wait_baseline(edu_dev, 0, 60, &e1)))
		fail("stress", "not back at baseline: moex0 pinned_bytes %lld regions %lld files %lld",
		     s1.v[ST_PINNED_BYTES], s1.v[ST_PINNED_REGIONS],
		     s1.v[ST_OPEN_FILES]);
	else if (vmpin_kb() != 0)
		fail("stress", "VmPin %lld kB", vmpin_kb());
	else
		ok("stress");

	/* forked children doing the same, killed at random moments */
	t0 = now_ms();
	for (r = 0; r < rounds; r++) {
		unsigned int ms = 50 + rn(&seed, 1500);
		pid_t pid = fork();

		if (pid < 0) {
			fail("stress-kill-9", "fork: %s", strerror(errno));
			return;
		}
		if (!pid) {
			memset(w, 0, sizeof(w));
			run_workers(2, edu_dev, seed + r, 0, w);
			_exit(0);
		}
		sleep_ms(ms);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
			fail("stress-kill-9", "round %d: child status %#x", r, st);
			return;
		}
	}
	printf("  # stress-kill-9: %d rounds, %.1f s\n", rounds,
	       (now_ms() - t0) / 1e3);
	if (!wait_baseline(0, 0, 30, &s1) ||
	    (edu_dev >= 0 && !wait_baseline(edu_dev, 0, 60, &e1)))
		fail("stress-kill-9", "not back at baseline: moex0 pinned_bytes %lld regions %lld files %lld",
		     s1.v[ST_PINNED_BYTES], s1.v[ST_PINNED_REGIONS],
		     s1.v[ST_OPEN_FILES]);
	else
		ok("stress-kill-9");
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
	const char *module = "/moex/moex.ko";
	uint64_t seed = 1, iters = 300000;
	int threads = 4, secs = 15, rounds = 5, i, ret, edu = -1;
	uint64_t t0 = now_ms();

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			goto usage;
		i++;
		if (!strcmp(a, "--module"))
			module = v;
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--iters"))
			iters = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--threads"))
			threads = atoi(v);
		else if (!strcmp(a, "--secs"))
			secs = atoi(v);
		else if (!strcmp(a, "--rounds"))
			rounds = atoi(v);
		else
			goto usage;
	}
	if (threads < 1 || threads > 16 || secs < 0 || rounds < 0)
		goto usage;

	ret = mod_load_wait(module, "");
	if (ret) {
		fail("load-module", "%s: %s", module, strerror(-ret));
		goto out;
	}
	ok("load-module");
	if (path_exists("/dev/moex1") && dev_is_edu(1))
		edu = 1;

	test_unpin_zero();
	test_fuzz(seed, iters);
	if (secs)
		test_stress(threads, secs, rounds, seed, edu);
	else
		skip("stress", "--secs 0");
	if (edu < 0)
		skip("stress-edu", "no edu device bound");

	ret = mod_unload_wait();
	if (ret)
		fail("rmmod", "%s", strerror(-ret));
	else
		ok("rmmod");
out:
	printf("  # vm-fuzz: %.1f s in all\n", (now_ms() - t0) / 1e3);
	return report_summary("vm-fuzz");
usage:
	fprintf(stderr,
		"usage: %s [--module PATH] [--seed N] [--iters N] [--threads N] [--secs S] [--rounds N]\n",
		argv[0]);
	return 2;
}
