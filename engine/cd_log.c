/*  cd_log: JSON-lines logging to stderr (see cd_log.h).

    Lines are built with jansson (which escapes every string and keeps field
    order with JSON_PRESERVE_ORDER) and written with a single write(2), which
    POSIX keeps whole for pipes up to PIPE_BUF and which in practice is never
    interleaved for regular files and terminals either. */
#include "cd_log.h"
#include "cd_error.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int s_level = CD_LOG_INFO;

static const char *const s_names[] = {"debug", "info", "warn", "error", "off"};

void
cd_log_set_level(cd_log_level_t level)
{
    atomic_store_explicit(&s_level, (int)level, memory_order_relaxed);
}

cd_log_level_t
cd_log_level(void)
{
    return (cd_log_level_t)atomic_load_explicit(&s_level, memory_order_relaxed);
}

bool
cd_log_enabled(cd_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&s_level, memory_order_relaxed);
}

int
cd_log_level_parse(const char *text, cd_log_level_t *level)
{
    if (!text) {
        return CD_EINVAL;
    }
    for (int i = 0; i <= CD_LOG_OFF; i++) {
        if (strcasecmp(text, s_names[i]) == 0) {
            *level = (cd_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *level = CD_LOG_WARN;
        return 0;
    }
    return CD_EINVAL;
}

static void
s_timestamp(char *out, size_t size)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%06ldZ", date, (long)tv.tv_usec);
}

void
cd__log_write(cd_log_level_t level, const char *actor, const char *msg, const char *fields_fmt,
              ...)
{
    char ts[48];
    s_timestamp(ts, sizeof ts);
    json_t *line = json_object();
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(s_names[level <= CD_LOG_ERROR ? level : 3]));
    json_object_set_new(line, "actor", json_string(actor ? actor : "node"));
    json_object_set_new(line, "msg", msg ? json_string(msg) : json_null());
    if (fields_fmt) {
        va_list ap;
        va_start(ap, fields_fmt);
        json_error_t error;
        json_t *fields = json_vpack_ex(&error, 0, fields_fmt, ap);
        va_end(ap);
        if (fields && json_is_object(fields)) {
            const char *key;
            json_t *value;
            json_object_foreach(fields, key, value) {
                if (!json_object_get(line, key)) {
                    json_object_set(line, key, value);
                }
            }
        } else {
            json_object_set_new(line, "log_error", json_string(error.text));
        }
        json_decref(fields);
    }
    //  Invalid UTF-8 in a message must not lose the line: fall back to a
    //  line that says so.
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(line);
    if (!text) {
        static const char fallback[] = "{\"level\":\"error\",\"msg\":\"unloggable line\"}\n";
        ssize_t rc = write(STDERR_FILENO, fallback, sizeof fallback - 1);
        (void)rc;
        return;
    }
    size_t len = strlen(text);
    char *out = malloc(len + 2);
    if (out) {
        memcpy(out, text, len);
        out[len] = '\n';
        ssize_t rc = write(STDERR_FILENO, out, len + 1);
        (void)rc;
        free(out);
    }
    free(text);
}
