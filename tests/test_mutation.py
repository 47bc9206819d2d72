"""The mutation-testing habit cannot rot: CI runs ``just mutate --sample`` (mutmut on two fully
triaged modules, about 10 s) and fails on any survivor that is neither killed nor listed as
equivalent in tests/mutation/equivalent.toml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from walrelay_chaos.pace import budget

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "mutate.py"


def _run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--sample", "--check", "--scratch", str(tmp_path / "scratch"),
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=budget(900),
    )  # fmt: skip
    body = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else []
    return proc, body


def test_every_mutant_of_the_sample_is_killed_or_listed_as_equivalent(tmp_path: Path) -> None:
    proc, body = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert [m["module"] for m in body] == ["fsutil", "placement"]
    for m in body:
        assert m["total"] > 20 and m["killed"] > 0 and m["no_tests"] == 0 and m["other"] == 0, m
        assert all(s["reason"] for s in m["survivors"]), m


def test_a_survivor_not_listed_fails_the_check_and_is_shown_with_its_diff(tmp_path: Path) -> None:
    """Without the list, the sample's equivalent mutants are survivors to triage: --check exits 1
    and the report shows each with file:line and the diff."""
    empty = tmp_path / "none.toml"
    empty.write_text("")
    proc, _ = _run(tmp_path, "--equivalents", str(empty))
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "survivors not triaged" in report and "### reference/walrelay/fsutil.py:" in report
    assert '+    fd, tmp = tempfile.mkstemp(prefix=".TMP-", dir=directory)' in report


def test_the_nightly_groups_cover_every_module_once() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("walrelay_mutate_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    mutate = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mutate  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(mutate)
    finally:
        del sys.modules[spec.name]
    assert sorted(m for g in mutate.NIGHTLY_GROUPS for m in g) == sorted(mutate.MODULES)
    assert set(mutate.SAMPLE) <= set(mutate.MODULES)
