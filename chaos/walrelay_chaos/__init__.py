"""The chaos harness and conformance suite (issue 6, started): schedules as data
(``schedule``), the simulated cluster and its checkers (``sim``), and replay files (``replay``).
See chaos/README.md for what is built and what is not."""
