#include "base/cancel.h"

#include "base/clock.h"
#include "base/status.h"

int tw_cancel_check(const tw_cancel *c)
{
    if (!c) return TW_OK;
    if (atomic_load_explicit(&c->flag, memory_order_relaxed)) return TW_ECANCELED;
    if (c->shared && atomic_load_explicit(c->shared, memory_order_relaxed)) return TW_ECANCELED;
    if (c->deadline > 0 && tw_now() > c->deadline) return TW_ETIMEDOUT;
    return TW_OK;
}

void tw_cancel_raise(tw_cancel *c)
{
    if (c) atomic_store(&c->flag, 1);
}
