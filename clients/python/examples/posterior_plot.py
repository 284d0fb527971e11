#!/usr/bin/python3
"""Ask a running `ppxd serve` for posterior samples and draw a pair plot.

    posterior_plot.py [--endpoint EP] MODEL X1,X2,... [-n N] [--seed S]
                      [--reference T1,T2,...] [-o posterior.png]

e.g. with a model trained on the Gaussian example and served as "gauss":

    build/ppxd train npe --sim-cmd "/usr/bin/python3 clients/python/examples/gaussian.py {endpoint}" \\
        -j 2 -n 5000 --theta mu --x obs0,obs1 -o gauss.ppxm
    build/ppxd serve --serve tcp://127.0.0.1:5560 --model gauss=gauss.ppxm &
    /usr/bin/python3 clients/python/examples/posterior_plot.py gauss 8,9 --reference 7.25
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from ppx import Client, PpxError, pair_plot  # noqa: E402


def floats(text):
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5560")
    ap.add_argument("--timeout-ms", type=int, default=30000)
    ap.add_argument("model")
    ap.add_argument("obs", type=floats, help="the observation x, comma-separated")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reference", type=floats, default=None, help="e.g. the true theta, comma-separated")
    ap.add_argument("-o", "--output", default="posterior.png")
    a = ap.parse_args(argv)
    try:
        with Client(a.endpoint, timeout_ms=a.timeout_ms) as c:
            info = c.model(a.model)
            samples = c.sample(a.model, a.obs, a.n, seed=a.seed)
    except PpxError as e:
        print("posterior_plot: %s" % e, file=sys.stderr)
        return 1
    names = info.theta_names or None
    print("%s (%s), x = %s: %d samples" % (info.name, info.kind, a.obs, len(samples)))
    for j in range(samples.shape[1]):
        col = samples[:, j]
        print("  %-12s mean %10.5g  sd %10.5g  q05 %10.5g  q95 %10.5g" % (
            names[j] if names else "theta_%d" % j, col.mean(), col.std(), *np.quantile(col, [0.05, 0.95])))
    pair_plot(samples, names=names, path=a.output, reference=a.reference,
              title="%s | x = %s (%d samples)" % (info.name, ", ".join("%g" % v for v in a.obs), len(samples)))
    print("wrote %s" % a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
