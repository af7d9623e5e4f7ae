/* label: db */
/*  test_q_users: users, password history, login attempts, bans, refresh
    tokens and API keys (cd_q_users) against a real PostgreSQL. */
#include "cd_q_users.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_q_support.h"

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HASH_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define HASH_D "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

static int64_t
s_new_user(cd_db_t *db, const char *name, const char *role)
{
    char *out = NULL;
    s_ok(db, cd_q_users_insert(db, name, "$argon2id$v=19$fake", role, &out));
    json_t *u = s_parse(out, true);
    int64_t id = s_int(u, "id");
    json_decref(u);
    return id;
}

static void
test_q_users_crud(void **state)
{
    fixture_t *fx = *state;
    int64_t count = -1;
    s_ok(fx->db, cd_q_users_count(fx->db, &count));
    assert_int_equal(count, 0);

    char *out = NULL;
    s_ok(fx->db, cd_q_users_insert(fx->db, "Admin", "$argon2id$v=19$h1", "admin", &out));
    json_t *u = s_parse(out, true);
    int64_t admin = s_int(u, "id");
    assert_string_equal(s_str(u, "username"), "Admin");
    assert_string_equal(s_str(u, "role"), "admin");
    assert_false(json_is_true(json_object_get(u, "mfa_enabled")));
    //  The public row never carries secrets.
    assert_null(json_object_get(u, "password_hash"));
    assert_null(json_object_get(u, "mfa_secret"));
    json_decref(u);
    s_sqlstate(fx->db, cd_q_users_insert(fx->db, "admin", "h", "user", &out), "23505");
    s_sqlstate(fx->db, cd_q_users_insert(fx->db, "bob", "h", "root", &out), "23514");
    s_sqlstate(fx->db, cd_q_users_insert(fx->db, "b b", "h", "user", &out), "23514");
    int64_t bob = s_new_user(fx->db, "bob", "user");
    s_ok(fx->db, cd_q_users_count(fx->db, &count));
    assert_int_equal(count, 2);

    s_ok(fx->db, cd_q_users_get(fx->db, bob, &out));
    u = s_parse(out, true);
    assert_string_equal(s_str(u, "username"), "bob");
    json_decref(u);
    assert_int_equal(cd_q_users_get(fx->db, bob + 99, &out), CD_ENOTFOUND);

    //  Credentials: by name in any case, or by id.
    s_ok(fx->db, cd_q_users_auth(fx->db, CD_Q_NULL, "ADMIN", &out));
    u = s_parse(out, true);
    assert_int_equal(s_int(u, "id"), admin);
    assert_string_equal(s_str(u, "password_hash"), "$argon2id$v=19$h1");
    assert_true(s_null(u, "mfa_secret"));
    json_decref(u);
    s_ok(fx->db, cd_q_users_auth(fx->db, bob, NULL, &out));
    u = s_parse(out, true);
    assert_string_equal(s_str(u, "username"), "bob");
    json_decref(u);
    assert_int_equal(cd_q_users_auth(fx->db, CD_Q_NULL, "nobody", &out), CD_ENOTFOUND);

    //  List newest first.
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_users_list(fx->db, NULL, 1, &page));
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], bob);
    char *cursor = page.next_cursor;
    page.next_cursor = NULL;
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_users_list(fx->db, cursor, 1, &page));
    free(cursor);
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], admin);
    assert_null(page.next_cursor);
    cd_q_page_fini(&page);

    s_ok(fx->db, cd_q_users_patch(fx->db, bob, "{\"role\":\"admin\"}", &out));
    u = s_parse(out, true);
    assert_string_equal(s_str(u, "role"), "admin");
    assert_string_equal(s_str(u, "username"), "bob");
    json_decref(u);
    s_ok(fx->db, cd_q_users_patch(fx->db, bob, "{\"username\":\"robert\"}", &out));
    free(out);
    s_sqlstate(fx->db, cd_q_users_patch(fx->db, bob, "{\"username\":\"ADMIN\"}", &out), "23505");
    assert_int_equal(cd_q_users_patch(fx->db, bob + 99, "{}", &out), CD_ENOTFOUND);

    //  MFA.
    s_sqlstate(fx->db, cd_q_users_set_mfa(fx->db, bob, NULL, true, &out), "23514");
    s_ok(fx->db, cd_q_users_set_mfa(fx->db, bob, "JBSWY3DPEHPK3PXP", true, &out));
    u = s_parse(out, true);
    assert_true(json_is_true(json_object_get(u, "mfa_enabled")));
    json_decref(u);
    s_ok(fx->db, cd_q_users_auth(fx->db, bob, NULL, &out));
    u = s_parse(out, true);
    assert_string_equal(s_str(u, "mfa_secret"), "JBSWY3DPEHPK3PXP");
    json_decref(u);
    s_ok(fx->db, cd_q_users_set_mfa(fx->db, bob, NULL, false, &out));
    free(out);
    assert_int_equal(cd_q_users_set_mfa(fx->db, bob + 99, NULL, false, &out), CD_ENOTFOUND);

    s_ok(fx->db, cd_q_users_delete(fx->db, bob));
    assert_int_equal(cd_q_users_delete(fx->db, bob), CD_ENOTFOUND);
}

static void
test_q_users_password_history(void **state)
{
    fixture_t *fx = *state;
    int64_t id = s_new_user(fx->db, "ann", "user");
    char *out = NULL;
    assert_int_equal(cd_q_users_set_password(fx->db, id, "h1", 0, &out), CD_EINVAL);
    assert_null(out);
    assert_int_equal(cd_q_users_set_password(fx->db, id + 99, "h1", 5, &out), CD_ENOTFOUND);
    //  Seven changes, keeping five: the five hashes before the current.
    char hash[16];
    for (int i = 1; i <= 7; i++) {
        snprintf(hash, sizeof hash, "h%d", i);
        s_ok(fx->db, cd_q_users_set_password(fx->db, id, hash, 5, &out));
        json_t *u = s_parse(out, true);
        assert_null(json_object_get(u, "password_hash"));
        json_decref(u);
    }
    s_ok(fx->db, cd_q_users_auth(fx->db, id, NULL, &out));
    json_t *u = s_parse(out, true);
    assert_string_equal(s_str(u, "password_hash"), "h7");
    json_decref(u);
    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_users_password_history(fx->db, id, 10, &page));
    assert_int_equal(page.count, 5);
    const char *want[] = {"h6", "h5", "h4", "h3", "h2"};
    for (int i = 0; i < 5; i++) {
        json_t *h = s_page_item(&page, (size_t)i);
        assert_string_equal(s_str(h, "password_hash"), want[i]);
        assert_non_null(s_str(h, "created_at"));
        json_decref(h);
    }
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_users_password_history(fx->db, id, 2, &page));
    assert_int_equal(page.count, 2);
    cd_q_page_fini(&page);
}

static void
test_q_users_login_attempts(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_new_user(fx->db, "ann", "user");
    int64_t retry = -1;
    assert_int_equal(cd_q_logins_lockout(fx->db, "ann", "10.0.0.1", 0, 900, &retry), CD_EINVAL);
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "ann", "10.0.0.1", 5, 900, &retry));
    assert_int_equal(retry, 0);

    //  Four failures and a success: not locked. A fifth failure: ann is
    //  locked from anywhere, and 10.0.0.1 for anyone; others are not.
    for (int i = 0; i < 4; i++) {
        s_ok(fx->db, cd_q_logins_record(fx->db, i % 2 ? "ANN" : "ann", ann, "10.0.0.1", false));
    }
    s_ok(fx->db, cd_q_logins_record(fx->db, "ann", ann, "10.0.0.1", true));
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "ann", "10.0.0.9", 5, 900, &retry));
    assert_int_equal(retry, 0);
    s_ok(fx->db, cd_q_logins_record(fx->db, "ann", ann, "10.0.0.1", false));
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "Ann", "10.0.0.9", 5, 900, &retry));
    assert_true(retry > 890 && retry <= 900);
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "carl", "10.0.0.1", 5, 900, &retry));
    assert_true(retry > 0);
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "carl", "10.0.0.2", 5, 900, &retry));
    assert_int_equal(retry, 0);
    //  Unknown users lock out the same way.
    for (int i = 0; i < 5; i++) {
        s_ok(fx->db, cd_q_logins_record(fx->db, "ghost", CD_Q_NULL, "10.0.0.3", false));
    }
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "ghost", "10.0.0.4", 5, 900, &retry));
    assert_true(retry > 0);
    //  The window passes (backdated rather than slept for).
    s_ok(fx->db, cd_db_exec(fx->db, "UPDATE login_attempts SET ts = ts - interval '16 min'", NULL));
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "ann", "10.0.0.1", 5, 900, &retry));
    assert_int_equal(retry, 0);
    s_sqlstate(fx->db, cd_q_logins_record(fx->db, "x", CD_Q_NULL, "not-an-ip", false), "22P02");

    int64_t n = -1;
    s_ok(fx->db, cd_q_logins_record(fx->db, "ann", ann, "10.0.0.1", true));
    char *cutoff = NULL;
    s_ok(fx->db,
         cd_db_query_text(fx->db, "SELECT cd_ts(now() - interval '1 min')", 0, NULL, &cutoff));
    s_ok(fx->db, cd_q_logins_purge(fx->db, cutoff, &n));
    free(cutoff);
    assert_int_equal(n, 11);
    s_ok(fx->db, cd_q_logins_purge(fx->db, "2000-01-01T00:00:00Z", &n));
    assert_int_equal(n, 0);
    s_ok(fx->db, cd_q_logins_purge(fx->db, "2999-01-01T00:00:00Z", &n));
    assert_int_equal(n, 1);
}

static void
test_q_users_bans(void **state)
{
    fixture_t *fx = *state;
    int64_t admin = s_new_user(fx->db, "admin", "admin");
    char *out = NULL;
    s_ok(fx->db, cd_q_bans_insert(fx->db, "192.0.2.7", "spam", NULL, admin, &out));
    json_t *b = s_parse(out, true);
    int64_t single = s_int(b, "id");
    assert_string_equal(s_str(b, "ip"), "192.0.2.7");
    assert_string_equal(s_str(b, "reason"), "spam");
    assert_int_equal(s_int(b, "created_by"), admin);
    assert_true(s_null(b, "expires_at"));
    json_decref(b);
    s_ok(fx->db, cd_q_bans_insert(fx->db, "10.1.0.0/16", NULL, NULL, CD_Q_NULL, &out));
    b = s_parse(out, true);
    assert_string_equal(s_str(b, "ip"), "10.1.0.0/16");
    assert_string_equal(s_str(b, "reason"), "");
    json_decref(b);
    s_ok(fx->db,
         cd_q_bans_insert(fx->db, "2001:db8::1", "v6", "2000-01-01T00:00:00Z", CD_Q_NULL, &out));
    free(out);
    s_sqlstate(fx->db, cd_q_bans_insert(fx->db, "192.0.2.7", "again", NULL, CD_Q_NULL, &out),
               "23505");
    s_sqlstate(fx->db, cd_q_bans_insert(fx->db, "nope", NULL, NULL, CD_Q_NULL, &out), "22P02");

    bool banned = false;
    s_ok(fx->db, cd_q_bans_check(fx->db, "192.0.2.7", &banned));
    assert_true(banned);
    s_ok(fx->db, cd_q_bans_check(fx->db, "10.1.200.3", &banned));
    assert_true(banned);
    s_ok(fx->db, cd_q_bans_check(fx->db, "10.2.0.1", &banned));
    assert_false(banned);
    s_ok(fx->db, cd_q_bans_check(fx->db, "2001:db8::1", &banned)); // expired
    assert_false(banned);
    s_sqlstate(fx->db, cd_q_bans_check(fx->db, "garbage", &banned), "22P02");
    assert_false(banned);

    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_bans_list(fx->db, NULL, 2, &page));
    assert_int_equal(page.count, 2);
    assert_non_null(page.next_cursor);
    char *cursor = page.next_cursor;
    page.next_cursor = NULL;
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_bans_list(fx->db, cursor, 2, &page));
    free(cursor);
    int64_t ids[4];
    assert_int_equal(s_page_ids(&page, ids, 4), 1);
    assert_int_equal(ids[0], single);
    cd_q_page_fini(&page);

    s_ok(fx->db, cd_q_bans_delete(fx->db, single));
    assert_int_equal(cd_q_bans_delete(fx->db, single), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_bans_check(fx->db, "192.0.2.7", &banned));
    assert_false(banned);
}

typedef struct {
    const char *conninfo;       // database
    pthread_barrier_t *barrier; // start together
    int rc;                     // cd_q_refresh_use's result
} user_t;

static void *
s_use_token(void *arg)
{
    user_t *u = arg;
    cd_db_t *db = NULL;
    int rc = cd_db_connect(u->conninfo, &db, NULL);
    pthread_barrier_wait(u->barrier);
    if (rc == 0) {
        char *out = NULL;
        rc = cd_q_refresh_use(db, HASH_C, &out);
        free(out);
    }
    u->rc = rc;
    cd_db_close(&db);
    return NULL;
}

static void
test_q_users_refresh_tokens(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_new_user(fx->db, "ann", "user");
    char *out = NULL;
    s_ok(fx->db, cd_q_refresh_insert(fx->db, ann, NULL, HASH_A, 3600, "10.0.0.1", &out));
    json_t *t = s_parse(out, true);
    char *family = strdup(s_str(t, "family"));
    assert_int_equal(strlen(family), 36);
    assert_int_equal(s_int(t, "user_id"), ann);
    assert_true(s_null(t, "used_at") && s_null(t, "revoked_at"));
    assert_null(json_object_get(t, "token_hash"));
    json_decref(t);
    s_sqlstate(fx->db, cd_q_refresh_insert(fx->db, ann, NULL, HASH_A, 3600, NULL, &out), "23505");
    s_sqlstate(fx->db, cd_q_refresh_insert(fx->db, ann, NULL, "abcd", 3600, NULL, &out), "23514");
    s_sqlstate(fx->db, cd_q_refresh_insert(fx->db, ann, NULL, "xyz", 3600, NULL, &out), "22023");

    //  Rotation: A is used once, B joins the family.
    s_ok(fx->db, cd_q_refresh_use(fx->db, HASH_A, &out));
    t = s_parse(out, true);
    assert_non_null(s_str(t, "used_at"));
    json_decref(t);
    s_ok(fx->db, cd_q_refresh_insert(fx->db, ann, family, HASH_B, 3600, NULL, &out));
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "family"), family);
    json_decref(t);
    //  Reusing A: dead, and the caller revokes the family.
    assert_int_equal(cd_q_refresh_use(fx->db, HASH_A, &out), CD_ESTATE);
    t = s_parse(out, true);
    assert_string_equal(s_str(t, "family"), family);
    json_decref(t);
    int64_t n = -1;
    s_ok(fx->db, cd_q_refresh_revoke_family(fx->db, family, &n));
    assert_int_equal(n, 2);
    assert_int_equal(cd_q_refresh_use(fx->db, HASH_B, &out), CD_ESTATE);
    free(out);
    assert_int_equal(cd_q_refresh_use(fx->db, HASH_C, &out), CD_ENOTFOUND);
    assert_null(out);
    free(family);

    //  Two concurrent uses of one token: exactly one wins.
    s_ok(fx->db, cd_q_refresh_insert(fx->db, ann, NULL, HASH_C, 3600, NULL, &out));
    free(out);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    user_t users[2] = {{fx->conninfo, &barrier, 0}, {fx->conninfo, &barrier, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, s_use_token, &users[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&barrier);
    assert_true((users[0].rc == 0 && users[1].rc == CD_ESTATE) ||
                (users[1].rc == 0 && users[0].rc == CD_ESTATE));

    //  Revoke everything of a user; purge the expired.
    s_ok(fx->db, cd_q_refresh_revoke_user(fx->db, ann, &n));
    assert_int_equal(n, 1);
    s_ok(fx->db, cd_q_refresh_insert(fx->db, ann, NULL, HASH_D, 60, NULL, &out));
    free(out);
    //  Backdated rather than slept for: it expired a minute ago.
    s_ok(fx->db, cd_db_exec(fx->db,
                            "UPDATE refresh_tokens SET created_at = now() - interval '2 min',"
                            " expires_at = now() - interval '1 min'"
                            " WHERE token_hash = decode('" HASH_D "', 'hex')",
                            NULL));
    assert_int_equal(cd_q_refresh_use(fx->db, HASH_D, &out), CD_ESTATE);
    free(out);
    s_ok(fx->db, cd_q_refresh_purge(fx->db, &n));
    assert_int_equal(n, 1);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM refresh_tokens"), 3);
}

static void
test_q_users_api_keys(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_new_user(fx->db, "ann", "user");
    int64_t bob = s_new_user(fx->db, "bob", "user");
    char *out = NULL;
    s_ok(fx->db, cd_q_api_keys_insert(fx->db, ann, "ci", "cd_aaaa", HASH_A, &out));
    json_t *k = s_parse(out, true);
    int64_t key_a = s_int(k, "id");
    assert_string_equal(s_str(k, "name"), "ci");
    assert_string_equal(s_str(k, "prefix"), "cd_aaaa");
    assert_true(s_null(k, "last_used_at"));
    assert_null(json_object_get(k, "key_hash"));
    json_decref(k);
    s_ok(fx->db, cd_q_api_keys_insert(fx->db, bob, "laptop", "cd_bbbb", HASH_B, &out));
    k = s_parse(out, true);
    int64_t key_b = s_int(k, "id");
    json_decref(k);
    s_sqlstate(fx->db, cd_q_api_keys_insert(fx->db, ann, "dup", "cd_aaaa", HASH_A, &out), "23505");
    s_sqlstate(fx->db, cd_q_api_keys_insert(fx->db, ann, "", "cd_x", HASH_C, &out), "23514");
    s_sqlstate(fx->db, cd_q_api_keys_insert(fx->db, ann + 99, "x", "cd_x", HASH_C, &out), "23503");

    cd_q_page_t page = {0};
    s_ok(fx->db, cd_q_api_keys_list(fx->db, ann, NULL, 0, &page));
    assert_int_equal(page.count, 1);
    cd_q_page_fini(&page);
    s_ok(fx->db, cd_q_api_keys_list(fx->db, CD_Q_NULL, NULL, 1, &page));
    int64_t ids[2];
    assert_int_equal(s_page_ids(&page, ids, 2), 1);
    assert_int_equal(ids[0], key_b);
    assert_non_null(page.next_cursor);
    cd_q_page_fini(&page);

    s_ok(fx->db, cd_q_api_keys_auth(fx->db, HASH_A, &out));
    k = s_parse(out, true);
    assert_int_equal(s_int(k, "key_id"), key_a);
    assert_string_equal(s_str(json_object_get(k, "user"), "username"), "ann");
    json_decref(k);
    assert_int_equal(
        s_count(fx->db, "SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL"), 1);
    assert_int_equal(cd_q_api_keys_auth(fx->db, HASH_C, &out), CD_ENOTFOUND);

    //  A user deletes only its own keys; the key stops working at once.
    assert_int_equal(cd_q_api_keys_delete(fx->db, key_b, ann), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_api_keys_delete(fx->db, key_a, ann));
    assert_int_equal(cd_q_api_keys_auth(fx->db, HASH_A, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_api_keys_delete(fx->db, key_b, CD_Q_NULL));
    assert_int_equal(cd_q_api_keys_delete(fx->db, key_b, CD_Q_NULL), CD_ENOTFOUND);
}

//  --- the writes persist runs ---------------------------------------------------------

static void
test_q_users_login_statement_and_outcomes(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_new_user(fx->db, "ann", "user");
    char *out = NULL;
    //  Failures that guessed count; locked and mfa_required do not.
    for (int i = 0; i < 3; i++) {
        s_ok(fx->db, cd_q_logins_fail(fx->db, "ann", ann, "10.0.0.1", "locked", &out));
        free(out);
        s_ok(fx->db, cd_q_logins_fail(fx->db, "ann", ann, "10.0.0.1", "mfa_required", &out));
        free(out);
    }
    int64_t retry = -1;
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "ann", "10.0.0.9", 2, 60, &retry));
    assert_int_equal(retry, 0);
    s_ok(fx->db, cd_q_logins_fail(fx->db, "ann", ann, "10.0.0.1", "bad_credentials", &out));
    json_t *a = s_parse(out, true);
    assert_string_equal(s_str(a, "outcome"), "bad_credentials");
    json_decref(a);
    s_ok(fx->db, cd_q_logins_fail(fx->db, "ANN", CD_Q_NULL, "10.0.0.2", "mfa_invalid", &out));
    free(out);
    s_ok(fx->db, cd_q_logins_lockout(fx->db, "ann", "10.0.0.9", 2, 60, &retry));
    assert_true(retry >= 1 && retry <= 60);
    s_sqlstate(fx->db, cd_q_logins_fail(fx->db, "ann", ann, "10.0.0.1", "bogus", &out), "23514");

    //  A login without MFA: a new family, the user, an ok attempt.
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_A, 3600, CD_Q_NULL, &out));
    json_t *l = s_parse(out, true);
    assert_true(json_is_true(json_object_get(l, "ok")));
    assert_non_null(s_str(l, "family"));
    assert_string_equal(s_str(json_object_get(l, "user"), "username"), "ann");
    json_decref(l);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM login_attempts WHERE success AND"
                                     " outcome = 'ok' AND ip = '10.0.0.3'"),
                     1);
    //  With a TOTP step: moves forward once; the same step again is a replay
    //  (no token, recorded as such); a later step works.
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_B, 3600, 100, &out));
    l = s_parse(out, true);
    assert_true(json_is_true(json_object_get(l, "ok")));
    json_decref(l);
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_C, 3600, 100, &out));
    l = s_parse(out, true);
    assert_false(json_is_true(json_object_get(l, "ok")));
    assert_true(json_is_null(json_object_get(l, "family")));
    json_decref(l);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM refresh_tokens"), 2);
    assert_int_equal(
        s_count(fx->db, "SELECT count(*) FROM login_attempts WHERE outcome = 'mfa_replay'"), 1);
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_C, 3600, 101, &out));
    free(out);
    assert_int_equal(s_count(fx->db, "SELECT mfa_last_step FROM users WHERE username = 'ann'"),
                     101);
}

static void
test_q_users_refresh_statement_rotates_and_punishes_reuse(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_new_user(fx->db, "ann", "user");
    char *out = NULL;
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_A, 3600, CD_Q_NULL, &out));
    json_t *l = s_parse(out, true);
    char family[64];
    snprintf(family, sizeof family, "%s", s_str(l, "family"));
    json_decref(l);
    //  A -> B: same family, the user; A is used.
    s_ok(fx->db, cd_q_auth_refresh(fx->db, HASH_A, HASH_B, 3600, "10.0.0.3", &out));
    json_t *r = s_parse(out, true);
    assert_true(json_is_true(json_object_get(r, "ok")));
    assert_string_equal(s_str(r, "family"), family);
    assert_string_equal(s_str(json_object_get(r, "user"), "role"), "user");
    json_decref(r);
    //  A again: dead, the family is revoked, and B with it.
    s_ok(fx->db, cd_q_auth_refresh(fx->db, HASH_A, HASH_C, 3600, "10.0.0.3", &out));
    r = s_parse(out, true);
    assert_false(json_is_true(json_object_get(r, "ok")));
    assert_string_equal(s_str(r, "family"), family);
    assert_int_equal(s_int(r, "revoked"), 2);
    json_decref(r);
    s_ok(fx->db, cd_q_auth_refresh(fx->db, HASH_B, HASH_C, 3600, "10.0.0.3", &out));
    r = s_parse(out, true);
    assert_false(json_is_true(json_object_get(r, "ok")));
    json_decref(r);
    assert_int_equal(cd_q_auth_refresh(fx->db, HASH_D, HASH_C, 3600, NULL, &out), CD_ENOTFOUND);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM refresh_tokens WHERE token_hash ="
                                     " decode('" HASH_C "', 'hex')"),
                     0);

    //  Logout revokes a family of the user's only.
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_D, 3600, CD_Q_NULL, &out));
    l = s_parse(out, true);
    snprintf(family, sizeof family, "%s", s_str(l, "family"));
    json_decref(l);
    s_ok(fx->db, cd_q_auth_logout(fx->db, family, ann + 1, &out));
    r = s_parse(out, true);
    assert_int_equal(s_int(r, "revoked"), 0);
    json_decref(r);
    s_ok(fx->db, cd_q_auth_logout(fx->db, family, ann, &out));
    r = s_parse(out, true);
    assert_int_equal(s_int(r, "revoked"), 1);
    json_decref(r);
}

static void
test_q_users_password_mfa_and_user_statements(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_new_user(fx->db, "ann", "user");
    char *out = NULL;
    char fam_a[64], fam_b[64];
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_A, 3600, CD_Q_NULL, &out));
    json_t *l = s_parse(out, true);
    snprintf(fam_a, sizeof fam_a, "%s", s_str(l, "family"));
    json_decref(l);
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_B, 3600, CD_Q_NULL, &out));
    l = s_parse(out, true);
    snprintf(fam_b, sizeof fam_b, "%s", s_str(l, "family"));
    json_decref(l);
    //  A password change keeps the caller's login and ends the other.
    s_ok(fx->db, cd_q_auth_password(fx->db, ann, "$argon2id$new1", 5, fam_a, &out));
    json_t *p = s_parse(out, true);
    json_t *fams = json_object_get(p, "families");
    assert_int_equal(json_array_size(fams), 1);
    assert_string_equal(json_string_value(json_array_get(fams, 0)), fam_b);
    assert_string_equal(s_str(json_object_get(p, "user"), "username"), "ann");
    json_decref(p);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM password_history"), 1);
    assert_int_equal(cd_q_auth_password(fx->db, ann, "h", 0, NULL, &out), CD_EINVAL);
    assert_int_equal(cd_q_auth_password(fx->db, ann + 99, "h", 5, NULL, &out), CD_ENOTFOUND);

    //  MFA: a secret while off; on with that secret and a fresh step only.
    s_ok(fx->db, cd_q_auth_mfa_setup(fx->db, ann, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", &out));
    json_t *u = s_parse(out, true);
    assert_false(json_is_true(json_object_get(u, "mfa_enabled")));
    json_decref(u);
    assert_int_equal(cd_q_auth_mfa_enable(fx->db, ann, "AAAAAAAAAAAAAAAA", 5, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_auth_mfa_enable(fx->db, ann, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 5, &out));
    u = s_parse(out, true);
    assert_true(json_is_true(json_object_get(u, "mfa_enabled")));
    json_decref(u);
    assert_int_equal(cd_q_auth_mfa_enable(fx->db, ann, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 5, &out),
                     CD_ENOTFOUND);
    s_ok(fx->db, cd_q_auth_mfa_setup(fx->db, ann, "AAAAAAAAAAAAAAAA", &out));
    u = s_parse(out, true);
    assert_true(json_is_true(json_object_get(u, "conflict")));
    json_decref(u);
    assert_int_equal(cd_q_auth_mfa_setup(fx->db, ann + 99, "AAAAAAAAAAAAAAAA", &out), CD_ENOTFOUND);

    //  An update that changes the role ends the logins and lists them; a
    //  rename alone does not.
    s_ok(fx->db, cd_q_auth_login(fx->db, "ann", ann, "10.0.0.3", HASH_C, 3600, CD_Q_NULL, &out));
    free(out);
    s_ok(fx->db, cd_q_users_update(fx->db, ann, "{\"username\":\"anna\"}", NULL, 5, &out));
    p = s_parse(out, true);
    assert_int_equal(json_array_size(json_object_get(p, "families")), 0);
    assert_string_equal(s_str(json_object_get(p, "user"), "username"), "anna");
    json_decref(p);
    s_ok(fx->db, cd_q_users_update(fx->db, ann, "{\"role\":\"admin\"}", NULL, 5, &out));
    p = s_parse(out, true);
    assert_int_equal(json_array_size(json_object_get(p, "families")), 2);
    assert_string_equal(s_str(json_object_get(p, "user"), "role"), "admin");
    json_decref(p);
    s_ok(fx->db, cd_q_users_update(fx->db, ann, "{}", "$argon2id$reset", 5, &out));
    free(out);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM password_history"), 2);
    assert_int_equal(cd_q_users_update(fx->db, ann + 99, "{}", NULL, 5, &out), CD_ENOTFOUND);

    //  Deleting lists the live logins and takes keys along.
    s_ok(fx->db, cd_q_auth_login(fx->db, "anna", ann, "10.0.0.3", HASH_D, 3600, CD_Q_NULL, &out));
    free(out);
    s_ok(fx->db, cd_q_api_keys_insert(fx->db, ann, "k", "cdk_x", HASH_A, &out));
    free(out);
    s_ok(fx->db, cd_q_users_remove(fx->db, ann, &out));
    p = s_parse(out, true);
    assert_int_equal(s_int(p, "id"), ann);
    assert_int_equal(json_array_size(json_object_get(p, "families")), 1);
    json_decref(p);
    assert_int_equal(s_count(fx->db, "SELECT count(*) FROM api_keys"), 0);
    assert_int_equal(cd_q_users_remove(fx->db, ann, &out), CD_ENOTFOUND);
}

static void
test_q_users_cache_reads_and_keys(void **state)
{
    fixture_t *fx = *state;
    int64_t ann = s_new_user(fx->db, "ann", "admin");
    int64_t bob = s_new_user(fx->db, "bob", "user");
    char *out = NULL;
    s_ok(fx->db, cd_q_api_keys_insert(fx->db, ann, "k", "cdk_x", HASH_A, &out));
    json_t *k = s_parse(out, true);
    int64_t key = s_int(k, "id");
    json_decref(k);
    s_ok(fx->db, cd_q_api_keys_lookup(fx->db, HASH_A, &out));
    k = s_parse(out, true);
    assert_int_equal(s_int(k, "key_id"), key);
    assert_int_equal(s_int(k, "user_id"), ann);
    assert_string_equal(s_str(k, "role"), "admin");
    json_decref(k);
    //  The lookup writes nothing; touch does.
    assert_int_equal(
        s_count(fx->db, "SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL"), 0);
    s_ok(fx->db, cd_q_api_keys_touch(fx->db, HASH_A, &out));
    free(out);
    assert_int_equal(
        s_count(fx->db, "SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL"), 1);
    assert_int_equal(cd_q_api_keys_lookup(fx->db, HASH_B, &out), CD_ENOTFOUND);
    //  Removing: only the owner's (or anyone's with NULL), with the hash.
    assert_int_equal(cd_q_api_keys_remove(fx->db, key, bob, &out), CD_ENOTFOUND);
    s_ok(fx->db, cd_q_api_keys_remove(fx->db, key, ann, &out));
    k = s_parse(out, true);
    assert_string_equal(s_str(k, "key_hash"), HASH_A);
    json_decref(k);

    //  Live bans, as the HTTP thread reads them.
    s_ok(fx->db, cd_q_bans_live(fx->db, &out));
    assert_string_equal(out, "[]");
    free(out);
    s_ok(fx->db, cd_q_bans_insert(fx->db, "10.0.0.0/8", "r", NULL, ann, &out));
    json_t *b = s_parse(out, true);
    int64_t ban = s_int(b, "id");
    json_decref(b);
    s_ok(fx->db, cd_q_bans_insert(fx->db, "2001:db8::1", NULL, "2000-01-01T00:00:00Z", ann, &out));
    free(out);
    s_ok(fx->db, cd_q_bans_insert(fx->db, "192.0.2.1", NULL, "2999-01-01T00:00:00Z", ann, &out));
    free(out);
    s_ok(fx->db, cd_q_bans_live(fx->db, &out));
    json_t *live = s_parse(out, true);
    assert_int_equal(json_array_size(live), 2);
    assert_string_equal(s_str(json_array_get(live, 0), "ip"), "10.0.0.0/8");
    assert_true(s_null(json_array_get(live, 0), "expires_at_s"));
    assert_string_equal(s_str(json_array_get(live, 1), "ip"), "192.0.2.1/32");
    assert_true(s_int(json_array_get(live, 1), "expires_at_s") > 32503680000 - 86400 * 366);
    json_decref(live);
    s_ok(fx->db, cd_q_bans_remove(fx->db, ban, &out));
    free(out);
    assert_int_equal(cd_q_bans_remove(fx->db, ban, &out), CD_ENOTFOUND);

    //  Per-installation keys: the first candidate wins, for everyone.
    s_ok(fx->db, cd_q_auth_key(fx->db, "jwt", HASH_A, &out));
    assert_string_equal(out, HASH_A);
    free(out);
    s_ok(fx->db, cd_q_auth_key(fx->db, "jwt", HASH_B, &out));
    assert_string_equal(out, HASH_A);
    free(out);
    s_sqlstate(fx->db, cd_q_auth_key(fx->db, "other", HASH_B, &out), "23514");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_q_users_crud, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_password_history, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_login_attempts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_bans, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_refresh_tokens, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_api_keys, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_login_statement_and_outcomes, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_refresh_statement_rotates_and_punishes_reuse,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_password_mfa_and_user_statements, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_q_users_cache_reads_and_keys, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
