"""PPX codec: the spec's test vectors, round trips, interoperability rules,
malformed buffers, and vectors encoded by ppxd's C codec."""
import os
import random
import struct
import unittest

import numpy as np

from ppx import DecodeError, fb, wire
from ppx.dists import Normal
from ppx.wire import Message

from . import vectors

# Test vectors of ../shared/spec/ppx-wire.md, captured from the existing peers.
SPEC = {
    "run": "0c00000008000c000b000400080000000c000000000000030400040004000000",
    "reset": "0c00000008000c0007000800080000000000000b080000000400040004000000",
    "handshake": "0c00000008000a0009000400080000000c000000000106000800040006000000"
                 "040000000400000064756d7000000000",
    "sample": "0c00000008000c00070008000800000000000005100000000c00140008000c00070010000c00000000000001140000000800000024000000"
              "0000000000000000100000005b666f727761726428292b307839365d00000000d4ffffff3000000004000000e0ffffff0c00000004000000"
              "0000000001000000a8f4979b77e301400000000008000c0004000800080000000c000000040000000000000001000000000000000000f03f",
    "sample_result": "100000000000000008000a0009000400080000000c0000000006060008000400060000000c00000008000c0008000400"
                     "08000000080000000c0000000100000001000000010000000000000000001e40",
}


def all_messages():
    return [m for _, m in vectors.py_vectors()]


def same_value(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and np.array_equal(a, b)


def same_dist(a, b):
    if a is None or b is None:
        return a is None and b is None
    return (a.tag == b.tag and len(a.values) == len(b.values)
            and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a.values, b.values)))


def same(a, b):
    va = None if a.value is None else np.asarray(a.value, dtype=np.float64)
    vb = None if b.value is None else np.asarray(b.value, dtype=np.float64)
    return (a.type == b.type and a.system_name == b.system_name and a.model_name == b.model_name
            and a.address == b.address and a.name == b.name and bool(a.control) == bool(b.control)
            and same_dist(a.dist, b.dist) and same_value(va, vb) and a.tangent == b.tangent)


class SpecVectors(unittest.TestCase):
    def test_run_reset_handshake(self):
        self.assertEqual(wire.decode(bytes.fromhex(SPEC["run"])).type, wire.RUN)
        self.assertEqual(wire.decode(bytes.fromhex(SPEC["reset"])).type, wire.RESET)
        m = wire.decode(bytes.fromhex(SPEC["handshake"]))
        self.assertEqual((m.type, m.system_name), (wire.HANDSHAKE, "dump"))

    def test_cpp_sample(self):
        m = wire.decode(bytes.fromhex(SPEC["sample"]))
        self.assertEqual(m.type, wire.SAMPLE)
        self.assertEqual(m.address, "[forward()+0x96]")
        self.assertEqual(m.name, "")
        self.assertTrue(m.control)  # absent: schema default true
        self.assertIsInstance(m.dist, Normal)
        self.assertEqual(m.dist.mean.shape, ())
        self.assertEqual(float(m.dist.mean), 1.0)
        self.assertAlmostEqual(float(m.dist.stddev), 5 ** 0.5, places=15)

    def test_sample_result(self):
        m = wire.decode(bytes.fromhex(SPEC["sample_result"]))
        self.assertEqual(m.type, wire.SAMPLE_RESULT)
        self.assertEqual(m.value.shape, (1,))
        self.assertEqual(float(m.value[0]), 7.5)

    def test_our_encodings_have_no_file_identifier(self):
        # The spec's peers write none; bytes 4..8 of ours are a vtable/table
        # start, never the upstream "PPXF".
        for m in all_messages():
            self.assertNotEqual(wire.encode(m)[4:8], b"PPXF")


class RoundTrip(unittest.TestCase):
    def test_every_message(self):
        for name, m in vectors.py_vectors():
            with self.subTest(name):
                self.assertTrue(same(wire.decode(wire.encode(m)), m), name)

    def test_scalars_are_0d_and_arrays_keep_shape(self):
        m = wire.decode(wire.encode(Message(wire.TAG, value=3.0)))
        self.assertEqual(m.value.shape, ())
        m = wire.decode(wire.encode(Message(wire.TAG, value=np.zeros((2, 0, 3)))))
        self.assertEqual(m.value.shape, (2, 0, 3))
        m = wire.decode(wire.encode(Message(wire.SAMPLE, dist=Normal([1.0, 2.0], 3.0))))
        self.assertEqual(m.dist.mean.shape, (2,))
        self.assertEqual(m.dist.stddev.shape, ())

    def test_everything_is_written(self):
        # Upstream peers dereference strings and tensor vectors unchecked: even
        # empty ones must be present.
        def tensor_complete(t):
            self.assertIsNotNone(t)
            self.assertTrue(t.has(0) and t.has(1), "tensor without data or shape vector")

        for m in all_messages():
            b = fb.Buffer(wire.encode(m))
            body = b.root().table(1)
            if m.type == wire.HANDSHAKE:
                self.assertTrue(body.has(0))
            if m.type == wire.HANDSHAKE_RESULT:
                self.assertTrue(body.has(0) and body.has(1))
            if m.type in (wire.SAMPLE, wire.OBSERVE, wire.TAG):
                self.assertTrue(body.has(0) and body.has(1), "address/name not written")
            if m.type in (wire.RUN_RESULT, wire.SAMPLE_RESULT):
                tensor_complete(body.table(0))
            if m.type == wire.TAG:
                tensor_complete(body.table(2))
            if m.type == wire.OBSERVE:
                tensor_complete(body.table(4))
            if m.type in (wire.SAMPLE, wire.OBSERVE):
                d = body.table(3)
                for i in range(len(m.dist.params)):
                    tensor_complete(d.table(i))
            if m.type == wire.SAMPLE:
                self.assertTrue(body.has(4), "control not written")

    def test_absent_value_is_empty_with_shape_0(self):
        b = fb.Buffer(wire.encode(Message(wire.OBSERVE, dist=Normal(0.0, 1.0))))
        t = b.root().table(1).table(4)
        self.assertEqual(t.vector(0, "double").size, 0)
        self.assertEqual(t.vector(1, "int").tolist(), [0])

    def test_control_false(self):
        m = wire.decode(wire.encode(Message(wire.SAMPLE, dist=Normal(0.0, 1.0), control=False)))
        self.assertFalse(m.control)


def _hand_built(body_type, build_body):
    """A Message with a body built by build_body(builder) -> offset."""
    import flatbuffers
    b = flatbuffers.Builder(64)
    body = build_body(b)
    b.StartObject(2)
    b.PrependUint8Slot(0, body_type, 0)
    if body:
        b.PrependUOffsetTRelativeSlot(1, body, 0)
    b.Finish(b.EndObject())
    return b.Output()


def _tensor(b, data, shape):
    d = fb.doubles(b, data)
    s = fb.ints(b, shape) if shape is not None else None
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, d, 0)
    if s is not None:
        b.PrependUOffsetTRelativeSlot(1, s, 0)
    return b.EndObject()


def _result(data, shape):
    def build(b):
        t = _tensor(b, data, shape)
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, t, 0)
        return b.EndObject()
    return _hand_built(wire.SAMPLE_RESULT, build)


class Malformed(unittest.TestCase):
    def assertBad(self, buf, fragment=None):
        with self.assertRaises(DecodeError) as cm:
            wire.decode(buf)
        if fragment:
            self.assertIn(fragment, str(cm.exception))
        self.assertEqual(cm.exception.code, 1)

    def test_empty_and_short(self):
        self.assertBad(b"", "empty")
        for n in range(1, 8):
            self.assertBad(b"\x00" * n)

    def test_every_truncation(self):
        for m in all_messages():
            buf = wire.encode(m)
            for n in range(len(buf)):
                try:
                    wire.decode(buf[:n])
                except DecodeError:
                    pass

    def test_random_corruption_never_crashes(self):
        rnd = random.Random(1234)
        msgs = [wire.encode(m) for m in all_messages()] + [bytes.fromhex(h) for h in SPEC.values()]
        ok = bad = 0
        for _ in range(4000):
            buf = bytearray(rnd.choice(msgs))
            for _ in range(rnd.randint(1, 4)):
                i = rnd.randrange(len(buf))
                buf[i] = rnd.randrange(256) if rnd.random() < 0.7 else buf[i] ^ (1 << rnd.randrange(8))
            try:
                wire.decode(bytes(buf))
                ok += 1
            except DecodeError:
                bad += 1
        self.assertGreater(bad, 100)

    def test_random_bytes(self):
        rnd = random.Random(5)
        for _ in range(2000):
            try:
                wire.decode(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200))))
            except DecodeError:
                pass

    def test_unknown_body_tag(self):
        buf = bytearray.fromhex(SPEC["run"])
        # body_type byte of the Run vector: find it by decoding position.
        root = fb.Buffer(bytes(buf)).root()
        pos = root._field(0, 1, "body_type")
        buf[pos] = 12
        self.assertBad(bytes(buf), "unknown message body tag 12")
        buf[pos] = 0
        self.assertBad(bytes(buf), "no body")

    def test_unknown_distribution_tag(self):
        buf = bytearray(wire.encode(Message(wire.SAMPLE, dist=Normal(0.0, 1.0))))
        body = fb.Buffer(bytes(buf)).root().table(1)
        buf[body._field(2, 1, "distribution_type")] = 12
        self.assertBad(bytes(buf), "unknown distribution tag 12")

    def test_sample_without_distribution(self):
        def build(b):
            a = b.CreateString("a")
            b.StartObject(5)
            b.PrependUOffsetTRelativeSlot(0, a, 0)
            return b.EndObject()
        self.assertBad(_hand_built(wire.SAMPLE, build), "no distribution")

    def test_body_tag_without_table(self):
        self.assertBad(_hand_built(wire.RUN, lambda b: 0), "without its table")

    def test_tensor_shape_checks(self):
        self.assertBad(_result([1.0, 2.0], []), "0-d")
        self.assertBad(_result([1.0, 2.0], [3]), "does not match")
        self.assertBad(_result([1.0, 2.0], [-1, -2]), "negative")
        self.assertBad(_result([1.0] * 4, [65536, 65536, 65536]), "does not match")
        # A tensor without a shape vector is shape [len].
        m = wire.decode(_result([1.0, 2.0], None))
        self.assertEqual(m.value.shape, (2,))
        # data [] with shape [] or [0]: absent.
        self.assertIsNone(wire.decode(_result([], [])).value)
        self.assertIsNone(wire.decode(_result([], [0])).value)

    def test_huge_vector_length(self):
        buf = bytearray(_result([1.0, 2.0], [2]))
        t = fb.Buffer(bytes(buf)).root().table(1).table(0)
        p = t._field(0, 4, "data")
        vec = p + struct.unpack_from("<I", buf, p)[0]
        struct.pack_into("<I", buf, vec, 0x7FFFFFFF)
        self.assertBad(bytes(buf))
        struct.pack_into("<I", buf, vec, 3)  # one more than there is: still inside? must not misread
        try:
            wire.decode(bytes(buf))
        except DecodeError:
            pass

    def test_string_not_terminated(self):
        buf = bytearray.fromhex(SPEC["handshake"])
        i = buf.index(b"dump")
        buf[i + 4] = ord("!")
        self.assertBad(bytes(buf), "NUL")

    def test_limits(self):
        big = wire.encode(Message(wire.TAG, value=np.zeros(1000)))
        with self.assertRaises(DecodeError):
            wire.decode(big, max_bytes=100)
        with self.assertRaises(DecodeError):
            wire.decode(big, max_elements=999)
        self.assertEqual(wire.decode(big, max_elements=1000).value.size, 1000)

    def test_not_bytes(self):
        with self.assertRaises(DecodeError):
            wire.decode("text")

    def test_old_replace_field_ignored(self):
        def build(b):
            d = Normal(0.0, 1.0)
            params = [_tensor(b, data, shape) for data, shape in d.wire_params()]
            b.StartObject(2)
            for i, p in enumerate(params):
                b.PrependUOffsetTRelativeSlot(i, p, 0)
            dist = b.EndObject()
            a, n = b.CreateString("a"), b.CreateString("n")
            b.StartObject(6)
            b.PrependUOffsetTRelativeSlot(0, a, 0)
            b.PrependUOffsetTRelativeSlot(1, n, 0)
            b.PrependUint8Slot(2, 1, 0)
            b.PrependUOffsetTRelativeSlot(3, dist, 0)
            b.PrependBool(True)
            b.Slot(5)  # replace
            return b.EndObject()
        m = wire.decode(_hand_built(wire.SAMPLE, build))
        self.assertEqual((m.address, m.name, m.control), ("a", "n", True))


class Tangents(unittest.TestCase):
    """The parameter-tangent extension (Sample slot 6, Observe slot 5)."""

    def test_round_trips(self):
        from ppx.dists import Categorical, Poisson
        cases = [
            Message(wire.SAMPLE, address="a", dist=Normal(1.0, 2.0), tangent=wire.Tangent(["t0", "t1"], [1, 2], [3, 4])),
            Message(wire.SAMPLE, address="a", dist=Normal([1.0, 2.0, 3.0], 2.0),
                    tangent=wire.Tangent(["t0"], [1, 2, 3])),
            Message(wire.SAMPLE, address="c", dist=Categorical([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]),
                    tangent=wire.Tangent(["t"], np.arange(6.0).reshape(2, 3, 1))),
            Message(wire.OBSERVE, address="o", dist=Poisson([1.0, 2.0]), value=[3.0, 4.0],
                    tangent=wire.Tangent(["t"], [0.5, 0.5])),
            Message(wire.OBSERVE, address="o", dist=Normal(0.0, 1.0), tangent=wire.Tangent()),
            Message(wire.SAMPLE, address="a", dist=Normal(1.0, 2.0), control=False, tangent=wire.Tangent(["t"])),
        ]
        for m in cases:
            got = wire.decode(wire.encode(m))
            self.assertTrue(same(got, m), (got, m))
            self.assertIsNotNone(got.tangent)
        # without one, none is written or decoded
        plain = wire.decode(wire.encode(Message(wire.SAMPLE, dist=Normal(0.0, 1.0))))
        self.assertIsNone(plain.tangent)
        self.assertIsNone(wire.decode(bytes.fromhex(SPEC["sample"])).tangent)

    def test_sample_slot5_stays_empty(self):
        buf = wire.encode(Message(wire.SAMPLE, dist=Normal(0.0, 1.0), tangent=wire.Tangent(["t"], [1.0])))
        body = fb.Buffer(buf).root().table(1)
        self.assertFalse(body.has(5))  # the removed `replace`
        self.assertTrue(body.has(6))

    def test_encoder_refuses(self):
        bad = [
            (wire.Tangent(["t"], [1.0, 2.0]), "has 2 values, expected 0 or 1"),
            (wire.Tangent(["t", "t"], [1.0, 2.0]), "appears twice"),
            (wire.Tangent([""], [1.0]), "theta name 0 is empty"),
            (wire.Tangent(["t"], [np.inf]), "value 0 is inf"),
            (wire.Tangent([], [1.0]), "expected 0 or 0"),
        ]
        for t, frag in bad:
            with self.assertRaises(ValueError) as cm:
                wire.encode(Message(wire.SAMPLE, dist=Normal(0.0, 1.0), tangent=t))
            self.assertIn(frag, str(cm.exception))
        with self.assertRaises(TypeError):
            wire.encode(Message(wire.SAMPLE, dist=Normal(0.0, 1.0), tangent=[1.0]))

    def test_decoder_rejects(self):
        ok = wire.decode(vectors.tangent_sample(["a", "b"], [1, 2], [3, 4]))
        self.assertEqual(ok.tangent, wire.Tangent(["a", "b"], [1, 2], [3, 4]))
        ok = wire.decode(vectors.tangent_sample(["a"], [1], [], body_slot=5))
        self.assertEqual((ok.type, ok.tangent), (wire.OBSERVE, wire.Tangent(["a"], [1])))
        # the same buffers ppxd's C decoder must reject (tests/test_python.c)
        for name, buf, frag in vectors.bad_tangent_vectors():
            with self.subTest(name):
                with self.assertRaises(DecodeError) as cm:
                    wire.decode(buf)
                self.assertIn(frag, str(cm.exception))


@unittest.skipUnless(os.environ.get("PPX_C_VECTORS"), "PPX_C_VECTORS not set (run by tests/test_python.c)")
class CVectors(unittest.TestCase):
    """Messages encoded by ppxd's C codec (ppx_encode)."""

    def test_c_encodings(self):
        seen = set()
        with open(os.environ["PPX_C_VECTORS"]) as f:
            for line in f:
                name, hexbytes = line.split()
                seen.add(name)
                with self.subTest(name):
                    self.assertIn(name, vectors.C_EXPECTED)
                    want_type, fields = vectors.C_EXPECTED[name]
                    m = wire.decode(bytes.fromhex(hexbytes))
                    self.assertEqual(m.type, want_type)
                    for k, v in fields.items():
                        got = getattr(m, k)
                        if k == "value":
                            if v is None:
                                self.assertIsNone(got)
                            else:
                                self.assertEqual(got.shape, v[1])
                                self.assertEqual(got.reshape(-1).tolist(), v[0])
                        elif k == "dist":
                            self.assertEqual(got.name, v[0])
                            for (data, shape), a in zip(v[1], got.values):
                                self.assertEqual(a.shape, tuple(shape))
                                self.assertEqual(a.reshape(-1).tolist(), list(np.asarray(data).reshape(-1)))
                        else:
                            self.assertEqual(got, v, k)
                    # and our encoding of it decodes to the same message
                    self.assertTrue(same(wire.decode(wire.encode(m)), m))
        self.assertEqual(seen, set(vectors.C_EXPECTED))


if __name__ == "__main__":
    unittest.main()
