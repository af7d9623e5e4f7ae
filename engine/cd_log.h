/*  cd_log: structured logs, one JSON object per line on stderr.

    Each line is {"ts":"<RFC 3339 UTC, µs>","level":"info","actor":"...",
    "msg":"...", <fields>}. Fields are given as a jansson pack format and its
    arguments ("{s:s, s:i}", "child", name, "restarts", n), so every value is
    escaped correctly. The level is checked before any argument is evaluated.

    The threshold is process-wide (set once at start-up, read atomically):
    logging is the one facility every thread shares, as with czmq's zsys.

    Sinks. Besides stderr a line can go to sinks (the registry installs one
    to keep each actor's recent lines, see cd_registry_log_read). A sink sees
    every line of level info and above whatever the stderr threshold, and
    debug lines when the threshold lets them through; it first says whether
    it wants a line of that actor (so a line nobody keeps and stderr filters
    is never formatted), then receives the line as one JSON object text
        {"ts":"<RFC 3339>","level":"info","msg":"...","fields":{...}}
    (the fields nested, the actor left out: the sink was told it). A line
    whose text exceeds CD_LOG_SINK_MAX_ENTRY reaches the sinks with
    "fields":{"truncated":true} (and its msg cut if that alone is too long). */
#ifndef CD_ENGINE_LOG_H
#define CD_ENGINE_LOG_H

#include <stdbool.h>
#include <stddef.h>

#define CD_LOG_SINK_MAX 16         //  sinks installed at once
#define CD_LOG_SINK_MAX_ENTRY 2048 //  longest line text a sink receives, in bytes

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

//  True if a line of this level goes anywhere (stderr or a sink): the log
//  macros evaluate their arguments only then. Any thread.
bool
cd_log_enabled(cd_log_level_t level);

//  A receiver of log lines besides stderr. Both callbacks run in the logging
//  thread (any thread, several at once) under a shared lock that
//  cd_log_sink_remove takes exclusively: they must be quick, thread-safe,
//  and must not log.
typedef struct {
    //  Whether the sink keeps lines of actor (never NULL; "node" when the
    //  caller gave none).
    bool (*wants)(void *arg, const char *actor);
    //  One line for actor: text[0..len) is the JSON object described above,
    //  NUL-terminated. Borrowed for the call; copy to keep.
    void (*write)(void *arg, cd_log_level_t level, const char *actor, const char *text, size_t len);
} cd_log_sink_t;

//  Installs sink with arg (both borrowed until removed). Any thread.
//  Returns 0, or CD_ETOOBIG when CD_LOG_SINK_MAX sinks are installed.
int
cd_log_sink_add(const cd_log_sink_t *sink, void *arg);

//  Removes the sink installed with this sink and arg. When it returns, no
//  callback of it runs or will run. No-op if it is not installed. Any
//  thread, but not from inside a sink callback.
void
cd_log_sink_remove(const cd_log_sink_t *sink, void *arg);

//  Writes one line to stderr if level passes the threshold, and to every
//  sink that wants it (see above). fields_fmt is a jansson json_pack format
//  for an object ("{s:s}") or NULL for no fields. Any thread; one write(2)
//  per line so lines from threads never interleave.
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
