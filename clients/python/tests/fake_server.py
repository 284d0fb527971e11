"""A small stand-in for `ppxd serve` written with this package's serve.fbs
codec: a ROUTER socket in a thread answering the query protocol.  Used by
test_query to test the client independently of the C server.

Models are fake: "gauss" has theta_dim 2 and x_dim 3; Sample returns, for
observation row i, n rows of rng(seed, i) normals shifted by the row's mean;
LogProb returns -0.5 * |theta|^2.  Special model names: "slow" replies after
`slow_s` seconds, "garbage" replies with bytes that are not an Envelope,
"wrongtype" replies with a StatusReply."""
import threading
import time

import numpy as np
import zmq

from ppx import DecodeError
from ppx import serve_wire as sw
from ppx.serve_wire import ErrorCode, Record


def info(name, theta_dim=2, x_dim=3, generation=1, path=""):
    return Record("ModelInfo", name=name, kind="NPE-NSF", theta_names=["t%d" % j for j in range(theta_dim)],
                  theta_dim=theta_dim, x_names=["x%d" % j for j in range(x_dim)], x_dim=x_dim,
                  created=1700000000, n_simulations=1000, best_val_loss=-1.5, checksum=0xDEADBEEF,
                  path=path, generation=generation, prior="normal(0, 1) x %d" % theta_dim)


class FakeServer:
    def __init__(self, endpoint, curve_secret=None, slow_s=0.5):
        self.endpoint = endpoint
        self.models = {"gauss": info("gauss")}
        self.requests = []      # (frames, Envelope or None)
        self.slow_s = slow_s
        self.started = time.monotonic()
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve_secret is not None:
            self.sock.curve_server = True
            self.sock.curve_secretkey = curve_secret
        self.sock.bind(endpoint)
        self._stop = False
        self._pending = []      # (due time, frames)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def close(self):
        self._stop = True
        self.thread.join(5)
        self.sock.close(linger=0)

    def _loop(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop:
            for due, frames in list(self._pending):
                if time.monotonic() >= due:
                    self.sock.send_multipart(frames)
                    self._pending.remove((due, frames))
            if not poller.poll(20):
                continue
            frames = self.sock.recv_multipart()
            route, payload = frames[:-1], frames[-1]
            try:
                env = sw.decode_envelope(payload)
            except DecodeError as e:
                self.requests.append((frames, None))
                self.sock.send_multipart(route + [sw.encode_envelope(
                    "Error", dict(code=ErrorCode.MALFORMED, message=str(e)), 0)])
                continue
            self.requests.append((frames, env))
            try:
                body_type, body = self.answer(env)
            except Exception as e:  # a bug here must not kill the thread
                body_type, body = "Error", dict(code=ErrorCode.INTERNAL, message=repr(e))
            if body_type == "garbage":
                self.sock.send_multipart(route + [b"\x00garbage, not an envelope"])
                continue
            slow = body_type.startswith("slow:")
            reply = sw.encode_envelope(body_type[5:] if slow else body_type, body, env.request_id)
            if slow:
                self._pending.append((time.monotonic() + self.slow_s, route + [reply]))
            else:
                self.sock.send_multipart(route + [reply])

    def answer(self, env):
        def err(code, msg):
            return "Error", dict(code=code, message=msg)
        if env.version != sw.PROTOCOL_VERSION:
            return err(ErrorCode.VERSION_MISMATCH, "version %d" % env.version)
        b, t = env.body, env.body_type
        if t == "ListModels":
            return "ListModelsReply", dict(models=list(self.models.values()))
        if t == "Status":
            return "StatusReply", dict(version="fake 1", uptime_seconds=time.monotonic() - self.started,
                                       models=sorted(self.models), workers=1, queue_depth=0,
                                       requests=len(self.requests), errors=0, busy=0)
        if t in ("Sample", "LogProb"):
            if b.model == "slow":
                return ("slow:SampleReply", dict(samples=[], acceptance=[])) if t == "Sample" else \
                    ("slow:LogProbReply", dict(log_prob=[]))
            if b.model == "garbage":
                return "garbage", None
            if b.model == "wrongtype":
                return "StatusReply", dict(version="x")
            m = self.models.get(b.model)
            if m is None:
                return err(ErrorCode.UNKNOWN_MODEL, "no model named '%s'" % b.model)
            obs = b.observations if t == "Sample" else b.observation
            x = sw.matrix_array(obs)
            if x.shape[1] != m.x_dim:
                return err(ErrorCode.BAD_SHAPE, "observation has %d columns, model '%s' takes %d"
                           % (x.shape[1], b.model, m.x_dim))
            if not np.isfinite(x).all():
                return err(ErrorCode.NAN_INPUT, "observation is not finite")
            if t == "Sample":
                out = []
                for i, row in enumerate(x):
                    rng = np.random.default_rng([b.seed, i])
                    out.append(sw.matrix(rng.standard_normal((b.n, m.theta_dim)) + row.mean()))
                return "SampleReply", dict(samples=out, acceptance=[1.0 - 0.1 * i for i in range(len(out))])
            th = sw.matrix_array(b.thetas)
            if th.shape[1] != m.theta_dim:
                return err(ErrorCode.BAD_SHAPE, "thetas have %d columns" % th.shape[1])
            lp = -0.5 * (th ** 2).sum(axis=1) + (0.0 if b.normalise else 1.0) + b.seed * 1e-3 + b.n_draws * 1e-6
            return "LogProbReply", dict(log_prob=lp)
        if t == "Load":
            if not b.path.endswith(".ppxm"):
                return err(ErrorCode.LOAD_FAILED, "%s: not a ppxd model file" % b.path)
            name = b.name or b.path.rsplit("/", 1)[-1][:-5]
            gen = self.models[name].generation + 1 if name in self.models else 1
            self.models[name] = info(name, generation=gen, path=b.path)
            return "AdminReply", dict(message="loaded %s" % name, model=self.models[name])
        if t == "Unload":
            if b.name not in self.models:
                return err(ErrorCode.UNKNOWN_MODEL, "no model named '%s'" % b.name)
            del self.models[b.name]
            return "AdminReply", dict(message="unloaded %s" % b.name)
        if t == "Reload":
            m = self.models.get(b.name)
            if m is None:
                return err(ErrorCode.UNKNOWN_MODEL, "no model named '%s'" % b.name)
            self.models[b.name] = info(b.name, generation=m.generation + 1, path=m.path)
            return "AdminReply", dict(message="reloaded", model=self.models[b.name])
        return err(ErrorCode.MALFORMED, "unexpected %s" % t)
