/* ref_dump OUTDIR - the C side of the PyTorch reference test (test_torch_ref.py).
 * ref_dump --eval CKPTDIR RESULTS_JSON - load a checkpoint written elsewhere (by the test, from
 *   PyTorch's weights) and print the mean loss on the batch stored in RESULTS_JSON.
 *
 * Writes into OUTDIR:
 *   ckpt/                   the model before training (gpu_ckpt_save: HF names, config.json)
 *   logits.safetensors      "logits" (B, T, V) of the first forward
 *   grads.safetensors       the gradients of that forward's mean loss, under the HF names
 *   results.json            the batch, the hyperparameters and the losses of ten AdamW steps
 * The weights are perturbed away from the GPT-2 initialisation (zero biases, unit gains) so
 * that every parameter takes part in the comparison. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gpu/ckpt.h"
#include "gpu/gpt.h"

enum { B = 4, T = 16, STEPS = 10 };

static int eval(const char *dir, const char *results)
{
	struct gpu_config cfg;
	struct gpu_opts opts = { GPU_BACKEND_CPU, B, T, 0, 1, 0 };
	struct gpu_model *m = NULL;
	int32_t in[B * T], tg[B * T];
	json_t *j = json_load_file(results, 0, NULL);
	float loss;
	int r = -EINVAL;

	if (!j || json_array_size(json_object_get(j, "inputs")) != B * T ||
	    json_array_size(json_object_get(j, "targets")) != B * T)
		goto out;
	for (int i = 0; i < B * T; i++) {
		in[i] = (int32_t)json_integer_value(json_array_get(json_object_get(j, "inputs"), i));
		tg[i] = (int32_t)json_integer_value(json_array_get(json_object_get(j, "targets"), i));
	}
	if ((r = gpu_ckpt_read_config(dir, &cfg)) < 0 || (r = gpu_model_new(&m, &cfg, &opts)) < 0 ||
	    (r = gpu_ckpt_load(m, dir, NULL)) < 0 || (r = gpu_model_forward(m, in, tg, B, T, &loss)) < 0)
		goto out;
	printf("%.9g\n", loss);
out:
	if (r < 0)
		fprintf(stderr, "ref_dump --eval: %s\n", strerror(-r));
	gpu_model_free(m);
	json_decref(j);
	return r < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	const struct gpu_config cfg = { 2, 4, 32, 16, 64 };
	const struct gpu_opts opts = { GPU_BACKEND_CPU, B, T, 0, 11, 0 };
	/* the clip is below the first gradient norms, so clipping takes part */
	const struct gpu_adamw hp = { 0.9f, 0.95f, 1e-8f, 0.1f, 0.2f };
	const float lr = 1e-3f;
	struct gpu_model *m = NULL;
	struct gpu_ckpt_meta meta = { 0, 0 };
	int32_t in[B * T], tg[B * T];
	float *p = NULL, *logits = NULL, losses[STEPS], norms[STEPS];
	json_t *res = NULL, *ji, *jt, *jl, *jn;
	uint64_t rng = 2024;
	char path[4096];
	int r;

	if (argc == 4 && strcmp(argv[1], "--eval") == 0)
		return eval(argv[2], argv[3]);
	if (argc != 2) {
		fprintf(stderr, "usage: ref_dump OUTDIR | ref_dump --eval CKPTDIR RESULTS_JSON\n");
		return 2;
	}
	r = gpu_model_new(&m, &cfg, &opts);
	if (r < 0)
		goto out;
	p = malloc(gpu_model_num_params(m) * sizeof(float));
	logits = malloc((size_t)B * T * cfg.vocab_size * sizeof(float));
	if (!p || !logits) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = gpu_model_read(m, GPU_BUF_PARAMS, p)) < 0)
		goto out;
	for (size_t i = 0; i < gpu_model_num_params(m); i++)
		p[i] += 0.1f * (2.0f * gpu_rng_uniform(&rng) - 1.0f);
	if ((r = gpu_model_write(m, GPU_BUF_PARAMS, p)) < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/ckpt", argv[1]);
	if ((r = gpu_ckpt_save(m, path, &meta)) < 0)
		goto out;

	ji = json_array();
	jt = json_array();
	for (int i = 0; i < B * T; i++) {
		in[i] = (int32_t)(gpu_rng_next(&rng) % (uint64_t)cfg.vocab_size);
		tg[i] = (int32_t)(gpu_rng_next(&rng) % (uint64_t)cfg.vocab_size);
		json_array_append_new(ji, json_integer(in[i]));
		json_array_append_new(jt, json_integer(tg[i]));
	}
	for (int s = 0; s < STEPS; s++) {
		if ((r = gpu_model_forward(m, in, tg, B, T, &losses[s])) < 0)
			goto out;
		if (s == 0) {
			struct gpu_st_tensor t = { "logits", 3, { B, T, cfg.vocab_size, 0 },
						   logits };

			if ((r = gpu_model_logits(m, -1, logits)) < 0)
				goto out;
			snprintf(path, sizeof(path), "%s/logits.safetensors", argv[1]);
			if ((r = gpu_st_write(path, &t, 1)) < 0)
				goto out;
		}
		if ((r = gpu_model_backward(m)) < 0)
			goto out;
		if (s == 0) {
			snprintf(path, sizeof(path), "%s/grads.safetensors", argv[1]);
			if ((r = gpu_ckpt_write_buf(m, path, GPU_BUF_GRADS, "")) < 0)
				goto out;
		}
		if ((r = gpu_model_step(m, &hp, lr, &norms[s])) < 0)
			goto out;
	}
	jl = json_array();
	jn = json_array();
	for (int s = 0; s < STEPS; s++) {
		json_array_append_new(jl, json_real(losses[s]));
		json_array_append_new(jn, json_real(norms[s]));
	}
	res = json_pack("{s:i,s:i,s:o,s:o,s:o,s:o,s:f,s:f,s:f,s:f,s:f,s:f}", "B", B, "T", T,
			"inputs", ji, "targets", jt, "losses", jl, "grad_norms", jn, "lr", (double)lr, "beta1",
			(double)hp.beta1, "beta2", (double)hp.beta2, "eps", (double)hp.eps,
			"weight_decay", (double)hp.weight_decay, "grad_clip", (double)hp.grad_clip);
	snprintf(path, sizeof(path), "%s/results.json", argv[1]);
	if (!res || json_dump_file(res, path, JSON_INDENT(1)) < 0)
		r = -EIO;
out:
	if (r < 0)
		fprintf(stderr, "ref_dump: %s\n", strerror(-r));
	json_decref(res);
	free(p);
	free(logits);
	gpu_model_free(m);
	return r < 0 ? 1 : 0;
}
