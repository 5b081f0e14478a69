#include "api/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/num.h"
#include "base/utf8.h"

static _Thread_local const char *fault;

void api_fault(const char *what)
{
    if (!fault) fault = what;
}

const char *api_fault_take(void)
{
    const char *f = fault;
    fault = NULL;
    return f;
}

json_t *api_num(double v)
{
    if (!isfinite(v)) {
        api_fault("a value that is not a finite number");
        return json_null();
    }
    json_t *j = json_real(v);
    if (!j) api_fault("out of memory");
    return j;
}

json_t *api_f32(float v) { return api_num(tw_float_decimal(v)); }

int api_push(json_t *array, json_t *v)
{
    if (!v) {
        api_fault("a value that could not be built (out of memory, or not a number)");
        return -1;
    }
    if (json_array_append_new(array, v) != 0) {
        api_fault("out of memory");
        return -1;
    }
    return 0;
}

int api_put(json_t *object, const char *key, json_t *v)
{
    if (!v) {
        api_fault("a value that could not be built (out of memory, or not a number)");
        return -1;
    }
    if (json_object_set_new(object, key, v) != 0) {
        api_fault("out of memory");
        return -1;
    }
    return 0;
}

json_t *api_scored_token_json(const tokenizer *tok, int id, const char *field, double value)
{
    json_t *o = api_token_json(tok, id);
    api_put(o, field, api_num(value));
    return o;
}

json_t *api_token_json(const tokenizer *tok, int id)
{
    size_t n = 0;
    const uint8_t *b = tok ? tokenizer_token_bytes(tok, id, &n) : NULL;
    json_t *bytes = json_array();
    char *text = NULL;
    size_t tlen = 0;
    if (b) {
        for (size_t i = 0; i < n; i++) api_push(bytes, json_integer(b[i]));
        text = utf8_sanitize((const char *)b, n, &tlen);
    }
    /* by length: a token may be a NUL byte */
    json_t *o = json_pack("{s:i,s:s#,s:o}", "id", id, "text", text ? text : "", (int)(text ? tlen : 0),
                          "bytes", bytes);
    free(text);
    return o;
}

json_t *api_hits_json(const tokenizer *tok, const topk_hit *h, size_t k)
{
    json_t *a = json_array();
    for (size_t i = 0; i < k; i++) api_push(a, api_scored_token_json(tok, h[i].id, "score", h[i].score));
    return a;
}

char *api_token_text(const tokenizer *tok, int id)
{
    size_t n = 0;
    const uint8_t *b = tokenizer_token_bytes(tok, id, &n);
    return utf8_sanitize(b ? (const char *)b : "", b ? n : 0, NULL);
}

json_t *api_tokens_json(const tokenizer *tok, const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) api_push(a, api_token_json(tok, ids[i]));
    return a;
}
