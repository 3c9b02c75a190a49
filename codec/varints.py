"""LEB128 varints and a bounds-checked reader: the only way the codec parses untrusted bytes.

Every read says how much it may take; running past the end, or a value above its stated maximum,
raises CodecError before anything is allocated from that value.
"""

from __future__ import annotations

import numpy as np

from codec import kernels
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
    arr = np.ascontiguousarray(arr)
    out = np.empty(arr.size * MAX_VARINT_BYTES, dtype=np.uint8)
    n = kernels.lib.pilc_varint_write(kernels.ptr(arr), arr.size, kernels.ptr(out))
    return out[:n].tobytes()


class Reader:
    """Cursor over untrusted bytes; every method checks bounds and raises CodecError."""

    def __init__(self, data: bytes | memoryview, what: str = "blob"):
        self.data = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        self.pos = 0
        self.what = what
        self._array: np.ndarray | None = None

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
        if self._array is None:  # the bytes as an array, once per reader
            self._array = np.frombuffer(self.data, dtype=np.uint8)
        buf = self._array
        maxima = np.ascontiguousarray(maxima, dtype=np.int64)
        bad_at = np.zeros(1, dtype=np.int64)
        p = kernels.ptr
        pos = kernels.lib.pilc_varint_read(
            p(buf), buf.size, self.pos, p(maxima), count, p(out), p(bad_at)
        )
        bad = int(bad_at[0])
        self.pos = int(pos)
        if bad >= 0:  # re-read the offending varint to raise its exact error
            self.varint(int(maxima[bad]))
            raise AssertionError("unreachable: the compiled reader rejected a valid varint")
        return out

    def sized_bytes(self, maximum: int) -> bytes:
        """A varint length followed by that many bytes."""
        return self.take(self.varint(min(maximum, self.remaining)))
