"""Service endpoints from status records: which replicas serve, at which address and port."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gitops.cluster import ClusterView
from gitops.identity import ReplicaId
from gitops.manifests.load import combine, parse_file
from gitops.model import ManifestSet
from gitops.reconcile.execute import Executor
from gitops.reconcile.plan import Action, Instance
from gitops.services import dns, nft
from gitops.services.allocate import port_key
from gitops.services.endpoints import endpoints, replica_endpoints
from gitops.services.nft import Backend
from gitops.status import NodeStatus
from gitops.statusview import render_status, status_document
from tests.builders import deployment, service
from tests.fakes import FakeRuntime

WEB = deployment("web", 3, container="ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]\n")


def manifests(*docs: str) -> ManifestSet:
    mset = combine({f"{i}.yaml": parse_file(f"{i}.yaml", d.encode()) for i, d in enumerate(docs)})
    assert mset.errors == (), [str(e) for e in mset.errors]
    return mset


def record(node: str, address: str, *rows: tuple[int, str, str | None, int]) -> NodeStatus:
    """A node's record with rows of web: (replica, state, reason, published host port of 8080)."""
    workloads: list[dict[str, Any]] = [
        {
            "namespace": "default",
            "kind": "Deployment",
            "name": "web",
            "replica": replica,
            "specHash": "h",
            "state": state,
            **({"reason": reason} if reason else {}),
            "ports": [{"containerPort": 8080, "protocol": "tcp", "hostPort": host}],
        }
        for replica, state, reason, host in rows
    ]
    return NodeStatus.model_validate({"node": node, "address": address, "workloads": workloads})


def test_ready_replicas_on_live_nodes_serve_by_named_target_port() -> None:
    mset = manifests(WEB, service("web", ports="[{port: 80, targetPort: http}]"))
    reports = {
        "a": record("a", "10.0.0.1", (0, "ready", None, 32001), (1, "running", None, 32002)),
        "b": record("b", "10.0.0.2", (2, "ready", "Terminating", 32003)),
        "c": record("c", "10.0.0.3", (0, "ready", None, 32004)),
        "d": record("d", "", (1, "ready", None, 32005)),
    }
    svc = mset.services[0]
    found = endpoints(mset.services, mset.workloads, reports, live={"a", "b", "d"})
    # Not ready, terminating, a node that is not live, and one without an address: none serve.
    assert found == {port_key(svc, svc.ports[0]): [Backend("10.0.0.1", 32001)]}


def test_this_nodes_replicas_carry_their_container_address_and_port() -> None:
    mset = manifests(WEB, service("web", ports="[{port: 80, targetPort: http}]"))
    reports = {
        "a": record("a", "10.0.0.1", (0, "ready", None, 32001)),
        "b": record("b", "10.0.0.2", (1, "ready", None, 32002)),
    }
    key = port_key(mset.services[0], mset.services[0].ports[0])
    web = mset.workloads[0].key
    # Replica 1 is b's: a's container list never names it, whatever it holds.
    local = {ReplicaId(web, 0): "172.17.0.5/16", ReplicaId(web, 1): "172.17.0.6/16"}
    found = endpoints(mset.services, mset.workloads, reports, {"a", "b"}, "a", local)
    assert found == {key: [Backend("10.0.0.1", 32001, "172.17.0.5/16", 8080), Backend("10.0.0.2", 32002)]}


def test_selector_namespace_protocol_and_publish_not_ready() -> None:
    reports = {"a": record("a", "10.0.0.1", (0, "running", None, 32001))}
    eager = manifests(WEB, service("web", "publishNotReadyAddresses: true\n", ports="[{port: 80, targetPort: 8080}]"))
    assert list(endpoints(eager.services, eager.workloads, reports, {"a"}).values()) == [[Backend("10.0.0.1", 32001)]]
    for other in (
        service("web", "publishNotReadyAddresses: true\n", selector="app: api", ports="[{port: 80, targetPort: 8080}]"),
        service("web", "publishNotReadyAddresses: true\n", ports="[{port: 80, targetPort: 8080, protocol: UDP}]"),
        service("web", "publishNotReadyAddresses: true\n", ports="[{port: 80, targetPort: 9090}]"),
        service("web", "publishNotReadyAddresses: true\n", ports="[{port: 80}]").replace(
            "name: web\n", "name: web\n  namespace: other\n"
        ),
    ):
        mset = manifests(WEB, other)
        assert endpoints(mset.services, mset.workloads, reports, {"a"}) == {}, other


def test_gitops_status_lists_services_with_address_ports_and_ready_endpoints_per_node() -> None:
    mset = manifests(WEB, service("web", "type: NodePort\n", ports="[{port: 80, targetPort: http}]"))
    reports = {
        "a": record("a", "10.0.0.1", (0, "ready", None, 32001), (1, "ready", None, 32002)),
        "b": record("b", "10.0.0.2", (2, "running", None, 32003)),
    }
    doc = status_document(mset, ClusterView(reports=reports, live=frozenset(reports)), "rev")
    (svc,) = doc["services"]
    (port,) = svc["ports"]
    assert (svc["key"], svc["type"], port["endpoints"]) == ("default/Service/web", "NodePort", {"a": 2, "b": 0})
    text = render_status(json.loads(json.dumps(doc)))
    assert f"  default/Service/web                      NodePort     {svc['clusterIP']}" in text
    assert f"      80/TCP -> http node port {port['nodePort']}  ready endpoints: a 2, b 0" in text


def test_containers_get_service_variables_and_resolver_settings_and_their_own_env_wins() -> None:
    app = deployment("app", container="env: [{name: WEB_SERVICE_PORT, value: mine}]\n")
    mset = manifests(
        app,
        WEB,
        service("web", ports="[{name: http, port: 80}, {name: dns-udp, port: 53, protocol: UDP}]"),
        service("db", "clusterIP: None\n", ports=""),
        service("other", ports="[{port: 81}]").replace("name: other\n", "name: other\n  namespace: elsewhere\n"),
    )
    w = next(w for w in mset.workloads if w.name == "app")
    engine = FakeRuntime(images={w.pod.containers[0].image})
    ex = Executor(engine, "n1", *(Path("/nonexistent"),) * 3)
    ex.services, ex.dns_ip = mset.services, "10.96.0.10"
    inst = Instance(w, 0, "r1")
    assert ex.execute([Action("run", inst.id, "missing", instance=inst, container=w.pod.containers[0])]).failures == {}
    [req] = engine.requests
    web = next(s for s in mset.services if s.name == "web")
    assert req.env == [
        f"WEB_SERVICE_HOST={web.cluster_ip}",
        "WEB_SERVICE_PORT_HTTP=80",
        "WEB_SERVICE_PORT_DNS_UDP=53",
        "WEB_SERVICE_PORT=mine",
    ]
    assert (req.dns, req.dns_opt) == (("10.96.0.10",), ("ndots:5",))
    assert req.dns_search == ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
    ex.close()


STATEFUL = deployment("db", 2, container="ports: [{name: pg, containerPort: 5432}]\n").replace(
    "kind: Deployment", "kind: StatefulSet"
)


def test_headless_replicas_get_their_own_virtual_ips_names_and_rules() -> None:
    headless = service("db", "clusterIP: None\n", ports="[{port: 5432}]")
    mset = manifests(STATEFUL, headless, service("api", selector="app: db"))
    api, db = mset.services
    assert sorted(db.endpoint_ips) == ["db-0", "db-1"]
    # Distinct from each other and from every Service's own address, and the same from the same repository.
    assert len({*db.endpoint_ips.values(), api.cluster_ip}) == 3
    assert manifests(STATEFUL, headless, service("api", selector="app: db")).services == mset.services
    # Adding replicas never moves a Service's own address.
    more = manifests(STATEFUL.replace("replicas: 2", "replicas: 40"), headless, service("api", selector="app: db"))
    assert more.services[0].cluster_ip == api.cluster_ip
    rows = [
        {"namespace": "default", "kind": "StatefulSet", "name": "db", "replica": i, "specHash": "h", "state": state}
        | {"ports": [{"containerPort": 5432, "protocol": "tcp", "hostPort": 32000 + i}]}
        for i, state in ((0, "ready"), (1, "running"))
    ]
    reports = {
        "a": NodeStatus.model_validate({"node": "a", "address": "10.0.0.1", "workloads": rows[:1]}),
        "b": NodeStatus.model_validate({"node": "b", "address": "10.0.0.2", "workloads": rows[1:]}),
    }
    db0 = db.endpoint_ips["db-0"]
    found = replica_endpoints(mset.services, mset.workloads, reports, {"a", "b"})
    # db-1 is not ready: neither its name nor its address serves.
    assert found == {db0: [("tcp", 5432, Backend("10.0.0.1", 32000))]}
    script = nft.render("a", mset.services, {}, None, found)
    assert f"{db0} . tcp . 5432 : goto replica-0-tcp-5432" in script
    assert (
        "chain replica-0-tcp-5432 {\n"
        '    counter comment "endpoint 10.0.0.1:32000"\n'
        "    meta l4proto tcp dnat to 10.0.0.1:32000\n"
    ) in script
    view = ClusterView(reports=reports, live=frozenset(reports))
    text = render_status(status_document(mset, view, "abc"))
    assert f"replicas: db-0 {db0}, db-1 {db.endpoint_ips['db-1']} (not ready)" in text
    assert dns.hosts(mset.services, set(found)) == (
        f"{api.cluster_ip} api.default.svc.cluster.local api.default.svc api.default\n"
        f"{db0} db.default.svc.cluster.local db.default.svc db.default"
        " db-0.db.default.svc.cluster.local db-0.db.default.svc db-0.db.default\n"
    )
