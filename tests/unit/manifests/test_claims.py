"""PersistentVolumeClaim documents and persistentVolumeClaim volumes: parsed, checked, refused with directions."""

from __future__ import annotations

from gitops.manifests.load import combine, parse_file
from gitops.model import ManifestSet
from tests.builders import claim, claim_pod, deployment


def _load(*docs: str) -> ManifestSet:
    return combine({"app.yaml": parse_file("app.yaml", "---\n".join(docs).encode())})


def test_claim_and_its_mount_resolve_to_an_exclusive_workload() -> None:
    mset = _load(claim("data", "20Gi", "storageClassName: fast"), deployment("db", **claim_pod("data")))
    assert mset.errors == ()
    (pvc,) = mset.claims
    assert (pvc.key, pvc.storage_bytes, pvc.storage_class, pvc.line) == (
        "default/PersistentVolumeClaim/data",
        20 * 1024**3,
        "fast",
        1,
    )
    (db,) = mset.workloads
    (mount,) = db.pod.containers[0].mounts
    assert (mount.type, mount.source, mount.target, mount.read_only) == ("claim", "data", "/data", False)
    assert db.pod.claims() == ("data",) and db.exclusive


def test_read_only_claim_mounts_read_only() -> None:
    (db,) = _load(claim("data"), deployment("db", **claim_pod("data", read_only=True))).workloads
    assert db.pod.containers[0].mounts[0].read_only


def test_missing_claim_is_an_error_and_the_workload_keeps_its_last_spec() -> None:
    mset = _load(deployment("db", **claim_pod("nope")))
    assert mset.workloads == () and mset.invalid_keys == ("default/Deployment/db",)
    (error,) = mset.errors
    assert "PersistentVolumeClaim 'nope'" in error.message and error.hint is not None and "add a v1" in error.hint


def test_invalid_claim_document_still_counts_for_its_users() -> None:
    # The volume of a claim with a typo is kept, so its users must keep running.
    mset = _load(claim("data", spec="volumeMode: Block"), deployment("db", **claim_pod("data")))
    (error,) = mset.errors
    assert error.field == "spec.volumeMode" and error.line == 8 and "volumeMode: Filesystem" in error.message
    assert [w.name for w in mset.workloads] == ["db"]
    assert mset.invalid_keys == ("default/PersistentVolumeClaim/data",)


def test_claim_defined_twice_is_an_error() -> None:
    mset = combine({f: parse_file(f, claim("data").encode()) for f in ("a.yaml", "b.yaml")})
    assert mset.claims == () and len(mset.errors) == 2
    assert "defined more than once (a.yaml:1, b.yaml:1)" in mset.errors[0].message


def test_shared_and_block_claims_and_subpaths_are_refused_with_what_to_do() -> None:
    refused = _load(
        claim("data", spec="accessModes: [ReadWriteMany]\nselector: {matchLabels: {a: b}}"),
        deployment(
            "db", pod=claim_pod("data")["pod"], container="volumeMounts: [{name: data, mountPath: /d, subPath: x}]"
        ),
    )
    messages = {e.field: e.message for e in refused.errors}
    assert "use ReadWriteOnce" in messages["spec.accessModes[0]"]
    assert "remove it" in messages["spec.selector"]
    assert "mount the whole volume" in str(next(e for e in refused.errors if e.field and "subPath" in e.field))


def test_storage_request_is_required_and_must_be_a_quantity() -> None:
    mset = _load(claim("data", storage="lots"))
    assert "is not a quantity" in mset.errors[0].message


def test_volume_release_documents_are_read() -> None:
    release = "apiVersion: gitops/v1\nkind: VolumeRelease\nmetadata: {name: data}\nspec: {nodes: [n2, n1, n2]}\n"
    mset = _load(claim("data"), release)
    assert mset.errors == ()
    (read,) = mset.releases
    assert (read.key, read.nodes) == ("default/VolumeRelease/data", ("n1", "n2"))
    broken = _load(release.replace("[n2, n1, n2]", "[]"))
    assert broken.releases == () and broken.invalid_keys == ("default/VolumeRelease/data",)


def test_a_daemonset_cannot_mount_a_claim() -> None:
    mset = _load(claim("data"), deployment("agent", kind="DaemonSet", **claim_pod("data")))
    (error,) = mset.errors
    assert "runs on every node" in error.message and error.hint is not None and "hostPath" in error.hint
