"""Job rules the pass applies to finished and failed indices. Pure.

A podFailurePolicy is matched against the exit codes of an index's failed containers, in
rule order as Kubernetes does; ``ttlSecondsAfterFinished`` counts from when this node first
saw every index of a Job finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from gitops.identity import Observed, ReplicaId, WorkloadKey
from gitops.model import FailureRule, JobSpec, Workload


def matching_rule(job: JobSpec | None, exited: Sequence[Observed]) -> tuple[FailureRule, Observed] | None:
    """The first podFailurePolicy rule a failed container matches, with that container."""
    failed = [c for c in exited if c.exit_code not in (0, None)]
    for rule in job.failure_rules if job else ():
        for c in failed:
            if rule.container in (None, c.container) and (c.exit_code in rule.values) == (rule.operator == "In"):
                return rule, c
    return None


def rule_message(rule: FailureRule, c: Observed) -> str:
    """What a matched rule did, for an index's result or cause."""
    return f"container {c.container} exited with code {c.exit_code}: podFailurePolicy {rule.action}"


def jobs_done(
    workloads: Iterable[Workload],
    finished: Mapping[ReplicaId, object],
    before: Mapping[WorkloadKey, tuple[str, float]],
    now: float,
) -> tuple[dict[WorkloadKey, tuple[str, float]], frozenset[WorkloadKey]]:
    """Jobs with a TTL whose every index finished, since when, and those past their TTL."""
    done: dict[WorkloadKey, tuple[str, float]] = {}
    expired: set[WorkloadKey] = set()
    for w in workloads:
        ttl = w.job.ttl_after_finished_s if w.job else None
        if ttl is None or not all(ReplicaId(w.key, r) in finished for r in range(w.replicas)):
            continue
        spec, since = before.get(w.key, (w.spec_hash, now))
        done[w.key] = (w.spec_hash, since if spec == w.spec_hash else now)
        if now - done[w.key][1] >= ttl:
            expired.add(w.key)
    return done, frozenset(expired)
