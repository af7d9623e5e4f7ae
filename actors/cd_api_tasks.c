/*  cd_api_tasks: tasks, their history and archived tasks for the REST API
    (API.md "Tasks" and "Semantics that clients rely on").

    Reads run on the api actor's connection (db/cd_q_tasks); every write is
    one persist statement (cd_q_tasks_writes) that also writes the event
    and the history row the change calls for, answered after the commit.

    The create path is the hot one (benchmarked with h2load), so it does
    the least it can: the body arrives parsed and checked against the
    route's schema; the few rules a schema cannot state (characters, the
    shape of assignee and budget) are checked here on the parsed body; the
    body text goes to persist as it came. Whether the named project,
    agent, role or team exists is decided inside the write statement (an
    index probe each), which answers {"invalid": field, "reason": ...}
    instead of a row when one does not: a friendly 400 naming the field,
    with no read before the write and no failed statement in persist's
    batch. The answer is sent as the text the statement produced; only its
    leading id is read, for Location. Concurrent creates are merged into
    one statement (see "create" below): the statement's fixed cost, not
    the rows, is what bounds the write path.

    Decisions where API.md is silent:
    - an assignee that does not exist is 400 validation_failed naming
      `assignee` ("no such agent" / "role" / "team"); a role exists when
      the catalog has it or some agent was started with it (agents.role is
      a name, not a key). An agent deleted after the create leaves its
      tasks waiting (there is no foreign key, on purpose).
    - a project that does not exist (or, for a `user`, is not theirs) is
      400 naming `project_id`.
    - PATCH, retry and DELETE write no bus event: API.md lists no event
      type for them. Retry and cancel write history (kinds retry,
      cancelled).
    - cancel answers once the status change is committed; telling a
      running agent to stop is the orchestrator's job, and this module
      does not call it: the task.cancelled event, committed in the same
      statement and naming the agent holding the task, is how the
      orchestrator (once it exists) learns of the cancel.
    - DELETE archives a task in any status; its history stays readable
      through /history, which is 404 only for an id that is neither a task
      nor an archived task.
    - /history pages like every list, but its limit defaults to 1000.

    Interface: cd__api_tasks_module. */
#include "api_internal.h"

#include "cd_error.h"
#include "cd_q_tasks.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BATCH_MAX 1000     //  tasks per batch (API.md)
#define S_HISTORY_LIMIT 1000 //  /history's default page
#define S_TITLE_MAX 500      //  characters, as the tasks table checks
#define S_DESCRIPTION_MAX 100000
#define S_NAME_MAX 64 //  agent and role names

//  --- checking a task body ---------------------------------------------------------

typedef enum { S_STRING, S_INTEGER, S_OBJECT, S_ANY } s_type_t;

typedef struct {
    const char *name; //  key
    s_type_t type;    //  expected type (null is absent for every optional field)
    bool required;    //  must be present, and not null
    int64_t min, max; //  integers: the range; strings: length in characters
} s_field_t;

static const s_field_t s_task_fields[] = {
    {"title", S_STRING, true, 1, S_TITLE_MAX},
    {"description", S_STRING, false, 0, S_DESCRIPTION_MAX},
    {"priority", S_INTEGER, false, 0, 9},
    {"project_id", S_INTEGER, false, 1, INT64_MAX},
    {"assignee", S_OBJECT, true, 0, 0},
    {"input", S_ANY, false, 0, 0},
    {"max_attempts", S_INTEGER, false, 1, 100},
    {"timeout_ms", S_INTEGER, false, 1, 604800000},
    {"budget", S_OBJECT, false, 0, 0},
};
#define S_N_TASK_FIELDS (sizeof s_task_fields / sizeof s_task_fields[0])

//  What was wrong with a body: the field (with its prefix, "tasks[3].")
//  and why.
typedef struct {
    char field[160];
    const char *reason;
} s_fault_t;

//  Records a fault and returns false. A name from the request (an unknown
//  key) is cut at a character boundary to fit.
static bool
s_fault(s_fault_t *fault, const char *prefix, const char *name, const char *reason)
{
    size_t used = (size_t)snprintf(fault->field, sizeof fault->field, "%s", prefix);
    size_t room = sizeof fault->field - 1 - used;
    size_t len = strlen(name);
    if (len > room) {
        len = room;
        while (len > 0 && ((unsigned char)name[len] & 0xC0) == 0x80) {
            len--;
        }
    }
    memcpy(fault->field + used, name, len);
    fault->field[used + len] = '\0';
    fault->reason = reason;
    return false;
}

//  Characters of a UTF-8 string (jansson has checked the encoding).
static size_t
s_chars(const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        n += (*p & 0xC0) != 0x80;
    }
    return n;
}

static bool
s_agent_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len < 1 || len > S_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

//  Exactly one of {"agent": name}, {"role": name}, {"team": id}, with the
//  rules the tasks table checks (cd_assignee_valid).
static bool
s_check_assignee(const json_t *a, const char *prefix, s_fault_t *fault)
{
    static const char shape[] =
        "must be exactly one of {\"agent\": name}, {\"role\": name}, {\"team\": id}";
    if (json_object_size(a) != 1) {
        return s_fault(fault, prefix, "assignee", shape);
    }
    const json_t *v;
    if ((v = json_object_get(a, "agent")) != NULL) {
        if (!json_is_string(v) || !s_agent_name_ok(json_string_value(v))) {
            return s_fault(fault, prefix, "assignee", "agent must be a name of 1-64 [a-z0-9_-]");
        }
    } else if ((v = json_object_get(a, "role")) != NULL) {
        size_t n = json_is_string(v) ? s_chars(json_string_value(v)) : 0;
        if (n < 1 || n > S_NAME_MAX) {
            return s_fault(fault, prefix, "assignee", "role must be a name of 1-64 characters");
        }
    } else if ((v = json_object_get(a, "team")) != NULL) {
        //  The table takes up to 18 digits.
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 999999999999999999LL) {
            return s_fault(fault, prefix, "assignee", "team must be a team id");
        }
    } else {
        return s_fault(fault, prefix, "assignee", shape);
    }
    return true;
}

static bool
s_check_budget(const json_t *b, const char *prefix, s_fault_t *fault)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)b, key, v)
    {
        if (streq(key, "max_tokens")) {
            if (!json_is_integer(v) || json_integer_value(v) < 1) {
                return s_fault(fault, prefix, "budget", "max_tokens must be an integer >= 1");
            }
        } else if (streq(key, "max_cost_usd")) {
            if (!json_is_number(v) || json_number_value(v) < 0) {
                return s_fault(fault, prefix, "budget", "max_cost_usd must be a number >= 0");
            }
        } else {
            return s_fault(fault, prefix, "budget", "only max_tokens and max_cost_usd are allowed");
        }
    }
    return true;
}

//  Checks one create body (an element of a batch has the prefix
//  "tasks[i]."). The route's schema has checked a single create already;
//  a batch element only gets checked here, so this checks everything.
static bool
s_check_task(const json_t *task, const char *prefix, s_fault_t *fault)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)task, key, v)
    {
        const s_field_t *f = NULL;
        for (size_t i = 0; i < S_N_TASK_FIELDS && !f; i++) {
            if (streq(s_task_fields[i].name, key)) {
                f = &s_task_fields[i];
            }
        }
        if (!f) {
            return s_fault(fault, prefix, key, "unknown field");
        }
        if (json_is_null(v)) {
            if (f->required) {
                return s_fault(fault, prefix, key, "must not be null");
            }
            continue;
        }
        switch (f->type) {
        case S_STRING: {
            if (!json_is_string(v)) {
                return s_fault(fault, prefix, key, "must be a string");
            }
            size_t n = s_chars(json_string_value(v));
            if ((int64_t)n < f->min || (int64_t)n > f->max) {
                return s_fault(fault, prefix, key, "length out of range");
            }
            break;
        }
        case S_INTEGER:
            if (!json_is_integer(v)) {
                return s_fault(fault, prefix, key, "must be an integer");
            }
            if (json_integer_value(v) < f->min || json_integer_value(v) > f->max) {
                return s_fault(fault, prefix, key, "out of range");
            }
            break;
        case S_OBJECT:
            if (!json_is_object(v)) {
                return s_fault(fault, prefix, key, "must be an object");
            }
            if (streq(key, "assignee") && !s_check_assignee(v, prefix, fault)) {
                return false;
            }
            if (streq(key, "budget") && !s_check_budget(v, prefix, fault)) {
                return false;
            }
            break;
        case S_ANY:
            break;
        }
    }
    for (size_t i = 0; i < S_N_TASK_FIELDS; i++) {
        if (s_task_fields[i].required && !json_object_get(task, s_task_fields[i].name)) {
            return s_fault(fault, prefix, s_task_fields[i].name, "required");
        }
    }
    return true;
}

//  --- shared shapes -------------------------------------------------------------------

//  The caller's id as a parameter (created_by, archived_by), or NULL.
static const char *
s_user(cd_api_req_t *req, char buf[24])
{
    if (cd_api_user(req) <= 0) {
        return NULL;
    }
    snprintf(buf, 24, "%" PRId64, cd_api_user(req));
    return buf;
}

//  The owner scope: a `user` reaches only its own tasks and projects;
//  admins and (until authentication exists) anonymous callers reach all.
static int64_t
s_scope(cd_api_req_t *req)
{
    return cd_api_user(req) > 0 && !cd_api_admin(req) ? cd_api_user(req) : CD_Q_NULL;
}

static const char *
s_scope_param(cd_api_req_t *req, char buf[24])
{
    int64_t scope = s_scope(req);
    if (scope == CD_Q_NULL) {
        return NULL;
    }
    snprintf(buf, 24, "%" PRId64, scope);
    return buf;
}

//  True if a row (JSON text with a created_by member) is visible to the
//  caller. Parses only for a scoped caller.
static bool
s_visible(cd_api_req_t *req, const char *row)
{
    int64_t scope = s_scope(req);
    if (scope == CD_Q_NULL) {
        return true;
    }
    json_t *obj = json_loads(row, 0, NULL);
    json_t *by = json_object_get(obj, "created_by");
    bool mine = json_is_integer(by) && json_integer_value(by) == scope;
    json_decref(obj);
    return mine;
}

static bool
s_starts(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

//  The id at the head of a task's JSON text as PostgreSQL's json_build_object
//  writes it ({"id" : 42, ...}), or 0.
static int64_t
s_leading_id(const char *json)
{
    static const char head[] = "{\"id\" : ";
    if (!s_starts(json, head)) {
        return 0;
    }
    char *end = NULL;
    long long id = strtoll(json + sizeof head - 1, &end, 10);
    return end && *end == ',' ? (int64_t)id : 0;
}

//  Answers a write statement's {"invalid": field, "reason": why}.
static void
s_reply_invalid(cd_api_req_t *req, const char *answer)
{
    json_t *obj = json_loads(answer, 0, NULL);
    const char *field = json_string_value(json_object_get(obj, "invalid"));
    const char *reason = json_string_value(json_object_get(obj, "reason"));
    cd_api_invalid(req, field ? field : "?", reason ? reason : "does not exist");
    json_decref(obj);
}

//  Answers a failed create or batch: persist refuses a value over its limit
//  with SQLSTATE 54000, which for a body is 413.
static void
s_create_failed(cd_api_req_t *req, const cd_api_result_t *res)
{
    if (res->rc == CD_EDB && streq(res->sqlstate, "54000")) {
        cd_api_error(req, 413, "payload_too_large", "the request is too large to write at once",
                     NULL);
    } else {
        cd_api_write_failed(req, res);
    }
}

//  Sends a write; on a failure to send, answers it.
static void
s_write(cd_api_req_t *req, const char *stmt, int nparams, const char *const *params,
        cd_api_write_fn *fn)
{
    int rc = cd_api_write(req, stmt, nparams, params, fn, NULL);
    if (rc != 0) {
        cd_api_fail(req, rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
}

//  --- create ----------------------------------------------------------------------------
//
//  Creates are merged: each actor keeps at most S_CREATES_IN_FLIGHT create
//  writes out at a time; creates that arrive meanwhile wait, and go out
//  together as one tasks.create_many write when one comes back. An idle
//  actor sends a create at once (a merge of one), so merging costs no
//  latency when there is nothing to merge; under load it turns N
//  statements into one, and the statement's fixed cost (starting the
//  executor on its CTEs, preparing the CHECKs of three tables) is what
//  bounds the write path: measured with pgbench, a create costs ~7x less
//  inside a merge of 100. Two writes out per actor (one being committed,
//  one queued in persist) measured best at 64 requests in flight with
//  h2load: one starves persist's pipeline, four split the merges thinner
//  (faster only at 256 in flight), eight thinner still.
//  Each request keeps its own answer: the statement answers per element,
//  and a merge that fails as a whole (a value PostgreSQL refuses) is sent
//  again one request per write, so one bad body fails alone.

#define S_CREATES_IN_FLIGHT 2      //  create writes out per actor
#define S_MERGE_MAX 500            //  creates per merged write
#define S_MERGE_BYTES (512 * 1024) //  their bodies' bytes (persist takes 1 MiB a value)

typedef struct s_creates s_creates_t;

//  One create write out: reqs[0] carries it (parked in the core until
//  persist answers); the others are held here.
typedef struct {
    s_creates_t *creates; //  the actor's create state
    size_t n;             //  requests
    cd_api_req_t **reqs;  //  in the order of the statement's elements
    void *handle;         //  its item in creates->out
} s_merge_t;

//  An actor's creates (its cd_api_state "tasks.create").
struct s_creates {
    zlistx_t *waiting; //  cd_api_req_t *, held, oldest first
    zlistx_t *out;     //  s_merge_t *, writes out
};

static void
s_merge_free(s_merge_t **merge_p)
{
    s_merge_t *merge = *merge_p;
    free(merge->reqs);
    free(merge);
    *merge_p = NULL;
}

//  The actor stops: free the requests held here (the carriers of writes
//  out are parked, and the core frees them).
static void
s_creates_fini(void *value)
{
    s_creates_t *creates = (s_creates_t *)value;
    for (cd_api_req_t *req = (cd_api_req_t *)zlistx_first(creates->waiting); req;
         req = (cd_api_req_t *)zlistx_next(creates->waiting)) {
        cd_api_drop(&req);
    }
    for (s_merge_t *merge = (s_merge_t *)zlistx_first(creates->out); merge;
         merge = (s_merge_t *)zlistx_next(creates->out)) {
        for (size_t i = 1; i < merge->n; i++) {
            cd_api_drop(&merge->reqs[i]);
        }
        s_merge_free(&merge);
    }
    zlistx_destroy(&creates->waiting);
    zlistx_destroy(&creates->out);
    free(creates);
}

static s_creates_t *
s_creates(cd_api_req_t *req)
{
    void **slot = cd_api_state(req, "tasks.create", s_creates_fini);
    if (!*slot) {
        s_creates_t *creates = (s_creates_t *)zmalloc(sizeof *creates);
        creates->waiting = zlistx_new();
        creates->out = zlistx_new();
        *slot = creates;
    }
    return (s_creates_t *)*slot;
}

//  Answers one create from its element of the statement's answer (text,
//  NUL-terminated).
static void
s_answer_create(cd_api_req_t *req, const char *answer)
{
    if (s_starts(answer, "{\"invalid\"")) {
        s_reply_invalid(req, answer);
        return;
    }
    int64_t id = s_leading_id(answer);
    if (id <= 0) {
        cd_api_error(req, 500, "internal", "the write returned no task", NULL);
        return;
    }
    char location[64];
    snprintf(location, sizeof location, "/api/v1/tasks/%" PRId64, id);
    cd_api_reply_text(req, 201, answer, location);
}

//  Splits the top-level elements of a JSON array text in place: each
//  element is NUL-terminated and its start stored in elems. Returns how
//  many, or -1 if text is not an array of at most max elements.
static int
s_split(char *text, char **elems, size_t max)
{
    char *p = text;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
        p++;
    }
    if (*p++ != '[') {
        return -1;
    }
    size_t n = 0;
    while (true) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
            p++;
        }
        if (*p == ']' && n == 0) {
            return 0;
        }
        if (n == max || !*p) {
            return -1;
        }
        elems[n++] = p;
        int depth = 0;
        bool in_string = false;
        for (; *p; p++) {
            if (in_string) {
                if (*p == '\\' && p[1]) {
                    p++;
                } else if (*p == '"') {
                    in_string = false;
                }
            } else if (*p == '"') {
                in_string = true;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if ((*p == '}' || *p == ']') && depth > 0) {
                depth--;
            } else if (depth == 0 && (*p == ',' || *p == ']')) {
                break;
            }
        }
        if (!*p) {
            return -1;
        }
        char end = *p;
        char *tail = p;
        while (tail > elems[n - 1] &&
               (tail[-1] == ' ' || tail[-1] == '\n' || tail[-1] == '\t' || tail[-1] == '\r')) {
            tail--;
        }
        *tail = '\0';
        p++;
        if (end == ']') {
            return (int)n;
        }
    }
}

static void s_creates_flush(s_creates_t *creates);
static bool s_merge_send(s_creates_t *creates, s_merge_t *merge);

//  A merged write came back: answer each of its requests.
static void
s_merged(cd_api_req_t *carrier, const cd_api_result_t *res, void *arg)
{
    s_merge_t *merge = (s_merge_t *)arg;
    s_creates_t *creates = merge->creates;
    assert(merge->reqs[0] == carrier);
    zlistx_delete(creates->out, merge->handle);
    if (res->rc == 0 && res->value) {
        char *text = strdup(res->value);
        char **elems = (char **)zmalloc(merge->n * sizeof *elems);
        int n = s_split(text, elems, merge->n);
        for (size_t i = 0; i < merge->n; i++) {
            if (n == (int)merge->n) {
                s_answer_create(merge->reqs[i], elems[i]);
            } else {
                cd_api_error(merge->reqs[i], 500, "internal", "the write's answer is malformed",
                             NULL);
            }
        }
        free(elems);
        free(text);
    } else if (res->rc == CD_EDB && merge->n > 1) {
        //  Some body the checks here let through was refused, and with it
        //  the whole merge: every request again on its own.
        for (size_t i = 0; i < merge->n; i++) {
            s_merge_t *alone = (s_merge_t *)zmalloc(sizeof *alone);
            alone->creates = creates;
            alone->n = 1;
            alone->reqs = (cd_api_req_t **)zmalloc(sizeof *alone->reqs);
            alone->reqs[0] = merge->reqs[i];
            s_merge_send(creates, alone);
        }
    } else {
        for (size_t i = 0; i < merge->n; i++) {
            if (res->rc == 0) {
                cd_api_error(merge->reqs[i], 500, "internal", "the write returned no tasks", NULL);
            } else {
                s_create_failed(merge->reqs[i], res);
            }
        }
    }
    s_merge_free(&merge);
    s_creates_flush(creates);
}

//  Sends a merge as one tasks.create_many write. Returns true if it went
//  out; otherwise every request in it has been answered and it is freed.
static bool
s_merge_send(s_creates_t *creates, s_merge_t *merge)
{
    size_t size = 3;
    for (size_t i = 0; i < merge->n; i++) {
        size += strlen(cd_api_body_text(merge->reqs[i])) + 64;
    }
    char *json = (char *)malloc(size);
    char *p = json;
    *p++ = '[';
    for (size_t i = 0; i < merge->n; i++) {
        cd_api_req_t *req = merge->reqs[i];
        int64_t user = cd_api_user(req), scope = s_scope(req);
        char u[24] = "null", sc[24] = "null";
        if (user > 0) {
            snprintf(u, sizeof u, "%" PRId64, user);
        }
        if (scope != CD_Q_NULL) {
            snprintf(sc, sizeof sc, "%" PRId64, scope);
        }
        p += sprintf(p, "%s{\"u\":%s,\"s\":%s,\"b\":", i ? "," : "", u, sc);
        const char *body = cd_api_body_text(req);
        size_t len = strlen(body);
        memcpy(p, body, len);
        p += len;
        *p++ = '}';
    }
    *p++ = ']';
    *p = '\0';
    const char *params[] = {json};
    merge->handle = zlistx_add_end(creates->out, merge);
    int rc = cd_api_write(merge->reqs[0], "tasks.create_many", 1, params, s_merged, merge);
    free(json);
    if (rc == 0) {
        return true;
    }
    zlistx_delete(creates->out, merge->handle);
    for (size_t i = 0; i < merge->n; i++) {
        cd_api_fail(merge->reqs[i], rc == CD_EBUSY ? CD_ECONN : rc, NULL);
    }
    s_merge_free(&merge);
    return false;
}

//  Sends what waits, as merges, while fewer than S_CREATES_IN_FLIGHT
//  writes are out.
static void
s_creates_flush(s_creates_t *creates)
{
    while (zlistx_size(creates->waiting) > 0 && zlistx_size(creates->out) < S_CREATES_IN_FLIGHT) {
        size_t n = zlistx_size(creates->waiting);
        if (n > S_MERGE_MAX) {
            n = S_MERGE_MAX;
        }
        s_merge_t *merge = (s_merge_t *)zmalloc(sizeof *merge);
        merge->creates = creates;
        merge->reqs = (cd_api_req_t **)zmalloc(n * sizeof *merge->reqs);
        size_t bytes = 0;
        while (merge->n < n) {
            cd_api_req_t *req = (cd_api_req_t *)zlistx_first(creates->waiting);
            size_t len = strlen(cd_api_body_text(req));
            if (merge->n > 0 && bytes + len > S_MERGE_BYTES) {
                break;
            }
            bytes += len;
            merge->reqs[merge->n++] = req;
            zlistx_delete(creates->waiting, zlistx_cursor(creates->waiting));
        }
        s_merge_send(creates, merge);
    }
}

static int
s_create(cd_api_req_t *req)
{
    s_fault_t fault = {.reason = NULL};
    if (!s_check_task(cd_api_body(req), "", &fault)) {
        cd_api_invalid(req, fault.field, fault.reason);
        return 0;
    }
    s_creates_t *creates = s_creates(req);
    zlistx_add_end(creates->waiting, req);
    s_creates_flush(creates);
    return 0;
}

static void
s_batch_created(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    (void)arg;
    if (res->rc != 0) {
        s_create_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 500, "internal", "the write returned no tasks", NULL);
    } else if (s_starts(res->value, "{\"invalid\"")) {
        s_reply_invalid(req, res->value);
    } else {
        size_t len = strlen(res->value);
        char *text = (char *)malloc(len + 16);
        memcpy(text, "{\"items\":", 9);
        memcpy(text + 9, res->value, len);
        memcpy(text + 9 + len, "}", 2);
        cd_api_reply_text(req, 201, text, NULL);
        free(text);
    }
}

static int
s_batch(cd_api_req_t *req)
{
    const json_t *tasks = json_object_get(cd_api_body(req), "tasks");
    size_t n = json_array_size(tasks);
    if (n < 1 || n > S_BATCH_MAX) {
        cd_api_invalid(req, "tasks", "must hold 1 to 1000 tasks");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "tasks[%zu].", i);
        const json_t *task = json_array_get(tasks, i);
        s_fault_t fault = {.reason = NULL};
        if (!json_is_object(task)) {
            prefix[strlen(prefix) - 1] = '\0';
            cd_api_invalid(req, prefix, "must be an object");
            return 0;
        }
        if (!s_check_task(task, prefix, &fault)) {
            cd_api_invalid(req, fault.field, fault.reason);
            return 0;
        }
    }
    //  The statement takes the body as it came ({"tasks": [...]}).
    char ub[24], sb[24];
    const char *params[] = {cd_api_body_text(req), s_user(req, ub), s_scope_param(req, sb)};
    s_write(req, "tasks.create_batch", 3, params, s_batch_created);
    return 0;
}

//  --- reads ------------------------------------------------------------------------------

static int
s_list(cd_api_req_t *req)
{
    static const char *const statuses[] = {
        "todo", "in_progress", "waiting_human", "done", "failed", "cancelled", NULL};
    cd_q_task_filter_t f = CD_Q_TASK_FILTER_ALL;
    if (!cd_api_query_enum(req, "status", statuses, &f.status) ||
        !cd_api_query_int(req, "project_id", 1, INT64_MAX, CD_Q_NULL, &f.project_id) ||
        !cd_api_query_int(req, "priority_min", 0, 9, CD_Q_NULL, &f.priority_min) ||
        !cd_api_query_time(req, "since", &f.since) || !cd_api_page_args(req, &f.limit, &f.cursor)) {
        return 0;
    }
    f.agent = cd_api_query(req, "agent");
    if (f.agent && !s_agent_name_ok(f.agent)) {
        cd_api_invalid(req, "agent", "must be an agent name (1-64 of [a-z0-9_-])");
        return 0;
    }
    f.created_by = s_scope(req);
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_tasks_list(db, &f, &page);
    if (rc == 0) {
        cd_api_reply_page(req, &page);
    } else if (rc == CD_EDB && f.since && cd_db_error(db) &&
               strncmp(cd_db_error(db)->sqlstate, "22", 2) == 0) {
        //  Everything else was checked above: PostgreSQL refused the time.
        cd_api_invalid(req, "since", "must be an RFC 3339 timestamp");
    } else {
        cd_api_fail(req, rc, db);
    }
    cd_q_page_fini(&page);
    return 0;
}

//  Answers a get: fn(db, id) and the caller's scope.
typedef int(s_get_fn)(cd_db_t *db, int64_t id, char **out);

static int
s_get_by(cd_api_req_t *req, s_get_fn *fn)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    char *row = NULL;
    int rc = fn(db, id, &row);
    if (rc == 0 && s_visible(req, row)) {
        cd_api_reply_text(req, 200, row, NULL);
    } else {
        cd_api_fail(req, rc == 0 ? CD_ENOTFOUND : rc, db);
    }
    free(row);
    return 0;
}

static int
s_get(cd_api_req_t *req)
{
    return s_get_by(req, cd_q_tasks_get);
}

static int
s_archived_get(cd_api_req_t *req)
{
    return s_get_by(req, cd_q_tasks_archived_get);
}

static int
s_archived_list(cd_api_req_t *req)
{
    int64_t project = CD_Q_NULL;
    int limit = 0;
    const char *cursor = NULL;
    if (!cd_api_query_int(req, "project_id", 1, INT64_MAX, CD_Q_NULL, &project) ||
        !cd_api_page_args(req, &limit, &cursor)) {
        return 0;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_tasks_archived_list(db, project, s_scope(req), cursor, limit, &page);
    cd_api_reply_read_page(req, rc, db, &page);
    return 0;
}

//  True if task id is known (live or archived) and visible to the caller;
//  otherwise answers (404, or the failure) and returns false.
static bool
s_task_known(cd_api_req_t *req, cd_db_t *db, int64_t id)
{
    char *row = NULL;
    int rc = cd_q_tasks_get(db, id, &row);
    if (rc == CD_ENOTFOUND) {
        rc = cd_q_tasks_archived_get(db, id, &row);
    }
    bool known = rc == 0 && s_visible(req, row);
    free(row);
    if (!known) {
        cd_api_fail(req, rc == 0 ? CD_ENOTFOUND : rc, db);
    }
    return known;
}

static int
s_history(cd_api_req_t *req)
{
    int64_t id = 0;
    int limit = 0;
    const char *cursor = NULL;
    if (!cd_api_param_id(req, "id", &id) || !cd_api_page_args(req, &limit, &cursor)) {
        return 0;
    }
    if (!cd_api_query(req, "limit")) {
        limit = S_HISTORY_LIMIT;
    }
    cd_db_t *db = cd_api_read_db(req);
    if (!db) {
        return 0;
    }
    //  A scoped caller must own the task; anyone else learns it is unknown
    //  only from an empty first page (every task has a created row, save
    //  those written by hand).
    if (s_scope(req) != CD_Q_NULL && !s_task_known(req, db, id)) {
        return 0;
    }
    cd_q_page_t page = {0};
    int rc = cd_q_task_events_list(db, id, cursor, limit, &page);
    if (rc == CD_EDB && cursor && cd_db_error(db) &&
        strncmp(cd_db_error(db)->sqlstate, "22", 2) == 0) {
        //  A cursor of digits beyond any seq.
        cd_api_invalid(req, "cursor", "not a cursor this API gave out");
    } else if (rc != 0) {
        cd_api_fail(req, rc, db);
    } else if (page.count > 0 || cursor || s_scope(req) != CD_Q_NULL || s_task_known(req, db, id)) {
        cd_api_reply_page(req, &page);
    }
    cd_q_page_fini(&page);
    return 0;
}

//  --- changes ---------------------------------------------------------------------------

//  After a compare-and-set write: 200 with the task, 409 when its status
//  does not allow the change, 404 when there is no such task (of the
//  caller's).
static void
s_changed(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    (void)arg;
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such task", NULL);
    } else if (s_starts(res->value, "{\"conflict\"")) {
        json_t *obj = json_loads(res->value, 0, NULL);
        const char *status = json_string_value(json_object_get(obj, "status"));
        char message[96];
        snprintf(message, sizeof message, "the task is %s, which does not allow this",
                 status ? status : "in another status");
        cd_api_error(req, 409, "conflict", message,
                     json_pack("{s:s}", "status", status ? status : ""));
        json_decref(obj);
    } else {
        cd_api_reply_text(req, 200, res->value, NULL);
    }
}

//  Sends stmt with ($1 = path id, [body,] owner scope).
static int
s_change(cd_api_req_t *req, const char *stmt, bool with_body)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idb[24], sb[24];
    snprintf(idb, sizeof idb, "%" PRId64, id);
    if (with_body) {
        const char *params[] = {idb, cd_api_body_text(req), s_scope_param(req, sb)};
        s_write(req, stmt, 3, params, s_changed);
    } else {
        const char *params[] = {idb, s_scope_param(req, sb)};
        s_write(req, stmt, 2, params, s_changed);
    }
    return 0;
}

static int
s_patch(cd_api_req_t *req)
{
    //  The schema checked types and byte lengths; count characters.
    const json_t *body = cd_api_body(req);
    const json_t *title = json_object_get(body, "title");
    const json_t *description = json_object_get(body, "description");
    if (title && s_chars(json_string_value(title)) > S_TITLE_MAX) {
        cd_api_invalid(req, "title", "length out of range");
        return 0;
    }
    if (description && s_chars(json_string_value(description)) > S_DESCRIPTION_MAX) {
        cd_api_invalid(req, "description", "length out of range");
        return 0;
    }
    return s_change(req, "tasks.patch", true);
}

static int
s_cancel(cd_api_req_t *req)
{
    return s_change(req, "tasks.cancel", false);
}

static int
s_retry(cd_api_req_t *req)
{
    return s_change(req, "tasks.retry", false);
}

static void
s_archived(cd_api_req_t *req, const cd_api_result_t *res, void *arg)
{
    (void)arg;
    if (res->rc != 0) {
        cd_api_write_failed(req, res);
    } else if (!res->value) {
        cd_api_error(req, 404, "not_found", "no such task", NULL);
    } else {
        cd_api_reply_empty(req);
    }
}

static int
s_delete(cd_api_req_t *req)
{
    int64_t id = 0;
    if (!cd_api_param_id(req, "id", &id)) {
        return 0;
    }
    char idb[24], ub[24], sb[24];
    snprintf(idb, sizeof idb, "%" PRId64, id);
    const char *params[] = {idb, s_user(req, ub), s_scope_param(req, sb)};
    s_write(req, "tasks.archive", 3, params, s_archived);
    return 0;
}

//  --- the module ----------------------------------------------------------------------

static const cd_api_op_t s_ops[] = {
    {"tasks.create", s_create},       {"tasks.batch", s_batch},
    {"tasks.list", s_list},           {"tasks.get", s_get},
    {"tasks.patch", s_patch},         {"tasks.cancel", s_cancel},
    {"tasks.retry", s_retry},         {"tasks.delete", s_delete},
    {"tasks.history", s_history},     {"archived.list", s_archived_list},
    {"archived.get", s_archived_get},
};

const cd_api_module_t cd__api_tasks_module = {
    "tasks", s_ops, sizeof s_ops / sizeof s_ops[0], cd_q_tasks_writes, &cd_q_tasks_n_writes,
};
