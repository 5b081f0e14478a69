#include "base/progress.h"

#include <stddef.h>

void tw_progress_reset(tw_progress *p)
{
    if (!p) return;
    atomic_store(&p->stage, NULL);
    atomic_store(&p->total, 0);
    atomic_store(&p->done, 0);
}

void tw_progress_stage(tw_progress *p, const char *name, long long total)
{
    if (!p) return;
    /* counters first: a reader that sees the new stage sees its counters */
    atomic_store(&p->done, 0);
    atomic_store(&p->total, total);
    atomic_store(&p->stage, name);
}

void tw_progress_add(tw_progress *p, long long n)
{
    if (p) atomic_fetch_add(&p->done, n);
}

void tw_progress_set(tw_progress *p, long long n)
{
    if (p) atomic_store(&p->done, n);
}

void tw_progress_read(const tw_progress *p, const char **stage, long long *done, long long *total)
{
    if (stage) *stage = p ? atomic_load(&p->stage) : "";
    if (done) *done = p ? atomic_load(&p->done) : 0;
    if (total) *total = p ? atomic_load(&p->total) : 0;
}

double tw_progress_fraction(const tw_progress *p)
{
    long long d, t;
    tw_progress_read(p, NULL, &d, &t);
    if (t <= 0) return 0.0;
    double f = (double)d / (double)t;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}
