"""Shared test helpers: build paths, endpoints, simulator subprocesses and a
minimal PPX engine (REQ socket + the Python codec)."""
import itertools
import os
import subprocess
import time

import zmq

from ppx import wire

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)                       # clients/python
REPO = os.path.dirname(os.path.dirname(PKG_ROOT))      # the repository
_counter = itertools.count()


def build_dir():
    return os.environ.get("PPXD_BUILD") or os.path.join(REPO, "build")


def ppxd():
    """Path of the ppxd binary, or None when not built."""
    p = os.path.join(build_dir(), "ppxd")
    return p if os.access(p, os.X_OK) else None


def endpoint(tag):
    return "ipc://@ppx-py-test-%d-%s-%d-%d" % (os.getpid(), tag, int(time.time() * 1e6) % 10**9, next(_counter))


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = PKG_ROOT + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def spawn_model(name, ep, *extra, stderr=subprocess.DEVNULL):
    """Start tests/models.py NAME EP as a subprocess."""
    return subprocess.Popen([PY, "-m", "tests.models", name, ep] + [str(x) for x in extra],
                            cwd=PKG_ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=stderr)


def stop(proc, timeout=5):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Engine:
    """A minimal engine: a REQ socket connected to a simulator."""

    def __init__(self, ep, timeout_ms=10000):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.sock.connect(ep)

    def close(self):
        self.sock.close(linger=0)

    def call_raw(self, data):
        self.sock.send(data)
        return wire.decode(self.sock.recv())

    def call(self, m):
        return self.call_raw(wire.encode(m))

    def call_type(self, t):
        return self.call(wire.Message(t))

    def reply_values(self, v):
        return self.call(wire.Message(wire.SAMPLE_RESULT, value=v))
