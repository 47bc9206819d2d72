"""Applications that run inside an object. ``flights`` is the seed article's booking example."""

from walrelay.app import App
from walrelay.apps.flights import FlightBooking
from walrelay.apps.kv import KeyValue

APPS: dict[str, type[App]] = {"flights": FlightBooking, "kv": KeyValue}
