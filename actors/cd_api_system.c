/*  cd_api_system: configuration and statistics for the REST API (API.md
    "Configuration and statistics").

    Config is a set of keys with JSON values (table config). GET answers
    {key: value, ...}; PATCH (admin) takes {key: value, ...} and applies
    it as a one-level JSON merge patch (RFC 7396): each key is set to its
    value, and a key whose value is null is deleted (deleting a key that
    does not exist is no error). Key names are 1-100 characters of
    a-z 0-9 _ . - (400 naming the key otherwise). The answer, sent after
    the commit, is the whole config.

    Stats: GET /stats reads the counters from the database now (tasks and
    agents by status, pending HITL requests, enabled schedules, events so
    far; db/cd_q_system.h) and adds what this node knows: its id and
    uptime. GET /stats/history?since= pages through the snapshots that
    the stats actor (actors/cd_stats) writes once a minute, oldest first.
    Both are cheap: indexed counts, no scan of the event log. */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_q_system.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_KEY_MAX 100 //  longest config key

static int
s_config_get(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *config = NULL;
    int rc = cd_q_config_get_all(db, &config);
    if (rc == 0) {
        cd_api_reply_text(req, 200, config, NULL);
    } else {
        cd_api_fail(req, rc, db);
    }
    free(config);
    return 0;
}

static bool
s_key_ok(const char *key)
{
    size_t len = strlen(key);
    if (len < 1 || len > S_KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

static void
s_config_patched(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 500, "internal", "the write returned no config", NULL);
    } else {
        cd_api_reply_text(req, 200, res->value, NULL);
    }
}

static int
s_config_patch(cd_api_req_t *req)
{
    const char *key;
    const json_t *value;
    json_object_foreach(cd_api_body(req), key, value)
    {
        if (!s_key_ok(key)) {
            //  The key may be long: name it shortened, on a character
            //  boundary (the error body must stay valid UTF-8).
            char field[65];
            size_t len = strlen(key);
            if (len >= sizeof field) {
                len = sizeof field - 1;
                while (len > 0 && ((unsigned char)key[len] & 0xc0) == 0x80) {
                    len--;
                }
            }
            memcpy(field, key, len);
            field[len] = '\0';
            cd_api_invalid(req, field, "a config key is 1-100 characters of a-z 0-9 _ . -");
            return 0;
        }
    }
    //  The body as received: values are stored as the client spelled them.
    const char *params[] = {cd_api_body_text(req)};
    int rc = cd_api_write(req, "config.patch", 1, params, s_config_patched, NULL);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    return 0;
}

static int
s_stats_get(cd_api_req_t *req)
{
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *text = NULL;
    int rc = cd_q_stats_current(db, &text);
    if (rc != 0) {
        cd_api_fail(req, rc, db);
        free(text);
        return 0;
    }
    json_t *stats = json_loads(text, 0, NULL);
    free(text);
    if (!stats) {
        cd_api_error(req, 500, "internal", "the counters are not JSON", NULL);
        return 0;
    }
    const cd_api_args_t *args = cd_api_args(req);
    json_object_set_new(stats, "node_id", json_string(args->node_id ? args->node_id : ""));
    json_object_set_new(stats, "uptime_s",
                        args->started_us > 0
                            ? json_real((double)(zclock_usecs() - args->started_us) / 1e6)
                            : json_null());
    cd_api_reply_json(req, 200, stats, NULL);
    return 0;
}

static int
s_stats_history(cd_api_req_t *req)
{
    int limit = 0;
    const char *cursor = NULL, *since = NULL;
    if (!cd_api_page_args(req, &limit, &cursor) || !cd_api_query_time(req, "since", &since)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_stats_list(db, since, cursor, limit, &page);
    const cd_db_error_t *err = rc == CD_EDB ? cd_db_error(db) : NULL;
    if (rc == 0) {
        cd_api_reply_page(req, &page);
    } else if (err && strncmp(err->sqlstate, "22", 2) == 0) {
        //  A time that looked right but is not one (2026-13-45): only
        //  `since` can be it, the cursor was checked to be digits.
        cd_api_invalid(req, "since", "must be an RFC 3339 timestamp");
    } else {
        cd_api_fail(req, rc, db);
    }
    cd_q_page_fini(&page);
    return 0;
}

static const cd_api_op_t s_ops[] = {
    {"config.get", s_config_get},
    {"config.patch", s_config_patch},
    {"stats.get", s_stats_get},
    {"stats.history", s_stats_history},
};

const cd_api_module_t cd__api_system_module = {
    "system", s_ops, sizeof s_ops / sizeof s_ops[0], cd_q_system_writes, &cd_q_system_n_writes,
};
