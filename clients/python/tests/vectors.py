"""Cross-codec vectors between this package and ppxd's C codec (protocol/ppx.h).

    python3 -m tests.vectors OUT     writes "NAME HEX" lines of messages
                                     encoded here; tests/test_python.c decodes
                                     them with ppx_decode and checks each field.
The C test also encodes messages with ppx_encode into a file and runs
test_wire.CVectors with PPX_C_VECTORS=FILE, which checks them against
C_EXPECTED below.  Keep both sides in step with tests/test_python.c."""
import sys

import numpy as np

from ppx import fb, wire
from ppx.dists import (Bernoulli, Beta, Binomial, Categorical, Exponential, Gamma, LogNormal,
                       Normal, Poisson, Uniform, Weibull)
from ppx.wire import Message, Tangent

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
        # the parameter-tangent extension (tests/test_python.c checks the same numbers)
        ("sample_tangent", Message(wire.SAMPLE, address="g.py:1:f", name="z", dist=Normal(1.0, 2.0),
                                   tangent=Tangent(["theta_0", "theta_1"], [0.5, -1.0], [0.25, 2.0]))),
        ("observe_tangent", Message(wire.OBSERVE, address="o3", name="obs2", dist=Poisson([1.0, 2.0]),
                                    value=[3.0, 4.0], tangent=Tangent(["mu"], [[1.5], [-2.5]]))),
        ("sample_tangent_empty", Message(wire.SAMPLE, address="b", name="", dist=Bernoulli(0.3),
                                         tangent=Tangent())),
    ]
    return v


def _hand_built(body_type, build_body):
    import flatbuffers
    b = flatbuffers.Builder(64)
    body = build_body(b)
    b.StartObject(2)
    b.PrependUint8Slot(0, body_type, 0)
    b.PrependUOffsetTRelativeSlot(1, body, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def _hb_tensor(b, data, shape):
    d = fb.doubles(b, data)
    s = fb.ints(b, shape)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, d, 0)
    b.PrependUOffsetTRelativeSlot(1, s, 0)
    return b.EndObject()


def tangent_sample(theta, d0, d1, dist=None, body_slot=6):
    """A Sample (or, body_slot 5, an Observe) with a hand-built Tangent, so
    that malformed contents reach the decoder."""
    dist = dist or Normal(1.0, 2.0)

    def build(b):
        params = [_hb_tensor(b, data, shape) for data, shape in dist.wire_params()]
        b.StartObject(len(params))
        for i, p in enumerate(params):
            b.PrependUOffsetTRelativeSlot(i, p, 0)
        dt = b.EndObject()
        names = fb.string_vector(b, theta)
        v0, v1 = fb.doubles(b, d0), fb.doubles(b, d1)
        b.StartObject(3)
        b.PrependUOffsetTRelativeSlot(0, names, 0)
        b.PrependUOffsetTRelativeSlot(1, v0, 0)
        b.PrependUOffsetTRelativeSlot(2, v1, 0)
        tg = b.EndObject()
        a, n = b.CreateString("a"), b.CreateString("n")
        b.StartObject(body_slot + 1)
        b.PrependUOffsetTRelativeSlot(0, a, 0)
        b.PrependUOffsetTRelativeSlot(1, n, 0)
        b.PrependUint8Slot(2, dist.tag, 0)
        b.PrependUOffsetTRelativeSlot(3, dt, 0)
        b.PrependUOffsetTRelativeSlot(body_slot, tg, 0)
        return b.EndObject()
    return _hand_built(wire.SAMPLE if body_slot == 6 else wire.OBSERVE, build)


def bad_tangent_vectors():
    """(name, bytes, message fragment): malformed tangents that both decoders
    must reject (ppxd's with PPX_E_TANGENT; the fragment is the same text)."""
    return [
        ("bad_tangent_short", tangent_sample(["a", "b"], [1], []),
         "Sample.tangent: param0 (d mean / d theta) has 1 values, expected 0 or 2"),
        ("bad_tangent_long1", tangent_sample(["a"], [], [1, 2]), "param1 (d stddev / d theta) has 2 values"),
        ("bad_tangent_nan", tangent_sample(["a", "b"], [1, np.nan], []), "value 1 is nan"),
        ("bad_tangent_dup", tangent_sample(["a", "a"], [1, 2], []), "appears twice"),
        ("bad_tangent_empty_name", tangent_sample(["a", ""], [], []), "theta name 1 is empty"),
        ("bad_tangent_one_param", tangent_sample(["a"], [1], [1], dist=Exponential(1.0)),
         "param1 (d (none) / d theta) has 1 values"),
        ("bad_tangent_observe", tangent_sample(["a"], [1, 2], [], body_slot=5), "Observe.tangent"),
    ]


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
    "sample_tangent": (wire.SAMPLE, dict(address="galton.c:1:f", name="", control=True,
                                         dist=("Gamma", [([2.0], ()), ([3.0], ())]),
                                         tangent=Tangent(["a", "b"], [1.0, 2.0], [3.0, 4.0]))),
    "observe_tangent": (wire.OBSERVE, dict(address="o", name="obs", value=([0.5, 1.5], (2,)),
                                           dist=("Normal", [([0.0, 1.0], (2,)), ([1.0], ())]),
                                           tangent=Tangent(["mu"], [0.5, 0.25]))),
    "sample_tangent_empty": (wire.SAMPLE, dict(address="b", name="b", dist=("Bernoulli", [([0.5], ())]),
                                               tangent=Tangent())),
    "sample_no_tangent": (wire.SAMPLE, dict(address="n", name="n", dist=("Bernoulli", [([0.5], ())]),
                                            tangent=None)),
}
for _n, _d in DISTS:
    C_EXPECTED["sample_" + _n] = (wire.SAMPLE, dict(
        address="addr_" + _n, name=_n, control=True,
        dist=(_n, [(data, tuple(shape)) for data, shape in _d.wire_params()])))


def main(path):
    with open(path, "w") as f:
        for name, m in py_vectors():
            f.write("%s %s\n" % (name, wire.encode(m).hex()))
        for name, buf, _ in bad_tangent_vectors():
            f.write("%s %s\n" % (name, buf.hex()))


if __name__ == "__main__":
    main(sys.argv[1])
