/*  cd_log: the threshold, the JSON line on stderr, and sinks (which lines
    reach them, in what form, bounded, and how they come and go). stderr is
    captured into a temporary file where a test must see what was written. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  --- a recording sink -------------------------------------------------------------

typedef struct {
    pthread_mutex_t lock;      //  guards the rest
    const char *actor;         //  the one actor it wants
    int asked;                 //  calls of wants
    int written;               //  calls of write
    char last[4096];           //  last text written
    char last_actor[64];       //  actor of the last line
    cd_log_level_t last_level; //  level of the last line
    bool bad_len;              //  a write's len did not match its text
} s_rec_t;

static bool
s_rec_wants(void *arg, const char *actor)
{
    s_rec_t *rec = (s_rec_t *)arg;
    pthread_mutex_lock(&rec->lock);
    rec->asked++;
    pthread_mutex_unlock(&rec->lock);
    return strcmp(actor, rec->actor) == 0;
}

static void
s_rec_write(void *arg, cd_log_level_t level, const char *actor, const char *text, size_t len)
{
    s_rec_t *rec = (s_rec_t *)arg;
    pthread_mutex_lock(&rec->lock);
    rec->written++;
    //  Callbacks may run on other threads: record, the test thread asserts.
    rec->bad_len = rec->bad_len || strlen(text) != len;
    snprintf(rec->last, sizeof rec->last, "%s", text);
    snprintf(rec->last_actor, sizeof rec->last_actor, "%s", actor);
    rec->last_level = level;
    pthread_mutex_unlock(&rec->lock);
}

static const cd_log_sink_t s_rec_sink = {s_rec_wants, s_rec_write};

static void
s_rec_init(s_rec_t *rec, const char *actor)
{
    memset(rec, 0, sizeof *rec);
    pthread_mutex_init(&rec->lock, NULL);
    rec->actor = actor;
}

//  --- stderr capture ----------------------------------------------------------------

typedef struct {
    int saved;  //  the real stderr
    FILE *file; //  where it goes meanwhile
} s_capture_t;

static void
s_capture_start(s_capture_t *cap)
{
    fflush(stderr);
    cap->file = tmpfile();
    assert_non_null(cap->file);
    cap->saved = dup(STDERR_FILENO);
    assert_true(cap->saved >= 0);
    assert_true(dup2(fileno(cap->file), STDERR_FILENO) >= 0);
}

//  Restores stderr and returns what was written (caller frees).
static char *
s_capture_end(s_capture_t *cap)
{
    fflush(stderr);
    assert_true(dup2(cap->saved, STDERR_FILENO) >= 0);
    close(cap->saved);
    long size = ftell(cap->file);
    assert_true(size >= 0);
    char *text = calloc(1, (size_t)size + 1);
    rewind(cap->file);
    assert_int_equal(fread(text, 1, (size_t)size, cap->file), (size_t)size);
    fclose(cap->file);
    return text;
}

//  Parses a sink text and checks the common keys.
static json_t *
s_parse_entry(const char *text, const char *level)
{
    json_error_t error;
    json_t *entry = json_loads(text, 0, &error);
    if (!entry) {
        fail_msg("not JSON (%s): %s", error.text, text);
    }
    assert_true(json_is_object(entry));
    assert_true(json_is_string(json_object_get(entry, "ts")));
    assert_string_equal(json_string_value(json_object_get(entry, "level")), level);
    assert_true(json_is_object(json_object_get(entry, "fields")));
    assert_null(json_object_get(entry, "actor"));
    return entry;
}

//  --- tests ------------------------------------------------------------------------------

static void
test_log_level_parse(void **state)
{
    cd_log_level_t level = CD_LOG_OFF;
    assert_int_equal(cd_log_level_parse("debug", &level), 0);
    assert_int_equal(level, CD_LOG_DEBUG);
    assert_int_equal(cd_log_level_parse("WARNING", &level), 0);
    assert_int_equal(level, CD_LOG_WARN);
    assert_int_equal(cd_log_level_parse("off", &level), 0);
    assert_int_equal(level, CD_LOG_OFF);
    assert_int_equal(cd_log_level_parse("loud", &level), CD_EINVAL);
    assert_int_equal(cd_log_level_parse(NULL, &level), CD_EINVAL);
    assert_int_equal(level, CD_LOG_OFF);
}

static void
test_log_stderr_line_is_one_json_object_with_flat_fields(void **state)
{
    cd_log_set_level(CD_LOG_INFO);
    s_capture_t cap;
    s_capture_start(&cap);
    cd_log_info("tester", "said \"hi\"\nthere", "{s:s, s:i}", "who", "you", "n", 7);
    cd_log_debug("tester", "below the threshold", NULL);
    char *text = s_capture_end(&cap);
    cd_log_set_level(CD_LOG_ERROR);
    //  Exactly one line.
    char *newline = strchr(text, '\n');
    assert_non_null(newline);
    assert_string_equal(newline + 1, "");
    json_error_t error;
    json_t *line = json_loads(text, 0, &error);
    assert_non_null(line);
    assert_string_equal(json_string_value(json_object_get(line, "actor")), "tester");
    assert_string_equal(json_string_value(json_object_get(line, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(line, "msg")), "said \"hi\"\nthere");
    assert_string_equal(json_string_value(json_object_get(line, "who")), "you");
    assert_int_equal(json_integer_value(json_object_get(line, "n")), 7);
    json_decref(line);
    free(text);
}

static void
test_log_sink_gets_info_whatever_the_threshold_and_nothing_on_stderr(void **state)
{
    cd_log_set_level(CD_LOG_ERROR);
    assert_false(cd_log_enabled(CD_LOG_INFO));
    s_rec_t rec;
    s_rec_init(&rec, "kept");
    assert_int_equal(cd_log_sink_add(&s_rec_sink, &rec), 0);
    assert_true(cd_log_enabled(CD_LOG_INFO));
    assert_true(cd_log_enabled(CD_LOG_WARN));
    assert_false(cd_log_enabled(CD_LOG_DEBUG));
    s_capture_t cap;
    s_capture_start(&cap);
    cd_log_info("kept", "hello", "{s:s, s:i}", "k", "v", "n", 3);
    cd_log_warn("other", "not for this sink", NULL);
    char *text = s_capture_end(&cap);
    assert_string_equal(text, ""); //  below the stderr threshold: not written
    free(text);
    assert_int_equal(rec.asked, 2);
    assert_int_equal(rec.written, 1);
    assert_false(rec.bad_len);
    assert_string_equal(rec.last_actor, "kept");
    assert_int_equal(rec.last_level, CD_LOG_INFO);
    json_t *entry = s_parse_entry(rec.last, "info");
    assert_string_equal(json_string_value(json_object_get(entry, "msg")), "hello");
    json_t *fields = json_object_get(entry, "fields");
    assert_string_equal(json_string_value(json_object_get(fields, "k")), "v");
    assert_int_equal(json_integer_value(json_object_get(fields, "n")), 3);
    json_decref(entry);
    //  A line without fields has an empty fields object; NULL actor is "node".
    rec.actor = "node";
    cd_log_error(NULL, "no fields", NULL);
    entry = s_parse_entry(rec.last, "error");
    assert_int_equal(json_object_size(json_object_get(entry, "fields")), 0);
    json_decref(entry);
    cd_log_sink_remove(&s_rec_sink, &rec);
    assert_false(cd_log_enabled(CD_LOG_INFO));
    int written = rec.written;
    cd_log_error("node", "after removal", NULL);
    assert_int_equal(rec.written, written);
}

static void
test_log_debug_reaches_sinks_only_when_enabled(void **state)
{
    s_rec_t rec;
    s_rec_init(&rec, "dbg");
    assert_int_equal(cd_log_sink_add(&s_rec_sink, &rec), 0);
    cd_log_set_level(CD_LOG_INFO);
    cd_log_debug("dbg", "hidden", NULL);
    assert_int_equal(rec.written, 0);
    cd_log_set_level(CD_LOG_DEBUG);
    s_capture_t cap;
    s_capture_start(&cap);
    cd_log_debug("dbg", "shown", NULL);
    char *text = s_capture_end(&cap);
    cd_log_set_level(CD_LOG_ERROR);
    assert_non_null(strstr(text, "\"shown\""));
    free(text);
    assert_int_equal(rec.written, 1);
    json_decref(s_parse_entry(rec.last, "debug"));
    cd_log_sink_remove(&s_rec_sink, &rec);
}

static void
test_log_sink_long_line_is_bounded_and_still_json(void **state)
{
    s_rec_t rec;
    s_rec_init(&rec, "long");
    assert_int_equal(cd_log_sink_add(&s_rec_sink, &rec), 0);
    char *big = malloc(5001);
    memset(big, 'x', 5000);
    big[5000] = '\0';
    cd_log_warn("long", "kept msg", "{s:s}", "big", big);
    assert_true(strlen(rec.last) <= CD_LOG_SINK_MAX_ENTRY);
    json_t *entry = s_parse_entry(rec.last, "warn");
    assert_string_equal(json_string_value(json_object_get(entry, "msg")), "kept msg");
    assert_true(json_is_true(json_object_get(json_object_get(entry, "fields"), "truncated")));
    json_decref(entry);
    //  A huge message of two-byte characters is cut between characters.
    char *msg = malloc(6001);
    for (int i = 0; i < 3000; i++) {
        memcpy(msg + 2 * i, "\xc3\xa9", 2); //  é
    }
    msg[6000] = '\0';
    cd_log_warn("long", msg, NULL);
    assert_true(strlen(rec.last) <= CD_LOG_SINK_MAX_ENTRY);
    entry = s_parse_entry(rec.last, "warn");
    const char *cut = json_string_value(json_object_get(entry, "msg"));
    assert_non_null(cut);
    assert_true(strlen(cut) > 0 && strlen(cut) <= 256 && strlen(cut) % 2 == 0);
    assert_memory_equal(cut, msg, strlen(cut));
    json_decref(entry);
    free(msg);
    free(big);
    cd_log_sink_remove(&s_rec_sink, &rec);
}

static void
test_log_bad_fields_format_is_reported_in_the_line(void **state)
{
    s_rec_t rec;
    s_rec_init(&rec, "fmt");
    assert_int_equal(cd_log_sink_add(&s_rec_sink, &rec), 0);
    cd_log_warn("fmt", "bad format", "[s]", "not an object");
    json_t *entry = s_parse_entry(rec.last, "warn");
    assert_true(json_is_string(json_object_get(json_object_get(entry, "fields"), "log_error")));
    json_decref(entry);
    cd_log_sink_remove(&s_rec_sink, &rec);
}

static void
test_log_sink_table_is_bounded_and_remove_is_idempotent(void **state)
{
    s_rec_t recs[CD_LOG_SINK_MAX + 1];
    for (int i = 0; i < CD_LOG_SINK_MAX; i++) {
        s_rec_init(&recs[i], "all");
        assert_int_equal(cd_log_sink_add(&s_rec_sink, &recs[i]), 0);
    }
    s_rec_init(&recs[CD_LOG_SINK_MAX], "all");
    assert_int_equal(cd_log_sink_add(&s_rec_sink, &recs[CD_LOG_SINK_MAX]), CD_ETOOBIG);
    cd_log_warn("all", "to every sink", NULL);
    for (int i = 0; i < CD_LOG_SINK_MAX; i++) {
        assert_int_equal(recs[i].written, 1);
    }
    assert_int_equal(recs[CD_LOG_SINK_MAX].written, 0);
    //  Removing one frees a slot; removing it again or an unknown one is a no-op.
    cd_log_sink_remove(&s_rec_sink, &recs[3]);
    cd_log_sink_remove(&s_rec_sink, &recs[3]);
    cd_log_sink_remove(&s_rec_sink, &recs[CD_LOG_SINK_MAX]);
    assert_int_equal(cd_log_sink_add(&s_rec_sink, &recs[CD_LOG_SINK_MAX]), 0);
    cd_log_warn("all", "again", NULL);
    assert_int_equal(recs[3].written, 1);
    assert_int_equal(recs[CD_LOG_SINK_MAX].written, 1);
    for (int i = 0; i <= CD_LOG_SINK_MAX; i++) {
        cd_log_sink_remove(&s_rec_sink, &recs[i]);
    }
    assert_false(cd_log_enabled(CD_LOG_WARN));
}

//  Threads log while sinks come and go: no call after removal returns (the
//  recorder is reset right after it), no crash, no race (run under TSan or
//  ASan).
typedef struct {
    atomic_bool stop; //  ends the loggers
} s_spin_t;

static void *
s_logger(void *arg)
{
    s_spin_t *spin = (s_spin_t *)arg;
    while (!atomic_load(&spin->stop)) {
        cd_log_info("spin", "line", "{s:i}", "n", 1);
    }
    return NULL;
}

static void
test_log_sink_removal_waits_for_calls_in_flight(void **state)
{
    s_spin_t spin;
    atomic_init(&spin.stop, false);
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, s_logger, &spin), 0);
    }
    for (int round = 0; round < 200; round++) {
        s_rec_t rec;
        s_rec_init(&rec, "spin");
        assert_int_equal(cd_log_sink_add(&s_rec_sink, &rec), 0);
        usleep(200);
        cd_log_sink_remove(&s_rec_sink, &rec);
        //  The recorder lives on this stack frame: after removal nobody may
        //  touch it. Poison it so a late call would trip an assertion.
        pthread_mutex_lock(&rec.lock);
        int written = rec.written;
        rec.actor = NULL;
        pthread_mutex_unlock(&rec.lock);
        usleep(100);
        assert_int_equal(rec.written, written);
        pthread_mutex_destroy(&rec.lock);
    }
    atomic_store(&spin.stop, true);
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
    }
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_stderr_line_is_one_json_object_with_flat_fields),
        cmocka_unit_test(test_log_sink_gets_info_whatever_the_threshold_and_nothing_on_stderr),
        cmocka_unit_test(test_log_debug_reaches_sinks_only_when_enabled),
        cmocka_unit_test(test_log_sink_long_line_is_bounded_and_still_json),
        cmocka_unit_test(test_log_bad_fields_format_is_reported_in_the_line),
        cmocka_unit_test(test_log_sink_table_is_bounded_and_remove_is_idempotent),
        cmocka_unit_test(test_log_sink_removal_waits_for_calls_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
