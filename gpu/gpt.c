/* gpu/gpt.c - the model: buffer layout, the layer sequence of forward and backward, AdamW,
 * sampling.  Backend-neutral: every array below lives in the backend's memory and is touched
 * only through the gpu_ops table (gpt_i.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpt.h"
#include "gpu/gpt_i.h"

/* Activations kept from forward for backward, per layer unless noted; N = B*T rows.  The
 * LayerNorm statistics, log-sum-exps and losses are fp32 (act_is_f32()); the rest are of the
 * activation type (gpt_i.h). */
enum gpu_act {
	A_ENCODED,   /* (N,C), once */
	A_LN1,       /* (L,N,C) */
	A_LN1_MEAN,  /* (L,N) */
	A_LN1_RSTD,  /* (L,N) */
	A_QKV,       /* (L,N,3C) */
	A_ATT,       /* (L,B,NH,T,T) */
	A_ATTY,      /* (L,N,C) */
	A_RES2,      /* (L,N,C) residual after attention */
	A_LN2,       /* (L,N,C) */
	A_LN2_MEAN,  /* (L,N) */
	A_LN2_RSTD,  /* (L,N) */
	A_FCH,       /* (L,N,4C) */
	A_FCH_GELU,  /* (L,N,4C) */
	A_RES3,      /* (L,N,C) residual after the MLP: the block's output */
	A_LNF,       /* (N,C) */
	A_LNF_MEAN,  /* (N) */
	A_LNF_RSTD,  /* (N) */
	A_LOGITS,    /* (N,V) in rows of Vp; becomes dlogits in backward */
	A_LSE,       /* (N) log-sum-exp of each row of logits */
	A_LOSSES,    /* (N) */
	/* gradient scratch, reused by every layer in backward */
	A_DRES,      /* (N,C) */
	A_DLN,       /* (N,C) */
	A_DATTY,     /* (N,C) */
	A_DQKV,      /* (N,3C) */
	A_DATT,      /* (B,NH,T,T) */
	A_DFCH,      /* (N,4C) */
	A_DFCH_GELU, /* (N,4C) */
	A_ATT_SCRATCH, /* (GPU_ATT_SCRATCH,N,C) */
	GPU_NACTS
};

struct gpu_model {
	struct gpu_config cfg;
	const struct gpu_ops *ops;
	void *ctx;
	int max_batch, max_seq;
	size_t param_sizes[GPU_NPARAMS];
	size_t num_params;
	size_t act_sizes[GPU_NACTS];              /* elements */
	size_t act_bytes;                         /* of one activation-type element */
	float *params, *grads, *adam_m, *adam_v; /* backend memory, num_params each */
	/* the weights in the activation type, which the matmuls read: params itself when that
	 * type is fp32, else a copy that every AdamW step and write refreshes */
	gpu_act *cparams;
	float *param_ptr[GPU_NPARAMS];
	float *grad_ptr[GPU_NPARAMS];
	gpu_act *cparam_ptr[GPU_NPARAMS];
	void *acts;                               /* backend memory, all activations */
	void *act[GPU_NACTS];
	int32_t *tokens;                          /* backend memory: inputs then targets */
	long adam_step;
	/* state of the last forward: backward needs its shape and targets */
	int last_B, last_T, have_targets;
	/* host scratch */
	float *h_losses;                          /* (max_batch * max_seq) */
	float *h_row;                             /* (V) */
	int32_t *h_idx;                           /* (V) */
};

void gpu_param_sizes(const struct gpu_config *cfg, size_t s[GPU_NPARAMS])
{
	size_t C = cfg->n_embd, L = cfg->n_layer;

	s[GPU_P_WTE] = (size_t)cfg->vocab_size * C;
	s[GPU_P_WPE] = (size_t)cfg->n_ctx * C;
	s[GPU_P_LN1W] = L * C;
	s[GPU_P_LN1B] = L * C;
	s[GPU_P_QKVW] = L * 3 * C * C;
	s[GPU_P_QKVB] = L * 3 * C;
	s[GPU_P_ATTPROJW] = L * C * C;
	s[GPU_P_ATTPROJB] = L * C;
	s[GPU_P_LN2W] = L * C;
	s[GPU_P_LN2B] = L * C;
	s[GPU_P_FCW] = L * 4 * C * C;
	s[GPU_P_FCB] = L * 4 * C;
	s[GPU_P_FCPROJW] = L * C * 4 * C;
	s[GPU_P_FCPROJB] = L * C;
	s[GPU_P_LNFW] = C;
	s[GPU_P_LNFB] = C;
}

size_t gpu_config_num_params(const struct gpu_config *cfg)
{
	size_t s[GPU_NPARAMS], n = 0;

	gpu_param_sizes(cfg, s);
	for (int i = 0; i < GPU_NPARAMS; i++)
		n += s[i];
	return n;
}

int gpu_config_check(const struct gpu_config *cfg)
{
	/* The bounds keep every index inside int arithmetic in the kernels. */
	if (cfg->n_layer < 1 || cfg->n_layer > 1024 || cfg->n_head < 1 || cfg->n_embd < 1 ||
	    cfg->n_embd > 65536 || cfg->n_embd % cfg->n_head != 0 || cfg->n_ctx < 1 ||
	    cfg->n_ctx > 65536 || cfg->vocab_size < 2 || cfg->vocab_size > 65536)
		return -EINVAL;
	return 0;
}

/* The logits' row stride: a multiple of 64 elements keeps every row of the vocabulary-wide
 * arrays aligned for the tensor-core GEMMs (50257 is odd; 50304 is llm.c's choice too). */
static int padded_vocab(int V)
{
	return (V + 63) / 64 * 64;
}

static void act_sizes(const struct gpu_config *cfg, int B, int T, size_t s[GPU_NACTS])
{
	size_t N = (size_t)B * T, C = cfg->n_embd, L = cfg->n_layer, V = cfg->vocab_size;
	size_t att = (size_t)B * cfg->n_head * T * T;

	s[A_ENCODED] = N * C;
	s[A_LN1] = L * N * C;
	s[A_LN1_MEAN] = L * N;
	s[A_LN1_RSTD] = L * N;
	s[A_QKV] = L * N * 3 * C;
	s[A_ATT] = L * att;
	s[A_ATTY] = L * N * C;
	s[A_RES2] = L * N * C;
	s[A_LN2] = L * N * C;
	s[A_LN2_MEAN] = L * N;
	s[A_LN2_RSTD] = L * N;
	s[A_FCH] = L * N * 4 * C;
	s[A_FCH_GELU] = L * N * 4 * C;
	s[A_RES3] = L * N * C;
	s[A_LNF] = N * C;
	s[A_LNF_MEAN] = N;
	s[A_LNF_RSTD] = N;
	s[A_LOGITS] = N * padded_vocab(V);
	s[A_LSE] = N;
	s[A_LOSSES] = N;
	s[A_DRES] = N * C;
	s[A_DLN] = N * C;
	s[A_DATTY] = N * C;
	s[A_DQKV] = N * 3 * C;
	s[A_DATT] = att;
	s[A_DFCH] = N * 4 * C;
	s[A_DFCH_GELU] = N * 4 * C;
	s[A_ATT_SCRATCH] = GPU_ATT_SCRATCH * N * C;
}

static int act_is_f32(int i)
{
	return i == A_LN1_MEAN || i == A_LN1_RSTD || i == A_LN2_MEAN || i == A_LN2_RSTD ||
	       i == A_LNF_MEAN || i == A_LNF_RSTD || i == A_LSE || i == A_LOSSES;
}

/* Each activation array starts on a 64-byte boundary, whatever the element sizes before it. */
static size_t act_array_bytes(int i, size_t elems, size_t act_bytes)
{
	return (elems * (act_is_f32(i) ? sizeof(float) : act_bytes) + 63) / 64 * 64;
}

size_t gpu_model_bytes(const struct gpu_config *cfg, const struct gpu_opts *opts)
{
	size_t s[GPU_NACTS], np = gpu_config_num_params(cfg), ab = gpu_act_bytes(opts->bf16);
	size_t bytes = 4 * np * sizeof(float);
	int B = opts->max_batch, T = opts->max_seq;

	/* The configuration bounds (gpu_config_check) and B, T below 2^16 keep this exact in
	 * 64-bit size_t; larger requests are refused rather than wrapped. */
	if (B < 1 || T < 1 || B > 65536 || T > 65536)
		return 0;
	if (opts->bf16)
		bytes += np * ab;
	act_sizes(cfg, B, T, s);
	for (int i = 0; i < GPU_NACTS; i++)
		bytes += act_array_bytes(i, s[i], ab);
	return bytes + 2 * (size_t)B * T * sizeof(int32_t);
}

double gpu_flops_per_token(const struct gpu_config *cfg, int seq)
{
	/* 2 FLOPs per multiply-add, times 3 for forward + backward; attention's QK^T and AV are
	 * 2*T*C multiply-adds per token per layer (full T: the CPU computes the masked half too,
	 * but the figure counts the model, as llm.c and PaLM do). */
	double n = (double)gpu_config_num_params(cfg);

	return 6.0 * n + 12.0 * cfg->n_layer * cfg->n_embd * (double)seq;
}

const struct gpu_config *gpu_model_config(const struct gpu_model *m)
{
	return &m->cfg;
}

size_t gpu_model_num_params(const struct gpu_model *m)
{
	return m->num_params;
}

long gpu_model_adam_step(const struct gpu_model *m)
{
	return m->adam_step;
}

void gpu_model_set_adam_step(struct gpu_model *m, long step)
{
	m->adam_step = step;
}

uint64_t gpu_rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

float gpu_rng_uniform(uint64_t *state)
{
	/* 24 bits: exactly representable, in [0, 1) */
	return (float)(gpu_rng_next(state) >> 40) / 16777216.0f;
}

static float rng_normal(uint64_t *state)
{
	double u1 = ((gpu_rng_next(state) >> 11) + 1.0) / 9007199254740993.0;
	double u2 = (gpu_rng_next(state) >> 11) / 9007199254740992.0;

	return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

float gpu_lr_schedule(long step, long warmup, long total, float max_lr, float min_lr)
{
	if (step < warmup)
		return max_lr * (float)(step + 1) / (float)warmup;
	if (step >= total)
		return min_lr;
	double frac = (double)(step - warmup) / (double)(total - warmup);

	return min_lr + 0.5f * (max_lr - min_lr) * (float)(1.0 + cos(M_PI * frac));
}

/* GPT-2 initialisation: N(0, 0.02) for matrices and embeddings, with the two projections that
 * write into the residual stream scaled by 1/sqrt(2L); LayerNorm gain 1, every bias 0. */
static void init_params_host(const struct gpu_model *m, float *p, uint64_t seed)
{
	uint64_t rng = seed;
	float resid_std = 0.02f / sqrtf(2.0f * m->cfg.n_layer);
	size_t off = 0;

	for (int i = 0; i < GPU_NPARAMS; i++) {
		size_t n = m->param_sizes[i];

		for (size_t j = 0; j < n; j++) {
			float v;

			switch (i) {
			case GPU_P_WTE: case GPU_P_WPE: case GPU_P_QKVW: case GPU_P_FCW:
				v = 0.02f * rng_normal(&rng);
				break;
			case GPU_P_ATTPROJW: case GPU_P_FCPROJW:
				v = resid_std * rng_normal(&rng);
				break;
			case GPU_P_LN1W: case GPU_P_LN2W: case GPU_P_LNFW:
				v = 1.0f;
				break;
			default:
				v = 0.0f;
			}
			p[off + j] = v;
		}
		off += n;
	}
}

void gpu_model_free(struct gpu_model *m)
{
	if (!m)
		return;
	if (m->ops) {
		m->ops->free(m->ctx, m->params);
		m->ops->free(m->ctx, m->grads);
		m->ops->free(m->ctx, m->adam_m);
		m->ops->free(m->ctx, m->adam_v);
		if (m->cparams != m->params)
			m->ops->free(m->ctx, m->cparams);
		m->ops->free(m->ctx, m->acts);
		m->ops->free(m->ctx, m->tokens);
		m->ops->ctx_free(m->ctx);
	}
	free(m->h_losses);
	free(m->h_row);
	free(m->h_idx);
	free(m);
}

static int alloc_floats(struct gpu_model *m, float **ret, size_t n)
{
	void *p = NULL;
	int r = m->ops->alloc(m->ctx, &p, n * sizeof(float));

	if (r < 0)
		return r;
	*ret = p;
	return 0;
}

/* After the master weights change other than through AdamW: the matmuls' copy follows. */
static int refresh_cparams(struct gpu_model *m)
{
	if (m->cparams == m->params)
		return 0;
	m->ops->act_from_f32(m->ctx, m->cparams, m->params, m->num_params);
	return m->ops->sync(m->ctx);
}

int gpu_model_new(struct gpu_model **ret, const struct gpu_config *cfg,
		  const struct gpu_opts *opts)
{
	struct gpu_model *m = NULL;
	float *host = NULL;
	size_t need, total_acts = 0, off;
	void *p;
	int r;

	r = gpu_config_check(cfg);
	if (r < 0)
		return r;
	if (opts->max_batch < 1 || opts->max_seq < 1 || opts->max_seq > cfg->n_ctx)
		return -EINVAL;
	need = gpu_model_bytes(cfg, opts);
	if (need == 0)
		return -EINVAL;
	if (opts->max_bytes && need > opts->max_bytes)
		return -ENOMEM;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	m->max_batch = opts->max_batch;
	m->max_seq = opts->max_seq;
	if (opts->backend == GPU_BACKEND_CPU)
		m->ops = gpu_cpu_ops();
	else if (opts->backend == GPU_BACKEND_CUDA)
		m->ops = gpu_cuda_ops();
	if (!m->ops) {
		r = opts->backend == GPU_BACKEND_CUDA ? -ENODEV : -EINVAL;
		goto out;
	}
	r = m->ops->ctx_new(&m->ctx, opts->bf16);
	if (r < 0) {
		m->ops = NULL;
		goto out;
	}

	gpu_param_sizes(cfg, m->param_sizes);
	m->num_params = gpu_config_num_params(cfg);
	act_sizes(cfg, m->max_batch, m->max_seq, m->act_sizes);
	m->act_bytes = gpu_act_bytes(opts->bf16);
	for (int i = 0; i < GPU_NACTS; i++)
		total_acts += act_array_bytes(i, m->act_sizes[i], m->act_bytes);

	if ((r = alloc_floats(m, &m->params, m->num_params)) < 0 ||
	    (r = alloc_floats(m, &m->grads, m->num_params)) < 0 ||
	    (r = alloc_floats(m, &m->adam_m, m->num_params)) < 0 ||
	    (r = alloc_floats(m, &m->adam_v, m->num_params)) < 0 ||
	    (r = m->ops->alloc(m->ctx, &m->acts, total_acts)) < 0 ||
	    (r = m->ops->alloc(m->ctx, &p, 2 * (size_t)m->max_batch * m->max_seq *
					     sizeof(int32_t))) < 0)
		goto out;
	m->tokens = p;

	m->cparams = m->params;
	if (opts->bf16) {
		if ((r = m->ops->alloc(m->ctx, &p, m->num_params * m->act_bytes)) < 0)
			goto out;
		m->cparams = p;
	}
	off = 0;
	for (int i = 0; i < GPU_NPARAMS; i++) {
		m->param_ptr[i] = m->params + off;
		m->grad_ptr[i] = m->grads + off;
		m->cparam_ptr[i] = (char *)m->cparams + off * m->act_bytes;
		off += m->param_sizes[i];
	}
	off = 0;
	for (int i = 0; i < GPU_NACTS; i++) {
		m->act[i] = (char *)m->acts + off;
		off += act_array_bytes(i, m->act_sizes[i], m->act_bytes);
	}

	m->h_losses = malloc((size_t)m->max_batch * m->max_seq * sizeof(float));
	m->h_row = malloc((size_t)cfg->vocab_size * sizeof(float));
	m->h_idx = malloc((size_t)cfg->vocab_size * sizeof(int32_t));
	host = malloc(m->num_params * sizeof(float));
	if (!m->h_losses || !m->h_row || !m->h_idx || !host) {
		r = -ENOMEM;
		goto out;
	}
	/* Initialise on the host so that every backend starts from identical weights. */
	init_params_host(m, host, opts->seed);
	if ((r = m->ops->to_dev(m->ctx, m->params, host, m->num_params * sizeof(float))) < 0 ||
	    (r = refresh_cparams(m)) < 0 ||
	    (r = m->ops->zero(m->ctx, m->grads, m->num_params * sizeof(float))) < 0 ||
	    (r = m->ops->zero(m->ctx, m->adam_m, m->num_params * sizeof(float))) < 0 ||
	    (r = m->ops->zero(m->ctx, m->adam_v, m->num_params * sizeof(float))) < 0 ||
	    (r = m->ops->sync(m->ctx)) < 0)
		goto out;

	*ret = m;
	m = NULL;
	r = 0;
out:
	free(host);
	gpu_model_free(m);
	return r;
}

/* Per-layer slices: of fp32 parameters or gradients, of the weights' compute copy, of an
 * activation (per_layer elements a layer). */
static float *lp(struct gpu_model *m, float *const *base, int i, int l)
{
	return base[i] + (m->param_sizes[i] / m->cfg.n_layer) * l;
}

static gpu_act *lc(struct gpu_model *m, int i, int l)
{
	return (char *)m->cparam_ptr[i] + (m->param_sizes[i] / m->cfg.n_layer) * l * m->act_bytes;
}

static void *la(struct gpu_model *m, int i, int l, size_t per_layer)
{
	return (char *)m->act[i] + per_layer * l * (act_is_f32(i) ? sizeof(float) : m->act_bytes);
}

int gpu_model_forward(struct gpu_model *m, const int32_t *inputs, const int32_t *targets,
		      int B, int T, float *ret_loss)
{
	const struct gpu_ops *o = m->ops;
	void *x = m->ctx;
	int L = m->cfg.n_layer, C = m->cfg.n_embd, NH = m->cfg.n_head, V = m->cfg.vocab_size;
	int N = B * T;
	size_t nc = (size_t)N * C;
	/* per-layer strides use the allocated shape, so layers do not move with B and T */
	size_t snc = (size_t)m->max_batch * m->max_seq * C, sn = (size_t)m->max_batch * m->max_seq;
	size_t satt = (size_t)m->max_batch * NH * m->max_seq * m->max_seq;
	int32_t *d_inp = m->tokens, *d_tgt = m->tokens + sn;
	float *const *P = m->param_ptr;
	gpu_act *res;
	int r;

	m->have_targets = 0;
	if (B < 1 || T < 1 || B > m->max_batch || T > m->max_seq)
		return -EINVAL;
	for (int i = 0; i < N; i++)
		if (inputs[i] < 0 || inputs[i] >= V || (targets && (targets[i] < 0 ||
								     targets[i] >= V)))
			return -EINVAL;
	r = o->to_dev(x, d_inp, inputs, (size_t)N * sizeof(int32_t));
	if (r == 0 && targets)
		r = o->to_dev(x, d_tgt, targets, (size_t)N * sizeof(int32_t));
	if (r < 0)
		return r;

	o->encoder_forward(x, m->act[A_ENCODED], d_inp, P[GPU_P_WTE], P[GPU_P_WPE], B, T, C);
	res = m->act[A_ENCODED];
	for (int l = 0; l < L; l++) {
		gpu_act *ln1 = la(m, A_LN1, l, snc), *qkv = la(m, A_QKV, l, 3 * snc);
		gpu_act *att = la(m, A_ATT, l, satt), *atty = la(m, A_ATTY, l, snc);
		gpu_act *res2 = la(m, A_RES2, l, snc), *ln2 = la(m, A_LN2, l, snc);
		gpu_act *fch = la(m, A_FCH, l, 4 * snc), *fchg = la(m, A_FCH_GELU, l, 4 * snc);
		gpu_act *res3 = la(m, A_RES3, l, snc);

		o->layernorm_forward(x, ln1, la(m, A_LN1_MEAN, l, sn), la(m, A_LN1_RSTD, l, sn),
				     res, lp(m, P, GPU_P_LN1W, l), lp(m, P, GPU_P_LN1B, l), N, C);
		o->matmul_forward(x, qkv, ln1, lc(m, GPU_P_QKVW, l), lp(m, P, GPU_P_QKVB, l), N,
				  C, 3 * C, 3 * C);
		o->attention_forward(x, atty, att, qkv, m->act[A_ATT_SCRATCH], B, T, C, NH);
		o->matmul_forward(x, res2, atty, lc(m, GPU_P_ATTPROJW, l),
				  lp(m, P, GPU_P_ATTPROJB, l), N, C, C, C);
		o->residual_forward(x, res2, res2, res, nc);
		o->layernorm_forward(x, ln2, la(m, A_LN2_MEAN, l, sn), la(m, A_LN2_RSTD, l, sn),
				     res2, lp(m, P, GPU_P_LN2W, l), lp(m, P, GPU_P_LN2B, l), N, C);
		o->matmul_forward(x, fch, ln2, lc(m, GPU_P_FCW, l), lp(m, P, GPU_P_FCB, l), N, C,
				  4 * C, 4 * C);
		o->gelu_forward(x, fchg, fch, 4 * nc);
		o->matmul_forward(x, res3, fchg, lc(m, GPU_P_FCPROJW, l),
				  lp(m, P, GPU_P_FCPROJB, l), N, 4 * C, C, C);
		o->residual_forward(x, res3, res3, res2, nc);
		res = res3;
	}
	o->layernorm_forward(x, m->act[A_LNF], m->act[A_LNF_MEAN], m->act[A_LNF_RSTD], res,
			     P[GPU_P_LNFW], P[GPU_P_LNFB], N, C);
	o->matmul_forward(x, m->act[A_LOGITS], m->act[A_LNF], m->cparam_ptr[GPU_P_WTE], NULL, N,
			  C, V, padded_vocab(V));
	m->last_B = B;
	m->last_T = T;
	if (!targets)
		return o->sync(x);

	o->crossentropy_forward(x, m->act[A_LOSSES], m->act[A_LSE], m->act[A_LOGITS], d_tgt, N,
				V, padded_vocab(V));
	r = o->to_host(x, m->h_losses, m->act[A_LOSSES], (size_t)N * sizeof(float));
	if (r < 0)
		return r;
	double sum = 0.0;

	for (int i = 0; i < N; i++)
		sum += m->h_losses[i];
	float loss = (float)(sum / N);

	if (!isfinite(loss))
		return -ERANGE;
	m->have_targets = 1;
	if (ret_loss)
		*ret_loss = loss;
	return 0;
}

int gpu_model_backward(struct gpu_model *m)
{
	const struct gpu_ops *o = m->ops;
	void *x = m->ctx;
	int L = m->cfg.n_layer, C = m->cfg.n_embd, NH = m->cfg.n_head, V = m->cfg.vocab_size;
	int B = m->last_B, T = m->last_T, N = B * T;
	size_t snc = (size_t)m->max_batch * m->max_seq * C, sn = (size_t)m->max_batch * m->max_seq;
	size_t satt = (size_t)m->max_batch * NH * m->max_seq * m->max_seq;
	float *const *P = m->param_ptr, *const *G = m->grad_ptr;
	gpu_act *dres = m->act[A_DRES], *dln = m->act[A_DLN];
	int r;

	if (!m->have_targets)
		return -EINVAL;
	/* Logits are overwritten by their gradient: a second backward would be wrong. */
	m->have_targets = 0;
	r = o->zero(x, m->grads, m->num_params * sizeof(float));
	if (r == 0)
		r = o->zero(x, dres, (size_t)N * C * m->act_bytes);
	if (r < 0)
		return r;

	/* in place: the logits become their gradient */
	o->crossentropy_backward(x, m->act[A_LOGITS], m->act[A_LOGITS], m->act[A_LSE],
				 m->tokens + sn, N, V, padded_vocab(V), 1.0f / N);
	o->matmul_backward(x, dln, G[GPU_P_WTE], NULL, m->act[A_LOGITS], m->act[A_LNF],
			   m->cparam_ptr[GPU_P_WTE], N, C, V, padded_vocab(V));
	o->layernorm_backward(x, dres, G[GPU_P_LNFW], G[GPU_P_LNFB], dln,
			      la(m, A_RES3, L - 1, snc), P[GPU_P_LNFW], m->act[A_LNF_MEAN],
			      m->act[A_LNF_RSTD], N, C);
	for (int l = L - 1; l >= 0; l--) {
		gpu_act *res = l == 0 ? m->act[A_ENCODED] : la(m, A_RES3, l - 1, snc);

		/* res3 = res2 + fcproj(gelu(fc(ln2(res2)))): dres is d res3 here */
		o->matmul_backward(x, m->act[A_DFCH_GELU], lp(m, G, GPU_P_FCPROJW, l),
				   lp(m, G, GPU_P_FCPROJB, l), dres, la(m, A_FCH_GELU, l, 4 * snc),
				   lc(m, GPU_P_FCPROJW, l), N, 4 * C, C, C);
		o->gelu_backward(x, m->act[A_DFCH], la(m, A_FCH, l, 4 * snc), m->act[A_DFCH_GELU],
				 4 * (size_t)N * C);
		o->matmul_backward(x, dln, lp(m, G, GPU_P_FCW, l), lp(m, G, GPU_P_FCB, l),
				   m->act[A_DFCH], la(m, A_LN2, l, snc), lc(m, GPU_P_FCW, l), N, C,
				   4 * C, 4 * C);
		o->layernorm_backward(x, dres, lp(m, G, GPU_P_LN2W, l), lp(m, G, GPU_P_LN2B, l), dln,
				      la(m, A_RES2, l, snc), lp(m, P, GPU_P_LN2W, l),
				      la(m, A_LN2_MEAN, l, sn), la(m, A_LN2_RSTD, l, sn), N, C);
		/* res2 = res + attproj(attention(qkv(ln1(res)))): dres is d res2 here */
		o->matmul_backward(x, m->act[A_DATTY], lp(m, G, GPU_P_ATTPROJW, l),
				   lp(m, G, GPU_P_ATTPROJB, l), dres, la(m, A_ATTY, l, snc),
				   lc(m, GPU_P_ATTPROJW, l), N, C, C, C);
		o->attention_backward(x, m->act[A_DQKV], m->act[A_DATT], m->act[A_DATTY],
				      la(m, A_QKV, l, 3 * snc), la(m, A_ATT, l, satt),
				      m->act[A_ATT_SCRATCH], B, T, C, NH);
		o->matmul_backward(x, dln, lp(m, G, GPU_P_QKVW, l), lp(m, G, GPU_P_QKVB, l),
				   m->act[A_DQKV], la(m, A_LN1, l, snc), lc(m, GPU_P_QKVW, l), N,
				   C, 3 * C, 3 * C);
		o->layernorm_backward(x, dres, lp(m, G, GPU_P_LN1W, l), lp(m, G, GPU_P_LN1B, l), dln,
				      res, lp(m, P, GPU_P_LN1W, l), la(m, A_LN1_MEAN, l, sn),
				      la(m, A_LN1_RSTD, l, sn), N, C);
	}
	o->encoder_backward(x, G[GPU_P_WTE], G[GPU_P_WPE], dres, m->tokens, B, T, C);
	return o->sync(x);
}

static int decays(int i)
{
	return i == GPU_P_WTE || i == GPU_P_WPE || i == GPU_P_QKVW || i == GPU_P_ATTPROJW ||
	       i == GPU_P_FCW || i == GPU_P_FCPROJW;
}

int gpu_model_step(struct gpu_model *m, const struct gpu_adamw *hp, float lr,
		   float *ret_grad_norm)
{
	double ss = 0.0;
	float norm, gscale = 1.0f, bc1, bc2;
	size_t off = 0;
	long t;
	int r;

	r = m->ops->sumsq(m->ctx, m->grads, m->num_params, &ss);
	if (r < 0)
		return r;
	norm = (float)sqrt(ss);
	if (!isfinite(norm) || !isfinite(lr))
		return -ERANGE;
	/* the same rule as torch.nn.utils.clip_grad_norm_ */
	if (hp->grad_clip > 0.0f) {
		float coef = hp->grad_clip / (norm + 1e-6f);

		gscale = coef < 1.0f ? coef : 1.0f;
	}
	t = m->adam_step + 1;
	bc1 = 1.0f - powf(hp->beta1, (float)t);
	bc2 = 1.0f - powf(hp->beta2, (float)t);
	for (int i = 0; i < GPU_NPARAMS; i++) {
		size_t n = m->param_sizes[i];

		gpu_act *cp = m->cparams == m->params ? NULL
						       : (char *)m->cparams + off * m->act_bytes;

		m->ops->adamw(m->ctx, m->params + off, cp, m->grads + off, m->adam_m + off,
			      m->adam_v + off, n, lr, hp->beta1, hp->beta2, hp->eps,
			      decays(i) ? hp->weight_decay : 0.0f, gscale, bc1, bc2);
		off += n;
	}
	r = m->ops->sync(m->ctx);
	if (r < 0)
		return r;
	m->adam_step = t;
	if (ret_grad_norm)
		*ret_grad_norm = norm;
	return 0;
}

const char *gpu_model_error_detail(const struct gpu_model *m)
{
	return m->ops->error_detail(m->ctx);
}

int gpu_model_logits(struct gpu_model *m, long row, float *dst)
{
	size_t V = m->cfg.vocab_size, Vp = padded_vocab(m->cfg.vocab_size);
	size_t rows = (size_t)m->last_B * m->last_T, r0 = row < 0 ? 0 : row;
	size_t r1 = row < 0 ? rows : r0 + 1;
	int r = 0;

	if (rows == 0 || row >= (long)rows)
		return -EINVAL;
	for (size_t i = r0; i < r1 && r == 0; i++)
		r = m->ops->act_to_host(m->ctx, dst + (i - r0) * V,
					(char *)m->act[A_LOGITS] + i * Vp * m->act_bytes, V);
	return r;
}

static float *buf_of(struct gpu_model *m, enum gpu_buf which)
{
	switch (which) {
	case GPU_BUF_PARAMS: return m->params;
	case GPU_BUF_GRADS: return m->grads;
	case GPU_BUF_ADAM_M: return m->adam_m;
	case GPU_BUF_ADAM_V: return m->adam_v;
	}
	return NULL;
}

int gpu_model_read(struct gpu_model *m, enum gpu_buf which, float *dst)
{
	float *b = buf_of(m, which);

	if (!b)
		return -EINVAL;
	return m->ops->to_host(m->ctx, dst, b, m->num_params * sizeof(float));
}

int gpu_model_write(struct gpu_model *m, enum gpu_buf which, const float *src)
{
	float *b = buf_of(m, which);
	int r;

	if (!b)
		return -EINVAL;
	m->have_targets = 0;
	r = m->ops->to_dev(m->ctx, b, src, m->num_params * sizeof(float));
	if (r == 0 && which == GPU_BUF_PARAMS)
		r = refresh_cparams(m);
	return r;
}

/* a ranks before b: larger logit, ties by smaller index, so the order is total */
static int before(const float *l, int32_t a, int32_t b)
{
	return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* Move the k best tokens to idx[0..k) (in no particular but reproducible order): quickselect,
 * in place, so sampling allocates nothing (qsort may). */
static void select_top_k(const float *l, int32_t *idx, int n, int k)
{
	int lo = 0, hi = n - 1;

	while (lo < hi) {
		int32_t pivot = idx[lo + (hi - lo) / 2], t;
		int i = lo, j = hi;

		while (i <= j) {
			while (before(l, idx[i], pivot))
				i++;
			while (before(l, pivot, idx[j]))
				j--;
			if (i <= j) {
				t = idx[i];
				idx[i] = idx[j];
				idx[j] = t;
				i++;
				j--;
			}
		}
		if (k - 1 <= j)
			hi = j;
		else if (k - 1 >= i)
			lo = i;
		else
			break;
	}
}

/* One token from logits: temperature, top-k, then inverse-CDF sampling. */
static int32_t pick_token(struct gpu_model *m, float temperature, int top_k, uint64_t *rng)
{
	int V = m->cfg.vocab_size, k = top_k > 0 && top_k < V ? top_k : V;
	float *l = m->h_row, mx, sum = 0.0f, u;
	int32_t *idx = m->h_idx, best = 0;

	for (int i = 1; i < V; i++)
		if (before(l, i, best))
			best = i;
	if (temperature <= 0.0f)
		return best;
	for (int i = 0; i < V; i++)
		idx[i] = i;
	if (k < V)
		select_top_k(l, idx, V, k);
	mx = l[best];
	for (int i = 0; i < k; i++) {
		l[idx[i]] = expf((l[idx[i]] - mx) / temperature);
		sum += l[idx[i]];
	}
	u = gpu_rng_uniform(rng) * sum;
	for (int i = 0; i < k; i++) {
		u -= l[idx[i]];
		if (u < 0.0f)
			return idx[i];
	}
	return idx[k - 1];
}

int gpu_model_sample(struct gpu_model *m, int32_t *tokens, int n_prompt, int n_new,
		     float temperature, int top_k, uint64_t *rng)
{
	int ctx = m->cfg.n_ctx < m->max_seq ? m->cfg.n_ctx : m->max_seq;
	int r;

	if (n_prompt < 1 || n_new < 0)
		return -EINVAL;
	for (int i = 0; i < n_new; i++) {
		int len = n_prompt + i, w = len < ctx ? len : ctx;

		r = gpu_model_forward(m, tokens + len - w, NULL, 1, w, NULL);
		if (r < 0)
			return r;
		r = gpu_model_logits(m, w - 1, m->h_row);
		if (r < 0)
			return r;
		tokens[len] = pick_token(m, temperature, top_k, rng);
	}
	return 0;
}
