/* gpu/tokenizer.c - the byte vocabulary and GPT-2's byte-level BPE (see tokenizer.h).
 *
 * BPE state: tokens[id] (the byte-level string of each id), a hash from token string to id,
 * merges[rank] ("left right") and a hash from that string to its rank.  A piece of text is
 * encoded as in GPT-2's encoder.py: its characters are the initial symbols; the adjacent pair
 * of lowest rank is merged (leftmost first on ties) until no pair has a rank.  Every symbol is
 * a contiguous run of the piece, so a word is just its cut points. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "gpu/tokenizer.h"

/* GPT-2's pre-tokenizer (encoder.py) */
#define GPT2_PATTERN \
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* Open addressing, linear probing; keys are borrowed. */
struct strmap {
	const char **keys;
	int32_t *vals;
	size_t cap;   /* power of two, at least twice the entries */
};

struct gpu_tok {
	enum gpu_tok_kind kind;
	int n_tokens, n_merges, eos;
	char **tokens;
	char **merges;
	struct strmap vocab, ranks;
	pcre2_code *re;
	/* byte -> its character's UTF-8 (up to 2 bytes, NUL-terminated); code point -> byte */
	char b2u[256][3];
	int16_t u2b[512];
};

static uint64_t hash_str(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static int strmap_init(struct strmap *m, size_t n)
{
	m->cap = 16;
	while (m->cap < 2 * n + 2)
		m->cap <<= 1;
	m->keys = calloc(m->cap, sizeof(*m->keys));
	m->vals = calloc(m->cap, sizeof(*m->vals));
	return m->keys && m->vals ? 0 : -ENOMEM;
}

static void strmap_release(struct strmap *m)
{
	free(m->keys);
	free(m->vals);
}

/* 0, or -EEXIST when the key is there already (the first value stays). */
static int strmap_put(struct strmap *m, const char *key, int32_t val)
{
	size_t n = strlen(key), i = hash_str(key, n) & (m->cap - 1);

	while (m->keys[i]) {
		if (strcmp(m->keys[i], key) == 0)
			return -EEXIST;
		i = (i + 1) & (m->cap - 1);
	}
	m->keys[i] = key;
	m->vals[i] = val;
	return 0;
}

/* The value of the n bytes at key, or -1. */
static int32_t strmap_get(const struct strmap *m, const char *key, size_t n)
{
	size_t i = hash_str(key, n) & (m->cap - 1);

	while (m->keys[i]) {
		if (strncmp(m->keys[i], key, n) == 0 && m->keys[i][n] == '\0')
			return m->vals[i];
		i = (i + 1) & (m->cap - 1);
	}
	return -1;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * for the code points from 256 on, in byte order. */
static void byte_alphabet(struct gpu_tok *t)
{
	int extra = 0;

	for (int i = 0; i < 512; i++)
		t->u2b[i] = -1;
	for (int b = 0; b < 256; b++) {
		int cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174 ? b
										   : 256 + extra++;

		if (cp < 0x80) {
			t->b2u[b][0] = (char)cp;
			t->b2u[b][1] = '\0';
		} else {
			t->b2u[b][0] = (char)(0xc0 | (cp >> 6));
			t->b2u[b][1] = (char)(0x80 | (cp & 0x3f));
			t->b2u[b][2] = '\0';
		}
		t->u2b[cp] = (int16_t)b;
	}
}

void gpu_tok_free(struct gpu_tok *t)
{
	if (!t)
		return;
	if (t->tokens)
		for (int i = 0; i < t->n_tokens; i++)
			free(t->tokens[i]);
	if (t->merges)
		for (int i = 0; i < t->n_merges; i++)
			free(t->merges[i]);
	free(t->tokens);
	free(t->merges);
	strmap_release(&t->vocab);
	strmap_release(&t->ranks);
	pcre2_code_free(t->re);
	free(t);
}

int gpu_tok_new_bytes(struct gpu_tok **ret)
{
	struct gpu_tok *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->kind = GPU_TOK_BYTES;
	t->n_tokens = 256;
	t->eos = -1;
	byte_alphabet(t);
	*ret = t;
	return 0;
}

/* vocab: object token -> id, ids dense from 0. merges: strings "a b" or arrays [a, b]. */
static int bpe_build(struct gpu_tok **ret, json_t *vocab, json_t *merges)
{
	struct gpu_tok *t = calloc(1, sizeof(*t));
	const char *key;
	json_t *val;
	size_t nv = json_object_size(vocab), nm = json_array_size(merges), i;
	int errcode, r = -ENOMEM;
	PCRE2_SIZE erroff;

	if (!t)
		return -ENOMEM;
	t->kind = GPU_TOK_BPE;
	t->eos = -1;
	byte_alphabet(t);
	if (nv < 1 || nv > 1u << 20 || nm > 1u << 20) {
		r = -EINVAL;
		goto fail;
	}
	t->tokens = calloc(nv, sizeof(*t->tokens));
	t->merges = calloc(nm ? nm : 1, sizeof(*t->merges));
	if (!t->tokens || !t->merges || strmap_init(&t->vocab, nv) < 0 ||
	    strmap_init(&t->ranks, nm) < 0)
		goto fail;
	t->n_tokens = (int)nv;
	json_object_foreach(vocab, key, val) {
		json_int_t id = json_integer_value(val);

		if (!json_is_integer(val) || id < 0 || (size_t)id >= nv || t->tokens[id]) {
			r = -EINVAL;
			goto fail;
		}
		t->tokens[id] = strdup(key);
		if (!t->tokens[id])
			goto fail;
		if (strmap_put(&t->vocab, t->tokens[id], (int32_t)id) < 0) {
			r = -EINVAL;
			goto fail;
		}
	}
	json_array_foreach(merges, i, val) {
		const char *a = NULL, *b = NULL, *s = json_string_value(val);

		if (json_is_array(val) && json_array_size(val) == 2) {
			a = json_string_value(json_array_get(val, 0));
			b = json_string_value(json_array_get(val, 1));
		}
		if (s && strchr(s, ' ') == strrchr(s, ' ') && strchr(s, ' '))
			t->merges[i] = strdup(s);
		else if (a && b && asprintf(&t->merges[i], "%s %s", a, b) < 0)
			t->merges[i] = NULL;
		else if (!a || !b) {
			r = -EINVAL;
			goto fail;
		}
		if (!t->merges[i])
			goto fail;
		t->n_merges = (int)i + 1;
		/* a repeated merge keeps its first (best) rank */
		strmap_put(&t->ranks, t->merges[i], (int32_t)i);
	}
	t->eos = strmap_get(&t->vocab, "<|endoftext|>", strlen("<|endoftext|>"));
	t->re = pcre2_compile((PCRE2_SPTR)GPT2_PATTERN, PCRE2_ZERO_TERMINATED,
			      PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, NULL);
	if (!t->re)
		goto fail;
	*ret = t;
	return 0;
fail:
	gpu_tok_free(t);
	return r;
}

/* merges.txt: an optional "#version" line, then one "left right" per line. */
static json_t *read_merges(const char *path)
{
	FILE *f = fopen(path, "re");
	json_t *arr = json_array();
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f || !arr) {
		if (f)
			fclose(f);
		json_decref(arr);
		return NULL;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0 || strncmp(line, "#version", 8) == 0)
			continue;
		if (json_array_append_new(arr, json_stringn(line, (size_t)n)) < 0) {
			json_decref(arr);
			arr = NULL;
			break;
		}
	}
	free(line);
	fclose(f);
	return arr;
}

int gpu_tok_load_bpe(struct gpu_tok **ret, const char *vocab_json, const char *merges_txt)
{
	json_t *vocab, *merges;
	int r;

	vocab = json_load_file(vocab_json, 0, NULL);
	if (!vocab)
		return -EINVAL;
	merges = read_merges(merges_txt);
	if (!merges) {
		json_decref(vocab);
		return -EINVAL;
	}
	r = json_is_object(vocab) ? bpe_build(ret, vocab, merges) : -EINVAL;
	json_decref(merges);
	json_decref(vocab);
	return r;
}

int gpu_tok_load_json(struct gpu_tok **ret, const char *tokenizer_json)
{
	json_t *j = json_load_file(tokenizer_json, 0, NULL), *model, *vocab, *merges;
	const char *type;
	int r = -EINVAL;

	if (!j)
		return -EINVAL;
	model = json_object_get(j, "model");
	type = json_string_value(json_object_get(model, "type"));
	vocab = json_object_get(model, "vocab");
	merges = json_object_get(model, "merges");
	if (type && strcmp(type, "BPE") == 0 && json_is_object(vocab) && json_is_array(merges))
		r = bpe_build(ret, vocab, merges);
	json_decref(j);
	return r;
}

static bool exists(const char *dir, const char *name, char **ret_path)
{
	FILE *f;

	if (asprintf(ret_path, "%s/%s", dir, name) < 0) {
		*ret_path = NULL;
		return false;
	}
	f = fopen(*ret_path, "re");
	if (f)
		fclose(f);
	return f != NULL;
}

int gpu_tok_load_dir(struct gpu_tok **ret, const char *dir, int vocab_size)
{
	char *tj = NULL, *vj = NULL, *mt = NULL;
	struct gpu_tok *t = NULL;
	int r;

	if (exists(dir, "tokenizer.json", &tj))
		r = gpu_tok_load_json(&t, tj);
	else if (exists(dir, "vocab.json", &vj) && exists(dir, "merges.txt", &mt))
		r = gpu_tok_load_bpe(&t, vj, mt);
	else if (vocab_size == 256)
		r = gpu_tok_new_bytes(&t);
	else
		r = -ENOENT;
	free(tj);
	free(vj);
	free(mt);
	if (r == 0 && t->n_tokens > vocab_size) {
		gpu_tok_free(t);
		r = -EINVAL;
	}
	if (r == 0)
		*ret = t;
	return r;
}

enum gpu_tok_kind gpu_tok_kind(const struct gpu_tok *t)
{
	return t->kind;
}

int gpu_tok_vocab_size(const struct gpu_tok *t)
{
	return t->n_tokens;
}

int gpu_tok_eos(const struct gpu_tok *t)
{
	return t->eos;
}

/* ---- encoding ---- */

struct ids {
	int32_t *v;
	size_t n, cap;
};

static int ids_push(struct ids *a, int32_t id)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 64;
		int32_t *v = realloc(a->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = id;
	return 0;
}

/* The length of the UTF-8 sequence that starts with byte c (valid input). */
static size_t u8len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* One piece: bytes -> byte-level characters -> merges -> ids.  w and cut are scratch of
 * 2 * n + 1 bytes and n + 1 entries. */
static int bpe_piece(const struct gpu_tok *t, const char *p, size_t n, char *w, size_t *cut,
		     struct ids *out)
{
	size_t len = 0, ncut = 0;
	char pair[1024];

	for (size_t i = 0; i < n; i++) {
		const char *u = t->b2u[(unsigned char)p[i]];

		cut[ncut++] = len;
		while (*u)
			w[len++] = *u++;
	}
	cut[ncut] = len;
	/* symbols are w[cut[i], cut[i+1]) for i < ncut */
	while (ncut > 1) {
		int32_t best = -1;
		size_t at = 0;

		for (size_t i = 0; i + 1 < ncut; i++) {
			size_t la = cut[i + 1] - cut[i], lb = cut[i + 2] - cut[i + 1];
			int32_t rk;

			if (la + lb + 2 > sizeof(pair))
				continue;
			memcpy(pair, w + cut[i], la);
			pair[la] = ' ';
			memcpy(pair + la + 1, w + cut[i + 1], lb);
			rk = strmap_get(&t->ranks, pair, la + lb + 1);
			if (rk >= 0 && (best < 0 || rk < best)) {
				best = rk;
				at = i;
			}
		}
		if (best < 0)
			break;
		memmove(&cut[at + 1], &cut[at + 2], (ncut - at - 1) * sizeof(*cut));
		ncut--;
	}
	for (size_t i = 0; i < ncut; i++) {
		int32_t id = strmap_get(&t->vocab, w + cut[i], cut[i + 1] - cut[i]);

		if (id < 0) {
			/* a vocabulary without this symbol: fall back to its single characters,
			 * each of which GPT-2-style vocabularies hold */
			for (size_t j = cut[i]; j < cut[i + 1];) {
				size_t cl = u8len((unsigned char)w[j]);

				id = strmap_get(&t->vocab, w + j, cl);
				if (id < 0)
					return -EINVAL;
				if (ids_push(out, id) < 0)
					return -ENOMEM;
				j += cl;
			}
			continue;
		}
		if (ids_push(out, id) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int bpe_encode(const struct gpu_tok *t, const char *text, size_t len, struct ids *out)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
	char *w = malloc(2 * len + 1);
	size_t *cut = malloc((len + 1) * sizeof(*cut)), off = 0;
	int r = 0;

	if (!md || !w || !cut) {
		r = -ENOMEM;
		goto out;
	}
	while (off < len) {
		int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, off, 0, md, NULL);
		PCRE2_SIZE *ov;

		if (rc < 0) {
			r = rc == PCRE2_ERROR_NOMATCH ? 0 : -EINVAL;
			break;
		}
		ov = pcre2_get_ovector_pointer(md);
		if (ov[1] <= off) { /* an empty match cannot happen with this pattern */
			r = -EINVAL;
			break;
		}
		r = bpe_piece(t, text + ov[0], ov[1] - ov[0], w, cut, out);
		if (r < 0)
			break;
		off = ov[1];
	}
out:
	free(cut);
	free(w);
	pcre2_match_data_free(md);
	return r;
}

int gpu_tok_encode(const struct gpu_tok *t, const char *text, size_t len, int32_t **ret_ids,
		   size_t *ret_n)
{
	struct ids out = { NULL, 0, 0 };
	int r = 0;

	if (t->kind == GPU_TOK_BYTES) {
		for (size_t i = 0; i < len && r == 0; i++)
			r = ids_push(&out, (unsigned char)text[i]);
	} else if (utf8_check_n(text, len) < 0) {
		r = -EILSEQ;
	} else {
		r = bpe_encode(t, text, len, &out);
	}
	if (r < 0) {
		free(out.v);
		return r;
	}
	*ret_ids = out.v;
	*ret_n = out.n;
	return 0;
}

/* ---- decoding ---- */

int gpu_tok_decode1(const struct gpu_tok *t, int32_t id, char *buf)
{
	const unsigned char *s;
	int n = 0;

	if (id < 0 || id >= t->n_tokens)
		return -EINVAL;
	if (t->kind == GPU_TOK_BYTES) {
		buf[0] = (char)id;
		return 1;
	}
	s = (const unsigned char *)t->tokens[id];
	if (!s)
		return -EINVAL;
	while (*s && n < GPU_TOK_MAX_BYTES) {
		unsigned cp;

		if (s[0] < 0x80) {
			cp = s[0];
			s++;
		} else if ((s[0] & 0xe0) == 0xc0 && s[1]) {
			cp = (unsigned)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
			s += 2;
		} else {
			cp = 512; /* outside the byte alphabet */
			s += u8len(s[0]);
		}
		if (cp < 512 && t->u2b[cp] >= 0) {
			buf[n++] = (char)t->u2b[cp];
		} else {
			/* a token outside the byte alphabet (an added special token): its text */
			size_t l = strlen(t->tokens[id]);

			l = l < GPU_TOK_MAX_BYTES ? l : GPU_TOK_MAX_BYTES;
			memcpy(buf, t->tokens[id], l);
			return (int)l;
		}
	}
	return n;
}

int gpu_tok_decode(const struct gpu_tok *t, const int32_t *ids, size_t n, char **ret,
		   size_t *ret_len)
{
	char *buf = malloc(n * GPU_TOK_MAX_BYTES + 1);
	size_t len = 0;

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int r = gpu_tok_decode1(t, ids[i], buf + len);

		if (r < 0) {
			free(buf);
			return r;
		}
		len += (size_t)r;
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

const char *gpu_tok_token(const struct gpu_tok *t, int32_t id)
{
	if (id < 0 || id >= t->n_tokens)
		return NULL;
	return t->kind == GPU_TOK_BYTES ? t->b2u[id] : t->tokens[id];
}

int gpu_tok_n_merges(const struct gpu_tok *t)
{
	return t->n_merges;
}

const char *gpu_tok_merge(const struct gpu_tok *t, int rank)
{
	return rank >= 0 && rank < t->n_merges ? t->merges[rank] : NULL;
}
