#!/usr/bin/env bash
# The TypeScript SDK's checks: install (npm ci, skipped while node_modules
# matches the lock file), build, type-check, the node:test suite against a
# real server (TASKLOOM_BIN, default target/debug/taskloom), and a build of
# examples/typescript against the SDK as a consumer installs it.
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=tests/lib/tools.sh
source "$TASKLOOM_ROOT/tests/lib/tools.sh"

SDK="$TASKLOOM_ROOT/sdk-typescript"
EXAMPLE="$TASKLOOM_ROOT/examples/typescript"
export TASKLOOM_BIN="${TASKLOOM_BIN:-$TASKLOOM_ROOT/target/debug/taskloom}"

command -v npm >/dev/null || die "npm not found: Node.js 20 with npm is needed"
[[ -x $TASKLOOM_BIN ]] || die "no taskloom binary at $TASKLOOM_BIN (cargo build -p taskloom-server --bin taskloom)"

echo "== sdk-typescript: install"
npm_ci_cached "$SDK"
cd "$SDK"
echo "== sdk-typescript: build"
rm -rf dist dist-test
npx --no-install tsc -p tsconfig.json
echo "== sdk-typescript: type-check tests"
npx --no-install tsc -p test/tsconfig.json
echo "== sdk-typescript: tests (server: $TASKLOOM_BIN)"
node --test dist-test/

echo "== examples/typescript: install and build against the SDK"
# The example depends on file:../../sdk-typescript; a fresh install (not the
# stamp) so the SDK's prepare build is what the example compiles against.
(cd "$EXAMPLE" && rm -rf node_modules && npm ci --no-audit --no-fund) || die "npm ci in examples/typescript failed"
(cd "$EXAMPLE" && npm run build) || die "examples/typescript does not build"
echo "== sdk-typescript: ok"
