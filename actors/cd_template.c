/*  cd_template: {{variable}} rendering (see cd_template.h).

    One pass over the body with strstr; the output grows by doubling.

    Interface: cd_template_render. */
#include "cd_template.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

char *
cd_template_render(const char *body, const json_t *variables, char **missing)
{
    size_t cap = strlen(body) + 64, len = 0;
    char *out = (char *)malloc(cap);
    assert(out);
    const char *p = body;
    while (*p) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        const char *copy_end = close ? open : p + strlen(p);
        size_t chunk = (size_t)(copy_end - p);
        char *value = NULL;
        if (close) {
            const char *n0 = open + 2, *n1 = close;
            while (n0 < n1 && *n0 == ' ') {
                n0++;
            }
            while (n1 > n0 && n1[-1] == ' ') {
                n1--;
            }
            char *name = strndup(n0, (size_t)(n1 - n0));
            assert(name);
            const json_t *v = variables ? json_object_get(variables, name) : NULL;
            if (!v) {
                *missing = name;
                free(out);
                return NULL;
            }
            free(name);
            value = json_is_string(v) ? strdup(json_string_value(v))
                                      : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            assert(value);
        }
        size_t vlen = value ? strlen(value) : 0;
        if (len + chunk + vlen + 1 > cap) {
            cap = (len + chunk + vlen + 1) * 2;
            char *grown = (char *)realloc(out, cap);
            assert(grown); //  out of memory aborts (STYLE.md)
            out = grown;
        }
        memcpy(out + len, p, chunk);
        len += chunk;
        if (value) {
            memcpy(out + len, value, vlen);
            len += vlen;
            free(value);
        }
        p = close ? close + 2 : copy_end;
    }
    out[len] = '\0';
    return out;
}
