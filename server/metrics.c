#include "server/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 256
static const double bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NB (sizeof bounds / sizeof bounds[0])

typedef struct {
    const char *route;
    int status;
    uint64_t count;
} series;

typedef struct {
    const char *route;
    uint64_t buckets[NB + 1];
    double sum;
    uint64_t count;
} histo;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static series req[MAX_SERIES];
static size_t n_req;
static histo lat[MAX_SERIES];
static size_t n_lat;
static long in_flight;
static double load_seconds = -1;
static metrics_extra_fn extra_fn;
static void *extra_ctx;

void metrics_init(void)
{
    pthread_mutex_lock(&lock);
    n_req = n_lat = 0;
    in_flight = 0;
    pthread_mutex_unlock(&lock);
}

void metrics_request_start(void)
{
    pthread_mutex_lock(&lock);
    in_flight++;
    pthread_mutex_unlock(&lock);
}

void metrics_request_done(const char *route, int status, double seconds)
{
    pthread_mutex_lock(&lock);
    in_flight--;
    size_t i;
    for (i = 0; i < n_req; i++)
        if (req[i].status == status && strcmp(req[i].route, route) == 0) break;
    if (i == n_req && n_req < MAX_SERIES) req[n_req++] = (series){route, status, 0};
    if (i < n_req) req[i].count++;
    for (i = 0; i < n_lat; i++)
        if (strcmp(lat[i].route, route) == 0) break;
    if (i == n_lat && n_lat < MAX_SERIES) {
        memset(&lat[n_lat], 0, sizeof lat[0]);
        lat[n_lat++].route = route;
    }
    if (i < n_lat) {
        size_t b = 0;
        while (b < NB && seconds > bounds[b]) b++;
        lat[i].buckets[b]++;
        lat[i].sum += seconds;
        lat[i].count++;
    }
    pthread_mutex_unlock(&lock);
}

void metrics_set_load_seconds(double s)
{
    pthread_mutex_lock(&lock);
    load_seconds = s;
    pthread_mutex_unlock(&lock);
}

void metrics_set_extra(metrics_extra_fn fn, void *ctx)
{
    pthread_mutex_lock(&lock);
    extra_fn = fn;
    extra_ctx = ctx;
    pthread_mutex_unlock(&lock);
}

void metrics_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    if (!*buf) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (w < 0) return;
        if ((size_t)w < *cap - *len) { *len += (size_t)w; return; }
        size_t nc = (*cap + (size_t)w) * 2;
        char *nb = realloc(*buf, nc);
        if (!nb) { free(*buf); *buf = NULL; return; }
        *buf = nb;
        *cap = nc;
    }
}

char *metrics_render(size_t *out_len)
{
    size_t cap = 8192, len = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    b[0] = '\0';
    pthread_mutex_lock(&lock);
    metrics_appendf(&b, &len, &cap,
                    "# HELP twd_requests_total HTTP requests by route and status.\n"
                    "# TYPE twd_requests_total counter\n");
    for (size_t i = 0; i < n_req; i++)
        metrics_appendf(&b, &len, &cap, "twd_requests_total{route=\"%s\",status=\"%d\"} %llu\n", req[i].route,
                        req[i].status, (unsigned long long)req[i].count);
    metrics_appendf(&b, &len, &cap,
                    "# HELP twd_request_duration_seconds Time from request to answer.\n"
                    "# TYPE twd_request_duration_seconds histogram\n");
    for (size_t i = 0; i < n_lat; i++) {
        uint64_t cum = 0;
        for (size_t k = 0; k <= NB; k++) {
            cum += lat[i].buckets[k];
            if (k < NB)
                metrics_appendf(&b, &len, &cap, "twd_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                                lat[i].route, bounds[k], (unsigned long long)cum);
            else
                metrics_appendf(&b, &len, &cap, "twd_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                                lat[i].route, (unsigned long long)cum);
        }
        metrics_appendf(&b, &len, &cap, "twd_request_duration_seconds_sum{route=\"%s\"} %.6f\n", lat[i].route,
                        lat[i].sum);
        metrics_appendf(&b, &len, &cap, "twd_request_duration_seconds_count{route=\"%s\"} %llu\n", lat[i].route,
                        (unsigned long long)lat[i].count);
    }
    metrics_appendf(&b, &len, &cap,
                    "# HELP twd_requests_in_flight Requests being handled now.\n"
                    "# TYPE twd_requests_in_flight gauge\ntwd_requests_in_flight %ld\n",
                    in_flight);
    metrics_appendf(&b, &len, &cap,
                    "# HELP twd_model_load_seconds Time taken to load the model (-1 while loading).\n"
                    "# TYPE twd_model_load_seconds gauge\ntwd_model_load_seconds %.6f\n",
                    load_seconds);
    metrics_extra_fn fn = extra_fn;
    void *ctx = extra_ctx;
    pthread_mutex_unlock(&lock);
    if (fn) fn(ctx, &b, &len, &cap);
    if (b && out_len) *out_len = len;
    return b;
}
