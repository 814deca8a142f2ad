// SPDX-License-Identifier: GPL-2.0
/*
 * mkmodel - write a DeepSeek-style model directory with deterministic
 * pseudo-random weights: config.json, sharded safetensors files and
 * model.safetensors.index.json, in bf16 or fp8 (e4m3 with 128x128 block
 * scales), at a chosen size. See Documentation/mkmodel.rst.
 *
 *   mkmodel [--preset tiny|v2-lite|v3] [OPTIONS] OUTDIR
 *
 * The file reads top to bottom: options and presets, the tensor list, the
 * shard plan and safetensors headers, value generation (a thread pool
 * fills a buffer, one thread writes it), the directory (written to
 * OUTDIR.tmp.PID, renamed into place), config.json and the index, main().
 *
 * Determinism: every tensor's values come from xoshiro256** streams keyed
 * by (seed, tensor name, chunk index), so the bytes depend on the
 * arguments only: not on the thread count, the shard plan or the buffer.
 *
 * Exit status: 0 success, 1 failure (one line on stderr naming the file),
 * 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "moek.h"

#define EXIT_USAGE	2
#define BLOCK		MOEK_FP8_BLOCK
#define CHUNK		(1u << 18)		/* elements per RNG stream */
#define BUF_BYTES	(32u << 20)		/* one write buffer */
#define MAX_SEGS	8192			/* segments per buffer */
#define MAX_THREADS	16
#define MAX_SHARDS	9999
#define IH_MAX		(4u * 65535u)		/* Irwin-Hall index range */

static const char usage_text[] =
"usage: mkmodel [OPTIONS] OUTDIR\n"
"\n"
"Write a DeepSeek-style model directory (config.json, sharded safetensors,\n"
"model.safetensors.index.json) with deterministic random weights.\n"
"\n"
"Options:\n"
"  --preset NAME        tiny (default), v2-lite or v3: shapes and routing\n"
"  --layers N           hidden layers (tiny 3, v2-lite 2, v3 1)\n"
"  --first-dense K      the first K layers are dense MLPs (tiny 1, else 0)\n"
"  --dtype bf16|fp8     weight type (v3: fp8, else bf16); fp8 is e4m3 with\n"
"                       128x128 f32 block scales (weight_scale_inv)\n"
"  --shards N           safetensors files (tiny 2, v2-lite 2, v3 4); 1\n"
"                       writes model.safetensors and no index\n"
"  --seed S             random seed (default 1)\n"
"  --hidden H           hidden_size\n"
"  --inter I            moe_intermediate_size\n"
"  --dense-inter I      intermediate_size of the dense layers\n"
"  --experts E          n_routed_experts\n"
"  --topk K             num_experts_per_tok\n"
"  --shared S           n_shared_experts (0: none)\n"
"  --groups G           n_group (1: no group limiting)\n"
"  --topk-groups T      topk_group\n"
"  --scoring F          sigmoid (V3: e_score_correction_bias, noaux_tc)\n"
"                       or softmax (V2)\n"
"  --route-scale X      routed_scaling_factor\n"
"  --norm-topk 0|1      norm_topk_prob\n"
"  --vocab N            vocab_size (embed_tokens, lm_head; default 1024)\n"
"  --align BYTES        start every tensor's data at a multiple of BYTES in\n"
"                       its file (a power of two >= 8; 0, the default:\n"
"                       packed as Hugging Face writes; 4096 suits O_DIRECT)\n"
"  --max-gb G           refuse to write more than G GB (default 12)\n"
"  --threads N          generator threads (default: online CPUs, max 16)\n"
"  --sync               fsync the files and the directory\n"
"  --force              replace an existing model directory OUTDIR\n"
"  --dry-run            print the plan and the size, write nothing\n"
"  --quiet              print nothing but errors\n"
"  --help               this text\n"
"\n"
"Exit status: 0 success, 1 failure, 2 bad usage.\n";

/* ---- options and presets -------------------------------------------------- */

enum wdtype { W_BF16, W_FP8 };

struct opts {
	const char *preset;
	const char *outdir;
	uint64_t layers, first_dense, shards, seed;
	uint64_t hidden, inter, dense_inter, experts, topk, shared;
	uint64_t groups, topk_groups, vocab, align, threads;
	int dtype;		/* enum wdtype */
	int sigmoid;		/* scoring_func */
	int norm_topk;
	double route_scale;
	double max_gb;
	bool quiet, sync, force, dry_run;
};

static const struct opts preset_tiny = {
	.preset = "tiny", .layers = 3, .first_dense = 1, .shards = 2,
	.hidden = 256, .inter = 128, .dense_inter = 1024, .experts = 16,
	.topk = 4, .shared = 1, .groups = 4, .topk_groups = 2, .vocab = 1024,
	.dtype = W_BF16, .sigmoid = 1, .norm_topk = 1, .route_scale = 2.5,
};

/* DeepSeek-V2-Lite: first_k_dense_replace is 1 in the real model. */
static const struct opts preset_v2_lite = {
	.preset = "v2-lite", .layers = 2, .first_dense = 0, .shards = 2,
	.hidden = 2048, .inter = 1408, .dense_inter = 10944, .experts = 64,
	.topk = 6, .shared = 2, .groups = 1, .topk_groups = 1, .vocab = 1024,
	.dtype = W_BF16, .sigmoid = 0, .norm_topk = 0, .route_scale = 1.0,
};

/* DeepSeek-V3: first_k_dense_replace is 3 in the real model. */
static const struct opts preset_v3 = {
	.preset = "v3", .layers = 1, .first_dense = 0, .shards = 4,
	.hidden = 7168, .inter = 2048, .dense_inter = 18432, .experts = 256,
	.topk = 8, .shared = 1, .groups = 8, .topk_groups = 4, .vocab = 1024,
	.dtype = W_FP8, .sigmoid = 1, .norm_topk = 1, .route_scale = 2.5,
};

static int usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("mkmodel: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see mkmodel --help)\n", stderr);
	return EXIT_USAGE;
}

static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...)
{
	va_list ap;

	fputs("mkmodel: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A decimal integer in [lo, hi], nothing else; 0 or -EINVAL. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

enum {
	OPT_PRESET = 256, OPT_LAYERS, OPT_FIRST_DENSE, OPT_DTYPE, OPT_SHARDS, OPT_SEED,
	OPT_HIDDEN, OPT_INTER, OPT_DENSE_INTER, OPT_EXPERTS, OPT_TOPK, OPT_SHARED,
	OPT_GROUPS, OPT_TOPK_GROUPS, OPT_SCORING, OPT_ROUTE_SCALE, OPT_NORM_TOPK,
	OPT_VOCAB, OPT_ALIGN, OPT_MAX_GB, OPT_THREADS, OPT_SYNC, OPT_FORCE, OPT_DRY_RUN,
	OPT_QUIET, OPT_HELP,
};

static const struct option long_opts[] = {
	{ "preset", required_argument, NULL, OPT_PRESET },
	{ "layers", required_argument, NULL, OPT_LAYERS },
	{ "first-dense", required_argument, NULL, OPT_FIRST_DENSE },
	{ "dtype", required_argument, NULL, OPT_DTYPE },
	{ "shards", required_argument, NULL, OPT_SHARDS },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "hidden", required_argument, NULL, OPT_HIDDEN },
	{ "inter", required_argument, NULL, OPT_INTER },
	{ "dense-inter", required_argument, NULL, OPT_DENSE_INTER },
	{ "experts", required_argument, NULL, OPT_EXPERTS },
	{ "topk", required_argument, NULL, OPT_TOPK },
	{ "shared", required_argument, NULL, OPT_SHARED },
	{ "groups", required_argument, NULL, OPT_GROUPS },
	{ "topk-groups", required_argument, NULL, OPT_TOPK_GROUPS },
	{ "scoring", required_argument, NULL, OPT_SCORING },
	{ "route-scale", required_argument, NULL, OPT_ROUTE_SCALE },
	{ "norm-topk", required_argument, NULL, OPT_NORM_TOPK },
	{ "vocab", required_argument, NULL, OPT_VOCAB },
	{ "align", required_argument, NULL, OPT_ALIGN },
	{ "max-gb", required_argument, NULL, OPT_MAX_GB },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "sync", no_argument, NULL, OPT_SYNC },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

/* The numeric options, for the table-driven part of parse_args(). */
struct num_opt {
	int id;
	const char *name;
	size_t off;		/* offsetof(struct opts, field) */
	uint64_t lo, hi;
};

#define NUM(id, name, field, lo, hi) \
	{ id, name, offsetof(struct opts, field), lo, hi }

static const struct num_opt num_opts[] = {
	NUM(OPT_LAYERS, "--layers", layers, 1, 1024),
	NUM(OPT_FIRST_DENSE, "--first-dense", first_dense, 0, 1024),
	NUM(OPT_SHARDS, "--shards", shards, 1, MAX_SHARDS),
	NUM(OPT_SEED, "--seed", seed, 0, UINT64_MAX),
	NUM(OPT_HIDDEN, "--hidden", hidden, 1, 1u << 20),
	NUM(OPT_INTER, "--inter", inter, 1, 1u << 20),
	NUM(OPT_DENSE_INTER, "--dense-inter", dense_inter, 1, 1u << 22),
	NUM(OPT_EXPERTS, "--experts", experts, 1, MOEK_MAX_EXPERTS),
	NUM(OPT_TOPK, "--topk", topk, 1, MOEK_MAX_TOPK),
	NUM(OPT_SHARED, "--shared", shared, 0, 64),
	NUM(OPT_GROUPS, "--groups", groups, 1, MOEK_MAX_EXPERTS),
	NUM(OPT_TOPK_GROUPS, "--topk-groups", topk_groups, 1, MOEK_MAX_EXPERTS),
	NUM(OPT_VOCAB, "--vocab", vocab, 1, 1u << 22),
	NUM(OPT_ALIGN, "--align", align, 0, 1u << 30),
	NUM(OPT_THREADS, "--threads", threads, 1, MAX_THREADS),
};

#define N_NUM_OPTS (sizeof(num_opts) / sizeof(num_opts[0]))

static size_t num_index(int id)
{
	size_t i;

	for (i = 0; i < N_NUM_OPTS; i++)
		if (num_opts[i].id == id)
			break;
	return i;
}

/* Options given on the command line, applied over the preset. */
struct given {
	bool num[N_NUM_OPTS];
	bool dtype, scoring, norm_topk, route_scale;
	struct opts v;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	struct given g;
	const struct opts *p = &preset_tiny;
	size_t i;
	int c;

	memset(&g, 0, sizeof(g));
	g.v.max_gb = 12;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
		i = num_index(c);
		if (i < N_NUM_OPTS) {
			const struct num_opt *n = &num_opts[i];

			if (parse_u64(optarg, n->lo, n->hi, (uint64_t *)
				      ((char *)&g.v + n->off)))
				return usage_error("%s: \"%s\" is not an integer in [%" PRIu64 ", %" PRIu64 "]",
						   n->name, optarg, n->lo,
						   n->hi);
			g.num[i] = true;
			continue;
		}
		switch (c) {
		case OPT_PRESET:
			if (!strcmp(optarg, "tiny"))
				p = &preset_tiny;
			else if (!strcmp(optarg, "v2-lite"))
				p = &preset_v2_lite;
			else if (!strcmp(optarg, "v3"))
				p = &preset_v3;
			else
				return usage_error("--preset: unknown preset \"%s\" (tiny, v2-lite, v3)",
						   optarg);
			break;
		case OPT_DTYPE:
			if (!strcmp(optarg, "bf16"))
				g.v.dtype = W_BF16;
			else if (!strcmp(optarg, "fp8"))
				g.v.dtype = W_FP8;
			else
				return usage_error("--dtype: \"%s\" is not bf16 or fp8",
						   optarg);
			g.dtype = true;
			break;
		case OPT_SCORING:
			if (!strcmp(optarg, "sigmoid"))
				g.v.sigmoid = 1;
			else if (!strcmp(optarg, "softmax"))
				g.v.sigmoid = 0;
			else
				return usage_error("--scoring: \"%s\" is not sigmoid or softmax",
						   optarg);
			g.scoring = true;
			break;
		case OPT_NORM_TOPK:
			if (strcmp(optarg, "0") && strcmp(optarg, "1"))
				return usage_error("--norm-topk: \"%s\" is not 0 or 1",
						   optarg);
			g.v.norm_topk = optarg[0] == '1';
			g.norm_topk = true;
			break;
		case OPT_ROUTE_SCALE:
			if (parse_double(optarg, 1e-6, 1e6, &g.v.route_scale))
				return usage_error("--route-scale: \"%s\" is not a number in [1e-6, 1e6]",
						   optarg);
			g.route_scale = true;
			break;
		case OPT_MAX_GB:
			if (parse_double(optarg, 0, 1e6, &g.v.max_gb))
				return usage_error("--max-gb: \"%s\" is not a number in [0, 1e6]",
						   optarg);
			break;
		case OPT_SYNC:
			g.v.sync = true;
			break;
		case OPT_FORCE:
			g.v.force = true;
			break;
		case OPT_DRY_RUN:
			g.v.dry_run = true;
			break;
		case OPT_QUIET:
			g.v.quiet = true;
			break;
		case OPT_HELP:
			fputs(usage_text, stdout);
			exit(0);
		case ':':
			return usage_error("%s needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option \"%s\"",
					   argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return usage_error(optind >= argc ? "no OUTDIR given" :
				   "one OUTDIR, not %d arguments",
				   argc - optind);

	*o = *p;
	o->seed = 1;
	o->threads = 0;
	o->max_gb = g.v.max_gb;
	o->sync = g.v.sync;
	o->force = g.v.force;
	o->dry_run = g.v.dry_run;
	o->quiet = g.v.quiet;
	for (i = 0; i < N_NUM_OPTS; i++)
		if (g.num[i])
			memcpy((char *)o + num_opts[i].off,
			       (char *)&g.v + num_opts[i].off, sizeof(uint64_t));
	if (g.dtype)
		o->dtype = g.v.dtype;
	if (g.scoring)
		o->sigmoid = g.v.sigmoid;
	if (g.norm_topk)
		o->norm_topk = g.v.norm_topk;
	if (g.route_scale)
		o->route_scale = g.v.route_scale;
	o->outdir = argv[optind];
	if (!*o->outdir)
		return usage_error("OUTDIR is empty");
	/* A preset's groups may not divide a changed expert count. */
	if (g.num[num_index(OPT_EXPERTS)] && !g.num[num_index(OPT_GROUPS)] &&
	    o->experts % o->groups) {
		o->groups = 1;
		o->topk_groups = 1;
	}
	return 0;
}

/*
 * The rules of moek_shape_check() and of DeepSeek's configs, with a
 * message for each; moek_shape_check() itself has the last word.
 */
static int check_opts(struct opts *o)
{
	if (o->first_dense > o->layers)
		return usage_error("--first-dense %" PRIu64 " is above --layers %" PRIu64,
				   o->first_dense, o->layers);
	if (o->topk > o->experts)
		return usage_error("--topk %" PRIu64 " is above --experts %" PRIu64,
				   o->topk, o->experts);
	if (o->experts % o->groups)
		return usage_error("--groups %" PRIu64 " does not divide --experts %" PRIu64,
				   o->groups, o->experts);
	if (o->groups > 1 && o->experts / o->groups < 2)
		return usage_error("--groups %" PRIu64 ": a group needs at least 2 experts",
				   o->groups);
	if (o->topk_groups > o->groups)
		return usage_error("--topk-groups %" PRIu64 " is above --groups %" PRIu64,
				   o->topk_groups, o->groups);
	if (o->topk > o->topk_groups * (o->experts / o->groups))
		return usage_error("--topk %" PRIu64 " is above the experts of %" PRIu64 " groups",
				   o->topk, o->topk_groups);
	if (moek_shape_check(&(struct moek_shape){
		.dim = (uint32_t)o->hidden, .inter = (uint32_t)o->inter,
		.n_experts = (uint32_t)o->experts, .topk = (uint32_t)o->topk,
		.n_groups = (uint32_t)o->groups,
		.topk_groups = (uint32_t)o->topk_groups,
		.n_shared = (uint32_t)o->shared,
		.score = o->sigmoid ? MOEK_SCORE_SIGMOID : MOEK_SCORE_SOFTMAX,
		.norm_topk = (uint32_t)o->norm_topk,
		.route_scale = (float)o->route_scale,
		.wtype = o->dtype == W_FP8 ? MOEK_FP8_E4M3 : MOEK_BF16,
		.gtype = MOEK_BF16 }))
		return usage_error("the MoE shape breaks a rule of moek_shape_check() (kernels/include/moek.h)");
	if (o->align && (o->align < 8 || (o->align & (o->align - 1))))
		return usage_error("--align %" PRIu64 " is not 0 or a power of two >= 8",
				   o->align);
	if (!o->threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		o->threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS :
			     (uint64_t)n;
	}
	return 0;
}

/* ---- the tensor list -------------------------------------------------------- */

enum st_dtype { D_F32, D_BF16, D_F8 };

static const char *const dtype_name[] = { "F32", "BF16", "F8_E4M3" };
static const unsigned int dtype_size[] = { 4, 2, 1 };

/* How a tensor's values are made. */
enum kind {
	K_NORMAL,	/* mean + std * z, bf16 */
	K_FP8,		/* e4m3 of z * 448 / zmax; the scale tensor holds std */
	K_SCALE,	/* fp8 block scales for a weight of std `std` */
	K_UNIFORM,	/* f32 uniform in [mean - std, mean + std) */
};

struct tensor {
	char *name;
	uint64_t key;		/* RNG key: hash of seed and name */
	enum st_dtype dtype;
	enum kind kind;
	unsigned int ndim;
	uint64_t shape[2];
	float mean, std;
	const uint16_t *table;	/* K_NORMAL: bf16 of mean + std * z */
	uint64_t nelem, nbytes;
	uint32_t unit;		/* 0 embed, 1 + L layer L, layers + 1 tail */
	uint32_t group;		/* kept in one file: an FFN, a weight + scale */
	uint32_t shard;
	uint64_t begin, end;	/* data offsets within the shard */
};

struct model {
	struct opts o;
	struct tensor *t;
	uint32_t nt, cap;
	uint64_t total;		/* sum of nbytes ("total_size") */
	uint32_t group;		/* the group add() puts tensors in */
	/* shards */
	uint32_t nshards;
	uint32_t *first;	/* [nshards + 1]: tensor ranges */
	char **fname;		/* [nshards] */
	char **header;		/* [nshards]: JSON incl. padding */
	uint64_t *hlen;		/* [nshards] */
	uint64_t *fsize;	/* [nshards] */
	uint64_t bytes;		/* all files together */
	/* bf16 tables */
	struct table { float mean, std; uint16_t *v; } tables[16];
	unsigned int ntables;
	uint8_t *fp8_table;
};

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

static char *xasprintf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

static int add(struct model *m, uint32_t unit, enum st_dtype dt, enum kind k,
	       uint64_t rows, uint64_t cols, float mean, float std,
	       const char *fmt, ...) __attribute__((format(printf, 9, 10)));
static int add(struct model *m, uint32_t unit, enum st_dtype dt, enum kind k,
	       uint64_t rows, uint64_t cols, float mean, float std,
	       const char *fmt, ...)
{
	struct tensor *t;
	va_list ap;
	uint64_t h;
	int n;

	if (m->nt == m->cap) {
		uint32_t cap = m->cap ? m->cap * 2 : 256;

		t = realloc(m->t, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		m->t = t;
		m->cap = cap;
	}
	t = &m->t[m->nt];
	memset(t, 0, sizeof(*t));
	va_start(ap, fmt);
	n = vasprintf(&t->name, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	h = m->o.seed ^ fnv1a(t->name);
	t->key = splitmix64(&h);
	t->dtype = dt;
	t->kind = k;
	t->ndim = cols ? 2 : 1;
	t->shape[0] = rows;
	t->shape[1] = cols;
	t->nelem = rows * (cols ? cols : 1);
	t->nbytes = t->nelem * dtype_size[dt];
	t->mean = mean;
	t->std = std;
	t->unit = unit;
	t->group = m->group;
	m->total += t->nbytes;
	m->nt++;
	return 0;
}

/* A linear layer's weight [out][in] (+ its scales when fp8). */
static int add_linear(struct model *m, uint32_t unit, uint64_t out,
		      uint64_t in, const char *prefix)
{
	float std = 1.0f / sqrtf((float)in);
	int ret;

	if (m->o.dtype == W_BF16)
		return add(m, unit, D_BF16, K_NORMAL, out, in, 0, std,
			   "%s.weight", prefix);
	ret = add(m, unit, D_F8, K_FP8, out, in, 0, std, "%s.weight", prefix);
	if (!ret)
		ret = add(m, unit, D_F32, K_SCALE, (out + BLOCK - 1) / BLOCK,
			  (in + BLOCK - 1) / BLOCK, 0, std,
			  "%s.weight_scale_inv", prefix);
	return ret;
}

/* gate_proj, up_proj, down_proj of an FFN of width inter under prefix. */
static int add_ffn(struct model *m, uint32_t unit, uint64_t inter,
		   const char *prefix)
{
	static const char *const proj[] = { "gate_proj", "up_proj",
					    "down_proj" };
	char name[320];
	int i, ret;

	m->group++;
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%s.%s", prefix, proj[i]);
		ret = i < 2 ? add_linear(m, unit, inter, m->o.hidden, name) :
			      add_linear(m, unit, m->o.hidden, inter, name);
		if (ret)
			return ret;
	}
	return 0;
}

static int build_tensors(struct model *m)
{
	const struct opts *o = &m->o;
	uint32_t tail = (uint32_t)o->layers + 1;
	float hstd = 1.0f / sqrtf((float)o->hidden);
	char prefix[256];
	uint64_t l, e;
	int ret;

	m->group++;
	ret = add(m, 0, D_BF16, K_NORMAL, o->vocab, o->hidden, 0, 0.02f,
		  "model.embed_tokens.weight");
	for (l = 0; l < o->layers && !ret; l++) {
		uint32_t u = (uint32_t)l + 1;

		m->group++;
		ret = add(m, u, D_BF16, K_NORMAL, o->hidden, 0, 1, 0.02f,
			  "model.layers.%" PRIu64 ".input_layernorm.weight", l);
		m->group++;
		if (!ret)
			ret = add(m, u, D_BF16, K_NORMAL, o->hidden, 0, 1,
				  0.02f, "model.layers.%" PRIu64
				  ".post_attention_layernorm.weight", l);
		if (ret)
			break;
		if (l < o->first_dense) {
			snprintf(prefix, sizeof(prefix),
				 "model.layers.%" PRIu64 ".mlp", l);
			ret = add_ffn(m, u, o->dense_inter, prefix);
			continue;
		}
		m->group++;	/* the gate and its bias */
		ret = add(m, u, D_BF16, K_NORMAL, o->experts, o->hidden, 0,
			  hstd, "model.layers.%" PRIu64 ".mlp.gate.weight", l);
		if (!ret && o->sigmoid)
			ret = add(m, u, D_F32, K_UNIFORM, o->experts, 0, 0,
				  0.05f, "model.layers.%" PRIu64
				  ".mlp.gate.e_score_correction_bias", l);
		for (e = 0; e < o->experts && !ret; e++) {
			snprintf(prefix, sizeof(prefix), "model.layers.%" PRIu64
				 ".mlp.experts.%" PRIu64, l, e);
			ret = add_ffn(m, u, o->inter, prefix);
		}
		if (!ret && o->shared) {
			snprintf(prefix, sizeof(prefix), "model.layers.%" PRIu64
				 ".mlp.shared_experts", l);
			ret = add_ffn(m, u, o->shared * o->inter, prefix);
		}
	}
	m->group++;
	if (!ret)
		ret = add(m, tail, D_BF16, K_NORMAL, o->hidden, 0, 1, 0.02f,
			  "model.norm.weight");
	m->group++;
	if (!ret)
		ret = add(m, tail, D_BF16, K_NORMAL, o->vocab, o->hidden, 0,
			  hstd, "lm_head.weight");
	return ret;
}

/* ---- shard plan and safetensors headers -------------------------------------- */

/*
 * Cut k (1..nshards-1) goes at the layer boundary nearest to k/nshards of
 * the bytes when one lies within half a shard of it (an eighth when some
 * layer is larger than a shard: such layers are split anyway, so balance
 * comes first), else at the nearest group boundary (an expert's tensors, a
 * weight and its scales stay together), else at the nearest tensor
 * boundary; every shard gets at least one tensor.
 */
static int plan_shards(struct model *m)
{
	uint32_t n = (uint32_t)m->o.shards, k, i;
	uint64_t *cum, start, big = 0;
	double tol;

	m->nshards = n;
	m->first = calloc(n + 1, sizeof(*m->first));
	cum = calloc(m->nt + 1, sizeof(*cum));
	if (!m->first || !cum) {
		free(cum);
		return -ENOMEM;
	}
	for (i = 0, start = 0; i < m->nt; i++) {
		cum[i + 1] = cum[i] + m->t[i].nbytes;
		if (i && m->t[i].unit != m->t[i - 1].unit)
			start = cum[i];
		if (cum[i + 1] - start > big)
			big = cum[i + 1] - start;
	}
	tol = (double)m->total / n / (big * n > m->total ? 8 : 2);
	m->first[n] = m->nt;
	for (k = 1; k < n; k++) {
		double target = (double)m->total * k / n;
		uint32_t lo = m->first[k - 1] + 1, hi = m->nt - (n - k);
		uint32_t best_t = lo, best_g = 0, best_u = 0;
		double dt = INFINITY, dg = INFINITY, du = INFINITY;

		for (i = lo; i <= hi; i++) {
			double d = fabs((double)cum[i] - target);

			if (d < dt) {
				dt = d;
				best_t = i;
			}
			if (m->t[i].group != m->t[i - 1].group && d < dg) {
				dg = d;
				best_g = i;
			}
			if (m->t[i].unit != m->t[i - 1].unit && d < du) {
				du = d;
				best_u = i;
			}
		}
		m->first[k] = du <= tol ? best_u : dg < INFINITY ? best_g :
			      best_t;
	}
	for (k = 0; k < n; k++)
		for (i = m->first[k]; i < m->first[k + 1]; i++)
			m->t[i].shard = k;
	free(cum);
	return 0;
}

/* A growing string. */
struct sbuf {
	char *s;
	size_t len, cap;
	int err;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = -EINVAL;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		room = b->cap ? b->cap * 2 : 4096;
		while (room < b->len + (size_t)n + 1)
			room *= 2;
		{
			char *s = realloc(b->s, room);

			if (!s) {
				b->err = -ENOMEM;
				return;
			}
			b->s = s;
			b->cap = room;
		}
	}
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return a ? (v + a - 1) / a * a : v;
}

/*
 * The headers: compact JSON as the reference writer makes it, padded with
 * spaces so that 8 + N is a multiple of 8 (of --align when given); data
 * offsets in header order, packed, or each at a multiple of --align.
 */
static int plan_headers(struct model *m)
{
	uint32_t n = m->nshards, k, i;
	uint64_t align = m->o.align;

	m->fname = calloc(n, sizeof(*m->fname));
	m->header = calloc(n, sizeof(*m->header));
	m->hlen = calloc(n, sizeof(*m->hlen));
	m->fsize = calloc(n, sizeof(*m->fsize));
	if (!m->fname || !m->header || !m->hlen || !m->fsize)
		return -ENOMEM;
	m->bytes = 0;
	for (k = 0; k < n; k++) {
		struct sbuf b = { 0 };
		uint64_t off = 0, hl;

		m->fname[k] = n == 1 ? strdup("model.safetensors") :
			      xasprintf("model-%05u-of-%05u.safetensors",
					k + 1, n);
		if (!m->fname[k])
			return -ENOMEM;
		/*
		 * With --align the data offsets depend on the header's
		 * length, which depends on the offsets' digits: lay out
		 * against a guess, and again until the length is stable.
		 */
		hl = 0;
		for (;;) {
			uint64_t base = 8 + hl;

			b.len = 0;
			off = 0;
			sb_printf(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
			for (i = m->first[k]; i < m->first[k + 1]; i++) {
				struct tensor *t = &m->t[i];

				off = round_up(base + off, align) - base;
				t->begin = off;
				t->end = off + t->nbytes;
				off = t->end;
				sb_printf(&b, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%" PRIu64,
					  t->name, dtype_name[t->dtype],
					  t->shape[0]);
				if (t->ndim == 2)
					sb_printf(&b, ",%" PRIu64, t->shape[1]);
				sb_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
					  t->begin, t->end);
			}
			sb_printf(&b, "}");
			if (b.err) {
				free(b.s);
				return b.err;
			}
			if (round_up(8 + b.len, align ? align : 8) - 8 <= hl)
				break;
			hl = round_up(8 + b.len, align ? align : 8) - 8;
		}
		/* pad to hl with spaces */
		while (b.len < hl)
			sb_printf(&b, "%*s", (int)(hl - b.len > 4096 ? 4096 :
						   hl - b.len), "");
		if (b.err) {
			free(b.s);
			return b.err;
		}
		m->header[k] = b.s;
		m->hlen[k] = hl;
		m->fsize[k] = 8 + hl + off;
		m->bytes += m->fsize[k];
	}
	return 0;
}

/* ---- values ---------------------------------------------------------------- */

/*
 * z ~ approximately N(0, 1): the Irwin-Hall sum of four 16-bit uniforms of
 * one 64-bit draw, centred and scaled; |z| <= 2 sqrt(3). Tables map the
 * sum (0..IH_MAX) straight to the stored encoding.
 */
#define ZMAX 3.4641016151377544

static double ih_z(uint32_t s)
{
	return ((double)s / 65535.0 - 2.0) * 1.7320508075688772;
}

static int make_tables(struct model *m)
{
	uint32_t s, i;

	for (i = 0; i < m->nt; i++) {
		struct tensor *t = &m->t[i];
		unsigned int j;

		if (t->kind == K_FP8 && !m->fp8_table) {
			m->fp8_table = malloc(IH_MAX + 1);
			if (!m->fp8_table)
				return -ENOMEM;
			for (s = 0; s <= IH_MAX; s++)
				m->fp8_table[s] = moek_f32_to_fp8((float)
					(ih_z(s) * (MOEK_FP8_MAX / ZMAX)));
		}
		if (t->kind != K_NORMAL)
			continue;
		for (j = 0; j < m->ntables; j++)
			if (m->tables[j].mean == t->mean &&
			    m->tables[j].std == t->std)
				break;
		if (j == m->ntables) {
			struct table *tb = &m->tables[j];

			if (j == sizeof(m->tables) / sizeof(m->tables[0]))
				return -ENOSPC;
			tb->v = malloc((IH_MAX + 1) * sizeof(uint16_t));
			if (!tb->v)
				return -ENOMEM;
			tb->mean = t->mean;
			tb->std = t->std;
			for (s = 0; s <= IH_MAX; s++)
				tb->v[s] = moek_f32_to_bf16((float)
					(t->mean + t->std * ih_z(s)));
			m->ntables++;
		}
		t->table = m->tables[j].v;
	}
	return 0;
}

struct rng {
	uint64_t s[4];
};

static void rng_init(struct rng *r, uint64_t key, uint64_t chunk)
{
	uint64_t x = key ^ (chunk * 0xd1342543de82ef95ull);
	int i;

	for (i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

static inline uint32_t ih_sum(uint64_t r)
{
	return (uint32_t)((r & 0xffff) + ((r >> 16) & 0xffff) +
			  ((r >> 32) & 0xffff) + (r >> 48));
}

/* [0, 1) from the top 24 bits. */
static inline float unit_f(uint64_t r)
{
	return (float)(r >> 40) * 0x1p-24f;
}

/*
 * Elements [c * CHUNK, c * CHUNK + n) of t into dst (little-endian, as
 * this x86-64/arm64 host stores them).
 */
static void gen_chunk(const struct model *m, const struct tensor *t,
		      uint64_t c, uint64_t n, void *dst)
{
	struct rng r;
	uint64_t i;

	rng_init(&r, t->key, c);
	switch (t->kind) {
	case K_NORMAL: {
		uint16_t *d = dst;

		for (i = 0; i < n; i++)
			d[i] = t->table[ih_sum(rng_next(&r))];
		break;
	}
	case K_FP8: {
		uint8_t *d = dst;
		const uint8_t *tb = m->fp8_table;

		for (i = 0; i < n; i++)
			d[i] = tb[ih_sum(rng_next(&r))];
		break;
	}
	case K_SCALE: {
		/* dequantised std per block: std * [0.75, 1.25) */
		float base = (float)(t->std * ZMAX / MOEK_FP8_MAX), *d = dst;

		for (i = 0; i < n; i++)
			d[i] = base * (0.75f + 0.5f * unit_f(rng_next(&r)));
		break;
	}
	case K_UNIFORM: {
		float *d = dst;

		for (i = 0; i < n; i++)
			d[i] = t->mean + t->std *
			       (2.0f * unit_f(rng_next(&r)) - 1.0f);
		break;
	}
	}
}

/* ---- the writer: a thread pool fills a buffer, the main thread writes ----- */

struct seg {
	const struct tensor *t;	/* NULL: zeros (alignment gap) */
	uint64_t chunk, n;	/* elements */
	size_t off, len;	/* in the buffer */
};

struct pool {
	const struct model *m;
	pthread_t th[MAX_THREADS];
	unsigned int nth;
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	uint64_t gen;		/* batch number, bumped to start one */
	unsigned int busy;	/* workers still on this batch */
	bool stop;
	/* the batch */
	char *buf;
	struct seg *segs;
	unsigned int nseg;
	atomic_uint next;
};

static void run_segs(struct pool *p)
{
	unsigned int i;

	while ((i = atomic_fetch_add(&p->next, 1)) < p->nseg) {
		struct seg *s = &p->segs[i];

		if (s->t)
			gen_chunk(p->m, s->t, s->chunk, s->n, p->buf + s->off);
		else
			memset(p->buf + s->off, 0, s->len);
	}
}

static void *worker(void *arg)
{
	struct pool *p = arg;
	uint64_t seen = 0;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->gen == seen)
			pthread_cond_wait(&p->go, &p->lock);
		if (p->stop)
			break;
		seen = p->gen;
		pthread_mutex_unlock(&p->lock);
		run_segs(p);
		pthread_mutex_lock(&p->lock);
		if (--p->busy == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Generate the current batch with every thread, the caller's included. */
static void pool_run(struct pool *p)
{
	atomic_store(&p->next, 0);
	pthread_mutex_lock(&p->lock);
	p->busy = p->nth;
	p->gen++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->lock);
	run_segs(p);
	pthread_mutex_lock(&p->lock);
	while (p->busy)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

static int pool_start(struct pool *p, const struct model *m,
		      unsigned int threads)
{
	unsigned int i;

	memset(p, 0, sizeof(*p));
	p->m = m;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	p->buf = malloc(BUF_BYTES);
	p->segs = calloc(MAX_SEGS, sizeof(*p->segs));
	if (!p->buf || !p->segs)
		return -ENOMEM;
	for (i = 0; i + 1 < threads; i++) {
		if (pthread_create(&p->th[i], NULL, worker, p))
			break;
		p->nth++;
	}
	return 0;
}

static void pool_stop(struct pool *p)
{
	unsigned int i;

	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	free(p->buf);
	free(p->segs);
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR) {
			if (interrupted)
				return -EINTR;
			continue;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Generate and write the current batch. */
static int flush_batch(struct pool *p, int fd, size_t used)
{
	if (!used)
		return 0;
	if (interrupted)
		return -EINTR;
	pool_run(p);
	p->nseg = 0;
	return write_all(fd, p->buf, used);
}

/* Shard k's header and data to fd. */
static int write_shard(struct model *m, struct pool *p, uint32_t k, int fd)
{
	uint64_t pos = 0, hl = m->hlen[k];
	unsigned char len8[8];
	size_t used = 0;
	uint32_t i;
	int j, ret;

	for (j = 0; j < 8; j++)
		len8[j] = (unsigned char)(hl >> (8 * j));
	ret = write_all(fd, len8, 8);
	if (!ret)
		ret = write_all(fd, m->header[k], hl);
	for (i = m->first[k]; i < m->first[k + 1] && !ret; i++) {
		const struct tensor *t = &m->t[i];
		unsigned int es = dtype_size[t->dtype];
		uint64_t c, nchunks = (t->nelem + CHUNK - 1) / CHUNK;

		/* the gap before it: zeros */
		while (pos < t->begin && !ret) {
			size_t len = t->begin - pos;

			if (len > BUF_BYTES - used)
				len = BUF_BYTES - used;
			if (p->nseg == MAX_SEGS || !len) {
				ret = flush_batch(p, fd, used);
				used = 0;
				continue;
			}
			p->segs[p->nseg++] = (struct seg){ .off = used,
							   .len = len };
			used += len;
			pos += len;
		}
		for (c = 0; c < nchunks && !ret; c++) {
			uint64_t n = t->nelem - c * CHUNK;
			size_t len;

			if (n > CHUNK)
				n = CHUNK;
			len = (size_t)(n * es);
			if (p->nseg == MAX_SEGS || used + len > BUF_BYTES) {
				ret = flush_batch(p, fd, used);
				used = 0;
				if (ret)
					break;
			}
			p->segs[p->nseg++] = (struct seg){ .t = t, .chunk = c,
							   .n = n, .off = used,
							   .len = len };
			used += len;
			pos += len;
		}
	}
	if (!ret)
		ret = flush_batch(p, fd, used);
	p->nseg = 0;
	return ret;
}

/* ---- config.json and the index ---------------------------------------------- */

/* The shortest "%.*g" that reads back as v, with ".0" on integers. */
static void sb_double(struct sbuf *b, double v)
{
	char s[64];
	int prec;

	for (prec = 1; prec <= 17; prec++) {
		snprintf(s, sizeof(s), "%.*g", prec, v);
		if (strtod(s, NULL) == v)
			break;
	}
	sb_printf(b, "%s%s", s, strpbrk(s, ".en") ? "" : ".0");
}

static int make_config(const struct model *m, struct sbuf *b)
{
	const struct opts *o = &m->o;
	bool v3 = o->sigmoid;

	sb_printf(b, "{\n  \"architectures\": [\n    \"%s\"\n  ],\n",
		  v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM");
	sb_printf(b, "  \"model_type\": \"%s\",\n",
		  v3 ? "deepseek_v3" : "deepseek_v2");
	sb_printf(b, "  \"hidden_act\": \"silu\",\n");
	sb_printf(b, "  \"hidden_size\": %" PRIu64 ",\n", o->hidden);
	sb_printf(b, "  \"intermediate_size\": %" PRIu64 ",\n", o->dense_inter);
	sb_printf(b, "  \"moe_intermediate_size\": %" PRIu64 ",\n", o->inter);
	sb_printf(b, "  \"n_routed_experts\": %" PRIu64 ",\n", o->experts);
	sb_printf(b, "  \"num_experts_per_tok\": %" PRIu64 ",\n", o->topk);
	sb_printf(b, "  \"n_shared_experts\": %" PRIu64 ",\n", o->shared);
	sb_printf(b, "  \"n_group\": %" PRIu64 ",\n", o->groups);
	sb_printf(b, "  \"topk_group\": %" PRIu64 ",\n", o->topk_groups);
	sb_printf(b, "  \"topk_method\": \"%s\",\n", v3 ? "noaux_tc" :
		  o->groups > 1 ? "group_limited_greedy" : "greedy");
	sb_printf(b, "  \"routed_scaling_factor\": ");
	sb_double(b, o->route_scale);
	sb_printf(b, ",\n  \"scoring_func\": \"%s\",\n",
		  v3 ? "sigmoid" : "softmax");
	sb_printf(b, "  \"norm_topk_prob\": %s,\n",
		  o->norm_topk ? "true" : "false");
	sb_printf(b, "  \"first_k_dense_replace\": %" PRIu64 ",\n",
		  o->first_dense);
	sb_printf(b, "  \"moe_layer_freq\": 1,\n");
	sb_printf(b, "  \"num_hidden_layers\": %" PRIu64 ",\n", o->layers);
	sb_printf(b, "  \"rms_norm_eps\": 1e-06,\n");
	sb_printf(b, "  \"tie_word_embeddings\": false,\n");
	sb_printf(b, "  \"vocab_size\": %" PRIu64 ",\n", o->vocab);
	sb_printf(b, "  \"torch_dtype\": \"bfloat16\"");
	if (o->dtype == W_FP8)
		sb_printf(b, ",\n  \"quantization_config\": {\n"
			  "    \"activation_scheme\": \"dynamic\",\n"
			  "    \"fmt\": \"e4m3\",\n"
			  "    \"quant_method\": \"fp8\",\n"
			  "    \"weight_block_size\": [\n      %d,\n      %d\n    ]\n"
			  "  }", BLOCK, BLOCK);
	sb_printf(b, "\n}\n");
	return b->err;
}

static int cmp_name(const void *a, const void *b)
{
	const struct tensor *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* HF's layout: indent 2, weight_map sorted by name. */
static int make_index(const struct model *m, struct sbuf *b)
{
	const struct tensor **v = malloc(m->nt * sizeof(*v));
	uint32_t i;

	if (!v)
		return -ENOMEM;
	for (i = 0; i < m->nt; i++)
		v[i] = &m->t[i];
	qsort(v, m->nt, sizeof(*v), cmp_name);
	sb_printf(b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64
		  "\n  },\n  \"weight_map\": {\n", m->total);
	for (i = 0; i < m->nt; i++)
		sb_printf(b, "    \"%s\": \"%s\"%s\n", v[i]->name,
			  m->fname[v[i]->shard], i + 1 < m->nt ? "," : "");
	sb_printf(b, "  }\n}\n");
	free(v);
	return b->err;
}

/* ---- the directory ----------------------------------------------------------- */

static int write_file(const char *path, const void *buf, size_t len,
		      bool sync)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	int ret;

	if (fd < 0)
		return -errno;
	ret = write_all(fd, buf, len);
	if (!ret && sync && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	return ret;
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

/* Remove dir and the regular files in it (no recursion); 0 or -errno. */
static int remove_flat(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int ret = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) && !ret)
			ret = -errno;
	}
	closedir(d);
	if (rmdir(dir) && !ret)
		ret = -errno;
	return ret;
}

/* 1 when path is a non-empty directory, 0 when absent or empty, -errno. */
static int dir_state(const char *path, bool *is_model)
{
	struct stat st;
	struct dirent *de;
	int n = 0;
	DIR *d;

	*is_model = false;
	if (stat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		n++;
		if (!strcmp(de->d_name, "config.json"))
			*is_model = true;
	}
	closedir(d);
	return n > 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *fmt_bytes(char *s, size_t len, uint64_t v)
{
	if (v >= 1000000000ull)
		snprintf(s, len, "%.2f GB", (double)v / 1e9);
	else if (v >= 1000000ull)
		snprintf(s, len, "%.1f MB", (double)v / 1e6);
	else
		snprintf(s, len, "%.1f kB", (double)v / 1e3);
	return s;
}

/* Everything into tmp (a fresh directory); 0 or -errno, *bad: the file. */
static int write_model(struct model *m, const char *tmp, char **bad)
{
	struct sbuf cfg = { 0 }, idx = { 0 };
	struct pool pool;
	char *path = NULL;
	uint32_t k;
	int ret, fd;

	ret = pool_start(&pool, m, (unsigned int)m->o.threads);
	if (ret) {
		pool_stop(&pool);
		return ret;
	}
	for (k = 0; k < m->nshards && !ret; k++) {
		free(path);
		path = xasprintf("%s/%s", tmp, m->fname[k]);
		if (!path) {
			ret = -ENOMEM;
			break;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0) {
			ret = -errno;
			break;
		}
		ret = write_shard(m, &pool, k, fd);
		if (!ret && m->o.sync && fsync(fd))
			ret = -errno;
		if (close(fd) && !ret)
			ret = -errno;
	}
	pool_stop(&pool);
	if (!ret) {
		ret = make_config(m, &cfg);
		free(path);
		path = xasprintf("%s/config.json", tmp);
		if (!ret)
			ret = path ? write_file(path, cfg.s, cfg.len,
						m->o.sync) : -ENOMEM;
	}
	if (!ret && m->nshards > 1) {
		ret = make_index(m, &idx);
		free(path);
		path = xasprintf("%s/model.safetensors.index.json", tmp);
		if (!ret)
			ret = path ? write_file(path, idx.s, idx.len,
						m->o.sync) : -ENOMEM;
	}
	if (!ret && m->o.sync) {
		free(path);
		path = strdup(tmp);
		ret = path ? fsync_dir(tmp) : -ENOMEM;
	}
	free(cfg.s);
	free(idx.s);
	if (ret)
		*bad = path;
	else
		free(path);
	return ret;
}

static void model_free(struct model *m)
{
	uint32_t i;

	for (i = 0; i < m->nt; i++)
		free(m->t[i].name);
	free(m->t);
	for (i = 0; i < m->nshards; i++) {
		if (m->fname)
			free(m->fname[i]);
		if (m->header)
			free(m->header[i]);
	}
	free(m->fname);
	free(m->header);
	free(m->hlen);
	free(m->fsize);
	free(m->first);
	for (i = 0; i < m->ntables; i++)
		free(m->tables[i].v);
	free(m->fp8_table);
}

/* The parent directory of path, for statvfs(). */
static char *parent_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int run(struct model *m)
{
	const struct opts *o = &m->o;
	char *tmp = NULL, *old = NULL, *bad = NULL, *parent;
	char sz[32], tot[32];
	struct statvfs vfs;
	struct sigaction sa;
	bool is_model;
	double t0 = now(), secs;
	int ret, state;

	ret = build_tensors(m);
	if (!ret && o->shards > m->nt)
		return usage_error("--shards %" PRIu64 " is above the %u tensors",
				   o->shards, m->nt);
	if (!ret)
		ret = plan_shards(m);
	if (!ret)
		ret = plan_headers(m);
	if (ret) {
		errmsg("planning the model: %s", strerror(-ret));
		return EXIT_FAILURE;
	}
	if (!o->quiet || o->dry_run)
		printf("mkmodel: %s: %s %s, %" PRIu64 " layer%s (%" PRIu64
		       " dense), hidden %" PRIu64 ", %" PRIu64 " experts x %"
		       PRIu64 " (top-%" PRIu64 ", %" PRIu64 " shared, groups %" PRIu64 "/%" PRIu64 "): %u tensors, %s in %u file%s\n",
		       o->outdir, o->preset, o->dtype == W_FP8 ? "fp8" : "bf16",
		       o->layers, o->layers > 1 ? "s" : "", o->first_dense, o->hidden, o->experts,
		       o->inter, o->topk, o->shared, o->topk_groups, o->groups,
		       m->nt,
		       fmt_bytes(sz, sizeof(sz), m->bytes), m->nshards,
		       m->nshards > 1 ? "s" : "");
	if (o->dry_run) {
		uint32_t k;

		for (k = 0; k < m->nshards; k++)
			printf("  %s: %s, %u tensors: %s .. %s\n", m->fname[k],
			       fmt_bytes(sz, sizeof(sz), m->fsize[k]),
			       m->first[k + 1] - m->first[k],
			       m->t[m->first[k]].name,
			       m->t[m->first[k + 1] - 1].name);
	}
	if ((double)m->bytes > o->max_gb * 1e9 && o->dry_run) {
		printf("mkmodel: above --max-gb %g: writing it would be refused\n",
		       o->max_gb);
		return 0;
	}
	if ((double)m->bytes > o->max_gb * 1e9) {
		errmsg("%s: the model would be %s (%" PRIu64 " bytes), above --max-gb %g: pass a larger --max-gb or fewer --layers/--experts",
		       o->outdir, fmt_bytes(sz, sizeof(sz), m->bytes),
		       m->bytes, o->max_gb);
		return EXIT_FAILURE;
	}
	if (o->dry_run)
		return 0;

	state = dir_state(o->outdir, &is_model);
	if (state < 0) {
		errmsg("%s: %s", o->outdir, strerror(-state));
		return EXIT_FAILURE;
	}
	if (state > 0 && !o->force) {
		errmsg("%s: exists and is not empty (pass --force to replace a model directory)",
		       o->outdir);
		return EXIT_FAILURE;
	}
	if (state > 0 && !is_model) {
		errmsg("%s: not replaced with --force: it has no config.json, so it does not look like a model directory",
		       o->outdir);
		return EXIT_FAILURE;
	}
	parent = parent_of(o->outdir);
	if (parent && !statvfs(parent, &vfs) &&
	    (double)vfs.f_bavail * vfs.f_frsize < (double)m->bytes) {
		errmsg("%s: the model needs %s, %s has %s free", o->outdir,
		       fmt_bytes(sz, sizeof(sz), m->bytes), parent,
		       fmt_bytes(tot, sizeof(tot),
				 (uint64_t)vfs.f_bavail * vfs.f_frsize));
		free(parent);
		return EXIT_FAILURE;
	}
	free(parent);

	ret = make_tables(m);
	if (ret) {
		errmsg("tables: %s", strerror(-ret));
		return EXIT_FAILURE;
	}
	tmp = xasprintf("%s.tmp.%ld", o->outdir, (long)getpid());
	old = xasprintf("%s.old.%ld", o->outdir, (long)getpid());
	if (!tmp || !old) {
		errmsg("%s", strerror(ENOMEM));
		ret = EXIT_FAILURE;
		goto out;
	}
	if (mkdir(tmp, 0755)) {
		errmsg("cannot create directory %s: %s", tmp, strerror(errno));
		ret = EXIT_FAILURE;
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	ret = write_model(m, tmp, &bad);
	if (ret) {
		if (ret == -EINTR)
			errmsg("interrupted; removed %s", tmp);
		else
			errmsg("cannot write %s: %s", bad ? bad : tmp,
			       strerror(-ret));
		remove_flat(tmp);
		ret = EXIT_FAILURE;
		goto out;
	}
	/* into place: rename() replaces an empty directory */
	if (state > 0 && rename(o->outdir, old)) {
		errmsg("cannot move %s aside: %s", o->outdir, strerror(errno));
		remove_flat(tmp);
		ret = EXIT_FAILURE;
		goto out;
	}
	if (rename(tmp, o->outdir)) {
		errmsg("cannot rename %s to %s: %s", tmp, o->outdir,
		       strerror(errno));
		remove_flat(tmp);
		if (state > 0)
			rename(old, o->outdir);
		ret = EXIT_FAILURE;
		goto out;
	}
	if (state > 0 && remove_flat(old))
		errmsg("warning: could not remove the old model in %s", old);
	if (o->sync) {
		parent = parent_of(o->outdir);
		if (parent)
			fsync_dir(parent);
		free(parent);
	}
	secs = now() - t0;
	if (!o->quiet)
		printf("mkmodel: wrote %s: %u safetensors file%s + config.json%s, %u tensors, %s (%" PRIu64 " bytes; tensors %s) in %.2f s, %.2f GB/s\n",
		       o->outdir, m->nshards, m->nshards > 1 ? "s" : "",
		       m->nshards > 1 ? " + index" : "", m->nt,
		       fmt_bytes(sz, sizeof(sz), m->bytes), m->bytes,
		       fmt_bytes(tot, sizeof(tot), m->total), secs,
		       secs > 0 ? (double)m->bytes / secs / 1e9 : 0.0);
	ret = 0;
out:
	free(tmp);
	free(old);
	free(bad);
	return ret;
}

int main(int argc, char **argv)
{
	struct model m;
	int ret;
	size_t n;

	memset(&m, 0, sizeof(m));
	ret = parse_args(argc, argv, &m.o);
	if (!ret)
		ret = check_opts(&m.o);
	if (ret)
		return ret;
	/* "out/" and "out" are the same directory */
	n = strlen(m.o.outdir);
	if (n > 1 && m.o.outdir[n - 1] == '/') {
		char *s = strdup(m.o.outdir);

		if (!s)
			return EXIT_FAILURE;
		while (n > 1 && s[n - 1] == '/')
			s[--n] = '\0';
		m.o.outdir = s;
	}
	ret = run(&m);
	model_free(&m);
	if (m.o.outdir != argv[argc - 1])
		free((char *)m.o.outdir);
	return ret;
}
