/* Loading a model into its place in the service, and loading it again when
 * its checkpoint file changes underneath.
 *
 * The watcher thread looks at every served checkpoint file: woken by
 * inotify (the file itself, and its folder for a file renamed over it) and
 * at least every quarter of a second, it compares the file with what was
 * mapped (gpt2_file_changed: device, inode, size, mtime, and whether a page
 * faulted). A change (truncated, rewritten in place, replaced, removed):
 *   1. api_app_mark_changed: the model answers 503 ("the checkpoint
 *      changed; reloading", naming the file), its computations under way
 *      are canceled (answers that read the changed file are never sent nor
 *      kept);
 *   2. once no request holds the model (its reference count is 0), the old
 *      model is freed with everything derived from it: the mapping, the
 *      answer cache, the block cache, the layouts;
 *   3. once the file has stayed the same for reload_wait seconds, it is
 *      loaded anew (a new mapping, every check of a first load); the model
 *      is READY again, or FAILED with the loader's one-line message (shown
 *      by /health and /models) until the file changes again, which starts
 *      another attempt.
 * Requests may also notice a change first (api_prepare and api_compute
 * check the file): they mark the model, and the watcher does the rest. */
#ifndef TW_RELOAD_H
#define TW_RELOAD_H

#include <stddef.h>

#include "api/api.h"
#include "server/config.h"

/* Loads the checkpoint at path (a folder or a file, as resolved) into app:
 * the model, its tokenizer and the api state (caches, layouts). Sets
 * app->load_seconds, synthetic and synthetic_seed. 0, or -1 with one line in
 * err and nothing of it left loaded. Does not touch app->state. */
int model_load(twd_app *app, const char *path, const twd_config *cfg, char *err, size_t errlen);

/* Frees what model_load made; no request may hold the model. */
void model_unload(twd_app *app);

typedef struct reloader reloader;

/* Starts watching the checkpoints of every model of svc, which are READY;
 * paths[i] is what model i was loaded from. NULL with one line in err. */
reloader *reloader_start(api_service *svc, const char (*paths)[4096], const twd_config *cfg, char *err,
                         size_t errlen);

/* Stops the watcher (a reload under way is finished first). NULL ok. */
void reloader_stop(reloader *r);

#endif
