/* gold_cmd.h — command line of the gold estimators:
 *   ppxd train carl|rolr|rascal|cascal|alice|alices|sally|nde|scandal --gold F.ppxg -o M.ppxr
 *   ppxd evaluate --model M.ppxr --x-file X.npy --theta V,..   (log r^ or --score t^)
 *   ppxd fisher, ppxd limits (below)
 * argv[0] is the sub-command ("train" / "evaluate"); exit code 0, 1 (failure), 2 (usage). */
#ifndef PPX_GOLD_CMD_H
#define PPX_GOLD_CMD_H

/* 1 when s names a gold method (so `ppxd train s` is a gold estimator). */
int gold_cmd_is_method(const char *s);
int gold_cmd_train_main(int argc, char **argv);
int gold_cmd_evaluate_main(int argc, char **argv);
/* ppxd fisher --gold F.ppxg [--model SALLY.ppxr] [--events N]   expected Fisher information */
int gold_cmd_fisher_main(int argc, char **argv);
/* ppxd limits --model M.ppxr --x-file EVENTS.npy --grid LO:HI:N...   summed log r^ over a theta grid */
int gold_cmd_limits_main(int argc, char **argv);

#include "gold/gold_data.h"
#include "gold/gold_est.h"

/* `train METHOD ...` parsed for ppxd daemon (argv[0] = "train", the method
 * next): the CLI's parser and messages (cli_complain, so captured); the data
 * set is --data NAME (resolved by the daemon), and -o, --gold and --threads
 * are refused.  The config has progress off; the caller sets its stop flag.
 * NULL after a complaint. */
typedef struct gold_train_cmd gold_train_cmd;
gold_train_cmd *gold_train_cmd_parse(int argc, char **argv);
gold_train_config *gold_train_cmd_config(gold_train_cmd *c);
const char *gold_train_cmd_data(const gold_train_cmd *c);
void gold_train_cmd_destroy(gold_train_cmd **c);
/* info [D, D] = n_events E[t t^T] over the rows of g simulated at theta0 (y = 0), t the model's score
 * t^(x) (m != NULL) or the mined joint score (m == NULL).  Rows used, or -1 (reason on stderr). */
int gold_fisher(gold_model *m, const gold_data *g, double n_events, double *info);
/* sum_lr[j] = sum_i log r^(x_i | grid_j) for x [n_obs, C] and grid [n_grid, D].  0 or -1. */
int gold_limits(gold_model *m, const double *x, size_t n_obs, const double *grid, size_t n_grid, double *sum_lr);

#endif
