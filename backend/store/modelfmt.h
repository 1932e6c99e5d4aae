/* modelfmt: what a model file says about itself.
 *
 * Owns the parsing of three outside formats into one `struct mf_info`:
 *   - GGUF v2 and v3 (llama.cpp): metadata key/values, tensor infos, alignment;
 *   - safetensors: 8-byte little-endian header length, then a JSON header of
 *     dtypes, shapes and data_offsets;
 *   - a Hugging Face `config.json` (architecture, context length, dtype).
 *
 * Every input is hostile until proven otherwise.  The parsers work on a
 * *prefix* of the file, so the store can feed them the first bytes of a file
 * as a `cp` streams in:
 *   - `-EAGAIN`: the prefix is too short; `info->need` says how many bytes
 *     of the file the parser needs at least (always more than it was given,
 *     never more than the file size).  Callers should grow the prefix to at
 *     least `max(need, 2 * len)` so a large header costs O(size) in total.
 *   - `-EINVAL`: malformed or truncated (bad magic fields, sizes that do not
 *     add up, a header that ends past the end of the file);
 *   - `-EOVERFLOW`: a size, offset or element count overflows 64 bits or
 *     points past the end of the file;
 *   - `-E2BIG`: the header exceeds a limit below (header bytes, tensors,
 *     dimensions, name length, JSON depth or tokens);
 *   - `-ENOMSG`: not a model file at all (no known magic);
 *   - `-ENOMEM`.
 * Whatever the result, `info` is the verdict: `info->status` holds the
 * result and `info->error` a one-line human explanation, so a failed parse
 * still yields a summary ("stored as plain bytes: ...").  That is why,
 * unlike most of llmfs, the output is written on failure too.
 *
 * Memory is bounded by the limits below: at most MF_HEADER_MAX bytes are
 * ever requested, and allocations grow with the bytes actually parsed, never
 * with a count the file merely claims.
 *
 * Functions are pure (no globals, no I/O, no logging) and may be called from
 * any thread; one `struct mf_info` must not be shared between threads while
 * it is being parsed or released.
 */
#ifndef LLMFS_MODELFMT_H
#define LLMFS_MODELFMT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Limits for hostile input.  Real files stay far below them: a GGUF header
 * with a 256k-token vocabulary is ~10 MiB, a 2000-tensor safetensors header
 * ~300 KiB, a config.json a few KiB. */
#define MF_HEADER_MAX      (64u << 20)   /* bytes of GGUF header (vocabularies) */
#define MF_ST_HEADER_MAX   (16u << 20)   /* bytes of safetensors JSON header */
#define MF_CONFIG_MAX      (4u << 20)    /* bytes of config.json */
#define MF_TENSORS_MAX     (1u << 18)    /* tensors in one file */
#define MF_DIMS_MAX        8             /* GGML_MAX_DIMS is 4 */
#define MF_NAME_MAX        4096          /* bytes of a tensor name */
#define MF_JSON_DEPTH_MAX  32            /* nesting of JSON objects/arrays */
#define MF_JSON_TOKENS_MAX (1u << 20)    /* JSON values and separators */
#define MF_GGUF_ARRAY_DEPTH_MAX 4        /* GGUF arrays of arrays */

enum mf_format {
	MF_FORMAT_UNKNOWN = 0,
	MF_FORMAT_GGUF,
	MF_FORMAT_SAFETENSORS,
	MF_FORMAT_HF_CONFIG,
};

/* One enumeration for safetensors dtypes and GGML tensor types.  The GGML
 * quantised types keep their ggml order; `mf_dtype_name()` spells each. */
enum mf_dtype {
	MF_DTYPE_UNKNOWN = 0,
	MF_DTYPE_F64, MF_DTYPE_F32, MF_DTYPE_F16, MF_DTYPE_BF16,
	MF_DTYPE_F8_E4M3, MF_DTYPE_F8_E5M2,
	MF_DTYPE_I64, MF_DTYPE_I32, MF_DTYPE_I16, MF_DTYPE_I8,
	MF_DTYPE_U64, MF_DTYPE_U32, MF_DTYPE_U16, MF_DTYPE_U8, MF_DTYPE_BOOL,
	MF_DTYPE_Q4_0, MF_DTYPE_Q4_1, MF_DTYPE_Q5_0, MF_DTYPE_Q5_1,
	MF_DTYPE_Q8_0, MF_DTYPE_Q8_1,
	MF_DTYPE_Q2_K, MF_DTYPE_Q3_K, MF_DTYPE_Q4_K, MF_DTYPE_Q5_K,
	MF_DTYPE_Q6_K, MF_DTYPE_Q8_K,
	MF_DTYPE_IQ2_XXS, MF_DTYPE_IQ2_XS, MF_DTYPE_IQ3_XXS, MF_DTYPE_IQ1_S,
	MF_DTYPE_IQ4_NL, MF_DTYPE_IQ3_S, MF_DTYPE_IQ2_S, MF_DTYPE_IQ4_XS,
	MF_DTYPE_IQ1_M, MF_DTYPE_TQ1_0, MF_DTYPE_TQ2_0, MF_DTYPE_MXFP4,
	MF_DTYPE_NVFP4, MF_DTYPE_Q1_0,
	MF_DTYPE_COUNT
};

struct mf_tensor {
	const char *name;          /* NUL-terminated, points into the info */
	enum mf_dtype dtype;
	uint32_t n_dims;
	uint64_t shape[MF_DIMS_MAX];
	uint64_t n_elements;
	uint64_t offset;           /* absolute byte offset in the file */
	uint64_t size;             /* bytes */
};

struct mf_dtype_stat {
	uint64_t tensors;
	uint64_t bytes;
	uint64_t elements;
};

struct mf_info {
	int status;                /* 0, or the -errno mf_parse returned */
	char error[160];           /* why, when status != 0 */
	size_t need;               /* with -EAGAIN: prefix bytes needed */

	enum mf_format format;
	uint32_t version;          /* GGUF version */
	uint64_t file_size;
	uint64_t header_size;      /* bytes before the tensor data */
	uint64_t data_offset;      /* start of the tensor data region */
	uint32_t alignment;        /* GGUF general.alignment (default 32) */

	char architecture[64];     /* general.architecture, model_type, ... */
	char name[128];            /* general.name or _name_or_path */
	char arch_class[64];       /* config.json architectures[0] */
	char quant[32];            /* config quantization_config / file type */
	uint64_t context_length;   /* 0 when not stated */
	uint64_t n_params;         /* sum of tensor elements (config: 0) */
	uint64_t n_kv;             /* GGUF metadata pairs / safetensors __metadata__ */
	enum mf_dtype config_dtype; /* config.json torch_dtype */

	struct mf_dtype_stat dtypes[MF_DTYPE_COUNT];

	size_t n_tensors;
	struct mf_tensor *tensors; /* in header order */
	uint32_t *by_offset;       /* indices into tensors, sorted by offset */

	char *names;               /* arena holding tensor names */
	size_t names_len, names_cap;
	size_t tensors_cap;
};

/* For `file_size` while a file is still being written: the header is then
 * checked for consistency and -EAGAIN still says how much of it is needed,
 * but offsets are not yet checked against the end.  Parse again with the
 * real size when the file is complete (the header is buffered by then). */
#define MF_SIZE_UNKNOWN UINT64_MAX

void mf_info_init(struct mf_info *info);
void mf_info_release(struct mf_info *info);

/* Parses a prefix `buf[0..len)` of a file of `file_size` bytes: GGUF or
 * safetensors by magic, otherwise a JSON object is read as a Hugging Face
 * config.  Releases and reinitialises `info` first.  Returns 0 or a
 * -errno listed in the contract above; `info` holds the verdict either way. */
int mf_parse(const void *buf, size_t len, uint64_t file_size, struct mf_info *info);

/* The same, for one format only (no detection). */
int mf_parse_gguf(const void *buf, size_t len, uint64_t file_size, struct mf_info *info);
int mf_parse_safetensors(const void *buf, size_t len, uint64_t file_size,
			 struct mf_info *info);
int mf_parse_config(const void *buf, size_t len, uint64_t file_size, struct mf_info *info);

/* Copies the config.json facts the weights file does not state itself
 * (architecture, context length, name, quantisation) into `model`. */
void mf_info_merge_config(struct mf_info *model, const struct mf_info *config);

/* The sorted, de-duplicated absolute start offsets of the tensor data, for
 * tensor-aligned chunking.  `*ret_starts` is malloc'ed (free() it) and NULL
 * when there are none.  Returns the count or -ENOMEM. */
ssize_t mf_tensor_starts(const struct mf_info *info, uint64_t **ret_starts);

/* Like mf_tensor_starts(), but only the starts of tensors of at least
 * `min_bytes`: the cut points for a chunker whose chunks should not be
 * smaller than that.  Small tensors (norms, biases) then share a chunk with
 * what precedes them, while every large tensor still begins a chunk. */
ssize_t mf_tensor_cuts(const struct mf_info *info, uint64_t min_bytes, uint64_t **ret_cuts);

/* The dtype covering most of the bytes [start, end) of the file, or
 * MF_DTYPE_UNKNOWN when the range lies outside every tensor (headers,
 * padding).  O(log n + the tensors inside the range). */
enum mf_dtype mf_dtype_at(const struct mf_info *info, uint64_t start, uint64_t end);

/* The tensor containing absolute offset `off`, or NULL. */
const struct mf_tensor *mf_tensor_at(const struct mf_info *info, uint64_t off);

const char *mf_dtype_name(enum mf_dtype dtype);
const char *mf_format_name(enum mf_format format);
/* Byte-group width for the tensor-aware codec: 2 for 16-bit floats, 4 for
 * 32-bit floats, 0 when byte grouping does not apply (integers, quants). */
unsigned mf_dtype_group_width(enum mf_dtype dtype);
/* Whether the dtype is a block-quantised GGML type. */
int mf_dtype_is_quant(enum mf_dtype dtype);

/* The readable summary shown as a model's `.smip/info`: format,
 * architecture, parameters, context, dtypes with byte shares, or for a
 * failed parse a clear note that the file is stored as plain bytes and why.
 * `filename` may be NULL.  `*ret_text` is malloc'ed, NUL-terminated.
 * Returns its length or -ENOMEM. */
ssize_t mf_info_summary(const struct mf_info *info, const char *filename, char **ret_text);

/* The tensor index as text, one tensor a line:
 * "offset size dtype [shape] name".  Same return convention. */
ssize_t mf_info_tensor_list(const struct mf_info *info, char **ret_text);

#endif
