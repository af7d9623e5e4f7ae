/*  cd_template: {{variable}} templates (API.md "Templates"), rendered by
    the API (POST /api/v1/templates/{id}/render) and by llm agents (their
    prompt), so both agree on every detail.

    A placeholder is "{{" name "}}", the name padded with spaces or not.
    String values are inserted as they are, others as compact JSON. Text
    without a closing "}}" is copied as it is.

    Pure function; any thread. */
#ifndef CD_ACTORS_TEMPLATE_H
#define CD_ACTORS_TEMPLATE_H

#include <jansson.h>

//  Renders body with variables (a JSON object; NULL: none). Returns the
//  text (caller frees), or NULL with *missing set to the first variable
//  that is absent (caller frees).
char *cd_template_render(const char *body, const json_t *variables, char **missing);

#endif
