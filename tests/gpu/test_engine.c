/* The engine's contracts outside the arithmetic: token files and seeded batches, checkpoint
 * round trips (bit-exact, including the optimizer), the memory bound, NaN/Inf detection, the
 * learning-rate schedule and sampling.  Works in a fresh directory under $TMPDIR, removed at
 * the end. */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check.h"
#include "gpu/ckpt.h"
#include "gpu/data.h"
#include "gpu/gpt.h"



static const char *tmpdir;

static char *tmp_path(const char *name)
{
	static char buf[4][512];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static void test_data(void)
{
	const char *text = "To be, or not to be, that is the question:\n"
			   "Whether 'tis nobler in the mind to suffer\n";
	struct gpu_data d;
	int32_t a_in[2 * 8], a_tg[2 * 8], b_in[2 * 8], b_tg[2 * 8];

	CHECK(gpu_write_file_atomic(tmp_path("t.txt"), text, strlen(text)) == 0);
	CHECK(gpu_data_is_token_file(tmp_path("t.txt")) == 0);
	CHECK(gpu_data_tokenize(tmp_path("t.txt"), tmp_path("t.bin")) == 0);
	CHECK(gpu_data_is_token_file(tmp_path("t.bin")) == 1);
	CHECK(gpu_data_open(&d, tmp_path("t.bin"), 0.25) == 0);
	CHECK(d.n_tokens == strlen(text));
	CHECK(d.vocab_size == 256);
	CHECK(d.n_train == d.n_tokens - (size_t)(0.25 * d.n_tokens));
	CHECK(gpu_data_batch(&d, GPU_SPLIT_TRAIN, 5, 3, 2, 8, a_in, a_tg) == 0);
	CHECK(gpu_data_batch(&d, GPU_SPLIT_TRAIN, 5, 3, 2, 8, b_in, b_tg) == 0);
	CHECK(memcmp(a_in, b_in, sizeof(a_in)) == 0 && memcmp(a_tg, b_tg, sizeof(a_tg)) == 0);
	/* targets are the next tokens of the same text */
	for (int i = 0; i < 2; i++)
		for (int t = 0; t < 7; t++)
			CHECK(a_tg[i * 8 + t] == a_in[i * 8 + t + 1]);
	CHECK(strstr(text, (char[9]){ (char)a_in[0], (char)a_in[1], (char)a_in[2], (char)a_in[3],
				     (char)a_in[4], (char)a_in[5], (char)a_in[6], (char)a_in[7],
				     0 }) != NULL);
	int differs = 0;

	for (int idx = 4; idx < 12; idx++) {
		CHECK(gpu_data_batch(&d, GPU_SPLIT_TRAIN, 5, (uint64_t)idx, 2, 8, b_in, b_tg) == 0);
		differs |= memcmp(a_in, b_in, sizeof(a_in)) != 0;
	}
	CHECK(differs);
	/* validation draws from the last quarter only */
	CHECK(gpu_data_batch(&d, GPU_SPLIT_VAL, 5, 0, 2, 8, b_in, b_tg) == 0);
	CHECK(strstr(text + d.n_train, (char[9]){ (char)b_in[0], (char)b_in[1], (char)b_in[2],
					       (char)b_in[3], (char)b_in[4], (char)b_in[5],
					       (char)b_in[6], (char)b_in[7], 0 }) != NULL);
	/* a split shorter than one sequence is refused */
	CHECK(gpu_data_batch(&d, GPU_SPLIT_VAL, 5, 0, 1, 40, b_in, b_tg) == -EINVAL);
	gpu_data_release(&d);
	CHECK(gpu_data_open(&d, tmp_path("t.txt"), 0.1) == -EINVAL);
	CHECK(gpu_data_open(&d, tmp_path("missing"), 0.1) == -ENOENT);
}

static const struct gpu_config cfg = { 2, 2, 16, 8, 32 };
static const struct gpu_adamw hp = { 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f };

static int train(struct gpu_model *m, int steps, uint64_t seed, float *last_loss)
{
	int32_t in[16], tg[16];
	uint64_t rng = seed;
	int r = 0;

	for (int s = 0; s < steps && r == 0; s++) {
		for (int i = 0; i < 16; i++) {
			in[i] = (int32_t)(gpu_rng_next(&rng) % 32);
			tg[i] = (in[i] * 7 + 3) % 32;
		}
		r = gpu_model_forward(m, in, tg, 2, 8, last_loss);
		if (r == 0)
			r = gpu_model_backward(m);
		if (r == 0)
			r = gpu_model_step(m, &hp, 1e-2f, NULL);
	}
	return r;
}

static int same_buf(struct gpu_model *a, struct gpu_model *b, enum gpu_buf which)
{
	size_t n = gpu_model_num_params(a);
	float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
	int same = x && y && gpu_model_read(a, which, x) == 0 && gpu_model_read(b, which, y) == 0 &&
		   memcmp(x, y, n * sizeof(float)) == 0;

	free(x);
	free(y);
	return same;
}

static void test_ckpt(void)
{
	struct gpu_opts o = { GPU_BACKEND_CPU, 2, 8, 0, 3, 0 };
	struct gpu_model *a = NULL, *b = NULL;
	struct gpu_ckpt_meta meta = { 11, 77 }, got = { 0, 0 };
	struct gpu_config c2;
	float la = 0, lb = 0, first = 0;

	CHECK(gpu_model_new(&a, &cfg, &o) == 0);
	o.seed = 99;
	CHECK(gpu_model_new(&b, &cfg, &o) == 0);
	if (!a || !b)
		goto out;
	CHECK(train(a, 1, 1, &first) == 0);
	CHECK(train(a, 30, 1, &la) == 0);
	CHECK(la < first);  /* the fixed mapping in train() is learnable */
	CHECK(gpu_ckpt_save(a, tmp_path("ck"), &meta) == 0);
	CHECK(gpu_ckpt_save(a, tmp_path("ck"), &meta) == -EEXIST);
	CHECK(access(tmp_path("ck.tmp"), F_OK) != 0);
	CHECK(gpu_ckpt_read_config(tmp_path("ck"), &c2) == 0);
	CHECK(memcmp(&c2, &cfg, sizeof(cfg)) == 0);
	CHECK(!same_buf(a, b, GPU_BUF_PARAMS));
	CHECK(gpu_ckpt_load(b, tmp_path("ck"), &got) == 0);
	CHECK(got.step == 11 && got.seed == 77);
	CHECK(same_buf(a, b, GPU_BUF_PARAMS));
	CHECK(same_buf(a, b, GPU_BUF_ADAM_M));
	CHECK(same_buf(a, b, GPU_BUF_ADAM_V));
	CHECK(gpu_model_adam_step(a) == gpu_model_adam_step(b));
	/* continuing from the loaded state is the same computation, bit for bit */
	CHECK(train(a, 5, 2, &la) == 0);
	CHECK(train(b, 5, 2, &lb) == 0);
	CHECK(la == lb);
	CHECK(same_buf(a, b, GPU_BUF_PARAMS));

	/* a truncated model file is refused, not half loaded */
	FILE *f = fopen(tmp_path("ck/model.safetensors"), "r+b");

	CHECK(f != NULL);
	if (f) {
		CHECK(ftruncate(fileno(f), 200) == 0);
		fclose(f);
	}
	CHECK(gpu_ckpt_load(b, tmp_path("ck"), NULL) == -EINVAL);
	/* the wrong shape is refused */
	struct gpu_config big = cfg;
	struct gpu_model *c = NULL;

	big.n_embd = 32;
	CHECK(gpu_ckpt_save(a, tmp_path("ck2"), &meta) == 0);
	CHECK(gpu_model_new(&c, &big, &o) == 0);
	if (c)
		CHECK(gpu_ckpt_load(c, tmp_path("ck2"), NULL) == -EINVAL);
	gpu_model_free(c);
out:
	gpu_model_free(a);
	gpu_model_free(b);
}

/* The whole file at path, or NULL. */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long sz = -1;

	if (f && fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)sz + 1)) && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
		free(buf);
		buf = NULL;
	}
	if (f)
		fclose(f);
	*len = buf ? (size_t)sz : 0;
	return buf;
}

/* path = a, then b */
static int spit(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(a, 1, na, f) == na && (nb == 0 || fwrite(b, 1, nb, f) == nb);

	if (f && fclose(f) != 0)
		ok = 0;
	return ok;
}

/* Checkpoint dir copied to dir "to", one of its safetensors files changed on the way: its
 * header through edit() (NULL: only re-serialised), or, when hl is not 0, its header length
 * field replaced by hl. */
static int rewrite(const char *dir, const char *to, const char *file, void (*edit)(json_t *),
		   uint64_t hl)
{
	static const char *const files[2] = { "model.safetensors", "optimizer.safetensors" };
	char src[600], dst[600];
	int ok = mkdir(tmp_path(to), 0755) == 0;

	for (int i = 0; i < 2 && ok; i++) {
		unsigned char *buf, *head = NULL;
		char *hdr = NULL;
		json_t *j = NULL;
		uint64_t n = 0;
		size_t len, pad;

		snprintf(src, sizeof(src), "%s/%s", tmp_path(dir), files[i]);
		snprintf(dst, sizeof(dst), "%s/%s", tmp_path(to), files[i]);
		buf = slurp(src, &len);
		for (int k = 0; buf && len >= 8 && k < 8; k++)
			n |= (uint64_t)buf[k] << (8 * k);
		ok = buf && len >= 8 && n <= len - 8;
		if (ok && strcmp(file, files[i]) != 0) {
			ok = spit(dst, buf, len, NULL, 0);
		} else if (ok && hl) {
			for (int k = 0; k < 8; k++)
				buf[k] = (unsigned char)(hl >> (8 * k));
			ok = spit(dst, buf, len, NULL, 0);
		} else if (ok) {
			ok = (j = json_loadb((char *)buf + 8, n, 0, NULL)) != NULL;
			if (ok && edit)
				edit(j);
			ok = ok && (hdr = json_dumps(j, JSON_COMPACT)) != NULL;
			/* length, then the header padded with spaces to 8 bytes, then the data */
			pad = ok ? (strlen(hdr) + 7) / 8 * 8 : 0;
			ok = ok && (head = malloc(8 + pad)) != NULL;
			if (ok) {
				for (int k = 0; k < 8; k++)
					head[k] = (unsigned char)(pad >> (8 * k));
				memset(head + 8, ' ', pad);
				memcpy(head + 8, hdr, strlen(hdr));
				ok = spit(dst, head, 8 + pad, buf + 8 + n, len - 8 - n);
			}
		}
		json_decref(j);
		free(head);
		free(hdr);
		free(buf);
	}
	return ok;
}

static void dtype_f16(json_t *h)
{
	json_object_set_new(json_object_get(h, "h.1.attn.c_attn.weight"), "dtype",
			    json_string("F16"));
}

static void offsets_past_end(json_t *h)
{
	json_t *o = json_object_get(json_object_get(h, "ln_f.bias"), "data_offsets");

	json_array_set_new(o, 1, json_integer(json_integer_value(json_array_get(o, 1)) + 4));
}

static void shape_other(json_t *h)
{
	json_array_set_new(json_object_get(json_object_get(h, "wpe.weight"), "shape"), 0,
			   json_integer(4));
}

static void no_tensor(json_t *h)
{
	json_object_del(h, "exp_avg_sq.h.0.mlp.c_proj.bias");
}

static void step_not_number(json_t *h)
{
	json_object_set_new(json_object_get(h, "__metadata__"), "step", json_string("12x"));
}

/* Hostile checkpoints are refused with -EINVAL, and a refused load leaves the model as it
 * was: weights and both moments (the files are checked before anything is copied). */
static void test_ckpt_hostile(void)
{
	static const struct {
		const char *file;
		void (*edit)(json_t *);
		uint64_t hl;
	} bad[] = {
		{ "model.safetensors", dtype_f16, 0 },
		{ "model.safetensors", offsets_past_end, 0 },
		{ "model.safetensors", shape_other, 0 },
		{ "model.safetensors", NULL, 1ull << 62 },
		{ "optimizer.safetensors", no_tensor, 0 },
		{ "optimizer.safetensors", step_not_number, 0 },
		{ "optimizer.safetensors", NULL, 1000 },
	};
	struct gpu_opts o = { GPU_BACKEND_CPU, 2, 8, 0, 3, 0 };
	struct gpu_model *a = NULL, *b = NULL, *fresh = NULL;
	struct gpu_ckpt_meta meta = { 4, 9 };
	float loss;
	char name[32];

	CHECK(gpu_model_new(&a, &cfg, &o) == 0);
	o.seed = 99;
	CHECK(gpu_model_new(&b, &cfg, &o) == 0);
	CHECK(gpu_model_new(&fresh, &cfg, &o) == 0);
	if (!a || !b || !fresh)
		goto out;
	CHECK(train(a, 4, 1, &loss) == 0);
	CHECK(train(b, 2, 7, &loss) == 0);
	CHECK(train(fresh, 2, 7, &loss) == 0);
	CHECK(gpu_ckpt_save(a, tmp_path("h"), &meta) == 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(name, sizeof(name), "h%zu", i);
		CHECK(rewrite("h", name, bad[i].file, bad[i].edit, bad[i].hl));
		if (gpu_ckpt_load(b, tmp_path(name), NULL) != -EINVAL) {
			printf("FAIL: hostile checkpoint %zu not refused with -EINVAL\n", i);
			check_failures++;
		}
		CHECK(same_buf(b, fresh, GPU_BUF_PARAMS));
		CHECK(same_buf(b, fresh, GPU_BUF_ADAM_M));
		CHECK(same_buf(b, fresh, GPU_BUF_ADAM_V));
	}
	/* the same rewriting without an edit gives a checkpoint that loads */
	CHECK(rewrite("h", "h-same", "model.safetensors", NULL, 0));
	CHECK(gpu_ckpt_load(b, tmp_path("h-same"), NULL) == 0);
	CHECK(same_buf(a, b, GPU_BUF_PARAMS));
	CHECK(same_buf(a, b, GPU_BUF_ADAM_V));
out:
	gpu_model_free(a);
	gpu_model_free(b);
	gpu_model_free(fresh);
}

static void test_bounds_and_nan(void)
{
	struct gpu_opts o = { GPU_BACKEND_CPU, 2, 8, 0, 3, 0 };
	struct gpu_model *m = NULL;
	size_t need = gpu_model_bytes(&cfg, &o), n;
	int32_t in[16] = { 0 }, tg[16] = { 0 };
	float *p = NULL, *q = NULL, loss;

	o.max_bytes = need - 1;
	CHECK(gpu_model_new(&m, &cfg, &o) == -ENOMEM);
	CHECK(m == NULL);
	o.max_bytes = need;
	CHECK(gpu_model_new(&m, &cfg, &o) == 0);
	if (!m)
		return;
	/* out-of-range tokens and shapes are refused */
	in[3] = 32;
	CHECK(gpu_model_forward(m, in, tg, 2, 8, &loss) == -EINVAL);
	in[3] = 0;
	CHECK(gpu_model_forward(m, in, tg, 3, 8, &loss) == -EINVAL);
	CHECK(gpu_model_backward(m) == -EINVAL);  /* no successful forward yet */

	n = gpu_model_num_params(m);
	p = malloc(n * sizeof(float));
	q = malloc(n * sizeof(float));
	CHECK(gpu_model_read(m, GPU_BUF_PARAMS, p) == 0);
	/* a NaN weight: the loss is not finite and the step is refused, weights untouched */
	float saved = p[5];

	p[5] = NAN;
	CHECK(gpu_model_write(m, GPU_BUF_PARAMS, p) == 0);
	CHECK(gpu_model_forward(m, in, tg, 2, 8, &loss) == -ERANGE);
	CHECK(gpu_model_backward(m) == -EINVAL);
	p[5] = saved;
	CHECK(gpu_model_write(m, GPU_BUF_PARAMS, p) == 0);
	CHECK(gpu_model_forward(m, in, tg, 2, 8, &loss) == 0);
	CHECK(gpu_model_backward(m) == 0);
	CHECK(gpu_model_read(m, GPU_BUF_GRADS, q) == 0);
	q[n - 1] = INFINITY;
	CHECK(gpu_model_write(m, GPU_BUF_GRADS, q) == 0);
	CHECK(gpu_model_step(m, &hp, 1e-3f, NULL) == -ERANGE);
	CHECK(gpu_model_read(m, GPU_BUF_GRADS, q) == 0);
	CHECK(gpu_model_read(m, GPU_BUF_PARAMS, q) == 0);
	CHECK(memcmp(p, q, n * sizeof(float)) == 0);
	CHECK(gpu_model_adam_step(m) == 0);
	free(p);
	free(q);
	gpu_model_free(m);

#ifndef LLMFS_HAVE_CUDA
	o.backend = GPU_BACKEND_CUDA;
	CHECK(gpu_model_new(&m, &cfg, &o) == -ENODEV);
#endif
}

static void test_schedule_and_sampling(void)
{
	struct gpu_opts o = { GPU_BACKEND_CPU, 1, 8, 0, 3, 0 };
	struct gpu_model *m = NULL;
	int32_t a[20] = { 1 }, b[20] = { 1 };
	uint64_t ra = 9, rb = 9;
	float lg[32];

	CHECK(fabsf(gpu_lr_schedule(0, 10, 100, 1.0f, 0.1f) - 0.1f) < 1e-6f);
	CHECK(fabsf(gpu_lr_schedule(9, 10, 100, 1.0f, 0.1f) - 1.0f) < 1e-6f);
	CHECK(fabsf(gpu_lr_schedule(10, 10, 100, 1.0f, 0.1f) - 1.0f) < 1e-6f);
	CHECK(fabsf(gpu_lr_schedule(55, 10, 100, 1.0f, 0.1f) - 0.55f) < 1e-6f);
	CHECK(fabsf(gpu_lr_schedule(100, 10, 100, 1.0f, 0.1f) - 0.1f) < 1e-6f);

	CHECK(gpu_model_new(&m, &cfg, &o) == 0);
	if (!m)
		return;
	/* longer than the context: the window slides */
	CHECK(gpu_model_sample(m, a, 1, 19, 1.0f, 5, &ra) == 0);
	CHECK(gpu_model_sample(m, b, 1, 19, 1.0f, 5, &rb) == 0);
	CHECK(memcmp(a, b, sizeof(a)) == 0 && ra == rb);
	for (int i = 0; i < 20; i++)
		CHECK(a[i] >= 0 && a[i] < 32);
	/* temperature 0 and top-k 1 both pick the argmax of the last position */
	CHECK(gpu_model_sample(m, a, 1, 1, 0.0f, 0, &ra) == 0);
	CHECK(gpu_model_sample(m, b, 1, 1, 1.0f, 1, &rb) == 0);
	CHECK(a[1] == b[1]);
	CHECK(gpu_model_forward(m, a, NULL, 1, 1, NULL) == 0);
	CHECK(gpu_model_logits(m, 0, lg) == 0);
	for (int v = 0; v < 32; v++)
		CHECK(lg[v] <= lg[a[1]]);
	/* top-k 3: every draw is one of the three most likely tokens, and more than one occurs */
	int seen = 0;

	for (int i = 0; i < 200; i++) {
		int above = 0;

		a[0] = 1;
		CHECK(gpu_model_sample(m, a, 1, 1, 5.0f, 3, &ra) == 0);
		for (int v = 0; v < 32; v++)
			above += lg[v] > lg[a[1]];
		CHECK(above < 3);
		seen |= 1 << above;
	}
	CHECK(seen != 1);
	gpu_model_free(m);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

int main(void)
{
	char dir[512];
	const char *base = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/llmfs-gpu-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	tmpdir = dir;
	test_data();
	test_ckpt();
	test_ckpt_hostile();
	test_bounds_and_nan();
	test_schedule_and_sampling();
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	printf("%d failure(s)\n", (int)check_failures);
	return check_status();
}
