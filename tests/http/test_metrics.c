/*  cd_metrics: the Prometheus page from counters and a registry: request
    counts by route and status (with an "other" overflow), cumulative
    histogram buckets, limit and guard counters, actor figures, label
    escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_metrics.h"

#include <stdlib.h>
#include <string.h>

static int
s_handler(cd_http_rctx_t *rctx)
{
    return 0;
}

static const cd_route_t s_routes[] = {
    {"GET", "/a", s_handler, 0, NULL, NULL, 0, NULL, NULL, NULL},
    {"POST", "/b/{id}", s_handler, 0, NULL, NULL, 0, NULL, NULL, NULL},
};

static long long
s_value(const char *page, const char *series)
{
    size_t len = strlen(series);
    for (const char *at = strstr(page, series); at; at = strstr(at + 1, series)) {
        if ((at == page || at[-1] == '\n') && at[len] == ' ') {
            return atoll(at + len + 1);
        }
    }
    return -1;
}

static void
test_metrics_page_counts_requests_and_buckets(void **state)
{
    cd_router_t *router = cd_router_new();
    assert_int_equal(cd_router_add(router, s_routes, 2), 0);
    cd_metrics_t *metrics = cd_metrics_new(2);
    cd_metrics_request(metrics, 0, 200, 0.0001);
    cd_metrics_request(metrics, 0, 200, 0.003);
    cd_metrics_request(metrics, 0, 404, 20.0);
    cd_metrics_request(metrics, 1, 201, 0.2);
    cd_metrics_request(metrics, 99, 404, 0.0001); //  no route
    //  More distinct statuses than slots: the rest are "other".
    for (int status = 300; status < 320; status++) {
        cd_metrics_request(metrics, 1, status, 0.001);
    }
    cd_metrics_limit(metrics, CD_LIMIT_BODY_SIZE);
    cd_metrics_limit(metrics, CD_LIMIT_BODY_SIZE);
    cd_metrics_guard(metrics, CD_H2GUARD_RAPID_RESET);
    cd_metrics_call(metrics, CD_CALL_CLIENT_GONE);
    cd_metrics_connection(metrics, +1);
    cd_metrics_connection(metrics, +1);
    cd_metrics_connection(metrics, -1);
    cd_metrics_slow_client(metrics);
    assert_int_equal(cd_metrics_limit_hits(metrics, CD_LIMIT_BODY_SIZE), 2);
    assert_int_equal(cd_metrics_guard_closes(metrics, CD_H2GUARD_RAPID_RESET), 1);
    assert_int_equal(cd_metrics_calls(metrics, CD_CALL_CLIENT_GONE), 1);

    cd_registry_t *registry = cd_registry_new("m1");
    cd_registry_set_status(registry, "agent/we\"ird", CD_ACTOR_RUNNING);
    cd_registry_set_status(registry, "agent/b", CD_ACTOR_DEAD);
    cd_registry_count_restart(registry, "agent/b");
    cd_registry_count_restart(registry, "agent/b");
    cd_registry_count_dead_letter(registry, "agent/b");

    size_t size = 0;
    char *page = cd_metrics_render(metrics, router, registry, 12.5, &size);
    assert_int_equal(size, strlen(page));
    assert_int_equal(s_value(page, "cadre_http_requests_total{method=\"GET\",route=\"/a\","
                                   "status=\"200\"}"),
                     2);
    assert_int_equal(s_value(page, "cadre_http_requests_total{method=\"GET\",route=\"/a\","
                                   "status=\"404\"}"),
                     1);
    assert_int_equal(s_value(page, "cadre_http_requests_total{method=\"\",route=\"unmatched\","
                                   "status=\"404\"}"),
                     1);
    assert_int_equal(s_value(page, "cadre_http_requests_total{method=\"POST\",route=\"/b/{id}\","
                                   "status=\"other\"}"),
                     9);
    //  Cumulative buckets: 0.0001 <= 0.0005; 0.003 <= 0.005; 20 only in +Inf.
    const char *prefix = "cadre_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a\",";
    char series[256];
    snprintf(series, sizeof series, "%sle=\"0.0005\"}", prefix);
    assert_int_equal(s_value(page, series), 1);
    snprintf(series, sizeof series, "%sle=\"0.005\"}", prefix);
    assert_int_equal(s_value(page, series), 2);
    snprintf(series, sizeof series, "%sle=\"10\"}", prefix);
    assert_int_equal(s_value(page, series), 2);
    snprintf(series, sizeof series, "%sle=\"+Inf\"}", prefix);
    assert_int_equal(s_value(page, series), 3);
    assert_int_equal(
        s_value(page, "cadre_http_request_duration_seconds_count{method=\"GET\",route=\"/a\"}"), 3);
    assert_int_equal(s_value(page, "cadre_http_limit_hits_total{limit=\"body_size\"}"), 2);
    assert_int_equal(s_value(page, "cadre_http_limit_hits_total{limit=\"rate\"}"), 0);
    assert_int_equal(s_value(page, "cadre_http_guard_closes_total{reason=\"rapid_reset\"}"), 1);
    assert_int_equal(s_value(page, "cadre_http_actor_calls_total{outcome=\"client_gone\"}"), 1);
    assert_int_equal(s_value(page, "cadre_http_slow_clients_dropped_total"), 1);
    assert_int_equal(s_value(page, "cadre_http_connections_total"), 2);
    assert_int_equal(s_value(page, "cadre_http_connections_open"), 1);
    assert_int_equal(s_value(page, "cadre_actor_restarts_total{actor=\"agent/b\"}"), 2);
    assert_int_equal(s_value(page, "cadre_actor_dead_letters_total{actor=\"agent/b\"}"), 1);
    assert_int_equal(s_value(page, "cadre_actor_up{actor=\"agent/b\",status=\"dead\"}"), 0);
    assert_int_equal(s_value(page, "cadre_actor_up{actor=\"agent/we\\\"ird\",status=\"running\"}"),
                     1);
    assert_int_equal(s_value(page, "cadre_dead_letters_total"), 1);
    assert_non_null(strstr(page, "cadre_uptime_seconds 12.500\n"));
    //  Every sample line belongs to a declared family.
    for (const char *line = page; *line;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        if (line[0] != '#') {
            char name[128];
            size_t n = strcspn(line, "{ ");
            snprintf(name, sizeof name, "# TYPE %.*s", (int)n, line);
            char *suffix = strstr(name, "_bucket");
            if (!suffix) {
                suffix = strstr(name, "_sum");
            }
            if (!suffix && strstr(name, "duration_seconds_count")) {
                suffix = strstr(name, "_count");
            }
            if (suffix) {
                *suffix = '\0';
            }
            assert_non_null(strstr(page, name));
        }
        line = end + 1;
    }
    free(page);
    cd_registry_destroy(&registry);
    cd_metrics_destroy(&metrics);
    cd_metrics_destroy(&metrics);
    cd_router_destroy(&router);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_page_counts_requests_and_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
