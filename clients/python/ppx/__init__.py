"""ppx: Python client of ppxd.

- Simulator side of the PPX protocol (like libppx, clients/c/ppx_sim.h):
  :class:`Simulator` / :class:`Model`, and inside forward() the statements
  :func:`sample`, :func:`observe`, :func:`tag` with the 11 distributions.
- Query client of ppxd's posterior server (protocol/serve.fbs): :class:`Client`, which
  also submits and follows jobs of ``ppxd daemon`` (submit, jobs, wait, fetch, sims).
- Plots (matplotlib): :func:`pair_plot` for posterior samples, and
  :func:`sbc_plot`, :func:`coverage_plot`, :func:`tarp_plot`,
  :func:`training_plot`, :func:`ppc_plot` for ppxd's diagnostics
  (``python3 -m ppx.plot all DIR`` after ``ppxd diagnose -o DIR``).
- Codecs: :mod:`ppx.wire` (PPX messages), :mod:`ppx.serve_wire` (queries).

Pure Python on pyzmq, flatbuffers and numpy.
"""

from .dists import (Bernoulli, Beta, Binomial, Categorical, Distribution, Exponential, Gamma,
                    LogNormal, Normal, Poisson, Uniform, Weibull)
from .errors import DecodeError, PpxError, PpxTimeout
from .sim import Model, Simulator, declare_theta, here, observe, sample, seed, tag
from .wire import Tangent

__version__ = "0.1.0"


_PLOTS = ("pair_plot", "sbc_plot", "coverage_plot", "tarp_plot", "training_plot", "ppc_plot")


def __getattr__(name):
    # Lazy: the query client and plotting are not needed by simulators.
    if name in ("Client", "ErrorCode", "JobState", "JobFailed"):
        from . import query
        return getattr(query, name)
    if name in _PLOTS:
        from . import plot
        return getattr(plot, name)
    raise AttributeError("module 'ppx' has no attribute %r" % name)


__all__ = [
    "Bernoulli", "Beta", "Binomial", "Categorical", "Distribution", "Exponential", "Gamma",
    "LogNormal", "Normal", "Poisson", "Uniform", "Weibull",
    "DecodeError", "PpxError", "PpxTimeout",
    "Model", "Simulator", "Tangent", "declare_theta", "here", "observe", "sample", "seed", "tag",
    "Client", "ErrorCode", "JobState", "JobFailed", "pair_plot", "sbc_plot", "coverage_plot", "tarp_plot", "training_plot", "ppc_plot",
]
