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
#include "core/tok/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/fs.h"
#include "base/scratch.h"
#include "base/utf8.h"
#include "core/tok/tables.h"

/* ------------------------------------------------------------ tokenizer */

typedef struct {
    uint32_t left, right, result;
} merge_rule;

struct tokenizer {
    strtab vocab;       /* id -> bytes, bytes -> id */
    merge_rule *merges; /* (n_merges) indexed by rank */
    size_t n_merges;
    pairmap ranks;         /* pair_key(left, right) -> rank */
    uint32_t byte_id[256]; /* id of each single-byte token */
    int eot;               /* id of <|endoftext|>, or -1 */
    pcre2_code *re;        /* compiled pre-tokenization pattern (BPE only) */
    int chars;             /* a character vocabulary (nanoGPT's meta.pkl): one id per character */
};

void tokenizer_free(tokenizer *t)
{
    if (!t) return;
    strtab_free(&t->vocab);
    free(t->merges);
    pairmap_free(&t->ranks);
    pcre2_code_free(t->re);
    free(t);
}

/* Vocabulary and merges files larger than this are refused: GPT-2's are
 * about 1 MB and 0.5 MB; a path pointing at /dev/zero must not read on. */
#define MAX_TOKENIZER_FILE ((size_t)256 << 20)

static char *read_whole_file(const char *path, size_t *n, char *err, size_t errlen)
{
    return fs_read_file(path, MAX_TOKENIZER_FILE, n, err, errlen);
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
        size_t l = u[i] < 0x80                    ? 1
                   : u[i] >= 0xC2 && u[i] <= 0xDF ? 2
                   : u[i] >= 0xE0 && u[i] <= 0xEF ? 3
                   : u[i] >= 0xF0 && u[i] <= 0xF4 ? 4
                                                  : 0;
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
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int load_vocab(tokenizer *t, const char *path, const int u2b[U2B_SIZE], char *err, size_t errlen)
{
    size_t n;
    char *buf = read_whole_file(path, &n, err, errlen);
    if (!buf) return -1;
    json_error_t jerr;
    json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root) {
        tw_set_err(err, errlen, "%s: invalid JSON at line %d column %d: %s", path, jerr.line, jerr.column,
                   jerr.text);
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
    json_object_foreach(root, key, val)
    {
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
            tw_set_err(err, errlen, "%s: id %lld of token \"%s\" is out of range 0..%d", path, (long long)id,
                       shown, MAX_IDS - 1);
            goto done;
        }
        if (klen == 0 || klen > MAX_TOKEN_BYTES) {
            tw_set_err(err, errlen, "%s: token with id %lld has length %zu (allowed 1..%d)", path,
                       (long long)id, klen, MAX_TOKEN_BYTES);
            goto done;
        }
        long blen = unicode_to_bytes(u2b, key, klen, tmp);
        if (blen < 0) {
            tw_set_err(err, errlen,
                       "%s: token \"%s\" (id %lld) has characters outside GPT-2's "
                       "byte-level alphabet",
                       path, shown, (long long)id);
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
static uint32_t merge_part_id(const tokenizer *t, const int u2b[U2B_SIZE], const char *s, size_t n,
                              uint8_t *tmp)
{
    if (n == 0 || n > MAX_TOKEN_BYTES) return NO_ID;
    long b = unicode_to_bytes(u2b, s, n, tmp);
    if (b < 0) return NO_ID;
    return strtab_find(&t->vocab, tmp, (size_t)b);
}

static int load_merges(tokenizer *t, const char *path, const int u2b[U2B_SIZE], char *err, size_t errlen)
{
    size_t n;
    char *buf = read_whole_file(path, &n, err, errlen);
    if (!buf) return -1;
    int rc = -1;
    size_t cap = 0, pos = 0, lineno = 0;
    uint8_t *tmp = malloc(2 * MAX_TOKEN_BYTES);
    char shown[64];
    if (!tmp) {
        tw_set_err(err, errlen, "%s: out of memory", path);
        goto done;
    }
    while (pos < n) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', n - pos);
        size_t ll = nl ? (size_t)(nl - line) : n - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        if (ll && line[ll - 1] == '\r') ll--;
        if (ll == 0) continue;
        if (lineno == 1 && line[0] == '#') continue; /* "#version: 0.2" */
        const char *sp = memchr(line, ' ', ll);
        if (!sp || sp == line || sp == line + ll - 1 || memchr(sp + 1, ' ', (size_t)(line + ll - sp - 1))) {
            quote_token(shown, sizeof shown, line, ll);
            tw_set_err(err, errlen,
                       "%s: line %zu: expected two tokens separated by one space, "
                       "got \"%s\"",
                       path, lineno, shown);
            goto done;
        }
        size_t la = (size_t)(sp - line), lb = ll - la - 1;
        uint32_t a = merge_part_id(t, u2b, line, la, tmp);
        uint32_t b = merge_part_id(t, u2b, sp + 1, lb, tmp);
        if (a == NO_ID || b == NO_ID) {
            quote_token(shown, sizeof shown, a == NO_ID ? line : sp + 1, a == NO_ID ? la : lb);
            tw_set_err(err, errlen, "%s: line %zu: token \"%s\" is not in the vocabulary", path, lineno,
                       shown);
            goto done;
        }
        size_t na = t->vocab.len[a], nb = t->vocab.len[b];
        memcpy(tmp, strtab_bytes(&t->vocab, a), na);
        memcpy(tmp + na, strtab_bytes(&t->vocab, b), nb);
        uint32_t r = strtab_find(&t->vocab, tmp, na + nb);
        if (r == NO_ID) {
            quote_token(shown, sizeof shown, line, ll);
            tw_set_err(err, errlen, "%s: line %zu: the merge of \"%s\" is not in the vocabulary", path,
                       lineno, shown);
            goto done;
        }
        if (t->n_merges == cap) {
            cap = cap ? cap * 2 : 1024;
            merge_rule *m = realloc(t->merges, cap * sizeof *m);
            if (!m) {
                tw_set_err(err, errlen, "%s: out of memory", path);
                goto done;
            }
            t->merges = m;
        }
        if (t->n_merges >= UINT32_MAX - 1) {
            tw_set_err(err, errlen, "%s: too many merges", path);
            goto done;
        }
        /* A repeated pair takes the later rank, as dict(zip(merges, ranks)). */
        int64_t *slot = pairmap_get(&t->ranks, pair_key(a, b), 0);
        if (!slot) {
            tw_set_err(err, errlen, "%s: out of memory", path);
            goto done;
        }
        *slot = (int64_t)t->n_merges;
        t->merges[t->n_merges++] = (merge_rule){a, b, r};
    }
    rc = 0;
done:
    free(tmp);
    free(buf);
    return rc;
}

tokenizer *tokenizer_load(const char *dir, char *err, size_t errlen)
{
    if (!dir) {
        tw_set_err(err, errlen, "tokenizer: no directory given");
        return NULL;
    }
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
            free(alt_v);
            free(alt_m);
            tw_set_err(err, errlen, "tokenizer: out of memory");
            goto fail;
        }
        snprintf(alt_v, dl + 16, "%s/encoder.json", dir);
        snprintf(alt_m, dl + 16, "%s/vocab.bpe", dir);
        if (file_exists(alt_v)) {
            free(vpath);
            free(mpath);
            vpath = alt_v;
            mpath = alt_m;
        } else {
            free(alt_v);
            free(alt_m);
            tw_set_err(err, errlen,
                       "%s: no tokenizer files (vocab.json + merges.txt or "
                       "encoder.json + vocab.bpe)",
                       dir);
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
            tw_set_err(err, errlen, "%s: no token for byte 0x%02X (all 256 byte tokens are required)", vpath,
                       b);
            goto fail;
        }
    }
    uint32_t e = strtab_find(&t->vocab, (const uint8_t *)EOT_TEXT, EOT_LEN);
    t->eot = e == NO_ID ? -1 : (int)e;
    if (load_merges(t, mpath, u2b, err, errlen) != 0) goto fail;
    t->re = tok_compile_pattern(err, errlen);
    if (!t->re) goto fail;
    free(vpath);
    free(mpath);
    return t;
fail:
    free(vpath);
    free(mpath);
    tokenizer_free(t);
    return NULL;
}

static char unicode_version[32] = "unknown";

static void unicode_version_init(void)
{
    char buf[sizeof unicode_version];
    if (pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, buf) > 0 &&
        (size_t)pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, NULL) <= sizeof buf)
        memcpy(unicode_version, buf, sizeof buf);
}

const char *tokenizer_unicode_version(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, unicode_version_init);
    return unicode_version;
}

tokenizer *tokenizer_from_strings(const char *const *strs, const size_t *lens, int n, const char *label,
                                  char *err, size_t errlen)
{
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        tw_set_err(err, errlen, "%s: out of memory", label);
        return NULL;
    }
    t->chars = 1;
    t->eot = -1;
    for (int i = 0; i < n; i++) {
        if (lens[i] > MAX_TOKEN_BYTES) {
            tw_set_err(err, errlen, "%s: entry %d is %zu bytes long; the limit is %d", label, i, lens[i],
                       MAX_TOKEN_BYTES);
            tokenizer_free(t);
            return NULL;
        }
        if (strtab_find(&t->vocab, (const uint8_t *)strs[i], lens[i]) != NO_ID) {
            tw_set_err(err, errlen, "%s: entry %d repeats an earlier entry", label, i);
            tokenizer_free(t);
            return NULL;
        }
        if (strtab_put(&t->vocab, (uint32_t)i, (const uint8_t *)strs[i], lens[i]) != 0) {
            tw_set_err(err, errlen, "%s: out of memory", label);
            tokenizer_free(t);
            return NULL;
        }
    }
    return t;
}

int tokenizer_is_chars(const tokenizer *t) { return t->chars; }

/* Length of the UTF-8 character at s (valid UTF-8 assumed), 1 for a stray byte. */
static size_t char_len(const unsigned char *s, size_t n)
{
    size_t l = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    return l <= n ? l : 1;
}

long tokenizer_unknown_char(const tokenizer *t, const char *text, size_t len, size_t *char_len_out)
{
    if (!t->chars) return -1;
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t l = char_len(u + i, len - i);
        if (strtab_find(&t->vocab, u + i, l) == NO_ID) {
            if (char_len_out) *char_len_out = l;
            return (long)i;
        }
        i += l;
    }
    return -1;
}

/* nanoGPT's encode: one id per character, every character in the vocabulary. */
static long encode_chars(const tokenizer *t, const char *text, size_t len, int32_t **ids)
{
    if (!utf8_valid(text, len) || tokenizer_unknown_char(t, text, len, NULL) >= 0) return -2;
    int32_t *out = malloc((len ? len : 1) * sizeof *out);
    if (!out) return -1;
    const unsigned char *u = (const unsigned char *)text;
    long n = 0;
    for (size_t i = 0; i < len;) {
        size_t l = char_len(u + i, len - i);
        out[n++] = (int32_t)strtab_find(&t->vocab, u + i, l);
        i += l;
    }
    *ids = out;
    return n;
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

typedef struct {
    int32_t *v;
    size_t n, cap;
} idbuf;

static int idbuf_push(idbuf *b, uint32_t id)
{
    int32_t *v = tw_grow(b->v, &b->cap, b->n + 1, sizeof *v, 64);
    if (!v) return -1;
    b->v = v;
    b->v[b->n++] = (int32_t)id;
    return 0;
}

/* Per-call scratch for bpe_piece, grown to the longest pre-token. */
typedef struct {
    uint32_t *sym;         /* (cap) token id at each position, NO_ID when merged away */
    uint32_t *prev, *next; /* (cap) linked list over live positions, NO_ID at the ends */
    uint32_t *merged;      /* (cap) positions merged in the current rank */
    size_t cap;            /* the four arrays are one allocation, at sym */
    uint64_t *heap;        /* (hcap) (rank << 32) | position, min-heap */
    size_t hn, hcap;
} bpe_scratch;

static void bpe_scratch_free(bpe_scratch *s)
{
    free(s->sym);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

/* Room for n positions; the arrays' contents are not kept. */
static int bpe_scratch_reserve(bpe_scratch *s, size_t n)
{
    if (n <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    uint32_t *a = malloc(4 * cap * sizeof *a);
    if (!a) return -1;
    free(s->sym);
    s->sym = a;
    s->prev = a + cap;
    s->next = a + 2 * cap;
    s->merged = a + 3 * cap;
    s->cap = cap;
    return 0;
}

static int heap_push(bpe_scratch *s, uint64_t v)
{
    uint64_t *h = tw_grow(s->heap, &s->hcap, s->hn + 1, sizeof *h, 256);
    if (!h) return -1;
    s->heap = h;
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
    if (n >= NO_ID || bpe_scratch_reserve(s, n) != 0) return -1;
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
            if (s->sym[a] != m->left || b == NO_ID || s->sym[b] != m->right) continue; /* stale */
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
static int encode_ordinary(const tokenizer *t, const char *text, size_t len, pcre2_match_data *md,
                           bpe_scratch *s, idbuf *out)
{
    size_t off = 0;
    while (off < len) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, off, PCRE2_NO_UTF_CHECK, md, NULL);
        size_t a, b;
        if (rc == PCRE2_ERROR_NOMATCH) {
            a = off;
            b = len; /* unreachable: every character matches some branch */
        } else if (rc < 0) {
            return -1;
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            a = ov[0];
            b = ov[1];
            if (b <= off) return -1; /* the pattern has no empty matches */
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
    if (t->chars) return encode_chars(t, text, len, ids);
    char *clean = NULL;
    if (!utf8_valid(text, len)) {
        clean = utf8_sanitize(text, len, &len);
        if (!clean) return -1;
        text = clean;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
    bpe_scratch s = {0};
    idbuf out = {0};
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
    bpe_scratch_free(&s);
    free(clean);
    if (rc != 0 || out.n > (size_t)LONG_MAX) {
        free(out.v);
        return -1;
    }
    *ids = out.v;
    return (long)out.n;
}
