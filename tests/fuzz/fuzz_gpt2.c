/* libFuzzer target for core/model/gpt2: gpt2_config_load on arbitrary JSON,
 * then gpt2_load on a folder whose config.json and model.safetensors are
 * both made of the input:
 *
 *   [u32 little-endian n][n bytes of config.json][model.safetensors]
 *
 * (an input shorter than 4 bytes is all model.safetensors, with an empty
 * config.json). The loader checks every shape against the config before it
 * touches data, so a small config with a small file reaches the binding and
 * conversion code. A loaded model is checked: its config is the one
 * gpt2_config_load read, every parameter is F32 data inside the mapping or
 * in a buffer the model owns, and every value is read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/model/gpt2.h"
#include "tests/fuzz/fuzz_util.h"

static fz_file cfg_file, st_file_in;
static const char *dir;
static char cfg_path[600], st_path[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_file_init(&cfg_file, "config.json");
    fz_file_init(&st_file_in, "model.safetensors");
    dir = fz_tempdir("gpt2");
    fz_link(dir, "config.json", &cfg_file);
    fz_link(dir, "model.safetensors", &st_file_in);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    return 0;
}

static uint64_t touch(const gpt2_model *m, const float *p, size_t n)
{
    FZ_CHECK(p != NULL, "unbound parameter");
    const uint8_t *b = (const uint8_t *)p, *map = m->map;
    int in_map = b >= map && b < map + m->map_len;
    if (in_map) {
        FZ_CHECK((uintptr_t)p % sizeof(float) == 0, "misaligned F32 used in place");
        FZ_CHECK(n <= (m->map_len - (size_t)(b - map)) / sizeof(float), "tensor runs past the mapping");
    } else {
        int owned = 0;
        for (size_t i = 0; i < m->n_owned && !owned; i++) owned = m->owned[i] == p;
        FZ_CHECK(owned, "parameter neither in the mapping nor owned");
    }
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) h += p[i] == p[i];
    return h;
}

static void check_model(const gpt2_model *m, const gpt2_config *c)
{
    FZ_CHECK(memcmp(&m->cfg, c, sizeof *c) == 0, "loaded config differs from gpt2_config_load's");
    FZ_CHECK(m->n_params == gpt2_param_count(c), "n_params");
    FZ_CHECK(!strcmp(m->dtype, "F32") || !strcmp(m->dtype, "F16") || !strcmp(m->dtype, "BF16"), "dtype %s",
             m->dtype);
    FZ_CHECK(m->n_owned <= 4 + 12 * (size_t)c->n_layer, "n_owned %zu", m->n_owned);
    const size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner;
    uint64_t h = touch(m, m->p.wte, (size_t)c->vocab_size * C) + touch(m, m->p.wpe, (size_t)c->n_ctx * C) +
                 touch(m, m->p.ln_f_w, C) + touch(m, m->p.ln_f_b, C);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_block *b = &m->p.h[l];
        h += touch(m, b->ln_1_w, C) + touch(m, b->ln_1_b, C) + touch(m, b->attn_w.p, C * 3 * C) +
             touch(m, b->attn_b, 3 * C) + touch(m, b->attn_proj_w.p, C * C) + touch(m, b->attn_proj_b, C) +
             touch(m, b->ln_2_w, C) + touch(m, b->ln_2_b, C) + touch(m, b->fc_w.p, C * I) +
             touch(m, b->fc_b, I) + touch(m, b->fc_proj_w.p, I * C) + touch(m, b->fc_proj_b, C);
    }
    volatile uint64_t keep = h;
    (void)keep;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *cj, *st;
    size_t ncj, nst;
    fz_split(data, size, &cj, &ncj, &st, &nst);
    fz_file_set(&cfg_file, cj, ncj);
    fz_file_set(&st_file_in, st, nst);

    char err[1024], prefix[700];
    gpt2_config c;
    int syn;
    uint64_t seed;
    snprintf(prefix, sizeof prefix, "%s: ", cfg_file.path);
    int crc = gpt2_config_load(cfg_file.path, &c, &syn, &seed, err, sizeof err);
    if (crc == 0) {
        FZ_CHECK(c.n_layer >= 1 && c.n_layer <= GPT2_MAX_LAYER, "n_layer %d", c.n_layer);
        FZ_CHECK(c.n_head >= 1 && c.n_head <= GPT2_MAX_HEAD, "n_head %d", c.n_head);
        FZ_CHECK(c.n_embd >= 1 && c.n_embd <= GPT2_MAX_EMBD && c.n_embd % c.n_head == 0, "n_embd %d",
                 c.n_embd);
        FZ_CHECK(c.n_inner >= 1 && c.n_inner <= GPT2_MAX_INNER, "n_inner %d", c.n_inner);
        FZ_CHECK(c.n_ctx >= 1 && c.n_ctx <= GPT2_MAX_CTX, "n_ctx %d", c.n_ctx);
        FZ_CHECK(c.vocab_size >= 1 && c.vocab_size <= GPT2_MAX_VOCAB, "vocab_size %d", c.vocab_size);
        FZ_CHECK(c.ln_eps > 0 && c.ln_eps < 1, "ln_eps %g", (double)c.ln_eps);
        FZ_CHECK(syn == 0 || syn == 1, "synthetic %d", syn);
        FZ_CHECK(syn || seed == 0, "seed without synthetic");
    } else {
        FZ_CHECK(fz_one_line(err, prefix), "error message \"%s\"", err);
        gpt2_config zero;
        memset(&zero, 0, sizeof zero);
        FZ_CHECK(memcmp(&c, &zero, sizeof c) == 0, "failed load left a config");
    }

    gpt2_model m;
    if (gpt2_load(dir, &m, err, sizeof err) == 0) {
        FZ_CHECK(crc == 0, "gpt2_load accepted a config gpt2_config_load refused");
        check_model(&m, &c);
    } else {
        FZ_CHECK(strchr(err, '\n') == NULL && (strncmp(err, cfg_path, strlen(cfg_path)) == 0 ||
                                               strncmp(err, st_path, strlen(st_path)) == 0),
                 "error message \"%s\"", err);
        FZ_CHECK(m.map == NULL && m.owned == NULL && m.p.h == NULL && m.dir == NULL,
                 "failed load left state");
    }
    gpt2_free(&m);
    gpt2_free(&m);
    return 0;
}
