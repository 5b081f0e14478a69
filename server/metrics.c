#include "server/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/clock.h"

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
static double start_time;

void metrics_init(void)
{
    pthread_mutex_lock(&lock);
    n_req = n_lat = 0;
    in_flight = 0;
    start_time = tw_wall_now();
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

/* process_* series as the Prometheus client libraries export them. */
static void process_metrics(strbuf *b)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long vsize = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &vsize, &rss) != 2) vsize = rss = 0;
        fclose(f);
    }
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') fds++;
        closedir(d);
        fds--; /* the descriptor of the listing itself */
    }
    struct rlimit rl;
    long long max_fds =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (long long)rl.rlim_cur : 0;
    sb_printf(b,
              "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
              "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n"
              "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
              "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n"
              "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
              "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.3f\n"
              "# HELP process_open_fds Number of open file descriptors.\n"
              "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n"
              "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
              "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
              rss * (unsigned long long)page, vsize * (unsigned long long)page, cpu, fds, start_time);
    if (max_fds)
        sb_printf(b,
                  "# HELP process_max_fds Maximum number of open file descriptors.\n"
                  "# TYPE process_max_fds gauge\nprocess_max_fds %lld\n",
                  max_fds);
}

void metrics_render(void *ctx, strbuf *b)
{
    (void)ctx;
    pthread_mutex_lock(&lock);
    sb_printf(b,
              "# HELP twd_build_info The twd version (always 1).\n# TYPE twd_build_info gauge\n"
              "twd_build_info{version=\"%s\"} 1\n",
              TWD_VERSION);
    sb_printf(b, "# HELP twd_requests_total HTTP requests by route and status.\n"
                 "# TYPE twd_requests_total counter\n");
    for (size_t i = 0; i < n_req; i++)
        sb_printf(b, "twd_requests_total{route=\"%s\",status=\"%d\"} %llu\n", req[i].route, req[i].status,
                  (unsigned long long)req[i].count);
    sb_printf(b, "# HELP twd_request_duration_seconds Time from request to answer.\n"
                 "# TYPE twd_request_duration_seconds histogram\n");
    for (size_t i = 0; i < n_lat; i++) {
        uint64_t cum = 0;
        for (size_t k = 0; k <= NB; k++) {
            cum += lat[i].buckets[k];
            if (k < NB)
                sb_printf(b, "twd_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                          lat[i].route, bounds[k], (unsigned long long)cum);
            else
                sb_printf(b, "twd_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                          lat[i].route, (unsigned long long)cum);
        }
        sb_printf(b, "twd_request_duration_seconds_sum{route=\"%s\"} %.6f\n", lat[i].route, lat[i].sum);
        sb_printf(b, "twd_request_duration_seconds_count{route=\"%s\"} %llu\n", lat[i].route,
                  (unsigned long long)lat[i].count);
    }
    sb_printf(b,
              "# HELP twd_requests_in_flight Requests being handled now.\n"
              "# TYPE twd_requests_in_flight gauge\ntwd_requests_in_flight %ld\n",
              in_flight);
    /* absent until the model is loaded: no sentinel values */
    if (load_seconds >= 0)
        sb_printf(b,
                  "# HELP twd_model_load_seconds Time taken to load the model.\n"
                  "# TYPE twd_model_load_seconds gauge\ntwd_model_load_seconds %.6f\n",
                  load_seconds);
    pthread_mutex_unlock(&lock);
    process_metrics(b);
}
