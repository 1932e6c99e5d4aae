/* gpu/infer.c - generation with a KV cache on the CPU (see infer.h).
 *
 * One step over n new tokens at positions pos..pos+n-1, per layer:
 *   ln = LN1(x); qkv = ln W_qkv^T + b; K[pos+i], V[pos+i] = qkv[i] (k, v parts)
 *   per head: S (n, pos+n) = q K^T / sqrt(hs), row i masked past pos+i, softmax; y = S V
 *   x += y W_proj^T + b; x += GELU(LN2(x) W_fc^T + b) W_fcproj^T + b
 * then LN_f of the last row and the tied head.  The prompt is fed in blocks of at most
 * FEED_ROWS tokens, which bounds the scratch whatever the prompt's length. */
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/modelfmt.h"
#include "gpu/ckpt.h"
#include "gpu/cpu_ops_i.h"
#include "gpu/gpt_i.h"
#include "gpu/infer.h"

#define FEED_ROWS 64

struct gpu_infer {
	struct gpu_config cfg;
	const struct gpu_ops *ops;
	void *ctx;
	float *params;
	float *p[GPU_NPARAMS];
	size_t sizes[GPU_NPARAMS];
};

struct gpu_infer_state {
	const struct gpu_infer *w;
	int cap, len, rows;
	float *k, *v;                 /* (L, cap, C) */
	float *x, *ln, *qkv, *y, *t;  /* (rows, C) but qkv (rows, 3C) */
	float *fch, *fchg;            /* (rows, 4C) */
	float *mean, *rstd;           /* (rows) */
	float *scores;                /* (NH, rows, cap) */
};

const struct gpu_config *gpu_infer_config(const struct gpu_infer *w)
{
	return &w->cfg;
}

const float *gpu_infer_params(const struct gpu_infer *w)
{
	return w->params;
}

const float *gpu_infer_param(const struct gpu_infer *w, enum gpu_param p)
{
	return w->p[p];
}

void gpu_infer_free(struct gpu_infer *w)
{
	if (!w)
		return;
	free(w->params);
	if (w->ops)
		w->ops->ctx_free(w->ctx);
	free(w);
}

static int infer_alloc(struct gpu_infer **ret, const struct gpu_config *cfg)
{
	struct gpu_infer *w;
	size_t n = 0;
	int r;

	if (gpu_config_check(cfg) < 0)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cfg = *cfg;
	w->ops = gpu_cpu_ops();
	r = w->ops->ctx_new(&w->ctx, 0);
	if (r < 0) {
		w->ops = NULL;
		gpu_infer_free(w);
		return r;
	}
	gpu_param_sizes(cfg, w->sizes);
	for (int i = 0; i < GPU_NPARAMS; i++)
		n += w->sizes[i];
	if (posix_memalign((void **)&w->params, 64, n * sizeof(float)) != 0) {
		w->params = NULL;
		gpu_infer_free(w);
		return -ENOMEM;
	}
	n = 0;
	for (int i = 0; i < GPU_NPARAMS; i++) {
		w->p[i] = w->params + n;
		n += w->sizes[i];
	}
	*ret = w;
	return 0;
}

int gpu_infer_new(struct gpu_infer **ret, const struct gpu_config *cfg, const float *params)
{
	struct gpu_infer *w;
	int r = infer_alloc(&w, cfg);

	if (r < 0)
		return r;
	memcpy(w->params, params, gpu_config_num_params(cfg) * sizeof(float));
	*ret = w;
	return 0;
}

/* ---- loading ---- */

static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	uint32_t bits;
	float f;

	if (exp == 0) {
		/* zero or subnormal: man * 2^-24 */
		f = ldexpf((float)man, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (man << 13);
	else
		bits = sign | ((exp + 112) << 23) | (man << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* n elements of a tensor of dtype at src, into floats (little-endian files on any host). */
static void to_floats(float *dst, const unsigned char *src, size_t n, enum mf_dtype dt)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;

		switch (dt) {
		case MF_DTYPE_F32:
			u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
			    (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
			memcpy(&dst[i], &u, 4);
			break;
		case MF_DTYPE_BF16:
			u = ((uint32_t)src[2 * i] | (uint32_t)src[2 * i + 1] << 8) << 16;
			memcpy(&dst[i], &u, 4);
			break;
		default: /* F16, the only other dtype let through */
			dst[i] = half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
			break;
		}
	}
}

/* One Hugging Face tensor: its name without prefix, our parameter and layer, its HF shape
 * (Conv1D matrices are (in, out), transposed against ours). */
struct hf_name {
	char name[64];
	int param, layer, ndim, transposed;
	uint64_t shape[2];
};

static int hf_names(const struct gpu_config *cfg, struct hf_name **ret, int *ret_n)
{
	static const struct {
		int param;
		const char *fmt;
		int out_mul, in_mul; /* in units of C; in_mul 0: a vector */
	} per_layer[] = {
		{ GPU_P_LN1W, "ln_1.weight", 1, 0 },
		{ GPU_P_LN1B, "ln_1.bias", 1, 0 },
		{ GPU_P_QKVW, "attn.c_attn.weight", 3, 1 },
		{ GPU_P_QKVB, "attn.c_attn.bias", 3, 0 },
		{ GPU_P_ATTPROJW, "attn.c_proj.weight", 1, 1 },
		{ GPU_P_ATTPROJB, "attn.c_proj.bias", 1, 0 },
		{ GPU_P_LN2W, "ln_2.weight", 1, 0 },
		{ GPU_P_LN2B, "ln_2.bias", 1, 0 },
		{ GPU_P_FCW, "mlp.c_fc.weight", 4, 1 },
		{ GPU_P_FCB, "mlp.c_fc.bias", 4, 0 },
		{ GPU_P_FCPROJW, "mlp.c_proj.weight", 1, 4 },
		{ GPU_P_FCPROJB, "mlp.c_proj.bias", 1, 0 },
	};
	int np = sizeof(per_layer) / sizeof(per_layer[0]), L = cfg->n_layer, k = 0;
	uint64_t C = (uint64_t)cfg->n_embd;
	struct hf_name *t = calloc((size_t)(4 + L * np), sizeof(*t));

	if (!t)
		return -ENOMEM;
	t[k++] = (struct hf_name){ "wte.weight", GPU_P_WTE, 0, 2, 0,
				   { (uint64_t)cfg->vocab_size, C } };
	t[k++] = (struct hf_name){ "wpe.weight", GPU_P_WPE, 0, 2, 0, { (uint64_t)cfg->n_ctx, C } };
	for (int l = 0; l < L; l++)
		for (int j = 0; j < np; j++) {
			struct hf_name *x = &t[k++];

			snprintf(x->name, sizeof(x->name), "h.%d.%s", l, per_layer[j].fmt);
			x->param = per_layer[j].param;
			x->layer = l;
			x->ndim = per_layer[j].in_mul ? 2 : 1;
			x->transposed = per_layer[j].in_mul != 0;
			x->shape[0] = (per_layer[j].in_mul ? per_layer[j].in_mul : per_layer[j].out_mul) * C;
			x->shape[1] = per_layer[j].out_mul * C;
		}
	t[k++] = (struct hf_name){ "ln_f.weight", GPU_P_LNFW, 0, 1, 0, { C, 0 } };
	t[k++] = (struct hf_name){ "ln_f.bias", GPU_P_LNFB, 0, 1, 0, { C, 0 } };
	*ret = t;
	*ret_n = k;
	return 0;
}

static const struct mf_tensor *find_tensor(const struct mf_info *info, const char *name)
{
	const struct mf_tensor *e = mf_tensor_named(info, name);
	char full[96];

	if (!e) {
		snprintf(full, sizeof(full), "transformer.%s", name);
		e = mf_tensor_named(info, full);
	}
	return e;
}

static size_t dtype_size(enum mf_dtype dt)
{
	switch (dt) {
	case MF_DTYPE_F32:
		return 4;
	case MF_DTYPE_F16:
	case MF_DTYPE_BF16:
		return 2;
	default:
		return 0;
	}
}

/* Copy one checked tensor into the flat array, transposing Conv1D matrices. */
static int load_tensor(struct gpu_infer *w, const struct hf_name *x, const struct mf_info *info,
		       const unsigned char *file, float *tmp)
{
	const struct mf_tensor *e = find_tensor(info, x->name);
	size_t es, n = x->ndim == 2 ? x->shape[0] * x->shape[1] : x->shape[0];
	float *dst;

	if (!e || (int)e->n_dims != x->ndim)
		return -EINVAL;
	for (int d = 0; d < x->ndim; d++)
		if (e->shape[d] != x->shape[d])
			return -EINVAL;
	es = dtype_size(e->dtype);
	if (!es || e->size != n * es)
		return -EINVAL;
	dst = w->p[x->param] + w->sizes[x->param] / w->cfg.n_layer * x->layer;
	if (x->param == GPU_P_WTE || x->param == GPU_P_WPE || x->param == GPU_P_LNFW ||
	    x->param == GPU_P_LNFB)
		dst = w->p[x->param];
	if (!x->transposed) {
		to_floats(dst, file + e->offset, n, e->dtype);
		return 0;
	}
	/* HF (in, out) -> ours (out, in) */
	size_t in = x->shape[0], out = x->shape[1];

	to_floats(tmp, file + e->offset, n, e->dtype);
	for (size_t i = 0; i < in; i++)
		for (size_t o = 0; o < out; o++)
			dst[o * in + i] = tmp[i * out + o];
	return 0;
}

static int load_weights(struct gpu_infer *w, const char *path)
{
	struct mf_info info;
	struct hf_name *t = NULL;
	unsigned char *map = MAP_FAILED;
	float *tmp = NULL;
	struct stat st;
	int fd, nt = 0, r;

	mf_info_init(&info);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (st.st_size < 8) {
		r = -EINVAL;
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		r = -errno;
		goto out;
	}
	r = mf_parse_safetensors(map, (size_t)st.st_size, (uint64_t)st.st_size, &info);
	if (r < 0) {
		r = r == -ENOMEM ? r : -EINVAL;
		goto out;
	}
	r = hf_names(&w->cfg, &t, &nt);
	if (r < 0)
		goto out;
	/* the largest Conv1D matrix is (4C, C) */
	tmp = malloc((size_t)4 * w->cfg.n_embd * w->cfg.n_embd * sizeof(float));
	if (!tmp) {
		r = -ENOMEM;
		goto out;
	}
	for (int k = 0; k < nt && r == 0; k++)
		r = load_tensor(w, &t[k], &info, map, tmp);
out:
	free(tmp);
	free(t);
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	mf_info_release(&info);
	close(fd);
	return r;
}

int gpu_infer_load(struct gpu_infer **ret, const char *dir)
{
	struct gpu_config cfg;
	struct gpu_infer *w = NULL;
	char *path = NULL;
	int r;

	r = gpu_ckpt_read_config(dir, &cfg);
	if (r < 0)
		return r;
	r = infer_alloc(&w, &cfg);
	if (r < 0)
		return r;
	if (asprintf(&path, "%s/model.safetensors", dir) < 0) {
		path = NULL;
		r = -ENOMEM;
		goto out;
	}
	r = load_weights(w, path);
out:
	free(path);
	if (r < 0)
		gpu_infer_free(w);
	else
		*ret = w;
	return r;
}

/* ---- the state and one step ---- */

void gpu_infer_state_free(struct gpu_infer_state *s)
{
	if (!s)
		return;
	free(s->k);
	free(s->v);
	free(s->x);
	free(s->ln);
	free(s->qkv);
	free(s->y);
	free(s->t);
	free(s->fch);
	free(s->fchg);
	free(s->mean);
	free(s->rstd);
	free(s->scores);
	free(s);
}

static float *floats(size_t n)
{
	void *p = NULL;

	return posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) == 0 ? p : NULL;
}

int gpu_infer_state_new(struct gpu_infer_state **ret, const struct gpu_infer *w, int cap)
{
	struct gpu_infer_state *s;
	size_t L = (size_t)w->cfg.n_layer, C = (size_t)w->cfg.n_embd, R;

	if (cap < 1 || cap > w->cfg.n_ctx)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->w = w;
	s->cap = cap;
	s->rows = cap < FEED_ROWS ? cap : FEED_ROWS;
	R = (size_t)s->rows;
	s->k = floats(L * cap * C);
	s->v = floats(L * cap * C);
	s->x = floats(R * C);
	s->ln = floats(R * C);
	s->qkv = floats(R * 3 * C);
	s->y = floats(R * C);
	s->t = floats(R * C);
	s->fch = floats(R * 4 * C);
	s->fchg = floats(R * 4 * C);
	s->mean = floats(R);
	s->rstd = floats(R);
	s->scores = floats((size_t)w->cfg.n_head * R * cap);
	if (!s->k || !s->v || !s->x || !s->ln || !s->qkv || !s->y || !s->t || !s->fch ||
	    !s->fchg || !s->mean || !s->rstd || !s->scores) {
		gpu_infer_state_free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

void gpu_infer_state_reset(struct gpu_infer_state *s)
{
	s->len = 0;
}

int gpu_infer_state_len(const struct gpu_infer_state *s)
{
	return s->len;
}

/* out (OC) = W (OC, IC) . in (IC) + bias: one token's product.  The reference's matmul is a
 * GEMM tuned for many rows; with one row OpenBLAS's GEMM repacks the whole weight matrix per
 * call, which made a decode step cost as much as a 100-token forward.  GEMV reads the matrix
 * once, in row blocks across the threads (each output is one dot product: the split does not
 * change the result). */
static void matvec(float *out, const float *W, const float *bias, const float *in, int OC,
		   int IC)
{
	int nt = omp_get_max_threads(), blocks = 4 * nt;
	int chunk = (OC + blocks - 1) / blocks;

#pragma omp parallel for schedule(dynamic, 1) if ((size_t)OC * IC >= PAR_MIN * 16)
	for (int b = 0; b < blocks; b++) {
		int o0 = b * chunk, o1 = o0 + chunk < OC ? o0 + chunk : OC;

		if (o0 >= o1)
			continue;
		if (bias)
			memcpy(out + o0, bias + o0, (size_t)(o1 - o0) * sizeof(float));
		cblas_sgemv(CblasRowMajor, CblasNoTrans, o1 - o0, IC, 1.0f, W + (size_t)o0 * IC, IC,
			    in, 1, bias ? 1.0f : 0.0f, out + o0, 1);
	}
}

/* out (n, OC) = in (n, IC) . W^T + bias */
static void linear(const struct gpu_infer *w, float *out, const float *in, const float *W,
		   const float *bias, int n, int IC, int OC)
{
	if (n == 1)
		matvec(out, W, bias, in, OC, IC);
	else
		w->ops->matmul_forward(w->ctx, out, in, W, bias, n, IC, OC, OC);
}

/* Causal attention of n new rows (positions pos..pos+n-1) over the layer's cache, which
 * already holds their keys and values.  y (n, C). */
static void attend(struct gpu_infer_state *s, const float *kc, const float *vc, int pos, int n)
{
	int C = s->w->cfg.n_embd, NH = s->w->cfg.n_head, hs = C / NH, T = pos + n;
	float scale = 1.0f / sqrtf((float)hs);

#pragma omp parallel for schedule(dynamic, 1) if ((size_t)n * T * C >= PAR_MIN)
	for (int h = 0; h < NH; h++) {
		float *S = s->scores + (size_t)h * s->rows * s->cap;

		/* S (n, T) = Q_h (n, hs) . K_h (T, hs)^T, rows of S T apart */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, T, hs, scale,
			    s->qkv + h * hs, 3 * C, kc + h * hs, C, 0.0f, S, T);
		for (int i = 0; i < n; i++) {
			float *row = S + (size_t)i * T, mx = -INFINITY, sum = 0.0f;
			int valid = pos + i + 1;

			for (int j = 0; j < valid; j++)
				mx = row[j] > mx ? row[j] : mx;
			for (int j = 0; j < valid; j++) {
				row[j] = expf(row[j] - mx);
				sum += row[j];
			}
			for (int j = 0; j < valid; j++)
				row[j] /= sum;
			for (int j = valid; j < T; j++)
				row[j] = 0.0f;
		}
		/* y_h (n, hs) = S (n, T) . V_h (T, hs) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, T, 1.0f, S, T,
			    vc + h * hs, C, 0.0f, s->y + h * hs, C);
	}
}

/* One block of n <= rows tokens through every layer; x holds the residual stream after. */
static void feed_block(struct gpu_infer_state *s, const int32_t *tok, int n)
{
	const struct gpu_infer *w = s->w;
	const struct gpu_ops *o = w->ops;
	void *ctx = w->ctx;
	int L = w->cfg.n_layer, C = w->cfg.n_embd, pos = s->len;
	size_t nc = (size_t)n * C;

	for (int i = 0; i < n; i++) {
		const float *te = w->p[GPU_P_WTE] + (size_t)tok[i] * C;
		const float *pe = w->p[GPU_P_WPE] + (size_t)(pos + i) * C;

		for (int c = 0; c < C; c++)
			s->x[(size_t)i * C + c] = te[c] + pe[c];
	}
	for (int l = 0; l < L; l++) {
		size_t lc = (size_t)l * C;
		float *kc = s->k + (size_t)l * s->cap * C, *vc = s->v + (size_t)l * s->cap * C;

		o->layernorm_forward(ctx, s->ln, s->mean, s->rstd, s->x, w->p[GPU_P_LN1W] + lc,
				     w->p[GPU_P_LN1B] + lc, n, C);
		linear(w, s->qkv, s->ln, w->p[GPU_P_QKVW] + lc * 3 * C, w->p[GPU_P_QKVB] + lc * 3,
		       n, C, 3 * C);
		for (int i = 0; i < n; i++) {
			memcpy(kc + (size_t)(pos + i) * C, s->qkv + (size_t)i * 3 * C + C,
			       C * sizeof(float));
			memcpy(vc + (size_t)(pos + i) * C, s->qkv + (size_t)i * 3 * C + 2 * C,
			       C * sizeof(float));
		}
		attend(s, kc, vc, pos, n);
		linear(w, s->t, s->y, w->p[GPU_P_ATTPROJW] + lc * C, w->p[GPU_P_ATTPROJB] + lc, n,
		       C, C);
		o->residual_forward(ctx, s->x, s->x, s->t, nc);
		o->layernorm_forward(ctx, s->ln, s->mean, s->rstd, s->x, w->p[GPU_P_LN2W] + lc,
				     w->p[GPU_P_LN2B] + lc, n, C);
		linear(w, s->fch, s->ln, w->p[GPU_P_FCW] + lc * 4 * C, w->p[GPU_P_FCB] + lc * 4, n,
		       C, 4 * C);
		o->gelu_forward(ctx, s->fchg, s->fch, 4 * nc);
		linear(w, s->t, s->fchg, w->p[GPU_P_FCPROJW] + lc * 4 * C, w->p[GPU_P_FCPROJB] + lc,
		       n, 4 * C, C);
		o->residual_forward(ctx, s->x, s->x, s->t, nc);
	}
	s->len += n;
}

int gpu_infer_feed(struct gpu_infer_state *s, const int32_t *tokens, int n, float *logits)
{
	const struct gpu_infer *w = s->w;
	int C = w->cfg.n_embd, V = w->cfg.vocab_size, last = 0;

	if (n < 1)
		return -EINVAL;
	if (n > s->cap - s->len)
		return -E2BIG;
	for (int i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= V)
			return -EINVAL;
	for (int i = 0; i < n; i += s->rows) {
		last = n - i < s->rows ? n - i : s->rows;
		feed_block(s, tokens + i, last);
	}
	if (!logits)
		return 0;
	/* only the last row goes through the final LayerNorm and the head */
	float *xl = s->x + (size_t)(last - 1) * C;

	w->ops->layernorm_forward(w->ctx, s->ln, s->mean, s->rstd, xl, w->p[GPU_P_LNFW],
				  w->p[GPU_P_LNFB], 1, C);
	matvec(logits, w->p[GPU_P_WTE], NULL, s->ln, V, C);
	return w->ops->sync(w->ctx);
}

/* ---- sampling ---- */

int gpu_sampler_init(struct gpu_sampler *sp, int vocab_size)
{
	sp->vocab_size = vocab_size;
	sp->prob = malloc((size_t)vocab_size * sizeof(float));
	sp->idx = malloc((size_t)vocab_size * sizeof(int32_t));
	if (!sp->prob || !sp->idx) {
		gpu_sampler_release(sp);
		return -ENOMEM;
	}
	return 0;
}

void gpu_sampler_release(struct gpu_sampler *sp)
{
	free(sp->prob);
	free(sp->idx);
	sp->prob = NULL;
	sp->idx = NULL;
}

/* Sort order: larger probability first, ties by smaller id, so the order is total and the
 * draw does not depend on qsort's algorithm. */
static int by_prob(const void *a, const void *b, void *arg)
{
	const float *p = arg;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	if (p[x] != p[y])
		return p[x] > p[y] ? -1 : 1;
	return x < y ? -1 : x > y;
}

int32_t gpu_sampler_pick(struct gpu_sampler *sp, const struct gpu_sampling *p, float *logits,
			 uint64_t *rng)
{
	int V = sp->vocab_size, n = V;
	int32_t best = 0;
	double sum = 0.0, u, keep;

	for (int i = 1; i < V; i++)
		if (logits[i] > logits[best])
			best = i;
	if (!(p->temperature > 0.0f))
		return best;
	for (int i = 0; i < V; i++) {
		sp->prob[i] = expf((logits[i] - logits[best]) / p->temperature);
		sum += sp->prob[i];
		sp->idx[i] = i;
	}
	if ((p->top_k > 0 && p->top_k < V) || p->top_p < 1.0f) {
		qsort_r(sp->idx, (size_t)V, sizeof(int32_t), by_prob, sp->prob);
		if (p->top_k > 0 && p->top_k < V)
			n = p->top_k;
		if (p->top_p < 1.0f) {
			double total = 0.0, mass = 0.0;

			for (int i = 0; i < n; i++)
				total += sp->prob[sp->idx[i]];
			for (int i = 0; i < n; i++) {
				mass += sp->prob[sp->idx[i]];
				if (mass >= p->top_p * total) {
					n = i + 1;
					break;
				}
			}
		}
		sum = 0.0;
		for (int i = 0; i < n; i++)
			sum += sp->prob[sp->idx[i]];
	}
	u = (double)gpu_rng_uniform(rng) * sum;
	keep = 0.0;
	for (int i = 0; i < n; i++) {
		keep += sp->prob[sp->idx[i]];
		if (u < keep)
			return sp->idx[i];
	}
	return sp->idx[n - 1];
}
