"""The object-store contract, against every backend: the directory, moto_server, and MinIO if given.

The same tests run on each backend, so the archive can rely on exactly this behaviour and no more:
whole-object put/get, sorted prefix listing, idempotent delete, a definite "not found", and keys
that cannot escape the archive's root.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import s3_backends
from walrelay.archive.dir_store import DirStore
from walrelay.archive.s3_store import S3Store, parse_s3_url
from walrelay.archive.store import ObjectNotFoundError, ObjectStore, ObjectStoreError, TransientStoreError
from walrelay_chaos.s3server import ACCESS_KEY, SECRET_KEY, S3Server, free_port

_buckets = itertools.count(1)


@pytest.fixture(params=s3_backends())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "dir":
        yield DirStore(tmp_path / "archive")
        return
    servers: list[S3Server] = request.getfixturevalue("s3_servers")
    server = next(s for s in servers if s.name == request.param)
    url = f"{server.endpoint}/walrelay-test-{next(_buckets)}/some/prefix"
    yield S3Store(url, create_bucket=True, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


def test_put_get_roundtrip_and_overwrite_with_the_same_bytes(store: ObjectStore) -> None:
    store.put("obj/seg/0001", b"hello")
    assert store.get("obj/seg/0001") == b"hello"
    store.put("obj/seg/0001", b"hello")  # a retried (or ambiguous) PUT of the same bytes
    assert store.get("obj/seg/0001") == b"hello"
    store.put("empty", b"")
    assert store.get("empty") == b""


def test_a_large_object_survives_intact(store: ObjectStore) -> None:
    data = os.urandom(7 * 1024 * 1024 + 13)  # above minio's multipart threshold
    store.put("big", data)
    assert store.get("big") == data


def test_missing_key_is_a_definite_not_found_naming_it(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="nothing/here"):
        store.get("nothing/here")


def test_list_is_sorted_prefix_filtered_and_sized(store: ObjectStore) -> None:
    for key in ("b/2", "a/10", "a/9", "a/1", "ab", "c"):
        store.put(key, key.encode())
    assert [o.key for o in store.list()] == ["a/1", "a/10", "a/9", "ab", "b/2", "c"]
    assert [o.key for o in store.list("a/")] == ["a/1", "a/10", "a/9"]
    assert [o.key for o in store.list("a")] == ["a/1", "a/10", "a/9", "ab"]
    assert [(o.key, o.size) for o in store.list("b/")] == [("b/2", 3)]
    assert store.list("zzz") == []


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("x/y", b"1")
    store.delete("x/y")
    store.delete("x/y")
    assert store.list("x/") == []
    with pytest.raises(ObjectNotFoundError):
        store.get("x/y")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "../up", "a/../b", "a/./b", ".hidden", "sp ace", "a/", "x" * 600])
def test_bad_keys_are_refused_by_name(store: ObjectStore, key: str) -> None:
    with pytest.raises(ObjectStoreError, match="bad object key"):
        store.put(key, b"")


def test_dir_store_leaves_no_temporary_files_and_ignores_strays(tmp_path: Path) -> None:
    store = DirStore(tmp_path)
    store.put("a/b", b"1")
    (tmp_path / "a" / ".tmp-crashed-put").write_bytes(b"half")
    assert [o.key for o in store.list()] == ["a/b"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [".tmp-crashed-put", "b"]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("s3://bucket/x", "expected http(s)://"),
        ("http://127.0.0.1:9000", "no bucket"),
        ("http://key:secret@127.0.0.1:9000/b", "not in the URL"),
        ("http://127.0.0.1:9000/bucket/../x", "bad object key"),
        ("http://127.0.0.1:9000/B", "bucket name"),
    ],
)
def test_bad_s3_addresses_get_a_clear_error(url: str, fragment: str) -> None:
    with pytest.raises(ObjectStoreError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_s3_url(url)


def test_credentials_never_appear_in_messages(s3_servers: list[S3Server]) -> None:
    url = f"{s3_servers[0].endpoint}/walrelay-test-{next(_buckets)}"
    store = S3Store(url, create_bucket=True, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    with pytest.raises(ObjectNotFoundError) as info:
        store.get("missing")
    assert SECRET_KEY not in str(info.value) and SECRET_KEY not in store.describe()


def test_an_unreachable_server_is_a_transient_error_after_bounded_retries() -> None:
    store = S3Store(
        f"http://127.0.0.1:{free_port()}/bucket", attempts=3, backoff_s=0.01, access_key="k", secret_key="s"
    )
    with pytest.raises(TransientStoreError, match="no answer after 3 attempts"):
        store.put("k", b"v")


def test_a_missing_bucket_is_a_definite_error(s3_servers: list[S3Server]) -> None:
    store = S3Store(f"{s3_servers[0].endpoint}/no-such-bucket-here", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    with pytest.raises(ObjectStoreError, match="does not exist") as info:
        store.get("k")
    assert not isinstance(info.value, TransientStoreError)
