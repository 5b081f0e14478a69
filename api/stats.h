/* The computations of /trajectory/stats in flight and its jobs
 * (api/stats.c): at most API_STATS_SLOTS at once per model, each with its
 * progress; a finished job is kept (with its result) until API_STATS_SLOTS
 * newer computations have started. */
#ifndef TW_API_STATS_H
#define TW_API_STATS_H

#include "api/api.h"
#include "base/strbuf.h"

#define API_STATS_SLOTS 8

typedef struct api_stats_jobs api_stats_jobs;

/* NULL when out of memory. */
api_stats_jobs *api_stats_jobs_new(void);

/* Cancels the jobs that run, waits for them and frees everything. NULL ok. */
void api_stats_jobs_free(api_stats_jobs *j);

/* The progress of app's computations in flight, as Prometheus series. */
void api_stats_render_metrics(const twd_app *app, strbuf *b);

#endif
