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
    SAMPLE            address, name, dist, control
    SAMPLE_RESULT     value
    OBSERVE           address, name, dist, value (None: absent)
    TAG               address, name, value
    RUN, OBSERVE_RESULT, TAG_RESULT, RESET: none.
Decoded tensor values are numpy float64 arrays of the tensor's shape (0-d for
a scalar); an absent tensor value (data [], shape [0] or [], or no Tensor
table at all) decodes as None.
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


class Message:
    """A PPX message (see the module docstring for the fields per type)."""

    __slots__ = ("type", "system_name", "model_name", "address", "name", "dist", "control", "value")

    def __init__(self, type, system_name="", model_name="", address="", name="", dist=None,
                 control=True, value=None):
        self.type = type
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
            b.StartObject(5)
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
            else:
                m.value = decode_tensor(body.table(4, "value"), "Observe.value")
    return m


def message_type(buf):
    """The body tag of a buffer without decoding the rest (0 if unreadable)."""
    try:
        return fb.Buffer(buf).root("Message").scalar(0, "ubyte", 0, "body_type")
    except Exception:
        return NONE
