"""Claim volumes: which ones a node holds, and that only deleting a claim's document deletes its volume."""

from __future__ import annotations

from gitops import volumes
from gitops.cluster import ClusterView
from gitops.identity import ReplicaId
from gitops.manifests.load import combine, parse_file
from gitops.model import (
    Claim,
    ClaimTemplate,
    ContainerSpec,
    ManifestSet,
    Mount,
    PodSpec,
    StatefulSpec,
    VolumeRelease,
    Workload,
)
from gitops.status import NodeStatus, ReplicaStatus
from gitops.statusview import render_status, status_document
from tests.builders import node, voting_db, workload


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


def _held(*claims: str) -> dict[str, dict[str, str]]:
    return {c: volumes.claim_labels("default", c, "n1") for c in claims}


def test_only_a_deleted_document_deletes_a_volume() -> None:
    mset = _mset("data", invalid=("default/PersistentVolumeClaim/typo",))
    assert volumes.deleted(_held("data", "gone", "typo"), mset) == ["default/gone"]


def test_nothing_is_deleted_while_a_file_is_unreadable() -> None:
    assert volumes.deleted(_held("gone"), _mset(unreadable=("broken.yaml",))) == []


def _template_claims(sts: Workload, replicas: int, stateful: StatefulSpec) -> dict[str, dict[str, str]]:
    out = {}
    for r in range(replicas):
        claim = volumes.replica_claim("data", ReplicaId(sts.key, r))
        out[claim] = volumes.template_claim_labels("default", claim, "n1", ReplicaId(sts.key, r), stateful)
    return out


def test_template_claims_follow_the_retention_policy_they_were_created_under() -> None:
    sts = workload("web", 1, kind="StatefulSet")
    retain, delete = StatefulSpec(), StatefulSpec(delete_when_deleted=True, delete_when_scaled=True)
    assert volumes.deleted(_template_claims(sts, 3, retain), ManifestSet(workloads=(sts,))) == []
    assert volumes.deleted(_template_claims(sts, 3, retain), ManifestSet()) == []
    # Scaled from 3 to 1: ordinals 1 and 2 go; deleted: all go; invalid: none go.
    scaled = volumes.deleted(_template_claims(sts, 3, delete), ManifestSet(workloads=(sts,)))
    assert scaled == ["default/data-web-1", "default/data-web-2"]
    assert len(volumes.deleted(_template_claims(sts, 3, delete), ManifestSet())) == 3
    assert volumes.deleted(_template_claims(sts, 3, delete), ManifestSet(invalid_keys=(str(sts.key),))) == []


def test_volume_names_and_filters_are_per_node_and_claim() -> None:
    assert volumes.claim_volume("default", "data", "n1") == "gitops.claim.default.data_n1"
    assert volumes.claim_filters("n1", "default/data") == [
        "gitops.managed=true",
        "gitops.node=n1",
        "gitops.claim=default/data",
    ]


def _user(name: str, claim: str, replicas: int = 1) -> Workload:
    mount = Mount(target="/data", type="claim", source=claim)
    pod = PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=(mount,)),))
    return workload(name, replicas, pod=pod)


NODES = [node(f"n{i}") for i in range(1, 6)]


def test_users_are_pinned_to_the_holder_of_their_claim() -> None:
    db, other = _user("db", "data", replicas=2), workload("web", 10)
    for holder in ("n1", "n4"):
        pinned = volumes.place_pinned([db, other], NODES, {}, {"default/data": holder})
        assert pinned.assignment.owners({"x"}).get(ReplicaId(db.key, 0)) == holder
        assert [n for n, rids in pinned.assignment.per_node.items() for r in rids if r.key == db.key] == [holder] * 2
        assert pinned.lost == []


def test_an_unheld_claim_goes_where_its_first_user_goes_and_the_others_follow() -> None:
    users = [_user("a", "data"), _user("b", "data"), _user("c", "data")]
    pinned = volumes.place_pinned(users, NODES, {}, {})
    where = {r.key: n for n, rids in pinned.assignment.per_node.items() for r in rids}
    assert len(set(where.values())) == 1 and len(where) == 3


def test_users_of_a_claim_on_a_dead_node_run_nowhere_with_volume_node_lost() -> None:
    db = _user("db", "data")
    pinned = volumes.place_pinned([db], [n for n in NODES if n.name != "n2"], {}, {"default/data": "n2"})
    assert pinned.assignment.owners() == {} and pinned.assignment.unschedulable == []
    [(key, replica, why)] = pinned.lost
    assert (key, replica) == (db.key, 0)
    assert "node n2, which is down" in why and "gitops volume release default/data --from n2" in why


def test_holders_come_from_records_less_released_volumes() -> None:
    reports = {
        "n1": NodeStatus(node="n1", volumes=["default/data"]),
        "n2": NodeStatus(node="n2", volumes=["default/data", "default/logs"]),
    }
    assert volumes.holders(reports, []) == {"default/data": "n1+n2", "default/logs": "n2"}
    release = VolumeRelease(claim="data", nodes=("n1",), file="r.yaml")
    assert volumes.holders(reports, [release]) == {"default/data": "n2", "default/logs": "n2"}


def test_users_of_a_claim_two_nodes_hold_run_nowhere_until_one_is_released() -> None:
    db = _user("db", "data")
    reports = {n: NodeStatus(node=n, volumes=["default/data"]) for n in ("n1", "n2")}
    nodes = [node("n1"), node("n2")]
    pinned = volumes.place_pinned([db], nodes, {}, volumes.holders(reports, []))
    assert pinned.assignment.owners() == {}
    [(_, _, why)] = pinned.lost
    assert "volumes on nodes n1, n2" in why and "gitops volume release default/data --from NODE" in why
    release = VolumeRelease(claim="data", nodes=("n2",), file="r.yaml")
    pinned = volumes.place_pinned([db], nodes, {}, volumes.holders(reports, [release]))
    assert set(pinned.assignment.owners({"x"}).values()) == {"n1"} and not pinned.lost


def test_gitops_status_shows_each_claim_its_node_and_its_users() -> None:
    db = _user("db", "data")
    mset = ManifestSet(workloads=(db,), claims=(Claim(name="data", file="a.yaml", storage_bytes=2**30),))

    def row(reason: str | None = None) -> ReplicaStatus:
        state = "unschedulable" if reason else "ready"
        return ReplicaStatus(
            namespace="default", kind="Deployment", name="db", replica=0, spec_hash="h", state=state, reason=reason
        )

    reports = {
        "n1": NodeStatus(node="n1", volumes=["default/data"], workloads=[row()]),
        "n2": NodeStatus(node="n2"),
    }
    up = status_document(mset, ClusterView(reports=reports, live=frozenset({"n1", "n2"})), "rev")
    assert up["claims"] == [
        {
            "claim": "default/data",
            "storage": 2**30,
            "node": "n1",
            "live": True,
            "users": ["default/Deployment/db[0]"],
            "lost": [],
        }
    ]
    assert "default/data                             1024Mi on n1  used by default/Deployment/db[0]" in render_status(
        up
    )
    reports = {"n1": reports["n1"], "n2": NodeStatus(node="n2", workloads=[row("VolumeNodeLost")])}
    down = render_status(status_document(mset, ClusterView(reports=reports, live=frozenset({"n2"})), "rev"))
    assert "on n1 (DOWN)" in down and "VolumeNodeLost: default/Deployment/db[0] run nowhere until released" in down


def _stateful_web(replicas: int) -> Workload:
    """StatefulSet ``web`` whose replicas each mount their own claim of template ``data``."""
    mount = Mount(target="/data", type="claim", source="data", per_replica=True)
    pod = PodSpec(containers=(ContainerSpec(name="main", image="img", mounts=(mount,)),))
    stateful = StatefulSpec(claims=(ClaimTemplate(name="data", storage_bytes=1),))
    return workload("web", replicas, kind="StatefulSet", pod=pod, stateful=stateful)


def test_stateful_replicas_follow_their_own_claims_volume() -> None:
    sts = _stateful_web(3)
    held = {"default/data-web-0": "n5", "default/data-web-1": "n3", "default/data-web-2": "gone"}
    pinned = volumes.place_pinned([sts], NODES, {}, held)
    assert pinned.assignment.owners() == {ReplicaId(sts.key, 0): "n5", ReplicaId(sts.key, 1): "n3"}
    [(key, replica, why)] = pinned.lost
    assert (key, replica) == (sts.key, 2) and "node gone, which is down" in why
    # Without volumes yet, placement spreads them as usual.
    assert len(volumes.place_pinned([sts], NODES, {}, {}).assignment.owners()) == 3


def test_a_cordoned_holder_takes_no_stateful_replica() -> None:
    sts = _stateful_web(1)
    nodes = [node("n1", cordoned=True), node("n2")]
    pinned = volumes.place_pinned([sts], nodes, {}, {"default/data-web-0": "n1"})
    assert pinned.assignment.owners() == {} and pinned.lost == []
    [(_, _, why)] = pinned.assignment.unschedulable
    assert "cordoned node n1" in why


def test_the_voting_apps_postgres_with_a_claim_loads_with_the_claim_mounted() -> None:
    mset = combine({"db.yaml": parse_file("db.yaml", voting_db().encode())})
    assert not mset.errors, mset.errors
    (db,) = mset.workloads
    assert [c.name for c in mset.claims] == ["db-data"] and db.pod.claims() == ("db-data",)
    (mount,) = db.pod.containers[0].mounts
    assert (mount.type, mount.source, mount.target) == ("claim", "db-data", "/var/lib/postgresql/data")
