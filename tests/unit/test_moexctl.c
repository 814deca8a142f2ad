// SPDX-License-Identifier: GPL-2.0
/*
 * unit-moexctl: the moexctl binary as a subprocess: `stats` and
 * `stats --json` against a fake sysfs tree (MOEX_SYSFS_ROOT), usage errors
 * and the failure lines for a missing device.
 *
 * The binary is MOEXCTL (set at build time; the sanitizer suite runs a
 * sanitizer build of moexctl), or $MOEXCTL when set. `selftest` and `pin`
 * run on MOEXCTL_FAKE: moexctl linked with fakedrv.c, a user-space fake of
 * the driver that answers on /dev/null (its queues are synchronous: the
 * fake refuses io_uring).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "moex.h"
#include "harness.h"
#include "fakesys.h"
#include "runbin.h"

#if !defined(MOEXCTL) || !defined(MOEXCTL_FAKE)
#error "build with -DMOEXCTL='\"/path/to/moexctl\"' -DMOEXCTL_FAKE=..."
#endif

static char root[PATH_MAX];

static const uint64_t vals0[MOEX_STATS_COUNT] = {
	536870912, 3, 40, 2, 37, 12, 9223372036854775807ull, 1, 6, 2,
};

/* ---- running moexctl -------------------------------------------------------- */

static const char *moexctl_bin(void)
{
	return getenv("MOEXCTL") ? getenv("MOEXCTL") : MOEXCTL;
}

/* moexctl ARGS... */
#define RUN(r, ...) RUN_BIN(r, moexctl_bin(), NULL, __VA_ARGS__)

/* moexctl on the fake driver, with env ("NAME=value" or NULL). */
#define FAKE(r, env, ...) RUN_BIN(r, MOEXCTL_FAKE, env, __VA_ARGS__)

/* "fakedrv: copies N bytes N max N" from a fake run's stderr. */
static bool fake_counts(const struct run *r, uint64_t *copies,
			uint64_t *bytes, uint64_t *max)
{
	const char *p = strstr(r->err, "fakedrv: copies ");

	return p && sscanf(p, "fakedrv: copies %" SCNu64 " bytes %" SCNu64
			   " max %" SCNu64, copies, bytes, max) == 3;
}

/* ---- a small JSON checker --------------------------------------------------- */

struct json {
	const char *p;
	int depth;
};

static void js_ws(struct json *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

/* A string; its raw contents (escapes kept) go to out when non-NULL. */
static bool js_string(struct json *j, char *out, size_t len)
{
	const char *start;

	if (*j->p != '"')
		return false;
	start = ++j->p;
	while (*j->p != '"') {
		if ((unsigned char)*j->p < 0x20)
			return false;
		if (*j->p == '\\') {
			j->p++;
			if (*j->p == 'u') {
				int k;

				for (k = 1; k <= 4; k++)
					if (!isxdigit((unsigned char)j->p[k]))
						return false;
				j->p += 4;
			} else if (!strchr("\"\\/bfnrt", *j->p) || !*j->p) {
				return false;
			}
		}
		j->p++;
	}
	if (out) {
		size_t n = (size_t)(j->p - start);

		if (n >= len)
			return false;
		memcpy(out, start, n);
		out[n] = '\0';
	}
	j->p++;
	return true;
}

static bool js_digits(struct json *j)
{
	const char *s = j->p;

	while (isdigit((unsigned char)*j->p))
		j->p++;
	return j->p > s;
}

static bool js_number(struct json *j)
{
	if (*j->p == '-')
		j->p++;
	if (*j->p == '0')
		j->p++;
	else if (!js_digits(j))
		return false;
	if (*j->p == '.') {
		j->p++;
		if (!js_digits(j))
			return false;
	}
	if (*j->p == 'e' || *j->p == 'E') {
		j->p++;
		if (*j->p == '+' || *j->p == '-')
			j->p++;
		if (!js_digits(j))
			return false;
	}
	return true;
}

static bool js_value(struct json *j);

/* An object or array; members go to keys/vals when at the top level. */
static bool js_container(struct json *j, char close, char (*keys)[64],
			 char (*vals)[64], size_t *n, size_t max)
{
	if (++j->depth > 32)
		return false;
	j->p++;
	js_ws(j);
	if (*j->p == close) {
		j->p++;
		j->depth--;
		return true;
	}
	for (;;) {
		const char *v;

		js_ws(j);
		if (close == '}') {
			char key[64];

			if (!js_string(j, key, sizeof(key)))
				return false;
			js_ws(j);
			if (*j->p++ != ':')
				return false;
			js_ws(j);
			v = j->p;
			if (!js_value(j))
				return false;
			if (keys) {
				size_t vl = (size_t)(j->p - v);

				if (*n >= max || vl >= 64)
					return false;
				snprintf(keys[*n], 64, "%s", key);
				memcpy(vals[*n], v, vl);
				vals[*n][vl] = '\0';
				(*n)++;
			}
		} else if (!js_value(j)) {
			return false;
		}
		js_ws(j);
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p != close)
			return false;
		j->p++;
		j->depth--;
		return true;
	}
}

static bool js_value(struct json *j)
{
	js_ws(j);
	switch (*j->p) {
	case '{':
		return js_container(j, '}', NULL, NULL, NULL, 0);
	case '[':
		return js_container(j, ']', NULL, NULL, NULL, 0);
	case '"':
		return js_string(j, NULL, 0);
	case 't':
		return !strncmp(j->p, "true", 4) && (j->p += 4);
	case 'f':
		return !strncmp(j->p, "false", 5) && (j->p += 5);
	case 'n':
		return !strncmp(j->p, "null", 4) && (j->p += 4);
	default:
		return js_number(j);
	}
}

/* text must be one JSON object and nothing else; its members come out. */
static bool js_parse_object(const char *text, char (*keys)[64],
			    char (*vals)[64], size_t *n, size_t max)
{
	struct json j = { text, 0 };

	*n = 0;
	js_ws(&j);
	if (*j.p != '{' || !js_container(&j, '}', keys, vals, n, max))
		return false;
	js_ws(&j);
	return *j.p == '\0';
}

static const char *js_member(char (*keys)[64], char (*vals)[64], size_t n,
			     const char *key)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(keys[i], key))
			return vals[i];
	return NULL;
}

/* ---- tests ------------------------------------------------------------------ */

TEST(json_checker_sanity)
{
	char keys[8][64], vals[8][64];
	size_t n;

	CHECK(js_parse_object("{\"a\": 1, \"b\": [true, null, \"x\\n\"]}",
			      keys, vals, &n, 8));
	CHECK_INT(n, 2);
	CHECK(!js_parse_object("{\"a\": 1,}", keys, vals, &n, 8));
	CHECK(!js_parse_object("{\"a\": 01}", keys, vals, &n, 8));
	CHECK(!js_parse_object("{\"a\" 1}", keys, vals, &n, 8));
	CHECK(!js_parse_object("{\"a\": 1} x", keys, vals, &n, 8));
	CHECK(!js_parse_object("{a: 1}", keys, vals, &n, 8));
	CHECK(!js_parse_object("", keys, vals, &n, 8));
}

TEST(stats_json_is_valid_and_complete)
{
	char keys[32][64], vals[32][64], want[32];
	struct run r;
	size_t n, i, k;

	RUN(&r, "stats", "--json");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK_MSG(js_parse_object(r.out, keys, vals, &n, 32),
		  "not one JSON object: %s", r.out);
	CHECK_INT(n, MOEX_STATS_COUNT + 1);
	for (i = 0; i < n; i++)
		for (k = i + 1; k < n; k++)
			CHECK_MSG(strcmp(keys[i], keys[k]), "duplicate %s", keys[i]);
	CHECK_STR(js_member(keys, vals, n, "device"), "\"moex0\"");
	for (i = 0; moex_stats_names[i]; i++) {
		snprintf(want, sizeof(want), "%" PRIu64, vals0[i]);
		CHECK_STR(js_member(keys, vals, n, moex_stats_names[i]), want);
	}
	CHECK_STR(r.err, "");
}

TEST(stats_json_other_device)
{
	static const uint64_t v[MOEX_STATS_COUNT] = { 4096, 1, 1, 0, 0, 6, 24576,
						      0, 0, 1 };
	char keys[32][64], vals[32][64];
	struct run r;
	size_t n;

	CHECK_INT(fs_make_dev(root, "moex2", v), 0);
	RUN(&r, "--device", "/dev/moex2", "stats", "--json");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK(js_parse_object(r.out, keys, vals, &n, 32));
	CHECK_STR(js_member(keys, vals, n, "device"), "\"moex2\"");
	CHECK_STR(js_member(keys, vals, n, "copy_bytes"), "24576");
	CHECK_STR(js_member(keys, vals, n, "pinned_bytes"), "4096");
}

/* moexctl(1): options may come before or after the command. */
TEST(command_options_before_the_command)
{
	char keys[32][64], vals[32][64];
	struct run r;
	size_t n;

	RUN(&r, "--json", "stats");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK(js_parse_object(r.out, keys, vals, &n, 32));
	CHECK_STR(js_member(keys, vals, n, "device"), "\"moex0\"");
	/* one that does not go with the command later is still refused */
	RUN(&r, "--json", "info");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "option '--json' does not go with info");
	RUN(&r, "--json");
	CHECK_INT(r.status, 2);
}

TEST(stats_text_lists_every_counter)
{
	char line[128];
	struct run r;
	size_t i;

	RUN(&r, "stats", "--device", "/dev/moex0");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK_HAS(r.out, "moex0");
	for (i = 0; moex_stats_names[i]; i++) {
		snprintf(line, sizeof(line), "%-16s %" PRIu64 "\n",
			 moex_stats_names[i], vals0[i]);
		CHECK_HAS(r.out, line);
	}
}

TEST(stats_missing_device_fails_with_hint)
{
	struct run r;

	RUN(&r, "--device", "/dev/moex7", "stats", "--json");
	CHECK_INT(r.status, 1);
	CHECK_STR(r.out, "");
	CHECK_HAS(r.err, "No such file or directory");
	CHECK_HAS(r.err, "modprobe moex");
	CHECK_MSG(strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
		  "not one line: %s", r.err);
}

/*
 * A device whose stats directory lacks a counter file that moexctl knows
 * (a driver older than its libmoex): ENOENT, but not the module's
 * absence. The hint said to modprobe a module that is loaded; it names
 * the missing file and says to install one release (--watch too).
 */
TEST(stats_missing_counter_file_names_older_driver)
{
	struct run r;

	CHECK_INT(fs_make_dev(root, "moex4", vals0), 0);
	CHECK_INT(fs_unset(root, "moex4", "open_files"), 0);
	RUN(&r, "--device", "/dev/moex4", "stats");
	CHECK_INT(r.status, 1);
	CHECK_STR(r.out, "");
	CHECK_HAS(r.err, "moexctl: stats of moex4: No such file or directory: ");
	CHECK_HAS(r.err, "no counter file open_files");
	CHECK_HAS(r.err, "older moex.ko");
	CHECK_MSG(!strstr(r.err, "modprobe"), "the module-not-loaded hint: %s",
		  r.err);
	CHECK_MSG(strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
		  "not one line: %s", r.err);
	RUN(&r, "--device", "/dev/moex4", "stats", "--watch", "--count", "1");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "no counter file open_files");
	CHECK_MSG(!strstr(r.err, "modprobe"), "the module-not-loaded hint: %s",
		  r.err);
}

/* run_bin_child_hook: the tool's stdout is /dev/full (writes: ENOSPC). */
static void stdout_to_dev_full(void)
{
	int fd = open("/dev/full", O_WRONLY);

	if (fd >= 0)
		dup2(fd, STDOUT_FILENO);
}

/*
 * stats whose output cannot be written (a full disk, /dev/full): exit
 * status 1 and, as moexctl(1) says, one line on stderr saying why. It
 * exited 1 with nothing on stderr.
 */
TEST(stats_write_error_says_why)
{
	struct stat st;
	struct run r;

	if (stat("/dev/full", &st) || !S_ISCHR(st.st_mode))
		SKIP("no /dev/full here");
	run_bin_child_hook = stdout_to_dev_full;
	RUN(&r, "stats");
	run_bin_child_hook = NULL;
	CHECK_INT(r.status, 1);
	CHECK_STR(r.err, "moexctl: stdout: No space left on device\n");
	run_bin_child_hook = stdout_to_dev_full;
	RUN(&r, "stats", "--json");
	run_bin_child_hook = NULL;
	CHECK_INT(r.status, 1);
	CHECK_STR(r.err, "moexctl: stdout: No space left on device\n");
}

TEST(info_missing_device_fails_with_hint)
{
	struct run r;

	RUN(&r, "--device", "/nonexistent/moex-unit", "info");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "/nonexistent/moex-unit");
	CHECK_HAS(r.err, "modprobe moex");
}

TEST(info_on_non_moex_file_fails)
{
	struct run r;

	RUN(&r, "info", "--device", "/dev/null");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "not a moex device");
}

TEST(pin_on_missing_device_fails)
{
	struct run r;

	RUN(&r, "--device", "/nonexistent/moex-unit", "pin", "--size", "4k");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "modprobe moex");
}

TEST(selftest_without_devices_fails)
{
	struct stat st;
	struct run r;

	if (stat("/dev/moex0", &st) == 0)
		SKIP("/dev/moex0 exists here");
	RUN(&r, "selftest");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.out, "FAIL");
	CHECK_HAS(r.out, "modprobe moex");
	/* --seed 0 is kept (it was replaced by a random seed) */
	RUN(&r, "selftest", "--seed", "0");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.out, "selftest: seed 0\n");
	RUN(&r, "selftest", "--seed", "0x1F");
	CHECK_HAS(r.out, "selftest: seed 31\n");
}

TEST(help_and_usage_errors)
{
	struct run r;

	RUN(&r, "--help");
	CHECK_INT(r.status, 0);
	CHECK_HAS(r.out, "selftest");
	CHECK_HAS(r.out, "--device");
	RUN(&r, "frobnicate");
	CHECK_INT(r.status, 2);
	RUN(&r, "info", "--json");
	CHECK_INT(r.status, 2);
	/* the option by its name, not by its value */
	RUN(&r, "info", "--size", "4k");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "option '--size' does not go with info");
	RUN(&r, "pin");
	CHECK_INT(r.status, 2);
	RUN(&r, "pin", "--size", "12x");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "12x");
	RUN(&r, "pin", "--size", "0");
	CHECK_INT(r.status, 2);
	/* rounded up to pages it would wrap to 0 ("pin 0 bytes") */
	RUN(&r, "--device", "/dev/null", "pin", "--size",
	    "18446744073709551615");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "too large");
	RUN(&r, "pin", "--size", "4k", "--hold", "soon");
	CHECK_INT(r.status, 2);
	/* at most 1e7 seconds (moexctl(1)) */
	RUN(&r, "pin", "--size", "4k", "--hold", "10000001");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--hold: bad time '10000001'");
	RUN(&r, "pin", "--size", "4k", "--hold", "-1");
	CHECK_INT(r.status, 2);
	/* decimal or 0x hex only: strtoull took "-1" and octal "010" */
	RUN(&r, "selftest", "--seed", "-1");
	CHECK_INT(r.status, 2);
	RUN(&r, "selftest", "--seed", "010");
	CHECK_INT(r.status, 2);
	RUN(&r, "selftest", "--seed", " 7");
	CHECK_INT(r.status, 2);
	/* a number and then more: all of it is the value */
	RUN(&r, "selftest", "--seed", "12x");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--seed: bad number '12x'");
	RUN(&r, "pin", "--size", "4k", "--hold", "1x");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--hold: bad time '1x'");
	RUN(&r, "stats", "--bogus");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "extra");
	CHECK_INT(r.status, 2);
}

/* ---- selftest and pin on the fake driver ----------------------------------- */

/* Real /dev/moexN here would be tested too: keep to the fake. */
static bool have_real_device(void)
{
	struct stat st;

	return stat("/dev/moex0", &st) == 0;
}

TEST(selftest_fake_cpu_passes)
{
	static const char *const checks[] = {
		"selftest: null open ok", "selftest: null pin ok",
		"selftest: null copy ok", "selftest: null readonly ok",
		"selftest: null unpin ok", "selftest: null pin-speed ok",
		"selftest: null queue ok (sync, io_uring not usable: ",
		"selftest: all 7 checks passed",
	};
	uint64_t copies, bytes, max;
	struct run r;
	size_t i;

	if (have_real_device())
		SKIP("/dev/moex0 exists here");
	FAKE(&r, NULL, "--device", "/dev/null", "selftest", "--size", "8M",
	     "--seed", "7");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.out);
	for (i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
		CHECK_HAS(r.out, checks[i]);
	CHECK_HAS(r.out, "GiB/s (engine cpu");
	CHECK_HAS(r.out, "8 MiB in");
	CHECK(!strstr(r.out, "dmabuf"));	/* the fake offers none */
	CHECK_HAS(r.out, "16 NOPs, a 20579-byte COPY round trip");
	CHECK(fake_counts(&r, &copies, &bytes, &max));
	CHECK(copies > 40);
	CHECK(max >= (1u << 20));
}

TEST(selftest_fake_edu_stays_small)
{
	uint64_t copies, bytes, max;
	struct run r;

	if (have_real_device())
		SKIP("/dev/moex0 exists here");
	FAKE(&r, "MOEX_FAKE_ENGINE=edu", "--device", "/dev/null", "selftest",
	     "--size", "4M");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.out);
	CHECK_HAS(r.out, "selftest: null copy ok");
	CHECK_HAS(r.out, "engine edu");
	CHECK_HAS(r.out, "a 2000-byte COPY round trip");
	CHECK_MSG(fake_counts(&r, &copies, &bytes, &max), "%s", r.err);
	/* 5 copies, 1 from a read-only region, 2 through the queue */
	CHECK_MSG(copies <= 8, "%" PRIu64 " copies on edu", copies);
	CHECK_MSG(max <= 4096, "a %" PRIu64 "-byte copy on edu", max);
	CHECK(copies >= 3);
}

TEST(selftest_fake_catches_bad_copies)
{
	struct run r;

	if (have_real_device())
		SKIP("/dev/moex0 exists here");
	FAKE(&r, "MOEX_FAKE_CORRUPT=1", "--device", "/dev/null", "selftest",
	     "--size", "4M");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.out, "selftest: null copy FAIL: ");
	CHECK_HAS(r.out, "wrong byte");
	CHECK_HAS(r.out, "selftest: null queue FAIL: sync, ");
	CHECK_HAS(r.out, "COPY round trip left wrong bytes");
	/* copy, readonly and queue of the 7 checks */
	CHECK_HAS(r.out, "selftest: null readonly FAIL: from read-only: ");
	CHECK_HAS(r.out, "selftest: FAILED: 3 of 7 checks\n");
}

TEST(selftest_fake_pin_failure_names_fix)
{
	struct run r;

	if (have_real_device())
		SKIP("/dev/moex0 exists here");
	FAKE(&r, "MOEX_FAKE_PIN_ERRNO=12", "--device", "/dev/null", "selftest");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.out, "selftest: null pin FAIL: ");
	CHECK_HAS(r.out, "ulimit -l");
}

TEST(pin_fake_shows_region)
{
	struct run r;

	FAKE(&r, NULL, "--device", "/dev/null", "pin", "--size", "1M",
	     "--hugepages", "--hold", "0.05");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK_HAS(r.out, "pinned: handle 1, 1048576 bytes (1.0 MiB, huge pages)");
	CHECK_HAS(r.out, "256 pages, 1 sg segments");
	CHECK_HAS(r.out, "holding for 0.05 s");
	CHECK_HAS(r.out, "unpinned: handle 1");
	/* rounded up to whole pages, on small pages */
	FAKE(&r, NULL, "--device", "/dev/null", "pin", "--size", "5000");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK_HAS(r.out, "pinned: handle 1, 8192 bytes (0.0 MiB, small pages), 2 pages");
	CHECK(!strstr(r.out, "holding"));
}

/* info: each field under its name, from the device's INFO */
TEST(info_fake_shows_fields)
{
	struct run r;

	FAKE(&r, "MOEX_FAKE_MAX_PINNED=3221225472", "--device", "/dev/null",
	     "info");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK_HAS(r.out, "device:           /dev/null\n");
	CHECK_HAS(r.out, "features:         0xb (pin pin_readonly copy)\n");
	CHECK_HAS(r.out, "engine:           cpu (id 1)\n");
	CHECK_HAS(r.out, "max_pinned_bytes: 3221225472 (3072 MiB)\n");
	CHECK_HAS(r.out, "pinned_bytes:     0\n");
	FAKE(&r, "MOEX_FAKE_ENGINE=edu", "--device", "/dev/null", "info");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK_HAS(r.out, "engine:           edu (id 1)\n");
	CHECK_HAS(r.out, "max_pinned_bytes: 0 (no module-wide cap)\n");
}

TEST(pin_fake_enomem_one_line_with_fix)
{
	struct run r;

	FAKE(&r, "MOEX_FAKE_PIN_ERRNO=12", "--device", "/dev/null", "pin",
	     "--size", "5000");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "moexctl: pin 8192 bytes on /dev/null: "
		  "Cannot allocate memory: ");
	CHECK_HAS(r.err, "ulimit -l");
	CHECK_HAS(r.err, "max_pinned_mb");
	CHECK(!strstr(r.out, "pinned:"));
}

int main(void)
{
	static const struct h_test tests[] = {
		T(json_checker_sanity),
		T(stats_json_is_valid_and_complete),
		T(stats_json_other_device),
		T(command_options_before_the_command),
		T(stats_text_lists_every_counter),
		T(stats_missing_device_fails_with_hint),
		T(stats_missing_counter_file_names_older_driver),
		T(stats_write_error_says_why),
		T(info_missing_device_fails_with_hint),
		T(info_on_non_moex_file_fails),
		T(pin_on_missing_device_fails),
		T(selftest_without_devices_fails),
		T(help_and_usage_errors),
		T(selftest_fake_cpu_passes),
		T(selftest_fake_edu_stays_small),
		T(selftest_fake_catches_bad_copies),
		T(selftest_fake_pin_failure_names_fix),
		T(pin_fake_shows_region),
		T(info_fake_shows_fields),
		T(pin_fake_enomem_one_line_with_fix),
	};
	return FS_RUN_WITH_FAKE_SYSFS(root, vals0, tests);
}
