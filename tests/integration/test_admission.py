"""Admission policy and the security context on the real engine (issue 9 and 10's done-means)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gitops.reconcile.reconciler import Reconciler
from tests.builders import deployment
from tests.helpers import DOCKER_HOST, Repo, make_reconciler, managed, remove_node_containers, wait_for

pytestmark = pytest.mark.usefixtures("docker_engine")

# Short timeouts: hostPath makes a workload exclusive, which a fresh node starts after one node timeout.
CLUSTER = (
    "apiVersion: gitops/v1\nkind: Cluster\nmetadata: {name: c}\nspec: {heartbeatSeconds: 1, nodeTimeoutSeconds: 2}\n"
)


def in_namespace(manifest: str, namespace: str) -> str:
    return manifest.replace("metadata:\n  name:", f"metadata:\n  namespace: {namespace}\n  name:", 1)


def rows(repo: Repo, node: str) -> dict[str, dict[str, Any]]:
    """The node's status rows by workload name."""
    return {r["name"]: r for r in repo.status(node).get("workloads", [])}


def running(node: str) -> dict[str, dict[str, Any]]:
    """The node's running containers by workload name."""
    return {c["Labels"]["gitops.name"]: c for c in managed(node, state="running")}


def inspect(cid: str) -> dict[str, Any]:
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        info: dict[str, Any] = client.api.inspect_container(cid)
        return info


def exec_out(cid: str, *cmd: str) -> str:
    with contextlib.closing(docker.DockerClient(base_url=DOCKER_HOST)) as client:
        out: bytes = client.containers.get(cid).exec_run(list(cmd)).output
        return out.decode()


@pytest.fixture
def second_node(node_name: str) -> Iterator[str]:
    name = node_name + "-b"
    yield name
    remove_node_containers(name)


def reconciler(repo: Repo, node: str, tmp_path: Path, policy: dict[str, Any]) -> Reconciler:
    return make_reconciler(str(repo.path), node, tmp_path / f"state-{node}", policy=policy)


def test_baseline_denies_privileged_and_host_paths_until_the_node_allows_them(
    repo: Repo, node_name: str, tmp_path: Path
) -> None:
    repo.write("cluster.yaml", CLUSTER)
    repo.write(
        "apps/agent.yaml",
        in_namespace(
            deployment("agent", kind="DaemonSet", engine=True, container="securityContext: {privileged: true}"),
            "ops",
        ),
    )
    root = deployment(
        "rootfs",
        1,
        engine=True,
        pod="hostPID: true\nvolumes: [{name: root, hostPath: {path: /}}]\n"
        "securityContext: {sysctls: [{name: net.core.somaxconn, value: '1024'}]}",
        container="volumeMounts: [{name: root, mountPath: /host, readOnly: true}]",
    )
    repo.write("apps/rootfs.yaml", in_namespace(root, "ops"))
    repo.write(
        "apps/etc.yaml",
        deployment(
            "etc",
            1,
            engine=True,
            pod="volumes: [{name: etc, hostPath: {path: /srv/../etc}}]",
            container="volumeMounts: [{name: etc, mountPath: /hostetc, readOnly: true}]",
        ),
    )
    repo.write(
        "apps/hardened.yaml",
        deployment(
            "hardened",
            1,
            engine=True,
            container="securityContext: {allowPrivilegeEscalation: false, "
            "capabilities: {add: [cap_net_bind_service], drop: [ALL]}}",
        ),
    )
    repo.commit("four workloads")

    # The default policy: baseline everywhere, no host paths.
    rec = reconciler(repo, node_name, tmp_path, {})
    report = rec.run_pass()
    assert report.ok, report.errors
    wait_for(lambda: "hardened" in running(node_name), what="the hardened workload, admitted at baseline")
    rec.run_pass()
    status = rows(repo, node_name)
    for name, rule in (
        ("agent", "baseline forbids privileged (container main)"),
        ("rootfs", "baseline forbids hostPath / (container main): not under host_paths (none)"),
        ("etc", "baseline forbids hostPath /etc (container main, written /srv/../etc)"),
    ):
        assert (status[name]["state"], status[name]["reason"]) == ("unschedulable", "PolicyDenied"), status[name]
        assert rule in status[name]["message"], status[name]["message"]
    assert "baseline forbids hostPID" in status["rootfs"]["message"]
    assert set(running(node_name)) == {"hardened"}
    assert repo.status(node_name)["policy"] == {
        "default": "baseline",
        "namespaces": {},
        "hostPaths": [],
        "registries": [],
    }

    # The hardening is applied, not only accepted: Docker has it and the process inside shows it.
    cid = running(node_name)["hardened"]["Id"]
    host = inspect(cid)["HostConfig"]
    assert [c.removeprefix("CAP_") for c in host["CapAdd"]] == ["NET_BIND_SERVICE"]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    proc = exec_out(cid, "cat", "/proc/self/status")
    assert "NoNewPrivs:\t1" in proc and "CapEff:\t0000000000000400" in proc  # bit 10: NET_BIND_SERVICE only

    # The node's operator allows them: ops at privileged, /etc as a host path prefix.
    rec.close()
    rec = reconciler(repo, node_name, tmp_path, {"namespaces": {"ops": "privileged"}, "host_paths": ["/etc"]})

    def all_run() -> dict[str, dict[str, Any]] | None:
        rec.run_pass()
        found = running(node_name)
        return found if set(found) == {"rootfs", "etc", "hardened"} else None

    found = wait_for(all_run, timeout=30, interval=0.3, what="every workload running once allowed")
    # Admitted and created privileged; whether it starts is the engine's matter (a Docker
    # engine that itself lacks a capability, as in CI, cannot start privileged containers).
    [agent] = [c for c in managed(node_name) if c["Labels"]["gitops.name"] == "agent"]
    assert inspect(agent["Id"])["HostConfig"]["Privileged"] is True
    rootfs = found["rootfs"]["Id"]
    host = inspect(rootfs)["HostConfig"]
    assert host["PidMode"] == "host" and host["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert exec_out(rootfs, "cat", "/proc/sys/net/core/somaxconn").strip() == "1024"
    assert exec_out(rootfs, "cat", "/host/proc/1/comm").strip() == exec_out(rootfs, "cat", "/proc/1/comm").strip()
    assert "/etc:/hostetc:ro" in inspect(found["etc"]["Id"])["HostConfig"]["Binds"]
    assert exec_out(found["etc"]["Id"], "cat", "/hostetc/hostname").strip()
    rec.close()


def test_placement_sends_work_only_to_the_node_that_admits_it(
    repo: Repo, node_name: str, second_node: str, tmp_path: Path
) -> None:
    strict, open_ = node_name, second_node
    repo.write("cluster.yaml", CLUSTER)
    repo.write(
        "apps/priv.yaml",
        in_namespace(
            deployment("priv", 2, engine=True, container="securityContext: {capabilities: {add: [NET_ADMIN]}}"), "ops"
        ),
    )
    repo.write("apps/plain.yaml", in_namespace(deployment("plain", 2, engine=True), "ops"))
    repo.commit("a privileged and a plain workload")
    recs = [
        reconciler(repo, strict, tmp_path, {}),
        reconciler(repo, open_, tmp_path, {"namespaces": {"ops": "privileged"}}),
    ]

    def converged() -> bool:
        for rec in recs:
            rec.run_pass()
        placed = {n: sorted(c["Labels"]["gitops.name"] for c in managed(n, state="running")) for n in (strict, open_)}
        return placed == {strict: ["plain"], open_: ["plain", "priv", "priv"]}

    wait_for(converged, timeout=40, interval=0.3, what="priv on the admitting node only, plain spread")
    for node in (strict, open_):
        assert sorted(repo.status(node)["liveNodes"]) == sorted((strict, open_))
    assert repo.status(open_)["policy"]["namespaces"] == {"ops": "privileged"}
    assert all(r.get("reason") != "PolicyDenied" for n in (strict, open_) for r in rows(repo, n).values())
    for rec in recs:
        rec.close()


def test_localhost_seccomp_profile_comes_from_the_node(repo: Repo, node_name: str, tmp_path: Path) -> None:
    repo.put(
        "apps/audited.yaml",
        deployment(
            "audited",
            1,
            engine=True,
            container="securityContext: {seccompProfile: {type: Localhost, localhostProfile: team/allow.json}}",
        ),
    )
    rec = make_reconciler(str(repo.path), node_name, tmp_path / "state", backoff_scale=0.01)
    rec.run_pass()
    row = rows(repo, node_name)["audited"]
    assert (row["state"], row["reason"]) == ("failed", "SeccompProfileMissing"), row
    assert "team/allow.json" in row["message"] and managed(node_name) == []

    profile = tmp_path / "state" / "seccomp" / "team" / "allow.json"
    profile.parent.mkdir(parents=True)
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')

    def started() -> dict[str, Any] | None:
        rec.run_pass()
        return running(node_name).get("audited")

    container = wait_for(started, timeout=20, interval=0.3, what="started once the node has the profile")
    opts = inspect(container["Id"])["HostConfig"]["SecurityOpt"]
    assert [o.partition("=")[0] for o in opts] == ["seccomp"] and "SCMP_ACT_ALLOW" in opts[0]
    assert exec_out(container["Id"], "grep", "Seccomp:", "/proc/self/status").split() == ["Seccomp:", "2"]
    rec.close()
