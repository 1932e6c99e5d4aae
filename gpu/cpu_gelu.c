/* gpu/cpu_gelu.c - GELU (tanh approximation) forward and backward on the CPU.
 *
 * Compiled with -ffast-math so that GCC calls glibc's vector expf (libmvec) and the loops run
 * 8 or 16 lanes wide: with scalar expf, GELU was a tenth of the training step.  Only this file
 * gets the flag, because fast-math lets the compiler assume that no NaN or Inf exists, and the
 * NaN/Inf detection in gpt.c must keep working; here a NaN input still gives a NaN output
 * (x / (1 + exp(...)) propagates it), which that detection then sees.  The result differs from
 * 0.5 x (1 + tanh u) by rounding only (checked by the gradient and PyTorch tests), and is the
 * same on every run: the vector path does not depend on thread scheduling. */
#include <math.h>

#include "gpu/cpu_ops_i.h"

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
/* |u| beyond this is the sigmoid's 0 or 1 in float: exp(-2u) must not overflow to Inf, which
 * fast-math assumes away (x / (1 + Inf) came out NaN below x = -10.1). */
#define GELU_UMAX 40.0f

static inline float gelu_u(float x)
{
	float u = GELU_K * (x + 0.044715f * x * x * x);

	return u > GELU_UMAX ? GELU_UMAX : u < -GELU_UMAX ? -GELU_UMAX : u;
}

/* 0.5 x (1 + tanh u) written as x * sigmoid(2u), u = k (x + 0.044715 x^3) */
void gpu_cpu_gelu_forward(void *ctx, gpu_act *a_out, const gpu_act *a_inp, size_t n)
{
	float *out = a_out;
	const float *inp = a_inp;

#pragma omp parallel for schedule(guided) if (n >= 8 * PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float x = inp[i];

		out[i] = x / (1.0f + expf(-2.0f * gelu_u(x)));
	}
}

void gpu_cpu_gelu_backward(void *ctx, gpu_act *a_dinp, const gpu_act *a_inp,
			   const gpu_act *a_dout, size_t n)
{
	float *dinp = a_dinp;
	const float *inp = a_inp, *dout = a_dout;

#pragma omp parallel for schedule(guided) if (n >= 8 * PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float x = inp[i];
		float e = expf(-2.0f * gelu_u(x)), s = 1.0f / (1.0f + e);
		float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);

		/* d/dx [x s(2u)] = s + x * 2 s (1 - s) du, with s (1 - s) = e s^2: exactly 0 where
		 * s is 1, however the compiler orders 1 - s */
		dinp[i] = dout[i] * (s + 2.0f * x * e * s * s * du);
	}
}
