"""Manifests, floors and retirement marks (docs/archive-format.md §10): deterministic bytes, and a
reader that rejects anything but the canonical form, naming the object."""

from __future__ import annotations

import json

import pytest

from walrelay.archive.format import ArchiveFormatError, parse_key
from walrelay.archive.manifest import Floor, Manifest, Vouched, check_retired, manifest_key, retired_json

M = Manifest(
    branch=7,
    writer=9,
    n=3,
    prev="o/b00000007/manifest/00000000000000000009-00000000000000000002",
    prev_through=40,
    objects=(Vouched.of("o/b00000007/seg/00000000000000000041-00000000000000000044", b"x" * 10),),
    through=44,
    through_chain=bytes(range(16)),
)


def test_a_manifest_round_trips_and_its_key_sorts_by_writer_then_number() -> None:
    assert Manifest.from_json(M.to_json(), what="m") == M
    assert parse_key(M.key("o")) == parse_key(manifest_key("o", 7, 9, 3))
    k = parse_key(M.key("o"))
    assert (k.kind, k.branch, k.first, k.last) == ("manifest", 7, 9, 3)
    assert manifest_key("o", 7, 9, 10) > manifest_key("o", 7, 9, 3) and manifest_key("o", 7, 10, 1) > M.key("o")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda b: b.update(prev=None), "prev and prev_through"),
        (lambda b: b.update(n=0), "n must be at least 1"),
        (lambda b: b.update(through=-1), "through must be a non-negative integer"),
        (lambda b: b.update(through=True), "through must be a non-negative integer"),
        (lambda b: b.update(kind="floor"), "kind 'floor'"),
        (lambda b: b.update(format=2), "format 2"),
        (lambda b: b["objects"][0].update(blake2b="00"), "bad vouched object"),
        (lambda b: b.pop("created_us"), "created_us"),
        (lambda b: b.update(through_chain="zz" * 16), "non-hexadecimal"),
    ],
)
def test_a_manifest_that_breaks_a_rule_is_named(change: object, fragment: str) -> None:
    body = json.loads(M.to_json())
    change(body)  # type: ignore[operator]
    data = (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()
    with pytest.raises(ArchiveFormatError, match=r"^the-key: ") as e:
        Manifest.from_json(data, what="the-key")
    assert fragment in str(e.value)


def test_only_the_canonical_bytes_are_a_manifest() -> None:
    spaced = json.dumps(json.loads(M.to_json()), sort_keys=True).encode() + b"\n"
    with pytest.raises(ArchiveFormatError, match="canonical form"):
        Manifest.from_json(spaced, what="m")
    with pytest.raises(ArchiveFormatError, match="not JSON"):
        Manifest.from_json(M.to_json()[:-5], what="m")


def test_floors_and_retirement_marks() -> None:
    f = Floor(3, 8, bytes(16), 123, Vouched.of("o/b00000003/snap/00000000000000000008", b"snap"))
    assert Floor.from_json(f.to_json(), what="f") == f
    assert parse_key(f.key("o")).kind == "floor"
    check_retired(retired_json(3), 3, what="r")
    with pytest.raises(ArchiveFormatError, match="not the retirement mark of branch 4"):
        check_retired(retired_json(3), 4, what="r")
