"""``gitops volume export`` / ``import``: a claim's volume as a tar stream, to move its data to another node.

Both go through the engine's archive API on a helper container that is created, never started,
with the volume mounted at ``/v``: no shell or tar is needed in any image. Export refuses while a
running container uses the volume (the data would change under the copy); import refuses when the
target node already has a volume for the claim (it never writes over data).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO

import docker

from gitops.identity import ReplicaId
from gitops.model import ManifestSet
from gitops.volumes import claim_labels, claim_volume, replica_claim, template_claim_labels

MOUNT = "/v"
CHUNK = 1 << 20


class CopyError(Exception):
    """The copy could not be made; the message says why and what to do."""


def claim_labels_in(mset: ManifestSet, namespace: str, claim: str, node: str) -> dict[str, str]:
    """The labels the daemon gives ``claim``'s volume on ``node``: a claim document's, or a StatefulSet ordinal's."""
    if any((c.namespace, c.name) == (namespace, claim) for c in mset.claims):
        return claim_labels(namespace, claim, node)
    for w in mset.workloads:
        if w.namespace != namespace or w.stateful is None:
            continue
        for r in range(w.replicas):
            rid = ReplicaId(w.key, r)
            if any(replica_claim(t.name, rid) == claim for t in w.stateful.claims):
                return template_claim_labels(namespace, claim, node, rid, w.stateful)
    raise CopyError(f"{namespace}/{claim} is neither a PersistentVolumeClaim nor a StatefulSet ordinal's claim")


def export_volume(api: docker.APIClient, namespace: str, claim: str, node: str, image: str, out: IO[bytes]) -> None:
    """Write a tar of ``claim``'s volume on ``node`` to ``out`` (entries under ``v/``)."""
    volume = claim_volume(namespace, claim, node)
    try:
        api.inspect_volume(volume)
    except docker.errors.NotFound as e:
        raise CopyError(f"node {node} has no volume for {namespace}/{claim} ({volume})") from e
    users = api.containers(filters={"volume": volume, "status": "running"})
    if users:
        names = ", ".join(sorted(u["Names"][0].lstrip("/") for u in users))
        raise CopyError(f"{volume} is in use by {names}: cordon {node} so its users stop, then export")
    with _helper(api, volume, image, read_only=True) as helper:
        stream, _ = api.get_archive(helper, MOUNT, chunk_size=CHUNK)
        for chunk in stream:
            out.write(chunk)


def import_volume(
    api: docker.APIClient, namespace: str, claim: str, node: str, labels: dict[str, str], image: str, data: IO[bytes]
) -> None:
    """Create ``claim``'s volume on ``node`` with ``labels`` and unpack an export (``data``) into it."""
    volume = claim_volume(namespace, claim, node)
    with contextlib.suppress(docker.errors.NotFound):
        api.inspect_volume(volume)
        raise CopyError(f"node {node} already has a volume for {namespace}/{claim} ({volume}); nothing was written")
    api.create_volume(name=volume, labels=labels)
    with _helper(api, volume, image, read_only=False) as helper:
        if not api.put_archive(helper, "/", iter(lambda: data.read(CHUNK), b"")):
            raise CopyError(f"the engine refused the archive for {volume}")


@contextlib.contextmanager
def _helper(api: docker.APIClient, volume: str, image: str, read_only: bool) -> Iterator[str]:
    binds = [f"{volume}:{MOUNT}:{'ro' if read_only else 'rw'}"]
    try:
        created = api.create_container(image, command=["true"], host_config=api.create_host_config(binds=binds))
    except docker.errors.ImageNotFound as e:
        raise CopyError(f"image {image} is not on this engine: pull it, or name one that is with --image") from e
    try:
        yield created["Id"]
    finally:
        api.remove_container(created["Id"], force=True)
