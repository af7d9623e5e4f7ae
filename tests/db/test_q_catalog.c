/* label: db */
/*  test_q_catalog: templates, roles, team types and teams (cd_q_catalog)
    against a real PostgreSQL. */
#include "cd_q_catalog.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

//  Asserts rc is CD_EINVAL with an INVALID answer naming field in *out
//  (freed and nulled).
static void
s_invalid(int rc, char **out, const char *field)
{
    if (rc != CD_EINVAL) {
        fail_msg("want CD_EINVAL naming %s, got %s", field, cd_errname(rc));
    }
    json_t *j = s_parse(*out, true);
    *out = NULL;
    json_t *invalid = json_object_get(j, "invalid");
    assert_non_null(invalid);
    assert_string_equal(s_str(invalid, "field"), field);
    assert_non_null(s_str(invalid, "reason"));
    json_decref(j);
}

//  The id of the row a function returned in out (freed).
static int64_t
s_id_of(char *out)
{
    json_t *j = s_parse(out, true);
    int64_t id = s_int(j, "id");
    json_decref(j);
    return id;
}

static void
test_q_catalog_templates(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    s_ok(fx->db,
         cd_q_templates_insert(fx->db, "{\"name\":\"greet\",\"body\":\"Hi {{name}}\"}", &out));
    json_t *t = s_parse(out, true);
    int64_t id = s_int(t, "id");
    assert_string_equal(s_str(t, "body"), "Hi {{name}}");
    assert_string_equal(s_str(t, "description"), "");
    json_decref(t);
    s_sqlstate(fx->db, cd_q_templates_insert(fx->db, "{\"name\":\"greet\",\"body\":\"x\"}", &out),
               "23505");
    s_sqlstate(fx->db, cd_q_templates_insert(fx->db, "{\"name\":\"nobody\"}", &out), "23502");
    s_ok(fx->db, cd_q_templates_get(fx->db, id, &out));
    free(out);
    assert_int_equal(cd_q_templates_get(fx->db, id + 9, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_templates_patch(fx->db, id, "{\"description\":\"d\",\"body\":\"Yo\"}", &out));
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "description"), "d");
    assert_string_equal(s_str(t, "body"), "Yo");
    assert_string_equal(s_str(t, "name"), "greet");
    json_decref(t);
    s_ok(fx->db, cd_q_templates_patch(fx->db, id, "{\"name\":\"hello\"}", &out));
    free(out);
    assert_int_equal(cd_q_templates_patch(fx->db, id + 9, "{}", &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_templates_insert(fx->db, "{\"name\":\"b\",\"body\":\"x\"}", &out));
    int64_t id2 = s_id_of(out);
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_templates_list(fx->db, NULL, 1, &page));
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], id2);
    char *cursor = page.next_cursor;
    page.next_cursor = NULL;
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_templates_list(fx->db, cursor, 1, &page));
    free(cursor);
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], id);
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);

    //  A role using the template loses the link when it goes.
    char body[128];
    snprintf(body, sizeof body, "{\"name\":\"r\",\"default_template_id\":%lld}", (long long)id);
    s_ok(fx->db, cd_q_roles_insert(fx->db, body, &out));
    int64_t role = s_id_of(out);
    s_ok(fx->db, cd_q_templates_delete(fx->db, id));
    assert_int_equal(cd_q_templates_delete(fx->db, id), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_roles_get(fx->db, role, NULL, &out));
    t = s_parse(out, true);
    assert_true(s_null(t, "default_template_id"));
    json_decref(t);
}

static void
test_q_catalog_roles(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    s_ok(fx->db,
         cd_q_roles_insert(fx->db, "{\"name\":\"coder\",\"description\":\"writes\"}", &out));
    json_t *r = s_parse(out, true);
    int64_t coder = s_int(r, "id");
    assert_string_equal(s_str(r, "description"), "writes");
    assert_true(s_null(r, "default_template_id"));
    json_decref(r);
    s_sqlstate(fx->db, cd_q_roles_insert(fx->db, "{\"name\":\"coder\"}", &out), "23505");
    s_sqlstate(fx->db, cd_q_roles_insert(fx->db, "{\"name\":\"\"}", &out), "23514");
    //  An unknown template writes nothing and names the field.
    s_invalid(cd_q_roles_insert(fx->db, "{\"name\":\"x\",\"default_template_id\":5}", &out), &out,
              "default_template_id");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM roles"), 1);
    s_ok(fx->db, cd_q_roles_get(fx->db, CD_Q_NULL, "coder", &out));
    assert_int_equal(s_id_of(out), coder);
    s_ok(fx->db, cd_q_roles_get(fx->db, coder, NULL, &out));
    free(out);
    assert_int_equal(cd_q_roles_get(fx->db, CD_Q_NULL, "nobody", &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_roles_patch(fx->db, coder, "{\"name\":\"dev\"}", &out));
    r = s_parse(out, true);
    assert_string_equal(s_str(r, "name"), "dev");
    assert_string_equal(s_str(r, "description"), "writes");
    json_decref(r);
    s_ok(fx->db, cd_q_roles_patch(fx->db, coder,
                                  "{\"description\":\"\",\"default_template_id\":null}", &out));
    free(out);
    assert_int_equal(cd_q_roles_patch(fx->db, coder + 9, "{}", &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_roles_insert(fx->db, "{\"name\":\"reviewer\"}", &out));
    free(out);
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_roles_list(fx->db, NULL, 0, &page));
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_roles_delete(fx->db, coder));
    assert_int_equal(cd_q_roles_delete(fx->db, coder), CD_ENOTFOUND);
}

static void
test_q_catalog_team_types_and_teams(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    int64_t r[3];
    const char *names[] = {"coder", "reviewer", "tester"};
    for (int i = 0; i < 3; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"name\":\"%s\"}", names[i]);
        s_ok(fx->db, cd_q_roles_insert(fx->db, body, &out));
        r[i] = s_id_of(out);
    }
    char body[256];
    snprintf(body, sizeof body, "{\"name\":\"pipeline\",\"roles\":[%lld,%lld,%lld]}",
             (long long)r[1], (long long)r[0], (long long)r[1]);
    s_ok(fx->db, cd_q_team_types_insert(fx->db, body, &out));
    json_t *tt = s_parse(out, true);
    int64_t type = s_int(tt, "id");
    json_t *roles = json_object_get(tt, "roles");
    assert_int_equal(json_array_size(roles), 3);
    assert_int_equal(json_integer_value(json_array_get(roles, 0)), r[1]);
    assert_int_equal(json_integer_value(json_array_get(roles, 1)), r[0]);
    assert_int_equal(json_integer_value(json_array_get(roles, 2)), r[1]);
    json_decref(tt);
    //  All or nothing: an unknown role leaves no team type behind.
    s_invalid(cd_q_team_types_insert(fx->db, "{\"name\":\"bad\",\"roles\":[999]}", &out), &out,
              "roles");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM team_types"), 1);
    s_sqlstate(fx->db, cd_q_team_types_insert(fx->db, "{\"name\":\"pipeline\"}", &out), "23505");
    s_ok(fx->db, cd_q_team_types_insert(fx->db, "{\"name\":\"solo\"}", &out));
    tt = s_parse(out, true);
    int64_t solo = s_int(tt, "id");
    assert_int_equal(json_array_size(json_object_get(tt, "roles")), 0);
    json_decref(tt);

    //  Patch: name only keeps the roles; roles replaces them.
    s_ok(fx->db, cd_q_team_types_patch(fx->db, type, "{\"description\":\"d\"}", &out));
    tt = s_parse(out, true);
    assert_int_equal(json_array_size(json_object_get(tt, "roles")), 3);
    assert_string_equal(s_str(tt, "description"), "d");
    json_decref(tt);
    snprintf(body, sizeof body, "{\"roles\":[%lld,%lld]}", (long long)r[0], (long long)r[2]);
    s_ok(fx->db, cd_q_team_types_patch(fx->db, type, body, &out));
    tt = s_parse(out, true);
    roles = json_object_get(tt, "roles");
    assert_int_equal(json_array_size(roles), 2);
    assert_int_equal(json_integer_value(json_array_get(roles, 1)), r[2]);
    json_decref(tt);
    assert_int_equal(cd_q_team_types_patch(fx->db, type + 99, "{}", &out), CD_ENOTFOUND);
    assert_null(out);
    s_invalid(cd_q_team_types_patch(fx->db, type, "{\"name\":\"n\",\"roles\":[999]}", &out), &out,
              "roles");
    s_ok(fx->db, cd_q_team_types_get(fx->db, type, &out));
    tt = s_parse(out, true);
    assert_int_equal(json_array_size(json_object_get(tt, "roles")), 2); // unchanged
    assert_string_equal(s_str(tt, "name"), "pipeline");
    json_decref(tt);
    assert_int_equal(cd_q_team_types_get(fx->db, type + 99, &out), CD_ENOTFOUND);
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_team_types_list(fx->db, NULL, 0, &page));
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);

    //  Teams.
    s_ok(fx->db, cd_db_exec(fx->db,
                            "INSERT INTO agents (name, kind) VALUES ('a1', 'echo'), ('a2', 'echo'),"
                            " ('a3', 'echo')",
                            NULL));
    snprintf(body, sizeof body,
             "{\"name\":\"red\",\"team_type_id\":%lld,\"members\":[{\"agent\":\"a1\",\"role_id\":"
             "%lld},{\"agent\":\"a2\",\"role_id\":%lld}]}",
             (long long)type, (long long)r[0], (long long)r[2]);
    s_ok(fx->db, cd_q_teams_insert(fx->db, body, &out));
    json_t *team = s_parse(out, true);
    int64_t red = s_int(team, "id");
    assert_int_equal(s_int(team, "team_type_id"), type);
    json_t *members = json_object_get(team, "members");
    assert_int_equal(json_array_size(members), 2);
    assert_string_equal(s_str(json_array_get(members, 0), "agent"), "a1");
    assert_int_equal(s_int(json_array_get(members, 1), "role_id"), r[2]);
    json_decref(team);
    snprintf(body, sizeof body,
             "{\"name\":\"blue\",\"team_type_id\":%lld,\"members\":[{\"agent\":\"ghost\","
             "\"role_id\":%lld}]}",
             (long long)type, (long long)r[0]);
    s_invalid(cd_q_teams_insert(fx->db, body, &out), &out, "members");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM teams"), 1);
    snprintf(body, sizeof body,
             "{\"name\":\"blue\",\"team_type_id\":%lld,\"members\":[{\"agent\":\"a1\","
             "\"role_id\":%lld},{\"agent\":\"a1\",\"role_id\":%lld}]}",
             (long long)type, (long long)r[0], (long long)r[1]);
    s_invalid(cd_q_teams_insert(fx->db, body, &out), &out, "members"); // a1 twice
    s_invalid(cd_q_teams_insert(fx->db, "{\"name\":\"x\",\"team_type_id\":999}", &out), &out,
              "team_type_id");
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM teams"), 1);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM team_members"), 2);
    snprintf(body, sizeof body, "{\"name\":\"blue\",\"team_type_id\":%lld}", (long long)solo);
    s_ok(fx->db, cd_q_teams_insert(fx->db, body, &out));
    int64_t blue = s_id_of(out);

    s_ok(fx->db, cd_q_teams_member_add(fx->db, blue, "a3", r[1], &out));
    team = s_parse(out, true);
    assert_int_equal(json_array_size(json_object_get(team, "members")), 1);
    json_decref(team);
    s_ok(fx->db, cd_q_teams_member_add(fx->db, blue, "a3", r[2], &out)); // changes the role
    team = s_parse(out, true);
    assert_int_equal(s_int(json_array_get(json_object_get(team, "members"), 0), "role_id"), r[2]);
    json_decref(team);
    s_invalid(cd_q_teams_member_add(fx->db, blue, "ghost", r[1], &out), &out, "agent");
    s_invalid(cd_q_teams_member_add(fx->db, blue, "a2", r[2] + 99, &out), &out, "role_id");
    assert_int_equal(cd_q_teams_member_add(fx->db, blue + 99, "a2", r[1], &out), CD_ENOTFOUND);
    assert_null(out);
    s_ok(fx->db, cd_q_teams_member_remove(fx->db, blue, "a3"));
    assert_int_equal(cd_q_teams_member_remove(fx->db, blue, "a3"), CD_ENOTFOUND);

    s_ok(fx->db, cd_q_teams_patch(fx->db, red, "{\"name\":\"crimson\"}", &out));
    team = s_parse(out, true);
    assert_string_equal(s_str(team, "name"), "crimson");
    assert_int_equal(json_array_size(json_object_get(team, "members")), 2);
    json_decref(team);
    snprintf(body, sizeof body, "{\"members\":[{\"agent\":\"a3\",\"role_id\":%lld}]}",
             (long long)r[0]);
    s_ok(fx->db, cd_q_teams_patch(fx->db, red, body, &out));
    team = s_parse(out, true);
    members = json_object_get(team, "members");
    assert_int_equal(json_array_size(members), 1);
    assert_string_equal(s_str(json_array_get(members, 0), "agent"), "a3");
    json_decref(team);
    assert_int_equal(cd_q_teams_patch(fx->db, red + 99, "{}", &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_teams_get(fx->db, red, &out));
    free(out);
    assert_int_equal(cd_q_teams_get(fx->db, red + 99, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_teams_list(fx->db, NULL, 1, &page));
    assert_int_equal(page.count, 1);
    assert_non_null(page.next_cursor);
    cd_q_page_fini(&page);

    //  In use: a role by a pipeline and a member, a type by a team.
    s_sqlstate(fx->db, cd_q_roles_delete(fx->db, r[0]), "23503");
    s_sqlstate(fx->db, cd_q_team_types_delete(fx->db, type), "23503");
    s_ok(fx->db, cd_q_teams_delete(fx->db, red));
    assert_int_equal(cd_q_teams_delete(fx->db, red), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_team_types_delete(fx->db, type));
    assert_int_equal(cd_q_team_types_delete(fx->db, type), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_roles_delete(fx->db, r[0]));

    //  Inside a caller's transaction the multi-statement writes join it.
    s_ok(fx->db, cd_db_begin(fx->db));
    s_ok(fx->db, cd_q_team_types_insert(fx->db, "{\"name\":\"later\"}", &out));
    free(out);
    assert_true(cd_db_in_transaction(fx->db));
    s_ok(fx->db, cd_db_rollback(fx->db));
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM team_types WHERE name = 'later'"), 0);
}

//  The persist table: unique "<family>.<verb>" names, nparams as the SQL
//  uses them, and every statement prepares (as persist prepares it).
static void
test_q_catalog_writes_table(void **state)
{
    fixture_t *fx = *state;
    assert_true(cd_q_catalog_n_writes >= 14);
    for (size_t i = 0; i < cd_q_catalog_n_writes; i++) {
        const cd_q_write_t *w = &cd_q_catalog_writes[i];
        assert_non_null(strchr(w->name, '.'));
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(cd_q_catalog_writes[j].name, w->name);
        }
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

//  Patches: a bad body changes nothing; lists grow, shrink and keep
//  what stays.
static void
test_q_catalog_patches(void **state)
{
    fixture_t *fx = *state;
    char *out = NULL;
    s_ok(fx->db, cd_q_templates_insert(fx->db, "{\"name\":\"t\",\"body\":\"x\"}", &out));
    int64_t tpl = s_id_of(out);
    s_ok(fx->db, cd_q_roles_insert(fx->db, "{\"name\":\"a\"}", &out));
    int64_t ra = s_id_of(out);
    s_ok(fx->db, cd_q_roles_insert(fx->db, "{\"name\":\"b\"}", &out));
    int64_t rb = s_id_of(out);
    char body[256];

    //  Roles: a template by id, unknown ones rejected, null clears.
    snprintf(body, sizeof body, "{\"default_template_id\":%lld}", (long long)tpl);
    s_ok(fx->db, cd_q_roles_patch(fx->db, ra, body, &out));
    json_t *j = s_parse(out, true);
    assert_int_equal(s_int(j, "default_template_id"), tpl);
    json_decref(j);
    s_invalid(cd_q_roles_patch(fx->db, ra, "{\"name\":\"z\",\"default_template_id\":999}", &out),
              &out, "default_template_id");
    //  An unknown id is not found, whatever the body.
    assert_int_equal(cd_q_roles_patch(fx->db, rb + 99, "{\"default_template_id\":999}", &out),
                     CD_ENOTFOUND);
    assert_null(out);
    s_ok(fx->db, cd_q_roles_get(fx->db, ra, NULL, &out));
    j = s_parse(out, true);
    assert_string_equal(s_str(j, "name"), "a");
    assert_int_equal(s_int(j, "default_template_id"), tpl);
    json_decref(j);
    s_ok(fx->db, cd_q_roles_patch(fx->db, ra, "{\"default_template_id\":null}", &out));
    j = s_parse(out, true);
    assert_true(s_null(j, "default_template_id"));
    json_decref(j);

    //  Team types: the pipeline grows, repeats a role, empties.
    snprintf(body, sizeof body, "{\"name\":\"tt\",\"roles\":[%lld]}", (long long)ra);
    s_ok(fx->db, cd_q_team_types_insert(fx->db, body, &out));
    int64_t tt = s_id_of(out);
    snprintf(body, sizeof body, "{\"roles\":[%lld,%lld,%lld]}", (long long)rb, (long long)ra,
             (long long)rb);
    s_ok(fx->db, cd_q_team_types_patch(fx->db, tt, body, &out));
    j = s_parse(out, true);
    json_t *roles = json_object_get(j, "roles");
    assert_int_equal(json_array_size(roles), 3);
    assert_int_equal(json_integer_value(json_array_get(roles, 0)), rb);
    assert_int_equal(json_integer_value(json_array_get(roles, 1)), ra);
    assert_int_equal(json_integer_value(json_array_get(roles, 2)), rb);
    json_decref(j);
    s_ok(fx->db, cd_q_team_types_get(fx->db, tt, &out)); // what a read sees agrees
    j = s_parse(out, true);
    assert_int_equal(json_array_size(json_object_get(j, "roles")), 3);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "roles"), 0)), rb);
    json_decref(j);
    assert_int_equal(cd_q_team_types_patch(fx->db, tt + 99, "{\"roles\":[999]}", &out),
                     CD_ENOTFOUND);
    s_ok(fx->db, cd_q_team_types_patch(fx->db, tt, "{\"roles\":[]}", &out));
    j = s_parse(out, true);
    assert_int_equal(json_array_size(json_object_get(j, "roles")), 0);
    json_decref(j);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM team_type_roles"), 0);

    //  Teams: members replaced, one kept (with its added_at), bad ones
    //  rejected whole.
    s_ok(fx->db, cd_db_exec(fx->db,
                            "INSERT INTO agents (name, kind) VALUES ('x1', 'echo'), ('x2', 'echo'),"
                            " ('x3', 'echo')",
                            NULL));
    snprintf(body, sizeof body,
             "{\"name\":\"team\",\"team_type_id\":%lld,\"members\":[{\"agent\":\"x3\","
             "\"role_id\":%lld}]}",
             (long long)tt, (long long)ra);
    s_ok(fx->db, cd_q_teams_insert(fx->db, body, &out));
    int64_t team = s_id_of(out);
    s_ok(fx->db,
         cd_db_exec(fx->db, "UPDATE team_members SET added_at = now() - interval '1 h'", NULL));
    snprintf(body, sizeof body,
             "{\"members\":[{\"agent\":\"x1\",\"role_id\":%lld},{\"agent\":\"x3\",\"role_id\":"
             "%lld}]}",
             (long long)ra, (long long)rb);
    s_ok(fx->db, cd_q_teams_patch(fx->db, team, body, &out));
    j = s_parse(out, true);
    json_t *members = json_object_get(j, "members");
    assert_int_equal(json_array_size(members), 2);
    assert_string_equal(s_str(json_array_get(members, 0), "agent"), "x3"); // the older one
    assert_int_equal(s_int(json_array_get(members, 0), "role_id"), rb);
    assert_string_equal(s_str(json_array_get(members, 1), "agent"), "x1");
    json_decref(j);
    snprintf(body, sizeof body,
             "{\"name\":\"new\",\"members\":[{\"agent\":\"nobody\",\"role_id\":%lld}]}",
             (long long)ra);
    s_invalid(cd_q_teams_patch(fx->db, team, body, &out), &out, "members");
    snprintf(body, sizeof body,
             "{\"members\":[{\"agent\":\"x2\",\"role_id\":%lld},{\"agent\":\"x2\",\"role_id\":"
             "%lld}]}",
             (long long)ra, (long long)ra);
    s_invalid(cd_q_teams_patch(fx->db, team, body, &out), &out, "members");
    s_invalid(cd_q_teams_patch(fx->db, team, "{\"team_type_id\":999}", &out), &out, "team_type_id");
    assert_int_equal(cd_q_teams_patch(fx->db, team + 99, "{\"team_type_id\":999}", &out),
                     CD_ENOTFOUND);
    s_ok(fx->db, cd_q_teams_get(fx->db, team, &out));
    j = s_parse(out, true);
    assert_string_equal(s_str(j, "name"), "team");
    assert_int_equal(json_array_size(json_object_get(j, "members")), 2);
    json_decref(j);

    //  Adding lists the team's other members with the new one.
    s_ok(fx->db, cd_q_teams_member_add(fx->db, team, "x2", rb, &out));
    j = s_parse(out, true);
    members = json_object_get(j, "members");
    assert_int_equal(json_array_size(members), 3);
    assert_string_equal(s_str(json_array_get(members, 0), "agent"), "x3");
    json_decref(j);
    s_ok(fx->db, cd_q_teams_member_add(fx->db, team, "x3", ra, &out)); // a new role only
    j = s_parse(out, true);
    members = json_object_get(j, "members");
    assert_int_equal(json_array_size(members), 3);
    assert_string_equal(s_str(json_array_get(members, 0), "agent"), "x3");
    assert_int_equal(s_int(json_array_get(members, 0), "role_id"), ra);
    json_decref(j);
    s_ok(fx->db, cd_q_teams_patch(fx->db, team, "{\"members\":[]}", &out));
    j = s_parse(out, true);
    assert_int_equal(json_array_size(json_object_get(j, "members")), 0);
    json_decref(j);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM team_members"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_catalog_templates, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_catalog_roles, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_catalog_team_types_and_teams, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_catalog_writes_table, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_catalog_patches, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
