#!/usr/bin/env bash
# Smoke test: builds the real `taskloom` binary, starts it on a free loopback
# port and drives its gRPC API with grpcurl (plaintext, server reflection),
# asserting each answer. Stops at the first failed step and prints what
# grpcurl printed and the end of the server's log.
#
# Usage: tests/smoke.sh [--database-url URL]
#   Without --database-url the server uses a temporary SQLite file.

# jq filters use jq's own $variables, inside single quotes on purpose.
# shellcheck disable=SC2016
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=tests/lib/tools.sh
source "$TASKLOOM_ROOT/tests/lib/tools.sh"

usage() {
    cat <<'EOF'
Usage: tests/smoke.sh [--database-url URL]
  Without --database-url the server uses a temporary SQLite file.
EOF
}

DATABASE_URL=""
while (($#)); do
    case $1 in
    --database-url)
        (($# >= 2)) || die "--database-url needs a value"
        DATABASE_URL=$2
        shift 2
        ;;
    --database-url=*)
        DATABASE_URL=${1#*=}
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
done

cd "$TASKLOOM_ROOT"

SMOKE_TMP=$(mktemp -d "${TMPDIR:-/tmp}/taskloom-smoke.XXXXXX")
SERVER_PID=""
SERVER_LOG="$SMOKE_TMP/server.log"
# tests/run passes a directory where it looks for servers to stop if this
# script dies without cleaning up.
PID_FILE=""
if [[ -n ${TASKLOOM_TESTS_PID_DIR:-} ]]; then
    PID_FILE="$TASKLOOM_TESTS_PID_DIR/smoke-$$.pid"
fi

cleanup() {
    local status=$?
    set +e
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [[ -n $PID_FILE ]]; then
        rm -f "$PID_FILE"
    fi
    rm -rf "$SMOKE_TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z $DATABASE_URL ]]; then
    # A plain file path means SQLite.
    DATABASE_URL="$SMOKE_TMP/smoke.db"
fi
case $DATABASE_URL in
postgres://* | postgresql://*) EXPECTED_STORE=postgres ;;
*) EXPECTED_STORE=sqlite ;;
esac
LABEL="smoke ($EXPECTED_STORE)"

command -v jq >/dev/null || die "jq is needed for the JSON checks"
run_logged "$SMOKE_TMP/tools.log" ensure_python_tools || die "could not install grpcurl"
use_test_tools

# ---- steps and assertions -------------------------------------------------

STEP=""
STEPS_PASSED=0
OUT=""
RC=0

step() {
    STEP=$1
}

passed() {
    STEPS_PASSED=$((STEPS_PASSED + 1))
    printf 'ok    %s\n' "$STEP"
}

# Reports the current step as failed with reason $1, shows grpcurl's output
# and the server log, and exits.
fail() {
    printf 'FAIL  %s: %s\n' "$STEP" "$1" >&2
    if [[ -n $OUT ]]; then
        printf '  grpcurl exited %d and printed:\n' "$RC" >&2
        printf '%s\n' "$OUT" | sed 's/^/    /' >&2
    fi
    if [[ -s $SERVER_LOG ]]; then
        printf '  end of the server log:\n' >&2
        show_log_tail "$SERVER_LOG" 40 >&2
    fi
    printf '%s: %d passed, 1 failed\n' "$LABEL" "$STEPS_PASSED" >&2
    exit 1
}

# grpc ARGS...: runs grpcurl against the server; sets OUT (stdout and
# stderr) and RC (exit status).
grpc() {
    RC=0
    OUT=$(grpcurl -plaintext -max-time 20 "$@" 2>&1) || RC=$?
}

# call METHOD JSON: a unary call with request body JSON.
call() {
    grpc -d "$2" "$ADDRESS" "$1"
}

expect_ok() {
    ((RC == 0)) || fail "the call failed"
}

# expect_error CODE: the call must fail with gRPC status CODE (grpcurl prints
# "Code: CODE").
expect_error() {
    ((RC != 0)) || fail "the call succeeded, expected status $1"
    grep -qE "Code: $1\$" <<<"$OUT" || fail "expected status $1"
}

# expect_json DESCRIPTION FILTER [JQ ARGS...]: FILTER must be true of OUT.
expect_json() {
    local description=$1 filter=$2
    shift 2
    jq -e "$@" "$filter" >/dev/null 2>&1 <<<"$OUT" || fail "expected $description (jq: $filter)"
}

expect_mentions() {
    [[ $OUT == *"$1"* ]] || fail "expected the output to mention: $1"
}

expect_not_mentions() {
    [[ $OUT != *"$1"* ]] || fail "the output must not contain: $1"
}

# ---- build, migrate, start ------------------------------------------------

step "build taskloom"
run_logged "$SMOKE_TMP/build.log" cargo build -p taskloom-server --bin taskloom --locked ||
    fail "cargo build failed"
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --locked | jq -r .target_directory) ||
    fail "cargo metadata failed"
TASKLOOM_BIN="$TARGET_DIR/debug/taskloom"
[[ -x $TASKLOOM_BIN ]] || fail "no binary at $TASKLOOM_BIN after the build"
passed

step "taskloom migrate"
# NO_COLOR keeps the server's logs free of terminal escapes.
run_logged "$SMOKE_TMP/migrate.log" env NO_COLOR=1 "$TASKLOOM_BIN" migrate --database-url "$DATABASE_URL" ||
    fail "taskloom migrate failed"
passed

step "taskloom serve"
PORT=$(free_port)
ADDRESS="127.0.0.1:$PORT"
# SQLite keeps its secret key next to the database; PostgreSQL needs one.
SECRET_KEY_ARGS=()
if [[ $EXPECTED_STORE == postgres ]]; then
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$SMOKE_TMP/secret.key"
    chmod 600 "$SMOKE_TMP/secret.key"
    SECRET_KEY_ARGS=(--secret-key-file "$SMOKE_TMP/secret.key")
fi
NO_COLOR=1 "$TASKLOOM_BIN" serve --listen "$ADDRESS" --database-url "$DATABASE_URL" "${SECRET_KEY_ARGS[@]}" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
if [[ -n $PID_FILE ]]; then
    printf '%s\n' "$SERVER_PID" >"$PID_FILE"
fi
deadline=$(($(date +%s) + 60))
until grpcurl -plaintext -max-time 2 "$ADDRESS" list >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited during startup"
    (($(date +%s) <= deadline)) || fail "the server did not answer on $ADDRESS within 60s"
    sleep 0.2
done
passed

# ---- reflection and health ------------------------------------------------

step "grpcurl list shows every service"
grpc "$ADDRESS" list
expect_ok
for service in taskloom.v1.BackendService taskloom.v1.ChainService taskloom.v1.RunService \
    taskloom.v1.WorkerService taskloom.v1.HookService taskloom.v1.InfoService taskloom.v1.KeyService \
    grpc.health.v1.Health; do
    grep -qFx "$service" <<<"$OUT" || fail "$service is not listed"
done
passed

step "grpcurl describe shows proto comments"
# The comment above `rpc CreateChain` in the proto must come back through
# reflection.
create_chain_comment=$(grep -B1 'rpc CreateChain(' proto/taskloom/v1/chain.proto | head -n 1 |
    sed -E 's#^[[:space:]]*//[[:space:]]*##')
[[ -n $create_chain_comment ]] || fail "no comment above rpc CreateChain in proto/taskloom/v1/chain.proto"
grpc "$ADDRESS" describe taskloom.v1.ChainService
expect_ok
expect_mentions "rpc CreateChain"
expect_mentions "$create_chain_comment"
passed

step "health check (server)"
call grpc.health.v1.Health/Check '{}'
expect_ok
expect_json 'status SERVING' '.status == "SERVING"'
passed

step "health check (taskloom.v1.ChainService)"
call grpc.health.v1.Health/Check '{"service": "taskloom.v1.ChainService"}'
expect_ok
expect_json 'status SERVING' '.status == "SERVING"'
passed

step "InfoService/GetVersion"
call taskloom.v1.InfoService/GetVersion '{}'
expect_ok
expect_json 'a version' '.version | type == "string" and length > 0'
expect_json "store $EXPECTED_STORE" '.store == $store' --arg store "$EXPECTED_STORE"
passed

# ---- backends and pools ---------------------------------------------------

API_KEY="sk-secret"

step "BackendService/CreateBackend (API key is write-only)"
call taskloom.v1.BackendService/CreateBackend "$(jq -cn --arg key "$API_KEY" '{backend: {
    name: "local-ollama", type: "BACKEND_TYPE_OLLAMA",
    baseUrl: "http://127.0.0.1:11434", apiKey: $key}}')"
expect_ok
expect_json 'an id' '.id | type == "string" and length > 0'
expect_json 'hasApiKey: true' '.hasApiKey == true'
expect_not_mentions "$API_KEY"
BACKEND_ID=$(jq -r .id <<<"$OUT")
passed

step "BackendService/GetBackend"
call taskloom.v1.BackendService/GetBackend "$(jq -cn --arg id "$BACKEND_ID" '{id: $id}')"
expect_ok
expect_json 'the created backend' \
    '.id == $id and .name == "local-ollama" and .type == "BACKEND_TYPE_OLLAMA" and .hasApiKey == true' \
    --arg id "$BACKEND_ID"
expect_not_mentions "$API_KEY"
passed

step "BackendService/AssignBackendToPool"
call taskloom.v1.BackendService/AssignBackendToPool \
    "$(jq -cn --arg id "$BACKEND_ID" '{poolId: "internal_chat_pool", backendId: $id}')"
expect_ok
passed

step "BackendService/ListPoolBackends"
call taskloom.v1.BackendService/ListPoolBackends '{"poolId": "internal_chat_pool"}'
expect_ok
expect_json 'the backend in internal_chat_pool' 'any(.backends[]?; .id == $id)' --arg id "$BACKEND_ID"
expect_not_mentions "$API_KEY"
passed

step "BackendService/ListPools has the built-in pools"
call taskloom.v1.BackendService/ListPools '{}'
expect_ok
expect_json 'internal_tasks_pool, internal_embed_pool and internal_chat_pool' \
    '[.pools[]?.id] as $ids
     | all("internal_tasks_pool", "internal_embed_pool", "internal_chat_pool"; . as $pool | any($ids[]; . == $pool))'
passed

# ---- chains ---------------------------------------------------------------

EXAMPLE=examples/qa.json
CHAIN_ID=$(jq -r .chain.id "$EXAMPLE")
SYSTEM_INSTRUCTION=$(jq -r '.chain.tasks[0].systemInstruction' "$EXAMPLE")

step "ChainService/CreateChain ($EXAMPLE)"
call taskloom.v1.ChainService/CreateChain "$(jq -c '{chain: .chain}' "$EXAMPLE")"
expect_ok
expect_json "chain $CHAIN_ID at version 1" '.id == $id and (.version | tostring) == "1"' --arg id "$CHAIN_ID"
passed

step "ChainService/GetChain"
call taskloom.v1.ChainService/GetChain "$(jq -cn --arg id "$CHAIN_ID" '{id: $id}')"
expect_ok
expect_json 'the task with its systemInstruction' \
    '.id == $id and .tasks[0].id == "generate_response" and .tasks[0].systemInstruction == $instruction' \
    --arg id "$CHAIN_ID" --arg instruction "$SYSTEM_INSTRUCTION"
passed

step "ChainService/UpdateChain"
call taskloom.v1.ChainService/UpdateChain \
    "$(jq -c '{chain: (.chain | .description = "Handles technical questions (updated by the smoke test)")}' "$EXAMPLE")"
expect_ok
expect_json 'version 2 with the new description' \
    '(.version | tostring) == "2" and .description == "Handles technical questions (updated by the smoke test)"'
passed

step "ChainService/ListChainVersions"
call taskloom.v1.ChainService/ListChainVersions "$(jq -cn --arg id "$CHAIN_ID" '{id: $id}')"
expect_ok
expect_json 'versions 1 and 2' '[.chains[]?.version | tostring] | sort == ["1", "2"]'
passed

# ---- a worker session over grpcurl ------------------------------------------

# A Connect stream fed from a FIFO: grpcurl reads one JSON message after
# another from it and prints each server message as JSON.
WORKER_IN="$SMOKE_TMP/worker.in"
WORKER_OUT="$SMOKE_TMP/worker.out"
mkfifo "$WORKER_IN"

# wait_for_worker JQ_FILTER: waits until a message on the stream matches.
wait_for_worker() {
    local deadline=$(($(date +%s) + 20))
    until jq -e -s "any(.[]; $1)" "$WORKER_OUT" >/dev/null 2>&1; do
        (($(date +%s) <= deadline)) || {
            OUT=$(cat "$WORKER_OUT")
            fail "no server message matched $1"
        }
        sleep 0.1
    done
}

step "WorkerService/Connect: hello, welcome"
grpcurl -plaintext -max-time 60 -d @ "$ADDRESS" taskloom.v1.WorkerService/Connect \
    <"$WORKER_IN" >"$WORKER_OUT" 2>&1 &
WORKER_PID=$!
exec 3>"$WORKER_IN"
printf '%s\n' '{"hello": {"workerId": "grpcurl", "queues": ["smoke"], "slots": 1}}' >&3
wait_for_worker '.welcome.sessionId != null'
passed

step "WorkerService/ListWorkers shows the session"
call taskloom.v1.WorkerService/ListWorkers '{"queue": "smoke"}'
expect_ok
expect_json 'the grpcurl worker' '.workers[0].workerId == "grpcurl" and .workers[0].slots == 1'
passed

step "RunService/StartRun of a worker task reaches the worker"
call taskloom.v1.ChainService/CreateChain \
    '{"chain": {"id": "smoke-worker", "tasks": [{"id": "remote", "handler": "worker", "queue": "smoke"}]}}'
expect_ok
call taskloom.v1.RunService/StartRun '{"chainId": "smoke-worker", "typedInput": {"text": "ping"}}'
expect_ok
RUN_ID=$(jq -r .id <<<"$OUT")
wait_for_worker '.lease.runId == "'"$RUN_ID"'" and .lease.input.text == "ping"'
LEASE=$(jq -c -s '[.[] | select(.lease)][0].lease | {attemptId, leaseToken}' "$WORKER_OUT")
passed

step "WorkerService/Connect: completion acknowledged, run succeeded"
printf '%s\n' "$(jq -c '{complete: {lease: ., output: {text: "pong"}}}' <<<"$LEASE")" >&3
wait_for_worker '.ack.accepted == true'
call taskloom.v1.RunService/GetRun "$(jq -cn --arg id "$RUN_ID" '{id: $id}')"
expect_ok
expect_json 'a succeeded run with the output' '.status == "RUN_STATUS_SUCCEEDED" and .output.text == "pong"'
passed

step "WorkerService/CompleteTask with a stale token is refused"
call taskloom.v1.WorkerService/CompleteTask \
    "$(jq -c '{attemptId, leaseToken: "stale", output: {text: "again"}}' <<<"$LEASE")"
expect_error FailedPrecondition
exec 3>&-
wait "$WORKER_PID" 2>/dev/null || true
passed

# ---- errors ---------------------------------------------------------------

step "HookService/CreateHook rejects a bad hook with BadRequest details"
call taskloom.v1.HookService/CreateHook '{"hook": {"name": "", "url": "not a url", "timeout": "0s"}}'
expect_error InvalidArgument
# grpcurl decodes the google.rpc.BadRequest detail through reflection and
# prints its field violations as JSON.
expect_mentions "google.rpc.BadRequest"
for field in hook.name hook.url hook.timeout; do
    grep -qE "\"field\": *\"${field//./\\.}\"" <<<"$OUT" || fail "no decoded field violation for $field"
done
passed

step "ChainService/GetChain of a missing chain"
call taskloom.v1.ChainService/GetChain '{"id": "no-such-chain"}'
expect_error NotFound
passed

# ---- shutdown -------------------------------------------------------------

step "SIGTERM stops the server with exit status 0 within 10s"
OUT=""
kill -TERM "$SERVER_PID"
for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    fail "the server is still running 10s after SIGTERM"
fi
exit_status=0
wait "$SERVER_PID" || exit_status=$?
SERVER_PID=""
((exit_status == 0)) || fail "the server exited with status $exit_status"
passed

printf '%s: %d passed, 0 failed\n' "$LABEL" "$STEPS_PASSED"
