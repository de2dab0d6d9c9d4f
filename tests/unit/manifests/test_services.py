"""v1 Service documents: what is read, what is refused with file:line, and what reaches the ManifestSet."""

from __future__ import annotations

from gitops.manifests.load import combine, parse_file
from gitops.model import ManifestSet, Service, ServicePort
from tests.builders import service


def load(files: dict[str, str]) -> ManifestSet:
    return combine({name: parse_file(name, text.encode()) for name, text in files.items()})


def only(mset: ManifestSet) -> Service:
    assert mset.errors == (), [str(e) for e in mset.errors]
    (svc,) = mset.services
    return svc


def errors(text: str) -> list[str]:
    return [str(e) for e in parse_file("svc.yaml", text.encode()).errors]


def test_a_cluster_ip_service_is_read_with_its_ports_and_gets_a_virtual_ip() -> None:
    text = service("api", ports="[{name: http, port: 80, targetPort: web}, {name: dns, port: 53, protocol: UDP}]")
    svc = only(load({"svc.yaml": text}))
    assert (svc.key, svc.type, svc.line, svc.selector) == ("default/Service/api", "ClusterIP", 1, {"app": "api"})
    assert svc.ports == (
        ServicePort(name="http", port=80, target_port="web"),
        ServicePort(name="dns", protocol="UDP", port=53, target_port=53),
    )
    assert svc.cluster_ip.startswith("10.96.") and not svc.headless


def test_node_port_and_load_balancer_get_node_ports_and_load_balancer_warns() -> None:
    lb = service("lb", "type: LoadBalancer\n")
    pinned = service("np", "type: NodePort\n", ports="[{port: 80, nodePort: 30080}]")
    mset = load({"lb.yaml": lb, "np.yaml": pinned})
    assert mset.errors == ()
    by_name = {s.name: s for s in mset.services}
    assert by_name["lb"].type == "NodePort" and 30000 <= (by_name["lb"].ports[0].node_port or 0) <= 32767
    assert by_name["np"].ports[0].node_port == 30080
    assert mset.warnings == ("lb.yaml:8: spec.type: LoadBalancer is served as a NodePort on every node's address",)


def test_headless_and_external_name_services_get_no_virtual_ip() -> None:
    headless = service("db", "clusterIP: None\n", ports="")
    external = service("mail", "type: ExternalName\nexternalName: smtp.example.com\n", selector="", ports="")
    mset = load({"a.yaml": headless, "b.yaml": external})
    assert mset.errors == ()
    by_name = {s.name: s for s in mset.services}
    assert by_name["db"].headless and by_name["db"].cluster_ip == "None"
    assert (by_name["mail"].cluster_ip, by_name["mail"].external_name) == ("", "smtp.example.com")


def test_a_selectorless_service_is_refused_with_the_reason() -> None:
    (error,) = errors(service("legacy", selector=""))
    assert error.startswith("svc.yaml:6: spec.selector: a Service without a selector needs Endpoints")
    assert "ExternalName" in error
    result = parse_file("svc.yaml", service("legacy", selector="").encode())
    assert result.invalid_keys == ("default/Service/legacy",) and result.services == ()


def test_invalid_services_get_file_line_field_errors() -> None:
    assert errors(service("web", ports="[{port: 80, protocol: SCTP}]")) == [
        "svc.yaml:7: spec.ports[0].protocol: SCTP is not supported; use TCP or UDP"
    ]
    assert errors(service("web", ports="[{port: 80, nodePort: 30001}]"))[0].startswith(
        "svc.yaml:7: spec.ports[0].nodePort: nodePort needs type NodePort or LoadBalancer"
    )
    two = errors(service("web", ports="[{port: 80}, {port: 80, name: b}]"))
    assert "spec.ports[0].name: every port of a Service with several ports needs a name" in two[0]
    assert "port 80/TCP is used by more than one port" in two[1]
    assert errors(service("9lives"))[0].startswith("svc.yaml:4: metadata.name: Service name '9lives' must start")
    assert errors(service("web", "externalTrafficPolicy: Local\n"))[0].startswith(
        "svc.yaml:8: spec.externalTrafficPolicy: externalTrafficPolicy Local is not supported"
    )
    assert "a Service needs at least one port" in errors(service("web", ports=""))[0]
    assert "must be None (headless) or an IPv4 address" in errors(service("web", "clusterIP: banana\n"))[0]
    assert "did you mean 'selector'" in str(parse_file("s.yaml", service("w", "selectr: {}\n").encode()).errors[0])


def test_session_affinity_client_ip_is_kept_and_its_timeout_ignored() -> None:
    text = service("web", "sessionAffinity: ClientIP\nsessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n")
    mset = load({"svc.yaml": text})
    assert only(mset).session_affinity == "ClientIP"
    assert mset.warnings == (
        "svc.yaml:9: spec.sessionAffinityConfig: ignored: affinity hashes the client address, so it lasts while "
        "the endpoints stay the same; no timeout",
    )


def test_duplicate_services_and_pinned_conflicts_are_errors_on_both() -> None:
    mset = load({"a.yaml": service("web"), "b.yaml": service("web")})
    assert mset.services == () and mset.invalid_keys == ("default/Service/web",)
    assert "default/Service/web is defined more than once (a.yaml:1, b.yaml:1)" in str(mset.errors[0])
    pin = "clusterIP: 10.96.5.5\n"
    mset = load({"a.yaml": service("one", pin), "b.yaml": service("two", pin), "c.yaml": service("three")})
    assert [s.name for s in mset.services] == ["three"]
    assert set(mset.invalid_keys) == {"default/Service/one", "default/Service/two"}
    assert "clusterIP is set by more than one Service (a.yaml:1, b.yaml:1)" in str(mset.errors[0])
    outside = load({"a.yaml": service("one", "clusterIP: 10.1.0.1\n")})
    assert "10.1.0.1 is outside the service range 10.96.0.16-10.96.255.254" in str(outside.errors[0])


def test_the_cluster_document_sets_the_service_range_and_a_broken_one_freezes_services() -> None:
    cluster = "apiVersion: gitops/v1\nkind: Cluster\nspec: {serviceCidr: 172.30.0.0/20}\n"
    svc = only(load({"cluster.yaml": cluster, "svc.yaml": service("web")}))
    assert svc.cluster_ip.startswith("172.30.")
    broken = load({"cluster.yaml": cluster.replace("172.30.0.0/20", "banana"), "svc.yaml": service("web")})
    assert "'banana' is not an IPv4 network" in str(broken.errors[0])
    assert "default/Service/web" in broken.invalid_keys
