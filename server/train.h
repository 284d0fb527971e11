/* train.h — the `ppxd train` and `ppxd posterior` sub-commands: amortized
 * posteriors (NPE flows, NRE classifiers) trained from live PPX simulations
 * or from .npy files, then sampled and evaluated.
 *
 * Both take the sub-command's own argument vector: argv[0] is "train" or
 * "posterior" (main.c passes argv + 1), and return the process exit code:
 * 0 success, 1 failure while running (simulators, training, I/O), 2 usage
 * error (reported before anything is started or written).
 * They install their own SIGINT/SIGTERM handlers (an interrupted training
 * keeps its best weights and still writes the model).
 */
#ifndef PPX_TRAIN_H
#define PPX_TRAIN_H

#include <stddef.h>
#include "prior.h"
#include "trace.h"

int ppxd_train_main(int argc, char **argv);
int ppxd_posterior_main(int argc, char **argv);

/* The prior of the named theta Samples from a trace's entries (their
 * distributions, element by element; also used by ppxd diagnose for gold
 * models, which store no prior).  NULL with the reason in err (a name
 * missing or not a latent Sample, a discrete kind). */
prior *train_prior_from_trace(const trace *t, const char *const *names, size_t n_names, char *err, size_t err_len);

#endif
