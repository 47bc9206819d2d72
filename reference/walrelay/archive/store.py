"""The object-store interface the archive is written against, and what both backends share.

Deliberately small: put, get, list, delete of whole objects under string keys. Nothing in the
archive depends on conditional writes (minio 7.2's ``put_object`` cannot send ``If-None-Match``;
it silently turns such headers into ``x-amz-meta-*`` metadata), versioning, or listing being
strongly consistent with a just-finished put beyond what S3 now guarantees: keys are
deterministic, an object is only ever written with the same bytes (so a retried or ambiguous
PUT is harmless), and fencing comes from the replicas, not from the store (docs/archive-format.md).

Calls are synchronous (both backends block on I/O); the archiver runs them in a worker thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from walrelay.errors import WalrelayError

# Printable, URL-safe, no "." or ".." segments, no leading "/": the same key works as a file path
# under a directory and as an S3 object name, and cannot escape the archive's root.
_KEY = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*(/[A-Za-z0-9_=+-][A-Za-z0-9._=+-]*)*")
MAX_KEY_LENGTH = 512


class ObjectStoreError(WalrelayError):
    """An object-store operation failed, for a reason named in the message."""


class ObjectNotFoundError(ObjectStoreError):
    """The key does not exist (a definite answer, unlike a transient failure)."""


class TransientStoreError(ObjectStoreError):
    """The store did not answer usefully (5xx, SlowDown, timeout) even after retries.

    The operation may or may not have taken effect: a PUT may be stored although its reply was
    lost (an *ambiguous* PUT). Callers retry with the same bytes, which is harmless.
    """


def check_key(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key) or any(p in (".", "..") for p in key.split("/")):
        raise ObjectStoreError(
            f"bad object key {key!r}: expected segments of [A-Za-z0-9._=+-] joined by '/', "
            f"not starting with '.', at most {MAX_KEY_LENGTH} characters"
        )
    return key


def check_prefix(prefix: str) -> str:
    """A list prefix: a key, a key followed by '/', or empty (everything)."""
    if prefix:
        check_key(prefix.rstrip("/") or "x/")
    return prefix


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` durably (replacing what is there)."""
        ...

    def get(self, key: str) -> bytes:
        """The whole object; ObjectNotFoundError if there is none."""
        ...

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (deletes get retried too)."""
        ...

    def describe(self) -> str:
        """Where this store is, for messages: never credentials."""
        ...
