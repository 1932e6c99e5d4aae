/* tests/gpu/kernel_parity.h - compare a backend's kernels with the CPU reference, one by one. */
#ifndef TESTS_GPU_KERNEL_PARITY_H
#define TESTS_GPU_KERNEL_PARITY_H

#include "gpu/gpt_i.h"

/* Runs every kernel of cand (context ctx, made with this bf16 flag) and of the CPU table on the
 * same data; prints one line per output and returns the number that differ beyond the
 * tolerance: 1e-4 x (1 + max |reference|) with fp32 activations, 1e-2 x max + 1e-6 with bf16
 * ones (inputs are rounded to bf16 for both sides; the optimizer is fp32 in both, 1e-4).
 * long_heads: the heads of the long attention (T 1100, past the rows kept in registers): 2 in
 * full, 1 for a quicker run, 0 to leave it out. */
int kernel_parity(const struct gpu_ops *cand, void *ctx, int bf16, int long_heads);

#endif
