/* A thread of twd's own that sleeps in poll or epoll and is told to stop
 * through a pipe (the connection guard, the checkpoint watcher): the
 * thread watches the pipe's read end and returns when it becomes
 * readable; waker_stop writes to it and joins the thread. */
#ifndef TW_WAKER_H
#define TW_WAKER_H

#include <pthread.h>
#include <stdbool.h>

typedef struct {
    int fd[2]; /* the read end (the thread watches it), the write end; -1 when not open */
    pthread_t thread;
    bool started;
} waker;

/* Opens the pipe (close-on-exec): 0, or -1 (errno set) with both ends -1. */
int waker_open(waker *w);

/* Runs fn(arg) on the waker's thread: 0, or -1 (errno set). */
int waker_start(waker *w, void *(*fn)(void *), void *arg);

/* Wakes the thread and joins it (when it was started), then closes the
 * pipe. Safe after any waker_open, whether it or waker_start failed. */
void waker_stop(waker *w);

#endif
