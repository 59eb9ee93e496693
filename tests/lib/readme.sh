# shellcheck shell=bash
# Helpers for the tests that run what the READMEs tell a newcomer to run.
# Needs tests/lib/common.sh sourced first.
#
#   readme_block FILE NAME   prints the fenced code block that follows the
#                            line `<!-- test: NAME -->` in FILE (fails if
#                            there is none, or it is empty)
#   fresh_copy DEST          copies the repository's files as a fresh clone
#                            has them (tracked and new files; nothing
#                            git-ignored: no node_modules, dist-test, target
#                            or tests/.work) into DEST
#   taskloom_start DIR       starts $TASKLOOM_BIN serve on a free port with a
#                            new SQLite file in DIR and extra args "${@:2}";
#                            sets TASKLOOM_ADDRESS (host:port) and
#                            TASKLOOM_SERVER_PID; stop it with taskloom_stop

readme_block() {
    local file=$1 name=$2 block
    block=$(awk -v marker="<!-- test: $name -->" '
        $0 == marker { armed = 1; next }
        armed && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }
    ' "$file")
    [[ -n $block ]] || die "$file has no code block after <!-- test: $name -->"
    printf '%s\n' "$block"
}

fresh_copy() {
    local dest=$1
    mkdir -p "$dest"
    (
        cd "$TASKLOOM_ROOT" &&
            git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' file; do
                # Deleted but not yet committed: a clone would not have it.
                [[ -e $file || -L $file ]] && printf '%s\0' "$file"
            done |
            tar --null -T - -cf -
    ) | tar -C "$dest" -xf - || die "cannot copy the repository's files to $dest"
}

TASKLOOM_ADDRESS=""
TASKLOOM_SERVER_PID=""

taskloom_start() {
    local dir=$1
    shift
    local bin=${TASKLOOM_BIN:-$TASKLOOM_ROOT/target/debug/taskloom}
    [[ -x $bin ]] || die "no taskloom binary at $bin (cargo build -p taskloom-server --bin taskloom)"
    local port
    port=$(free_port)
    TASKLOOM_ADDRESS="127.0.0.1:$port"
    NO_COLOR=1 "$bin" serve --listen "$TASKLOOM_ADDRESS" --database-url "$dir/taskloom.db" "$@" \
        >"$dir/server.log" 2>&1 &
    TASKLOOM_SERVER_PID=$!
    # tests/run stops servers recorded here if this script dies uncleanly.
    if [[ -n ${TASKLOOM_TESTS_PID_DIR:-} ]]; then
        printf '%s\n' "$TASKLOOM_SERVER_PID" >"$TASKLOOM_TESTS_PID_DIR/server-$$.pid"
    fi
    local deadline=$(($(date +%s) + 60))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$TASKLOOM_SERVER_PID" 2>/dev/null; then
            show_log_tail "$dir/server.log" 40 >&2
            die "taskloom serve exited during startup"
        fi
        (($(date +%s) <= deadline)) || die "taskloom serve did not listen on $TASKLOOM_ADDRESS within 60s"
        sleep 0.2
    done
}

taskloom_stop() {
    if [[ -n $TASKLOOM_SERVER_PID ]] && kill -0 "$TASKLOOM_SERVER_PID" 2>/dev/null; then
        kill -TERM "$TASKLOOM_SERVER_PID" 2>/dev/null
        wait "$TASKLOOM_SERVER_PID" 2>/dev/null
    fi
    TASKLOOM_SERVER_PID=""
    if [[ -n ${TASKLOOM_TESTS_PID_DIR:-} ]]; then
        rm -f "$TASKLOOM_TESTS_PID_DIR/server-$$.pid"
    fi
}
