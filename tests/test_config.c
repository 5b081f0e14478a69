/* The configuration table, file parser and flags. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/config.h"
#include "tests/support/test_fs.h"
#include "tests/support/test_mem.h"
#include "tests/support/tw_check.h"

/* text as a file in a new temporary directory; its path (static storage). */
static char *write_tmp(const char *text)
{
    static char dir[512], path[600];
    tt_tmpdir(dir, sizeof dir, "conf");
    snprintf(path, sizeof path, "%s/twd.conf", dir);
    tt_write_file(path, text, strlen(text));
    return path;
}

START_TEST(defaults_within_bounds)
{
    twd_config c;
    config_defaults(&c);
    ck_assert_str_eq(c.listen, "127.0.0.1");
    ck_assert_int_eq(c.port, 8080);
    for (size_t i = 0; i < cfg_n_options; i++) {
        const cfg_option *o = &cfg_options[i];
        ck_assert_msg(o->doc && strlen(o->doc) > 5, "option %s lacks documentation", o->name);
        if (o->type == CFG_INT || o->type == CFG_SIZE || o->type == CFG_MIB) {
            int64_t v = *(int64_t *)((char *)&c + o->offset);
            ck_assert_msg(v >= o->min && v <= o->max, "default of %s out of its bounds", o->name);
        }
        for (size_t j = 0; j < i; j++)
            ck_assert_msg(strcmp(cfg_options[j].name, o->name), "duplicate %s", o->name);
    }
}
END_TEST

START_TEST(set_checks_types_and_bounds)
{
    twd_config c;
    char err[256];
    config_defaults(&c);
    ck_assert_int_eq(config_set(&c, "port", "9000", err, sizeof err), 0);
    ck_assert_int_eq(c.port, 9000);
    ck_assert_int_eq(config_set(&c, "port", "70000", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "port") && strstr(err, "0..65535"), "message: %s", err);
    ck_assert_int_eq(c.port, 9000);
    ck_assert_int_eq(config_set(&c, "port", "12x", err, sizeof err), -1);
    ck_assert_int_eq(config_set(&c, "port", "", err, sizeof err), -1);
    ck_assert_int_eq(config_set(&c, "nope", "1", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "unknown option 'nope'"));
    ck_assert_int_eq(config_set(&c, "max_body", "2m", err, sizeof err), 0);
    ck_assert_int_eq(c.max_body, 2 * 1048576);
    ck_assert_int_eq(config_set(&c, "max_body", "2g", err, sizeof err), -1); /* above 1 GiB */
    ck_assert_int_eq(config_set(&c, "threads", "2k", err, sizeof err), -1);  /* no suffix on plain ints */
    ck_assert_int_eq(config_set(&c, "listen", "::1", err, sizeof err), 0);
    ck_assert_int_eq(config_set(&c, "listen", "0.0.0.0", err, sizeof err), 0);
    ck_assert_int_eq(config_set(&c, "listen", "localhost", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "option 'listen': 'localhost' is not an IPv4 or IPv6 address"), "%s", err);
    ck_assert_str_eq(c.listen, "0.0.0.0");
    ck_assert_int_eq(config_set(&c, "access_log", "off", err, sizeof err), 0);
    ck_assert(!c.access_log);
    ck_assert_int_eq(config_set(&c, "access_log", "maybe", err, sizeof err), -1);
    char big[20000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_assert_int_eq(config_set(&c, "model", big, err, sizeof err), -1);
}
END_TEST

/* cache_mb and answer_cache_mb are MiB: a plain number is MiB, a suffix is
 * a binary size that must come to whole MiB. */
START_TEST(mib_options)
{
    twd_config c;
    char err[256];
    config_defaults(&c);
    ck_assert_int_eq(c.cache_mb, 2048);
    ck_assert_int_eq(c.answer_cache_mb, 256);
    static const struct {
        const char *v;
        int64_t mib;
    } ok[] = {{"0", 0},     {"512", 512}, {"2g", 2048},    {"2G", 2048},        {"1m", 1},
              {"1024k", 1}, {"3072K", 3}, {"1t", 1048576}, {"1048576", 1048576}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ck_assert_msg(config_set(&c, "cache_mb", ok[i].v, err, sizeof err) == 0, "%s: %s", ok[i].v, err);
        ck_assert_msg(c.cache_mb == ok[i].mib, "%s gave %lld MiB", ok[i].v, (long long)c.cache_mb);
        ck_assert_int_eq(config_set(&c, "answer_cache_mb", ok[i].v, err, sizeof err), 0);
        ck_assert_int_eq(c.answer_cache_mb, ok[i].mib);
    }
    ck_assert_int_eq(config_set(&c, "cache_mb", "64", err, sizeof err), 0);
    /* not a whole MiB: refused with a message saying so, the old value kept */
    static const char *const partial[] = {"1k", "1023k", "1025k", "-1k"};
    for (size_t i = 0; i < sizeof partial / sizeof partial[0]; i++) {
        ck_assert_int_eq(config_set(&c, "cache_mb", partial[i], err, sizeof err), -1);
        ck_assert_msg(strstr(err, "cache_mb") && strstr(err, "whole number of MiB"), "%s: %s", partial[i],
                      err);
    }
    /* out of range, malformed, negative, overflowing */
    static const char *const bad[] = {
        "2t", "1048577", "-1", "", "12x", "1kb", "k", "1.5g", "9223372036854775807g", "99999999999999999999",
        "1 g"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(config_set(&c, "cache_mb", bad[i], err, sizeof err) == -1, "'%s' accepted", bad[i]);
        ck_assert_msg(strstr(err, "cache_mb") && strstr(err, "MiB") && strstr(err, "0..1048576"), "%s: %s",
                      bad[i], err);
    }
    ck_assert_int_eq(c.cache_mb, 64);
    /* byte sizes keep their meaning, now with t as well */
    ck_assert_int_eq(config_set(&c, "max_text", "1k", err, sizeof err), 0);
    ck_assert_int_eq(c.max_text, 1024);
    ck_assert_int_eq(config_set(&c, "max_body", "1t", err, sizeof err), -1);
    ck_assert_int_eq(config_set(&c, "max_body", "9223372036854775807k", err, sizeof err), -1);
    api_settings s;
    ck_assert_int_eq(config_set(&c, "cache_mb", "3g", err, sizeof err), 0);
    config_api_settings(&c, &s);
    ck_assert_uint_eq(s.cache_bytes, (size_t)3 << 30);
}
END_TEST

/* blas_coretype: auto, off or a name Debian's OpenBLAS accepts. */
START_TEST(blas_coretype_values)
{
    twd_config c;
    char err[1024];
    config_defaults(&c);
    static const char *const ok[][2] = {{"Haswell", "Haswell"},   {"zen", "zen"},   {"SkylakeX", "SkylakeX"},
                                        {"Prescott", "Prescott"}, {"AUTO", "auto"}, {"Off", "off"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ck_assert_msg(config_set(&c, "blas_coretype", ok[i][0], err, sizeof err) == 0, "%s", err);
        ck_assert_str_eq(c.blas_coretype, ok[i][1]);
    }
    /* OpenBLAS 0.3.21 answers "Core not found" to these and keeps its own choice */
    static const char *const bad[] = {"Cooperlake", "SapphireRapids", "Skylake", "", "Haswell ", "Zen,"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(config_set(&c, "blas_coretype", bad[i], err, sizeof err) == -1, "'%s' accepted",
                      bad[i]);
        ck_assert_msg(strstr(err, "blas_coretype") && strstr(err, "Haswell, Steamroller") &&
                          !strchr(err, '\n'),
                      "%s", err);
    }
    ck_assert_str_eq(c.blas_coretype, "off");
}
END_TEST

START_TEST(file_and_flags)
{
    twd_config c;
    char err[512];
    config_defaults(&c);
    char *p = write_tmp("# comment\n\n port = 8181  # trailing\nlisten=\"::1\"\nworkers = 3\n");
    char *argv[] = {"twd", "--port", "9191", "--config", p, "--set", "max_k=7", "--no-fetch", NULL};
    ck_assert_int_eq(config_from_args(&c, 8, argv, err, sizeof err), 0);
    ck_assert_int_eq(c.port, 9191); /* flag beats file, wherever it stands */
    ck_assert_str_eq(c.listen, "::1");
    ck_assert_int_eq(c.workers, 3);
    ck_assert_int_eq(c.max_k, 7);
    ck_assert(!c.fetch);
    unlink(p);

    p = write_tmp("port = 80\nthreads = 0\n");
    config_defaults(&c);
    ck_assert_int_eq(config_load_file(&c, p, err, sizeof err), -1);
    ck_assert_msg(strstr(err, ":2:") && strstr(err, "threads"), "message: %s", err);
    unlink(p);

    p = write_tmp("just words\n");
    ck_assert_int_eq(config_load_file(&c, p, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, ":1: expected 'key = value'"));
    unlink(p);

    char *bad[] = {"twd", "--bogus", NULL};
    ck_assert_int_eq(config_from_args(&c, 2, bad, err, sizeof err), -1);
    char *noval[] = {"twd", "--port", NULL};
    ck_assert_int_eq(config_from_args(&c, 2, noval, err, sizeof err), -1);
    char *badset[] = {"twd", "--set", "port", NULL};
    ck_assert_int_eq(config_from_args(&c, 3, badset, err, sizeof err), -1);

    /* --flag=VALUE, and a flag's value is never taken for a flag */
    config_defaults(&c);
    char *eqform[] = {"twd", "--port=9292", "--set=max_k=9", "--model", "--no-fetch", NULL};
    ck_assert_msg(config_from_args(&c, 5, eqform, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.port, 9292);
    ck_assert_int_eq(c.max_k, 9);
    ck_assert_str_eq(c.models, "--no-fetch");
    ck_assert(c.fetch);
    char *noarg[] = {"twd", "--no-fetch=yes", NULL};
    ck_assert_int_eq(config_from_args(&c, 2, noarg, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "--no-fetch takes no value"), "%s", err);
    /* --help wins over a config file that cannot be read */
    char *help[] = {"twd", "--config", "/nonexistent/twd.conf", "--help", NULL};
    FILE *saved = stdout;
    stdout = fopen("/dev/null", "w");
    int rc = config_from_args(&c, 4, help, err, sizeof err);
    fclose(stdout);
    stdout = saved;
    ck_assert_int_eq(rc, 1);
}
END_TEST

/* A --config file that cannot be read is named as the config file; one that
 * is not a regular file is refused without blocking. */
START_TEST(config_file_errors)
{
    twd_config c;
    char err[512];
    config_defaults(&c);
    ck_assert_int_eq(config_load_file(&c, "/x/y.conf", err, sizeof err), -1);
    ck_assert_str_eq(err, "config file /x/y.conf: No such file or directory");
    char *argv[] = {"twd", "--config", "/x/y.conf", NULL};
    ck_assert_int_eq(config_from_args(&c, 3, argv, err, sizeof err), -1);
    ck_assert_str_eq(err, "config file /x/y.conf: No such file or directory");
    ck_assert_int_eq(config_load_file(&c, "/tmp", err, sizeof err), -1);
    ck_assert_str_eq(err, "config file /tmp: not a regular file");
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/tmp/twd-test-fifo-%d", (int)getpid());
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(config_load_file(&c, fifo, err, sizeof err), -1); /* must not block */
    ck_assert_msg(strstr(err, "not a regular file"), "%s", err);
    unlink(fifo);
    char *p = write_tmp("port = 1");
    ck_assert_int_eq(truncate(p, 12), 0); /* "port = 1" and four NUL bytes */
    ck_assert_int_eq(config_load_file(&c, p, err, sizeof err), -1);
    ck_assert_msg(strstr(err, ":1: NUL byte"), "%s", err);
    unlink(p);
}
END_TEST

/* Quoted values keep spaces and '#'; comments elsewhere are dropped. */
START_TEST(file_quoting)
{
    twd_config c;
    char err[512];
    config_defaults(&c);
    char *p = write_tmp("# only a comment = not a setting\n"
                        "cors_origin = \"http://x.test/#a\"   # a comment\n"
                        "hub_repo = \" two words \"\r\n"
                        "model = /m/gpt2 # comment\n"
                        "cache_dir=\"\"\n");
    ck_assert_msg(config_load_file(&c, p, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(c.cors_origin, "http://x.test/#a");
    ck_assert_str_eq(c.hub_repo, " two words ");
    ck_assert_str_eq(c.models, "/m/gpt2");
    ck_assert_str_eq(c.cache_dir, "");
    unlink(p);
    static const char *const bad[] = {"model = \"open\n", "model = \"a\" b\n", " = 3\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = write_tmp(bad[i]);
        ck_assert_int_eq(config_load_file(&c, p, err, sizeof err), -1);
        ck_assert_msg(strstr(err, ":1: "), "%s", err);
        unlink(p);
    }
}
END_TEST

/* --print-config writes the effective configuration, and it reads back to
 * the same configuration. */
START_TEST(print_conf_round_trip)
{
    static twd_config c, d;
    char err[512];
    config_defaults(&c);
    static const char *const sets[][2] = {
        {"port", "9999"},
        {"listen", "::1"},
        {"cache_mb", "3g"},
        {"max_body", "2m"},
        {"fetch", "off"},
        {"model", "/srv/models/gpt2"},
        {"cache_dir", "/var/cache/twd"},
        {"cors_origin", "http://a.test/#x"},
        {"hub_repo", " padded "},
        {"hub_url", ""},
        {"umap_seed", "7"},
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        ck_assert_msg(config_set(&c, sets[i][0], sets[i][1], err, sizeof err) == 0, "%s", err);
    char *text = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&text, &n);
    config_print_conf(m, &c);
    fclose(m);
    ck_assert_msg(strstr(text, "\nport = 9999\n") && strstr(text, "\ncache_mb = 3072\n") &&
                      strstr(text, "\nmodels = /srv/models/gpt2\n") && strstr(text, "\nfetch = false\n") &&
                      strstr(text, "\nhub_url = \"\"\n") && strstr(text, "\n# static_dir = \n"),
                  "%s", text);
    char *p = write_tmp(text);
    config_defaults(&d);
    ck_assert_msg(config_load_file(&d, p, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(memcmp(&c, &d, sizeof c) == 0, "the printed configuration reads back differently");
    unlink(p);
    free(text);
}
END_TEST

/* config/twd.conf documents every option: it must equal what the table prints. */
START_TEST(shipped_conf_matches_table)
{
    char *gen = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&gen, &n);
    config_print_conf(m, NULL);
    fclose(m);
    FILE *f = fopen(TWD_SOURCE_ROOT "/config/twd.conf", "r");
    ck_assert_msg(f != NULL, "config/twd.conf missing");
    char *file = calloc(1, n + 2);
    size_t got = fread(file, 1, n + 1, f);
    fclose(f);
    ck_assert_msg(got == n && memcmp(file, gen, n) == 0,
                  "config/twd.conf differs from `twd --print-config`; regenerate it");
    twd_config c;
    char err[512];
    config_defaults(&c);
    ck_assert_msg(config_load_file(&c, TWD_SOURCE_ROOT "/config/twd.conf", err, sizeof err) == 0, "%s", err);
    twd_config d;
    config_defaults(&d);
    ck_assert_msg(memcmp(&c, &d, sizeof c) == 0, "loading the shipped file changes a default");
    TT_FREE(gen, file);
}
END_TEST

TW_CHECK_ONE_MAIN("config", "config", 0, defaults_within_bounds, set_checks_types_and_bounds, mib_options,
                  blas_coretype_values, file_and_flags, config_file_errors, file_quoting,
                  print_conf_round_trip, shipped_conf_matches_table)
