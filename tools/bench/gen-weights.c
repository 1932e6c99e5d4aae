/*
 * gen-weights - writes model-like test data for the benchmarks.
 *
 *   gen-weights KIND SIZE_MIB SEED > file
 *
 * KIND: bf16 | fp16 | fp32 (normal-distributed weights, std 0.02, as in a
 * trained transformer's linear layers), q8 (random bytes: quantized blocks
 * are near-incompressible), or model (a safetensors-like file: a JSON
 * header then bf16 tensors of 1-8 MiB, whose layout a second seed varies),
 * or small1 / small2 (the two versions of tools/bench/smallmodel.h's model
 * of 1,400 small tensors; SIZE_MIB and SEED are ignored).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smallmodel.h"

static uint64_t rng = 88172645463325252ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double uniform(void)
{
	return ((next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double normal(void)
{
	return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform());
}

static uint16_t to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static uint16_t to_fp16(float f)
{
	_Float16 h = (_Float16)f;
	uint16_t u;

	memcpy(&u, &h, 2);
	return u;
}

int main(int argc, char **argv)
{
	static uint8_t buf[1 << 20];
	uint64_t size, done = 0;
	const char *kind;
	size_t i;

	if (argc != 4) {
		fprintf(stderr, "usage: gen-weights bf16|fp16|fp32|q8|small1|small2 SIZE_MIB SEED\n");
		return 2;
	}
	kind = argv[1];
	if (!strcmp(kind, "small1") || !strcmp(kind, "small2")) {
		uint8_t *m;
		size_t n = sm_build(kind[5] - '0', &m);

		i = fwrite(m, 1, n, stdout);
		free(m);
		return i == n ? 0 : 1;
	}
	size = strtoull(argv[2], NULL, 10) << 20;
	rng ^= strtoull(argv[3], NULL, 10) * 0x9E3779B97F4A7C15ULL;
	while (done < size) {
		if (!strcmp(kind, "q8")) {
			for (i = 0; i < sizeof(buf); i += 8) {
				uint64_t v = next();

				memcpy(buf + i, &v, 8);
			}
		} else if (!strcmp(kind, "fp32")) {
			for (i = 0; i < sizeof(buf); i += 4) {
				float f = (float)(normal() * 0.02);

				memcpy(buf + i, &f, 4);
			}
		} else {
			int bf = !strcmp(kind, "bf16");

			for (i = 0; i < sizeof(buf); i += 2) {
				float f = (float)(normal() * 0.02);
				uint16_t h = bf ? to_bf16(f) : to_fp16(f);

				memcpy(buf + i, &h, 2);
			}
		}
		if (fwrite(buf, 1, sizeof(buf), stdout) != sizeof(buf))
			return 1;
		done += sizeof(buf);
	}
	return 0;
}
