/* c2st.h — classifier two-sample test (C2ST) as the sbibm benchmark defines it
 * (sbibm.metrics.c2st, which uses scikit-learn's MLPClassifier):
 *
 *   - samples x0 [n0, d] get label 0, x1 [n1, d] label 1;
 *   - both are z-scored with the per-dimension mean and (unbiased) standard
 *     deviation of the FIRST set x0 (a dimension with zero spread is only
 *     centred, to avoid dividing by zero);
 *   - classifier: MLP d -> 10d -> 10d -> 1, ReLU, logistic output trained on
 *     the binary cross-entropy, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8),
 *     minibatches of min(200, n_train) reshuffled every epoch, L2 penalty
 *     alpha = 1e-4 on the weights (not the biases) scaled as scikit-learn
 *     does: loss + alpha/2 ||W||^2 / batch_rows;  Glorot-uniform init of
 *     weights and biases as scikit-learn (bound sqrt(6/(fan_in+fan_out)));
 *   - at most max_epochs epochs (scikit-learn's max_iter = 10000), stopping
 *     early when the epoch's mean training loss has failed to improve on the
 *     best so far by tol = 1e-4 for more than n_iter_no_change = 10
 *     consecutive epochs (scikit-learn's rule);
 *   - score = classification accuracy (logit > 0 means label 1) averaged over
 *     n_folds = 5 shuffled cross-validation folds (fold sizes differ by at
 *     most one).
 * 0.5 means the classifier cannot tell the sets apart; 1.0 means it always can.
 * Deterministic given cfg->seed (and the OpenBLAS thread count, which can
 * change float summation order).
 * Ownership: the caller owns x0, x1 and score; nothing is retained.
 */
#ifndef PPX_C2ST_H
#define PPX_C2ST_H

#include <stddef.h>
#include <stdint.h>

typedef struct c2st_config {
    int n_folds;          /* 5, >= 2 */
    int hidden_mult;      /* 10: hidden width = hidden_mult * d */
    int max_epochs;       /* 10000 */
    int batch;            /* 200 (capped at the training-set size) */
    float lr;             /* 1e-3 */
    float weight_decay;   /* 1e-4 (L2 alpha) */
    double tol;           /* 1e-4 */
    int n_iter_no_change; /* 10 */
    int z_score;          /* 1: z-score with x0's moments; 0: use the data as given */
    uint64_t seed;        /* 1 (sbibm's default) */
} c2st_config;

/* The sbibm defaults listed above. */
c2st_config c2st_defaults(void);

/* C2ST accuracy of x0 [n0, d] against x1 [n1, d] into *score.  cfg NULL means
 * c2st_defaults().  Returns 0, or -1 (reason on stderr) on invalid arguments
 * (d = 0, fewer samples than 2 * n_folds in total, non-finite data) or
 * allocation failure.  *epochs_out, if not NULL, receives the mean number of
 * epochs trained per fold (diagnostics). */
int c2st(const double *x0, size_t n0, const double *x1, size_t n1, size_t d,
         const c2st_config *cfg, double *score, double *epochs_out);

#endif
