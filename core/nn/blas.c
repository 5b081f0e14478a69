#include "core/nn/blas.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

/* Declared by OpenBLAS's cblas.h in most builds; repeated here so the hint
 * does not depend on which cblas.h the include path finds first. */
char *openblas_get_corename(void);

/* The x86-64 names OpenBLAS's dynamic-arch build accepts in
 * OPENBLAS_CORETYPE, as Debian 12's libopenblas0 (0.3.21) does: checked by
 * running it with each name and OPENBLAS_VERBOSE=2. Its table of core names
 * also holds "Cooperlake" and "SapphireRapids", but it answers "Core not
 * found" to both and falls back to what it detects, so they are not offered.
 * Katmai, Coppermine, Northwood, Banias and Athlon are accepted and run the
 * Prescott kernels. One list, for the check and for messages. */
static const char known_names[] = "Katmai, Coppermine, Northwood, Prescott, Banias, Atom, Core2, Penryn, "
                                  "Dunnington, Nehalem, Athlon, Opteron, Opteron_SSE3, Barcelona, Nano, "
                                  "Sandybridge, Bulldozer, Piledriver, Haswell, Steamroller, Excavator, Zen, "
                                  "SkylakeX";

static int core_in(const char *core, const char *const *names)
{
    for (; *names; names++)
        if (strcasecmp(core, *names) == 0) return 1;
    return 0;
}

const char *blas_corename(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

int blas_coretype_known(const char *name)
{
    size_t n = strlen(name);
    if (n == 0) return 0;
    for (const char *p = known_names; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncasecmp(p, name, n) == 0) return 1;
        p += len;
        while (*p == ',' || *p == ' ') p++;
    }
    return 0;
}

const char *blas_coretype_names(void) { return known_names; }

const char *blas_coretype_hint(void)
{
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2_cores[] = {"Haswell",        "Zen", "SkylakeX", "Cooperlake",
                                             "SapphireRapids", NULL};
    const char *core = openblas_get_corename();
    if (!core) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && !core_in(core, avx512_cores)) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !core_in(core, avx2_cores))
        return "Haswell";
    return NULL;
}
