/*  cd_datadir: creates the data directory and locks it (see cd_datadir.h).

    The lock is flock(2), not fcntl(2) record locks: flock belongs to the
    open file description, so it survives in this process however many
    other descriptors open the file, and a second open() + flock() — from
    another process or this one — conflicts, which is what a test needs to
    see. It is taken non-blocking: a second node must fail fast with a
    message, not hang.

    The lock file is never removed. Unlinking it on unlock would race: a
    process that opened the old file just before could lock it while a
    third creates and locks a new one, and two nodes would both "hold" the
    lock. */
#include "cd_datadir.h"
#include "cd_error.h"
#include "cd_log.h"
#include "db_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct cd_datadir_lock {
    char *path; // absolute path of the data directory
    int fd;     // open lock file holding the flock
};

static void
s_set_errmsg(char **errmsg, char *text)
{
    if (errmsg) {
        *errmsg = text;
    } else {
        free(text);
    }
}

int
cd__datadir_mkdirs(const char *dir, mode_t mode, bool *created, char **failed)
{
    *created = false;
    *failed = NULL;
    char *path = cd__db_strdup(dir);
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') {
        path[--len] = '\0';
    }
    int err = 0;
    for (char *p = path + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last) {
            continue;
        }
        *p = '\0';
        struct stat st;
        if (mkdir(path, last ? mode : 0755) == 0) {
            *created = last;
            //  The umask may have taken bits the postgres account needs.
            if (last && chmod(path, mode) != 0) {
                err = errno;
                break;
            }
        } else if (errno != EEXIST || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            err = errno == EEXIST ? ENOTDIR : errno;
            break;
        }
        if (last) {
            break;
        }
        *p = '/';
    }
    if (err) {
        *failed = path;
    } else {
        free(path);
    }
    return err;
}

//  The pid the current holder wrote, or 0 if it cannot be read yet.
static long
s_read_holder(int fd)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        return 0;
    }
    char *end = NULL;
    long pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : 0;
}

int
cd_datadir_lock(const char *data_dir, cd_datadir_lock_t **out, char **errmsg)
{
    *out = NULL;
    if (errmsg) {
        *errmsg = NULL;
    }
    if (!data_dir || !*data_dir) {
        s_set_errmsg(errmsg, cd__db_strdup("no data dir given"));
        return CD_EINVAL;
    }
    char *failed = NULL;
    bool created = false;
    int err = cd__datadir_mkdirs(data_dir, geteuid() == 0 ? 0711 : 0700, &created, &failed);
    if (err) {
        s_set_errmsg(errmsg, cd__db_printf("cannot create data dir %s: %s (at %s)", data_dir,
                                           strerror(err), failed));
        free(failed);
        return CD_EIO;
    }
    char *path = realpath(data_dir, NULL);
    if (!path) {
        s_set_errmsg(errmsg,
                     cd__db_printf("cannot resolve data dir %s: %s", data_dir, strerror(errno)));
        return CD_EIO;
    }
    char *file = cd__db_printf("%s/cadred.lock", path);
    int rc = 0;
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        s_set_errmsg(errmsg, cd__db_printf("cannot open %s: %s", file, strerror(errno)));
        rc = CD_EIO;
        goto err_free;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            long holder = s_read_holder(fd);
            char pid[32] = "pid unknown";
            if (holder > 0) {
                snprintf(pid, sizeof pid, "pid %ld", holder);
            }
            s_set_errmsg(errmsg,
                         cd__db_printf("another cadred (%s) is using data dir %s", pid, path));
            rc = CD_ELOCKED;
        } else {
            s_set_errmsg(errmsg, cd__db_printf("cannot lock %s: %s", file, strerror(errno)));
            rc = CD_EIO;
        }
        goto err_close;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        s_set_errmsg(errmsg, cd__db_printf("cannot write %s: %s", file, strerror(errno)));
        rc = CD_EIO;
        goto err_close;
    }
    cd_datadir_lock_t *self = cd__db_calloc(1, sizeof *self);
    self->path = path;
    self->fd = fd;
    free(file);
    *out = self;
    return 0;

err_close:
    close(fd);
err_free:
    free(file);
    free(path);
    return rc;
}

void
cd_datadir_unlock(cd_datadir_lock_t **lock_p)
{
    if (!lock_p || !*lock_p) {
        return;
    }
    cd_datadir_lock_t *self = *lock_p;
    //  Empty the pid first: a node that fails to lock between these two
    //  calls says "pid unknown" rather than naming a process that has let
    //  go. Failure to truncate is harmless (the lock is what counts).
    if (ftruncate(self->fd, 0) != 0) {
        cd_log_debug("db", "cannot empty lock file", "{s:s}", "dir", self->path);
    }
    close(self->fd);
    free(self->path);
    free(self);
    *lock_p = NULL;
}

const char *
cd_datadir_path(const cd_datadir_lock_t *lock)
{
    return lock->path;
}
