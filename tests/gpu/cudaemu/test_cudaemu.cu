/* tests/gpu/cudaemu/test_cudaemu.cu - the emulator computes what CUDA computes, and refuses what
 * a device would refuse or leave undefined.
 *
 * Each refusal runs in a child process and must end in abort() with the emulator's message;
 * the rest runs in this process.  Built for the race check (CUEMU_TSAN), it also runs planted
 * races in children, each of which must be reported, and their ordered twins, which must not.
 * Kernels here are written in CUDA and rewritten by cu2cc.py like the backend's. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

static int failures;

static void expect(bool ok, const char *what)
{
	printf("%-60s %s\n", what, ok ? "ok" : "FAIL");
	if (!ok)
		failures++;
}

/* one block: a shared-memory tree reduction, then a warp-shuffle one; both must give n(n-1)/2 */
__global__ static void k_block_sum(float *out, int n)
{
	__shared__ float red[256];
	int t = threadIdx.x;

	red[t] = t < n ? (float)t : 0.0f;
	__syncthreads();
	for (int o = blockDim.x / 2; o > 0; o >>= 1) {
		if (t < o)
			red[t] += red[t + o];
		__syncthreads();
	}
	float tree = red[0], v = t < n ? (float)t : 0.0f;

	__syncthreads(); /* every thread has read red[0] before it is reused */
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	if (t % 32 == 0)
		red[t / 32] = v;
	__syncthreads();
	if (t == 0) {
		float s = 0.0f;

		for (int w = 0; w < (int)blockDim.x / 32; w++)
			s += red[w];
		out[2 * blockIdx.x] = tree;
		out[2 * blockIdx.x + 1] = s;
	}
}

__global__ static void k_rotate(int *out)
{
	extern __shared__ int dyn[];
	int t = threadIdx.x;

	dyn[t] = t;
	__syncthreads();
	out[t] = dyn[(t + 1) % blockDim.x] + __shfl_down_sync(0xffffffffu, t, 1);
}

__global__ static void k_fill(float *out, float v)
{
	out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

/* lanes 16..31 leave, then the rest shuffle with a full mask: undefined in CUDA */
__global__ static void k_bad_mask(float *out)
{
	if (threadIdx.x >= 16)
		return;
	out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

/* half a warp waits at __syncthreads, the other half at __syncwarp: neither is ever released */
__global__ static void k_divergent(float *out)
{
	if (threadIdx.x < 16)
		__syncthreads();
	else
		__syncwarp();
	out[threadIdx.x] = 0.0f;
}

/* block 0 writes its shared array, blocks 1 and 2 only read theirs: they must see undefined
 * (NaN) bytes, block 2 too, which has block 0's copy after it */
__global__ static void k_stale_shared(float *out)
{
	__shared__ float s[32];

	if (blockIdx.x == 0)
		s[threadIdx.x] = 1.0f;
	__syncthreads();
	out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}

/* the common bug: an early return before a barrier the rest of the block waits at */
__global__ static void k_early_return(float *out, int n)
{
	__shared__ float s[64];

	if ((int)threadIdx.x >= n)
		return;
	s[threadIdx.x] = 1.0f;
	__syncthreads();
	out[threadIdx.x] = s[(threadIdx.x + 1) % n];
}

/* Runs fn in a child; returns its wait status, and the start of its stderr in buf. */
static int in_child(void (*fn)(void), char *buf, size_t size)
{
	int fd[2], status = -1;
	size_t len = 0;
	ssize_t r;
	char rest[4096];

	buf[0] = 0;
	if (pipe(fd) < 0)
		return -1;
	pid_t pid = fork();

	if (pid == 0) {
		dup2(fd[1], 2);
		close(fd[0]);
		fn();
		_exit(0);
	}
	close(fd[1]);
	/* read to the end, keeping the start: a child must never block on a full pipe */
	while ((r = read(fd[0], len + 1 < size ? buf + len : rest,
			 len + 1 < size ? size - 1 - len : sizeof(rest))) > 0)
		if (len + 1 < size)
			len += (size_t)r;
	buf[len] = 0;
	close(fd[0]);
	waitpid(pid, &status, 0);
	return status;
}

static bool aborts(void (*fn)(void), const char *needle)
{
	char buf[4096];
	int status = in_child(fn, buf, sizeof(buf));

	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(buf, needle);
}

#ifdef CUEMU_TSAN
/* Planted races and their ordered twins.  Under TSAN_OPTIONS=halt_on_error=1 exitcode=66 a
 * report ends the child with status 66. */
static bool reported(void (*fn)(void), bool race)
{
	char buf[4096];
	int status = in_child(fn, buf, sizeof(buf));
	bool said = strstr(buf, "ThreadSanitizer: data race") != NULL;

	if (race)
		return said && WIFEXITED(status) && WEXITSTATUS(status) == 66;
	if (said)
		fputs(buf, stdout);
	return !said && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* each thread reads the element another warp wrote */
__global__ static void k_race_shared(int *out, int sync)
{
	__shared__ int s[64];
	int t = threadIdx.x;

	s[t] = t;
	if (sync)
		__syncthreads();
	out[blockIdx.x * 64 + t] = s[(t + 32) % 64];
}

/* each lane reads its neighbour's element; a shuffle between orders nothing */
__global__ static void k_race_warp(int *out, int sync)
{
	__shared__ int s[32];
	int t = threadIdx.x;

	s[t] = t;
	int v = __shfl_xor_sync(0xffffffffu, t, 1);

	if (sync)
		__syncwarp();
	out[t] = s[t ^ 1] + v;
}

/* every block adds into, or stores to, the same elements */
__global__ static void k_race_blocks(int *out, int atomic)
{
	if (atomic)
		atomicAdd(&out[threadIdx.x], 1);
	else
		out[threadIdx.x] = (int)blockIdx.x;
}

static int *race_buf(void)
{
	int *d;

	cudaMalloc(&d, 3 * 64 * sizeof(int));
	cudaMemset(d, 0, 3 * 64 * sizeof(int));
	return d;
}

static void shared_race(void) { k_race_shared<<<1, 64>>>(race_buf(), 0); }
/* three blocks: block 2 has block 0's shared memory after it */
static void shared_ordered(void) { k_race_shared<<<3, 64>>>(race_buf(), 1); }
static void warp_race(void) { k_race_warp<<<1, 32>>>(race_buf(), 0); }
static void warp_ordered(void) { k_race_warp<<<1, 32>>>(race_buf(), 1); }
static void blocks_race(void) { k_race_blocks<<<2, 64>>>(race_buf(), 0); }
static void blocks_atomic(void) { k_race_blocks<<<3, 64>>>(race_buf(), 1); }

/* one launch writes what the next reads, in other threads: launches are ordered */
static void launches_ordered(void)
{
	int *d = race_buf();

	k_race_blocks<<<1, 64>>>(d, 0);
	k_race_shared<<<1, 64>>>(d + 64, 1);
	k_race_blocks<<<1, 64>>>(d + 64, 1);
}
#endif

static void host_pointer_arg(void)
{
	static float host[64];

	k_fill<<<1, 64>>>(host, 1.0f);
}

static void bad_mask(void)
{
	float *d;

	cudaMalloc(&d, 32 * sizeof(float));
	k_bad_mask<<<1, 32>>>(d);
}

static void divergent(void)
{
	float *d;

	cudaMalloc(&d, 64 * sizeof(float));
	k_divergent<<<1, 64>>>(d);
}

static void early_return(void)
{
	float *d;

	cudaMalloc(&d, 64 * sizeof(float));
	k_early_return<<<1, 64>>>(d, 40);
}

static void copy_past_end(void)
{
	float *d, h[65];

	cudaMalloc(&d, 64 * sizeof(float));
	cudaMemcpy(d, h, sizeof(h), cudaMemcpyHostToDevice);
}

static void gemm_past_end(void)
{
	float *a, *c, one = 1.0f, zero = 0.0f;
	cublasHandle_t h;

	cublasCreate(&h);
	cudaMalloc(&a, 15 * sizeof(float)); /* a 4x4 operand needs 16 */
	cudaMalloc(&c, 16 * sizeof(float));
	cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a, CUDA_R_32F, 4, a, CUDA_R_32F, 4,
		     &zero, c, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

int main(void)
{
	const bool reverse = getenv("CUEMU_ORDER") && strcmp(getenv("CUEMU_ORDER"), "reverse") == 0;
	float *d_sum, sum[6];
	int *d_rot, rot[64];

	printf("order: %s\n", reverse ? "reverse" : "forward");
	cudaMalloc(&d_sum, sizeof(sum));
	k_block_sum<<<3, 256>>>(d_sum, 200);
	cudaMemcpy(sum, d_sum, sizeof(sum), cudaMemcpyDeviceToHost);
	expect(cudaGetLastError() == cudaSuccess && sum[0] == 19900.0f && sum[1] == 19900.0f &&
	       sum[4] == 19900.0f && sum[5] == 19900.0f,
	       "shared-memory and shuffle reductions give n(n-1)/2");

	cudaMalloc(&d_rot, sizeof(rot));
	k_rotate<<<1, 64, 64 * sizeof(int)>>>(d_rot);
	cudaMemcpy(rot, d_rot, sizeof(rot), cudaMemcpyDeviceToHost);
	/* lane 31 of each warp shuffles down past its warp and keeps its own value */
	expect(rot[0] == 1 + 1 && rot[30] == 31 + 31 && rot[31] == 32 + 31 && rot[63] == 0 + 63,
	       "dynamic shared memory and __shfl_down_sync");

	float *d_big;

	cudaMalloc(&d_big, 4096);
	k_fill<<<1, 2048>>>(d_big, 1.0f);
	expect(cudaGetLastError() == cudaErrorInvalidConfiguration,
	       "a block of 2048 threads: cudaErrorInvalidConfiguration");
	k_fill<<<0, 32>>>(d_big, 1.0f);
	expect(cudaGetLastError() == cudaErrorInvalidConfiguration,
	       "an empty grid: cudaErrorInvalidConfiguration");
	k_rotate<<<1, 64, 64 << 10>>>(d_rot);
	expect(cudaGetLastError() == cudaErrorInvalidValue,
	       "64 KiB of dynamic shared memory without the attribute: refused");
	expect(cudaGetLastError() == cudaSuccess, "cudaGetLastError() clears the error");

	float one = 1.0f, zero = 0.0f;
	cublasHandle_t h;

	cublasCreate(&h);
	expect(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d_sum, CUDA_R_32F, 3,
			    d_sum, CUDA_R_32F, 4, &zero, d_sum, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F,
			    CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE,
	       "cuBLAS lda below the row count: CUBLAS_STATUS_INVALID_VALUE");
	{
		/* column-major (2x3) . (3x2) */
		float a[6] = { 1, 2, 3, 4, 5, 6 }, b[6] = { 1, 0, 0, 1, 1, 1 }, c[4];
		float *da, *db, *dc;

		cudaMalloc(&da, sizeof(a));
		cudaMalloc(&db, sizeof(b));
		cudaMalloc(&dc, sizeof(c));
		cudaMemcpy(da, a, sizeof(a), cudaMemcpyHostToDevice);
		cudaMemcpy(db, b, sizeof(b), cudaMemcpyHostToDevice);
		cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, da, CUDA_R_32F, 2, db,
			     CUDA_R_32F, 3, &zero, dc, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F,
			     CUBLAS_GEMM_DEFAULT);
		cudaMemcpy(c, dc, sizeof(c), cudaMemcpyDeviceToHost);
		/* A = [1 3 5; 2 4 6], B = [1 1; 0 1; 0 1] -> C = [1 9; 2 12] */
		expect(c[0] == 1 && c[1] == 2 && c[2] == 9 && c[3] == 12, "cuBLAS GEMM, column-major");
		cudaFree(da);
		cudaFree(db);
		cudaFree(dc);
	}
	{
		float *a, *c;
		uint16_t *b;

		cudaMalloc(&a, 16 * sizeof(float));
		cudaMalloc(&b, 16 * sizeof(uint16_t));
		cudaMalloc(&c, 16 * sizeof(float));
		expect(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, a, CUDA_R_32F, 4, b,
				    CUDA_R_16BF, 4, &zero, c, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F,
				    CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
		       "cuBLAS fp32 times bf16: CUBLAS_STATUS_NOT_SUPPORTED");
		cudaFree(a);
		cudaFree(b);
		cudaFree(c);
	}
	cublasDestroy(h);
	{
		float *d, out[96];

		cudaMalloc(&d, sizeof(out));
		k_stale_shared<<<3, 32>>>(d);
		cudaMemcpy(out, d, sizeof(out), cudaMemcpyDeviceToHost);
		expect(out[0] == 1.0f && isnan(out[32]) && isnan(out[64]),
		       "static shared memory starts undefined (NaN) in every block");
		cudaFree(d);
	}

	expect(aborts(host_pointer_arg, "is not device memory"),
	       "a host pointer as a kernel argument aborts");
	expect(aborts(bad_mask, "which is exited"), "a shuffle naming exited lanes aborts");
	expect(aborts(divergent, "is at __syncthreads"),
	       "__syncwarp against __syncthreads in one warp aborts");
	expect(aborts(early_return, "exited while"),
	       "an early return before __syncthreads aborts");
	expect(aborts(copy_past_end, "not inside one device allocation"),
	       "a copy past the end of an allocation aborts");
	expect(aborts(gemm_past_end, "cuBLAS operand A"),
	       "a cuBLAS operand past the end of its allocation aborts");
#ifdef CUEMU_TSAN
	expect(reported(shared_race, true), "race check: shared memory across warps, reported");
	expect(reported(shared_ordered, false), "race check: the same after __syncthreads, not");
	expect(reported(warp_race, true), "race check: shared memory in a warp, shuffle only, reported");
	expect(reported(warp_ordered, false), "race check: the same after __syncwarp, not");
	expect(reported(blocks_race, true), "race check: two blocks store one element, reported");
	expect(reported(blocks_atomic, false), "race check: three blocks atomicAdd, not");
	expect(reported(launches_ordered, false), "race check: one launch after another, not");
#endif

	cudaFree(d_sum);
	cudaFree(d_rot);
	cudaFree(d_big);
	printf("%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
