/* sim_slow — the Gaussian model of clients/examples/gaussian.c (same
 * addresses and names) with two knobs, for the engine benchmarks:
 *   PPX_SIM_DELAY_US=D   sleep D microseconds before each draw (a slow simulator);
 *   PPX_SIM_HANG_LOCK=F  the one process holding lock file F (its pid inside;
 *                        a new process takes it over once that pid is dead)
 *                        hangs for good in every PPX_SIM_HANG_EVERY-th trace
 *                        (default 50), after its first draw was answered:
 *                        one hanging simulator among healthy ones.
 * usage: sim_slow ENDPOINT [MAX_RUNS] */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include "ppx_sim.h"

typedef struct knobs {
    useconds_t delay_us;
    int hanger;
    unsigned long hang_every;
} knobs;

static void pause_us(const knobs *k)
{
    if (k->delay_us) usleep(k->delay_us);
}

static void forward(ppx_sim *sim, void *user)
{
    const knobs *k = user;
    pause_us(k);
    double mu = ppx_sample_normal(sim, 1.0, sqrt(5.0), PPX_HERE(sim), "mu");
    if (k->hanger && (ppx_sim_runs(sim) + 1) % k->hang_every == 0)
        for (;;) pause();
    pause_us(k);
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, PPX_HERE(sim), "obs0");
    pause_us(k);
    ppx_observe_scalar(sim, DIST_NORMAL, mu, sqrt(2.0), NULL, PPX_HERE(sim), "obs1");
    ppx_set_result(sim, &mu, 1);
}

/* Claim the hang lock: 1 when this process is the hanging one. */
static int claim_hang_lock(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0) return 0;
    int mine = 0;
    if (flock(fd, LOCK_EX) == 0) {
        char buf[32] = "";
        ssize_t n = read(fd, buf, sizeof buf - 1);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno == ESRCH)) {
            char out[32];
            int len = snprintf(out, sizeof out, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) == 0 && pwrite(fd, out, (size_t)len, 0) == len) mine = 1;
        }
        flock(fd, LOCK_UN);
    }
    close(fd);
    return mine;
}

int main(int argc, char **argv)
{
    knobs k = {0, 0, 50};
    const char *d = getenv("PPX_SIM_DELAY_US"), *lock = getenv("PPX_SIM_HANG_LOCK"), *every = getenv("PPX_SIM_HANG_EVERY");
    if (d) k.delay_us = (useconds_t)strtoul(d, NULL, 10);
    if (every && strtoul(every, NULL, 10) > 0) k.hang_every = strtoul(every, NULL, 10);
    if (lock && *lock) k.hanger = claim_hang_lock(lock);
    ppx_sim *sim = ppx_sim_new("Gaussian, slow or hanging on request", forward, &k);
    if (!sim) return 1;
    int rc = ppx_sim_main(sim, argc, argv);
    ppx_sim_destroy(&sim);
    return rc;
}
