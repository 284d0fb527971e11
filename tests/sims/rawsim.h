/* rawsim.h — a bare-bones PPX simulator (REP socket + the codec, no libppx
 * serve loop) for the misbehaving test simulators, which must be able to
 * send what libppx refuses to send.  Header-only: each test simulator
 * is its own program.  The model is the Gaussian with unknown mean of
 * clients/examples/gaussian.c (same addresses and names), so traces from
 * these simulators look exactly like the example's. */
#ifndef PPX_TEST_RAWSIM_H
#define PPX_TEST_RAWSIM_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ppx.h"

typedef struct rawsim {
    void *ctx;
    void *sock;
    ppx_encoder *enc;
    zmq_msg_t frame;
    ppx_msg in;
    unsigned long runs; /* Run requests received so far */
} rawsim;

static void rs_die(const char *what, const char *detail)
{
    fprintf(stderr, "rawsim: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static void rs_open(rawsim *s, const char *endpoint)
{
    memset(s, 0, sizeof *s);
    ppx_msg_init(&s->in);
    zmq_msg_init(&s->frame);
    s->ctx = zmq_ctx_new();
    s->sock = s->ctx ? zmq_socket(s->ctx, ZMQ_REP) : NULL;
    s->enc = ppx_encoder_new();
    if (!s->sock || !s->enc) rs_die("cannot create socket", NULL);
    int linger = 0;
    zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s->sock, endpoint) < 0) rs_die("cannot bind", zmq_strerror(errno));
}

/* Receive the next request; returns its type (PPX_MSG_NONE when undecodable). */
static ppx_msg_type rs_recv(rawsim *s)
{
    ppx_msg_clear(&s->in);
    zmq_msg_close(&s->frame);
    zmq_msg_init(&s->frame);
    while (zmq_msg_recv(&s->frame, s->sock, 0) < 0)
        if (errno != EINTR) rs_die("receive failed", zmq_strerror(errno));
    ppx_error err;
    if (ppx_decode(zmq_msg_data(&s->frame), zmq_msg_size(&s->frame), NULL, &s->in, &err) != PPX_OK)
        return PPX_MSG_NONE;
    return s->in.type;
}

static void rs_send_raw(rawsim *s, const void *bytes, size_t len)
{
    while (zmq_send(s->sock, bytes, len, 0) < 0)
        if (errno != EINTR) rs_die("send failed", zmq_strerror(errno));
}

/* Encoded bytes of m (valid until the next encode). */
static const uint8_t *rs_encode(rawsim *s, const ppx_msg *m, size_t *len)
{
    ppx_error err;
    const uint8_t *b = ppx_encode(s->enc, m, len, &err);
    if (!b) rs_die("encode failed", err.message);
    return b;
}

static void rs_send(rawsim *s, const ppx_msg *m)
{
    size_t len;
    const uint8_t *b = rs_encode(s, m, &len);
    rs_send_raw(s, b, len);
}

static void rs_send_type(rawsim *s, ppx_msg_type t)
{
    ppx_msg m;
    ppx_msg_init(&m);
    m.type = t;
    rs_send(s, &m);
}

/* Send a statement and expect the reply `want`; anything else mid-trace
 * makes the simulator exit, as upstream simulators do. */
static void rs_exchange(rawsim *s, const ppx_msg *m, ppx_msg_type want)
{
    rs_send(s, m);
    ppx_msg_type got = rs_recv(s);
    if (got != want) {
        fprintf(stderr, "rawsim: expected %s, got %s\n", ppx_msg_type_name(want), ppx_msg_type_name(got));
        exit(1);
    }
}

/* A Normal(mean, sd) Sample at address/name "mu". */
static void rs_sample_msg(ppx_msg *m, const double *mean, const double *sd)
{
    ppx_msg_init(m);
    m->type = PPX_MSG_SAMPLE;
    m->address = "mu";
    m->name = "mu";
    m->control = 1;
    m->dist.type = PPX_DIST_NORMAL;
    m->dist.param[0] = ppx_tensor_scalar(mean);
    m->dist.param[1] = ppx_tensor_scalar(sd);
}

/* The rest of the Gaussian trace after mu was answered: two Observes whose
 * values the engine supplies, then RunResult{mu}. */
static void rs_gaussian_rest(rawsim *s, double mu)
{
    static const char *obs[2] = {"obs0", "obs1"};
    double sd = sqrt(2.0);
    for (int i = 0; i < 2; i++) {
        ppx_msg m;
        ppx_msg_init(&m);
        m.type = PPX_MSG_OBSERVE;
        m.address = obs[i];
        m.name = obs[i];
        m.dist.type = PPX_DIST_NORMAL;
        m.dist.param[0] = ppx_tensor_scalar(&mu);
        m.dist.param[1] = ppx_tensor_scalar(&sd);
        m.value = ppx_tensor_empty();
        rs_exchange(s, &m, PPX_MSG_OBSERVE_RESULT);
    }
    ppx_msg r;
    ppx_msg_init(&r);
    r.type = PPX_MSG_RUN_RESULT;
    r.value = ppx_tensor_scalar(&mu);
    rs_send(s, &r);
}

/* The well-behaved Gaussian trace, started by a Run in hand. */
static void rs_gaussian_trace(rawsim *s)
{
    double mean = 1.0, sd = sqrt(5.0);
    ppx_msg m;
    rs_sample_msg(&m, &mean, &sd);
    rs_exchange(s, &m, PPX_MSG_SAMPLE_RESULT);
    if (s->in.value.len != 1) rs_die("SampleResult for mu is not a scalar", NULL);
    rs_gaussian_rest(s, s->in.value.data[0]);
}

/* Serve forever: Handshake and Run like libppx; `run` handles a Run in hand
 * (s->runs already counts it). */
static int rs_serve(rawsim *s, const char *model, void (*run)(rawsim *s))
{
    for (;;) {
        ppx_msg_type t = rs_recv(s);
        if (t == PPX_MSG_HANDSHAKE) {
            ppx_msg m;
            ppx_msg_init(&m);
            m.type = PPX_MSG_HANDSHAKE_RESULT;
            m.system_name = "rawsim";
            m.model_name = model;
            rs_send(s, &m);
        } else if (t == PPX_MSG_RUN) {
            s->runs++;
            run(s);
        } else {
            rs_send_type(s, PPX_MSG_RESET);
        }
    }
    return 0;
}

#endif
