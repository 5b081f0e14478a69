/* What the checkpoint loaders of core/model share; not an interface. */
#ifndef TW_MODEL_INTERNAL_H
#define TW_MODEL_INTERNAL_H

#include <stddef.h>

#include "core/model/gpt2.h"

/* Checks the ranges of a configuration (every count 1..GPT2_MAX_*, n_embd a
 * multiple of n_head, 0 < ln_eps < 1). 0, or -1 with "<file>: <problem>". */
int gpt2_config_check(const gpt2_config *c, const char *file, char *err, size_t errlen);

/* Refuses a tensor holding a NaN or an infinity, naming file, tensor and
 * element. 0 or -1. */
int gpt2_check_finite(const float *x, size_t n, const char *file, const char *tensor, char *err,
                      size_t errlen);

/* Keeps a buffer the model owns (freed by gpt2_free). 0, or -1 (buf freed). */
int gpt2_own(gpt2_model *m, float *buf);

/* Leaves matrix `which` (0 attn_w, 1 attn_proj_w, 2 fc_w, 3 fc_proj_w) of
 * block `block` in the mapping as `dtype` (ST_F16 or ST_BF16), numel values
 * at src (core/model/blocks.c). 0, or -1 when memory runs out. */
int gpt2_lazy_add(gpt2_model *m, int block, int which, const void *src, int dtype, size_t numel);
void gpt2_lazy_free(gpt2_model *m);

/* The nanoGPT loader (core/model/nanogpt.c): `file` is a ckpt.pt. */
int nanogpt_load(const char *file, gpt2_model *m, char *err, size_t errlen);

#endif
