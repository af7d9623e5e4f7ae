/*  test_q_support: what the db query tests share: a migrated database of
    their own per test (a copy of one migrated template), JSON reading with jansson, SQLSTATE checks
   and a few row makers. Header-only (static inline), included by tests/db/test_q*.c after
   <cmocka.h>. */
#ifndef CD_TESTS_DB_Q_SUPPORT_H
#define CD_TESTS_DB_Q_SUPPORT_H

#include "cd_db.h"
#include "cd_error.h"
#include "cd_migrate.h"
#include "cd_pgembed.h"
#include "cd_q.h"
#include "cd_testpg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char *conninfo; // the test's own database, migrated
    cd_db_t *db;    // a connection to it
} fixture_t;

//  The executable's migrated template database: made (and migrated) once,
//  then every test gets a copy of it (CREATE DATABASE ... TEMPLATE),
//  which is cheaper than migrating a fresh database per test.
static inline const char *
s_template_name(void)
{
    static char name[64];
    if (name[0]) {
        return name;
    }
    char *conninfo = NULL;
    assert_int_equal(cd_testpg_fresh_db(&conninfo), 0);
    cd_db_t *db = NULL;
    assert_int_equal(cd_db_connect(conninfo, &db, NULL), 0);
    free(conninfo);
    char *err = NULL;
    if (cd_migrate_run(db, NULL, &err) != 0) {
        fail_msg("migrate: %s", err);
    }
    char *current = NULL;
    assert_int_equal(cd_db_query_text(db, "SELECT current_database()", 0, NULL, &current), 0);
    snprintf(name, sizeof name, "%s", current);
    free(current);
    cd_db_close(&db); // no session may be connected to a template being copied
    return name;
}

static inline int
s_setup(void **state)
{
    static unsigned counter;
    fixture_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    const char *tmpl = s_template_name();
    cd_pgembed_t *pg = cd_testpg_cluster();
    assert_non_null(pg);
    char name[160];
    snprintf(name, sizeof name, "%s_copy_%u", tmpl, ++counter);
    char *admin_conninfo = cd_pgembed_conninfo_for(pg, "postgres");
    cd_db_t *admin = NULL;
    assert_int_equal(cd_db_connect(admin_conninfo, &admin, NULL), 0);
    free(admin_conninfo);
    char *qname = cd_db_quote_ident(admin, name);
    char *qtmpl = cd_db_quote_ident(admin, tmpl);
    char sql[512];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE %s", qname, qtmpl);
    free(qname);
    free(qtmpl);
    char *err = NULL;
    if (cd_db_exec(admin, sql, &err) != 0) {
        fail_msg("%s: %s", sql, err);
    }
    cd_db_close(&admin);
    fx->conninfo = cd_pgembed_conninfo_for(pg, name);
    assert_int_equal(cd_db_connect(fx->conninfo, &fx->db, NULL), 0);
    *state = fx;
    return 0;
}

static inline int
s_teardown(void **state)
{
    fixture_t *fx = *state;
    cd_db_close(&fx->db);
    free(fx->conninfo);
    free(fx);
    return 0;
}

static inline void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

//  Parses JSON text (and frees the text when take is set).
static inline json_t *
s_parse(char *text, bool take)
{
    assert_non_null(text);
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j) {
        fail_msg("bad JSON (%s): %s", jerr.text, text);
    }
    if (take) {
        free(text);
    }
    return j;
}

static inline int64_t
s_int(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) {
        fail_msg("%s is not an integer", key);
    }
    return json_integer_value(v);
}

static inline const char *
s_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static inline bool
s_null(const json_t *obj, const char *key)
{
    return json_is_null(json_object_get(obj, key));
}

//  Asserts that rc is CD_EDB with this SQLSTATE on db.
static inline void
s_sqlstate(cd_db_t *db, int rc, const char *sqlstate)
{
    if (rc != CD_EDB) {
        fail_msg("want CD_EDB (SQLSTATE %s), got %s", sqlstate, cd_errname(rc));
    }
    const cd_db_error_t *err = cd_db_error(db);
    if (!cd_db_error_is(err, sqlstate)) {
        fail_msg("want SQLSTATE %s, got %s (%s)", sqlstate, err ? err->sqlstate : "-",
                 err ? err->message : "no error");
    }
}

//  Asserts rc == 0, printing the database error otherwise.
static inline void
s_ok(cd_db_t *db, int rc)
{
    if (rc != 0) {
        const cd_db_error_t *err = cd_db_error(db);
        fail_msg("%s: %s", cd_errname(rc), err ? err->message : "no database error");
    }
}

static inline int64_t
s_count(cd_db_t *db, const char *sql)
{
    int64_t n = -1;
    s_ok(db, cd_db_query_int64(db, sql, 0, NULL, &n));
    return n;
}

//  A user with a dummy hash; returns its id.
static inline int64_t
s_user(cd_db_t *db, const char *name)
{
    const char *params[] = {name};
    int64_t id = 0;
    s_ok(db, cd_db_query_int64(db,
                               "INSERT INTO users (username, password_hash) VALUES ($1, 'x')"
                               " RETURNING id",
                               1, params, &id));
    return id;
}

//  A project; returns its id.
static inline int64_t
s_project(cd_db_t *db)
{
    int64_t id = 0;
    s_ok(db, cd_db_query_int64(db, "INSERT INTO projects (name) VALUES ('p') RETURNING id", 0, NULL,
                               &id));
    return id;
}

//  A task (SQL, not through cd_q_tasks) with this assignee JSON; returns
//  its id.
static inline int64_t
s_raw_task(cd_db_t *db, const char *assignee, int64_t project_id, int64_t created_by)
{
    char pb[24], cb[24];
    const char *params[] = {assignee, cd__q_i64(pb, project_id), cd__q_i64(cb, created_by)};
    int64_t id = 0;
    s_ok(db, cd_db_query_int64(db,
                               "INSERT INTO tasks (title, assignee, project_id, created_by)"
                               " VALUES ('t', $1, $2, $3) RETURNING id",
                               3, params, &id));
    return id;
}

//  The ids ("id" members) of a page's items, in order; returns how many.
static inline int
s_page_ids(const cd_q_page_t *page, int64_t *ids, int max)
{
    json_t *items = s_parse(page->items, false);
    assert_true(json_is_array(items));
    assert_int_equal((int)json_array_size(items), page->count);
    int n = 0;
    for (size_t i = 0; i < json_array_size(items) && n < max; i++) {
        ids[n++] = s_int(json_array_get(items, i), "id");
    }
    json_decref(items);
    return n;
}

//  Item i of a page (new reference).
static inline json_t *
s_page_item(const cd_q_page_t *page, size_t i)
{
    json_t *items = s_parse(page->items, false);
    json_t *item = json_incref(json_array_get(items, i));
    json_decref(items);
    assert_non_null(item);
    return item;
}

#endif
