"""pair_plot writes a PNG (matplotlib, Agg)."""
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


if __name__ == "__main__":
    unittest.main()
