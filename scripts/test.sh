#!/usr/bin/env bash
# Install agentcomm with its development extras into .venv and run every check:
# ruff (lint + format), import-linter (the layer contracts in pyproject.toml), the
# 500-line module limit, mypy --strict on src/, the docs site with its API reference,
# the wheel installed outside the repository, and the whole pytest suite
# (contract tests on memory and on a nats-server the tests start themselves).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# (this machine's pip config names a local index that may be absent: hide that noise)
quiet_pip() { .venv/bin/python -m pip "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
quiet_pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]' 2> >(grep -v "^WARNING: Location" >&2)

echo "== ruff"
.venv/bin/ruff check src tests bench examples
.venv/bin/ruff format --check src tests bench examples
echo "== import-linter (the layers of docs/architecture.md)"
.venv/bin/lint-imports
echo "== module size (at most 500 lines: src, tests, bench, examples)"
.venv/bin/python scripts/check_module_size.py 500 src tests bench examples
echo "== mypy (strict, src/)"
.venv/bin/mypy
echo "== docs site (mkdocs --strict: the API reference from the docstrings)"
.venv/bin/mkdocs build --strict --quiet
echo "== wheel (build, install outside the repository, run the demo)"
bash scripts/check_wheel.sh
echo "== pytest"
.venv/bin/pytest "$@"
