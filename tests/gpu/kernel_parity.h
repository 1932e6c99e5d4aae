/* tests/gpu/kernel_parity.h - compare a backend's kernels with the CPU reference, one by one. */
#ifndef TESTS_GPU_KERNEL_PARITY_H
#define TESTS_GPU_KERNEL_PARITY_H

#include "gpu/gpt_i.h"

/* Runs every kernel of cand (context ctx) and of the CPU table on the same data; prints one
 * line per output and returns the number that differ beyond the tolerance. */
int kernel_parity(const struct gpu_ops *cand, void *ctx);

#endif
