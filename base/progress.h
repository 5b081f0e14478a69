/* Progress of a long computation, readable from any thread: a stage name
 * and done/total counters. The computation sets the stage (which resets
 * done) and adds to done; anyone may read a consistent-enough snapshot at
 * any time (each field is atomic; a reader may see a stage with the
 * counters of the previous one for an instant, never torn values). Every
 * function accepts NULL and then does nothing, so a computation reports
 * unconditionally and a caller who does not care passes NULL. */
#ifndef TW_BASE_PROGRESS_H
#define TW_BASE_PROGRESS_H

#include <stdatomic.h>

typedef struct {
    _Atomic long long done;      /* units finished in the current stage */
    _Atomic long long total;     /* units of the current stage (0: unknown) */
    _Atomic(const char *) stage; /* a static string, or NULL before the first stage */
} tw_progress;

/* Zeroes the counters and clears the stage. */
void tw_progress_reset(tw_progress *p);

/* Starts stage `name` (a string that outlives every reader: a literal) of
 * `total` units, with done = 0. */
void tw_progress_stage(tw_progress *p, const char *name, long long total);

/* done += n. */
void tw_progress_add(tw_progress *p, long long n);

/* done = n (for a computation that knows its position rather than steps). */
void tw_progress_set(tw_progress *p, long long n);

/* Reads the stage (NULL before the first; "" for a NULL p), done and total;
 * any output pointer may be NULL. */
void tw_progress_read(const tw_progress *p, const char **stage, long long *done, long long *total);

/* done / total in [0, 1]; 0 when total is 0 or p is NULL. */
double tw_progress_fraction(const tw_progress *p);

#endif
