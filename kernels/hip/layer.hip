/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * layer.hip - the host side: contexts, scratch, argument checks and the
 * layer as a sequence of kernels on one stream (moek_hip.h):
 *
 *   router    x -> idx, w                          router.hip
 *   align     idx -> rows sorted by expert          align.hip
 *   act_quant x -> xq, xs            (fp8 only)     quant.hip
 *   gate/up   x rows -> h = silu(x.W1) * (x.W3)     gemm.hip, gemv.hip
 *   act_quant h -> hq, hs            (fp8 only)
 *   down      h -> out = h.W2 per row
 *
 * With the large row tile, bf16 and fp8 GEMMs run on tensor cores where
 * gemm_mma.hip is built (NVIDIA), else gemm.hip's SIMT FMAs.
 * With the small row tile (decode) the GEMMs are gemv.hip's, which read
 * f32 activations: on the fp8 path act_quant becomes act_qdq (quantised
 * and dequantised in f32: x -> xdq, h in place), the same values.
 *   shared    the same three steps on all tokens, one group
 *   combine   y = sum_k w * out[row of (t, k)] + shared   combine.hip
 *
 * No host round trip between the kernels: grids are sized for the worst
 * case (every expert's rows padded) and tiles past the end exit at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "moek_hip_impl.h"

/* A device buffer that only grows. */
struct dbuf {
	void *p;
	size_t size;
};

/*
 * Expert tables: the device arrays the GEMMs read. A changed table goes
 * to the next of MOEK_HIP_TABLES, so that a run never waits for the runs
 * still queued with the old one; reusing a table waits (on the host) only
 * for the last work that read it, MOEK_HIP_TABLES changes ago. Each table
 * has a pinned host copy, what the asynchronous upload reads.
 */
#define MOEK_HIP_TABLES 4

struct etab {
	struct moek_hip_expert *h;
	struct moek_hip_expert *d;
	hipEvent_t used;	/* recorded after the last work reading d */
	uint32_t n;		/* entries valid */
};

struct etable {
	struct etab t[MOEK_HIP_TABLES];
	uint32_t cap;		/* entries each table holds */
	uint32_t cur;		/* the table in use, when cap */
};

struct moek_hip_ctx {
	int device;
	int warp;		/* the device's warp size */
	bool gemv;		/* the small tile uses gemv.hip (MOEK_GEMV) */
	bool mma;		/* the large tile uses gemm_mma.hip where it
				 * is built, for bf16 and fp8 (MOEK_MMA) */
	uint32_t tile;		/* 0: auto */
	/* routing and alignment */
	struct dbuf idx, w, counts, fill, offsets, row_tok, pair_pos;
	struct dbuf tile_expert;
	/* activations */
	struct dbuf xq, xs, xdq, h, hq, hs, out;
	struct dbuf sh_h, sh_hq, sh_hs, sh_out;
	struct etable routed;	/* n_experts entries, then the shared FFN */
	struct etable single;	/* moek_hip_ffn's one FFN */
};

/* ---- memory ---- */

static int dbuf_ensure(struct dbuf *b, size_t bytes)
{
	hipError_t e;

	if (bytes == 0)
		bytes = 1;
	if (b->size >= bytes)
		return 0;
	if (b->p) {
		/* earlier work may still use it */
		e = hipDeviceSynchronize();
		if (e != hipSuccess)
			return moek_hip_errno(e);
		(void)hipFree(b->p);
		b->p = NULL;
		b->size = 0;
	}
	e = hipMalloc(&b->p, bytes);
	if (e != hipSuccess) {
		b->p = NULL;
		return moek_hip_errno(e);
	}
	b->size = bytes;
	return 0;
}

static void dbuf_free(struct dbuf *b)
{
	if (b->p)
		(void)hipFree(b->p);
	b->p = NULL;
	b->size = 0;
}

static void etable_free(struct etable *t)
{
	for (int i = 0; i < MOEK_HIP_TABLES; i++) {
		if (t->t[i].h)
			(void)hipHostFree(t->t[i].h);
		if (t->t[i].d)
			(void)hipFree(t->t[i].d);
		if (t->t[i].used)
			(void)hipEventDestroy(t->t[i].used);
	}
	memset(t, 0, sizeof(*t));
}

static int etable_grow(struct etable *t, uint32_t n)
{
	const size_t bytes = (size_t)n * sizeof(struct moek_hip_expert);
	hipError_t e;

	/* queued work may still read the old tables */
	e = hipDeviceSynchronize();
	if (e != hipSuccess)
		return moek_hip_errno(e);
	etable_free(t);
	for (int i = 0; i < MOEK_HIP_TABLES; i++) {
		struct etab *b = &t->t[i];

		e = hipHostMalloc((void **)&b->h, bytes, hipHostMallocDefault);
		if (e == hipSuccess)
			e = hipMalloc((void **)&b->d, bytes);
		if (e == hipSuccess)
			e = hipEventCreateWithFlags(&b->used,
						    hipEventDisableTiming);
		if (e != hipSuccess) {
			etable_free(t);
			return moek_hip_errno(e);
		}
	}
	t->cap = n;
	t->cur = 0;
	return 0;
}

/*
 * Make the table in use hold ent[0..n) and return its device copy in
 * *dev: the same table while ent does not change, else the next one,
 * uploaded on stream. Call etable_done() after the work that reads it.
 */
static int etable_set(struct etable *t, const struct moek_hip_expert *ent,
		      uint32_t n, hipStream_t stream,
		      const struct moek_hip_expert **dev)
{
	const size_t bytes = (size_t)n * sizeof(*ent);
	struct etab *b;
	hipError_t e;
	int r;

	if (t->cap && t->t[t->cur].n == n && !memcmp(t->t[t->cur].h, ent, bytes)) {
		*dev = t->t[t->cur].d;
		return 0;
	}
	if (t->cap < n) {
		r = etable_grow(t, n);
		if (r)
			return r;
	} else {
		t->cur = (t->cur + 1) % MOEK_HIP_TABLES;
	}
	b = &t->t[t->cur];
	/* the last work that read this table, MOEK_HIP_TABLES changes ago */
	e = hipEventSynchronize(b->used);
	if (e != hipSuccess)
		return moek_hip_errno(e);
	b->n = 0;
	memcpy(b->h, ent, bytes);
	e = hipMemcpyAsync(b->d, b->h, bytes, hipMemcpyHostToDevice, stream);
	if (e != hipSuccess)
		return moek_hip_errno(e);
	b->n = n;
	*dev = b->d;
	return 0;
}

/* The work queued on stream so far is the last to read the table in use. */
static int etable_done(struct etable *t, hipStream_t stream)
{
	return moek_hip_errno(hipEventRecord(t->t[t->cur].used, stream));
}

/* ---- argument checks ---- */

static int check_ffn(const struct moek_shape *s, const struct moek_ffn *f)
{
	if (!f->w1 || !f->w2 || !f->w3)
		return -EINVAL;
	if (s->wtype == MOEK_FP8_E4M3 && (!f->s1 || !f->s2 || !f->s3))
		return -EINVAL;
	return 0;
}

static int check_shape(const struct moek_shape *s, size_t ntok)
{
	if (!s || moek_shape_check(s))
		return -EINVAL;
	if (s->n_experts > MOEK_MAX_EXPERTS || s->topk > MOEK_MAX_TOPK ||
	    s->topk == 0 || s->dim == 0 || s->inter == 0)
		return -EINVAL;
	if (s->wtype > MOEK_FP8_E4M3 ||
	    (s->gtype != MOEK_F32 && s->gtype != MOEK_BF16))
		return -EINVAL;
	/* row and pair numbers are 32-bit on the device, grids too */
	if (ntok > (size_t)INT32_MAX / 2 / s->topk ||
	    ntok * s->topk + (size_t)s->n_experts * MOEK_HIP_TILE_LARGE >
	    (size_t)INT32_MAX / 2)
		return -EINVAL;
	if ((size_t)s->n_shared * s->inter > UINT32_MAX / 2)
		return -EINVAL;
	return 0;
}

static int check_layer(const struct moek_shape *s,
		       const struct moek_weights *wt, size_t ntok)
{
	int r = check_shape(s, ntok);

	if (r)
		return r;
	if (!wt || !wt->gate || !wt->experts)
		return -EINVAL;
	if (s->n_groups > 1 && s->n_experts / s->n_groups < (wt->bias ? 2 : 1))
		return -EINVAL;
	for (uint32_t e = 0; e < s->n_experts; e++)
		if (check_ffn(s, &wt->experts[e]))
			return -EINVAL;
	if (s->n_shared && check_ffn(s, &wt->shared))
		return -EINVAL;
	return 0;
}

static struct moek_hip_expert entry_of(const struct moek_ffn *f)
{
	struct moek_hip_expert x;

	x.w1 = f->w1;
	x.w3 = f->w3;
	x.w2 = f->w2;
	x.s1 = f->s1;
	x.s3 = f->s3;
	x.s2 = f->s2;
	return x;
}

/* ---- devices and contexts ---- */

extern "C" int moek_hip_device_count(int *n)
{
	int c = 0;
	hipError_t e;

	if (!n)
		return -EINVAL;
	*n = 0;
	e = hipGetDeviceCount(&c);
	if (e != hipSuccess || c <= 0) {
		(void)hipGetLastError();	/* not sticky */
		return -ENODEV;
	}
	*n = c;
	return 0;
}

extern "C" int moek_hip_device_name(int device, char *name, size_t len)
{
	hipDeviceProp_t prop;
	hipError_t e;

	if (!name || !len)
		return -EINVAL;
	e = hipGetDeviceProperties(&prop, device);
	if (e != hipSuccess)
		return moek_hip_errno(e);
	strncpy(name, prop.name, len - 1);
	name[len - 1] = '\0';
	return 0;
}

extern "C" int moek_hip_create(int device, struct moek_hip_ctx **out)
{
	struct moek_hip_ctx *ctx;
	hipDeviceProp_t prop;
	const char *env;
	int n, r;
	hipError_t e;

	if (!out)
		return -EINVAL;
	*out = NULL;
	r = moek_hip_device_count(&n);
	if (r)
		return r;
	if (device < 0 || device >= n)
		return -ENODEV;
	e = hipSetDevice(device);
	if (e != hipSuccess)
		return moek_hip_errno(e);
	ctx = (struct moek_hip_ctx *)calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->device = device;
	e = hipGetDeviceProperties(&prop, device);
	if (e != hipSuccess) {
		free(ctx);
		return moek_hip_errno(e);
	}
	ctx->warp = prop.warpSize;
	env = getenv("MOEK_GEMV");
	ctx->gemv = !(env && !strcmp(env, "0"));
	env = getenv("MOEK_MMA");
	ctx->mma = MOEK_MMA_TF32 && !(env && !strcmp(env, "0"));
	*out = ctx;
	return 0;
}

/*
 * The current device is per host thread: a context's calls make its
 * device current themselves, the calls without one (memory, streams,
 * events, copies, callbacks) act on the calling thread's. A caller that
 * goes on from another thread than moek_hip_create()'s makes the
 * context's device current there first.
 */
extern "C" int moek_hip_use(struct moek_hip_ctx *ctx)
{
	if (!ctx)
		return -EINVAL;
	return moek_hip_errno(hipSetDevice(ctx->device));
}

extern "C" void moek_hip_destroy(struct moek_hip_ctx *ctx)
{
	if (!ctx)
		return;
	(void)hipSetDevice(ctx->device);
	(void)hipDeviceSynchronize();
	dbuf_free(&ctx->idx);
	dbuf_free(&ctx->w);
	dbuf_free(&ctx->counts);
	dbuf_free(&ctx->fill);
	dbuf_free(&ctx->offsets);
	dbuf_free(&ctx->row_tok);
	dbuf_free(&ctx->pair_pos);
	dbuf_free(&ctx->tile_expert);
	dbuf_free(&ctx->xq);
	dbuf_free(&ctx->xs);
	dbuf_free(&ctx->xdq);
	dbuf_free(&ctx->h);
	dbuf_free(&ctx->hq);
	dbuf_free(&ctx->hs);
	dbuf_free(&ctx->out);
	dbuf_free(&ctx->sh_h);
	dbuf_free(&ctx->sh_hq);
	dbuf_free(&ctx->sh_hs);
	dbuf_free(&ctx->sh_out);
	etable_free(&ctx->routed);
	etable_free(&ctx->single);
	free(ctx);
}

extern "C" int moek_hip_set_tile(struct moek_hip_ctx *ctx, uint32_t tile)
{
	if (!ctx || (tile && tile != MOEK_HIP_TILE_SMALL &&
		     tile != MOEK_HIP_TILE_LARGE))
		return -EINVAL;
	ctx->tile = tile;
	return 0;
}

extern "C" int moek_hip_set_gemv(struct moek_hip_ctx *ctx, int on)
{
	if (!ctx)
		return -EINVAL;
	ctx->gemv = on != 0;
	return 0;
}

/* ---- memory helpers ---- */

extern "C" int moek_hip_malloc(size_t bytes, void **dptr)
{
	hipError_t e;

	if (!dptr)
		return -EINVAL;
	e = hipMalloc(dptr, bytes ? bytes : 1);
	if (e != hipSuccess)
		*dptr = NULL;
	return moek_hip_errno(e);
}

extern "C" void moek_hip_free(void *dptr)
{
	if (dptr)
		(void)hipFree(dptr);
}

extern "C" int moek_hip_upload(void *dst, const void *src, size_t bytes)
{
	return moek_hip_errno(hipMemcpy(dst, src, bytes, hipMemcpyHostToDevice));
}

extern "C" int moek_hip_download(void *dst, const void *src, size_t bytes)
{
	return moek_hip_errno(hipMemcpy(dst, src, bytes, hipMemcpyDeviceToHost));
}

extern "C" int moek_hip_memset(void *dst, int value, size_t bytes)
{
	hipError_t e = hipMemsetAsync(dst, value, bytes, 0);

	if (e == hipSuccess)
		e = hipStreamSynchronize(0);
	return moek_hip_errno(e);
}

extern "C" int moek_hip_host_register(void *p, size_t bytes, void **dptr)
{
	hipError_t e;

	if (!p || !bytes || !dptr)
		return -EINVAL;
	e = hipHostRegister(p, bytes, hipHostRegisterMapped);
	if (e == hipErrorHostMemoryAlreadyRegistered)
		return -EEXIST;
	if (e != hipSuccess)
		return moek_hip_errno(e);
	e = hipHostGetDevicePointer(dptr, p, 0);
	if (e != hipSuccess) {
		(void)hipHostUnregister(p);
		return moek_hip_errno(e);
	}
	return 0;
}

extern "C" int moek_hip_host_unregister(void *p)
{
	return moek_hip_errno(hipHostUnregister(p));
}

extern "C" int moek_hip_sync(void *stream)
{
	return moek_hip_errno(hipStreamSynchronize((hipStream_t)stream));
}

/* ---- the stages ---- */

static uint32_t pick_tile(const struct moek_hip_ctx *ctx, size_t rows,
			  uint32_t groups)
{
	if (ctx->tile)
		return ctx->tile;
	/* fewer than 16 rows per expert on average: the GEMV-like tile */
	return rows < (size_t)16 * groups ? MOEK_HIP_TILE_SMALL :
					    MOEK_HIP_TILE_LARGE;
}

static int route(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		 const struct moek_weights *wt, const float *x, size_t ntok,
		 int32_t *idx, float *w, hipStream_t stream)
{
	struct moek_route_args a;

	a.x = x;
	a.gate = wt->gate;
	a.bias = wt->bias;
	a.gtype = s->gtype;
	a.dim = s->dim;
	a.n_experts = s->n_experts;
	a.topk = s->topk;
	a.n_groups = s->n_groups;
	a.topk_groups = s->topk_groups;
	a.score = s->score;
	a.norm_topk = s->norm_topk;
	a.route_scale = s->route_scale;
	a.idx = idx;
	a.w = w;
	(void)ctx;
	return moek_hip_errno(moek_launch_router(&a, (uint32_t)ntok, stream));
}

static int align(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		 const int32_t *idx, size_t ntok, uint32_t tile,
		 struct moek_hip_align *al, hipStream_t stream)
{
	const size_t npairs = ntok * s->topk;
	const size_t ne = s->n_experts;
	/* every expert's rows padded: at most tile - 1 more each */
	const size_t max_tiles = (npairs + ne * (tile - 1) + tile - 1) / tile;
	const size_t max_rows = max_tiles * tile;
	int r;

	r = dbuf_ensure(&ctx->counts, ne * sizeof(uint32_t));
	if (!r)
		r = dbuf_ensure(&ctx->fill, ne * sizeof(uint32_t));
	if (!r)
		r = dbuf_ensure(&ctx->offsets, (ne + 1) * sizeof(uint32_t));
	if (!r)
		r = dbuf_ensure(&ctx->row_tok, max_rows * sizeof(int32_t));
	if (!r)
		r = dbuf_ensure(&ctx->pair_pos, npairs * sizeof(int32_t));
	if (!r)
		r = dbuf_ensure(&ctx->tile_expert, max_tiles * sizeof(int32_t));
	if (r)
		return r;
	al->counts = (uint32_t *)ctx->counts.p;
	al->offsets = (uint32_t *)ctx->offsets.p;
	al->row_tok = (int32_t *)ctx->row_tok.p;
	al->pair_pos = (int32_t *)ctx->pair_pos.p;
	al->tile_expert = (int32_t *)ctx->tile_expert.p;
	al->tile = tile;
	al->max_rows = (uint32_t)max_rows;
	al->max_tiles = (uint32_t)max_tiles;
	return moek_hip_errno(moek_launch_align(idx, (uint32_t)ntok, s->topk,
					  s->n_experts, (uint32_t *)ctx->fill.p,
					  al, stream));
}

/* fp8: act_quant rows x[rows][n] into q, sc (grown as needed) */
static int quant(const float *x, size_t rows, uint32_t n,
		 const int32_t *tile_expert, uint32_t tile, struct dbuf *q,
		 struct dbuf *sc, hipStream_t stream)
{
	int r = dbuf_ensure(q, rows * n);

	if (!r)
		r = dbuf_ensure(sc, rows * moek_nblocks(n) * sizeof(float));
	if (r)
		return r;
	return moek_hip_errno(moek_launch_act_quant(x, (uint32_t)rows, n,
					      tile_expert, tile,
					      (uint8_t *)q->p, (float *)sc->p,
					      stream));
}

/* fp8: act_quant then back, rows x[rows][n] into y (may be x) as f32 */
static int qdq(const float *x, size_t rows, uint32_t n,
	       const int32_t *tile_expert, uint32_t tile, float *y,
	       hipStream_t stream)
{
	return moek_hip_errno(moek_launch_act_qdq(x, (uint32_t)rows, n,
						  tile_expert, tile, y,
						  stream));
}

/* Whether a GEMM of depth k on tiles of tile rows goes to gemv.hip. */
static bool use_gemv(const struct moek_hip_ctx *ctx, uint32_t tile,
		     uint32_t k)
{
	return ctx->gemv && tile == MOEK_HIP_TILE_SMALL && k % 16 == 0;
}

/* gemv.hip also needs A 16-byte aligned: the caller's x may not be (the
 * fp8 path's xdq and h are the context's, always aligned). */
static int run_gemm(const struct moek_hip_ctx *ctx,
		    const struct moek_gemm_args *g, uint32_t wtype,
		    uint32_t tile, uint32_t row_tiles, hipStream_t stream)
{
	if (use_gemv(ctx, tile, g->k) && !((uintptr_t)g->a % 16))
		return moek_hip_errno(moek_launch_gemv(g, wtype, row_tiles,
						       ctx->warp, stream));
	if (ctx->mma && tile == MOEK_HIP_TILE_LARGE && wtype != MOEK_F32)
		return moek_hip_errno(moek_launch_gemm_mma(g, wtype, row_tiles,
							   stream));
	return moek_hip_errno(moek_launch_gemm(g, wtype, tile, row_tiles,
					       stream));
}

/*
 * The layer's input as its GEMMs read it, made on first need: x itself
 * (f32, bf16 weights), or on the fp8 path act_quant'd (xq, xs: gemm.hip)
 * or quantised and dequantised (xdq: gemv.hip).
 */
struct xin {
	const float *x;
	size_t ntok;
	bool quant, qdq;	/* made already */
};

/* Point g's A at x for a GEMM of the given tile. */
static int xin_use(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		   struct xin *in, uint32_t tile, struct moek_gemm_args *g,
		   hipStream_t stream)
{
	int r = 0;

	g->a = in->x;
	g->a_scale = NULL;
	if (s->wtype != MOEK_FP8_E4M3)
		return 0;
	if (use_gemv(ctx, tile, s->dim)) {
		if (!in->qdq) {
			r = dbuf_ensure(&ctx->xdq,
					in->ntok * s->dim * sizeof(float));
			if (!r)
				r = qdq(in->x, in->ntok, s->dim, NULL, 1,
					(float *)ctx->xdq.p, stream);
			in->qdq = !r;
		}
		g->a = ctx->xdq.p;
		return r;
	}
	if (!in->quant) {
		r = quant(in->x, in->ntok, s->dim, NULL, 1, &ctx->xq, &ctx->xs,
			  stream);
		in->quant = !r;
	}
	g->a = ctx->xq.p;
	g->a_scale = (const float *)ctx->xs.p;
	return r;
}

/*
 * The hidden rows h[rows][width] of gate/up as the down GEMM reads them:
 * h (bf16, f32), hq/hs (fp8, gemm.hip) or h dequantised in place (fp8,
 * gemv.hip). Rows of tiles with tile_expert < 0 are left alone.
 */
static int h_use(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		 float *h, size_t rows, uint32_t width,
		 const int32_t *tile_expert, uint32_t tile, struct dbuf *hq,
		 struct dbuf *hs, struct moek_gemm_args *g, hipStream_t stream)
{
	int r = 0;

	g->a = h;
	g->a_scale = NULL;
	if (s->wtype != MOEK_FP8_E4M3)
		return 0;
	if (use_gemv(ctx, tile, width))
		return qdq(h, rows, width, tile_expert, tile, h, stream);
	r = quant(h, rows, width, tile_expert, tile, hq, hs, stream);
	g->a = hq->p;
	g->a_scale = (const float *)hs->p;
	return r;
}

/*
 * A dense FFN over in's ntok rows with the table entry ent (device), width
 * wide: the shared expert, and moek_hip_ffn.
 */
static int dense_ffn(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		     const struct moek_hip_expert *ent, uint32_t width,
		     struct xin *in, float *y, hipStream_t stream)
{
	const size_t ntok = in->ntok;
	const uint32_t tile = pick_tile(ctx, ntok, 1);
	const uint32_t row_tiles = (uint32_t)((ntok + tile - 1) / tile);
	struct moek_gemm_args g;
	int r;

	r = dbuf_ensure(&ctx->sh_h, ntok * width * sizeof(float));
	if (r)
		return r;
	memset(&g, 0, sizeof(g));
	r = xin_use(ctx, s, in, tile, &g, stream);
	if (r)
		return r;
	g.rows = (uint32_t)ntok;
	g.experts = ent;
	g.gated = 1;
	g.n = width;
	g.k = s->dim;
	g.c = (float *)ctx->sh_h.p;
	r = run_gemm(ctx, &g, s->wtype, tile, row_tiles, stream);
	if (!r)
		r = h_use(ctx, s, (float *)ctx->sh_h.p, ntok, width, NULL, tile,
			  &ctx->sh_hq, &ctx->sh_hs, &g, stream);
	if (r)
		return r;
	g.gated = 0;
	g.n = s->dim;
	g.k = width;
	g.c = y;
	return run_gemm(ctx, &g, s->wtype, tile, row_tiles, stream);
}

/* ---- the API ---- */

extern "C" int moek_hip_route(struct moek_hip_ctx *ctx,
			      const struct moek_shape *s,
			      const struct moek_weights *wt, const float *x,
			      size_t ntok, int32_t *idx, float *w, void *stream)
{
	int r;

	if (!ctx || !wt || !wt->gate || !x || !idx || !w)
		return -EINVAL;
	r = check_shape(s, ntok);
	if (r)
		return r;
	if (s->n_groups > 1 && s->n_experts / s->n_groups < (wt->bias ? 2 : 1))
		return -EINVAL;
	if (!ntok)
		return 0;
	r = moek_hip_errno(hipSetDevice(ctx->device));
	if (r)
		return r;
	return route(ctx, s, wt, x, ntok, idx, w, (hipStream_t)stream);
}

extern "C" int moek_hip_align(struct moek_hip_ctx *ctx,
			      const struct moek_shape *s, const int32_t *idx,
			      size_t ntok, struct moek_hip_align *out,
			      void *stream)
{
	int r;

	if (!ctx || !idx || !out)
		return -EINVAL;
	r = check_shape(s, ntok);
	if (r)
		return r;
	r = moek_hip_errno(hipSetDevice(ctx->device));
	if (r)
		return r;
	return align(ctx, s, idx, ntok,
		     pick_tile(ctx, ntok * s->topk, s->n_experts), out,
		     (hipStream_t)stream);
}

extern "C" int moek_hip_act_quant(const float *x, size_t rows, size_t n,
				  uint8_t *q, float *scales, void *stream)
{
	if (!x || !q || !scales || !n || rows > INT32_MAX ||
	    n > (size_t)MOEK_FP8_BLOCK * 65535)
		return -EINVAL;
	if (!rows)
		return 0;
	return moek_hip_errno(moek_launch_act_quant(x, (uint32_t)rows, (uint32_t)n,
					      NULL, 1, q, scales,
					      (hipStream_t)stream));
}

extern "C" int moek_hip_ffn(struct moek_hip_ctx *ctx,
			    const struct moek_shape *s,
			    const struct moek_ffn *f, uint32_t width,
			    const float *x, size_t ntok, float *y,
			    void *stream)
{
	const hipStream_t st = (hipStream_t)stream;
	const struct moek_hip_expert *dent = NULL;
	struct moek_hip_expert ent;
	struct xin in = { x, ntok, false, false };
	int r;

	if (!ctx || !f || !x || !y || !width || width > UINT32_MAX / 2)
		return -EINVAL;
	r = check_shape(s, ntok);
	if (!r)
		r = check_ffn(s, f);
	if (r)
		return r;
	if (!ntok)
		return 0;
	r = moek_hip_errno(hipSetDevice(ctx->device));
	if (r)
		return r;
	ent = entry_of(f);
	r = etable_set(&ctx->single, &ent, 1, st, &dent);
	if (!r)
		r = dense_ffn(ctx, s, dent, width, &in, y, st);
	if (!r)
		r = etable_done(&ctx->single, st);
	return r;
}

extern "C" int moek_hip_layer(struct moek_hip_ctx *ctx,
			      const struct moek_shape *s,
			      const struct moek_weights *wt, const float *x,
			      size_t ntok, float *y, uint32_t *counts,
			      void *stream)
{
	const hipStream_t st = (hipStream_t)stream;
	const struct moek_hip_expert *dent = NULL;
	struct moek_hip_expert *ent;
	struct moek_hip_align al;
	struct moek_gemm_args g;
	struct xin in = { x, ntok, false, false };
	const float *shared_out = NULL;
	uint32_t ne, tile;
	int r;

	if (!ctx || !x || !y)
		return -EINVAL;
	r = check_layer(s, wt, ntok);
	if (r)
		return r;
	ne = s->n_experts;
	if (!ntok) {
		if (counts)
			memset(counts, 0, ne * sizeof(*counts));
		return 0;
	}
	r = moek_hip_errno(hipSetDevice(ctx->device));
	if (r)
		return r;

	/* the expert table, the shared FFN last */
	ent = (struct moek_hip_expert *)malloc((ne + 1) * sizeof(*ent));
	if (!ent)
		return -ENOMEM;
	for (uint32_t e = 0; e < ne; e++)
		ent[e] = entry_of(&wt->experts[e]);
	ent[ne] = s->n_shared ? entry_of(&wt->shared) : ent[0];
	r = etable_set(&ctx->routed, ent, ne + 1, st, &dent);
	free(ent);
	if (r)
		return r;

	tile = pick_tile(ctx, ntok * s->topk, ne);
	r = dbuf_ensure(&ctx->idx, ntok * s->topk * sizeof(int32_t));
	if (!r)
		r = dbuf_ensure(&ctx->w, ntok * s->topk * sizeof(float));
	if (!r)
		r = route(ctx, s, wt, x, ntok, (int32_t *)ctx->idx.p,
			  (float *)ctx->w.p, st);
	if (!r)
		r = align(ctx, s, (const int32_t *)ctx->idx.p, ntok, tile, &al,
			  st);
	if (!r)
		r = dbuf_ensure(&ctx->h, (size_t)al.max_rows * s->inter *
					 sizeof(float));
	if (!r)
		r = dbuf_ensure(&ctx->out, (size_t)al.max_rows * s->dim *
					   sizeof(float));
	if (r)
		return r;

	/* routed experts: gate/up on the gathered token rows */
	memset(&g, 0, sizeof(g));
	r = xin_use(ctx, s, &in, tile, &g, st);
	if (r)
		return r;
	g.a_row = al.row_tok;
	g.valid = al.row_tok;
	g.rows = al.max_rows;
	g.tile_expert = al.tile_expert;
	g.experts = dent;
	g.gated = 1;
	g.n = s->inter;
	g.k = s->dim;
	g.c = (float *)ctx->h.p;
	r = run_gemm(ctx, &g, s->wtype, tile, al.max_tiles, st);
	/* down, row for row */
	if (!r)
		r = h_use(ctx, s, (float *)ctx->h.p, al.max_rows, s->inter,
			  al.tile_expert, tile, &ctx->hq, &ctx->hs, &g, st);
	if (r)
		return r;
	g.a_row = NULL;
	g.gated = 0;
	g.n = s->dim;
	g.k = s->inter;
	g.c = (float *)ctx->out.p;
	r = run_gemm(ctx, &g, s->wtype, tile, al.max_tiles, st);
	if (r)
		return r;

	if (s->n_shared) {
		r = dbuf_ensure(&ctx->sh_out, ntok * s->dim * sizeof(float));
		if (!r)
			r = dense_ffn(ctx, s, dent + ne,
				      s->n_shared * s->inter, &in,
				      (float *)ctx->sh_out.p, st);
		if (r)
			return r;
		shared_out = (const float *)ctx->sh_out.p;
	}

	r = moek_hip_errno(moek_launch_combine((const float *)ctx->out.p,
					 al.pair_pos, (const float *)ctx->w.p,
					 s->topk, shared_out, s->dim,
					 (uint32_t)ntok, y, st));
	if (!r)
		r = etable_done(&ctx->routed, st);
	if (r || !counts)
		return r;
	r = moek_hip_layer_counts(ctx, ne, counts, stream);
	if (!r)
		r = moek_hip_errno(hipStreamSynchronize(st));
	return r;
}

extern "C" int moek_hip_layer_counts(struct moek_hip_ctx *ctx,
				     uint32_t n_experts, uint32_t *counts,
				     void *stream)
{
	int r;

	if (!ctx || !counts || !n_experts ||
	    ctx->counts.size < n_experts * sizeof(*counts))
		return -EINVAL;
	r = moek_hip_errno(hipSetDevice(ctx->device));
	if (r)
		return r;
	return moek_hip_errno(hipMemcpyAsync(counts, ctx->counts.p,
					     n_experts * sizeof(*counts),
					     hipMemcpyDeviceToHost,
					     (hipStream_t)stream));
}
