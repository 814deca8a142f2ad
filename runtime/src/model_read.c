// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * model_read.c - a DeepSeek-style model directory: config.json, the
 * shards named by model.safetensors.index.json (or one
 * model.safetensors), and the tensors of one MoE layer checked against
 * the config. See Documentation/model-format.rst.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "model.h"

/* config.json and the index: DeepSeek-V3's index is about 9 MB. */
#define MOEX_JSON_FILE_MAX	(100u << 20)

#define CONFIG_JSON	"config.json"
#define INDEX_JSON	"model.safetensors.index.json"
#define SINGLE_ST	"model.safetensors"

static char *path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);

	if (!p)
		return NULL;
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
	return p;
}

/* Open a file of the model for reading: fd >= 0, or -errno with a message. */
static int open_regular(const char *path, uint64_t *size, char *err,
			size_t errlen)
{
	struct stat st;
	int fd, ret;

	/* O_NONBLOCK: a FIFO in its place must not block the open */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = errno > 0 ? -errno : -EIO;
		return moex__errf(err, errlen, ret, "%s: %s", path,
			    ret == -ENOENT ? "missing" : strerror(-ret));
	}
	if (fstat(fd, &st) || fcntl(fd, F_SETFL, 0)) {
		ret = errno > 0 ? -errno : -EIO;
		close(fd);
		return moex__errf(err, errlen, ret, "%s: %s", path, strerror(-ret));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return moex__errf(err, errlen, -EINVAL, "%s: not a regular file", path);
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

/* Read and parse a JSON file of at most MOEX_JSON_FILE_MAX bytes. */
static int read_json(const char *path, struct moex_json *root, char *err,
		     size_t errlen)
{
	uint64_t size, done = 0;
	char jerr[160];
	char *buf;
	int fd, ret;

	memset(root, 0, sizeof(*root));
	fd = open_regular(path, &size, err, errlen);
	if (fd < 0)
		return fd;
	if (size > MOEX_JSON_FILE_MAX) {
		close(fd);
		return moex__errf(err, errlen, -EINVAL, "%s: %llu bytes, above the limit of %u",
			    path, (unsigned long long)size, MOEX_JSON_FILE_MAX);
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		close(fd);
		return moex__errf(err, errlen, -ENOMEM, "%s: out of memory", path);
	}
	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 && errno > 0 ? -errno : -EIO;
			free(buf);
			close(fd);
			return moex__errf(err, errlen, ret, "%s: %s", path,
				    ret == -EIO ? "short read" : strerror(-ret));
		}
		done += (uint64_t)n;
	}
	close(fd);
	ret = moex__json_parse(buf, size, root, jerr, sizeof(jerr));
	free(buf);
	if (ret)
		return moex__errf(err, errlen, ret, "%s: %s", path, jerr);
	return 0;
}

static const char *json_type_name(const struct moex_json *v)
{
	switch (v->type) {
	case MOEX_JSON_NULL: return "null";
	case MOEX_JSON_BOOL: return "a boolean";
	case MOEX_JSON_NUMBER: return "a number";
	case MOEX_JSON_STRING: return "a string";
	case MOEX_JSON_ARRAY: return "an array";
	case MOEX_JSON_OBJECT: return "an object";
	}
	return "?";
}

/* ---- config.json ---------------------------------------------------------- */

/* A key that is absent or null takes its default (when it has one). */
static const struct moex_json *cfg_get(const struct moex_json *root,
				       const char *key)
{
	const struct moex_json *v = moex__json_get(root, key);

	return v && v->type != MOEX_JSON_NULL ? v : NULL;
}

static int cfg_u32(const char *path, const struct moex_json *root,
		   const char *key, int required, uint32_t def, uint32_t *out,
		   char *err, size_t errlen)
{
	const struct moex_json *v = cfg_get(root, key);
	uint64_t x;

	if (!v) {
		if (required)
			return moex__errf(err, errlen, -EINVAL, "%s: missing key \"%s\"",
				    path, key);
		*out = def;
		return 0;
	}
	if (v->type != MOEX_JSON_NUMBER)
		return moex__errf(err, errlen, -EINVAL,
			    "%s: \"%s\" is %s, expected a non-negative integer",
			    path, key, json_type_name(v));
	if (moex__json_u64(v, &x) || x > UINT32_MAX)
		return moex__errf(err, errlen, -EINVAL,
			    "%s: \"%s\" is %.40s, expected an integer in [0, 2^32)",
			    path, key, v->str);
	*out = (uint32_t)x;
	return 0;
}

/* An optional string key: its value, or def. */
static int cfg_str(const char *path, const struct moex_json *root,
		   const char *key, const char *def, const char **out,
		   char *err, size_t errlen)
{
	const struct moex_json *v = cfg_get(root, key);

	if (!v) {
		*out = def;
		return 0;
	}
	if (v->type != MOEX_JSON_STRING)
		return moex__errf(err, errlen, -EINVAL, "%s: \"%s\" is %s, expected a string",
			    path, key, json_type_name(v));
	*out = v->str;
	return 0;
}

static int cfg_quant(const char *path, const struct moex_json *q,
		     struct moex_model_config *c, char *err, size_t errlen)
{
	const struct moex_json *bs;
	const char *s;
	uint64_t b[2];
	int ret;

	if (q->type != MOEX_JSON_OBJECT)
		return moex__errf(err, errlen, -EINVAL,
			    "%s: \"quantization_config\" is %s, expected an object",
			    path, json_type_name(q));
	ret = cfg_str(path, q, "quant_method", NULL, &s, err, errlen);
	if (ret)
		return ret;
	if (!s)
		return moex__errf(err, errlen, -EINVAL,
			    "%s: missing key \"quantization_config.quant_method\"",
			    path);
	if (strcmp(s, "fp8"))
		return moex__errf(err, errlen, -EINVAL,
			    "%s: quantization_config.quant_method \"%.32s\": moex reads \"fp8\" only",
			    path, s);
	ret = cfg_str(path, q, "fmt", "e4m3", &s, err, errlen);
	if (ret)
		return ret;
	if (strcmp(s, "e4m3"))
		return moex__errf(err, errlen, -EINVAL,
			    "%s: quantization_config.fmt \"%.32s\": moex reads \"e4m3\" only",
			    path, s);
	ret = cfg_str(path, q, "activation_scheme", "dynamic", &s, err, errlen);
	if (ret)
		return ret;
	if (strcmp(s, "dynamic"))
		return moex__errf(err, errlen, -EINVAL,
			    "%s: quantization_config.activation_scheme \"%.32s\": moex quantises activations dynamically only",
			    path, s);
	bs = cfg_get(q, "weight_block_size");
	if (!bs)
		return moex__errf(err, errlen, -EINVAL,
			    "%s: missing key \"quantization_config.weight_block_size\"",
			    path);
	if (bs->type != MOEX_JSON_ARRAY || bs->len != 2 ||
	    moex__json_u64(&bs->items[0], &b[0]) ||
	    moex__json_u64(&bs->items[1], &b[1]))
		return moex__errf(err, errlen, -EINVAL,
			    "%s: quantization_config.weight_block_size is not [rows, columns]",
			    path);
	if (b[0] != 128 || b[1] != 128)
		return moex__errf(err, errlen, -EINVAL,
			    "%s: quantization_config.weight_block_size [%llu, %llu]: moex needs [128, 128]",
			    path, (unsigned long long)b[0],
			    (unsigned long long)b[1]);
	c->fp8 = 1;
	c->weight_block[0] = 128;
	c->weight_block[1] = 128;
	return 0;
}

static int read_config(const char *dir, struct moex_model_config *c,
		       char *err, size_t errlen)
{
	static const char *const topk_methods[] = {
		"greedy", "gready", "group_limited_greedy", "noaux_tc",
	};
	struct moex_json root;
	const struct moex_json *v;
	const char *s;
	uint32_t freq;
	double d;
	char *path;
	size_t i;
	int ret;

	memset(c, 0, sizeof(*c));
	path = path_join(dir, CONFIG_JSON);
	if (!path)
		return moex__errf(err, errlen, -ENOMEM, "out of memory");
	ret = read_json(path, &root, err, errlen);
	if (ret)
		goto out_path;
	if (root.type != MOEX_JSON_OBJECT) {
		ret = moex__errf(err, errlen, -EINVAL, "%s: not a JSON object", path);
		goto out;
	}
#define U32(key, req, def, field)					\
	do {								\
		ret = cfg_u32(path, &root, key, req, def, &c->field, err, errlen); \
		if (ret)						\
			goto out;					\
	} while (0)
	U32("hidden_size", 1, 0, hidden_size);
	U32("moe_intermediate_size", 1, 0, moe_intermediate_size);
	U32("n_routed_experts", 1, 0, n_routed_experts);
	U32("num_experts_per_tok", 1, 0, num_experts_per_tok);
	U32("num_hidden_layers", 1, 0, num_hidden_layers);
	U32("n_shared_experts", 0, 0, n_shared_experts);
	U32("n_group", 0, 1, n_group);
	U32("topk_group", 0, c->n_group, topk_group);
	U32("first_k_dense_replace", 0, 0, first_k_dense_replace);
#undef U32
	ret = cfg_u32(path, &root, "moe_layer_freq", 0, 1, &freq, err, errlen);
	if (ret)
		goto out;
	if (freq != 1) {
		ret = moex__errf(err, errlen, -EINVAL,
			   "%s: \"moe_layer_freq\" is %u: moex reads models with a MoE layer in every layer from first_k_dense_replace on (1)",
			   path, freq);
		goto out;
	}

	c->routed_scaling_factor = 1.0f;
	v = cfg_get(&root, "routed_scaling_factor");
	if (v) {
		/* a float: what rounds to 0 there is 0 (FLT_MIN is normal) */
		if (v->type != MOEX_JSON_NUMBER || moex__json_double(v, &d) ||
		    !(d >= FLT_MIN) || d > 1e6) {
			ret = moex__errf(err, errlen, -EINVAL,
				   "%s: \"routed_scaling_factor\" is %s%s%.40s, expected a number from 1.18e-38 (FLT_MIN) to 1e6",
				   path, json_type_name(v),
				   v->type == MOEX_JSON_NUMBER ? " " : "",
				   v->type == MOEX_JSON_NUMBER ? v->str : "");
			goto out;
		}
		c->routed_scaling_factor = (float)d;
	}

	ret = cfg_str(path, &root, "scoring_func", "softmax", &s, err, errlen);
	if (ret)
		goto out;
	if (!strcmp(s, "softmax")) {
		c->scoring = MOEX_SCORING_SOFTMAX;
	} else if (!strcmp(s, "sigmoid")) {
		c->scoring = MOEX_SCORING_SIGMOID;
	} else {
		ret = moex__errf(err, errlen, -EINVAL,
			   "%s: \"scoring_func\" is \"%.32s\", expected \"softmax\" or \"sigmoid\"",
			   path, s);
		goto out;
	}

	ret = cfg_str(path, &root, "topk_method", "greedy", &s, err, errlen);
	if (ret)
		goto out;
	for (i = 0; i < sizeof(topk_methods) / sizeof(topk_methods[0]); i++)
		if (!strcmp(s, topk_methods[i]))
			break;
	if (i == sizeof(topk_methods) / sizeof(topk_methods[0])) {
		ret = moex__errf(err, errlen, -EINVAL,
			   "%s: \"topk_method\" is \"%.32s\", expected \"greedy\", \"group_limited_greedy\" or \"noaux_tc\"",
			   path, s);
		goto out;
	}
	c->noaux_tc = !strcmp(s, "noaux_tc");

	v = cfg_get(&root, "norm_topk_prob");
	if (v) {
		if (v->type != MOEX_JSON_BOOL) {
			ret = moex__errf(err, errlen, -EINVAL,
				   "%s: \"norm_topk_prob\" is %s, expected true or false",
				   path, json_type_name(v));
			goto out;
		}
		c->norm_topk_prob = (uint32_t)v->boolean;
	}

	v = cfg_get(&root, "quantization_config");
	if (v) {
		ret = cfg_quant(path, v, c, err, errlen);
		if (ret)
			goto out;
	}

	/* What the router and the kernels need. */
	ret = -EINVAL;
	if (!c->hidden_size || !c->moe_intermediate_size || !c->n_routed_experts) {
		moex__errf(err, errlen, ret, "%s: \"%s\" is 0", path,
		     !c->hidden_size ? "hidden_size" :
		     !c->moe_intermediate_size ? "moe_intermediate_size" :
		     "n_routed_experts");
		goto out;
	}
	if (!c->num_experts_per_tok || c->num_experts_per_tok > c->n_routed_experts) {
		moex__errf(err, errlen, ret,
		     "%s: \"num_experts_per_tok\" is %u, expected 1 to n_routed_experts (%u)",
		     path, c->num_experts_per_tok, c->n_routed_experts);
		goto out;
	}
	if (c->n_group > 1) {
		if (c->n_routed_experts % c->n_group) {
			moex__errf(err, errlen, ret,
			     "%s: \"n_group\" %u does not divide n_routed_experts %u",
			     path, c->n_group, c->n_routed_experts);
			goto out;
		}
		if (!c->topk_group || c->topk_group > c->n_group ||
		    (uint64_t)c->topk_group * (c->n_routed_experts / c->n_group) <
		    c->num_experts_per_tok) {
			moex__errf(err, errlen, ret,
			     "%s: \"topk_group\" is %u: expected 1 to n_group (%u), keeping at least num_experts_per_tok (%u) experts",
			     path, c->topk_group, c->n_group,
			     c->num_experts_per_tok);
			goto out;
		}
	}
	if (c->first_k_dense_replace > c->num_hidden_layers) {
		moex__errf(err, errlen, ret,
		     "%s: \"first_k_dense_replace\" %u is above num_hidden_layers %u",
		     path, c->first_k_dense_replace, c->num_hidden_layers);
		goto out;
	}
	if ((uint64_t)c->n_shared_experts * c->moe_intermediate_size > UINT32_MAX) {
		moex__errf(err, errlen, ret,
		     "%s: n_shared_experts * moe_intermediate_size overflows 32 bits",
		     path);
		goto out;
	}
	ret = 0;
out:
	moex__json_free(&root);
out_path:
	free(path);
	return ret;
}

/* ---- the directory -------------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct moex_st_tensor *)a)->name,
		      ((const struct moex_st_tensor *)b)->name);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A shard name from the index: a plain file name inside the directory. */
static int shard_name_ok(const char *s, size_t len)
{
	return len && len <= NAME_MAX && !strchr(s, '/') && strcmp(s, ".") &&
	       strcmp(s, "..");
}

static int read_shard(struct moex_model_files *m, uint32_t i, char *err,
		      size_t errlen)
{
	int fd, ret;

	fd = open_regular(m->paths[i], &m->sizes[i], err, errlen);
	if (fd < 0)
		return fd;
	ret = moex__st_read_header(fd, m->sizes[i], m->paths[i], i, &m->tensors,
				   &m->ntensors, err, errlen);
	close(fd);
	return ret;
}

/* The index: the shards it names, each read, and every entry found. */
static int read_index(struct moex_model_files *m, const char *ipath,
		      char *err, size_t errlen)
{
	const struct moex_json *wm;
	struct moex_json root;
	char **names = NULL;
	size_t i, n = 0;
	int ret;

	ret = read_json(ipath, &root, err, errlen);
	if (ret)
		return ret;
	ret = -EINVAL;
	wm = moex__json_get(&root, "weight_map");
	if (root.type != MOEX_JSON_OBJECT || !wm || wm->type != MOEX_JSON_OBJECT) {
		moex__errf(err, errlen, ret, "%s: no \"weight_map\" object", ipath);
		goto out;
	}
	if (wm->len > UINT32_MAX) {
		moex__errf(err, errlen, ret, "%s: too many entries", ipath);
		goto out;
	}
	names = malloc((wm->len ? wm->len : 1) * sizeof(*names));
	if (!names) {
		ret = moex__errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < wm->len; i++) {
		const struct moex_json *f = &wm->items[i];

		if (f->type != MOEX_JSON_STRING || !shard_name_ok(f->str, f->len)) {
			moex__errf(err, errlen, ret,
			     "%s: weight_map \"%s\": %s%.80s%s is not a file name in the model directory",
			     ipath, wm->keys[i],
			     f->type == MOEX_JSON_STRING ? "\"" : "",
			     f->type == MOEX_JSON_STRING ? f->str : json_type_name(f),
			     f->type == MOEX_JSON_STRING ? "\"" : "");
			goto out;
		}
		names[i] = f->str;
	}
	qsort(names, wm->len, sizeof(*names), cmp_str);
	for (i = 0; i < wm->len; i++)
		if (!n || strcmp(names[n - 1], names[i]))
			names[n++] = names[i];
	m->paths = calloc(n ? n : 1, sizeof(*m->paths));
	m->sizes = calloc(n ? n : 1, sizeof(*m->sizes));
	if (!m->paths || !m->sizes) {
		ret = moex__errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		m->paths[i] = path_join(m->dir, names[i]);
		if (!m->paths[i]) {
			ret = moex__errf(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		m->nfiles = (uint32_t)i + 1;
		ret = read_shard(m, (uint32_t)i, err, errlen);
		if (ret == -ENOENT) {
			/* Name a tensor the index puts there. */
			size_t k;

			for (k = 0; k < wm->len; k++)
				if (!strcmp(wm->items[k].str, names[i]))
					break;
			moex__errf(err, errlen, ret,
			     "%s: missing (%s names it for %s)", m->paths[i],
			     INDEX_JSON, k < wm->len ? wm->keys[k] : "?");
		}
		if (ret)
			goto out;
	}
	/* an empty weight_map reads no shard: m->tensors is still NULL */
	if (m->ntensors)
		qsort(m->tensors, m->ntensors, sizeof(*m->tensors), cmp_name);
	for (i = 1; i < m->ntensors; i++) {
		if (!strcmp(m->tensors[i - 1].name, m->tensors[i].name)) {
			moex__errf(err, errlen, ret = -EINVAL,
			     "duplicate tensor %s in %s and %s",
			     m->tensors[i].name,
			     m->paths[m->tensors[i - 1].file],
			     m->paths[m->tensors[i].file]);
			goto out;
		}
	}
	for (i = 0; i < wm->len; i++) {
		const struct moex_st_tensor *t =
			moex__model_find(m, wm->keys[i]);

		if (!t) {
			ret = moex__errf(err, errlen, -ENOENT,
				   "missing tensor %s (index says %s)",
				   wm->keys[i], wm->items[i].str);
			goto out;
		}
		if (strcmp(strrchr(m->paths[t->file], '/') + 1,
			   wm->items[i].str)) {
			ret = moex__errf(err, errlen, -ENOENT,
				   "missing tensor %s (index says %s, it is in %s)",
				   wm->keys[i], wm->items[i].str,
				   m->paths[t->file]);
			goto out;
		}
	}
	ret = 0;
out:
	free(names);
	moex__json_free(&root);
	return ret;
}

int moex__model_read(const char *dir, struct moex_model_files **out,
		     char *err, size_t errlen)
{
	struct moex_model_files *m;
	char *ipath = NULL;
	uint64_t size;
	int fd, ret;

	if (!dir || !out)
		return moex__errf(err, errlen, -EINVAL, "invalid arguments");
	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return moex__errf(err, errlen, -ENOMEM, "out of memory");
	m->dir = strdup(dir);
	if (!m->dir) {
		ret = moex__errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	ret = read_config(dir, &m->cfg, err, errlen);
	if (ret)
		goto fail;
	ipath = path_join(dir, INDEX_JSON);
	if (!ipath) {
		ret = moex__errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	fd = open_regular(ipath, &size, err, errlen);
	if (fd >= 0) {
		close(fd);
		ret = read_index(m, ipath, err, errlen);
		if (ret)
			goto fail;
	} else if (fd == -ENOENT) {
		/* a model of one file: the index's absence is no error */
		if (err && errlen)
			err[0] = '\0';
		m->paths = calloc(1, sizeof(*m->paths));
		m->sizes = calloc(1, sizeof(*m->sizes));
		if (m->paths)
			m->paths[0] = path_join(dir, SINGLE_ST);
		if (!m->paths || !m->sizes || !m->paths[0]) {
			ret = moex__errf(err, errlen, -ENOMEM, "out of memory");
			goto fail;
		}
		m->nfiles = 1;
		ret = read_shard(m, 0, err, errlen);
		if (ret == -ENOENT)
			moex__errf(err, errlen, ret, "%s: neither %s nor %s", dir,
			     INDEX_JSON, SINGLE_ST);
		if (ret)
			goto fail;
		qsort(m->tensors, m->ntensors, sizeof(*m->tensors), cmp_name);
	} else {
		ret = fd;
		goto fail;
	}
	free(ipath);
	*out = m;
	return 0;
fail:
	free(ipath);
	moex__model_free(m);
	return ret;
}

void moex__model_free(struct moex_model_files *m)
{
	uint32_t i;

	if (!m)
		return;
	for (i = 0; i < m->ntensors; i++)
		free(m->tensors[i].name);
	free(m->tensors);
	if (m->paths)
		for (i = 0; i < m->nfiles; i++)
			free(m->paths[i]);
	free(m->paths);
	free(m->sizes);
	free(m->dir);
	free(m);
}

const struct moex_st_tensor *moex__model_find(const struct moex_model_files *m,
					      const char *name)
{
	struct moex_st_tensor key = { .name = (char *)name };

	if (!m || !name || !m->ntensors)
		return NULL;
	return bsearch(&key, m->tensors, m->ntensors, sizeof(*m->tensors),
		       cmp_name);
}

/* ---- one layer ------------------------------------------------------------- */

static const char *st_dtype_name(uint32_t dtype)
{
	switch (dtype) {
	case MOEX_ST_F32: return "F32";
	case MOEX_ST_BF16: return "BF16";
	case MOEX_ST_F8_E4M3: return "F8_E4M3";
	case MOEX_ST_F16: return "F16";
	default: return "a dtype moex does not read";
	}
}

static uint32_t to_moex_dtype(uint32_t st)
{
	switch (st) {
	case MOEX_ST_BF16: return MOEX_DTYPE_BF16;
	case MOEX_ST_F8_E4M3: return MOEX_DTYPE_FP8_E4M3;
	default: return MOEX_DTYPE_F32;
	}
}

static void fmt_shape(char *buf, size_t len, uint32_t ndim,
		      const uint64_t *shape)
{
	size_t o = 0;
	uint32_t i;

	o += (size_t)snprintf(buf, len, "[");
	for (i = 0; i < ndim && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%llu", i ? ", " : "",
				      (unsigned long long)shape[i]);
	if (o < len)
		snprintf(buf + o, len - o, "]");
}

/*
 * Find tensor `name` and check its shape ([d0] or [d0][d1]) and, when
 * dtype is not UINT32_MAX, its dtype (why: the rule it breaks).
 */
static int need(const struct moex_model_files *m, const char *name,
		uint32_t dtype, const char *why, uint32_t ndim, uint64_t d0,
		uint64_t d1, const struct moex_st_tensor **out, char *err,
		size_t errlen)
{
	const struct moex_st_tensor *t = moex__model_find(m, name);
	uint64_t want[2] = { d0, d1 };
	char have[96], says[64];

	*out = NULL;
	if (!t)
		return moex__errf(err, errlen, -ENOENT, "missing tensor %s (not in %s)",
			    name, m->nfiles > 1 ? "any shard of the index" :
			    m->nfiles ? m->paths[0] : "the model");
	if (dtype != UINT32_MAX && t->dtype != dtype)
		return moex__errf(err, errlen, -EINVAL, "%s: dtype %s, expected %s%s",
			    name, st_dtype_name(t->dtype), st_dtype_name(dtype),
			    why ? why : "");
	if (t->ndim != ndim || t->shape[0] != d0 ||
	    (ndim > 1 && t->shape[1] != d1)) {
		fmt_shape(have, sizeof(have), t->ndim, t->shape);
		fmt_shape(says, sizeof(says), ndim, want);
		return moex__errf(err, errlen, -EINVAL, "%s: shape %s, config says %s",
			    name, have, says);
	}
	*out = t;
	return 0;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

/* gate_proj, down_proj, up_proj (+ scales) of prefix (".experts.E" etc.). */
static int need_ffn(const struct moex_model_files *m, const char *prefix,
		    uint32_t dim, uint32_t inter, uint32_t *wdtype,
		    const char *first, const struct moex_st_tensor *ffn[6],
		    char *err, size_t errlen)
{
	static const char *const proj[3] = { "gate_proj", "down_proj", "up_proj" };
	const struct moex_model_config *c = &m->cfg;
	char name[160], why[200];
	uint32_t k;
	int ret;

	for (k = 0; k < 3; k++) {
		/* down_proj is [dim][inter], the others [inter][dim]. */
		uint64_t out = k == 1 ? dim : inter, in = k == 1 ? inter : dim;

		snprintf(name, sizeof(name), "%s.%s.weight", prefix, proj[k]);
		if (*wdtype == UINT32_MAX) {
			const struct moex_st_tensor *t = moex__model_find(m, name);

			if (t) {
				if (t->dtype != MOEX_ST_F32 && t->dtype != MOEX_ST_BF16 &&
				    t->dtype != MOEX_ST_F8_E4M3)
					return moex__errf(err, errlen, -EINVAL,
						    "%s: dtype %s, expected F32, BF16 or F8_E4M3",
						    name, st_dtype_name(t->dtype));
				if (c->fp8 != (t->dtype == MOEX_ST_F8_E4M3))
					return moex__errf(err, errlen, -EINVAL,
						    "%s: dtype %s, but config.json %s",
						    name, st_dtype_name(t->dtype),
						    c->fp8 ? "says fp8 (quantization_config)" :
						    "has no fp8 quantization_config");
				*wdtype = t->dtype;
			}
			why[0] = '\0';
		} else {
			snprintf(why, sizeof(why), " (as %s)", first);
		}
		ret = need(m, name, *wdtype, why, 2, out, in, &ffn[k], err, errlen);
		if (ret)
			return ret;
		if (!c->fp8)
			continue;
		snprintf(name, sizeof(name), "%s.%s.weight_scale_inv", prefix,
			 proj[k]);
		ret = need(m, name, MOEX_ST_F32, " (fp8 block scales)", 2,
			   div_up(out, c->weight_block[0]),
			   div_up(in, c->weight_block[1]), &ffn[3 + k], err,
			   errlen);
		if (ret)
			return ret;
	}
	return 0;
}

int moex__model_layer(const struct moex_model_files *m, uint32_t layer,
		      struct moex_layer_tensors *lt, char *err, size_t errlen)
{
	const struct moex_model_config *c;
	const struct moex_st_tensor *(*ex)[6] = NULL;
	char name[160], first[160];
	uint32_t wdtype = UINT32_MAX, e;
	int ret;

	if (!m || !lt)
		return moex__errf(err, errlen, -EINVAL, "invalid arguments");
	memset(lt, 0, sizeof(*lt));
	c = &m->cfg;
	if (layer < c->first_k_dense_replace || layer >= c->num_hidden_layers)
		return moex__errf(err, errlen, -EINVAL,
			    "layer %u is not a MoE layer: the MoE layers are %u to %u (first_k_dense_replace to num_hidden_layers - 1)",
			    layer, c->first_k_dense_replace,
			    c->num_hidden_layers ? c->num_hidden_layers - 1 : 0);

	snprintf(name, sizeof(name), "model.layers.%u.mlp.gate.weight", layer);
	lt->gate = moex__model_find(m, name);
	if (lt->gate && lt->gate->dtype != MOEX_ST_F32 &&
	    lt->gate->dtype != MOEX_ST_BF16)
		return moex__errf(err, errlen, -EINVAL,
			    "%s: dtype %s, expected F32 or BF16", name,
			    st_dtype_name(lt->gate->dtype));
	ret = need(m, name, UINT32_MAX, NULL, 2, c->n_routed_experts,
		   c->hidden_size, &lt->gate, err, errlen);
	if (ret)
		goto fail;

	snprintf(name, sizeof(name),
		 "model.layers.%u.mlp.gate.e_score_correction_bias", layer);
	if (c->noaux_tc || moex__model_find(m, name)) {
		ret = need(m, name, MOEX_ST_F32, NULL, 1, c->n_routed_experts, 0,
			   &lt->bias, err, errlen);
		if (ret)
			goto fail;
	}

	ex = calloc(c->n_routed_experts, sizeof(*ex));
	if (!ex) {
		ret = moex__errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	snprintf(first, sizeof(first),
		 "model.layers.%u.mlp.experts.0.gate_proj.weight", layer);
	for (e = 0; e < c->n_routed_experts; e++) {
		snprintf(name, sizeof(name), "model.layers.%u.mlp.experts.%u",
			 layer, e);
		ret = need_ffn(m, name, c->hidden_size, c->moe_intermediate_size,
			       &wdtype, first, ex[e], err, errlen);
		if (ret)
			goto fail;
	}
	if (c->n_shared_experts) {
		snprintf(name, sizeof(name), "model.layers.%u.mlp.shared_experts",
			 layer);
		ret = need_ffn(m, name, c->hidden_size,
			       c->n_shared_experts * c->moe_intermediate_size,
			       &wdtype, first, lt->shared, err, errlen);
		if (ret)
			goto fail;
	}

	lt->experts = ex;
	lt->desc.size = sizeof(lt->desc);
	lt->desc.dim = c->hidden_size;
	lt->desc.inter = c->moe_intermediate_size;
	lt->desc.n_experts = c->n_routed_experts;
	lt->desc.topk = c->num_experts_per_tok;
	lt->desc.n_groups = c->n_group;
	lt->desc.topk_groups = c->topk_group;
	lt->desc.n_shared = c->n_shared_experts;
	lt->desc.scoring = c->scoring;
	lt->desc.norm_topk = c->norm_topk_prob;
	lt->desc.route_scale = c->routed_scaling_factor;
	lt->desc.weight_dtype = to_moex_dtype(wdtype);
	lt->desc.gate_dtype = to_moex_dtype(lt->gate->dtype);
	return 0;
fail:
	free(ex);
	memset(lt, 0, sizeof(*lt));
	return ret;
}
