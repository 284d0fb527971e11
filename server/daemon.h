/* daemon.h — `ppxd daemon`: one long-running ppxd that simulators join from
 * any host, to which users submit jobs over the query protocol, and which
 * serves what it trains.
 *
 * Threads:
 *   - the main thread runs the engine (engine.h) over the simulator pool
 *     (--sim-listen endpoints; --sim-cmd/--connect simulators too) with one
 *     multiplexing job: each free session is given a trace of one of the
 *     running jobs whose simulator model (the job's --sim-model, else the
 *     daemon's, else any) is the session's, the job with the fewest traces
 *     in flight first (round robin among equals); Sample requests go to the
 *     policy of the job owning the slot, Observe values and seeds are the
 *     job's.  It sleeps while idle and wakes on an eventfd (a submit, a
 *     cancel, a signal).  It also starts queued jobs (--max-jobs at once),
 *     finishes them and updates their progress;
 *   - the serving threads (serve.h) answer Sample/LogProb/... as `ppxd
 *     serve` does, and the job requests through serve_config.on_request,
 *     quickly: a JobWait is deferred (serve_call_defer), never held in a
 *     worker;
 *   - one waiter thread answers deferred JobWaits when their job ends or
 *     their time (at most DAEMON_MAX_WAIT_S) is up;
 *   - a training thread per train job, once its simulations are in: it
 *     trains, saves, and publishes the model under the job's name; a
 *     diagnose job's thread runs its rounds and writes its report.
 *
 * Jobs: the command's words after "ppxd", parsed with the command line's own
 * parsers (cli_parse, train_job_parse) and so with its messages; simulator,
 * engine and output options are refused (the daemon's pool and the job's
 * directory are used).  Supported: simulate, infer (is, lmh, rmh; ic with
 * --model NAME, a finished train ic job's name), train npe|nre|ic, mine
 * (mine.h's mine_task on the pool), train carl ... scandal --data NAME
 * (a training thread, no simulations) and diagnose (diagnose.h's diag_job:
 * live test pairs on the pool, then the rounds on a thread of their own;
 * with --data straight to the thread).  A diagnose job's --model is NAME
 * (DIR/models/NAME.ppxm|.ppxr) or JOB/OUTPUT (a finished job's output);
 * its files (--data, --obs-file, --reference, --truth) are NAME
 * (DIR/datasets/NAME) or JOB/OUTPUT; no paths, and the real file must lie
 * inside the data directory.  Admin
 * rights (serve.h) are needed to submit and cancel.
 *
 * Data directory:
 *   DIR/models/NAME.ppxm     served at start and on SIGHUP (trained models land here);
 *                            NAME.ppxr (gold estimators) too
 *   DIR/datasets/NAME.ppxg   gold data sets of mine jobs (train GOLD --data NAME)
 *   DIR/ic/NAME.ppxm         IC networks of train ic jobs (not served: used by infer ic jobs)
 *   DIR/jobs/ID/job.txt      the job's state, "key = value" lines, written
 *                            atomically (tmp + fsync + rename)
 *   DIR/datasets/NAME        (.npy, .csv) inputs of diagnose jobs
 *   DIR/jobs/ID/...          outputs: traces.ppxt (simulate), summary.txt and
 *                            samples.npy (infer), model.ppxm and
 *                            model.ppxm.log.csv (train; train ic: model.ppxm),
 *                            report.json, summary.txt, ranks.npy, ... (diagnose)
 *   DIR/daemon.lock          one daemon per directory (flock)
 * Jobs that were queued or running when a daemon died are FAILED "daemon
 * restarted" at the next start.  SIGTERM/SIGINT: running and queued jobs end
 * FAILED "daemon stopped" (training stops after its batch), waiters are
 * answered, then the daemon exits 0.
 */
#ifndef PPX_DAEMON_H
#define PPX_DAEMON_H

/* Longest a JobWait is held before it is answered with the job as it is. */
#define DAEMON_MAX_WAIT_S 30.0
/* Largest JobFetch chunk. */
#define DAEMON_MAX_CHUNK ((size_t)4 << 20)

/* `ppxd daemon ...`: argv[0] is "daemon".  0 after SIGTERM/SIGINT, 1 on a
 * start-up failure, 2 on a usage error. */
int ppxd_daemon_main(int argc, char **argv);

#endif
