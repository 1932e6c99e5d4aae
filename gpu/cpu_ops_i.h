/* gpu/cpu_ops_i.h - CPU kernels that live in their own translation unit because they are
 * compiled with different flags (see cpu_gelu.c).  Private to gpu/. */
#ifndef GPU_CPU_OPS_I_H
#define GPU_CPU_OPS_I_H

#include <stddef.h>

#include "gpu/gpt_i.h"

/* Work below which a CPU kernel stays on one thread (see cpu_ops.c). */
#define PAR_MIN 32768

void gpu_cpu_gelu_forward(void *ctx, gpu_act *out, const gpu_act *inp, size_t n);
void gpu_cpu_gelu_backward(void *ctx, gpu_act *dinp, const gpu_act *inp, const gpu_act *dout,
			   size_t n);

#endif
