#include "base/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence starting at s[i], or 0 if the
 * bytes there do not start one. When 0, *bad receives the length of the
 * maximal subpart to replace by one U+FFFD (at least 1). */
static size_t seq_len(const unsigned char *s, size_t n, size_t i, size_t *bad)
{
    unsigned char c = s[i];
    if (c < 0x80) return 1;
    if (c < 0xC2 || c > 0xF4) { /* a continuation byte, an overlong lead or past U+10FFFF */
        *bad = 1;
        return 0;
    }
    /* Unicode's table of well-formed sequences: continuation bytes are
     * 80..BF but for the second after E0 (A0..), ED (..9F: no surrogates),
     * F0 (90..) and F4 (..8F: at most U+10FFFF) */
    const size_t need = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
    const unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    const unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    size_t k;
    for (k = 1; k <= need; k++) {
        if (i + k >= n) {
            *bad = k;
            return 0;
        }
        unsigned char b = s[i + k];
        unsigned char l = (k == 1) ? lo : 0x80, h = (k == 1) ? hi : 0xBF;
        if (b < l || b > h) {
            *bad = k;
            return 0;
        }
    }
    return need + 1;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, bad;
    while (i < len) {
        size_t l = seq_len(u, len, i, &bad);
        if (!l) return false;
        i += l;
    }
    return true;
}

char *utf8_sanitize(const char *s, size_t len, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    /* worst case: every byte becomes 3 bytes of U+FFFD */
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    size_t i = 0, o = 0, bad = 0;
    while (i < len) {
        size_t l = seq_len(u, len, i, &bad);
        if (l) {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        } else {
            out[o++] = (char)0xEF;
            out[o++] = (char)0xBF;
            out[o++] = (char)0xBD;
            i += bad;
        }
    }
    out[o] = '\0';
    if (out_len) *out_len = o;
    return out;
}
