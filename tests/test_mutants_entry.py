"""Tests written for survivors of mutation testing of ``walrelay.entry`` (scripts/mutate.py).

Each test names the bug (the mutant) it stands for; each was seen failing with that mutant
planted in a copy of the package.
"""

from __future__ import annotations

import re

import pytest

from walrelay.entry import GENESIS_CHAIN, decode, encode
from walrelay.errors import EntryFormatError

PAGE = 512
FIELDS: dict[str, int] = {"epoch": 1, "seq": 1, "timestamp_us": 0, "db_pages": 1, "db_checksum": 0}


def encode_with(**changes: int) -> None:
    values = {**FIELDS, **changes}
    encode(
        epoch=values["epoch"],
        seq=values["seq"],
        timestamp_us=values["timestamp_us"],
        page_size=PAGE,
        db_pages=values["db_pages"],
        db_checksum=values["db_checksum"],
        frames={1: bytes(PAGE)},
        prev_chain=GENESIS_CHAIN,
    )


@pytest.mark.parametrize(
    ("name", "bits"),
    [("epoch", 64), ("seq", 64), ("timestamp_us", 64), ("db_pages", 32), ("db_checksum", 64)],
)
def test_an_integer_one_past_its_field_is_refused_naming_the_field_and_its_width(name: str, bits: int) -> None:
    """Bugs: a field's name or width misspelt in encode's range table (mutants ``"XXseqXX"``,
    ``"SEQ"``, ``("seq", seq, 65)``, ...): the caller would get a ValueError naming no field, or
    (one bit too wide) a ``struct.error`` from packing instead of the promised ValueError."""
    value = 1 << bits
    message = f"{name} {value} does not fit an unsigned {bits}-bit field"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        encode_with(**{name: value})
    encode_with(**{name: value - 1})  # the largest value fits


def test_decode_names_an_entry_by_default() -> None:
    """Bug: decode's default ``what`` misspelt (mutants ``"XXentryXX"``, ``"ENTRY"``): every
    error about a bad entry decoded without a name would start with a garbled word."""
    with pytest.raises(EntryFormatError, match=r"^entry: 3 bytes is shorter than the 72-byte minimum$"):
        decode(b"abc")


def test_a_prev_chain_of_the_wrong_length_is_refused_with_its_message() -> None:
    """Bug: the refusal of a short ``prev_chain`` garbled (mutant ``"XXprev_chain must be 16
    bytesXX"``): the caller's error would not say what was wrong."""
    with pytest.raises(ValueError, match=r"^prev_chain must be 16 bytes$"):
        encode(
            epoch=1,
            seq=1,
            timestamp_us=0,
            page_size=PAGE,
            db_pages=1,
            db_checksum=0,
            frames={1: bytes(PAGE)},
            prev_chain=bytes(15),
        )
