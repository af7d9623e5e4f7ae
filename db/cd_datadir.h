/*  cd_datadir: the node's data directory and the lock that makes it ours.

    One cadred per data directory: two nodes sharing one embedded
    PostgreSQL cluster, keys and admin password would corrupt each other's
    state. The lock is an flock(2) on <data dir>/cadred.lock, which the
    kernel drops when the holder exits however it exits, so a crash never
    leaves a stale lock behind. The file holds the holder's pid, for the
    message a second node prints. */
#ifndef CD_DB_DATADIR_H
#define CD_DB_DATADIR_H

typedef struct cd_datadir_lock cd_datadir_lock_t;

//  Creates data_dir if missing (mode 0700; 0711 when running as root, so
//  the postgres account can reach the embedded cluster inside it while it
//  still cannot list it), then takes the lock without waiting and writes
//  our pid into the lock file.
//  Returns 0 and *out (caller owns; cd_datadir_unlock); CD_ELOCKED if
//  another process holds the lock ("another cadred (pid N) is using data
//  dir X"); CD_EIO if the directory or file cannot be created. On failure,
//  if errmsg is not NULL, *errmsg receives a message (caller frees).
//  The lock is held by the open file, which is close-on-exec: children the
//  node spawns never inherit it.
int cd_datadir_lock(const char *data_dir, cd_datadir_lock_t **out, char **errmsg);

//  Releases the lock (emptying the pid in the file, which stays: removing
//  it would race with a process opening it) and frees. Safe on NULL and on
//  *lock_p == NULL; nulls the caller's pointer.
void cd_datadir_unlock(cd_datadir_lock_t **lock_p);

//  The data directory's absolute path. Borrowed, valid until unlock.
const char *cd_datadir_path(const cd_datadir_lock_t *lock);

#endif
