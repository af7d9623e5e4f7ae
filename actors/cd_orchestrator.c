/*  cd_orchestrator: runs tasks through agents (see cd_orchestrator.h).

    Design. The actor's state is the directory (agents, teams), the runs
    (tasks with a step running, waiting for an agent, or being recorded)
    and the writes out. Everything durable goes through persist
    (cd_pwriter: retried with the same request id until persist answers
    for good); reads (what to claim, where a resumed task stands, the
    directory) run on the actor's own connection, synchronously: short
    indexed queries, a few per claim round, never per step.

    A run moves QUEUED (waiting for a free slot of its agent) -> RUNNING
    (the step is out; its answer is matched by the step id) -> RECORDING
    (the step's record is out to persist) -> QUEUED at the next agent, or
    gone (done, failed, back to todo, waiting for a human). Records are
    collected per statement and sent S_WRITES_OUT at a time at most, so
    under load one statement carries hundreds of steps (persist adds its
    own batching on top), and when idle a record goes out at once.

    Claiming is read-then-write: the candidates read fetches, per
    assignee key this node can serve, the best claimable tasks, as many as
    the free slots behind the key; the candidates are then matched in
    global priority order to concrete agents with a free slot (a resumed
    task needs the agent of its stage; a new one the least-loaded eligible
    agent), and one claim write takes exactly those, compare-and-set on
    status and attempt. A task another node took meanwhile is simply not
    in the answer. One claim is out at a time; what asks for a claim while
    one is out (kicks, freed slots, the scan timer) makes the next one
    follow it.

    Interface: cd_orchestrator_ops. */
#include "cd_orchestrator.h"

#include "cd_agent_proto.h"
#include "cd_db.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_mailer.h"
#include "cd_mpjson.h"
#include "cd_pwriter.h"
#include "cd_q_orch.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_TICK_MS 50               //  timeouts, polls, write retries, registry changes
#define S_WRITES_OUT 2             //  writes of one statement out at once
#define S_BATCH_MAX 500            //  records per write
#define S_BATCH_BYTES (512 * 1024) //  bytes per write (persist takes 1 MiB per value)
#define S_NAME_MAX 64              //  agent names
#define S_QUESTION_MAX 10000       //  characters of a HITL question (the table's bound)
#define S_CLAIM_IDLE_MS 20         //  after a claim read that started nothing, the next waits
#define S_SLOW_US 500000           //  a handler holding the actor longer is logged
#define S_STEPS_MARGIN 64          //  inbox room kept free of step answers (persist, kicks)

typedef struct s_orch s_orch_t;
typedef struct s_run s_run_t;

//  An agent of the directory. Never freed before the actor stops (runs
//  point at it): one that disappears from the table is only marked.
typedef struct {
    char name[S_NAME_MAX + 1]; //  its name
    char *role;                //  role name, or NULL
    int concurrency;           //  steps at once at most
    bool listed;               //  in the agents table at the last read
    bool local;                //  agent/<name> runs in this node's registry
    bool remote;               //  kind remote: served by pull API workers
    uint32_t restarts;         //  the registry's restart count, last looked at
    int inflight;              //  steps running on it
    int reserved;              //  slots promised to the claim out
    zlistx_t *queue;           //  s_run_t * waiting for it, best first
    zlistx_t *polls;           //  s_poll_t * waiting workers (remote), oldest first
} s_agent_t;

//  A worker's long poll (op=next).
typedef struct {
    uint8_t id[CD_ENV_UUID_SIZE];       //  the request's id: the answer's parent_id
    char reply_to[CD_ENV_MAX_NAME + 1]; //  where the answer goes
    int64_t deadline_us;                //  answer 204 then (monotonic)
    s_agent_t *agent;                   //  the agent it polls for
    void *handle;                       //  its place in agent->polls
} s_poll_t;

typedef enum { S_QUEUED, S_RUNNING, S_RECORDING } s_state_t;

//  A task this node is running.
struct s_run {
    int64_t id;                         //  the task
    json_t *task;                       //  its record (cd_q_orch.h), owned
    int priority;                       //  0..9
    int64_t created_us;                 //  for queue order
    int attempt;                        //  the task's attempts while this run holds it
    int64_t timeout_ms;                 //  per step
    char kind;                          //  assignee: 'a' agent, 'r' role, 't' team
    int64_t team;                       //  with 't'
    int stage;                          //  pipeline stage, -1 off the pipeline
    s_agent_t *agent;                   //  the agent of the current step
    json_t *input;                      //  the current stage's input, owned
    json_t *hitl;                       //  "hitl" of the next dispatch, owned, or NULL
    s_state_t state;                    //  where it is
    void *qhandle;                      //  its place in agent->queue while queued
    uint8_t step_id[CD_ENV_UUID_SIZE];  //  the step out (its message id)
    uint8_t trace[CD_ENV_UUID_SIZE];    //  this attempt's trace id
    int step_no;                        //  steps of this attempt so far
    int64_t deadline_us;                //  the step's timeout (monotonic), 0: none
    uint32_t restarts;                  //  agent restarts when the step went out
    int rec;                            //  records sent for it; an answer names the latest
    s_agent_t *next_agent;              //  while recording an advance: who is next
    int next_stage;                     //  ... at which stage
    json_t *output;                     //  ... with this input, owned
    char *reply_to;                     //  a pull API completion waiting for the record
    uint8_t reply_id[CD_ENV_UUID_SIZE]; //  its request id
};

//  A record waiting to be written, or out.
typedef struct {
    int64_t id; //  the task
    int rec;    //  the run's record number
    char *text; //  the record's JSON
} s_rec_t;

typedef void(s_ack_fn)(s_orch_t *orch, s_rec_t **recs, size_t n, const char *answer);

//  One statement's records: collected, and sent S_WRITES_OUT at a time.
typedef struct {
    const char *stmt; //  orch.advance, orch.fail, orch.hitl
    s_ack_fn *ack;    //  what to do with the answer
    zlistx_t *recs;   //  s_rec_t * waiting
    int out;          //  writes out
} s_batch_t;

//  A write of a batch, out.
typedef struct {
    s_orch_t *orch;   //  the actor
    s_batch_t *batch; //  whose
    s_rec_t **recs;   //  its records
    size_t n;         //  how many
} s_sent_t;

//  A claim candidate matched to an agent, while the claim is out.
typedef struct {
    json_t *task;     //  the task record (owned)
    s_agent_t *agent; //  who runs its first step
    int stage;        //  at which stage
} s_pick_t;

//  A team: its pipeline.
typedef struct {
    int64_t id;     //  team id
    json_t *stages; //  [[member, ...], ...] in pipeline order, owned
} s_team_t;

struct s_orch {
    cd_actor_t *self;
    cd_orchestrator_args_t cfg; //  settings, defaults applied
    cd_db_t *db;                //  reads; NULL while the database is away
    int64_t db_retry_us;        //  no connect before this (monotonic)
    cd_pwriter_t *writer;       //  writes through persist
    cd_runtime_t stepper_rt;    //  the runtime with no send timeout
    cd_mailer_t *stepper;       //  steps and cancels to agents: never waits on a full queue
    cd_pack_t *pack;            //  reused step payloads
    zhashx_t *agents;           //  name -> s_agent_t *
    zhashx_t *teams;            //  "id" -> s_team_t *
    zhashx_t *runs;             //  id (int64 key) -> s_run_t *
    uint64_t registry_gen;      //  the registry generation last looked at
    s_batch_t advance;          //  step records
    s_batch_t fail;             //  failed attempts
    s_batch_t hitl;             //  questions
    bool recovered;             //  the start-up recovery is written: claims may start
    bool claim_out;             //  a claim is out
    bool claim_wanted;          //  claim again when it comes back
    int64_t claim_not_before;   //  a read that found nothing to start: not again before (mono)
    bool claim_timer;           //  a timer will claim at claim_not_before
    int64_t retry_due_us;       //  a timer claims when the soonest backoff ends (mono), 0: none
    int steps_out;              //  steps out to local agents (each owes one answer)
    int steps_max;              //  at most: what the inbox holds, less a margin
    bool steps_capped;          //  a queue waits for steps_out to drop
    s_pick_t *picks;            //  the claim out's picks
    size_t n_picks;             //  how many
    bool renew_out;             //  a lease renewal is out
    bool recover_out;           //  a recovery pass is out
    bool expire_out;            //  a HITL expiry pass is out
    int64_t last_renew_us;      //  when the leases were last renewed (monotonic)
    int64_t last_refresh_us;    //  when the directory was last read (monotonic)
    int64_t last_expire_us;     //  when the expiry pass last ran (monotonic)
    int64_t last_claim_us;      //  when the last claim went out (monotonic)
    uint64_t steps;             //  steps answered (for logs)
    uint64_t completed;         //  tasks completed
};

//  --- small helpers -------------------------------------------------------------------------

static size_t
s_i64_hash(const void *key)
{
    uint64_t v = (uint64_t)(uintptr_t)key;
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdull;
    v ^= v >> 33;
    return (size_t)v;
}

static int
s_i64_compare(const void *a, const void *b)
{
    intptr_t x = (intptr_t)a, y = (intptr_t)b;
    return x < y ? -1 : x > y;
}

static void *
s_key(int64_t id)
{
    return (void *)(intptr_t)id;
}

static int64_t
s_mono_us(void)
{
    return zclock_usecs();
}

static int64_t
s_json_int(const json_t *obj, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

//  JSON text of a value (compact, any value); caller frees.
static char *
s_dump(const json_t *value)
{
    char *text = json_dumps(value ? value : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    assert(text);
    return text;
}

//  Exponential backoff for a failed attempt.
static int64_t
s_backoff(const s_orch_t *orch, int attempt)
{
    int64_t ms = orch->cfg.backoff_ms;
    for (int i = 1; i < attempt && ms < orch->cfg.backoff_max_ms; i++) {
        ms *= 2;
    }
    return ms < orch->cfg.backoff_max_ms ? ms : orch->cfg.backoff_max_ms;
}

//  Queue order: priority 9 first, then oldest, then lowest id.
static int
s_run_order(const void *a, const void *b)
{
    const s_run_t *x = (const s_run_t *)a, *y = (const s_run_t *)b;
    if (x->priority != y->priority) {
        return x->priority > y->priority ? -1 : 1;
    }
    if (x->created_us != y->created_us) {
        return x->created_us < y->created_us ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

//  Logs a handler that held the actor long (heartbeats wait meanwhile).
static void
s_slow(s_orch_t *orch, int64_t started, const char *what)
{
    int64_t us = s_mono_us() - started;
    if (us > S_SLOW_US) {
        cd_log_warn(cd_actor_name(orch->self), "slow handler", "{s:s, s:i, s:i, s:i}", "what", what,
                    "ms", (int)(us / 1000), "runs", (int)zhashx_size(orch->runs), "writes",
                    (int)cd_pwriter_pending(orch->writer));
    }
}

//  The run of task id, or NULL (ids are > 0; 0 is "no task" in an
//  envelope, and would be a NULL key).
static s_run_t *
s_run(s_orch_t *orch, int64_t id)
{
    return id > 0 ? (s_run_t *)zhashx_lookup(orch->runs, s_key(id)) : NULL;
}

//  --- the directory ---------------------------------------------------------------------------

static bool
s_servable(const s_agent_t *agent)
{
    return agent && agent->listed && (agent->local || agent->remote);
}

//  Load: what it has running, waiting and promised.
static int
s_load(const s_agent_t *agent)
{
    return agent->inflight + (int)zlistx_size(agent->queue) + agent->reserved;
}

//  Slots a claim may still fill on this agent now.
static int
s_free(const s_agent_t *agent)
{
    if (!s_servable(agent)) {
        return 0;
    }
    int cap = agent->concurrency;
    if (agent->remote) {
        int polls = agent->inflight + (int)zlistx_size(agent->polls);
        cap = polls < cap ? polls : cap;
    }
    int free_slots = cap - s_load(agent);
    return free_slots > 0 ? free_slots : 0;
}

static s_agent_t *
s_agent(s_orch_t *orch, const char *name)
{
    return name ? (s_agent_t *)zhashx_lookup(orch->agents, name) : NULL;
}

static void
s_agent_destroy(void **item)
{
    s_agent_t *agent = (s_agent_t *)*item;
    if (agent) {
        free(agent->role);
        zlistx_destroy(&agent->queue);
        zlistx_destroy(&agent->polls);
        free(agent);
        *item = NULL;
    }
}

static void
s_team_destroy(void **item)
{
    s_team_t *team = (s_team_t *)*item;
    if (team) {
        json_decref(team->stages);
        free(team);
        *item = NULL;
    }
}

static s_team_t *
s_team(s_orch_t *orch, int64_t id)
{
    char key[24];
    snprintf(key, sizeof key, "%" PRId64, id);
    return (s_team_t *)zhashx_lookup(orch->teams, key);
}

//  The least-loaded servable agent of a list of names (JSON strings);
//  with need_free, only one with a free slot. NULL if none.
static s_agent_t *
s_pick_member(s_orch_t *orch, const json_t *names, bool need_free)
{
    s_agent_t *best = NULL;
    size_t i;
    const json_t *name;
    json_array_foreach(names, i, name)
    {
        s_agent_t *agent = s_agent(orch, json_string_value(name));
        if (!s_servable(agent) || (need_free && s_free(agent) <= 0)) {
            continue;
        }
        if (!best || s_load(agent) < s_load(best)) {
            best = agent;
        }
    }
    return best;
}

//  The least-loaded agent with a free slot among those of role.
static s_agent_t *
s_pick_role(s_orch_t *orch, const char *role)
{
    s_agent_t *best = NULL;
    for (s_agent_t *agent = (s_agent_t *)zhashx_first(orch->agents); agent;
         agent = (s_agent_t *)zhashx_next(orch->agents)) {
        if (agent->role && streq(agent->role, role) && s_free(agent) > 0 &&
            (!best || s_load(agent) < s_load(best))) {
            best = agent;
        }
    }
    return best;
}

//  --- the database connection -------------------------------------------------------------

static cd_db_t *
s_db(s_orch_t *orch)
{
    if (orch->db && !cd_db_connected(orch->db) && cd_db_reset(orch->db) != 0) {
        cd_db_close(&orch->db);
        orch->db_retry_us = s_mono_us() + 500000;
    }
    if (!orch->db && s_mono_us() >= orch->db_retry_us) {
        char *errmsg = NULL;
        if (cd_db_connect(orch->cfg.conninfo, &orch->db, &errmsg) != 0) {
            cd_log_warn(cd_actor_name(orch->self), "database unreachable", "{s:s}", "error",
                        errmsg ? errmsg : "?");
            orch->db_retry_us = s_mono_us() + 500000;
        }
        free(errmsg);
    }
    return orch->db;
}

static void s_release(s_orch_t *orch, s_run_t *run, const char *code, const char *message);
static void s_pump(s_orch_t *orch, s_agent_t *agent);
static void s_want_claim(s_orch_t *orch);

//  Reads the directory and the registry's view of each agent.
static void
s_refresh(s_orch_t *orch)
{
    orch->last_refresh_us = s_mono_us();
    cd_db_t *db = s_db(orch);
    if (!db) {
        return;
    }
    char *text = NULL;
    int rc = cd_q_orch_directory(db, &text);
    if (rc != 0) {
        cd_log_warn(cd_actor_name(orch->self), "cannot read the directory", "{s:s}", "error",
                    cd_strerror(rc));
        free(text);
        return;
    }
    json_t *dir = json_loads(text, 0, NULL);
    free(text);
    if (!dir) {
        return;
    }
    cd_registry_t *registry = cd_actor_runtime(orch->self)->registry;
    orch->registry_gen = cd_registry_generation(registry);
    for (s_agent_t *agent = (s_agent_t *)zhashx_first(orch->agents); agent;
         agent = (s_agent_t *)zhashx_next(orch->agents)) {
        agent->listed = false;
    }
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(dir, "agents"), i, row)
    {
        const char *name = json_string_value(json_object_get(row, "name"));
        if (!name || strlen(name) > S_NAME_MAX) {
            continue;
        }
        s_agent_t *agent = s_agent(orch, name);
        if (!agent) {
            agent = (s_agent_t *)zmalloc(sizeof *agent);
            snprintf(agent->name, sizeof agent->name, "%s", name);
            agent->queue = zlistx_new();
            zlistx_set_comparator(agent->queue, s_run_order);
            agent->polls = zlistx_new();
            zhashx_insert(orch->agents, agent->name, agent);
        }
        agent->listed = true;
        const char *role = json_string_value(json_object_get(row, "role"));
        if (!role || !agent->role || !streq(role, agent->role)) {
            free(agent->role);
            agent->role = role ? strdup(role) : NULL;
        }
        agent->concurrency = (int)s_json_int(row, "concurrency", 1);
        const char *kind = json_string_value(json_object_get(row, "kind"));
        agent->remote = kind && streq(kind, "remote");
        char reg[CD_REGISTRY_MAX_NAME];
        snprintf(reg, sizeof reg, "agent/%s", name);
        cd_registry_entry_t entry;
        agent->local = !agent->remote && cd_registry_get(registry, reg, &entry) == 0 &&
                       (entry.status == CD_ACTOR_RUNNING || entry.status == CD_ACTOR_STARTING ||
                        entry.status == CD_ACTOR_RESTARTING);
    }
    zhashx_purge(orch->teams);
    json_array_foreach(json_object_get(dir, "teams"), i, row)
    {
        s_team_t *team = (s_team_t *)zmalloc(sizeof *team);
        team->id = s_json_int(row, "id", 0);
        team->stages = json_incref(json_object_get(row, "stages"));
        char key[24];
        snprintf(key, sizeof key, "%" PRId64, team->id);
        zhashx_update(orch->teams, key, team);
    }
    json_decref(dir);
    //  Runs waiting for an agent that is gone from here go back to todo.
    for (s_agent_t *agent = (s_agent_t *)zhashx_first(orch->agents); agent;
         agent = (s_agent_t *)zhashx_next(orch->agents)) {
        if (!s_servable(agent)) {
            s_run_t *run;
            while ((run = (s_run_t *)zlistx_first(agent->queue)) != NULL) {
                zlistx_delete(agent->queue, zlistx_cursor(agent->queue));
                run->qhandle = NULL;
                s_release(orch, run, "agent_unavailable",
                          "the agent is not running on this node any more");
            }
        }
    }
    s_want_claim(orch);
}

//  --- runs -------------------------------------------------------------------------------------

static void
s_run_free(s_orch_t *orch, s_run_t *run)
{
    if (run->qhandle) {
        zlistx_delete(run->agent->queue, run->qhandle);
        run->qhandle = NULL;
    }
    zhashx_delete(orch->runs, s_key(run->id));
    json_decref(run->task);
    json_decref(run->input);
    json_decref(run->hitl);
    json_decref(run->output);
    free(run->reply_to);
    free(run);
}

//  A new run from a task record at stage/agent, with its input and the
//  HITL answer it resumes with (if any).
static s_run_t *
s_run_new(s_orch_t *orch, json_t *task, s_agent_t *agent, int stage)
{
    s_run_t *run = (s_run_t *)zmalloc(sizeof *run);
    run->id = s_json_int(task, "id", 0);
    run->task = json_incref(task);
    run->priority = (int)s_json_int(task, "priority", 5);
    run->created_us = s_json_int(task, "created_us", 0);
    run->attempt = (int)s_json_int(task, "attempts", 0);
    run->timeout_ms = s_json_int(task, "timeout_ms", 300000);
    const json_t *assignee = json_object_get(task, "assignee");
    run->kind = json_object_get(assignee, "team")   ? 't'
                : json_object_get(assignee, "role") ? 'r'
                                                    : 'a';
    run->team = s_json_int(assignee, "team", 0);
    run->stage = stage;
    run->agent = agent;
    const json_t *resume = json_object_get(task, "resume");
    if (json_is_object(resume)) {
        const json_t *input = json_object_get(resume, "input");
        run->input = json_incref(input ? (json_t *)input : json_null());
        const json_t *hitl = json_object_get(resume, "hitl");
        const char *status = json_string_value(json_object_get(hitl, "status"));
        if (status && (streq(status, "answered") || streq(status, "expired"))) {
            run->hitl = json_pack(
                "{s:O, s:O?, s:O?, s:b}", "request_id", json_object_get(hitl, "request_id"),
                "response", json_object_get(hitl, "response"), "approved",
                json_object_get(hitl, "approved"), "expired", streq(status, "expired"));
        }
    } else {
        const json_t *input = json_object_get(task, "input");
        run->input = json_incref(input ? (json_t *)input : json_null());
    }
    randombytes_buf(run->trace, sizeof run->trace);
    zhashx_insert(orch->runs, s_key(run->id), run);
    return run;
}

//  Puts a run in its agent's queue and starts what the agent can take.
static void
s_enqueue(s_orch_t *orch, s_run_t *run, s_agent_t *agent)
{
    run->agent = agent;
    run->state = S_QUEUED;
    run->qhandle = zlistx_insert(agent->queue, run, false);
    s_pump(orch, agent);
}

//  --- batched records ----------------------------------------------------------------------

static void s_flush(s_orch_t *orch, s_batch_t *batch);

static void
s_rec_free(s_rec_t **rec_p)
{
    if (*rec_p) {
        free((*rec_p)->text);
        free(*rec_p);
        *rec_p = NULL;
    }
}

//  Queues a record (takes text) for run, which moves to RECORDING.
static void
s_record(s_orch_t *orch, s_batch_t *batch, s_run_t *run, char *text)
{
    run->state = S_RECORDING;
    run->rec++;
    s_rec_t *rec = (s_rec_t *)zmalloc(sizeof *rec);
    rec->id = run->id;
    rec->rec = run->rec;
    rec->text = text;
    zlistx_add_end(batch->recs, rec);
    s_flush(orch, batch);
}

//  The run a record was made for, if it still waits for that record.
static s_run_t *
s_rec_run(s_orch_t *orch, const s_rec_t *rec)
{
    s_run_t *run = s_run(orch, rec->id);
    return run && run->state == S_RECORDING && run->rec == rec->rec ? run : NULL;
}

static void
s_sent_free(s_sent_t **sent_p)
{
    s_sent_t *sent = *sent_p;
    for (size_t i = 0; i < sent->n; i++) {
        s_rec_free(&sent->recs[i]);
    }
    free(sent->recs);
    free(sent);
    *sent_p = NULL;
}

static void s_batch_answer(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg);

//  Sends one write of recs (taken).
static void
s_send_recs(s_orch_t *orch, s_batch_t *batch, s_rec_t **recs, size_t n)
{
    size_t size = 3;
    for (size_t i = 0; i < n; i++) {
        size += strlen(recs[i]->text) + 1;
    }
    char *json = (char *)malloc(size);
    assert(json);
    char *p = json;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }
        size_t len = strlen(recs[i]->text);
        memcpy(p, recs[i]->text, len);
        p += len;
    }
    *p++ = ']';
    *p = '\0';
    s_sent_t *sent = (s_sent_t *)zmalloc(sizeof *sent);
    sent->orch = orch;
    sent->batch = batch;
    sent->recs = recs;
    sent->n = n;
    batch->out++;
    const char *params[] = {orch->cfg.node_id, json};
    cd_pwriter_send(orch->writer, batch->stmt, 2, params, s_batch_answer, sent);
    free(json);
}

static void
s_flush(s_orch_t *orch, s_batch_t *batch)
{
    while (zlistx_size(batch->recs) > 0 && batch->out < S_WRITES_OUT) {
        size_t max = zlistx_size(batch->recs);
        if (max > S_BATCH_MAX) {
            max = S_BATCH_MAX;
        }
        s_rec_t **recs = (s_rec_t **)zmalloc(max * sizeof *recs);
        size_t n = 0, bytes = 0;
        while (n < max) {
            s_rec_t *rec = (s_rec_t *)zlistx_first(batch->recs);
            size_t len = strlen(rec->text);
            if (n > 0 && bytes + len > S_BATCH_BYTES) {
                break;
            }
            bytes += len;
            recs[n++] = rec;
            zlistx_delete(batch->recs, zlistx_cursor(batch->recs));
        }
        s_send_recs(orch, batch, recs, n);
    }
}

static void s_record_rejected(s_orch_t *orch, s_batch_t *batch, s_rec_t *rec, const char *why);

static void
s_batch_answer(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg)
{
    s_sent_t *sent = (s_sent_t *)arg;
    s_orch_t *orch = sent->orch;
    s_batch_t *batch = sent->batch;
    batch->out--;
    if (res->rc == CD_ECLOSED) {
        s_sent_free(&sent);
        return;
    }
    if (res->rc == 0) {
        batch->ack(orch, sent->recs, sent->n, res->value ? res->value : "[]");
    } else if (sent->n > 1) {
        //  One record the database refused takes its whole write down:
        //  every record again on its own, so it fails alone.
        cd_log_warn(cd_actor_name(self), "a batched write was refused; writing it record by record",
                    "{s:s, s:s, s:s}", "stmt", batch->stmt, "sqlstate", res->sqlstate, "error",
                    res->message);
        for (size_t i = 0; i < sent->n; i++) {
            s_rec_t **one = (s_rec_t **)zmalloc(sizeof *one);
            one[0] = sent->recs[i];
            sent->recs[i] = NULL;
            s_send_recs(orch, batch, one, 1);
        }
    } else if (sent->n == 1) {
        s_record_rejected(orch, batch, sent->recs[0], res->message);
    }
    s_sent_free(&sent);
    s_flush(orch, batch);
}

//  The ids in an answer array (of ids, or of objects with "id"), sorted.
static int64_t *
s_answer_ids(const char *answer, size_t *n, json_t **parsed)
{
    json_t *list = json_loads(answer, JSON_DECODE_ANY, NULL);
    size_t count = json_array_size(list);
    int64_t *ids = (int64_t *)zmalloc((count + 1) * sizeof *ids);
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get(list, i);
        ids[i] = json_is_integer(item) ? json_integer_value(item) : s_json_int(item, "id", 0);
    }
    *n = count;
    if (parsed) {
        *parsed = list;
    } else {
        json_decref(list);
    }
    return ids;
}

//  The element of an answer array for task id (objects with "id"), or NULL.
static json_t *
s_answer_for(json_t *list, int64_t id)
{
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        if (s_json_int(item, "id", 0) == id) {
            return item;
        }
    }
    return NULL;
}

static bool
s_has(const int64_t *ids, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == id) {
            return true;
        }
    }
    return false;
}

//  --- the pull API's answers -----------------------------------------------------------------

static void
s_reply(s_orch_t *orch, const char *to, const uint8_t *parent, int status, const char *body)
{
    cd_pack_t *pack = orch->pack;
    cd_pack_reset(pack);
    cd_pack_map(pack, 2);
    cd_pack_cstr(pack, "s");
    cd_pack_int(pack, status);
    cd_pack_cstr(pack, "b");
    cd_pack_cstr(pack, body ? body : "");
    cd_envelope_t env;
    cd_actor_envelope_init(orch->self, &env, CD_KIND_RESULT, to);
    memcpy(env.parent_id, parent, CD_ENV_UUID_SIZE);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(pack);
    int rc = cd_actor_send(orch->self, &env);
    if (rc != 0 && rc != CD_ENOTFOUND && rc != CD_EDEAD) {
        cd_log_warn(cd_actor_name(orch->self), "answer not delivered", "{s:s}", "error",
                    cd_errname(rc));
    }
}

//  Answers a completion waiting on run (if any) with the task's status.
static void
s_reply_completion(s_orch_t *orch, s_run_t *run, const char *status)
{
    if (!run->reply_to) {
        return;
    }
    char body[128];
    if (status) {
        snprintf(body, sizeof body, "{\"id\":%" PRId64 ",\"status\":\"%s\"}", run->id, status);
        s_reply(orch, run->reply_to, run->reply_id, 200, body);
    } else {
        s_reply(orch, run->reply_to, run->reply_id, 409,
                "{\"error\":{\"code\":\"conflict\",\"message\":\"the task changed before this "
                "answer was recorded (cancelled, or taken over)\",\"details\":{}}}");
    }
    free(run->reply_to);
    run->reply_to = NULL;
}

//  --- steps -------------------------------------------------------------------------------

//  Appends a JSON value to the pack as msgpack (null when it cannot be).
static void
s_pack_json(cd_pack_t *pack, const json_t *value)
{
    if (!value || cd_mpjson_encode(value, pack) != 0) {
        cd_pack_nil(pack);
    }
}

//  The step payload (cd_agent_proto.h) of run into orch->pack.
static void
s_pack_step(s_orch_t *orch, const s_run_t *run)
{
    cd_pack_t *pack = orch->pack;
    cd_pack_reset(pack);
    const json_t *budget = json_object_get(run->task, "budget");
    bool has_budget = json_is_object(budget);
    cd_pack_map(pack, 3 + (run->hitl ? 1 : 0) + (has_budget ? 1 : 0));
    cd_pack_cstr(pack, "input");
    s_pack_json(pack, run->input);
    cd_pack_cstr(pack, "original");
    s_pack_json(pack, json_object_get(run->task, "input"));
    cd_pack_cstr(pack, "task");
    cd_pack_map(pack, 3);
    cd_pack_cstr(pack, "id");
    cd_pack_int(pack, run->id);
    cd_pack_cstr(pack, "title");
    const char *title = json_string_value(json_object_get(run->task, "title"));
    cd_pack_cstr(pack, title ? title : "");
    cd_pack_cstr(pack, "project_id");
    s_pack_json(pack, json_object_get(run->task, "project_id"));
    if (run->hitl) {
        cd_pack_cstr(pack, "hitl");
        s_pack_json(pack, run->hitl);
    }
    if (has_budget) {
        const json_t *usage = json_object_get(run->task, "usage");
        cd_pack_cstr(pack, "budget");
        cd_pack_map(pack, 4);
        cd_pack_cstr(pack, "max_tokens");
        s_pack_json(pack, json_object_get(budget, "max_tokens"));
        cd_pack_cstr(pack, "max_cost_usd");
        s_pack_json(pack, json_object_get(budget, "max_cost_usd"));
        cd_pack_cstr(pack, "used_tokens");
        cd_pack_int(pack, s_json_int(usage, "prompt_tokens", 0) +
                              s_json_int(usage, "completion_tokens", 0));
        cd_pack_cstr(pack, "used_cost_usd");
        const json_t *cost = json_object_get(usage, "cost_usd");
        cd_pack_double(pack, json_is_number(cost) ? json_number_value(cost) : 0.0);
    }
}

//  The step as JSON, for a pull API worker: the task record (without its
//  resume position) plus "step".
static char *
s_step_json(s_orch_t *orch, const s_run_t *run)
{
    json_t *out = json_copy(run->task);
    json_object_del(out, "resume");
    json_object_del(out, "created_us");
    char id[2 * CD_ENV_UUID_SIZE + 1];
    sodium_bin2hex(id, sizeof id, run->step_id, CD_ENV_UUID_SIZE);
    time_t deadline = (time_t)((cd_now_us() / 1000 + run->timeout_ms) / 1000);
    struct tm tm;
    gmtime_r(&deadline, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *step = json_pack(
        "{s:s, s:i, s:s, s:O, s:O, s:s}", "id", id, "number", run->step_no, "agent",
        run->agent->name, "input", run->input, "original",
        json_object_get(run->task, "input") ? json_object_get(run->task, "input") : json_null(),
        "deadline", when);
    json_object_set_new(step, "stage", run->stage >= 0 ? json_integer(run->stage) : json_null());
    if (run->hitl) {
        json_object_set(step, "hitl", run->hitl);
    }
    json_object_set_new(out, "step", step);
    char *text = s_dump(out);
    json_decref(out);
    (void)orch;
    return text;
}

static void s_step_failed(s_orch_t *orch, s_run_t *run, const char *code, const char *message,
                          bool retryable, int64_t retry_after_ms);

//  Starts run's step on its agent (which has a free slot).
static void
s_start(s_orch_t *orch, s_run_t *run)
{
    s_agent_t *agent = run->agent;
    run->step_no++;
    run->state = S_RUNNING;
    run->deadline_us = run->timeout_ms > 0 ? s_mono_us() + run->timeout_ms * 1000 : 0;
    agent->inflight++;
    if (!agent->remote) {
        orch->steps_out++;
    }
    if (agent->remote) {
        s_poll_t *poll = (s_poll_t *)zlistx_first(agent->polls);
        zlistx_delete(agent->polls, poll->handle);
        randombytes_buf(run->step_id, sizeof run->step_id);
        char *text = s_step_json(orch, run);
        s_reply(orch, poll->reply_to, poll->id, 200, text);
        free(text);
        free(poll);
        return;
    }
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "agent/%s", agent->name);
    char step[16];
    snprintf(step, sizeof step, "%d", run->step_no);
    cd_envelope_t env;
    cd_actor_envelope_init(orch->self, &env, run->step_no == 1 ? CD_KIND_TASK : CD_KIND_HANDOFF,
                           to);
    memcpy(run->step_id, env.id, CD_ENV_UUID_SIZE);
    env.task_id = run->id;
    memcpy(env.trace_id, run->trace, CD_ENV_UUID_SIZE);
    env.attempt = (uint32_t)(run->attempt > 0 ? run->attempt : 1);
    env.deadline = run->timeout_ms > 0 ? cd_now_us() + run->timeout_ms * 1000 : 0;
    env.headers[0] = (cd_env_header_t){cd_str("reply_to"), cd_str(cd_actor_name(orch->self))};
    env.headers[1] = (cd_env_header_t){cd_str(CD_PROTO_STEP_HEADER), cd_str(step)};
    env.n_headers = 2;
    s_pack_step(orch, run);
    env.payload_type = CD_PAYLOAD_MAP;
    env.payload = cd_pack_bytes(orch->pack);
    cd_registry_entry_t entry;
    if (cd_registry_get(cd_actor_runtime(orch->self)->registry, to, &entry) == 0) {
        run->restarts = entry.restarts;
    }
    int rc = cd_mailer_send(orch->stepper, &env);
    if (rc != 0) {
        //  Nobody to run it (stopped, gone, restarting) or a queue that is
        //  full: the attempt is not the task's fault. It goes back to todo
        //  without counting; the directory is read again at the next tick.
        agent->inflight--;
        orch->steps_out--;
        orch->registry_gen = 0;
        s_release(orch, run, "agent_unavailable", cd_strerror(rc));
    }
}

//  Starts what agent can take from its queue.
static void
s_pump(s_orch_t *orch, s_agent_t *agent)
{
    while (zlistx_size(agent->queue) > 0 && s_servable(agent) &&
           agent->inflight < agent->concurrency &&
           (!agent->remote || zlistx_size(agent->polls) > 0)) {
        //  Every step out owes this actor one answer: never more than its
        //  inbox holds, or agents would block (and give up) answering.
        if (!agent->remote && orch->steps_out >= orch->steps_max) {
            orch->steps_capped = true;
            return;
        }
        s_run_t *run = (s_run_t *)zlistx_first(agent->queue);
        zlistx_delete(agent->queue, run->qhandle);
        run->qhandle = NULL;
        s_start(orch, run);
    }
}

//  A step's agent slot is free again.
static void
s_slot_freed(s_orch_t *orch, s_agent_t *agent)
{
    agent->inflight--;
    if (!agent->remote) {
        orch->steps_out--;
    }
    if (orch->steps_capped && orch->steps_out < orch->steps_max) {
        orch->steps_capped = false;
        for (s_agent_t *a = (s_agent_t *)zhashx_first(orch->agents); a;
             a = (s_agent_t *)zhashx_next(orch->agents)) {
            if (a != agent && zlistx_size(a->queue) > 0) {
                s_pump(orch, a);
            }
        }
    }
    s_pump(orch, agent);
    if (zlistx_size(agent->queue) == 0) {
        s_want_claim(orch);
    }
}

//  Tells a running step's agent to stop (cancel or timeout).
static void
s_cancel_step(s_orch_t *orch, const s_run_t *run)
{
    if (run->agent->remote) {
        return; //  a worker learns it from the 409 of its completion
    }
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "agent/%s", run->agent->name);
    cd_envelope_t env;
    cd_actor_envelope_init(orch->self, &env, CD_KIND_CONTROL, to);
    env.task_id = run->id;
    memcpy(env.parent_id, run->step_id, CD_ENV_UUID_SIZE);
    memcpy(env.trace_id, run->trace, CD_ENV_UUID_SIZE);
    env.headers[0] = (cd_env_header_t){cd_str("op"), cd_str("cancel")};
    env.n_headers = 1;
    cd_mailer_send(orch->stepper, &env);
}

//  The record of a failed attempt ("p" parks: not counted).
static void
s_step_failed(s_orch_t *orch, s_run_t *run, const char *code, const char *message, bool retryable,
              int64_t retry_after_ms)
{
    bool park = retry_after_ms >= 0 && code && streq(code, "rate_limited");
    int64_t backoff = park ? retry_after_ms : s_backoff(orch, run->attempt);
    const char *agent = run->agent ? run->agent->name : NULL;
    json_t *rec = json_pack("{s:I, s:i, s:s?, s:o, s:{s:s, s:s, s:s?}, s:b, s:I, s:b}", "t",
                            (json_int_t)run->id, "a", run->attempt, "f", agent, "s",
                            run->stage >= 0 ? json_integer(run->stage) : json_null(), "e", "code",
                            code ? code : "error", "message", message ? message : "", "agent",
                            agent, "r", retryable || park, "b", (json_int_t)backoff, "p", park);
    s_record(orch, &orch->fail, run, s_dump(rec));
    json_decref(rec);
}

//  Gives a task back to todo without counting an attempt (nothing of it
//  ran: its agent is not here).
static void
s_release(s_orch_t *orch, s_run_t *run, const char *code, const char *message)
{
    s_step_failed(orch, run, "rate_limited", message, true, orch->cfg.backoff_ms);
    (void)code;
}

//  A result: record the output with the next step, or the completion.
static void
s_step_result(s_orch_t *orch, s_run_t *run, json_t *output, const char *handoff_to)
{
    s_agent_t *next = NULL;
    int next_stage = -1;
    if (handoff_to) {
        next = s_agent(orch, handoff_to);
        if (!s_servable(next)) {
            json_decref(output);
            char message[160];
            snprintf(message, sizeof message, "handoff_to names no agent this node can run: %.64s",
                     handoff_to);
            s_step_failed(orch, run, "bad_handoff", message, false, -1);
            return;
        }
    } else if (run->kind == 't' && run->stage >= 0) {
        s_team_t *team = s_team(orch, run->team);
        const json_t *stages = team ? team->stages : NULL;
        if (!team) {
            json_decref(output);
            s_step_failed(orch, run, "no_agent", "the task's team does not exist any more", false,
                          -1);
            return;
        }
        if ((size_t)run->stage + 1 < json_array_size(stages)) {
            next_stage = run->stage + 1;
            next = s_pick_member(orch, json_array_get(stages, (size_t)next_stage), false);
            if (!next) {
                json_decref(output);
                char message[160];
                snprintf(message, sizeof message,
                         "no agent of team %" PRId64
                         " can run stage %d (role without a member here)",
                         run->team, next_stage);
                s_step_failed(orch, run, "no_agent", message, false, -1);
                return;
            }
        }
    }
    json_t *rec = json_pack("{s:I, s:i, s:s, s:o, s:O}", "t", (json_int_t)run->id, "a",
                            run->attempt, "f", run->agent->name, "s",
                            run->stage >= 0 ? json_integer(run->stage) : json_null(), "o", output);
    if (next) {
        json_object_set_new(rec, "n",
                            json_pack("{s:s, s:o}", "g", next->name, "s",
                                      next_stage >= 0 ? json_integer(next_stage) : json_null()));
    }
    json_decref(run->output);
    run->output = output;
    run->next_agent = next;
    run->next_stage = next_stage;
    s_record(orch, &orch->advance, run, s_dump(rec));
    json_decref(rec);
}

//  Checks an agent's question; NULL if fine, else why not.
static const char *
s_question_bad(const json_t *q)
{
    const json_t *question = json_object_get(q, "question");
    if (!json_is_string(question) || json_string_length(question) == 0 ||
        json_string_length(question) > S_QUESTION_MAX) {
        return "question must be a non-empty string of at most 10000 bytes";
    }
    const json_t *options = json_object_get(q, "options");
    if (options && !json_is_null(options)) {
        if (!json_is_array(options)) {
            return "options must be an array of strings";
        }
        size_t i;
        const json_t *o;
        json_array_foreach(options, i, o)
        {
            if (!json_is_string(o)) {
                return "options must be an array of strings";
            }
        }
    }
    const json_t *timeout = json_object_get(q, "timeout_s");
    if (timeout && !json_is_null(timeout) &&
        (!json_is_number(timeout) || json_number_value(timeout) < 0 ||
         json_number_value(timeout) > 365.0 * 86400)) {
        return "timeout_s must be a number of seconds from 0 to a year";
    }
    const json_t *policy = json_object_get(q, "on_timeout");
    if (policy && !json_is_null(policy)) {
        const char *p = json_string_value(policy);
        if (!p || !(streq(p, "deny") || streq(p, "approve") || streq(p, "fail"))) {
            return "on_timeout must be deny, approve or fail";
        }
    }
    return NULL;
}

//  A question: the task waits for a human.
static void
s_step_hitl(s_orch_t *orch, s_run_t *run, json_t *q)
{
    const char *bad = s_question_bad(q);
    if (bad) {
        json_decref(q);
        s_step_failed(orch, run, "bad_hitl_request", bad, false, -1);
        return;
    }
    json_t *clean = json_pack("{s:O}", "question", json_object_get(q, "question"));
    const char *keys[] = {"options", "timeout_s", "on_timeout"};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(q, keys[i]);
        if (v && !json_is_null(v)) {
            json_object_set(clean, keys[i], v);
        }
    }
    json_decref(q);
    json_t *rec = json_pack("{s:I, s:i, s:s, s:o, s:O, s:o}", "t", (json_int_t)run->id, "a",
                            run->attempt, "f", run->agent->name, "s",
                            run->stage >= 0 ? json_integer(run->stage) : json_null(), "i",
                            run->input, "q", clean);
    s_record(orch, &orch->hitl, run, s_dump(rec));
    json_decref(rec);
}

//  An answer to run's step (from an agent or a pull API worker): kind and
//  its payload as JSON.
static void
s_step_answer(s_orch_t *orch, s_run_t *run, cd_kind_t kind, json_t *payload)
{
    orch->steps++;
    run->deadline_us = 0;
    s_agent_t *agent = run->agent;
    if (kind == CD_KIND_RESULT) {
        json_t *output = json_object_get(payload, "output");
        const char *handoff_to = json_string_value(json_object_get(payload, "handoff_to"));
        char next[S_NAME_MAX + 1] = "";
        if (handoff_to) {
            snprintf(next, sizeof next, "%s", handoff_to);
        }
        s_step_result(orch, run, json_incref(output ? output : json_null()),
                      handoff_to ? next : NULL);
    } else if (kind == CD_KIND_ERROR) {
        const char *code = json_string_value(json_object_get(payload, "code"));
        const char *message = json_string_value(json_object_get(payload, "message"));
        const json_t *retryable = json_object_get(payload, "retryable");
        const json_t *after = json_object_get(payload, "retry_after_ms");
        s_step_failed(orch, run, code ? code : "agent_error", message ? message : "",
                      json_is_true(retryable),
                      json_is_integer(after) && json_integer_value(after) >= 0
                          ? (int64_t)json_integer_value(after)
                          : -1);
    } else {
        s_step_hitl(orch, run, json_incref(payload));
    }
    s_slot_freed(orch, agent);
}

//  An envelope from an agent: the answer to a step, if it is the one in
//  flight.
static void
s_agent_answer(s_orch_t *orch, const cd_envelope_t *env)
{
    if (env->task_id <= 0) {
        cd_log_warn(cd_actor_name(orch->self), "an answer nobody waits for", "{s:s, s:s#}", "kind",
                    cd_kind_name(env->kind), "from", env->from.ptr ? env->from.ptr : "",
                    (int)env->from.len);
        return;
    }
    s_run_t *run = s_run(orch, env->task_id);
    if (!run || run->state != S_RUNNING || run->agent->remote ||
        memcmp(run->step_id, env->parent_id, CD_ENV_UUID_SIZE) != 0) {
        cd_log_debug(cd_actor_name(orch->self), "late or unknown answer discarded", "{s:I, s:s}",
                     "task_id", (json_int_t)env->task_id, "kind", cd_kind_name(env->kind));
        return;
    }
    json_t *payload = NULL;
    const char *why = NULL;
    if (env->payload_type != CD_PAYLOAD_MAP ||
        cd_mpjson_decode(env->payload, &payload, &why) != 0 || !json_is_object(payload)) {
        json_decref(payload);
        payload = json_pack("{s:s, s:s, s:b}", "code", "bad_answer", "message",
                            why ? why : "the answer's payload is not a map", "retryable", false);
        s_step_answer(orch, run, CD_KIND_ERROR, payload);
    } else {
        s_step_answer(orch, run, env->kind, payload);
    }
    json_decref(payload);
}

//  --- acknowledgements -------------------------------------------------------------------

static void
s_advance_ack(s_orch_t *orch, s_rec_t **recs, size_t n, const char *answer)
{
    size_t n_applied = 0;
    int64_t *applied = s_answer_ids(answer, &n_applied, NULL);
    for (size_t i = 0; i < n; i++) {
        s_run_t *run = s_rec_run(orch, recs[i]);
        if (!run) {
            continue;
        }
        if (!s_has(applied, n_applied, run->id)) {
            s_reply_completion(orch, run, NULL);
            s_run_free(orch, run);
            continue;
        }
        if (!run->next_agent) {
            orch->completed++;
            s_reply_completion(orch, run, "done");
            s_run_free(orch, run);
            continue;
        }
        s_reply_completion(orch, run, "in_progress");
        json_decref(run->input);
        run->input = run->output;
        run->output = NULL;
        json_decref(run->hitl);
        run->hitl = NULL;
        run->stage = run->next_stage;
        s_agent_t *next = run->next_agent;
        run->next_agent = NULL;
        if (!s_servable(next)) {
            s_release(orch, run, "agent_unavailable", "the next agent is not on this node");
        } else {
            s_enqueue(orch, run, next);
        }
    }
    free(applied);
}

static int s_claim_timer(cd_actor_t *self, void *arg);

static void
s_fail_ack(s_orch_t *orch, s_rec_t **recs, size_t n, const char *answer)
{
    json_t *list = NULL;
    size_t n_applied = 0;
    int64_t *applied = s_answer_ids(answer, &n_applied, &list);
    int64_t soonest = -1;
    for (size_t i = 0; i < n; i++) {
        s_run_t *run = s_rec_run(orch, recs[i]);
        if (!run) {
            continue;
        }
        json_t *item = s_answer_for(list, run->id);
        const char *status = json_string_value(json_object_get(item, "status"));
        s_reply_completion(orch, run, status);
        if (status && streq(status, "todo")) {
            //  Claim it again when its backoff has passed.
            json_t *rec = json_loads(recs[i]->text, 0, NULL);
            int64_t b = s_json_int(rec, "b", 0);
            json_decref(rec);
            soonest = soonest < 0 || b < soonest ? b : soonest;
        }
        s_run_free(orch, run);
    }
    if (soonest >= 0) {
        //  One timer for the soonest backoff (a later one is caught by the
        //  claims that follow, or the scan).
        int64_t due = s_mono_us() + (soonest + 5) * 1000;
        if (!orch->retry_due_us || due < orch->retry_due_us) {
            orch->retry_due_us = due;
            cd_actor_after(orch->self, (int)(soonest < 1 ? 1 : soonest + 5), s_claim_timer, orch);
        }
    }
    json_decref(list);
    free(applied);
}

static void
s_hitl_ack(s_orch_t *orch, s_rec_t **recs, size_t n, const char *answer)
{
    size_t n_applied = 0;
    int64_t *applied = s_answer_ids(answer, &n_applied, NULL);
    for (size_t i = 0; i < n; i++) {
        s_run_t *run = s_rec_run(orch, recs[i]);
        if (run) {
            s_reply_completion(orch, run,
                               s_has(applied, n_applied, run->id) ? "waiting_human" : NULL);
            s_run_free(orch, run);
        }
    }
    free(applied);
}

//  A single record the database refused (a value it cannot take): the
//  task fails with the reason, or, for a failure record, the run is let
//  go (its lease runs out and recovery takes the task back).
static void
s_record_rejected(s_orch_t *orch, s_batch_t *batch, s_rec_t *rec, const char *why)
{
    s_run_t *run = s_rec_run(orch, rec);
    cd_log_error(cd_actor_name(orch->self), "a step record was refused", "{s:s, s:I, s:s}", "stmt",
                 batch->stmt, "task_id", (json_int_t)rec->id, "error", why ? why : "?");
    if (!run) {
        return;
    }
    if (batch == &orch->fail) {
        s_reply_completion(orch, run, NULL);
        s_run_free(orch, run);
        return;
    }
    s_step_failed(orch, run, "record_rejected",
                  why ? why : "the database refused the step's record", false, -1);
}

//  --- claims ----------------------------------------------------------------------------------

static void s_claim(s_orch_t *orch);

static int s_claim_paced(cd_actor_t *self, void *arg);

//  Something may be claimable: claim now, or after the claim out, or (when
//  the last read found nothing this node could start) after a short pause,
//  so that a stream of freed slots with nothing to fill them does not turn
//  into a stream of reads.
static void
s_want_claim(s_orch_t *orch)
{
    if (orch->claim_out || !orch->recovered) {
        orch->claim_wanted = true;
        return;
    }
    int64_t now = s_mono_us();
    if (now < orch->claim_not_before) {
        orch->claim_wanted = true;
        if (!orch->claim_timer) {
            orch->claim_timer = true;
            int ms = (int)((orch->claim_not_before - now) / 1000) + 1;
            cd_actor_after(orch->self, ms, s_claim_paced, orch);
        }
        return;
    }
    s_claim(orch);
}

static int
s_claim_paced(cd_actor_t *self, void *arg)
{
    s_orch_t *orch = (s_orch_t *)arg;
    orch->claim_timer = false;
    if (orch->claim_wanted) {
        s_want_claim(orch);
    }
    (void)self;
    return 0;
}

static int
s_claim_timer(cd_actor_t *self, void *arg)
{
    s_orch_t *orch = (s_orch_t *)arg;
    if (orch->retry_due_us && orch->retry_due_us <= s_mono_us() + 1000) {
        orch->retry_due_us = 0;
    }
    s_want_claim(orch);
    (void)self;
    return 0;
}

//  Adds a key {"k", "v", "n"} to keys.
static void
s_key_add(json_t *keys, const char *k, const char *v, int n, int max)
{
    if (n <= 0) {
        return;
    }
    json_array_append_new(keys,
                          json_pack("{s:s, s:s, s:i}", "k", k, "v", v, "n", n < max ? n : max));
}

//  The keys this node can serve now, each with the free slots behind it.
static json_t *
s_claim_keys(s_orch_t *orch)
{
    json_t *keys = json_array();
    zhashx_t *roles = zhashx_new();
    zhashx_set_destructor(roles, NULL);
    for (s_agent_t *agent = (s_agent_t *)zhashx_first(orch->agents); agent;
         agent = (s_agent_t *)zhashx_next(orch->agents)) {
        int n = s_free(agent);
        if (n <= 0) {
            continue;
        }
        s_key_add(keys, "agent", agent->name, n, orch->cfg.claim_max);
        if (agent->role) {
            intptr_t sum = (intptr_t)zhashx_lookup(roles, agent->role) + n;
            zhashx_update(roles, agent->role, (void *)sum);
        }
    }
    for (void *sum = zhashx_first(roles); sum; sum = zhashx_next(roles)) {
        s_key_add(keys, "role", (const char *)zhashx_cursor(roles), (int)(intptr_t)sum,
                  orch->cfg.claim_max);
    }
    zhashx_destroy(&roles);
    for (s_team_t *team = (s_team_t *)zhashx_first(orch->teams); team;
         team = (s_team_t *)zhashx_next(orch->teams)) {
        int n = 0;
        size_t i;
        const json_t *name;
        json_array_foreach(json_array_get(team->stages, 0), i, name)
        {
            n += s_free(s_agent(orch, json_string_value(name)));
        }
        char v[24];
        snprintf(v, sizeof v, "%" PRId64, team->id);
        s_key_add(keys, "team", v, n, orch->cfg.claim_max);
    }
    return keys;
}

//  The agent a candidate's next step needs, and its stage; NULL when no
//  agent with a free slot can take it now.
static s_agent_t *
s_match(s_orch_t *orch, const json_t *task, int *stage)
{
    const json_t *resume = json_object_get(task, "resume");
    if (json_is_object(resume)) {
        const json_t *st = json_object_get(resume, "stage");
        *stage = json_is_integer(st) ? (int)json_integer_value(st) : -1;
        s_agent_t *agent = s_agent(orch, json_string_value(json_object_get(resume, "agent")));
        return s_free(agent) > 0 ? agent : NULL;
    }
    *stage = 0;
    const json_t *assignee = json_object_get(task, "assignee");
    const char *name = json_string_value(json_object_get(assignee, "agent"));
    if (name) {
        s_agent_t *agent = s_agent(orch, name);
        return s_free(agent) > 0 ? agent : NULL;
    }
    const char *role = json_string_value(json_object_get(assignee, "role"));
    if (role) {
        return s_pick_role(orch, role);
    }
    s_team_t *team = s_team(orch, s_json_int(assignee, "team", 0));
    return team ? s_pick_member(orch, json_array_get(team->stages, 0), true) : NULL;
}

static void s_claim_answer(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg);

static void
s_claim(s_orch_t *orch)
{
    orch->claim_wanted = false;
    json_t *keys = s_claim_keys(orch);
    if (json_array_size(keys) == 0) {
        json_decref(keys);
        return;
    }
    cd_db_t *db = s_db(orch);
    if (!db) {
        json_decref(keys);
        return;
    }
    orch->last_claim_us = s_mono_us();
    char *text = s_dump(keys);
    json_decref(keys);
    char *found = NULL;
    int64_t read_started = s_mono_us();
    int rc = cd_q_orch_candidates(db, text, &found);
    s_slow(orch, read_started, "candidates read");

    free(text);
    if (rc != 0) {
        cd_log_warn(cd_actor_name(orch->self), "cannot read claimable tasks", "{s:s, s:s}", "error",
                    cd_strerror(rc), "detail",
                    cd_db_error(db) && cd_db_error(db)->message ? cd_db_error(db)->message : "");
        free(found);
        return;
    }
    json_t *candidates = json_loads(found, 0, NULL);
    free(found);
    size_t n = json_array_size(candidates);
    if (n == 0) {
        json_decref(candidates);
        orch->claim_not_before = s_mono_us() + S_CLAIM_IDLE_MS * 1000;
        return;
    }
    orch->picks = (s_pick_t *)zmalloc(n * sizeof *orch->picks);
    orch->n_picks = 0;
    json_t *recs = json_array();
    size_t i;
    json_t *task;
    json_array_foreach(candidates, i, task)
    {
        int64_t id = s_json_int(task, "id", 0);
        if (s_run(orch, id)) {
            continue;
        }
        int stage = 0;
        s_agent_t *agent = s_match(orch, task, &stage);
        if (!agent) {
            continue;
        }
        agent->reserved++;
        orch->picks[orch->n_picks++] = (s_pick_t){json_incref(task), agent, stage};
        json_array_append_new(recs, json_pack("{s:I, s:I, s:s, s:o}", "t", (json_int_t)id, "a",
                                              (json_int_t)s_json_int(task, "attempts", 0), "g",
                                              agent->name, "s",
                                              stage >= 0 ? json_integer(stage) : json_null()));
    }
    json_decref(candidates);
    if (orch->n_picks == 0) {
        free(orch->picks);
        orch->picks = NULL;
        json_decref(recs);
        orch->claim_not_before = s_mono_us() + S_CLAIM_IDLE_MS * 1000;
        return;
    }
    char *param = s_dump(recs);
    json_decref(recs);
    char lease[24];
    snprintf(lease, sizeof lease, "%d", orch->cfg.lease_ms);
    const char *params[] = {orch->cfg.node_id, lease, param};
    orch->claim_out = true;
    cd_pwriter_send(orch->writer, "orch.claim", 3, params, s_claim_answer, orch);
    free(param);
}

static void
s_claim_answer(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg)
{
    s_orch_t *orch = (s_orch_t *)arg;
    orch->claim_out = false;
    if (res->rc == CD_ECLOSED) {
        return; //  the picks are freed with the actor
    }
    size_t n_claimed = 0;
    int64_t *claimed = NULL;
    if (res->rc == 0) {
        claimed = s_answer_ids(res->value ? res->value : "[]", &n_claimed, NULL);
    } else {
        cd_log_error(cd_actor_name(self), "a claim was refused", "{s:s, s:s}", "sqlstate",
                     res->sqlstate, "error", res->message);
    }
    s_pick_t *picks = orch->picks;
    size_t n = orch->n_picks;
    orch->picks = NULL;
    orch->n_picks = 0;
    for (size_t i = 0; i < n; i++) {
        picks[i].agent->reserved--;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t id = s_json_int(picks[i].task, "id", 0);
        if (claimed && s_has(claimed, n_claimed, id) && !s_run(orch, id)) {
            //  The claim counted an attempt.
            json_object_set_new(picks[i].task, "attempts",
                                json_integer(s_json_int(picks[i].task, "attempts", 0) + 1));
            json_object_set_new(picks[i].task, "status", json_string("in_progress"));
            s_run_t *run = s_run_new(orch, picks[i].task, picks[i].agent, picks[i].stage);
            s_enqueue(orch, run, picks[i].agent);
        }
        json_decref(picks[i].task);
    }
    free(picks);
    free(claimed);
    //  A full claim may have left more behind; a poor one waits for the
    //  next reason to look.
    if (n_claimed > 0 || orch->claim_wanted) {
        s_want_claim(orch);
    }
}

//  --- resuming a task a human answered (or whose question expired) --------------------------

static void
s_resume(s_orch_t *orch, int64_t id)
{
    if (s_run(orch, id)) {
        return;
    }
    cd_db_t *db = s_db(orch);
    if (!db) {
        return; //  the lease runs out and recovery takes the task back
    }
    char *text = NULL;
    if (cd_q_orch_position(db, id, orch->cfg.node_id, &text) != 0) {
        free(text);
        return;
    }
    json_t *task = json_loads(text, 0, NULL);
    free(text);
    if (!task) {
        return;
    }
    const json_t *resume = json_object_get(task, "resume");
    const json_t *st = json_object_get(resume, "stage");
    int stage = json_is_integer(st) ? (int)json_integer_value(st) : -1;
    s_agent_t *agent = s_agent(orch, json_string_value(json_object_get(resume, "agent")));
    if (!agent) {
        //  Nothing recorded to resume (a task written by hand): start over.
        json_object_del(task, "resume");
        agent = s_match(orch, task, &stage);
    }
    if (!s_servable(agent)) {
        //  Not runnable here: its lease runs out and recovery gives it back
        //  to whichever node serves its agent.
        json_decref(task);
        return;
    }
    s_run_t *run = s_run_new(orch, task, agent, stage);
    json_decref(task);
    s_enqueue(orch, run, agent);
}

//  --- leases, recovery, HITL expiry -----------------------------------------------------------

typedef struct {
    s_orch_t *orch;  //  the actor
    int64_t *ids;    //  runs renewed
    bool *droppable; //  whether a run missing from the answer is gone (no write was out)
    size_t n;        //  how many
} s_renew_t;

static void
s_renew_answer(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg)
{
    s_renew_t *renew = (s_renew_t *)arg;
    s_orch_t *orch = renew->orch;
    orch->renew_out = false;
    if (res->rc == 0 && res->rc != CD_ECLOSED) {
        size_t n = 0;
        int64_t *renewed = s_answer_ids(res->value ? res->value : "[]", &n, NULL);
        for (size_t i = 0; i < renew->n; i++) {
            if (!renew->droppable[i] || s_has(renewed, n, renew->ids[i])) {
                continue;
            }
            //  Not ours any more (cancelled, archived, taken over): stop it.
            s_run_t *run = s_run(orch, renew->ids[i]);
            if (run && run->state != S_RECORDING) {
                cd_log_info(cd_actor_name(self), "a task left this node's hands", "{s:I}",
                            "task_id", (json_int_t)run->id);
                if (run->state == S_RUNNING) {
                    s_cancel_step(orch, run);
                    s_agent_t *agent = run->agent;
                    s_reply_completion(orch, run, NULL);
                    s_run_free(orch, run);
                    s_slot_freed(orch, agent);
                } else {
                    s_run_free(orch, run);
                }
            }
        }
        free(renewed);
    }
    free(renew->ids);
    free(renew->droppable);
    free(renew);
}

static void
s_renew(s_orch_t *orch)
{
    orch->last_renew_us = s_mono_us();
    size_t n = zhashx_size(orch->runs);
    if (n == 0 || orch->renew_out) {
        return;
    }
    s_renew_t *renew = (s_renew_t *)zmalloc(sizeof *renew);
    renew->orch = orch;
    renew->ids = (int64_t *)zmalloc(n * sizeof *renew->ids);
    renew->droppable = (bool *)zmalloc(n * sizeof *renew->droppable);
    size_t size = 3 + n * 21;
    char *json = (char *)malloc(size);
    assert(json);
    size_t len = 0;
    json[len++] = '[';
    for (s_run_t *run = (s_run_t *)zhashx_first(orch->runs); run;
         run = (s_run_t *)zhashx_next(orch->runs)) {
        renew->ids[renew->n] = run->id;
        renew->droppable[renew->n] = run->state != S_RECORDING;
        len += (size_t)snprintf(json + len, size - len, "%s%" PRId64, renew->n ? "," : "", run->id);
        renew->n++;
    }
    json[len++] = ']';
    json[len] = '\0';
    char lease[24];
    snprintf(lease, sizeof lease, "%d", orch->cfg.lease_ms);
    const char *params[] = {orch->cfg.node_id, lease, json};
    orch->renew_out = true;
    cd_pwriter_send(orch->writer, "orch.renew", 3, params, s_renew_answer, renew);
    free(json);
}

static void
s_recover_answer(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg)
{
    s_orch_t *orch = (s_orch_t *)arg;
    orch->recover_out = false;
    if (res->rc == CD_ECLOSED) {
        return;
    }
    if (res->rc != 0) {
        cd_log_error(cd_actor_name(self), "recovery refused", "{s:s}", "error", res->message);
        return;
    }
    json_t *list = json_loads(res->value ? res->value : "[]", 0, NULL);
    if (json_array_size(list) > 0) {
        cd_log_info(cd_actor_name(self), "tasks taken back from a stopped run", "{s:i, s:b}",
                    "tasks", (int)json_array_size(list), "start", !orch->recovered);
    }
    json_decref(list);
    if (!orch->recovered) {
        orch->recovered = true;
    }
    s_want_claim(orch);
}

static void
s_recover(s_orch_t *orch, bool mine)
{
    if (orch->recover_out) {
        return;
    }
    orch->recover_out = true;
    const char *params[] = {orch->cfg.node_id, mine ? "true" : "false"};
    cd_pwriter_send(orch->writer, "orch.recover", 2, params, s_recover_answer, orch);
}

static void
s_expire_answer(cd_actor_t *self, const cd_pwriter_result_t *res, void *arg)
{
    s_orch_t *orch = (s_orch_t *)arg;
    orch->expire_out = false;
    if (res->rc == CD_ECLOSED) {
        return;
    }
    if (res->rc != 0) {
        cd_log_error(cd_actor_name(self), "HITL expiry refused", "{s:s}", "error", res->message);
        return;
    }
    json_t *list = json_loads(res->value ? res->value : "[]", 0, NULL);
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *action = json_string_value(json_object_get(item, "action"));
        if (action && streq(action, "resume")) {
            s_resume(orch, s_json_int(item, "id", 0));
        }
    }
    json_decref(list);
}

static void
s_expire(s_orch_t *orch)
{
    orch->last_expire_us = s_mono_us();
    if (orch->expire_out) {
        return;
    }
    orch->expire_out = true;
    char lease[24];
    snprintf(lease, sizeof lease, "%d", orch->cfg.lease_ms);
    const char *params[] = {orch->cfg.node_id, lease};
    cd_pwriter_send(orch->writer, "orch.expire", 2, params, s_expire_answer, orch);
}

//  --- the pull API -----------------------------------------------------------------------------

static void
s_poll(s_orch_t *orch, const cd_envelope_t *env, json_t *body)
{
    cd_str_t reply;
    if (!cd_envelope_header(env, "reply_to", &reply)) {
        reply = env->from;
    }
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "%.*s", (int)reply.len, reply.ptr ? reply.ptr : "");
    const char *name = json_string_value(json_object_get(body, "agent"));
    s_agent_t *agent = s_agent(orch, name);
    if (!agent || !agent->listed) {
        //  A new agent may not be in the directory yet.
        s_refresh(orch);
        agent = s_agent(orch, name);
    }
    if (!agent || !agent->listed || !agent->remote) {
        s_reply(orch, to, env->id, 404,
                "{\"error\":{\"code\":\"not_found\",\"message\":\"no remote agent of that name\","
                "\"details\":{\"field\":\"name\"}}}");
        return;
    }
    int64_t wait_ms = s_json_int(body, "wait_ms", 0);
    s_poll_t *poll = (s_poll_t *)zmalloc(sizeof *poll);
    memcpy(poll->id, env->id, CD_ENV_UUID_SIZE);
    snprintf(poll->reply_to, sizeof poll->reply_to, "%s", to);
    poll->deadline_us = s_mono_us() + wait_ms * 1000;
    poll->agent = agent;
    poll->handle = zlistx_add_end(agent->polls, poll);
    s_pump(orch, agent);
    if (zlistx_size(agent->queue) == 0 && zlistx_find(agent->polls, poll)) {
        s_want_claim(orch);
    }
}

static void
s_complete(s_orch_t *orch, const cd_envelope_t *env, json_t *request)
{
    cd_str_t reply;
    if (!cd_envelope_header(env, "reply_to", &reply)) {
        reply = env->from;
    }
    char to[CD_ENV_MAX_NAME + 1];
    snprintf(to, sizeof to, "%.*s", (int)reply.len, reply.ptr ? reply.ptr : "");
    int64_t id = s_json_int(request, "task_id", 0);
    const char *text = json_string_value(json_object_get(request, "body"));
    json_t *body = text ? json_loads(text, 0, NULL) : NULL;
    const char *step = json_string_value(json_object_get(body, "step"));
    s_run_t *run = s_run(orch, id);
    char hex[2 * CD_ENV_UUID_SIZE + 1] = "";
    if (run) {
        sodium_bin2hex(hex, sizeof hex, run->step_id, CD_ENV_UUID_SIZE);
    }
    if (!run || run->state != S_RUNNING || !run->agent->remote || !step || !streq(step, hex)) {
        s_reply(orch, to, env->id, 409,
                "{\"error\":{\"code\":\"conflict\",\"message\":\"that step is not the one in "
                "flight (finished, timed out, cancelled, or not this task's)\",\"details\":"
                "{\"field\":\"step\"}}}");
        json_decref(body);
        return;
    }
    run->reply_to = strdup(to);
    memcpy(run->reply_id, env->id, CD_ENV_UUID_SIZE);
    json_t *error = json_object_get(body, "error");
    json_t *hitl = json_object_get(body, "hitl");
    if (json_is_object(error)) {
        s_step_answer(orch, run, CD_KIND_ERROR, error);
    } else if (json_is_object(hitl)) {
        s_step_answer(orch, run, CD_KIND_HITL_REQUEST, hitl);
    } else {
        s_step_answer(orch, run, CD_KIND_RESULT, body);
    }
    json_decref(body);
}

//  --- timers --------------------------------------------------------------------------------

//  Agents that restarted under a running step: the step is lost.
static void
s_registry_check(s_orch_t *orch)
{
    cd_registry_t *registry = cd_actor_runtime(orch->self)->registry;
    uint64_t gen = cd_registry_generation(registry);
    if (gen == orch->registry_gen) {
        return;
    }
    orch->registry_gen = gen;
    zlistx_t *lost = zlistx_new();
    for (s_run_t *run = (s_run_t *)zhashx_first(orch->runs); run;
         run = (s_run_t *)zhashx_next(orch->runs)) {
        if (run->state != S_RUNNING || run->agent->remote) {
            continue;
        }
        char name[CD_REGISTRY_MAX_NAME];
        snprintf(name, sizeof name, "agent/%s", run->agent->name);
        cd_registry_entry_t entry;
        if (cd_registry_get(registry, name, &entry) != 0 || entry.restarts != run->restarts ||
            entry.status == CD_ACTOR_STOPPED || entry.status == CD_ACTOR_DEAD) {
            zlistx_add_end(lost, run);
        }
    }
    for (s_run_t *run = (s_run_t *)zlistx_first(lost); run; run = (s_run_t *)zlistx_next(lost)) {
        s_agent_t *agent = run->agent;
        s_step_failed(orch, run, "agent_restarted",
                      "the agent stopped or restarted while it ran the step", true, -1);
        s_slot_freed(orch, agent);
    }
    zlistx_destroy(&lost);
    s_refresh(orch);
}

static int s_tick_one(cd_actor_t *self, void *arg);

static int
s_tick(cd_actor_t *self, void *arg)
{
    int64_t started = s_mono_us();
    int rc = s_tick_one(self, arg);
    s_slow((s_orch_t *)arg, started, "tick");
    return rc;
}

static int
s_tick_one(cd_actor_t *self, void *arg)
{
    s_orch_t *orch = (s_orch_t *)arg;
    int64_t now = s_mono_us();
    cd_pwriter_tick(orch->writer);
    //  Step timeouts.
    zlistx_t *late = NULL;
    for (s_run_t *run = (s_run_t *)zhashx_first(orch->runs); run;
         run = (s_run_t *)zhashx_next(orch->runs)) {
        if (run->state == S_RUNNING && run->deadline_us && run->deadline_us <= now) {
            if (!late) {
                late = zlistx_new();
            }
            zlistx_add_end(late, run);
        }
    }
    for (s_run_t *run = late ? (s_run_t *)zlistx_first(late) : NULL; run;
         run = (s_run_t *)zlistx_next(late)) {
        s_cancel_step(orch, run);
        s_agent_t *agent = run->agent;
        char message[96];
        snprintf(message, sizeof message, "the step took longer than timeout_ms (%" PRId64 " ms)",
                 run->timeout_ms);
        s_step_failed(orch, run, "timeout", message, true, -1);
        s_slot_freed(orch, agent);
    }
    zlistx_destroy(&late);
    //  Polls that waited long enough.
    for (s_agent_t *agent = (s_agent_t *)zhashx_first(orch->agents); agent;
         agent = (s_agent_t *)zhashx_next(orch->agents)) {
        s_poll_t *poll = (s_poll_t *)zlistx_first(agent->polls);
        while (poll) {
            s_poll_t *next = (s_poll_t *)zlistx_next(agent->polls);
            if (poll->deadline_us <= now) {
                s_reply(orch, poll->reply_to, poll->id, 204, "");
                zlistx_delete(agent->polls, poll->handle);
                free(poll);
            }
            poll = next;
        }
    }
    s_registry_check(orch);
    if (now - orch->last_refresh_us >= (int64_t)orch->cfg.refresh_ms * 1000) {
        s_refresh(orch);
    }
    if (now - orch->last_renew_us >= (int64_t)orch->cfg.lease_ms * 1000 / 3) {
        s_renew(orch);
        if (orch->recovered) {
            s_recover(orch, false);
        }
    }
    if (now - orch->last_expire_us >= (int64_t)orch->cfg.hitl_check_ms * 1000) {
        s_expire(orch);
    }
    if (now - orch->last_claim_us >= (int64_t)orch->cfg.scan_ms * 1000) {
        orch->last_claim_us = now;
        s_want_claim(orch);
    }
    return 0;
}

//  --- the actor -------------------------------------------------------------------------------

static int
s_init(cd_actor_t *self, void *args, void **state_p, const char **why)
{
    const cd_orchestrator_args_t *a = (const cd_orchestrator_args_t *)args;
    if (!a || !a->conninfo || !a->node_id) {
        *why = "the orchestrator needs conninfo and node_id";
        return CD_EINVAL;
    }
    s_orch_t *orch = (s_orch_t *)zmalloc(sizeof *orch);
    orch->self = self;
    orch->cfg = *a;
    if (!orch->cfg.persist) {
        orch->cfg.persist = "persist";
    }
    orch->cfg.lease_ms = a->lease_ms > 0 ? a->lease_ms : CD_ORCH_LEASE_MS;
    orch->cfg.scan_ms = a->scan_ms > 0 ? a->scan_ms : CD_ORCH_SCAN_MS;
    orch->cfg.backoff_ms = a->backoff_ms > 0 ? a->backoff_ms : CD_ORCH_BACKOFF_MS;
    orch->cfg.backoff_max_ms = a->backoff_max_ms > 0 ? a->backoff_max_ms : CD_ORCH_BACKOFF_MAX_MS;
    orch->cfg.hitl_check_ms = a->hitl_check_ms > 0 ? a->hitl_check_ms : CD_ORCH_HITL_CHECK_MS;
    orch->cfg.refresh_ms = a->refresh_ms > 0 ? a->refresh_ms : CD_ORCH_REFRESH_MS;
    orch->cfg.claim_max = a->claim_max > 0 ? a->claim_max : CD_ORCH_CLAIM_MAX;
    orch->steps_max = cd_actor_runtime(self)->queue_hwm - S_STEPS_MARGIN;
    if (orch->steps_max < 16) {
        orch->steps_max = 16;
    }
    orch->writer = cd_pwriter_new(self, orch->cfg.persist, 0);
    //  A step never blocks the orchestrator: an agent whose queue is full
    //  (or that is being replaced) gets its step back later.
    orch->stepper_rt = *cd_actor_runtime(self);
    orch->stepper_rt.send_timeout_ms = 0;
    orch->stepper = cd_mailer_new(&orch->stepper_rt, cd_actor_name(self));
    orch->pack = cd_pack_new();
    orch->agents = zhashx_new();
    zhashx_set_destructor(orch->agents, s_agent_destroy);
    orch->teams = zhashx_new();
    zhashx_set_destructor(orch->teams, s_team_destroy);
    orch->runs = zhashx_new();
    zhashx_set_key_hasher(orch->runs, s_i64_hash);
    zhashx_set_key_comparator(orch->runs, s_i64_compare);
    zhashx_set_key_duplicator(orch->runs, NULL);
    zhashx_set_key_destructor(orch->runs, NULL);
    orch->advance = (s_batch_t){"orch.advance", s_advance_ack, zlistx_new(), 0};
    orch->fail = (s_batch_t){"orch.fail", s_fail_ack, zlistx_new(), 0};
    orch->hitl = (s_batch_t){"orch.hitl", s_hitl_ack, zlistx_new(), 0};
    *state_p = orch;
    //  The database may be away: reads retry, writes wait in persist.
    s_refresh(orch);
    //  Crash recovery first: what this node id held when it stopped goes
    //  back to todo before anything is claimed; deadlines that passed
    //  meanwhile are applied.
    s_recover(orch, true);
    s_expire(orch);
    orch->last_renew_us = s_mono_us();
    cd_actor_every(self, S_TICK_MS, s_tick, orch);
    return 0;
}

static void
s_fini(cd_actor_t *self, void **state_p)
{
    s_orch_t *orch = (s_orch_t *)*state_p;
    if (!orch) {
        return;
    }
    //  First: the continuations of writes out free their arguments.
    cd_pwriter_destroy(&orch->writer);
    s_run_t *run;
    while ((run = (s_run_t *)zhashx_first(orch->runs)) != NULL) {
        s_run_free(orch, run);
    }
    zhashx_destroy(&orch->runs);
    for (s_agent_t *agent = (s_agent_t *)zhashx_first(orch->agents); agent;
         agent = (s_agent_t *)zhashx_next(orch->agents)) {
        s_poll_t *poll;
        while ((poll = (s_poll_t *)zlistx_first(agent->polls)) != NULL) {
            zlistx_delete(agent->polls, poll->handle);
            free(poll);
        }
    }
    zhashx_destroy(&orch->agents);
    zhashx_destroy(&orch->teams);
    s_batch_t *batches[] = {&orch->advance, &orch->fail, &orch->hitl};
    for (size_t i = 0; i < 3; i++) {
        s_rec_t *rec;
        while ((rec = (s_rec_t *)zlistx_first(batches[i]->recs)) != NULL) {
            zlistx_delete(batches[i]->recs, zlistx_cursor(batches[i]->recs));
            s_rec_free(&rec);
        }
        zlistx_destroy(&batches[i]->recs);
    }
    for (size_t i = 0; i < orch->n_picks; i++) {
        json_decref(orch->picks[i].task);
    }
    free(orch->picks);
    cd_pack_destroy(&orch->pack);
    cd_mailer_destroy(&orch->stepper);
    cd_db_close(&orch->db);
    cd_log_debug(cd_actor_name(self), "stopped", "{s:I, s:I}", "steps", (json_int_t)orch->steps,
                 "completed", (json_int_t)orch->completed);
    free(orch);
    *state_p = NULL;
}

//  A control envelope: kicks and the pull API.
static void
s_control(s_orch_t *orch, const cd_envelope_t *env)
{
    cd_str_t op;
    if (!cd_envelope_header(env, "op", &op)) {
        return;
    }
    if (cd_str_eq(op, "kick")) {
        //  New work: worth a read even right after one that found none.
        orch->claim_not_before = 0;
        s_want_claim(orch);
    } else if (cd_str_eq(op, "cancel")) {
        s_run_t *run = s_run(orch, env->task_id);
        if (!run) {
            return;
        }
        if (run->state == S_RUNNING) {
            s_cancel_step(orch, run);
            s_agent_t *agent = run->agent;
            s_reply_completion(orch, run, NULL);
            s_run_free(orch, run);
            s_slot_freed(orch, agent);
        } else if (run->state == S_QUEUED) {
            s_run_free(orch, run);
            s_want_claim(orch);
        }
        //  A run being recorded learns it from its record's answer.
    } else if (cd_str_eq(op, "resume")) {
        s_resume(orch, env->task_id);
    } else if (cd_str_eq(op, "agents")) {
        s_refresh(orch);
    } else if (cd_str_eq(op, "next") || cd_str_eq(op, "complete")) {
        json_t *body = NULL;
        if (env->payload_type != CD_PAYLOAD_MAP ||
            cd_mpjson_decode(env->payload, &body, NULL) != 0) {
            return;
        }
        if (cd_str_eq(op, "next")) {
            s_poll(orch, env, body);
        } else {
            s_complete(orch, env, body);
        }
        json_decref(body);
    }
}

static int s_handle_one(cd_actor_t *self, void *state, const cd_envelope_t *env);

static int
s_handle(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    int64_t started = s_mono_us();
    int rc = s_handle_one(self, state, env);
    s_slow((s_orch_t *)state, started, cd_kind_name(env->kind));
    return rc;
}

static int
s_handle_one(cd_actor_t *self, void *state, const cd_envelope_t *env)
{
    s_orch_t *orch = (s_orch_t *)state;
    if (cd_pwriter_handle(orch->writer, env)) {
        return 0;
    }
    switch (env->kind) {
    case CD_KIND_RESULT:
    case CD_KIND_ERROR:
    case CD_KIND_HITL_REQUEST:
        s_agent_answer(orch, env);
        break;
    case CD_KIND_CONTROL:
        s_control(orch, env);
        break;
    default:
        break;
    }
    (void)self;
    return 0;
}

const cd_actor_ops_t cd_orchestrator_ops = {
    .kind = "orchestrator",
    .init = s_init,
    .handle = s_handle,
    .fini = s_fini,
};
