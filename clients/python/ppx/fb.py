"""A bounds-checked FlatBuffers reader (a verifier for Python).

The flatbuffers Python runtime has no Verifier: reading a corrupt buffer with
its Table API can raise arbitrary exceptions, loop over absurd vector lengths
or silently return garbage.  This reader checks every offset it follows the
way the C++ Verifier does (root offset, vtable position and size, field
offsets inside the table, string and vector lengths inside the buffer, string
NUL terminators, element-count limits) and raises :class:`DecodeError` with
the reason for anything out of place.  It only reads what a schema asks for,
so unknown (newer) fields are ignored, as FlatBuffers intends.

Writing uses the flatbuffers runtime's ``Builder`` (see helpers below).
"""

import struct

import numpy as np

from .errors import DecodeError

DEFAULT_MAX_BYTES = 64 << 20      # as ppxd's PPX_DEFAULT_MAX_MESSAGE_BYTES
DEFAULT_MAX_ELEMENTS = 1 << 24    # as ppxd's PPX_DEFAULT_MAX_TENSOR_LEN

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")

_SCALARS = {
    "bool": (struct.Struct("<B"), lambda v: v != 0),
    "ubyte": (struct.Struct("<B"), None),
    "byte": (struct.Struct("<b"), None),
    "int": (struct.Struct("<i"), None),
    "uint": (struct.Struct("<I"), None),
    "long": (struct.Struct("<q"), None),
    "ulong": (struct.Struct("<Q"), None),
    "double": (struct.Struct("<d"), None),
}

_NUMPY = {"double": "<f8", "int": "<i4", "uint": "<u4", "ulong": "<u8", "long": "<i8", "ubyte": "u1"}


class Buffer:
    """A received buffer: bytes plus the limits that apply to it."""

    __slots__ = ("buf", "n", "max_elements")

    def __init__(self, buf, max_bytes=DEFAULT_MAX_BYTES, max_elements=DEFAULT_MAX_ELEMENTS):
        if isinstance(buf, memoryview):
            buf = buf.tobytes()
        elif not isinstance(buf, (bytes, bytearray)):
            raise DecodeError("expected bytes, got %s" % type(buf).__name__)
        if len(buf) > max_bytes:
            raise DecodeError("message of %d bytes is over the limit of %d" % (len(buf), max_bytes))
        self.buf = bytes(buf)
        self.n = len(buf)
        self.max_elements = max_elements

    def _check(self, pos, size, what):
        if pos < 0 or size < 0 or pos + size > self.n:
            raise DecodeError("%s at offset %d (%d bytes) is outside the %d-byte buffer"
                              % (what, pos, size, self.n))

    def u16(self, pos, what="uint16"):
        self._check(pos, 2, what)
        return _U16.unpack_from(self.buf, pos)[0]

    def u32(self, pos, what="uint32"):
        self._check(pos, 4, what)
        return _U32.unpack_from(self.buf, pos)[0]

    def i32(self, pos, what="int32"):
        self._check(pos, 4, what)
        return _I32.unpack_from(self.buf, pos)[0]

    def identifier(self):
        """The 4 bytes where a file identifier would be (b"" if too short)."""
        return self.buf[4:8] if self.n >= 8 else b""

    def root(self, what="root table"):
        """The root table (buffer must hold at least the root offset)."""
        if self.n < 8:
            raise DecodeError("buffer of %d bytes is too short for a FlatBuffer" % self.n)
        return self.table(self.u32(0, "root offset"), what)

    def table(self, pos, what="table"):
        return Table(self, pos, what)


class Table:
    """A verified table: its vtable lies inside the buffer and every field
    offset read through it is checked against the table's size."""

    __slots__ = ("b", "pos", "vt", "vt_size", "t_size", "what")

    def __init__(self, b, pos, what):
        self.b = b
        self.pos = pos
        self.what = what
        if pos % 4:
            # The C++ Verifier rejects misaligned tables too.
            raise DecodeError("%s at offset %d is misaligned" % (what, pos))
        vt = pos - b.i32(pos, what)
        if vt % 2:
            raise DecodeError("%s: vtable at offset %d is misaligned" % (what, vt))
        self.vt = vt
        self.vt_size = b.u16(vt, what + " vtable")
        if self.vt_size < 4 or self.vt_size % 2:
            raise DecodeError("%s: bad vtable size %d" % (what, self.vt_size))
        b._check(vt, self.vt_size, what + " vtable")
        self.t_size = b.u16(vt + 2, what + " vtable")
        if self.t_size < 4:
            raise DecodeError("%s: bad table size %d" % (what, self.t_size))
        b._check(pos, self.t_size, what)

    def _field(self, slot, size, name):
        """Absolute position of field `slot`, or 0 when absent."""
        vo = 4 + 2 * slot
        if vo >= self.vt_size:
            return 0
        off = self.b.u16(self.vt + vo)
        if off == 0:
            return 0
        if off + size > self.t_size:
            raise DecodeError("%s.%s: field outside its table" % (self.what, name))
        return self.pos + off

    def has(self, slot):
        return self._field(slot, 0, "field") != 0

    def scalar(self, slot, kind, default, name="field"):
        st, conv = _SCALARS[kind]
        p = self._field(slot, st.size, name)
        if not p:
            return default
        v = st.unpack_from(self.b.buf, p)[0]
        return conv(v) if conv else v

    def _target(self, slot, name):
        p = self._field(slot, 4, name)
        if not p:
            return 0
        off = self.b.u32(p, name)
        if off == 0:
            raise DecodeError("%s.%s: zero offset" % (self.what, name))
        t = p + off
        self.b._check(t, 4, "%s.%s" % (self.what, name))
        return t

    def string(self, slot, name="string", default=""):
        t = self._target(slot, name)
        if not t:
            return default
        return _read_string(self.b, t, "%s.%s" % (self.what, name))

    def table(self, slot, name="table"):
        """The sub-table in `slot`, or None when absent."""
        t = self._target(slot, name)
        if not t:
            return None
        return Table(self.b, t, "%s.%s" % (self.what, name))

    def _vector(self, slot, elem_size, name):
        t = self._target(slot, name)
        if not t:
            return None, 0
        n = self.b.u32(t, name)
        if t % 4:
            raise DecodeError("%s.%s: vector misaligned" % (self.what, name))
        if n > self.b.max_elements:
            raise DecodeError("%s.%s: %d elements, over the limit of %d"
                              % (self.what, name, n, self.b.max_elements))
        self.b._check(t + 4, n * elem_size, "%s.%s" % (self.what, name))
        return t + 4, n

    def vector(self, slot, kind, name="vector"):
        """A numeric vector as a fresh numpy array (None when absent)."""
        dt = np.dtype(_NUMPY[kind])
        start, n = self._vector(slot, dt.itemsize, name)
        if start is None:
            return None
        return np.frombuffer(self.b.buf, dtype=dt, count=n, offset=start).astype(dt.newbyteorder("="))

    def tables(self, slot, name="vector"):
        """A vector of tables as a list (None when absent)."""
        if not self.has(slot):
            return None
        start, n = self._vector(slot, 4, name)
        out = []
        for i in range(n):
            p = start + 4 * i
            out.append(Table(self.b, p + self.b.u32(p), "%s.%s[%d]" % (self.what, name, i)))
        return out

    def strings(self, slot, name="vector"):
        """A vector of strings as a list (None when absent)."""
        if not self.has(slot):
            return None
        start, n = self._vector(slot, 4, name)
        out = []
        for i in range(n):
            p = start + 4 * i
            out.append(_read_string(self.b, p + self.b.u32(p), "%s.%s[%d]" % (self.what, name, i)))
        return out


def _read_string(b, t, what):
    if t % 4:
        raise DecodeError("%s: string misaligned" % what)
    n = b.u32(t, what)
    b._check(t + 4, n + 1, what)  # the bytes and the NUL terminator
    if b.buf[t + 4 + n] != 0:
        raise DecodeError("%s: string not NUL-terminated" % what)
    raw = b.buf[t + 4:t + 4 + n]
    # Strings end at their first NUL, as in ppxd's C codec.
    z = raw.find(b"\0")
    if z >= 0:
        raw = raw[:z]
    return raw.decode("utf-8", errors="replace")


# --- writing helpers (flatbuffers runtime Builder) ---------------------------

def doubles(builder, x):
    """Write a [double] vector (always written, possibly empty)."""
    a = np.ascontiguousarray(np.asarray(x, dtype="<f8").reshape(-1))
    return builder.CreateNumpyVector(a)


def ints(builder, x, dtype="<i4"):
    a = np.ascontiguousarray(np.asarray(x, dtype=dtype).reshape(-1))
    return builder.CreateNumpyVector(a)


def string_vector(builder, strings):
    offs = [builder.CreateString(s) for s in strings]
    builder.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        builder.PrependUOffsetTRelative(o)
    return builder.EndVector()


def table_vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        builder.PrependUOffsetTRelative(o)
    return builder.EndVector()
