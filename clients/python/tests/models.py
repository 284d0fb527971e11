"""Simulators used by the tests, run as subprocesses:
    python3 -m tests.models NAME ENDPOINT [MAX_RUNS]   |   NAME --local [N [SEED]]
Line numbers of the statements matter to test_sim's address checks: they are
looked up from this file's source by marker comments, not hard-coded."""
import math
import sys

import numpy as np

import ppx
from ppx import (Bernoulli, Beta, Binomial, Categorical, Exponential, Gamma, LogNormal, Normal,
                 Poisson, Uniform, Weibull)

# One scalar of each distribution, named after it (wire-tag order).
ALL_DISTS = [
    ("normal", Normal(1.0, 2.0)),
    ("uniform", Uniform(-1.0, 3.0)),
    ("categorical", Categorical([1.0, 2.0, 3.0, 4.0])),
    ("poisson", Poisson(3.5)),
    ("bernoulli", Bernoulli(0.3)),
    ("beta", Beta(2.0, 5.0)),
    ("exponential", Exponential(1.5)),
    ("gamma", Gamma(2.0, 3.0)),
    ("lognormal", LogNormal(0.5, 0.25)),
    ("binomial", Binomial(10.0, 0.4)),
    ("weibull", Weibull(2.0, 1.5)),
]


def gaussian():
    mu = ppx.sample(Normal(1.0, math.sqrt(5.0)), name="mu")  # @mu
    ppx.observe(Normal(mu, math.sqrt(2.0)), name="obs0")  # @obs0
    ppx.observe(Normal(mu, math.sqrt(2.0)), name="obs1")  # @obs1
    return mu


def all_dists():
    return [ppx.sample(d, name=n, address=n) for n, d in ALL_DISTS]


def statements():
    """Every kind of statement and tensor shape."""
    a = ppx.sample(Normal([0.0, 1.0, 2.0], 1.0), name="vec")  # @vec
    c = ppx.sample(Categorical([[1.0, 1.0], [1.0, 3.0]]), name="cat2")  # @cat2
    u = ppx.sample(Uniform(0.0, 1.0), name="prior_only", control=False)  # @prior_only
    ppx.observe(Normal(0.0, 1.0), value=0.5, name="obs_scalar")  # @obs_scalar
    ppx.observe(Poisson([1.0, 2.0]), value=[3, 4], name="obs_vec")  # @obs_vec
    ppx.tag(7.0, name="t_scalar")  # @t_scalar
    ppx.tag(np.arange(6.0).reshape(2, 3), address="explicit", name="t_mat")
    return np.concatenate([np.asarray(a).ravel(), np.asarray(c).ravel(), [u]])


def loop():
    """A variable number of draws at one address (rejection loop)."""
    n = 0
    while True:
        x = ppx.sample(Uniform(0.0, 1.0), name="u")  # @loop_u
        n += 1
        if x < 0.5 or n >= 3:
            break
    return float(n)


def raises():
    ppx.sample(Normal(0.0, 1.0), name="before")
    raise RuntimeError("model bug")


def matrix_result():
    ppx.sample(Normal(0.0, 1.0), name="x")
    return np.ones((2, 3))


def no_result():
    ppx.sample(Normal(0.0, 1.0), name="x")


class Subclassed(ppx.Model):
    def forward(self):
        return self.sample(Exponential(2.0), name="e") + 1.0  # @subclassed


MODELS = {
    "gaussian": gaussian, "all_dists": all_dists, "statements": statements, "loop": loop,
    "raises": raises, "matrix_result": matrix_result, "no_result": no_result,
}


def line_of(marker):
    """Line number of the statement tagged '# @marker' in this file."""
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if line.rstrip().endswith("# @" + marker):
                return i
    raise KeyError(marker)


def make(name):
    if name == "subclassed":
        return Subclassed(model_name="subclassed")
    return ppx.Simulator(MODELS[name], name)


if __name__ == "__main__":
    sys.exit(make(sys.argv[1]).main([sys.argv[0]] + sys.argv[2:]))
