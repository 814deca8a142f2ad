// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * safetensors.c - one safetensors file's header, checked.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON, data.
 * The header is read with pread(2) into memory of its own (at most
 * MOEX_ST_HEADER_MAX bytes), parsed strictly (json.c), and every tensor's
 * dtype, shape and data_offsets are checked against each other and the
 * file before the tensor is appended. See Documentation/model-format.rst.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "model.h"

/* DeepSeek-V3's shards have headers of a few hundred KiB. */
#define MOEX_ST_HEADER_MAX	(100ull << 20)

static const struct {
	const char *name;
	uint32_t dtype;
	uint32_t size;
} st_dtypes[] = {
	{ "F32", MOEX_ST_F32, 4 },
	{ "BF16", MOEX_ST_BF16, 2 },
	{ "F8_E4M3", MOEX_ST_F8_E4M3, 1 },
	{ "F16", MOEX_ST_F16, 2 },
	{ "F64", MOEX_ST_OTHER, 8 },
	{ "F8_E5M2", MOEX_ST_OTHER, 1 },
	{ "I64", MOEX_ST_OTHER, 8 },
	{ "I32", MOEX_ST_OTHER, 4 },
	{ "I16", MOEX_ST_OTHER, 2 },
	{ "I8", MOEX_ST_OTHER, 1 },
	{ "U64", MOEX_ST_OTHER, 8 },
	{ "U32", MOEX_ST_OTHER, 4 },
	{ "U16", MOEX_ST_OTHER, 2 },
	{ "U8", MOEX_ST_OTHER, 1 },
	{ "BOOL", MOEX_ST_OTHER, 1 },
};

/* Read exactly len bytes at off: 0, -EIO for a short read, or -errno. */
static int st_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno > 0 ? -errno : -EIO;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int cmp_offset(const void *a, const void *b)
{
	const struct moex_st_tensor *x = a, *y = b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return 0;
}

/* One tensor entry: fill *t (name not set). */
static int st_tensor(const char *path, const char *name,
		     const struct moex_json *v, uint64_t data_size,
		     struct moex_st_tensor *t, char *err, size_t errlen)
{
	const struct moex_json *dt, *shape, *offs;
	uint64_t elems = 1, esize = 0, begin, end;
	size_t i;

	if (v->type != MOEX_JSON_OBJECT)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: not an object", path, name);
	for (i = 0; i < v->len; i++) {
		if (strcmp(v->keys[i], "dtype") && strcmp(v->keys[i], "shape") &&
		    strcmp(v->keys[i], "data_offsets"))
			return moex__errf(err, errlen, -EINVAL,
				      "%s: tensor %s: unknown key \"%s\"", path,
				      name, v->keys[i]);
	}
	dt = moex__json_get(v, "dtype");
	shape = moex__json_get(v, "shape");
	offs = moex__json_get(v, "data_offsets");
	if (!dt || !shape || !offs)
		return moex__errf(err, errlen, -EINVAL, "%s: tensor %s: missing \"%s\"",
			      path, name,
			      !dt ? "dtype" : !shape ? "shape" : "data_offsets");
	if (dt->type != MOEX_JSON_STRING)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: dtype is not a string", path, name);
	for (i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++) {
		if (!strcmp(dt->str, st_dtypes[i].name)) {
			t->dtype = st_dtypes[i].dtype;
			esize = st_dtypes[i].size;
			break;
		}
	}
	if (!esize)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: unknown dtype \"%.32s\"", path, name,
			      dt->str);
	if (shape->type != MOEX_JSON_ARRAY)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: shape is not an array", path, name);
	if (shape->len > MOEX_ST_MAX_DIMS)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: shape has %zu dimensions, at most %d",
			      path, name, shape->len, MOEX_ST_MAX_DIMS);
	t->ndim = (uint32_t)shape->len;
	for (i = 0; i < shape->len; i++) {
		uint64_t d;

		if (moex__json_u64(&shape->items[i], &d))
			return moex__errf(err, errlen, -EINVAL,
				      "%s: tensor %s: shape[%zu] is not an integer in [0, 2^64)",
				      path, name, i);
		t->shape[i] = d;
		if (d && elems > UINT64_MAX / d)
			return moex__errf(err, errlen, -EINVAL,
				      "%s: tensor %s: shape overflows 64 bits",
				      path, name);
		elems *= d;
	}
	if (elems > UINT64_MAX / esize)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: byte size overflows 64 bits",
			      path, name);
	if (offs->type != MOEX_JSON_ARRAY || offs->len != 2 ||
	    moex__json_u64(&offs->items[0], &begin) ||
	    moex__json_u64(&offs->items[1], &end))
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: data_offsets is not [begin, end] of integers in [0, 2^64)",
			      path, name);
	if (begin > end)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: data_offsets [%llu, %llu]: begin > end",
			      path, name, (unsigned long long)begin,
			      (unsigned long long)end);
	if (end > data_size)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: data_offsets [%llu, %llu] out of range: the data is %llu bytes",
			      path, name, (unsigned long long)begin,
			      (unsigned long long)end,
			      (unsigned long long)data_size);
	if (end - begin != elems * esize)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: tensor %s: data_offsets [%llu, %llu] hold %llu bytes, dtype %s and shape say %llu",
			      path, name, (unsigned long long)begin,
			      (unsigned long long)end,
			      (unsigned long long)(end - begin), dt->str,
			      (unsigned long long)(elems * esize));
	t->offset = begin;	/* relative until the caller adds the base */
	t->nbytes = end - begin;
	return 0;
}

static int st_metadata(const char *path, const struct moex_json *v,
		       char *err, size_t errlen)
{
	size_t i;

	if (v->type != MOEX_JSON_OBJECT)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: __metadata__ is not an object", path);
	for (i = 0; i < v->len; i++)
		if (v->items[i].type != MOEX_JSON_STRING)
			return moex__errf(err, errlen, -EINVAL,
				      "%s: __metadata__ \"%s\" is not a string",
				      path, v->keys[i]);
	return 0;
}

int moex__st_read_header(int fd, uint64_t size, const char *path,
			 uint32_t file, struct moex_st_tensor **tensors,
			 uint32_t *ntensors, char *err, size_t errlen)
{
	struct moex_st_tensor *all, *mine = NULL, *sorted = NULL;
	unsigned char lenbuf[8];
	struct moex_json root;
	uint64_t hlen = 0, data_size, base;
	uint32_t old, n = 0, i;
	char jerr[160];
	char *hdr;
	int ret;

	if (!tensors || !ntensors)
		return moex__errf(err, errlen, -EINVAL, "invalid arguments");
	if (!path)
		path = "(safetensors)";
	old = *ntensors;
	if (size < 8)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: %llu bytes, shorter than the 8-byte header length",
			      path, (unsigned long long)size);
	ret = st_pread(fd, lenbuf, 8, 0);
	if (ret)
		return moex__errf(err, errlen, ret, "%s: reading the header length: %s",
			      path, ret == -EIO ? "short read" : strerror(-ret));
	for (i = 0; i < 8; i++)
		hlen |= (uint64_t)lenbuf[i] << (8 * i);
	if (hlen == 0)
		return moex__errf(err, errlen, -EINVAL, "%s: header length 0", path);
	if (hlen > size - 8)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: header length %llu beyond the file (%llu bytes)",
			      path, (unsigned long long)hlen,
			      (unsigned long long)size);
	if (hlen > MOEX_ST_HEADER_MAX)
		return moex__errf(err, errlen, -EINVAL,
			      "%s: header length %llu above the limit of %llu",
			      path, (unsigned long long)hlen, MOEX_ST_HEADER_MAX);
	base = 8 + hlen;
	data_size = size - base;
	hdr = malloc(hlen);
	if (!hdr)
		return moex__errf(err, errlen, -ENOMEM, "%s: out of memory", path);
	ret = st_pread(fd, hdr, hlen, 8);
	if (ret) {
		free(hdr);
		return moex__errf(err, errlen, ret, "%s: reading the header: %s",
			      path, ret == -EIO ? "short read" : strerror(-ret));
	}
	ret = moex__json_parse(hdr, hlen, &root, jerr, sizeof(jerr));
	free(hdr);
	if (ret)
		return moex__errf(err, errlen, ret, "%s: JSON header: %s", path, jerr);
	if (root.type != MOEX_JSON_OBJECT) {
		ret = moex__errf(err, errlen, -EINVAL,
			     "%s: JSON header is not an object", path);
		goto out;
	}
	if (root.len > UINT32_MAX - old) {
		ret = moex__errf(err, errlen, -EINVAL, "%s: too many tensors", path);
		goto out;
	}
	mine = calloc(root.len ? root.len : 1, sizeof(*mine));
	if (!mine) {
		ret = moex__errf(err, errlen, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (i = 0; i < root.len; i++) {
		const char *name = root.keys[i];

		if (!strcmp(name, "__metadata__")) {
			ret = st_metadata(path, &root.items[i], err, errlen);
			if (ret)
				goto out;
			continue;
		}
		if (!*name) {
			ret = moex__errf(err, errlen, -EINVAL,
				     "%s: a tensor with an empty name", path);
			goto out;
		}
		ret = st_tensor(path, name, &root.items[i], data_size, &mine[n],
				err, errlen);
		if (ret)
			goto out;
		mine[n].file = file;
		/* Steal the key: root is freed below. */
		mine[n].name = root.keys[i];
		root.keys[i] = NULL;
		n++;
	}
	/* No two tensors share a byte (empty tensors share none). */
	if (n > 1) {
		sorted = malloc(n * sizeof(*sorted));
		if (!sorted) {
			ret = moex__errf(err, errlen, -ENOMEM, "%s: out of memory", path);
			goto out;
		}
		memcpy(sorted, mine, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), cmp_offset);
		const struct moex_st_tensor *a = NULL;

		for (i = 0; i < n; i++) {
			const struct moex_st_tensor *b = &sorted[i];

			if (!b->nbytes)
				continue;
			/* a: the earlier non-empty tensor that ends last. */
			if (a && a->offset + a->nbytes > b->offset) {
				ret = moex__errf(err, errlen, -EINVAL,
					     "%s: tensors %s [%llu, %llu] and %s [%llu, %llu] overlap",
					     path, a->name,
					     (unsigned long long)a->offset,
					     (unsigned long long)(a->offset + a->nbytes),
					     b->name, (unsigned long long)b->offset,
					     (unsigned long long)(b->offset + b->nbytes));
				goto out;
			}
			if (!a || b->offset + b->nbytes > a->offset + a->nbytes)
				a = b;
		}
	}
	all = realloc(*tensors, ((size_t)old + n + 1) * sizeof(*all));
	if (!all) {
		ret = moex__errf(err, errlen, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (i = 0; i < n; i++) {
		mine[i].offset += base;
		all[old + i] = mine[i];
		mine[i].name = NULL;
	}
	*tensors = all;
	*ntensors = old + n;
	ret = 0;
out:
	if (mine)
		for (i = 0; i < n; i++)
			free(mine[i].name);
	free(mine);
	free(sorted);
	moex__json_free(&root);
	return ret;
}
