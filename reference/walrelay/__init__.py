"""walrelay: quorum-replicated SQLite with a WAL archive and exact point-in-time recovery.

The package is split along one line: pure protocol logic (state machines that take an
event and return effects) versus the I/O that executes those effects (trio tasks, sockets,
files). See ``docs/architecture.md`` for the map.
"""

__version__ = "0.1.0"
