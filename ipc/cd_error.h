/*  cd_error: the one table of error codes every layer returns.

    Actions return 0 or a negative CD_E* code. cd_strerror() gives the text.
    The table is an X-macro so the enum, names and messages never drift. */
#ifndef CD_IPC_ERROR_H
#define CD_IPC_ERROR_H

#define CD_ERROR_TABLE(X)                                                                          \
    X(ENOMEM, 1, "out of memory")                                                                  \
    X(EINVAL, 2, "invalid argument")                                                               \
    X(EPROTO, 3, "malformed message")                                                              \
    X(ETOOBIG, 4, "value exceeds a limit")                                                         \
    X(ETRUNC, 5, "truncated input")                                                                \
    X(EVERSION, 6, "unsupported version")                                                          \
    X(ETIMEDOUT, 7, "timed out")                                                                   \
    X(EBUSY, 8, "queue full")                                                                      \
    X(ENOTFOUND, 9, "not found")                                                                   \
    X(ECLOSED, 10, "closed")                                                                       \
    X(EDB, 11, "database error")                                                                   \
    X(ELOCKED, 12, "locked by another process")                                                    \
    X(EIO, 13, "input/output error")                                                               \
    X(ESTATE, 14, "wrong state for this operation")                                                \
    X(EEXIST, 15, "already exists")                                                                \
    X(EDEPTH, 16, "nesting too deep")                                                              \
    X(ECRASH, 17, "actor crashed")                                                                 \
    X(EDEAD, 18, "actor is dead")                                                                  \
    X(ECONFIG, 19, "invalid configuration")                                                        \
    X(ENOSYS, 20, "not available on this system")                                                  \
    X(ECONN, 21, "connection lost")                                                                \
    X(EPERM, 22, "permission denied")

enum {
    CD_OK = 0,
#define CD_ERROR_ENUM(name, num, text) CD_##name = -(num),
    CD_ERROR_TABLE(CD_ERROR_ENUM)
#undef CD_ERROR_ENUM
};

//  Human text for a CD_E* code (or "ok" for 0, "unknown error" otherwise).
//  Returns a static string.
const char *
cd_strerror(int code);

//  Symbolic name of a CD_E* code without the prefix ("ETIMEDOUT").
//  Returns a static string.
const char *
cd_errname(int code);

#endif
