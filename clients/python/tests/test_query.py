"""The query client against a fake server written in Python (FakeServer),
and the serve.fbs codec against flatc's own reading of the schema."""
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import unittest

import numpy as np
import zmq

from ppx import Client, DecodeError, PpxError, PpxTimeout
from ppx import serve_wire as sw
from ppx.serve_wire import ErrorCode

from .fake_server import FakeServer
from .support import REPO, endpoint

SCHEMA = os.path.join(REPO, "protocol", "serve.fbs")


class WithFake(unittest.TestCase):
    def setUp(self):
        self.ep = endpoint("query")
        self.srv = FakeServer(self.ep)
        self.c = Client(self.ep, timeout_ms=5000)

    def tearDown(self):
        self.c.close()
        self.srv.close()


class Queries(WithFake):
    def test_models_and_status(self):
        ms = self.c.models()
        self.assertEqual([m.name for m in ms], ["gauss"])
        m = ms[0]
        self.assertEqual((m.theta_dim, m.x_dim, m.kind, m.checksum), (2, 3, "NPE-NSF", 0xDEADBEEF))
        self.assertEqual(m.theta_names, ["t0", "t1"])
        self.assertEqual(self.c.model("gauss").name, "gauss")
        with self.assertRaises(PpxError) as cm:
            self.c.model("nope")
        self.assertEqual(cm.exception.code, ErrorCode.UNKNOWN_MODEL)
        st = self.c.status()
        self.assertEqual((st.version, st.models, st.workers), ("fake 1", ["gauss"], 1))
        self.assertGreaterEqual(st.uptime_seconds, 0.0)

    def test_sample_one_observation(self):
        s = self.c.sample("gauss", [1.0, 2.0, 3.0], 500, seed=7)
        self.assertEqual(s.shape, (500, 2))
        self.assertAlmostEqual(s.mean(), 2.0, delta=0.2)
        np.testing.assert_array_equal(s, self.c.sample("gauss", [1.0, 2.0, 3.0], 500, seed=7))
        self.assertFalse(np.array_equal(s, self.c.sample("gauss", [1.0, 2.0, 3.0], 500, seed=8)))
        self.assertFalse(np.array_equal(s, self.c.sample("gauss", [1.0, 2.0, 3.0], 500)))  # random seed
        s, acc = self.c.sample("gauss", np.array([0.0, 0.0, 0.0]), 3, seed=1, return_acceptance=True)
        self.assertEqual((s.shape, acc), ((3, 2), 1.0))
        env = self.srv.requests[-1][1]
        self.assertEqual(env.body_type, "Sample")
        self.assertEqual((env.body.n, env.body.seed, env.body.observations.rows), (3, 1, 1))

    def test_sample_many_observations(self):
        x = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0], [-5.0, -5.0, -5.0]])
        s, acc = self.c.sample("gauss", x, 200, seed=3, return_acceptance=True)
        self.assertEqual(s.shape, (3, 200, 2))
        np.testing.assert_allclose(s.mean(axis=(1, 2)), [0.0, 10.0, -5.0], atol=0.3)
        np.testing.assert_allclose(acc, [1.0, 0.9, 0.8])
        # row i of a k-row request equals a 1-row request of that row only for
        # the fake's seeding; here just check determinism
        np.testing.assert_array_equal(s, self.c.sample("gauss", x, 200, seed=3))
        self.assertEqual(self.c.sample("gauss", np.empty((0, 3)), 5, seed=1).shape[0], 0)

    def test_log_prob(self):
        th = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
        lp = self.c.log_prob("gauss", [0.0, 0.0, 0.0], th)
        np.testing.assert_allclose(lp, [0.0, -1.0, -2.0])
        self.assertEqual(self.c.log_prob("gauss", [0.0, 0.0, 0.0], [1.0, 1.0]), -1.0)
        lp = self.c.log_prob("gauss", [[0.0, 0.0, 0.0]], th, normalise=False, seed=2, n_draws=5)
        np.testing.assert_allclose(lp, np.array([0.0, -1.0, -2.0]) + 1.0 + 2e-3 + 5e-6)
        body = self.srv.requests[-1][1].body
        self.assertEqual((body.normalise, body.seed, body.n_draws), (False, 2, 5))

    def test_errors(self):
        cases = [
            (lambda: self.c.sample("nope", [1.0, 2.0, 3.0], 10), ErrorCode.UNKNOWN_MODEL, "nope"),
            (lambda: self.c.sample("gauss", [1.0, 2.0], 10), ErrorCode.BAD_SHAPE, "2 columns"),
            (lambda: self.c.sample("gauss", [1.0, float("nan"), 3.0], 10), ErrorCode.NAN_INPUT, "finite"),
            (lambda: self.c.log_prob("gauss", [1.0, 2.0, 3.0], [[1.0, 2.0, 3.0]]), ErrorCode.BAD_SHAPE, "theta"),
            (lambda: self.c.load("/tmp/x.txt"), ErrorCode.LOAD_FAILED, "not a ppxd model"),
            (lambda: self.c.unload("nope"), ErrorCode.UNKNOWN_MODEL, "nope"),
        ]
        for f, code, fragment in cases:
            with self.assertRaises(PpxError) as cm:
                f()
            self.assertEqual(cm.exception.code, code)
            self.assertIn(fragment, cm.exception.message)
            self.assertIn(sw.error_code_name(code), str(cm.exception))
        # the client stays usable after errors
        self.assertEqual(len(self.c.models()), 1)

    def test_argument_checks(self):
        with self.assertRaises(ValueError):
            self.c.sample("gauss", np.zeros((2, 2, 2)), 1)
        with self.assertRaises(ValueError):
            self.c.log_prob("gauss", np.zeros((2, 3)), [0.0, 0.0])

    def test_admin(self):
        r = self.c.load("/models/two.ppxm")
        self.assertEqual((r.message, r.model.name, r.model.generation), ("loaded two", "two", 1))
        r = self.c.load("/models/two.ppxm", name="gauss")
        self.assertEqual(r.model.generation, 2)
        self.assertEqual(self.c.reload("gauss").model.generation, 3)
        self.assertEqual(sorted(m.name for m in self.c.models()), ["gauss", "two"])
        r = self.c.unload("two")
        self.assertIsNone(r.model)
        self.assertEqual([m.name for m in self.c.models()], ["gauss"])

    def test_wire_form_of_requests(self):
        self.c.status()
        frames, env = self.srv.requests[-1]
        # ROUTER sees [identity, empty delimiter, Envelope]: the REQ framing
        self.assertEqual(len(frames), 3)
        self.assertEqual(frames[1], b"")
        self.assertEqual(frames[2][4:8], b"PPXQ")
        self.assertEqual(env.version, 1)
        ids = set()
        for _ in range(5):
            self.c.status()
            ids.add(self.srv.requests[-1][1].request_id)
        self.assertEqual(len(ids), 5)

    def test_timeout_then_stale_reply_discarded(self):
        c = Client(self.ep, timeout_ms=100)
        try:
            t0 = time.monotonic()
            with self.assertRaises(PpxTimeout) as cm:
                c.sample("slow", [1.0, 2.0, 3.0], 1)
            self.assertLess(time.monotonic() - t0, 2.0)
            self.assertIsNone(cm.exception.code)
            self.assertIsInstance(cm.exception, TimeoutError)
            time.sleep(0.6)  # the slow reply arrives now, and must be skipped
            c.timeout_ms = 5000
            self.assertEqual(c.sample("gauss", [0.0, 0.0, 0.0], 4, seed=1).shape, (4, 2))
        finally:
            c.close()

    def test_no_server(self):
        c = Client(endpoint("nobody"), timeout_ms=200)
        with self.assertRaises(PpxTimeout):
            c.status()
        c.close()
        with self.assertRaises(PpxError):
            c.status()  # closed

    def test_malformed_replies(self):
        with self.assertRaises(DecodeError) as cm:
            self.c.sample("garbage", [0.0, 0.0, 0.0], 1)
        self.assertEqual(cm.exception.code, ErrorCode.MALFORMED)
        with self.assertRaises(DecodeError):
            self.c.sample("wrongtype", [0.0, 0.0, 0.0], 1)
        self.assertEqual(len(self.c.models()), 1)

    def test_context_manager(self):
        with Client(self.ep, timeout_ms=2000) as c:
            self.assertEqual(len(c.models()), 1)
        self.assertIsNone(c._sock)


@unittest.skipUnless(zmq.has("curve"), "libzmq without CURVE")
class Curve(unittest.TestCase):
    def test_curve(self):
        spub, ssec = zmq.curve_keypair()
        ep = "tcp://127.0.0.1:%d" % _free_port()
        srv = FakeServer(ep, curve_secret=ssec)
        try:
            with Client(ep, timeout_ms=5000, curve_server_key=spub.decode()) as c:
                self.assertEqual(len(c.models()), 1)
            with Client(ep, timeout_ms=5000, curve_server_key=spub, curve_client_keys=zmq.curve_keypair()) as c:
                self.assertEqual(c.status().version, "fake 1")
            wrong, _ = zmq.curve_keypair()
            with Client(ep, timeout_ms=300, curve_server_key=wrong) as c:
                with self.assertRaises(PpxTimeout):
                    c.status()
        finally:
            srv.close()
        with self.assertRaises(PpxError):
            Client(ep, curve_server_key="short")
        with self.assertRaises(PpxError):
            Client(ep, curve_client_keys=zmq.curve_keypair())


def _free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


MI = dict(name="m", kind="NPE-MAF", theta_names=["a", "b"], theta_dim=2, x_names=["x"], x_dim=1, created=-5,
          n_simulations=2 ** 63 + 1, best_val_loss=1.5, checksum=2 ** 32 - 1, path="/p", generation=3,
          prior="uniform(-1, 1) x 2")
BODIES = [
    ("ListModels", {}),
    ("ListModelsReply", dict(models=[MI, dict(MI, name="n")])),
    ("Sample", dict(model="m", observations=dict(rows=1, cols=3, data=[1.0, 2.0, 3.0]), n=10,
                    seed=2 ** 64 - 1, max_seconds=2.5)),
    ("SampleReply", dict(samples=[dict(rows=3, cols=1, data=[1.0, 2.0, 3.0]), dict(rows=1, cols=2, data=[5.0, 6.0])],
                         acceptance=[0.5, 1.0])),
    ("LogProb", dict(model="m", observation=dict(rows=1, cols=1, data=[1.0]),
                     thetas=dict(rows=2, cols=2, data=[0.0, 1.0, 2.0, 3.0]), normalise=False, seed=9, n_draws=77)),
    ("LogProbReply", dict(log_prob=[-1.0, -2.5])),
    ("Load", dict(path="/x.ppxm", name="x")),
    ("Unload", dict(name="x")),
    ("Reload", dict(name="x")),
    ("AdminReply", dict(message="ok", model=MI)),
    ("Status", {}),
    ("StatusReply", dict(version="ppxd 0.2", uptime_seconds=3.5, models=["a", "b"], workers=2, queue_depth=1,
                         requests=10, errors=2, busy=1)),
    ("Error", dict(code=7, message="busy")),
]


def _plain(v):
    if isinstance(v, sw.Record):
        return {k: _plain(x) for k, x in v._asdict().items()}
    if isinstance(v, np.ndarray):
        return [float(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _subset(tc, want, got, path=""):
    """Every field of want is in got with the same value."""
    if isinstance(want, dict):
        for k, v in want.items():
            tc.assertIn(k, got, path)
            _subset(tc, v, got[k], path + "." + k)
    elif isinstance(want, list):
        tc.assertEqual(len(want), len(got), path)
        for i, (a, b) in enumerate(zip(want, got)):
            _subset(tc, a, b, "%s[%d]" % (path, i))
    else:
        tc.assertEqual(want, got, path)


class Codec(unittest.TestCase):
    def test_round_trip(self):
        for t, body in BODIES:
            with self.subTest(t):
                buf = sw.encode_envelope(t, body, 123456789012)
                self.assertEqual(buf[4:8], b"PPXQ")
                env = sw.decode_envelope(buf)
                self.assertEqual((env.version, env.request_id, env.body_type), (1, 123456789012, t))
                _subset(self, body, _plain(env.body))

    def test_identifier_required(self):
        buf = bytearray(sw.encode_envelope("Status", {}, 1))
        buf[4:8] = b"PPXF"
        with self.assertRaises(DecodeError):
            sw.decode_envelope(bytes(buf))
        self.assertEqual(sw.decode_envelope(bytes(buf), require_identifier=False).body_type, "Status")

    def test_malformed(self):
        rnd = random.Random(2)
        bufs = [sw.encode_envelope(t, b, 5) for t, b in BODIES]
        for buf in bufs:
            for n in range(len(buf)):
                try:
                    sw.decode_envelope(buf[:n])
                except DecodeError:
                    pass
        for _ in range(3000):
            buf = bytearray(rnd.choice(bufs))
            for _ in range(rnd.randint(1, 4)):
                buf[rnd.randrange(len(buf))] = rnd.randrange(256)
            try:
                sw.decode_envelope(bytes(buf))
            except DecodeError:
                pass
        with self.assertRaises(DecodeError):
            sw.decode_envelope(b"")
        with self.assertRaises(DecodeError):
            sw.decode_envelope(b"\x08\x00\x00\x00PPXQ")
        # matrices whose data disagree with rows x cols
        env = sw.decode_envelope(sw.encode_envelope("SampleReply", dict(samples=[dict(rows=2, cols=2, data=[1.0])]), 1))
        with self.assertRaises(DecodeError):
            sw.matrix_array(env.body.samples[0])

    @unittest.skipUnless(shutil.which("flatc"), "flatc not installed")
    def test_against_flatc(self):
        """flatc reads our bytes as the schema says, and we read flatc's."""
        with tempfile.TemporaryDirectory() as tmp:
            for t, body in BODIES:
                with self.subTest(t):
                    b = os.path.join(tmp, t + ".bin")
                    with open(b, "wb") as f:
                        f.write(sw.encode_envelope(t, body, 77))
                    subprocess.run(["flatc", "--json", "--strict-json", "--raw-binary", "-o", tmp, SCHEMA, "--", b],
                                   check=True, capture_output=True)
                    with open(os.path.join(tmp, t + ".json")) as f:
                        got = json.load(f)
                    self.assertEqual((got["version"], got["request_id"], got["body_type"]), (1, 77, t))
                    want = dict(body)
                    if t == "Error":
                        want["code"] = "BUSY"
                    _subset(self, want, got.get("body", {}))
                    # and back: flatc writes a binary (with the identifier) from JSON
                    j = os.path.join(tmp, t + "_in.json")
                    with open(j, "w") as f:
                        json.dump(dict(version=1, request_id=88, body_type=t, body=want), f)
                    subprocess.run(["flatc", "--binary", "-o", tmp, SCHEMA, j], check=True, capture_output=True)
                    with open(os.path.join(tmp, t + "_in.bin"), "rb") as f:
                        env = sw.decode_envelope(f.read())
                    self.assertEqual((env.request_id, env.body_type), (88, t))
                    _subset(self, body, _plain(env.body))


if __name__ == "__main__":
    unittest.main()
