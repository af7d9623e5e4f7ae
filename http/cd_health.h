/*  cd_health: the operational routes, all public.

      GET /health           200 {"status":"ok"} while the process runs
      GET /health/ready     200 {"status":"ready"} when the core actors run
                            (registry), no actor is restarting or dead, and
                            the `persist` actor answers a stats request
                            (control envelope, header op=stats) with
                            db_ok; else 503 not_ready naming the failing
                            checks
      GET /health/detailed  {status, version, node_id, uptime_s, db, actors,
                            persist, checks}: figures nobody reports are
                            null, never invented
      GET /metrics          Prometheus text (cd_metrics.h)
      GET /openapi.json     the OpenAPI document (cd_openapi.h)

    HTTP thread only. */
#ifndef CD_HTTP_HEALTH_H
#define CD_HTTP_HEALTH_H

#include "cd_router.h"

#define CD_HEALTH_PERSIST "persist" //  registry name of the persist actor

cd_route_fn cd_health_live;
cd_route_fn cd_health_ready;
cd_route_fn cd_health_detailed;
cd_route_fn cd_health_metrics;
cd_route_fn cd_health_openapi;

#endif
