"""One seed, one answer: `ppxd posterior sample --seed S` (the command line,
in-process), `ppxd serve` queried by `ppxctl sample --seed S` and by
`ppx.Client.sample(seed=S)` must give the same bits for the same model and
observations.  Observation row k draws from RNG stream (seed, k) everywhere.

Models, trained here by `ppxd train --data` on a 2-parameter toy problem
(theta ~ U(-1, 1)^2, x = (theta_0 + theta_1, theta_0 - theta_1) + noise):
  - NPE with the logit theta transform (--theta-transform all);
  - NPE without it (--no-theta-transform), so rejection to the prior's
    support draws several chunks: the acceptance path must agree too;
  - NRE (sampling by importance resampling from the prior).
Several observations per query, so the per-row streams are exercised.
Also the leakage-corrected log density of one observation: `ppxd posterior
logprob --seed S` against `ppxctl logprob --seed S` and the Python client.
Skipped when ppxd, its serve/train sub-commands or ppxctl are missing."""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import numpy as np

from ppx import Client, PpxTimeout

from .support import REPO, endpoint, ppxd


def _tools():
    p = ppxd()
    if not p:
        return None
    ctl = os.path.join(os.path.dirname(p), "ppxctl")
    if not os.access(ctl, os.X_OK):
        return None
    for sub in ("serve", "train", "posterior"):
        r = subprocess.run([p, sub, "--help"], capture_output=True, text=True, timeout=30)
        if "usage" not in (r.stdout + r.stderr):
            return None
    return p, ctl


TOOLS = _tools()
OBS = np.array([[0.3, -0.2], [-0.9, 0.1], [1.2, 0.8]])
N = 3000
SEED = 5


def run(*args, timeout=300):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
    return r


@unittest.skipUnless(TOOLS, "ppxd (train, serve, posterior) or ppxctl not built")
class CliServerClientAgree(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ppxd, cls.ctl = TOOLS
        cls.tmp = tempfile.mkdtemp(prefix="ppx-py-agree-")
        rng = np.random.default_rng(17)
        n = 3000
        theta = rng.uniform(-1, 1, size=(n, 2))
        x = np.stack([theta[:, 0] + theta[:, 1], theta[:, 0] - theta[:, 1]], axis=1)
        x += 0.3 * rng.standard_normal(x.shape)
        cls.tp, cls.xp = cls.path("theta.npy"), cls.path("x.npy")
        np.save(cls.tp, theta)
        np.save(cls.xp, x)
        cls.obs_file = cls.path("obs.npy")
        np.save(cls.obs_file, OBS)
        common = ["--data", cls.tp, cls.xp, "--prior", "uniform:-1:1x2", "--max-epochs", "15", "--seed", "3",
                  "--quiet"]
        cls.models = {
            "npe": cls.path("npe.ppxm"),
            "npe_raw": cls.path("npe_raw.ppxm"),
            "nre": cls.path("nre.ppxm"),
        }
        run(cls.ppxd, "train", "npe", *common, "--transforms", "2", "--hidden", "16", "--theta-transform", "all",
            "-o", cls.models["npe"])
        run(cls.ppxd, "train", "npe", *common, "--transforms", "2", "--hidden", "16", "--no-theta-transform",
            "-o", cls.models["npe_raw"])
        run(cls.ppxd, "train", "nre", *common, "--hidden", "16", "-o", cls.models["nre"])
        cls.ep = endpoint("agree")
        args = [cls.ppxd, "serve", "--serve", cls.ep, "--serve-threads", "2", "--quiet"]
        for name, p in cls.models.items():
            args += ["--model", "%s=%s" % (name, p)]
        cls.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
        cls.c = Client(cls.ep, timeout_ms=30000)
        t0 = time.monotonic()
        while True:
            if cls.proc.poll() is not None:
                raise AssertionError("ppxd serve exited: %s" % cls.proc.stderr.read().decode())
            try:
                cls.c.status()
                break
            except PpxTimeout:
                if time.monotonic() - t0 > 20:
                    raise AssertionError("ppxd serve not answering")

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        if cls.proc.poll() is None:
            cls.proc.terminate()
            try:
                cls.proc.wait(10)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        cls.proc.stderr.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp, name)

    def three_ways(self, name, obs_rows):
        """Samples [k * N, 2] from the command line, ppxctl and the Python client."""
        k = len(obs_rows)
        of = self.path("obs_%s_%d.npy" % (name, k))
        np.save(of, np.asarray(obs_rows, dtype=np.float64))
        cli_out = self.path("cli_%s_%d.npy" % (name, k))
        r = run(self.ppxd, "posterior", "sample", "--model", self.models[name], "--obs-file", of, "-n", N,
                "--seed", SEED, "-o", cli_out)
        cli = np.load(cli_out)
        ctl_out = self.path("ctl_%s_%d.npy" % (name, k))
        args = [self.ctl, "--endpoint", self.ep, "--timeout-ms", "60000", "sample", "--model", name]
        for row in obs_rows:
            args += ["--obs", ",".join(repr(float(v)) for v in row)]
        run(*args, "-n", N, "--seed", SEED, "-o", ctl_out)
        ctl = np.load(ctl_out)
        py = self.c.sample(name, np.asarray(obs_rows, dtype=np.float64), N, seed=SEED)
        return cli, ctl, np.asarray(py).reshape(-1, 2), r.stderr

    def check(self, name):
        for rows in (OBS[:1], OBS):
            with self.subTest(model=name, observations=len(rows)):
                cli, ctl, py = self.three_ways(name, rows)[:3]
                self.assertEqual(cli.shape, (len(rows) * N, 2))
                self.assertEqual(ctl.shape, cli.shape)
                self.assertEqual(py.shape, cli.shape)
                # bits, not closeness
                self.assertEqual(cli.tobytes(), ctl.tobytes(), "ppxd posterior sample and ppxctl differ")
                self.assertEqual(cli.tobytes(), py.tobytes(), "ppxd posterior sample and the Python client differ")
                self.assertTrue(np.all((cli >= -1) & (cli < 1)))

    def test_npe_with_theta_transform(self):
        self.check("npe")

    def test_npe_with_rejection(self):
        self.check("npe_raw")
        # the rejection really rejected something for the far observation
        err = self.three_ways("npe_raw", OBS[2:])[3]
        self.assertIn("acceptance rate", err)
        self.assertNotIn("acceptance rate 1 ", err)

    def test_nre(self):
        self.check("nre")

    def test_log_prob(self):
        th = self.path("lp_theta.npy")
        pts = np.array([[0.1, 0.2], [-0.5, 0.3], [0.9, -0.9]])
        np.save(th, pts)
        for name in ("npe", "npe_raw"):
            with self.subTest(model=name):
                obs = ",".join(repr(float(v)) for v in OBS[2])
                r = run(self.ppxd, "posterior", "logprob", "--model", self.models[name], "--obs", obs, "--theta-file",
                        th, "--seed", 9)
                cli = np.array([float(v) for v in r.stdout.split()])
                r = run(self.ctl, "--endpoint", self.ep, "logprob", "--model", name, "--obs", obs, "--theta-file", th,
                        "--seed", 9)
                ctl = np.array([float(v) for v in r.stdout.split()])
                py = np.asarray(self.c.log_prob(name, OBS[2], pts, seed=9))
                self.assertEqual(cli.shape, (3,))
                np.testing.assert_array_equal(cli, ctl)
                np.testing.assert_array_equal(cli, py)


if __name__ == "__main__":
    unittest.main()
