/* twd-tokenize: GPT-2 BPE token ids of a text, from the command line.
 *
 *   twd-tokenize DIR              encode all of stdin, print the ids on one line
 *   twd-tokenize --hex DIR        each stdin line is a hex-encoded byte string;
 *                                 print one line of ids per input line
 *   twd-tokenize --unicode-version
 *                                 print the Unicode version of the pre-tokenizer
 *   twd-tokenize --synthetic N SEED DIR
 *                                 write a synthetic vocabulary of N ids into DIR
 *
 * DIR holds vocab.json + merges.txt or encoder.json + vocab.bpe. Ids are
 * separated by single spaces. Exit status 0 on success, 1 on any error. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/strbuf.h"
#include "core/tok/synth_vocab.h"
#include "core/tok/tokenizer.h"
#include "tool_common.h"

static const tool_help help = {"usage: twd-tokenize [--hex] DIR < text\n"
                               "       twd-tokenize --unicode-version\n"
                               "       twd-tokenize --synthetic VOCAB_SIZE SEED DIR\n",
                               "Prints the GPT-2 token ids of stdin with the tokenizer in DIR (vocab.json +\n"
                               "merges.txt, or encoder.json + vocab.bpe), separated by single spaces.\n"
                               "\n"
                               "  --hex              each stdin line is a hex-encoded byte string; one line\n"
                               "                     of ids per input line\n"
                               "  --unicode-version  print the Unicode version of the pre-tokenizer\n"
                               "  --synthetic N      write a synthetic vocabulary of N (257..2^24) ids,\n"
                               "                     generated from SEED, into DIR\n"
                               "  -h, --help         this text\n"};

/* Encodes text and prints its ids as one line. 0 or -1 (reported). */
static int print_ids(const tokenizer *t, const char *text, size_t len)
{
    int32_t *ids;
    long n = tokenizer_encode(t, text, len, &ids);
    if (n < 0) {
        tw_log("encoding failed (out of memory)");
        return -1;
    }
    strbuf line = STRBUF_INIT;
    for (long i = 0; i < n; i++) sb_printf(&line, i ? " %d" : "%d", ids[i]);
    sb_putc(&line, '\n');
    free(ids);
    if (line.failed) {
        tw_log("out of memory");
        return -1;
    }
    fwrite(line.s, 1, line.len, stdout);
    sb_free(&line);
    return 0;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes the n hex digits of line in place; the byte count, or -1 (reported). */
static long unhex(char *line, size_t n, long lineno)
{
    if (n % 2) {
        tw_log("line %ld: odd number of hex digits", lineno);
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(line[2 * i]), lo = hex_value(line[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            tw_log("line %ld: bad hex digit", lineno);
            return -1;
        }
        line[i] = (char)(hi * 16 + lo);
    }
    return (long)(n / 2);
}

static int run_hex(const tokenizer *t)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        long len = unhex(line, (size_t)n, lineno);
        rc = len < 0 ? -1 : print_ids(t, line, (size_t)len);
    }
    free(line);
    return rc;
}

static int run_stdin(const tokenizer *t)
{
    strbuf in = STRBUF_INIT;
    char chunk[1 << 16];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, stdin)) > 0) sb_putn(&in, chunk, r);
    size_t len;
    char *text = sb_take(&in, &len);
    if (!text) {
        tw_log("out of memory");
        return -1;
    }
    int rc = print_ids(t, text, len);
    free(text);
    return rc;
}

static int run_synthetic(const char *n_arg, const char *seed_arg, const char *dir)
{
    long long n, seed;
    char err[512];
    if (tool_parse_ll("--synthetic", n_arg, 257, 1 << 24, &n) ||
        tool_parse_ll("SEED", seed_arg, 0, LLONG_MAX, &seed))
        return -1;
    if (tokenizer_write_synthetic(dir, (int)n, (unsigned long long)seed, err, sizeof err) != 0) {
        tw_log("%s", err);
        return -1;
    }
    return 0;
}

static int run_encode(const char *dir, int hex)
{
    char err[512];
    tokenizer *t = tokenizer_load(dir, err, sizeof err);
    if (!t) {
        tw_log("%s", err);
        return -1;
    }
    int rc = hex ? run_hex(t) : run_stdin(t);
    tokenizer_free(t);
    if (fflush(stdout) != 0) rc = -1;
    return rc;
}

typedef struct {
    int hex, unicode;
    const char *synthetic;
} tok_args;

int main(int argc, char **argv)
{
    tool_init("twd-tokenize");
    tok_args a = {0};
    const tool_opt opts[] = {OPT_FLAG("hex", &a.hex), OPT_FLAG("unicode-version", &a.unicode),
                             OPT_STR("synthetic", &a.synthetic), OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, TOOL_ANY_OPERANDS);
    if (rc) return rc > 0 ? 0 : 1;
    const int rest = argc - optind, modes = a.hex + a.unicode + (a.synthetic != NULL);
    if (a.unicode && modes == 1 && rest == 0) return puts(tokenizer_unicode_version()) < 0;
    if (a.synthetic && modes == 1 && rest == 2)
        return run_synthetic(a.synthetic, argv[optind], argv[optind + 1]) ? 1 : 0;
    if (!a.unicode && !a.synthetic && rest == 1) return run_encode(argv[optind], a.hex) ? 1 : 0;
    tool_usage(stderr, &help);
    return 1;
}
