// SPDX-License-Identifier: GPL-2.0
/*
 * unit-watch: `moexctl stats --watch` against a fake sysfs tree (--sysfs)
 * changed between two samples, the per-expert section from published
 * load files (hand-made ones, and the real publisher: libmoex while a
 * model is open, runtime/src/publish.c), and the usage errors.
 *
 * The binary is MOEXCTL (the sanitizer suite runs a sanitizer build of
 * moexctl), or $MOEXCTL when set; the model comes from MKMODEL.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "moex.h"
#include "harness.h"
#include "fakesys.h"
#include "runbin.h"
#include "../../runtime/src/internal.h"
#include "../../runtime/src/publish.h"

#if !defined(MOEXCTL) || !defined(MKMODEL)
#error "build with -DMOEXCTL='\"/path/to/moexctl\"' -DMKMODEL=..."
#endif

static char root[PATH_MAX];	/* the fake sysfs tree */
static char loads[PATH_MAX];	/* MOEX_STATS_DIR */
static char models[PATH_MAX];	/* mkmodel's output */

static const uint64_t vals0[MOEX_STATS_COUNT] = {
	536870912, 3, 40, 2, 37, 12, 1000000, 1, 6, 2,
};

static const char *moexctl_bin(void)
{
	return getenv("MOEXCTL") ? getenv("MOEXCTL") : MOEXCTL;
}

#define RUN(r, ...) RUN_BIN(r, moexctl_bin(), NULL, __VA_ARGS__)

/*
 * The descriptors by which this process holds flock(LOCK_EX) on the load
 * files it made, as a publisher does while its model is open (moexctl
 * skips a file no one holds locked).
 */
static int held[16];
static unsigned int nheld;

/* Hold the lock of the load file at path (until drop_locks()): 0 or -1. */
static int hold_lock(const char *path)
{
	int fd;

	if (nheld == sizeof(held) / sizeof(held[0]))
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		close(fd);
		return -1;
	}
	held[nheld++] = fd;
	return 0;
}

/* Let go of the locks: the files look left by processes that died. */
static void drop_locks(void)
{
	while (nheld)
		close(held[--nheld]);
}

/* Remove every file in loads/. */
static void clear_loads(void)
{
	struct dirent *de;
	char p[PATH_MAX + 300];
	DIR *d = opendir(loads);

	drop_locks();
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", loads, de->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
}

/* Files named moex-*.load in loads/. */
static int count_loads(char *first, size_t len)
{
	struct dirent *de;
	DIR *d = opendir(loads);
	int n = 0;

	while (d && (de = readdir(d))) {
		size_t l = strlen(de->d_name);

		if (strncmp(de->d_name, "moex-", 5) || l < 6 ||
		    strcmp(de->d_name + l - 5, ".load"))
			continue;
		if (!n++ && first)
			snprintf(first, len, "%s/%s", loads, de->d_name);
	}
	if (d)
		closedir(d);
	return n;
}

/*
 * A load file as libmoex writes it: pid, layers first..first+layers-1 of
 * experts experts, counts [layers][experts], tokens [layers]; held locked
 * by this process, as its publisher would (until clear_loads()).
 */
static int write_load(const char *name, uint32_t pid, uint32_t first,
		      uint32_t layers, uint32_t experts, const uint64_t *counts,
		      const uint64_t *tokens)
{
	struct moex_load_header h;
	char p[PATH_MAX + 64];
	uint32_t l, e;
	FILE *f;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, MOEX_LOAD_MAGIC, 8);
	h.version = MOEX_LOAD_VERSION;
	h.header_size = MOEX_LOAD_HDR_SIZE;
	h.pid = pid;
	h.first_layer = first;
	h.layers = layers;
	h.experts = experts;
	h.updates = 7;
	snprintf(h.model, sizeof(h.model), "/models/fake-v3");
	snprintf(p, sizeof(p), "%s/%s", loads, name);
	f = fopen(p, "wb");
	if (!f)
		return -1;
	fwrite(&h, sizeof(h), 1, f);
	for (l = 0; l < layers; l++) {
		/* layer 0 ran on a GPU with an expert cache */
		uint64_t w[MOEX_LOAD_COUNTS] = {
			[MOEX_LOAD_TOKENS] = tokens[l], [MOEX_LOAD_RUNS] = 1,
			[MOEX_LOAD_GPU_HITS] = l ? 0 : 70,
			[MOEX_LOAD_GPU_MISSES] = l ? 0 : 10,
			[MOEX_LOAD_STREAM_BYTES] = l ? 0 : 440000000,
			[MOEX_LOAD_FILL_BYTES] = l ? 0 : 88000000,
		};

		fwrite(w, sizeof(w), 1, f);
		for (e = 0; e < experts; e++)
			fwrite(&counts[l * experts + e], 8, 1, f);
	}
	if (fclose(f))
		return -1;
	return hold_lock(p);
}

/* Write len bytes at off of load file name, as its publisher would. */
static bool load_poke(const char *name, off_t off, const void *buf,
		      size_t len)
{
	char p[PATH_MAX + 64];
	bool ok;
	int fd;

	snprintf(p, sizeof(p), "%s/%s", loads, name);
	fd = open(p, O_WRONLY);
	if (fd < 0)
		return false;
	ok = pwrite(fd, buf, len, off) == (ssize_t)len;
	return !close(fd) && ok;
}

/* The tokens word of layer slot 0. */
#define LOAD_TOKENS_OFF	(MOEX_LOAD_HDR_SIZE + MOEX_LOAD_TOKENS * 8)

/* ---- a watch running in the background ----------------------------------- */

struct bg {
	pid_t pid;
	int fd;			/* its stdout */
	char out[32768];
	size_t len;
};

static int bg_start(struct bg *b, const char *const *args)
{
	char *argv[16];
	int pfd[2];
	size_t i;

	memset(b, 0, sizeof(*b));
	argv[0] = (char *)moexctl_bin();
	for (i = 0; args[i] && i < 14; i++)
		argv[i + 1] = (char *)args[i];
	argv[i + 1] = NULL;
	if (pipe(pfd))
		return -1;
	fflush(stdout);
	b->pid = fork();
	if (b->pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	b->fd = pfd[0];
	return b->pid < 0 ? -1 : 0;
}

/* Read until the output holds the nth what, or EOF or 20 s: true if found. */
static bool bg_wait_for(struct bg *b, const char *what, int nth)
{
	time_t end = time(NULL) + 20;

	for (;;) {
		const char *p = b->out;
		struct pollfd pfd = { .fd = b->fd, .events = POLLIN };
		int k = 0;
		ssize_t n;

		while ((p = strstr(p, what)) && ++k < nth)
			p++;
		if (p)
			return true;
		if (time(NULL) > end || b->len + 1 >= sizeof(b->out) ||
		    poll(&pfd, 1, 1000) < 0)
			return false;
		if (!pfd.revents)
			continue;
		n = read(b->fd, b->out + b->len, sizeof(b->out) - 1 - b->len);
		if (n <= 0)
			return false;
		b->len += (size_t)n;
		b->out[b->len] = '\0';
	}
}

/* Read to EOF and reap: the exit status, or -1. */
static int bg_finish(struct bg *b)
{
	int st;

	while (b->len + 1 < sizeof(b->out)) {
		ssize_t n = read(b->fd, b->out + b->len,
				 sizeof(b->out) - 1 - b->len);

		if (n <= 0)
			break;
		b->len += (size_t)n;
		b->out[b->len] = '\0';
	}
	close(b->fd);
	if (waitpid(b->pid, &st, 0) != b->pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The line of counter name in text: its value, change and rate text. */
static bool counter_line(const char *text, const char *name, uint64_t *value,
			 char *change, char *rate)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\n%s ", name);
	p = strstr(text, pat);
	if (!p)
		return false;
	p += strlen(pat);
	if (sscanf(p, "%" SCNu64, value) != 1)
		return false;
	/* skip the value and the optional (human) column */
	while (*p == ' ' || (*p >= '0' && *p <= '9'))
		p++;
	if (*p == '(')
		p = strchr(p, ')') + 1;
	return sscanf(p, " %31s %47s", change, rate) == 2;
}

/* The rate of a byte counter ("1.5 MiB/s") in bytes per second, or -1. */
static double bytes_rate(const char *text, const char *name)
{
	static const char *const units[] = { "B/s", "KiB/s", "MiB/s", "GiB/s" };
	char change[32], rate[48], unit[16];
	double r, mult = 1;
	unsigned int i;
	uint64_t v;
	const char *p;

	if (!counter_line(text, name, &v, change, rate) ||
	    sscanf(rate, "%lf", &r) != 1)
		return -1;
	/* the unit is the next word of the line */
	snprintf(unit, sizeof(unit), "%s", "");
	p = strstr(text, name);
	p = p ? strstr(p, rate) : NULL;
	if (!p || sscanf(p + strlen(rate), " %15s", unit) != 1)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++, mult *= 1024)
		if (!strcmp(unit, units[i]))
			return r * mult;
	return -1;
}

/* ---- tests -------------------------------------------------------------- */

TEST(watch_rates_from_two_samples)
{
	static const char *const args[] = {
		"--sysfs", root, "stats", "--watch", "--count", "2",
		"--interval", "2", NULL,
	};
	char change[32], rate[48];
	const char *frame2;
	uint64_t v;
	double dt = 0, r;
	bool found, set;
	struct bg b;
	int st;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	CHECK_INT(bg_start(&b, args), 0);
	/* the first frame ends with the expert-load line; the second sample
	 * comes 2 s later, and the tree is changed in between */
	found = bg_wait_for(&b, "expert load", 1);
	set = found && !fs_set(root, "moex0", "pin_calls", "50\n") &&
	      !fs_set(root, "moex0", "copy_bytes", "3097152\n") &&
	      !fs_set(root, "moex0", "pinned_bytes", "536866816\n");
	st = bg_finish(&b);	/* moexctl ends after its second sample */
	CHECK_MSG(found, "no first frame: %s", b.out);
	CHECK(set);
	CHECK_MSG(st == 0, "exit %d: %s", st, b.out);

	/* sample 1: values, human units, no rates yet */
	CHECK_HAS(b.out, "sample 1 of 2, every 2 s\n");
	CHECK(counter_line(b.out, "pin_calls", &v, change, rate));
	CHECK_U64(v, 40);
	CHECK_STR(change, "-");
	CHECK_HAS(b.out, "536870912 (512.0 MiB)");

	frame2 = strstr(b.out, "sample 2 of 2");
	CHECK_MSG(frame2, "no second frame: %s", b.out);
	CHECK(sscanf(strstr(frame2, "every 2 s, ") + 11, "%lf s since", &dt) == 1);
	CHECK_MSG(dt >= 1.9 && dt < 15, "%.2f s between samples", dt);

	CHECK(counter_line(frame2, "pin_calls", &v, change, rate));
	CHECK_U64(v, 50);
	CHECK_STR(change, "+10");
	CHECK(sscanf(rate, "%lf/s", &r) == 1);
	CHECK_MSG(fabs(r * dt - 10) < 0.2, "pin_calls rate %s over %.2f s",
		  rate, dt);

	CHECK(counter_line(frame2, "copy_bytes", &v, change, rate));
	CHECK_U64(v, 3097152);
	CHECK_STR(change, "+2097152");
	r = bytes_rate(frame2, "copy_bytes");
	CHECK_MSG(fabs(r * dt / 2097152 - 1) < 0.06,
		  "copy_bytes rate %.0f B/s over %.2f s", r, dt);

	/* a counter that went down */
	CHECK(counter_line(frame2, "pinned_bytes", &v, change, rate));
	CHECK_STR(change, "-4096");
	CHECK_MSG(rate[0] == '-', "pinned_bytes rate %s", rate);
	CHECK_HAS(frame2, "KiB/s");

	/* unchanged ones: +0 */
	CHECK(counter_line(frame2, "open_files", &v, change, rate));
	CHECK_STR(change, "+0");
	CHECK_STR(rate, "0.0/s");
	CHECK_HAS(b.out, "expert load: no running model publishes it in ");
}

TEST(watch_shows_published_expert_load)
{
	/* layer 3: expert 5 busiest, then 2, then 7; layer 4: idle */
	static const uint64_t counts[2 * 8] = {
		10, 0, 300, 0, 5, 700, 0, 200,
		0, 0, 0, 0, 0, 0, 0, 0,
	};
	static const uint64_t tokens[2] = { 151, 0 };
	char want[128], name[64];
	pid_t dead;
	struct run r;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	snprintf(name, sizeof(name), "moex-%ld-0.load", (long)getpid());
	CHECK_INT(write_load(name, (uint32_t)getpid(), 3, 2, 8, counts,
			     tokens), 0);
	/* a file left by a process that died is not shown */
	dead = fork();
	if (dead == 0)
		_exit(0);
	CHECK(dead > 0 && waitpid(dead, NULL, 0) == dead);
	snprintf(name, sizeof(name), "moex-%ld-0.load", (long)dead);
	CHECK_INT(write_load(name, (uint32_t)dead, 0, 1, 8, counts, tokens), 0);
	/* nor a file that is not one */
	CHECK_INT(write_load("moex-1-9.load.tmp", (uint32_t)getpid(), 0, 1, 8,
			     counts, tokens), 0);

	RUN_BIN(&r, moexctl_bin(), NULL, "--sysfs", root, "stats", "--watch",
		"--count", "1");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	snprintf(want, sizeof(want),
		 "expert load of pid %ld (/models/fake-v3): layers 3-4, 8 experts, 7 layer runs",
		 (long)getpid());
	CHECK_HAS(r.out, want);
	CHECK_HAS(r.out, " 5=700 (57.6%) 2=300 (24.7%) 7=200 (16.5%) 0=10 (0.8%)\n");
	/* max/mean: 700 over 1215 / 8 */
	CHECK_HAS(r.out, "      4.61  5=700");
	snprintf(want, sizeof(want), "\n%-6u %12u ", 3, 151);
	CHECK_HAS(r.out, want);
	CHECK_HAS(r.out, "(no tokens yet)");
	/* the GPU cache line, for layer 3 only */
	CHECK_HAS(r.out, "       gpu cache: 87.5% hits (70 of 80), 419.6 MiB streamed from host memory, 83.9 MiB copied in\n");
	CHECK_INT(strstr(strstr(r.out, "gpu cache:") + 1, "gpu cache:") ? 1 : 0, 0);
	snprintf(want, sizeof(want), "pid %ld ", (long)dead);
	CHECK_MSG(!strstr(r.out, want), "dead pid shown: %s", r.out);
	CHECK_INT(strstr(strstr(r.out, "expert load of") + 1, "expert load of") ?
		  1 : 0, 0);

	/* a model name with terminal controls: C0, DEL and C1 as UTF-8
	 * (U+009B is CSI to xterm); other UTF-8 (U+00E9) is kept */
	{
		static const char evil[] = "/m/\x1b[2J\x7f\xc2\x9b" "2J\xc2\x85\xc3\xa9";
		char p[PATH_MAX + 64];
		FILE *f;

		snprintf(p, sizeof(p), "%s/moex-%ld-0.load", loads,
			 (long)getpid());
		f = fopen(p, "r+b");
		CHECK(f);
		CHECK(fseek(f, offsetof(struct moex_load_header, model), SEEK_SET) == 0);
		CHECK(fwrite(evil, sizeof(evil), 1, f) == 1);
		CHECK(fclose(f) == 0);
	}
	RUN_BIN(&r, moexctl_bin(), NULL, "--sysfs", root, "stats", "--watch",
		"--count", "1");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	snprintf(want, sizeof(want), "expert load of pid %ld (/m/?[2J?" "??2J??\xc3\xa9)",
		 (long)getpid());
	CHECK_HAS(r.out, want);
	clear_loads();
}

/*
 * A file that no process holds locked was left by a process that died,
 * whatever its pid: that pid may be another process's by now. Such a file
 * of this process's pid and one of a live child's (neither the publisher)
 * were shown as running models; a real publisher's file is shown.
 */
TEST(watch_skips_unlocked_file_of_live_pid)
{
	static const uint64_t counts[4] = { 1, 2, 3, 4 };
	static const uint64_t tokens[1] = { 10 };
	char name[64], want[64];
	struct moex_pub *pub = NULL;
	pid_t other;
	struct run r;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	fflush(NULL);
	other = fork();
	if (other == 0) {
		pause();
		_exit(0);
	}
	CHECK(other > 0);
	snprintf(name, sizeof(name), "moex-%ld-7.load", (long)getpid());
	CHECK_INT(write_load(name, (uint32_t)getpid(), 3, 1, 4, counts,
			     tokens), 0);
	snprintf(name, sizeof(name), "moex-%ld-0.load", (long)other);
	CHECK_INT(write_load(name, (uint32_t)other, 5, 1, 4, counts,
			     tokens), 0);
	/* a file of version 2 (libmoex 0.4, no lock): its live pid tells */
	snprintf(name, sizeof(name), "moex-%ld-8.load", (long)getpid());
	CHECK_INT(write_load(name, (uint32_t)getpid(), 9, 1, 4, counts,
			     tokens), 0);
	{
		const uint32_t v2 = MOEX_LOAD_VERSION_UNLOCKED;

		CHECK(load_poke(name, offsetof(struct moex_load_header,
					       version), &v2, sizeof(v2)));
	}
	drop_locks();
	/* the real publisher (this process: layers 40-41) holds its lock */
	moex__pub_open("/models/real", 40, 2, 4, &pub);
	RUN(&r, "--sysfs", root, "stats", "--watch", "--count", "1");
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	CHECK(pub);
	moex__pub_close(pub);
	clear_loads();
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	snprintf(want, sizeof(want), "expert load of pid %ld (/models/real): layers 40-41,",
		 (long)getpid());
	CHECK_HAS(r.out, want);
	CHECK_MSG(!strstr(r.out, "layers 3-3,"),
		  "the unlocked file of this pid is shown: %s", r.out);
	CHECK_MSG(strstr(r.out, "layers 9-9,"),
		  "the version 2 file of this pid is not shown: %s", r.out);
	snprintf(want, sizeof(want), "expert load of pid %ld ", (long)other);
	CHECK_MSG(!strstr(r.out, want),
		  "the unlocked file of a live child's pid is shown: %s", r.out);
}

/*
 * Bytes of a model name that are no valid UTF-8 become '?', one per byte,
 * as the controls do: a raw 0x9B (CSI to a terminal in an 8-bit mode)
 * reached the terminal. Overlong forms, surrogates, sequences cut short,
 * lone continuation bytes and lead bytes no sequence has go too; valid
 * two-, three- and four-byte sequences stay.
 */
TEST(watch_model_name_only_valid_utf8)
{
	static const uint64_t counts[4] = { 1, 2, 3, 4 };
	static const uint64_t tokens[1] = { 10 };
	static const char evil[] =
		"/m/\x9b" "6n|\xc0\xaf|\xe0\x80\xaf|\xed\xa0\x80|\xe2\x82|"
		"\xf8|\x80|\xf4\x90\x80\x80|\xf0\x8f\xbf\xbf|\xc2\x9f|\xc2\xa0|"
		"\xe2\x82\xac\xf0\x9f\x98\x80|\xc3";
	char want[256], name[64], p[PATH_MAX + 64];
	struct run r;
	FILE *f;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	snprintf(name, sizeof(name), "moex-%ld-4.load", (long)getpid());
	CHECK_INT(write_load(name, (uint32_t)getpid(), 0, 1, 4, counts,
			     tokens), 0);
	snprintf(p, sizeof(p), "%s/%s", loads, name);
	f = fopen(p, "r+b");
	CHECK(f);
	CHECK(fseek(f, offsetof(struct moex_load_header, model), SEEK_SET) == 0);
	CHECK(fwrite(evil, sizeof(evil), 1, f) == 1);
	CHECK(fclose(f) == 0);
	RUN(&r, "--sysfs", root, "stats", "--watch", "--count", "1");
	clear_loads();
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	/* U+00A0, U+20AC and U+1F600 are kept; the C1 U+009F is not */
	snprintf(want, sizeof(want),
		 "expert load of pid %ld (/m/?6n|??|???|???|??|?|?|????|????|??|"
		 "\xc2\xa0|\xe2\x82\xac\xf0\x9f\x98\x80|?)", (long)getpid());
	CHECK_HAS(r.out, want);
}

/*
 * A layer's line over two samples: its tokens per second are the tokens
 * it ran between them over the time between them, max/mean is the
 * busiest expert's tokens over the mean, and experts of equal load are
 * listed by id.
 */
TEST(watch_expert_load_rates)
{
	static const char *const args[] = {
		"--sysfs", root, "stats", "--watch", "--count", "2",
		"--interval", "2", NULL,
	};
	static const uint64_t counts[4] = { 50, 20, 50, 80 };
	static const uint64_t tokens[1] = { 100 };
	const uint64_t more = 160;
	char name[64], imb[16];
	const char *frame2, *line;
	unsigned int layer;
	uint64_t tok;
	double dt = 0, rate;
	bool found, set = false;
	struct bg b;
	int st;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	snprintf(name, sizeof(name), "moex-%ld-5.load", (long)getpid());
	CHECK_INT(write_load(name, (uint32_t)getpid(), 0, 1, 4, counts,
			     tokens), 0);
	CHECK_INT(bg_start(&b, args), 0);
	found = bg_wait_for(&b, "top experts", 1);
	set = load_poke(name, LOAD_TOKENS_OFF, &more, 8);
	st = bg_finish(&b);
	clear_loads();
	CHECK_MSG(found, "no first frame: %s", b.out);
	CHECK(set);
	CHECK_MSG(st == 0, "exit %d: %s", st, b.out);
	/* sample 1: no rate yet */
	line = strstr(b.out, "\n0      ");
	CHECK_MSG(line, "no line of layer 0: %s", b.out);
	CHECK_HAS(line, "\n0               100            -      1.60 "
		  " 3=80 (40.0%) 0=50 (25.0%) 2=50 (25.0%) 1=20 (10.0%)\n");
	frame2 = strstr(b.out, "sample 2 of 2");
	CHECK_MSG(frame2, "no second frame: %s", b.out);
	CHECK(sscanf(strstr(frame2, "every 2 s, ") + 11, "%lf s since", &dt) == 1);
	line = strstr(frame2, "\n0      ");
	CHECK_MSG(line, "no line of layer 0: %s", frame2);
	CHECK(sscanf(line, " %u %" SCNu64 " %lf %15s", &layer, &tok, &rate,
		     imb) == 4);
	CHECK_U64(tok, 160);
	CHECK_STR(imb, "1.60");
	CHECK_MSG(fabs(rate * dt - 60) < 1, "%.1f tokens/s over %.2f s", rate,
		  dt);
}

/*
 * A model that starts publishing after the first sample: its first sample
 * has no rate ("-"), as the first sample of the watch has none; the tokens
 * it ran before were taken as run in one interval (a file of 1,000,000
 * tokens found at sample 2 of a 2 s watch: 500000.0 tokens/s). The next
 * sample has the rate of the tokens run between the two.
 */
TEST(watch_late_load_file_has_no_first_rate)
{
	static const char *const args[] = {
		"--sysfs", root, "stats", "--watch", "--count", "3",
		"--interval", "2", NULL,
	};
	static const uint64_t counts[4] = { 400000, 100000, 300000, 200000 };
	static const uint64_t tokens[1] = { 1000000 };
	const uint64_t more = 1000060;
	char name[64], rate[32];
	const char *frame, *line;
	bool found, made = false, set = false;
	unsigned int layer;
	uint64_t tok;
	double dt = 0, r;
	struct bg b;
	int st;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	snprintf(name, sizeof(name), "moex-%ld-6.load", (long)getpid());
	CHECK_INT(bg_start(&b, args), 0);
	found = bg_wait_for(&b, "no running model publishes it", 1);
	if (found)
		made = !write_load(name, (uint32_t)getpid(), 0, 1, 4, counts,
				   tokens);
	found = found && made && bg_wait_for(&b, "top experts", 1);
	set = found && load_poke(name, LOAD_TOKENS_OFF, &more, 8);
	st = bg_finish(&b);
	clear_loads();
	CHECK(made);
	CHECK_MSG(found, "no sample with the file: %s", b.out);
	CHECK(set);
	CHECK_MSG(st == 0, "exit %d: %s", st, b.out);
	/* sample 2: the file's first, no rate */
	frame = strstr(b.out, "sample 2 of 3");
	CHECK_MSG(frame, "no second frame: %s", b.out);
	line = strstr(frame, "\n0      ");
	CHECK_MSG(line, "no line of layer 0: %s", frame);
	CHECK(sscanf(line, " %u %" SCNu64 " %31s", &layer, &tok, rate) == 3);
	CHECK_U64(tok, 1000000);
	CHECK_MSG(!strcmp(rate, "-"), "a first rate of %s tokens/s", rate);
	/* sample 3: 60 tokens since sample 2 */
	frame = strstr(b.out, "sample 3 of 3");
	CHECK_MSG(frame, "no third frame: %s", b.out);
	CHECK(sscanf(strstr(frame, "every 2 s, ") + 11, "%lf s since", &dt) == 1);
	line = strstr(frame, "\n0      ");
	CHECK_MSG(line, "no line of layer 0: %s", frame);
	CHECK(sscanf(line, " %u %" SCNu64 " %lf", &layer, &tok, &r) == 3);
	CHECK_U64(tok, 1000060);
	CHECK_MSG(fabs(r * dt - 60) < 1, "%.1f tokens/s over %.2f s", r, dt);
}

/*
 * Several models of one process: their sections come in the order of
 * their files' names, whatever order the directory lists them in (files
 * made 3, 1, 0, 2; file k holds layer 10 k).
 */
TEST(watch_sections_in_name_order)
{
	static const uint64_t counts[4] = { 1, 2, 3, 4 };
	static const uint64_t tokens[1] = { 10 };
	static const int order[4] = { 3, 1, 0, 2 };
	const char *at[4];
	char name[64], want[32];
	struct run r;
	int i;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	for (i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "moex-%ld-%d.load", (long)getpid(),
			 order[i]);
		CHECK_INT(write_load(name, (uint32_t)getpid(),
				     (uint32_t)order[i] * 10, 1, 4, counts,
				     tokens), 0);
	}
	RUN(&r, "--sysfs", root, "stats", "--watch", "--count", "1");
	clear_loads();
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	for (i = 0; i < 4; i++) {
		snprintf(want, sizeof(want), "layers %d-%d,", i * 10, i * 10);
		at[i] = strstr(r.out, want);
		CHECK_MSG(at[i], "no %s: %s", want, r.out);
		CHECK_MSG(!i || at[i] > at[i - 1], "%s before the file before: %s",
			  want, r.out);
	}
}

/* run_bin_child_hook: the tool gets SIGALRM after 20 s (exec keeps it). */
static void alarm_in_child(void)
{
	alarm(20);
}

TEST(watch_bad_load_files_are_skipped)
{
	static const uint64_t counts[4] = { 1, 2, 3, 4 };
	static const uint64_t tokens[1] = { 5 };
	char name[64], p[PATH_MAX + 64];
	struct run r;
	FILE *f;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	snprintf(name, sizeof(name), "moex-%ld-1.load", (long)getpid());
	CHECK_INT(write_load(name, (uint32_t)getpid(), 0, 1, 4, counts,
			     tokens), 0);
	/* cut short: the counters are not all there */
	snprintf(p, sizeof(p), "%s/%s", loads, name);
	CHECK_INT(truncate(p, MOEX_LOAD_HDR_SIZE + 8), 0);
	/* a bad magic */
	snprintf(p, sizeof(p), "%s/moex-%ld-2.load", loads, (long)getpid());
	f = fopen(p, "wb");
	CHECK(f);
	fputs("NOTMOEX and then some bytes", f);
	fclose(f);
	/* a FIFO (anyone may make one in /dev/shm): its open blocked for a
	 * writer that never comes; SIGALRM ends moexctl if it still does */
	snprintf(p, sizeof(p), "%s/moex-%ld-3.load", loads, (long)getpid());
	CHECK_INT(mkfifo(p, 0644), 0);
	run_bin_child_hook = alarm_in_child;
	RUN(&r, "--sysfs", root, "stats", "--watch", "--count", "1");
	run_bin_child_hook = NULL;
	CHECK_MSG(r.status == 0, "exit %d (-1: killed by a signal): %s",
		  r.status, r.err);
	CHECK_HAS(r.out, "expert load: no running model publishes it");
	clear_loads();
}

/*
 * A process that publishes a load file named MOEX_LOAD_PREFIX mid
 * "<its pid>-0" MOEX_LOAD_SUFFIX (any local user can publish one) and then
 * keeps cutting it short and growing it back; its pid, or -1. path: the
 * file's.
 */
static pid_t shrinking_load_file(const char *mid, char *path, size_t len)
{
	const uint32_t layers = 1024, experts = 4096;
	const off_t size = MOEX_LOAD_HDR_SIZE +
			   (off_t)layers * MOEX_LOAD_SLOT_WORDS(experts) * 8;
	struct stat st;
	pid_t child;
	int i;

	child = fork();
	if (child < 0)
		return -1;
	if (child == 0) {
		struct moex_load_header h;
		char tmp[PATH_MAX + 80];
		int fd;

		memset(&h, 0, sizeof(h));
		memcpy(h.magic, MOEX_LOAD_MAGIC, 8);
		h.version = MOEX_LOAD_VERSION;
		h.header_size = MOEX_LOAD_HDR_SIZE;
		h.pid = (uint32_t)getpid();
		h.layers = layers;
		h.experts = experts;
		snprintf(path, len, "%s/" MOEX_LOAD_PREFIX "%s%ld-0"
			 MOEX_LOAD_SUFFIX, loads, mid, (long)getpid());
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || flock(fd, LOCK_EX) ||
		    pwrite(fd, &h, sizeof(h), 0) != sizeof(h) ||
		    ftruncate(fd, size) || rename(tmp, path))
			_exit(1);
		for (;;) {
			if (ftruncate(fd, MOEX_LOAD_HDR_SIZE) ||
			    ftruncate(fd, size))
				_exit(1);
		}
	}
	snprintf(path, len, "%s/" MOEX_LOAD_PREFIX "%s%ld-0" MOEX_LOAD_SUFFIX,
		 loads, mid, (long)child);
	for (i = 0; i < 500 && stat(path, &st); i++)
		usleep(10000);
	if (i == 500) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		return -1;
	}
	return child;
}

/*
 * A load file whose owner keeps cutting it short and growing it back
 * while moexctl reads the counters through its mapping (any local user
 * can publish one): the reads that land past the end raise SIGBUS, which
 * killed moexctl; the section of that file is left out instead.
 */
/* Whether the file at path holds needle anywhere. */
static bool file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	bool has = false;
	char *buf;
	long n;

	if (!f)
		return false;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET)) {
		fclose(f);
		return false;
	}
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n)
		has = memmem(buf, (size_t)n, needle, strlen(needle)) != NULL;
	free(buf);
	fclose(f);
	return has;
}

/*
 * 20 samples of moexctl stats --watch, 10 ms apart, the whole output into
 * out (a sample of a 1024-layer file is longer than struct run keeps, and
 * the first ones may all have found a shrinking file short): system(3)'s
 * status.
 */
static int watch_into(const char *out)
{
	char cmd[3 * PATH_MAX + 200];

	snprintf(cmd, sizeof(cmd),
		 "exec '%s' --sysfs '%s' stats --watch --interval 0.01 --count 20 > '%s'",
		 moexctl_bin(), root, out);
	return system(cmd);
}

TEST(watch_survives_a_shrinking_load_file)
{
	char p[PATH_MAX + 64], out[PATH_MAX + 16];
	bool shown = false;
	pid_t child;
	int st = -1, i;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	snprintf(out, sizeof(out), "%s.out", models);
	child = shrinking_load_file("", p, sizeof(p));
	CHECK_MSG(child > 0, "the shrinking load file did not appear");
	/*
	 * Up to 5 runs of 20 samples, until one sample read the file whole
	 * (on a busy machine all 20 of a run may find it short); the child
	 * goes before any CHECK can return.
	 */
	for (i = 0; i < 5 && !shown; i++) {
		st = watch_into(out);
		if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))
			break;
		shown = file_has(out, "expert load of pid");
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	CHECK_MSG(st != -1 && WIFEXITED(st) && !WEXITSTATUS(st),
		  "moexctl: %s %d", st != -1 && WIFSIGNALED(st) ?
		  "killed by signal" : "exit status",
		  st == -1 ? -1 : WIFSIGNALED(st) ? WTERMSIG(st) :
		  WEXITSTATUS(st));
	CHECK_MSG(shown, "no sample of %d runs showed the file", i);
	unlink(out);
	clear_loads();
}

/*
 * The line that says a load file shrank while it was read names the file:
 * its name is its owner's choice, like the model name, and must not reach
 * the terminal with its escapes (ESC [ 2 J clears the screen). Up to 5
 * runs, until one shows that line.
 */
TEST(watch_shrunk_file_name_has_no_escapes)
{
	char p[PATH_MAX + 64], out[PATH_MAX + 16];
	bool shrank = false, esc = false;
	pid_t child;
	int i;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	snprintf(out, sizeof(out), "%s.out", models);
	child = shrinking_load_file("\033[2J", p, sizeof(p));
	CHECK_MSG(child > 0, "the shrinking load file did not appear");
	for (i = 0; i < 5 && !shrank; i++) {
		if (watch_into(out) == -1)
			break;
		shrank = file_has(out, "shrank while it was read");
		/* the file name's own escape, not the line's */
		esc |= file_has(out, "\033");
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	unlink(out);
	CHECK_MSG(shrank, "no run of %d read the file while it shrank", i);
	CHECK_MSG(!esc, "an escape of the file's name reached the output");
	clear_loads();
}

/*
 * Only the SIGBUS of a load file's mapping ends its section: another one
 * (here kill(2)'s, while moexctl reads a large, healthy file: most of a
 * sample) still ends moexctl, as it did before the handler. It was taken
 * for a shrunk file, "shrank while it was read", and moexctl went on.
 */
TEST(watch_other_sigbus_still_kills)
{
	const uint32_t layers = 1024, experts = 4096;
	const off_t size = MOEX_LOAD_HDR_SIZE +
			   (off_t)layers * MOEX_LOAD_SLOT_WORDS(experts) * 8;
	char p[PATH_MAX + 64], out[PATH_MAX + 16];
	struct moex_load_header h;
	int fd, status = 0;
	bool shrank;
	size_t n;
	pid_t pid;

	clear_loads();
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, MOEX_LOAD_MAGIC, 8);
	h.version = MOEX_LOAD_VERSION;
	h.header_size = MOEX_LOAD_HDR_SIZE;
	h.pid = (uint32_t)getpid();
	h.layers = layers;
	h.experts = experts;
	snprintf(p, sizeof(p), "%s/moex-%ld-0.load", loads, (long)getpid());
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK(pwrite(fd, &h, sizeof(h), 0) == sizeof(h) &&
	      ftruncate(fd, size) == 0);
	close(fd);
	CHECK_INT(hold_lock(p), 0);
	snprintf(out, sizeof(out), "%s.out", models);
	fflush(NULL);
	pid = fork();
	CHECK(pid >= 0);
	if (!pid) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (o < 0 || dup2(o, STDOUT_FILENO) < 0)
			_exit(127);
		execl(moexctl_bin(), moexctl_bin(), "--sysfs", root, "stats",
		      "--watch", "--interval", "0.01", "--count", "500",
		      (char *)NULL);
		_exit(127);
	}
	/* into the samples: the first one's section is being read */
	for (n = 0; n < 500; n++) {
		struct stat st;

		if (!stat(out, &st) && st.st_size > 2000)
			break;
		usleep(2000);
	}
	kill(pid, SIGBUS);
	waitpid(pid, &status, 0);
	shrank = file_has(out, "shrank while it was read");
	unlink(out);
	CHECK_MSG(!shrank, "kill(2)'s SIGBUS taken for a shrunk file");
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		  "moexctl: %s %d", WIFSIGNALED(status) ? "signal" : "exit",
		  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	clear_loads();
}

TEST(publisher_of_an_open_model)
{
	struct moex_model_opts mo = {
		.size = sizeof(mo), .first_layer = MOEX_MODEL_ALL_LAYERS,
		.last_layer = MOEX_MODEL_ALL_LAYERS,
	};
	struct moex_model_info info = { .size = sizeof(info) };
	char mdir[PATH_MAX + 16], file[PATH_MAX + 300], want[64];
	const struct moex_load_header *h;
	struct moex_model *model;
	uint64_t tokens, runs, sum = 0;
	float *x, *y;
	uint64_t *w;
	struct stat st;
	struct run r;
	size_t i;
	void *map;
	int fd, ret;

	clear_loads();
	snprintf(mdir, sizeof(mdir), "%s/tiny", models);
	RUN_BIN(&r, MKMODEL, NULL, "--quiet", "--force", "--preset", "tiny",
		mdir);
	CHECK_MSG(r.status == 0, "mkmodel: %s", r.err);
	ret = moex_model_open(mdir, &mo, &model);
	CHECK_MSG(ret == 0, "model open: %d", ret);
	moex_model_info(model, &info);
	CHECK_INT(count_loads(file, sizeof(file)), 1);

	x = calloc((size_t)13 * info.desc.dim, sizeof(*x));
	y = calloc((size_t)13 * info.desc.dim, sizeof(*y));
	for (i = 0; x && i < (size_t)13 * info.desc.dim; i++)
		x[i] = (float)((i * 7919) % 201) / 100.0f - 1.0f;
	/* counts NULL: the library counts for the file anyway */
	ret = x && y ? moex_moe_run(moex_model_layer(model, info.first_layer),
				    x, 13, y, NULL) : -ENOMEM;
	if (!ret)
		ret = moex_moe_run(moex_model_layer(model, info.first_layer),
				   x, 4, y, NULL);
	free(x);
	free(y);
	if (ret) {
		moex_model_close(model);
		CHECK_MSG(0, "run: %d", ret);
	}

	fd = open(file, O_RDONLY);
	CHECK(fd >= 0);
	CHECK(fstat(fd, &st) == 0);
	CHECK_U64(st.st_size, MOEX_LOAD_HDR_SIZE + (uint64_t)info.layers *
		  MOEX_LOAD_SLOT_WORDS(info.desc.n_experts) * 8);
	CHECK_INT(st.st_mode & 0777, 0644);
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	CHECK(map != MAP_FAILED);
	h = map;
	w = (uint64_t *)((char *)map + MOEX_LOAD_HDR_SIZE);
	tokens = w[MOEX_LOAD_TOKENS];
	runs = w[MOEX_LOAD_RUNS];
	for (i = 0; i < info.desc.n_experts; i++)
		sum += w[MOEX_LOAD_COUNTS + i];
	/* a CPU layer has no GPU cache */
	CHECK_U64(w[MOEX_LOAD_GPU_HITS] + w[MOEX_LOAD_GPU_MISSES], 0);
	CHECK_MSG(!memcmp(h->magic, "MOEXLOAD", 8) && h->version == 3 &&
		  h->pid == (uint32_t)getpid() &&
		  h->first_layer == info.first_layer &&
		  h->layers == info.layers &&
		  h->experts == info.desc.n_experts && h->updates == 2 &&
		  strstr(h->model, "tiny"), "header");
	munmap(map, (size_t)st.st_size);
	CHECK_U64(tokens, 17);
	CHECK_U64(runs, 2);
	CHECK_U64(sum, 17 * info.desc.topk);

	RUN(&r, "--sysfs", root, "stats", "--watch", "--count", "1");
	snprintf(want, sizeof(want), "expert load of pid %ld (",
		 (long)getpid());
	moex_model_close(model);
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK_HAS(r.out, want);
	snprintf(want, sizeof(want), "\n%-6u %12u ", info.first_layer, 17);
	CHECK_HAS(r.out, want);
	/* closing the model removes the file */
	CHECK_INT(count_loads(NULL, 0), 0);
}

/*
 * The publisher itself: the file is 0644 whatever the umask (an operator
 * watches another user's service) and held locked (flock) while it is
 * open, has a slot for each layer and none past them, and up to
 * MOEX_LOAD_MAX_LAYERS layers are published.
 */
TEST(publisher_file_and_slots)
{
	char file[PATH_MAX + 300];
	struct moex_pub *p = NULL;
	struct stat st;
	uint64_t *s0, *s1;
	bool locked;
	mode_t old;
	int fd;

	clear_loads();
	old = umask(077);
	moex__pub_open("m", 5, 2, 8, &p);
	umask(old);
	CHECK(p);
	CHECK_INT(count_loads(file, sizeof(file)), 1);
	CHECK(stat(file, &st) == 0);
	CHECK_INT(st.st_mode & 0777, 0644);
	/* locked while it is open: moexctl skips a file no one holds locked */
	fd = open(file, O_RDONLY);
	CHECK(fd >= 0);
	locked = flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
	close(fd);
	CHECK_MSG(locked, "the publisher does not hold its file locked");
	s0 = moex__pub_slot(p, 0);
	s1 = moex__pub_slot(p, 1);
	CHECK(s0 && s1);
	CHECK_INT(s1 - s0, MOEX_LOAD_SLOT_WORDS(8));
	CHECK(!moex__pub_slot(p, 2));
	CHECK(!moex__pub_slot(NULL, 0));
	moex__pub_close(p);
	CHECK_INT(count_loads(NULL, 0), 0);

	moex__pub_open("m", 0, MOEX_LOAD_MAX_LAYERS, 8, &p);
	CHECK(p);
	CHECK(moex__pub_slot(p, MOEX_LOAD_MAX_LAYERS - 1));
	moex__pub_close(p);
	moex__pub_open("m", 0, MOEX_LOAD_MAX_LAYERS + 1, 8, &p);
	CHECK(!p);
	moex__pub_open("m", 0, 1, MOEX_LOAD_MAX_EXPERTS + 1, &p);
	CHECK(!p);
	CHECK_INT(count_loads(NULL, 0), 0);
}

/* publish_into_full_dir(): no mount namespace or tmpfs for it (+ errno). */
#define FULL_DIR_CANNOT	100

/*
 * In a child: dir becomes a 16 KiB tmpfs in a mount namespace of its own,
 * and a publisher of 64 layers of 64 experts (35 KiB) counts a run into
 * every layer there. 0: not published and nothing left in dir; 1:
 * published; 2: a file left; FULL_DIR_CANNOT + errno: no such tmpfs.
 */
static int publish_into_full_dir(const char *dir)
{
	uint32_t counts[64], l, e;
	struct moex_pub *p;
	struct dirent *de;
	int left = 0;
	DIR *d;

	if (unshare(CLONE_NEWNS) ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=16k"))
		return FULL_DIR_CANNOT + (errno > 0 && errno < 100 ? errno : 0);
	setenv("MOEX_STATS_DIR", dir, 1);
	moex__pub_open("m", 0, 64, 64, &p);
	for (e = 0; e < 64; e++)
		counts[e] = 1;
	for (l = 0; p && l < 64; l++)
		moex__pub_add(moex__pub_slot(p, l), moex__pub_updates(p), 64,
			      64, counts);
	if (p) {
		moex__pub_close(p);
		return 1;
	}
	d = opendir(dir);
	while (d && (de = readdir(d)))
		left |= de->d_name[0] != '.';
	if (d)
		closedir(d);
	return d && !left ? 0 : 2;
}

/*
 * A stats directory too full for the file (Docker's /dev/shm is 64 MiB):
 * the file's size was set with ftruncate(), which reserves nothing, and
 * the first run that counted into a page the tmpfs could not give killed
 * the process with SIGBUS. Publishing is best effort: the process lives
 * on without a file. Needs root (a tmpfs mounted in a mount namespace).
 */
TEST(publisher_full_dir_not_published)
{
	char dir[PATH_MAX + 16];
	int st = 0, code;
	pid_t child;

	clear_loads();
	snprintf(dir, sizeof(dir), "%s/full", loads);
	CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST);
	fflush(NULL);
	child = fork();
	if (child == 0)
		_exit(publish_into_full_dir(dir));
	CHECK(child > 0 && waitpid(child, &st, 0) == child);
	rmdir(dir);
	CHECK_MSG(!WIFSIGNALED(st), "the publisher was killed by signal %d",
		  WTERMSIG(st));
	code = WEXITSTATUS(st);
	if (code >= FULL_DIR_CANNOT)
		SKIP("no 16 KiB tmpfs in a mount namespace: %s",
		     strerror(code - FULL_DIR_CANNOT));
	CHECK_MSG(code != 1, "published into a tmpfs too small for the file");
	CHECK_MSG(code != 2, "a file was left in the full directory");
	CHECK_INT(code, 0);
}

TEST(publisher_off_with_empty_dir)
{
	struct moex_model_opts mo = {
		.size = sizeof(mo), .first_layer = MOEX_MODEL_ALL_LAYERS,
		.last_layer = MOEX_MODEL_ALL_LAYERS,
	};
	char mdir[PATH_MAX + 16];
	struct moex_model *model;
	struct run r;
	int ret;

	clear_loads();
	snprintf(mdir, sizeof(mdir), "%s/tiny", models);
	RUN_BIN(&r, MKMODEL, NULL, "--quiet", "--force", "--preset", "tiny",
		mdir);
	CHECK_MSG(r.status == 0, "mkmodel: %s", r.err);
	setenv("MOEX_STATS_DIR", "", 1);
	ret = moex_model_open(mdir, &mo, &model);
	setenv("MOEX_STATS_DIR", loads, 1);
	CHECK_MSG(ret == 0, "model open: %d", ret);
	CHECK_INT(count_loads(NULL, 0), 0);
	moex_model_close(model);
	RUN_BIN(&r, moexctl_bin(), "MOEX_STATS_DIR=", "--sysfs", root, "stats",
		"--watch", "--count", "1");
	CHECK_INT(r.status, 0);
	CHECK_HAS(r.out, "expert load: not published (MOEX_STATS_DIR is empty)");
}

TEST(stats_without_watch_unchanged)
{
	char line[128];
	struct run r;
	size_t i;

	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	RUN(&r, "--sysfs", root, "stats");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK(!strstr(r.out, "expert load"));
	CHECK(!strstr(r.out, "per second"));
	for (i = 0; moex_stats_names[i]; i++) {
		snprintf(line, sizeof(line), "%-16s %" PRIu64 "\n",
			 moex_stats_names[i], vals0[i]);
		CHECK_HAS(r.out, line);
	}
}

TEST(watch_missing_device_fails)
{
	struct run r;

	RUN(&r, "--sysfs", root, "--device", "/dev/moex9", "stats", "--watch",
	    "--count", "3", "--interval", "0.01");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "stats of moex9: No such file or directory");
	CHECK_HAS(r.err, "modprobe moex");
	CHECK_STR(r.out, "");
}

/*
 * run_bin_child_hook: the tool's stdout is /dev/full (writes: ENOSPC), and
 * it gets SIGALRM after 20 s (exec keeps both).
 */
static void stdout_to_dev_full(void)
{
	int fd = open("/dev/full", O_WRONLY);

	if (fd >= 0)
		dup2(fd, STDOUT_FILENO);
	alarm(20);
}

/*
 * A watch whose samples cannot be written (a full disk, /dev/full) stops
 * at the first one, with exit status 1 and one line saying why. It went
 * on, and ended with exit status 0 and nothing said; the second sample of
 * this run would come after a day (SIGALRM ends it after 20 s).
 */
TEST(watch_write_error_stops_and_says_why)
{
	struct stat st;
	struct run r;

	if (stat("/dev/full", &st) || !S_ISCHR(st.st_mode))
		SKIP("no /dev/full here");
	CHECK_INT(fs_make_dev(root, "moex0", vals0), 0);
	run_bin_child_hook = stdout_to_dev_full;
	RUN(&r, "--sysfs", root, "stats", "--watch", "--count", "1");
	run_bin_child_hook = NULL;
	CHECK_INT(r.status, 1);
	CHECK_STR(r.err, "moexctl: stdout: No space left on device\n");
	run_bin_child_hook = stdout_to_dev_full;
	RUN(&r, "--sysfs", root, "stats", "--watch", "--count", "2",
	    "--interval", "86400");
	run_bin_child_hook = NULL;
	CHECK_MSG(r.status == 1, "exit %d (-1: killed by a signal)", r.status);
	CHECK_STR(r.err, "moexctl: stdout: No space left on device\n");
}

TEST(watch_usage_errors)
{
	struct run r;

	RUN(&r, "--help");
	CHECK_INT(r.status, 0);
	CHECK_HAS(r.out, "--watch");
	CHECK_HAS(r.out, "--interval");
	CHECK_HAS(r.out, "--count");
	CHECK_HAS(r.out, "--sysfs");
	RUN(&r, "stats", "--interval", "2");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "--count", "2");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "--watch", "--json");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "--watch", "--count", "0");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "--watch", "--count", "-1");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "--watch", "--count", " -1");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "--watch", "--interval", "0");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "--watch", "--interval", "soon");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "soon");
	/* a number and then more: all of it is the value */
	RUN(&r, "stats", "--watch", "--interval", "1x");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--interval: bad time '1x'");
	RUN(&r, "stats", "--watch", "--count", "2x");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--count: bad number '2x'");
	/* 0.01 to 86400 seconds, both ends taken */
	RUN(&r, "stats", "--watch", "--interval", "0.009");
	CHECK_INT(r.status, 2);
	RUN(&r, "stats", "--watch", "--interval", "86401");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--interval: bad time '86401' (0.01 to 86400 seconds)");
	RUN(&r, "--sysfs", root, "stats", "--watch", "--interval", "0.01",
	    "--count", "1");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	RUN(&r, "--sysfs", root, "stats", "--watch", "--interval", "86400",
	    "--count", "1");
	CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
	CHECK_HAS(r.out, "every 86400 s");
	RUN(&r, "info", "--watch");
	CHECK_INT(r.status, 2);
	RUN(&r, "--sysfs", "", "stats");
	CHECK_INT(r.status, 2);
}

static int make_dirs(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(loads, sizeof(loads), "%s/moex-watch-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	snprintf(models, sizeof(models), "%s/moex-watchm-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (fs_make_root(root, sizeof(root)) || !mkdtemp(loads) ||
	    !mkdtemp(models))
		return -1;
	return fs_make_dev(root, "moex0", vals0);
}

int main(void)
{
	static const struct h_test tests[] = {
		T(watch_rates_from_two_samples),
		T(watch_shows_published_expert_load),
		T(watch_skips_unlocked_file_of_live_pid),
		T(watch_model_name_only_valid_utf8),
		T(watch_expert_load_rates),
		T(watch_late_load_file_has_no_first_rate),
		T(watch_sections_in_name_order),
		T(watch_bad_load_files_are_skipped),
		T(watch_survives_a_shrinking_load_file),
		T(watch_shrunk_file_name_has_no_escapes),
		T(watch_other_sigbus_still_kills),
		T(publisher_of_an_open_model),
		T(publisher_file_and_slots),
		T(publisher_full_dir_not_published),
		T(publisher_off_with_empty_dir),
		T(stats_without_watch_unchanged),
		T(watch_missing_device_fails),
		T(watch_write_error_stops_and_says_why),
		T(watch_usage_errors),
	};
	int ret;

	if (make_dirs()) {
		perror(SUITE ": cannot make the temporary directories");
		printf("%s: 0 passed, 1 failed, 0 skipped\n", SUITE);
		return EXIT_FAILURE;
	}
	/* moexctl gets the tree from --sysfs only */
	unsetenv("MOEX_SYSFS_ROOT");
	setenv("MOEX_STATS_DIR", loads, 1);
	ret = h_run(tests, sizeof(tests) / sizeof(tests[0]), 0, NULL);
	fs_remove(root);
	fs_remove(loads);
	fs_remove(models);
	return ret;
}
