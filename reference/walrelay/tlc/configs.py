"""Read TLC .cfg files: the ``\\* key: value`` header (our contract) and the names they check.

The header lives in the .cfg itself, as TLC comments, so one file says both what TLC checks and
what result we expect; a mutant cannot drift away from its expectation. The format is documented
in the package docstring (``walrelay.tlc``). We also collect the INVARIANT and PROPERTY names so
that ``expect: violation X`` can be checked against them before TLC starts (a typo in X would
otherwise only show up as a confusing "wrong invariant" failure after the run), and so that an
unnamed temporal violation can be attributed when the file checks exactly one property.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from walrelay.tlc.errors import ConfigError, UnknownConfigError

SUITES = ("ci", "deep")
KNOWN_KEYS = ("module", "expect", "suite", "deadlock", "timeout", "simulate", "about")
REQUIRED_KEYS = ("module", "expect", "suite")

# Statements TLC 2.15 misreads inside a .cfg (it takes them for invariant names); see tlcproc.py.
MISREAD_STATEMENTS = {
    "CHECK_DEADLOCK": "use the '\\* deadlock: on|off' header instead",
    "ALIAS": "TLC 2.15 reads it as an invariant name",
    "POSTCONDITION": "TLC 2.15 reads it as an invariant name",
}
_KEYWORDS = {
    "CONSTANT",
    "CONSTANTS",
    "INIT",
    "NEXT",
    "SPECIFICATION",
    "INVARIANT",
    "INVARIANTS",
    "PROPERTY",
    "PROPERTIES",
    "SYMMETRY",
    "VIEW",
    "CONSTRAINT",
    "CONSTRAINTS",
    "ACTION_CONSTRAINT",
    "ACTION_CONSTRAINTS",
    *MISREAD_STATEMENTS,
}
_HEADER_RE = re.compile(r"^\\\*\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(.*?)\s*$")
_IDENT_RE = re.compile(r"^[A-Za-z0-9_]*[A-Za-z][A-Za-z0-9_]*$")
_TOKEN_RE = re.compile(r'"[^"]*"|[A-Za-z0-9_]+|\S')
_BLOCK_COMMENT_RE = re.compile(r"\(\*.*?\*\)", re.DOTALL)
_LINE_COMMENT_RE = re.compile(r"\\\*[^\n]*")


@dataclass(frozen=True)
class Expectation:
    """What TLC must report: ``ok``, or the named invariant/property violated (mutant or witness)."""

    kind: Literal["ok", "violation", "witness"]
    name: str | None = None

    def __str__(self) -> str:
        return self.kind if self.name is None else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Simulation:
    """TLC's random simulation instead of exhaustive search (``\\* simulate: depth=N seed=S traces=K``):
    ``traces`` behaviours of up to ``depth`` steps, drawn from ``seed`` on one worker
    (``-simulate num=K -depth N -seed S``). The same behaviours on every machine: a slow one takes
    longer, it never checks less. For models too big to search exhaustively in CI."""

    depth: int
    seed: int
    traces: int


@dataclass(frozen=True)
class ModelConfig:
    """One .cfg file with its parsed header and the names it asks TLC to check."""

    path: Path
    module: str
    expect: Expectation
    suite: str
    check_deadlock: bool
    timeout: float | None
    about: str
    invariants: tuple[str, ...]
    properties: tuple[str, ...]
    simulate: Simulation | None = None

    @property
    def name(self) -> str:
        return self.path.stem


def _parse_expect(value: str, where: str) -> Expectation:
    parts = value.split()
    if parts == ["ok"]:
        return Expectation("ok")
    if len(parts) == 2 and parts[0] in ("violation", "witness") and _IDENT_RE.match(parts[1]):
        return Expectation("violation" if parts[0] == "violation" else "witness", parts[1])
    raise ConfigError(f"{where}: bad 'expect: {value}'; use 'ok', 'violation InvName' or 'witness InvName'")


def _parse_timeout(value: str, where: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{where}: bad 'timeout: {value}'; use a number of seconds > 0")
    return seconds


def _parse_simulate(value: str, where: str) -> Simulation:
    fields = dict(part.split("=", 1) for part in value.split() if "=" in part)
    try:
        sim: Simulation | None = Simulation(int(fields["depth"]), int(fields["seed"]), int(fields["traces"]))
    except (KeyError, ValueError):
        sim = None
    well_formed = len(fields) == 3 and len(value.split()) == 3
    if sim is None or not well_formed or sim.depth < 1 or sim.seed < 0 or sim.traces < 1:
        raise ConfigError(f"{where}: bad 'simulate: {value}'; use 'depth=N seed=S traces=K' (N >= 1, S >= 0, K >= 1)")
    return sim


def split_header(text: str, where: str) -> tuple[dict[str, str], str]:
    """Split a .cfg into its header keys and the TLC statements after it.

    The header is every line before the first TLC statement. In it, ``\\* key: value`` lines are
    keys (each known, at most once); other comment lines and blank lines are free text.
    """
    header: dict[str, str] = {}
    lines = text.splitlines()
    body_start = len(lines)
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("\\*"):
            body_start = i
            break
        m = _HEADER_RE.match(line)
        if m is None:
            continue
        key, value = m.group(1), m.group(2)
        if key not in KNOWN_KEYS:
            raise ConfigError(f"{where}: unknown header key '{key}' (known: {', '.join(KNOWN_KEYS)})")
        if key in header:
            raise ConfigError(f"{where}: header key '{key}' appears twice")
        header[key] = value
    body = "\n".join(lines[body_start:])
    for raw in lines[body_start:]:
        m = _HEADER_RE.match(raw.strip())
        if m is not None and m.group(1) in KNOWN_KEYS:
            raise ConfigError(
                f"{where}: header key '{m.group(1)}' comes after the first TLC statement; move it to the top"
            )
    for key in REQUIRED_KEYS:
        if key not in header:
            raise ConfigError(f"{where}: missing header key '{key}' (add a '\\* {key}: ...' line at the top)")
    return header, body


def statement_names(body: str, where: str) -> dict[str, list[str]]:
    """Map INVARIANT and PROPERTY (plural forms folded) to the names listed after them."""
    text = _LINE_COMMENT_RE.sub("", _BLOCK_COMMENT_RE.sub(" ", body))
    names: dict[str, list[str]] = {"INVARIANT": [], "PROPERTY": []}
    section: str | None = None
    for token in _TOKEN_RE.findall(text):
        if token in MISREAD_STATEMENTS:
            raise ConfigError(f"{where}: {token} in a .cfg is not supported: {MISREAD_STATEMENTS[token]}")
        if token in _KEYWORDS:
            section = {"INVARIANTS": "INVARIANT", "PROPERTIES": "PROPERTY"}.get(token, token)
        elif section in names and _IDENT_RE.match(token):
            names[section].append(token)
    return names


def parse_config(path: Path, spec_dir: Path) -> ModelConfig:
    """Parse one .cfg; the header's module must exist as ``<spec_dir>/<module>.tla``."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read: {e}") from None
    header, body = split_header(text, where)
    module = header["module"]
    if not _IDENT_RE.match(module):
        raise ConfigError(f"{where}: bad 'module: {module}'; give a TLA+ module name such as MCWalRelay")
    if not (spec_dir / f"{module}.tla").is_file():
        raise ConfigError(f"{where}: 'module: {module}' but {spec_dir / (module + '.tla')} does not exist")
    expect = _parse_expect(header["expect"], where)
    suite = header["suite"]
    if suite not in SUITES:
        raise ConfigError(f"{where}: bad 'suite: {suite}'; use one of {', '.join(SUITES)}")
    deadlock = header.get("deadlock", "off")
    if deadlock not in ("on", "off"):
        raise ConfigError(f"{where}: bad 'deadlock: {deadlock}'; use 'on' (check deadlocks) or 'off'")
    timeout = _parse_timeout(header["timeout"], where) if "timeout" in header else None
    simulate = _parse_simulate(header["simulate"], where) if "simulate" in header else None
    if simulate is not None and expect.kind != "ok":
        raise ConfigError(
            f"{where}: 'simulate' is for correct models ('expect: ok'): a search that stops proves no bug"
        )
    names = statement_names(body, where)
    checked = names["INVARIANT"] + names["PROPERTY"]
    if expect.name is not None and expect.name not in checked:
        raise ConfigError(
            f"{where}: 'expect: {expect}' but the file checks no INVARIANT or PROPERTY named {expect.name} "
            f"(it checks: {', '.join(checked) or 'nothing'})"
        )
    return ModelConfig(
        path=path,
        module=module,
        expect=expect,
        suite=suite,
        check_deadlock=deadlock == "on",
        timeout=timeout,
        about=header.get("about", ""),
        invariants=tuple(names["INVARIANT"]),
        properties=tuple(names["PROPERTY"]),
        simulate=simulate,
    )


def discover(spec_dir: Path) -> list[Path]:
    """Every .cfg below spec_dir (skipping hidden directories), sorted by relative path."""
    found = [
        p
        for p in spec_dir.rglob("*.cfg")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(spec_dir).parts[:-1])
    ]
    return sorted(found, key=lambda p: p.relative_to(spec_dir).as_posix())


def _resolve(name: str, available: Sequence[Path]) -> Path:
    as_path = Path(name)
    if name.endswith(".cfg") or "/" in name or as_path.is_file():
        if not as_path.is_file():
            raise UnknownConfigError(f"config file {name} does not exist")
        return as_path.resolve()
    matches = [p for p in available if p.stem == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        names = [p.stem for p in available]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownConfigError(
            f"no config named '{name}' in the spec dir; {hint}known configs (walrelay tlc --list): "
            f"{', '.join(names) or 'none'}"
        )
    raise ConfigError(f"config name '{name}' is ambiguous: {', '.join(str(p) for p in matches)}; give a path")


def select(spec_dir: Path, names: Iterable[str], suite: str) -> list[ModelConfig]:
    """The configs to run: the named ones (any suite, in the order given), else all of ``suite``."""
    available = discover(spec_dir)
    wanted = list(names)
    if wanted:
        paths = list(dict.fromkeys(_resolve(n, available) for n in wanted))
        return [parse_config(p, spec_dir) for p in paths]
    configs = [parse_config(p, spec_dir) for p in available]
    return [c for c in configs if suite == "all" or c.suite == suite]
