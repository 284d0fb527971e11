"""The plots of ppx.plot (matplotlib, Agg): files, drawn data, and pixels."""
import os
import tempfile
import unittest

import numpy as np

try:
    import matplotlib  # noqa: F401
    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False

from ppx import pair_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, "not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@unittest.skipUnless(HAVE_MPL, "python3-matplotlib not installed")
class PairPlot(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ppx-plot-")
        self.rng = np.random.default_rng(0)

    def test_three_parameters_with_reference(self):
        cov = [[1.0, 0.8, 0.0], [0.8, 1.0, -0.5], [0.0, -0.5, 1.0]]
        s = self.rng.multivariate_normal([0.0, 2.0, -1.0], cov, size=8000)
        p = os.path.join(self.tmp, "three.png")
        self.assertEqual(pair_plot(s, names=["a", "b", "c"], path=p, reference=[0.0, 2.0, -1.0]), p)
        w, h = png_size(p)
        self.assertGreater(w, 400)
        self.assertGreater(h, 400)
        if os.environ.get("PPX_KEEP_PLOTS"):
            import shutil
            shutil.copy(p, os.environ["PPX_KEEP_PLOTS"])

    def test_one_parameter_and_non_finite(self):
        s = self.rng.standard_normal(1000)
        s[:10] = np.nan
        p = os.path.join(self.tmp, "one.png")
        pair_plot(s, path=p, reference=[0.0])
        self.assertGreater(png_size(p)[0], 100)

    def test_constant_column(self):
        s = np.column_stack([np.ones(100), self.rng.standard_normal(100)])
        pair_plot(s, path=os.path.join(self.tmp, "const.png"))

    def test_bad_arguments(self):
        with self.assertRaises(ValueError):
            pair_plot(np.zeros((10, 2)), names=["a"], path=os.path.join(self.tmp, "x.png"))
        with self.assertRaises(ValueError):
            pair_plot(np.zeros((10, 2)), reference=[1.0, 2.0, 3.0], path=os.path.join(self.tmp, "x.png"))
        with self.assertRaises(ValueError):
            pair_plot(np.zeros((0, 2)), path=os.path.join(self.tmp, "x.png"))
        with self.assertRaises(ValueError):
            pair_plot(np.full((5, 2), np.nan), path=os.path.join(self.tmp, "x.png"))

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)



# ---- diagnostics plots ---------------------------------------------------------------------------

def assert_svg(tc, path):
    with open(path, "rb") as f:
        head = f.read(400)
    tc.assertTrue(head.startswith(b"<?xml"), "not an SVG: %r" % head[:40])
    tc.assertIn(b"<svg", head)
    tc.assertGreater(os.path.getsize(path), 2000)


def ink_fraction(path):
    """Fraction of pixels of a PNG that are not (near) white, and the number of distinct colours."""
    import matplotlib.image as mpimg
    img = mpimg.imread(path)[..., :3]
    ink = (img < 0.95).any(axis=2).mean()
    colours = np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0).shape[0]
    return ink, colours


def assert_not_blank(tc, path):
    ink, colours = ink_fraction(path)
    tc.assertGreater(ink, 0.03, "%s looks blank (%.4f of pixels inked)" % (path, ink))
    tc.assertGreater(colours, 8, "%s has %d colours" % (path, colours))


@unittest.skipUnless(HAVE_MPL, "python3-matplotlib not installed")
class DiagnosticPlots(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ppx-diag-plot-")
        self.rng = np.random.default_rng(1)

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def render_both(self, fn, *args, **kw):
        """Render to PNG and SVG; check both files and that the PNG is not blank."""
        png = fn(*args, path=self.path("p.png"), **kw)
        w, h = png_size(png)
        self.assertGreater(w, 250)
        self.assertGreater(h, 150)
        assert_not_blank(self, png)
        assert_svg(self, fn(*args, path=self.path("p.svg"), **kw))
        if os.environ.get("PPX_KEEP_PLOTS"):
            import shutil
            shutil.copy(png, os.path.join(os.environ["PPX_KEEP_PLOTS"], fn.__name__ + ".png"))

    def test_blank_check_can_fail(self):
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(4, 3))
        fig.savefig(self.path("blank.png"), format="png")
        plt.close(fig)
        ink, _ = ink_fraction(self.path("blank.png"))
        self.assertLess(ink, 0.001)

    def test_sbc_histogram_counts_match(self):
        from ppx.plot import sbc_bin_counts, sbc_plot
        L, n = 99, 500
        ranks = np.column_stack([self.rng.integers(0, L + 1, n), np.minimum(self.rng.integers(0, 30, n), L)])
        fig = sbc_plot(ranks, L, path=None, names=["a", "b"], bins=10)
        want = sbc_bin_counts(ranks, L, 10)
        # Bin r * bins // (L + 1): with L + 1 = 100 and 10 bins, the tens digit.
        np.testing.assert_array_equal(want[0], np.bincount(ranks[:, 0] // 10, minlength=10))
        for j, ax in enumerate(fig.axes[:2]):
            heights = [r.get_height() for r in ax.containers[0]]
            np.testing.assert_array_equal(heights, want[j])
        self.assertEqual(sum(want[1][3:]), 0)
        self.render_both(sbc_plot, ranks, L, names=["a", "b"], bins=10)

    def test_coverage_curve_matches_levels(self):
        from ppx.plot import coverage_curve, coverage_plot
        u = self.rng.uniform(size=400) ** 1.5  # small levels: coverage above the diagonal (conservative)
        fig = coverage_plot(u, path=None)
        ax = fig.axes[0]
        curve = [ln for ln in ax.lines if ln.get_linewidth() == 2][0]
        x, y = curve.get_data()
        np.testing.assert_allclose(y, coverage_curve(u, x))
        marks = [ln for ln in ax.lines if ln.get_marker() == "o"]
        self.assertEqual(len(marks), 3)
        for m, c in zip(marks, (0.5, 0.9, 0.95)):
            self.assertAlmostEqual(m.get_ydata()[0], (u < c).mean())
        self.assertGreater((u < 0.5).mean(), 0.5)
        self.render_both(coverage_plot, u)

    def test_tarp_plot(self):
        from ppx.plot import tarp_plot
        self.render_both(tarp_plot, self.rng.uniform(size=300))

    def test_training_curves_from_log(self):
        from ppx.plot import read_training_log, training_plot
        log = self.path("m.ppxm.log.csv")
        tr = np.linspace(2.0, -1.0, 30)
        va = tr + 0.2 + 0.1 * np.sin(np.arange(30))
        with open(log, "w") as f:
            f.write("epoch,train_loss,val_loss,seconds\n")
            for i in range(30):
                f.write("%d,%.9g,%.9g,%.3f\n" % (i + 1, tr[i], va[i], 0.1 * (i + 1)))
        d = read_training_log(log)
        np.testing.assert_allclose(d["val_loss"], va, rtol=1e-8)
        fig = training_plot(log, path=None)
        lines = fig.axes[0].lines
        np.testing.assert_allclose(lines[0].get_ydata(), tr, rtol=1e-8)
        np.testing.assert_allclose(lines[1].get_ydata(), va, rtol=1e-8)
        self.assertEqual(lines[2].get_xdata()[0], np.argmin(va) + 1)
        self.render_both(training_plot, log)
        bad = self.path("bad.csv")
        with open(bad, "w") as f:
            f.write("a,b\n1,2\n")
        with self.assertRaises(ValueError):
            read_training_log(bad)

    def test_ppc_histograms_hold_every_simulation(self):
        from ppx.plot import ppc_plot
        x = self.rng.normal(size=(800, 3)) * [1.0, 0.1, 5.0]
        x[5, 1] = np.nan
        fig = ppc_plot(x, [0.5, 0.0, 30.0], path=None, names=["a", "b", "c"])
        for j, ax in enumerate(fig.axes[:3]):
            self.assertEqual(sum(p.get_height() for p in ax.patches), 799)
            vline = ax.lines[0]
            self.assertEqual(vline.get_xdata()[0], [0.5, 0.0, 30.0][j])
        self.render_both(ppc_plot, x, [0.5, 0.0, 30.0])
        with self.assertRaises(ValueError):
            ppc_plot(x, [0.0, 1.0], path=None)

    def test_pair_plot_with_reference_samples_and_truth(self):
        s = self.rng.normal(size=(3000, 2))
        ref = self.rng.normal(size=(2000, 2)) + 0.5
        fig = pair_plot(s, path=None, reference_samples=ref, truth=[0.1, -0.2])
        diag = fig.axes[0]
        # Filled posterior bars plus the reference's step outline.
        self.assertEqual(sum(p.get_height() for p in diag.patches if hasattr(p, "get_height")) > 0, True)
        self.assertTrue(any(p.get_fill() is False for p in diag.patches))
        self.assertEqual(diag.lines[0].get_xdata()[0], 0.1)
        self.render_both(pair_plot, s, reference_samples=ref, truth=[0.1, -0.2])
        with self.assertRaises(ValueError):
            pair_plot(s, path=self.path("x.png"), reference_samples=np.zeros((5, 3)))
        with self.assertRaises(ValueError):
            pair_plot(s, path=self.path("x.gif"))

    def test_load_table_reads_sbibm_csv_and_npy(self):
        from ppx.plot import load_table
        p = self.path("ref.csv")
        with open(p, "w") as f:
            f.write("parameter_1,parameter_2\n0.5,-1\n2,3.25\n")
        np.testing.assert_array_equal(load_table(p), [[0.5, -1.0], [2.0, 3.25]])
        with open(p, "w") as f:
            f.write("0.5,-1\n")
        np.testing.assert_array_equal(load_table(p), [[0.5, -1.0]])
        np.save(self.path("a.npy"), np.eye(2))
        np.testing.assert_array_equal(load_table(self.path("a.npy")), np.eye(2))

    def test_command_line_renders_a_diagnose_directory(self):
        import json
        import subprocess
        import sys
        d = self.path("diag")
        os.makedirs(d)
        n, L = 200, 50
        np.save(os.path.join(d, "ranks.npy"), self.rng.integers(0, L + 1, (n, 2)).astype(np.float64))
        np.save(os.path.join(d, "hpd.npy"), self.rng.uniform(size=(n, 1)))
        np.save(os.path.join(d, "tarp.npy"), self.rng.uniform(size=(n, 1)))
        np.save(os.path.join(d, "ppc_x.npy"), self.rng.normal(size=(300, 2)))
        np.save(os.path.join(d, "ppc_theta.npy"), self.rng.normal(size=(300, 2)))
        rep = {"model": {"path": self.path("none.ppxm"), "theta_names": ["t0", "t1"], "x_names": ["x0", "x1"]},
               "sbc": {"L": L, "bins": 10, "verdict": "pass"}, "coverage": {"verdict": "pass"},
               "tarp": {"verdict": "pass"},
               "ppc": {"verdict": "pass", "dims": [{"name": "x0", "x_o": 0.0}, {"name": "x1", "x_o": 1.0}]}}
        with open(os.path.join(d, "report.json"), "w") as f:
            json.dump(rep, f)
        r = subprocess.run([sys.executable, "-m", "ppx.plot", "all", d, "--format", "svg"], capture_output=True,
                           text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in ("sbc", "coverage", "tarp", "ppc", "posterior"):
            assert_svg(self, os.path.join(d, name + ".svg"))
        r = subprocess.run([sys.executable, "-m", "ppx.plot", "all", self.path("missing")], capture_output=True,
                           text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.assertEqual(r.returncode, 1)
        self.assertIn("ppx.plot:", r.stderr)


if __name__ == "__main__":
    unittest.main()
