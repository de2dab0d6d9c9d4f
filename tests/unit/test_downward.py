"""The downward API: env values resolved at load time, and those the node resolves at create time."""

from __future__ import annotations

import textwrap
from pathlib import Path

from gitops import downward
from gitops.identity import ReplicaId, WorkloadKey
from gitops.manifests.load import parse_file
from gitops.model import FieldRef, Workload
from gitops.reconcile.execute import Executor
from gitops.reconcile.plan import Action, Instance
from gitops.runtime.base import RuntimeFailure
from tests.builders import deployment
from tests.fakes import FakeRuntime

ENV = """
env:
- {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
- {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
- {name: NOTE, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['note']"}}}
- {name: MISSING, valueFrom: {fieldRef: {fieldPath: "metadata.labels['absent']"}}}
- {name: ACCOUNT, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
- {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
- {name: UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
- {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
- {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
- {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIPs}}}
- {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
- {name: CPU_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
- {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
- {name: MEM_REQ, valueFrom: {resourceFieldRef: {resource: requests.memory}}}
- {name: SIDE_CPU, valueFrom: {resourceFieldRef: {containerName: side, resource: limits.cpu, divisor: 1m}}}
- {name: SIDE_MEM, valueFrom: {resourceFieldRef: {containerName: side, resource: limits.memory, divisor: 1Ki}}}
resources: {limits: {cpu: 1500m, memory: 64Mi}, requests: {cpu: 250m}}
"""


def loaded() -> Workload:
    """Container ``main`` (image ``img``) reads every kind of value; ``side`` has no limits."""
    text = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
        "  selector: {matchLabels: {app: web}}\n  template:\n"
        "    metadata: {labels: {app: web, tier: front}, annotations: {note: hi}}\n"
        "    spec:\n      serviceAccountName: api\n      containers:\n"
        "      - name: main\n        image: img\n        imagePullPolicy: Never\n"
        + textwrap.indent(textwrap.dedent(ENV).strip(), " " * 8)
        + "\n      - {name: side, image: img, imagePullPolicy: Never}\n"
    )
    result = parse_file("app.yaml", text.encode())
    assert result.errors == (), result.errors
    return result.workloads[0]


def test_values_known_from_the_repository_are_resolved_into_the_spec() -> None:
    env = {e.name: e for e in loaded().pod.containers[0].env}
    plain = {name: e.value for name, e in env.items() if e.field is None}
    assert plain == {
        "NS": "default",
        "TIER": "front",
        "NOTE": "hi",
        "MISSING": "",
        "ACCOUNT": "api",
        "CPU": "2",  # 1.5 cores rounded up, as Kubernetes does
        "CPU_M": "250",
        "MEM_MI": "64",
        "MEM_REQ": str(64 * 1024 * 1024),  # a request left out is the limit
    }
    assert {name: e.field for name, e in env.items() if e.field is not None} == {
        "POD": FieldRef(path="metadata.name"),
        "UID": FieldRef(path="metadata.uid"),
        "NODE": FieldRef(path="spec.nodeName"),
        "POD_IP": FieldRef(path="status.podIP"),
        "HOST_IP": FieldRef(path="status.hostIPs"),
        # No limit: the node's capacity, known only there.
        "SIDE_CPU": FieldRef(path="limits.cpu", divisor="1m"),
        "SIDE_MEM": FieldRef(path="limits.memory", divisor="1Ki"),
    }


def test_references_to_node_values_are_expanded_by_the_node() -> None:
    text = deployment(
        pod="hostNetwork: true",
        container="""
        env:
        - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: PORT, value: "9100"}
        - {name: LISTEN, value: "[$(IP)]:$(PORT)"}
        args: ["--listen=$(LISTEN)", "--port=$(PORT)", "--cost=$$(IP)", "--other=$(NOPE)"]
        """,
    )
    [w] = parse_file("app.yaml", text.encode()).workloads
    [c] = w.pod.containers
    # Equal on every node: the spec holds templates, the node finishes them.
    assert c.node_expanded == ("args",) and c.args == (
        "--listen=$(LISTEN)",
        "--port=9100",
        "--cost=$$(IP)",
        "--other=$(NOPE)",
    )
    assert [e.template for e in c.env] == [False, False, True]
    engine = FakeRuntime(images={c.image})
    inst = Instance(w, 0, "r1")
    ex = Executor(engine, "n7", *(Path("/nonexistent"),) * 3, host_ip="192.0.2.10")
    assert ex.execute([Action("run", inst.id, "missing", instance=inst, container=c)]).failures == {}
    [req] = engine.requests
    assert "LISTEN=[192.0.2.10]:9100" in req.env
    # As the kubelet: $$ escapes, an unknown name stays as written.
    assert req.command == ["--listen=[192.0.2.10]:9100", "--port=9100", "--cost=$(IP)", "--other=$(NOPE)"]


def test_pod_name_and_uid_are_stable_per_replica() -> None:
    rid = ReplicaId(WorkloadKey("default/Deployment/web"), 2)
    assert downward.pod_name(rid) == "web-2"
    assert downward.pod_uid(rid) == downward.pod_uid(ReplicaId(WorkloadKey("default/Deployment/web"), 2))
    assert downward.pod_uid(rid) != downward.pod_uid(ReplicaId(rid.key, 1))


def test_candidate_addresses_stay_inside_the_subnet_and_off_the_gateway() -> None:
    got = list(downward.addresses("10.0.0.0/29", "seed"))
    assert len(got) == 5 and len(set(got)) == 5
    assert set(got) <= {f"10.0.0.{i}" for i in range(2, 7)}
    assert got == list(downward.addresses("10.0.0.0/29", "seed"))


def test_the_node_resolves_its_values_when_it_creates_the_container() -> None:
    engine = FakeRuntime(images={"img"})
    w = loaded()
    inst = Instance(w, 3, "r1")
    ex = Executor(
        engine,
        "n7",
        Path("/nonexistent"),
        Path("/nonexistent"),
        Path("/nonexistent"),
        host_ip="192.0.2.10",
        capacity=(4000, 8 * 1024**3),
    )
    out = ex.execute([Action("run", inst.id, "missing", instance=inst, container=c) for c in w.pod.containers])
    assert out.failures == {}
    first, second = engine.requests
    env = dict(e.split("=", 1) for e in first.env)
    assert (env["POD"], env["UID"], env["NODE"], env["HOST_IP"]) == (
        "web-3",
        downward.pod_uid(inst.id),
        "n7",
        "192.0.2.10",
    )
    # The first container reads its pod IP: it gets a fixed address on the pod network.
    assert first.network_mode == downward.POD_NETWORK and first.ip is not None and env["POD_IP"] == first.ip
    assert first.ip.startswith("10.213.0.")
    assert (second.network_mode, second.ip, second.env) == (f"container:{first.name}", None, [])
    # Limits left out are the node's capacity.
    assert (env["SIDE_CPU"], env["SIDE_MEM"]) == ("4000", str(8 * 1024**2))


def test_a_pod_without_pod_ip_readers_stays_on_the_default_network() -> None:
    engine = FakeRuntime(images={"img"})
    text = deployment(container="env: [{name: N, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]")
    w = parse_file("app.yaml", text.replace("nginx:1.27", "img").encode()).workloads[0]
    inst = Instance(w, 0, "r1")
    Executor(engine, "n1", Path("/nonexistent"), Path("/nonexistent"), Path("/nonexistent")).execute(
        [Action("run", inst.id, "missing", instance=inst, container=w.pod.containers[0])]
    )
    [req] = engine.requests
    assert (req.network_mode, req.ip, req.env) == (None, None, ["N=n1"])
    assert "pod_network" not in engine.ops()


def test_an_address_taken_on_the_pod_network_moves_to_the_next_candidate() -> None:
    engine = FakeRuntime(images={"img"})
    engine.fail("run", RuntimeFailure("Address already in use"), times=1)
    w = loaded()
    inst = Instance(w, 0, "r1")
    ex = Executor(engine, "n1", Path("/nonexistent"), Path("/nonexistent"), Path("/nonexistent"))
    out = ex.execute([Action("run", inst.id, "missing", instance=inst, container=w.pod.containers[0])])
    assert out.failures == {} and out.ran == {inst.id}
    taken, used = list(downward.addresses("10.213.0.0/24", engine.subjects("run")[0]))[:2]
    assert [r.ip for r in engine.requests] == [used] and used != taken
    assert engine.subjects("remove") == [engine.subjects("run")[0]]
