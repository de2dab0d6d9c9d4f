#!/usr/bin/env bash
# The whole test suite on a fresh machine: virtualenv and deps, a Docker Engine and the
# test image, then lint, type checks and pytest. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="$(bash scripts/venv.sh test)"
bash scripts/docker-up.sh
echo "== ruff"; "$bin/ruff" check gitops tests bench
echo "== mypy"; "$bin/mypy" gitops
echo "== pytest"
pytest=("$bin/python" -m pytest -q -p no:cacheprovider --durations=10)
if [ $# -gt 0 ]; then exec "${pytest[@]}" "$@"; fi
# Two streams at once on the same engine: the engine tests mostly wait on intervals and
# timeouts, so together they take about half the time. The multi-daemon clusters and the
# Service tests run one at a time in one stream: every node's nftables table claims the same
# DNS virtual IP, and the clusters are timing-sensitive. Everything else runs in the other.
clusters=(tests/e2e tests/integration/test_services.py tests/integration/test_service_dataplane.py)
rest=(tests); for path in "${clusters[@]}"; do rest+=(--ignore "$path"); done
logs="$(mktemp -d)"
"${pytest[@]}" --basetemp "$logs/clusters" "${clusters[@]}" >"$logs/clusters.log" 2>&1 & first=$!
"${pytest[@]}" --basetemp "$logs/rest" "${rest[@]}" >"$logs/rest.log" 2>&1 & second=$!
status=0
wait "$first" || status=$?
wait "$second" || status=$((status | $?))
echo "== pytest: multi-daemon clusters and Services"; cat "$logs/clusters.log"
echo "== pytest: everything else"; cat "$logs/rest.log"
exit "$status"
