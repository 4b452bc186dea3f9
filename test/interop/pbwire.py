"""Protocol Buffers wire format by hand, for the interop programs beside this file (a payment app
and an acquirer written from docs/protocol.md alone): varints, length-delimited fields, and a
parser into field number -> values. Nothing here comes from the project's own code or from a
protobuf package; the field numbers live in each program, as the page gives them."""

VARINT, LEN = 0, 2


def varint(n):
    if n < 0:
        n += 1 << 64  # int64: a negative value is its two's complement, 10 bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_int(field, value):
    """An int64/int32/bool field; the zero value is left out, as proto3 does."""
    return key(field, VARINT) + varint(int(value)) if value else b""


def f_bytes(field, value):
    """A string or bytes field; empty is left out."""
    if value is None or len(value) == 0:
        return b""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return key(field, LEN) + varint(len(data)) + data


def f_msg(field, encoded):
    """An embedded message: written even when empty (a oneof body kind must be seen)."""
    if encoded is None:
        return b""
    return key(field, LEN) + varint(len(encoded)) + encoded


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def parse(buf):
    """Field number -> list of raw values (int for varints, bytes otherwise)."""
    fields = {}
    i = 0
    while i < len(buf):
        k, i = read_varint(buf, i)
        field, wire = k >> 3, k & 7
        if wire == VARINT:
            v, i = read_varint(buf, i)
            if v >= 1 << 63:
                v -= 1 << 64
        elif wire == LEN:
            n, i = read_varint(buf, i)
            v = bytes(buf[i:i + n])
            if len(v) != n:
                raise ValueError("truncated field %d" % field)
            i += n
        elif wire == 1:
            v, i = bytes(buf[i:i + 8]), i + 8
        elif wire == 5:
            v, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise ValueError("wire type %d" % wire)
        fields.setdefault(field, []).append(v)
    return fields


def one(f, n, default=None):
    v = f.get(n)
    return v[-1] if v else default


def s(f, n):
    v = one(f, n)
    return v.decode("utf-8") if v is not None else ""


def i(f, n):
    return one(f, n, 0)


def b(f, n):
    return one(f, n, b"")
