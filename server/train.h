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

int ppxd_train_main(int argc, char **argv);
int ppxd_posterior_main(int argc, char **argv);

#endif
