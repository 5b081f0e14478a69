/* Facts about the OpenBLAS this process runs on: the kernel family it
 * picked, the one worth forcing, and the names it knows. */
#ifndef TW_BLAS_H
#define TW_BLAS_H

/* This machine's OpenBLAS may not recognise the CPU: OpenBLAS 0.3.21 under
 * KVM on Sapphire Rapids picks its generic "Prescott" kernels, about 9x slower
 * for sgemm than "SkylakeX". Returns the OPENBLAS_CORETYPE value worth setting
 * before the library initialises ("SkylakeX" or "Haswell") when the CPU
 * supports AVX-512F (resp. AVX2+FMA) but OpenBLAS runs a core older than
 * that, else NULL. OpenBLAS reads the variable only when it loads, so a
 * process that wants it must re-exec itself (or be started with it set). */
const char *blas_coretype_hint(void);

/* The kernel family OpenBLAS runs now ("Haswell", "Prescott", ...). */
const char *blas_corename(void);

/* True if `name` is a kernel family OpenBLAS accepts in OPENBLAS_CORETYPE
 * (case-insensitive), for checking a configured value before re-exec. */
int blas_coretype_known(const char *name);

/* The accepted names, comma-separated, for messages. */
const char *blas_coretype_names(void);

#endif
