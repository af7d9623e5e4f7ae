/*  cd_router: route table and matching (see cd_router.h).

    Patterns are split into segments once, when added; a match splits the
    path as it walks it and compares segment by segment, so matching costs
    no allocation. Routes are kept in the order added and tried in that
    order; with a few dozen routes a linear walk is a few hundred
    nanoseconds, well under the cost of anything a route then does. */
#include "cd_router.h"
#include "cd_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *text; //  segment text (literal, or the parameter name)
    size_t len;       //  its length
    bool param;       //  a `{name}` segment
} s_segment_t;

typedef struct {
    const cd_route_t *route;                     //  borrowed
    s_segment_t segments[CD_ROUTE_MAX_SEGMENTS]; //  compiled pattern
    size_t n_segments;                           //  entries in segments
} s_entry_t;

struct cd_router {
    s_entry_t *entries; //  in the order added
    size_t n_entries;   //  entries used
};

cd_router_t *
cd_router_new(void)
{
    cd_router_t *self = (cd_router_t *)calloc(1, sizeof *self);
    if (!self) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    return self;
}

void
cd_router_destroy(cd_router_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->entries);
        free(*self_p);
        *self_p = NULL;
    }
}

//  Splits a pattern into segments. Returns 0 or CD_EINVAL.
static int
s_compile(const char *pattern, s_entry_t *entry)
{
    if (!pattern || pattern[0] != '/') {
        return CD_EINVAL;
    }
    entry->n_segments = 0;
    size_t n_params = 0;
    const char *at = pattern + 1;
    while (*at) {
        const char *slash = strchr(at, '/');
        size_t len = slash ? (size_t)(slash - at) : strlen(at);
        if (len == 0 || entry->n_segments == CD_ROUTE_MAX_SEGMENTS) {
            return CD_EINVAL;
        }
        s_segment_t *segment = &entry->segments[entry->n_segments++];
        if (at[0] == '{') {
            if (len < 3 || at[len - 1] != '}' || memchr(at + 1, '{', len - 2) ||
                memchr(at + 1, '}', len - 2) || ++n_params > CD_ROUTE_MAX_PARAMS) {
                return CD_EINVAL;
            }
            *segment = (s_segment_t){at + 1, len - 2, true};
        } else {
            if (memchr(at, '{', len) || memchr(at, '}', len)) {
                return CD_EINVAL;
            }
            *segment = (s_segment_t){at, len, false};
        }
        at += len + (slash ? 1 : 0);
        if (slash && !*at) {
            return CD_EINVAL; //  a trailing slash
        }
    }
    return 0;
}

int
cd_router_add(cd_router_t *self, const cd_route_t *routes, size_t n)
{
    s_entry_t *entries =
        (s_entry_t *)realloc(self->entries, (self->n_entries + n + 1) * sizeof(s_entry_t));
    if (!entries) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    self->entries = entries;
    for (size_t i = 0; i < n; i++) {
        s_entry_t *entry = &entries[self->n_entries + i];
        entry->route = &routes[i];
        if (!routes[i].method || !routes[i].handler || s_compile(routes[i].pattern, entry) != 0) {
            return CD_EINVAL;
        }
        for (size_t j = 0; j < self->n_entries + i; j++) {
            if (strcmp(entries[j].route->method, routes[i].method) == 0 &&
                strcmp(entries[j].route->pattern, routes[i].pattern) == 0) {
                return CD_EINVAL;
            }
        }
    }
    self->n_entries += n;
    return 0;
}

//  Matches path against one entry's segments, filling params. Works on
//  offsets: `pos` is where the next segment starts, path_len + 1 once the
//  last segment has been consumed.
static bool
s_match_path(const s_entry_t *entry, const char *path, size_t path_len, cd_route_match_t *match)
{
    if (path_len == 0 || path[0] != '/') {
        return false;
    }
    size_t pos = 1;
    size_t n_params = 0;
    for (size_t i = 0; i < entry->n_segments; i++) {
        if (pos > path_len) {
            return false;
        }
        const char *at = path + pos;
        const char *slash = memchr(at, '/', path_len - pos);
        size_t len = slash ? (size_t)(slash - at) : path_len - pos;
        const s_segment_t *segment = &entry->segments[i];
        if (len == 0) {
            return false;
        }
        if (segment->param) {
            match->params[n_params++] = (cd_route_param_t){segment->text, segment->len, at, len};
        } else if (len != segment->len || memcmp(at, segment->text, len) != 0) {
            return false;
        }
        pos += len + 1;
    }
    //  The whole path must be used: "/health" does not match "/health/x",
    //  nor "/health/".
    match->n_params = n_params;
    return pos == path_len + 1 || (entry->n_segments == 0 && path_len == 1);
}

static bool
s_method_is(const char *method, size_t method_len, const char *name)
{
    return strlen(name) == method_len && memcmp(method, name, method_len) == 0;
}

static void
s_allow_add(char *allow, const char *method)
{
    //  The list is short; skip duplicates (HEAD comes with GET).
    size_t len = strlen(method);
    for (const char *at = allow; (at = strstr(at, method)) != NULL; at += len) {
        if ((at == allow || at[-1] == ' ') && (at[len] == ',' || at[len] == '\0')) {
            return;
        }
    }
    size_t used = strlen(allow);
    snprintf(allow + used, CD_ROUTE_ALLOW_MAX - used, "%s%s", used ? ", " : "", method);
}

cd_route_result_t
cd_router_match(const cd_router_t *self, const char *method, size_t method_len, const char *path,
                size_t path_len, cd_route_match_t *match)
{
    bool path_found = false;
    bool head = s_method_is(method, method_len, "HEAD");
    match->route = NULL;
    match->n_params = 0;
    match->allow[0] = '\0';
    for (size_t i = 0; i < self->n_entries; i++) {
        const s_entry_t *entry = &self->entries[i];
        if (!s_match_path(entry, path, path_len, match)) {
            continue;
        }
        const char *route_method = entry->route->method;
        if (s_method_is(method, method_len, route_method) ||
            (head && strcmp(route_method, "GET") == 0)) {
            match->route = entry->route;
            match->index = i;
            return CD_ROUTE_FOUND;
        }
        path_found = true;
        s_allow_add(match->allow, route_method);
        if (strcmp(route_method, "GET") == 0) {
            s_allow_add(match->allow, "HEAD");
        }
    }
    match->n_params = 0;
    return path_found ? CD_ROUTE_NO_METHOD : CD_ROUTE_NO_PATH;
}

size_t
cd_router_size(const cd_router_t *self)
{
    return self->n_entries;
}

const cd_route_t *
cd_router_at(const cd_router_t *self, size_t i)
{
    return i < self->n_entries ? self->entries[i].route : NULL;
}

const char *
cd_route_param(const cd_route_match_t *match, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < match->n_params; i++) {
        if (match->params[i].name_len == name_len &&
            memcmp(match->params[i].name, name, name_len) == 0) {
            if (len) {
                *len = match->params[i].value_len;
            }
            return match->params[i].value;
        }
    }
    return NULL;
}

bool
cd_route_needs_auth(const cd_route_t *route)
{
    return (route->flags & (CD_ROUTE_AUTH | CD_ROUTE_ADMIN)) != 0;
}
