"""Shared pytest configuration.

Hypothesis profiles: ``ci`` (the default) is derandomized and sized so the suite stays fast on a
2-core machine; ``nightly`` runs many more random examples. Pick one with the environment variable
``HYPOTHESIS_PROFILE``, e.g. ``HYPOTHESIS_PROFILE=nightly pytest tests``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from walrelay.procs import Cluster
from walrelay_chaos import s3server as s3servers

settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, print_blob=True)
settings.register_profile("nightly", derandomize=False, max_examples=2000, deadline=None, print_blob=True)
# Mutation testing (scripts/mutate.py) runs the covering tests once per mutant: derandomized, so a
# mutant is killed or not the same way every night, and fewer examples, so 4,000 mutants fit the
# nightly hour (a property that needs more than 20 examples to see a mutant is a weak test anyway).
settings.register_profile("mutate", derandomize=True, max_examples=20, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ---------------------------------------------------------------------------------------------
# Fixtures (shared by several test modules) go below this line.
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: object) -> Iterator[Cluster]:
    """Node processes on loopback, all killed at the end (a test that leaks one fails)."""
    c = Cluster(str(tmp_path))
    try:
        yield c
    finally:
        c.close()
        for node in [*c.replicas, *c.primaries]:
            assert not node.alive, f"{node.name} outlived the test"


@pytest.fixture(scope="session")
def s3_servers() -> Iterator[list[s3servers.S3Server]]:
    """moto_server always; MinIO as well when WALRELAY_MINIO_BINARY names its binary."""
    servers = [s3servers.start_moto()]
    try:
        binary = os.environ.get("WALRELAY_MINIO_BINARY")
        if binary:
            servers.append(s3servers.start_minio(binary))
        yield servers
    finally:
        for server in servers:
            server.stop()


def s3_backends() -> list[str]:
    """The store backends archive tests run against: the directory, moto, and MinIO if given."""
    return ["dir", "moto", *(["minio"] if os.environ.get("WALRELAY_MINIO_BINARY") else [])]
