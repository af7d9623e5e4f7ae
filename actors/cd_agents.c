/*  cd_agents: agent kinds and the agents supervisor's child factory (see
    cd_agents.h).

    An echo agent's JSON config becomes the same key/value options a config
    file gives (cd_config_agent_t), so one parser (cd_echo_args_new) serves
    both sources.

    Interface: cd_agents_kind_valid, cd_agents_kind_local, cd_agents_check,
    cd_agents_factory. */
#include "cd_agents.h"

#include "cd_echo.h"
#include "cd_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_kinds[] = {"echo", "llm", "exec", "remote", NULL};

bool
cd_agents_kind_valid(const char *kind)
{
    for (const char *const *k = s_kinds; kind && *k; k++) {
        if (streq(*k, kind)) {
            return true;
        }
    }
    return false;
}

bool
cd_agents_kind_local(const char *kind)
{
    return kind && streq(kind, "echo");
}

//  Options of an echo config: scalars as text, as a config file gives
//  them; ask_human is a question (text) or an object (its JSON text, which
//  cd_echo_args_new tells from a question by its leading '{').
static int
s_echo_options(const json_t *config, cd_config_agent_t *agent, char *why, size_t why_size)
{
    size_t n = config ? json_object_size(config) : 0;
    agent->options = (cd_config_kv_t *)zmalloc((n + 1) * sizeof(cd_config_kv_t));
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)config, key, value)
    {
        char text[64];
        const char *v = NULL;
        char *dumped = NULL;
        if (json_is_null(value)) {
            continue;
        }
        if (streq(key, "ask_human")) {
            if (!json_is_string(value) && !json_is_object(value)) {
                snprintf(why, why_size, "config.ask_human: must be a question or an object");
                return CD_EINVAL;
            }
            if (json_is_string(value) && json_string_value(value)[0] == '{') {
                snprintf(why, why_size, "config.ask_human: a question may not start with '{'");
                return CD_EINVAL;
            }
            if (json_is_object(value)) {
                dumped = json_dumps(value, JSON_COMPACT);
            }
        }
        if (dumped) {
            v = dumped;
        } else if (json_is_string(value)) {
            v = json_string_value(value);
        } else if (json_is_integer(value)) {
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(value));
            v = text;
        } else if (json_is_boolean(value)) {
            v = json_is_true(value) ? "true" : "false";
        } else {
            snprintf(why, why_size, "config.%.60s: must be a string, an integer or a boolean", key);
            return CD_EINVAL;
        }
        agent->options[agent->n_options].key = strdup(key);
        agent->options[agent->n_options].value = strdup(v);
        agent->n_options++;
        free(dumped);
    }
    return 0;
}

static void
s_options_free(cd_config_agent_t *agent)
{
    for (size_t i = 0; i < agent->n_options; i++) {
        free(agent->options[i].key);
        free(agent->options[i].value);
    }
    free(agent->options);
    agent->options = NULL;
    agent->n_options = 0;
}

//  Builds echo args from a JSON config.
static int
s_echo_args(const char *name, const json_t *config, cd_echo_args_t **out, char *why,
            size_t why_size)
{
    cd_config_agent_t agent = {.name = (char *)name, .kind = "echo", .concurrency = 1};
    int rc = s_echo_options(config, &agent, why, why_size);
    char *errmsg = NULL;
    if (rc == 0 && cd_echo_args_new(&agent, out, &errmsg) != 0) {
        snprintf(why, why_size, "config: %s", errmsg ? errmsg : "invalid");
        rc = CD_EINVAL;
    }
    free(errmsg);
    s_options_free(&agent);
    return rc;
}

int
cd_agents_check(const char *kind, const json_t *config, char *why, size_t why_size)
{
    if (!cd_agents_kind_valid(kind)) {
        snprintf(why, why_size, "kind must be one of echo, llm, exec, remote");
        return CD_EINVAL;
    }
    if (config && !json_is_object(config)) {
        snprintf(why, why_size, "config must be an object");
        return CD_EINVAL;
    }
    if (streq(kind, "echo")) {
        cd_echo_args_t *args = NULL;
        int rc = s_echo_args("check", config, &args, why, why_size);
        cd_echo_args_destroy(&args);
        return rc;
    }
    if (streq(kind, "remote")) {
        return 0;
    }
    snprintf(why, why_size, "kind '%s' is not available in this build (available: echo, remote)",
             kind);
    return CD_ENOSYS;
}

//  --- the factory ---------------------------------------------------------------

static int
s_build(void *factory_arg, const cd_envelope_t *request, cd_child_spec_t *out, char *why,
        size_t why_size)
{
    cd_bin_t field;
    cd_str_t kind = {NULL, 0}, name = {NULL, 0}, config = {NULL, 0};
    if (cd_msgpack_map_find(request->payload, "kind", &field) != 0 ||
        cd_msgpack_read_str(field, &kind) != 0 ||
        cd_msgpack_map_find(request->payload, "name", &field) != 0 ||
        cd_msgpack_read_str(field, &name) != 0) {
        snprintf(why, why_size, "a start request needs name and kind");
        return CD_EINVAL;
    }
    if (cd_msgpack_map_find(request->payload, "config", &field) == 0) {
        cd_msgpack_read_str(field, &config);
    }
    char kind_s[32];
    snprintf(kind_s, sizeof kind_s, "%.*s", (int)kind.len, kind.ptr);
    char name_s[CD_CONFIG_NAME_MAX + 1];
    snprintf(name_s, sizeof name_s, "%.*s", (int)name.len, name.ptr);
    json_t *conf = NULL;
    if (config.len > 0) {
        conf = json_loadb(config.ptr, config.len, 0, NULL);
        if (!conf) {
            snprintf(why, why_size, "config is not JSON");
            return CD_EINVAL;
        }
    }
    int rc = cd_agents_check(kind_s, conf, why, why_size);
    if (rc == 0 && !cd_agents_kind_local(kind_s)) {
        snprintf(why, why_size, "agents of kind %s have no actor on this node", kind_s);
        rc = CD_EINVAL;
    }
    cd_echo_args_t *args = NULL;
    if (rc == 0) {
        rc = s_echo_args(name_s, conf, &args, why, why_size);
    }
    json_decref(conf);
    if (rc != 0) {
        return rc;
    }
    out->ops = &cd_echo_ops;
    out->args = args;
    out->restart = CD_RESTART_PERMANENT;
    return 0;
}

static void
s_release(void *factory_arg, void *child_args)
{
    cd_echo_args_t *args = (cd_echo_args_t *)child_args;
    cd_echo_args_destroy(&args);
}

const cd_child_factory_t cd_agents_factory = {s_build, s_release};
