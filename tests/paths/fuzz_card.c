/*
 * libFuzzer harness: model cards (plan_model_parse) on hostile bytes.  The
 * first byte splits the input between card.json and README.md front matter,
 * both written by anyone who can write models/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/plan_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct plan_model m;
	char *card, *readme, *err = NULL;
	size_t cut;

	if (!size)
		return 0;
	cut = (size_t)data[0] * (size - 1) / 255;
	card = malloc(cut + 1);
	readme = malloc(size - 1 - cut + 1);
	if (!card || !readme)
		goto out;
	memcpy(card, data + 1, cut);
	card[cut] = '\0';
	memcpy(readme, data + 1 + cut, size - 1 - cut);
	readme[size - 1 - cut] = '\0';
	memset(&m, 0, sizeof(m));
	if (plan_model_parse("fuzz", card, readme, &m, &err) == 0)
		plan_model_release(&m);
	free(err);
out:
	free(card);
	free(readme);
	return 0;
}
