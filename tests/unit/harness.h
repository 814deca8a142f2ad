/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A tiny unit-test harness. A test file defines its tests with TEST(name),
 * lists them with RUN_TESTS(...) and is built with -DSUITE='"unit-xxx"'.
 * Each test prints one line, "ok <name>", "FAIL <name>: <why>" or
 * "SKIP <name>: <why>", and the run ends with the line
 * "<suite>: N passed, N failed, N skipped" (tools/run-suites sums those);
 * MOEX_TEST_SUITE, where set and not empty, names the suite instead, for
 * a second run of the same program under other settings.
 * The exit status is 0 when nothing failed. Programs built with
 * RUN_TESTS() take test names as arguments and then run only those (a
 * name that is no test fails).
 *
 * CHECK* macros end the current test at the first failed check.
 */
#ifndef MOEX_TEST_HARNESS_H
#define MOEX_TEST_HARNESS_H

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SUITE
#error "build with -DSUITE='\"unit-name\"'"
#endif

enum h_result { H_PASS, H_FAIL, H_SKIP };

struct h_test {
	const char *name;
	void (*fn)(void);
};

/* The state of the test that runs now. */
static enum h_result h_result;
static char h_why[512];

static void h_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), unused));
static void h_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (h_result == H_FAIL)
		return;
	h_result = H_FAIL;
	n = snprintf(h_why, sizeof(h_why), "%s:%d: ", file, line);
	va_start(ap, fmt);
	vsnprintf(h_why + n, sizeof(h_why) - (size_t)n, fmt, ap);
	va_end(ap);
}

#define TEST(name) static void test_##name(void)
#define T(name) { #name, test_##name }

#define CHECK(cond)							\
	do {								\
		if (!(cond)) {						\
			h_fail(__FILE__, __LINE__, "%s", #cond);	\
			return;						\
		}							\
	} while (0)

#define CHECK_MSG(cond, ...)						\
	do {								\
		if (!(cond)) {						\
			h_fail(__FILE__, __LINE__, __VA_ARGS__);	\
			return;						\
		}							\
	} while (0)

#define CHECK_INT(a, b)							\
	do {								\
		long long h_a = (long long)(a), h_b = (long long)(b);	\
		if (h_a != h_b) {					\
			h_fail(__FILE__, __LINE__, "%s == %lld, want %s == %lld", \
			       #a, h_a, #b, h_b);			\
			return;						\
		}							\
	} while (0)

#define CHECK_U64(a, b)							\
	do {								\
		uint64_t h_a = (uint64_t)(a), h_b = (uint64_t)(b);	\
		if (h_a != h_b) {					\
			h_fail(__FILE__, __LINE__,			\
			       "%s == %" PRIu64 ", want %" PRIu64, #a,	\
			       h_a, h_b);				\
			return;						\
		}							\
	} while (0)

#define CHECK_STR(a, b)							\
	do {								\
		const char *h_a = (a), *h_b = (b);			\
		if (!h_a || !h_b || strcmp(h_a, h_b)) {			\
			h_fail(__FILE__, __LINE__, "%s == \"%s\", want \"%s\"", \
			       #a, h_a ? h_a : "(null)",		\
			       h_b ? h_b : "(null)");			\
			return;						\
		}							\
	} while (0)

/* a contains b */
#define CHECK_HAS(a, b)							\
	do {								\
		const char *h_a = (a), *h_b = (b);			\
		if (!h_a || !strstr(h_a, h_b)) {			\
			h_fail(__FILE__, __LINE__, "%s == \"%s\" lacks \"%s\"", \
			       #a, h_a ? h_a : "(null)", h_b);		\
			return;						\
		}							\
	} while (0)

#define SKIP(...)							\
	do {								\
		h_result = H_SKIP;					\
		snprintf(h_why, sizeof(h_why), __VA_ARGS__);		\
		return;							\
	} while (0)

/* Is name among the argc - 1 names in argv (none: every test)? */
static int h_chosen(const char *name, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (!strcmp(argv[i], name))
			return 1;
	return argc < 2;
}

static int h_run(const struct h_test *tests, size_t n, int argc, char **argv)
{
	const char *suite = getenv("MOEX_TEST_SUITE");
	unsigned int pass = 0, fail = 0, skip = 0;
	size_t i;
	int a;

	for (i = 0; i < n; i++) {
		if (!h_chosen(tests[i].name, argc, argv))
			continue;
		h_result = H_PASS;
		h_why[0] = '\0';
		tests[i].fn();
		switch (h_result) {
		case H_PASS:
			printf("ok %s\n", tests[i].name);
			pass++;
			break;
		case H_FAIL:
			printf("FAIL %s: %s\n", tests[i].name, h_why);
			fail++;
			break;
		case H_SKIP:
			printf("SKIP %s: %s\n", tests[i].name, h_why);
			skip++;
			break;
		}
		fflush(stdout);
	}
	for (a = 1; a < argc; a++) {
		for (i = 0; i < n && strcmp(tests[i].name, argv[a]); i++)
			;
		if (i == n) {
			printf("FAIL %s: no such test\n", argv[a]);
			fail++;
		}
	}
	printf("%s: %u passed, %u failed, %u skipped\n",
	       suite && *suite ? suite : SUITE, pass, fail, skip);
	return fail ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define RUN_TESTS(...)							\
	int main(int argc, char **argv)					\
	{								\
		static const struct h_test h_tests[] = { __VA_ARGS__ };	\
		return h_run(h_tests, sizeof(h_tests) / sizeof(h_tests[0]), \
			     argc, argv);				\
	}

/* The lowest free descriptor: the one the next open() gets, or -1. */
static inline int next_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	return fd;
}

#endif /* MOEX_TEST_HARNESS_H */
