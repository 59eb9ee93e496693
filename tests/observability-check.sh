#!/usr/bin/env bash
# The observability files are usable by the tools they are for: the alert
# rules of deploy/observability pass `promtool check rules` and their unit
# tests (`promtool test rules`), every query of
# the Grafana dashboard is valid PromQL, both name only metric families the
# server exports, and a real scrape of a running server passes `promtool
# check metrics` (the metrics test does that scrape, on both stores, with
# promtool required). Installs promtool (Debian's prometheus package) if it
# is missing.
#
# Usage: tests/observability-check.sh
set -euo pipefail

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=tests/lib/tools.sh
source "$TASKLOOM_ROOT/tests/lib/tools.sh"
cd "$TASKLOOM_ROOT"

ensure_promtool
promtool --version | head -n 1

promtool check rules deploy/observability/*.rules.yml
# The alerts fire on the series they are for, and only on those.
(cd deploy/observability && promtool test rules ./*.rules.test.yml)

work=$(mktemp -d "${TMPDIR:-/tmp}/taskloom-observability.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Each dashboard query as a recording rule, so promtool parses it
# ($__rate_interval is Grafana's; any range stands in for it).
python3 - deploy/observability/taskloom-dashboard.json >"$work/dashboard.rules.yml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
count = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$__rate_interval", "5m")
        count += 1
        print(f"      - record: dashboard:query_{count}")
        print(f"        expr: {json.dumps(expr)}")
if count == 0:
    sys.exit("the dashboard has no queries")
PY
promtool check rules "$work/dashboard.rules.yml"

# Every family the rules and the dashboard query is one the server exports.
exported=$(grep -oE '"taskloom_[a-z_]+"' server/src/metrics.rs | tr -d '"' | sort -u)
status=0
while IFS= read -r used; do
    family=$used
    for suffix in _bucket _count _sum; do
        family=${family%"$suffix"}
    done
    if ! grep -qxF "$family" <<<"$exported"; then
        echo "deploy/observability names $used, which the server does not export"
        status=1
    fi
done < <(grep -ohE 'taskloom_[a-z_]+' deploy/observability/* | sort -u)
((status == 0)) || exit 1
echo "observability: the rules and the dashboard name only exported families"

# A real scrape, on both stores, checked by promtool.
if cargo nextest --version >/dev/null 2>&1; then
    TASKLOOM_REQUIRE_PROMTOOL=1 cargo nextest run -p taskloom-server --locked --test metrics \
        -E 'test(families_move)'
else
    TASKLOOM_REQUIRE_PROMTOOL=1 cargo test -p taskloom-server --locked --test metrics families_move
fi
