/* tests/gpu/cudaemu/cublas_v2.h - the cuBLAS calls the CUDA backend makes, on the emulator.
 *
 * Column-major GEMMs computed on the host with fp32 accumulation in the order of k.  Checked
 * as cuBLAS checks them (dimensions, leading dimensions: CUBLAS_STATUS_INVALID_VALUE), and every
 * operand's extent must lie inside one device allocation (else the emulator aborts, naming the
 * operand).  With beta == 0 the output is not read, as in cuBLAS.  The _FAST_16BF compute types
 * round both inputs to bf16 before multiplying, as the tensor cores do; bf16 operands
 * (CUDA_R_16BF) are read as such and a bf16 output is rounded to nearest even.
 */
#ifndef CUEMU_CUBLAS_V2_H
#define CUEMU_CUBLAS_V2_H

#include "cuda_runtime.h"

typedef struct cuemu_blas *cublasHandle_t;

enum cublasStatus_t {
	CUBLAS_STATUS_SUCCESS = 0,
	CUBLAS_STATUS_NOT_INITIALIZED = 1,
	CUBLAS_STATUS_ALLOC_FAILED = 3,
	CUBLAS_STATUS_INVALID_VALUE = 7,
	CUBLAS_STATUS_ARCH_MISMATCH = 8,
	CUBLAS_STATUS_EXECUTION_FAILED = 13,
	CUBLAS_STATUS_NOT_SUPPORTED = 15,
};

enum cublasOperation_t {
	CUBLAS_OP_N = 0,
	CUBLAS_OP_T = 1,
};

enum cudaDataType {
	CUDA_R_32F = 0,
	CUDA_R_16F = 2,
	CUDA_R_16BF = 14,
};
typedef cudaDataType cudaDataType_t;

enum cublasComputeType_t {
	CUBLAS_COMPUTE_32F = 68,
	CUBLAS_COMPUTE_32F_FAST_16F = 74,
	CUBLAS_COMPUTE_32F_FAST_16BF = 75,
	CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
};

enum cublasGemmAlgo_t {
	CUBLAS_GEMM_DEFAULT = -1,
	CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99,
};

enum cublasMath_t {
	CUBLAS_DEFAULT_MATH = 0,
	CUBLAS_TF32_TENSOR_OP_MATH = 3,
};

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes);

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
			    int n, int k, const void *alpha, const void *A, cudaDataType at,
			    int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
			    void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
			    cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
					  cublasOperation_t tb, int m, int n, int k,
					  const void *alpha, const void *A, cudaDataType at, int lda,
					  long long sa, const void *B, cudaDataType bt, int ldb,
					  long long sb, const void *beta, void *C, cudaDataType ct,
					  int ldc, long long sc, int count,
					  cublasComputeType_t compute, cublasGemmAlgo_t algo);

#endif
