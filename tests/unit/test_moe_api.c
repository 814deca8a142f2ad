// SPDX-License-Identifier: GPL-2.0
/*
 * libmoex's public MoE API (runtime/src/moe.c): the description and its
 * checks, the backends, a run against the reference, runs queued on a
 * host-only queue, and weights kept resident without a device. The kernels
 * themselves are tested by unit-moe_ref and unit-moe_cpu.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "testdata.h"
#include "moex.h"
#include "moek.h"

/* A small V3-style layer: 16 experts in 4 groups, 2 kept, top-4, bf16. */
#define DIM	48
#define INTER	40
#define NE	16
#define NTOK	5

static uint16_t w1[NE][INTER * DIM], w2[NE][DIM * INTER], w3[NE][INTER * DIM];
static uint16_t sw1[2 * INTER * DIM], sw2[2 * DIM * INTER], sw3[2 * INTER * DIM];
static float gate[NE * DIM], bias[NE];
static struct moex_ffn_weights experts[NE];

static struct moex_moe_desc desc(void)
{
	struct moex_moe_desc d = {
		.size = sizeof(d), .dim = DIM, .inter = INTER, .n_experts = NE,
		.topk = 4, .n_groups = 4, .topk_groups = 2, .n_shared = 2,
		.scoring = MOEX_SCORING_SIGMOID, .norm_topk = 1,
		.route_scale = 2.5f, .weight_dtype = MOEX_DTYPE_BF16,
		.gate_dtype = MOEX_DTYPE_F32,
	};
	return d;
}

static struct moex_moe_weights weights(void)
{
	static bool filled;
	struct moex_moe_weights w = { .size = sizeof(w) };
	size_t e, i;

	if (!filled) {
		for (e = 0; e < NE; e++) {
			fill16(w1[e], INTER * DIM, 0.3f);
			fill16(w2[e], DIM * INTER, 0.3f);
			fill16(w3[e], INTER * DIM, 0.3f);
			experts[e] = (struct moex_ffn_weights){ w1[e], w2[e], w3[e],
								NULL, NULL, NULL };
		}
		fill16(sw1, sizeof(sw1) / 2, 0.3f);
		fill16(sw2, sizeof(sw2) / 2, 0.3f);
		fill16(sw3, sizeof(sw3) / 2, 0.3f);
		for (i = 0; i < NE * DIM; i++)
			gate[i] = frand();
		for (i = 0; i < NE; i++)
			bias[i] = frand() * 0.1f;
		filled = true;
	}
	w.gate = gate;
	w.bias = bias;
	w.experts = experts;
	w.shared = (struct moex_ffn_weights){ sw1, sw2, sw3, NULL, NULL, NULL };
	return w;
}

static void fill_x(float *x, size_t n)
{
	while (n--)
		*x++ = frand() * 2.0f;
}

/* max |a - b| over max |b|: the relative error of a whole output. */
static double rel_err(const float *a, const float *b, size_t n)
{
	double num = 0, den = 1e-30;
	size_t i;

	for (i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);

		if (isnan(d))
			return INFINITY;	/* fmax() would skip it */
		num = fmax(num, d);
		den = fmax(den, fabs((double)b[i]));
	}
	return num / den;
}

TEST(create_checks_everything)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = { .size = sizeof(o), .backend = "cpu" };
	struct moex_ffn_weights bad[NE];
	struct moex_moe *m = (void *)1;

	CHECK_INT(moex_moe_create(&d, &w, &o, NULL), -EINVAL);
	CHECK_INT(moex_moe_create(NULL, &w, &o, &m), -EINVAL);
	CHECK(m == NULL);
	CHECK_INT(moex_moe_create(&d, NULL, &o, &m), -EINVAL);
	d.size = 1;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	d = desc();
	d.topk = NE + 1;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	d = desc();
	d.n_groups = 5;		/* does not divide 16 */
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	d = desc();
	d.weight_dtype = 7;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	d = desc();
	d.gate_dtype = MOEX_DTYPE_FP8_E4M3;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	/* FP8 needs scales for every matrix */
	d = desc();
	d.weight_dtype = MOEX_DTYPE_FP8_E4M3;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	/* a missing expert matrix */
	d = desc();
	memcpy(bad, experts, sizeof(bad));
	bad[NE - 1].w2 = NULL;
	w.experts = bad;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	w = weights();
	w.shared.w3 = NULL;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	w = weights();
	w.gate = NULL;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	/* scales for BF16 weights are a mistake, not ignored */
	w = weights();
	w.shared.s2 = bias;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	memcpy(bad, experts, sizeof(bad));
	bad[0].s1 = bias;
	w = weights();
	w.experts = bad;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	/* shared experts, and weights too old to hold them */
	w = weights();
	w.size = offsetof(struct moex_moe_weights, shared);
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	w = weights();
	o.backend = "tpu";
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	/* no GPU plugin (test_moe_hip tests the backend on a fake one) */
	setenv("MOEX_HIP_LIB", "/nonexistent/libmoex-hip.so.0", 1);
	o.backend = "hip";
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -ENODEV);
	CHECK(m == NULL);
}

/* $MOEX_THREADS: 1 to 1024 in plain decimal, or the layer is refused
 * (strtoul took "abc" as the default and " -1" as 2^64 - 1); unset or
 * empty means the default, and opts->threads takes precedence. */
TEST(moex_threads_is_checked)
{
	static const char *const bad[] = {
		"abc", "0", "-1", "+2", " 2", "2 ", "02", "2x", "1025", "99999",
	};
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = { .size = sizeof(o), .threads = 2 };
	struct moex_moe *m;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("MOEX_THREADS", bad[i], 1);
		m = (void *)1;
		CHECK_MSG(moex_moe_create(&d, &w, NULL, &m) == -EINVAL,
			  "MOEX_THREADS='%s' was taken", bad[i]);
		CHECK(m == NULL);
	}
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);	/* threads given */
	CHECK_INT(moex_moe_destroy(m), 0);
	setenv("MOEX_THREADS", "3", 1);
	CHECK_INT(moex_moe_create(&d, &w, NULL, &m), 0);
	/* more than 1024 given is refused, also once the pool exists */
	{
		struct moex_moe *m2 = (void *)1;

		o.threads = 1025;
		CHECK_INT(moex_moe_create(&d, &w, &o, &m2), -EINVAL);
		CHECK(m2 == NULL);
		o.threads = 2;
	}
	/* the most is taken (the pool m made stays: no 1024 threads) */
	{
		struct moex_moe *m2 = NULL;

		setenv("MOEX_THREADS", "1024", 1);
		CHECK_INT(moex_moe_create(&d, &w, NULL, &m2), 0);
		CHECK_INT(moex_moe_destroy(m2), 0);
	}
	CHECK_INT(moex_moe_destroy(m), 0);
	setenv("MOEX_THREADS", "", 1);
	CHECK_INT(moex_moe_create(&d, &w, NULL, &m), 0);
	CHECK_INT(moex_moe_destroy(m), 0);
	unsetenv("MOEX_THREADS");
}

TEST(cpu_backend_matches_the_reference)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	static float x[NTOK * DIM], y[NTOK * DIM], r[NTOK * DIM];
	uint32_t counts[NE], rcounts[NE];
	struct moex_moe *m = NULL;
	uint32_t e, sum = 0;

	CHECK_INT(moex_moe_create(&d, &w, NULL, &m), 0);
	CHECK_HAS(moex_moe_backend(m), "cpu-");
	fill_x(x, NTOK * DIM);
	CHECK_INT(moex_moe_run(m, x, NTOK, y, counts), 0);
	CHECK_INT(moex_moe_run_reference(m, x, NTOK, r, rcounts), 0);
	CHECK(rel_err(y, r, NTOK * DIM) < 2e-2);	/* bf16 tolerance */
	for (e = 0; e < NE; e++) {
		CHECK_INT(counts[e], rcounts[e]);
		sum += counts[e];
	}
	CHECK_INT(sum, NTOK * 4);
	/* zero tokens is a valid run that touches nothing but counts,
	 * which say no load (not the last run's, as they did on "cpu") */
	CHECK_INT(moex_moe_run(m, NULL, 0, NULL, NULL), 0);
	CHECK_INT(moex_moe_run(m, NULL, 0, NULL, counts), 0);
	CHECK_INT(moex_moe_run_reference(m, NULL, 0, NULL, rcounts), 0);
	for (e = 0; e < NE; e++) {
		CHECK_INT(counts[e], 0);
		CHECK_INT(rcounts[e], 0);
	}
	CHECK_INT(moex_moe_run(m, NULL, 1, y, NULL), -EINVAL);
	CHECK_INT(moex_moe_destroy(m), 0);
}

TEST(active_bytes_count_what_a_run_reads)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	uint32_t counts[NE] = { 0 };
	struct moex_moe *m = NULL;
	uint64_t all, one, none, expert = 3ull * INTER * DIM * 2;

	CHECK_INT(moex_moe_create(&d, &w, NULL, &m), 0);
	all = moex_moe_active_bytes(m, NULL);
	none = moex_moe_active_bytes(m, counts);
	counts[3] = 2;
	one = moex_moe_active_bytes(m, counts);
	CHECK_U64(one - none, expert);
	CHECK_U64(all - none, NE * expert);
	CHECK(none >= 2 * expert);	/* the shared experts are always read */
	moex_moe_destroy(m);
}

/* This process's threads (the CPU pool's workers among them), or -1. */
static int thread_count(void)
{
	char line[256];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "Threads:", 8))
			n = atoi(line + 8);
	if (f)
		fclose(f);
	return n;
}

/*
 * The layers share one CPU pool; the last destroy ends it (its workers
 * are gone), not an earlier one. The stats count runs and tokens, not
 * failed runs.
 */
TEST(cpu_pool_lives_with_its_layers_and_stats_count)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = { .size = sizeof(o), .threads = 3 };
	struct moex_moe_stats st;
	static float x[NTOK * DIM], y[NTOK * DIM];
	struct moex_moe *a = NULL, *b = NULL;
	int before = thread_count(), during;

	CHECK(before > 0);
	fill_x(x, NTOK * DIM);
	CHECK_INT(moex_moe_create(&d, &w, &o, &a), 0);
	CHECK_INT(moex_moe_create(&d, &w, &o, &b), 0);
	CHECK_INT(moex_moe_run(a, x, NTOK, y, NULL), 0);
	CHECK_INT(moex_moe_run(b, x, 2, y, NULL), 0);
	CHECK_INT(moex_moe_run(a, x, 1, y, NULL), 0);
	CHECK_INT(moex_moe_run(a, NULL, 1, y, NULL), -EINVAL);
	during = thread_count();
	CHECK_MSG(during > before, "%d threads with a pool, %d before",
		  during, before);
	memset(&st, 0xff, sizeof(st));
	st.size = sizeof(st);
	CHECK_INT(moex_moe_stats(a, &st), 0);
	CHECK_U64(st.runs, 2);
	CHECK_U64(st.tokens, NTOK + 1);
	CHECK_U64(st.gpu_hits, 0);	/* zeroed on the CPU */
	CHECK_INT(moex_moe_destroy(a), 0);
	/* b still runs on the pool */
	CHECK_INT(thread_count(), during);
	CHECK_INT(moex_moe_run(b, x, NTOK, y, NULL), 0);
	CHECK_INT(moex_moe_stats(b, &st), 0);
	CHECK_U64(st.runs, 2);
	CHECK_U64(st.tokens, NTOK + 2);
	CHECK_INT(moex_moe_destroy(b), 0);
	CHECK_INT(thread_count(), before);
}

/*
 * A desc of an older caller, ending before route_scale, takes the
 * defaults of what it lacks: route_scale 1, F32 weights and gate.
 */
TEST(older_desc_takes_the_defaults)
{
	static float f1[NE][INTER * DIM], f2[NE][DIM * INTER], f3[NE][INTER * DIM];
	static float s1[2 * INTER * DIM], s2[2 * DIM * INTER], s3[2 * INTER * DIM];
	static float x[NTOK * DIM], ya[NTOK * DIM], yb[NTOK * DIM];
	static struct moex_ffn_weights fe[NE];
	struct moex_moe_desc full = desc(), old = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe *a = NULL, *b = NULL;
	size_t e, i;

	for (e = 0; e < NE; e++) {
		for (i = 0; i < INTER * DIM; i++) {
			f1[e][i] = frand() * 0.3f;
			f2[e][i] = frand() * 0.3f;
			f3[e][i] = frand() * 0.3f;
		}
		fe[e] = (struct moex_ffn_weights){ f1[e], f2[e], f3[e],
						   NULL, NULL, NULL };
	}
	for (i = 0; i < 2 * INTER * DIM; i++) {
		s1[i] = frand() * 0.3f;
		s2[i] = frand() * 0.3f;
		s3[i] = frand() * 0.3f;
	}
	w.experts = fe;
	w.shared = (struct moex_ffn_weights){ s1, s2, s3, NULL, NULL, NULL };
	full.route_scale = 1.0f;
	full.weight_dtype = MOEX_DTYPE_F32;
	full.gate_dtype = MOEX_DTYPE_F32;
	old.size = offsetof(struct moex_moe_desc, route_scale);
	old.route_scale = 2.5f;			/* past its size: unread */
	old.weight_dtype = MOEX_DTYPE_BF16;
	fill_x(x, NTOK * DIM);
	CHECK_INT(moex_moe_create(&full, &w, NULL, &a), 0);
	CHECK_INT(moex_moe_create(&old, &w, NULL, &b), 0);
	CHECK_INT(moex_moe_run_reference(a, x, NTOK, ya, NULL), 0);
	CHECK_INT(moex_moe_run_reference(b, x, NTOK, yb, NULL), 0);
	CHECK(!memcmp(ya, yb, sizeof(ya)));
	moex_moe_destroy(a);
	moex_moe_destroy(b);
}

/*
 * Every field of the desc reaches the kernels: the layer's reference run
 * is the reference kernel's on the shape written out here (the runs
 * compared above take their shape from the same desc, so a field lost on
 * the way, the scoring say, went unseen).
 */
TEST(desc_reaches_the_kernels)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	const struct moek_shape s = {
		.dim = DIM, .inter = INTER, .n_experts = NE, .topk = 4,
		.n_groups = 4, .topk_groups = 2, .n_shared = 2,
		.score = MOEK_SCORE_SIGMOID, .norm_topk = 1,
		.route_scale = 2.5f, .wtype = MOEK_BF16, .gtype = MOEK_F32,
	};
	static struct moek_ffn kx[NE];
	static float x[NTOK * DIM], y[NTOK * DIM], r[NTOK * DIM];
	struct moek_weights kw;
	uint32_t counts[NE], rcounts[NE];
	struct moex_moe *m = NULL;
	size_t e;

	for (e = 0; e < NE; e++)
		kx[e] = (struct moek_ffn){ w1[e], w2[e], w3[e], NULL, NULL, NULL };
	kw = (struct moek_weights){ gate, bias, kx,
				    { sw1, sw2, sw3, NULL, NULL, NULL } };
	fill_x(x, NTOK * DIM);
	CHECK_INT(moex_moe_create(&d, &w, NULL, &m), 0);
	CHECK_INT(moex_moe_run_reference(m, x, NTOK, y, counts), 0);
	moex_moe_destroy(m);
	CHECK_INT(moek_ref_layer(&s, &kw, x, NTOK, r, rcounts), 0);
	CHECK(!memcmp(y, r, sizeof(y)));
	CHECK(!memcmp(counts, rcounts, sizeof(counts)));
}

TEST(runs_complete_on_a_queue)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	static float x[NTOK * DIM], y1[NTOK * DIM], y2[NTOK * DIM],
		     r[NTOK * DIM];
	struct moex_moe *m = NULL;
	struct moex_queue *q = NULL;
	struct moex_cqe cqe[4];
	int n;

	CHECK_INT(moex_moe_create(&d, &w, NULL, &m), 0);
	CHECK_INT(moex_queue_create(NULL, NULL, &q), 0);
	fill_x(x, NTOK * DIM);
	/* the same layer twice in one batch, and a bad run */
	CHECK_INT(moex_queue_moe(q, m, x, NTOK, y1, NULL, 11), 0);
	CHECK_INT(moex_queue_moe(q, m, x, 2, y2, NULL, 12), 0);
	CHECK_INT(moex_queue_moe(q, m, NULL, 1, y2, NULL, 13), -EINVAL);
	CHECK_INT(moex_queue_peek(q, cqe, 4), 0);	/* not yet submitted */
	CHECK_INT(moex_queue_submit(q), 2);
	n = moex_queue_wait(q, cqe, 4, 2, 1000);
	CHECK_INT(n, 2);
	CHECK_U64(cqe[0].user_data, 11);
	CHECK_INT(cqe[0].res, 0);
	CHECK_U64(cqe[1].user_data, 12);
	CHECK_INT(cqe[1].res, 0);
	CHECK_INT(moex_moe_run_reference(m, x, NTOK, r, NULL), 0);
	CHECK(rel_err(y1, r, NTOK * DIM) < 2e-2);
	CHECK(rel_err(y2, r, 2 * DIM) < 2e-2);
	CHECK_INT(moex_queue_wait(q, cqe, 4, 1, 0), -ETIME);
	moex_queue_destroy(q);
	moex_moe_destroy(m);
}

TEST(queue_full_is_ebusy)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_queue_opts o = { .size = sizeof(o), .entries = 2 };
	struct moex_moe *m = NULL;
	struct moex_queue *q = NULL;
	struct moex_cqe cqe[2];

	CHECK_INT(moex_moe_create(&d, &w, NULL, &m), 0);
	CHECK_INT(moex_queue_create(NULL, &o, &q), 0);
	CHECK_INT(moex_queue_moe(q, m, NULL, 0, NULL, NULL, 1), 0);
	CHECK_INT(moex_queue_moe(q, m, NULL, 0, NULL, NULL, 2), 0);
	CHECK_INT(moex_queue_moe(q, m, NULL, 0, NULL, NULL, 3), -EBUSY);
	CHECK_INT(moex_queue_submit(q), 2);
	/* completions not reaped still hold their places */
	CHECK_INT(moex_queue_moe(q, m, NULL, 0, NULL, NULL, 3), -EBUSY);
	CHECK_INT(moex_queue_peek(q, cqe, 2), 2);
	CHECK_INT(moex_queue_moe(q, m, NULL, 0, NULL, NULL, 3), 0);
	/* destroy runs what is queued and frees it (ASan checks) */
	moex_queue_destroy(q);
	moex_moe_destroy(m);
}

TEST(weights_lock_without_a_device)
{
	size_t len = 2 * (size_t)sysconf(_SC_PAGESIZE);
	uint32_t h = 99;
	void *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	CHECK_INT(moex_lock_weights(NULL, NULL, len, &h), -EINVAL);
	errno = 0;
	if (moex_lock_weights(NULL, p, len, &h) == -ENOMEM) {
		munmap(p, len);
		SKIP("RLIMIT_MEMLOCK is below %zu bytes here", len);
	}
	CHECK_INT(errno, 0);
	CHECK_INT(h, 0);
	CHECK_INT(moex_unlock_weights(NULL, p, len, h), 0);
	munmap(p, len);
}

/*
 * A memlock limit of 0 without CAP_IPC_LOCK: mlock(2) says EPERM there
 * (ENOMEM for any other limit), which libmoex's hints read as io_uring
 * being disabled; moex_lock_weights() says -ENOMEM, as moex_pin() does for
 * the same limit. In a child, which drops CAP_IPC_LOCK and the limit.
 */
TEST(weights_lock_limit_zero_is_enomem)
{
	size_t len = (size_t)sysconf(_SC_PAGESIZE);
	int status;
	pid_t pid;

	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		struct __user_cap_header_struct hdr = {
			.version = _LINUX_CAPABILITY_VERSION_3,
		};
		struct __user_cap_data_struct cap[2];
		struct rlimit rl = { 0, 0 };
		uint32_t h = 99;
		void *p;
		int ret;

		if (syscall(SYS_capget, &hdr, cap))
			_exit(10);
		cap[0].effective &= ~(1u << CAP_IPC_LOCK);
		if (syscall(SYS_capset, &hdr, cap) || setrlimit(RLIMIT_MEMLOCK, &rl))
			_exit(10);
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			_exit(10);
		ret = moex_lock_weights(NULL, p, len, &h);
		_exit(ret == -ENOMEM ? 0 : !ret ? 11 : ret == -EPERM ? 12 : 13);
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
	if (WEXITSTATUS(status) == 10)
		SKIP("cannot drop CAP_IPC_LOCK and RLIMIT_MEMLOCK here");
	if (WEXITSTATUS(status) == 11)
		SKIP("mlock(2) locked a page with RLIMIT_MEMLOCK 0 (ASan's does nothing)");
	CHECK_MSG(WEXITSTATUS(status) == 0, "moex_lock_weights() gave %s",
		  WEXITSTATUS(status) == 12 ? "-EPERM" : "another error");
}

/* A thread that runs the layer until told to stop. */
struct busy {
	struct moex_moe *m;
	const float *x;
	float *y;
	atomic_int stop;
};

static void *busy_runs(void *arg)
{
	struct busy *b = arg;

	while (!atomic_load(&b->stop))
		moex_moe_run(b->m, b->x, NTOK, b->y, NULL);
	return NULL;
}

/*
 * A child of fork(2) runs CPU layers: forked after a run (the pool's
 * workers are not in the child) and while another thread runs one (the
 * pool's lock was held by a thread the child does not have). Both hung.
 */
TEST(runs_in_a_child_of_fork)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = { .size = sizeof(o), .threads = 2 };
	static float x[NTOK * DIM], y[NTOK * DIM], yb[NTOK * DIM],
		     r[NTOK * DIM];
	struct busy b = { .x = x, .y = yb };
	struct moex_moe *m = NULL;
	int i, status, bad = 0;
	pthread_t th;

	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	fill_x(x, NTOK * DIM);
	CHECK_INT(moex_moe_run(m, x, NTOK, y, NULL), 0);
	b.m = m;
	for (i = 0; i < 8; i++) {
		pid_t pid;

		/* rounds 0 and 1 fork from a quiet process */
		if (i == 2)
			CHECK_INT(pthread_create(&th, NULL, busy_runs, &b), 0);
		fflush(NULL);
		pid = fork();
		if (!pid) {
			alarm(30);	/* a hang fails the test */
			if (moex_moe_run(m, x, NTOK, y, NULL) ||
			    moex_moe_run_reference(m, x, NTOK, r, NULL) ||
			    !(rel_err(y, r, NTOK * DIM) < 2e-2))
				_exit(1);
			_exit(0);
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid ||
		    !WIFEXITED(status) || WEXITSTATUS(status))
			bad++;
	}
	atomic_store(&b.stop, 1);
	pthread_join(th, NULL);
	CHECK_MSG(!bad, "%d of 8 children failed or hung", bad);
	CHECK_INT(moex_moe_destroy(m), 0);
}

static atomic_int sig_forks;

/* A crash reporter's way: fork from a signal handler; the child leaves at
 * once. */
static void fork_in_handler(int sig)
{
	pid_t pid;

	(void)sig;
	pid = fork();
	if (!pid)
		_exit(0);
	if (pid > 0 && waitpid(pid, NULL, 0) == pid)
		atomic_fetch_add(&sig_forks, 1);
}

/*
 * fork(2) from a signal handler of a thread inside moex_moe_run returns:
 * a pthread_atfork prepare handler that took the pool's lock waited for
 * the very run the signal had interrupted, forever. The test runs in a
 * child of its own, killed by alarm(2) if it hangs.
 */
TEST(fork_in_a_signal_handler_during_a_run)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (!pid) {
		struct moex_moe_opts o = { .size = sizeof(o), .threads = 2 };
		struct sigaction sa = { .sa_handler = fork_in_handler };
		static float x[NTOK * DIM], y[NTOK * DIM];
		struct busy b = { .x = x, .y = y };
		pthread_t th;
		int i;

		alarm(30);
		fill_x(x, NTOK * DIM);
		/* a first run grows the scratch: no malloc in the runs that
		 * the signals interrupt (fork takes malloc's locks) */
		if (moex_moe_create(&d, &w, &o, &b.m) ||
		    moex_moe_run(b.m, x, NTOK, y, NULL) ||
		    sigaction(SIGUSR1, &sa, NULL) ||
		    pthread_create(&th, NULL, busy_runs, &b))
			_exit(2);
		for (i = 0; i < 50; i++) {
			pthread_kill(th, SIGUSR1);
			usleep(2000);
		}
		atomic_store(&b.stop, 1);
		pthread_join(th, NULL);
		_exit(atomic_load(&sig_forks) > 0 ? 0 : 3);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && !WEXITSTATUS(status), "%s %d",
		  WIFSIGNALED(status) ? "hung, killed by signal" :
		  "exit status", WIFSIGNALED(status) ? WTERMSIG(status) :
		  WEXITSTATUS(status));
}

/*
 * free(3), forking after each call while fork_after_free is set: a
 * child of fork(2) at every point of a destroy where memory was just
 * freed (fork_during_the_last_destroy).
 */
static atomic_int fork_after_free;
static int free_children, free_children_bad;

#ifndef __SANITIZE_ADDRESS__	/* ASan has its own free() */
extern void __libc_free(void *p);

static void child_runs_a_layer(void)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = { .size = sizeof(o), .threads = 2 };
	static float x[NTOK * DIM], y[NTOK * DIM], r[NTOK * DIM];
	struct moex_moe *m = NULL;

	alarm(30);	/* a hang fails the test */
	fill_x(x, NTOK * DIM);
	if (moex_moe_create(&d, &w, &o, &m) ||
	    moex_moe_run(m, x, NTOK, y, NULL) ||
	    moex_moe_run_reference(m, x, NTOK, r, NULL) ||
	    !(rel_err(y, r, NTOK * DIM) < 2e-2) || moex_moe_destroy(m))
		_exit(1);
	_exit(0);
}

void free(void *p)
{
	int status;
	pid_t pid;

	__libc_free(p);
	if (!p || !atomic_exchange(&fork_after_free, 0))
		return;
	pid = fork();
	if (!pid)
		child_runs_a_layer();
	free_children++;
	if (pid < 0 || waitpid(pid, &status, 0) != pid ||
	    !WIFEXITED(status) || WEXITSTATUS(status))
		free_children_bad++;
	atomic_store(&fork_after_free, 1);
}
#endif

/*
 * fork(2) by another thread (here: free() itself) while the last CPU
 * layer is destroyed: the child must not find the process's pool half
 * freed (it took it for the pool to share and ran on freed memory, 6 of
 * 8 children crashed or hung).
 */
TEST(fork_during_the_last_destroy)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = { .size = sizeof(o), .threads = 2 };
	static float x[NTOK * DIM], y[NTOK * DIM];
	struct moex_moe *m = NULL;
	int ret;

#ifdef __SANITIZE_ADDRESS__
	SKIP("needs its own free(), which ASan has");
#endif
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	fill_x(x, NTOK * DIM);
	CHECK_INT(moex_moe_run(m, x, NTOK, y, NULL), 0);
	fflush(NULL);
	atomic_store(&fork_after_free, 1);
	ret = moex_moe_destroy(m);
	atomic_store(&fork_after_free, 0);
	CHECK_INT(ret, 0);
	CHECK(free_children > 0);
	CHECK_MSG(!free_children_bad, "%d of %d children failed or hung",
		  free_children_bad, free_children);
}

/*
 * fork(2) by another thread (here: free() itself) while a run grows the
 * pool's scratch: the child's runs must not use the scratch just freed
 * (munmapped, being large: the child crashed).
 */
TEST(fork_while_a_run_grows_the_scratch)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = { .size = sizeof(o), .threads = 2 };
	const size_t big = 1024;
	float *x, *y;
	struct moex_moe *m = NULL;
	int ret;

#ifdef __SANITIZE_ADDRESS__
	SKIP("needs its own free(), which ASan has");
#endif
	x = malloc(4 * big * DIM * sizeof(*x));
	y = malloc(4 * big * DIM * sizeof(*y));
	CHECK(x && y);
	fill_x(x, 4 * big * DIM);
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	/* scratch past the mmap threshold, then grown past it again */
	CHECK_INT(moex_moe_run(m, x, big, y, NULL), 0);
	free_children = free_children_bad = 0;
	atomic_store(&fork_after_free, 1);
	ret = moex_moe_run(m, x, 4 * big, y, NULL);
	atomic_store(&fork_after_free, 0);
	CHECK_INT(ret, 0);
	CHECK(free_children > 0);
	CHECK_MSG(!free_children_bad, "%d of %d children failed or hung",
		  free_children_bad, free_children);
	CHECK_INT(moex_moe_destroy(m), 0);
	free(x);
	free(y);
}

/*
 * A child of _Fork() (async-signal-safe, runs no pthread_atfork
 * handlers) of a quiet process runs a CPU layer: the pool tells it by
 * its pid (with the fork count alone, it waited forever for the
 * parent's workers).
 */
TEST(runs_in_a_child_of__Fork)
{
#if !defined(__GLIBC__) || __GLIBC__ < 2 || \
	(__GLIBC__ == 2 && __GLIBC_MINOR__ < 34)
	SKIP("no _Fork() before glibc 2.34");
#else
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = { .size = sizeof(o), .threads = 2 };
	static float x[NTOK * DIM], y[NTOK * DIM];
	struct moex_moe *m = NULL;
	int status;
	pid_t pid;

	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	fill_x(x, NTOK * DIM);
	CHECK_INT(moex_moe_run(m, x, NTOK, y, NULL), 0);
	fflush(NULL);
	pid = _Fork();
	if (!pid) {
		alarm(30);	/* a hang fails the test */
		_exit(moex_moe_run(m, x, NTOK, y, NULL) ? 1 : 0);
	}
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && !WEXITSTATUS(status), "%s %d",
		  WIFSIGNALED(status) ? "hung, killed by signal" :
		  "exit status", WIFSIGNALED(status) ? WTERMSIG(status) :
		  WEXITSTATUS(status));
	CHECK_INT(moex_moe_destroy(m), 0);
#endif
}

RUN_TESTS(T(create_checks_everything), T(moex_threads_is_checked),
	  T(cpu_backend_matches_the_reference),
	  T(active_bytes_count_what_a_run_reads),
	  T(cpu_pool_lives_with_its_layers_and_stats_count),
	  T(older_desc_takes_the_defaults),
	  T(desc_reaches_the_kernels),
	  T(runs_complete_on_a_queue),
	  T(queue_full_is_ebusy),
	  T(weights_lock_without_a_device),
	  T(weights_lock_limit_zero_is_enomem),
	  T(runs_in_a_child_of_fork),
	  T(fork_in_a_signal_handler_during_a_run),
	  T(fork_during_the_last_destroy),
	  T(fork_while_a_run_grows_the_scratch),
	  T(runs_in_a_child_of__Fork))
