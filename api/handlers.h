/* Handlers of the analysis routes, spliced into api_routes[] (api/routes.c)
 * through API_ANALYSIS_ROUTES, and hooks into /model. */
#ifndef TW_API_HANDLERS_H
#define TW_API_HANDLERS_H

#include <jansson.h>

#include "api/api.h"

/* Adds the state of background work (e.g. the UMAP fit) to the /model answer. */
void api_ext_model_info(twd_app *app, json_t *model);

#define API_ANALYSIS_ROUTES

#endif
