// SPDX-License-Identifier: GPL-2.0
/*
 * test_backend.c - libmoex's "hip" backend on a real GPU: the plugin
 * libmoex-hip.so.0 (MOEX_HIP_LIB, set by `make gpu-check`) loaded by
 * libmoex, layers with all experts in device memory and with an expert
 * cache reading the others from registered host memory, against the
 * scalar reference; runs on a synchronous queue and on an io_uring queue
 * whose completions the GPU runtime's callback posts (MSG_RING).
 *
 * The GPU computes in f32 and the reference in double, so a token whose
 * top-k has a near tie may route differently: such tokens are counted (at
 * most one per run is allowed) and the others must agree within the
 * dtype's tolerance. Without a GPU every test says SKIP.
 * Built with -DSUITE='"gpu-backend"' by kernels/hip/rules.mk.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "harness.h"
#include "fakeioctl.h"
#include "moek.h"
#include "moex.h"

#define DIM	256
#define INTER	128
#define NE	32
#define TOPK	6
#define NTOK	12

static char g_why[256];
static int g_gpus = -1;

#define NEED_GPU()							\
	do {								\
		if (g_gpus < 0)						\
			g_gpus = moex_gpu_probe(g_why, sizeof(g_why));	\
		if (g_gpus <= 0)					\
			SKIP("%s", g_why);		\
	} while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (float)((rng * 0x2545f4914f6cdd1dull) >> 40) * 0x1p-23f - 1.0f;
}

/* One layer's weights in one huge-page-aligned host buffer. */
struct hweights {
	struct moex_moe_desc d;
	struct moex_moe_weights w;
	struct moex_ffn_weights ex[NE];
	float bias[NE];
	void *mem;
	size_t len;
};

static void *carve(char **p, size_t n)
{
	void *r = *p;

	*p += (n + 255) & ~(size_t)255;
	return r;
}

static void fill(void *p, size_t n, enum moex_dtype t, float amp)
{
	for (size_t i = 0; i < n; i++) {
		float v = frand() * amp;

		if (t == MOEX_DTYPE_BF16)
			((uint16_t *)p)[i] = moek_f32_to_bf16(v);
		else if (t == MOEX_DTYPE_FP8_E4M3)
			((uint8_t *)p)[i] = moek_f32_to_fp8(v * 448.0f);
		else
			((float *)p)[i] = v;
	}
}

static int hweights_make(struct hweights *h, enum moex_dtype t)
{
	const bool fp8 = t == MOEX_DTYPE_FP8_E4M3;
	const size_t m = (size_t)INTER * DIM;
	const size_t sc = moek_scale_count(INTER, DIM) * sizeof(float);
	size_t per = 3 * (moek_matrix_bytes(t, INTER, DIM) + 256 + sc + 256);
	char *p;

	memset(h, 0, sizeof(*h));
	h->len = (NE + 2) * per + NE * DIM * sizeof(float) + 4096;
	h->len = (h->len + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
	if (moex_alloc_pinnable(h->len, true, &h->mem))
		return -ENOMEM;
	p = h->mem;
	h->d = (struct moex_moe_desc){
		.size = sizeof(h->d), .dim = DIM, .inter = INTER,
		.n_experts = NE, .topk = TOPK, .n_groups = 4,
		.topk_groups = 2, .n_shared = 1,
		.scoring = MOEX_SCORING_SIGMOID, .norm_topk = 1,
		.route_scale = 2.5f, .weight_dtype = t,
		.gate_dtype = MOEX_DTYPE_F32,
	};
	h->w.size = sizeof(h->w);
	h->w.gate = carve(&p, NE * DIM * sizeof(float));
	/* small enough that sigmoid scores do not saturate into ties */
	fill((void *)h->w.gate, NE * DIM, MOEX_DTYPE_F32, 0.1f);
	h->w.bias = h->bias;
	for (int e = 0; e <= NE; e++) {
		struct moex_ffn_weights *f = e < NE ? &h->ex[e] : &h->w.shared;
		void *w[3];
		float *s[3] = { NULL, NULL, NULL };

		for (int i = 0; i < 3; i++) {
			w[i] = carve(&p, moek_matrix_bytes(t, INTER, DIM));
			fill(w[i], m, t, 1.0f / sqrtf(DIM));
			if (fp8) {
				s[i] = carve(&p, sc);
				for (size_t k = 0; k < sc / sizeof(float); k++)
					s[i][k] = 1.0f / 448.0f;
			}
		}
		*f = (struct moex_ffn_weights){ w[0], w[1], w[2], s[0], s[1],
						s[2] };
	}
	h->w.experts = h->ex;
	return 0;
}

static void hweights_free(struct hweights *h)
{
	moex_free_pinnable(h->mem, h->len);
}

/* Tokens of y that disagree with the reference r beyond tol (relative to
 * the token's largest value); a NaN anywhere in a token makes it bad. */
static int bad_tokens(const float *y, const float *r, size_t ntok, double tol)
{
	int bad = 0;

	for (size_t t = 0; t < ntok; t++) {
		double num = 0, den = 1e-30;

		for (size_t c = 0; c < DIM; c++) {
			double d = fabs((double)y[t * DIM + c] - r[t * DIM + c]);

			num = isnan(d) ? INFINITY : fmax(num, d);
			den = fmax(den, fabs((double)r[t * DIM + c]));
		}
		if (!(num / den <= tol))
			bad++;
	}
	return bad;
}

static double tol_of(enum moex_dtype t)
{
	return t == MOEX_DTYPE_FP8_E4M3 ? 6e-2 : 2e-2;
}

static void layer_vs_reference(enum moex_dtype t, unsigned int gpu_experts,
			       bool skew, int runs)
{
	static float x[NTOK * DIM], y[NTOK * DIM], r[NTOK * DIM];
	struct moex_moe_opts o = { .size = sizeof(o), .backend = "hip",
				   .gpu_experts = gpu_experts };
	struct moex_moe_stats st = { .size = sizeof(st) };
	struct hweights h;
	struct moex_moe *m = NULL;
	int bad;

	CHECK_INT(hweights_make(&h, t), 0);
	for (int e = 0; e < NE; e++)
		h.bias[e] = skew && e >= NE - 8 ? 4.0f : 0.0f;
	CHECK_INT(moex_moe_create(&h.d, &h.w, &o, &m), 0);
	for (int i = 0; i < runs; i++) {
		for (size_t k = 0; k < NTOK * DIM; k++)
			x[k] = frand();
		CHECK_INT(moex_moe_run(m, x, NTOK, y, NULL), 0);
		CHECK_INT(moex_moe_run_reference(m, x, NTOK, r, NULL), 0);
		bad = bad_tokens(y, r, NTOK, tol_of(t));
		CHECK_MSG(bad <= 1, "run %d: %d of %d tokens differ", i, bad,
			  NTOK);
	}
	CHECK_INT(moex_moe_stats(m, &st), 0);
	CHECK_U64(st.runs, (uint64_t)runs);
	if (gpu_experts && skew) {
		CHECK(st.fills > 0);
		CHECK(st.gpu_hits > 0);
		CHECK(st.stream_bytes > 0);
	}
	printf("# %s gpu_experts %u: hits %llu misses %llu fills %llu\n",
	       moex_moe_backend(m), gpu_experts,
	       (unsigned long long)st.gpu_hits,
	       (unsigned long long)st.gpu_misses,
	       (unsigned long long)st.fills);
	CHECK_INT(moex_moe_destroy(m), 0);
	hweights_free(&h);
}

TEST(probe)
{
	NEED_GPU();
	CHECK(g_gpus > 0);
}

TEST(resident_bf16)
{
	NEED_GPU();
	layer_vs_reference(MOEX_DTYPE_BF16, 0, false, 3);
}

TEST(resident_fp8)
{
	NEED_GPU();
	layer_vs_reference(MOEX_DTYPE_FP8_E4M3, 0, false, 3);
}

TEST(cache_bf16_streams_and_fills)
{
	NEED_GPU();
	layer_vs_reference(MOEX_DTYPE_BF16, 4, true, 8);
}

TEST(cache_fp8_streams_and_fills)
{
	NEED_GPU();
	layer_vs_reference(MOEX_DTYPE_FP8_E4M3, 8, true, 8);
}

/* NRUN runs queued on q, completions reaped, each checked. */
#define NRUN 6

static void queue_runs(struct moex_queue *q)
{
	static float x[NRUN][NTOK * DIM], y[NRUN][NTOK * DIM], r[NTOK * DIM];
	struct moex_moe_opts o = { .size = sizeof(o), .backend = "hip",
				   .gpu_experts = 8 };
	struct moex_cqe cqe[NRUN];
	struct hweights h;
	struct moex_moe *m = NULL;
	int got = 0, n;

	CHECK_INT(hweights_make(&h, MOEX_DTYPE_BF16), 0);
	CHECK_INT(moex_moe_create(&h.d, &h.w, &o, &m), 0);
	for (int i = 0; i < NRUN; i++) {
		for (size_t k = 0; k < NTOK * DIM; k++)
			x[i][k] = frand();
		CHECK_INT(moex_queue_moe(q, m, x[i], NTOK, y[i], NULL, 40 + i),
			  0);
	}
	CHECK_INT(moex_queue_submit(q), NRUN);
	while (got < NRUN) {
		n = moex_queue_wait(q, cqe, NRUN, 1, 20000);
		CHECK_MSG(n > 0, "wait: %d", n);
		for (int i = 0; i < n; i++) {
			CHECK(cqe[i].user_data >= 40 &&
			      cqe[i].user_data < 40 + NRUN);
			CHECK_INT(cqe[i].res, 0);
		}
		got += n;
	}
	for (int i = 0; i < NRUN; i++) {
		CHECK_INT(moex_moe_run_reference(m, x[i], NTOK, r, NULL), 0);
		CHECK(bad_tokens(y[i], r, NTOK, tol_of(MOEX_DTYPE_BF16)) <= 1);
	}
	CHECK_INT(moex_moe_destroy(m), 0);
	hweights_free(&h);
}

TEST(queue_sync)
{
	struct moex_queue *q = NULL;

	NEED_GPU();
	CHECK_INT(moex_queue_create(NULL, NULL, &q), 0);
	queue_runs(q);
	moex_queue_destroy(q);
}

TEST(queue_uring_completions_from_the_gpu)
{
	struct moex_device *dev;
	struct moex_queue *q;
	int ret;

	NEED_GPU();
	ret = uring_queue_on_null(32, true, &dev, &q);
	if (ret)
		SKIP("no io_uring queue with MSG_RING here (%s)",
		     moex_strerror(ret));
	queue_runs(q);
	moex_queue_destroy(q);
	moex_close(dev);
}

RUN_TESTS(T(probe), T(resident_bf16), T(resident_fp8),
	  T(cache_bf16_streams_and_fills), T(cache_fp8_streams_and_fills),
	  T(queue_sync), T(queue_uring_completions_from_the_gpu))
