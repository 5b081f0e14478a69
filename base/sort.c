#include "base/sort.h"

#include <string.h>

int tw_bytes_cmp(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : (al > bl);
}

void tw_sort(void *base, void *tmp, size_t n, size_t size, tw_cmp_fn cmp, const void *ctx)
{
    if (n < 2) return;
    unsigned char *v = base, *t = tmp;
    size_t h = n / 2;
    tw_sort(v, t, h, size, cmp, ctx);
    tw_sort(v + h * size, t, n - h, size, cmp, ctx);
    size_t i = 0, j = h, k = 0;
    /* the right run's element goes first only when strictly smaller */
    while (i < h && j < n) {
        size_t from = cmp(v + j * size, v + i * size, ctx) < 0 ? j++ : i++;
        memcpy(t + k++ * size, v + from * size, size);
    }
    memcpy(t + k * size, v + i * size, (h - i) * size);
    k += h - i;
    memcpy(t + k * size, v + j * size, (n - j) * size);
    memcpy(v, t, n * size);
}

const void *tw_search(const void *key, const void *base, size_t n, size_t size, tw_cmp_fn cmp,
                      const void *ctx)
{
    const unsigned char *v = base;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = cmp(key, v + mid * size, ctx);
        if (r == 0) return v + mid * size;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
