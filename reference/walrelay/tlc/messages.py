"""Split TLC ``-tool`` output into its coded messages.

With ``-tool`` TLC wraps each message as ``@!@!@STARTMSG code:severity @!@!@`` ... ``@!@!@ENDMSG
code @!@!@``. Parsing those codes is sturdier than matching English sentences, which change between
TLC versions. Messages can nest (an exception message 1000 wraps the config-file error 5006, and
the inner start marker sits in the middle of a line), so we keep a stack. Text outside any message
(SANY's parse errors, for one) is kept apart as ``untagged``: it is the only place a syntax error
is explained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Message codes we read (from tlc2.output.EC / MP in TLC 2.15).
VERSION = 2262
INIT_DONE = 2190  # "Finished computing initial states: N distinct state(s) generated"
PROGRESS = 2200  # "Progress(depth) at ...: N states generated, M distinct states found, ..."
STATS = 2199  # "N states generated, M distinct states found, K states left on queue."
SIMULATION_STATS = 2209  # after -simulate num=K: "Progress(-1) at ...: N states generated, -1 distinct ..."
DEPTH = 2194  # "The depth of the complete state graph search is D."
INVARIANT_VIOLATED_INITIAL = 2107  # "Invariant X is violated by the initial state:\n<state>"
PROPERTY_VIOLATED_INITIAL = 2108  # "Property X is violated by the initial state:\n<state>"
INVARIANT_VIOLATED = 2110  # "Invariant X is violated."
ACTION_PROPERTY_VIOLATED = 2112  # "Action property X is violated."
DEADLOCK = 2114  # "Deadlock reached."
TEMPORAL_VIOLATED = 2116  # "Temporal properties were violated." (names no property)
BACK_TO_STATE = 2122  # "k: Back to state: <action>" (a lasso's loop)
ASSERT_FAILED = 2132  # "The first argument of Assert evaluated to FALSE; ..."
STATE = 2217  # "n: <action>\n/\ var = value ..."
STUTTERING = 2218  # "n: Stuttering"
UNDEFINED_IN_CFG = 2229  # "The invariant X specified in the configuration file is not defined ..."
PARSE_FAILED = 3002  # "Parsing or semantic analysis failed."
SEVERITY_ERROR = 1

_MARK_RE = re.compile(r"@!@!@STARTMSG (\d+):(\d+) @!@!@\n?|@!@!@ENDMSG (\d+) @!@!@\n?")


@dataclass(frozen=True)
class Message:
    """One TLC message: its code, severity (0 info, 1 error, 2 TLA+ error, 3 warning, 4 state) and text."""

    code: int
    severity: int
    text: str


@dataclass(frozen=True)
class ParsedOutput:
    """All messages in start order, plus the text printed outside any message."""

    messages: tuple[Message, ...]
    untagged: str

    def first(self, *codes: int) -> Message | None:
        return next((m for m in self.messages if m.code in codes), None)

    def all(self, *codes: int) -> list[Message]:
        return [m for m in self.messages if m.code in codes]


def parse_messages(output: str) -> ParsedOutput:
    """Parse ``-tool`` output; a message left open (TLC killed mid-write) is kept as it stands."""
    # Each open message: (code, severity, list of its own text pieces, its index in start order).
    stack: list[tuple[int, int, list[str], int]] = []
    done: dict[int, Message] = {}
    untagged: list[str] = []
    started = 0
    pos = 0

    def add_text(piece: str) -> None:
        (stack[-1][2] if stack else untagged).append(piece)

    def close() -> None:
        code, severity, pieces, index = stack.pop()
        done[index] = Message(code, severity, "".join(pieces))

    for m in _MARK_RE.finditer(output):
        add_text(output[pos : m.start()])
        pos = m.end()
        if m.group(1) is not None:
            stack.append((int(m.group(1)), int(m.group(2)), [], started))
            started += 1
        else:
            end_code = int(m.group(3))
            # Close up to and including the matching start; a stray ENDMSG is ignored.
            if any(code == end_code for code, _, _, _ in stack):
                while stack and stack[-1][0] != end_code:
                    close()
                close()
    add_text(output[pos:])
    while stack:
        close()
    return ParsedOutput(tuple(done[i] for i in sorted(done)), "".join(untagged))
