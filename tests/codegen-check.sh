#!/usr/bin/env bash
# Fails if the committed SDK code generated from proto/ differs from what
# `buf generate` (buf.gen.yaml) produces now: it regenerates into a temp dir
# and compares every generated file, including ones that should no longer
# exist. Needs the tools tests/run installs (buf and protoc-gen-es from npm,
# grpcio-tools and mypy-protobuf in tests/.work/venv).
#
# Usage: tests/codegen-check.sh          check
#        tests/codegen-check.sh --write  regenerate in place (then commit)
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$TASKLOOM_ROOT"

BUF="$TASKLOOM_ROOT/tests/tools/node_modules/.bin/buf"
[[ -x $BUF ]] || die "buf is not installed: run tests/run (or npm ci in tests/tools)"

# The generated files under the SDK dirs of root $1, sorted.
generated_files() {
    (cd "$1" && find sdk-python/src -type f \( -name '*_pb2.py' -o -name '*_pb2.pyi' \
        -o -name '*_pb2_grpc.py' -o -name '*_pb2_grpc.pyi' \) &&
        find sdk-typescript/src/gen -type f -name '*_pb.ts') 2>/dev/null | sort
}

if [[ ${1:-} == --write ]]; then
    generated_files . | xargs -r rm -f
    "$BUF" generate
    echo "regenerated: $(generated_files . | wc -l) files"
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
if ((status != 0)); then
    echo "run tests/codegen-check.sh --write and commit the result"
    exit 1
fi
echo "generated code matches proto/: $(generated_files . | wc -l) files"
