"""Codec of ppxd's posterior query protocol (protocol/serve.fbs, namespace
ppxq), by hand: the flatbuffers runtime Builder to write, the checked reader
of ppx.fb to read.

Every message is an Envelope{version, request_id, body} finished with the
schema's file identifier "PPXQ" (bytes 4..8 of the buffer), and decoding
requires it, as the schema's generated Verify/Finish functions do.

Tables are described below by their fields in slot order; a union field
takes two slots (type, then value).  Bodies are :class:`Record` objects
(attribute access) in both directions; ``encode_envelope`` also accepts
plain dicts.  Absent strings decode as "", absent vectors as [], absent
sub-tables as None, absent scalars as the schema default.
"""

import flatbuffers
import numpy as np

from . import fb
from .errors import DecodeError

PROTOCOL_VERSION = 1
FILE_IDENTIFIER = b"PPXQ"


class ErrorCode:
    OK = 0
    MALFORMED = 1
    VERSION_MISMATCH = 2
    UNKNOWN_MODEL = 3
    BAD_SHAPE = 4
    N_TOO_LARGE = 5
    NAN_INPUT = 6
    BUSY = 7
    DEADLINE = 8
    SAMPLING_FAILED = 9
    NOT_ALLOWED = 10
    LOAD_FAILED = 11
    INTERNAL = 12
    UNKNOWN_JOB = 13
    BAD_REQUEST = 14


class JobState:
    QUEUED = 0
    RUNNING = 1
    DONE = 2
    FAILED = 3
    CANCELLED = 4


JOB_STATE_NAMES = ("queued", "running", "done", "failed", "cancelled")


_CODE_NAMES = {v: k for k, v in vars(ErrorCode).items() if not k.startswith("_")}


def error_code_name(code):
    if code is None:
        return "CLIENT"
    return _CODE_NAMES.get(code, "UNKNOWN")


# Field kinds: scalar kinds of ppx.fb, "string", "[string]", "[double]", "[ubyte]",
# ("table", Name), ("[table]", Name).
SCHEMA = {
    "Matrix": [("rows", "uint", 0), ("cols", "uint", 0), ("data", "[double]", None)],
    "ModelInfo": [
        ("name", "string", None), ("kind", "string", None), ("theta_names", "[string]", None),
        ("theta_dim", "uint", 0), ("x_names", "[string]", None), ("x_dim", "uint", 0),
        ("created", "long", 0), ("n_simulations", "ulong", 0), ("best_val_loss", "double", 0.0),
        ("checksum", "uint", 0), ("path", "string", None), ("generation", "uint", 0),
        ("prior", "string", None)],
    "ListModels": [],
    "ListModelsReply": [("models", ("[table]", "ModelInfo"), None)],
    "Sample": [("model", "string", None), ("observations", ("table", "Matrix"), None),
               ("n", "uint", 0), ("seed", "ulong", 0), ("max_seconds", "double", 0.0)],
    "SampleReply": [("samples", ("[table]", "Matrix"), None), ("acceptance", "[double]", None)],
    "LogProb": [("model", "string", None), ("observation", ("table", "Matrix"), None),
                ("thetas", ("table", "Matrix"), None), ("normalise", "bool", True),
                ("seed", "ulong", 0), ("n_draws", "uint", 0)],
    "LogProbReply": [("log_prob", "[double]", None)],
    "Load": [("path", "string", None), ("name", "string", None)],
    "Unload": [("name", "string", None)],
    "Reload": [("name", "string", None)],
    "AdminReply": [("message", "string", None), ("model", ("table", "ModelInfo"), None)],
    "Status": [],
    "StatusReply": [
        ("version", "string", None), ("uptime_seconds", "double", 0.0), ("models", "[string]", None),
        ("workers", "uint", 0), ("queue_depth", "uint", 0), ("requests", "ulong", 0),
        ("errors", "ulong", 0), ("busy", "ulong", 0)],
    "Error": [("code", "int", 0), ("message", "string", None)],
    "JobInfo": [
        ("id", "string", None), ("name", "string", None), ("command", "[string]", None),
        ("sim_model", "string", None), ("state", "byte", 0), ("message", "string", None),
        ("submitted", "double", 0.0), ("started", "double", 0.0), ("finished", "double", 0.0),
        ("done", "ulong", 0), ("total", "ulong", 0), ("unit", "string", None),
        ("loss", "double", 0.0), ("eta_seconds", "double", 0.0), ("outputs", "[string]", None)],
    "JobSubmit": [("name", "string", None), ("command", "[string]", None), ("sim_model", "string", None)],
    "JobList": [],
    "JobStatus": [("id", "string", None)],
    "JobCancel": [("id", "string", None)],
    "JobWait": [("id", "string", None), ("max_seconds", "double", 0.0)],
    "JobReply": [("jobs", ("[table]", "JobInfo"), None)],
    "JobFetch": [("id", "string", None), ("output", "string", None), ("offset", "ulong", 0),
                 ("max_bytes", "uint", 0)],
    "JobFetchReply": [("output", "string", None), ("size", "ulong", 0), ("offset", "ulong", 0),
                      ("data", "[ubyte]", None)],
    "SimList": [],
    "SimPool": [("model", "string", None), ("connected", "uint", 0), ("busy", "uint", 0),
                ("joined", "ulong", 0), ("left", "ulong", 0)],
    "SimListReply": [("pools", ("[table]", "SimPool"), None)],
    "LogRatio": [("model", "string", None), ("x", ("table", "Matrix"), None),
                 ("theta0", ("table", "Matrix"), None), ("theta1", ("table", "Matrix"), None)],
    "LogRatioReply": [("log_r", "[double]", None)],
    "Score": [("model", "string", None), ("x", ("table", "Matrix"), None),
              ("theta", ("table", "Matrix"), None)],
    "ScoreReply": [("score", ("table", "Matrix"), None)],
}

# union Body, tags 1..27 in this order.
BODIES = ("ListModels", "ListModelsReply", "Sample", "SampleReply", "LogProb", "LogProbReply",
          "Load", "Unload", "Reload", "AdminReply", "Status", "StatusReply", "Error",
          "JobSubmit", "JobList", "JobStatus", "JobCancel", "JobWait", "JobReply", "JobFetch",
          "JobFetchReply", "SimList", "SimListReply", "LogRatio", "LogRatioReply", "Score", "ScoreReply")
BODY_TAG = {name: i + 1 for i, name in enumerate(BODIES)}


class Record:
    """A decoded (or to-be-encoded) table: attributes named as in the schema."""

    def __init__(self, _type, **fields):
        self._type = _type
        self.__dict__.update(fields)

    def __repr__(self):
        f = ", ".join("%s=%r" % (k, v) for k, v in self.__dict__.items() if k != "_type")
        return "%s(%s)" % (self._type, f)

    def __eq__(self, other):
        return isinstance(other, Record) and self.__dict__.keys() == other.__dict__.keys() and all(
            _eq(v, other.__dict__[k]) for k, v in self.__dict__.items())

    def _asdict(self):
        return {k: v for k, v in self.__dict__.items() if k != "_type"}


def _eq(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


# --- encoding -----------------------------------------------------------------

_PREPEND = {
    "bool": "PrependBoolSlot", "ubyte": "PrependUint8Slot", "byte": "PrependInt8Slot",
    "int": "PrependInt32Slot",
    "uint": "PrependUint32Slot", "long": "PrependInt64Slot", "ulong": "PrependUint64Slot",
    "double": "PrependFloat64Slot",
}


def _get(obj, name, default):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _encode_table(b, tname, obj):
    fields = SCHEMA[tname]
    offs = {}
    # Offsets (strings, vectors, sub-tables) are written before the table.
    for name, kind, default in fields:
        v = _get(obj, name, None)
        if kind == "string":
            offs[name] = b.CreateString("" if v is None else str(v))
        elif kind == "[string]":
            offs[name] = fb.string_vector(b, [str(s) for s in (v or [])])
        elif kind == "[double]":
            offs[name] = fb.doubles(b, np.empty(0) if v is None else v)
        elif kind == "[ubyte]":
            offs[name] = fb.ints(b, np.frombuffer(bytes(v or b""), dtype="u1"), dtype="u1")
        elif isinstance(kind, tuple) and kind[0] == "table":
            if v is not None:
                offs[name] = _encode_table(b, kind[1], v)
        elif isinstance(kind, tuple) and kind[0] == "[table]":
            offs[name] = fb.table_vector(b, [_encode_table(b, kind[1], x) for x in (v or [])])
    b.StartObject(len(fields))
    for slot, (name, kind, default) in enumerate(fields):
        if name in offs:
            b.PrependUOffsetTRelativeSlot(slot, offs[name], 0)
        elif isinstance(kind, str) and kind in _PREPEND:
            v = _get(obj, name, None)
            if v is None:
                continue
            if kind == "bool":
                v = bool(v)
            elif kind == "double":
                v = float(v)
            else:
                v = int(v)
            getattr(b, _PREPEND[kind])(slot, v, default)
    return b.EndObject()


def encode_envelope(body_type, body, request_id, version=PROTOCOL_VERSION):
    """Bytes of Envelope{version, request_id, body}.  body_type is a body
    name ("Sample", ...); body a Record, dict or None (all defaults)."""
    if body_type not in BODY_TAG:
        raise ValueError("unknown query body %r" % (body_type,))
    b = flatbuffers.Builder(256)
    off = _encode_table(b, body_type, body)
    b.StartObject(4)
    b.PrependUint32Slot(0, int(version), 0)
    b.PrependUint64Slot(1, int(request_id), 0)
    b.PrependUint8Slot(2, BODY_TAG[body_type], 0)
    b.PrependUOffsetTRelativeSlot(3, off, 0)
    b.Finish(b.EndObject(), file_identifier=FILE_IDENTIFIER)
    return b.Output()


# --- decoding -----------------------------------------------------------------

def _decode_table(t, tname):
    rec = Record(tname)
    for slot, (name, kind, default) in enumerate(SCHEMA[tname]):
        if kind == "string":
            v = t.string(slot, name)
        elif kind == "[string]":
            v = t.strings(slot, name) or []
        elif kind == "[double]":
            v = t.vector(slot, "double", name)
            v = np.empty(0) if v is None else v
        elif kind == "[ubyte]":
            v = t.vector(slot, "ubyte", name)
            v = b"" if v is None else v.tobytes()
        elif kind[0] == "table":
            sub = t.table(slot, name)
            v = None if sub is None else _decode_table(sub, kind[1])
        elif kind[0] == "[table]":
            v = [_decode_table(x, kind[1]) for x in (t.tables(slot, name) or [])]
        else:
            v = t.scalar(slot, kind, default, name)
        setattr(rec, name, v)
    return rec


class Envelope:
    __slots__ = ("version", "request_id", "body_type", "body")

    def __init__(self, version, request_id, body_type, body):
        self.version = version
        self.request_id = request_id
        self.body_type = body_type
        self.body = body

    def __repr__(self):
        return "Envelope(version=%d, request_id=%d, %r)" % (self.version, self.request_id, self.body)


def decode_envelope(buf, max_bytes=fb.DEFAULT_MAX_BYTES, max_elements=fb.DEFAULT_MAX_ELEMENTS,
                    require_identifier=True):
    """Decode an Envelope.  DecodeError on a malformed buffer, a missing file
    identifier (unless require_identifier=False), an unknown or absent body."""
    try:
        b = fb.Buffer(buf, max_bytes, max_elements)
        if b.n < 8:
            raise DecodeError("buffer of %d bytes is too short for an Envelope" % b.n)
        if require_identifier and b.identifier() != FILE_IDENTIFIER:
            raise DecodeError("not a ppxd query message (file identifier %r, expected %r)"
                              % (b.identifier(), FILE_IDENTIFIER))
        root = b.root("Envelope")
        version = root.scalar(0, "uint", 0, "version")
        request_id = root.scalar(1, "ulong", 0, "request_id")
        tag = root.scalar(2, "ubyte", 0, "body_type")
        if tag == 0:
            raise DecodeError("Envelope without a body")
        if tag > len(BODIES):
            raise DecodeError("unknown body tag %d" % tag)
        name = BODIES[tag - 1]
        t = root.table(3, "body")
        if t is None:
            raise DecodeError("Envelope body tag %d (%s) without its table" % (tag, name))
        return Envelope(version, request_id, name, _decode_table(t, name))
    except DecodeError:
        raise
    except Exception as e:  # never let a malformed buffer escape as another error
        raise DecodeError("undecodable query message (%s: %s)" % (type(e).__name__, e)) from None


def matrix(a):
    """A Record Matrix from a 2-D array-like (1-D: one row)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise ValueError("expected a 1-D or 2-D array, got shape %s" % (a.shape,))
    return Record("Matrix", rows=a.shape[0], cols=a.shape[1], data=a.reshape(-1))


def matrix_array(m, what="matrix"):
    """A decoded Matrix Record -> (rows, cols) array; DecodeError when its
    data length is not rows x cols."""
    if m is None:
        raise DecodeError("%s absent" % what)
    if m.rows * m.cols != m.data.size:
        raise DecodeError("%s: %d x %d but %d values" % (what, m.rows, m.cols, m.data.size))
    return m.data.reshape(m.rows, m.cols)
