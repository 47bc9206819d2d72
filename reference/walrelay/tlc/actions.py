"""Name the action (and its parameters) behind each step of a TLC counterexample.

TLC 2.15 labels a step with the source range of the action it took, e.g. ``<Recover line 332, col 5
to line 353, col 91 of module WalRelay>``. It never prints parameters, and when an action sits under
``\\E m \\in msgs`` (a set TLC cannot split before it knows the state) the label is only a range of
the next-state relation: ``<Next line 629, col 31 to line 630, col 91 ...>``, which covers four
actions. Two steps turn that into ``ReceiveAppend(r3, [type |-> "append", ...])``:

1. **The actions of Next, from the source.** ``next_actions`` reads the next-state relation (the
   config's NEXT, or the ``[][N]_v`` of its SPECIFICATION) and splits it at its disjunctions
   (bulleted or infix) and existential quantifiers, down to the action calls, each with the
   quantifiers that bind its arguments and its place in the source. ``static_label`` maps TLC's
   range onto them: the calls inside the range, or the call of the operator TLC named. Cheap, no
   java; names only.
2. **Replay (one more TLC run, about 2 s).** ``replay_labels`` writes a module that EXTENDS the
   config's module, walks exactly the trace's states, and at each step prints, for every action
   call, the arguments for which that action explains the step (the action is evaluated on the pair
   of states, as TLC does for an action property). The step's label is the call that holds, among
   the ones TLC's range allows. The spec is read, never changed: the replay runs on a copy of the
   spec's modules in a temporary directory.

Anything this cannot understand (an unusual Next, a value TLC prints in a form ``values`` does not
know) leaves TLC's own label in place: a worse label, never a wrong one.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from walrelay.tlc import messages as mc
from walrelay.tlc.configs import ModelConfig
from walrelay.tlc.trace import StepLabel, TraceState
from walrelay.tlc.values import Value, parse_prefix, parse_value, render

_LOCATION_RE = re.compile(
    r"^<(?P<name>\S+) line (?P<l1>\d+), col (?P<c1>\d+) to line (?P<l2>\d+), col (?P<c2>\d+) of module (?P<mod>\w+)>$"
)
_TOK_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\\/|/\\|\\[A-Za-z]+|<<|>>|\|->|\.\.|==|[A-Za-z0-9_]+|\S')
_DEF_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*==")
_OPEN = {"(": ")", "[": "]", "{": "}", "<<": ">>"}
_MARK = "walrelay-trace-step"
REPLAY_MODULE = "WalrelayTraceReplay"


@dataclass(frozen=True)
class Location:
    """TLC's ``<Name line l1, col c1 to line l2, col c2 of module M>`` (1-based, inclusive)."""

    name: str
    module: str
    start: tuple[int, int]
    end: tuple[int, int]

    def covers(self, module: str, pos: tuple[int, int]) -> bool:
        return module == self.module and self.start <= pos <= self.end


def parse_location(label: str) -> Location | None:
    m = _LOCATION_RE.match(label.strip())
    if m is None:
        return None
    return Location(m["name"], m["mod"], (int(m["l1"]), int(m["c1"])), (int(m["l2"]), int(m["c2"])))


@dataclass(frozen=True)
class Tok:
    text: str
    line: int
    col: int


@dataclass(frozen=True)
class Action:
    """One action call of the next-state relation: ``name(args)`` under ``binders`` (each
    ``(variable, set expression)``, outermost first), written at ``pos`` of ``module``. ``name`` is
    None for a disjunct that is not a plain call; ``text`` is then its source. ``formals`` are the
    operator's parameter names, if its definition was found."""

    name: str | None
    args: tuple[str, ...]
    binders: tuple[tuple[str, str], ...]
    module: str
    pos: tuple[int, int]
    text: str
    formals: tuple[str, ...] | None = None

    @property
    def call(self) -> str:
        if self.name is None:
            return self.text
        return f"{self.name}({', '.join(self.args)})" if self.args else self.name


# ---------------------------------------------------------------------------------- the source


def _blank_comments(text: str) -> str:
    """Comments replaced by spaces (newlines kept), so lines and columns stay TLC's."""
    out = list(text)
    i, depth, n = 0, 0, len(text)
    while i < n:
        if depth == 0 and text.startswith('"', i):
            j = i + 1
            while j < n and text[j] != '"' and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if text.startswith("(*", i):
            depth += 1
            out[i] = out[i + 1] = " "
            i += 2
            continue
        if depth and text.startswith("*)", i):
            depth -= 1
            out[i] = out[i + 1] = " "
            i += 2
            continue
        if depth == 0 and text.startswith("\\*", i):
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if depth and text[i] != "\n":
            out[i] = " "
        i += 1
    return "".join(out)


def tokenize(text: str, first_line: int = 1) -> list[Tok]:
    toks: list[Tok] = []
    for k, line in enumerate(text.split("\n")):
        for m in _TOK_RE.finditer(line):
            toks.append(Tok(m.group(0), first_line + k, m.start() + 1))
    return toks


@dataclass(frozen=True)
class Definition:
    module: str
    name: str
    params: str
    body: list[Tok]


def definitions(module: str, text: str) -> dict[str, Definition]:
    """Top-level ``Name(params) == body`` definitions of a module: a body runs until the next line
    that starts in column 1."""
    lines = _blank_comments(text).split("\n")
    out: dict[str, Definition] = {}
    i = 0
    while i < len(lines):
        m = _DEF_RE.match(lines[i])
        if m is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and (not lines[j] or lines[j][0].isspace()):
            j += 1
        head = len(m.group(0))
        body_text = " " * head + lines[i][head:] + "\n" + "\n".join(lines[i + 1 : j])
        out[m.group(1)] = Definition(module, m.group(1), m.group(2) or "", tokenize(body_text, i + 1))
        i = j
    return out


def _extends(text: str) -> list[str]:
    m = re.search(r"^EXTENDS\s+([\w\s,]+?)\s*$", _blank_comments(text), re.MULTILINE)
    return [name.strip() for name in m.group(1).split(",")] if m else []


def module_sources(spec_dir: Path, module: str) -> dict[str, str]:
    """The text of ``module`` and of every module it EXTENDS (found in spec_dir), by name."""
    out: dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = spec_dir / f"{name}.tla"
        if name in out or not path.is_file():
            continue
        out[name] = path.read_text(encoding="utf-8")
        todo.extend(_extends(out[name]))
    return out


def cfg_statements(body: str) -> dict[str, list[str]]:
    """A .cfg's statements: keyword -> its text chunks (CONSTANT and CONSTANTS folded)."""
    text = re.sub(r"\\\*[^\n]*", "", re.sub(r"\(\*.*?\*\)", " ", body, flags=re.DOTALL))
    keywords = (
        "CONSTANTS|CONSTANT|INIT|NEXT|SPECIFICATION|INVARIANTS|INVARIANT|PROPERTIES|PROPERTY|SYMMETRY|VIEW"
        "|CONSTRAINTS|CONSTRAINT|ACTION_CONSTRAINTS|ACTION_CONSTRAINT"
    )
    parts = re.split(rf"\b({keywords})\b", text)
    out: dict[str, list[str]] = {}
    for key, chunk in zip(parts[1::2], parts[2::2], strict=True):
        key = {"CONSTANT": "CONSTANTS", "INVARIANT": "INVARIANTS", "PROPERTY": "PROPERTIES"}.get(key, key)
        out.setdefault(key, []).append(chunk)
    return out


def overrides(statements: Mapping[str, list[str]]) -> dict[str, str]:
    """``Op <- Other`` substitutions in the CONSTANTS statements."""
    found: dict[str, str] = {}
    for chunk in statements.get("CONSTANTS", []):
        for m in re.finditer(r"\b([A-Za-z_]\w*)\s*<-\s*([A-Za-z_]\w*)\b", chunk):
            found[m.group(1)] = m.group(2)
    return found


def _closing(toks: Sequence[Tok], i: int) -> int:
    """Index of the bracket closing ``toks[i]``."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text in _OPEN:
            depth += 1
        elif toks[j].text in _OPEN.values():
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced brackets")


def _split(
    toks: Sequence[Tok], sep: str, column: int | None = None, stop_at_quantifier: bool = False
) -> list[list[Tok]]:
    """Split at ``sep`` outside brackets (only at ``column`` if given: a bulleted list)."""
    parts: list[list[Tok]] = [[]]
    depth = 0
    frozen = False
    for t in toks:
        if t.text in _OPEN:
            depth += 1
        elif t.text in _OPEN.values():
            depth -= 1
        if depth == 0 and not frozen:
            if stop_at_quantifier and t.text in ("\\E", "\\A", "LET", "IF", "CASE", "CHOOSE"):
                frozen = True
            elif t.text == sep and (column is None or t.col == column):
                parts.append([])
                continue
        parts[-1].append(t)
    return parts


def _text(toks: Sequence[Tok]) -> str:
    """The tokens as written: their own spacing within a line, one space across a line break."""
    out = ""
    for a, b in itertools.pairwise(toks):
        same_line_gap = b.line == a.line and b.col > a.col + len(a.text)
        out += a.text + (" " if b.line != a.line or same_line_gap else "")
    return out + (toks[-1].text if toks else "")


def _binders(toks: Sequence[Tok]) -> list[tuple[str, str]] | None:
    """``x \\in S, y, z \\in T`` -> [(x, S), (y, T), (z, T)]; None for other forms."""
    out: list[tuple[str, str]] = []
    pending: list[str] = []
    for part in _split(toks, ","):
        if len(part) == 1 and re.fullmatch(r"[A-Za-z_]\w*", part[0].text):
            pending.append(part[0].text)
            continue
        if len(part) < 3 or part[1].text != "\\in" or not re.fullmatch(r"[A-Za-z_]\w*", part[0].text):
            return None
        s = _text(part[2:])
        out.extend((v, s) for v in [*pending, part[0].text])
        pending = []
    return out if not pending else None


def _decompose(toks: list[Tok], binders: tuple[tuple[str, str], ...], module: str) -> list[Action]:
    while toks and toks[0].text == "(" and _closing(toks, 0) == len(toks) - 1:
        toks = toks[1:-1]
    if not toks:
        return []
    if toks[0].text == "\\/":
        items = _split(toks, "\\/", column=toks[0].col)
        return [a for item in items[1:] for a in _decompose(item, binders, module)]
    if toks[0].text == "\\E":
        head = _split(toks[1:], ":")
        found = _binders(head[0]) if len(head) > 1 else None
        if found is not None:
            return _decompose(toks[len(head[0]) + 2 :], (*binders, *found), module)
    parts = _split(toks, "\\/", stop_at_quantifier=True)
    if len(parts) > 1:
        return [a for part in parts for a in _decompose(part, binders, module)]
    pos = (toks[0].line, toks[0].col)
    if re.fullmatch(r"[A-Za-z_]\w*", toks[0].text):
        if len(toks) == 1:
            return [Action(toks[0].text, (), binders, module, pos, toks[0].text)]
        if toks[1].text == "(" and _closing(toks, 1) == len(toks) - 1:
            args = tuple(_text(a) for a in _split(toks[2:-1], ","))
            return [Action(toks[0].text, args, binders, module, pos, _text(toks))]
    return [Action(None, (), binders, module, pos, _text(toks))]


def next_name(config: ModelConfig, defs: Mapping[str, Definition]) -> str | None:
    """The next-state relation's name: the config's NEXT, else the ``[][N]_v`` of its SPECIFICATION."""
    statements = cfg_statements(config.path.read_text(encoding="utf-8"))
    subst = overrides(statements)
    if statements.get("NEXT") and statements["NEXT"][0].split():
        name = statements["NEXT"][0].split()[0]
    elif statements.get("SPECIFICATION") and statements["SPECIFICATION"][0].split():
        spec = statements["SPECIFICATION"][0].split()[0]
        # Follow definitions (FairSpec == Spec /\ Fairness) to the first [][N]_v.
        todo: list[str] = [subst.get(spec, spec)]
        seen: set[str] = set()
        found: str | None = None
        while todo and found is None and len(seen) < 50:
            spec = todo.pop(0)
            if spec in seen or spec not in defs:
                continue
            seen.add(spec)
            body = " ".join(t.text for t in defs[spec].body)
            m = re.search(r"\[\s*\]\s*\[\s*([A-Za-z_]\w*)\s*\]\s*_", body)
            found = m.group(1) if m else None
            todo.extend(subst.get(t.text, t.text) for t in defs[spec].body if t.text in defs)
        if found is None:
            return None
        name = found
    else:
        return None
    return subst.get(name, name)


def next_actions(config: ModelConfig, sources: Mapping[str, str]) -> list[Action]:
    """The action calls of the config's next-state relation, in source order ([] if not found)."""
    defs: dict[str, Definition] = {}
    for module, text in sources.items():
        for op, d in definitions(module, text).items():
            defs.setdefault(op, d)
    name = next_name(config, defs)
    if name is None or name not in defs or defs[name].params:
        return []
    d = defs[name]
    try:
        found = _decompose(list(d.body), (), d.module)
    except ValueError:
        return []
    out: list[Action] = []
    for a in found:
        called = defs.get(a.name) if a.name is not None else None
        formals = tuple(re.findall(r"[A-Za-z_]\w*", called.params)) if called is not None else None
        out.append(replace(a, formals=formals) if formals is not None and len(formals) == len(a.args) else a)
    return out


def candidates(label: str, actions: Sequence[Action], subst: Mapping[str, str]) -> list[int]:
    """Indexes of the actions TLC's label allows: the calls inside its range, or the calls of the
    operator it names (directly or through a ``<-`` override)."""
    loc = parse_location(label)
    if loc is None:
        return []
    inside = [i for i, a in enumerate(actions) if loc.covers(a.module, a.pos)]
    if inside:
        return inside
    return [i for i, a in enumerate(actions) if a.name is not None and loc.name in (a.name, subst.get(a.name))]


def static_label(label: str, actions: Sequence[Action], subst: Mapping[str, str]) -> str | None:
    """``Recover(e)``, or ``one of A(r, m), B(r, m)``; None if the label maps to no action."""
    found = [actions[i] for i in candidates(label, actions, subst)]
    calls = list(dict.fromkeys(a.call for a in found))
    if not calls:
        return None
    return calls[0] if len(calls) == 1 else "one of " + ", ".join(calls)


def static_labels(config: ModelConfig, spec_dir: Path, trace: Sequence[TraceState]) -> dict[int, str]:
    """Per index into ``trace``, the action(s) TLC's label points at, from the source alone."""
    try:
        actions = next_actions(config, module_sources(spec_dir, config.module))
        subst = overrides(cfg_statements(config.path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return {}
    out: dict[int, str] = {}
    for k, state in enumerate(trace):
        label = state.action if state.variables else state.action.partition(" via ")[2]
        if k > 0 and label and (found := static_label(label, actions, subst)) is not None:
            out[k] = found
    return out


# ---------------------------------------------------------------------------------- the replay


def _model_values(values: Sequence[Value]) -> set[str]:
    found: set[str] = set()

    def walk(v: Value) -> None:
        if v.kind == "atom":
            if re.fullmatch(r"[A-Za-z_]\w*", v.text) and v.text not in ("TRUE", "FALSE"):
                found.add(v.text)
            return
        for k, x in v.items:
            if k is not None and v.kind == "fun":
                walk(k)
            walk(x)

    for v in values:
        walk(v)
    return found


def _action_expr(a: Action) -> str:
    """The set of argument tuples for which ``a`` explains the step."""
    args = a.args if a.name is not None else tuple(v for v, _ in a.binders)
    inner = f"IF {a.call} THEN {{<<{', '.join(args)}>>}} ELSE {{}}"
    for var, domain in reversed(a.binders):
        inner = f"UNION {{ {inner} : {var} \\in {domain} }}"
    return inner


def replay_module(
    module: str, states: Sequence[Sequence[tuple[str, Value]]], actions: Sequence[Action], declare: Sequence[str]
) -> str:
    """The TLA+ module that walks ``states`` and prints, per step, each action's matching arguments."""
    names = [n for n, _ in states[0]]
    lines = [f"---- MODULE {REPLAY_MODULE} ----", f"EXTENDS {module}, TLC, Naturals"]
    if declare:
        lines.append(f"CONSTANTS {', '.join(declare)}")
    lines.append("VARIABLE wrtStep")
    recs = ["[" + ", ".join(f"{n} |-> {render(v)}" for n, v in st) + "]" for st in states]
    lines.append("wrtTrace == <<" + ",\n    ".join(recs) + ">>")
    lines.append(f"wrtLength == {len(states)}")
    for i, a in enumerate(actions):
        lines.append(f"wrtA{i} == {_action_expr(a)}")
    lines.append("wrtInit == /\\ wrtStep = 1")
    lines.extend(f"           /\\ {n} = wrtTrace[1].{n}" for n in names)
    lines.append("wrtNext == /\\ wrtStep < wrtLength")
    lines.append("           /\\ wrtStep' = wrtStep + 1")
    lines.extend(f"           /\\ {n}' = wrtTrace[wrtStep + 1].{n}" for n in names)
    found = ", ".join(f"wrtA{i}" for i in range(len(actions)))
    lines.append(f'           /\\ PrintT(<<"{_MARK}", wrtStep, <<{found}>>>>)')
    lines.append("====")
    return "\n".join(lines) + "\n"


def replay_cfg(config_text: str, declare: Sequence[str]) -> str:
    statements = cfg_statements(config_text)
    lines = [f"CONSTANTS {chunk.strip()}" for chunk in statements.get("CONSTANTS", []) if chunk.strip()]
    lines.extend(f"CONSTANT {name} = {name}" for name in declare)
    lines += ["INIT wrtInit", "NEXT wrtNext"]
    return "\n".join(lines) + "\n"


def parse_replay_output(output: str, n_actions: int) -> dict[int, list[list[Value]]]:
    """Step number -> per action, the argument tuples that explain the step."""
    parsed = mc.parse_messages(output)
    text = parsed.untagged + "".join(m.text for m in parsed.messages if m.code not in (mc.STATE,))
    out: dict[int, list[list[Value]]] = {}
    for m in re.finditer(rf'<<\s*"{_MARK}"', text):
        try:
            value, _ = parse_prefix(text[m.start() :])
        except ValueError:
            continue
        if value.kind != "seq" or len(value.items) != 3:
            continue
        step, per_action = value.items[1][1], value.items[2][1]
        if not step.text.isdigit() or per_action.kind != "seq" or len(per_action.items) != n_actions:
            continue
        out[int(step.text)] = [[t for _, t in s.items] for _, s in per_action.items]
    return out


def _label(a: Action, args: Value, subst: Mapping[str, str]) -> StepLabel:
    """The call with its argument values; ``[<- MutOp]`` when the config replaces the operator."""
    params = tuple(render(x) for _, x in args.items)
    if a.name is None:
        bound = ", ".join(f"{v} = {p}" for (v, _), p in zip(a.binders, params, strict=False))
        return StepLabel(a.text, params, a.text + (f" with {bound}" if bound else ""))
    call = f"{a.name}({', '.join(params)})" if params else a.name
    if a.name in subst:
        call += f" [<- {subst[a.name]}]"
    return StepLabel(a.name, params, call, param_names=a.formals)


def choose_labels(
    trace: Sequence[TraceState],
    actions: Sequence[Action],
    subst: Mapping[str, str],
    found: Mapping[int, list[list[Value]]],
    loop_step: int | None = None,
) -> dict[int, StepLabel]:
    """Per index into ``trace``, the matching call that TLC's label allows (a step of the replay
    is numbered by the state it leaves; ``loop_step`` is the replay step that closes a lasso)."""
    out: dict[int, StepLabel] = {}
    for k, state in enumerate(trace):
        if state.variables:
            step: int | None = k
        elif k == len(trace) - 1 and state.action.startswith("back to state"):
            step = loop_step
        else:
            step = None
        if step is None or step < 1 or step not in found:
            continue
        label = state.action if state.variables else state.action.partition(" via ")[2]
        allowed = candidates(label, actions, subst) or list(range(len(actions)))
        labels = [_label(actions[i], t, subst) for i in allowed for t in found[step][i]]
        if labels:
            first = labels[0]
            out[k] = replace(first, others=tuple(lab.call for lab in labels[1:]))
    return out


def replay_labels(
    java: str,
    jar: Path,
    config: ModelConfig,
    spec_dir: Path,
    trace: Sequence[TraceState],
    timeout: float = 120.0,
) -> tuple[dict[int, StepLabel], str]:
    """Labels (by index into ``trace``) from a replay of ``trace`` in TLC, and a note saying why
    there are none if so."""
    sources = module_sources(spec_dir, config.module)
    actions = next_actions(config, sources)
    if not actions:
        return {}, "the next-state relation was not found or not understood"
    states: list[list[tuple[str, Value]]] = []
    try:
        for s in trace:
            if s.variables:
                states.append([(name, parse_value(text.split("=", 1)[1])) for name, text in s.variables])
    except (ValueError, IndexError) as e:
        return {}, f"a value in the trace could not be read: {e}"
    if len(states) < 2:
        return {}, ""
    loop_step: int | None = None
    last = trace[-1]
    m = re.match(r"back to state (\d+)", last.action)
    if m and not last.variables and 1 <= int(m.group(1)) <= len(states):
        states.append(states[int(m.group(1)) - 1])
        loop_step = len(states) - 1
    source_text = "\n".join(_blank_comments(t) for t in sources.values())
    mentioned = set(re.findall(r"[A-Za-z_]\w*", source_text))
    declare = sorted(v for v in _model_values([v for st in states for _, v in st]) if v not in mentioned)
    config_text = config.path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="walrelay-trace-") as tmp:
        work = Path(tmp)
        for p in spec_dir.glob("*.tla"):
            shutil.copy(p, work / p.name)
        (work / f"{REPLAY_MODULE}.tla").write_text(replay_module(config.module, states, actions, declare))
        (work / f"{REPLAY_MODULE}.cfg").write_text(replay_cfg(config_text, declare))
        (work / "java-tmp").mkdir()
        cmd = [
            java, "-XX:+UseParallelGC", f"-Djava.io.tmpdir={work / 'java-tmp'}", "-cp", str(jar), "tlc2.TLC",
            "-tool", "-metadir", str(work / "meta"), "-config", f"{REPLAY_MODULE}.cfg", "-workers", "1",
            "-deadlock", f"{REPLAY_MODULE}.tla",
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, cwd=work, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            return {}, f"the replay in TLC took over {timeout:.0f}s"
    found = parse_replay_output(proc.stdout, len(actions))
    if not found:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip() and "@!@!@" not in ln]
        return {}, "the replay in TLC printed no step" + (f": {lines[-1].strip()}" if lines else "")
    subst = overrides(cfg_statements(config_text))
    labels = choose_labels(trace, actions, subst, found, loop_step)
    return labels, ""
