"""Claim volumes: which ones a node holds, and that only deleting a claim's document deletes its volume."""

from __future__ import annotations

from gitops import volumes
from gitops.model import Claim, ManifestSet


def _mset(*claims: str, invalid: tuple[str, ...] = (), unreadable: tuple[str, ...] = ()) -> ManifestSet:
    found = tuple(Claim(name=name, file="a.yaml", storage_bytes=1) for name in claims)
    return ManifestSet(claims=found, invalid_keys=invalid, unreadable_files=unreadable)


def test_held_reads_the_claim_labels() -> None:
    found = {
        "v1": volumes.claim_labels("default", "data", "n1"),
        "v2": volumes.claim_labels("team", "logs", "n1"),
        "emptydir": {"gitops.node": "n1"},
    }
    assert volumes.held(found) == ["default/data", "team/logs"]


def test_only_a_deleted_document_deletes_a_volume() -> None:
    held = ["default/data", "default/gone", "default/typo"]
    mset = _mset("data", invalid=("default/PersistentVolumeClaim/typo",))
    assert volumes.deleted(held, mset) == ["default/gone"]


def test_nothing_is_deleted_while_a_file_is_unreadable() -> None:
    assert volumes.deleted(["default/gone"], _mset(unreadable=("broken.yaml",))) == []


def test_volume_names_and_filters_are_per_node_and_claim() -> None:
    assert volumes.claim_volume("default", "data", "n1") == "gitops.claim.default.data_n1"
    assert volumes.claim_filters("n1", "default/data") == [
        "gitops.managed=true",
        "gitops.node=n1",
        "gitops.claim=default/data",
    ]
