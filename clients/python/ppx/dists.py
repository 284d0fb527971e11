"""The 11 PPX distributions, with PyTorch parameterisations as on the wire:

    Normal(mean, stddev)          Uniform(low, high)         Categorical(probs)
    Poisson(rate)                 Bernoulli(probs)           Beta(concentration1, concentration0)
    Exponential(rate)             Gamma(concentration, rate) LogNormal(loc, scale)
    Binomial(total_count, probs)  Weibull(scale, concentration)

Parameters are numbers or arrays.  A distribution describes `n` independent
elements: two-parameter kinds take parameters of equal size or of size 1
(broadcast); Categorical takes probs of shape (k,) or (..., k), one row of k
(possibly unnormalised) weights per element, and its value is a category
index.  ``batch_shape`` is the shape of one draw: () for scalars.

Parameters are validated at construction, with the rules of ppxd's
dist_validate (finite values; scales, rates and concentrations > 0, Poisson
rate >= 0; low < high; probs in [0, 1]; Categorical weights >= 0 with a
positive finite sum per row; Binomial total_count a non-negative integer);
a ValueError names the parameter, element and value.  Distributions decoded
from the wire skip validation (see ``Distribution.from_wire``).

``sample_local(rng)`` draws with a numpy Generator (the simulator's fallback
when no engine is connected).  Discrete values are returned as doubles, as
they travel on the wire.
"""

import math

import numpy as np

NORMAL, UNIFORM, CATEGORICAL, POISSON, BERNOULLI, BETA, EXPONENTIAL, GAMMA, LOGNORMAL, BINOMIAL, WEIBULL = range(1, 12)


class Distribution:
    """Base class.  Subclasses set `tag` (the wire union tag) and `params`
    (the parameter names in wire slot order)."""

    tag = 0
    params = ()
    discrete = False

    def __init__(self, *values, validate=True):
        if len(values) != len(self.params):
            raise TypeError("%s takes %d parameters (%s), got %d" % (
                type(self).__name__, len(self.params), ", ".join(self.params), len(values)))
        arrs = []
        for pname, v in zip(self.params, values):
            try:
                a = np.array(v, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise ValueError("%s: parameter %s is not numeric: %s" % (type(self).__name__, pname, e)) from None
            arrs.append(a)
        self.values = arrs
        self.batch_shape = self._batch_shape(validate)
        if validate:
            self.validate()

    @property
    def name(self):
        return type(self).__name__

    @property
    def n(self):
        """Number of elements (values per draw)."""
        return int(np.prod(self.batch_shape, dtype=np.int64))

    def _batch_shape(self, strict):
        sizes = [a.size for a in self.values]
        if any(s == 0 for s in sizes):
            if strict:
                raise ValueError("%s: empty parameter" % self.name)
            return (0,)
        big = max(self.values, key=lambda a: a.size)
        for pname, a in zip(self.params, self.values):
            if a.size not in (1, big.size) or (a.size == big.size and a.size > 1 and a.shape != big.shape):
                if strict:
                    raise ValueError("%s: parameter %s of shape %s does not match shape %s"
                                     % (self.name, pname, a.shape, big.shape))
        return big.shape if big.size > 1 else ()

    def __getattr__(self, attr):
        # Parameter access by name: Normal(0, 1).stddev
        params = type(self).params
        if attr in params:
            return self.values[params.index(attr)]
        raise AttributeError(attr)

    def __repr__(self):
        def fmt(a):
            return repr(float(a)) if a.ndim == 0 else np.array2string(a, threshold=8)
        return "%s(%s)" % (self.name, ", ".join("%s=%s" % (p, fmt(a)) for p, a in zip(self.params, self.values)))

    def _fail(self, pname, a, i, why):
        v = a.reshape(-1)[i]
        where = "" if a.size == 1 else "[%d]" % i
        raise ValueError("%s: %s%s = %r %s" % (self.name, pname, where, float(v), why))

    def _check(self, pname, a, ok, why):
        flat = a.reshape(-1)
        bad = ~np.isfinite(flat)
        if bad.any():
            self._fail(pname, a, int(np.argmax(bad)), "is not finite")
        bad = ~ok(flat)
        if bad.any():
            self._fail(pname, a, int(np.argmax(bad)), why)

    def validate(self):
        """Raise ValueError when a parameter is outside its domain."""
        for pname, a in zip(self.params, self.values):
            self._check(pname, a, lambda x: np.ones(x.shape, bool), "")

    def wire_params(self):
        """The parameters as (data, shape) pairs in slot order: a size-1
        parameter travels as a 0-d tensor, others with their shape."""
        out = []
        for a in self.values:
            if a.size == 1 and not isinstance(self, Categorical):
                out.append((a.reshape(-1), ()))
            else:
                out.append((a.reshape(-1), a.shape))
        return out

    def _bcast(self, i):
        a = self.values[i]
        return a.reshape(()) if a.size == 1 else a.reshape(self.batch_shape)

    def sample_local(self, rng):
        """One draw (float for scalar distributions, else an array of
        batch_shape) from numpy Generator `rng`."""
        x = np.asarray(self._draw(rng, self.batch_shape or None), dtype=np.float64).reshape(self.batch_shape)
        return float(x) if self.batch_shape == () else x

    def _draw(self, rng, size):
        raise NotImplementedError

    @staticmethod
    def from_wire(tag, params):
        """A distribution from its wire tag and [(data, shape), ...] without
        validating values (a ValueError only for an unknown tag or missing
        parameters)."""
        cls = BY_TAG.get(tag)
        if cls is None:
            raise ValueError("unknown distribution tag %d" % tag)
        vals = []
        for i in range(len(cls.params)):
            if i >= len(params) or params[i] is None:
                raise ValueError("%s without parameter %s" % (cls.__name__, cls.params[i]))
            data, shape = params[i]
            data = np.asarray(data, dtype=np.float64)
            if tuple(shape) == () and data.size == 1:
                vals.append(data.reshape(()))
            elif int(np.prod(shape, dtype=np.int64)) == data.size:
                vals.append(data.reshape(tuple(shape)))
            else:
                vals.append(data)
        d = cls.__new__(cls)
        d.values = vals
        d.batch_shape = d._batch_shape(False)
        return d


class Normal(Distribution):
    tag, params = NORMAL, ("mean", "stddev")

    def validate(self):
        self._check("mean", self.values[0], lambda x: np.ones(x.shape, bool), "")
        self._check("stddev", self.values[1], lambda x: x > 0, "must be > 0")

    def _draw(self, rng, size):
        return rng.normal(self._bcast(0), self._bcast(1), size)


class Uniform(Distribution):
    tag, params = UNIFORM, ("low", "high")

    def validate(self):
        lo, hi = self.values
        self._check("low", lo, lambda x: np.ones(x.shape, bool), "")
        self._check("high", hi, lambda x: np.ones(x.shape, bool), "")
        bad = ~(np.broadcast_to(self._bcast(0), self.batch_shape) < np.broadcast_to(self._bcast(1), self.batch_shape))
        if np.any(bad):
            i = int(np.argmax(bad.reshape(-1)))
            self._fail("low", np.broadcast_to(self._bcast(0), self.batch_shape), i, "is not < high")

    def _draw(self, rng, size):
        return rng.uniform(self._bcast(0), self._bcast(1), size)


class Categorical(Distribution):
    """Categorical(probs): probs (k,) or (..., k) non-negative weights, not
    necessarily normalised; the value is an index 0..k-1."""
    tag, params = CATEGORICAL, ("probs",)
    discrete = True

    def _batch_shape(self, strict):
        p = self.values[0]
        if p.ndim == 0:
            p = self.values[0] = p.reshape(1)
        if p.size == 0:
            if strict:
                raise ValueError("Categorical: empty probs")
            return (0,)
        return p.shape[:-1]

    @property
    def k(self):
        return self.values[0].shape[-1]

    def validate(self):
        p = self.values[0]
        self._check("probs", p, lambda x: x >= 0, "must be >= 0")
        rows = p.reshape(-1, self.k).sum(axis=1)
        bad = ~(np.isfinite(rows) & (rows > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError("Categorical: probs row %d sums to %r (must be positive and finite)" % (i, float(rows[i])))

    def _draw(self, rng, size):
        p = self.values[0].reshape(-1, self.k)
        cdf = np.cumsum(p, axis=1)
        u = rng.random(p.shape[0]) * cdf[:, -1]
        idx = (cdf <= u[:, None]).sum(axis=1)
        # u < total, so idx <= k-1 except for rounding at the very top
        return np.minimum(idx, self.k - 1).astype(np.float64)


class Poisson(Distribution):
    tag, params = POISSON, ("rate",)
    discrete = True

    def validate(self):
        self._check("rate", self.values[0], lambda x: x >= 0, "must be >= 0")

    def _draw(self, rng, size):
        return rng.poisson(self._bcast(0), size)


class Bernoulli(Distribution):
    tag, params = BERNOULLI, ("probs",)
    discrete = True

    def validate(self):
        self._check("probs", self.values[0], lambda x: (x >= 0) & (x <= 1), "must be in [0, 1]")

    def _draw(self, rng, size):
        return (rng.random(size) < self._bcast(0)).astype(np.float64)


class Beta(Distribution):
    """Beta(concentration1 = alpha, concentration0 = beta)."""
    tag, params = BETA, ("concentration1", "concentration0")

    def validate(self):
        for i, pn in enumerate(self.params):
            self._check(pn, self.values[i], lambda x: x > 0, "must be > 0")

    def _draw(self, rng, size):
        return rng.beta(self._bcast(0), self._bcast(1), size)


class Exponential(Distribution):
    tag, params = EXPONENTIAL, ("rate",)

    def validate(self):
        self._check("rate", self.values[0], lambda x: x > 0, "must be > 0")

    def _draw(self, rng, size):
        return rng.exponential(1.0 / self._bcast(0), size)


class Gamma(Distribution):
    """Gamma(concentration, rate): mean concentration / rate."""
    tag, params = GAMMA, ("concentration", "rate")

    def validate(self):
        for i, pn in enumerate(self.params):
            self._check(pn, self.values[i], lambda x: x > 0, "must be > 0")

    def _draw(self, rng, size):
        return rng.gamma(self._bcast(0), 1.0 / self._bcast(1), size)


class LogNormal(Distribution):
    tag, params = LOGNORMAL, ("loc", "scale")

    def validate(self):
        self._check("loc", self.values[0], lambda x: np.ones(x.shape, bool), "")
        self._check("scale", self.values[1], lambda x: x > 0, "must be > 0")

    def _draw(self, rng, size):
        return rng.lognormal(self._bcast(0), self._bcast(1), size)


class Binomial(Distribution):
    tag, params = BINOMIAL, ("total_count", "probs")
    discrete = True

    def validate(self):
        self._check("total_count", self.values[0], lambda x: (x >= 0) & (x == np.floor(x)),
                    "must be a non-negative integer")
        self._check("probs", self.values[1], lambda x: (x >= 0) & (x <= 1), "must be in [0, 1]")

    def _draw(self, rng, size):
        return rng.binomial(self._bcast(0).astype(np.int64), self._bcast(1), size)


class Weibull(Distribution):
    """Weibull(scale, concentration): PyTorch's parameterisation."""
    tag, params = WEIBULL, ("scale", "concentration")

    def validate(self):
        for i, pn in enumerate(self.params):
            self._check(pn, self.values[i], lambda x: x > 0, "must be > 0")

    def _draw(self, rng, size):
        return self._bcast(0) * rng.weibull(self._bcast(1), size)


ALL = (Normal, Uniform, Categorical, Poisson, Bernoulli, Beta, Exponential, Gamma, LogNormal, Binomial, Weibull)
BY_TAG = {c.tag: c for c in ALL}


def mean_var(d):
    """Exact mean and variance of a scalar distribution (for tests)."""
    v = [float(a.reshape(-1)[0]) for a in d.values]
    if isinstance(d, Normal):
        return v[0], v[1] ** 2
    if isinstance(d, Uniform):
        return (v[0] + v[1]) / 2, (v[1] - v[0]) ** 2 / 12
    if isinstance(d, Categorical):
        p = d.values[0].reshape(-1) / d.values[0].sum()
        i = np.arange(p.size)
        m = float((p * i).sum())
        return m, float((p * i * i).sum()) - m * m
    if isinstance(d, Poisson):
        return v[0], v[0]
    if isinstance(d, Bernoulli):
        return v[0], v[0] * (1 - v[0])
    if isinstance(d, Beta):
        a, b = v
        return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    if isinstance(d, Exponential):
        return 1 / v[0], 1 / v[0] ** 2
    if isinstance(d, Gamma):
        return v[0] / v[1], v[0] / v[1] ** 2
    if isinstance(d, LogNormal):
        mu, s = v
        return math.exp(mu + s * s / 2), (math.exp(s * s) - 1) * math.exp(2 * mu + s * s)
    if isinstance(d, Binomial):
        return v[0] * v[1], v[0] * v[1] * (1 - v[1])
    if isinstance(d, Weibull):
        lam, k = v
        g1 = math.gamma(1 + 1 / k)
        g2 = math.gamma(1 + 2 / k)
        return lam * g1, lam * lam * (g2 - g1 * g1)
    raise TypeError(d)
