// SPDX-License-Identifier: GPL-2.0
/*
 * unit-mkmodel: the mkmodel binary as a subprocess. It writes the tiny
 * preset (and small variations of it) into a temporary directory; the
 * tests read the files back with their own minimal safetensors and JSON
 * checks: header length and padding, tensor names, dtypes and shapes,
 * data offsets contiguous (or aligned with --align), file size, values
 * finite with the expected spread, fp8 scales positive; the index maps
 * every tensor to the shard holding it; same seed gives the same bytes;
 * bad usage exits 2 and unwritable or occupied OUTDIRs exit 1.
 *
 * The binary is MKMODEL (set at build time; the sanitizer suite runs a
 * sanitizer build), or $MKMODEL when set.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "runbin.h"

#ifndef MKMODEL
#error "build with -DMKMODEL='\"/path/to/mkmodel\"'"
#endif

/* ---- running mkmodel ------------------------------------------------------ */

static const char *mkmodel_bin(void)
{
	return getenv("MKMODEL") ? getenv("MKMODEL") : MKMODEL;
}

#define RUN(r, ...) RUN_BIN(r, mkmodel_bin(), NULL, __VA_ARGS__)

/* mkmodel ARGS... must exit 0 */
#define RUN_OK(r, ...)							\
	do {								\
		RUN(r, __VA_ARGS__);					\
		CHECK_MSG((r)->status == 0, "exit %d: %s", (r)->status,	\
			  (r)->err);					\
	} while (0)

/* ---- a scratch directory, removed at exit ------------------------------------- */

static char base[200];

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
	if (base[0])
		rm_tree(base);
}

/* base/name in buf; "" when no scratch directory could be made. */
static const char *scratch(char *buf, size_t len, const char *name)
{
	if (!base[0]) {
		const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

		snprintf(base, sizeof(base), "%s/unit-mkmodel.XXXXXX", tmp);
		if (!mkdtemp(base)) {
			base[0] = '\0';
			buf[0] = '\0';
			return buf;
		}
		atexit(cleanup);
	}
	snprintf(buf, len, "%s/%s", base, name);
	rm_tree(buf);
	return buf;
}

#define SCRATCH(var, name)						\
	char var[256];							\
	do {								\
		CHECK_MSG(*scratch(var, sizeof(var), name), "mkdtemp: %s", \
			  strerror(errno));				\
	} while (0)

/* A whole file, NUL-terminated; NULL when unreadable. */
static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n = -1;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0)
		n = ftell(f);
	if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf) {
			buf[n] = '\0';
			*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

static bool exists(const char *dir, const char *name)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/* ---- a minimal safetensors reader ------------------------------------------ */

struct tensor {
	char name[160];
	char dtype[16];
	unsigned int ndim;
	uint64_t shape[4];
	uint64_t begin, end;
	const unsigned char *data;	/* into the file's buffer */
};

struct stfile {
	char *buf;		/* the whole file */
	size_t size;
	uint64_t hlen;
	struct tensor t[512];
	unsigned int n;
};

/* Why the last st_read() failed. */
static char st_why[1024];

struct cur {
	const char *p, *end;
};

static void ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' ||
				 *c->p == '\t' || *c->p == '\r'))
		c->p++;
}

static bool lit(struct cur *c, char ch)
{
	ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

/* A string without escapes (mkmodel writes none). */
static bool str(struct cur *c, char *out, size_t len)
{
	size_t n = 0;

	if (!lit(c, '"'))
		return false;
	while (c->p < c->end && *c->p != '"') {
		if (*c->p == '\\' || (unsigned char)*c->p < 0x20 ||
		    n + 1 >= len)
			return false;
		out[n++] = *c->p++;
	}
	out[n] = '\0';
	return lit(c, '"');
}

static bool num(struct cur *c, uint64_t *v)
{
	ws(c);
	if (c->p >= c->end || *c->p < '0' || *c->p > '9')
		return false;
	*v = 0;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		*v = *v * 10 + (uint64_t)(*c->p++ - '0');
	return true;
}

/* [n, n, ...] into v[max]; the count in *n. */
static bool num_array(struct cur *c, uint64_t *v, unsigned int max,
		      unsigned int *n)
{
	*n = 0;
	if (!lit(c, '['))
		return false;
	if (lit(c, ']'))
		return true;
	do {
		if (*n == max || !num(c, &v[*n]))
			return false;
		(*n)++;
	} while (lit(c, ','));
	return lit(c, ']');
}

static bool parse_tensor(struct cur *c, struct tensor *t)
{
	char key[32];
	uint64_t off[2];
	unsigned int n, seen = 0;

	if (!lit(c, '{'))
		return false;
	do {
		if (!str(c, key, sizeof(key)) || !lit(c, ':'))
			return false;
		if (!strcmp(key, "dtype")) {
			if (!str(c, t->dtype, sizeof(t->dtype)))
				return false;
			seen |= 1;
		} else if (!strcmp(key, "shape")) {
			if (!num_array(c, t->shape, 4, &t->ndim))
				return false;
			seen |= 2;
		} else if (!strcmp(key, "data_offsets")) {
			if (!num_array(c, off, 2, &n) || n != 2)
				return false;
			t->begin = off[0];
			t->end = off[1];
			seen |= 4;
		} else {
			return false;
		}
	} while (lit(c, ','));
	return lit(c, '}') && seen == 7;
}

static unsigned int dtype_size(const char *d)
{
	if (!strcmp(d, "F32"))
		return 4;
	if (!strcmp(d, "BF16"))
		return 2;
	if (!strcmp(d, "F8_E4M3"))
		return 1;
	return 0;
}

static void st_free(struct stfile *f)
{
	free(f->buf);
	f->buf = NULL;
}

/*
 * Read and check one file: 8 + N is a multiple of `align` (8 when 0), the
 * header is {"__metadata__":{"format":"pt"}, tensors...} padded with
 * spaces, the tensors' data follow each other in header order from 0 (with
 * align: each starts at a multiple of it in the file), nbytes matches
 * dtype and shape, the file ends with the last tensor. false with why.
 */
static bool st_read(struct stfile *f, const char *path, uint64_t align)
{
	struct cur c;
	char key[160], fmt[16];
	uint64_t pos = 0, nel;
	unsigned int i, es;
	int j;

	memset(f, 0, sizeof(*f));
	f->buf = read_all(path, &f->size);
	if (!f->buf)
		return snprintf(st_why, sizeof(st_why), "%s: unreadable",
				path), false;
	if (f->size < 8)
		return snprintf(st_why, sizeof(st_why), "%s: %zu bytes", path,
				f->size), false;
	for (j = 7; j >= 0; j--)
		f->hlen = f->hlen << 8 | (unsigned char)f->buf[j];
	if (f->hlen > f->size - 8 || (8 + f->hlen) % (align ? align : 8))
		return snprintf(st_why, sizeof(st_why),
				"%s: header length %" PRIu64, path, f->hlen),
		       false;
	c.p = f->buf + 8;
	c.end = c.p + f->hlen;
	if (!lit(&c, '{') || !str(&c, key, sizeof(key)) ||
	    strcmp(key, "__metadata__") || !lit(&c, ':') || !lit(&c, '{') ||
	    !str(&c, key, sizeof(key)) || strcmp(key, "format") ||
	    !lit(&c, ':') || !str(&c, fmt, sizeof(fmt)) ||
	    strcmp(fmt, "pt") || !lit(&c, '}'))
		return snprintf(st_why, sizeof(st_why), "%s: no __metadata__",
				path), false;
	while (lit(&c, ',')) {
		struct tensor *t = &f->t[f->n];

		if (f->n == sizeof(f->t) / sizeof(f->t[0]) ||
		    !str(&c, t->name, sizeof(t->name)) || !lit(&c, ':') ||
		    !parse_tensor(&c, t))
			return snprintf(st_why, sizeof(st_why),
					"%s: bad header near byte %zu", path,
					(size_t)(c.p - f->buf)), false;
		f->n++;
	}
	if (!lit(&c, '}'))
		return snprintf(st_why, sizeof(st_why), "%s: header not closed",
				path), false;
	for (; c.p < c.end; c.p++)
		if (*c.p != ' ')
			return snprintf(st_why, sizeof(st_why),
					"%s: header padding is not spaces",
					path), false;
	for (i = 0; i < f->n; i++) {
		struct tensor *t = &f->t[i];
		unsigned int d;

		es = dtype_size(t->dtype);
		for (d = 0, nel = 1; d < t->ndim; d++)
			nel *= t->shape[d];
		if (!es || t->end - t->begin != nel * es || t->end < t->begin)
			return snprintf(st_why, sizeof(st_why),
					"%s: %s: %s, %" PRIu64 " bytes", path,
					t->name, t->dtype,
					t->end - t->begin), false;
		if (align ? (t->begin < pos ||
			     (8 + f->hlen + t->begin) % align) :
			    t->begin != pos)
			return snprintf(st_why, sizeof(st_why),
					"%s: %s begins at %" PRIu64 ", after %" PRIu64,
					path, t->name, t->begin, pos), false;
		pos = t->end;
		t->data = (const unsigned char *)f->buf + 8 + f->hlen +
			  t->begin;
	}
	if (8 + f->hlen + pos != f->size)
		return snprintf(st_why, sizeof(st_why),
				"%s: %zu bytes, data ends at %" PRIu64, path,
				f->size, 8 + f->hlen + pos), false;
	return true;
}

static const struct tensor *st_find(const struct stfile *f, const char *name)
{
	unsigned int i;

	for (i = 0; i < f->n; i++)
		if (!strcmp(f->t[i].name, name))
			return &f->t[i];
	return NULL;
}

/* A model's shards: model-0000K-of-0000N, or model.safetensors. */
struct model {
	struct stfile f[4];
	char names[4][64];
	unsigned int n;
};

static void model_free(struct model *m)
{
	unsigned int i;

	for (i = 0; i < m->n; i++)
		st_free(&m->f[i]);
}

static bool model_read(struct model *m, const char *dir, unsigned int n,
		       uint64_t align, char *why, size_t len)
{
	char path[640];
	unsigned int i;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < n; i++) {
		if (n == 1)
			snprintf(m->names[i], sizeof(m->names[i]),
				 "model.safetensors");
		else
			snprintf(m->names[i], sizeof(m->names[i]),
				 "model-%05u-of-%05u.safetensors", i + 1, n);
		snprintf(path, sizeof(path), "%s/%s", dir, m->names[i]);
		m->n = i + 1;
		if (!st_read(&m->f[i], path, align)) {
			size_t l = strlen(st_why);

			if (l >= len)
				l = len - 1;
			memcpy(why, st_why, l);
			why[l] = '\0';
			return false;
		}
	}
	return true;
}

static const struct tensor *find(const struct model *m, const char *name)
{
	const struct tensor *t;
	unsigned int i;

	for (i = 0; i < m->n; i++) {
		t = st_find(&m->f[i], name);
		if (t)
			return t;
	}
	return NULL;
}

static unsigned int count(const struct model *m)
{
	unsigned int i, n = 0;

	for (i = 0; i < m->n; i++)
		n += m->f[i].n;
	return n;
}

/* ---- values ------------------------------------------------------------------ */

static float bf16_f(const unsigned char *p)
{
	uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static float f32_f(const unsigned char *p)
{
	uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
		     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	float f;

	memcpy(&f, &u, 4);
	return f;
}

/* e4m3fn, written out here independently of moek.h */
static float fp8_f(unsigned char v)
{
	int e = (v >> 3) & 15, m = v & 7;
	float r;

	if (e == 15 && m == 7)
		return NAN;
	r = e ? ldexpf(1.0f + (float)m / 8, e - 7) : ldexpf((float)m, -9);
	return v & 0x80 ? -r : r;
}

/*
 * Element i (row-major) of a weight, dequantised with scale s (fp8) when
 * s is not NULL.
 */
static float elem(const struct tensor *t, const struct tensor *s, uint64_t i)
{
	if (!strcmp(t->dtype, "BF16"))
		return bf16_f(t->data + 2 * i);
	if (!strcmp(t->dtype, "F32"))
		return f32_f(t->data + 4 * i);
	{
		uint64_t cols = t->shape[1], r = i / cols, c = i % cols;
		uint64_t sc = s->shape[1];
		float scale = f32_f(s->data + 4 * ((r / 128) * sc + c / 128));

		return fp8_f(t->data[i]) * scale;
	}
}

/* Mean and standard deviation of a tensor's values; false on non-finite. */
static bool stats(const struct tensor *t, const struct tensor *s,
		  double *mean, double *std)
{
	uint64_t i, n = (t->end - t->begin) / dtype_size(t->dtype);
	double sum = 0, sq = 0;

	for (i = 0; i < n; i++) {
		float v = elem(t, s, i);

		if (!isfinite(v))
			return false;
		sum += v;
		sq += (double)v * v;
	}
	*mean = sum / (double)n;
	*std = sqrt(sq / (double)n - *mean * *mean);
	return true;
}

/* ---- checks shared by the tests ----------------------------------------------- */

static const char *const tiny_names[] = {
	"model.embed_tokens.weight",
	"model.norm.weight",
	"lm_head.weight",
	"model.layers.0.input_layernorm.weight",
	"model.layers.0.mlp.gate_proj.weight",
	"model.layers.0.mlp.up_proj.weight",
	"model.layers.0.mlp.down_proj.weight",
	"model.layers.1.input_layernorm.weight",
	"model.layers.1.mlp.gate.weight",
	"model.layers.1.mlp.gate.e_score_correction_bias",
	"model.layers.1.mlp.experts.0.gate_proj.weight",
	"model.layers.1.mlp.experts.0.up_proj.weight",
	"model.layers.1.mlp.experts.0.down_proj.weight",
	"model.layers.2.mlp.experts.15.down_proj.weight",
	"model.layers.2.mlp.shared_experts.gate_proj.weight",
	"model.layers.2.mlp.shared_experts.up_proj.weight",
	"model.layers.2.mlp.shared_experts.down_proj.weight",
};

/* Shape [a][b] (b == 0: one dimension) and dtype of a tensor. */
static bool has(const struct model *m, const char *name, const char *dtype,
		uint64_t a, uint64_t b)
{
	const struct tensor *t = find(m, name);

	return t && !strcmp(t->dtype, dtype) && t->ndim == (b ? 2u : 1u) &&
	       t->shape[0] == a && (!b || t->shape[1] == b);
}

/* Two files are byte-identical. */
static bool same_file(const char *a, const char *b)
{
	size_t la, lb;
	char *x = read_all(a, &la), *y = read_all(b, &lb);
	bool same = x && y && la == lb && !memcmp(x, y, la);

	free(x);
	free(y);
	return same;
}

/* ---- tests ------------------------------------------------------------------ */

TEST(tiny_layout)
{
	struct model m;
	struct run r;
	char why[256], path[512], *cfg;
	size_t len, i;
	bool ok;
	SCRATCH(dir, "tiny");

	RUN_OK(&r, "--preset", "tiny", dir);
	CHECK_HAS(r.out, "wrote");
	/* the plan, each number under its name */
	CHECK_HAS(r.out, ": tiny bf16, 3 layers (1 dense), hidden 256, 16 experts x 128 (top-4, 1 shared, groups 2/4): ");
	CHECK(exists(dir, "config.json"));
	CHECK(exists(dir, "model.safetensors.index.json"));
	CHECK(!exists(dir, "model.safetensors"));
	ok = model_read(&m, dir, 2, 0, why, sizeof(why));
	if (!ok)
		model_free(&m);
	CHECK_MSG(ok, "%s", why);
	for (i = 0; i < sizeof(tiny_names) / sizeof(tiny_names[0]); i++) {
		ok = find(&m, tiny_names[i]) != NULL;
		if (!ok)
			model_free(&m);
		CHECK_MSG(ok, "no tensor %s", tiny_names[i]);
	}
	/* 1 dense layer, 2 MoE layers, no shared expert gating tensors */
	ok = has(&m, "model.layers.1.mlp.gate.weight", "BF16", 16, 256) &&
	     has(&m, "model.layers.1.mlp.gate.e_score_correction_bias", "F32",
		 16, 0) &&
	     has(&m, "model.layers.1.mlp.experts.7.gate_proj.weight", "BF16",
		 128, 256) &&
	     has(&m, "model.layers.1.mlp.experts.7.down_proj.weight", "BF16",
		 256, 128) &&
	     has(&m, "model.layers.0.mlp.up_proj.weight", "BF16", 1024, 256) &&
	     has(&m, "model.embed_tokens.weight", "BF16", 1024, 256) &&
	     !find(&m, "model.layers.0.mlp.gate.weight") &&
	     !find(&m, "model.layers.1.mlp.experts.16.up_proj.weight") &&
	     !find(&m, "model.layers.3.input_layernorm.weight") &&
	     !find(&m, "model.layers.1.mlp.experts.7.gate_proj.weight_scale_inv");
	/* 4 + 2 * (2 norms + 3 dense | 2 norms + gate + bias + 51) + 2 */
	len = count(&m);
	model_free(&m);
	CHECK_MSG(ok, "a tensor has the wrong dtype or shape");
	CHECK_INT(len, 1 + 5 + 2 * (2 + 2 + 16 * 3 + 3) + 2);

	snprintf(path, sizeof(path), "%s/config.json", dir);
	cfg = read_all(path, &len);
	CHECK(cfg);
	ok = strstr(cfg, "\"DeepseekV3ForCausalLM\"") &&
	     strstr(cfg, "\"model_type\": \"deepseek_v3\"") &&
	     strstr(cfg, "\"hidden_size\": 256,") &&
	     strstr(cfg, "\"intermediate_size\": 1024,") &&
	     strstr(cfg, "\"moe_intermediate_size\": 128,") &&
	     strstr(cfg, "\"n_routed_experts\": 16,") &&
	     strstr(cfg, "\"num_experts_per_tok\": 4,") &&
	     strstr(cfg, "\"n_shared_experts\": 1,") &&
	     strstr(cfg, "\"n_group\": 4,") &&
	     strstr(cfg, "\"topk_group\": 2,") &&
	     strstr(cfg, "\"topk_method\": \"noaux_tc\",") &&
	     strstr(cfg, "\"routed_scaling_factor\": 2.5,") &&
	     strstr(cfg, "\"scoring_func\": \"sigmoid\",") &&
	     strstr(cfg, "\"norm_topk_prob\": true,") &&
	     strstr(cfg, "\"first_k_dense_replace\": 1,") &&
	     strstr(cfg, "\"num_hidden_layers\": 3,") &&
	     strstr(cfg, "\"vocab_size\": 1024,") &&
	     strstr(cfg, "\"torch_dtype\": \"bfloat16\"") &&
	     !strstr(cfg, "quantization_config");
	free(cfg);
	CHECK_MSG(ok, "config.json lacks a key");
}

TEST(index_maps_every_tensor)
{
	struct model m;
	struct run r;
	char why[768], key[160], val[64], *idx;
	struct cur c;
	uint64_t total = 0, sum = 0;
	unsigned int n = 0, i, k;
	size_t len;
	bool ok = true;
	SCRATCH(dir, "index");

	RUN_OK(&r, "--quiet", "--layers", "4", "--shards", "3", dir);
	CHECK_STR(r.out, "");
	CHECK(model_read(&m, dir, 3, 0, why, sizeof(why)) ||
	      (model_free(&m), 0));
	snprintf(why, sizeof(why), "%s/model.safetensors.index.json", dir);
	idx = read_all(why, &len);
	if (!idx)
		model_free(&m);
	CHECK(idx);
	c.p = idx;
	c.end = idx + len;
	ok = lit(&c, '{') && str(&c, key, sizeof(key)) &&
	     !strcmp(key, "metadata") && lit(&c, ':') && lit(&c, '{') &&
	     str(&c, key, sizeof(key)) && !strcmp(key, "total_size") &&
	     lit(&c, ':') && num(&c, &total) && lit(&c, '}') &&
	     lit(&c, ',') && str(&c, key, sizeof(key)) &&
	     !strcmp(key, "weight_map") && lit(&c, ':') && lit(&c, '{');
	snprintf(why, sizeof(why), "index.json: bad start");
	while (ok) {
		const struct tensor *t = NULL;

		ok = str(&c, key, sizeof(key)) && lit(&c, ':') &&
		     str(&c, val, sizeof(val));
		if (!ok) {
			snprintf(why, sizeof(why), "index.json: bad entry");
			break;
		}
		for (k = 0; k < m.n && !t; k++)
			if (!strcmp(val, m.names[k]))
				t = st_find(&m.f[k], key);
		if (!t) {
			ok = false;
			snprintf(why, sizeof(why), "%s -> %s: not there", key,
				 val);
			break;
		}
		n++;
		if (!lit(&c, ','))
			break;
	}
	ok = ok && lit(&c, '}') && lit(&c, '}');
	ws(&c);
	ok = ok && c.p == c.end;
	for (k = 0; k < m.n; k++)
		for (i = 0; i < m.f[k].n; i++)
			sum += m.f[k].t[i].end - m.f[k].t[i].begin;
	i = count(&m);
	/* every shard holds whole layers here: 4 layers over 3 files */
	for (k = 0; k < m.n && ok; k++) {
		const struct tensor *a = &m.f[k].t[0];

		if (!m.f[k].n)
			ok = false;
		else if (k && strncmp(a->name, "model.layers.", 13) == 0 &&
			 !strstr(a->name, "input_layernorm"))
			ok = false;
		if (!ok)
			snprintf(why, sizeof(why), "shard %u starts with %s",
				 k + 1, m.f[k].n ? a->name : "nothing");
	}
	free(idx);
	model_free(&m);
	CHECK_MSG(ok, "%s", why);
	CHECK_INT(n, i);
	CHECK_U64(total, sum);
}

TEST(same_seed_same_bytes)
{
	static const char *const files[] = {
		"config.json", "model.safetensors.index.json",
		"model-00001-of-00002.safetensors",
		"model-00002-of-00002.safetensors",
	};
	char pa[768], pb[768], pc[768];
	struct run r;
	size_t i;
	SCRATCH(a, "seed-a");
	SCRATCH(b, "seed-b");
	SCRATCH(c, "seed-c");

	RUN_OK(&r, "--quiet", "--seed", "7", "--threads", "1", a);
	RUN_OK(&r, "--quiet", "--seed", "7", "--threads", "3", b);
	RUN_OK(&r, "--quiet", "--seed", "8", c);
	/* no --seed is seed 1 (mkmodel(1)) */
	{
		SCRATCH(d, "seed-default");
		SCRATCH(e, "seed-1");

		RUN_OK(&r, "--quiet", d);
		RUN_OK(&r, "--quiet", "--seed", "1", e);
		snprintf(pa, sizeof(pa), "%s/%s", d, files[3]);
		snprintf(pb, sizeof(pb), "%s/%s", e, files[3]);
		CHECK_MSG(same_file(pa, pb), "no --seed is not --seed 1");
	}
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(pa, sizeof(pa), "%s/%s", a, files[i]);
		snprintf(pb, sizeof(pb), "%s/%s", b, files[i]);
		snprintf(pc, sizeof(pc), "%s/%s", c, files[i]);
		CHECK_MSG(same_file(pa, pb), "%s differs with the same seed",
			  files[i]);
		/* the headers and config agree; the weights do not */
		if (i < 2)
			CHECK_MSG(same_file(pa, pc), "%s differs", files[i]);
		else
			CHECK_MSG(!same_file(pa, pc),
				  "%s is the same with another seed", files[i]);
	}
}

TEST(bf16_values)
{
	struct model m;
	struct run r;
	char why[256];
	const struct tensor *t;
	unsigned int k, i;
	double mean, sd;
	bool ok;
	SCRATCH(dir, "bf16");

	RUN_OK(&r, "--quiet", dir);
	CHECK_MSG(model_read(&m, dir, 2, 0, why, sizeof(why)) ||
		  (model_free(&m), 0), "%s", why);
	/* every value of every tensor finite */
	ok = true;
	for (k = 0; k < m.n && ok; k++)
		for (i = 0; i < m.f[k].n && ok; i++) {
			t = &m.f[k].t[i];
			ok = stats(t, NULL, &mean, &sd);
			if (!ok)
				snprintf(why, sizeof(why), "%s: not finite",
					 t->name);
		}
	/* a routed expert: ~N(0, 1/sqrt(in)) */
	t = find(&m, "model.layers.1.mlp.experts.3.gate_proj.weight");
	ok = ok && t && stats(t, NULL, &mean, &sd) && fabs(mean) < 0.01 &&
	     sd > 0.8 / 16 && sd < 1.2 / 16;
	if (!ok && t)
		snprintf(why, sizeof(why), "gate_proj mean %g std %g", mean,
			 sd);
	t = find(&m, "model.layers.2.mlp.experts.9.down_proj.weight");
	ok = ok && t && stats(t, NULL, &mean, &sd) &&
	     sd > 0.8 / sqrt(128) && sd < 1.2 / sqrt(128);
	t = find(&m, "model.layers.1.input_layernorm.weight");
	ok = ok && t && stats(t, NULL, &mean, &sd) && fabs(mean - 1) < 0.05;
	t = find(&m, "model.layers.1.mlp.gate.e_score_correction_bias");
	ok = ok && t && stats(t, NULL, &mean, &sd) && sd > 0 && sd < 0.1;
	model_free(&m);
	CHECK_MSG(ok, "%s", why);
}

TEST(fp8_scales)
{
	struct model m;
	struct run r;
	char why[256], path[512], name[192], *cfg;
	double mean, sd;
	unsigned int k, i, weights = 0;
	size_t len;
	bool ok = true;
	SCRATCH(dir, "fp8");

	RUN_OK(&r, "--quiet", "--dtype", "fp8", dir);
	CHECK_MSG(model_read(&m, dir, 2, 0, why, sizeof(why)) ||
		  (model_free(&m), 0), "%s", why);
	for (k = 0; k < m.n && ok; k++)
		for (i = 0; i < m.f[k].n && ok; i++) {
			const struct tensor *t = &m.f[k].t[i], *s;
			uint64_t j, ns;

			if (strcmp(t->dtype, "F8_E4M3"))
				continue;
			weights++;
			snprintf(name, sizeof(name), "%s_scale_inv", t->name);
			s = find(&m, name);
			ok = s && !strcmp(s->dtype, "F32") && s->ndim == 2 &&
			     s->shape[0] == (t->shape[0] + 127) / 128 &&
			     s->shape[1] == (t->shape[1] + 127) / 128;
			if (!ok) {
				snprintf(why, sizeof(why), "%s: bad or no scales",
					 t->name);
				break;
			}
			ns = s->shape[0] * s->shape[1];
			for (j = 0; j < ns && ok; j++) {
				float v = f32_f(s->data + 4 * j);

				ok = isfinite(v) && v > 0;
				if (!ok)
					snprintf(why, sizeof(why), "%s[%" PRIu64 "] = %g",
						 name, j, v);
			}
			for (j = 0; j < t->end - t->begin && ok; j++) {
				ok = (t->data[j] & 0x7f) != 0x7f;
				if (!ok)
					snprintf(why, sizeof(why), "%s: NaN",
						 t->name);
			}
			/* dequantised: ~N(0, 1/sqrt(in)), blocks 0.75..1.25 */
			if (ok && stats(t, s, &mean, &sd)) {
				double want = 1 / sqrt((double)t->shape[1]);

				ok = sd > 0.7 * want && sd < 1.3 * want &&
				     fabs(mean) < 0.1 * want + 0.01;
				if (!ok)
					snprintf(why, sizeof(why),
						 "%s: mean %g std %g, want std %g",
						 t->name, mean, sd, want);
			} else if (ok) {
				ok = false;
				snprintf(why, sizeof(why), "%s: not finite",
					 t->name);
			}
		}
	/* the gate and norms stay bf16, as in DeepSeek's checkpoints */
	ok = ok && has(&m, "model.layers.1.mlp.gate.weight", "BF16", 16, 256) &&
	     has(&m, "model.layers.2.mlp.shared_experts.down_proj.weight",
		 "F8_E4M3", 256, 128) &&
	     has(&m, "model.layers.0.mlp.down_proj.weight_scale_inv", "F32",
		 2, 8);
	model_free(&m);
	CHECK_MSG(ok, "%s", why);
	/* 3 dense + 2 layers * (16 experts + shared) * 3 */
	CHECK_INT(weights, 3 + 2 * 17 * 3);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	cfg = read_all(path, &len);
	CHECK(cfg);
	ok = strstr(cfg, "\"quant_method\": \"fp8\"") &&
	     strstr(cfg, "\"fmt\": \"e4m3\"") &&
	     strstr(cfg, "\"activation_scheme\": \"dynamic\"") &&
	     strstr(cfg, "\"weight_block_size\": [\n      128,\n      128\n    ]");
	free(cfg);
	CHECK_MSG(ok, "config.json lacks quantization_config");
}

TEST(v2_style_softmax_one_file)
{
	struct model m;
	struct run r;
	char why[256], path[512], *cfg;
	size_t len;
	bool ok;
	SCRATCH(dir, "v2");

	RUN_OK(&r, "--quiet", "--scoring", "softmax", "--groups", "1",
	       "--topk-groups", "1", "--shared", "2", "--norm-topk", "0",
	       "--route-scale", "1", "--first-dense", "0", "--layers", "1",
	       "--shards", "1", dir);
	CHECK(exists(dir, "model.safetensors"));
	CHECK(!exists(dir, "model.safetensors.index.json"));
	CHECK_MSG(model_read(&m, dir, 1, 0, why, sizeof(why)) ||
		  (model_free(&m), 0), "%s", why);
	ok = !find(&m, "model.layers.0.mlp.gate.e_score_correction_bias") &&
	     has(&m, "model.layers.0.mlp.shared_experts.up_proj.weight",
		 "BF16", 256, 256) &&
	     has(&m, "model.layers.0.mlp.shared_experts.down_proj.weight",
		 "BF16", 256, 256);
	model_free(&m);
	CHECK_MSG(ok, "wrong tensors for a V2-style layer");
	snprintf(path, sizeof(path), "%s/config.json", dir);
	cfg = read_all(path, &len);
	CHECK(cfg);
	ok = strstr(cfg, "\"DeepseekV2ForCausalLM\"") &&
	     strstr(cfg, "\"scoring_func\": \"softmax\"") &&
	     strstr(cfg, "\"topk_method\": \"greedy\"") &&
	     strstr(cfg, "\"routed_scaling_factor\": 1.0,") &&
	     strstr(cfg, "\"norm_topk_prob\": false,") &&
	     strstr(cfg, "\"n_group\": 1,");
	free(cfg);
	CHECK_MSG(ok, "config.json is not V2-style");
}

TEST(align_4096)
{
	struct model m;
	struct run r;
	char why[256];
	SCRATCH(dir, "align");

	RUN_OK(&r, "--quiet", "--align", "4096", "--dtype", "fp8", dir);
	CHECK_MSG(model_read(&m, dir, 2, 4096, why, sizeof(why)) ||
		  (model_free(&m), 0), "%s", why);
	model_free(&m);
}

TEST(usage_errors)
{
	struct run r;
	SCRATCH(dir, "usage");

	RUN(&r, "--quiet");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "OUTDIR");
	RUN(&r, "--bogus", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--bogus");
	RUN(&r, "--dtype", "fp16", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "fp16");
	RUN(&r, "--preset", "v4", dir);
	CHECK_INT(r.status, 2);
	RUN(&r, "--layers", "0", dir);
	CHECK_INT(r.status, 2);
	RUN(&r, "--layers", "2x", dir);
	CHECK_INT(r.status, 2);
	RUN(&r, "--experts", "10", "--groups", "4", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--groups");
	RUN(&r, "--topk", "17", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--topk 17 is above --experts 16");
	RUN(&r, "--first-dense", "4", dir);
	CHECK_INT(r.status, 2);
	RUN(&r, "--align", "100", dir);
	CHECK_INT(r.status, 2);
	/* a power of two, but below 8 */
	RUN(&r, "--align", "4", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--align 4 is not 0 or a power of two >= 8");
	/* each rule of the routing shape, with its message */
	RUN(&r, "--experts", "4", "--groups", "4", "--topk", "2",
	    "--topk-groups", "2", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--groups 4: a group needs at least 2 experts");
	RUN(&r, "--topk-groups", "5", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--topk-groups 5 is above --groups 4");
	RUN(&r, "--topk", "9", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--topk 9 is above the experts of 2 groups");
	RUN(&r, "--route-scale", "0", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--route-scale: \"0\" is not a number in [1e-6, 1e6]");
	RUN(&r, "--max-gb", "-1", dir);
	CHECK_INT(r.status, 2);
	RUN(&r, "");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "OUTDIR is empty");
	RUN(&r, "--shards", "1000", dir);
	CHECK_INT(r.status, 2);
	RUN(&r, dir, "extra");
	CHECK_INT(r.status, 2);
	RUN(&r, "--seed");
	CHECK_INT(r.status, 2);
	RUN(&r, "--threads", "17", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--threads: \"17\" is not an integer in [1, 16]");
	CHECK(!exists(dir, "."));
	RUN(&r, "--help");
	CHECK_INT(r.status, 0);
	CHECK_HAS(r.out, "usage: mkmodel");
}

TEST(unwritable_outdir)
{
	char path[768];
	struct run r;
	int fd;
	SCRATCH(file, "plain-file");

	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/model", file);
	RUN(&r, "--quiet", path);
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, path);
	CHECK_STR(r.out, "");
	snprintf(path, sizeof(path), "%s/no/such/dir/model", base);
	RUN(&r, path);
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "no/such/dir/model");
	CHECK_HAS(r.err, strerror(ENOENT));
}

TEST(existing_outdir)
{
	char other[256], p1[512], p2[512];
	struct run r;
	int fd;
	SCRATCH(dir, "exists");

	RUN_OK(&r, "--quiet", "--seed", "1", dir);
	/* occupied: refused, left alone */
	RUN(&r, "--quiet", "--seed", "2", dir);
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "--force");
	/* --force replaces a model directory with the new model */
	RUN_OK(&r, "--quiet", "--seed", "2", "--force", dir);
	snprintf(other, sizeof(other), "%s/exists-2", base);
	rm_tree(other);
	RUN_OK(&r, "--quiet", "--seed", "2", other);
	snprintf(p1, sizeof(p1), "%s/model-00002-of-00002.safetensors", dir);
	snprintf(p2, sizeof(p2), "%s/model-00002-of-00002.safetensors", other);
	CHECK(same_file(p1, p2));
	/* an empty directory is simply filled */
	rm_tree(other);
	CHECK(mkdir(other, 0755) == 0);
	RUN_OK(&r, "--quiet", other);
	CHECK(exists(other, "config.json"));
	/* but --force does not remove what does not look like a model */
	rm_tree(other);
	CHECK(mkdir(other, 0755) == 0);
	snprintf(p2, sizeof(p2), "%s/keep.txt", other);
	fd = open(p2, O_WRONLY | O_CREAT, 0644);
	CHECK(fd >= 0);
	close(fd);
	RUN(&r, "--quiet", "--force", other);
	CHECK_INT(r.status, 1);
	CHECK(exists(other, "keep.txt"));
	CHECK(!exists(other, "config.json"));
}

TEST(size_limits_and_dry_run)
{
	struct run r;
	SCRATCH(dir, "big");

	/* v3's layers are 11.3 GB each: two are refused before anything is
	 * written */
	RUN(&r, "--preset", "v3", "--layers", "2", dir);
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.out, "fp8");
	CHECK_HAS(r.err, "--max-gb");
	CHECK(!exists(dir, "."));
	/* v2-lite, 2 MoE layers: 2.29 GB of bf16, printed, not written */
	RUN_OK(&r, "--preset", "v2-lite", "--dry-run", dir);
	CHECK_HAS(r.out, "2.29 GB");
	CHECK_HAS(r.out, "64 experts x 1408");
	CHECK(!exists(dir, "."));
	RUN(&r, "--max-gb", "0.001", dir);
	CHECK_INT(r.status, 1);
	CHECK(!exists(dir, "."));
	/* every layer dense: --first-dense may be --layers */
	RUN_OK(&r, "--first-dense", "3", "--dry-run", dir);
	CHECK_HAS(r.out, "3 layers (3 dense)");
	/* experts that the preset's 4 groups do not divide: one group */
	RUN_OK(&r, "--experts", "10", "--dry-run", dir);
	CHECK_HAS(r.out, "10 experts x 128 (top-4, 1 shared, groups 1/1)");
}

/* "out/" is the directory out, not a file in it */
TEST(outdir_with_a_slash)
{
	char slash[300];
	struct run r;
	SCRATCH(dir, "slash");

	snprintf(slash, sizeof(slash), "%s//", dir);
	RUN_OK(&r, "--quiet", slash);
	CHECK(exists(dir, "config.json"));
	CHECK(exists(dir, "model-00002-of-00002.safetensors"));
}

RUN_TESTS(T(tiny_layout), T(index_maps_every_tensor), T(same_seed_same_bytes),
	  T(bf16_values), T(fp8_scales), T(v2_style_softmax_one_file),
	  T(align_4096), T(usage_errors), T(unwritable_outdir),
	  T(existing_outdir), T(size_limits_and_dry_run),
	  T(outdir_with_a_slash))
