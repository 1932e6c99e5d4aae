/* gpu/gguf.h - a GPT-2 model as GGUF, the file format of llama.cpp (and of Ollama and
 * RamaLama, which run llama.cpp), and our own reader that checks such a file.
 *
 * Export (GGUF v3, every tensor F32, general.file_type 0, alignment 32) writes what llama.cpp's
 * "gpt2" architecture loads, as its convert_hf_to_gguf.py would:
 *   general.architecture "gpt2", general.name, general.file_type
 *   gpt2.context_length, gpt2.embedding_length, gpt2.feed_forward_length (4C),
 *   gpt2.block_count, gpt2.attention.head_count, gpt2.attention.layer_norm_epsilon (1e-5)
 *   tokenizer.ggml.model "gpt2", tokenizer.ggml.pre "gpt-2", tokenizer.ggml.tokens (the
 *   byte-level strings), tokenizer.ggml.token_type (1 normal, 3 control for <|endoftext|>),
 *   tokenizer.ggml.merges, and with an end-of-text token tokenizer.ggml.bos_token_id and
 *   eos_token_id.  llmfs's byte vocabulary is written as a BPE vocabulary of the 256 byte
 *   characters and no merges, which tokenizes text to the same ids.
 *   Tensors: token_embd, position_embd, blk.N.{attn_norm, attn_qkv, attn_output, ffn_norm,
 *   ffn_up, ffn_down}.{weight, bias}, output_norm.{weight, bias}, and output.weight (a copy of
 *   token_embd: GPT-2 ties them; the converter writes it too).  gpt.h's (out, in) row-major
 *   matrices are GGML's [in, out] (ne[0] the row length) as they are: nothing is transposed.
 * The file is written under "<path>.tmp", fsync'd and renamed: a reader never sees half of it.
 *
 * Check: parses any GGUF v2/v3 file with bounds on every count and length (hostile input),
 * then requires the gpt2 keys above with consistent values, every tensor with its name, shape
 * and type (F32, or F16 for the matrices and embeddings), offsets aligned and inside the file,
 * and no overlap.  On success it can also load the weights into a struct gpu_infer, so that
 * an exported file can be run and compared with the model it came from.
 *
 * Errors: -EINVAL malformed or not what a gpt2 GGUF must be (the message says which field),
 * -ENOMEM, -errno from the file system.  No global state; any thread.
 */
#ifndef GPU_GGUF_H
#define GPU_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "gpu/gpt.h"
#include "gpu/infer.h"
#include "gpu/tokenizer.h"

int gpu_gguf_export(const struct gpu_infer *w, const struct gpu_tok *tok, const char *name,
		    const char *path);

struct gpu_gguf_info {
	uint32_t version;
	uint64_t n_tensors, n_kv, file_size, data_offset;
	uint32_t alignment;
	char name[128];
	struct gpu_config cfg;
	float layer_norm_eps;
	int n_tokens, n_merges;
	int32_t bos, eos;          /* -1 when absent */
	char **tokens;             /* n_tokens strings */
	char **merges;             /* n_merges strings */
	char error[256];           /* why the check failed */
};

void gpu_gguf_info_release(struct gpu_gguf_info *info);

/* ret_model may be NULL (check only).  info is filled as far as the parse went, error set on
 * failure; release it either way. */
int gpu_gguf_check(const char *path, struct gpu_gguf_info *info, struct gpu_infer **ret_model);

#endif
