/* Download of a GPT-2 snapshot from a Hugging Face hub (or a mirror with the
 * same /{repo}/resolve/main/{file} layout): resumable, with progress, and
 * verified against the sizes and SHA-256 the hub announces
 * (X-Linked-Size / X-Linked-Etag for LFS files). */
#ifndef TW_HUB_H
#define TW_HUB_H

#include <stddef.h>

/* Called with a one-line status ("model.safetensors: 45% of 548 MB") as the
 * download advances. */
typedef void (*hub_progress_fn)(void *ctx, const char *status);

/* Downloads config.json, vocab.json, merges.txt and model.safetensors of
 * `repo` from `base_url` into `dest` (created). Partial files are kept under
 * dest/.partial and resumed by a later call; the files are moved into place
 * only once all are complete and verified, and dest/.complete is written
 * last. `timeout` (seconds) bounds the decision whether the hub is there:
 * the first request, from resolving the name to the end of its answer; the
 * downloads themselves are abandoned (to be resumed) only when they stall.
 * 0 on success, -1 with one line in err. */
int hub_fetch(const char *base_url, const char *repo, const char *dest, long timeout,
              hub_progress_fn progress, void *ctx, char *err, size_t errlen);

/* True when dest/.complete exists (a finished download). */
int hub_complete(const char *dest);

#endif
