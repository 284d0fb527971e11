"""Plots of posteriors and of ppxd's diagnostics (matplotlib, Agg backend: no display needed).

Functions (each writes ``path`` -- PNG or SVG by its suffix -- and returns it;
with ``path=None`` it returns the matplotlib Figure instead, for further
editing or inspection):

- :func:`pair_plot` -- corner plot of posterior samples, optionally with
  reference samples and the true theta overlaid;
- :func:`sbc_plot` -- SBC rank histograms with the band a uniform histogram
  stays in with 99% probability per bin;
- :func:`coverage_plot` -- expected coverage (HPD) or TARP curve against the
  diagonal, with the KS band of the verdict;
- :func:`training_plot` -- training and validation loss per epoch from the
  MODEL.ppxm.log.csv that ``ppxd train`` writes;
- :func:`ppc_plot` -- posterior predictive distribution per x dimension with
  the observation marked.

Command line: ``python3 -m ppx.plot all DIR`` renders every plot of a
``ppxd diagnose -o DIR`` run into DIR; ``python3 -m ppx.plot --help`` lists
the single-plot commands.
"""

import json
import math
import os
import sys

import numpy as np

BLUE, RED, ORANGE, GREY = "#4c72b0", "#c44e52", "#dd8452", "#8c8c8c"


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, path, dpi):
    """Save fig to path (format from the suffix) and close it, or return it."""
    if path is None:
        return fig
    ext = os.path.splitext(str(path))[1].lower().lstrip(".")
    if ext not in ("png", "svg"):
        raise ValueError("path must end in .png or .svg, got %r" % (path,))
    fig.savefig(path, dpi=dpi, format=ext)
    _plt().close(fig)
    return path


def _as_2d(a, what):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError("%s must be a non-empty (n, d) array, got shape %s" % (what, a.shape))
    return a


# ---- pair plot ---------------------------------------------------------------------------------

def pair_plot(samples, names=None, path="posterior.png", reference=None, bins=40, max_points=5000,
              title=None, dpi=100, reference_samples=None, truth=None):
    """Corner plot of samples (n, d) (1-D: one parameter).

    The diagonal shows each parameter's histogram, the lower triangle 2-D
    histograms of each pair and the upper triangle a scatter of up to
    max_points samples.  reference_samples (m, d), e.g. a reference
    posterior, are drawn in orange: step histograms on the diagonal and a
    scatter in the upper triangle.  truth (d,) -- the true theta; reference
    is its older name -- is drawn as red lines and points.
    """
    plt = _plt()
    s = _as_2d(samples, "samples")
    n, d = s.shape
    finite = np.isfinite(s).all(axis=1)
    s = s[finite]
    if s.shape[0] == 0:
        raise ValueError("no finite samples to plot")
    if names is None:
        names = ["theta_%d" % j for j in range(d)]
    names = list(names)
    if len(names) != d:
        raise ValueError("%d names for %d parameters" % (len(names), d))
    if truth is None:
        truth = reference
    ref = None
    if truth is not None:
        ref = np.asarray(truth, dtype=np.float64).reshape(-1)
        if ref.size != d:
            raise ValueError("truth has %d values for %d parameters" % (ref.size, d))
    rs = None
    if reference_samples is not None:
        rs = _as_2d(reference_samples, "reference_samples")
        if rs.shape[1] != d:
            raise ValueError("reference_samples have %d columns for %d parameters" % (rs.shape[1], d))
        rs = rs[np.isfinite(rs).all(axis=1)]

    # Robust ranges: the central 99% widened a little, with the truth inside.
    both = s if rs is None or rs.shape[0] == 0 else np.vstack([s, rs])
    lo = np.quantile(both, 0.005, axis=0)
    hi = np.quantile(both, 0.995, axis=0)
    if ref is not None:
        lo = np.minimum(lo, ref)
        hi = np.maximum(hi, ref)
    pad = 0.05 * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad

    rng = np.random.default_rng(0)

    def thin(a):
        return a if a.shape[0] <= max_points else a[rng.choice(a.shape[0], max_points, replace=False)]

    pts = thin(s)
    rpts = thin(rs) if rs is not None and rs.shape[0] else None

    size = min(2.6 * d, 16) if d > 1 else 4.5
    fig, axes = plt.subplots(d, d, figsize=(size, size), squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:
                ax.hist(s[:, j], bins=bins, range=(lo[j], hi[j]), density=True, color=BLUE, alpha=0.85,
                        label="posterior")
                if rpts is not None:
                    ax.hist(rs[:, j], bins=bins, range=(lo[j], hi[j]), density=True, histtype="step",
                            color=ORANGE, lw=1.5, label="reference")
                if ref is not None:
                    ax.axvline(ref[j], color=RED, lw=1.5)
                ax.set_xlim(lo[j], hi[j])
                ax.set_yticks([])
            elif i > j:
                ax.hist2d(s[:, j], s[:, i], bins=bins, range=[[lo[j], hi[j]], [lo[i], hi[i]]], cmap="Blues")
                if ref is not None:
                    ax.plot(ref[j], ref[i], "o", color=RED, ms=5)
                ax.set_xlim(lo[j], hi[j])
                ax.set_ylim(lo[i], hi[i])
            else:
                ax.scatter(pts[:, j], pts[:, i], s=2, alpha=0.3, color=BLUE, rasterized=True)
                if rpts is not None:
                    ax.scatter(rpts[:, j], rpts[:, i], s=2, alpha=0.3, color=ORANGE, rasterized=True)
                if ref is not None:
                    ax.plot(ref[j], ref[i], "o", color=RED, ms=5)
                ax.set_xlim(lo[j], hi[j])
                ax.set_ylim(lo[i], hi[i])
            if i == d - 1:
                ax.set_xlabel(names[j])
            else:
                ax.set_xticklabels([])
            if j == 0 and i != 0:
                ax.set_ylabel(names[i])
            elif i != j:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=7)
    if rpts is not None:
        axes[0, 0].legend(fontsize=6, loc="upper right")
    if title is None:
        title = "%d posterior samples" % s.shape[0] + ("" if finite.all() else " (%d non-finite dropped)" % (n - s.shape[0]))
        if rpts is not None:
            title += ", %d reference (orange)" % rs.shape[0]
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, dpi)


# ---- SBC ---------------------------------------------------------------------------------------

def _binom_quantile(n, p, q):
    """Smallest k with P(Binomial(n, p) <= k) >= q (exact, from log-pmfs)."""
    k = np.arange(n + 1)
    logpmf = (math.lgamma(n + 1) - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k])
              + k * math.log(p) + (n - k) * math.log1p(-p))
    cdf = np.cumsum(np.exp(logpmf - logpmf.max()))
    cdf /= cdf[-1]
    return int(np.searchsorted(cdf, q))


def sbc_bin_counts(ranks, L, bins):
    """Counts of integer ranks 0..L in `bins` bins of consecutive values, as ppxd bins them
    (value r goes to bin r * bins // (L + 1)).  ranks (n,) or (n, d); returns (bins,) or (d, bins)."""
    r = np.asarray(ranks, dtype=np.int64)
    one = r.ndim == 1
    r = r.reshape(r.shape[0], -1)
    b = np.clip(r, 0, L) * bins // (L + 1)
    counts = np.stack([np.bincount(b[:, j], minlength=bins) for j in range(r.shape[1])])
    return counts[0] if one else counts


def sbc_plot(ranks, L, path="sbc.png", names=None, bins=None, title=None, dpi=100):
    """Rank histograms of SBC ranks (n, d) (values 0..L, as in ranks.npy of ppxd diagnose).

    Each panel shows the counts per bin and, in grey, the range a bin of a
    uniform histogram stays in with 99% probability (binomial quantiles).
    """
    plt = _plt()
    r = _as_2d(ranks, "ranks")
    n, d = r.shape
    L = int(L)
    if L < 1:
        raise ValueError("L must be >= 1")
    if bins is None:
        bins = int(max(2, min(20, L + 1, n // 10)))
    if names is None:
        names = ["theta_%d" % j for j in range(d)]
    if len(names) != d:
        raise ValueError("%d names for %d parameters" % (len(names), d))
    counts = sbc_bin_counts(r.astype(np.int64), L, bins)
    width = np.bincount(np.arange(L + 1) * bins // (L + 1), minlength=bins)
    cols = min(d, 4)
    rows = (d + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for j in range(rows * cols):
        ax = axes[j // cols, j % cols]
        if j >= d:
            ax.axis("off")
            continue
        # The band per bin (bins may hold slightly different numbers of rank values).
        for b in range(bins):
            p = width[b] / (L + 1.0)
            lo, hi = _binom_quantile(n, p, 0.005), _binom_quantile(n, p, 0.995)
            ax.fill_between([b - 0.5, b + 0.5], lo, hi, color=GREY, alpha=0.3, lw=0)
        ax.axhline(n / bins, color=GREY, lw=1)
        ax.bar(np.arange(bins), counts[j], width=0.9, color=BLUE, alpha=0.8, label="ranks")
        ax.set_xlim(-0.5, bins - 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(names[j], fontsize=9)
        ax.set_xlabel("rank bin (of %d samples)" % L, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title or "SBC ranks, %d rounds (grey: 99%% range of a uniform histogram)" % n, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, dpi)


# ---- coverage and TARP ---------------------------------------------------------------------------

def coverage_curve(u, levels):
    """Empirical coverage mean(u < level) for each level (u: per-round credibility levels)."""
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    return np.array([(u < c).mean() for c in np.asarray(levels, dtype=np.float64)])


def coverage_plot(u, path="coverage.png", kind="HPD", title=None, dpi=100, marks=(0.5, 0.9, 0.95)):
    """Expected coverage against credibility level from per-round levels u (hpd.npy or tarp.npy).

    The curve is the empirical CDF of u; a calibrated posterior follows the
    diagonal, one below it is overconfident and one above it conservative.
    The grey band is where the curve stays with 99% probability when the
    posterior is calibrated (Kolmogorov-Smirnov, as the verdict of ppxd
    diagnose).  kind is 'HPD' (expected coverage) or 'TARP'.
    """
    plt = _plt()
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    u = u[np.isfinite(u)]
    n = u.size
    if n == 0:
        raise ValueError("no finite levels to plot")
    grid = np.linspace(0, 1, 201)
    cov = coverage_curve(u, grid)
    half = 1.6276 / math.sqrt(n)  # KS 99% critical value
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.fill_between(grid, np.clip(grid - half, 0, 1), np.clip(grid + half, 0, 1), color=GREY, alpha=0.3, lw=0,
                    label="99% band (calibrated)")
    ax.plot([0, 1], [0, 1], "--", color=GREY, lw=1)
    ax.plot(grid, cov, color=BLUE if kind.upper() == "HPD" else ORANGE, lw=2, label=kind)
    for c in marks:
        ax.plot([c], [(u < c).mean()], "o", color=RED, ms=4)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credibility level")
    ax.set_ylabel("expected coverage" if kind.upper() == "HPD" else "expected coverage probability (TARP)")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper left")
    note = ("below diagonal: overconfident\nabove: conservative" if kind.upper() == "HPD" else
            "at levels > 0.5, below diagonal:\noverconfident; above: conservative")
    ax.text(0.98, 0.03, note, ha="right", va="bottom", fontsize=7, transform=ax.transAxes, color="#555555")
    ax.set_title(title or "%s coverage, %d rounds" % (kind, n), fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, dpi)


def tarp_plot(u, path="tarp.png", title=None, dpi=100):
    """TARP expected coverage probability from tarp.npy (see coverage_plot)."""
    return coverage_plot(u, path=path, kind="TARP", title=title, dpi=dpi)


# ---- training curves -----------------------------------------------------------------------------

def read_training_log(path):
    """The columns of a MODEL.ppxm.log.csv (epoch,train_loss,val_loss,seconds) as a dict of arrays."""
    with open(path) as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    want = ["epoch", "train_loss", "val_loss", "seconds"]
    if header[:4] != want:
        raise ValueError("%s: not a ppxd training log (header %s)" % (path, ",".join(header)))
    data = np.array([[float(v) for v in r[:4]] for r in rows], dtype=np.float64).reshape(-1, 4)
    return {k: data[:, i] for i, k in enumerate(want)}


def training_plot(log, path="training.png", title=None, dpi=100):
    """Training and validation loss per epoch; log is a path to MODEL.ppxm.log.csv or its dict."""
    plt = _plt()
    if isinstance(log, (str, os.PathLike)):
        name = os.path.basename(str(log))
        log = read_training_log(log)
    else:
        name = "training"
    ep, tr, va = log["epoch"], log["train_loss"], log["val_loss"]
    if ep.size == 0:
        raise ValueError("the training log has no epochs")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(ep, tr, color=BLUE, lw=1.5, label="training")
    ax.plot(ep, va, color=ORANGE, lw=1.5, label="validation")
    fin = np.isfinite(va)
    if fin.any():
        b = int(np.argmin(np.where(fin, va, np.inf)))
        ax.plot([ep[b]], [va[b]], "o", color=RED, ms=5, label="best (kept), epoch %d" % ep[b])
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    secs = log.get("seconds")
    extra = ", %.1f s" % secs[-1] if secs is not None and secs.size else ""
    ax.set_title(title or "%s: %d epochs%s" % (name, ep.size, extra), fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, dpi)


# ---- posterior predictive check --------------------------------------------------------------------

def ppc_plot(x_pred, x_o, path="ppc.png", names=None, bins=40, title=None, dpi=100):
    """Histogram of the posterior predictive simulations x_pred (m, c) per x dimension, x_o (c,) marked."""
    plt = _plt()
    xp = _as_2d(x_pred, "x_pred")
    xp = xp[np.isfinite(xp).all(axis=1)]
    if xp.shape[0] == 0:
        raise ValueError("no finite predictive simulations")
    c = xp.shape[1]
    xo = np.asarray(x_o, dtype=np.float64).reshape(-1)
    if xo.size != c:
        raise ValueError("x_o has %d values for %d x dimensions" % (xo.size, c))
    if names is None:
        names = ["x_%d" % j for j in range(c)]
    if len(names) != c:
        raise ValueError("%d names for %d x dimensions" % (len(names), c))
    cols = min(c, 4)
    rows = (c + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for j in range(rows * cols):
        ax = axes[j // cols, j % cols]
        if j >= c:
            ax.axis("off")
            continue
        v = xp[:, j]
        lo, hi = min(v.min(), xo[j]), max(v.max(), xo[j])  # every simulation drawn
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        ax.hist(v, bins=bins, range=(lo - pad, hi + pad), color=BLUE, alpha=0.85)
        ax.axvline(xo[j], color=RED, lw=2)
        below = (v < xo[j]).mean()
        ax.set_title("%s: x_o at quantile %.3f" % (names[j], below), fontsize=9)
        ax.set_yticks([])
        ax.tick_params(labelsize=7)
    fig.suptitle(title or "posterior predictive, %d simulations (red: x_o)" % xp.shape[0], fontsize=10)
    fig.tight_layout()
    return _finish(fig, path, dpi)


# ---- a whole diagnose directory ------------------------------------------------------------------------

def plot_diagnose_dir(d, fmt="png", out=None, log=None):
    """Render every plot a `ppxd diagnose -o d` run has data for; returns the paths written."""
    out = out or d
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(d, "report.json")) as f:
        rep = json.load(f)
    names = rep["model"]["theta_names"]
    xnames = rep["model"]["x_names"]
    written = []

    def p(name):
        return os.path.join(out, "%s.%s" % (name, fmt))

    if rep.get("sbc") and os.path.exists(os.path.join(d, "ranks.npy")):
        written.append(sbc_plot(np.load(os.path.join(d, "ranks.npy")), rep["sbc"]["L"], p("sbc"), names=names,
                                bins=rep["sbc"]["bins"]))
    if rep.get("coverage") and rep["coverage"]["verdict"] != "skipped" and os.path.exists(os.path.join(d, "hpd.npy")):
        written.append(coverage_plot(np.load(os.path.join(d, "hpd.npy")), p("coverage"), kind="HPD",
                                     title="expected coverage: %s" % rep["coverage"]["verdict"]))
    if rep.get("tarp") and os.path.exists(os.path.join(d, "tarp.npy")):
        written.append(tarp_plot(np.load(os.path.join(d, "tarp.npy")), p("tarp"),
                                 title="TARP: %s" % rep["tarp"]["verdict"]))
    if rep.get("ppc") and os.path.exists(os.path.join(d, "ppc_x.npy")):
        xo = [dim["x_o"] for dim in rep["ppc"]["dims"]]
        written.append(ppc_plot(np.load(os.path.join(d, "ppc_x.npy")), xo, p("ppc"), names=xnames))
    if os.path.exists(os.path.join(d, "ppc_theta.npy")):
        ref = os.path.join(d, "reference.npy")
        truth = os.path.join(d, "truth.npy")
        written.append(pair_plot(np.load(os.path.join(d, "ppc_theta.npy")), names=names, path=p("posterior"),
                                 reference_samples=np.load(ref) if os.path.exists(ref) else None,
                                 truth=np.load(truth).reshape(-1) if os.path.exists(truth) else None))
    if log is None:
        cand = rep["model"]["path"] + ".log.csv"
        log = cand if os.path.exists(cand) else None
    if log:
        written.append(training_plot(log, p("training")))
    return written


def load_table(path):
    """An (n, d) array from .npy or .csv (an optional header line, as sbibm's files)."""
    if str(path).endswith(".csv"):
        with open(path) as f:
            first = f.readline()
        try:
            [float(v) for v in first.split(",")]
            skip = 0
        except ValueError:
            skip = 1
        return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    return np.load(path)


def _values(s):
    return [float(v) for v in s.split(",")] if s else None


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m ppx.plot", description="Plots of ppxd's outputs (PNG or SVG by suffix).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all", help="every plot of a `ppxd diagnose -o DIR` run, into DIR")
    a.add_argument("dir")
    a.add_argument("--format", choices=["png", "svg"], default="png")
    a.add_argument("--out", help="output directory (default DIR)")
    a.add_argument("--log", help="training log (default MODEL.ppxm.log.csv next to the model, if present)")
    a = sub.add_parser("pair", help="corner plot of posterior samples")
    a.add_argument("samples", help="samples .npy or .csv (n, d)")
    a.add_argument("-o", "--output", default="posterior.png")
    a.add_argument("--reference-samples", help="reference posterior samples .npy or .csv (m, d)")
    a.add_argument("--truth", help="true theta V,V,... or a .csv/.npy file")
    a.add_argument("--names", help="parameter names A,B,...")
    a = sub.add_parser("sbc", help="SBC rank histograms from ranks.npy")
    a.add_argument("ranks")
    a.add_argument("-L", type=int, required=True, help="posterior samples per round")
    a.add_argument("--bins", type=int)
    a.add_argument("-o", "--output", default="sbc.png")
    for k in ("coverage", "tarp"):
        a = sub.add_parser(k, help="%s curve from %s.npy" % (k, "hpd" if k == "coverage" else "tarp"))
        a.add_argument("levels")
        a.add_argument("-o", "--output", default=k + ".png")
    a = sub.add_parser("training", help="training curves from MODEL.ppxm.log.csv")
    a.add_argument("log")
    a.add_argument("-o", "--output", default="training.png")
    a = sub.add_parser("ppc", help="posterior predictive check from ppc_x.npy")
    a.add_argument("x_pred")
    a.add_argument("--x-o", required=True, help="the observation V,V,...")
    a.add_argument("-o", "--output", default="ppc.png")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "all":
            paths = plot_diagnose_dir(args.dir, args.format, args.out, args.log)
        elif args.cmd == "pair":
            ref = load_table(args.reference_samples) if args.reference_samples else None
            names = args.names.split(",") if args.names else None
            truth = args.truth
            truth = load_table(truth).reshape(-1) if truth and truth.endswith((".csv", ".npy")) else _values(truth)
            paths = [pair_plot(load_table(args.samples), names=names, path=args.output, reference_samples=ref,
                               truth=truth)]
        elif args.cmd == "sbc":
            paths = [sbc_plot(np.load(args.ranks), args.L, args.output, bins=args.bins)]
        elif args.cmd in ("coverage", "tarp"):
            paths = [coverage_plot(np.load(args.levels), args.output, kind="HPD" if args.cmd == "coverage" else "TARP")]
        elif args.cmd == "training":
            paths = [training_plot(args.log, args.output)]
        else:
            paths = [ppc_plot(np.load(args.x_pred), _values(args.x_o), args.output)]
    except (OSError, ValueError, KeyError) as e:
        print("ppx.plot: %s" % e, file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
