"""The apps take their arguments as they are typed, never coerced (issue 17, point 4).

Before, kv's ``put`` stored NaN as the string "nan" and null as "None", took ``true`` as the key
1, and flights' ``book`` of seat 2.5 failed with "UNIQUE constraint failed" (SQLite's message for
what was really a wrong type). ``@operation`` now checks every argument against the operation's
annotations before it runs: a wrong count or a wrong JSON type is a ``BadRequest`` naming the
argument, and nothing is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from walrelay.app import App
from walrelay.apps.flights import FlightBooking
from walrelay.apps.kv import KeyValue
from walrelay.object_runtime import ObjectRuntime
from walrelay.primary import PrimaryConfig, PrimaryEffect, PrimaryState


def _runtime(path: Path, app: App) -> tuple[ObjectRuntime, PrimaryState]:
    state = PrimaryState(PrimaryConfig(epoch=1, replicas=1, quorum=1))
    effects: list[PrimaryEffect] = []
    return ObjectRuntime(str(path), app, state, effects.extend, monotonic_us=lambda: 0), state


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([True, "v"], "k must be an integer, got a boolean"),
        ([1.5, "v"], "k must be an integer, got a number"),
        (["1", "v"], "k must be an integer, got a string"),
        ([None, "v"], "k must be an integer, got null"),
        ([1, math.nan], "v must be a string, got the non-finite number nan"),
        ([1, None], "v must be a string, got null"),
        ([1, 7], "v must be a string, got an integer"),
        ([1, ["a"]], "v must be a string, got an array"),
        ([1], "put takes 2 argument(s) (k: int, v: str), got 1"),
        ([1, "v", "w"], "put takes 2 argument(s) (k: int, v: str), got 3"),
    ],
)
def test_kv_put_refuses_a_wrong_type_or_count_and_writes_nothing(tmp_path: Path, args: list[Any], says: str) -> None:
    rt, state = _runtime(tmp_path / "kv.db", KeyValue())
    try:
        before = state.last_seq
        out = rt.run("put", args)
        assert not out.ok and out.value["type"] == "BadRequest", out.value
        assert says in out.value["message"], out.value["message"]
        assert state.last_seq == before  # nothing became an entry
        assert rt.run("get", [1]).value is None
        good = rt.run("put", [1, "v"])
        assert good.ok and state.last_seq == before + 1 and rt.run("get", [1]).value == "v"
    finally:
        rt.close()


def test_flights_book_refuses_a_fractional_seat_by_its_type_not_by_a_constraint(tmp_path: Path) -> None:
    rt, _ = _runtime(tmp_path / "f.db", FlightBooking())
    try:
        assert rt.run("create_flight", ["AB1", 3]).ok
        assert rt.run("book", ["AB1", 2, "ann"]).ok
        out = rt.run("book", ["AB1", 2.5, "bob"])
        assert not out.ok and out.value == {
            "type": "BadRequest",
            "message": "book: seat must be an integer, got a number (2.5)",
        }
        out = rt.run("create_flight", ["AB2", True])
        assert not out.ok and out.value["type"] == "BadRequest" and "seats must be an integer" in out.value["message"]
        assert rt.run("seats_left", ["AB1"]).value == 2
    finally:
        rt.close()
