/* tests/gpu/cudaemu/cudaemu.cc - the emulator behind cuda_runtime.h and cublas_v2.h.
 *
 * A launch runs its blocks one after another; a block's threads are fibers (ucontext) that run
 * in turn until each exits or waits at a barrier.  After every pass the waiting groups are
 * checked: a warp group is released when every lane its mask names waits with that mask, the
 * block when every live thread waits at __syncthreads(); anything else that cannot proceed is a
 * bug in the kernel and aborts with the kernel's name, block and thread.  The contract is in
 * cuda_runtime.h.
 *
 * Blocks k and k + 1 are taken to overlap, as on a device with two blocks resident: each has
 * its own fiber stacks and shared memory (a "pool", the block's parity), and block k + 2 reuses
 * block k's after it.  Built with CUEMU_TSAN (the race check), every thread of a pool is a
 * ThreadSanitizer fiber, and the scheduler tells ThreadSanitizer what orders them: the launch
 * before a block starts, block k before block k + 2, __syncthreads() and __syncwarp() among
 * the threads they release, every thread before the launch returns.  Nothing else does (not a
 * shuffle's exchange), so an access to the same memory by two threads that only those could
 * order is reported as a data race.  This file is not instrumented itself: only kernel code
 * is checked.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include <map>
#include <mutex>
#include <vector>

#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUEMU_ASAN 1
#endif
#ifdef CUEMU_TSAN
#include <sanitizer/tsan_interface.h>
#endif
/* Kernels keep little on their stacks.  Under AddressSanitizer a stack's shadow is cleared once,
 * when a block's fiber is made on it (run_block), not at every switch. */
enum { STACK_BYTES = 64 << 10 };
enum { MAX_THREADS = 1024, DEFAULT_DYN_SMEM = 48 << 10, MAX_DYN_SMEM = 227 << 10 };
enum { POOLS = CUEMU_POOLS };

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

struct cuemu_stream {
	int live;
};

struct cuemu_event {
	double t;
};

struct cuemu_blas {
	cudaStream_t stream;
};

namespace {

enum fiber_state { F_READY, F_BLOCK_BAR, F_WARP_BAR, F_DONE };

struct fiber {
	ucontext_t uc;
	dim3 tid;
	int linear;
	fiber_state st;
	unsigned mask;      /* of the warp barrier it waits at */
	bool orders;        /* that barrier is a __syncwarp (a shuffle's waits order nothing) */
	void *fake_stack;   /* AddressSanitizer's, across a switch */
};

/* The block running on this host thread. */
struct block_sched {
	ucontext_t main_uc;
	fiber *fibers = nullptr;
	char *stacks = nullptr;     /* POOLS x MAX_THREADS stacks */
	int pool = 0;               /* the running block's */
	int cur = -1;        /* fiber running now, -1 on the scheduler */
	int nthreads = 0;
	cuemu_body *body = nullptr;
	const char *kernel = nullptr;
	uint64_t slots[MAX_THREADS];
	int ids[MAX_THREADS];
	char *dyn_smem = nullptr;   /* POOLS x dyn_bytes */
	size_t dyn_bytes = 0;
	std::vector<void *> fresh;  /* static shared arrays refilled in this block */
	void *main_fake_stack = nullptr;
	const void *main_stack = nullptr;
	size_t main_stack_bytes = 0;
#ifdef CUEMU_TSAN
	void *host = nullptr;                /* the host thread's ThreadSanitizer context */
	void *tsan[POOLS][MAX_THREADS] = {}; /* each pool's threads' */
	int used[POOLS] = {};                /* threads of each pool that have run */
	void *from[1 + POOLS * MAX_THREADS], *to[MAX_THREADS]; /* tsan_order()'s arguments */
#endif
};

thread_local block_sched S;
thread_local cudaError_t last_error = cudaSuccess;

/* Device memory and per-kernel attributes: one device, shared by the host threads. */
struct device_state {
	std::mutex lock;
	std::map<uintptr_t, size_t> allocs;  /* start -> bytes */
	std::map<const void *, int> max_dyn_smem;
};

device_state &dev()
{
	static device_state d;
	return d;
}

double now_ms()
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The allocation holding [p, p + bytes), or false. */
bool inside(const void *p, size_t bytes)
{
	uintptr_t a = (uintptr_t)p;
	device_state &d = dev();
	std::lock_guard<std::mutex> g(d.lock);
	auto it = d.allocs.upper_bound(a);

	if (it == d.allocs.begin())
		return false;
	--it;
	return a >= it->first && bytes <= it->second && a - it->first <= it->second - bytes;
}

/* p is inside a device allocation, not just past its end (where another allocation, a host
 * one, may start) */
bool is_device(const void *p)
{
	return p && inside(p, 1);
}

cudaError_t fail_with(cudaError_t e)
{
	if (last_error == cudaSuccess)
		last_error = e;
	return e;
}

char *stack_of(int i)
{
	return S.stacks + ((size_t)S.pool * MAX_THREADS + i) * STACK_BYTES;
}

/* ---- what orders the threads, for ThreadSanitizer (nothing without CUEMU_TSAN) ---- */

#ifdef CUEMU_TSAN
void tsan_enter(void *ctx)
{
	__tsan_switch_to_fiber(ctx, __tsan_switch_to_fiber_no_sync);
}

/* Every context of from[0, nf) happens before everything that the contexts of to[0, nt) do
 * next.  The sync object is an allocation of its own, freed after, so no old clock stays in
 * it.  Runs on the scheduler, in the host's context. */
void tsan_order(void *const *from, int nf, void *const *to, int nt)
{
	char *tok = (char *)malloc(1);

	if (!tok)
		cuemu_fail("no memory for a sync object");
	for (int i = 0; i < nf; i++) {
		tsan_enter(from[i]);
		__tsan_release(tok);
	}
	for (int i = 0; i < nt; i++) {
		tsan_enter(to[i]);
		__tsan_acquire(tok);
	}
	tsan_enter(S.host);
	free(tok);
}

void *tsan_thread(int pool, int i)
{
	if (!S.tsan[pool][i]) {
		char name[48];

		S.tsan[pool][i] = __tsan_create_fiber(0);
		snprintf(name, sizeof(name), "CUDA thread %d of even/odd block %d", i, pool);
		__tsan_set_fiber_name(S.tsan[pool][i], name);
	}
	return S.tsan[pool][i];
}
#endif

/* Shared memory that a block starts with: undefined (0xff bytes, NaN as float), and written by
 * no CUDA thread as far as the race check goes.  A loop in this uninstrumented file, kept from
 * becoming a call to memset, which ThreadSanitizer would count as the caller's write. */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
void fresh_memory(void *p, size_t bytes)
{
	unsigned char *b = (unsigned char *)p;

	for (size_t i = 0; i < bytes; i++)
		b[i] = 0xff;
}

/* The launch so far, and the pool's previous block, before this block's n threads. */
void order_block_start(int n)
{
#ifdef CUEMU_TSAN
	int nf = 0;

	S.from[nf++] = S.host;
	for (int i = 0; i < S.used[S.pool]; i++)
		S.from[nf++] = S.tsan[S.pool][i];
	for (int i = 0; i < n; i++)
		S.to[i] = tsan_thread(S.pool, i);
	if (S.used[S.pool] < n)
		S.used[S.pool] = n;
	tsan_order(S.from, nf, S.to, n);
#else
	(void)n;
#endif
}

/* The n threads of the running block whose ids are in ids, among themselves. */
void order_group(const int *ids, int n)
{
#ifdef CUEMU_TSAN
	for (int i = 0; i < n; i++)
		S.from[i] = S.tsan[S.pool][ids[i]];
	tsan_order(S.from, n, S.from, n);
#else
	(void)ids;
	(void)n;
#endif
}

/* Every thread that has run before the host goes on. */
void order_launch_end()
{
#ifdef CUEMU_TSAN
	int nf = 0;

	for (int p = 0; p < POOLS; p++)
		for (int i = 0; i < S.used[p]; i++)
			S.from[nf++] = S.tsan[p][i];
	tsan_order(S.from, nf, &S.host, 1);
#endif
}

void to_fiber(int i)
{
	S.cur = i;
	threadIdx = S.fibers[i].tid;
#ifdef CUEMU_TSAN
	tsan_enter(S.tsan[S.pool][i]);
#endif
#ifdef CUEMU_ASAN
	__sanitizer_start_switch_fiber(&S.main_fake_stack, stack_of(i), STACK_BYTES);
#endif
	swapcontext(&S.main_uc, &S.fibers[i].uc);
#ifdef CUEMU_ASAN
	__sanitizer_finish_switch_fiber(S.main_fake_stack, nullptr, nullptr);
#endif
	S.cur = -1;
}

/* In a fiber: wait (or exit) until the scheduler switches back. */
void to_main(fiber_state st)
{
	fiber &f = S.fibers[S.cur];

	f.st = st;
#ifdef CUEMU_TSAN
	tsan_enter(S.host);
#endif
#ifdef CUEMU_ASAN
	__sanitizer_start_switch_fiber(st == F_DONE ? nullptr : &f.fake_stack, S.main_stack,
				       S.main_stack_bytes);
#endif
	swapcontext(&f.uc, &S.main_uc);
#ifdef CUEMU_ASAN
	__sanitizer_finish_switch_fiber(f.fake_stack, &S.main_stack, &S.main_stack_bytes);
#endif
}

void fiber_entry()
{
#ifdef CUEMU_ASAN
	__sanitizer_finish_switch_fiber(nullptr, &S.main_stack, &S.main_stack_bytes);
#endif
	S.body->run();
	to_main(F_DONE);
	abort(); /* a finished fiber is never resumed */
}

void ensure_fibers()
{
	if (S.fibers)
		return;
	S.fibers = new fiber[MAX_THREADS];
	void *st = mmap(nullptr, (size_t)POOLS * MAX_THREADS * STACK_BYTES, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (st == MAP_FAILED)
		cuemu_fail("no memory for %d fiber stacks", POOLS * MAX_THREADS);
	S.stacks = (char *)st;
	for (int i = 0; i < MAX_THREADS; i++)
		getcontext(&S.fibers[i].uc);
}

const char *state_name(fiber_state s)
{
	switch (s) {
	case F_READY: return "running";
	case F_BLOCK_BAR: return "at __syncthreads";
	case F_WARP_BAR: return "at a warp barrier";
	case F_DONE: return "exited";
	}
	return "?";
}

/* Releases every group that can proceed; returns how many fibers were released. */
int release_waiters()
{
	int n = S.nthreads, released = 0, live = 0, at_block = 0;

	for (int i = 0; i < n; i++) {
		fiber &f = S.fibers[i];

		if (f.st != F_WARP_BAR)
			continue;
		int base = i & ~31;
		bool all = true;

		for (int lane = 0; lane < 32; lane++) {
			if (!(f.mask >> lane & 1u))
				continue;
			int j = base + lane;

			if (j >= n)
				cuemu_fail("kernel %s, block (%u,%u,%u), thread %d: warp mask 0x%08x "
					   "names lane %d, which does not exist (block of %d threads)",
					   S.kernel, blockIdx.x, blockIdx.y, blockIdx.z, i, f.mask,
					   lane, n);
			fiber &g = S.fibers[j];

			if (g.st == F_WARP_BAR && g.mask != f.mask)
				cuemu_fail("kernel %s, block (%u,%u,%u): threads %d and %d wait at warp "
					   "barriers with masks 0x%08x and 0x%08x", S.kernel,
					   blockIdx.x, blockIdx.y, blockIdx.z, i, j, f.mask, g.mask);
			if (g.st == F_DONE || g.st == F_BLOCK_BAR)
				cuemu_fail("kernel %s, block (%u,%u,%u), thread %d: warp mask 0x%08x "
					   "names thread %d, which is %s", S.kernel, blockIdx.x,
					   blockIdx.y, blockIdx.z, i, f.mask, j, state_name(g.st));
			all = all && g.st == F_WARP_BAR;
		}
		if (!all)
			continue;
		int ids[32], k = 0;
		bool orders = false;

		for (int lane = 0; lane < 32; lane++)
			if (f.mask >> lane & 1u) {
				S.fibers[base + lane].st = F_READY;
				orders = orders || S.fibers[base + lane].orders;
				ids[k++] = base + lane;
			}
		if (orders)
			order_group(ids, k);
		released += k;
	}
	if (released)
		return released;
	for (int i = 0; i < n; i++) {
		live += S.fibers[i].st != F_DONE;
		at_block += S.fibers[i].st == F_BLOCK_BAR;
	}
	if (live && at_block == live) {
		for (int i = 0; i < n; i++)
			if (S.fibers[i].st == F_DONE)
				cuemu_fail("kernel %s, block (%u,%u,%u): thread %d exited while %d "
					   "thread(s) wait at __syncthreads", S.kernel, blockIdx.x,
					   blockIdx.y, blockIdx.z, i, at_block);
		int k = 0;

		for (int i = 0; i < n; i++)
			if (S.fibers[i].st == F_BLOCK_BAR) {
				S.fibers[i].st = F_READY;
				S.ids[k++] = i;
			}
		order_group(S.ids, k);
		return live;
	}
	return 0;
}

bool reverse_order()
{
	const char *o = getenv("CUEMU_ORDER");

	return o && strcmp(o, "reverse") == 0;
}

void run_block(bool reverse)
{
	int n = S.nthreads;
	unsigned bx = blockDim.x, by = blockDim.y;

	for (int i = 0; i < n; i++) {
		fiber &f = S.fibers[i];

		f.uc.uc_stack.ss_sp = stack_of(i);
		f.uc.uc_stack.ss_size = STACK_BYTES;
		f.uc.uc_link = nullptr;
		makecontext(&f.uc, fiber_entry, 0);
#ifdef CUEMU_ASAN
		/* ASan's swapcontext clears the shadow of the stack in uc_stack twice at each
		 * switch into a fiber (a third of the emu tests' time, and it forgets the redzones
		 * of the frames a waiting fiber keeps): clear it here, once, and let swapcontext
		 * see no stack.  makecontext has read uc_stack already. */
		__asan_unpoison_memory_region(stack_of(i), STACK_BYTES);
		f.uc.uc_stack.ss_size = 0;
#endif
		f.tid = dim3(i % bx, i / bx % by, i / (bx * by));
		f.linear = i;
		f.st = F_READY;
		f.mask = 0;
		f.orders = false;
		f.fake_stack = nullptr;
	}
	order_block_start(n);
	for (;;) {
		int done = 0;

		for (int k = 0; k < n; k++) {
			int i = reverse ? n - 1 - k : k;

			if (S.fibers[i].st == F_READY)
				to_fiber(i);
		}
		for (int i = 0; i < n; i++)
			done += S.fibers[i].st == F_DONE;
		if (done == n)
			return;
		if (release_waiters() == 0) {
			int at_block = 0, at_warp = 0;

			for (int i = 0; i < n; i++) {
				at_block += S.fibers[i].st == F_BLOCK_BAR;
				at_warp += S.fibers[i].st == F_WARP_BAR;
			}
			cuemu_fail("kernel %s, block (%u,%u,%u): deadlock, %d thread(s) at "
				   "__syncthreads, %d at warp barriers, %d exited", S.kernel,
				   blockIdx.x, blockIdx.y, blockIdx.z, at_block, at_warp, done);
		}
	}
}

fiber &current(const char *what)
{
	if (S.cur < 0)
		cuemu_fail("%s called outside a kernel", what);
	return S.fibers[S.cur];
}

} /* namespace */

/* ---- the emulator's interface ---- */

void cuemu_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("cudaemu: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void cuemu_check_arg(const char *kernel, int index, const void *p)
{
	if (p && !inside(p, 0))
		cuemu_fail("kernel %s: argument %d (%p) is not device memory", kernel, index, p);
}

void cuemu_check_range(const char *what, const void *p, size_t bytes)
{
	if (!inside(p, bytes))
		cuemu_fail("%s: [%p, +%zu bytes) is not inside one device allocation", what, p,
			   bytes);
}

void cuemu_run(const char *kernel, const void *fn, const cuemu_cfg &c, cuemu_body &body)
{
	size_t nt = (size_t)c.block.x * c.block.y * c.block.z;
	size_t max_dyn = DEFAULT_DYN_SMEM;
	bool reverse = reverse_order();

	if (S.cur >= 0)
		cuemu_fail("kernel %s launched from inside kernel %s", kernel, S.kernel);
	if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.grid.x > 0x7fffffffu ||
	    c.grid.y > 65535 || c.grid.z > 65535 || nt == 0 || nt > MAX_THREADS ||
	    c.block.z > 64) {
		fail_with(cudaErrorInvalidConfiguration);
		return;
	}
	{
		device_state &d = dev();
		std::lock_guard<std::mutex> g(d.lock);
		auto it = d.max_dyn_smem.find(fn);

		if (it != d.max_dyn_smem.end())
			max_dyn = (size_t)it->second;
	}
	if (c.shmem > max_dyn) {
		fail_with(cudaErrorInvalidValue);
		return;
	}
	ensure_fibers();
#ifdef CUEMU_TSAN
	S.host = __tsan_get_current_fiber();
#endif
	S.nthreads = (int)nt;
	S.body = &body;
	S.kernel = kernel;
	S.dyn_bytes = c.shmem;
	S.dyn_smem = (char *)malloc(POOLS * c.shmem + 1);
	if (!S.dyn_smem)
		cuemu_fail("no memory for %zu bytes of shared memory", c.shmem);
	gridDim = c.grid;
	blockDim = c.block;
	size_t nb = (size_t)c.grid.x * c.grid.y * c.grid.z;

	for (size_t k = 0; k < nb; k++) {
		size_t b = reverse ? nb - 1 - k : k;

		blockIdx = dim3((unsigned)(b % c.grid.x), (unsigned)(b / c.grid.x % c.grid.y),
				(unsigned)(b / ((size_t)c.grid.x * c.grid.y)));
		S.pool = (int)(k % POOLS);
		fresh_memory(S.dyn_smem + S.pool * c.shmem, c.shmem);
		S.fresh.clear();
		run_block(reverse);
	}
	order_launch_end();
	S.pool = 0;
	free(S.dyn_smem);
	S.dyn_smem = nullptr;
	S.body = nullptr;
	S.kernel = nullptr;
}

void *cuemu_dynamic_smem(void)
{
	current("dynamic shared memory");
	return S.dyn_smem + S.pool * S.dyn_bytes;
}

int cuemu_pool(void)
{
	return S.pool;
}

void cuemu_shared_fresh(void *p, size_t bytes)
{
	current("__shared__");
	for (void *q : S.fresh)
		if (q == p)
			return;
	fresh_memory(p, bytes);
	S.fresh.push_back(p);
}

void cuemu_syncthreads(void)
{
	current("__syncthreads");
	to_main(F_BLOCK_BAR);
}

int cuemu_lane(void)
{
	return current("a warp intrinsic").linear & 31;
}

static void warp_wait(fiber &f, unsigned mask, const char *what, bool orders)
{
	if (!(mask >> (f.linear & 31) & 1u))
		cuemu_fail("kernel %s, block (%u,%u,%u), thread %d: %s with mask 0x%08x, which "
			   "leaves out the caller", S.kernel, blockIdx.x, blockIdx.y, blockIdx.z,
			   f.linear, what, mask);
	f.mask = mask;
	f.orders = orders;
	to_main(F_WARP_BAR);
}

void cuemu_syncwarp(unsigned mask)
{
	warp_wait(current("__syncwarp"), mask, "__syncwarp", true);
}

uint64_t cuemu_exchange(unsigned mask, uint64_t v, int src, int width)
{
	fiber &f = current("a shuffle");
	int base = f.linear & ~31;
	uint64_t r;

	if (width < 1 || width > 32 || (width & (width - 1)))
		cuemu_fail("kernel %s: shuffle width %d is not a power of two up to 32", S.kernel,
			   width);
	if (!(mask >> src & 1u))
		cuemu_fail("kernel %s, block (%u,%u,%u), thread %d: shuffle reads lane %d, which "
			   "mask 0x%08x leaves out", S.kernel, blockIdx.x, blockIdx.y, blockIdx.z,
			   f.linear, src, mask);
	S.slots[f.linear] = v;
	warp_wait(f, mask, "shuffle", false);
	r = S.slots[base + src];
	/* nobody publishes the next value before every lane has read this one */
	warp_wait(f, mask, "shuffle", false);
	return r;
}

cudaError_t cuemu_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value)
{
	if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
	    value > MAX_DYN_SMEM)
		return fail_with(cudaErrorInvalidValue);
	device_state &d = dev();
	std::lock_guard<std::mutex> g(d.lock);

	d.max_dyn_smem[fn] = value;
	return cudaSuccess;
}

/* ---- runtime API ---- */

cudaError_t cudaGetDeviceCount(int *count)
{
	*count = 1;
	return cudaSuccess;
}

cudaError_t cudaSetDevice(int d)
{
	return d == 0 ? cudaSuccess : fail_with(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int *d)
{
	*d = 0;
	return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
	if (d != 0)
		return fail_with(cudaErrorInvalidDevice);
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "cudaemu (CPU stand-in for a GPU)");
	p->totalGlobalMem = (size_t)8 << 30;
	p->sharedMemPerBlock = DEFAULT_DYN_SMEM;
	p->sharedMemPerBlockOptin = MAX_DYN_SMEM;
	p->warpSize = 32;
	p->maxThreadsPerBlock = MAX_THREADS;
	p->multiProcessorCount = 2;
	p->major = 9;
	p->minor = 0;
	return cudaSuccess;
}

/* Launches and copies run to completion when they are made: nothing is left to report. */
cudaError_t cudaDeviceSynchronize(void)
{
	return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
	cudaError_t e = last_error;

	last_error = cudaSuccess;
	return e;
}

cudaError_t cudaPeekAtLastError(void)
{
	return last_error;
}

const char *cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "no error";
	case cudaErrorInvalidValue: return "invalid argument";
	case cudaErrorMemoryAllocation: return "out of memory";
	case cudaErrorInvalidConfiguration: return "invalid configuration argument";
	case cudaErrorNoDevice: return "no CUDA-capable device is detected";
	default: return "unknown error";
	}
}

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
	if (!ptr)
		return fail_with(cudaErrorInvalidValue);
	if (bytes == 0) {
		*ptr = nullptr;
		return cudaSuccess;
	}
	void *p = malloc(bytes);

	if (!p)
		return fail_with(cudaErrorMemoryAllocation);
	memset(p, 0xff, bytes);
	{
		device_state &d = dev();
		std::lock_guard<std::mutex> g(d.lock);

		d.allocs[(uintptr_t)p] = bytes;
	}
	*ptr = p;
	return cudaSuccess;
}

cudaError_t cudaFree(void *ptr)
{
	if (!ptr)
		return cudaSuccess;
	device_state &d = dev();
	std::unique_lock<std::mutex> g(d.lock);
	auto it = d.allocs.find((uintptr_t)ptr);

	if (it == d.allocs.end())
		cuemu_fail("cudaFree(%p): not the start of a device allocation", ptr);
	d.allocs.erase(it);
	g.unlock();
	free(ptr);
	return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t bytes)
{
	*ptr = malloc(bytes ? bytes : 1);
	return *ptr ? cudaSuccess : fail_with(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void *ptr)
{
	free(ptr);
	return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
	bool dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
	bool sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;

	if (bytes == 0)
		return cudaSuccess;
	if (kind == cudaMemcpyDefault) {
		dd = is_device(dst);
		sd = is_device(src);
	}
	if (dd)
		cuemu_check_range("cudaMemcpy destination", dst, bytes);
	else if (is_device(dst))
		cuemu_fail("cudaMemcpy: destination %p is device memory, kind %d says host", dst,
			   kind);
	if (sd)
		cuemu_check_range("cudaMemcpy source", src, bytes);
	else if (is_device(src))
		cuemu_fail("cudaMemcpy: source %p is device memory, kind %d says host", src, kind);
	memmove(dst, src, bytes);
	return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
			    cudaStream_t)
{
	return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes)
{
	if (bytes == 0)
		return cudaSuccess;
	cuemu_check_range("cudaMemset", dst, bytes);
	memset(dst, value, bytes);
	return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t)
{
	return cudaMemset(dst, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t *s)
{
	*s = new cuemu_stream{ 1 };
	return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
	delete s;
	return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t)
{
	return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e)
{
	*e = new cuemu_event{ 0.0 };
	return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
	delete e;
	return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t)
{
	e->t = now_ms();
	return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t)
{
	return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
	*ms = (float)(b->t - a->t);
	return cudaSuccess;
}

/* ---- cuBLAS ---- */

/* bf16 as the emulator's cuda_bf16.h converts it, kernels and cuBLAS alike */
static float bf16_round(float x)
{
	return __bfloat162float(__float2bfloat16(x));
}

static size_t type_bytes(cudaDataType t)
{
	return t == CUDA_R_32F ? 4 : 2;
}

static float load(const void *p, cudaDataType t, size_t i)
{
	if (t == CUDA_R_32F)
		return ((const float *)p)[i];
	return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

static void store(void *p, cudaDataType t, size_t i, float x)
{
	if (t == CUDA_R_32F)
		((float *)p)[i] = x;
	else
		((__nv_bfloat16 *)p)[i] = __float2bfloat16(x);
}

/* elements spanned by count column-major (rows, cols, ld) matrices stride apart */
static size_t extent(int rows, int cols, int ld, long long stride, int count)
{
	if (rows == 0 || cols == 0 || count == 0)
		return 0;
	return (size_t)(cols - 1) * ld + rows + (size_t)(count - 1) * stride;
}

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
	*h = new cuemu_blas{ nullptr };
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
	delete h;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	h->stream = s;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t)
{
	return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes)
{
	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (bytes)
		cuemu_check_range("cublasSetWorkspace", ws, bytes);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
					  cublasOperation_t tb, int m, int n, int k,
					  const void *alpha_p, const void *A, cudaDataType at,
					  int lda, long long sa, const void *B, cudaDataType bt,
					  int ldb, long long sb, const void *beta_p, void *C,
					  cudaDataType ct, int ldc, long long sc, int count,
					  cublasComputeType_t compute, cublasGemmAlgo_t)
{
	bool fast16 = compute == CUBLAS_COMPUTE_32F_FAST_16BF;
	int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
	int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;

	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (m < 0 || n < 0 || k < 0 || count < 0 || sa < 0 || sb < 0 || sc < 0 ||
	    lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) ||
	    ldc < (m > 1 ? m : 1) || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
	    (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
		return CUBLAS_STATUS_INVALID_VALUE;
	/* cublasGemmEx's table for these compute types: fp32 operands and output with any of them;
	 * bf16 operands with a bf16 or fp32 output in plain COMPUTE_32F */
	bool f32 = at == CUDA_R_32F && bt == CUDA_R_32F && ct == CUDA_R_32F &&
		   (compute == CUBLAS_COMPUTE_32F || compute == CUBLAS_COMPUTE_32F_FAST_16BF ||
		    compute == CUBLAS_COMPUTE_32F_FAST_TF32);
	bool b16 = at == CUDA_R_16BF && bt == CUDA_R_16BF &&
		   (ct == CUDA_R_16BF || ct == CUDA_R_32F) && compute == CUBLAS_COMPUTE_32F;

	if (!f32 && !b16)
		return CUBLAS_STATUS_NOT_SUPPORTED;
	if (m == 0 || n == 0 || count == 0)
		return CUBLAS_STATUS_SUCCESS;

	float alpha = *(const float *)alpha_p, beta = *(const float *)beta_p;

	if (k > 0 && alpha != 0.0f) {
		cuemu_check_range("cuBLAS operand A", A,
				  extent(arows, acols, lda, sa, count) * type_bytes(at));
		cuemu_check_range("cuBLAS operand B", B,
				  extent(brows, bcols, ldb, sb, count) * type_bytes(bt));
	}
	cuemu_check_range("cuBLAS operand C", C, extent(m, n, ldc, sc, count) * type_bytes(ct));
	for (int q = 0; q < count; q++) {
		size_t oa = (size_t)q * sa, ob = (size_t)q * sb, oc = (size_t)q * sc;

		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				float acc = 0.0f;

				for (int p = 0; p < k && alpha != 0.0f; p++) {
					size_t ia = ta == CUBLAS_OP_N ? i + (size_t)p * lda
								      : p + (size_t)i * lda;
					size_t ib = tb == CUBLAS_OP_N ? p + (size_t)j * ldb
								      : j + (size_t)p * ldb;
					float x = load(A, at, oa + ia), y = load(B, bt, ob + ib);

					if (fast16) {
						x = bf16_round(x);
						y = bf16_round(y);
					}
					acc += x * y;
				}
				size_t ic = oc + i + (size_t)j * ldc;
				float r = alpha * acc;

				if (beta != 0.0f)
					r += beta * load(C, ct, ic);
				store(C, ct, ic, r);
			}
	}
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
			    int n, int k, const void *alpha, const void *A, cudaDataType at,
			    int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
			    void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
			    cublasGemmAlgo_t algo)
{
	return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0,
					  beta, C, ct, ldc, 0, 1, compute, algo);
}
