"""The query client against the real server, `$PPXD_BUILD/ppxd serve`, with a
small NPE model trained by `ppxd train npe --data` on the Gaussian model
(mu ~ N(1, sqrt 5); obs0, obs1 ~ N(mu, sqrt 2)).  Skipped when ppxd has no
serve/train sub-commands."""
import math
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import numpy as np
import zmq

from ppx import Client, PpxError, PpxTimeout
from ppx.serve_wire import ErrorCode

from .support import REPO, endpoint, ppxd


def _has_subcommands():
    p = ppxd()
    if not p:
        return False
    for sub in ("serve", "train"):
        r = subprocess.run([p, sub, "--help"], capture_output=True, text=True, timeout=30)
        if "usage" not in (r.stdout + r.stderr):
            return False
    return True


HAVE = _has_subcommands()
PRIOR_SD = math.sqrt(5.0)
NOISE_SD = math.sqrt(2.0)


def exact_posterior(x):
    prec = 1 / 5 + 2 / 2
    return (1 / 5 * 1.0 + (x[0] + x[1]) / 2) / prec, math.sqrt(1 / prec)


def start_server(model_path, ep, *extra):
    proc = subprocess.Popen([ppxd(), "serve", "--serve", ep, "--model", "gauss=" + model_path,
                             "--serve-threads", "2", "--max-n", "100000"] + list(extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    return proc


def wait_ready(client, proc, seconds=20):
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if proc.poll() is not None:
            raise AssertionError("ppxd serve exited: %s" % proc.stderr.read().decode())
        try:
            return client.call("Status", None, "StatusReply", timeout_ms=300)
        except PpxTimeout:
            pass
    raise AssertionError("ppxd serve not answering")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


@unittest.skipUnless(HAVE, "ppxd serve / ppxd train not available")
class RealServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ppx-py-serve-")
        rng = np.random.default_rng(11)
        n = 4000
        theta = 1.0 + PRIOR_SD * rng.standard_normal((n, 1))
        x = theta + NOISE_SD * rng.standard_normal((n, 2))
        tp, xp = os.path.join(cls.tmp, "theta.npy"), os.path.join(cls.tmp, "x.npy")
        np.save(tp, theta)
        np.save(xp, x)
        cls.model = os.path.join(cls.tmp, "gauss.ppxm")
        r = subprocess.run([ppxd(), "train", "npe", "--data", tp, xp, "--prior", "normal:1:%r" % PRIOR_SD,
                            "--theta", "mu", "--x", "obs0,obs1", "--transforms", "2", "--hidden", "24",
                            "--max-epochs", "200", "--seed", "3", "--quiet", "-o", cls.model],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("ppxd train failed: %s %s" % (r.stdout, r.stderr))
        cls.ep = endpoint("serve")
        cls.proc = start_server(cls.model, cls.ep, "--quiet")
        cls.c = Client(cls.ep, timeout_ms=20000)
        wait_ready(cls.c, cls.proc)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        stop(cls.proc)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_models_and_status(self):
        ms = self.c.models()
        self.assertEqual([m.name for m in ms], ["gauss"])
        m = ms[0]
        self.assertEqual((m.theta_dim, m.x_dim, m.theta_names, m.x_names), (1, 2, ["mu"], ["obs0", "obs1"]))
        self.assertTrue(m.kind.startswith("NPE"))
        self.assertEqual(m.n_simulations, 4000)
        self.assertGreater(m.generation, 0)
        st = self.c.status()
        self.assertIn("ppxd", st.version)
        self.assertIn("gauss", st.models)
        self.assertEqual(st.workers, 2)

    def test_sample_shapes_and_seeds(self):
        s = self.c.sample("gauss", [8.0, 9.0], 2000, seed=5)
        self.assertEqual(s.shape, (2000, 1))
        np.testing.assert_array_equal(s, self.c.sample("gauss", [8.0, 9.0], 2000, seed=5))
        self.assertFalse(np.array_equal(s, self.c.sample("gauss", [8.0, 9.0], 2000, seed=6)))
        k = self.c.sample("gauss", [[8.0, 9.0], [0.0, 0.0], [-3.0, -2.0]], 1500, seed=5)
        self.assertEqual(k.shape, (3, 1500, 1))
        # row i is drawn with rng(seed, i): row 0 equals a one-row request
        np.testing.assert_array_equal(k[0], s[:1500])
        s, acc = self.c.sample("gauss", [0.0, 0.0], 10, seed=1, return_acceptance=True)
        self.assertTrue(0.0 < acc <= 1.0)

    def test_posterior_is_plausible(self):
        for x in ([8.0, 9.0], [0.0, 0.0], [-3.0, -2.0]):
            mean, sd = exact_posterior(x)
            s = self.c.sample("gauss", x, 4000, seed=2)[:, 0]
            self.assertLess(abs(s.mean() - mean), 1.0, (x, s.mean(), mean))
            self.assertLess(abs(s.std() / sd - 1), 0.5, (x, s.std(), sd))

    def test_log_prob_matches_samples(self):
        """The density log_prob reports and the samples agree: the mean of
        exp(log_prob) on a grid equals the sample mean."""
        x = [2.0, 3.0]
        s = self.c.sample("gauss", x, 20000, seed=3)[:, 0]
        grid = np.linspace(s.mean() - 8 * s.std(), s.mean() + 8 * s.std(), 801)
        lp = self.c.log_prob("gauss", x, grid[:, None])
        self.assertEqual(lp.shape, (801,))
        p = np.exp(lp)
        dx = grid[1] - grid[0]
        self.assertAlmostEqual(p.sum() * dx, 1.0, delta=0.05)
        self.assertAlmostEqual((grid * p).sum() * dx / (p.sum() * dx), s.mean(), delta=0.05)
        one = self.c.log_prob("gauss", x, [float(grid[400])])
        self.assertAlmostEqual(one, float(lp[400]), delta=1e-5)  # float32 network, batched or not
        raw = self.c.log_prob("gauss", x, grid[:5, None], normalise=False)
        self.assertEqual(raw.shape, (5,))

    def test_errors(self):
        cases = [
            (lambda: self.c.sample("nope", [1.0, 2.0], 3), ErrorCode.UNKNOWN_MODEL),
            (lambda: self.c.sample("gauss", [1.0, 2.0, 3.0], 3), ErrorCode.BAD_SHAPE),
            (lambda: self.c.sample("gauss", [1.0, float("nan")], 3), ErrorCode.NAN_INPUT),
            (lambda: self.c.sample("gauss", [1.0, 2.0], 200000), ErrorCode.N_TOO_LARGE),
            (lambda: self.c.log_prob("gauss", [1.0, 2.0], [[1.0, 2.0]]), ErrorCode.BAD_SHAPE),
            (lambda: self.c.log_prob("gauss", [1.0, 2.0], [[float("inf")]]), ErrorCode.NAN_INPUT),
            (lambda: self.c.load(os.path.join(self.tmp, "theta.npy"), "bad"), ErrorCode.LOAD_FAILED),
            (lambda: self.c.unload("nope"), ErrorCode.UNKNOWN_MODEL),
        ]
        for i, (f, code) in enumerate(cases):
            with self.subTest(i=i, code=code):
                with self.assertRaises(PpxError) as cm:
                    f()
                self.assertEqual(cm.exception.code, code, str(cm.exception))
                self.assertTrue(cm.exception.message)
        self.assertEqual(len(self.c.models()) >= 1, True)

    def test_version_mismatch(self):
        from ppx import serve_wire as sw
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.ep)
        try:
            s.send_multipart([b"", sw.encode_envelope("Status", None, 99, version=7)])
            self.assertTrue(s.poll(10000))
            env = sw.decode_envelope(s.recv_multipart()[-1])
            self.assertEqual((env.request_id, env.body_type, env.body.code), (99, "Error", ErrorCode.VERSION_MISMATCH))
        finally:
            s.close()

    def test_admin(self):
        r = self.c.load(self.model, "second")
        self.assertIn("second", r.message)
        self.assertEqual(r.model.name, "second")
        g = r.model.generation
        r = self.c.reload("second")
        self.assertEqual(r.model.generation, g + 1)
        self.assertIn("second", [m.name for m in self.c.models()])
        self.c.unload("second")
        self.assertNotIn("second", [m.name for m in self.c.models()])

    def test_same_samples_as_ppxctl(self):
        ctl = os.path.join(os.path.dirname(ppxd()), "ppxctl")
        if not os.access(ctl, os.X_OK):
            self.skipTest("ppxctl not built")
        out = os.path.join(self.tmp, "ctl.npy")
        r = subprocess.run([ctl, "--endpoint", self.ep, "sample", "--model", "gauss", "--obs", "8,9",
                            "--obs", "1,2", "-n", "300", "--seed", "42", "-o", out],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        want = np.load(out)
        got = self.c.sample("gauss", [[8.0, 9.0], [1.0, 2.0]], 300, seed=42)
        np.testing.assert_array_equal(got.reshape(-1, 1), want.reshape(-1, 1))


@unittest.skipUnless(HAVE and zmq.has("curve"), "ppxd serve or CURVE not available")
class RealCurve(unittest.TestCase):
    def test_curve_keys_and_admin_rights(self):
        tmp = tempfile.mkdtemp(prefix="ppx-py-curve-")
        try:
            # a model: train quickly on tiny data
            rng = np.random.default_rng(1)
            theta = rng.standard_normal((600, 1))
            x = theta + 0.5 * rng.standard_normal((600, 2))
            np.save(os.path.join(tmp, "t.npy"), theta)
            np.save(os.path.join(tmp, "x.npy"), x)
            model = os.path.join(tmp, "m.ppxm")
            subprocess.run([ppxd(), "train", "npe", "--data", os.path.join(tmp, "t.npy"), os.path.join(tmp, "x.npy"),
                            "--prior", "normal:0:1", "--transforms", "1", "--hidden", "8", "--max-epochs", "3",
                            "--quiet", "-o", model], check=True, capture_output=True, timeout=120)
            spub, ssec = zmq.curve_keypair()
            cpub, csec = zmq.curve_keypair()
            apub, asec = zmq.curve_keypair()
            with open(os.path.join(tmp, "server.key"), "w") as f:
                f.write("public-key = %s\nsecret-key = %s\n" % (spub.decode(), ssec.decode()))
            with open(os.path.join(tmp, "allow"), "w") as f:
                f.write("# allowed\n%s\n" % cpub.decode())
            with open(os.path.join(tmp, "admin"), "w") as f:
                f.write("%s\n" % apub.decode())
            port = _free_port()
            ep = "tcp://127.0.0.1:%d" % port
            proc = start_server(model, ep, "--curve-secret", os.path.join(tmp, "server.key"),
                                "--curve-allow", os.path.join(tmp, "allow"), "--curve-admin", os.path.join(tmp, "admin"))
            try:
                with Client(ep, timeout_ms=10000, curve_server_key=spub, curve_client_keys=(cpub, csec)) as c:
                    wait_ready(c, proc)
                    self.assertEqual([m.name for m in c.models()], ["gauss"])
                    self.assertEqual(c.sample("gauss", [0.0, 0.0], 5, seed=1).shape, (5, 1))
                    with self.assertRaises(PpxError) as cm:
                        c.reload("gauss")
                    self.assertEqual(cm.exception.code, ErrorCode.NOT_ALLOWED)
                with Client(ep, timeout_ms=10000, curve_server_key=spub.decode(),
                            curve_client_keys=(apub.decode(), asec.decode())) as c:
                    self.assertEqual(c.reload("gauss").model.name, "gauss")
                # a key not on any list, or the wrong server key: no answer
                with Client(ep, timeout_ms=500, curve_server_key=spub) as c:
                    with self.assertRaises(PpxTimeout):
                        c.status()
                with Client(ep, timeout_ms=500, curve_server_key=zmq.curve_keypair()[0],
                            curve_client_keys=(cpub, csec)) as c:
                    with self.assertRaises(PpxTimeout):
                        c.status()
            finally:
                stop(proc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


if __name__ == "__main__":
    unittest.main()
