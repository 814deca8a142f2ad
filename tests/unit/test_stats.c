// SPDX-License-Identifier: GPL-2.0
/*
 * unit-stats: the sysfs counters, read from a fake tree (MOEX_SYSFS_ROOT).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moex.h"
#include "harness.h"
#include "fakesys.h"
#include "../../runtime/src/internal.h"

#define ERRNO_SENTINEL 4242

static char root[PATH_MAX];

/* moex0's values: distinct, one as large as the driver can print. */
static const uint64_t vals0[MOEX_STATS_COUNT] = {
	268435456, 2, 17, 3, 15, 1001, 9223372036854775807ull, 4, 5, 1,
};

/* The ABI's names (Documentation/ABI/testing/sysfs-class-moex), in order. */
static const char *const abi_names[] = {
	"pinned_bytes", "pinned_regions", "pin_calls", "pin_failures",
	"unpin_calls", "copy_calls", "copy_bytes", "copy_failures",
	"dmabuf_exports", "open_files",
};

/*
 * moex_stats_name() names every counter and NULL past them; the exported
 * array is frozen at the first ten (a program's copy of it is as long as
 * it was when the program was linked).
 */
TEST(names_table)
{
	size_t i;

	for (i = 0; i < MOEX_STATS_COUNT; i++)
		CHECK_STR(moex_stats_name((unsigned)i), abi_names[i]);
	CHECK(moex_stats_name(MOEX_STATS_COUNT) == NULL);
	CHECK(moex_stats_name(UINT32_MAX) == NULL);
	for (i = 0; i < 10; i++)
		CHECK_STR(moex_stats_names[i], abi_names[i]);
	CHECK(moex_stats_names[10] == NULL);
	CHECK_INT(MOEX_STATS_COUNT, 10);
}

TEST(read_all_counters)
{
	struct moex_stats s = { .size = sizeof(s) };
	unsigned int i;

	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_stats_read("moex0", &s), 0);
	CHECK_INT(errno, ERRNO_SENTINEL);
	CHECK_U64(s.size, sizeof(s));
	CHECK_U64(s.pinned_bytes, 268435456);
	CHECK_U64(s.pinned_regions, 2);
	CHECK_U64(s.pin_calls, 17);
	CHECK_U64(s.pin_failures, 3);
	CHECK_U64(s.unpin_calls, 15);
	CHECK_U64(s.copy_calls, 1001);
	CHECK_U64(s.copy_bytes, 9223372036854775807ull);
	CHECK_U64(s.copy_failures, 4);
	CHECK_U64(s.dmabuf_exports, 5);
	CHECK_U64(s.open_files, 1);
	for (i = 0; i < MOEX_STATS_COUNT; i++)
		CHECK_U64(moex_stats_get(&s, i), vals0[i]);
}

TEST(read_default_device_is_moex0)
{
	struct moex_stats s = { .size = sizeof(s) };

	CHECK_INT(moex_stats_read(NULL, &s), 0);
	CHECK_U64(s.copy_calls, 1001);
}

TEST(read_other_device)
{
	static const uint64_t v[MOEX_STATS_COUNT] = { 1, 2, 3, 4, 5, 6, 7, 8,
						      9, 10 };
	struct moex_stats s = { .size = sizeof(s) };

	CHECK_INT(fs_make_dev(root, "moex3", v), 0);
	CHECK_INT(moex_stats_read("moex3", &s), 0);
	CHECK_U64(s.pinned_bytes, 1);
	CHECK_U64(s.open_files, 10);
}

TEST(value_without_newline)
{
	struct moex_stats s = { .size = sizeof(s) };

	CHECK_INT(fs_make_dev(root, "moex4", vals0), 0);
	CHECK_INT(fs_set(root, "moex4", "pin_calls", "42"), 0);
	CHECK_INT(moex_stats_read("moex4", &s), 0);
	CHECK_U64(s.pin_calls, 42);
}

TEST(missing_device_is_enoent)
{
	struct moex_stats s = { .size = sizeof(s) };

	errno = ERRNO_SENTINEL;
	CHECK_INT(moex_stats_read("moex9", &s), -ENOENT);
	CHECK_INT(errno, ERRNO_SENTINEL);
}

TEST(missing_counter_is_enoent_and_untouched)
{
	struct moex_stats s;

	memset(&s, 0xab, sizeof(s));
	s.size = sizeof(s);
	CHECK_INT(fs_make_dev(root, "moex5", vals0), 0);
	CHECK_INT(fs_unset(root, "moex5", "open_files"), 0);
	CHECK_INT(moex_stats_read("moex5", &s), -ENOENT);
	CHECK_U64(s.pinned_bytes, 0xababababababababull);
}

TEST(malformed_counter_is_eio)
{
	static const char *const bad[] = {
		"", "\n", "12abc\n", "-5\n", " 5\n", "5 \n", "0x10\n",
		"1\n2\n", "99999999999999999999\n", "18446744073709551616",
		"123456789012345678901234567890123456789\n",
		/* 32 digits of 1 and a newline: longer than any counter */
		"00000000000000000000000000000001\n",
	};
	struct moex_stats s;
	size_t i;

	CHECK_INT(fs_make_dev(root, "moex6", vals0), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&s, 0xab, sizeof(s));
		s.size = sizeof(s);
		CHECK_INT(fs_set(root, "moex6", "copy_bytes", bad[i]), 0);
		errno = ERRNO_SENTINEL;
		CHECK_MSG(moex_stats_read("moex6", &s) == -EIO,
			  "content \"%s\" not refused", bad[i]);
		CHECK_INT(errno, ERRNO_SENTINEL);
		CHECK_U64(s.pinned_bytes, 0xababababababababull);
	}
	CHECK_INT(fs_set(root, "moex6", "copy_bytes", "18446744073709551615\n"),
		  0);
	CHECK_INT(moex_stats_read("moex6", &s), 0);
	CHECK_U64(s.copy_bytes, UINT64_MAX);
}

TEST(bad_device_names)
{
	static const char *const bad[] = {
		"", ".", "..", "../moex0", "moex0/", "a/b", "/moex0",
		"moex0123456789012345678901234567890123456789012345678901234567890",
	};
	struct moex_stats s = { .size = sizeof(s) };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(moex_stats_read(bad[i], &s) == -EINVAL,
			  "name \"%s\" accepted", bad[i]);
}

TEST(smaller_size_fills_only_its_part)
{
	struct moex_stats s;

	memset(&s, 0xab, sizeof(s));
	s.size = offsetof(struct moex_stats, pin_calls);
	CHECK_INT(moex_stats_read("moex0", &s), 0);
	CHECK_U64(s.pinned_bytes, 268435456);
	CHECK_U64(s.pinned_regions, 2);
	CHECK_U64(s.pin_calls, 0xababababababababull);
	CHECK_U64(s.open_files, 0xababababababababull);
	CHECK_U64(moex_stats_get(&s, MOEX_STAT_PINNED_REGIONS), 2);
	CHECK_U64(moex_stats_get(&s, MOEX_STAT_PIN_CALLS), MOEX_STAT_INVALID);
	/* a size that cuts pin_calls in two leaves all of it alone */
	memset(&s, 0xab, sizeof(s));
	s.size = offsetof(struct moex_stats, pin_calls) + 4;
	CHECK_INT(moex_stats_read("moex0", &s), 0);
	CHECK_U64(s.pinned_regions, 2);
	CHECK_U64(s.pin_calls, 0xababababababababull);
	CHECK_U64(moex_stats_get(&s, MOEX_STAT_PIN_CALLS), MOEX_STAT_INVALID);
}

TEST(bad_struct_sizes)
{
	static const size_t sizes[] = { 0, 1, sizeof(size_t) - 1,
					MOEX_STRUCT_SIZE_MAX + 1, SIZE_MAX };
	struct moex_stats s;
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(&s, 0xab, sizeof(s));
		s.size = sizes[i];
		errno = ERRNO_SENTINEL;
		CHECK_MSG(moex_stats_read("moex0", &s) == -EINVAL,
			  "size %zu accepted", sizes[i]);
		CHECK_INT(errno, ERRNO_SENTINEL);
		CHECK_U64(s.pinned_bytes, 0xababababababababull);
	}
	CHECK_INT(moex_stats_read("moex0", NULL), -EINVAL);
}

TEST(get_bad_index_or_null)
{
	struct moex_stats s = { .size = sizeof(s) };

	CHECK_U64(moex_stats_get(&s, MOEX_STATS_COUNT), MOEX_STAT_INVALID);
	CHECK_U64(moex_stats_get(&s, 1000000), MOEX_STAT_INVALID);
	CHECK_U64(moex_stats_get(NULL, 0), MOEX_STAT_INVALID);
}

TEST(sysfs_root_from_environment)
{
	static const uint64_t v[MOEX_STATS_COUNT] = { 7 };
	struct moex_stats s = { .size = sizeof(s) };
	char other[PATH_MAX];
	int ret;

	CHECK_INT(fs_make_root(other, sizeof(other)), 0);
	ret = fs_make_dev(other, "moex0", v);
	setenv("MOEX_SYSFS_ROOT", other, 1);
	if (!ret)
		ret = moex_stats_read("moex0", &s);
	setenv("MOEX_SYSFS_ROOT", root, 1);
	fs_remove(other);
	CHECK_INT(ret, 0);
	CHECK_U64(s.pinned_bytes, 7);
	CHECK_INT(moex_stats_read("moex0", &s), 0);
	CHECK_U64(s.pinned_bytes, 268435456);
	/* set but empty: the default */
	setenv("MOEX_SYSFS_ROOT", "", 1);
	CHECK_STR(moex__sysfs_root(), "/sys");
	setenv("MOEX_SYSFS_ROOT", root, 1);
	CHECK_STR(moex__sysfs_root(), root);
}

TEST(default_root_is_sys)
{
	struct moex_stats s = { .size = sizeof(s) };
	struct stat st;
	int ret;

	if (stat("/sys/class/moex/moex0", &st) == 0)
		SKIP("moex is loaded here: /sys/class/moex/moex0 exists");
	unsetenv("MOEX_SYSFS_ROOT");
	ret = moex_stats_read("moex0", &s);
	setenv("MOEX_SYSFS_ROOT", root, 1);
	CHECK_INT(ret, -ENOENT);
}

int main(void)
{
	static const struct h_test tests[] = {
		T(names_table),
		T(read_all_counters),
		T(read_default_device_is_moex0),
		T(read_other_device),
		T(value_without_newline),
		T(missing_device_is_enoent),
		T(missing_counter_is_enoent_and_untouched),
		T(malformed_counter_is_eio),
		T(bad_device_names),
		T(smaller_size_fills_only_its_part),
		T(bad_struct_sizes),
		T(get_bad_index_or_null),
		T(sysfs_root_from_environment),
		T(default_root_is_sys),
	};
	return FS_RUN_WITH_FAKE_SYSFS(root, vals0, tests);
}
