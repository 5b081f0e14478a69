/* Cancellation and deadlines of long computations. The caller that owns a
 * request fills a tw_cancel (a flag another thread may raise when the client
 * goes away, and a deadline); the computing functions check it between
 * blocks of work and stop with TW_ECANCELED or TW_ETIMEDOUT. A NULL
 * tw_cancel never stops anything. */
#ifndef TW_BASE_CANCEL_H
#define TW_BASE_CANCEL_H

#include <stdatomic.h>

typedef struct {
    _Atomic int flag;          /* nonzero: stop (set by any thread) */
    double deadline;           /* tw_now() seconds after which to stop; 0: none */
    const _Atomic int *shared; /* a second flag, shared by several requests (e.g. raised when the
                                  model they read changes); NULL: none */
} tw_cancel;

/* TW_OK, TW_ECANCELED when a flag is set, TW_ETIMEDOUT past the deadline. */
int tw_cancel_check(const tw_cancel *c);

/* Raises the flag. */
void tw_cancel_raise(tw_cancel *c);

#endif
