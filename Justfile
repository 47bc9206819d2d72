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

# per-rule conformance cases against a replica (default: walrelay's; args: --replica IMPL.json --out DIR); about 5 s
conform *args:
    ./dev walrelay conform "$@"

# chaos campaigns: 300 seeds in simulation, then 4 runs against real processes, into runs/<timestamp>-sim|real/ and runs/latest (args go to `walrelay chaos run`, e.g. --seeds 1000 --real-seeds 10 --shrink-budget 200)
chaos *args:
    ./dev walrelay chaos run --mode both --seeds 300 --require-coverage "$@"

# the mutant kill table: every planted bug, its directed schedule, then random search, each kill shrunk into runs/<timestamp>-mutants/ (args: --seconds S --only NAME)
chaos-mutants *args:
    ./dev walrelay chaos mutants --seeds 1000 --seconds 40 "$@"

# browse runs/ (every campaign's verdict, seeds, shrunk reproductions, timelines) at http://127.0.0.1:8080/ (args: --port N --runs DIR)
chaos-serve *args:
    ./dev walrelay chaos serve "$@"

# archive corruption campaign: faults on a simulated archive, judged by verify and restores (args go to `walrelay archive fuzz`, e.g. --seed 7 --json)
archive-fuzz *args:
    ./dev walrelay archive fuzz --trials 600 "$@"

# mutation testing (mutmut) of the protocol and archive modules; report: survivors with file:line and diff (args: --modules wire entry, --sample, --nightly, --minutes N, --out DIR, --check); docs/testing.md has scores and times
mutate *args:
    ./dev mutate --out mutation-report "$@"
