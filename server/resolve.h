/* Where a model comes from: a spec (a path, a hub id, or nothing) resolved
 * to the checkpoint to load, its name and origin; and the tokenizer a loaded
 * checkpoint speaks (docs/HUB.md has the order in which places are tried). */
#ifndef TW_RESOLVE_H
#define TW_RESOLVE_H

#include <stddef.h>

#include "api/api.h"
#include "server/config.h"

typedef struct {
    char path[4096]; /* what gpt2_load reads: a folder or a checkpoint file */
    char name[256];  /* the hub id, or the folder's name (never a commit hash) */
    char origin[32]; /* "configured", "hf-cache" (the Hugging Face cache), "twd-cache" (twd's older
                      * cache), "download" (fetched now), "demo" */
} model_source;

/* Resolves one spec of the models option ("" for the default model). The
 * status of `app` follows downloads. 0, or -1 with one line in err. */
int resolve_model(const char *spec, const twd_config *cfg, twd_app *app, model_source *out, char *err,
                  size_t errlen);

/* Loads the tokenizer of a loaded model: for a nanoGPT checkpoint its
 * meta.pkl (beside it, or data/<dataset>/meta.pkl of the nanoGPT folder) if
 * it has one, else GPT-2 BPE files beside the checkpoint, else the
 * `tokenizer` option's folder, else GPT-2's files that twd ships (for a
 * vocabulary of GPT-2's size). NULL with one line in err. */
tokenizer *resolve_tokenizer(const gpt2_model *m, const twd_config *cfg, char *err, size_t errlen);

/* Where twd keeps what it ships: its demo model (and with it GPT-2's
 * tokenizer files), relative to the source tree or the installed data
 * folder (config_data_path). */
#define DEMO_MODEL_DIR "tools/demo-model/twd-demo"

#endif
