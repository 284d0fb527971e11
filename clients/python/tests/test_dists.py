"""The 11 distributions: validation, shapes and local draws (moments)."""
import math
import unittest

import numpy as np

import ppx
from ppx import dists
from ppx.dists import (Bernoulli, Beta, Binomial, Categorical, Exponential, Gamma, LogNormal,
                       Normal, Poisson, Uniform, Weibull)

from .models import ALL_DISTS


def moments_ok(tc, x, mean, var, what, z=5.0):
    """Sample mean within z standard errors; sample variance within z
    standard errors of the variance estimate (from the fourth moment)."""
    n = x.size
    m = x.mean()
    tc.assertLess(abs(m - mean), z * math.sqrt(var / n) + 1e-12, "%s: mean %g, want %g" % (what, m, mean))
    v = x.var(ddof=1)
    m4 = np.mean((x - m) ** 4)
    se_v = math.sqrt(max(m4 - v * v, 1e-300) / n)
    tc.assertLess(abs(v - var), z * se_v + 1e-12, "%s: variance %g, want %g" % (what, v, var))


class LocalDraws(unittest.TestCase):
    N = 200000

    def test_all_eleven_batched(self):
        """Each distribution with its parameters broadcast over N elements:
        one vectorised draw of N values."""
        rng = np.random.default_rng(42)
        for name, d in ALL_DISTS:
            with self.subTest(name):
                mean, var = dists.mean_var(d)
                if isinstance(d, Categorical):
                    big = Categorical(np.tile(d.probs, (self.N, 1)))
                else:
                    big = type(d)(*[np.full(self.N, float(a)) for a in d.values])
                x = big.sample_local(rng)
                self.assertEqual(x.shape, (self.N,))
                moments_ok(self, x, mean, var, name)
                if d.discrete:
                    self.assertTrue(np.all(x == np.floor(x)), name)

    def test_all_eleven_scalar_through_sample(self):
        """ppx.sample() outside any run draws locally: 4000 scalar draws each."""
        ppx.seed(7)
        for name, d in ALL_DISTS:
            with self.subTest(name):
                x = np.array([ppx.sample(d) for _ in range(4000)])
                self.assertIsInstance(ppx.sample(d), float)
                mean, var = dists.mean_var(d)
                moments_ok(self, x, mean, var, name)

    def test_supports(self):
        rng = np.random.default_rng(1)
        n = 20000
        x = Uniform(np.full(n, -1.0), 3.0).sample_local(rng)
        self.assertTrue(((x >= -1) & (x < 3)).all())
        x = Beta(np.full(n, 0.5), 0.5).sample_local(rng)
        self.assertTrue(((x >= 0) & (x <= 1)).all())
        x = Categorical(np.tile([0.0, 1.0, 0.0, 2.0], (n, 1))).sample_local(rng)
        self.assertEqual(set(np.unique(x).tolist()), {1.0, 3.0})  # zero weights never drawn
        self.assertAlmostEqual((x == 3.0).mean(), 2 / 3, delta=0.02)
        x = Binomial(np.full(n, 5.0), 1.0).sample_local(rng)
        self.assertTrue((x == 5).all())
        x = Bernoulli(np.full(n, 0.0)).sample_local(rng)
        self.assertTrue((x == 0).all())
        x = Poisson(np.full(n, 0.0)).sample_local(rng)
        self.assertTrue((x == 0).all())

    def test_categorical_unnormalised_rows(self):
        rng = np.random.default_rng(3)
        p = np.array([[1.0, 1.0], [1.0, 3.0]])
        x = np.array([Categorical(p).sample_local(rng) for _ in range(20000)])
        self.assertEqual(x.shape, (20000, 2))
        self.assertAlmostEqual(x[:, 0].mean(), 0.5, delta=0.02)
        self.assertAlmostEqual(x[:, 1].mean(), 0.75, delta=0.02)

    def test_reproducible(self):
        a = [Normal(0.0, 1.0).sample_local(np.random.default_rng(9)) for _ in range(3)]
        self.assertEqual(len(set(a)), 1)


class Validation(unittest.TestCase):
    BAD = [
        (Normal, (0.0, 0.0), "stddev"), (Normal, (float("nan"), 1.0), "not finite"),
        (Normal, (0.0, -1.0), "stddev"), (Normal, (float("inf"), 1.0), "mean"),
        (Uniform, (1.0, 1.0), "low"), (Uniform, (2.0, 1.0), "low"), (Uniform, ([0.0, 3.0], 2.0), "[1]"),
        (Categorical, ([0.0, 0.0],), "sums"), (Categorical, ([1.0, -1.0],), ">= 0"), (Categorical, ([],), "empty"),
        (Categorical, ([[1.0, 1.0], [0.0, 0.0]],), "row 1"),
        (Poisson, (-0.5,), ">= 0"), (Bernoulli, (1.5,), "[0, 1]"), (Bernoulli, (-0.1,), "[0, 1]"),
        (Beta, (0.0, 1.0), "concentration1"), (Beta, (1.0, -2.0), "concentration0"),
        (Exponential, (0.0,), "rate"), (Gamma, (1.0, 0.0), "rate"), (Gamma, (-1.0, 1.0), "concentration"),
        (LogNormal, (0.0, 0.0), "scale"), (Binomial, (2.5, 0.5), "integer"), (Binomial, (-1.0, 0.5), "integer"),
        (Binomial, (3.0, 2.0), "probs"), (Weibull, (0.0, 1.0), "scale"), (Weibull, (1.0, 0.0), "concentration"),
        (Normal, ([1.0, 2.0], [1.0, 2.0, 3.0]), "shape"), (Normal, ([], 1.0), "empty"),
        (Normal, ("a", 1.0), "numeric"),
    ]

    def test_bad_parameters(self):
        for cls, args, fragment in self.BAD:
            with self.subTest(cls=cls.__name__, args=args):
                with self.assertRaises(ValueError) as cm:
                    cls(*args)
                self.assertIn(fragment, str(cm.exception))

    def test_wrong_arity(self):
        with self.assertRaises(TypeError):
            Normal(1.0)
        with self.assertRaises(TypeError):
            Poisson(1.0, 2.0)

    def test_good_edge_cases(self):
        Poisson(0.0)
        Bernoulli([0.0, 1.0])
        Binomial(0.0, 0.0)
        Categorical([0.0, 1.0])

    def test_shapes(self):
        self.assertEqual(Normal(0.0, 1.0).batch_shape, ())
        self.assertEqual(Normal([0.0, 1.0], 1.0).batch_shape, (2,))
        self.assertEqual(Normal(np.zeros((2, 3)), np.ones((2, 3))).batch_shape, (2, 3))
        self.assertEqual(Categorical([1.0, 2.0]).batch_shape, ())
        self.assertEqual(Categorical(np.ones((4, 3))).batch_shape, (4,))
        self.assertEqual(Categorical(np.ones((4, 3))).k, 3)
        self.assertEqual(Normal(np.zeros((2, 3)), 1.0).sample_local(np.random.default_rng()).shape, (2, 3))
        # wire form: size-1 parameters are 0-d, others keep their shape
        self.assertEqual([s for _, s in Normal([0.0, 1.0], 1.0).wire_params()], [(2,), ()])
        self.assertEqual([s for _, s in Categorical([1.0, 2.0]).wire_params()], [(2,)])
        self.assertEqual([s for _, s in Normal([5.0], [1.0]).wire_params()], [(), ()])

    def test_repr_and_params(self):
        d = Gamma(2.0, 3.0)
        self.assertEqual(float(d.concentration), 2.0)
        self.assertEqual(float(d.rate), 3.0)
        self.assertIn("Gamma(concentration=2.0, rate=3.0)", repr(d))
        with self.assertRaises(AttributeError):
            d.nonexistent


if __name__ == "__main__":
    unittest.main()
