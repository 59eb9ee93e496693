#!/usr/bin/env bash
# The repository's docs stand on their own: fails if a file in the
# repository (tracked, or new and not ignored) cites a document that is not
# in it — the design notes that used to live outside (DESIGN.md,
# PERFORMANCE.md, a `shared/` directory) — or if a Markdown file names a
# `.md` file that does not exist (relative to itself or to the root), or if
# README's prerequisites name another Rust version than Cargo.toml.
#
# Usage: tests/docs-check.sh
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$TASKLOOM_ROOT"

status=0

# The one exception: applied migrations are checksummed by sqlx, so editing
# a comment in one breaks every database that ran it (docs/postgres.md is
# the page its comment cites).
OUTSIDE_REFERENCES='DESIGN\.md|PERFORMANCE\.md|(^|[^A-Za-z0-9_.-])shared/|/work/'
hits=$(git grep --untracked -n -I -E "$OUTSIDE_REFERENCES" -- . \
    ':!tests/docs-check.sh' ':!server/migrations/postgres/0002_runs.sql' || true)
if [[ -n $hits ]]; then
    echo "these lines cite documents that are not in the repository (bring what they need into docs/):"
    printf '%s\n' "$hits" | sed 's/^/  /'
    status=1
fi

# Every `.md` a Markdown file names must exist.
while IFS= read -r doc; do
    [[ -f $doc ]] || continue
    dir=$(dirname "$doc")
    while IFS= read -r name; do
        if [[ ! -f $dir/$name && ! -f $name ]]; then
            echo "$doc names $name, which is not in the repository"
            status=1
        fi
    done < <(grep -oE '[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b' "$doc" | sort -u)
done < <(git ls-files --cached --others --exclude-standard -- '*.md')

# README's prerequisites name the toolchain Cargo.toml requires.
rust_version=$(sed -nE 's/^rust-version = "([0-9.]+)"$/\1/p' Cargo.toml)
if [[ -z $rust_version ]] || ! grep -qF "Rust $rust_version or newer" README.md; then
    echo "README.md's prerequisites must say \"Rust $rust_version or newer\" (rust-version in Cargo.toml)"
    status=1
fi

if ((status == 0)); then
    echo "docs: no references to documents outside the repository; README names Rust $rust_version"
fi
exit "$status"
