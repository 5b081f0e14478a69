/* Whole-model sweeps: a route's `block` parameter (AP_BLOCKS) given as
 * "all" or "A-B" is answered block by block through the route's own
 * handler, each block's answer kept in (and taken from) the answer cache
 * under the key of the one-block request, so a sweep and the requests of
 * single blocks share their work both ways.
 *
 * The answer: JSON {"first_block", "last_block", "n_blocks", "blocks":
 * [the one-block answers, in order]}; CSV the one-block rows one after
 * the other (their first column is the block; a table without one would
 * get it in front); LaTeX the one-block documents one after the other. The
 * size limit (max_answer_tokens) bounds the whole answer: the handler is
 * first called for its checks only, with the number of blocks
 * (api_check_answer_size_for). Between blocks the request's cancel flag
 * is checked; progress is counted in the api layer's gauges (/metrics:
 * twd_sweeps_running, twd_sweep_blocks{state="done"|"total"}). */
#ifndef TW_API_SWEEP_H
#define TW_API_SWEEP_H

#include <stdbool.h>

#include "api/api.h"
#include "base/progress.h"

/* True when the arguments ask for several blocks ("all" or "A-B"). */
bool api_sweep_requested(const api_args *a);

/* Answers the sweep of a prepared call into *res (its route's handler per
 * block). Returns 0 for a 200, -1 with an error answer otherwise. */
int api_sweep(api_call *call, api_response *res);

/* The same, with its progress (stage "blocks": the blocks answered of the
 * sweep's) in *progress (NULL: none), for a polled job (POST /sweep/job). */
int api_sweep_run(api_call *call, api_response *res, tw_progress *progress);

/* The answer-cache key of a route and arguments (router.c): malloc'd, its
 * length in *len, or NULL when memory runs out. */
char *api_cache_key(const api_route *r, const api_args *args, size_t *len);

#endif
