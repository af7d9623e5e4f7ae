/*  The HTTP/2 guard: the frame splitter and its budgets on crafted byte
    streams (fed whole and one byte at a time), then real attacks on a
    running server over loopback, each by a small attacking client written
    here (raw frames on a TCP socket), bounded in count and time, while a
    normal client (libcurl, h2c prior knowledge, a new connection per
    request) must keep getting 200 from /health within a latency bound:

      rapid reset         HEADERS + RST_STREAM pairs as fast as possible
      CONTINUATION flood  a HEADERS without END_HEADERS, then endless
                          CONTINUATION frames (empty ones, and full ones)
      header drip         a header block that is never finished
      PING flood          PINGs without reading the answers */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_h2guard.h"
#include "httptest.h"

#include <pthread.h>
#include <stdatomic.h>

//  --- unit: the state machine --------------------------------------------------------

static const cd_h2guard_limits_t s_limits = {
    .max_header_block = 1000,
    .max_continuations = 4,
    .header_timeout_ms = 500,
    .resets_per_s = 10,
    .resets_burst = 20,
    .control_per_s = 10,
    .control_burst = 20,
    .streams_per_s = 0,
    .streams_burst = 0,
};

typedef struct {
    uint8_t bytes[65536];
    size_t len;
} s_stream_t;

static void
s_preface(s_stream_t *s)
{
    memcpy(s->bytes + s->len, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    s->len += 24;
}

static void
s_frame(s_stream_t *s, uint8_t type, uint8_t flags, uint32_t stream, size_t size)
{
    static const uint8_t zeros[20000] = {0};
    ht_frame(s->bytes, &s->len, type, flags, stream, zeros, size);
}

//  Feeds s whole, and again byte by byte into a second guard: both must
//  agree. Returns the verdict.
static cd_h2guard_verdict_t
s_feed_both(const s_stream_t *s, const cd_h2guard_limits_t *limits, bool preface, uint64_t now,
            cd_h2guard_t *whole)
{
    cd_h2guard_t bytewise;
    cd_h2guard_init(whole, limits, preface, 0);
    cd_h2guard_init(&bytewise, limits, preface, 0);
    cd_h2guard_verdict_t a = cd_h2guard_feed(whole, s->bytes, s->len, now);
    cd_h2guard_verdict_t b = CD_H2GUARD_OK;
    for (size_t i = 0; i < s->len; i++) {
        b = cd_h2guard_feed(&bytewise, s->bytes + i, 1, now);
    }
    assert_int_equal(a, b);
    assert_int_equal(whole->frames, bytewise.frames);
    assert_int_equal(whole->streams_opened, bytewise.streams_opened);
    assert_int_equal(whole->resets_seen, bytewise.resets_seen);
    return a;
}

static void
test_h2guard_splits_frames_whatever_the_chunking(void **state)
{
    s_stream_t s = {.len = 0};
    s_preface(&s);
    s_frame(&s, 0x4, 0, 0, 12);    //  SETTINGS
    s_frame(&s, 0x1, 0x5, 1, 11);  //  HEADERS END_STREAM|END_HEADERS
    s_frame(&s, 0x8, 0, 0, 4);     //  WINDOW_UPDATE
    s_frame(&s, 0x1, 0x0, 3, 100); //  HEADERS, block continues
    s_frame(&s, 0x9, 0x4, 3, 50);  //  CONTINUATION END_HEADERS
    s_frame(&s, 0x0, 0x1, 3, 5);   //  DATA END_STREAM
    s_frame(&s, 0x1, 0x5, 3, 10);  //  trailers on stream 3: not a new stream
    cd_h2guard_t guard;
    assert_int_equal(s_feed_both(&s, &s_limits, true, 0, &guard), CD_H2GUARD_OK);
    assert_int_equal(guard.frames, 7);
    assert_int_equal(guard.streams_opened, 2);
    assert_int_equal(guard.resets_seen, 0);
    assert_false(guard.in_block);
    assert_string_equal(cd_h2guard_verdict_name(CD_H2GUARD_OK), "ok");
    assert_string_equal(cd_h2guard_verdict_name(CD_H2GUARD_RAPID_RESET), "rapid_reset");
}

static void
test_h2guard_rejects_a_wrong_preface(void **state)
{
    s_stream_t s = {.len = 0};
    memcpy(s.bytes, "PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n", 24);
    s.len = 24;
    cd_h2guard_t guard;
    assert_int_equal(s_feed_both(&s, &s_limits, true, 0, &guard), CD_H2GUARD_BAD_PREFACE);
}

static void
test_h2guard_resets_past_the_budget_are_rapid_reset(void **state)
{
    //  The burst (20) at one instant is fine; the 21st reset is not.
    s_stream_t s = {.len = 0};
    for (uint32_t i = 0; i < 20; i++) {
        s_frame(&s, 0x1, 0x5, 2 * i + 1, 11);
        s_frame(&s, 0x3, 0, 2 * i + 1, 4);
    }
    cd_h2guard_t guard;
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_OK);
    s_frame(&s, 0x1, 0x5, 41, 11);
    s_frame(&s, 0x3, 0, 41, 4);
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_RAPID_RESET);
    assert_int_equal(guard.resets_seen, 21);
    //  The verdict sticks.
    assert_int_equal(cd_h2guard_feed(&guard, s.bytes, 9, 10000), CD_H2GUARD_RAPID_RESET);
    assert_int_equal(cd_h2guard_tick(&guard, 10000), CD_H2GUARD_RAPID_RESET);

    //  At the refill rate (one per 100 ms) resets never run out.
    cd_h2guard_init(&guard, &s_limits, false, 0);
    uint8_t pair[64];
    for (uint32_t i = 0; i < 200; i++) {
        size_t len = 0;
        ht_frame(pair, &len, 0x1, 0x5, 2 * i + 1, ht_hpack_get_health, 11);
        ht_frame(pair, &len, 0x3, 0, 2 * i + 1, "\0\0\0\x8", 4);
        assert_int_equal(cd_h2guard_feed(&guard, pair, len, (uint64_t)i * 100), CD_H2GUARD_OK);
    }
    assert_int_equal(guard.streams_opened, 200);
}

static void
test_h2guard_continuation_floods_are_caught(void **state)
{
    cd_h2guard_t guard;
    //  Too many CONTINUATION frames, even empty ones.
    s_stream_t s = {.len = 0};
    s_frame(&s, 0x1, 0x1, 1, 10);
    for (int i = 0; i < 4; i++) {
        s_frame(&s, 0x9, 0, 1, 0);
    }
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_OK);
    assert_true(guard.in_block);
    s_frame(&s, 0x9, 0, 1, 0);
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_HEADER_FLOOD);
    //  Too many bytes in a block.
    s.len = 0;
    s_frame(&s, 0x1, 0x1, 1, 600);
    s_frame(&s, 0x9, 0, 1, 400);
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_OK);
    s_frame(&s, 0x9, 0x4, 1, 1);
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_HEADER_FLOOD);
    //  A single HEADERS frame over the block limit.
    s.len = 0;
    s_frame(&s, 0x1, 0x5, 1, 1001);
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_HEADER_FLOOD);
    //  A block that ends resets the count.
    s.len = 0;
    for (uint32_t id = 1; id < 20; id += 2) {
        s_frame(&s, 0x1, 0x1, id, 100);
        s_frame(&s, 0x9, 0, id, 100);
        s_frame(&s, 0x9, 0x4, id, 100);
    }
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_OK);
}

static void
test_h2guard_a_header_block_left_open_times_out(void **state)
{
    s_stream_t s = {.len = 0};
    s_frame(&s, 0x1, 0x1, 1, 10);
    cd_h2guard_t guard;
    cd_h2guard_init(&guard, &s_limits, false, 1000);
    assert_int_equal(cd_h2guard_feed(&guard, s.bytes, s.len, 1000), CD_H2GUARD_OK);
    assert_int_equal(cd_h2guard_tick(&guard, 1500), CD_H2GUARD_OK);
    assert_int_equal(cd_h2guard_tick(&guard, 1501), CD_H2GUARD_HEADER_TIMEOUT);
    //  Finished in time, no timeout.
    cd_h2guard_init(&guard, &s_limits, false, 1000);
    s_frame(&s, 0x9, 0x4, 1, 10);
    assert_int_equal(cd_h2guard_feed(&guard, s.bytes, s.len, 1400), CD_H2GUARD_OK);
    assert_int_equal(cd_h2guard_tick(&guard, 100000), CD_H2GUARD_OK);
}

static void
test_h2guard_control_frames_share_a_budget(void **state)
{
    cd_h2guard_t guard;
    uint8_t types[] = {0x6, 0x4, 0x2, 0x0, 0xee}; //  PING, SETTINGS, PRIORITY, empty DATA, unknown
    for (size_t t = 0; t < sizeof types; t++) {
        s_stream_t s = {.len = 0};
        for (int i = 0; i < 20; i++) {
            s_frame(&s, types[t], 0, types[t] == 0x6 || types[t] == 0x4 ? 0 : 1,
                    types[t] == 0x6 ? 8 : 0);
        }
        assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_OK);
        s_frame(&s, types[t], 0, 1, 0);
        assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_FRAME_FLOOD);
    }
    //  Not counted: DATA that carries bytes or ends a stream, WINDOW_UPDATE.
    s_stream_t s = {.len = 0};
    for (int i = 0; i < 100; i++) {
        s_frame(&s, 0x0, 0, 1, 10);
        s_frame(&s, 0x0, 0x1, 1, 0);
        s_frame(&s, 0x8, 0, 0, 4);
    }
    assert_int_equal(s_feed_both(&s, &s_limits, false, 0, &guard), CD_H2GUARD_OK);
}

static void
test_h2guard_new_streams_have_a_budget_when_asked(void **state)
{
    cd_h2guard_limits_t limits = s_limits;
    s_stream_t s = {.len = 0};
    for (uint32_t i = 0; i < 50; i++) {
        s_frame(&s, 0x1, 0x5, 2 * i + 1, 11);
    }
    cd_h2guard_t guard;
    assert_int_equal(s_feed_both(&s, &limits, false, 0, &guard), CD_H2GUARD_OK);
    limits.streams_per_s = 10;
    limits.streams_burst = 40;
    assert_int_equal(s_feed_both(&s, &limits, false, 0, &guard), CD_H2GUARD_STREAM_FLOOD);
    assert_int_equal(guard.streams_opened, 41);
}

static void
test_h2guard_bucket_refills_and_never_overflows(void **state)
{
    cd_h2guard_bucket_t bucket;
    cd_h2guard_bucket_init(&bucket, 4, 2, 0);
    assert_true(cd_h2guard_bucket_take(&bucket, 4, 2, 0));
    assert_true(cd_h2guard_bucket_take(&bucket, 4, 2, 0));
    assert_false(cd_h2guard_bucket_take(&bucket, 4, 2, 0));
    assert_false(cd_h2guard_bucket_take(&bucket, 4, 2, 249));
    assert_true(cd_h2guard_bucket_take(&bucket, 4, 2, 250));
    //  Years later: full (the burst), not more.
    uint64_t later = 1000ull * 3600 * 24 * 365 * 50;
    assert_true(cd_h2guard_bucket_take(&bucket, 4, 2, later));
    assert_true(cd_h2guard_bucket_take(&bucket, 4, 2, later));
    assert_false(cd_h2guard_bucket_take(&bucket, 4, 2, later));
    //  A huge rate does not overflow either.
    cd_h2guard_bucket_init(&bucket, UINT32_MAX, 0, 0);
    assert_true(cd_h2guard_bucket_take(&bucket, UINT32_MAX, 0, later));
    //  Rate 0: unlimited.
    cd_h2guard_bucket_init(&bucket, 0, 0, 0);
    for (int i = 0; i < 1000; i++) {
        assert_true(cd_h2guard_bucket_take(&bucket, 0, 0, 0));
    }
}

//  --- attacks on a running server ------------------------------------------------

#define S_ENHANCE_YOUR_CALM_CODE 0xb //  HTTP/2 error code in the server's GOAWAY

typedef enum { S_RAPID_RESET, S_CONT_EMPTY, S_CONT_FULL, S_PING_FLOOD } s_attack_kind_t;

typedef struct {
    int port;               //  the server
    s_attack_kind_t kind;   //  what to send
    int max_connections;    //  bound on connections opened
    int64_t deadline_ms;    //  bound on time
    atomic_int connections; //  opened
    atomic_int closed;      //  closed by the server
    atomic_llong frames;    //  frames sent
    atomic_int calm;        //  GOAWAY(ENHANCE_YOUR_CALM) seen
    int served;             //  normal requests answered during the attack
} s_attack_t;

//  One connection's worth of attack: sends until the server closes it or
//  the bounds are reached. Returns true if the server closed it.
static bool
s_attack_one(s_attack_t *attack, int fd)
{
    if (!ht_h2_open(fd)) {
        return true;
    }
    static uint8_t buf[200 * 1024];
    uint32_t id = 1;
    long long sent = 0;
    bool calm = false;
    //  At most this many frames and this long per connection: far more
    //  than any budget. (The attack's deadline is only checked between
    //  connections, so that each one is seen through.)
    int64_t give_up = ht_now_ms() + 10000;
    while (sent < 200000 && ht_now_ms() < give_up) {
        size_t len = 0;
        int batch = 0;
        switch (attack->kind) {
        case S_RAPID_RESET:
            for (; batch < 100; batch++, id += 2) {
                ht_frame(buf, &len, 0x1, 0x5, id, ht_hpack_get_health, sizeof ht_hpack_get_health);
                ht_frame(buf, &len, 0x3, 0, id, "\0\0\0\x8", 4); //  CANCEL
            }
            batch *= 2;
            break;
        case S_CONT_EMPTY:
        case S_CONT_FULL:
            if (sent == 0) {
                ht_frame(buf, &len, 0x1, 0x1, 1, ht_hpack_get_health, 4); //  no END_HEADERS
                batch++;
            }
            for (; batch < (attack->kind == S_CONT_EMPTY ? 500 : 10); batch++) {
                static const uint8_t junk[16384] = {0x40}; //  literal, new name: endless block
                ht_frame(buf, &len, 0x9, 0, 1, junk,
                         attack->kind == S_CONT_EMPTY ? 0 : sizeof junk);
            }
            break;
        case S_PING_FLOOD:
            for (; batch < 500; batch++) {
                ht_frame(buf, &len, 0x6, 0, 0, "12345678", 8);
            }
            break;
        }
        if (!ht_send_all(fd, buf, len, 1000)) {
            break;
        }
        sent += batch;
        atomic_fetch_add(&attack->frames, batch);
        //  Never read what the server answers (an attacker would not),
        //  except to notice that it has closed.
        if (!ht_drain(fd, S_ENHANCE_YOUR_CALM_CODE, &calm)) {
            break;
        }
    }
    bool closed = ht_wait_closed(fd, 2000);
    if (calm) {
        atomic_fetch_add(&attack->calm, 1);
    }
    return closed;
}

static void *
s_attacker(void *arg)
{
    s_attack_t *attack = (s_attack_t *)arg;
    while (atomic_load(&attack->connections) < attack->max_connections &&
           ht_now_ms() < attack->deadline_ms) {
        int fd = ht_connect(attack->port);
        if (fd < 0) {
            break;
        }
        atomic_fetch_add(&attack->connections, 1);
        if (s_attack_one(attack, fd)) {
            atomic_fetch_add(&attack->closed, 1);
        }
        close(fd);
    }
    return NULL;
}

//  Runs an attack for up to duration_ms while a normal client keeps asking
//  for /health; checks that every normal request succeeded in time.
static void
s_under_attack(ht_node_t *node, s_attack_kind_t kind, int max_connections, int duration_ms,
               s_attack_t *attack)
{
    memset(attack, 0, sizeof *attack);
    attack->port = cd_http_port(node->http);
    attack->kind = kind;
    attack->max_connections = max_connections;
    attack->deadline_ms = ht_now_ms() + duration_ms;
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_attacker, attack), 0);
    int served = 0;
    double worst = 0;
    while (ht_now_ms() < attack->deadline_ms + 200) {
        ht_response_t r;
        CURLcode rc = ht_get(node, "/health", HT_H2C, &r);
        if (rc != CURLE_OK || r.status != 200) {
            fail_msg("a normal client failed under attack: %s, status %ld", curl_easy_strerror(rc),
                     r.status);
        }
        worst = r.seconds > worst ? r.seconds : worst;
        served++;
        ht_response_free(&r);
        usleep(20 * 1000);
    }
    pthread_join(thread, NULL);
    attack->served = served;
    print_message("    attack %d: %d connection(s), %lld frames sent, %d closed by the server; "
                  "normal client: %d requests, worst %.1f ms\n",
                  (int)kind, atomic_load(&attack->connections), atomic_load(&attack->frames),
                  atomic_load(&attack->closed), served, worst * 1000);
    //  Under ASan on two cores a request takes a few ms; one second is a
    //  generous bound that a node being taken down would still miss.
    assert_true(worst < 1.0);
    assert_true(served >= duration_ms / 100);
    //  And the server is still whole afterwards.
    ht_response_t r;
    assert_int_equal(ht_get(node, "/health", HT_H2C, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    ht_response_free(&r);
}

static void
test_h2guard_rapid_reset_attack_is_cut_off_and_others_are_served(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    s_attack_t attack;
    s_under_attack(node, S_RAPID_RESET, 50, 2000, &attack);
    //  Every attacking connection was closed by the server, with a GOAWAY
    //  saying why, after a few hundred streams at most.
    assert_true(atomic_load(&attack.connections) >= 2);
    assert_int_equal(atomic_load(&attack.closed), atomic_load(&attack.connections));
    assert_true(atomic_load(&attack.calm) >= 1);
    //  Most of what the attacker "sent" sat in socket buffers when its
    //  connection was cut. What the server did: the handler ran for at most
    //  the reset burst (200) plus a refill, per connection.
    long long handled =
        ht_node_metric(node, "cadre_http_requests_total{method=\"GET\",route=\"/health\","
                             "status=\"200\"}") -
        attack.served - 1;
    print_message("    /health handled for the attacker: %lld (%lld per connection)\n", handled,
                  handled / atomic_load(&attack.connections));
    assert_true(handled / atomic_load(&attack.connections) <= 300);
    assert_int_equal(ht_node_metric(node, "cadre_http_guard_closes_total{reason=\"rapid_reset\"}"),
                     atomic_load(&attack.connections));
    ht_node_stop(&node);
}

static void
test_h2guard_continuation_floods_are_cut_off_and_others_are_served(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    s_attack_kind_t kinds[] = {S_CONT_EMPTY, S_CONT_FULL};
    for (size_t i = 0; i < 2; i++) {
        s_attack_t attack;
        s_under_attack(node, kinds[i], 20, 1500, &attack);
        assert_true(atomic_load(&attack.connections) >= 2);
        assert_int_equal(atomic_load(&attack.closed), atomic_load(&attack.connections));
    }
    assert_true(ht_node_metric(node, "cadre_http_guard_closes_total{reason=\"header_flood\"}") >=
                4);
    ht_node_stop(&node);
}

static void
test_h2guard_ping_flood_is_cut_off_and_others_are_served(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    ht_node_t *node = ht_node_start(&opts, NULL);
    s_attack_t attack;
    s_under_attack(node, S_PING_FLOOD, 20, 1500, &attack);
    assert_int_equal(atomic_load(&attack.closed), atomic_load(&attack.connections));
    assert_true(ht_node_metric(node, "cadre_http_guard_closes_total{reason=\"frame_flood\"}") >= 1);
    ht_node_stop(&node);
}

static void
test_h2guard_header_block_left_open_is_closed(void **state)
{
    cd_http_opts_t opts;
    ht_opts(&opts);
    opts.request_timeout_ms = 300;
    opts.idle_timeout_ms = 60000; //  so that only the header deadline can close it
    ht_node_t *node = ht_node_start(&opts, NULL);
    int fd = ht_connect(cd_http_port(node->http));
    assert_true(ht_h2_open(fd));
    uint8_t buf[64];
    size_t len = 0;
    ht_frame(buf, &len, 0x1, 0x1, 1, ht_hpack_get_health, 4); //  never finished
    assert_true(ht_send_all(fd, buf, len, 1000));
    int64_t started = ht_now_ms();
    assert_true(ht_wait_closed(fd, 3000));
    int64_t took = ht_now_ms() - started;
    assert_true(took >= 250 && took < 1500);
    close(fd);
    assert_int_equal(
        ht_node_metric(node, "cadre_http_guard_closes_total{reason=\"header_timeout\"}"), 1);
    ht_node_stop(&node);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2guard_splits_frames_whatever_the_chunking),
        cmocka_unit_test(test_h2guard_rejects_a_wrong_preface),
        cmocka_unit_test(test_h2guard_resets_past_the_budget_are_rapid_reset),
        cmocka_unit_test(test_h2guard_continuation_floods_are_caught),
        cmocka_unit_test(test_h2guard_a_header_block_left_open_times_out),
        cmocka_unit_test(test_h2guard_control_frames_share_a_budget),
        cmocka_unit_test(test_h2guard_new_streams_have_a_budget_when_asked),
        cmocka_unit_test(test_h2guard_bucket_refills_and_never_overflows),
        cmocka_unit_test(test_h2guard_rapid_reset_attack_is_cut_off_and_others_are_served),
        cmocka_unit_test(test_h2guard_continuation_floods_are_cut_off_and_others_are_served),
        cmocka_unit_test(test_h2guard_ping_flood_is_cut_off_and_others_are_served),
        cmocka_unit_test(test_h2guard_header_block_left_open_is_closed),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
