/* Writing JSON answers without losing a value.
 *
 * jansson's json_real(NaN) returns NULL and json_array_append_new(a, NULL)
 * quietly appends nothing, so a bad number would silently change an
 * answer's shape. Answers are built with these instead: a value that cannot
 * be written marks the answer being built (per thread), and api_json then
 * refuses it with a 500 naming what was wrong, logged, instead of sending a
 * damaged answer. Numbers are printed with the 9 significant digits float32
 * carries (docs/API.md, Numbers). */
#ifndef TW_API_JSON_H
#define TW_API_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/nn/topk.h"
#include "core/tok/tokenizer.h"

/* A number; a non-finite one marks the answer and yields null. */
json_t *api_num(double v);
/* A float32 as the shortest decimal that reads back to the same float32
 * (1e-05, not 9.99999975e-06); non-finite as api_num. */
json_t *api_f32(float v);
/* Appends / sets v (stolen); a NULL v or a failed append marks the answer.
 * Return 0, or -1 after marking. */
int api_push(json_t *array, json_t *v);
int api_put(json_t *object, const char *key, json_t *v);

/* Marks the answer being built as damaged (`what` is a static string). */
void api_fault(const char *what);
/* The mark of this thread's answer (NULL if none), and clearing it; the
 * router clears it before every handler and api_json reads it. */
const char *api_fault_take(void);

/* A token as {"id", "text" (invalid UTF-8 replaced), "bytes" (array of
 * 0..255)}: the one shape of a token in every answer (docs/API.md). */
json_t *api_token_json(const tokenizer *tok, int id);
/* The same with one number added under `field` ("score", "prob"). */
json_t *api_scored_token_json(const tokenizer *tok, int id, const char *field, double value);
/* The tokens ids[0..n) as an array of tokens. */
json_t *api_tokens_json(const tokenizer *tok, const int32_t *ids, size_t n);
/* A ranked list of k hits as scored tokens ("score"). */
json_t *api_hits_json(const tokenizer *tok, const topk_hit *h, size_t k);
/* The token's text with invalid UTF-8 replaced (malloc'd; NULL on
 * allocation failure). */
char *api_token_text(const tokenizer *tok, int id);

#endif
