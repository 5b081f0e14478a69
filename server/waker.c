#include "server/waker.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int waker_open(waker *w)
{
    w->started = false;
    if (pipe2(w->fd, O_CLOEXEC) == 0) return 0;
    w->fd[0] = w->fd[1] = -1;
    return -1;
}

int waker_start(waker *w, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(&w->thread, NULL, fn, arg);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    w->started = true;
    return 0;
}

void waker_stop(waker *w)
{
    if (w->started) {
        ssize_t n = write(w->fd[1], "x", 1);
        (void)n;
        pthread_join(w->thread, NULL);
        w->started = false;
    }
    for (int i = 0; i < 2; i++)
        if (w->fd[i] >= 0) {
            close(w->fd[i]);
            w->fd[i] = -1;
        }
}
