/* TRANSITIONAL: the old hub interface, for the server/main.c of before the
 * Hugging Face cache layout. server/meson.build force-includes this header
 * into main.c only (so that main.c's calls still compile), and these two
 * functions map the old calls onto hub.h: dest (cache_dir/hub/<org>-<name>)
 * becomes a symlink to the snapshot that hub_fetch writes into the cache
 * root dirname(dest). Delete this file, server/hub_legacy.c and their lines
 * in server/meson.build once main.c calls hub.h's functions. */
#ifndef TW_HUB_LEGACY_H
#define TW_HUB_LEGACY_H

#include "server/hub.h"

/* hub_fetch of `repo` at "main" into the cache root dirname(dest), then
 * dest -> that snapshot (a relative symlink). 0, or -1 with one line. */
int hub_legacy_fetch(const char *base_url, const char *repo, const char *dest, long timeout,
                     hub_progress_fn progress, void *ctx, char *err, size_t errlen);

/* True when dest leads to a complete snapshot (or is a finished download of
 * the old layout, with dest/.complete). */
int hub_complete(const char *dest);

#define hub_fetch hub_legacy_fetch

#endif
