"""DesiredLoader against real git repositories: the blob cache and the last-valid-spec fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops import desired as desired_module
from gitops.desired import DesiredLoader
from gitops.manifests.load import CLUSTER_KEY, parse_file
from gitops.model import ClusterSpec, FileResult, ManifestSet, Workload
from gitops.source import GitSource
from tests.builders import config_map, deployment
from tests.helpers import Repo

WEB = "default/Deployment/web"


def broken(manifest: str, value: str = "lots") -> str:
    """``manifest`` with a replicas field that does not validate."""
    out = manifest.replace("replicas: ", f"replicas: {value} #", 1)
    assert out != manifest
    return out


def cluster(heartbeat: int = 5, cordoned: str = "[n9]") -> str:
    return f"""\
apiVersion: gitops/v1
kind: Cluster
metadata: {{name: cluster}}
spec: {{heartbeatSeconds: {heartbeat}, nodeTimeoutSeconds: 20, cordoned: {cordoned}}}
"""


class Parses:
    """Counts parse_file calls made through gitops.desired."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, path: str, data: bytes) -> FileResult:
        self.paths.append(path)
        return parse_file(path, data)

    def take(self) -> list[str]:
        out, self.paths = sorted(self.paths), []
        return out


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[Parses]:
    counter = Parses()
    monkeypatch.setattr(desired_module, "parse_file", counter)
    yield counter


def source(repo: Repo, state: Path) -> GitSource:
    src = GitSource(str(repo.path), "main", "", state)
    src.fetch()
    return src


def load(repo: Repo, state: Path, rev: str | None = None) -> ManifestSet:
    """A fresh loader on a fresh mirror, as after a daemon restart."""
    src = source(repo, state)
    return DesiredLoader(src).load(rev or src.head())


def by_key(mset: ManifestSet) -> dict[str, Workload]:
    return {w.key: w for w in mset.workloads}


def expected(path: str, text: str, key: str = WEB) -> Workload:
    """What parsing ``text`` alone gives for ``key``."""
    return next(w for w in parse_file(path, text.encode()).workloads if w.key == key)


# --- the cache ---


def test_parsing_is_cached_by_blob_id(repo: Repo, tmp_path: Path, parses: Parses) -> None:
    repo.write("apps/web.yaml", deployment("web", 1, engine=True))
    repo.write("apps/db.yaml", deployment("db", 1, engine=True))
    r1 = repo.commit()
    src = source(repo, tmp_path / "state")
    loader = DesiredLoader(src)

    first = loader.load(r1)
    assert parses.take() == ["apps/db.yaml", "apps/web.yaml"]
    assert loader.load(r1) is first  # the same revision again
    assert parses.take() == []

    r2 = repo.put("README.md", "not a manifest\n")
    src.fetch()
    assert loader.load(r2) == first  # new revision, same blobs: nothing parsed
    assert parses.take() == []

    r3 = repo.put("apps/web.yaml", deployment("web", 3, engine=True))
    src.fetch()
    third = loader.load(r3)
    assert parses.take() == ["apps/web.yaml"]  # only the changed blob
    assert by_key(third)[WEB].replicas == 3
    assert by_key(loader.load(r1))[WEB].replicas == 1  # back to r1: its blobs are still cached
    assert parses.take() == []


def test_a_moved_file_is_parsed_again_for_its_new_path(repo: Repo, tmp_path: Path, parses: Parses) -> None:
    r1 = repo.put("apps/web.yaml", deployment("web", 1, engine=True))
    src = source(repo, tmp_path / "state")
    loader = DesiredLoader(src)
    loader.load(r1)
    parses.take()
    repo.write("prod/web.yaml", deployment("web", 1, engine=True))
    (repo.path / "apps" / "web.yaml").unlink()
    r2 = repo.commit()
    src.fetch()
    # Same blob, new path: the path is part of what a parse yields (errors and workloads name their file).
    assert by_key(loader.load(r2))[WEB].file == "prod/web.yaml"
    assert parses.take() == ["prod/web.yaml"]


# --- the fallback ---


def test_invalid_document_keeps_the_newest_valid_spec(repo: Repo, tmp_path: Path) -> None:
    v1 = deployment("web", 1, engine=True, env={"V": "1"})
    v2 = deployment("web", 2, engine=True, env={"V": "2"})
    repo.put("apps/web.yaml", v1)
    repo.put("apps/web.yaml", v2)
    repo.put("apps/web.yaml", broken(v2, "lots"))
    head = repo.put("apps/web.yaml", broken(v2, "many"))  # still broken, differently
    src = source(repo, tmp_path / "state")
    mset = DesiredLoader(src).load(head)
    kept = by_key(mset)[WEB]
    assert kept.model_dump() == expected("apps/web.yaml", v2).model_dump()
    assert kept.spec_hash == expected("apps/web.yaml", v2).spec_hash
    # The error is still reported (so nothing is pruned), but the key has a spec: not left unmanaged.
    assert [(e.file, e.field) for e in mset.errors] == [("apps/web.yaml", "spec.replicas")]
    assert "many" in mset.errors[0].message
    assert WEB not in mset.invalid_keys

    # After a restart (fresh loader, fresh mirror, empty cache) the same spec is found from Git alone.
    again = load(repo, tmp_path / "restarted", head)
    assert by_key(again)[WEB].model_dump() == kept.model_dump()
    assert again.invalid_keys == mset.invalid_keys


def test_an_unreadable_file_keeps_everything_it_held(repo: Repo, tmp_path: Path) -> None:
    both = deployment("web", 1, engine=True) + "---\n" + deployment("db", 2, engine=True)
    repo.put("apps/all.yaml", both)
    head = repo.put("apps/all.yaml", "apiVersion: apps/v1\nkind: [Deployment\n")
    mset = load(repo, tmp_path / "state", head)
    assert mset.unreadable_files == ("apps/all.yaml",)
    assert sorted(by_key(mset)) == ["default/Deployment/db", WEB]
    assert by_key(mset)["default/Deployment/db"].replicas == 2
    assert mset.errors and mset.errors[0].file == "apps/all.yaml"


def test_a_revision_with_errors_marks_them_and_keeps_invalid_keys_protected(repo: Repo, tmp_path: Path) -> None:
    repo.write("apps/web.yaml", deployment("web", 1, engine=True))
    repo.write("apps/old.yaml", deployment("old", 1, engine=True))
    repo.commit()
    repo.write("apps/web.yaml", broken(deployment("web", 1, engine=True)))
    repo.write("apps/new.yaml", broken(deployment("new", 1)))  # invalid from its first version: no fallback
    repo.write("apps/old.yaml", broken(deployment("renamed", 1)))  # old is gone, renamed never validated
    head = repo.commit()
    mset = load(repo, tmp_path / "state", head)
    assert sorted({e.file for e in mset.errors}) == ["apps/new.yaml", "apps/old.yaml", "apps/web.yaml"]
    # Keys with no valid spec stay invalid: the policy protects them and refuses pruning (errors).
    assert set(mset.invalid_keys) == {"default/Deployment/new", "default/Deployment/renamed"}
    # web falls back; old (deleted from its file) is not brought back by the fallback.
    assert sorted(by_key(mset)) == [WEB]


def test_an_invalid_cluster_document_keeps_the_last_valid_settings(repo: Repo, tmp_path: Path) -> None:
    repo.put("cluster.yaml", cluster(heartbeat=5, cordoned="[n9]"))
    head = repo.put("cluster.yaml", cluster(heartbeat=5, cordoned="n9"))  # cordoned must be a list
    mset = load(repo, tmp_path / "state", head)
    assert mset.errors
    assert mset.cluster == ClusterSpec(heartbeat_seconds=5, node_timeout_seconds=20, cordoned=("n9",))
    assert CLUSTER_KEY not in mset.invalid_keys


def test_an_unreadable_cluster_file_keeps_the_last_valid_settings(repo: Repo, tmp_path: Path) -> None:
    repo.put("cluster.yaml", cluster(heartbeat=5, cordoned="[n9]"))
    head = repo.put("cluster.yaml", cluster().replace("cordoned: [n9]", "cordoned: [n9"))  # YAML syntax error
    mset = load(repo, tmp_path / "state", head)
    assert mset.unreadable_files == ("cluster.yaml",)
    assert mset.cluster == ClusterSpec(heartbeat_seconds=5, node_timeout_seconds=20, cordoned=("n9",))


def test_fallback_looks_past_versions_where_the_workload_was_already_invalid(repo: Repo, tmp_path: Path) -> None:
    web_v1 = deployment("web", 1, env={"V": "1"})
    valid = web_v1 + "---\n" + deployment("db", 1, engine=True)
    repo.put("apps/pair.yaml", valid)
    repo.put("apps/pair.yaml", broken(web_v1) + "---\n" + deployment("db", 1, engine=True))  # web breaks
    head = repo.put("apps/pair.yaml", broken(web_v1) + "---\n" + deployment("db", 2, engine=True))  # db edited
    mset = load(repo, tmp_path / "state", head)
    assert by_key(mset)["default/Deployment/db"].replicas == 2
    assert WEB not in mset.invalid_keys
    assert by_key(mset)[WEB].model_dump() == expected("apps/pair.yaml", valid).model_dump()


def test_an_invalid_or_unreadable_config_map_keeps_its_last_valid_version(repo: Repo, tmp_path: Path) -> None:
    uses = "env: [{name: V, valueFrom: {configMapKeyRef: {name: app, key: MODE}}}]"
    repo.put("apps/web.yaml", deployment("web", 1, engine=True, container=uses))
    repo.put("apps/config.yaml", config_map("app", {"MODE": "one"}))
    good = repo.put("apps/config.yaml", config_map("app", {"MODE": "two"}))
    before = by_key(load(repo, tmp_path / "s1", good))[WEB]
    assert before.pod.containers[0].env[0].value == "two"

    invalid = repo.put("apps/config.yaml", config_map("app", {"MODE": "three"}) + "immutable: maybe\n")
    mset = load(repo, tmp_path / "s2", invalid)
    # The ConfigMap's error is reported; its users keep the spec they had, so nothing rolls or stops.
    assert [e.field for e in mset.errors] == ["immutable"]
    assert by_key(mset)[WEB].spec_hash == before.spec_hash

    unreadable = repo.put("apps/config.yaml", "data: [unclosed\n")
    mset = load(repo, tmp_path / "s3", unreadable)
    assert mset.unreadable_files == ("apps/config.yaml",)
    assert by_key(mset)[WEB].spec_hash == before.spec_hash

    gone = repo.remove("apps/config.yaml")
    mset = load(repo, tmp_path / "s4", gone)
    # Deleted on purpose: the workload is invalid (its containers are kept), the error names the reference.
    assert WEB not in by_key(mset) and WEB in mset.invalid_keys
    assert "ConfigMap 'app' is not in namespace 'default'" in mset.errors[0].message
