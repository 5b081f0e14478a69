#include "base/num.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

double tw_float_decimal(float v)
{
    if (!isfinite(v)) return v;
    char buf[32];
    for (int p = 1; p < 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) return strtod(buf, NULL);
    }
    snprintf(buf, sizeof buf, "%.9g", (double)v); /* 9 digits always read back */
    return strtod(buf, NULL);
}
