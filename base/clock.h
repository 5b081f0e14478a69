/* Time: the monotonic clock every layer measures durations with. */
#ifndef TW_BASE_CLOCK_H
#define TW_BASE_CLOCK_H

/* Seconds on CLOCK_MONOTONIC (arbitrary origin; for differences only). */
double tw_now(void);

/* Seconds since the Unix epoch (CLOCK_REALTIME), for timestamps. */
double tw_wall_now(void);

#endif
