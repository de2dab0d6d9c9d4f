#!/usr/bin/env bash
# Quickstart: a one-node cluster from repo-template/, with a local repository as the source.
#   bash scripts/up.sh            # runs the daemon in the foreground (Ctrl-C stops it; containers stay)
#   GITOPS_ONCE=1 bash scripts/up.sh   # one pass and exit (used by the tests)
# Needs a running Docker Engine (bash scripts/docker-up.sh starts one on a bare Debian machine).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(bash "$root/scripts/venv.sh")"
cluster="${GITOPS_QUICKSTART_DIR:-$HOME/gitops-cluster}"
state="${GITOPS_STATE_DIR:-$cluster.state}"
node="${GITOPS_NODE:-$(hostname -s | tr '[:upper:]' '[:lower:]')}"
if [ ! -d "$cluster/.git" ]; then
  "$bin/gitops" init "$cluster"
fi
echo "cluster repository: $cluster (edit, commit, watch: $bin/gitops status --repo $cluster)"
args=(run --repo "$cluster" --node "$node" --state-dir "$state" --interval "${GITOPS_INTERVAL:-10}")
if [ -n "${GITOPS_ONCE:-}" ]; then
  exec "$bin/gitops" "${args[@]}" --once
fi
exec "$bin/gitops" "${args[@]}"
