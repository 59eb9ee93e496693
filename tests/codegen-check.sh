#!/usr/bin/env bash
# Fails if committed generated code differs from what its generator produces
# now, including files that should no longer exist:
#   - the SDK code generated from proto/ by `buf generate` (buf.gen.yaml)
#   - sdk-typescript/dist/, compiled from sdk-typescript/src by tsc: it is
#     committed so that installing the SDK (`npm install --install-links
#     …/sdk-typescript`, or `npm install` in examples/typescript) needs no
#     TypeScript compiler
#   - ui/dist/, the web run inspector built from ui/ by Vite: the server
#     embeds it at compile time, so building or running taskloom needs no
#     Node.js
# Both are regenerated into a temp dir and compared file by file. Needs the
# tools tests/run installs (buf and protoc-gen-es from npm, grpcio-tools and
# mypy-protobuf in tests/.work/venv); installs sdk-typescript's and ui's own
# dependencies (npm ci, skipped while they match their lock files).
#
# Usage: tests/codegen-check.sh          check
#        tests/codegen-check.sh --write  regenerate in place (then commit)
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=tests/lib/tools.sh
source "$TASKLOOM_ROOT/tests/lib/tools.sh"
cd "$TASKLOOM_ROOT"

SDK_TS=sdk-typescript
UI=ui

BUF="$TASKLOOM_ROOT/tests/tools/node_modules/.bin/buf"
[[ -x $BUF ]] || die "buf is not installed: run tests/run (or npm ci in tests/tools)"

# The generated files under the SDK dirs of root $1, sorted.
generated_files() {
    (cd "$1" && find sdk-python/src -type f \( -name '*_pb2.py' -o -name '*_pb2.pyi' \
        -o -name '*_pb2_grpc.py' -o -name '*_pb2_grpc.pyi' \) &&
        find sdk-typescript/src/gen ui/src/gen -type f -name '*_pb.ts') 2>/dev/null | sort
}

# Compiles sdk-typescript/src into ROOT/sdk-typescript/dist with the SDK's
# own tsc and tsconfig (a copy of them outside the checkout when ROOT is not
# `.`; the output is the same wherever it is built).
build_typescript_dist() {
    local root=$1
    if [[ $root != . ]]; then
        mkdir -p "$root/$SDK_TS"
        cp -R "$SDK_TS/src" "$SDK_TS/tsconfig.json" "$SDK_TS/package.json" "$root/$SDK_TS/"
        ln -s "$TASKLOOM_ROOT/$SDK_TS/node_modules" "$root/$SDK_TS/node_modules"
    fi
    rm -rf "$root/$SDK_TS/dist"
    "$SDK_TS/node_modules/.bin/tsc" -p "$root/$SDK_TS/tsconfig.json"
}

# Builds ui/ into ROOT/ui/dist with the UI's own Vite and config (a copy of
# its sources outside the checkout when ROOT is not `.`; Vite's output does
# not depend on where it is built).
build_ui_dist() {
    local root=$1
    if [[ $root != . ]]; then
        mkdir -p "$root/$UI"
        cp -R "$UI/src" "$UI/index.html" "$UI/vite.config.ts" "$UI/tsconfig.json" "$UI/package.json" "$root/$UI/"
        ln -s "$TASKLOOM_ROOT/$UI/node_modules" "$root/$UI/node_modules"
    fi
    (cd "$root/$UI" && "$TASKLOOM_ROOT/$UI/node_modules/.bin/vite" build --logLevel warn)
}

npm_ci_cached "$TASKLOOM_ROOT/$SDK_TS"
npm_ci_cached "$TASKLOOM_ROOT/$UI"

if [[ ${1:-} == --write ]]; then
    generated_files . | xargs -r rm -f
    "$BUF" generate
    echo "regenerated: $(generated_files . | wc -l) files"
    build_typescript_dist .
    echo "rebuilt $SDK_TS/dist: $(find "$SDK_TS/dist" -type f | wc -l) files"
    build_ui_dist .
    echo "rebuilt $UI/dist: $(find "$UI/dist" -type f | wc -l) files"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/taskloom-codegen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$BUF" generate --output "$tmp"

status=0
if ! diff <(generated_files "$tmp") <(generated_files .) >"$tmp/lists.diff"; then
    echo "generated files differ from the committed ones (< would be generated, > is committed):"
    cat "$tmp/lists.diff"
    status=1
fi
while read -r file; do
    if [[ -f $file ]] && ! cmp -s "$tmp/$file" "$file"; then
        echo "stale generated file: $file"
        diff -u "$file" "$tmp/$file" | head -40 || true
        status=1
    fi
done < <(generated_files "$tmp")

build_typescript_dist "$tmp/tsc"
if ! diff -r "$tmp/tsc/$SDK_TS/dist" "$SDK_TS/dist" >"$tmp/dist.diff"; then
    echo "$SDK_TS/dist differs from what tsc builds from $SDK_TS/src (< would be built, > is committed):"
    head -40 "$tmp/dist.diff"
    status=1
fi

build_ui_dist "$tmp/vite"
if ! diff -r "$tmp/vite/$UI/dist" "$UI/dist" >"$tmp/ui-dist.diff"; then
    echo "$UI/dist differs from what Vite builds from $UI/src (< would be built, > is committed):"
    head -40 "$tmp/ui-dist.diff"
    status=1
fi

if ((status != 0)); then
    echo "run tests/codegen-check.sh --write and commit the result"
    exit 1
fi
echo "generated code matches proto/: $(generated_files . | wc -l) files"
echo "$SDK_TS/dist matches $SDK_TS/src: $(find "$SDK_TS/dist" -type f | wc -l) files"
echo "$UI/dist matches $UI/src: $(find "$UI/dist" -type f | wc -l) files"
