/* label: db */
/*  test_datadir: creating and locking the node's data directory. */
#include "cd_datadir.h"
#include "cd_error.h"
#include "cd_testpg.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char *
s_path(const char *sub)
{
    char *scratch = cd_testpg_scratch_dir();
    assert_non_null(scratch);
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", scratch, sub) > 0);
    free(scratch);
    return path;
}

static void
test_datadir_lock_creates_dir(void **state)
{
    char *dir = s_path("a/b/var");
    cd_datadir_lock_t *lock = NULL;
    char *err = NULL;
    assert_int_equal(cd_datadir_lock(dir, &lock, &err), 0);
    assert_null(err);
    assert_string_equal(cd_datadir_path(lock), dir);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, geteuid() == 0 ? 0711 : 0700);

    char *file = NULL;
    assert_true(asprintf(&file, "%s/cadred.lock", dir) > 0);
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    long pid = 0;
    assert_int_equal(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    assert_int_equal(pid, (long)getpid());

    cd_datadir_unlock(&lock);
    assert_null(lock);
    cd_datadir_unlock(&lock);
    cd_datadir_unlock(NULL);
    //  The file stays (removing it would race), emptied.
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 0);

    //  Taken again after release.
    assert_int_equal(cd_datadir_lock(dir, &lock, NULL), 0);
    cd_datadir_unlock(&lock);
    free(file);
    free(dir);
}

static void
test_datadir_second_lock_refused(void **state)
{
    char *dir = s_path("var");
    cd_datadir_lock_t *first = NULL;
    assert_int_equal(cd_datadir_lock(dir, &first, NULL), 0);
    //  flock belongs to the open file description: a second open in this
    //  same process conflicts like another process would.
    cd_datadir_lock_t *second = NULL;
    char *err = NULL;
    assert_int_equal(cd_datadir_lock(dir, &second, &err), CD_ELOCKED);
    assert_null(second);
    char *want = NULL;
    assert_true(
        asprintf(&want, "another cadred (pid %ld) is using data dir %s", (long)getpid(), dir) > 0);
    assert_string_equal(err, want);
    free(want);
    free(err);
    cd_datadir_unlock(&first);
    free(dir);
}

static void
test_datadir_lock_released_when_holder_dies(void **state)
{
    char *dir = s_path("var");
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        cd_datadir_lock_t *lock = NULL;
        char c = cd_datadir_lock(dir, &lock, NULL) == 0 ? 'y' : 'n';
        (void)!write(ready[1], &c, 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    assert_int_equal(c, 'y');

    cd_datadir_lock_t *lock = NULL;
    char *err = NULL;
    assert_int_equal(cd_datadir_lock(dir, &lock, &err), CD_ELOCKED);
    char *pid = NULL;
    assert_true(asprintf(&pid, "(pid %ld)", (long)child) > 0);
    assert_non_null(strstr(err, pid));
    free(pid);
    free(err);

    //  A crash: the kernel drops the lock with the process.
    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_int_equal(cd_datadir_lock(dir, &lock, &err), 0);
    assert_null(err);
    cd_datadir_unlock(&lock);
    free(dir);
}

static void
test_datadir_lock_fails_on_file(void **state)
{
    char *dir = s_path("file");
    FILE *f = fopen(dir, "w");
    assert_non_null(f);
    fclose(f);
    cd_datadir_lock_t *lock = NULL;
    char *err = NULL;
    assert_int_equal(cd_datadir_lock(dir, &lock, &err), CD_EIO);
    assert_null(lock);
    assert_non_null(strstr(err, dir));
    free(err);
    assert_int_equal(cd_datadir_lock("", &lock, NULL), CD_EINVAL);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_datadir_lock_creates_dir),
        cmocka_unit_test(test_datadir_second_lock_refused),
        cmocka_unit_test(test_datadir_lock_released_when_holder_dies),
        cmocka_unit_test(test_datadir_lock_fails_on_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
