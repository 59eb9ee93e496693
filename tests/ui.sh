#!/usr/bin/env bash
# The web run inspector's checks: install (npm ci, skipped while
# node_modules matches the lock file), type-check and lint the UI and its
# tests, then drive the UI in headless Chromium (Debian's `chromium`,
# installed with apt-get when missing) against real servers
# (TASKLOOM_BIN, default target/debug/taskloom): SQLite, PostgreSQL when
# TASKLOOM_TEST_PG_URL is set, API keys, and a store of
# TASKLOOM_UI_VOLUME_RUNS runs (default 100000).
#
# Usage: tests/ui.sh                       screenshots go to tests/.work/screenshots
#        tests/ui.sh --update-screenshots  screenshots replace docs/screenshots (commit them)
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=tests/lib/tools.sh
source "$TASKLOOM_ROOT/tests/lib/tools.sh"

UI="$TASKLOOM_ROOT/ui"
export TASKLOOM_BIN="${TASKLOOM_BIN:-$TASKLOOM_ROOT/target/debug/taskloom}"
export TASKLOOM_UI_SCREENSHOTS="$TASKLOOM_WORK/screenshots"
if [[ ${1:-} == --update-screenshots ]]; then
    export TASKLOOM_UI_SCREENSHOTS="$TASKLOOM_ROOT/docs/screenshots"
fi

command -v npm >/dev/null || die "npm not found: Node.js 20 with npm is needed"

echo "== ui: install"
npm_ci_cached "$UI"
cd "$UI"
echo "== ui: type-check"
npx --no-install tsc -p tsconfig.json --noEmit
npx --no-install tsc -p test/tsconfig.json --noEmit
echo "== ui: lint"
npx --no-install eslint .

echo "== ui: chromium"
status=0
chromium=$(ensure_chromium) || status=$?
if ((status == 2)); then
    echo "== ui: browser tests skipped: Chromium cannot be installed here (see above)"
    exit 0
fi
((status == 0)) || die "Chromium could not be installed (apt-get install chromium)"
export TASKLOOM_CHROMIUM="$chromium"
"$chromium" --version

[[ -x $TASKLOOM_BIN ]] || die "no taskloom binary at $TASKLOOM_BIN (cargo build -p taskloom-server --bin taskloom)"

# PostgreSQL: a database of the tests' own on the suite's server.
pg_database=""
cleanup() {
    if [[ -n $pg_database ]]; then
        psql "$TASKLOOM_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS $pg_database WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
if [[ -n ${TASKLOOM_TEST_PG_URL:-} ]] && command -v psql >/dev/null; then
    pg_database="taskloom_ui_$$"
    psql "$TASKLOOM_TEST_PG_URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $pg_database" >/dev/null ||
        die "CREATE DATABASE $pg_database failed"
    export TASKLOOM_UI_PG_URL="${TASKLOOM_TEST_PG_URL%/*}/$pg_database"
else
    echo "== ui: no TASKLOOM_TEST_PG_URL (or psql): the PostgreSQL case is skipped"
fi

echo "== ui: browser tests (server: $TASKLOOM_BIN, ${TASKLOOM_UI_VOLUME_RUNS:-100000} runs for the volume test)"
rm -rf dist-test
npx --no-install tsc -p test/tsconfig.json
node --test --test-concurrency=1 dist-test/test/*.test.js
echo "== ui: ok (screenshots in $TASKLOOM_UI_SCREENSHOTS)"
