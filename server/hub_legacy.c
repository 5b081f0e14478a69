/* TRANSITIONAL: see hub_legacy.h. Uses only hub.h's public functions (this
 * file does not include hub_legacy.h, whose macro would rename hub_fetch). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fs.h"
#include "server/hub.h"

int hub_legacy_fetch(const char *base_url, const char *repo, const char *dest, long timeout,
                     hub_progress_fn progress, void *ctx, char *err, size_t errlen);
int hub_complete(const char *dest);

/* dirname(dest) into root[n]: 0 or -1. */
static int parent_of(const char *dest, char *root, size_t n)
{
    const char *slash = strrchr(dest, '/');
    if (!slash) return fs_path(root, n, ".");
    if (slash == dest) return fs_path(root, n, "/");
    return fs_path(root, n, "%.*s", (int)(slash - dest), dest);
}

int hub_legacy_fetch(const char *base_url, const char *repo, const char *dest, long timeout,
                     hub_progress_fn progress, void *ctx, char *err, size_t errlen)
{
    char root[4096], snap[4096];
    if (parent_of(dest, root, sizeof root) != 0) {
        tw_set_err(err, errlen, "%.1000s: path too long", dest);
        return -1;
    }
    if (hub_fetch(base_url, repo, "main", root, timeout, progress, ctx, snap, sizeof snap, err, errlen) != 0)
        return -1;
    struct stat st;
    if (lstat(dest, &st) == 0 && !S_ISLNK(st.st_mode)) {
        tw_set_err(err, errlen, "%s: a download of an older twd is in the way; remove it", dest);
        return -1;
    }
    /* snap is root/<repo folder>/snapshots/<commit>: link to it relatively */
    const char *rel = snap + strlen(root) + (root[strlen(root) - 1] == '/' ? 0 : 1);
    unlink(dest);
    if (symlink(rel, dest) != 0) {
        tw_set_err(err, errlen, "%s: %s", dest, strerror(errno));
        return -1;
    }
    return 0;
}

int hub_complete(const char *dest)
{
    char p[4096], root[4096], repo[256], snap[4096], e[512];
    if (fs_path(p, sizeof p, "%s/.complete", dest) == 0 && access(p, F_OK) == 0) return 1;
    if (parent_of(dest, root, sizeof root) != 0 ||
        hub_repo_of_path(dest, repo, sizeof repo, snap, sizeof snap, e, sizeof e) != 1)
        return 0;
    const char *commit = strrchr(snap, '/');
    return commit && hub_cached_snapshot(root, repo, commit + 1, NULL, 0, NULL, 0) == 1;
}
