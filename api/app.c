/* Life cycle of the api layer's state (struct api_ext). */
#include <stdio.h>
#include <stdlib.h>

#include "api/api.h"
#include "api/ext.h"
#include "api/handlers.h"

int api_init(twd_app *app, char *err, size_t errlen)
{
    struct api_ext *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    x->answers = answer_cache_new((size_t)app->cfg->answer_cache_mb << 20);
    if (!x->answers) {
        free(x);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    app->ext = x;
    return 0;
}

void api_shutdown(twd_app *app)
{
    if (!app->ext) return;
    answer_cache_free(app->ext->answers);
    free(app->ext);
    app->ext = NULL;
}

void api_ext_model_info(twd_app *app, json_t *model)
{
    (void)app;
    (void)model;
}
