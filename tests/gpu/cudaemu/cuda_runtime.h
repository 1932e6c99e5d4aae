/* tests/gpu/cudaemu/cuda_runtime.h - a CUDA device emulated on the CPU, for testing kernels.
 *
 * A stand-in for a GPU, not a GPU: it lets the unit suite run gpu/cuda_ops.cu, unchanged, on a
 * machine without one.  cu2cc.py rewrites the file's kernel launches (k<<<grid, block, shmem,
 * stream>>>(args) becomes cuemu_launch(...)) and g++ compiles the result with this folder first
 * on the include path, so <cuda_runtime.h>, <cublas_v2.h> and <cuda_bf16.h> are the headers
 * here.  What the emulator proves and what it cannot:
 *
 *   - Every CUDA thread of a block runs as a fiber (ucontext) on one host thread; blocks run one
 *     after another.  __syncthreads() and the warp intrinsics (__shfl_*_sync, __syncwarp) are
 *     real barriers between those fibers, so a kernel's indexing, reductions and its use of
 *     shared memory and shuffles are exercised exactly as written.
 *   - It refuses what a device would refuse or leave undefined: a launch with an empty grid or a
 *     block over 1024 threads (cudaErrorInvalidConfiguration from cudaGetLastError), a kernel
 *     argument that points outside device memory, a copy or a cuBLAS operand that runs past an
 *     allocation, bad cuBLAS leading dimensions (CUBLAS_STATUS_INVALID_VALUE), a shuffle whose
 *     mask names a lane that has exited, does not exist or is not the caller's warp, and
 *     barriers that can never all be reached (deadlock).  Those last are bugs in the kernel:
 *     the emulator prints what and where, and aborts.
 *   - Device memory comes from malloc at its exact size, filled with 0xff bytes (NaN as float),
 *     so under AddressSanitizer an access past the end is caught, and a read of memory no one
 *     wrote shows up as NaN in the results.  Shared memory, static and dynamic, is refilled so
 *     for every block.
 *   - A thread that exits while others of its block wait at __syncthreads() is an error too
 *     (undefined in CUDA: the barrier's condition must be the same for the whole block).
 *   - cuBLAS takes only the type combinations the real one takes for these compute types.
 *   - Errors are as a device reports them: a launch or call that fails sets the error that
 *     cudaGetLastError() returns and clears; synchronisation has no asynchronous errors to
 *     report here, so it returns cudaSuccess.
 *   - Blocks k and k + 1 overlap as far as memory goes (each its own shared memory and stacks,
 *     block k + 2 after block k), and with CUEMU_TSAN the emulator gives ThreadSanitizer every
 *     CUDA thread as a fiber and every ordering CUDA promises (the launch, __syncthreads(),
 *     __syncwarp(), block k before k + 2), no more: the race check, in which two threads'
 *     accesses to the same global or shared memory that nothing orders, one a write, are
 *     reported as a data race.  atomicAdd() and atomicMax() are atomic accesses there.
 *     CUEMU_ORDER=reverse runs blocks and threads in the opposite order besides, so a result
 *     that depends on the order of unsynchronised threads differs between the two runs.
 *     Timing, occupancy and memory coalescing mean nothing here.
 *
 * Emulator state (the current block's fibers, the device allocations) is per host thread or
 * behind a lock; a program may use it from one thread at a time, as the tests do.
 */
#ifndef CUEMU_CUDA_RUNTIME_H
#define CUEMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
/* One host thread runs one block at a time: a static is shared by the block's threads. */
#define __shared__ static
#define __align__(n) alignas(n)

struct dim3 {
	unsigned x, y, z;
	constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
typedef dim3 uint3;

/* Set by the emulator before it switches to a thread's fiber. */
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
enum { warpSize = 32 };

enum cudaError_t {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInitializationError = 3,
	cudaErrorInvalidConfiguration = 9,
	cudaErrorInsufficientDriver = 35,
	cudaErrorNoDevice = 100,
	cudaErrorInvalidDevice = 101,
	cudaErrorInvalidResourceHandle = 400,
	cudaErrorIllegalAddress = 700,
	cudaErrorLaunchFailure = 719,
	cudaErrorSystemDriverMismatch = 803,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
	cudaMemcpyHostToHost = 0,
	cudaMemcpyHostToDevice = 1,
	cudaMemcpyDeviceToHost = 2,
	cudaMemcpyDeviceToDevice = 3,
	cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
	cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

typedef struct cuemu_stream *cudaStream_t;
typedef struct cuemu_event *cudaEvent_t;

struct cudaDeviceProp {
	char name[256];
	size_t totalGlobalMem;
	size_t sharedMemPerBlock;
	size_t sharedMemPerBlockOptin;
	int warpSize;
	int maxThreadsPerBlock;
	int multiProcessorCount;
	int major, minor;
};

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaGetDevice(int *dev);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int dev);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);

cudaError_t cudaMalloc(void **ptr, size_t bytes);
template <class T> static inline cudaError_t cudaMalloc(T **ptr, size_t bytes)
{
	return cudaMalloc((void **)ptr, bytes);
}
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t bytes);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
			    cudaStream_t s = 0);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s = 0);

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

cudaError_t cuemu_func_set_attribute(const void *fn, cudaFuncAttribute attr, int value);
template <class F> static inline cudaError_t cudaFuncSetAttribute(F *fn, cudaFuncAttribute attr,
								  int value)
{
	return cuemu_func_set_attribute((const void *)fn, attr, value);
}

/* ---- the emulator's own interface (used by the launch rewrite and the cuBLAS shim) ---- */

struct cuemu_cfg {
	dim3 grid, block;
	size_t shmem;
	cudaStream_t stream;
};

static inline cuemu_cfg cuemu_config(dim3 grid, dim3 block, size_t shmem = 0,
				      cudaStream_t stream = 0)
{
	return cuemu_cfg{ grid, block, shmem, stream };
}

struct cuemu_body {
	virtual void run() = 0;
	virtual ~cuemu_body() {}
};

/* Runs body for every thread of cfg's grid; a bad configuration sets the error that
 * cudaGetLastError() returns. */
void cuemu_run(const char *kernel, const void *fn, const cuemu_cfg &cfg, cuemu_body &body);
/* Aborts, naming the kernel and argument, unless p is NULL or inside a device allocation. */
void cuemu_check_arg(const char *kernel, int index, const void *p);
/* Aborts unless [p, p + bytes) lies inside one device allocation. */
void cuemu_check_range(const char *what, const void *p, size_t bytes);
[[noreturn]] void cuemu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *cuemu_dynamic_smem(void);
/* Blocks whose memory may overlap in time: each static __shared__ array has one copy a pool
 * (cu2cc.py), and the running block uses copy cuemu_pool(). */
#define CUEMU_POOLS 2
int cuemu_pool(void);
/* The first thread of a block to declare a static __shared__ array fills it with 0xff bytes. */
void cuemu_shared_fresh(void *p, size_t bytes);
void cuemu_syncthreads(void);
void cuemu_syncwarp(unsigned mask);
/* lane's 8-byte slot exchange: publish v, wait for the warp, read src_lane's value */
uint64_t cuemu_exchange(unsigned mask, uint64_t v, int src_lane, int width);
int cuemu_lane(void);

template <class Tuple, size_t... I>
static inline void cuemu_check_args(const char *kernel, const Tuple &t, std::index_sequence<I...>)
{
	(void)kernel;
	(void)t;
	int i = 0;
	auto one = [&](const auto &a) {
		if constexpr (std::is_pointer<std::decay_t<decltype(a)>>::value)
			cuemu_check_arg(kernel, i, (const void *)a);
		i++;
	};
	(one(std::get<I>(t)), ...);
}

template <class... P> struct cuemu_kernel_body : cuemu_body {
	void (*fn)(P...);
	std::tuple<std::decay_t<P>...> args;
	template <class... A>
	cuemu_kernel_body(void (*f)(P...), A &&...a) : fn(f), args(std::forward<A>(a)...) {}
	void run() override { std::apply(fn, args); }
};

template <class... P, class... A>
static inline void cuemu_launch(const char *name, void (*fn)(P...), const cuemu_cfg &cfg,
				A &&...args)
{
	static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong argument count");
	cuemu_kernel_body<P...> body(fn, std::forward<A>(args)...);

	cuemu_check_args(name, body.args, std::index_sequence_for<P...>{});
	cuemu_run(name, (const void *)fn, cfg, body);
}

/* ---- device functions ---- */

static inline void __syncthreads(void) { cuemu_syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { cuemu_syncwarp(mask); }
static inline void __threadfence(void) {}

template <class T> static inline T cuemu_shfl(unsigned mask, T v, int src, int width)
{
	static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
	uint64_t in = 0, out;
	T r;

	memcpy(&in, &v, sizeof(T));
	out = cuemu_exchange(mask, in, src, width);
	memcpy(&r, &out, sizeof(T));
	return r;
}

template <class T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = warpSize)
{
	int lane = cuemu_lane(), base = lane / width * width;

	return cuemu_shfl(mask, v, base + (src % width + width) % width, width);
}

template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize)
{
	int lane = cuemu_lane(), src = lane ^ lane_mask;

	/* a source in a later group of width lanes reads the caller's own value */
	if (src / width > lane / width)
		src = lane;
	return cuemu_shfl(mask, v, src, width);
}

template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize)
{
	int lane = cuemu_lane(), src = lane + (int)delta;

	if (src / width != lane / width)
		src = lane;
	return cuemu_shfl(mask, v, src, width);
}

template <class T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize)
{
	int lane = cuemu_lane(), src = lane - (int)delta;

	if (src < 0 || src / width != lane / width)
		src = lane;
	return cuemu_shfl(mask, v, src, width);
}

/* Blocks run one at a time on one host thread, so a load then a store is atomic; both are
 * atomic accesses, which the race check does not report. */
template <class T> static inline T atomicAdd(T *p, T v)
{
	T old, nv;

	__atomic_load(p, &old, __ATOMIC_RELAXED);
	nv = old + v;
	__atomic_store(p, &nv, __ATOMIC_RELAXED);
	return old;
}

template <class T> static inline T atomicMax(T *p, T v)
{
	T old, nv;

	__atomic_load(p, &old, __ATOMIC_RELAXED);
	nv = old > v ? old : v;
	__atomic_store(p, &nv, __ATOMIC_RELAXED);
	return old;
}

template <class T> static inline T __ldg(const T *p) { return *p; }

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }

#endif
