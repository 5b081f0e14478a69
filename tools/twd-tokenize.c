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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tok/synth_vocab.h"
#include "core/tok/tokenizer.h"

static int print_ids(const tokenizer *t, const char *text, size_t len)
{
    int32_t *ids;
    long n = tokenizer_encode(t, text, len, &ids);
    if (n < 0) {
        fprintf(stderr, "twd-tokenize: encoding failed (out of memory)\n");
        return -1;
    }
    for (long i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    return 0;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
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
        if (n % 2) {
            fprintf(stderr, "twd-tokenize: line %ld: odd number of hex digits\n", lineno);
            rc = -1;
            break;
        }
        size_t len = (size_t)n / 2;
        for (size_t i = 0; i < len; i++) {
            int hi = hex_value(line[2 * i]), lo = hex_value(line[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                fprintf(stderr, "twd-tokenize: line %ld: bad hex digit\n", lineno);
                rc = -1;
                break;
            }
            line[i] = (char)(hi * 16 + lo);
        }
        if (rc == 0) rc = print_ids(t, line, len);
    }
    free(line);
    return rc;
}

static int run_stdin(const tokenizer *t)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, stdin);
        if (r == 0) break;
        len += r;
    }
    if (!buf) {
        fprintf(stderr, "twd-tokenize: out of memory\n");
        return -1;
    }
    int rc = print_ids(t, buf, len);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    char err[512];
    if (argc == 2 && strcmp(argv[1], "--unicode-version") == 0) {
        puts(tokenizer_unicode_version());
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "--synthetic") == 0) {
        char *end;
        long n = strtol(argv[2], &end, 10);
        if (*end || n < 257 || n > 1 << 24) {
            fprintf(stderr, "twd-tokenize: bad vocabulary size %s\n", argv[2]);
            return 1;
        }
        unsigned long long seed = strtoull(argv[3], &end, 10);
        if (*end) {
            fprintf(stderr, "twd-tokenize: bad seed %s\n", argv[3]);
            return 1;
        }
        if (tokenizer_write_synthetic(argv[4], (int)n, seed, err, sizeof err) != 0) {
            fprintf(stderr, "twd-tokenize: %s\n", err);
            return 1;
        }
        return 0;
    }
    int hex = argc == 3 && strcmp(argv[1], "--hex") == 0;
    if (argc != 2 + hex || argv[1 + hex][0] == '-') {
        fprintf(stderr, "usage: twd-tokenize [--hex] DIR < text\n"
                        "       twd-tokenize --unicode-version\n"
                        "       twd-tokenize --synthetic VOCAB_SIZE SEED DIR\n");
        return 1;
    }
    tokenizer *t = tokenizer_load(argv[1 + hex], err, sizeof err);
    if (!t) {
        fprintf(stderr, "twd-tokenize: %s\n", err);
        return 1;
    }
    int rc = hex ? run_hex(t) : run_stdin(t);
    tokenizer_free(t);
    if (fflush(stdout) != 0) rc = -1;
    return rc == 0 ? 0 : 1;
}
