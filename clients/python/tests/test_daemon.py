"""The query client's job methods against a real `$PPXD_BUILD/ppxd daemon`
with Gaussian simulators connecting in (Python ones, connect=True, and the
C example): submit, wait, fetch, sims, cancel and errors, and the same
results as ppxctl / the one-shot commands (checked in tests/test_daemon.c)."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import numpy as np

from ppx import Client, JobFailed, JobState, PpxError
from ppx.serve_wire import ErrorCode

from .support import REPO, build_dir, ppxd, stop


def _has_daemon():
    p = ppxd()
    if not p:
        return False
    r = subprocess.run([p, "daemon", "--help"], capture_output=True, text=True, timeout=30)
    return "usage: ppxd daemon" in r.stdout


HAVE = _has_daemon()


@unittest.skipUnless(HAVE, "ppxd daemon not built")
class Daemon(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ppx-py-daemon-")
        cls.ep = "ipc://%s/q.sock" % cls.dir
        cls.sims_ep = "ipc://%s/sims.sock" % cls.dir
        cls.log = open(os.path.join(cls.dir, "daemon.log"), "wb")
        cls.proc = subprocess.Popen([ppxd(), "daemon", "--data-dir", os.path.join(cls.dir, "data"), "--serve",
                                     cls.ep, "--sim-listen", cls.sims_ep], stdout=subprocess.DEVNULL,
                                    stderr=cls.log, cwd=REPO)
        gauss = os.path.join(build_dir(), "examples", "gaussian")
        cls.sims = [subprocess.Popen([gauss, "--connect-to", cls.sims_ep], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL) for _ in range(2)]
        cls.c = Client(cls.ep, timeout_ms=10000)
        deadline = time.monotonic() + 20
        while True:
            try:
                pools = cls.c.sims()
                if pools and pools[0].connected == 2:
                    break
            except PpxError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon and its simulators did not come up")
            time.sleep(0.1)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        for s in cls.sims:
            stop(s)
        stop(cls.proc, 10)
        cls.log.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_simulate_wait_fetch(self):
        jid = self.c.submit(["simulate", "-n", "800", "--seed", "4"], name="py-sim")
        seen = []
        info = self.c.wait(jid, timeout=60, poll=0.5, progress=seen.append, check=True)
        self.assertEqual(info.state, JobState.DONE)
        self.assertEqual((info.done, info.total, info.unit), (800, 800, "traces"))
        self.assertTrue(seen)
        self.assertIn(jid, [j.id for j in self.c.jobs()])
        blob = self.c.fetch(jid, "traces.ppxt", chunk=4096)  # many chunks
        with open(os.path.join(self.dir, "data", "jobs", jid, "traces.ppxt"), "rb") as f:
            self.assertEqual(blob, f.read())
        self.assertEqual(set(self.c.fetch(jid)), {"traces.ppxt"})

    def test_train_then_sample(self):
        jid = self.c.submit(["train", "npe", "-n", "1000", "--theta", "mu", "--x", "obs0,obs1", "--max-epochs",
                             "5"], name="py-gauss")
        info = self.c.wait(jid, timeout=120, check=True)
        self.assertEqual(info.unit, "epochs")
        self.assertIn("model.ppxm", info.outputs)
        s = self.c.sample("py-gauss", [8.0, 9.0], 300, seed=3)
        self.assertEqual(s.shape, (300, 1))
        path = os.path.join(self.dir, "m.ppxm")
        self.c.fetch(jid, "model.ppxm", path)
        out = os.path.join(self.dir, "s.npy")
        subprocess.run([ppxd(), "posterior", "sample", "--model", path, "--obs", "8,9", "-n", "300", "--seed", "3",
                        "-o", out], check=True, capture_output=True)
        np.testing.assert_array_equal(np.load(out), s)
        # A calibration check of the model just published, as a job on the pool.
        did = self.c.submit(["diagnose", "--model", "py-gauss", "-n", "60", "-L", "99", "--seed", "2"],
                            name="py-diag")
        info = self.c.wait(did, timeout=120, check=True)
        self.assertEqual((info.done, info.total, info.unit), (60, 60, "rounds"))
        self.assertIn("report.json", info.outputs)
        report = json.loads(self.c.fetch(did, "report.json").decode())
        self.assertEqual(report["format"], "ppxd-diagnose/1")
        self.assertEqual(report["test"]["rounds"], 60)
        self.assertEqual(report["model"]["theta_names"], ["mu"])
        self.assertEqual(sum(report["sbc"]["dims"][0]["counts"]), 60)
        ranks_path = os.path.join(self.dir, "ranks.npy")
        self.c.fetch(did, "ranks.npy", ranks_path)
        ranks = np.load(ranks_path)
        self.assertEqual(ranks.shape, (60, 1))
        self.assertTrue(((ranks >= 0) & (ranks <= 99)).all())

    def test_cancel_and_errors(self):
        jid = self.c.submit(["simulate", "-n", "100000000"])
        time.sleep(0.3)
        self.c.cancel(jid)
        with self.assertRaises(JobFailed) as cm:
            self.c.wait(jid, timeout=30, check=True)
        self.assertEqual(cm.exception.info.state, JobState.CANCELLED)
        with self.assertRaises(PpxError) as cm:
            self.c.submit(["infer", "-n", "zero"])
        self.assertEqual(cm.exception.code, ErrorCode.BAD_REQUEST)
        self.assertIn("-n wants a positive number", str(cm.exception))
        with self.assertRaises(PpxError) as cm:
            self.c.job_status("j424242")
        self.assertEqual(cm.exception.code, ErrorCode.UNKNOWN_JOB)
        with self.assertRaises(TypeError):
            self.c.submit("simulate -n 10")


if __name__ == "__main__":
    unittest.main()
