/* llmfs-train-bench - training-step throughput of the gpu/ engine against the machine's GEMM.
 *
 * usage: llmfs-train-bench [--backend cpu|cuda] [--bf16] [--layers L] [--heads H] [--embd C]
 *                          [--vocab V] [--batch B] [--seq T] [--steps N]
 *
 * Prints one line per measurement, key=value, so scripts can grep it:
 *   sgemm: the best single-precision GEMM rate of the same BLAS (CPU, on as many threads as
 *          the engine uses: OMP_NUM_THREADS, else all cores) on a
 *          square 2048 problem and on the MLP's shape (B*T x 4C x C), the training step's
 *          dominant product; measured before and again after the training steps, so that a
 *          machine shared with other work shows up as two different figures
 *   train: tokens/s and achieved model FLOP/s (gpu_flops_per_token) over N timed steps after
 *          one warm-up step
 *   ratio: achieved model FLOP/s over the best sgemm rate of the run
 * Random tokens: throughput does not depend on the data.
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/gpt.h"
#include "common/clock.h"

/* Best of reps runs of C (M,N) = A (M,K) . B (N,K)^T, the shape matmul_forward uses. */
static double sgemm_gflops(int M, int N, int K, int reps)
{
	float *a = malloc((size_t)M * K * sizeof(float));
	float *b = malloc((size_t)N * K * sizeof(float));
	float *c = malloc((size_t)M * N * sizeof(float));
	double best = 0.0;

	if (!a || !b || !c)
		goto out;
	for (size_t i = 0; i < (size_t)M * K; i++)
		a[i] = (float)(i % 7) * 0.1f;
	for (size_t i = 0; i < (size_t)N * K; i++)
		b[i] = (float)(i % 5) * 0.1f;
	for (int r = 0; r < reps; r++) {
		double t0 = clock_mono_s(), dt;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f,
			    c, N);
		dt = clock_mono_s() - t0;
		if (2.0 * M * N * K / dt / 1e9 > best)
			best = 2.0 * M * N * K / dt / 1e9;
	}
out:
	free(a);
	free(b);
	free(c);
	return best;
}

static double sgemm_report(const struct gpu_config *cfg, const struct gpu_opts *opts,
			   const char *when)
{
	double sq = sgemm_gflops(2048, 2048, 2048, 3);
	double mlp = sgemm_gflops(opts->max_batch * opts->max_seq, 4 * cfg->n_embd, cfg->n_embd, 5);

	printf("sgemm(%s): threads=%d square2048_gflops=%.1f mlp_shape_gflops=%.1f "
	       "(M=%d N=%d K=%d)\n", when, openblas_get_num_threads(), sq, mlp,
	       opts->max_batch * opts->max_seq, 4 * cfg->n_embd, cfg->n_embd);
	return sq > mlp ? sq : mlp;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "backend", 1, 0, 'g' }, { "bf16", 0, 0, 'F' }, { "layers", 1, 0, 'L' },
		{ "heads", 1, 0, 'H' }, { "embd", 1, 0, 'C' }, { "vocab", 1, 0, 'V' },
		{ "batch", 1, 0, 'B' }, { "seq", 1, 0, 'T' }, { "steps", 1, 0, 's' },
		{ 0, 0, 0, 0 } };
	struct gpu_config cfg = { 6, 6, 384, 256, 256 };
	struct gpu_opts opts = { GPU_BACKEND_CPU, 8, 256, 0, 1, 0 };
	struct gpu_adamw hp = { 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f };
	struct gpu_model *m = NULL;
	int32_t *inp, *tgt;
	int steps = 5, c, r;
	uint64_t rng = 42;
	double best = 0.0, t0, dt, tok_s, flops;
	/* the GEMM reference runs on as many threads as the engine (OMP_NUM_THREADS) */
	int nthreads = omp_get_max_threads();

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'g': opts.backend = strcmp(optarg, "cuda") == 0 ? GPU_BACKEND_CUDA
								      : GPU_BACKEND_CPU; break;
		case 'F': opts.bf16 = 1; break;
		case 'L': cfg.n_layer = atoi(optarg); break;
		case 'H': cfg.n_head = atoi(optarg); break;
		case 'C': cfg.n_embd = atoi(optarg); break;
		case 'V': cfg.vocab_size = atoi(optarg); break;
		case 'B': opts.max_batch = atoi(optarg); break;
		case 'T': opts.max_seq = atoi(optarg); break;
		case 's': steps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: see the comment at the top of train_bench.c\n");
			return 2;
		}
	}
	cfg.n_ctx = opts.max_seq;
	if (steps < 1)
		return 2;

	if (opts.backend == GPU_BACKEND_CPU) {
		openblas_set_num_threads(nthreads);
		best = sgemm_report(&cfg, &opts, "before");
	}

	r = gpu_model_new(&m, &cfg, &opts);
	if (r < 0) {
		fprintf(stderr, "llmfs-train-bench: creating the model: %s\n", strerror(-r));
		return r == -ENODEV ? 77 : 1;
	}
	inp = malloc((size_t)opts.max_batch * opts.max_seq * sizeof(*inp));
	tgt = malloc((size_t)opts.max_batch * opts.max_seq * sizeof(*tgt));
	if (!inp || !tgt)
		return 1;
	for (int i = 0; i < opts.max_batch * opts.max_seq; i++) {
		inp[i] = (int32_t)(gpu_rng_next(&rng) % (uint64_t)cfg.vocab_size);
		tgt[i] = (int32_t)(gpu_rng_next(&rng) % (uint64_t)cfg.vocab_size);
	}
	t0 = 0.0;
	for (int s = 0; s <= steps; s++) {
		float loss;

		if (s == 1)
			t0 = clock_mono_s();
		if ((r = gpu_model_forward(m, inp, tgt, opts.max_batch, opts.max_seq, &loss)) < 0 ||
		    (r = gpu_model_backward(m)) < 0 || (r = gpu_model_step(m, &hp, 1e-4f, NULL)) < 0) {
			fprintf(stderr, "llmfs-train-bench: step %d: %s %s\n", s, strerror(-r),
				gpu_model_error_detail(m));
			return 1;
		}
	}
	dt = (clock_mono_s() - t0) / steps;
	tok_s = opts.max_batch * opts.max_seq / dt;
	flops = gpu_flops_per_token(&cfg, opts.max_seq) * tok_s;
	printf("train: backend=%s params=%zu L=%d H=%d C=%d V=%d B=%d T=%d ms_per_step=%.1f "
	       "tokens_per_s=%.0f model_gflops=%.1f", opts.backend == GPU_BACKEND_CUDA ? "cuda"
	       : "cpu", gpu_model_num_params(m), cfg.n_layer, cfg.n_head, cfg.n_embd,
	       cfg.vocab_size, opts.max_batch, opts.max_seq, dt * 1e3, tok_s, flops / 1e9);
	if (best > 0.0) {
		/* the engine set OpenBLAS to one thread (cpu_ops.c); measure it as before */
		int threads = nthreads;
		double after;

		openblas_set_num_threads(threads);
		printf("\n");
		after = sgemm_report(&cfg, &opts, "after");
		best = after > best ? after : best;
		printf("ratio: train_model_gflops / best_sgemm_gflops = %.0f%%\n",
		       100.0 * flops / 1e9 / best);
	} else {
		printf("\n");
	}
	gpu_model_free(m);
	free(inp);
	free(tgt);
	return 0;
}
