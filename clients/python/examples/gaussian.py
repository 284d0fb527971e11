#!/usr/bin/python3
"""Gaussian with unknown mean: mu ~ Normal(1, sqrt 5); obs0, obs1 ~ Normal(mu, sqrt 2).

The observations' values come from the engine (conditioning).  With
obs0 = 8, obs1 = 9 the posterior is Normal(7.25, 0.9129):

    build/ppxd infer --sim-cmd "/usr/bin/python3 clients/python/examples/gaussian.py {endpoint}" \\
        -j 2 -n 3000 --observe obs0=8 --observe obs1=9

Usage: gaussian.py ENDPOINT [MAX_RUNS] | gaussian.py --local [N [SEED]]
"""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import ppx  # noqa: E402
from ppx import Normal  # noqa: E402


def forward():
    mu = ppx.sample(Normal(1.0, math.sqrt(5.0)), name="mu")
    ppx.observe(Normal(mu, math.sqrt(2.0)), name="obs0")
    ppx.observe(Normal(mu, math.sqrt(2.0)), name="obs1")
    return mu


if __name__ == "__main__":
    sys.exit(ppx.Simulator(forward, "Gaussian with unknown mean").main())
