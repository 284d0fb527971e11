/* bench_protocol — cost of one Sample/SampleResult round trip between libppx
 * (a simulator thread) and a C engine loop (this thread, decoding with the
 * codec and encoding replies), over ipc and tcp loopback, next to a raw
 * ZeroMQ REQ/REP ping-pong of the same message sizes measured in the same run.
 * Goal (issue 2): codec + library overhead <= 1.3x the raw ping-pong. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ppx.h"
#include "ppx_sim.h"
#include "testkit.h"

#define SAMPLES_PER_RUN 20000
#define REPEATS 3

typedef struct bench_sim {
    const char *endpoint;
    uint64_t runs;
} bench_sim;

static void sim_forward(ppx_sim *s, void *user)
{
    (void)user;
    double acc = 0;
    for (int i = 0; i < SAMPLES_PER_RUN; i++) acc += ppx_sample_normal(s, 1.0, 2.2360679774997898, "[forward()+0x96]", "");
    ppx_set_result(s, &acc, 1);
}

static void *sim_thread(void *arg)
{
    bench_sim *b = arg;
    ppx_sim *s = ppx_sim_new("bench", sim_forward, NULL);
    ppx_sim_serve(s, b->endpoint, b->runs);
    ppx_sim_destroy(&s);
    return NULL;
}

/* Engine: per run, Run then answer SAMPLES_PER_RUN Samples.  Returns seconds
 * per round trip (best of the runs). */
static double bench_ppx(const char *bind_ep, const char *conn_ep, size_t *req_bytes, size_t *rep_bytes)
{
    bench_sim b = {bind_ep, REPEATS};
    pthread_t th;
    pthread_create(&th, NULL, sim_thread, &b);
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_REQ);
    zmq_connect(sock, conn_ep);
    ppx_encoder *enc = ppx_encoder_new();
    ppx_msg m, in;
    ppx_msg_init(&m);
    ppx_msg_init(&in);
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    double best = 1e30;
    size_t len;
    for (int r = 0; r < REPEATS; r++) {
        m.type = PPX_MSG_RUN;
        const uint8_t *bytes = ppx_encode(enc, &m, &len, NULL);
        zmq_send(sock, bytes, len, 0);
        double t0 = tk_now();
        for (int i = 0; i <= SAMPLES_PER_RUN; i++) {
            zmq_msg_recv(&frame, sock, 0);
            if (ppx_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), NULL, &in, NULL) != PPX_OK) abort();
            if (in.type == PPX_MSG_RUN_RESULT) break;
            *rep_bytes = zmq_msg_size(&frame);
            /* Answer with the mean: the engine reads the parameters. */
            double x = in.dist.param[0].data[0];
            ppx_msg_init(&m);
            m.type = PPX_MSG_SAMPLE_RESULT;
            m.value = ppx_tensor_scalar(&x);
            bytes = ppx_encode(enc, &m, &len, NULL);
            *req_bytes = len;
            zmq_send(sock, bytes, len, 0);
        }
        double dt = (tk_now() - t0) / SAMPLES_PER_RUN;
        if (dt < best) best = dt;
    }
    ppx_msg_clear(&in);
    zmq_msg_close(&frame);
    ppx_encoder_destroy(&enc);
    zmq_close(sock);
    pthread_join(th, NULL);
    zmq_ctx_term(ctx);
    return best;
}

int main(void)
{
    printf("PPX Sample/SampleResult round trip vs raw ZeroMQ REQ/REP of the same sizes\n");
    printf("(%d round trips per measurement, best of %d, alternating)\n", SAMPLES_PER_RUN, 3 * REPEATS);
    printf("%-5s %10s %10s %8s %14s\n", "transport", "ppx us/rt", "raw us/rt", "ratio", "bytes req/rep");
    for (int t = 0; t < 2; t++) {
        char bind_ep[128], conn_ep[128];
        if (t == 0) {
            tk_endpoint(bind_ep, sizeof bind_ep, "bench");
            strcpy(conn_ep, bind_ep);
        } else {
            int port = tk_free_tcp_port();
            snprintf(bind_ep, sizeof bind_ep, "tcp://127.0.0.1:%d", port);
            strcpy(conn_ep, bind_ep);
        }
        /* Alternate the two measurements and keep the best of each, so that a
         * burst of load on the machine does not land on one side only. */
        size_t req = 0, rep = 0;
        double ppx = 1e30, raw = 1e30;
        for (int round = 0; round < 3; round++) {
            if (t == 0) {
                tk_endpoint(bind_ep, sizeof bind_ep, "bench");
            } else {
                snprintf(bind_ep, sizeof bind_ep, "tcp://127.0.0.1:%d", tk_free_tcp_port());
            }
            strcpy(conn_ep, bind_ep);
            double x = bench_ppx(bind_ep, conn_ep, &req, &rep);
            if (x < ppx) ppx = x;
            if (t == 0) {
                tk_endpoint(bind_ep, sizeof bind_ep, "bench-raw");
            } else {
                snprintf(bind_ep, sizeof bind_ep, "tcp://127.0.0.1:%d", tk_free_tcp_port());
            }
            strcpy(conn_ep, bind_ep);
            x = tk_raw_pingpong(bind_ep, req, rep, SAMPLES_PER_RUN, REPEATS);
            if (x < raw) raw = x;
        }
        printf("%-9s %10.2f %10.2f %7.2fx %7zu/%zu  (goal <= 1.30x)\n", t == 0 ? "ipc" : "tcp", ppx * 1e6, raw * 1e6,
               ppx / raw, req, rep);
    }
    return 0;
}
