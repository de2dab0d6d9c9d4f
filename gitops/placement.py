"""Deterministic placement: which live node runs which replica. Pure, no I/O.

Algorithm (details and measurements in docs/placement.md):

1. DaemonSets: one instance on every matching node, before anything else.
2. Keep: a replica stays on the node that reports running it (``previous``) while that
   node is live, schedulable, matches the selector and still has room for it; beyond its
   workload's even spread (ceil(replicas / eligible nodes)) only while no node within the
   spread has room for it.
3. Place the rest: rank nodes per replica by capacity-weighted rendezvous hashing and take
   the first that fits, preferring nodes under the workload's spread and under a soft quota
   (110 % of the node's fair share of total demand), then any node with room.
4. Pull: a node holding no replicas (one that just joined) takes, up to its fair share,
   the replicas that rank it first, i.e. what plain rendezvous hashing would move to it.
   Repeated until no node can pull, so the result is a fixed point: feeding it back as
   ``previous`` returns it unchanged.
5. Replicas that did not fit in 3 get one more try after 4, then are Unschedulable.

A node whose published admission policy denies a workload (gitops/admission.py) is never a
candidate for it; a workload every matching node denies is reported as denied, with the rules.
Scheduling rules (gitops/scheduling.py) narrow the candidates (required node affinity,
untolerated taints; NoSchedule spares running replicas), cap replicas per topology domain
(required anti-affinity, DoNotSchedule spread) and, where they make nodes differ in
preference, rank the most preferred node with room first.

Scores are computed so every process agrees bit for bit: 64-bit blake2b of each replica
and each node, combined by splitmix64 in numpy uint64 arithmetic, and ``-ln(u)`` computed
with IEEE-exact operations only (+, -, *, /, frexp), never a libm/SIMD ``log`` whose last
bit differs between CPUs. Ties are broken by node name.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from gitops.admission import Policy, verdict
from gitops.identity import ReplicaId, WorkloadKey
from gitops.model import Workload
from gitops.scheduling import HOSTNAME_LABEL, DomainRule, Scheduling, Taint, domain_of

ALGORITHM_VERSION = "hrw-quota-sticky/5"


# New placements aim below this share of a node's fair share; past it they spill over.
QUOTA_PERCENT = 110
# Candidates examined before falling back to sorting a replica's whole node ranking.
_TOP_K = 16
# Generic (non-GPU) weight: one core counts like 4 GiB; 1000/4096 is exact in binary.
_MIB_WEIGHT = 1000 / 4096

FloatArray = npt.NDArray[np.float64]
UintArray = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.intp]


class NodeInfo(BaseModel):
    """A live node as placement sees it: labels and allocatable capacity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    cpu_millis: int
    memory_mib: int
    gpus: tuple[str, ...] = ()  # GPU UUIDs
    cordoned: bool = False
    # What the node admits; None (a daemon too old to publish one) admits everything.
    policy: Policy | None = None
    taints: tuple[Taint, ...] = ()


class Assignment(BaseModel):
    """Result of placement: replicas per node, and those that fit nowhere with why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # node name -> sorted list of (workload key, replica index)
    per_node: dict[str, list[ReplicaId]] = Field(default_factory=dict)
    # (workload key, replica index, reason)
    unschedulable: list[tuple[WorkloadKey, int, str]] = Field(default_factory=list)
    # Replicas every matching node's admission policy denies: (workload key, replica index, rules)
    denied: list[tuple[WorkloadKey, int, str]] = Field(default_factory=list)

    def for_node(self, node: str) -> list[ReplicaId]:
        """Replicas assigned to ``node``."""
        return self.per_node.get(node, [])

    def owners(self, exclude_keys: frozenset[str] = frozenset()) -> dict[ReplicaId, str]:
        """Replica -> node, built once (a DaemonSet's replica 0 is on many nodes: exclude those keys)."""
        return {rid: n for n, items in self.per_node.items() for rid in items if rid[0] not in exclude_keys}

    def digest(self, revision: str, live: Sequence[str]) -> str:
        """Hex digest of (revision, live set, algorithm, assignment) so divergent views show."""
        payload = {
            "revision": revision,
            "live": sorted(live),
            "algorithm": ALGORITHM_VERSION,
            "per_node": {n: [list(r) for r in sorted(v)] for n, v in sorted(self.per_node.items())},
            "unschedulable": sorted(list(u) for u in self.unschedulable),
        }
        if self.denied:
            # Only when present: without policies, digests match those of daemons that predate them.
            payload["denied"] = sorted(list(d) for d in self.denied)
        raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()


# --- deterministic scores -------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S12, _S27, _S30, _S31 = np.uint64(12), np.uint64(27), np.uint64(30), np.uint64(31)
_LN2 = 0.6931471805599453
# 2/(2k+1) for k = 6..0: ln(m) = 2*atanh(s), s = (m-1)/(m+1), |s| <= 1/3 for m in [0.5, 1);
# seven terms leave a relative error below 2e-8, far below what could bias the ranking.
_ATANH = (2 / 13, 2 / 11, 2 / 9, 2 / 7, 2 / 5, 2 / 3, 2.0)


def hash64(text: str) -> int:
    """Stable 64-bit hash of ``text`` (blake2b), identical in every process."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def rendezvous(seed: str, names: Iterable[str]) -> str | None:
    """The name with the highest rendezvous hash for ``seed`` (ties by name); None if there are none.

    Every node reading the same names picks the same one, and removing a name only moves what it held.
    """
    return min(names, key=lambda name: (-hash64(f"{seed}\0{name}"), name), default=None)


def _mix(z: UintArray) -> UintArray:
    # splitmix64 finaliser: a bijection with full avalanche, so XOR-combined inputs
    # give independent-looking rankings per replica.
    z = z ^ (z >> _S30)
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def _exponential(h: UintArray) -> FloatArray:
    """-ln(u) for u = ((h >> 12) + 0.5) / 2**52, using IEEE-exact operations only."""
    u = (h >> _S12).astype(np.float64)  # < 2**52, so the conversion and +0.5 are exact
    u += 0.5
    u *= 2.0**-52
    m, e = np.frexp(u)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = np.full_like(s, _ATANH[0])
    for c in _ATANH[1:]:
        p *= s2
        p += c
    p *= s
    p += e * _LN2
    return -p


def _scores(replica_hashes: UintArray, node_hashes: UintArray, inv_weights: FloatArray) -> FloatArray:
    """Rendezvous keys, lower is better: Exp(1) / weight, so P(best) is proportional to weight."""
    e = _exponential(_mix(replica_hashes[:, None] ^ node_hashes[None, :]))
    e *= inv_weights[None, :]
    return e


# --- problem model --------------------------------------------------------------------


@dataclass
class _Domains:
    """One DomainRule of a workload: its replica count per topology domain, kept by ``_Cluster``."""

    rule: DomainRule
    of: IntArray  # node -> domain index; -1 where the node has no such label
    counts: list[int]
    eligible: list[int]  # domains of the nodes the workload may be placed on

    def excess(self, nodes: IntArray) -> IntArray:
        """How far one more replica on each of ``nodes`` goes past the rule; 0: within it."""
        counts = np.array(self.counts, dtype=np.intp)
        of = self.of[nodes]
        # Domain -1 (no label) reads the 0 appended at the end.
        held = np.append(counts, 0)[of]
        if self.rule.anti:
            return held
        enough = len(self.eligible) >= self.rule.min_domains
        low = int(counts[self.eligible].min()) if enough and self.eligible else 0
        over = np.maximum(0, held + 1 - low - self.rule.max_skew)
        # Only ScheduleAnyway sees nodes without the label (DoNotSchedule excludes them): least preferred.
        worst = 1 + max(0, int(counts[self.eligible].max()) + 1 - low - self.rule.max_skew) if self.eligible else 1
        return np.where(of >= 0, over, worst)

    def violation(self) -> str:
        """What a required rule's excess means, for Unschedulable reasons."""
        key = self.rule.topology_key
        if self.rule.anti:
            where = "node" if key == HOSTNAME_LABEL else f"its {key}"
            return f"anti-affinity: {where} already holds a replica"
        return f"topology spread: {key} skew over {self.rule.max_skew}"


@dataclass
class _Work:
    key: WorkloadKey
    index: int  # position in processing order
    daemon: bool
    replicas: int
    cpu: int
    mem: int
    gpu: int
    ports: frozenset[tuple[int, str]]
    selector: dict[str, str]
    # Soft cap of replicas per node: ceil(replicas / eligible nodes), so equal nodes share evenly
    # even when requests are zero and resource quotas cannot tell them apart.
    spread: int = 1
    eligible: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    mask: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # Nodes whose policy denies it, per distinct verdict: (node indices, rules broken).
    denials: list[tuple[IntArray, tuple[str, ...]]] = field(default_factory=list)
    admitted: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    rules: Scheduling = field(default_factory=Scheduling)
    # Nodes whose labels and taints admit a new replica (``match``) or let a running one stay.
    match: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    stay: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # Static preference per node (preferred node affinity, PreferNoSchedule); None: all equal.
    preference: IntArray | None = None
    domains: list[_Domains] = field(default_factory=list)
    # Nodes differ in preference (static or by soft rules), so the whole ranking must be scored.
    soft: bool = False


class _Cluster:
    """Mutable load bookkeeping over nodes sorted by name."""

    def __init__(self, nodes: list[NodeInfo]) -> None:
        self.nodes = nodes
        self.names = [n.name for n in nodes]
        self.cap_cpu = [n.cpu_millis for n in nodes]
        self.cap_mem = [n.memory_mib for n in nodes]
        self.cap_gpu = [len(n.gpus) for n in nodes]
        self.used_cpu = [0] * len(nodes)
        self.used_mem = [0] * len(nodes)
        self.used_gpu = [0] * len(nodes)
        self.ports: list[set[tuple[int, str]]] = [set() for _ in nodes]
        self.holds: list[dict[str, int]] = [{} for _ in nodes]
        self.regular = [0] * len(nodes)  # replicas other than DaemonSet instances
        self.fair_cpu = [0] * len(nodes)
        self.fair_mem = [0] * len(nodes)
        self.quota_cpu = [0] * len(nodes)
        self.quota_mem = [0] * len(nodes)
        self.hashes: UintArray = np.array([hash64("node\0" + n) for n in self.names], dtype=np.uint64)
        generic = np.array(self.cap_cpu, dtype=np.float64) + np.array(self.cap_mem, dtype=np.float64) * _MIB_WEIGHT
        gpus = np.array(self.cap_gpu, dtype=np.float64)
        self.inv_generic = _inverse(generic)
        self.inv_gpu = _inverse(gpus)

    def set_shares(self, demands: Sequence[tuple[list[int], int, int]]) -> None:
        """Fair share and quota per node (integers): each (nodes, cpu, memory) demand over its nodes' capacity.

        Without taints or node affinity there is one demand, over every schedulable node; a
        workload kept off some nodes by them counts only on the nodes it may use.
        """
        quota_cpu = [0] * len(self.nodes)
        quota_mem = [0] * len(self.nodes)
        for nodes, demand_cpu, demand_mem in demands:
            total_cpu = sum(self.cap_cpu[i] for i in nodes)
            total_mem = sum(self.cap_mem[i] for i in nodes)
            for i in nodes:
                if total_cpu:
                    self.fair_cpu[i] += self.cap_cpu[i] * demand_cpu // total_cpu
                    quota_cpu[i] += self.cap_cpu[i] * demand_cpu * QUOTA_PERCENT // (total_cpu * 100)
                if total_mem:
                    self.fair_mem[i] += self.cap_mem[i] * demand_mem // total_mem
                    quota_mem[i] += self.cap_mem[i] * demand_mem * QUOTA_PERCENT // (total_mem * 100)
        self.quota_cpu = [min(cap, q) for cap, q in zip(self.cap_cpu, quota_cpu, strict=True)]
        self.quota_mem = [min(cap, q) for cap, q in zip(self.cap_mem, quota_mem, strict=True)]

    def misfit(self, n: int, w: _Work) -> str | None:
        """Why ``w`` cannot be added to node ``n`` at all, or None if it fits."""
        if self.used_cpu[n] + w.cpu > self.cap_cpu[n]:
            return "insufficient cpu"
        if self.used_mem[n] + w.mem > self.cap_mem[n]:
            return "insufficient memory"
        if self.used_gpu[n] + w.gpu > self.cap_gpu[n]:
            return "insufficient nvidia.com/gpu"
        clash = w.ports & self.ports[n]
        if clash:
            port, proto = min(clash)
            return f"host port {port}/{proto} in use"
        return None

    def fits(self, n: int, w: _Work) -> bool:
        """True if ``w`` fits node ``n`` within hard capacity."""
        return (
            self.used_cpu[n] + w.cpu <= self.cap_cpu[n]
            and self.used_mem[n] + w.mem <= self.cap_mem[n]
            and self.used_gpu[n] + w.gpu <= self.cap_gpu[n]
            and not (w.ports and w.ports & self.ports[n])
        )

    def under_quota(self, n: int, w: _Work) -> bool:
        """True if adding ``w`` keeps node ``n`` within its soft quota (hard fit assumed)."""
        return self.used_cpu[n] + w.cpu <= self.quota_cpu[n] and self.used_mem[n] + w.mem <= self.quota_mem[n]

    def add(self, n: int, w: _Work) -> None:
        """Account ``w`` on node ``n``."""
        self.used_cpu[n] += w.cpu
        self.used_mem[n] += w.mem
        self.used_gpu[n] += w.gpu
        self.ports[n] |= w.ports
        self.holds[n][w.key] = self.holds[n].get(w.key, 0) + 1
        self.regular[n] += not w.daemon
        for d in w.domains:
            if d.of[n] >= 0:
                d.counts[d.of[n]] += 1

    def remove(self, n: int, w: _Work) -> None:
        """Undo ``add``."""
        self.used_cpu[n] -= w.cpu
        self.used_mem[n] -= w.mem
        self.used_gpu[n] -= w.gpu
        self.ports[n] -= w.ports
        self.regular[n] -= not w.daemon
        for d in w.domains:
            if d.of[n] >= 0:
                d.counts[d.of[n]] -= 1
        left = self.holds[n][w.key] - 1
        if left:
            self.holds[n][w.key] = left
        else:
            del self.holds[n][w.key]

    def _active(self, n: int) -> list[tuple[int, int]]:
        dims = ((self.used_cpu[n], self.fair_cpu[n]), (self.used_mem[n], self.fair_mem[n]))
        return [(u, f) for u, f in dims if f > 0]

    def below_fair(self, n: int) -> bool:
        """Below its fair share in every resource that has demand."""
        active = self._active(n)
        return bool(active) and all(u < f for u, f in active)


def _inverse(weights: FloatArray) -> FloatArray:
    out = np.full_like(weights, np.inf)
    np.divide(1.0, weights, out=out, where=weights > 0)
    return out


def _matches(node: NodeInfo, selector: Mapping[str, str]) -> bool:
    return all(node.labels.get(k) == v for k, v in selector.items())


def _describe_selector(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


# --- the placer -----------------------------------------------------------------------


class _Placer:
    def __init__(self, workloads: Sequence[Workload], nodes: Sequence[NodeInfo], now: datetime | None) -> None:
        self.now = now
        ordered_nodes = sorted(nodes, key=lambda n: n.name)
        for a, b in itertools.pairwise(ordered_nodes):
            if a.name == b.name:
                raise ValueError(f"duplicate node name {a.name!r}")
        self.cluster = _Cluster(ordered_nodes)
        picked = [w for w in workloads if w.kind != "CronJob"]
        self.sources = {w.key: w for w in picked}
        keys = sorted(w.key for w in picked)
        for a_key, b_key in itertools.pairwise(keys):
            if a_key == b_key:
                raise ValueError(f"duplicate workload {a_key!r}")
        works = [self._model(w) for w in sorted(picked, key=lambda w: w.key)]
        self._eligibility(works)
        daemons = [w for w in works if w.daemon]
        # GPU workloads first (scarcest resource), then the most constrained (fewest eligible
        # nodes: selectors, size), then larger requests, then key: first-fit strands
        # constrained or big replicas when small unconstrained ones took their room.
        others = sorted(
            (w for w in works if not w.daemon), key=lambda w: (-w.gpu, len(w.eligible), -w.cpu, -w.mem, w.key)
        )
        self.works = daemons + others
        for i, w in enumerate(self.works):
            w.index = i
        self.by_key = {w.key: w for w in self.works}
        self.owner: dict[ReplicaId, int] = {}
        self.unschedulable: list[tuple[WorkloadKey, int, str]] = []
        self.denied: list[tuple[WorkloadKey, int, str]] = []
        self.daemon_nodes: dict[WorkloadKey, list[int]] = {}

    def _model(self, w: Workload) -> _Work:
        return _Work(
            key=w.key,
            index=0,
            daemon=w.kind == "DaemonSet",
            replicas=max(0, w.replicas),
            cpu=w.pod.cpu_request_millis(),
            mem=w.pod.memory_request_mib(),
            gpu=w.pod.gpu_count(),
            ports=frozenset(w.pod.host_ports()),
            selector=dict(w.node_selector),
            rules=w.scheduling,
        )

    def _eligibility(self, works: list[_Work]) -> None:
        """Static candidate nodes per workload: selector, rules, schedulable, big enough when empty."""
        c = self.cluster
        cordoned = np.array([n.cordoned for n in c.nodes], dtype=bool)
        cap_cpu = np.array(c.cap_cpu, dtype=np.int64)
        cap_mem = np.array(c.cap_mem, dtype=np.int64)
        cap_gpu = np.array(c.cap_gpu, dtype=np.int64)
        by_selector: dict[tuple[tuple[str, str], ...], npt.NDArray[np.bool_]] = {}
        # Nodes grouped by policy: a verdict is computed (and cached) once per workload and policy.
        by_policy: dict[Policy, list[int]] = {}
        for i, n in enumerate(c.nodes):
            if n.policy is not None:
                by_policy.setdefault(n.policy, []).append(i)
        groups = [(policy, np.array(idx, dtype=np.intp)) for policy, idx in by_policy.items()]
        by_rules: dict[Scheduling, tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]] = {}
        preferences: dict[Scheduling, IntArray | None] = {}
        indexes: dict[str, IntArray] = {}
        prefer_not = any(t.effect == "PreferNoSchedule" for n in c.nodes for t in n.taints)
        for w in works:
            sel = tuple(sorted(w.selector.items()))
            if sel not in by_selector:
                by_selector[sel] = np.array([_matches(n, w.selector) for n in c.nodes], dtype=bool)
            w.admitted = np.ones(len(c.nodes), dtype=bool)
            for policy, idx in groups:
                rules = verdict(self.sources[w.key], policy)
                if rules:
                    w.admitted[idx] = False
                    w.denials.append((idx, rules))
            if w.rules not in by_rules:
                by_rules[w.rules] = self._rule_masks(w.rules)
            admits, stays = by_rules[w.rules]
            w.match = by_selector[sel] & admits & w.admitted
            big_enough = (cap_cpu >= w.cpu) & (cap_mem >= w.mem) & (cap_gpu >= w.gpu)
            mask = w.match & big_enough
            if not w.daemon:
                mask &= ~cordoned
                w.domains = self._domains(w.rules.domains, mask, indexes)
                w.stay = by_selector[sel] & stays & big_enough & ~cordoned & w.admitted
            w.mask = mask
            w.eligible = np.flatnonzero(mask)
            if w.rules not in preferences:
                preferences[w.rules] = self._preference(w.rules) if w.rules.preferred or prefer_not else None
            w.preference = preferences[w.rules]
            w.soft = w.preference is not None or any(not d.rule.required for d in w.domains)
            # Preferred nodes take replicas first (see _choose): the even spread is over the most preferred.
            top = w.eligible
            if w.preference is not None and len(top):
                scores = w.preference[top]
                top = top[scores == scores.max()]
            w.spread = max(1, -(-w.replicas // len(top))) if len(top) else 1
        self.selector_masks = by_selector
        # Nodes whose labels and taints admit each distinct rule set's new replicas (fair shares use them).
        self.admits = {rules: masks[0] for rules, masks in by_rules.items()}

    def _rule_masks(self, rules: Scheduling) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Nodes that admit a new replica, and nodes a running replica may stay on (taints differ)."""
        nodes = self.cluster.nodes
        if rules == Scheduling() and not any(n.taints for n in nodes):
            everywhere = np.ones(len(nodes), dtype=bool)
            return everywhere, everywhere
        # A spread rule that must hold needs its label: nodes without it are not candidates (as Kubernetes).
        keys = [d.topology_key for d in rules.domains if d.required and not d.anti]
        affine = np.array(
            [
                rules.node_affinity(n.name, n.labels) and all(domain_of(n.name, n.labels, k) is not None for k in keys)
                for n in nodes
            ],
            dtype=bool,
        )
        admits = np.array([rules.blocking_taint(n.taints, False, self.now) is None for n in nodes], dtype=bool)
        stays = np.array([rules.blocking_taint(n.taints, True, self.now) is None for n in nodes], dtype=bool)
        return affine & admits, affine & stays

    def _domains(
        self, rules: Sequence[DomainRule], mask: npt.NDArray[np.bool_], indexes: dict[str, IntArray]
    ) -> list[_Domains]:
        """Counters for ``rules``; ``indexes`` caches, per topology key, each node's domain (-1: no label)."""
        out = []
        for rule in rules:
            key = rule.topology_key
            if key not in indexes:
                values = [domain_of(n.name, n.labels, key) for n in self.cluster.nodes]
                index = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}))}
                indexes[key] = np.array([-1 if v is None else index[v] for v in values], dtype=np.intp)
            of = indexes[key]
            eligible = np.unique(of[mask & (of >= 0)]).tolist()
            out.append(_Domains(rule, of, [0] * (int(of.max(initial=-1)) + 1), eligible))
        return out

    def _preference(self, rules: Scheduling) -> IntArray | None:
        nodes = self.cluster.nodes
        scores = [rules.preference(n.name, n.labels, n.taints) for n in nodes]
        return np.array(scores, dtype=np.intp) if len(set(scores)) > 1 else None

    def _blocked(self, w: _Work, n: int, anti_only: bool = False) -> str | None:
        """Why a required anti-affinity (or spread) rule keeps one more replica of ``w`` off node ``n``."""
        for d in w.domains:
            if d.rule.required and (d.rule.anti or not anti_only) and d.excess(np.array([n]))[0]:
                return d.violation()
        return None

    def _scores(self, w: _Work, nodes: IntArray) -> IntArray:
        """Soft preference of each of ``nodes`` for one more replica of ``w``: higher is better."""
        total = w.preference[nodes] if w.preference is not None else np.zeros(len(nodes), dtype=np.intp)
        for d in w.domains:
            if not d.rule.required:
                total = total - d.rule.weight * d.excess(nodes)
        return total

    def run(self, previous: Mapping[ReplicaId, str]) -> Assignment:
        c = self.cluster
        live = np.array([not n.cordoned for n in c.nodes], dtype=bool)
        # Demand per set of nodes that taints and node affinity leave a workload (one set without them).
        demands: dict[bytes, tuple[list[int], int, int]] = {}
        for w in self.works:
            count = int(np.count_nonzero(live[w.eligible])) if w.daemon else w.replicas
            usable = live & self.admits[w.rules]
            nodes, cpu, mem = demands.get(usable.tobytes(), (np.flatnonzero(usable).tolist(), 0, 0))
            demands[usable.tobytes()] = (nodes, cpu + count * w.cpu, mem + count * w.mem)
        c.set_shares(list(demands.values()))

        self._place_daemons()
        pending = self._keep(previous)
        failed = self._first_fit_all(pending)
        self._pull()
        still = [(w, r) for w, r in failed if self._first_fit_all([(w, r)])]
        # Reasons describe the final assignment, so a fixed point reports the same ones.
        for w, r in still:
            matching = self._matching(w)
            if matching.any() and not (matching & w.admitted).any():
                self.denied.append((w.key, r, self._denial(w, matching)))
            else:
                self.unschedulable.append((w.key, r, self._reason(w)))
        return self._result()

    def _place_daemons(self) -> None:
        c = self.cluster
        for w in self.works:
            if not w.daemon:
                continue
            matching = self.selector_masks[tuple(sorted(w.selector.items()))]
            if (matching & ~w.admitted).any():
                self.denied.append((w.key, 0, self._denial(w, matching)))
            for n in np.flatnonzero(w.match).tolist():
                why = c.misfit(n, w)
                if why is None:
                    c.add(n, w)
                    self.daemon_nodes.setdefault(w.key, []).append(n)
                else:
                    self.unschedulable.append((w.key, 0, f"node {c.names[n]}: {why}"))

    def _keep(self, previous: Mapping[ReplicaId, str]) -> list[tuple[_Work, int]]:
        """Keep replicas where nodes report them while still valid; return the rest in order.

        A replica beyond its workload's spread cap is kept only where no other eligible node
        within the cap has room, so a cold start's pile-up spreads out while a replica placed
        beyond the cap for lack of room is not moved by an unrelated event.
        """
        c = self.cluster
        index = {name: i for i, name in enumerate(c.names)}
        pending: list[tuple[_Work, int]] = []
        over: list[tuple[_Work, int, int]] = []
        for w in self.works:
            if w.daemon:
                continue
            for r, n in self._by_preference(
                w, [(r, index.get(previous.get(ReplicaId(w.key, r), ""), -1)) for r in range(w.replicas)]
            ):
                # Spread rules are checked once all are kept: a partial count would misjudge them.
                if n < 0 or not w.stay[n] or not c.fits(n, w) or (w.domains and self._blocked(w, n, anti_only=True)):
                    pending.append((w, r))
                elif c.holds[n].get(w.key, 0) < w.spread or w.soft:
                    # A workload with preferences is placed by them, beyond the cap where they say so;
                    # respreading it would undo that (and not return the same placement).
                    c.add(n, w)
                    self.owner[ReplicaId(w.key, r)] = n
                else:
                    over.append((w, r, n))
        for w, r, n in over:
            elsewhere = any(
                m != n
                and c.holds[m].get(w.key, 0) < w.spread
                and c.fits(m, w)
                and not self._blocked(w, m, anti_only=True)
                for m in w.eligible.tolist()
            )
            if c.fits(n, w) and not elsewhere and not self._blocked(w, n, anti_only=True):
                c.add(n, w)
                self.owner[ReplicaId(w.key, r)] = n
            else:
                pending.append((w, r))
        for w in self.works:
            if w.domains:
                pending += self._unspread(w)
        return sorted(pending, key=lambda p: (p[0].index, p[1]))

    def _unspread(self, w: _Work) -> list[tuple[_Work, int]]:
        """Release kept replicas of ``w`` until its required spread rules hold: fullest domain, highest index first."""
        c = self.cluster
        released: list[tuple[_Work, int]] = []
        for d in w.domains:
            if d.rule.anti or not d.rule.required or not d.eligible:
                continue
            while True:
                low = min(d.counts[e] for e in d.eligible) if len(d.eligible) >= d.rule.min_domains else 0
                top = max(d.eligible, key=lambda e: (d.counts[e], -e))
                if d.counts[top] - low <= d.rule.max_skew:
                    break
                where = (self.owner.get(ReplicaId(w.key, r)) for r in range(w.replicas))
                held = [r for r, n in enumerate(where) if n is not None and d.of[n] == top]
                c.remove(self.owner.pop(ReplicaId(w.key, held[-1])), w)
                released.append((w, held[-1]))
        return released

    def _by_preference(self, w: _Work, claims: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """(replica, node) claims ordered by how much each node ranks its replica (HRW score).

        When more replicas claim a node than its spread allows (a cold start, where every
        node claimed everything), the ones it ranks highest stay: what HRW would choose, so
        the survivors are spread over replica indices rather than the lowest ones.
        """
        c = self.cluster
        valid = [(r, n) for r, n in claims if n >= 0]
        if len(valid) < 2:
            return claims
        hashes = np.array([hash64(f"{w.key}\0{r}") for r, _ in valid], dtype=np.uint64)
        nodes = np.array([n for _, n in valid], dtype=np.intp)
        inv = (c.inv_gpu if w.gpu else c.inv_generic)[nodes]
        score = _exponential(_mix(hashes ^ c.hashes[nodes])) * inv
        order = np.lexsort((np.array([r for r, _ in valid]), score)).tolist()
        return [valid[i] for i in order] + [(r, n) for r, n in claims if n < 0]

    def _first_fit_all(self, pending: list[tuple[_Work, int]]) -> list[tuple[_Work, int]]:
        """First-fit each pending replica down its ranking; return those that fit nowhere."""
        c = self.cluster
        failed: list[tuple[_Work, int]] = []
        start = 0
        while start < len(pending):
            w = pending[start][0]
            stop = start
            while stop < len(pending) and pending[stop][0] is w:
                stop += 1
            reps = [r for _, r in pending[start:stop]]
            start = stop
            if len(w.eligible) == 0:
                failed += [(w, r) for r in reps]
                continue
            inv = (c.inv_gpu if w.gpu else c.inv_generic)[w.eligible]
            hashes = np.array([hash64(f"{w.key}\0{r}") for r in reps], dtype=np.uint64)
            scores = _scores(hashes, c.hashes[w.eligible], inv)
            if w.soft:
                self._place_preferred(w, reps, scores, failed)
                continue
            for row, candidates in enumerate(_top_candidates(scores)):
                node = self._choose(w, candidates)
                if node is None:
                    full = np.argsort(scores[row], kind="stable").tolist()
                    node = self._choose(w, full, exhaustive=True)
                self._place_at(w, reps[row], node, failed)
        return failed

    def _place_at(self, w: _Work, r: int, node: int | None, failed: list[tuple[_Work, int]]) -> None:
        """Place replica ``r`` of ``w`` at column ``node``, or record it as failed."""
        if node is None:
            failed.append((w, r))
            return
        n = int(w.eligible[node])
        self.cluster.add(n, w)
        self.owner[ReplicaId(w.key, r)] = n

    def _choose(self, w: _Work, order: list[int], exhaustive: bool = False) -> int | None:
        """Best column in ``order``: first under quota without a sibling, else the best fallback."""
        c = self.cluster
        blocked = self._blocked_columns(w) if w.domains else None
        best: tuple[int, int] | None = None
        for col in order:
            n = int(w.eligible[col])
            if not c.fits(n, w) or (blocked is not None and blocked[col]):
                continue
            # 0: quota & spread, 1: spread over quota, 2: quota with a sibling, 3: neither.
            rank = (0 if c.holds[n].get(w.key, 0) < w.spread else 2) + (0 if c.under_quota(n, w) else 1)
            if rank == 0:
                return col
            if best is None or rank < best[0]:
                best = (rank, col)
        # A fallback seen in the top candidates may be beaten by a quota node further down.
        return best[1] if exhaustive and best is not None else None

    def _blocked_columns(self, w: _Work) -> list[bool]:
        """Per eligible node, whether a required anti-affinity or spread rule keeps one more replica off it."""
        blocked = np.zeros(len(w.eligible), dtype=bool)
        for d in w.domains:
            if d.rule.required:
                blocked |= d.excess(w.eligible) > 0
        return blocked.tolist()

    def _place_preferred(self, w: _Work, reps: list[int], hrw: FloatArray, failed: list[tuple[_Work, int]]) -> None:
        """Place ``reps`` where ``_choose`` would if it went down each ranking most preferred node first.

        That is the best of (preference, rank as in ``_choose``, HRW score, node order) among the
        nodes with room, over all eligible nodes at once: preferences change as replicas land, so
        each replica scores the whole ranking. Only ``w``'s own placements change the load meanwhile.
        """
        c = self.cluster
        el = w.eligible
        load = np.array([c.used_cpu, c.used_mem, c.used_gpu], dtype=np.int64)[:, el]
        need = np.array([w.cpu, w.mem, w.gpu], dtype=np.int64)[:, None]
        cap = np.array([c.cap_cpu, c.cap_mem, c.cap_gpu], dtype=np.int64)[:, el]
        quota = np.array([c.quota_cpu, c.quota_mem], dtype=np.int64)[:, el]
        holds = np.array([c.holds[n].get(w.key, 0) for n in el.tolist()], dtype=np.intp)
        for row, r in enumerate(reps):
            room = np.all(load + need <= cap, axis=0)
            if w.ports:
                room &= np.array([not (w.ports & c.ports[n]) for n in el.tolist()], dtype=bool)
            if w.domains:
                room &= ~np.array(self._blocked_columns(w), dtype=bool)
            cols = np.flatnonzero(room)
            if not len(cols):
                failed.append((w, r))
                continue
            under = np.all(load[:2, cols] + need[:2] <= quota[:, cols], axis=0)
            rank = np.where(holds[cols] < w.spread, 0, 2) + np.where(under, 0, 1)
            col = int(cols[np.lexsort((cols, hrw[row, cols], rank, -self._scores(w, el[cols])))[0]])
            self._place_at(w, r, col, failed)
            load[:, col] += need[:, 0]
            holds[col] += 1

    def _pull(self) -> None:
        """Let empty nodes (newcomers) take up to their fair share of the replicas that rank them first."""
        c = self.cluster
        placed = sorted(self.owner, key=lambda rid: (self.by_key[rid[0]].index, rid[1]))
        if not placed:
            return
        works = [self.by_key[k] for k, _ in placed]
        hashes = np.array([hash64(f"{k}\0{r}") for k, r in placed], dtype=np.uint64)
        is_gpu = np.array([w.gpu > 0 for w in works], dtype=bool)
        widx = np.array([w.index for w in works], dtype=np.intp)
        owners = np.array([self.owner[rid] for rid in placed], dtype=np.intp)
        inv = np.where(is_gpu, c.inv_gpu[owners], c.inv_generic[owners])
        current = _exponential(_mix(hashes ^ c.hashes[owners])) * inv
        eligible = np.zeros((len(self.works), len(c.names)), dtype=bool)
        for w in self.works:
            eligible[w.index, w.eligible] = True
        # A node emptied by another's pull is empty too and may pull in turn: otherwise feeding
        # the result back (a no-op commit) would let it pull then, and placement would not be
        # a fixed point. Each such move goes to the replica's first-ranked node.
        moved = True
        while moved:
            moved = False
            for q in range(len(c.names)):
                if c.regular[q] or not c.below_fair(q) or c.nodes[q].cordoned:
                    continue
                inv_q = np.where(is_gpu, c.inv_gpu[q], c.inv_generic[q])
                score = _exponential(_mix(hashes ^ c.hashes[q])) * inv_q
                cand = np.flatnonzero(eligible[widx, q] & (score < current))
                for i in self._pull_order(q, cand, works, hashes, score):
                    w = works[i]
                    if c.holds[q].get(w.key, 0) >= w.spread or not c.fits(q, w) or not c.under_quota(q, w):
                        continue
                    c.remove(int(owners[i]), w)
                    if (w.domains or w.soft) and not self._may_move(w, int(owners[i]), q):
                        c.add(int(owners[i]), w)
                        continue
                    c.add(q, w)
                    owners[i] = q
                    current[i] = score[i]
                    self.owner[placed[i]] = q
                    moved = True
                    if not c.below_fair(q):
                        break

    def _may_move(self, w: _Work, src: int, dst: int) -> bool:
        """Whether a replica of ``w`` (already taken off ``src``) may go to ``dst``: rules hold, preference no worse."""
        if self._blocked(w, dst):
            return False
        if not w.soft:
            return True
        # Both are scored with the replica off src, so they see the same counts.
        scores = self._scores(w, np.array([dst, src]))
        return bool(scores[0] >= scores[1])

    def _pull_order(
        self, q: int, cand: IntArray, works: list[_Work], hashes: UintArray, score: FloatArray
    ) -> list[int]:
        """The candidates whose top-ranked node is ``q``, strongest preference first."""
        c = self.cluster
        # Only replicas ranking q first: exactly what plain rendezvous hashing would move, a
        # size-neutral sample of about q's weighted share. Taking any replica that merely
        # ranks q above its current node favours small ones (first-fit displaced them) and
        # moved twice the newcomer's share of replicas to fill its share of cpu.
        top = np.zeros(len(cand), dtype=bool)
        groups: dict[int, list[int]] = {}
        for pos, i in enumerate(cand.tolist()):
            groups.setdefault(works[i].index, []).append(pos)
        for positions in groups.values():
            w = works[int(cand[positions[0]])]
            inv = (c.inv_gpu if w.gpu else c.inv_generic)[w.eligible]
            rows = _scores(hashes[cand[positions]], c.hashes[w.eligible], inv)
            # argmin takes the first minimum: ties go to the lower node name, as in ranking.
            top[positions] = w.eligible[np.argmin(rows, axis=1)] == q
        chosen = cand[top]
        return chosen[np.lexsort((chosen, score[chosen]))].tolist()  # type: ignore[no-any-return]

    def _matching(self, w: _Work) -> npt.NDArray[np.bool_]:
        """Schedulable nodes that match the workload's selector."""
        cordoned = np.array([n.cordoned for n in self.cluster.nodes], dtype=bool)
        matching: npt.NDArray[np.bool_] = self.selector_masks[tuple(sorted(w.selector.items()))] & ~cordoned
        return matching

    def _denial(self, w: _Work, among: npt.NDArray[np.bool_]) -> str:
        """The policies that deny ``w`` on the nodes in ``among``, with the nodes that hold them."""
        names = self.cluster.names
        parts = []
        for idx, rules in w.denials:
            hit = [names[n] for n in idx.tolist() if among[n]]
            if hit:
                more = f" (+{len(hit) - 3} more)" if len(hit) > 3 else ""
                parts.append(f"{', '.join(hit[:3])}{more}: {'; '.join(rules)}")
        return "denied by node policy on " + " | ".join(parts)

    def _reason(self, w: _Work) -> str:
        c = self.cluster
        matching = np.flatnonzero(self._matching(w)).tolist()
        if not matching:
            where = f" matches nodeSelector {_describe_selector(w.selector)}" if w.selector else ""
            return f"no schedulable node{where}"
        counts: dict[str, int] = {}
        for n in matching:
            why = (
                ("denied by its policy" if not w.admitted[n] else None)
                or self._excluded(w, n)
                or c.misfit(n, w)
                or self._blocked(w, n)
                or "fits only by displacing others"
            )
            counts[why] = counts.get(why, 0) + 1
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        return f"0/{len(matching)} matching nodes fit ({detail})"

    def _excluded(self, w: _Work, n: int) -> str | None:
        """Why node ``n``'s labels or taints exclude ``w`` (the rules behind ``w.match``), or None."""
        node = self.cluster.nodes[n]
        if not w.rules.node_affinity(node.name, node.labels):
            return "node affinity does not match"
        for d in w.domains:
            if d.rule.required and not d.rule.anti and d.of[n] < 0:
                return f"no {d.rule.topology_key} label for topology spread"
        taint = w.rules.blocking_taint(node.taints, False, self.now)
        return f"untolerated taint {taint}" if taint else None

    def _result(self) -> Assignment:
        per_node: dict[str, list[ReplicaId]] = {}
        names = self.cluster.names
        for key, nodes in self.daemon_nodes.items():
            for n in nodes:
                per_node.setdefault(names[n], []).append(ReplicaId(key, 0))
        for rid, n in self.owner.items():
            per_node.setdefault(names[n], []).append(rid)
        # Built from validated inputs; skipping re-validation keeps 10,000 replicas cheap.
        return Assignment.model_construct(
            per_node={n: sorted(v) for n, v in sorted(per_node.items())},
            unschedulable=sorted(self.unschedulable),
            denied=sorted(self.denied),
        )


def _top_candidates(scores: FloatArray) -> list[list[int]]:
    """Per row, the columns of the lowest ``_TOP_K`` scores (all ties included), best first."""
    rows, cols = scores.shape
    if cols <= _TOP_K:
        return np.argsort(scores, axis=1, kind="stable").tolist()  # type: ignore[no-any-return]
    threshold = np.partition(scores, _TOP_K - 1, axis=1)[:, _TOP_K - 1]
    r, k = np.nonzero(scores <= threshold[:, None])
    # lexsort's last key is primary: row, then score, then column (the node-name order).
    order = np.lexsort((k, scores[r, k], r))
    ks = k[order].tolist()
    bounds = np.searchsorted(r[order], np.arange(rows + 1)).tolist()
    return [ks[bounds[i] : bounds[i + 1]] for i in range(rows)]


def place(
    workloads: Sequence[Workload],
    nodes: Sequence[NodeInfo],
    previous: Mapping[ReplicaId, str] | None = None,
    now: datetime | None = None,
) -> Assignment:
    """Assign every replica of ``workloads`` to a node in ``nodes``, keeping ``previous`` where valid.

    ``now`` ends tolerationSeconds of NoExecute taints; without it, no toleration expires.
    """
    return _Placer(workloads, nodes, now).run(previous or {})
