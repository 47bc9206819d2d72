"""Real S3-protocol server processes on loopback for the archive tests.

``moto_server`` (from ``moto[server]``, installed with the dev extras) always; a real MinIO server
too when ``WALRELAY_MINIO_BINARY`` names its binary. Each runs on a free port with its data in a
temporary directory and is killed when the test session (or chaos campaign) ends, on Linux even if
its parent is killed by SIGKILL (``walrelay.procs.die_with_parent``: start one from the main thread).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from walrelay.procs import parent_death_hook

ACCESS_KEY = "walrelay-test"
SECRET_KEY = "walrelay-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], name: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode} before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {limit_s:g} s")


@dataclass
class S3Server:
    name: str
    endpoint: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    data_dir: str | None = None
    buckets: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_moto() -> S3Server:
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=parent_death_hook(),
    )
    _wait_listening(port, proc, "moto_server")
    return S3Server("moto", f"http://127.0.0.1:{port}", proc)


def start_minio(binary: str) -> S3Server:
    port = free_port()
    data = tempfile.mkdtemp(prefix="walrelay-minio-")
    env = {**os.environ, "MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}
    proc = subprocess.Popen(
        [binary, "server", data, "--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        preexec_fn=parent_death_hook(),
    )
    _wait_listening(port, proc, f"MinIO ({binary})")
    return S3Server("minio", f"http://127.0.0.1:{port}", proc, data_dir=data)
