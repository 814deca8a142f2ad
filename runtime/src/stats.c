// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex statistics: the counters in /sys/class/moex/<dev>/stats/, one
 * decimal value per file (Documentation/ABI/testing/sysfs-class-moex).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define MOEX_DEVNAME_MAX	64

/*
 * The names twice: the library reads its own private table, which grows
 * with enum moex_stat, and exports one frozen at the ten counters of
 * libmoex 0.1 to 0.4: an executable linked against libmoex.so may hold its
 * own copy of that one (a copy relocation), as long as it was then.
 */
#define MOEX_STATS_NAMES_INIT {						\
	[MOEX_STAT_PINNED_BYTES] = "pinned_bytes",			\
	[MOEX_STAT_PINNED_REGIONS] = "pinned_regions",			\
	[MOEX_STAT_PIN_CALLS] = "pin_calls",				\
	[MOEX_STAT_PIN_FAILURES] = "pin_failures",			\
	[MOEX_STAT_UNPIN_CALLS] = "unpin_calls",			\
	[MOEX_STAT_COPY_CALLS] = "copy_calls",				\
	[MOEX_STAT_COPY_BYTES] = "copy_bytes",				\
	[MOEX_STAT_COPY_FAILURES] = "copy_failures",			\
	[MOEX_STAT_DMABUF_EXPORTS] = "dmabuf_exports",			\
	[MOEX_STAT_OPEN_FILES] = "open_files",				\
	[MOEX_STATS_COUNT] = NULL,					\
}

#define MOEX_STATS_NAMES_FROZEN	10
const char *const moex_stats_names[MOEX_STATS_NAMES_FROZEN + 1] = {
	"pinned_bytes", "pinned_regions", "pin_calls", "pin_failures",
	"unpin_calls", "copy_calls", "copy_bytes", "copy_failures",
	"dmabuf_exports", "open_files", NULL,
};
static const char *const moex_stat_names[] = MOEX_STATS_NAMES_INIT;

_Static_assert(MOEX_STAT_OPEN_FILES + 1 == MOEX_STATS_NAMES_FROZEN,
	       "moex_stats_names[] lists the first ten counters, in order");

const char *moex_stats_name(unsigned idx)
{
	return idx < MOEX_STATS_COUNT ? moex_stat_names[idx] : NULL;
}

static const size_t moex_stats_offsets[MOEX_STATS_COUNT] = {
	[MOEX_STAT_PINNED_BYTES] = offsetof(struct moex_stats, pinned_bytes),
	[MOEX_STAT_PINNED_REGIONS] = offsetof(struct moex_stats, pinned_regions),
	[MOEX_STAT_PIN_CALLS] = offsetof(struct moex_stats, pin_calls),
	[MOEX_STAT_PIN_FAILURES] = offsetof(struct moex_stats, pin_failures),
	[MOEX_STAT_UNPIN_CALLS] = offsetof(struct moex_stats, unpin_calls),
	[MOEX_STAT_COPY_CALLS] = offsetof(struct moex_stats, copy_calls),
	[MOEX_STAT_COPY_BYTES] = offsetof(struct moex_stats, copy_bytes),
	[MOEX_STAT_COPY_FAILURES] = offsetof(struct moex_stats, copy_failures),
	[MOEX_STAT_DMABUF_EXPORTS] = offsetof(struct moex_stats, dmabuf_exports),
	[MOEX_STAT_OPEN_FILES] = offsetof(struct moex_stats, open_files),
};

_Static_assert(sizeof(moex_stat_names) / sizeof(moex_stat_names[0]) ==
	       MOEX_STATS_COUNT + 1, "one name per counter, then NULL");

const char *moex__sysfs_root(void)
{
	const char *root = secure_getenv("MOEX_SYSFS_ROOT");

	return root && *root ? root : "/sys";
}

static uint64_t *moex_stat_ptr(struct moex_stats *s, unsigned int idx)
{
	return (uint64_t *)((char *)s + moex_stats_offsets[idx]);
}

uint64_t moex_stats_get(const struct moex_stats *s, unsigned idx)
{
	uint64_t v;

	if (!s || idx >= MOEX_STATS_COUNT ||
	    moex_stats_offsets[idx] + sizeof(uint64_t) > s->size)
		return MOEX_STAT_INVALID;
	memcpy(&v, (const char *)s + moex_stats_offsets[idx], sizeof(v));
	return v;
}

static int moex_devname_ok(const char *name)
{
	size_t len = strnlen(name, MOEX_DEVNAME_MAX + 1);

	return len && len <= MOEX_DEVNAME_MAX && !strchr(name, '/') &&
	       strcmp(name, ".") && strcmp(name, "..");
}

/* "123\n" -> 123; anything else -> -EIO. */
static int moex_parse_counter(const char *buf, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;

	if (len && buf[len - 1] == '\n')
		len--;
	if (!len)
		return -EIO;
	for (i = 0; i < len; i++) {
		unsigned int d = (unsigned char)buf[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -EIO;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int moex_read_counter(int dirfd, const char *name, uint64_t *out)
{
	char buf[32];
	size_t len = 0;
	ssize_t n;
	int fd, ret;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return moex__neg_errno();
	for (;;) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf))
			break;
	}
	ret = n < 0 ? moex__neg_errno() : 0;
	close(fd);
	if (ret)
		return ret;
	if (len == sizeof(buf))
		return -EIO;
	return moex_parse_counter(buf, len, out);
}

int moex_stats_read(const char *devname, struct moex_stats *s)
{
	MOEX_KEEP_ERRNO;
	struct moex_stats tmp;
	char path[PATH_MAX];
	unsigned int i;
	int dirfd, n, ret = 0;

	if (!s || !moex__size_ok(s->size))
		return -EINVAL;
	if (!devname)
		devname = "moex0";
	if (!moex_devname_ok(devname))
		return -EINVAL;

	n = snprintf(path, sizeof(path), "%s/class/moex/%s/stats",
		     moex__sysfs_root(), devname);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return moex__neg_errno();

	/* Read everything first: on failure *s stays as it was. */
	memset(&tmp, 0, sizeof(tmp));
	for (i = 0; i < MOEX_STATS_COUNT && !ret; i++)
		ret = moex_read_counter(dirfd, moex_stat_names[i],
					moex_stat_ptr(&tmp, i));
	close(dirfd);
	if (ret)
		return ret;

	for (i = 0; i < MOEX_STATS_COUNT; i++)
		if (moex_stats_offsets[i] + sizeof(uint64_t) <= s->size)
			*moex_stat_ptr(s, i) = *moex_stat_ptr(&tmp, i);
	return 0;
}
