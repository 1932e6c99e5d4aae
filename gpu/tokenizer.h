/* gpu/tokenizer.h - text <-> token ids for the models gpu/ runs.
 *
 * Two kinds:
 *   bytes  llmfs's own vocabulary (gpu/data.h): token i is byte i, 256 tokens, no special
 *          tokens.  What llmfs-train's models use (config.json "llmfs_tokenizer": "bytes").
 *   bpe    GPT-2's byte-level BPE: the text is split by GPT-2's pattern
 *          ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+, PCRE2
 *          with Unicode properties), each piece's bytes are mapped to printable characters
 *          (bytes_to_unicode), then merged by the ranks of merges.txt.  The files are
 *          vocab.json + merges.txt (the GPT-2 release's encoder.json + vocab.bpe), or a
 *          Hugging Face tokenizer.json whose model is BPE.  Special tokens in the text
 *          ("<|endoftext|>") are not recognised: a prompt cannot forge one; the end-of-text id
 *          is known to the caller through gpu_tok_eos().
 *
 * A struct gpu_tok is read-only after loading; any number of threads may use it.  Decoding
 * yields raw bytes, which for BPE may end inside a UTF-8 sequence (a character split across
 * tokens): callers that need text hold such a tail back until the next token completes it.
 *
 * Errors: -EINVAL malformed files, -EILSEQ text that is not valid UTF-8 (bpe; NUL included),
 * -ENOENT no tokenizer in a directory, -ENOMEM, -errno from the file system.
 */
#ifndef GPU_TOKENIZER_H
#define GPU_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

enum gpu_tok_kind {
	GPU_TOK_BYTES,
	GPU_TOK_BPE,
};

struct gpu_tok;

int gpu_tok_new_bytes(struct gpu_tok **ret);
int gpu_tok_load_bpe(struct gpu_tok **ret, const char *vocab_json, const char *merges_txt);
int gpu_tok_load_json(struct gpu_tok **ret, const char *tokenizer_json);
/* A model directory's tokenizer: tokenizer.json, else vocab.json + merges.txt, else the byte
 * vocabulary when vocab_size is 256.  Every id must be below vocab_size (-EINVAL). */
int gpu_tok_load_dir(struct gpu_tok **ret, const char *dir, int vocab_size);
void gpu_tok_free(struct gpu_tok *t);

enum gpu_tok_kind gpu_tok_kind(const struct gpu_tok *t);
int gpu_tok_vocab_size(const struct gpu_tok *t);
/* The end-of-text id ("<|endoftext|>"), or -1. */
int gpu_tok_eos(const struct gpu_tok *t);

/* *ret_ids is malloc'd (free it); *ret_n may be 0. */
int gpu_tok_encode(const struct gpu_tok *t, const char *text, size_t len, int32_t **ret_ids,
		   size_t *ret_n);
/* Appends the bytes of one token to buf (at most GPU_TOK_MAX_BYTES); returns their count, or
 * -EINVAL for an id outside the vocabulary. */
#define GPU_TOK_MAX_BYTES 256
int gpu_tok_decode1(const struct gpu_tok *t, int32_t id, char *buf);
/* The whole sequence as a malloc'd, NUL-terminated byte string (*ret_len without the NUL). */
int gpu_tok_decode(const struct gpu_tok *t, const int32_t *ids, size_t n, char **ret,
		   size_t *ret_len);

/* For exporters (GGUF): token id's string in the byte-level alphabet (bytes_to_unicode), and
 * merge rank r as "left right"; NULL when out of range. */
const char *gpu_tok_token(const struct gpu_tok *t, int32_t id);
int gpu_tok_n_merges(const struct gpu_tok *t);
const char *gpu_tok_merge(const struct gpu_tok *t, int rank);

#endif
