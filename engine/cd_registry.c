/*  cd_registry: the node's directory of actors (see cd_registry.h).

    A czmq zhashx under a mutex, plus an atomic generation counter that lets
    readers skip the mutex while nothing changed. Entries are never freed
    while the registry lives except by cd_registry_remove, so a name's
    counters survive its restarts. */
#include "cd_registry.h"
#include "cd_error.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>

struct cd_registry {
    char *node_id;              //  this node's id
    pthread_mutex_t lock;       //  guards entries
    zhashx_t *entries;          //  name -> cd_registry_entry_t (owned)
    atomic_uint_fast64_t gen;   //  bumped on every status change
    atomic_uint_fast64_t deads; //  dead letters, all names
    atomic_int hung;            //  abandoned threads not yet ended
};

cd_registry_t *
cd_registry_new(const char *node_id)
{
    cd_registry_t *self = (cd_registry_t *)zmalloc(sizeof *self);
    self->node_id = strdup(node_id);
    assert(self->node_id);
    pthread_mutex_init(&self->lock, NULL);
    self->entries = zhashx_new();
    zhashx_set_destructor(self->entries, (zhashx_destructor_fn *)zstr_free);
    atomic_init(&self->gen, 1);
    atomic_init(&self->deads, 0);
    atomic_init(&self->hung, 0);
    return self;
}

void
cd_registry_destroy(cd_registry_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    cd_registry_t *self = *self_p;
    zhashx_destroy(&self->entries);
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

//  Finds or creates the entry for name. Lock held.
static cd_registry_entry_t *
s_entry(cd_registry_t *self, const char *name, bool create)
{
    cd_registry_entry_t *entry = (cd_registry_entry_t *)zhashx_lookup(self->entries, name);
    if (!entry && create) {
        entry = (cd_registry_entry_t *)zmalloc(sizeof *entry);
        snprintf(entry->name, sizeof entry->name, "%s", name);
        zhashx_insert(self->entries, name, entry);
    }
    return entry;
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
    entry->incarnation++;
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
    for (cd_registry_entry_t *entry = (cd_registry_entry_t *)zhashx_first(self->entries);
         entry && n < max; entry = (cd_registry_entry_t *)zhashx_next(self->entries)) {
        entries[n++] = *entry;
    }
    pthread_mutex_unlock(&self->lock);
    qsort(entries, n, sizeof *entries, s_compare_entries);
    return total;
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
