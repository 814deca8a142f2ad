/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * hipemu.cpp - the CPU device and runtime behind hipemu.h: fibers, the
 * grid runner, memory, streams, events. hipemu.h says what is emulated
 * and how faithfully.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "hipemu.h"

/* ---- faults and errors ---- */

/* The first fault, sticky: every later call returns it. */
static std::atomic<int> g_fault{ hipSuccess };
/* A bad argument or launch shape: cleared by hipGetLastError(). */
static thread_local hipError_t t_last = hipSuccess;

static hipError_t ret(hipError_t e)
{
	if (g_fault.load())
		return hipErrorLaunchFailure;
	if (e != hipSuccess)
		t_last = e;
	return e;
}

hipError_t hipGetLastError(void)
{
	hipError_t e = t_last;

	t_last = hipSuccess;
	return g_fault.load() ? hipErrorLaunchFailure : e;
}

const char *hipGetErrorString(hipError_t e)
{
	switch (e) {
	case hipSuccess:
		return "no error";
	case hipErrorInvalidValue:
		return "invalid argument";
	case hipErrorOutOfMemory:
		return "out of memory";
	case hipErrorNoDevice:
		return "no device (HIPEMU_DEVICES=0)";
	case hipErrorInvalidDevice:
		return "invalid device ordinal";
	case hipErrorInvalidHandle:
		return "invalid resource handle (a stream or event of another "
		       "device than the calling thread's current one?)";
	case hipErrorNotReady:
		return "not ready";
	case hipErrorHostMemoryAlreadyRegistered:
		return "host memory already registered";
	case hipErrorHostMemoryNotRegistered:
		return "host memory not registered";
	case hipErrorLaunchFailure:
		return "a kernel faulted (see stderr)";
	default:
		return "hipemu error";
	}
}

/* ---- fibers ---- */

/*
 * The device lock: one kernel at a time. It protects the fibers, the
 * grid position and a kernel's __shared__ storage.
 */
static std::mutex g_device;

hipemu_fiber *hipemu_cur;
hipemu_grid hipemu_now;

static std::vector<hipemu_fiber> g_fibers;
static unsigned int g_nthreads;		/* threads in the running block */
static bool g_block_faulted;		/* stop the block at the next switch */
static bool g_reverse;			/* release warps last first */
static unsigned long g_launches;
static const std::function<void()> *g_body;
static void *g_sched_sp;

#define FIBER_STACK (256 * 1024)
#define HIPEMU_MAX_WARPS (1024 / HIPEMU_WARP)

#if defined(__x86_64__)
/* Save the callee-saved registers on this stack, switch to another. */
extern "C" void hipemu_switch(void **save, void *to);
asm(".text\n"
    ".globl hipemu_switch\n"
    ".type hipemu_switch,@function\n"
    "hipemu_switch:\n"
    "	pushq %rbp\n"
    "	pushq %rbx\n"
    "	pushq %r12\n"
    "	pushq %r13\n"
    "	pushq %r14\n"
    "	pushq %r15\n"
    "	movq %rsp, (%rdi)\n"
    "	movq %rsi, %rsp\n"
    "	popq %r15\n"
    "	popq %r14\n"
    "	popq %r13\n"
    "	popq %r12\n"
    "	popq %rbx\n"
    "	popq %rbp\n"
    "	ret\n"
    ".size hipemu_switch, .-hipemu_switch\n");
#else
#error "hipemu's fibers are written for x86-64"
#endif

static void fiber_main(void)
{
	(*g_body)();
	hipemu_cur->state = HIPEMU_DONE;
	hipemu_switch(&hipemu_cur->sp, g_sched_sp);
	abort();			/* a finished fiber is never resumed */
}

static void fiber_start(hipemu_fiber *f)
{
	/* stacks are 256 KiB apart: start each at another offset within
	 * 4 KiB so that their tops do not all fall in the same cache sets */
	uint64_t *top = (uint64_t *)(f->stack + FIBER_STACK -
				     (f->linear % 64) * 64);

	/* what hipemu_switch pops: six registers, then fiber_main as the
	 * return address, with the stack 16-byte aligned at its entry */
	top[-1] = 0;
	top[-2] = (uint64_t)(uintptr_t)fiber_main;
	for (int i = 3; i <= 8; i++)
		top[-i] = 0;
	f->sp = &top[-8];
	f->state = HIPEMU_READY;
}

void hipemu_wait(int state)
{
	hipemu_fiber *f = hipemu_cur;

	f->state = state;
	hipemu_switch(&f->sp, g_sched_sp);
}

hipemu_fiber *hipemu_lane(unsigned int linear)
{
	return &g_fibers[linear];
}

void hipemu_fault(const char *what, const void *addr)
{
	int none = hipSuccess;

	fprintf(stderr, "hipemu: fault: %s%s%p in block (%u,%u,%u) thread "
		"(%u,%u,%u)\n", what, addr ? " at " : "", addr,
		hipemu_now.block.x, hipemu_now.block.y, hipemu_now.block.z,
		hipemu_cur ? hipemu_cur->tid.x : 0,
		hipemu_cur ? hipemu_cur->tid.y : 0,
		hipemu_cur ? hipemu_cur->tid.z : 0);
	g_fault.compare_exchange_strong(none, hipErrorLaunchFailure);
	g_block_faulted = true;
}

void hipemu_check_align(const void *p, size_t n, const char *what)
{
	if ((uintptr_t)p % n)
		hipemu_fault(what, p);
}

/* ---- WMMA's warp-wide steps (hipemu.h) ---- */

void nvcuda::wmma::hipemu_mma_enter(const void *p, unsigned int ldm)
{
	if ((uintptr_t)p % 32 || ldm % 4)
		hipemu_fault("a WMMA load or store not 32-byte aligned or "
			     "with ldm not a multiple of 4", p);
	hipemu_mma_wait();
}

/* Wait for every lane of the warp to get here. */
void nvcuda::wmma::hipemu_mma_wait(void)
{
	hipemu_cur->shfl_mask = -1;	/* any shuffle meeting this faults */
	hipemu_wait(HIPEMU_AT_SHUFFLE);
}

/* Offer a pointer to the warp and wait for every lane to offer its own. */
void nvcuda::wmma::hipemu_mma_exchange(const void *mine)
{
	hipemu_cur->slot = (uint64_t)(uintptr_t)mine;
	hipemu_mma_wait();
}

float *nvcuda::wmma::hipemu_mma_result(void)
{
	static float result[HIPEMU_MAX_WARPS][256];

	return result[hipemu_cur->linear / HIPEMU_WARP];
}

const void *nvcuda::wmma::hipemu_mma_peer(unsigned int lane)
{
	const unsigned int base = hipemu_cur->linear -
				  hipemu_cur->linear % HIPEMU_WARP;

	return (const void *)(uintptr_t)hipemu_lane(base + lane)->slot;
}

/*
 * Run one block: resume every ready fiber until it waits, then release
 * one warp whose lanes all wait at a shuffle (or a WMMA step), else the
 * block if every thread waits at __syncthreads. Anything else is a
 * fault. Releasing one warp at a time, the first in thread order on
 * even launches and the last on odd ones, lets that warp run ahead to
 * the next __syncthreads while the others wait: warps drift apart as far
 * as a GPU lets them, so a barrier missing between two warps' uses of
 * shared memory shows.
 */
static bool run_block(void)
{
	const unsigned int nt = g_nthreads;
	const unsigned int nwarps = (nt + HIPEMU_WARP - 1) / HIPEMU_WARP;

	for (unsigned int t = 0; t < nt; t++)
		fiber_start(&g_fibers[t]);
	for (;;) {
		unsigned int at_sync = 0, done = 0;
		bool released = false;

		for (unsigned int t = 0; t < nt && !g_block_faulted; t++) {
			if (g_fibers[t].state != HIPEMU_READY)
				continue;
			hipemu_cur = &g_fibers[t];
			hipemu_switch(&g_sched_sp, g_fibers[t].sp);
		}
		hipemu_cur = NULL;
		if (g_block_faulted)
			return false;
		for (unsigned int wi = 0; wi < nwarps && !released; wi++) {
			const unsigned int w0 = HIPEMU_WARP *
				(g_reverse ? nwarps - 1 - wi : wi);
			unsigned int n = 0, lanes = nt - w0;

			lanes = lanes < HIPEMU_WARP ? lanes : HIPEMU_WARP;
			for (unsigned int l = 0; l < lanes; l++)
				n += g_fibers[w0 + l].state == HIPEMU_AT_SHUFFLE;
			if (!n)
				continue;
			hipemu_cur = &g_fibers[w0];
			if (n != HIPEMU_WARP) {
				hipemu_fault("a shuffle that not every lane "
					     "of the warp reached", NULL);
				return false;
			}
			for (unsigned int l = 1; l < lanes; l++) {
				if (g_fibers[w0 + l].shfl_mask !=
				    g_fibers[w0].shfl_mask) {
					hipemu_fault("lanes of one shuffle "
						     "with different masks",
						     NULL);
					return false;
				}
			}
			for (unsigned int l = 0; l < lanes; l++)
				g_fibers[w0 + l].state = HIPEMU_READY;
			released = true;
		}
		hipemu_cur = NULL;
		if (released)
			continue;
		for (unsigned int t = 0; t < nt; t++) {
			at_sync += g_fibers[t].state == HIPEMU_AT_SYNC;
			done += g_fibers[t].state == HIPEMU_DONE;
		}
		if (done == nt)
			return true;
		if (at_sync != nt) {
			hipemu_fault("a __syncthreads that some threads of "
				     "the block left or skipped", NULL);
			return false;
		}
		for (unsigned int t = 0; t < nt; t++)
			g_fibers[t].state = HIPEMU_READY;
	}
}

/* Fiber stacks, each above a page that is never mapped readable: an
 * overflow faults instead of writing over the next stack. */
static void ensure_fibers(unsigned int nt)
{
	const size_t guard = 4096;

	while (g_fibers.size() < nt) {
		hipemu_fiber f = {};
		char *m = (char *)mmap(NULL, guard + FIBER_STACK,
				       PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED || mprotect(m, guard, PROT_NONE)) {
			perror("hipemu: fiber stack");
			abort();
		}
		f.stack = m + guard;
		g_fibers.push_back(f);
	}
}

static void run_grid(dim3 grid, dim3 block, const std::function<void()> &body)
{
	std::lock_guard<std::mutex> lock(g_device);
	const unsigned int nt = block.x * block.y * block.z;

	if (g_fault.load())
		return;			/* a faulted device runs nothing */
	ensure_fibers(nt);
	for (unsigned int t = 0; t < nt; t++) {
		g_fibers[t].linear = t;
		g_fibers[t].tid = { t % block.x, t / block.x % block.y,
				    t / (block.x * block.y) };
	}
	g_nthreads = nt;
	g_reverse = g_launches++ % 2;
	g_body = &body;
	g_block_faulted = false;
	hipemu_now.bdim = { block.x, block.y, block.z };
	hipemu_now.gdim = { grid.x, grid.y, grid.z };
	for (unsigned int z = 0; z < grid.z; z++)
		for (unsigned int y = 0; y < grid.y; y++)
			for (unsigned int x = 0; x < grid.x; x++) {
				hipemu_now.block = { x, y, z };
				if (!run_block())
					return;
			}
}

/* ---- devices ---- */

/*
 * HIPEMU_DEVICES (default 1, at most HIPEMU_MAX_DEVICES): how many devices
 * there are. They share the one CPU, but each has its own memory count,
 * and its streams, events and memory are its own: the current device is
 * per host thread (hipSetDevice), and using a stream or an event of
 * another device fails as it does on CUDA (see stream_here()).
 */
#define HIPEMU_MAX_DEVICES 16

static int device_count(void)
{
	const char *e = getenv("HIPEMU_DEVICES");
	char *end;
	unsigned long n;

	if (!e || !*e)
		return 1;
	n = strtoul(e, &end, 10);
	if (*end || e[0] < '0' || e[0] > '9')
		return 1;
	return n > HIPEMU_MAX_DEVICES ? HIPEMU_MAX_DEVICES : (int)n;
}

static size_t mem_limit(void)
{
	const char *e = getenv("HIPEMU_MEM_MB");
	unsigned long long mb = e ? strtoull(e, NULL, 10) : 4096;

	return (size_t)(mb ? mb : 4096) << 20;
}

hipError_t hipGetDeviceCount(int *n)
{
	if (!n)
		return ret(hipErrorInvalidValue);
	*n = device_count();
	return ret(*n ? hipSuccess : hipErrorNoDevice);
}

/* The calling thread's current device: 0 until hipSetDevice(). */
static thread_local int t_device;

hipError_t hipSetDevice(int d)
{
	if (d < 0 || d >= device_count())
		return ret(hipErrorInvalidDevice);
	t_device = d;
	return ret(hipSuccess);
}

hipError_t hipGetDevice(int *d)
{
	if (!d)
		return ret(hipErrorInvalidValue);
	*d = t_device;
	return ret(hipSuccess);
}

hipError_t hipGetDeviceProperties(hipDeviceProp_t *p, int d)
{
	if (!p)
		return ret(hipErrorInvalidValue);
	if (d < 0 || d >= device_count())
		return ret(hipErrorInvalidDevice);
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "hipemu (CPU, warp %d)",
		 HIPEMU_WARP);
	p->totalGlobalMem = mem_limit();
	p->warpSize = HIPEMU_WARP;
	p->multiProcessorCount = 1;
	p->maxThreadsPerBlock = 1024;
	return ret(hipSuccess);
}

/* ---- memory ---- */

/*
 * Address ranges, base to size: device allocations, and host memory the
 * device may read (hipHostMalloc, hipHostRegister); g_owner, base to the
 * device that was current when each was made (device allocations and
 * host ranges have distinct bases). g_mem protects them and the bytes in
 * use on each device.
 */
static std::mutex g_mem;
static std::map<uintptr_t, size_t> g_dev, g_host;
static std::map<uintptr_t, int> g_owner;
static size_t g_dev_used[HIPEMU_MAX_DEVICES];

/* The range of m holding [p, p + n), or m.end(). */
static std::map<uintptr_t, size_t>::iterator
find_range(std::map<uintptr_t, size_t> &m, const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;
	auto it = m.upper_bound(a);

	if (it == m.begin())
		return m.end();
	--it;
	if (a < it->first || a - it->first > it->second ||
	    n > it->second - (a - it->first))
		return m.end();
	return it;
}

static bool on_device(const void *p, size_t n)
{
	std::lock_guard<std::mutex> lock(g_mem);

	return find_range(g_dev, p, n) != g_dev.end();
}

/* The device whose allocation holds [p, p + n), or -1 (not device
 * memory). */
static int device_of(const void *p, size_t n)
{
	std::lock_guard<std::mutex> lock(g_mem);
	auto it = find_range(g_dev, p, n);

	return it == g_dev.end() ? -1 : g_owner[it->first];
}

hipError_t hipMalloc(void **p, size_t bytes)
{
	void *m;

	if (!p || !bytes)
		return ret(hipErrorInvalidValue);
	{
		std::lock_guard<std::mutex> lock(g_mem);

		if (bytes > mem_limit() - g_dev_used[t_device])
			return ret(hipErrorOutOfMemory);
		m = aligned_alloc(256, (bytes + 255) & ~(size_t)255);
		if (!m)
			return ret(hipErrorOutOfMemory);
		g_dev[(uintptr_t)m] = bytes;
		g_owner[(uintptr_t)m] = t_device;
		g_dev_used[t_device] += bytes;
	}
	memset(m, 0xff, bytes);
	*p = m;
	return ret(hipSuccess);
}

hipError_t hipFree(void *p)
{
	if (!p)
		return ret(hipSuccess);
	hipDeviceSynchronize();		/* as hipFree does */
	{
		std::lock_guard<std::mutex> lock(g_mem);
		auto it = g_dev.find((uintptr_t)p);

		if (it == g_dev.end())
			return ret(hipErrorInvalidValue);
		g_dev_used[g_owner[it->first]] -= it->second;
		g_owner.erase(it->first);
		g_dev.erase(it);
	}
	free(p);
	return ret(hipSuccess);
}

hipError_t hipMemGetInfo(size_t *free_bytes, size_t *total)
{
	std::lock_guard<std::mutex> lock(g_mem);

	if (!free_bytes || !total)
		return ret(hipErrorInvalidValue);
	*total = mem_limit();
	*free_bytes = *total - g_dev_used[t_device];
	return ret(hipSuccess);
}

static bool overlaps(const std::map<uintptr_t, size_t> &m, uintptr_t a,
		     size_t n)
{
	auto it = m.lower_bound(a + n);

	if (it == m.begin())
		return false;
	--it;
	return it->first + it->second > a;
}

static hipError_t host_add(void *p, size_t bytes)
{
	std::lock_guard<std::mutex> lock(g_mem);

	if (overlaps(g_host, (uintptr_t)p, bytes))
		return hipErrorHostMemoryAlreadyRegistered;
	g_host[(uintptr_t)p] = bytes;
	g_owner[(uintptr_t)p] = t_device;
	return hipSuccess;
}

/* any_device: hipHostFree, which frees from any device; a registration
 * is undone only by its own device (not hipHostRegisterPortable). */
static hipError_t host_remove(void *p, bool any_device)
{
	std::lock_guard<std::mutex> lock(g_mem);

	if (!g_host.count((uintptr_t)p) ||
	    (!any_device && g_owner[(uintptr_t)p] != t_device))
		return hipErrorHostMemoryNotRegistered;
	g_host.erase((uintptr_t)p);
	g_owner.erase((uintptr_t)p);
	return hipSuccess;
}

hipError_t hipHostMalloc(void **p, size_t bytes, unsigned int flags)
{
	void *m;
	hipError_t e;

	if (!p || !bytes || flags)
		return ret(hipErrorInvalidValue);
	m = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
	if (!m)
		return ret(hipErrorOutOfMemory);
	e = host_add(m, bytes);
	if (e != hipSuccess) {
		free(m);
		return ret(e);
	}
	*p = m;
	return ret(hipSuccess);
}

hipError_t hipHostFree(void *p)
{
	hipError_t e;

	if (!p)
		return ret(hipSuccess);
	hipDeviceSynchronize();
	e = host_remove(p, true);
	if (e != hipSuccess)
		return ret(hipErrorInvalidValue);
	free(p);
	return ret(hipSuccess);
}

hipError_t hipHostRegister(void *p, size_t bytes, unsigned int flags)
{
	if (!p || !bytes || (flags & ~hipHostRegisterMapped))
		return ret(hipErrorInvalidValue);
	return ret(host_add(p, bytes));
}

hipError_t hipHostUnregister(void *p)
{
	if (!p)
		return ret(hipErrorInvalidValue);
	return ret(host_remove(p, false));
}

/* Host memory is mapped for the device that was current when it was
 * registered or allocated (not hipHostRegisterPortable): another device
 * has no alias for it, as on CUDA. */
hipError_t hipHostGetDevicePointer(void **d, void *h, unsigned int flags)
{
	std::lock_guard<std::mutex> lock(g_mem);
	std::map<uintptr_t, size_t>::iterator it;

	if (!d || !h || flags)
		return ret(hipErrorInvalidValue);
	it = find_range(g_host, h, 1);
	if (it == g_host.end() || g_owner[it->first] != t_device)
		return ret(hipErrorInvalidValue);
	*d = h;
	return ret(hipSuccess);
}

/* ---- streams ---- */

/*
 * A stream: a host thread running the work queued on it, in order.
 * m protects the queue and the flags; idle is signalled whenever the
 * stream has nothing queued and nothing running.
 */
struct hipemu_stream {
	std::mutex m;
	std::condition_variable wake, idle;
	std::deque<std::function<void()>> work;
	bool running;			/* a piece of work is out of the queue */
	bool stop;			/* destroyed: finish the queue, exit */
	unsigned int flags;
	int device;			/* current when it was created */
	std::thread thread;
};

/* Every stream, for hipDeviceSynchronize and the legacy NULL stream. */
static std::mutex g_streams_lock;
static std::set<hipemu_stream *> g_streams;

/*
 * HIPEMU_JITTER_US (default 0): before each piece of work a stream sleeps
 * a pseudo-random 0 to that many microseconds, as a GPU's engines take
 * their time, so that work of different streams that nothing orders
 * meets in different orders from run to run.
 */
static unsigned int jitter_us(void)
{
	const char *e = getenv("HIPEMU_JITTER_US");

	return e ? (unsigned int)strtoul(e, NULL, 10) : 0;
}

static void stream_main(hipemu_stream *s)
{
	static std::atomic<unsigned int> seeds{ 1 };
	const unsigned int jitter = jitter_us();
	uint64_t rng = 0x9e3779b97f4a7c15ull * seeds.fetch_add(1);
	std::unique_lock<std::mutex> lock(s->m);

	for (;;) {
		std::function<void()> w;

		s->wake.wait(lock, [s] { return s->stop || !s->work.empty(); });
		if (s->work.empty())
			break;		/* stopped and drained */
		w = std::move(s->work.front());
		s->work.pop_front();
		s->running = true;
		lock.unlock();
		if (jitter) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			usleep((useconds_t)(rng % (jitter + 1)));
		}
		w();
		lock.lock();
		s->running = false;
		if (s->work.empty())
			s->idle.notify_all();
	}
	s->idle.notify_all();
}

static void stream_drain(hipemu_stream *s)
{
	std::unique_lock<std::mutex> lock(s->m);

	s->idle.wait(lock, [s] { return s->work.empty() && !s->running; });
}

/*
 * Drain the streams: all of them, or the blocking ones. The set stays
 * locked meanwhile, so that none is destroyed under the wait (a stream's
 * own work never calls the runtime, so it never needs the lock).
 */
static void drain_streams(bool blocking_only)
{
	std::lock_guard<std::mutex> lock(g_streams_lock);

	for (hipemu_stream *s : g_streams)
		if (!blocking_only || !(s->flags & hipStreamNonBlocking))
			stream_drain(s);
}

/*
 * Whether work may be queued on s from this thread: s belongs to the
 * calling thread's current device. CUDA refuses a launch on a stream of
 * another device with cudaErrorInvalidResourceHandle (and an event record
 * whose event and stream are two devices'); this also refuses a copy, a
 * memset, a wait or a callback there (CUDA queues a copy or a wait at
 * least): stricter.
 * The NULL stream is the current device's own.
 */
static bool stream_here(hipStream_t s)
{
	return !s || s->device == t_device;
}

/*
 * Whether device memory in [p, p + n) is s's device's (or not device
 * memory at all). Stricter than CUDA, which copies between peers with
 * unified addressing: nothing here copies between devices, so memory of
 * another device is memory allocated while the wrong device was current.
 */
static bool memory_here(hipStream_t s, const void *p, size_t n)
{
	const int d = device_of(p, n);

	return d < 0 || d == (s ? s->device : t_device);
}

/* Queue work on s; on the NULL stream, wait for the blocking streams and
 * run it here. */
static void enqueue(hipStream_t s, std::function<void()> w)
{
	if (!s) {
		drain_streams(true);
		w();
		return;
	}
	{
		std::lock_guard<std::mutex> lock(s->m);

		s->work.push_back(std::move(w));
	}
	s->wake.notify_one();
}

hipError_t hipStreamCreateWithFlags(hipStream_t *out, unsigned int flags)
{
	hipemu_stream *s;

	if (!out || (flags & ~hipStreamNonBlocking))
		return ret(hipErrorInvalidValue);
	s = new hipemu_stream();
	s->running = false;
	s->stop = false;
	s->flags = flags;
	s->device = t_device;
	s->thread = std::thread(stream_main, s);
	{
		std::lock_guard<std::mutex> lock(g_streams_lock);

		g_streams.insert(s);
	}
	*out = s;
	return ret(hipSuccess);
}

hipError_t hipStreamDestroy(hipStream_t s)
{
	if (!s)
		return ret(hipErrorInvalidHandle);
	{
		std::lock_guard<std::mutex> lock(g_streams_lock);

		if (!g_streams.erase(s))
			return ret(hipErrorInvalidHandle);
	}
	{
		std::lock_guard<std::mutex> lock(s->m);

		s->stop = true;
	}
	s->wake.notify_one();
	s->thread.join();		/* its queued work finishes first */
	delete s;
	return ret(hipSuccess);
}

hipError_t hipStreamSynchronize(hipStream_t s)
{
	if (s)
		stream_drain(s);
	else
		drain_streams(true);
	return ret(hipSuccess);
}

hipError_t hipDeviceSynchronize(void)
{
	drain_streams(false);
	return ret(hipSuccess);
}

hipError_t hipStreamAddCallback(hipStream_t s, hipStreamCallback_t fn,
				void *data, unsigned int flags)
{
	if (!fn || flags)
		return ret(hipErrorInvalidValue);
	if (!stream_here(s))
		return ret(hipErrorInvalidHandle);
	enqueue(s, [s, fn, data] {
		fn(s, g_fault.load() ? hipErrorLaunchFailure : hipSuccess,
		   data);
	});
	return ret(hipSuccess);
}

/* ---- copies ---- */

static bool copy_ok(void *dst, const void *src, size_t n, hipMemcpyKind k)
{
	switch (k) {
	case hipMemcpyHostToDevice:
		return on_device(dst, n) && !on_device(src, n);
	case hipMemcpyDeviceToHost:
		return on_device(src, n) && !on_device(dst, n);
	case hipMemcpyDeviceToDevice:
		return on_device(src, n) && on_device(dst, n);
	case hipMemcpyHostToHost:
	case hipMemcpyDefault:
		return true;
	}
	return false;
}

/*
 * HIPEMU_COPY_MBPS (default 0, no limit): copies between host and device
 * move that many megabytes a second, as over a slow link: the stream
 * sleeps for the copy's time and then moves the bytes. Large copies (an
 * expert's weights) then outlast the kernels of the runs after them, so
 * a kernel that reads a copy's destination without waiting for it reads
 * what was there before.
 */
static double copy_us(void *dst, const void *src, size_t n)
{
	const char *e = getenv("HIPEMU_COPY_MBPS");
	const double mbps = e ? strtod(e, NULL) : 0.0;

	if (!(mbps > 0) || on_device(dst, n) == on_device(src, n))
		return 0;
	return (double)n / mbps;
}

hipError_t hipMemcpyAsync(void *dst, const void *src, size_t n,
			  hipMemcpyKind k, hipStream_t s)
{
	double us;

	if (!n)
		return ret(hipSuccess);
	if (!dst || !src || !copy_ok(dst, src, n, k))
		return ret(hipErrorInvalidValue);
	if (!stream_here(s))
		return ret(hipErrorInvalidHandle);
	if (!memory_here(s, dst, n) || !memory_here(s, src, n))
		return ret(hipErrorInvalidValue);
	us = copy_us(dst, src, n);
	enqueue(s, [dst, src, n, us] {
		if (us > 0)
			std::this_thread::sleep_for(
				std::chrono::duration<double, std::micro>(us));
		if (!g_fault.load())
			memcpy(dst, src, n);
	});
	return ret(hipSuccess);
}

hipError_t hipMemcpy(void *dst, const void *src, size_t n, hipMemcpyKind k)
{
	hipError_t e = hipMemcpyAsync(dst, src, n, k, NULL);

	return e != hipSuccess ? e : hipStreamSynchronize(NULL);
}

hipError_t hipMemsetAsync(void *dst, int v, size_t n, hipStream_t s)
{
	if (!n)
		return ret(hipSuccess);
	if (!dst || !on_device(dst, n))
		return ret(hipErrorInvalidValue);
	if (!stream_here(s))
		return ret(hipErrorInvalidHandle);
	if (!memory_here(s, dst, n))
		return ret(hipErrorInvalidValue);
	enqueue(s, [dst, v, n] {
		if (!g_fault.load())
			memset(dst, v, n);
	});
	return ret(hipSuccess);
}

/* ---- launches ---- */

void hipemu_launch_grid(dim3 grid, dim3 block, hipStream_t s,
			std::function<void()> run_thread)
{
	const unsigned long long nt =
		(unsigned long long)block.x * block.y * block.z;

	if (g_fault.load())
		return;
	if (!nt || nt > 1024 || !grid.x || !grid.y || !grid.z ||
	    grid.y > 65535 || grid.z > 65535) {
		t_last = hipErrorInvalidValue;
		return;
	}
	if (!stream_here(s)) {
		t_last = hipErrorInvalidHandle;
		return;
	}
	enqueue(s, [grid, block, run_thread] {
		run_grid(grid, block, run_thread);
	});
}

/* ---- events ---- */

/*
 * An event's records are numbered; each is pending from hipEventRecord()
 * until its stream reaches it. Records on different streams may complete
 * out of order, so a wait is for one record, not for a count. The event
 * is complete when its latest record is. m protects the fields.
 */
struct hipemu_event {
	std::mutex m;
	std::condition_variable cv;
	uint64_t recorded;		/* records so far: the latest's number */
	std::set<uint64_t> pending;	/* records not yet reached */
	double t;			/* seconds: when the latest was reached */
	unsigned int flags;
	int device;			/* current when it was created */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

hipError_t hipEventCreateWithFlags(hipEvent_t *out, unsigned int flags)
{
	hipemu_event *e;

	if (!out || (flags & ~hipEventDisableTiming))
		return ret(hipErrorInvalidValue);
	e = new hipemu_event();
	e->recorded = 0;
	e->t = 0.0;
	e->flags = flags;
	e->device = t_device;
	*out = e;
	return ret(hipSuccess);
}

hipError_t hipEventDestroy(hipEvent_t e)
{
	if (!e)
		return ret(hipErrorInvalidHandle);
	/* queued records and waits of any stream may still point at it: a
	 * GPU frees it later, the emulator waits for every stream first */
	drain_streams(false);
	delete e;
	return ret(hipSuccess);
}

hipError_t hipEventRecord(hipEvent_t e, hipStream_t s)
{
	uint64_t n;

	if (!e)
		return ret(hipErrorInvalidHandle);
	/* the stream and the event of the current device */
	if (!stream_here(s) || e->device != t_device)
		return ret(hipErrorInvalidHandle);
	{
		std::lock_guard<std::mutex> lock(e->m);

		n = ++e->recorded;
		e->pending.insert(n);
	}
	enqueue(s, [e, n] {
		std::lock_guard<std::mutex> lock(e->m);

		e->pending.erase(n);
		if (n == e->recorded)
			e->t = now();
		e->cv.notify_all();
	});
	return ret(hipSuccess);
}

/* Wait until e's record n has been reached (0: none, nothing to wait). */
static void event_wait(hipemu_event *e, uint64_t n)
{
	std::unique_lock<std::mutex> lock(e->m);

	e->cv.wait(lock, [e, n] { return !e->pending.count(n); });
}

static uint64_t latest(hipemu_event *e)
{
	std::lock_guard<std::mutex> lock(e->m);

	return e->recorded;
}

hipError_t hipEventSynchronize(hipEvent_t e)
{
	if (!e)
		return ret(hipErrorInvalidHandle);
	event_wait(e, latest(e));
	return ret(hipSuccess);
}

hipError_t hipEventQuery(hipEvent_t e)
{
	if (!e)
		return ret(hipErrorInvalidHandle);
	std::lock_guard<std::mutex> lock(e->m);

	return ret(e->pending.count(e->recorded) ? hipErrorNotReady :
						  hipSuccess);
}

hipError_t hipStreamWaitEvent(hipStream_t s, hipEvent_t e, unsigned int flags)
{
	uint64_t n;

	if (!e || flags)
		return ret(hipErrorInvalidHandle);
	/* the event may be another device's: that is how devices wait for
	 * each other */
	if (!stream_here(s))
		return ret(hipErrorInvalidHandle);
	n = latest(e);
	enqueue(s, [e, n] { event_wait(e, n); });
	return ret(hipSuccess);
}

hipError_t hipEventElapsedTime(float *ms, hipEvent_t a, hipEvent_t b)
{
	if (!ms || !a || !b)
		return ret(hipErrorInvalidValue);
	if ((a->flags | b->flags) & hipEventDisableTiming)
		return ret(hipErrorInvalidHandle);
	if (a == b) {
		*ms = 0.0f;
		return ret(hipEventQuery(a));
	}
	{
		std::scoped_lock lock(a->m, b->m);

		if (!a->recorded || !b->recorded)
			return ret(hipErrorInvalidHandle);
		if (a->pending.count(a->recorded) ||
		    b->pending.count(b->recorded))
			return ret(hipErrorNotReady);
		*ms = (float)((b->t - a->t) * 1e3);
	}
	return ret(hipSuccess);
}
