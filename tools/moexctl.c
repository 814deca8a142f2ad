// SPDX-License-Identifier: GPL-2.0
/*
 * moexctl - look at and exercise moex devices.
 *
 *   moexctl [--device PATH] info
 *   moexctl [--device PATH] [--sysfs DIR] stats [--json]
 *   moexctl [--device PATH] [--sysfs DIR] stats --watch [--interval SEC]
 *           [--count N]
 *   moexctl [--device PATH] pin --size SIZE [--hugepages] [--hold SECONDS]
 *   moexctl selftest [--size SIZE] [--seed N]
 *
 * One function per command (cmd_*), after the helpers they share. Exit
 * status: 0 success, 1 failure (one line on stderr saying why, with the fix
 * when libmoex knows one), 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-buf.h>

#include "moex.h"
/* The format of the expert-load files libmoex publishes (not its API). */
#include "../runtime/src/publish.h"

#define EXIT_USAGE	2
#define KiB		1024.0
#define GiB		(1024.0 * 1024.0 * 1024.0)

static const char usage_text[] =
"usage: moexctl [--device PATH] COMMAND [OPTIONS]\n"
"\n"
"Commands:\n"
"  info                 describe the device (ABI, features, engine, limits)\n"
"  stats [--json]       show the device's counters from sysfs\n"
"  stats --watch [--interval SEC] [--count N]\n"
"                       redraw the counters every SEC seconds (default 1)\n"
"                       with their rates per second, and the per-expert\n"
"                       load of running models; N samples (default: until\n"
"                       interrupted)\n"
"  pin --size SIZE [--hugepages] [--hold SECONDS]\n"
"                       allocate SIZE bytes, pin them on the device, fill\n"
"                       them, show the region, hold it, unpin it\n"
"  selftest [--size SIZE] [--seed N]\n"
"                       pin, copy, export, queue (NOPs and a COPY round trip,\n"
"                       io_uring or sync) and unpin on every /dev/moexN and\n"
"                       measure pin, unpin (SIZE, default 256M) and copy speed\n"
"\n"
"Options:\n"
"  --device PATH        the device (default " MOEX_DEFAULT_DEVICE ")\n"
"  --sysfs DIR          read stats under DIR instead of /sys\n"
"  --help               this text\n"
"\n"
"SIZE: bytes with an optional k, M, G, T suffix (4096, 4k, 2M, 1GiB).\n"
"MOEX_SYSFS_ROOT (default /sys) is where stats are read from (--sysfs wins).\n"
"MOEX_STATS_DIR (default " MOEX_LOAD_DEFAULT_DIR ") is where running models publish\n"
"their expert load for --watch.\n";

/* ---- helpers ------------------------------------------------------------ */

static void usage(FILE *f)
{
	fputs(usage_text, f);
}

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("moexctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see moexctl --help)\n", stderr);
	return EXIT_USAGE;
}

/* "<what>: <error>[: <hint>]" on one line; err is a negative errno. */
static void print_error(FILE *f, const char *what, int err)
{
	const char *hint = moex_error_hint(err);

	fprintf(f, "%s: %s%s%s\n", what, moex_strerror(err), *hint ? ": " : "",
		hint);
}

/* A failed command: one line on stderr, exit status 1. */
static int fail(const char *what, int err)
{
	fputs("moexctl: ", stderr);
	print_error(stderr, what, err);
	return EXIT_FAILURE;
}

/* 0, or the errno of a failed write to stdout (a full disk, /dev/full). */
static int stdout_error(void)
{
	errno = 0;
	if (!fflush(stdout) && !ferror(stdout))
		return 0;
	return errno ? errno : EIO;
}

/* Output that could not be written: one line on stderr, exit status 1. */
static int fail_stdout(int err)
{
	fprintf(stderr, "moexctl: stdout: %s\n", moex_strerror(err));
	return EXIT_FAILURE;
}

/* "/dev/moex3" -> "moex3", the name under /sys/class/moex. */
static const char *dev_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mib(uint64_t bytes)
{
	return (double)bytes / (1024.0 * 1024.0);
}

/* A rate as "12.34 GiB/s", with KiB/s too when it is tiny (edu). */
static const char *fmt_rate(char *buf, size_t len, uint64_t bytes, double secs)
{
	double rate = secs > 0 ? (double)bytes / secs : 0;

	if (rate >= 0.01 * GiB)
		snprintf(buf, len, "%.2f GiB/s", rate / GiB);
	else
		snprintf(buf, len, "%.6f GiB/s (%.1f KiB/s)", rate / GiB,
			 rate / KiB);
	return buf;
}

/* xorshift64*: reproducible test data from a printed seed. */
static uint64_t rnd(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* [0, n) for n > 0. */
static uint64_t rnd_below(uint64_t *state, uint64_t n)
{
	return rnd(state) % n;
}

static void fill_random(void *buf, size_t len, uint64_t *state)
{
	unsigned char *p = buf;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t v = rnd(state);

		memcpy(p + i, &v, 8);
	}
	for (; i < len; i++)
		p[i] = (unsigned char)rnd(state);
}

/* The pin command's pattern: each 64-bit word holds its offset, mixed. */
static uint64_t pattern_word(size_t off)
{
	return (uint64_t)off * 0x9E3779B97F4A7C15ULL ^ 0x6d6f6578ULL;
}

static void fill_pattern(void *buf, size_t len)
{
	uint64_t *p = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		p[i] = pattern_word(i * 8);
}

static bool check_pattern(const void *buf, size_t len)
{
	const uint64_t *p = buf;
	size_t i;

	for (i = 0; i < len / 8; i++)
		if (p[i] != pattern_word(i * 8))
			return false;
	return true;
}

static int parse_size_arg(const char *opt, const char *arg, uint64_t *out)
{
	if (moex_parse_size(arg, out) || !*out)
		return usage_error("%s: bad size '%s'", opt, arg);
	if (*out > SIZE_MAX)
		return usage_error("%s: size '%s' too large", opt, arg);
	return 0;
}

static const char *feature_names(uint64_t f, char *buf, size_t len)
{
	static const struct {
		uint64_t bit;
		const char *name;
	} feats[] = {
		{ MOEX_FEAT_PIN, "pin" },
		{ MOEX_FEAT_PIN_READONLY, "pin_readonly" },
		{ MOEX_FEAT_DMABUF, "dmabuf" },
		{ MOEX_FEAT_COPY, "copy" },
		{ MOEX_FEAT_DMA_MAPPED, "dma_mapped" },
		{ MOEX_FEAT_URING_CMD, "uring_cmd" },
		{ MOEX_FEAT_COPY_FIXED, "copy_fixed" },
	};
	size_t i, used = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(feats) / sizeof(feats[0]); i++) {
		if (!(f & feats[i].bit))
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 used ? " " : "", feats[i].name);
		if (used >= len)
			break;
	}
	return buf;
}

/* ---- moexctl info ------------------------------------------------------- */

static int cmd_info(const char *device)
{
	struct moex_device_info info = { .size = sizeof(info) };
	struct moex_device *dev;
	char feats[128];
	int ret;

	ret = moex_open(device, &dev);
	if (ret)
		return fail(device, ret);
	ret = moex_query(dev, &info);
	moex_close(dev);
	if (ret)
		return fail(device, ret);

	printf("device:           %s\n", device);
	printf("abi_version:      %" PRIu32 "\n", info.abi_version);
	printf("features:         0x%" PRIx64 " (%s)\n", info.features,
	       feature_names(info.features, feats, sizeof(feats)));
	printf("engine:           %s (id %" PRIu32 ")\n", info.engine_name,
	       info.engine);
	printf("dma_bits:         %" PRIu32 "\n", info.dma_bits);
	if (info.max_pinned_bytes)
		printf("max_pinned_bytes: %" PRIu64 " (%.0f MiB)\n",
		       info.max_pinned_bytes, mib(info.max_pinned_bytes));
	else
		printf("max_pinned_bytes: 0 (no module-wide cap)\n");
	printf("pinned_bytes:     %" PRIu64 "\n", info.pinned_bytes);
	return 0;
}

/* ---- moexctl stats ------------------------------------------------------ */

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/*
 * The counter file (moex_stats_name()) that the stats directory of device
 * name lacks, or NULL where there is no such directory (or no file is
 * missing now).
 */
static const char *missing_counter(const char *name)
{
	const char *root = secure_getenv("MOEX_SYSFS_ROOT");
	const char *missing = NULL;
	char path[4096];
	unsigned int i;
	int dirfd;

	/* where moex_stats_read() reads (libmoex, stats.c) */
	if ((size_t)snprintf(path, sizeof(path), "%s/class/moex/%s/stats",
			     root && *root ? root : "/sys", name) >= sizeof(path))
		return NULL;
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return NULL;
	for (i = 0; moex_stats_name(i) && !missing; i++)
		if (faccessat(dirfd, moex_stats_name(i), F_OK, 0) &&
		    errno == ENOENT)
			missing = moex_stats_name(i);
	close(dirfd);
	return missing;
}

/*
 * A failed read of the counters of device name. ENOENT is the module's
 * absence (the hint says to load it), except where the device's stats
 * directory is there without a counter file: a driver older than this
 * moexctl's libmoex.
 */
static int fail_stats(const char *name, int err)
{
	const char *missing = err == -ENOENT ? missing_counter(name) : NULL;
	char what[128];

	snprintf(what, sizeof(what), "stats of %s", name);
	if (!missing)
		return fail(what, err);
	fprintf(stderr, "moexctl: %s: %s: the driver has no counter file %s (an older moex.ko than this moexctl): install moex.ko and moexctl from the same release\n",
		what, moex_strerror(err), missing);
	return EXIT_FAILURE;
}

static int cmd_stats(const char *device, bool json)
{
	struct moex_stats st = { .size = sizeof(st) };
	const char *name = dev_name(device);
	unsigned int i;
	int ret;

	ret = moex_stats_read(name, &st);
	if (ret)
		return fail_stats(name, ret);

	if (json) {
		printf("{\n  \"device\": ");
		json_string(name);
		for (i = 0; moex_stats_name(i); i++) {
			printf(",\n  ");
			json_string(moex_stats_name(i));
			printf(": %" PRIu64, moex_stats_get(&st, i));
		}
		printf("\n}\n");
	} else {
		printf("%-16s %s\n", "device", name);
		for (i = 0; moex_stats_name(i); i++)
			printf("%-16s %" PRIu64 "\n", moex_stats_name(i),
			       moex_stats_get(&st, i));
	}
	ret = stdout_error();
	return ret ? fail_stdout(ret) : 0;
}

/* ---- moexctl stats --watch --------------------------------------------- */

static volatile sig_atomic_t stop_watch;

static void on_stop_watch(int sig)
{
	(void)sig;
	stop_watch = 1;
}

/* bytes as "512.0 MiB" (binary units, one decimal). */
static const char *fmt_bytes(char *buf, size_t len, double bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB",
					     "PiB", "EiB" };
	double v = bytes < 0 ? -bytes : bytes;
	unsigned int u = 0;

	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%s%.0f B", bytes < 0 ? "-" : "", v);
	else
		snprintf(buf, len, "%s%.1f %s", bytes < 0 ? "-" : "", v,
			 units[u]);
	return buf;
}

static bool is_bytes_counter(const char *name)
{
	size_t n = strlen(name);

	return n > 6 && !strcmp(name + n - 6, "_bytes");
}

/*
 * One published expert-load file, mapped read-only. The shape is kept as
 * it was checked when the file was mapped: what the mapping says later is
 * not trusted (any local user can write such a file), and the file's size
 * is checked again at every sample, before the counters are read. Its
 * owner can still shrink it while they are read: the SIGBUS that follows
 * ends that file's section (load_show_guarded()), not moexctl.
 */
struct load_file {
	char name[128];
	const struct moex_load_header *hdr;
	size_t len;
	int fd;
	uint32_t pid, first_layer, layers, experts;
	bool locked;		/* version 3: its publisher holds a lock */
	uint64_t *prev_tokens;	/* [layers]: tokens at the previous sample */
	bool rated;		/* prev_tokens hold a sample: rates can be given */
	bool seen;		/* found again in this sample */
};

struct watch {
	const char *device;
	const char *load_dir;	/* NULL: publishing is off */
	double interval;
	struct moex_stats prev;
	double prev_t;
	unsigned long sample;
	struct load_file *files;
	size_t nfiles;
};

static uint64_t load_word(const struct load_file *f, size_t i)
{
	const uint64_t *w = (const uint64_t *)((const char *)f->hdr +
					       MOEX_LOAD_HDR_SIZE);

	return __atomic_load_n(&w[i], __ATOMIC_RELAXED);
}

static void load_unmap(struct load_file *f)
{
	munmap((void *)f->hdr, f->len);
	close(f->fd);
	free(f->prev_tokens);
	memset(f, 0, sizeof(*f));
}

/*
 * Whether the process that published a load file (fd, its pid) is alive.
 * The publisher holds flock(LOCK_EX) on the file while the model is open
 * and the kernel drops it when the process dies: a file whose shared lock
 * can be had is a dead process's, even where its pid is alive (given to
 * another process since). The pid is checked too: a child that the
 * publisher forked shares its lock after it died. A file of version 2
 * (libmoex 0.4) was published without the lock: only its pid tells.
 */
static bool publisher_alive(int fd, uint32_t pid, bool locked)
{
	if (!pid || pid > INT32_MAX ||
	    (kill((pid_t)pid, 0) && errno != EPERM))
		return false;
	/* taken, it stays until fd is closed: the file is dropped then */
	return !locked ||
	       (flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK);
}

/* Map dir/name when it is a valid load file of a live process. */
static bool load_map(const char *dir, const char *name, struct load_file *f)
{
	struct moex_load_header h;
	char path[4096];
	struct stat st;
	uint64_t need;
	void *map;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path))
		return false;
	/* O_NONBLOCK: a FIFO by that name must not block the open */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < MOEX_LOAD_HDR_SIZE ||
	    pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		goto bad;
	if (memcmp(h.magic, MOEX_LOAD_MAGIC, sizeof(h.magic)) ||
	    (h.version != MOEX_LOAD_VERSION &&
	     h.version != MOEX_LOAD_VERSION_UNLOCKED) ||
	    h.header_size != MOEX_LOAD_HDR_SIZE || !h.layers ||
	    h.layers > MOEX_LOAD_MAX_LAYERS || !h.experts ||
	    h.experts > MOEX_LOAD_MAX_EXPERTS ||
	    !publisher_alive(fd, h.pid, h.version == MOEX_LOAD_VERSION))
		goto bad;
	need = MOEX_LOAD_HDR_SIZE +
	       (uint64_t)h.layers * MOEX_LOAD_SLOT_WORDS(h.experts) * 8;
	if ((uint64_t)st.st_size < need)
		goto bad;
	map = mmap(NULL, (size_t)need, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		goto bad;
	memset(f, 0, sizeof(*f));
	f->hdr = map;
	f->len = (size_t)need;
	f->fd = fd;
	f->pid = h.pid;
	f->locked = h.version == MOEX_LOAD_VERSION;
	f->first_layer = h.first_layer;
	f->layers = h.layers;
	f->experts = h.experts;
	if (strlen(name) >= sizeof(f->name))
		goto bad_unmap;
	memcpy(f->name, name, strlen(name) + 1);
	f->prev_tokens = calloc(h.layers, sizeof(*f->prev_tokens));
	if (!f->prev_tokens) {
		load_unmap(f);
		return false;
	}
	return true;
bad_unmap:
	munmap(map, (size_t)need);
	close(fd);
	return false;
bad:
	close(fd);
	return false;
}

static int cmp_load_file(const void *a, const void *b)
{
	return strcmp(((const struct load_file *)a)->name,
		      ((const struct load_file *)b)->name);
}

/*
 * The load files now in the directory: those already mapped are kept
 * (with their previous sample), new ones mapped, gone or dead ones
 * dropped.
 */
static void load_scan(struct watch *w)
{
	struct dirent *de;
	size_t i, n;
	DIR *d;

	for (i = 0; i < w->nfiles; i++)
		w->files[i].seen = false;
	d = w->load_dir ? opendir(w->load_dir) : NULL;
	while (d && (de = readdir(d))) {
		size_t len = strlen(de->d_name), pl = strlen(MOEX_LOAD_PREFIX),
		       sl = strlen(MOEX_LOAD_SUFFIX);
		struct load_file *grown;

		if (len <= pl + sl || len >= sizeof(w->files[0].name) ||
		    strncmp(de->d_name, MOEX_LOAD_PREFIX, pl) ||
		    strcmp(de->d_name + len - sl, MOEX_LOAD_SUFFIX))
			continue;
		for (i = 0; i < w->nfiles; i++)
			if (!strcmp(w->files[i].name, de->d_name))
				break;
		if (i < w->nfiles) {
			struct stat st;
			struct load_file *f = &w->files[i];

			f->seen = publisher_alive(f->fd, f->pid, f->locked) &&
				  !fstat(f->fd, &st) &&
				  (uint64_t)st.st_size >= f->len;
			continue;
		}
		grown = realloc(w->files, (w->nfiles + 1) * sizeof(*grown));
		if (!grown)
			break;
		w->files = grown;
		if (load_map(w->load_dir, de->d_name, &w->files[w->nfiles])) {
			w->files[w->nfiles].seen = true;
			w->nfiles++;
		}
	}
	if (d)
		closedir(d);
	for (i = n = 0; i < w->nfiles; i++) {
		if (w->files[i].seen)
			w->files[n++] = w->files[i];
		else
			load_unmap(&w->files[i]);
	}
	w->nfiles = n;
	if (n)
		qsort(w->files, n, sizeof(*w->files), cmp_load_file);
}

#define WATCH_TOP	4

/*
 * The length of the valid UTF-8 sequence at s, 1 to 4, or 0 where none
 * starts: a continuation byte, a lead byte that no sequence has (C0, C1,
 * F5 to FF), one cut short, an overlong form, a surrogate (U+D800 to
 * U+DFFF) or a code point above U+10FFFF.
 */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	uint32_t cp;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)	/* the NUL at the end too */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * A string of a load file's owner (its model name, the file's name), made
 * fit for a terminal: C0, DEL, and C1 (U+0080 to U+009F, UTF-8 C2 80 to
 * C2 9F: xterm takes U+009B for CSI) become '?', a '?' per byte, and so
 * does every byte that is not part of a valid UTF-8 sequence (a raw 0x9B
 * is CSI to a terminal in an 8-bit mode). Valid UTF-8 is kept.
 */
static void no_escapes(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t k = 0, n;

	while (p[k]) {
		n = utf8_len(p + k);
		if (!n) {
			p[k++] = '?';
			continue;
		}
		if (p[k] < 0x20 || p[k] == 0x7f ||
		    (p[k] == 0xc2 && p[k + 1] <= 0x9f))
			memset(p + k, '?', n);
		k += n;
	}
}

/*
 * One file's section: a line per layer with its busiest experts. The
 * tokens per second come from the file's previous sample: none on its
 * first, also when it appeared after the watch's first (its tokens were
 * not all run in the last interval).
 */
static void load_show(struct load_file *f, double dt)
{
	size_t stride = MOEX_LOAD_SLOT_WORDS(f->experts);
	char model[MOEX_LOAD_MODEL_LEN];
	uint32_t l, e, k;

	memcpy(model, f->hdr->model, sizeof(model));
	model[sizeof(model) - 1] = '\0';
	no_escapes(model);
	printf("\nexpert load of pid %" PRIu32 " (%s): layers %" PRIu32 "-%"
	       PRIu32 ", %" PRIu32 " experts, %" PRIu64 " layer runs\n",
	       f->pid, model, f->first_layer,
	       f->first_layer + f->layers - 1, f->experts,
	       __atomic_load_n(&f->hdr->updates, __ATOMIC_ACQUIRE));
	printf("%-6s %12s %12s %9s  %s\n", "layer", "tokens", "tokens/s",
	       "max/mean", "top experts: expert=tokens (share)");
	for (l = 0; l < f->layers; l++) {
		size_t base = (size_t)l * stride;
		uint64_t tokens = load_word(f, base + MOEX_LOAD_TOKENS);
		uint64_t hits = load_word(f, base + MOEX_LOAD_GPU_HITS);
		uint64_t misses = load_word(f, base + MOEX_LOAD_GPU_MISSES);
		uint64_t sum = 0, max = 0;
		uint32_t top[WATCH_TOP];
		uint64_t topv[WATCH_TOP];
		unsigned int ntop = 0;
		char rate[32] = "-", imb[32] = "-";

		for (e = 0; e < f->experts; e++) {
			uint64_t v = load_word(f, base + MOEX_LOAD_COUNTS + e);

			sum += v;
			if (v > max)
				max = v;
			if (!v)
				continue;
			/* into the top list, busiest first (ties: lower id) */
			if (ntop == WATCH_TOP && v <= topv[WATCH_TOP - 1])
				continue;
			k = ntop < WATCH_TOP ? ntop++ : WATCH_TOP - 1;
			for (; k > 0 && topv[k - 1] < v; k--) {
				top[k] = top[k - 1];
				topv[k] = topv[k - 1];
			}
			top[k] = e;
			topv[k] = v;
		}
		if (dt > 0 && f->rated)
			snprintf(rate, sizeof(rate), "%.1f",
				 (double)(tokens - f->prev_tokens[l]) / dt);
		f->prev_tokens[l] = tokens;
		if (sum)
			snprintf(imb, sizeof(imb), "%.2f",
				 (double)max * f->experts / (double)sum);
		printf("%-6" PRIu32 " %12" PRIu64 " %12s %9s ",
		       f->first_layer + l, tokens, rate, imb);
		if (!ntop)
			printf(" (no tokens yet)");
		for (k = 0; k < ntop; k++)
			printf(" %" PRIu32 "=%" PRIu64 " (%.1f%%)", top[k],
			       topv[k], 100.0 * (double)topv[k] / (double)sum);
		printf("\n");
		if (hits + misses) {
			char sb[32], fb[32];

			fmt_bytes(sb, sizeof(sb), (double)load_word(f, base +
					MOEX_LOAD_STREAM_BYTES));
			fmt_bytes(fb, sizeof(fb), (double)load_word(f, base +
					MOEX_LOAD_FILL_BYTES));
			printf("%-6s gpu cache: %.1f%% hits (%" PRIu64 " of %"
			       PRIu64 "), %s streamed from host memory, %s copied in\n",
			       "", 100.0 * (double)hits / (double)(hits + misses),
			       hits, hits + misses, sb, fb);
		}
	}
	f->rated = true;
}

/*
 * A load file cut short while load_show() reads its mapping raises SIGBUS
 * in load_show()'s own loads (or in the memcpy of the header): the handler
 * jumps back to load_show_guarded(). Any other SIGBUS kills as it would:
 * one sent with kill(2) (si_code <= 0), or a fault outside the mapping.
 * The signal fences keep the compiler from moving the mapping's loads out
 * of the armed stretch.
 */
static sigjmp_buf load_bus_jmp;
static volatile sig_atomic_t load_bus_armed;
static const char *volatile load_bus_lo, *volatile load_bus_hi;

static void on_load_bus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (load_bus_armed && si && si->si_code > 0 &&
	    (const char *)si->si_addr >= load_bus_lo &&
	    (const char *)si->si_addr < load_bus_hi) {
		load_bus_armed = 0;
		siglongjmp(load_bus_jmp, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* load_show(), or a note when the file shrank under it: false then. */
static bool load_show_guarded(struct load_file *f, double dt)
{
	if (sigsetjmp(load_bus_jmp, 1)) {
		char name[sizeof(f->name)];

		/* the file's name is its owner's choice, as the model's */
		memcpy(name, f->name, sizeof(name));
		no_escapes(name);
		printf("\nexpert load of pid %" PRIu32 ": %s shrank while it was read, left out\n",
		       f->pid, name);
		return false;
	}
	load_bus_lo = (const char *)f->hdr;
	load_bus_hi = (const char *)f->hdr + f->len;
	load_bus_armed = 1;
	atomic_signal_fence(memory_order_seq_cst);
	load_show(f, dt);
	atomic_signal_fence(memory_order_seq_cst);
	load_bus_armed = 0;
	return true;
}

/* One sample: read, then draw the frame (not flushed). 0 or -errno from
 * the read. */
static int watch_sample(struct watch *w, bool tty, unsigned long count)
{
	struct moex_stats st = { .size = sizeof(st) };
	const char *name = dev_name(w->device);
	double t = now(), dt;
	unsigned int i;
	char buf[48];
	int ret;

	ret = moex_stats_read(name, &st);
	if (ret)
		return ret;
	load_scan(w);
	w->sample++;
	dt = w->sample > 1 ? t - w->prev_t : 0;

	if (tty)
		fputs("\033[H\033[J", stdout);
	else if (w->sample > 1)
		putchar('\n');
	printf("moexctl stats --watch: %s, sample %lu", name, w->sample);
	if (count)
		printf(" of %lu", count);
	printf(", every %g s", w->interval);
	if (dt > 0)
		printf(", %.2f s since the last", dt);
	printf("\n%-16s %20s %-12s %14s  %s\n", "counter", "value", "",
	       "change", "per second");
	for (i = 0; moex_stats_name(i); i++) {
		uint64_t v = moex_stats_get(&st, i);
		bool bytes = is_bytes_counter(moex_stats_name(i));
		char human[32] = "", change[32] = "-", rate[48] = "-";

		if (bytes)
			snprintf(human, sizeof(human), "(%s)",
				 fmt_bytes(buf, sizeof(buf), (double)v));
		if (dt > 0) {
			uint64_t p = moex_stats_get(&w->prev, i);
			/* counters may also go down: pinned_bytes, open_files */
			double d = v >= p ? (double)(v - p) : -(double)(p - v);

			snprintf(change, sizeof(change), "%s%" PRIu64,
				 v >= p ? "+" : "-", v >= p ? v - p : p - v);
			if (bytes)
				snprintf(rate, sizeof(rate), "%s/s",
					 fmt_bytes(buf, sizeof(buf), d / dt));
			else
				snprintf(rate, sizeof(rate), "%.1f/s", d / dt);
		}
		printf("%-16s %20" PRIu64 " %-12s %14s  %s\n",
		       moex_stats_name(i), v, human, change, rate);
	}
	if (!w->load_dir)
		printf("\nexpert load: not published (MOEX_STATS_DIR is empty)\n");
	else if (!w->nfiles)
		printf("\nexpert load: no running model publishes it in %s\n",
		       w->load_dir);
	for (i = 0; i < w->nfiles; i++)
		load_show_guarded(&w->files[i], dt);
	w->prev = st;
	w->prev_t = t;
	return 0;
}

/* Sleep until t (CLOCK_MONOTONIC seconds) or a stop signal. */
static void sleep_until(double t)
{
	struct timespec ts;

	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (!stop_watch &&
	       clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int cmd_stats_watch(const char *device, double interval,
			   unsigned long count)
{
	struct watch w = { .device = device, .interval = interval,
			   .prev = { .size = sizeof(struct moex_stats) } };
	const char *dir = getenv("MOEX_STATS_DIR");
	bool tty = isatty(STDOUT_FILENO);
	struct sigaction sa;
	double start;
	size_t i;
	int ret = 0, out_err = 0;

	w.load_dir = !dir ? MOEX_LOAD_DEFAULT_DIR : *dir ? dir : NULL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_watch;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = NULL;
	sa.sa_sigaction = on_load_bus;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGBUS, &sa, NULL);
	start = now();
	while (!stop_watch) {
		ret = watch_sample(&w, tty, count);
		if (ret)
			break;
		/* no one sees the samples: stop */
		out_err = stdout_error();
		if (out_err || (count && w.sample >= count))
			break;
		/* on a fixed grid: a slow sample does not shift the next */
		sleep_until(start + (double)w.sample * interval);
	}
	for (i = 0; i < w.nfiles; i++)
		load_unmap(&w.files[i]);
	free(w.files);
	if (ret)
		return fail_stats(dev_name(device), ret);
	return out_err ? fail_stdout(out_err) : 0;
}

/* ---- moexctl pin -------------------------------------------------------- */

static volatile sig_atomic_t stop_hold;

static void on_stop(int sig)
{
	(void)sig;
	stop_hold = 1;
}

/* Sleep up to secs; SIGINT or SIGTERM end the hold early. */
static void hold(double secs)
{
	struct sigaction sa;
	struct timespec ts;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	while (!stop_hold && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int cmd_pin(const char *device, uint64_t size, bool hugepages,
		   double hold_secs)
{
	struct moex_region_desc desc = { .size = sizeof(desc) };
	size_t len = (size_t)size, ps = (size_t)sysconf(_SC_PAGESIZE);
	struct moex_device *dev;
	char what[160];
	uint32_t handle;
	void *mem;
	double t;
	int ret;

	/* one that rounds up past SIZE_MAX would pin "0 bytes" */
	if (len > SIZE_MAX - (ps - 1))
		return usage_error("--size: size '%" PRIu64 "' too large", size);
	len = (len + ps - 1) / ps * ps;
	snprintf(what, sizeof(what), "pin %zu bytes on %s", len, device);

	ret = moex_open(device, &dev);
	if (ret)
		return fail(device, ret);
	ret = moex_alloc_pinnable(len, hugepages, &mem);
	if (ret) {
		moex_close(dev);
		return fail(what, ret);
	}
	t = now();
	ret = moex_pin(dev, mem, len, 0, &handle);
	t = now() - t;
	if (ret)
		goto out;
	fill_pattern(mem, len);
	ret = moex_region_query(dev, handle, &desc);
	if (ret) {
		moex_unpin(dev, handle);
		goto out;
	}
	printf("pinned: handle %" PRIu32 ", %" PRIu64 " bytes (%.1f MiB, %s), "
	       "%" PRIu64 " pages, %" PRIu32 " sg segments, %" PRIu32
	       " dma segments, %.3f s\n", desc.handle, desc.length,
	       mib(desc.length), hugepages ? "huge pages" : "small pages",
	       desc.pages, desc.sg_segments, desc.dma_segments, t);
	fflush(stdout);
	if (hold_secs > 0) {
		printf("holding for %g s\n", hold_secs);
		fflush(stdout);
		hold(hold_secs);
	}
	if (!check_pattern(mem, len)) {
		moex_unpin(dev, handle);
		snprintf(what, sizeof(what), "pin on %s: pattern changed while pinned",
			 device);
		ret = -EIO;
		goto out;
	}
	ret = moex_unpin(dev, handle);
	if (!ret)
		printf("unpinned: handle %" PRIu32 "\n", handle);
out:
	moex_free_pinnable(mem, len);
	moex_close(dev);
	return ret ? fail(what, ret) : 0;
}

/* ---- moexctl selftest --------------------------------------------------- */

struct selftest {
	unsigned int passed;
	unsigned int failed;
	uint64_t rng;
};

/* One check's line: "selftest: moex0 copy ok (...)" or "... FAIL: why". */
static void st_report(struct selftest *st, const char *dev, const char *check,
		      bool ok, const char *fmt, ...)
{
	char detail[512] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
	}
	if (ok) {
		st->passed++;
		printf("selftest: %s %s ok%s%s%s\n", dev, check,
		       *detail ? " (" : "", detail, *detail ? ")" : "");
	} else {
		st->failed++;
		printf("selftest: %s %s FAIL: %s\n", dev, check, detail);
	}
	fflush(stdout);
}

/* A failed check from a libmoex error, with its hint. */
static void st_fail_err(struct selftest *st, const char *dev, const char *check,
			const char *what, int err)
{
	const char *hint = moex_error_hint(err);

	st_report(st, dev, check, false, "%s: %s%s%s", what, moex_strerror(err),
		  *hint ? ": " : "", hint);
}

/* One pinned region of a selftest, with what its bytes should be. */
struct st_region {
	void *mem;
	unsigned char *shadow;
	size_t len;
	uint32_t handle;
	bool pinned;
};

static int st_region_pin(struct moex_device *dev, struct st_region *r,
			 size_t len, bool huge, unsigned int flags,
			 uint64_t *rng)
{
	int ret;

	r->len = len;
	ret = moex_alloc_pinnable(len, huge, &r->mem);
	if (ret)
		return ret;
	r->shadow = malloc(len);
	if (!r->shadow)
		return -ENOMEM;
	/* Fill before pinning: a read-only pin must see these pages. */
	fill_random(r->mem, len, rng);
	memcpy(r->shadow, r->mem, len);
	ret = moex_pin(dev, r->mem, len, flags, &r->handle);
	r->pinned = !ret;
	return ret;
}

static int st_region_unpin(struct moex_device *dev, struct st_region *r)
{
	int ret = 0;

	if (r->pinned)
		ret = moex_unpin(dev, r->handle);
	r->pinned = false;
	return ret;
}

static void st_region_free(struct moex_device *dev, struct st_region *r)
{
	st_region_unpin(dev, r);
	if (r->mem)
		moex_free_pinnable(r->mem, r->len);
	free(r->shadow);
	memset(r, 0, sizeof(*r));
}

/* The first offset where mem and shadow differ in [off, off + len), or -1. */
static long long st_diff(const struct st_region *r, size_t off, size_t len)
{
	const unsigned char *m = r->mem;
	size_t i;

	if (!memcmp(m + off, r->shadow + off, len))
		return -1;
	for (i = off; i < off + len; i++)
		if (m[i] != r->shadow[i])
			return (long long)i;
	return -1;
}

/*
 * One copy through the engine, checked: the destination range and 64
 * bytes either side must match what the copy should have left.
 */
static int st_copy(struct moex_device *dev, struct st_region *dst,
		   size_t dst_off, const struct st_region *src, size_t src_off,
		   size_t len, char *why, size_t whylen)
{
	size_t lo, hi;
	long long bad;
	int ret;

	ret = moex_copy(dev, dst->handle, dst_off, src->handle, src_off, len);
	if (ret) {
		snprintf(why, whylen, "copy of %zu bytes from %zu to %zu: %s",
			 len, src_off, dst_off, moex_strerror(ret));
		return ret;
	}
	memmove(dst->shadow + dst_off, src->shadow + src_off, len);
	lo = dst_off > 64 ? dst_off - 64 : 0;
	hi = dst_off + len + 64 < dst->len ? dst_off + len + 64 : dst->len;
	bad = st_diff(dst, lo, hi - lo);
	if (bad >= 0) {
		snprintf(why, whylen,
			 "copy of %zu bytes from %zu to %zu: wrong byte at %lld",
			 len, src_off, dst_off, bad);
		return -EIO;
	}
	return 0;
}

/* Copy between a and b with random offsets and lengths; verify all. */
static void st_copies(struct selftest *st, const char *name,
		      struct moex_device *dev, struct st_region *a,
		      struct st_region *b, bool edu, const char *engine)
{
	/* edu moves ~20 KiB/s: a few small copies only. */
	unsigned int n = edu ? 5 : 48, i;
	size_t max_len = edu ? 3072 : 64 * 1024;
	uint64_t bytes = 0;
	char why[256], rate[64];
	double t = 0, t0;
	int ret = 0;

	for (i = 0; i < n && !ret; i++) {
		struct st_region *src = i % 2 ? b : a, *dst = i % 2 ? a : b;
		size_t len, src_off, dst_off;

		if (i == 0) {
			/* Unaligned at both ends and across page boundaries. */
			len = edu ? 3000 : 3 * 4096 + 77;
			src_off = 4096 - 1001;
			dst_off = 2 * 4096 - 123;
		} else {
			if (!edu && i % 8 == 7)
				max_len = 1024 * 1024;	/* a few big ones */
			len = 1 + rnd_below(&st->rng, max_len);
			src_off = rnd_below(&st->rng, src->len - len + 1);
			dst_off = rnd_below(&st->rng, dst->len - len + 1);
			max_len = edu ? 3072 : 64 * 1024;
		}
		t0 = now();
		ret = st_copy(dev, dst, dst_off, src, src_off, len, why,
			      sizeof(why));
		t += now() - t0;
		bytes += len;
	}
	if (!ret && (st_diff(a, 0, a->len) >= 0 || st_diff(b, 0, b->len) >= 0)) {
		snprintf(why, sizeof(why), "bytes outside the copied ranges changed");
		ret = -EIO;
	}
	if (ret) {
		st_report(st, name, "copy", false, "%s", why);
		return;
	}
	st_report(st, name, "copy", true,
		  "%u copies, %" PRIu64 " bytes, unaligned, across pages", n,
		  bytes);

	if (!edu) {
		/* Throughput: whole-region copies for at least 0.3 s. */
		unsigned int reps = 0;

		bytes = 0;
		t0 = now();
		do {
			ret = moex_copy(dev, b->handle, 0, a->handle, 0, a->len);
			bytes += a->len;
			reps++;
		} while (!ret && reps < 256 && now() - t0 < 0.3);
		t = now() - t0;
		memcpy(b->shadow, a->shadow, a->len);
		if (!ret && st_diff(b, 0, b->len) >= 0)
			ret = -EIO;
		if (ret) {
			st_fail_err(st, name, "copy-throughput",
				    "whole-region copy", ret);
			return;
		}
	}
	printf("selftest: %s copy %s (engine %s, %" PRIu64 " bytes)\n", name,
	       fmt_rate(rate, sizeof(rate), bytes, t), engine, bytes);
}

/* A READONLY region is a copy source and never a destination. */
static void st_readonly(struct selftest *st, const char *name,
			struct moex_device *dev, struct st_region *b)
{
	struct st_region ro = { 0 };
	char why[256];
	int ret;

	ret = st_region_pin(dev, &ro, 64 * 1024, false, MOEX_PIN_READONLY,
			    &st->rng);
	if (ret) {
		st_fail_err(st, name, "readonly", "pin read-only", ret);
		goto out;
	}
	ret = st_copy(dev, b, 4096 + 17, &ro, 4096 - 100, 2048, why,
		      sizeof(why));
	if (ret) {
		st_report(st, name, "readonly", false, "from read-only: %s", why);
		goto out;
	}
	ret = moex_copy(dev, ro.handle, 0, b->handle, 0, 64);
	if (ret != -EACCES) {
		st_report(st, name, "readonly", false,
			  "copy into a read-only region gave %d, not -EACCES",
			  ret);
		goto out;
	}
	st_report(st, name, "readonly", true, NULL);
out:
	st_region_free(dev, &ro);
}

/* Bracket CPU reads of a dma-buf mapping (DMA_BUF_IOCTL_SYNC): 0 or -errno. */
static int dmabuf_sync(int fd, bool start)
{
	struct dma_buf_sync sync = {
		.flags = DMA_BUF_SYNC_READ |
			 (start ? DMA_BUF_SYNC_START : DMA_BUF_SYNC_END),
	};
	int ret;

	do {
		ret = ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync);
	} while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : 0;
}

/* Export a as a dma-buf; its CPU mapping must show a's bytes and writes. */
static void st_dmabuf(struct selftest *st, const char *name,
		      struct moex_device *dev, struct st_region *a)
{
	struct moex_region_desc desc = { .size = sizeof(desc) };
	unsigned char *map = MAP_FAILED, *mem = a->mem;
	size_t offs[] = { 0, 4095, 4096, a->len / 2 + 3, a->len - 1 };
	size_t i;
	int fd = -1, ret;

	ret = moex_export(dev, a->handle, &fd);
	if (ret) {
		st_fail_err(st, name, "dmabuf", "export", ret);
		return;
	}
	ret = moex_region_query(dev, a->handle, &desc);
	if (ret || !(desc.flags & MOEX_REGION_EXPORTED)) {
		st_report(st, name, "dmabuf", false,
			  "region not marked exported (%s)", moex_strerror(ret));
		goto out;
	}
	map = mmap(NULL, a->len, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		st_fail_err(st, name, "dmabuf", "mmap of the dma-buf", -errno);
		goto out;
	}
	ret = dmabuf_sync(fd, true);
	if (ret) {
		st_fail_err(st, name, "dmabuf", "DMA_BUF_IOCTL_SYNC start", ret);
		goto out;
	}
	if (memcmp(map, mem, a->len)) {
		dmabuf_sync(fd, false);
		st_report(st, name, "dmabuf", false,
			  "dma-buf mapping differs from the region");
		goto out;
	}
	/* Same pages: a write through the region shows in the dma-buf. */
	for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		mem[offs[i]] = a->shadow[offs[i]] = (unsigned char)~mem[offs[i]];
		if (map[offs[i]] != mem[offs[i]]) {
			dmabuf_sync(fd, false);
			st_report(st, name, "dmabuf", false,
				  "write at %zu not seen through the dma-buf",
				  offs[i]);
			goto out;
		}
	}
	ret = dmabuf_sync(fd, false);
	if (ret) {
		st_fail_err(st, name, "dmabuf", "DMA_BUF_IOCTL_SYNC end", ret);
		goto out;
	}
	st_report(st, name, "dmabuf", true, "%zu bytes read back by mmap",
		  a->len);
out:
	if (map != MAP_FAILED)
		munmap(map, a->len);
	close(fd);
}

/* The queue's mode in words: "uring (...)" or "sync (why)". */
static const char *st_queue_mode(const struct moex_queue *q, char *buf,
				 size_t len)
{
	unsigned int flags = 0;
	int err = 0, mode;

	mode = moex_queue_mode(q, &flags, &err);
	if (mode == MOEX_QUEUE_MODE_URING) {
		snprintf(buf, len, "uring, setup flags %#x", flags);
	} else if (!err) {
		snprintf(buf, len, "sync, asked for");
	} else {
		const char *hint = moex_error_hint(err);

		snprintf(buf, len, "sync, io_uring not usable: %s%s%s",
			 moex_strerror(err), *hint ? ": " : "", hint);
	}
	return buf;
}

/*
 * Submit what q holds (n commands) and reap their n completions into cqes
 * within 10 s: 0 or a negative errno.
 */
static int st_queue_run(struct moex_queue *q, unsigned int n,
			struct moex_cqe *cqes)
{
	unsigned int got = 0;
	double t0 = now();
	int ret;

	ret = moex_queue_submit(q);
	if (ret >= 0 && (unsigned int)ret != n)
		ret = -EIO;
	while (ret >= 0 && got < n) {
		ret = moex_queue_wait(q, cqes + got, n - got, 1, 1000);
		if (ret == -ETIME && now() - t0 < 10)
			ret = 0;
		if (ret > 0)
			got += (unsigned int)ret;
	}
	return ret < 0 ? ret : 0;
}

#define ST_QUEUE_NOPS	16

/*
 * A queue on the device: a batch of NOPs, then (with copy) a COPY from a
 * to b and one back from b to a, each checked against the shadows. The
 * line says whether the queue is an io_uring one or synchronous, and why.
 */
static void st_queue(struct selftest *st, const char *name,
		     struct moex_device *dev, struct st_region *a,
		     struct st_region *b, bool copy, bool edu)
{
	struct moex_cqe cqes[ST_QUEUE_NOPS];
	bool seen[ST_QUEUE_NOPS] = { false };
	size_t len, aoff, boff, aoff2;
	struct moex_queue *q;
	char mode[256];
	unsigned int i;
	int ret;

	ret = moex_queue_create(dev, NULL, &q);
	if (ret) {
		st_fail_err(st, name, "queue", "create", ret);
		return;
	}
	st_queue_mode(q, mode, sizeof(mode));
	for (i = 0; i < ST_QUEUE_NOPS && !ret; i++)
		ret = moex_queue_nop(q, i);
	if (!ret)
		ret = st_queue_run(q, ST_QUEUE_NOPS, cqes);
	if (ret) {
		st_report(st, name, "queue", false, "%s: NOPs: %s", mode,
			  moex_strerror(ret));
		goto out;
	}
	for (i = 0; i < ST_QUEUE_NOPS; i++) {
		uint64_t ud = cqes[i].user_data;

		if (ud >= ST_QUEUE_NOPS || seen[ud] || cqes[i].res) {
			st_report(st, name, "queue", false,
				  "%s: NOP completion %" PRIu64 " res %d", mode,
				  ud, cqes[i].res);
			goto out;
		}
		seen[ud] = true;
	}
	if (!copy) {
		st_report(st, name, "queue", true, "%s; %u NOPs", mode,
			  ST_QUEUE_NOPS);
		goto out;
	}

	/* a to b and back to another place in a: unaligned, across pages */
	len = edu ? 2000 : 5 * 4096 + 99;
	aoff = 4096 - 333;
	boff = 3 * 4096 + 5;
	aoff2 = a->len - len - 77;
	ret = moex_queue_copy(q, b->handle, boff, a->handle, aoff, len, 100);
	if (!ret)
		ret = st_queue_run(q, 1, cqes);
	if (!ret)
		ret = cqes[0].user_data == 100 ? cqes[0].res : -EIO;
	if (!ret) {
		memmove(b->shadow + boff, a->shadow + aoff, len);
		ret = moex_queue_copy(q, a->handle, aoff2, b->handle, boff,
				      len, 101);
	}
	if (!ret)
		ret = st_queue_run(q, 1, cqes);
	if (!ret)
		ret = cqes[0].user_data == 101 ? cqes[0].res : -EIO;
	if (ret) {
		st_report(st, name, "queue", false, "%s: COPY round trip: %s",
			  mode, moex_strerror(ret));
		goto out;
	}
	memmove(a->shadow + aoff2, b->shadow + boff, len);
	if (st_diff(a, 0, a->len) >= 0 || st_diff(b, 0, b->len) >= 0) {
		st_report(st, name, "queue", false,
			  "%s: COPY round trip left wrong bytes", mode);
		goto out;
	}
	st_report(st, name, "queue", true,
		  "%s; %u NOPs, a %zu-byte COPY round trip", mode,
		  ST_QUEUE_NOPS, len);
out:
	moex_queue_destroy(q);
}

/* Pin and unpin speed for size bytes of pre-faulted huge-page memory. */
static void st_pin_speed(struct selftest *st, const char *name,
			 struct moex_device *dev, size_t size)
{
	struct moex_region_desc desc = { .size = sizeof(desc) };
	char r1[64], r2[64];
	double tp, tu;
	uint32_t handle;
	void *mem;
	int ret;

	ret = moex_alloc_pinnable(size, true, &mem);
	if (ret) {
		st_fail_err(st, name, "pin-speed", "allocate", ret);
		return;
	}
	memset(mem, 0x5a, size);	/* time the pinning, not page faults */
	tp = now();
	ret = moex_pin(dev, mem, size, 0, &handle);
	tp = now() - tp;
	if (ret) {
		char what[64];

		snprintf(what, sizeof(what), "pin %zu bytes", size);
		st_fail_err(st, name, "pin-speed", what, ret);
		goto out;
	}
	moex_region_query(dev, handle, &desc);
	tu = now();
	ret = moex_unpin(dev, handle);
	tu = now() - tu;
	if (ret) {
		st_fail_err(st, name, "pin-speed", "unpin", ret);
		goto out;
	}
	st_report(st, name, "pin-speed", true,
		  "%.0f MiB in %" PRIu32 " sg segments: pin %s, unpin %s",
		  mib(size), desc.sg_segments,
		  fmt_rate(r1, sizeof(r1), size, tp),
		  fmt_rate(r2, sizeof(r2), size, tu));
out:
	moex_free_pinnable(mem, size);
}

/*
 * Every check on one device; the pin and unpin speed too when speed_size
 * is not 0.
 */
static void st_device(struct selftest *st, const char *path, size_t speed_size)
{
	struct moex_device_info info = { .size = sizeof(info) };
	struct moex_region_desc desc = { .size = sizeof(desc) };
	struct st_region a = { 0 }, b = { 0 };
	const char *name = dev_name(path);
	struct moex_device *dev;
	size_t rlen;
	bool edu;
	int ret;

	ret = moex_open(path, &dev);
	if (ret) {
		st_fail_err(st, name, "open", path, ret);
		return;
	}
	ret = moex_query(dev, &info);
	if (!ret)
		ret = moex_nop(dev);
	if (ret) {
		st_fail_err(st, name, "open", "query and nop", ret);
		moex_close(dev);
		return;
	}
	st_report(st, name, "open", true, "abi %" PRIu32 ", engine %s",
		  info.abi_version, info.engine_name);
	edu = !strcmp(info.engine_name, "edu");
	rlen = edu ? MOEX_PINNABLE_ALIGN : 8 * MOEX_PINNABLE_ALIGN;

	/* a: small pages; b: huge pages. */
	ret = st_region_pin(dev, &a, rlen, false, 0, &st->rng);
	if (!ret)
		ret = st_region_pin(dev, &b, rlen, true, 0, &st->rng);
	if (!ret)
		ret = moex_region_query(dev, b.handle, &desc);
	if (ret) {
		st_fail_err(st, name, "pin", "pin two regions", ret);
		goto out;
	}
	st_report(st, name, "pin", true,
		  "2 x %zu bytes, huge-page region in %" PRIu32 " sg segments",
		  rlen, desc.sg_segments);

	if (info.features & MOEX_FEAT_COPY)
		st_copies(st, name, dev, &a, &b, edu, info.engine_name);
	if ((info.features & MOEX_FEAT_COPY) &&
	    (info.features & MOEX_FEAT_PIN_READONLY))
		st_readonly(st, name, dev, &b);
	if (info.features & MOEX_FEAT_DMABUF)
		st_dmabuf(st, name, dev, &a);
	st_queue(st, name, dev, &a, &b, info.features & MOEX_FEAT_COPY, edu);

	ret = st_region_unpin(dev, &a);
	if (!ret)
		ret = st_region_unpin(dev, &b);
	if (ret) {
		st_fail_err(st, name, "unpin", "unpin", ret);
	} else {
		ret = moex_region_query(dev, a.handle, &desc);
		if (ret == -ENOENT)
			st_report(st, name, "unpin", true, NULL);
		else
			st_report(st, name, "unpin", false,
				  "handle still answers after unpin (%d)", ret);
	}
	if (speed_size)
		st_pin_speed(st, name, dev, speed_size);
out:
	st_region_free(dev, &a);
	st_region_free(dev, &b);
	moex_close(dev);
}

static int cmp_devnum(const void *a, const void *b)
{
	long na = strtol(*(char *const *)a + 4, NULL, 10);
	long nb = strtol(*(char *const *)b + 4, NULL, 10);

	return (na > nb) - (na < nb);
}

/* The names moexN in /dev, sorted by N; *count of them. */
static char **list_devices(size_t *count)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	DIR *d;

	*count = 0;
	d = opendir("/dev");
	if (!d)
		return NULL;
	while ((de = readdir(d))) {
		const char *p = de->d_name;
		char **grown;

		if (strncmp(p, "moex", 4) || !p[4] ||
		    strspn(p + 4, "0123456789") != strlen(p + 4))
			continue;
		grown = realloc(names, (n + 1) * sizeof(*names));
		if (!grown)
			break;
		names = grown;
		names[n] = strdup(p);
		if (names[n])
			n++;
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_devnum);
	*count = n;
	return names;
}

static int cmd_selftest(const char *device, bool device_given,
			uint64_t speed_size, uint64_t seed)
{
	struct selftest st = { .rng = seed ? seed : 1 };
	char **names, path[300];
	bool listed = false;
	size_t n, i;

	printf("selftest: seed %" PRIu64 "\n", seed);
	names = list_devices(&n);
	/* Pin speed on moex0 (sorted first), else on the first device. */
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/dev/%s", names[i]);
		listed |= !strcmp(path, device);
		st_device(&st, path, i == 0 ? (size_t)speed_size : 0);
		free(names[i]);
	}
	free(names);
	/* A --device outside /dev/moexN is tested too. */
	if (device_given && !listed)
		st_device(&st, device, n == 0 ? (size_t)speed_size : 0);
	if (!st.passed && !st.failed)
		st_fail_err(&st, "moex0", "open", "no /dev/moexN found", -ENOENT);

	if (st.failed)
		printf("selftest: FAILED: %u of %u checks\n", st.failed,
		       st.failed + st.passed);
	else
		printf("selftest: all %u checks passed\n", st.passed);
	return st.failed ? EXIT_FAILURE : 0;
}

/* ---- main --------------------------------------------------------------- */

/* Options before OPT_JSON go with every command. */
enum { OPT_DEVICE = 0x100, OPT_HELP, OPT_SYSFS, OPT_JSON, OPT_SIZE, OPT_HUGE,
       OPT_HOLD, OPT_SEED, OPT_WATCH, OPT_INTERVAL, OPT_COUNT };

static const struct option options[] = {
	{ "device", required_argument, NULL, OPT_DEVICE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "hugepages", no_argument, NULL, OPT_HUGE },
	{ "hold", required_argument, NULL, OPT_HOLD },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "sysfs", required_argument, NULL, OPT_SYSFS },
	{ "watch", no_argument, NULL, OPT_WATCH },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ NULL, 0, NULL, 0 },
};

/* The options each command takes, besides --device and --help. */
static const struct {
	const char *name;
	unsigned int opts;	/* bit (OPT_x - OPT_DEVICE) per option */
} commands[] = {
	{ "info", 0 },
	{ "stats", 1u << (OPT_JSON - OPT_DEVICE) |
		   1u << (OPT_WATCH - OPT_DEVICE) |
		   1u << (OPT_INTERVAL - OPT_DEVICE) |
		   1u << (OPT_COUNT - OPT_DEVICE) },
	{ "pin", 1u << (OPT_SIZE - OPT_DEVICE) | 1u << (OPT_HUGE - OPT_DEVICE) |
		 1u << (OPT_HOLD - OPT_DEVICE) },
	{ "selftest", 1u << (OPT_SIZE - OPT_DEVICE) | 1u << (OPT_SEED - OPT_DEVICE) },
};

int main(int argc, char **argv)
{
	const char *device = MOEX_DEFAULT_DEVICE, *cmd = NULL;
	bool device_given = false, json = false, huge = false, watch = false;
	bool interval_given = false, count_given = false, seed_given = false;
	uint64_t size = 0, seed = 0;
	unsigned long count = 0;
	unsigned int allowed = 0, given = 0;
	double hold_secs = 0, interval = 1;
	size_t c = 0;
	char *end;
	int opt, idx;

	/* Options may come before and after the command. */
	opterr = 0;
	for (;;) {
		idx = 0;
		opt = getopt_long(argc, argv, "+", options, &idx);
		if (opt == -1) {
			if (optind >= argc)
				break;
			if (cmd)
				return usage_error("unexpected argument '%s'",
						   argv[optind]);
			cmd = argv[optind++];
			for (c = 0; c < sizeof(commands) / sizeof(commands[0]); c++)
				if (!strcmp(cmd, commands[c].name))
					break;
			if (c == sizeof(commands) / sizeof(commands[0]))
				return usage_error("unknown command '%s'", cmd);
			allowed = commands[c].opts;
			continue;
		}
		if (opt == '?' || opt == ':')
			return usage_error("bad option '%s'", argv[optind - 1]);
		/* checked once the command is known: it may come later */
		if (opt >= OPT_JSON)
			given |= 1u << (opt - OPT_DEVICE);
		switch (opt) {
		case OPT_DEVICE:
			device = optarg;
			device_given = true;
			break;
		case OPT_HELP:
			usage(stdout);
			return 0;
		case OPT_SYSFS:
			if (!*optarg)
				return usage_error("--sysfs: empty directory");
			/* what moex_stats_read() reads (libmoex, stats.c) */
			if (setenv("MOEX_SYSFS_ROOT", optarg, 1))
				return fail("--sysfs", -ENOMEM);
			break;
		case OPT_WATCH:
			watch = true;
			break;
		case OPT_INTERVAL:
			errno = 0;
			interval = strtod(optarg, &end);
			if (errno || end == optarg || *end ||
			    !(interval >= 0.01) || interval > 86400)
				return usage_error("--interval: bad time '%s' (0.01 to 86400 seconds)",
						   optarg);
			interval_given = true;
			break;
		case OPT_COUNT:
			errno = 0;
			count = strtoul(optarg, &end, 10);
			/* a digit first: strtoul skips spaces, then takes " -1" */
			if (errno || end == optarg || *end || !count ||
			    optarg[0] < '0' || optarg[0] > '9')
				return usage_error("--count: bad number '%s'", optarg);
			count_given = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_SIZE:
			if (parse_size_arg("--size", optarg, &size))
				return EXIT_USAGE;
			break;
		case OPT_HUGE:
			huge = true;
			break;
		case OPT_HOLD:
			errno = 0;
			hold_secs = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(hold_secs >= 0) ||
			    hold_secs > 1e7)
				return usage_error("--hold: bad time '%s'", optarg);
			break;
		case OPT_SEED:
			/* decimal or 0x hex, as moexctl(1) says: strtoull
			 * alone takes "-1" (2^64 - 1), " 7" and octal "010" */
			errno = 0;
			seed = strtoull(optarg, &end,
					!strncmp(optarg, "0x", 2) ||
					!strncmp(optarg, "0X", 2) ? 16 : 10);
			if (errno || end == optarg || *end ||
			    optarg[0] < '0' || optarg[0] > '9' ||
			    (optarg[0] == '0' && optarg[1] >= '0' &&
			     optarg[1] <= '9'))
				return usage_error("--seed: bad number '%s' (decimal, or hexadecimal with 0x)",
						   optarg);
			seed_given = true;
			break;
		}
	}
	if (!cmd) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (given & ~allowed) {
		/* the first option of the table that does not go with cmd */
		for (idx = 0; options[idx].name; idx++)
			if (options[idx].val >= OPT_JSON &&
			    (given & ~allowed & 1u << (options[idx].val - OPT_DEVICE)))
				break;
		return usage_error("option '--%s' does not go with %s",
				   options[idx].name, cmd);
	}

	if (!strcmp(cmd, "info"))
		return cmd_info(device);
	if (!strcmp(cmd, "stats")) {
		if ((interval_given || count_given) && !watch)
			return usage_error("--interval and --count go with --watch");
		if (watch && json)
			return usage_error("--json does not go with --watch");
		if (watch)
			return cmd_stats_watch(device, interval, count);
		return cmd_stats(device, json);
	}
	if (!strcmp(cmd, "pin")) {
		if (!size)
			return usage_error("pin needs --size");
		return cmd_pin(device, size, huge, hold_secs);
	}
	/* --seed 0 is a seed too (it was replaced by a random one) */
	if (!seed_given)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	return cmd_selftest(device, device_given, size ? size : 256u << 20,
			    seed);
}
