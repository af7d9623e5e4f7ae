/*  cd_log: structured logs, one JSON object per line on stderr.

    Each line is {"ts":"<RFC 3339 UTC, µs>","level":"info","actor":"...",
    "msg":"...", <fields>}. Fields are given as a jansson pack format and its
    arguments ("{s:s, s:i}", "child", name, "restarts", n), so every value is
    escaped correctly. The level is checked before any argument is evaluated.

    The threshold is process-wide (set once at start-up, read atomically):
    logging is the one facility every thread shares, as with czmq's zsys. */
#ifndef CD_ENGINE_LOG_H
#define CD_ENGINE_LOG_H

#include <stdbool.h>

typedef enum {
    CD_LOG_DEBUG = 0,
    CD_LOG_INFO = 1,
    CD_LOG_WARN = 2,
    CD_LOG_ERROR = 3,
    CD_LOG_OFF = 4
} cd_log_level_t;

//  Sets the threshold. Any thread.
void
cd_log_set_level(cd_log_level_t level);

cd_log_level_t
cd_log_level(void);

//  Parses "debug", "info", "warn"/"warning", "error", "off". Returns 0 or
//  CD_EINVAL.
int
cd_log_level_parse(const char *text, cd_log_level_t *level);

bool
cd_log_enabled(cd_log_level_t level);

//  Writes one line if level passes the threshold. fields_fmt is a jansson
//  json_pack format for an object ("{s:s}") or NULL for no fields. Any
//  thread; one write(2) per line so lines from threads never interleave.
void
cd__log_write(cd_log_level_t level, const char *actor, const char *msg, const char *fields_fmt,
              ...);

//  cd_log_info("supervisor", "child restarted", "{s:s, s:i}", "child", name, "n", n)
//  Pass NULL as the format for a line without fields.
#define cd_log_debug(...) cd_log_at_(CD_LOG_DEBUG, __VA_ARGS__)
#define cd_log_info(...) cd_log_at_(CD_LOG_INFO, __VA_ARGS__)
#define cd_log_warn(...) cd_log_at_(CD_LOG_WARN, __VA_ARGS__)
#define cd_log_error(...) cd_log_at_(CD_LOG_ERROR, __VA_ARGS__)
#define cd_log_at_(level, ...)                                                                     \
    do {                                                                                           \
        if (cd_log_enabled(level)) {                                                               \
            cd__log_write(level, __VA_ARGS__);                                                     \
        }                                                                                          \
    } while (0)

#endif
