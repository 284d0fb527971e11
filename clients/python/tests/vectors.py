"""Cross-codec vectors between this package and ppxd's C codec (protocol/ppx.h).

    python3 -m tests.vectors OUT     writes "NAME HEX" lines of messages
                                     encoded here; tests/test_python.c decodes
                                     them with ppx_decode and checks each field.
The C test also encodes messages with ppx_encode into a file and runs
test_wire.CVectors with PPX_C_VECTORS=FILE, which checks them against
C_EXPECTED below.  Keep both sides in step with tests/test_python.c."""
import sys

import numpy as np

from ppx import wire
from ppx.dists import (Bernoulli, Beta, Binomial, Categorical, Exponential, Gamma, LogNormal,
                       Normal, Poisson, Uniform, Weibull)
from ppx.wire import Message

# (name, distribution) with scalar parameters, in wire-tag order; the C test
# has the same table (dist_params in tests/test_python.c).
DISTS = [
    ("Normal", Normal(1.0, 2.0)),
    ("Uniform", Uniform(-1.0, 3.0)),
    ("Categorical", Categorical([1.0, 2.0, 3.0, 4.0])),
    ("Poisson", Poisson(3.5)),
    ("Bernoulli", Bernoulli(0.3)),
    ("Beta", Beta(2.0, 5.0)),
    ("Exponential", Exponential(1.5)),
    ("Gamma", Gamma(2.0, 3.0)),
    ("LogNormal", LogNormal(0.5, 0.25)),
    ("Binomial", Binomial(10.0, 0.4)),
    ("Weibull", Weibull(2.0, 1.5)),
]


def py_vectors():
    v = [
        ("handshake", Message(wire.HANDSHAKE, system_name="ppxd-test")),
        ("handshake_result", Message(wire.HANDSHAKE_RESULT, system_name="ppx-python",
                                     model_name="model \u00e9")),
        ("run", Message(wire.RUN)),
        ("run_result_scalar", Message(wire.RUN_RESULT, value=2.5)),
        ("run_result_absent", Message(wire.RUN_RESULT, value=None)),
        ("run_result_matrix", Message(wire.RUN_RESULT, value=np.arange(6.0).reshape(2, 3))),
    ]
    for n, d in DISTS:
        v.append(("sample_" + n, Message(wire.SAMPLE, address="addr_" + n, name=n, dist=d)))
    v += [
        ("sample_control_false", Message(wire.SAMPLE, address="a.py:3:f", name="", dist=Normal(0.0, 1.0),
                                         control=False)),
        ("sample_vec", Message(wire.SAMPLE, address="vec", name="vec", dist=Normal([0.0, 1.0, 2.0], 1.0))),
        ("sample_cat2", Message(wire.SAMPLE, address="cat2", name="cat2",
                                dist=Categorical([[1.0, 1.0], [1.0, 3.0]]))),
        ("sample_result", Message(wire.SAMPLE_RESULT, value=7.5)),
        ("observe_novalue", Message(wire.OBSERVE, address="o", name="obs0", dist=Normal(0.0, 1.0))),
        ("observe_value", Message(wire.OBSERVE, address="o2", name="obs1", dist=Poisson([1.0, 2.0]),
                                  value=[3.0, 4.0])),
        ("observe_result", Message(wire.OBSERVE_RESULT)),
        ("tag", Message(wire.TAG, address="t", name="tag", value=np.arange(6.0).reshape(2, 3))),
        ("tag_result", Message(wire.TAG_RESULT)),
        ("reset", Message(wire.RESET)),
    ]
    return v


# What the C test encodes (see c_vectors in tests/test_python.c): name ->
# (type, fields).  Tensor values are (data, shape).
C_EXPECTED = {
    "handshake": (wire.HANDSHAKE, dict(system_name="ppxd")),
    "handshake_result": (wire.HANDSHAKE_RESULT, dict(system_name="libppx", model_name="Gaussian")),
    "run": (wire.RUN, {}),
    "run_result": (wire.RUN_RESULT, dict(value=([1.25], ()))),
    "run_result_absent": (wire.RUN_RESULT, dict(value=None)),
    "sample_result": (wire.SAMPLE_RESULT, dict(value=([3.0], ()))),
    "sample_result_vec": (wire.SAMPLE_RESULT, dict(value=([1.0, 2.0, 3.0], (3,)))),
    "observe": (wire.OBSERVE, dict(address="obs.c:1:f", name="obs0", dist=("Normal", [([0.0], ()), ([1.0], ())]),
                                   value=([0.5], ()))),
    "observe_novalue": (wire.OBSERVE, dict(address="", name="", dist=("Normal", [([0.0], ()), ([1.0], ())]),
                                           value=None)),
    "observe_result": (wire.OBSERVE_RESULT, {}),
    "tag": (wire.TAG, dict(address="tag.c:2:g", name="t", value=([1.0, 2.0], (2,)))),
    "tag_result": (wire.TAG_RESULT, {}),
    "reset": (wire.RESET, {}),
    "sample_control_false": (wire.SAMPLE, dict(address="x", name="x", control=False,
                                               dist=("Normal", [([0.0], ()), ([1.0], ())]))),
}
for _n, _d in DISTS:
    C_EXPECTED["sample_" + _n] = (wire.SAMPLE, dict(
        address="addr_" + _n, name=_n, control=True,
        dist=(_n, [(data, tuple(shape)) for data, shape in _d.wire_params()])))


def main(path):
    with open(path, "w") as f:
        for name, m in py_vectors():
            f.write("%s %s\n" % (name, wire.encode(m).hex()))


if __name__ == "__main__":
    main(sys.argv[1])
