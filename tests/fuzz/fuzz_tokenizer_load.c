/* libFuzzer target for core/tok/tokenizer's file readers: tokenizer_load on
 * a folder whose vocab.json and merges.txt are made of the input:
 *
 *   [u32 little-endian n][n bytes of vocab.json][merges.txt]
 *
 * A tokenizer that loads is then used: every id's bytes are looked up back
 * to the id, and a text made of the vocabulary's own tokens plus a fixed
 * sample is encoded and must decode to itself (every loaded tokenizer has
 * all 256 byte tokens, and every merge's result is in the vocabulary, so
 * encoding is always exact). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "core/tok/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

static fz_file vocab, merges;
static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_file_init(&vocab, "vocab.json");
    fz_file_init(&merges, "merges.txt");
    dir = fz_tempdir("tok");
    fz_link(dir, "vocab.json", &vocab);
    fz_link(dir, "merges.txt", &merges);
    return 0;
}

static void round_trip(const tokenizer *t, const char *text, size_t len)
{
    int32_t *ids = NULL;
    long n = tokenizer_encode(t, text, len, &ids);
    FZ_CHECK(n >= 0, "encode failed");
    for (long i = 0; i < n; i++)
        FZ_CHECK(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(t), "id %d out of range", ids[i]);
    char *out = NULL;
    long m = tokenizer_decode(t, ids, (size_t)n, &out);
    FZ_CHECK(m >= 0, "decode failed: %ld", m);
    size_t want_len;
    char *want = utf8_sanitize(text, len, &want_len);
    FZ_CHECK(want != NULL, "out of memory");
    FZ_CHECK((size_t)m == want_len && memcmp(out, want, want_len) == 0, "decode(encode(x)) != x");
    free(want);
    free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *v, *mg;
    size_t nv, nm;
    fz_split(data, size, &v, &nv, &mg, &nm);
    fz_file_set(&vocab, v, nv);
    fz_file_set(&merges, mg, nm);
    char err[1024];
    tokenizer *t = tokenizer_load(dir, err, sizeof err);
    if (!t) {
        FZ_CHECK(strchr(err, '\n') == NULL && strncmp(err, dir, strlen(dir)) == 0, "error message \"%s\"",
                 err);
        return 0;
    }
    int n = tokenizer_vocab_size(t);
    FZ_CHECK(n >= 256, "vocab size %d without the byte tokens", n);
    int eot = tokenizer_eot(t);
    FZ_CHECK(eot >= -1 && eot < n, "eot %d", eot);
    /* every present id's bytes name that id; the concatenation of (up to
     * 200) tokens is a text that must survive the round trip */
    char *text = malloc(200 * 4096 + 64);
    FZ_CHECK(text != NULL, "out of memory");
    size_t tl = 0;
    int used = 0;
    for (int id = 0; id < n; id++) {
        size_t len;
        const uint8_t *b = tokenizer_token_bytes(t, id, &len);
        if (!b) continue;
        FZ_CHECK(len >= 1 && len <= 4096, "token %d has %zu bytes", id, len);
        FZ_CHECK(tokenizer_lookup(t, b, len) == id, "lookup of token %d", id);
        if (used < 200 && id >= 256) {
            memcpy(text + tl, b, len);
            tl += len;
            used++;
        }
    }
    static const char sample[] = "Hello world's 123 \xe2\x82\xac  <|endoftext|>\n\t x";
    memcpy(text + tl, sample, sizeof sample - 1);
    tl += sizeof sample - 1;
    round_trip(t, text, tl);
    free(text);
    tokenizer_free(t);
    return 0;
}
