/* libFuzzer target for server/config: the `key = value` file reader, one
 * option set from text, and the command line.
 *
 * The input is [config file text] ['\0' [argument lines]]:
 *   - the text before the first NUL is read by config_load_file (memfd);
 *   - the lines after it are argv[1..] of config_from_args, where the
 *     argument after "--config" always names the memfd (never a path from
 *     the input: /dev/zero or a FIFO would only test the machine);
 *   - every line of either part holding '=' is also given to config_set
 *     directly, split at the first '='.
 * Each starts from config_defaults. Checked: every numeric option stays in
 * its bounds and every string NUL-terminated in its buffer; a config_set
 * that fails changes nothing, one that succeeds changes only its option;
 * errors are one line (the file's "FILE:LINE: ..."). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/config.h"
#include "tests/fuzz/fuzz_util.h"

static fz_file conf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_file_init(&conf, "twd.conf");
    /* --help and --print-config write to stdout */
    FZ_CHECK(freopen("/dev/null", "w", stdout) != NULL, "cannot silence stdout");
    return 0;
}

static void check_bounds(const twd_config *c)
{
    for (size_t i = 0; i < cfg_n_options; i++) {
        const cfg_option *o = &cfg_options[i];
        const char *field = (const char *)c + o->offset;
        switch (o->type) {
        case CFG_INT:
        case CFG_SIZE: {
            int64_t v;
            memcpy(&v, field, sizeof v);
            FZ_CHECK(v >= o->min && v <= o->max, "%s = %lld outside %lld..%lld", o->name, (long long)v,
                     (long long)o->min, (long long)o->max);
            break;
        }
        case CFG_STRING: FZ_CHECK(memchr(field, '\0', o->size) != NULL, "%s not terminated", o->name); break;
        case CFG_BOOL: {
            unsigned char b;
            memcpy(&b, field, 1);
            FZ_CHECK(b <= 1, "%s = %u", o->name, b);
            break;
        }
        }
    }
}

/* The byte range of option o inside twd_config. */
static size_t field_size(const cfg_option *o)
{
    return o->type == CFG_STRING ? o->size : o->type == CFG_BOOL ? sizeof(bool) : sizeof(int64_t);
}

static void set_one(twd_config *c, const char *line)
{
    const char *eq = strchr(line, '=');
    if (!eq) return;
    char *key = strndup(line, (size_t)(eq - line));
    FZ_CHECK(key != NULL, "out of memory");
    twd_config before;
    memcpy(&before, c, sizeof before); /* padding included */
    char err[512];
    int rc = config_set(c, key, eq + 1, err, sizeof err);
    const cfg_option *o = config_find(key);
    if (rc != 0) {
        FZ_CHECK(memcmp(&before, c, sizeof *c) == 0, "failed config_set of '%s' changed the configuration",
                 key);
        FZ_CHECK(strchr(err, '\n') == NULL, "message \"%s\"", err);
    } else {
        FZ_CHECK(o != NULL, "config_set accepted unknown option '%s'", key);
        size_t off = o->offset, n = field_size(o);
        FZ_CHECK(memcmp(&before, c, off) == 0 &&
                     memcmp((char *)&before + off + n, (char *)c + off + n, sizeof *c - off - n) == 0,
                 "config_set of '%s' changed another option", key);
        if (o->type == CFG_STRING) FZ_CHECK(strcmp((char *)c + off, eq + 1) == 0, "%s not stored", key);
    }
    free(key);
    check_bounds(c);
}

/* Splits s[0..n) (no NUL inside) into lines, each a malloc'd string. */
static char **lines_of(const char *s, size_t n, int *count)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) cap += s[i] == '\n';
    char **v = calloc(cap + 2, sizeof *v);
    FZ_CHECK(v != NULL, "out of memory");
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '\n') {
            if (i == n && start == n && k > 0) break; /* no empty last line after a final '\n' */
            v[k] = strndup(s + start, i - start);
            FZ_CHECK(v[k] != NULL, "out of memory");
            k++;
            start = i + 1;
        }
    }
    *count = k;
    return v;
}

static void free_lines(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t nfile = nul ? (size_t)(nul - s) : size;
    const char *args = nul ? nul + 1 : s + size;
    size_t nargs = nul ? size - nfile - 1 : 0;
    /* arguments are C strings: a further NUL ends them */
    const char *nul2 = memchr(args, '\0', nargs);
    if (nul2) nargs = (size_t)(nul2 - args);
    fz_file_set(&conf, s, nfile);

    char err[1024], prefix[80];
    twd_config c;

    /* the file */
    config_defaults(&c);
    check_bounds(&c);
    snprintf(prefix, sizeof prefix, "%s:", conf.path);
    if (config_load_file(&c, conf.path, err, sizeof err) != 0) {
        FZ_CHECK(strncmp(err, prefix, strlen(prefix)) == 0, "message \"%s\"", err);
        FZ_CHECK(strchr(err, '\n') == NULL, "message \"%s\"", err);
    }
    check_bounds(&c);
    (void)config_check(&c, err, sizeof err);
    api_settings set;
    config_api_settings(&c, &set);

    /* each line, as one config_set */
    int nl, na;
    char **fl = lines_of(s, nfile, &nl);
    char **al = lines_of(args, nargs, &na);
    config_defaults(&c);
    for (int i = 0; i < nl; i++) set_one(&c, fl[i]);
    for (int i = 0; i < na; i++) set_one(&c, al[i]);

    /* the command line */
    if (nul) {
        char **argv = calloc((size_t)na + 2, sizeof *argv);
        FZ_CHECK(argv != NULL, "out of memory");
        argv[0] = "twd";
        for (int i = 0; i < na; i++)
            argv[i + 1] = i > 0 && strcmp(al[i - 1], "--config") == 0 ? conf.path : al[i];
        config_defaults(&c);
        int rc = config_from_args(&c, na + 1, argv, err, sizeof err);
        FZ_CHECK(rc >= -1 && rc <= 1, "config_from_args returned %d", rc);
        if (rc < 0) FZ_CHECK(strchr(err, '\n') == NULL, "message \"%s\"", err);
        check_bounds(&c);
        free(argv);
    }
    free_lines(fl, nl);
    free_lines(al, na);
    return 0;
}
