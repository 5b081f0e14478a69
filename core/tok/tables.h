/* Internals shared by the tokenizer (tokenizer.c) and the synthetic
 * vocabulary builder (synth_vocab.c): GPT-2's byte <-> unicode alphabet, a
 * byte-string table with a hash index, a pair map, and the pre-tokenization
 * pattern. Not part of the core/tok interface. */
#ifndef TW_TOK_TABLES_H
#define TW_TOK_TABLES_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EOT_TEXT        "<|endoftext|>"
#define EOT_LEN         (sizeof(EOT_TEXT) - 1)
#define MAX_IDS         (1 << 24) /* loader limit on vocabulary ids */
#define MAX_TOKEN_BYTES 4096      /* loader limit on one token's length */
#define NO_ID           UINT32_MAX

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. b2u[byte] = code point;
 * u2b[cp] = byte or -1 for cp < 324. order[i] = the byte with vocabulary id
 * i in GPT-2's encoder.json (printable bytes first, then the others). */
#define U2B_SIZE 324
void byte_unicode_tables(uint32_t b2u[256], int u2b[U2B_SIZE], uint8_t order[256]);

/* Decodes UTF-8 text s[0..n) whose code points are all in the byte-level
 * alphabet into raw bytes out (capacity >= n). Returns the byte count, or -1
 * if s is not valid UTF-8 or holds a code point outside the alphabet. */
long unicode_to_bytes(const int u2b[U2B_SIZE], const char *s, size_t n, uint8_t *out);

static inline uint64_t pair_key(uint32_t a, uint32_t b) { return ((uint64_t)a << 32) | b; }

/* Byte strings indexed by id, with a hash index from bytes to id. Ids may
 * have gaps (len == NO_ID). */
typedef struct {
    uint8_t *blob;
    size_t blob_len, blob_cap;
    size_t *off;     /* (cap) start of id's bytes in blob */
    uint32_t *len;   /* (cap) byte length, NO_ID for a missing id */
    size_t n, cap;   /* ids in use (max id + 1), allocated */
    uint32_t *slots; /* (nslots) id or NO_ID; open addressing */
    size_t nslots, used;
} strtab;

void strtab_free(strtab *st);
static inline const uint8_t *strtab_bytes(const strtab *st, uint32_t id) { return st->blob + st->off[id]; }
/* The id of bytes p[0..n), or NO_ID. */
uint32_t strtab_find(const strtab *st, const uint8_t *p, size_t n);
/* Stores p[0..n) under id (which must be free). 0, or -1 on allocation failure. */
int strtab_put(strtab *st, uint32_t id, const uint8_t *p, size_t n);

/* uint64 key -> int64 value, open addressing; key UINT64_MAX is "empty"
 * (never a real key: ids are < 2^24). */
typedef struct {
    uint64_t *keys;
    int64_t *vals;
    size_t cap, used;
} pairmap;

void pairmap_free(pairmap *m);
/* The value of key, or NULL. */
int64_t *pairmap_find(const pairmap *m, uint64_t key);
/* The value of key, inserted as init when absent; NULL on allocation failure. */
int64_t *pairmap_get(pairmap *m, uint64_t key, int64_t init);

/* GPT-2's pre-tokenization pattern, compiled (JIT when available). NULL with
 * a message in err. */
pcre2_code *tok_compile_pattern(char *err, size_t errlen);

#endif
