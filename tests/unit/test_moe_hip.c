// SPDX-License-Identifier: GPL-2.0
/*
 * libmoex's "hip" backend (runtime/src/hip.c, moe_hip.c) on the pretend
 * GPU of fakegpu.c: finding and refusing the plugin, the layer with all
 * experts in device memory and with an expert cache (its swaps, copies
 * and counters), runs on a synchronous queue and on an io_uring queue
 * whose completions the GPU's thread posts, and what a failure leaves.
 * The fake GPU runs the scalar reference, so a run must match
 * moex_moe_run_reference() bit for bit: a wrong copy or a wrong table
 * shows. The real kernels are tested by tests/gpu.
 */
#include <errno.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "testdata.h"
#include "fakeioctl.h"
#include "moex.h"
#include "../../runtime/src/publish.h"

#if !defined(FAKEGPU) || !defined(FAKEGPU_PLAIN) || !defined(MOEX_BENCH)
#error "build with -DFAKEGPU='\"libmoex-hip-fake.so\"' -DMOEX_BENCH='\"moex-bench\"'"
#endif

/* A small V3-style layer: 16 experts in 4 groups, 2 kept, top-4, bf16. */
#define DIM	64
#define INTER	32
#define NE	16
#define TOPK	4
#define NTOK	6

static uint16_t w1[NE][INTER * DIM], w2[NE][DIM * INTER], w3[NE][INTER * DIM];
static uint16_t sw1[INTER * DIM], sw2[DIM * INTER], sw3[INTER * DIM];
static float gate[NE * DIM], bias[NE];
static struct moex_ffn_weights experts[NE];

static struct moex_moe_desc desc(void)
{
	struct moex_moe_desc d = {
		.size = sizeof(d), .dim = DIM, .inter = INTER, .n_experts = NE,
		.topk = TOPK, .n_groups = 4, .topk_groups = 2, .n_shared = 1,
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
		fill16(sw1, INTER * DIM, 0.3f);
		fill16(sw2, DIM * INTER, 0.3f);
		fill16(sw3, INTER * DIM, 0.3f);
		for (i = 0; i < NE * DIM; i++)
			gate[i] = frand();
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

static struct moex_moe_opts hip_opts(unsigned int gpu_experts)
{
	struct moex_moe_opts o = { .size = sizeof(o), .backend = "hip",
				   .gpu_experts = gpu_experts };
	return o;
}

/* The fake's count of live allocations, registrations and objects. */
static long outstanding(void)
{
	long (*fn)(void);
	void *h = dlopen(FAKEGPU, RTLD_NOW | RTLD_NOLOAD);

	if (!h)
		return 0;	/* not loaded: nothing alive */
	fn = (long (*)(void))dlsym(h, "fakegpu_outstanding");
	dlclose(h);
	return fn ? fn() : -1;
}

/* The fake's count of registered host ranges alive. */
static long registrations(void)
{
	long (*fn)(void);
	void *h = dlopen(FAKEGPU, RTLD_NOW | RTLD_NOLOAD);

	if (!h)
		return 0;
	fn = (long (*)(void))dlsym(h, "fakegpu_registrations");
	dlclose(h);
	return fn ? fn() : -1;
}

/* One of the fake's fakegpu_* knobs that take an int; NULL if none. */
typedef void (*knob_fn)(int);

static knob_fn fake_knob(const char *name)
{
	knob_fn fn = NULL;
	void *h = dlopen(FAKEGPU, RTLD_NOW | RTLD_NOLOAD);

	if (h) {
		fn = (knob_fn)dlsym(h, name);
		dlclose(h);
	}
	return fn;
}

/*
 * In a child (the plugin is looked for once per process): with env set,
 * moex_gpu_probe() and creating a "hip" layer; the child exits 0 when both
 * say -ENODEV and the reason contains want.
 */
static int probe_in_child(const char *name, const char *value,
			  const char *want)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (!pid) {
		struct moex_moe_desc d = desc();
		struct moex_moe_weights w = weights();
		struct moex_moe_opts o = hip_opts(0);
		struct moex_moe *m = NULL;
		char why[256];
		int r;

		setenv(name, value, 1);
		r = moex_gpu_probe(why, sizeof(why));
		if (r != -ENODEV || !strstr(why, want)) {
			fprintf(stderr, "probe: %d, \"%s\"\n", r, why);
			_exit(1);
		}
		r = moex_moe_create(&d, &w, &o, &m);
		_exit(r == -ENODEV && !m ? 0 : 2);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

TEST(no_plugin_is_enodev_and_says_how_to_build_it)
{
	CHECK_INT(probe_in_child("MOEX_HIP_LIB", "/nonexistent/libmoex-hip.so.0",
				 "make hip-plugin"), 0);
}

/*
 * A plugin beside libmoex (here the suite's program, linked with
 * libmoex.a) that is there but does not load, as when the GPU runtime it
 * links is missing; a file that is no ELF object stands for it. The
 * reason must be the loader's for that file: it was dropped, and the
 * search by soname's said to build the plugin.
 */
TEST(plugin_beside_libmoex_that_does_not_load_says_why)
{
	static const char junk[] = "not a shared object\n";
	char path[4096], why[1280];
	const char *slash;
	Dl_info info;
	int fd, status = -1;
	ssize_t n;
	pid_t pid;

	if (!dladdr((void *)moex_gpu_probe, &info) || !info.dli_fname ||
	    !(slash = strrchr(info.dli_fname, '/')))
		SKIP("libmoex's directory is unknown (run the suite by a path)");
	snprintf(path, sizeof(path), "%.*s/libmoex-hip.so.0",
		 (int)(slash - info.dli_fname), info.dli_fname);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		SKIP("cannot make %.300s: %s", path, strerror(errno));
	n = write(fd, junk, sizeof(junk) - 1);
	close(fd);
	pid = n == (ssize_t)sizeof(junk) - 1 ? fork() : -1;
	if (!pid) {
		int r;

		setenv("MOEX_HIP_LIB", "", 1);
		if (dlopen("libmoex-hip.so.0", RTLD_NOW | RTLD_LOCAL))
			_exit(3);	/* one on the loader's path */
		r = moex_gpu_probe(why, sizeof(why));
		if (r != -ENODEV || !strstr(why, path) ||
		    !strstr(why, "does not load") ||
		    strstr(why, "make hip-plugin")) {
			fprintf(stderr, "probe: %d, \"%s\"\n", r, why);
			_exit(1);
		}
		_exit(0);
	}
	if (pid > 0 && waitpid(pid, &status, 0) != pid)
		status = -1;
	unlink(path);
	CHECK_MSG(pid > 0, "%s: write %zd, or fork failed", path, n);
	CHECK(status != -1 && WIFEXITED(status));
	if (WEXITSTATUS(status) == 3)
		SKIP("a libmoex-hip.so.0 is on the loader's path");
	CHECK_INT(WEXITSTATUS(status), 0);
}

TEST(plugin_of_another_abi_is_refused)
{
	setenv("MOEX_HIP_LIB", FAKEGPU, 1);
	CHECK_INT(probe_in_child("FAKEGPU_ABI", "99", "ABI 99"), 0);
	unsetenv("MOEX_HIP_LIB");
}

/* A plugin of ABI 1 lacks moek_hip_use(): refused for its ABI, not for
 * the function (it said "lacks moek_hip_use: rebuild it"). */
TEST(plugin_of_abi_1_is_refused_for_its_abi)
{
	CHECK_INT(probe_in_child("MOEX_HIP_LIB", FAKEGPU_ABI1,
				 "speaks ABI 1, this libmoex 2"), 0);
}

TEST(plugin_without_a_gpu_is_enodev)
{
	setenv("MOEX_HIP_LIB", FAKEGPU, 1);
	CHECK_INT(probe_in_child("FAKEGPU_NODEV", "1", "no GPU"), 0);
	unsetenv("MOEX_HIP_LIB");
}

/* From here on this process uses the fake GPU. */
TEST(probe_finds_the_fake_gpu)
{
	char why[256];

	setenv("MOEX_HIP_LIB", FAKEGPU, 1);
	CHECK_INT(moex_gpu_probe(why, sizeof(why)), 1);
	CHECK_STR(why, "");
	CHECK_INT(outstanding(), 0);
}

/*
 * Routing by hand (run_matches() with a group): the gate is eye, where row
 * e is the unit vector of x's coordinate e, so x[e] = 5 for the four
 * experts of group g and -5 for the others sends every token to those
 * four.
 */
static float eye[NE * DIM];

/*
 * n runs of m against the reference: outputs and counts bit for bit. With
 * group g >= 0 (m's gate is eye) every token goes to g's four experts.
 */
static void run_matches(struct moex_moe *m, int n, int g, const char *what)
{
	static const uint32_t all[4] = { NTOK, NTOK, NTOK, NTOK };
	static float x[NTOK * DIM], y[NTOK * DIM], r[NTOK * DIM];
	uint32_t c[NE], rc[NE];

	for (int i = 0; i < n; i++) {
		fill_x(x, NTOK * DIM);
		for (int t = 0; g >= 0 && t < NTOK; t++)
			for (int e = 0; e < NE; e++)
				x[t * DIM + e] = e / 4 == g ? 5.0f : -5.0f;
		memset(y, 0xff, sizeof(y));
		CHECK_INT(moex_moe_run(m, x, NTOK, y, c), 0);
		CHECK_INT(moex_moe_run_reference(m, x, NTOK, r, rc), 0);
		CHECK_MSG(g < 0 || !memcmp(rc + 4 * g, all, sizeof(all)),
			  "%s: not routed to group %d", what, g);
		CHECK_MSG(!memcmp(y, r, sizeof(y)), "%s: run %d differs", what,
			  i);
		CHECK_MSG(!memcmp(c, rc, sizeof(c)), "%s: counts of run %d",
			  what, i);
	}
}

TEST(all_experts_on_the_gpu_match_the_reference)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(0);
	struct moex_moe_stats st = { .size = sizeof(st) };
	struct moex_moe *m = NULL;

	memset(bias, 0, sizeof(bias));
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	CHECK_STR(moex_moe_backend(m), "hip");
	run_matches(m, 3, -1, "resident");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.runs, 3);
	CHECK_U64(st.tokens, 3 * NTOK);
	CHECK_U64(st.gpu_experts, NE);
	CHECK_U64(st.gpu_misses, 0);
	CHECK(st.gpu_hits >= 3);
	CHECK_U64(st.fills, 0);
	/* no run at all, and a run of no tokens */
	CHECK_INT(moex_moe_run(m, NULL, 0, NULL, NULL), 0);
	CHECK_INT(moex_moe_destroy(m), 0);
	CHECK_INT(outstanding(), 0);
}

/*
 * 4 of 16 experts on the GPU, slots holding experts 0-3; the bias sends
 * every token to experts 12-15 (one group). Each run's submission plans
 * from the counts so far and starts at most two copies, which later runs
 * use: run 1 reads all four from host memory, run 2 too (12 and 13 are
 * being copied), run 3 finds 12 and 13 (14 and 15 copying), run 4 on all
 * four. Every run must match the reference, from host memory or slots.
 */
TEST(expert_cache_moves_the_hot_experts_in)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(4);
	struct moex_moe_stats st = { .size = sizeof(st) };
	struct moex_moe *m = NULL;
	uint64_t expert = 3ull * INTER * DIM * 2;	/* bf16 */
	uint64_t misses;

	memset(bias, 0, sizeof(bias));
	for (int e = 12; e < 16; e++)
		bias[e] = 10.0f;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	CHECK_STR(moex_moe_backend(m), "hip:4/16");
	run_matches(m, 1, -1, "cold");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.gpu_hits, 0);
	CHECK_U64(st.gpu_misses, 4);
	CHECK_U64(st.stream_bytes, 4 * expert);
	CHECK_U64(st.fills, 0);
	run_matches(m, 1, -1, "copying");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.fills, 2);		/* MOEX_XCACHE_MAX_SWAPS */
	CHECK_U64(st.fill_bytes, 2 * expert);
	CHECK_U64(st.gpu_misses, 8);
	run_matches(m, 3, -1, "warming");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.fills, 4);
	misses = st.gpu_misses;
	CHECK_U64(misses, 4 + 4 + 2);
	CHECK_U64(st.gpu_hits, 2 + 4 + 4);
	run_matches(m, 3, -1, "warm");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.gpu_misses, misses);	/* all four hit now */
	CHECK_U64(st.gpu_hits, 10 + 3 * 4);
	CHECK_U64(st.fills, 4);
	CHECK_U64(st.stream_bytes, misses * expert);
	CHECK_INT(moex_moe_destroy(m), 0);
	CHECK_INT(outstanding(), 0);
	memset(bias, 0, sizeof(bias));
}

/* A layer of a model publishes its cache counters with its load. */
TEST(cache_counters_are_published)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(2);
	struct moex_moe_stats st = { .size = sizeof(st) };
	static uint64_t slot[MOEX_LOAD_COUNTS + NE];
	uint64_t updates = 0, sum = 0;
	struct moex_moe *m = NULL;

	memset(slot, 0, sizeof(slot));
	for (int e = 12; e < 16; e++)
		bias[e] = 10.0f;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	CHECK_INT(moex__moe_publish(m, slot, &updates), 0);
	run_matches(m, 4, -1, "published");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(slot[MOEX_LOAD_TOKENS], 4 * NTOK);
	CHECK_U64(slot[MOEX_LOAD_RUNS], 4);
	CHECK_U64(updates, 4);
	CHECK_U64(slot[MOEX_LOAD_GPU_HITS], st.gpu_hits);
	CHECK_U64(slot[MOEX_LOAD_GPU_MISSES], st.gpu_misses);
	CHECK_U64(slot[MOEX_LOAD_STREAM_BYTES], st.stream_bytes);
	CHECK_U64(slot[MOEX_LOAD_FILL_BYTES], st.fill_bytes);
	CHECK(st.gpu_misses > 0 && st.fills > 0);
	for (int e = 0; e < NE; e++)
		sum += slot[MOEX_LOAD_COUNTS + e];
	CHECK_U64(sum, 4 * NTOK * TOPK);
	CHECK_INT(moex__moe_publish(m, NULL, NULL), 0);
	CHECK_INT(moex_moe_destroy(m), 0);
	CHECK_INT(outstanding(), 0);
	memset(bias, 0, sizeof(bias));
}

/*
 * The cache plans its swaps in its books at once; a run whose moves then
 * fail (here the copy stream's wait for the last run) returns the error,
 * and the experts planned out of a slot must be read from host memory
 * from then on. Slots hold experts 0-3; a run on 12-15, then one whose
 * moves fail after planning 12 and 13 into the slots of 0 and 1; runs on
 * 4-7 make the cache take those slots from 12 and 13 for 4 and 5 and copy
 * them in, and runs on 0-3 follow. The table kept 0 and 1 on their old
 * slots, where 4 and 5 now are: those runs differed from the reference.
 */
TEST(cache_moves_that_fail_leave_the_table_right)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(4);
	struct moex_moe_stats st = { .size = sizeof(st) };
	static float x[NTOK * DIM], y[NTOK * DIM];
	knob_fn fail = fake_knob("fakegpu_fail_stream_waits");
	struct moex_moe *m = NULL;

	CHECK(fail);
	memset(bias, 0, sizeof(bias));
	for (int e = 0; e < NE; e++)
		eye[e * DIM + e] = 1.0f;
	w.gate = eye;
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	run_matches(m, 1, 3, "12-15");
	if (h_result == H_FAIL)
		return;
	fill_x(x, NTOK * DIM);
	fail(1);
	CHECK_INT(moex_moe_run(m, x, NTOK, y, NULL), -EIO);
	fail(0);
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.fills, 2);
	run_matches(m, 4, 1, "4-7");
	if (h_result == H_FAIL)
		return;
	/* 14 and 15 took the slots of 2 and 3, then 4 and 5 those of 12
	 * and 13, and were read there */
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK(st.fills >= 6 && st.gpu_hits > 0);
	run_matches(m, 2, 0, "0-3 after the failed moves");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_destroy(m), 0);
	CHECK_INT(outstanding(), 0);
}

/* Two layers over the same host weights share its registration. */
TEST(layers_share_registered_memory)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(2);
	struct moex_moe *a = NULL, *b = NULL;

	CHECK_INT(moex_moe_create(&d, &w, &o, &a), 0);
	CHECK_INT(moex_moe_create(&d, &w, &o, &b), 0);
	run_matches(b, 2, -1, "second layer");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_destroy(a), 0);
	/* b's experts must still be reachable: the fake checks aliases */
	run_matches(b, 2, -1, "after the first is gone");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_destroy(b), 0);
	CHECK_INT(outstanding(), 0);
}

/*
 * A layer whose registration fails midway leaves none of its own behind.
 * Layer a's experts are all expert 8, so its pages lie in the middle of
 * b's: b's first range has a gap each side of a's, and the second gap's
 * registration fails. The first gap, registered and in the registry but
 * counted by no layer yet, stayed registered for good.
 */
TEST(failed_registration_leaves_none_behind)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights(), wa = w;
	struct moex_moe_opts o = hip_opts(2);
	static struct moex_ffn_weights eight[NE];
	knob_fn fail = fake_knob("fakegpu_fail_host_register");
	struct moex_moe *a = NULL, *b = NULL;
	long ra;

	CHECK(fail);
	memset(bias, 0, sizeof(bias));
	for (int e = 0; e < NE; e++)
		eight[e] = experts[8];
	wa.experts = eight;
	CHECK_INT(moex_moe_create(&d, &wa, &o, &a), 0);
	ra = registrations();
	CHECK(ra > 0);
	fail(2);
	CHECK_INT(moex_moe_create(&d, &w, &o, &b), -ENOMEM);
	fail(0);
	CHECK(!b);
	CHECK_INT(registrations(), ra);
	run_matches(a, 1, -1, "a after b failed");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_destroy(a), 0);
	CHECK_INT(registrations(), 0);
	CHECK_INT(outstanding(), 0);
	/* and the registry is right for the next layers */
	CHECK_INT(moex_moe_create(&d, &wa, &o, &a), 0);
	CHECK_INT(moex_moe_create(&d, &w, &o, &b), 0);
	run_matches(b, 2, -1, "b");
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_destroy(a), 0);
	CHECK_INT(moex_moe_destroy(b), 0);
	CHECK_INT(registrations(), 0);
	CHECK_INT(outstanding(), 0);
}

TEST(bad_requests_leave_nothing)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(NE + 1);
	struct moex_moe *m = NULL;

	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -EINVAL);
	CHECK(!m);
	/* device memory too small for the slots */
	setenv("FAKEGPU_MEM_MB", "0", 1);
	o = hip_opts(0);
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), -ENOMEM);
	unsetenv("FAKEGPU_MEM_MB");
	CHECK(!m);
	CHECK_INT(outstanding(), 0);
}

/* Queue NRUN runs of one layer on q; reap them; compare. */
#define NRUN 5

static void queue_runs(struct moex_queue *q, struct moex_moe *m)
{
	static float x[NRUN][NTOK * DIM], y[NRUN][NTOK * DIM], r[NTOK * DIM];
	static uint32_t c[NRUN][NE];
	uint32_t rc[NE];
	bool seen[NRUN] = { false };
	struct moex_cqe cqe[NRUN];
	int got = 0, n;

	for (int i = 0; i < NRUN; i++) {
		fill_x(x[i], NTOK * DIM);
		CHECK_INT(moex_queue_moe(q, m, x[i], NTOK, y[i], c[i],
					 500 + (uint64_t)i), 0);
	}
	CHECK_INT(moex_queue_submit(q), NRUN);
	while (got < NRUN) {
		n = moex_queue_wait(q, cqe, NRUN, 1, 5000);
		CHECK_MSG(n > 0, "wait: %d", n);
		for (int i = 0; i < n; i++) {
			uint64_t k = cqe[i].user_data - 500;

			CHECK(k < NRUN && !seen[k]);
			seen[k] = true;
			CHECK_INT(cqe[i].res, 0);
		}
		got += n;
	}
	for (int i = 0; i < NRUN; i++) {
		CHECK_INT(moex_moe_run_reference(m, x[i], NTOK, r, rc), 0);
		CHECK_MSG(!memcmp(y[i], r, sizeof(r)), "run %d differs", i);
		CHECK_MSG(!memcmp(c[i], rc, sizeof(rc)), "counts of run %d", i);
	}
	CHECK_INT(moex_queue_wait(q, cqe, NRUN, 1, 0), -ETIME);
}

TEST(runs_on_a_synchronous_queue)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(3);
	struct moex_moe *m = NULL;
	struct moex_queue *q = NULL;

	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	CHECK_INT(moex_queue_create(NULL, NULL, &q), 0);
	queue_runs(q, m);
	moex_queue_destroy(q);
	CHECK_INT(moex_moe_destroy(m), 0);
	CHECK_INT(outstanding(), 0);
}

TEST(gpu_completions_arrive_in_the_queue_ring)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(3);
	struct moex_moe_stats st = { .size = sizeof(st) };
	struct moex_moe *m = NULL;
	struct moex_device *dev;
	struct moex_queue *q;
	int ret;

	ret = uring_queue_on_null(32, true, &dev, &q);
	if (ret)
		SKIP("no io_uring queue with MSG_RING here (%s)",
		     moex_strerror(ret));
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	queue_runs(q, m);
	if (h_result == H_FAIL)
		return;
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.runs, NRUN);
	/* runs left in flight: destroying the queue waits for them */
	{
		static float x[NTOK * DIM], y[2][NTOK * DIM];

		fill_x(x, NTOK * DIM);
		CHECK_INT(moex_queue_moe(q, m, x, NTOK, y[0], NULL, 1), 0);
		CHECK_INT(moex_queue_moe(q, m, x, NTOK, y[1], NULL, 2), 0);
		CHECK_INT(moex_queue_submit(q), 2);
	}
	moex_queue_destroy(q);
	moex_close(dev);
	CHECK_INT(moex_moe_destroy(m), 0);
	CHECK_INT(outstanding(), 0);
}

/*
 * The GPU took the run's callback but not the event after it: the run is
 * under way and its callback completes it, once, so the submit must not
 * report an error (the job would be completed and freed twice). The next
 * run waits for the stream instead of the event.
 */
TEST(callback_launched_completes_once_when_its_event_fails)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(3);
	struct moex_moe *m = NULL;
	struct moex_device *dev;
	struct moex_queue *q;
	void (*fail)(int);
	void *h;
	int ret;

	ret = uring_queue_on_null(32, true, &dev, &q);
	if (ret)
		SKIP("no io_uring queue with MSG_RING here (%s)",
		     moex_strerror(ret));
	CHECK_INT(moex_moe_create(&d, &w, &o, &m), 0);
	h = dlopen(FAKEGPU, RTLD_NOW | RTLD_NOLOAD);
	CHECK(h);
	fail = (void (*)(int))dlsym(h, "fakegpu_fail_records_after_host_fn");
	dlclose(h);
	CHECK(fail);
	fail(NRUN / 2);
	queue_runs(q, m);
	fail(0);
	if (h_result == H_FAIL)
		return;
	moex_queue_destroy(q);
	moex_close(dev);
	CHECK_INT(moex_moe_destroy(m), 0);
	CHECK_INT(outstanding(), 0);
}

/*
 * Two threads run one layer with moex_moe_run() at once, each on its own
 * inputs (thread 1 every other run on no tokens): each must get its own
 * outputs and counts. Runs of a layer take turns, a synchronous run's end
 * included; it read the layer's counts and its done callback and argument
 * after letting go of gpu_lock, where the other thread's run had already
 * put its own: a run took the other's counts, or completed the other's
 * job (twice) and not its own, whose counts were left as they were.
 */
#define NRACE	300
#define NRACE_X	4

struct racer {
	struct moex_moe *m;
	int id;
	float x[NRACE_X][NTOK * DIM], r[NRACE_X][NTOK * DIM];
	uint32_t rc[NRACE_X][NE];
	int bad, first_bad;	/* runs that differ, the first of them */
	int err;		/* a run's error */
};

static void *racer_main(void *arg)
{
	struct racer *rc = arg;
	static const uint32_t none[NE];
	float y[NTOK * DIM];
	uint32_t c[NE];

	for (int i = 0; i < NRACE && !rc->err; i++) {
		const int k = i % NRACE_X;
		const size_t ntok = rc->id && i % 2 ? 0 : NTOK;
		int r;

		memset(y, 0xff, sizeof(y));
		memset(c, 0xff, sizeof(c));
		r = moex_moe_run(rc->m, rc->x[k], ntok, y, c);
		if (r) {
			rc->err = r;
		} else if (ntok ? memcmp(y, rc->r[k], sizeof(y)) ||
				  memcmp(c, rc->rc[k], sizeof(c)) :
				  memcmp(c, none, sizeof(c))) {
			if (!rc->bad++)
				rc->first_bad = i;
		}
	}
	return NULL;
}

TEST(two_threads_run_one_layer_in_turns)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(4);
	struct moex_moe_stats st = { .size = sizeof(st) };
	static struct racer rc[2];
	struct moex_moe *m = NULL;
	cpu_set_t all, one;
	pthread_t t[2];
	int started = 0, r, back;

	memset(bias, 0, sizeof(bias));
	for (int i = 0; i < 2; i++) {
		rc[i].id = i;
		rc[i].bad = rc[i].err = 0;
		for (int k = 0; k < NRACE_X; k++)
			fill_x(rc[i].x[k], NTOK * DIM);
	}
	/*
	 * Everything on one CPU, the GPU's stream threads included (made
	 * with the layer): a thread woken there often takes the CPU over
	 * at once, so the other's run is let in between a run's unlock
	 * and its end when they do not take turns.
	 */
	CHECK_INT(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu() > 0 ? sched_getcpu() : 0, &one);
	CHECK_INT(sched_setaffinity(0, sizeof(one), &one), 0);
	r = moex_moe_create(&d, &w, &o, &m);
	for (int i = 0; i < 2 * NRACE_X && !r; i++) {
		struct racer *x = &rc[i / NRACE_X];

		x->m = m;
		r = moex_moe_run_reference(m, x->x[i % NRACE_X], NTOK,
					   x->r[i % NRACE_X],
					   x->rc[i % NRACE_X]);
	}
	while (!r && started < 2 &&
	       !pthread_create(&t[started], NULL, racer_main, &rc[started]))
		started++;
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	back = sched_setaffinity(0, sizeof(all), &all);
	CHECK_INT(r, 0);
	CHECK_INT(back, 0);
	CHECK_INT(started, 2);
	for (int i = 0; i < 2; i++) {
		CHECK_MSG(!rc[i].err, "thread %d: run failed: %d", i, rc[i].err);
		CHECK_MSG(!rc[i].bad,
			  "thread %d: %d of %d runs got wrong outputs or counts (the first: run %d)",
			  i, rc[i].bad, NRACE, rc[i].first_bad);
	}
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.runs, 2 * NRACE);
	CHECK_U64(st.tokens, (NRACE + NRACE / 2) * NTOK);
	CHECK_INT(moex_moe_destroy(m), 0);
	CHECK_INT(outstanding(), 0);
}

/* Run cmd through sh; its output (stdout and stderr) into out; the status. */
static int run_capture(const char *cmd, char *out, size_t len)
{
	char line[512];
	FILE *f = popen(cmd, "r");

	out[0] = '\0';
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strlen(out) + strlen(line) < len)
			strcat(out, line);
	return pclose(f);
}

/* The value of moex-bench --json's figure name in unit, or -1. */
static double bench_value(const char *out, const char *name, const char *unit)
{
	char key[160], u[16];
	const char *p;
	double v;

	snprintf(key, sizeof(key), "\"name\": \"%s\", \"value\": ", name);
	p = strstr(out, key);
	if (!p || sscanf(p + strlen(key), "%lf, \"unit\": \"%15[^\"]\"", &v,
			 u) != 2 || strcmp(u, unit))
		return -1;
	return v;
}

/*
 * moex-bench moe --backend hip --quick on the fake GPU: every figure and
 * ratio it promises appears, with a positive value (what they measure
 * here means nothing: this checks the bench's own paths).
 */
TEST(gpu_bench_runs_on_the_fake_gpu)
{
	static const char *const names[] = {
		"copy_bw", "gpu_v3_fp8_b1_eff_bw", "gpu_v2_lite_bf16_b16_tokens",
		"copy_bw_end", "stream_bw", "memcpy_h2d_bw",
		"gpu_decode_b1_bw_ratio_quick",
		"gpu_decode_b1_bw_ratio_bf16_quick", "stream_vs_memcpy_quick",
	};
	char cmd[1024], out[8192];
	int st;

	snprintf(cmd, sizeof(cmd),
		 "MOEX_HIP_LIB=%s %s moe --backend hip --quick --json --reps 2 --torch none 2>&1",
		 FAKEGPU_PLAIN, MOEX_BENCH);
	st = run_capture(cmd, out, sizeof(out));
	CHECK_MSG(st == 0, "exit %d: %s", st, out);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char key[128];
		const char *p;
		double v;

		snprintf(key, sizeof(key), "\"name\": \"%s\", \"value\": ",
			 names[i]);
		p = strstr(out, key);
		CHECK_MSG(p, "%s missing: %s", names[i], out);
		v = strtod(p + strlen(key), NULL);
		CHECK_MSG(v > 0, "%s = %g", names[i], v);
	}
	/* each ratio: the named figure over its anchor, both as printed in
	 * this run (copy_bw: the better of its two runs) */
	{
		double cbw = bench_value(out, "copy_bw", "GB/s");
		double cbw_end = bench_value(out, "copy_bw_end", "GB/s");
		double anchor = cbw > cbw_end ? cbw : cbw_end;
		static const struct {
			const char *ratio, *figure, *anchor;
		} r[] = {
			{ "gpu_decode_b1_bw_ratio_quick", "gpu_v3_fp8_b1_eff_bw", NULL },
			{ "gpu_decode_b1_bw_ratio_bf16_quick", "gpu_v3_bf16_b1_eff_bw", NULL },
			{ "gpu_decode_b16_bw_ratio_quick", "gpu_v3_fp8_b16_eff_bw", NULL },
			{ "stream_vs_memcpy_quick", "stream_bw", "memcpy_h2d_bw" },
		};

		for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
			double v = bench_value(out, r[i].ratio, "ratio");
			double num = bench_value(out, r[i].figure, "GB/s");
			double den = r[i].anchor ?
				     bench_value(out, r[i].anchor, "GB/s") : anchor;

			CHECK_MSG(v >= 0 && num > 0 && den > 0, "%s: %s",
				  r[i].ratio, out);
			CHECK_MSG(fabs(v - num / den) <= 1e-4 + 1e-3 * num / den,
				  "%s = %g, not %s over %s: %g / %g", r[i].ratio,
				  v, r[i].figure, r[i].anchor ? r[i].anchor :
				  "copy_bw", num, den);
		}
		/* batch 1 of --quick's V3 in bf16 reads the gate, the bias,
		 * the shared expert and 8 routed ones: 12443776 bytes */
		CHECK_MSG(fabs(bench_value(out, "gpu_v3_bf16_b1_eff_bw", "GB/s") * 1e9 /
			       bench_value(out, "gpu_v3_bf16_b1_tokens", "tokens/s") /
			       12443776 - 1) < 1e-4, "V3 bf16 b1 bytes: %s", out);
	}
	/* the GPU MOEX_GPU names, as the backend's: a second of two, and
	 * none (it measured GPU 0 whatever MOEX_GPU said) */
	snprintf(cmd, sizeof(cmd),
		 "FAKEGPU_DEVICES=2 MOEX_GPU=1 MOEX_HIP_LIB=%s %s moe --backend hip --quick --json --reps 2 --torch none 2>&1",
		 FAKEGPU_PLAIN, MOEX_BENCH);
	st = run_capture(cmd, out, sizeof(out));
	CHECK_MSG(st == 0, "MOEX_GPU=1 of 2: exit %d: %s", st, out);
	snprintf(cmd, sizeof(cmd),
		 "FAKEGPU_DEVICES=2 MOEX_GPU=2 MOEX_HIP_LIB=%s %s moe --backend hip --quick --json --reps 2 --torch none 2>&1",
		 FAKEGPU_PLAIN, MOEX_BENCH);
	st = run_capture(cmd, out, sizeof(out));
	CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 1 &&
		  strstr(out, "MOEX_GPU=2: no such GPU"),
		  "MOEX_GPU=2 of 2: status %#x: %s", st, out);
}

/*
 * moex-run --backend hip --gpu-experts 4 --check on a mkmodel model: the
 * layers of one model share a weight buffer (and pages at their ends),
 * are registered once, and each still matches the reference.
 */
TEST(moex_run_on_the_fake_gpu)
{
	char dir[] = "/tmp/moex-hip-model.XXXXXX", cmd[2048], out[16384];
	int st;

	CHECK(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
		 "%s --layers 5 %s/m >/dev/null 2>&1 && MOEX_HIP_LIB=%s %s --model %s/m --backend hip --gpu-experts 4 --check --tokens 48 --batch 16 --no-device --quiet 2>&1",
		 MKMODEL, dir, FAKEGPU_PLAIN, MOEX_RUN, dir);
	st = run_capture(cmd, out, sizeof(out));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
	CHECK_MSG(st == 0, "exit %d: %s", st, out);
	CHECK_HAS(out, "on hip:4/16 in batches of 16");
	CHECK_HAS(out, "check layer 4: relative error 0 ");
	CHECK_HAS(out, "check: passed");
}

/*
 * moex-run --check fails, exit status 1, when a layer's outputs are out
 * of its dtype's tolerance (0.5% off: beyond fp8's 2e-3 and bf16's 1e-4)
 * or when its routing differs from the reference's, its outputs right
 * (FAKEGPU_WRONG).
 */
TEST(moex_run_check_fails_on_a_wrong_gpu)
{
	static const struct {
		const char *wrong, *dtype, *says;
	} cases[] = {
		{ "y", "bf16", "relative error 0.005 (tolerance 1e-04), routing identical: FAILED" },
		{ "y", "fp8", "relative error 0.005 (tolerance 2e-03), routing identical: FAILED" },
		{ "counts", "bf16", "relative error 0 (tolerance 1e-04), routing DIFFERS: FAILED" },
	};
	char dir[] = "/tmp/moex-hip-wrong.XXXXXX", cmd[2048], out[16384];
	int st = 0;
	size_t i;

	CHECK(mkdtemp(dir));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]) && !st; i++) {
		snprintf(cmd, sizeof(cmd),
			 "%s --layers 3 --dtype %s --force %s/m >/dev/null 2>&1 && FAKEGPU_WRONG=%s MOEX_HIP_LIB=%s %s --model %s/m --backend hip --check --tokens 16 --no-device --quiet 2>&1",
			 MKMODEL, cases[i].dtype, dir, cases[i].wrong,
			 FAKEGPU_PLAIN, MOEX_RUN, dir);
		st = run_capture(cmd, out, sizeof(out));
		st = !(WIFEXITED(st) && WEXITSTATUS(st) == 1 &&
		       strstr(out, cases[i].says) && strstr(out, "check: FAILED\n"));
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
	CHECK_MSG(!st, "FAKEGPU_WRONG=%s, %s: %s", cases[i - 1].wrong,
		  cases[i - 1].dtype, out);
}

/* moex_moe_create() with standard error caught into err[len]. */
static int create_caught(struct moex_moe **m, char *err, size_t len)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(0);
	FILE *f = tmpfile();
	int saved, r;
	size_t n;

	if (!f)
		return -999;
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(fileno(f), STDERR_FILENO);
	r = moex_moe_create(&d, &w, &o, m);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(err, 1, len - 1, f);
	err[n] = '\0';
	fclose(f);
	return r;
}

/* MOEX_GPU: a number, of a GPU there is; else the layer fails and says
 * why. Unset or empty: GPU 0. */
TEST(moex_gpu_must_name_a_gpu)
{
	static const struct {
		const char *v;
		int want;
		const char *says;
	} cases[] = {
		{ "abc", -EINVAL, "MOEX_GPU=abc is not a GPU number" },
		{ "-1", -EINVAL, "MOEX_GPU=-1 is not a GPU number" },
		{ "0x1", -EINVAL, "is not a GPU number" },
		{ "1 ", -EINVAL, "is not a GPU number" },
		{ "2147483648", -EINVAL, "is not a GPU number" },
		{ "1", -ENODEV, "MOEX_GPU=1: no such GPU (this host has 1," },
		{ "2147483647", -ENODEV, "no such GPU" },
		{ "", 0, "" },
		{ "0", 0, "" },
		{ "00", 0, "" },
	};
	char err[512];
	struct moex_moe *m;

	memset(bias, 0, sizeof(bias));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m = NULL;
		setenv("MOEX_GPU", cases[i].v, 1);
		CHECK_MSG(create_caught(&m, err, sizeof(err)) == cases[i].want,
			  "MOEX_GPU=\"%s\": not %d", cases[i].v, cases[i].want);
		CHECK_MSG(strstr(err, cases[i].says) && (*cases[i].says || !*err),
			  "MOEX_GPU=\"%s\" said \"%s\"", cases[i].v, err);
		CHECK(!cases[i].want == !!m);
		CHECK_INT(moex_moe_destroy(m), 0);
	}
	unsetenv("MOEX_GPU");
	CHECK_INT(outstanding(), 0);
}

/*
 * Two fake GPUs, MOEX_GPU=1: layers made, run, queued and destroyed on
 * threads other than the one that made the GPU context, whose current
 * device is 0. The fake refuses a stream or event of device 1 used where
 * device 0 is current (as CUDA does), so every step must make GPU 1
 * current on its thread.
 */
struct xthread {
	void (*fn)(struct xthread *);
	struct moex_moe *m, *m2;	/* with an expert cache; resident */
};

static void *xthread_main(void *arg)
{
	struct xthread *x = arg;

	x->fn(x);
	return NULL;
}

static void on_new_thread(struct xthread *x, void (*fn)(struct xthread *))
{
	pthread_t t;

	x->fn = fn;
	CHECK_INT(pthread_create(&t, NULL, xthread_main, x), 0);
	pthread_join(t, NULL);
}

static void x_create(struct xthread *x)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(4);

	CHECK_INT(moex_moe_create(&d, &w, &o, &x->m), 0);
}

static void x_create2(struct xthread *x)
{
	struct moex_moe_desc d = desc();
	struct moex_moe_weights w = weights();
	struct moex_moe_opts o = hip_opts(0);

	CHECK_INT(moex_moe_create(&d, &w, &o, &x->m2), 0);
}

static void x_runs(struct xthread *x)
{
	run_matches(x->m, 4, -1, "cache, another thread");
	run_matches(x->m2, 1, -1, "resident, another thread");
}

static void x_queue(struct xthread *x)
{
	struct moex_device *dev;
	struct moex_queue *q;

	/* a ring belongs to the thread that made it */
	if (uring_queue_on_null(32, true, &dev, &q)) {
		dev = NULL;
		CHECK_INT(moex_queue_create(NULL, NULL, &q), 0);
	}
	queue_runs(q, x->m);
	moex_queue_destroy(q);
	if (dev)
		moex_close(dev);
}

static void x_destroy(struct xthread *x)
{
	struct moex_moe_stats st = { .size = sizeof(st) };

	CHECK_INT(moex_moe_stats(x->m, &st), 0);
	CHECK(st.fills > 0 && st.gpu_hits > 0);
	CHECK_INT(moex_moe_destroy(x->m), 0);
	x->m = NULL;
}

static void x_destroy2(struct xthread *x)
{
	CHECK_INT(moex_moe_destroy(x->m2), 0);
	x->m2 = NULL;
}

TEST(threads_use_the_gpu_moex_gpu_names)
{
	static void (*const steps[])(struct xthread *) = {
		x_create, x_create2, x_runs, x_queue, x_destroy, x_destroy2,
	};
	struct xthread x = { 0 };

	memset(bias, 0, sizeof(bias));
	for (int e = 12; e < 16; e++)
		bias[e] = 10.0f;
	setenv("FAKEGPU_DEVICES", "2", 1);
	setenv("MOEX_GPU", "1", 1);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) &&
			   h_result != H_FAIL; i++)
		on_new_thread(&x, steps[i]);
	moex_moe_destroy(x.m);
	moex_moe_destroy(x.m2);
	unsetenv("MOEX_GPU");
	unsetenv("FAKEGPU_DEVICES");
	memset(bias, 0, sizeof(bias));
	CHECK_INT(outstanding(), 0);
}

RUN_TESTS(T(no_plugin_is_enodev_and_says_how_to_build_it),
	  T(plugin_beside_libmoex_that_does_not_load_says_why),
	  T(plugin_of_another_abi_is_refused),
	  T(plugin_of_abi_1_is_refused_for_its_abi),
	  T(plugin_without_a_gpu_is_enodev),
	  T(probe_finds_the_fake_gpu),
	  T(all_experts_on_the_gpu_match_the_reference),
	  T(expert_cache_moves_the_hot_experts_in),
	  T(cache_counters_are_published),
	  T(cache_moves_that_fail_leave_the_table_right),
	  T(layers_share_registered_memory),
	  T(failed_registration_leaves_none_behind),
	  T(bad_requests_leave_nothing),
	  T(runs_on_a_synchronous_queue),
	  T(gpu_completions_arrive_in_the_queue_ring),
	  T(callback_launched_completes_once_when_its_event_fails),
	  T(two_threads_run_one_layer_in_turns),
	  T(moex_gpu_must_name_a_gpu),
	  T(threads_use_the_gpu_moex_gpu_names),
	  T(gpu_bench_runs_on_the_fake_gpu),
	  T(moex_run_on_the_fake_gpu),
	  T(moex_run_check_fails_on_a_wrong_gpu))
