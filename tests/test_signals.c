/* A checkpoint that changes underneath (issue 9.4): the file-change check
 * of a loaded model, and the SIGBUS handler that turns a read of a
 * truncated mapping into zeros and a faulted mark instead of a crash. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/mapreg.h"
#include "core/model/gpt2.h"
#include "core/model/synth.h"
#include "server/signals.h"
#include "support/test_fs.h"
#include "support/tw_check.h"

static void tiny_checkpoint(char *dir, size_t n, uint64_t seed)
{
    tt_tmpdir(dir, n, "sig");
    synth_opts o;
    synth_opts_shape(&o, "tiny");
    o.seed = seed;
    o.tokenizer = 0;
    char err[512];
    ck_assert_msg(synth_write(dir, &o, err, sizeof err) == 0, "%s", err);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    void *b = tt_read_file(from, &len);
    tt_write_file(to, b, len);
    free(b);
}

/* Every way a checkpoint changes is seen, and named. */
START_TEST(file_changes_are_seen)
{
    char dir[512], st[600], other[512], ost[600], why[256], err[1024];
    tiny_checkpoint(dir, sizeof dir, 1);
    tiny_checkpoint(other, sizeof other, 2);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    snprintf(ost, sizeof ost, "%s/model.safetensors", other);
    gpt2_model m;
    ck_assert_msg(gpt2_load(dir, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gpt2_file_changed(&m, why, sizeof why), 0);
    ck_assert_ptr_nonnull(gpt2_mapping(&m));

    /* replaced: another file renamed over it (the mapping stays valid) */
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.new", st);
    copy_file(ost, tmp);
    ck_assert_int_eq(rename(tmp, st), 0);
    ck_assert_int_eq(gpt2_file_changed(&m, why, sizeof why), 1);
    ck_assert_msg(strstr(why, "replaced") != NULL, "%s", why);
    gpt2_free(&m);

    ck_assert_msg(gpt2_load(dir, &m, err, sizeof err) == 0, "%s", err);
    /* rewritten in place: same inode and size, new bytes and mtime */
    int fd = open(st, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    struct timespec later[2] = {{0, UTIME_OMIT}, {time(NULL) + 5, 0}};
    ck_assert_int_eq((int)pwrite(fd, "xxxx", 4, 100), 4);
    ck_assert_int_eq(futimens(fd, later), 0);
    close(fd);
    ck_assert_int_eq(gpt2_file_changed(&m, why, sizeof why), 1);
    ck_assert_msg(strstr(why, "rewritten in place") != NULL, "%s", why);
    gpt2_free(&m);

    copy_file(ost, st);
    ck_assert_msg(gpt2_load(dir, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(truncate(st, 1000), 0);
    ck_assert_int_eq(gpt2_file_changed(&m, why, sizeof why), 1);
    ck_assert_msg(strstr(why, "truncated from") && strstr(why, "to 1000 bytes"), "%s", why);
    ck_assert_int_eq(unlink(st), 0);
    ck_assert_int_eq(gpt2_file_changed(&m, why, sizeof why), 1);
    ck_assert_msg(strstr(why, "removed") != NULL, "%s", why);
    const void *map = gpt2_mapping(&m);
    ck_assert_int_ge(tw_map_find(map), 0);
    gpt2_free(&m);
    /* the mapping is forgotten with the model */
    ck_assert_int_eq(tw_map_find(map), -1);
}
END_TEST

/* A truncated mapping read after the handler is installed: zeros from the
 * lost pages, the pages still in the file intact, the mapping marked. */
START_TEST(sigbus_reads_zeros)
{
    char err[256], dir[512], path[600];
    ck_assert_msg(signals_start(err, sizeof err) == 0, "%s", err);
    tt_tmpdir(dir, sizeof dir, "bus");
    snprintf(path, sizeof path, "%s/ckpt", dir);
    long ps = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)ps * 4;
    char *bytes = malloc(len);
    memset(bytes, 'A', len);
    tt_write_file(path, bytes, len);
    free(bytes);
    int fd = open(path, O_RDONLY);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    const volatile char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    ck_assert_ptr_ne((void *)map, MAP_FAILED);
    tw_file_id id;
    tw_file_id_of(&st, &id);
    ck_assert_int_eq(tw_map_add((const void *)map, len, path, &id), 0);
    ck_assert_int_eq(map[3 * ps], 'A');
    ck_assert_int_eq(truncate(path, ps), 0);
    ck_assert_int_eq(map[2 * ps + 7], 0); /* a SIGBUS without the handler */
    ck_assert_int_eq(map[3 * ps], 0);
    ck_assert_int_eq(map[10], 'A');
    int faulted = 0;
    ck_assert_int_eq(tw_map_info((const void *)map, NULL, &faulted), 0);
    ck_assert_int_eq(faulted, 1);
    ck_assert_int_eq(tw_map_find((const void *)(map + 2 * ps)), tw_map_find((const void *)map));
    tw_map_remove((const void *)map);
    munmap((void *)map, len);
}
END_TEST

/* A SIGBUS from a page that is no checkpoint's is a bug: one line saying
 * where, then the default action (the process dies of it, no silent zeros). */
START_TEST(sigbus_elsewhere_is_one_line_and_fatal)
{
    char dir[512], path[600];
    tt_tmpdir(dir, sizeof dir, "bus2");
    snprintf(path, sizeof path, "%s/other", dir);
    long ps = sysconf(_SC_PAGESIZE);
    char *bytes = calloc(4, (size_t)ps);
    tt_write_file(path, bytes, 4 * (size_t)ps);
    free(bytes);
    int err_pipe[2];
    ck_assert_int_eq(pipe(err_pipe), 0);
    pid_t child = fork();
    if (child == 0) {
        dup2(err_pipe[1], 2);
        close(err_pipe[0]);
        char err[256];
        if (signals_start(err, sizeof err) != 0) _exit(10);
        int fd = open(path, O_RDONLY);
        const volatile char *map = mmap(NULL, 4 * (size_t)ps, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED || truncate(path, 0) != 0) _exit(11);
        char c = map[2 * ps];    /* not registered with tw_map_add */
        _exit(c == 0 ? 12 : 13); /* reached only if the SIGBUS was swallowed */
    }
    close(err_pipe[1]);
    char out[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof out - 1 && (r = read(err_pipe[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
    out[n] = '\0';
    close(err_pipe[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "status %d, stderr: %s", status, out);
    ck_assert_msg(strstr(out, "twd: SIGBUS at 0x") && strstr(out, "outside every mapped checkpoint"), "%s",
                  out);
    ck_assert_msg(strchr(out, '\n') == out + n - 1, "not one line: %s", out);
    tt_rmtree(dir);
}
END_TEST

TW_CHECK_ONE_MAIN("signals", "checkpoint_changes", 0, file_changes_are_seen, sigbus_reads_zeros,
                  sigbus_elsewhere_is_one_line_and_fatal)
