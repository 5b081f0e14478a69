/* The tokenizer's tables: see tables.h. */
#include "core/tok/tables.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/utf8.h"

/* Unicode White_Space (25 code points), spelled out for PCRE2. */
#define WS                                                                                                   \
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"                                   \
    "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d"
                                   "| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
                                   "|[" WS "]+(?![^" WS "])|[" WS "]+";

/* ---------------------------------------------------- byte <-> unicode map */

void byte_unicode_tables(uint32_t b2u[256], int u2b[U2B_SIZE], uint8_t order[256])
{
    int n = 0, k = 0;
    for (int i = 0; i < U2B_SIZE; i++) u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) {
            b2u[b] = (uint32_t)b;
            order[k++] = (uint8_t)b;
        }
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (!printable) {
            b2u[b] = (uint32_t)(256 + n++);
            order[k++] = (uint8_t)b;
        }
    }
    for (int b = 0; b < 256; b++) u2b[b2u[b]] = b;
}

long unicode_to_bytes(const int u2b[U2B_SIZE], const char *s, size_t n, uint8_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    if (!utf8_valid(s, n)) return -1;
    while (i < n) {
        uint32_t cp;
        if (u[i] < 0x80) {
            cp = u[i];
            i += 1;
        } else if (u[i] < 0xE0) {
            cp = ((uint32_t)(u[i] & 0x1F) << 6) | (u[i + 1] & 0x3F);
            i += 2;
        } else
            return -1; /* 3- and 4-byte forms are >= U+0800 */
        if (cp >= U2B_SIZE || u2b[cp] < 0) return -1;
        out[o++] = (uint8_t)u2b[cp];
    }
    return (long)o;
}

/* ------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = tw_fnv1a(p, n, TW_FNV1A_INIT);
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) { return tw_mix64(x); }

/* ---------------------------------------------------------- string table */

void strtab_free(strtab *st)
{
    free(st->blob);
    free(st->off);
    free(st->len);
    free(st->slots);
    memset(st, 0, sizeof *st);
}

uint32_t strtab_find(const strtab *st, const uint8_t *p, size_t n)
{
    if (st->nslots == 0) return NO_ID;
    size_t mask = st->nslots - 1, i = (size_t)hash_bytes(p, n) & mask;
    for (;;) {
        uint32_t id = st->slots[i];
        if (id == NO_ID) return NO_ID;
        if (st->len[id] == n && memcmp(strtab_bytes(st, id), p, n) == 0) return id;
        i = (i + 1) & mask;
    }
}

static int strtab_rehash(strtab *st, size_t nslots)
{
    uint32_t *s = malloc(nslots * sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < nslots; i++) s[i] = NO_ID;
    for (size_t id = 0; id < st->n; id++) {
        if (st->len[id] == NO_ID) continue;
        size_t i = (size_t)hash_bytes(strtab_bytes(st, (uint32_t)id), st->len[id]) & (nslots - 1);
        while (s[i] != NO_ID) i = (i + 1) & (nslots - 1);
        s[i] = (uint32_t)id;
    }
    free(st->slots);
    st->slots = s;
    st->nslots = nslots;
    return 0;
}

/* Stores bytes p[0..n) as `id` (which must be missing, and not yet stored
 * under another id: callers check strtab_find first). 0 or -1 on OOM. */
int strtab_put(strtab *st, uint32_t id, const uint8_t *p, size_t n)
{
    if (id >= st->cap) {
        size_t cap = st->cap ? st->cap : 512;
        while (cap <= id) cap *= 2;
        size_t *off = realloc(st->off, cap * sizeof *off);
        if (!off) return -1;
        st->off = off;
        uint32_t *len = realloc(st->len, cap * sizeof *len);
        if (!len) return -1;
        st->len = len;
        st->cap = cap;
    }
    while (st->n <= id) st->len[st->n++] = NO_ID;
    if (st->blob_len + n > st->blob_cap) {
        size_t cap = st->blob_cap ? st->blob_cap : 4096;
        while (cap < st->blob_len + n) cap *= 2;
        uint8_t *b = realloc(st->blob, cap);
        if (!b) return -1;
        st->blob = b;
        st->blob_cap = cap;
    }
    if ((st->used + 1) * 2 > st->nslots && strtab_rehash(st, st->nslots ? st->nslots * 2 : 1024) != 0)
        return -1;
    if (n) memcpy(st->blob + st->blob_len, p, n);
    st->off[id] = st->blob_len;
    st->len[id] = (uint32_t)n;
    st->blob_len += n;
    size_t mask = st->nslots - 1, i = (size_t)hash_bytes(p, n) & mask;
    while (st->slots[i] != NO_ID) i = (i + 1) & mask;
    st->slots[i] = id;
    st->used++;
    return 0;
}

/* ------------------------------------------------------------- pair map */

void pairmap_free(pairmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int64_t *pairmap_find(const pairmap *m, uint64_t key)
{
    if (m->cap == 0) return NULL;
    size_t mask = m->cap - 1, i = (size_t)hash_u64(key) & mask;
    for (;;) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == UINT64_MAX) return NULL;
        i = (i + 1) & mask;
    }
}

/* Returns the value slot for key, inserting it with value `init` if absent;
 * NULL on OOM. */
int64_t *pairmap_get(pairmap *m, uint64_t key, int64_t init)
{
    int64_t *v = pairmap_find(m, key);
    if (v) return v;
    if ((m->used + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        uint64_t *k = malloc(cap * sizeof *k);
        int64_t *vv = malloc(cap * sizeof *vv);
        if (!k || !vv) {
            free(k);
            free(vv);
            return NULL;
        }
        for (size_t i = 0; i < cap; i++) k[i] = UINT64_MAX;
        for (size_t j = 0; j < m->cap; j++) {
            if (m->keys[j] == UINT64_MAX) continue;
            size_t i = (size_t)hash_u64(m->keys[j]) & (cap - 1);
            while (k[i] != UINT64_MAX) i = (i + 1) & (cap - 1);
            k[i] = m->keys[j];
            vv[i] = m->vals[j];
        }
        free(m->keys);
        free(m->vals);
        m->keys = k;
        m->vals = vv;
        m->cap = cap;
    }
    size_t mask = m->cap - 1, i = (size_t)hash_u64(key) & mask;
    while (m->keys[i] != UINT64_MAX) i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = init;
    m->used++;
    return &m->vals[i];
}

/* ----------------------------------------------------- pre-tokenization */

pcre2_code *tok_compile_pattern(char *err, size_t errlen)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        tw_set_err(err, errlen, "tokenizer: cannot compile pre-tokenization pattern at %zu: %s", (size_t)eo,
                   (const char *)msg);
        return NULL;
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreter if no JIT */
    return re;
}
