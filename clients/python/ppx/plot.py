"""Pair plot of posterior samples (matplotlib, Agg backend: no display needed)."""

import numpy as np


def pair_plot(samples, names=None, path="posterior.png", reference=None, bins=40, max_points=5000,
              title=None, dpi=100):
    """Write a pair plot of samples (n, d) (1-D: one parameter) to path (PNG).

    The diagonal shows each parameter's histogram, the lower triangle 2-D
    histograms of each pair and the upper triangle a scatter of up to
    max_points samples.  reference (d,) -- e.g. the true theta -- is drawn as
    red lines and points.  Returns path.
    """
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    s = np.asarray(samples, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError("samples must be a non-empty (n, d) array, got shape %s" % (s.shape,))
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
    ref = None
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64).reshape(-1)
        if ref.size != d:
            raise ValueError("reference has %d values for %d parameters" % (ref.size, d))

    # Robust ranges: the central 99% widened a little, and the reference inside.
    lo = np.quantile(s, 0.005, axis=0)
    hi = np.quantile(s, 0.995, axis=0)
    if ref is not None:
        lo = np.minimum(lo, ref)
        hi = np.maximum(hi, ref)
    pad = 0.05 * np.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - pad, hi + pad

    rng = np.random.default_rng(0)
    pts = s if s.shape[0] <= max_points else s[rng.choice(s.shape[0], max_points, replace=False)]

    size = min(2.6 * d, 16) if d > 1 else 4.5
    fig, axes = plt.subplots(d, d, figsize=(size, size), squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if i == j:
                ax.hist(s[:, j], bins=bins, range=(lo[j], hi[j]), density=True, color="#4c72b0", alpha=0.85)
                if ref is not None:
                    ax.axvline(ref[j], color="#c44e52", lw=1.5)
                ax.set_xlim(lo[j], hi[j])
                ax.set_yticks([])
            elif i > j:
                ax.hist2d(s[:, j], s[:, i], bins=bins, range=[[lo[j], hi[j]], [lo[i], hi[i]]], cmap="Blues")
                if ref is not None:
                    ax.plot(ref[j], ref[i], "o", color="#c44e52", ms=5)
                ax.set_xlim(lo[j], hi[j])
                ax.set_ylim(lo[i], hi[i])
            else:
                ax.scatter(pts[:, j], pts[:, i], s=2, alpha=0.3, color="#4c72b0", rasterized=True)
                if ref is not None:
                    ax.plot(ref[j], ref[i], "o", color="#c44e52", ms=5)
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
    if title is None:
        title = "%d posterior samples" % s.shape[0] + ("" if finite.all() else " (%d non-finite dropped)" % (n - s.shape[0]))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return path
