"""Real public manifests: each validates, or is refused with file, line, field and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops.manifests.fields import Ignore, Refuse
from gitops.model import FileResult
from tests.unit.manifests.docs_tables import CORPUS, corpus_files, field_classes, parse_corpus, table

DOCS = Path(__file__).resolve().parents[3] / "docs" / "manifests.md"

# Files that hold only workloads of the supported subset: every one must validate.
VALID = {
    "k8sweb__nginx-deployment.yaml": 1,
    "k8sweb__deployment.yaml": 1,
    "k8sweb__job.yaml": 1,
    "k8sweb-ja__cronjob.yaml": 1,
    "k8sweb__daemonset.yaml": 1,
    "k8sweb__fluentd-daemonset.yaml": 1,
    "k8sweb__nginx-app.yaml": 1,
    "nvdp__nvidia-device-plugin.yaml": 1,
    "nvdp__job-1.yaml": 1,
    "voting__redis-deployment.yaml": 1,
    "voting__db-deployment.yaml": 1,
    "k8sex__guestbook-all-in-one.yaml": 3,
    "k8sex__vllm-deployment.yaml": 1,
    "kueue__sample-cronjob.yaml": 1,
    "msdemo__frontend.yaml": 1,
    "k8sweb__cronjob.yaml": 1,
    "k8sweb__mysql-deployment.yaml": 1,
    "k8sex__minio-standalone-deployment.yaml": 1,
}


@pytest.fixture(scope="module")
def results() -> dict[str, FileResult]:
    assert CORPUS.is_dir(), f"corpus missing at {CORPUS}"
    assert len(corpus_files()) >= 40
    return parse_corpus()


def test_every_error_names_file_line_field_and_message(results: dict[str, FileResult]) -> None:
    for name, result in results.items():
        for error in result.errors:
            assert error.file == name
            assert error.line is not None and error.line > 0, str(error)
            assert error.field, str(error)
            assert len(error.message) > 15, str(error)
        for warning in result.warnings:
            assert warning.startswith(f"{name}:"), warning


def test_supported_files_validate(results: dict[str, FileResult]) -> None:
    for name, count in VALID.items():
        result = results[name]
        assert result.errors == (), [str(e) for e in result.errors]
        assert len(result.workloads) == count, name


def test_out_of_subset_files_are_refused_with_directions(results: dict[str, FileResult]) -> None:
    old_cron = results["k8sweb__cronjob.yaml"]
    assert "batch/v1beta1 CronJob was removed in Kubernetes 1.25" in old_cron.warnings[0]
    pod = results["k8sweb__tcp-liveness-readiness.yaml"]
    assert pod.errors == () and "skipped Pod (v1)" in pod.warnings[0]
    assert results["boa__config.yaml"].errors == ()


def test_reference_values(results: dict[str, FileResult]) -> None:
    gpu_job = results["nvdp__job-1.yaml"].workloads[0]
    assert (gpu_job.pod.gpu_count(), gpu_job.pod.restart_policy) == (1, "Never")
    vllm = results["k8sex__vllm-deployment.yaml"].workloads[0].pod.containers[0]
    assert vllm.gpus == 1 and vllm.args is not None and "--model=google/gemma-3-1b-it" in vllm.args
    daemon = results["k8sweb__daemonset.yaml"].workloads[0]
    assert (daemon.key, daemon.exclusive) == ("kube-system/DaemonSet/fluentd-elasticsearch", True)


def test_docs_show_the_current_corpus_table(results: dict[str, FileResult]) -> None:
    assert table(results) in DOCS.read_text(), "regenerate with: python -m tests.unit.manifests.docs_tables"


@pytest.mark.parametrize("marker", [Ignore, Refuse])
def test_docs_list_every_ignored_and_refused_field(marker: type[Ignore] | type[Refuse]) -> None:
    assert field_classes(marker) in DOCS.read_text(), "regenerate with: python -m tests.unit.manifests.docs_tables"
