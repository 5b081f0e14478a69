/* A deterministic synthetic GPT-2-format vocabulary: byte-level BPE learned
 * from a built-in English corpus, then seeded merges (synth_vocab.h). */
#include "core/tok/synth_vocab.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/scratch.h"
#include "core/tok/tables.h"

/* ------------------------------------------------------ synthetic vocabulary */

/* A small built-in English corpus for the synthetic vocabulary (written for
 * this project). */
static const char *const synth_corpus[] = {
    "The sun came up over the hills, and the people of the town went to work.",
    "It was a long day, but the team finished the work before the night came.",
    "She said that the school would open again in the spring of next year.",
    "He asked me if I had ever seen a house like that one on the hill.",
    "We have been here for a week, and we still don't know the way to the city.",
    "They were not sure what to do, so they waited for the others to come back.",
    "What is the best way to learn a new language when you are busy with a job?",
    "I think that the government should spend more money on health and education.",
    "My mother and father met at a small party in the house of a friend.",
    "The children played in the water while their parents talked about the weather.",
    "There is a book on the table, and there are two more in the other room.",
    "You can find the answer to that question in the first part of the story.",
    "This is the first time that the company has lost money in a single month.",
    "Every morning he reads the news before he leaves for the office.",
    "The president of the country spoke to the members of the party for an hour.",
    "Our family lived in a small village near the sea for many years.",
    "When the game was over, the players shook hands and walked off the field.",
    "If you want to change the world, you should start with your own life.",
    "The teacher told the students to read the next chapter before Monday.",
    "Most of the time the city is quiet, but on weekends it is full of life.",
    "A good idea can come from anyone, at any moment, in any place.",
    "The research group found a new result that nobody had expected.",
    "People often say that time is money, but time is worth much more than that.",
    "After the war, the history of the region changed in many important ways.",
    "The man and the woman sat by the door and watched the car go by.",
    "It's not easy to explain, but I'll try to make it clear to you.",
    "We're going to need a bigger boat if we want to cross the lake.",
    "They've never been to the north of the country, but they'd like to go.",
    "I'm sure you'd enjoy the show; it's one of the best we've seen.",
    "The kid lost his ball in the park, and his friend helped him look for it.",
    "Information about the program is available on the community web site.",
    "The business will have to face the problem of rising costs this year.",
    "Each word in the list has a meaning, and some words have several.",
    "She turned her head and looked at the girl who was standing by the window.",
    "The law says that every person has the right to a fair trial.",
    "There was a lot of noise in the street, so we closed the windows.",
    "He put his hand on the table and said nothing for a long minute.",
    "The water in the river was cold and clear, and the air smelled of rain.",
    "In the end, the members of the group agreed to meet again next week.",
    "The service at the restaurant was slow, but the food was very good.",
    "Most students go home for the holidays, but a few stay at the school.",
    "The body needs food, water, sleep and exercise to stay strong and healthy.",
    "She has worked in the same office for ten years and knows everyone there.",
    "Art can show us the world in a way that words cannot.",
    "The guy at the front desk gave us the key to our room on the third floor.",
    "A child asked his father why the sky is blue and the grass is green.",
    "We talked about the reason for the change and what it would mean for us.",
    "On the other side of the road there was a field with horses and cows.",
    "What kind of music do you like to listen to when you are working?",
    "The level of the water rose quickly after three days of heavy rain.",
    "There are many different kinds of trees in the forest behind the house.",
    "Nobody knew the name of the old man who lived at the end of the street.",
    "The system works well most of the time, but it fails when the load is high.",
    "I would like to thank all of you for your help with this project.",
    "The power went out during the storm, and the whole city was dark.",
    "He wrote a letter to his brother and sent it on the first day of the month.",
    "Our first car was small and old, but it took us everywhere we wanted to go.",
    "The number of people who live in cities grows every year.",
    "They sold the house and moved to a smaller place near the water.",
    "It is important to eat well, to sleep enough and to move every day.",
    "Please write your name and the date at the top of the page.",
    "The story of the old city is told in the museum on the main square.",
    "Can you tell me how to get to the station from here?",
    "In 1999 the bridge was closed, and in 2004 a new one was built.",
    "The meeting starts at 9:30 and should end before 11:00.",
    "About 20 percent of the students come from other countries.",
    "She bought 3 apples, 2 pears and a bag of bread for the trip.",
    "The point of the exercise is to think, not to find the right answer fast.",
    "Some questions are hard to answer, and some have no answer at all.",
    "He looked back at the house one last time before he walked away.",
    "Life in the country is slower than life in the city, and many like it that way.",
    "The moment she opened the door, she knew that something was wrong.",
    "Their teacher always said that a good question is worth more than an answer.",
    "The report gives the facts, but it says very little about the causes.",
    "We must work together if we want to solve this problem.",
    "The force of the wind was so strong that it broke several trees.",
    "My friend and I spent the whole afternoon walking along the beach.",
    "The health of the people depends on clean water and good food.",
    "There were only a few people in the room when the talk began.",
    "I don't think he's ever going to understand why she left.",
    "They couldn't find the keys, so they had to wait outside in the cold.",
    "The study shows that young people read less than they did ten years ago.",
    "The office is closed on Sunday, but it opens early on Monday morning.",
    "You should never judge a book by its cover, or a person by their face.",
    "The company plans to open a new office in another part of the world.",
    "It was the best of times, and it was also, in some ways, the worst.",
    "The old woman smiled and gave the little girl a red flower.",
    "Nothing is more important than the people you love.",
};

/* The paper's 100 common nouns (docs/MATH.md §4.1; config/common_nouns.txt). */
/* clang-format off */
static const char *const synth_nouns[] = { /* ten a line */
    "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child",
    "world", "school", "state", "family", "student", "group", "country", "problem", "hand", "part",
    "place", "case", "week", "company", "system", "program", "question", "work", "government", "number",
    "night", "point", "home", "water", "room", "mother", "area", "money", "story", "fact",
    "month", "lot", "right", "study", "book", "eye", "job", "word", "business", "issue",
    "side", "kind", "head", "house", "service", "friend", "father", "power", "hour", "game",
    "line", "end", "member", "law", "car", "city", "community", "name", "president", "team",
    "minute", "idea", "kid", "body", "information", "back", "parent", "face", "others", "level",
    "office", "door", "health", "person", "art", "war", "history", "party", "result", "change",
    "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher", "force", "education",
};
/* clang-format on */

/* Common English words, added alone and with a leading space like the nouns
 * (in running text most of them only occur with the space, or capitalized). */
static const char *const synth_common[] = {
    "the",   "of",    "and", "to",    "a",    "in",   "is",    "it",   "you",   "that",   "he",    "was",
    "for",   "on",    "are", "with",  "as",   "I",    "his",   "they", "be",    "at",     "one",   "have",
    "this",  "from",  "or",  "had",   "by",   "not",  "but",   "what", "some",  "we",     "can",   "out",
    "other", "were",  "all", "there", "when", "up",   "use",   "your", "how",   "said",   "an",    "each",
    "she",   "which", "do",  "their", "if",   "will", "about", "many", "then",  "them",   "would", "like",
    "so",    "these", "her", "long",  "make", "see",  "him",   "two",  "has",   "look",   "more",  "could",
    "go",    "come",  "did", "my",    "no",   "most", "who",   "over", "know",  "than",   "first", "may",
    "down",  "been",  "now", "find",  "new",  "good", "just",  "very", "after", "before", "also",  "only",
    "The",   "It",    "He",  "She",   "We",   "They", "This",  "In",   "There", "What",
};

/* One distinct pre-token of the corpus, as a sequence of token ids. */
typedef struct {
    uint32_t *sym;
    size_t n;
    int64_t count;
} synth_word;

typedef struct {
    strtab vocab;          /* tokens so far */
    uint32_t (*merges)[2]; /* (n_merges, 2) */
    size_t n_merges, cap_merges;
    strtab words;  /* distinct pre-tokens -> word index */
    synth_word *w; /* (words.n) */
    size_t cap_w;
    pairmap counts; /* pair -> weighted count over all words */
    pairmap banned; /* pairs whose concatenation already is a token */
} synth_state;

static void synth_free(synth_state *S)
{
    strtab_free(&S->vocab);
    free(S->merges);
    for (size_t i = 0; i < S->words.n; i++) free(S->w[i].sym);
    strtab_free(&S->words);
    free(S->w);
    pairmap_free(&S->counts);
    pairmap_free(&S->banned);
}

static int synth_add_word(synth_state *S, const uint8_t *p, size_t n, int64_t count)
{
    uint32_t wi = strtab_find(&S->words, p, n);
    if (wi != NO_ID) {
        S->w[wi].count += count;
        return 0;
    }
    synth_word *w = tw_grow(S->w, &S->cap_w, S->words.n + 1, sizeof *w, 256);
    if (!w) return -1;
    S->w = w;
    uint32_t *sym = malloc(n * sizeof *sym);
    if (!sym) return -1;
    for (size_t i = 0; i < n; i++) sym[i] = strtab_find(&S->vocab, p + i, 1);
    wi = (uint32_t)S->words.n;
    if (strtab_put(&S->words, wi, p, n) != 0) {
        free(sym);
        return -1;
    }
    S->w[wi] = (synth_word){sym, n, count};
    return 0;
}

/* Adds (sign = +1) or removes (-1) a word's pairs from the pair counts. */
static int synth_count_word(synth_state *S, const synth_word *w, int sign)
{
    for (size_t i = 0; i + 1 < w->n; i++) {
        int64_t *c = pairmap_get(&S->counts, pair_key(w->sym[i], w->sym[i + 1]), 0);
        if (!c) return -1;
        *c += sign * w->count;
    }
    return 0;
}

static int synth_add_merge(synth_state *S, uint32_t a, uint32_t b, uint8_t *tmp)
{
    size_t na = S->vocab.len[a], nb = S->vocab.len[b];
    memcpy(tmp, strtab_bytes(&S->vocab, a), na);
    memcpy(tmp + na, strtab_bytes(&S->vocab, b), nb);
    uint32_t(*m)[2] = tw_grow(S->merges, &S->cap_merges, S->n_merges + 1, sizeof *m, 1024);
    if (!m) return -1;
    S->merges = m;
    if (strtab_put(&S->vocab, (uint32_t)S->vocab.n, tmp, na + nb) != 0) return -1;
    S->merges[S->n_merges][0] = a;
    S->merges[S->n_merges][1] = b;
    S->n_merges++;
    return 0;
}

/* Byte-level BPE training on the corpus until `target` tokens exist or no
 * pair can be merged into a new token. Ties in count go to the smallest
 * (left id, right id). */
static int synth_learn(synth_state *S, size_t target, uint8_t *tmp)
{
    for (size_t i = 0; i < S->words.n; i++)
        if (synth_count_word(S, &S->w[i], +1) != 0) return -1;
    while (S->vocab.n < target) {
        uint64_t best = UINT64_MAX;
        int64_t best_count = 0;
        for (size_t i = 0; i < S->counts.cap; i++) {
            uint64_t k = S->counts.keys[i];
            int64_t c = S->counts.vals[i];
            if (k == UINT64_MAX || c <= 0 || c < best_count) continue;
            if (c == best_count && k > best) continue;
            if (pairmap_find(&S->banned, k)) continue;
            best = k;
            best_count = c;
        }
        if (best == UINT64_MAX) break;
        uint32_t a = (uint32_t)(best >> 32), b = (uint32_t)best;
        size_t na = S->vocab.len[a], nb = S->vocab.len[b];
        memcpy(tmp, strtab_bytes(&S->vocab, a), na);
        memcpy(tmp + na, strtab_bytes(&S->vocab, b), nb);
        if (strtab_find(&S->vocab, tmp, na + nb) != NO_ID) {
            /* Same string reachable another way: merging it would give one
             * string two merge paths. Skip it; words keep the split. */
            if (!pairmap_get(&S->banned, best, 1)) return -1;
            continue;
        }
        if (synth_add_merge(S, a, b, tmp) != 0) return -1;
        uint32_t r = (uint32_t)(S->vocab.n - 1);
        for (size_t i = 0; i < S->words.n; i++) {
            synth_word *w = &S->w[i];
            bool has = false;
            for (size_t j = 0; j + 1 < w->n && !has; j++) has = w->sym[j] == a && w->sym[j + 1] == b;
            if (!has) continue;
            if (synth_count_word(S, w, -1) != 0) return -1;
            size_t o = 0;
            for (size_t j = 0; j < w->n; j++) {
                if (j + 1 < w->n && w->sym[j] == a && w->sym[j + 1] == b) {
                    w->sym[o++] = r;
                    j++;
                } else
                    w->sym[o++] = w->sym[j];
            }
            w->n = o;
            if (synth_count_word(S, w, +1) != 0) return -1;
        }
    }
    return 0;
}

/* Seeded merges of existing tokens, each making a new string, until `target`
 * tokens exist. Left parts are tokens of <= 12 bytes, right parts of <= 4
 * bytes, so tokens stay short. */
static int synth_seeded(synth_state *S, size_t target, uint64_t seed, uint8_t *tmp)
{
    uint64_t rng = seed;
    size_t n = S->vocab.n;
    uint32_t *lefts = malloc(target * sizeof *lefts), *rights = malloc(target * sizeof *rights);
    size_t nl = 0, nr = 0;
    int rc = -1;
    if (!lefts || !rights) goto done;
    for (size_t i = 0; i < n; i++) {
        if (S->vocab.len[i] <= 12) lefts[nl++] = (uint32_t)i;
        if (S->vocab.len[i] <= 4) rights[nr++] = (uint32_t)i;
    }
    while (S->vocab.n < target) {
        uint32_t a = NO_ID, b = NO_ID;
        for (int tries = 0; tries < 100000 && a == NO_ID; tries++) {
            uint32_t x = lefts[tw_splitmix64(&rng) % nl], y = rights[tw_splitmix64(&rng) % nr];
            size_t nx = S->vocab.len[x], ny = S->vocab.len[y];
            memcpy(tmp, strtab_bytes(&S->vocab, x), nx);
            memcpy(tmp + nx, strtab_bytes(&S->vocab, y), ny);
            if (strtab_find(&S->vocab, tmp, nx + ny) == NO_ID) {
                a = x;
                b = y;
            }
        }
        if (a == NO_ID || synth_add_merge(S, a, b, tmp) != 0) goto done;
        uint32_t id = (uint32_t)(S->vocab.n - 1);
        if (S->vocab.len[id] <= 12) lefts[nl++] = id;
        if (S->vocab.len[id] <= 4) rights[nr++] = id;
    }
    rc = 0;
done:
    free(lefts);
    free(rights);
    return rc;
}

/* Writes token bytes in GPT-2's unicode form, JSON-escaped if json. */
static void put_unicode(FILE *f, const uint32_t b2u[256], const uint8_t *p, size_t n, bool json)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = b2u[p[i]];
        if (json && (cp == '"' || cp == '\\')) {
            fputc('\\', f);
            fputc((int)cp, f);
        } else if (cp < 0x80)
            fputc((int)cp, f);
        else {
            fputc((int)(0xC0 | (cp >> 6)), f);
            fputc((int)(0x80 | (cp & 0x3F)), f);
        }
    }
}

static int synth_write(const synth_state *S, const char *dir, const uint32_t b2u[256], char *err,
                       size_t errlen)
{
    size_t dl = strlen(dir);
    char *path = malloc(dl + 16);
    if (!path) {
        tw_set_err(err, errlen, "tokenizer: out of memory");
        return -1;
    }
    snprintf(path, dl + 16, "%s/vocab.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f) goto io_fail;
    fputc('{', f);
    for (size_t id = 0; id < S->vocab.n; id++) {
        fputs(id ? ", \"" : "\"", f);
        put_unicode(f, b2u, strtab_bytes(&S->vocab, (uint32_t)id), S->vocab.len[id], true);
        fprintf(f, "\": %zu", id);
    }
    fprintf(f, ", \"%s\": %zu}", EOT_TEXT, S->vocab.n);
    if (ferror(f) | (fclose(f) != 0)) goto io_fail;
    snprintf(path, dl + 16, "%s/merges.txt", dir);
    if (!(f = fopen(path, "wb"))) goto io_fail;
    fputs("#version: 0.2\n", f);
    for (size_t i = 0; i < S->n_merges; i++) {
        uint32_t a = S->merges[i][0], b = S->merges[i][1];
        put_unicode(f, b2u, strtab_bytes(&S->vocab, a), S->vocab.len[a], false);
        fputc(' ', f);
        put_unicode(f, b2u, strtab_bytes(&S->vocab, b), S->vocab.len[b], false);
        fputc('\n', f);
    }
    if (ferror(f) | (fclose(f) != 0)) goto io_fail;
    free(path);
    return 0;
io_fail:
    tw_set_err(err, errlen, "%s: %s", path, strerror(errno));
    free(path);
    return -1;
}

int tokenizer_write_synthetic(const char *dir, int vocab_size, uint64_t seed, char *err, size_t errlen)
{
    if (!dir) {
        tw_set_err(err, errlen, "tokenizer: no directory given");
        return -1;
    }
    if (vocab_size < 257 || vocab_size > MAX_IDS) {
        tw_set_err(err, errlen, "tokenizer: vocab_size %d out of range 257..%d", vocab_size, MAX_IDS);
        return -1;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        tw_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    uint32_t b2u[256];
    int u2b[U2B_SIZE];
    uint8_t order[256];
    byte_unicode_tables(b2u, u2b, order);
    synth_state S = {0};
    uint8_t *tmp = malloc(2 * MAX_TOKEN_BYTES);
    pcre2_code *re = tok_compile_pattern(err, errlen);
    pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
    int rc = -1;
    size_t target = (size_t)vocab_size - 1; /* ids before <|endoftext|> */
    if (!re) goto done;
    if (!tmp || !md) goto oom;
    for (int i = 0; i < 256; i++)
        if (strtab_put(&S.vocab, (uint32_t)i, &order[i], 1) != 0) goto oom;
    /* Distinct pre-tokens of the corpus with their counts, in order of first
     * appearance; each listed word alone and with a leading space. */
    size_t nc = sizeof synth_corpus / sizeof synth_corpus[0];
    size_t nn = sizeof synth_nouns / sizeof synth_nouns[0];
    size_t nw = sizeof synth_common / sizeof synth_common[0];
    for (size_t i = 0; i < nc + 2 * (nn + nw); i++) {
        char line[512];
        size_t k = (i - nc) / 2;
        if (i < nc)
            snprintf(line, sizeof line, "%s\n", synth_corpus[i]);
        else
            snprintf(line, sizeof line, "%s%s", (i - nc) % 2 ? " " : "",
                     k < nn ? synth_nouns[k] : synth_common[k - nn]);
        size_t len = strlen(line), off = 0;
        while (off < len) {
            int mr = pcre2_match(re, (PCRE2_SPTR)line, len, off, 0, md, NULL);
            if (mr < 0) {
                tw_set_err(err, errlen, "tokenizer: corpus pre-tokenization failed");
                goto done;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (synth_add_word(&S, (const uint8_t *)line + ov[0], ov[1] - ov[0], 1) != 0) goto oom;
            off = ov[1];
        }
    }
    if (synth_learn(&S, target, tmp) != 0) goto oom;
    if (S.vocab.n < target && synth_seeded(&S, target, seed, tmp) != 0) goto oom;
    rc = synth_write(&S, dir, b2u, err, errlen);
    goto done;
oom:
    tw_set_err(err, errlen, "tokenizer: out of memory while building the synthetic vocabulary");
done:
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    free(tmp);
    synth_free(&S);
    return rc;
}
