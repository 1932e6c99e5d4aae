/* gpu/data.h - training data: a text file tokenised once into a token file, and seeded batches.
 *
 * Token file: 16-byte header ("LLMFSTOK", u32 version 1, u32 vocab size, little-endian), then
 * one u16 per token.  Byte-level tokenisation writes vocab 256; the u16 leaves room for a BPE
 * vocabulary up to 65536 without a format change.  Files are written to a temporary name,
 * fsync'd and renamed, so a reader never sees half a file.
 *
 * Splits: the last val_fraction of the tokens is the validation split, the rest is training.
 *
 * Batches are a pure function of (seed, split, index): batch i of a run is the same whether the
 * run was interrupted or not, which is what makes resumed training exact.  A struct gpu_data is
 * read-only after gpu_data_open(), so any number of threads may draw batches from it.
 *
 * Errors: -errno from the file system, -EINVAL for a malformed file or a split shorter than one
 * sequence.
 */
#ifndef GPU_DATA_H
#define GPU_DATA_H

#include <stddef.h>
#include <stdint.h>

enum gpu_split {
	GPU_SPLIT_TRAIN,
	GPU_SPLIT_VAL,
};

struct gpu_data {
	const uint16_t *tokens;
	size_t n_tokens;
	size_t n_train;     /* tokens [0, n_train) train, [n_train, n_tokens) validate */
	int vocab_size;
	void *map;
	size_t map_len;
};

/* Byte-level: every byte of text_path becomes one token. */
int gpu_data_tokenize(const char *text_path, const char *token_path);
/* 1 when path starts with the token file magic, 0 when not, -errno when unreadable. */
int gpu_data_is_token_file(const char *path);

int gpu_data_open(struct gpu_data *d, const char *token_path, double val_fraction);
void gpu_data_release(struct gpu_data *d);

/* inputs, targets: (B, T); targets are inputs shifted by one token. */
int gpu_data_batch(const struct gpu_data *d, enum gpu_split split, uint64_t seed,
		   uint64_t index, int B, int T, int32_t *inputs, int32_t *targets);

/* Write path atomically: temp file in the same directory, fsync, rename, fsync the directory. */
int gpu_write_file_atomic(const char *path, const void *data, size_t len);

#endif
