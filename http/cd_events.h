/*  cd_events: the event routes (API.md "Events").

      GET /api/v1/events    Accept: text/event-stream: Server-Sent Events;
                            otherwise the persisted events as a JSON list
      GET /ws               WebSocket (HTTP/1.1 Upgrade): subscribe, then
                            one event JSON per text message

    Both take the same filters: project_id, task_id (integers >= 1), agent
    (1-64 of [a-z0-9_-]), types (a comma-separated list of API.md's event
    types); they combine with AND. The HTTP layer reaches the database only
    through the event bus (actors/cd_bus.h, registry name CD_EVENTS_BUS):
    lists and replays are its op=list, live events its `event` envelopes to
    the HTTP port, which the bus sends while this layer watches (op=watch,
    renewed every second while anyone subscribes).

    Who sees what: an admin every event; a `user` only the events of its
    own tasks and projects (it created the event's task or its project;
    HITL and artifact events go with their task and project) and the
    agent.status events that name no task or project (db/cd_q_events.h
    has the rule). Lists and replays ask the bus for that user's events
    only (op=list's viewer); live events carry their owners, and each
    subscriber is offered only those its caller may see. Another user's
    event is never an error, only absent: a filter on another user's
    task_id matches nothing.

    JSON list: query after (or its alias cursor) = an event id, limit 1..1000
    (default 50); 200 {"items": [event...], "next_cursor": "<id>"|null},
    ascending by id. Anything malformed, an unknown parameter, or both
    after and cursor: 400 validation_failed naming the field. Bus not
    running or its database away: 503 not_ready; no answer in time: 504.

    SSE: each event is
        id: <id>\n event: <type>\n data: <event JSON>\n \n
    (ephemeral events, such as task.token, come without an id: line); a
    comment ": ping" on a stream idle for events_ping_ms. The stream opens
    with the comment ": ok" once it is subscribed: every event committed
    after the client has read ": ok" reaches it. Last-Event-ID (a header,
    which a reconnecting EventSource sends) or ?after= (the header wins)
    replays every matching persisted event after that id first (paged from
    the bus), then continues live, with no gap and no duplicate, whatever
    commits meanwhile; without either, the stream is live from ": ok".
    limit is ignored here. A bus that does not answer before ": ok" is a
    503 not_ready; later failures are retried.

    WebSocket: the client sends text frames
        {"subscribe": {"project_id"?, "task_id"?, "agent"?, "types"?},
         "after"?: id}
    (types: an array of type names, or the comma list). The server answers
    {"subscribed": true} once subscribed (as ": ok" above), then one event
    JSON per text message, replaying after `after` first when it is given.
    Another subscribe replaces the subscription. A malformed message is
    answered {"error": {"code", "message", "details": {"field"}}} and
    changes nothing; binary frames too. Only over HTTP/1.1 (h2o 2.2 has no
    RFC 8441); elsewhere 426. A browser, which cannot set Authorization
    on a WebSocket, passes its access token (or API key) as the
    subprotocol `bearer.<token>` (new WebSocket(url, ["bearer." +
    token])), echoed back as the chosen one, or as ?access_token=
    (cd_auth.h); without valid credentials the answer is 401, before
    any upgrade.

    Gap-free replay: a subscriber registers for live events first, then
    asks the bus for pages after its position. Live envelopes say which
    ids they cover, (prev, last], and chain; a subscriber keeps `pos`
    (every event up to it has been considered) and takes a live envelope
    only if prev <= pos, else it replays (pos, ...] first, holding the live
    envelopes that arrive meanwhile. The bus's last page says `head`, the
    newest id visible to it, which becomes pos. This also repairs the gaps
    of a bus that restarted or of a watch that lapsed.

    Slow clients: every subscriber's unsent events are bounded by
    events_max_buffer bytes: a subscriber whose backlog is above it at two
    checks 250 ms apart and has not shrunk in between (it had that long to
    work it off), or above 16 times it at any moment, is disconnected. (Not at the first byte over:
    a burst of live batches handled in one turn of the loop queues more
    than any client can take before its writes complete.) Its
    connection is closed (h2o 2.2's public API cannot reset a single HTTP/2
    stream from a handler, so other streams of that client's connection go
    too; a client that does not read its stream is rarely reading the
    others), counted in
    cadre_http_slow_clients_dropped_total. It can resume with
    Last-Event-ID. Nobody else waits for it: the HTTP thread never blocks.
    Live events held during a replay are bounded the same way; past it they
    are dropped and replayed from the table instead.

    HTTP thread only. */
#ifndef CD_HTTP_EVENTS_H
#define CD_HTTP_EVENTS_H

#include "cd_router.h"

#define CD_EVENTS_BUS "bus" //  registry name of the event bus

cd_route_fn cd_events_get;
cd_route_fn cd_events_ws;

#endif
