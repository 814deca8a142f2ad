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
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
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

/*
 * A layer made, run and destroyed by threads other than each other, on
 * the GPU MOEX_GPU names (the last one): the current device is per
 * thread, and a new thread's is 0, so every call of the backend must
 * make its GPU current first. On CUDA a stream of one device used while
 * another is current fails (invalid resource handle); hipemu, with
 * HIPEMU_DEVICES=2 in hipemu-check, is as strict, and there device 0's
 * memory must stay untouched too.
 */
struct moek_hip_ctx;

struct xthread {
	void (*fn)(struct xthread *);
	struct hweights h;
	struct moex_moe *m, *m2;	/* with an expert cache; resident */
	struct moex_queue *q;
	struct moex_device *dev;
	int gpu;				/* MOEX_GPU */
	int (*mem_info)(size_t *, size_t *);	/* hipemu: the plugin's */
	size_t free0;				/* device 0's, at the start */
	/* the plugin's, where MOEX_HIP_LIB names it */
	int (*create)(int, struct moek_hip_ctx **);
	void (*destroy)(struct moek_hip_ctx *);
	int (*host_register)(void *, size_t, void **);
	int (*host_unregister)(void *);
};

static void *xthread_main(void *arg)
{
	struct xthread *x = arg;

	x->fn(x);
	return NULL;
}

/* x->fn(x) on a new thread, whose current device is the runtime's 0. */
static void on_new_thread(struct xthread *x, void (*fn)(struct xthread *))
{
	pthread_t t;

	x->fn = fn;
	CHECK_INT(pthread_create(&t, NULL, xthread_main, x), 0);
	pthread_join(t, NULL);
}

/* hipemu: device 0's free memory, asked on a new thread (device 0
 * current), before and after each step */
static void x_free0(struct xthread *x)
{
	size_t total;

	CHECK_INT(x->mem_info(&x->free0, &total), 0);
}

static void x_device0_untouched(struct xthread *x)
{
	size_t f, total;

	CHECK_INT(x->mem_info(&f, &total), 0);
	CHECK_MSG(f == x->free0, "device 0 holds %zd bytes more",
		  (ssize_t)(x->free0 - f));
}

/* A step on a new thread; then device 0 must be as it was. */
static void step(struct xthread *x, void (*fn)(struct xthread *))
{
	on_new_thread(x, fn);
	if (x->mem_info && h_result != H_FAIL)
		on_new_thread(x, x_device0_untouched);
}

static void x_create(struct xthread *x)
{
	struct moex_moe_opts o = { .size = sizeof(o), .backend = "hip",
				   .gpu_experts = 4 };

	CHECK_INT(moex_moe_create(&x->h.d, &x->h.w, &o, &x->m), 0);
}

/* the GPU made already: this thread's device stays 0 unless set */
static void x_create2(struct xthread *x)
{
	struct moex_moe_opts o = { .size = sizeof(o), .backend = "hip" };

	CHECK_INT(moex_moe_create(&x->h.d, &x->h.w, &o, &x->m2), 0);
}

static void x_runs(struct xthread *x)
{
	static float in[NTOK * DIM], y[NTOK * DIM], r[NTOK * DIM];
	int bad;

	for (int i = 0; i < 8; i++) {
		struct moex_moe *m = i % 4 == 3 ? x->m2 : x->m;

		for (size_t k = 0; k < NTOK * DIM; k++)
			in[k] = frand();
		CHECK_INT(moex_moe_run(m, in, NTOK, y, NULL), 0);
		CHECK_INT(moex_moe_run_reference(m, in, NTOK, r, NULL), 0);
		bad = bad_tokens(y, r, NTOK, tol_of(MOEX_DTYPE_BF16));
		CHECK_MSG(bad <= 1, "run %d: %d of %d tokens differ", i, bad,
			  NTOK);
	}
}

static void x_queue(struct xthread *x)
{
	static float in[2][NTOK * DIM], y[2][NTOK * DIM], r[NTOK * DIM];
	struct moex_cqe cqe[2];
	int got = 0, n;

	/* an io_uring ring belongs to the thread that made it */
	if (uring_queue_on_null(32, true, &x->dev, &x->q)) {
		x->dev = NULL;
		CHECK_INT(moex_queue_create(NULL, NULL, &x->q), 0);
	}
	for (int i = 0; i < 2; i++) {
		for (size_t k = 0; k < NTOK * DIM; k++)
			in[i][k] = frand();
		CHECK_INT(moex_queue_moe(x->q, x->m, in[i], NTOK, y[i], NULL,
					 70 + i), 0);
	}
	CHECK_INT(moex_queue_submit(x->q), 2);
	while (got < 2) {
		n = moex_queue_wait(x->q, cqe, 2, 1, 20000);
		CHECK_MSG(n > 0, "wait: %d", n);
		for (int i = 0; i < n; i++)
			CHECK_INT(cqe[i].res, 0);
		got += n;
	}
	for (int i = 0; i < 2; i++) {
		CHECK_INT(moex_moe_run_reference(x->m, in[i], NTOK, r, NULL), 0);
		CHECK(bad_tokens(y[i], r, NTOK, tol_of(MOEX_DTYPE_BF16)) <= 1);
	}
	moex_queue_destroy(x->q);
	if (x->dev)
		moex_close(x->dev);
}

static void x_destroy(struct xthread *x)
{
	struct moex_moe_stats st = { .size = sizeof(st) };

	CHECK_INT(moex_moe_stats(x->m, &st), 0);
	CHECK_MSG(st.fills > 0 && st.gpu_hits > 0 && st.stream_bytes > 0,
		  "fills %llu hits %llu streamed %llu",
		  (unsigned long long)st.fills,
		  (unsigned long long)st.gpu_hits,
		  (unsigned long long)st.stream_bytes);
	CHECK_INT(moex_moe_destroy(x->m), 0);
	x->m = NULL;
}

/*
 * After the layer with an expert cache: its registrations of the weights'
 * pages are gone (undone on the GPU that made them: on another, CUDA
 * says not registered, and they stay), so that GPU can register the
 * whole buffer.
 */
static void x_unregistered(struct xthread *x)
{
	struct moek_hip_ctx *ctx;
	void *alias;

	CHECK_INT(x->create(x->gpu, &ctx), 0);
	CHECK_MSG(x->host_register(x->h.mem, x->h.len, &alias) == 0,
		  "the layer's registrations outlived it");
	CHECK_INT(x->host_unregister(x->h.mem), 0);
	x->destroy(ctx);
}

/* the last layer: the GPU goes with it */
static void x_destroy2(struct xthread *x)
{
	CHECK_INT(moex_moe_destroy(x->m2), 0);
	x->m2 = NULL;
}

TEST(threads_share_the_gpu_moex_gpu_names)
{
	static struct xthread x;
	const char *lib = getenv("MOEX_HIP_LIB");
	char gpu[16], name[64] = "";
	void *plugin;
	int (*dev_name)(int, char *, size_t) = NULL;

	NEED_GPU();
	if (g_gpus < 2)
		SKIP("one GPU: nothing to tell MOEX_GPU=1 from 0 (hipemu: "
		     "HIPEMU_DEVICES=2)");
	memset(&x, 0, sizeof(x));
	/* hipemu's device 0 memory, through the plugin libmoex loaded */
	plugin = lib ? dlopen(lib, RTLD_NOW | RTLD_NOLOAD) : NULL;
	if (plugin) {
		*(void **)&dev_name = dlsym(plugin, "moek_hip_device_name");
		if (dev_name && !dev_name(0, name, sizeof(name)) &&
		    !strncmp(name, "hipemu", 6))
			*(void **)&x.mem_info = dlsym(plugin,
						      "moek_hip_mem_info");
		*(void **)&x.create = dlsym(plugin, "moek_hip_create");
		*(void **)&x.destroy = dlsym(plugin, "moek_hip_destroy");
		*(void **)&x.host_register = dlsym(plugin,
						   "moek_hip_host_register");
		*(void **)&x.host_unregister =
			dlsym(plugin, "moek_hip_host_unregister");
		dlclose(plugin);	/* libmoex keeps it loaded */
	}
	if (x.mem_info)
		on_new_thread(&x, x_free0);
	x.gpu = g_gpus - 1;
	snprintf(gpu, sizeof(gpu), "%d", x.gpu);
	setenv("MOEX_GPU", gpu, 1);
	CHECK_INT(hweights_make(&x.h, MOEX_DTYPE_BF16), 0);
	for (int e = 0; e < NE; e++)
		x.h.bias[e] = e >= NE - 8 ? 4.0f : 0.0f;
	step(&x, x_create);
	if (h_result != H_FAIL)
		step(&x, x_create2);
	if (h_result != H_FAIL)
		step(&x, x_runs);
	if (h_result != H_FAIL)
		step(&x, x_queue);
	if (x.m)
		step(&x, x_destroy);
	if (h_result != H_FAIL && x.create && x.destroy && x.host_register &&
	    x.host_unregister)
		step(&x, x_unregistered);
	if (x.m2)
		step(&x, x_destroy2);
	moex_moe_destroy(x.m);
	moex_moe_destroy(x.m2);
	unsetenv("MOEX_GPU");
	hweights_free(&x.h);
}

/* A MOEX_GPU that names no GPU fails the layer, and says so. */
TEST(bad_moex_gpu_fails_the_layer)
{
	static const struct { const char *v; int want; } cases[] = {
		{ "abc", -EINVAL }, { "-1", -EINVAL }, { "1x", -EINVAL },
		{ " 0", -EINVAL }, { "99999999999", -EINVAL },
		{ "4096", -ENODEV },
	};
	struct moex_moe_opts o = { .size = sizeof(o), .backend = "hip" };
	struct hweights h;
	struct moex_moe *m = NULL;

	NEED_GPU();
	CHECK_INT(hweights_make(&h, MOEX_DTYPE_BF16), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("MOEX_GPU", cases[i].v, 1);
		CHECK_MSG(moex_moe_create(&h.d, &h.w, &o, &m) == cases[i].want &&
			  !m, "MOEX_GPU=%s: not %d", cases[i].v, cases[i].want);
	}
	setenv("MOEX_GPU", "", 1);	/* empty: the default, 0 */
	CHECK_INT(moex_moe_create(&h.d, &h.w, &o, &m), 0);
	CHECK_INT(moex_moe_destroy(m), 0);
	unsetenv("MOEX_GPU");
	hweights_free(&h);
}

RUN_TESTS(T(probe), T(resident_bf16), T(resident_fp8),
	  T(cache_bf16_streams_and_fills), T(cache_fp8_streams_and_fills),
	  T(queue_sync), T(queue_uring_completions_from_the_gpu),
	  T(threads_share_the_gpu_moex_gpu_names),
	  T(bad_moex_gpu_fails_the_layer))
