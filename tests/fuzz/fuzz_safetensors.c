/* libFuzzer harness: mf_parse_safetensors() on hostile bytes. */
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_parse(mf_parse_safetensors, data, size);
	if (size && (data[0] & 1))
		fuzz_parse(mf_parse, data, size);
	return 0;
}
