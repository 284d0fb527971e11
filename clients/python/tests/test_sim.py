"""The simulator side: a minimal engine (REQ + the Python codec) drives
simulators of tests/models.py in subprocesses, as ppxd would."""
import os
import subprocess
import threading
import unittest

import numpy as np
import zmq

import ppx
from ppx import wire
from ppx.dists import Categorical, Normal, Poisson, Uniform
from ppx.wire import Message

from . import models
from .support import PKG_ROOT, PY, Engine, endpoint, env, spawn_model, stop


def addr(marker, func):
    return "models.py:%d:%s" % (models.line_of(marker), func)


class SimCase(unittest.TestCase):
    model = "gaussian"
    extra = ()

    def setUp(self):
        self.ep = endpoint(self.model)
        self.proc = spawn_model(self.model, self.ep, *self.extra)
        self.eng = Engine(self.ep)

    def tearDown(self):
        self.eng.close()
        stop(self.proc)

    def run_gaussian(self, mu=2.0):
        e = self.eng
        m = e.call_type(wire.RUN)
        self.assertEqual(m.type, wire.SAMPLE, m)
        self.assertEqual(m.name, "mu")
        m = e.reply_values(mu)
        self.assertEqual(m.type, wire.OBSERVE)
        m = e.call_type(wire.OBSERVE_RESULT)
        self.assertEqual(m.type, wire.OBSERVE)
        m = e.call_type(wire.OBSERVE_RESULT)
        self.assertEqual(m.type, wire.RUN_RESULT)
        return m


class Gaussian(SimCase):
    def test_handshake(self):
        m = self.eng.call(Message(wire.HANDSHAKE, system_name="test-engine"))
        self.assertEqual(m.type, wire.HANDSHAKE_RESULT)
        self.assertEqual(m.system_name, "ppx-python")
        self.assertEqual(m.model_name, "gaussian")

    def test_trace(self):
        e = self.eng
        m = e.call_type(wire.RUN)  # no Handshake needed first
        self.assertEqual(m.type, wire.SAMPLE)
        self.assertEqual(m.address, addr("mu", "gaussian"))
        self.assertEqual(m.name, "mu")
        self.assertTrue(m.control)
        self.assertIsInstance(m.dist, Normal)
        self.assertEqual(m.dist.mean.shape, ())  # 0-d scalars
        self.assertEqual(float(m.dist.mean), 1.0)
        self.assertAlmostEqual(float(m.dist.stddev), 5 ** 0.5, places=15)
        for obs in ("obs0", "obs1"):
            m = e.reply_values(3.25) if obs == "obs0" else e.call_type(wire.OBSERVE_RESULT)
            self.assertEqual(m.type, wire.OBSERVE)
            self.assertEqual(m.name, obs)
            self.assertEqual(m.address, addr(obs, "gaussian"))
            self.assertEqual(float(m.dist.mean), 3.25)  # the engine's value came back
            self.assertAlmostEqual(float(m.dist.stddev), 2 ** 0.5, places=15)
            self.assertIsNone(m.value)  # observed without value
        m = e.call_type(wire.OBSERVE_RESULT)
        self.assertEqual(m.type, wire.RUN_RESULT)
        self.assertEqual(m.value.shape, ())
        self.assertEqual(float(m.value), 3.25)

    def test_addresses_stable(self):
        def addresses():
            e = self.eng
            out = [e.call_type(wire.RUN).address, e.reply_values(0.0).address,
                   e.call_type(wire.OBSERVE_RESULT).address]
            self.assertEqual(e.call_type(wire.OBSERVE_RESULT).type, wire.RUN_RESULT)
            return out
        a = addresses()
        self.assertEqual(a, addresses())
        self.assertEqual(len(set(a)), 3)
        # ... and across processes
        ep2 = endpoint("second")
        p2 = spawn_model("gaussian", ep2)
        e2 = Engine(ep2)
        try:
            got = [e2.call_type(wire.RUN).address, e2.reply_values(0.0).address,
                   e2.call_type(wire.OBSERVE_RESULT).address]
            self.assertEqual(got, a)
        finally:
            e2.close()
            stop(p2)

    def test_reset_when_idle(self):
        e = self.eng
        for t in (wire.SAMPLE_RESULT, wire.OBSERVE_RESULT, wire.TAG_RESULT, wire.RESET, wire.RUN_RESULT):
            self.assertEqual(e.call_type(t).type, wire.RESET, wire.type_name(t))
        self.assertEqual(e.call_raw(b"garbage!garbage!").type, wire.RESET)
        self.assertEqual(e.call_raw(b"").type, wire.RESET)
        # Run follows a Reset directly
        self.run_gaussian()

    def test_garbage_mid_trace(self):
        e = self.eng
        self.assertEqual(e.call_type(wire.RUN).type, wire.SAMPLE)
        # Undecodable bytes where a SampleResult should be: Reset, and the
        # run finishes locally without sending anything more.
        self.assertEqual(e.call_raw(b"\x01\x02\x03\x04 not a flatbuffer").type, wire.RESET)
        self.run_gaussian()

    def test_wrong_reply_mid_trace(self):
        e = self.eng
        self.assertEqual(e.call_type(wire.RUN).type, wire.SAMPLE)
        self.assertEqual(e.call_type(wire.TAG_RESULT).type, wire.RESET)
        self.run_gaussian()
        self.assertEqual(e.call_type(wire.RUN).type, wire.SAMPLE)
        self.assertEqual(e.reply_values(1.0).type, wire.OBSERVE)
        self.assertEqual(e.call_type(wire.RUN).type, wire.RESET)  # Run inside a trace
        self.run_gaussian()

    def test_wrong_size_sample_result(self):
        e = self.eng
        self.assertEqual(e.call_type(wire.RUN).type, wire.SAMPLE)
        self.assertEqual(e.reply_values([1.0, 2.0]).type, wire.RESET)
        self.run_gaussian()
        self.assertEqual(e.call_type(wire.RUN).type, wire.SAMPLE)
        self.assertEqual(e.reply_values(None).type, wire.RESET)
        self.run_gaussian()

    def test_many_runs(self):
        for i in range(50):
            self.assertEqual(float(self.run_gaussian(float(i)).value), float(i))


class MaxRuns(SimCase):
    extra = (2,)

    def test_exits_after_max_runs(self):
        self.run_gaussian()
        self.eng.call_type(wire.HANDSHAKE)
        self.run_gaussian()
        self.assertEqual(self.proc.wait(10), 0)


class Statements(SimCase):
    model = "statements"

    def test_shapes_and_statements(self):
        e = self.eng
        m = e.call_type(wire.RUN)
        self.assertEqual((m.type, m.name, m.address), (wire.SAMPLE, "vec", addr("vec", "statements")))
        self.assertEqual(m.dist.mean.shape, (3,))
        self.assertEqual(m.dist.stddev.shape, ())
        m = e.reply_values(np.array([10.0, 11.0, 12.0]))
        self.assertEqual(m.name, "cat2")
        self.assertIsInstance(m.dist, Categorical)
        self.assertEqual(m.dist.probs.shape, (2, 2))
        m = e.reply_values(np.array([1.0, 0.0]))
        self.assertEqual((m.name, m.control), ("prior_only", False))
        self.assertIsInstance(m.dist, Uniform)
        m = e.reply_values(0.25)
        self.assertEqual((m.type, m.name), (wire.OBSERVE, "obs_scalar"))
        self.assertEqual(m.value.shape, ())
        self.assertEqual(float(m.value), 0.5)
        m = e.call_type(wire.OBSERVE_RESULT)
        self.assertEqual((m.type, m.name), (wire.OBSERVE, "obs_vec"))
        self.assertIsInstance(m.dist, Poisson)
        self.assertEqual(m.value.tolist(), [3.0, 4.0])
        m = e.call_type(wire.OBSERVE_RESULT)
        self.assertEqual((m.type, m.name, m.address), (wire.TAG, "t_scalar", addr("t_scalar", "statements")))
        self.assertEqual(m.value.shape, ())
        m = e.call_type(wire.TAG_RESULT)
        self.assertEqual((m.type, m.name, m.address), (wire.TAG, "t_mat", "explicit"))
        self.assertEqual(m.value.shape, (2, 3))
        m = e.call_type(wire.TAG_RESULT)
        self.assertEqual(m.type, wire.RUN_RESULT)
        self.assertEqual(m.value.tolist(), [10.0, 11.0, 12.0, 1.0, 0.0, 0.25])


class Loop(SimCase):
    model = "loop"

    def test_same_address_repeated(self):
        e = self.eng
        m = e.call_type(wire.RUN)
        a = m.address
        self.assertEqual(a, addr("loop_u", "loop"))
        self.assertEqual(e.reply_values(0.9).address, a)
        self.assertEqual(e.reply_values(0.7).address, a)
        m = e.reply_values(0.9)
        self.assertEqual(float(m.value), 3.0)


class Raises(SimCase):
    model = "raises"

    def setUp(self):
        self.ep = endpoint(self.model)
        self.proc = spawn_model(self.model, self.ep, stderr=subprocess.PIPE)
        self.eng = Engine(self.ep)

    def test_exception_in_forward_resets_and_serves_on(self):
        e = self.eng
        for _ in range(3):
            self.assertEqual(e.call_type(wire.RUN).type, wire.SAMPLE)
            self.assertEqual(e.reply_values(0.0).type, wire.RESET)
        self.assertEqual(e.call_type(wire.HANDSHAKE).type, wire.HANDSHAKE_RESULT)
        stop(self.proc)
        err = self.proc.stderr.read().decode()
        self.proc.stderr.close()
        self.assertIn("RuntimeError: model bug", err)


class Results(unittest.TestCase):
    def test_result_shapes(self):
        for model, check in (("matrix_result", lambda v: v.shape == (2, 3)), ("no_result", lambda v: v is None)):
            ep = endpoint(model)
            p = spawn_model(model, ep)
            e = Engine(ep)
            try:
                self.assertEqual(e.call_type(wire.RUN).type, wire.SAMPLE)
                m = e.reply_values(0.0)
                self.assertEqual(m.type, wire.RUN_RESULT)
                self.assertTrue(check(m.value), (model, m.value))
            finally:
                e.close()
                stop(p)

    def test_subclassed_model(self):
        ep = endpoint("sub")
        p = spawn_model("subclassed", ep)
        e = Engine(ep)
        try:
            self.assertEqual(e.call_type(wire.HANDSHAKE).model_name, "subclassed")
            m = e.call_type(wire.RUN)
            self.assertEqual(m.address, addr("subclassed", "forward"))
            self.assertEqual(float(e.reply_values(2.0).value), 3.0)
        finally:
            e.close()
            stop(p)


class InProcess(unittest.TestCase):
    """Serve in a thread of this process (no subprocess)."""

    def test_thread_serve_and_local(self):
        sim = ppx.Simulator(models.gaussian, "g")
        ep = endpoint("thread")
        t = threading.Thread(target=sim.serve, args=(ep, 1), daemon=True)
        t.start()
        e = Engine(ep)
        try:
            m = e.call_type(wire.RUN)
            self.assertEqual(m.type, wire.SAMPLE)
            e.reply_values(5.0)
            e.call_type(wire.OBSERVE_RESULT)
            self.assertEqual(float(e.call_type(wire.OBSERVE_RESULT).value), 5.0)
        finally:
            e.close()
        t.join(5)
        self.assertFalse(t.is_alive())
        self.assertEqual(sim.runs, 1)
        # the same simulator runs locally afterwards, reproducibly per seed
        a, b = sim.run_local(3), sim.run_local(3)
        self.assertEqual(a, b)
        self.assertNotEqual(a, sim.run_local(4))
        self.assertEqual(sim.runs, 4)

    def test_abort_finishes_run_locally(self):
        seen = []

        def forward():
            a = ppx.sample(Normal(0.0, 1.0), name="a")
            b = ppx.sample(Normal(100.0, 1.0), name="b")
            seen.append((a, b, ppx.tag(1.0, name="t")))
            return b

        sim = ppx.Simulator(forward, "abort")
        ep = endpoint("abort")
        t = threading.Thread(target=sim.serve, args=(ep, 1), daemon=True)
        t.start()
        e = Engine(ep)
        try:
            self.assertEqual(e.call_type(wire.RUN).name, "a")
            self.assertEqual(e.call_type(wire.OBSERVE_RESULT).type, wire.RESET)
            # the aborted run went on locally: b drawn locally, tag not sent
            self.assertEqual(e.call_type(wire.RUN).name, "a")
            self.assertEqual(e.reply_values(-7.0).name, "b")
            self.assertEqual(e.call_type(wire.TAG_RESULT).type, wire.RESET)  # wrong answer again
            self.assertEqual(e.call_type(wire.RUN).name, "a")
            self.assertEqual(e.reply_values(1.0).name, "b")
            self.assertEqual(e.reply_values(2.0).name, "t")
            self.assertEqual(float(e.call_type(wire.TAG_RESULT).value), 2.0)
        finally:
            e.close()
        t.join(5)
        self.assertEqual(len(seen), 3)
        a0, b0, tagged0 = seen[0]
        self.assertNotEqual(a0, 0.0)
        self.assertAlmostEqual(b0, 100.0, delta=6.0)  # a local draw from Normal(100, 1)
        self.assertFalse(tagged0)
        self.assertEqual(seen[1][0], -7.0)
        self.assertAlmostEqual(seen[1][1], 100.0, delta=6.0)
        self.assertFalse(seen[1][2])
        self.assertEqual(seen[2], (1.0, 2.0, True))
        self.assertEqual(sim.runs, 1)  # aborted runs do not count

    def test_here(self):
        line = InProcess.test_here.__code__.co_firstlineno + 2
        self.assertEqual(ppx.here(), "test_sim.py:%d:test_here" % line)

    def test_bind_failure(self):
        sim = ppx.Simulator(models.gaussian)
        with self.assertRaises(zmq.ZMQError):
            sim.serve("bogus://nowhere")
        self.assertEqual(sim.main(["prog", "bogus://nowhere"]), 1)

    def test_forward_required(self):
        with self.assertRaises(TypeError):
            ppx.Simulator()


class GaltonTangents(unittest.TestCase):
    """examples/galton.py sends d P(left) / d theta with every decision."""

    def setUp(self):
        self.ep = endpoint("galton")
        self.proc = subprocess.Popen([PY, os.path.join(PKG_ROOT, "examples", "galton.py"), self.ep],
                                     cwd=PKG_ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.eng = Engine(self.ep)

    def tearDown(self):
        self.eng.close()
        stop(self.proc)

    def test_every_decision_carries_its_derivative(self):
        e = self.eng
        theta = -0.8
        for run in range(2):
            m = e.call_type(wire.RUN)
            self.assertEqual((m.type, m.name), (wire.SAMPLE, "theta"))
            self.assertIsNone(m.tangent)  # theta's own draw: none
            m = e.reply_values(theta)
            pos = 15
            for level in range(20):
                self.assertEqual((m.type, m.address), (wire.SAMPLE, "galton_row"), m)
                a = np.sin(np.pi * level / 19.0)
                n = 2.0 * pos / 30.0 - 1.0
                # the derivative by central differences of P(left) (not the example's formula)
                h = 1e-6
                pl = lambda t: (1 - a) / 2 + a / (1 + np.exp(-10 * t * n))
                want = (pl(theta + h) - pl(theta - h)) / (2 * h)
                self.assertAlmostEqual(float(m.dist.probs), pl(theta), places=12)
                self.assertIsNotNone(m.tangent, "level %d: no tangent" % level)
                self.assertEqual(m.tangent.theta, ("theta",))
                self.assertEqual(m.tangent.param0.shape, (1,))
                self.assertEqual(m.tangent.param1.size, 0)
                self.assertAlmostEqual(float(m.tangent.param0[0]), want, delta=1e-7 * (1 + abs(want)))
                left = float((level + run) % 3 == 0)
                pos = (pos if left else pos + 1) if level % 2 == 0 else (pos - 1 if left else pos)
                m = e.reply_values(left)
            self.assertEqual((m.type, m.name), (wire.TAG, "x"))
            self.assertEqual(float(m.value), pos)
            self.assertIsNone(getattr(m, "tangent", None))
            m = e.call_type(wire.TAG_RESULT)
            self.assertEqual(m.type, wire.RUN_RESULT)
            theta = 0.3


class TangentForms(unittest.TestCase):
    """How sample()/observe() turn their tangent= argument into the wire Tangent."""

    def sim(self, theta=("a", "b"), others=False):
        s = ppx.Simulator(lambda: None, "t")
        if theta:
            s.declare_theta(theta, others_independent=others)
        return s

    def test_forms(self):
        s = self.sim()
        d = Normal([0.0, 1.0, 2.0], 1.0)  # mean [3], stddev scalar
        dm = np.arange(6.0).reshape(3, 2)  # d mean / d (a, b): shape mean.shape + (D,)
        t = s._tangent(d, (dm, [0.5, 0.25]), "z", "sample")
        self.assertEqual(t.theta, ("a", "b"))
        self.assertEqual(t.param0.tolist(), [0, 1, 2, 3, 4, 5])
        self.assertEqual(t.param1.tolist(), [0.5, 0.25])
        self.assertEqual(s._tangent(d, {"stddev": [1.0, 2.0]}, "z", "sample"),
                         wire.Tangent(("a", "b"), None, [1.0, 2.0]))
        self.assertEqual(s._tangent(d, (dm,), "z", "sample"), wire.Tangent(("a", "b"), dm))
        # one-parameter kinds take the derivative alone
        self.assertEqual(s._tangent(Poisson(2.0), [3.0, 4.0], "z", "sample"), wire.Tangent(("a", "b"), [3.0, 4.0]))
        # an explicit Tangent is sent as given, whatever was declared
        own = wire.Tangent(["c"], [1.0])
        self.assertIs(s._tangent(Poisson(2.0), own, "z", "sample"), own)
        # no tangent: none, unless other draws are declared independent
        self.assertIsNone(s._tangent(d, None, "z", "sample"))
        s2 = self.sim(others=True)
        self.assertEqual(s2._tangent(d, None, "z", "sample"), wire.Tangent())
        self.assertIsNone(s2._tangent(d, None, "a", "sample"))  # a theta Sample itself

    def test_errors(self):
        s = self.sim()
        d = Normal(0.0, 1.0)
        for bad, frag in [([1.0, 2.0], "as a tuple"), ((1.0,), "has 1 values, expected 0 or 2"),
                          ({"rate": 1.0}, "not parameters of Normal"), (([1, 2], [1, 2], [3]), "3 tangent parts"),
                          (([np.nan, 1.0],), "is nan")]:
            with self.assertRaises(ValueError) as cm:
                s._tangent(d, bad, "z", "sample")
            self.assertIn(frag, str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            self.sim(theta=())._tangent(d, (1.0, 2.0), "z", "observe")
        self.assertIn("declare_theta", str(cm.exception))
        with self.assertRaises(ValueError):
            self.sim(theta=("a", "a"))
        with self.assertRaises(ValueError):
            self.sim(theta=("a", ""))

    def test_sent_through_an_engine_in_process(self):
        # A served run: the Sample and Observe carry the tangent (thread + REQ).
        def fwd():
            z = ppx.sample(Normal(1.0, 2.0), name="z", tangent=(1.0, 0.0))
            ppx.observe(Normal(z, 1.0), value=0.5, name="o", tangent=(0.0, 0.0))
            return z
        s = ppx.Simulator(fwd, "tangent")
        s.declare_theta(["mu"])
        ep = endpoint("tangent")
        th = threading.Thread(target=s.serve, args=(ep, 1), daemon=True)
        th.start()
        e = Engine(ep)
        try:
            m = e.call_type(wire.RUN)
            self.assertEqual(m.tangent, wire.Tangent(["mu"], [1.0], [0.0]))
            m = e.reply_values(2.0)
            self.assertEqual((m.type, m.tangent), (wire.OBSERVE, wire.Tangent(["mu"], [0.0], [0.0])))
            self.assertEqual(e.call_type(wire.OBSERVE_RESULT).type, wire.RUN_RESULT)
        finally:
            e.close()
        th.join(10)
        self.assertFalse(th.is_alive())


class CommandLine(unittest.TestCase):
    def run_cmd(self, *args):
        return subprocess.run([PY, "-m", "tests.models"] + list(args), cwd=PKG_ROOT, env=env(),
                              capture_output=True, text=True, timeout=60)

    def test_local(self):
        r = self.run_cmd("gaussian", "--local", "5", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        vals = [float(x) for x in r.stdout.split()]
        self.assertEqual(len(vals), 5)
        self.assertEqual(r.stdout, self.run_cmd("gaussian", "--local", "5", "3").stdout)  # seeded
        r = self.run_cmd("all_dists", "--local", "1")
        self.assertEqual(len(r.stdout.split()), 11)

    def test_usage(self):
        self.assertEqual(self.run_cmd("gaussian").returncode, 2)
        self.assertEqual(self.run_cmd("gaussian", "-x").returncode, 2)
        self.assertEqual(self.run_cmd("gaussian", "a", "b", "c").returncode, 2)

    def test_example_local(self):
        r = subprocess.run([PY, os.path.join(PKG_ROOT, "examples", "gaussian.py"), "--local", "2"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.split()), 2)


if __name__ == "__main__":
    unittest.main()
