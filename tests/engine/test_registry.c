/*  cd_registry: statuses and counters, and the per-actor log ring (order,
    bound, per name, kept across restarts, dropped on removal, several
    registries, many threads logging while others read). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_error.h"
#include "cd_log.h"
#include "cd_actor.h"
#include "cd_mailer.h"
#include "cd_registry.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Reads name's ring, checks it is a JSON array of well-formed entries and
//  returns it (caller decrefs).
static json_t *
s_read(cd_registry_t *registry, const char *name, size_t limit)
{
    char *text = NULL;
    assert_int_equal(cd_registry_log_read(registry, name, limit, &text), 0);
    assert_non_null(text);
    json_error_t error;
    json_t *lines = json_loads(text, 0, &error);
    if (!lines) {
        fail_msg("log of %s is not JSON (%s): %.200s", name, error.text, text);
    }
    free(text);
    assert_true(json_is_array(lines));
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        assert_true(json_is_string(json_object_get(line, "ts")));
        assert_true(json_is_string(json_object_get(line, "level")));
        assert_true(json_is_object(json_object_get(line, "fields")));
    }
    return lines;
}

//  The integer field `key` of line i.
static json_int_t
s_field(json_t *lines, size_t i, const char *key)
{
    json_t *value = json_object_get(json_object_get(json_array_get(lines, i), "fields"), key);
    assert_true(json_is_integer(value));
    return json_integer_value(value);
}

static void
test_registry_status_and_counters(void **state)
{
    cd_registry_t *registry = cd_registry_new("r1");
    assert_string_equal(cd_registry_node_id(registry), "r1");
    assert_int_equal(cd_registry_status(registry, "a"), CD_ACTOR_ABSENT);
    uint64_t gen = cd_registry_generation(registry);
    cd_registry_bound(registry, "a");
    assert_true(cd_registry_generation(registry) > gen);
    assert_int_equal(cd_registry_status(registry, "a"), CD_ACTOR_STARTING);
    cd_registry_set_status(registry, "a", CD_ACTOR_RUNNING);
    cd_registry_count_restart(registry, "a");
    cd_registry_count_dead_letter(registry, "a");
    cd_registry_count_dead_letter(registry, "nobody");
    cd_registry_entry_t entry;
    assert_int_equal(cd_registry_get(registry, "a", &entry), 0);
    assert_string_equal(entry.name, "a");
    assert_int_equal(entry.status, CD_ACTOR_RUNNING);
    assert_int_equal(entry.restarts, 1);
    assert_int_equal(entry.dead_letters, 1);
    assert_int_equal(entry.incarnation, 1);
    assert_int_equal(cd_registry_dead_letters(registry), 2);
    cd_registry_set_status(registry, "b", CD_ACTOR_STOPPED);
    cd_registry_entry_t list[4];
    assert_int_equal(cd_registry_list(registry, list, 4), 2);
    assert_string_equal(list[0].name, "a");
    assert_string_equal(list[1].name, "b");
    cd_registry_remove(registry, "a");
    assert_int_equal(cd_registry_get(registry, "a", &entry), CD_ENOTFOUND);
    //  Bound again after a removal: a new incarnation, never the old one
    //  (a sender connected to the old inbox must reconnect).
    cd_registry_bound(registry, "a");
    uint32_t again = 0;
    cd_registry_lookup(registry, "a", &again);
    assert_int_not_equal(again, 1);
    cd_registry_remove(registry, "a");
    char endpoint[CD_REGISTRY_MAX_ENDPOINT];
    assert_int_equal(cd_registry_endpoint(registry, "b", endpoint, sizeof endpoint), 0);
    assert_string_equal(endpoint, "inproc://cd/r1/b");
    cd_registry_destroy(&registry);
    cd_registry_destroy(&registry);
    assert_null(registry);
}

static void
test_registry_log_keeps_lines_in_order_newest_last(void **state)
{
    cd_registry_t *registry = cd_registry_new("r2");
    cd_registry_set_status(registry, "agent/a", CD_ACTOR_RUNNING);
    json_t *lines = s_read(registry, "agent/a", 0);
    assert_int_equal(json_array_size(lines), 0); //  registered, nothing logged yet
    json_decref(lines);
    cd_log_info("agent/a", "first", "{s:i}", "i", 0);
    cd_log_warn("agent/a", "second \"quoted\"\n", "{s:i}", "i", 1);
    cd_log_error("agent/a", "third", "{s:i}", "i", 2);
    lines = s_read(registry, "agent/a", 0);
    assert_int_equal(json_array_size(lines), 3);
    const char *msgs[] = {"first", "second \"quoted\"\n", "third"};
    const char *levels[] = {"info", "warn", "error"};
    for (size_t i = 0; i < 3; i++) {
        json_t *line = json_array_get(lines, i);
        assert_string_equal(json_string_value(json_object_get(line, "msg")), msgs[i]);
        assert_string_equal(json_string_value(json_object_get(line, "level")), levels[i]);
        assert_int_equal(s_field(lines, i, "i"), (json_int_t)i);
    }
    json_decref(lines);
    cd_registry_destroy(&registry);
}

static void
test_registry_log_is_bounded_and_limit_takes_the_newest(void **state)
{
    cd_registry_t *registry = cd_registry_new("r3");
    cd_registry_set_status(registry, "a", CD_ACTOR_RUNNING);
    for (int i = 0; i < CD_REGISTRY_LOG_KEEP + 50; i++) {
        cd_log_info("a", "line", "{s:i}", "i", i);
    }
    json_t *lines = s_read(registry, "a", 0);
    assert_int_equal(json_array_size(lines), CD_REGISTRY_LOG_KEEP);
    assert_int_equal(s_field(lines, 0, "i"), 50);
    assert_int_equal(s_field(lines, CD_REGISTRY_LOG_KEEP - 1, "i"), CD_REGISTRY_LOG_KEEP + 49);
    for (size_t i = 1; i < CD_REGISTRY_LOG_KEEP; i++) {
        assert_int_equal(s_field(lines, i, "i"), s_field(lines, i - 1, "i") + 1);
    }
    json_decref(lines);
    lines = s_read(registry, "a", 10);
    assert_int_equal(json_array_size(lines), 10);
    assert_int_equal(s_field(lines, 0, "i"), CD_REGISTRY_LOG_KEEP + 40);
    assert_int_equal(s_field(lines, 9, "i"), CD_REGISTRY_LOG_KEEP + 49);
    json_decref(lines);
    lines = s_read(registry, "a", 100000);
    assert_int_equal(json_array_size(lines), CD_REGISTRY_LOG_KEEP);
    json_decref(lines);
    cd_registry_destroy(&registry);
}

static void
test_registry_log_is_per_name_and_only_for_registered_names(void **state)
{
    cd_registry_t *registry = cd_registry_new("r4");
    cd_registry_set_status(registry, "a", CD_ACTOR_RUNNING);
    cd_registry_set_status(registry, "b", CD_ACTOR_RUNNING);
    cd_log_info("a", "for a", NULL);
    cd_log_info("b", "for b", NULL);
    cd_log_info("b", "for b again", NULL);
    cd_log_info("stranger", "for nobody", NULL);
    json_t *a = s_read(registry, "a", 0);
    json_t *b = s_read(registry, "b", 0);
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(json_array_size(b), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "msg")), "for a");
    json_decref(a);
    json_decref(b);
    char *text = (char *)"untouched";
    assert_int_equal(cd_registry_log_read(registry, "stranger", 0, &text), CD_ENOTFOUND);
    assert_null(text);
    //  Registered later, it has none of the lines logged before.
    cd_registry_bound(registry, "stranger");
    json_t *later = s_read(registry, "stranger", 0);
    assert_int_equal(json_array_size(later), 0);
    json_decref(later);
    cd_registry_destroy(&registry);
}

static void
test_registry_log_levels_follow_the_rule(void **state)
{
    cd_registry_t *registry = cd_registry_new("r5");
    cd_registry_set_status(registry, "a", CD_ACTOR_RUNNING);
    //  stderr at error: info and warn are still kept, debug is not.
    cd_log_set_level(CD_LOG_ERROR);
    cd_log_debug("a", "debug hidden", NULL);
    cd_log_info("a", "info kept", NULL);
    cd_log_set_level(CD_LOG_DEBUG);
    cd_log_debug("a", "debug kept", NULL);
    cd_log_set_level(CD_LOG_ERROR);
    json_t *lines = s_read(registry, "a", 0);
    assert_int_equal(json_array_size(lines), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(lines, 0), "msg")),
                        "info kept");
    assert_string_equal(json_string_value(json_object_get(json_array_get(lines, 1), "level")),
                        "debug");
    json_decref(lines);
    cd_registry_destroy(&registry);
}

static void
test_registry_log_survives_restarts_and_is_dropped_on_remove(void **state)
{
    cd_registry_t *registry = cd_registry_new("r6");
    cd_registry_bound(registry, "agent/x");
    cd_registry_set_status(registry, "agent/x", CD_ACTOR_RUNNING);
    cd_log_info("agent/x", "before", NULL);
    //  A restart: restarting, a new inbox, running again; a stop.
    cd_registry_set_status(registry, "agent/x", CD_ACTOR_RESTARTING);
    cd_registry_bound(registry, "agent/x");
    cd_registry_set_status(registry, "agent/x", CD_ACTOR_RUNNING);
    cd_log_info("agent/x", "after", NULL);
    cd_registry_set_status(registry, "agent/x", CD_ACTOR_STOPPED);
    json_t *lines = s_read(registry, "agent/x", 0);
    assert_int_equal(json_array_size(lines), 2);
    json_decref(lines);
    cd_registry_remove(registry, "agent/x");
    char *text = NULL;
    assert_int_equal(cd_registry_log_read(registry, "agent/x", 0, &text), CD_ENOTFOUND);
    cd_log_info("agent/x", "while gone", NULL);
    cd_registry_bound(registry, "agent/x");
    lines = s_read(registry, "agent/x", 0);
    assert_int_equal(json_array_size(lines), 0);
    json_decref(lines);
    cd_registry_destroy(&registry);
}

static void
test_registry_log_with_two_registries(void **state)
{
    cd_registry_t *one = cd_registry_new("one");
    cd_registry_t *two = cd_registry_new("two");
    cd_registry_set_status(one, "a", CD_ACTOR_RUNNING);
    cd_registry_set_status(two, "b", CD_ACTOR_RUNNING);
    cd_log_info("a", "for one", NULL);
    cd_log_info("b", "for two", NULL);
    cd_registry_destroy(&one);
    //  The other keeps working once the first has removed its sink.
    cd_log_info("a", "nobody", NULL);
    cd_log_info("b", "for two again", NULL);
    json_t *lines = s_read(two, "b", 0);
    assert_int_equal(json_array_size(lines), 2);
    json_decref(lines);
    cd_registry_destroy(&two);
    assert_false(cd_log_enabled(CD_LOG_INFO)); //  no sink left
}

//  --- many threads ------------------------------------------------------------------

#define S_WRITERS 4
#define S_LINES 2000

typedef struct {
    cd_registry_t *registry; //  shared
    int id;                  //  writer number
    atomic_bool *stop;       //  ends the reader and the churner
    int reads;               //  reader: reads made
    int bad;                 //  reader: invalid texts seen
} s_worker_t;

static void *
s_writer(void *arg)
{
    s_worker_t *w = (s_worker_t *)arg;
    const char *name = w->id % 2 ? "odd" : "even";
    for (int i = 0; i < S_LINES; i++) {
        cd_log_info(name, "line", "{s:i, s:i}", "w", w->id, "i", i);
    }
    return NULL;
}

static void *
s_reader(void *arg)
{
    s_worker_t *w = (s_worker_t *)arg;
    while (!atomic_load(w->stop)) {
        const char *names[] = {"odd", "even", "churn"};
        for (int i = 0; i < 3; i++) {
            char *text = NULL;
            if (cd_registry_log_read(w->registry, names[i], 0, &text) == 0) {
                json_t *lines = json_loads(text, 0, NULL);
                w->bad += !json_is_array(lines) || json_array_size(lines) > CD_REGISTRY_LOG_KEEP;
                json_decref(lines);
                free(text);
                w->reads++;
            }
        }
    }
    return NULL;
}

//  Registers and removes a name over and over while others log to it.
static void *
s_churner(void *arg)
{
    s_worker_t *w = (s_worker_t *)arg;
    while (!atomic_load(w->stop)) {
        cd_registry_bound(w->registry, "churn");
        cd_log_warn("churn", "churning", NULL);
        cd_registry_remove(w->registry, "churn");
    }
    return NULL;
}

static void
test_registry_log_many_threads(void **state)
{
    cd_registry_t *registry = cd_registry_new("mt");
    cd_registry_set_status(registry, "odd", CD_ACTOR_RUNNING);
    cd_registry_set_status(registry, "even", CD_ACTOR_RUNNING);
    atomic_bool stop;
    atomic_init(&stop, false);
    s_worker_t workers[S_WRITERS + 2];
    pthread_t threads[S_WRITERS + 2];
    for (int i = 0; i < S_WRITERS + 2; i++) {
        workers[i] = (s_worker_t){registry, i, &stop, 0, 0};
    }
    assert_int_equal(pthread_create(&threads[S_WRITERS], NULL, s_reader, &workers[S_WRITERS]), 0);
    assert_int_equal(
        pthread_create(&threads[S_WRITERS + 1], NULL, s_churner, &workers[S_WRITERS + 1]), 0);
    for (int i = 0; i < S_WRITERS; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, s_writer, &workers[i]), 0);
    }
    for (int i = 0; i < S_WRITERS; i++) {
        pthread_join(threads[i], NULL);
    }
    atomic_store(&stop, true);
    pthread_join(threads[S_WRITERS], NULL);
    pthread_join(threads[S_WRITERS + 1], NULL);
    assert_true(workers[S_WRITERS].reads > 0);
    assert_int_equal(workers[S_WRITERS].bad, 0);
    //  Each ring is full and, per writer, in the order that writer logged.
    const char *names[] = {"even", "odd"};
    for (int n = 0; n < 2; n++) {
        json_t *lines = s_read(registry, names[n], 0);
        assert_int_equal(json_array_size(lines), CD_REGISTRY_LOG_KEEP);
        json_int_t last[S_WRITERS] = {-1, -1, -1, -1};
        for (size_t i = 0; i < CD_REGISTRY_LOG_KEEP; i++) {
            json_int_t w = s_field(lines, i, "w");
            assert_int_equal(w % 2, n);
            json_int_t seq = s_field(lines, i, "i");
            assert_true(seq > last[w]);
            last[w] = seq;
        }
        //  The newest line is some writer's last one.
        assert_int_equal(s_field(lines, CD_REGISTRY_LOG_KEEP - 1, "i"), S_LINES - 1);
        json_decref(lines);
    }
    cd_registry_destroy(&registry);
}

//  A running inbox named "box" in a fresh registry of node `node`, whose
//  queue holds hwm messages, and a mailer "sender" to reach it.
static zsock_t *
s_box(const char *node, int hwm, cd_runtime_t *rt, cd_mailer_t **mailer)
{
    *rt = (cd_runtime_t){cd_registry_new(node), hwm, 100, 1000, 5000, 1000, 5, 10};
    zsock_t *inbox = cd_actor_inbox_new(rt, "box");
    assert_non_null(inbox);
    cd_registry_set_status(rt->registry, "box", CD_ACTOR_RUNNING);
    *mailer = cd_mailer_new(rt, "sender");
    return inbox;
}

//  Queue depth: what senders pushed into an inbox minus what was taken
//  out; a route's meter outlives the name's entry.
static void
test_registry_queue_depth(void **state)
{
    cd_runtime_t rt;
    cd_mailer_t *mailer = NULL;
    zsock_t *inbox = s_box("qd", 100, &rt, &mailer);
    cd_registry_t *registry = rt.registry;
    for (int i = 0; i < 5; i++) {
        cd_envelope_t env;
        cd_mailer_envelope_init(mailer, &env, CD_KIND_TASK, "box");
        assert_int_equal(cd_mailer_send(mailer, &env), 0);
    }
    cd_registry_entry_t entry;
    assert_int_equal(cd_registry_get(registry, "box", &entry), 0);
    assert_int_equal(entry.queue_depth, 5);
    //  Taking two out, as an actor does after each receive.
    cd_queue_meter_t *meter = cd_registry_meter(registry, "box");
    assert_non_null(meter);
    for (int i = 0; i < 2; i++) {
        zmsg_t *msg = zmsg_recv(inbox);
        zmsg_destroy(&msg);
        cd_queue_meter_out(meter);
    }
    assert_int_equal(cd_registry_get(registry, "box", &entry), 0);
    assert_int_equal(entry.queue_depth, 3);
    //  A stopped actor's queue is not a queue anyone serves: 0.
    cd_registry_set_status(registry, "box", CD_ACTOR_STOPPED);
    assert_int_equal(cd_registry_get(registry, "box", &entry), 0);
    assert_int_equal(entry.queue_depth, 0);
    //  The entry goes; the references held keep the meter alive.
    cd_registry_remove(registry, "box");
    cd_queue_meter_out(meter);
    cd_registry_meter_release(&meter);
    assert_null(meter);
    assert_null(cd_registry_meter(registry, "box"));
    cd_mailer_destroy(&mailer);
    zsock_destroy(&inbox);
    cd_registry_destroy(&registry);
}

//  Receives one message from inbox and checks it is a task with task_id.
static void
s_expect_task(zsock_t *inbox, int64_t task_id)
{
    zmsg_t *msg = zmsg_recv(inbox);
    assert_non_null(msg);
    zframe_t *frame = zmsg_first(msg);
    cd_envelope_t env;
    assert_int_equal(cd_envelope_decode(zframe_data(frame), zframe_size(frame), &env, NULL), 0);
    assert_int_equal(env.kind, CD_KIND_TASK);
    assert_int_equal(env.task_id, task_id);
    zmsg_destroy(&msg);
}

//  Small envelopes travel in buffers the mailer recycles: what a receiver
//  gives back is reused intact, and buffers still queued when the mailer
//  goes stay valid until the receiver is done with them (ASan checks the
//  memory; a large envelope takes the ordinary path beside them).
static void
test_registry_mailer_buffers_are_recycled_and_outlive_the_mailer(void **state)
{
    (void)state;
    cd_runtime_t rt;
    cd_mailer_t *mailer = NULL;
    zsock_t *inbox = s_box("mb", 1000, &rt, &mailer);
    cd_registry_t *registry = rt.registry;
    static uint8_t big[2048];
    int64_t id = 0;
    for (int round = 0; round < 3; round++) {
        if (round == 2) {
            //  Rounds 0 and 1 were received and closed: their buffers came back.
            assert_true(cd_mailer_pooled(mailer) >= 49);
            cd_mailer_trim(mailer);
            assert_int_equal(cd_mailer_pooled(mailer), 32);
        }
        for (int i = 0; i < 50; i++) {
            cd_envelope_t env;
            cd_mailer_envelope_init(mailer, &env, CD_KIND_TASK, "box");
            env.task_id = ++id;
            if (i == 25) {
                env.payload_type = CD_PAYLOAD_BIN;
                env.payload = (cd_bin_t){big, sizeof big};
            }
            assert_int_equal(cd_mailer_send(mailer, &env), 0);
        }
        if (round < 2) {
            //  Received and closed: the buffers go back for the next round.
            for (int64_t t = id - 49; t <= id; t++) {
                s_expect_task(inbox, t);
            }
        }
    }
    //  The last round is still queued when its mailer goes.
    cd_mailer_destroy(&mailer);
    for (int64_t t = id - 49; t <= id; t++) {
        s_expect_task(inbox, t);
    }
    zsock_destroy(&inbox);
    cd_registry_destroy(&registry);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_status_and_counters),
        cmocka_unit_test(test_registry_mailer_buffers_are_recycled_and_outlive_the_mailer),
        cmocka_unit_test(test_registry_log_keeps_lines_in_order_newest_last),
        cmocka_unit_test(test_registry_log_is_bounded_and_limit_takes_the_newest),
        cmocka_unit_test(test_registry_log_is_per_name_and_only_for_registered_names),
        cmocka_unit_test(test_registry_log_levels_follow_the_rule),
        cmocka_unit_test(test_registry_log_survives_restarts_and_is_dropped_on_remove),
        cmocka_unit_test(test_registry_log_with_two_registries),
        cmocka_unit_test(test_registry_log_many_threads),
        cmocka_unit_test(test_registry_queue_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
