#!/usr/bin/env bash
# Installs the SDKs and the TypeScript example the way the READMEs say, from
# the repository's files as a fresh clone has them (no node_modules, nothing
# built that is not committed, no global tsc), in a temp dir:
#
#   TypeScript  a new npm project runs README's `install-typescript` block,
#               then a script imports @taskloom/sdk and drives a real server
#   example     examples/typescript/README.md's `install` block (npm install,
#               npm run build); its worker then serves a run on that server
#   Python      README's `install-python` block (a venv, pip install
#               ./sdk-python), then a script imports taskloom and drives the
#               same server
#
# The server is $TASKLOOM_BIN (default target/debug/taskloom) on a temporary
# SQLite file. npm and pip use their usual caches, so repeated runs download
# little.
#
# Usage: tests/install.sh
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=tests/lib/readme.sh
source "$TASKLOOM_ROOT/tests/lib/readme.sh"

command -v npm >/dev/null || die "npm not found: Node.js 20 with npm is needed"
command -v python3 >/dev/null || die "python3 not found: Python 3.10 or later with venv is needed"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/taskloom-install.XXXXXX")
WORKER_PID=""
cleanup() {
    local status=$?
    set +e
    if [[ -n $WORKER_PID ]]; then
        kill -TERM "$WORKER_PID" 2>/dev/null
        wait "$WORKER_PID" 2>/dev/null
    fi
    taskloom_stop
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CHECKOUT="$TMP/taskloom"
echo "== a fresh copy of the repository in $CHECKOUT"
fresh_copy "$CHECKOUT"

taskloom_start "$TMP"
echo "== taskloom serve on $TASKLOOM_ADDRESS"

# run_block FILE NAME DIR: runs README block NAME of FILE (in the copy) with
# bash in DIR, where a user would; /path/to/taskloom is the copy.
run_block() {
    local block
    block=$(readme_block "$CHECKOUT/$1" "$2")
    block=${block//\/path\/to\/taskloom/$CHECKOUT}
    printf '%s\n' "$block" | sed 's/^/    $ /'
    (cd "$3" && bash -euo pipefail -c "$block")
}

echo "== TypeScript: README's install-typescript block in a new npm project"
APP="$TMP/app"
mkdir -p "$APP"
(cd "$APP" && npm init -y >/dev/null)
run_block README.md install-typescript "$APP"
cat >"$APP/check.mjs" <<'EOF'
// Imports the installed SDK and drives the server: a version call, a chain,
// and a run served by the example worker (started by tests/install.sh).
import { createClient } from "@taskloom/sdk";

const client = createClient({ address: `http://${process.argv[2]}` });
const version = await client.info.version();
if (!version.version) throw new Error("GetVersion returned no version");
await client.chains.create({
  id: "install-check",
  tasks: [{ id: "search", handler: "worker", queue: "search" }],
});
const run = await client.runs.start({ chainId: "install-check", input: "Why is the sky blue?" });
const done = await client.runs.wait(run.id, { timeoutMs: 60_000 });
const output = JSON.stringify(done.output);
if (!output.includes("Rayleigh")) throw new Error(`unexpected run: ${JSON.stringify(done)}`);
console.log(`@taskloom/sdk works: server ${version.version}, run ${run.id} served by the example worker`);
client.close();
EOF

echo "== examples/typescript: its README's install block"
run_block examples/typescript/README.md install "$CHECKOUT"
node "$CHECKOUT/examples/typescript/dist/worker.js" --address "http://$TASKLOOM_ADDRESS" \
    >"$TMP/worker.log" 2>&1 &
WORKER_PID=$!
(cd "$APP" && node check.mjs "$TASKLOOM_ADDRESS") || {
    echo "the example worker's log:"
    show_log_tail "$TMP/worker.log" 40
    echo "the server's log:"
    show_log_tail "$TMP/server.log" 40
    die "the installed TypeScript SDK or the example worker does not work"
}

echo "== Python: README's install-python block (a venv in the checkout)"
run_block README.md install-python "$CHECKOUT"
"$CHECKOUT/.venv/bin/python" - "$TASKLOOM_ADDRESS" <<'EOF'
import asyncio
import sys

from taskloom import Client


async def main(address: str) -> None:
    async with Client(address) as client:
        version = await client.info.version()
        assert version.version, "GetVersion returned no version"
        run = await client.runs.start(chain_id="install-check", input="Why is tea bitter?")
        done = await client.runs.wait(run.id, timeout=60)
        assert "tannins" in str(done.output), f"unexpected run: {done}"
        print(f"taskloom (Python) works: server {version.version}, run {run.id}")


asyncio.run(main(sys.argv[1]))
EOF
echo "== install: ok"
