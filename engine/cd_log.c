/*  cd_log: JSON-lines logging to stderr (see cd_log.h).

    Lines are built with jansson (which escapes every string and keeps field
    order with JSON_PRESERVE_ORDER) and written with a single write(2), which
    POSIX keeps whole for pipes up to PIPE_BUF and which in practice is never
    interleaved for regular files and terminals either.

    Sinks sit in a small table under a read-write lock: logging threads hold
    it shared while they ask and feed the sinks, so removing a sink (write
    lock) waits for the calls in flight and none starts after. While any
    sink is installed, cd_log_enabled lets info lines through whatever the
    stderr threshold; cd__log_write then asks the sinks before formatting,
    so a line that no sink keeps and stderr filters costs one lock and the
    sinks' `wants` (a hash lookup for the registry), never a JSON build. */
#include "cd_log.h"
#include "cd_error.h"

#include <jansson.h>
#include <pthread.h>
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

typedef struct {
    const cd_log_sink_t *sink; //  callbacks; NULL marks a free slot
    void *arg;                 //  passed to them
} s_sink_slot_t;

//  Writers first: threads that log without pause must not starve a removal.
static pthread_rwlock_t s_sinks_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static s_sink_slot_t s_sinks[CD_LOG_SINK_MAX]; //  installed sinks, under s_sinks_lock
static size_t s_n_sinks;                       //  used slots, under s_sinks_lock
//  CD_LOG_INFO while a sink is installed, else CD_LOG_OFF: lets the macros
//  pass info lines to the sinks without reading the table.
static atomic_int s_sink_level = CD_LOG_OFF;

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
    return (int)level >= atomic_load_explicit(&s_level, memory_order_relaxed) ||
           (int)level >= atomic_load_explicit(&s_sink_level, memory_order_relaxed);
}

int
cd_log_sink_add(const cd_log_sink_t *sink, void *arg)
{
    pthread_rwlock_wrlock(&s_sinks_lock);
    int rc = CD_ETOOBIG;
    if (s_n_sinks < CD_LOG_SINK_MAX) {
        s_sinks[s_n_sinks++] = (s_sink_slot_t){sink, arg};
        atomic_store_explicit(&s_sink_level, CD_LOG_INFO, memory_order_relaxed);
        rc = 0;
    }
    pthread_rwlock_unlock(&s_sinks_lock);
    return rc;
}

void
cd_log_sink_remove(const cd_log_sink_t *sink, void *arg)
{
    pthread_rwlock_wrlock(&s_sinks_lock);
    for (size_t i = 0; i < s_n_sinks; i++) {
        if (s_sinks[i].sink == sink && s_sinks[i].arg == arg) {
            s_sinks[i] = s_sinks[--s_n_sinks];
            break;
        }
    }
    if (s_n_sinks == 0) {
        atomic_store_explicit(&s_sink_level, CD_LOG_OFF, memory_order_relaxed);
    }
    pthread_rwlock_unlock(&s_sinks_lock);
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

//  Packs the caller's fields. Returns a new object, or NULL with
//  *error_text set when the format or a value was wrong.
static json_t *
s_fields(const char *fields_fmt, va_list ap, char *error_text, size_t size)
{
    json_error_t error;
    json_t *fields = json_vpack_ex(&error, 0, fields_fmt, ap);
    if (fields && json_is_object(fields)) {
        return fields;
    }
    snprintf(error_text, size, "%s", fields ? "fields are not an object" : error.text);
    json_decref(fields);
    return NULL;
}

static const char *
s_level_name(cd_log_level_t level)
{
    return s_names[level <= CD_LOG_ERROR ? level : CD_LOG_ERROR];
}

//  The longest prefix of text, at most max bytes, that does not end inside
//  a UTF-8 sequence.
static size_t
s_utf8_prefix(const char *text, size_t max)
{
    size_t len = strlen(text);
    if (len <= max) {
        return len;
    }
    while (max > 0 && ((unsigned char)text[max] & 0xC0) == 0x80) {
        max--;
    }
    return max;
}

//  The text sinks receive: {"ts","level","msg","fields"}, bounded by
//  CD_LOG_SINK_MAX_ENTRY. Caller frees; NULL if it cannot be built.
static char *
s_sink_text(const char *ts, cd_log_level_t level, const char *msg, json_t *fields,
            const char *log_error)
{
    //  Twice at most: as given, then with the fields dropped and msg cut.
    for (int attempt = 0; attempt < 2; attempt++) {
        json_t *entry = json_object();
        json_object_set_new(entry, "ts", json_string(ts));
        json_object_set_new(entry, "level", json_string(s_level_name(level)));
        json_t *body = json_object();
        if (attempt == 0) {
            json_object_set_new(entry, "msg", msg ? json_string(msg) : json_null());
            if (fields) {
                json_object_update(body, fields);
            } else if (log_error) {
                json_object_set_new(body, "log_error", json_string(log_error));
            }
        } else {
            //  \uXXXX escapes make a byte up to 6 characters: 256 bytes fit.
            json_object_set_new(entry, "msg",
                                msg ? json_stringn(msg, s_utf8_prefix(msg, 256)) : json_null());
            json_object_set_new(body, "truncated", json_true());
        }
        json_object_set_new(entry, "fields", body);
        char *text = json_dumps(entry, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        json_decref(entry);
        if (text && strlen(text) <= CD_LOG_SINK_MAX_ENTRY) {
            return text;
        }
        free(text);
    }
    return NULL;
}

//  Feeds the sinks that want this line. s_sinks_lock held shared.
static void
s_feed_sinks(const bool wanted[], const char *ts, cd_log_level_t level, const char *actor,
             const char *msg, json_t *fields, const char *log_error)
{
    char *text = s_sink_text(ts, level, msg, fields, log_error);
    if (!text) {
        return;
    }
    size_t len = strlen(text);
    for (size_t i = 0; i < s_n_sinks; i++) {
        if (wanted[i]) {
            s_sinks[i].sink->write(s_sinks[i].arg, level, actor, text, len);
        }
    }
    free(text);
}

static void
s_write_stderr(const char *ts, cd_log_level_t level, const char *actor, const char *msg,
               json_t *fields, const char *log_error)
{
    json_t *line = json_object();
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(s_level_name(level)));
    json_object_set_new(line, "actor", json_string(actor));
    json_object_set_new(line, "msg", msg ? json_string(msg) : json_null());
    if (fields) {
        const char *key;
        json_t *value;
        json_object_foreach(fields, key, value)
        {
            if (!json_object_get(line, key)) {
                json_object_set(line, key, value);
            }
        }
    } else if (log_error) {
        json_object_set_new(line, "log_error", json_string(log_error));
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

void
cd__log_write(cd_log_level_t level, const char *actor, const char *msg, const char *fields_fmt, ...)
{
    bool to_stderr = (int)level >= atomic_load_explicit(&s_level, memory_order_relaxed);
    actor = actor ? actor : "node";
    //  Ask the sinks first: a line only they could want is built only if
    //  one does. Debug lines reach them only when stderr lets them through.
    pthread_rwlock_rdlock(&s_sinks_lock);
    bool wanted[CD_LOG_SINK_MAX] = {false};
    bool any_wanted = false;
    if (level >= CD_LOG_INFO || to_stderr) {
        for (size_t i = 0; i < s_n_sinks; i++) {
            wanted[i] = s_sinks[i].sink->wants(s_sinks[i].arg, actor);
            any_wanted = any_wanted || wanted[i];
        }
    }
    if (!to_stderr && !any_wanted) {
        pthread_rwlock_unlock(&s_sinks_lock);
        return;
    }
    char ts[48];
    s_timestamp(ts, sizeof ts);
    json_t *fields = NULL;
    char log_error[JSON_ERROR_TEXT_LENGTH] = "";
    if (fields_fmt) {
        va_list ap;
        va_start(ap, fields_fmt);
        fields = s_fields(fields_fmt, ap, log_error, sizeof log_error);
        va_end(ap);
    }
    const char *error_text = fields_fmt && !fields ? log_error : NULL;
    if (any_wanted) {
        s_feed_sinks(wanted, ts, level, actor, msg, fields, error_text);
    }
    //  The sinks are released before the write(2), which may block.
    pthread_rwlock_unlock(&s_sinks_lock);
    if (to_stderr) {
        s_write_stderr(ts, level, actor, msg, fields, error_text);
    }
    json_decref(fields);
}
