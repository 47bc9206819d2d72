"""The S3 object store, through the ``minio`` client's public API (MinIO, AWS S3, R2, moto, ...).

Address: ``http(s)://HOST[:PORT]/BUCKET[/PREFIX]`` (path-style, which every S3-protocol server
accepts). Credentials come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
optionally ``AWS_SESSION_TOKEN`` and ``AWS_REGION``) and never appear in messages or logs.

Retries are ours, not urllib3's: the client is given a pool with retries off and short timeouts,
and every operation retries 5xx answers, SlowDown, timeouts and broken connections with
exponential backoff, then raises ``TransientStoreError``. Definite answers (NoSuchKey, AccessDenied,
NoSuchBucket) are not retried. A PUT whose reply was lost may have been stored (an ambiguous PUT);
the archive writes each key with one content only, so retrying it is harmless.
"""

from __future__ import annotations

import io
import os
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error, ServerError

from walrelay.archive.store import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStoreError,
    TransientStoreError,
    check_key,
    check_prefix,
)
from walrelay.redact import redact

T = TypeVar("T")

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

# S3 error codes that mean "try again", whatever the HTTP status says.
_TRANSIENT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted", "ServiceFailure"}
)


def parse_s3_url(url: str) -> tuple[str, bool, str, str]:
    """``http(s)://HOST[:PORT]/BUCKET[/PREFIX]`` -> (endpoint, secure, bucket, prefix)."""
    shown = redact(url)  # the address as messages quote it: never with its credentials
    if "@" in url:  # credentials (a secret may even hold a '/', which ends the netloc early)
        raise ObjectStoreError(
            f"bad S3 address {shown!r}: put credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, not in the URL"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise ObjectStoreError(f"bad S3 address {shown!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ObjectStoreError(f"bad S3 address {shown!r}: expected http(s)://HOST[:PORT]/BUCKET[/PREFIX]")
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    if not bucket:
        raise ObjectStoreError(f"bad S3 address {shown!r}: no bucket (expected http(s)://HOST[:PORT]/BUCKET[/PREFIX])")
    if not _BUCKET.fullmatch(bucket):
        raise ObjectStoreError(
            f"bad S3 address {shown!r}: bucket name {bucket!r} must be 3-63 characters of a-z, 0-9, '.' and '-'"
        )
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix)
    return parts.netloc, parts.scheme == "https", bucket, prefix


class S3Store:
    def __init__(
        self,
        url: str,
        *,
        attempts: int = 6,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        timeout_s: float = 30.0,
        create_bucket: bool = False,
        access_key: str | None = None,
        secret_key: str | None = None,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """``access_key``/``secret_key`` override the environment (tests against a local server).
        ``client``, ``sleep`` and ``rng`` are for the deterministic simulation: a client with the
        ``Minio`` methods this class calls (walrelay_chaos.fakes3), the backoff's sleep, and the
        backoff's jitter; by default the real ``Minio`` client, ``time.sleep`` and ``random``."""
        endpoint, secure, self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"{'https' if secure else 'http'}://{endpoint}/{self.bucket}" + (
            f"/{self.prefix}" if self.prefix else ""
        )
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.rng = rng or random.Random()
        if client is not None:
            self.client = client
            if create_bucket:
                self._retrying("create bucket", self._make_bucket)
            return
        pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(5.0, timeout_s), read=timeout_s),
            retries=False,
            maxsize=4,
        )
        self.client = Minio(
            endpoint,
            access_key=access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
            session_token=os.environ.get("AWS_SESSION_TOKEN"),
            secure=secure,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            http_client=pool,
        )
        if create_bucket:
            self._retrying("create bucket", self._make_bucket)

    def _make_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def describe(self) -> str:
        return f"S3 {self.url}"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- retries -------------------------------------------------------------------------------

    def _retrying(self, what: str, op: Callable[[], T]) -> T:
        delay = self.backoff_s
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                return op()
            except S3Error as e:
                if e.code == "NoSuchKey":
                    raise ObjectNotFoundError(f"{what}: no such object in {self.describe()}") from None
                if e.code == "NoSuchBucket":
                    raise ObjectStoreError(
                        f"{what}: bucket {self.bucket!r} does not exist at {self.describe()}"
                    ) from None
                if e.code not in _TRANSIENT_CODES:
                    raise ObjectStoreError(f"{what} in {self.describe()} failed: {e.code}: {e.message}") from None
                last = f"{e.code}: {e.message}"
            except ServerError as e:  # a 5xx without an S3 error body
                last = f"HTTP {e.status_code}"
            except (urllib3.exceptions.HTTPError, OSError) as e:
                last = f"{type(e).__name__}: {e}"
            except (MinioException, ValueError) as e:
                raise ObjectStoreError(f"{what} in {self.describe()} failed: {e}") from None
            if attempt < self.attempts:
                self.sleep(delay * self.rng.uniform(0.5, 1.0))
                delay = min(delay * 2, self.max_backoff_s)
        raise TransientStoreError(f"{what} in {self.describe()}: no answer after {self.attempts} attempts ({last})")

    # -- operations ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        name = self._name(key)
        self._retrying(
            f"put {key}",
            lambda: self.client.put_object(self.bucket, name, io.BytesIO(data), len(data)),
        )

    def get(self, key: str) -> bytes:
        name = self._name(key)

        def fetch() -> bytes:
            resp = self.client.get_object(self.bucket, name)
            try:
                return bytes(resp.read())
            finally:
                resp.close()
                resp.release_conn()

        return self._retrying(f"get {key}", fetch)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        check_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0

        def collect() -> list[ObjectInfo]:
            return [
                ObjectInfo(str(o.object_name)[strip:], int(o.size or 0))
                for o in self.client.list_objects(self.bucket, prefix=full or None, recursive=True)
                if o.object_name is not None and not o.is_dir
            ]

        out = self._retrying(f"list {prefix!r}", collect)
        out.sort(key=lambda o: o.key)
        return out

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._retrying(f"delete {key}", lambda: self.client.remove_object(self.bucket, name))
