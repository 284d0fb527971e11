/* diagnose.h — the `ppxd diagnose` sub-command: calibration checks of a
 * trained posterior (.ppxm NPE, NRE or IC; .ppxr gold ratio models: CARL,
 * ROLR, RASCAL, CASCAL, ALICE, ALICES) — simulation-based
 * calibration, expected coverage of highest-density regions, TARP, a
 * posterior predictive check through the simulators and C2ST against
 * reference samples — written as a JSON report, .npy/CSV arrays and a
 * one-screen summary (statistics in src/diag/diag.h).
 *
 * argv[0] is "diagnose" (main.c passes argv + 1).  Returns the exit code: 0
 * when it ran (whatever the verdicts; --strict: 3 when a check failed), 1 on
 * a failure while running, 2 on a usage error (before anything is started
 * or written).
 */
#ifndef PPX_DIAGNOSE_H
#define PPX_DIAGNOSE_H

int ppxd_diagnose_main(int argc, char **argv);

#endif
