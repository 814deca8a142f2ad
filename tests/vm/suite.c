// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-suite: the in-VM test suite of moex.ko, and its helper library.
 *
 *   moex-vm-suite [--module PATH] [--module-params P] [--moexctl PATH]
 *                 [--seed N] [--filter A,B,...] [--list]
 *
 * Runs inside the test VM (tools/vm/run) as root, with moex.ko not loaded:
 * the first test loads it (finit_module), the last one unloads it
 * (delete_module). Output: one line per test, "ok NAME", "FAIL NAME: why"
 * or "SKIP NAME: why", "# ..." lines with figures and context, and at the
 * end "vm: N passed, N failed, N skipped". Exit status 0 iff no test
 * failed. --filter runs only the tests whose names contain one of the
 * strings (plus the load and final unload tests). --module-params are
 * given to every load of the module, as insmod's (edu_dma_bits=32 in the
 * swiotlb VM, see tools/vm/run --swiotlb).
 *
 * After each test the runner gives back what the test took (fds,
 * mappings, children, max_pinned_mb), then fails the test if it left
 * anything pinned or open on a device (polling up to 30 s for
 * asynchronous releases) or if the kernel logged a report meanwhile
 * (WARNING, BUG, lockdep, the edu engine's errors...).
 *
 * The tests live in suite_*.c, one table per area (suite.h lists them);
 * this file has the runner and the helpers of suite.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "suite.h"

const char *g_module_path = "/moex/moex.ko";
const char *g_module_params = "";
const char *g_moexctl;
bool g_loaded;
int g_edu = -1;
bool g_edu_pci;
size_t g_page = 4096;

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static char g_msg[2048];

/* ---- results -------------------------------------------------------------- */

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

int fail_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(g_msg, sizeof(g_msg), fmt, ap);
	va_end(ap);
	n = strlen(g_msg);
	snprintf(g_msg + n, sizeof(g_msg) - n, " [%s:%d]", base_name(file),
		 line);
	return T_FAIL;
}

int skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g_msg, sizeof(g_msg), fmt, ap);
	va_end(ap);
	return T_SKIP;
}

const char *test_msg(void)
{
	return g_msg;
}

void note(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

const char *errname(int err)
{
	static char buf[32];
	const char *s;

	if (!err)
		return "success";
	s = strerrorname_np(err);
	if (s)
		return s;
	snprintf(buf, sizeof(buf), "errno %d", err);
	return buf;
}

int test_dev(const struct test *t, int *dev)
{
	if (t->arg == DEV_EDU) {
		if (g_edu < 0)
			return skip("no edu device (/dev/moexN with engine edu)");
		*dev = g_edu;
	} else {
		*dev = 0;
	}
	return T_PASS;
}

/* ---- cleanup registry ------------------------------------------------------ */

#define MAX_TRACK 512

static int t_fds[MAX_TRACK];
static int n_fds;
static struct {
	void *base;
	size_t len;
} t_maps[MAX_TRACK];
static int n_maps;
static pid_t t_pids[64];
static int n_pids;
static struct moex_device *t_mdevs[MAX_TRACK];
static int n_mdevs;
static bool t_param_dirty;

int track_fd(int fd)
{
	if (fd >= 0 && n_fds < MAX_TRACK)
		t_fds[n_fds++] = fd;
	return fd;
}

void xclose(int fd)
{
	int i;

	for (i = n_fds - 1; i >= 0; i--) {
		if (t_fds[i] == fd) {
			t_fds[i] = t_fds[--n_fds];
			break;
		}
	}
	if (fd >= 0)
		close(fd);
}

void track_pid(pid_t pid)
{
	if (pid > 0 && n_pids < (int)(sizeof(t_pids) / sizeof(t_pids[0])))
		t_pids[n_pids++] = pid;
}

void untrack_pid(pid_t pid)
{
	int i;

	for (i = 0; i < n_pids; i++) {
		if (t_pids[i] == pid) {
			t_pids[i] = t_pids[--n_pids];
			return;
		}
	}
}

void cleanup_all(void)
{
	while (n_pids) {
		pid_t pid = t_pids[--n_pids];

		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	while (n_maps) {
		n_maps--;
		munmap(t_maps[n_maps].base, t_maps[n_maps].len);
	}
	while (n_fds)
		close(t_fds[--n_fds]);
	while (n_mdevs)
		moex_close(t_mdevs[--n_mdevs]);
	if (t_param_dirty) {
		t_param_dirty = false;
		write_file("/sys/module/moex/parameters/max_pinned_mb", "0");
	}
}

void cleanup_forget(void)
{
	n_fds = 0;
	n_maps = 0;
	n_pids = 0;
	n_mdevs = 0;
	t_param_dirty = false;
}

/* ---- memory ---------------------------------------------------------------- */

void *xmap(size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = mmap(NULL, len, prot, flags, fd, off);

	if (p == MAP_FAILED)
		return NULL;
	if (n_maps < MAX_TRACK) {
		t_maps[n_maps].base = p;
		t_maps[n_maps].len = len;
		n_maps++;
	}
	return p;
}

void xunmap(void *p)
{
	int i;

	for (i = n_maps - 1; i >= 0; i--) {
		char *b = t_maps[i].base;

		if ((char *)p >= b && (char *)p < b + t_maps[i].len) {
			munmap(b, t_maps[i].len);
			t_maps[i] = t_maps[--n_maps];
			return;
		}
	}
}

static void *anon(size_t len)
{
	return xmap(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
}

void *buf_4k(size_t len)
{
	void *p = anon(len);

	if (!p)
		return NULL;
	madvise(p, len, MADV_NOHUGEPAGE);
	memset(p, 0x4b, len);
	return p;
}

void *buf_thp(size_t len)
{
	char *p = anon(len + 4 * MIB);
	uintptr_t a;

	if (!p)
		return NULL;
	a = ((uintptr_t)p + HPAGE - 1) & ~(uintptr_t)(HPAGE - 1);
	madvise((void *)a, len, MADV_HUGEPAGE);
	memset((void *)a, 0x48, len);
	return (void *)a;
}

void *buf_any(size_t len)
{
	void *p = anon(len);

	if (p)
		memset(p, 0x41, len);
	return p;
}

void *buf_hole(size_t len)
{
	void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);

	if (p == MAP_FAILED)
		return NULL;
	munmap(p, len);
	return p;
}

/* ---- random ---------------------------------------------------------------- */

uint64_t rnd_r(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

uint64_t rnd(void)
{
	return rnd_r(&g_rng);
}

uint64_t rnd_range(uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	return lo + rnd() % (hi - lo + 1);
}

void fill_random_r(void *p, size_t len, uint64_t *state)
{
	unsigned char *c = p;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t v = rnd_r(state);

		memcpy(c + i, &v, 8);
	}
	for (; i < len; i++)
		c[i] = (unsigned char)rnd_r(state);
}

void fill_random(void *p, size_t len)
{
	fill_random_r(p, len, &g_rng);
}

/* ---- files and processes --------------------------------------------------- */

long long vmpin_kb(pid_t pid)
{
	char path[64], buf[4096], *s;
	long long kb;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	if (read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	s = strstr(buf, "\nVmPin:");
	if (!s || sscanf(s + 7, "%lld", &kb) != 1)
		return -1;
	return kb;
}

int vmpin_expect_at(const char *file, int line, long long want,
		    const char *when)
{
	long long kb = vmpin_kb(0);

	if (kb != want)
		return fail_at(file, line, "VmPin %lld kB%s, expected %lld", kb,
			       when, want);
	return T_PASS;
}

/* The pagemap entries of @n pages from @p; 0 or -1 with errno. */
static int pagemap_read(const void *p, size_t n, uint64_t *pm)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	off_t off = (off_t)((uintptr_t)p / g_page * sizeof(*pm));
	ssize_t got;

	if (fd < 0)
		return -1;
	got = pread(fd, pm, n * sizeof(*pm), off);
	close(fd);
	if (got != (ssize_t)(n * sizeof(*pm))) {
		errno = got < 0 ? errno : EIO;
		return -1;
	}
	return 0;
}

#define PM_PRESENT	(1ULL << 63)
#define PM_PFN		((1ULL << 55) - 1)

long pinned_pages(const void *p, size_t len)
{
	size_t n = len / g_page, i;
	uint64_t *pm;
	long pinned = 0, present = 0, with_pfn = 0;
	pid_t pid;
	int status;

	/* the parent's entries, then the child's, in a shared mapping */
	pm = mmap(NULL, 2 * n * sizeof(*pm), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (pm == MAP_FAILED)
		return -1;
	if (pagemap_read(p, n, pm))
		goto err;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		goto err;
	if (!pid)
		_exit(pagemap_read(p, n, pm + n) ? 1 : 0);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		errno = ECHILD;
		goto err;
	}
	for (i = 0; i < n; i++) {
		if (!(pm[i] & PM_PRESENT))
			continue;
		present++;
		with_pfn += (pm[i] & PM_PFN) != 0;
		if ((pm[n + i] & (PM_PRESENT | PM_PFN)) !=
		    (pm[i] & (PM_PRESENT | PM_PFN)))
			pinned++;
	}
	munmap(pm, 2 * n * sizeof(*pm));
	if (with_pfn != present) {
		errno = EPERM;	/* PFNs hidden: not root */
		return -1;
	}
	return pinned;
err:
	munmap(pm, 2 * n * sizeof(*pm));
	return -1;
}

int pinned_expect_at(const char *file, int line, const void *p, size_t len,
		     long want, const char *when)
{
	long n = pinned_pages(p, len);

	if (n < 0)
		return fail_at(file, line, "pinned_pages: %s", strerror(errno));
	if (n != want)
		return fail_at(file, line, "%ld of %zu pages pinned%s, expected %ld",
			       n, len / g_page, when, want);
	return T_PASS;
}

char proc_state(pid_t pid)
{
	char path[64], buf[512], *s;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_file(path, buf, sizeof(buf)) < 0)
		return '?';
	s = strrchr(buf, ')');
	return s && s[1] == ' ' ? s[2] : '?';
}

/* Wait for @pid up to @timeout_s (then SIGKILL it); its wait status. */
pid_t fork_closing(const int fds[2])
{
	pid_t pid;
	int err;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		err = errno;
		close(fds[0]);
		close(fds[1]);
		errno = err;
	}
	return pid;
}

static int wait_child(pid_t pid, int timeout_s, bool *timed_out)
{
	uint64_t end = now_ms() + (uint64_t)timeout_s * 1000;
	int status = 0;
	pid_t r;

	*timed_out = false;
	for (;;) {
		r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_ms() > end && !*timed_out) {
			*timed_out = true;
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		sleep_ms(5);
	}
	untrack_pid(pid);
	return status;
}

int child_run(int (*fn)(void *arg), void *arg, int timeout_s)
{
	char buf[sizeof(g_msg)];
	int pfd[2], status, rc;
	size_t got = 0;
	bool to;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC))
		return FAIL("pipe: %s", strerror(errno));
	pid = fork_closing(pfd);
	if (pid < 0)
		return FAIL("fork: %s", strerror(errno));
	if (!pid) {
		close(pfd[0]);
		cleanup_forget();
		g_msg[0] = '\0';
		rc = fn(arg);
		if (write(pfd[1], g_msg, strlen(g_msg)) < 0)
			rc = T_FAIL;
		_exit(rc);
	}
	track_pid(pid);
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, timeout_s * 1000) <= 0)
			break;
		n = read(pfd[0], buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += n;
		if (got == sizeof(buf) - 1)
			break;
	}
	buf[got] = '\0';
	close(pfd[0]);
	status = wait_child(pid, timeout_s, &to);
	if (to)
		return FAIL("child timed out after %d s", timeout_s);
	if (WIFSIGNALED(status))
		return FAIL("child killed by signal %d%s%s", WTERMSIG(status),
			    got ? ": " : "", buf);
	rc = WIFEXITED(status) ? WEXITSTATUS(status) : T_FAIL;
	if (rc == T_PASS)
		return T_PASS;
	if (rc == T_SKIP)
		return skip("%s", buf);
	snprintf(g_msg, sizeof(g_msg), "in child: %.2000s",
		 got ? buf : "failed");
	return T_FAIL;
}

int run_prog(char *const argv[], int timeout_s, bool echo)
{
	char line[1024];
	size_t len = 0;
	int pfd[2], status;
	uint64_t end = now_ms() + (uint64_t)timeout_s * 1000;
	bool to;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	pid = fork_closing(pfd);
	if (pid < 0)
		return -1;
	if (!pid) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execvp(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	track_pid(pid);
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		char c;
		int left = (int)(end - now_ms());

		if (now_ms() >= end || poll(&p, 1, left > 0 ? left : 0) <= 0)
			break;
		if (read(pfd[0], &c, 1) != 1)
			break;
		if (c != '\n' && len < sizeof(line) - 1) {
			line[len++] = c;
			continue;
		}
		line[len] = '\0';
		if (echo)
			note("%s", line);
		len = 0;
	}
	if (len && echo) {
		line[len] = '\0';
		note("%s", line);
	}
	close(pfd[0]);
	status = wait_child(pid, 1, &to);
	if (to || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* ---- the kernel log ----------------------------------------------------------- */

/* What tools/vm/run fails a run on, and the edu engine's errors. */
static const char *const klog_bad[] = {
	"BUG:", "WARNING:", "Oops", "general protection fault", "KASAN",
	"kmemleak", "possible circular locking", "possible recursive locking",
	"inconsistent lock state", "suspicious RCU usage", "Call Trace:",
	"UBSAN:", "refcount_t:", "list_add corruption", "list_del corruption",
	"DMA completion interrupt lost", "DMA did not finish",
	"DMA engine busy",
};

int klog_bad_lines(int after, char *first, size_t size)
{
	int len = klogctl(10, NULL, 0);	/* SYSLOG_ACTION_SIZE_BUFFER */
	char *buf, *line, *save = NULL;
	int n, count = 0;
	size_t i;

	if (size)
		first[0] = '\0';
	if (len <= 0)
		return -1;
	buf = malloc((size_t)len + 1);
	if (!buf)
		return -1;
	n = klogctl(3, buf, len);	/* SYSLOG_ACTION_READ_ALL */
	if (n < 0) {
		free(buf);
		return -1;
	}
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, "initialized") ||
		    strstr(line, "scanning thread started"))
			continue;
		for (i = 0; i < sizeof(klog_bad) / sizeof(klog_bad[0]); i++) {
			if (strstr(line, klog_bad[i])) {
				if (count++ == after && size)
					snprintf(first, size, "%s", line);
				break;
			}
		}
	}
	free(buf);
	return count;
}

/* ---- the module and its devices --------------------------------------------- */

void discover_devices(void)
{
	int i;

	g_edu = -1;
	for (i = 0; i < 64; i++) {
		if (dev_is_edu(i)) {
			g_edu = i;
			break;
		}
	}
}

bool edu_pci_present(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	bool found = false;

	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		char path[512], v[32], dv[32];

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor",
			 e->d_name);
		if (read_file(path, v, sizeof(v)) < 0)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device",
			 e->d_name);
		if (read_file(path, dv, sizeof(dv)) < 0)
			continue;
		found = !strcmp(v, "0x1234\n") && !strcmp(dv, "0x11e8\n");
	}
	closedir(d);
	return found;
}

unsigned int edu_dma_bits(void)
{
	char v[32];

	if (read_file("/sys/module/moex/parameters/edu_dma_bits", v,
		      sizeof(v)) <= 0)
		return 0;
	return (unsigned int)strtoul(v, NULL, 10);
}

bool swiotlb_forced(void)
{
	char cmd[4096];

	return read_file("/proc/cmdline", cmd, sizeof(cmd)) > 0 &&
	       strstr(cmd, "swiotlb=force");
}

int dev_open(int dev)
{
	return track_fd(dev_open_raw(dev));
}

int dev_open_at(const char *file, int line, int dev, int *fd)
{
	*fd = dev_open(dev);
	if (*fd < 0)
		return fail_at(file, line, "open /dev/moex%d: %s", dev,
			       strerror(errno));
	return T_PASS;
}

struct moex_device *mdev_open(int dev)
{
	struct moex_device *md;
	char path[32];
	int ret;

	snprintf(path, sizeof(path), "/dev/moex%d", dev);
	ret = moex_open(path, &md);
	if (ret) {
		errno = -ret;
		return NULL;
	}
	if (n_mdevs < MAX_TRACK)
		t_mdevs[n_mdevs++] = md;
	return md;
}

int mdev_open_at(const char *file, int line, int dev, struct moex_device **md)
{
	*md = mdev_open(dev);
	if (!*md)
		return fail_at(file, line, "moex_open /dev/moex%d: %s", dev,
			       strerror(errno));
	return T_PASS;
}

void mdev_close(struct moex_device *md)
{
	int i;

	for (i = n_mdevs - 1; i >= 0; i--) {
		if (t_mdevs[i] == md) {
			t_mdevs[i] = t_mdevs[--n_mdevs];
			break;
		}
	}
	moex_close(md);
}

int mdev_fd(const struct moex_device *md)
{
	return moex_device_fd(md);
}

int set_max_pinned_mb(unsigned int mb)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%u", mb);
	t_param_dirty = true;
	return write_file("/sys/module/moex/parameters/max_pinned_mb", buf);
}

/* ---- stats -------------------------------------------------------------------- */


int stats_read_at(const char *file, int line, int dev, struct stats *s)
{
	char why[256];

	if (stats_read_raw(dev, s, why, sizeof(why)))
		return fail_at(file, line, "%s", why);
	return T_PASS;
}

long long stat_get(int dev, int id)
{
	char path[128];
	long long v;

	snprintf(path, sizeof(path), "/sys/class/moex/moex%d/stats/%s", dev,
		 stat_names[id]);
	return read_ll(path, &v) ? -1 : v;
}

int stats_expect_at(const char *file, int line, int dev,
		    const struct stats *before, const struct stats *delta,
		    int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	char why[1024];
	struct stats now;
	size_t n;
	int i;

	for (;;) {
		bool same = true;

		if (stats_read_raw(dev, &now, why, sizeof(why)))
			return fail_at(file, line, "%s", why);
		for (i = 0; i < NSTATS; i++)
			if (now.v[i] - before->v[i] != delta->v[i])
				same = false;
		if (same)
			return T_PASS;
		if (now_ms() >= end)
			break;
		sleep_ms(20);
	}
	n = (size_t)snprintf(why, sizeof(why), "moex%d stats%s:", dev,
			     timeout_ms ? " (after waiting)" : "");
	for (i = 0; i < NSTATS && n < sizeof(why); i++) {
		long long d = now.v[i] - before->v[i];

		if (d != delta->v[i])
			n += (size_t)snprintf(why + n, sizeof(why) - n,
					      " %s %+lld (expected %+lld, now %lld)",
					      stat_names[i], d, delta->v[i],
					      now.v[i]);
	}
	return fail_at(file, line, "%s", why);
}

/* ---- libmoex wrappers ------------------------------------------------------- */

int do_info(struct moex_device *md, struct moex_device_info *info)
{
	memset(info, 0, sizeof(*info));
	info->size = sizeof(*info);
	return -moex_query(md, info);
}

int do_nop(struct moex_device *md)
{
	return -moex_nop(md);
}

int do_pin(struct moex_device *md, const void *addr, uint64_t len,
	   uint32_t flags, uint32_t *handle)
{
	uint32_t h = 0;
	int err;

	if (len > SIZE_MAX)
		return EOVERFLOW;
	err = -moex_pin(md, (void *)addr, (size_t)len, flags, &h);
	if (!err && handle)
		*handle = h;
	return err;
}

int do_unpin(struct moex_device *md, uint32_t handle)
{
	return -moex_unpin(md, handle);
}

int do_rinfo(struct moex_device *md, uint32_t handle,
	     struct moex_region_desc *rd)
{
	memset(rd, 0, sizeof(*rd));
	rd->size = sizeof(*rd);
	return -moex_region_query(md, handle, rd);
}

int do_export_raw(struct moex_device *md, uint32_t handle, int *dmabuf_fd)
{
	int err = -moex_export(md, handle, dmabuf_fd);

	if (err)
		*dmabuf_fd = -1;
	return err;
}

int do_export(struct moex_device *md, uint32_t handle, int *dmabuf_fd)
{
	int err = do_export_raw(md, handle, dmabuf_fd);

	if (!err)
		track_fd(*dmabuf_fd);
	return err;
}

int do_copy(struct moex_device *md, uint32_t src, uint32_t dst,
	    uint64_t src_off, uint64_t dst_off, uint64_t len)
{
	return -moex_copy(md, dst, dst_off, src, src_off, len);
}

int info_pinned_at(const char *file, int line, struct moex_device *md,
		   long long want, const char *when)
{
	struct moex_device_info info;
	int err = do_info(md, &info);

	if (err)
		return fail_at(file, line, "moex_query: expected %s, got %s",
			       errname(0), errname(err));
	if ((long long)info.pinned_bytes != want)
		return fail_at(file, line, "INFO pinned_bytes %llu%s, expected %lld",
			       (unsigned long long)info.pinned_bytes, when, want);
	return T_PASS;
}

/* ---- raw ioctl wrappers ------------------------------------------------------ */

int xioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) ? errno : 0;
}

int raw_unpin(int fd, uint32_t handle)
{
	struct moex_region_unpin u = { .handle = handle };

	return xioctl(fd, MOEX_IOCTL_REGION_UNPIN, &u);
}

int raw_rinfo(int fd, uint32_t handle, struct moex_region_info *ri)
{
	memset(ri, 0, sizeof(*ri));
	ri->handle = handle;
	return xioctl(fd, MOEX_IOCTL_REGION_INFO, ri);
}

int raw_copy(int fd, uint32_t src, uint32_t dst, uint64_t src_off,
	     uint64_t dst_off, uint64_t len)
{
	struct moex_copy c = {
		.src_handle = src, .dst_handle = dst, .src_offset = src_off,
		.dst_offset = dst_off, .length = len,
	};

	return xioctl(fd, MOEX_IOCTL_COPY, &c);
}

int check_bytes_at(const char *file, int line, const char *what,
		   const void *got, const void *want, size_t len)
{
	const unsigned char *g = got, *w = want;
	size_t i;

	if (!memcmp(got, want, len))
		return T_PASS;
	for (i = 0; i < len && g[i] == w[i]; i++)
		;
	return fail_at(file, line,
		       "%s: byte %zu of %zu is 0x%02x, expected 0x%02x", what,
		       i, len, g[i], w[i]);
}

/* ---- the runner ---------------------------------------------------------------- */

static const struct test *const tables[] = {
	suite_load_tests, suite_basic_tests, suite_bad_tests,
	suite_region_tests, suite_dmabuf_tests, suite_copy_tests,
	suite_kill_tests, suite_end_tests,
};

struct leak_state {
	bool valid[64];
	long long v[64][3];
};

static const int leak_ids[3] = {
	ST_PINNED_BYTES, ST_PINNED_REGIONS, ST_OPEN_FILES
};

static void leak_snapshot(struct leak_state *ls)
{
	int d, i;

	memset(ls, 0, sizeof(*ls));
	if (!g_loaded)
		return;
	for (d = 0; d < 64; d++) {
		if (!dev_present(d))
			continue;
		ls->valid[d] = true;
		for (i = 0; i < 3; i++)
			ls->v[d][i] = stat_get(d, leak_ids[i]);
	}
}

/* After a test: nothing pinned or open that was not before. */
static bool leak_check(const struct leak_state *ls, char *why, size_t n)
{
	uint64_t end = now_ms() + 30000;
	int d, i;

	if (!g_loaded)
		return true;
	for (;;) {
		bool same = true;
		size_t off = 0;

		why[0] = '\0';
		for (d = 0; d < 64; d++) {
			if (!ls->valid[d] || !dev_present(d))
				continue;
			for (i = 0; i < 3; i++) {
				long long v = stat_get(d, leak_ids[i]);

				if (v == ls->v[d][i])
					continue;
				same = false;
				if (off < n)
					off += (size_t)snprintf(why + off,
						n - off, " moex%d %s %lld (was %lld)",
						d, stat_names[leak_ids[i]], v,
						ls->v[d][i]);
			}
		}
		if (same)
			return true;
		if (now_ms() > end)
			return false;
		sleep_ms(50);
	}
}

static bool name_selected(const char *name, const char *filter)
{
	char buf[512], *tok, *save = NULL;

	if (!filter)
		return true;
	snprintf(buf, sizeof(buf), "%s", filter);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		if (strstr(name, tok))
			return true;
	return false;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: moex-vm-suite [--module PATH] [--module-params P]\n"
		"                     [--moexctl PATH] [--seed N]\n"
		"                     [--filter A,B,...] [--list]\n");
}

int main(int argc, char **argv)
{
	static char moexctl_buf[4096];
	unsigned int passed = 0, failed = 0, skipped = 0;
	const char *filter = NULL;
	uint64_t seed = 0;
	bool list = false;
	struct utsname un;
	size_t g, i;
	int a;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--module") && a + 1 < argc) {
			g_module_path = argv[++a];
		} else if (!strcmp(argv[a], "--module-params") && a + 1 < argc) {
			g_module_params = argv[++a];
		} else if (!strcmp(argv[a], "--moexctl") && a + 1 < argc) {
			g_moexctl = argv[++a];
		} else if (!strcmp(argv[a], "--seed") && a + 1 < argc) {
			seed = strtoull(argv[++a], NULL, 0);
		} else if (!strcmp(argv[a], "--filter") && a + 1 < argc) {
			filter = argv[++a];
		} else if (!strcmp(argv[a], "--list")) {
			list = true;
		} else if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (list) {
		for (g = 0; g < sizeof(tables) / sizeof(tables[0]); g++)
			for (i = 0; tables[g][i].name; i++)
				printf("%s\n", tables[g][i].name);
		return 0;
	}
	if (!g_moexctl) {
		ssize_t n = readlink("/proc/self/exe", moexctl_buf,
				     sizeof(moexctl_buf) - 16);
		char *slash;

		if (n > 0) {
			moexctl_buf[n] = '\0';
			slash = strrchr(moexctl_buf, '/');
			if (slash) {
				strcpy(slash + 1, "moexctl");
				g_moexctl = moexctl_buf;
			}
		}
		if (!g_moexctl)
			g_moexctl = "/moex/bin/moexctl";
	}
	if (!seed)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	g_rng = seed ? seed : 1;
	g_page = (size_t)sysconf(_SC_PAGESIZE);
	g_edu_pci = edu_pci_present();
	if (!uname(&un))
		note("moex-vm-suite on %s %s, seed %llu, edu PCI device %s",
		     un.sysname, un.release, (unsigned long long)seed,
		     g_edu_pci ? "present" : "absent");
	if (geteuid() != 0)
		note("not root: most tests will fail");

	for (g = 0; g < sizeof(tables) / sizeof(tables[0]); g++) {
		for (i = 0; tables[g][i].name; i++) {
			const struct test *t = &tables[g][i];
			struct leak_state ls;
			bool was_loaded = g_loaded;
			char why[1024];
			int rc;

			if (!(t->flags & TF_ALWAYS) &&
			    !name_selected(t->name, filter))
				continue;
			g_msg[0] = '\0';
			if ((t->flags & TF_MODULE) && !g_loaded) {
				rc = skip("moex is not loaded");
			} else {
				int klog0 = klog_bad_lines(0, NULL, 0), klog1;

				leak_snapshot(&ls);
				rc = t->fn(t);
				cleanup_all();
				if (!(t->flags & TF_NOLEAK) && was_loaded &&
				    g_loaded && !leak_check(&ls, why, sizeof(why))) {
					if (rc == T_FAIL)
						note("%s also left behind:%s",
						     t->name, why);
					else
						rc = FAIL("left behind after cleanup:%s",
							  why);
				}
				/* whatever the kernel complained about meanwhile */
				klog1 = klog_bad_lines(klog0, why, sizeof(why));
				if (klog0 >= 0 && klog1 > klog0) {
					if (rc == T_FAIL)
						note("%s also made the kernel log: %s",
						     t->name, why);
					else
						rc = FAIL("the kernel logged %d report line(s), the first: %.300s",
							  klog1 - klog0, why);
				}
			}
			switch (rc) {
			case T_PASS:
				passed++;
				printf("ok %s\n", t->name);
				break;
			case T_SKIP:
				skipped++;
				printf("SKIP %s: %s\n", t->name, g_msg);
				break;
			default:
				failed++;
				printf("FAIL %s: %s\n", t->name,
				       g_msg[0] ? g_msg : "failed");
				break;
			}
			fflush(stdout);
		}
	}
	printf("vm: %u passed, %u failed, %u skipped\n", passed, failed,
	       skipped);
	return failed ? 1 : 0;
}
