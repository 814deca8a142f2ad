/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * model.h - reading a DeepSeek-style model directory (libmoex internal).
 *
 * A model directory holds config.json and either one model.safetensors or
 * shards listed by model.safetensors.index.json ("weight_map": tensor name
 * -> file name). A safetensors file is an 8-byte little-endian header
 * length N, N bytes of JSON ({"name": {"dtype": "BF16", "shape": [..],
 * "data_offsets": [begin, end]}, ..., optional "__metadata__": {str: str}}),
 * then the data; offsets are relative to the first byte after the header.
 *
 * Everything is checked before anything is trusted: header length within
 * the file, strict JSON (UTF-8, no duplicate keys, no trailing bytes but
 * spaces), offsets in range with begin <= end, tensors not overlapping
 * (listed in any order), byte size ==
 * product(shape) * dtype size, every index entry present in its file.
 * Errors are a negative errno plus a message naming the file, the tensor
 * and what is wrong, written to the caller's buffer.
 *
 * Files: json.c (the strict parser), safetensors.c (one file's header),
 * model_read.c (directory, index, config.json, the per-layer tensors).
 */
#ifndef LIBMOEX_MODEL_H
#define LIBMOEX_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "moex.h"

/* Tensor element types of safetensors that moex reads. */
enum moex_st_dtype {
	MOEX_ST_F32 = 0,
	MOEX_ST_BF16 = 1,
	MOEX_ST_F8_E4M3 = 2,	/* "F8_E4M3" */
	MOEX_ST_F16 = 3,
	MOEX_ST_OTHER = 15,	/* a dtype moex does not read (I64, BOOL, ...) */
};

#define MOEX_ST_MAX_DIMS 4

/**
 * struct moex_st_tensor - one tensor of a model.
 * @name: its full name ("model.layers.3.mlp.experts.7.up_proj.weight").
 * @dtype: enum moex_st_dtype.
 * @ndim: dimensions (0 for a scalar), at most MOEX_ST_MAX_DIMS.
 * @shape: the dimensions, outermost first.
 * @file: index into struct moex_model_files.files.
 * @offset: absolute byte offset of its data in that file.
 * @nbytes: bytes of data.
 */
struct moex_st_tensor {
	char *name;
	uint32_t dtype;
	uint32_t ndim;
	uint64_t shape[MOEX_ST_MAX_DIMS];
	uint32_t file;
	uint64_t offset;
	uint64_t nbytes;
};

/**
 * struct moex_model_config - what config.json says (DeepSeek V2/V3 keys).
 * Missing optional keys take DeepSeek's defaults; see model_read.c.
 */
struct moex_model_config {
	uint32_t hidden_size;
	uint32_t moe_intermediate_size;
	uint32_t n_routed_experts;
	uint32_t num_experts_per_tok;
	uint32_t n_shared_experts;
	uint32_t n_group;
	uint32_t topk_group;
	uint32_t num_hidden_layers;
	uint32_t first_k_dense_replace;
	uint32_t scoring;		/* enum moex_scoring: scoring_func */
	uint32_t norm_topk_prob;
	float routed_scaling_factor;
	uint32_t fp8;			/* quantization_config names fp8 */
	uint32_t weight_block[2];	/* quantization_config.weight_block_size */
	uint32_t noaux_tc;		/* topk_method "noaux_tc": the gate has
					 * e_score_correction_bias */
};

/**
 * struct moex_model_files - a parsed model directory.
 * @dir: the directory.
 * @paths: [nfiles] safetensors file paths.
 * @sizes: [nfiles] their sizes.
 * @tensors: [ntensors], sorted by name (moex__model_find() bisects).
 * @cfg: config.json.
 */
struct moex_model_files {
	char *dir;
	char **paths;
	uint64_t *sizes;
	uint32_t nfiles;
	struct moex_st_tensor *tensors;
	uint32_t ntensors;
	struct moex_model_config cfg;
};

/**
 * struct moex_layer_tensors - the tensors of one MoE layer, by role.
 * @gate: mlp.gate.weight [n_experts][dim].
 * @bias: mlp.gate.e_score_correction_bias [n_experts], or NULL.
 * @experts: [n_experts][6]: gate_proj (w1), down_proj (w2), up_proj (w3)
 *	weights, then their weight_scale_inv (NULL unless fp8).
 * @shared: the same six for mlp.shared_experts (NULL when n_shared is 0).
 * @desc: the layer's struct moex_moe_desc, from config.json and dtypes.
 */
struct moex_layer_tensors {
	const struct moex_st_tensor *gate;
	const struct moex_st_tensor *bias;
	const struct moex_st_tensor *(*experts)[6];
	const struct moex_st_tensor *shared[6];
	struct moex_moe_desc desc;
};

/*
 * Strict JSON (json.c): a small DOM. Numbers keep their text so that
 * 64-bit offsets are exact; moex__json_u64() converts one.
 */
enum moex_json_type {
	MOEX_JSON_NULL, MOEX_JSON_BOOL, MOEX_JSON_NUMBER, MOEX_JSON_STRING,
	MOEX_JSON_ARRAY, MOEX_JSON_OBJECT,
};

struct moex_json {
	enum moex_json_type type;
	int boolean;
	char *str;		/* STRING: NUL-terminated UTF-8; NUMBER: text */
	size_t len;		/* STRING: bytes; ARRAY/OBJECT: members */
	char **keys;		/* OBJECT: [len], unique */
	struct moex_json *items;	/* ARRAY/OBJECT: [len] */
};

/* Parse buf[0..len) (need not be NUL-terminated). 0, or -EINVAL with a
 * message "at byte N: what" in err. Nesting is limited (64). */
int moex__json_parse(const char *buf, size_t len, struct moex_json *out,
		     char *err, size_t errlen);
void moex__json_free(struct moex_json *j);
const struct moex_json *moex__json_get(const struct moex_json *obj,
				       const char *key);
/* 0 or -EINVAL (not a non-negative integer, or above UINT64_MAX). */
int moex__json_u64(const struct moex_json *num, uint64_t *out);
/* 0 or -EINVAL: a finite number. */
int moex__json_double(const struct moex_json *num, double *out);

/*
 * One safetensors file (safetensors.c): append its tensors (file index
 * `file`) to *tensors, *ntensors (realloc'd). fd is open for reading;
 * size is the file's size. 0 or -EINVAL/-ENOMEM/-EIO with the message.
 */
int moex__st_read_header(int fd, uint64_t size, const char *path,
			 uint32_t file, struct moex_st_tensor **tensors,
			 uint32_t *ntensors, char *err, size_t errlen);

/* A directory (model_read.c): 0 or -errno with a message. */
int moex__model_read(const char *dir, struct moex_model_files **out,
		     char *err, size_t errlen);
void moex__model_free(struct moex_model_files *m);
const struct moex_st_tensor *moex__model_find(const struct moex_model_files *m,
					      const char *name);

/*
 * The tensors of MoE layer `layer` (first_k_dense_replace <= layer <
 * num_hidden_layers), checked against the config: every tensor present,
 * dtypes consistent (all expert weights one of F32/BF16/F8_E4M3, scales F32
 * exactly when fp8), shapes as the config says. -ENOENT/-EINVAL with a
 * message naming the tensor. lt->experts is malloc'd: free it.
 */
int moex__model_layer(const struct moex_model_files *m, uint32_t layer,
		      struct moex_layer_tensors *lt, char *err, size_t errlen);

#endif /* LIBMOEX_MODEL_H */
