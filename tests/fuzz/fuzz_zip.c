/* libFuzzer entry point for core/model/zipread and, on top of it,
 * core/model/torch_ckpt (the whole checkpoint reader from memory).
 *
 * Built with -Dfuzz=true (tests/fuzz/meson.build); run with
 *   scripts/fuzz 60 zip
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/model/torch_ckpt.h"
#include "core/model/zipread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so that any overread is caught; aligned like a
     * mapping so that the storage alignment checks behave as on files */
    uint8_t *buf = aligned_alloc(64, (size + 64) / 64 * 64);
    if (!buf) return 0;
    memcpy(buf, data, size);
    char err[512];
    zip_archive z;
    if (zip_open_mem(&z, buf, size, err, sizeof err) == 0) {
        for (size_t i = 0; i < z.n_entries; i++) {
            const zip_entry *e = &z.entries[i];
            if (zip_find(&z, e->name) != e) abort();
            const uint8_t *d = zip_entry_data(&z, e, err, sizeof err);
            if (d && e->size) {
                volatile uint8_t last = d[e->size - 1];
                (void)last;
            }
            (void)zip_entry_crc_ok(&z, e, NULL);
        }
        zip_close(&z);
    } else if (strchr(err, '\n') || z.entries) {
        abort();
    }
    torch_ckpt c;
    if (torch_ckpt_open_mem(buf, size, "fuzz", &c, err, sizeof err) == 0) {
        (void)torch_ckpt_verify_crc(&c, err, sizeof err);
        for (size_t i = 0; i < c.n_tensors; i++) {
            const tc_tensor *t = &c.tensors[i];
            if (torch_ckpt_find(&c, t->name) != t) abort();
            if (t->numel == 0 || t->numel > (1u << 20)) continue;
            volatile uint8_t b = *(const uint8_t *)tc_tensor_elem(t, t->numel - 1);
            (void)b;
            float *f = malloc(t->numel * sizeof *f);
            if (f) {
                (void)tc_tensor_to_f32(t, f);
                free(f);
            }
        }
        torch_ckpt_close(&c);
    } else if (strncmp(err, "fuzz: ", 6) != 0 || strchr(err, '\n')) {
        abort();
    }
    free(buf);
    return 0;
}
