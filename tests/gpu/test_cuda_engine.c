/* The engine's contracts through the CUDA backend, in both activation types: what
 * test_cuda_parity.c does not reach.
 *
 *   - checkpoints: a CUDA model's checkpoint loads into a CPU model with the same fp32 weights
 *     bit for bit, and into a new CUDA model that then computes the same loss bit for bit (so
 *     loading refreshes the bf16 copy of the weights);
 *   - logits and sampling: gpu_model_logits() of one row equals that row of the whole array;
 *     greedy sampling gives valid tokens, the same on two runs;
 *   - a NaN in the weights makes forward return -ERANGE, and a step is refused likewise;
 *   - memory: bf16 activations need less than fp32, and opts.max_bytes one byte short of
 *     gpu_model_bytes() is refused with -ENOMEM;
 *   - a failure names the call that saw it and the device's error (error_detail): a cuBLAS
 *     call refused for its leading dimension, a launch refused for its empty grid.
 * Exit 77 when the library has no CUDA backend or there is no device; with --emulator it says
 * that it runs on cudaemu, the CPU stand-in for a GPU. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu/ckpt.h"
#include "gpu/gpt.h"
#include "gpu/gpt_i.h"

enum { B = 2, T = 16 };

static int failures;

static void check(int ok, const char *mode, const char *what)
{
	printf("%s %-66s %s\n", mode, what, ok ? "ok" : "FAIL");
	if (!ok)
		failures++;
}

static int engine(const struct gpu_config *cfg, int bf16, const char *tmp)
{
	const char *mode = bf16 ? "bf16" : "fp32";
	struct gpu_opts opts = { GPU_BACKEND_CUDA, B, T, 0, 11, bf16 };
	const struct gpu_adamw hp = { 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f };
	struct gpu_model *g = NULL, *h = NULL, *c = NULL;
	size_t np = gpu_config_num_params(cfg), V = cfg->vocab_size;
	float *a = malloc(np * sizeof(float)), *b = malloc(np * sizeof(float));
	float *all = malloc((size_t)B * T * V * sizeof(float)), *row = malloc(V * sizeof(float));
	int32_t in[B * T], tg[B * T], s1[24], s2[24];
	struct gpu_ckpt_meta meta = { 3, 11 };
	char dir[256];
	float l1, l2;
	uint64_t rng = 5;
	int r = -ENOMEM;

	if (!a || !b || !all || !row)
		goto out;
	for (int i = 0; i < B * T; i++) {
		in[i] = (int32_t)(gpu_rng_next(&rng) % V);
		tg[i] = (int32_t)(gpu_rng_next(&rng) % V);
	}
	if ((r = gpu_model_new(&g, cfg, &opts)) < 0)
		goto out;
	/* a few steps, so that the weights are not the initial ones */
	for (int s = 0; s < 3; s++)
		if ((r = gpu_model_forward(g, in, tg, B, T, &l1)) < 0 ||
		    (r = gpu_model_backward(g)) < 0 || (r = gpu_model_step(g, &hp, 1e-2f, NULL)) < 0)
			goto out;

	snprintf(dir, sizeof(dir), "%s/ckpt-%s", tmp, mode);
	check(gpu_ckpt_save(g, dir, &meta) == 0, mode, "checkpoint of a CUDA model saved");
	opts.backend = GPU_BACKEND_CPU;
	opts.bf16 = 0;
	check(gpu_model_new(&c, cfg, &opts) == 0 && gpu_ckpt_load(c, dir, NULL) == 0, mode,
	      "it loads into a CPU model");
	check(c && gpu_model_read(g, GPU_BUF_PARAMS, a) == 0 &&
	      gpu_model_read(c, GPU_BUF_PARAMS, b) == 0 && memcmp(a, b, np * sizeof(float)) == 0,
	      mode, "with the same fp32 weights, bit for bit");
	opts.backend = GPU_BACKEND_CUDA;
	opts.bf16 = bf16;
	opts.seed = 99; /* other initial weights, all replaced by the checkpoint's */
	check(gpu_model_new(&h, cfg, &opts) == 0 && gpu_ckpt_load(h, dir, NULL) == 0, mode,
	      "it loads into a new CUDA model");
	check(h && gpu_model_forward(g, in, tg, B, T, &l1) == 0 &&
	      gpu_model_forward(h, in, tg, B, T, &l2) == 0 && l1 == l2, mode,
	      "which computes the same loss, bit for bit");

	check(gpu_model_logits(g, -1, all) == 0 && gpu_model_logits(g, B * T - 3, row) == 0 &&
	      memcmp(row, all + (size_t)(B * T - 3) * V, V * sizeof(float)) == 0, mode,
	      "logits of one row equal that row of all the logits");
	for (int i = 0; i < 4; i++)
		s1[i] = s2[i] = in[i];
	check(gpu_model_sample(g, s1, 4, 20, 0.0f, 0, &rng) == 0 &&
	      gpu_model_sample(g, s2, 4, 20, 0.0f, 0, &rng) == 0 &&
	      memcmp(s1, s2, sizeof(s1)) == 0, mode, "greedy sampling repeats itself");
	int valid = 1;

	for (int i = 0; i < 24; i++)
		valid = valid && s1[i] >= 0 && s1[i] < (int32_t)V;
	check(valid, mode, "and gives tokens of the vocabulary");

	if (gpu_model_read(h, GPU_BUF_PARAMS, a) == 0) {
		a[7] = NAN;
		check(gpu_model_write(h, GPU_BUF_PARAMS, a) == 0 &&
		      gpu_model_forward(h, in, tg, B, T, &l2) == -ERANGE, mode,
		      "a NaN weight: forward returns -ERANGE");
	}
	if (gpu_model_read(h, GPU_BUF_GRADS, a) == 0) {
		a[3] = INFINITY;
		check(gpu_model_write(h, GPU_BUF_GRADS, a) == 0 &&
		      gpu_model_step(h, &hp, 1e-2f, NULL) == -ERANGE, mode,
		      "an infinite gradient: the step returns -ERANGE");
	}
	r = 0;
out:
	if (r < 0)
		printf("FAIL: %s: %s %s\n", mode, strerror(-r), g ? gpu_model_error_detail(g) : "");
	gpu_model_free(g);
	gpu_model_free(h);
	gpu_model_free(c);
	free(a);
	free(b);
	free(all);
	free(row);
	return r;
}

static void failure_details(void)
{
	const struct gpu_ops *o = gpu_cuda_ops();
	void *ctx = NULL, *a = NULL, *w = NULL, *y = NULL, *st = NULL;
	int r;

	if (o->ctx_new(&ctx, 0) < 0 || o->alloc(ctx, &a, 64 * 64 * 4) < 0 ||
	    o->alloc(ctx, &w, 64 * 64 * 4) < 0 || o->alloc(ctx, &y, 64 * 64 * 4) < 0 ||
	    o->alloc(ctx, &st, 64 * 4) < 0) {
		check(0, "fp32", "a context for the failure details");
		return;
	}
	check(*o->error_detail(ctx) == 0, "fp32", "no failure: an empty detail");
	/* out rows closer than OC: cuBLAS refuses the leading dimension */
	o->matmul_forward(ctx, y, a, w, NULL, 64, 32, 64, 16);
	r = o->sync(ctx);
	check(r == -EINVAL && strstr(o->error_detail(ctx), "matmul_forward") &&
	      strstr(o->error_detail(ctx), "cuBLAS status"), "fp32",
	      "a refused GEMM: -EINVAL, and the detail names matmul_forward and cuBLAS");
	printf("     (%s)\n", o->error_detail(ctx));
	o->free(ctx, a);
	o->free(ctx, w);
	o->free(ctx, y);
	o->free(ctx, st);
	o->ctx_free(ctx);
	if (o->ctx_new(&ctx, 1) < 0 || o->alloc(ctx, &a, 64 * 4) < 0 ||
	    o->alloc(ctx, &st, 64 * 4) < 0) {
		check(0, "bf16", "a context for the failure details");
		return;
	}
	/* no rows: an empty grid */
	o->layernorm_forward(ctx, a, st, st, a, st, st, 0, 32);
	r = o->sync(ctx);
	check(r < 0 && strstr(o->error_detail(ctx), "layernorm_forward"), "bf16",
	      "an empty launch: an error, and the detail names layernorm_forward");
	printf("     (%s)\n", o->error_detail(ctx));
	o->free(ctx, a);
	o->free(ctx, st);
	o->ctx_free(ctx);
}

int main(int argc, char **argv)
{
	const struct gpu_config cfg = { 2, 2, 32, T, 90 };
	struct gpu_opts o32 = { GPU_BACKEND_CUDA, B, T, 0, 1, 0 }, o16 = o32;
	struct gpu_model *m = NULL;
	char tmp[] = "/tmp/llmfs-cuda-engine-XXXXXX", cmd[64];
	int r;

	if (argc > 1 && strcmp(argv[1], "--emulator") == 0)
		printf("CUDA backend on cudaemu, the CPU stand-in for a GPU\n");
	if (!gpu_cuda_ops()) {
#ifdef LLMFS_HAVE_CUDA
		printf("FAIL: this build has a CUDA backend, but its module (libllmfs_cuda.so) "
		       "did not load\n");
		return 1;
#else
		printf("skip: this build has no CUDA backend (nvcc not found, or a sanitised build)\n");
		return 77;
#endif
	}
	r = gpu_model_new(&m, &cfg, &o32);
	if (r == -ENODEV) {
		printf("skip: no CUDA device\n");
		return 77;
	}
	gpu_model_free(m);
	m = NULL;
	if (!mkdtemp(tmp))
		return 1;
	o16.bf16 = 1;
	size_t n32 = gpu_model_bytes(&cfg, &o32), n16 = gpu_model_bytes(&cfg, &o16);

	check(n16 < n32, "bf16", "activations of 2 bytes: fewer bytes than fp32");
	o16.max_bytes = n16 - 1;
	check(gpu_model_new(&m, &cfg, &o16) == -ENOMEM && !m, "bf16",
	      "max_bytes one short of gpu_model_bytes(): -ENOMEM");
	o16.max_bytes = n16;
	check(gpu_model_new(&m, &cfg, &o16) == 0, "bf16", "and exactly enough: created");
	gpu_model_free(m);
	for (int bf16 = 0; bf16 <= 1; bf16++)
		if (engine(&cfg, bf16, tmp) < 0)
			failures++;
	failure_details();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	if (system(cmd) != 0)
		failures++;
	printf("%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
