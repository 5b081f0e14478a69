/* GPT-2 byte-level BPE tokenizer, exact.
 *
 * Encoding follows OpenAI's GPT-2 encoder:
 *   1. invalid UTF-8 is replaced by U+FFFD (utf8_sanitize);
 *   2. the text is split on the literal "<|endoftext|>" (special token, as
 *      tiktoken with allowed_special), each piece encoded separately;
 *   3. pre-tokenization with the GPT-2 pattern
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      (PCRE2, UTF + UCP). \s is spelled out as the Unicode White_Space
 *      property, which is what the Python `regex` module used by GPT-2 means
 *      by \s (PCRE2's own \s also accepts U+180E; JavaScript's also U+FEFF and
 *      not U+0085);
 *   4. byte-level BPE on each pre-token: repeatedly take the adjacent pair
 *      with the lowest merge rank and merge all its non-overlapping
 *      occurrences left to right, until no pair has a rank.
 *
 * Tokens are kept as raw bytes; the byte-to-unicode map of GPT-2 is only
 * used to read and write vocab.json / merges.txt.
 *
 * The BPE of one pre-token of n bytes costs O(n log n): symbols form a linked
 * list, candidate pairs sit in a min-heap keyed by (rank, position) with lazy
 * invalidation. All occurrences of the current lowest rank are merged before
 * the pairs they create are queued, which reproduces the reference's
 * "merge every occurrence of the best bigram, then recompute" exactly even
 * for merge tables where a newly created pair outranks the one just merged.
 */
#include "base/err.h"
#include "core/tok/tokenizer.h"
#include "base/utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <jansson.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EOT_TEXT "<|endoftext|>"
#define EOT_LEN (sizeof(EOT_TEXT) - 1)
#define MAX_IDS (1 << 24)          /* loader limit on vocabulary ids */
#define MAX_TOKEN_BYTES 4096       /* loader limit on one token's length */
#define NO_ID UINT32_MAX

/* Unicode White_Space (25 code points), spelled out for PCRE2. */
#define WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
           "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d"
    "| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
    "|[" WS "]+(?![^" WS "])|[" WS "]+";

/* ---------------------------------------------------------------- errors */

/* ---------------------------------------------------- byte <-> unicode map */

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. b2u[byte] = code point;
 * u2b[cp] = byte or -1 for cp < 324. order[i] = the byte with vocabulary id
 * i in GPT-2's encoder.json (printable bytes first, then the others). */
#define U2B_SIZE 324
static void byte_unicode_tables(uint32_t b2u[256], int u2b[U2B_SIZE], uint8_t order[256])
{
    int n = 0, k = 0;
    for (int i = 0; i < U2B_SIZE; i++) u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) { b2u[b] = (uint32_t)b; order[k++] = (uint8_t)b; }
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (!printable) { b2u[b] = (uint32_t)(256 + n++); order[k++] = (uint8_t)b; }
    }
    for (int b = 0; b < 256; b++) u2b[b2u[b]] = b;
}

/* Decodes UTF-8 text s[0..n) whose code points are all in the byte-level
 * alphabet into raw bytes out (capacity >= n). Returns the byte count, or -1
 * if s is not valid UTF-8 or holds a code point outside the alphabet. */
static long unicode_to_bytes(const int u2b[U2B_SIZE], const char *s, size_t n, uint8_t *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, o = 0;
    if (!utf8_valid(s, n)) return -1;
    while (i < n) {
        uint32_t cp;
        if (u[i] < 0x80) { cp = u[i]; i += 1; }
        else if (u[i] < 0xE0) { cp = ((uint32_t)(u[i] & 0x1F) << 6) | (u[i + 1] & 0x3F); i += 2; }
        else return -1;                       /* 3- and 4-byte forms are >= U+0800 */
        if (cp >= U2B_SIZE || u2b[cp] < 0) return -1;
        out[o++] = (uint8_t)u2b[cp];
    }
    return (long)o;
}

/* ------------------------------------------------------------ hashing */

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;      /* FNV-1a */
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ULL; }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL;   /* murmur3 finalizer */
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t pair_key(uint32_t a, uint32_t b) { return ((uint64_t)a << 32) | b; }

/* ---------------------------------------------------------- string table */

/* Byte strings indexed by id, with a hash index from bytes to id. Ids may
 * have gaps (len == NO_ID). */
typedef struct {
    uint8_t *blob; size_t blob_len, blob_cap;
    size_t *off;          /* (cap) start of id's bytes in blob */
    uint32_t *len;        /* (cap) byte length, NO_ID for a missing id */
    size_t n, cap;        /* ids in use (max id + 1), allocated */
    uint32_t *slots;      /* (nslots) id or NO_ID; open addressing */
    size_t nslots, used;
} strtab;

static void strtab_free(strtab *st)
{
    free(st->blob); free(st->off); free(st->len); free(st->slots);
    memset(st, 0, sizeof *st);
}

static const uint8_t *strtab_bytes(const strtab *st, uint32_t id) { return st->blob + st->off[id]; }

static uint32_t strtab_find(const strtab *st, const uint8_t *p, size_t n)
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
static int strtab_put(strtab *st, uint32_t id, const uint8_t *p, size_t n)
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
    if ((st->used + 1) * 2 > st->nslots &&
        strtab_rehash(st, st->nslots ? st->nslots * 2 : 1024) != 0) return -1;
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

/* uint64 key -> int64 value, open addressing; key UINT64_MAX is "empty"
 * (never a real key: ids are < 2^24). */
typedef struct { uint64_t *keys; int64_t *vals; size_t cap, used; } pairmap;

static void pairmap_free(pairmap *m) { free(m->keys); free(m->vals); memset(m, 0, sizeof *m); }

static int64_t *pairmap_find(const pairmap *m, uint64_t key)
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
static int64_t *pairmap_get(pairmap *m, uint64_t key, int64_t init)
{
    int64_t *v = pairmap_find(m, key);
    if (v) return v;
    if ((m->used + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        uint64_t *k = malloc(cap * sizeof *k);
        int64_t *vv = malloc(cap * sizeof *vv);
        if (!k || !vv) { free(k); free(vv); return NULL; }
        for (size_t i = 0; i < cap; i++) k[i] = UINT64_MAX;
        for (size_t j = 0; j < m->cap; j++) {
            if (m->keys[j] == UINT64_MAX) continue;
            size_t i = (size_t)hash_u64(m->keys[j]) & (cap - 1);
            while (k[i] != UINT64_MAX) i = (i + 1) & (cap - 1);
            k[i] = m->keys[j];
            vv[i] = m->vals[j];
        }
        free(m->keys); free(m->vals);
        m->keys = k; m->vals = vv; m->cap = cap;
    }
    size_t mask = m->cap - 1, i = (size_t)hash_u64(key) & mask;
    while (m->keys[i] != UINT64_MAX) i = (i + 1) & mask;
    m->keys[i] = key;
    m->vals[i] = init;
    m->used++;
    return &m->vals[i];
}

/* ------------------------------------------------------------ tokenizer */

typedef struct { uint32_t left, right, result; } merge_rule;

struct tokenizer {
    strtab vocab;            /* id -> bytes, bytes -> id */
    merge_rule *merges;      /* (n_merges) indexed by rank */
    size_t n_merges;
    pairmap ranks;           /* pair_key(left, right) -> rank */
    uint32_t byte_id[256];   /* id of each single-byte token */
    int eot;                 /* id of <|endoftext|>, or -1 */
    pcre2_code *re;          /* compiled pre-tokenization pattern */
};

static pcre2_code *compile_pattern(char *err, size_t errlen)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        tw_set_err(err, errlen, "tokenizer: cannot compile pre-tokenization pattern at %zu: %s",
                (size_t)eo, (const char *)msg);
        return NULL;
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* interpreter if no JIT */
    return re;
}

void tokenizer_free(tokenizer *t)
{
    if (!t) return;
    strtab_free(&t->vocab);
    free(t->merges);
    pairmap_free(&t->ranks);
    pcre2_code_free(t->re);
    free(t);
}

/* Reads a whole file into a malloc'd buffer (NUL-terminated). NULL with a
 * message on failure. */
static char *read_whole_file(const char *path, size_t *n, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) { tw_set_err(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - 1 - len, f);
        len += r;
        if (r == 0) break;
    }
    if (!buf) { fclose(f); tw_set_err(err, errlen, "%s: out of memory", path); return NULL; }
    if (ferror(f)) {
        tw_set_err(err, errlen, "%s: read error: %s", path, strerror(errno));
        fclose(f); free(buf);
        return NULL;
    }
    fclose(f);
    buf[len] = '\0';
    *n = len;
    return buf;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Shows a token safely in an error message (which must stay valid UTF-8 on
 * one line): control and invalid bytes as \xNN, long tokens cut with "...".
 * outlen >= 16. */
static void quote_token(char *out, size_t outlen, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < n && o + 8 < outlen) {
        size_t l = u[i] < 0x80 ? 1 : u[i] >= 0xC2 && u[i] <= 0xDF ? 2
                 : u[i] >= 0xE0 && u[i] <= 0xEF ? 3 : u[i] >= 0xF0 && u[i] <= 0xF4 ? 4 : 0;
        bool ok = l > 0 && i + l <= n && utf8_valid(s + i, l) && !(l == 1 && (u[i] < 0x20 || u[i] == 0x7F));
        if (ok && o + l + 8 < outlen) {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        } else if (ok) {
            break;
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02X", u[i]);
            i++;
        }
    }
    if (i < n) { memcpy(out + o, "...", 3); o += 3; }
    out[o] = '\0';
}

static int load_vocab(tokenizer *t, const char *path, const int u2b[U2B_SIZE],
                      char *err, size_t errlen)
{
    size_t n;
    char *buf = read_whole_file(path, &n, err, errlen);
    if (!buf) return -1;
    json_error_t jerr;
    json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root) {
        tw_set_err(err, errlen, "%s: invalid JSON at line %d column %d: %s", path, jerr.line,
                jerr.column, jerr.text);
        return -1;
    }
    if (!json_is_object(root) || json_object_size(root) == 0) {
        tw_set_err(err, errlen, "%s: expected a non-empty JSON object mapping token to id", path);
        json_decref(root);
        return -1;
    }
    int rc = -1;
    uint8_t tmp[MAX_TOKEN_BYTES];
    char shown[64];
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
#if JANSSON_VERSION_HEX >= 0x020E00
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
#else
        size_t klen = strlen(key);
#endif
        quote_token(shown, sizeof shown, key, klen);
        if (!json_is_integer(val)) {
            tw_set_err(err, errlen, "%s: id of token \"%s\" is not an integer", path, shown);
            goto done;
        }
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= MAX_IDS) {
            tw_set_err(err, errlen, "%s: id %lld of token \"%s\" is out of range 0..%d", path,
                    (long long)id, shown, MAX_IDS - 1);
            goto done;
        }
        if (klen == 0 || klen > MAX_TOKEN_BYTES) {
            tw_set_err(err, errlen, "%s: token with id %lld has length %zu (allowed 1..%d)", path,
                    (long long)id, klen, MAX_TOKEN_BYTES);
            goto done;
        }
        long blen = unicode_to_bytes(u2b, key, klen, tmp);
        if (blen < 0) {
            tw_set_err(err, errlen, "%s: token \"%s\" (id %lld) has characters outside GPT-2's "
                    "byte-level alphabet", path, shown, (long long)id);
            goto done;
        }
        if ((size_t)id < t->vocab.n && t->vocab.len[id] != NO_ID) {
            tw_set_err(err, errlen, "%s: id %lld is used by two tokens (\"%s\" and another)", path,
                    (long long)id, shown);
            goto done;
        }
        if (strtab_find(&t->vocab, tmp, (size_t)blen) != NO_ID) {
            tw_set_err(err, errlen, "%s: token \"%s\" appears twice", path, shown);
            goto done;
        }
        if (strtab_put(&t->vocab, (uint32_t)id, tmp, (size_t)blen) != 0) {
            tw_set_err(err, errlen, "%s: out of memory", path);
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* Parses one merges-file token (unicode form) into an id. */
static uint32_t merge_part_id(const tokenizer *t, const int u2b[U2B_SIZE], const char *s,
                              size_t n, uint8_t *tmp)
{
    if (n == 0 || n > MAX_TOKEN_BYTES) return NO_ID;
    long b = unicode_to_bytes(u2b, s, n, tmp);
    if (b < 0) return NO_ID;
    return strtab_find(&t->vocab, tmp, (size_t)b);
}

static int load_merges(tokenizer *t, const char *path, const int u2b[U2B_SIZE],
                       char *err, size_t errlen)
{
    size_t n;
    char *buf = read_whole_file(path, &n, err, errlen);
    if (!buf) return -1;
    int rc = -1;
    size_t cap = 0, pos = 0, lineno = 0;
    uint8_t *tmp = malloc(2 * MAX_TOKEN_BYTES);
    char shown[64];
    if (!tmp) { tw_set_err(err, errlen, "%s: out of memory", path); goto done; }
    while (pos < n) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', n - pos);
        size_t ll = nl ? (size_t)(nl - line) : n - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        if (ll && line[ll - 1] == '\r') ll--;
        if (ll == 0) continue;
        if (lineno == 1 && line[0] == '#') continue;            /* "#version: 0.2" */
        const char *sp = memchr(line, ' ', ll);
        if (!sp || sp == line || sp == line + ll - 1 || memchr(sp + 1, ' ', (size_t)(line + ll - sp - 1))) {
            quote_token(shown, sizeof shown, line, ll);
            tw_set_err(err, errlen, "%s: line %zu: expected two tokens separated by one space, "
                    "got \"%s\"", path, lineno, shown);
            goto done;
        }
        size_t la = (size_t)(sp - line), lb = ll - la - 1;
        uint32_t a = merge_part_id(t, u2b, line, la, tmp);
        uint32_t b = merge_part_id(t, u2b, sp + 1, lb, tmp);
        if (a == NO_ID || b == NO_ID) {
            quote_token(shown, sizeof shown, a == NO_ID ? line : sp + 1, a == NO_ID ? la : lb);
            tw_set_err(err, errlen, "%s: line %zu: token \"%s\" is not in the vocabulary", path,
                    lineno, shown);
            goto done;
        }
        size_t na = t->vocab.len[a], nb = t->vocab.len[b];
        memcpy(tmp, strtab_bytes(&t->vocab, a), na);
        memcpy(tmp + na, strtab_bytes(&t->vocab, b), nb);
        uint32_t r = strtab_find(&t->vocab, tmp, na + nb);
        if (r == NO_ID) {
            quote_token(shown, sizeof shown, line, ll);
            tw_set_err(err, errlen, "%s: line %zu: the merge of \"%s\" is not in the vocabulary",
                    path, lineno, shown);
            goto done;
        }
        if (t->n_merges == cap) {
            cap = cap ? cap * 2 : 1024;
            merge_rule *m = realloc(t->merges, cap * sizeof *m);
            if (!m) { tw_set_err(err, errlen, "%s: out of memory", path); goto done; }
            t->merges = m;
        }
        if (t->n_merges >= UINT32_MAX - 1) {
            tw_set_err(err, errlen, "%s: too many merges", path);
            goto done;
        }
        /* A repeated pair takes the later rank, as dict(zip(merges, ranks)). */
        int64_t *slot = pairmap_get(&t->ranks, pair_key(a, b), 0);
        if (!slot) { tw_set_err(err, errlen, "%s: out of memory", path); goto done; }
        *slot = (int64_t)t->n_merges;
        t->merges[t->n_merges++] = (merge_rule){ a, b, r };
    }
    rc = 0;
done:
    free(tmp);
    free(buf);
    return rc;
}

tokenizer *tokenizer_load(const char *dir, char *err, size_t errlen)
{
    if (!dir) { tw_set_err(err, errlen, "tokenizer: no directory given"); return NULL; }
    size_t dl = strlen(dir);
    char *vpath = malloc(dl + 16), *mpath = malloc(dl + 16);
    tokenizer *t = calloc(1, sizeof *t);
    if (!vpath || !mpath || !t) {
        tw_set_err(err, errlen, "tokenizer: out of memory");
        goto fail;
    }
    snprintf(vpath, dl + 16, "%s/vocab.json", dir);
    snprintf(mpath, dl + 16, "%s/merges.txt", dir);
    struct stat st;
    if (stat(dir, &st) != 0) {
        tw_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        tw_set_err(err, errlen, "%s: not a directory", dir);
        goto fail;
    }
    if (!file_exists(vpath)) {
        char *alt_v = malloc(dl + 16), *alt_m = malloc(dl + 16);
        if (!alt_v || !alt_m) {
            free(alt_v); free(alt_m);
            tw_set_err(err, errlen, "tokenizer: out of memory");
            goto fail;
        }
        snprintf(alt_v, dl + 16, "%s/encoder.json", dir);
        snprintf(alt_m, dl + 16, "%s/vocab.bpe", dir);
        if (file_exists(alt_v)) {
            free(vpath); free(mpath);
            vpath = alt_v; mpath = alt_m;
        } else {
            free(alt_v); free(alt_m);
            tw_set_err(err, errlen, "%s: no tokenizer files (vocab.json + merges.txt or "
                    "encoder.json + vocab.bpe)", dir);
            goto fail;
        }
    }
    t->eot = -1;
    uint32_t b2u[256];
    int u2b[U2B_SIZE];
    uint8_t order[256];
    byte_unicode_tables(b2u, u2b, order);
    if (load_vocab(t, vpath, u2b, err, errlen) != 0) goto fail;
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = strtab_find(&t->vocab, &c, 1);
        if (t->byte_id[b] == NO_ID) {
            tw_set_err(err, errlen, "%s: no token for byte 0x%02X (all 256 byte tokens are required)",
                    vpath, b);
            goto fail;
        }
    }
    uint32_t e = strtab_find(&t->vocab, (const uint8_t *)EOT_TEXT, EOT_LEN);
    t->eot = e == NO_ID ? -1 : (int)e;
    if (load_merges(t, mpath, u2b, err, errlen) != 0) goto fail;
    t->re = compile_pattern(err, errlen);
    if (!t->re) goto fail;
    free(vpath); free(mpath);
    return t;
fail:
    free(vpath); free(mpath);
    tokenizer_free(t);
    return NULL;
}

static char unicode_version[32] = "unknown";

static void unicode_version_init(void)
{
    char buf[sizeof unicode_version];
    if (pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, buf) > 0 && (size_t)pcre2_config(
            PCRE2_CONFIG_UNICODE_VERSION, NULL) <= sizeof buf)
        memcpy(unicode_version, buf, sizeof buf);
}

const char *tokenizer_unicode_version(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, unicode_version_init);
    return unicode_version;
}

int tokenizer_vocab_size(const tokenizer *t) { return (int)t->vocab.n; }
int tokenizer_eot(const tokenizer *t) { return t->eot; }

const uint8_t *tokenizer_token_bytes(const tokenizer *t, int id, size_t *len)
{
    if (id < 0 || (size_t)id >= t->vocab.n || t->vocab.len[id] == NO_ID) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->vocab.len[id];
    return strtab_bytes(&t->vocab, (uint32_t)id);
}

int tokenizer_lookup(const tokenizer *t, const uint8_t *bytes, size_t len)
{
    if (!bytes && len) return -1;
    uint32_t id = strtab_find(&t->vocab, bytes ? bytes : (const uint8_t *)"", len);
    return id == NO_ID ? -1 : (int)id;
}

long tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, char **out)
{
    *out = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        if (!tokenizer_token_bytes(t, ids[i], &l)) return -2;
        total += l;
    }
    char *s = malloc(total + 1);
    if (!s) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const uint8_t *b = tokenizer_token_bytes(t, ids[i], &l);
        memcpy(s + o, b, l);
        o += l;
    }
    s[o] = '\0';
    *out = s;
    return (long)o;
}

/* ----------------------------------------------------------------- encode */

typedef struct { int32_t *v; size_t n, cap; } idbuf;

static int idbuf_push(idbuf *b, uint32_t id)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) return -1;
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = (int32_t)id;
    return 0;
}

/* Per-call scratch for bpe_piece, grown to the longest pre-token. */
typedef struct {
    uint32_t *sym;        /* (cap) token id at each position, NO_ID when merged away */
    uint32_t *prev, *next;/* (cap) linked list over live positions, NO_ID at the ends */
    uint32_t *merged;     /* (cap) positions merged in the current rank */
    size_t cap;
    uint64_t *heap;       /* (hcap) (rank << 32) | position, min-heap */
    size_t hn, hcap;
} bpe_scratch;

static void scratch_free(bpe_scratch *s)
{
    free(s->sym); free(s->prev); free(s->next); free(s->merged); free(s->heap);
    memset(s, 0, sizeof *s);
}

static int scratch_reserve(bpe_scratch *s, size_t n)
{
    if (n <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    uint32_t *a = realloc(s->sym, cap * sizeof *a);
    if (!a) return -1;
    s->sym = a;
    if (!(a = realloc(s->prev, cap * sizeof *a))) return -1;
    s->prev = a;
    if (!(a = realloc(s->next, cap * sizeof *a))) return -1;
    s->next = a;
    if (!(a = realloc(s->merged, cap * sizeof *a))) return -1;
    s->merged = a;
    s->cap = cap;
    return 0;
}

static int heap_push(bpe_scratch *s, uint64_t v)
{
    if (s->hn == s->hcap) {
        size_t cap = s->hcap ? s->hcap * 2 : 256;
        uint64_t *h = realloc(s->heap, cap * sizeof *h);
        if (!h) return -1;
        s->heap = h;
        s->hcap = cap;
    }
    size_t i = s->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p] <= v) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = v;
    return 0;
}

/* Moves v down from slot i of the heap's first n entries to its place. */
static void heap_sift_down(uint64_t *h, size_t n, size_t i, uint64_t v)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static uint64_t heap_pop(bpe_scratch *s)
{
    uint64_t top = s->heap[0], v = s->heap[--s->hn];
    if (s->hn) heap_sift_down(s->heap, s->hn, 0, v);
    return top;
}

/* Queues the pair starting at live position p, if it has a merge rank. */
static int queue_pair(const tokenizer *t, bpe_scratch *s, uint32_t p)
{
    uint32_t q = s->next[p];
    if (q == NO_ID) return 0;
    const int64_t *r = pairmap_find(&t->ranks, pair_key(s->sym[p], s->sym[q]));
    if (!r) return 0;
    return heap_push(s, ((uint64_t)*r << 32) | p);
}

/* BPE of one pre-token p[0..n) (n >= 1), appending its ids to out. */
static int bpe_piece(const tokenizer *t, const uint8_t *p, size_t n, bpe_scratch *s, idbuf *out)
{
    if (n == 1) return idbuf_push(out, t->byte_id[p[0]]);
    if (n >= NO_ID || scratch_reserve(s, n) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        s->sym[i] = t->byte_id[p[i]];
        s->prev[i] = i ? (uint32_t)(i - 1) : NO_ID;
        s->next[i] = i + 1 < n ? (uint32_t)(i + 1) : NO_ID;
    }
    /* all adjacent pairs with a rank, then heapify in O(n) */
    if (s->hcap < n) {
        uint64_t *h = realloc(s->heap, n * sizeof *h);
        if (!h) return -1;
        s->heap = h;
        s->hcap = n;
    }
    s->hn = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const int64_t *r = pairmap_find(&t->ranks, pair_key(s->sym[i], s->sym[i + 1]));
        if (r) s->heap[s->hn++] = ((uint64_t)*r << 32) | i;
    }
    for (size_t i = s->hn / 2; i-- > 0;) heap_sift_down(s->heap, s->hn, i, s->heap[i]);
    while (s->hn) {
        /* Merge every occurrence of the lowest-ranked pair, left to right
         * (heap order within one rank is by position), then queue the pairs
         * the merged symbols form with their neighbours. */
        uint32_t rank = (uint32_t)(s->heap[0] >> 32);
        const merge_rule *m = &t->merges[rank];
        size_t nm = 0;
        while (s->hn && (uint32_t)(s->heap[0] >> 32) == rank) {
            uint32_t a = (uint32_t)heap_pop(s);
            uint32_t b = s->next[a];
            if (s->sym[a] != m->left || b == NO_ID || s->sym[b] != m->right) continue;  /* stale */
            s->sym[a] = m->result;
            s->sym[b] = NO_ID;
            s->next[a] = s->next[b];
            if (s->next[b] != NO_ID) s->prev[s->next[b]] = a;
            s->merged[nm++] = a;
        }
        for (size_t k = 0; k < nm; k++) {
            uint32_t a = s->merged[k], p = s->prev[a];
            /* (p, a) was already queued as (merged[k-1], next) if p merged too */
            bool p_queued = k > 0 && s->merged[k - 1] == p;
            if (p != NO_ID && !p_queued && queue_pair(t, s, p) != 0) return -1;
            if (queue_pair(t, s, a) != 0) return -1;
        }
    }
    for (uint32_t i = 0; i != NO_ID; i = s->next[i])
        if (idbuf_push(out, s->sym[i]) != 0) return -1;
    return 0;
}

/* Pre-tokenizes and encodes text[0..len) (valid UTF-8, no special tokens). */
static int encode_ordinary(const tokenizer *t, const char *text, size_t len,
                           pcre2_match_data *md, bpe_scratch *s, idbuf *out)
{
    size_t off = 0;
    while (off < len) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, off, PCRE2_NO_UTF_CHECK, md, NULL);
        size_t a, b;
        if (rc == PCRE2_ERROR_NOMATCH) {
            a = off; b = len;     /* unreachable: every character matches some branch */
        } else if (rc < 0) {
            return -1;
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            a = ov[0]; b = ov[1];
            if (b <= off) return -1;   /* the pattern has no empty matches */
        }
        if (a > off && bpe_piece(t, (const uint8_t *)text + off, a - off, s, out) != 0) return -1;
        if (bpe_piece(t, (const uint8_t *)text + a, b - a, s, out) != 0) return -1;
        off = b;
    }
    return 0;
}

long tokenizer_encode(const tokenizer *t, const char *text, size_t len, int32_t **ids)
{
    *ids = NULL;
    if (len == 0) return 0;
    char *clean = NULL;
    if (!utf8_valid(text, len)) {
        clean = utf8_sanitize(text, len, &len);
        if (!clean) return -1;
        text = clean;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
    bpe_scratch s = { 0 };
    idbuf out = { 0 };
    int rc = md ? 0 : -1;
    size_t pos = 0;
    while (rc == 0 && pos < len) {
        const char *e = NULL;
        if (t->eot >= 0) e = memmem(text + pos, len - pos, EOT_TEXT, EOT_LEN);
        size_t end = e ? (size_t)(e - text) : len;
        if (end > pos) rc = encode_ordinary(t, text + pos, end - pos, md, &s, &out);
        if (rc == 0 && e) rc = idbuf_push(&out, (uint32_t)t->eot);
        pos = e ? end + EOT_LEN : len;
    }
    pcre2_match_data_free(md);
    scratch_free(&s);
    free(clean);
    if (rc != 0 || out.n > (size_t)LONG_MAX) { free(out.v); return -1; }
    *ids = out.v;
    return (long)out.n;
}

/* ------------------------------------------------------ synthetic vocabulary */

/* A small built-in English corpus for the synthetic vocabulary (written for
 * this project). */
static const char *const synth_corpus[] = {
    "The sun came up over the hills, and the people of the town went to work.",
    "It was a long day, but the team finished the work before the night came.",
    "She said that the school would open again in the spring of next year.",
    "He asked me if I had ever seen a house like that one on the hill.",
    "We have been here for a week, and we still don't know the way to the city.",
    "They were not sure what to do, so they waited for the others to come back.",
    "What is the best way to learn a new language when you are busy with a job?",
    "I think that the government should spend more money on health and education.",
    "My mother and father met at a small party in the house of a friend.",
    "The children played in the water while their parents talked about the weather.",
    "There is a book on the table, and there are two more in the other room.",
    "You can find the answer to that question in the first part of the story.",
    "This is the first time that the company has lost money in a single month.",
    "Every morning he reads the news before he leaves for the office.",
    "The president of the country spoke to the members of the party for an hour.",
    "Our family lived in a small village near the sea for many years.",
    "When the game was over, the players shook hands and walked off the field.",
    "If you want to change the world, you should start with your own life.",
    "The teacher told the students to read the next chapter before Monday.",
    "Most of the time the city is quiet, but on weekends it is full of life.",
    "A good idea can come from anyone, at any moment, in any place.",
    "The research group found a new result that nobody had expected.",
    "People often say that time is money, but time is worth much more than that.",
    "After the war, the history of the region changed in many important ways.",
    "The man and the woman sat by the door and watched the car go by.",
    "It's not easy to explain, but I'll try to make it clear to you.",
    "We're going to need a bigger boat if we want to cross the lake.",
    "They've never been to the north of the country, but they'd like to go.",
    "I'm sure you'd enjoy the show; it's one of the best we've seen.",
    "The kid lost his ball in the park, and his friend helped him look for it.",
    "Information about the program is available on the community web site.",
    "The business will have to face the problem of rising costs this year.",
    "Each word in the list has a meaning, and some words have several.",
    "She turned her head and looked at the girl who was standing by the window.",
    "The law says that every person has the right to a fair trial.",
    "There was a lot of noise in the street, so we closed the windows.",
    "He put his hand on the table and said nothing for a long minute.",
    "The water in the river was cold and clear, and the air smelled of rain.",
    "In the end, the members of the group agreed to meet again next week.",
    "The service at the restaurant was slow, but the food was very good.",
    "Most students go home for the holidays, but a few stay at the school.",
    "The body needs food, water, sleep and exercise to stay strong and healthy.",
    "She has worked in the same office for ten years and knows everyone there.",
    "Art can show us the world in a way that words cannot.",
    "The guy at the front desk gave us the key to our room on the third floor.",
    "A child asked his father why the sky is blue and the grass is green.",
    "We talked about the reason for the change and what it would mean for us.",
    "On the other side of the road there was a field with horses and cows.",
    "What kind of music do you like to listen to when you are working?",
    "The level of the water rose quickly after three days of heavy rain.",
    "There are many different kinds of trees in the forest behind the house.",
    "Nobody knew the name of the old man who lived at the end of the street.",
    "The system works well most of the time, but it fails when the load is high.",
    "I would like to thank all of you for your help with this project.",
    "The power went out during the storm, and the whole city was dark.",
    "He wrote a letter to his brother and sent it on the first day of the month.",
    "Our first car was small and old, but it took us everywhere we wanted to go.",
    "The number of people who live in cities grows every year.",
    "They sold the house and moved to a smaller place near the water.",
    "It is important to eat well, to sleep enough and to move every day.",
    "Please write your name and the date at the top of the page.",
    "The story of the old city is told in the museum on the main square.",
    "Can you tell me how to get to the station from here?",
    "In 1999 the bridge was closed, and in 2004 a new one was built.",
    "The meeting starts at 9:30 and should end before 11:00.",
    "About 20 percent of the students come from other countries.",
    "She bought 3 apples, 2 pears and a bag of bread for the trip.",
    "The point of the exercise is to think, not to find the right answer fast.",
    "Some questions are hard to answer, and some have no answer at all.",
    "He looked back at the house one last time before he walked away.",
    "Life in the country is slower than life in the city, and many like it that way.",
    "The moment she opened the door, she knew that something was wrong.",
    "Their teacher always said that a good question is worth more than an answer.",
    "The report gives the facts, but it says very little about the causes.",
    "We must work together if we want to solve this problem.",
    "The force of the wind was so strong that it broke several trees.",
    "My friend and I spent the whole afternoon walking along the beach.",
    "The health of the people depends on clean water and good food.",
    "There were only a few people in the room when the talk began.",
    "I don't think he's ever going to understand why she left.",
    "They couldn't find the keys, so they had to wait outside in the cold.",
    "The study shows that young people read less than they did ten years ago.",
    "The office is closed on Sunday, but it opens early on Monday morning.",
    "You should never judge a book by its cover, or a person by their face.",
    "The company plans to open a new office in another part of the world.",
    "It was the best of times, and it was also, in some ways, the worst.",
    "The old woman smiled and gave the little girl a red flower.",
    "Nothing is more important than the people you love.",
};

/* The paper's 100 common nouns (SPEC; shared/data/common_nouns.txt). */
static const char *const synth_nouns[] = {
    "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child",
    "world", "school", "state", "family", "student", "group", "country", "problem", "hand",
    "part", "place", "case", "week", "company", "system", "program", "question", "work",
    "government", "number", "night", "point", "home", "water", "room", "mother", "area",
    "money", "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word",
    "business", "issue", "side", "kind", "head", "house", "service", "friend", "father",
    "power", "hour", "game", "line", "end", "member", "law", "car", "city", "community",
    "name", "president", "team", "minute", "idea", "kid", "body", "information", "back",
    "parent", "face", "others", "level", "office", "door", "health", "person", "art", "war",
    "history", "party", "result", "change", "morning", "reason", "research", "girl", "guy",
    "moment", "air", "teacher", "force", "education",
};

/* Common English words, added alone and with a leading space like the nouns
 * (in running text most of them only occur with the space, or capitalized). */
static const char *const synth_common[] = {
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for",
    "on", "are", "with", "as", "I", "his", "they", "be", "at", "one", "have", "this", "from",
    "or", "had", "by", "not", "but", "what", "some", "we", "can", "out", "other", "were",
    "all", "there", "when", "up", "use", "your", "how", "said", "an", "each", "she", "which",
    "do", "their", "if", "will", "about", "many", "then", "them", "would", "like", "so",
    "these", "her", "long", "make", "see", "him", "two", "has", "look", "more", "could", "go",
    "come", "did", "my", "no", "most", "who", "over", "know", "than", "first", "may", "down",
    "been", "now", "find", "new", "good", "just", "very", "after", "before", "also", "only",
    "The", "It", "He", "She", "We", "They", "This", "In", "There", "What",
};

/* One distinct pre-token of the corpus, as a sequence of token ids. */
typedef struct { uint32_t *sym; size_t n; int64_t count; } synth_word;

typedef struct {
    strtab vocab;            /* tokens so far */
    uint32_t (*merges)[2];   /* (n_merges, 2) */
    size_t n_merges, cap_merges;
    strtab words;            /* distinct pre-tokens -> word index */
    synth_word *w;           /* (words.n) */
    size_t cap_w;
    pairmap counts;          /* pair -> weighted count over all words */
    pairmap banned;          /* pairs whose concatenation already is a token */
} synth_state;

static void synth_free(synth_state *S)
{
    strtab_free(&S->vocab);
    free(S->merges);
    for (size_t i = 0; i < S->words.n; i++) free(S->w[i].sym);
    strtab_free(&S->words);
    free(S->w);
    pairmap_free(&S->counts);
    pairmap_free(&S->banned);
}

static int synth_add_word(synth_state *S, const uint8_t *p, size_t n, int64_t count)
{
    uint32_t wi = strtab_find(&S->words, p, n);
    if (wi != NO_ID) { S->w[wi].count += count; return 0; }
    if (S->words.n == S->cap_w) {
        size_t cap = S->cap_w ? S->cap_w * 2 : 256;
        synth_word *w = realloc(S->w, cap * sizeof *w);
        if (!w) return -1;
        S->w = w;
        S->cap_w = cap;
    }
    uint32_t *sym = malloc(n * sizeof *sym);
    if (!sym) return -1;
    for (size_t i = 0; i < n; i++) sym[i] = strtab_find(&S->vocab, p + i, 1);
    wi = (uint32_t)S->words.n;
    if (strtab_put(&S->words, wi, p, n) != 0) { free(sym); return -1; }
    S->w[wi] = (synth_word){ sym, n, count };
    return 0;
}

/* Adds (sign = +1) or removes (-1) a word's pairs from the pair counts. */
static int synth_count_word(synth_state *S, const synth_word *w, int sign)
{
    for (size_t i = 0; i + 1 < w->n; i++) {
        int64_t *c = pairmap_get(&S->counts, pair_key(w->sym[i], w->sym[i + 1]), 0);
        if (!c) return -1;
        *c += sign * w->count;
    }
    return 0;
}

static int synth_add_merge(synth_state *S, uint32_t a, uint32_t b, uint8_t *tmp)
{
    size_t na = S->vocab.len[a], nb = S->vocab.len[b];
    memcpy(tmp, strtab_bytes(&S->vocab, a), na);
    memcpy(tmp + na, strtab_bytes(&S->vocab, b), nb);
    if (S->n_merges == S->cap_merges) {
        size_t cap = S->cap_merges ? S->cap_merges * 2 : 1024;
        uint32_t (*m)[2] = realloc(S->merges, cap * sizeof *m);
        if (!m) return -1;
        S->merges = m;
        S->cap_merges = cap;
    }
    if (strtab_put(&S->vocab, (uint32_t)S->vocab.n, tmp, na + nb) != 0) return -1;
    S->merges[S->n_merges][0] = a;
    S->merges[S->n_merges][1] = b;
    S->n_merges++;
    return 0;
}

/* Byte-level BPE training on the corpus until `target` tokens exist or no
 * pair can be merged into a new token. Ties in count go to the smallest
 * (left id, right id). */
static int synth_learn(synth_state *S, size_t target, uint8_t *tmp)
{
    for (size_t i = 0; i < S->words.n; i++)
        if (synth_count_word(S, &S->w[i], +1) != 0) return -1;
    while (S->vocab.n < target) {
        uint64_t best = UINT64_MAX;
        int64_t best_count = 0;
        for (size_t i = 0; i < S->counts.cap; i++) {
            uint64_t k = S->counts.keys[i];
            int64_t c = S->counts.vals[i];
            if (k == UINT64_MAX || c <= 0 || c < best_count) continue;
            if (c == best_count && k > best) continue;
            if (pairmap_find(&S->banned, k)) continue;
            best = k;
            best_count = c;
        }
        if (best == UINT64_MAX) break;
        uint32_t a = (uint32_t)(best >> 32), b = (uint32_t)best;
        size_t na = S->vocab.len[a], nb = S->vocab.len[b];
        memcpy(tmp, strtab_bytes(&S->vocab, a), na);
        memcpy(tmp + na, strtab_bytes(&S->vocab, b), nb);
        if (strtab_find(&S->vocab, tmp, na + nb) != NO_ID) {
            /* Same string reachable another way: merging it would give one
             * string two merge paths. Skip it; words keep the split. */
            if (!pairmap_get(&S->banned, best, 1)) return -1;
            continue;
        }
        if (synth_add_merge(S, a, b, tmp) != 0) return -1;
        uint32_t r = (uint32_t)(S->vocab.n - 1);
        for (size_t i = 0; i < S->words.n; i++) {
            synth_word *w = &S->w[i];
            bool has = false;
            for (size_t j = 0; j + 1 < w->n && !has; j++)
                has = w->sym[j] == a && w->sym[j + 1] == b;
            if (!has) continue;
            if (synth_count_word(S, w, -1) != 0) return -1;
            size_t o = 0;
            for (size_t j = 0; j < w->n; j++) {
                if (j + 1 < w->n && w->sym[j] == a && w->sym[j + 1] == b) { w->sym[o++] = r; j++; }
                else w->sym[o++] = w->sym[j];
            }
            w->n = o;
            if (synth_count_word(S, w, +1) != 0) return -1;
        }
    }
    return 0;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Seeded merges of existing tokens, each making a new string, until `target`
 * tokens exist. Left parts are tokens of <= 12 bytes, right parts of <= 4
 * bytes, so tokens stay short. */
static int synth_seeded(synth_state *S, size_t target, uint64_t seed, uint8_t *tmp)
{
    uint64_t rng = seed;
    size_t n = S->vocab.n;
    uint32_t *lefts = malloc(target * sizeof *lefts), *rights = malloc(target * sizeof *rights);
    size_t nl = 0, nr = 0;
    int rc = -1;
    if (!lefts || !rights) goto done;
    for (size_t i = 0; i < n; i++) {
        if (S->vocab.len[i] <= 12) lefts[nl++] = (uint32_t)i;
        if (S->vocab.len[i] <= 4) rights[nr++] = (uint32_t)i;
    }
    while (S->vocab.n < target) {
        uint32_t a = NO_ID, b = NO_ID;
        for (int tries = 0; tries < 100000 && a == NO_ID; tries++) {
            uint32_t x = lefts[splitmix64(&rng) % nl], y = rights[splitmix64(&rng) % nr];
            size_t nx = S->vocab.len[x], ny = S->vocab.len[y];
            memcpy(tmp, strtab_bytes(&S->vocab, x), nx);
            memcpy(tmp + nx, strtab_bytes(&S->vocab, y), ny);
            if (strtab_find(&S->vocab, tmp, nx + ny) == NO_ID) { a = x; b = y; }
        }
        if (a == NO_ID || synth_add_merge(S, a, b, tmp) != 0) goto done;
        uint32_t id = (uint32_t)(S->vocab.n - 1);
        if (S->vocab.len[id] <= 12) lefts[nl++] = id;
        if (S->vocab.len[id] <= 4) rights[nr++] = id;
    }
    rc = 0;
done:
    free(lefts);
    free(rights);
    return rc;
}

/* Writes token bytes in GPT-2's unicode form, JSON-escaped if json. */
static void put_unicode(FILE *f, const uint32_t b2u[256], const uint8_t *p, size_t n, bool json)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = b2u[p[i]];
        if (json && (cp == '"' || cp == '\\')) { fputc('\\', f); fputc((int)cp, f); }
        else if (cp < 0x80) fputc((int)cp, f);
        else { fputc((int)(0xC0 | (cp >> 6)), f); fputc((int)(0x80 | (cp & 0x3F)), f); }
    }
}

static int synth_write(const synth_state *S, const char *dir, const uint32_t b2u[256],
                       char *err, size_t errlen)
{
    size_t dl = strlen(dir);
    char *path = malloc(dl + 16);
    if (!path) { tw_set_err(err, errlen, "tokenizer: out of memory"); return -1; }
    snprintf(path, dl + 16, "%s/vocab.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f) goto io_fail;
    fputc('{', f);
    for (size_t id = 0; id < S->vocab.n; id++) {
        fputs(id ? ", \"" : "\"", f);
        put_unicode(f, b2u, strtab_bytes(&S->vocab, (uint32_t)id), S->vocab.len[id], true);
        fprintf(f, "\": %zu", id);
    }
    fprintf(f, ", \"%s\": %zu}", EOT_TEXT, S->vocab.n);
    if (ferror(f) | (fclose(f) != 0)) goto io_fail;
    snprintf(path, dl + 16, "%s/merges.txt", dir);
    if (!(f = fopen(path, "wb"))) goto io_fail;
    fputs("#version: 0.2\n", f);
    for (size_t i = 0; i < S->n_merges; i++) {
        uint32_t a = S->merges[i][0], b = S->merges[i][1];
        put_unicode(f, b2u, strtab_bytes(&S->vocab, a), S->vocab.len[a], false);
        fputc(' ', f);
        put_unicode(f, b2u, strtab_bytes(&S->vocab, b), S->vocab.len[b], false);
        fputc('\n', f);
    }
    if (ferror(f) | (fclose(f) != 0)) goto io_fail;
    free(path);
    return 0;
io_fail:
    tw_set_err(err, errlen, "%s: %s", path, strerror(errno));
    free(path);
    return -1;
}

int tokenizer_write_synthetic(const char *dir, int vocab_size, uint64_t seed,
                              char *err, size_t errlen)
{
    if (!dir) { tw_set_err(err, errlen, "tokenizer: no directory given"); return -1; }
    if (vocab_size < 257 || vocab_size > MAX_IDS) {
        tw_set_err(err, errlen, "tokenizer: vocab_size %d out of range 257..%d", vocab_size, MAX_IDS);
        return -1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        tw_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    uint32_t b2u[256];
    int u2b[U2B_SIZE];
    uint8_t order[256];
    byte_unicode_tables(b2u, u2b, order);
    synth_state S = { 0 };
    uint8_t *tmp = malloc(2 * MAX_TOKEN_BYTES);
    pcre2_code *re = compile_pattern(err, errlen);
    pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
    int rc = -1;
    size_t target = (size_t)vocab_size - 1;    /* ids before <|endoftext|> */
    if (!re) goto done;
    if (!tmp || !md) goto oom;
    for (int i = 0; i < 256; i++)
        if (strtab_put(&S.vocab, (uint32_t)i, &order[i], 1) != 0) goto oom;
    /* Distinct pre-tokens of the corpus with their counts, in order of first
     * appearance; each listed word alone and with a leading space. */
    size_t nc = sizeof synth_corpus / sizeof synth_corpus[0];
    size_t nn = sizeof synth_nouns / sizeof synth_nouns[0];
    size_t nw = sizeof synth_common / sizeof synth_common[0];
    for (size_t i = 0; i < nc + 2 * (nn + nw); i++) {
        char line[512];
        size_t k = (i - nc) / 2;
        if (i < nc) snprintf(line, sizeof line, "%s\n", synth_corpus[i]);
        else snprintf(line, sizeof line, "%s%s", (i - nc) % 2 ? " " : "",
                      k < nn ? synth_nouns[k] : synth_common[k - nn]);
        size_t len = strlen(line), off = 0;
        while (off < len) {
            int mr = pcre2_match(re, (PCRE2_SPTR)line, len, off, 0, md, NULL);
            if (mr < 0) { tw_set_err(err, errlen, "tokenizer: corpus pre-tokenization failed"); goto done; }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (synth_add_word(&S, (const uint8_t *)line + ov[0], ov[1] - ov[0], 1) != 0) goto oom;
            off = ov[1];
        }
    }
    if (synth_learn(&S, target, tmp) != 0) goto oom;
    if (S.vocab.n < target && synth_seeded(&S, target, seed, tmp) != 0) goto oom;
    rc = synth_write(&S, dir, b2u, err, errlen);
    goto done;
oom:
    tw_set_err(err, errlen, "tokenizer: out of memory while building the synthetic vocabulary");
done:
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    free(tmp);
    synth_free(&S);
    return rc;
}
