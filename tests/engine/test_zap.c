/*  cd_zap: in a context of its own, a CurveZMQ ROUTER behind the handler
    admits a client whose key is allowed (its message arrives), refuses one
    whose key is not (nothing arrives; counted and logged), admits a key
    allowed later, refuses another ZAP domain, and a second handler cannot
    bind in the same context (the caller must then fail closed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cd_curve.h"
#include "cd_error.h"
#include "cd_log.h"
#include "cd_zap.h"

#include <czmq.h>
#include <string.h>

typedef struct {
    void *ctx;     //  the server side's own context
    cd_zap_t *zap; //  its handler
    void *server;  //  ROUTER, Curve server
    char endpoint[64];
    char server_public[CD_CURVE_KEY_LEN + 1];
    char server_secret[CD_CURVE_KEY_LEN + 1];
} server_t;

static void
s_server_start(server_t *s, const cd_curve_key_t *allowed, size_t n_allowed, const char *domain)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(cd_curve_keypair(s->server_public, s->server_secret), 0);
    s->ctx = zmq_ctx_new();
    s->zap = cd_zap_new(s->ctx, "test", allowed, n_allowed, "zaptest");
    assert_non_null(s->zap);
    s->server = zmq_socket(s->ctx, ZMQ_ROUTER);
    int on = 1;
    zmq_setsockopt(s->server, ZMQ_CURVE_SERVER, &on, sizeof on);
    zmq_setsockopt(s->server, ZMQ_CURVE_SECRETKEY, s->server_secret, CD_CURVE_KEY_LEN);
    zmq_setsockopt(s->server, ZMQ_ZAP_DOMAIN, domain, strlen(domain));
    assert_int_equal(zmq_bind(s->server, "tcp://127.0.0.1:*"), 0);
    size_t size = sizeof s->endpoint;
    zmq_getsockopt(s->server, ZMQ_LAST_ENDPOINT, s->endpoint, &size);
}

static void
s_server_stop(server_t *s)
{
    zmq_close(s->server);
    cd_zap_destroy(&s->zap);
    cd_zap_destroy(&s->zap);
    zmq_ctx_term(s->ctx);
}

//  A Curve client with the given key pair (NULL: a new one, returned in
//  the buffers) that sends "hello".
static zsock_t *
s_client(const server_t *s, char public_key[CD_CURVE_KEY_LEN + 1],
         char secret_key[CD_CURVE_KEY_LEN + 1], bool fresh)
{
    if (fresh) {
        assert_int_equal(cd_curve_keypair(public_key, secret_key), 0);
    }
    zsock_t *client = zsock_new(ZMQ_DEALER);
    zsock_set_curve_serverkey(client, s->server_public);
    zsock_set_curve_publickey(client, public_key);
    zsock_set_curve_secretkey(client, secret_key);
    assert_int_equal(zsock_connect(client, "%s", s->endpoint), 0);
    zstr_send(client, "hello");
    return client;
}

//  Serves the handler for up to ms; true if "hello" reached the server.
static bool
s_arrives(server_t *s, int ms)
{
    int64_t deadline = zclock_mono() + ms;
    while (zclock_mono() < deadline) {
        cd_zap_handle(s->zap);
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        bool got = zmq_msg_recv(&id, s->server, ZMQ_DONTWAIT) >= 0 &&
                   zmq_msg_recv(&body, s->server, 0) == 5 &&
                   memcmp(zmq_msg_data(&body), "hello", 5) == 0;
        zmq_msg_close(&id);
        zmq_msg_close(&body);
        if (got) {
            return true;
        }
        zclock_sleep(5);
    }
    return false;
}

static void
test_zap_admits_allowed_keys_and_refuses_others(void **state)
{
    //  The allowed key is made first, then its client uses it.
    char allowed_public[CD_CURVE_KEY_LEN + 1], allowed_secret[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_keypair(allowed_public, allowed_secret), 0);
    cd_curve_key_t key;
    assert_int_equal(cd_curve_key_decode(allowed_public, &key), 0);
    server_t s;
    s_server_start(&s, &key, 1, "test");

    zsock_t *good = s_client(&s, allowed_public, allowed_secret, false);
    assert_true(s_arrives(&s, 5000));
    assert_int_equal(cd_zap_admitted(s.zap), 1);
    assert_int_equal(cd_zap_refused(s.zap), 0);

    char stranger_public[CD_CURVE_KEY_LEN + 1], stranger_secret[CD_CURVE_KEY_LEN + 1];
    zsock_t *stranger = s_client(&s, stranger_public, stranger_secret, true);
    assert_false(s_arrives(&s, 500));
    assert_true(cd_zap_refused(s.zap) >= 1);
    //  A refused client gives up (libzmq does not retry an authentication
    //  failure). Once its key is allowed, a new connection gets in.
    cd_curve_key_t later;
    assert_int_equal(cd_curve_key_decode(stranger_public, &later), 0);
    cd_zap_allow(s.zap, &later);
    cd_zap_allow(s.zap, &later);
    zsock_destroy(&stranger);
    stranger = s_client(&s, stranger_public, stranger_secret, false);
    assert_true(s_arrives(&s, 5000));
    zsock_destroy(&stranger);
    zsock_destroy(&good);
    s_server_stop(&s);
}

static void
test_zap_refuses_another_domain(void **state)
{
    server_t s;
    s_server_start(&s, NULL, 0, "other");
    char public_key[CD_CURVE_KEY_LEN + 1], secret_key[CD_CURVE_KEY_LEN + 1];
    assert_int_equal(cd_curve_keypair(public_key, secret_key), 0);
    cd_curve_key_t key;
    assert_int_equal(cd_curve_key_decode(public_key, &key), 0);
    cd_zap_allow(s.zap, &key);
    zsock_t *client = s_client(&s, public_key, secret_key, false);
    assert_false(s_arrives(&s, 500));
    assert_true(cd_zap_refused(s.zap) >= 1);
    assert_int_equal(cd_zap_admitted(s.zap), 0);
    zsock_destroy(&client);
    s_server_stop(&s);
}

static void
test_zap_one_handler_per_context(void **state)
{
    void *ctx = zmq_ctx_new();
    cd_zap_t *first = cd_zap_new(ctx, "d", NULL, 0, "zaptest");
    assert_non_null(first);
    //  The endpoint is taken: the caller gets NULL and must not serve.
    assert_null(cd_zap_new(ctx, "d", NULL, 0, "zaptest"));
    //  Another context has an endpoint of its own.
    void *other_ctx = zmq_ctx_new();
    cd_zap_t *other = cd_zap_new(other_ctx, "d", NULL, 0, "zaptest");
    assert_non_null(other);
    cd_zap_destroy(&other);
    cd_zap_destroy(&first);
    cd_zap_destroy(NULL);
    zmq_ctx_term(other_ctx);
    zmq_ctx_term(ctx);
}

int
main(void)
{
    cd_log_set_level(CD_LOG_OFF);
    zsys_set_linger(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zap_admits_allowed_keys_and_refuses_others),
        cmocka_unit_test(test_zap_refuses_another_domain),
        cmocka_unit_test(test_zap_one_handler_per_context),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
