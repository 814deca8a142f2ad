// SPDX-License-Identifier: GPL-2.0
/*
 * unit-model: model reading (runtime/src/json.c, safetensors.c,
 * model_read.c). The kept corpus (tests/corpus, its table `expect`), the
 * strict JSON parser case by case, and models written here by a tiny
 * safetensors writer (bf16 and fp8, sharded) read back tensor by tensor.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../runtime/src/model.h"
#include "harness.h"

static char errbuf[1024];

/* ---- helpers ----------------------------------------------------------------- */

static int is_dir(const char *p)
{
	struct stat st;

	return !stat(p, &st) && S_ISDIR(st.st_mode);
}

/*
 * The corpus: tests/corpus next to this file's directory (__FILE__ as the
 * compiler saw it, relative to where make ran), else found walking up
 * from the binary (under build/tests/unit or build/san/tests/unit).
 */
static const char *corpus_dir(void)
{
	static char dir[PATH_MAX];
	char exe[PATH_MAX - 32], *slash;
	ssize_t n;
	int up;

	snprintf(dir, sizeof(dir), "%s", __FILE__);
	slash = strrchr(dir, '/');
	if (slash) {
		snprintf(slash, sizeof(dir) - (size_t)(slash - dir),
			 "/../corpus");
		if (is_dir(dir))
			return dir;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	for (up = 0; up < 8; up++) {
		slash = strrchr(exe, '/');
		if (!slash)
			break;
		*slash = '\0';
		snprintf(dir, sizeof(dir), "%s/tests/corpus", exe);
		if (is_dir(dir))
			return dir;
	}
	return NULL;
}

static int errno_of(const char *s)
{
	if (!strcmp(s, "0"))
		return 0;
	if (!strcmp(s, "EINVAL"))
		return -EINVAL;
	if (!strcmp(s, "ENOENT"))
		return -ENOENT;
	if (!strcmp(s, "EIO"))
		return -EIO;
	if (!strcmp(s, "ENOMEM"))
		return -ENOMEM;
	return 1;	/* never returned */
}

/* moex__st_read_header() on a file: its return, tensors in *t / *n. */
static int read_file_header(const char *path, struct moex_st_tensor **t,
			    uint32_t *n)
{
	struct stat st;
	int fd, ret;

	*t = NULL;
	*n = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		close(fd);
		return -errno;
	}
	errbuf[0] = '\0';
	ret = moex__st_read_header(fd, (uint64_t)st.st_size, path, 0, t, n,
				   errbuf, sizeof(errbuf));
	close(fd);
	return ret;
}

static void free_tensors(struct moex_st_tensor *t, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		free(t[i].name);
	free(t);
}

/* ---- the corpus ---------------------------------------------------------- */

/* One case of `expect`: 0 when it behaves, else why in *why. */
static int corpus_case(const char *corpus, char *line, char *why,
		       size_t whylen)
{
	char *kind, *name, *layer, *ern, *key, *save = NULL;
	char path[PATH_MAX];
	int want, ret, ret2;

	line[strcspn(line, "\n")] = '\0';
	kind = strtok_r(line, "\t", &save);
	name = strtok_r(NULL, "\t", &save);
	layer = strtok_r(NULL, "\t", &save);
	ern = strtok_r(NULL, "\t", &save);
	key = strtok_r(NULL, "\t", &save);
	if (!kind || !name || !layer || !ern) {
		snprintf(why, whylen, "malformed line");
		return -1;
	}
	if (!key)
		key = "";
	want = errno_of(ern);
	snprintf(path, sizeof(path), "%s/safetensors/%s", corpus, name);
	errbuf[0] = '\0';
	if (!strcmp(kind, "file")) {
		struct moex_st_tensor *t;
		uint32_t n;

		ret = read_file_header(path, &t, &n);
		free_tensors(t, n);
	} else {
		struct moex_model_files *m = NULL;

		ret = moex__model_read(path, &m, errbuf, sizeof(errbuf));
		if (!strcmp(kind, "layer")) {
			struct moex_layer_tensors lt;

			if (ret) {
				snprintf(why, whylen, "%s: model_read %d: %s",
					 name, ret, errbuf);
				return -1;
			}
			ret2 = moex__model_layer(m, (uint32_t)atoi(layer), &lt,
						 errbuf, sizeof(errbuf));
			ret = ret2;
			free(lt.experts);
		} else if (strcmp(kind, "dir")) {
			moex__model_free(m);
			snprintf(why, whylen, "unknown kind %s", kind);
			return -1;
		}
		moex__model_free(m);
	}
	if (ret != want) {
		snprintf(why, whylen, "%s %s: returned %d, want %d (%s): \"%s\"",
			 kind, name, ret, want, ern, errbuf);
		return -1;
	}
	if (!strstr(errbuf, key)) {
		snprintf(why, whylen, "%s %s: message \"%s\" lacks \"%s\"",
			 kind, name, errbuf, key);
		return -1;
	}
	if (want && strstr(errbuf, "(null)")) {
		snprintf(why, whylen, "%s %s: message \"%s\"", kind, name, errbuf);
		return -1;
	}
	return 0;
}

TEST(corpus)
{
	const char *corpus = corpus_dir();
	char path[PATH_MAX], line[1024], why[1400];
	int cases = 0, bad = 0;
	FILE *f;

	CHECK_MSG(corpus, "tests/corpus not found from %s", __FILE__);
	snprintf(path, sizeof(path), "%s/expect", corpus);
	f = fopen(path, "r");
	CHECK_MSG(f, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (corpus_case(corpus, line, why, sizeof(why))) {
			if (!bad)
				h_fail(__FILE__, __LINE__, "%s", why);
			else
				fprintf(stderr, "  also: %s\n", why);
			bad++;
		}
		cases++;
	}
	fclose(f);
	CHECK_INT(bad, 0);
	/* The table is the corpus: losing lines would lose cases. */
	CHECK_MSG(cases >= 75, "only %d cases in %s", cases, path);
}

/* Every file in the corpus has a line in `expect`. */
TEST(corpus_complete)
{
	const char *corpus = corpus_dir();
	char path[PATH_MAX], cmd[PATH_MAX + 128];
	FILE *p;
	int missing;

	CHECK(corpus);
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && for f in safetensors/*; do grep -q \"	${f#safetensors/}	\" expect || echo \"$f\"; done | wc -l",
		 corpus);
	p = popen(cmd, "r");
	CHECK(p);
	CHECK(fgets(path, sizeof(path), p));
	missing = atoi(path);
	pclose(p);
	CHECK_MSG(missing == 0, "%d corpus files without a line in expect", missing);
}

/* ---- JSON --------------------------------------------------------------------- */

static int parse(const char *s, struct moex_json *j)
{
	errbuf[0] = '\0';
	return moex__json_parse(s, strlen(s), j, errbuf, sizeof(errbuf));
}

#define JSON_BAD(s, what)						\
	do {								\
		struct moex_json j_;					\
		CHECK_INT(parse(s, &j_), -EINVAL);			\
		CHECK_HAS(errbuf, what);				\
		CHECK_INT(j_.type, MOEX_JSON_NULL);			\
		CHECK(!j_.items && !j_.str && !j_.keys);		\
	} while (0)

TEST(json_values)
{
	struct moex_json j;
	const struct moex_json *v;
	uint64_t u;
	double d;

	CHECK_INT(parse(" {\"a\" : [1, -2.5e+3, true, false, null, \"x\"],\n\t\"b\":{}}\r\n", &j), 0);
	CHECK_INT(j.type, MOEX_JSON_OBJECT);
	CHECK_INT(j.len, 2);
	v = moex__json_get(&j, "a");
	CHECK(v && v->type == MOEX_JSON_ARRAY && v->len == 6);
	CHECK_INT(v->items[0].type, MOEX_JSON_NUMBER);
	CHECK_STR(v->items[0].str, "1");
	CHECK_INT(moex__json_u64(&v->items[0], &u), 0);
	CHECK_U64(u, 1);
	CHECK_STR(v->items[1].str, "-2.5e+3");
	CHECK_INT(moex__json_u64(&v->items[1], &u), -EINVAL);
	CHECK_INT(moex__json_double(&v->items[1], &d), 0);
	CHECK(d == -2500.0);
	CHECK(v->items[2].type == MOEX_JSON_BOOL && v->items[2].boolean == 1);
	CHECK(v->items[3].type == MOEX_JSON_BOOL && v->items[3].boolean == 0);
	CHECK_INT(v->items[4].type, MOEX_JSON_NULL);
	CHECK(v->items[5].type == MOEX_JSON_STRING && v->items[5].len == 1);
	CHECK_INT(moex__json_double(&v->items[5], &d), -EINVAL);
	v = moex__json_get(&j, "b");
	CHECK(v && v->type == MOEX_JSON_OBJECT && v->len == 0);
	CHECK(!moex__json_get(&j, "c"));
	CHECK(!moex__json_get(&j.items[0], "a"));	/* not an object */
	moex__json_free(&j);
	moex__json_free(&j);	/* idempotent */

	CHECK_INT(parse("\"top\"", &j), 0);	/* any value at the top */
	CHECK_STR(j.str, "top");
	moex__json_free(&j);
	CHECK_INT(parse("0", &j), 0);
	moex__json_free(&j);
}

TEST(json_strings)
{
	struct moex_json j;

	CHECK_INT(parse("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", &j), 0);
	CHECK_STR(j.str, "\"\\/\b\f\n\r\t");
	CHECK_INT(j.len, 8);
	moex__json_free(&j);
	/* \u escapes: 1, 2, 3 bytes of UTF-8; a surrogate pair, 4. */
	CHECK_INT(parse("\"\\u0041\\u00e9\\u65E5\\ud83d\\ude00\"", &j), 0);
	CHECK_STR(j.str, "A\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80");
	CHECK_INT(j.len, 10);
	moex__json_free(&j);
	CHECK_INT(parse("\"\\uDBFF\\uDFFF\"", &j), 0);	/* U+10FFFF */
	CHECK_STR(j.str, "\xf4\x8f\xbf\xbf");
	moex__json_free(&j);
	/* \u escapes at the edges of 1, 2, 3 and 4 bytes of UTF-8 */
	CHECK_INT(parse("\"\\u007f\\u0080\\u07ff\\u0800\\uffff\\ud800\\udc00\"", &j), 0);
	CHECK_STR(j.str, "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80");
	CHECK_INT(j.len, 15);
	moex__json_free(&j);
	/* Raw UTF-8 at the edges of the valid ranges. */
	CHECK_INT(parse("\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"", &j), 0);
	moex__json_free(&j);

	JSON_BAD("\"\\ud800\"", "lone high surrogate");
	JSON_BAD("\"\\ud800\\u0041\"", "not followed by a low");
	JSON_BAD("\"\\ud800\\ue000\"", "not followed by a low");
	JSON_BAD("\"\\udc00\"", "lone low surrogate");
	JSON_BAD("\"\\u12\"", "truncated \\u escape");
	JSON_BAD("\"\\u12x4\"", "invalid hex digit");
	JSON_BAD("\"\\u12", "unterminated string");
	JSON_BAD("\"\\u0000\"", "u0000");
	JSON_BAD("\"\\a\"", "invalid escape");
	JSON_BAD("\"abc", "unterminated string");
	JSON_BAD("\"abc\\\"", "unterminated string");
	JSON_BAD("\"a\tb\"", "control character 0x09");
	JSON_BAD("\"a\x1f" "b\"", "control character 0x1f");
	JSON_BAD("\"\xc0\x80\"", "invalid UTF-8");	/* overlong NUL */
	JSON_BAD("\"\xe0\x9f\xbf\"", "invalid UTF-8");	/* overlong */
	JSON_BAD("\"\xf0\x8f\xbf\xbf\"", "invalid UTF-8");	/* overlong */
	JSON_BAD("\"\xed\xbf\xbf\"", "invalid UTF-8");	/* surrogate */
	JSON_BAD("\"\xf4\x90\x80\x80\"", "invalid UTF-8");	/* > U+10FFFF */
	JSON_BAD("\"\xf5\x80\x80\x80\"", "invalid UTF-8");
	JSON_BAD("\"\x80\"", "invalid UTF-8");
	JSON_BAD("\"\xe6\x97\"", "invalid UTF-8");
	JSON_BAD("'a'", "value expected");
}

TEST(json_embedded_nul)
{
	/* A NUL byte inside the buffer is a control character, not an end. */
	static const char s[] = "\"a\0b\"";
	struct moex_json j;

	CHECK_INT(moex__json_parse(s, sizeof(s) - 1, &j, errbuf, sizeof(errbuf)),
		  -EINVAL);
	CHECK_HAS(errbuf, "control character 0x00");
	/* Not NUL-terminated: parse exactly len bytes. */
	CHECK_INT(moex__json_parse("[1]]]]", 3, &j, errbuf, sizeof(errbuf)), 0);
	CHECK_INT(j.len, 1);
	moex__json_free(&j);
	/* a literal cut by len, its rest in the bytes after */
	CHECK_INT(moex__json_parse("true", 3, &j, errbuf, sizeof(errbuf)),
		  -EINVAL);
	CHECK_HAS(errbuf, "invalid literal");
	CHECK_INT(moex__json_parse("[null]", 4, &j, errbuf, sizeof(errbuf)),
		  -EINVAL);
	CHECK_INT(moex__json_parse("false", 4, &j, errbuf, sizeof(errbuf)),
		  -EINVAL);
	CHECK_INT(moex__json_parse("", 0, &j, errbuf, sizeof(errbuf)), -EINVAL);
	CHECK_HAS(errbuf, "end of input");
	CHECK_INT(moex__json_parse(NULL, 0, &j, NULL, 0), -EINVAL);
	CHECK_INT(moex__json_parse("1", 1, NULL, NULL, 0), -EINVAL);
	CHECK_INT(moex__json_parse("[", 1, &j, NULL, 0), -EINVAL);
}

TEST(json_numbers)
{
	static const char *const good[] = {
		"0", "-0", "1", "-1", "123", "1.5", "0.0", "1e5", "1E+5", "1e-5",
		"-0.25e-10", "18446744073709551616", "1e999",
	};
	static const char *const bad[] = {
		"01", "+1", ".5", "1.", "1e", "1e+", "-", "--1", "0x10", "Infinity",
		"NaN", "-Infinity", "1.e5", "- 1",
	};
	struct moex_json j;
	uint64_t u;
	double d;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK_MSG(parse(good[i], &j) == 0, "%s: %s", good[i], errbuf);
		CHECK_STR(j.str, good[i]);
		moex__json_free(&j);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_MSG(parse(bad[i], &j) == -EINVAL, "%s parsed", bad[i]);
		CHECK_HAS(errbuf, "at byte");
	}
	CHECK_INT(parse("[18446744073709551615, 18446744073709551616, -0, 1e2, 1e999, 2.5, -3]", &j), 0);
	CHECK_INT(moex__json_u64(&j.items[0], &u), 0);
	CHECK_U64(u, UINT64_MAX);	/* exact, no double rounding */
	CHECK_INT(moex__json_u64(&j.items[1], &u), -EINVAL);
	CHECK_INT(moex__json_u64(&j.items[2], &u), -EINVAL);
	CHECK_INT(moex__json_u64(&j.items[3], &u), -EINVAL);
	CHECK_INT(moex__json_double(&j.items[3], &d), 0);
	CHECK(d == 100.0);
	CHECK_INT(moex__json_double(&j.items[4], &d), -EINVAL);	/* inf */
	CHECK_INT(moex__json_double(&j.items[5], &d), 0);
	CHECK(d == 2.5);
	CHECK_INT(moex__json_double(&j.items[6], &d), 0);
	CHECK(d == -3.0);
	CHECK_INT(moex__json_u64(NULL, &u), -EINVAL);
	CHECK_INT(moex__json_double(&j, &d), -EINVAL);
	moex__json_free(&j);
}

static char *nested(int depth)
{
	char *s = malloc((size_t)depth * 2 + 1);
	int i;

	if (!s)
		return NULL;
	for (i = 0; i < depth; i++) {
		s[i] = '[';
		s[2 * depth - 1 - i] = ']';
	}
	s[2 * depth] = '\0';
	return s;
}

TEST(json_nesting)
{
	struct moex_json j;
	char *s;
	int ret;

	s = nested(64);
	CHECK(s);
	ret = parse(s, &j);
	free(s);
	CHECK_MSG(ret == 0, "64 deep: %s", errbuf);
	moex__json_free(&j);
	s = nested(65);
	CHECK(s);
	ret = parse(s, &j);
	free(s);
	CHECK_INT(ret, -EINVAL);
	CHECK_HAS(errbuf, "nesting deeper than 64");
	s = nested(100000);	/* no stack overflow */
	CHECK(s);
	ret = parse(s, &j);
	free(s);
	CHECK_INT(ret, -EINVAL);
	CHECK_INT(parse("{\"a\":{\"b\":{\"c\":[{}]}}}", &j), 0);
	moex__json_free(&j);
}

TEST(json_structure)
{
	struct moex_json j;

	JSON_BAD("{\"a\":1,\"a\":2}", "duplicate key \"a\"");
	JSON_BAD("{\"a\":1,\"b\":{\"x\":1,\"x\":1}}", "duplicate key \"x\"");
	JSON_BAD("{\"\\u0061\":1,\"a\":2}", "duplicate key \"a\"");
	JSON_BAD("{\"a\":1,}", "string key expected");
	JSON_BAD("{\"a\" 1}", "':' expected");
	JSON_BAD("{1:1}", "string key expected");
	JSON_BAD("[1,]", "value expected");
	JSON_BAD("[1 2]", "',' or ']' expected");
	JSON_BAD("[1", "',' or ']' expected in array: end of input");
	JSON_BAD("{\"a\":1", "end of input");
	JSON_BAD("{} {}", "trailing bytes");
	JSON_BAD("{}\x0c", "trailing bytes");	/* form feed is no JSON space */
	JSON_BAD("\xef\xbb\xbf{}", "byte order mark");
	JSON_BAD("tru", "invalid literal");
	JSON_BAD("nulll", "trailing bytes");
	JSON_BAD("True", "value expected");
	JSON_BAD("{\"a\":1}/*c*/", "trailing bytes");
	CHECK_INT(parse("{\"a\":1,\"A\":2}", &j), 0);	/* case matters */
	moex__json_free(&j);
}

/* Duplicates among many keys (the sorted path) and a big object's speed. */
TEST(json_many_keys)
{
	const size_t n = 50000;
	size_t i, o = 0, cap = n * 32 + 16;
	struct moex_json j;
	char *s = malloc(cap);
	int ret;

	CHECK(s);
	o += (size_t)snprintf(s + o, cap - o, "{");
	for (i = 0; i < n; i++)
		o += (size_t)snprintf(s + o, cap - o, "%s\"k%zu\":%zu",
				      i ? "," : "", (i * 7919) % n, i);
	snprintf(s + o, cap - o, "}");
	ret = parse(s, &j);
	CHECK_MSG(ret == 0, "%s", errbuf);
	CHECK_INT(j.len, n);
	CHECK(moex__json_get(&j, "k49999"));
	moex__json_free(&j);
	/* Now make the last key repeat the first. */
	o = (size_t)(strrchr(s, ',') - s);
	snprintf(s + o, cap - o, ",\"k0\":1}");
	ret = parse(s, &j);
	free(s);
	CHECK_INT(ret, -EINVAL);
	CHECK_HAS(errbuf, "duplicate key \"k0\"");
}

/* ---- safetensors files ----------------------------------------------------- */

static int memfd_with(const void *buf, size_t len)
{
	int fd = memfd_create("st", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (len && write(fd, buf, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return fd;
}

static size_t le64_hdr(unsigned char *out, const char *json)
{
	uint64_t n = strlen(json);
	int i;

	for (i = 0; i < 8; i++)
		out[i] = (unsigned char)(n >> (8 * i));
	memcpy(out + 8, json, n);
	return 8 + n;
}

TEST(st_offsets_absolute)
{
	unsigned char buf[512];
	struct moex_st_tensor *t = NULL;
	uint32_t n = 0;
	size_t len;
	int fd, ret;

	len = le64_hdr(buf, "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[4,16]},"
			    "\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]},"
			    "\"c\":{\"dtype\":\"F16\",\"shape\":[1,1,1,2],\"data_offsets\":[16,20]},"
			    "\"d\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[24,32]}}");
	memset(buf + len, 0, 32);
	fd = memfd_with(buf, len + 32);
	CHECK(fd >= 0);
	ret = moex__st_read_header(fd, len + 32, "mem", 7, &t, &n, errbuf,
				   sizeof(errbuf));
	close(fd);
	CHECK_MSG(ret == 0, "%s", errbuf);
	CHECK_INT(n, 4);
	/* In header order. */
	CHECK_STR(t[0].name, "b");
	CHECK_INT(t[0].dtype, MOEX_ST_BF16);
	CHECK_INT(t[0].ndim, 2);
	CHECK_U64(t[0].shape[0], 2);
	CHECK_U64(t[0].shape[1], 3);
	CHECK_U64(t[0].offset, len + 4);
	CHECK_U64(t[0].nbytes, 12);
	CHECK_INT(t[0].file, 7);
	CHECK_INT(t[1].dtype, MOEX_ST_F8_E4M3);
	CHECK_U64(t[1].offset, len);
	CHECK_INT(t[2].dtype, MOEX_ST_F16);
	CHECK_INT(t[2].ndim, 4);
	CHECK_INT(t[3].dtype, MOEX_ST_OTHER);
	CHECK_INT(t[3].ndim, 0);
	CHECK_U64(t[3].nbytes, 8);
	free_tensors(t, n);
}

TEST(st_append_and_unwind)
{
	unsigned char buf[256];
	struct moex_st_tensor *t = NULL;
	uint32_t n = 0;
	size_t len;
	int fd;

	len = le64_hdr(buf, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
	memset(buf + len, 0, 4);
	fd = memfd_with(buf, len + 4);
	CHECK(fd >= 0);
	CHECK_INT(moex__st_read_header(fd, len + 4, "one", 0, &t, &n, errbuf,
				       sizeof(errbuf)), 0);
	CHECK_INT(moex__st_read_header(fd, len + 4, "two", 1, &t, &n, errbuf,
				       sizeof(errbuf)), 0);
	close(fd);
	CHECK_INT(n, 2);
	CHECK_INT(t[0].file, 0);
	CHECK_INT(t[1].file, 1);
	/* A bad file appends nothing and leaves the others alone. */
	len = le64_hdr(buf, "{\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
			    "\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}");
	memset(buf + len, 0, 4);
	fd = memfd_with(buf, len + 4);
	CHECK(fd >= 0);
	CHECK_INT(moex__st_read_header(fd, len + 4, "three", 2, &t, &n, errbuf,
				       sizeof(errbuf)), -EINVAL);
	close(fd);
	CHECK_HAS(errbuf, "three: tensor z");
	CHECK_INT(n, 2);
	CHECK_STR(t[1].name, "x");
	free_tensors(t, n);
}

TEST(st_short_read_and_cap)
{
	unsigned char buf[128];
	struct moex_st_tensor *t = NULL;
	uint32_t n = 0;
	size_t len;
	int fd, i;
	uint64_t big = 150ull << 20;

	/* The caller's size says more than the file has: a short read. */
	len = le64_hdr(buf, "{}");
	fd = memfd_with(buf, 4);
	CHECK(fd >= 0);
	CHECK_INT(moex__st_read_header(fd, len, "m", 0, &t, &n, errbuf,
				       sizeof(errbuf)), -EIO);
	CHECK_HAS(errbuf, "m: reading the header length: short read");
	close(fd);
	fd = memfd_with(buf, len - 1);
	CHECK(fd >= 0);
	CHECK_INT(moex__st_read_header(fd, len, "m", 0, &t, &n, errbuf,
				       sizeof(errbuf)), -EIO);
	CHECK_HAS(errbuf, "short read");
	close(fd);
	/* Bad descriptor: the errno of pread. */
	CHECK_INT(moex__st_read_header(-1, len, "m", 0, &t, &n, errbuf,
				       sizeof(errbuf)), -EBADF);

	/* A header of 150 MiB in a (sparse) file of 200 MiB: above the cap. */
	fd = memfd_create("big", MFD_CLOEXEC);
	CHECK(fd >= 0);
	for (i = 0; i < 8; i++)
		buf[i] = (unsigned char)(big >> (8 * i));
	CHECK(write(fd, buf, 8) == 8);
	CHECK(ftruncate(fd, 200 << 20) == 0);
	CHECK_INT(moex__st_read_header(fd, 200 << 20, "big", 0, &t, &n, errbuf,
				       sizeof(errbuf)), -EINVAL);
	close(fd);
	CHECK_HAS(errbuf, "above the limit");
	CHECK_INT(n, 0);
	CHECK(!t);
	CHECK_INT(moex__st_read_header(0, 0, "x", 0, NULL, &n, errbuf,
				       sizeof(errbuf)), -EINVAL);
}

/* One header (and data bytes of zeros) read from a memfd: its return. */
static int st_one(const char *json, size_t data, uint64_t size_delta,
		  struct moex_st_tensor **t, uint32_t *n)
{
	static unsigned char buf[1024];
	size_t len = le64_hdr(buf, json);
	int fd, ret;

	memset(buf + len, 0, data);
	fd = memfd_with(buf, len + data);
	if (fd < 0)
		return -EBADF;
	ret = moex__st_read_header(fd, len + data + size_delta, "edge", 3, t,
				   n, errbuf, sizeof(errbuf));
	close(fd);
	return ret;
}

TEST(st_edges)
{
	struct moex_st_tensor *t = NULL;
	unsigned char buf[64];
	uint32_t n = 0;
	int fd;

	/* A header length one byte past the file's end is the length's
	 * error, not a short read of the header. */
	le64_hdr(buf, "{}");
	buf[0] = 3;	/* 3 bytes of header in a file of 8 + 2 */
	fd = memfd_with(buf, 10);
	CHECK(fd >= 0);
	CHECK_INT(moex__st_read_header(fd, 10, "m", 0, &t, &n, errbuf,
				       sizeof(errbuf)), -EINVAL);
	close(fd);
	CHECK_HAS(errbuf, "header length 3 beyond the file (10 bytes)");

	/* An empty tensor inside another's bytes shares none of them. */
	CHECK_MSG(st_one("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
			 "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
			 8, 0, &t, &n) == 0, "%s", errbuf);
	CHECK_INT(n, 2);
	CHECK_U64(t[1].nbytes, 0);
	free_tensors(t, n);
	t = NULL;
	n = 0;

	/* 2^62 F32 elements are 2^64 bytes: 0 in 64 bits, not [0, 0]. */
	CHECK_INT(st_one("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
			 0, 0, &t, &n), -EINVAL);
	CHECK_HAS(errbuf, "edge: tensor a: byte size overflows 64 bits");
	CHECK_INT(n, 0);

	/* The count of tensors is a uint32_t: appending past it fails
	 * before anything is allocated. */
	n = UINT32_MAX - 1;
	CHECK_INT(st_one("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
			 "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
			 2, 0, &t, &n), -EINVAL);
	CHECK_HAS(errbuf, "edge: too many tensors");
	CHECK_INT(n, UINT32_MAX - 1);
	CHECK(!t);
}

/* ---- a tiny writer and whole models -------------------------------------------------- */

struct wt {
	char name[128];
	uint32_t dtype;		/* enum moex_st_dtype */
	uint32_t ndim;
	uint64_t shape[2];
	uint32_t shard;
	uint64_t nbytes;
	uint8_t seed;
};

struct wmodel {
	struct wt *t;
	size_t n, cap;
};

static const char *wt_dtype(uint32_t d)
{
	switch (d) {
	case MOEX_ST_F32: return "F32";
	case MOEX_ST_BF16: return "BF16";
	case MOEX_ST_F8_E4M3: return "F8_E4M3";
	case MOEX_ST_F16: return "F16";
	default: return "I32";
	}
}

static uint64_t wt_esize(uint32_t d)
{
	return d == MOEX_ST_F8_E4M3 ? 1 : d == MOEX_ST_BF16 || d == MOEX_ST_F16 ? 2 : 4;
}

static struct wt *wadd(struct wmodel *w, uint32_t shard, uint32_t dtype,
		       uint32_t ndim, uint64_t d0, uint64_t d1,
		       const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static struct wt *wadd(struct wmodel *w, uint32_t shard, uint32_t dtype,
		       uint32_t ndim, uint64_t d0, uint64_t d1,
		       const char *fmt, ...)
{
	struct wt *t;
	va_list ap;

	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct wt *nt = realloc(w->t, cap * sizeof(*nt));

		if (!nt)
			abort();
		w->t = nt;
		w->cap = cap;
	}
	t = &w->t[w->n++];
	memset(t, 0, sizeof(*t));
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->dtype = dtype;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->shard = shard;
	t->nbytes = wt_esize(dtype) * d0 * (ndim > 1 ? d1 : 1);
	t->seed = (uint8_t)(w->n * 37 + 11);
	return t;
}

static uint8_t wbyte(const struct wt *t, uint64_t i)
{
	return (uint8_t)(t->seed + i * 13 + (i >> 8));
}

static char *shard_name(uint32_t s, uint32_t nshards, char *buf, size_t len)
{
	if (nshards == 0)
		snprintf(buf, len, "model.safetensors");
	else
		snprintf(buf, len, "model-%05u-of-%05u.safetensors", s + 1,
			 nshards);
	return buf;
}

/* Write shard s: the tensors of w with t->shard == s, in reverse order. */
static int wshard(const char *dir, const struct wmodel *w, uint32_t s,
		  uint32_t nshards)
{
	size_t hcap = 256 + w->n * 256, hl = 0, i, pad;
	char *hdr = malloc(hcap), fname[64], path[PATH_MAX];
	uint64_t off = 0;
	unsigned char len8[8];
	FILE *f;
	int k;

	if (!hdr)
		return -1;
	hl += (size_t)snprintf(hdr + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (i = w->n; i-- > 0;) {
		const struct wt *t = &w->t[i];

		if (t->shard != s)
			continue;
		hl += (size_t)snprintf(hdr + hl, hcap - hl,
				       ",\n\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu",
				       t->name, wt_dtype(t->dtype),
				       (unsigned long long)t->shape[0]);
		if (t->ndim > 1)
			hl += (size_t)snprintf(hdr + hl, hcap - hl, ",%llu",
					       (unsigned long long)t->shape[1]);
		hl += (size_t)snprintf(hdr + hl, hcap - hl,
				       "],\"data_offsets\":[%llu,%llu]}",
				       (unsigned long long)off,
				       (unsigned long long)(off + t->nbytes));
		off += t->nbytes;
	}
	hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
	/* Pad with spaces to 8 bytes as the safetensors writer does. */
	for (pad = (8 - hl % 8) % 8; pad; pad--)
		hdr[hl++] = ' ';
	for (k = 0; k < 8; k++)
		len8[k] = (unsigned char)((uint64_t)hl >> (8 * k));
	snprintf(path, sizeof(path), "%s/%s", dir,
		 shard_name(s, nshards, fname, sizeof(fname)));
	f = fopen(path, "wb");
	if (!f) {
		free(hdr);
		return -1;
	}
	fwrite(len8, 1, 8, f);
	fwrite(hdr, 1, hl, f);
	free(hdr);
	for (i = w->n; i-- > 0;) {
		const struct wt *t = &w->t[i];
		uint64_t b;

		if (t->shard != s)
			continue;
		for (b = 0; b < t->nbytes; b++)
			fputc(wbyte(t, b), f);
	}
	return fclose(f) ? -1 : 0;
}

struct mcfg {
	uint32_t dim, inter, experts, topk, shared, layers, dense;
	int fp8, v3, f32gate;
	uint32_t nshards;	/* 0: one model.safetensors, no index */
};

/* The tensors of a model: embeddings and dense MLPs too, as real ones. */
static void wmodel_build(struct wmodel *w, const struct mcfg *c)
{
	uint32_t wd = c->fp8 ? MOEX_ST_F8_E4M3 : MOEX_ST_BF16;
	uint32_t l, e, k, ns = c->nshards ? c->nshards : 1;
	static const char *const proj[3] = { "gate_proj", "up_proj", "down_proj" };

	wadd(w, 0, MOEX_ST_BF16, 2, 16, c->dim, "model.embed_tokens.weight");
	for (l = 0; l < c->layers; l++) {
		uint32_t s = l % ns;

		wadd(w, s, MOEX_ST_BF16, 1, c->dim, 0,
		     "model.layers.%u.input_layernorm.weight", l);
		if (l < c->dense) {
			for (k = 0; k < 3; k++)
				wadd(w, s, MOEX_ST_BF16, 2, k == 2 ? c->dim : 8,
				     k == 2 ? 8 : c->dim,
				     "model.layers.%u.mlp.%s.weight", l, proj[k]);
			continue;
		}
		wadd(w, s, c->f32gate ? MOEX_ST_F32 : MOEX_ST_BF16, 2,
		     c->experts, c->dim, "model.layers.%u.mlp.gate.weight", l);
		if (c->v3)
			wadd(w, s, MOEX_ST_F32, 1, c->experts, 0,
			     "model.layers.%u.mlp.gate.e_score_correction_bias", l);
		for (e = 0; e <= c->experts; e++) {
			uint32_t inter = e == c->experts ? c->shared * c->inter : c->inter;
			char pre[96];

			if (e == c->experts && !c->shared)
				break;
			if (e == c->experts)
				snprintf(pre, sizeof(pre), "model.layers.%u.mlp.shared_experts", l);
			else
				snprintf(pre, sizeof(pre), "model.layers.%u.mlp.experts.%u", l, e);
			/* Spread a layer's experts over the shards too. */
			s = (l + e) % ns;
			for (k = 0; k < 3; k++) {
				uint64_t out = k == 2 ? c->dim : inter;
				uint64_t in = k == 2 ? inter : c->dim;

				wadd(w, s, wd, 2, out, in, "%s.%s.weight", pre,
				     proj[k]);
				if (c->fp8)
					wadd(w, s, MOEX_ST_F32, 2, (out + 127) / 128,
					     (in + 127) / 128,
					     "%s.%s.weight_scale_inv", pre, proj[k]);
			}
		}
	}
}

static int write_text(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f) ? -1 : 0;
}

static int wmodel_write(const char *dir, const struct wmodel *w,
			const struct mcfg *c)
{
	char cfg[2048], fname[64];
	uint32_t s;
	size_t i;
	FILE *f;
	char path[PATH_MAX];

	snprintf(cfg, sizeof(cfg),
		 "{\n  \"architectures\": [\"DeepseekV3ForCausalLM\"],\n"
		 "  \"hidden_size\": %u,\n  \"moe_intermediate_size\": %u,\n"
		 "  \"n_routed_experts\": %u,\n  \"num_experts_per_tok\": %u,\n"
		 "  \"n_shared_experts\": %u,\n  \"num_hidden_layers\": %u,\n"
		 "  \"first_k_dense_replace\": %u,\n  \"rope_scaling\": {\"factor\": 40, \"type\": \"yarn\"},\n%s%s"
		 "  \"torch_dtype\": \"bfloat16\"\n}\n",
		 c->dim, c->inter, c->experts, c->topk, c->shared, c->layers,
		 c->dense,
		 c->v3 ? "  \"n_group\": 4,\n  \"topk_group\": 2,\n  \"routed_scaling_factor\": 2.5,\n"
			 "  \"scoring_func\": \"sigmoid\",\n  \"topk_method\": \"noaux_tc\",\n"
			 "  \"norm_topk_prob\": true,\n" :
			 "  \"n_group\": 1,\n  \"topk_group\": 1,\n  \"routed_scaling_factor\": 1.0,\n"
			 "  \"topk_method\": \"greedy\",\n  \"norm_topk_prob\": false,\n",
		 c->fp8 ? "  \"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\", "
			  "\"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]},\n" : "");
	if (write_text(dir, "config.json", cfg))
		return -1;
	for (s = 0; s < (c->nshards ? c->nshards : 1); s++)
		if (wshard(dir, w, s, c->nshards))
			return -1;
	if (!c->nshards)
		return 0;
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "{\"metadata\": {\"total_size\": 0},\n \"weight_map\": {");
	for (i = 0; i < w->n; i++)
		fprintf(f, "%s\n  \"%s\": \"%s\"", i ? "," : "", w->t[i].name,
			shard_name(w->t[i].shard, c->nshards, fname,
				   sizeof(fname)));
	fprintf(f, "\n }\n}\n");
	return fclose(f) ? -1 : 0;
}

static void rm_rf(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
}

/* A tensor as read: the right file, offset, size and bytes. */
static int tensor_matches(const struct moex_model_files *m,
			  const struct wt *want, const struct moex_st_tensor *t,
			  uint32_t nshards)
{
	char fname[64];
	unsigned char *buf;
	const char *base;
	uint64_t i;
	int fd, ok = 1;

	if (!t || strcmp(t->name, want->name) || t->dtype != want->dtype ||
	    t->ndim != want->ndim || t->shape[0] != want->shape[0] ||
	    (want->ndim > 1 && t->shape[1] != want->shape[1]) ||
	    t->nbytes != want->nbytes || t->file >= m->nfiles)
		return 0;
	base = strrchr(m->paths[t->file], '/');
	if (!base || strcmp(base + 1, shard_name(want->shard, nshards, fname,
						 sizeof(fname))))
		return 0;
	if (t->offset + t->nbytes > m->sizes[t->file])
		return 0;
	buf = malloc(t->nbytes + 1);
	fd = open(m->paths[t->file], O_RDONLY | O_CLOEXEC);
	if (!buf || fd < 0 ||
	    pread(fd, buf, t->nbytes, (off_t)t->offset) != (ssize_t)t->nbytes)
		ok = 0;
	for (i = 0; ok && i < t->nbytes; i++)
		if (buf[i] != wbyte(want, i))
			ok = 0;
	if (fd >= 0)
		close(fd);
	free(buf);
	return ok;
}

static void model_round_trip(const struct mcfg *c)
{
	char dir[] = "/tmp/moex-model-XXXXXX";
	struct moex_model_files *m = NULL;
	struct moex_layer_tensors lt;
	struct wmodel w = { 0 };
	uint32_t l, e, k;
	size_t i;
	int ret;

	CHECK(mkdtemp(dir));
	wmodel_build(&w, c);
	ret = wmodel_write(dir, &w, c);
	if (!ret)
		ret = moex__model_read(dir, &m, errbuf, sizeof(errbuf));
	if (ret) {
		free(w.t);
		rm_rf(dir);
		CHECK_MSG(0, "writing or reading %s: %d %s", dir, ret, errbuf);
	}
	CHECK_STR(m->dir, dir);
	CHECK_INT(m->nfiles, c->nshards ? c->nshards : 1);
	CHECK_INT(m->ntensors, w.n);
	CHECK_INT(m->cfg.hidden_size, c->dim);
	CHECK_INT(m->cfg.fp8, c->fp8);
	CHECK_INT(m->cfg.noaux_tc, c->v3);
	for (i = 1; i < m->ntensors; i++)
		CHECK(strcmp(m->tensors[i - 1].name, m->tensors[i].name) < 0);
	for (i = 0; i < w.n; i++)
		CHECK_MSG(tensor_matches(m, &w.t[i], moex__model_find(m, w.t[i].name),
					 c->nshards),
			  "tensor %s", w.t[i].name);
	CHECK(!moex__model_find(m, "model.layers.0.mlp.gate.weightx"));
	CHECK(!moex__model_find(m, ""));

	for (l = c->dense; l < c->layers; l++) {
		ret = moex__model_layer(m, l, &lt, errbuf, sizeof(errbuf));
		CHECK_MSG(ret == 0, "layer %u: %s", l, errbuf);
		CHECK_INT(lt.desc.size, sizeof(lt.desc));
		CHECK_INT(lt.desc.dim, c->dim);
		CHECK_INT(lt.desc.inter, c->inter);
		CHECK_INT(lt.desc.n_experts, c->experts);
		CHECK_INT(lt.desc.topk, c->topk);
		CHECK_INT(lt.desc.n_shared, c->shared);
		CHECK_INT(lt.desc.n_groups, c->v3 ? 4 : 1);
		CHECK_INT(lt.desc.topk_groups, c->v3 ? 2 : 1);
		CHECK_INT(lt.desc.scoring, c->v3 ? MOEX_SCORING_SIGMOID :
			  MOEX_SCORING_SOFTMAX);
		CHECK_INT(lt.desc.norm_topk, c->v3);
		CHECK(fabsf(lt.desc.route_scale - (c->v3 ? 2.5f : 1.0f)) < 1e-6f);
		CHECK_INT(lt.desc.weight_dtype, c->fp8 ? MOEX_DTYPE_FP8_E4M3 :
			  MOEX_DTYPE_BF16);
		CHECK_INT(lt.desc.gate_dtype, c->f32gate ? MOEX_DTYPE_F32 :
			  MOEX_DTYPE_BF16);
		CHECK(lt.gate && lt.gate->shape[0] == c->experts);
		CHECK(c->v3 ? lt.bias != NULL : lt.bias == NULL);
		CHECK(lt.experts);
		for (e = 0; e < c->experts; e++) {
			char name[128];

			/* w1 gate_proj, w2 down_proj, w3 up_proj, then scales. */
			snprintf(name, sizeof(name),
				 "model.layers.%u.mlp.experts.%u.down_proj.weight", l, e);
			CHECK(lt.experts[e][1] && !strcmp(lt.experts[e][1]->name, name));
			CHECK_U64(lt.experts[e][1]->shape[0], c->dim);
			snprintf(name, sizeof(name),
				 "model.layers.%u.mlp.experts.%u.gate_proj.weight", l, e);
			CHECK(!strcmp(lt.experts[e][0]->name, name));
			CHECK(strstr(lt.experts[e][2]->name, "up_proj.weight"));
			for (k = 3; k < 6; k++) {
				CHECK(c->fp8 ? lt.experts[e][k] != NULL :
				      lt.experts[e][k] == NULL);
				if (c->fp8)
					CHECK(lt.experts[e][k]->dtype == MOEX_ST_F32);
			}
		}
		if (c->fp8)
			CHECK(strstr(lt.experts[0][4]->name, "down_proj.weight_scale_inv"));
		for (k = 0; k < 6; k++)
			CHECK((c->shared && (k < 3 || c->fp8)) ?
			      lt.shared[k] != NULL : lt.shared[k] == NULL);
		if (c->shared)
			CHECK_U64(lt.shared[0]->shape[0], c->shared * c->inter);
		free(lt.experts);
	}
	if (c->dense) {
		CHECK_INT(moex__model_layer(m, 0, &lt, errbuf, sizeof(errbuf)), -EINVAL);
		CHECK_HAS(errbuf, "not a MoE layer");
		CHECK(!lt.experts);
	}
	CHECK_INT(moex__model_layer(m, c->layers, &lt, errbuf, sizeof(errbuf)), -EINVAL);
	moex__model_free(m);
	free(w.t);
	rm_rf(dir);
}

TEST(model_bf16_sharded)
{
	struct mcfg c = { .dim = 64, .inter = 32, .experts = 8, .topk = 2,
			  .shared = 2, .layers = 4, .dense = 1, .nshards = 3 };

	model_round_trip(&c);
}

TEST(model_bf16_single_f32_gate)
{
	struct mcfg c = { .dim = 16, .inter = 8, .experts = 4, .topk = 4,
			  .shared = 0, .layers = 2, .dense = 0, .f32gate = 1 };

	model_round_trip(&c);
}

TEST(model_fp8_v3_sharded)
{
	/* 200 and 136: the scales' last block is partial. */
	struct mcfg c = { .dim = 200, .inter = 136, .experts = 8, .topk = 4,
			  .shared = 1, .layers = 3, .dense = 1, .fp8 = 1,
			  .v3 = 1, .nshards = 2 };

	model_round_trip(&c);
}

/* 256 and 128: whole blocks of 128, the scales [2, 1] and [1, 2]. */
TEST(model_fp8_whole_blocks)
{
	struct mcfg c = { .dim = 256, .inter = 128, .experts = 4, .topk = 2,
			  .shared = 1, .layers = 2, .dense = 1, .fp8 = 1,
			  .v3 = 1, .nshards = 1 };

	model_round_trip(&c);
}

/* A model whose one tensor is changed: the error names it. */
static void model_broken(int (*edit)(struct wmodel *w), int want_ret,
			 const char *want_msg)
{
	struct mcfg c = { .dim = 32, .inter = 16, .experts = 4, .topk = 2,
			  .shared = 1, .layers = 2, .dense = 1, .fp8 = 1,
			  .v3 = 1, .nshards = 2 };
	char dir[] = "/tmp/moex-model-XXXXXX";
	struct moex_model_files *m = NULL;
	struct moex_layer_tensors lt;
	struct wmodel w = { 0 };
	int ret;

	CHECK(mkdtemp(dir));
	wmodel_build(&w, &c);
	ret = edit(&w);
	if (!ret)
		ret = wmodel_write(dir, &w, &c);
	if (!ret)
		ret = moex__model_read(dir, &m, errbuf, sizeof(errbuf));
	free(w.t);
	if (ret) {
		rm_rf(dir);
		CHECK_MSG(0, "writing or reading %s: %d %s", dir, ret, errbuf);
	}
	ret = moex__model_layer(m, 1, &lt, errbuf, sizeof(errbuf));
	moex__model_free(m);
	rm_rf(dir);
	CHECK_INT(ret, want_ret);
	CHECK_HAS(errbuf, want_msg);
	CHECK(!lt.experts);
}

static struct wt *wfind(struct wmodel *w, const char *name)
{
	size_t i;

	for (i = 0; i < w->n; i++)
		if (!strcmp(w->t[i].name, name))
			return &w->t[i];
	abort();
}

static int edit_dtype(struct wmodel *w)
{
	struct wt *t = wfind(w, "model.layers.1.mlp.experts.3.up_proj.weight");

	t->dtype = MOEX_ST_BF16;
	t->nbytes *= 2;
	return 0;
}

static int edit_shape(struct wmodel *w)
{
	struct wt *t = wfind(w, "model.layers.1.mlp.shared_experts.gate_proj.weight");

	t->shape[0] = 17;
	t->nbytes = 17 * 32;
	return 0;
}

static int edit_scale_shape(struct wmodel *w)
{
	struct wt *t = wfind(w, "model.layers.1.mlp.experts.2.down_proj.weight_scale_inv");

	t->shape[1] = 2;
	t->nbytes = 8;
	return 0;
}

static int edit_scale_dtype(struct wmodel *w)
{
	struct wt *t = wfind(w, "model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv");

	t->dtype = MOEX_ST_BF16;
	t->nbytes = 2;
	return 0;
}

static int edit_bias_shape(struct wmodel *w)
{
	struct wt *t = wfind(w, "model.layers.1.mlp.gate.e_score_correction_bias");

	t->shape[0] = 5;
	t->nbytes = 20;
	return 0;
}

/* The bias as [4, 1]: its bytes and first dimension right, not its rank. */
static int edit_bias_rank(struct wmodel *w)
{
	struct wt *t = wfind(w, "model.layers.1.mlp.gate.e_score_correction_bias");

	t->ndim = 2;
	t->shape[1] = 1;
	return 0;
}

static int edit_rename(struct wmodel *w)
{
	struct wt *t = wfind(w, "model.layers.1.mlp.experts.2.gate_proj.weight");

	/* Renamed in file and index alike: the layer misses it. */
	snprintf(t->name, sizeof(t->name), "model.layers.1.mlp.experts.2.gate.weight");
	return 0;
}

TEST(layer_errors_name_the_tensor)
{
	model_broken(edit_dtype, -EINVAL,
		     "model.layers.1.mlp.experts.3.up_proj.weight: dtype BF16, expected F8_E4M3");
	model_broken(edit_shape, -EINVAL,
		     "model.layers.1.mlp.shared_experts.gate_proj.weight: shape [17, 32], config says [16, 32]");
	model_broken(edit_scale_shape, -EINVAL,
		     "model.layers.1.mlp.experts.2.down_proj.weight_scale_inv: shape [1, 2], config says [1, 1]");
	model_broken(edit_scale_dtype, -EINVAL,
		     "model.layers.1.mlp.experts.0.gate_proj.weight_scale_inv: dtype BF16, expected F32");
	model_broken(edit_bias_shape, -EINVAL,
		     "model.layers.1.mlp.gate.e_score_correction_bias: shape [5], config says [4]");
	model_broken(edit_bias_rank, -EINVAL,
		     "model.layers.1.mlp.gate.e_score_correction_bias: shape [4, 1], config says [4]");
	model_broken(edit_rename, -ENOENT,
		     "missing tensor model.layers.1.mlp.experts.2.gate_proj.weight");
}

/* A safetensors file NAME in dir holding the header json and no data. */
static int write_shard(const char *dir, const char *name, const char *json)
{
	unsigned char buf[512];
	char path[PATH_MAX];
	size_t len = le64_hdr(buf, json);
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	if (fwrite(buf, 1, len, f) != len) {
		fclose(f);
		return -1;
	}
	return fclose(f) ? -1 : 0;
}

#define CFG_BASE "{\"hidden_size\": 8, \"moe_intermediate_size\": 8, " \
		 "\"n_routed_experts\": 4, \"num_experts_per_tok\": 2, " \
		 "\"num_hidden_layers\": 2"

/*
 * dir/config.json is CFG_BASE with extra keys; moex__model_read() of dir
 * must return want, with msg in the error when it fails. On 0, the model
 * read (its config to look at), else NULL.
 */
static struct moex_model_files *cfg_case(const char *dir, const char *extra,
					 int want, const char *msg)
{
	struct moex_model_files *m = NULL;
	char text[1024];
	int ret;

	snprintf(text, sizeof(text), "%s%s}", CFG_BASE, extra);
	if (write_text(dir, "config.json", text)) {
		h_fail(__FILE__, __LINE__, "writing config.json");
		return NULL;
	}
	errbuf[0] = '\0';
	ret = moex__model_read(dir, &m, errbuf, sizeof(errbuf));
	if (ret != want) {
		h_fail(__FILE__, __LINE__, "config {%s}: %d, want %d (%s)",
		       extra, ret, want, errbuf);
	} else if (ret && !strstr(errbuf, msg)) {
		h_fail(__FILE__, __LINE__, "config {%s}: \"%s\" lacks \"%s\"",
		       extra, errbuf, msg);
	}
	if (ret || h_result == H_FAIL) {
		moex__model_free(m);
		return NULL;
	}
	return m;
}

#define CFG_BAD(extra, msg)						\
	do {								\
		cfg_case(dir, extra, -EINVAL, msg);			\
		if (h_result == H_FAIL)					\
			goto out;					\
	} while (0)

/*
 * config.json's defaults and limits (Documentation/model-format.rst),
 * on a model.safetensors without tensors.
 */
TEST(config_defaults_and_limits)
{
	char dir[] = "/tmp/moex-model-XXXXXX";
	struct moex_model_files *m;

	CHECK(mkdtemp(dir));
	CHECK_INT(write_shard(dir, "model.safetensors", "{}"), 0);

	m = cfg_case(dir, "", 0, NULL);
	if (!m)
		goto out;
	CHECK_MSG(m->cfg.routed_scaling_factor == 1.0f, "scale %g",
		  (double)m->cfg.routed_scaling_factor);
	CHECK_INT(m->cfg.n_group, 1);
	CHECK_INT(m->cfg.topk_group, 1);
	CHECK_INT(m->cfg.scoring, MOEX_SCORING_SOFTMAX);
	CHECK_INT(m->cfg.noaux_tc + m->cfg.norm_topk_prob + m->cfg.fp8, 0);
	CHECK_INT(m->cfg.n_shared_experts + m->cfg.first_k_dense_replace, 0);
	moex__model_free(m);

	/* topk_group defaults to n_group; null is absent */
	m = cfg_case(dir, ", \"n_group\": 2, \"topk_group\": null, "
		     "\"routed_scaling_factor\": 1e6", 0, NULL);
	if (!m)
		goto out;
	CHECK_INT(m->cfg.n_group, 2);
	CHECK_INT(m->cfg.topk_group, 2);
	CHECK_MSG(m->cfg.routed_scaling_factor == 1e6f, "scale %g",
		  (double)m->cfg.routed_scaling_factor);
	moex__model_free(m);

	/* the largest 32-bit value is one; every layer may be dense */
	CHECK_INT(write_text(dir, "config.json",
			     "{\"hidden_size\": 4294967295, \"moe_intermediate_size\": 1, "
			     "\"n_routed_experts\": 4, \"num_experts_per_tok\": 2, "
			     "\"n_shared_experts\": 4294967295, "
			     "\"num_hidden_layers\": 2, \"first_k_dense_replace\": 2}"),
		  0);
	CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)), 0);
	CHECK_U64(m->cfg.hidden_size, UINT32_MAX);
	CHECK_INT(m->cfg.first_k_dense_replace, 2);
	moex__model_free(m);
	/* and the next is not */
	CHECK_INT(write_text(dir, "config.json",
			     "{\"hidden_size\": 4294967296, \"moe_intermediate_size\": 8, "
			     "\"n_routed_experts\": 4, \"num_experts_per_tok\": 2, "
			     "\"num_hidden_layers\": 2}"), 0);
	CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)), -EINVAL);
	CHECK_HAS(errbuf, "\"hidden_size\" is 4294967296, expected an integer in [0, 2^32)");

	CFG_BAD(", \"first_k_dense_replace\": 3", "\"first_k_dense_replace\" 3 is above");
	CFG_BAD(", \"routed_scaling_factor\": 0", "\"routed_scaling_factor\" is a number 0");
	CFG_BAD(", \"routed_scaling_factor\": -1", "\"routed_scaling_factor\"");
	CFG_BAD(", \"routed_scaling_factor\": 1000001",
		"\"routed_scaling_factor\" is a number 1000001, expected a number from 1.18e-38 (FLT_MIN) to 1e6");
	/* 0 as a float: refused here, not later as a bad MoE shape */
	CFG_BAD(", \"routed_scaling_factor\": 1e-50",
		"\"routed_scaling_factor\" is a number 1e-50");
	CFG_BAD(", \"n_group\": 3", "\"n_group\" 3 does not divide n_routed_experts 4");
	CFG_BAD(", \"n_shared_experts\": 536870912", "overflows 32 bits");
	CFG_BAD(", \"moe_layer_freq\": 2", "\"moe_layer_freq\" is 2");
	CFG_BAD(", \"topk_method\": \"random\"", "\"topk_method\" is \"random\"");
	CFG_BAD(", \"quantization_config\": {\"quant_method\": \"fp8\", "
		"\"weight_block_size\": [128, 64]}", "[128, 64]: moex needs [128, 128]");
	CFG_BAD(", \"quantization_config\": {\"quant_method\": \"int4\", "
		"\"weight_block_size\": [128, 128]}", "moex reads \"fp8\" only");
	CFG_BAD(", \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e5m2\", "
		"\"weight_block_size\": [128, 128]}", "moex reads \"e4m3\" only");
	CFG_BAD(", \"quantization_config\": {\"quant_method\": \"fp8\", "
		"\"activation_scheme\": \"static\", \"weight_block_size\": [128, 128]}",
		"dynamically only");
	CFG_BAD(", \"quantization_config\": {\"quant_method\": \"fp8\"}",
		"missing key \"quantization_config.weight_block_size\"");
	/* a config.json of 100 MiB + 1 (sparse) is refused unread */
	{
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s/config.json", dir);
		CHECK(truncate(p, (100 << 20) + 1) == 0);
		CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)),
			  -EINVAL);
		CHECK_HAS(errbuf, "config.json: 104857601 bytes, above the limit of 104857600");
	}
out:
	rm_rf(dir);
}

/*
 * The index's shard names are plain file names ("..", a name longer than
 * NAME_MAX are not), and a tensor in two shards is an error wherever it
 * sorts (here first).
 */
TEST(index_names_and_duplicates)
{
	char dir[] = "/tmp/moex-model-XXXXXX";
	struct moex_model_files *m = NULL;
	char text[600], longname[300];

	CHECK(mkdtemp(dir));
	CHECK_INT(write_text(dir, "config.json", CFG_BASE "}"), 0);
	CHECK_INT(write_text(dir, "model.safetensors.index.json",
			     "{\"weight_map\": {\"a\": \"..\"}}"), 0);
	CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)), -EINVAL);
	CHECK_HAS(errbuf, "\"..\" is not a file name in the model directory");
	memset(longname, 'x', NAME_MAX + 1);
	longname[NAME_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "{\"weight_map\": {\"a\": \"%s\"}}",
		 longname);
	CHECK_INT(write_text(dir, "model.safetensors.index.json", text), 0);
	CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)), -EINVAL);
	CHECK_HAS(errbuf, "is not a file name in the model directory");

	CHECK_INT(write_shard(dir, "s1",
			      "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
			      "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"),
		  0);
	CHECK_INT(write_shard(dir, "s2",
			      "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}"),
		  0);
	CHECK_INT(write_text(dir, "model.safetensors.index.json",
			     "{\"weight_map\": {\"a\": \"s1\", \"z\": \"s2\"}}"), 0);
	CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)), -EINVAL);
	CHECK_HAS(errbuf, "duplicate tensor a in");
	CHECK(!m);
	rm_rf(dir);
}

TEST(model_read_errors)
{
	struct moex_model_files *m = (void *)1;
	char dir[] = "/tmp/moex-model-XXXXXX";

	CHECK_INT(moex__model_read("/nonexistent/moex", &m, errbuf, sizeof(errbuf)),
		  -ENOENT);
	CHECK(!m);
	CHECK_HAS(errbuf, "/nonexistent/moex/config.json: missing");
	CHECK_INT(moex__model_read(NULL, &m, errbuf, sizeof(errbuf)), -EINVAL);
	CHECK_INT(moex__model_read("/tmp", NULL, NULL, 0), -EINVAL);
	/* config.json a directory: not a regular file. */
	CHECK(mkdtemp(dir));
	{
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s/config.json", dir);
		CHECK(mkdir(p, 0700) == 0);
	}
	CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)), -EINVAL);
	CHECK_HAS(errbuf, "not a regular file");
	/* a FIFO: refused at once, not waited on for a writer */
	{
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s/config.json", dir);
		CHECK(rmdir(p) == 0 && mkfifo(p, 0600) == 0);
	}
	CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)), -EINVAL);
	CHECK_HAS(errbuf, "not a regular file");
	/* an index with an empty weight_map: no shard, no tensor (it sorted
	 * a NULL table: UBSan's nonnull-attribute in the san suite) */
	{
		char p[PATH_MAX];
		struct moex_layer_tensors lt;

		snprintf(p, sizeof(p), "%s/config.json", dir);
		CHECK(unlink(p) == 0);
		CHECK_INT(write_text(dir, "config.json",
				     "{\"hidden_size\": 8, \"moe_intermediate_size\": 8, "
				     "\"n_routed_experts\": 4, \"num_experts_per_tok\": 2, "
				     "\"num_hidden_layers\": 2}"), 0);
		CHECK_INT(write_text(dir, "model.safetensors.index.json",
				     "{\"weight_map\": {}}"), 0);
		CHECK_INT(moex__model_read(dir, &m, errbuf, sizeof(errbuf)), 0);
		CHECK(m && m->ntensors == 0 && m->nfiles == 0);
		CHECK_INT(moex__model_layer(m, 0, &lt, errbuf, sizeof(errbuf)),
			  -ENOENT);
		CHECK_HAS(errbuf, "missing tensor model.layers.0.mlp.gate.weight");
		moex__model_free(m);
	}
	rm_rf(dir);
	/* No error buffer: still the right errno. */
	CHECK_INT(moex__model_read("/nonexistent/moex", &m, NULL, 0), -ENOENT);
	moex__model_free(NULL);
	CHECK(!moex__model_find(NULL, "x"));
	CHECK_INT(moex__model_layer(NULL, 0, NULL, errbuf, sizeof(errbuf)), -EINVAL);
}

RUN_TESTS(T(corpus), T(corpus_complete), T(json_values), T(json_strings),
	  T(json_embedded_nul), T(json_numbers), T(json_nesting),
	  T(json_structure), T(json_many_keys), T(st_offsets_absolute),
	  T(st_append_and_unwind), T(st_short_read_and_cap), T(st_edges),
	  T(model_bf16_sharded), T(model_bf16_single_f32_gate),
	  T(model_fp8_v3_sharded), T(model_fp8_whole_blocks), T(layer_errors_name_the_tensor),
	  T(model_read_errors), T(config_defaults_and_limits),
	  T(index_names_and_duplicates))
