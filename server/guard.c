/* The connection guard: see guard.h. */
#include "server/guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "api/api.h"
#include "base/clock.h"
#include "base/log.h"
#include "server/waker.h"

struct gconn {
    int fd;
    bool shut; /* shutdown() issued; libmicrohttpd will close it */
    char addr[INET6_ADDRSTRLEN];
    struct sockaddr_storage sa;
    socklen_t salen;
    gconn_phase phase;
    double since, deadline; /* deadline 0: none */
    tw_cancel *cancel;      /* GC_WORK: raised when the client goes away */
    gconn *prev, *next;
};

typedef struct {
    gconn *head, *tail; /* oldest first */
    size_t n;
} gconn_list;

typedef struct {
    char addr[INET6_ADDRSTRLEN];
    size_t n;
} ip_count;

/* A refused connection whose answer is sent: its socket stays open, its
 * input read and dropped, until the client closes or a second passes, so
 * that the answer is not lost to a reset. */
typedef struct linger_fd {
    int fd;
    double until;
    struct linger_fd *next;
} linger_fd;

struct guard {
    int lfd, ep;
    waker wake; /* guard_stop wakes the thread through it */
    linger_fd *lingering;
    size_t n_lingering;
    struct MHD_Daemon *d;
    guard_settings s;
    unsigned char *peek;  /* (s.max_head + 1) bytes: a pending connection's head, guard thread only */
    pthread_mutex_t lock; /* guards everything below */
    gconn_list pending, active;
    ip_count *ips;
    size_t n_ips, cap_ips;
    guard_stats st;
};

/* ---- lists and per-address counts (lock held) ---- */

static void list_add(gconn_list *l, gconn *c)
{
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->n++;
}

static void list_remove(gconn_list *l, gconn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    l->n--;
}

static ip_count *ip_find(guard *g, const char *addr)
{
    for (size_t i = 0; i < g->n_ips; i++)
        if (strcmp(g->ips[i].addr, addr) == 0) return &g->ips[i];
    return NULL;
}

static size_t ip_n(guard *g, const char *addr)
{
    ip_count *e = ip_find(g, addr);
    return e ? e->n : 0;
}

static void ip_add(guard *g, const char *addr, int delta)
{
    ip_count *e = ip_find(g, addr);
    if (!e && delta > 0) {
        if (g->n_ips == g->cap_ips) {
            size_t nc = g->cap_ips ? 2 * g->cap_ips : 64;
            ip_count *n = realloc(g->ips, nc * sizeof *n);
            if (!n) return; /* the limit is then not enforced for this address */
            g->ips = n;
            g->cap_ips = nc;
        }
        e = &g->ips[g->n_ips++];
        snprintf(e->addr, sizeof e->addr, "%s", addr);
        e->n = 0;
    }
    if (!e) return;
    if (delta > 0)
        e->n += (size_t)delta;
    else if (e->n >= (size_t)-delta)
        e->n -= (size_t)-delta;
    if (e->n == 0) *e = g->ips[--g->n_ips];
}

static void addr_text(const struct sockaddr *sa, char *out, size_t n)
{
    snprintf(out, n, "-");
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)n);
}

/* ---- refusing a connection ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Service Unavailable";
    }
}

size_t guard_error_response(char *out, size_t outlen, int status, const char *message)
{
    api_response res = {0};
    api_error(&res, status, "%s", message);
    int w = snprintf(out, outlen,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n%s",
                     status, reason_phrase(status), res.len, status == 503 ? "Retry-After: 1\r\n" : "",
                     res.body ? res.body : "");
    api_response_free(&res);
    return w < 0 ? 0 : (size_t)w < outlen ? (size_t)w : outlen - 1;
}

static void drain(int fd)
{
    char buf[4096];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {}
}

/* Writes the error answer (best effort: the socket is non-blocking and the
 * answer small), ends the sending side and lets the socket linger. Guard
 * thread only. */
static void refuse(guard *g, int fd, int status, const char *message)
{
    char buf[1024];
    size_t n = guard_error_response(buf, sizeof buf, status, message);
    drain(fd);
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    shutdown(fd, SHUT_WR);
    linger_fd *l = g->n_lingering < g->s.max_pending ? malloc(sizeof *l) : NULL;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = l};
    if (!l || epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(l);
        close(fd);
        return;
    }
    l->fd = fd;
    l->until = tw_now() + 1.0;
    l->next = g->lingering;
    g->lingering = l;
    g->n_lingering++;
}

static bool is_lingering(guard *g, void *p)
{
    for (linger_fd *l = g->lingering; l; l = l->next)
        if (l == p) return true;
    return false;
}

/* Closes lingering sockets whose client has closed, or whose time is up
 * (all of them when `all`). */
static void linger_sweep(guard *g, bool all)
{
    double now = tw_now();
    for (linger_fd **pp = &g->lingering; *pp;) {
        linger_fd *l = *pp;
        char b[4096];
        ssize_t r;
        while ((r = recv(l->fd, b, sizeof b, MSG_DONTWAIT)) > 0) {}
        if (all || r == 0 || now > l->until || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            epoll_ctl(g->ep, EPOLL_CTL_DEL, l->fd, NULL);
            close(l->fd);
            *pp = l->next;
            free(l);
            g->n_lingering--;
        } else {
            pp = &l->next;
        }
    }
}

/* ---- the request head ---- */

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The value of a header line (after the colon), without surrounding spaces. */
static void header_value(const unsigned char *v, const unsigned char *e, const unsigned char **vs, size_t *vn)
{
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    *vs = v;
    *vn = (size_t)(e - v);
}

static void quote(char *out, size_t n, const unsigned char *s, size_t len)
{
    size_t k = len < 32 ? len : 32, o = 0;
    for (size_t i = 0; i < k && o + 2 < n; i++) out[o++] = s[i] < 0x20 || s[i] >= 0x7f ? '?' : (char)s[i];
    out[o] = '\0';
}

/* Checks one header line [l, e) (e at its LF). 0, or -1 with *status and msg. */
static int check_header(const unsigned char *l, const unsigned char *e, int *status, char *msg, size_t msglen)
{
    if (l[0] == ' ' || l[0] == '\t') return 0; /* an obsolete continuation line, as libmicrohttpd takes it */
    const unsigned char *colon = memchr(l, ':', (size_t)(e - l));
    const unsigned char *n = l;
    while (n < e && is_tchar(*n)) n++;
    if (!colon || colon == l || n != colon) {
        char shown[48];
        quote(shown, sizeof shown, l, (size_t)(e - l) - (e > l && e[-1] == '\r'));
        *status = 400;
        snprintf(msg, msglen, "malformed header line '%s' (a name, a colon, a value)", shown);
        return -1;
    }
    size_t nl = (size_t)(colon - l), vn;
    const unsigned char *vs;
    header_value(colon + 1, e, &vs, &vn);
    char shown[48];
    quote(shown, sizeof shown, vs, vn);
    if (nl == 14 && strncasecmp((const char *)l, "Content-Length", 14) == 0) {
        size_t i = 0;
        while (i < vn && vs[i] >= '0' && vs[i] <= '9') i++;
        if (vn == 0 || i != vn) {
            *status = 400;
            snprintf(msg, msglen, "Content-Length must be a number of bytes (digits only), got '%s'", shown);
            return -1;
        }
        if (vn > 18) {
            *status = 413;
            snprintf(msg, msglen, "request body too large: Content-Length %s", shown);
            return -1;
        }
    } else if (nl == 17 && strncasecmp((const char *)l, "Transfer-Encoding", 17) == 0) {
        if (vn != 7 || strncasecmp((const char *)vs, "chunked", 7) != 0) {
            *status = 501;
            snprintf(msg, msglen, "Transfer-Encoding '%s' is not supported (only chunked)", shown);
            return -1;
        }
    }
    return 0;
}

/* The version of a request line, v[0..ve): -1 when it is not HTTP/d.d,
 * -2 when it is another version than 1.0 or 1.1, else 0. */
static int check_version(const unsigned char *v, const unsigned char *ve)
{
    if (ve - v != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' ||
        v[7] > '9')
        return -1;
    return v[5] != '1' || (v[7] != '0' && v[7] != '1') ? -2 : 0;
}

/* The request line of b[0..n), after up to 4 leading empty lines: 1 whole
 * and good (*rest: the first header line), 0 more bytes needed, -1 bad
 * (*status, msg as check_head's). */
static int check_request_line(const unsigned char *b, size_t n, const guard_settings *s, int *status,
                              char *msg, size_t msglen, const unsigned char **rest)
{
    size_t i = 0, skipped = 0;
    while (i < n && (b[i] == '\r' || b[i] == '\n')) {
        if (++skipped > 4) return -1;
        i++;
    }
    size_t m = i;
    while (i < n && b[i] >= 'A' && b[i] <= 'Z' && i - m < 24) i++;
    if (i == n) return 0;
    if (i == m || b[i] != ' ') return -1;
    size_t t0 = ++i;
    while (i < n && b[i] > ' ' && b[i] < 0x7f && i - t0 <= s->max_target) i++;
    if (i - t0 > s->max_target) {
        *status = 414;
        snprintf(msg, msglen, "request target too long: more than %zu bytes (max_url)", s->max_target);
        return -1;
    }
    if (i == n) return 0;
    if (i == t0 || b[i] != ' ') return -1;
    const unsigned char *v = b + i + 1, *nl = memchr(v, '\n', n - (i + 1));
    if (!nl) return n - i > 16 ? -1 : 0;
    int rc = check_version(v, nl > v && nl[-1] == '\r' ? nl - 1 : nl);
    if (rc == -2) {
        *status = 505;
        snprintf(msg, msglen, "only HTTP/1.0 and HTTP/1.1 are served");
    }
    *rest = nl + 1;
    return rc == 0 ? 1 : -1;
}

/* Is b[0..n) the head (request line and headers) of an HTTP/1.x request
 * that libmicrohttpd will take without an error of its own? 1 yes (the
 * whole head is in view), 0 not yet known (more bytes needed), -1 no
 * (*status and msg say why: 400 bad request line or header line, 413 an
 * impossible Content-Length, 414 target longer than max_target, 431 head
 * longer than max_head, 501 a Transfer-Encoding other than chunked, 505
 * another HTTP version). Leading empty lines are allowed, as RFC 9112 asks. */
static int check_head(const unsigned char *b, size_t n, const guard_settings *s, int *status, char *msg,
                      size_t msglen)
{
    *status = 400;
    snprintf(msg, msglen, "not an HTTP request (bad request line)");
    const unsigned char *l = NULL;
    int r = check_request_line(b, n, s, status, msg, msglen, &l);
    if (r <= 0) return r;
    /* the header lines, up to the empty line */
    for (;;) {
        const unsigned char *e = memchr(l, '\n', n - (size_t)(l - b));
        size_t upto = e ? (size_t)(e - b) : n;
        if (upto > s->max_head) {
            *status = 431;
            snprintf(msg, msglen, "request headers too large: more than %zu bytes", s->max_head);
            return -1;
        }
        if (!e) return 0;
        if (e == l || (e == l + 1 && l[0] == '\r')) return 1;
        if (check_header(l, e, status, msg, msglen) != 0) return -1;
        l = e + 1;
    }
}

/* ---- the guard thread ---- */

static void forget_pending(guard *g, gconn *c)
{
    list_remove(&g->pending, c);
    ip_add(g, c->addr, -1);
}

/* Shuts idle, then header-phase, then body-phase connections (oldest first)
 * until the table has room for new requests. Lock held. */
static void make_room(guard *g)
{
    size_t reserve = g->s.max_connections / 16 < 4 ? 4 : g->s.max_connections / 16;
    size_t hi = g->s.max_connections > reserve ? g->s.max_connections - reserve : 0;
    size_t leaving = 0;
    for (gconn *c = g->active.head; c; c = c->next) leaving += c->shut;
    static const gconn_phase order[] = {GC_IDLE, GC_HEADERS, GC_BODY};
    for (size_t k = 0; k < 3 && g->active.n - leaving >= hi; k++)
        for (gconn *c = g->active.head; c && g->active.n - leaving >= hi; c = c->next)
            if (!c->shut && c->phase == order[k]) {
                shutdown(c->fd, SHUT_RDWR);
                c->shut = true;
                leaving++;
                g->st.evicted++;
            }
}

static void hand_over(guard *g, gconn *c)
{
    epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
    pthread_mutex_lock(&g->lock);
    forget_pending(g, c);
    make_room(g);
    size_t leaving = 0;
    for (gconn *a = g->active.head; a; a = a->next) leaving += a->shut;
    bool full = g->active.n - leaving >= g->s.max_connections;
    pthread_mutex_unlock(&g->lock);
    if (full) {
        refuse(g, c->fd, 503, "the server has too many connections; retry shortly");
    } else if (MHD_add_connection(g->d, c->fd, (const struct sockaddr *)&c->sa, c->salen) != MHD_YES) {
        /* libmicrohttpd closed the socket */
    }
    free(c);
}

static void inspect(guard *g, gconn *c)
{
    ssize_t n = recv(c->fd, g->peek, g->s.max_head + 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    int status = 400;
    char msg[256];
    int r = n > 0 ? check_head(g->peek, (size_t)n, &g->s, &status, msg, sizeof msg) : -1;
    if (r == 0) {
        /* begun: the whole head is due within header_timeout of the connection */
        pthread_mutex_lock(&g->lock);
        c->deadline = c->since + g->s.header_timeout;
        pthread_mutex_unlock(&g->lock);
        return; /* edge-triggered: woken again when more arrives */
    }
    if (r > 0) {
        hand_over(g, c);
        return;
    }
    epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
    pthread_mutex_lock(&g->lock);
    forget_pending(g, c);
    if (n > 0) g->st.rejected_garbage++;
    pthread_mutex_unlock(&g->lock);
    if (n > 0)
        refuse(g, c->fd, status, msg);
    else
        close(c->fd);
    free(c);
}

static void accept_all(guard *g)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(g->lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or out of descriptors: try again at the next event */
        }
        char addr[INET6_ADDRSTRLEN];
        addr_text((struct sockaddr *)&sa, addr, sizeof addr);
        /* room in the receive buffer for a whole head, which is only peeked at */
        int rcv = 0;
        socklen_t rl = sizeof rcv;
        int want = (int)(g->s.max_head + 4096);
        if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &rl) == 0 && rcv / 2 < want)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
        gconn *c = calloc(1, sizeof *c);
        pthread_mutex_lock(&g->lock);
        g->st.accepted++;
        bool over = ip_n(g, addr) >= g->s.max_per_ip;
        if (over) g->st.rejected_per_ip++;
        gconn *drop = NULL;
        if (!over && c && g->pending.n >= g->s.max_pending) {
            drop = g->pending.head;
            forget_pending(g, drop);
            g->st.dropped_pending++;
        }
        if (!over && c) {
            c->fd = fd;
            memcpy(&c->sa, &sa, len);
            c->salen = len;
            snprintf(c->addr, sizeof c->addr, "%s", addr);
            c->since = tw_now();
            c->deadline = c->since + g->s.first_byte_timeout;
            list_add(&g->pending, c);
            ip_add(g, addr, 1);
        }
        pthread_mutex_unlock(&g->lock);
        if (drop) {
            epoll_ctl(g->ep, EPOLL_CTL_DEL, drop->fd, NULL);
            close(drop->fd);
            free(drop);
        }
        if (over || !c) {
            free(c);
            refuse(g, fd, 503, over ? "too many connections from this address" : "out of memory");
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            pthread_mutex_lock(&g->lock);
            forget_pending(g, c);
            pthread_mutex_unlock(&g->lock);
            close(fd);
            free(c);
        }
    }
}

/* True when the peer has closed its side (EOF pending on the socket). */
static bool peer_gone(int fd)
{
    char b;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Deadlines of every connection, and clients gone while their request is
 * computed. */
static void sweep(guard *g)
{
    double now = tw_now();
    gconn *expired = NULL;
    pthread_mutex_lock(&g->lock);
    for (gconn *c = g->pending.head, *next; c; c = next) {
        next = c->next;
        if (c->deadline >= now) continue;
        forget_pending(g, c);
        g->st.timed_out++;
        c->next = expired;
        expired = c;
    }
    for (gconn *c = g->active.head; c; c = c->next) {
        if (!c->shut && c->deadline > 0 && now > c->deadline) {
            shutdown(c->fd, SHUT_RDWR);
            c->shut = true;
            g->st.timed_out++;
        }
        if (c->phase == GC_WORK && c->cancel && peer_gone(c->fd)) {
            tw_cancel_raise(c->cancel);
            c->cancel = NULL;
            g->st.canceled++;
        }
    }
    pthread_mutex_unlock(&g->lock);
    while (expired) {
        gconn *c = expired;
        expired = c->next;
        epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
        refuse(g, c->fd, 408, "no request arrived in time");
        free(c);
    }
}

static void *guard_main(void *arg)
{
    guard *g = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(g->ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &g->wake) return NULL;
            if (p == &g->lfd)
                accept_all(g);
            else if (!is_lingering(g, p))
                inspect(g, p);
        }
        sweep(g);
        linger_sweep(g, false);
    }
}

guard *guard_start(int listen_fd, struct MHD_Daemon *d, const guard_settings *s, char *err, size_t errlen)
{
    guard *g = calloc(1, sizeof *g);
    unsigned char *peek = malloc(s->max_head + 1);
    if (!g || !peek) {
        snprintf(err, errlen, "out of memory");
        free(peek);
        free(g);
        return NULL;
    }
    g->lfd = listen_fd;
    g->d = d;
    g->s = *s;
    g->peek = peek;
    pthread_mutex_init(&g->lock, NULL);
    g->ep = -1;
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = &g->lfd};
    struct epoll_event we = {.events = EPOLLIN, .data.ptr = &g->wake};
    if (waker_open(&g->wake) != 0 || (g->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        epoll_ctl(g->ep, EPOLL_CTL_ADD, listen_fd, &le) != 0 ||
        epoll_ctl(g->ep, EPOLL_CTL_ADD, g->wake.fd[0], &we) != 0 ||
        waker_start(&g->wake, guard_main, g) != 0) {
        snprintf(err, errlen, "cannot start the connection guard: %s", strerror(errno));
        if (g->ep >= 0) close(g->ep);
        waker_stop(&g->wake);
        guard_free(g);
        return NULL;
    }
    return g;
}

void guard_stop(guard *g)
{
    if (!g) return;
    waker_stop(&g->wake);
    close(g->lfd);
    linger_sweep(g, true);
    pthread_mutex_lock(&g->lock);
    while (g->pending.head) {
        gconn *c = g->pending.head;
        forget_pending(g, c);
        close(c->fd);
        free(c);
    }
    pthread_mutex_unlock(&g->lock);
    close(g->ep);
}

void guard_free(guard *g)
{
    if (!g) return;
    while (g->active.head) gconn_close(g, g->active.head);
    free(g->ips);
    free(g->peek);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* ---- handed-over connections ---- */

static double phase_deadline(const guard *g, gconn_phase p, double now)
{
    switch (p) {
    case GC_HEADERS: return now + g->s.header_timeout;
    case GC_BODY: return now + g->s.body_timeout;
    case GC_IDLE: return now + g->s.idle_timeout;
    default: return 0;
    }
}

gconn *gconn_open(guard *g, int fd, const struct sockaddr *addr)
{
    gconn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    addr_text(addr, c->addr, sizeof c->addr);
    c->phase = GC_HEADERS;
    c->since = tw_now();
    c->deadline = phase_deadline(g, GC_HEADERS, c->since);
    pthread_mutex_lock(&g->lock);
    list_add(&g->active, c);
    ip_add(g, c->addr, 1);
    pthread_mutex_unlock(&g->lock);
    return c;
}

void gconn_close(guard *g, gconn *c)
{
    if (!c) return;
    pthread_mutex_lock(&g->lock);
    list_remove(&g->active, c);
    ip_add(g, c->addr, -1);
    pthread_mutex_unlock(&g->lock);
    free(c);
}

void gconn_phase_set(guard *g, gconn *c, gconn_phase phase, tw_cancel *cancel)
{
    if (!c) return;
    pthread_mutex_lock(&g->lock);
    c->phase = phase;
    c->since = tw_now();
    c->deadline = phase_deadline(g, phase, c->since);
    c->cancel = phase == GC_WORK ? cancel : NULL;
    pthread_mutex_unlock(&g->lock);
}

void guard_cancel_all(guard *g)
{
    pthread_mutex_lock(&g->lock);
    for (gconn *c = g->active.head; c; c = c->next)
        if (c->phase == GC_WORK && c->cancel) tw_cancel_raise(c->cancel);
    pthread_mutex_unlock(&g->lock);
}

const char *gconn_addr(const gconn *c) { return c ? c->addr : "-"; }

void guard_get_stats(guard *g, guard_stats *s)
{
    pthread_mutex_lock(&g->lock);
    *s = g->st;
    s->pending = g->pending.n;
    s->active = g->active.n;
    pthread_mutex_unlock(&g->lock);
}
