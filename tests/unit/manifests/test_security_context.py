"""Security context fields are resolved into the spec (and applied by the runtime), not warned about."""

from __future__ import annotations

from gitops.manifests.load import parse_file
from gitops.model import SecurityContext, Workload
from tests.builders import deployment


def only(text: str) -> Workload:
    result = parse_file("a.yaml", text.encode())
    assert result.errors == (), [str(e) for e in result.errors]
    assert len(result.workloads) == 1
    return result.workloads[0]


def test_container_security_is_resolved_with_names_normalised() -> None:
    w = only(
        deployment(
            container="""\
                securityContext:
                  privileged: false
                  allowPrivilegeEscalation: false
                  capabilities: {add: [cap_net_admin, SYS_TIME, NET_ADMIN], drop: [all]}
                  seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}
                  runAsNonRoot: true
                  runAsUser: 1000
                """,
        )
    )
    assert w.pod.containers[0].security == SecurityContext(
        cap_add=("NET_ADMIN", "SYS_TIME"),
        cap_drop=("ALL",),
        no_new_privileges=True,
        run_as_non_root=True,
        seccomp="Localhost",
        seccomp_profile="profiles/audit.json",
    )


def test_pod_level_fields_and_defaults() -> None:
    w = only(
        deployment(
            pod="""\
                hostPID: true
                hostIPC: true
                securityContext:
                  seccompProfile: {type: Unconfined}
                  sysctls:
                  - {name: net/ipv4/tcp_keepalive_time, value: "60"}
                  - {name: net.ipv4.tcp_syncookies, value: "1"}
                """,
            container="securityContext: {privileged: true}",
        )
    )
    assert w.pod.host_pid and w.pod.host_ipc
    assert w.pod.sysctls == (("net.ipv4.tcp_keepalive_time", "60"), ("net.ipv4.tcp_syncookies", "1"))
    security = w.pod.containers[0].security
    assert security.privileged and security.seccomp == "Unconfined"


def test_container_seccomp_overrides_the_pods() -> None:
    w = only(
        deployment(
            pod="securityContext: {seccompProfile: {type: Unconfined}}",
            container="securityContext: {seccompProfile: {type: RuntimeDefault}}",
        )
    )
    assert w.pod.containers[0].security == SecurityContext()


def test_security_fields_leave_no_warning_and_plain_specs_keep_their_hash() -> None:
    hardened = parse_file(
        "a.yaml",
        deployment(
            container="securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}"
        ).encode(),
    )
    assert hardened.warnings == ()
    plain = only(deployment())
    assert b"security" not in plain.pod.model_dump_json(exclude_defaults=True).encode()
    assert "host_pid" not in plain.pod.model_dump(exclude_defaults=True)
