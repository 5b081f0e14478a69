/* Handlers of the analysis routes, spliced into api_routes[] (api/routes.c)
 * and hooks into /model. */
#ifndef TW_API_HANDLERS_H
#define TW_API_HANDLERS_H

#include <jansson.h>

#include "api/api.h"

/* Adds the state of background work (e.g. the UMAP fit) to the /model answer. */
void api_ext_model_info(twd_app *app, json_t *model);

/* api/openapi.c: the OpenAPI document of the route table */
int api_openapi(twd_app *app, const api_args *a, api_response *res);

/* api/analyses.c (docs/MATH.md §3-§6) */
int api_embeddings(twd_app *app, const api_args *a, api_response *res);
int api_embeddings_scores(twd_app *app, const api_args *a, api_response *res);
int api_embeddings_normalization(twd_app *app, const api_args *a, api_response *res);
int api_probe(twd_app *app, const api_args *a, api_response *res);
int api_svd(twd_app *app, const api_args *a, api_response *res);
int api_svd_bias(twd_app *app, const api_args *a, api_response *res);

/* api/beyond.c (docs/MATH.md §9-§13) */
int api_mlp_values(twd_app *app, const api_args *a, api_response *res);
int api_mlp_search(twd_app *app, const api_args *a, api_response *res);
int api_mlp_svd(twd_app *app, const api_args *a, api_response *res);
int api_mlp_updates(twd_app *app, const api_args *a, api_response *res);
int api_layernorm(twd_app *app, const api_args *a, api_response *res);
int api_layernorm_sketch(twd_app *app, const api_args *a, api_response *res);
int api_selfcheck(twd_app *app, const api_args *a, api_response *res);

/* api/trajectory.c (docs/MATH.md §7-§8) */
int api_trajectory(twd_app *app, const api_args *a, api_response *res);
int api_attention(twd_app *app, const api_args *a, api_response *res);
int api_umap_layout(twd_app *app, const api_args *a, api_response *res);
int api_umap_layout_tokens(twd_app *app, const api_args *a, api_response *res);
int api_umap_status(twd_app *app, const api_args *a, api_response *res);

/* api/stats.c (docs/MATH.md §14) */
int api_trajectory_stats(twd_app *app, const api_args *a, api_response *res);
int api_trajectory_stats_job(twd_app *app, const api_args *a, api_response *res);
int api_trajectory_stats_job_status(twd_app *app, const api_args *a, api_response *res);
int api_trajectory_stats_job_result(twd_app *app, const api_args *a, api_response *res);
int api_sweep_job(twd_app *app, const api_args *a, api_response *res);
int api_sweep_job_status(twd_app *app, const api_args *a, api_response *res);
int api_sweep_job_cancel(twd_app *app, const api_args *a, api_response *res);
int api_trajectory_stats_job_cancel(twd_app *app, const api_args *a, api_response *res);
int api_sweep_job_result(twd_app *app, const api_args *a, api_response *res);

#endif
