"""The chaos harness and conformance suite (issue 6). Not written yet: this package only reserves
the name so the layout shows where it goes; nothing here is imported by the reference."""
