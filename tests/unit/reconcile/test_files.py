"""Volume files on the node, envFrom on the node, and keyed secret digests in spec hashes."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import pytest

from gitops.model import (
    ContainerSpec,
    EnvFrom,
    EnvVar,
    FileVolume,
    ManifestSet,
    Mount,
    PodSpec,
    SecretRef,
    VolumeFile,
    Workload,
)
from gitops.reconcile.execute import Executor
from gitops.reconcile.files import SWEEP_MIN_AGE_S, FileStore
from gitops.reconcile.plan import Action, Instance
from gitops.runtime.base import RuntimeFailure
from gitops.secretdigest import DIGEST_KEY_FILE, with_secret_digests
from tests.builders import workload
from tests.fakes import FakeRuntime

PASSWORD = "hunter2-secret-value"


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    d = tmp_path / "secrets"
    (d / "default" / "db").mkdir(parents=True)
    (d / "default" / "db" / "password").write_text(PASSWORD + "\n")
    (d / "default" / "db" / "user").write_text("app")
    return d


def text(data: bytes) -> str:
    return base64.b64encode(data).decode()


def volume(*files: VolumeFile) -> FileVolume:
    return FileVolume(name="conf", files=files)


def test_files_are_written_with_their_modes_and_replaced_whole(tmp_path: Path, secrets: Path) -> None:
    store = FileStore(tmp_path / "files", secrets)
    files = volume(
        VolumeFile(path="nginx/app.conf", content=text(b"listen 80\n")),
        VolumeFile(path="pw", mode=0o400, secret=SecretRef(name="db", key="password")),
        VolumeFile(mode=0o440, secret=SecretRef(name="db")),
    )
    old_umask = os.umask(0o077)  # as under systemd: modes must not depend on it
    try:
        root = store.write("c1", "default", [files])
    finally:
        os.umask(old_umask)
    conf = root / "conf"
    assert (conf / "nginx" / "app.conf").read_text() == "listen 80\n"
    assert (conf / "pw").read_text() == PASSWORD + "\n"
    assert (conf / "user").read_bytes() == b"app"
    modes = {p.relative_to(conf).as_posix(): p.stat().st_mode & 0o777 for p in conf.rglob("*")}
    assert modes == {"nginx": 0o755, "nginx/app.conf": 0o644, "pw": 0o400, "password": 0o440, "user": 0o440}
    assert (conf.stat().st_mode & 0o777, (tmp_path / "files").stat().st_mode & 0o777) == (0o755, 0o700)
    store.write("c1", "default", [volume(VolumeFile(path="only", content=text(b"x")))])
    assert sorted(p.name for p in conf.iterdir()) == ["only"]
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["c1"]  # no staging left behind


def test_a_missing_secret_fails_the_container_unless_optional(tmp_path: Path, secrets: Path) -> None:
    store = FileStore(tmp_path / "files", secrets)
    optional = volume(VolumeFile(secret=SecretRef(name="tls", optional=True)))
    assert list((store.write("c1", "default", [optional]) / "conf").iterdir()) == []
    with pytest.raises(RuntimeFailure) as failure:
        store.write("c2", "default", [volume(VolumeFile(path="k", secret=SecretRef(name="tls", key="key")))])
    assert failure.value.reason == "SecretMissing" and "secrets/default/tls/key" in str(failure.value)
    # Another namespace's secret is not this workload's.
    with pytest.raises(RuntimeFailure):
        store.write("c3", "team-b", [volume(VolumeFile(path="pw", secret=SecretRef(name="db", key="password")))])


def test_sweep_removes_only_old_directories_of_gone_containers(tmp_path: Path, secrets: Path) -> None:
    store = FileStore(tmp_path / "files", secrets)
    for name in ("live", "gone", "young"):
        store.write(name, "default", [volume()])
    old = time.time() - SWEEP_MIN_AGE_S - 5
    for name in ("live", "gone"):
        os.utime(tmp_path / "files" / name, (old, old))
    store.sweep({"live"})
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["live", "young"]


def test_the_executor_mounts_files_and_builds_env_from_sources(tmp_path: Path, secrets: Path) -> None:
    main = ContainerSpec(
        name="main",
        image="img",
        env_from=(
            EnvFrom(prefix="DB_", secret=SecretRef(name="db")),
            EnvFrom(values=(("MODE", "prod"), ("DB_user", "from-config"))),
            EnvFrom(secret=SecretRef(name="absent", optional=True)),
        ),
        env=(EnvVar(name="MODE", value="env-wins"),),
        mounts=(
            Mount(target="/etc/app", type="files", source="conf", read_only=True),
            Mount(target="/pw", type="files", source="conf", read_only=True, sub_path="pw"),
        ),
    )
    files = volume(VolumeFile(path="pw", secret=SecretRef(name="db", key="password")))
    w = workload(pod=PodSpec(containers=(main,), files=(files,)))
    engine = FakeRuntime(images={"img"})
    executor = Executor(engine, "n1", secrets, tmp_path / "files", tmp_path / "seccomp")
    inst = Instance(w, 0, "rev")
    out = executor.execute([Action("run", inst.id, "missing", instance=inst, container=main)])
    assert out.failures == {}
    (req,) = engine.requests
    assert req.env == [f"DB_password={PASSWORD}", "DB_user=from-config", "MODE=env-wins"]
    conf = tmp_path / "files" / req.name / "conf"
    assert req.binds == [f"{conf}:/etc/app:ro", f"{conf / 'pw'}:/pw:ro"]
    assert (conf / "pw").read_text() == PASSWORD + "\n"
    executor._remove(engine.list_managed("n1")[0])
    assert not (tmp_path / "files" / req.name).exists()


def test_env_from_a_missing_secret_is_a_replica_failure(tmp_path: Path, secrets: Path) -> None:
    main = ContainerSpec(name="main", image="img", env_from=(EnvFrom(secret=SecretRef(name="absent")),))
    inst = Instance(workload(pod=PodSpec(containers=(main,))), 0, "rev")
    engine = FakeRuntime(images={"img"})
    out = Executor(engine, "n1", secrets, tmp_path / "files", tmp_path / "seccomp").execute(
        [Action("run", inst.id, "missing", instance=inst, container=main)]
    )
    reason, message = out.failures[inst.id]
    assert reason == "SecretMissing" and "secret absent not found" in message


def secret_user(name: str, ref: SecretRef) -> Workload:
    return workload(
        name, pod=PodSpec(containers=(ContainerSpec(name="main", image="img", env=(EnvVar(name="P", secret=ref),)),))
    )


def hashes(mset: ManifestSet, secrets: Path) -> dict[str, str]:
    return {w.name: w.spec_hash for w in with_secret_digests(mset, secrets).workloads}


def test_a_secret_change_rolls_its_users_only_with_the_shared_key(tmp_path: Path, secrets: Path) -> None:
    mset = ManifestSet(
        workloads=(
            secret_user("pw", SecretRef(name="db", key="password")),
            secret_user("user", SecretRef(name="db", key="user")),
            secret_user("missing", SecretRef(name="nope", key="x")),
            workload("plain"),
        )
    )
    unkeyed = hashes(mset, secrets)
    assert unkeyed == {w.name: w.spec_hash for w in mset.workloads}  # no key: hashes as before
    (secrets / DIGEST_KEY_FILE).write_text("k" * 32)
    before = hashes(mset, secrets)
    assert [n for n in before if before[n] != unkeyed[n]] == ["pw", "user"]
    # Another node with the same key and secrets computes the same hashes.
    twin = tmp_path / "twin"
    (twin / "default" / "db").mkdir(parents=True)
    for f in ("password", "user"):
        (twin / "default" / "db" / f).write_bytes((secrets / "default" / "db" / f).read_bytes())
    (twin / DIGEST_KEY_FILE).write_text("k" * 32)
    assert hashes(mset, twin) == before
    (secrets / "default" / "db" / "password").write_text("rotated\n")
    after = hashes(mset, secrets)
    assert [n for n in before if before[n] != after[n]] == ["pw"]
    # The spec carries a keyed digest: neither the value nor its plain hash.
    stamped = with_secret_digests(mset, secrets).workloads[0].pod.model_dump_json()
    assert "rotated" not in stamped and hashlib.sha256(b"rotated\n").hexdigest() not in stamped


def test_a_short_digest_key_is_not_used(secrets: Path) -> None:
    (secrets / DIGEST_KEY_FILE).write_text("short")
    mset = ManifestSet(workloads=(secret_user("pw", SecretRef(name="db", key="password")),))
    assert with_secret_digests(mset, secrets) == mset
