"""PPX wire codec: FlatBuffers messages of protocol/ppx.fbs, by hand.

Encoding uses the flatbuffers runtime Builder; decoding uses the checked
reader of ppx.fb, which verifies every offset before reading it, so a
malformed buffer raises DecodeError and never anything else.

As on the wire (see ../shared/spec/ppx-wire.md and protocol/ppx.h):
  - no file identifier is written or required;
  - every string field and both vectors of every tensor are always written;
  - a scalar is a 0-d tensor (data [x], shape []), an array travels with its
    shape, an absent value is data [], shape [0];
  - decoding applies schema defaults (Sample.control = true when absent),
    takes a tensor without a shape vector as shape [len], rejects a shape
    inconsistent with its data, unknown union tags, and a Sample without a
    distribution; the removed Sample.replace field (slot 5) is ignored.

A message is a :class:`Message`; which attributes matter depends on its type:
    HANDSHAKE         system_name
    HANDSHAKE_RESULT  system_name, model_name
    RUN_RESULT        value
    SAMPLE            address, name, dist, control, tangent
    SAMPLE_RESULT     value
    OBSERVE           address, name, dist, value (None: absent), tangent
    TAG               address, name, value
    RUN, OBSERVE_RESULT, TAG_RESULT, RESET: none.
Decoded tensor values are numpy float64 arrays of the tensor's shape (0-d for
a scalar); an absent tensor value (data [], shape [0] or [], or no Tensor
table at all) decodes as None.

The tangent of a Sample or Observe is ppxd's optional extension (the Tangent
table of protocol/ppx.fbs; slot 6 of Sample, slot 5 of Observe): a
:class:`Tangent`, or None when absent (as from every upstream peer).
"""

import flatbuffers
import numpy as np

from . import fb
from .dists import BY_TAG, Distribution
from .errors import DecodeError

(NONE, HANDSHAKE, HANDSHAKE_RESULT, RUN, RUN_RESULT, SAMPLE, SAMPLE_RESULT,
 OBSERVE, OBSERVE_RESULT, TAG, TAG_RESULT, RESET) = range(12)

TYPE_NAMES = ("None", "Handshake", "HandshakeResult", "Run", "RunResult", "Sample", "SampleResult",
              "Observe", "ObserveResult", "Tag", "TagResult", "Reset")


def type_name(t):
    return TYPE_NAMES[t] if 0 <= t < len(TYPE_NAMES) else "Unknown(%s)" % (t,)


MAX_TANGENT_THETA = 4096  # as ppxd's codec


class Tangent:
    """d params / d theta of one draw, with the values of earlier draws held
    fixed (see protocol/ppx.fbs).  theta: the D names of the parameters of
    interest; param0, param1: the derivatives of the distribution's
    parameters in wire slot order, each None/empty (does not depend on theta)
    or len(param) * D values: an array of shape param.shape + (D,), or flat
    in that row-major order (element i, theta k at i * D + k).
    Tangent() with no names declares the draw independent of theta."""

    __slots__ = ("theta", "param0", "param1")

    def __init__(self, theta=(), param0=None, param1=None):
        if isinstance(theta, str):
            theta = (theta,)
        self.theta = tuple(theta)
        self.param0 = _flat(param0)
        self.param1 = _flat(param1)

    def derivative(self, j):
        return self.param1 if j else self.param0

    def __eq__(self, other):
        return (isinstance(other, Tangent) and self.theta == other.theta and
                all(np.array_equal(self.derivative(j), other.derivative(j)) for j in (0, 1)))

    def __repr__(self):
        return "Tangent(theta=%r, param0=%r, param1=%r)" % (self.theta, self.param0.tolist(), self.param1.tolist())


def _flat(x):
    return np.empty(0) if x is None else np.asarray(x, dtype=np.float64).reshape(-1)


def theta_problem(theta):
    """Why a tuple of theta names is unusable in a tangent, or None."""
    if len(theta) > MAX_TANGENT_THETA:
        return "%d theta names, over the limit of %d" % (len(theta), MAX_TANGENT_THETA)
    for i, n in enumerate(theta):
        if not isinstance(n, str):
            return "theta name %d is not a string" % i
        if not n.split("\0", 1)[0]:
            return "theta name %d is empty" % i
        if n in theta[:i]:
            return "theta name '%s' appears twice (at %d and %d)" % (n, theta.index(n), i)
    return None


def tangent_problem(t, dist):
    """Why Tangent t is malformed for distribution dist (None for an Observe
    without one), or None when it is well formed; as ppxd's codec checks."""
    why = theta_problem(t.theta)
    if why:
        return why
    D = len(t.theta)
    if dist is None:
        if D or t.param0.size or t.param1.size:
            return "a tangent needs a distribution"
        return None
    params = dist.wire_params()
    for j in (0, 1):
        pn = dist.params[j] if j < len(dist.params) else "(none)"
        plen = params[j][0].size if j < len(params) else 0
        d = t.derivative(j)
        if d.size not in (0, plen * D):
            return ("param%d (d %s / d theta) has %d values, expected 0 or %d (%d elements x %d theta)"
                    % (j, pn, d.size, plen * D, plen, D))
        bad = ~np.isfinite(d)
        if bad.any():
            i = int(np.argmax(bad))
            return "param%d (d %s / d theta) value %d is %s" % (j, pn, i, float(d[i]))
    return None


class Message:
    """A PPX message (see the module docstring for the fields per type)."""

    __slots__ = ("type", "system_name", "model_name", "address", "name", "dist", "control", "value", "tangent")

    def __init__(self, type, system_name="", model_name="", address="", name="", dist=None,
                 control=True, value=None, tangent=None):
        self.type = type
        self.tangent = tangent
        self.system_name = system_name
        self.model_name = model_name
        self.address = address
        self.name = name
        self.dist = dist
        self.control = control
        self.value = value

    @property
    def type_name(self):
        return type_name(self.type)

    def __repr__(self):
        f = [self.type_name]
        if self.type in (HANDSHAKE, HANDSHAKE_RESULT):
            f.append("system_name=%r" % self.system_name)
        if self.type == HANDSHAKE_RESULT:
            f.append("model_name=%r" % self.model_name)
        if self.type in (SAMPLE, OBSERVE, TAG):
            f += ["address=%r" % self.address, "name=%r" % self.name]
        if self.type in (SAMPLE, OBSERVE):
            f.append("dist=%r" % (self.dist,))
        if self.type == SAMPLE:
            f.append("control=%r" % self.control)
        if self.type in (RUN_RESULT, SAMPLE_RESULT, OBSERVE, TAG):
            f.append("value=%r" % (self.value,))
        if self.type in (SAMPLE, OBSERVE) and self.tangent is not None:
            f.append("tangent=%r" % (self.tangent,))
        return "Message(%s)" % ", ".join(f)


# --- encoding -----------------------------------------------------------------

def _tensor(b, value, shape=None):
    """Write a Tensor from None (absent), a number (0-d) or an array (its
    shape); or, with `shape` given, from flat data of that shape."""
    if shape is not None:
        data, shape = np.asarray(value, dtype=np.float64).reshape(-1), tuple(shape)
        want = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if want != data.size:
            raise ValueError("tensor shape %s does not match %d values" % (shape, data.size))
    elif value is None:
        data, shape = np.empty(0), (0,)
    else:
        a = np.asarray(value, dtype=np.float64)
        data, shape = a.reshape(-1), a.shape
    d = fb.doubles(b, data)
    s = fb.ints(b, np.asarray(shape, dtype=np.int64))
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, d, 0)
    b.PrependUOffsetTRelativeSlot(1, s, 0)
    return b.EndObject()


def _dist(b, d):
    if not isinstance(d, Distribution):
        raise TypeError("expected a ppx distribution, got %r" % (d,))
    params = [_tensor(b, data, shape) for data, shape in d.wire_params()]
    b.StartObject(len(params))
    for i, p in enumerate(params):
        b.PrependUOffsetTRelativeSlot(i, p, 0)
    return b.EndObject()


def _tangent(b, t, dist, what):
    """Write a Tangent table (all three vectors, possibly empty)."""
    if not isinstance(t, Tangent):
        raise TypeError("%s.tangent must be a ppx.wire.Tangent, got %r" % (what, t))
    why = tangent_problem(t, dist)
    if why:
        raise ValueError("%s.tangent: %s" % (what, why))
    names = fb.string_vector(b, t.theta)
    d0 = fb.doubles(b, t.param0)
    d1 = fb.doubles(b, t.param1)
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(0, names, 0)
    b.PrependUOffsetTRelativeSlot(1, d0, 0)
    b.PrependUOffsetTRelativeSlot(2, d1, 0)
    return b.EndObject()


def _strings_table(b, strings):
    offs = [b.CreateString(s or "") for s in strings]
    b.StartObject(len(offs))
    for i, o in enumerate(offs):
        b.PrependUOffsetTRelativeSlot(i, o, 0)
    return b.EndObject()


def encode(m):
    """Encode Message m to bytes (no file identifier)."""
    t = m.type
    b = flatbuffers.Builder(256)
    if t == HANDSHAKE:
        body = _strings_table(b, [m.system_name])
    elif t == HANDSHAKE_RESULT:
        body = _strings_table(b, [m.system_name, m.model_name])
    elif t in (RUN_RESULT, SAMPLE_RESULT):
        v = _tensor(b, m.value)
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, v, 0)
        body = b.EndObject()
    elif t in (SAMPLE, OBSERVE, TAG):
        addr = b.CreateString(m.address or "")
        name = b.CreateString(m.name or "")
        if t == TAG:
            v = _tensor(b, m.value)
            b.StartObject(3)
            b.PrependUOffsetTRelativeSlot(0, addr, 0)
            b.PrependUOffsetTRelativeSlot(1, name, 0)
            b.PrependUOffsetTRelativeSlot(2, v, 0)
        else:
            if m.dist is None:
                raise ValueError("%s without a distribution" % type_name(t))
            dist = _dist(b, m.dist)
            v = _tensor(b, m.value) if t == OBSERVE else 0
            tg = 0 if m.tangent is None else _tangent(b, m.tangent, m.dist, type_name(t))
            # Sample.tangent is slot 6 (slot 5, the removed `replace`, stays
            # empty), Observe.tangent slot 5.
            b.StartObject(5 if not tg else 7 if t == SAMPLE else 6)
            b.PrependUOffsetTRelativeSlot(0, addr, 0)
            b.PrependUOffsetTRelativeSlot(1, name, 0)
            b.PrependUint8Slot(2, m.dist.tag, 0)
            b.PrependUOffsetTRelativeSlot(3, dist, 0)
            if t == SAMPLE:
                # Written even when true (the default), for peers that might
                # not apply it.
                b.PrependBool(bool(m.control))
                b.Slot(4)
            else:
                b.PrependUOffsetTRelativeSlot(4, v, 0)
            if tg:
                b.PrependUOffsetTRelativeSlot(6 if t == SAMPLE else 5, tg, 0)
        body = b.EndObject()
    elif t in (RUN, OBSERVE_RESULT, TAG_RESULT, RESET):
        b.StartObject(0)
        body = b.EndObject()
    else:
        raise ValueError("cannot encode message type %r" % (t,))
    b.StartObject(2)
    b.PrependUint8Slot(0, t, 0)
    b.PrependUOffsetTRelativeSlot(1, body, 0)
    b.Finish(b.EndObject())
    return b.Output()


# --- decoding -----------------------------------------------------------------

def _shape_str(shape):
    return "[" + ",".join(str(int(s)) for s in shape) + "]"


def decode_tensor(t, what, absent_none=True):
    """A verified Tensor table -> numpy array of its shape, or None when absent
    (no table; data [] with shape [0] or []).  With absent_none=False an
    absent value is an empty (0,) array instead."""
    if t is None:
        return None if absent_none else np.empty(0)
    data = t.vector(0, "double", "data")
    shape = t.vector(1, "int", "shape")
    if data is None:
        data = np.empty(0)
    if shape is None:
        return data if (data.size or not absent_none) else None
    if (shape < 0).any():
        raise DecodeError("%s: shape %s has a negative dimension" % (what, _shape_str(shape)))
    if shape.size == 0:
        if data.size == 1:
            return data.reshape(())
        if data.size == 0:
            return None if absent_none else np.empty(0)
        raise DecodeError("%s: 0-d (scalar) shape [] needs 1 element but data has %d" % (what, data.size))
    # Overflow-safe product (shape dims are int32; stop once over the length).
    prod = 0 if (shape == 0).any() else 1
    for s in shape.tolist():
        prod *= s
        if prod > data.size:
            break
    if prod != data.size:
        raise DecodeError("%s: shape %s does not match %d elements" % (what, _shape_str(shape), data.size))
    if data.size == 0 and absent_none and shape.size == 1:
        return None
    return data.reshape(tuple(shape.tolist()))


def _decode_dist(tag, tbl, msg, required):
    if tag == 0:
        if required:
            raise DecodeError("%s has no distribution" % msg)
        return None
    cls = BY_TAG.get(tag)
    if cls is None:
        raise DecodeError("%s: unknown distribution tag %d" % (msg, tag))
    if tbl is None:
        raise DecodeError("%s: distribution tag %d (%s) without its table" % (msg, tag, cls.__name__))
    params = []
    for i, pname in enumerate(cls.params):
        what = "%s.distribution.%s" % (msg, pname)
        v = decode_tensor(tbl.table(i, pname), what, absent_none=False)
        params.append((v.reshape(-1), v.shape))
    try:
        return Distribution.from_wire(tag, params)
    except ValueError as e:
        raise DecodeError("%s: %s" % (msg, e)) from None


def _decode_tangent(tbl, dist, msg):
    if tbl is None:
        return None
    theta = tbl.strings(0, "theta") or []
    if len(theta) > MAX_TANGENT_THETA:
        raise DecodeError("%s.tangent: %d theta names, over the limit of %d" % (msg, len(theta), MAX_TANGENT_THETA))
    t = Tangent(theta, tbl.vector(1, "double", "param0"), tbl.vector(2, "double", "param1"))
    why = tangent_problem(t, dist)
    if why:
        raise DecodeError("%s.tangent: %s" % (msg, why))
    return t


def decode(buf, max_bytes=fb.DEFAULT_MAX_BYTES, max_elements=fb.DEFAULT_MAX_ELEMENTS):
    """Decode bytes into a Message; DecodeError on anything malformed."""
    try:
        return _decode(fb.Buffer(buf, max_bytes, max_elements))
    except DecodeError:
        raise
    except Exception as e:  # a bug in the checks above must not crash a peer
        raise DecodeError("undecodable PPX message (%s: %s)" % (type(e).__name__, e)) from None


def _decode(b):
    if b.n == 0:
        raise DecodeError("empty buffer (0 bytes)")
    root = b.root("Message")
    tag = root.scalar(0, "ubyte", 0, "body_type")
    if tag == NONE:
        raise DecodeError("message has no body")
    if tag >= len(TYPE_NAMES):
        raise DecodeError("unknown message body tag %d" % tag)
    body = root.table(1, "body")
    if body is None:
        raise DecodeError("message body tag %d (%s) without its table" % (tag, type_name(tag)))
    m = Message(tag)
    if tag == HANDSHAKE:
        m.system_name = body.string(0, "system_name")
    elif tag == HANDSHAKE_RESULT:
        m.system_name = body.string(0, "system_name")
        m.model_name = body.string(1, "model_name")
    elif tag in (RUN_RESULT, SAMPLE_RESULT):
        what = type_name(tag) + ".result"
        m.value = decode_tensor(body.table(0, "result"), what)
    elif tag in (SAMPLE, OBSERVE, TAG):
        m.address = body.string(0, "address")
        m.name = body.string(1, "name")
        if tag == TAG:
            m.value = decode_tensor(body.table(2, "value"), "Tag.value")
        else:
            dtag = body.scalar(2, "ubyte", 0, "distribution_type")
            m.dist = _decode_dist(dtag, body.table(3, "distribution"), type_name(tag), tag == SAMPLE)
            if tag == SAMPLE:
                m.control = body.scalar(4, "bool", True, "control")
                m.tangent = _decode_tangent(body.table(6, "tangent"), m.dist, "Sample")
            else:
                m.value = decode_tensor(body.table(4, "value"), "Observe.value")
                m.tangent = _decode_tangent(body.table(5, "tangent"), m.dist, "Observe")
    return m


def message_type(buf):
    """The body tag of a buffer without decoding the rest (0 if unreadable)."""
    try:
        return fb.Buffer(buf).root("Message").scalar(0, "ubyte", 0, "body_type")
    except Exception:
        return NONE
