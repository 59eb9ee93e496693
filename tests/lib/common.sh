# shellcheck shell=bash
# Helpers shared by tests/run and tests/smoke.sh. Source this file; it sets
#   TASKLOOM_ROOT  the repository root
#   TASKLOOM_WORK  tests/.work, the git-ignored home of installed tools and logs

TASKLOOM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
TASKLOOM_WORK="$TASKLOOM_ROOT/tests/.work"

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch time $1, as "42s" or "3m07s".
elapsed_since() {
    local seconds=$(($(date +%s) - $1))
    if ((seconds >= 60)); then
        printf '%dm%02ds' $((seconds / 60)) $((seconds % 60))
    else
        printf '%ds' "$seconds"
    fi
}

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Prints the last $2 (default 200) lines of log file $1, indented, and where
# the whole log is.
show_log_tail() {
    local log=$1 lines=${2:-200}
    local total
    total=$(wc -l <"$log")
    if ((total > lines)); then
        printf '    ... (%d earlier lines in %s)\n' $((total - lines)) "$log"
    fi
    tail -n "$lines" "$log" | sed 's/^/    /'
}

# run_logged LOG CMD...: runs CMD in a subshell (so a `die` in a function
# stops only CMD) with its output going to LOG. On failure prints the end of
# LOG and returns CMD's exit status.
run_logged() {
    local log=$1
    shift
    ("$@") >"$log" 2>&1 && return 0
    local status=$?
    printf 'command failed (exit %d): %s\n' "$status" "$*" >&2
    show_log_tail "$log" >&2
    return "$status"
}
