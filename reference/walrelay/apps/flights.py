"""Flight booking, the example from the seed article: one object per flight set, seats as rows."""

from __future__ import annotations

from typing import Any

from walrelay.app import App, AppError, operation
from walrelay.sql import SqlStorage


class FlightBooking(App):
    name = "flights"
    schema = (
        "CREATE TABLE IF NOT EXISTS flights (id TEXT PRIMARY KEY, seats INTEGER NOT NULL CHECK (seats > 0))",
        "CREATE TABLE IF NOT EXISTS bookings ("
        " flight TEXT NOT NULL REFERENCES flights(id), seat INTEGER NOT NULL, passenger TEXT NOT NULL,"
        " booked_at INTEGER NOT NULL, PRIMARY KEY (flight, seat))",
    )

    @operation
    def create_flight(self, sql: SqlStorage, flight: str, seats: int) -> dict[str, Any]:
        """Add a flight with this many seats (an error if it exists)."""
        if sql.exec("SELECT 1 FROM flights WHERE id = ?", flight).raw():
            raise AppError(f"flight {flight} already exists")
        sql.exec("INSERT INTO flights (id, seats) VALUES (?, ?)", flight, int(seats))
        return {"flight": flight, "seats": int(seats)}

    @operation
    def book(self, sql: SqlStorage, flight: str, seat: int, passenger: str) -> dict[str, Any]:
        """Book one seat for a passenger (an error if it is taken or does not exist)."""
        row = sql.exec("SELECT seats FROM flights WHERE id = ?", flight).raw()
        if not row:
            raise AppError(f"no flight {flight}")
        if not 1 <= int(seat) <= row[0][0]:
            raise AppError(f"flight {flight} has no seat {seat}")
        taken = sql.exec("SELECT passenger FROM bookings WHERE flight = ? AND seat = ?", flight, seat).raw()
        if taken:
            raise AppError(f"seat {seat} on {flight} is taken")
        n = sql.exec("SELECT count(*) AS n FROM bookings").one()["n"]
        sql.exec(
            "INSERT INTO bookings (flight, seat, passenger, booked_at) VALUES (?, ?, ?, ?)",
            flight,
            int(seat),
            passenger,
            n + 1,
        )
        return {"flight": flight, "seat": int(seat), "passenger": passenger}

    @operation
    def bookings(self, sql: SqlStorage, flight: str) -> list[dict[str, Any]]:
        """The flight's bookings, by seat."""
        return sql.exec("SELECT seat, passenger FROM bookings WHERE flight = ? ORDER BY seat", flight).to_array()

    @operation
    def seats_left(self, sql: SqlStorage, flight: str) -> int:
        """How many seats of the flight are not booked."""
        row = sql.exec(
            "SELECT f.seats - (SELECT count(*) FROM bookings b WHERE b.flight = f.id) AS left"
            " FROM flights f WHERE f.id = ?",
            flight,
        ).raw()
        if not row:
            raise AppError(f"no flight {flight}")
        return int(row[0][0])
