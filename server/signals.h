/* Signals, whatever thread they land on.
 *
 * OpenBLAS starts its threads in a library constructor, before main can
 * block anything, so a process-directed signal may be delivered to one of
 * them; a mask set in main cannot make shutdown deterministic. So twd gives
 * SIGINT and SIGTERM a handler (a process-wide disposition, run by
 * whichever thread receives the signal) that only writes the signal's
 * number into a pipe, and one thread reads the pipe and acts:
 *
 *   first signal   stop: no new connections, queued requests answered 503,
 *                  the computations under way finish and their answers are
 *                  sent (each bounded by max_request_seconds), then exit 0;
 *   second         logged; the drain goes on unchanged (answers under way
 *                  still arrive);
 *   third          hurry: the computations under way are canceled, their
 *                  clients answered 503 "shutting down", then exit 0;
 *   fourth         exit at once, status 1.
 *
 * SIGBUS: a read of a mapped checkpoint page that no longer exists (the
 * file was truncated underneath). The handler finds the mapping the
 * address belongs to (base/mapreg.h), writes one line naming the file, marks
 * the mapping faulted and maps zero pages over the rest of it, so that the
 * faulting read (and every later one) returns 0.0 instead of killing the
 * process. That is safe because nothing is unwound: the computation runs
 * to its end with its locks and memory intact, reading zeros (finite
 * numbers); the request it served sees the mapping faulted and answers 503
 * (api_compute), and the model is reloaded from the file. Jumping out of
 * the handler (siglongjmp) instead would abandon whatever locks, heap
 * blocks and half-built structures the worker (or OpenBLAS) held. When the
 * zero pages cannot be mapped, the handler writes the line and exits with
 * status TWD_EXIT_SIGBUS; a SIGBUS outside every registered mapping is a
 * bug: one line, then the default action (a core dump). SIGPIPE is
 * ignored. */
#ifndef TW_SIGNALS_H
#define TW_SIGNALS_H

#include <stddef.h>

#define TWD_EXIT_SIGBUS 3 /* a mapped checkpoint page faulted and could not be replaced */

/* Installs the handlers and starts the signal thread. Call from main
 * before starting any thread of twd's own: it blocks SIGINT and SIGTERM in
 * the calling thread (so the threads it starts inherit the mask and are
 * not interrupted; the handler runs on the signal thread or on a library's
 * thread). 0, or -1 with one line in err. */
int signals_start(char *err, size_t errlen);

/* Waits up to `seconds` for the first stop signal: its number (SIGINT or
 * SIGTERM), or 0 when none came. Once one came, returns it at once. */
int signals_wait_stop(double seconds);

/* What the third signal does: fn(ctx), called on the signal thread. */
void signals_on_hurry(void (*fn)(void *ctx), void *ctx);

#endif
