/* GPT-2 byte-level BPE tokenizer (exact): the GPT-2 pre-tokenization pattern
 * with Unicode letter/number classes, byte-to-unicode map, merge ranks.
 * A loaded tokenizer is immutable and safe to share between threads. */
#ifndef TW_TOKENIZER_H
#define TW_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* Loads vocab.json + merges.txt, or encoder.json + vocab.bpe, from `dir`.
 * NULL on failure with one line in err naming the file and the problem. */
tokenizer *tokenizer_load(const char *dir, char *err, size_t errlen);
void tokenizer_free(tokenizer *t);

int tokenizer_vocab_size(const tokenizer *t); /* number of ids (max id + 1) */
int tokenizer_eot(const tokenizer *t);        /* id of <|endoftext|>, or -1 */

/* A character-level tokenizer (nanoGPT's meta.pkl): id i is the string
 * strs[i] (lens[i] bytes, usually one UTF-8 character); text is encoded one
 * id per character. NULL with one line in err (`label` names the source). */
tokenizer *tokenizer_from_strings(const char *const *strs, const size_t *lens, int n, const char *label,
                                  char *err, size_t errlen);

/* True for a character-level tokenizer. */
int tokenizer_is_chars(const tokenizer *t);

/* For a character-level tokenizer: the byte offset of the first character
 * of text that is not in the vocabulary (its length in *char_len), or -1
 * when every one is (and always -1 for BPE, which encodes any text). */
long tokenizer_unknown_char(const tokenizer *t, const char *text, size_t len, size_t *char_len);

/* Encodes `len` bytes of UTF-8 text. BPE: invalid UTF-8 is first replaced by
 * U+FFFD, and the literal text "<|endoftext|>" becomes the special token.
 * Characters: one id per character. Returns the number of tokens and stores
 * a malloc'd array in *ids (caller frees; NULL when 0 tokens), -1 on
 * allocation failure (or an internal pattern-matcher error, or one pre-token
 * of 4 GiB or more), -2 when a character-level tokenizer meets a character
 * (or invalid UTF-8) it does not have. Thread-safe. */
long tokenizer_encode(const tokenizer *t, const char *text, size_t len, int32_t **ids);

/* The exact bytes of token `id` (not NUL-terminated), or NULL if id is out of
 * range. Points into the tokenizer; valid while it lives. */
const uint8_t *tokenizer_token_bytes(const tokenizer *t, int id, size_t *len);

/* Decodes ids[0..n) into the concatenation of their bytes: a malloc'd
 * NUL-terminated buffer in *out (caller frees; the bytes may hold NULs and
 * invalid UTF-8). Returns its length, -1 on allocation failure, -2 if an id
 * is out of range (then *out is NULL). */
long tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, char **out);

/* Token id of an exact byte string (a whole vocabulary entry), or -1. */
int tokenizer_lookup(const tokenizer *t, const uint8_t *bytes, size_t len);

/* Unicode version of the character tables (PCRE2's) behind \p{L} and \p{N}
 * in pre-tokenization, e.g. "14.0.0". Static string. */
const char *tokenizer_unicode_version(void);

#endif
