"""What ``gitops status`` and ``gitops placement`` show: the cluster as the status branches tell it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from gitops import volumes
from gitops.cluster import ClusterView
from gitops.identity import ReplicaId
from gitops.model import POD_METRICS, Autoscaler, ManifestSet, Workload
from gitops.placement import NodeInfo
from gitops.reconcile.autoscaling import scaled
from gitops.services.allocate import port_key
from gitops.services.endpoints import endpoints, replica_endpoints
from gitops.states import READY_STATES, RUNNING_STATES, UP_STATES, Reason, State
from gitops.status import AutoscalerStatus, ReplicaStatus

# What rollout_progress says of a Deployment, StatefulSet or Job (DaemonSets and CronJobs: "n/a").
ROLLOUT_STATES = ("progressing", "complete", "halted")
# A node entry's fields when no record of the node can be shown.
_UNKNOWN_NODE: dict[str, Any] = {
    "live": False,
    "heartbeatAgeSeconds": None,
    "revision": None,
    "held": [],
    "upToDate": False,
    "capacity": None,
    "used": None,
    "digest": None,
    "digestAgrees": False,
    "errors": [],
    "labels": {},
}


def status_document(mset: ManifestSet, view: ClusterView, rev: str) -> dict[str, Any]:
    """The cluster view as plain data (the ``-o json`` output)."""
    now = datetime.now(UTC)
    # Autoscaled workloads show the count in force, not Git's.
    mset, applied = scaled(mset, view.reports, now)
    digests = Counter(view.reports[n].placement_digest for n in view.live)
    majority = digests.most_common(1)[0][0] if digests else ""
    by_key = {w.key: w for w in mset.workloads}
    nodes: list[dict[str, Any]] = []
    for name in sorted(view.rejected.keys() - view.reports.keys()):
        # Rejected, and no good record of it to show: only its name and why.
        nodes.append({**_UNKNOWN_NODE, "name": name, "rejected": view.rejected[name]})
    for name in sorted(view.reports):
        r = view.reports[name]
        hb = r.heartbeat_time()
        used_cpu = used_mem = 0
        for row in r.workloads:
            w = by_key.get(row.key)
            if w is not None and row.state in RUNNING_STATES:
                used_cpu += w.pod.cpu_request_millis()
                used_mem += w.pod.memory_request_mib()
        nodes.append(
            {
                "name": name,
                "live": name in view.live,
                "heartbeatAgeSeconds": round((now - hb).total_seconds(), 1) if hb else None,
                "revision": r.revision.sha,
                "upToDate": r.revision.sha == rev,
                "verified": r.revision.verified,
                # Team namespaces running an older revision than "revision", and why.
                "held": [h.model_dump() for h in r.revision.held or []],
                "capacity": {
                    "cpu": r.capacity.cpu,
                    "memory": r.capacity.memory,
                    "gpus": len(r.capacity.gpus),
                },
                "used": {"cpu": used_cpu, "memory": used_mem},
                "digest": r.placement_digest,
                "digestAgrees": r.placement_digest == majority,
                "errors": [e.model_dump(exclude_none=True) for e in r.errors],
                "labels": r.labels,
                "policy": r.policy.model_dump(mode="json", by_alias=True) if r.policy is not None else None,
                # Set when the branch's current record was refused: this is its last good one.
                "rejected": view.rejected.get(name),
            }
        )
    nodes.sort(key=lambda n: str(n["name"]))
    workloads = []
    for w in mset.workloads:
        if w.kind == "CronJob":
            rows = [
                (n, row)
                for n in sorted(view.reports)
                for row in view.reports[n].workloads
                if row.kind == "CronJob" and row.cronjob == w.name and row.namespace == w.namespace
            ]
        else:
            rows = [(n, row) for n in sorted(view.live) for row in view.reports[n].workloads if row.key == w.key]
        current = [(n, row) for n, row in rows if row.spec_hash == w.spec_hash]
        workloads.append(
            {
                "key": w.key,
                "kind": w.kind,
                "desired": w.replicas if w.kind != "DaemonSet" else None,
                "specHash": w.spec_hash,
                "running": sum(1 for _, row in rows if row.state in UP_STATES),
                "ready": sum(1 for _, row in current if row.state in READY_STATES),
                "updated": len(current),
                "rollout": rollout_progress(w, current),
                "nodes": sorted({n for n, row in rows if row.state != State.UNSCHEDULABLE}),
                "replicas": [
                    {
                        "node": n,
                        "replica": row.replica,
                        "state": row.state,
                        "reason": row.reason,
                        "message": row.message,
                        "specHash": row.spec_hash[:8],
                        "restarts": row.restarts,
                        **({"slot": row.slot} if row.slot else {}),
                    }
                    for n, row in rows
                ],
            }
        )
    return {
        "revision": rev,
        "liveNodes": sorted(view.live),
        "nodes": nodes,
        "workloads": workloads,
        "claims": _claims(mset, view),
        "services": _services(mset, view),
        "autoscalers": [_autoscaler(h, applied.get(h.key)) for h in mset.autoscalers],
        "manifestErrors": [e.model_dump(exclude_none=True) for e in mset.errors],
    }


def _autoscaler(hpa: Autoscaler, decision: AutoscalerStatus | None) -> dict[str, Any]:
    """An autoscaler's bounds and the decision in force: metrics now vs target, counts, decider, last scaling."""
    d = decision
    return {
        "key": hpa.key,
        "target": f"{hpa.target_kind}/{hpa.target_name}",
        "minReplicas": hpa.min_replicas,
        "maxReplicas": hpa.max_replicas,
        "metrics": [m.model_dump(by_alias=True) for m in d.metrics] if d else [],
        "current": d.current if d else None,
        "desired": d.replicas if d else None,
        "decider": d.decider if d else None,
        "decidedAt": d.time if d else None,
        "reason": d.reason if d else None,
        "lastScale": d.last_scale.model_dump(by_alias=True) if d and d.last_scale else None,
    }


def _claims(mset: ManifestSet, view: ClusterView) -> list[dict[str, Any]]:
    """Each claim (documents, then StatefulSet templates per replica): its volume's node and the replicas using it."""
    held = volumes.holders(view.reports, mset.releases)
    # claim -> (size, the replicas that mount it)
    claims: dict[str, tuple[int, set[ReplicaId]]] = {}
    for c in mset.claims:
        users = [w for w in mset.workloads if w.namespace == c.namespace and c.name in w.pod.claims()]
        rids = {ReplicaId(w.key, r) for w in users for r in range(w.replicas)}
        claims[volumes.claim_id(c.namespace, c.name)] = (c.storage_bytes, rids)
    for w in mset.workloads:
        for t in w.stateful.claims if w.stateful else ():
            for r in range(w.replicas):
                rid = ReplicaId(w.key, r)
                claims[volumes.claim_id(w.namespace, volumes.replica_claim(t.name, rid))] = (t.storage_bytes, {rid})
    out = []
    for claim, (storage, rids) in claims.items():
        node = held.get(claim)
        rows = view.reports[node].workloads if node is not None and node in view.reports else []
        lost = (r for n in sorted(view.live) for r in view.reports[n].workloads if r.reason == Reason.VOLUME_NODE_LOST)
        out.append(
            {
                "claim": claim,
                "storage": storage,
                "node": node,
                "live": node in view.live,
                "users": sorted(f"{r.key}[{r.replica}]" for r in rows if r.rid in rids and r.state in RUNNING_STATES),
                "lost": sorted(f"{r.key}[{r.replica}]" for r in lost if r.rid in rids),
            }
        )
    return out


def _services(mset: ManifestSet, view: ClusterView) -> list[dict[str, Any]]:
    """Each Service with its address, ports and ready endpoints per live node, as every node serves them."""
    per_node = {n: endpoints(mset.services, mset.workloads, view.reports, {n}) for n in sorted(view.live)}
    serving = replica_endpoints(mset.services, mset.workloads, view.reports, view.live)
    return [
        {
            "key": s.key,
            "type": s.type,
            "clusterIP": s.cluster_ip or None,
            "externalName": s.external_name,
            "ports": [
                {
                    "port": p.port,
                    "protocol": p.protocol,
                    "targetPort": p.target_port,
                    "nodePort": p.node_port,
                    "endpoints": {n: len(found.get(port_key(s, p), ())) for n, found in per_node.items()},
                }
                for p in s.ports
            ],
            # Headless: each replica's own virtual IP (its name REPLICA.NAME), and whether it serves now.
            "replicas": [{"name": n, "ip": ip, "ready": ip in serving} for n, ip in sorted(s.endpoint_ips.items())],
        }
        for s in mset.services
    ]


def rollout_progress(w: Workload, current: list[tuple[str, ReplicaStatus]]) -> dict[str, Any]:
    """Progress of the rollout of the workload's current spec from its rows at that spec ((node, row))."""
    halted = next((row for _, row in current if row.failed_spec_hash == w.spec_hash), None)
    if halted is None:
        halted = next((row for _, row in current if row.reason == Reason.ROLLOUT_FAILED), None)
    ready = sum(1 for _, row in current if row.state in READY_STATES)
    if w.kind in ("DaemonSet", "CronJob"):
        state = "n/a"
    elif halted is not None:
        state = "halted"
    elif ready >= w.replicas:
        state = "complete"
    else:
        state = "progressing"
    return {
        "state": state,
        "updated": len(current),
        "ready": ready,
        "reason": halted.message if halted is not None else None,
    }


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` safe to print to a terminal: printable Unicode kept, every other character escaped.

    Peers write what this renders (node names, reasons, messages, container output). C0 and C1
    controls (ESC, BEL, CR, the 8-bit CSI ``\\x9b``), newlines and format characters such as
    bidirectional overrides are shown as ``\\x1b``, ``\\n``, ``\\u202e``: an ESC sequence loses
    its ESC and prints as inert text, and a record cannot add, overwrite or hide lines.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _policy_line(policy: dict[str, Any]) -> str:
    """``baseline (monitoring: privileged), host paths /var/log, images docker.io/**``."""
    levels = ", ".join(f"{ns}: {level}" for ns, level in policy["namespaces"].items())
    text = str(policy["default"]) + (f" ({levels})" if levels else "")
    if policy["hostPaths"]:
        text += ", host paths " + " ".join(policy["hostPaths"])
    if policy["registries"]:
        text += ", images " + " ".join(policy["registries"])
    return text


def render_status(doc: dict[str, Any]) -> str:
    """Human-readable tables of nodes and workloads; every line passes through ``printable``."""
    lines = [f"revision {doc['revision'][:12]}, {len(doc['liveNodes'])} live node(s)", "", "NODES"]
    for n in doc["nodes"]:
        if n["revision"] is None:
            lines.append(f"  {n['name']:<20} rejected: {n['rejected']}")
            continue
        age = n["heartbeatAgeSeconds"]
        lines.append(
            f"  {n['name']:<20} {'live' if n['live'] else 'stale':<5} heartbeat {age if age is not None else '?'}s ago"
            f"  rev {n['revision'][:7]}{' verified' if n['verified'] else ''}{'' if n['upToDate'] else ' (behind)'}"
            f"  cpu {n['used']['cpu']}/{n['capacity']['cpu']}m mem {n['used']['memory']}/{n['capacity']['memory']}Mi"
            f"  gpus {n['capacity']['gpus']}  digest {n['digest'][:8]}{'' if n['digestAgrees'] else ' DIFFERS'}"
            f"  errors {len(n['errors'])}"
        )
        if n["rejected"]:
            lines.append(f"      last good record shown; current one rejected: {n['rejected']}")
        if n["policy"]:
            lines.append(f"      admits {_policy_line(n['policy'])}")
        # A refused commit (docs/security.md) is why a node stays behind: say so, not just count it.
        lines += [f"      {e['message']}" for e in n["errors"] if e.get("field") == "verify"]
        lines += [
            f"      namespace {h['namespace']} held at {h['sha'][:7]}: commit {h['commit'][:12]}"
            f" (signer {h['signer'] or 'none'}): {h['reason']}"
            for h in n["held"]
        ]
    lines += ["", "WORKLOADS"]
    for w in doc["workloads"]:
        desired = w["desired"] if w["desired"] is not None else "-"
        lines.append(
            f"  {w['key']:<40} desired {desired} running {w['running']} ready {w['ready']}"
            f" updated {w['updated']}  rollout {w['rollout']['state']}  on {','.join(w['nodes']) or '-'}"
        )
        if w["rollout"]["reason"]:
            lines.append(f"      rollout halted: {w['rollout']['reason']}")
        for r in w["replicas"]:
            if r["state"] not in READY_STATES or r["reason"]:
                why = f"{r['reason'] or ''} {r['message'] or ''}"
                lines.append(f"      [{r['replica']}] {r['node']}: {r['state']} {why}".rstrip())
    if doc["claims"]:
        lines += ["", "CLAIMS"]
    for c in doc["claims"]:
        where = f"on {c['node']}{'' if c['live'] else ' (DOWN)'}" if c["node"] else "no volume yet"
        used = ", ".join(c["users"]) or "-"
        lines.append(f"  {c['claim']:<40} {c['storage'] // 2**20}Mi {where}  used by {used}")
        if c["lost"]:
            lines.append(f"      {Reason.VOLUME_NODE_LOST}: {', '.join(c['lost'])} run nowhere until released")
    if doc["services"]:
        lines += ["", "SERVICES"]
    for s in doc["services"]:
        address = s["externalName"] or s["clusterIP"] or "-"
        lines.append(f"  {s['key']:<40} {s['type']:<12} {address}")
        for p in s["ports"]:
            node_port = f" node port {p['nodePort']}" if p["nodePort"] else ""
            ready = ", ".join(f"{n} {count}" for n, count in p["endpoints"].items()) or "none"
            lines.append(f"      {p['port']}/{p['protocol']} -> {p['targetPort']}{node_port}  ready endpoints: {ready}")
        if s["replicas"]:
            listed = ", ".join(f"{r['name']} {r['ip']}{'' if r['ready'] else ' (not ready)'}" for r in s["replicas"])
            lines.append(f"      replicas: {listed}")
    if doc["autoscalers"]:
        lines += ["", "AUTOSCALERS"]
    for a in doc["autoscalers"]:
        metrics = ", ".join(
            f"{m['resource']} {_metric_value(m, 'current')}/{_metric_value(m, 'target')}" for m in a["metrics"]
        )
        counts = f"current {a['current']} desired {a['desired']}" if a["desired"] is not None else "no decision yet"
        lines.append(
            f"  {a['key']:<40} {a['target']} {a['minReplicas']}..{a['maxReplicas']}  {metrics or 'no metrics'}"
            f"  {counts}  decider {a['decider'] or '-'}"
        )
        if a["lastScale"]:
            e = a["lastScale"]
            lines.append(f"      last scaled {e['from']} -> {e['to']} at {e['time']}: {e['reason']}")
        elif a["reason"]:
            lines.append(f"      {a['reason']}")
    for e in doc["manifestErrors"]:
        lines.append(f"error: {e.get('file')}:{e.get('line')}: {e.get('message')}")
    # Each entry is one line built from peer-supplied text: escape it whole, so that nothing in
    # it (an embedded newline included) can act on the terminal.
    return "\n".join(printable(line) for line in lines)


def parse_node_spec(text: str) -> NodeInfo:
    """Parse ``NAME:cpu=4,memory=8192,gpus=2`` (cpu in cores, or millicores with an m suffix; memory in MiB)."""
    name, _, rest = text.partition(":")
    if not name:
        raise ValueError(f"--add-node {text!r}: expected NAME:cpu=..,memory=..,gpus=..")
    values = {"cpu": "0", "memory": "0", "gpus": "0"}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        if k not in values:
            raise ValueError(f"--add-node {text!r}: unknown key {k!r} (cpu, memory, gpus)")
        values[k] = v
    cpu = values["cpu"]
    cpu_m = int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)
    gpus = tuple(f"{name}-gpu-{i}" for i in range(int(values["gpus"])))
    return NodeInfo(name=name, cpu_millis=cpu_m, memory_mib=int(values["memory"]), gpus=gpus)


def _metric_value(metric: dict[str, Any], which: str) -> str:
    """A metric's value as written in its target: percent of requests, a Pods metric as a quantity ("1500m")."""
    value = metric[which]
    if metric["utilization"]:
        return f"{value}%"
    if metric["resource"] in POD_METRICS:
        return str(value // 1000) if value % 1000 == 0 else f"{value}m"
    return str(value)
