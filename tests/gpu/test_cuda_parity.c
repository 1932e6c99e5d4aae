/* CUDA parity: first every kernel on its own (kernel_parity.c), then the same model (identical
 * initial weights, built on the host) on the same batches, on the CPU reference and on the
 * CUDA backend; both with fp32 and with bf16 activations.
 *
 * Tolerances, fp32 activations (fp32 on both sides; the GPU sums in other orders and uses
 * atomics for the token embedding gradient), then bf16 activations against the fp32 CPU:
 *   logits            max |diff| <= 1e-4 * (1 + max |logit|)      5e-2 * (1 + max)
 *   first loss        |diff| <= 1e-5 * loss                       1e-2 * loss
 *   every gradient    max |diff| <= 1e-3 * max |grad| of that     5e-2 * max |grad|
 *                     tensor (+1e-7)
 *   5 AdamW steps     every loss within 1e-4 relative             2e-2 relative
 *   weights after     within 1e-3 of the largest weight           1e-2 of it
 * Exit 77 when the library has no CUDA backend or there is no device.  Built twice: against the
 * real backend (suite gpu) and against the backend compiled for the CPU emulator (suite emu,
 * run with --emulator; tests/gpu/cudaemu).
 *
 * Options: --fp32 or --bf16 checks one activation type (default both); --kernels or --model
 * one part (default both); --quick runs the model at batch 2 x 16 tokens for 2 AdamW steps
 * instead of 4 x 32 for 5, and the long attention kernel with one head instead of two (the
 * other kernels keep their shapes), so that each run on the emulator stays under a minute
 * under the sanitisers; --no-long leaves the long attention out (the race check with bf16
 * activations, where it alone takes minutes; its fp32 twin runs the same templated kernels).
 * The full shape is the suite emu-full (tests/gpu/meson.build). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpt.h"
#include "gpu/gpt_i.h"
#include "kernel_parity.h"

/* the full shape; --quick runs b x t tokens for steps steps */
enum { B = 4, T = 32, STEPS = 5 };

struct shape {
	int b, t, steps;
};

static int failures;

static void check(const char *what, double diff, double tol)
{
	int ok = diff <= tol;

	printf("%-34s %.3e (tol %.1e) %s\n", what, diff, tol, ok ? "ok" : "FAIL");
	if (!ok)
		failures++;
}

static double max_abs(const float *x, size_t n)
{
	double m = 0.0;

	for (size_t i = 0; i < n; i++)
		m = fabs(x[i]) > m ? fabs(x[i]) : m;
	return m;
}

static double max_diff(const float *x, const float *y, size_t n)
{
	double m = 0.0;

	for (size_t i = 0; i < n; i++)
		m = fabs((double)x[i] - y[i]) > m ? fabs((double)x[i] - y[i]) : m;
	return m;
}

static int model_parity(const struct gpu_config *cfg, const struct shape *sh, int bf16)
{
	static const char *names[GPU_NPARAMS] = {
		"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w",
		"ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb" };
	const int nb = sh->b, nt = sh->t;
	struct gpu_opts opts = { GPU_BACKEND_CPU, nb, nt, 0, 5, 0 };
	const struct gpu_adamw hp = { 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f };
	const double tol_logits = bf16 ? 5e-2 : 1e-4, tol_loss0 = bf16 ? 1e-2 : 1e-5;
	const double tol_loss = bf16 ? 2e-2 : 1e-4, tol_grad = bf16 ? 5e-2 : 1e-3;
	const double tol_w = bf16 ? 1e-2 : 1e-3;
	const char *mode = bf16 ? "bf16" : "fp32";
	struct gpu_model *cpu = NULL, *gpu = NULL;
	size_t sizes[GPU_NPARAMS], np, nl = (size_t)nb * nt * cfg->vocab_size, off = 0;
	float *a = NULL, *b = NULL, lc, lg;
	int32_t in[B * T], tg[B * T];
	uint64_t rng = 77;
	char what[64];
	int r = -ENOMEM;

	printf("model with %s activations\n", mode);
	if ((r = gpu_model_new(&cpu, cfg, &opts)) < 0)
		goto out;
	opts.backend = GPU_BACKEND_CUDA;
	opts.bf16 = bf16;
	if ((r = gpu_model_new(&gpu, cfg, &opts)) < 0)
		goto out;
	np = gpu_model_num_params(cpu);
	a = malloc((np > nl ? np : nl) * sizeof(float));
	b = malloc((np > nl ? np : nl) * sizeof(float));
	r = -ENOMEM;
	if (!a || !b)
		goto out;
	gpu_param_sizes(cfg, sizes);

	for (int s = 0; s < sh->steps; s++) {
		for (int i = 0; i < nb * nt; i++) {
			in[i] = (int32_t)(gpu_rng_next(&rng) % (uint64_t)cfg->vocab_size);
			tg[i] = (int32_t)(gpu_rng_next(&rng) % (uint64_t)cfg->vocab_size);
		}
		if ((r = gpu_model_forward(cpu, in, tg, nb, nt, &lc)) < 0 ||
		    (r = gpu_model_forward(gpu, in, tg, nb, nt, &lg)) < 0)
			goto out;
		if (s == 0) {
			if ((r = gpu_model_logits(cpu, -1, a)) < 0 ||
			    (r = gpu_model_logits(gpu, -1, b)) < 0)
				goto out;
			snprintf(what, sizeof(what), "%s logits max |diff|", mode);
			check(what, max_diff(a, b, nl), tol_logits * (1.0 + max_abs(a, nl)));
		}
		snprintf(what, sizeof(what), "%s step %d loss rel diff", mode, s);
		check(what, fabs((double)lc - lg) / lc, s == 0 ? tol_loss0 : tol_loss);
		if ((r = gpu_model_backward(cpu)) < 0 || (r = gpu_model_backward(gpu)) < 0)
			goto out;
		if (s == 0) {
			if ((r = gpu_model_read(cpu, GPU_BUF_GRADS, a)) < 0 ||
			    (r = gpu_model_read(gpu, GPU_BUF_GRADS, b)) < 0)
				goto out;
			for (int t = 0; t < GPU_NPARAMS; t++) {
				snprintf(what, sizeof(what), "%s grad %s max |diff|", mode, names[t]);
				check(what, max_diff(a + off, b + off, sizes[t]),
				      tol_grad * max_abs(a + off, sizes[t]) + 1e-7);
				off += sizes[t];
			}
		}
		if ((r = gpu_model_step(cpu, &hp, 1e-3f, NULL)) < 0 ||
		    (r = gpu_model_step(gpu, &hp, 1e-3f, NULL)) < 0)
			goto out;
	}
	if ((r = gpu_model_read(cpu, GPU_BUF_PARAMS, a)) < 0 ||
	    (r = gpu_model_read(gpu, GPU_BUF_PARAMS, b)) < 0)
		goto out;
	snprintf(what, sizeof(what), "%s weights after steps max |diff|", mode);
	check(what, max_diff(a, b, np), tol_w * max_abs(a, np));
	r = 0;
out:
	if (r < 0)
		printf("FAIL: %s model: %s %s\n", mode, strerror(-r),
		       gpu ? gpu_model_error_detail(gpu) : "");
	gpu_model_free(gpu);
	gpu_model_free(cpu);
	free(a);
	free(b);
	return r;
}

int main(int argc, char **argv)
{
	/* a vocabulary of 250: the logits' rows are padded to 256 */
	const struct gpu_config cfg = { 2, 4, 64, T, 250 };
	struct gpu_opts opts = { GPU_BACKEND_CUDA, B, T, 0, 5, 0 };
	struct gpu_model *probe = NULL;
	struct shape sh = { B, T, STEPS };
	int r, from = 0, to = 1, long_heads = 2, kernels = 1, model = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--emulator") == 0) {
			printf("CUDA backend on cudaemu, the CPU stand-in for a GPU: kernels and the "
			       "model are checked, speed is not\n");
		} else if (strcmp(argv[i], "--quick") == 0) {
			sh = (struct shape){ 2, 16, 2 };
			long_heads = long_heads ? 1 : 0;
		} else if (strcmp(argv[i], "--no-long") == 0) {
			long_heads = 0;
		} else if (strcmp(argv[i], "--kernels") == 0) {
			model = 0;
		} else if (strcmp(argv[i], "--model") == 0) {
			kernels = 0;
		} else if (strcmp(argv[i], "--fp32") == 0) {
			from = to = 0;
		} else if (strcmp(argv[i], "--bf16") == 0) {
			from = to = 1;
		} else {
			printf("usage: %s [--emulator] [--quick] [--no-long] [--fp32 | --bf16] "
			       "[--kernels | --model]\n", argv[0]);
			return 2;
		}
	}
	printf("model: batch %d x %d tokens, %d steps\n", sh.b, sh.t, sh.steps);
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
	r = gpu_model_new(&probe, &cfg, &opts);
	if (r == -ENODEV) {
		printf("skip: no CUDA device\n");
		return 77;
	}
	if (r < 0) {
		printf("FAIL: creating the CUDA model: %s\n", strerror(-r));
		return 1;
	}
	gpu_model_free(probe);
	for (int bf16 = from; bf16 <= to; bf16++) {
		void *kctx = NULL;

		if ((r = gpu_cuda_ops()->ctx_new(&kctx, bf16)) < 0) {
			printf("FAIL: CUDA context: %s\n", strerror(-r));
			return 1;
		}
		if (kernels)
			failures += kernel_parity(gpu_cuda_ops(), kctx, bf16, long_heads);
		gpu_cuda_ops()->ctx_free(kctx);
		if (model && model_parity(&cfg, &sh, bf16) < 0)
			failures++;
	}
	printf("%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
