"""LEB128 varints and a bounds-checked reader: the only way the codec parses untrusted bytes.

Every read says how much it may take; running past the end, or a value above its stated maximum,
raises CodecError before anything is allocated from that value.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from codec.errors import CodecError

MAX_VARINT_BYTES = 9  # values < 2**63


def encode_one(value: int) -> bytes:
    """One unsigned LEB128 varint."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(values: np.ndarray | list[int]) -> bytes:
    """Many varints, concatenated (compiled: a 1 MP image has thousands, one per LS
    coefficient, and a Python loop over them was ~2% of encode time)."""
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    if arr.size and int(arr.min()) < 0:
        raise ValueError("varints are unsigned")
    out = np.empty(arr.size * MAX_VARINT_BYTES, dtype=np.uint8)
    return out[: _write_all(arr, out)].tobytes()


@njit(cache=True)
def _write_all(values, out):
    n = 0
    for v in values:
        while v >= 0x80:
            out[n] = (v & 0x7F) | 0x80
            v >>= 7
            n += 1
        out[n] = v
        n += 1
    return n


@njit(cache=True)
def _read_all(buf, pos, maxima, out):
    """Parse len(out) varints from buf[pos:]; returns (next pos, -1) or, at the first varint
    that is truncated, too long or over its maximum, (its start, its index)."""
    for i in range(out.size):
        start = pos
        value = np.uint64(0)
        shift = np.uint64(0)
        ok = False
        for _ in range(MAX_VARINT_BYTES):
            if pos >= buf.size:
                break
            byte = np.uint64(buf[pos])
            pos += 1
            value |= (byte & np.uint64(0x7F)) << shift
            if byte < 0x80:
                ok = True
                break
            shift += np.uint64(7)
        if not ok or value > np.uint64(maxima[i]):
            return start, i
        out[i] = np.int64(value)
    return pos, -1


class Reader:
    """Cursor over untrusted bytes; every method checks bounds and raises CodecError."""

    def __init__(self, data: bytes | memoryview, what: str = "blob"):
        self.data = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        self.pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fail(self, msg: str) -> CodecError:
        return CodecError(f"{self.what}: {msg} (at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise self.fail(f"truncated: need {n} bytes, {self.remaining} left")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def varint(self, maximum: int) -> int:
        value = shift = 0
        for _ in range(MAX_VARINT_BYTES):
            if self.remaining < 1:
                raise self.fail("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > maximum:
                    raise self.fail(f"value {value} exceeds limit {maximum}")
                return value
            shift += 7
        raise self.fail("varint too long")

    def varint_array(self, count: int, maxima: np.ndarray) -> np.ndarray:
        """`count` varints, value i at most maxima[i]; each needs >= 1 byte, checked first."""
        if count > self.remaining:
            raise self.fail(f"truncated: {count} lengths cannot fit in {self.remaining} bytes")
        out = np.empty(count, dtype=np.int64)
        buf = np.frombuffer(self.data, dtype=np.uint8)
        maxima = np.ascontiguousarray(maxima, dtype=np.int64)
        pos, bad = _read_all(buf, self.pos, maxima, out)
        self.pos = int(pos)
        if bad >= 0:  # re-read the offending varint to raise its exact error
            self.varint(int(maxima[bad]))
            raise AssertionError("unreachable: the compiled reader rejected a valid varint")
        return out

    def sized_bytes(self, maximum: int) -> bytes:
        """A varint length followed by that many bytes."""
        return self.take(self.varint(min(maximum, self.remaining)))
