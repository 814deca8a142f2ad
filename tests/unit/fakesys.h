/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A fake sysfs tree for unit tests: <root>/class/moex/<dev>/stats/<name>,
 * made under a temporary directory. Point MOEX_SYSFS_ROOT at the root.
 */
#ifndef MOEX_TEST_FAKESYS_H
#define MOEX_TEST_FAKESYS_H

#define _XOPEN_SOURCE_EXTENDED 1
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moex.h"

/* mkdir -p */
static int __attribute__((unused)) fs_mkdirs(const char *path)
{
	char buf[PATH_MAX];
	char *p;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -1;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* Write content to <root>/class/moex/<dev>/stats/<name>. */
static int __attribute__((unused))
fs_set(const char *root, const char *dev, const char *name, const char *content)
{
	char path[PATH_MAX];
	FILE *f;
	int ret;

	if (snprintf(path, sizeof(path), "%s/class/moex/%s/stats", root,
		     dev) >= (int)sizeof(path) || fs_mkdirs(path))
		return -1;
	if (snprintf(path, sizeof(path), "%s/class/moex/%s/stats/%s", root,
		     dev, name) >= (int)sizeof(path))
		return -1;
	f = fopen(path, "w");
	if (!f)
		return -1;
	ret = fputs(content, f) < 0 ? -1 : 0;
	return fclose(f) ? -1 : ret;
}

/* Remove <root>/class/moex/<dev>/stats/<name>. */
static int __attribute__((unused))
fs_unset(const char *root, const char *dev, const char *name)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/class/moex/%s/stats/%s", root,
		     dev, name) >= (int)sizeof(path))
		return -1;
	return unlink(path);
}

/* A device whose counter i holds vals[i], written as the driver does. */
static int __attribute__((unused))
fs_make_dev(const char *root, const char *dev, const uint64_t *vals)
{
	char buf[32];
	unsigned int i;

	for (i = 0; moex_stats_names[i]; i++) {
		snprintf(buf, sizeof(buf), "%" PRIu64 "\n", vals[i]);
		if (fs_set(root, dev, moex_stats_names[i], buf))
			return -1;
	}
	return 0;
}

/* A fresh temporary root in buf (PATH_MAX). */
static int __attribute__((unused)) fs_make_root(char *buf, size_t len)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(buf, len, "%s/moex-unit-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(buf) ? 0 : -1;
}

static int fs_rm_one(const char *path, const struct stat *sb, int flag,
		     struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* rm -rf root */
static void __attribute__((unused)) fs_remove(const char *root)
{
	nftw(root, fs_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Run a suite's tests against a fake sysfs tree (root, PATH_MAX) holding
 * moex0 with the counters vals, pointed to by MOEX_SYSFS_ROOT; removed
 * afterwards. Needs harness.h.
 */
#define FS_RUN_WITH_FAKE_SYSFS(root, vals, tests)			\
	fs_run_with_fake_sysfs(root, sizeof(root), vals, tests,	\
			       sizeof(tests) / sizeof(tests[0]))

static int __attribute__((unused))
fs_run_with_fake_sysfs(char *root, size_t len, const uint64_t *vals,
		       const struct h_test *tests, size_t n)
{
	int ret;

	if (fs_make_root(root, len) || fs_make_dev(root, "moex0", vals)) {
		perror(SUITE ": cannot make the fake sysfs tree");
		printf("%s: 0 passed, 1 failed, 0 skipped\n", SUITE);
		return EXIT_FAILURE;
	}
	setenv("MOEX_SYSFS_ROOT", root, 1);
	ret = h_run(tests, n, 0, NULL);
	fs_remove(root);
	return ret;
}

#endif /* MOEX_TEST_FAKESYS_H */
