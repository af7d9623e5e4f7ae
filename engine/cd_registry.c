/*  cd_registry: the node's directory of actors (see cd_registry.h).

    A czmq zhashx under a mutex, plus an atomic generation counter that lets
    readers skip the mutex while nothing changed. Entries are never freed
    while the registry lives except by cd_registry_remove, so a name's
    counters and log lines survive its restarts.

    Log lines: each entry has a ring of CD_REGISTRY_LOG_KEEP line texts,
    allocated at its first line. The cd_log sink looks the actor up under the
    same mutex (a line is rare next to a message, and this keeps one lookup
    per line); the copy of the text is made before taking it and the line it
    replaces is freed after. */
#include "cd_registry.h"
#include "cd_error.h"
#include "cd_log.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>

struct cd_registry {
    char *node_id;                    //  this node's id
    pthread_mutex_t lock;             //  guards entries
    zhashx_t *entries;                //  name -> s_entry_t (owned)
    atomic_uint_fast64_t gen;         //  bumped on every status change
    atomic_uint_fast64_t deads;       //  dead letters, all names
    atomic_int hung;                  //  abandoned threads not yet ended
    bool log_sink;                    //  installed as a cd_log sink
    zlistx_t *counts;                 //  attached cd_msg_counts_t (guarded by lock)
    uint64_t retired[CD_KIND_COUNT_]; //  counts of detached senders (guarded by lock)
    uint32_t incarnations;            //  inboxes bound so far, all names (guarded by lock)
};

typedef struct {
    cd_registry_entry_t pub; //  what cd_registry_get and _list copy
    char **log;              //  ring of CD_REGISTRY_LOG_KEEP lines (owned); NULL until the first
    size_t log_next;         //  slot the next line goes to
    size_t log_count;        //  lines held
    cd_queue_meter_t *meter; //  its inbox's meter (a reference)
} s_entry_t;

static void
s_entry_destroy(void **item_p)
{
    s_entry_t *entry = (s_entry_t *)*item_p;
    cd_registry_meter_release(&entry->meter);
    if (entry->log) {
        for (size_t i = 0; i < CD_REGISTRY_LOG_KEEP; i++) {
            free(entry->log[i]);
        }
        free(entry->log);
    }
    free(entry);
    *item_p = NULL;
}

//  --- the log sink (any logging thread) ------------------------------------------

static bool
s_log_wants(void *arg, const char *actor)
{
    cd_registry_t *self = (cd_registry_t *)arg;
    pthread_mutex_lock(&self->lock);
    bool known = zhashx_lookup(self->entries, actor) != NULL;
    pthread_mutex_unlock(&self->lock);
    return known;
}

static void
s_log_write(void *arg, cd_log_level_t level, const char *actor, const char *text, size_t len)
{
    cd_registry_t *self = (cd_registry_t *)arg;
    char *line = (char *)malloc(len + 1);
    assert(line);
    memcpy(line, text, len + 1);
    pthread_mutex_lock(&self->lock);
    s_entry_t *entry = (s_entry_t *)zhashx_lookup(self->entries, actor);
    if (entry) {
        if (!entry->log) {
            entry->log = (char **)zmalloc(CD_REGISTRY_LOG_KEEP * sizeof(char *));
        }
        //  Swap the new line in; the oldest (if the ring is full) comes out.
        char *oldest = entry->log[entry->log_next];
        entry->log[entry->log_next] = line;
        entry->log_next = (entry->log_next + 1) % CD_REGISTRY_LOG_KEEP;
        if (entry->log_count < CD_REGISTRY_LOG_KEEP) {
            entry->log_count++;
        }
        line = oldest;
    }
    pthread_mutex_unlock(&self->lock);
    free(line); //  the line pushed out, or ours if the name went away meanwhile
}

static const cd_log_sink_t s_log_sink = {s_log_wants, s_log_write};

cd_registry_t *
cd_registry_new(const char *node_id)
{
    cd_registry_t *self = (cd_registry_t *)zmalloc(sizeof *self);
    self->node_id = strdup(node_id);
    assert(self->node_id);
    pthread_mutex_init(&self->lock, NULL);
    self->entries = zhashx_new();
    zhashx_set_destructor(self->entries, s_entry_destroy);
    atomic_init(&self->gen, 1);
    atomic_init(&self->deads, 0);
    atomic_init(&self->hung, 0);
    self->log_sink = cd_log_sink_add(&s_log_sink, self) == 0;
    if (!self->log_sink) {
        cd_log_warn("registry", "too many registries: actors' log lines are not kept", "{s:s, s:i}",
                    "node_id", node_id, "max", CD_LOG_SINK_MAX);
    }
    return self;
}

void
cd_registry_destroy(cd_registry_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_registry_t *self = *self_p;
    //  First: once this returns no logging thread is inside our callbacks.
    if (self->log_sink) {
        cd_log_sink_remove(&s_log_sink, self);
    }
    zhashx_destroy(&self->entries);
    zlistx_destroy(&self->counts);
    pthread_mutex_destroy(&self->lock);
    free(self->node_id);
    free(self);
    *self_p = NULL;
}

const char *
cd_registry_node_id(const cd_registry_t *self)
{
    return self->node_id;
}

int
cd_registry_endpoint(const cd_registry_t *self, const char *name, char *buf, size_t size)
{
    int n = snprintf(buf, size, "inproc://cd/%s/%s", self->node_id, name);
    return (n < 0 || (size_t)n >= size || strlen(name) >= CD_REGISTRY_MAX_NAME) ? CD_ETOOBIG : 0;
}

//  Messages waiting in an entry's inbox. Lock held.
static uint64_t
s_depth(const s_entry_t *entry)
{
    if (!entry->meter || !cd_registry_status_deliverable(entry->pub.status)) {
        return 0;
    }
    uint64_t in = atomic_load_explicit(&entry->meter->in, memory_order_relaxed);
    uint64_t out = atomic_load_explicit(&entry->meter->out, memory_order_relaxed);
    return in > out ? in - out : 0;
}

//  Finds or creates the entry for name. Lock held.
static cd_registry_entry_t *
s_entry(cd_registry_t *self, const char *name, bool create)
{
    s_entry_t *entry = (s_entry_t *)zhashx_lookup(self->entries, name);
    if (!entry && create) {
        entry = (s_entry_t *)zmalloc(sizeof *entry);
        snprintf(entry->pub.name, sizeof entry->pub.name, "%s", name);
        entry->meter = (cd_queue_meter_t *)zmalloc(sizeof *entry->meter);
        atomic_init(&entry->meter->refs, 1);
        zhashx_insert(self->entries, name, entry);
    }
    return entry ? &entry->pub : NULL;
}

void
cd_registry_set_status(cd_registry_t *self, const char *name, cd_actor_status_t status)
{
    pthread_mutex_lock(&self->lock);
    s_entry(self, name, true)->status = status;
    atomic_fetch_add(&self->gen, 1);
    pthread_mutex_unlock(&self->lock);
}

void
cd_registry_remove(cd_registry_t *self, const char *name)
{
    pthread_mutex_lock(&self->lock);
    zhashx_delete(self->entries, name);
    atomic_fetch_add(&self->gen, 1);
    pthread_mutex_unlock(&self->lock);
}

void
cd_registry_count_restart(cd_registry_t *self, const char *name)
{
    pthread_mutex_lock(&self->lock);
    s_entry(self, name, true)->restarts++;
    pthread_mutex_unlock(&self->lock);
}

void
cd_registry_count_dead_letter(cd_registry_t *self, const char *name)
{
    atomic_fetch_add(&self->deads, 1);
    pthread_mutex_lock(&self->lock);
    cd_registry_entry_t *entry = s_entry(self, name, false);
    if (entry) {
        entry->dead_letters++;
    }
    pthread_mutex_unlock(&self->lock);
}

cd_actor_status_t
cd_registry_status(cd_registry_t *self, const char *name)
{
    pthread_mutex_lock(&self->lock);
    cd_registry_entry_t *entry = s_entry(self, name, false);
    cd_actor_status_t status = entry ? entry->status : CD_ACTOR_ABSENT;
    pthread_mutex_unlock(&self->lock);
    return status;
}

void
cd_registry_bound(cd_registry_t *self, const char *name)
{
    pthread_mutex_lock(&self->lock);
    cd_registry_entry_t *entry = s_entry(self, name, true);
    entry->status = CD_ACTOR_STARTING;
    //  Unique across names and removals: an actor removed and started again
    //  (an agent reconfigured) must not reuse the number its old inbox had,
    //  or a sender still connected to that dead inbox would keep it.
    entry->incarnation = ++self->incarnations;
    atomic_fetch_add(&self->gen, 1);
    pthread_mutex_unlock(&self->lock);
}

cd_actor_status_t
cd_registry_lookup(cd_registry_t *self, const char *name, uint32_t *incarnation)
{
    pthread_mutex_lock(&self->lock);
    cd_registry_entry_t *entry = s_entry(self, name, false);
    cd_actor_status_t status = entry ? entry->status : CD_ACTOR_ABSENT;
    *incarnation = entry ? entry->incarnation : 0;
    pthread_mutex_unlock(&self->lock);
    return status;
}

bool
cd_registry_status_deliverable(cd_actor_status_t status)
{
    return status == CD_ACTOR_STARTING || status == CD_ACTOR_RUNNING ||
           status == CD_ACTOR_RESTARTING;
}

int
cd_registry_get(cd_registry_t *self, const char *name, cd_registry_entry_t *entry)
{
    pthread_mutex_lock(&self->lock);
    cd_registry_entry_t *found = s_entry(self, name, false);
    if (found) {
        *entry = *found;
        entry->queue_depth = s_depth((s_entry_t *)found);
    }
    pthread_mutex_unlock(&self->lock);
    return found ? 0 : CD_ENOTFOUND;
}

static int
s_compare_entries(const void *a, const void *b)
{
    return strcmp(((const cd_registry_entry_t *)a)->name, ((const cd_registry_entry_t *)b)->name);
}

size_t
cd_registry_list(cd_registry_t *self, cd_registry_entry_t *entries, size_t max)
{
    pthread_mutex_lock(&self->lock);
    size_t total = zhashx_size(self->entries);
    size_t n = 0;
    for (s_entry_t *entry = (s_entry_t *)zhashx_first(self->entries); entry && n < max;
         entry = (s_entry_t *)zhashx_next(self->entries)) {
        entries[n] = entry->pub;
        entries[n++].queue_depth = s_depth(entry);
    }
    pthread_mutex_unlock(&self->lock);
    qsort(entries, n, sizeof *entries, s_compare_entries);
    return total;
}

int
cd_registry_log_read(cd_registry_t *self, const char *name, size_t limit, char **json_p)
{
    *json_p = NULL;
    pthread_mutex_lock(&self->lock);
    s_entry_t *entry = (s_entry_t *)zhashx_lookup(self->entries, name);
    if (!entry) {
        pthread_mutex_unlock(&self->lock);
        return CD_ENOTFOUND;
    }
    size_t n = entry->log_count;
    if (limit > 0 && limit < n) {
        n = limit;
    }
    //  The oldest line wanted, counting back from the newest.
    size_t first = (entry->log_next + CD_REGISTRY_LOG_KEEP - n) % CD_REGISTRY_LOG_KEEP;
    size_t size = 3; //  [ ] NUL
    for (size_t i = 0; i < n; i++) {
        size += strlen(entry->log[(first + i) % CD_REGISTRY_LOG_KEEP]) + 1;
    }
    char *json = (char *)malloc(size);
    assert(json);
    char *at = json;
    *at++ = '[';
    for (size_t i = 0; i < n; i++) {
        const char *line = entry->log[(first + i) % CD_REGISTRY_LOG_KEEP];
        size_t len = strlen(line);
        if (i > 0) {
            *at++ = ',';
        }
        memcpy(at, line, len);
        at += len;
    }
    pthread_mutex_unlock(&self->lock);
    *at++ = ']';
    *at = '\0';
    *json_p = json;
    return 0;
}

uint64_t
cd_registry_generation(const cd_registry_t *self)
{
    return atomic_load_explicit(&((cd_registry_t *)self)->gen, memory_order_acquire);
}

uint64_t
cd_registry_dead_letters(const cd_registry_t *self)
{
    return atomic_load(&((cd_registry_t *)self)->deads);
}

void
cd_registry_count_hung(cd_registry_t *self, int delta)
{
    atomic_fetch_add(&self->hung, delta);
}

int
cd_registry_hung(const cd_registry_t *self)
{
    return atomic_load(&((cd_registry_t *)self)->hung);
}

const char *
cd_actor_status_name(cd_actor_status_t status)
{
    static const char *const names[] = {"absent",     "starting", "running",
                                        "restarting", "stopped",  "dead"};
    return (unsigned)status < sizeof names / sizeof names[0] ? names[status] : "unknown";
}

void
cd_registry_counts_attach(cd_registry_t *self, cd_msg_counts_t *counts)
{
    pthread_mutex_lock(&self->lock);
    if (!self->counts) {
        self->counts = zlistx_new();
    }
    zlistx_add_end(self->counts, counts);
    pthread_mutex_unlock(&self->lock);
}

void
cd_registry_counts_detach(cd_registry_t *self, cd_msg_counts_t *counts)
{
    pthread_mutex_lock(&self->lock);
    void *handle = self->counts ? zlistx_find(self->counts, counts) : NULL;
    if (handle) {
        zlistx_delete(self->counts, handle);
        for (int k = 0; k < CD_KIND_COUNT_; k++) {
            self->retired[k] += atomic_load_explicit(&counts->sent[k], memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&self->lock);
}

void
cd_registry_messages(cd_registry_t *self, uint64_t out[CD_KIND_COUNT_])
{
    pthread_mutex_lock(&self->lock);
    memcpy(out, self->retired, sizeof self->retired);
    for (cd_msg_counts_t *c = self->counts ? (cd_msg_counts_t *)zlistx_first(self->counts) : NULL;
         c; c = (cd_msg_counts_t *)zlistx_next(self->counts)) {
        for (int k = 0; k < CD_KIND_COUNT_; k++) {
            out[k] += atomic_load_explicit(&c->sent[k], memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&self->lock);
}

cd_queue_meter_t *
cd_registry_meter(cd_registry_t *self, const char *name)
{
    pthread_mutex_lock(&self->lock);
    s_entry_t *entry = (s_entry_t *)zhashx_lookup(self->entries, name);
    cd_queue_meter_t *meter = entry ? entry->meter : NULL;
    if (meter) {
        atomic_fetch_add(&meter->refs, 1);
    }
    pthread_mutex_unlock(&self->lock);
    return meter;
}

void
cd_registry_meter_release(cd_queue_meter_t **meter_p)
{
    cd_queue_meter_t *meter = meter_p ? *meter_p : NULL;
    if (!meter) {
        return;
    }
    *meter_p = NULL;
    if (atomic_fetch_sub(&meter->refs, 1) == 1) {
        free(meter);
    }
}
