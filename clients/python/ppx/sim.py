"""The simulator side of PPX, as libppx (clients/c/ppx_sim.h) does it.

A simulator is a forward function that makes its random choices through
:func:`sample`, conditions through :func:`observe` and records values
through :func:`tag`; its return value is the run's result.
:meth:`Simulator.serve` binds a ZeroMQ REP socket and answers an inference
engine (ppxd or any PPX engine) as pyprob_cpp and libppx do::

    engine -> Handshake       sim -> HandshakeResult{system_name, model_name}
    engine -> Run             sim runs forward(); every sample() sends a Sample
                              and returns the engine's SampleResult, observe()
                              an Observe, tag() a Tag; when forward() returns,
                              sim -> RunResult{its return value}
    anything else while idle  sim -> Reset

A protocol error mid-trace (an undecodable message, a reply of the wrong
type, a SampleResult of the wrong size) makes the simulator reply Reset to
the message in hand and finish the run with local draws, sending nothing
more for it; it then serves the next Run as normal.  An exception raised by
forward() while serving does the same (Reset, traceback on stderr).

Without an engine -- :meth:`Simulator.run_local`, plain calls of forward()
outside a run, or after an aborted run -- every draw is made locally with
numpy, for all 11 distributions; observe() and tag() then do nothing.

Analytic joint scores (ppxd's parameter-tangent extension, protocol/ppx.fbs):
a simulator may pass ``tangent=`` to sample() and observe(): the derivatives
of the distribution's parameters with respect to the parameters of interest
theta (named by :meth:`Simulator.declare_theta` or a :class:`ppx.wire.Tangent`),
holding earlier draws fixed; ``ppxd mine --score analytic|auto`` then
computes t(x,z|theta) without finite-difference replays.  Upstream engines
ignore the field.

Addresses identify call sites.  By default an address is
"file.py:LINE:function" of the caller (basename only), which is stable across
runs, machines and Python versions as long as the source is unchanged.
"""

import os
import sys
import threading
import traceback

import numpy as np
import zmq

from . import wire
from .dists import Distribution
from .errors import DecodeError

SYSTEM_NAME = "ppx-python"

_state = threading.local()


def _log(what, detail=None):
    sys.stderr.write("ppx: %s%s\n" % (what, ": " + detail if detail else ""))
    sys.stderr.flush()


def here(depth=0):
    """The "file.py:LINE:function" address of the line calling here()
    (depth=0), or of its caller (depth=1), and so on up the stack."""
    f = sys._getframe(depth + 1)
    code = f.f_code
    return "%s:%d:%s" % (os.path.basename(code.co_filename), f.f_lineno, code.co_name)


class Simulator:
    """A PPX simulator.  Either pass forward (a callable without arguments
    that uses ppx.sample/observe/tag and returns the result) or subclass and
    override :meth:`forward`.  Also available as ``ppx.Model``."""

    def __init__(self, forward=None, model_name="", system_name=SYSTEM_NAME):
        if forward is not None:
            if not callable(forward):
                raise TypeError("forward must be callable")
            self._forward_fn = forward
        elif type(self).forward is Simulator.forward:
            raise TypeError("give a forward function or override Simulator.forward")
        self.model_name = model_name or getattr(forward, "__name__", type(self).__name__)
        self.system_name = system_name
        self.runs = 0              # traces completed (served or local)
        self.aborted = False       # the current run lost its engine
        self.result = None         # result of the last run
        self._sock = None
        self._ctx = None
        self._rng = None
        self._rng_seed = None
        self.theta = ()                 # declare_theta() names
        self.others_independent = False

    def declare_theta(self, names, others_independent=False):
        """Name the parameters of interest theta (the names of the theta
        Samples) that tangents given as tuples or dicts refer to.  With
        others_independent=True every other Sample/Observe sent without a
        tangent carries an empty one, declaring it independent of theta
        (ppxd then needs no tangent for it); by default such a draw carries
        none, and ``ppxd mine --score analytic`` counts its row invalid."""
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        why = wire.theta_problem(names)
        if why:
            raise ValueError("declare_theta: %s" % why)
        self.theta = names
        self.others_independent = bool(others_independent)

    def _tangent(self, dist, tangent, name, what):
        """The wire Tangent for a statement (None: send none)."""
        if tangent is None:
            if self.others_independent and self.theta and name not in self.theta:
                return wire.Tangent()
            return None
        if isinstance(tangent, wire.Tangent):
            t = tangent
        else:
            if not self.theta:
                raise ValueError("%s(): a tangent other than a ppx.wire.Tangent needs declare_theta() first" % what)
            if isinstance(tangent, dict):
                unknown = set(tangent) - set(dist.params)
                if unknown:
                    raise ValueError("%s(): tangent names %s, not parameters of %s %s"
                                     % (what, sorted(unknown), dist.name, dist.params))
                parts = [tangent.get(p) for p in dist.params]
            elif isinstance(tangent, tuple):
                parts = list(tangent)
            elif len(dist.params) == 1:
                parts = [tangent]
            else:
                raise ValueError("%s(): give the tangent of %s as a tuple (d %s, d %s), a dict or a ppx.wire.Tangent"
                                 % (what, dist.name, dist.params[0], dist.params[1]))
            if len(parts) > len(dist.params):
                raise ValueError("%s(): %d tangent parts for the %d parameters of %s"
                                 % (what, len(parts), len(dist.params), dist.name))
            parts += [None] * (2 - len(parts))
            t = wire.Tangent(self.theta, parts[0], parts[1])
        why = wire.tangent_problem(t, dist)
        if why:
            raise ValueError("%s(): tangent: %s" % (what, why))
        return t

    # --- the model ---------------------------------------------------------

    def forward(self):
        return self._forward_fn()

    # --- statements (also reachable as ppx.sample/observe/tag) -------------

    def _local_rng(self):
        if self._rng is None:
            self._rng = np.random.default_rng(self._rng_seed)
        return self._rng

    def _live(self):
        return self._sock is not None and not self.aborted

    def sample(self, dist, address=None, name="", control=True, tangent=None, _depth=1):
        """Draw from dist: the engine's answer, or a local draw without an
        engine.  A float for a scalar distribution, else an array of
        dist.batch_shape (discrete values as integral floats).
        tangent: d params / d theta (see declare_theta): a ppx.wire.Tangent,
        a tuple (d param0, d param1), a dict {param name: derivative}, or for
        one-parameter kinds the derivative itself; each derivative of shape
        param.shape + (D,), flat, or a number for a scalar parameter and D = 1."""
        if not isinstance(dist, Distribution):
            raise TypeError("sample() needs a ppx distribution, got %r" % (dist,))
        if address is None:
            address = here(_depth)
        if not self._live():
            return dist.sample_local(self._local_rng())
        m = wire.Message(wire.SAMPLE, address=address, name=name or "", dist=dist, control=bool(control),
                         tangent=self._tangent(dist, tangent, name, "sample"))
        reply = self._exchange(m, wire.SAMPLE_RESULT)
        if reply is None:
            return dist.sample_local(self._local_rng())
        v = reply.value
        size = 0 if v is None else v.size
        if size != dist.n:
            # The SampleResult was a well-formed request: answer it with Reset.
            self._abort("SampleResult has %d values, expected %d" % (size, dist.n))
            return dist.sample_local(self._local_rng())
        if dist.batch_shape == ():
            return float(v.reshape(-1)[0])
        return v.reshape(dist.batch_shape).copy()

    def observe(self, dist, value=None, address=None, name="", tangent=None, _depth=1):
        """Observe dist at value, or with value None let the engine supply
        it.  True when the engine answered, False without an engine.
        tangent: as for sample()."""
        if not isinstance(dist, Distribution):
            raise TypeError("observe() needs a ppx distribution, got %r" % (dist,))
        if address is None:
            address = here(_depth)
        if value is not None:
            value = np.asarray(value, dtype=np.float64)
            if value.size != dist.n:
                raise ValueError("observe(): value has %d elements, %s has %d"
                                 % (value.size, dist.name, dist.n))
        if not self._live():
            return False
        m = wire.Message(wire.OBSERVE, address=address, name=name or "", dist=dist, value=value,
                         tangent=self._tangent(dist, tangent, name, "observe"))
        return self._exchange(m, wire.OBSERVE_RESULT) is not None

    def tag(self, value, address=None, name="", _depth=1):
        """Record value (a number travels as a 0-d tensor, an array with its
        shape) under name.  True when the engine answered."""
        if address is None:
            address = here(_depth)
        value = None if value is None else np.asarray(value, dtype=np.float64)
        if not self._live():
            return False
        m = wire.Message(wire.TAG, address=address, name=name or "", value=value)
        return self._exchange(m, wire.TAG_RESULT) is not None

    # --- protocol ----------------------------------------------------------

    def _send(self, m):
        self._sock.send(wire.encode(m), copy=False)

    def _recv(self):
        """The next request: a Message, or None when it did not decode."""
        frame = self._sock.recv(copy=True)
        try:
            return wire.decode(frame)
        except DecodeError as e:
            _log("undecodable message from engine", e.message)
            return None

    def _abort(self, why):
        """Lose the engine for this run: reply Reset to the request in hand
        (REP must answer it) and finish the run locally."""
        _log("aborting run, finishing it with local draws", why)
        self.aborted = True
        try:
            self._send(wire.Message(wire.RESET))
        except zmq.ZMQError as e:
            _log("could not send Reset", str(e))

    def _exchange(self, m, want):
        """Send a statement and return the reply of type `want`, or None
        after aborting the run."""
        try:
            self._send(m)
        except zmq.ZMQError as e:
            _log("aborting run: could not send", str(e))
            self.aborted = True  # the socket owes nothing: no Reset
            return None
        try:
            reply = self._recv()
        except zmq.ZMQError as e:
            _log("aborting run: receive failed", str(e))
            self.aborted = True
            return None
        if reply is None or reply.type != want:
            self._abort("expected %s, got %s" % (wire.type_name(want),
                                                 "garbage" if reply is None else reply.type_name))
            return None
        return reply

    # --- running -----------------------------------------------------------

    def _run(self):
        prev = getattr(_state, "sim", None)
        _state.sim = self
        try:
            self.result = self.forward()
        finally:
            _state.sim = prev
        return self.result

    def run_local(self, seed=None):
        """Run forward() once with local draws from numpy seeded with `seed`;
        returns its result."""
        sock, self._sock = self._sock, None
        self._rng_seed = seed
        self._rng = None
        self.aborted = False
        try:
            result = self._run()
        finally:
            self._sock = sock
        self.runs += 1
        return result

    def _serve_run(self):
        self.aborted = False
        # Local fallback draws of an aborted run are reproducible per run.
        self._rng_seed = [0x5eed, self.runs]
        self._rng = None
        try:
            result = self._run()
        except Exception:
            _log("forward() raised", traceback.format_exc().rstrip())
            if not self.aborted:
                self._abort("forward() raised an exception")
            return
        if self.aborted:
            return  # Reset already answered the request in hand
        try:
            value = None if result is None else np.asarray(result, dtype=np.float64)
        except (TypeError, ValueError) as e:
            self._abort("result of forward() is not numeric: %s" % e)
            return
        self._send(wire.Message(wire.RUN_RESULT, value=value))
        self.runs += 1

    def serve(self, endpoint="tcp://*:5555", max_runs=0, connect=False):
        """Bind a REP socket at endpoint (e.g. "tcp://*:5555", "ipc://@name")
        and serve an engine until max_runs traces have completed (0: forever).
        With connect=True the REP socket connects to endpoint instead: an
        engine's --sim-listen endpoint (e.g. "tcp://daemon-host:5556"), so
        the simulator joins its pool; libzmq reconnects a dropped link.
        Raises zmq.ZMQError when it cannot bind (or connect)."""
        ctx = self._ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            if connect:
                sock.connect(endpoint)
            else:
                sock.bind(endpoint)
        except zmq.ZMQError:
            sock.close()
            raise
        self._sock = sock
        start = self.runs
        try:
            while max_runs == 0 or self.runs - start < max_runs:
                m = self._recv()
                if m is not None and m.type == wire.HANDSHAKE:
                    self._send(wire.Message(wire.HANDSHAKE_RESULT, system_name=self.system_name,
                                            model_name=self.model_name))
                elif m is not None and m.type == wire.RUN:
                    self._serve_run()
                else:
                    self._send(wire.Message(wire.RESET))
        finally:
            self._sock = None
            sock.close(linger=0)

    def main(self, argv=None):
        """A ready main(): "prog ENDPOINT [MAX_RUNS]" serves an engine,
        "prog --connect-to ENDPOINT [MAX_RUNS]" connects to one,
        "prog --local [N [SEED]]" runs N times locally printing each result.
        Returns the exit code (0 ok, 1 error, 2 usage)."""
        argv = sys.argv if argv is None else argv
        prog = os.path.basename(argv[0]) if argv else "simulator"
        args = argv[1:]
        try:
            if args and args[0] == "--local":
                n = int(args[1]) if len(args) >= 2 else 1
                seed = int(args[2]) if len(args) >= 3 else 1
                for i in range(n):
                    r = self.run_local(seed + i)
                    vals = [] if r is None else np.asarray(r, dtype=np.float64).reshape(-1)
                    print(" ".join("%.17g" % v for v in vals), flush=True)
                return 0
            connect = bool(args) and args[0] == "--connect-to"
            if connect:
                args = args[1:]
            if len(args) not in (1, 2) or args[0].startswith("-"):
                raise ValueError("usage")
            max_runs = int(args[1]) if len(args) == 2 else 0
        except ValueError:
            sys.stderr.write(
                "usage: %s ENDPOINT [MAX_RUNS]   serve a PPX engine (e.g. tcp://*:5555, ipc://@name)\n"
                "       %s --connect-to ENDPOINT [MAX_RUNS]\n"
                "                                 connect to an engine's --sim-listen endpoint instead\n"
                "       %s --local [N [SEED]]     run N times with local draws, print the results\n"
                % (prog, prog, prog))
            return 2
        try:
            self.serve(args[0], max_runs, connect=connect)
        except zmq.ZMQError as e:
            _log("cannot serve %s" % args[0], str(e))
            return 1
        except KeyboardInterrupt:
            return 130
        return 0


Model = Simulator

# A simulator without an engine, for statements made outside any run.
_default = None


def _current():
    s = getattr(_state, "sim", None)
    if s is not None:
        return s
    global _default
    if _default is None:
        _default = Simulator(lambda: None, "default")
    return _default


def sample(dist, address=None, name="", control=True, tangent=None):
    """Draw from dist (see Simulator.sample); the default address is the
    caller's "file.py:LINE:function"."""
    return _current().sample(dist, address, name, control, tangent, _depth=2)


def observe(dist, value=None, address=None, name="", tangent=None):
    """Observe dist at value, or let the engine supply it (value None)."""
    return _current().observe(dist, value, address, name, tangent, _depth=2)


def declare_theta(names, others_independent=False):
    """Simulator.declare_theta for the simulator running forward()."""
    _current().declare_theta(names, others_independent)


def tag(value, address=None, name=""):
    """Record value under name."""
    return _current().tag(value, address, name, _depth=2)


def seed(s):
    """Seed the local draws made outside any run."""
    d = _current()
    d._rng_seed = s
    d._rng = None
