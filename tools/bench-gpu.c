/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * bench-gpu.c - `moex-bench moe --backend hip`: the GPU MoE layer
 * (kernels/hip, through the plugin libmoex loads) against three anchors
 * measured in the same run on the same GPU.
 *
 *   moex-bench moe --backend hip [--json] [--reps N] [--mem-gb G]
 *                  [--torch SCRIPT|none] [--quick]
 *
 * 1. copy_bw: a plain grid-stride copy kernel over two 1 GiB device
 *    buffers, GB/s of bytes read plus written (moek_hip_copy_kernel).
 * 2. DeepSeek-V2-Lite and V3 layers, bf16 and fp8, with every weight in
 *    device memory (distinct experts up to --mem-gb, default 40, the rest
 *    alias them), at batch 1, 16, 64, 128 and 512: tokens/s and the
 *    effective GB/s of the active expert bytes (moek_active_bytes), the
 *    layer alone between two events on device activations.
 *    gpu_decode_b1_bw_ratio: V3 fp8 at batch 1 over copy_bw (also _bf16,
 *    and b16, b64 as figures). Target 0.7.
 * 3. Streaming: V3 fp8 at batch 1 with the routed experts in pinned host
 *    memory, read by the kernels over the bus (what the expert cache does
 *    for a miss), against memcpy_h2d_bw, an asynchronous copy of the same
 *    bytes from pinned memory to the device. stream_vs_memcpy, target 0.9.
 * 4. gpu_prefill_b512_vs_torch: PyTorch's time for the same V3 bf16 layer
 *    at batch 512 (tools/torch-moe.py: torch._grouped_mm, or a loop over
 *    experts where it is missing) over moex's. Target 1.0. Skipped, and
 *    said, when python3 or torch is missing (--torch none skips it).
 *
 * Each figure is the median of --reps (default 10) after two warm-ups.
 * Without a GPU (or the plugin) it says why and exits 0 with nothing
 * measured. --quick runs small shapes at batch 1 and 16 (a smoke test).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/src/hip.h"
#include "bench-moe.h"
#include "moex.h"

#define GPU_REPS_MAX 64
#define PATTERN_BYTES (64u << 20)	/* random bytes uploaded in turns */

static const struct moex_hip_api *api;
static void *stream;
static void *ev0, *ev1;
static int reps = 10;

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

/* ---- timing ---- */

/* Start timing work queued on the bench stream. */
static int tic(void)
{
	return api->event_record(ev0, stream);
}

/* Seconds since tic(), once the work is done; a negative errno on error. */
static double toc(void)
{
	float ms = 0;
	int r = api->event_record(ev1, stream);

	if (!r)
		r = api->event_sync(ev1);
	if (!r)
		r = api->event_elapsed(ev0, ev1, &ms);
	return r ? r : (double)ms / 1e3;
}

/* ---- device memory filled with random weights ---- */

struct dmem {
	void *p;
	size_t len;
};

/* len bytes of random values of type t on the device (or, host, pinned). */
static int dmem_fill(struct dmem *m, size_t len, uint32_t t, bool host)
{
	static void *pattern[4];	/* per type, pinned */
	int ti = t == MOEK_BF16 ? 0 : t == MOEK_FP8_E4M3 ? 1 :
		 t == MOEK_F32 ? 2 : 3;
	size_t off;
	int r;

	m->len = len;
	r = host ? api->host_alloc(len, &m->p) : api->malloc(len, &m->p);
	if (r)
		return r;
	if (!pattern[ti]) {
		r = api->host_alloc(PATTERN_BYTES, &pattern[ti]);
		if (r)
			return r;
		bench_fill(pattern[ti], PATTERN_BYTES, t, 0x5eed + ti);
	}
	for (off = 0; off < len && !r; off += PATTERN_BYTES) {
		size_t n = len - off < PATTERN_BYTES ? len - off : PATTERN_BYTES;

		r = api->copy_async((char *)m->p + off, pattern[ti], n, stream);
	}
	return r ? r : api->sync(stream);
}

static void dmem_free(struct dmem *m, bool host)
{
	if (host)
		api->host_free(m->p);
	else
		api->free(m->p);
	m->p = NULL;
}

/* ---- a layer with its weights on the device (or in pinned host memory) ---- */

struct glayer {
	struct moek_shape s;
	struct moek_weights wt;
	struct moek_ffn *experts;
	struct dmem fixed;	/* gate, bias, shared: device */
	struct dmem mats[6];	/* routed experts' w1, w3, w2, s1, s3, s2 */
	uint32_t distinct;
	bool host;		/* routed experts in host memory */
};

static void glayer_free(struct glayer *l)
{
	dmem_free(&l->fixed, false);
	for (int i = 0; i < 6; i++)
		dmem_free(&l->mats[i], l->host);
	free(l->experts);
	memset(l, 0, sizeof(*l));
}

static int glayer_make(struct glayer *l, const struct shape_def *d,
		       uint32_t wtype, double mem_gb, bool host)
{
	struct moek_shape *s = &l->s;
	const bool fp8 = wtype == MOEK_FP8_E4M3;
	size_t mb[6], per = 0, gb, shw, budget = (size_t)(mem_gb * 1e9);
	struct moek_ffn sh;
	uint32_t e;
	int r, i;

	memset(l, 0, sizeof(*l));
	l->host = host;
	*s = d->s;
	s->wtype = wtype;
	s->gtype = MOEK_BF16;
	mb[0] = moek_matrix_bytes(wtype, s->inter, s->dim);
	mb[1] = mb[0];
	mb[2] = moek_matrix_bytes(wtype, s->dim, s->inter);
	mb[3] = fp8 ? moek_scale_count(s->inter, s->dim) * sizeof(float) : 0;
	mb[4] = mb[3];
	mb[5] = fp8 ? moek_scale_count(s->dim, s->inter) * sizeof(float) : 0;
	for (i = 0; i < 6; i++)
		per += mb[i];
	l->distinct = (uint32_t)(budget / per);
	if (l->distinct > s->n_experts)
		l->distinct = s->n_experts;
	if (l->distinct < s->topk)
		l->distinct = s->topk;
	l->experts = calloc(s->n_experts, sizeof(*l->experts));
	if (!l->experts)
		return -ENOMEM;

	/* gate, bias (zero), then the shared FFN as one [n_shared*inter] */
	gb = moek_matrix_bytes(MOEK_BF16, s->n_experts, s->dim);
	shw = (size_t)s->n_shared * s->inter;
	{
		size_t smb[6] = {
			moek_matrix_bytes(wtype, shw, s->dim),
			moek_matrix_bytes(wtype, shw, s->dim),
			moek_matrix_bytes(wtype, s->dim, shw),
			fp8 ? moek_scale_count(shw, s->dim) * sizeof(float) : 0,
			fp8 ? moek_scale_count(shw, s->dim) * sizeof(float) : 0,
			fp8 ? moek_scale_count(s->dim, shw) * sizeof(float) : 0,
		};
		size_t off[7] = { 0 }, total, bias_off;
		char *b;

		bias_off = (gb + 255) & ~(size_t)255;
		off[0] = bias_off + ((s->n_experts * sizeof(float) + 255) &
				     ~(size_t)255);
		for (i = 0; i < 6; i++)
			off[i + 1] = off[i] + ((smb[i] + 255) & ~(size_t)255);
		total = s->n_shared ? off[6] : off[0];
		r = dmem_fill(&l->fixed, total, wtype, false);
		if (r)
			return r;
		b = l->fixed.p;
		/* the gate is bf16 and the scales f32: fill them as such */
		r = api->memset(b + bias_off, 0, s->n_experts * sizeof(float));
		if (r)
			return r;
		l->wt.gate = b;
		l->wt.bias = d->bias ? (const float *)(const void *)(b + bias_off) : NULL;
		memset(&sh, 0, sizeof(sh));
		if (s->n_shared) {
			sh.w1 = b + off[0];
			sh.w3 = b + off[1];
			sh.w2 = b + off[2];
			sh.s1 = fp8 ? (const float *)(const void *)(b + off[3]) : NULL;
			sh.s3 = fp8 ? (const float *)(const void *)(b + off[4]) : NULL;
			sh.s2 = fp8 ? (const float *)(const void *)(b + off[5]) : NULL;
		}
		l->wt.shared = sh;
	}
	for (i = 0; i < 6; i++) {
		if (!mb[i])
			continue;
		r = dmem_fill(&l->mats[i], mb[i] * l->distinct,
			      i < 3 ? wtype : BENCH_FILL_SCALES, host);
		if (r)
			return r;
	}
	for (e = 0; e < s->n_experts; e++) {
		uint32_t k = e % l->distinct;
		void *p[6];

		for (i = 0; i < 6; i++) {
			p[i] = mb[i] ? (char *)l->mats[i].p + k * mb[i] : NULL;
			if (p[i] && host) {
				r = api->host_alias(p[i], &p[i]);
				if (r)
					return r;
			}
		}
		l->experts[e].w1 = p[0];
		l->experts[e].w3 = p[1];
		l->experts[e].w2 = p[2];
		l->experts[e].s1 = p[3];
		l->experts[e].s3 = p[4];
		l->experts[e].s2 = p[5];
	}
	l->wt.experts = l->experts;
	return 0;
}

/*
 * The median seconds of one layer run on ntok tokens of device x, and its
 * active bytes; a negative value on an error.
 */
static double glayer_time(struct moek_hip_ctx *ctx, struct glayer *l,
			  size_t ntok, uint64_t *active)
{
	struct dmem x = { 0 }, y = { 0 };
	uint32_t *counts = NULL;
	double t[GPU_REPS_MAX], tm = -EIO;
	int r, i;

	counts = calloc(l->s.n_experts, sizeof(*counts));
	if (!counts)
		return -ENOMEM;
	r = dmem_fill(&x, ntok * l->s.dim * sizeof(float), MOEK_F32, false);
	if (!r)
		r = api->malloc(ntok * l->s.dim * sizeof(float), &y.p);
	/* two warm-ups, the second telling the routes */
	if (!r)
		r = api->layer(ctx, &l->s, &l->wt, x.p, ntok, y.p, NULL, stream);
	if (!r)
		r = api->layer(ctx, &l->s, &l->wt, x.p, ntok, y.p, counts,
			       stream);
	for (i = 0; !r && i < reps; i++) {
		r = tic();
		if (!r)
			r = api->layer(ctx, &l->s, &l->wt, x.p, ntok, y.p, NULL,
				       stream);
		t[i] = r ? r : toc();
		if (t[i] < 0)
			r = (int)t[i];
	}
	if (!r) {
		tm = bench_median(t, reps);
		*active = moek_active_bytes(&l->s, counts);
	} else {
		tm = r;
	}
	dmem_free(&x, false);
	dmem_free(&y, false);
	free(counts);
	return tm;
}

/*
 * GB/s of copying len bytes to device memory: from device memory by the
 * copy kernel (bytes read plus written: the device's bandwidth), or from
 * pinned host memory by an asynchronous copy (bytes moved over the bus).
 */
static double copy_bw(size_t len, bool from_host)
{
	struct dmem src = { 0 }, dst = { 0 };
	double t[GPU_REPS_MAX], bw = 0;
	int r, i;

	r = dmem_fill(&src, len, MOEK_F32, from_host);
	if (!r)
		r = api->malloc(len, &dst.p);
	for (i = -1; !r && i < reps; i++) {	/* -1: the warm-up */
		r = i < 0 ? 0 : tic();
		if (!r)
			r = from_host ?
				api->copy_async(dst.p, src.p, len, stream) :
				api->copy_kernel(dst.p, src.p, len, stream);
		if (r || i < 0)
			continue;
		t[i] = toc();
		if (t[i] < 0)
			r = (int)t[i];
	}
	if (!r) {
		double tm = bench_median(t, reps);

		bw = tm > 0 ? (from_host ? 1.0 : 2.0) * (double)len / tm / 1e9 : 0;
	}
	dmem_free(&src, from_host);
	dmem_free(&dst, false);
	return bw;
}

/*
 * Time d/wtype at each batch; returns the effective GB/s at batch 1 and,
 * in *t512, the seconds at batch 512 (0 when not run).
 */
static double run_shape(struct moek_hip_ctx *ctx, const struct shape_def *d,
			uint32_t wtype, const size_t *batches, int nb,
			double mem_gb, double *t512, double bw_b[3])
{
	struct glayer l;
	double b1 = 0;
	char name[96];
	int r;

	r = glayer_make(&l, d, wtype, mem_gb, false);
	if (r) {
		fprintf(stderr, "moex-bench moe: %s %s: %s\n", d->name,
			bench_type_name(wtype), moex_strerror(r));
		glayer_free(&l);
		return 0;
	}
	note("\n%s %s on the GPU: %u of %u experts distinct, the rest alias them\n",
	     d->name, bench_type_name(wtype), l.distinct, l.s.n_experts);
	for (int bi = 0; bi < nb; bi++) {
		size_t ntok = batches[bi];
		uint64_t active = 0;
		double tm = glayer_time(ctx, &l, ntok, &active), gbs;

		if (tm <= 0) {
			fprintf(stderr, "moex-bench moe: %s %s b%zu: %s\n",
				d->name, bench_type_name(wtype), ntok,
				tm < 0 ? moex_strerror((int)tm) : "no time");
			continue;
		}
		gbs = (double)active / tm / 1e9;
		snprintf(name, sizeof(name), "gpu_%s_%s_b%zu_tokens", d->name,
			 bench_type_name(wtype), ntok);
		bench_report(name, (double)ntok / tm, "tokens/s");
		snprintf(name, sizeof(name), "gpu_%s_%s_b%zu_eff_bw", d->name,
			 bench_type_name(wtype), ntok);
		bench_report(name, gbs, "GB/s");
		note("%40s %10.3f ms, %.1f MB of active weights\n", "",
		     tm * 1e3, (double)active / 1e6);
		if (ntok == 1)
			b1 = gbs;
		if (bw_b && ntok == 16)
			bw_b[1] = gbs;
		if (bw_b && ntok == 64)
			bw_b[2] = gbs;
		if (t512 && ntok == 512)
			*t512 = tm;
	}
	glayer_free(&l);
	return b1;
}

/* V3 fp8 at batch 1 with the routed experts read from pinned host memory. */
static double stream_bw(struct moek_hip_ctx *ctx, const struct shape_def *d,
			double mem_gb, uint64_t *active)
{
	struct glayer l;
	double tm, bw = 0;
	int r;

	r = glayer_make(&l, d, MOEK_FP8_E4M3, mem_gb, true);
	if (!r) {
		tm = glayer_time(ctx, &l, 1, active);
		if (tm > 0)
			bw = (double)*active / tm / 1e9;
		else
			r = tm < 0 ? (int)tm : -EIO;
	}
	if (r)
		fprintf(stderr, "moex-bench moe: streaming from host memory: %s\n",
			moex_strerror(r));
	note("%40s %u of %u experts distinct in pinned host memory\n", "",
	     l.distinct, l.s.n_experts);
	glayer_free(&l);
	return bw;
}

/* PyTorch's median ms for the layer d (bf16) at ntok; 0 if it cannot. */
static double torch_ms(const char *script, const struct shape_def *d,
		       size_t ntok)
{
	char cmd[1024], line[256], impl[64] = "?";
	double ms = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "python3 %s --dim %u --inter %u --experts %u --topk %u --groups %u --topk-groups %u --shared %u --scoring %s --batch %zu --reps %d 2>&1",
		 script, d->s.dim, d->s.inter, d->s.n_experts, d->s.topk,
		 d->s.n_groups, d->s.topk_groups, d->s.n_shared,
		 d->s.score == MOEK_SCORE_SOFTMAX ? "softmax" : "sigmoid",
		 ntok, reps);
	f = popen(cmd, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "torch_ms %lf", &ms) == 1)
			continue;
		if (sscanf(line, "torch_impl %63s", impl) == 1)
			continue;
		/* stderr, so that --json's stdout stays JSON */
		fprintf(stderr, "torch-moe: %s", line);
	}
	if (pclose(f) != 0)
		ms = 0;
	note("%40s PyTorch (%s): %.3f ms\n", "", impl, ms);
	/* what the anchor measured: 1 torch._grouped_mm, 0 a loop */
	if (ms > 0)
		bench_report("torch_grouped_mm", !strcmp(impl, "grouped_mm"),
			     "bool");
	return ms;
}

static void usage(FILE *f)
{
	fputs("usage: moex-bench moe --backend hip [--json] [--reps N] [--mem-gb G]\n"
	      "                      [--torch SCRIPT|none] [--quick]\n", f);
}

int bench_gpu_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "json", no_argument, NULL, 'j' },
		{ "reps", required_argument, NULL, 'r' },
		{ "mem-gb", required_argument, NULL, 'm' },
		{ "torch", required_argument, NULL, 't' },
		{ "quick", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const size_t full_batches[] = { 1, 16, 64, 128, 512 };
	static const size_t quick_batches[] = { 1, 16 };
	static const uint32_t types[] = { MOEK_BF16, MOEK_FP8_E4M3 };
	const struct shape_def *sh = bench_shapes;
	const size_t *batches = full_batches;
	const char *script = "tools/torch-moe.py";
	double mem_gb = 40.0, cbw, cbw_end, hbw, sbw, b1[2][2] = { { 0 } };
	double t512 = 0, tms, bw_b[3] = { 0 };
	size_t copy_len = 1u << 30;
	struct moek_hip_ctx *ctx = NULL;
	uint64_t sactive = 0;
	char name[96], why[256], dev[128] = "?";
	bool quick = false;
	const char *mma;
	int nb = 5, o, err, gpu;
	long v;

	bench_suite = "moe";
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'b':
			if (strcmp(optarg, "hip")) {
				usage(stderr);
				return 2;
			}
			break;
		case 'j':
			bench_json = true;
			break;
		case 'r':
			if (bench_parse_int(optarg, 1, GPU_REPS_MAX, &v)) {
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
		case 't':
			script = optarg;
			break;
		case 'q':
			quick = true;
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
		copy_len = 16u << 20;
		if (mem_gb > 0.25)
			mem_gb = 0.25;
	}
	if (moex_gpu_probe(why, sizeof(why)) <= 0) {
		fprintf(stderr, "SKIP moex-bench moe --backend hip: %s\n", why);
		return 0;
	}
	api = moex__hip(&err);
	err = moex__hip_pick_gpu(api, &gpu);
	if (err)
		return 1;
	err = api->create(gpu, &ctx);
	if (!err)
		err = api->stream_create(&stream);
	if (!err)
		err = api->event_create(&ev0);
	if (!err)
		err = api->event_create(&ev1);
	if (err) {
		fprintf(stderr, "moex-bench moe: the GPU: %s\n",
			moex_strerror(err));
		return 1;
	}
	api->device_name(gpu, dev, sizeof(dev));
	note("moe on the GPU: %s, %d runs per figure (median)\n", dev, reps);
	mma = getenv("MOEK_MMA");
	note("large-tile bf16/fp8 GEMMs: %s\n",
	     mma && !strcmp(mma, "0") ? "gemm.hip (MOEK_MMA=0)" :
	     "tensor cores where the plugin has them (gemm_mma.hip), "
	     "else gemm.hip");

	cbw = copy_bw(copy_len, false);
	bench_report("copy_bw", cbw, "GB/s");
	for (int si = 0; si < 2; si++)
		for (int ti = 0; ti < 2; ti++)
			b1[si][ti] = run_shape(ctx, &sh[si], types[ti], batches,
					       nb, mem_gb,
					       si == 1 && ti == 0 ? &t512 : NULL,
					       si == 1 && ti == 1 ? bw_b : NULL);
	cbw_end = copy_bw(copy_len, false);
	bench_report("copy_bw_end", cbw_end, "GB/s");
	if (cbw_end > cbw)
		cbw = cbw_end;

	note("\nstreaming from pinned host memory\n");
	sbw = stream_bw(ctx, &sh[1], quick ? 0.05 : 3.0, &sactive);
	bench_report("stream_bw", sbw, "GB/s");
	hbw = copy_bw(sactive ? (size_t)sactive : copy_len, true);
	bench_report("memcpy_h2d_bw", hbw, "GB/s");

	tms = 0;
	if (strcmp(script, "none") && t512 > 0)
		tms = torch_ms(script, &sh[1], 512);

	note("\n");
	snprintf(name, sizeof(name), "gpu_decode_b1_bw_ratio%s",
		 quick ? "_quick" : "");
	bench_report_ratio(name, cbw > 0 ? b1[1][1] / cbw : 0, 0.7);
	snprintf(name, sizeof(name), "gpu_decode_b1_bw_ratio_bf16%s",
		 quick ? "_quick" : "");
	bench_report_ratio(name, cbw > 0 ? b1[1][0] / cbw : 0, 0.7);
	for (int i = 1; i < 3; i++) {
		snprintf(name, sizeof(name), "gpu_decode_b%d_bw_ratio%s",
			 i == 1 ? 16 : 64, quick ? "_quick" : "");
		if (bw_b[i] > 0)
			bench_report(name, cbw > 0 ? bw_b[i] / cbw : 0, "ratio");
	}
	snprintf(name, sizeof(name), "stream_vs_memcpy%s", quick ? "_quick" : "");
	bench_report_ratio(name, hbw > 0 ? sbw / hbw : 0, 0.9);
	if (tms > 0)
		bench_report_ratio("gpu_prefill_b512_vs_torch",
				   tms / 1e3 / t512, 1.0);
	else if (!quick)
		fprintf(stderr, "SKIP gpu_prefill_b512_vs_torch: %s\n",
			!strcmp(script, "none") ? "--torch none" :
			t512 > 0 ? "PyTorch did not run (see above)" :
				   "moex's batch-512 run failed");

	api->event_destroy(ev1);
	api->event_destroy(ev0);
	api->stream_destroy(stream);
	api->destroy(ctx);
	return 0;
}
