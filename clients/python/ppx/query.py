"""Client of ppxd's posterior query server (protocol/serve.fbs).

    from ppx import Client
    c = Client("tcp://127.0.0.1:5560")
    c.models()                               # [ModelInfo, ...]
    theta = c.sample("gauss", [8.0, 9.0], n=1000, seed=1)   # (1000, theta_dim)
    lp = c.log_prob("gauss", [8.0, 9.0], theta[:10])        # (10,)
    lr = c.log_ratio("galton", [[5.0], [15.0]], theta0=[-0.8])   # gold models: (2,)
    t = c.score("galton", [[5.0], [15.0]], theta=[-0.8])         # (2, theta_dim)

    # ppxd daemon: jobs on its simulator pool
    jid = c.submit(["train", "npe", "-n", "2000", "--theta", "mu", "--x", "obs0,obs1"], name="gauss")
    info = c.wait(jid)                        # JobInfo once it has ended
    c.fetch(jid, "model.ppxm", "gauss.ppxm")  # or c.fetch(jid) -> {output: bytes}

Each call sends one Envelope{version 1, request_id, body} and waits for the
reply Envelope with the same request_id (replies to earlier, timed-out
requests are discarded).  The socket is a DEALER that frames each message as
a REQ socket does (an empty delimiter frame, then the Envelope), so the
server sees the same routing envelope from this client as from a REQ client.

Errors: an Error reply raises PpxError(code, message) with the server's
ErrorCode; no reply within timeout_ms raises PpxTimeout; a malformed reply
raises DecodeError.
"""

import os
import threading
import time

import numpy as np
import zmq

from . import serve_wire as sw
from .errors import DecodeError, PpxError, PpxTimeout
from .serve_wire import ErrorCode, JobState, Record  # noqa: F401  (re-exported)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"


class Client:
    """A connection to a ppxd query server.

    endpoint           e.g. "tcp://127.0.0.1:5560", "ipc:///run/ppxd.sock"
    timeout_ms         how long to wait for each reply (None: forever)
    curve_server_key   the server's CURVE public key (Z85 text, 40 chars) to
                       encrypt and authenticate the connection
    curve_client_keys  (public, secret) Z85 keys of this client; with a server
                       key but no client keys an ephemeral pair is made
                       (the server then sees an unknown, non-admin client)
    """

    def __init__(self, endpoint=DEFAULT_ENDPOINT, timeout_ms=30000, curve_server_key=None,
                 curve_client_keys=None, context=None):
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            if curve_server_key is not None or curve_client_keys is not None:
                if not zmq.has("curve"):
                    raise PpxError(None, "this libzmq has no CURVE support")
                if curve_server_key is None:
                    raise PpxError(None, "curve_client_keys given without curve_server_key")
                if curve_client_keys is None:
                    curve_client_keys = zmq.curve_keypair()
                pub, sec = curve_client_keys
                self._sock.curve_serverkey = _key(curve_server_key)
                self._sock.curve_publickey = _key(pub)
                self._sock.curve_secretkey = _key(sec)
            self._sock.connect(endpoint)
        except Exception:
            self._sock.close(linger=0)
            raise
        self._next_id = int.from_bytes(os.urandom(4), "little") or 1

    def close(self):
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # --- one request, one reply --------------------------------------------

    def call(self, body_type, body=None, expect=None, timeout_ms=-1):
        """Send a request body (a serve.fbs body name and a Record/dict) and
        return the reply body Record.  Raises PpxError for an Error reply or a
        reply of another type than `expect`."""
        if self._sock is None:
            raise PpxError(None, "client is closed")
        timeout = self.timeout_ms if timeout_ms == -1 else timeout_ms
        with self._lock:
            rid = self._next_id
            self._next_id = (self._next_id + 1) & 0xFFFFFFFFFFFFFFFF or 1
            self._sock.send_multipart([b"", sw.encode_envelope(body_type, body, rid)], copy=False)
            poller = zmq.Poller()
            poller.register(self._sock, zmq.POLLIN)
            deadline = None if timeout is None else time.monotonic() + timeout / 1000.0
            while True:
                wait = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
                if not poller.poll(wait):
                    raise PpxTimeout("no reply from %s to %s within %s ms" % (self.endpoint, body_type, timeout))
                frames = self._sock.recv_multipart(copy=True)
                env = sw.decode_envelope(frames[-1])
                if env.request_id != rid:
                    continue  # a late reply to an earlier request
                break
        if env.body_type == "Error":
            raise PpxError(env.body.code, env.body.message)
        if expect is not None and env.body_type != expect:
            raise DecodeError("expected %s in reply to %s, got %s" % (expect, body_type, env.body_type))
        return env.body

    # --- queries -----------------------------------------------------------

    def models(self):
        """The served models: a list of ModelInfo records (name, kind,
        theta_names, theta_dim, x_names, x_dim, created, n_simulations,
        best_val_loss, checksum, path, generation, prior)."""
        return self.call("ListModels", None, "ListModelsReply").models

    def model(self, name):
        """The ModelInfo of one served model (PpxError UNKNOWN_MODEL if none)."""
        for m in self.models():
            if m.name == name:
                return m
        raise PpxError(ErrorCode.UNKNOWN_MODEL, "no model %r is served" % name)

    def sample(self, model, obs, n, seed=None, max_seconds=0.0, return_acceptance=False):
        """n posterior samples of model's theta given observation obs.

        obs 1-D (x_dim,) -> array (n, theta_dim); obs 2-D (k, x_dim) -> array
        (k, n, theta_dim), one block per observation row.  seed None picks a
        random seed; the same seed gives the same samples.  With
        return_acceptance, returns (samples, acceptance) where acceptance is
        the rejection-to-support acceptance rate per observation (a float for
        1-D obs, else an array (k,))."""
        o = np.asarray(obs, dtype=np.float64)
        if o.ndim not in (1, 2):
            raise ValueError("obs must be 1-D (x_dim,) or 2-D (k, x_dim), got shape %s" % (o.shape,))
        if int(n) < 0:
            raise ValueError("n must be >= 0")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        body = sw.Record("Sample", model=model, observations=sw.matrix(o), n=int(n),
                         seed=int(seed) & 0xFFFFFFFFFFFFFFFF, max_seconds=float(max_seconds))
        r = self.call("Sample", body, "SampleReply")
        k = 1 if o.ndim == 1 else o.shape[0]
        if len(r.samples) != k:
            raise DecodeError("SampleReply has %d sample matrices for %d observations" % (len(r.samples), k))
        mats = [sw.matrix_array(m, "SampleReply.samples[%d]" % i) for i, m in enumerate(r.samples)]
        for i, m in enumerate(mats):
            if m.shape[0] != int(n):
                raise DecodeError("SampleReply.samples[%d] has %d rows, asked for %d" % (i, m.shape[0], n))
        if o.ndim == 1:
            out = mats[0]
            acc = float(r.acceptance[0]) if len(r.acceptance) else float("nan")
        else:
            if k == 0:
                out = np.empty((0, int(n), 0))
            elif len({m.shape[1] for m in mats}) == 1:
                out = np.stack(mats)
            else:
                out = mats
            acc = np.asarray(r.acceptance, dtype=np.float64)
        return (out, acc) if return_acceptance else out

    def log_prob(self, model, obs, thetas, normalise=True, seed=0, n_draws=0):
        """log q(theta | obs) for each row of thetas (m, theta_dim) at one
        observation obs (x_dim,): an array (m,).  A single theta (1-D) gives a
        float.  With normalise, the density is renormalised for mass outside
        the prior's support, estimated by the server from n_draws draws (0:
        its default) of an rng seeded with seed (same seed, same result)."""
        o = np.asarray(obs, dtype=np.float64)
        if o.ndim == 2 and o.shape[0] == 1:
            o = o[0]
        if o.ndim != 1:
            raise ValueError("log_prob takes one observation (x_dim,), got shape %s" % (o.shape,))
        t = np.asarray(thetas, dtype=np.float64)
        single = t.ndim == 1
        if t.ndim not in (1, 2):
            raise ValueError("thetas must be (theta_dim,) or (m, theta_dim), got shape %s" % (t.shape,))
        body = sw.Record("LogProb", model=model, observation=sw.matrix(o), thetas=sw.matrix(t),
                         normalise=bool(normalise), seed=int(seed) & 0xFFFFFFFFFFFFFFFF, n_draws=int(n_draws))
        r = self.call("LogProb", body, "LogProbReply")
        m = 1 if single else t.shape[0]
        if r.log_prob.size != m:
            raise DecodeError("LogProbReply has %d values for %d thetas" % (r.log_prob.size, m))
        return float(r.log_prob[0]) if single else r.log_prob

    # ---- gold models (ppxd train carl ... scandal) ----

    @staticmethod
    def _gold_rows(a, what):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim not in (1, 2):
            raise ValueError("%s must be (dim,) or (m, dim), got shape %s" % (what, a.shape))
        return a

    def log_ratio(self, model, x, theta0, theta1=None):
        """log r^(x | theta0, theta1) of a gold model (carl ... alices, nde,
        scandal) for each row of x (m, x_dim): an array (m,); a single x
        (x_dim,) gives a float.  theta0 and theta1 are one point (theta_dim,)
        for every row or (m, theta_dim); theta1=None: the model's reference."""
        xa = self._gold_rows(x, "x")
        body = sw.Record("LogRatio", model=model, x=sw.matrix(xa), theta0=sw.matrix(self._gold_rows(theta0, "theta0")),
                         theta1=None if theta1 is None else sw.matrix(self._gold_rows(theta1, "theta1")))
        r = self.call("LogRatio", body, "LogRatioReply")
        m = 1 if xa.ndim == 1 else xa.shape[0]
        if r.log_r.size != m:
            raise DecodeError("LogRatioReply has %d values for %d x rows" % (r.log_r.size, m))
        return float(r.log_r[0]) if xa.ndim == 1 else r.log_r

    def score(self, model, x, theta=None):
        """The estimated score t^(x | theta) of a gold model (rascal, cascal,
        alices, sally, nde, scandal): (m, theta_dim) for x (m, x_dim), or
        (theta_dim,) for one x (x_dim,).  theta: one point or one per row;
        None for sally (its reference point)."""
        xa = self._gold_rows(x, "x")
        body = sw.Record("Score", model=model, x=sw.matrix(xa),
                         theta=None if theta is None else sw.matrix(self._gold_rows(theta, "theta")))
        r = self.call("Score", body, "ScoreReply")
        t = sw.matrix_array(r.score, "ScoreReply.score")
        m = 1 if xa.ndim == 1 else xa.shape[0]
        if t.shape[0] != m:
            raise DecodeError("ScoreReply has %d rows for %d x rows" % (t.shape[0], m))
        return t[0] if xa.ndim == 1 else t

    def status(self):
        """The server's StatusReply (version, uptime_seconds, models, workers,
        queue_depth, requests, errors, busy)."""
        return self.call("Status", None, "StatusReply")

    def load(self, path, name=""):
        """Load (or replace) a model file under name ("" = the file's base
        name).  Returns the AdminReply (message, model)."""
        return self.call("Load", sw.Record("Load", path=str(path), name=name), "AdminReply")

    def unload(self, name):
        return self.call("Unload", sw.Record("Unload", name=name), "AdminReply")

    def reload(self, name):
        return self.call("Reload", sw.Record("Reload", name=name), "AdminReply")


    # --- jobs (ppxd daemon) -------------------------------------------------

    def submit(self, command, name="", sim_model=""):
        """Submit a job (admin): command is the list of words after "ppxd",
        without simulator or output options, e.g. ["simulate", "-n", "1000"].
        Returns the job id.  PpxError BAD_REQUEST with the command line's
        own message when the daemon cannot run it."""
        if isinstance(command, str):
            raise TypeError("command is a list of words, e.g. ['simulate', '-n', '1000']")
        body = sw.Record("JobSubmit", name=name, command=[str(w) for w in command], sim_model=sim_model)
        return self.call("JobSubmit", body, "JobReply").jobs[0].id

    def jobs(self):
        """Every job of the daemon: a list of JobInfo records (id, name,
        command, sim_model, state (JobState), message, submitted, started,
        finished, done, total, unit, loss, eta_seconds, outputs)."""
        return self.call("JobList", None, "JobReply").jobs

    def job_status(self, job_id):
        """The JobInfo of one job (PpxError UNKNOWN_JOB if none)."""
        return self.call("JobStatus", sw.Record("JobStatus", id=job_id), "JobReply").jobs[0]

    def cancel(self, job_id):
        """Cancel a job (admin); returns its JobInfo (it ends CANCELLED soon)."""
        return self.call("JobCancel", sw.Record("JobCancel", id=job_id), "JobReply").jobs[0]

    def wait(self, job_id, timeout=None, poll=5.0, check=False, progress=None):
        """Wait until the job has ended (or timeout seconds passed) and return
        its JobInfo.  The daemon holds each wait up to `poll` seconds (it
        answers at once when the job ends); progress(info) is called after
        each round.  With check, a FAILED or CANCELLED job raises JobFailed."""
        t0 = time.monotonic()
        while True:
            left = poll if timeout is None else min(poll, timeout - (time.monotonic() - t0))
            left = max(0.0, left)
            ms = None if self.timeout_ms is None else int(left * 1000) + self.timeout_ms
            info = self.call("JobWait", sw.Record("JobWait", id=job_id, max_seconds=float(left)), "JobReply",
                             timeout_ms=ms).jobs[0]
            if progress is not None:
                progress(info)
            ended = info.state in (sw.JobState.DONE, sw.JobState.FAILED, sw.JobState.CANCELLED)
            if ended or (timeout is not None and time.monotonic() - t0 >= timeout):
                if ended and check and info.state != sw.JobState.DONE:
                    raise JobFailed(info)
                return info

    def fetch(self, job_id, output=None, path=None, chunk=4 << 20):
        """An output of a job, in chunks: its bytes, or written to path (then
        returns path).  Without output: {name: bytes} of every output."""
        if output is None:
            if path is not None:
                raise ValueError("fetch(job_id) returns every output; give output= to write one to path")
            return {o: self.fetch(job_id, o) for o in self.job_status(job_id).outputs}
        parts, offset, size = [], 0, None
        while size is None or offset < size:
            r = self.call("JobFetch", sw.Record("JobFetch", id=job_id, output=output, offset=offset,
                                                max_bytes=int(chunk)), "JobFetchReply")
            if r.offset != offset or (len(r.data) == 0 and offset < r.size):
                raise DecodeError("JobFetchReply from offset %d, asked for %d" % (r.offset, offset))
            data = bytes(r.data)
            parts.append(data)
            offset += len(data)
            size = r.size
        blob = b"".join(parts)
        if path is None:
            return blob
        tmp = str(path) + ".part"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
        return path

    def sims(self):
        """The daemon's simulator pool: SimPool records (model, connected,
        busy, joined, left)."""
        return self.call("SimList", None, "SimListReply").pools


class JobFailed(PpxError):
    """Client.wait(..., check=True): the job ended FAILED or CANCELLED."""

    def __init__(self, info):
        PpxError.__init__(self, None, "job %s %s: %s" % (info.id, sw.JOB_STATE_NAMES[info.state].upper()
                                                          if 0 <= info.state < len(sw.JOB_STATE_NAMES)
                                                          else "FAILED", info.message))
        self.info = info


def _key(k):
    if isinstance(k, str):
        k = k.encode("ascii")
    if len(k) not in (32, 40):
        raise PpxError(None, "a CURVE key is 40 Z85 characters (or 32 raw bytes)")
    return k
