/* gpu/cuda_none.c - the CUDA backend's entry point in builds without nvcc (or sanitised
 * builds): there is no CUDA table, and gpu_model_new() answers -ENODEV for it. */
#include <stddef.h>

#include "gpu/gpt_i.h"

const struct gpu_ops *gpu_cuda_ops(void)
{
	return NULL;
}
