/* policy_ic.h — the inference-compilation policy: controlled Samples are
 * answered by a trained IC network's proposal (src/ic/ic.h), with the LSTM
 * state carried through each trace (one ic_state per slot).
 *
 * All requests of one policy_answer() call that the network can propose go
 * through it as ONE batch (one LSTM step for all of them, then each head).
 * Falls back to the prior, and counts, for:
 *   - uncontrolled draws (control = false), as in pyprob;
 *   - addresses the network never saw (or saw with another shape): these
 *     are counted per draw and per distinct address.
 * The log weight then is sum log p - log q over proposed draws plus the
 * observe log-likelihoods (the engine adds log q to log_proposal).
 *
 * The observation the network is conditioned on is given once, at
 * creation, from the --observe values (by the model's observe names);
 * names the model expects but that are missing are reported and fed as the
 * training mean.  Ownership: the policy owns the net.  Creating one sets
 * OpenBLAS to one thread (nn_set_threads(1)): the network runs per draw in
 * the engine's thread. */
#ifndef PPX_POLICY_IC_H
#define PPX_POLICY_IC_H

#include <stdint.h>
#include <stdio.h>

#include "engine.h"
#include "ic/ic.h"
#include "policy.h"

/* Takes ownership of net (destroyed on failure too).  NULL on out of memory. */
policy *policy_ic_new(ic_net *net, size_t n_slots, uint64_t seed, const observation *obs, size_t n_obs);
/* Load the model file and make the policy; NULL with the reason on stderr. */
policy *policy_ic_open(const char *model_path, size_t n_slots, uint64_t seed, const observation *obs, size_t n_obs);

typedef struct policy_ic_stats {
    uint64_t proposed;        /* draws answered by the network */
    uint64_t uncontrolled;    /* control = false: from the prior */
    uint64_t unseen;          /* draws at unknown addresses: from the prior */
    uint64_t unseen_addresses;/* distinct such addresses */
    uint64_t batches;         /* network batches */
} policy_ic_stats;

/* Condition the following traces on another observation (between engine
 * runs: traces in flight would mix the two); names as for policy_ic_new,
 * without the warnings.  0 or -1 (out of memory). */
int policy_ic_set_observation(policy *p, const observation *obs, size_t n_obs);
/* The network (owned by the policy): its observe names and widths. */
const ic_net *policy_ic_net(const policy *p);

policy_ic_stats policy_ic_get_stats(const policy *p);
/* One line of counts to f. */
void policy_ic_report(const policy *p, FILE *f);

#endif
