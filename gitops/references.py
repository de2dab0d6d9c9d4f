"""Rewriting the ConfigMap and secret references inside a pod spec, one callback per kind of entry.

Resolving ConfigMaps (manifests/configmaps.py) and stamping secret digests (secretdigest.py)
walk the same places; each callback returns what replaces one entry (none, one or many).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from gitops.model import EnvFrom, EnvVar, FileVolume, PodSpec, VolumeFile

T = TypeVar("T")


def _same(item: T) -> Iterable[T]:
    return (item,)


@dataclass(frozen=True)
class Rewrite:
    """What replaces each env entry, envFrom source and volume file of a pod."""

    env: Callable[[EnvVar], Iterable[EnvVar]] = _same
    env_from: Callable[[EnvFrom], Iterable[EnvFrom]] = _same
    file: Callable[[VolumeFile], Iterable[VolumeFile]] = _same

    def pod(self, pod: PodSpec) -> PodSpec:
        """``pod`` with every entry rewritten; the same object when nothing changed."""
        containers = tuple(
            c.model_copy(
                update={
                    "env": tuple(out for e in c.env for out in self.env(e)),
                    "env_from": tuple(out for e in c.env_from for out in self.env_from(e)),
                }
            )
            for c in pod.containers
        )
        files = tuple(
            FileVolume(name=v.name, files=tuple(out for f in v.files for out in self.file(f))) for v in pod.files
        )
        if containers == pod.containers and files == pod.files:
            return pod
        return pod.model_copy(update={"containers": containers, "files": files})


def uses_references(pod: PodSpec) -> bool:
    """Whether ``pod`` reads any ConfigMap or secret (so rewriting it can change it)."""
    return bool(pod.files) or any(c.env_from or any(e.secret or e.config for e in c.env) for c in pod.containers)
