// SPDX-License-Identifier: GPL-2.0
/*
 * vmlib: the helpers that both in-VM test binaries share (moex-vm-suite,
 * tests/vm/suite*.c, and moex-vm-uring, tests/vm/uring.c): sysfs and
 * /proc files, time, module load/unload, device nodes and the stats/
 * snapshots of a device. No test harness state: see vmlib.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmlib.h"

/* ---- files and time ------------------------------------------------------- */

int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;
	int err;

	if (fd < 0)
		return -errno;
	while ((size_t)total + 1 < size) {
		n = read(fd, buf + total, size - 1 - total);
		if (n < 0) {
			err = errno;
			close(fd);
			return -err;
		}
		if (!n)
			break;
		total += n;
	}
	close(fd);
	buf[total] = '\0';
	return (int)total;
}

int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(s);
	ssize_t n;
	int err;

	if (fd < 0)
		return errno;
	n = write(fd, s, len);
	err = n < 0 ? errno : (size_t)n == len ? 0 : EIO;
	close(fd);
	return err;
}

int read_ll(const char *path, long long *v)
{
	char buf[64], *end;
	int n = read_file(path, buf, sizeof(buf));

	if (n < 0)
		return -n;
	if (n < 2 || buf[n - 1] != '\n' || buf[0] < '0' || buf[0] > '9')
		return EPROTO;
	errno = 0;
	*v = strtoll(buf, &end, 10);
	if (errno || end != buf + n - 1)
		return EPROTO;
	return 0;
}

bool path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}


/* ---- the module and its devices ------------------------------------------ */

int mod_load(const char *path, const char *params)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return errno;
	if (syscall(SYS_finit_module, fd, params, 0))
		err = errno;
	close(fd);
	return err;
}

int mod_unload(void)
{
	if (syscall(SYS_delete_module, "moex", O_NONBLOCK))
		return errno;
	return 0;
}

int mod_load_wait(const char *path, const char *params)
{
	uint64_t t0 = now_ms();
	int ret = mod_load(path, params);

	if (ret && ret != EEXIST)
		return -ret;
	while (!path_exists("/dev/moex0") && now_ms() - t0 < 10000)
		sleep_ms(50);
	return path_exists("/dev/moex0") ? 0 : -ENODEV;
}

int mod_unload_wait(void)
{
	uint64_t t0 = now_ms();
	int ret;

	/* a dying process's files may take a moment to close */
	do {
		ret = -mod_unload();
		if (!ret)
			return 0;
		sleep_ms(100);
	} while (ret == -EWOULDBLOCK && now_ms() - t0 < 30000);
	return ret;
}

bool mod_present(void)
{
	return path_exists("/sys/module/moex");
}

bool dev_present(int dev)
{
	char path[64];

	snprintf(path, sizeof(path), "/sys/class/moex/moex%d", dev);
	return path_exists(path);
}


bool dev_is_edu(int dev)
{
	char path[96], buf[32];

	snprintf(path, sizeof(path), "/sys/class/moex/moex%d/engine", dev);
	return read_file(path, buf, sizeof(buf)) > 0 && !strcmp(buf, "edu\n");
}

int dev_open_raw(int dev)
{
	char path[32];

	snprintf(path, sizeof(path), "/dev/moex%d", dev);
	return open(path, O_RDWR | O_CLOEXEC);
}

/* ---- stats ------------------------------------------------------------------ */

const char *const stat_names[NSTATS] = {
	"pinned_bytes", "pinned_regions", "pin_calls", "pin_failures",
	"unpin_calls", "copy_calls", "copy_bytes", "copy_failures",
	"dmabuf_exports", "open_files",
};

int stats_read_raw(int dev, struct stats *s, char *why, size_t n)
{
	int i, err;

	for (i = 0; i < NSTATS; i++) {
		char path[128];

		snprintf(path, sizeof(path), "/sys/class/moex/moex%d/stats/%s",
			 dev, stat_names[i]);
		err = read_ll(path, &s->v[i]);
		if (err) {
			snprintf(why, n, "cannot read %s: %s", path,
				 err == EPROTO ? "not a decimal line" :
						 strerror(err));
			return -1;
		}
	}
	return 0;
}

int stats_first_diff(const struct stats *a, const struct stats *b)
{
	int i;

	for (i = 0; i < NSTATS; i++)
		if (a->v[i] != b->v[i])
			return i;
	return -1;
}

/* AnonHugePages of the mapping holding @p, in bytes, or -1. */
long long thp_bytes(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	long long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, ' ') && line[0] != ' ') {
			if (in)
				break;
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %lld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}
