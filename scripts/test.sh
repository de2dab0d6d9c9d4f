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
# Two workers: the engine tests mostly wait on intervals and timeouts; tests that share host
# state are grouped in tests/conftest.py. The slowest are listed to keep an eye on the budget.
exec "$bin/python" -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=15 "$@"
