"""The ``<NAME>_SERVICE_HOST`` / ``_PORT`` variables Kubernetes gives containers for their namespace's Services."""

from __future__ import annotations

from collections.abc import Sequence

from gitops.model import Service


def service_env(services: Sequence[Service], namespace: str) -> dict[str, str]:
    """The variables for ``namespace``'s Services with a virtual IP, as the kubelet names them."""
    out: dict[str, str] = {}
    for service in services:
        if service.namespace != namespace or service.type == "ExternalName" or service.headless or not service.ports:
            continue
        prefix = _name(service.name)
        out[f"{prefix}_SERVICE_HOST"] = service.cluster_ip
        out[f"{prefix}_SERVICE_PORT"] = str(service.ports[0].port)
        for port in service.ports:
            if port.name:
                out[f"{prefix}_SERVICE_PORT_{_name(port.name)}"] = str(port.port)
    return out


def _name(text: str) -> str:
    return text.upper().replace("-", "_")
