#!/usr/bin/env bash
# Create or refresh the project's virtual environment at .venv; prints its bin directory.
# Idempotent and quiet: reinstalls only when pyproject.toml changed since the last run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
extras="${1:-}"
stamp="$venv/.installed${extras:+-$extras}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" >&2
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$root${extras:+[$extras]}" >&2
  touch "$stamp"
fi
echo "$venv/bin"
