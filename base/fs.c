#include "base/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/err.h"
#include "base/mapreg.h"

int fs_path(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= n) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int fs_join(char *out, size_t n, const char *dir, const char *name)
{
    size_t l = strlen(dir);
    return fs_path(out, n, "%s%s%s", dir, l && dir[l - 1] == '/' ? "" : "/", name);
}

int fs_mkdir_p(const char *path)
{
    char buf[4096];
    if (fs_path(buf, sizeof buf, "%s", path) != 0) return -1;
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return (mkdir(buf, 0755) == 0 || errno == EEXIST) ? 0 : -1;
}

int fs_open_regular(const char *path, struct stat *st, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        tw_set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        tw_set_err(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        tw_set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

int fs_map_file(const char *path, unsigned long long max, const void **map, size_t *size, char *err,
                size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        tw_set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        tw_set_err(err, errlen, "%s: not a regular file", path);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        tw_set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        tw_set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (sb.st_size <= 0) {
        tw_set_err(err, errlen, "%s: file is empty", path);
        close(fd);
        return -1;
    }
    if ((unsigned long long)sb.st_size > max ||
        (unsigned long long)sb.st_size > (unsigned long long)SIZE_MAX) {
        tw_set_err(err, errlen, "%s: file is %lld bytes, more than the limit of %llu", path,
                   (long long)sb.st_size, max);
        close(fd);
        return -1;
    }
    size_t n = (size_t)sb.st_size;
    void *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        tw_set_err(err, errlen, "%s: cannot mmap %zu bytes: %s", path, n, strerror(errno));
        return -1;
    }
    tw_file_id id;
    tw_file_id_of(&sb, &id);
    (void)tw_map_add(p, n, path, &id); /* untracked when the table is full */
    *map = p;
    *size = n;
    return 0;
}

void fs_unmap_file(const void *map, size_t size)
{
    if (!map) return;
    tw_map_remove(map);
    munmap((void *)map, size);
}

char *fs_read_file(const char *path, size_t max_bytes, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    int fd = fs_open_regular(path, &st, err, errlen);
    if (fd < 0) return NULL;
    if ((unsigned long long)st.st_size > (unsigned long long)max_bytes) {
        tw_set_err(err, errlen, "%s: %lld bytes; the limit is %zu", path, (long long)st.st_size, max_bytes);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        tw_set_err(err, errlen, "%s: out of memory", path);
        close(fd);
        return NULL;
    }
    /* The file may grow while it is read: never past what was allocated. */
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            tw_set_err(err, errlen, "%s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

int fs_is_regular(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int fs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
