/* /openapi.json: the OpenAPI 3.0 document of every route, generated from the
 * route table (api/routes.c): the parameters from each row's parameter table,
 * the answers from its answer table (api_answer), with bounds that follow the
 * models served.
 *
 * An answer's shape is written in a compact notation that becomes JSON
 * Schema (docs/ARCHITECTURE.md, "Adding a route", has examples):
 *
 *   {a: T, b?: T, ...}   an object: `a` required, `b` optional; closed
 *                        (additionalProperties: false) unless `...` ends it
 *   {v#$d: num}          members v0 .. v(d-1) (a CSV row of d columns)
 *   [T]  [T; 3]  [T; $d] an array; of exactly 3 / d items
 *   int  num  str  bool  any
 *   int(0..)  num(0..1)  int(0..$layer)   bounds (either side may be empty)
 *   'a'|'b'   -1|1       an enum of strings / integers
 *   T|null               nullable (a component is copied in, as OpenAPI 3.0
 *                        has no nullable $ref)
 *   Token                a shared component (api/openapi.c, components[])
 *   T `text`             a description
 *
 * Model values, taken over every model served ($layer, $head, $ff: the last
 * block, head and MLP neuron; $d: the width; $dh: the head dimension): as a bound the largest;
 * as a count the one all models share. A value the models cannot give yet
 * (one is loading; the counts differ) leaves the bound or count out. */
#ifndef TW_API_OPENAPI_H
#define TW_API_OPENAPI_H

#include <jansson.h>
#include <stddef.h>

#include "api/api.h"

/* The JSON Schema of `notation`; NULL with a message naming the place of
 * the mistake in err. */
json_t *api_schema_of(const api_service *svc, const char *notation, char *err, size_t errlen);

/* The whole document; NULL with a message (a route's notation is wrong). */
json_t *api_openapi_doc(const api_service *svc, char *err, size_t errlen);

#endif
