"""Python simulators driven by the real engine, $PPXD_BUILD/ppxd: its C codec
decodes every statement the Python side encodes (all 11 distributions), and
importance sampling on the Gaussian example recovers the exact posterior."""
import math
import os
import re
import subprocess
import tempfile
import unittest

import numpy as np

from ppx import dists

from .models import ALL_DISTS
from .support import PKG_ROOT, PY, REPO, env, ppxd

EXAMPLE = os.path.join(PKG_ROOT, "examples", "gaussian.py")


def run_ppxd(*args, timeout=300):
    r = subprocess.run([ppxd()] + list(args), capture_output=True, text=True, timeout=timeout,
                       env=env(), cwd=REPO)
    if r.returncode != 0:
        raise AssertionError("ppxd %s failed (%d):\n%s\n%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r.stdout + r.stderr


@unittest.skipUnless(ppxd(), "ppxd not built")
class Engine(unittest.TestCase):
    def test_gaussian_posterior(self):
        out = run_ppxd("infer", "--sim-cmd", "%s %s {endpoint}" % (PY, EXAMPLE), "-j", "2", "-n", "3000",
                       "--observe", "obs0=8", "--observe", "obs1=9", "--seed", "3")
        ess = float(re.search(r"ESS ([0-9.]+)", out).group(1))
        row = re.search(r"^mu\s+(\S+)\s+(\S+)", out, re.M)
        mean, sd = float(row.group(1)), float(row.group(2))
        se = 0.9129 / math.sqrt(ess)
        self.assertGreater(ess, 5, out)
        self.assertLess(abs(mean - 7.25), 4 * se, out)
        self.assertLess(abs(sd - 0.9129), 0.5, out)
        self.assertRegex(out, r"traces discarded\s+0\b")
        self.assertRegex(out, r"traces done\s+3000\b")

    def test_all_dists_prior(self):
        """The engine draws all 11 distributions from the parameters the
        Python side sent; the values exported from the trace file have the
        right moments."""
        n = 3000
        names = [nm for nm, _ in ALL_DISTS]
        with tempfile.TemporaryDirectory() as tmp:
            trace = os.path.join(tmp, "t.ppxt")
            csv = os.path.join(tmp, "v.csv")
            out = run_ppxd("simulate", "--sim-cmd", "%s -m tests.models all_dists {endpoint}" % PY,
                           "-j", "2", "-n", str(n), "-o", trace, "--seed", "5")
            self.assertRegex(out, r"traces discarded\s+0\b")
            run_ppxd("export", trace, "--names", ",".join(names), "-o", csv)
            data = np.loadtxt(csv, delimiter=",", skiprows=1)
        self.assertEqual(data.shape, (n, 11))
        for j, (name, d) in enumerate(ALL_DISTS):
            with self.subTest(name):
                x = data[:, j]
                mean, var = dists.mean_var(d)
                self.assertLess(abs(x.mean() - mean), 5 * math.sqrt(var / n), name)
                self.assertLess(abs(x.var() / var - 1), 0.2, name)

    def test_statements_trace(self):
        """Vector, Categorical [2,2], control=false, observe with values and
        tags all pass through the engine into a trace file."""
        with tempfile.TemporaryDirectory() as tmp:
            trace = os.path.join(tmp, "t.ppxt")
            csv = os.path.join(tmp, "v.csv")
            out = run_ppxd("simulate", "--sim-cmd", "%s -m tests.models statements {endpoint}" % PY,
                           "-n", "20", "-o", trace)
            self.assertRegex(out, r"traces discarded\s+0\b")
            info = run_ppxd("info", trace)
            self.assertIn("20 traces", info)
            run_ppxd("export", trace, "--names", "prior_only,obs_scalar", "-o", csv)
            data = np.loadtxt(csv, delimiter=",", skiprows=1)
        self.assertEqual(data.shape, (20, 2))
        self.assertTrue(((data[:, 0] >= 0) & (data[:, 0] < 1)).all())
        self.assertTrue((data[:, 1] == 0.5).all())


if __name__ == "__main__":
    unittest.main()
