/* GPT-2 snapshots from a Hugging Face hub (or a mirror with the same
 * /{repo}/resolve/{revision}/{file} layout), kept in the Hugging Face cache
 * layout so that twd and the Python ecosystem (huggingface_hub, transformers)
 * share one copy of every model (docs/HUB.md):
 *
 *   <root>/models--<org>--<name>/blobs/<etag>           the file contents
 *   <root>/models--<org>--<name>/snapshots/<commit>/<file> -> ../../blobs/<etag>
 *   <root>/models--<org>--<name>/refs/<revision>        the commit, no newline
 *
 * <etag> is the SHA-256 of an LFS file (X-Linked-Etag), the git blob hash of
 * a regular file (ETag); <commit> is the hub's X-Repo-Commit, or the revision
 * itself when a mirror sends none.
 *
 * Repo ids are "org/name" or "name" (legacy ids such as "gpt2"), each part
 * 1..96 of [A-Za-z0-9._-] beginning and ending with a letter, digit or '_',
 * with no "--" and no "..". Revisions (branch, tag, commit, "refs/pr/1") are
 * 1..255 of [A-Za-z0-9._/-] with no "..", "//", leading '/' or '.', or
 * trailing '/'. Anything else is refused before a path or a URL is built. */
#ifndef TW_HUB_H
#define TW_HUB_H

#include <stddef.h>

/* Called with a one-line status ("downloading model.safetensors: 45% of
 * 548.0 MB", "verifying model.safetensors") as the download advances. */
typedef void (*hub_progress_fn)(void *ctx, const char *status);

/* Downloads config.json, model.safetensors and the tokenizer (vocab.json +
 * merges.txt; when the repo has no such pair, encoder.json + vocab.bpe) of
 * `repo` at `revision` (NULL or "": "main") from `base_url` into the cache at
 * `cache_root`, and puts the snapshot folder's path in snapshot_dir[n].
 *
 * A blob already in the repo's blobs/ with the announced size (and SHA-256,
 * for LFS files) is not downloaded again, nor one that another models--*
 * folder of the same cache holds under the same content hash (it is
 * hard-linked, else copied). Partial downloads are kept as
 * blobs/<etag>.incomplete and resumed with a Range request; every LFS file is
 * checked against its SHA-256 before it is moved into place (a mismatch
 * removes the partial). Downloads of one blob are serialised through
 * <root>/.locks/models--<org>--<name>/<etag>.lock (flock, as huggingface_hub).
 * refs/<revision> is written last, so it never names an incomplete snapshot.
 *
 * `timeout` (seconds) bounds the decision whether the hub is there: the
 * first request, from resolving the name to the end of its answer (the
 * later HEAD requests get three times as long); the downloads themselves
 * are abandoned (to be resumed) only when they stall. snapshot_dir may be
 * NULL. Safe to call from several threads. 0 on success, -1 with one line
 * in err. */
int hub_fetch(const char *base_url, const char *repo, const char *revision, const char *cache_root,
              long timeout, hub_progress_fn progress, void *ctx, char *snapshot_dir, size_t n, char *err,
              size_t errlen);

/* The snapshot of `repo` at `revision` (NULL or "": "main") in the cache at
 * cache_root, without the network: refs/<revision> names the commit, or the
 * revision is itself a 40-hex commit with a snapshot folder. Fills
 * snapshot_dir[n] and commit[cn] (either may be NULL) whenever a snapshot
 * folder is named. 1 when it is complete (config.json, model.safetensors and
 * a tokenizer pair present, each resolving to a regular file), 0 when there
 * is no such snapshot or it is incomplete, -1 on an invalid repo or revision
 * or an unreadable ref. */
int hub_cached_snapshot(const char *cache_root, const char *repo, const char *revision, char *snapshot_dir,
                        size_t n, char *commit, size_t cn);

/* The cache root, as huggingface_hub finds it: $HF_HUB_CACHE, else
 * $HUGGINGFACE_HUB_CACHE (its older name), else $HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (empty
 * variables count as unset; a leading "~/" is the home folder). 0, or -1
 * when no home folder is known or the path does not fit in out[n]. */
int hub_cache_root(char *out, size_t n);

/* When `path` is a models--<org>--<name> folder (its snapshot: the one
 * refs/main names, else the only one there is) or a snapshot folder inside
 * one (models--<org>--<name>/snapshots/<commit>), fills repo[n] with
 * "org/name" and snapshot_dir[m] with the snapshot folder (absolute, symlinks
 * resolved) and returns 1. 0 when path is something else (or does not
 * exist); -1 with one line in err for a repo folder without a snapshot to
 * choose. Whether the snapshot is complete is hub_cached_snapshot's
 * question. */
int hub_repo_of_path(const char *path, char *repo, size_t n, char *snapshot_dir, size_t m, char *err,
                     size_t errlen);

#endif
