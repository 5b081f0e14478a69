/* The nanoGPT loader: a ckpt.pt (torch.save of nanoGPT's checkpoint dict)
 * bound into a gpt2_model, tensors used in place where they are contiguous
 * float32 (see core/model/gpt2.h gpt2_load, core/model/torch_ckpt.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "core/model/gpt2.h"
#include "core/model/model_internal.h"
#include "core/model/torch_ckpt.h"

#define PREFIX "transformer."

/* The model tensor `name` (with or without "transformer."), or NULL. Both
 * present is an error (*ambiguous). */
static const tc_tensor *find(const torch_ckpt *c, const char *name, int *ambiguous)
{
    char pname[256];
    snprintf(pname, sizeof pname, PREFIX "%s", name);
    const tc_tensor *a = torch_ckpt_find(c, name), *b = torch_ckpt_find(c, pname);
    *ambiguous = a && b;
    return a ? a : b;
}

static void shape_text(char *out, size_t n, const int64_t *shape, int ndim)
{
    size_t k = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(out + k, n - k, "]");
}

/* Binds tensor `name` of shape (rows[, cols]) into *dst: in place when it is
 * contiguous, aligned float32; converted into a buffer the model owns
 * otherwise (F16, BF16, F64, or a strided view). A missing optional tensor
 * leaves *dst NULL. 0 or -1. */
static int bind(gpt2_model *m, const torch_ckpt *c, const char *name, int ndim, int64_t rows, int64_t cols,
                int required, const float **dst, char *err, size_t errlen)
{
    *dst = NULL;
    int ambiguous;
    const tc_tensor *t = find(c, name, &ambiguous);
    if (ambiguous) {
        tw_set_err(err, errlen, "%s: tensor '%s': present both with and without the '" PREFIX "' prefix",
                   c->path, name);
        return -1;
    }
    if (!t) {
        if (!required) return 0;
        tw_set_err(err, errlen, "%s: tensor '%s': missing from the model's state dict", c->path, name);
        return -1;
    }
    int64_t want[2] = {rows, cols};
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == want[i];
    if (!same) {
        char got[160], exp[160];
        shape_text(got, sizeof got, t->shape, t->ndim);
        shape_text(exp, sizeof exp, want, ndim);
        tw_set_err(err, errlen, "%s: tensor '%s': shape %s, expected %s (from model_args)", c->path, t->name,
                   got, exp);
        return -1;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
        tw_set_err(err, errlen, "%s: tensor '%s': dtype %s not supported (F32, F16, BF16 or F64)", c->path,
                   t->name, st_dtype_name(t->dtype));
        return -1;
    }
    const float *x;
    if (t->dtype == ST_F32 && t->contiguous && ((uintptr_t)t->data % sizeof(float)) == 0) {
        x = t->data;
    } else {
        float *buf = malloc(t->numel ? t->numel * sizeof(float) : 1);
        if (!buf || gpt2_own(m, buf) != 0 || tc_tensor_to_f32(t, buf) != 0) {
            tw_set_err(err, errlen, "%s: tensor '%s': out of memory converting %zu values", c->path, t->name,
                       t->numel);
            return -1;
        }
        x = buf;
    }
    if (gpt2_check_finite(x, t->numel, c->path, t->name, err, errlen)) return -1;
    *dst = x;
    return 0;
}

/* The shape from model_args, checked as config.json values are. */
static int config_from_args(const torch_ckpt *c, gpt2_config *cfg, int *bias, char *err, size_t errlen)
{
    const tc_model_args *a = &c->args;
    unsigned need = TC_ARG_N_LAYER | TC_ARG_N_HEAD | TC_ARG_N_EMBD | TC_ARG_BLOCK_SIZE | TC_ARG_VOCAB_SIZE;
    if ((a->present & need) != need) {
        tw_set_err(
            err, errlen,
            "%s: model_args lacks %s (nanoGPT's checkpoint dict has n_layer, n_head, n_embd, block_size, "
            "vocab_size)",
            c->path, c->bare_state_dict ? "everything (a bare state dict)" : "a key");
        return -1;
    }
    const int64_t lim = INT32_MAX;
    if (a->n_layer > lim || a->n_head > lim || a->n_embd > lim / 4 || a->block_size > lim ||
        a->vocab_size > lim) {
        tw_set_err(err, errlen, "%s: model_args out of range", c->path);
        return -1;
    }
    *cfg = (gpt2_config){.n_layer = (int)a->n_layer,
                         .n_head = (int)a->n_head,
                         .n_embd = (int)a->n_embd,
                         .n_inner = 4 * (int)a->n_embd,
                         .n_ctx = (int)a->block_size,
                         .vocab_size = (int)a->vocab_size,
                         .ln_eps = 1e-5f};
    *bias = (a->present & TC_ARG_BIAS) ? a->bias : 1;
    return gpt2_config_check(cfg, c->path, err, errlen);
}

/* Binds a Linear weight stored (out, in) as a gpt2_mat of the map (in, out). */
static int bind_linear(gpt2_model *m, const torch_ckpt *c, const char *name, int64_t in, int64_t out,
                       gpt2_mat *w, char *err, size_t errlen)
{
    const float *p;
    if (bind(m, c, name, 2, out, in, 1, &p, err, errlen)) return -1;
    *w = (gpt2_mat){p, 1, (size_t)in};
    return 0;
}

static int bind_block(gpt2_model *m, const torch_ckpt *c, int l, int bias, char *err, size_t errlen)
{
    const int64_t C = m->cfg.n_embd, I = m->cfg.n_inner;
    gpt2_block *h = &m->p.h[l];
    char n[96];
#define NAME(suffix) (snprintf(n, sizeof n, "h.%d.%s", l, suffix), n)
    if (bind(m, c, NAME("ln_1.weight"), 1, C, 0, 1, &h->ln_1_w, err, errlen) ||
        bind(m, c, NAME("ln_1.bias"), 1, C, 0, bias, &h->ln_1_b, err, errlen) ||
        bind_linear(m, c, NAME("attn.c_attn.weight"), C, 3 * C, &h->attn_w, err, errlen) ||
        bind(m, c, NAME("attn.c_attn.bias"), 1, 3 * C, 0, bias, &h->attn_b, err, errlen) ||
        bind_linear(m, c, NAME("attn.c_proj.weight"), C, C, &h->attn_proj_w, err, errlen) ||
        bind(m, c, NAME("attn.c_proj.bias"), 1, C, 0, bias, &h->attn_proj_b, err, errlen) ||
        bind(m, c, NAME("ln_2.weight"), 1, C, 0, 1, &h->ln_2_w, err, errlen) ||
        bind(m, c, NAME("ln_2.bias"), 1, C, 0, bias, &h->ln_2_b, err, errlen) ||
        bind_linear(m, c, NAME("mlp.c_fc.weight"), C, I, &h->fc_w, err, errlen) ||
        bind(m, c, NAME("mlp.c_fc.bias"), 1, I, 0, bias, &h->fc_b, err, errlen) ||
        bind_linear(m, c, NAME("mlp.c_proj.weight"), I, C, &h->fc_proj_w, err, errlen) ||
        bind(m, c, NAME("mlp.c_proj.bias"), 1, C, 0, bias, &h->fc_proj_b, err, errlen))
        return -1;
#undef NAME
    /* a bias=False model has none; a model with some but not all is taken as
     * it is, each missing one as zero */
    if (!h->ln_1_b || !h->attn_b || !h->attn_proj_b || !h->ln_2_b || !h->fc_b || !h->fc_proj_b)
        m->has_bias = 0;
    return 0;
}

static size_t count_params(const gpt2_model *m)
{
    const size_t C = (size_t)m->cfg.n_embd, I = (size_t)m->cfg.n_inner;
    size_t n = (size_t)m->vocab_rows * C + (size_t)m->cfg.n_ctx * C + C + (m->p.ln_f_b ? C : 0);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const gpt2_block *h = &m->p.h[l];
        n += 2 * C + 3 * C * C + C * C + C * I + I * C;
        n += (h->ln_1_b ? C : 0) + (h->attn_b ? 3 * C : 0) + (h->attn_proj_b ? C : 0) + (h->ln_2_b ? C : 0) +
             (h->fc_b ? I : 0) + (h->fc_proj_b ? C : 0);
    }
    return n;
}

int nanogpt_load(const char *file, gpt2_model *m, char *err, size_t errlen)
{
    torch_ckpt *c = calloc(1, sizeof *c);
    if (!c) {
        tw_set_err(err, errlen, "%s: out of memory", file);
        return -1;
    }
    m->ckpt = c;
    m->format = GPT2_FORMAT_NANOGPT;
    m->file = strdup(file);
    if (!m->file) {
        tw_set_err(err, errlen, "%s: out of memory", file);
        return -1;
    }
    /* the CRC of every storage the model uses is checked: one pass, like the
     * finiteness check, so that a corrupt archive never starts serving */
    if (torch_ckpt_open(file, c, err, errlen) || torch_ckpt_verify_crc(c, err, errlen)) return -1;
    int bias;
    if (config_from_args(c, &m->cfg, &bias, err, errlen)) return -1;
    m->has_bias = bias;
    m->vocab_rows = m->cfg.vocab_size;
    m->p.h = calloc((size_t)m->cfg.n_layer, sizeof *m->p.h);
    if (!m->p.h) {
        tw_set_err(err, errlen, "%s: out of memory", file);
        return -1;
    }
    const int64_t C = m->cfg.n_embd;
    if (bind(m, c, "wte.weight", 2, m->cfg.vocab_size, C, 1, &m->p.wte, err, errlen) ||
        bind(m, c, "wpe.weight", 2, m->cfg.n_ctx, C, 1, &m->p.wpe, err, errlen) ||
        bind(m, c, "ln_f.weight", 1, C, 0, 1, &m->p.ln_f_w, err, errlen) ||
        bind(m, c, "ln_f.bias", 1, C, 0, bias, &m->p.ln_f_b, err, errlen))
        return -1;
    if (!m->p.ln_f_b) m->has_bias = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        if (bind_block(m, c, l, bias, err, errlen)) return -1;
    /* lm_head.weight is tied to wte in nanoGPT (one storage): nothing to bind;
     * the attn.bias causal masks are buffers, not parameters */
    const tc_tensor *wte = torch_ckpt_find(c, PREFIX "wte.weight");
    if (!wte) wte = torch_ckpt_find(c, "wte.weight");
    snprintf(m->dtype, sizeof m->dtype, "%s", st_dtype_name(wte->dtype));
    m->n_params = count_params(m);
    m->file_size = c->size;
    m->has_iter_num = c->has_iter_num;
    m->iter_num = c->iter_num;
    m->compiled = c->compiled;
    if (c->dataset) snprintf(m->dataset, sizeof m->dataset, "%s", c->dataset);
    return 0;
}
