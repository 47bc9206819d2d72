"""Errors of the TLC runner.

They derive from WalrelayError so the CLI prints the message and exits 1 without a traceback.
Each message names the file, key or variable to fix, because the person reading it is usually
the spec author who just added a config, not someone who knows this runner's internals.
"""

from __future__ import annotations

from walrelay.errors import WalrelayError


class TlcError(WalrelayError):
    """Base class for everything the TLC runner refuses to do."""


class ConfigError(TlcError):
    """A .cfg file has a bad ``\\* key: value`` header or a statement TLC 2.15 misreads."""


class TlcSetupError(TlcError):
    """Java or tla2tools.jar is missing, too old, or misconfigured; nothing was model-checked."""


class UnknownConfigError(ConfigError):
    """A config named on the command line does not exist: a usage error (exit 2), not a bad file."""
