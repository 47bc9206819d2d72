#!/usr/bin/env bash
# Self-test for ./dev's argument handling and tool-version checks, using fake
# `python` and `java` executables. No path here creates or touches .venv (every
# case stops before setup), so it is safe to run in a working checkout:
#
#   scripts/dev-selftest.sh
set -euo pipefail
unset CDPATH
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DEV="$ROOT/dev"
FAKES="$(mktemp -d "${TMPDIR:-/tmp}/dev-selftest.XXXXXX")"
trap 'rm -rf "$FAKES"' EXIT

fake() { # fake NAME SCRIPT-BODY
    printf '#!/bin/sh\n%s\n' "$2" >"$FAKES/$1"
    chmod +x "$FAKES/$1"
}
fake python2 'echo "Python 2.7.18" >&2'
fake python39 'echo "Python 3.9.2"'
fake pybroken 'echo "pyenv: python3.12: command not found" >&2; exit 127'
fake java8 'echo "openjdk version \"1.8.0_392\"" >&2'
fake java10 'echo "Picked up JAVA_TOOL_OPTIONS: -Xmx1g" >&2; echo "java version \"10.0.2\" 2018-07-17" >&2'
fake javastub 'echo "Unable to locate a Java Runtime." >&2; exit 1'
# A PATH with the usual tools but without any java.
mkdir "$FAKES/nojava"
for d in /usr/local/bin /usr/bin /bin; do
    for f in "$d"/*; do
        n=$(basename "$f")
        [[ $n == java || -e $FAKES/nojava/$n ]] || ln -s "$f" "$FAKES/nojava/$n"
    done
done
PY_DIRS=""
for n in python3 python3.13 python3.12 python3.11; do
    p=$(command -v "$n" || true)
    [[ -z $p || :$PY_DIRS == *":$(dirname "$p"):"* ]] || PY_DIRS+="$(dirname "$p"):"
done

fails=0
check() { # check WANT_RC WANT_SUBSTRING CMD... (env assignments via `env`)
    local want_rc=$1 want=$2 out rc=0
    shift 2
    out=$("$@" 2>&1 </dev/null) || rc=$?
    if [[ $rc == "$want_rc" && $out == *"$want"* ]]; then
        printf 'ok   %-58s -> %s\n' "$*" "$(printf '%s\n' "$out" | grep -m1 -e 'error' || printf '%s\n' "$out" | head -n1)"
    else
        printf 'FAIL %s\n     want rc=%s and "%s"; got rc=%s:\n%s\n' "$*" "$want_rc" "$want" "$rc" "$out"
        fails=$((fails + 1))
    fi
}

cd /
check 0 "usage: ./dev" "$DEV" help
check 2 "unknown command 'nonsense'" "$DEV" nonsense
check 2 "usage: ./dev" "$DEV"
check 2 "found Python 2.7.18" env PYTHON="$FAKES/python2" "$DEV" demo
check 2 "found Python 3.9.2" env PYTHON="$FAKES/python39" "$DEV" test
check 2 "did not report a version" env PYTHON="$FAKES/pybroken" "$DEV" demo
check 2 "PYTHON=no-such-python was not found" env PYTHON=no-such-python "$DEV" demo
check 2 "does not exist" env WALRELAY_JAVA=/nonexistent "$DEV" test
check 2 "found Java 1.8.0_392" env WALRELAY_JAVA="$FAKES/java8" "$DEV" test
check 2 "found Java 10.0.2" env WALRELAY_JAVA="$FAKES/java10" "$DEV" test
check 2 "printed no version" env WALRELAY_JAVA="$FAKES/javastub" "$DEV" test
check 2 "no 'java' was found on PATH" env -u JAVA_HOME -u WALRELAY_JAVA PATH="$PY_DIRS$FAKES/nojava" "$DEV" test

if ((fails)); then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all checks passed"
