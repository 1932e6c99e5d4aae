/* tests/serve/infer_dump.c - the logits gpu/infer.h gives a sequence, for test_torch.py.
 *
 * usage: infer_dump DIR ID...   (DIR a checkpoint directory)
 * Feeds the ids one at a time through the KV cache and prints the logits after each as one
 * JSON array of rows. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/infer.h"

int main(int argc, char **argv)
{
	struct gpu_infer *w = NULL;
	struct gpu_infer_state *s = NULL;
	float *logits;
	int n = argc - 2, V, r;

	if (argc < 3) {
		fprintf(stderr, "usage: infer_dump DIR ID...\n");
		return 2;
	}
	r = gpu_infer_load(&w, argv[1]);
	if (r < 0) {
		fprintf(stderr, "infer_dump: %s: %s\n", argv[1], strerror(-r));
		return 1;
	}
	V = gpu_infer_config(w)->vocab_size;
	logits = malloc((size_t)V * sizeof(float));
	if (!logits || gpu_infer_state_new(&s, w, n) < 0)
		return 1;
	printf("[");
	for (int t = 0; t < n; t++) {
		int32_t id = (int32_t)atoi(argv[2 + t]);

		r = gpu_infer_feed(s, &id, 1, logits);
		if (r < 0) {
			fprintf(stderr, "infer_dump: feed: %s\n", strerror(-r));
			return 1;
		}
		printf("%s[", t ? "," : "");
		for (int i = 0; i < V; i++)
			printf("%s%.9g", i ? "," : "", logits[i]);
		printf("]");
	}
	printf("]\n");
	gpu_infer_state_free(s);
	gpu_infer_free(w);
	free(logits);
	return 0;
}
