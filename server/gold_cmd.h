/* gold_cmd.h — command line of the gold estimators:
 *   ppxd train carl|rolr|rascal|cascal|alice|alices|sally --gold F.ppxg -o M.ppxr
 *   ppxd evaluate --model M.ppxr --x-file X.npy --theta V,..   (log r^ or --score t^)
 * argv[0] is the sub-command ("train" / "evaluate"); exit code 0, 1 (failure), 2 (usage). */
#ifndef PPX_GOLD_CMD_H
#define PPX_GOLD_CMD_H

/* 1 when s names a gold method (so `ppxd train s` is a gold estimator). */
int gold_cmd_is_method(const char *s);
int gold_cmd_train_main(int argc, char **argv);
int gold_cmd_evaluate_main(int argc, char **argv);

#endif
