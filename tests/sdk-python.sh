#!/usr/bin/env bash
# The Python SDK's checks: installs sdk-python into the test venv (as a user
# would, `pip install ./sdk-python`), then ruff, mypy --strict and pytest
# against real `taskloom` server processes (TASKLOOM_BIN, default the debug
# build). Needs the venv tests/run installs.
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PYTHON="$TASKLOOM_WORK/venv/bin/python"
[[ -x $PYTHON ]] || die "no test venv at $TASKLOOM_WORK/venv: run tests/run"
export TASKLOOM_BIN="${TASKLOOM_BIN:-$TASKLOOM_ROOT/target/debug/taskloom}"
[[ -x $TASKLOOM_BIN ]] || die "no taskloom binary at $TASKLOOM_BIN: cargo build -p taskloom-server"

cd "$TASKLOOM_ROOT/sdk-python"
# The package itself afresh (its version does not change between edits),
# then its dependencies only where missing.
"$PYTHON" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps .
"$PYTHON" -m pip install --quiet --disable-pip-version-check .
"$PYTHON" -m ruff format --check . ../examples/python
"$PYTHON" -m ruff check . ../examples/python
"$PYTHON" -m mypy
# From the tests dir, so `import taskloom` is the installed package.
cd tests
"$PYTHON" -m pytest -p no:cacheprovider "$@"
