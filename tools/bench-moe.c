/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * bench-moe.c - `moex-bench moe`: the CPU MoE layer (kernels/cpu) measured
 * against the memory bandwidth of the same machine, natively.
 *
 *   moex-bench moe [--json] [--threads N] [--isa scalar|avx2|avx512]
 *                  [--reps N] [--mem-gb G] [--quick] [--no-shared] [--f32]
 *
 * 1. A STREAM-style triad a[i] = b[i] + s * c[i] on the pool's threads,
 *    three arrays of 256 MiB each (far beyond any LLC); GB/s counts the
 *    three arrays' bytes, as STREAM does.
 * 2. DeepSeek-V2-Lite and DeepSeek-V3 layers with bf16 and FP8 weights at
 *    batch 1, 16, 128 and 512: tokens/s and the effective bandwidth,
 *    moek_active_bytes() of the batch's routes over the time. Weights are
 *    distinct up to --mem-gb (default 6) GB and the experts beyond it
 *    alias the distinct ones (printed): every expert is far larger than
 *    the LLC, so aliasing does not let a batch-1 layer hit the cache.
 *    FP8 at batch 1 also gives *_fp8_b1_prefetch_gain: the layer's time
 *    without the FP8 tiles' prefetch over its time with it, runs of each
 *    interleaved.
 * 3. The triad again (triad_bw_end); the ratios use the better of the
 *    two, so a busy machine can only make them look worse.
 * 4. The ratios decode_b1_bw_ratio_bf16 and decode_b1_bw_ratio_fp8: the
 *    V3 layer's effective GB/s at batch 1 over the triad's GB/s (V2-Lite's
 *    as decode_b1_bw_ratio_*_v2_lite). Target: 0.8.
 *
 * Each figure is the median of --reps (default 5) runs after a warm-up.
 * --quick runs small shapes at batch 1 and 16 (a smoke test for CI; its
 * ratios carry a _quick suffix: the working set is not beyond the LLC).
 * --no-shared drops the shared experts (names get _no_shared: the routed
 * experts alone, as ggml's MUL_MAT_ID measures them) and --f32 adds f32
 * weights to bf16 and fp8 (Documentation/moe-kernels.rst, side by side).
 * With --json every figure is one line {"suite": "moe", "name": ...,
 * "value": ..., "unit": ...}.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "moek.h"
#include "../kernels/cpu/cpu.h"
#include "bench-moe.h"

static int reps = 5;

#define now bench_now
#define median bench_median
#define report bench_report
#define report_ratio bench_report_ratio

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	if (bench_json)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

/* Anonymous memory on transparent huge pages where the kernel has them
 * (libmoex keeps weights on huge pages too). */
static void *big_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_HUGEPAGE);
	return p;
}

static void big_free(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

/* ---- parallel fill and triad on the pool ------------------------------ */

struct par {
	void *p;
	size_t len;
	uint32_t type;	/* fill: what to write */
	uint64_t seed;
	double *a, *b, *c;
	size_t n;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* Random weights, 8 bytes at a time: bf16 of magnitude below 2^-5, e4m3
 * bytes below 2 in magnitude (never NaN), f32 below 2^-6, or f32 scales
 * near 1/448 (BENCH_FILL_SCALES). */
static void fill_job(void *arg, unsigned int tid, unsigned int nt)
{
	struct par *p = arg;
	size_t nw = p->len / 8, i0 = nw * tid / nt, i1 = nw * (tid + 1) / nt, i;
	uint64_t *w = p->p, x = mix(p->seed + tid);

	for (i = i0; i < i1; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (p->type == MOEK_BF16)
			w[i] = (x & 0x807f807f807f807full) |
			       0x3c003c003c003c00ull;
		else if (p->type == MOEK_FP8_E4M3)
			w[i] = x & 0xb7b7b7b7b7b7b7b7ull;
		else if (p->type == MOEK_F32)
			w[i] = (x & 0x807fffff807fffffull) |
			       0x3c0000003c000000ull;
		else
			w[i] = 0x3b1249003b124900ull;	/* 2.23e-3 f32 */
	}
	if (tid == nt - 1)
		memset((char *)p->p + nw * 8, 0x3c, p->len - nw * 8);
}

void bench_fill(void *mem, size_t len, uint32_t type, uint64_t seed)
{
	struct par p = { .p = mem, .len = len, .type = type, .seed = seed };

	fill_job(&p, 0, 1);
}

static void fill(struct moek_cpu *c, void *mem, size_t len, uint32_t type,
		 uint64_t seed)
{
	struct par p = { .p = mem, .len = len, .type = type, .seed = seed };

	moek_pool_run(c->pool, fill_job, &p);
}

static void triad_job(void *arg, unsigned int tid, unsigned int nt)
{
	struct par *p = arg;
	size_t i0 = p->n * tid / nt, i1 = p->n * (tid + 1) / nt, i;
	double *a = p->a;
	const double *b = p->b, *c = p->c;
	const double s = 3.0;

	for (i = i0; i < i1; i++)
		a[i] = b[i] + s * c[i];
}

static void init_job(void *arg, unsigned int tid, unsigned int nt)
{
	struct par *p = arg;
	size_t i0 = p->n * tid / nt, i1 = p->n * (tid + 1) / nt, i;

	for (i = i0; i < i1; i++) {
		p->a[i] = 0.0;
		p->b[i] = 1.0;
		p->c[i] = 2.0;
	}
}

/* GB/s of the triad (median of reps) over arrays of n doubles. */
static double triad(struct moek_cpu *c, size_t n)
{
	size_t len = n * sizeof(double);
	struct par p = { .n = n };
	double t[64], gbs;
	int r;

	p.a = big_alloc(len);
	p.b = big_alloc(len);
	p.c = big_alloc(len);
	if (!p.a || !p.b || !p.c) {
		gbs = 0;
		goto out;
	}
	moek_pool_run(c->pool, init_job, &p);
	moek_pool_run(c->pool, triad_job, &p);	/* warm-up */
	for (r = 0; r < reps; r++) {
		double t0 = now();

		moek_pool_run(c->pool, triad_job, &p);
		t[r] = now() - t0;
	}
	gbs = 3.0 * (double)len / median(t, reps) / 1e9;
out:
	big_free(p.a, len);
	big_free(p.b, len);
	big_free(p.c, len);
	return gbs;
}

/* ---- layers ------------------------------------------------------------- */

const struct shape_def bench_shapes[2] = {
	{ "v2_lite", {
		.dim = 2048, .inter = 1408, .n_experts = 64, .topk = 6,
		.n_shared = 2, .score = MOEK_SCORE_SOFTMAX,
		.route_scale = 1.0f }, 0 },
	{ "v3", {
		.dim = 7168, .inter = 2048, .n_experts = 256, .topk = 8,
		.n_groups = 8, .topk_groups = 4, .n_shared = 1,
		.score = MOEK_SCORE_SIGMOID, .norm_topk = 1,
		.route_scale = 2.5f }, 1 },
};

const struct shape_def bench_quick_shapes[2] = {
	{ "v2_lite", {
		.dim = 512, .inter = 352, .n_experts = 16, .topk = 6,
		.n_shared = 2, .score = MOEK_SCORE_SOFTMAX,
		.route_scale = 1.0f }, 0 },
	{ "v3", {
		.dim = 896, .inter = 256, .n_experts = 32, .topk = 8,
		.n_groups = 8, .topk_groups = 4, .n_shared = 1,
		.score = MOEK_SCORE_SIGMOID, .norm_topk = 1,
		.route_scale = 2.5f }, 1 },
};

/* One region holding a layer's distinct weights. */
struct bench_layer {
	struct moek_shape s;
	struct moek_weights wt;
	struct moek_ffn *experts;
	void *mem;
	size_t len;
	uint32_t distinct;
};

static size_t mat_bytes(const struct moek_shape *s, size_t r, size_t c)
{
	size_t b = moek_matrix_bytes(s->wtype, r, c);

	return (b + 4095) & ~(size_t)4095;
}

static size_t scale_bytes(const struct moek_shape *s, size_t r, size_t c)
{
	if (s->wtype != MOEK_FP8_E4M3)
		return 0;
	return (moek_scale_count(r, c) * sizeof(float) + 4095) &
	       ~(size_t)4095;
}

static size_t ffn_bytes(const struct moek_shape *s, size_t width)
{
	return 2 * (mat_bytes(s, width, s->dim) + scale_bytes(s, width, s->dim)) +
	       mat_bytes(s, s->dim, width) + scale_bytes(s, s->dim, width);
}

/* Lay out an FFN at *off in the region; fill its bytes. */
static void place_ffn(struct moek_cpu *c, struct bench_layer *l,
		      struct moek_ffn *f, size_t width, size_t *off)
{
	const struct moek_shape *s = &l->s;
	char *base = l->mem;
	struct { const void **w; const float **sc; size_t r, c; } m[3] = {
		{ &f->w1, &f->s1, width, s->dim },
		{ &f->w3, &f->s3, width, s->dim },
		{ &f->w2, &f->s2, s->dim, width },
	};
	int i;

	for (i = 0; i < 3; i++) {
		size_t mb = mat_bytes(s, m[i].r, m[i].c);
		size_t sb = scale_bytes(s, m[i].r, m[i].c);

		*m[i].w = base + *off;
		fill(c, base + *off, mb, s->wtype, *off);
		*off += mb;
		*m[i].sc = NULL;
		if (sb) {
			*m[i].sc = (const float *)(const void *)(base + *off);
			fill(c, base + *off, sb, BENCH_FILL_SCALES, *off);
			*off += sb;
		}
	}
}

/* --no-shared: layers without their shared experts (to compare with
 * routed-expert GEMMs alone, as ggml's MUL_MAT_ID). */
static bool no_shared;

static int layer_make(struct moek_cpu *c, struct bench_layer *l,
		      const struct shape_def *d, uint32_t wtype, double mem_gb)
{
	const struct moek_shape *s;
	size_t fixed, per, budget = (size_t)(mem_gb * 1e9), off = 0, gb;
	uint32_t e;

	memset(l, 0, sizeof(*l));
	l->s = d->s;
	l->s.wtype = wtype;
	l->s.gtype = MOEK_BF16;
	if (no_shared)
		l->s.n_shared = 0;
	s = &l->s;
	gb = (moek_matrix_bytes(MOEK_BF16, s->n_experts, s->dim) + 4095) &
	     ~(size_t)4095;
	fixed = gb + 4096 + (s->n_shared ? ffn_bytes(s, (size_t)s->n_shared *
							     s->inter) : 0);
	per = ffn_bytes(s, s->inter);
	l->distinct = budget > fixed ? (uint32_t)((budget - fixed) / per) : 0;
	if (l->distinct > s->n_experts)
		l->distinct = s->n_experts;
	if (l->distinct < s->topk)
		l->distinct = s->topk;
	l->len = fixed + (size_t)l->distinct * per;
	l->mem = big_alloc(l->len);
	l->experts = calloc(s->n_experts, sizeof(*l->experts));
	if (!l->mem || !l->experts)
		return -ENOMEM;

	l->wt.gate = l->mem;
	fill(c, l->mem, gb, MOEK_BF16, 1);
	off = gb;
	if (d->bias) {
		float *b = (float *)(void *)((char *)l->mem + off);

		for (e = 0; e < s->n_experts; e++)
			b[e] = 0.0f;
		l->wt.bias = b;
	}
	off += 4096;
	if (s->n_shared)
		place_ffn(c, l, &l->wt.shared, (size_t)s->n_shared * s->inter,
			  &off);
	for (e = 0; e < l->distinct; e++)
		place_ffn(c, l, &l->experts[e], s->inter, &off);
	for (; e < s->n_experts; e++)
		l->experts[e] = l->experts[e % l->distinct];
	l->wt.experts = l->experts;
	return 0;
}

static void layer_free(struct bench_layer *l)
{
	big_free(l->mem, l->len);
	free(l->experts);
}

const char *bench_type_name(uint32_t t)
{
	return t == MOEK_FP8_E4M3 ? "fp8" : t == MOEK_BF16 ? "bf16" : "f32";
}

/*
 * What the FP8 tiles' prefetch gains at this batch: runs with it and
 * without it, interleaved (so that a neighbour's load falls on both), 4
 * times --reps each; the median time without over the median with.
 */
static double prefetch_gain(struct moek_cpu *c, const struct bench_layer *l,
			    const float *x, size_t ntok, float *y)
{
	double on[256], off[256];
	int r, n = 4 * reps;

	for (r = 0; r < 2 * n; r++) {
		double t0, *t = r & 1 ? &on[r / 2] : &off[r / 2];

		moek_cpu_set_prefetch(c, r & 1);
		t0 = now();
		moek_cpu_layer(c, &l->s, &l->wt, x, ntok, y, NULL);
		*t = now() - t0;
	}
	moek_cpu_set_prefetch(c, 1);
	return median(off, n) / median(on, n);
}

/*
 * Time one shape/dtype at each batch size; returns the batch-1 effective
 * GB/s (0 on an error). FP8 also reports prefetch_gain() at batch 1.
 */
static double run_layer(struct moek_cpu *c, const struct shape_def *d,
			uint32_t wtype, const size_t *batches, int nb,
			double mem_gb)
{
	struct bench_layer l;
	double b1 = 0;
	uint64_t x64 = 12345;
	int bi, r;

	if (layer_make(c, &l, d, wtype, mem_gb)) {
		fprintf(stderr, "moex-bench moe: out of memory for %s %s\n",
			d->name, bench_type_name(wtype));
		layer_free(&l);
		return 0;
	}
	note("\n%s %s: %u of %u experts distinct (%.2f GB of weights), the rest alias them\n",
	     d->name, bench_type_name(wtype), l.distinct, l.s.n_experts,
	     (double)l.len / 1e9);
	for (bi = 0; bi < nb; bi++) {
		size_t ntok = batches[bi], n = ntok * l.s.dim, i, bytes;
		float *x = malloc(n * sizeof(float)), *y;
		uint32_t *counts = calloc(l.s.n_experts, sizeof(uint32_t));
		double t[64], tm;
		char name[96];

		y = malloc(n * sizeof(float));
		if (!x || !y || !counts) {
			free(x);
			free(y);
			free(counts);
			break;
		}
		for (i = 0; i < n; i++) {
			x64 = mix(x64 + i);
			x[i] = (float)((double)(x64 >> 11) / 9007199254740992.0 -
				       0.5);
		}
		if (moek_cpu_layer(c, &l.s, &l.wt, x, ntok, y, counts)) {
			fprintf(stderr, "moex-bench moe: layer failed\n");
			free(x);
			free(y);
			free(counts);
			break;
		}
		for (r = 0; r < reps; r++) {
			double t0 = now();

			moek_cpu_layer(c, &l.s, &l.wt, x, ntok, y, NULL);
			t[r] = now() - t0;
		}
		tm = median(t, reps);
		bytes = moek_active_bytes(&l.s, counts);
		snprintf(name, sizeof(name), "%s%s_%s_b%zu_tokens", d->name,
			 no_shared ? "_no_shared" : "", bench_type_name(wtype),
			 ntok);
		report(name, (double)ntok / tm, "tokens/s");
		snprintf(name, sizeof(name), "%s%s_%s_b%zu_eff_bw", d->name,
			 no_shared ? "_no_shared" : "", bench_type_name(wtype),
			 ntok);
		report(name, (double)bytes / tm / 1e9, "GB/s");
		note("%40s %14.3f ms, %.1f MB of active weights\n", "",
		     tm * 1e3, (double)bytes / 1e6);
		if (ntok == 1)
			b1 = (double)bytes / tm / 1e9;
		if (ntok == 1 && wtype == MOEK_FP8_E4M3) {
			snprintf(name, sizeof(name),
				 "%s%s_fp8_b1_prefetch_gain", d->name,
				 no_shared ? "_no_shared" : "");
			report(name, prefetch_gain(c, &l, x, ntok, y), "x");
			note("%40s time without the FP8 prefetch over time with it\n",
			     "");
		}
		free(x);
		free(y);
		free(counts);
	}
	layer_free(&l);
	return b1;
}

static void usage(FILE *f)
{
	fputs("usage: moex-bench moe [--backend cpu] [--json] [--threads N]\n"
	      "                      [--isa scalar|avx2|avx512] [--reps N] [--mem-gb G]\n"
	      "                      [--quick] [--no-shared] [--f32]\n"
	      "       moex-bench moe --backend hip [--help for its options]\n", f);
}

int bench_moe_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "threads", required_argument, NULL, 't' },
		{ "isa", required_argument, NULL, 'i' },
		{ "reps", required_argument, NULL, 'r' },
		{ "mem-gb", required_argument, NULL, 'm' },
		{ "quick", no_argument, NULL, 'q' },
		{ "no-shared", no_argument, NULL, 'n' },
		{ "f32", no_argument, NULL, 'f' },
		{ "backend", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const size_t full_batches[] = { 1, 16, 128, 512 };
	static const size_t quick_batches[] = { 1, 16 };
	static const uint32_t types[] = { MOEK_BF16, MOEK_FP8_E4M3, MOEK_F32 };
	int ntypes = 2;
	enum moek_isa isa = MOEK_ISA_AVX512;
	const struct shape_def *sh = bench_shapes;
	const size_t *batches = full_batches;
	unsigned int threads = 0;
	double mem_gb = 6.0, tri, tri_end, b1[2][3];
	bool quick = false;
	struct moek_cpu *c;
	size_t tri_n = (256u << 20) / sizeof(double);
	int nb = 4, o, si, ti;
	char name[96];
	long v;

	/* the GPU has a suite of its own (tools/bench-gpu.c) */
	for (o = 1; o < argc; o++)
		if ((!strcmp(argv[o], "--backend") && o + 1 < argc &&
		     !strcmp(argv[o + 1], "hip")) ||
		    !strcmp(argv[o], "--backend=hip"))
			return bench_gpu_main(argc, argv);
	bench_suite = "moe";
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'j':
			bench_json = true;
			break;
		case 't':
			/* the CPU pool's limit (moek_cpu_create): "abc" was
			 * the default and 2000 "cannot create the CPU context" */
			if (bench_parse_int(optarg, 1, MOEK_CPU_MAX_THREADS, &v)) {
				usage(stderr);
				return 2;
			}
			threads = (unsigned int)v;
			break;
		case 'i':
			if (!strcmp(optarg, "scalar"))
				isa = MOEK_ISA_SCALAR;
			else if (!strcmp(optarg, "avx2"))
				isa = MOEK_ISA_AVX2;
			else if (!strcmp(optarg, "avx512"))
				isa = MOEK_ISA_AVX512;
			else {
				usage(stderr);
				return 2;
			}
			break;
		case 'r':
			if (bench_parse_int(optarg, 1, 64, &v)) {
				usage(stderr);
				return 2;
			}
			reps = (int)v;
			break;
		case 'm':
			if (bench_parse_positive(optarg, &mem_gb)) {
				usage(stderr);
				return 2;
			}
			break;
		case 'q':
			quick = true;
			break;
		case 'n':
			no_shared = true;
			break;
		case 'f':
			ntypes = 3;
			break;
		case 'b':
			/* hip went to bench_gpu_main() above */
			if (strcmp(optarg, "cpu")) {
				fprintf(stderr, "moex-bench moe: bad value '%s' for --backend (cpu or hip)\n",
					optarg);
				usage(stderr);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (quick) {
		sh = bench_quick_shapes;
		batches = quick_batches;
		nb = 2;
		tri_n = (16u << 20) / sizeof(double);
	}
	if (moek_cpu_create(threads, isa, &c)) {
		fprintf(stderr, "moex-bench moe: cannot create the CPU context\n");
		return 1;
	}
	note("moe: %u threads, %s kernels, %d runs per figure (median)\n",
	     moek_cpu_threads(c), moek_isa_name(moek_cpu_isa(c)), reps);
	report("threads", moek_cpu_threads(c), "threads");

	tri = triad(c, tri_n);
	report("triad_bw", tri, "GB/s");

	for (si = 0; si < 2; si++)
		for (ti = 0; ti < ntypes; ti++)
			b1[si][ti] = run_layer(c, &sh[si], types[ti], batches,
					       nb, mem_gb);
	/* The machine may be shared: measure the triad again and hold the
	 * layers to the better of the two (the ratios can only drop). */
	tri_end = triad(c, tri_n);
	report("triad_bw_end", tri_end, "GB/s");
	if (tri_end > tri)
		tri = tri_end;
	note("\n");
	for (ti = 0; ti < 2; ti++) {
		snprintf(name, sizeof(name), "decode_b1_bw_ratio_%s%s%s",
			 bench_type_name(types[ti]),
			 no_shared ? "_no_shared" : "", quick ? "_quick" : "");
		report_ratio(name, tri > 0 ? b1[1][ti] / tri : 0, 0.8);
	}
	for (ti = 0; ti < 2; ti++) {
		snprintf(name, sizeof(name), "decode_b1_bw_ratio_%s_v2_lite%s%s",
			 bench_type_name(types[ti]),
			 no_shared ? "_no_shared" : "", quick ? "_quick" : "");
		report_ratio(name, tri > 0 ? b1[0][ti] / tri : 0, 0.8);
	}
	moek_cpu_destroy(c);
	return 0;
}
