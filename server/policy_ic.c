/* policy_ic.c — IC proposals as a policy (see policy_ic.h). */
#include "policy_ic.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

typedef struct ic_slot {
    ic_state st;
    double *p0, *p1;     /* expanded prior parameters of the pending draw */
    size_t cap0, cap1;
} ic_slot;

typedef struct ic_policy {
    policy base;
    ic_net *net;
    float *obs_emb;      /* [Eo], fixed for the job */
    ic_slot *slots;
    ic_query *q;         /* [n_slots] batch */
    size_t *q_req;       /* request index of each query */
    char **unseen;       /* distinct unseen addresses (first 4096 kept) */
    size_t n_unseen, cap_unseen;
    policy_ic_stats st;
} ic_policy;

static void icp_begin(policy *p, size_t slot, uint64_t idx)
{
    ic_policy *ip = (ic_policy *)p;
    policy_base_begin(p, slot, idx);
    ic_state_reset(ip->net, &ip->slots[slot].st);
}

static int grow(double **p, size_t *cap, size_t n)
{
    if (n <= *cap) return 0;
    double *q = realloc(*p, n * sizeof *q);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

static void note_unseen(ic_policy *ip, const char *address)
{
    ip->st.unseen++;
    for (size_t i = 0; i < ip->n_unseen; i++)
        if (strcmp(ip->unseen[i], address) == 0) return;
    ip->st.unseen_addresses++;
    if (ip->n_unseen >= 4096) return;
    if (ip->n_unseen == ip->cap_unseen) {
        size_t cap = ip->cap_unseen ? 2 * ip->cap_unseen : 16;
        char **q = realloc(ip->unseen, cap * sizeof *q);
        if (!q) return;
        ip->unseen = q;
        ip->cap_unseen = cap;
    }
    char *s = strdup(address);
    if (s) ip->unseen[ip->n_unseen++] = s;
}

static void icp_answer(policy *p, policy_request *reqs, size_t n)
{
    ic_policy *ip = (ic_policy *)p;
    int R = 0;
    for (size_t i = 0; i < n; i++) {
        policy_request *r = &reqs[i];
        if (!r->control) {
            ip->st.uncontrolled++;
            policy_draw_prior(p, r);
            continue;
        }
        const dist *d = r->d;
        int a = ic_net_address(ip->net, r->address, d->kind, (int)d->n, (int)d->k, 0);
        ic_slot *s = &ip->slots[r->slot];
        size_t k = d->kind == DIST_CATEGORICAL ? d->k : 1;
        if (a < 0 || grow(&s->p0, &s->cap0, d->n * k) < 0 || grow(&s->p1, &s->cap1, d->n) < 0) {
            note_unseen(ip, r->address);
            policy_draw_prior(p, r);
            continue;
        }
        ic_expand_params(d->kind, d->n, k, d->p0, d->n0, d->p1, d->n1, s->p0, s->p1);
        ic_query *q = &ip->q[R];
        q->st = &s->st;
        q->addr = a;
        q->p0 = s->p0;
        q->p1 = s->p1;
        q->r = &p->slot_rng[r->slot];
        q->x = r->value;
        q->logq = 0;
        ip->q_req[R++] = i;
    }
    if (!R) return;
    ip->st.batches++;
    if (ic_net_propose(ip->net, ip->obs_emb, ip->q, R) < 0) {
        for (int j = 0; j < R; j++) {
            policy_request *r = &reqs[ip->q_req[j]];
            r->flag = POLICY_INVALID;
            snprintf(r->reason, sizeof r->reason, "IC proposal: out of memory");
        }
        return;
    }
    for (int j = 0; j < R; j++) {
        policy_request *r = &reqs[ip->q_req[j]];
        r->log_q = ip->q[j].logq;
        r->observed = 0;
        r->replayed = 0;
        r->flag = POLICY_ANSWERED;
        ip->st.proposed++;
    }
}

static void icp_destroy(policy *p)
{
    ic_policy *ip = (ic_policy *)p;
    if (ip->slots)
        for (size_t i = 0; i < p->n_slots; i++) {
            ic_state_free(&ip->slots[i].st);
            free(ip->slots[i].p0);
            free(ip->slots[i].p1);
        }
    for (size_t i = 0; i < ip->n_unseen; i++) free(ip->unseen[i]);
    free(ip->unseen);
    free(ip->slots);
    free(ip->q);
    free(ip->q_req);
    free(ip->obs_emb);
    ic_net_destroy(&ip->net);
    policy_base_free(p);
    free(ip);
}

static const policy_ops ic_ops = {icp_begin, icp_answer, NULL, icp_destroy};

/* obs_emb from the observation (by the model's observe names); with warn,
 * names the model embeds that are missing or of another width are reported. */
static int embed_observation(ic_policy *ip, const observation *obs, size_t n_obs, int warn)
{
    ic_net *net = ip->net;
    float *ov = calloc((size_t)net->cfg.obs_dim, sizeof *ov);
    const char **names = calloc(n_obs ? n_obs : 1, sizeof *names);
    const double **vals = calloc(n_obs ? n_obs : 1, sizeof *vals);
    size_t *counts = calloc(n_obs ? n_obs : 1, sizeof *counts);
    int ok = ov && names && vals && counts;
    if (ok) {
        for (size_t i = 0; i < n_obs; i++) {
            names[i] = obs[i].name;
            vals[i] = obs[i].values;
            counts[i] = obs[i].n;
        }
        ic_net_obs_vector(net, names, vals, counts, n_obs, ov);
        for (int j = 0; warn && j < net->n_obs_names; j++) {
            size_t q = 0;
            while (q < n_obs && strcmp(obs[q].name, net->obs_names[j]) != 0) q++;
            if (q == n_obs)
                fprintf(stderr, "ppxd: warning: the IC model embeds observe '%s', not given with --observe: it sees "
                                "its training mean\n", net->obs_names[j]);
            else if (obs[q].n != (size_t)net->obs_width[j])
                fprintf(stderr, "ppxd: warning: observe '%s' has %zu values, the IC model was trained with %d: it "
                                "sees the training mean\n", net->obs_names[j], obs[q].n, net->obs_width[j]);
        }
        ic_net_embed_obs(net, ov, ip->obs_emb);
    }
    free(ov);
    free(names);
    free(vals);
    free(counts);
    return ok ? 0 : -1;
}

policy *policy_ic_new(ic_net *net, size_t n_slots, uint64_t seed, const observation *obs, size_t n_obs)
{
    if (!net) return NULL;
    ic_policy *ip = calloc(1, sizeof *ip);
    if (!ip || policy_base_init(&ip->base, &ic_ops, n_slots, seed) < 0) {
        free(ip);
        ic_net_destroy(&net);
        return NULL;
    }
    ip->net = net;
    /* Small per-draw products: OpenBLAS threads would only spin against the
     * simulators for the cores (process-wide, as every ppxd command does). */
    nn_set_threads(1);
    size_t ns = n_slots ? n_slots : 1;
    ip->slots = calloc(ns, sizeof *ip->slots);
    ip->q = calloc(ns, sizeof *ip->q);
    ip->q_req = calloc(ns, sizeof *ip->q_req);
    ip->obs_emb = calloc((size_t)net->cfg.obs_emb, sizeof *ip->obs_emb);
    int ok = ip->slots && ip->q && ip->q_req && ip->obs_emb;
    for (size_t i = 0; ok && i < ns; i++) ok = ic_state_init(net, &ip->slots[i].st) == 0;
    if (!ok || embed_observation(ip, obs, n_obs, n_obs > 0) < 0) {
        icp_destroy(&ip->base);
        return NULL;
    }
    return &ip->base;
}

int policy_ic_set_observation(policy *p, const observation *obs, size_t n_obs)
{
    return embed_observation((ic_policy *)p, obs, n_obs, 0);
}

const ic_net *policy_ic_net(const policy *p) { return ((const ic_policy *)p)->net; }

policy *policy_ic_open(const char *model_path, size_t n_slots, uint64_t seed, const observation *obs, size_t n_obs)
{
    char err[512];
    ic_net *net = ic_net_load(model_path, err, sizeof err);
    if (!net) {
        fprintf(stderr, "ppxd: %s\n", err);
        return NULL;
    }
    policy *p = policy_ic_new(net, n_slots, seed, obs, n_obs);
    if (!p) fprintf(stderr, "ppxd: out of memory\n");
    return p;
}

policy_ic_stats policy_ic_get_stats(const policy *p) { return ((const ic_policy *)p)->st; }

void policy_ic_report(const policy *p, FILE *f)
{
    const ic_policy *ip = (const ic_policy *)p;
    fprintf(f, "ppxd: IC: %llu draws proposed by the network in %llu batches; from the prior: %llu uncontrolled, "
               "%llu at %llu unseen addresses\n",
            (unsigned long long)ip->st.proposed, (unsigned long long)ip->st.batches,
            (unsigned long long)ip->st.uncontrolled, (unsigned long long)ip->st.unseen,
            (unsigned long long)ip->st.unseen_addresses);
    for (size_t i = 0; i < ip->n_unseen && i < 5; i++) fprintf(f, "ppxd: IC: unseen address %s\n", ip->unseen[i]);
    if (ip->n_unseen > 5) fprintf(f, "ppxd: IC: ... and %llu more unseen addresses\n",
                                  (unsigned long long)(ip->st.unseen_addresses - 5));
}
