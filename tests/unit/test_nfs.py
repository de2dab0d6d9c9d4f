"""NFS: ``volumes[].nfs`` and storage classes of node config, as Docker local-driver volumes with NFS options."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops.admission import Policy, verdict
from gitops.config import StorageClass, load_config
from gitops.identity import ContainerIdentity
from gitops.manifests.load import combine, parse_file
from gitops.model import ClaimTemplate, ContainerSpec, Mount, NfsSource, PodSpec, StatefulSpec
from gitops.reconcile.execute import Executor
from gitops.reconcile.plan import Action, Instance
from gitops.volumes import claim_volume, nfs_options
from tests.builders import claim, deployment, workload
from tests.fakes import FakeRuntime

NFS_POD = "volumes: [{name: share, nfs: {server: 10.0.0.5, path: /export/media%s}}]"
MOUNT = "volumeMounts: [{name: share, mountPath: /media%s}]"


def _load(text: str) -> tuple[list[str], list[Mount]]:
    mset = combine({"a.yaml": parse_file("a.yaml", text.encode())})
    mounts = [m for w in mset.workloads for m in w.pod.containers[0].mounts]
    return [f"{e.field}: {e.message}" for e in mset.errors], mounts


def test_an_nfs_volume_becomes_an_nfs_mount() -> None:
    errors, mounts = _load(deployment("web", pod=NFS_POD % ", readOnly: true", container=MOUNT % ""))
    assert not errors
    assert mounts == [
        Mount(
            target="/media",
            type="nfs",
            source="share",
            read_only=True,
            nfs=NfsSource(server="10.0.0.5", path="/export/media"),
        )
    ]


@pytest.mark.parametrize(
    ("pod", "container", "field"),
    [
        ("volumes: [{name: share, nfs: {server: 'a,rw', path: /x}}]", MOUNT % "", "server"),
        ("volumes: [{name: share, nfs: {server: nas, path: x}}]", MOUNT % "", "path"),
        ("volumes: [{name: share, nfs: {server: nas, path: '/x,y'}}]", MOUNT % "", "path"),
        (NFS_POD % "", MOUNT % ", subPath: a", "subPath"),
    ],
)
def test_nfs_options_cannot_be_smuggled_and_sub_paths_are_refused(pod: str, container: str, field: str) -> None:
    errors, _ = _load(deployment("web", pod=pod, container=container))
    assert len(errors) == 1 and field in errors[0], errors


def test_the_driver_options_mount_the_export() -> None:
    assert nfs_options("10.0.0.5", "/export/media", read_only=False) == {
        "type": "nfs",
        "o": "addr=10.0.0.5,rw",
        "device": ":/export/media",
    }
    assert nfs_options("nas.lan", "/e", read_only=True)["o"] == "addr=nas.lan,ro"


def test_restricted_forbids_nfs_volumes() -> None:
    pod = PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=(_nfs_mount(),)),))
    rules = verdict(workload(pod=pod), Policy(default="restricted"))
    assert any("forbids nfs volume share" in r for r in rules)


def _nfs_mount() -> Mount:
    return Mount(target="/media", type="nfs", source="share", nfs=NfsSource(server="10.0.0.5", path="/export"))


def _executor(engine: FakeRuntime, tmp: Path, classes: dict[str, StorageClass] | None = None) -> Executor:
    return Executor(engine, "n1", tmp / "secrets", tmp / "files", tmp / "seccomp", storage_classes=classes)


def _run(ex: Executor, inst: Instance) -> None:
    ex.execute([Action("run", inst.id, "missing", instance=inst, container=c) for c in inst.workload.pod.containers])


def test_an_nfs_mount_is_a_pod_volume_with_the_nfs_options(tmp_path: Path) -> None:
    engine = FakeRuntime(images={"img"})
    w = workload(pod=PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=(_nfs_mount(),)),)))
    inst = Instance(w, 0, "r")
    _run(_executor(engine, tmp_path), inst)
    volume = ContainerIdentity("n1", inst.id, w.spec_hash, "r", "main", (), True).emptydir_volume("share")
    assert engine.volume_options[volume] == ("local", {"type": "nfs", "o": "addr=10.0.0.5,rw", "device": ":/export"})
    (req,) = engine.requests
    assert req.binds == [f"{volume}:/media:rw"] and req.labels["gitops.emptydir"] == "true"  # goes with the pod


NFS_CLASS = StorageClass(options={"type": "nfs", "o": "addr=10.0.0.5,rw", "device": ":/export"})


def test_claims_of_a_configured_storage_class_get_its_driver_and_options(tmp_path: Path) -> None:
    engine = FakeRuntime(images={"img"})
    ex = _executor(engine, tmp_path, {"nfs": NFS_CLASS})
    ex.claim_classes = {"default/shared": "nfs", "default/local": "standard"}
    mounts = tuple(Mount(target=f"/{c}", type="claim", source=c) for c in ("shared", "local"))
    pod = PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=mounts),))
    _run(ex, Instance(workload("app", pod=pod), 0, "r"))
    template = Mount(target="/data", type="claim", source="data", per_replica=True)
    stateful = StatefulSpec(claims=(ClaimTemplate(name="data", storage_bytes=1, storage_class="nfs"),))
    sts = workload("db", pod=PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=(template,)),)))
    _run(ex, Instance(sts.model_copy(update={"stateful": stateful}), 0, "r"))
    assert engine.volume_options[claim_volume("default", "shared", "n1")] == ("local", NFS_CLASS.options)
    assert engine.volume_options[claim_volume("default", "local", "n1")] == ("local", {})  # not configured here
    assert engine.volume_options[claim_volume("default", "data-db-0", "n1")] == ("local", NFS_CLASS.options)


def test_storage_classes_come_from_node_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        'storage_classes: {nfs: {driver: local, options: {type: nfs, o: "addr=10.0.0.5,rw", device: ":/export"}}}\n'
    )
    assert load_config(config, environ={}).storage_classes == {"nfs": NFS_CLASS}
    env = {"GITOPS_STORAGE_CLASSES": "{fast: {driver: local, options: {type: tmpfs, device: tmpfs}}}"}
    assert load_config(config, environ=env).storage_classes["fast"].options == {"type": "tmpfs", "device": "tmpfs"}


def test_a_claim_names_its_storage_class() -> None:
    mset = combine({"c.yaml": parse_file("c.yaml", claim("shared", spec="storageClassName: nfs").encode())})
    assert [c.storage_class for c in mset.claims] == ["nfs"]
