"""A deterministic stand-in for the ``minio`` client, so the simulation runs the real S3 store code.

The simulation used to archive through a directory store, so ``walrelay.archive.s3_store`` (its
retries and backoff, the mapping of S3 error codes, 5xx answers and dropped connections to
walrelay's errors, key prefixes, listings) ran only in the process tests, never under the
simulation's faults (issue 16). This fake sits at the client's boundary: ``S3Store(client=
FakeMinio(), sleep=..., rng=...)`` keeps all of walrelay's own code and replaces only the HTTP.

Faults, by count (so a run depends only on its seed):

* ``down``: every PUT fails; by turns a 5xx without a body (``ServerError``), a dropped
  connection (a ``urllib3`` error) and an S3 ``SlowDown`` (503); with ``ambiguous``, every
  other failing PUT stores the object first (the answer was lost). Listings fail part way (after
  the first page) while down, so a listing that is retried must start again.
* GETs and deletes keep working (the simulation's store outages are about uploads).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from minio.error import S3Error, ServerError

PAGE = 3  # objects per listing page: small, so that listings have pages to fail between


@dataclass
class FakeObject:
    object_name: str
    size: int
    is_dir: bool = False


def _s3_error(code: str, message: str, bucket: str, name: str) -> S3Error:
    """An S3 error answer as minio raises it (no HTTP response: the store reads code and message)."""
    none: Any = None
    return S3Error(none, code, message, f"/{bucket}/{name}", "sim", "sim", bucket, name)


class _Response:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class FakeMinio:
    def __init__(self) -> None:
        self.buckets: set[str] = set()
        self.objects: dict[tuple[str, str], bytes] = {}
        self.down = False
        self.ambiguous = True
        self.failed = 0  # PUTs failed while down
        self.stored_ambiguously = 0

    # -- faults --------------------------------------------------------------------------------

    def _failure(self, bucket: str, name: str) -> Exception:
        kind = self.failed % 3
        if kind == 0:
            return _s3_error("SlowDown", "Please reduce your request rate.", bucket, name)
        if kind == 1:
            return ServerError("server failed to respond", 502)
        return urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))

    # -- the Minio methods S3Store calls ---------------------------------------------------------

    def bucket_exists(self, bucket: str) -> bool:
        return bucket in self.buckets

    def make_bucket(self, bucket: str) -> None:
        self.buckets.add(bucket)

    def _bucket(self, bucket: str, name: str = "") -> None:
        if bucket not in self.buckets:
            raise _s3_error("NoSuchBucket", "The specified bucket does not exist", bucket, name)

    def put_object(self, bucket: str, name: str, data: io.BytesIO, length: int) -> None:
        self._bucket(bucket, name)
        body = data.read()
        assert len(body) == length, (len(body), length)
        if self.down:
            self.failed += 1
            if self.ambiguous and self.failed % 2:
                self.objects[(bucket, name)] = body  # stored; the answer is lost
                self.stored_ambiguously += 1
            raise self._failure(bucket, name)
        self.objects[(bucket, name)] = body

    def get_object(self, bucket: str, name: str) -> _Response:
        self._bucket(bucket, name)
        try:
            return _Response(self.objects[(bucket, name)])
        except KeyError:
            raise _s3_error("NoSuchKey", "The specified key does not exist.", bucket, name) from None

    def list_objects(self, bucket: str, prefix: str | None = None, recursive: bool = False) -> Iterator[FakeObject]:
        self._bucket(bucket)
        assert recursive, "S3Store lists recursively"
        names = sorted(n for (b, n) in self.objects if b == bucket and n.startswith(prefix or ""))
        for i, name in enumerate(names):
            if self.down and i == PAGE:  # the next page's request fails
                raise ServerError("server failed to respond", 503)
            yield FakeObject(name, len(self.objects[(bucket, name)]))

    def remove_object(self, bucket: str, name: str) -> None:
        self._bucket(bucket, name)
        self.objects.pop((bucket, name), None)  # S3 deletes are idempotent


def describe_faults(client: Any) -> str:
    return f"{client.failed} failed PUTs, {client.stored_ambiguously} stored ambiguously"
