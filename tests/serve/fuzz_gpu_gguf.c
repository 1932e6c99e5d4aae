/* libFuzzer harness: gpu_gguf_check_buf() (gpu/gguf.h) on hostile bytes, loading and running the
 * model when the file is accepted.  The unit suite replays the seeds in corpus/gguf through it
 * (tests/fuzz/replay.c); with clang and libFuzzer it is a fuzzer:
 *   clang -fsanitize=fuzzer,address,undefined ... (see tests/fuzz/meson.build) */
#include <stddef.h>
#include <stdint.h>

#include "gpu/gguf.h"
#include "gpu/infer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gpu_gguf_info info;
	struct gpu_infer *w = NULL;

	if (gpu_gguf_check_buf(data, size, &info, &w) == 0 && w) {
		/* an accepted file must run: one token through a small cache */
		struct gpu_infer_state *s = NULL;
		int32_t id = 0;

		if (gpu_infer_state_new(&s, w, 1) == 0) {
			float *l = __builtin_alloca(sizeof(float) * (size_t)info.cfg.vocab_size);

			gpu_infer_feed(s, &id, 1, l);
		}
		gpu_infer_state_free(s);
	}
	gpu_infer_free(w);
	gpu_gguf_info_release(&info);
	return 0;
}
