/* label: db */
/*  test_schema: the full schema (migration 0002) on a real PostgreSQL:
    it applies to an empty database, a second start-up applies nothing,
    every table of the design exists, and the constraints refuse bad rows
    with the SQLSTATE callers map to HTTP statuses. */
#include "cd_db.h"
#include "cd_error.h"
#include "cd_migrate.h"
#include "cd_testpg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    char *conninfo; // the test's own database
    cd_db_t *db;    // a connection to it
} fixture_t;

static int
s_setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(cd_testpg_fresh_db(&fx->conninfo), 0);
    assert_int_equal(cd_db_connect(fx->conninfo, &fx->db, NULL), 0);
    *state = fx;
    return 0;
}

//  As s_setup, with the migrations applied.
static int
s_setup_migrated(void **state)
{
    s_setup(state);
    fixture_t *fx = *state;
    char *err = NULL;
    if (cd_migrate_run(fx->db, NULL, &err) != 0) {
        fail_msg("migrate: %s", err);
    }
    return 0;
}

static int
s_teardown(void **state)
{
    fixture_t *fx = *state;
    cd_db_close(&fx->db);
    free(fx->conninfo);
    free(fx);
    return 0;
}

static int64_t
s_count(cd_db_t *db, const char *sql)
{
    int64_t n = -1;
    int rc = cd_db_query_int64(db, sql, 0, NULL, &n);
    if (rc != 0) {
        fail_msg("%s: %s", sql, cd_db_error(db) ? cd_db_error(db)->message : "?");
    }
    return n;
}

static void
s_ok(cd_db_t *db, const char *sql)
{
    char *err = NULL;
    if (cd_db_exec(db, sql, &err) != 0) {
        fail_msg("%s: %s", sql, err);
    }
}

//  Runs sql and asserts that it fails with sqlstate (and, if constraint
//  is not NULL, names that constraint).
static void
s_refused(cd_db_t *db, const char *sqlstate, const char *constraint, const char *sql)
{
    int rc = cd_db_exec(db, sql, NULL);
    if (rc != CD_EDB) {
        fail_msg("accepted (%s): %s", cd_errname(rc), sql);
    }
    const cd_db_error_t *err = cd_db_error(db);
    if (!cd_db_error_is(err, sqlstate)) {
        fail_msg("%s: want %s, got %s (%s)", sql, sqlstate, err->sqlstate, err->message);
    }
    if (constraint && (!err->constraint || strcmp(err->constraint, constraint) != 0)) {
        fail_msg("%s: want constraint %s, got %s", sql, constraint,
                 err->constraint ? err->constraint : "none");
    }
}

static const char *const s_tables[] = {
    "users",
    "login_attempts",
    "banned_ips",
    "refresh_tokens",
    "password_history",
    "api_keys",
    "agents",
    "templates",
    "team_types",
    "roles",
    "team_type_roles",
    "teams",
    "team_members",
    "projects",
    "tasks",
    "task_events",
    "archived_tasks",
    "scheduled_tasks",
    "hitl_requests",
    "artifacts",
    "connections",
    "llm_calls",
    "config",
    "stats_history",
    "audit_logs",
    "events",
    "nodes",
    "idempotency_keys",
    "schema_migrations",
};

static void
test_schema_applies_to_empty_database_then_nothing(void **state)
{
    fixture_t *fx = *state;
    int applied = -1;
    char *err = NULL;
    if (cd_migrate_run(fx->db, &applied, &err) != 0) {
        fail_msg("migrate: %s", err);
    }
    assert_true(cd_migrate_latest() >= 2);
    assert_int_equal(applied, cd_migrate_latest());
    int version = 0;
    assert_int_equal(cd_migrate_version(fx->db, &version), 0);
    assert_int_equal(version, cd_migrate_latest());
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM schema_migrations WHERE version = 2 "
                                     "AND name = 'schema'"),
                     1);

    //  A second start-up on the up-to-date database: nothing to do, from
    //  a new connection as a restarted node would have.
    cd_db_t *again = NULL;
    assert_int_equal(cd_db_connect(fx->conninfo, &again, NULL), 0);
    assert_int_equal(cd_migrate_run(again, &applied, &err), 0);
    assert_int_equal(applied, 0);
    cd_db_close(&again);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM schema_migrations"),
                     cd_migrate_latest());

    for (size_t i = 0; i < sizeof s_tables / sizeof s_tables[0]; i++) {
        const char *params[] = {s_tables[i]};
        int64_t n = 0;
        assert_int_equal(cd_db_query_int64(fx->db,
                                           "SELECT count(*) FROM information_schema.tables"
                                           " WHERE table_schema = 'public' AND table_name = $1",
                                           1, params, &n),
                         0);
        if (n != 1) {
            fail_msg("table %s is missing", s_tables[i]);
        }
    }
    //  Every foreign key column is indexed or a leading primary key
    //  column, so deletes of parents never scan their children.
    assert_int_equal(s_count(fx->db,
                             "SELECT count(*) FROM pg_constraint c WHERE c.contype = 'f'"
                             " AND NOT EXISTS (SELECT FROM pg_index i"
                             "  WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])"),
                     0);
}

static void
test_schema_task_constraints(void **state)
{
    fixture_t *fx = *state;
    //  The brief's four: a bad status, priority 10, a bad assignee, an
    //  agent name with upper case.
    s_refused(fx->db, "23514", "tasks_status_check",
              "INSERT INTO tasks (title, assignee, status) VALUES ('t', '{\"agent\":\"a\"}', "
              "'sleeping')");
    s_refused(
        fx->db, "23514", "tasks_priority_check",
        "INSERT INTO tasks (title, assignee, priority) VALUES ('t', '{\"agent\":\"a\"}', 10)");
    s_refused(
        fx->db, "23514", "tasks_priority_check",
        "INSERT INTO tasks (title, assignee, priority) VALUES ('t', '{\"agent\":\"a\"}', -1)");
    const char *bad_assignees[] = {
        "{}",
        "[]",
        "\"coder\"",
        "null",
        "{\"agent\":\"Coder\"}",
        "{\"agent\":\"\"}",
        "{\"agent\":\"a b\"}",
        "{\"agent\":1}",
        "{\"agent\":\"a\",\"role\":\"r\"}",
        "{\"role\":\"\"}",
        "{\"team\":\"1\"}",
        "{\"team\":1.5}",
        "{\"team\":0}",
        "{\"team\":-3}",
        "{\"crew\":1}",
    };
    for (size_t i = 0; i < sizeof bad_assignees / sizeof bad_assignees[0]; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "INSERT INTO tasks (title, assignee) VALUES ('t', '%s')",
                 bad_assignees[i]);
        s_refused(fx->db, "23514", "tasks_assignee_check", sql);
    }
    s_refused(fx->db, "23502", NULL, "INSERT INTO tasks (title) VALUES ('t')");
    s_refused(fx->db, "23502", NULL, "INSERT INTO tasks (assignee) VALUES ('{\"agent\":\"a\"}')");
    s_refused(fx->db, "23514", "tasks_title_check",
              "INSERT INTO tasks (title, assignee) VALUES ('', '{\"agent\":\"a\"}')");
    s_refused(fx->db, "23514", "tasks_title_check",
              "INSERT INTO tasks (title, assignee) VALUES (repeat('x', 501), '{\"agent\":\"a\"}')");
    s_refused(fx->db, "23514", "tasks_max_attempts_check",
              "INSERT INTO tasks (title, assignee, max_attempts) VALUES ('t', "
              "'{\"agent\":\"a\"}', 0)");
    s_refused(fx->db, "23514", "tasks_finished_at",
              "INSERT INTO tasks (title, assignee, status) VALUES ('t', '{\"agent\":\"a\"}', "
              "'done')");
    s_refused(fx->db, "23514", "tasks_running_leased",
              "INSERT INTO tasks (title, assignee, status) VALUES ('t', '{\"agent\":\"a\"}', "
              "'in_progress')");
    s_refused(fx->db, "23514", "tasks_lease_pair",
              "INSERT INTO tasks (title, assignee, lease_owner) VALUES ('t', '{\"agent\":\"a\"}', "
              "'n1')");
    s_refused(
        fx->db, "23503", "tasks_project_id_fkey",
        "INSERT INTO tasks (title, assignee, project_id) VALUES ('t', '{\"agent\":\"a\"}', 42)");
    s_refused(fx->db, "22P02", NULL,
              "INSERT INTO tasks (title, assignee) VALUES ('t', '{not json')");
    //  Good ones pass: each assignee form, the limits.
    s_ok(fx->db, "INSERT INTO tasks (title, assignee, priority) VALUES"
                 " ('t', '{\"agent\":\"coder-1_x\"}', 0), ('t', '{\"role\":\"Code Review\"}', 9),"
                 " ('t', '{\"team\":12}', 5), (repeat('x', 500), '{\"agent\":\"a\"}', 5)");
    s_ok(fx->db, "UPDATE tasks SET status = 'done', finished_at = now() WHERE priority = 0");

    //  task_events: kind and status checked; seq unique per task.
    s_refused(fx->db, "23514", "task_events_kind_check",
              "INSERT INTO task_events (task_id, kind) SELECT min(id), 'exploded' FROM tasks");
    s_refused(fx->db, "23514", "task_events_status_check",
              "INSERT INTO task_events (task_id, kind, status) SELECT min(id), 'output', 'x'"
              " FROM tasks");
    s_refused(fx->db, "23503", "task_events_task_id_fkey",
              "INSERT INTO task_events (task_id, kind) VALUES (999999, 'created')");
    s_ok(fx->db, "INSERT INTO task_events (task_id, kind) SELECT min(id), 'created' FROM tasks");
    s_refused(fx->db, "23505", "task_events_task_id_seq_key",
              "UPDATE tasks SET event_seq = 0; INSERT INTO task_events (task_id, kind)"
              " SELECT min(id), 'output' FROM tasks");
}

static void
test_schema_name_and_enum_constraints(void **state)
{
    fixture_t *fx = *state;
    //  Agent names: 1-64 of [a-z0-9_-], unique.
    s_refused(fx->db, "23514", "agents_name_check",
              "INSERT INTO agents (name, kind) VALUES ('Coder', 'echo')");
    s_refused(fx->db, "23514", "agents_name_check",
              "INSERT INTO agents (name, kind) VALUES ('', 'echo')");
    s_refused(fx->db, "23514", "agents_name_check",
              "INSERT INTO agents (name, kind) VALUES (repeat('a', 65), 'echo')");
    s_refused(fx->db, "23514", "agents_kind_check",
              "INSERT INTO agents (name, kind) VALUES ('a', 'python')");
    s_refused(fx->db, "23514", "agents_status_check",
              "INSERT INTO agents (name, kind, status) VALUES ('a', 'echo', 'asleep')");
    s_refused(fx->db, "23514", "agents_concurrency_check",
              "INSERT INTO agents (name, kind, concurrency) VALUES ('a', 'echo', 0)");
    s_refused(fx->db, "23514", "agents_config_check",
              "INSERT INTO agents (name, kind, config) VALUES ('a', 'echo', '[]')");
    s_ok(fx->db, "INSERT INTO agents (name, kind) VALUES (repeat('a', 64), 'echo')");
    s_ok(fx->db, "INSERT INTO agents (name, kind) VALUES ('coder_2-x', 'llm')");
    s_refused(fx->db, "23505", "agents_pkey",
              "INSERT INTO agents (name, kind) VALUES ('coder_2-x', 'echo')");

    //  Users: unique in any case, role checked, MFA needs a secret.
    s_ok(fx->db, "INSERT INTO users (username, password_hash, role) VALUES ('Admin', 'h', "
                 "'admin')");
    s_refused(fx->db, "23505", "users_username_key",
              "INSERT INTO users (username, password_hash) VALUES ('admin', 'h')");
    s_refused(fx->db, "23514", "users_role_check",
              "INSERT INTO users (username, password_hash, role) VALUES ('u', 'h', 'root')");
    s_refused(fx->db, "23514", "users_username_check",
              "INSERT INTO users (username, password_hash) VALUES ('a b', 'h')");
    s_refused(fx->db, "23514", "users_mfa_needs_secret",
              "INSERT INTO users (username, password_hash, mfa_enabled) VALUES ('u', 'h', true)");

    //  Catalog names unique.
    s_ok(fx->db, "INSERT INTO roles (name) VALUES ('coder')");
    s_refused(fx->db, "23505", "roles_name_key", "INSERT INTO roles (name) VALUES ('coder')");
    s_ok(fx->db, "INSERT INTO templates (name, body) VALUES ('t', 'b')");
    s_refused(fx->db, "23505", "templates_name_key",
              "INSERT INTO templates (name, body) VALUES ('t', 'b')");
    s_ok(fx->db, "INSERT INTO connections (name, connector_type) VALUES ('c', 'openai')");
    s_refused(fx->db, "23505", "connections_name_key",
              "INSERT INTO connections (name, connector_type) VALUES ('c', 'openai')");

    //  Schedules: exactly one of interval and cron; cron has 5 fields.
    const char *task = "'{\"title\":\"t\",\"assignee\":{\"agent\":\"a\"}}'";
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO scheduled_tasks (name, interval_s, cron, task, next_run_at)"
             " VALUES ('s', 5, '* * * * *', %s, now())",
             task);
    s_refused(fx->db, "23514", "scheduled_tasks_one_trigger", sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO scheduled_tasks (name, task, next_run_at) VALUES ('s', %s, now())", task);
    s_refused(fx->db, "23514", "scheduled_tasks_one_trigger", sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO scheduled_tasks (name, cron, task, next_run_at)"
             " VALUES ('s', '* * *', %s, now())",
             task);
    s_refused(fx->db, "23514", "scheduled_tasks_cron_check", sql);
    s_refused(fx->db, "23514", "scheduled_tasks_task_check",
              "INSERT INTO scheduled_tasks (name, interval_s, task, next_run_at)"
              " VALUES ('s', 5, '{\"title\":\"t\"}', now())");
    snprintf(sql, sizeof sql,
             "INSERT INTO scheduled_tasks (name, interval_s, task) VALUES ('s', 5, %s)", task);
    s_refused(fx->db, "23514", "scheduled_tasks_enabled_due", sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO scheduled_tasks (name, cron, task, next_run_at)"
             " VALUES ('s', '*/5 * * * 1-5', %s, now())",
             task);
    s_ok(fx->db, sql);

    //  HITL, events, hashes.
    s_ok(fx->db, "INSERT INTO tasks (title, assignee) VALUES ('t', '{\"agent\":\"a\"}')");
    s_refused(fx->db, "23514", "hitl_requests_on_timeout_check",
              "INSERT INTO hitl_requests (task_id, question, on_timeout)"
              " SELECT min(id), 'q', 'shrug' FROM tasks");
    s_refused(fx->db, "23514", "hitl_requests_status_check",
              "INSERT INTO hitl_requests (task_id, question, status)"
              " SELECT min(id), 'q', 'maybe' FROM tasks");
    s_refused(fx->db, "23503", "hitl_requests_task_id_fkey",
              "INSERT INTO hitl_requests (task_id, question) VALUES (999999, 'q')");
    s_refused(fx->db, "23514", "events_type_check",
              "INSERT INTO events (type) VALUES ('task.exploded')");
    s_refused(fx->db, "23514", "audit_logs_hash_check",
              "INSERT INTO audit_logs (action, hash) VALUES ('a', '\\x00')");
    s_refused(fx->db, "23514", "refresh_tokens_token_hash_check",
              "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at)"
              " SELECT min(id), gen_random_uuid(), '\\x00', now() + interval '1 day' FROM users");
    s_refused(fx->db, "22P02", NULL, "INSERT INTO banned_ips (ip) VALUES ('not-an-ip')");

    //  Idempotency keys: unique per user, anonymous (NULL) included.
    s_ok(fx->db, "INSERT INTO idempotency_keys (key, request_hash)"
                 " VALUES ('k', decode(repeat('00', 32), 'hex'))");
    s_refused(fx->db, "23505", "idempotency_keys_user_id_key_key",
              "INSERT INTO idempotency_keys (key, request_hash)"
              " VALUES ('k', decode(repeat('00', 32), 'hex'))");
    s_ok(fx->db, "INSERT INTO idempotency_keys (key, user_id, request_hash)"
                 " SELECT 'k', min(id), decode(repeat('00', 32), 'hex') FROM users");
}

static void
test_schema_delete_behaviour(void **state)
{
    fixture_t *fx = *state;
    s_ok(fx->db,
         "INSERT INTO users (id, username, password_hash) VALUES (1, 'ann', 'h');"
         "INSERT INTO projects (id, name, created_by) VALUES (1, 'p', 1);"
         "INSERT INTO tasks (id, title, assignee, project_id, created_by)"
         " VALUES (1, 't', '{\"agent\":\"a\"}', 1, 1);"
         "INSERT INTO api_keys (user_id, name, prefix, key_hash)"
         " VALUES (1, 'k', 'cd_', decode(repeat('11', 32), 'hex'));"
         "INSERT INTO refresh_tokens (user_id, family, token_hash, expires_at)"
         " VALUES (1, gen_random_uuid(), decode(repeat('22', 32), 'hex'), now() + interval '1 d');"
         "INSERT INTO artifacts (project_id, task_id, name, content) VALUES (1, 1, 'a', 'x');"
         "INSERT INTO audit_logs (user_id, action) VALUES (1, 'login');"
         "INSERT INTO roles (id, name) VALUES (1, 'r');"
         "INSERT INTO team_types (id, name) VALUES (1, 'tt');"
         "INSERT INTO team_type_roles VALUES (1, 0, 1);"
         "INSERT INTO teams (id, name, team_type_id) VALUES (1, 'team', 1);"
         "INSERT INTO agents (name, kind) VALUES ('a', 'echo');"
         "INSERT INTO team_members (team_id, agent, role_id) VALUES (1, 'a', 1)");

    //  RESTRICT: a project with tasks, a role in use, a team type in use.
    s_refused(fx->db, "23503", "tasks_project_id_fkey", "DELETE FROM projects WHERE id = 1");
    s_refused(fx->db, "23503", NULL, "DELETE FROM roles WHERE id = 1");
    s_refused(fx->db, "23503", "teams_team_type_id_fkey", "DELETE FROM team_types WHERE id = 1");

    //  A deleted user: its keys and tokens go, its task and project stay
    //  without an author, its audit rows stay untouched.
    s_ok(fx->db, "DELETE FROM users WHERE id = 1");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM api_keys"), 0);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM refresh_tokens"), 0);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM tasks WHERE created_by IS NULL"), 1);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM projects WHERE created_by IS NULL"), 1);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM audit_logs WHERE user_id = 1"), 1);

    //  A deleted agent leaves its teams; a deleted task leaves its
    //  artifact in the project; then the project (and artifact) can go.
    s_ok(fx->db, "DELETE FROM agents WHERE name = 'a'");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM team_members"), 0);
    s_ok(fx->db, "DELETE FROM tasks WHERE id = 1");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM artifacts WHERE task_id = 1"), 1);
    s_ok(fx->db, "DELETE FROM projects WHERE id = 1");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM artifacts"), 0);
    //  A team type's pipeline goes with it once no team uses it.
    s_ok(fx->db, "DELETE FROM teams WHERE id = 1; DELETE FROM team_types WHERE id = 1");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM team_type_roles"), 0);
    s_ok(fx->db, "DELETE FROM roles WHERE id = 1");
}

static void
test_schema_triggers(void **state)
{
    fixture_t *fx = *state;
    //  updated_at follows updates; seq counts per task; event ids come
    //  from the trigger whatever the writer passes.
    s_ok(fx->db, "INSERT INTO projects (id, name, updated_at) VALUES (1, 'p', '2000-01-01')");
    s_ok(fx->db, "UPDATE projects SET name = 'q'");
    assert_int_equal(
        s_count(fx->db, "SELECT count(*) FROM projects WHERE updated_at > '2001-01-01'"), 1);
    s_ok(fx->db, "INSERT INTO tasks (id, title, assignee) VALUES (1, 'a', '{\"agent\":\"a\"}'),"
                 " (2, 'b', '{\"agent\":\"a\"}');"
                 "INSERT INTO task_events (task_id, kind) VALUES (1, 'created'), (2, 'created'),"
                 " (1, 'started'), (1, 'output')");
    assert_int_equal(s_count(fx->db, "SELECT max(seq) FROM task_events WHERE task_id = 1"), 3);
    assert_int_equal(s_count(fx->db, "SELECT max(seq) FROM task_events WHERE task_id = 2"), 1);
    //  Event ids are drawn under the commit-order lock: a writer may not
    //  bring its own.
    s_refused(fx->db, "428C9", NULL, "INSERT INTO events (id, type) VALUES (1000, 'task.created')");
    s_ok(fx->db, "INSERT INTO events (type) VALUES ('task.created');"
                 "INSERT INTO events (type) VALUES ('task.started')");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events"), 2);
    assert_int_equal(s_count(fx->db, "SELECT max(id) FROM events"), 2);
    //  An artifact's size follows its content.
    s_ok(fx->db, "INSERT INTO artifacts (project_id, name, content) VALUES (1, 'a', 'abc')");
    assert_int_equal(s_count(fx->db, "SELECT size FROM artifacts"), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_applies_to_empty_database_then_nothing, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_schema_task_constraints, s_setup_migrated, s_teardown),
        cmocka_unit_test_setup_teardown(test_schema_name_and_enum_constraints, s_setup_migrated,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_schema_delete_behaviour, s_setup_migrated, s_teardown),
        cmocka_unit_test_setup_teardown(test_schema_triggers, s_setup_migrated, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
