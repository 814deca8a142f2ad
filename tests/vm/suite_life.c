// SPDX-License-Identifier: GPL-2.0
/*
 * moex-vm-suite: the module's life and the processes': loading, the
 * devices that appear, kill -9 of processes holding regions, dma-bufs, a
 * pin or a copy in flight, a moex fd outliving the process that pinned,
 * moexctl selftest, unload refused while anything holds the module,
 * unload (also right after a killed copy), reload, and the final unload.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suite.h"

static bool wait_path(const char *path, bool exist, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;

	while (path_exists(path) != exist) {
		if (now_ms() > end)
			return false;
		sleep_ms(10);
	}
	return true;
}

static int check_chardev(int dev)
{
	char node[32], sys[64], buf[32];
	unsigned int maj, min;
	struct stat st;

	snprintf(node, sizeof(node), "/dev/moex%d", dev);
	snprintf(sys, sizeof(sys), "/sys/class/moex/moex%d/dev", dev);
	CHECK(wait_path(node, true, 10000), "%s did not appear", node);
	CHECK(!stat(node, &st), "stat %s: %s", node, strerror(errno));
	CHECK(S_ISCHR(st.st_mode), "%s is not a character device", node);
	CHECK(read_file(sys, buf, sizeof(buf)) > 0 &&
	      sscanf(buf, "%u:%u", &maj, &min) == 2, "cannot read %s", sys);
	CHECK(major(st.st_rdev) == maj && minor(st.st_rdev) == min,
	      "%s is %u:%u, %s says %u:%u", node, major(st.st_rdev),
	      minor(st.st_rdev), sys, maj, min);
	return T_PASS;
}

/* ---- loading ---------------------------------------------------------------------- */

static int t_module_load(const struct test *t)
{
	int err;

	(void)t;
	if (mod_present()) {
		g_loaded = true;
		discover_devices();
		return FAIL("moex was already loaded when the suite started");
	}
	err = mod_load(g_module_path, g_module_params);
	CHECK(!err, "finit_module(%s): %s", g_module_path, errname(err));
	g_loaded = true;
	CHECK(mod_present(), "/sys/module/moex missing after finit_module");
	CHECK(wait_path("/sys/class/moex/moex0", true, 10000),
	      "/sys/class/moex/moex0 did not appear");
	discover_devices();
	return T_PASS;
}

static int t_module_load_again(const struct test *t)
{
	int err;

	(void)t;
	err = mod_load(g_module_path, g_module_params);
	CHECK(err == EEXIST, "a second finit_module: expected EEXIST, got %s",
	      errname(err));
	return T_PASS;
}

/* /dev/moex0, and /dev/moexN for the edu PCI device. */
static int t_module_devices(const struct test *t)
{
	char link[256], path[320], buf[32];
	ssize_t n;

	(void)t;
	TRY(check_chardev(0));
	if (!g_edu_pci) {
		note("no edu PCI device in this VM: only moex0 checked");
		return T_PASS;
	}
	CHECK(g_edu >= 0, "the VM has an edu PCI device but no /dev/moexN has engine edu");
	CHECK(g_edu != 0, "moex0 has engine edu");
	TRY(check_chardev(g_edu));
	snprintf(path, sizeof(path), "/sys/class/moex/moex%d/device", g_edu);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n > 0, "readlink %s: %s", path, strerror(errno));
	link[n] = '\0';
	snprintf(path, sizeof(path), "/sys/class/moex/moex%d/device/vendor", g_edu);
	CHECK(read_file(path, buf, sizeof(buf)) > 0 && !strcmp(buf, "0x1234\n"),
	      "moex%d's parent %s is not the edu device (vendor %s)", g_edu, link,
	      buf);
	snprintf(path, sizeof(path), "/sys/class/moex/moex%d/device/driver", g_edu);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n > 0, "readlink %s: %s", path, strerror(errno));
	link[n] = '\0';
	CHECK(strstr(link, "moex"), "edu device bound to driver %s", link);
	return T_PASS;
}

/* ---- children that report over a unix socket ---------------------------------------- */

static int send_msg(int sock, char tag, int fd, const char *text)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	char data[512];
	struct iovec iov;
	struct msghdr mh;

	data[0] = tag;
	snprintf(data + 1, sizeof(data) - 1, "%s", text ? text : "");
	iov.iov_base = data;
	iov.iov_len = 1 + strlen(data + 1);
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		u.h.cmsg_level = SOL_SOCKET;
		u.h.cmsg_type = SCM_RIGHTS;
		u.h.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&u.h), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, 0) < 0 ? -1 : 0;
}

/* 'R' (ready, maybe with an fd and text) or 'E' (error text); T_* */
static int recv_msg_text(int sock, int timeout_ms, int *fd, char *text,
			 size_t size)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct pollfd p = { .fd = sock, .events = POLLIN };
	char data[512];
	struct iovec iov = { data, sizeof(data) - 1 };
	struct msghdr mh;
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	CHECK(poll(&p, 1, timeout_ms) == 1, "the child did not get ready in %d s",
	      timeout_ms / 1000);
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	CHECK(n > 0, "the child died before it was ready");
	data[n] = '\0';
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	track_fd(*fd);
	CHECK(data[0] == 'R', "in child: %s", data + 1);
	if (size) {
		size_t n = strnlen(data + 1, size - 1);

		memcpy(text, data + 1, n);
		text[n] = '\0';
	}
	return T_PASS;
}

static int recv_msg(int sock, int timeout_ms, int *fd)
{
	return recv_msg_text(sock, timeout_ms, fd, NULL, 0);
}

/*
 * Fork a child that runs @fn (which sends 'R' when it is ready) and then
 * waits to be killed; a failing @fn sends 'E' and its message.
 */
static pid_t spawn(int (*fn)(int sock, void *arg), void *arg, int *sock)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	pid = fork_closing(sv);
	if (pid < 0)
		return -1;
	if (!pid) {
		close(sv[0]);
		cleanup_forget();
		alarm(300);
		if (fn(sv[1], arg) != T_PASS)
			send_msg(sv[1], 'E', -1, test_msg());
		for (;;)
			pause();
	}
	track_pid(pid);
	close(sv[1]);
	*sock = track_fd(sv[0]);
	return pid;
}

static int kill_reap(pid_t pid)
{
	int status;

	CHECK(!kill(pid, SIGKILL), "kill: %s", strerror(errno));
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	untrack_pid(pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	      "child ended with status %#x, not by SIGKILL", status);
	return T_PASS;
}

static int check_all_zero(int dev)
{
	long long b = stat_get(dev, ST_PINNED_BYTES);
	long long r = stat_get(dev, ST_PINNED_REGIONS);

	CHECK(b == 0 && r == 0, "moex%d pinned_bytes %lld, pinned_regions %lld; expected 0",
	      dev, b, r);
	return T_PASS;
}

/* ---- kill -9 ---------------------------------------------------------------------- */

#define KILL_SEED 0x6b696c6cULL

static int kid_dmabuf(int sock, void *arg)
{
	uint64_t seed = KILL_SEED;
	uint32_t ha, hb;
	struct moex_device *md;
	char *a, *b;
	int dfd;

	(void)arg;
	OPEN_DEV(0, &md);
	MAP(a, buf_4k(1 * MIB));
	MAP(b, buf_any(2 * MIB));
	fill_random_r(b, 2 * MIB, &seed);
	CHECK_OK(do_pin(md, a, 1 * MIB, 0, &ha));
	CHECK_OK(do_pin(md, b, 2 * MIB, 0, &hb));
	CHECK_OK(do_export(md, hb, &dfd));
	CHECK(!send_msg(sock, 'R', dfd, NULL), "sendmsg: %s", strerror(errno));
	return T_PASS;
}

static int t_kill9_dmabuf(const struct test *t)
{
	uint64_t seed = KILL_SEED;
	unsigned char *m, *want;
	struct stats s0;
	int sock, dfd, rc;
	pid_t pid;

	(void)t;
	STATS(0, &s0);
	pid = spawn(kid_dmabuf, NULL, &sock);
	CHECK(pid > 0, "fork: %s", strerror(errno));
	TRY(recv_msg(sock, 60000, &dfd));
	CHECK(dfd >= 0, "no dma-buf fd received");
	EXPECT_STATS(0, &s0, DELTA([ST_PINNED_BYTES] = 3 * MIB, [ST_PINNED_REGIONS] = 2,
				   [ST_PIN_CALLS] = 2, [ST_DMABUF_EXPORTS] = 1,
				   [ST_OPEN_FILES] = 1));
	TRY(kill_reap(pid));
	WAIT_STATS(0, &s0, DELTA([ST_PINNED_BYTES] = 2 * MIB, [ST_PINNED_REGIONS] = 1,
				 [ST_PIN_CALLS] = 2, [ST_DMABUF_EXPORTS] = 1), 20000);
	/* the dead process's pages, through the dma-buf it left */
	m = xmap(2 * MIB, PROT_READ, MAP_SHARED, dfd, 0);
	CHECK(m, "mmap of the dead child's dma-buf: %s", strerror(errno));
	want = malloc(2 * MIB);
	CHECK(want, "malloc");
	fill_random_r(want, 2 * MIB, &seed);
	rc = check_bytes_at(__FILE__, __LINE__, "dead child's dma-buf", m, want,
			    2 * MIB);
	free(want);
	TRY(rc);
	xunmap(m);
	xclose(dfd);
	WAIT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 2, [ST_DMABUF_EXPORTS] = 1), 20000);
	return check_all_zero(0);
}

static int kid_regions(int sock, void *arg)
{
	uint32_t h;
	struct moex_device *md, *me;
	char *a, *b, *c;

	(void)arg;
	OPEN_DEV(0, &md);
	MAP(a, buf_thp(2 * MIB));
	MAP(b, buf_4k(256 * KIB));
	MAP(c, buf_4k(64 * KIB));
	CHECK_OK(do_pin(md, a, 2 * MIB, 0, &h));
	CHECK_OK(do_pin(md, b, 256 * KIB, 0, &h));
	CHECK_OK(do_pin(md, c, 64 * KIB, MOEX_PIN_READONLY, &h));
	if (g_edu >= 0) {
		OPEN_DEV(g_edu, &me);
		CHECK_OK(do_pin(me, b, 256 * KIB, 0, &h));
	}
	CHECK(!send_msg(sock, 'R', -1, NULL), "sendmsg: %s", strerror(errno));
	return T_PASS;
}

static int t_kill9_regions(const struct test *t)
{
	struct stats s0, s1;
	int sock, fd;
	pid_t pid;

	(void)t;
	STATS(0, &s0);
	if (g_edu >= 0)
		STATS(g_edu, &s1);
	pid = spawn(kid_regions, NULL, &sock);
	CHECK(pid > 0, "fork: %s", strerror(errno));
	TRY(recv_msg(sock, 60000, &fd));
	EXPECT_STATS(0, &s0, DELTA([ST_PINNED_BYTES] = 2 * MIB + 320 * KIB,
				   [ST_PINNED_REGIONS] = 3, [ST_PIN_CALLS] = 3,
				   [ST_OPEN_FILES] = 1));
	if (g_edu >= 0)
		EXPECT_STATS(g_edu, &s1, DELTA([ST_PINNED_BYTES] = 256 * KIB,
					       [ST_PINNED_REGIONS] = 1,
					       [ST_PIN_CALLS] = 1,
					       [ST_OPEN_FILES] = 1));
	TRY(kill_reap(pid));
	WAIT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 3), 20000);
	TRY(check_all_zero(0));
	if (g_edu >= 0) {
		WAIT_STATS(g_edu, &s1, DELTA([ST_PIN_CALLS] = 1), 20000);
		TRY(check_all_zero(g_edu));
	}
	return T_PASS;
}

#define EDU_KILL_LEN	(60 * KIB)

static int kid_edu_copy(int sock, void *arg)
{
	uint64_t len = (uintptr_t)arg;
	uint32_t ha, hb;
	struct moex_device *md;
	char *a, *b;
	int err;

	OPEN_DEV(g_edu, &md);
	MAP(a, buf_4k(64 * KIB));
	MAP(b, buf_4k(64 * KIB));
	fill_random(a, 64 * KIB);
	CHECK_OK(do_pin(md, a, 64 * KIB, 0, &ha));
	CHECK_OK(do_pin(md, b, 64 * KIB, 0, &hb));
	CHECK(!send_msg(sock, 'R', -1, NULL), "sendmsg: %s", strerror(errno));
	err = do_copy(md, ha, hb, 0, 0, len);
	CHECK(!err, "COPY: %s", errname(err));
	return T_PASS;
}

/* A child starts an edu COPY of @len bytes and is killed while it waits. */
static int kill_in_edu_copy(uint64_t len)
{
	uint64_t end;
	int sock, fd;
	char st = '?';
	pid_t pid;

	pid = spawn(kid_edu_copy, (void *)(uintptr_t)len, &sock);
	CHECK(pid > 0, "fork: %s", strerror(errno));
	TRY(recv_msg(sock, 60000, &fd));
	/* TASK_KILLABLE shows as D: the child waits for the engine */
	end = now_ms() + 30000;
	while (now_ms() < end && (st = proc_state(pid)) != 'D')
		sleep_ms(2);
	CHECK(st == 'D', "the child never blocked in the edu COPY (state %c)", st);
	sleep_ms(200);
	return kill_reap(pid);
}

static int t_kill9_edu_copy(const struct test *t)
{
	long long pinned, calls;
	struct stats s0;

	(void)t;
	if (g_edu < 0)
		return skip("no edu device (/dev/moexN with engine edu)");
	STATS(g_edu, &s0);
	TRY(kill_in_edu_copy(EDU_KILL_LEN));

	/* Until the copy completes, the engine holds both regions. */
	pinned = stat_get(g_edu, ST_PINNED_BYTES);
	calls = stat_get(g_edu, ST_COPY_CALLS) + stat_get(g_edu, ST_COPY_FAILURES);
	if (calls == s0.v[ST_COPY_CALLS] + s0.v[ST_COPY_FAILURES]) {
		CHECK(pinned == s0.v[ST_PINNED_BYTES] + 128 * 1024,
		      "copy still in flight after the kill, but pinned_bytes is %lld, expected %lld",
		      pinned, s0.v[ST_PINNED_BYTES] + 128 * 1024);
		note("kill9_edu_copy: regions held by the copy in flight after the kill");
	}
	WAIT_STATS(g_edu, &s0, DELTA([ST_PIN_CALLS] = 2, [ST_COPY_CALLS] = 1,
				     [ST_COPY_BYTES] = EDU_KILL_LEN), 60000);
	return check_all_zero(g_edu);
}

#define PIN_KILL_LEN	(512 * MIB)

static int kid_pin(int sock, void *arg)
{
	struct moex_device *md;
	uint32_t h;
	void *p;

	(void)arg;
	OPEN_DEV(0, &md);
	MAP(p, xmap(PIN_KILL_LEN, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
	CHECK(!send_msg(sock, 'R', -1, NULL), "sendmsg: %s", strerror(errno));
	CHECK_OK(do_pin(md, p, PIN_KILL_LEN, 0, &h));
	return T_PASS;
}

/* Killed while REGION_PIN faults in and pins 512 MiB: nothing stays. */
static int t_kill9_during_pin(const struct test *t)
{
	struct stats s0, s1;
	uint64_t end;
	long long vm = 0;
	int sock, fd;
	pid_t pid;

	(void)t;
	STATS(0, &s0);
	pid = spawn(kid_pin, NULL, &sock);
	CHECK(pid > 0, "fork: %s", strerror(errno));
	TRY(recv_msg(sock, 60000, &fd));
	/* the charge comes before the pinning: VmPin > 0 means inside */
	end = now_ms() + 30000;
	while (now_ms() < end && (vm = vmpin_kb(pid)) <= 0)
		sleep_ms(1);
	CHECK(vm > 0, "the child's VmPin never moved (%lld)", vm);
	TRY(kill_reap(pid));
	end = now_ms() + 60000;
	do {
		STATS(0, &s1);
		if (s1.v[ST_PINNED_BYTES] == s0.v[ST_PINNED_BYTES] &&
		    s1.v[ST_OPEN_FILES] == s0.v[ST_OPEN_FILES])
			break;
		sleep_ms(20);
	} while (now_ms() < end);
	if (s1.v[ST_PIN_CALLS] > s0.v[ST_PIN_CALLS])
		note("kill9_during_pin: the pin had completed (VmPin %lld kB seen)", vm);
	else
		note("kill9_during_pin: killed inside REGION_PIN (VmPin %lld kB seen)", vm);
	if (s1.v[ST_PIN_CALLS] > s0.v[ST_PIN_CALLS])
		EXPECT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 1));
	else
		EXPECT_STATS(0, &s0, DELTA([ST_PIN_FAILURES] = 1));
	return check_all_zero(0);
}

/* ---- a moex fd outliving the process that pinned ------------------------------------ */

#define PASS_SEED 0x70617373ULL

static int kid_pass_fd(int sock, void *arg)
{
	uint64_t seed = PASS_SEED;
	char text[64];
	struct moex_device *md;
	uint32_t h;
	void *p;

	(void)arg;
	OPEN_DEV(0, &md);
	MAP(p, buf_4k(1 * MIB));
	fill_random_r(p, 1 * MIB, &seed);
	CHECK_OK(do_pin(md, p, 1 * MIB, 0, &h));
	snprintf(text, sizeof(text), "%u %llu", h, (unsigned long long)(uintptr_t)p);
	CHECK(!send_msg(sock, 'R', mdev_fd(md), text), "sendmsg: %s", strerror(errno));
	_exit(0);	/* a normal exit, with the region pinned and charged */
}

/*
 * A process pins, hands its moex fd to another over a unix socket and
 * exits. The region lives on with the file; the receiver names it by the
 * same handle, copies with it, exports it and unpins it (uncharging the
 * dead process's mm).
 */
static int t_fd_outlives_pinner(const struct test *t)
{
	uint64_t seed = PASS_SEED;
	unsigned long long addr;
	struct moex_region_info ri;
	struct moex_region_export exp;
	unsigned char *want, *m;
	struct stats s0;
	char text[64];
	uint32_t h;
	int sock, fd, dfd, status, rc;
	pid_t pid;

	(void)t;
	STATS(0, &s0);
	pid = spawn(kid_pass_fd, NULL, &sock);
	CHECK(pid > 0, "fork: %s", strerror(errno));
	TRY(recv_msg_text(sock, 60000, &fd, text, sizeof(text)));
	CHECK(fd >= 0 && sscanf(text, "%u %llu", &h, &addr) == 2,
	      "no moex fd or handle from the child");
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	untrack_pid(pid);
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status), "child status %#x", status);
	EXPECT_STATS(0, &s0, DELTA([ST_PINNED_BYTES] = 1 * MIB, [ST_PINNED_REGIONS] = 1,
				   [ST_PIN_CALLS] = 1, [ST_OPEN_FILES] = 1));
	/*
	 * Raw ioctls: the descriptor came over a socket, and libmoex only
	 * opens a device by path (it cannot adopt a descriptor).
	 */
	CHECK_OK(raw_rinfo(fd, h, &ri));
	CHECK(ri.addr == addr && ri.length == 1 * MIB,
	      "REGION_INFO addr %#llx length %llu, expected %#llx and 1 MiB",
	      (unsigned long long)ri.addr, (unsigned long long)ri.length, addr);
	CHECK_OK(raw_copy(fd, h, h, 0, 512 * KIB, 4096));
	memset(&exp, 0, sizeof(exp));
	exp.handle = h;
	CHECK_OK(xioctl(fd, MOEX_IOCTL_REGION_EXPORT, &exp));
	dfd = track_fd((int)exp.fd);
	m = xmap(1 * MIB, PROT_READ, MAP_SHARED, dfd, 0);
	CHECK(m, "mmap of the dma-buf: %s", strerror(errno));
	want = malloc(1 * MIB);
	CHECK(want, "malloc");
	fill_random_r(want, 1 * MIB, &seed);
	memcpy(want + 512 * KIB, want, 4096);
	rc = check_bytes_at(__FILE__, __LINE__, "the exited process's region", m,
			    want, 1 * MIB);
	free(want);
	TRY(rc);
	CHECK_OK(raw_unpin(fd, h));
	xunmap(m);
	xclose(dfd);
	xclose(fd);
	WAIT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1,
				 [ST_COPY_CALLS] = 1, [ST_COPY_BYTES] = 4096,
				 [ST_DMABUF_EXPORTS] = 1), 10000);
	return T_PASS;
}

/* ---- the edu device goes away while its file is open ------------------------------- */

static int edu_bdf(char *bdf, size_t size)
{
	char path[96], link[256], *base;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/class/moex/moex%d/device", g_edu);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n > 0, "readlink %s: %s", path, strerror(errno));
	link[n] = '\0';
	base = strrchr(link, '/');
	base = base ? base + 1 : link;
	CHECK(strlen(base) < size, "PCI address %s too long", base);
	memcpy(bdf, base, strlen(base) + 1);
	return T_PASS;
}

/*
 * PCI hot-unplug of the edu device (sysfs remove) with a file, regions, a
 * dma-buf and its mapping still in use: the device goes, commands that
 * need the engine fail with ENODEV, what is pinned stays usable until it
 * is let go, and a rescan brings a working device back.
 */
static int t_edu_hot_unplug(const struct test *t)
{
	char bdf[64], path[160], node[32];
	struct moex_device_info info;
	struct moex_region_desc ri;
	struct moex_device *md;
	unsigned char *a, *b, *m;
	uint32_t ha, hb, h;
	uint64_t end;
	int dfd, err, old = g_edu;

	(void)t;
	if (g_edu < 0)
		return skip("no edu device (/dev/moexN with engine edu)");
	TRY(edu_bdf(bdf, sizeof(bdf)));
	OPEN_DEV(g_edu, &md);
	MAP(a, buf_4k(64 * KIB));
	MAP(b, buf_4k(64 * KIB));
	fill_random(a, 64 * KIB);
	CHECK_OK(do_pin(md, a, 64 * KIB, 0, &ha));
	CHECK_OK(do_pin(md, b, 64 * KIB, 0, &hb));
	CHECK_OK(do_export(md, ha, &dfd));
	m = xmap(64 * KIB, PROT_READ, MAP_SHARED, dfd, 0);
	CHECK(m, "mmap of the dma-buf: %s", strerror(errno));
	CHECK_OK(do_rinfo(md, ha, &ri));
	CHECK(ri.dma_segments > 0, "REGION_INFO dma_segments 0 on the edu engine");

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/remove", bdf);
	err = write_file(path, "1");
	CHECK(!err, "write %s: %s", path, errname(err));
	snprintf(path, sizeof(path), "/sys/class/moex/moex%d", old);
	snprintf(node, sizeof(node), "/dev/moex%d", old);
	CHECK(wait_path(path, false, 20000), "%s still there after the PCI remove",
	      path);
	CHECK(wait_path(node, false, 10000), "%s still there after the PCI remove",
	      node);
	g_edu = -1;

	CHECK_ERRNO(do_info(md, &info), ENODEV);
	CHECK_ERRNO(do_copy(md, ha, hb, 0, 0, 100), ENODEV);
	err = do_pin(md, b, 4096, 0, &h);
	CHECK(err == ENODEV, "REGION_PIN on a removed device: expected ENODEV, got %s",
	      errname(err));
	CHECK_OK(do_rinfo(md, ha, &ri));
	CHECK(ri.length == 64 * KIB, "REGION_INFO length %llu",
	      (unsigned long long)ri.length);
	/* the DMA mappings went with the device, the pages stay */
	CHECK(ri.dma_segments == 0,
	      "REGION_INFO dma_segments %u after the device went, expected 0",
	      ri.dma_segments);
	CHECK_BYTES("dma-buf mapping after the device went", m, a, 64 * KIB);
	CHECK_OK(do_unpin(md, hb));
	CHECK_OK(do_unpin(md, ha));
	mdev_close(md);
	xclose(dfd);
	xunmap(m);		/* the last reference: unmaps for a gone device */

	err = write_file("/sys/bus/pci/rescan", "1");
	CHECK(!err, "write /sys/bus/pci/rescan: %s", errname(err));
	end = now_ms() + 20000;
	do {
		discover_devices();
		if (g_edu >= 0)
			break;
		sleep_ms(50);
	} while (now_ms() < end);
	CHECK(g_edu >= 0, "no edu moex device after the PCI rescan");
	TRY(check_chardev(g_edu));
	OPEN_DEV(g_edu, &md);
	CHECK_OK(do_info(md, &info));
	CHECK(info.engine == MOEX_ENGINE_EDU, "engine %u after the rescan", info.engine);
	CHECK_OK(do_pin(md, a, 64 * KIB, 0, &ha));
	CHECK_OK(do_pin(md, b, 64 * KIB, 0, &hb));
	CHECK_OK(do_copy(md, ha, hb, 7, 9, 300));
	CHECK_BYTES("edu copy after the rescan", b + 9, a + 7, 300);
	note("edu device %s removed and rescanned: moex%d then moex%d", bdf, old,
	     g_edu);
	return T_PASS;
}

/* ---- moexctl selftest --------------------------------------------------------------- */

static int t_moexctl_selftest(const struct test *t)
{
	char *argv[] = { (char *)g_moexctl, "selftest", NULL };
	int rc;

	(void)t;
	if (!path_exists(g_moexctl))
		return skip("%s not found", g_moexctl);
	rc = run_prog(argv, 500, true);
	CHECK(rc == 0, "moexctl selftest: exit status %d, expected 0", rc);
	return T_PASS;
}

/* ---- unload -------------------------------------------------------------------------- */

static int expect_unload_busy(const char *what)
{
	int err = mod_unload();

	if (!err) {
		g_loaded = false;
		return FAIL("delete_module succeeded while %s", what);
	}
	CHECK(err == EWOULDBLOCK || err == EAGAIN || err == EBUSY,
	      "delete_module while %s: expected EWOULDBLOCK/EBUSY, got %s", what,
	      errname(err));
	CHECK(mod_present(), "/sys/module/moex gone after a refused delete_module");
	return T_PASS;
}

static int t_unload_busy_fd(const struct test *t)
{
	struct moex_device *md;

	(void)t;
	OPEN_DEV(0, &md);
	TRY(expect_unload_busy("/dev/moex0 is open"));
	mdev_close(md);
	if (g_edu >= 0) {
		OPEN_DEV(g_edu, &md);
		TRY(expect_unload_busy("the edu device is open"));
	}
	return T_PASS;
}

/* Only a dma-buf fd (@map false) or only its mapping (@map true) is left. */
static int unload_busy_exported(bool map)
{
	struct stats s0;
	uint32_t h;
	struct moex_device *md;
	void *p, *m = NULL;
	int dfd;

	STATS(0, &s0);
	OPEN_DEV(0, &md);
	MAP(p, buf_4k(256 * KIB));
	CHECK_OK(do_pin(md, p, 256 * KIB, 0, &h));
	CHECK_OK(do_export(md, h, &dfd));
	if (map) {
		m = xmap(256 * KIB, PROT_READ, MAP_SHARED, dfd, 0);
		CHECK(m, "mmap of the dma-buf: %s", strerror(errno));
		xclose(dfd);
	}
	CHECK_OK(do_unpin(md, h));
	mdev_close(md);
	TRY(expect_unload_busy(map ? "only a dma-buf mapping is left" :
				     "only a dma-buf fd is left"));
	EXPECT_STATS(0, &s0, DELTA([ST_PINNED_BYTES] = 256 * KIB,
				   [ST_PINNED_REGIONS] = 1, [ST_PIN_CALLS] = 1,
				   [ST_UNPIN_CALLS] = 1, [ST_DMABUF_EXPORTS] = 1));
	if (map)
		xunmap(m);
	else
		xclose(dfd);
	WAIT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 1, [ST_UNPIN_CALLS] = 1,
				 [ST_DMABUF_EXPORTS] = 1), 10000);
	return T_PASS;
}

static int t_unload_busy_dmabuf(const struct test *t)
{
	(void)t;
	return unload_busy_exported(false);
}

static int t_unload_busy_mapping(const struct test *t)
{
	(void)t;
	return unload_busy_exported(true);
}

static int unload_now(void)
{
	uint64_t end = now_ms() + 20000;
	int err, d;

	/* whatever a test released asynchronously is gone first */
	for (d = 0; d < 64; d++) {
		while (dev_present(d) &&
		       (stat_get(d, ST_OPEN_FILES) || stat_get(d, ST_PINNED_REGIONS)) &&
		       now_ms() < end)
			sleep_ms(20);
	}
	err = mod_unload();
	CHECK(!err, "delete_module(moex, O_NONBLOCK) with nothing open: %s",
	      errname(err));
	g_loaded = false;
	CHECK(wait_path("/sys/module/moex", false, 10000),
	      "/sys/module/moex still there after delete_module");
	CHECK(wait_path("/sys/class/moex/moex0", false, 10000),
	      "/sys/class/moex/moex0 still there after delete_module");
	CHECK(wait_path("/dev/moex0", false, 10000),
	      "/dev/moex0 still there after delete_module");
	return T_PASS;
}

static int t_module_unload(const struct test *t)
{
	(void)t;
	return unload_now();
}

/*
 * Unload right after a process was killed waiting for an edu COPY: nothing
 * is open, the copy may still be running and holds its regions. The unload
 * succeeds (at once or once the copy is done) and leaves a clean log.
 */
static int t_module_unload_copy_in_flight(const struct test *t)
{
	uint64_t end;
	int err;

	(void)t;
	if (g_edu < 0)
		return skip("no edu device (/dev/moexN with engine edu)");
	TRY(kill_in_edu_copy(20 * KIB));
	err = mod_unload();
	end = now_ms() + 60000;
	while ((err == EWOULDBLOCK || err == EAGAIN || err == EBUSY) &&
	       now_ms() < end) {
		sleep_ms(100);
		err = mod_unload();
	}
	CHECK(!err, "delete_module after the kill: %s", errname(err));
	g_loaded = false;
	CHECK(wait_path("/sys/module/moex", false, 10000),
	      "/sys/module/moex still there after delete_module");
	CHECK(wait_path("/dev/moex0", false, 10000),
	      "/dev/moex0 still there after delete_module");
	return T_PASS;
}

/*
 * Load again after the unload: edu_dma_bits outside [28, 64] is refused
 * first (EINVAL, nothing loaded), then the devices come back with zeroed
 * counters.
 */
static int t_module_reload(const struct test *t)
{
	static const char *const bad[] = { "edu_dma_bits=27",
					   "edu_dma_bits=65" };
	struct stats s;
	int err, i;

	(void)t;
	if (g_loaded)
		return skip("moex is still loaded: the unload test failed");
	/* a parameter out of range fails the load itself */
	for (i = 0; i < 2; i++) {
		err = mod_load(g_module_path, bad[i]);
		if (!err)
			g_loaded = true;
		CHECK(err == EINVAL, "finit_module(%s, \"%s\"): %s, expected EINVAL",
		      g_module_path, bad[i], errname(err));
		CHECK(!mod_present(), "moex loaded with \"%s\"", bad[i]);
	}
	err = mod_load(g_module_path, g_module_params);
	CHECK(!err, "finit_module(%s) again: %s", g_module_path, errname(err));
	g_loaded = true;
	CHECK(wait_path("/sys/class/moex/moex0", true, 10000),
	      "/sys/class/moex/moex0 did not appear");
	discover_devices();
	TRY(check_chardev(0));
	if (g_edu_pci) {
		CHECK(g_edu >= 0, "no edu moex device after the reload");
		TRY(check_chardev(g_edu));
		STATS(g_edu, &s);
		for (i = 0; i < NSTATS; i++)
			CHECK(!s.v[i], "moex%d %s %lld after the reload", g_edu,
			      stat_names[i], s.v[i]);
	}
	STATS(0, &s);
	for (i = 0; i < NSTATS; i++)
		CHECK(!s.v[i], "moex0 %s %lld after the reload", stat_names[i], s.v[i]);
	return T_PASS;
}

/* The reloaded module works: pin, copy, export, unpin. */
static int t_reload_works(const struct test *t)
{
	struct moex_device_info info;
	struct moex_device *md;
	struct stats s0;
	unsigned char *a, *b;
	uint32_t ha, hb;
	int dfd;

	(void)t;
	OPEN_DEV(0, &md);
	MAP(a, buf_4k(64 * KIB));
	MAP(b, buf_4k(64 * KIB));
	fill_random(a, 64 * KIB);
	STATS(0, &s0);
	CHECK_OK(do_info(md, &info));
	CHECK(info.abi_version == MOEX_ABI_VERSION, "abi_version %u", info.abi_version);
	CHECK_OK(do_pin(md, a, 64 * KIB, 0, &ha));
	CHECK_OK(do_pin(md, b, 64 * KIB, 0, &hb));
	CHECK_OK(do_copy(md, ha, hb, 10, 20, 30000));
	CHECK_BYTES("copy after reload", b + 20, a + 10, 30000);
	CHECK_OK(do_export(md, hb, &dfd));
	CHECK_OK(do_unpin(md, ha));
	CHECK_OK(do_unpin(md, hb));
	xclose(dfd);
	WAIT_STATS(0, &s0, DELTA([ST_PIN_CALLS] = 2, [ST_UNPIN_CALLS] = 2,
				 [ST_COPY_CALLS] = 1, [ST_COPY_BYTES] = 30000,
				 [ST_DMABUF_EXPORTS] = 1), 10000);
	return T_PASS;
}

static int t_module_unload_final(const struct test *t)
{
	(void)t;
	if (!g_loaded && !mod_present())
		return skip("moex is not loaded");
	/* the runner checks the kernel log after this test too */
	return unload_now();
}

const struct test suite_load_tests[] = {
	{ "module_load", t_module_load, NULL, TF_ALWAYS | TF_NOLEAK },
	{ "module_load_again_eexist", t_module_load_again, NULL, TF_MODULE | TF_NOLEAK },
	{ "module_devices", t_module_devices, NULL, TF_MODULE },
	{ NULL, NULL, NULL, 0 }
};

const struct test suite_kill_tests[] = {
	{ "kill9_with_dmabuf", t_kill9_dmabuf, NULL, TF_MODULE },
	{ "kill9_with_regions", t_kill9_regions, NULL, TF_MODULE },
	{ "kill9_in_edu_copy", t_kill9_edu_copy, NULL, TF_MODULE },
	{ "kill9_during_pin", t_kill9_during_pin, NULL, TF_MODULE },
	{ "fd_outlives_pinning_process", t_fd_outlives_pinner, NULL, TF_MODULE },
	{ "edu_hot_unplug_while_open", t_edu_hot_unplug, NULL, TF_MODULE },
	{ NULL, NULL, NULL, 0 }
};

const struct test suite_end_tests[] = {
	{ "moexctl_selftest", t_moexctl_selftest, NULL, TF_MODULE },
	{ "unload_busy_open_fd", t_unload_busy_fd, NULL, TF_MODULE },
	{ "unload_busy_dmabuf_fd", t_unload_busy_dmabuf, NULL, TF_MODULE },
	{ "unload_busy_dmabuf_mapping", t_unload_busy_mapping, NULL, TF_MODULE },
	{ "module_unload", t_module_unload, NULL, TF_MODULE | TF_NOLEAK },
	{ "module_reload", t_module_reload, NULL, TF_NOLEAK },
	{ "module_reload_works", t_reload_works, NULL, TF_MODULE },
	{ "module_unload_copy_in_flight", t_module_unload_copy_in_flight, NULL,
	  TF_MODULE | TF_NOLEAK },
	{ "module_reload_again", t_module_reload, NULL, TF_NOLEAK },
	{ "module_unload_final", t_module_unload_final, NULL, TF_ALWAYS | TF_NOLEAK },
	{ NULL, NULL, NULL, 0 }
};
