/* train_ic.h — `ppxd train ic`: trains an inference-compilation network
 * (src/ic/ic.h) on prior traces, online from PPX simulators or offline from
 * a .ppxt trace file, and writes it as a .ppxm model (kind IC).
 *
 * Online, the engine (main thread) runs the simulators in training mode
 * (every Observe without a value is drawn by ppxd) and hands traces to the
 * trainer thread through a bounded ring of traces: simulators wait only if
 * the trainer is a whole ring behind; the trainer never waits for a
 * simulator except when the ring is empty.  Traces are consumed in index
 * order (trace i from RNG stream (seed, i)), so a run is reproducible for a
 * given --seed whatever the number of simulators and their timing
 * (--max-seconds aside, which stops at a time).
 *
 * argv[0] is "ic" (main.c passes argv + 2 of "ppxd train ic ...").  Exit
 * codes: 0 done, 1 failure while running, 2 usage error. */
#ifndef PPX_TRAIN_IC_H
#define PPX_TRAIN_IC_H

int ppxd_train_ic_main(int argc, char **argv);

#endif
