/* Signals: see signals.h. */
#include "server/signals.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mapreg.h"

static int pipe_fd[2] = {-1, -1};
static long page_size = 4096;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int first_signal; /* guarded by lock, as the two below */
static void (*hurry_fn)(void *);
static void *hurry_ctx;

/* ---- async-signal-safe writing ---- */

static size_t put_str(char *buf, size_t o, size_t cap, const char *s)
{
    while (*s && o + 1 < cap) buf[o++] = *s++;
    return o;
}

static size_t put_num(char *buf, size_t o, size_t cap, uintmax_t v, unsigned base)
{
    char d[32];
    size_t n = 0;
    do {
        d[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && n < sizeof d);
    while (n && o + 1 < cap) buf[o++] = d[--n];
    return o;
}

static void write_all(const char *buf, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, buf, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return;
        }
        buf += w;
        n -= (size_t)w;
    }
}

/* ---- handlers ---- */

static void on_stop_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(pipe_fd[1], &b, 1);
    (void)w;
    errno = saved;
}

/* set by the first thread that exits on a page it cannot replace */
static atomic_int sigbus_exiting;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    char line[1400];
    size_t o = put_str(line, 0, sizeof line, "twd: SIGBUS ");
    int slot = tw_map_find(si->si_addr);
    if (slot < 0) {
        /* not a checkpoint page: a bug; let it crash where it happened */
        o = put_str(line, o, sizeof line, "at 0x");
        o = put_num(line, o, sizeof line, (uintptr_t)si->si_addr, 16);
        o = put_str(line, o, sizeof line, ", outside every mapped checkpoint\n");
        write_all(line, o);
        signal(sig, SIG_DFL);
        errno = saved;
        return;
    }
    uintptr_t start, addr = (uintptr_t)si->si_addr;
    size_t len;
    tw_map_range(slot, &start, &len);
    uintptr_t page = addr & ~(uintptr_t)(page_size - 1);
    if (page < start) page = start;
    /* zero pages from the faulting one to the end of the mapping: the
     * faulting instruction runs again and reads 0.0 */
    long r = syscall(SYS_mmap, (void *)page, (size_t)(start + len - page), PROT_READ,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0L);
    int again = tw_map_mark_faulted(slot);
    /* several threads can fault at once on the lost pages: one line, one
     * exit; the others wait for that exit */
    if (r != (long)page && atomic_exchange(&sigbus_exiting, 1))
        for (;;) pause();
    if (r != (long)page || !again) {
        o = put_str(line, o, sizeof line, "reading ");
        o = put_str(line, o, sizeof line, tw_map_path(slot));
        o = put_str(line, o, sizeof line, " at offset ");
        o = put_num(line, o, sizeof line, addr - start, 10);
        o = put_str(line, o, sizeof line,
                    r == (long)page
                        ? ": the file changed underneath (truncated?); the model stops answering "
                          "and is reloaded when the file is complete\n"
                        : ": the file changed underneath and the page cannot be replaced; exiting\n");
        write_all(line, o);
    }
    if (r != (long)page) _exit(TWD_EXIT_SIGBUS);
    errno = saved;
}

/* ---- the signal thread ---- */

static const char *name_of(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal";
}

static void *signal_main(void *arg)
{
    (void)arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    for (int n = 0;;) {
        unsigned char b;
        ssize_t r = read(pipe_fd[0], &b, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r != 1) return NULL;
        int sig = b;
        n++;
        if (n == 1) {
            pthread_mutex_lock(&lock);
            first_signal = sig;
            pthread_cond_broadcast(&cond);
            pthread_mutex_unlock(&lock);
        } else if (n == 2) {
            tw_log("second %s: still finishing the answers under way (a third signal cancels them)",
                   name_of(sig));
        } else if (n == 3) {
            tw_log("third %s: canceling the computations under way", name_of(sig));
            pthread_mutex_lock(&lock);
            void (*fn)(void *) = hurry_fn;
            void *ctx = hurry_ctx;
            pthread_mutex_unlock(&lock);
            if (fn) fn(ctx);
        } else {
            tw_log("fourth %s: exiting at once", name_of(sig));
            _exit(1);
        }
    }
}

int signals_start(char *err, size_t errlen)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0) page_size = ps;
    if (pipe2(pipe_fd, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot create the signal pipe: %s", strerror(errno));
        return -1;
    }
    /* a full pipe (a signal storm) drops signals rather than block a handler */
    fcntl(pipe_fd[1], F_SETFL, fcntl(pipe_fd[1], F_GETFL) | O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    struct sigaction bus;
    memset(&bus, 0, sizeof bus);
    sigemptyset(&bus.sa_mask);
    bus.sa_flags = SA_SIGINFO | SA_RESTART;
    bus.sa_sigaction = on_sigbus;
    sigaction(SIGBUS, &bus, NULL);

    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, signal_main, NULL) != 0) {
        snprintf(err, errlen, "cannot start the signal thread");
        return -1;
    }
    pthread_detach(t);
    return 0;
}

int signals_wait_stop(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = (long long)ts.tv_nsec + (long long)(seconds * 1e9);
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&lock);
    while (!first_signal)
        if (pthread_cond_timedwait(&cond, &lock, &ts) != 0) break;
    int sig = first_signal;
    pthread_mutex_unlock(&lock);
    return sig;
}

void signals_on_hurry(void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&lock);
    hurry_ctx = ctx;
    hurry_fn = fn;
    pthread_mutex_unlock(&lock);
}
