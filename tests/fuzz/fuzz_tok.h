/* What the tokenizer fuzzers share: the round-trip check. */
#ifndef TW_FUZZ_TOK_H
#define TW_FUZZ_TOK_H

#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "core/tok/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

/* decode(ids[0..n)) must be utf8_sanitize(text[0..len)), byte for byte.
 * Returns the sanitized text (malloc'd; its length in *want_len). */
static inline char *fz_check_decodes_to(const tokenizer *t, const int32_t *ids, long n, const char *text,
                                        size_t len, size_t *want_len)
{
    char *out = NULL;
    long m = tokenizer_decode(t, ids, (size_t)n, &out);
    FZ_CHECK(m >= 0, "decode failed: %ld", m);
    char *want = utf8_sanitize(text, len, want_len);
    FZ_CHECK(want != NULL, "out of memory");
    if ((size_t)m != *want_len || memcmp(out, want, *want_len) != 0) {
        size_t i = 0;
        while (i < *want_len && i < (size_t)m && out[i] == want[i]) i++;
        FZ_CHECK(0, "decode(encode(x)) differs from utf8_sanitize(x) at byte %zu (%ld vs %zu bytes)", i, m,
                 *want_len);
    }
    free(out);
    return want;
}

#endif
