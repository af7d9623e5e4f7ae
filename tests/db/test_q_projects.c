/* label: db */
/*  test_q_projects: projects, their status and artifacts (cd_q_projects)
    against a real PostgreSQL. */
#include "cd_q_projects.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

static void
test_q_projects_crud_and_status(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann");
    char *out = NULL;
    s_ok(fx->db, cd_q_projects_insert(fx->db, "{\"name\":\"site\"}", ann, &out));
    json_t *p = s_parse(out, true);
    int64_t site = s_int(p, "id");
    assert_string_equal(s_str(p, "name"), "site");
    assert_string_equal(s_str(p, "description"), "");
    assert_int_equal(s_int(p, "created_by"), ann);
    json_decref(p);
    s_ok(fx->db,
         cd_q_projects_insert(fx->db, "{\"name\":\"ops\",\"description\":\"d\"}", CD_Q_NULL, &out));
    p = s_parse(out, true);
    int64_t ops = s_int(p, "id");
    assert_true(s_null(p, "created_by"));
    json_decref(p);
    s_sqlstate(fx->db, cd_q_projects_insert(fx->db, "{\"name\":\"\"}", ann, &out), "23514");
    s_sqlstate(fx->db, cd_q_projects_insert(fx->db, "{}", ann, &out), "23502");

    s_ok(fx->db, cd_q_projects_get(fx->db, site, &out));
    free(out);
    assert_int_equal(cd_q_projects_get(fx->db, ops + 9, &out), CD_ENOTFOUND);
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_projects_list(fx->db, CD_Q_NULL, NULL, 0, &page));
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 2);
    assert_int_equal(ids[0], ops);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_projects_list(fx->db, ann, NULL, 0, &page));
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], site);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_projects_list(fx->db, CD_Q_NULL, NULL, 1, &page));
    assert_string_equal(page.next_cursor, "2");
    cd_q_page_fini(&page);

    s_ok(fx->db, cd_q_projects_patch(fx->db, site, "{\"description\":\"web\"}", &out));
    p = s_parse(out, true);
    assert_string_equal(s_str(p, "description"), "web");
    assert_string_equal(s_str(p, "name"), "site");
    json_decref(p);
    assert_int_equal(cd_q_projects_patch(fx->db, ops + 9, "{}", &out), CD_ENOTFOUND);

    //  Status: counts by status, pending HITL, distinct busy agents.
    s_ok(fx->db, cd_q_projects_status(fx->db, site, &out));
    p = s_parse(out, true);
    assert_int_equal(s_int(p, "project_id"), site);
    assert_int_equal(s_int(json_object_get(p, "tasks"), "todo"), 0);
    assert_int_equal(s_int(p, "pending_hitl"), 0);
    assert_int_equal(s_int(p, "agents_busy"), 0);
    json_decref(p);
    int64_t t1 = s_raw_task(fx->db, "{\"agent\":\"a\"}", site, ann);
    s_raw_task(fx->db, "{\"agent\":\"a\"}", site, ann);
    s_raw_task(fx->db, "{\"agent\":\"a\"}", site, ann);
    s_raw_task(fx->db, "{\"agent\":\"a\"}", ops, ann);
    s_ok(fx->db, cd_db_exec(fx->db,
                            "UPDATE tasks SET status = 'in_progress', agent = 'a',"
                            " lease_owner = 'n', lease_expires_at = now() WHERE id IN"
                            " (SELECT id FROM tasks ORDER BY id LIMIT 2);"
                            "INSERT INTO hitl_requests (task_id, project_id, question)"
                            " SELECT id, project_id, 'q' FROM tasks ORDER BY id LIMIT 1",
                            NULL));
    s_ok(fx->db, cd_q_projects_status(fx->db, site, &out));
    p = s_parse(out, true);
    json_t *tasks = json_object_get(p, "tasks");
    assert_int_equal(s_int(tasks, "todo"), 1);
    assert_int_equal(s_int(tasks, "in_progress"), 2);
    assert_int_equal(s_int(tasks, "done"), 0);
    assert_int_equal(s_int(tasks, "waiting_human"), 0);
    assert_int_equal(s_int(tasks, "failed"), 0);
    assert_int_equal(s_int(tasks, "cancelled"), 0);
    assert_int_equal(s_int(p, "pending_hitl"), 1);
    assert_int_equal(s_int(p, "agents_busy"), 1);
    json_decref(p);
    assert_int_equal(cd_q_projects_status(fx->db, ops + 9, &out), CD_ENOTFOUND);
    (void)t1;

    //  A project with tasks cannot be deleted.
    s_sqlstate(fx->db, cd_q_projects_delete(fx->db, site), "23503");
    s_ok(fx->db, cd_db_exec(fx->db, "DELETE FROM tasks", NULL));
    s_ok(fx->db, cd_q_projects_delete(fx->db, site));
    assert_int_equal(cd_q_projects_delete(fx->db, site), CD_ENOTFOUND);
}

static void
test_q_projects_artifacts(void **state)
{
    fixture_t *fx = *state;
    int64_t project = s_project(fx->db);
    int64_t task = s_raw_task(fx->db, "{\"agent\":\"a\"}", project, CD_Q_NULL);
    char *out = NULL;
    char body[256];
    snprintf(body, sizeof body, "{\"name\":\"notes.txt\",\"content\":\"héllo\",\"task_id\":%lld}",
             (long long)task);
    s_ok(fx->db, cd_q_artifacts_insert(fx->db, project, body, CD_Q_NULL, &out));
    json_t *a = s_parse(out, true);
    int64_t text = s_int(a, "id");
    assert_int_equal(s_int(a, "size"), 6); // UTF-8 bytes
    assert_string_equal(s_str(a, "content_type"), "text/plain; charset=utf-8");
    assert_int_equal(s_int(a, "task_id"), task);
    assert_int_equal(s_int(a, "project_id"), project);
    assert_null(json_object_get(a, "content"));
    json_decref(a);
    s_ok(fx->db, cd_q_artifacts_insert(fx->db, project,
                                       "{\"name\":\"bin\",\"content_type\":\"image/png\","
                                       "\"content_base64\":\"AAECAw==\"}",
                                       CD_Q_NULL, &out));
    a = s_parse(out, true);
    int64_t bin = s_int(a, "id");
    assert_int_equal(s_int(a, "size"), 4);
    assert_true(s_null(a, "task_id"));
    json_decref(a);
    s_sqlstate(fx->db,
               cd_q_artifacts_insert(fx->db, project, "{\"name\":\"x\",\"content_base64\":\"!!\"}",
                                     CD_Q_NULL, &out),
               "22023");
    s_sqlstate(fx->db, cd_q_artifacts_insert(fx->db, project, "{\"name\":\"x\"}", CD_Q_NULL, &out),
               "23502");
    assert_int_equal(cd_q_artifacts_insert(fx->db, project + 9, "{\"name\":\"x\",\"content\":\"\"}",
                                           CD_Q_NULL, &out),
                     CD_ENOTFOUND);
    assert_null(out);
    //  A task_id must name a task of the project.
    int64_t other = s_project(fx->db);
    int64_t elsewhere = s_raw_task(fx->db, "{\"agent\":\"a\"}", other, CD_Q_NULL);
    snprintf(body, sizeof body, "{\"name\":\"x\",\"content\":\"\",\"task_id\":%lld}",
             (long long)elsewhere);
    assert_int_equal(cd_q_artifacts_insert(fx->db, project, body, CD_Q_NULL, &out), CD_EINVAL);
    a = s_parse(out, true);
    assert_string_equal(s_str(json_object_get(a, "invalid"), "field"), "task_id");
    json_decref(a);
    //  Each stored artifact has its event, and only those.
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM artifacts"), 2);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events"), 2);
    char *ev = NULL;
    snprintf(body, sizeof body,
             "SELECT json_build_object('type', type, 'project_id', project_id, 'task_id', task_id,"
             " 'data', data) FROM events WHERE (data ->> 'artifact_id')::bigint = %lld",
             (long long)text);
    s_ok(fx->db, cd_db_query_text(fx->db, body, 0, NULL, &ev));
    a = s_parse(ev, true);
    assert_string_equal(s_str(a, "type"), "artifact.created");
    assert_int_equal(s_int(a, "project_id"), project);
    assert_int_equal(s_int(a, "task_id"), task);
    assert_string_equal(s_str(json_object_get(a, "data"), "name"), "notes.txt");
    assert_int_equal(s_int(json_object_get(a, "data"), "size"), 6);
    json_decref(a);

    s_ok(fx->db, cd_q_artifacts_get(fx->db, text, &out));
    a = s_parse(out, true);
    assert_string_equal(s_str(a, "name"), "notes.txt");
    json_decref(a);
    assert_int_equal(cd_q_artifacts_get(fx->db, bin + 9, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_artifacts_content(fx->db, bin, &out));
    a = s_parse(out, true);
    assert_string_equal(s_str(a, "content_base64"), "AAECAw==");
    assert_string_equal(s_str(a, "content_type"), "image/png");
    json_decref(a);
    assert_int_equal(cd_q_artifacts_content(fx->db, bin + 9, &out), CD_ENOTFOUND);
    //  Long content comes back as one base64 line.
    s_ok(fx->db, cd_q_artifacts_insert(fx->db, project,
                                       "{\"name\":\"long\",\"content\":\"0123456789012345678901"
                                       "234567890123456789012345678901234567890123456789\"}",
                                       CD_Q_NULL, &out));
    a = s_parse(out, true);
    int64_t longid = s_int(a, "id");
    json_decref(a);
    s_ok(fx->db, cd_q_artifacts_content(fx->db, longid, &out));
    assert_null(strstr(out, "\\n"));
    free(out);

    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_artifacts_list(fx->db, project, NULL, 2, &page));
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 2);
    assert_int_equal(ids[0], longid);
    char *cursor = page.next_cursor;
    page.next_cursor = NULL;
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_artifacts_list(fx->db, project, cursor, 2, &page));
    free(cursor);
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], text);
    cd_q_page_fini(&page);

    s_ok(fx->db, cd_q_artifacts_delete(fx->db, bin));
    assert_int_equal(cd_q_artifacts_delete(fx->db, bin), CD_ENOTFOUND);
}

//  The persist table: nparams as the SQL uses them, and every statement
//  prepares (as persist prepares it).
static void
test_q_projects_writes_table(void **state)
{
    fixture_t *fx = *state;
    assert_int_equal(cd_q_projects_n_writes, 4);
    for (size_t i = 0; i < cd_q_projects_n_writes; i++) {
        const cd_q_write_t *w = &cd_q_projects_writes[i];
        int highest = 0;
        for (const char *p = strchr(w->sql, '$'); p; p = strchr(p + 1, '$')) {
            int n = atoi(p + 1);
            highest = n > highest ? n : highest;
        }
        assert_int_equal(highest, w->nparams);
        char *sql = NULL;
        assert_true(asprintf(&sql, "PREPARE s_%zu AS %s", i, w->sql) > 0);
        char *err = NULL;
        if (cd_db_exec(fx->db, sql, &err) != 0) {
            fail_msg("%s: %s", w->name, err);
        }
        free(sql);
    }
}

//  Runs persist statement `name` with params; returns cd__q_one's code.
static int
s_write(cd_db_t *db, const char *name, int n, const char *const *params, char **out)
{
    for (size_t i = 0; i < cd_q_projects_n_writes; i++) {
        if (strcmp(cd_q_projects_writes[i].name, name) == 0) {
            assert_int_equal(cd_q_projects_writes[i].nparams, n);
            return cd__q_one(db, cd_q_projects_writes[i].sql, n, params, out);
        }
    }
    fail_msg("no statement %s", name);
    return -1;
}

//  With an owner, another user's project is not found by the writes.
static void
test_q_projects_owner_filter(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_user(fx->db, "ann");
    int64_t bob = s_user(fx->db, "bob");
    char *out = NULL;
    s_ok(fx->db, cd_q_projects_insert(fx->db, "{\"name\":\"anns\"}", ann, &out));
    json_t *p = s_parse(out, true);
    int64_t id = s_int(p, "id");
    json_decref(p);
    char sid[24], sann[24], sbob[24];
    snprintf(sid, sizeof sid, "%lld", (long long)id);
    snprintf(sann, sizeof sann, "%lld", (long long)ann);
    snprintf(sbob, sizeof sbob, "%lld", (long long)bob);

    const char *patch_bob[] = {sid, "{\"name\":\"mine\"}", sbob};
    assert_int_equal(s_write(fx->db, "projects.patch", 3, patch_bob, &out), CD_ENOTFOUND);
    const char *art_bob[] = {sid, "{\"name\":\"a\",\"content\":\"x\"}", sbob, sbob};
    assert_int_equal(s_write(fx->db, "artifacts.insert", 4, art_bob, &out), CD_ENOTFOUND);
    const char *del_bob[] = {sid, sbob};
    assert_int_equal(s_write(fx->db, "projects.delete", 2, del_bob, &out), CD_ENOTFOUND);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM artifacts"), 0);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM events"), 0);

    const char *patch_ann[] = {sid, "{\"name\":\"renamed\"}", sann};
    s_ok(fx->db, s_write(fx->db, "projects.patch", 3, patch_ann, &out));
    p = s_parse(out, true);
    assert_string_equal(s_str(p, "name"), "renamed");
    json_decref(p);
    const char *art_ann[] = {sid, "{\"name\":\"a\",\"content_base64\":\"AAE=\"}", sann, sann};
    s_ok(fx->db, s_write(fx->db, "artifacts.insert", 4, art_ann, &out));
    p = s_parse(out, true);
    assert_int_equal(s_int(p, "size"), 2);
    assert_int_equal(s_int(p, "created_by"), ann);
    assert_string_equal(s_str(p, "content_type"), "application/octet-stream");
    json_decref(p);
    const char *del_ann[] = {sid, sann};
    s_ok(fx->db, s_write(fx->db, "projects.delete", 2, del_ann, &out));
    p = s_parse(out, true);
    assert_int_equal(json_integer_value(p), id);
    json_decref(p);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM artifacts"), 0); // cascaded
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_projects_crud_and_status, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_projects_artifacts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_projects_writes_table, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_projects_owner_filter, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
