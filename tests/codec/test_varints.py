"""The compiled varint writer and array reader against the one-at-a-time reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec import CodecError, varints

UINT63 = st.integers(min_value=0, max_value=2**63 - 1)


@given(st.lists(UINT63, max_size=40))
def test_array_writer_and_reader_match_single_varints(values):
    blob = varints.encode(values)
    assert blob == b"".join(varints.encode_one(v) for v in values)
    reader = varints.Reader(blob + b"tail")
    got = reader.varint_array(len(values), np.full(len(values), 2**63 - 1))
    assert got.tolist() == values
    assert reader.take(4) == b"tail"


@pytest.mark.parametrize(
    ("blob", "maximum", "message", "at"),
    [
        (varints.encode([5, 300]) [:-1], 2**63 - 1, "truncated varint", 2),
        (varints.encode([5, 300]), 299, "value 300 exceeds limit 299", 3),
        (varints.encode([5]) + b"\xff" * 10, 2**63 - 1, "varint too long", 10),
    ],
)  # fmt: skip
def test_array_reader_raises_the_single_reader_error(blob, maximum, message, at):
    with pytest.raises(CodecError, match=f"{message} \\(at byte {at}\\)"):
        varints.Reader(blob).varint_array(2, np.full(2, maximum))


def test_writer_refuses_negative_values():
    with pytest.raises(ValueError, match="unsigned"):
        varints.encode([1, -1])
