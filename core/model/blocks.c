/* Blocks of F16/BF16 checkpoints, converted when a computation needs them:
 * see gpt2.h (gpt2_block_acquire). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/model/gpt2.h"
#include "core/model/model_internal.h"
#include "core/model/safetensors.h"

enum { LAZY_MATS = 4 }; /* attn_w, attn_proj_w, fc_w, fc_proj_w */

typedef struct {
    const void *src[LAZY_MATS]; /* the tensors in the mapping, or NULL (block not lazy) */
    int dtype[LAZY_MATS];       /* ST_F16 or ST_BF16 */
    size_t numel[LAZY_MATS];
    float *kept;    /* the converted matrices, kept for the model's lifetime; NULL */
    int converting; /* a thread is converting it to keep */
} lazy_block;

struct gpt2_lazy {
    pthread_mutex_t mu;
    pthread_cond_t done;
    size_t budget, kept_bytes, kept_blocks, n_lazy;
    int n_blocks;
    lazy_block *b;
    _Atomic unsigned long long conversions;
};

int gpt2_lazy_add(gpt2_model *m, int block, int which, const void *src, int dtype, size_t numel)
{
    if (!m->lazy) {
        struct gpt2_lazy *z = calloc(1, sizeof *z);
        if (!z) return -1;
        z->b = calloc((size_t)m->cfg.n_layer, sizeof *z->b);
        if (!z->b) {
            free(z);
            return -1;
        }
        pthread_mutex_init(&z->mu, NULL);
        pthread_cond_init(&z->done, NULL);
        z->n_blocks = m->cfg.n_layer;
        z->budget = GPT2_BLOCK_BUDGET_DEFAULT;
        atomic_init(&z->conversions, 0);
        m->lazy = z;
    }
    lazy_block *lb = &m->lazy->b[block];
    if (!lb->src[0] && !lb->src[1] && !lb->src[2] && !lb->src[3]) m->lazy->n_lazy++;
    lb->src[which] = src;
    lb->dtype[which] = dtype;
    lb->numel[which] = numel;
    return 0;
}

void gpt2_lazy_free(gpt2_model *m)
{
    struct gpt2_lazy *z = m->lazy;
    if (!z) return;
    for (int i = 0; i < z->n_blocks; i++) free(z->b[i].kept);
    free(z->b);
    pthread_cond_destroy(&z->done);
    pthread_mutex_destroy(&z->mu);
    free(z);
    m->lazy = NULL;
}

int gpt2_block_is_lazy(const gpt2_model *m, int b)
{
    if (!m->lazy || b < 0 || b >= m->lazy->n_blocks) return 0;
    const lazy_block *lb = &m->lazy->b[b];
    return lb->src[0] || lb->src[1] || lb->src[2] || lb->src[3];
}

static size_t block_floats(const lazy_block *lb)
{
    size_t n = 0;
    for (int i = 0; i < LAZY_MATS; i++) n += lb->numel[i];
    return n;
}

/* Converts the lazy matrices of lb into buf (the matrices one after the
 * other); a matrix that is not lazy takes no room. */
static void convert(const lazy_block *lb, float *buf)
{
    for (int i = 0; i < LAZY_MATS; i++) {
        if (!lb->src[i]) continue;
        if (lb->dtype[i] == ST_F16)
            st_f16_to_f32_n(buf, lb->src[i], lb->numel[i]);
        else
            st_bf16_to_f32_n(buf, lb->src[i], lb->numel[i]);
        buf += lb->numel[i];
    }
}

/* The view of block b with its lazy matrices at buf. */
static void view_at(const gpt2_model *m, int b, const lazy_block *lb, const float *buf, gpt2_block *v)
{
    *v = m->p.h[b];
    gpt2_mat *mats[LAZY_MATS] = {&v->attn_w, &v->attn_proj_w, &v->fc_w, &v->fc_proj_w};
    for (int i = 0; i < LAZY_MATS; i++) {
        if (!lb->src[i]) continue;
        mats[i]->p = buf;
        buf += lb->numel[i];
    }
}

const gpt2_block *gpt2_block_acquire(const gpt2_model *m, int b, gpt2_block_ref *ref)
{
    ref->own = NULL;
    if (!gpt2_block_is_lazy(m, b)) return &m->p.h[b];
    struct gpt2_lazy *z = m->lazy;
    lazy_block *lb = &z->b[b];
    const size_t bytes = block_floats(lb) * sizeof(float);
    pthread_mutex_lock(&z->mu);
    while (lb->converting) pthread_cond_wait(&z->done, &z->mu);
    if (lb->kept) {
        pthread_mutex_unlock(&z->mu);
        view_at(m, b, lb, lb->kept, &ref->view);
        return &ref->view;
    }
    int keep = z->kept_bytes + bytes <= z->budget;
    if (keep) {
        lb->converting = 1;
        z->kept_bytes += bytes; /* reserved now, so that racing blocks respect the budget */
    }
    pthread_mutex_unlock(&z->mu);
    float *buf = malloc(bytes);
    if (buf) {
        convert(lb, buf);
        atomic_fetch_add(&z->conversions, 1);
    }
    if (keep) {
        pthread_mutex_lock(&z->mu);
        lb->converting = 0;
        if (buf) {
            lb->kept = buf;
            z->kept_blocks++;
        } else {
            z->kept_bytes -= bytes;
        }
        pthread_cond_broadcast(&z->done);
        pthread_mutex_unlock(&z->mu);
    } else {
        ref->own = buf;
    }
    if (!buf) return NULL;
    view_at(m, b, lb, buf, &ref->view);
    return &ref->view;
}

void gpt2_block_release(gpt2_block_ref *ref)
{
    if (!ref) return;
    free(ref->own);
    ref->own = NULL;
}

void gpt2_set_block_budget(gpt2_model *m, size_t bytes)
{
    if (!m->lazy) return;
    pthread_mutex_lock(&m->lazy->mu);
    m->lazy->budget = bytes;
    pthread_mutex_unlock(&m->lazy->mu);
}

void gpt2_get_block_stats(const gpt2_model *m, gpt2_block_stats *s)
{
    memset(s, 0, sizeof *s);
    struct gpt2_lazy *z = m->lazy;
    if (!z) return;
    pthread_mutex_lock(&z->mu);
    s->lazy_blocks = z->n_lazy;
    s->kept_blocks = z->kept_blocks;
    s->kept_bytes = z->kept_bytes;
    s->budget = z->budget;
    pthread_mutex_unlock(&z->mu);
    s->conversions = atomic_load(&z->conversions);
}
