/* libFuzzer target for core/tok/tokenizer's encoder: a fixed synthetic
 * tokenizer (tokenizer_write_synthetic, made once into a temporary folder)
 * encodes arbitrary bytes, and the round trip must hold byte for byte:
 *
 *   decode(encode(x)) == utf8_sanitize(x)
 *
 * Every id must be in range, and "<|endoftext|>" in the text must come out
 * as the special token. The input is also encoded in two pieces cut at a
 * "<|endoftext|>" boundary to check that the split on the special token
 * does not depend on what surrounds it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "core/tok/synth_vocab.h"
#include "core/tok/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

static tokenizer *tok;

static void release(void) { tokenizer_free(tok); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = fz_tempdir("tokenize");
    char err[512];
    FZ_CHECK(tokenizer_write_synthetic(dir, 2048, 0, err, sizeof err) == 0, "%s", err);
    tok = tokenizer_load(dir, err, sizeof err);
    FZ_CHECK(tok != NULL, "%s", err);
    FZ_CHECK(tokenizer_eot(tok) == 2047, "eot %d", tokenizer_eot(tok));
    atexit(release);
    return 0;
}

/* The ids of text[0..len), checked in range; *n their count. */
static int32_t *encode(const char *text, size_t len, long *n)
{
    int32_t *ids = NULL;
    *n = tokenizer_encode(tok, text, len, &ids);
    FZ_CHECK(*n >= 0, "encode failed");
    FZ_CHECK((*n == 0) == (ids == NULL), "ids %p for %ld tokens", (void *)ids, *n);
    for (long i = 0; i < *n; i++)
        FZ_CHECK(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(tok), "id %d out of range", ids[i]);
    return ids;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: an overread of the text is caught */
    char *x = malloc(size ? size : 1);
    FZ_CHECK(x != NULL, "out of memory");
    memcpy(x, data, size);

    long n;
    int32_t *ids = encode(x, size, &n);
    char *out = NULL;
    long m = tokenizer_decode(tok, ids, (size_t)n, &out);
    FZ_CHECK(m >= 0, "decode failed: %ld", m);
    size_t want_len;
    char *want = utf8_sanitize(x, size, &want_len);
    FZ_CHECK(want != NULL, "out of memory");
    if ((size_t)m != want_len || memcmp(out, want, want_len) != 0) {
        size_t i = 0;
        while (i < want_len && i < (size_t)m && out[i] == want[i]) i++;
        FZ_CHECK(0, "decode(encode(x)) differs from utf8_sanitize(x) at byte %zu (%ld vs %zu bytes)", i, m,
                 want_len);
    }
    /* the special token: as many as the sanitized text has occurrences */
    long eots = 0, found = 0;
    for (long i = 0; i < n; i++) eots += ids[i] == tokenizer_eot(tok);
    for (const char *p = want; (p = memmem(p, want_len - (size_t)(p - want), "<|endoftext|>", 13)); p += 13)
        found++;
    FZ_CHECK(eots == found, "%ld special tokens for %ld occurrences", eots, found);
    /* text before and after the first special token encode independently */
    const char *e = memmem(want, want_len, "<|endoftext|>", 13);
    if (e) {
        size_t a = (size_t)(e - want);
        long n1, n2;
        int32_t *i1 = encode(want, a, &n1);
        int32_t *i2 = encode(e + 13, want_len - a - 13, &n2);
        FZ_CHECK(n1 + 1 + n2 == n, "split at the special token: %ld + 1 + %ld != %ld", n1, n2, n);
        FZ_CHECK((n1 == 0 || memcmp(i1, ids, (size_t)n1 * sizeof *ids) == 0) &&
                     ids[n1] == tokenizer_eot(tok) &&
                     (n2 == 0 || memcmp(i2, ids + n1 + 1, (size_t)n2 * sizeof *ids) == 0),
                 "split at the special token changes the ids");
        free(i1);
        free(i2);
    }
    free(want);
    free(out);
    free(ids);
    free(x);
    return 0;
}
