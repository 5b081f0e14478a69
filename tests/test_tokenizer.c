/* Unit tests of the GPT-2 tokenizer (core/tokenizer.c): handwritten merge
 * tables with known answers, malformed files, round trips, the synthetic
 * vocabulary, long inputs and concurrent use. The comparison with the real
 * GPT-2 vocabulary and OpenAI's encoder is tests/tokenizer_ref/. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/utf8.h"
#include "core/tok/synth_vocab.h"
#include "core/tok/tokenizer.h"
#include "tests/support/test_fs.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_thread.h"
#include "tests/support/tw_check.h"

/* ------------------------------------------------------------ helpers */

/* A new temporary directory (malloc'd path; remove_dir removes and frees it). */
static char *make_tmpdir(void)
{
    char d[512];
    tt_tmpdir(d, sizeof d, "tok");
    return strdup(d);
}

static void remove_dir(char *dir)
{
    tt_rmtree(dir);
    free(dir);
}

/* GPT-2's byte-to-unicode map, written out independently of the library:
 * printable Latin-1 bytes stand for themselves, the rest become U+0100 + k
 * in byte order. Also the GPT-2 id of each byte token. */
static unsigned b2u[256];
static int byte_gpt2_id[256];

static void init_byte_map(void)
{
    int k = 0, id = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (keep) {
            b2u[b] = (unsigned)b;
            byte_gpt2_id[b] = id++;
        }
    }
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (!keep) {
            b2u[b] = 256u + (unsigned)k++;
            byte_gpt2_id[b] = id++;
        }
    }
}

/* Appends the unicode (vocab file) form of raw bytes, JSON-escaped. */
static size_t put_token(char *out, const char *bytes)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)bytes; *p; p++) {
        unsigned c = b2u[*p];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x80)
            out[o++] = (char)c;
        else {
            out[o++] = (char)(0xC0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return o;
}

/* Writes vocab.json (256 byte tokens at GPT-2 ids, then `extra` tokens from
 * id 256) and merges.txt (`merges`, raw bytes "left right" per entry) to dir. */
static void write_tiny(const char *dir, const char *const *extra, size_t n_extra,
                       const char *const (*merges)[2], size_t n_merges)
{
    size_t cap = 64 * 1024, o = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    buf[o++] = '{';
    for (int b = 0; b < 256; b++) {
        char one[2] = {(char)b, 0};
        if (o > 1) buf[o++] = ',';
        buf[o++] = '"';
        if (b == 0) {
            o += (size_t)sprintf(buf + o, "\\u0100");
        } /* byte 0 -> U+0100 */
        else
            o += put_token(buf + o, one);
        o += (size_t)sprintf(buf + o, "\": %d", byte_gpt2_id[b]);
    }
    for (size_t i = 0; i < n_extra; i++) {
        if (!strcmp(extra[i], "<|endoftext|>"))
            o += (size_t)sprintf(buf + o, ", \"<|endoftext|>\": %zu", 256 + i);
        else {
            buf[o++] = ',';
            buf[o++] = '"';
            o += put_token(buf + o, extra[i]);
            o += (size_t)sprintf(buf + o, "\": %zu", 256 + i);
        }
    }
    buf[o++] = '}';
    tt_write_in(dir, "vocab.json", buf, o);
    o = (size_t)sprintf(buf, "#version: 0.2\n");
    for (size_t i = 0; i < n_merges; i++) {
        o += put_token(buf + o, merges[i][0]);
        buf[o++] = ' ';
        o += put_token(buf + o, merges[i][1]);
        buf[o++] = '\n';
    }
    tt_write_in(dir, "merges.txt", buf, o);
    free(buf);
}

static tokenizer *load_ok(const char *dir)
{
    char err[512] = "";
    tokenizer *t = tokenizer_load(dir, err, sizeof err);
    ck_assert_msg(t != NULL, "tokenizer_load(%s) failed: %s", dir, err);
    return t;
}

/* A tokenizer of the byte tokens plus extra and merges (write_tiny) in a
 * new folder, whose name goes to *dir; free both with tiny_free. */
static tokenizer *tiny_load(char **dir, const char *const *extra, size_t n_extra,
                            const char *const (*merges)[2], size_t n_merges)
{
    *dir = make_tmpdir();
    write_tiny(*dir, extra, n_extra, merges, n_merges);
    return load_ok(*dir);
}

static void tiny_free(tokenizer *t, char *dir)
{
    tokenizer_free(t);
    remove_dir(dir);
}

static long encode_str(const tokenizer *t, const char *s, size_t len, int32_t **ids)
{
    long n = tokenizer_encode(t, s, len, ids);
    ck_assert_int_ge(n, 0);
    return n;
}

static bool ids_equal(const int32_t *a, const int32_t *b, long n)
{
    for (long i = 0; i < n; i++)
        if (a[i] != b[i]) return false;
    return true;
}

static void check_ids(const tokenizer *t, const char *text, const int32_t *want, long nwant)
{
    int32_t *ids;
    long n = encode_str(t, text, strlen(text), &ids);
    char got[512] = "", exp[512] = "";
    for (long i = 0; i < n && strlen(got) < 480; i++) sprintf(got + strlen(got), " %d", ids[i]);
    for (long i = 0; i < nwant && strlen(exp) < 480; i++) sprintf(exp + strlen(exp), " %d", want[i]);
    ck_assert_msg(n == nwant && ids_equal(ids, want, n), "encode(\"%s\"): got [%s ] want [%s ]", text, got,
                  exp);
    free(ids);
}

/* decode(encode(s)) must equal utf8_sanitize(s). */
static void check_round_trip(const tokenizer *t, const char *s, size_t len)
{
    int32_t *ids;
    long n = encode_str(t, s, len, &ids);
    char *dec;
    long dl = tokenizer_decode(t, ids, (size_t)n, &dec);
    ck_assert_int_ge(dl, 0);
    size_t cl;
    char *clean = utf8_sanitize(s, len, &cl);
    ck_assert_ptr_nonnull(clean);
    size_t first = 0;
    while (first < cl && first < (size_t)dl && clean[first] == dec[first]) first++;
    ck_assert_msg((size_t)dl == cl && first == cl,
                  "round trip of %zu bytes differs at byte %zu (decoded %ld bytes, expected %zu)", len, first,
                  dl, cl);
    for (long i = 0; i < n; i++) ck_assert_int_lt(ids[i], tokenizer_vocab_size(t));
    TT_FREE(clean, dec, ids);
}

#define B(c) byte_gpt2_id[(unsigned char)(c)]

/* ---------------------------------------------------- handwritten merges */

static const char *const hello_extra[] = {
    "he", "ll", "hell", "hello", " w", "or", " wor", "<|endoftext|>", "xyz", "  ",
};
static const char *const hello_merges[][2] = {
    {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}, {" w", "or"},
};

START_TEST(test_known_merges)
{
    char *dir;
    tokenizer *t = tiny_load(&dir, hello_extra, 10, hello_merges, 7);
    ck_assert_int_eq(tokenizer_vocab_size(t), 266);
    ck_assert_int_eq(tokenizer_eot(t), 263);
    check_ids(t, "hello", (int32_t[]){259}, 1);
    check_ids(t, "hello world", (int32_t[]){259, 262, B('l'), B('d')}, 4);
    check_ids(t, "hellohello", (int32_t[]){259, 259}, 2);
    check_ids(t, "Hello", (int32_t[]){B('H'), B('e'), 257, B('o')}, 4); /* no "H e" merge */
    check_ids(t, "helo", (int32_t[]){256, B('l'), B('o')}, 3);
    check_ids(t, "wor", (int32_t[]){B('w'), 261}, 2); /* no space: no " w" */
    /* pre-tokenization: contractions, spaces before letters, space runs */
    check_ids(t, "hello's", (int32_t[]){259, B('\''), B('s')}, 3);
    check_ids(t, "a  hello", (int32_t[]){B('a'), B(' '), B(' '), 259}, 4); /* "a" " " " hello" */
    check_ids(t, "hello  ", (int32_t[]){259, B(' '), B(' ')}, 3);
    check_ids(t, "", NULL, 0);
    /* the special token, only when spelled exactly */
    check_ids(t, "hello<|endoftext|>hello", (int32_t[]){259, 263, 259}, 3);
    check_ids(t, "<|endoftext|><|endoftext|>", (int32_t[]){263, 263}, 2);
    check_ids(t, "<|endoftext|",
              (int32_t[]){B('<'), B('|'), B('e'), B('n'), B('d'), B('o'), B('f'), B('t'), B('e'), B('x'),
                          B('t'), B('|')},
              12);
    /* invalid UTF-8 becomes U+FFFD = EF BF BD */
    check_ids(t, "he\xff", (int32_t[]){256, B('\xEF'), B('\xBF'), B('\xBD')}, 4);
    check_ids(t, "\xC3", (int32_t[]){B('\xEF'), B('\xBF'), B('\xBD')}, 3);

    ck_assert_int_eq(tokenizer_lookup(t, (const uint8_t *)"hell", 4), 258);
    ck_assert_int_eq(tokenizer_lookup(t, (const uint8_t *)"hel", 3), -1);
    ck_assert_int_eq(tokenizer_lookup(t, (const uint8_t *)"\x00", 1), B('\0'));
    size_t len;
    const uint8_t *b = tokenizer_token_bytes(t, 262, &len);
    ck_assert_uint_eq(len, 4);
    ck_assert_mem_eq(b, " wor", 4);
    ck_assert_ptr_null(tokenizer_token_bytes(t, 266, &len));
    ck_assert_ptr_null(tokenizer_token_bytes(t, -1, &len));
    char *out;
    ck_assert_int_eq(tokenizer_decode(t, (int32_t[]){259, 263, 266}, 3, &out), -2);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(tokenizer_decode(t, (int32_t[]){-5}, 1, &out), -2);
    ck_assert_int_eq(tokenizer_decode(t, NULL, 0, &out), 0);
    ck_assert_str_eq(out, "");
    free(out);
    ck_assert_int_eq(tokenizer_decode(t, (int32_t[]){259, 263, B('\0')}, 3, &out), 19);
    ck_assert_mem_eq(out, "hello<|endoftext|>\0", 19);
    free(out);
    tiny_free(t, dir);
}
END_TEST

/* A vocabulary of two extra tokens and two merges, none of them an EOT
 * token, and texts with the ids they encode to. */
typedef struct {
    const char *const extra[2];
    const char *const merges[2][2];
    struct {
        const char *text;
        int32_t ids[13];
        long n;
    } enc[6];
    size_t n_enc;
} merge_case;

enum { N_MERGE_CASES = 2 };

START_TEST(test_merge_semantics)
{
    /* (the ids of single bytes, B, are known only at run time) */
    const merge_case cases[N_MERGE_CASES] = {
        /* GPT-2 merges every occurrence of the best pair before looking
         * again; a pair created by a merge is considered only after that,
         * even if it has a better rank. Here "aa a" outranks "a a". */
        {{"aa", "aaa"},
         {{"aa", "a"}, {"a", "a"}},
         {{"aa", {256}, 1},
          {"aaa", {257}, 1},        /* (a a) a -> (aa a) */
          {"aaaa", {256, 256}, 2},  /* both (a a) first */
          {"aaaaa", {256, 257}, 2}, /* aa aa a -> aa aaa */
          {"aaaaaaa", {256, 256, 257}, 3},
          /* without an EOT token the text stays text */
          {"<|endoftext|>",
           {B('<'), B('|'), B('e'), B('n'), B('d'), B('o'), B('f'), B('t'), B('e'), B('x'), B('t'), B('|'),
            B('>')},
           13}},
         6},
        /* left-to-right, non-overlapping merging of one pair */
        {{"aa", "aaaa"},
         {{"a", "a"}, {"aa", "aa"}},
         {{"aaa", {256, B('a')}, 2}, {"aaaaa", {257, B('a')}, 2}, {"aaaaaa", {257, 256}, 2}},
         3},
    };
    const merge_case *c = &cases[_i];
    char *dir;
    tokenizer *t = tiny_load(&dir, c->extra, 2, c->merges, 2);
    ck_assert_int_eq(tokenizer_eot(t), -1);
    for (size_t k = 0; k < c->n_enc; k++) check_ids(t, c->enc[k].text, c->enc[k].ids, c->enc[k].n);
    tiny_free(t, dir);
}
END_TEST

/* encoder.json + vocab.bpe are accepted too; ids may have gaps. */
START_TEST(test_alternate_names_and_gaps)
{
    char *dir = make_tmpdir();
    write_tiny(dir, hello_extra, 4, hello_merges, 4);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/vocab.json", dir);
    snprintf(p2, sizeof p2, "%s/encoder.json", dir);
    ck_assert_int_eq(rename(p1, p2), 0);
    snprintf(p1, sizeof p1, "%s/merges.txt", dir);
    snprintf(p2, sizeof p2, "%s/vocab.bpe", dir);
    ck_assert_int_eq(rename(p1, p2), 0);
    tokenizer *t = load_ok(dir);
    check_ids(t, "hello", (int32_t[]){259}, 1);
    tokenizer_free(t);

    /* a gap: ids 256..299 unused, "he" at 300 */
    size_t len;
    char *v = tt_read_in(dir, "encoder.json", &len);
    char *pos = strstr(v, "\"he\": 256");
    ck_assert_ptr_nonnull(pos);
    memcpy(pos, "\"he\": 300", 9);
    tt_write_in(dir, "encoder.json", v, len);
    tt_write_in(dir, "vocab.bpe", "#version: 0.2\nh e\n", 18);
    free(v);
    t = load_ok(dir);
    ck_assert_int_eq(tokenizer_vocab_size(t), 301);
    ck_assert_ptr_null(tokenizer_token_bytes(t, 280, &len));
    check_ids(t, "hello", (int32_t[]){300, B('l'), B('l'), B('o')}, 4);
    char *out;
    ck_assert_int_eq(tokenizer_decode(t, (int32_t[]){280}, 1, &out), -2);
    tiny_free(t, dir);
}
END_TEST

/* ---------------------------------------------------------- malformed */

typedef struct {
    const char *what;   /* description */
    const char *vocab;  /* vocab.json content, NULL: the valid tiny one, "-": absent */
    const char *merges; /* merges.txt content, NULL: the valid tiny one, "-": absent */
    const char *file;   /* the file the error must name */
    const char *needle; /* further text the error must contain ("": none) */
} bad_case;

START_TEST(test_malformed_files)
{
    static const bad_case cases[] = {
        {"no files", "-", "-", "no tokenizer files", ""},
        {"no merges", NULL, "-", "merges.txt", ""},
        {"empty vocab", "", NULL, "vocab.json", "invalid JSON"},
        {"truncated vocab", "{\"a\": 1, \"b\"", NULL, "vocab.json", "invalid JSON"},
        {"array vocab", "[1, 2]", NULL, "vocab.json", "object"},
        {"empty object", "{}", NULL, "vocab.json", "object"},
        {"string id", "{\"a\": \"1\"}", NULL, "vocab.json", "not an integer"},
        {"float id", "{\"a\": 1.5}", NULL, "vocab.json", "not an integer"},
        {"negative id", "{\"a\": -1}", NULL, "vocab.json", "out of range"},
        {"huge id", "{\"a\": 99999999999}", NULL, "vocab.json", "out of range"},
        {"duplicate key", "{\"a\": 1, \"a\": 2}", NULL, "vocab.json", ""},
        {"duplicate id", "{\"a\": 1, \"b\": 1}", NULL, "vocab.json", "used by two"},
        {"missing bytes", "{\"a\": 0, \"b\": 1}", NULL, "vocab.json", "byte"},
        {"outside alphabet", "{\"\\u65e5\": 0}", NULL, "vocab.json", "alphabet"},
        {"raw space in token", "{\"a b\": 0}", NULL, "vocab.json", "alphabet"},
        {"empty token", "{\"\": 0}", NULL, "vocab.json", "length"},
        {"binary vocab", "\x01\xff\xfe{\x80", NULL, "vocab.json", ""},
        {"one-token merge", NULL, "#version: 0.2\nh e\nl\n", "merges.txt", "line 3"},
        {"three-token merge", NULL, "#version: 0.2\nh e l\n", "merges.txt", "line 2"},
        {"double space", NULL, "#version: 0.2\nh  e\n", "merges.txt", "line 2"},
        {"unknown part", NULL, "#version: 0.2\nh e\nzz q\n", "merges.txt", "not in the vocabulary"},
        {"unknown result", NULL, "#version: 0.2\nq q\n", "merges.txt", "merge of"},
        {"bad bytes in merges", NULL, "#version: 0.2\n\xff\xfe e\n", "merges.txt", "line 2"},
        {"control char in merges", NULL, "#version: 0.2\nh\x01 e\n", "merges.txt", "h\\x01"},
        {"long bad merge line", NULL,
         "#version: 0.2\n\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0"
         "\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0"
         "\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0"
         "\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\xff\n",
         "merges.txt", "..."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        char *dir = make_tmpdir();
        write_tiny(dir, hello_extra, 10, hello_merges, 7);
        char p[512];
        if (c->vocab && !strcmp(c->vocab, "-")) {
            snprintf(p, sizeof p, "%s/vocab.json", dir);
            unlink(p);
        } else if (c->vocab)
            tt_write_in(dir, "vocab.json", c->vocab, strlen(c->vocab));
        if (c->merges && !strcmp(c->merges, "-")) {
            snprintf(p, sizeof p, "%s/merges.txt", dir);
            unlink(p);
        } else if (c->merges)
            tt_write_in(dir, "merges.txt", c->merges, strlen(c->merges));
        char err[512] = "";
        tokenizer *t = tokenizer_load(dir, err, sizeof err);
        ck_assert_msg(t == NULL, "%s: loaded", c->what);
        ck_assert_msg(strstr(err, c->file) != NULL, "%s: error does not name %s: %s", c->what, c->file, err);
        ck_assert_msg(strstr(err, c->needle) != NULL, "%s: error lacks \"%s\": %s", c->what, c->needle, err);
        ck_assert_msg(strchr(err, '\n') == NULL, "%s: error is not one line", c->what);
        ck_assert_msg(utf8_valid(err, strlen(err)), "%s: error is not valid UTF-8", c->what);
        remove_dir(dir);
    }
    /* vocab.json that is a directory; missing folder; tiny error buffer */
    char *dir = make_tmpdir();
    write_tiny(dir, hello_extra, 10, hello_merges, 7);
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    unlink(p);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    ck_assert_ptr_null(tokenizer_load(dir, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "vocab.json"));
    ck_assert_ptr_null(tokenizer_load("/nonexistent/twd", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/twd"));
    /* issue 9, item 4: vocab.json pointing at /dev/zero read until memory
     * ran out; a FIFO as merges.txt would block: both refused at once */
    rmdir(p);
    ck_assert_int_eq(symlink("/dev/zero", p), 0);
    ck_assert_ptr_null(tokenizer_load(dir, err, sizeof err));
    ck_assert_msg(strstr(err, "vocab.json") && strstr(err, "not a regular file"), "%s", err);
    unlink(p);
    write_tiny(dir, hello_extra, 10, hello_merges, 7);
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    unlink(p);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    ck_assert_ptr_null(tokenizer_load(dir, err, sizeof err));
    ck_assert_msg(strstr(err, "merges.txt") && strstr(err, "not a regular file"), "%s", err);
    unlink(p);
    write_tiny(dir, hello_extra, 10, hello_merges, 7);
    ck_assert_ptr_null(tokenizer_load("/nonexistent/twd", err, 4));
    ck_assert_uint_eq(strlen(err), 3);
    ck_assert_ptr_null(tokenizer_load("/nonexistent/twd", NULL, 0));
    remove_dir(dir);
}
END_TEST

/* Random corruptions of a valid vocabulary must never crash the loader. */
START_TEST(test_corrupted_files_fuzz)
{
    char *dir = make_tmpdir();
    write_tiny(dir, hello_extra, 10, hello_merges, 7);
    size_t vl, ml;
    char *v = tt_read_in(dir, "vocab.json", &vl), *m = tt_read_in(dir, "merges.txt", &ml);
    unsigned seed = 12345;
    int loaded = 0;
    for (int it = 0; it < 300; it++) {
        char *cv = malloc(vl), *cm = malloc(ml);
        ck_assert(cv && cm);
        memcpy(cv, v, vl);
        memcpy(cm, m, ml);
        int target = it % 2;
        char *buf = target ? cm : cv;
        size_t len = target ? ml : vl;
        for (int k = 0; k < 1 + it % 4; k++) buf[rand_r(&seed) % len] = (char)rand_r(&seed);
        size_t cut = it % 5 == 0 ? rand_r(&seed) % len : len;
        tt_write_in(dir, "vocab.json", cv, target ? vl : cut);
        tt_write_in(dir, "merges.txt", cm, target ? cut : ml);
        char err[256];
        tokenizer *t = tokenizer_load(dir, err, sizeof err);
        if (t) {
            loaded++;
            check_round_trip(t, "hello world <|endoftext|> \xff", 27);
            tokenizer_free(t);
        } else {
            ck_assert_msg(strstr(err, "merges.txt") || strstr(err, "vocab.json"), "error: %s", err);
            ck_assert_ptr_null(strchr(err, '\n'));
        }
        TT_FREE(cv, cm);
    }
    printf("corruption fuzz: %d of 300 corrupted vocabularies still loaded\n", loaded);
    TT_FREE(v, m);
    remove_dir(dir);
}
END_TEST

/* --------------------------------------------------------- synthetic */

/* The paper's 100 nouns, as the project ships them (config/). The synthetic
 * vocabulary must make every one of them a single token. */
static size_t read_nouns(char nouns[][32], size_t cap)
{
    FILE *f = fopen(TWD_SOURCE_ROOT "/config/common_nouns.txt", "r");
    ck_assert_msg(f != NULL, "config/common_nouns.txt is missing");
    char line[64];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        ck_assert_uint_lt(n, cap);
        ck_assert_uint_lt(strlen(line), 32);
        strcpy(nouns[n++], line);
    }
    fclose(f);
    return n;
}

static char *write_synth(int vocab_size, uint64_t seed)
{
    char *dir = make_tmpdir();
    char err[512] = "";
    int rc = tokenizer_write_synthetic(dir, vocab_size, seed, err, sizeof err);
    ck_assert_msg(rc == 0, "tokenizer_write_synthetic(%d): %s", vocab_size, err);
    return dir;
}

static size_t count_lines(const char *dir, const char *name)
{
    size_t len, n = 0;
    char *b = tt_read_in(dir, name, &len);
    for (size_t i = 0; i < len; i++) n += b[i] == '\n';
    free(b);
    return n;
}

START_TEST(test_synthetic_sizes)
{
    static const int sizes[] = {257, 258, 300, 1000, 4096, 50257};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int n = sizes[i];
        char *dir = write_synth(n, 42);
        tokenizer *t = load_ok(dir);
        ck_assert_int_eq(tokenizer_vocab_size(t), n);
        ck_assert_int_eq(tokenizer_eot(t), n - 1);
        ck_assert_uint_eq(count_lines(dir, "merges.txt"), (size_t)(n - 257) + 1);
        /* byte tokens in GPT-2's order: '!' is 0, NUL 188, space 220, 0xAD 255 */
        for (int b = 0; b < 256; b++) {
            size_t len;
            const uint8_t *p = tokenizer_token_bytes(t, byte_gpt2_id[b], &len);
            ck_assert_uint_eq(len, 1);
            ck_assert_int_eq(p[0], b);
        }
        ck_assert_int_eq(byte_gpt2_id['!'], 0);
        ck_assert_int_eq(byte_gpt2_id[0], 188);
        ck_assert_int_eq(byte_gpt2_id[' '], 220);
        ck_assert_int_eq(byte_gpt2_id[0xAD], 255);
        /* every token is a distinct byte string */
        for (int id = 0; id < n; id++) {
            size_t len;
            const uint8_t *p = tokenizer_token_bytes(t, id, &len);
            ck_assert_ptr_nonnull(p);
            ck_assert_int_eq(tokenizer_lookup(t, p, len), id);
        }
        const char *s = "The teacher's book, 42 times: <|endoftext|> \xff done.";
        check_round_trip(t, s, strlen(s));
        tokenizer_free(t);
        remove_dir(dir);
    }
    char err[256];
    ck_assert_int_eq(tokenizer_write_synthetic("/tmp", 256, 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "256"));
    ck_assert_int_eq(tokenizer_write_synthetic("/nonexistent/a/b", 300, 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/a/b"));
}
END_TEST

START_TEST(test_synthetic_nouns_single_tokens)
{
    char nouns[128][32];
    size_t n_nouns = read_nouns(nouns, 128);
    ck_assert_uint_eq(n_nouns, 100);
    char *dir = write_synth(4096, 7);
    tokenizer *t = load_ok(dir);
    char buf[64];
    for (size_t i = 0; i < n_nouns; i++) {
        for (int space = 0; space < 2; space++) {
            snprintf(buf, sizeof buf, "%s%.31s", space ? " " : "", nouns[i]);
            int32_t *ids;
            long n = encode_str(t, buf, strlen(buf), &ids);
            ck_assert_msg(n == 1, "\"%s\" is %ld tokens at vocab 4096", buf, n);
            size_t len;
            const uint8_t *p = tokenizer_token_bytes(t, ids[0], &len);
            ck_assert(len == strlen(buf) && memcmp(p, buf, len) == 0);
            free(ids);
        }
    }
    static const char *const common[] = {"the", " the", " of", " and", " to", "The", " is", " was"};
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
        int32_t *ids;
        long n = encode_str(t, common[i], strlen(common[i]), &ids);
        ck_assert_msg(n == 1, "\"%s\" is %ld tokens", common[i], n);
        free(ids);
    }
    /* running text comes out in whole words */
    const char *s = "The people of the city went to work in the morning.";
    int32_t *ids;
    long n = encode_str(t, s, strlen(s), &ids);
    ck_assert_int_eq(n, 12);
    free(ids);
    tiny_free(t, dir);
}
END_TEST

static int same_file(const char *d1, const char *d2, const char *name)
{
    size_t l1, l2;
    char *a = tt_read_in(d1, name, &l1), *b = tt_read_in(d2, name, &l2);
    int same = l1 == l2 && memcmp(a, b, l1) == 0;
    TT_FREE(a, b);
    return same;
}

START_TEST(test_synthetic_deterministic)
{
    double t0 = tw_now();
    char *a = write_synth(50257, 1);
    double dt = tw_now() - t0;
    printf("synthetic vocabulary of 50257 ids written in %.3f s\n", dt);
    ck_assert_msg(dt < 5.0, "writing 50257 ids took %.3f s", dt);
    char *b = write_synth(50257, 1);
    char *c = write_synth(50257, 2);
    ck_assert(same_file(a, b, "vocab.json") && same_file(a, b, "merges.txt"));
    ck_assert(!same_file(a, c, "merges.txt"));
    remove_dir(a);
    remove_dir(b);
    remove_dir(c);
    /* the corpus part does not depend on the seed */
    a = write_synth(1000, 1);
    b = write_synth(1000, 99);
    ck_assert(same_file(a, b, "merges.txt"));
    remove_dir(a);
    remove_dir(b);
}
END_TEST

/* -------------------------------------------- round trips, long, threads */

static tokenizer *synth_tok;
static char *synth_dir;

static void synth_setup(void)
{
    init_byte_map();
    synth_dir = write_synth(50257, 3);
    synth_tok = load_ok(synth_dir);
}

static void synth_teardown(void)
{
    tokenizer_free(synth_tok);
    remove_dir(synth_dir);
}

static const char *const hard[] = {
    "",
    " ",
    "  ",
    "\n\n",
    "\t x",
    "it's",
    "IT'S",
    "they'll've",
    "café naïve",
    "日本語のテキスト",
    "👨‍👩‍👧‍👦 family",
    "🇩🇪",
    "1234567",
    "  leading",
    "trailing   ",
    "a\r\nb",
    "<|endoftext|>",
    "x<|endoftext|>y<|endoftext|>",
    "<|endoftext",
    "Zalgo Z\xcd\x91"
    "a",
    "\xf0\x9f\x99",
    "\xc0\xaf",
    "\xed\xa0\x80",
    "\xf4\x90\x80\x80",
    "a\x00b",
    "\xef\xbb\xbf"
    "bom",
    "a\xc2\x85"
    "b",
};

START_TEST(test_round_trips)
{
    for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++)
        check_round_trip(synth_tok, hard[i], strlen(hard[i]));
    check_round_trip(synth_tok, "a\x00b", 3);
    /* random bytes, and random picks from a pool of UTF-8 pieces */
    static const char *const pool[] = {"a",
                                       "the",
                                       " ",
                                       "  ",
                                       "\n",
                                       "'s",
                                       "'",
                                       "é",
                                       "日",
                                       "🙂",
                                       "1",
                                       "23",
                                       ".",
                                       ",!",
                                       "\xff",
                                       "\xc3",
                                       "\xe2\x82",
                                       "\t",
                                       "<|endoftext|>",
                                       "\xcd\x81",
                                       "\xe3\x80\x80"};
    unsigned seed = 777;
    char buf[256];
    for (int it = 0; it < 400; it++) {
        size_t len = (size_t)(rand_r(&seed) % 60);
        if (it % 2) {
            for (size_t k = 0; k < len; k++) buf[k] = (char)rand_r(&seed);
        } else {
            size_t o = 0;
            while (o < len && o < sizeof buf - 16) {
                const char *p = pool[rand_r(&seed) % (sizeof pool / sizeof pool[0])];
                memcpy(buf + o, p, strlen(p));
                o += strlen(p);
            }
            len = o;
        }
        check_round_trip(synth_tok, buf, len);
    }
}
END_TEST

static void time_long(const char *what, const char *s, size_t len)
{
    double t0 = tw_now();
    int32_t *ids;
    long n = encode_str(synth_tok, s, len, &ids);
    double dt = tw_now() - t0;
    printf("encode %-28s %8zu bytes -> %7ld tokens in %.3f s\n", what, len, n, dt);
    ck_assert_msg(dt < 30.0, "%s took %.1f s", what, dt);
    char *dec;
    long dl = tokenizer_decode(synth_tok, ids, (size_t)n, &dec);
    ck_assert_int_ge(dl, 0);
    size_t cl;
    char *clean = utf8_sanitize(s, len, &cl);
    ck_assert(cl == (size_t)dl && memcmp(clean, dec, cl) == 0);
    TT_FREE(clean, dec, ids);
}

START_TEST(test_long_inputs)
{
    size_t n = 1 << 20;
    char *s = malloc(n + 16);
    ck_assert_ptr_nonnull(s);
    memset(s, 'a', n);
    time_long("1 MiB of 'a'", s, n);
    memset(s, ' ', n);
    s[n - 1] = 'x';
    time_long("1 MiB of spaces then x", s, n);
    memset(s, '!', n);
    time_long("1 MiB of '!'", s, n);
    for (size_t i = 0; i + 1 < n; i += 2) memcpy(s + i, "\xc3\xa9", 2);
    time_long("1 MiB of 'e-acute'", s, n);
    memset(s, 0xff, n / 4);
    time_long("256 KiB of invalid bytes", s, n / 4);
    static const char *const words[] = {"the ",   "people ", "of ", "time, ", "it's ",
                                        "work. ", "\n",      "12 ", "日本 "};
    unsigned seed = 5;
    size_t o = 0;
    while (o + 16 < n) {
        const char *w = words[rand_r(&seed) % 9];
        memcpy(s + o, w, strlen(w));
        o += strlen(w);
    }
    time_long("1 MiB of text", s, o);
    free(s);
}
END_TEST

/* One pre-token of 1 MiB with many applicable merges: a vocabulary of runs
 * "a" x 2^k and " " x 2^k, each the merge of two halves. */
START_TEST(test_long_pretoken_many_merges)
{
    static char tok[22][1025];
    static const char *extra[22];
    static const char *merges[22][2];
    for (int k = 1; k <= 10; k++) {
        for (int c = 0; c < 2; c++) {
            int i = 2 * (k - 1) + c;
            memset(tok[i], c ? ' ' : 'a', (size_t)1 << k);
            tok[i][(size_t)1 << k] = '\0';
            extra[i] = tok[i];
            /* tok[i] is the merge of two copies of tok[i - 2] */
            merges[i][0] = merges[i][1] = k == 1 ? (c ? " " : "a") : tok[i - 2];
        }
    }
    char *dir;
    tokenizer *t = tiny_load(&dir, extra, 20, (const char *const(*)[2])merges, 20);
    size_t n = 1 << 20;
    char *s = malloc(n);
    ck_assert_ptr_nonnull(s);
    memset(s, 'a', n);
    double t0 = tw_now();
    int32_t *ids;
    long nt = encode_str(t, s, n, &ids);
    double dt = tw_now() - t0;
    printf("encode 1 MiB of 'a' with doubling merges -> %ld tokens in %.3f s\n", nt, dt);
    ck_assert_int_eq(nt, 1024); /* 1024 tokens of 1024 bytes */
    for (long i = 0; i < nt; i++) ck_assert_int_eq(ids[i], 256 + 18);
    free(ids);
    memset(s, ' ', n);
    s[n - 1] = 'x'; /* pre-tokens: n - 2 spaces, then " x" */
    nt = encode_str(t, s, n, &ids);
    ck_assert_int_eq(ids[nt - 1], B('x'));
    ck_assert_int_eq(ids[nt - 2], B(' '));
    size_t run = n - 2, k = 0; /* the run: greedy halves from 1024 down */
    for (int bit = 10; bit >= 0; bit--)
        for (; run >= ((size_t)1 << bit) && bit > 0; run -= (size_t)1 << bit, k++)
            ck_assert_int_eq(ids[k], 256 + 2 * (bit - 1) + 1);
    for (; run > 0; run--, k++) ck_assert_int_eq(ids[k], B(' '));
    ck_assert_int_eq((long)k, nt - 2);
    TT_FREE(ids, s);
    tiny_free(t, dir);
}
END_TEST

typedef struct {
    const tokenizer *t;
    const char *text;
    size_t len;
    long n;
    int32_t *ids;
} job;

/* Encodes j's text 20 times: the first answer in j->ids and j->n, and
 * j->n = -2 when a later answer differs from it. */
static void *encode_job(void *arg)
{
    job *j = arg;
    j->n = tokenizer_encode(j->t, j->text, j->len, &j->ids);
    for (int rep = 1; rep < 20; rep++) {
        int32_t *ids;
        long n = tokenizer_encode(j->t, j->text, j->len, &ids);
        if (n != j->n || (n > 0 && memcmp(ids, j->ids, (size_t)n * sizeof *ids) != 0)) j->n = -2;
        free(ids);
    }
    return NULL;
}

START_TEST(test_concurrent_encode)
{
    const char *text =
        "Concurrent users share one tokenizer: it's immutable. 日本語 🙂 <|endoftext|> 42\n\n";
    job jobs[4];
    int32_t *want;
    long nwant = encode_str(synth_tok, text, strlen(text), &want);
    for (int i = 0; i < 4; i++) jobs[i] = (job){.t = synth_tok, .text = text, .len = strlen(text)};
    tt_run_threads(encode_job, jobs, sizeof *jobs, 4);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(jobs[i].n, nwant);
        ck_assert_mem_eq(jobs[i].ids, want, (size_t)nwant * sizeof *want);
        free(jobs[i].ids);
    }
    free(want);
}
END_TEST

int main(void)
{
    const TTest *const handwritten_tests[] = {
        test_known_merges,         test_alternate_names_and_gaps,  test_malformed_files,
        test_corrupted_files_fuzz, test_long_pretoken_many_merges, NULL};
    const TTest *const synthetic_tests[] = {test_synthetic_sizes, test_synthetic_nouns_single_tokens,
                                            test_synthetic_deterministic, NULL};
    const TTest *const encode_tests[] = {test_round_trips, test_long_inputs, test_concurrent_encode, NULL};
    const tw_case cases[] = {
        {.name = "handwritten",
         .timeout = 60,
         .setup = init_byte_map,
         .tests = handwritten_tests,
         .loops = (const tw_loop[]){{test_merge_semantics, N_MERGE_CASES}, {NULL, 0}}},
        {.name = "synthetic", .timeout = 60, .setup = init_byte_map, .tests = synthetic_tests},
        {.name = "encode",
         .timeout = 100,
         .setup = synth_setup,
         .teardown = synth_teardown,
         .tests = encode_tests},
    };
    return tw_check_main("tokenizer", cases, 3);
}
