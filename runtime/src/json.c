// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * json.c - a strict JSON parser (RFC 8259) for safetensors headers,
 * model.safetensors.index.json and config.json.
 *
 * Strict means: UTF-8 only (no overlong forms, no surrogates, nothing
 * above U+10FFFF), no byte order mark, no control characters in strings,
 * \u escapes with surrogates only as valid pairs and never \u0000 (names
 * are C strings), numbers exactly as the grammar says (kept as text so
 * that 64-bit offsets stay exact), no duplicate keys in an object, nesting
 * at most MOEX_JSON_MAX_DEPTH deep, and nothing after the value but white
 * space. See Documentation/model-format.rst for why we have our own.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MOEX_JSON_MAX_DEPTH 64

struct jp {
	const unsigned char *p;
	size_t len;
	size_t pos;
	char *err;
	size_t errlen;
};

static int jp_fail(struct jp *jp, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int jp_fail(struct jp *jp, size_t at, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!jp->err || !jp->errlen)
		return -EINVAL;
	n = snprintf(jp->err, jp->errlen, "at byte %zu: ", at);
	if (n >= 0 && (size_t)n < jp->errlen) {
		va_start(ap, fmt);
		vsnprintf(jp->err + n, jp->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int jp_nomem(struct jp *jp)
{
	if (jp->err && jp->errlen)
		snprintf(jp->err, jp->errlen, "at byte %zu: out of memory",
			 jp->pos);
	return -ENOMEM;
}

static void jp_space(struct jp *jp)
{
	while (jp->pos < jp->len) {
		unsigned char c = jp->p[jp->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		jp->pos++;
	}
}

static const char *jp_what(struct jp *jp)
{
	static const char *const eof = "end of input";

	return jp->pos >= jp->len ? eof : "unexpected character";
}

static int jp_lit(struct jp *jp, const char *word)
{
	size_t n = strlen(word);

	if (jp->len - jp->pos < n || memcmp(jp->p + jp->pos, word, n))
		return jp_fail(jp, jp->pos, "invalid literal");
	jp->pos += n;
	return 0;
}

static int jp_number(struct jp *jp, struct moex_json *out)
{
	size_t start = jp->pos;
	const unsigned char *p = jp->p;
	size_t i = jp->pos, n = jp->len;

	if (i < n && p[i] == '-')
		i++;
	if (i < n && p[i] == '0') {
		i++;
	} else if (i < n && p[i] >= '1' && p[i] <= '9') {
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
	} else {
		return jp_fail(jp, i, "invalid number");
	}
	if (i < n && p[i] == '.') {
		i++;
		if (i >= n || p[i] < '0' || p[i] > '9')
			return jp_fail(jp, i, "invalid number: digit expected after '.'");
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		i++;
		if (i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= n || p[i] < '0' || p[i] > '9')
			return jp_fail(jp, i, "invalid number: digit expected in exponent");
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
	}
	out->type = MOEX_JSON_NUMBER;
	out->str = malloc(i - start + 1);
	if (!out->str)
		return jp_nomem(jp);
	memcpy(out->str, p + start, i - start);
	out->str[i - start] = '\0';
	out->len = i - start;
	jp->pos = i;
	return 0;
}

static int jp_hex4(struct jp *jp, size_t at, unsigned int *out)
{
	unsigned int v = 0;
	size_t i;

	if (jp->len - at < 4)
		return jp_fail(jp, at, "truncated \\u escape");
	for (i = 0; i < 4; i++) {
		unsigned char c = jp->p[at + i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return jp_fail(jp, at + i, "invalid hex digit in \\u escape");
	}
	*out = v;
	return 0;
}

/*
 * The length of the valid UTF-8 sequence at p[0..n) (a lead byte >= 0x80),
 * or 0 when it is not one: no overlong forms, no surrogates, <= U+10FFFF.
 */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t need, i;
	uint32_t cp, min;

	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
		cp = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		cp = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return 0;	/* continuation, 0xc0/0xc1 (overlong), > 0xf4 */
	}
	if (n < need)
		return 0;
	for (i = 1; i < need; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

static size_t utf8_put(char *d, uint32_t cp)
{
	if (cp < 0x80) {
		d[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		d[0] = (char)(0xc0 | (cp >> 6));
		d[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		d[0] = (char)(0xe0 | (cp >> 12));
		d[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		d[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	d[0] = (char)(0xf0 | (cp >> 18));
	d[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	d[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	d[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The character of a one-letter escape "\\c", or 0. */
static char jp_escape(unsigned char c)
{
	switch (c) {
	case '"':
	case '\\':
	case '/':
		return (char)c;
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	default:
		return 0;
	}
}

/* A string at jp->pos (the opening quote): *out malloc'd, *outlen bytes. */
static int jp_string(struct jp *jp, char **out, size_t *outlen)
{
	const unsigned char *p = jp->p;
	size_t start = jp->pos + 1, i, end, o = 0;
	char *d;
	int ret;

	/* Find the closing quote; the decoded string is never longer. */
	for (end = start; end < jp->len && p[end] != '"'; end++)
		if (p[end] == '\\')
			end++;
	if (end >= jp->len)
		return jp_fail(jp, jp->pos, "unterminated string");
	d = malloc(end - start + 1);
	if (!d)
		return jp_nomem(jp);
	for (i = start; i < end;) {
		unsigned char c = p[i];

		if (c < 0x20) {
			ret = jp_fail(jp, i, "control character 0x%02x in string", c);
			goto fail;
		}
		if (c >= 0x80) {
			size_t k = utf8_seq(p + i, end - i);

			if (!k) {
				ret = jp_fail(jp, i, "invalid UTF-8 in string");
				goto fail;
			}
			memcpy(d + o, p + i, k);
			o += k;
			i += k;
			continue;
		}
		if (c != '\\') {
			d[o++] = (char)c;
			i++;
			continue;
		}
		/* An escape: end was found skipping the byte after '\'. */
		if (p[i + 1] != 'u') {
			char e = jp_escape(p[i + 1]);

			if (!e) {
				ret = jp_fail(jp, i, "invalid escape");
				goto fail;
			}
			d[o++] = e;
			i += 2;
			continue;
		}
		{
			unsigned int hi, lo;
			uint32_t cp;

			ret = jp_hex4(jp, i + 2, &hi);
			if (ret)
				goto fail;
			if (hi >= 0xdc00 && hi <= 0xdfff) {
				ret = jp_fail(jp, i, "lone low surrogate \\u%04x", hi);
				goto fail;
			}
			if (hi >= 0xd800 && hi <= 0xdbff) {
				if (i + 12 > end || p[i + 6] != '\\' ||
				    p[i + 7] != 'u') {
					ret = jp_fail(jp, i, "lone high surrogate \\u%04x", hi);
					goto fail;
				}
				ret = jp_hex4(jp, i + 8, &lo);
				if (ret)
					goto fail;
				if (lo < 0xdc00 || lo > 0xdfff) {
					ret = jp_fail(jp, i, "high surrogate \\u%04x not followed by a low one", hi);
					goto fail;
				}
				cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) +
				     ((uint32_t)lo - 0xdc00);
				i += 12;
			} else {
				if (hi == 0) {
					ret = jp_fail(jp, i, "\\u0000 in string");
					goto fail;
				}
				cp = hi;
				i += 6;
			}
			/* 6 or 12 escape bytes make at most 3 or 4 bytes. */
			o += utf8_put(d + o, cp);
		}
	}
	d[o] = '\0';
	*out = d;
	*outlen = o;
	jp->pos = end + 1;
	return 0;
fail:
	free(d);
	return ret;
}

static int jp_value(struct jp *jp, struct moex_json *out, int depth);

static int jp_grow(struct jp *jp, struct moex_json *j, size_t *cap, int keys)
{
	size_t ncap = *cap ? *cap * 2 : 4;
	struct moex_json *items;

	if (j->len < *cap)
		return 0;
	items = realloc(j->items, ncap * sizeof(*items));
	if (!items)
		return jp_nomem(jp);
	j->items = items;
	if (keys) {
		char **k = realloc(j->keys, ncap * sizeof(*k));

		if (!k)
			return jp_nomem(jp);
		j->keys = k;
	}
	*cap = ncap;
	return 0;
}

static int cmp_key_index(const void *a, const void *b, void *keys)
{
	char *const *k = keys;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(k[x], k[y]);

	if (c)
		return c;
	return x < y ? -1 : x > y;
}

/*
 * Duplicate keys: small objects pairwise, large ones (an index.json has
 * tens of thousands of keys) by sorting their indexes, O(n log n).
 */
static int jp_dups(struct jp *jp, const struct moex_json *j, size_t at)
{
	size_t *idx, i;

	if (j->len < 2)
		return 0;
	if (j->len <= 16) {
		size_t a, b;

		for (a = 0; a < j->len; a++)
			for (b = a + 1; b < j->len; b++)
				if (!strcmp(j->keys[a], j->keys[b]))
					return jp_fail(jp, at, "duplicate key \"%s\"",
						       j->keys[b]);
		return 0;
	}
	idx = malloc(j->len * sizeof(*idx));
	if (!idx)
		return jp_nomem(jp);
	for (i = 0; i < j->len; i++)
		idx[i] = i;
	qsort_r(idx, j->len, sizeof(*idx), cmp_key_index, j->keys);
	for (i = 1; i < j->len; i++) {
		if (!strcmp(j->keys[idx[i - 1]], j->keys[idx[i]])) {
			int ret = jp_fail(jp, at, "duplicate key \"%s\"",
					  j->keys[idx[i]]);

			free(idx);
			return ret;
		}
	}
	free(idx);
	return 0;
}

static int jp_array(struct jp *jp, struct moex_json *out, int depth)
{
	size_t cap = 0;
	int ret;

	out->type = MOEX_JSON_ARRAY;
	jp->pos++;
	jp_space(jp);
	if (jp->pos < jp->len && jp->p[jp->pos] == ']') {
		jp->pos++;
		return 0;
	}
	for (;;) {
		ret = jp_grow(jp, out, &cap, 0);
		if (ret)
			return ret;
		memset(&out->items[out->len], 0, sizeof(out->items[0]));
		out->len++;
		ret = jp_value(jp, &out->items[out->len - 1], depth + 1);
		if (ret)
			return ret;
		jp_space(jp);
		if (jp->pos < jp->len && jp->p[jp->pos] == ',') {
			jp->pos++;
			continue;
		}
		if (jp->pos < jp->len && jp->p[jp->pos] == ']') {
			jp->pos++;
			return 0;
		}
		return jp_fail(jp, jp->pos, "',' or ']' expected in array: %s",
			       jp_what(jp));
	}
}

static int jp_object(struct jp *jp, struct moex_json *out, int depth)
{
	size_t cap = 0, start = jp->pos;
	int ret;

	out->type = MOEX_JSON_OBJECT;
	jp->pos++;
	jp_space(jp);
	if (jp->pos < jp->len && jp->p[jp->pos] == '}') {
		jp->pos++;
		return 0;
	}
	for (;;) {
		size_t klen;

		jp_space(jp);
		if (jp->pos >= jp->len || jp->p[jp->pos] != '"')
			return jp_fail(jp, jp->pos, "string key expected in object: %s",
				       jp_what(jp));
		ret = jp_grow(jp, out, &cap, 1);
		if (ret)
			return ret;
		memset(&out->items[out->len], 0, sizeof(out->items[0]));
		ret = jp_string(jp, &out->keys[out->len], &klen);
		if (ret)
			return ret;
		out->len++;
		jp_space(jp);
		if (jp->pos >= jp->len || jp->p[jp->pos] != ':')
			return jp_fail(jp, jp->pos, "':' expected after key: %s",
				       jp_what(jp));
		jp->pos++;
		ret = jp_value(jp, &out->items[out->len - 1], depth + 1);
		if (ret)
			return ret;
		jp_space(jp);
		if (jp->pos < jp->len && jp->p[jp->pos] == ',') {
			jp->pos++;
			continue;
		}
		if (jp->pos < jp->len && jp->p[jp->pos] == '}') {
			jp->pos++;
			return jp_dups(jp, out, start);
		}
		return jp_fail(jp, jp->pos, "',' or '}' expected in object: %s",
			       jp_what(jp));
	}
}

static int jp_value(struct jp *jp, struct moex_json *out, int depth)
{
	unsigned char c;

	jp_space(jp);
	if (jp->pos >= jp->len)
		return jp_fail(jp, jp->pos, "value expected: end of input");
	c = jp->p[jp->pos];
	switch (c) {
	case '{':
	case '[':
		if (depth >= MOEX_JSON_MAX_DEPTH)
			return jp_fail(jp, jp->pos, "nesting deeper than %d",
				       MOEX_JSON_MAX_DEPTH);
		return c == '{' ? jp_object(jp, out, depth) :
				  jp_array(jp, out, depth);
	case '"':
		out->type = MOEX_JSON_STRING;
		return jp_string(jp, &out->str, &out->len);
	case 't':
		out->type = MOEX_JSON_BOOL;
		out->boolean = 1;
		return jp_lit(jp, "true");
	case 'f':
		out->type = MOEX_JSON_BOOL;
		return jp_lit(jp, "false");
	case 'n':
		out->type = MOEX_JSON_NULL;
		return jp_lit(jp, "null");
	default:
		if (c == '-' || (c >= '0' && c <= '9'))
			return jp_number(jp, out);
		return jp_fail(jp, jp->pos, "value expected: %s 0x%02x",
			       c >= 0x80 ? "byte" : "character", c);
	}
}

int moex__json_parse(const char *buf, size_t len, struct moex_json *out,
		     char *err, size_t errlen)
{
	struct jp jp = {
		.p = (const unsigned char *)buf, .len = len,
		.err = err, .errlen = errlen,
	};
	int ret;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!buf)
		return jp_fail(&jp, 0, "no input");
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		return jp_fail(&jp, 0, "byte order mark");
	ret = jp_value(&jp, out, 0);
	if (!ret) {
		jp_space(&jp);
		if (jp.pos < jp.len)
			ret = jp_fail(&jp, jp.pos, "trailing bytes after the value");
	}
	if (ret)
		moex__json_free(out);
	return ret;
}

void moex__json_free(struct moex_json *j)
{
	size_t i;

	if (!j)
		return;
	if (j->type == MOEX_JSON_ARRAY || j->type == MOEX_JSON_OBJECT) {
		for (i = 0; i < j->len; i++) {
			moex__json_free(&j->items[i]);
			if (j->keys)
				free(j->keys[i]);
		}
	}
	free(j->items);
	free(j->keys);
	free(j->str);
	memset(j, 0, sizeof(*j));
}

const struct moex_json *moex__json_get(const struct moex_json *obj,
				       const char *key)
{
	size_t i;

	if (!obj || obj->type != MOEX_JSON_OBJECT || !key)
		return NULL;
	for (i = 0; i < obj->len; i++)
		if (!strcmp(obj->keys[i], key))
			return &obj->items[i];
	return NULL;
}

int moex__json_u64(const struct moex_json *num, uint64_t *out)
{
	const char *s;
	uint64_t v = 0;

	if (!num || num->type != MOEX_JSON_NUMBER || !num->str || !out)
		return -EINVAL;
	s = num->str;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		unsigned int d;

		if (*s < '0' || *s > '9')
			return -EINVAL;	/* '-', '.', exponent */
		d = (unsigned int)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int moex__json_double(const struct moex_json *num, double *out)
{
	locale_t c_locale;
	char *end;
	double v;

	if (!num || num->type != MOEX_JSON_NUMBER || !num->str || !out)
		return -EINVAL;
	/*
	 * The grammar was checked, so strtod reads all of it (no hex, no
	 * "inf"); in the C locale, whatever LC_NUMERIC the application set.
	 */
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	if (!c_locale)
		return -ENOMEM;
	v = strtod_l(num->str, &end, c_locale);
	freelocale(c_locale);
	if (*end || !isfinite(v))
		return -EINVAL;
	*out = v;
	return 0;
}
