"""Admission: each Pod Security Standards rule at each level, path normalisation, registry patterns."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gitops.admission import Level, Policy, image_allowed, normalise_image, normalise_path, under, verdict, violations
from gitops.model import ContainerSpec, Mount, PodSpec, PortSpec, SecurityContext, Workload
from tests.builders import workload

# What the restricted level needs of every container; each case below breaks one rule at a time.
HARDENED = SecurityContext(cap_drop=("ALL",), no_new_privileges=True, run_as_non_root=True)


def pod(container: dict[str, Any] | None = None, **pod_fields: Any) -> Workload:
    """A one-container workload in namespace ``apps``, hardened unless ``container`` says otherwise."""
    fields: dict[str, Any] = {"name": "main", "image": "docker.io/library/busybox:1.36", "security": HARDENED}
    fields.update(container or {})
    return workload(namespace="apps", pod=PodSpec(containers=(ContainerSpec(**fields),), **pod_fields))


def levels(w: Workload, **policy: Any) -> dict[Level, tuple[str, ...]]:
    """The violations ``w`` gets at each level, other policy settings as given."""
    return {level: violations(w, Policy(default=level, **policy)) for level in ("privileged", "baseline", "restricted")}


def host_path(source: str, sub_path: str | None = None) -> dict[str, Any]:
    return {"mounts": (Mount(target="/m", type="hostPath", source=source, sub_path=sub_path),)}


def sec(**fields: Any) -> dict[str, Any]:
    return {"security": HARDENED.model_copy(update=fields)}


@pytest.mark.parametrize(
    ("w", "denied_at", "words"),
    [
        (pod(), set(), ""),
        (pod(host_network=True), {"baseline", "restricted"}, "forbids hostNetwork"),
        (pod(host_pid=True), {"baseline", "restricted"}, "forbids hostPID"),
        (pod(host_ipc=True), {"baseline", "restricted"}, "forbids hostIPC"),
        (pod(sec(privileged=True)), {"baseline", "restricted"}, "forbids privileged (container main)"),
        (pod(sec(cap_add=("NET_ADMIN",))), {"baseline", "restricted"}, "forbids adding capability NET_ADMIN"),
        (pod(sec(cap_add=("ALL",))), {"baseline", "restricted"}, "forbids adding capability ALL"),
        # In the baseline set, beyond restricted's.
        (pod(sec(cap_add=("CHOWN",))), {"restricted"}, "restricted forbids adding capability CHOWN"),
        (pod(sec(cap_add=("NET_BIND_SERVICE",))), set(), ""),
        (pod(sec(seccomp="Unconfined")), {"baseline", "restricted"}, "forbids seccompProfile Unconfined"),
        (pod(sec(seccomp="Localhost", seccomp_profile="p.json")), set(), ""),
        (pod(sysctls=(("net.ipv4.tcp_syncookies", "1"),)), set(), ""),
        (pod(sysctls=(("net.core.somaxconn", "1024"),)), {"baseline", "restricted"}, "forbids sysctl net.core"),
        (pod(host_path("/var/log")), {"baseline", "restricted"}, "forbids hostPath /var/log"),
        (pod({"ports": (PortSpec(container_port=80, host_port=8080),)}), {"restricted"}, "forbids hostPort 8080"),
        (pod(sec(no_new_privileges=False)), {"restricted"}, "requires allowPrivilegeEscalation: false"),
        (pod(sec(run_as_non_root=False)), {"restricted"}, "requires runAsNonRoot: true"),
        (pod({"user": "0:0"}), {"restricted"}, "forbids runAsUser 0"),
        (pod({"user": "1000"}), set(), ""),
        (pod(sec(cap_drop=("NET_RAW",))), {"restricted"}, "requires capabilities.drop [ALL]"),
    ],
)
def test_each_rule_at_each_level(w: Workload, denied_at: set[str], words: str) -> None:
    found = levels(w)
    assert found["privileged"] == ()
    assert {level for level, rules in found.items() if rules} == denied_at
    for level in denied_at:
        assert any(words in rule for rule in found[level]), found[level]  # type: ignore[index]


def test_namespace_levels_override_the_default() -> None:
    w = pod(sec(privileged=True))
    assert violations(w, Policy(default="baseline", namespaces={"apps": "privileged"})) == ()
    assert violations(w, Policy(default="privileged", namespaces={"apps": "baseline"}))
    assert violations(w, Policy(default="baseline", namespaces={"other": "privileged"}))


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/srv/../etc", "/etc"),
        ("/srv/data/../../etc/", "/etc"),
        ("//etc/./passwd", "/etc/passwd"),
        ("/../..", "/"),
        ("/", "/"),
        ("/srv/data", "/srv/data"),
    ],
)
def test_paths_are_normalised_lexically(path: str, normal: str) -> None:
    assert normalise_path(path) == normal


@pytest.mark.parametrize(
    ("source", "sub_path", "admitted"),
    [
        ("/srv/data", None, True),
        ("/srv/data/app", None, True),
        ("/var/log/", None, True),
        ("/srv/data2", None, False),
        ("/srv", None, False),
        ("/srv/../etc", None, False),
        ("/srv/data/../../etc", None, False),
        ("/srv/../srv/data/x", None, True),
        ("/", None, False),
        ("/srv/data", "sub", True),
    ],
)
def test_host_paths_are_admitted_at_baseline_under_an_allowed_prefix(
    source: str, sub_path: str | None, admitted: bool
) -> None:
    w = pod(host_path(source, sub_path))
    policy = {"host_paths": ("/var/log", "/srv/data/")}
    found = levels(w, **policy)
    assert (found["baseline"] == ()) is admitted, found["baseline"]
    assert found["restricted"], "restricted admits no hostPath, whatever the prefixes"
    if not admitted:
        assert normalise_path(source) in found["baseline"][0]


def test_a_root_prefix_admits_every_host_path() -> None:
    assert violations(pod(host_path("/etc")), Policy(host_paths=("/",))) == ()
    assert under("/a", "/") and under("/a/b", "/a") and not under("/ab", "/a")


@pytest.mark.parametrize(
    ("image", "full"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("gitops-test/busybox:latest", "docker.io/gitops-test/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/team/app:2", "docker.io/team/app:2"),
        ("registry.example.com:5000/team/app", "registry.example.com:5000/team/app:latest"),
        ("localhost/app@sha256:abc", "localhost/app@sha256:abc"),
        ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
    ],
)
def test_images_are_normalised_as_docker_resolves_them(image: str, full: str) -> None:
    assert normalise_image(image) == full


@pytest.mark.parametrize(
    ("image", "patterns", "allowed"),
    [
        ("anything/at:all", (), True),
        ("busybox:1.36", ("docker.io/library/*",), True),
        ("team/app:1", ("docker.io/library/*",), False),
        ("registry.example.com/team/app:1", ("registry.example.com/**",), True),
        ("registry.example.com/team/app:1", ("registry.example.com/*",), False),
        ("registry.example.com.evil.io/app:1", ("registry.example.com/**",), False),
        ("registry.example.com/team/app:1", ("registry.example.com/team/app:?",), True),
        ("ghcr.io/org/app:v1", ("docker.io/**", "ghcr.io/org/*"), True),
    ],
)
def test_registry_patterns(image: str, patterns: tuple[str, ...], allowed: bool) -> None:
    assert image_allowed(image, patterns) is allowed


def test_registries_apply_at_every_level() -> None:
    found = levels(pod({"image": "evil.io/miner"}), registries=("docker.io/**",))
    assert all("matches no allowed registry" in rules[0] for rules in found.values())


def test_policy_config_is_checked_and_bounded() -> None:
    with pytest.raises(ValidationError, match="absolute"):
        Policy(host_paths=("srv",))
    with pytest.raises(ValidationError):
        Policy(default="open")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Policy(registries=tuple(f"r{i}/**" for i in range(1000)))
    policy = Policy.model_validate({"namespaces": {"b": "privileged", "a": "restricted"}, "hostPaths": ["/x/../y"]})
    assert policy.namespaces == (("a", "restricted"), ("b", "privileged")) and policy.host_paths == ("/y",)


def test_verdicts_are_cached_per_spec_and_policy() -> None:
    w = pod(sec(privileged=True))
    policy = Policy()
    first = verdict(w, policy)
    assert first and verdict(w, Policy()) is first
    assert verdict(w, Policy(default="privileged")) == ()
