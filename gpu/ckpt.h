/* gpu/ckpt.h - checkpoints as safetensors with Hugging Face GPT-2 names, plus config.json.
 *
 * A checkpoint is a directory:
 *   config.json             GPT2Config fields (model_type "gpt2", n_layer, n_head, n_embd,
 *                           n_positions, vocab_size, activation "gelu_new", tied head)
 *   model.safetensors       the weights, F32, named as in the Hugging Face "gpt2" files
 *                           ("wte.weight", "h.0.attn.c_attn.weight", ...); the four Conv1D
 *                           matrices are stored (in, out) as Hugging Face does, so they are
 *                           transposed against gpt.h's (out, in)
 *   optimizer.safetensors   the AdamW moments under the same names prefixed "exp_avg." and
 *                           "exp_avg_sq.", and __metadata__ {"step", "adam_step", "seed"}
 * gpu_ckpt_save() builds the directory under "<dir>.tmp" (every file fsync'd), renames it into
 * place and fsyncs the parent, so a crash leaves either a whole checkpoint or none.
 *
 * Loading accepts names with or without the "transformer." prefix that save_pretrained() adds,
 * so a model.safetensors written by transformers (F32) loads too; optimizer.safetensors is
 * optional (weights-only checkpoints start a fresh optimizer).  Both files' headers are
 * checked against the model before anything is copied: a load that is refused leaves the
 * model's weights and optimizer state as they were.
 *
 * Errors: -errno from the file system, -EINVAL for a malformed file or a tensor whose name,
 * dtype or shape does not match the model, -EEXIST when the checkpoint directory exists.
 */
#ifndef GPU_CKPT_H
#define GPU_CKPT_H

#include <stdint.h>

#include "gpu/gpt.h"

struct gpu_ckpt_meta {
	long step;        /* training steps done; -1 when the checkpoint has no optimizer state */
	uint64_t seed;    /* the run's data seed */
};

int gpu_ckpt_save(struct gpu_model *m, const char *dir, const struct gpu_ckpt_meta *meta);
int gpu_ckpt_read_config(const char *dir, struct gpu_config *ret);
/* ret_meta may be NULL. */
int gpu_ckpt_load(struct gpu_model *m, const char *dir, struct gpu_ckpt_meta *ret_meta);

/* One array of the model (parameters, gradients, moments) as a safetensors file under the
 * Hugging Face names, each prefixed by prefix (may be ""); tests use it to export gradients. */
int gpu_ckpt_write_buf(struct gpu_model *m, const char *path, enum gpu_buf which,
		       const char *prefix);

/* A plain safetensors file of F32 tensors; shape has ndim entries (ndim <= 4). */
struct gpu_st_tensor {
	const char *name;
	int ndim;
	int64_t shape[4];
	const float *data;
};
int gpu_st_write(const char *path, const struct gpu_st_tensor *t, int n);

#endif
