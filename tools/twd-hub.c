/* twd-hub: the Hugging Face cache functions of server/hub.h from the command
 * line (tests/integration/test_hub_cache.py drives it; handy by hand too).
 *
 *   twd-hub fetch [--revision REV] [--timeout S] [--progress] URL REPO ROOT
 *   twd-hub cached [--revision REV] ROOT REPO
 *   twd-hub root
 *   twd-hub repo-of PATH
 *
 * Each prints one line of JSON on stdout:
 *   fetch    {"snapshot": DIR}
 *   cached   {"found": 0|1, "snapshot": DIR|null, "commit": C|null}
 *   root     {"root": DIR}
 *   repo-of  {"repo": "org/name"|null, "snapshot": DIR|null}
 * Exit status 0, 1 when the function fails (one line on stderr), 2 on a bad
 * argument. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "server/hub.h"
#include "tool_common.h"

static const tool_help help = {
    "usage: twd-hub fetch [--revision REV] [--timeout S] [--progress] URL REPO ROOT\n"
    "       twd-hub cached [--revision REV] ROOT REPO\n"
    "       twd-hub root\n"
    "       twd-hub repo-of PATH\n",
    "The Hugging Face cache functions of server/hub.h; one line of JSON on stdout.\n"
    "\n"
    "  fetch     download REPO at REV (default main) from the hub at URL into\n"
    "            the cache at ROOT: {\"snapshot\"}\n"
    "  cached    the snapshot of REPO at REV in ROOT, offline:\n"
    "            {\"found\", \"snapshot\", \"commit\"}\n"
    "  root      the cache root from the environment: {\"root\"}\n"
    "  repo-of   the repo and snapshot of a models--org--name folder or of a\n"
    "            snapshot folder: {\"repo\", \"snapshot\"} (null: neither)\n"
    "\n"
    "  --revision REV  branch, tag or commit (default main)\n"
    "  --timeout S     bound of the first request, seconds (default 5)\n"
    "  --progress      print the download's progress lines on stderr\n"
    "  -h, --help      this text\n"};

typedef struct {
    const char *revision;
    long long timeout;
    int progress;
    char **rest;
    int nrest;
} hub_args;

static int parse_args(int argc, char **argv, void *ctx)
{
    hub_args *a = ctx;
    const tool_opt opts[] = {OPT_STR("revision", &a->revision), OPT_LL("timeout", &a->timeout, 1, 3600),
                             OPT_FLAG("progress", &a->progress), OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, TOOL_ANY_OPERANDS);
    if (rc) return rc;
    a->rest = argv + optind;
    a->nrest = argc - optind;
    static const struct {
        const char *cmd;
        int operands;
    } cmds[] = {{"fetch", 3}, {"cached", 2}, {"root", 0}, {"repo-of", 1}};
    for (size_t i = 0; a->nrest > 0 && i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(a->rest[0], cmds[i].cmd) == 0 && a->nrest == 1 + cmds[i].operands) return 0;
    tool_usage(stderr, &help);
    return -1;
}

static void on_progress(void *ctx, const char *status)
{
    (void)ctx;
    fprintf(stderr, "twd-hub: %s\n", status);
}

static json_t *str_or_null(int ok, const char *s) { return ok ? json_string(s) : json_null(); }

int main(int argc, char **argv)
{
    hub_args a = {NULL, 5, 0, NULL, 0};
    int rc = tool_start("twd-hub", argc, argv, parse_args, &a, 2);
    if (rc >= 0) return rc;
    const char *cmd = a.rest[0];
    char dir[4096], other[4096], err[2048] = "";
    json_t *out = NULL;
    if (strcmp(cmd, "fetch") == 0) {
        if (hub_fetch(a.rest[1], a.rest[2], a.revision, a.rest[3], (long)a.timeout,
                      a.progress ? on_progress : NULL, NULL, dir, sizeof dir, err, sizeof err) != 0) {
            tw_log("%s", err);
            return 1;
        }
        out = json_pack("{s:s}", "snapshot", dir);
    } else if (strcmp(cmd, "cached") == 0) {
        dir[0] = other[0] = '\0';
        int r = hub_cached_snapshot(a.rest[1], a.rest[2], a.revision, dir, sizeof dir, other, sizeof other);
        if (r < 0) {
            tw_log("%s at %s: an invalid repo id or revision, or an unreadable ref", a.rest[2],
                   a.revision ? a.revision : "main");
            return 1;
        }
        out = json_pack("{s:i,s:o,s:o}", "found", r, "snapshot", str_or_null(dir[0], dir), "commit",
                        str_or_null(other[0], other));
    } else if (strcmp(cmd, "root") == 0) {
        if (hub_cache_root(dir, sizeof dir) != 0) {
            tw_log("no cache root: no home folder, or the path is too long");
            return 1;
        }
        out = json_pack("{s:s}", "root", dir);
    } else {
        int r = hub_repo_of_path(a.rest[1], other, sizeof other, dir, sizeof dir, err, sizeof err);
        if (r < 0) {
            tw_log("%s", err);
            return 1;
        }
        out = json_pack("{s:o,s:o}", "repo", str_or_null(r, other), "snapshot", str_or_null(r, dir));
    }
    return tool_print_json(out, 0) == 0 ? 0 : 1;
}
