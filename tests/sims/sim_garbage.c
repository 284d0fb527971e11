/* sim_garbage — the Gaussian model on a raw REP socket that, on every 4th
 * Run of the process, replies with bytes that are not a valid PPX message
 * instead of its Sample.  Which kind of garbage depends on the pid:
 *   0: 64 pseudo-random bytes,
 *   1: the first half of a well-formed Sample (truncated buffer),
 *   2: an empty frame,
 *   3: a well-formed Run whose body union tag is 42 (unknown type).
 * The engine must discard the trace (garbage) and restart the simulator; if
 * it is not restarted, later Runs are served normally.
 * usage: sim_garbage ENDPOINT */
#include <stdint.h>
#include <unistd.h>
#include "rawsim.h"

static void run(rawsim *s)
{
    if (s->runs % 4 != 0) {
        rs_gaussian_trace(s);
        return;
    }
    switch (getpid() % 4) {
    case 0: {
        uint8_t junk[64];
        uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() ^ ((uint64_t)s->runs << 32);
        for (size_t i = 0; i < sizeof junk; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            junk[i] = (uint8_t)(x >> 24);
        }
        rs_send_raw(s, junk, sizeof junk);
        break;
    }
    case 1: {
        double mean = 1.0, sd = 2.2360679774997898;
        ppx_msg m;
        size_t len;
        rs_sample_msg(&m, &mean, &sd);
        const uint8_t *b = rs_encode(s, &m, &len);
        rs_send_raw(s, b, len / 2);
        break;
    }
    case 2:
        rs_send_raw(s, "", 0);
        break;
    default: {
        /* The spec's Run test vector with the body type byte (offset 23) set to 42. */
        static const char hex[] = "0c00000008000c000b000400080000000c000000000000030400040004000000";
        uint8_t b[32];
        for (int i = 0; i < 32; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            b[i] = (uint8_t)v;
        }
        b[23] = 42;
        rs_send_raw(s, b, sizeof b);
        break;
    }
    }
    /* Whatever comes next (if the engine does not kill us) gets handled by
     * the serve loop: a Reset for a request out of turn. */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ENDPOINT\n", argv[0]);
        return 2;
    }
    rawsim s;
    rs_open(&s, argv[1]);
    return rs_serve(&s, "Gaussian, garbage every 4th run", run);
}
