"""Small state files that say when they are damaged: JSON with a CRC-32 of its own content.

A replica's promise lives in a file of a few dozen bytes. Before issue 17 a one-character bit flip
in it (``promised_epoch`` 1 -> 19) was obeyed silently: the replica then fenced every primary the
allocator would issue for a long while, which stops the object for good. A file written here holds
``{"crc32":C,"state":{...}}`` in canonical JSON (sorted keys, no spaces, one line), where C is the
CRC-32 of the state's canonical JSON; reading checks the CRC and that the file is exactly that
canonical line (so every flipped byte is caught, even one that still parses), and names the file
when it fails, so a damaged file is refused and
repaired (the replica rebuilds the object as after a lost disk), never obeyed. CRC-32 detects every
burst of up to 32 flipped bits; it is a check against damage, not against someone who can write
the file (they could rewrite the CRC too: the data directory is trusted, the network is not).
The file is replaced durably (temp file, fsync, rename, directory fsync: ``fsutil.replace_durably``).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from walrelay.errors import WalrelayError
from walrelay.fsutil import replace_durably


class StateFileError(WalrelayError):
    """A state file is unreadable, or its content does not match its checksum."""


def _canonical(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encode_state(state: dict[str, Any]) -> bytes:
    """One line of canonical JSON: the only encoding of this state, so a reader can demand it."""
    body = {"crc32": zlib.crc32(_canonical(state)), "state": state}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"


def decode_state(data: bytes, *, what: str) -> dict[str, Any]:
    """The state ``encode_state`` wrote; StateFileError naming ``what`` if it is damaged."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StateFileError(f"{what}: not a state file ({e})") from None
    if not isinstance(body, dict) or not isinstance(body.get("state"), dict) or "crc32" not in body:
        raise StateFileError(f"{what}: not a state file (no checksummed state in it: damaged, or written by hand)")
    state, crc = body["state"], body["crc32"]
    if not isinstance(crc, int) or isinstance(crc, bool) or zlib.crc32(_canonical(state)) != crc:
        raise StateFileError(f"{what}: checksum mismatch: the file is damaged")
    if encode_state(state) != data:  # a flip that still parses to the same state (a space, a newline)
        raise StateFileError(f"{what}: not in canonical form: the file is damaged or was edited")
    return dict(state)


def write_state(path: str, state: dict[str, Any]) -> None:
    replace_durably(path, encode_state(state))


def read_state(path: str) -> dict[str, Any]:
    """The state in ``path`` (FileNotFoundError if there is none)."""
    with open(path, "rb") as f:
        data = f.read()
    return decode_state(data, what=path)
