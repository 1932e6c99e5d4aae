/* tests/gpu/cudaemu/cuda_bf16.h - bfloat16 on the emulator: the type and its conversions.
 *
 * The bits of the upper half of an IEEE float; float to bf16 rounds to nearest even (NaN stays a
 * quiet NaN), as __float2bfloat16 does on a device.  Only the conversions are provided: kernels
 * do their arithmetic in float. */
#ifndef CUEMU_CUDA_BF16_H
#define CUEMU_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
	uint16_t bits;
};
typedef __nv_bfloat16 nv_bfloat16;

static inline __nv_bfloat16 __float2bfloat16(float x)
{
	uint32_t u;
	__nv_bfloat16 r;

	memcpy(&u, &x, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		u |= 0x00400000u;
	else
		u += 0x7fffu + (u >> 16 & 1u);
	r.bits = (uint16_t)(u >> 16);
	return r;
}

static inline float __bfloat162float(__nv_bfloat16 h)
{
	uint32_t u = (uint32_t)h.bits << 16;
	float x;

	memcpy(&x, &u, 4);
	return x;
}

#endif
