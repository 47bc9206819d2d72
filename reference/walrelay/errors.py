"""Error types. Each one names what is wrong so a user can act on it without a traceback."""


class WalrelayError(Exception):
    """Base class: every error walrelay raises on purpose derives from this."""


class EntryFormatError(WalrelayError):
    """A log entry's bytes are malformed, truncated, of an unknown version, or fail a checksum."""


class UnsupportedVersionError(EntryFormatError):
    """Well-formed bytes of a format version this build does not read (written by a newer build?)."""


class ChainError(WalrelayError):
    """An entry does not follow from the previous one (chain hash mismatch): divergence or corruption."""


class CaptureError(WalrelayError):
    """The WAL did not look the way SQLite documents it (bad salt, bad frame checksum, torn commit)."""


class TransactionTooLargeError(WalrelayError):
    """A transaction wrote more pages than one log entry may hold: rolled back, nothing logged."""


class ProtocolError(WalrelayError):
    """A peer sent a frame that is malformed, oversized, truncated or of an unsupported version."""


class StaleEpochError(WalrelayError):
    """A replica has promised a higher epoch than the one this request carries (fencing)."""

    def __init__(self, sent_epoch: int, promised_epoch: int) -> None:
        super().__init__(f"epoch {sent_epoch} is fenced: the replica has promised epoch {promised_epoch}")
        self.sent_epoch = sent_epoch
        self.promised_epoch = promised_epoch


class NotDurableError(WalrelayError):
    """A write could not be made durable on a quorum before its deadline; the object reset.

    The write may or may not survive (it is *unknown*, not failed): it was committed locally
    and sent, but fewer than a quorum of replicas confirmed it in time.
    """


class ObjectResetError(WalrelayError):
    """The object reset after a durability failure and no longer serves requests."""
