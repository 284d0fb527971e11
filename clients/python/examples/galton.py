#!/usr/bin/python3
"""Generalized Galton board (../shared/spec/goldmining.md) sending parameter
tangents, so that ``ppxd mine`` computes the joint score analytically.

20 rows, 31 nails, the ball starts at pos 15; theta ~ Uniform(-1, 1) named
"theta".  On row `level`, P(left) = (1 - sin(pi l))/2 + sin(pi l) sigmoid(10 theta n)
with l = level/19, n = 2 pos/30 - 1; each decision is a Bernoulli draw
(left = 1) whose tangent is d P(left) / d theta = sin(pi l) s (1 - s) 10 n
(s the sigmoid; pos, i.e. the earlier draws, held fixed).  Even rows:
left -> pos, right -> pos + 1; odd rows: left -> pos - 1, right -> pos.
x = the final pos, tagged "x" and returned.  The same board as the C example
clients/examples/galton.c, whose traces it reproduces draw for draw.

    build/ppxd mine --sim-cmd "/usr/bin/python3 clients/python/examples/galton.py {endpoint}" -j 2 \\
        --theta theta --x x -n 2000 --theta0 -0.8 --theta1 -0.6 --score analytic -o galton.ppxg

Usage: galton.py ENDPOINT [MAX_RUNS] | galton.py --local [N [SEED]]
"""
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import ppx  # noqa: E402
from ppx import Bernoulli, Uniform  # noqa: E402

ROWS = 20


def p_left(theta, level, pos):
    """P(left) on row `level` at `pos` and its derivative in theta."""
    a = math.sin(math.pi * level / 19.0)
    n = 2.0 * pos / 30.0 - 1.0
    s = 1.0 / (1.0 + math.exp(-10.0 * theta * n))
    p = (1.0 - a) / 2.0 + a * s
    return min(max(p, 0.0), 1.0), a * s * (1.0 - s) * 10.0 * n


def forward():
    theta = ppx.sample(Uniform(-1.0, 1.0), address="theta", name="theta")
    pos = 15
    for level in range(ROWS):
        p, dp = p_left(theta, level, pos)
        left = ppx.sample(Bernoulli(p), address="galton_row", tangent=dp)
        if level % 2 == 0:
            pos = pos if left == 1.0 else pos + 1
        else:
            pos = pos - 1 if left == 1.0 else pos
    x = float(pos)
    ppx.tag(x, address="x", name="x")
    return x


def simulator():
    sim = ppx.Simulator(forward, "Generalized Galton board (tangents)")
    # theta is the parameter of interest: its own draw has no tangent (ppxd
    # answers it); every other draw sends d P(left) / d theta.
    sim.declare_theta(["theta"])
    return sim


if __name__ == "__main__":
    sys.exit(simulator().main())
