/* The connection guard: twd accepts TCP connections itself and hands to
 * libmicrohttpd only those that begin like an HTTP/1.x request, and it
 * watches every connection's deadlines.
 *
 * - Accepted connections wait in a pending pool (bounded; the oldest is
 *   dropped when it is full) until the head of their first request (request
 *   line and headers) is complete and is one libmicrohttpd takes without an
 *   error of its own (its own errors are HTML): a method token, a target of
 *   at most max_target bytes, HTTP/1.0 or 1.1, header lines with a name and
 *   a colon, a Content-Length of digits, no Transfer-Encoding but chunked, at
 *   most max_head bytes in all. Anything else (binary garbage, another
 *   protocol or version, a malformed head) is answered at once with a JSON
 *   error (400, 413, 414, 431, 501, 505) and closed; a connection that sends
 *   nothing is closed after first_byte_timeout, one whose head is not
 *   complete header_timeout after it was accepted gets 408. So silent,
 *   slow-headed or garbage connections never occupy libmicrohttpd's
 *   connection table. (Later requests on a kept-alive connection go to
 *   libmicrohttpd directly: see README, "Security and limits".)
 * - Per client address, at most max_per_ip connections (pending and handed
 *   over together); more get a JSON 503 and are closed.
 * - Once handed over, a connection has a deadline per phase: the request's
 *   headers within header_timeout, its body within body_timeout, an idle
 *   keep-alive connection within idle_timeout; past it the guard shuts the
 *   socket down and libmicrohttpd closes the connection. When the table is
 *   nearly full, idle and slow connections are shut down first (oldest
 *   first), so a new request (a /health probe, a cached answer) finds room.
 * - While a request is computed (its connection suspended), the guard notices
 *   when the client goes away and raises the request's cancel flag.
 *
 * Thread-safety: one guard thread; the gconn_* calls are made from
 * libmicrohttpd's threads and take the guard's lock briefly. */
#ifndef TW_GUARD_H
#define TW_GUARD_H

#include <stddef.h>
#include <sys/socket.h>

#include "base/cancel.h"

struct MHD_Daemon;
typedef struct guard guard;
typedef struct gconn gconn;

typedef struct {
    size_t max_connections;    /* connections handed over at once (libmicrohttpd's table has headroom
                                  beyond, for those being shut down) */
    size_t max_pending;        /* accepted, request line not yet seen */
    size_t max_per_ip;         /* per client address, pending + handed over */
    size_t max_target;         /* bytes of a request target (414 beyond) */
    size_t max_head;           /* bytes of a request line and headers (431 beyond) */
    double first_byte_timeout; /* seconds for a new connection's request line to begin */
    double header_timeout;     /* seconds from the request line to the end of the headers */
    double body_timeout;       /* seconds from the end of the headers to the end of the body */
    double idle_timeout;       /* seconds a keep-alive connection may wait for its next request */
} guard_settings;

/* Starts the guard thread on a listening, non-blocking socket (which the
 * guard then owns), handing connections to d (started with
 * MHD_USE_NO_LISTEN_SOCKET). NULL with a message in err. */
guard *guard_start(int listen_fd, struct MHD_Daemon *d, const guard_settings *s, char *err, size_t errlen);

/* Stops accepting, closes the pending connections, joins the thread. The
 * handed-over connections stay tracked until libmicrohttpd closes them. */
void guard_stop(guard *g);

/* Frees the guard, after the daemon has stopped. NULL ok. */
void guard_free(guard *g);

/* ---- Connections handed over, called from libmicrohttpd's callbacks ---- */

typedef enum {
    GC_HEADERS, /* waiting for the request line or headers */
    GC_BODY,    /* headers complete, the body arriving */
    GC_WORK,    /* the request is computed; the connection is suspended */
    GC_SEND,    /* the answer is being sent */
    GC_IDLE,    /* keep-alive, between requests */
} gconn_phase;

/* A connection libmicrohttpd started (NOTIFY_STARTED): its socket and
 * address. NULL on allocation failure (the connection is then unguarded). */
gconn *gconn_open(guard *g, int fd, const struct sockaddr *addr);
/* libmicrohttpd closed it (NOTIFY_CLOSED). NULL ok. */
void gconn_close(guard *g, gconn *c);
/* Enters a phase (its deadline follows from the settings). In GC_WORK the
 * guard raises *cancel when the client goes away; cancel may be NULL. */
void gconn_phase_set(guard *g, gconn *c, gconn_phase phase, tw_cancel *cancel);

/* Raises the cancel flag of every request being computed. */
void guard_cancel_all(guard *g);

/* The client's address as text (for logs and per-client limits). */
const char *gconn_addr(const gconn *c);

/* Counters for /metrics. */
typedef struct {
    unsigned long long accepted, rejected_garbage, rejected_per_ip, dropped_pending, timed_out, evicted,
        canceled;
    size_t pending, active;
} guard_stats;
void guard_get_stats(guard *g, guard_stats *s);

/* The answer written to a connection the guard refuses: a complete
 * HTTP/1.1 response with the one JSON error shape. Exposed for tests. */
size_t guard_error_response(char *out, size_t outlen, int status, const char *message);

#endif
