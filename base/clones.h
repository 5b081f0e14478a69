/* TW_CLONES: run-time versions of a hot loop (AVX-512, AVX2, baseline),
 * where the compiler can make them: GCC or Clang on x86-64 with ifunc
 * support, i.e. glibc; elsewhere nothing. Clang resolves a multiversioned
 * function only where its callers see the attribute, so put it on a static
 * function and call that. */
#ifndef TW_CLONES_H
#define TW_CLONES_H

#if defined(__x86_64__) && defined(__GLIBC__) && (defined(__GNUC__) || defined(__clang__))
#define TW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TW_CLONES
#endif

#endif
