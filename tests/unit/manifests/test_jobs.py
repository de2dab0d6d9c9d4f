"""Job fields as the loader resolves them: Indexed, suspend, TTL, podFailurePolicy, generateName, pull secrets."""

from __future__ import annotations

import pytest

from gitops.manifests.load import parse_file
from gitops.model import FailureRule, FileResult, Workload
from tests.builders import deployment, job


def parse(text: str, file: str = "jobs.yaml") -> FileResult:
    return parse_file(file, text.encode())


def only(text: str) -> Workload:
    result = parse(text)
    assert result.errors == (), [str(e) for e in result.errors]
    (w,) = result.workloads
    return w


def errors(text: str) -> dict[str | None, str]:
    result = parse(text)
    assert result.workloads == ()
    return {e.field: str(e) for e in result.errors}


def test_indexed_job_settings() -> None:
    spec = """\
        completionMode: Indexed
        completions: 5
        parallelism: 2
        backoffLimitPerIndex: 1
        maxFailedIndexes: 2
        suspend: true
        ttlSecondsAfterFinished: 30
        """
    w = only(job(spec=spec))
    assert w.replicas == 5 and w.job is not None
    assert (w.job.indexed, w.job.parallelism, w.job.backoff_limit, w.job.max_failed_indexes) == (True, 2, 1, 2)
    assert (w.job.suspend, w.job.ttl_after_finished_s) == (True, 30)
    assert parse(job(spec=spec)).warnings == ()


def test_job_settings_leave_the_spec_hash_alone() -> None:
    # Suspending or resuming a Job must not make it a new spec: finished indices stay finished.
    plain = only(job(spec="completions: 2"))
    assert only(job(spec="completions: 2\nsuspend: true\nttlSecondsAfterFinished: 5")).spec_hash == plain.spec_hash


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ("completionMode: Indexed", "spec.completionMode", "set completions"),
        ("backoffLimitPerIndex: 1", "spec.backoffLimitPerIndex", "needs completionMode: Indexed"),
        (
            "completionMode: Indexed\ncompletions: 2\nmaxFailedIndexes: 1",
            "spec.maxFailedIndexes",
            "needs backoffLimitPerIndex",
        ),
        (
            "podFailurePolicy: {rules: [{action: FailIndex, onExitCodes: {operator: In, values: [3]}}]}",
            "spec.podFailurePolicy.rules[0].action",
            "FailIndex needs backoffLimitPerIndex",
        ),
        (
            "podFailurePolicy: {rules: [{action: FailJob, onExitCodes: {operator: In, values: [0, 3]}}]}",
            "spec.podFailurePolicy.rules[0].onExitCodes",
            "cannot match exit code 0",
        ),
        (
            "podFailurePolicy: {rules: [{action: Count, onExitCodes: {operator: NotIn, values: [3, 3]}}]}",
            "spec.podFailurePolicy.rules[0].onExitCodes.values",
            "unique",
        ),
        (
            "podFailurePolicy: {rules: [{action: Ignore, onExitCodes: {operator: In, values: [1]},"
            " onPodConditions: [{type: DisruptionTarget}]}]}",
            "spec.podFailurePolicy.rules[0]",
            "exactly one",
        ),
        ("ttlSecondsAfterFinished: -1", "spec.ttlSecondsAfterFinished", ""),
    ],
)
def test_job_errors_name_the_field(spec: str, field: str, words: str) -> None:
    found = errors(job(spec=spec))
    assert field in found, found
    assert words in found[field]


def test_pod_failure_policy_needs_restart_policy_never() -> None:
    spec = "podFailurePolicy: {rules: [{action: FailJob, onExitCodes: {operator: In, values: [3]}}]}"
    found = errors(job(spec=spec, pod="restartPolicy: OnFailure"))
    assert "restartPolicy: Never" in found["spec.podFailurePolicy"]


def test_pod_failure_policy_rules_keep_their_order() -> None:
    spec = """\
        completionMode: Indexed
        completions: 2
        backoffLimitPerIndex: 1
        podFailurePolicy:
          rules:
          - {action: Ignore, onPodConditions: [{type: DisruptionTarget}]}
          - {action: FailJob, onExitCodes: {containerName: main, operator: In, values: [42, 3]}}
          - {action: FailIndex, onExitCodes: {operator: NotIn, values: [1]}}
          - {action: Count, onExitCodes: {operator: In, values: [1]}}
        """
    result = parse(job(spec=spec))
    (w,) = result.workloads
    assert w.job is not None and w.job.failure_rules == (
        FailureRule(action="FailJob", operator="In", values=(3, 42), container="main"),
        FailureRule(action="FailIndex", operator="NotIn", values=(1,)),
        FailureRule(action="Count", operator="In", values=(1,)),
    )
    # Ignoring disruptions is what happens here anyway: no warning.
    assert result.warnings == ()


@pytest.mark.parametrize(
    "rule",
    [
        "{action: FailJob, onPodConditions: [{type: DisruptionTarget}]}",
        "{action: Ignore, onPodConditions: [{type: ConfigIssue}]}",
    ],
)
def test_pod_condition_rules_that_change_behaviour_warn(rule: str) -> None:
    result = parse(job(spec=f"podFailurePolicy: {{rules: [{rule}]}}"))
    assert len(result.workloads) == 1
    (warning,) = result.warnings
    assert "spec.podFailurePolicy.rules[0].onPodConditions" in warning and "not observed" in warning


# -- generateName -------------------------------------------------------------------------------


def generated(text: str, file: str = "jobs.yaml") -> list[str]:
    return [w.name for w in parse(text, file).workloads]


def test_generate_name_is_derived_from_the_documents_place() -> None:
    doc = job().replace("metadata: {name: pi}", "metadata: {generateName: pi-}")
    (name,) = generated(doc)
    assert name.startswith("pi-") and len(name) == len("pi-") + 5
    # Every node derives the same name; editing the document keeps it.
    assert generated(doc) == [name]
    assert generated(doc.replace("echo hi", "echo changed")) == [name]
    # Another file, or another place in the file, is another workload.
    assert generated(doc, "other.yaml") != [name]
    two = generated(f"{doc}---\n{doc}")
    assert two[0] == name and len(set(two)) == 2


def test_a_name_wins_over_generate_name_and_long_prefixes_are_cut() -> None:
    named = job().replace("metadata: {name: pi}", "metadata: {name: pi, generateName: other-}")
    assert generated(named) == ["pi"]
    long = job().replace("metadata: {name: pi}", f"metadata: {{generateName: {'a' * 70}}}")
    (name,) = generated(long)
    assert len(name) == 63 and name.startswith("a" * 58)


def test_generate_name_in_a_list_and_for_deployments() -> None:
    item = deployment().replace("  name: web\n", "  generateName: web-\n")
    items = "apiVersion: v1\nkind: List\nitems:\n" + "\n".join(
        "- " + item.replace("\n", "\n  ").rstrip() for _ in range(2)
    )
    names = generated(items + "\n")
    assert len(set(names)) == 2 and all(n.startswith("web-") for n in names)


def test_image_pull_secrets_are_kept_by_name() -> None:
    w = only(deployment(pod="imagePullSecrets: [{name: hub}, {name: ghcr}]"))
    assert w.pod.image_pull_secrets == ("hub", "ghcr")
    assert only(deployment()).pod.image_pull_secrets == ()


def test_a_bad_generate_name_is_named() -> None:
    found = errors(job().replace("metadata: {name: pi}", "metadata: {generateName: Bad_}"))
    assert "must be lowercase letters" in found["metadata.generateName"]
