# walrelay daily loop. Every recipe goes through ./dev, which creates/updates
# .venv on demand, so these work whether or not .venv/bin is on PATH
# (run `.venv/bin/just <recipe>` or `./dev just <recipe>` if `just` isn't).

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments

# list recipes
default:
    @{{ just_executable() }} --justfile {{ quote(justfile()) }} --list --unsorted

# full suite: ruff check, ruff format --check, mypy, pytest (args go to pytest)
test *args:
    ./dev test "$@"

# the main job end to end
demo *args:
    ./dev demo "$@"

# ruff check + ruff format --check + mypy
lint:
    ./dev lint

# auto-format and auto-fix (ruff format + ruff check --fix)
fmt:
    ./dev fmt

# benchmarks (walrelay bench)
bench *args:
    ./dev bench "$@"

# TLA+ model check: every CI config (correct models, mutants, witnesses); args go to `walrelay tlc`
tlc *args:
    ./dev walrelay tlc "$@"

# the deeper exhaustive models (spec/README.md lists their size and time)
tlc-deep *args:
    ./dev walrelay tlc --suite deep "$@"

# chaos campaign on the simulated cluster (args go to `walrelay chaos run`, e.g. --seeds 1000 --minutes 5)
chaos *args:
    ./dev walrelay chaos run "$@"
